// How dx's own code (the dataframe, tests) reaches a cluster's head runtime, which is not part of
// the public API.
#pragma once

#include "cluster/cluster_alerts.hpp"
#include "cluster/head.hpp"

#include <dx/cluster.hpp>

namespace dx::detail {

struct cluster_access {
  /// The head of a distributed cluster; nullptr for a cluster of local threads only.
  static head_core* head(const cluster& cl) noexcept { return cl.head_.get(); }
  /// Where the cluster's alerts are raised (thread-safe; lives as long as the cluster).
  static observe::alert_center& alerts(const cluster& cl) noexcept { return cl.alerts_->center(); }
};

}  // namespace dx::detail
