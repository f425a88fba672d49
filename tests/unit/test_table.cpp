// dx::table and dx::column: typed columns with nulls, shared storage, lookups that name what is
// missing, timestamps and the text form.
#include <dx/table.hpp>

#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

TEST_CASE("a table holds named typed columns of equal length", "[table]") {
  const dx::table t{{"city", std::vector<std::string>{"Oslo", "Lima", "Pune"}},
                    {"temp", std::vector<double>{3.5, 18, 31}},
                    {"rank", std::vector<std::optional<std::int64_t>>{1, std::nullopt, 3}}};
  CHECK(t.num_rows() == 3);
  CHECK(t.num_columns() == 3);
  CHECK(t.column_names() == std::vector<std::string>{"city", "temp", "rank"});
  CHECK(t["city"].type() == dx::column_type::string);
  CHECK(t["city"].string_at(1) == "Lima");
  CHECK(t["temp"].float64_at(2) == 31.0);
  CHECK(t["rank"].null_count() == 1);
  CHECK(t["rank"].is_null(1));
  CHECK(t["rank"].int64_at(2) == 3);
  CHECK(t.find("temp") == std::optional<std::size_t>(1));
  CHECK(!t.find("wind"));
  CHECK(dx::type_name(dx::column_type::boolean) == "bool");
}

TEST_CASE("slices share storage and compare equal to the same values", "[table]") {
  const dx::table t{{"a", std::vector<std::int64_t>{1, 2, 3, 4}}};
  const dx::table tail = t.slice(2, 2);
  CHECK(tail.num_rows() == 2);
  CHECK(tail["a"].int64_at(0) == 3);
  CHECK(&tail["a"].storage() == &t["a"].storage());
  CHECK(tail == dx::table{{"a", std::vector<std::int64_t>{3, 4}}});
  CHECK(t.head(10).num_rows() == 4);
  CHECK(!(t == tail));
}

TEST_CASE("bad tables and lookups throw dataframe_error naming the problem", "[table][error]") {
  CHECK_THROWS_AS((dx::table{{"a", std::vector<std::int64_t>{1}}, {"b", std::vector<std::int64_t>{1, 2}}}),
                  dx::dataframe_error);
  const dx::table t{{"price", std::vector<double>{1.5}}};
  CHECK_THROWS_WITH(t["prices"], Catch::Contains("prices") && Catch::Contains("price"));
  CHECK_THROWS_AS(t["price"].int64_at(0), dx::dataframe_error);
}

TEST_CASE("timestamps print and parse as ISO 8601", "[table][timestamp]") {
  const auto ts = dx::parse_timestamp("2026-11-23T08:15:00Z");
  REQUIRE(ts);
  CHECK(dx::format_timestamp(*ts) == "2026-11-23T08:15:00");
  CHECK(dx::parse_timestamp("2026-11-23 09:15:00+01:00") == ts);
  CHECK(!dx::parse_timestamp("yesterday"));
}

TEST_CASE("a table prints as an aligned text table with nulls shown", "[table]") {
  const dx::table t{{"k", std::vector<std::optional<std::string>>{"x", std::nullopt}}};
  std::ostringstream os;
  os << t;
  CHECK(os.str() == t.to_string());
  CHECK_THAT(os.str(), Catch::Contains("null") && Catch::Contains("x"));
}
