// One writing head per journal: an exclusive flock on the side file "<journal>.lock", which holds
// the owner's pid so that a refused opener can say who holds it. The kernel drops a flock when its
// process dies, even by kill -9, so a dead head's lock is taken over with no manual step; and a
// stale pid left in the file means nothing, because the flock, not the file, is the lock.
//
//   journal_lock lock("/var/dx/journal.sqlite");   // throws naming the holder's pid if held
#pragma once

#include <filesystem>

namespace dx::detail {

/// The writer's lock on a journal, held from construction to destruction. Not thread-safe (one
/// object, one owner). Inherited across fork() (the child shares the lock; it is released when
/// both close it), dropped across exec (close-on-exec).
class journal_lock {
 public:
  /// Takes the lock on `journal_path` + ".lock" without waiting. Throws dx::error naming the
  /// journal and the holder's pid when another open journal holds it (in this process or
  /// another), or naming the lock file when it cannot be created. Does not block.
  explicit journal_lock(const std::filesystem::path& journal_path);
  ~journal_lock();
  journal_lock(const journal_lock&) = delete;
  journal_lock& operator=(const journal_lock&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace dx::detail
