// sd_notify without systemd: the test binds the datagram socket systemd would
// listen on, points $NOTIFY_SOCKET at it and reads what pgmux sends.
#include <catch2/catch.hpp>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "src/systemd.hpp"

namespace sd = pgmux::systemd;
using namespace std::chrono_literals;

namespace {

// A bound datagram socket standing in for systemd's notify socket, and the
// $NOTIFY_SOCKET value naming it (restored on destruction).
class FakeSystemd {
 public:
  explicit FakeSystemd(bool abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    socklen_t len;
    const std::string name = "pgmux-test-notify-" + std::to_string(::getpid());
    if (abstract) {
      env_ = "@" + name;
      std::memcpy(a.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    } else {
      char dir[] = "/tmp/pgmux-sd-XXXXXX";
      REQUIRE(::mkdtemp(dir) != nullptr);
      dir_ = dir;
      env_ = dir_ + "/notify";
      std::memcpy(a.sun_path, env_.data(), env_.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + env_.size() + 1);
    }
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0);
    const char* old = ::getenv("NOTIFY_SOCKET");
    if (old) saved_ = old, had_saved_ = true;
    ::setenv("NOTIFY_SOCKET", env_.c_str(), 1);
  }
  ~FakeSystemd() {
    ::close(fd_);
    if (!dir_.empty()) {
      ::unlink(env_.c_str());
      ::rmdir(dir_.c_str());
    }
    if (had_saved_) {
      ::setenv("NOTIFY_SOCKET", saved_.c_str(), 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }

  // The next datagram, or "" after `timeout_ms` without one.
  std::string receive(int timeout_ms = 1000) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return {};
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

  const std::string& env() const { return env_; }

 private:
  int fd_ = -1;
  std::string dir_, env_, saved_;
  bool had_saved_ = false;
};

struct EnvGuard {
  std::string name;
  std::string old;
  bool had = false;
  explicit EnvGuard(std::string n) : name(std::move(n)) {
    if (const char* v = ::getenv(name.c_str())) old = v, had = true;
  }
  ~EnvGuard() {
    if (had) {
      ::setenv(name.c_str(), old.c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
};

}  // namespace

TEST_CASE("notify is a no-op without NOTIFY_SOCKET") {
  EnvGuard g("NOTIFY_SOCKET");
  ::unsetenv("NOTIFY_SOCKET");
  CHECK(sd::notify("READY=1") == 0);
  ::setenv("NOTIFY_SOCKET", "", 1);
  CHECK(sd::notify("READY=1") == 0);
}

TEST_CASE("notify sends one datagram to a socket path") {
  FakeSystemd systemd(/*abstract=*/false);
  CHECK(sd::notify("READY=1\nSTATUS=hello") == 1);
  CHECK(systemd.receive() == "READY=1\nSTATUS=hello");
  CHECK(sd::notify("WATCHDOG=1") == 1);
  CHECK(systemd.receive() == "WATCHDOG=1");
}

TEST_CASE("notify sends to an abstract socket written with '@'") {
  FakeSystemd systemd(/*abstract=*/true);
  REQUIRE(systemd.env().front() == '@');
  CHECK(sd::notify("STOPPING=1") == 1);
  CHECK(systemd.receive() == "STOPPING=1");
}

TEST_CASE("notify reports a missing socket as an error, not a crash") {
  EnvGuard g("NOTIFY_SOCKET");
  ::setenv("NOTIFY_SOCKET", "/nonexistent/pgmux/notify", 1);
  CHECK(sd::notify("READY=1") == -ENOENT);
  ::setenv("NOTIFY_SOCKET", "relative/notify", 1);
  CHECK(sd::notify("READY=1") == -EINVAL);
}

TEST_CASE("parse_notify_socket") {
  std::string err;
  SECTION("absolute path: NUL-terminated, length includes the terminator") {
    auto a = sd::parse_notify_socket("/run/systemd/notify", err);
    REQUIRE(a);
    CHECK(a->addr.sun_family == AF_UNIX);
    CHECK(std::string(a->addr.sun_path) == "/run/systemd/notify");
    CHECK(a->len == offsetof(sockaddr_un, sun_path) + std::strlen("/run/systemd/notify") + 1);
  }
  SECTION("abstract: leading NUL, no terminator") {
    const std::string name = "/org/freedesktop/systemd1/notify/123";
    auto a = sd::parse_notify_socket("@" + name, err);
    REQUIRE(a);
    CHECK(a->addr.sun_path[0] == '\0');
    CHECK(std::string(a->addr.sun_path + 1, name.size()) == name);
    CHECK(a->len == offsetof(sockaddr_un, sun_path) + 1 + name.size());
  }
  SECTION("rejected forms") {
    CHECK_FALSE(sd::parse_notify_socket("", err));
    CHECK_FALSE(sd::parse_notify_socket("@", err));
    CHECK_FALSE(sd::parse_notify_socket("notify", err));
    CHECK(err.find("absolute") != std::string::npos);
    CHECK_FALSE(sd::parse_notify_socket("vsock:2:1234", err));
    CHECK_FALSE(sd::parse_notify_socket("/" + std::string(sizeof(sockaddr_un::sun_path), 'x'), err));
    CHECK(err.find("longer") != std::string::npos);
    // The longest path that fits, with its terminator.
    CHECK(sd::parse_notify_socket("/" + std::string(sizeof(sockaddr_un::sun_path) - 2, 'x'), err));
    CHECK(sd::parse_notify_socket("@" + std::string(sizeof(sockaddr_un::sun_path) - 1, 'x'), err));
    CHECK_FALSE(sd::parse_notify_socket("@" + std::string(sizeof(sockaddr_un::sun_path), 'x'), err));
  }
}

TEST_CASE("message texts") {
  auto loaded = pgmux::conf::load_string(
      "[pgmux]\nlisten = [\"127.0.0.1:6432\", \"unix:/run/pgmux/.s.PGSQL.6432\"]\n"
      "[auth]\ntype = \"trust\"\n[databases.app]\nhost = \"127.0.0.1\"\n",
      "test.toml");
  REQUIRE(loaded.config);
  CHECK(sd::ready_message(*loaded.config) ==
        "READY=1\nSTATUS=listening on 127.0.0.1:6432, unix:/run/pgmux/.s.PGSQL.6432");
  CHECK(sd::reloading_message(1234567) == "RELOADING=1\nMONOTONIC_USEC=1234567");
  CHECK(sd::stopping_message(std::nullopt) == "STOPPING=1\nSTATUS=shutting down now");
  CHECK(sd::stopping_message(pgmux::conf::Duration(30000)) ==
        "STOPPING=1\nSTATUS=draining: waiting up to 30s for clients\nEXTEND_TIMEOUT_USEC=35000000");
}

TEST_CASE("monotonic_usec follows CLOCK_MONOTONIC") {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t before = static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  const uint64_t now = sd::monotonic_usec();
  CHECK(now >= before);
  CHECK(now - before < 5000000u);
}

TEST_CASE("parse_watchdog") {
  const pid_t self = 4242;
  CHECK_FALSE(sd::parse_watchdog(nullptr, nullptr, self));
  CHECK_FALSE(sd::parse_watchdog("", nullptr, self));
  CHECK_FALSE(sd::parse_watchdog("0", nullptr, self));
  CHECK_FALSE(sd::parse_watchdog("-5", nullptr, self));
  CHECK_FALSE(sd::parse_watchdog("30s", nullptr, self));
  CHECK_FALSE(sd::parse_watchdog("99999999999999999999999", nullptr, self));
  CHECK(sd::parse_watchdog("30000000", nullptr, self) == std::chrono::microseconds(30000000));
  CHECK(sd::parse_watchdog("30000000", "", self) == std::chrono::microseconds(30000000));
  CHECK(sd::parse_watchdog("30000000", "4242", self) == std::chrono::microseconds(30000000));
  CHECK_FALSE(sd::parse_watchdog("30000000", "4243", self));  // for another process
  CHECK_FALSE(sd::parse_watchdog("30000000", "x", self));
}

TEST_CASE("watchdog_from_env reads WATCHDOG_USEC and WATCHDOG_PID") {
  EnvGuard u("WATCHDOG_USEC"), p("WATCHDOG_PID");
  ::setenv("WATCHDOG_USEC", "2000000", 1);
  ::unsetenv("WATCHDOG_PID");
  CHECK(sd::watchdog_from_env() == std::chrono::microseconds(2000000));
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  CHECK(sd::watchdog_from_env() == std::chrono::microseconds(2000000));
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  CHECK_FALSE(sd::watchdog_from_env());
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  CHECK_FALSE(sd::watchdog_from_env());
}

TEST_CASE("Watchdog pings from the loop at half the period and lets the loop end once closed") {
  FakeSystemd systemd(/*abstract=*/false);
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  sd::Watchdog wd;
  CHECK_FALSE(wd.running());
  wd.close();  // never started: a no-op
  REQUIRE(wd.start(&loop, 40ms));
  CHECK(wd.interval() == 20ms);
  CHECK(wd.running());
  CHECK_FALSE(wd.start(&loop, 40ms));

  // Stop after ~110ms: expect the immediate ping plus about five more.
  uv_timer_t stop;
  uv_timer_init(&loop, &stop);
  stop.data = &wd;
  uv_timer_start(&stop, [](uv_timer_t* t) {
    static_cast<sd::Watchdog*>(t->data)->close();
    uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
  }, 110, 0);
  uv_run(&loop, UV_RUN_DEFAULT);  // returns only if the watchdog timer was closed
  CHECK_FALSE(wd.running());
  wd.close();  // idempotent
  CHECK(uv_loop_close(&loop) == 0);

  int pings = 0;
  for (std::string m; !(m = systemd.receive(50)).empty();) {
    CHECK(m == "WATCHDOG=1");
    ++pings;
  }
  CHECK(pings >= 2);  // a loaded machine may delay the timer
  CHECK(pings <= 8);
}

TEST_CASE("Watchdog interval is at least 1ms") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  sd::Watchdog wd;
  REQUIRE(wd.start(&loop, 1us));
  CHECK(wd.interval() == 1ms);
  wd.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
