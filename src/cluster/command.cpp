// dx::run_command: a child process run as a task (posix_spawn in its own process group, stdout and
// stderr read together through poll, the group killed on a stop), its registration as
// "dx.command", its encoder, and dx::command_failed rebuilt on the head from a worker's message.
#include <dx/archive.hpp>
#include <dx/command.hpp>
#include <dx/error.hpp>
#include <dx/remote.hpp>

#include "cluster/builtins.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern char** environ;

namespace dx {

namespace {

using clock = std::chrono::steady_clock;

/// How long a process group has between SIGTERM and SIGKILL once its task is stopped.
constexpr auto term_grace = std::chrono::milliseconds(1000);
/// How long the pipes are still read after the child exited, for a grandchild that holds them.
constexpr auto drain_after_exit = std::chrono::milliseconds(500);
/// How often a running command looks at its stop token (poll's timeout).
constexpr int stop_check_ms = 10;
/// The most of a command line a message shows.
constexpr std::size_t shown_command_chars = 200;

/// The command line as messages show it: arguments joined by spaces, with \ and ' escaped so that
/// rebuild_remote_failure finds the closing quote whatever the arguments hold.
std::string shown(const command& c) {
  std::string raw;
  for (std::size_t i = 0; i < c.argv.size(); ++i) {
    if (i) raw += ' ';
    raw += c.argv[i];
  }
  bool cut = false;
  if (raw.size() > shown_command_chars) {
    raw.resize(shown_command_chars);
    cut = true;
  }
  std::string out;
  for (char ch : raw) {
    if (ch == '\\' || ch == '\'') out += '\\';
    out += ch;
  }
  if (cut) out += "...";
  return out;
}

std::string trimmed_tail(std::string tail) {
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r' || tail.back() == ' ')) tail.pop_back();
  return tail;
}

[[noreturn]] void fail(const command& c, const std::string& status, int exit_code, int sig, std::string tail) {
  tail = trimmed_tail(std::move(tail));
  std::string what = fmt::format("command '{}' {}", shown(c), status);
  if (!tail.empty()) what += ": " + tail;
  throw command_failed(what, exit_code, sig, std::move(tail));
}

[[noreturn]] void invalid(const std::string& why) { detail::throw_error(detail::error_kind::generic, why); }

void check(const command& c) {
  if (c.argv.empty() || c.argv[0].empty()) invalid("dx::run_command: argv is empty: there is no program to run");
  for (const auto& a : c.argv)
    if (a.find('\0') != std::string::npos)
      invalid(fmt::format("dx::run_command: an argument of '{}' holds a NUL byte", shown(c)));
  for (const auto& [k, v] : c.env)
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos)
      invalid(
          fmt::format("dx::run_command: '{}' is not an environment variable name (or its value holds a NUL byte)", k));
  if (!c.working_dir.empty()) {
    struct stat st {};
    if (::stat(c.working_dir.c_str(), &st) != 0)
      invalid(fmt::format("dx::run_command: working directory '{}' of '{}': {}", c.working_dir, shown(c),
                          std::strerror(errno)));
    if (!S_ISDIR(st.st_mode))
      invalid(
          fmt::format("dx::run_command: working directory '{}' of '{}' is not a directory", c.working_dir, shown(c)));
  }
}

/// A file descriptor closed on destruction.
struct fd {
  int n = -1;
  fd() = default;
  explicit fd(int v) : n(v) {}
  fd(fd&& o) noexcept : n(std::exchange(o.n, -1)) {}
  fd& operator=(fd&& o) noexcept {
    reset();
    n = std::exchange(o.n, -1);
    return *this;
  }
  ~fd() { reset(); }
  void reset() noexcept {
    if (n >= 0) ::close(n);
    n = -1;
  }
};

struct pipe_pair {
  fd read, write;
};

pipe_pair make_pipe() {
  int p[2];
  // Close-on-exec: only the ends the child gets by dup2 reach it.
  if (::pipe2(p, O_CLOEXEC) != 0)
    detail::throw_error(detail::error_kind::generic,
                        fmt::format("dx::run_command: cannot create a pipe: {}", std::strerror(errno)));
  return {fd(p[0]), fd(p[1])};
}

/// Whether the child has exited, without reaping it: until it is reaped its pid stays its
/// process group's id, so signalling the group cannot reach a stranger that reused the number.
bool exited_unreaped(pid_t pid) {
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    if (errno != EINTR) return true;
  }
  return info.si_pid == pid;
}

int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 0;
  }
  return status;
}

/// What the child left: its status and output.
struct outcome {
  int status = 0;
  std::string out;
  std::string err_tail;
  bool over_limit = false;
  bool stopped = false;
};

