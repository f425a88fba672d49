// The head's HTTP endpoint over TLS: https and wss with the cluster's certificates, clients
// refused for what they show (nothing of TLS, another authority's certificate, none where one is
// required) with the reason logged while other clients are served, the limits and the deadline
// kept over TLS, and certificates replaced on disk serving the connections that come after.
#include "observe/http_server.hpp"
#include "transport/transport.hpp"

#include <dx/dx.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "captured_log.hpp"
#include "http_client.hpp"
#include "https_client.hpp"
#include "processes.hpp"
#include "scoped_env.hpp"
#include "temp_dir.hpp"
#include "test_pki.hpp"

namespace http_test = dx_support::http;
namespace https = dx_support::https;
using dx::detail::http_request;
using dx::detail::http_response;
using dx::detail::http_server;
using dx_support::captured_log;
using dx_support::test_pki;
using nlohmann::json;
using namespace std::chrono_literals;

namespace https_test {
std::int64_t chunk_sum(dx::chunk c) {
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += i;
  return s;
}
}  // namespace https_test

DX_REMOTE(https_test::chunk_sum);

namespace {

/// A server over TLS that answers every request with its path.
struct tls_echo {
  explicit tls_echo(const dx::tls_options& o, std::chrono::milliseconds deadline = 10s)
      : server(
            "127.0.0.1:0",
            [](const http_request& r) {
              return http_response{200, "text/plain; charset=utf-8", "path " + r.path + " peer " + r.peer};
            },
            deadline, {}, dx::transport::make_tls_credentials(o)) {}
  std::string ep() const { return server.endpoint(); }
  http_server server;
};

dx::options served(const dx::tls_options& tls) {
  return dx::options{}.threads(2).http("127.0.0.1:0").persist_cost_model(false).tls(tls);
}

/// A client that trusts the cluster's authority and shows no certificate.
dx::tls_options without_certificate() {
  dx::tls_options o;
  o.ca = test_pki::get().file("ca.pem");
  return o;
}

}  // namespace

TEST_CASE("https: GET /metrics and /api/state of a cluster with a client certificate", "[net][https]") {
  const auto& pki = test_pki::get();
  dx::cluster cl{served(pki.options("head"))};
  const std::string ep = cl.http_endpoint();
  REQUIRE(ep.rfind("127.0.0.1:", 0) == 0);  // host:port, as without TLS

  const auto metrics = https::request(ep, pki.options("worker"), "GET", "/metrics");
  INFO(metrics.error);
  REQUIRE(metrics.status == 200);
  CHECK(metrics.body.find("dx_http_requests_total") != std::string::npos);

  const auto state = https::request(ep, pki.options("worker"), "GET", "/api/state");
  INFO(state.error);
  REQUIRE(state.status == 200);
  CHECK(json::parse(state.body).is_object());

  // The same port does not speak plain HTTP.
  CHECK(http_test::get(ep, "/metrics").status == 0);
}

