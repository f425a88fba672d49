// The head's HTTP routes: the cluster extension's (workflow runs) first, then the head's own pages
// (observe/head_views.cpp); and who may use the routes that change the cluster.
#include "cluster/auth.hpp"
#include "cluster/head_state.hpp"
#include "observe/runtime_stats.hpp"

#include <fmt/format.h>

#include <optional>
#include <string_view>

namespace dx::detail {

namespace {

bool starts_with_no_case(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const char a = s[i] >= 'A' && s[i] <= 'Z' ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
    if (a != prefix[i]) return false;
  }
  return true;
}

/// The host of a Host header ("127.0.0.1:8787", "[::1]:80", "localhost"), without its port.
std::string_view host_part(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  const auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

bool loopback_host(std::string_view host) {
  const std::string_view h = host_part(host);
  return h == "localhost" || h == "[::1]" || h.rfind("127.", 0) == 0;
}

/// "http://127.0.0.1:8787" -> "127.0.0.1:8787" (what a Host header holds for the same server).
std::string_view origin_authority(std::string_view origin) {
  const auto scheme = origin.find("://");
  if (scheme == std::string_view::npos) return origin;
  origin.remove_prefix(scheme + 3);
  return origin.substr(0, origin.find('/'));
}

http_write_access denied(unsigned status, std::string reason) { return {false, status, std::move(reason)}; }

/// The token of "Authorization: Bearer <token>" (spaces around it trimmed); nullopt when the
/// header is absent, "" when it is not a bearer token.
std::optional<std::string_view> bearer_token(const http_request& r) {
  const std::string& auth = r.header("authorization");
  if (auth.empty()) return std::nullopt;
  if (!starts_with_no_case(auth, "bearer ")) return std::string_view{};
  std::string_view given(auth);
  given.remove_prefix(7);
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  while (!given.empty() && given.back() == ' ') given.remove_suffix(1);
  return given;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

}  // namespace

http_write_access head_impl::read_access(const http_request& r, bool query_token) const {
  if (http_token_.empty() || http_loopback_.load(std::memory_order_acquire)) return {true, 200, {}};
  if (query_token) {
    if (auto it = r.query.find("token"); it != r.query.end()) {
      if (tokens_equal(it->second, http_token_)) return {true, 200, {}};
      return denied(401, "the token is not the cluster's");
    }
  }
  const auto given = bearer_token(r);
  if (!given)
    return denied(401, fmt::format("this endpoint is reachable from other machines: reading needs the cluster's token "
                                   "(Authorization: Bearer <token>{})",
                                   query_token ? ", or ?token=<token>" : ""));
  if (given->empty()) return denied(401, "the Authorization header must read 'Bearer <token>'");
  if (!tokens_equal(*given, http_token_)) return denied(401, "the token is not the cluster's");
  return {true, 200, {}};
}

http_write_access head_impl::write_access(const http_request& r) const {
  // A page of another site that the user's browser shows may send a request here too: it carries
  // that site's Origin, which is refused whatever else the request holds.
  const std::string& origin = r.header("origin");
  if (!origin.empty() && origin_authority(origin) != r.header("host"))
    return denied(403, fmt::format("a request from another site ({}) may not change the cluster", origin));
  if (!http_token_.empty()) {
    const auto given = bearer_token(r);
    if (!given)
      return denied(401,
                    "this route changes the cluster: it needs the cluster's token (Authorization: Bearer <token>)");
    if (given->empty()) return denied(401, "the Authorization header must read 'Bearer <token>'");
    if (!tokens_equal(*given, http_token_)) return denied(401, "the token is not the cluster's");
    return {true, 200, {}};
  }
  // Without a token, only this machine may change the cluster, and only under a loopback name (a
  // name of another site that resolves to 127.0.0.1 is refused, so a page of that site cannot).
  if (!r.peer_loopback)
    return denied(403,
                  "this cluster has no token (options::token or token_file), so only clients on its own machine "
                  "(loopback) may change it");
  if (!loopback_host(r.header("host")))
    return denied(403,
                  "without a token, requests that change the cluster must name a loopback host "
                  "(127.0.0.1, localhost or [::1])");
  return {true, 200, {}};
}

http_response head_impl::serve_http(const http_request& r) const {
  const bool events = r.path == "/api/events";
  const bool api = starts_with(r.path, "/api/");
  // POSTs that change the cluster take the write rule; every other API call, the read rule (a
  // validation changes nothing). The WebSocket may carry its token in the query, and is refused
  // to pages of other sites: a browser lets any page open a WebSocket and read it.
  http_write_access access;
  if (r.method == http_method::post && r.path != "/api/workflows/validate") {
    access = write_access(r);
  } else {
    access = read_access(r, events);
    const std::string& origin = r.header("origin");
    if (events && access.allowed && !origin.empty() && origin_authority(origin) != r.header("host"))
      access = denied(403, fmt::format("a page of another site ({}) may not read the cluster's events", origin));
  }
  auto authenticate = [](http_response answer) {
    if (answer.status == 401) answer.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"dx\"");
    return answer;
  };
  if (auto ext = extensions_ ? extensions_->get() : nullptr) {
    if (auto answer = ext->serve_http(r, access)) return authenticate(std::move(*answer));
  }
  // The head's own routes: the page is open (it holds no data); the API, and /metrics unless
  // options::metrics_open, follow the read rule.
  const bool guarded = api || (r.path == "/metrics" && !opts_.metrics_open());
  if (guarded && r.method != http_method::post && !access.allowed) {
    std::string body;
    if (api) {
      body = R"({"error":")";
      observe::json_escape_into(body, access.reason);
      body += "\"}";
    } else {
      body = access.reason + "\n";
    }
    http_response denial{access.status, api ? "application/json" : "text/plain; charset=utf-8", std::move(body)};
    const bool known =
        r.path == "/metrics" || r.path == "/api/state" || r.path == "/api/tasks" || r.path == "/api/trace" || events;
    denial.route = known ? r.path : "(unknown)";
    return authenticate(std::move(denial));
  }
  return observe::serve_head_http(r, *this);
}

}  // namespace dx::detail
