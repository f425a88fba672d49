// The inside of dx::workflow: the definition as JSON values (what to_json writes back), and the
// analysis that checks it and resolves its steps for a runner.
#pragma once

#include <dx/detail/json_view.hpp>
#include <dx/workflow.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace dx::detail {

// Ordered, so that a workflow written back keeps the order of its fields and reads as it was
// written; comparisons and digests go through canonical_json.
using ordered_json = nlohmann::ordered_json;

struct workflow_impl {
  ordered_json top = ordered_json::object();  // every top-level field but "steps"
  std::vector<ordered_json> steps;            // each as written (or as the C++ builders wrote it)

  /// The step named `name` (the first, should the text define it twice), or null. Steps are
  /// only appended, so the index catches up with them lazily: building a workflow of n steps
  /// stays O(n). Not thread-safe (a workflow is built by one thread).
  ordered_json* find_step(const std::string& name) {
    for (; indexed_ < steps.size(); ++indexed_) {
      const auto it = steps[indexed_].find("name");
      if (steps[indexed_].is_object() && it != steps[indexed_].end() && it->is_string())
        index_.emplace(it->get<std::string>(), indexed_);
    }
    const auto at = index_.find(name);
    return at == index_.end() ? nullptr : &steps[at->second];
  }

 private:
  std::unordered_map<std::string, std::size_t> index_;
  std::size_t indexed_ = 0;
};

/// What analyse() found: the problems, and when there are none, the resolved steps in file
/// order and a topological order of them.
struct workflow_analysis {
  std::vector<std::string> problems;
  std::vector<workflow_step> steps;
  std::vector<std::size_t> order;
};

/// Checks `wf`: its shape always, functions and parameters against the registry when
/// `with_registry`, resources against `capacities` when given. Thread-safe; does not block.
workflow_analysis analyse(const workflow_impl& wf, bool with_registry,
                          const std::vector<std::map<std::string, double>>& capacities);

/// `v` with objects' keys sorted: the form compared and digested.
nlohmann::json canonical_json(const ordered_json& v);

/// A view of `v` for the templates of dx/detail/json_view.hpp (valid while `v` is).
json_view view_of(const ordered_json& v) noexcept;

/// The deepest nesting from_json accepts: deeper text is refused before it is parsed.
inline constexpr std::size_t max_json_depth = 128;

/// Parses untrusted JSON text: nesting beyond max_json_depth, text that is not JSON (or not
/// UTF-8) and numbers out of range become a message in `error`. Thread-safe; does not block.
bool parse_json(std::string_view text, ordered_json& out, std::string& error);

/// The edit distance between two names (for suggestions). Thread-safe; does not block.
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace dx::detail
