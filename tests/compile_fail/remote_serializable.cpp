// Must compile: the control for remote_not_serializable.cpp, the same code with a serializable
// parameter type, and for remote_needs_archive.cpp, the same code with <dx/archive.hpp>, so that
// the compile_fail tests cannot pass because of an unrelated error.
#include <dx/archive.hpp>
#include <dx/remote.hpp>

struct NoSerialize {
  int v = 0;
  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    // clang-format off
    ar & v;
    // clang-format on
  }
};

int f(NoSerialize x) { return x.v; }

DX_REMOTE(f);
