#include <dx/task_group.hpp>

#include "waiter.hpp"

namespace dx {

task_group::~task_group() {
  try {
    wait();
  } catch (...) {  // NOLINT: a destructor must not throw; the caller chose not to wait()
  }
}

void task_group::record_error() noexcept {
  if (!failed_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
}

task_group_status task_group::wait() {
  if (pending_.load(std::memory_order_acquire) != 0) {
    detail::waiter w;
    waiter_.store(&w, std::memory_order_seq_cst);
    if (pending_.load(std::memory_order_seq_cst) == 0) {
      // Finished meanwhile. If a finishing task already took the waiter it is about to fire it:
      // block() then returns at once.
      if (waiter_.exchange(nullptr, std::memory_order_seq_cst) != &w) w.block();
    } else {
      w.block();
    }
  }
  // The last finish_one() released pending_ (acq_rel), so error_ is visible here.
  bool cancelled = cancelled_.exchange(false, std::memory_order_relaxed);
  if (failed_.exchange(false, std::memory_order_acquire)) {
    std::exception_ptr e = std::exchange(error_, nullptr);
    std::rethrow_exception(e);
  }
  return cancelled ? task_group_status::cancelled : task_group_status::complete;
}

}  // namespace dx
