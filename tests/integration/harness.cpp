#include "harness.hpp"

#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>

#ifndef PGMUX_DEFAULT_BIN
#define PGMUX_DEFAULT_BIN ""
#endif
#ifndef PGMUX_DEFAULT_FIXTURE_ENV
#define PGMUX_DEFAULT_FIXTURE_ENV ""
#endif

namespace it {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Temp dirs of the pgmux instances of the running test case: kept (and their
// logs printed) when the test case failed, removed when it passed.

namespace {

std::mutex g_dirs_mutex;
std::vector<std::string> g_test_dirs;

void register_test_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(g_dirs_mutex);
  g_test_dirs.push_back(dir);
}

std::string tail_lines(const std::string& text, size_t max_lines) {
  size_t pos = text.size();
  size_t lines = 0;
  while (pos > 0) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    if (nl + 1 < text.size() && ++lines > max_lines) return "...\n" + text.substr(nl + 1);
    pos = nl;
  }
  return text;
}

struct PgmuxLogListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(Catch::TestCaseInfo const&) override {
    std::lock_guard<std::mutex> lock(g_dirs_mutex);
    g_test_dirs.clear();
  }

  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    bool failed = stats.totals.assertions.failed > 0 || stats.totals.testCases.failed > 0;
    bool keep_all = std::getenv("PGMUX_KEEP_TMP") != nullptr;
    std::vector<std::string> dirs;
    {
      std::lock_guard<std::mutex> lock(g_dirs_mutex);
      dirs.swap(g_test_dirs);
    }
    for (const auto& dir : dirs) {
      if (failed) {
        std::string log;
        try {
          log = read_file(dir + "/pgmux.log");
        } catch (...) {
        }
        std::cerr << "\n---- pgmux log " << dir << "/pgmux.log (kept) ----\n"
                  << tail_lines(log, 300) << "\n---- end of pgmux log ----\n";
      } else if (!keep_all) {
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
    }
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(PgmuxLogListener)

// ---------------------------------------------------------------------------
// Utilities

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

static std::string make_temp_dir(const char* prefix) {
  std::string tmpl = std::string("/tmp/") + prefix + "XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  return std::string(buf.data());
}

TempDir::TempDir() : path_(make_temp_dir("pgmux-it.")) {}

TempDir::~TempDir() {
  if (!keep_ && std::getenv("PGMUX_KEEP_TMP") == nullptr) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

std::map<std::string, std::string> parse_env_file(std::string_view text) {
  std::map<std::string, std::string> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(line.substr(0, eq));
    std::string value;
    // Shell words: '...' literal, "..." with \-escapes, \x, plain characters.
    for (size_t i = eq + 1; i < line.size(); ++i) {
      char c = line[i];
      if (c == '\'') {
        size_t end = line.find('\'', i + 1);
        if (end == std::string::npos) end = line.size();
        value += line.substr(i + 1, end - i - 1);
        i = end;
      } else if (c == '"') {
        for (++i; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) ++i;
          value += line[i];
        }
      } else if (c == '\\' && i + 1 < line.size()) {
        value += line[++i];
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        break;
      } else {
        value += c;
      }
    }
    out[key] = value;
  }
  return out;
}

namespace {

// Keep libpq and the client programs from picking up the caller's settings.
void make_libpq_env_hermetic() {
  for (const char* v :
       {"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE",
        "PGSERVICEFILE", "PGOPTIONS", "PGSSLMODE", "PGREQUIRESSL", "PGGSSENCMODE", "PGAPPNAME",
        "PGCONNECT_TIMEOUT", "PGTARGETSESSIONATTRS", "PGCHANNELBINDING", "PGSSLCERT", "PGSSLKEY",
        "PGSSLROOTCERT", "PGCLIENTENCODING", "PGTZ", "PGDATESTYLE"}) {
    unsetenv(v);
  }
  setenv("PGPASSFILE", "/nonexistent/pgpass", 1);
}

int env_int(const std::map<std::string, std::string>& vars, const char* key) {
  auto it = vars.find(key);
  if (it == vars.end() || it->second.empty()) return 0;
  return std::atoi(it->second.c_str());
}

std::string env_str(const std::map<std::string, std::string>& vars, const char* key) {
  auto it = vars.find(key);
  return it == vars.end() ? std::string() : it->second;
}

}  // namespace

const FixtureEnv& fixture() {
  static std::mutex m;
  static std::unique_ptr<FixtureEnv> env;
  std::lock_guard<std::mutex> lock(m);
  if (env) return *env;

  const char* p = std::getenv("PGMUX_FIXTURE_ENV");
  std::string path = (p && *p) ? p : PGMUX_DEFAULT_FIXTURE_ENV;
  std::string text;
  try {
    text = read_file(path);
  } catch (...) {
    FAIL("PostgreSQL fixture env file '"
         << path
         << "' is missing. Start the fixture with `tests/integration/pg_fixture.sh start DIR "
            "--replica` and set PGMUX_FIXTURE_ENV=DIR/env (ctest does both).");
  }
  make_libpq_env_hermetic();
  auto e = std::make_unique<FixtureEnv>();
  e->path = path;
  e->vars = parse_env_file(text);
  e->pg_host = env_str(e->vars, "PG_HOST");
  if (e->pg_host.empty()) e->pg_host = "127.0.0.1";
  e->pg_port = env_int(e->vars, "PG_PORT");
  e->pg_socket_dir = env_str(e->vars, "PG_SOCKET_DIR");
  e->pg_bin = env_str(e->vars, "PG_BIN");
  e->pg_data = env_str(e->vars, "PG_DATA");
  e->scram_user_verifier = env_str(e->vars, "SCRAM_USER_VERIFIER");
  e->md5_user_hash = env_str(e->vars, "MD5_USER_HASH");
  e->cancel_user_verifier = env_str(e->vars, "CANCEL_USER_VERIFIER");
  e->replica_port = env_int(e->vars, "REPLICA_PORT");
  e->replica_data = env_str(e->vars, "REPLICA_DATA");
  if (e->pg_port == 0 || e->pg_bin.empty() || e->scram_user_verifier.empty()) {
    FAIL("fixture env file " << path << " is incomplete:\n" << text);
  }
  env = std::move(e);
  return *env;
}

PrivateCluster::PrivateCluster() {
  auto r = run_process({"bash", PGMUX_FIXTURE_SCRIPT, "start", dir_.path(), "--replica"}, {}, 120s);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  started_ = true;
  auto vars = parse_env_file(read_file(dir_.file("env")));
  primary_port_ = std::atoi(vars["PG_PORT"].c_str());
  replica_port_ = std::atoi(vars["REPLICA_PORT"].c_str());
  socket_dir_ = vars["PG_SOCKET_DIR"];
  REQUIRE(primary_port_ > 0);
  REQUIRE(replica_port_ > 0);
}

PrivateCluster::~PrivateCluster() {
  if (started_) run_process({"bash", PGMUX_FIXTURE_SCRIPT, "stop", dir_.path()}, {}, 60s);
}

void PrivateCluster::ctl(const std::string& action, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"bash", PGMUX_FIXTURE_SCRIPT, "ctl", dir_.path(), action};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv, {}, 60s);
  INFO("pg_fixture.sh ctl " << action << ":\n" << r.output);
  REQUIRE(r.exit_code == 0);
}

