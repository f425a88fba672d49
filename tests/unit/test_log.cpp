// dx/log.hpp: the sink receives dx's lines, the level filters them, level names parse, and an
// alert delivered to on_alert is not printed a second time at the default level.
#include <dx/log.hpp>

#include <dx/dx.hpp>

#include "common/log.hpp"
#include "observe/alert_rules.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// Captures what dx logs for the life of the test, then restores stderr and the level it found.
struct captured_log {
  std::mutex mutex;
  std::vector<std::pair<dx::log_level, std::string>> lines;
  dx::log_level level_before = dx::get_log_level();

  captured_log() {
    dx::set_log_sink([this](dx::log_level level, std::string_view message) {
      std::lock_guard lock(mutex);
      lines.emplace_back(level, std::string(message));
    });
  }
  ~captured_log() {
    dx::set_log_sink(nullptr);
    dx::set_log_level(level_before);
  }
  std::size_t count_containing(std::string_view part) {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (const auto& [level, text] : lines) n += text.find(part) != std::string::npos ? 1 : 0;
    return n;
  }
};

}  // namespace

TEST_CASE("A log sink receives dx's lines with their level, and nullptr restores stderr", "[log]") {
  captured_log log;
  dx::set_log_level(dx::log_level::debug);
  dx::detail::log(dx::log_level::info, "worker {} joined", "w7");
  dx::detail::log(dx::log_level::error, "disk {}", "full");
  REQUIRE(log.lines.size() == 2);
  CHECK(log.lines[0] == std::pair{dx::log_level::info, std::string("worker w7 joined")});
  CHECK(log.lines[1] == std::pair{dx::log_level::error, std::string("disk full")});

  dx::set_log_sink(nullptr);
  dx::detail::log(dx::log_level::warn, "to stderr");
  CHECK(log.lines.size() == 2);
}

TEST_CASE("The log level filters what reaches the sink", "[log]") {
  captured_log log;
  auto emit_all = [] {
    dx::detail::log(dx::log_level::debug, "a debug line");
    dx::detail::log(dx::log_level::info, "an info line");
    dx::detail::log(dx::log_level::warn, "a warn line");
    dx::detail::log(dx::log_level::error, "an error line");
  };
  dx::set_log_level(dx::log_level::warn);
  CHECK(dx::get_log_level() == dx::log_level::warn);
  emit_all();
  CHECK(log.lines.size() == 2);
  CHECK(log.count_containing("debug") == 0);
  CHECK(log.count_containing("info") == 0);

  log.lines.clear();
  dx::set_log_level(dx::log_level::error);
  emit_all();
  REQUIRE(log.lines.size() == 1);
  CHECK(log.lines[0].first == dx::log_level::error);

  log.lines.clear();
  dx::set_log_level(dx::log_level::debug);
  emit_all();
  CHECK(log.lines.size() == 4);

  log.lines.clear();
  dx::set_log_level(dx::log_level::off);
  emit_all();
  CHECK(log.lines.empty());
  CHECK_FALSE(dx::detail::log_enabled(dx::log_level::error));
}

TEST_CASE("Log level names parse as DX_LOG spells them, in any case", "[log]") {
  using L = dx::log_level;
  for (L level : {L::debug, L::info, L::warn, L::error, L::off})
    CHECK(dx::parse_log_level(dx::to_string(level)) == level);
  CHECK(dx::parse_log_level("DEBUG") == L::debug);
  CHECK(dx::parse_log_level("Info") == L::info);
  CHECK(dx::parse_log_level("warning") == L::warn);
  CHECK_FALSE(dx::parse_log_level("verbose"));
  CHECK_FALSE(dx::parse_log_level(""));
  CHECK_FALSE(dx::parse_log_level("warn "));
  CHECK_FALSE(dx::parse_log_level("2"));
}

TEST_CASE("A line logged from inside the sink goes to stderr, and a sink that throws is survived", "[log]") {
  dx::log_level before = dx::get_log_level();
  dx::set_log_level(dx::log_level::info);
  std::atomic<int> calls{0};
  dx::set_log_sink([&](dx::log_level, std::string_view) {
    ++calls;
    dx::detail::log(dx::log_level::warn, "logged by the sink");  // would recurse forever
    throw std::runtime_error("sink failure");
  });
  dx::detail::log(dx::log_level::info, "first");
  dx::detail::log(dx::log_level::info, "second");
  CHECK(calls == 2);
  dx::set_log_sink(nullptr);
  dx::set_log_level(before);
}

