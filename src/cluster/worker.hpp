// A worker: connects to a head, runs the registered functions it is sent on a local executor,
// keeps large results until they are released, and serves them to peers and the head.
#pragma once

#include <dx/options.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace dx {
class executor;
}

namespace dx::detail {

struct worker_config {
  /// Runs tasks on this executor instead of a new one (the head's own threads).
  dx::executor* executor = nullptr;
  std::string connect;  // the head's "host:port"
  std::string token;
  std::string name;  // requested id; empty: the head assigns one
  std::size_t threads = 1;
  std::map<std::string, double> resources;
  double slowdown = 1.0;
  std::string data_listen;  // where peers fetch results; empty: chosen from `connect`
  transport_kind transport = transport_kind::tcp;
  std::uint64_t max_frame_size = std::uint64_t{256} << 20;
  std::chrono::milliseconds connect_timeout{10'000};
};

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
  /// Blocks until the head sends shutdown (returns 0) or is lost (returns 1), or leave()
  /// completed (returns 0).
  int wait();
  /// Graceful leave: queued tasks go back to the head, running ones finish, then it disconnects.
  void leave();
  /// Abrupt stop, as if the process died: connections close, nothing is handed back.
  void kill();
  /// The id the head assigned.
  std::string id() const;

 private:
  std::shared_ptr<impl> impl_;
};

/// The id of the worker whose task this thread is running; empty outside a worker's task.
std::string running_worker_id();

}  // namespace dx::detail
