// dx/executor.hpp — the local work-stealing executor: a fixed set of threads that run tasks.
//
//   dx::executor ex{2};
//   dx::future<int> a = ex.submit([] { return 20; });
//   dx::future<int> b = ex.submit([](int x) { return x + 22; }, std::move(a));  // runs after a
//   ex.submit(dx::priority::high, [] { urgent(); });
//   ex.post([] { fire_and_forget(); });
//   int v = b.get();   // 42
//
// An argument that is a dx::future<U> or dx::shared_future<U> is a dependency: the task starts once
// it is ready and receives its value (U, or const U& for a shared_future; a future<void> passes
// nothing). If a dependency holds an exception, the task is skipped and its future holds that
// exception. A callable returning dx::task<T> is run as a coroutine and its future is future<T>.
#pragma once

#include <dx/detail/runtime.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/error.hpp>
#include <dx/export.hpp>
#include <dx/future.hpp>
#include <dx/retry.hpp>
#include <dx/task.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace dx {

class task_graph;

namespace detail {

/// What a stored argument passes to the callable, as a tuple so that future<void> passes nothing.
template <class A>
auto unwrap_arg(A& a) {
  if constexpr (is_future<A>::value) {
    if constexpr (std::is_void_v<typename A::value_type>) {
      return std::tuple<>();
    } else {
      return std::forward_as_tuple(std::move(future_access::state(a)->value()));
    }
  } else if constexpr (is_shared_future<A>::value) {
    if constexpr (std::is_void_v<typename A::value_type>) {
      return std::tuple<>();
    } else {
      return std::forward_as_tuple(std::as_const(future_access::state(a)->value()));
    }
  } else {
    return std::forward_as_tuple(std::move(a));
  }
}

template <class A>
constexpr bool is_dependency_v = is_future<A>::value || is_shared_future<A>::value;

/// What a stored argument passes to one attempt of a task that may run again: a copy, so the
/// stored argument (or a future's value) stays for the next attempt.
template <class A>
auto copy_arg(A& a) {
  if constexpr (is_future<A>::value || is_shared_future<A>::value) {
    if constexpr (std::is_void_v<typename A::value_type>) {
      return std::tuple<>();
    } else {
      return std::tuple<typename A::value_type>(std::as_const(future_access::state(a)->value()));
    }
  } else {
    return std::tuple<A>(std::as_const(a));
  }
}

/// Whether a stored argument can be copied for another attempt.
template <class A>
constexpr bool copyable_arg() {
  if constexpr (is_future<A>::value || is_shared_future<A>::value) {
    return std::is_void_v<typename A::value_type> || std::is_copy_constructible_v<typename A::value_type>;
  } else {
    return std::is_copy_constructible_v<A>;
  }
}

/// A task's retries: its rules and how many of its attempts failed so far.
struct retry_run {
  std::shared_ptr<const retry_rules> rules;
  std::uint32_t failures = 0;
};

/// The values a call passes, as the tuple unwrap_arg gives.
template <class... A>
using unwrapped_args_t = decltype(std::tuple_cat(unwrap_arg(std::declval<std::decay_t<A>&>())...));

/// Whether F takes a dx::stop_token before the arguments (and cannot be called without one).
template <class F, class Args>
struct wants_stop_token : std::false_type {};
template <class F, class... U>
struct wants_stop_token<F, std::tuple<U...>>
    : std::bool_constant<!std::is_invocable_v<F&, U...> && std::is_invocable_v<F&, stop_token, U...>> {};

/// Calls f with the values in `args`, preceded by the stop token of `self` when f asks for one.
template <class F, class Args>
decltype(auto) apply_call(F& f, state_base* self, Args&& args) {
  if constexpr (wants_stop_token<F, std::remove_cvref_t<Args>>::value) {
    return std::apply(
        [&](auto&&... a) -> decltype(auto) {
          return std::invoke(f, stop_token(self), std::forward<decltype(a)>(a)...);
        },
        std::forward<Args>(args));
  } else {
    return std::apply(f, std::forward<Args>(args));
  }
}

template <class F, class... A>
using call_result_t =
    decltype(apply_call(std::declval<F&>(), static_cast<state_base*>(nullptr), std::declval<unwrapped_args_t<A...>>()));

/// What submit() returns for a callable returning R: future<R>, or future<T> for a dx::task<T>.
template <class R>
struct submit_value {
  using type = R;
};
template <class T>
struct submit_value<task<T>> {
  using type = T;
};

/// A submitted call: the result state, the task that runs the call, and one continuation per
/// dependency, in one allocation.
template <class R, class F, class... A>
class call_state final : public shared_state<typename submit_value<R>::type>, public task_base {
  using value_type = typename submit_value<R>::type;
  static constexpr std::size_t num_deps = (std::size_t{0} + ... + (is_dependency_v<A> ? 1 : 0));

