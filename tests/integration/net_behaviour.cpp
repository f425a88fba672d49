// Behaviour of a distributed dx::cluster, the same suite over both transports: the in-process
// transport (worker threads speaking the protocol) and TCP with real local worker processes.
// Every wait is bounded.
#include "net_functions.hpp"

#include "cluster/cluster_access.hpp"
#include "cluster/worker.hpp"

#include <catch2/catch.hpp>

#include "transports.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// The names of the workers a head starts: after its host, in the order it starts them.
const std::string w1 = dx::detail::host_name() + "-1";
const std::string w2 = dx::detail::host_name() + "-2";

/// A distributed cluster with `workers` local workers over transport `k`.
dx::options opts_for(dx::transport_kind k, std::size_t workers) {
  return dx::options{}.threads(2).transport(k).local_processes(workers);
}

/// Runs `f` on a detached thread; true when it returned within `limit`. A hung `f` leaks its
/// thread (and fails the test) instead of hanging the suite; `f` must own what it uses.
template <class F>
bool finishes_within(F f, std::chrono::milliseconds limit) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> fut = done->get_future();
  std::thread([f = std::move(f), done]() mutable {
    try {
      f();
    } catch (...) {
    }
    done->set_value();
  }).detach();
  return fut.wait_for(limit) == std::future_status::ready;
}

template <class Fut>
void require_ready(Fut& f, std::chrono::milliseconds limit = 10s) {
  REQUIRE(f.wait_for(limit) == dx::future_status::ready);
}

}  // namespace

TEST_CASE("behaviour: values of many types travel both ways", "[net][behaviour]") {
  DX_TRANSPORTS();
  dx::cluster cl{opts_for(kind, 2).head_runs_tasks(false)};
  auto s = cl.submit(net_test::concat, std::string("héllo "), std::string(1000, 'x'));
  auto v = cl.submit(net_test::make_vector, 1000, 0.5);
  auto sum = cl.submit(net_test::sum_vector, cl.submit(net_test::make_vector, 64, 2.0));
  auto words = cl.submit(net_test::count_words, std::vector<std::string>{"a", "b", "a", "", "c", "a"});
  auto pt = cl.submit(net_test::scale_point, net_test::point{3, 1.5, "p"}, 4);
  auto o1 = cl.submit(net_test::half_if_even, 10);
  auto o2 = cl.submit(net_test::half_if_even, 7);
  auto va = cl.submit(net_test::int_or_text, 5);
  auto vb = cl.submit(net_test::int_or_text, -5);
  auto tu = cl.submit(net_test::make_triple, 9);
  auto nothing = cl.submit(net_test::noop);

  CHECK(s.get() == "héllo " + std::string(1000, 'x'));
  CHECK(v.get() == std::vector<double>(1000, 0.5));
  CHECK(sum.get() == 128.0);
  CHECK(words.get() == std::map<std::string, int>{{"", 1}, {"a", 3}, {"b", 1}, {"c", 1}});
  CHECK(pt.get() == net_test::point{12, 6.0, "p*4"});
  CHECK(o1.get() == std::optional<int>(5));
  CHECK(o2.get() == std::nullopt);
  CHECK(va.get() == std::variant<int, std::string>(5));
  CHECK(vb.get() == std::variant<int, std::string>(std::string("negative")));
  CHECK(tu.get() == std::make_tuple(9, std::string("9"), 4.5));
  nothing.get();
}

/// Like require_ready, but a future that never becomes ready leaks the cluster first: its
/// destructor would wait for the stuck task forever and hang the suite.
template <class Fut>
void require_ready_or_leak(Fut& f, std::unique_ptr<dx::cluster>& cl, std::chrono::milliseconds limit = 5s) {
  const bool ready = f.wait_for(limit) == dx::future_status::ready;
  if (!ready) (void)cl.release();
  REQUIRE(ready);
}

