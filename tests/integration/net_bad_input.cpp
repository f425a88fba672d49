// Hostile and broken peers: raw TCP clients that send garbage to a head, and a raw "head" that
// sends bad tasks to a real worker. The head must close each bad connection and keep serving;
// the worker must report bad tasks as task_failed. Every wait is bounded.
#include "net_functions.hpp"

#include "cluster/auth.hpp"
#include "cluster/worker.hpp"
#include "raw_client.hpp"
#include "transport/transport.hpp"
#include "wire/frame.hpp"
#include "wire/messages.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace wire = dx::wire;

namespace {

using dx_support::bytes_of;
using dx_support::clock_type;
using dx_support::raw_client;

/// Connects and reads the head's challenge.
wire::challenge_msg read_challenge(raw_client& c) {
  auto f = c.read_frame();
  REQUIRE(f);
  REQUIRE(f->type == static_cast<std::uint16_t>(wire::msg::challenge));
  return wire::decode<wire::challenge_msg>(*f);
}

wire::hello_msg raw_hello(std::string proof = {}) {
  wire::hello_msg h;
  h.role = wire::peer_role::worker;
  h.proof = std::move(proof);
  h.threads = 1;
  h.data_address = "127.0.0.1:1";
  h.pid = 1;
  return h;
}

dx::options head_options() {
  return dx::options{}
      .threads(2)
      .listen("127.0.0.1:0")
      .local_processes(1)
      .head_runs_tasks(false)
      .max_frame_size(1 << 20)
      .heartbeat(50ms, 300ms);
}

void still_serves(dx::cluster& cl, int k) {
  auto f = cl.submit(net_test::square, k);
  REQUIRE(f.wait_for(10s) == dx::future_status::ready);
  REQUIRE(f.get() == k * k);
  std::size_t active = 0;
  for (const auto& w : cl.workers()) active += w.state == dx::worker_state::active && w.pid != 1;
  REQUIRE(active == 1);
}

}  // namespace