std::string PrivateCluster::superuser_conninfo(bool replica, std::string_view db) const {
  return "host=" + conninfo_quote(socket_dir_) + " port=" +
         std::to_string(replica ? replica_port_ : primary_port_) + " user=postgres dbname=" +
         conninfo_quote(db);
}

const std::string& pgmux_bin() {
  static std::string bin;
  if (bin.empty()) {
    const char* p = std::getenv("PGMUX_BIN");
    std::string candidate = (p && *p) ? p : PGMUX_DEFAULT_BIN;
    if (candidate.empty() || access(candidate.c_str(), X_OK) != 0) {
      FAIL("PGMUX_BIN='" << candidate << "' is not an executable pgmux binary");
    }
    bin = candidate;
  }
  return bin;
}

int free_port() {
  // A test-owned range below Linux's ephemeral ports (32768-60999), so the
  // port is not handed out as the source port of some outgoing connection
  // between this check and pgmux's bind.
  static std::mutex m;
  static std::mt19937 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(m);
  std::uniform_int_distribution<int> dist(15000, 29999);
  for (int attempt = 0; attempt < 200; ++attempt) {
    int port = dist(rng);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return port;
  }
  // Fall back to whatever the kernel picks.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("free_port: cannot bind");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// ---------------------------------------------------------------------------
// Processes

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& extra_env,
                          std::chrono::milliseconds timeout) {
  ProcessResult res;
  if (argv.empty()) return res;
  char out_tmpl[] = "/tmp/pgmux-it-out.XXXXXX";
  int out_fd = mkstemp(out_tmpl);
  if (out_fd < 0) throw std::runtime_error("mkstemp failed");
  unlink(out_tmpl);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) {
    ::close(out_fd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    for (const auto& [k, v] : extra_env) setenv(k.c_str(), v.c_str(), 1);
    execvp(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  auto deadline = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) break;
    if (Clock::now() >= deadline) {
      res.timed_out = true;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  if (!res.timed_out && WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  lseek(out_fd, 0, SEEK_SET);
  char buf[65536];
  ssize_t n;
  while ((n = ::read(out_fd, buf, sizeof buf)) > 0) res.output.append(buf, static_cast<size_t>(n));
  ::close(out_fd);
  return res;
}

// ---------------------------------------------------------------------------
// Config text

std::string auth_section(std::string_view type) {
  return "[auth]\ntype = \"" + std::string(type) + "\"\nfile = \"@USERLIST@\"\n";
}

std::string database_section(std::string_view name, std::string_view extra) {
  std::string s = "[databases." + std::string(name) + "]\nhost = \"@PG_HOST@\"\nport = @PG_PORT@\n";
  s += extra;
  if (!s.empty() && s.back() != '\n') s += '\n';
  return s;
}

std::string userlist_line(std::string_view user, std::string_view secret) {
  return "\"" + replace_all(std::string(user), "\"", "\"\"") + "\" \"" +
         replace_all(std::string(secret), "\"", "\"\"") + "\"\n";
}

std::string plaintext_userlist() {
  return userlist_line("scram_user", "scram_pw") + userlist_line("md5_user", "md5_pw") +
         userlist_line("cancel_user", "cancel_pw");
}

PgmuxConfig session_config(std::string_view auth_type, std::string userlist,
                           std::string extra_pgmux, std::string extra_rest) {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"session\"\n" + extra_pgmux;
  c.rest = auth_section(auth_type) + "\n" + database_section("app") + "\n" + extra_rest;
  c.userlist = std::move(userlist);
  return c;
}

// ---------------------------------------------------------------------------
// Pgmux

namespace {

bool tcp_accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string substitute(std::string text, const std::string& dir, int port) {
  const auto& fx = fixture();
  text = replace_all(std::move(text), "@USERLIST@", dir + "/userlist.txt");
  text = replace_all(std::move(text), "@DIR@", dir);
  text = replace_all(std::move(text), "@PG_HOST@", fx.pg_host);
  text = replace_all(std::move(text), "@PG_PORT@", std::to_string(fx.pg_port));
  text = replace_all(std::move(text), "@REPLICA_PORT@", std::to_string(fx.replica_port));
  text = replace_all(std::move(text), "@PORT@", std::to_string(port));
  return text;
}

}  // namespace

Pgmux::Pgmux(PgmuxConfig config) {
  pgmux_bin();  // fail early with a clear message
  dir_ = make_temp_dir("pgmux-it.");
  register_test_dir(dir_);
  write_file(dir_ + "/userlist.txt", config.userlist);
  // Port collisions are rare but possible; retry a few times on EADDRINUSE.
  for (int attempt = 1;; ++attempt) {
    port_ = config.port ? config.port : free_port();
    std::string cfg = "[pgmux]\nlisten = [\"" + config.listen_host + ":" + std::to_string(port_) + "\", \"unix:" +
                      unix_socket_path() + "\"]\n";
    if (!contains(config.pgmux, "shutdown_timeout")) cfg += "shutdown_timeout = \"2s\"\n";
    // PGMUX_TEST_WORKERS=N runs every test's pgmux with N workers (unless
    // the test sets its own).
    if (const char* w = std::getenv("PGMUX_TEST_WORKERS"); w && *w && !contains(config.pgmux, "workers"))
      cfg += std::string("workers = ") + w + "\n";
    cfg += substitute(config.pgmux, dir_, port_);
    if (!cfg.empty() && cfg.back() != '\n') cfg += '\n';
    cfg += "\n" + substitute(config.rest, dir_, port_);
    write_file(config_path(), cfg);
    ::unlink(log_path().c_str());
    start();
    auto deadline = Clock::now() + 10s;
    bool listening = false;
    while (Clock::now() < deadline) {
      if (!alive()) break;
      if (config.port ? contains(log_text(), "listening on " + config.listen_host + ":" + std::to_string(port_))
                      : tcp_accepts(port_)) {
        listening = true;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    if (listening) break;
    if (exited_) {
      std::string log = log_text();
      if (attempt < 3 && !config.port && (contains(log, "in use") || contains(log, "EADDRINUSE"))) continue;
      fail_start("pgmux exited during startup (wait status " + std::to_string(status_) + ")");
    }
    fail_start("pgmux did not accept TCP connections on port " + std::to_string(port_) +
               " within 10 s");
  }
  // The unix socket listens just after the TCP one. Its file exists from
  // bind on, before listen (a connection then is refused): pgmux's log line
  // comes after listen.
  wait_until([&] { return !alive() || contains(log_text(), "listening on unix:" + unix_socket_path()); }, 5s);
}

void Pgmux::start() {
  exited_ = false;
  status_ = 0;
  const std::string& bin = pgmux_bin();
  std::string cfg = config_path();
  std::string log = log_path();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Never outlive the test process (e.g. when ctest kills it on timeout).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (chdir(dir_.c_str()) != 0) _exit(126);
    execl(bin.c_str(), bin.c_str(), "--config", cfg.c_str(), static_cast<char*>(nullptr));
    dprintf(2, "exec %s: %s\n", bin.c_str(), std::strerror(errno));
    _exit(127);
  }
  pid_ = pid;
}

void Pgmux::fail_start(const std::string& why) {
  stop(1s);
  FAIL(why << "\nconfig " << config_path() << ":\n"
           << config_text() << "\nlog " << log_path() << ":\n"
           << log_text());
}

Pgmux::~Pgmux() {
  try {
    stop();
  } catch (...) {
  }
}

std::string Pgmux::unix_socket_path() const {
  return dir_ + "/.s.PGSQL." + std::to_string(port_);
}

std::string Pgmux::log_text() const {
  try {
    return read_file(log_path());
  } catch (...) {
    return {};
  }
}

std::string Pgmux::config_text() const {
  try {
    return read_file(config_path());
  } catch (...) {
    return {};
  }
}

std::string unique_suffix() {
  static std::atomic<int> counter{0};
  static const unsigned seed = std::random_device{}();
  return std::to_string(getpid()) + "_" + std::to_string(seed % 100000) + "_" +
         std::to_string(counter++);
}

ScratchDatabase::ScratchDatabase(std::string_view tag) : name_("it_" + std::string(tag) + "_" + unique_suffix()) {
  auto su = superuser();
  exec(su.get(), "CREATE DATABASE " + name_ + " OWNER scram_user");
  exec(su.get(), "GRANT ALL ON DATABASE " + name_ + " TO cancel_user, md5_user, trust_user");
  auto in_db = superuser(name_);
  exec(in_db.get(), "GRANT ALL ON SCHEMA public TO cancel_user, md5_user, trust_user");
}

ScratchDatabase::~ScratchDatabase() {
  Conn su = connect_raw(superuser_conninfo());
  if (PQstatus(su.get()) == CONNECTION_OK) try_exec(su.get(), "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
}

void ScratchDatabase::pgbench_init() const {
  const auto& fx = fixture();
  auto ir = run_process({fx.pg_bin + "/pgbench", "-i", "-s", "1", "-q", "-h", fx.pg_host, "-p",
                         std::to_string(fx.pg_port), "-U", "scram_user", name_},
                        {{"PGPASSWORD", "scram_pw"}}, 60s);
  INFO("pgbench -i (direct) output:\n" << ir.output);
  REQUIRE(ir.exit_code == 0);
}

ProcessResult pgbench_through(int port, const std::string& db, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {fixture().pg_bin + "/pgbench"};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const std::string& a : {std::string("-h"), std::string("127.0.0.1"), std::string("-p"), std::to_string(port),
                               std::string("-U"), std::string("scram_user"), db})
    argv.push_back(a);
  return run_process(argv, {{"PGPASSWORD", "scram_pw"}}, timeout);
}

namespace {
void openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv, {}, 30s);
  INFO("openssl " << args[0] << ":\n" << r.output);
  REQUIRE(r.exit_code == 0);
}
}  // namespace

Pki::Pki() {
  ca = dir.file("ca.crt");
  ca_key = dir.file("ca.key");
  other_ca = dir.file("other-ca.crt");
  other_ca_key = dir.file("other-ca.key");
  make_ca(ca, ca_key, "pgmux test CA");
  make_ca(other_ca, other_ca_key, "some other CA");
}

void Pki::make_ca(const std::string& crt, const std::string& key, const std::string& cn) {
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
           "-out", crt, "-subj", "/CN=" + cn, "-days", "2"});
}

