// cluster::map's compiled part: the framing of a chunk's result, the description of an item that
// threw on a worker, and the choice of the chunk size from the cost model.
#include <dx/cluster.hpp>
#include <dx/map.hpp>

#include "cluster/chunk_sizing.hpp"
#include "cluster/cluster_access.hpp"
#include "cluster/worker.hpp"
#include "core/type_names.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <string>
#include <typeinfo>

namespace dx::detail {

namespace {

template <class T>
void put(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

struct reader {
  std::span<const char> in;
  std::size_t at = 0;

  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, in.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  std::string get_string() {
    const auto n = get<std::uint32_t>();
    need(n);
    std::string s(in.data() + at, n);
    at += n;
    return s;
  }
  void need(std::size_t n) const {
    if (in.size() - at < n) throw_error(error_kind::protocol, "a map chunk's result is truncated");
  }
};

}  // namespace

std::string map_chunk_name(std::string_view function) { return std::string(function) + "/map"; }

bool register_map_chunk_runner(const char* function, map_chunk_invoker invoke, void (*address)()) noexcept {
  try {
    return register_remote(map_chunk_name(function).c_str(), invoke, address, 1);
  } catch (...) {
    return false;
  }
}

map_item_failure describe_map_failure(std::uint64_t index) noexcept {
  map_item_failure f;
  f.index = index;
  try {
    f.worker = running_worker_id();
    try {
      throw;
    } catch (const std::exception& e) {
      f.type_name = type_name_of(typeid(e));
      f.message = e.what();
    } catch (...) {
      f.type_name = "unknown exception";
      f.message = "a value that is not a std::exception was thrown";
    }
  } catch (...) {  // out of memory while describing: keep what there is
  }
  return f;
}

std::uint64_t map_clock_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

void write_map_chunk_header(std::string& out, const map_chunk_header& h) {
  put<std::uint64_t>(out, h.items);
  put<std::uint64_t>(out, h.run_ns);
  put<std::uint64_t>(out, h.failures.size());
  for (const map_item_failure& f : h.failures) {
    put<std::uint64_t>(out, f.index);
    put_string(out, f.type_name);
    put_string(out, f.message);
    put_string(out, f.worker);
  }
}

std::size_t read_map_chunk_header(std::span<const char> in, map_chunk_header& h) {
  reader r{in};
  h.items = r.get<std::uint64_t>();
  h.run_ns = r.get<std::uint64_t>();
  const auto failures = r.get<std::uint64_t>();
  if (failures > h.items) throw_error(error_kind::protocol, "a map chunk's result has more failures than items");
  h.failures.clear();
  h.failures.reserve(failures);
  std::uint64_t previous = 0;
  for (std::uint64_t k = 0; k < failures; ++k) {
    map_item_failure f;
    f.index = r.get<std::uint64_t>();
    if (f.index >= h.items || (k > 0 && f.index <= previous))
      throw_error(error_kind::protocol, "a map chunk's result has a bad failure index");
    previous = f.index;
    f.type_name = r.get_string();
    f.message = r.get_string();
    f.worker = r.get_string();
    h.failures.push_back(std::move(f));
  }
  return r.at;
}

void throw_undecodable_chunk(const char* what) {
  throw_error(error_kind::protocol, std::string("the inputs of a map chunk do not decode: ") + what);
}

std::size_t read_chunk_result(byte_view bytes, map_chunk_header& h) { return read_map_chunk_header(bytes, h); }

std::exception_ptr map_item_error(map_item_failure&& f) {
  return std::make_exception_ptr(remote_error(std::move(f.type_name), std::move(f.message), std::move(f.worker)));
}

std::exception_ptr map_chunk_mismatch(std::uint64_t expected, std::uint64_t got) {
  return make_error(error_kind::protocol, "a map chunk of " + std::to_string(expected) + " inputs returned " +
                                              std::to_string(got) + " results");
}

std::size_t map_chunk_size(const cluster& cl, const std::string& kind, const std::string& function, std::size_t items,
                           std::uint64_t bytes_per_item, const map_options& opts) {
  if (opts.chunking == chunking::fixed) return std::max<std::size_t>(1, opts.chunk_size);
  head_core* head = cluster_access::head(cl);
  std::size_t threads = 0;
  if (head && !function.empty()) {
    for (const worker_info& w : head->workers())
      if (w.state == worker_state::active) threads += w.threads;
  } else {
    threads = const_cast<cluster&>(cl).local().num_threads();
  }
  threads = std::max<std::size_t>(1, threads);
  // Every worker thread gets several chunks, so that a slow or late worker cannot hold the end.
  const std::size_t per_thread = std::max<std::size_t>(1, opts.chunks_per_thread);
  const std::size_t most = std::max<std::size_t>(1, (items + threads * per_thread - 1) / (threads * per_thread));
  if (!head || function.empty()) return most;
  const double target = std::chrono::duration<double>(opts.target_duration).count();
  if (!(target > 0)) return most;
  if (const std::size_t size = chunk_size_from_model(*head, kind, target, most)) return size;
  bool known = false;
  // Single calls of the function, when the model has seen those instead.
  const prediction single = head->predict_kind(function, task_features{.input_bytes = bytes_per_item}, known);
  if (known && single.mean > 0)
    return std::clamp<std::size_t>(static_cast<std::size_t>(std::llround(target / single.mean)), 1, most);
  return most;
}

std::size_t chunk_size_from_model(const head_core& head, const std::string& kind, double target, std::size_t most) {
  bool known = false;
  std::size_t size = most;
  prediction p = head.predict_kind(kind, task_features{.size_hint = static_cast<double>(size)}, known);
  if (!known) return 0;
  // The model learned chunks of this kind by their number of inputs: walk along its fit towards
  // the size whose prediction is the target. Where the model has not seen sizes like the next
  // one, its answer there is a flat guess, so the last step scales linearly from a size it knows.
  for (int step = 0; step < 8 && p.mean > 0; ++step) {
    const double wanted = std::clamp(static_cast<double>(size) * target / p.mean, 1.0, static_cast<double>(most));
    const auto next = static_cast<std::size_t>(std::llround(wanted));
    if (next == size) break;
    const prediction q = head.predict_kind(kind, task_features{.size_hint = static_cast<double>(next)}, known);
    size = next;
    if (!q.calibrated) break;
    p = q;
  }
  return std::clamp<std::size_t>(size, 1, most);
}

}  // namespace dx::detail
