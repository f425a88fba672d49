// Conformance tests of the TCP transport against the contract in transport/transport.hpp, over
// loopback. Every wait is bounded (10 s) and REQUIREd to succeed.
#include "transport/transport.hpp"

#include "transport/asio.hpp"
#include "wire/frame.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "transport_harness.hpp"

namespace {
using namespace transport_harness;
}  // namespace

TEST_CASE("listening on 127.0.0.1:0 returns the address actually bound", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  const std::string address = t->listen("127.0.0.1:0", [](std::shared_ptr<tr::connection>) {});
  REQUIRE(address.rfind("127.0.0.1:", 0) == 0);
  REQUIRE(port_of(address) != 0);
  raw_client probe(address);  // throws if nothing listens there
  REQUIRE(probe.socket.is_open());
}

TEST_CASE("listening on a bad or busy address throws dx::error naming it", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  const std::string address = t->listen("127.0.0.1:0", [](std::shared_ptr<tr::connection>) {});
  auto other = tr::make_tcp_transport({});
  REQUIRE_THROWS_WITH(other->listen(address, [](std::shared_ptr<tr::connection>) {}),
                      Catch::Matchers::Contains("cannot listen on " + address));
  REQUIRE_THROWS_AS(other->listen("127.0.0.1:99999", [](std::shared_ptr<tr::connection>) {}), dx::error);
  REQUIRE_THROWS_WITH(other->listen("no-port", [](std::shared_ptr<tr::connection>) {}),
                      Catch::Matchers::Contains("no-port"));
}

TEST_CASE("frames round-trip in both directions with type, flags, archive and payload", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t, true, /*echo=*/true);
  auto rec = std::make_shared<recorder>();
  auto conn = t->connect(srv.address(), rec);
  REQUIRE(conn->remote_address() == srv.address());

  conn->send(make_frame(7, 0xdeadbeef, "archive bytes", "payload bytes"));
  conn->send(make_frame(8, 1, "", "payload only"));
  conn->send(make_frame(9, 2, "archive only"));
  conn->send(make_frame(10, 3, ""));
  REQUIRE(rec->wait_frames(4));
  REQUIRE(srv.wait_accepted(1));

  for (const auto& frames : {srv.at(0).rec->frames(), rec->frames()}) {
    REQUIRE(frames.size() == 4);
    CHECK(frames[0].type == 7);
    CHECK(frames[0].flags == 0x1eadbeef);  // the two high bits are the transport's (wire::frame_transport_flags)
    CHECK(frames[0].archive == "archive bytes");
    CHECK(payload_of(frames[0]) == "payload bytes");
    CHECK(frames[1].archive.empty());
    CHECK(payload_of(frames[1]) == "payload only");
    CHECK(frames[2].archive == "archive only");
    CHECK_FALSE(frames[2].payload);
    CHECK(frames[3].type == 10);
    CHECK(frames[3].body_size() == 0);
  }
  const std::string server_side = srv.at(0).conn->remote_address();
  CHECK(server_side.rfind("127.0.0.1:", 0) == 0);
  CHECK(port_of(server_side) != port_of(srv.address()));
}

TEST_CASE("10,000 small frames sent from several threads keep each thread's order", "[transport][tcp]") {
  const int threads = GENERATE(1, 2, 4);
  constexpr int total = 10000;
  const int per_thread = total / threads;
  auto t = tr::make_tcp_transport({});
  server srv(*t);
  auto conn = t->connect(srv.address(), std::make_shared<recorder>());

  std::vector<std::thread> senders;
  for (int k = 0; k < threads; ++k)
    senders.emplace_back([&, k] {
      for (int i = 0; i < per_thread; ++i) conn->send(make_frame(1, static_cast<std::uint32_t>(k), std::to_string(i)));
    });
  for (auto& s : senders) s.join();

  REQUIRE(srv.wait_accepted(1));
  auto rec = srv.at(0).rec;
  REQUIRE(rec->wait_frames(static_cast<std::size_t>(per_thread * threads)));
  std::map<std::uint32_t, int> next;
  for (const auto& f : rec->frames()) {
    REQUIRE(f.flags < static_cast<std::uint32_t>(threads));
    REQUIRE(std::stoi(f.archive) == next[f.flags]);
    ++next[f.flags];
  }
  for (int k = 0; k < threads; ++k) CHECK(next[static_cast<std::uint32_t>(k)] == per_thread);
}

