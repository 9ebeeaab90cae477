#include "src/logging.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace pgmux {

bool setup_logging(const conf::LogConfig& log, std::string& error) {
  auto level = spdlog::level::from_str(log.level);
  if (level == spdlog::level::off && log.level != "off") {
    error = "unknown log level \"" + log.level + "\"";
    return false;
  }
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (log.file.empty()) {
      logger = std::make_shared<spdlog::logger>("pgmux",
                                                std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
      logger = std::make_shared<spdlog::logger>(
          "pgmux", std::make_shared<spdlog::sinks::basic_file_sink_mt>(log.file));
    }
  } catch (const std::exception& e) {
    error = std::string("cannot open log file: ") + e.what();
    return false;
  }
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %z [%P] %l %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return true;
}

}  // namespace pgmux
