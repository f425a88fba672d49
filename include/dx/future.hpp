// dx/future.hpp — futures, shared futures and promises with continuations.
//
// A dx::future<T> is the one-shot, move-only handle to a value (or exception) that some task will
// produce; dx::shared_future<T> is its copyable form; dx::promise<T> is the producing end for code
// that is not an executor task.
//
//   dx::promise<int> p;
//   dx::future<int> f = p.get_future().then([](int v) { return v * 2; });
//   p.set_value(21);
//   assert(f.get() == 42);
//
// Continuations of a future that an executor produced run as tasks on that executor; those of a
// future from a bare promise run on the thread that completes it (or at once, if it is ready).
#pragma once

#include <dx/detail/chrono.hpp>
#include <dx/detail/runtime.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/error.hpp>
#include <dx/stop_token.hpp>

#include <exception>
#include <functional>
#include <type_traits>
#include <utility>

namespace dx {

template <class T>
class future;
template <class T>
class shared_future;
template <class T>
class promise;

/// Result of a timed wait.
enum class future_status { ready, timeout };

namespace detail {

/// Gives dx's own templates access to the state behind a future without making it public API.
struct future_access {
  template <class T>
  static state_ptr<shared_state<T>>& state(future<T>& f) noexcept {
    return f.state_;
  }
  template <class T>
  static state_ptr<shared_state<T>>& state(shared_future<T>& f) noexcept {
    return f.state_;
  }
  template <class T>
  static const state_ptr<shared_state<T>>& state(const shared_future<T>& f) noexcept {
    return f.state_;
  }
  template <class T>
  static future<T> make(state_ptr<shared_state<T>> s) noexcept {
    return future<T>(std::move(s));
  }
};

template <class T>
struct is_future : std::false_type {};
template <class T>
struct is_future<future<T>> : std::true_type {};
template <class T>
struct is_shared_future : std::false_type {};
template <class T>
struct is_shared_future<shared_future<T>> : std::true_type {};

/// The result of calling F with the value of a future<T> (nothing when T is void).
template <class F, class Arg>
struct then_result {
  using type = std::invoke_result_t<F&, Arg>;
};
template <class F>
struct then_result<F, void> {
  using type = std::invoke_result_t<F&>;
};

/// A continuation returning future<U> gives a future<U> (unwrapped), not a future<future<U>>.
template <class R>
struct unwrapped {
  using type = R;
  static constexpr bool is_future = false;
};
template <class U>
struct unwrapped<future<U>> {
  using type = U;
  static constexpr bool is_future = true;
};

/// What a continuation of a shared_future<T> receives: `const T&`, or nothing for void.
template <class T>
using shared_arg_t = std::conditional_t<std::is_void_v<T>, void, std::add_lvalue_reference_t<const T>>;

/// The state of a future made by then(): the continuation itself (fired by the source state) and,
/// for executor-bound sources, the task that runs it. One allocation for all three roles. R is
/// what the continuation returns; the state holds unwrapped<R>::type.
template <class R, class T, class F, bool SharedSource>
class then_state final : public shared_state<typename unwrapped<R>::type>, public continuation, public task_base {
  using value_type = typename unwrapped<R>::type;

  // Forwards the result of a future the continuation returned.
  struct forward_node : continuation {
    then_state* owner = nullptr;
  };

 public:
  then_state(state_ptr<shared_state<T>> source, F f) : source_(std::move(source)), f_(std::move(f)) {
    continuation::fire = &on_source_ready;
    task_base::run = &run_as_task;
  }

  /// Registers on the source and returns the future of the continuation's result.
  future<value_type> start() {
    this->add_ref();  // held by the pending continuation, dropped after it ran
    executor_impl* ex = source_->executor();
    if (ex && announce(ex)) {
      this->set_executor(ex);
      task_base::announced = true;
    }
    shared_state<T>* source = source_.get();
    future<value_type> result = future_access::make(state_ptr<shared_state<value_type>>(this));
    source->on_ready(this);
    return result;
  }

