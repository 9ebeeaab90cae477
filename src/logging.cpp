#include "src/logging.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace pgmux {

bool setup_logging(const conf::LogConfig& log, std::string& error) {
  auto level = spdlog::level::from_str(log.level);
  if (level == spdlog::level::off && log.level != "off") {
    error = "unknown log level \"" + log.level + "\"";
    return false;
  }
  std::shared_ptr<spdlog::sinks::sink> sink;
  try {
    if (log.file.empty()) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    else sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log.file);
  } catch (const std::exception& e) {
    error = std::string("cannot open log file: ") + e.what();
    return false;
  }
  sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %z [%P] %l %v");
  // One logger for the life of the process, whose sink a reload swaps:
  // replacing the default logger while other workers log through it is not
  // safe, swapping a dist_sink's children is (it holds a mutex).
  static std::shared_ptr<spdlog::sinks::dist_sink_mt> dist;
  if (!dist) {
    dist = std::make_shared<spdlog::sinks::dist_sink_mt>();
    dist->set_sinks({sink});
    auto logger = std::make_shared<spdlog::logger>("pgmux", dist);
    logger->set_level(level);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
  } else {
    dist->set_sinks({sink});
    spdlog::default_logger_raw()->set_level(level);
  }
  return true;
}

}  // namespace pgmux
