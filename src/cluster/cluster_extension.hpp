// What a higher layer attaches to a cluster (the runs of workflows): one object per cluster, stopped
// first when the cluster stops, before the head and the threads. The head reaches it only through
// this interface: the extension's HTTP routes, its metrics and the names of its tasks in traces,
// so the cluster layer never includes the layers above it.
#pragma once

#include "observe/exposition.hpp"
#include "observe/http_server.hpp"

#include <dx/cluster.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dx::detail {

/// Whether an HTTP request may change the cluster (start or cancel work), as the head decided:
/// with a token configured, the request must carry "Authorization: Bearer <token>"; without one,
/// it must come from a loopback address and name a loopback host. A denied request is answered
/// with `status` (401 or 403) and `reason`.
struct http_write_access {
  bool allowed = false;
  unsigned status = 403;
  std::string reason;
};

class cluster_extension {
 public:
  virtual ~cluster_extension() = default;
  /// The cluster is stopping: nothing new may start. Called once, before the head stops.
  virtual void shutdown() noexcept = 0;
  /// Answers the request when it is one of the extension's routes; nullopt otherwise (the head
  /// routes it). Called on the HTTP server's thread, without the head's lock.
  virtual std::optional<http_response> serve_http(const http_request&, const http_write_access&) { return {}; }
  /// Writes the extension's metric families. Called without the head's lock.
  virtual void collect(exposition&) const {}
  /// What traces call each of these head tasks: one entry per id, empty when the task is not the
  /// extension's. Called without the head's lock.
  virtual std::vector<std::string> task_labels(std::span<const std::uint64_t> head_tasks) const {
    return std::vector<std::string>(head_tasks.size());
  }
};

/// A cluster's extension and how it is made: shared by the cluster and its head (whose HTTP
/// routes, metrics and traces ask it). Every member is thread-safe and does not block.
class extension_slot {
 public:
  using factory = std::function<std::shared_ptr<cluster_extension>(cluster&)>;

  explicit extension_slot(cluster& cl) : cluster_(cl) {}

  /// The extension, or nullptr when none was made.
  std::shared_ptr<cluster_extension> get() const;
  /// The extension, made by `make` if there is none yet (none is made once the cluster is
  /// stopping: nullptr then).
  std::shared_ptr<cluster_extension> get_or_make(const factory& make);
  /// The extension, made by the factory a higher layer registered if there is none yet (nullptr
  /// when none registered one). A cluster that serves HTTP makes it as it starts, so that the
  /// extension's routes answer before anything else made it.
  std::shared_ptr<cluster_extension> get_or_make_registered();
  /// Stops the extension (cluster_extension::shutdown) and makes no other. Idempotent.
  void shutdown() noexcept;

  /// Registers the factory of the extension every cluster has (the workflow layer does, from a
  /// static initialiser, in every program that links it). Thread-safe.
  static void register_factory(factory make);

 private:
  cluster& cluster_;
  mutable std::mutex mutex_;
  std::shared_ptr<cluster_extension> extension_;
  bool closed_ = false;
};

struct cluster_extensions {
  /// The cluster's extension, made by `make` if it has none yet. Throws dx::error when the
  /// cluster is stopping. Thread-safe; does not block.
  static std::shared_ptr<cluster_extension> get_or_make(cluster& cl, const extension_slot::factory& make);
  /// The cluster's extension if it has one (else nullptr). Thread-safe; does not block.
  static std::shared_ptr<cluster_extension> get(const cluster& cl);
};

}  // namespace dx::detail