TEST_CASE("behaviour: futures as dependencies", "[net][behaviour]") {
  DX_TRANSPORTS();
  auto owner = std::make_unique<dx::cluster>(opts_for(kind, 2).head_runs_tasks(false));
  dx::cluster& cl = *owner;

  SECTION("a chain of 50 remote tasks") {
    auto x = cl.submit(net_test::add, 0, 1);
    for (int i = 0; i < 49; ++i) x = cl.submit(net_test::add, std::move(x), 1);
    require_ready_or_leak(x, owner);
    REQUIRE(x.get() == 50);
  }
  SECTION("fan-in of 100 tasks with when_all on the head") {
    std::vector<dx::future<int>> parts;
    for (int i = 0; i < 100; ++i) parts.push_back(cl.submit(net_test::square, i));
    auto all = dx::when_all(std::move(parts));
    require_ready_or_leak(all, owner);
    std::vector<int> got = all.get();
    REQUIRE(got.size() == 100);
    for (int i = 0; i < 100; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * i);
  }
  SECTION("a local lambda consumes a remote future") {
    auto r = cl.submit(net_test::square, 12);
    auto l = cl.submit([](int v) { return v + 1; }, std::move(r));
    require_ready_or_leak(l, owner);
    REQUIRE(l.get() == 145);
  }
  SECTION("a remote task consumes a local future from a promise set later") {
    dx::promise<int> p;
    auto f = cl.submit(net_test::square, p.get_future());
    auto g = cl.submit(net_test::add, std::move(f), 1);
    std::this_thread::sleep_for(50ms);
    CHECK(g.wait_for(0ms) == dx::future_status::timeout);
    p.set_value(6);
    require_ready_or_leak(g, owner);
    REQUIRE(g.get() == 37);
  }
  SECTION("a remote task consumes a local lambda task's future") {
    auto local = cl.submit([] {
      std::this_thread::sleep_for(10ms);
      return 9;
    });
    auto f = cl.submit(net_test::square, std::move(local));
    require_ready_or_leak(f, owner);
    REQUIRE(f.get() == 81);
  }
  SECTION("a shared_future used by two remote tasks and the head") {
    dx::shared_future<int> s = cl.submit(net_test::square, 5).share();
    auto a = cl.submit(net_test::add, s, 1);
    auto b = cl.submit(net_test::add, s, s);
    require_ready_or_leak(a, owner);
    require_ready_or_leak(b, owner);
    CHECK(a.get() == 26);
    CHECK(b.get() == 50);
    CHECK(s.get() == 25);
  }
  SECTION("a remote future already read on the head is then used as a dependency") {
    dx::shared_future<int> s = cl.submit(net_test::square, 7).share();
    REQUIRE(s.get() == 49);
    auto a = cl.submit(net_test::add, s, 1);
    require_ready_or_leak(a, owner);
    CHECK(a.get() == 50);
  }
  SECTION("a large remote future already read on the head is then used as a dependency") {
    dx::shared_future<std::string> s = cl.submit(net_test::big_string, 200000).share();
    REQUIRE(s.get().size() == 200000u);
    auto a = cl.submit(net_test::length_of, s);
    require_ready_or_leak(a, owner);
    CHECK(a.get() == 200000u);
  }
  SECTION("a large result as a dependency of several tasks") {
    auto big = cl.submit(net_test::big_string, 200000).share();
    auto l1 = cl.submit(net_test::length_of, big);
    auto l2 = cl.submit(net_test::length_of, big);
    auto c = cl.submit(net_test::concat, big, std::string("!"));
    auto lc = cl.submit(net_test::length_of, std::move(c));
    require_ready_or_leak(l1, owner);
    require_ready_or_leak(l2, owner);
    require_ready_or_leak(lc, owner);
    CHECK(l1.get() == 200000u);
    CHECK(l2.get() == 200000u);
    CHECK(lc.get() == 200001u);
  }
}

TEST_CASE("behaviour: remote exceptions", "[net][behaviour]") {
  DX_TRANSPORTS();
  dx::cluster cl{opts_for(kind, 2).head_runs_tasks(false)};

  SECTION("a remote exception is a dx::remote_error with type, message and worker") {
    auto f = cl.submit(net_test::throw_out_of_range, 5);
    require_ready(f);
    try {
      f.get();
      FAIL("no exception");
    } catch (const dx::remote_error& e) {
      CHECK(e.type_name() == "std::out_of_range");
      CHECK(e.message() == "index 5 is out of range");
      CHECK((e.worker() == w1 || e.worker() == w2));
      CHECK(std::string(e.what()).find("index 5 is out of range") != std::string::npos);
    }
  }
  SECTION("an exception propagates to remote and local dependents") {
    dx::shared_future<int> bad = cl.submit(net_test::throw_out_of_range, 3).share();
    auto dep = cl.submit(net_test::add, bad, 2);
    auto dep2 = cl.submit(net_test::square, cl.submit(net_test::add, bad, 1));
    auto local = cl.submit([](int v) { return v; }, bad);
    for (auto* f : {&dep, &dep2, &local}) {
      require_ready(*f);
      try {
        f->get();
        FAIL("no exception");
      } catch (const dx::remote_error& e) {
        CHECK(e.type_name() == "std::out_of_range");
        CHECK(e.message() == "index 3 is out of range");
      }
    }
    // The cluster still works afterwards.
    REQUIRE(cl.submit(net_test::square, 4).get() == 16);
  }
  SECTION("a failed local dependency fails the remote task with the same exception") {
    dx::promise<int> p;
    auto f = cl.submit(net_test::square, p.get_future());
    p.set_exception(std::make_exception_ptr(std::invalid_argument("local failure")));
    require_ready(f);
    REQUIRE_THROWS_WITH(f.get(), "local failure");
  }
}