std::string Pki::issue(const std::string& name, const std::string& cn, const std::string& san, bool by_other_ca) {
  const std::string key = dir.file(name + ".key"), csr = dir.file(name + ".csr"), crt = dir.file(name + ".crt"),
                    ext = dir.file(name + ".ext");
  openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
           csr, "-subj", "/CN=" + cn});
  write_file(ext, san.empty() ? "basicConstraints=CA:FALSE\n"
                              : "basicConstraints=CA:FALSE\nsubjectAltName=" + san + "\n");
  openssl({"x509", "-req", "-in", csr, "-CA", by_other_ca ? other_ca : ca, "-CAkey",
           by_other_ca ? other_ca_key : ca_key, "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext});
  ::chmod(key.c_str(), 0600);
  return crt;
}

std::string conninfo_quote(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += "'";
  return out;
}

static std::string build_conninfo(std::string_view host, int port, std::string_view db,
                                  std::string_view user, std::string_view password,
                                  std::string_view extra) {
  std::string s = "host=" + conninfo_quote(host) + " port=" + std::to_string(port) +
                  " dbname=" + conninfo_quote(db) + " user=" + conninfo_quote(user) +
                  " connect_timeout=10";
  if (!password.empty()) s += " password=" + conninfo_quote(password);
  if (!extra.empty()) {
    s += ' ';
    s += extra;
  }
  return s;
}

std::string Pgmux::conninfo(std::string_view db, std::string_view user, std::string_view password,
                            std::string_view extra) const {
  return build_conninfo("127.0.0.1", port_, db, user, password, extra);
}

std::string Pgmux::unix_conninfo(std::string_view db, std::string_view user,
                                 std::string_view password, std::string_view extra) const {
  return build_conninfo(dir_, port_, db, user, password, extra);
}

bool Pgmux::alive() {
  if (exited_ || pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
    return false;
  }
  return true;
}

void Pgmux::signal(int sig) {
  if (alive()) ::kill(pid_, sig);
}

int Pgmux::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return status_;
  if (!alive()) return status_;
  ::kill(pid_, SIGTERM);
  auto deadline = Clock::now() + grace;
  while (Clock::now() < deadline) {
    if (!alive()) return status_;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exited_ = true;
  status_ = status;
  return status_;
}

std::vector<std::string> bad_log_lines(std::string_view log) {
  std::vector<std::string> bad;
  std::istringstream in{std::string(log)};
  std::string line;
  while (std::getline(in, line)) {
    std::string lower = line;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (contains(lower, "crit") || contains(line, "AddressSanitizer") ||
        contains(line, "LeakSanitizer") || contains(line, "ThreadSanitizer") ||
        contains(line, "UndefinedBehaviorSanitizer") || contains(line, "runtime error") ||
        contains(line, "SUMMARY: ")) {
      bad.push_back(line);
    }
  }
  return bad;
}

void Pgmux::expect_clean_log() const {
  auto bad = bad_log_lines(log_text());
  std::string joined;
  for (const auto& l : bad) joined += l + "\n";
  INFO("log lines that must not appear (" << log_path() << "):\n" << joined);
  CHECK(bad.empty());
}

void Pgmux::finish() {
  bool was_alive = alive();
  int status = stop();
  INFO("pgmux log:\n" << tail_lines(log_text(), 100));
  CHECK(was_alive);
  CHECK(WIFEXITED(status));
  if (WIFEXITED(status)) {
    CHECK(WEXITSTATUS(status) == 0);
  } else if (WIFSIGNALED(status)) {
    INFO("killed by signal " << WTERMSIG(status));
    CHECK(false);
  }
  expect_clean_log();
}

// ---------------------------------------------------------------------------
// libpq

Conn connect_raw(const std::string& conninfo) { return Conn(PQconnectdb(conninfo.c_str())); }

int local_port(PGconn* c) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(PQsocket(c), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  return ntohs(a.sin_port);
}

Conn connect(const std::string& conninfo) {
  Conn c = connect_raw(conninfo);
  INFO("conninfo: " << conninfo);
  REQUIRE(c);
  INFO("error: " << PQerrorMessage(c.get()));
  REQUIRE(PQstatus(c.get()) == CONNECTION_OK);
  return c;
}

std::string connect_error(const std::string& conninfo) {
  Conn c = connect_raw(conninfo);
  INFO("conninfo: " << conninfo);
  REQUIRE(c);
  REQUIRE(PQstatus(c.get()) != CONNECTION_OK);
  return trim(PQerrorMessage(c.get()));
}

std::string strip_conn_prefix(std::string msg) {
  msg = trim(std::move(msg));
  for (;;) {
    if (msg.rfind("connection to server ", 0) != 0) break;
    auto pos = msg.find(" failed: ");
    if (pos == std::string::npos) break;
    msg = trim(msg.substr(pos + 9));
  }
  return msg;
}

QueryOutcome try_exec(PGconn* conn, const std::string& sql) {
  // Like PQexec, but an error wins over what follows it: when the server (or
  // pgmux) sends a FATAL ErrorResponse and closes, PQexec would return only
  // libpq's "server closed the connection unexpectedly" and lose the SQLSTATE.
  QueryOutcome out;
  if (PQsendQuery(conn, sql.c_str()) != 1) {
    out.message = trim(PQerrorMessage(conn));
    return out;
  }
  Result last;
  Result first_error;
  while (Result r{PQgetResult(conn)}) {
    ExecStatusType st = PQresultStatus(r.get());
    bool copy = st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
    if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) && !first_error) {
      first_error = std::move(r);
    } else {
      last = std::move(r);
    }
    if (copy) break;
  }
  if (first_error) {
    out.status = PQresultStatus(first_error.get());
    if (const char* s = PQresultErrorField(first_error.get(), PG_DIAG_SQLSTATE)) out.sqlstate = s;
    out.message = trim(PQresultErrorMessage(first_error.get()));
    // libpq accumulates everything that went wrong (e.g. the FATAL and the
    // lost connection) in PQerrorMessage.
    std::string all = trim(PQerrorMessage(conn));
    if (!all.empty() && !contains(out.message, all)) {
      out.message = out.message.empty() ? all : out.message + "\n" + all;
    }
    return out;
  }
  if (!last) {
    out.message = trim(PQerrorMessage(conn));
    return out;
  }
  out.status = PQresultStatus(last.get());
  out.ok = out.status == PGRES_TUPLES_OK || out.status == PGRES_COMMAND_OK ||
           out.status == PGRES_EMPTY_QUERY;
  out.cmd_status = PQcmdStatus(last.get());
  out.rows = rows_of(last.get());
  return out;
}

