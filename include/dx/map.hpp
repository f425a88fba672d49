// dx/map.hpp — cluster::map: one function over many inputs, in chunks, with a future per input.
//
//   double simulate(int seed);
//   DX_REMOTE(simulate);
//
//   std::vector<int> seeds(100'000);
//   std::iota(seeds.begin(), seeds.end(), 0);
//   std::vector<dx::future<double>> runs = cl.map(simulate, seeds);   // in input order
//   auto fixed = cl.map(simulate, seeds, dx::map_options{}.with_chunk_size(1000));
//   auto local = cl.map([](int s) { return s * 2; }, seeds);         // a lambda: local threads
//   for (auto f : dx::as_completed(std::move(runs))) use(f.get());
//
// A call of a registered function (DX_REMOTE) of one parameter goes to the workers in chunks: a
// chunk is one task that calls the function on each of its inputs, one after another, and each
// input's future is completed when its chunk's results come back. An input whose call throws
// fails its own future with dx::remote_error (the exception's type, message and worker); the other
// inputs of its chunk are not affected. A chunk lost or failed as a whole (a worker lost more than
// allowed_failures times, arguments that do not decode) fails each of its inputs' futures with
// that error. Anything else (a lambda, an unregistered function, a cluster that is not
// distributed) runs in chunks on the local threads, where an input's future holds the exception
// its call threw.
//
// Chunking: with dx::chunking::automatic (the default), the chunk size is chosen from the cost
// model so that a chunk takes about `target_duration` (50 ms), and never so large that a worker
// thread gets fewer than `chunks_per_thread` (4) chunks. Until the model has seen the function's
// chunks (or its single calls) run, and on the local threads, the chunks are sized by that second
// rule alone. dx::chunking::fixed takes `chunk_size` inputs per chunk.
//
// Retries: with map_options::task set to retry (task_options::with_retries), each input runs as a
// task of its own, so that an input that throws runs again alone and the others never run twice;
// there is no chunking then.
#pragma once

#include <dx/cluster.hpp>
#include <dx/export.hpp>
#include <dx/future.hpp>
#include <dx/task_options.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dx {

/// How cluster::map cuts its inputs into tasks.
enum class chunking : std::uint8_t {
  automatic,  ///< sized from the cost model to take about map_options::target_duration
  fixed,      ///< map_options::chunk_size inputs per chunk
};

/// Options of cluster::map, set as a chain: `dx::map_options{}.with_chunk_size(1000)`. A plain
/// value: safe to copy and to read from many threads.
struct map_options {
  dx::chunking chunking = dx::chunking::automatic;
  /// Inputs per chunk with chunking::fixed (0 counts as 1).
  std::size_t chunk_size = 0;
  /// How long a chunk should take with chunking::automatic.
  std::chrono::nanoseconds target_duration = std::chrono::milliseconds(50);
  /// The fewest chunks each worker thread gets with chunking::automatic (at least 1).
  std::size_t chunks_per_thread = 4;
  /// What each chunk tells the scheduler: priority, resources (per chunk); its kind defaults to
  /// "<function>/map", and its size hint is its number of inputs.
  task_options task;

  /// chunking::fixed with `n` inputs per chunk.
  map_options& with_chunk_size(std::size_t n) noexcept {
    chunking = dx::chunking::fixed;
    chunk_size = n;
    return *this;
  }
  /// chunking::automatic aiming at chunks of `d`.
  template <class Rep, class Period>
  map_options& with_target_duration(std::chrono::duration<Rep, Period> d) noexcept {
    chunking = dx::chunking::automatic;
    target_duration = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    return *this;
  }
  map_options& with_chunks_per_thread(std::size_t n) noexcept {
    chunks_per_thread = n;
    return *this;
  }
  map_options& with_task_options(task_options o) {
    task = std::move(o);
    return *this;
  }
};

