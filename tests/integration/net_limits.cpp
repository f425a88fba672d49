// Limits that protect, not kill: a value over options::max_value_size fails its task alone, with a
// dx::error naming its size, the limit and the option, and the worker goes on; a message over
// options::max_frame_size travels as a stream of chunks (an argument, a result, a fetch from worker
// to worker), which only a peer past the handshake may send; and a large task still on its way to
// a worker is not dispatched again. Loopback only, every wait bounded.
#include "net_functions.hpp"

#include "captured_log.hpp"
#include "cluster/worker.hpp"
#include "raw_client.hpp"
#include "transport/transport.hpp"
#include "transport_harness.hpp"
#include "transports.hpp"
#include "wire/frame.hpp"
#include "wire/messages.hpp"

#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace wire = dx::wire;

namespace limits_test {

/// Appends a line to the file at `path` on every run (O_APPEND: whichever process runs it), and
/// returns the size of `big`: a task with a large argument that counts its runs.
std::size_t count_run(std::string path, std::string big) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd >= 0) {
    const std::string line = std::to_string(::getpid()) + "\n";
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
  }
  return big.size();
}

}  // namespace limits_test

DX_REMOTE(limits_test::count_run);

namespace {

constexpr std::uint64_t mib = std::uint64_t{1} << 20;
/// A std::string of n bytes is encoded as its length (a std::size_t), then its bytes.
constexpr std::uint64_t string_prefix = sizeof(std::size_t);

/// What a result's reply adds to it, the larger of an inline completion and a fetch reply: the rule
/// a worker checks a result by (worker.cpp, result_envelope_bytes).
std::uint64_t result_envelope() {
  wire::tasks_done_msg inline_done;
  inline_done.done.emplace_back();
  inline_done.results.emplace_back();
  const std::uint64_t done = wire::encode(inline_done).archive.size();
  const std::uint64_t reply =
      wire::encode(wire::fetch_reply_msg{~std::uint64_t{0}, ~std::uint64_t{0}, true}).archive.size();
  return std::max(done, reply);
}

dx::options limits_options(dx::transport_kind kind, std::uint64_t frame, std::uint64_t value) {
  return dx::options{}
      .threads(2)
      .transport(kind)
      .listen("127.0.0.1:0")
      .local_processes(1)
      .head_runs_tasks(false)
      .max_frame_size(frame)
      .max_value_size(value)
      .heartbeat(100ms, 5s);
}

std::vector<int> live_pids(const dx::cluster& cl) {
  std::vector<int> pids;
  for (const auto& w : cl.workers())
    if (w.state == dx::worker_state::active) pids.push_back(w.pid);
  return pids;
}

template <class F>
auto get_within(F& f, std::chrono::seconds limit = 30s) {
  REQUIRE(f.wait_for(limit) == dx::future_status::ready);
  return f.get();
}

/// The task fails with a dx::error whose message names every one of `parts`.
template <class T>
void require_fails_naming(dx::future<T>& f, const std::vector<std::string>& parts) {
  REQUIRE(f.wait_for(30s) == dx::future_status::ready);
  try {
    (void)f.get();
    FAIL("the task succeeded");
  } catch (const dx::error& e) {
    const std::string what = e.what();
    INFO(what);
    for (const auto& p : parts) CHECK_THAT(what, Catch::Matchers::Contains(p));
  }
}

/// The cluster still has its one worker, the same process as `before`, and it runs the next task.
void still_runs(dx::cluster& cl, const std::vector<int>& before, int k) {
  auto f = cl.submit(net_test::square, k);
  CHECK(get_within(f, 10s) == k * k);
  CHECK(live_pids(cl) == before);
}

}  // namespace

