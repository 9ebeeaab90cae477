#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/seed-*,
and their dictionaries, tests/fuzz/dict/<target>.dict.

    tests/fuzz/make_seeds.py            (re)writes every seed-* file and dictionary

Seeds are small, real inputs (protocol messages as libpq and PostgreSQL
send them, SCRAM exchanges from RFC 7677, SQL, configurations) from which
libFuzzer starts. Files named regress-* are inputs that once crashed a
target or broke one of its properties: they are kept by hand, never
rewritten here, and every fuzz run replays them first.
"""

import base64
import hashlib
import hmac
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


# --- wire format -------------------------------------------------------------

def i16(v):
    return struct.pack("!h", v)


def i32(v):
    return struct.pack("!i", v)


def u32(v):
    return struct.pack("!I", v)


def cs(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def msg(t, body=b""):
    """A typed message: type byte, int32 length (body + 4), body."""
    return t.encode() + u32(len(body) + 4) + body


def untyped(body):
    return u32(len(body) + 4) + body


def startup(params, proto=196608):
    body = u32(proto)
    for k, v in params:
        body += cs(k) + cs(v)
    return untyped(body + b"\0")


def error_body(fields):
    return b"".join(code.encode() + cs(v) for code, v in fields) + b"\0"


def row_description(cols):
    body = i16(len(cols))
    for name, typ in cols:
        body += cs(name) + u32(0) + i16(0) + u32(typ) + i16(-1) + i32(-1) + i16(0)
    return body


def data_row(values):
    body = i16(len(values))
    for v in values:
        body += i32(-1) if v is None else i32(len(v)) + v
    return body


def parse_body(name, sql, types=()):
    return cs(name) + cs(sql) + i16(len(types)) + b"".join(u32(t) for t in types)


def bind_body(portal, stmt, params, formats=(), result_formats=()):
    body = cs(portal) + cs(stmt) + i16(len(formats)) + b"".join(i16(f) for f in formats)
    body += i16(len(params))
    for p in params:
        body += i32(-1) if p is None else i32(len(p)) + p
    return body + i16(len(result_formats)) + b"".join(i16(f) for f in result_formats)


# --- SCRAM (RFC 7677 example: user "user", password "pencil") ----------------

CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT_B64 = "W22ZaJ0SNY7soEsUEjb6gQ=="
CLIENT_FIRST = "n,,n=user,r=" + CLIENT_NONCE
SERVER_FIRST = "r=" + CLIENT_NONCE + SERVER_NONCE + ",s=" + SALT_B64 + ",i=4096"
CLIENT_FINAL = ("c=biws,r=" + CLIENT_NONCE + SERVER_NONCE +
                ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
CB_DATA = b"0123456789abcdef0123456789abcdef"  # fuzz_scram.cpp's kCbData


def scram_verifier(password, salt, iterations=4096):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored), b64(server))


# --- the seeds ---------------------------------------------------------------

def frame_seeds():
    # Byte 0: max length index (low 3 bits; 6 = the default 64 MiB) and
    # largest chunk index (bits 3-5; 0 = 1 byte, 4 = 7 bytes, 7 = one chunk).
    # Byte 1 seeds the chunk sizes.
    extended = (msg("P", parse_body("s1", "SELECT $1::int", [23])) +
                msg("B", bind_body("", "s1", [b"42"], [0], [1])) +
                msg("D", b"P\0") + msg("E", cs("") + i32(0)) + msg("S"))
    response = (msg("1") + msg("2") + msg("T", row_description([("int4", 23)])) +
                msg("D", data_row([b"\0\0\0\x2a"])) + msg("C", cs("SELECT 1")) + msg("Z", b"I"))
    login = (msg("R", i32(10) + cs("SCRAM-SHA-256") + b"\0") + msg("R", i32(11) + SERVER_FIRST.encode()) +
             msg("R", i32(12) + SERVER_FINAL.encode()) + msg("R", i32(0)) +
             msg("S", cs("server_version") + cs("15.5")) + msg("K", u32(1234) + u32(5678)) + msg("Z", b"I"))
    error = msg("E", error_body([("S", "ERROR"), ("V", "ERROR"), ("C", "42P01"),
                                 ("M", 'relation "t" does not exist'), ("P", "15")])) + msg("Z", b"E")
    copy = msg("G", b"\0" + i16(1) + i16(0)) + msg("d", b"1\t2\n") + msg("c") + msg("C", cs("COPY 1"))
    return {
        "query-bytewise": b"\x06\x01" + msg("Q", cs("SELECT 1")),
        "query-whole": b"\x3e\x00" + msg("Q", cs("SELECT 1;")) + msg("X"),
        "extended": b"\x26\x07" + extended,
        "response": b"\x1e\x03" + response,
        "login": b"\x36\x09" + login,
        "error": b"\x0e\x05" + error,
        "copy": b"\x16\x02" + copy,
        "partial-body": b"\x26\x04" + msg("Q", cs("SELECT 1"))[:9],
        "partial-header": b"\x06\x00" + msg("S") + b"Q\0\0",
        "too-long": b"\x2c\x00" + msg("D", data_row([b"x" * 400])),
        "length-3": b"\x06\x00" + b"Q" + u32(3) + b"Q",
    }


def startup_seeds():
    return {
        "psql": startup([("user", "alice"), ("database", "app"), ("application_name", "psql"),
                         ("client_encoding", "UTF8")]),
        "replication": startup([("user", "repl"), ("replication", "database"),
                                ("options", "-c search_path=app\\ public")]),
        "protocol-3.2": startup([("user", "bob"), ("_pq_.extension", "on")], proto=(3 << 16) | 2),
        "ssl": untyped(u32(80877103)),
        "gssenc": untyped(u32(80877104)),
        "cancel": untyped(u32(80877102) + u32(4242) + u32(0xdeadbeef)),
        "ssl-then-startup": untyped(u32(80877103)) + startup([("user", "alice")]),
        "protocol-2": untyped(u32(2 << 16) + cs("user") + cs("x") + b"\0"),
        "duplicate": startup([("user", "a"), ("user", "b")]),
        "no-user": startup([("database", "app")]),
        "cancel-short": untyped(u32(80877102) + u32(1)),
    }


def inspect_seeds():
    return {
        "auth-sasl": i32(10) + cs("SCRAM-SHA-256-PLUS") + cs("SCRAM-SHA-256") + b"\0",
        "auth-md5": i32(5) + b"\x01\x02\x03\x04",
        "auth-ok": i32(0),
        "auth-sasl-continue": i32(11) + SERVER_FIRST.encode(),
        "parameter-status": cs("TimeZone") + cs("Europe/Berlin"),
        "backend-key": u32(31337) + u32(0x12345678),
        "ready": b"T",
        "error": error_body([("S", "FATAL"), ("V", "FATAL"), ("C", "28P01"),
                             ("M", 'password authentication failed for user "alice"'),
                             ("F", "auth.c"), ("L", "323"), ("R", "auth_failed")]),
        "notice": error_body([("S", "NOTICE"), ("C", "00000"), ("M", "hi"), ("D", "detail"), ("H", "hint")]),
        "command-complete": cs("INSERT 0 5"),
        "sasl-initial": cs("SCRAM-SHA-256") + i32(len(CLIENT_FIRST)) + CLIENT_FIRST.encode(),
        "sasl-initial-nodata": cs("SCRAM-SHA-256") + i32(-1),
        "query": cs("SELECT * FROM t WHERE a = 'x';"),
        "parse": parse_body("stmt_1", "INSERT INTO t VALUES ($1, $2)", [23, 25]),
        "bind": bind_body("portal", "stmt_1", [b"1", None, b""], [0, 1], [0]),
        "describe": b"S" + cs("stmt_1"),
        "close": b"P" + cs(""),
        "negotiate": u32(0) + i32(2) + cs("_pq_.a") + cs("_pq_.b"),
        "row-description": row_description([("usename", 19), ("passwd", 25)]),
        "data-row": data_row([b"alice", None, b""]),
    }


def sql_seeds():
    queries = [
        "SELECT 1",
        "select * from t where a = 'it''s' -- comment ; not a statement\n",
        "SELECT $$a;b$$, $tag$ ; $tag$, E'\\'' ; SELECT 2",
        "/* outer /* nested */ still */ SELECT \"for update\" FROM \"T\"",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT * FROM t FOR UPDATE",
        "SELECT a INTO b FROM c",
        "(SELECT 1) UNION (SELECT 2); VALUES (1), (2); TABLE t; SHOW ALL",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
        "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY DEFERRABLE; SELECT 1; COMMIT",
        "START TRANSACTION READ WRITE",
        "begin read only",
        "PREPARE q1 (int) AS SELECT $1",
        "EXECUTE q1 (42);",
        "DEALLOCATE PREPARE \"Q\"\"1\"",
        "DEALLOCATE ALL",
        "DISCARD ALL",
        "SELECT U&'d\\0061t\\+000061' UESCAPE '!', B'1010', X'ff'",
        "SELECT 'C:\\' ; SELECT 1",
        "SELECT '\x82\\'; SELECT 1",
        "INSERT INTO t VALUES (1)",
        "SELECT 1; UPDATE t SET a = 1",
        "SELECT 'unterminated",
        "SELECT\x001",
        "COMMIT",
        "rollback work;",
        "END TRANSACTION -- done",
        "COMMIT AND CHAIN",
        "ROLLBACK TO SAVEPOINT a",
        "SELECT set_config('TimeZone', 'UTC', false)",
        "SET myapp.tenant = 'a'; RESET \"My\".x; set session a . b to 1; SET LOCAL c.d = 2",
    ]
    seeds = {"q%02d" % i: q.encode("latin-1") for i, q in enumerate(queries)}
    seeds["tag-select"] = b"SELECT 5"
    seeds["tag-insert"] = b"INSERT 0 1"
    return seeds


# fuzz_tracker: one byte per call (low 4 bits: the operation, high 4 bits:
# its argument); see fuzz_tracker.cpp.
REQUESTS = ["parse", "query", "bind", "describe_stmt", "execute", "describe_portal", "sync", "close",
            "function_call"]
SERVER_TYPES = "123ACDEGHIKNRSTVWZcdnstv?"


def t_send(req, hidden=False, tag=False, client_tag=False):
    idx = REQUESTS.index(req)
    arg = idx + 9 if tag else idx
    assert not tag or idx < 7
    return bytes([(arg << 4) | (2 if hidden else 0) | (1 if client_tag else 0)])


def t_server(types, take_due=True):
    out = b""
    for t in types:
        k = SERVER_TYPES.index(t)
        out += bytes(((((k // 6) << 1) | (1 if take_due else 0)) << 4 | (4 + k % 6),))
    return out


T_SYNTHETIC, T_SYNTHETIC_TAGGED, T_TAKE_DUE, T_COLLECT, T_COPY_DONE, T_CLEAR = (
    b"\x0a", b"\x1a", b"\x0b", b"\x0c", b"\x0d", b"\x0e")


def tracker_seeds():
    pbes = t_send("parse") + t_send("bind") + t_send("describe_portal") + t_send("execute") + t_send("sync")
    return {
        "extended": pbes + t_server("12TDDCZ") + T_COLLECT,
        "hidden-parse": (t_send("parse", hidden=True, tag=True) + t_send("bind") + t_send("execute") +
                         t_send("sync") + t_server("12CZ") + T_COLLECT),
        "synthetic": (t_send("parse", client_tag=True) + T_SYNTHETIC_TAGGED + t_send("bind") + t_send("sync") +
                      T_TAKE_DUE + t_server("1") + T_TAKE_DUE + t_server("2Z") + T_COLLECT),
        "error-skips": (t_send("parse", tag=True) + t_send("bind") + t_send("execute") + t_send("sync") +
                        t_send("parse", hidden=True, tag=True) + t_server("E") + T_COLLECT + t_server("Z1")),
        "error-no-sync": (t_send("bind") + t_server("E") + t_send("execute") + t_send("sync") +
                          t_server("Z") + T_COLLECT),
        "query": (t_send("query", tag=True) + t_send("query", hidden=True) + t_server("TDCNZ") +
                  t_server("ECZ") + T_COLLECT),
        "copy-in": (t_send("bind") + t_send("execute") + t_send("sync") + t_server("2G") + T_COPY_DONE +
                    t_send("sync") + t_server("CZ")),
        "function": t_send("function_call") + t_server("VZ") + t_send("close", hidden=True) + t_server("3"),
        "clear": t_send("parse", hidden=True, tag=True) + T_SYNTHETIC + T_CLEAR + t_send("sync") + t_server("Z"),
    }


def scram_seeds():
    cb_header = "p=tls-server-end-point,,"
    cbind = base64.b64encode(cb_header.encode() + CB_DATA).decode()
    nonce = CLIENT_NONCE + SERVER_NONCE
    return {
        # ScramServer (mode bit 0 = 0)
        "server-rfc7677": b"\x00" + CLIENT_FIRST.encode() + b"\0" + CLIENT_FINAL.encode(),
        "server-mock": b"\x10" + CLIENT_FIRST.encode() + b"\0" + CLIENT_FINAL.encode(),
        "server-plus": (b"\x0a" + (cb_header + "n=,r=" + CLIENT_NONCE).encode() + b"\0" +
                        ("c=" + cbind + ",r=" + nonce + ",p=" + "A" * 43 + "=").encode()),
        "server-downgrade": b"\x08" + ("y,,n=,r=" + CLIENT_NONCE).encode() + b"\0",
        "server-extensions": (b"\x00" + ("n,,n=user,r=" + CLIENT_NONCE + ",x=ext").encode() + b"\0" +
                              ("c=biws,r=" + nonce + ",x=1,p=" + "A" * 43 + "=").encode()),
        "server-authzid": b"\x00" + b"n,a=admin,n=user,r=abc\0",
        "server-mechanism-text": b"\x06" + b"SCRAM-SHA-256,n,,n=,r=x\0",
        "server-out-of-order": b"\x20" + CLIENT_FIRST.encode() + b"\0" + CLIENT_FINAL.encode(),
        # ScramClient (mode bit 0 = 1)
        "client-rfc7677": b"\x01" + SERVER_FIRST.encode() + b"\0" + SERVER_FINAL.encode(),
        "client-server-error": b"\x01" + SERVER_FIRST.encode() + b"\0e=invalid-proof",
        "client-plus": b"\x09" + SERVER_FIRST.encode() + b"\0" + SERVER_FINAL.encode(),
        "client-bad-nonce": b"\x01" + b"r=other,s=" + SALT_B64.encode() + b",i=4096\0v=",
        "client-ext": b"\x01" + (SERVER_FIRST + ",z=1").encode() + b"\0" + (SERVER_FINAL + ",y=2").encode(),
    }


def userlist_seeds():
    verifier = scram_verifier("pencil", base64.b64decode(SALT_B64))
    return {
        "userlist": ('# comment\n; another\n\n"alice" "%s"\n"bob" "md5%s"\n'
                     '"carol" "plain ""quoted"" pw" extra fields\n  "dave"\t""\r\n' %
                     (verifier, hashlib.md5(b"secretbob").hexdigest())).encode(),
        "userlist-bom": b"\xef\xbb\xbf\"u\" \"p\"\n",
        "userlist-bad-verifier": b'"eve" "SCRAM-SHA-256$4096:xx$yy:zz"\n',
        "userlist-unterminated": b'"frank" "secret\n',
        "verifier": verifier.encode(),
        "verifier-empty-salt": ("SCRAM-SHA-256$1:$%s:%s" % (verifier.split("$")[2].split(":")[0],
                                                             verifier.split(":")[-1])).encode(),
        "base64": SALT_B64.encode(),
        "base64-pad2": b"YQ==",
        "md5": b"md5" + hashlib.md5(b"x").hexdigest().encode(),
    }


def config_seeds():
    with open(os.path.join(ROOT, "packaging", "pgmux.example.toml"), "rb") as f:
        example = f.read()
    return {
        "example": example,
        "minimal": b'[auth]\ntype = "trust"\n\n[databases.app]\n',
        "routing": (b'[pgmux]\nlisten = ["127.0.0.1:6432", "unix:/tmp/.s.PGSQL.6432"]\npool_mode = "session"\n'
                    b'server_lifetime = "1h"\nquery_timeout = "250ms"\nmax_packet_size = "16MB"\n'
                    b'[auth]\ntype = "md5"\nfile = "userlist.txt"\n[tls]\nmode = "require"\n'
                    b'cert = "server.crt"\nkey = "server.key"\n[admin]\nusers = ["admin"]\n'
                    b'metrics_listen = "127.0.0.1:9127"\n[log]\nlevel = "debug"\n'
                    b'[databases.app]\nhost = "10.0.0.1"\nport = 5432\nreplicas = ["10.0.0.2:5432", "[::1]:5433"]\n'
                    b'read_routing = "auto"\nmax_replica_lag = "10s"\n[databases."*"]\nhost = "/var/run/postgresql"\n'
                    b'[users.alice]\npool_mode = "statement"\n'),
        "inline": b"[databases]\napp = { host = 'h', port = 1, pool_size = 5 }\n[auth]\ntype = \"trust\"\n",
        "strings": (b'[pgmux]\nserver_reset_query = """\nDISCARD ALL"""\n'
                    b"server_check_query = '''select 1'''\n" b'[databases.app]\ndbname = "d\\u00e9"\n'),
        "errors": b"[pgmux]\nworkers = -1\ndefualt_pool_size = 5\n[[databases]]\n",
        "durations": b"15s",
        "bytes": b"1536kB",
        # short inputs also drive apply_setting (console SET)
        "set-int": b"default_pool_size='5'",
        "set-string": b"server_reset_query='SELECT ''x'''",
    }


def pgbouncer_ini_seeds():
    with open(os.path.join(ROOT, "tests", "unit", "conf", "data", "pgbouncer_sample.ini"), "rb") as f:
        sample = f.read()
    return {
        "sample": sample,
        "minimal": b"[databases]\napp = host=127.0.0.1 dbname=app\n[pgbouncer]\nlisten_port = 6432\n",
        "values": (b"[pgbouncer]\nquery_timeout = 0.5\nserver_lifetime = 0x10\nmax_client_conn = 010\n"
                   b"log_connections = yes\nlog_disconnections = off\nserver_tls_sslmode = verify-full\n"
                   b"%include /etc/pgbouncer/extra.ini\nunknown_setting = 1\n"
                   b"[databases]\n'q''db' = host=h password='a b''c' auth_user=x\n"
                   b"[users]\nu = pool_mode=statement\n[peers]\n1 = host=h2\n"),
        "listen": b"[pgbouncer]\nlisten_addr = *\nunix_socket_dir =\n[databases]\n* = host=/tmp\n",
    }


TARGETS = {
    "fuzz_frame": frame_seeds,
    "fuzz_startup": startup_seeds,
    "fuzz_inspect": inspect_seeds,
    "fuzz_sql": sql_seeds,
    "fuzz_tracker": tracker_seeds,
    "fuzz_scram": scram_seeds,
    "fuzz_userlist": userlist_seeds,
    "fuzz_config": config_seeds,
    "fuzz_pgbouncer_ini": pgbouncer_ini_seeds,
}


# --- dictionaries: dict/<target>.dict ----------------------------------------

PROTO_WORDS = [b"\0\0\0\x04", b"\0\0\0\x05", b"\0\0\0\x08", b"\0\0\0\x10", b"\xff\xff\xff\xff",
               b"\x7f\xff\xff\xff", b"\0\0", b"\xff\xff", b"\0\x01", u32(196608), u32(80877103),
               u32(80877102), u32(80877104), i32(10), i32(11), i32(12)]
CONFIG_KEYS = """auth_failure_delay ca cert ciphers client_idle_timeout client_login_timeout connect_query
    connections dbname default_pool_size disconnections file hba_file health_check_interval
    health_check_password health_check_timeout health_check_user host idle_transaction_timeout key level
    listen load_balance max_client_conn max_concurrent_logins max_db_connections max_packet_size
    max_prepared_statements max_replica_lag max_startup_params max_user_connections metrics_listen
    min_pool_size mode password pool_mode pool_size port protocols query query_timeout query_user
    query_wait_timeout read_routing read_your_writes replica_fallback replicas reserve_pool_size
    reserve_pool_timeout server_check_delay server_check_query server_connect_timeout server_idle_timeout
    server_lifetime server_login_retry server_pipelining server_reset_query server_reset_query_always
    shutdown_timeout stats_period stats_users target_session_attrs tcp_keepalive tcp_keepcnt tcp_keepidle tcp_keepintvl
    tcp_user_timeout type user users workers""".split()
INI_KEYS = """logfile pidfile listen_addr listen_port unix_socket_dir auth_type auth_file auth_query auth_user
    admin_users stats_users pool_mode server_reset_query server_reset_query_always server_check_query
    server_check_delay max_client_conn default_pool_size min_pool_size reserve_pool_size reserve_pool_timeout
    max_db_connections max_user_connections max_prepared_statements server_lifetime server_idle_timeout
    server_connect_timeout server_login_retry query_timeout query_wait_timeout client_idle_timeout
    client_login_timeout idle_transaction_timeout log_connections log_disconnections client_tls_sslmode
    client_tls_key_file client_tls_cert_file server_tls_sslmode ignore_startup_parameters host port dbname
    user password pool_size reserve_pool connect_query client_encoding datestyle timezone tcp_keepalive
    tcp_keepcnt tcp_keepidle tcp_keepintvl tcp_user_timeout log_stats stats_period""".split()
SQL_WORDS = """SELECT select FROM WHERE INTO INSERT UPDATE DELETE MERGE WITH RECURSIVE AS VALUES TABLE SHOW
    ALL EXPLAIN ANALYZE VERBOSE FOR SHARE KEY NO BEGIN START TRANSACTION WORK ISOLATION LEVEL
    SERIALIZABLE REPEATABLE READ COMMITTED UNCOMMITTED WRITE ONLY NOT DEFERRABLE PREPARE EXECUTE
    DEALLOCATE DISCARD COMMIT ROLLBACK END ABORT CHAIN SAVEPOINT PREPARED set_config UNION UESCAPE SET RESET
    SESSION LOCAL myapp.tenant . ; , ( ) ' '' " "" $$ $a$ E' U&' B' X' U&" \\ \\' -- /*
    */ $1 ::""".split()
TOML_WORDS = ["[pgmux]", "[auth]", "[tls]", "[server_tls]", "[admin]", "[log]", "[databases.app]",
              "[users.alice]", "[[", "]]", " = ", '"', "'", '"' * 3, "'" * 3, "{", "}", "[", "]", ",", ".",
              "#", "\n", "\\u00e9", "true", "false", "15s", "10min", "1h", "250ms", "2d", "16MB", "trust",
              "md5", "scram-sha-256", "transaction", "session", "statement", "auto", "explicit", "require",
              "verify-full", "unix:/tmp/.s.PGSQL.6432", "127.0.0.1:6432", "[::1]:5432",
              "1979-05-27T07:32:00Z", "0x10", "1e3", "inf", "nan", b"\xc3\xa9"]
INI_WORDS = ["[pgbouncer]", "[databases]", "[users]", "[peers]", "%include ", " = ", "=", "'", "''", '"',
             ";", "#", "*", "0x", "0.5", "yes", "off", "disable", "verify-full", "scram-sha-256", "hba",
             "/tmp", "\n"]

DICTS = {
    "fuzz_frame": ("message type bytes and big-endian lengths",
                   [c.encode() for c in "QPBDESCHFdcfpX123ACGHIKNRSTVWZnstv"] + PROTO_WORDS),
    "fuzz_startup": ("request codes, lengths, parameter names",
                     PROTO_WORDS + [cs("user"), cs("database"), cs("options"), cs("application_name"),
                                    cs("replication"), b"_pq_."]),
    "fuzz_inspect": ("field codes, counts, lengths, auth codes",
                     PROTO_WORDS + [b"S", b"V", b"C", b"M", b"D", b"H", b"P", cs("ERROR"), cs("FATAL"),
                                    cs("SCRAM-SHA-256"), cs("SCRAM-SHA-256-PLUS"), u32(23), u32(25), i16(25)]),
    "fuzz_sql": ("keywords and lexical tokens", SQL_WORDS + ["\n", "SELECT 5", "INSERT 0 1", "\x82\\"]),
    "fuzz_scram": ("attribute names, flags, RFC 7677 values",
                   ["n,,", "y,,", "p=tls-server-end-point,,", "n=", "r=", "s=", "i=", "c=", "p=", "v=", "e=",
                    "m=", "a=", "biws", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", CLIENT_NONCE, SERVER_NONCE,
                    SALT_B64, "4096", "=", "==", ","]),
    "fuzz_userlist": ("userlist syntax, verifier parts, base64 padding",
                      ['"', '""', '" "', "\n", "\r\n", "#", ";", "SCRAM-SHA-256$", "$", ":", "md5", "==", "=",
                       "4096", b"\xef\xbb\xbf"]),
    "fuzz_config": ("pgmux keys, tables, TOML tokens and values", CONFIG_KEYS + TOML_WORDS),
    "fuzz_pgbouncer_ini": ("sections, settings, connection string keys, values", INI_KEYS + INI_WORDS),
}


def dict_entry(word):
    b = word if isinstance(word, bytes) else word.encode("latin-1")
    return '"' + "".join(chr(c) if 0x20 <= c < 0x7F and chr(c) not in '"\\' else "\\x%02x" % c
                         for c in b) + '"'


def write_dicts():
    d = os.path.join(HERE, "dict")
    os.makedirs(d, exist_ok=True)
    for target, (what, words) in DICTS.items():
        with open(os.path.join(d, target + ".dict"), "w") as f:
            f.write("# %s: %s (written by make_seeds.py)\n" % (target, what))
            for w in words:
                f.write(dict_entry(w) + "\n")


def main():
    for target, make in TARGETS.items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if name.startswith("seed-"):
                os.remove(os.path.join(d, name))
        for name, data in make().items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
    write_dicts()
    return 0


if __name__ == "__main__":
    sys.exit(main())
