// Tests of dx::cost_model: learning, interpolation, outliers and regime changes, fallbacks, worker
// speed factors, transfers, accuracy records and persistence.
#include <dx/cost_model.hpp>
#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include "model/cost_model_impl.hpp"
#include "temp_dir.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace {

namespace fs = std::filesystem;

/// The duration law of the synthetic kinds: t = 0.001 * size^0.8.
double power_law(double size) { return 0.001 * std::pow(size, 0.8); }

/// Multiplicative noise with a 5% spread, from a fixed seed.
class noise {
 public:
  explicit noise(std::uint64_t seed, double sigma = 0.05) : rng_(seed), dist_(0.0, sigma) {}
  double operator()() { return std::exp(dist_(rng_)); }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
  std::normal_distribution<double> dist_;
};

dx::task_features bytes(std::uint64_t n) { return {.input_bytes = n}; }
dx::task_features sized(double size) { return {.size_hint = size}; }

void observe(dx::cost_model& m, std::string_view kind, std::string_view worker, const dx::task_features& f,
             double seconds, std::string_view worker_class = "default") {
  m.observe({.kind = kind, .worker = worker, .worker_class = worker_class, .features = f, .seconds = seconds});
}

/// A directory of its own for a test, removed afterwards.
struct temp_dir : dx_support::temp_dir {
  temp_dir() : dx_support::temp_dir("dx_cost_model_test") {}
};

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

/// Bucket statistics as written by save(): (kind, class, bucket) -> fields after the key.
struct bucket_line {
  std::uint64_t count = 0;
  double mean = 0, m2 = 0, ema = 0;
  std::uint64_t rejected = 0;
  double min_size = 0, max_size = 0, log_size = 0;
};
std::map<std::tuple<std::string, std::string, int>, bucket_line> bucket_lines(const fs::path& p) {
  std::map<std::tuple<std::string, std::string, int>, bucket_line> out;
  for (const std::string& line : read_lines(p)) {
    const auto t = split(line);
    if (t.empty() || t[0] != "bucket") continue;
    REQUIRE(t.size() == 12);
    out[{t[1], t[2], std::stoi(t[3])}] = {std::stoull(t[4]), std::stod(t[5]), std::stod(t[6]),  std::stod(t[7]),
                                          std::stoull(t[8]), std::stod(t[9]), std::stod(t[10]), std::stod(t[11])};
  }
  return out;
}