TEST_CASE("a 64 MiB payload arrives intact", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t);
  auto conn = t->connect(srv.address(), std::make_shared<recorder>());

  std::string big(std::size_t{64} << 20, '\0');
  std::uint64_t x = 88172645463325252ull;
  for (std::size_t i = 0; i < big.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(big.data() + i, &x, 8);
  }
  const std::uint64_t sum = checksum(big);
  conn->send(make_frame(3, 0, "header", std::move(big)));
  conn->send(make_frame(4, 0, "after"));

  REQUIRE(srv.wait_accepted(1));
  auto rec = srv.at(0).rec;
  REQUIRE(rec->wait_frames(2));
  const auto frames = rec->frames();
  REQUIRE(frames[0].payload);
  REQUIRE(frames[0].payload->size() == std::size_t{64} << 20);
  CHECK(checksum(*frames[0].payload) == sum);
  CHECK(frames[0].archive == "header");
  CHECK(frames[1].archive == "after");
}

TEST_CASE("a frame over max_frame_size closes only its connection, naming the limit", "[transport][tcp]") {
  tr::config small;
  small.max_frame_size = std::uint64_t{1} << 20;
  auto server_side = tr::make_tcp_transport(small);
  auto client_side = tr::make_tcp_transport({});
  server srv(*server_side, true, /*echo=*/true);

  auto rec_a = std::make_shared<recorder>();
  auto rec_b = std::make_shared<recorder>();
  auto a = client_side->connect(srv.address(), rec_a);
  auto b = client_side->connect(srv.address(), rec_b);
  b->send(make_frame(1, 0, "before"));
  REQUIRE(rec_b->wait_frames(1));  // b is accepted, so a was accepted first

  a->send(make_frame(1, 0, "", std::string((std::size_t{2} << 20), 'x')));
  REQUIRE(srv.wait_accepted(2));
  auto rec_server_a = srv.at(0).rec;
  REQUIRE(rec_server_a->wait_closed());
  REQUIRE(rec_server_a->closed().size() == 1);
  CHECK_THAT(rec_server_a->closed()[0], Catch::Matchers::Contains("over the limit of 1048576 bytes"));
  REQUIRE(rec_a->wait_closed());

  b->send(make_frame(1, 0, "after"));
  REQUIRE(rec_b->wait_frames(2));
  CHECK(rec_b->frames()[1].archive == "after");
  CHECK(rec_b->closed().empty());
  CHECK(srv.at(1).rec->closed().empty());
}

TEST_CASE("garbage bytes close the connection as not a dx frame", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t);
  raw_client raw(srv.address());
  std::string garbage(64, '\0');
  std::uint32_t x = 12345;
  for (char& c : garbage) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  raw.write(garbage);
  REQUIRE(srv.wait_accepted(1));
  auto rec = srv.at(0).rec;
  REQUIRE(rec->wait_closed());
  CHECK_THAT(rec->closed()[0], Catch::Matchers::Contains("not a dx frame"));
  CHECK(rec->frames().empty());
}

TEST_CASE("a frame of another protocol version closes the connection", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t);
  raw_client raw(srv.address());
  const wire::frame good = make_frame(1, 0, "ok");
  const auto good_header = wire::encode_header(good);
  auto bad_header = good_header;
  bad_header[4] = static_cast<char>(wire::protocol_version + 1);  // version, little-endian u16 after the magic
  bad_header[5] = 0;
  raw.write(std::string(good_header.data(), good_header.size()) + good.archive +
            std::string(bad_header.data(), bad_header.size()) + good.archive);
  REQUIRE(srv.wait_accepted(1));
  auto rec = srv.at(0).rec;
  REQUIRE(rec->wait_closed());
  CHECK_THAT(rec->closed()[0],
             Catch::Matchers::Contains(fmt::format("protocol version {}", wire::protocol_version + 1)));
  REQUIRE(rec->frames().size() == 1);  // the frame before the bad one is still delivered
  CHECK(rec->frames()[0].archive == "ok");
}

