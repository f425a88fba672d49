// Replacing a file so that readers see the old contents or the new, never a part: the data goes
// to a temporary file in the same folder, is flushed to disk, renamed over the target, and the
// folder is flushed so that the rename survives a crash. Every file dx writes for later (the cost
// model, traces, CSV output) goes through here.
//
//   detail::write_file_atomically("/tmp/run.json", text);   // whole contents at once
//
//   detail::atomic_file out("/tmp/big.csv");                // or streamed in chunks
//   for (const auto& chunk : chunks) out.write(chunk);
//   out.commit();                                            // without it the target is untouched
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

namespace dx::detail {

/// A file being written under a temporary name next to its target, put in place by commit().
/// The temporary file is removed when anything fails or when the object is destroyed without a
/// successful commit. Errors throw dx::error naming the target, the step that failed and the
/// errno text. Not thread-safe; distinct objects (even for the same target) may be used from
/// different threads: each has a temporary name of its own.
class atomic_file {
 public:
  /// Creates the temporary file. Throws dx::error when it cannot (a missing folder, no
  /// permission); the folder is not created.
  explicit atomic_file(std::filesystem::path target);
  /// Removes the temporary file unless commit() succeeded.
  ~atomic_file();
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;

  /// Appends `data` (blocks). After a failed write the object only removes its temporary file.
  void write(std::string_view data);
  /// Flushes the data to disk, renames the temporary file over the target and flushes the folder.
  /// Blocks. On failure the target keeps its old contents and the temporary file is removed.
  void commit();

  const std::filesystem::path& target() const noexcept { return target_; }
  /// The temporary file's name (it exists until commit() or destruction).
  const std::filesystem::path& temporary() const noexcept { return temporary_; }

 private:
  [[noreturn]] void fail(std::string_view step, int err);
  void discard() noexcept;

  std::filesystem::path target_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Replaces `path` with `contents` through an atomic_file. Throws dx::error naming the path.
void write_file_atomically(const std::filesystem::path& path, std::string_view contents);

}  // namespace dx::detail
