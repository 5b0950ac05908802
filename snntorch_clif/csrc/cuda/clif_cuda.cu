// CUDA kernels of snntorch_clif::clif_forward and snntorch_clif::clif_backward.
//
// Implements snntorch_clif/reference.py, clif_sequence_reference (the `for x in
// x_seq.unbind(0)` loop, lines 205-213 at this writing, over clif_step_reference's lines
// 142-166, `delay = reset_delay and ...` .. `return s * graded_spikes_factor, comp, mem`,
// without the inhibition / state_quant branches), fused over time,
// and its reverse-mode derivative (reset_delay: a runtime flag), the same contract as
// cpu/clif_cpu.cpp. All arithmetic is csrc/clif_math.h (compiled with --fmad=false and
// --ftz=true, as the CPU side with -ffp-contract=off and subnormals flushed, so both devices
// round alike).
//
// One thread per neuron (two neighbouring ones in the float16 / bfloat16 forward), grid over
// N, the time loop inside with the carries in registers; for a fixed t a warp reads
// consecutive neurons, so every [T, N] access coalesces.
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
#include <cstring>
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
  bool delay;  // reset_delay (with a reset): mem0 and the mem output are h, mem0's reset is pending
  in_t* __restrict__ spk;
  in_t* __restrict__ comp;
  in_t* __restrict__ mem;
  float* __restrict__ saved;  // nullptr: nothing saved
};

// W neighbouring values of one row, read or written as one access of W * sizeof(T) bytes:
// a pair of float16 / bfloat16 is one 32-bit access (a GPU requires the alignment; the
// emulated build checks it).
template <typename T, int W>
struct alignas(W * sizeof(T)) Lanes {
  T v[W];
};

#ifdef CLIF_CUDA_EMULATION
template <int W, typename T>
void check_lanes_aligned(const T* p) {
  TORCH_CHECK(reinterpret_cast<uintptr_t>(p) % alignof(Lanes<T, W>) == 0, "emulated CUDA: misaligned address");
}
#endif

template <int W, typename T>
__device__ __forceinline__ Lanes<T, W> load_lanes(const T* p) {
#ifdef CLIF_CUDA_EMULATION
  check_lanes_aligned<W>(p);
  Lanes<T, W> r;
  std::memcpy(&r, p, sizeof r);
  return r;
#else
  return *reinterpret_cast<const Lanes<T, W>*>(p);
#endif
}

template <int W, typename T>
__device__ __forceinline__ void store_lanes(T* p, const Lanes<T, W>& value) {
#ifdef CLIF_CUDA_EMULATION
  check_lanes_aligned<W>(p);
  std::memcpy(p, &value, sizeof value);
#else
  *reinterpret_cast<Lanes<T, W>*>(p) = value;
#endif
}

// comp and mem of W neighbouring neurons at offset `off` (mem: u_t, or h_t with reset_delay).
template <int W, typename in_t, typename Index>
__device__ __forceinline__ void store_states(const ForwardArgs<in_t>& a, Index off, const float* u, const float* m) {
  Lanes<in_t, W> comp, mem;
#pragma unroll
  for (int j = 0; j < W; ++j) {
    comp.v[j] = static_cast<in_t>(m[j]);
    mem.v[j] = static_cast<in_t>(u[j]);
  }
  store_lanes<W>(a.comp + off, comp);
  store_lanes<W>(a.mem + off, mem);
}

// Blocks of 256 threads per SM the compiler must fit, i.e. a register cap of 65536 / (256 x
// this): 8 (32 registers, a full SM) for the one-neuron 32-bit kernels, which need no more;
// 6 (40 registers) for the others, which spill under 32 (benchmarks/cuda_resources.py).
template <typename Index, int W>
constexpr int kForwardMinBlocks = W == 1 && sizeof(Index) == 4 ? 8 : 6;

