// The head side of the plugin example: it listens, waits for a dx-worker that loaded
// libdx_example_tasks.so, and calls the plugin's functions by name.
//
//   ./plugin_head /path/to/dx-worker /path/to/libdx_example_tasks.so
//
// The head is built from the same task source as the plugin, so it can name the functions in
// cl.submit; with head_runs_tasks(false) they run on the worker, from the plugin.
#include "tasks.hpp"

#include <dx/dx.hpp>

#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <vector>

extern char** environ;

int main(int argc, char** argv) {
  if (argc < 3) {
    fmt::print(stderr, "usage: {} DX_WORKER PLUGIN.so\n", argv[0]);
    return 2;
  }
  dx::cluster cl{dx::options{}.listen("127.0.0.1:0").head_runs_tasks(false).token("example-secret")};
  const std::string endpoint = cl.endpoint();
  std::string connect = endpoint, plugin = argv[2];
  char* worker_argv[] = {
      argv[1], const_cast<char*>("--connect"), connect.data(), const_cast<char*>("--plugin"), plugin.data(), nullptr};
  std::string token_env = "DX_TOKEN=example-secret";
  std::vector<char*> env;
  for (char** e = environ; *e; ++e) env.push_back(*e);
  env.push_back(token_env.data());
  env.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, argv[1], nullptr, nullptr, worker_argv, env.data()) != 0) {
    fmt::print(stderr, "cannot start {}\n", argv[1]);
    return 1;
  }
  int rc = 0;
  try {
    cl.wait_for_workers(1, std::chrono::seconds(20));
    auto loud = cl.submit(tasks::shout, std::string("hello from the plugin"));
    auto primes = cl.submit(tasks::primes_below, 50L);
    fmt::print("{}\n", loud.get());
    auto p = primes.get();
    fmt::print("{} primes below 50, the last {}\n", p.size(), p.back());
    rc = (p.size() == 15 && p.back() == 47) ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    rc = 1;
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  return rc;
}
