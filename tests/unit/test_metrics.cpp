// dx::metrics: the registry of counters, gauges and histograms and its Prometheus text.
#include <dx/metrics.hpp>

#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text))
    if (l == line) return true;
  return false;
}

}  // namespace

TEST_CASE("counters, gauges and histograms hold what was recorded", "[metrics]") {
  dx::metrics m;
  dx::counter c = m.add_counter("app_rows_total", "Rows read", {{"source", "csv"}});
  c.inc();
  c.inc(2.5);
  c.inc(-10);  // ignored: a counter only goes up
  CHECK(c.value() == 3.5);
  dx::gauge g = m.add_gauge("app_queue_depth", "Items waiting");
  g.set(7);
  g.inc(3);
  g.dec(4);
  CHECK(g.value() == 6);
  dx::histogram h = m.add_histogram("app_parse_seconds", "Parse time", {0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 2.0, 20.0}) h.observe(v);
  CHECK(h.count() == 5);
  CHECK(h.sum() == Approx(22.65));

  const std::string text = m.render();
  CHECK(has_line(text, "# HELP app_rows_total Rows read"));
  CHECK(has_line(text, "# TYPE app_rows_total counter"));
  CHECK(has_line(text, "app_rows_total{source=\"csv\"} 3.5"));
  CHECK(has_line(text, "# TYPE app_queue_depth gauge"));
  CHECK(has_line(text, "app_queue_depth 6"));
  CHECK(has_line(text, "# TYPE app_parse_seconds histogram"));
  // Buckets are cumulative; a value equal to a bound falls in that bound's bucket.
  CHECK(has_line(text, "app_parse_seconds_bucket{le=\"0.1\"} 2"));
  CHECK(has_line(text, "app_parse_seconds_bucket{le=\"1\"} 3"));
  CHECK(has_line(text, "app_parse_seconds_bucket{le=\"10\"} 4"));
  CHECK(has_line(text, "app_parse_seconds_bucket{le=\"+Inf\"} 5"));
  CHECK(has_line(text, "app_parse_seconds_count 5"));
  CHECK(has_line(text, "app_parse_seconds_sum 22.65"));

  CHECK(m.value("app_rows_total", {{"source", "csv"}}) == 3.5);
  CHECK(m.value("app_parse_seconds_count") == 5.0);
  CHECK(m.value("app_parse_seconds_bucket", {{"le", "1"}}) == 3.0);
  CHECK_FALSE(m.value("app_rows_total").has_value());  // labels must match exactly
  CHECK_FALSE(m.value("no_such_metric").has_value());
}

TEST_CASE("adding a series again returns the same series, labels are one set per family", "[metrics]") {
  dx::metrics m;
  dx::counter a = m.add_counter("app_hits_total", "Hits", {{"path", "/"}, {"code", "200"}});
  dx::counter b = m.add_counter("app_hits_total", "Hits", {{"code", "200"}, {"path", "/"}});  // other order
  dx::counter other = m.add_counter("app_hits_total", "Hits", {{"code", "404"}, {"path", "/"}});
  a.inc();
  b.inc();
  other.inc(5);
  CHECK(a.value() == 2);
  const std::string text = m.render();
  CHECK(has_line(text, "app_hits_total{code=\"200\",path=\"/\"} 2"));
  CHECK(has_line(text, "app_hits_total{code=\"404\",path=\"/\"} 5"));
  // One HELP/TYPE per family, samples grouped under it.
  int types = 0;
  for (const auto& l : lines_of(text)) types += l.rfind("# TYPE app_hits_total", 0) == 0;
  CHECK(types == 1);
}

