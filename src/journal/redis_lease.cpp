// The lease of a Redis journal (redis_lease.hpp): taking it, renewing it, a standby's wait, and the
// registry of the leases this process holds.
#include "journal/redis_lease.hpp"

#include "common/log.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>

namespace dx::detail {

namespace {

// Takes the lease when no one holds it: raises the epoch and sets the key, or returns the holder.
// KEYS: lease, epoch. ARGV: holder, ttl in ms.
constexpr const char* take_script = R"lua(
local current = redis.call('GET', KEYS[1])
if current then return {0, current, redis.call('PTTL', KEYS[1])} end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ' ' .. ARGV[1] .. ' 0', 'PX', ARGV[2])
return {epoch, '', 0}
)lua";

// Renews the lease while the epoch is still the holder's: re-sets the key (also when its ttl ran
// out during an outage and no one took it since). Returns 1, or the epoch now current.
// KEYS: lease, epoch. ARGV: epoch, holder, ttl in ms, renewal number.
constexpr const char* renew_script = R"lua(
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[1] then return {0, epoch or 'none'} end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[4], 'PX', ARGV[3])
return {1, epoch}
)lua";

// Gives the lease up if it is still the holder's. KEYS: lease, epoch. ARGV: epoch.
constexpr const char* release_script = R"lua(
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
)lua";

std::mutex registry_mutex;
std::map<std::string, std::weak_ptr<redis_lease>, std::less<>>& registry() {
  static std::map<std::string, std::weak_ptr<redis_lease>, std::less<>> m;
  return m;
}

std::string this_holder() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return fmt::format("{}:{}", host[0] != '\0' ? host : "unknown-host", ::getpid());
}

std::string clock_text() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%H:%M:%S UTC", &utc);
  return text;
}

/// "held by host:pid (epoch 3)" from a lease value "<epoch> <holder> <renewal>".
std::string describe(const std::string& value) {
  const auto first = value.find(' ');
  const auto last = value.rfind(' ');
  if (first == std::string::npos || last == first) return fmt::format("held as \"{}\"", value);
  return fmt::format("held by {} (epoch {})", value.substr(first + 1, last - first - 1), value.substr(0, first));
}

std::chrono::milliseconds call_timeout(const lease_timing& t) {
  return std::clamp(t.ttl / 2, std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
}

void check_timing(const lease_timing& t) {
  if (t.ttl < std::chrono::milliseconds(200) || t.poll <= std::chrono::milliseconds(0) || t.poll > t.ttl)
    throw_error(error_kind::generic,
                fmt::format("a journal lease needs a ttl of at least 200ms and a poll between 1ms and the ttl (got "
                            "ttl {}ms, poll {}ms)",
                            t.ttl.count(), t.poll.count()));
}

}  // namespace

redis_lease::redis_lease(redis_location where, lease_timing timing, std::int64_t epoch, std::string holder)
    : where_(std::move(where)), timing_(timing), epoch_(epoch), holder_(std::move(holder)) {
  renewer_ = std::thread([this] { renew_loop(); });
}

std::shared_ptr<redis_lease> redis_lease::held(std::string_view location) {
  std::lock_guard lock(registry_mutex);
  const auto it = registry().find(location);
  return it == registry().end() ? nullptr : it->second.lock();
}

std::shared_ptr<redis_lease> redis_lease::take(std::string_view location, lease_timing timing) {
  check_timing(timing);
  redis_location where = parse_redis_location(location);
  if (auto mine = held(where.text)) return mine;
  redis_client client(where, call_timeout(timing));
  const std::string holder = this_holder();
  const std::string ttl = std::to_string(timing.ttl.count());
  redis_value v;
  try {
    v = client.call_checked({"EVAL", take_script, "2", redis_keys::lease, redis_keys::epoch, holder, ttl},
                            "cannot take the lease");
  } catch (const redis_unreachable& e) {
    throw_error(error_kind::generic, fmt::format("cannot take the lease of journal {}: {}", where.text, e.what()));
  }
  if (v.elements.size() != 3)
    throw_error(error_kind::generic, fmt::format("cannot take the lease of journal {}: unexpected reply", where.text));
  if (v.elements[0].integer == 0) {
    throw_error(error_kind::generic,
                fmt::format("cannot write journal {}: its lease is {}, for {} ms more unless renewed; run this head "
                            "as a standby (dx serve --standby) to take over when that head stops",
                            where.text, describe(v.elements[1].text), v.elements[2].integer));
  }
  std::shared_ptr<redis_lease> lease(new redis_lease(where, timing, v.elements[0].integer, holder));
  log(log_level::info, "journal {}: lease taken by {} (epoch {})", where.text, holder, lease->epoch());
  std::lock_guard lock(registry_mutex);
  registry()[where.text] = lease;
  return lease;
}