 private:
  static void on_source_ready(continuation* c) noexcept {
    auto* self = static_cast<then_state*>(c);
    if (executor_impl* ex = self->executor()) {
      enqueue(ex, self);
    } else {
      self->execute(false);
    }
  }
  static void run_as_task(task_base* t) noexcept { static_cast<then_state*>(t)->execute(true); }

  void execute(bool as_task) noexcept {
    if (this->settled()) {  // cancelled or timed out before it ran: it never runs
      source_ = {};
      this->release();
      return;
    }
    {
      state_ptr<shared_state<T>> source = std::move(source_);
      std::exception_ptr failure;
      bool ran = false;
      if (source->has_error()) {
        failure = source->error();
      } else {
        ran = true;
        current_task_scope scope(this);
        try {
          if constexpr (unwrapped<R>::is_future) {
            if (forward_inner(call(*source.get()))) return;  // the inner future publishes
          } else if constexpr (std::is_void_v<R>) {
            call(*source.get());
          } else {
            this->emplace(call(*source.get()));
          }
        } catch (...) {
          failure = std::current_exception();
        }
      }
      if (!this->claim()) {  // a stop settled it meanwhile: the result is discarded
        if (ran) count_late_completion();
        this->release();
        return;
      }
      if (failure) this->store_error(std::move(failure));
    }
    if (as_task) {
      this->publish_from_task();
    } else {
      this->publish();
    }
    this->release();
  }

 public:
  bool request_stop(std::exception_ptr outcome) noexcept override { return this->stop_and_settle(std::move(outcome)); }

 private:
  R call(shared_state<T>& source) {
    if constexpr (std::is_void_v<T>) {
      return std::invoke(f_);
    } else if constexpr (SharedSource) {
      return std::invoke(f_, std::as_const(source.value()));
    } else {
      return std::invoke(f_, std::move(source.value()));
    }
  }

  // Waits for the returned future without blocking: its readiness completes this state.
  template <class Inner>
  bool forward_inner(Inner inner) {
    if (!inner.valid()) throw_error(error_kind::no_state, "a then() continuation returned an empty dx::future");
    inner_ = std::move(future_access::state(inner));
    forward_.owner = this;
    forward_.fire = [](continuation* c) noexcept {
      then_state* self = static_cast<forward_node*>(c)->owner;
      auto inner = std::move(self->inner_);
      if (!self->claim()) {  // a stop settled it meanwhile
        count_late_completion();
        inner = {};
        self->release();
        return;
      }
      if (inner->has_error()) {
        self->store_error(inner->error());
      } else if constexpr (std::is_void_v<value_type>) {
        self->emplace();
      } else {
        try {
          self->emplace(std::move(inner->value()));
        } catch (...) {
          self->store_error(std::current_exception());
        }
      }
      inner = {};
      self->publish();
      self->release();
    };
    inner_->on_ready(&forward_);
    return true;
  }

  state_ptr<shared_state<T>> source_;
  F f_;
  state_ptr<shared_state<value_type>> inner_;
  forward_node forward_;
};

template <class R, bool SharedSource, class T, class F>
future<typename unwrapped<R>::type> make_then(state_ptr<shared_state<T>> source, F&& f) {
  using node = then_state<R, T, std::decay_t<F>, SharedSource>;
  return (new node(std::move(source), std::forward<F>(f)))->start();
}

/// now + timeout on the steady clock, saturating instead of overflowing for huge timeouts, and
/// rounding fractional durations up so a wait never ends early.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(const std::chrono::duration<Rep, Period>& timeout) {
  using clock = std::chrono::steady_clock;
  const auto now = clock::now();
  if (timeout <= timeout.zero()) return now;
  const auto room = clock::time_point::max() - now;
  if (std::chrono::duration<double>(timeout) >= std::chrono::duration<double>(room)) return clock::time_point::max();
  return now + std::chrono::ceil<clock::duration>(timeout);
}

/// A deadline of any clock as a steady-clock deadline.
template <class Clock, class Duration>
std::chrono::steady_clock::time_point steady_deadline(const std::chrono::time_point<Clock, Duration>& deadline) {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return std::chrono::ceil<std::chrono::steady_clock::duration>(deadline.time_since_epoch()) >=
                   std::chrono::steady_clock::time_point::max().time_since_epoch()
               ? std::chrono::steady_clock::time_point::max()
               : std::chrono::steady_clock::time_point(
                     std::chrono::ceil<std::chrono::steady_clock::duration>(deadline.time_since_epoch()));
  } else {
    return deadline_after(deadline - Clock::now());
  }
}

