// The CUDA kernels of snntorch_clif (csrc/cuda/clif_cuda.cu), compiled with the host compiler
// against cuda_shim.h, as the ops snntorch_clif_emu::clif_forward / clif_backward on CPU
// tensors (same schemas as the real ops). Built and loaded by tests/cuda_emulator.py with
// CLIF_CUDA_EMULATION, CLIF_POISON_OUTPUTS (outputs start as NaN), CLIF_CUDA_LIBRARY (the ops'
// namespace: snntorch_clif_emu, or another one for a build of a mutated copy of the sources)
// and CLIF_CUDA_DISPATCH_KEY defined. Nothing here ships in the package.
#include "cuda_shim.h"

#include "../../snntorch_clif/csrc/cuda/clif_cuda.cu"
#include "../../snntorch_clif/csrc/schemas.h"

#include <ATen/ops/zeros.h>

namespace {

// One thread writes its global (x, y, z) index once: the launch self-test checks that every
// thread of a grid ran exactly once.
__global__ void mark_threads(int64_t* marks, unsigned width) {
  const unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
  const unsigned z = blockIdx.z * blockDim.z + threadIdx.z;
  const uint64_t i = (uint64_t(z) * gridDim.y * blockDim.y + y) * width + x;
  marks[i] += 1;
}

at::Tensor launch_self_test(at::IntArrayRef grid, at::IntArrayRef block) {
  TORCH_CHECK(grid.size() == 3 && block.size() == 3, "grid and block must have 3 entries");
  const dim3 g{unsigned(grid[0]), unsigned(grid[1]), unsigned(grid[2])};
  const dim3 b{unsigned(block[0]), unsigned(block[1]), unsigned(block[2])};
  const unsigned width = g.x * b.x;
  const int64_t count = int64_t(g.x) * b.x * g.y * b.y * g.z * b.z;
  at::Tensor marks = at::zeros({count}, at::kLong);
  clif_emulation::launch(mark_threads, g, b, nullptr, marks.mutable_data_ptr<int64_t>(), width);
  return marks;
}

// Both kernels index in 32 bits when every offset of a call fits in that many; the tests'
// sizes always do, so they lower the limit to run the 64-bit kernels too. Returns the old
// limit.
int64_t set_index32_limit(int64_t limit) {
  const int64_t old = snntorch_clif::index32_limit;
  snntorch_clif::index32_limit = limit;
  return old;
}

// Blocks in x of the last launch: the forward runs two neurons per thread for the half types
// when the rows allow it (clif_cuda.cu, pairs_fit), so a call's grid shows which kernel ran.
// gridDim keeps the last launch's grid on the calling thread, the one that runs the ops.
int64_t last_launch_blocks() { return gridDim.x; }

}  // namespace

TORCH_LIBRARY(CLIF_CUDA_LIBRARY, m) {
  m.def(snntorch_clif::kForwardSchema);
  m.def(snntorch_clif::kBackwardSchema);
  m.def("launch_self_test(int[] grid, int[] block) -> Tensor");
  m.impl("launch_self_test", &launch_self_test);
  m.def("set_index32_limit(int limit) -> int", &set_index32_limit);
  m.def("last_launch_blocks() -> int", &last_launch_blocks);
}
