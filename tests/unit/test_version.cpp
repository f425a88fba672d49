// dx/version.hpp: the version macros and dx::version_string come from the same project version.
#include <dx/version.hpp>

#include <catch2/catch.hpp>

#include <string>

static_assert(DX_VERSION_MAJOR >= 0 && DX_VERSION_MINOR >= 0 && DX_VERSION_PATCH >= 0);

TEST_CASE("version_string is MAJOR.MINOR.PATCH of the version macros", "[version]") {
  const std::string expected = std::to_string(DX_VERSION_MAJOR) + "." + std::to_string(DX_VERSION_MINOR) + "." +
                               std::to_string(DX_VERSION_PATCH);
  CHECK(std::string(dx::version_string) == expected);
}
