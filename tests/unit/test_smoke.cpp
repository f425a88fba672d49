#include <dx/dx.hpp>

#include "test_helpers.hpp"

TEST_CASE("a default cluster runs a submitted function and returns its value", "[cluster]") {
  dx::cluster cl;
  auto f = cl.submit([](int a, int b) { return a * b; }, 6, 7);
  CHECK(dx_test::get_soon(f) == 42);
}