TEST_CASE("connecting to a closed port throws dx::error naming the address", "[transport][tcp]") {
  std::string address;
  {
    dx::asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(dx::asio::ip::make_address("127.0.0.1"), 0));
    address = "127.0.0.1:" + std::to_string(probe.local_endpoint().port());
  }
  auto t = tr::make_tcp_transport({});
  REQUIRE_THROWS_AS(t->connect(address, std::make_shared<recorder>()), dx::error);
  REQUIRE_THROWS_WITH(t->connect(address, std::make_shared<recorder>()),
                      Catch::Matchers::Contains("cannot connect to " + address));
  REQUIRE_THROWS_WITH(t->connect("nonsense", std::make_shared<recorder>()),
                      Catch::Matchers::Contains("cannot connect to nonsense"));
}

TEST_CASE("stop() delivers on_closed once for every open connection", "[transport][tcp]") {
  auto server_side = tr::make_tcp_transport({});
  auto client_side = tr::make_tcp_transport({});
  server srv(*server_side);
  std::vector<std::shared_ptr<recorder>> clients;
  std::vector<std::shared_ptr<tr::connection>> conns;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_shared<recorder>());
    conns.push_back(client_side->connect(srv.address(), clients.back()));
  }
  REQUIRE(srv.wait_accepted(3));

  server_side->stop();
  for (int i = 0; i < 3; ++i) {
    // stop() returned, so its on_closed calls have been made.
    REQUIRE(srv.at(i).rec->closed() == std::vector<std::string>{"transport stopped"});
    REQUIRE(clients[i]->wait_closed());
  }
  server_side->stop();
  server_side.reset();
  client_side->stop();
  for (int i = 0; i < 3; ++i) {
    CHECK(srv.at(i).rec->closed().size() == 1);
    CHECK(clients[i]->closed().size() == 1);
  }
  conns[0]->send(make_frame(1, 0, "after stop"));  // dropped silently
  conns[0]->close("after stop");
}

TEST_CASE("a peer's close gives on_closed on both sides, once", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t);
  auto rec = std::make_shared<recorder>();
  auto conn = t->connect(srv.address(), rec);
  REQUIRE(srv.wait_accepted(1));
  conn->close("done here");
  conn->close("second close is ignored");
  REQUIRE(rec->wait_closed());
  REQUIRE(srv.at(0).rec->wait_closed());
  t->stop();
  CHECK(rec->closed() == std::vector<std::string>{"done here"});
  CHECK(srv.at(0).rec->closed() == std::vector<std::string>{"connection closed by peer"});
}

TEST_CASE("close() sends the frames queued before it and drops those after", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t);
  auto conn = t->connect(srv.address(), std::make_shared<recorder>());
  for (int i = 0; i < 1000; ++i) conn->send(make_frame(1, 0, std::to_string(i), std::string(1000, 'p')));
  conn->close("finished");
  for (int i = 0; i < 10; ++i) conn->send(make_frame(2, 0, "after close"));

  REQUIRE(srv.wait_accepted(1));
  auto rec = srv.at(0).rec;
  REQUIRE(rec->wait_closed());
  const auto frames = rec->frames();
  REQUIRE(frames.size() == 1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(frames[i].archive == std::to_string(i));
  CHECK_FALSE(rec->frame_after_close());
}

TEST_CASE("frames that arrive before set_handler are held, then delivered in order", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t, /*attach=*/false);
  auto conn = t->connect(srv.address(), std::make_shared<recorder>());
  for (int i = 0; i < 3; ++i) conn->send(make_frame(1, 0, std::to_string(i)));
  conn->close("bye");
  REQUIRE(srv.wait_accepted(1));
  std::this_thread::sleep_for(300ms);  // let the frames and the end of stream arrive unhandled

  auto late = srv.at(0);
  late.conn->set_handler(late.rec);
  REQUIRE(late.rec->wait_closed());
  const auto frames = late.rec->frames();
  REQUIRE(frames.size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(frames[i].archive == std::to_string(i));
  CHECK(late.rec->closed() == std::vector<std::string>{"connection closed by peer"});
  CHECK_FALSE(late.rec->frame_after_close());
}

