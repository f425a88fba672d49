// Mutual TLS: the TCP transport over TLS (frames, the handshake, refusals with their reasons,
// certificates read again), and a cluster whose head, worker processes and result fetches all
// speak it. Certificates come from a throwaway authority made with the openssl command line.
#include "net_functions.hpp"

#include "cluster/worker.hpp"
#include "transport/transport.hpp"

#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "captured_log.hpp"
#include "processes.hpp"
#include "spawn_self.hpp"
#include "test_pki.hpp"
#include "transport_harness.hpp"

using namespace transport_harness;
using dx_support::captured_log;
using dx_support::test_pki;

namespace {

std::unique_ptr<tr::transport> tls_transport(const dx::tls_options& o) {
  tr::config cfg;
  cfg.tls = tr::make_tls_credentials(o);
  return tr::make_tcp_transport(cfg);
}

/// Connects with `client` to `srv`; the reason the link failed (connect() threw, or the
/// connection closed before an echo came back), or "" when the echo came back.
std::string try_link(tr::transport& client, const server& srv) {
  auto rec = std::make_shared<recorder>();
  std::shared_ptr<tr::connection> conn;
  try {
    conn = client.connect(srv.address(), rec);
  } catch (const std::exception& e) {
    return e.what();
  }
  conn->send(make_frame(1, 0, "ping"));
  dx_support::wait_until(std::chrono::milliseconds(10'000),
                         [&] { return !rec->frames().empty() || !rec->closed().empty(); });
  if (!rec->frames().empty()) return "";
  return rec->closed().empty() ? "no answer" : rec->closed().front();
}

}  // namespace

TEST_CASE("tls: frames round-trip over mutual TLS, small ones gathered, a 16 MiB payload intact", "[transport][tls]") {
  const auto& pki = test_pki::get();
  auto server_side = tls_transport(pki.options("head"));
  server srv(*server_side, true, /*echo=*/true);
  auto client = tls_transport(pki.options("worker"));
  auto rec = std::make_shared<recorder>();
  auto conn = client->connect(srv.address(), rec);
  std::string big(16u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  for (int i = 0; i < 1000; ++i) conn->send(make_frame(2, static_cast<std::uint32_t>(i), std::to_string(i)));
  conn->send(make_frame(3, 0, "big", big));
  conn->send(make_frame(4, 0, "after"));
  REQUIRE(rec->wait_frames(1002));
  const auto frames = rec->frames();
  for (int i = 0; i < 1000; ++i) REQUIRE(frames[static_cast<std::size_t>(i)].archive == std::to_string(i));
  CHECK(checksum(payload_of(frames[1000])) == checksum(big));
  CHECK(frames[1001].archive == "after");
}

TEST_CASE("tls: frames sent right after a connect() on the transport's thread wait for the handshake",
          "[transport][tls]") {
  const auto& pki = test_pki::get();
  auto server_side = tls_transport(pki.options("head"));
  server srv(*server_side, true, /*echo=*/true);
  auto client = tls_transport(pki.options("worker"));
  auto rec = std::make_shared<recorder>();
  std::promise<void> sent;
  client->post([&] {
    auto c = client->connect(srv.address(), rec);  // on the io thread: the handshake is not done yet
    for (int i = 0; i < 10; ++i) c->send(make_frame(1, 0, std::to_string(i)));
    sent.set_value();
  });
  REQUIRE(sent.get_future().wait_for(wait_limit) == std::future_status::ready);
  REQUIRE(rec->wait_frames(10));
  for (int i = 0; i < 10; ++i) CHECK(rec->frames()[static_cast<std::size_t>(i)].archive == std::to_string(i));
}

TEST_CASE("tls: a peer whose certificate fails is refused before its first frame, with the reason on both sides",
          "[transport][tls]") {
  struct bad_peer {
    std::string name, server_reason;
  };
  const auto peer =
      GENERATE(bad_peer{"rogue", "unable to get local issuer certificate"}, bad_peer{"self", "self-signed certificate"},
               bad_peer{"expired", "certificate has expired"});
  const auto& pki = test_pki::get();
  captured_log log;
  auto server_side = tls_transport(pki.options("head"));
  server srv(*server_side, true, true);
  auto client = tls_transport(pki.options(peer.name));  // it trusts the cluster's authority
  const std::string why = try_link(*client, srv);
  INFO(peer.name << ": " << why);
  CHECK_THAT(why, Catch::Matchers::Contains("TLS"));
  CHECK_FALSE(log.wait_for({"refused a TLS connection", peer.server_reason}).empty());
  CHECK(srv.accepted() == 0);  // refused (logged above) without being handed to the server's owner
}

TEST_CASE("tls: a client refuses a server whose certificate its authority did not sign", "[transport][tls]") {
  const auto& pki = test_pki::get();
  auto server_side = tls_transport(pki.options("head"));
  server srv(*server_side, true, true);
  auto client = tls_transport(pki.options("rogue", "other-ca"));
  const std::string why = try_link(*client, srv);
  CHECK_THAT(why, Catch::Matchers::Contains("cannot connect to " + srv.address()));
  // The server sends its authority's certificate too, which this client does not trust.
  CHECK_THAT(why, Catch::Matchers::Contains("certificate verify failed: self-signed certificate in certificate chain"));
}

TEST_CASE("tls: with verify_peer_name, a client refuses a server whose certificate names another host",
          "[transport][tls]") {
  const auto& pki = test_pki::get();
  auto strict = pki.options("worker");
  strict.verify_peer_name = true;
  auto client = tls_transport(strict);
  {
    auto server_side = tls_transport(pki.options("head"));  // for 127.0.0.1
    server srv(*server_side, true, true);
    CHECK(try_link(*client, srv).empty());
  }
  auto server_side = tls_transport(pki.options("elsewhere"));  // for elsewhere.example only
  server srv(*server_side, true, true);
  CHECK_THAT(try_link(*client, srv), Catch::Matchers::Contains("certificate verify failed"));
  auto lenient = tls_transport(pki.options("worker"));  // the default: the authority is enough
  CHECK(try_link(*lenient, srv).empty());
}

TEST_CASE("tls: a client without a certificate is refused when one is required, let in otherwise", "[transport][tls]") {
  const auto& pki = test_pki::get();
  dx::tls_options anonymous;
  anonymous.ca = pki.file("ca.pem");
  {
    captured_log log;
    auto server_side = tls_transport(pki.options("head"));
    server srv(*server_side, true, true);
    auto client = tls_transport(anonymous);
    CHECK_THAT(try_link(*client, srv), Catch::Matchers::Contains("TLS"));
    CHECK_FALSE(log.wait_for({"refused a TLS connection", "peer did not return a certificate"}).empty());
  }
  auto lenient = pki.options("head");
  lenient.require_client_certificate = false;
  auto server_side = tls_transport(lenient);
  server srv(*server_side, true, true);
  auto client = tls_transport(anonymous);
  CHECK(try_link(*client, srv).empty());
  // A certificate that is shown is still checked.
  auto rogue = tls_transport(pki.options("rogue"));
  CHECK_THAT(try_link(*rogue, srv), Catch::Matchers::Contains("TLS"));
}

TEST_CASE("tls: plaintext to a TLS port and TLS to a plain port are refused, each with the reason",
          "[transport][tls]") {
  const auto& pki = test_pki::get();
  captured_log log;
  auto tls_side = tls_transport(pki.options("head"));
  server tls_srv(*tls_side, true, true);
  {
    raw_client plain(tls_srv.address());
    plain.write("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_FALSE(log.wait_for({"refused a TLS connection", "http request"}).empty());
  }
  auto plain_side = tr::make_tcp_transport({});
  server plain_srv(*plain_side, true, true);
  auto client = tls_transport(pki.options("worker"));
  CHECK_THAT(try_link(*client, plain_srv), Catch::Matchers::Contains("TLS"));
  CHECK_FALSE(log.wait_for({"a TLS client on a plain TCP port"}).empty());
  CHECK(tls_srv.accepted() == 0);
}

TEST_CASE("tls: a bad file is an error naming it at start, and a warning on a reload that keeps the old ones",
          "[transport][tls]") {
  const auto& pki = test_pki::get();
  auto missing = pki.options("head");
  missing.certificate = pki.file("nowhere.pem");
  CHECK_THROWS_WITH(tr::make_tls_credentials(missing), Catch::Matchers::Contains("nowhere.pem"));
  auto mismatched = pki.options("head");
  mismatched.private_key = pki.file("worker.key");
  CHECK_THROWS_WITH(tr::make_tls_credentials(mismatched), Catch::Matchers::Contains("does not belong"));
  auto no_ca = pki.options("head");
  no_ca.ca.clear();
  CHECK_THROWS_WITH(tr::make_tls_credentials(no_ca), Catch::Matchers::Contains("authority"));
  auto key_only = pki.options("head");
  key_only.certificate.clear();
  CHECK_THROWS_WITH(tr::make_tls_credentials(key_only), Catch::Matchers::Contains("without its certificate"));

  const dx_support::temp_dir dir("dx_tls_reload");
  const dx::tls_options own = pki.copy_into(dir.path(), "head");
  captured_log log;
  auto server_side = tls_transport(own);
  server srv(*server_side, true, true);
  std::ofstream(own.certificate) << "not a certificate\n";
  dx::reload_tls();
  auto client = tls_transport(pki.options("worker"));
  CHECK(try_link(*client, srv).empty());  // the old certificates still serve
  CHECK_FALSE(log.wait_for({"cert.pem", "stay in use"}).empty());
}

TEST_CASE("tls: certificates changed on disk serve new connections, and open ones go on", "[transport][tls]") {
  const auto& pki = test_pki::get();
  const dx_support::temp_dir dir("dx_tls_reload");
  const dx::tls_options own = pki.copy_into(dir.path(), "head");
  auto server_side = tls_transport(own);
  server srv(*server_side, true, true);

  auto worker = tls_transport(pki.options("worker"));
  auto rec = std::make_shared<recorder>();
  auto open = worker->connect(srv.address(), rec);
  open->send(make_frame(1, 0, "before"));
  REQUIRE(rec->wait_frames(1));
  auto rogue = tls_transport(pki.options("rogue"));  // signed by other-ca; it trusts the cluster's ca
  CHECK_FALSE(try_link(*rogue, srv).empty());

  // The server now trusts other-ca instead (replaced as deployment tools do: write, then rename).
  std::filesystem::copy_file(pki.file("other-ca.pem"), dir.path() / "ca.new");
  std::filesystem::rename(dir.path() / "ca.new", own.ca);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // files are looked at once a second
  CHECK(try_link(*rogue, srv).empty());
  CHECK_FALSE(try_link(*worker, srv).empty());  // a new connection of the cluster's authority: refused
  open->send(make_frame(1, 0, "after"));        // the connection made before the change goes on
  REQUIRE(rec->wait_frames(2));
  CHECK(rec->closed().empty());
}

// ---- a cluster over TLS ---------------------------------------------------------------------------

TEST_CASE("tls cluster: worker processes join over mutual TLS, run tasks, and fetch results from each other",
          "[net][tls]") {
  const auto& pki = test_pki::get();
  pid_t a = 0, b = 0;
  {
    dx::cluster cl{dx::options{}
                       .threads(1)
                       .listen("127.0.0.1:0")
                       .token("tls-test-token")
                       .tls(pki.options("head"))
                       .head_runs_tasks(false)};
    auto worker_args = [&](const std::string& resource) {
      const auto o = pki.options("worker");
      return std::vector<std::string>{
          "--dx-worker", "--connect", cl.endpoint(), "--tls-cert", o.certificate,     "--tls-key", o.private_key,
          "--tls-ca",    o.ca,        "--resources", resource,     "--reconnect-for", "0"};
    };
    a = dx_support::spawn_self(worker_args("a=1"), {"DX_TOKEN=tls-test-token"});
    b = dx_support::spawn_self(worker_args("b=1"), {"DX_TOKEN=tls-test-token"});
    REQUIRE(dx_support::wait_until(std::chrono::milliseconds(20'000), [&] { return cl.workers().size() == 2; }));
    auto made = cl.submit(dx::task_options{}.with_resources({{"a", 1}}), net_test::big_string, 1 << 20);
    auto used = cl.submit(dx::task_options{}.with_resources({{"b", 1}}), net_test::length_of, std::move(made));
    CHECK(used.get() == (1u << 20));
    std::vector<dx::future<int>> squares;
    for (int i = 0; i < 200; ++i) squares.push_back(cl.submit(net_test::square, i));
    long long sum = 0;
    for (auto& f : squares) sum += f.get();
    CHECK(sum == 2646700);
  }  // the head stops its workers
  CHECK(dx_support::reap_child(a, std::chrono::seconds(10)));
  CHECK(dx_support::reap_child(b, std::chrono::seconds(10)));
}

TEST_CASE("tls cluster: local processes of a TLS head are started with its certificates", "[net][tls]") {
  const auto& pki = test_pki::get();
  dx::cluster cl{dx::options{}.threads(1).local_processes(2).tls(pki.options("head")).head_runs_tasks(false)};
  REQUIRE(cl.workers().size() == 2);
  auto big = cl.submit(net_test::big_string, 300000);
  CHECK(cl.submit(net_test::length_of, std::move(big)).get() == 300000u);
}

TEST_CASE("tls cluster: a worker without TLS, or with a certificate of another authority, is refused with the reason",
          "[net][tls]") {
  const auto& pki = test_pki::get();
  captured_log log;
  dx::cluster cl{dx::options{}.threads(1).listen("127.0.0.1:0").tls(pki.options("head")).head_runs_tasks(false)};
  {
    dx::detail::worker_config plain;
    plain.connect = cl.endpoint();
    plain.connect_timeout = std::chrono::milliseconds(1500);
    dx::detail::worker_runtime w(plain);
    CHECK_THROWS_WITH(w.start(), Catch::Matchers::Contains("does it require TLS?"));
  }
  {
    dx::detail::worker_config rogue;
    rogue.connect = cl.endpoint();
    rogue.tls = pki.options("rogue");
    dx::detail::worker_runtime w(rogue);
    CHECK_THROWS_WITH(w.start(), Catch::Matchers::Contains("TLS"));
    CHECK_FALSE(log.wait_for({"refused a TLS connection", "unable to get local issuer certificate"}).empty());
  }
  CHECK(cl.workers().empty());
}
