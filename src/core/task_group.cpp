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
  std::size_t v = pending_.load(std::memory_order_acquire);
  if (v != 0) {
    detail::waiter w;
    waiter_ = &w;
    // release: the finisher that sees the bit also sees waiter_. If the count reaches zero first,
    // nothing is left to wait for.
    while (v != 0 && !pending_.compare_exchange_weak(v, v | waiter_installed, std::memory_order_acq_rel,
                                                     std::memory_order_acquire)) {
    }
    if (v != 0) w.block();  // the last finisher clears the bit and fires w
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
