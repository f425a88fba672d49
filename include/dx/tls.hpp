// dx/tls.hpp — mutual TLS for the links between a head and its workers (and between workers, for
// results), and for the head's HTTP endpoint.
//
// Every side holds a certificate signed by the cluster's certificate authority and accepts only
// peers whose certificates that authority signed: a worker proves itself to the head and the head
// to the worker before the first frame; the token handshake then runs inside the encrypted link.
//
//   dx::tls_options tls{.certificate = "head.pem", .private_key = "head.key", .ca = "ca.pem"};
//   dx::cluster head{dx::options{}.listen("0.0.0.0:7700").token_file("dx.token").tls(tls)};
//   // on each worker machine:
//   //   dx-worker --connect head:7700 --token-file dx.token
//   //             --tls-cert worker.pem --tls-key worker.key --tls-ca ca.pem
//
// The files are PEM. They are read when the cluster (or worker) starts, and again whenever one of
// them changes on disk (checked every second) or the process gets SIGHUP (dx-worker and `dx serve`
// ask for it; a program of its own calls dx::reload_tls()): new connections use the new
// certificates, open ones keep theirs. A file that cannot be read or a key that does not match its
// certificate is an error at start, and a warning (the old certificates stay) on a reload.
#pragma once

#include <dx/export.hpp>

#include <cstdint>
#include <string>

namespace dx {

/// The oldest protocol version a TLS link accepts.
enum class tls_version : std::uint8_t { tls1_2, tls1_3 };

struct tls_options {
  /// This side's certificate chain (PEM): the certificate first, then any intermediates.
  std::string certificate;
  /// The private key of `certificate` (PEM, unencrypted).
  std::string private_key;
  /// The certificate authorities whose certificates a peer may present (PEM, one or more).
  std::string ca;
  /// A head (and a worker's result port) refuses peers that present no certificate. Without it,
  /// a peer without a certificate is let in (the token still has to be proven) but one with a
  /// certificate is still checked.
  bool require_client_certificate = true;
  tls_version min_version = tls_version::tls1_3;
  /// A connecting side also checks that the certificate it is shown names the host it connected
  /// to (its subject alternative names, as HTTPS does). Off by default: in a cluster the private
  /// authority is what vouches for a peer, and workers often reach the head by an address that
  /// its certificate does not list.
  bool verify_peer_name = false;

  /// Whether TLS is asked for at all (a certificate or an authority is given).
  bool enabled() const noexcept { return !certificate.empty() || !private_key.empty() || !ca.empty(); }
};

/// Asks every TLS link of this process to read its certificate files again before its next
/// connection, as a change on disk would. Async-signal-safe: a SIGHUP handler may call it.
/// Thread-safe; does not block.
DX_API void reload_tls() noexcept;

}  // namespace dx
