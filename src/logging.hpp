#pragma once

#include <string>

#include "conf/config.hpp"

namespace pgmux {
// Configures the default spdlog logger from [log]; false with `error` set
// when the log file cannot be opened or the level is unknown.
bool setup_logging(const conf::LogConfig& log, std::string& error);
}  // namespace pgmux
