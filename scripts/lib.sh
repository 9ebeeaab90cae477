# Shared by scripts/test and scripts/demo: `source scripts/lib.sh`.
# shellcheck shell=bash

# shellcheck disable=SC2034  # used by the scripts that source this file
PGMUX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages needed to build pgmux, run its tests and its demo.
PGMUX_DEPS=(
  build-essential cmake pkg-config
  libuv1-dev libssl-dev libtoml11-dev libspdlog-dev catch2 libpq-dev
  postgresql-15 postgresql-client-15 pgbouncer python3
  python3-asyncpg python3-psycopg default-jre-headless libpostgresql-jdbc-java
  golang-go golang-github-jackc-pgx-v4-dev
  dpkg-dev systemd adduser
  iproute2
)

pgmux_log() { echo "==> $*" >&2; }

# The libFuzzer stage of scripts/test: clang, and the compiler-rt runtimes
# (libFuzzer, ASan, UBSan for clang), which clang only recommends.
# shellcheck disable=SC2034  # used by scripts/test
PGMUX_FUZZ_DEPS=(clang libclang-rt-dev)

# Installs the given packages (default: PGMUX_DEPS) that are missing
# (apt-get update only when something is). Needs root, or sudo.
pgmux_install_deps() {
  local wanted=("$@") missing=() p
  if [[ ${#wanted[@]} -eq 0 ]]; then
    wanted=("${PGMUX_DEPS[@]}")
  fi
  for p in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "missing packages: ${missing[*]}" >&2
      echo "run as root (or install sudo) so they can be installed with apt-get" >&2
      return 1
    fi
  fi
  pgmux_log "installing: ${missing[*]}"
  # Installing postgresql-15 may create and start a cluster on port 5432 in
  # some environments; harmless, the tests and the demo use their own.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
}

pgmux_nproc() {
  nproc 2>/dev/null || echo 2
}

# A TCP port on 127.0.0.1 that is free right now.
pgmux_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$1 accepts connections; gives up after $2 seconds or
# when process $3 (optional) exits.
pgmux_wait_port() {
  local port=$1 timeout=${2:-10} pid=${3:-} i
  for ((i = 0; i < timeout * 20; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.05
  done
  return 1
}
