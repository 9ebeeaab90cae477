#include "src/systemd.hpp"

#include <spdlog/spdlog.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace pgmux::systemd {

std::optional<NotifyAddress> parse_notify_socket(std::string_view value, std::string& error) {
  NotifyAddress a;
  a.addr.sun_family = AF_UNIX;
  constexpr size_t kPathMax = sizeof(a.addr.sun_path);
  const socklen_t base = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
  if (value.empty()) {
    error = "empty";
    return std::nullopt;
  }
  if (value.find('\0') != std::string_view::npos) {
    error = "contains a NUL byte";
    return std::nullopt;
  }
  if (value.front() == '@') {
    // Abstract namespace: a leading NUL instead of '@', no terminator; the
    // length, not a NUL, ends the name.
    if (value.size() < 2 || value.size() > kPathMax) {
      error = "abstract socket name must have 1 to " + std::to_string(kPathMax - 1) + " bytes";
      return std::nullopt;
    }
    a.addr.sun_path[0] = '\0';
    std::memcpy(a.addr.sun_path + 1, value.data() + 1, value.size() - 1);
    a.len = base + static_cast<socklen_t>(value.size());
    return a;
  }
  if (value.front() != '/') {
    error = "not an absolute path or an abstract socket (\"@name\")";
    return std::nullopt;
  }
  if (value.size() >= kPathMax) {
    error = "path longer than " + std::to_string(kPathMax - 1) + " bytes";
    return std::nullopt;
  }
  std::memcpy(a.addr.sun_path, value.data(), value.size());
  a.len = base + static_cast<socklen_t>(value.size()) + 1;
  return a;
}

namespace {

// Warn on the first failure only; the watchdog would repeat it forever.
void report_failure(const char* socket, const std::string& why) {
  static bool warned = false;
  if (!warned) {
    warned = true;
    spdlog::warn("systemd notify: cannot send to NOTIFY_SOCKET={}: {} (further failures logged at debug level)",
                 socket, why);
  } else {
    spdlog::debug("systemd notify: cannot send to NOTIFY_SOCKET={}: {}", socket, why);
  }
}

}  // namespace

int notify(std::string_view state) {
  const char* env = std::getenv("NOTIFY_SOCKET");
  if (!env || !*env) return 0;
  std::string error;
  auto addr = parse_notify_socket(env, error);
  if (!addr) {
    report_failure(env, error);
    return -EINVAL;
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    report_failure(env, std::strerror(err));
    return -err;
  }
  ssize_t n;
  do {
    n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr->addr),
                 addr->len);
  } while (n < 0 && errno == EINTR);
  const int err = n < 0 ? errno : 0;
  ::close(fd);
  if (n < 0) {
    report_failure(env, std::strerror(err));
    return -err;
  }
  return 1;
}

uint64_t monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

std::string ready_message(const conf::Config& cfg) {
  std::string status = "listening on ";
  for (size_t i = 0; i < cfg.listen.size(); ++i) {
    if (i) status += ", ";
    status += cfg.listen[i].text;
  }
  // STATUS is one line: a newline would start a new assignment.
  for (char& c : status)
    if (c == '\n' || c == '\r') c = ' ';
  return "READY=1\nSTATUS=" + status;
}

std::string reloading_message(uint64_t usec) {
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec);
}

std::string stopping_message(std::optional<conf::Duration> drain) {
  if (!drain) return "STOPPING=1\nSTATUS=shutting down now";
  const auto extend = std::chrono::duration_cast<std::chrono::microseconds>(*drain + std::chrono::seconds(5));
  return "STOPPING=1\nSTATUS=draining: waiting up to " + conf::format_duration(*drain) +
         " for clients\nEXTEND_TIMEOUT_USEC=" + std::to_string(extend.count());
}

std::optional<std::chrono::microseconds> parse_watchdog(const char* watchdog_usec, const char* watchdog_pid,
                                                        pid_t self) {
  auto parse = [](const char* s) -> std::optional<unsigned long long> {
    if (!s || !*s) return std::nullopt;
    for (const char* p = s; *p; ++p)
      if (*p < '0' || *p > '9') return std::nullopt;
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (errno == ERANGE || *end) return std::nullopt;
    return v;
  };
  if (watchdog_pid && *watchdog_pid) {
    auto pid = parse(watchdog_pid);
    if (!pid || *pid != static_cast<unsigned long long>(self)) return std::nullopt;  // meant for another process
  }
  auto usec = parse(watchdog_usec);
  if (!usec || *usec == 0) return std::nullopt;
  // Cap at a year so the arithmetic below and in libuv cannot overflow.
  constexpr unsigned long long kMax = 365ull * 24 * 3600 * 1000000;
  return std::chrono::microseconds(static_cast<int64_t>(*usec > kMax ? kMax : *usec));
}

std::optional<std::chrono::microseconds> watchdog_from_env() {
  return parse_watchdog(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), ::getpid());
}

bool Watchdog::start(uv_loop_t* loop, std::chrono::microseconds period) {
  if (started_) return false;
  // Half the period, as sd_watchdog_enabled(3) recommends; at least 1ms.
  interval_ = std::chrono::duration_cast<std::chrono::milliseconds>(period / 2);
  if (interval_.count() < 1) interval_ = std::chrono::milliseconds(1);
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  started_ = true;
  const auto ms = static_cast<uint64_t>(interval_.count());
  uv_timer_start(&timer_, on_timer, 0, ms);
  return true;
}

bool Watchdog::start_from_env(uv_loop_t* loop) {
  auto period = watchdog_from_env();
  if (!period) return false;
  if (!start(loop, *period)) return false;
  spdlog::info("systemd watchdog: pinging every {}", conf::format_duration(interval_));
  return true;
}

void Watchdog::close() {
  if (!started_ || closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void Watchdog::on_timer(uv_timer_t*) { notify("WATCHDOG=1"); }

}  // namespace pgmux::systemd
