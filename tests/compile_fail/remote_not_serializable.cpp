// Must NOT compile: DX_REMOTE on a function whose parameter type is not dx::serializable. The
// compile_fail tests check that the compiler rejects it with dx's readable message.
#include <dx/remote.hpp>

struct NoSerialize {
  int v = 0;
};

int f(NoSerialize x) { return x.v; }

DX_REMOTE(f);
