// dx-link: the link emulator as a program for benchmark scripts. It prints the address to connect
// to as its first line, then takes commands on standard input until EOF or `quit`.
//
//   dx-link --to 127.0.0.1:7700 --delay-ms 25 --bandwidth 12.5e6
#include "link_emulator.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

constexpr const char* usage = R"(usage: dx-link --to HOST:PORT [options]

Forwards each connection made to it to HOST:PORT, adding a WAN link's delay, jitter and bandwidth
cap to the bytes of each direction ("up" is toward --to, "down" back from it).

options
  --to HOST:PORT         where connections are forwarded; required
  --listen HOST:PORT     where to listen (default 127.0.0.1:0, a free port)
  --delay-ms MS          one-way delay of both directions (default 0); decimals allowed, e.g. 12.5
  --up-delay-ms MS       one-way delay toward --to (default: --delay-ms)
  --down-delay-ms MS     one-way delay back from --to (default: --delay-ms)
  --jitter-ms MS         extra delay drawn uniformly from [0, MS] per chunk, both directions; bytes
                         are never reordered (default 0)
  --bandwidth BYTES/S    bandwidth cap of each direction, e.g. 1.25e8 (default 0: unlimited)
  --help, -h             this text

The first line printed is the address to connect to, "127.0.0.1:PORT". Commands on standard input,
one a line, each answered with a line "ok" (or a message on standard error):
  stall                  hold every byte in both directions; connections stay open
  resume                 let held bytes flow again
  cut                    close every current connection on both sides
  delay MS               one-way delay of both directions, for bytes read from now on
  bandwidth BYTES/S      bandwidth cap of both directions (0: unlimited)
  stats                  prints "connections N bytes B"
  quit                   exits, as does the end of standard input
Standard input must stay open for as long as the link is needed: from a script, start dx-link as
a coprocess or with a pipe or FIFO on its input, not with </dev/null. Connections are not delayed
while they open, only the bytes they carry.

exit codes: 0 done; 1 the address could not be bound or --to not resolved; 2 bad options
example: dx-link --to 127.0.0.1:7700 --delay-ms 25 --jitter-ms 5 --bandwidth 1.25e8
)";

struct bad_args : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A number of at least 0, decimals and exponents allowed.
std::optional<double> parse_amount(std::string_view text) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || p != end || !std::isfinite(value) || value < 0) return std::nullopt;
  return value;
}

std::chrono::microseconds parse_ms(std::string_view option, std::string_view text) {
  const auto ms = parse_amount(text);
  if (!ms || *ms > 1e9)
    throw bad_args(fmt::format("{}: '{}' is not a number of milliseconds of at least 0", option, text));
  return std::chrono::microseconds(std::llround(*ms * 1000));
}

double parse_bandwidth(std::string_view option, std::string_view text) {
  const auto bytes_per_second = parse_amount(text);
  if (!bytes_per_second)
    throw bad_args(fmt::format("{}: '{}' is not a number of bytes per second of at least 0", option, text));
  return *bytes_per_second;
}

std::string parse_host_port(std::string_view option, std::string_view text) {
  const auto colon = text.rfind(':');
  unsigned port = 0;
  const bool ok = colon != std::string_view::npos && colon > 0 && colon + 1 < text.size() && [&] {
    const auto digits = text.substr(colon + 1);
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    return ec == std::errc{} && p == digits.data() + digits.size() && port <= 65535;
  }();
  if (!ok) throw bad_args(fmt::format("{}: '{}' is not HOST:PORT", option, text));
  return std::string(text);
}

struct options {
  std::string to;
  std::string listen = "127.0.0.1:0";
  dx::link::profile up, down;
  bool help = false;
};

options parse_options(int argc, char** argv) {
  options o;
  std::optional<std::chrono::microseconds> delay, up_delay, down_delay;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      return o;
    }
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) throw bad_args(fmt::format("{} needs a value", arg));
      return argv[++i];
    };
    if (arg == "--to") {
      o.to = parse_host_port(arg, value());
    } else if (arg == "--listen") {
      o.listen = parse_host_port(arg, value());
    } else if (arg == "--delay-ms") {
      delay = parse_ms(arg, value());
    } else if (arg == "--up-delay-ms") {
      up_delay = parse_ms(arg, value());
    } else if (arg == "--down-delay-ms") {
      down_delay = parse_ms(arg, value());
    } else if (arg == "--jitter-ms") {
      o.up.jitter = o.down.jitter = parse_ms(arg, value());
    } else if (arg == "--bandwidth") {
      o.up.bytes_per_second = o.down.bytes_per_second = parse_bandwidth(arg, value());
    } else {
      throw bad_args(fmt::format("unknown option '{}'", arg));
    }
  }
  if (o.to.empty()) throw bad_args("--to HOST:PORT is required");
  // A direction's own delay wins over --delay-ms, whatever their order.
  o.up.delay = up_delay.value_or(delay.value_or(std::chrono::microseconds{0}));
  o.down.delay = down_delay.value_or(delay.value_or(std::chrono::microseconds{0}));
  return o;
}

// Carries out one command; false for `quit`.
bool run_command(dx::link::emulator& link, options& o, std::string_view line) {
  const auto space = line.find(' ');
  const std::string_view command = line.substr(0, space);
  const std::string_view argument = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
  if (command == "quit") return false;
  if (command == "stall" || command == "resume") {
    link.stall(command == "stall");
  } else if (command == "cut") {
    link.cut();
  } else if (command == "delay") {
    o.up.delay = o.down.delay = parse_ms("delay", argument);
    link.set_profiles(o.up, o.down);
  } else if (command == "bandwidth") {
    o.up.bytes_per_second = o.down.bytes_per_second = parse_bandwidth("bandwidth", argument);
    link.set_profiles(o.up, o.down);
  } else if (command == "stats") {
    fmt::print("connections {} bytes {}\n", link.connections(), link.bytes_forwarded());
  } else {
    throw bad_args(fmt::format("unknown command '{}'", line));
  }
  if (command != "stats") std::fputs("ok\n", stdout);
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // A script that read the address and closed the pipe must not end dx-link on its next answer.
  std::signal(SIGPIPE, SIG_IGN);
  options o;
  try {
    o = parse_options(argc, argv);
  } catch (const bad_args& e) {
    fmt::print(stderr, "dx-link: {}\nTry 'dx-link --help'.\n", e.what());
    return 2;
  }
  if (o.help) {
    std::fputs(usage, stdout);
    return 0;
  }
  try {
    dx::link::emulator link(o.to, o.up, o.down, o.listen);
    fmt::print("{}\n", link.address());
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      try {
        if (!run_command(link, o, line)) break;
      } catch (const bad_args& e) {
        fmt::print(stderr, "dx-link: {}\n", e.what());
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "dx-link: {}\n", e.what());
    return 1;
  }
  return 0;
}
