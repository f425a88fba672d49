// The atomic file writer (common/atomic_file.hpp): temporary name, write, fsync, rename, fsync of
// the folder, and removal of the temporary file on every failure path.
#include "common/atomic_file.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <system_error>
#include <utility>

namespace dx::detail {

namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

/// A name no other writer uses at the same time: the process id tells processes apart, the
/// counter the writers of one process (relaxed: only uniqueness matters, not ordering).
std::filesystem::path temporary_name(const std::filesystem::path& target) {
  static std::atomic<std::uint64_t> next{0};
  const std::uint64_t n = next.fetch_add(1, std::memory_order_relaxed);
  return fmt::format("{}.tmp.{}.{}", target.string(), ::getpid(), n);
}

}  // namespace

atomic_file::atomic_file(std::filesystem::path target)
    : target_(std::move(target)), temporary_(temporary_name(target_)) {
  // O_EXCL: never write through a file (or a link) that someone else left under this name.
  fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    throw_error(error_kind::generic, fmt::format("cannot write {}: cannot create the temporary file {}: {}",
                                                 target_.string(), temporary_.string(), errno_text(err)));
  }
}

atomic_file::~atomic_file() {
  if (!committed_) discard();
}

void atomic_file::discard() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(temporary_.c_str());
  }
}

void atomic_file::fail(std::string_view step, int err) {
  discard();
  throw_error(error_kind::generic, fmt::format("cannot write {}: {}: {}", target_.string(), step, errno_text(err)));
}

void atomic_file::write(std::string_view data) {
  if (fd_ < 0) fail("the file is closed", EBADF);
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void atomic_file::commit() {
  if (fd_ < 0) fail("the file is closed", EBADF);
  if (::fsync(fd_) != 0) fail("fsync", errno);
  // close() can report a deferred write error (NFS): the file is not complete then.
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(temporary_.c_str());
    throw_error(error_kind::generic, fmt::format("cannot write {}: close: {}", target_.string(), errno_text(err)));
  }
  if (::rename(temporary_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    ::unlink(temporary_.c_str());
    throw_error(error_kind::generic, fmt::format("cannot write {}: rename from {}: {}", target_.string(),
                                                 temporary_.string(), errno_text(err)));
  }
  committed_ = true;
  // The rename is an entry in the folder: flushing the folder makes it durable. File systems
  // that cannot flush a directory say EINVAL (or ENOTSUP); the file is in place either way.
  const std::filesystem::path folder = target_.has_parent_path() ? target_.parent_path() : ".";
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    const int err = errno;
    throw_error(error_kind::generic,
                fmt::format("cannot write {}: open of the folder to flush it: {}", target_.string(), errno_text(err)));
  }
  const int synced = ::fsync(dir);
  const int err = errno;
  ::close(dir);
  if (synced != 0 && err != EINVAL && err != ENOTSUP) {
    throw_error(error_kind::generic,
                fmt::format("cannot write {}: fsync of the folder: {}", target_.string(), errno_text(err)));
  }
}

void write_file_atomically(const std::filesystem::path& path, std::string_view contents) {
  atomic_file out(path);
  out.write(contents);
  out.commit();
}

}  // namespace dx::detail
