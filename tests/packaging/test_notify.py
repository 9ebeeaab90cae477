#!/usr/bin/env python3
"""pgmux under a fake systemd: what it sends to $NOTIFY_SOCKET, and when.

Usage: test_notify.py PATH_TO_PGMUX

Plays the service manager of a Type=notify unit with WatchdogSec: binds the
datagram socket, starts pgmux with NOTIFY_SOCKET and WATCHDOG_USEC set, and
checks READY=1 after the listeners are bound, the watchdog pings,
RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on SIGTERM and SIGINT, and that
a pgmux that cannot bind never says READY=1. No PostgreSQL is needed: no
client connects.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

PGMUX = sys.argv[1]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FakeSystemd:
    def __init__(self, tmp, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "pgmux-notify-test-%d" % os.getpid()
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            self.env = os.path.join(tmp, "notify")
            self.sock.bind(self.env)

    def recv_until(self, predicate, timeout):
        """Messages received until one satisfies predicate (included) or timeout."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                return got
            got.append(msg)
            if predicate(msg):
                return got

    def drain(self, quiet_for=0.3):
        return self.recv_until(lambda m: False, quiet_for)


def fields(msg):
    return dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)


def write_config(tmp, port):
    path = os.path.join(tmp, "pgmux.toml")
    with open(path, "w") as f:
        f.write(
            '[pgmux]\nlisten = ["127.0.0.1:%d", "unix:%s/.s.PGSQL.%d"]\nshutdown_timeout = "20s"\n'
            '[auth]\ntype = "trust"\n[log]\nlevel = "info"\n'
            '[databases.app]\nhost = "127.0.0.1"\nport = 1\n' % (port, tmp, port)
        )
    return path


def start(config, notify_env, watchdog_usec=None, watchdog_pid=None):
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = notify_env
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    if watchdog_pid is not None:
        env["WATCHDOG_PID"] = str(watchdog_pid)
    log = open(os.path.join(os.path.dirname(config), "pgmux.log"), "a")
    return subprocess.Popen([PGMUX, "--config", config], env=env,
                            stdout=subprocess.DEVNULL, stderr=log)


def wait_exit(p, timeout=10):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None


def connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main():
    with tempfile.TemporaryDirectory(prefix="pgmux-notify-") as tmp:
        port = free_port()
        config = write_config(tmp, port)

        # 1. Path socket, watchdog every 100ms (WATCHDOG_USEC = 200ms).
        sd = FakeSystemd(tmp, abstract=False)
        p = start(config, sd.env, watchdog_usec=200000)
        msgs = sd.recv_until(lambda m: "READY=1" in m.split("\n"), 10)
        ready = [m for m in msgs if "READY=1" in m.split("\n")]
        check(len(ready) == 1, "READY=1 sent once at startup")
        if ready:
            status = fields(ready[0]).get("STATUS", "")
            check("127.0.0.1:%d" % port in status and ".s.PGSQL.%d" % port in status,
                  "STATUS names the listen addresses: %r" % status)
            check(connectable(port), "the TCP listener accepts when READY=1 arrives")
        check(all(m == "WATCHDOG=1" for m in msgs if m not in ready),
              "nothing else before READY=1 but watchdog pings")

        time.sleep(0.55)
        pings = [m for m in sd.drain(0.05) if m == "WATCHDOG=1"]
        check(2 <= len(pings) <= 9, "WATCHDOG=1 about every 100ms (%d in ~0.6s)" % len(pings))

        p.send_signal(signal.SIGHUP)
        msgs = [m for m in sd.recv_until(lambda m: m.startswith("READY=1"), 5) if m != "WATCHDOG=1"]
        check(len(msgs) == 2, "SIGHUP: two state messages: %r" % msgs)
        if len(msgs) == 2:
            f = fields(msgs[0])
            check(f.get("RELOADING") == "1", "SIGHUP: RELOADING=1 first")
            usec = int(f.get("MONOTONIC_USEC", "0"))
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            check(0 < now - usec < 5000000, "MONOTONIC_USEC is CLOCK_MONOTONIC (%d usec ago)" % (now - usec))
            check(fields(msgs[1]).get("READY") == "1", "SIGHUP: READY=1 after the reload")

        p.send_signal(signal.SIGTERM)
        msgs = [m for m in sd.recv_until(lambda m: "STOPPING=1" in m, 5) if m != "WATCHDOG=1"]
        check(len(msgs) == 1 and fields(msgs[0]).get("STOPPING") == "1", "SIGTERM: STOPPING=1")
        if msgs:
            check(fields(msgs[0]).get("EXTEND_TIMEOUT_USEC") == "25000000",
                  "SIGTERM: EXTEND_TIMEOUT_USEC = shutdown_timeout + 5s")
        rc = wait_exit(p)
        check(rc == 0, "exit status 0 after SIGTERM (got %r)" % rc)
        # The watchdog timer is closed with the loop: nothing after exit.
        after = sd.drain(0.3)
        check(after == [], "no message after exit: %r" % after)

        # 2. Abstract socket, SIGINT; WATCHDOG_PID names another process: no pings.
        sd2 = FakeSystemd(tmp, abstract=True)
        p = start(config, sd2.env, watchdog_usec=100000, watchdog_pid=1)
        msgs = sd2.recv_until(lambda m: "READY=1" in m.split("\n"), 10)
        check(any("READY=1" in m.split("\n") for m in msgs), "abstract socket: READY=1")
        pings = [m for m in msgs + sd2.drain(0.4) if m == "WATCHDOG=1"]
        check(pings == [], "WATCHDOG_PID of another process: no pings")
        p.send_signal(signal.SIGINT)
        msgs = sd2.recv_until(lambda m: "STOPPING=1" in m, 5)
        check(any(fields(m).get("STOPPING") == "1" for m in msgs), "SIGINT: STOPPING=1")
        rc = wait_exit(p)
        check(rc == 0, "exit status 0 after SIGINT (got %r)" % rc)

        # 3. A port in use: exit 1, never READY=1.
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen(1)
        p = start(config, sd.env, watchdog_usec=200000)
        rc = wait_exit(p)
        blocker.close()
        msgs = sd.drain(0.3)
        check(rc == 1, "cannot bind: exit status 1 (got %r)" % rc)
        check(not any("READY=1" in m.split("\n") for m in msgs), "cannot bind: no READY=1: %r" % msgs)

        # 4. Without NOTIFY_SOCKET nothing breaks.
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        p = subprocess.Popen([PGMUX, "--config", config], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not connectable(port) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        check(connectable(port), "without NOTIFY_SOCKET: starts and listens")
        p.send_signal(signal.SIGTERM)
        check(wait_exit(p) == 0, "without NOTIFY_SOCKET: clean exit on SIGTERM")

        if failures:
            with open(os.path.join(tmp, "pgmux.log")) as f:
                print("--- pgmux log\n" + f.read())

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
