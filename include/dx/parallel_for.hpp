// dx/parallel_for.hpp — a loop over an index range on the local threads.
//
//   std::vector<double> out(n);
//   dx::parallel_for(ex, std::size_t{0}, n, [&](std::size_t i) { out[i] = std::sqrt(double(i)); });
//   dx::parallel_for(cl, 0, rows, [&](int r) { process(r); });            // a cluster's local threads
//   dx::parallel_for(ex, 0, n, [&](int i) { tiny(i); }, dx::grain{4096});  // at least 4096 indexes per chunk
//
// The range is cut into chunks that the executor's threads take one after another, so uneven work
// balances itself; the calling thread waits (on a worker thread, it runs other tasks meanwhile).
// For work on a cluster's workers, map a registered function over a container: cluster::map.
#pragma once

#include <dx/executor.hpp>
#include <dx/future.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace dx {

/// The smallest number of indexes a parallel_for chunk holds; 0 lets dx choose (about 8 chunks
/// per thread). A plain value.
struct grain {
  std::size_t size = 0;
};

namespace detail {

/// What the chunk tasks of one parallel_for share: the next chunk to take and the first error.
/// Memory ordering: chunks are claimed with a relaxed fetch_add (only the count matters), and
/// `failed` is a relaxed flag that makes other tasks stop early; the error itself is published to
/// the waiting thread by the tasks' futures.
template <class I, class F>
struct parallel_for_state {
  I first;
  std::size_t count;
  std::size_t chunk;
  F& fn;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};

  void run() {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      const std::size_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= count) return;
      const std::size_t end = std::min(count, begin + chunk);
      try {
        for (std::size_t k = begin; k < end; ++k) fn(static_cast<I>(first + static_cast<I>(k)));
      } catch (...) {
        failed.store(true, std::memory_order_relaxed);
        throw;
      }
    }
  }
};

}  // namespace detail

/// Calls `fn(i)` for every i in [first, last) (of their common type) on `ex`'s threads, in chunks
/// of at least `g.size` indexes (0: dx chooses), and returns when all calls returned. Called on one
/// of `ex`'s threads, that thread takes chunks too. If calls throw, chunks not started yet are
/// skipped and the first exception is rethrown here once the running ones ended. An empty range
/// calls nothing. Thread-safe (fn must be safe to call from several threads at once); blocks until
/// done.
template <std::integral I, std::integral J, class F>
requires std::invocable<F&, std::common_type_t<I, J>>
void parallel_for(executor& ex, I first_index, J last_index, F&& fn, grain g = {}) {
  using index = std::common_type_t<I, J>;
  const auto first = static_cast<index>(first_index);
  const auto last = static_cast<index>(last_index);
  if (!(first < last)) return;
  const auto count = static_cast<std::size_t>(last - first);
  const std::size_t threads = ex.num_threads();
  const std::size_t chunk = std::max<std::size_t>({std::size_t{1}, g.size, count / (threads * 8)});
  const std::size_t chunks = (count + chunk - 1) / chunk;
  using fn_type = std::remove_reference_t<F>;
  detail::parallel_for_state<index, fn_type> state{first, count, chunk, fn};
  // One task per thread (at most one per chunk); each takes chunks until none is left.
  const bool on_worker = ex.is_worker_thread();
  const std::size_t helpers = std::min(threads, chunks) - (on_worker ? 1 : 0);
  std::vector<future<void>> running;
  running.reserve(helpers);
  for (std::size_t t = 0; t < helpers; ++t) running.push_back(ex.submit([&state] { state.run(); }));
  std::exception_ptr error;
  if (on_worker) {
    try {
      state.run();
    } catch (...) {
      error = std::current_exception();
    }
  }
  for (auto& f : running) {
    try {
      f.get();
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

/// parallel_for on the local threads of a dx::cluster (or anything whose local() is an
/// executor). As above: thread-safe; blocks until done.
template <class C, std::integral I, std::integral J, class F>
requires requires(C& c) {
  { c.local() } -> std::same_as<executor&>;
}
void parallel_for(C& cl, I first, J last, F&& fn, grain g = {}) {
  parallel_for(cl.local(), first, last, std::forward<F>(fn), g);
}

}  // namespace dx
