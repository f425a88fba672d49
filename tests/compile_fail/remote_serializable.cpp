// Must compile: the control for remote_not_serializable.cpp, the same code with a serializable
// parameter type, so that the compile_fail test cannot pass because of an unrelated error.
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
