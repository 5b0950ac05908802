// Stub of c10/cuda/CUDAException.h for the emulated-CUDA build (tests/cuda_shim/cuda_shim.h).
#pragma once
#include "../../../cuda_shim.h"

// clif_emulation::launch checks the configuration itself and throws.
#define C10_CUDA_KERNEL_LAUNCH_CHECK() ((void)0)
