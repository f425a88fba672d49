// bench_dataframe.cpp — dx::dataframe on 10,000,000 rows against pandas and dask.dataframe
// (peer.py runs the peers on the same data; run.py interleaves the two).
//
// Usage:
//   dx_bench_dataframe OP DATA_DIR [reps=3]
//     OP is one of
//       groupby      df.groupby({"key"}).agg({{"value", dx::agg::sum}}).compute()
//       filter_mean  df.filter(df["value"] > 0.5).agg({{"value", dx::agg::mean}}).compute()
//       sort         df.sort_values({"value"}).compute()   (the whole sorted table, gathered)
//       read_csv     dx::dataframe::read_csv(cl, DATA_DIR/first_1M.csv).compute()
//       topk         df.nlargest(5, {"value"}).compute()
//       join         df.join(dim, {"key"}).compute()   (inner, materialized)
//       join_agg     df.join(dim, {"key"}) then with_column("vw", value * weight),
//                    groupby({"key"}).agg({{"vw", dx::agg::sum}}).compute()
//     dim is the dimension key 0..999 -> weight = 1 + key / 1000 (one partition).
//     One untimed warm-up, then `reps` timed calls, each checked against a plain loop over the
//     same data.
//   dx_bench_dataframe memory DATA_DIR [groupby|sort]
//     Builds the table, then runs one groupby-sum (or one sort by value, the whole sorted table
//     gathered; reported as op=memory_sort) and reports the process's peak RSS during it
//     (VmHWM, reset after the table is built through /proc/self/clear_refs) against the bytes of
//     the raw columns: extra_over_raw = (peak - RSS after building) / raw bytes, peak_over_raw =
//     the whole process's peak during the groupby / raw bytes. hwm_built_kb is the peak of the
//     loading and building before it.
//
// DATA_DIR holds what `peer.py generate` writes: key.i64 (little-endian int64, uniform in
// [0, 1000)), value.f64 (float64, uniform in [0, 1)), both 10,000,000 values from numpy's
// default_rng(42), and first_1M.csv (the first 1,000,000 rows, pandas to_csv(index=False)).
//
// The cluster is `dx::cluster cl;` (local threads); the dataframe is from_table(cl, table, 0), one
// partition per thread, built once before the timed calls. Each call is timed with
// std::chrono::steady_clock around the whole expression including compute(); the result is
// destroyed after the clock stops. Output: RESULT lines of key=value pairs.

#include <dx/dx.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t num_keys = 1000;
constexpr std::size_t csv_rows = 1'000'000;

using clock_type = std::chrono::steady_clock;

double weight_of(std::size_t key) { return 1.0 + static_cast<double>(key) / 1000.0; }

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "dx_bench_dataframe: %s\n", what.c_str());
  std::exit(2);
}

template <class T>
std::vector<T> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("cannot open " + path + " (run `peer.py generate DATA_DIR` first)");
  const auto bytes = static_cast<std::size_t>(in.tellg());
  if (bytes % sizeof(T) != 0) fail(path + ": size is not a multiple of the element size");
  std::vector<T> values(bytes / sizeof(T));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(bytes));
  if (!in) fail("cannot read " + path);
  return values;
}

// The raw columns and what a plain loop computes from them, for the checks.
struct dataset {
  std::vector<std::int64_t> keys;
  std::vector<double> values;
};

dataset load(const std::string& dir) {
  dataset d{read_raw<std::int64_t>(dir + "/key.i64"), read_raw<double>(dir + "/value.f64")};
  if (d.keys.size() != d.values.size()) fail("key.i64 and value.f64 hold different numbers of rows");
  for (std::int64_t k : d.keys)
    if (k < 0 || k >= static_cast<std::int64_t>(num_keys)) fail("key.i64 holds a key outside [0, 1000)");
  return d;
}

struct reference {
  std::size_t rows = 0;
  std::vector<double> group_sums;           // by key
  std::vector<double> weighted_group_sums;  // by key: value * weight_of(key)
  std::vector<double> top5;                 // the five largest values, largest first
  double total = 0;
  double filtered_mean = 0;
  std::int64_t key_sum = 0;
  std::int64_t csv_key_sum = 0;
  double csv_value_sum = 0;
};

