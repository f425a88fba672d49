// Running the `dx` command as a user does, from the crash tests: a child process with its output
// in files, waited for with a bound, signalled or killed; and the orphans a killed head leaves
// (its worker processes) reaped by this process, which makes itself their subreaper.
//
//   become_subreaper();
//   dx_process p = start_dx(dir, "first", {"run", "wf.json", "--journal", "j.sqlite"});
//   ::kill(p.pid, SIGKILL);
//   wait_exit(p, 10s);
//   reap_orphans(10s);                      // the head's workers, reparented here
//   dx_outcome o = run_dx(dir, "status", {"status", "--json", "--journal", "j.sqlite"});
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace dx_cli_test {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

/// Processes whose parent dies are given to this process (not to init), so that a test reaps the
/// workers of a head it killed and knows they are gone before it reads what they wrote.
inline void become_subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

struct dx_process {
  pid_t pid = -1;
  fs::path out, err;  // its standard output and error
  clock::time_point started;
};

/// How a dx process ended: its exit code, or the signal that ended it; its output.
struct dx_outcome {
  int code = -1;   // -1: killed by a signal, or not ended within the limit
  int signal = 0;  // the signal that ended it
  bool timed_out = false;
  double seconds = 0;
  std::string out, err;
};

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The environment of a dx child: this process's, without DX_JOURNAL (each test names its
/// journal), with the cost model and the state folder in `dir` and quiet logs.
inline std::vector<std::string> child_environment(const fs::path& dir) {
  const std::vector<std::string> replaced{"DX_JOURNAL=", "DX_COSTMODEL=", "XDG_STATE_HOME=", "DX_LOG="};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    bool skip = false;
    for (const auto& r : replaced) skip = skip || std::strncmp(*e, r.c_str(), r.size()) == 0;
    if (!skip) env.emplace_back(*e);
  }
  env.push_back("DX_COSTMODEL=" + (dir / "cost_model.txt").string());
  env.push_back("XDG_STATE_HOME=" + (dir / "state").string());
  env.push_back("DX_LOG=error");
  return env;
}

/// Starts `program` with `args`, standard input from /dev/null and its output in
/// `dir`/`tag`.out and .err; in a process group of its own when `own_group`.
inline dx_process start_program(const std::string& program, const fs::path& dir, const std::string& tag,
                                const std::vector<std::string>& args, bool own_group = false) {
  dx_process p;
  p.out = dir / (tag + ".out");
  p.err = dir / (tag + ".err");
  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s = child_environment(dir);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, p.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, p.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child starts with no signal blocked and SIGINT and SIGTERM at their defaults, whatever
  // this process has.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (own_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  p.started = clock::now();
  const int rc = ::posix_spawn(&p.pid, program.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + program);
  return p;
}

/// Waits up to `limit` for `p` to end, then SIGKILLs it. Fills code/signal/timed_out/output.
inline dx_outcome wait_exit(const dx_process& p, std::chrono::milliseconds limit) {
  dx_outcome o;
  const auto deadline = clock::now() + limit;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(p.pid, &status, WNOHANG);
    if (r == p.pid) break;
    if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid");
    if (clock::now() >= deadline) {
      o.timed_out = true;
      ::kill(p.pid, SIGKILL);
      while (::waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  o.seconds = std::chrono::duration<double>(clock::now() - p.started).count();
  if (WIFEXITED(status) && !o.timed_out) o.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
  o.out = read_text(p.out);
  o.err = read_text(p.err);
  return o;
}

/// Children of this process (the orphans given to it as subreaper included).
inline std::vector<pid_t> children() {
  std::vector<pid_t> out;
  const pid_t self = ::getpid();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(line.substr(paren + 2));
    char state = 0;
    pid_t parent = 0;
    rest >> state >> parent;
    if (parent == self) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

/// Reaps every child that has ended and waits up to `limit` for the others (a killed head's
/// workers, which leave once they see it gone); past it, kills them. True when all ended on
/// their own.
inline bool reap_orphans(std::chrono::milliseconds limit) {
  const auto deadline = clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(-1, &status, WNOHANG);
    if (r > 0) continue;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return true;  // ECHILD: none left
    if (clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (pid_t c : children()) ::kill(c, SIGKILL);
  int status = 0;
  while (::waitpid(-1, &status, 0) > 0 || errno == EINTR) {
  }
  return false;
}

}  // namespace dx_cli_test
