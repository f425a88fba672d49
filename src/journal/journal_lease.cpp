// The public face of a journal's lease (dx/journal_lease.hpp) over redis_lease; a dx built without
// hiredis refuses it with the reason.
#include <dx/journal_lease.hpp>

#include <dx/error.hpp>

#if DX_HAVE_HIREDIS
#include "journal/redis_lease.hpp"
#else
#include <fmt/format.h>
#endif

namespace dx {

namespace detail {
#if !DX_HAVE_HIREDIS
class redis_lease {};
#endif
}  // namespace detail

namespace {

#if DX_HAVE_HIREDIS
detail::lease_timing timing_of(const lease_options& o) { return detail::lease_timing{o.ttl, o.poll}; }
#else
[[noreturn]] void no_redis(const std::string& journal) {
  detail::throw_error(detail::error_kind::generic,
                      fmt::format("cannot take the lease of journal {}: this dx was built without Redis support "
                                  "(hiredis was not found at build time)",
                                  journal));
}
#endif

}  // namespace

journal_lease::journal_lease(std::shared_ptr<detail::redis_lease> state) : state_(std::move(state)) {}
journal_lease::~journal_lease() = default;
journal_lease::journal_lease(journal_lease&&) noexcept = default;
journal_lease& journal_lease::operator=(journal_lease&&) noexcept = default;

#if DX_HAVE_HIREDIS
journal_lease journal_lease::take(const std::string& journal, lease_options options) {
  return journal_lease(detail::redis_lease::take(journal, timing_of(options)));
}

std::optional<journal_lease> journal_lease::wait(const std::string& journal, lease_options options,
                                                 const std::function<bool()>& keep_waiting,
                                                 const std::function<void(const std::string&)>& on_state) {
  auto state = detail::redis_lease::wait(journal, timing_of(options), keep_waiting, on_state);
  if (!state) return std::nullopt;
  return journal_lease(std::move(state));
}

std::int64_t journal_lease::epoch() const noexcept { return state_ ? state_->epoch() : 0; }
bool journal_lease::lost() const noexcept { return state_ && state_->lost(); }
std::string journal_lease::problem() const {
  if (!state_) return {};
  if (state_->lost()) return state_->lost_reason();
  return state_->unreachable_reason();
}
#else
journal_lease journal_lease::take(const std::string& journal, lease_options) { no_redis(journal); }
std::optional<journal_lease> journal_lease::wait(const std::string& journal, lease_options,
                                                 const std::function<bool()>&,
                                                 const std::function<void(const std::string&)>&) {
  no_redis(journal);
}
std::int64_t journal_lease::epoch() const noexcept { return 0; }
bool journal_lease::lost() const noexcept { return false; }
std::string journal_lease::problem() const { return {}; }
#endif

}  // namespace dx
