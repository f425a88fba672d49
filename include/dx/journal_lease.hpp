// dx/journal_lease.hpp — one head at a time writes a shared journal; a standby takes over when it
// stops.
//
// A journal in Redis ("redis://host:port/db") can be shared by a head and one or more standby
// heads on other machines. The head holds the journal's lease, a key in Redis with a time to live
// that the head renews; a standby waits for the lease to run out (the head died, or stopped) and
// takes it, then resumes the head's unfinished runs: steps that finished are read from the
// journal, not run again. Each lease has an epoch, one higher than the last, and every commit to
// the journal checks it inside Redis: a head that lost its lease (paused or cut off for longer
// than the ttl while a standby took over) can never write the journal again.
//
//   auto lease = dx::journal_lease::wait("redis://10.0.0.5:6379/0", {}, [] { return !stopping; });
//   if (lease) { /* start the cluster, resume runs: dx::workflow_run::resume(...) */ }
//
// A standby takes the lease only after it has itself, reaching Redis, seen no renewal for a whole
// ttl: a Redis that was away (for everyone, or for the standby) is never a reason to take over.
// `dx serve --journal redis://... --standby` does all this.
#pragma once

#include <dx/export.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace dx {

namespace detail {
class redis_lease;
}

/// How a lease is kept and watched. A plain value.
struct lease_options {
  /// How long a lease outlives its holder's last renewal (renewed every ttl/4). A standby takes
  /// over about this long after its head died; a head paused longer than this loses its lease
  /// when a standby is waiting. At least 200 ms.
  std::chrono::milliseconds ttl{2000};
  /// How often a standby looks at the lease. Between 1 ms and the ttl.
  std::chrono::milliseconds poll{200};
};

/// This process's hold on a journal's lease, shared with the journal writer of this process that
/// commits under it. Move-only; given up in Redis (so that a standby takes over at its next look,
/// not a ttl later) once this object and that writer are gone, unless it was lost. Thread-safe.
class DX_API journal_lease {
 public:
  /// Takes the lease of `journal` (a redis:// location) now. Throws dx::error naming the head
  /// that holds it, a location that is not a Redis journal, a dx built without Redis support, or
  /// a Redis that cannot be reached. Blocks for a few round trips.
  static journal_lease take(const std::string& journal, lease_options options = {});

  /// Waits as a standby until the lease of `journal` runs out, and takes it. Returns nullopt when
  /// `keep_waiting` (called about every options.poll) returns false first. `on_state` (optional)
  /// gets a sentence each time what the standby sees changes: who holds the lease, a Redis that
  /// cannot be reached. Throws dx::error as take() for a bad location. Blocks.
  static std::optional<journal_lease> wait(const std::string& journal, lease_options options,
                                           const std::function<bool()>& keep_waiting,
                                           const std::function<void(const std::string&)>& on_state = {});

  ~journal_lease();
  journal_lease(journal_lease&&) noexcept;
  journal_lease& operator=(journal_lease&&) noexcept;

  /// The lease's epoch: one higher than the lease before it. Does not block.
  std::int64_t epoch() const noexcept;
  /// True once another head took the lease over: this process can no longer write the journal,
  /// and should stop. Does not block.
  bool lost() const noexcept;
  /// Why the lease was lost, or why renewals do not reach Redis now; empty when neither. Does
  /// not block.
  std::string problem() const;

 private:
  explicit journal_lease(std::shared_ptr<detail::redis_lease> state);
  std::shared_ptr<detail::redis_lease> state_;
};

}  // namespace dx