reference reference_of(const dataset& d) {
  reference r;
  r.rows = d.keys.size();
  r.group_sums.assign(num_keys, 0.0);
  r.weighted_group_sums.assign(num_keys, 0.0);
  double filtered_sum = 0;
  std::size_t filtered_rows = 0;
  for (std::size_t i = 0; i < r.rows; ++i) {
    const double v = d.values[i];
    r.group_sums[static_cast<std::size_t>(d.keys[i])] += v;
    r.weighted_group_sums[static_cast<std::size_t>(d.keys[i])] += v * weight_of(static_cast<std::size_t>(d.keys[i]));
    r.total += v;
    r.key_sum += d.keys[i];
    if (v > 0.5) {
      filtered_sum += v;
      ++filtered_rows;
    }
    if (i < csv_rows) {
      r.csv_key_sum += d.keys[i];
      r.csv_value_sum += d.values[i];
    }
  }
  r.filtered_mean = filtered_sum / static_cast<double>(filtered_rows);
  std::vector<double> values = d.values;
  const std::size_t k = std::min<std::size_t>(5, values.size());
  std::partial_sort(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end(), std::greater<>());
  r.top5.assign(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k));
  return r;
}

bool close(double a, double b, double relative) { return std::abs(a - b) <= relative * std::max(std::abs(b), 1.0); }

// ---- the operations: each returns its result table ------------------------------------------------

dx::table run_groupby(const dx::dataframe& df) { return df.groupby({"key"}).agg({{"value", dx::agg::sum}}).compute(); }

dx::table run_filter_mean(const dx::dataframe& df) {
  return df.filter(df["value"] > 0.5).agg({{"value", dx::agg::mean}}).compute();
}

dx::table run_sort(const dx::dataframe& df) { return df.sort_values({"value"}).compute(); }

dx::table run_topk(const dx::dataframe& df) { return df.nlargest(5, {"value"}).compute(); }

dx::table run_join(const dx::dataframe& df, const dx::dataframe& dim) { return df.join(dim, {"key"}).compute(); }

dx::table run_join_agg(const dx::dataframe& df, const dx::dataframe& dim) {
  const dx::dataframe joined = df.join(dim, {"key"});
  return joined.with_column("vw", joined["value"] * joined["weight"])
      .groupby({"key"})
      .agg({{"vw", dx::agg::sum}})
      .compute();
}

// The dimension: key 0..999, weight = 1 + key / 1000.
dx::table dimension_table() {
  std::vector<std::int64_t> keys(num_keys);
  std::vector<double> weights(num_keys);
  for (std::size_t k = 0; k < num_keys; ++k) {
    keys[k] = static_cast<std::int64_t>(k);
    weights[k] = weight_of(k);
  }
  return dx::table{{"key", dx::column(std::move(keys))}, {"weight", dx::column(std::move(weights))}};
}

// ---- the checks: an empty string when the result is right ----------------------------------------

std::string check_groupby(const dx::table& t, const reference& ref) {
  if (t.num_rows() != num_keys) return "groupby: " + std::to_string(t.num_rows()) + " groups, expected 1000";
  const dx::column& keys = t["key"];
  const dx::column& sums = t["value_sum"];
  double sum_of_sums = 0;
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    const std::int64_t k = keys.int64_at(i);
    if (k != static_cast<std::int64_t>(i)) return "groupby: keys not 0..999 in order";
    const double s = sums.float64_at(i);
    if (!close(s, ref.group_sums[i], 1e-9)) return "groupby: the sum of key " + std::to_string(k) + " differs";
    sum_of_sums += s;
  }
  if (!close(sum_of_sums, ref.total, 1e-9)) return "groupby: the sum of the sums is not the total";
  return {};
}

std::string check_filter_mean(const dx::table& t, const reference& ref) {
  if (t.num_rows() != 1) return "filter_mean: " + std::to_string(t.num_rows()) + " rows, expected 1";
  const double m = t["value_mean"].float64_at(0);
  if (!close(m, ref.filtered_mean, 1e-12)) return "filter_mean: " + std::to_string(m) + " is not the plain loop's mean";
  return {};
}

std::string check_sort(const dx::table& t, const reference& ref) {
  if (t.num_rows() != ref.rows) return "sort: " + std::to_string(t.num_rows()) + " rows";
  const dx::column& values = t["value"];
  const dx::column& keys = t["key"];
  const double* v = values.float64_data();
  const std::int64_t* k = keys.int64_data();
  if (v == nullptr || k == nullptr) return "sort: unexpected column types";
  if (!std::is_sorted(v, v + t.num_rows())) return "sort: values are not in ascending order";
  double total = 0;
  std::int64_t key_sum = 0;
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    total += v[i];
    key_sum += k[i];
  }
  if (key_sum != ref.key_sum || !close(total, ref.total, 1e-9)) return "sort: the rows are not a permutation";
  return {};
}

