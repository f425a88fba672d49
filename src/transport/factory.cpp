// Owns the choice of a transport implementation from the public transport_kind.
#include "transport/transport.hpp"

namespace dx::transport {

std::unique_ptr<transport> make_transport(transport_kind kind, const config& cfg) {
  switch (kind) {
    case transport_kind::in_process:
      return make_in_process_transport(cfg);
    case transport_kind::mpi:
      return make_mpi_transport(cfg);
    case transport_kind::tcp:
      break;
  }
  return make_tcp_transport(cfg);
}

}  // namespace dx::transport
