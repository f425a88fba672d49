// dx/as_completed.hpp — futures handed back in the order they become ready.
//
//   std::vector<dx::future<double>> runs = ...;
//   for (dx::future<double> f : dx::as_completed(std::move(runs))) use(f.get());   // never blocks in get()
//
//   dx::task<double> best(std::vector<dx::future<double>> runs) {   // inside a coroutine
//     auto stream = dx::as_completed(std::move(runs));
//     double b = 0;
//     while (auto f = co_await stream.next()) b = std::max(b, f->get());   // suspends, blocks no thread
//     co_return b;
//   }
//
// A future holding an exception counts as ready: it is handed back like the others, and its get()
// rethrows. More futures may be added while the stream is consumed (add), as with Dask's
// as_completed.
#pragma once

#include <dx/future.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace dx {

template <class Fut>
class completion_stream;

namespace detail {

/// What a completion_stream shares with the continuations registered on its inputs. Each
/// registered input holds one reference (its node lives here), the stream another.
template <class Fut>
class completion_core {
  struct entry : continuation {
    completion_core* owner = nullptr;
    std::size_t index = 0;
    Fut future;
  };
  using result_t = std::optional<Fut>;

 public:
  void add(Fut f) {
    check_state(future_access::state(f), "dx::as_completed given an empty future");
    state_base* s = future_access::state(f).get();
    entry* e = nullptr;
    {
      std::lock_guard lock(mutex_);
      e = &entries_.emplace_back();  // a deque: entries never move
      e->owner = this;
      e->index = entries_.size() - 1;
      e->future = std::move(f);
      e->fire = &on_input_ready;
      ++outstanding_;
    }
    refs_.fetch_add(1, std::memory_order_relaxed);
    s->on_ready(e);  // may fire at once, on this thread
  }

  /// The next ready future, or nothing once every input was handed back. See
  /// completion_stream::next.
  future<result_t> next() {
    std::unique_lock lock(mutex_);
    if (waiter_) throw_error(error_kind::generic, "dx::completion_stream::next() called while a next() is pending");
    if (!ready_.empty()) {
      Fut f = std::move(entries_[ready_.front()].future);
      ready_.pop_front();
      lock.unlock();
      return make_ready_future(result_t(std::move(f)));
    }
    if (outstanding_ == 0) {
      lock.unlock();
      return make_ready_future(result_t());
    }
    waiter_ = state_ptr<shared_state<result_t>>(new shared_state<result_t>);
    return future_access::make(waiter_);
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return outstanding_ + ready_.size();
  }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    // acq_rel: the last owner sees every other owner's writes before deleting.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  static void on_input_ready(continuation* c) noexcept {
    auto* e = static_cast<entry*>(c);
    completion_core* self = e->owner;
    state_ptr<shared_state<result_t>> waiter;
    {
      std::lock_guard lock(self->mutex_);
      --self->outstanding_;
      if (self->waiter_) {
        waiter = std::move(self->waiter_);
        waiter->emplace(std::move(e->future));
      } else {
        self->ready_.push_back(e->index);
      }
    }
    if (waiter) waiter->publish();  // outside the lock: it may run the consumer's continuation
    self->release();
  }

  mutable std::mutex mutex_;
  std::deque<entry> entries_;                 // guarded by mutex_
  std::deque<std::size_t> ready_;             // indexes of ready entries not yet handed back; mutex_
  std::size_t outstanding_ = 0;               // entries not yet ready; mutex_
  state_ptr<shared_state<result_t>> waiter_;  // a pending next(); mutex_
  std::atomic<std::uint32_t> refs_{1};
};

}  // namespace detail

/// The stream as_completed returns: a single-pass range of futures in completion order, and
/// next() for coroutines. Move-only. Its member functions are thread-safe, but only one next()
/// (or iteration step) may be pending at a time.
template <class Fut>
class completion_stream {
  using core = detail::completion_core<Fut>;

 public:
  /// A stream of no futures. Does not block.
  completion_stream() : core_(new core) {}
  /// A stream of `futures`; see as_completed. Throws dx::no_state if one is empty. Does not block.
  explicit completion_stream(std::vector<Fut> futures) : core_(new core) {
    try {
      for (Fut& f : futures) core_->add(std::move(f));
    } catch (...) {
      core_->release();  // inputs already added keep the core until they are ready
      throw;
    }
  }
  /// Takes over `o`'s inputs; a moved-from stream may only be destroyed or assigned to.
  completion_stream(completion_stream&& o) noexcept : core_(std::exchange(o.core_, nullptr)) {}
  completion_stream& operator=(completion_stream&& o) noexcept {
    std::swap(core_, o.core_);
    return *this;
  }
  completion_stream(const completion_stream&) = delete;
  completion_stream& operator=(const completion_stream&) = delete;
  /// Futures not handed back yet are dropped (their tasks still run). Does not block.
  ~completion_stream() {
    if (core_) core_->release();
  }

  /// Adds a future to the stream; it is handed back once ready, after those ready before it.
  /// Throws dx::no_state for an empty future. Thread-safe; does not block.
  void add(Fut f) { core_->add(std::move(f)); }

  /// A future of the next input to be ready (handed back in the order they became ready), or of
  /// an empty optional once every input added so far was handed back. `co_await stream.next()`
  /// in a dx::task suspends without blocking a thread; `next().get()` blocks (running other tasks
  /// meanwhile on an executor's worker thread). Throws dx::error when another next() is pending.
  /// Thread-safe; does not block.
  future<std::optional<Fut>> next() { return core_->next(); }

  /// Inputs not handed back yet, ready or not. Thread-safe; does not block.
  std::size_t size() const { return core_->size(); }

  /// A single-pass input iterator: each step blocks until the next input is ready.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Fut;
    using difference_type = std::ptrdiff_t;
    using pointer = Fut*;
    using reference = Fut&&;

    iterator() = default;
    /// The current future, to be moved out (`for (auto f : stream)` takes it over).
    Fut&& operator*() const { return std::move(*current_); }
    Fut* operator->() const { return &*current_; }
    iterator& operator++() {
      fetch();
      return *this;
    }
    void operator++(int) { fetch(); }
    friend bool operator==(const iterator& a, std::default_sentinel_t) { return !a.current_; }

   private:
    friend class completion_stream;
    explicit iterator(completion_stream* s) : stream_(s) { fetch(); }
    void fetch() { current_ = stream_->next().get(); }

    completion_stream* stream_ = nullptr;
    mutable std::optional<Fut> current_;
  };

  /// Blocks until the first input is ready (or none is left). Not to be called twice. Thread-safe
  /// as next(); blocks.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  core* core_;
};

/// A stream handing back `futures` in the order they become ready (an exception counts as
/// ready). Throws dx::no_state if one is empty. Thread-safe (the futures are taken over); does not
/// block.
template <class Fut, class = std::enable_if_t<detail::is_future<Fut>::value || detail::is_shared_future<Fut>::value>>
completion_stream<Fut> as_completed(std::vector<Fut> futures) {
  return completion_stream<Fut>(std::move(futures));
}

}  // namespace dx
