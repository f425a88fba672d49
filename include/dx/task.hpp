// dx/task.hpp — dx::task<T>, a coroutine an executor runs, which can co_await futures and tasks.
//
//   dx::task<int> add_later(dx::executor& ex) {
//     int a = co_await ex.submit([] { return 20; });   // suspends; no thread blocks
//     int b = co_await twice(1);                        // a nested dx::task<int>
//     co_return a + b + 20;
//   }
//   dx::future<int> f = ex.submit(add_later, std::ref(ex));   // f.get() == 42
//
// A task is lazy: it starts when an executor runs it (submit) or when another task awaits it.
// After a co_await of a future, it resumes as a task on its executor.
#pragma once

#include <dx/detail/runtime.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/future.hpp>

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace dx {

template <class T = void>
class task;

namespace detail {

template <class T>
struct is_task : std::false_type {};
template <class T>
struct is_task<task<T>> : std::true_type {};

/// Resumes a coroutine when a future becomes ready: on the coroutine's executor as a task, or
/// inline when it has none.
template <class Fut>
class future_awaiter : continuation, task_base {
 public:
  future_awaiter(Fut f, executor_impl* ex) : future_(std::move(f)), ex_(ex) {}

  bool await_ready() const noexcept { return future_access::state(future_)->is_ready(); }

  void await_suspend(std::coroutine_handle<> h) noexcept {
    handle_ = h;
    continuation::fire = [](continuation* c) noexcept {
      auto* self = static_cast<future_awaiter*>(c);
      if (self->ex_) {
        enqueue(self->ex_, self);
      } else {
        self->handle_.resume();
      }
    };
    task_base::run = [](task_base* t) noexcept { static_cast<future_awaiter*>(t)->handle_.resume(); };
    // Counted as pending from now on, so the executor outlives the suspended coroutine.
    if (ex_ && announce(ex_)) {
      task_base::announced = true;
    } else {
      ex_ = nullptr;
    }
    // After on_ready the coroutine may already be running elsewhere: touch nothing of *this.
    future_access::state(future_)->on_ready(this);
  }

  decltype(auto) await_resume() { return future_.get(); }

 private:
  mutable Fut future_;
  executor_impl* ex_;
  std::coroutine_handle<> handle_;
};

class task_promise_base {
 public:
  std::suspend_always initial_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  /// Future and task awaits go through here so that they learn this coroutine's executor. An
  /// awaited future is consumed, as by get().
  template <class U>
  auto await_transform(future<U>&& f) {
    check_state(future_access::state(f), "co_await on an empty dx::future");
    return future_awaiter<future<U>>(std::move(f), executor_);
  }
  template <class U>
  auto await_transform(future<U>& f) {
    return await_transform(std::move(f));
  }
  template <class U>
  auto await_transform(const shared_future<U>& f) {
    check_state(future_access::state(const_cast<shared_future<U>&>(f)), "co_await on an empty dx::shared_future");
    return future_awaiter<shared_future<U>>(f, executor_);
  }
  template <class U>
  task<U>&& await_transform(task<U>&& t);
  template <class A>
  requires(!is_future<std::decay_t<A>>::value && !is_shared_future<std::decay_t<A>>::value &&
           !is_task<std::decay_t<A>>::value) A && await_transform(A&& other) {
    return std::forward<A>(other);
  }

  executor_impl* executor_ = nullptr;
  std::coroutine_handle<> continuation_;  // the awaiting coroutine, for a nested task
  state_base* root_ = nullptr;            // the result state, for a task an executor started
  std::exception_ptr error_;
};

template <class T>
class task_promise : public task_promise_base {
 public:
  task<T> get_return_object() noexcept;

  template <class V>
  void return_value(V&& v) {
    value_.emplace(std::forward<V>(v));
  }

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<task_promise> h) noexcept {
      task_promise& p = h.promise();
      if (state_base* root = p.root_) {
        auto* out = static_cast<shared_state<T>*>(root);
        if (!out->claim()) {  // a stop settled the future meanwhile: the result is discarded
          count_late_completion();
          h.destroy();
          out->release();
          return std::noop_coroutine();
        }
        if (p.error_) {
          out->store_error(p.error_);
        } else {
          try {
            out->emplace(std::move(*p.value_));
          } catch (...) {  // T's move (or copy) threw: that is the task's outcome
            out->store_error(std::current_exception());
          }
        }
        h.destroy();
        out->publish_from_task();
        out->release();
        return std::noop_coroutine();
      }
      return p.continuation_ ? p.continuation_ : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }

  T take() {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class task_promise<void> : public task_promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<task_promise> h) noexcept {
      task_promise& p = h.promise();
      if (state_base* root = p.root_) {
        if (!root->claim()) {  // a stop settled the future meanwhile: the result is discarded
          count_late_completion();
          h.destroy();
          root->release();
          return std::noop_coroutine();
        }
        if (p.error_) root->store_error(p.error_);
        h.destroy();
        root->publish_from_task();
        root->release();
        return std::noop_coroutine();
      }
      return p.continuation_ ? p.continuation_ : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }

  void take() {
    if (error_) std::rethrow_exception(error_);
  }
};

template <class T>
void start_root_task(task<T>&& t, executor_impl* ex, shared_state<T>* out) noexcept;

}  // namespace detail

/// A lazily started coroutine returning T. Move-only; co_await it from another task, or let an
/// executor run it through executor::submit. Destroying a task that never started destroys its
/// frame. A task is not thread-safe: one thread owns it until it is awaited or submitted.
template <class T>
class task {
 public:
  using promise_type = detail::task_promise<T>;
  using value_type = T;

  /// Takes over `o`'s coroutine; `o` becomes empty. Not thread-safe; does not block.
  task(task&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
  /// Destroys this task's coroutine if it never started, then takes over `o`'s. Not thread-safe;
  /// does not block.
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(o.handle_, nullptr);
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  /// Destroys the coroutine frame if the task never started. Does not block.
  ~task() {
    if (handle_) handle_.destroy();
  }

  /// The awaitable interface, used by `co_await task`: awaiting starts the task (symmetric
  /// transfer) and resumes the awaiter when it ends, with its value or its exception. Not
  /// thread-safe (the awaiting coroutine's); suspends the awaiter, blocks no thread.
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().continuation_ = awaiting;
    return handle_;
  }
  T await_resume() { return handle_.promise().take(); }

 private:
  friend promise_type;
  friend class detail::task_promise_base;
  template <class U>
  friend void detail::start_root_task(task<U>&&, detail::executor_impl*, detail::shared_state<U>*) noexcept;

  explicit task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  promise_type& promise() noexcept { return handle_.promise(); }

  std::coroutine_handle<promise_type> handle_;
};

namespace detail {

template <class U>
task<U>&& task_promise_base::await_transform(task<U>&& t) {
  if (!t.handle_) throw_error(error_kind::no_state, "co_await on an empty or moved-from dx::task");
  t.promise().executor_ = executor_;
  return std::move(t);
}

template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

/// Starts `t` on this thread as the body of a task of `ex`; when it ends it stores its result in
/// `out` and publishes it. Takes a reference on `out`.
template <class T>
void start_root_task(task<T>&& t, executor_impl* ex, shared_state<T>* out) noexcept {
  auto h = std::exchange(t.handle_, nullptr);
  h.promise().executor_ = ex;
  h.promise().root_ = out;
  out->add_ref();
  h.resume();
}

}  // namespace detail
}  // namespace dx
