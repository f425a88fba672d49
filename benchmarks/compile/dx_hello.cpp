// A hello world including dx's umbrella header, as the standard one includes the standard headers.
#include <dx/dx.hpp>

#include <cstdio>

int main() {
  std::printf("hello from dx %d.%d\n", DX_VERSION_MAJOR, DX_VERSION_MINOR);
  return 0;
}