namespace detail {

/// The chunk size cluster::map uses (see the header comment); `kind` is the chunks' kind,
/// `function` the registered function's name (empty for local work). Thread-safe; does not block.
DX_API std::size_t map_chunk_size(const cluster& cl, const std::string& kind, const std::string& function,
                                  std::size_t items, std::uint64_t bytes_per_item, const map_options& opts);
/// Decodes what the chunk runner returned: the header, and the values' bytes after it.
DX_API std::size_t read_chunk_result(byte_view bytes, map_chunk_header& h);
/// The error of a chunk item that threw on a worker.
DX_API std::exception_ptr map_item_error(map_item_failure&& f);
/// The error of a chunk whose result does not fit its inputs.
DX_API std::exception_ptr map_chunk_mismatch(std::uint64_t expected, std::uint64_t got);

/// The future state of one chunk of a remote map: when the head delivers the chunk's result, it
/// completes each input's future. Owns itself until delivered or failed.
template <class R>
class map_chunk_state final : public shared_state<void>, public remote_result {
 public:
  explicit map_chunk_state(std::vector<state_ptr<shared_state<R>>> items) : items_(std::move(items)) {}
  ~map_chunk_state() override { released(); }

  void deliver(byte_view bytes) noexcept override {
    try {
      map_chunk_header h;
      const std::size_t at = read_chunk_result(bytes, h);
      if (h.items != items_.size()) {
        fail(map_chunk_mismatch(items_.size(), h.items));
        return;
      }
      std::conditional_t<std::is_void_v<R>, int, std::vector<R>> values{};
      if constexpr (!std::is_void_v<R>) values = read_value<std::vector<R>>(bytes.subspan(at));
      std::size_t next_value = 0;
      std::size_t next_failure = 0;
      for (std::size_t i = 0; i < items_.size(); ++i) {
        shared_state<R>& item = *items_[i].get();
        if (next_failure < h.failures.size() && h.failures[next_failure].index == i) {
          item.set_error(map_item_error(std::move(h.failures[next_failure++])));
        } else if constexpr (std::is_void_v<R>) {
          item.set_value();
        } else {
          if (next_value >= values.size()) {
            item.set_error(map_chunk_mismatch(items_.size(), h.items));
          } else {
            item.set_value(std::move(values[next_value++]));
          }
        }
      }
    } catch (...) {
      fail_open(undecodable_result("a map chunk's result"));
    }
    finish();
  }
  void fail(std::exception_ptr e) noexcept override {
    fail_open(e);
    finish();
  }
  state_base& state() noexcept override { return *this; }
  /// Asks the head for the chunk's result as soon as it exists.
  void want() noexcept { request_value(); }

 private:
  void fail_open(const std::exception_ptr& e) noexcept {
    for (auto& item : items_)
      if (!item->is_ready()) item->set_error(e);
  }
  void finish() noexcept {
    items_.clear();
    this->publish();
    this->release();  // the reference this chunk held on itself
  }

  std::vector<state_ptr<shared_state<R>>> items_;
};

/// A local chunk: runs f on each input and completes its future.
template <class R, class F, class E>
void run_local_chunk(F& f, std::vector<E>& inputs, std::vector<state_ptr<shared_state<R>>>& items) noexcept {
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    shared_state<R>& item = *items[i].get();
    try {
      if constexpr (std::is_void_v<R>) {
        f(std::move(inputs[i]));
        item.emplace();
      } else {
        item.emplace(f(std::move(inputs[i])));
      }
    } catch (...) {
      item.store_error(std::current_exception());
    }
    item.publish();
  }
}

/// Whether a map of F over elements E can send chunks: F is a registered function callable with E
/// whose argument and result vectors this file can encode.
template <class F, class E>
constexpr bool map_in_chunks() {
  if constexpr (remote_call_ok<F, E>()) {
    using sig = function_signature<F>;
    return std::tuple_size_v<typename sig::params> == 1 &&
           map_chunk_encodable<std::tuple_element_t<0, typename sig::params>, typename sig::result>();
  } else {
    return false;
  }
}

template <class Range>
std::size_t range_size(const Range& r) {
  if constexpr (requires { std::size(r); }) {
    return static_cast<std::size_t>(std::size(r));
  } else {
    return static_cast<std::size_t>(std::distance(std::begin(r), std::end(r)));
  }
}

}  // namespace detail