template <class T>
void check_state(const state_ptr<shared_state<T>>& s, const char* what) {
  if (!s) throw_error(error_kind::no_state, what);
}

}  // namespace detail

/// The one-shot, move-only handle to a value of type T that is being computed.
///
/// get() consumes the future (valid() is false afterwards). Every member but valid() throws
/// dx::no_state on an empty or moved-from future. A future is not itself thread-safe: use one
/// from one thread at a time, or share() it.
template <class T>
class future {
  static_assert(!std::is_reference_v<T>, "dx::future<T&> is not supported: use a pointer or std::reference_wrapper");

 public:
  using value_type = T;

  /// An empty future (valid() is false). Does not block.
  future() noexcept = default;
  future(future&&) noexcept = default;
  future& operator=(future&&) noexcept = default;
  future(const future&) = delete;
  future& operator=(const future&) = delete;

  /// Whether this future refers to a state (false when default-constructed, moved from or got).
  /// Not thread-safe (one thread at a time per future); does not block.
  bool valid() const noexcept { return static_cast<bool>(state_); }

  /// Whether the value or exception is there, so get() will not block. For a remote result it also
  /// asks for the value to be fetched. Not thread-safe (one thread at a time per future); does not
  /// block.
  bool is_ready() const {
    detail::check_state(state_, "is_ready() on an empty dx::future");
    return state_->is_ready();
  }

  /// Blocks until ready. On a worker thread of an executor, runs other tasks while waiting. Not
  /// thread-safe (one thread at a time per future); blocks.
  void wait() const {
    detail::check_state(state_, "wait() on an empty dx::future");
    state_->wait();
  }

  /// Blocks until ready or until `timeout` has passed. Not thread-safe (one thread at a time per
  /// future); blocks at most `timeout` (rounded up).
  template <class Rep, class Period>
  future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    detail::check_state(state_, "wait_for() on an empty dx::future");
    return state_->wait_until(detail::deadline_after(timeout)) ? future_status::ready : future_status::timeout;
  }

  /// Blocks until ready or until `deadline`. Not thread-safe (one thread at a time per future);
  /// blocks until `deadline` at most.
  template <class Clock, class Duration>
  future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    detail::check_state(state_, "wait_until() on an empty dx::future");
    return state_->wait_until(detail::steady_deadline(deadline)) ? future_status::ready : future_status::timeout;
  }

  /// Waits, then returns the value or rethrows the task's exception. Consumes the future.
  /// Throws dx::no_state on an empty future. Not thread-safe (one thread at a time per future);
  /// blocks until ready (running other tasks meanwhile on an executor's worker thread).
  T get() {
    detail::check_state(state_, "get() on an empty or moved-from dx::future");
    auto state = std::move(state_);
    state->wait();
    if (state->has_error()) std::rethrow_exception(state->error());
    if constexpr (!std::is_void_v<T>) return std::move(state->value());
  }

  /// Cancels the work behind this future. A task that has not started never runs; a running one is
  /// asked to stop (its dx::stop_token, dx::this_task::stop_requested()) and what it returns later
  /// is discarded. The future, and every task and continuation that depends on it, fails with
  /// dx::cancelled. Works for local tasks, continuations, remote tasks and graph runs (a graph's
  /// future settles once its running tasks return; its remaining tasks are skipped). Returns
  /// whether the cancellation settled the future: false when it was already settled, or when its
  /// producer is a dx::promise (which only sees the request through stop_requested()). The future
  /// stays valid. Throws dx::no_state on an empty future. Thread-safe with respect to the task
  /// and the cluster (not to other uses of this future object); does not block.
  bool cancel() const {
    detail::check_state(state_, "cancel() on an empty dx::future");
    return state_->request_stop(detail::make_error(detail::error_kind::cancelled, "the task was cancelled"));
  }

  /// Converts to a copyable shared_future; this future becomes empty. Not thread-safe (one thread
  /// at a time per future); does not block.
  shared_future<T> share() {
    detail::check_state(state_, "share() on an empty dx::future");
    return shared_future<T>(std::move(*this));
  }

  /// Attaches a continuation: `f(value)` (or `f()` for future<void>) runs once the value is there,
  /// and the returned future holds its result; if f returns a future<U>, the result is a future<U>
  /// that completes with it. If this future holds an exception, f is skipped and the exception
  /// reaches the returned future. Consumes this future. Not thread-safe (one thread at a time per
  /// future); does not block, but when this future is ready and no executor produced it, f runs
  /// at once on the calling thread.
  template <class F>
  auto then(F&& f) -> future<typename detail::unwrapped<typename detail::then_result<std::decay_t<F>, T>::type>::type> {
    using R = typename detail::then_result<std::decay_t<F>, T>::type;
    detail::check_state(state_, "then() on an empty dx::future");
    return detail::make_then<R, false>(std::move(state_), std::forward<F>(f));
  }

 private:
  friend struct detail::future_access;
  friend class shared_future<T>;
  explicit future(detail::state_ptr<detail::shared_state<T>> s) noexcept : state_(std::move(s)) {}

  detail::state_ptr<detail::shared_state<T>> state_;
};

