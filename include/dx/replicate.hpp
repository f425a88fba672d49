// dx/replicate.hpp — running a task on several workers and accepting only the result they agree
// on, and deadlines after which a task runs again elsewhere. For workers that may be wrong (bad
// memory, overclocking, a tampered client) or slow (a volunteer's machine).
//
//   // Two copies on two workers; the result is accepted when both agree, byte for byte.
//   cl.submit(dx::task_options{}.with_replicate({.copies = 2, .quorum = 2}), simulate, 7, 1000);
//
//   // Floating point that may differ in the last bits between machines:
//   cl.submit(dx::task_options{}.with_replicate({.compare = dx::comparison::tolerance(1e-9)}), fit, data);
//
//   // Trust earned: a worker with a long record of valid results is believed alone, sometimes.
//   cl.submit(dx::task_options{}.with_replicate({.quorum = 2, .adaptive = true}), simulate, 7, 1000);
//
//   // A second copy when the first runs 3x past its prediction; another when none answers in 60 s.
//   cl.submit(dx::task_options{}.with_deadline({.soft_factor = 3, .hard = 60s}), simulate, 7, 1000);
//
//   // An application's own notion of "the same result":
//   bool same_orbit(const orbit& a, const orbit& b) { return distance(a, b) < 1e-6; }
//   DX_COMPARATOR("orbits.same", same_orbit);
//   cl.submit(dx::task_options{}.with_replicate({.compare = dx::comparison::named("orbits.same")}), f, x);
//
// Copies run on distinct workers (distinct hosts with .distinct_hosts). Their results come to the
// head, which compares them; the first `quorum` that agree become the task's one canonical result,
// delivered to its future and dependents once. Copies that disagree count against their workers'
// reliability (cluster::workers(), metrics, the dashboard); when no quorum can form from the
// copies issued, more are issued up to max_copies, and then the task fails with dx::error naming
// the disagreement and the workers. A worker whose results are found invalid too often is
// quarantined: it receives no more work, and an alert says so.
#pragma once

#include <dx/detail/result_compare.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace dx {

/// How the results of two copies of a task are compared. Safe to read from many threads; nothing
/// here blocks.
struct comparison {
  enum class kind_t : std::uint8_t {
    exact,      ///< equal encodings, byte for byte
    tolerance,  ///< numbers within a relative or absolute tolerance (others: exact)
    named,      ///< a comparator registered with DX_COMPARATOR
  };
  kind_t kind = kind_t::exact;
  double relative = 0;
  double absolute = 0;
  std::string name;

  /// Equal encodings.
  static comparison exact() { return {}; }
  /// A result that is a number, or a container of numbers (std::vector, std::array, ...), agrees
  /// with another of the same shape whose every element is within
  /// max(abs, rel * max(|a|, |b|)); NaNs agree with NaNs. Results of other types compare exactly.
  static comparison tolerance(double rel, double abs = 0) { return {kind_t::tolerance, rel, abs, {}}; }
  /// The comparator registered under `name` with DX_COMPARATOR (in every process that compares:
  /// the head). Submitting a task that names an unknown one throws dx::error.
  static comparison named(std::string comparator) { return {kind_t::named, 0, 0, std::move(comparator)}; }
};

/// How many copies of a task run and how many must agree. Safe to read from many threads.
struct replicate {
  /// Copies issued at first, each on a different worker.
  std::uint32_t copies = 2;
  /// Agreeing results that make the canonical one (at most `copies`).
  std::uint32_t quorum = 2;
  /// Copies issued in all, the first included, before the task fails for want of a quorum (0:
  /// twice `copies`, and at least copies + 1).
  std::uint32_t max_copies = 0;
  comparison compare = comparison::exact();
  /// Copies on distinct hosts (the host part of each worker's address), not only distinct workers.
  bool distinct_hosts = false;
  /// Issues one copy; a result from a worker with n >= 10 consecutive valid results, 100 checked and
  /// at most 1% invalid, is accepted alone with probability 1 - 1/n (BOINC's rule), else copies are
  /// issued up to the quorum. Workers without such a record are always replicated.
  bool adaptive = false;
};

/// When a task is taken to be late. Safe to read from many threads.
struct deadline {
  /// A copy that runs longer than this many times its predicted duration gets a speculative twin
  /// on another worker; the first result wins and the other copy is cancelled (0: never). The
  /// prediction is the cost model's for that worker; with none yet, nothing is speculated.
  double soft_factor = 0;
  /// A copy not answered within this time of being sent is issued again on another worker; the
  /// late copy goes on, and its answer, if it comes, is still compared and recorded (0: never).
  std::chrono::nanoseconds hard{0};
};

namespace detail {

template <class F>
struct comparator_args;
template <class T>
struct comparator_args<bool (*)(const T&, const T&)> {
  using type = T;
};
template <class T>
struct comparator_args<bool (*)(T, T)> {
  using type = std::decay_t<T>;
};

template <auto F>
bool register_comparator_function(const char* name) noexcept {
  using T = typename comparator_args<decltype(F)>::type;
  static_assert(serializable<T>, "dx: a DX_COMPARATOR compares results of a serializable type");
  return register_comparator(name, [](std::span<const char> a, std::span<const char> b) {
    return static_cast<bool>(F(read_value<T>(a), read_value<T>(b)));
  });
}

}  // namespace detail

}  // namespace dx

/// Registers `fn`, a `bool fn(const T&, const T&)` that says whether two results agree, under
/// `name` for comparison::named. Use at namespace scope; runs during static initialisation.
/// Thread-safe; does not block.
#define DX_DETAIL_COMPARATOR_CONCAT2(a, b) a##b
#define DX_DETAIL_COMPARATOR_CONCAT(a, b) DX_DETAIL_COMPARATOR_CONCAT2(a, b)
#define DX_COMPARATOR(name, fn)                                                                            \
  [[maybe_unused]] static const bool DX_DETAIL_COMPARATOR_CONCAT(dx_comparator_registered_, __COUNTER__) = \
      ::dx::detail::register_comparator_function<+(fn)>(name)
