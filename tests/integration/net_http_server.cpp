// The head's HTTP server on its own (src/observe/http_server.hpp), with a handler that echoes what
// it was given: methods, headers and bodies reach the handler; each limit fails the request that
// breaks it (and only that one); a request keeps one deadline however slowly its bytes come.
#include "observe/http_server.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "http_client.hpp"

namespace http_test = dx_support::http;
using dx::detail::http_limits;
using dx::detail::http_method;
using dx::detail::http_request;
using dx::detail::http_response;
using dx::detail::http_server;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// A server whose handler answers with what it received, as JSON.
struct echo_server {
  std::atomic<int> calls{0};
  http_server server;
  explicit echo_server(std::chrono::milliseconds deadline = 10s)
      : server(
            "127.0.0.1:0", [this](const http_request& r) { return echo(r); }, deadline) {}

  http_response echo(const http_request& r) {
    ++calls;
    if (r.path == "/throw") throw std::runtime_error("the handler broke");
    json headers = json::object();
    for (const auto& [k, v] : r.headers) headers[k] = v;
    const char* method = r.method == http_method::post ? "POST" : r.method == http_method::head ? "HEAD" : "GET";
    return {200,
            "application/json",
            json{{"method", method},
                 {"path", r.path},
                 {"query", r.query},
                 {"headers", headers},
                 {"body_size", r.body.size()},
                 {"body_head", r.body.substr(0, 16)},
                 {"peer", r.peer},
                 {"loopback", r.peer_loopback},
                 {"authorization", r.header("authorization")}}
                .dump(),
            {{"X-Echo", "yes"}}};
  }
  std::string ep() const { return server.endpoint(); }
};

std::string post(const std::string& target, const std::string& body, const std::string& extra = {}) {
  return "POST " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

/// Seconds until the server closes `fd` (read returns 0 or fails), at most `limit`.
double seconds_until_closed(int fd, std::chrono::milliseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  http_test::read_all(fd, limit);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Sends `text` a byte every 20 ms until the server closes the connection (or all is sent);
/// the seconds that took, or a negative number when the server never closed it.
double seconds_trickling_until_closed(int fd, const std::string& text) {
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (std::size_t i = 0; i < text.size() && !closed; ++i) {
    closed = !http_test::send_all(fd, text.substr(i, 1));
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) > 0) closed = true;
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return closed ? took : -1;
}

}  // namespace

TEST_CASE("http server: handlers see the method, path, query, headers, body and peer", "[net][http]") {
  echo_server s;
  const auto r = http_test::send_raw(
      s.ep(), post("/api/runs?x=1&y=a%20b", "{\"name\":\"w\"}", "Authorization: Bearer s3cret\r\nX-Mixed-Case: V\r\n"));
  REQUIRE(r.status == 200);
  CHECK_THAT(r.head, Catch::Contains("X-Echo: yes"));
  const auto j = json::parse(r.body);
  CHECK(j["method"] == "POST");
  CHECK(j["path"] == "/api/runs");
  CHECK(j["query"]["y"] == "a b");
  CHECK(j["body_size"] == 12);
  CHECK(j["body_head"] == "{\"name\":\"w\"}");
  CHECK(j["authorization"] == "Bearer s3cret");
  CHECK(j["headers"]["x-mixed-case"] == "V");  // names are lower case, values as sent
  CHECK(j["loopback"] == true);
  CHECK_THAT(j["peer"].get<std::string>(), Catch::StartsWith("127.0.0.1:"));
  const auto g = json::parse(http_test::get(s.ep(), "/p").body);
  CHECK(g["method"] == "GET");
  CHECK(g["body_size"] == 0);
}

TEST_CASE("http server: methods other than GET, HEAD and POST are refused with Allow", "[net][http]") {
  echo_server s;
  for (const char* m : {"PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"}) {
    INFO(m);
    const auto r = http_test::send_raw(s.ep(), std::string(m) + " /x HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(r.status == 405);
    CHECK_THAT(r.head, Catch::Contains("Allow: GET, HEAD, POST"));
  }
  CHECK(s.calls == 0);
  const auto head = http_test::send_raw(s.ep(), "HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(s.calls == 1);
}

TEST_CASE("http server: a POST body of 4 MiB is read whole, a larger one is refused from its Content-Length",
          "[net][http]") {
  echo_server s;
  const std::string full(http_limits::post_body_bytes, 'b');
  const auto ok = http_test::send_raw(s.ep(), post("/big", full), 20s);
  REQUIRE(ok.status == 200);
  CHECK(json::parse(ok.body)["body_size"] == http_limits::post_body_bytes);
  // Only the headers are sent: the refusal comes at once, without waiting for (or reading) a body.
  const int fd = http_test::connect_to(s.ep());
  http_test::send_all(fd, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                              std::to_string(http_limits::post_body_bytes + 1) + "\r\n\r\n");
  const auto refused = http_test::parse(http_test::read_all(fd, 5s));
  ::close(fd);
  CHECK(refused.status == 413);
  CHECK_THAT(refused.body, Catch::Contains("4194304"));
  // A length no buffer could hold is refused the same way.
  CHECK(http_test::send_raw(s.ep(), "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n")
            .status == 413);
  CHECK(s.calls == 1);
  CHECK(http_test::get(s.ep(), "/after").status == 200);  // the server goes on
}

TEST_CASE("http server: GET and HEAD take at most 1 KiB of body", "[net][http]") {
  echo_server s;
  const std::string small(http_limits::other_body_bytes, 'g');
  CHECK(http_test::send_raw(s.ep(), "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                                        std::to_string(small.size()) + "\r\n\r\n" + small)
            .status == 200);
  CHECK(http_test::send_raw(s.ep(), "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                        std::to_string(small.size() + 1) + "\r\n\r\n" + small + "g")
            .status == 413);
  CHECK(s.calls == 1);
}

TEST_CASE("http server: a chunked body is refused (411): a body needs Content-Length", "[net][http]") {
  echo_server s;
  const auto r = http_test::send_raw(
      s.ep(), "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  CHECK(r.status == 411);
  CHECK(s.calls == 0);
}

TEST_CASE("http server: a handler that throws is a 500 and the server goes on", "[net][http]") {
  echo_server s;
  const auto r = http_test::get(s.ep(), "/throw");
  CHECK(r.status == 500);
  CHECK_THAT(r.body, Catch::Contains("the handler broke"));
  CHECK(http_test::get(s.ep(), "/ok").status == 200);
}

TEST_CASE("http server: a request keeps one deadline, however slowly its bytes come", "[net][http]") {
  echo_server s(400ms);
  SECTION("headers trickling in") {
    const int fd = http_test::connect_to(s.ep());
    const std::string req = "GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(200, 'p') + "\r\n\r\n";
    // A byte every 20 ms would take 5 s to send: the server closes at its deadline instead.
    const double took = seconds_trickling_until_closed(fd, req);
    ::close(fd);
    CHECK(took >= 0);
    CHECK(took < 3.0);
  }
  SECTION("a body trickling in after whole headers") {
    const int fd = http_test::connect_to(s.ep());
    http_test::send_all(fd, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    const double took = seconds_trickling_until_closed(fd, std::string(1000, 'b'));
    ::close(fd);
    CHECK(took >= 0);
    CHECK(took < 3.0);
  }
  SECTION("a connection that says nothing") {
    const int fd = http_test::connect_to(s.ep());
    CHECK(seconds_until_closed(fd, 5s) < 3.0);
    ::close(fd);
  }
  CHECK(s.calls == 0);
  CHECK(http_test::get(s.ep(), "/after").status == 200);
}