  struct dep_node : continuation {
    call_state* owner;
  };

 public:
  /// Whether it can run more than once: each attempt gets copies of the arguments (a coroutine
  /// task publishes from its own frame, so it runs once).
  static constexpr bool retryable = !is_task<R>::value && (copyable_arg<A>() && ...);

  /// Runs it again after an exception as `rules` say (call before start()).
  void set_retries(std::shared_ptr<const retry_rules> rules) {
    retry_ = std::make_unique<retry_run>(retry_run{std::move(rules), 0});
  }

  template <class G, class... B>
  explicit call_state(priority p, G&& f, B&&... args) : f_(std::forward<G>(f)), args_(std::forward<B>(args)...) {
    task_base::run = &run_call;
    task_base::prio = p;
  }

  future<value_type> start(executor_impl* ex) {
    this->set_executor(ex);
    this->add_ref();  // held by the task until it ran
    future<value_type> result = future_access::make(state_ptr<shared_state<value_type>>(this));
    if constexpr (num_deps == 0) {
      if (!try_enqueue(ex, this)) reject();
    } else {
      if (!announce(ex)) {
        reject();
        return result;
      }
      task_base::announced = true;
      std::size_t i = 0;
      std::apply([&](auto&... a) { (register_dep(a, i), ...); }, args_);
      arrive();  // the registering thread's own count, see deps_left_
    }
    return result;
  }

 private:
  template <class B>
  void register_dep(B& arg, std::size_t& i) {
    if constexpr (is_dependency_v<B>) {
      dep_node& n = deps_[i++];
      n.owner = this;
      n.fire = [](continuation* c) noexcept { static_cast<dep_node*>(c)->owner->arrive(); };
      future_access::state(arg)->on_ready(&n);
    }
  }

  // deps_left_ starts one above the number of dependencies so that a dependency that is already
  // ready cannot enqueue the task while later ones are still being registered.
  void arrive() noexcept {
    if (deps_left_.fetch_sub(1, std::memory_order_acq_rel) == 1) enqueue(this->executor(), this);
  }

  void reject() noexcept {
    this->set_error(
        make_error(error_kind::executor_shutdown, "task submitted to a dx::executor that is shutting down"));
    this->release();
  }

  static void run_call(task_base* t) noexcept {
    auto* self = static_cast<call_state*>(t);
    self->execute();
    self->release();
  }