TEST_CASE("bad input: a head closes broken connections and keeps serving", "[net][bad-input]") {
  dx::cluster cl{head_options()};
  const std::string ep = cl.endpoint();
  still_serves(cl, 2);

  SECTION("random bytes") {
    raw_client c(ep);
    read_challenge(c);
    std::mt19937 rng(42);
    std::string junk(4096, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    c.send(junk);
    CHECK(c.closed_within(3s));
  }
  SECTION("random bytes without reading the challenge") {
    raw_client c(ep);
    c.send(std::string(100, '\xff'));
    CHECK(c.closed_within(3s));
  }
  SECTION("a frame over max_frame_size") {
    raw_client c(ep);
    read_challenge(c);
    wire::frame f = wire::encode(raw_hello());
    f.payload = std::make_shared<const std::string>(std::string((1 << 20) + 16, 'x'));
    const auto header = wire::encode_header(f);
    c.send(std::string(header.data(), header.size()));
    c.send(f.archive + std::string(1000, 'x'));
    CHECK(c.closed_within(3s));
  }
  SECTION("a truncated frame, then the client closes its side") {
    raw_client c(ep);
    read_challenge(c);
    const std::string full = bytes_of(raw_hello());
    c.send(full.substr(0, full.size() - 5));
    c.shutdown_write();
    CHECK(c.closed_within(3s));
  }
  SECTION("a truncated header, then silence") {
    raw_client c(ep);
    read_challenge(c);
    c.send(bytes_of(raw_hello()).substr(0, 10));
    CHECK(c.closed_within(3s));
  }
  SECTION("an unknown message type after a proper handshake") {
    raw_client c(ep);
    read_challenge(c);
    c.send(bytes_of(raw_hello()));
    auto w = c.read_frame();
    REQUIRE(w);
    REQUIRE(w->type == static_cast<std::uint16_t>(wire::msg::welcome));
    wire::frame f;
    f.type = 99;
    f.archive = "abc";
    c.send(wire::frame_bytes(f));
    CHECK(c.closed_within(3s));
  }
  SECTION("a message the head never accepts (run_task) after a proper handshake") {
    raw_client c(ep);
    read_challenge(c);
    c.send(bytes_of(raw_hello()));
    auto w = c.read_frame();
    REQUIRE(w);
    REQUIRE(w->type == static_cast<std::uint16_t>(wire::msg::welcome));
    c.send(bytes_of(wire::run_task_msg{1, 0, "net_test::square", {}}));
    CHECK(c.closed_within(3s));
  }
  SECTION("a wrong protocol version") {
    raw_client c(ep);
    read_challenge(c);
    std::string bytes = bytes_of(raw_hello());
    bytes[4] = 7;  // u16 version follows the u32 magic
    bytes[5] = 0;
    c.send(bytes);
    CHECK(c.closed_within(3s));
  }
  SECTION("a wrong magic") {
    raw_client c(ep);
    read_challenge(c);
    std::string bytes = bytes_of(raw_hello());
    bytes[0] = 'X';
    c.send(bytes);
    CHECK(c.closed_within(3s));
  }
  SECTION("a message other than hello first") {
    raw_client c(ep);
    read_challenge(c);
    c.send(bytes_of(wire::heartbeat_msg{}));
    CHECK(c.closed_within(3s));
  }
  SECTION("an undecodable hello body") {
    raw_client c(ep);
    read_challenge(c);
    wire::frame f;
    f.type = static_cast<std::uint16_t>(wire::msg::hello);
    f.archive = std::string("\x01\x02\x03garbage\xff\xff\xff\xff\xff\xff\xff\x7f", 18);
    c.send(wire::frame_bytes(f));
    CHECK(c.closed_within(3s));
  }
  SECTION("a hello with trailing bytes in its archive") {
    raw_client c(ep);
    read_challenge(c);
    wire::frame f = wire::encode(raw_hello());
    f.archive += "xyz";
    c.send(wire::frame_bytes(f));
    CHECK(c.closed_within(3s));
  }
  SECTION("a connection that sends nothing is closed after heartbeat_timeout") {
    raw_client c(ep);
    const auto t0 = clock_type::now();
    read_challenge(c);
    CHECK(c.closed_within(3s));
    CHECK(clock_type::now() - t0 >= 250ms);
  }
  SECTION("a worker that goes silent after the handshake is removed") {
    raw_client c(ep);
    read_challenge(c);
    c.send(bytes_of(raw_hello()));
    auto w = c.read_frame();
    REQUIRE(w);
    REQUIRE(w->type == static_cast<std::uint16_t>(wire::msg::welcome));
    CHECK(c.closed_within(3s));
  }
  still_serves(cl, 3);
}

TEST_CASE("bad input: a head with a token rejects bad proofs", "[net][bad-input]") {
  dx::cluster cl{head_options().token("secret")};
  const std::string ep = cl.endpoint();
  still_serves(cl, 2);

  auto expect_reject = [&](const std::string& proof, const std::string& why) {
    raw_client c(ep);
    auto ch = read_challenge(c);
    CHECK(ch.token_required);
    c.send(bytes_of(raw_hello(proof)));
    auto r = c.read_frame(3s);
    REQUIRE(r);
    REQUIRE(r->type == static_cast<std::uint16_t>(wire::msg::reject));
    CHECK(wire::decode<wire::reject_msg>(*r).reason.find(why) != std::string::npos);
    CHECK(c.closed_within(3s));
  };
  SECTION("a wrong proof") { expect_reject(std::string(32, 'z'), "wrong token"); }
  SECTION("a proof under another token") {
    raw_client probe(ep);
    auto ch = read_challenge(probe);
    // A proof for a different nonce (this connection's) under the right token is still wrong
    // on another connection.
    expect_reject(dx::detail::prove("secret", ch.nonce), "wrong token");
  }
  SECTION("a missing proof") { expect_reject("", "no token"); }
  SECTION("the right proof is welcomed") {
    raw_client c(ep);
    auto ch = read_challenge(c);
    c.send(bytes_of(raw_hello(dx::detail::prove("secret", ch.nonce))));
    auto r = c.read_frame(3s);
    REQUIRE(r);
    CHECK(r->type == static_cast<std::uint16_t>(wire::msg::welcome));
  }
  still_serves(cl, 3);
}

TEST_CASE("bad input: a head refuses a worker name it cannot take, with the reason", "[net][bad-input][names]") {
  dx::cluster cl{head_options()};
  const std::string ep = cl.endpoint();
  still_serves(cl, 2);
  auto answer_to = [&](const std::string& name, const std::string& head_key = {}) {
    raw_client c(ep);
    read_challenge(c);
    wire::hello_msg h = raw_hello();
    h.name = name;
    h.head_key = head_key;
    c.send(bytes_of(h));
    auto r = c.read_frame(3s);
    REQUIRE(r);
    if (r->type == static_cast<std::uint16_t>(wire::msg::welcome))
      return "welcome " + wire::decode<wire::welcome_msg>(*r).worker_id;
    REQUIRE(r->type == static_cast<std::uint16_t>(wire::msg::reject));
    CHECK(c.closed_within(3s));
    return wire::decode<wire::reject_msg>(*r).reason;
  };
  SECTION("a control character") {
    CHECK(answer_to("alpha\nbeta") ==
          "not a worker name: it holds byte 0x0a; only letters, digits and .-_:@+ are allowed");
  }
  SECTION("a space") { CHECK(answer_to("a b").find("it holds ' '") != std::string::npos); }
  SECTION("a name too long") {
    // Within the 64 KiB a frame may have before the handshake (a larger hello is refused unread).
    CHECK(answer_to(std::string(60000, 'x')) == "not a worker name: it has 60000 characters, at most 64 are allowed");
  }
  SECTION("the head's own name without the head's key") {
    CHECK(answer_to("head").find("'head' is the name of the head's own threads") != std::string::npos);
    CHECK(answer_to("head", "guessed").find("'head' is the name of the head's own threads") != std::string::npos);
  }
  SECTION("none") { CHECK(answer_to("none").find("'none' means no worker") != std::string::npos); }
  SECTION("the name of a live worker") {
    const std::string taken = dx::detail::host_name() + "-1";  // the worker the head started
    CHECK(answer_to(taken).find("a worker named '" + taken + "' is already connected") != std::string::npos);
  }
  SECTION("a good name is welcomed under that name; a wrong key changes nothing") {
    CHECK(answer_to("beta") == "welcome beta");
    CHECK(answer_to("gamma", "guessed") == "welcome gamma");
  }
  still_serves(cl, 3);
  // Nothing refused was recorded.
  for (const auto& w : cl.workers())
    CHECK((w.id == dx::detail::host_name() + "-1" || w.id == "beta" || w.id == "gamma"));
}

namespace {

/// A raw "head": accepts one worker, completes the handshake itself, records what it receives.
class raw_head : public dx::transport::handler {
 public:
  void on_frame(dx::transport::connection& c, wire::frame&& f) override {
    if (f.type == static_cast<std::uint16_t>(wire::msg::hello)) {
      c.send(wire::encode(wire::welcome_msg{"w7", 100, 5000, 64 * 1024}));
    }
    std::lock_guard lk(m_);
    frames_.push_back(std::move(f));
    cv_.notify_all();
  }
  void on_closed(dx::transport::connection&, const std::string&) override {
    std::lock_guard lk(m_);
    closed_ = true;
    cv_.notify_all();
  }
  /// What the worker reported for a task: a failure, or a completion with its inline bytes.
  struct outcome {
    std::optional<wire::task_failed_msg> failed;
    std::optional<wire::task_done_msg> done;
    std::string inline_bytes;
  };
  /// The first report for `task` (task_failed, task_done or an entry of tasks_done), within 10 s.
  std::optional<outcome> wait_result(std::uint64_t task) {
    std::unique_lock lk(m_);
    std::optional<outcome> out;
    cv_.wait_for(lk, 10s, [&] {
      for (const auto& f : frames_) {
        switch (static_cast<wire::msg>(f.type)) {
          case wire::msg::task_failed: {
            auto m = wire::decode<wire::task_failed_msg>(f);
            if (m.task_id == task) out = outcome{m, std::nullopt, {}};
            break;
          }
          case wire::msg::task_done: {
            auto m = wire::decode<wire::task_done_msg>(f);
            if (m.task_id == task) out = outcome{std::nullopt, m, f.payload ? *f.payload : std::string()};
            break;
          }
          case wire::msg::tasks_done: {
            auto b = wire::decode<wire::tasks_done_msg>(f);
            for (std::size_t i = 0; i < b.done.size(); ++i)
              if (b.done[i].task_id == task)
                out = outcome{std::nullopt, b.done[i], i < b.results.size() ? b.results[i] : std::string()};
            break;
          }
          default:
            break;
        }
        if (out) return true;
      }
      return false;
    });
    return out;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<wire::frame> frames_;
  bool closed_ = false;
};

}  // namespace

TEST_CASE("bad input: a worker reports unknown functions and undecodable arguments", "[net][bad-input]") {
  auto net = dx::transport::make_tcp_transport({});
  auto handler = std::make_shared<raw_head>();
  std::mutex m;
  std::condition_variable cv;
  std::shared_ptr<dx::transport::connection> conn;
  const std::string addr = net->listen("127.0.0.1:0", [&](std::shared_ptr<dx::transport::connection> c) {
    c->set_handler(handler);
    c->send(wire::encode(wire::challenge_msg{"nonce-nonce-nonce", false}));
    std::lock_guard lk(m);
    conn = std::move(c);
    cv.notify_all();
  });

  dx::detail::worker_config cfg;
  cfg.connect = addr;
  cfg.threads = 1;
  cfg.connect_timeout = 5s;
  dx::detail::worker_runtime worker(cfg);
  worker.start();
  CHECK(worker.id() == "w7");
  {
    std::unique_lock lk(m);
    REQUIRE(cv.wait_for(lk, 5s, [&] { return conn != nullptr; }));
  }

  auto arg_bytes = [](int v) {
    wire::arg_ref a;
    dx::detail::write_value(a.bytes, v);
    return a;
  };

  conn->send(wire::encode(wire::run_task_msg{1, 0, "no.such.function", {arg_bytes(3)}}));
  conn->send(wire::encode(wire::run_task_msg{2, 0, "net_test::square", {wire::arg_ref{false, "\x01", 0, {}}}}));
  conn->send(wire::encode(wire::run_task_msg{3, 0, "net_test::square", {}}));
  conn->send(wire::encode(wire::run_task_msg{4, 0, "net_test::square", {arg_bytes(3), arg_bytes(4)}}));
  conn->send(wire::encode(wire::run_task_msg{5, 0, "net_test::square", {arg_bytes(9)}}));
  // A reference to a result no holder has: the input is lost.
  conn->send(wire::encode(wire::run_task_msg{6, 0, "net_test::square", {wire::arg_ref{true, {}, 77, {}}}}));

  auto failed = [&](std::uint64_t id) {
    auto f = handler->wait_result(id);
    REQUIRE(f);
    REQUIRE(f->failed);
    return *f->failed;
  };
  auto f1 = failed(1);
  CHECK(f1.kind == wire::failure_kind::not_registered);
  CHECK(f1.message.find("no.such.function") != std::string::npos);
  CHECK(failed(2).kind == wire::failure_kind::bad_arguments);
  CHECK(failed(3).kind == wire::failure_kind::bad_arguments);
  CHECK(failed(4).kind == wire::failure_kind::bad_arguments);
  auto done = handler->wait_result(5);
  REQUIRE(done);
  REQUIRE(done->done);
  REQUIRE(done->done->inline_result);
  CHECK(dx::detail::read_value<int>(done->inline_bytes) == 81);
  auto f6 = failed(6);
  CHECK((f6.kind == wire::failure_kind::input_lost || f6.kind == wire::failure_kind::bad_arguments));

  worker.kill();
  net->stop();
}
