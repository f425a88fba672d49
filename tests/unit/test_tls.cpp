// dx/tls.hpp: what asks for TLS, its defaults, and that reload_tls() may be called at any time
// (from a signal handler too). The links themselves are tested in tests/integration/net_tls.cpp.
#include <dx/tls.hpp>

#include <dx/options.hpp>

#include <catch2/catch.hpp>

#include <csignal>

TEST_CASE("tls_options: any file asks for TLS, and the defaults are mutual TLS 1.3", "[tls]") {
  dx::tls_options none;
  CHECK_FALSE(none.enabled());
  CHECK(none.require_client_certificate);
  CHECK(none.min_version == dx::tls_version::tls1_3);
  CHECK_FALSE(none.verify_peer_name);
  dx::tls_options authority_only;
  authority_only.ca = "ca.pem";
  CHECK(authority_only.enabled());
  dx::tls_options certificate_only;
  certificate_only.certificate = "c.pem";
  CHECK(certificate_only.enabled());
  const auto o = dx::options{}.tls({.certificate = "c.pem", .private_key = "k.pem", .ca = "ca.pem"});
  CHECK(o.tls().enabled());
  CHECK(o.tls().ca == "ca.pem");
  CHECK_FALSE(dx::options{}.tls().enabled());
}

namespace {
extern "C" void on_hup(int) { dx::reload_tls(); }
}  // namespace

TEST_CASE("reload_tls: callable from a signal handler and from threads", "[tls]") {
  auto* old = std::signal(SIGHUP, on_hup);
  std::raise(SIGHUP);
  std::signal(SIGHUP, old);
  dx::reload_tls();
  SUCCEED("no TLS link in this process: the request is kept for the next one");
}
