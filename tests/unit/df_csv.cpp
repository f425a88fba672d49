// CSV kernels of dx::dataframe: open_csv, split_csv, read_csv_range and write_csv, each checked
// against answers written out by hand or computed independently here.
#include <catch2/catch.hpp>

#include "dataframe/kernels.hpp"

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace df = dx::detail::df;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using dx::column;
using dx::column_type;
using dx::table;

namespace {

/// A folder of its own for one test, removed with everything in it at the end.
class scratch_dir {
 public:
  explicit scratch_dir(const std::string& name)
      : path_(fs::temp_directory_path() / ("dx_df_csv_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;

  /// Writes `content` byte for byte to `name` in this folder; returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    const fs::path file = path_ / name;
    std::ofstream out(file, std::ios::binary);
    out << content;
    return file.string();
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

struct read_result {
  table data;
  std::size_t skipped_rows = 0;
  std::size_t partitions = 0;
};

/// Reads every range of `source` (split at about `target_bytes`) and concatenates them.
read_result read_all(const df::csv_source& source, std::size_t target_bytes, std::vector<bool> wanted = {}) {
  const std::vector<df::csv_range> ranges = df::split_csv(source, target_bytes, 1);
  std::vector<table> parts;
  read_result result;
  for (const df::csv_range& r : ranges) {
    df::csv_read_result part = df::read_csv_range(source, r, wanted);
    result.skipped_rows += part.skipped_rows;
    parts.push_back(std::move(part.data));
  }
  result.data = df::concat(parts);
  result.partitions = ranges.size();
  return result;
}

table read_file(const std::string& path, const dx::csv_options& options = {}, std::size_t target_bytes = 1 << 30) {
  return read_all(df::open_csv(path, options), target_bytes).data;
}

using opt_i = std::optional<std::int64_t>;
using opt_d = std::optional<double>;
using opt_b = std::optional<bool>;
using opt_s = std::optional<std::string>;
using opt_t = std::optional<dx::timestamp>;

constexpr std::int64_t ns_per_second = 1'000'000'000;
/// 2024-01-01T00:00:00Z in seconds since the epoch.
constexpr std::int64_t jan_1_2024 = 1'704'067'200;

std::vector<column_type> types_of(const df::csv_source& s) { return s.types; }

}  // namespace

TEST_CASE("csv: quoted fields keep delimiters, newlines and doubled quotes", "[df][csv]") {
  scratch_dir dir("quoting");
  const std::string path = dir.write("q.csv",
                                     "id,text,n\n"
                                     "1,\"a,b\",10\n"
                                     "2,\"line one\nline two\",20\n"
                                     "3,\"say \"\"hi\"\"\",30\n"
                                     "4,plain,40\n"
                                     "5,\"\",50\n"
                                     "6,\"x\"\"\",60\n");
  const table t = read_file(path);
  const table expected{
      {"id", std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}},
      {"text", std::vector<opt_s>{"a,b", "line one\nline two", "say \"hi\"", "plain", std::nullopt, "x\""}},
      {"n", std::vector<std::int64_t>{10, 20, 30, 40, 50, 60}}};
  CHECK(t == expected);
}

TEST_CASE("csv: quoted numbers and text after a closing quote", "[df][csv]") {
  scratch_dir dir("quoted_numbers");
  const std::string path = dir.write("q.csv", "a,b\n\"1\",\"ab\"cd\n\"2\",e\"f\n");
  const table t = read_file(path);
  const table expected{{"a", std::vector<std::int64_t>{1, 2}}, {"b", std::vector<std::string>{"abcd", "e\"f"}}};
  CHECK(t == expected);
}

TEST_CASE("csv: split points never fall inside quoted fields", "[df][csv]") {
  scratch_dir dir("split_quotes");
  std::string content = "k,text,v\n";
  std::vector<std::int64_t> keys;
  std::vector<std::string> texts;
  std::vector<double> values;
  std::mt19937 rng(7);
  for (int i = 0; i < 400; ++i) {
    std::string text;
    const int lines = static_cast<int>(rng() % 4);
    for (int l = 0; l <= lines; ++l) {
      if (l > 0) text += '\n';
      text += "row " + std::to_string(i) + " part " + std::to_string(l) + ", \"q\"";
    }
    keys.push_back(i);
    texts.push_back(text);
    values.push_back(i * 0.5);
    std::string escaped;
    for (char c : text) {
      if (c == '"') escaped += '"';
      escaped += c;
    }
    content += std::to_string(i) + ",\"" + escaped + "\"," + std::to_string(i * 0.5) + "\n";
  }
  const std::string path = dir.write("multi.csv", content);
  const df::csv_source source = df::open_csv(path, {});
  const table expected{{"k", keys}, {"text", texts}, {"v", values}};

  const table whole = read_all(source, 1 << 30).data;
  CHECK(whole == expected);
  for (const std::size_t target : {1u, 7u, 50u, 333u, 4096u}) {
    INFO("target bytes " << target);
    const std::vector<df::csv_range> ranges = df::split_csv(source, target, 1);
    CHECK(ranges.size() > 1);
    // Every range starts where a row starts: right after a '\n' that is not inside quotes, and
    // its first_line counts the physical lines before it.
    for (const df::csv_range& r : ranges) {
      CHECK(r.begin < r.end);
      CHECK(content[r.begin - 1] == '\n');
      const auto newlines = std::count(content.begin(), content.begin() + static_cast<std::ptrdiff_t>(r.begin), '\n');
      CHECK(r.first_line == static_cast<std::uint64_t>(newlines) + 1);
    }
    CHECK(ranges.front().begin == std::string("k,text,v\n").size());
    CHECK(ranges.back().end == content.size());
    for (std::size_t i = 1; i < ranges.size(); ++i) CHECK(ranges[i].begin == ranges[i - 1].end);
    CHECK(read_all(source, target).data == expected);
  }
}

TEST_CASE("csv: rows and quoted fields larger than the read and split chunks", "[df][csv]") {
  // Several MiB with multi-line quoted fields, two of them longer than the reader's buffer, so that
  // rows straddle the reader's and the splitter's chunk boundaries.
  scratch_dir dir("big");
  std::mt19937 rng(11);
  std::string content = "id,text,v\n";
  std::vector<std::uint64_t> row_starts;  // byte offset of each row
  std::vector<std::uint64_t> row_lines;   // 1-based line of each row
  std::uint64_t line = 2;
  std::vector<std::int64_t> ids;
  std::vector<std::string> texts;
  std::vector<double> values;
  for (int i = 0; content.size() < (9u << 20); ++i) {
    std::string text;
    if (i == 5000 || i == 60000) {
      for (int l = 0; l < 30000; ++l) text += "long line " + std::to_string(l) + (l % 3 == 0 ? ", \"q\"\n" : "\n");
    } else if (rng() % 5 == 0) {
      text = "multi\nline, \"" + std::to_string(i) + "\"";
    } else {
      text = "t" + std::to_string(i);
    }
    std::string field = text;
    if (text.find_first_of(",\"\n") != std::string::npos) {
      field = "\"";
      for (const char c : text) {
        if (c == '"') field += '"';
        field += c;
      }
      field += '"';
    }
    row_starts.push_back(content.size());
    row_lines.push_back(line);
    content += std::to_string(i) + "," + field + "," + std::to_string(i) + ".25\n";
    line += 1 + static_cast<std::uint64_t>(std::count(text.begin(), text.end(), '\n'));
    ids.push_back(i);
    texts.push_back(text);
    values.push_back(i + 0.25);
  }
  const table expected{{"id", ids}, {"text", texts}, {"v", values}};
  const std::string path = dir.write("big.csv", content);
  const df::csv_source source = df::open_csv(path, {});
  CHECK(read_all(source, std::size_t{1} << 40).data == expected);

  const std::vector<df::csv_range> ranges = df::split_csv(source, 200'000, 1);
  CHECK(ranges.size() > 20);
  for (const df::csv_range& r : ranges) {
    const auto it = std::lower_bound(row_starts.begin(), row_starts.end(), r.begin);
    REQUIRE(it != row_starts.end());
    CHECK(*it == r.begin);
    CHECK(r.first_line == row_lines[static_cast<std::size_t>(it - row_starts.begin())]);
  }
  CHECK(read_all(source, 200'000).data == expected);

  // Bad rows after all that: the line numbers still count every embedded newline.
  std::string with_errors = content;
  const std::uint64_t bad_line = line;
  with_errors += "bad,x,1.0\n";
  with_errors += "7,ok,2.0\n";
  with_errors += "8,\"never closed,3.0\n";
  for (int l = 0; l < 200000; ++l) with_errors += "9,filler,4.0\n";
  const std::string bad_path = dir.write("bad.csv", with_errors);
  dx::csv_options options;
  options.schema = {{"id", column_type::int64}};
  const df::csv_source bad = df::open_csv(bad_path, options);
  REQUIRE_THROWS_WITH(read_all(bad, std::size_t{1} << 40),
                      Contains("bad.csv:" + std::to_string(bad_line) + ": 'bad' is not an int64"));
  REQUIRE_THROWS_WITH(read_all(bad, 300'000),
                      Contains("bad.csv:" + std::to_string(bad_line) + ": 'bad' is not an int64"));
  options.skip_bad_rows = true;
  ids.push_back(7);
  texts.push_back("ok");
  values.push_back(2.0);
  const table expected_kept{{"id", ids}, {"text", texts}, {"v", values}};
  for (const std::size_t target : {std::size_t{300'000}, std::size_t{1} << 40}) {
    const read_result r = read_all(df::open_csv(bad_path, options), target);
    CHECK(r.skipped_rows == 2);
    CHECK(r.data == expected_kept);
  }
}

TEST_CASE("csv: splitting a file without quotes", "[df][csv]") {
  scratch_dir dir("split_plain");
  std::string content = "a,b\n";
  std::vector<std::int64_t> a, b;
  for (int i = 0; i < 1000; ++i) {
    content += std::to_string(i) + "," + std::to_string(i * 3) + "\n";
    a.push_back(i);
    b.push_back(i * 3);
  }
  const std::string path = dir.write("plain.csv", content);
  const df::csv_source source = df::open_csv(path, {});
  for (const std::size_t target : {1u, 100u, 1000u, 5000u}) {
    const std::vector<df::csv_range> ranges = df::split_csv(source, target, 1);
    for (const df::csv_range& r : ranges) {
      CHECK(content[r.begin - 1] == '\n');
      CHECK(r.first_line == static_cast<std::uint64_t>(
                                std::count(content.begin(), content.begin() + static_cast<long>(r.begin), '\n')) +
                                1);
      // A range ends at the first row end at or after its target size.
      if (r.end != content.size()) CHECK(r.end - r.begin >= target);
    }
    CHECK(read_all(source, target).data == table{{"a", a}, {"b", b}});
  }
  // Automatic size: small files are one range.
  CHECK(df::split_csv(source, 0, 8).size() == 1);
}

TEST_CASE("csv: errors name the file and the physical line", "[df][csv]") {
  scratch_dir dir("errors");
  SECTION("too many fields") {
    const std::string path = dir.write("data.csv", "a,b,c\n1,2,3\n4,5,6,7\n");
    REQUIRE_THROWS_WITH(read_file(path), Contains("data.csv:3: expected 3 fields, found 4"));
  }
  SECTION("too few fields") {
    const std::string path = dir.write("data.csv", "a,b,c\n1,2,3\n4,5\n");
    REQUIRE_THROWS_WITH(read_file(path), Contains("data.csv:3: expected 3 fields, found 2"));
  }
  SECTION("a value of the wrong type, after embedded newlines") {
    std::string content = "key,text\n";
    content += "1,\"two\nlines\"\n";      // lines 2-3
    content += "2,\"three\n\nlines\"\n";  // lines 4-6
    content += "\n";                      // line 7, blank
    content += "3,ok\n";                  // line 8
    content += "abc,bad\n";               // line 9
    const std::string path = dir.write("data.csv", content);
    dx::csv_options options;
    options.inference_bytes = 20;  // infer from the first row only: key is int64
    const df::csv_source source = df::open_csv(path, options);
    REQUIRE(source.types[0] == column_type::int64);
    REQUIRE_THROWS_WITH(read_all(source, 1 << 30),
                        Contains("data.csv:9: 'abc' is not an int64 (column 'key'; pass csv_options::schema to read it "
                                 "as another type)"));
    // Split into small ranges, the line numbers are still those of the file.
    REQUIRE_THROWS_WITH(read_all(source, 1), Contains("data.csv:9: 'abc' is not an int64"));
  }
  SECTION("unclosed quote") {
    const std::string path = dir.write("data.csv", "a,b\n1,x\n2,y\n3,z\n4,\"open\n5,w\n");
    REQUIRE_THROWS_WITH(read_file(path), Contains("data.csv:5: unclosed quote"));
  }
  SECTION("float, bool and timestamp columns") {
    // Types come from the first row only (27 bytes), so later rows can disagree with them.
    dx::csv_options options;
    options.inference_bytes = 27;
    const std::string path =
        dir.write("data.csv", "f,b,t\n1.5,true,2024-01-01\n2.5,false,2024-01-02\nx,true,2024-01-03\n");
    REQUIRE_THROWS_WITH(read_file(path, options), Contains("data.csv:4: 'x' is not a float64 (column 'f'"));
    const std::string p2 = dir.write("d2.csv", "f,b,t\n1.5,true,2024-01-01\n2.5,maybe,2024-01-02\n");
    REQUIRE_THROWS_WITH(read_file(p2, options), Contains("d2.csv:3: 'maybe' is not a bool (column 'b'"));
    const std::string p3 = dir.write("d3.csv", "f,b,t\n1.5,true,2024-01-01\n2.5,true,yesterday\n");
    REQUIRE_THROWS_WITH(read_file(p3, options), Contains("d3.csv:3: 'yesterday' is not a timestamp (column 't'"));
  }
}

TEST_CASE("csv: skip_bad_rows drops and counts malformed rows", "[df][csv]") {
  scratch_dir dir("skip");
  const std::string path = dir.write("data.csv",
                                     "a,b\n"
                                     "1,x\n"
                                     "2,y,extra\n"             // too many fields
                                     "3\n"                     // too few
                                     "oops,\"multi\nline\"\n"  // not an int, spans two lines
                                     "4,z\n"
                                     "5,\"w\"\n"
                                     "6,\"never closed\n"
                                     "7,v\n");
  dx::csv_options options;
  options.skip_bad_rows = true;
  options.schema = {{"a", column_type::int64}};
  for (const std::size_t target : {1u, 1u << 20}) {
    const read_result r = read_all(df::open_csv(path, options), target);
    CHECK(r.skipped_rows == 4);
    CHECK(r.data == table{{"a", std::vector<std::int64_t>{1, 4, 5}}, {"b", std::vector<std::string>{"x", "z", "w"}}});
  }
}

TEST_CASE("csv: type inference", "[df][csv]") {
  scratch_dir dir("inference");
  const std::string path = dir.write("types.csv",
                                     "i,f,b,t,s,n,mixed,big\n"
                                     "1,1.5,true,2024-01-01 00:00:01,hello,,1,1\n"
                                     "-7,2,False,2024-01-01T00:00:02.5,NA,NA,x,99999999999999999999\n"
                                     ",inf,TRUE,,world,,2.5,3\n"
                                     "NA,-inf,,2024-01-01,\"\",null,true,4\n");
  const df::csv_source source = df::open_csv(path, {});
  CHECK(source.names == std::vector<std::string>{"i", "f", "b", "t", "s", "n", "mixed", "big"});
  CHECK(types_of(source) == std::vector<column_type>{column_type::int64, column_type::float64, column_type::boolean,
                                                     column_type::timestamp, column_type::string, column_type::string,
                                                     column_type::string, column_type::float64});
  const double inf = std::numeric_limits<double>::infinity();
  const table expected{{"i", std::vector<opt_i>{1, -7, std::nullopt, std::nullopt}},
                       {"f", std::vector<opt_d>{1.5, 2.0, inf, -inf}},
                       {"b", std::vector<opt_b>{true, false, true, std::nullopt}},
                       {"t", std::vector<opt_t>{dx::timestamp{(jan_1_2024 + 1) * ns_per_second},
                                                dx::timestamp{(jan_1_2024 + 2) * ns_per_second + 500'000'000},
                                                std::nullopt, dx::timestamp{jan_1_2024 * ns_per_second}}},
                       {"s", std::vector<opt_s>{"hello", std::nullopt, "world", std::nullopt}},
                       {"n", column::nulls(column_type::string, 4)},
                       {"mixed", std::vector<opt_s>{"1", "x", "2.5", "true"}},
                       {"big", std::vector<opt_d>{1.0, 1e20, 3.0, 4.0}}};
  CHECK(read_all(source, 1 << 30).data == expected);
}

TEST_CASE("csv: inference looks only at the first inference_bytes", "[df][csv]") {
  scratch_dir dir("inference_bytes");
  std::string content = "v\n";
  for (int i = 0; i < 100; ++i) content += std::to_string(i) + "\n";
  content += "1.5\n";
  const std::string path = dir.write("late.csv", content);
  dx::csv_options options;
  options.inference_bytes = 50;
  CHECK(df::open_csv(path, options).types == std::vector<column_type>{column_type::int64});
  options.inference_bytes = 1 << 20;
  CHECK(df::open_csv(path, options).types == std::vector<column_type>{column_type::float64});
  options.inference_bytes = 0;  // still at least one row
  CHECK(df::open_csv(path, options).types == std::vector<column_type>{column_type::int64});
}

TEST_CASE("csv: schema overrides inference", "[df][csv]") {
  scratch_dir dir("schema");
  const std::string path = dir.write("s.csv", "zip,amount,flag\n00123,5,1\n04567,6,0\n");
  dx::csv_options options;
  options.schema = {{"zip", column_type::string}, {"amount", column_type::float64}, {"flag", column_type::boolean}};
  const table t = read_file(path, options);
  CHECK(t == table{{"zip", std::vector<std::string>{"00123", "04567"}},
                   {"amount", std::vector<double>{5, 6}},
                   {"flag", std::vector<bool>{true, false}}});

  options.schema = {{"amuont", column_type::float64}};
  REQUIRE_THROWS_AS(df::open_csv(path, options), dx::dataframe_error);
  REQUIRE_THROWS_WITH(df::open_csv(path, options), Contains("amuont") && Contains("amount"));
}

TEST_CASE("csv: null markers", "[df][csv]") {
  scratch_dir dir("nulls");
  const std::string path = dir.write("n.csv", "a,s\n1,x\nmissing,missing\n-,\"-\"\n4,\n5,NA\n");
  dx::csv_options options;
  options.null_values = {"missing", "-", ""};
  const df::csv_source source = df::open_csv(path, options);
  CHECK(source.types == std::vector<column_type>{column_type::int64, column_type::string});
  CHECK(read_all(source, 1 << 30).data ==
        table{{"a", std::vector<opt_i>{1, std::nullopt, std::nullopt, 4, 5}},
              {"s", std::vector<opt_s>{"x", std::nullopt, std::nullopt, std::nullopt, "NA"}}});

  SECTION("without \"\" as a marker, empty strings stay strings") {
    options.null_values = {"NA"};
    const table t = read_file(dir.write("e.csv", "a,s\n1,\n2,\"\"\n3,NA\n"), options);
    CHECK(t == table{{"a", std::vector<std::int64_t>{1, 2, 3}}, {"s", std::vector<opt_s>{"", "", std::nullopt}}});
  }
}

TEST_CASE("csv: files without a header", "[df][csv]") {
  scratch_dir dir("no_header");
  const std::string path = dir.write("h.csv", "1,a\n2,b\n");
  dx::csv_options options;
  options.header = false;
  CHECK(read_file(path, options) ==
        table{{"column0", std::vector<std::int64_t>{1, 2}}, {"column1", std::vector<std::string>{"a", "b"}}});
  options.names = {"id", "letter"};
  CHECK(read_file(path, options) ==
        table{{"id", std::vector<std::int64_t>{1, 2}}, {"letter", std::vector<std::string>{"a", "b"}}});
  options.names = {"only"};
  REQUIRE_THROWS_AS(df::open_csv(path, options), dx::dataframe_error);
}

TEST_CASE("csv: duplicate and empty header names are made unique", "[df][csv]") {
  scratch_dir dir("dup_names");
  const std::string path = dir.write("d.csv", "a,a,,b,a,a.1\n1,2,3,4,5,6\n");
  const df::csv_source source = df::open_csv(path, {});
  CHECK(source.names == std::vector<std::string>{"a", "a.2", "Unnamed: 2", "b", "a.3", "a.1"});
  CHECK(read_all(source, 1 << 30).data.num_columns() == 6);
}

TEST_CASE("csv: globs read several files in name order", "[df][csv]") {
  scratch_dir dir("glob");
  dir.write("part-2.csv", "a,b\n3,z\n");
  dir.write("part-1.csv", "a,b\n1,x\n2,y\n");
  dir.write("part-10.csv", "a,b\n4,w\n");
  dir.write("other.txt", "not,csv\n");
  const df::csv_source source = df::open_csv(dir.file("part-*.csv"), {});
  REQUIRE(source.files.size() == 3);
  CHECK(fs::path(source.files[0]).filename() == "part-1.csv");
  CHECK(fs::path(source.files[1]).filename() == "part-10.csv");
  CHECK(fs::path(source.files[2]).filename() == "part-2.csv");
  const read_result r = read_all(source, 1 << 30);
  CHECK(r.partitions == 3);
  CHECK(r.data ==
        table{{"a", std::vector<std::int64_t>{1, 2, 4, 3}}, {"b", std::vector<std::string>{"x", "y", "w", "z"}}});

  SECTION("differing headers") {
    dir.write("part-3.csv", "a,c\n5,v\n");
    REQUIRE_THROWS_WITH(df::open_csv(dir.file("part-*.csv"), {}),
                        Contains("part-3.csv") && Contains("part-1.csv") && Contains("a,c") && Contains("a,b"));
  }
  SECTION("nothing matches") {
    REQUIRE_THROWS_WITH(df::open_csv(dir.file("nothing-*.csv"), {}),
                        Contains("no file matches") && Contains("nothing-*.csv"));
    REQUIRE_THROWS_WITH(df::open_csv(dir.file("missing.csv"), {}), Contains("missing.csv"));
  }
  SECTION("a path that cannot be read") {
    fs::create_directories(dir.file("folder.csv"));
    REQUIRE_THROWS_WITH(df::open_csv(dir.file("folder.csv"), {}), Contains("cannot read") && Contains("folder.csv"));
    // A glob skips what is not a file.
    CHECK(df::open_csv(dir.file("*.csv"), {}).files.size() == 3);
  }
}

TEST_CASE("csv: CRLF line ends, no final newline, byte order mark, blank lines", "[df][csv]") {
  scratch_dir dir("line_ends");
  const table expected{{"a", std::vector<std::int64_t>{1, 2, 3}},
                       {"b", std::vector<std::string>{"x", "y\r\nz", "w"}},
                       {"c", std::vector<double>{0.5, 1.5, 2.5}}};
  const std::string crlf = "a,b,c\r\n1,x,0.5\r\n2,\"y\r\nz\",1.5\r\n\r\n3,w,2.5\r\n";
  CHECK(read_file(dir.write("crlf.csv", crlf)) == expected);
  CHECK(read_file(dir.write("crlf_split.csv", crlf), {}, 1) == expected);
  const std::string no_final = "a,b,c\n1,x,0.5\n2,\"y\r\nz\",1.5\n3,w,2.5";
  CHECK(read_file(dir.write("no_final.csv", no_final)) == expected);
  CHECK(read_file(dir.write("no_final_split.csv", no_final), {}, 1) == expected);
  const std::string bom =
      "\xEF\xBB\xBF"
      "a,b,c\n\n1,x,0.5\n2,\"y\r\nz\",1.5\n\n\n3,w,2.5\n";
  const df::csv_source source = df::open_csv(dir.write("bom.csv", bom), {});
  CHECK(source.names[0] == "a");
  CHECK(read_all(source, 1).data == expected);

  dx::csv_options no_header;
  no_header.header = false;
  no_header.names = {"a", "b", "c"};
  CHECK(read_file(dir.write("bom_no_header.csv",
                            "\xEF\xBB\xBF"
                            "1,x,0.5\n2,\"y\r\nz\",1.5\n3,w,2.5\r\n"),
                  no_header) == expected);

  // The line of an error counts CRLF lines and blank lines too.
  REQUIRE_THROWS_WITH(read_file(dir.write("bad.csv", "a,b\r\n1,2\r\n\r\n3,4,5\r\n")),
                      Contains("bad.csv:4: expected 2"));
}

TEST_CASE("csv: other delimiters and quote characters", "[df][csv]") {
  scratch_dir dir("delimiters");
  dx::csv_options options;
  options.delimiter = ';';
  options.quote = '\'';
  const std::string path = dir.write("semi.csv", "x;y\n1,5;'a;b'\n2;'it''s'\n");
  options.schema = {{"x", column_type::string}};
  CHECK(read_file(path, options) ==
        table{{"x", std::vector<std::string>{"1,5", "2"}}, {"y", std::vector<std::string>{"a;b", "it's"}}});

  dx::csv_options tabs;
  tabs.delimiter = '\t';
  CHECK(read_file(dir.write("t.tsv", "a\tb\n1\t2.5\n"), tabs) ==
        table{{"a", std::vector<std::int64_t>{1}}, {"b", std::vector<double>{2.5}}});
}

TEST_CASE("csv: only wanted columns are built", "[df][csv]") {
  scratch_dir dir("pruning");
  const std::string path =
      dir.write("p.csv", "a,b,c,d\n1,\"x,y\",2.5,true\n2,\"multi\nline\",garbage-not-read,false\n");
  dx::csv_options options;
  options.inference_bytes = 30;  // the first row: c is float64, yet row 2 has text there
  const df::csv_source source = df::open_csv(path, options);
  REQUIRE(source.types[2] == column_type::float64);
  const table t = read_all(source, 1 << 30, {true, false, false, true}).data;
  CHECK(t == table{{"a", std::vector<std::int64_t>{1, 2}}, {"d", std::vector<bool>{true, false}}});
  CHECK(read_all(source, 1 << 30, {false, true, false, false}).data ==
        table{{"b", std::vector<std::string>{"x,y", "multi\nline"}}});
  REQUIRE_THROWS_WITH(read_all(source, 1 << 30), Contains("p.csv:3: 'garbage-not-read' is not a float64"));
}

TEST_CASE("csv: write_csv quotes what needs quoting", "[df][csv]") {
  const table t{{"name", std::vector<opt_s>{"plain", "a,b", "say \"hi\"", "two\nlines", " padded", std::nullopt, ""}},
                {"n", std::vector<opt_i>{1, -2, std::nullopt, 4, 5, 6, 7}},
                {"f", std::vector<opt_d>{0.1, 3.0, 1e300, -2.5, std::nullopt, 1.0 / 3, 7}},
                {"b", std::vector<opt_b>{true, false, true, std::nullopt, false, true, false}},
                {"t", std::vector<opt_t>{dx::timestamp{jan_1_2024 * ns_per_second},
                                         dx::timestamp{jan_1_2024 * ns_per_second + 1500}, std::nullopt,
                                         dx::timestamp{0}, dx::timestamp{0}, dx::timestamp{0}, dx::timestamp{0}}}};
  std::string out;
  df::write_csv(out, t, {}, true);
  CHECK(out ==
        "name,n,f,b,t\n"
        "plain,1,0.1,true,2024-01-01T00:00:00\n"
        "\"a,b\",-2,3.0,false,2024-01-01T00:00:00.0000015\n"
        "\"say \"\"hi\"\"\",,1e+300,true,\n"
        "\"two\nlines\",4,-2.5,,1970-01-01T00:00:00\n"
        "\" padded\",5,,false,1970-01-01T00:00:00\n"
        ",6,0.3333333333333333,true,1970-01-01T00:00:00\n"
        ",7,7.0,false,1970-01-01T00:00:00\n");

  std::string no_header;
  df::write_csv(no_header, t.head(1), {}, false);
  CHECK(no_header == "plain,1,0.1,true,2024-01-01T00:00:00\n");
}

TEST_CASE("csv: a single column of nulls survives a round trip", "[df][csv]") {
  scratch_dir dir("single_column");
  const table t{{"v", std::vector<opt_i>{1, std::nullopt, 3, std::nullopt}}};
  std::string out;
  df::write_csv(out, t, {}, true);
  CHECK(read_file(dir.write("one.csv", out)) == t);
}

TEST_CASE("csv: unicode strings round trip", "[df][csv]") {
  scratch_dir dir("unicode");
  const table t{{"city", std::vector<std::string>{"Zürich", "東京", "São Paulo, BR", "emoji 😀🚀", "\"Ελλάδα\""}},
                {"größe", std::vector<std::int64_t>{1, 2, 3, 4, 5}}};
  std::string out;
  df::write_csv(out, t, {}, true);
  const std::string path = dir.write("u.csv", out);
  CHECK(read_file(path) == t);
  CHECK(read_file(path, {}, 1) == t);
}

TEST_CASE("csv: random tables round trip through write_csv and split reads", "[df][csv]") {
  scratch_dir dir("round_trip");
  std::mt19937_64 rng(20261123);
  const std::vector<std::string> pieces{"a", "Z", " ", ",", "\"", "\n", "\r", "\r\n", "ü", "東", "😀", "x1", ";"};
  for (int round = 0; round < 12; ++round) {
    const std::size_t rows = 1 + rng() % 300;
    auto is_null = [&] { return rng() % 7 == 0; };
    std::vector<opt_i> ints;
    std::vector<opt_d> doubles;
    std::vector<opt_b> bools;
    std::vector<opt_s> strings;
    std::vector<opt_t> times;
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    for (std::size_t r = 0; r < rows; ++r) {
      // Row 0 holds a value of each type so that inference sees one.
      const bool first = r == 0;
      ints.push_back(!first && is_null() ? opt_i{} : opt_i{static_cast<std::int64_t>(rng())});
      double d = 0;
      switch (rng() % 4) {
        case 0:
          d = unit(rng);
          break;
        case 1:
          d = std::ldexp(unit(rng), static_cast<int>(rng() % 2000) - 1000);
          break;
        case 2:
          d = static_cast<double>(static_cast<std::int64_t>(rng() % 100000) - 50000);
          break;
        default:
          d = std::numeric_limits<double>::infinity() * (rng() % 2 ? 1 : -1);
          break;
      }
      doubles.push_back(!first && is_null() ? opt_d{} : opt_d{d});
      bools.push_back(!first && is_null() ? opt_b{} : opt_b{rng() % 2 == 0});
      std::string s;
      const std::size_t length = first ? 3 : rng() % 8;
      for (std::size_t k = 0; k < length; ++k) s += pieces[rng() % pieces.size()];
      if (first) s += "a";
      strings.push_back(!first && is_null() ? opt_s{} : opt_s{s});
      const std::int64_t ns = static_cast<std::int64_t>(rng() % (4'000'000'000ull * ns_per_second));
      const std::int64_t rounded = rng() % 2 ? ns : ns / ns_per_second * ns_per_second;
      times.push_back(!first && is_null() ? opt_t{} : opt_t{dx::timestamp{rounded}});
    }
    const table original{{"i", ints}, {"d", doubles}, {"b", bools}, {"s", strings}, {"t", times}};

    // An empty string is written as an empty field, which reads back as null.
    std::vector<opt_s> strings_read = strings;
    for (opt_s& s : strings_read)
      if (s && s->empty()) s.reset();
    const table expected{{"i", ints}, {"d", doubles}, {"b", bools}, {"s", strings_read}, {"t", times}};

    std::string out;
    df::write_csv(out, original, {}, true);
    const std::string path = dir.write("round" + std::to_string(round) + ".csv", out);
    const df::csv_source source = df::open_csv(path, {});
    INFO("round " << round << ", " << rows << " rows");
    REQUIRE(source.types == std::vector<column_type>{column_type::int64, column_type::float64, column_type::boolean,
                                                     column_type::string, column_type::timestamp});
    for (const std::size_t target : {1u, 100u, 1000u, 1u << 20}) {
      INFO("target bytes " << target);
      CHECK(read_all(source, target).data == expected);
    }
  }
}

TEST_CASE("csv: files with only a header give an empty table", "[df][csv]") {
  scratch_dir dir("header_only");
  const std::string path = dir.write("h.csv", "a,b\n");
  const df::csv_source source = df::open_csv(path, {});
  CHECK(source.types == std::vector<column_type>{column_type::string, column_type::string});
  const read_result r = read_all(source, 1 << 30);
  CHECK(r.partitions == 1);
  CHECK(r.data.num_rows() == 0);
  CHECK(r.data.column_names() == std::vector<std::string>{"a", "b"});
  REQUIRE_THROWS_WITH(df::open_csv(dir.write("empty.csv", ""), {}), Contains("empty.csv"));
}

TEST_CASE("csv: parse speed of 1M rows of int,double", "[.perf][df][csv]") {
  scratch_dir dir("perf");
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int> key(0, 999);
  std::uniform_real_distribution<double> value(0, 1);
  std::string content = "key,value\n";
  char buffer[64];
  for (int i = 0; i < 1'000'000; ++i) {
    content += std::to_string(key(rng));
    content += ',';
    const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof buffer, value(rng));
    content.append(buffer, ptr);
    content += '\n';
  }
  const std::string path = dir.write("perf.csv", content);
  const df::csv_source source = df::open_csv(path, {});
  REQUIRE(source.types == std::vector<column_type>{column_type::int64, column_type::float64});

  using clock = std::chrono::steady_clock;
  auto ms = [](clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  const auto split_start = clock::now();
  const std::vector<df::csv_range> ranges = df::split_csv(source, 1ull << 40, 1);
  const double split_ms = ms(clock::now() - split_start);
  REQUIRE(ranges.size() == 1);
  double best = 1e9;
  for (int repeat = 0; repeat < 5; ++repeat) {
    const auto start = clock::now();
    const df::csv_read_result r = df::read_csv_range(source, ranges[0], {});
    best = std::min(best, ms(clock::now() - start));
    REQUIRE(r.data.num_rows() == 1'000'000);
  }
  const df::csv_read_result r = df::read_csv_range(source, ranges[0], {});
  const auto write_start = clock::now();
  std::string out;
  df::write_csv(out, r.data, {}, true);
  const double write_ms = ms(clock::now() - write_start);
  std::cout << "csv perf: " << content.size() / 1e6 << " MB, 1M rows int,double: parse " << best << " ms (best of 5), "
            << "split " << split_ms << " ms, write " << write_ms << " ms\n";
}
