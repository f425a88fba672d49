// The statuses a journal accepts for runs and tasks (journal.hpp): a fixed vocabulary, so that a
// misspelt status is refused when recorded rather than found later by a resume that cannot
// interpret it.
#include "journal/journal.hpp"

#include <algorithm>
#include <array>

namespace dx::detail {

namespace {

constexpr std::array<std::string_view, 6> run_statuses{"CREATED", "RUNNING",   "SUCCEEDED",
                                                       "FAILED",  "CANCELLED", "INTERRUPTED"};
constexpr std::array<std::string_view, 3> finished_run_statuses{"SUCCEEDED", "FAILED", "CANCELLED"};
constexpr std::array<std::string_view, 9> task_statuses{"PENDING", "READY",     "RUNNING", "RETRYING", "SUCCEEDED",
                                                        "FAILED",  "CANCELLED", "SKIPPED", "CACHED"};

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& set, std::string_view status) noexcept {
  return std::find(set.begin(), set.end(), status) != set.end();
}

}  // namespace

bool is_run_status(std::string_view status) noexcept { return contains(run_statuses, status); }
bool is_finished_run_status(std::string_view status) noexcept { return contains(finished_run_statuses, status); }
bool is_task_status(std::string_view status) noexcept { return contains(task_statuses, status); }

}  // namespace dx::detail