  void execute() noexcept {
    if (this->settled()) return;  // cancelled or timed out before it started: it never runs
    std::exception_ptr failure;
    bool ran = false;
    if (const std::exception_ptr* failed = first_failed_dependency()) {
      failure = *failed;
    } else {
      ran = true;
      current_task_scope scope(this);
      try {
        auto call = [&]() -> R {
          if constexpr (retryable) {
            if (retry_)
              return apply_call(f_, this, std::apply([](auto&... a) { return std::tuple_cat(copy_arg(a)...); }, args_));
          }
          return apply_call(f_, this, std::apply([](auto&... a) { return std::tuple_cat(unwrap_arg(a)...); }, args_));
        };
        if constexpr (is_task<R>::value) {
          start_root_task(call(), this->executor(), this);  // the coroutine publishes when it ends
          return;
        } else if constexpr (std::is_void_v<R>) {
          call();
        } else {
          this->emplace(call());
        }
      } catch (...) {
        failure = std::current_exception();
      }
    }
    if (failure && ran && retry_ && again_after(failure)) return;
    if (!this->claim()) {  // a stop settled the future meanwhile: the result is discarded
      if (ran) count_late_completion();
      return;
    }
    if (failure) this->store_error(std::move(failure));
    this->publish_from_task();
  }

 public:
  bool request_stop(std::exception_ptr outcome) noexcept override { return this->stop_and_settle(std::move(outcome)); }

 private:
  template <class Arg>
  static void note_failure(Arg& arg, const std::exception_ptr*& failed) noexcept {
    if constexpr (is_dependency_v<Arg>) {
      if (!failed && future_access::state(arg)->has_error()) failed = &future_access::state(arg)->error();
    }
  }

  // A failed attempt with retries left: the task is enqueued again after its pause (counted as
  // pending meanwhile, so wait_idle and shutdown wait for it). False when it ends here.
  bool again_after(const std::exception_ptr& failure) noexcept {
    std::chrono::nanoseconds pause{0};
    if (this->settled() || !retry_after(*retry_->rules, failure, ++retry_->failures, pause)) return false;
    if (!announce(this->executor())) return false;
    task_base::announced = true;
    this->add_ref();  // held by the task until it runs again
    try {
      run_after(this->executor(), this, this, pause.count());
    } catch (...) {  // no memory for a timer: it retries at once
      enqueue(this->executor(), this);
    }
    return true;
  }

  const std::exception_ptr* first_failed_dependency() noexcept {
    if constexpr (num_deps == 0) {
      return nullptr;
    } else {
      const std::exception_ptr* failed = nullptr;
      std::apply([&](auto&... a) { (note_failure(a, failed), ...); }, args_);
      return failed;
    }
  }

  F f_;
  std::tuple<A...> args_;
  std::unique_ptr<retry_run> retry_;  // null: it runs once
  std::atomic<std::size_t> deps_left_{num_deps + 1};
  dep_node deps_[num_deps == 0 ? 1 : num_deps];
};

/// A posted call: no result state; an exception is reported, as nobody can receive it.
template <class F>
class post_task final : public task_base, public pooled {
 public:
  template <class G>
  post_task(priority p, G&& f) : f_(std::forward<G>(f)) {
    task_base::run = &run_post;
    task_base::prio = p;
  }

