// A throwaway public-key infrastructure for TLS tests, made with the openssl command line once per
// test process in a temporary folder: the cluster's authority and certificates it signed, and the
// bad ones a hostile or broken peer shows (another authority's, self-signed, expired).
//
//   const auto& pki = dx_support::test_pki::get();
//   dx::tls_options head = pki.options("head");  // head.pem, head.key, ca.pem
#pragma once

#include "temp_dir.hpp"

#include <dx/tls.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace dx_support {

class test_pki {
 public:
  /// The one set of this process, made on first use; throws when openssl fails.
  static const test_pki& get() {
    static const test_pki pki;
    return pki;
  }

  /// A file of the set: "ca.pem", "head.pem", "worker.key", ...
  std::string file(const std::string& name) const { return (dir_.path() / name).string(); }

  /// `name`.pem and `name`.key, trusting the authority `ca` ("ca" or "other-ca"). Names:
  /// head, worker, worker-b (the cluster's authority signed them, for 127.0.0.1 and localhost),
  /// elsewhere (signed by it for elsewhere.example only), rogue (signed by other-ca), self
  /// (self-signed), expired (the cluster's authority signed it; it expired yesterday).
  dx::tls_options options(const std::string& name, const std::string& ca = "ca") const {
    dx::tls_options o;
    o.certificate = file(name + ".pem");
    o.private_key = file(name + ".key");
    o.ca = file(ca + ".pem");
    return o;
  }

  /// options(name, ca) copied into `dir` as cert.pem, key.pem and ca.pem, for a test that changes
  /// them.
  dx::tls_options copy_into(const std::filesystem::path& dir, const std::string& name,
                            const std::string& ca = "ca") const {
    const dx::tls_options from = options(name, ca);
    dx::tls_options o;
    o.certificate = (dir / "cert.pem").string();
    o.private_key = (dir / "key.pem").string();
    o.ca = (dir / "ca.pem").string();
    std::filesystem::copy_file(from.certificate, o.certificate);
    std::filesystem::copy_file(from.private_key, o.private_key);
    std::filesystem::copy_file(from.ca, o.ca);
    return o;
  }

 private:
  test_pki() : dir_("dx_pki") {
    const std::string script = R"(set -e
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1.key" 2>/dev/null; }
authority() {
  key "$1"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 30 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
signed() {  # name, authority, days[, subject alternative names]
  key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=dx $1"
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "${4:-IP:127.0.0.1,DNS:localhost}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" -days "$3" \
    -extfile "$1.ext" 2>/dev/null
}
authority ca "dx test authority"
authority other-ca "another authority"
signed head ca 30
signed worker ca 30
signed worker-b ca 30
signed rogue other-ca 30
signed expired ca -1
signed elsewhere ca 30 DNS:elsewhere.example
key self
openssl req -x509 -new -key self.key -out self.pem -days 30 -subj "/CN=dx self" \
  -addext "subjectAltName=IP:127.0.0.1"
)";
    const std::string script_file = file("make.sh");
    std::ofstream(script_file) << script;
    const std::string command = "sh '" + script_file + "' '" + dir_.path().string() + "' >/dev/null";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("test_pki: openssl failed: " + command);
  }

  temp_dir dir_;
};

}  // namespace dx_support