TEST_CASE("behaviour: results over inline_result_limit are fetched and forwarded", "[net][behaviour]") {
  DX_TRANSPORTS();
  auto owner = std::make_unique<dx::cluster>(opts_for(kind, 2).head_runs_tasks(false).inline_result_limit(1024));
  dx::cluster& cl = *owner;
  const int mb = 1 << 20;
  SECTION("fetched by get()") {
    auto a = cl.submit(net_test::big_string, mb);
    auto b = cl.submit(net_test::big_string, mb);
    require_ready_or_leak(a, owner, 10s);
    require_ready_or_leak(b, owner, 10s);
    std::string va = a.get();
    REQUIRE(va.size() == static_cast<std::size_t>(mb));
    CHECK(va == net_test::big_string(mb));
    CHECK(b.get() == va);
  }
  SECTION("consumed by dependents") {
    auto la = cl.submit(net_test::length_of, cl.submit(net_test::big_string, mb));
    require_ready_or_leak(la, owner, 10s);
    CHECK(la.get() == static_cast<std::size_t>(mb));
  }
  SECTION("two large inputs of one dependent") {
    auto lb = cl.submit(net_test::length_of, cl.submit(net_test::concat, cl.submit(net_test::big_string, mb),
                                                       cl.submit(net_test::big_string, 2000)));
    require_ready_or_leak(lb, owner, 10s);
    CHECK(lb.get() == static_cast<std::size_t>(mb) + 2000);
  }
}

TEST_CASE("behaviour: head_runs_tasks and the worker list", "[net][behaviour]") {
  DX_TRANSPORTS();

  SECTION("head_runs_tasks(true) lists the head first and runs tasks") {
    dx::cluster cl{opts_for(kind, 1).head_runs_tasks(true)};
    auto ws = cl.workers();
    REQUIRE(ws.size() == 2);
    CHECK(ws[0].id == "head");
    CHECK(!ws[0].address.empty());
    CHECK(ws[0].pid == ::getpid());
    CHECK(ws[1].id == w1);
    std::vector<dx::future<int>> fs;
    for (int i = 0; i < 200; ++i) fs.push_back(cl.submit(net_test::square, i));
    for (int i = 0; i < 200; ++i) CHECK(fs[static_cast<std::size_t>(i)].get() == i * i);
  }
  SECTION("head_runs_tasks(false) has no head entry") {
    dx::cluster cl{opts_for(kind, 2).head_runs_tasks(false)};
    auto ws = cl.workers();
    REQUIRE(ws.size() == 2);
    std::set<std::string> ids;
    for (const auto& w : ws) {
      ids.insert(w.id);
      CHECK(w.threads >= 1);
      CHECK(w.state == dx::worker_state::active);
      CHECK(w.tasks_assigned == 0);
      CHECK(w.pid > 0);
      CHECK_FALSE(w.address.empty());
      if (kind == dx::transport_kind::tcp) {
        CHECK(w.pid != ::getpid());
        auto pids = dx::detail::cluster_access::head(cl)->worker_pids();
        CHECK(std::find(pids.begin(), pids.end(), static_cast<int>(w.pid)) != pids.end());
      }
    }
    CHECK(ids == std::set<std::string>{w1, w2});
    if (kind == dx::transport_kind::tcp) {
      CHECK(ws[0].pid != ws[1].pid);
      CHECK(dx::detail::cluster_access::head(cl)->worker_pids().size() == 2);
      const std::string ep = cl.endpoint();
      REQUIRE(ep.rfind("127.0.0.1:", 0) == 0);
      CHECK(std::stoi(ep.substr(10)) > 0);
    } else {
      CHECK_FALSE(cl.endpoint().empty());
    }
    cl.wait_for_workers(2, 5s);
    auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(cl.wait_for_workers(3, 200ms), dx::timeout);
    CHECK(std::chrono::steady_clock::now() - t0 >= 190ms);
  }
  SECTION("a cluster with only listen() has no workers but the head") {
    dx::cluster cl{dx::options{}.threads(2).transport(kind).listen("127.0.0.1:0")};
    auto ws = cl.workers();
    REQUIRE(ws.size() == 1);
    CHECK(ws[0].id == "head");
    CHECK(cl.submit(net_test::square, 3).get() == 9);
  }
}

