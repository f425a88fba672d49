// How dx's own code (the dataframe, tests) reaches a cluster's head runtime, which is not part of
// the public API.
#pragma once

#include "cluster/head.hpp"

#include <dx/cluster.hpp>

namespace dx::detail {

struct cluster_access {
  /// The head of a distributed cluster; nullptr for a cluster of local threads only.
  static head_core* head(const cluster& cl) noexcept { return cl.head_.get(); }
};

}  // namespace dx::detail