TEST_CASE(
    "limits: a result at or just over max_value_size with its reply fails its task alone, naming size, limit "
    "and option",
    "[net][limits]") {
  DX_TRANSPORTS();
  const std::uint64_t limit = 4 * mib;
  dx::cluster cl{limits_options(kind, mib, limit)};
  const auto pids = live_pids(cl);
  REQUIRE(pids.size() == 1);
  const std::uint64_t envelope = result_envelope();

  SECTION("a result whose reply is exactly the limit arrives, in chunks") {
    const auto n = static_cast<int>(limit - envelope - string_prefix);
    auto f = cl.submit(net_test::big_string, n);
    CHECK(get_within(f) == net_test::big_string(n));
  }
  SECTION("a result whose reply is one byte over the limit fails") {
    const auto n = static_cast<int>(limit - envelope - string_prefix + 1);
    auto f = cl.submit(net_test::big_string, n);
    require_fails_naming(
        f, {std::to_string(n + string_prefix) + " bytes", std::to_string(limit) + " bytes", "options::max_value_size"});
  }
  SECTION("a result of exactly the limit fails (its reply is larger)") {
    const auto n = static_cast<int>(limit - string_prefix);
    auto f = cl.submit(net_test::big_string, n);
    require_fails_naming(f, {std::to_string(limit) + " bytes", "options::max_value_size"});
  }
  SECTION("a result just over the limit fails") {
    const auto n = static_cast<int>(limit - string_prefix + 1);
    auto f = cl.submit(net_test::big_string, n);
    require_fails_naming(f, {std::to_string(limit + 1) + " bytes", "options::max_value_size"});
  }
  still_runs(cl, pids, 7);
}

TEST_CASE(
    "limits: arguments at or just over max_value_size fail their task alone at submit, naming size, limit "
    "and option",
    "[net][limits]") {
  DX_TRANSPORTS();
  const std::uint64_t limit = 4 * mib;
  dx::cluster cl{limits_options(kind, mib, limit)};
  const auto pids = live_pids(cl);
  REQUIRE(pids.size() == 1);

  SECTION("an argument well within the limit arrives, in chunks") {
    const std::size_t n = limit - string_prefix - 4096;
    auto f = cl.submit(net_test::length_of, std::string(n, 'a'));
    CHECK(get_within(f) == n);
  }
  SECTION("an argument of exactly the limit fails (its run message is larger)") {
    const std::size_t n = limit - string_prefix;
    auto f = cl.submit(net_test::length_of, std::string(n, 'a'));
    require_fails_naming(f, {std::to_string(limit) + " bytes", "options::max_value_size", "length_of"});
  }
  SECTION("an argument just over the limit fails") {
    const std::size_t n = limit - string_prefix + 1;
    auto f = cl.submit(net_test::length_of, std::string(n, 'a'));
    require_fails_naming(
        f, {std::to_string(limit + 1) + " bytes", std::to_string(limit) + " bytes", "options::max_value_size"});
  }
  SECTION("two arguments within the limit each, over it together") {
    const std::size_t n = limit / 2 + 1;
    auto f = cl.submit(net_test::concat, std::string(n, 'a'), std::string(n, 'b'));
    require_fails_naming(f, {"options::max_value_size"});
  }
  SECTION("tasks whose arguments are over the limit together go in several frames") {
    std::vector<dx::future<std::size_t>> fs;
    const std::size_t n = limit / 3;
    for (int i = 0; i < 6; ++i) fs.push_back(cl.submit(net_test::length_of, std::string(n, 'a')));
    for (auto& f : fs) CHECK(get_within(f) == n);
  }
  still_runs(cl, pids, 9);
}

TEST_CASE("limits: values at and around max_frame_size travel in chunks and the worker lives on", "[net][limits]") {
  // Before chunks, a result whose reply was exactly the frame limit closed the worker's connection,
  // and the task moved on to the next worker, which died too.
  DX_TRANSPORTS();
  dx::cluster cl{limits_options(kind, mib, std::uint64_t{4} << 30)};
  const auto pids = live_pids(cl);
  REQUIRE(pids.size() == 1);
  const std::uint64_t envelope = result_envelope();
  // Encoded sizes: the reply just within a frame, one byte over, the value exactly a frame (its
  // reply over it), and more.
  for (const std::uint64_t encoded : {mib - envelope, mib - envelope + 1, mib, mib + 1, 3 * mib}) {
    INFO("a value of " << encoded << " bytes encoded, frames of " << mib);
    const auto n = static_cast<int>(encoded - string_prefix);
    auto r = cl.submit(net_test::big_string, n);
    CHECK(get_within(r) == net_test::big_string(n));
    auto l = cl.submit(net_test::length_of, std::string(static_cast<std::size_t>(n), 'z'));
    CHECK(get_within(l) == static_cast<std::size_t>(n));
  }
  still_runs(cl, pids, 11);
}

