// dx/command.hpp — a program run as a task: an argv array started as a child process wherever the
// task runs, its stdout the task's result.
//
//   dx::cluster cl{dx::options{}.listen("0.0.0.0:7700")};
//   dx::future<std::string> out = cl.submit(dx::run_command, dx::command{.argv = {"make", "-j4"}});
//   try { std::cout << out.get(); }
//   catch (const dx::command_failed& e) { std::cerr << e.exit_code() << ": " << e.stderr_tail(); }
//
// run_command is registered (as "dx.command") in every process that links dx, so a plain
// dx-worker runs it without a plugin; on a cluster without workers, or called directly, it runs
// on the calling process. The child runs in a process group of its own, with stdin from
// `stdin_data` (or /dev/null), none of the caller's other file descriptors and default signal
// handling; when its task is cancelled or times out the whole group gets SIGTERM, then SIGKILL
// after a second, so no grandchild outlives it.
#pragma once

#include <dx/error.hpp>
#include <dx/export.hpp>
#include <dx/serialize.hpp>
#include <dx/stop_token.hpp>

#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace dx {

/// What run_command starts. Serializable: a parameter of a registered function like any other.
/// (Every member has an initialiser so that designated initialisers naming a few of them draw no
/// -Wmissing-field-initializers warning.)
struct command {
  /// The program and its arguments; argv[0] is looked up in the worker's PATH unless it holds a
  /// '/'. With `shell`, argv[0] is a /bin/sh script and the rest become its $1, $2, ...
  std::vector<std::string> argv{};
  /// Runs `/bin/sh -c argv[0] sh argv[1]...` instead of argv[0] itself.
  bool shell = false;
  /// Written to the child's stdin, which is then closed; empty: stdin is /dev/null.
  std::string stdin_data{};
  /// Variables set in the child on top of the worker's environment (a value replaces the
  /// worker's). PATH set here is the child's, not the one argv[0] is looked up in.
  std::map<std::string, std::string> env{};
  /// The child's working directory; empty: the worker's.
  std::string working_dir{};
  /// The most stdout kept, in bytes; a child that writes more is killed and the task fails.
  std::size_t max_stdout = std::size_t{16} << 20;
  /// How many bytes of the end of stderr are kept for the error of a failed command.
  std::size_t stderr_tail = 4096;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& argv& shell& stdin_data& env& working_dir& max_stdout& stderr_tail;
  }
};

/// Runs `cmd` as a child process and returns what it wrote to stdout. Blocks until the child has
/// exited (and its pipes closed) or the task is stopped. Throws dx::command_failed when the child
/// exits with a code other than 0, is killed by a signal, writes more than max_stdout, or cannot
/// start (exit_code() 127: not found, 126: not executable or another reason, as a shell would
/// say); dx::error for a command that is not valid (empty argv, a NUL byte in an argument, an
/// environment name with '=', a working_dir that is not a directory); dx::cancelled when `st`
/// asks it to stop (after the child's process group was killed). Thread-safe: each call has its
/// own child.
DX_API std::string run_command(stop_token st, command cmd);

namespace detail {

/// command travels with an encoder compiled into dx, so that submitting one needs no
/// <dx/archive.hpp>.
template <>
struct builtin_codec<command> : std::true_type {
  DX_PLUGIN_API static void write(std::string& out, const command& v);
  DX_PLUGIN_API static command read(std::span<const char> in);
};

}  // namespace detail
}  // namespace dx