 private:
  static void run_post(task_base* t) noexcept {
    auto* self = static_cast<post_task*>(t);
    try {
      self->f_();
    } catch (...) {
      report_unhandled_exception();
    }
    delete self;
  }
  F f_;
};

template <class A>
void check_dependency(A& arg) {
  if constexpr (is_dependency_v<std::decay_t<A>>) {
    check_state(future_access::state(arg), "dx::executor::submit() given an empty future as an argument");
  }
}

template <class... A>
void check_dependencies(A&... args) {
  (check_dependency(args), ...);
}

template <class F, class Args>
struct invocable_with_tuple : std::false_type {};
template <class F, class... T>
struct invocable_with_tuple<F, std::tuple<T...>>
    : std::bool_constant<std::is_invocable_v<F, T...> || std::is_invocable_v<F, stop_token, T...>> {};

/// Whether submit(f, args...) can call f: each future argument passes its value (none for
/// future<void>), any other argument itself, after a dx::stop_token when f takes one first.
template <class F, class... A>
inline constexpr bool callable_with_v = invocable_with_tuple<F&, unwrapped_args_t<A...>>::value;

template <class F>
inline constexpr bool never = false;

/// Whether an argument is a dx::future passed as an lvalue: the task would consume the caller's
/// future, so submit asks for std::move or share().
template <class... A>
inline constexpr bool passes_lvalue_future_v =
    ((std::is_lvalue_reference_v<A> && is_future<std::remove_cvref_t<A>>::value) || ...);

/// The message for passes_lvalue_future_v, in one place for the executor and the cluster.
#define DX_NO_LVALUE_FUTURE_MESSAGE                                                                         \
  "dx: submit(f, fut): a dx::future argument is consumed by the task; pass std::move(fut), or fut.share() " \
  "to pass the value to more than one task"

template <class F>
struct function_arity;
template <class R, class... P>
struct function_arity<R(P...)> : std::integral_constant<std::size_t, sizeof...(P)> {};
template <class R, class... P>
struct function_arity<R(P...) noexcept> : std::integral_constant<std::size_t, sizeof...(P)> {};

/// Fails the compilation of a submit() that cannot call f with dx's reason, in place of the
/// standard library's dozens of lines; instantiated only when callable_with_v is false.
template <class F, class... A>
constexpr void diagnose_call() {
  using fn = std::decay_t<F>;  // a function decays to its pointer
  constexpr std::size_t given =
      (std::size_t{0} + ... + std::tuple_size_v<decltype(unwrap_arg(std::declval<std::decay_t<A>&>()))>);
  if constexpr (std::is_pointer_v<fn> && std::is_function_v<std::remove_pointer_t<fn>>) {
    if constexpr (function_arity<std::remove_pointer_t<fn>>::value != given) {
      static_assert(never<F>,
                    "dx: submit(f, args...) gives f a different number of arguments than it takes (a "
                    "future<T> argument passes its T, a future<void> passes nothing; a priority or "
                    "task_options goes before f)");
    } else {
      static_assert(never<F>,
                    "dx: submit(f, args...): an argument, or the value of a future argument, does not "
                    "convert to f's parameter type");
    }
  } else if constexpr (std::is_function_v<fn> || std::is_class_v<fn>) {
    static_assert(never<F>,
                  "dx: submit(f, args...) cannot call f with these arguments: check their number and "
                  "types (a future<T> argument passes its T, a future<void> passes nothing; a priority "
                  "or task_options goes before f)");
  } else {
    static_assert(never<F>,
                  "dx: submit(f, args...): f is not callable; pass a function, a lambda or a callable "
                  "object (a priority or task_options goes before f)");
  }
}

}  // namespace detail

/// A pool of worker threads with per-thread work-stealing deques.
///
/// Every member function is thread-safe. Idle workers sleep (no CPU) and a new task wakes one at
/// once. get(), wait() and task_group::wait() called on a worker thread run other tasks while
/// waiting, so nested parallelism cannot deadlock the pool, even with one thread.
///
/// Destruction (or shutdown()) finishes all pending work first, including tasks that wait on
/// dependencies, then joins the threads; meanwhile submissions from other threads are refused with
/// dx::executor_shutdown while the executor's own tasks may still submit.
class DX_API executor {
 public:
  /// Starts `threads` worker threads (at least 1; default: the hardware concurrency). Does not
  /// block (the threads start and park).
  explicit executor(std::size_t threads = default_threads());
  /// Calls shutdown(): blocks until all pending work has run and the threads are joined.
  ~executor();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  /// Number of worker threads. Thread-safe; does not block.
  std::size_t num_threads() const noexcept;

  /// Runs `f(args...)` as a task; returns the future of its result. Future arguments are
  /// dependencies (see the header comment). After shutdown began, a call from a thread that is not
  /// this executor's returns a future holding dx::executor_shutdown. Thread-safe; never blocks.
  template <class F, class... A>
  requires(!std::is_same_v<std::decay_t<F>, priority>) auto submit(F&& f, A&&... args) {
    return submit(priority::normal, std::forward<F>(f), std::forward<A>(args)...);
  }

