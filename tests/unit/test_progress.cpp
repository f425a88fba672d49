// dx::progress: a bar on terminals, plain lines elsewhere, failures counted, values untouched.
#include <dx/progress.hpp>

#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// Everything written to a temporary stream.
struct captured {
  std::FILE* f = std::tmpfile();
  ~captured() { std::fclose(f); }
  std::string text() const {
    std::fflush(f);
    std::rewind(f);
    std::string out;
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    return out;
  }
};

std::size_t count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("progress prints plain lines while futures finish, then a final line", "[progress]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 20; ++i)
    fs.push_back(cl.submit([i] {
      std::this_thread::sleep_for(15ms);
      return i;
    }));
  captured out;
  dx::progress_options o;
  o.mode = dx::progress_options::display::lines;
  o.stream = out.f;
  o.interval = 40ms;
  o.label = "squares";
  dx::progress(fs, o);
  for (auto& f : fs) CHECK(f.is_ready());
  const std::string text = out.text();
  INFO(text);
  CHECK(count_of(text, "\n") >= 3);  // some lines while running, and the last
  CHECK(text.find('\r') == std::string::npos);
  CHECK_THAT(text, Catch::StartsWith("squares "));
  CHECK_THAT(text, Catch::Contains("20/20 100%"));
  CHECK_THAT(text, Catch::Contains("done in"));
  CHECK_THAT(text, Catch::Contains("ETA"));
  // The values are still there.
  int sum = 0;
  for (auto& f : fs) sum += f.get();
  CHECK(sum == 190);
}

TEST_CASE("progress draws a bar in place on a terminal and counts failures", "[progress]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 12; ++i)
    fs.push_back(cl.submit([i]() -> int {
      std::this_thread::sleep_for(10ms);
      if (i % 4 == 0) throw std::runtime_error("bad");
      return i;
    }));
  captured out;
  dx::progress_options o;
  o.mode = dx::progress_options::display::bar;
  o.stream = out.f;
  o.interval = 20ms;
  dx::progress(fs, o);
  const std::string text = out.text();
  INFO(text);
  CHECK(text.front() == '\r');
  CHECK_THAT(text, Catch::Contains("[##############################] 12/12 100%"));
  CHECK_THAT(text, Catch::Contains("(3 failed)"));
  CHECK(text.back() == '\n');
  CHECK(count_of(text, "\n") == 1);  // the bar is redrawn, not repeated on new lines
}

TEST_CASE("progress over nothing, over futures already ready and over empty futures returns at once", "[progress]") {
  captured out;
  dx::progress_options o;
  o.mode = dx::progress_options::display::lines;
  o.stream = out.f;
  std::vector<dx::future<int>> none;
  dx::progress(none, o);
  std::vector<dx::future<int>> ready;
  ready.push_back(dx::make_ready_future(1));
  ready.emplace_back();  // empty: counts as done
  dx::shared_future<int> shared = dx::make_ready_future(2).share();
  std::vector<dx::shared_future<int>> shareds{shared, shared};
  const auto start = std::chrono::steady_clock::now();
  dx::progress(ready, o);
  dx::progress(shareds, o);
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // o.interval is 5 s for lines: no wait for it
  const std::string text = out.text();
  CHECK_THAT(text, Catch::Contains("0/0 100%"));
  CHECK_THAT(text, Catch::Contains("2/2 100%"));
}

TEST_CASE("progress with a cluster takes its ETA from the cluster's forecast", "[progress]") {
  dx::cluster cl{dx::options{}.threads(1)};  // not distributed: the forecast is empty, the rate is used
  std::vector<dx::future<void>> fs;
  for (int i = 0; i < 6; ++i) fs.push_back(cl.submit([] { std::this_thread::sleep_for(20ms); }));
  captured out;
  dx::progress_options o;
  o.mode = dx::progress_options::display::lines;
  o.stream = out.f;
  o.interval = 30ms;
  dx::progress(cl, fs, o);
  CHECK_THAT(out.text(), Catch::Contains("6/6 100%"));
}

TEST_CASE("progress says calibrating when the ETA comes from the rate instead of the forecast", "[progress]") {
  dx::progress_options o;
  const std::string calibrating = dx::detail::describe_progress(100, 20, 0, 4.0, o, 16.0, false, true);
  CHECK(calibrating.find("20/100") != std::string::npos);
  CHECK(calibrating.find("ETA 16.0 s (calibrating)") != std::string::npos);
  const std::string forecast = dx::detail::describe_progress(100, 20, 0, 4.0, o, 16.0, false, false);
  CHECK(forecast.find("ETA 16.0 s") != std::string::npos);
  CHECK(forecast.find("calibrating") == std::string::npos);
  const std::string done = dx::detail::describe_progress(100, 100, 0, 13.0, o, 0, false, true);
  CHECK(done.find("done in 13.0 s") != std::string::npos);
  CHECK(done.find("calibrating") == std::string::npos);
}
