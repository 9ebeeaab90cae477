// systemd service notifications (the sd_notify(3) protocol) without
// libsystemd: one datagram of newline-separated "VAR=value" assignments sent
// to the unix socket named by $NOTIFY_SOCKET. Outside systemd (variable
// unset) every call is a no-op, so the same binary runs as a service, in a
// container or in a terminal.
//
// What pgmux sends (the unit is Type=notify):
//   READY=1 + STATUS        once every listener is bound, and after a reload
//   RELOADING=1 + MONOTONIC_USEC   when SIGHUP starts a reload
//   STOPPING=1 + STATUS (+ EXTEND_TIMEOUT_USEC on a graceful drain, so a
//                          shutdown_timeout above TimeoutStopSec= is honoured)
//   WATCHDOG=1            every WATCHDOG_USEC/2 from a timer on the worker
//                          loop: a stuck loop stops the pings and systemd
//                          restarts the service (WatchdogSec= in the unit).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "conf/config.hpp"

namespace pgmux::systemd {

struct NotifyAddress {
  sockaddr_un addr{};
  socklen_t len = 0;
};

// A $NOTIFY_SOCKET value as a socket address: an absolute path, or an
// abstract socket written with a leading '@'. nullopt with `error` set for
// anything else (empty, relative, too long for sun_path, "vsock:...").
std::optional<NotifyAddress> parse_notify_socket(std::string_view value, std::string& error);

// Sends `state` to $NOTIFY_SOCKET. Returns 1 when sent, 0 when the variable is
// unset or empty (not run by systemd), -errno on failure. The first failure
// is logged as a warning, later ones at debug level (the watchdog would
// otherwise repeat it every few seconds).
int notify(std::string_view state);

// CLOCK_MONOTONIC in microseconds, the clock systemd expects in MONOTONIC_USEC.
uint64_t monotonic_usec();

// Message texts, kept apart from sending so they can be tested.
std::string ready_message(const conf::Config& cfg);       // READY=1, STATUS=listening on ...
std::string reloading_message(uint64_t monotonic_usec);   // RELOADING=1, MONOTONIC_USEC=...
// STOPPING=1 and a STATUS naming the shutdown; with `drain`, also
// EXTEND_TIMEOUT_USEC = drain + 5s so systemd waits for the whole drain even
// when shutdown_timeout exceeds the unit's TimeoutStopSec=.
std::string stopping_message(std::optional<conf::Duration> drain);

// The watchdog period systemd asked for: WATCHDOG_USEC, if set to a positive
// number and WATCHDOG_PID is unset or equal to `self`; otherwise nullopt.
std::optional<std::chrono::microseconds> parse_watchdog(const char* watchdog_usec, const char* watchdog_pid,
                                                        pid_t self);
// parse_watchdog on this process's environment and pid.
std::optional<std::chrono::microseconds> watchdog_from_env();

// Sends WATCHDOG=1 from a timer on a libuv loop, so pings stop when the loop
// is stuck. The object must outlive the loop's run after close(): the timer
// handle lives inside it.
class Watchdog {
 public:
  Watchdog() = default;
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts pinging at half of `period` (the first ping on the next loop
  // iteration). Returns false, doing nothing, when already started.
  bool start(uv_loop_t* loop, std::chrono::microseconds period);
  // Starts with watchdog_from_env(); false when systemd asked for no watchdog.
  bool start_from_env(uv_loop_t* loop);
  // Closes the timer (idempotent; a no-op when never started). Must be called
  // before the loop can end.
  void close();
  bool running() const { return started_ && !closed_; }
  std::chrono::milliseconds interval() const { return interval_; }

 private:
  static void on_timer(uv_timer_t* t);
  uv_timer_t timer_{};
  bool started_ = false;
  bool closed_ = false;
  std::chrono::milliseconds interval_{0};
};

}  // namespace pgmux::systemd
