// pgx (v4) through pgmux in transaction mode (built and run by
// test_drivers.cpp; Debian's golang-github-jackc-pgx-v4-dev, GOPATH mode).
// pgx prepares every query under its own name (its statement cache) and
// keeps it for the life of the connection, while each transaction may run
// on another server connection. Usage: pgx_workload URL TAG. Exits non-zero
// with the first wrong answer.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
)

const workers, rounds = 8, 30

func check(ok bool, format string, args ...interface{}) {
	if !ok {
		panic(fmt.Sprintf(format, args...))
	}
}

func must(err error, what string) {
	if err != nil {
		panic(what + ": " + err.Error())
	}
}

func work(ctx context.Context, pool *pgxpool.Pool, t string, n int) {
	for i := 0; i < rounds; i++ {
		key := n*1000 + i
		var doubled int
		must(pool.QueryRow(ctx, "SELECT $1::int * 2", key).Scan(&doubled), "select")
		check(doubled == key*2, "select: %d", doubled)

		tx, err := pool.Begin(ctx)
		must(err, "begin")
		_, err = tx.Exec(ctx, "INSERT INTO "+t+" (id, name, tags) VALUES ($1, $2, $3)", key, fmt.Sprint("item ", key),
			[]string{fmt.Sprint("t", n), fmt.Sprint("r", i)})
		must(err, "insert")
		var name string
		var tags []string
		must(tx.QueryRow(ctx, "SELECT name, tags FROM "+t+" WHERE id = $1", key).Scan(&name, &tags), "read back")
		check(name == fmt.Sprint("item ", key) && len(tags) == 2 && tags[1] == fmt.Sprint("r", i), "row: %s %v", name, tags)
		must(tx.Commit(ctx), "commit")

		if i%5 == 0 {
			// An error inside a transaction; rolled back, the pool goes on.
			tx, err := pool.Begin(ctx)
			must(err, "begin")
			_, err = tx.Exec(ctx, "INSERT INTO "+t+" (id, name) VALUES ($1, $2)", key, "dup")
			var pgErr *pgconn.PgError
			check(errors.As(err, &pgErr) && pgErr.Code == "23505", "duplicate key: %v", err)
			must(tx.Rollback(ctx), "rollback")

			// A batch: every query queued, then sent at once before one Sync.
			b := &pgx.Batch{}
			for j := 0; j < 8; j++ {
				b.Queue("SELECT $1::int + $2::int", key, j)
			}
			br := pool.SendBatch(ctx, b)
			for j := 0; j < 8; j++ {
				var v int
				must(br.QueryRow().Scan(&v), "batch row")
				check(v == key+j, "batch: %d", v)
			}
			must(br.Close(), "batch close")

			// Binary COPY.
			rows := [][]interface{}{}
			for j := 0; j < 20; j++ {
				rows = append(rows, []interface{}{-(key*100 + j) - 1, "copied"})
			}
			count, err := pool.CopyFrom(ctx, pgx.Identifier{t}, []string{"id", "name"}, pgx.CopyFromRows(rows))
			must(err, "copy")
			check(count == 20, "copy count %d", count)
		}
	}
	// A statement prepared explicitly on one connection, used over several
	// transactions.
	conn, err := pool.Acquire(ctx)
	must(err, "acquire")
	defer conn.Release()
	_, err = conn.Conn().Prepare(ctx, "by_name", "SELECT count(*) FROM "+t+" WHERE name = $1 AND id BETWEEN $2 AND $3")
	must(err, "prepare")
	for k := 0; k < 5; k++ {
		var c int
		must(conn.QueryRow(ctx, "by_name", "copied", -((n*1000+rounds)*100)-1, -(n*1000*100)-1).Scan(&c), "by name")
		check(c == 20*((rounds+4)/5), "copied rows: %d", c)
	}
}

func main() {
	ctx := context.Background()
	t := "drv_g_" + os.Args[2]
	cfg, err := pgxpool.ParseConfig(os.Args[1])
	must(err, "config")
	cfg.MaxConns = workers
	pool, err := pgxpool.ConnectConfig(ctx, cfg)
	must(err, "connect")
	defer pool.Close()
	_, err = pool.Exec(ctx, "DROP TABLE IF EXISTS "+t)
	must(err, "drop")
	_, err = pool.Exec(ctx, "CREATE TABLE "+t+" (id int PRIMARY KEY, name text, tags text[])")
	must(err, "create")
	var wg sync.WaitGroup
	failures := make(chan string, workers)
	for n := 0; n < workers; n++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					failures <- fmt.Sprintf("worker %d: %v", n, r)
				}
			}()
			work(ctx, pool, t, n)
		}(n)
	}
	wg.Wait()
	close(failures)
	failed := false
	for f := range failures {
		fmt.Println(f)
		failed = true
	}
	if failed {
		os.Exit(1)
	}
	var total int
	must(pool.QueryRow(ctx, "SELECT count(*) FROM "+t+" WHERE id >= 0").Scan(&total), "total")
	check(total == workers*rounds, "rows: %d", total)
	_, err = pool.Exec(ctx, "DROP TABLE "+t)
	must(err, "drop")
	fmt.Printf("pgx v4: %d connections x %d rounds ok\n", workers, rounds)
}
