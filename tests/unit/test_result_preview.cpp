// dx/detail/result_preview.hpp: the short texts the workflow pages show of a step's result, by
// its type: numbers, bool, strings (cut at a character, with an ellipsis), ranges of numbers
// (the first items and the count), nothing for other types.
#include <dx/detail/result_preview.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

namespace {

template <class T>
std::string preview(const T& v, std::size_t limit = 64) {
  std::string bytes;
  dx::detail::write_value(bytes, v);
  return dx::detail::preview_of<T>()(std::span<const char>(bytes.data(), bytes.size()), limit);
}

}  // namespace

TEST_CASE("a number, a bool and a short string are shown whole", "[preview]") {
  CHECK(preview(std::int64_t{-79800}) == "-79800");
  CHECK(preview(std::uint32_t{7}) == "7");
  CHECK(preview(0.25) == "0.25");
  CHECK(preview(true) == "true");
  CHECK(preview(std::string("hello")) == "hello");
}

TEST_CASE("a long string is cut at a character and marked", "[preview]") {
  const std::string s = std::string(10, 'a') + "\xC3\xA9" + std::string(10, 'b');  // an é at 10..11
  CHECK(preview(s, 11) == std::string(10, 'a') + "\xE2\x80\xA6");                  // never half of the é
  CHECK(preview(s, 12) == std::string(10, 'a') + "\xC3\xA9\xE2\x80\xA6");
}

TEST_CASE("a range of numbers shows its first items and its count", "[preview]") {
  CHECK(preview(std::vector<double>{1, 2.5, 3}) == "[1, 2.5, 3] (3 items)");
  CHECK(preview(std::vector<int>{}) == "[] (0 items)");
  std::vector<std::int64_t> many(1000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<std::int64_t>(i);
  const std::string p = preview(many, 20);
  CHECK(p.rfind("[0, 1, 2, 3", 0) == 0);
  CHECK_THAT(p, Catch::EndsWith(", \xE2\x80\xA6] (1000 items)"));
}

TEST_CASE("other types have no preview", "[preview]") {
  CHECK(dx::detail::preview_of<std::map<std::string, int>>() == nullptr);
  CHECK(dx::detail::preview_of<std::vector<std::string>>() == nullptr);
  STATIC_REQUIRE_FALSE(dx::detail::has_preview_v<std::map<std::string, int>>);
  STATIC_REQUIRE(dx::detail::has_preview_v<std::vector<double>>);
  STATIC_REQUIRE(dx::detail::has_preview_v<std::string>);
}
