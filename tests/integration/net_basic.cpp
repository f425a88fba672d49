#include "net_functions.hpp"

#include "cluster/worker.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

using namespace std::chrono_literals;

namespace {

dx::options in_process(std::size_t workers) {
  return dx::options{}.threads(2).transport(dx::transport_kind::in_process).local_processes(workers);
}

}  // namespace

TEST_CASE("remote: a registered function runs on an in-process worker and returns its value") {
  dx::cluster cl{in_process(2).head_runs_tasks(false)};
  REQUIRE(cl.workers().size() == 2);
  auto f = cl.submit(net_test::square, 7);
  REQUIRE(f.get() == 49);
  auto s = cl.submit(net_test::concat, std::string("ab"), "cd");
  REQUIRE(s.get() == "abcd");
}

TEST_CASE("remote: futures chain across workers") {
  dx::cluster cl{in_process(2).head_runs_tasks(false)};
  auto a = cl.submit(net_test::square, 3);
  auto b = cl.submit(net_test::square, 4);
  auto c = cl.submit(net_test::add, std::move(a), std::move(b));
  REQUIRE(c.get() == 25);
}

TEST_CASE("remote: a remote exception arrives as dx::remote_error") {
  dx::cluster cl{in_process(1).head_runs_tasks(false)};
  auto f = cl.submit(net_test::throw_out_of_range, 5);
  try {
    f.get();
    FAIL("no exception");
  } catch (const dx::remote_error& e) {
    CHECK(e.type_name() == "std::out_of_range");
    CHECK(e.message() == "index 5 is out of range");
    CHECK(e.worker() == dx::detail::host_name() + "-1");  // the first worker the head started
  }
}

TEST_CASE("remote: large results stay on the worker until fetched") {
  dx::cluster cl{in_process(2).head_runs_tasks(false)};
  auto big = cl.submit(net_test::big_string, 1 << 20);
  auto len = cl.submit(net_test::length_of, std::move(big));
  REQUIRE(len.get() == (1u << 20));
  auto big2 = cl.submit(net_test::big_string, 300000);
  std::string v = big2.get();
  REQUIRE(v.size() == 300000);
  REQUIRE(v[27] == 'b');
}

TEST_CASE("remote: many tasks over TCP local processes") {
  dx::cluster cl{dx::options{}.threads(1).local_processes(2).head_runs_tasks(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 1000; ++i) fs.push_back(cl.submit(net_test::square, i));
  long long sum = 0;
  for (auto& f : fs) sum += f.get();
  long long expect = 0;
  for (long long i = 0; i < 1000; ++i) expect += i * i;
  REQUIRE(sum == expect);
}

TEST_CASE("remote: a future of a convertible type still sends a registered function to a worker") {
  // future<long> for an int parameter: converted when ready, and the call still runs remotely.
  dx::cluster cl{dx::options{}.threads(1).local_processes(1).head_runs_tasks(false)};
  const int head_pid = static_cast<int>(::getpid());
  dx::future<long> local_zero = cl.submit([] { return 0L; });
  CHECK(cl.submit(net_test::sleep_then_pid, std::move(local_zero)).get() != head_pid);
  dx::future<long> remote_six = cl.submit(net_test::widen, 6);
  dx::shared_future<long> shared_seven = cl.submit(net_test::widen, 7).share();
  auto from_remote = cl.submit(net_test::square, std::move(remote_six));
  auto from_shared = cl.submit(net_test::add, shared_seven, shared_seven);
  CHECK(from_remote.get() == 36);
  CHECK(from_shared.get() == 14);
  CHECK(shared_seven.get() == 7);
  dx::future<long> remote_zero = cl.submit(net_test::widen, 0);
  CHECK(cl.submit(net_test::sleep_then_pid, std::move(remote_zero)).get() != head_pid);
}

TEST_CASE("remote: cluster::submit takes an executor priority, for remote and local calls") {
  dx::cluster cl{in_process(1).head_runs_tasks(false)};
  CHECK(cl.submit(dx::priority::high, net_test::square, 5).get() == 25);
  CHECK(cl.submit(
              dx::priority::low, [](int x) { return x + 1; }, 5)
            .get() == 6);
  // Locally, high runs before queued normal work: one busy thread, then normal, then high.
  dx::cluster local{dx::options{}.threads(1)};
  std::atomic<bool> release{false};
  std::vector<int> order;
  std::mutex m;
  auto blocker = local.submit([&] {
    while (!release.load()) std::this_thread::yield();
  });
  auto normal = local.submit([&] {
    std::lock_guard lock(m);
    order.push_back(0);
  });
  auto urgent = local.submit(dx::priority::high, [&] {
    std::lock_guard lock(m);
    order.push_back(1);
  });
  release = true;
  blocker.get();
  normal.get();
  urgent.get();
  REQUIRE(order == std::vector<int>{1, 0});
}
