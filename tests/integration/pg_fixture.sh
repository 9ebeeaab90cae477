#!/usr/bin/env bash
# Throwaway PostgreSQL for the integration tests and the demo.
#
#   pg_fixture.sh start DIR [--replica]   start a primary (and a streaming replica)
#   pg_fixture.sh stop DIR                stop both and delete their data
#   pg_fixture.sh ctl DIR ACTION          stop-primary | start-primary |
#                                         stop-replica | start-replica |
#                                         promote-replica (routing tests) |
#                                         enable-ssl CERT KEY (TLS tests)
#
# DIR receives `env`, a shell-sourceable KEY='VALUE' file the tests read
# (PG_HOST, PG_PORT, PG_SOCKET_DIR, PG_BIN, PG_DATA, the password verifiers
# copied from pg_authid, and REPLICA_PORT/REPLICA_DATA with --replica).
#
# initdb and postgres refuse to run as root: as root they run as the `postgres`
# user. The data directories and the unix socket live under DIR when the
# postgres user can reach it and the path is short enough for a socket name
# (107 bytes), else under a fresh mktemp directory in /tmp whose path is
# recorded in DIR/state so that `stop` removes it.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [--replica] | stop DIR | ctl DIR ACTION" >&2
  exit 2
}

log() { echo "pg_fixture: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_pg_bin() {
  if [[ -n "${PG_BIN:-}" && -x "${PG_BIN}/postgres" ]]; then
    echo "$PG_BIN"; return
  fi
  if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
    echo /usr/lib/postgresql/15/bin; return
  fi
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/postgres" ]] && best="$d"
  done
  if [[ -z "$best" ]] && command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir)"
    [[ -x "$d/postgres" ]] && best="$d"
  fi
  [[ -n "$best" ]] || die "no PostgreSQL server binaries found (install postgresql-15)"
  echo "$best"
}

# The user that owns the data directories and runs the server.
RUN_USER="$(id -un)"
if [[ "$(id -u)" == 0 ]]; then
  RUN_USER=postgres
fi

# Runs a command as RUN_USER, from a directory it can enter.
as_pg() {
  if [[ "$(id -u)" != 0 ]]; then
    (cd / && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u "$RUN_USER" -- "$@")
  elif command -v setpriv >/dev/null 2>&1; then
    (cd / && setpriv --reuid="$RUN_USER" --regid="$(id -g "$RUN_USER")" --init-groups -- "$@")
  else
    local q="" a
    for a in "$@"; do q+=" $(printf '%q' "$a")"; done
    (cd / && su -s /bin/sh "$RUN_USER" -c "$q")
  fi
}

ensure_run_user() {
  [[ "$(id -u)" == 0 ]] || return 0
  if ! id "$RUN_USER" >/dev/null 2>&1; then
    log "creating system user $RUN_USER"
    useradd --system --no-create-home --home-dir /var/lib/postgresql --shell /bin/bash "$RUN_USER"
  fi
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  # Fallback: a port in a test-owned range that nothing answers on.
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + (RANDOM % 20000) ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"; return
    fi
  done
  die "no free port found"
}

# Single-quote a value for a shell-sourceable file.
shq() {
  local v=${1//\'/\'\\\'\'}
  printf "'%s'" "$v"
}

psql_super() {  # psql_super PORT DB [psql args...]
  local port=$1 db=$2; shift 2
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$port" -U postgres -d "$db" "$@"
}

# Starts the cluster in $1 (already configured for its port); retries are the
# caller's business. Returns non-zero if the server did not come up.
pg_start_cluster() {
  local data=$1
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/postgres.log" -w -t 60 -s start >/dev/null || {
    log "server in $data failed to start; log follows"
    tail -n 30 "$data/postgres.log" >&2 || true
    return 1
  }
}

