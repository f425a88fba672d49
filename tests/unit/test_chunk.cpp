// Tests of dx/chunk.hpp: a split step's chunk crosses processes with dx's compiled encoder.
#include <dx/chunk.hpp>

#include <catch2/catch.hpp>

TEST_CASE("A chunk encodes and decodes with no archive header", "[workflow][chunk]") {
  static_assert(dx::serializable<dx::chunk>);
  static_assert(dx::detail::builtin_codec<dx::chunk>::value);
  const dx::chunk c{-5, 10, {"a", "", "c d"}, 2, 7};
  std::string bytes;
  dx::detail::write_value(bytes, c);
  CHECK(dx::detail::read_value<dx::chunk>(bytes) == c);
  CHECK_THROWS(dx::detail::read_value<dx::chunk>(std::string_view(bytes).substr(0, bytes.size() / 2)));
}
