// CUDA kernels of snntorch_clif::clif_forward and snntorch_clif::clif_backward.
//
// Implements snntorch_clif/reference.py, clif_sequence_reference (the `for x in
// x_seq.unbind(0)` loop, lines 110-118 at this writing, over clif_step_reference's lines
// 63-80, `h = beta * mem + x` .. `return s * graded_spikes_factor, comp, mem`, without the
// inhibition / state_quant branches), fused over time,
// and its reverse-mode derivative: the same contract as cpu/clif_cpu.cpp. All arithmetic
// is csrc/clif_math.h (compiled with --fmad=false, as the CPU side with
// -ffp-contract=off, so both devices round alike).
//
// One thread per neuron, grid over N, the time loop inside with the carries in registers;
// for a fixed t a warp reads 32 consecutive neurons, so every [T, N] access coalesces.
// Runs on the current stream; nothing synchronises with the host.
//
// Tested without a GPU: tests/cuda_shim/ compiles this file with the host compiler (CUDA's
// built-ins replaced, CLIF_CUDA_EMULATION defined), runs every block and thread of each
// launch on the CPU, and compares the results bit for bit with the CPU kernel.
#include "../clif_checks.h"
#include "../clif_math.h"

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>

namespace snntorch_clif {
namespace {

constexpr int kThreads = 256;

#ifdef CLIF_CUDA_EMULATION
#define CLIF_LAUNCH ::clif_emulation::launch  // tests/cuda_shim/cuda_shim.h
#else
#define CLIF_LAUNCH launch_kernel
// Every launch goes through here, so the emulated-CUDA test build can replace it.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), unsigned blocks, unsigned threads, cudaStream_t stream,
                   const Args&... args) {
  kernel<<<blocks, threads, 0, stream>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

// float32, float16, bfloat16 (no float64 kernels: gradcheck runs on the CPU)
#define CLIF_DISPATCH_CUDA_TYPES(TYPE, NAME, ...)                 \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__) \
                                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

template <typename in_t>
struct ForwardArgs {
  int64_t T, N;
  const in_t* __restrict__ x;
  const in_t* __restrict__ comp0;  // nullptr: zeros
  const in_t* __restrict__ mem0;
  const float* __restrict__ beta;  // parameters arrive in float32
  const float* __restrict__ theta;
  const float* __restrict__ gsf;
  int64_t beta_stride, theta_stride, gsf_stride;  // 1 per-neuron, 0 one value for all
  bool return_sequences;
  in_t* __restrict__ spk;
  in_t* __restrict__ comp;
  in_t* __restrict__ mem;
  float* __restrict__ saved;  // nullptr: nothing saved
};

// Rows are reached through a running offset (one add per step, no 64-bit index products), and
// each step's loads for the next step are issued before its own arithmetic and stores, so
// their latency overlaps it (the compiler may not move a load above a store it cannot prove
// apart). The arithmetic and its order are clif_math.h's, exactly as in the CPU kernel.
// Index: the integer type of every offset, int32_t when fits_index32 (see there), else int64_t.
template <typename in_t, int RESET, typename Index>
__global__ void __launch_bounds__(kThreads) clif_forward_kernel(const ForwardArgs<in_t> a) {
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (thread >= a.N) return;
  const Index n = static_cast<Index>(thread), T = static_cast<Index>(a.T), N = static_cast<Index>(a.N);
  const float beta = a.beta[n * static_cast<Index>(a.beta_stride)];
  const float theta = a.theta[n * static_cast<Index>(a.theta_stride)];
  const float gsf = a.gsf[n * static_cast<Index>(a.gsf_stride)];
  float u = a.mem0 ? static_cast<float>(a.mem0[n]) : 0.f;
  float m = a.comp0 ? static_cast<float>(a.comp0[n]) : 0.f;
  // saved rows (clif_checks.h): h_t at row t; row T + c: m_{c K - 1}, K = kSaveChunk
  float* checkpoint = a.saved ? a.saved + T * N + n : nullptr;
  float x_next = T > 0 ? static_cast<float>(a.x[n]) : 0.f;
  for (Index t = 0, off = n, k = 0; t < T; ++t, off += N) {
    const float x = x_next;
    if (t + 1 < T) x_next = static_cast<float>(a.x[off + N]);
    if (a.saved) {
      if (k == 0) {
        *checkpoint = m;
        checkpoint += N;
      }
      k = k + 1 == kSaveChunk ? 0 : k + 1;
    }
    float h, s;
    clif_forward_step<float, RESET>(x, beta, theta, u, m, h, s);
    a.spk[off] = static_cast<in_t>(s * gsf);
    if (a.saved) a.saved[off] = h;
    if (a.return_sequences) {
      a.comp[off] = static_cast<in_t>(m);
      a.mem[off] = static_cast<in_t>(u);
    }
  }
  if (!a.return_sequences) {
    a.comp[n] = static_cast<in_t>(m);
    a.mem[n] = static_cast<in_t>(u);
  }
}

template <typename in_t>
struct BackwardArgs {
  int64_t T, N;
  SurrogateConsts<float> sc;
  const in_t* __restrict__ gspk;
  const in_t* __restrict__ gcomp;  // nullptr, [N] or [T, N]
  const in_t* __restrict__ gmem;
  bool gcomp_seq, gmem_seq;
  const float* __restrict__ saved;
  const in_t* __restrict__ mem0;  // nullptr: u_{-1} = 0 (only dL/dbeta reads it)
  const float* __restrict__ beta;  // parameters arrive in float32
  const float* __restrict__ theta;
  const float* __restrict__ gsf;
  int64_t beta_stride, theta_stride, gsf_stride;
  in_t* __restrict__ dx;
  in_t* __restrict__ dcomp0;
  in_t* __restrict__ dmem0;
  float* __restrict__ dbeta;  // nullptr when the parameters need no gradient
  float* __restrict__ dtheta;
  float* __restrict__ dgsf;
};

// The incoming gradients of one backward step t (0 where absent).
struct BackwardLoads {
  float dspk, du, dm;  // of s_t, u_t, m_t
};

template <typename in_t>
__device__ __forceinline__ BackwardLoads load_backward_step(const BackwardArgs<in_t>& a, int64_t off) {
  return {static_cast<float>(a.gspk[off]), a.gmem_seq ? static_cast<float>(a.gmem[off]) : 0.f,
          a.gcomp_seq ? static_cast<float>(a.gcomp[off]) : 0.f};
}

// The checkpoint chunks from the last (clif_checks.h): a forward pass over the chunk's saved
// h recomputes m_t into a per-thread array (the forward's operations, so the same bits), then
// the backward steps run over it in reverse; h stays in a per-thread array too, so each saved
// value is read from memory once. Each step issues the next step's gradient loads before its
// own arithmetic and store (see the forward's note on loads ahead).
template <typename in_t, int RESET, int KIND>
__global__ void __launch_bounds__(kThreads) clif_backward_kernel(const BackwardArgs<in_t> a) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= a.N) return;
  const int64_t T = a.T, N = a.N;
  const float beta = a.beta[n * a.beta_stride];
  const float theta = a.theta[n * a.theta_stride];
  const float gsf = a.gsf[n * a.gsf_stride];
  float GU = (a.gmem && !a.gmem_seq) ? static_cast<float>(a.gmem[n]) : 0.f;
  float GM = (a.gcomp && !a.gcomp_seq) ? static_cast<float>(a.gcomp[n]) : 0.f;
  ParamGrads<float> pg{0.f, 0.f, 0.f};
  if (T > 0) {
    float h_chunk[kSaveChunk];
    float m_chunk[kSaveChunk + 1];  // m_chunk[i]: m_{t0 + i - 1}
    float b = 0.f;  // sigma(m_t) for the step being processed; "none" never reads it
    int64_t off = (T - 1) * N + n;
    BackwardLoads in = load_backward_step(a, off);
    for (int64_t c = (T - 1) / kSaveChunk; c >= 0; --c) {
      const int64_t t0 = c * kSaveChunk;
      const int len = static_cast<int>(T - t0 < kSaveChunk ? T - t0 : kSaveChunk);
      m_chunk[0] = a.saved[(T + c) * N + n];
      for (int i = 0; i < len; ++i) {
        const float h = a.saved[(t0 + i) * N + n];
        h_chunk[i] = h;
        m_chunk[i + 1] = clif_comp_update(clif_comp_gate(h, beta), m_chunk[i], clif_fire(h - theta));
      }
      if (t0 + len == T && RESET != RESET_NONE) b = clif_sigmoid(m_chunk[len]);
      for (int i = len - 1; i >= 0; --i) {
        const int64_t t = t0 + i;
        BackwardLoads next{0.f, 0.f, 0.f};
        if (t > 0) next = load_backward_step(a, off - N);  // step t-1's, ahead of this step's work
        float b_prev = 0.f, u_prev;
        if (t > 0) {  // redo step t-1's reset: u_{t-1} (never run the dynamics backwards)
          const float h_prev = i > 0 ? h_chunk[i - 1] : a.saved[off - N];
          if (RESET == RESET_NONE) {
            u_prev = h_prev;
          } else {
            b_prev = clif_sigmoid(m_chunk[i]);
            u_prev = clif_reset<float, RESET>(h_prev, clif_fire(h_prev - theta), b_prev, theta);
          }
        } else {
          u_prev = a.mem0 ? static_cast<float>(a.mem0[n]) : 0.f;
        }
        const float gh = clif_backward_step<float, RESET, KIND>(h_chunk[i], m_chunk[i], b, u_prev, beta, theta,
                                                                gsf, a.sc, in.dspk, in.du, in.dm, GU, GM, pg);
        a.dx[off] = static_cast<in_t>(gh);
        b = b_prev;
        in = next;
        off -= N;
      }
    }
  }
  a.dcomp0[n] = static_cast<in_t>(GM);
  a.dmem0[n] = static_cast<in_t>(GU);
  if (a.dbeta) {
    a.dbeta[n] = pg.beta;
    a.dtheta[n] = pg.theta;
    a.dgsf[n] = pg.gsf;
  }
}

