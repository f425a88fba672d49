// "host:port" strings as dx's options and endpoints spell them, for the TCP transport and the
// HTTP endpoint.
#pragma once

#include "transport/asio.hpp"

#include <fmt/format.h>

#include <charconv>
#include <optional>
#include <string>

namespace dx::transport {

struct host_port {
  std::string host;
  std::string port;
};

/// Splits "host:port", "[v6]:port" or ":port". The port must be a number from 0 to 65535.
inline std::optional<host_port> parse_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65535) return std::nullopt;
  return host_port{std::move(host), port};
}

/// Whether `host` (a name or an address, as in "host:port") is this machine's loopback.
inline bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host.ends_with(".localhost")) return true;
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

/// The address of this machine's interface that packets to `host` leave from (a UDP socket
/// connected to it: nothing is sent), or "" when `host` does not resolve or is unreachable.
inline std::string local_address_toward(const std::string& host) {
  boost::system::error_code ec;
  asio::io_context io;
  asio::ip::udp::resolver resolver(io);
  const auto results = resolver.resolve(host, "9", ec);
  if (ec) return {};
  for (const auto& entry : results) {
    asio::ip::udp::socket s(io);
    s.open(entry.endpoint().protocol(), ec);
    if (ec) continue;
    s.connect(entry.endpoint(), ec);
    if (ec) continue;
    const auto local = s.local_endpoint(ec);
    if (ec) continue;
    return local.address().to_string();
  }
  return {};
}

inline std::string endpoint_string(const asio::ip::tcp::endpoint& ep) {
  const auto address = ep.address();
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), ep.port());
  return fmt::format("{}:{}", address.to_string(), ep.port());
}

}  // namespace dx::transport
