// dx/retry.hpp — running a task again after it throws: how often, after what pause, for which
// exceptions.
//
//   using namespace std::chrono_literals;
//   auto opts = dx::task_options{}
//                   .with_retries(dx::retry_policy{.max_attempts = 4, .initial_backoff = 200ms})
//                   .retry_on<std::runtime_error>()          // only these (and their subclasses)
//                   .never_retry_on<std::invalid_argument>(); // never these, even if listed above
//   auto f = cl.submit(opts, fetch_page, url);  // up to 4 runs, 200 ms, 400 ms, 800 ms apart
//
// A task without a policy is never run again for its own exception (a task lost with a worker is:
// see options::allowed_failures, a budget of its own). With a policy, an attempt that throws runs
// again after a pause while attempts are left and the exception passes the filters; the future
// receives the last attempt's exception once they run out. The pause before retry n (n = 1 for the
// second attempt) is min(initial_backoff * factor^(n-1), max_backoff), shortened by a random share
// of up to `jitter` so that tasks failing together do not retry together.
//
// Filters: retry_on<E...>() retries only exceptions of those types or types derived from them;
// never_retry_on<E...>() never retries those and wins over retry_on. A registered function's
// exception is matched by the name of its original type and of that type's public base classes
// (as dx::remote_error::type_name() and type_bases() give them), so retry_on<std::runtime_error>()
// covers a worker's std::range_error as it would locally (retry_on<dx::remote_error>() covers every
// exception from a worker). Outcomes another attempt cannot change
// are never retried: dx::cancelled, dx::timeout (the limit covers every attempt and pause), a
// failed input, dx::not_registered, dx::protocol_error, dx::executor_shutdown.
#pragma once

#include <dx/export.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <typeinfo>
#include <vector>

namespace dx {

/// How many times a task runs at most, and the pauses between runs. An aggregate: set the fields
/// you need by name. Safe to read from many threads; nothing here blocks.
struct retry_policy {
  /// Runs in all, the first included (1: no retry).
  std::uint32_t max_attempts = 3;
  /// The pause before the first retry.
  std::chrono::nanoseconds initial_backoff = std::chrono::milliseconds(100);
  /// Each pause is the previous one times this (at least 1).
  double factor = 2;
  /// No pause is longer than this.
  std::chrono::nanoseconds max_backoff = std::chrono::seconds(30);
  /// The share in [0, 1] by which a pause may be shortened at random: a pause of b lasts between
  /// (1 - jitter) * b and b. 0: exact pauses.
  double jitter = 0.2;
};

namespace detail {

/// An exception type named by retry_on / never_retry_on: its demangled name (for a remote
/// exception's names) and a test of a local exception (catch by reference, so subclasses match).
struct exception_filter {
  std::string name;
  bool (*matches)(const std::exception_ptr&) noexcept = nullptr;
};

template <class E>
bool exception_is(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

/// "std::runtime_error" for typeid(std::runtime_error). Thread-safe; does not block.
DX_API std::string type_name_of(const std::type_info& t);

template <class E>
exception_filter filter_for() {
  return exception_filter{type_name_of(typeid(E)), &exception_is<E>};
}

/// A task's retry policy with its filters.
struct retry_rules {
  retry_policy policy;
  bool policy_set = false;              // false: only never_retry_on was given, retries stay off
  std::vector<exception_filter> only;   // empty: any exception not excluded
  std::vector<exception_filter> never;  // wins over `only`
};

/// Whether the attempt that threw `e`, the `failures`-th that failed (1 for the first run), is
/// followed by another; if so `pause` is the backoff before it (with its jitter drawn).
/// Thread-safe; does not block.
DX_API bool retry_after(const retry_rules& rules, const std::exception_ptr& e, std::uint32_t failures,
                        std::chrono::nanoseconds& pause) noexcept;

/// The pause before retry `n` (1: the second attempt) before jitter, and with jitter for a draw
/// `u` in [0, 1). Does not block.
DX_API std::chrono::nanoseconds backoff_before(const retry_policy& p, std::uint32_t n) noexcept;
DX_API std::chrono::nanoseconds jittered(const retry_policy& p, std::chrono::nanoseconds b, double u) noexcept;

}  // namespace detail
}  // namespace dx
