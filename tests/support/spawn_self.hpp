// Copies of the running program as worker processes, for the distributed tests and the live
// benchmarks: started with posix_spawn of /proc/self/exe (so the binary is its own worker
// program) and reaped with a bounded wait, so a hung child never outlives its test.
//
//   const pid_t w = dx_support::spawn_self({"--dx-worker", "--connect", endpoint});
//   ...
//   dx_support::reap_child(w, std::chrono::seconds(10));
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace dx_support {

/// Starts /proc/self/exe with `args` and the current environment, where each "NAME=value" of
/// `extra_env` replaces a variable of that name. Returns the child's pid; throws
/// std::system_error when the process cannot be started.
inline pid_t spawn_self(const std::vector<std::string>& args, const std::vector<std::string>& extra_env = {}) {
  std::vector<std::string> argv_s{"/proc/self/exe"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto replaced = [&](const char* var) {
    for (const std::string& e : extra_env) {
      const std::size_t eq = e.find('=');
      if (eq != std::string::npos && std::strncmp(var, e.c_str(), eq + 1) == 0) return true;
    }
    return false;
  };
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e)
    if (!replaced(*e)) env_s.emplace_back(*e);
  env_s.insert(env_s.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data());
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn /proc/self/exe");
  return pid;
}

/// Waits up to `limit` for our child `pid` to exit, then SIGKILLs and reaps it. True if it exited
/// on its own.
inline bool reap_child(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return false;
}

}  // namespace dx_support
