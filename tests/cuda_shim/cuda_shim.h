// A small stand-in for CUDA's built-ins, so that snntorch_clif/csrc/cuda/clif_cuda.cu compiles
// with the host compiler and its kernels run on the CPU (tests only; see cuda_emulator.py).
//
// A launch runs every (block, thread) of the grid in turn on the calling thread, after the
// checks a GPU makes on a launch configuration. Sequential threads are a faithful model of
// kernels whose threads do not talk to each other (no __syncthreads, no shared memory), which
// is the case for the CLIF kernels: each thread owns its neuron (or pair of neurons).
#pragma once

#include <c10/util/Exception.h>

#include "../../snntorch_clif/csrc/clif_math.h"  // FlushSubnormals

#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

using cudaStream_t = struct CUstream_st*;

// The built-in variables, set by launch() before each emulated thread runs.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace clif_emulation {

// Limits of every GPU from sm_75 on (CUDA C++ Programming Guide, "Technical Specifications").
constexpr unsigned kMaxGridX = 2147483647u;
constexpr unsigned kMaxGridYZ = 65535u;
constexpr unsigned kMaxThreadsPerBlock = 1024u;
constexpr unsigned kMaxBlockZ = 64u;

inline void check_launch(const dim3& grid, const dim3& block) {
  // A GPU rejects these with cudaErrorInvalidConfiguration.
  TORCH_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1, "emulated CUDA: invalid configuration: a grid of ",
              grid.x, "x", grid.y, "x", grid.z, " blocks (zero blocks)");
  TORCH_CHECK(grid.x <= kMaxGridX && grid.y <= kMaxGridYZ && grid.z <= kMaxGridYZ,
              "emulated CUDA: invalid configuration: grid ", grid.x, "x", grid.y, "x", grid.z, " exceeds the limits");
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  TORCH_CHECK(block.x >= 1 && block.y >= 1 && block.z >= 1 && threads <= kMaxThreadsPerBlock &&
                  block.z <= kMaxBlockZ,
              "emulated CUDA: invalid configuration: a block of ", block.x, "x", block.y, "x", block.z, " threads");
}

// Stands in for `kernel<<<grid, block, 0, stream>>>(args...)` followed by the launch check.
// The kernels run with subnormals flushed, as nvcc --ftz=true compiles them for a GPU.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t /*stream*/, const Args&... args) {
  const snntorch_clif::FlushSubnormals mode;
  check_launch(grid, block);
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = uint3{bx, by, bz};
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx) {
              threadIdx = uint3{tx, ty, tz};
              kernel(args...);  // by value, as a launch copies its arguments
            }
      }
}

}  // namespace clif_emulation
