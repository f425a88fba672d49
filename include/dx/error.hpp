// dx/error.hpp — the exceptions dx throws, all rooted at dx::error.
//
// Every failure dx reports at its API boundary is a dx::error or a subclass, so one catch clause
// covers them; a task's own exception travels through its future unchanged.
//
//   try { fut.get(); }
//   catch (const dx::broken_promise& e) { ... }   // the producer went away
//   catch (const dx::error& e) { std::cerr << "dx: " << e.what() << "\n"; }
#pragma once

#include <dx/export.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace dx {

/// Root of every exception dx throws. Thread-safe to copy and inspect; nothing here blocks.
class DX_API error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A future or promise was used without shared state: empty, moved-from, or already consumed.
class DX_API no_state : public error {
 public:
  using error::error;
};

/// The promise (or the task behind a future) was destroyed without producing a value.
class DX_API broken_promise : public error {
 public:
  using error::error;
};

/// The work was cancelled before it produced a value.
class DX_API cancelled : public error {
 public:
  using error::error;
};

/// Work was submitted to an executor that is shutting down.
class DX_API executor_shutdown : public error {
 public:
  using error::error;
};

/// A task graph has a dependency cycle; what() names the tasks on it.
class DX_API cycle_error : public error {
 public:
  using error::error;
};

/// A wait timed out.
class DX_API timeout : public error {
 public:
  using error::error;
};

/// An exception thrown by a task on another process. what() reads
/// "<type> on worker <id>: <message>"; the parts are also available separately.
class DX_API remote_error : public error {
 public:
  /// what() becomes "<type_name> on worker <worker>: <message>". Does not block.
  remote_error(std::string type_name, std::string message, std::string worker);
  /// The same, with the public base classes of the original type (see type_bases()). Does not
  /// block.
  remote_error(std::string type_name, std::vector<std::string> type_bases, std::string message, std::string worker);
  /// The dynamic type of the original exception, demangled ("std::out_of_range"). Thread-safe;
  /// does not block.
  const std::string& type_name() const noexcept { return type_name_; }
  /// The demangled names of the original type's public base classes, nearest first
  /// ({"std::runtime_error", "std::exception"} for a std::range_error); empty when not known.
  /// Retry filters match against these too. Thread-safe; does not block.
  const std::vector<std::string>& type_bases() const noexcept { return type_bases_; }
  /// The original exception's what(). Thread-safe; does not block.
  const std::string& message() const noexcept { return message_; }
  /// The id of the worker the task ran on. Thread-safe; does not block.
  const std::string& worker() const noexcept { return worker_; }

 private:
  std::string type_name_;
  std::vector<std::string> type_bases_;
  std::string message_;
  std::string worker_;
};

/// A task was running on more workers that died than the cluster's allowed_failures.
class DX_API worker_lost : public error {
 public:
  using error::error;
};

/// A peer broke the wire protocol (bad frame, wrong version, failed authentication).
class DX_API protocol_error : public error {
 public:
  using error::error;
};

/// Bytes that do not decode as what they should be: a message body from a peer that is not the
/// message its header names (a size its bytes cannot back, an invalid bool or enum value, bytes
/// left over). what() names the message and the reason. A protocol_error, so one catch of
/// protocol_error covers every way a peer can break the protocol.
class DX_API decode_error : public protocol_error {
 public:
  using protocol_error::protocol_error;
};

/// A function name is not registered (DX_REMOTE) in the process asked to run it.
class DX_API not_registered : public error {
 public:
  using error::error;
};

/// A workflow definition is not valid: a cycle, an unknown step or function, a parameter of the
/// wrong type, a bad duration or split... what() lists every problem found, one per line, each
/// naming its step.
class DX_API workflow_error : public error {
 public:
  using error::error;
};

/// A command (dx::run_command) failed: it exited with a code other than 0, was killed by a
/// signal, wrote more stdout than allowed, or could not start. what() reads "command 'make -j4'
/// exited with code 2: <the end of its stderr>". A command that failed on a worker arrives as
/// this type too (not as dx::remote_error), with worker() naming the worker. Thread-safe to copy
/// and inspect; nothing here blocks.
class DX_API command_failed : public error {
 public:
  /// `what` is the whole message; the parts are kept for the accessors. Does not block.
  command_failed(const std::string& what, int exit_code, int signal, std::string stderr_tail, std::string worker = {});
  /// The child's exit code; -1 when it was killed by a signal. 127 when the program was not
  /// found, 126 when it could not be started for another reason (as a shell reports them).
  int exit_code() const noexcept { return exit_code_; }
  /// The signal that killed the child (9 when dx killed it for writing too much); 0 when it
  /// exited.
  int signal() const noexcept { return signal_; }
  /// The last bytes the child wrote to stderr (at most command::stderr_tail of them).
  const std::string& stderr_tail() const noexcept { return stderr_tail_; }
  /// The worker the command ran on; empty when it ran in this process.
  const std::string& worker() const noexcept { return worker_; }

 private:
  int exit_code_ = -1;
  int signal_ = 0;
  std::string stderr_tail_;
  std::string worker_;
};

/// A dataframe or table operation failed: an unknown column, a type mismatch, malformed CSV, a
/// missing file. what() names the problem and, where it can, what would fix it.
class DX_API dataframe_error : public error {
 public:
  using error::error;
};

namespace detail {

/// Which exception throw_error raises.
enum class error_kind {
  generic,
  no_state,
  broken_promise,
  cancelled,
  executor_shutdown,
  cycle,
  timeout,
  worker_lost,
  protocol,
  not_registered,
  dataframe,
  decode,
  workflow
};

/// The single place dx throws from, so that throwing code stays out of inlined hot paths. Throws
/// the dx::error subclass that `kind` names (dx::error itself for generic), with `what` as its
/// message. Thread-safe; does not block.
[[noreturn]] DX_API void throw_error(error_kind kind, const std::string& what);

/// The same error as an exception_ptr, for storing into a future. Thread-safe; does not block.
DX_API std::exception_ptr make_error(error_kind kind, const std::string& what);

}  // namespace detail
}  // namespace dx