TEST_CASE("The sink is called from many threads one call at a time", "[log]") {
  dx::log_level before = dx::get_log_level();
  dx::set_log_level(dx::log_level::info);
  int inside = 0, most_inside = 0, total = 0;  // unsynchronised on purpose: calls are serialised
  dx::set_log_sink([&](dx::log_level, std::string_view) {
    most_inside = std::max(most_inside, ++inside);
    ++total;
    --inside;
  });
  for (unsigned threads : {1u, 2u, 8u}) {
    total = 0;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([] {
        for (int i = 0; i < 500; ++i) dx::detail::log(dx::log_level::info, "line {}", i);
      });
    for (auto& t : pool) t.join();
    CHECK(total == static_cast<int>(threads) * 500);
  }
  CHECK(most_inside == 1);
  dx::set_log_sink(nullptr);
  dx::set_log_level(before);
}

TEST_CASE("An alert with no on_alert callback is logged as a warning, with one, only at info", "[log][alert]") {
  captured_log log;
  dx::metrics registry;
  dx::detail::observe::alert_center center(registry);
  auto raise = [&](const std::string& message) {
    dx::alert a;
    a.kind = dx::alert_kind::saturation;
    a.message = message;
    center.raise(a);
  };
  dx::set_log_level(dx::log_level::warn);
  raise("nobody listens");
  CHECK(log.count_containing("nobody listens") == 1);

  std::vector<std::string> received;
  center.on_alert([&](const dx::alert& a) { received.push_back(a.message); });
  raise("the application hears this");
  center.deliver();
  REQUIRE(received.size() == 2);  // both go to the callback
  CHECK(log.count_containing("the application hears this") == 0);

  dx::set_log_level(dx::log_level::info);
  raise("asked for at info");
  CHECK(log.count_containing("asked for at info") == 1);
}

TEST_CASE("A cluster's rule alert delivered to on_alert is not logged at the default level", "[log][alert]") {
  captured_log log;
  dx::set_log_level(dx::log_level::warn);
  dx::cluster cl{dx::options{}.heartbeat(20ms, 2s)};
  std::atomic<int> received{0};
  cl.on_alert([&](const dx::alert&) { ++received; });
  dx::gauge g = cl.metrics().add_gauge("app_queue", "Items waiting");
  g.set(5);
  cl.add_alert_rule(dx::alert_rule("queue too long").on("app_queue").above(1));
  for (int i = 0; i < 500 && received == 0; ++i) std::this_thread::sleep_for(10ms);
  REQUIRE(received > 0);
  CHECK(log.count_containing("queue too long") == 0);
  CHECK(cl.recent_alerts().size() >= 1);
}

TEST_CASE("A repeated line a peer can cause is written once per interval, with a count of those left out",
          "[log][limited]") {
  captured_log log;
  dx::set_log_level(dx::log_level::warn);
  const auto interval_before = dx::detail::log_repeat_interval();
  dx::detail::set_log_repeat_interval(300ms);
  for (int i = 0; i < 1000; ++i)
    dx::detail::log_limited(dx::log_level::warn, "closing the connection with {}: junk", i);
  dx::detail::log_limited(dx::log_level::warn, "another cause {}", 1);  // its own allowance
  CHECK(log.count_containing("closing the connection with") == 1);
  CHECK(log.count_containing("closing the connection with 0: junk") == 1);
  CHECK(log.count_containing("another cause 1") == 1);
  std::this_thread::sleep_for(350ms);
  dx::detail::log_limited(dx::log_level::warn, "closing the connection with {}: junk", 1000);
  CHECK(log.count_containing("closing the connection with") == 2);
  CHECK(log.count_containing(
            "closing the connection with 1000: junk (999 similar lines left out in the last 300 ms)") == 1);
  // Below the threshold nothing is counted or written.
  dx::detail::log_limited(dx::log_level::info, "closing the connection with {}: junk", 1001);
  CHECK(log.count_containing("1001") == 0);
  dx::detail::set_log_repeat_interval(interval_before);
}
