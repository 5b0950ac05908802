// Stub of c10/cuda/CUDAStream.h for the emulated-CUDA build: launches run at once, in order.
#pragma once
#include "../../../cuda_shim.h"

namespace c10::cuda {
struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }
};
inline CUDAStream getCurrentCUDAStream() { return {}; }
}  // namespace c10::cuda
