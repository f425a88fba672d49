// The MPI transport of a dx built without MPI (CMake found no MPI): asking for it is an error
// that says so; the address form is still read, so that the error names the cause.
#include "transport/mpi.hpp"
#include "transport/transport.hpp"

#include <dx/error.hpp>

#include <charconv>

namespace dx::transport {

bool mpi_built_in() noexcept { return false; }

std::optional<mpi_address> parse_mpi_address(const std::string& address) {
  if (!address.starts_with("mpi:")) return std::nullopt;
  return mpi_address{};
}

std::unique_ptr<transport> make_mpi_transport(const config&) {
  detail::throw_error(detail::error_kind::generic,
                      "transport_kind::mpi: dx was built without MPI (install an MPI such as Debian's libopenmpi-dev "
                      "and configure dx again)");
}

}  // namespace dx::transport