std::string show_cell(PGconn* console, const std::string& show, const std::string& key_column,
                      const std::string& key, const std::string& column) {
  PGresult* r = PQexec(console, show.c_str());
  std::string out = "no such cell";
  const int col = PQfnumber(r, column.c_str()), k = PQfnumber(r, key_column.c_str());
  for (int i = 0; col >= 0 && k >= 0 && i < PQntuples(r); ++i) {
    if (key == PQgetvalue(r, i, k)) {
      out = PQgetvalue(r, i, col);
      break;
    }
  }
  PQclear(r);
  return out;
}

Rows rows_of(const PGresult* r) {
  const int nrows = PQntuples(r);
  const int ncols = PQnfields(r);
  Rows rows;
  rows.reserve(static_cast<size_t>(nrows));
  for (int i = 0; i < nrows; ++i) {
    std::vector<std::string> row;
    row.reserve(static_cast<size_t>(ncols));
    for (int j = 0; j < ncols; ++j) row.emplace_back(PQgetvalue(r, i, j));
    rows.push_back(std::move(row));
  }
  return rows;
}

Rows exec(PGconn* conn, const std::string& sql) {
  auto r = try_exec(conn, sql);
  INFO("query: " << sql << "\nerror: " << r.message << " (" << r.sqlstate << ")");
  REQUIRE(r.ok);
  return std::move(r.rows);
}

