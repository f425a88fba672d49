// dx/stop_token.hpp — how a running task learns that it was cancelled or timed out.
//
// A task asks to be told by taking a dx::stop_token as its first parameter, or asks
// dx::this_task::stop_requested() from anywhere in its body; it then returns early. What it
// returns after the stop is discarded: its future already failed with dx::cancelled or dx::timeout.
//
//   auto f = ex.submit([](dx::stop_token st, int n) {
//     for (int i = 0; i < n && !st.stop_requested(); ++i) step(i);
//   }, 1'000'000);
//   f.cancel();   // the loop ends at its next check; f.get() throws dx::cancelled
//
// The same works for registered functions (DX_REMOTE) on workers.
#pragma once

#include <dx/detail/runtime.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/export.hpp>

namespace dx {

/// A view of one task's stop request. Cheap to copy (a reference count); a default-constructed
/// token never stops. Thread-safe: any number of threads may ask one token.
class stop_token {
 public:
  /// A token that is never stopped. Does not block.
  stop_token() noexcept = default;
  /// The token of the task whose state is `s` (nullptr: never stopped). Does not block.
  explicit stop_token(detail::state_base* s) noexcept : s_(s) {
    if (s_) s_->add_ref();
  }
  stop_token(const stop_token& o) noexcept : stop_token(o.s_) {}
  stop_token(stop_token&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  stop_token& operator=(stop_token o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~stop_token() {
    if (s_) s_->release();
  }

  /// Whether the task was cancelled or timed out. Acquire ordering: what the canceller wrote
  /// before cancelling is visible after this returns true. Thread-safe; does not block.
  bool stop_requested() const noexcept { return s_ && s_->stop_requested(); }
  /// Whether a stop can ever be requested through this token (false for a default one).
  /// Thread-safe; does not block.
  bool stop_possible() const noexcept { return s_ != nullptr; }

 private:
  detail::state_base* s_ = nullptr;
};

namespace this_task {

/// The stop token of the task running on this thread (a local task, a graph task, or a registered
/// function on a worker); a token that never stops outside a task. Thread-safe; does not block.
inline stop_token get_stop_token() noexcept { return stop_token(detail::current_task()); }

/// Whether the task running on this thread was cancelled or timed out; false outside a task.
/// Thread-safe; does not block.
inline bool stop_requested() noexcept {
  const detail::state_base* s = detail::current_task();
  return s && s->stop_requested();
}

}  // namespace this_task
}  // namespace dx
