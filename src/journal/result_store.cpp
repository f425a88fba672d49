// The files of big results beside a journal (result_store.hpp) and the SHA-256 that checks them.
#include "journal/result_store.hpp"

#include "common/atomic_file.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace dx::detail {

namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

/// A name part that is safe in any file system and readable: letters, digits, '-', '_' and '.'
/// stay (but not a leading '.'), anything else becomes '_'; long names are cut, since the hash
/// beside the part keeps names distinct.
std::string file_name_part(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 64)) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                       c == '_' || (c == '.' && !out.empty());
    out += plain ? c : '_';
  }
  return out.empty() ? std::string("_") : out;
}

void fsync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw_error(error_kind::generic, fmt::format("cannot open folder {}: {}", dir.string(), errno_text(err)));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0)
    throw_error(error_kind::generic, fmt::format("cannot flush folder {}: {}", dir.string(), errno_text(err)));
}

}  // namespace

void result_store::make_durable_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return;
  const std::filesystem::path parent = dir.parent_path();
  if (!parent.empty() && parent != dir) make_durable_dir(parent);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    const int err = errno;
    throw_error(error_kind::generic, fmt::format("cannot create folder {}: {}", dir.string(), errno_text(err)));
  }
  fsync_dir(parent.empty() ? std::filesystem::path(".") : parent);
}

std::string result_store::write(std::string_view run, std::string_view key, std::string_view bytes,
                                std::string_view sha256) {
  const std::string run_dir = file_name_part(run);
  const std::string name =
      fmt::format("{}/{}.{}.{}", run_dir, file_name_part(key), sha256_hex(key).substr(0, 8), sha256.substr(0, 16));
  make_durable_dir(root_ / run_dir);
  write_file_atomically(absolute(name), bytes);
  return name;
}

std::string result_store::read(std::string_view name, std::uint64_t size, std::string_view sha256) const {
  const std::filesystem::path file = absolute(name);
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw_error(error_kind::generic,
                fmt::format("result file {} cannot be read: {}; the result is lost", file.string(), errno_text(err)));
  }
  const struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_on_return{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) != size) {
    throw_error(error_kind::generic,
                fmt::format("result file {} has {} bytes where the journal recorded {}; the result is lost",
                            file.string(), static_cast<long long>(st.st_size), size));
  }
  std::string bytes(size, '\0');
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, bytes.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      throw_error(error_kind::generic,
                  fmt::format("result file {} cannot be read: {}; the result is lost", file.string(), errno_text(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  if (sha256_hex(bytes) != sha256) {
    throw_error(error_kind::generic,
                fmt::format("result file {} does not match its SHA-256 recorded in the journal (its bytes changed "
                            "on disk); the result is lost",
                            file.string()));
  }
  return bytes;
}

void result_store::remove(std::string_view name) const noexcept {
  std::error_code ec;
  std::filesystem::remove(absolute(name), ec);
}

}  // namespace dx::detail
