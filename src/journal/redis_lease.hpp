// The lease that makes one head at a time the writer of a Redis journal, and fences off a head that
// lost it. The lease is a key "dx:lease" = "<epoch> <holder> <renewal>" set with a time to live
// (SET ... PX ttl) and renewed every ttl/4 by a thread of the holder; the epoch is a counter
// ("dx:epoch", INCR) raised by every take, and every commit of the journal checks, inside Redis and
// atomically with its writes, that the counter is still the holder's epoch. A head paused or cut
// off past its ttl may believe it holds the lease; its next commit is refused all the same, so a
// standby that took over is never written over.
//
// When a standby takes over: only when the key is gone (its ttl ran out with no renewal) AND the
// standby itself, while it could reach Redis, has seen no renewal for a whole ttl. The second
// condition is what keeps a standby from taking over because Redis was away: after an outage (of
// Redis, or of the standby's link to it) the standby counts a ttl again from the moment it reaches
// Redis, which gives a live head the same ttl to reach Redis and renew (it re-sets the key when it
// is gone and its epoch is still the current one). The price: a head cut off from Redis while a
// standby still reaches it is replaced after one ttl, and when its link returns, its commits made
// in between are refused (the new head runs those tasks again); nothing committed before is lost.
//
//   auto lease = redis_lease::take(location, {});           // or wait() as a standby
//   ... journal::open(location, write) commits under lease->epoch() ...
#pragma once

#include "journal/redis_client.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace dx::detail {

struct lease_timing {
  std::chrono::milliseconds ttl{2000};  ///< how long the lease outlives its last renewal
  std::chrono::milliseconds poll{200};  ///< how often a standby looks at the lease
};

/// This process's hold on the lease of one Redis journal. Thread-safe.
class redis_lease {
 public:
  /// Takes the lease of the journal at `location` now, or returns the one this process holds.
  /// Throws dx::error naming the holder and when its lease runs out when another head holds it,
  /// or when Redis cannot be reached. Blocks for a few round trips.
  static std::shared_ptr<redis_lease> take(std::string_view location, lease_timing timing);
  /// Waits as a standby until the holder's lease runs out (see above) and takes it; returns null
  /// when `keep_waiting` (called about every poll) returns false. `on_state` is called with a
  /// sentence when what the standby sees changes (who holds the lease, Redis unreachable).
  /// Throws dx::error for a location that is not a Redis journal. Blocks.
  static std::shared_ptr<redis_lease> wait(std::string_view location, lease_timing timing,
                                           const std::function<bool()>& keep_waiting,
                                           const std::function<void(const std::string&)>& on_state = {});
  /// The lease this process holds on `location` (its text as parse_redis_location gives it), or
  /// null. Does not block.
  static std::shared_ptr<redis_lease> held(std::string_view location);

  /// Stops renewing and, unless it was lost, gives the lease up (deletes the key) so that a
  /// standby takes over at its next look instead of after a ttl.
  ~redis_lease();
  redis_lease(const redis_lease&) = delete;
  redis_lease& operator=(const redis_lease&) = delete;

  std::int64_t epoch() const noexcept { return epoch_; }
  const std::string& holder() const noexcept { return holder_; }
  const redis_location& where() const noexcept { return where_; }
  /// True once another head took the lease: this process must not write the journal again.
  bool lost() const noexcept { return lost_.load(std::memory_order_acquire); }
  /// Why it was lost, or empty.
  std::string lost_reason() const;
  /// Empty while renewals reach Redis; else since when and why they do not.
  std::string unreachable_reason() const;
  /// Marks the lease lost (a commit found another epoch). Thread-safe.
  void mark_lost(std::string why);
  /// Stops renewing without giving the lease up, as a process that died would (tests).
  void abandon();

 private:
  redis_lease(redis_location where, lease_timing timing, std::int64_t epoch, std::string holder);
  void renew_loop();
  void stop_renewing();

  const redis_location where_;
  const lease_timing timing_;
  const std::int64_t epoch_;
  const std::string holder_;
  std::atomic<bool> lost_{false};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool abandoned_ = false;
  std::string lost_reason_;
  std::string unreachable_;
  std::thread renewer_;
};

/// The key names of a Redis journal (one place, for the lease and the journal).
namespace redis_keys {
inline constexpr std::string_view lease = "dx:lease";
inline constexpr std::string_view epoch = "dx:epoch";
}  // namespace redis_keys

}  // namespace dx::detail
