// A folder of its own for a test, under the system's temporary folder, removed with everything in
// it when the object goes.
//
//   dx_support::temp_dir dir("dx_cost_model_test");
//   m.save(dir.path() / "model.txt");
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <system_error>

namespace dx_support {

class temp_dir {
 public:
  /// Creates <tmp>/<prefix>_<pid>_<n>, empty. Throws std::filesystem::filesystem_error when it
  /// cannot.
  explicit temp_dir(const std::string& prefix = "dx_test") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(++counter));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace dx_support
