// The options types submit, add_alert_rule and read_csv take: their chained setters give the same
// settings as the older spelling (data members written directly), which still works.
#include <dx/task_options.hpp>

#include <dx/alert.hpp>
#include <dx/dataframe.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

TEST_CASE("task_options setters give the same options as writing the members", "[options][task_options]") {
  const auto chained = dx::task_options{}
                           .with_priority(7)
                           .with_resources({{"gpu", 1}})
                           .with_hint(dx::hint{.size = 42})
                           .with_kind("etl.parse");
  dx::task_options old;
  old.priority = 7;
  old.resources = dx::resources{{"gpu", 1}};
  old.hint.size = 42;
  old.kind = "etl.parse";
  CHECK(chained.priority == old.priority);
  CHECK(chained.resources.amounts == old.resources.amounts);
  CHECK(chained.hint.size == old.hint.size);
  CHECK(chained.kind == old.kind);
}

TEST_CASE("alert_rule setters give the same rule as writing the members", "[options][alert]") {
  const auto chained = dx::alert_rule("backed up")
                           .on("queue_depth", {{"queue", "ingest"}})
                           .below(3)
                           .for_at_least(std::chrono::seconds(2))
                           .rate_per_second();
  dx::alert_rule old("backed up");
  old.metric = "queue_depth";
  old.labels = {{"queue", "ingest"}};
  old.when = dx::alert_rule::comparison::below;
  old.threshold = 3;
  old.for_duration = std::chrono::seconds(2);
  old.rate = true;
  CHECK(chained.name == old.name);
  CHECK(chained.metric == old.metric);
  CHECK(chained.labels == old.labels);
  CHECK(chained.when == old.when);
  CHECK(chained.threshold == old.threshold);
  CHECK(chained.for_duration == old.for_duration);
  CHECK(chained.rate == old.rate);
}

TEST_CASE("csv_options setters give the same options as writing the members", "[options][dataframe]") {
  const auto chained = dx::csv_options{}
                           .with_delimiter(';')
                           .with_quote('\'')
                           .with_header(false)
                           .with_names({"a", "b"})
                           .with_null_values({"-"})
                           .with_type("a", dx::column_type::string)
                           .with_inference_bytes(4096)
                           .with_partition_bytes(1 << 20)
                           .with_skip_bad_rows();
  dx::csv_options old;
  old.delimiter = ';';
  old.quote = '\'';
  old.header = false;
  old.names = {"a", "b"};
  old.null_values = {"-"};
  old.schema = {{"a", dx::column_type::string}};
  old.inference_bytes = 4096;
  old.partition_bytes = 1 << 20;
  old.skip_bad_rows = true;
  CHECK(chained.delimiter == old.delimiter);
  CHECK(chained.quote == old.quote);
  CHECK(chained.header == old.header);
  CHECK(chained.names == old.names);
  CHECK(chained.null_values == old.null_values);
  CHECK(chained.schema == old.schema);
  CHECK(chained.inference_bytes == old.inference_bytes);
  CHECK(chained.partition_bytes == old.partition_bytes);
  CHECK(chained.skip_bad_rows == old.skip_bad_rows);
  CHECK(dx::csv_options{}.with_schema({{"b", dx::column_type::int64}}).schema.size() == 1);
}
