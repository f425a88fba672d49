// What the MPI transport and the code that starts a dx job under mpirun share: the address form
// of MPI links, the head's port, and the tags dx's messages use on MPI_COMM_WORLD.
//
// An MPI address is "mpi:RANK:PORT": a listener of the process of that rank in MPI_COMM_WORLD
// ("mpi:PORT" is this process's own rank). The head listens at port mpi_head_port; other
// listeners (a worker's result port) take ports from 2 up. A connection is a pair of ids, one
// per side, carried by every message; nothing of TCP is involved.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace dx::transport {

/// The tags of dx's messages on MPI_COMM_WORLD: envelopes (connect, accept, refuse, frame,
/// close) and the chunks of large frame bodies that follow a frame envelope. An application that
/// makes MPI calls of its own must not use these tags, nor receive with MPI_ANY_TAG.
inline constexpr int mpi_envelope_tag = 0x4458;
inline constexpr int mpi_chunk_tag = 0x4459;

/// The port the head listens at, so that every other rank knows where to join without asking.
inline constexpr std::uint16_t mpi_head_port = 1;

/// Whether dx was built with MPI (make_mpi_transport works).
bool mpi_built_in() noexcept;

struct mpi_address {
  int rank = -1;  // -1: this process's rank
  std::uint16_t port = 0;
};

/// Reads "mpi:RANK:PORT" or "mpi:PORT"; nullopt for anything else.
std::optional<mpi_address> parse_mpi_address(const std::string& address);

inline std::string mpi_address_string(int rank, std::uint16_t port) {
  return "mpi:" + std::to_string(rank) + ":" + std::to_string(port);
}

}  // namespace dx::transport