std::string scalar(PGconn* conn, const std::string& sql) {
  auto rows = exec(conn, sql);
  INFO("query: " << sql);
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].size() == 1);
  return rows[0][0];
}

QueryOutcome exec_error(PGconn* conn, const std::string& sql) {
  auto r = try_exec(conn, sql);
  INFO("query: " << sql);
  REQUIRE_FALSE(r.ok);
  return r;
}

std::string superuser_conninfo(std::string_view db) {
  const auto& fx = fixture();
  return build_conninfo(fx.pg_socket_dir, fx.pg_port, db, "postgres", {}, {});
}

Conn superuser(std::string_view db) { return connect(superuser_conninfo(db)); }

std::string direct_conninfo(std::string_view db, std::string_view user,
                            std::string_view password) {
  const auto& fx = fixture();
  return build_conninfo(fx.pg_host, fx.pg_port, db, user, password, {});
}

// ---------------------------------------------------------------------------
// Raw sockets

RawSocket::~RawSocket() { close(); }

RawSocket::RawSocket(RawSocket&& o) noexcept : fd_(o.fd_), buffered_(std::move(o.buffered_)) {
  o.fd_ = -1;
}

RawSocket& RawSocket::operator=(RawSocket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    buffered_ = std::move(o.buffered_);
    o.fd_ = -1;
  }
  return *this;
}

