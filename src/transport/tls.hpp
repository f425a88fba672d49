// The TLS side of a transport: the certificates a head or a worker presents and the authority it
// checks its peers against, as an Asio SSL context that is rebuilt when the files change or
// reload_tls() is called, and the words a failed handshake is explained with.
//
//   auto creds = std::make_shared<tls_credentials>(opts.tls());  // throws naming a bad file
//   asio::ssl::stream<tcp::socket> s(io, *creds->current());
#pragma once

#include "transport/asio.hpp"

#include <dx/tls.hpp>

#include <boost/asio/ssl.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace dx::transport {

class tls_credentials {
 public:
  /// Reads the files; throws dx::error naming the file and what is wrong with it.
  explicit tls_credentials(tls_options opts);

  /// The context a new connection is made with. When a file changed on disk (looked at once a
  /// second at most) or reload_tls() was called, the files are read again first; if that fails,
  /// a warning is logged and the context that worked stays. Open connections keep the context
  /// they were made with. Thread-safe; reads files at most once a second.
  std::shared_ptr<asio::ssl::context> current();

  const tls_options& options() const noexcept { return opts_; }
  /// How many times the files were read successfully (1 after construction). Thread-safe.
  std::uint64_t loads() const;

 private:
  struct file_stamp {
    std::int64_t mtime_ns = 0;
    std::int64_t size = -1;
    std::uint64_t inode = 0;
    bool operator==(const file_stamp&) const = default;
  };
  using stamps = std::array<file_stamp, 3>;

  stamps read_stamps() const;
  std::shared_ptr<asio::ssl::context> build() const;

  const tls_options opts_;
  mutable std::mutex mutex_;
  std::shared_ptr<asio::ssl::context> context_;  // guarded by mutex_
  stamps stamps_{};                              // guarded by mutex_
  std::uint64_t reload_seen_ = 0;                // guarded by mutex_: reload_tls() calls handled
  std::chrono::steady_clock::time_point checked_{};
  std::uint64_t loads_ = 0;  // guarded by mutex_
};

/// Why a TLS handshake or read failed, in words: OpenSSL's reason, and the certificate check's
/// verdict when that is what failed ("certificate verify failed: certificate has expired").
std::string describe_tls_error(const boost::system::error_code& ec, SSL* ssl);

/// Whether `ec` is the end of a TLS stream that the peer closed without a close_notify: to dx,
/// the same as the end of a TCP stream (frames carry their own lengths).
bool is_tls_truncation(const boost::system::error_code& ec);

}  // namespace dx::transport
