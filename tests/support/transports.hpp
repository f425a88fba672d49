// Running one network test case over both transports: the in-process transport (worker threads
// speaking the protocol) and TCP with real local worker processes.
//
//   TEST_CASE("...", "[net]") {
//     DX_TRANSPORTS();  // defines `kind`, the transport of this run of the case
//     dx::cluster cl{dx::options{}.transport(kind).local_processes(2)};
//   }
#pragma once

#include <dx/options.hpp>

#include <catch2/catch.hpp>

namespace dx_support {

inline const char* kind_name(dx::transport_kind k) { return k == dx::transport_kind::tcp ? "tcp" : "in_process"; }

}  // namespace dx_support

#define DX_TRANSPORTS()                                                                              \
  const dx::transport_kind kind = GENERATE(dx::transport_kind::in_process, dx::transport_kind::tcp); \
  INFO("transport: " << ::dx_support::kind_name(kind))
