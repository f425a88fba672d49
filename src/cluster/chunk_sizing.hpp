// Sizing chunks from the cost model: the number of items per chunk whose predicted duration is a
// target, for cluster::map and for split workflow steps.
#pragma once

#include <cstddef>
#include <string>

namespace dx::detail {

class head_core;

/// The items per chunk of `kind` (chunks learned by their number of items as size hint) whose
/// predicted duration is `target_seconds`, within [1, most]; 0 when the model has not learned
/// the kind (the caller falls back or measures). Thread-safe; does not block.
std::size_t chunk_size_from_model(const head_core& head, const std::string& kind, double target_seconds,
                                  std::size_t most);

}  // namespace dx::detail
