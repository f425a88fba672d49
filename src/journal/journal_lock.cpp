// The writer's lock of a journal (journal_lock.hpp): flock on "<journal>.lock", holding the pid.
#include "journal/journal_lock.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

namespace dx::detail {

namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

/// The pid the holder wrote, or "" when the file is empty (a holder between its flock and its
/// write) or unreadable.
std::string read_holder(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return {};
  std::string text(buf, static_cast<std::size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

journal_lock::journal_lock(const std::filesystem::path& journal_path) : path_(journal_path.string() + ".lock") {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    throw_error(error_kind::generic,
                fmt::format("cannot open journal {} for writing: cannot create its lock file {}: {}",
                            journal_path.string(), path_.string(), errno_text(err)));
  }
  int rc;
  do rc = ::flock(fd_, LOCK_EX | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    const std::string holder = err == EWOULDBLOCK ? read_holder(fd_) : std::string();
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      throw_error(error_kind::generic,
                  fmt::format("cannot open journal {} for writing: it is in use by process {} (lock file {}); "
                              "stop that process, or open the journal read-only",
                              journal_path.string(), holder.empty() ? std::string("(pid not yet written)") : holder,
                              path_.string()));
    }
    throw_error(error_kind::generic, fmt::format("cannot open journal {} for writing: cannot lock {}: {}",
                                                 journal_path.string(), path_.string(), errno_text(err)));
  }
  // The pid is for messages only: a crash between truncate and write leaves it empty, harmlessly.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw_error(error_kind::generic, fmt::format("cannot open journal {} for writing: cannot write {}: {}",
                                                 journal_path.string(), path_.string(), errno_text(err)));
  }
}

journal_lock::~journal_lock() {
  // Closing releases the flock; the file stays, so the next opener never races a deletion.
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace dx::detail