/// Sets or unsets an environment variable for a scope, restoring the old value after.
class env_override {
 public:
  env_override(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~env_override() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  env_override(const env_override&) = delete;
  env_override& operator=(const env_override&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// What load() throws as dx::error, or a marker when it throws nothing.
std::string load_error(dx::cost_model& m, const fs::path& p) {
  try {
    m.load(p);
  } catch (const dx::error& e) {
    return e.what();
  }
  return "<no exception>";
}

double relative_error(double predicted, double actual) { return std::abs(predicted - actual) / actual; }

}  // namespace

TEST_CASE("a power-law kind is learned to within 10% after 20 samples per bucket", "[cost_model]") {
  dx::cost_model m;
  noise n(42);
  std::uniform_real_distribution<double> within(0.0, 1.0);
  // 20 runs in each of the buckets 2^10 .. 2^19, sizes spread over each bucket, in shuffled order.
  std::vector<std::uint64_t> sizes;
  for (int b = 10; b < 20; ++b) {
    for (int i = 0; i < 20; ++i) sizes.push_back(static_cast<std::uint64_t>(std::exp2(b + within(n.rng()))));
  }
  std::shuffle(sizes.begin(), sizes.end(), n.rng());
  for (const std::uint64_t s : sizes) observe(m, "power", "w1", bytes(s), power_law(static_cast<double>(s)) * n());

  double total_ape = 0;
  int runs = 0;
  for (int i = 0; i < 500; ++i) {
    const auto s = static_cast<std::uint64_t>(std::exp2(10 + 10 * within(n.rng())));
    const dx::prediction p = m.predict("power", "w1", bytes(s));
    REQUIRE(p.calibrated);
    REQUIRE(p.sd > 0);
    total_ape += relative_error(p.mean, power_law(static_cast<double>(s)) * n());
    ++runs;
  }
  CHECK(total_ape / runs < 0.10);
  CHECK(m.calibrated("power"));
  CHECK_FALSE(m.calibrated("power", "gpu"));
}

TEST_CASE("the log-log fit interpolates between buckets and extrapolates, uncalibrated, outside them", "[cost_model]") {
  dx::cost_model m;
  for (int i = 0; i < 5; ++i) {
    observe(m, "k", "w", sized(1000), power_law(1000));
    observe(m, "k", "w", sized(64000), power_law(64000));
  }

  SECTION("inside the sizes seen the fit is used and is calibrated") {
    const dx::prediction p = m.predict_kind("k", sized(8000));  // bucket 12: never seen
    CHECK(p.calibrated);
    CHECK(relative_error(p.mean, power_law(8000)) < 0.01);
    CHECK(p.samples == 10);
  }
  SECTION("a calibrated bucket follows the fitted slope within its span") {
    const dx::prediction p = m.predict_kind("k", sized(600));  // bucket 9 holds size 1000
    CHECK(p.calibrated);
    CHECK(relative_error(p.mean, power_law(600)) < 0.01);
  }
  SECTION("outside the sizes seen the nearest calibrated bucket is extrapolated, uncalibrated") {
    const dx::prediction big = m.predict_kind("k", sized(1e6));
    CHECK_FALSE(big.calibrated);
    CHECK(relative_error(big.mean, power_law(1e6)) < 0.01);
    CHECK(big.sd == big.mean);
    const dx::prediction small = m.predict_kind("k", sized(10));
    CHECK_FALSE(small.calibrated);
    CHECK(relative_error(small.mean, power_law(10)) < 0.01);
  }
  SECTION("the extrapolated exponent is bounded") {
    dx::cost_model steep;  // t = size^5: beyond cubic, a fit artefact more likely than a real law
    for (int i = 0; i < 5; ++i) {
      observe(steep, "k", "w", sized(4), std::pow(4.0, 5) * 1e-6);
      observe(steep, "k", "w", sized(8), std::pow(8.0, 5) * 1e-6);
    }
    const double at_8 = steep.predict_kind("k", sized(8)).mean;
    CHECK(steep.predict_kind("k", sized(64)).mean == Approx(at_8 * std::pow(8.0, 3)).epsilon(1e-9));
  }
  SECTION("with one bucket only there is no slope: that bucket's mean") {
    dx::cost_model one;
    for (int i = 0; i < 5; ++i) observe(one, "k", "w", sized(1000), 0.25);
    const dx::prediction p = one.predict_kind("k", sized(1e6));
    CHECK_FALSE(p.calibrated);
    CHECK(p.mean == Approx(0.25));
  }
}

TEST_CASE("a far sample is rejected once a bucket has 10 samples, and scattered outliers do not reset it",
          "[cost_model]") {
  dx::cost_model m;
  for (int i = 0; i < 20; ++i) observe(m, "k", "w", bytes(100), 1.0 + 0.01 * (i % 3 - 1));
  const dx::prediction before = m.predict_kind("k", bytes(100));
  REQUIRE(before.samples == 20);

  observe(m, "k", "w", bytes(100), 10.0);
  observe(m, "k", "w", bytes(100), 0.3);
  const dx::prediction after = m.predict_kind("k", bytes(100));
  CHECK(after.samples == 20);
  CHECK(after.mean == before.mean);

  observe(m, "k", "w", bytes(100), 1.0);
  CHECK(m.predict_kind("k", bytes(100)).samples == 21);

  // One run in five is ten times slower: rejected, but never enough to restart the bucket.
  for (int i = 0; i < 200; ++i) observe(m, "k", "w", bytes(100), i % 5 == 4 ? 10.0 : 1.0);
  const dx::prediction mixed = m.predict_kind("k", bytes(100));
  CHECK(mixed.samples == 21 + 160);
  CHECK(mixed.mean == Approx(1.0).epsilon(0.02));
}

TEST_CASE("the first samples are never rejected", "[cost_model]") {
  dx::cost_model m;
  // Uncalibrated throughout, so the worker's factor stays 1 and the bucket holds the raw samples.
  m.set_min_samples(10);
  observe(m, "k", "w", bytes(100), 5.0);
  for (int i = 0; i < 4; ++i) observe(m, "k", "w", bytes(100), 1.0);
  const dx::prediction p = m.predict_kind("k", bytes(100));
  CHECK(p.samples == 5);
  CHECK(p.mean == Approx(9.0 / 5));
}

TEST_CASE("a sustained change of regime restarts the bucket and predictions follow", "[cost_model]") {
  dx::cost_model m;
  for (int i = 0; i < 50; ++i) observe(m, "k", "w", bytes(4096), 1.0 + 0.01 * (i % 3 - 1));
  REQUIRE(m.predict_kind("k", bytes(4096)).mean == Approx(1.0).epsilon(0.01));

  // Durations double: nine rejections, the tenth restarts the bucket, two more calibrate it.
  for (int i = 0; i < 9; ++i) observe(m, "k", "w", bytes(4096), 2.0 + 0.01 * (i % 3 - 1));
  CHECK(m.predict_kind("k", bytes(4096)).mean == Approx(1.0).epsilon(0.01));
  for (int i = 0; i < 3; ++i) observe(m, "k", "w", bytes(4096), 2.0);
  const dx::prediction p = m.predict_kind("k", bytes(4096));
  CHECK(p.calibrated);
  CHECK(p.samples == 3);
  CHECK(p.mean == Approx(2.0).epsilon(0.01));

  for (int i = 0; i < 30; ++i) observe(m, "k", "w", bytes(4096), 2.0 + 0.02 * (i % 3 - 1));
  CHECK(m.predict_kind("k", bytes(4096)).mean == Approx(2.0).epsilon(0.02));
}

TEST_CASE("a slow drift is followed by the EMA", "[cost_model]") {
  dx::cost_model m;
  // Nothing calibrated, so no worker factor takes the drift up: the bucket alone must follow it.
  m.set_min_samples(1000);
  for (int i = 0; i < 200; ++i) observe(m, "k", "w", bytes(64), 1.0 + 0.01 * (i % 3 - 1));
  // 1% slower per run for 30 runs: never an outlier, but the long-run mean lags far behind.
  double t = 1.0;
  for (int i = 0; i < 30; ++i) observe(m, "k", "w", bytes(64), t *= 1.01);
  CHECK(relative_error(m.predict_kind("k", bytes(64)).mean, t) < 0.05);
}

TEST_CASE("fallbacks: own samples, then another class's, then the default", "[cost_model]") {
  dx::cost_model m;
  dx::prediction p = m.predict_kind("k", bytes(10));
  CHECK(p.mean == 0.5);
  CHECK(p.sd == p.mean);
  CHECK_FALSE(p.calibrated);
  CHECK(p.samples == 0);

  m.set_default_duration(2.0);
  CHECK(m.predict_kind("k", bytes(10)).mean == 2.0);
  CHECK(m.predict("k", "w", bytes(10)).mean == 2.0);

  for (int i = 0; i < 5; ++i) observe(m, "k", "g1", bytes(10), 0.1, "gpu");
  p = m.predict_kind("k", bytes(10), "cpu");
  CHECK(p.mean == Approx(0.1));
  CHECK(p.sd == p.mean);
  CHECK_FALSE(p.calibrated);
  CHECK(p.samples == 5);
  CHECK(m.predict_kind("k", bytes(10), "no such class").mean == Approx(0.1));

  observe(m, "k", "c1", bytes(10), 0.4, "cpu");
  p = m.predict_kind("k", bytes(10), "cpu");
  CHECK(p.mean == Approx(0.4));
  CHECK(p.sd == p.mean);
  CHECK_FALSE(p.calibrated);
  CHECK(p.samples == 1);
  CHECK_FALSE(m.calibrated("k", "cpu"));

  observe(m, "k", "c1", bytes(10), 0.4, "cpu");
  observe(m, "k", "c1", bytes(10), 0.4, "cpu");
  p = m.predict_kind("k", bytes(10), "cpu");
  CHECK(p.calibrated);
  CHECK(p.mean == Approx(0.4));
  CHECK(m.calibrated("k", "cpu"));

  m.set_min_samples(5);
  CHECK_FALSE(m.calibrated("k", "cpu"));
  CHECK_FALSE(m.predict_kind("k", bytes(10), "cpu").calibrated);
  CHECK(m.calibrated("k", "gpu"));

  CHECK(m.predict_kind("other kind", bytes(10), "cpu").mean == 2.0);
}

TEST_CASE("worker speed factors: a slow worker is learned and does not inflate its class", "[cost_model]") {
  dx::cost_model m;
  noise n(7);
  const double t = 0.2;
  for (int i = 0; i < 30; ++i) observe(m, "k", "w1", bytes(1000), t * n());
  for (int i = 0; i < 40; ++i) {
    observe(m, "k", "w1", bytes(1000), t * n());
    observe(m, "k", "slow", bytes(1000), 3 * t * n());
  }
  CHECK(m.worker_factor("slow") == Approx(3.0).epsilon(0.10));
  CHECK(m.worker_factor("slow") / m.worker_factor("w1") == Approx(3.0).epsilon(0.10));
  CHECK(m.worker_factor("never seen") == 1.0);
  CHECK(m.predict_kind("k", bytes(1000)).mean == Approx(t).epsilon(0.10));
  CHECK(m.predict("k", "slow", bytes(1000)).mean == Approx(3 * t).epsilon(0.10));
  CHECK(m.predict("k", "w1", bytes(1000)).mean == Approx(t).epsilon(0.10));
  const dx::prediction slow = m.predict("k", "slow", bytes(1000));
  const dx::prediction cls = m.predict_kind("k", bytes(1000));
  CHECK(slow.sd == Approx(cls.sd * m.worker_factor("slow")));
  CHECK(m.predict("k", "never seen", bytes(1000)).mean == cls.mean);

  // The factor is the worker's, across kinds: a kind learned on w1 only is predicted slow there.
  for (int i = 0; i < 10; ++i) observe(m, "k2", "w1", bytes(1000), 0.05);
  CHECK(m.predict("k2", "slow", bytes(1000)).mean == Approx(0.05 * m.worker_factor("slow")).epsilon(0.10));

  // Factors are bounded.
  for (int i = 0; i < 20; ++i) {
    observe(m, "k", "w1", bytes(1000), t * n());
    observe(m, "k", "stuck", bytes(1000), 1000 * t);
  }
  CHECK(m.worker_factor("stuck") == 64.0);
  CHECK(m.predict_kind("k", bytes(1000)).mean == Approx(t).epsilon(0.10));
}

TEST_CASE("a mildly slow worker, never an outlier, does not inflate its class either", "[cost_model]") {
  dx::cost_model m;
  noise n(13);
  const double t = 0.2;
  for (int i = 0; i < 30; ++i) observe(m, "k", "w1", bytes(1000), t * n());
  for (int i = 0; i < 60; ++i) {
    observe(m, "k", "w1", bytes(1000), t * n());
    observe(m, "k", "slower", bytes(1000), 1.4 * t * n());
  }
  CHECK(m.worker_factor("slower") / m.worker_factor("w1") == Approx(1.4).epsilon(0.05));
  CHECK(m.predict_kind("k", bytes(1000)).mean == Approx(t).epsilon(0.05));
  CHECK(m.predict("k", "slower", bytes(1000)).mean == Approx(1.4 * t).epsilon(0.05));
}

TEST_CASE("a change is blamed on the worker or on the kind, whichever all samples point at", "[cost_model]") {
  dx::cost_model m;
  noise n(17);
  const double ta = 0.1, tb = 0.3;
  const auto round = [&](double a_on_w1, double a_on_w2, double b_on_w1, double b_on_w2) {
    observe(m, "a", "w1", bytes(1000), a_on_w1 * n());
    observe(m, "a", "w2", bytes(1000), a_on_w2 * n());
    observe(m, "b", "w1", bytes(1000), b_on_w1 * n());
    observe(m, "b", "w2", bytes(1000), b_on_w2 * n());
  };
  for (int i = 0; i < 30; ++i) round(ta, ta, tb, tb);

  SECTION("one worker slows down for every kind: its factor restarts, the classes stay") {
    for (int i = 0; i < 30; ++i) round(ta, 2 * ta, tb, 2 * tb);
    CHECK(m.worker_factor("w2") / m.worker_factor("w1") == Approx(2.0).epsilon(0.10));
    CHECK(m.predict("a", "w2", bytes(1000)).mean == Approx(2 * ta).epsilon(0.10));
    CHECK(m.predict("b", "w2", bytes(1000)).mean == Approx(2 * tb).epsilon(0.10));
    CHECK(m.predict("a", "w1", bytes(1000)).mean == Approx(ta).epsilon(0.10));
    CHECK(m.predict_kind("b", bytes(1000)).samples > 60);  // no restart of the class
  }
  SECTION("one kind slows down on every worker: its bucket restarts, the factors stay") {
    const double w1 = m.worker_factor("w1"), w2 = m.worker_factor("w2");
    for (int i = 0; i < 30; ++i) round(2 * ta, 2 * ta, tb, tb);
    CHECK(m.worker_factor("w1") == Approx(w1).epsilon(0.05));
    CHECK(m.worker_factor("w2") == Approx(w2).epsilon(0.05));
    CHECK(m.predict("a", "w1", bytes(1000)).mean == Approx(2 * ta).epsilon(0.10));
    CHECK(m.predict("a", "w2", bytes(1000)).mean == Approx(2 * ta).epsilon(0.10));
    CHECK(m.predict("b", "w2", bytes(1000)).mean == Approx(tb).epsilon(0.10));
    CHECK(m.predict_kind("a", bytes(1000)).samples < 60);  // restarted
  }
}

TEST_CASE("workers slow from the start still get their ratio right", "[cost_model]") {
  dx::cost_model m;
  noise n(11);
  for (int i = 0; i < 60; ++i) {
    observe(m, "k", "fast", bytes(1000), 0.1 * n());
    observe(m, "k", "slow", bytes(1000), 0.3 * n());
  }
  CHECK(m.worker_factor("slow") / m.worker_factor("fast") == Approx(3.0).epsilon(0.10));
  CHECK(m.predict("k", "fast", bytes(1000)).mean == Approx(0.1).epsilon(0.10));
  CHECK(m.predict("k", "slow", bytes(1000)).mean == Approx(0.3).epsilon(0.10));
}

TEST_CASE("transfers: latency plus bytes over bandwidth, per link, then cluster-wide, then defaults", "[cost_model]") {
  dx::cost_model m;
  dx::prediction p = m.predict_transfer("a", "b", 100'000'000);
  CHECK(p.mean == Approx(200e-6 + 1.0));
  CHECK(p.sd == Approx(0.25 * p.mean));
  CHECK_FALSE(p.calibrated);
  CHECK(m.predict_transfer("a", "b", 0).mean == 0);
  CHECK(m.predict_transfer("a", "a", 1'000'000).mean == 0);

  for (int i = 0; i < 5; ++i) m.observe_transfer("a", "b", 1000, 0.001);
  for (int i = 0; i < 5; ++i) m.observe_transfer("a", "b", 10'000'000, 0.001 + 10e6 / 200e6);
  m.observe_transfer("a", "b", 256 * 1024, 5.0);  // mid-sized: teaches neither latency nor bandwidth
  p = m.predict_transfer("a", "b", 50'000'000);
  CHECK(p.calibrated);
  CHECK(p.mean == Approx(0.001 + 0.25));
  CHECK(p.sd == Approx(0.25 * p.mean));
  CHECK(p.samples == 10);

  // A link never measured uses the cluster-wide averages.
  CHECK(m.predict_transfer("c", "d", 50'000'000).mean == Approx(0.001 + 0.25));
  CHECK(m.predict_transfer("b", "a", 50'000'000).calibrated);

  // After its first samples the bandwidth moves as Dask's: 0.95 old + 0.05 new.
  for (int i = 0; i < 25; ++i) m.observe_transfer("x", "y", 10'000'000, 0.001 + 10e6 / 200e6);
  const double before = m.predict_transfer("x", "y", 100'000'000).mean;
  m.observe_transfer("x", "y", 10'000'000, 0.001 + 10e6 / 100e6);
  const double bandwidth = 0.95 * 200e6 + 0.05 * 100e6;
  CHECK(before == Approx(0.001 + 100e6 / 200e6));
  CHECK(m.predict_transfer("x", "y", 100'000'000).mean == Approx(0.001 + 100e6 / bandwidth));
}

TEST_CASE("save and load round-trip every prediction exactly, whatever the names", "[cost_model]") {
  temp_dir dir;
  const fs::path path = dir.path() / "nested" / "dirs" / "model.txt";
  dx::cost_model m;
  noise n(3);
  const std::vector<std::string> kinds = {"fft", "with space", "100%", "new\nline", "caf\xc3\xa9", "", "tab\there"};
  const std::vector<std::string> workers = {"w 1", "w%2", ""};
  for (const std::string& kind : kinds) {
    for (int i = 0; i < 40; ++i) {
      const auto size = static_cast<std::uint64_t>(1000 * (1 + i % 7) * (1 + i % 3));
      const std::string& worker = workers[i % workers.size()];
      observe(m, kind, worker, bytes(size), power_law(static_cast<double>(size)) * n() * (1 + (i % 3 == 1)),
              i % 2 ? "default" : "big class");
    }
  }
  m.observe_transfer("w 1", "w%2", 100, 0.0003);
  m.observe_transfer("w 1", "w%2", 5'000'000, 0.05);
  m.save(path);
  REQUIRE(read_lines(path).at(0) == "dx-cost-model 1");

  dx::cost_model loaded;
  REQUIRE(loaded.load(path));
  for (const std::string& kind : kinds) {
    for (const char* cls : {"default", "big class", "unknown"}) {
      for (const double size : {0.0, 500.0, 3000.0, 12345.0, 1e7}) {
        for (const std::string& worker : workers) {
          const dx::prediction a = m.predict(kind, worker, bytes(static_cast<std::uint64_t>(size)), cls);
          const dx::prediction b = loaded.predict(kind, worker, bytes(static_cast<std::uint64_t>(size)), cls);
          CHECK(a.mean == b.mean);
          CHECK(a.sd == b.sd);
          CHECK(a.calibrated == b.calibrated);
          CHECK(a.samples == b.samples);
        }
      }
    }
  }
  for (const std::string& worker : workers) CHECK(m.worker_factor(worker) == loaded.worker_factor(worker));
  CHECK(m.predict_transfer("w 1", "w%2", 1 << 24).mean == loaded.predict_transfer("w 1", "w%2", 1 << 24).mean);
  CHECK(m.predict_transfer("p", "q", 1 << 24).mean == loaded.predict_transfer("p", "q", 1 << 24).mean);
}

TEST_CASE("load then save adds only the new samples to the file", "[cost_model]") {
  temp_dir dir;
  const fs::path path = dir.path() / "model.txt";
  {
    dx::cost_model first;
    for (int i = 0; i < 10; ++i) observe(first, "k", "w", bytes(100), 1.0);
    first.save(path);
  }
  dx::cost_model second;
  REQUIRE(second.load(path));
  observe(second, "k", "w", bytes(100), 1.0);
  second.save(path);
  second.save(path);  // nothing new since: the file does not change

  dx::cost_model third;
  REQUIRE(third.load(path));
  CHECK(third.predict_kind("k", bytes(100)).samples == 11);
}

TEST_CASE("merging two models equals one model fed both sample sets", "[cost_model]") {
  // While factors are learned, the class statistics depend on the order of the samples, so they
  // are kept out of this comparison: with min_samples that high nothing is calibrated and every
  // factor stays 1.
  dx::cost_model a, b, both;
  for (dx::cost_model* m : {&a, &b, &both}) m->set_min_samples(1'000'000);
  noise n(5);
  std::vector<std::tuple<std::string, std::uint64_t, double>> first, second;
  for (int i = 0; i < 60; ++i) {
    const auto size = static_cast<std::uint64_t>(500 * (1 + i % 9));
    first.emplace_back(i % 2 ? "x" : "y", size, power_law(static_cast<double>(size)) * n());
    second.emplace_back(i % 3 ? "x" : "z", size + 7, power_law(static_cast<double>(size + 7)) * n());
  }
  for (const auto& [kind, size, t] : first) {
    observe(a, kind, "w", bytes(size), t);
    observe(both, kind, "w", bytes(size), t);
  }
  for (const auto& [kind, size, t] : second) {
    observe(b, kind, "w", bytes(size), t);
    observe(both, kind, "w", bytes(size), t);
  }
  a.merge(b);

  temp_dir dir;
  a.save(dir.path() / "merged.txt");
  both.save(dir.path() / "both.txt");
  const auto merged = bucket_lines(dir.path() / "merged.txt");
  const auto expected = bucket_lines(dir.path() / "both.txt");
  REQUIRE(merged.size() == expected.size());
  REQUIRE(merged.size() >= 6);
  for (const auto& [key, e] : expected) {
    INFO(std::get<0>(key) << " bucket " << std::get<2>(key));
    REQUIRE(merged.count(key));
    const bucket_line& got = merged.at(key);
    CHECK(got.count == e.count);
    CHECK(got.mean == Approx(e.mean).epsilon(1e-12));
    CHECK(got.m2 == Approx(e.m2).epsilon(1e-9).margin(1e-300));
    CHECK(got.rejected == e.rejected);
    CHECK(got.min_size == e.min_size);
    CHECK(got.max_size == e.max_size);
    CHECK(got.log_size == Approx(e.log_size).epsilon(1e-12));
  }
  a.set_min_samples(3);
  both.set_min_samples(3);
  CHECK(a.predict_kind("x", bytes(1500)).samples == both.predict_kind("x", bytes(1500)).samples);
  CHECK(a.calibrated("z") == both.calibrated("z"));
}

TEST_CASE("two models saved to one file in turn leave both contributions", "[cost_model]") {
  temp_dir dir;
  const fs::path path = dir.path() / "shared.txt";
  dx::cost_model a, b;
  for (int i = 0; i < 10; ++i) {
    observe(a, "shared", "wa", bytes(100), 1.0);
    observe(a, "only a", "wa", bytes(100), 0.5);
    observe(b, "shared", "wb", bytes(100), 3.0);
    observe(b, "only b", "wb", bytes(100), 0.25);
  }
  a.save(path);
  b.save(path);
  a.save(path);  // already in: nothing added twice

  dx::cost_model both;
  REQUIRE(both.load(path));
  const dx::prediction shared = both.predict_kind("shared", bytes(100));
  CHECK(shared.samples == 20);
  CHECK(shared.mean == Approx(2.0));
  CHECK(both.predict_kind("only a", bytes(100)).mean == Approx(0.5));
  CHECK(both.predict_kind("only b", bytes(100)).mean == Approx(0.25));
  CHECK_FALSE(fs::exists(path.string() + ".tmp." + std::to_string(::getpid())));
  // Temporary files are named <file>.tmp.<pid>.<n>: none is left.
  for (const auto& e : fs::directory_iterator(path.parent_path()))
    CHECK(e.path().filename().string().rfind(path.filename().string() + ".tmp.", 0) == std::string::npos);
}

TEST_CASE("saves from two threads at once lose nothing", "[cost_model]") {
  temp_dir dir;
  const fs::path path = dir.path() / "contended.txt";
  const int rounds = 20;
  std::string errors[2];  // an exception escaping a thread would end the whole test run
  const auto run = [&](std::string kind, std::string& error) {
    try {
      dx::cost_model m;
      for (int i = 0; i < rounds; ++i) {
        observe(m, kind, "w", bytes(100), 1.0);
        observe(m, "shared", "w", bytes(100), 1.0);
        m.save(path);
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  };
  std::thread a(run, "a", std::ref(errors[0])), b(run, "b", std::ref(errors[1]));
  a.join();
  b.join();
  CHECK(errors[0].empty());
  CHECK(errors[1].empty());

  dx::cost_model both;
  REQUIRE(both.load(path));
  CHECK(both.predict_kind("a", bytes(100)).samples == rounds);
  CHECK(both.predict_kind("b", bytes(100)).samples == rounds);
  CHECK(both.predict_kind("shared", bytes(100)).samples == 2 * rounds);
}

TEST_CASE("a damaged file throws naming the path and line", "[cost_model]") {
  temp_dir dir;
  const fs::path path = dir.path() / "damaged.txt";
  const std::string good = "bucket k default 6 4 0.5 0.01 0.5 0 64 100 6.5\n";
  dx::cost_model m;

  write_text(path, "dx-cost-model 1\n" + good + "bucket k default 6 4 zero 0.01 0.5 0 64 100 6.5\n");
  CHECK_THAT(load_error(m, path), Catch::Matchers::Contains(path.string()) && Catch::Matchers::Contains("line 3"));

  write_text(path, "dx-cost-model 1\n# comment\n\n" + good + "bucket k default 99 4 0.5 0.01 0.5 0 64 100 6.5\n");
  CHECK_THAT(load_error(m, path), Catch::Matchers::Contains("line 5"));

  write_text(path, "dx-cost-model 1\nworker w%zz default 1 3\n");
  CHECK_THAT(load_error(m, path), Catch::Matchers::Contains("line 2"));

  write_text(path, "dx-cost-model 1\nsomething else\n");
  CHECK_THAT(load_error(m, path), Catch::Matchers::Contains("line 2"));

  write_text(path, "not a model\n");
  CHECK_THAT(load_error(m, path), Catch::Matchers::Contains("line 1"));

  // Comments and blank lines are fine, and what loads is used.
  write_text(path, "dx-cost-model 1\n# comment\n\n" + good);
  REQUIRE(m.load(path));
  CHECK(m.predict_kind("k", bytes(100)).mean == Approx(0.5));
  CHECK(m.predict_kind("k", bytes(100)).samples == 4);
}

TEST_CASE("a file of another version or a missing file is ignored", "[cost_model]") {
  temp_dir dir;
  dx::cost_model m;
  CHECK_FALSE(m.load(dir.path() / "missing.txt"));
  write_text(dir.path() / "v2.txt", "dx-cost-model 2\nbucket k default 6 4 0.5 0.01 0.5 0 64 100 6.5 extra\n");
  CHECK_FALSE(m.load(dir.path() / "v2.txt"));
  CHECK(m.predict_kind("k", bytes(100)).mean == 0.5);
  CHECK(m.predict_kind("k", bytes(100)).samples == 0);

  // Saving over it replaces it with the current version.
  observe(m, "k", "w", bytes(100), 0.125);
  m.save(dir.path() / "v2.txt");
  dx::cost_model reread;
  REQUIRE(reread.load(dir.path() / "v2.txt"));
  CHECK(reread.predict_kind("k", bytes(100)).mean == 0.125);
}

TEST_CASE("default_path honours DX_COSTMODEL, then XDG_STATE_HOME, then HOME", "[cost_model]") {
  env_override model("DX_COSTMODEL", "/somewhere/model.txt");
  env_override state("XDG_STATE_HOME", "/state");
  env_override home("HOME", "/home/someone");
  CHECK(dx::cost_model::default_path() == fs::path("/somewhere/model.txt"));
  {
    env_override empty("DX_COSTMODEL", "");
    CHECK(dx::cost_model::default_path() == fs::path("/state/dx/cost_model.txt"));
  }
  {
    env_override unset("DX_COSTMODEL", nullptr);
    CHECK(dx::cost_model::default_path() == fs::path("/state/dx/cost_model.txt"));
    env_override no_state("XDG_STATE_HOME", nullptr);
    CHECK(dx::cost_model::default_path() == fs::path("/home/someone/.local/state/dx/cost_model.txt"));
    env_override relative_state("XDG_STATE_HOME", "relative");
    CHECK(dx::cost_model::default_path() == fs::path("/home/someone/.local/state/dx/cost_model.txt"));
  }
}

TEST_CASE("the history keeps the last history_limit records, oldest first", "[cost_model]") {
  dx::cost_model m;
  const std::size_t limit = m.history_limit();
  REQUIRE(limit > 0);
  const std::size_t total = limit + 10;
  dx::prediction last;
  for (std::size_t i = 0; i < total; ++i) {
    last = m.observe({.kind = i % 2 ? "odd" : "even",
                      .worker = "w",
                      .features = bytes(64),
                      .seconds = 1.0 + static_cast<double>(i) * 1e-9});
  }
  const std::vector<dx::prediction_record> h = m.history();
  REQUIRE(h.size() == limit);
  CHECK(h.front().actual == 1.0 + 10 * 1e-9);
  CHECK(h.front().kind == "even");
  CHECK(h.back().actual == 1.0 + static_cast<double>(total - 1) * 1e-9);
  CHECK(h.back().kind == "odd");
  CHECK(h.back().worker == "w");
  CHECK(h.back().predicted == last.mean);
  CHECK(h.back().calibrated == last.calibrated);
}

TEST_CASE("accuracy() matches an independent computation", "[cost_model]") {
  dx::cost_model m;
  noise n(99);
  std::vector<double> apes;
  double recent = 0;
  const int runs = 300;
  for (int i = 0; i < runs; ++i) {
    const double actual = 0.02 * n();
    const dx::prediction p = m.observe({.kind = "b kind", .worker = "w", .features = bytes(4096), .seconds = actual});
    if (i >= 20) {  // the kind had 20 samples before this run (no sample is rejected at 5% noise)
      const double ape = std::abs(p.mean - actual) / actual;
      recent = apes.empty() ? ape : recent + 0.1 * (ape - recent);
      apes.push_back(ape);
    }
    if (i < 25) observe(m, "a kind", "w2", bytes(1), 1.0);
  }
  REQUIRE(m.predict_kind("b kind", bytes(4096)).samples == runs);
  std::sort(apes.begin(), apes.end());
  const double median = (apes[apes.size() / 2 - 1] + apes[apes.size() / 2]) / 2;  // an even count

  const std::vector<dx::kind_accuracy> acc = m.accuracy();
  REQUIRE(acc.size() == 2);
  CHECK(acc[0].kind == "a kind");
  CHECK(acc[0].samples == 25);
  CHECK(acc[0].calibrated_samples == 5);
  CHECK(acc[0].median_ape == 0);
  CHECK(acc[1].kind == "b kind");
  CHECK(acc[1].samples == runs);
  CHECK(acc[1].calibrated_samples == runs - 20);
  CHECK(acc[1].median_ape == Approx(median).epsilon(1e-12));
  CHECK(acc[1].recent_ape == Approx(recent).epsilon(1e-12));
  CHECK(acc[1].median_ape > 0.01);
  CHECK(acc[1].median_ape < 0.1);
}

TEST_CASE("cost models copy deeply and move", "[cost_model]") {
  dx::cost_model m;
  for (int i = 0; i < 5; ++i) observe(m, "k", "w", bytes(100), 1.0);
  dx::cost_model copy = m;
  for (int i = 0; i < 5; ++i) observe(copy, "k", "w", bytes(100), 1.0);
  CHECK(m.predict_kind("k", bytes(100)).samples == 5);
  CHECK(copy.predict_kind("k", bytes(100)).samples == 10);

  copy = m;
  CHECK(copy.predict_kind("k", bytes(100)).samples == 5);
  dx::cost_model moved = std::move(copy);
  CHECK(moved.predict_kind("k", bytes(100)).samples == 5);
  dx::cost_model assigned;
  assigned = std::move(moved);
  CHECK(assigned.predict_kind("k", bytes(100)).samples == 5);
  CHECK(assigned.calibrated("k"));
}

TEST_CASE("runs too short to measure a speed teach their kind but not the worker's factor", "[cost_model]") {
  dx::cost_model m;
  for (int i = 0; i < 50; ++i) {
    m.observe({.kind = "tiny", .worker = "a", .worker_class = "default", .features = {}, .seconds = 1e-6});
    m.observe({.kind = "tiny", .worker = "b", .worker_class = "default", .features = {}, .seconds = 2e-5});
  }
  // Timer noise on microsecond tasks says nothing about how fast b runs a 1 s task.
  CHECK(m.worker_factor("b") / m.worker_factor("a") == Approx(1.0));
  for (int i = 0; i < 50; ++i) {
    m.observe({.kind = "long", .worker = "a", .worker_class = "default", .features = {}, .seconds = 0.01});
    m.observe({.kind = "long", .worker = "b", .worker_class = "default", .features = {}, .seconds = 0.03});
  }
  CHECK(m.worker_factor("b") / m.worker_factor("a") == Approx(3.0).epsilon(0.15));
}

TEST_CASE("the model's interned kind names are looked up by index, an unknown index is a dx::error",
          "[cost_model][error]") {
  dx::cost_model m;
  auto& in = dx::detail::model_internals(m);
  const auto fft = in.kind_index("fft");
  CHECK(in.kind_index("fft") == fft);  // interned once
  CHECK(in.kind_name(fft) == "fft");
  CHECK_THROWS_AS(in.kind_name(fft + 100), dx::error);
  CHECK_THROWS_WITH(in.kind_name(fft + 100), Catch::Contains("no kind has index"));
}