TEST_CASE("every callback runs on the transport's one thread", "[transport][tcp]") {
  auto t = tr::make_tcp_transport({});
  server srv(*t, true, /*echo=*/true);
  auto rec = std::make_shared<recorder>();
  auto conn = t->connect(srv.address(), rec);
  conn->send(make_frame(1, 0, "x"));
  REQUIRE(rec->wait_frames(1));
  std::promise<std::thread::id> posted;
  t->post([&] { posted.set_value(std::this_thread::get_id()); });
  auto posted_id = posted.get_future();
  REQUIRE(posted_id.wait_for(wait_limit) == std::future_status::ready);
  const auto io_thread = posted_id.get();
  CHECK(io_thread != std::this_thread::get_id());
  conn->close("done");
  REQUIRE(rec->wait_closed());
  REQUIRE(srv.at(0).rec->wait_closed());

  std::set<std::thread::id> all = srv.accept_threads();
  for (auto& r : {rec, srv.at(0).rec})
    for (auto id : r->threads()) all.insert(id);
  CHECK(all == std::set<std::thread::id>{io_thread});
}

TEST_CASE("connect() from a callback works and stop() from a callback does not deadlock", "[transport][tcp]") {
  auto server_side = tr::make_tcp_transport({});
  server srv(*server_side);
  auto t = tr::make_tcp_transport({});

  std::promise<std::shared_ptr<tr::connection>> made;
  std::promise<std::string> refused;
  std::string closed_port;
  {
    dx::asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(dx::asio::ip::make_address("127.0.0.1"), 0));
    closed_port = "127.0.0.1:" + std::to_string(probe.local_endpoint().port());
  }
  auto rec = std::make_shared<recorder>();
  rec->hook = [&t](tr::connection&, const wire::frame& f) {
    if (f.archive == "stop") t->stop();  // on the io thread
  };
  t->post([&] {
    made.set_value(t->connect(srv.address(), rec));
    try {
      t->connect(closed_port, std::make_shared<recorder>());
      refused.set_value("no error");
    } catch (const dx::error& e) {
      refused.set_value(e.what());
    }
  });
  auto made_f = made.get_future();
  auto refused_f = refused.get_future();
  REQUIRE(made_f.wait_for(wait_limit) == std::future_status::ready);
  REQUIRE(refused_f.wait_for(wait_limit) == std::future_status::ready);
  CHECK_THAT(refused_f.get(), Catch::Matchers::Contains("cannot connect to " + closed_port));
  auto conn = made_f.get();

  REQUIRE(srv.wait_accepted(1));
  srv.at(0).conn->send(make_frame(1, 0, "hello"));
  srv.at(0).conn->send(make_frame(1, 0, "stop"));
  REQUIRE(rec->wait_closed());
  CHECK(rec->closed() == std::vector<std::string>{"transport stopped"});
  REQUIRE(srv.at(0).rec->wait_closed());
  t.reset();  // joins the io thread from here
  CHECK(rec->closed().size() == 1);
  CHECK(rec->frames().size() == 2);
}

TEST_CASE("a transport destroyed with reads and writes in flight shuts down cleanly", "[transport][tcp]") {
  auto server_side = tr::make_tcp_transport({});
  server srv(*server_side, /*attach=*/true, /*echo=*/true);
  auto t = tr::make_tcp_transport({});
  auto rec = std::make_shared<recorder>();
  auto conn = t->connect(srv.address(), rec);
  const auto payload = std::make_shared<const std::string>(std::size_t{8} << 20, 'z');
  for (int i = 0; i < 8; ++i) {
    wire::frame f = make_frame(1, 0, "big");
    f.payload = payload;  // the same buffer, sent eight times
    conn->send(std::move(f));
  }
  t.reset();
  REQUIRE(rec->closed() == std::vector<std::string>{"transport stopped"});
  server_side.reset();
  conn->send(make_frame(1, 0, "after destruction"));  // dropped, no crash
}