TEST_CASE(
    "limits: values over max_frame_size move in chunks: an argument, a result and a fetch from worker to "
    "worker",
    "[net][limits]") {
  DX_TRANSPORTS();
  dx::cluster cl{dx::options{}
                     .threads(2)
                     .transport(kind)
                     .listen("127.0.0.1:0")
                     .head_runs_tasks(false)
                     .max_frame_size(mib)
                     .heartbeat(100ms, 5s)};
  std::vector<std::unique_ptr<dx::detail::worker_runtime>> workers;
  for (const char* r : {"a", "b"}) {
    dx::detail::worker_config wc;
    wc.connect = cl.endpoint();
    wc.transport = kind;
    wc.name = std::string("holder-") + r;
    wc.resources = {{r, 1.0}};
    wc.max_frame_size = mib;
    wc.connect_timeout = 10s;
    workers.push_back(std::make_unique<dx::detail::worker_runtime>(wc));
    workers.back()->start();
  }
  cl.wait_for_workers(2, 10s);
  const int n = static_cast<int>(5 * mib + 123);
  // Made on a, read on b: b fetches it from a's data port.
  auto made = cl.submit(dx::resources{{"a", 1}}, net_test::big_string, n).share();
  auto read = cl.submit(dx::resources{{"b", 1}}, net_test::length_of, made);
  CHECK(get_within(read) == static_cast<std::size_t>(n));
  CHECK(get_within(made) == net_test::big_string(n));  // fetched by the head
  auto arg = cl.submit(dx::resources{{"b", 1}}, net_test::length_of, net_test::big_string(n));
  CHECK(get_within(arg) == static_cast<std::size_t>(n));
  for (const auto& w : cl.workers()) CHECK(w.state == dx::worker_state::active);
}

TEST_CASE("limits: a large task still on its way to its worker is not dispatched again", "[net][limits]") {
  // The head used to take a worker that reported nothing queued while a large frame was still
  // being sent or handled for a worker that had lost the task, and sent it again.
  dx_support::captured_log log;
  const std::string path = fmt::format("/tmp/dx-limits-runs-{}-{}", ::getpid(), std::rand());
  std::remove(path.c_str());
  {
    dx::cluster cl{limits_options(dx::transport_kind::tcp, 16 * mib, std::uint64_t{4} << 30).heartbeat(10ms, 5s)};
    const auto pids = live_pids(cl);
    REQUIRE(pids.size() == 1);
    // Many heartbeats long in any build (a sanitizer's copies are several times slower).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    const std::size_t n = 40 * mib;
#else
    const std::size_t n = 96 * mib;
#endif
    auto f = cl.submit(limits_test::count_run, path, std::string(n, 'q'));
    CHECK(get_within(f, 60s) == n);
    still_runs(cl, pids, 3);
  }
  std::ifstream in(path);
  std::size_t runs = 0;
  for (std::string line; std::getline(in, line);) ++runs;
  std::remove(path.c_str());
  CHECK(runs == 1);
  CHECK(log.wait_for({"dispatching them again"}, 100ms).empty());
}

