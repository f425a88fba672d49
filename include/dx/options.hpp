// dx/options.hpp — how a dx::cluster is set up, as a chain of named settings.
//
//   dx::cluster cl{dx::options{}.threads(4)};
#pragma once

#include <cstddef>

namespace dx {

/// Settings of a cluster. Each setter returns *this so settings chain.
class options {
 public:
  /// Worker threads of the local executor (0, the default: the hardware concurrency).
  options& threads(std::size_t n) noexcept {
    threads_ = n;
    return *this;
  }
  std::size_t threads() const noexcept { return threads_; }

 private:
  std::size_t threads_ = 0;
};

}  // namespace dx