void RawSocket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

RawSocket RawSocket::connect_tcp(int port, const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return RawSocket();
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return RawSocket();
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return RawSocket(fd);
}

bool RawSocket::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

RawSocket::ReadResult RawSocket::read_until_closed(std::chrono::milliseconds timeout) {
  ReadResult res;
  auto t0 = Clock::now();
  auto deadline = t0 + timeout;
  res.data = std::move(buffered_);
  buffered_.clear();
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      res.timed_out = true;
      break;
    }
    pollfd p{fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      res.data.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    res.closed = true;  // EOF, ECONNRESET, ...
    break;
  }
  res.seconds = seconds_since(t0);
  return res;
}

bool RawSocket::read_exact(std::string& out, size_t n, Clock::time_point deadline) {
  while (buffered_.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    char buf[4096];
    ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buffered_.append(buf, static_cast<size_t>(r));
  }
  out = buffered_.substr(0, n);
  buffered_.erase(0, n);
  return true;
}

std::optional<RawSocket::Message> RawSocket::read_message(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string header;
  if (!read_exact(header, 5, deadline)) return std::nullopt;
  uint32_t len = (static_cast<uint32_t>(static_cast<unsigned char>(header[1])) << 24) |
                 (static_cast<uint32_t>(static_cast<unsigned char>(header[2])) << 16) |
                 (static_cast<uint32_t>(static_cast<unsigned char>(header[3])) << 8) |
                 static_cast<uint32_t>(static_cast<unsigned char>(header[4]));
  if (len < 4 || len > (64u << 20)) return std::nullopt;
  Message m;
  m.type = header[0];
  if (!read_exact(m.payload, len - 4, deadline)) return std::nullopt;
  return m;
}

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>((v >> 24) & 0xff);
  s[1] = static_cast<char>((v >> 16) & 0xff);
  s[2] = static_cast<char>((v >> 8) & 0xff);
  s[3] = static_cast<char>(v & 0xff);
  return s;
}