// Each thread runs W neighbouring neurons (W = 2 for float16 / bfloat16 when the rows allow
// it, see pairs_fit; else 1), every row access one W-wide access. Rows are reached through a
// running offset (one add per step, no 64-bit index products), and each step's loads for the
// next step are issued before its own arithmetic and stores, so their latency overlaps it
// (the compiler may not move a load above a store it cannot prove apart). The arithmetic and
// its order are clif_math.h's, exactly as in the CPU kernel, per neuron.
// Index: the integer type of every offset, int32_t when fits_index32 (see there), else int64_t.
template <typename in_t, int RESET, typename Index, int W>
__global__ void __launch_bounds__(kThreads, kForwardMinBlocks<Index, W>) clif_forward_kernel(const ForwardArgs<in_t> a) {
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (thread >= a.N / W) return;
  const Index n = static_cast<Index>(thread * W), T = static_cast<Index>(a.T), N = static_cast<Index>(a.N);
  float beta[W], theta[W], gsf[W], u[W], m[W], x[W];
  const Lanes<in_t, W> mem0 = a.mem0 ? load_lanes<W>(a.mem0 + n) : Lanes<in_t, W>{};
  const Lanes<in_t, W> comp0 = a.comp0 ? load_lanes<W>(a.comp0 + n) : Lanes<in_t, W>{};
#pragma unroll
  for (int j = 0; j < W; ++j) {
    beta[j] = a.beta[(n + j) * static_cast<Index>(a.beta_stride)];
    theta[j] = a.theta[(n + j) * static_cast<Index>(a.theta_stride)];
    gsf[j] = a.gsf[(n + j) * static_cast<Index>(a.gsf_stride)];
    u[j] = a.mem0 ? static_cast<float>(mem0.v[j]) : 0.f;
    m[j] = a.comp0 ? static_cast<float>(comp0.v[j]) : 0.f;
  }
  // reset_delay: mem0 is h_{-1}, whose reset applies before step 0. With T = 0 the mem output
  // is mem0 itself (the final state below stores u), so the reset is skipped then.
  if (a.delay && a.mem0 && T > 0) {
#pragma unroll
    for (int j = 0; j < W; ++j) u[j] = clif_delayed_reset<float, RESET>(u[j], m[j], theta[j]);
  }
  // saved rows (clif_checks.h): h_t at row t; row T + c: m_{c K - 1}, K = kSaveChunk
  float* checkpoint = a.saved ? a.saved + T * N + n : nullptr;
  Lanes<in_t, W> x_lanes = T > 0 ? load_lanes<W>(a.x + n) : Lanes<in_t, W>{};
  for (Index t = 0, off = n, k = 0; t < T; ++t, off += N) {
#pragma unroll
    for (int j = 0; j < W; ++j) x[j] = static_cast<float>(x_lanes.v[j]);
    if (t + 1 < T) x_lanes = load_lanes<W>(a.x + off + N);
    if (a.saved) {
      if (k == 0) {
        Lanes<float, W> mc;
#pragma unroll
        for (int j = 0; j < W; ++j) mc.v[j] = m[j];
        store_lanes<W>(checkpoint, mc);
        checkpoint += N;
      }
      k = k + 1 == kSaveChunk ? 0 : k + 1;
    }
    Lanes<in_t, W> spk;
    Lanes<float, W> hs;
#pragma unroll
    for (int j = 0; j < W; ++j) {
      float s;
      clif_forward_step<float, RESET>(x[j], beta[j], theta[j], u[j], m[j], hs.v[j], s);
      spk.v[j] = static_cast<in_t>(s * gsf[j]);
    }
    store_lanes<W>(a.spk + off, spk);
    if (a.saved) store_lanes<W>(a.saved + off, hs);
    if (a.delay) {  // reset_delay: the mem output is h_t (the final state stored at the last step)
      if (a.return_sequences) {
        store_states<W>(a, off, hs.v, m);
      } else if (t + 1 == T) {
        store_states<W>(a, n, hs.v, m);
      }
    } else if (a.return_sequences) {
      store_states<W>(a, off, u, m);
    }
  }
  if (!a.return_sequences && !(a.delay && T > 0)) store_states<W>(a, n, u, m);
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
  const in_t* __restrict__ mem0;  // nullptr: u_{-1} = 0 (without delay only dL/dbeta reads it)
  const float* __restrict__ beta;  // parameters arrive in float32
  const float* __restrict__ theta;
  const float* __restrict__ gsf;
  int64_t beta_stride, theta_stride, gsf_stride;
  bool delay;  // reset_delay (with a reset): see clif_backward_core's delay, clif_delayed_reset_backward
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

template <typename in_t, typename Index>
__device__ __forceinline__ BackwardLoads load_backward_step(const BackwardArgs<in_t>& a, Index off) {
  return {static_cast<float>(a.gspk[off]), a.gmem_seq ? static_cast<float>(a.gmem[off]) : 0.f,
          a.gcomp_seq ? static_cast<float>(a.gcomp[off]) : 0.f};
}

// The checkpoint chunks from the last (clif_checks.h): a forward pass over the chunk's saved
// h recomputes m_t (the forward's operations, so the same bits), then the backward steps run
// over it in reverse. Both loops are unrolled over the whole chunk, so h_chunk and m_chunk
// index with constants and live in registers (no stack frame); only the first chunk taken,
// the last in time, can be shorter (`len`), and its steps past `len` are skipped, not indexed.
// (A loop with a variable count put both arrays on the stack: 144 bytes of local memory per
// thread, a store and reloads per step.) Each saved value is read from memory once, a chunk's
// h loads all issued before its arithmetic; each backward step issues the next step's
// gradient loads before its own work (see the forward's note on loads ahead).
// Index: as in the forward (fits_index32 covers every offset formed here).
template <typename in_t, int RESET, int KIND, typename Index>
__global__ void __launch_bounds__(kThreads) clif_backward_kernel(const BackwardArgs<in_t> a) {
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (thread >= a.N) return;
  const Index n = static_cast<Index>(thread), T = static_cast<Index>(a.T), N = static_cast<Index>(a.N);
  constexpr Index K = static_cast<Index>(kSaveChunk);
  const float beta = a.beta[n * static_cast<Index>(a.beta_stride)];
  const float theta = a.theta[n * static_cast<Index>(a.theta_stride)];
  const float gsf = a.gsf[n * static_cast<Index>(a.gsf_stride)];
  const bool delay = RESET != RESET_NONE && a.delay;
  float GU = (a.gmem && !a.gmem_seq) ? static_cast<float>(a.gmem[n]) : 0.f;
  float GM = (a.gcomp && !a.gcomp_seq) ? static_cast<float>(a.gcomp[n]) : 0.f;
  ParamGrads<float> pg{0.f, 0.f, 0.f};
  if (T > 0) {
    float h_chunk[kSaveChunk];
    float m_chunk[kSaveChunk + 1];  // m_chunk[i]: m_{t0 + i - 1}
    float b = 0.f;  // sigma(m_t) for the step being processed; "none" never reads it
    Index off = (T - 1) * N + n;  // step t's
    BackwardLoads in = load_backward_step(a, off);
    Index c = (T - 1) / K;
    for (Index len = T - c * K; c >= 0; --c, len = K) {
      const Index t0 = c * K;
      m_chunk[0] = a.saved[(T + c) * N + n];
#pragma unroll
      for (int i = 0; i < kSaveChunk; ++i) {  // all of the chunk's loads in flight at once
        if (i < len) h_chunk[i] = a.saved[(t0 + i) * N + n];
      }
      float m_last = 0.f;  // m_{t0 + len - 1}
#pragma unroll
      for (int i = 0; i < kSaveChunk; ++i) {
        if (i < len) {
          const float h = h_chunk[i];
          m_chunk[i + 1] = clif_comp_update(clif_comp_gate(h, beta), m_chunk[i], clif_fire(h - theta));
          m_last = m_chunk[i + 1];
        }
      }
      if (t0 + len == T && RESET != RESET_NONE) b = clif_sigmoid(m_last);
#pragma unroll
      for (int i = kSaveChunk - 1; i >= 0; --i) {
        if (i < len) {
          const Index t = t0 + i;
          BackwardLoads next{0.f, 0.f, 0.f};
          if (t > 0) next = load_backward_step(a, off - N);  // step t-1's, ahead of this step's work
          float b_prev = 0.f, u_prev, h_prev;
          if (t > 0) {  // redo step t-1's reset: u_{t-1} (never run the dynamics backwards)
            h_prev = i > 0 ? h_chunk[i - 1] : a.saved[off - N];
            if (RESET == RESET_NONE) {
              u_prev = h_prev;
            } else {
              b_prev = clif_sigmoid(m_chunk[i]);
              u_prev = clif_reset<float, RESET>(h_prev, clif_fire(h_prev - theta), b_prev, theta);
            }
          } else {
            h_prev = u_prev = a.mem0 ? static_cast<float>(a.mem0[n]) : 0.f;
            // reset_delay: u_{-1} is mem0's reset, from m_{-1} (the checkpoint), as the forward did
            if (delay && a.mem0) u_prev = clif_delayed_reset<float, RESET>(h_prev, m_chunk[i], theta);
          }
          const float gh = clif_backward_step<float, RESET, KIND>(h_chunk[i], m_chunk[i], b, u_prev, beta, theta,
                                                                  gsf, a.sc, in.dspk, in.du, in.dm, GU, GM, pg,
                                                                  delay);
          // reset_delay: GU on through step t-1's reset (at t = 0: mem0's, when there is one)
          if (delay && (t > 0 || a.mem0)) clif_delayed_reset_backward<float, RESET>(h_prev, theta, GU, pg.theta);
          a.dx[off] = static_cast<in_t>(gh);
          b = b_prev;
          in = next;
          off -= N;
        }
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

// Both kernels form their offsets in 32-bit arithmetic where every one of a call fits (sm_90
// SASS, float: forward 648 -> 592 instructions, backward 3,864 -> 3,600, the same
// floating-point ones).
#ifdef CLIF_CUDA_EMULATION
int64_t index32_limit = std::numeric_limits<int32_t>::max();  // tests lower it to run the 64-bit kernels
#else
constexpr int64_t index32_limit = std::numeric_limits<int32_t>::max();
#endif

// The largest offset either kernel forms is below (saved_rows(T) + 1) * N (the forward's
// running offset ends one row past the last; checkpoints sit in rows T .. saved_rows(T) - 1);
// the smallest is the backward's n - N, after its last step.
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

// Pairs of neurons per thread for the half types when N is even and every [T, N] / [N] tensor
// starts 4-byte aligned (a view can start at an odd element); float32 already moves 4 bytes
// per neuron and access.
template <typename in_t>
bool pairs_fit(const ForwardArgs<in_t>& a) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % (2 * sizeof(in_t)) == 0; };
  return a.N % 2 == 0 && aligned(a.x) && aligned(a.comp0) && aligned(a.mem0) && aligned(a.spk) &&
         aligned(a.comp) && aligned(a.mem);  // saved: a fresh float32 buffer, rows of even N
}

template <typename in_t, typename Index>
void launch_forward(const ForwardArgs<in_t>& a, int64_t reset, cudaStream_t stream) {
  with_reset(reset, [&](auto r) {
    constexpr int R = decltype(r)::value;
    if constexpr (sizeof(in_t) == 2) {
      if (pairs_fit(a)) {
        CLIF_LAUNCH(clif_forward_kernel<in_t, R, Index, 2>, blocks_for(a.N / 2), kThreads, stream, a);
        return;
      }
    }
    CLIF_LAUNCH(clif_forward_kernel<in_t, R, Index, 1>, blocks_for(a.N), kThreads, stream, a);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> clif_forward_cuda(
    const at::Tensor& x, const std::optional<at::Tensor>& comp0, const std::optional<at::Tensor>& mem0,
    const at::Tensor& beta, const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset, int64_t surrogate,
    double surrogate_param, bool return_sequences, bool save, bool reset_delay) {
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
    a.delay = reset_delay && reset != RESET_NONE;
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

template <typename in_t, int RESET, typename Index>
void launch_backward(const BackwardArgs<in_t>& a, int kind, cudaStream_t stream) {
  const unsigned blocks = blocks_for(a.N);
  switch (kind) {
    case SG_RECTANGLE: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_RECTANGLE, Index>, blocks, kThreads, stream, a); break;
    case SG_ATAN: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_ATAN, Index>, blocks, kThreads, stream, a); break;
    case SG_FAST_SIGMOID: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_FAST_SIGMOID, Index>, blocks, kThreads, stream, a); break;
    case SG_SIGMOID: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_SIGMOID, Index>, blocks, kThreads, stream, a); break;
    case SG_TRIANGULAR: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_TRIANGULAR, Index>, blocks, kThreads, stream, a); break;
    case SG_STRAIGHT_THROUGH:
      CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_STRAIGHT_THROUGH, Index>, blocks, kThreads, stream, a);
      break;
    default: CLIF_LAUNCH(clif_backward_kernel<in_t, RESET, SG_DISABLED, Index>, blocks, kThreads, stream, a); break;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> clif_backward_cuda(
    const at::Tensor& grad_spk, const std::optional<at::Tensor>& grad_comp,
    const std::optional<at::Tensor>& grad_mem, const at::Tensor& saved, const std::optional<at::Tensor>& mem0,
    const at::Tensor& beta, const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset, int64_t surrogate,
    double surrogate_param, bool param_grads, bool reset_delay) {
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
    a.delay = reset_delay && reset != RESET_NONE;
    a.dx = o.dx.mutable_data_ptr<scalar_t>();
    a.dcomp0 = o.dcomp0.mutable_data_ptr<scalar_t>();
    a.dmem0 = o.dmem0.mutable_data_ptr<scalar_t>();
    a.dbeta = param_grads ? o.dbeta.mutable_data_ptr<float>() : nullptr;
    a.dtheta = param_grads ? o.dthreshold.mutable_data_ptr<float>() : nullptr;
    a.dgsf = param_grads ? o.dgsf.mutable_data_ptr<float>() : nullptr;
    const int kind = static_cast<int>(surrogate);
    with_reset(reset, [&](auto r) {
      if (fits_index32(T, N)) {
        launch_backward<scalar_t, decltype(r)::value, int32_t>(a, kind, stream);
      } else {
        launch_backward<scalar_t, decltype(r)::value, int64_t>(a, kind, stream);
      }
    });
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
  m.impl("clif_forward", &forward_with_step<&clif_forward_cuda>);
  m.impl("clif_backward", &clif_backward_cuda);
}

}  // namespace snntorch_clif
