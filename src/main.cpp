// pgmux: a PostgreSQL connection pooler.
#include <pgmux_version.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "auth/userlist.hpp"
#include "conf/config.hpp"
#include "src/logging.hpp"
#include "src/worker.hpp"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "pgmux %s - PostgreSQL connection pooler\n"
               "\n"
               "Usage: pgmux --config FILE [--check]\n"
               "\n"
               "  -c, --config FILE   configuration file (TOML)\n"
               "      --check         validate the configuration and exit (0 = valid)\n"
               "  -V, --version       print the version and exit\n"
               "  -h, --help          print this help and exit\n"
               "\n"
               "Signals: SIGHUP reloads the userlist, SIGTERM drains gracefully,\n"
               "SIGINT exits at once.\n",
               PGMUX_VERSION);
}

struct Signals {
  uv_signal_t term{}, intr{}, hup{};
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
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
    } else {
      std::fprintf(stderr, "pgmux: unknown argument \"%s\"\n\n", a.c_str());
      usage(stderr);
      return 1;
    }
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
  if (cfg.auth.type == pgmux::conf::AuthType::hba) {
    std::fprintf(stderr, "pgmux: invalid configuration: [auth] type = \"hba\" is not supported yet\n");
    return 1;
  }
  std::shared_ptr<const pgmux::auth::Userlist> userlist;
  if (!cfg.auth.file.empty()) {
    auto ul = pgmux::auth::load_userlist(cfg.auth.file);
    if (!ul.list) {
      std::fprintf(stderr, "pgmux: invalid userlist %s: %s\n", cfg.auth.file.c_str(), ul.error.c_str());
      return 1;
    }
    userlist = ul.list;
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
  if (cfg.workers > 1)
    spdlog::warn("workers = {}: only one worker is implemented so far", cfg.workers);

  pgmux::Worker worker(loaded.config, userlist);
  Signals sig;
  uv_signal_init(worker.loop(), &sig.term);
  uv_signal_init(worker.loop(), &sig.intr);
  uv_signal_init(worker.loop(), &sig.hup);
  sig.term.data = sig.intr.data = sig.hup.data = &worker;
  worker.on_stopped = [&sig] {
    for (uv_signal_t* s : {&sig.term, &sig.intr, &sig.hup})
      if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(s)))
        uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  };
  uv_signal_start(&sig.term, [](uv_signal_t* s, int) {
    spdlog::info("SIGTERM: graceful shutdown");
    static_cast<pgmux::Worker*>(s->data)->shutdown_gracefully();
  }, SIGTERM);
  uv_signal_start(&sig.intr, [](uv_signal_t* s, int) {
    spdlog::info("SIGINT: immediate shutdown");
    static_cast<pgmux::Worker*>(s->data)->shutdown_now();
  }, SIGINT);
  uv_signal_start(&sig.hup, [](uv_signal_t* s, int) {
    spdlog::info("SIGHUP: reload");
    static_cast<pgmux::Worker*>(s->data)->reload();
  }, SIGHUP);

  if (!worker.start()) {
    worker.shutdown_now();
    worker.run();
    return 1;
  }
  worker.run();
  spdlog::info("pgmux stopped");
  return 0;
}