/// Calls `f` on every element of `inputs` (a container or range; its elements are copied) and
/// returns one future per element, in input order; see the header comment for where the calls run
/// and how they are chunked. A registered function's arguments are converted to its parameter
/// type here. Throws what copying the inputs throws. Thread-safe; does not block.
template <class F, class Range>
auto cluster::map(F&& f, Range&& inputs, const map_options& opts) {
  using fn_type = std::decay_t<F>;
  using elem = std::decay_t<decltype(*std::begin(inputs))>;
  using R = std::invoke_result_t<fn_type&, elem>;
  const std::size_t n = detail::range_size(inputs);
  std::vector<future<R>> out;
  out.reserve(n);

  if (opts.task.retries_enabled()) {
    for (auto&& x : inputs) out.push_back(submit(opts.task, f, x));
    return out;
  }

  const detail::remote_function* chunk_runner = nullptr;
  std::string function;
  if constexpr (detail::remote_call_ok<fn_type, elem>()) {
    if (head_) {
      if (const detail::remote_function* rf =
              detail::find_remote_by_address(reinterpret_cast<void (*)()>(static_cast<fn_type>(f)))) {
        function = rf->name;
        if constexpr (detail::map_in_chunks<fn_type, elem>())
          chunk_runner = detail::find_remote(detail::map_chunk_name(rf->name));
        if (!chunk_runner) {
          // No chunk runner (the function's vectors cannot be encoded here or where it was
          // registered): one task per input.
          for (auto&& x : inputs) out.push_back(submit(opts.task, static_cast<fn_type>(f), x));
          return out;
        }
      }
    }
  }

  // Each chunk's futures are made as it is sent, so the first chunks run while later ones are
  // still being made.
  auto make_items = [&](std::size_t count) {
    std::vector<detail::state_ptr<detail::shared_state<R>>> items;
    items.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      auto* s = new detail::shared_state<R>;
      s->set_executor(local().impl());  // continuations run on the local threads
      items.emplace_back(s);
      out.push_back(detail::future_access::make(items.back()));
    }
    return items;
  };
  if (n == 0) return out;
  auto it = std::begin(inputs);

  if constexpr (detail::map_in_chunks<fn_type, elem>()) {
    if (chunk_runner) {
      using A = std::tuple_element_t<0, typename detail::function_signature<fn_type>::params>;
      const std::string kind = opts.task.kind.empty() ? chunk_runner->name : opts.task.kind;
      std::uint64_t bytes_per_item = 0;
      if constexpr (std::is_arithmetic_v<A>) bytes_per_item = sizeof(A);
      const std::size_t chunk = detail::map_chunk_size(*this, kind, function, n, bytes_per_item, opts);
      for (std::size_t begin = 0; begin < n; begin += chunk) {
        const std::size_t end = std::min(n, begin + chunk);
        std::vector<A> args;
        args.reserve(end - begin);
        for (std::size_t i = begin; i < end; ++i, ++it) args.push_back(static_cast<A>(*it));
        std::vector<detail::remote_arg> encoded(1);
        detail::write_value(encoded[0].bytes, args);
        std::vector<detail::state_ptr<detail::shared_state<R>>> items = make_items(end - begin);
        auto* chunk_state = new detail::map_chunk_state<R>(std::move(items));
        detail::state_ptr<detail::state_base> hold(chunk_state);  // until want() returned
        chunk_state->add_ref();  // the chunk's own reference, dropped once delivered or failed
        task_options o = opts.task;
        o.kind = kind;
        o.hint.size = static_cast<double>(end - begin);
        submit_remote(o, *chunk_runner, std::move(encoded), *chunk_state);
        chunk_state->want();  // the items want the result as soon as it exists
      }
      return out;
    }
  }

  // Local threads: chunks of copied inputs, each a task.
  const std::size_t chunk = detail::map_chunk_size(*this, std::string(), std::string(), n, 0, opts);
  auto shared_f = std::make_shared<fn_type>(std::forward<F>(f));
  const priority p = detail::local_priority(opts.task.priority);
  for (std::size_t begin = 0; begin < n; begin += chunk) {
    const std::size_t end = std::min(n, begin + chunk);
    std::vector<elem> args;
    args.reserve(end - begin);
    for (std::size_t i = begin; i < end; ++i, ++it) args.push_back(*it);
    std::vector<detail::state_ptr<detail::shared_state<R>>> items = make_items(end - begin);
    local().post(p, [shared_f, args = std::move(args), items = std::move(items)]() mutable {
      detail::run_local_chunk<R>(*shared_f, args, items);
    });
  }
  return out;
}

template <class F, class Range>
auto cluster::map(F&& f, Range&& inputs) {
  return map(std::forward<F>(f), std::forward<Range>(inputs), map_options{});
}

}  // namespace dx
