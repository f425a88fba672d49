// A worker: connects to a head, runs the registered functions it is sent on a local executor,
// keeps large results until they are released, and serves them to peers and the head.
#pragma once

#include <dx/options.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace dx {
class executor;
}

namespace dx::detail {

struct worker_config {
  /// Runs tasks on this executor instead of a new one (the head's own threads).
  dx::executor* executor = nullptr;
  std::string connect;  // the head's "host:port"
  std::string token;
  std::string name;      // the worker's name (its id everywhere); empty: the head names it
  std::string head_key;  // set by a head for its own threads only (see hello_msg::head_key)
  std::size_t threads = 1;
  std::map<std::string, double> resources;
  double slowdown = 1.0;
  /// The share of its results it changes on purpose before sending them (a testing aid for
  /// replication: a worker that is sometimes wrong).
  double corrupt_results = 0.0;
  std::string data_listen;     // where peers fetch results; empty: chosen from `connect`
  std::string data_advertise;  // the address peers are told to fetch from; empty: the bound one
  transport_kind transport = transport_kind::tcp;
  std::uint64_t max_frame_size = std::uint64_t{256} << 20;
  std::uint64_t max_value_size = std::uint64_t{4} << 30;  // options::max_value_size
  std::chrono::milliseconds connect_timeout{10'000};
  /// How long a connection to the data port may take to pass its handshake before it is closed.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// TLS on the link to the head and on the result port (TCP only).
  tls_options tls;
  /// When the head's link is lost, tasks go on and their answers wait (wait() returns 2) for
  /// rejoin(): a head with options::offline_grace takes the worker back with its work.
  bool keep_work_offline = false;
};

/// The longest worker name a head accepts, in bytes.
inline constexpr std::size_t max_worker_name = 64;

/// Why `name` cannot name a worker (empty when it can): 1 to 64 characters, each a letter, a
/// digit or one of `.-_:@+`; "head" (the head's own threads) and "none" (no worker, in metrics)
/// are taken. A name arrives in a handshake, so this is all a head trusts of it.
std::string worker_name_problem(std::string_view name);

/// A host name made fit to start a worker name: cut at its first dot, without the characters a
/// name does not allow, at most 56 characters (room for "-<n>"); "worker" when nothing is left.
std::string host_part(std::string_view host);

/// Whether a head's reason for rejecting a worker may stop holding (the name is taken by a live
/// worker, which a lost one stops being once the head times its session out; the head is
/// stopping), so that joining again later may succeed; false for a wrong token or a bad name.
bool rejection_may_pass(std::string_view reason);

/// This machine's host name as host_part() makes it: the head names an unnamed worker
/// "<host>-<n>".
std::string host_name();

class worker_runtime {
 public:
  struct impl;

  explicit worker_runtime(worker_config cfg);
  ~worker_runtime();
  worker_runtime(const worker_runtime&) = delete;
  worker_runtime& operator=(const worker_runtime&) = delete;

  /// Connects and completes the handshake; throws dx::error naming the address, or
  /// dx::protocol_error when the head rejects this worker.
  void start();
  /// Blocks until the head sends shutdown (returns 0) or is lost (returns 1; 2 with
  /// keep_work_offline: the worker holds its work, see rejoin()), or leave() completed (returns 0).
  int wait();
  /// After wait() returned 2: joins the head again, keeping the work; true when the head took it
  /// back (wait() again), false when the head holds nothing for it (start a new worker_runtime).
  /// Throws dx::error when the head cannot be reached. Blocks up to the connect timeout.
  bool rejoin();
  /// Graceful leave: queued tasks go back to the head, running ones finish, then it disconnects.
  void leave();
  /// Abrupt stop, as if the process died: connections close, nothing is handed back.
  void kill();
  /// The worker's name in the cluster: the one it asked for, or the one the head gave it.
  std::string id() const;
  /// Why the head was lost, once wait() returned 1; the head's reason when start() threw because
  /// the head rejected this worker. Empty otherwise. Thread-safe.
  std::string lost_reason() const;
  /// The head's reason for rejecting this worker, when start() threw for it; else empty.
  /// Thread-safe.
  std::string rejection() const;
  /// Asks every task this worker runs to stop (their dx::stop_token), so that destroying it does
  /// not wait for work nobody will collect. Thread-safe; does not block.
  void stop_tasks();
  /// Tasks running now on this worker's threads. Thread-safe; does not block.
  std::size_t running_tasks() const noexcept;

 private:
  std::shared_ptr<impl> impl_;
};

/// The id of the worker whose task this thread is running; empty outside a worker's task.
std::string running_worker_id();

}  // namespace dx::detail
