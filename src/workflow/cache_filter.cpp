#include "workflow/cache_filter.hpp"

#include <functional>

namespace dx::detail {

namespace {

/// Two independent-enough hashes of a key; probe i is h1 + i * h2 (double hashing).
std::pair<std::uint64_t, std::uint64_t> hashes(std::string_view key) noexcept {
  const std::uint64_t h1 = std::hash<std::string_view>{}(key);
  std::uint64_t h2 = h1 * 0x9e3779b97f4a7c15ULL;
  h2 ^= h2 >> 29;
  return {h1, h2 | 1};  // odd: the probes of one key never all fall on one bit
}

}  // namespace

cache_filter::cache_filter() : words_(new std::atomic<std::uint64_t>[bits / 64]) {
  for (std::size_t i = 0; i < bits / 64; ++i) words_[i].store(0, std::memory_order_relaxed);
}

void cache_filter::add(std::string_view key) noexcept {
  const auto [h1, h2] = hashes(key);
  for (int i = 0; i < probes; ++i) {
    const std::uint64_t bit = (h1 + static_cast<std::uint64_t>(i) * h2) % bits;
    words_[bit / 64].fetch_or(std::uint64_t{1} << (bit % 64), std::memory_order_release);
  }
}

bool cache_filter::may_hold(std::string_view key) const noexcept {
  const auto [h1, h2] = hashes(key);
  for (int i = 0; i < probes; ++i) {
    const std::uint64_t bit = (h1 + static_cast<std::uint64_t>(i) * h2) % bits;
    if ((words_[bit / 64].load(std::memory_order_acquire) & (std::uint64_t{1} << (bit % 64))) == 0) return false;
  }
  return true;
}

}  // namespace dx::detail
