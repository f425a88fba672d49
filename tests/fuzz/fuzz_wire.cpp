// libFuzzer target for dx's wire decoding: see wire_harness.hpp. Built by tests/fuzz/CMakeLists.txt
// with Clang and DX_FUZZ=ON; `make fuzz` runs it on a copy of tests/fuzz/corpus.
#include "wire_harness.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dx::fuzz::run_wire_input(data, size);
  return 0;
}