pg_stop_cluster() {
  local data=$1
  [[ -d "$data" ]] || return 0
  if [[ -f "$data/postmaster.pid" ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 -s stop >/dev/null 2>&1 || true
    if [[ -f "$data/postmaster.pid" ]]; then
      local pid
      pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
      if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
}

cmd_stop() {
  local dir=$1
  [[ -d "$dir" ]] || return 0
  PG_BIN="$(find_pg_bin)"
  local base="" tmpbase=""
  if [[ -f "$dir/state" ]]; then
    # shellcheck disable=SC1091
    base="$(. "$dir/state"; echo "${FIXTURE_BASE:-}")"
    # shellcheck disable=SC1091
    tmpbase="$(. "$dir/state"; echo "${FIXTURE_TMPBASE:-}")"
  fi
  [[ -n "$base" ]] || base="$dir"
  pg_stop_cluster "$base/replica"
  pg_stop_cluster "$base/primary"
  rm -rf "$base/replica" "$base/primary" "$base/sock" "$base/initdb.log" "$base/basebackup.log"
  if [[ -n "$tmpbase" && -d "$tmpbase" && "$tmpbase" == /tmp/* ]]; then
    rm -rf "$tmpbase"
  fi
  rm -f "$dir/env" "$dir/state"
  return 0
}

cmd_start() {
  local dir=$1 replica=$2
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd -P)"
  cmd_stop "$dir"  # leftovers of an earlier run
  ensure_run_user
  PG_BIN="$(find_pg_bin)"

  # Where the data and the socket go: under DIR if the server user can reach
  # it and socket names stay short, else under a fresh directory in /tmp.
  local base="$dir" tmpbase=""
  if [[ "$(id -u)" == 0 ]]; then
    chown "$RUN_USER" "$dir" 2>/dev/null || true
  fi
  if (( ${#dir} > 70 )) || ! as_pg test -w "$dir" -a -x "$dir" 2>/dev/null; then
    tmpbase="$(mktemp -d /tmp/pgmux-pg.XXXXXX)"
    base="$tmpbase"
    if [[ "$(id -u)" == 0 ]]; then chown "$RUN_USER" "$base"; fi
  fi
  {
    echo "FIXTURE_BASE=$(shq "$base")"
    echo "FIXTURE_TMPBASE=$(shq "$tmpbase")"
  } >"$dir/state"

  SOCK_DIR="$base/sock"
  local primary="$base/primary" replica_dir="$base/replica"
  as_pg mkdir -p "$SOCK_DIR"
  as_pg chmod 0755 "$SOCK_DIR"

  as_pg "$PG_BIN/initdb" -D "$primary" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync --no-instructions >"$base/initdb.log" 2>&1 || {
    cat "$base/initdb.log" >&2
    die "initdb failed"
  }

  as_pg tee "$primary/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE     USER        ADDRESS        METHOD
local   all          postgres                   trust
host    all          postgres    127.0.0.1/32   trust
host    all          trust_user  127.0.0.1/32   trust
host    all          md5_user    127.0.0.1/32   md5
host    all          all         127.0.0.1/32   scram-sha-256
host    replication  postgres    127.0.0.1/32   trust
EOF

  local port="" attempt
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    as_pg tee -a "$primary/postgresql.conf" >/dev/null <<EOF

# --- pg_fixture.sh (attempt $attempt) ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SOCK_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 32MB
password_encryption = 'scram-sha-256'
wal_level = replica
max_wal_senders = 5
hot_standby = on
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = on
EOF
    if pg_start_cluster "$primary"; then break; fi
    port=""
    log "retrying with another port"
  done
  [[ -n "$port" ]] || die "could not start the primary"

  psql_super "$port" postgres <<'EOF'
CREATE DATABASE app;
CREATE DATABASE app2;
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user LOGIN PASSWORD 'scram_pw';
CREATE ROLE cancel_user LOGIN PASSWORD 'cancel_pw';
CREATE ROLE trust_user LOGIN;
SET password_encryption = 'md5';
CREATE ROLE md5_user LOGIN PASSWORD 'md5_pw';
GRANT ALL ON DATABASE app, app2 TO scram_user, md5_user, trust_user, cancel_user;
EOF
  local db
  for db in app app2; do
    psql_super "$port" "$db" -c \
      'GRANT ALL ON SCHEMA public TO scram_user, md5_user, trust_user, cancel_user;'
  done

  local scram_verifier md5_hash cancel_verifier
  scram_verifier="$(psql_super "$port" postgres -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'")"
  md5_hash="$(psql_super "$port" postgres -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'")"
  cancel_verifier="$(psql_super "$port" postgres -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'cancel_user'")"
  [[ "$scram_verifier" == SCRAM-SHA-256\$* ]] || die "unexpected verifier for scram_user: $scram_verifier"
  [[ "$md5_hash" == md5* ]] || die "unexpected hash for md5_user: $md5_hash"

  local rport=""
  if [[ "$replica" == 1 ]]; then
    as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$replica_dir" \
      -R --checkpoint=fast -X stream >"$base/basebackup.log" 2>&1 || {
      cat "$base/basebackup.log" >&2
      die "pg_basebackup failed"
    }
    rm -f "$replica_dir/postgres.log"
    for attempt in 1 2 3 4 5; do
      rport="$(free_port)"
      as_pg tee -a "$replica_dir/postgresql.conf" >/dev/null <<EOF

# --- pg_fixture.sh replica (attempt $attempt) ---
port = $rport
EOF
      if pg_start_cluster "$replica_dir"; then break; fi
      rport=""
      log "retrying the replica with another port"
    done
    [[ -n "$rport" ]] || die "could not start the replica"
    local rec
    rec="$(psql_super "$rport" postgres -Atc 'SELECT pg_is_in_recovery()')"
    [[ "$rec" == t ]] || die "replica is not in recovery (pg_is_in_recovery = $rec)"
    # Wait until it streams, so tests see replication working from the start.
    local streaming=""
    for _ in $(seq 1 100); do
      streaming="$(psql_super "$port" postgres -Atc "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")"
      [[ "$streaming" -ge 1 ]] && break
      sleep 0.1
    done
    [[ "$streaming" -ge 1 ]] || die "replica does not stream from the primary"
  fi

  local tmp="$dir/env.tmp"
  {
    echo "PG_HOST=$(shq 127.0.0.1)"
    echo "PG_PORT=$(shq "$port")"
    echo "PG_SOCKET_DIR=$(shq "$SOCK_DIR")"
    echo "PG_BIN=$(shq "$PG_BIN")"
    echo "PG_DATA=$(shq "$primary")"
    echo "SCRAM_USER_VERIFIER=$(shq "$scram_verifier")"
    echo "MD5_USER_HASH=$(shq "$md5_hash")"
    echo "CANCEL_USER_VERIFIER=$(shq "$cancel_verifier")"
    if [[ -n "$rport" ]]; then
      echo "REPLICA_PORT=$(shq "$rport")"
      echo "REPLICA_DATA=$(shq "$replica_dir")"
    fi
  } >"$tmp"
  mv "$tmp" "$dir/env"
  chmod 0644 "$dir/env"
  log "primary on 127.0.0.1:$port${rport:+, replica on 127.0.0.1:$rport}; env in $dir/env"
}

cmd_ctl() {
  local dir=$1 what=$2
  [[ -f "$dir/state" ]] || die "no fixture in $dir"
  PG_BIN="$(find_pg_bin)"
  local base
  # shellcheck disable=SC1091
  base="$(. "$dir/state"; echo "${FIXTURE_BASE:-}")"
  case "$what" in
    stop-primary) as_pg "$PG_BIN/pg_ctl" -D "$base/primary" -m fast -w -t 30 -s stop ;;
    start-primary) pg_start_cluster "$base/primary" ;;
    stop-replica) as_pg "$PG_BIN/pg_ctl" -D "$base/replica" -m fast -w -t 30 -s stop ;;
    start-replica) pg_start_cluster "$base/replica" ;;
    promote-replica) as_pg "$PG_BIN/pg_ctl" -D "$base/replica" -w -t 30 -s promote ;;
    enable-ssl)
      # ssl = on for the primary with the given certificate and key (copied
      # into its data directory, owned by the server user, key mode 0600).
      # With a CA: client certificates signed by it are checked, and md5_user
      # must present one whose CN is md5_user (clientcert=verify-full).
      local cert=${3:-} key=${4:-} ca=${5:-}
      [[ -r "$cert" && -r "$key" ]] || die "enable-ssl needs readable CERT and KEY"
      as_pg tee "$base/primary/server.crt" <"$cert" >/dev/null
      as_pg tee "$base/primary/server.key" <"$key" >/dev/null
      as_pg chmod 600 "$base/primary/server.key"
      printf "%s\n" "ssl = on" "ssl_cert_file = 'server.crt'" "ssl_key_file = 'server.key'" |
        as_pg tee -a "$base/primary/postgresql.conf" >/dev/null
      if [[ -n "$ca" ]]; then
        as_pg tee "$base/primary/root.crt" <"$ca" >/dev/null
        echo "ssl_ca_file = 'root.crt'" | as_pg tee -a "$base/primary/postgresql.conf" >/dev/null
        { echo "hostssl all md5_user 127.0.0.1/32 md5 clientcert=verify-full"; cat "$base/primary/pg_hba.conf"; } \
          >"$base/pg_hba.new"
        as_pg tee "$base/primary/pg_hba.conf" <"$base/pg_hba.new" >/dev/null
        rm -f "$base/pg_hba.new"
      fi
      as_pg "$PG_BIN/pg_ctl" -D "$base/primary" -s reload
      ;;
    *) usage ;;
  esac
}

[[ $# -ge 2 ]] || usage
action=$1
dir=$2
shift 2
if [[ "$action" == ctl ]]; then
  [[ $# -ge 1 ]] || usage
  cmd_ctl "$dir" "$@"
  exit
fi
want_replica=0
for arg in "$@"; do
  case "$arg" in
    --replica) want_replica=1 ;;
    *) usage ;;
  esac
done

case "$action" in
  start)
    # On any failure (die, set -e) leave nothing running behind.
    # shellcheck disable=SC2154
    trap 'rc=$?; if [[ $rc != 0 ]]; then log "start failed, cleaning up"; cmd_stop "$dir" || true; fi; exit $rc' EXIT
    cmd_start "$dir" "$want_replica"
    ;;
  stop) cmd_stop "$dir" ;;
  *) usage ;;
esac
