// dx::is_worker and dx::worker_main: a process (dx-worker, or the application binary started with
// --dx-worker) that joins a head and runs tasks until the head stops it or goes away.
#include <dx/cluster.hpp>
#include <dx/error.hpp>

#include "cluster/auth.hpp"
#include "cluster/process.hpp"
#include "cluster/worker.hpp"
#include "common/log.hpp"

#include <dlfcn.h>
#include <signal.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace dx {

bool is_worker(int argc, char** argv) noexcept {
  for (int i = 1; i < argc; ++i)
    if (argv[i] && std::strcmp(argv[i], "--dx-worker") == 0) return true;
  return false;
}

namespace {

constexpr const char* usage =
    "usage: dx-worker --connect HOST:PORT [options]\n"
    "Joins a dx head and runs the registered functions of the plugins it loads (and of the\n"
    "application, when an application binary runs as a worker with --dx-worker).\n"
    "\n"
    "options (default in brackets):\n"
    "  --connect HOST:PORT        the head's address; required. e.g. --connect head.lan:7700\n"
    "  --token-file FILE          file holding the cluster's token [none: $DX_TOKEN, else no token]\n"
    "                             e.g. --token-file /etc/dx/dx.token\n"
    "  --threads N                threads running tasks, at least 1 [1]. e.g. --threads 16\n"
    "  --resources NAME=AMOUNT,.. capacities tasks may declare needs of [cpu=threads]\n"
    "                             e.g. --resources gpu=2,mem_mb=16000\n"
    "  --plugin LIB.so            a library of DX_REMOTE functions to load; repeatable [none]\n"
    "                             e.g. --plugin ./libmytasks.so\n"
    "  --name NAME                the worker's name: its id in workers(), metrics, the dashboard,\n"
    "                             traces and the cost model's speed factors, so a worker keeps what\n"
    "                             was learned of it across runs; up to 64 letters, digits and .-_:@+;\n"
    "                             two live workers cannot share one [HOST-N: this host's name and\n"
    "                             the lowest free index]. e.g. --name gpu-box-1\n"
    "  --listen HOST:PORT         where other workers fetch results from this one [127.0.0.1:0 when\n"
    "                             the head is on loopback, else 0.0.0.0:0 (any free port)]\n"
    "                             e.g. --listen 10.0.0.5:7800\n"
    "  --max-frame-size BYTES     largest message accepted, at least 1024 [268435456 (256 MiB)]\n"
    "                             e.g. --max-frame-size 1073741824\n"
    "  --slowdown F               run each task F times as long, F >= 1; a testing aid for\n"
    "                             heterogeneous clusters on one machine [1]. e.g. --slowdown 3\n"
    "  --log-level LEVEL          debug, info, warn, error or off [$DX_LOG, else warn]\n"
    "                             e.g. --log-level info\n"
    "  -h, --help                 this text\n"
    "\n"
    "environment: DX_TOKEN (the token, when --token-file is not given), DX_LOG (log level).\n"
    "exit codes: 0 the head stopped the worker or it left (SIGTERM, SIGINT); 1 the head was lost,\n"
    "could not be reached or refused the worker (e.g. its name is taken); 2 a bad command line.\n"
    "\n"
    "example: dx-worker --connect head.lan:7700 --token-file dx.token --plugin ./libmytasks.so \\\n"
    "             --threads 16 --resources gpu=1\n";

/// A command-line mistake: reported with the usage hint and exit code 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void bad_value(const std::string& option, const std::string& value, const std::string& expected) {
  throw usage_error(option + ": '" + value + "' is not " + expected);
}

std::uint64_t parse_count(const std::string& option, const std::string& value, std::uint64_t min, std::uint64_t max,
                          const std::string& expected) {
  std::uint64_t n = 0;
  const char* first = value.data();
  const char* last = first + value.size();
  const auto [end, ec] = std::from_chars(first, last, n);
  if (value.empty() || ec != std::errc{} || end != last || n < min || n > max) bad_value(option, value, expected);
  return n;
}

double parse_number(const std::string& option, const std::string& value, const std::string& expected) {
  char* end = nullptr;
  errno = 0;
  const double x = value.empty() ? std::nan("") : std::strtod(value.c_str(), &end);
  if (value.empty() || !end || *end != '\0' || errno == ERANGE || !std::isfinite(x)) bad_value(option, value, expected);
  return x;
}

