// pgjdbc through pgmux in transaction mode (run by test_drivers.cpp with
// Java's single-file launcher). With prepareThreshold=1 every statement is
// prepared on the server under pgjdbc's own name (S_1, S_2...) from its
// second use, and pgjdbc assumes it stays there for the life of the
// connection, while each transaction may run on another server connection.
// Usage: java -cp postgresql.jar JdbcWorkload.java JDBC_URL TAG
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcWorkload {
  static final int THREADS = 6, ROUNDS = 30;

  static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }

  public static void main(String[] args) throws Exception {
    String url = args[0];
    String t = "drv_j_" + args[1];
    try (Connection c = DriverManager.getConnection(url); Statement s = c.createStatement()) {
      s.execute("DROP TABLE IF EXISTS " + t);
      s.execute("CREATE TABLE " + t + " (id int PRIMARY KEY, name text, amount numeric(12,2), tags text[])");
    }
    ExecutorService pool = Executors.newFixedThreadPool(THREADS);
    List<Future<?>> done = new ArrayList<>();
    for (int n = 0; n < THREADS; n++) {
      final int me = n;
      done.add(pool.submit(() -> { work(url, t, me); return null; }));
    }
    pool.shutdown();
    for (Future<?> f : done) f.get();  // rethrows a worker's failure
    try (Connection c = DriverManager.getConnection(url); Statement s = c.createStatement()) {
      try (ResultSet r = s.executeQuery("SELECT count(*) FROM " + t + " WHERE id >= 0")) {
        r.next();
        check(r.getInt(1) == THREADS * ROUNDS, "rows: " + r.getInt(1));
      }
      s.execute("DROP TABLE " + t);
    }
    System.out.println("pgjdbc " + org.postgresql.Driver.class.getPackage().getImplementationVersion() + ": "
        + THREADS + " connections x " + ROUNDS + " rounds ok");
  }

  static void work(String url, String t, int n) throws Exception {
    try (Connection c = DriverManager.getConnection(url)) {
      PreparedStatement twice = c.prepareStatement("SELECT ?::int * 2");
      PreparedStatement insert = c.prepareStatement("INSERT INTO " + t + " VALUES (?, ?, ?, ?)");
      PreparedStatement read = c.prepareStatement("SELECT name, amount, tags FROM " + t + " WHERE id = ?");
      for (int i = 0; i < ROUNDS; i++) {
        int key = n * 1000 + i;
        // Autocommit: a transaction each, on whichever server is free.
        twice.setInt(1, key);
        try (ResultSet r = twice.executeQuery()) {
          r.next();
          check(r.getInt(1) == key * 2, "prepared select");
        }
        c.setAutoCommit(false);
        insert.setInt(1, key);
        insert.setString(2, "item " + key);
        insert.setBigDecimal(3, new BigDecimal(key + ".25"));
        insert.setArray(4, c.createArrayOf("text", new String[] {"t" + n, "r" + i}));
        check(insert.executeUpdate() == 1, "insert");
        read.setInt(1, key);
        try (ResultSet r = read.executeQuery()) {
          check(r.next(), "row in transaction");
          check(r.getString(1).equals("item " + key), "name");
          check(r.getBigDecimal(2).equals(new BigDecimal(key + ".25")), "numeric");
          check(Arrays.equals((String[]) r.getArray(3).getArray(), new String[] {"t" + n, "r" + i}), "array");
        }
        c.commit();
        if (i % 5 == 0) {
          // An error rolls the transaction back; the connection goes on.
          try {
            insert.setInt(1, key);  // duplicate key
            insert.executeUpdate();
            check(false, "unique violation not raised");
          } catch (SQLException e) {
            check("23505".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
            c.rollback();
          }
          // A portal read in pieces (fetch size, inside a transaction).
          try (PreparedStatement big = c.prepareStatement("SELECT g FROM generate_series(1, ?) g")) {
            big.setFetchSize(50);
            big.setInt(1, 400);
            long sum = 0;
            try (ResultSet r = big.executeQuery()) {
              while (r.next()) sum += r.getInt(1);
            }
            check(sum == 400L * 401 / 2, "fetch size");
          }
          c.commit();
          // A batch: Bind/Execute pipelined before one Sync.
          try (PreparedStatement batch = c.prepareStatement("INSERT INTO " + t + " (id, name) VALUES (?, ?)")) {
            for (int j = 0; j < 10; j++) {
              batch.setInt(1, -(key * 10 + j) - 1);
              batch.setString(2, "batch");
              batch.addBatch();
            }
            int[] counts = batch.executeBatch();
            check(counts.length == 10, "batch");
          }
          c.commit();
        }
        c.setAutoCommit(true);
      }
      try (PreparedStatement q = c.prepareStatement("SELECT count(*) FROM " + t + " WHERE name = 'batch' AND id BETWEEN ? AND ?")) {
        q.setInt(1, -((n * 1000 + ROUNDS) * 10) - 1);
        q.setInt(2, -(n * 1000 * 10) - 1);
        try (ResultSet r = q.executeQuery()) {
          r.next();
          check(r.getInt(1) == 10 * ((ROUNDS + 4) / 5), "batch rows: " + r.getInt(1));
        }
      }
    }
  }
}