/// Keeps the last `limit` bytes written to it.
void keep_tail(std::string& tail, const char* data, std::size_t n, std::size_t limit) {
  if (limit == 0) return;
  if (n >= limit) {
    tail.assign(data + (n - limit), limit);
    return;
  }
  tail.append(data, n);
  if (tail.size() > limit) tail.erase(0, tail.size() - limit);
}

/// A write to a pipe whose reader is gone raises SIGPIPE, which would end the worker: this thread
/// holds it blocked while it writes stdin, and takes a pending one away before unblocking it.
struct sigpipe_blocked {
  sigset_t pipe_set{}, old{};
  sigpipe_blocked() {
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  }
  ~sigpipe_blocked() {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
};

outcome supervise(const command& c, stop_token& st, pid_t pid, fd out_r, fd err_r, fd in_w) {
  outcome o;
  std::size_t written = 0;
  if (in_w.n >= 0) ::fcntl(in_w.n, F_SETFL, ::fcntl(in_w.n, F_GETFL) | O_NONBLOCK);
  sigpipe_blocked guard;
  bool leader_exited = false;
  clock::time_point exited_at{};
  char buf[65536];
  for (;;) {
    if (st.stop_requested()) {
      o.stopped = true;
      break;
    }
    if (!leader_exited && exited_unreaped(pid)) {
      leader_exited = true;
      exited_at = clock::now();
    }
    // Done once the child exited and its pipes closed, or soon after it exited while a
    // grandchild still holds them.
    if (leader_exited && ((out_r.n < 0 && err_r.n < 0) || clock::now() - exited_at > drain_after_exit)) break;
    pollfd fds[3];
    int n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_r.n >= 0) {
      out_i = n;
      fds[n++] = {out_r.n, POLLIN, 0};
    }
    if (err_r.n >= 0) {
      err_i = n;
      fds[n++] = {err_r.n, POLLIN, 0};
    }
    if (in_w.n >= 0) {
      in_i = n;
      fds[n++] = {in_w.n, POLLOUT, 0};
    }
    const int r = ::poll(fds, static_cast<nfds_t>(n), stop_check_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (r == 0) continue;
    if (out_i >= 0 && fds[out_i].revents) {
      const ssize_t k = ::read(out_r.n, buf, sizeof buf);
      if (k > 0) {
        const auto got = static_cast<std::size_t>(k);
        if (o.out.size() + got > c.max_stdout) {
          o.over_limit = true;
          break;
        }
        o.out.append(buf, got);
      } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        out_r.reset();
      }
    }
    if (err_i >= 0 && fds[err_i].revents) {
      const ssize_t k = ::read(err_r.n, buf, sizeof buf);
      if (k > 0) {
        keep_tail(o.err_tail, buf, static_cast<std::size_t>(k), c.stderr_tail);
      } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        err_r.reset();
      }
    }
    if (in_i >= 0 && fds[in_i].revents) {
      if (fds[in_i].revents & (POLLERR | POLLHUP)) {
        in_w.reset();  // the child closed its stdin: the rest is not wanted
      } else {
        const ssize_t k = ::write(in_w.n, c.stdin_data.data() + written, c.stdin_data.size() - written);
        if (k > 0) written += static_cast<std::size_t>(k);
        if ((k < 0 && errno != EINTR && errno != EAGAIN) || written == c.stdin_data.size()) in_w.reset();
      }
    }
  }
  in_w.reset();
  if (o.stopped) {
    // A stop asks the whole group to end; a group that does not within the grace is killed.
    ::kill(-pid, SIGTERM);
    const auto deadline = clock::now() + term_grace;
    while (clock::now() < deadline && !exited_unreaped(pid)) ::usleep(5000);
  }
  // Whatever is left of the group (a grandchild in the background, a child over its stdout
  // limit) goes with it, while the unreaped leader still holds the group's id.
  ::kill(-pid, SIGKILL);
  o.status = reap(pid);
  return o;
}

}  // namespace

