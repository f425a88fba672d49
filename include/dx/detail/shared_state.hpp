// dx/detail/shared_state.hpp — the state shared by a promise and its futures. Not for users.
#pragma once

#include <dx/detail/chrono.hpp>
#include <dx/detail/runtime.hpp>
#include <dx/error.hpp>
#include <dx/export.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace dx::detail {

/// A callback registered on a shared state, fired exactly once when the state becomes ready.
/// Intrusive (the owner embeds it), so registering allocates nothing. `fire` may destroy the
/// object that embeds the node, so the state never touches a node after firing it.
struct continuation {
  using fire_fn = void (*)(continuation*) noexcept;
  fire_fn fire = nullptr;
  continuation* next = nullptr;
};

/// Type-independent part of a shared state: readiness, the continuation list, the error and the
/// reference count.
///
/// Memory ordering: the producer writes the value or error, then publish() swaps the list head
/// for the ready tag with acq_rel; readers test readiness with an acquire load of the head, so a
/// reader that sees "ready" also sees the value.
class DX_API state_base : public pooled {
 public:
  state_base() noexcept = default;
  state_base(const state_base&) = delete;
  state_base& operator=(const state_base&) = delete;
  virtual ~state_base();

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    // acq_rel: the last owner must see every other owner's writes before destroying.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  /// Ready means the value (or error) is here. For a state whose value lives elsewhere (a remote
  /// result), asking also requests the value.
  bool is_ready() const noexcept {
    if (head_.load(std::memory_order_acquire) == ready_tag()) return true;
    if (lazy_) const_cast<state_base*>(this)->demand();
    return false;
  }
  /// Takes a reference unless the count already fell to zero (the state is being destroyed).
  bool try_add_ref() noexcept {
    std::uint32_t n = refs_.load(std::memory_order_relaxed);
    while (n != 0) {
      if (refs_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
    }
    return false;
  }
  bool has_error() const noexcept { return error_ != nullptr; }
  const std::exception_ptr& error() const noexcept { return error_; }

  /// Registers `c`; fires it at once, on this thread, if the state is already ready.
  void on_ready(continuation* c) noexcept {
    if (lazy_) demand();
    continuation* head = head_.load(std::memory_order_acquire);
    do {
      if (head == ready_tag()) {
        c->fire(c);
        return;
      }
      c->next = head;
      // release: publish c's fields to the thread that will fire it.
    } while (!head_.compare_exchange_weak(head, c, std::memory_order_release, std::memory_order_acquire));
  }

  /// Stores an error without publishing it; publish() follows.
  void store_error(std::exception_ptr e) noexcept { error_ = std::move(e); }
  void set_error(std::exception_ptr e) noexcept {
    error_ = std::move(e);
    publish();
  }

  // ---- stopping: cancellation and timeouts ------------------------------------------------------
  //
  // A state produced by a task can be settled early: request_stop() asks the task to stop and, if
  // the task has not settled the state yet, settles it with the given error at once. The task
  // claims the state before storing its outcome, so exactly one of the two settles it; a task that
  // loses the claim discards its result (a late completion). control_ orders this: fetch_or with
  // acq_rel, so the claimer's writes before publish() are seen by whoever reads the outcome.

  /// Asks the work behind this state to stop and settles the state with `outcome` (dx::cancelled,
  /// dx::timeout) when the work has not settled it yet. Returns whether `outcome` settled it. A
  /// state nothing cancellable produces (a bare promise's) only records the request. Thread-safe;
  /// does not block.
  virtual bool request_stop(std::exception_ptr outcome) noexcept {
    (void)outcome;
    control_.fetch_or(stop_bit, std::memory_order_acq_rel);
    return false;
  }
  /// Whether stopping was requested. acquire: pairs with the fetch_or in request_stop.
  bool stop_requested() const noexcept { return (control_.load(std::memory_order_acquire) & stop_bit) != 0; }
  /// Whether the outcome was claimed (by the task or by a stop).
  bool settled() const noexcept { return (control_.load(std::memory_order_acquire) & claimed_bit) != 0; }
  /// Claims the right to store the outcome; false when a stop settled the state first.
  bool claim() noexcept { return (control_.fetch_or(claimed_bit, std::memory_order_acq_rel) & claimed_bit) == 0; }

  /// Marks the state ready and fires the continuations in registration order. Call once, after
  /// storing the value or error.
  void publish() noexcept;
  /// publish() from the end of an executor task: the first continuation that becomes a task runs
  /// next on this thread, without a trip through the queues.
  void publish_from_task() noexcept;

  /// Blocks until ready. On an executor's worker thread it runs other tasks meanwhile.
  void wait() noexcept;
  /// Blocks until ready or until `deadline`; returns is_ready().
  bool wait_until(std::chrono::steady_clock::time_point deadline) noexcept;

  /// The executor on which continuations of this state run, or nullptr to run them inline on the
  /// thread that completes the state.
  executor_impl* executor() const noexcept { return executor_; }
  void set_executor(executor_impl* ex) noexcept { executor_ = ex; }

 protected:
  /// A state whose value is produced elsewhere and fetched only when someone asks (waits,
  /// registers a continuation, tests readiness) sets lazy_ and overrides demand(). demand() may be
  /// called many times and from any thread.
  virtual void demand() noexcept {}
  /// request_stop() for a state a task produces: records the request, and settles the state with
  /// `outcome` unless the task claimed it first.
  bool stop_and_settle(std::exception_ptr outcome) noexcept {
    const std::uint8_t before = control_.fetch_or(stop_bit | claimed_bit, std::memory_order_acq_rel);
    if (before & claimed_bit) return false;
    set_error(std::move(outcome));
    return true;
  }
  bool lazy_ = false;
  static constexpr std::uint8_t stop_bit = 1;
  static constexpr std::uint8_t claimed_bit = 2;
  std::atomic<std::uint8_t> control_{0};

 private:
  static continuation* ready_tag() noexcept { return reinterpret_cast<continuation*>(std::uintptr_t{1}); }

  std::atomic<continuation*> head_{nullptr};
  std::atomic<std::uint32_t> refs_{1};
  executor_impl* executor_ = nullptr;
  std::exception_ptr error_;
};

/// The state of a future<T>: a state_base plus storage for the value.
template <class T>
class shared_state : public state_base {
 public:
  template <class... A>
  void emplace(A&&... a) {
    value_.emplace(std::forward<A>(a)...);
  }
  template <class... A>
  void set_value(A&&... a) {
    value_.emplace(std::forward<A>(a)...);
    publish();
  }
  T& value() noexcept { return *value_; }

 private:
  std::optional<T> value_;
};

template <>
class shared_state<void> : public state_base {
 public:
  void emplace() noexcept {}
  void set_value() noexcept { publish(); }
  void value() noexcept {}
};

/// An owning pointer to a shared state (intrusive reference count).
template <class S>
class state_ptr {
 public:
  state_ptr() noexcept = default;
  /// Adopts one reference that the caller already holds.
  explicit state_ptr(S* s) noexcept : s_(s) {}
  state_ptr(const state_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->add_ref();
  }
  state_ptr(state_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  state_ptr& operator=(state_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~state_ptr() {
    if (s_) s_->release();
  }
  S* get() const noexcept { return s_; }
  S* operator->() const noexcept { return s_; }
  S* release() noexcept { return std::exchange(s_, nullptr); }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  S* s_ = nullptr;
};

}  // namespace dx::detail
