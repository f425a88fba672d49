// dx::error and its subclasses: every kind throw_error raises is a dx::error of the right type,
// dataframe errors included, and std exceptions do not escape the table API.
#include <dx/error.hpp>

#include <dx/cluster.hpp>
#include <dx/dataframe.hpp>
#include <dx/table.hpp>

#include <catch2/catch.hpp>

#include <exception>
#include <string>
#include <vector>

TEST_CASE("throw_error with the dataframe kind raises a dataframe_error that is a dx::error", "[error][dataframe]") {
  try {
    dx::detail::throw_error(dx::detail::error_kind::dataframe, "no column 'x'");
    FAIL("throw_error returned");
  } catch (const dx::error& e) {
    CHECK(dynamic_cast<const dx::dataframe_error*>(&e) != nullptr);
    CHECK(std::string(e.what()) == "no column 'x'");
  }
  CHECK_THROWS_AS(std::rethrow_exception(dx::detail::make_error(dx::detail::error_kind::dataframe, "m")),
                  dx::dataframe_error);
}

TEST_CASE("each error kind raises its own dx::error subclass", "[error]") {
  using dx::detail::error_kind;
  auto raise = [](error_kind k) { std::rethrow_exception(dx::detail::make_error(k, "m")); };
  CHECK_THROWS_AS(raise(error_kind::no_state), dx::no_state);
  CHECK_THROWS_AS(raise(error_kind::broken_promise), dx::broken_promise);
  CHECK_THROWS_AS(raise(error_kind::cancelled), dx::cancelled);
  CHECK_THROWS_AS(raise(error_kind::executor_shutdown), dx::executor_shutdown);
  CHECK_THROWS_AS(raise(error_kind::cycle), dx::cycle_error);
  CHECK_THROWS_AS(raise(error_kind::timeout), dx::timeout);
  CHECK_THROWS_AS(raise(error_kind::worker_lost), dx::worker_lost);
  CHECK_THROWS_AS(raise(error_kind::protocol), dx::protocol_error);
  CHECK_THROWS_AS(raise(error_kind::not_registered), dx::not_registered);
  CHECK_THROWS_AS(raise(error_kind::dataframe), dx::dataframe_error);
  CHECK_THROWS_AS(raise(error_kind::decode), dx::decode_error);
  CHECK_THROWS_AS(raise(error_kind::decode), dx::protocol_error);
  CHECK_THROWS_AS(raise(error_kind::generic), dx::error);
}

TEST_CASE("table lookups fail with a dataframe_error, never a std exception", "[error][dataframe]") {
  const dx::table t{{"a", std::vector<std::int64_t>{1, 2}}};
  CHECK_THROWS_AS(t["b"], dx::dataframe_error);
  CHECK_THROWS_AS(t.column_at(1), dx::dataframe_error);
  try {
    (void)t.column_at(3);
    FAIL("column_at did not throw");
  } catch (const dx::error& e) {
    CHECK(std::string(e.what()) == "table: column index 3 of 1 columns");
  }
}

TEST_CASE("a dataframe mistake is caught as dx::error with the dataframe kind", "[error][dataframe]") {
  dx::cluster cl{dx::options{}.threads(1)};
  const auto df = dx::dataframe::from_columns(cl, {{"a", std::vector<std::int64_t>{1, 2}}});
  try {
    (void)df["nope"];
    FAIL("operator[] did not throw");
  } catch (const dx::error& e) {
    CHECK(dynamic_cast<const dx::dataframe_error*>(&e) != nullptr);
    CHECK_THAT(e.what(), Catch::Matchers::Contains("nope"));
  }
  CHECK_THROWS_AS(dx::dataframe::read_csv(cl, "/nonexistent/dx-*.csv"), dx::dataframe_error);
}