/// A copyable handle to a value being computed; every copy can get() it (by const reference).
/// Distinct copies may be used from different threads at once.
template <class T>
class shared_future {
 public:
  using value_type = T;

  /// An empty shared_future (valid() is false). Does not block.
  shared_future() noexcept = default;
  /// Takes over `f`'s state; `f` becomes empty. Not thread-safe for `f`; does not block.
  shared_future(future<T>&& f) noexcept : state_(std::move(f.state_)) {}  // NOLINT: like std

  /// Whether this copy refers to a state. Thread-safe on distinct copies; does not block.
  bool valid() const noexcept { return static_cast<bool>(state_); }

  /// As future::is_ready. Thread-safe on distinct copies; does not block.
  bool is_ready() const {
    detail::check_state(state_, "is_ready() on an empty dx::shared_future");
    return state_->is_ready();
  }
  /// As future::wait. Thread-safe on distinct copies; blocks.
  void wait() const {
    detail::check_state(state_, "wait() on an empty dx::shared_future");
    state_->wait();
  }
  /// As future::wait_for. Thread-safe on distinct copies; blocks at most `timeout`.
  template <class Rep, class Period>
  future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    detail::check_state(state_, "wait_for() on an empty dx::shared_future");
    return state_->wait_until(detail::deadline_after(timeout)) ? future_status::ready : future_status::timeout;
  }
  /// As future::wait_until. Thread-safe on distinct copies; blocks until `deadline` at most.
  template <class Clock, class Duration>
  future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    detail::check_state(state_, "wait_until() on an empty dx::shared_future");
    return state_->wait_until(detail::steady_deadline(deadline)) ? future_status::ready : future_status::timeout;
  }

  /// Waits, then returns a reference to the value (valid while any copy lives) or rethrows.
  /// Thread-safe on distinct copies; blocks until ready.
  decltype(auto) get() const {
    detail::check_state(state_, "get() on an empty dx::shared_future");
    state_->wait();
    if (state_->has_error()) std::rethrow_exception(state_->error());
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return static_cast<const T&>(state_->value());
    }
  }

  /// As future::cancel: cancels the work for every copy. Thread-safe on distinct copies; does not
  /// block.
  bool cancel() const {
    detail::check_state(state_, "cancel() on an empty dx::shared_future");
    return state_->request_stop(detail::make_error(detail::error_kind::cancelled, "the task was cancelled"));
  }

  /// Like future::then, but f receives `const T&` and this shared_future stays valid. Thread-safe
  /// on distinct copies; does not block (f may run at once on this thread, as for future::then).
  template <class F>
  auto then(F&& f) const -> future<
      typename detail::unwrapped<typename detail::then_result<std::decay_t<F>, detail::shared_arg_t<T>>::type>::type> {
    using R = typename detail::then_result<std::decay_t<F>, detail::shared_arg_t<T>>::type;
    detail::check_state(state_, "then() on an empty dx::shared_future");
    return detail::make_then<R, true>(state_, std::forward<F>(f));
  }

 private:
  friend struct detail::future_access;
  detail::state_ptr<detail::shared_state<T>> state_;
};