TEST_CASE("bad metric definitions are errors that say what is wrong", "[metrics]") {
  dx::metrics m;
  m.add_counter("app_x_total", "x", {{"a", "1"}});
  CHECK_THROWS_WITH(m.add_gauge("app_x_total", "x", {{"a", "1"}}), Catch::Contains("is a counter, not a gauge"));
  CHECK_THROWS_WITH(m.add_counter("app_x_total", "x", {{"b", "1"}}), Catch::Contains("has the labels [a], not [b]"));
  CHECK_THROWS_WITH(m.add_counter("2fast", "x"), Catch::Contains("'2fast' is not a valid metric name"));
  CHECK_THROWS_WITH(m.add_counter("app-rows", "x"), Catch::Contains("not a valid metric name"));
  CHECK_THROWS_WITH(m.add_counter("", "x"), Catch::Contains("not a valid metric name"));
  CHECK_THROWS_WITH(m.add_counter("dx_mine_total", "x"), Catch::Contains("reserved"));
  CHECK_THROWS_WITH(m.add_counter("app_y_total", "x", {{"__name", "v"}}), Catch::Contains("not a valid label name"));
  CHECK_THROWS_WITH(m.add_counter("app_y_total", "x", {{"a b", "v"}}), Catch::Contains("not a valid label name"));
  CHECK_THROWS_WITH(m.add_counter("app_y_total", "x", {{"a", "1"}, {"a", "2"}}), Catch::Contains("given twice"));
  CHECK_THROWS_WITH(m.add_histogram("app_h", "h", {1, 0.5}), Catch::Contains("ascending"));
  CHECK_THROWS_WITH(m.add_histogram("app_h2", "h", {1}, {{"le", "x"}}), Catch::Contains("not a valid label name"));
  m.add_histogram("app_h3", "h", {1, 2});
  CHECK_THROWS_WITH(m.add_histogram("app_h3", "h", {1, 3}), Catch::Contains("other bucket bounds"));
  CHECK_THROWS_AS(m.add_counter("app:bad name", "x"), dx::error);
  CHECK_THROWS_WITH(dx::metrics::exponential_buckets(0, 2, 3), Catch::Contains("start > 0"));
  CHECK(dx::metrics::exponential_buckets(0.001, 10, 4) == std::vector<double>{0.001, 0.01, 0.1, 1.0});
  // A +Inf bound given explicitly is the implied one.
  dx::histogram h = m.add_histogram("app_h4", "h", {1, std::numeric_limits<double>::infinity()});
  h.observe(5);
  CHECK(has_line(m.render(), "app_h4_bucket{le=\"+Inf\"} 1"));
}

TEST_CASE("label values and help text are escaped, special values are spelled as Prometheus does", "[metrics]") {
  dx::metrics m;
  m.add_gauge("app_odd", "Help with \\ and\nnewline", {{"v", "a\"b\\c\nd"}}).set(std::nan(""));
  m.add_gauge("app_big", "big").set(std::numeric_limits<double>::infinity());
  m.add_gauge("app_small", "small").set(-std::numeric_limits<double>::infinity());
  m.add_gauge("app_frac", "frac").set(0.25);
  m.add_gauge("app_huge", "huge").set(1e20);
  const std::string text = m.render();
  CHECK(has_line(text, "# HELP app_odd Help with \\\\ and\\nnewline"));
  CHECK(has_line(text, "app_odd{v=\"a\\\"b\\\\c\\nd\"} NaN"));
  CHECK(has_line(text, "app_big +Inf"));
  CHECK(has_line(text, "app_small -Inf"));
  CHECK(has_line(text, "app_frac 0.25"));
  CHECK(has_line(text, "app_huge 1e+20"));
}

TEST_CASE("detached handles do nothing", "[metrics]") {
  dx::counter c;
  dx::gauge g;
  dx::histogram h;
  c.inc();
  g.set(3);
  h.observe(1);
  CHECK(c.value() == 0);
  CHECK(g.value() == 0);
  CHECK(h.count() == 0);
}

TEST_CASE("updates from many threads are all counted", "[metrics][stress]") {
  dx::metrics m;
  dx::counter c = m.add_counter("app_events_total", "Events");
  dx::gauge g = m.add_gauge("app_level", "Level");
  dx::histogram h = m.add_histogram("app_size", "Size", {10, 100});
  constexpr int threads = 8, per_thread = 20000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        c.inc();
        g.inc();
        g.dec();
        h.observe(static_cast<double>((i + t) % 200));
        if (i % 1000 == 0) (void)m.render();  // reads while others write
      }
    });
  for (auto& t : ts) t.join();
  CHECK(c.value() == threads * per_thread);
  CHECK(g.value() == 0);
  CHECK(h.count() == static_cast<std::uint64_t>(threads * per_thread));
}
