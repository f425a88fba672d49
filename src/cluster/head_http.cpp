// The head's HTTP routes: the cluster extension's (workflow runs) first, then the head's own pages
// (observe/head_views.cpp); and who may use the routes that change the cluster.
#include "cluster/auth.hpp"
#include "cluster/head_state.hpp"

#include <fmt/format.h>

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

}  // namespace

http_write_access head_impl::write_access(const http_request& r) const {
  // A page of another site that the user's browser shows may send a request here too: it carries
  // that site's Origin, which is refused whatever else the request holds.
  const std::string& origin = r.header("origin");
  if (!origin.empty() && origin_authority(origin) != r.header("host"))
    return denied(403, fmt::format("a request from another site ({}) may not change the cluster", origin));
  if (!token_.empty()) {
    const std::string& auth = r.header("authorization");
    if (auth.empty())
      return denied(401,
                    "this route changes the cluster: it needs the cluster's token (Authorization: Bearer <token>)");
    if (!starts_with_no_case(auth, "bearer "))
      return denied(401, "the Authorization header must read 'Bearer <token>'");
    std::string_view given(auth);
    given.remove_prefix(7);
    while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
    while (!given.empty() && given.back() == ' ') given.remove_suffix(1);
    if (!tokens_equal(given, token_)) return denied(401, "the token is not the cluster's");
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
  if (auto ext = extensions_ ? extensions_->get() : nullptr) {
    const http_write_access access = r.method == http_method::post ? write_access(r) : http_write_access{};
    if (auto answer = ext->serve_http(r, access)) {
      if (answer->status == 401) answer->headers.emplace_back("WWW-Authenticate", "Bearer realm=\"dx\"");
      return std::move(*answer);
    }
  }
  return observe::serve_head_http(r, *this);
}

}  // namespace dx::detail