/// The producing end of a future for code that is not an executor task. Destroying a promise
/// that was never satisfied gives its future a dx::broken_promise. Not thread-safe: one thread
/// at a time sets it.
template <class T>
class promise {
 public:
  /// A promise with a fresh state. Does not block.
  promise() : state_(new detail::shared_state<T>) {}
  promise(promise&&) noexcept = default;
  /// Abandons this promise's state (a broken promise if unsatisfied), then takes over `o`'s.
  /// Not thread-safe; does not block.
  promise& operator=(promise&& o) noexcept {
    if (this != &o) {
      abandon();
      state_ = std::move(o.state_);
      future_taken_ = o.future_taken_;
      satisfied_ = o.satisfied_;
    }
    return *this;
  }
  /// Gives an unsatisfied future a dx::broken_promise. Does not block.
  ~promise() { abandon(); }

  /// The future of this promise. Throws dx::error when called twice, dx::no_state when moved from.
  /// Not thread-safe; does not block.
  future<T> get_future() {
    detail::check_state(state_, "get_future() on a moved-from dx::promise");
    if (future_taken_) detail::throw_error(detail::error_kind::generic, "dx::promise::get_future() called twice");
    future_taken_ = true;
    return detail::future_access::make(state_);
  }

  /// Stores the value and wakes the waiters. Throws dx::error if already satisfied; if
  /// constructing the value throws, the promise stays unsatisfied. Not thread-safe; does not
  /// block, but runs the future's continuations that have no executor on this thread.
  template <class... A>
  void set_value(A&&... a) {
    check_settable();
    state_->emplace(std::forward<A>(a)...);
    satisfied_ = true;
    state_->publish();
  }

  /// Stores an exception for get() to rethrow. Throws dx::error if already satisfied. Not
  /// thread-safe; does not block (continuations as for set_value).
  void set_exception(std::exception_ptr e) {
    check_settable();
    satisfied_ = true;
    state_->set_error(std::move(e));
  }

 private:
  void check_settable() const {
    detail::check_state(state_, "set on a moved-from dx::promise");
    if (satisfied_) detail::throw_error(detail::error_kind::generic, "dx::promise already satisfied");
  }
  void abandon() noexcept {
    if (state_ && !satisfied_) {
      satisfied_ = true;
      state_->set_error(detail::make_error(detail::error_kind::broken_promise,
                                           "dx::promise destroyed without setting a value (broken promise)"));
    }
  }

  detail::state_ptr<detail::shared_state<T>> state_;
  bool future_taken_ = false;
  bool satisfied_ = false;
};

/// A future that is ready with `value`. Thread-safe; does not block.
template <class V>
future<std::decay_t<V>> make_ready_future(V&& value) {
  using T = std::decay_t<V>;
  auto* s = new detail::shared_state<T>;
  s->set_value(std::forward<V>(value));
  return detail::future_access::make(detail::state_ptr<detail::shared_state<T>>(s));
}

/// A ready future<void>. Thread-safe; does not block.
inline future<void> make_ready_future() {
  auto* s = new detail::shared_state<void>;
  s->set_value();
  return detail::future_access::make(detail::state_ptr<detail::shared_state<void>>(s));
}

/// A future that is ready with the exception `e`. Thread-safe; does not block.
template <class T>
future<T> make_exceptional_future(std::exception_ptr e) {
  auto* s = new detail::shared_state<T>;
  s->set_error(std::move(e));
  return detail::future_access::make(detail::state_ptr<detail::shared_state<T>>(s));
}

}  // namespace dx