std::string startup_packet(const std::vector<std::pair<std::string, std::string>>& params,
                           uint32_t protocol) {
  std::string body = be32(protocol);
  for (const auto& [k, v] : params) {
    body += k;
    body += '\0';
    body += v;
    body += '\0';
  }
  body += '\0';
  return be32(static_cast<uint32_t>(body.size() + 4)) + body;
}

std::string error_field(std::string_view payload, char field) {
  size_t i = 0;
  while (i < payload.size() && payload[i] != '\0') {
    char f = payload[i++];
    size_t end = payload.find('\0', i);
    if (end == std::string_view::npos) end = payload.size();
    if (f == field) return std::string(payload.substr(i, end - i));
    i = end + 1;
  }
  return {};
}

// ---------------------------------------------------------------------------
// TcpRelay

TcpRelay::TcpRelay(const std::string& host, int port, Options options)
    : host_(host), port_(port), options_(options) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(listen_fd_, 64) == 0) {
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    listen_port_ = ntohs(a.sin_port);
  }
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpRelay::~TcpRelay() {
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  for (int fd : fds_) ::close(fd);
}

void TcpRelay::track(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  fds_.push_back(fd);
  if (stopping_) ::shutdown(fd, SHUT_RDWR);  // opened while the destructor runs
}

