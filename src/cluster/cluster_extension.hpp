// What a higher layer attaches to a cluster (the runs of workflows): one object per cluster, made
// on first use and stopped first when the cluster stops, before the head and the threads.
#pragma once

#include <dx/cluster.hpp>

#include <functional>
#include <memory>

namespace dx::detail {

class cluster_extension {
 public:
  virtual ~cluster_extension() = default;
  /// The cluster is stopping: nothing new may start. Called once, before the head stops.
  virtual void shutdown() noexcept = 0;
};

struct cluster_extensions {
  /// The cluster's extension, made by `make` if it has none yet. Thread-safe; does not block.
  static std::shared_ptr<cluster_extension> get_or_make(
      cluster& cl, const std::function<std::shared_ptr<cluster_extension>()>& make);
};

}  // namespace dx::detail
