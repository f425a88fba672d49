// Owns the TLS credentials of a transport: reading the PEM files into an Asio SSL context,
// noticing when they change, and explaining failed handshakes.
#include "transport/tls.hpp"

#include "common/log.hpp"
#include "transport/transport.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace dx {

namespace {
std::atomic<std::uint64_t> reload_requests{0};
}  // namespace

void reload_tls() noexcept { reload_requests.fetch_add(1, std::memory_order_relaxed); }

}  // namespace dx

namespace dx::transport {

using detail::log;
using detail::log_level;

namespace {

[[noreturn]] void fail(const std::string& what) {
  detail::throw_error(detail::error_kind::generic, fmt::format("TLS: {}", what));
}

std::string openssl_reason(const boost::system::error_code& ec) {
  std::string why = ec.message();
  // Asio's message for an OpenSSL error may carry the library and function in parentheses;
  // the reason is what a reader needs.
  if (const auto paren = why.find(" ("); paren != std::string::npos) why.erase(paren);
  return why;
}

/// OpenSSL says "system lib" for a file it cannot open; the reader needs the system's words.
void check_readable(const char* what, const std::string& path) {
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
    return;
  }
  fail(fmt::format("cannot read the {} {}: {}", what, path, std::strerror(errno)));
}

}  // namespace

tls_credentials::tls_credentials(tls_options opts) : opts_(std::move(opts)) {
  if (opts_.ca.empty())
    fail(
        "no certificate authority (tls_options::ca, --tls-ca): dx accepts only peers whose "
        "certificates the cluster's authority signed");
  if (opts_.certificate.empty() != opts_.private_key.empty())
    fail(opts_.certificate.empty() ? "a private key without its certificate (tls_options::certificate, --tls-cert)"
                                   : "a certificate without its private key (tls_options::private_key, --tls-key)");
  stamps_ = read_stamps();
  context_ = build();
  loads_ = 1;
  reload_seen_ = reload_requests.load(std::memory_order_relaxed);
  checked_ = std::chrono::steady_clock::now();
}

std::uint64_t tls_credentials::loads() const {
  std::lock_guard lk(mutex_);
  return loads_;
}

tls_credentials::stamps tls_credentials::read_stamps() const {
  stamps out{};
  const std::string* files[3] = {&opts_.certificate, &opts_.private_key, &opts_.ca};
  for (std::size_t i = 0; i < 3; ++i) {
    struct stat st {};
    if (files[i]->empty() || ::stat(files[i]->c_str(), &st) != 0) continue;
    out[i] = file_stamp{static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                        static_cast<std::int64_t>(st.st_size), static_cast<std::uint64_t>(st.st_ino)};
  }
  return out;
}

std::shared_ptr<asio::ssl::context> tls_credentials::build() const {
  namespace ssl = asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                   ec);
  if (ec) fail(fmt::format("cannot set up a context: {}", openssl_reason(ec)));
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native,
                                    opts_.min_version == tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1)
    fail("cannot set the oldest protocol version");
  if (!opts_.certificate.empty()) {
    check_readable("certificate", opts_.certificate);
    check_readable("private key", opts_.private_key);
    ctx->use_certificate_chain_file(opts_.certificate, ec);
    if (ec) fail(fmt::format("cannot read the certificate {}: {}", opts_.certificate, openssl_reason(ec)));
    ctx->use_private_key_file(opts_.private_key, ssl::context::pem, ec);
    if (ec && openssl_reason(ec).find("mismatch") != std::string::npos)
      fail(fmt::format("the private key {} does not belong to the certificate {}", opts_.private_key,
                       opts_.certificate));
    if (ec) fail(fmt::format("cannot read the private key {}: {}", opts_.private_key, openssl_reason(ec)));
    if (SSL_CTX_check_private_key(native) != 1) {
      ERR_clear_error();
      fail(fmt::format("the private key {} does not belong to the certificate {}", opts_.private_key,
                       opts_.certificate));
    }
    if (X509* own = SSL_CTX_get0_certificate(native)) {
      if (X509_cmp_current_time(X509_get0_notAfter(own)) < 0)
        log(log_level::warn, "TLS: the certificate {} has expired: peers will refuse it", opts_.certificate);
      else if (X509_cmp_current_time(X509_get0_notBefore(own)) > 0)
        log(log_level::warn, "TLS: the certificate {} is not valid yet: peers will refuse it", opts_.certificate);
    }
  }
  check_readable("certificate authority", opts_.ca);
  ctx->load_verify_file(opts_.ca, ec);
  if (ec) fail(fmt::format("cannot read the certificate authority {}: {}", opts_.ca, openssl_reason(ec)));
  auto mode = ssl::verify_peer;
  if (opts_.require_client_certificate) mode |= ssl::verify_fail_if_no_peer_cert;
  ctx->set_verify_mode(mode, ec);
  if (ec) fail(fmt::format("cannot set the verify mode: {}", openssl_reason(ec)));
  return ctx;
}

std::shared_ptr<asio::ssl::context> tls_credentials::current() {
  std::lock_guard lk(mutex_);
  const auto now = std::chrono::steady_clock::now();
  const std::uint64_t requested = reload_requests.load(std::memory_order_relaxed);
  if (requested == reload_seen_ && now - checked_ < std::chrono::seconds(1)) return context_;
  checked_ = now;
  const stamps on_disk = read_stamps();
  if (requested == reload_seen_ && on_disk == stamps_) return context_;
  reload_seen_ = requested;
  stamps_ = on_disk;  // a file that fails to load is not tried again until it changes once more
  try {
    context_ = build();
    ++loads_;
    log(log_level::info, "TLS: certificates read again from {}, {} and {}", opts_.certificate, opts_.private_key,
        opts_.ca);
  } catch (const std::exception& e) {
    log(log_level::warn, "{}; the certificates read before stay in use", e.what());
  }
  return context_;
}

std::shared_ptr<tls_credentials> make_tls_credentials(const tls_options& opts) {
  if (!opts.enabled()) return nullptr;
  return std::make_shared<tls_credentials>(opts);
}

bool is_tls_truncation(const boost::system::error_code& ec) { return ec == asio::ssl::error::stream_truncated; }

std::string describe_tls_error(const boost::system::error_code& ec, SSL* ssl) {
  std::string why = ec.category() == asio::error::get_ssl_category() ? openssl_reason(ec) : ec.message();
  if (ec == asio::error::eof || is_tls_truncation(ec)) why = "the peer closed the connection during the handshake";
  if (ssl) {
    const long verdict = SSL_get_verify_result(ssl);
    if (verdict != X509_V_OK) why += fmt::format(": {}", X509_verify_cert_error_string(verdict));
  }
  return why;
}

}  // namespace dx::transport