std::map<std::string, double> parse_resources(const std::string& spec) {
  std::map<std::string, double> out;
  const std::string expected = "a list of NAME=AMOUNT (e.g. gpu=2,mem_mb=16000)";
  if (spec.empty()) bad_value("--resources", spec, expected);
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    const auto comma = spec.find(',', pos);
    const std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw usage_error("--resources: item '" + item + "' of '" + spec + "' is not NAME=AMOUNT");
    const std::string amount = item.substr(eq + 1);
    const double x = parse_number("--resources", amount, "an amount (a number >= 0) in item '" + item + "'");
    if (x < 0) bad_value("--resources", amount, "an amount (a number >= 0) in item '" + item + "'");
    out[item.substr(0, eq)] = x;
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

void check_address(const std::string& option, const std::string& value) {
  const auto colon = value.rfind(':');
  const std::string expected = "HOST:PORT (e.g. 127.0.0.1:7700)";
  const std::string port = colon == std::string::npos ? std::string() : value.substr(colon + 1);
  std::uint16_t n = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (colon == 0 || port.empty() || ec != std::errc{} || end != port.data() + port.size())
    bad_value(option, value, expected);
}

}  // namespace

int worker_main(int argc, char** argv) {
  detail::init_log_from_environment();  // a bad DX_LOG is reported before anything else
  detail::worker_config cfg;
  std::vector<std::string> plugins;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw usage_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--dx-worker") continue;
      if (a == "--connect") {
        cfg.connect = value();
        check_address(a, cfg.connect);
      } else if (a == "--token-file") {
        const std::string file = value();
        try {
          cfg.token = detail::read_token_file(file);
        } catch (const std::exception& e) {
          throw usage_error(std::string("--token-file: ") + e.what());
        }
      } else if (a == "--threads") {
        cfg.threads = static_cast<std::size_t>(parse_count(a, value(), 1, 4096, "a whole number from 1 to 4096"));
      } else if (a == "--resources") {
        cfg.resources = parse_resources(value());
      } else if (a == "--plugin") {
        plugins.push_back(value());
      } else if (a == "--name") {
        cfg.name = value();
        if (const std::string why = detail::worker_name_problem(cfg.name); !why.empty())
          bad_value(a, cfg.name, "a worker name (" + why + ")");
      } else if (a == "--listen") {
        cfg.data_listen = value();
        check_address(a, cfg.data_listen);
      } else if (a == "--max-frame-size") {
        cfg.max_frame_size = parse_count(a, value(), 1024, std::numeric_limits<std::uint64_t>::max(),
                                         "a number of bytes of at least 1024");
      } else if (a == "--slowdown") {
        const std::string v = value();
        cfg.slowdown = parse_number(a, v, "a factor of at least 1 (e.g. 3)");
        if (cfg.slowdown < 1) bad_value(a, v, "a factor of at least 1 (e.g. 3)");
      } else if (a == "--log-level") {
        const std::string v = value();
        const auto level = parse_log_level(v);
        if (!level) bad_value(a, v, "a log level (debug, info, warn, error or off)");
        set_log_level(*level);
      } else if (a == "--help" || a == "-h") {
        std::fputs(usage, stdout);
        return 0;
      } else {
        throw usage_error("unknown option '" + a + "'");
      }
    }
    if (cfg.connect.empty()) throw usage_error("--connect HOST:PORT is required");
    if (cfg.token.empty())
      if (const char* t = std::getenv("DX_TOKEN")) cfg.token = t;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx-worker: %s\nTry 'dx-worker --help'.\n", e.what());
    return 2;
  }
  for (const auto& p : plugins) {
    // RTLD_GLOBAL is not needed: the plugin's DX_REMOTE registrations run in its static
    // initialisers and land in this process's registry.
    if (!::dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      std::fprintf(stderr, "dx-worker: --plugin: cannot load '%s': %s\nTry 'dx-worker --help'.\n", p.c_str(),
                   ::dlerror());
      return 2;
    }
  }

  const char* parent = std::getenv("DX_WORKER_OF");
  if (parent && !detail::follow_parent(static_cast<pid_t>(std::atoll(parent)))) return 1;

  // SIGTERM and SIGINT mean "leave gracefully": a thread waits for them so that the handler
  // does no work in signal context.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGUSR2);  // sent by this process to end the waiting thread
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  try {
    detail::worker_runtime worker(cfg);
    worker.start();
    detail::log(detail::log_level::info, "worker {} joined {}", worker.id(), cfg.connect);
    std::thread signal_waiter([&] {
      int sig = 0;
      if (sigwait(&stop_signals, &sig) == 0 && sig != SIGUSR2) worker.leave();
    });
    const int code = worker.wait();
    if (code != 0) {
      // The head is gone: nothing will collect results, so do not wait for running tasks.
      std::fflush(stderr);
      std::_Exit(code);
    }
    pthread_kill(signal_waiter.native_handle(), SIGUSR2);
    signal_waiter.join();
    return code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx-worker: %s\n", e.what());
    return 1;
  }
}

}  // namespace dx
