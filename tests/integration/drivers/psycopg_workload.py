#!/usr/bin/env python3
"""psycopg 3 through pgmux in transaction mode (run by test_drivers.cpp).

prepare_threshold=0 makes psycopg prepare every query as a named statement
(_pg3_N); pipeline mode sends many extended-protocol requests before reading
any answer; each transaction may land on another server connection.
Usage: psycopg_workload.py CONNINFO TAG. Exits non-zero on the first wrong
answer.
"""
import sys
import threading

import psycopg

CONNINFO, TAG = sys.argv[1], sys.argv[2]
T = f"drv_p_{TAG}"
THREADS, ROUNDS = 8, 30
errors = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def worker(n):
    try:
        with psycopg.connect(CONNINFO, autocommit=True, prepare_threshold=0) as conn:
            for i in range(ROUNDS):
                key = n * 1000 + i
                check(conn.execute("SELECT %s::int + 1", (key,)).fetchone()[0] == key + 1, "prepared select")
                with conn.transaction():
                    conn.execute(f"INSERT INTO {T} (id, v) VALUES (%s, %s)", (key, f"v{key}"))
                    got = conn.execute(f"SELECT v FROM {T} WHERE id = %s", (key,)).fetchone()[0]
                    check(got == f"v{key}", "read back in transaction")
                # Pipeline mode: several requests, then the answers.
                with conn.pipeline():
                    curs = [conn.execute("SELECT %s::int * %s::int", (key, j)) for j in range(5)]
                check([c.fetchone()[0] for c in curs] == [key * j for j in range(5)], "pipeline")
                if i % 6 == 0:
                    # An error in the middle of a pipeline; the connection goes on.
                    try:
                        with conn.pipeline():
                            conn.execute("SELECT 1")
                            conn.execute("SELECT 1 / %s::int", (0,))
                            conn.execute("SELECT 2")
                        check(False, "division by zero not raised")
                    except psycopg.errors.DivisionByZero:
                        pass
                    check(conn.execute("SELECT %s::text", ("after",)).fetchone()[0] == "after", "after error")
                    # A server-side cursor inside a transaction.
                    with conn.transaction():
                        with conn.cursor(name=f"cur_{n}_{i}") as cur:
                            cur.execute("SELECT generate_series(1, %s)", (300,))
                            total = 0
                            while rows := cur.fetchmany(64):
                                total += sum(r[0] for r in rows)
                            check(total == 300 * 301 // 2, "server-side cursor")
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {T} (id, v) VALUES (%s, %s)",
                                [(-(n * 1000 + j) - 1, "many") for j in range(25)])
            got = conn.execute(f"SELECT count(*) FROM {T} WHERE v = 'many' AND id BETWEEN %s AND %s",
                               (-(n * 1000 + 25), -(n * 1000) - 1)).fetchone()[0]
            check(got == 25, f"executemany: {got}")
    except Exception as e:  # reported by the main thread
        errors.append(f"thread {n}: {type(e).__name__}: {e}")


def main():
    with psycopg.connect(CONNINFO, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {T}")
        conn.execute(f"CREATE TABLE {T} (id int PRIMARY KEY, v text)")
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("\n".join(errors))
    with psycopg.connect(CONNINFO, autocommit=True, prepare_threshold=0) as conn:
        check(conn.execute(f"SELECT count(*) FROM {T} WHERE id >= 0").fetchone()[0] == THREADS * ROUNDS, "rows")
        # COPY both ways.
        with conn.cursor() as cur:
            with cur.copy(f"COPY {T} (id, v) FROM STDIN") as copy:
                for j in range(1000):
                    copy.write_row((500000 + j, f"c{j}"))
            seen = []
            with cur.copy(f"COPY (SELECT id FROM {T} WHERE id >= 500000 ORDER BY id) TO STDOUT") as copy:
                for row in copy.rows():
                    seen.append(int(row[0]))
            check(seen == list(range(500000, 501000)), "copy out")
        conn.execute(f"DROP TABLE {T}")
    print(f"psycopg {psycopg.__version__}: {THREADS} connections x {ROUNDS} rounds ok")


main()