std::string check_topk(const dx::table& t, const reference& ref) {
  if (t.num_rows() != ref.top5.size()) return "topk: " + std::to_string(t.num_rows()) + " rows";
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    if (t["value"].float64_at(i) != ref.top5[i]) return "topk: row " + std::to_string(i) + " is not the plain loop's";
  }
  return {};
}

std::string check_join(const dx::table& t, const reference& ref) {
  if (t.num_rows() != ref.rows) return "join: " + std::to_string(t.num_rows()) + " rows";
  const std::int64_t* k = t["key"].int64_data();
  const double* w = t["weight"].float64_data();
  if (k == nullptr || w == nullptr || t["value"].float64_data() == nullptr) return "join: unexpected column types";
  std::int64_t key_sum = 0;
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    key_sum += k[i];
    if (w[i] != weight_of(static_cast<std::size_t>(k[i]))) return "join: a row has another key's weight";
  }
  if (key_sum != ref.key_sum) return "join: the rows are not the left side's";
  return {};
}

std::string check_join_agg(const dx::table& t, const reference& ref) {
  if (t.num_rows() != num_keys) return "join_agg: " + std::to_string(t.num_rows()) + " groups, expected 1000";
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    if (t["key"].int64_at(i) != static_cast<std::int64_t>(i)) return "join_agg: keys not 0..999 in order";
    if (!close(t["vw_sum"].float64_at(i), ref.weighted_group_sums[i], 1e-9))
      return "join_agg: the sum of key " + std::to_string(i) + " differs";
  }
  return {};
}

// Counts the parsed values that are not bit-identical to the generated ones (pandas writes them
// with repr, so a correctly rounded parser reads them back exactly).
std::size_t inexact_csv_values(const dx::table& t, const dataset& d) {
  const dx::column& values = t["value"];
  std::size_t inexact = 0;
  for (std::size_t i = 0; i < t.num_rows() && i < d.values.size(); ++i)
    if (values.float64_at(i) != d.values[i]) ++inexact;
  return inexact;
}

std::string check_read_csv(const dx::table& t, const reference& ref) {
  if (t.num_rows() != csv_rows) return "read_csv: " + std::to_string(t.num_rows()) + " rows, expected 1000000";
  const dx::column& keys = t["key"];
  const dx::column& values = t["value"];
  if (keys.type() != dx::column_type::int64 || values.type() != dx::column_type::float64)
    return "read_csv: inferred types are not int64, float64";
  std::int64_t key_sum = 0;
  double value_sum = 0;
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    key_sum += keys.int64_at(i);
    value_sum += values.float64_at(i);
  }
  if (key_sum != ref.csv_key_sum) return "read_csv: the keys differ from the first 1,000,000 generated";
  if (!close(value_sum, ref.csv_value_sum, 1e-9)) return "read_csv: the values differ from the generated ones";
  return {};
}

// ---- memory ----------------------------------------------------------------------------------------

long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return std::strtol(line.c_str() + prefix.size(), nullptr, 10);
  return -1;
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

int memory_mode(const std::string& dir, const std::string& of) {
  if (of != "groupby" && of != "sort") fail("memory: unknown operation '" + of + "' (groupby, sort)");
  dx::cluster cl;
  dataset data = load(dir);
  const std::size_t rows = data.keys.size();
  const std::size_t raw_bytes = rows * (sizeof(std::int64_t) + sizeof(double));
  dx::table table{{"key", dx::column(std::move(data.keys))}, {"value", dx::column(std::move(data.values))}};
  dx::dataframe df = dx::dataframe::from_table(cl, table, 0);
  const long rss_built_kb = status_kb("VmRSS");
  const long hwm_built_kb = status_kb("VmHWM");
  const bool reset = reset_peak_rss();
  const long hwm_before_kb = status_kb("VmHWM");
  const auto start = clock_type::now();
  dx::table result = of == "sort" ? run_sort(df) : run_groupby(df);
  const double seconds = seconds_since(start);
  const long hwm_kb = status_kb("VmHWM");
  const long rss_after_kb = status_kb("VmRSS");
  const std::size_t want_rows = of == "sort" ? rows : num_keys;
  if (result.num_rows() != want_rows) fail("memory: " + of + " gave " + std::to_string(result.num_rows()) + " rows");
  const double raw_kb = static_cast<double>(raw_bytes) / 1024.0;
  std::printf(
      "RESULT system=dx op=%s rows=%zu raw_bytes=%zu rss_built_kb=%ld hwm_reset=%d hwm_before_kb=%ld "
      "hwm_kb=%ld rss_after_kb=%ld hwm_built_kb=%ld extra_over_raw=%.4f peak_over_raw=%.4f seconds=%.4f\n",
      of == "sort" ? "memory_sort" : "memory", rows, raw_bytes, rss_built_kb, reset ? 1 : 0, hwm_before_kb, hwm_kb,
      rss_after_kb, hwm_built_kb, static_cast<double>(hwm_kb - rss_built_kb) / raw_kb,
      static_cast<double>(hwm_kb) / raw_kb, seconds);
  return 0;
}

