// Small facts about task statuses and failures that the parts of a run's engine share.
#pragma once

#include <dx/workflow.hpp>

#include <exception>
#include <string>

namespace dx::detail {

inline bool succeeded(task_status s) { return s == task_status::succeeded || s == task_status::cached; }

inline bool ended(task_status s) {
  return succeeded(s) || s == task_status::failed || s == task_status::skipped || s == task_status::cancelled;
}

inline std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

/// Thrown while a step is launched when an input it needs, finished before a resume, cannot be
/// read back from the journal: the step that made it runs again first.
struct lost_result {
  std::size_t step;
};

}  // namespace dx::detail
