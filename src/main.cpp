// pgmux: a PostgreSQL connection pooler.
#include <pgmux_version.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <thread>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "conf/config.hpp"
#include "conf/pgbouncer_ini.hpp"
#include "src/logging.hpp"
#include "src/metrics.hpp"
#include "src/systemd.hpp"
#include "src/worker.hpp"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "pgmux %s - PostgreSQL connection pooler\n"
               "\n"
               "Usage: pgmux --config FILE [--check]\n"
               "       pgmux --convert-pgbouncer PGBOUNCER_INI > pgmux.toml\n"
               "\n"
               "  -c, --config FILE   configuration file (TOML)\n"
               "      --check         validate the configuration and exit (0 = valid)\n"
               "      --convert-pgbouncer FILE\n"
               "                      print the pgmux configuration equivalent to a\n"
               "                      pgbouncer.ini; settings that do not convert are\n"
               "                      listed as comments\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          print this help and exit\n"
               "\n"
               "Signals: SIGHUP reloads the configuration and userlist, SIGTERM drains\n"
               "gracefully, SIGINT exits at once.\n",
               PGMUX_VERSION);
}

// --convert-pgbouncer: the TOML goes to stdout; problems, and what
// `pgmux --check` will say about the result, to stderr.
int convert_pgbouncer(const std::string& path) {
  const auto r = pgmux::conf::convert_pgbouncer_ini_file(path);
  if (!r.ok) {
    std::fprintf(stderr, "pgmux: %s\n", r.error.c_str());
    return 1;
  }
  std::fwrite(r.toml.data(), 1, r.toml.size(), stdout);
  if (std::fflush(stdout) != 0) {
    std::fprintf(stderr, "pgmux: cannot write the configuration: %s\n", std::strerror(errno));
    return 1;
  }
  std::error_code ec;
  const auto dir = std::filesystem::absolute(std::filesystem::path(path), ec).parent_path().string();
  const auto loaded = pgmux::conf::load_string(r.toml, "converted configuration", dir);
  if (!loaded.config) {
    std::fprintf(stderr, "pgmux: warning: the converted configuration does not load yet: %s\n",
                 loaded.error.c_str());
  }
  return 0;
}

