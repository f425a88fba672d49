// An environment variable set for a scope, then given back its earlier value (or unset).
//
//   dx_support::scoped_env journal("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace dx_support {

class scoped_env {
 public:
  scoped_env(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    ::setenv(name_.c_str(), value.c_str(), 1);
  }
  ~scoped_env() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace dx_support
