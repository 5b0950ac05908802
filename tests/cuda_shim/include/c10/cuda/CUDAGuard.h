// Stub of c10/cuda/CUDAGuard.h for the emulated-CUDA build: there is one device, the CPU.
#pragma once
#include "../../../cuda_shim.h"

#include <c10/core/Device.h>

namespace c10::cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};
}  // namespace c10::cuda
