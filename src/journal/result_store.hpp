// Where the journal keeps results too big for a database row: files beside the journal,
// "<journal>.results/<run>/<key>.<hash of key>.<hash of bytes>", each written atomically
// (common/atomic_file) and named by its content, so a new result never overwrites one that a
// committed row still points to. The row holds the file's name, size and SHA-256; a read checks
// both and names the file when they disagree.
//
//   result_store files(journal_path.string() + ".results");
//   const std::string name = files.write("r-1", "train#3", bytes, sha256_hex(bytes));
//   std::string back = files.read(name, bytes.size(), sha);   // throws if changed or missing
#pragma once

#include "common/sha256.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace dx::detail {

/// The files of big results under one folder. Not thread-safe; const reads may run in parallel.
class result_store {
 public:
  explicit result_store(std::filesystem::path root) : root_(std::move(root)) {}

  /// Writes `bytes` (whose SHA-256 is `sha256`) for task `key` of `run`, creating folders as
  /// needed, and returns the file's name relative to the root. Returns once the file and its
  /// folder entries are on disk. Blocks. Throws dx::error naming the file.
  std::string write(std::string_view run, std::string_view key, std::string_view bytes, std::string_view sha256);

  /// The bytes of file `name` (as write() returned it), checked against `size` and `sha256`.
  /// Throws dx::error naming the file when it is missing, unreadable, of another size or of
  /// another checksum. Blocks.
  std::string read(std::string_view name, std::uint64_t size, std::string_view sha256) const;

  /// Removes file `name`, ignoring errors: for results replaced by newer ones. Blocks.
  void remove(std::string_view name) const noexcept;

  std::filesystem::path absolute(std::string_view name) const { return root_ / std::filesystem::path(name); }
  const std::filesystem::path& root() const noexcept { return root_; }

 private:
  /// Creates `dir` (and missing parents), flushing each new entry's parent folder so that the
  /// folders survive a crash along with the files in them.
  void make_durable_dir(const std::filesystem::path& dir);

  std::filesystem::path root_;
};

}  // namespace dx::detail
