// Tests of cluster::map on the local threads (its distributed side is in
// tests/integration/net_map.cpp) and of dx::map_options.
#include <dx/map.hpp>

#include <dx/as_completed.hpp>
#include <dx/cluster.hpp>
#include <dx/remote.hpp>

#include "test_helpers.hpp"

#include <algorithm>
#include <atomic>
#include <list>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int map_test_triple(int x) { return 3 * x; }
DX_REMOTE(map_test_triple);

}  // namespace

TEST_CASE("map_options chain sets the chunking", "[map]") {
  dx::map_options o;
  CHECK(o.chunking == dx::chunking::automatic);
  CHECK(o.target_duration == 50ms);
  CHECK(o.chunks_per_thread == 4);
  o.with_chunk_size(64);
  CHECK(o.chunking == dx::chunking::fixed);
  CHECK(o.chunk_size == 64);
  o.with_target_duration(20ms).with_chunks_per_thread(2);
  CHECK(o.chunking == dx::chunking::automatic);
  CHECK(o.target_duration == 20ms);
  CHECK(o.chunks_per_thread == 2);
}

TEST_CASE("map of a lambda returns one future per input, in input order, with 1, 2 and 4 threads", "[map]") {
  for (std::size_t threads : {1u, 2u, 4u}) {
    dx::cluster cl{dx::options{}.threads(threads)};
    std::vector<int> in(10'007);
    for (int i = 0; i < static_cast<int>(in.size()); ++i) in[static_cast<std::size_t>(i)] = i;
    std::vector<dx::future<long>> out = cl.map([](int x) { return 2L * x; }, in);
    REQUIRE(out.size() == in.size());
    for (std::size_t i = 0; i < out.size(); ++i) REQUIRE(dx_test::get_soon(out[i]) == 2L * static_cast<long>(i));
  }
}

TEST_CASE("map on a cluster that is not distributed runs a registered function on the local threads", "[map]") {
  dx::cluster cl{dx::options{}.threads(2)};
  auto out = cl.map(map_test_triple, std::vector<int>{1, 2, 3});
  CHECK(dx_test::get_soon(out[0]) == 3);
  CHECK(dx_test::get_soon(out[1]) == 6);
  CHECK(dx_test::get_soon(out[2]) == 9);
}

TEST_CASE("map fails only the futures of the inputs that threw, with their own exception", "[map]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::vector<int> in(100);
  for (int i = 0; i < 100; ++i) in[static_cast<std::size_t>(i)] = i;
  auto out = cl.map(
      [](int x) {
        if (x % 10 == 3) throw dx_test::test_error("bad " + std::to_string(x));
        return x;
      },
      in, dx::map_options{}.with_chunk_size(16));
  for (int i = 0; i < 100; ++i) {
    auto& f = out[static_cast<std::size_t>(i)];
    if (i % 10 == 3) {
      CHECK_THROWS_WITH(dx_test::get_soon(f), "bad " + std::to_string(i));
    } else {
      CHECK(dx_test::get_soon(f) == i);
    }
  }
}

TEST_CASE("map with a fixed chunk size runs each chunk's inputs in order on one thread", "[map]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::mutex m;
  std::vector<std::pair<std::thread::id, int>> calls;
  std::vector<int> in(40);
  for (int i = 0; i < 40; ++i) in[static_cast<std::size_t>(i)] = i;
  auto out = cl.map(
      [&](int x) {
        std::lock_guard lock(m);
        calls.emplace_back(std::this_thread::get_id(), x);
      },
      in, dx::map_options{}.with_chunk_size(10));
  for (auto& f : out) dx_test::get_soon(f);
  REQUIRE(calls.size() == 40);
  // Inputs of one chunk ([0,10), [10,20), ...) run one after another on the same thread.
  for (int chunk = 0; chunk < 4; ++chunk) {
    std::vector<int> seen;
    std::set<std::thread::id> threads;
    for (auto& [id, x] : calls)
      if (x / 10 == chunk) {
        seen.push_back(x);
        threads.insert(id);
      }
    CHECK(threads.size() == 1);
    CHECK(std::is_sorted(seen.begin(), seen.end()));
  }
}

TEST_CASE("map takes any range (a list, an empty vector) and futures of void", "[map]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::list<std::string> words{"a", "bb", "ccc"};
  auto lengths = cl.map([](const std::string& s) { return s.size(); }, words);
  CHECK(dx_test::get_soon(lengths[2]) == 3);
  CHECK(cl.map([](int x) { return x; }, std::vector<int>{}).empty());
  std::atomic<int> sum{0};
  auto done = cl.map([&](int x) { sum += x; }, std::vector<int>{1, 2, 3, 4});
  static_assert(std::is_same_v<decltype(done), std::vector<dx::future<void>>>);
  for (auto& f : done) dx_test::get_soon(f);
  CHECK(sum == 10);
}

TEST_CASE("map's futures stream through as_completed", "[map][as_completed]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::vector<int> in{30, 1, 2};
  auto out = cl.map(
      [](int ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return ms;
      },
      in, dx::map_options{}.with_chunk_size(1));
  std::vector<int> order;
  for (auto f : dx::as_completed(std::move(out))) order.push_back(f.get());
  REQUIRE(order.size() == 3);
  CHECK(order.back() == 30);  // the slow one last
}
