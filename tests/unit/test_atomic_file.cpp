// Tests of the atomic file writer (src/common/atomic_file.hpp): the target holds the old contents
// or the new, never a part, and no temporary file outlives a write, whether it succeeded or not.
#include "common/atomic_file.hpp"

#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include "temp_dir.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

/// A folder of its own for a test, removed afterwards.
struct temp_dir : dx_support::temp_dir {
  temp_dir() : dx_support::temp_dir("dx_atomic_file_test") {}
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The names in `dir`, so a test can tell that nothing but the target is left.
std::size_t entries_in(const fs::path& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("write_file_atomically creates a file and replaces its contents whole", "[atomic_file]") {
  temp_dir dir;
  const fs::path target = dir.path() / "out.txt";
  dx::detail::write_file_atomically(target, "first version\n");
  CHECK(read_text(target) == "first version\n");
  dx::detail::write_file_atomically(target, "second");
  CHECK(read_text(target) == "second");
  dx::detail::write_file_atomically(target, "");
  CHECK(read_text(target).empty());
  CHECK(entries_in(dir.path()) == 1);  // no temporary file left after success
}

TEST_CASE("a streamed atomic_file shows nothing at the target until commit", "[atomic_file]") {
  temp_dir dir;
  const fs::path target = dir.path() / "big.csv";
  dx::detail::write_file_atomically(target, "old");
  {
    dx::detail::atomic_file out(target);
    CHECK(out.temporary().parent_path() == target.parent_path());
    CHECK(fs::exists(out.temporary()));
    for (int i = 0; i < 1000; ++i) out.write("a,b,c\n");
    CHECK(read_text(target) == "old");  // readers still see the old contents
    out.commit();
    CHECK_FALSE(fs::exists(out.temporary()));
  }
  std::string expected;
  for (int i = 0; i < 1000; ++i) expected += "a,b,c\n";
  CHECK(read_text(target) == expected);
  CHECK(entries_in(dir.path()) == 1);
}

TEST_CASE("an atomic_file dropped without commit leaves the target and no temporary file", "[atomic_file]") {
  temp_dir dir;
  const fs::path target = dir.path() / "kept.txt";
  dx::detail::write_file_atomically(target, "kept");
  fs::path temporary;
  {
    dx::detail::atomic_file out(target);
    temporary = out.temporary();
    out.write("never seen");
  }
  CHECK_FALSE(fs::exists(temporary));
  CHECK(read_text(target) == "kept");
  CHECK(entries_in(dir.path()) == 1);
}

TEST_CASE("a missing folder is an error naming the path and the reason", "[atomic_file]") {
  temp_dir dir;
  const fs::path target = dir.path() / "no-such-folder" / "out.txt";
  CHECK_THROWS_AS(dx::detail::write_file_atomically(target, "x"), dx::error);
  CHECK_THROWS_WITH(dx::detail::write_file_atomically(target, "x"),
                    Catch::Contains(target.string()) && Catch::Contains("No such file or directory"));
  CHECK_FALSE(fs::exists(target.parent_path()));  // the folder is not created
  CHECK(entries_in(dir.path()) == 0);
}

TEST_CASE("a failed rename removes the temporary file and keeps the target", "[atomic_file]") {
  temp_dir dir;
  // A non-empty folder cannot be replaced by a file: the rename fails after the data was written.
  const fs::path target = dir.path() / "folder";
  fs::create_directories(target / "inside");
  CHECK_THROWS_WITH(dx::detail::write_file_atomically(target, "data"),
                    Catch::Contains(target.string()) && Catch::Contains("rename"));
  CHECK(fs::is_directory(target / "inside"));
  CHECK(entries_in(dir.path()) == 1);  // only the folder: the temporary file is gone
}