inline int64_t stride_of(const at::Tensor& p, int64_t N) { return (p.numel() == N && N != 1) ? 1 : 0; }

inline unsigned blocks_for(int64_t N) { return static_cast<unsigned>((N + kThreads - 1) / kThreads); }

// The forward forms its offsets in 32-bit arithmetic where every one of a call fits: a
// quarter fewer integer instructions (sm_90 SASS of the float kernel: 648 -> 592 in all, the
// same floating-point ones). The backward keeps 64-bit offsets: with 32-bit ones nvcc unrolls
// its chunk loops completely (896 -> 3,480 instructions, 55 KiB of code per kernel), which
// needs a GPU to judge.
#ifdef CLIF_CUDA_EMULATION
int64_t index32_limit = std::numeric_limits<int32_t>::max();  // tests lower it to run the 64-bit kernels
#else
constexpr int64_t index32_limit = std::numeric_limits<int32_t>::max();
#endif

// The largest offset the forward forms is below (saved_rows(T) + 1) * N (its running offset
// ends one row past the last; checkpoints sit in rows T .. saved_rows(T) - 1).
inline bool fits_index32(int64_t T, int64_t N) {
  return N <= index32_limit && (saved_rows(T) + 1) <= index32_limit / std::max<int64_t>(N, 1);
}