std::string run_command(stop_token st, command cmd) {
  check(cmd);
  if (st.stop_requested()) detail::throw_error(detail::error_kind::cancelled, "command '" + shown(cmd) + "' stopped");

  std::vector<std::string> args;
  if (cmd.shell) {
    args = {"/bin/sh", "-c", cmd.argv[0], "sh"};
    args.insert(args.end(), cmd.argv.begin() + 1, cmd.argv.end());
  } else {
    args = cmd.argv;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string_view entry = *e;
    const auto eq = entry.find('=');
    if (eq != std::string_view::npos && cmd.env.count(std::string(entry.substr(0, eq)))) continue;
    env_strings.emplace_back(entry);
  }
  for (const auto& [k, v] : cmd.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  pipe_pair out = make_pipe(), err = make_pipe();
  pipe_pair in;
  if (!cmd.stdin_data.empty()) in = make_pipe();

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (in.read.n >= 0) {
    posix_spawn_file_actions_adddup2(&actions, in.read.n, 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out.write.n, 1);
  posix_spawn_file_actions_adddup2(&actions, err.write.n, 2);
  // Every other descriptor of the worker (its sockets, whether or not they are close-on-exec)
  // stays out of the child.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!cmd.working_dir.empty()) posix_spawn_file_actions_addchdir_np(&actions, cmd.working_dir.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // A group of its own, so a stop reaches its grandchildren; the signal mask and dispositions of
  // the worker (which blocks SIGTERM and SIGINT in every thread) are not the child's.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = 0;
  const bool search = !cmd.shell && cmd.argv[0].find('/') == std::string::npos;
  const int rc = search ? ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data())
                        : ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    const int code = rc == ENOENT ? 127 : 126;
    fail(cmd, fmt::format("could not start (exit code {}): {}", code, std::strerror(rc)), code, 0, {});
  }
  // The child has its ends: closing them here lets EOF arrive when it (and its children) exit.
  out.write.reset();
  err.write.reset();
  in.read.reset();

  outcome o = supervise(cmd, st, pid, std::move(out.read), std::move(err.read), std::move(in.write));
  if (o.stopped) detail::throw_error(detail::error_kind::cancelled, "command '" + shown(cmd) + "' stopped");
  if (o.over_limit)
    fail(cmd, fmt::format("wrote more than {} bytes to stdout (command::max_stdout) and was killed", cmd.max_stdout),
         -1, SIGKILL, std::move(o.err_tail));
  if (WIFSIGNALED(o.status)) {
    const int sig = WTERMSIG(o.status);
    fail(cmd, fmt::format("was killed by signal {} ({})", sig, ::strsignal(sig)), -1, sig, std::move(o.err_tail));
  }
  const int code = WIFEXITED(o.status) ? WEXITSTATUS(o.status) : -1;
  if (code != 0) fail(cmd, fmt::format("exited with code {}", code), code, 0, std::move(o.err_tail));
  return std::move(o.out);
}

namespace detail {

void builtin_codec<command>::write(std::string& out, const command& v) { archive_codec<command>::write(out, v); }
command builtin_codec<command>::read(std::span<const char> in) { return archive_codec<command>::read(in); }

bool register_builtin_functions() noexcept { return register_remote_function<&run_command>("dx.command"); }

namespace {

/// The integer at the start of `s`, which is advanced past it; false when there is none.
bool read_int(std::string_view& s, int& v) {
  std::size_t i = 0;
  bool neg = false;
  if (i < s.size() && s[i] == '-') {
    neg = true;
    ++i;
  }
  const std::size_t digits = i;
  long long x = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9' && x < 1'000'000) x = x * 10 + (s[i++] - '0');
  if (i == digits) return false;
  v = static_cast<int>(neg ? -x : x);
  s.remove_prefix(i);
  return true;
}

}  // namespace

std::exception_ptr rebuild_remote_failure(const std::string& type_name, const std::string& message,
                                          const std::string& worker) noexcept {
  if (type_name != "dx::command_failed") return nullptr;
  try {
    int code = -1, sig = 0;
    std::string tail;
    std::string_view rest = message;
    constexpr std::string_view open = "command '";
    if (rest.starts_with(open)) {
      // shown() escapes \ and ': the first unescaped ' closes the command line.
      std::size_t i = open.size();
      while (i < rest.size() && rest[i] != '\'') i += rest[i] == '\\' ? 2 : 1;
      rest.remove_prefix(std::min(i + 1, rest.size()));
      constexpr std::string_view exited = " exited with code ", killed = " was killed by signal ",
                                 over = " wrote more than ", no_start = " could not start (exit code ";
      if (rest.starts_with(exited)) {
        rest.remove_prefix(exited.size());
        read_int(rest, code);
      } else if (rest.starts_with(killed)) {
        rest.remove_prefix(killed.size());
        read_int(rest, sig);
      } else if (rest.starts_with(over)) {
        sig = SIGKILL;
      } else if (rest.starts_with(no_start)) {
        rest.remove_prefix(no_start.size());
        read_int(rest, code);
        rest = {};
      }
      if (!rest.empty() && !rest.starts_with(": ")) {
        if (const auto colon = rest.find(": "); colon != std::string_view::npos) rest.remove_prefix(colon);
      }
      if (rest.starts_with(": ")) tail = std::string(rest.substr(2));
    }
    return std::make_exception_ptr(
        command_failed("worker " + worker + ": " + message, code, sig, std::move(tail), worker));
  } catch (...) {
    return nullptr;
  }
}

}  // namespace detail
}  // namespace dx
