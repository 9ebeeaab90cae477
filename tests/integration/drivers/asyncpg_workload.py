#!/usr/bin/env python3
"""asyncpg through pgmux in transaction mode (run by test_drivers.cpp).

asyncpg prepares every query as a named statement and caches it per
connection; through a transaction pool each transaction may land on
another server connection, so every statement must keep working wherever
the connection's next transaction goes. Usage: asyncpg_workload.py DSN TAG
(TAG keeps the tables of concurrent runs apart). Exits non-zero with the
reason on the first wrong answer.
"""
import asyncio
import io
import json
import sys

import asyncpg

DSN, TAG = sys.argv[1], sys.argv[2]
T = f"drv_a_{TAG}"
TASKS, ROUNDS = 12, 25


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def setup(c):
    await c.execute(f"""
        DROP TABLE IF EXISTS {T}_items, {T}_shape, {T}_shape2;
        DROP TYPE IF EXISTS {T}_mood;
        CREATE TYPE {T}_mood AS ENUM ('sad', 'ok', 'happy');
        CREATE TABLE {T}_items (id int PRIMARY KEY, name text, tags text[], doc jsonb, mood {T}_mood);
        CREATE TABLE {T}_shape (a int);
        INSERT INTO {T}_shape VALUES (1), (2);
        CREATE TABLE {T}_shape2 (a int);
        INSERT INTO {T}_shape2 VALUES (1), (2);
    """)


async def worker(pool, n):
    async with pool.acquire() as c:
        # A prepared statement object, used again in later transactions
        # (which may run on other server connections).
        concat = await c.prepare("SELECT $1::text || '-' || $2::text")
        for i in range(ROUNDS):
            key = n * 1000 + i
            check(await c.fetchval("SELECT $1::int * 2", key) == key * 2, "fetchval")
            check(await concat.fetchval(str(n), str(i)) == f"{n}-{i}", "prepared statement object")
            async with c.transaction():
                await c.execute(f"INSERT INTO {T}_items VALUES ($1, $2, $3, $4, $5)",
                                key, f"item {key}", [f"t{n}", f"r{i}"], json.dumps({"k": key}),
                                ["sad", "ok", "happy"][key % 3])
                row = await c.fetchrow(f"SELECT name, tags, doc, mood FROM {T}_items WHERE id = $1", key)
                check(row["name"] == f"item {key}" and row["tags"] == [f"t{n}", f"r{i}"], "row in transaction")
                check(json.loads(row["doc"]) == {"k": key} and row["mood"] == ["sad", "ok", "happy"][key % 3],
                      "jsonb and enum")
            if i % 5 == 0:
                try:
                    await c.fetchval("SELECT 1 / $1::int", 0)
                    check(False, "division by zero not raised")
                except asyncpg.DivisionByZeroError:
                    pass
                # An error inside a transaction block rolls it back.
                try:
                    async with c.transaction():
                        await c.execute(f"INSERT INTO {T}_items (id) VALUES ($1)", -key - 1)
                        await c.execute(f"INSERT INTO {T}_items (id) VALUES ($1)", -key - 1)
                    check(False, "unique violation not raised")
                except asyncpg.UniqueViolationError:
                    pass
                check(await c.fetchval(f"SELECT count(*) FROM {T}_items WHERE id = $1", -key - 1) == 0,
                      "rolled back")
            # Many distinct statements: evictions from pgmux's per-server cache.
            check(await c.fetchval(f"SELECT {i} + $1::int", n) == i + n, "distinct statement")
    async with pool.acquire() as c:
        await c.executemany(f"INSERT INTO {T}_items (id, name) VALUES ($1, $2)",
                            [(-(n * 1000 + j) - 100000, f"many {j}") for j in range(20)])
        got = await c.fetchval(f"SELECT count(*) FROM {T}_items WHERE name LIKE 'many %' AND id BETWEEN $1 AND $2",
                               -(n * 1000 + 19) - 100000, -(n * 1000) - 100000)
        check(got == 20, f"executemany: {got}")


async def main():
    pool = await asyncpg.create_pool(DSN, min_size=TASKS, max_size=TASKS)
    async with pool.acquire() as c:
        await setup(c)
    await asyncio.gather(*(worker(pool, n) for n in range(TASKS)))
    async with pool.acquire() as c:
        total = await c.fetchval(f"SELECT count(*) FROM {T}_items WHERE id >= 0")
        check(total == TASKS * ROUNDS, f"rows: {total}")
        # COPY both ways.
        await c.copy_records_to_table(f"{T}_items", records=[(900000 + j, f"copied {j}") for j in range(500)],
                                      columns=["id", "name"])
        buf = io.BytesIO()
        await c.copy_from_query(f"SELECT id FROM {T}_items WHERE id >= 900000 ORDER BY id", output=buf)
        check(buf.getvalue().decode().split() == [str(900000 + j) for j in range(500)], "copy out")
        # A cached statement whose result type changes: asyncpg re-prepares
        # it (outside a transaction) and the new column shows.
        before = await c.fetch(f"SELECT * FROM {T}_shape ORDER BY a")
        check([tuple(r) for r in before] == [(1,), (2,)], "shape before")
        await c.execute(f"ALTER TABLE {T}_shape ADD COLUMN b int DEFAULT 7")
        after = await c.fetch(f"SELECT * FROM {T}_shape ORDER BY a")
        check([tuple(r) for r in after] == [(1, 7), (2, 7)], f"shape after: {after}")
    # Every connection has the statement cached with its result type when
    # the schema changes; then each runs it again, wherever pgmux prepares
    # it (evictions, other server connections). asyncpg re-prepares on
    # 0A000; rows of another shape than it was told are a protocol error.
    async def shape2(n, expect, barrier):
        async with pool.acquire() as c:
            await barrier.wait()  # all connections at once
            for _ in range(3):
                rows = await c.fetch(f"SELECT * FROM {T}_shape2 ORDER BY a")
                check([tuple(r) for r in rows] == expect, f"shape2 on connection {n}: {rows}")
                check(await c.fetchval(f"SELECT {n} + $1::int", 1) == n + 1, "another statement")
    barrier = asyncio.Barrier(TASKS)
    await asyncio.gather(*(shape2(n, [(1,), (2,)], barrier) for n in range(TASKS)))
    async with pool.acquire() as c:
        await c.execute(f"ALTER TABLE {T}_shape2 ADD COLUMN b int DEFAULT 7")
    barrier = asyncio.Barrier(TASKS)
    await asyncio.gather(*(shape2(n, [(1, 7), (2, 7)], barrier) for n in range(TASKS)))
    async with pool.acquire() as c:
        await c.execute(f"DROP TABLE {T}_items, {T}_shape, {T}_shape2; DROP TYPE {T}_mood")
    await pool.close()
    print(f"asyncpg {asyncpg.__version__}: {TASKS} connections x {ROUNDS} rounds ok")


asyncio.run(main())
