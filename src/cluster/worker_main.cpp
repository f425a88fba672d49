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

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace dx {

bool is_worker(int argc, char** argv) noexcept {
  for (int i = 1; i < argc; ++i)
    if (argv[i] && std::strcmp(argv[i], "--dx-worker") == 0) return true;
  return false;
}

namespace {

constexpr const char* usage =
    "usage: dx-worker --connect HOST:PORT [--token-file FILE] [--threads N] [--resources NAME=AMOUNT,...]\n"
    "                 [--plugin LIB.so]... [--name ID] [--listen HOST:PORT] [--max-frame-size BYTES]\n"
    "                 [--slowdown F]\n"
    "The token may also come from the DX_TOKEN environment variable.\n";

std::map<std::string, double> parse_resources(const std::string& spec) {
  std::map<std::string, double> out;
  std::size_t pos = 0;
  while (pos < spec.size()) {
    const auto comma = spec.find(',', pos);
    const std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      detail::throw_error(detail::error_kind::generic, "bad --resources item '" + item + "' (expected name=amount)");
    char* end = nullptr;
    const double amount = std::strtod(item.c_str() + eq + 1, &end);
    if (!end || *end != '\0' || amount < 0)
      detail::throw_error(detail::error_kind::generic, "bad amount in --resources item '" + item + "'");
    out[item.substr(0, eq)] = amount;
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int worker_main(int argc, char** argv) {
  detail::worker_config cfg;
  std::vector<std::string> plugins;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) detail::throw_error(detail::error_kind::generic, "missing value after " + a);
        return argv[++i];
      };
      if (a == "--dx-worker") continue;
      if (a == "--connect") {
        cfg.connect = value();
      } else if (a == "--token-file") {
        cfg.token = detail::read_token_file(value());
      } else if (a == "--threads") {
        cfg.threads = static_cast<std::size_t>(std::stoul(value()));
      } else if (a == "--resources") {
        cfg.resources = parse_resources(value());
      } else if (a == "--plugin") {
        plugins.push_back(value());
      } else if (a == "--name") {
        cfg.name = value();
      } else if (a == "--listen") {
        cfg.data_listen = value();
      } else if (a == "--max-frame-size") {
        cfg.max_frame_size = std::stoull(value());
      } else if (a == "--slowdown") {
        cfg.slowdown = std::stod(value());
      } else if (a == "--help" || a == "-h") {
        std::fputs(usage, stdout);
        return 0;
      } else {
        detail::throw_error(detail::error_kind::generic, "unknown argument '" + a + "'");
      }
    }
    if (cfg.connect.empty()) detail::throw_error(detail::error_kind::generic, "--connect HOST:PORT is required");
    if (cfg.token.empty())
      if (const char* t = std::getenv("DX_TOKEN")) cfg.token = t;
    for (const auto& p : plugins) {
      // RTLD_GLOBAL is not needed: the plugin's DX_REMOTE registrations run in its static
      // initialisers and land in this process's registry.
      if (!::dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL))
        detail::throw_error(detail::error_kind::generic, "cannot load plugin '" + p + "': " + ::dlerror());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx-worker: %s\n%s", e.what(), usage);
    return 2;
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
