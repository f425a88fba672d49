// A small HTTP/1.1 client for the dx command talking to a head's HTTP API (`dx run --connect`,
// `dx cancel --connect`): one request per connection, a deadline on every step, a bounded
// response; https with the given TLS settings (the head's certificate checked against their
// authority, this side's certificate shown when one is given).
#pragma once

#include <dx/tls.hpp>

#include <chrono>
#include <cstddef>
#include <string>

namespace dx_cli {

struct http_reply {
  int status = 0;    // the HTTP status code
  std::string body;  // the response body
};

/// Sends `method` `target` to `address` ("HOST:PORT") with `body` (JSON) and, when `token` is not
/// empty, "Authorization: Bearer <token>"; over TLS when `tls` asks for it. Throws
/// std::runtime_error naming the address and the problem: a bad address, no connection, a TLS
/// handshake that fails (with OpenSSL's reason), the deadline passed, a response that is not HTTP
/// or larger than `max_body`. Blocks up to `deadline`.
http_reply http_call(const std::string& address, const std::string& method, const std::string& target,
                     const std::string& body, const std::string& token, const dx::tls_options& tls,
                     std::chrono::milliseconds deadline = std::chrono::seconds(10), std::size_t max_body = 64u << 20);

}  // namespace dx_cli