// f(std::integral_constant<int, R>{}) for the reset id: one kernel per reset mechanism.
template <typename F>
void with_reset(int64_t reset, F&& f) {
  switch (reset) {
    case RESET_SUBTRACT: f(std::integral_constant<int, RESET_SUBTRACT>{}); break;
    case RESET_ZERO: f(std::integral_constant<int, RESET_ZERO>{}); break;
    default: f(std::integral_constant<int, RESET_NONE>{}); break;
  }
}

template <typename in_t, typename Index>
void launch_forward(const ForwardArgs<in_t>& a, int64_t reset, cudaStream_t stream) {
  with_reset(reset, [&](auto r) {
    CLIF_LAUNCH(clif_forward_kernel<in_t, decltype(r)::value, Index>, blocks_for(a.N), kThreads, stream, a);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> clif_forward_cuda(
    const at::Tensor& x, const std::optional<at::Tensor>& comp0, const std::optional<at::Tensor>& mem0,
    const at::Tensor& beta, const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset, int64_t surrogate,
    double surrogate_param, bool return_sequences, bool save) {
  (void)surrogate;
  (void)surrogate_param;
  check_forward_args(x, comp0, mem0, beta, threshold, gsf, reset);
  TORCH_CHECK(x.scalar_type() != at::kDouble, "snntorch_clif: the CUDA kernel takes float32, float16 or bfloat16");
  const c10::cuda::CUDAGuard guard(x.device());
  ForwardOutputs o = allocate_forward(x, return_sequences, save);
  const int64_t T = x.size(0), N = neurons(x);
  if (N == 0) return {o.spk, o.comp, o.mem, o.saved};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  CLIF_DISPATCH_CUDA_TYPES(x.scalar_type(), "clif_forward_cuda", [&] {
    ForwardArgs<scalar_t> a;
    a.T = T;
    a.N = N;
    a.x = x.const_data_ptr<scalar_t>();
    a.comp0 = has_state(comp0) ? comp0->const_data_ptr<scalar_t>() : nullptr;
    a.mem0 = has_state(mem0) ? mem0->const_data_ptr<scalar_t>() : nullptr;
    a.beta = beta.const_data_ptr<float>();
    a.theta = threshold.const_data_ptr<float>();
    a.gsf = gsf.const_data_ptr<float>();
    a.beta_stride = stride_of(beta, N);
    a.theta_stride = stride_of(threshold, N);
    a.gsf_stride = stride_of(gsf, N);
    a.return_sequences = return_sequences;
    a.spk = o.spk.mutable_data_ptr<scalar_t>();
    a.comp = o.comp.mutable_data_ptr<scalar_t>();
    a.mem = o.mem.mutable_data_ptr<scalar_t>();
    a.saved = save ? o.saved.mutable_data_ptr<float>() : nullptr;
    if (fits_index32(T, N)) {
      launch_forward<scalar_t, int32_t>(a, reset, stream);
    } else {
      launch_forward<scalar_t, int64_t>(a, reset, stream);
    }
  });
  return {o.spk, o.comp, o.mem, o.saved};
}

template <typename in_t, int RESET>
void launch_backward(const BackwardArgs<in_t>& a, int kind, cudaStream_t stream) {
  const unsigned blocks = blocks_for(a.N);
  switch (kind) {
    case SG_RECTANGLE: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_RECTANGLE>, blocks, kThreads, stream, a); break;
    case SG_ATAN: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_ATAN>, blocks, kThreads, stream, a); break;
    case SG_FAST_SIGMOID: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_FAST_SIGMOID>, blocks, kThreads, stream, a); break;
    case SG_SIGMOID: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_SIGMOID>, blocks, kThreads, stream, a); break;
    case SG_TRIANGULAR: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_TRIANGULAR>, blocks, kThreads, stream, a); break;
    case SG_STRAIGHT_THROUGH:
      CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_STRAIGHT_THROUGH>, blocks, kThreads, stream, a);
      break;
    default: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_DISABLED>, blocks, kThreads, stream, a); break;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> clif_backward_cuda(
    const at::Tensor& grad_spk, const std::optional<at::Tensor>& grad_comp,
    const std::optional<at::Tensor>& grad_mem, const at::Tensor& saved, const std::optional<at::Tensor>& mem0,
    const at::Tensor& beta, const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset, int64_t surrogate,
    double surrogate_param, bool param_grads) {
  check_backward_args(grad_spk, grad_comp, grad_mem, saved, mem0, beta, threshold, gsf, reset, surrogate);
  TORCH_CHECK(grad_spk.scalar_type() != at::kDouble,
              "snntorch_clif: the CUDA kernel takes float32, float16 or bfloat16");
  const c10::cuda::CUDAGuard guard(grad_spk.device());
  BackwardOutputs o = allocate_backward(grad_spk, param_grads);
  const int64_t T = grad_spk.size(0), N = neurons(grad_spk);
  if (N == 0) return {o.dx, o.dcomp0, o.dmem0, o.dbeta, o.dthreshold, o.dgsf};
  const bool has_gcomp = grad_comp.has_value() && grad_comp->defined();
  const bool has_gmem = grad_mem.has_value() && grad_mem->defined();
  const bool has_mem0 = mem0.has_value() && mem0->defined();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  CLIF_DISPATCH_CUDA_TYPES(grad_spk.scalar_type(), "clif_backward_cuda", [&] {
    BackwardArgs<scalar_t> a;
    a.T = T;
    a.N = N;
    a.sc = make_surrogate_consts<float>(static_cast<int>(surrogate), surrogate_param);
    a.gspk = grad_spk.const_data_ptr<scalar_t>();
    a.gcomp = has_gcomp ? grad_comp->const_data_ptr<scalar_t>() : nullptr;
    a.gmem = has_gmem ? grad_mem->const_data_ptr<scalar_t>() : nullptr;
    a.gcomp_seq = is_sequence_grad(grad_comp, grad_spk);
    a.gmem_seq = is_sequence_grad(grad_mem, grad_spk);
    a.saved = saved.const_data_ptr<float>();
    a.mem0 = has_mem0 ? mem0->const_data_ptr<scalar_t>() : nullptr;
    a.beta = beta.const_data_ptr<float>();
    a.theta = threshold.const_data_ptr<float>();
    a.gsf = gsf.const_data_ptr<float>();
    a.beta_stride = stride_of(beta, N);
    a.theta_stride = stride_of(threshold, N);
    a.gsf_stride = stride_of(gsf, N);
    a.dx = o.dx.mutable_data_ptr<scalar_t>();
    a.dcomp0 = o.dcomp0.mutable_data_ptr<scalar_t>();
    a.dmem0 = o.dmem0.mutable_data_ptr<scalar_t>();
    a.dbeta = param_grads ? o.dbeta.mutable_data_ptr<float>() : nullptr;
    a.dtheta = param_grads ? o.dthreshold.mutable_data_ptr<float>() : nullptr;
    a.dgsf = param_grads ? o.dgsf.mutable_data_ptr<float>() : nullptr;
    const int kind = static_cast<int>(surrogate);
    // 64-bit offsets (see fits_index32)
    with_reset(reset, [&](auto r) { launch_backward<scalar_t, decltype(r)::value>(a, kind, stream); });
  });
  return {o.dx, o.dcomp0, o.dmem0, o.dbeta, o.dthreshold, o.dgsf};
}

}  // namespace

// The emulated-CUDA test build registers these host functions for its own twin ops on the CPU.
#ifndef CLIF_CUDA_LIBRARY
#define CLIF_CUDA_LIBRARY snntorch_clif
#define CLIF_CUDA_DISPATCH_KEY CUDA
#endif
TORCH_LIBRARY_IMPL(CLIF_CUDA_LIBRARY, CLIF_CUDA_DISPATCH_KEY, m) {
  m.impl("clif_forward", &clif_forward_cuda);
  m.impl("clif_backward", &clif_backward_cuda);
}

}  // namespace snntorch_clif