struct Signals {
  uv_signal_t term{}, intr{}, hup{};
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string convert_path;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::printf("pgmux %s\n", PGMUX_VERSION);
      return 0;
    } else if (a == "--check") {
      check = true;
    } else if (a == "-c" || a == "--config") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pgmux: %s needs a file name\n", a.c_str());
        return 1;
      }
      config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = a.substr(9);
    } else if (a == "--convert-pgbouncer") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pgmux: %s needs a file name\n", a.c_str());
        return 1;
      }
      convert_path = argv[++i];
    } else if (a.rfind("--convert-pgbouncer=", 0) == 0) {
      convert_path = a.substr(20);
    } else {
      std::fprintf(stderr, "pgmux: unknown argument \"%s\"\n\n", a.c_str());
      usage(stderr);
      return 1;
    }
  }
  if (!convert_path.empty()) {
    if (!config_path.empty() || check) {
      std::fprintf(stderr, "pgmux: --convert-pgbouncer cannot be combined with --config or --check\n");
      return 1;
    }
    return convert_pgbouncer(convert_path);
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "pgmux: --config FILE is required\n\n");
    usage(stderr);
    return 1;
  }

  auto loaded = pgmux::conf::load_file(config_path);
  if (!loaded.config) {
    std::fprintf(stderr, "pgmux: invalid configuration: %s\n", loaded.error.c_str());
    return 1;
  }
  const auto& cfg = *loaded.config;
  // The userlist, certificates and hba rules load before we claim the
  // config is good (and are what the worker starts with).
  pgmux::ConfigFiles files;
  std::string files_error;
  if (!pgmux::load_config_files(cfg, files, files_error)) {
    std::fprintf(stderr, "pgmux: invalid configuration: %s\n", files_error.c_str());
    return 1;
  }
  if (check) {
    std::printf("configuration %s is valid\n", config_path.c_str());
    return 0;
  }

  std::string log_error;
  if (!pgmux::setup_logging(cfg.log, log_error)) {
    std::fprintf(stderr, "pgmux: %s\n", log_error.c_str());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  spdlog::info("pgmux {} starting with {}", PGMUX_VERSION, config_path);

  // One worker per thread; the first runs on this thread and also holds
  // the listeners, the signal handles, the metrics endpoint and the
  // watchdog.
  pgmux::Hub hub;
  hub.config = loaded.config;
  hub.files = files;
  std::vector<std::unique_ptr<pgmux::Worker>> workers;
  for (int i = 0; i < cfg.workers; ++i) {
    workers.push_back(std::make_unique<pgmux::Worker>(hub, size_t(i), loaded.config, files));
    hub.add(workers.back().get());
  }
  pgmux::Worker& worker = *workers[0];
  if (cfg.workers > 1) spdlog::info("{} workers", cfg.workers);
  Signals sig;
  uv_signal_init(worker.loop(), &sig.term);
  uv_signal_init(worker.loop(), &sig.intr);
  uv_signal_init(worker.loop(), &sig.hup);
  sig.term.data = sig.intr.data = sig.hup.data = &worker;
  pgmux::systemd::Watchdog watchdog;  // WATCHDOG=1 from the first worker's loop, if systemd asks
  std::unique_ptr<pgmux::metrics::MetricsServer> metrics;  // [admin] metrics_listen
  hub.on_all_stopped = [&sig, &watchdog, &metrics] {
    for (uv_signal_t* s : {&sig.term, &sig.intr, &sig.hup})
      if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(s)))
        uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
    // Closing the handles restored the default actions: a SIGTERM while
    // the threads are joined would kill a process that is exiting cleanly.
    for (int signum : {SIGTERM, SIGINT, SIGHUP}) ::signal(signum, SIG_IGN);
    watchdog.close();
    if (metrics) metrics->close();
  };
  uv_signal_start(&sig.term, [](uv_signal_t* s, int) {
    spdlog::info("SIGTERM: graceful shutdown");
    auto* w = static_cast<pgmux::Worker*>(s->data);
    pgmux::systemd::notify(pgmux::systemd::stopping_message(w->config().shutdown_timeout));
    w->hub().broadcast(w, [](pgmux::Worker& x) { x.shutdown_gracefully(); });
  }, SIGTERM);
  uv_signal_start(&sig.intr, [](uv_signal_t* s, int) {
    spdlog::info("SIGINT: immediate shutdown");
    pgmux::systemd::notify(pgmux::systemd::stopping_message(std::nullopt));
    auto* w = static_cast<pgmux::Worker*>(s->data);
    w->hub().broadcast(w, [](pgmux::Worker& x) { x.shutdown_now(); });
  }, SIGINT);
  uv_signal_start(&sig.hup, [](uv_signal_t* s, int) {
    spdlog::info("SIGHUP: reload");
    auto* w = static_cast<pgmux::Worker*>(s->data);
    pgmux::systemd::notify(pgmux::systemd::reloading_message(pgmux::systemd::monotonic_usec()));
    w->reload();
    pgmux::systemd::notify(pgmux::systemd::ready_message(w->config()));
  }, SIGHUP);

  // Every worker but the first runs on a thread of its own; stops them all
  // (a failed start) and waits for them.
  std::vector<std::thread> threads;
  auto stop_all = [&] {
    hub.broadcast(&worker, [](pgmux::Worker& x) { x.shutdown_now(); });
    worker.run();
    for (auto& t : threads) t.join();
  };
  bool ok = true;
  for (auto& w : workers) ok = ok && w->start();
  if (!ok) {
    for (size_t i = 1; i < workers.size(); ++i) workers[i]->shutdown_now();
    worker.shutdown_now();
    for (auto& w : workers) w->run();
    return 1;
  }
  for (size_t i = 1; i < workers.size(); ++i) threads.emplace_back([w = workers[i].get()] { w->run(); });
  if (!cfg.admin.metrics_listen.empty()) {
    metrics = std::make_unique<pgmux::metrics::MetricsServer>(worker);
    if (!metrics->start(cfg.admin.metrics_listen)) {
      stop_all();
      return 1;
    }
  }
  // Every listener is bound: tell systemd (Type=notify) we are up.
  watchdog.start_from_env(worker.loop());
  pgmux::systemd::notify(pgmux::systemd::ready_message(cfg));
  worker.run();
  for (auto& t : threads) t.join();
  spdlog::info("pgmux stopped");
  return 0;
}