  /// submit() with a priority: a high task starts before queued normal ones, a low one after.
  /// Thread-safe; never blocks.
  template <class F, class... A>
  auto submit(priority p, F&& f, A&&... args) {
    static_assert(!detail::passes_lvalue_future_v<A...>, DX_NO_LVALUE_FUTURE_MESSAGE);
    if constexpr (detail::callable_with_v<std::decay_t<F>, A...>) {
      using R = detail::call_result_t<std::decay_t<F>, A...>;
      using state = detail::call_state<R, std::decay_t<F>, std::decay_t<A>...>;
      detail::check_dependencies(args...);
      return (new state(p, std::forward<F>(f), std::forward<A>(args)...))->start(impl_);
    } else {
      detail::diagnose_call<F, A...>();
      return future<void>{};
    }
  }

  /// Runs `f()` as a task with no future. An exception it throws is printed to stderr. Throws
  /// dx::executor_shutdown when called from another thread after shutdown began. Thread-safe;
  /// does not block.
  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, priority>) void post(F&& f) { post(priority::normal, std::forward<F>(f)); }
  /// post() with a priority, as for submit(). Thread-safe; does not block.
  template <class F>
  void post(priority p, F&& f) {
    auto* t = new detail::post_task<std::decay_t<F>>(p, std::forward<F>(f));
    if (!detail::try_enqueue(impl_, t)) {
      delete t;
      detail::throw_error(detail::error_kind::executor_shutdown, "dx::executor::post() after shutdown began");
    }
  }

  /// Runs every task of `g` in dependency order; the future is ready when all have run. Runs of
  /// the same graph are queued and run one after another. A cycle, or a task that throws, ends up
  /// in the future (dx::cycle_error names the tasks on the cycle); after a throw the graph's
  /// remaining tasks are skipped. `g` must outlive the run. Thread-safe; does not block (wait on
  /// the future).
  future<void> run(task_graph& g);

  /// Blocks until every task submitted so far (and every task those submit) has finished.
  /// Throws dx::error when called from one of this executor's own tasks, which would wait for
  /// itself. Thread-safe; blocks.
  void wait_idle();

  /// Refuses new work from other threads, finishes all pending work, joins the threads.
  /// Idempotent; the destructor calls it. Thread-safe; blocks until the pending work has run and
  /// the threads are joined.
  void shutdown();

  /// Whether the calling thread is one of this executor's workers. Thread-safe; does not block.
  bool is_worker_thread() const noexcept;

  /// Default thread count: std::thread::hardware_concurrency(), at least 1. Thread-safe; does not
  /// block.
  static std::size_t default_threads() noexcept;

  /// The runtime behind this executor, for dx's own templates (task_group, futures); not for
  /// users. Thread-safe; does not block.
  detail::executor_impl* impl() const noexcept { return impl_; }

 private:
  detail::executor_impl* impl_;
};

namespace detail {

/// executor::submit() for a task that runs again after an exception as `rules` say; each attempt
/// gets copies of the arguments. Throws dx::error when they cannot be copied (or f returns a
/// dx::task). Thread-safe; does not block.
template <class F, class... A>
auto submit_retrying(executor& ex, priority p, std::shared_ptr<const retry_rules> rules, F&& f, A&&... args) {
  using R = call_result_t<std::decay_t<F>, A...>;
  using state = call_state<R, std::decay_t<F>, std::decay_t<A>...>;
  if constexpr (!state::retryable) {
    throw_error(error_kind::generic,
                "dx: a task with retries runs with copies of its arguments, and these cannot be copied (or it "
                "is a coroutine, which runs once); submit it without with_retries()");
  }
  check_dependencies(args...);
  auto* s = new state(p, std::forward<F>(f), std::forward<A>(args)...);
  s->set_retries(std::move(rules));
  return s->start(ex.impl());
}

}  // namespace detail
}  // namespace dx