TEST_CASE("limits: a streamed frame is refused before the handshake and over max_value_size after it",
          "[net][limits]") {
  dx::cluster cl{limits_options(dx::transport_kind::tcp, mib, 8 * mib)};
  const auto pids = live_pids(cl);
  REQUIRE(pids.size() == 1);
  const auto announce = [](std::uint64_t bytes) {
    wire::frame_header h;
    h.type = static_cast<std::uint16_t>(wire::msg::hello);
    h.flags = wire::frame_streamed;
    h.payload_size = bytes;
    const auto header = wire::encode_header(h);
    return std::string(header.data(), header.size());
  };
  SECTION("before the handshake") {
    dx_support::raw_client c(cl.endpoint());
    auto challenge = c.read_frame();
    REQUIRE(challenge);
    c.send(announce(4 * mib));
    CHECK(c.closed_within(3s));
  }
  SECTION("a chunk that was not announced") {
    dx_support::raw_client c(cl.endpoint());
    REQUIRE(c.read_frame());
    wire::frame_header h;
    h.type = static_cast<std::uint16_t>(wire::msg::hello);
    h.flags = wire::frame_chunk;
    h.payload_size = 16;
    const auto header = wire::encode_header(h);
    c.send(std::string(header.data(), header.size()) + std::string(16, 'x'));
    CHECK(c.closed_within(3s));
  }
  SECTION("after the handshake, over max_value_size") {
    dx_support::raw_client c(cl.endpoint());
    REQUIRE(c.read_frame());
    wire::hello_msg hello;
    hello.role = wire::peer_role::worker;
    hello.threads = 1;
    hello.data_address = "127.0.0.1:1";
    hello.pid = 1;
    hello.name = "raw-peer";
    const auto frame = wire::frame_bytes(wire::encode(hello));
    c.send(frame);
    auto welcome = c.read_frame();
    REQUIRE(welcome);
    REQUIRE(welcome->type == static_cast<std::uint16_t>(wire::msg::welcome));
    c.send(announce(8 * mib + 1));
    CHECK(c.closed_within(3s));
  }
  auto f = cl.submit(net_test::square, 5);
  CHECK(get_within(f, 10s) == 25);
  std::vector<int> real;
  for (int p : live_pids(cl))
    if (p != 1) real.push_back(p);
  CHECK(real == pids);
}

TEST_CASE(
    "transport: a frame over max_frame_size goes in chunks to a trusted peer, in order, and counts the same on "
    "both sides",
    "[transport][tcp][limits]") {
  using namespace transport_harness;
  tr::config cfg;
  cfg.max_frame_size = mib;
  cfg.max_value_size = 16 * mib;
  auto server_side = tr::make_tcp_transport(cfg);
  auto client_side = tr::make_tcp_transport(cfg);
  const bool trust = GENERATE(true, false);
  auto rec = std::make_shared<recorder>();
  std::shared_ptr<tr::connection> accepted;
  std::mutex m;
  const std::string at = server_side->listen("127.0.0.1:0", [&](std::shared_ptr<tr::connection> c) {
    if (trust) c->trust();
    c->set_handler(rec);
    std::lock_guard lk(m);
    accepted = std::move(c);
  });
  auto client_rec = std::make_shared<recorder>();
  auto conn = client_side->connect(at, client_rec);
  std::string archive(3 * mib / 2 + 7, '\0');
  std::string payload(5 * mib + 11, '\0');
  for (std::size_t i = 0; i < archive.size(); ++i) archive[i] = static_cast<char>(i * 7 + 1);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 13 + 5);
  conn->send(make_frame(3, 0, "before"));
  conn->send(make_frame(4, 0, archive, payload));
  conn->send(make_frame(5, 0, "after"));
  if (!trust) {
    REQUIRE(rec->wait_closed());
    CHECK_THAT(rec->closed()[0], Catch::Matchers::Contains("before the handshake"));
    CHECK(rec->frames().size() == 1);
    return;
  }
  REQUIRE(rec->wait_frames(3));
  const auto frames = rec->frames();
  CHECK(frames[0].archive == "before");
  CHECK(frames[1].type == 4);
  CHECK(frames[1].flags == 0);
  CHECK(frames[1].archive == archive);
  REQUIRE(frames[1].payload);
  CHECK(*frames[1].payload == payload);
  CHECK(frames[2].archive == "after");
  std::shared_ptr<tr::connection> server_conn;
  {
    std::lock_guard lk(m);
    server_conn = accepted;
  }
  REQUIRE(server_conn);
  // Counted once on_frame returns, which is just after the recorder saw the last frame.
  for (int i = 0; i < 1000 && server_conn->bytes_received() != conn->bytes_sent(); ++i)
    std::this_thread::sleep_for(5ms);
  CHECK(server_conn->bytes_received() == conn->bytes_sent());
  CHECK(server_conn->bytes_arrived() > conn->bytes_sent());  // the chunks' headers too
  CHECK(rec->closed().empty());
}