void TcpRelay::accept_loop() {
  for (;;) {
    int c = ::accept(listen_fd_, nullptr, nullptr);
    if (c < 0) return;
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    track(c);
    std::lock_guard<std::mutex> lock(mu_);
    threads_.emplace_back([this, c] { serve(c); });
  }
}

void TcpRelay::serve(int c) {
  if (options_.hold_cancels) {
    // A CancelRequest: length 16, code 80877102.
    unsigned char head[8];
    if (::recv(c, head, sizeof head, MSG_PEEK | MSG_WAITALL) != ssize_t(sizeof head)) return;
    const uint32_t len = uint32_t(head[0]) << 24 | uint32_t(head[1]) << 16 | uint32_t(head[2]) << 8 | head[3];
    const uint32_t code = uint32_t(head[4]) << 24 | uint32_t(head[5]) << 16 | uint32_t(head[6]) << 8 | head[7];
    if (len == 16 && code == 80877102) {
      ++cancels_held_;
      char buf[256];
      while (::read(c, buf, sizeof buf) > 0) {
      }
      return;  // closed by the destructor
    }
  }
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  track(s);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port_));
  inet_pton(AF_INET, host_.c_str(), &a.sin_addr);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::shutdown(c, SHUT_RDWR);
    return;
  }
  std::thread to_server([c, s] { pump(c, s, false); });
  pump(s, c, options_.dribble);
  to_server.join();
}

void TcpRelay::pump(int from, int to, bool dribble) {
  char buf[65536];
  size_t step = 0;
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n;) {
      ssize_t k = dribble ? std::min<ssize_t>(n - i, 1 + ssize_t(step++ % 3)) : n - i;
      if (::send(to, buf + i, size_t(k), MSG_NOSIGNAL) != k) {
        ::shutdown(from, SHUT_RDWR);
        return;
      }
      i += k;
      if (dribble && step % 8 == 0) std::this_thread::sleep_for(20us);
    }
  }
  ::shutdown(to, SHUT_WR);
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace it
