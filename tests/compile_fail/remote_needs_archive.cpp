// Must NOT compile: DX_REMOTE on a function whose parameter type has a Boost `serialize` member,
// in a file that does not include <dx/archive.hpp>. Such a type is encoded by Boost in the user's
// code, and the compiler must say which header brings it. remote_serializable.cpp is the control:
// the same code with the include.
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