// ---- timed operations ------------------------------------------------------------------------------

int timed_mode(const std::string& op, const std::string& dir, int reps) {
  dx::cluster cl;
  const auto load_start = clock_type::now();
  dataset data = load(dir);
  const reference ref = reference_of(data);
  const std::size_t rows = data.keys.size();

  std::function<dx::table()> call;
  std::function<std::string(const dx::table&)> check;
  std::optional<dx::dataframe> df, dim;
  std::size_t op_rows = rows;
  if (op == "read_csv") {
    if (rows < csv_rows) fail("read_csv needs at least 1,000,000 generated rows");
    const std::string path = dir + "/first_1M.csv";
    call = [&cl, path] { return dx::dataframe::read_csv(cl, path).compute(); };
    check = [&ref](const dx::table& t) { return check_read_csv(t, ref); };
    op_rows = csv_rows;
  } else {
    dx::table table{{"key", dx::column(std::move(data.keys))}, {"value", dx::column(std::move(data.values))}};
    df.emplace(dx::dataframe::from_table(cl, std::move(table), 0));
    dim.emplace(dx::dataframe::from_table(cl, dimension_table(), 1));
    if (op == "groupby") {
      call = [&df] { return run_groupby(*df); };
      check = [&ref](const dx::table& t) { return check_groupby(t, ref); };
    } else if (op == "filter_mean") {
      call = [&df] { return run_filter_mean(*df); };
      check = [&ref](const dx::table& t) { return check_filter_mean(t, ref); };
    } else if (op == "sort") {
      call = [&df] { return run_sort(*df); };
      check = [&ref](const dx::table& t) { return check_sort(t, ref); };
    } else if (op == "topk") {
      call = [&df] { return run_topk(*df); };
      check = [&ref](const dx::table& t) { return check_topk(t, ref); };
    } else if (op == "join") {
      call = [&df, &dim] { return run_join(*df, *dim); };
      check = [&ref](const dx::table& t) { return check_join(t, ref); };
    } else if (op == "join_agg") {
      call = [&df, &dim] { return run_join_agg(*df, *dim); };
      check = [&ref](const dx::table& t) { return check_join_agg(t, ref); };
    } else {
      fail("unknown operation '" + op + "' (groupby, filter_mean, sort, read_csv, topk, join, join_agg, memory)");
    }
  }
  std::printf("RESULT system=dx op=%s phase=setup rows=%zu partitions=%zu threads=%zu load_s=%.4f\n", op.c_str(), rows,
              df ? df->num_partitions() : std::size_t{0}, cl.local().num_threads(), seconds_since(load_start));
  std::fflush(stdout);

  {
    const dx::table warm = call();
    if (std::string err = check(warm); !err.empty()) fail(err);
    if (op == "read_csv") {
      std::printf("RESULT system=dx op=read_csv phase=exactness inexact_values=%zu\n", inexact_csv_values(warm, data));
    }
  }
  for (int rep = 1; rep <= reps; ++rep) {
    dx::table result;
    const auto start = clock_type::now();
    result = call();
    const double seconds = seconds_since(start);
    const std::string err = check(result);
    if (!err.empty()) fail(err);
    std::printf("RESULT system=dx op=%s phase=timed rep=%d rows=%zu seconds=%.6f\n", op.c_str(), rep, op_rows, seconds);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s groupby|filter_mean|sort|read_csv|topk|join|join_agg DATA_DIR [reps=3]\n"
                 "       %s memory DATA_DIR [groupby|sort]\n",
                 argv[0], argv[0]);
    return 2;
  }
  const std::string op = argv[1];
  const std::string dir = argv[2];
  const int reps = argc > 3 ? std::atoi(argv[3]) : 3;
  try {
    if (op == "memory") return memory_mode(dir, argc > 3 ? argv[3] : "groupby");
    return timed_mode(op, dir, std::max(reps, 1));
  } catch (const std::exception& e) {
    fail(std::string(op) + ": " + e.what());
  }
}