TEST_CASE("https: plain HTTP to the TLS port is refused with the reason while a TLS client is served", "[net][https]") {
  const auto& pki = test_pki::get();
  captured_log log;
  tls_echo srv(pki.options("head"));

  // A plaintext client connects first and waits: the server is in its handshake with it.
  const int plain = http_test::connect_to(srv.ep());
  const auto served = https::request(srv.ep(), pki.options("worker"), "GET", "/served");
  INFO(served.error);
  CHECK(served.status == 200);
  CHECK(served.body.rfind("path /served", 0) == 0);

  http_test::send_all(plain, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string answer = http_test::read_all(plain, 5s);
  ::close(plain);
  CHECK(answer.find("HTTP/1.") == std::string::npos);  // no HTTP answer: the connection is closed
  CHECK_FALSE(log.wait_for({"refused a TLS connection from 127.0.0.1:", "http request"}).empty());

  // The server goes on.
  CHECK(https::request(srv.ep(), pki.options("worker"), "GET", "/after").status == 200);
}

TEST_CASE("https: a client certificate from another authority, or none where one is required, is refused",
          "[net][https]") {
  const auto& pki = test_pki::get();
  captured_log log;
  tls_echo srv(pki.options("head"));

  SECTION("another authority") {
    // rogue.pem is signed by other-ca; the client itself trusts the cluster's authority.
    const auto r = https::request(srv.ep(), pki.options("rogue"), "GET", "/x");
    CHECK(r.status == 0);
    const std::string line = log.wait_for({"refused a TLS connection from 127.0.0.1:", "certificate verify failed"});
    INFO(line);
    CHECK_FALSE(line.empty());
  }
  SECTION("no certificate") {
    const auto r = https::request(srv.ep(), without_certificate(), "GET", "/x");
    CHECK(r.status == 0);
    const std::string line = log.wait_for({"refused a TLS connection from 127.0.0.1:", "certificate"});
    INFO(line);
    CHECK_FALSE(line.empty());
  }
  CHECK(https::request(srv.ep(), pki.options("worker"), "GET", "/still").status == 200);
}

TEST_CASE("https: with require_client_certificate off a client without a certificate is served", "[net][https]") {
  const auto& pki = test_pki::get();
  auto o = pki.options("head");
  o.require_client_certificate = false;
  tls_echo srv(o);
  const auto r = https::request(srv.ep(), without_certificate(), "GET", "/open");
  INFO(r.error);
  CHECK(r.status == 200);
  // One that shows a certificate is still checked.
  CHECK(https::request(srv.ep(), pki.options("rogue"), "GET", "/x").status == 0);
  CHECK(https::request(srv.ep(), pki.options("worker"), "GET", "/x").status == 200);
}

TEST_CASE("https: the limits and the deadline hold over TLS", "[net][https]") {
  const auto& pki = test_pki::get();
  captured_log log;
  tls_echo srv(pki.options("head"), 1000ms);

  SECTION("headers over 8 KiB: 431") {
    const auto r = https::request(srv.ep(), pki.options("worker"), "GET", "/big", {},
                                  {{"X-Big", std::string(dx::detail::http_limits::header_bytes, 'x')}});
    INFO(r.error);
    CHECK(r.status == 431);
  }
  SECTION("a client that never starts its handshake is cut at the deadline, and the reason logged") {
    const int fd = http_test::connect_to(srv.ep());
    const auto start = std::chrono::steady_clock::now();
    http_test::read_all(fd, 5s);
    ::close(fd);
    CHECK(std::chrono::steady_clock::now() - start < 4s);
    CHECK_FALSE(log.wait_for({"refused a TLS connection from 127.0.0.1:", "no TLS handshake within 1000 ms"}).empty());
  }
}

TEST_CASE("https: certificates replaced on disk serve the connections that come after", "[net][https]") {
  const auto& pki = test_pki::get();
  const dx_support::temp_dir dir("dx_https_reload");
  namespace fs = std::filesystem;
  dx::tls_options files;
  files.certificate = (dir.path() / "server.pem").string();
  files.private_key = (dir.path() / "server.key").string();
  files.ca = (dir.path() / "ca.pem").string();
  fs::copy_file(pki.file("head.pem"), files.certificate);
  fs::copy_file(pki.file("head.key"), files.private_key);
  fs::copy_file(pki.file("ca.pem"), files.ca);
  tls_echo srv(files);

  // Trusts only the other authority, which signed the certificate the server shows next.
  dx::tls_options trusts_other = pki.options("worker");
  trusts_other.ca = pki.file("other-ca.pem");
  REQUIRE(https::request(srv.ep(), pki.options("worker"), "GET", "/before").status == 200);
  REQUIRE(https::request(srv.ep(), trusts_other, "GET", "/before").status == 0);

  // Written aside and renamed in place, as a certificate manager does.
  fs::copy_file(pki.file("rogue.pem"), files.certificate + ".new");
  fs::copy_file(pki.file("rogue.key"), files.private_key + ".new");
  fs::rename(files.certificate + ".new", files.certificate);
  fs::rename(files.private_key + ".new", files.private_key);

  // The files are looked at once a second at most.
  CHECK(dx_support::wait_until(5s,
                               [&] { return https::request(srv.ep(), trusts_other, "GET", "/after").status == 200; }));
  CHECK(https::request(srv.ep(), pki.options("worker"), "GET", "/after").status == 0);
}

TEST_CASE("https: a POST with the token starts a run that a wss client of /api/events hears", "[net][https]") {
  const auto& pki = test_pki::get();
  const dx_support::temp_dir dir("dx_https_runs");
  const dx_support::scoped_env journal("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  dx::cluster cl{served(pki.options("head")).token("secret-token")};
  const std::string ep = cl.http_endpoint();

  https::wss_client events(ep, pki.options("worker"), "/api/events");
  INFO(events.error());
  REQUIRE(events.accepted());
  const auto hello = events.read(5s);
  REQUIRE(hello);
  CHECK(json::parse(*hello) == json{{"events", json::array()}});

  const std::string workflow = json{{"name", "over-tls"},
                                    {"steps", json::array({{{"name", "parts"},
                                                            {"function", "https_test::chunk_sum"},
                                                            {"split", {{"range", {0, 8}}, {"chunk", 1}}}}})}}
                                   .dump();
  const auto refused =
      https::request(ep, pki.options("worker"), "POST", "/api/runs", workflow, {{"Content-Type", "application/json"}});
  CHECK(refused.status == 401);
  const auto started = https::request(ep, pki.options("worker"), "POST", "/api/runs", workflow,
                                      {{"Content-Type", "application/json"}, {"Authorization", "Bearer secret-token"}});
  INFO(started.error << started.body);
  REQUIRE(started.status == 201);
  const std::string run = json::parse(started.body)["id"];

  std::string last_status, last_message;
  int messages = 0;
  const auto end = std::chrono::steady_clock::now() + 8s;
  while (last_status != "SUCCEEDED" && !events.ended() && std::chrono::steady_clock::now() < end) {
    const auto m = events.read(200ms);
    if (!m) continue;
    ++messages;
    last_message = *m;
    const json batch = json::parse(*m);
    for (const json& e : batch["events"])
      if (e["type"] == "run" && e["run"] == run) last_status = e["status"].get<std::string>();
  }
  INFO("ended " << events.ended() << ", " << messages << " messages, the last " << last_message);
  CHECK(last_status == "SUCCEEDED");
}