TEST_CASE("behaviour: 1,000 tasks spread across both workers", "[net][behaviour]") {
  DX_TRANSPORTS();
  dx::cluster cl{opts_for(kind, 2).head_runs_tasks(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 1000; ++i) fs.push_back(cl.submit(net_test::sleep_then_pid, i % 4 == 0 ? 1 : 0));
  std::map<int, int> by_pid;
  for (auto& f : fs) {
    require_ready(f);
    ++by_pid[f.get()];
  }
  if (kind == dx::transport_kind::tcp) {
    std::set<int> expect;
    for (const auto& w : cl.workers()) expect.insert(static_cast<int>(w.pid));
    REQUIRE(expect.size() == 2);
    std::set<int> got;
    for (auto& [pid, n] : by_pid) got.insert(pid);
    CHECK(got == expect);
    for (auto& [pid, n] : by_pid) CHECK(n >= 50);
  } else {
    CHECK(by_pid.size() == 1);
    CHECK(by_pid.begin()->first == ::getpid());
  }
}

TEST_CASE("behaviour: wait_idle and dropped futures", "[net][behaviour]") {
  DX_TRANSPORTS();
  dx::cluster cl{opts_for(kind, 2).head_runs_tasks(false)};

  SECTION("wait_idle returns once all work has finished") {
    std::vector<dx::future<int>> fs;
    for (int i = 0; i < 40; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, 5, i));
    dx::cluster* c = &cl;
    auto idle = std::async(std::launch::async, [c] { c->wait_idle(); });
    REQUIRE(idle.wait_for(10s) == std::future_status::ready);
    for (const auto& w : cl.workers()) CHECK(w.tasks_assigned == 0);
    for (int i = 0; i < 40; ++i) CHECK(fs[static_cast<std::size_t>(i)].get() == i);
  }
  SECTION("a future destroyed before its task completes") {
    {
      auto f = cl.submit(net_test::sleep_ms_then, 100, 1);
      auto g = cl.submit(net_test::big_string, 100000);
      auto h = cl.submit(net_test::add, cl.submit(net_test::sleep_ms_then, 50, 1), 1);
    }
    auto k = cl.submit(net_test::square, 11);
    require_ready(k);
    CHECK(k.get() == 121);
    dx::cluster* c = &cl;
    auto idle = std::async(std::launch::async, [c] { c->wait_idle(); });
    REQUIRE(idle.wait_for(10s) == std::future_status::ready);
  }
}

TEST_CASE("behaviour: a cluster destroyed with futures still alive", "[net][behaviour]") {
  DX_TRANSPORTS();
  auto cl = std::make_shared<dx::cluster>(opts_for(kind, 2).head_runs_tasks(false).inline_result_limit(1024));
  auto small = std::make_shared<dx::future<int>>(cl->submit(net_test::sleep_ms_then, 100, 7));
  auto big = std::make_shared<dx::future<std::string>>(cl->submit(net_test::big_string, 100000));
  auto chained = std::make_shared<dx::future<std::size_t>>(
      cl->submit(net_test::length_of, cl->submit(net_test::big_string, 5000)));
  REQUIRE(finishes_within([c = std::move(cl)]() mutable { c.reset(); }, 20s));

  auto outcome = [](auto fut, auto expect) {
    return [fut, expect]() {
      try {
        if (fut->get() != expect) std::abort();
      } catch (const dx::error&) {
      }
    };
  };
  CHECK(finishes_within(outcome(small, 7), 5s));
  CHECK(finishes_within(outcome(big, net_test::big_string(100000)), 5s));
  CHECK(finishes_within(outcome(chained, std::size_t{5000}), 5s));
}

TEST_CASE("behaviour: destroying a cluster whose remote task waits for an unset local promise", "[net][behaviour]") {
  DX_TRANSPORTS();
  auto cl = std::make_shared<dx::cluster>(opts_for(kind, 1).head_runs_tasks(false));
  auto pending = std::make_shared<dx::promise<int>>();
  auto waiting = std::make_shared<dx::future<int>>(cl->submit(net_test::square, pending->get_future()));
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  const bool quick = finishes_within(
      [c = std::move(cl), destroyed]() mutable {
        c.reset();
        *destroyed = true;
      },
      3s);
  // The destructor must not wait forever for a dependency nobody may ever provide: the task is
  // cancelled (or runs once the promise is set). Unblock it either way so the suite goes on.
  CHECK(quick);
  pending->set_value(3);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!*destroyed && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  REQUIRE(*destroyed);
  CHECK(finishes_within(
      [waiting]() {
        try {
          (void)waiting->get();
        } catch (const dx::error&) {
        }
      },
      5s));
}
