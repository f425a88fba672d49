// dx/detail/metric_labels.hpp — the label set of a metric series, on its own so that dx/alert.hpp
// can name it without pulling in dx/metrics.hpp. Not for users to include: dx/metrics.hpp and
// dx/alert.hpp both export it as dx::metric_labels.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace dx::detail {

/// Label name and value pairs, {{"queue", "ingest"}}; order does not matter.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

}  // namespace dx::detail