std::shared_ptr<redis_lease> redis_lease::wait(std::string_view location, lease_timing timing,
                                               const std::function<bool()>& keep_waiting,
                                               const std::function<void(const std::string&)>& on_state) {
  check_timing(timing);
  const redis_location where = parse_redis_location(location);
  if (auto mine = held(where.text)) return mine;
  using clock = std::chrono::steady_clock;
  redis_client client(where, call_timeout(timing));
  bool reachable = false;
  std::string last_value;           // the lease as last seen; empty: no key
  clock::time_point quiet_since{};  // since when no renewal was seen (while reachable)
  std::string last_state;
  const auto say = [&](std::string state) {
    if (state == last_state) return;
    last_state = state;
    log(log_level::info, "journal {}: standby: {}", where.text, state);
    if (on_state) on_state(last_state);
  };
  while (keep_waiting()) {
    try {
      const redis_value v = client.call_checked({"GET", redis_keys::lease}, "cannot read the lease");
      const std::string value = v.is_nil() ? std::string() : v.text;
      const auto now = clock::now();
      if (!reachable) {  // counts a whole ttl from here: a head that was cut off too gets to renew
        reachable = true;
        quiet_since = now;
        last_value = value;
      } else if (value != last_value) {
        if (!value.empty()) quiet_since = now;  // a renewal, or a new holder
        last_value = value;
      }
      say(value.empty() ? std::string("no head holds the lease") : "the lease is " + describe(value));
      if (value.empty() && now - quiet_since >= timing.ttl) {
        try {
          return take(where.text, timing);
        } catch (const dx::error& e) {  // another standby was first, or the head came back
          log(log_level::info, "journal {}: standby: {}", where.text, e.what());
          quiet_since = clock::now();
        }
      }
    } catch (const redis_unreachable& e) {
      reachable = false;
      say(fmt::format("{}; the lease is not taken while Redis is away", e.what()));
    }
    std::this_thread::sleep_for(timing.poll);
  }
  return nullptr;
}

redis_lease::~redis_lease() {
  stop_renewing();
  {
    std::lock_guard lock(registry_mutex);
    const auto it = registry().find(where_.text);
    if (it != registry().end() && it->second.expired()) registry().erase(it);
  }
  if (lost() || abandoned_) return;
  try {  // a standby takes over at its next look rather than after a ttl
    redis_client client(where_, call_timeout(timing_));
    const std::string epoch = std::to_string(epoch_);
    client.call({"EVAL", release_script, "2", redis_keys::lease, redis_keys::epoch, epoch});
    log(log_level::info, "journal {}: lease given up (epoch {})", where_.text, epoch_);
  } catch (const std::exception& e) {  // it runs out on its own
    log(log_level::warn, "journal {}: cannot give the lease up: {}", where_.text, e.what());
  }
}

void redis_lease::stop_renewing() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
}

void redis_lease::abandon() {
  {
    std::lock_guard lock(mutex_);
    abandoned_ = true;
  }
  stop_renewing();
}

std::string redis_lease::lost_reason() const {
  std::lock_guard lock(mutex_);
  return lost_reason_;
}

std::string redis_lease::unreachable_reason() const {
  std::lock_guard lock(mutex_);
  return unreachable_;
}

void redis_lease::mark_lost(std::string why) {
  {
    std::lock_guard lock(mutex_);
    if (lost_.load(std::memory_order_relaxed)) return;
    lost_reason_ = std::move(why);
    lost_.store(true, std::memory_order_release);
    stopping_ = true;
  }
  cv_.notify_all();
  log(log_level::error, "journal {}: {}", where_.text, lost_reason());
}

void redis_lease::renew_loop() {
  redis_client client(where_, call_timeout(timing_));
  const std::string epoch = std::to_string(epoch_);
  const std::string ttl = std::to_string(timing_.ttl.count());
  const auto every = std::max(timing_.ttl / 4, std::chrono::milliseconds(10));
  std::uint64_t renewal = 0;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (cv_.wait_for(lock, every, [&] { return stopping_; })) break;
    lock.unlock();
    std::string lost_to, unreachable;
    try {
      const std::string n = std::to_string(++renewal);
      const redis_value v =
          client.call_checked({"EVAL", renew_script, "2", redis_keys::lease, redis_keys::epoch, epoch, holder_, ttl, n},
                              "cannot renew the lease");
      if (v.elements.size() == 2 && v.elements[0].integer == 0) lost_to = v.elements[1].text;
    } catch (const redis_unreachable& e) {
      unreachable = e.what();
    } catch (const std::exception& e) {
      unreachable = e.what();
    }
    if (!lost_to.empty()) {
      mark_lost(lost_to == "none"
                    ? fmt::format("this head lost the lease (its epoch {}): Redis no longer holds the journal's "
                                  "epoch, so it lost its data (a restart without persistence, or a flush); this head "
                                  "can no longer write it",
                                  epoch_)
                    : fmt::format("this head lost the lease (its epoch {}, now {}): another head took the journal "
                                  "over; this head can no longer write it",
                                  epoch_, lost_to));
      lock.lock();
      break;
    }
    lock.lock();
    if (unreachable.empty()) {
      if (!unreachable_.empty()) log(log_level::info, "journal {}: lease renewed again", where_.text);
      unreachable_.clear();
    } else if (unreachable_.empty()) {
      unreachable_ = fmt::format("since {}: {}", clock_text(), unreachable);
      log(log_level::warn, "journal {}: cannot renew the lease {}", where_.text, unreachable_);
    }
  }
}

}  // namespace dx::detail
