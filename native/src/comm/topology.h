#pragma once
#include <stdexcept>
#include <string>

/* The world's shape: rings of context parallelism (adjacent ranks share each sequence) and data parallelism over
 * the rings. The communicator owns it (Communicator::topology, set by cx_comm_context_parallel); ring attention and
 * the trainer (cx_comm_topology) read it, so rank arithmetic lives here and nowhere else. */
namespace cx {

struct Topology {
  int world = 1, rank = 0, ring_size = 1;

  /* Throws std::invalid_argument, with the fix, for a rank outside the world or a ring size that does not divide it. */
  static Topology make(int world, int rank, int ring_size) {
    if (world < 1 || rank < 0 || rank >= world)
      throw std::invalid_argument("rank " + std::to_string(rank) + " is not in a world of " + std::to_string(world));
    if (ring_size < 1) throw std::invalid_argument("context parallelism needs a ring of 1 or more ranks (got " + std::to_string(ring_size) + ")");
    if (world % ring_size != 0)
      throw std::invalid_argument("--context-parallel " + std::to_string(ring_size) + " does not divide the " + std::to_string(world) +
                                  " ranks into rings: start a multiple of " + std::to_string(ring_size) + " ranks, or use a divisor of " +
                                  std::to_string(world));
    return {world, rank, ring_size};
  }

  /* This rank's member index in its ring, and the rank of member i of its ring (i taken round the ring). */
  int ring_index() const { return rank % ring_size; }
  int ring_member(int i) const { return rank - ring_index() + ((i % ring_size) + ring_size) % ring_size; }
  /* Which ring (data-parallel share) this rank's is, of how many. */
  int data_rank() const { return rank / ring_size; }
  int data_ranks() const { return world / ring_size; }
};

}  // namespace cx
