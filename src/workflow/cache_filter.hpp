// Which cache keys a journal may hold: a Bloom filter over the cache keys of its tasks, so that a
// step whose key the journal cannot hold (new work, the usual case) starts without a query, and
// without waiting for the journal while a group is being committed (an fsync, milliseconds).
//
//   cache_filter f;
//   f.add(key);                    // every key the journal holds or is given
//   if (f.may_hold(other)) ...     // false: certainly not there; true: ask the journal
//
// Fixed size (1 MiB): about 1 in 500 keys the journal does not hold pass at 500,000 keys held, 1 in
// 3 at 2,000,000; past that it degrades to asking the journal, as without it, never to a wrong
// answer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

namespace dx::detail {

class cache_filter {
 public:
  cache_filter();
  /// Remembers `key`. Thread-safe (release: a may_hold that sees it sees it whole); does not block.
  void add(std::string_view key) noexcept;
  /// False when `key` was never added; true when it was (and, rarely, when it was not).
  /// Thread-safe; does not block.
  bool may_hold(std::string_view key) const noexcept;

 private:
  static constexpr std::size_t bits = std::size_t{1} << 23;
  static constexpr int probes = 4;
  std::unique_ptr<std::atomic<std::uint64_t>[]> words_;
};

}  // namespace dx::detail
