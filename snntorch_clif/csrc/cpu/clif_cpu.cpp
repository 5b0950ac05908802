// CPU kernels of snntorch_clif::clif_forward and snntorch_clif::clif_backward.
//
// Implements snntorch_clif/reference.py, clif_sequence_reference (the `for x in
// x_seq.unbind(0)` loop, lines 205-213 at this writing, over clif_step_reference's lines
// 142-166, `delay = reset_delay and ...` .. `return s * graded_spikes_factor, comp, mem`,
// without the inhibition / state_quant branches), fused over time,
// and its reverse-mode derivative. The per-element arithmetic is csrc/clif_math.h, shared
// with the CUDA kernel; this file only moves data. With reset_delay (reference.py's delayed
// reset) the dynamics are the same: a given mem0 (h_{-1}) is reset before step 0, the mem
// output is h_t, and the backward runs the "none" row with GU carried through each detached
// reset (clif_math.h: clif_backward_core's delay, clif_delayed_reset_backward).
//
// Layout [T, N]. Neurons are split over threads (parallel_chunks: the calling thread and
// helper threads claim blocks of kBlock neurons); for one block the time loop is outside and the
// loop over the block's neurons inside, so the inner loop is contiguous and vectorises
// (the compiler vectorises clif_math.h's scalar code; ISA variants picked at run time).
// The carries (u, m; GU, GM, sigma(m)) and the block's parameters live in per-thread rows
// (work_rows) that stay in L1/L2. Memory traffic: x in, spikes and h out (12 B per
// neuron-step in float32), then grad in, h in, dx out (12 B); m only every kSaveChunk steps
// (clif_checks.h).
#include "../clif_checks.h"
#include "../clif_math.h"

#include <ATen/Dispatch.h>
#include <ATen/EmptyTensor.h>
#include <c10/core/CPUAllocator.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#endif

#if defined(__GNUC__)
#define CLIF_FORCE_INLINE inline __attribute__((always_inline))
#define CLIF_RESTRICT __restrict__
#define CLIF_PREFETCH(addr, rw) __builtin_prefetch((addr), (rw), 3)
#else
#define CLIF_FORCE_INLINE inline
#define CLIF_RESTRICT
#define CLIF_PREFETCH(addr, rw) ((void)(addr))
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#define CLIF_X86_VARIANTS 1
#if defined(__clang__)
#define CLIF_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2")))
#else
// GCC otherwise keeps 256-bit vectors on AVX-512 machines.
#define CLIF_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2,prefer-vector-width=512")))
#endif
#define CLIF_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,bmi,bmi2")))
#include <cpuid.h>
#endif

namespace snntorch_clif {
namespace {

// Neurons per block: ~14 arrays of this many floats stay in L2 (a row of every stream
// and the carries), and a block is large enough for long contiguous vector loops.
constexpr int64_t kBlock = 1024;

// ---------------------------------------------------------------------------------------
// Row functions: one time step for `len` neurons, all operands in the compute type S.
// ---------------------------------------------------------------------------------------
// Rows of the next time step to fetch while this one computes (nullptr: none). Each row of a
// block is a separate 4 KiB piece at a stride of N values, where the hardware prefetcher
// starts over; asking for the next step's lines a chunk at a time overlaps those misses
// with the exp/divide chains of this step.
template <typename S>
struct NextRows {
  const S* read[3] = {nullptr, nullptr, nullptr};
  S* write[3] = {nullptr, nullptr, nullptr};
};

template <typename S>
CLIF_FORCE_INLINE void prefetch_chunk(const NextRows<S>& next, int64_t c0, int64_t len) {
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(S));
  for (int k = 0; k < 3; ++k) {
    if (next.read[k] != nullptr) {
      for (int64_t i = 0; i < len; i += kLine) CLIF_PREFETCH(next.read[k] + c0 + i, 0);
    }
    if (next.write[k] != nullptr) {
      for (int64_t i = 0; i < len; i += kLine) CLIF_PREFETCH(next.write[k] + c0 + i, 1);
    }
  }
}

template <typename S>
struct FwdRow {
  int64_t len;
  const S* x;
  S* u;  // carry: mem
  S* m;  // carry: comp
  const S* beta;
  const S* theta;
  const S* gsf;
  S* spk;
  S* h_save;  // nullptr: no autograd, nothing saved
  NextRows<S> next;
};

// Two loops per row (clif_forward_pre, then clif_forward_post), over chunks that keep the
// temporaries in L1: each loop's iterations are independent, so the out-of-order core
// overlaps the exp/divide chains of neighbouring vectors (one fused loop was ~1.5x slower).
template <typename S, int RESET>
CLIF_FORCE_INLINE void forward_row_impl(const FwdRow<S>& r) {
  constexpr int64_t kChunk = 256;
  alignas(64) S abuf[kChunk], hbuf[kChunk];
  for (int64_t c0 = 0; c0 < r.len; c0 += kChunk) {
    const int64_t len = std::min(kChunk, r.len - c0);
    prefetch_chunk(r.next, c0, len);
    const S* CLIF_RESTRICT x = r.x + c0;
    S* CLIF_RESTRICT u = r.u + c0;
    S* CLIF_RESTRICT m = r.m + c0;
    const S* CLIF_RESTRICT beta = r.beta + c0;
    const S* CLIF_RESTRICT theta = r.theta + c0;
    const S* CLIF_RESTRICT gsf = r.gsf + c0;
    S* CLIF_RESTRICT spk = r.spk + c0;
    S* CLIF_RESTRICT hs = r.h_save != nullptr ? r.h_save + c0 : hbuf;  // scratch when not saving
    S* CLIF_RESTRICT a = abuf;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      S h, s, ai;
      clif_forward_pre(x[i], beta[i], theta[i], u[i], h, s, ai);
      hs[i] = h;
      a[i] = ai;
      spk[i] = s * gsf[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const S h = hs[i];
      const S s = clif_fire(h - theta[i]);
      S ui, mi = m[i];
      clif_forward_post<S, RESET>(h, s, a[i], theta[i], ui, mi);
      u[i] = ui;
      m[i] = mi;
    }
  }
}

// One step of the backward's recomputation of m inside a checkpoint chunk: a_t and m_t from
// the saved h_t and m_{t-1}, with the forward's operations (clif_comp_gate, clif_fire,
// clif_comp_update), so m_t has the forward's bits; a_t is kept for the backward step.
template <typename S>
struct RecomputeRow {
  int64_t len;
  const S* h;
  const S* m_prev;
  const S* beta;
  const S* theta;
  S* m;
  S* a;
  NextRows<S> next;
};

template <typename S>
CLIF_FORCE_INLINE void recompute_row_impl(const RecomputeRow<S>& r) {
  constexpr int64_t kChunk = 256;
  for (int64_t c0 = 0; c0 < r.len; c0 += kChunk) {
    const int64_t len = std::min(kChunk, r.len - c0);
    prefetch_chunk(r.next, c0, len);
    const S* CLIF_RESTRICT h = r.h + c0;
    const S* CLIF_RESTRICT m_prev = r.m_prev + c0;
    const S* CLIF_RESTRICT beta = r.beta + c0;
    const S* CLIF_RESTRICT theta = r.theta + c0;
    S* CLIF_RESTRICT m = r.m + c0;
    S* CLIF_RESTRICT a = r.a + c0;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const S ai = clif_comp_gate(h[i], beta[i]);
      a[i] = ai;
      m[i] = clif_comp_update(ai, m_prev[i], clif_fire(h[i] - theta[i]));
    }
  }
}

// sigma(m_{t-1}) and u_{t-1} from the saved h_{t-1} and the recomputed m_{t-1} (the forward's
// reset, redone: the dynamics are never run backwards).
template <typename S>
struct PrevRow {
  int64_t len;
  const S* h;
  const S* m;
  const S* theta;
  S* b;
  S* u;
};

template <typename S, int RESET>
CLIF_FORCE_INLINE void prev_row_impl(const PrevRow<S>& r) {
  const S* CLIF_RESTRICT h = r.h;
  const S* CLIF_RESTRICT m = r.m;
  const S* CLIF_RESTRICT theta = r.theta;
  S* CLIF_RESTRICT b = r.b;
  S* CLIF_RESTRICT u = r.u;
  const int64_t len = r.len;
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    if (RESET == RESET_NONE) {
      u[i] = h[i];
    } else {
      const S bi = clif_sigmoid(m[i]);
      b[i] = bi;
      u[i] = clif_reset<S, RESET>(h[i], clif_fire(h[i] - theta[i]), bi, theta[i]);
    }
  }
}

template <typename S>
struct BwdRow {
  int64_t len;
  const S* h;       // h_t
  const S* m_prev;  // m_{t-1}
  const S* a;       // a_t = sigma((1 - beta) h_t), from the recomputation
  const S* u_prev;  // u_{t-1}
  const S* b;       // sigma(m_t)
  const S* dspk;
  const S* du;  // dL/dmem_t from a state sequence (zeros otherwise)
  const S* dm;
  S* GU;
  S* GM;
  const S* beta;
  const S* theta;
  const S* gsf;
  SurrogateConsts<S> sc;
  S* dx;
  S* pbeta;
  S* ptheta;
  S* pgsf;
  NextRows<S> next;
};

// PARAMS false: no parameter wants a gradient, so the per-neuron partial sums are neither
// read, computed nor written (r.pbeta/ptheta/pgsf unused); dx and the carries keep their bits.
template <typename S, int RESET, int KIND, bool PARAMS>
CLIF_FORCE_INLINE void backward_row_impl(const BwdRow<S>& r) {
  constexpr int64_t kChunk = 256;
  const SurrogateConsts<S> sc = r.sc;
  for (int64_t c0 = 0; c0 < r.len; c0 += kChunk) {
    const int64_t len = std::min(kChunk, r.len - c0);
    prefetch_chunk(r.next, c0, len);
    const S* CLIF_RESTRICT h = r.h + c0;
    const S* CLIF_RESTRICT m_prev = r.m_prev + c0;
    const S* CLIF_RESTRICT a = r.a + c0;
    const S* CLIF_RESTRICT u_prev = r.u_prev + c0;
    const S* CLIF_RESTRICT b = r.b + c0;
    const S* CLIF_RESTRICT dspk = r.dspk + c0;
    const S* CLIF_RESTRICT du = r.du + c0;
    const S* CLIF_RESTRICT dm = r.dm + c0;
    S* CLIF_RESTRICT GU = r.GU + c0;
    S* CLIF_RESTRICT GM = r.GM + c0;
    const S* CLIF_RESTRICT beta = r.beta + c0;
    const S* CLIF_RESTRICT theta = r.theta + c0;
    const S* CLIF_RESTRICT gsf = r.gsf + c0;
    S* CLIF_RESTRICT dx = r.dx + c0;
    S* CLIF_RESTRICT pbeta = PARAMS ? r.pbeta + c0 : nullptr;
    S* CLIF_RESTRICT ptheta = PARAMS ? r.ptheta + c0 : nullptr;
    S* CLIF_RESTRICT pgsf = PARAMS ? r.pgsf + c0 : nullptr;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      ParamGrads<S> pg{S(0), S(0), S(0)};
      if constexpr (PARAMS) pg = ParamGrads<S>{pbeta[i], ptheta[i], pgsf[i]};
      S gu = GU[i], gm = GM[i];
      // clif_backward_step with its gate a_t taken from the recomputation (same bits)
      const S g = clif_surrogate<S, KIND>(h[i] - theta[i], sc);
      dx[i] = clif_backward_core<S, RESET>(h[i], g, a[i], m_prev[i], b[i], u_prev[i], beta[i], theta[i], gsf[i],
                                           dspk[i], du[i], dm[i], gu, gm, pg);
      GU[i] = gu;
      GM[i] = gm;
      if constexpr (PARAMS) {
        pbeta[i] = pg.beta;
        ptheta[i] = pg.theta;
        pgsf[i] = pg.gsf;
      }
    }
  }
}

// reset_delay's backward after the backward row of step t (whose core ran as the "none" one,
// clif_math.h): GU = dL/du_{t-1} on through step t-1's detached reset to h_{t-1}
// (clif_delayed_reset_backward), and the threshold's partial sums (nullptr: none wanted).
template <typename S>
struct DelayedResetRow {
  int64_t len;
  const S* h;  // h_{t-1}; at t = 0 the given mem0 (h_{-1})
  const S* theta;
  S* GU;
  S* ptheta;
};

template <typename S, int RESET>
CLIF_FORCE_INLINE void delayed_reset_row_impl(const DelayedResetRow<S>& r) {
  const S* CLIF_RESTRICT h = r.h;
  const S* CLIF_RESTRICT theta = r.theta;
  S* CLIF_RESTRICT GU = r.GU;
  S* CLIF_RESTRICT ptheta = r.ptheta;
  const int64_t len = r.len;
  if (ptheta != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      S gu = GU[i], pt = ptheta[i];
      clif_delayed_reset_backward<S, RESET>(h[i], theta[i], gu, pt);
      GU[i] = gu;
      ptheta[i] = pt;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      S gu = GU[i], pt = S(0);
      clif_delayed_reset_backward<S, RESET>(h[i], theta[i], gu, pt);
      GU[i] = gu;
    }
  }
}

// One ISA variant = the row functions compiled for that instruction set.
template <typename S>
struct RowKernels {
  void (*forward[3])(const FwdRow<S>&);
  void (*recompute)(const RecomputeRow<S>&);
  void (*prev[3])(const PrevRow<S>&);
  void (*backward[2][3][NUM_SURROGATES])(const BwdRow<S>&);  // [parameter gradients][reset][surrogate]
  void (*delayed_reset[3])(const DelayedResetRow<S>&);        // [reset]
};

#define CLIF_DEFINE_VARIANT(NS, ATTR)                                              \
  namespace NS {                                                                   \
  template <typename S, int R>                                                     \
  ATTR void forward_row(const FwdRow<S>& r) { forward_row_impl<S, R>(r); }         \
  template <typename S>                                                            \
  ATTR void recompute_row(const RecomputeRow<S>& r) { recompute_row_impl<S>(r); }  \
  template <typename S, int R>                                                     \
  ATTR void prev_row(const PrevRow<S>& r) { prev_row_impl<S, R>(r); }              \
  template <typename S, int R, int K, bool P>                                      \
  ATTR void backward_row(const BwdRow<S>& r) { backward_row_impl<S, R, K, P>(r); } \
  template <typename S, int R>                                                     \
  ATTR void delayed_reset_row(const DelayedResetRow<S>& r) {                       \
    delayed_reset_row_impl<S, R>(r);                                               \
  }                                                                                \
  }

#define CLIF_KINDS(NS, S, R, P)                                                                       \
  {&NS::backward_row<S, R, 0, P>, &NS::backward_row<S, R, 1, P>, &NS::backward_row<S, R, 2, P>,     \
   &NS::backward_row<S, R, 3, P>, &NS::backward_row<S, R, 4, P>, &NS::backward_row<S, R, 5, P>,     \
   &NS::backward_row<S, R, 6, P>}
#define CLIF_RESETS(NS, S, P) {CLIF_KINDS(NS, S, 0, P), CLIF_KINDS(NS, S, 1, P), CLIF_KINDS(NS, S, 2, P)}

#define CLIF_TABLE(NS, S)                                                                                  \
  RowKernels<S> {                                                                                          \
    {&NS::forward_row<S, 0>, &NS::forward_row<S, 1>, &NS::forward_row<S, 2>}, &NS::recompute_row<S>,     \
        {&NS::prev_row<S, 0>, &NS::prev_row<S, 1>, &NS::prev_row<S, 2>},                                 \
        {CLIF_RESETS(NS, S, false), CLIF_RESETS(NS, S, true)},                                           \
        {&NS::delayed_reset_row<S, 0>, &NS::delayed_reset_row<S, 1>, &NS::delayed_reset_row<S, 2>}       \
  }

CLIF_DEFINE_VARIANT(generic, )
#ifdef CLIF_X86_VARIANTS
CLIF_DEFINE_VARIANT(avx512, CLIF_TARGET_AVX512)
CLIF_DEFINE_VARIANT(avx2, CLIF_TARGET_AVX2)
#endif

struct FloatVariant {
  RowKernels<float> kernels;
  const char* name;
};

// SNNTORCH_CLIF_CPU_ISA=avx2|generic caps the variant (to test them all on one machine).
FloatVariant pick_float_variant() {
  const char* cap = std::getenv("SNNTORCH_CLIF_CPU_ISA");
  const std::string want = cap ? cap : "";
#ifdef CLIF_X86_VARIANTS
  __builtin_cpu_init();
  // F16C from CPUID leaf 1 (ECX bit 29): clang before 18 rejects __builtin_cpu_supports("f16c").
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool has_f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                        __builtin_cpu_supports("bmi2") && has_f16c;
  const bool has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  if (has_avx512 && want != "avx2" && want != "generic") return {CLIF_TABLE(avx512, float), "avx512"};
  if (has_avx2 && want != "generic") return {CLIF_TABLE(avx2, float), "avx2"};
#endif
  (void)want;
  return {CLIF_TABLE(generic, float), "generic"};
}

const FloatVariant& float_variant() {
  static const FloatVariant v = pick_float_variant();
  return v;
}

template <typename S>
const RowKernels<S>& row_kernels();

template <>
const RowKernels<float>& row_kernels<float>() {
  return float_variant().kernels;
}

template <>
const RowKernels<double>& row_kernels<double>() {
  // float64 is for gradcheck: correctness only, default ISA.
  static const RowKernels<double> k = CLIF_TABLE(generic, double);
  return k;
}

// ---------------------------------------------------------------------------------------
// Block drivers: move one block of neurons through all T steps.
// ---------------------------------------------------------------------------------------
template <typename in_t, typename S>
CLIF_FORCE_INLINE void load(const in_t* src, S* dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<S>(src[i]);
}

template <typename in_t, typename S>
CLIF_FORCE_INLINE void store(const S* src, in_t* dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<in_t>(src[i]);
}

// A [1] or [N] parameter for neurons n0 .. n0+len.
template <typename S>
CLIF_FORCE_INLINE void load_param(const S* p, bool per_neuron, int64_t n0, S* dst, int64_t len) {
  if (per_neuron) {
    std::memcpy(dst, p + n0, len * sizeof(S));
  } else {
    std::fill(dst, dst + len, p[0]);
  }
}

template <typename in_t, typename S>
struct ForwardJob {
  int64_t T, N;
  int reset;
  const in_t* x;
  const in_t* comp0;  // nullptr: zeros
  const in_t* mem0;
  const S* beta;  // parameters arrive in the compute type
  const S* theta;
  const S* gsf;
  bool beta_pn, theta_pn, gsf_pn;  // per-neuron or scalar
  bool return_sequences;
  bool delay;  // reset_delay (with a reset): mem0 and the mem output are h, mem0's reset is pending
  in_t* spk;
  in_t* comp;
  in_t* mem;
  S* saved;  // nullptr when not saving
};

// Working rows of kBlock values (carries, parameters, conversion buffers, the backward's
// recomputed m and a), per thread and reused across calls, so that neither the stack nor the
// allocator sees them on every call. Rows are kRowStride values apart, a row plus one cache
// line, so row k starts k lines further into the L1's 4 KiB set pattern. As plain arrays of
// kBlock floats every row began at the same offset modulo 4 KiB, and the backward's inner
// loop (17 rows, 14 of them working rows) wanted 14 lines of one 12-way L1 set per vector
// (measured: the backward is 3-7 % faster at N = 4096 and 131072 with the rows staggered).
template <typename S>
constexpr int64_t kRowStride = kBlock + 64 / static_cast<int64_t>(sizeof(S));

template <typename S>
S* work_rows(int64_t rows) {
  thread_local std::vector<S> buf;
  const size_t want = static_cast<size_t>(rows * kRowStride<S> + 64 / sizeof(S));
  if (buf.size() < want) buf.assign(want, S(0));
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<S*>((p + 63) & ~uintptr_t(63));  // rows start on a cache line
}

// float32 kernels flush subnormals (clif_math.h, FlushSubnormals); float64 ones do not.
template <typename S>
struct SubnormalMode {};
template <>
struct SubnormalMode<float> : FlushSubnormals {};

template <typename in_t, typename S>
void forward_range(const ForwardJob<in_t, S>& j, int64_t begin, int64_t end) {
  [[maybe_unused]] const SubnormalMode<S> mode;
  constexpr bool kSame = std::is_same<in_t, S>::value;
  const RowKernels<S>& k = row_kernels<S>();
  const int64_t T = j.T, N = j.N;
  constexpr int64_t R = kRowStride<S>;
  S* const w = work_rows<S>(8);
  S *u = w, *m = w + R, *beta = w + 2 * R, *theta = w + 3 * R, *gsf = w + 4 * R, *xbuf = w + 5 * R, *sbuf = w + 6 * R;
  S* const hrow = w + 7 * R;  // reset_delay: h_t, where it is not saved
  for (int64_t n0 = begin; n0 < end; n0 += kBlock) {
    const int64_t len = std::min(kBlock, end - n0);
    load_param(j.beta, j.beta_pn, n0, beta, len);
    load_param(j.theta, j.theta_pn, n0, theta, len);
    load_param(j.gsf, j.gsf_pn, n0, gsf, len);
    if (j.comp0) load(j.comp0 + n0, m, len); else std::fill(m, m + len, S(0));
    if (j.mem0) load(j.mem0 + n0, u, len); else std::fill(u, u + len, S(0));
    const S* h_last = hrow;  // reset_delay: the h the mem output reports (h_{-1} = mem0 before a step)
    if (j.delay) {
      std::memcpy(hrow, u, len * sizeof(S));
      // mem0 is h_{-1}: its reset applies now (prev_row: clif_delayed_reset's operations)
      if (j.mem0) k.prev[j.reset](PrevRow<S>{len, hrow, m, theta, sbuf, u});
    }
    for (int64_t t = 0; t < T; ++t) {
      const int64_t off = t * N + n0;
      if (j.saved && t % kSaveChunk == 0) {  // checkpoint m_{t-1} (clif_checks.h)
        std::memcpy(j.saved + (T + t / kSaveChunk) * N + n0, m, len * sizeof(S));
      }
      FwdRow<S> row;
      row.len = len;
      row.u = u;
      row.m = m;
      row.beta = beta;
      row.theta = theta;
      row.gsf = gsf;
      if constexpr (kSame) {
        row.x = j.x + off;
        row.spk = j.spk + off;
      } else {
        load(j.x + off, xbuf, len);
        row.x = xbuf;
        row.spk = sbuf;
      }
      row.h_save = j.saved ? j.saved + off : (j.delay ? hrow : nullptr);
      if constexpr (kSame) {
        if (t + 1 < T) {
          row.next.read[0] = j.x + off + N;
          row.next.write[0] = j.spk + off + N;
          if (j.saved) row.next.write[1] = row.h_save + N;
        }
      }
      k.forward[j.reset](row);
      if constexpr (!kSame) store(sbuf, j.spk + off, len);
      if (j.delay) h_last = row.h_save;
      if (j.return_sequences) {
        store(m, j.comp + off, len);
        if (j.delay) store(h_last, j.mem + off, len); else store(u, j.mem + off, len);
      }
    }
    if (!j.return_sequences) {
      store(m, j.comp + n0, len);
      if (j.delay) store(h_last, j.mem + n0, len); else store(u, j.mem + n0, len);
    }
  }
}

template <typename in_t, typename S>
struct BackwardJob {
  int64_t T, N;
  int reset, kind;
  SurrogateConsts<S> sc;
  const in_t* gspk;
  const in_t* gcomp;  // nullptr, [N] or [T, N]
  const in_t* gmem;
  bool gcomp_seq, gmem_seq;
  const S* saved;
  const in_t* mem0;  // nullptr: u_{-1} taken as 0 (without delay only the beta gradient uses it)
  const S* beta;
  const S* theta;
  const S* gsf;
  bool beta_pn, theta_pn, gsf_pn;
  bool delay;  // reset_delay (with a reset): see clif_backward_core's delay, clif_delayed_reset_backward
  in_t* dx;
  in_t* dcomp0;
  in_t* dmem0;
  S* dbeta;  // nullptr when param_grads is off
  S* dtheta;
  S* dgsf;
};

// Per block: the checkpoint chunks from the last; in each, a forward pass over its rows of h
// recomputes m_t and a_t (clif_checks.h), then the backward steps run over them in reverse.
template <typename in_t, typename S>
void backward_range(const BackwardJob<in_t, S>& j, int64_t begin, int64_t end) {
  [[maybe_unused]] const SubnormalMode<S> mode;
  constexpr bool kSame = std::is_same<in_t, S>::value;
  const RowKernels<S>& k = row_kernels<S>();
  const int64_t T = j.T, N = j.N;
  const S* saved = j.saved;
  constexpr int64_t R = kRowStride<S>;
  S* const w = work_rows<S>(17 + 2 * kSaveChunk);
  S *GU = w, *GM = w + R, *b = w + 2 * R, *bprev = w + 3 * R, *uprev = w + 4 * R, *zero = w + 5 * R;
  S *beta = w + 6 * R, *theta = w + 7 * R, *gsf = w + 8 * R, *pb = w + 9 * R, *pt = w + 10 * R, *pg = w + 11 * R;
  S *dsbuf = w + 12 * R, *dubuf = w + 13 * R, *dmbuf = w + 14 * R, *dxbuf = w + 15 * R;
  std::fill(zero, zero + kBlock, S(0));
  S* const m_rows = w + 16 * R;                   // m_rows + (i - 1) R: m_{t0 + i - 1}, i >= 1
  S* const a_rows = m_rows + kSaveChunk * R;      // a_rows + i R: a_{t0 + i}
  S* const h0row = a_rows + kSaveChunk * R;       // reset_delay: mem0 (h_{-1})
  // reset_delay: step t's own reset is not in its graph, so its backward row is the "none" one
  const int core_reset = j.delay ? RESET_NONE : j.reset;
  S* bcur = b;
  S* bnext = bprev;
  for (int64_t n0 = begin; n0 < end; n0 += kBlock) {
    const int64_t len = std::min(kBlock, end - n0);
    load_param(j.beta, j.beta_pn, n0, beta, len);
    load_param(j.theta, j.theta_pn, n0, theta, len);
    load_param(j.gsf, j.gsf_pn, n0, gsf, len);
    if (j.dbeta) {
      std::fill(pb, pb + len, S(0));
      std::fill(pt, pt + len, S(0));
      std::fill(pg, pg + len, S(0));
    }
    if (j.gmem && !j.gmem_seq) load(j.gmem + n0, GU, len); else std::fill(GU, GU + len, S(0));
    if (j.gcomp && !j.gcomp_seq) load(j.gcomp + n0, GM, len); else std::fill(GM, GM + len, S(0));
    const int64_t chunks = (T + kSaveChunk - 1) / kSaveChunk;
    for (int64_t c = chunks - 1; c >= 0; --c) {
      const int64_t t0 = c * kSaveChunk, t1 = std::min(T, t0 + kSaveChunk);
      // m_{t0 + i - 1}: the checkpoint for i = 0, the recomputed rows after it
      const S* checkpoint = saved + (T + c) * N + n0;
      auto m_row = [&](int64_t i) -> const S* { return i == 0 ? checkpoint : m_rows + (i - 1) * R; };
      for (int64_t t = t0; t < t1; ++t) {
        RecomputeRow<S> rr;
        rr.len = len;
        rr.h = saved + t * N + n0;
        rr.m_prev = m_row(t - t0);
        rr.beta = beta;
        rr.theta = theta;
        rr.m = m_rows + (t - t0) * R;
        rr.a = a_rows + (t - t0) * R;
        if (t + 1 < t1) rr.next.read[0] = rr.h + N;
        k.recompute(rr);
      }
      if (t1 == T) {  // sigma(m_{T-1}) (the u_{T-1} it also writes is not used)
        k.prev[j.reset](PrevRow<S>{len, saved + (T - 1) * N + n0, m_row(T - t0), theta, bcur, uprev});
      }
      for (int64_t t = t1 - 1; t >= t0; --t) {
        const int64_t off = t * N + n0;
        if (t > 0) {
          k.prev[j.reset](PrevRow<S>{len, saved + (t - 1) * N + n0, m_row(t - t0), theta, bnext, uprev});
        } else if (j.mem0 && j.delay) {  // u_{-1}: mem0's reset, from m_{-1} (the checkpoint), as the forward
          load(j.mem0 + n0, h0row, len);
          k.prev[j.reset](PrevRow<S>{len, h0row, m_row(0), theta, bnext, uprev});
        } else if (j.mem0) {
          load(j.mem0 + n0, uprev, len);
        } else {
          std::fill(uprev, uprev + len, S(0));
        }
        BwdRow<S> row;
        row.len = len;
        row.h = saved + off;
        row.m_prev = m_row(t - t0);
        row.a = a_rows + (t - t0) * R;
        row.u_prev = uprev;
        row.b = bcur;
        row.GU = GU;
        row.GM = GM;
        row.beta = beta;
        row.theta = theta;
        row.gsf = gsf;
        row.sc = j.sc;
        row.pbeta = pb;
        row.ptheta = pt;
        row.pgsf = pg;
        if constexpr (kSame) {
          if (t > 0) {
            row.next.read[0] = j.gspk + off - N;
            row.next.write[0] = j.dx + off - N;
            if (t == t0) {  // the previous chunk: its checkpoint and first row of h
              row.next.read[1] = saved + (T + c - 1) * N + n0;
              row.next.read[2] = saved + (t0 - kSaveChunk) * N + n0;
            }
          }
        }
        if constexpr (kSame) {
          row.dspk = j.gspk + off;
          row.du = j.gmem_seq ? j.gmem + off : zero;
          row.dm = j.gcomp_seq ? j.gcomp + off : zero;
          row.dx = j.dx + off;
        } else {
          load(j.gspk + off, dsbuf, len);
          row.dspk = dsbuf;
          if (j.gmem_seq) load(j.gmem + off, dubuf, len);
          row.du = j.gmem_seq ? dubuf : zero;
          if (j.gcomp_seq) load(j.gcomp + off, dmbuf, len);
          row.dm = j.gcomp_seq ? dmbuf : zero;
          row.dx = dxbuf;
        }
        k.backward[j.dbeta != nullptr][core_reset][j.kind](row);
        if constexpr (!kSame) store(dxbuf, j.dx + off, len);
        if (j.delay && (t > 0 || j.mem0)) {  // GU on through step t-1's reset (at t = 0: mem0's)
          k.delayed_reset[j.reset](DelayedResetRow<S>{len, t > 0 ? saved + (t - 1) * N + n0 : h0row, theta, GU,
                                                      j.dbeta ? pt : nullptr});
        }
        std::swap(bcur, bnext);
      }
    }
    store(GM, j.dcomp0 + n0, len);
    store(GU, j.dmem0 + n0, len);
    if (j.dbeta) {
      std::memcpy(j.dbeta + n0, pb, len * sizeof(S));
      std::memcpy(j.dtheta + n0, pt, len * sizeof(S));
      std::memcpy(j.dgsf + n0, pg, len * sizeof(S));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Output memory: large outputs come from a pool of reused mappings in 2 MiB pages.
// ---------------------------------------------------------------------------------------
// PyTorch's CPU allocator gets large buffers straight from mmap (glibc does so above its
// dynamic threshold, at most 32 MiB) and unmaps them when they are freed, so every call got
// its spikes, saved h/m and dx as fresh pages, which the OS faults in and zeroes on first
// touch: one minor fault per 4 KiB (131,203 per forward+backward at T=256, N=131072) and,
// even in 2 MiB pages, ~2 ns per neuron-step of system time zeroing them, 40 % of the call;
// it grew with T because the buffers crossed that threshold. The pool keeps freed buffers
// mapped and hands them to the next request of (nearly) the same size: a training loop asks
// for the same sizes every step. New mappings are advised to use 2 MiB pages (THP's
// default mode is "madvise"; PyTorch only asks with THP_MEM_ALLOC_ENABLE=1).
//
// Bounds: what the pool holds (in use + cached) never exceeds the most it ever had in use at
// once; a cached buffer that no request took within the next 64 + 2 x (buffers the pool
// holds) pooled requests (two rounds of a repeating workload) is unmapped; cached bytes never
// exceed SNNTORCH_CLIF_CPU_POOL_MB (default: 1/8 of physical memory); at most kMaxBlocks
// mappings are held. SNNTORCH_CLIF_CPU_POOL_MB=0 turns the pool off (plain at::empty; those
// of >= 8 MiB still advised to use 2 MiB pages). The pool's memory is not seen by PyTorch's
// memory profiler.
constexpr size_t kHugePage = size_t(2) << 20;

// Advise 2 MiB pages for the whole 2 MiB-aligned pages inside [data, data + bytes). A
// hint: ignored when THP is off, no effect on pages already present; errors are ignored.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

class OutputPool final : public c10::Allocator {
 public:
  // Smaller requests go to PyTorch's allocator (malloc's heap reuses them well).
  static constexpr size_t kMinBytes = size_t(256) << 10;
  // Mappings held at most (each is a kernel VMA, of vm.max_map_count ~65k per process): a
  // long single-step loop keeps every step's outputs alive; past this they use malloc.
  static constexpr size_t kMaxBlocks = 1024;

  static OutputPool& get() {
    static OutputPool* pool = new OutputPool();  // never destroyed: tensors may die after exit handlers
    return *pool;
  }

  bool enabled() const { return cap_ > 0; }

  at::DataPtr allocate(size_t bytes) override {
    if (bytes < kMinBytes || cap_ == 0) return c10::GetCPUAllocator()->allocate(bytes);
    const size_t size = mapped_size(bytes);
    bool room = true;
    Block* block = take(size, room);
    if (block == nullptr && room) block = map(size);
    if (block == nullptr) return c10::GetCPUAllocator()->allocate(bytes);  // full, or out of memory: its error
    return {block->base, block, &OutputPool::release, at::Device(at::kCPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  struct Block {
    void* base;
    size_t size;        // bytes mapped
    uint64_t released;  // request count when it was last given back
  };

  OutputPool() {
#if defined(__linux__)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    cap_ = pages > 0 && page > 0 ? size_t(pages) * size_t(page) / 8 : 0;
    if (const char* env = std::getenv("SNNTORCH_CLIF_CPU_POOL_MB")) {
      char* end = nullptr;
      const long long mb = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && mb >= 0) cap_ = size_t(mb) << 20;
    }
    // A child forked while another thread held the lock (a DataLoader worker, say) would
    // wait on it forever: hold it across fork(), as malloc does with its own locks.
    pthread_atfork([] { get().mu_.lock(); }, [] { get().mu_.unlock(); }, [] { get().mu_.unlock(); });
#endif
  }

  static size_t mapped_size(size_t bytes) {
    const size_t unit = bytes >= 4 * kHugePage ? kHugePage : size_t(64) << 10;
    return (bytes + unit - 1) / unit * unit;
  }

  // A cached block of size..size*1.25 bytes (the smallest; an exact fit at once, scanning
  // from the most recently freed), or nullptr after making room for a new one (`room`
  // false: the pool holds kMaxBlocks in use, the request goes to PyTorch's allocator).
  Block* take(size_t size, bool& room) {
    std::vector<Block*> unmap_later;
    Block* found = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++requests_;
      size_t at = cached_.size();
      for (size_t i = cached_.size(); i-- > 0;) {
        const size_t have = cached_[i]->size;
        if (have >= size && have <= size + size / 4 && (found == nullptr || have < found->size)) {
          found = cached_[i];
          at = i;
          if (have == size) break;
        }
      }
      room = found != nullptr || blocks_in_use_ < kMaxBlocks;
      if (!room) return nullptr;
      if (found != nullptr) {
        cached_.erase(cached_.begin() + static_cast<std::ptrdiff_t>(at));
        cached_bytes_ -= found->size;
        in_use_ += found->size;
      } else {
        in_use_ += size;  // reserved now, mapped outside the lock
        peak_ = std::max(peak_, in_use_);
      }
      ++blocks_in_use_;
      // Oldest first: drop stale blocks, and as many as keep in use + cached <= peak and
      // the number of mappings <= kMaxBlocks.
      const uint64_t max_age = 64 + 2 * (blocks_in_use_ + cached_.size());
      while (!cached_.empty() && (requests_ - cached_.front()->released > max_age ||
                                  in_use_ + cached_bytes_ > peak_ || blocks_in_use_ + cached_.size() > kMaxBlocks)) {
        cached_bytes_ -= cached_.front()->size;
        unmap_later.push_back(cached_.front());
        cached_.erase(cached_.begin());
      }
    }
    for (Block* b : unmap_later) unmap(b);
    return found;
  }

  Block* map(size_t size) {
#if defined(__linux__)
    const size_t align = size >= 4 * kHugePage ? kHugePage : 0;
    void* p = mmap(nullptr, size + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
      const uintptr_t base = align ? (raw + align - 1) & ~(align - 1) : raw;
      if (base > raw) munmap(p, base - raw);  // trim to a 2 MiB boundary
      if (raw + align > base) munmap(reinterpret_cast<void*>(base + size), raw + align - base);
      if (align) advise_huge_pages(reinterpret_cast<void*>(base), size);
      return new Block{reinterpret_cast<void*>(base), size, 0};
    }
#endif
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ -= size;
    --blocks_in_use_;
    return nullptr;
  }

  static void unmap(Block* b) {
#if defined(__linux__)
    munmap(b->base, b->size);
#endif
    delete b;
  }

  static void release(void* ctx) { get().give_back(static_cast<Block*>(ctx)); }

  void give_back(Block* b) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= b->size;
      --blocks_in_use_;
      if (cached_bytes_ + b->size <= cap_) {
        b->released = requests_;
        cached_.push_back(b);
        cached_bytes_ += b->size;
        return;
      }
    }
    unmap(b);
  }

  size_t cap_ = 0;
  std::mutex mu_;
  std::vector<Block*> cached_;  // oldest release first
  size_t cached_bytes_ = 0, in_use_ = 0, peak_ = 0;
  uint64_t requests_ = 0, blocks_in_use_ = 0;
};

// An output shaped like `t` (just allocated by clif_checks.h, untouched) from the pool;
// `t` itself when small. The discarded `t` was never touched, so it cost no page fault.
at::Tensor pooled(const at::Tensor& t) {
  if (!t.defined() || t.nbytes() < OutputPool::kMinBytes) return t;
  OutputPool& pool = OutputPool::get();
  if (!pool.enabled()) {
    // Smaller buffers mostly come from malloc's heap (already faulted in): leave them be.
    if (t.nbytes() >= 4 * kHugePage) advise_huge_pages(t.data_ptr(), t.nbytes());
    return t;
  }
  return at::detail::empty_generic(t.sizes(), &pool, c10::DispatchKeySet(c10::DispatchKey::CPU), t.scalar_type(),
                                   std::nullopt);
}

// Neurons per thread: at least kThreadWork neuron-steps (~20 us of fused work), so a thread
// is started only where it saves more than it costs; at least 256 neurons (whole cache lines).
constexpr int64_t kThreadWork = 8192;
int64_t grain_size(int64_t T) {
  return std::max<int64_t>(256, kThreadWork / std::max<int64_t>(T, 1));
}

// ---------------------------------------------------------------------------------------
// Threads on a CPU that other programs use too.
// ---------------------------------------------------------------------------------------
// at::parallel_for (OpenMP) gives each thread one range and joins them all at the end: when
// another program holds a core, a worker that is not running when the region starts waits
// for a scheduler slice, and so does the caller, at the join (~8 ms on a 2-core machine with
// one core busy, for ~0.3 ms of work at [4, 32, 1024]). Here the neurons are cut into chunks
// of kBlock that the calling thread and helper threads claim from one counter: the caller
// starts at once, takes every chunk no helper has claimed, and then waits only for chunks a
// helper is running. A helper that has not started costs nothing; the worst case is a helper
// preempted inside a chunk (~0.01-0.2 ms of work), waited for until it runs again.
//
// Policy (ChunkPool::Policy): kAdaptive (default) weighs every threaded call: alone, the caller
// would have taken about `alone` = its CPU time per chunk (thread CPU time: time it was
// descheduled does not count) x all the chunks; the call took `wall`. Threads paid off when a
// helper ran chunks and wall < 0.8 alone (two threads on free cores: ~0.5-0.6 alone; a margin,
// as two threads that share about one core come out near 1). When they did not (no helper came in time, one was
// preempted inside a chunk, or a helper shared the caller's core: another program holds the
// others), the calls of the next back-off run on the calling thread alone (no wake-ups,
// nothing to wait for), then threads are tried again. The back-off starts at kBackoffNs and
// doubles with every try that does not pay off (up to kMaxBackoffNs), so a machine that stays
// busy costs a try every few seconds; a try that pays off ends it. Lateness alone costs nothing here (the caller works meanwhile): a
// long call on a busy machine keeps the share of CPU its helpers win, a short one falls back
// to one thread. kThreads / kSingle force one way (tests, benchmarks). Every neuron's
// arithmetic is the same on any thread, in any chunk: results do not depend on any of this.
// SNNTORCH_CLIF_CPU_POLICY=adaptive|threads|single sets the policy at load time.
//
// A helper that ran chunks spins for kSpinNs before it sleeps: a forward is soon followed by
// another layer's call or its backward, and a sleeping helper takes tens of microseconds to
// wake, a tenth of a small call's work. One that woke too late to find a chunk sleeps at once.
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// CPU time of the calling thread (without a thread clock: wall time, as if never descheduled).
int64_t thread_cpu_ns() {
#if defined(__linux__)
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
#endif
  return now_ns();
}

class ChunkPool {
 public:
  enum Policy : int { kAdaptive = 0, kThreads = 1, kSingle = 2 };
  using Fn = void (*)(const void* ctx, int64_t chunk);

  static constexpr int64_t kBackoffNs = 100000000;      // 0.1 s on one thread after threads did not pay ...
  static constexpr int64_t kMaxBackoffNs = 3200000000;  // ... doubling while tries do not pay, to 3.2 s
  static constexpr int64_t kSpinNs = 100000;            // 0.1 ms

  // The pool of this process. Never destroyed (helpers may outlive exit handlers). A forked
  // child has none of the parent's helpers (and perhaps a lock a parent thread held): it makes
  // a pool of its own and leaks the parent's.
  static ChunkPool& get() {
    static std::atomic<ChunkPool*> pool{nullptr};
    ChunkPool* p = pool.load(std::memory_order_acquire);
    while (p == nullptr || p->pid_ != getpid()) {
      ChunkPool* fresh = new ChunkPool();
      if (pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
      delete fresh;  // another thread made one first (p now holds it)
    }
    return *p;
  }

  // fn(ctx, c) for every c in [0, chunks): on the calling thread and up to `helpers` helper
  // threads, as the policy allows; returns when all have finished.
  void run(int64_t chunks, int helpers, Fn fn, const void* ctx) {
    const int policy = policy_.load(std::memory_order_relaxed);
    bool threaded = helpers > 0 && chunks > 1 && policy != kSingle;
    if (threaded && policy == kAdaptive && now_ns() < single_until_ns_.load(std::memory_order_relaxed)) {
      threaded = false;  // contended a moment ago: one thread until the back-off ends
    }
    // One caller at a time uses the helpers (two Python threads calling at once: the second runs alone).
    if (threaded && busy_.exchange(true, std::memory_order_acquire)) threaded = false;
    if (!threaded) {
      single_calls_.fetch_add(1, std::memory_order_relaxed);
      for (int64_t c = 0; c < chunks; ++c) fn(ctx, c);
      return;
    }
    threaded_calls_.fetch_add(1, std::memory_order_relaxed);
    auto job = std::make_shared<Job>();
    job->fn = fn;
    job->ctx = ctx;
    job->chunks = chunks;
    job->helpers = helpers;
    job->start_ns = now_ns();
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (threads_started_.load(std::memory_order_relaxed) < helpers && start_helper()) {
      }
      job->helpers = std::min(helpers, threads_started_.load(std::memory_order_relaxed));
      current_ = job;
      ++generation_;
      posted_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    const int64_t cpu_start = thread_cpu_ns();
    const int64_t mine = work(*job, false);
    const int64_t own_end = now_ns();
    const int64_t own_cpu = thread_cpu_ns() - cpu_start;
    // Wait for the chunks helpers are running: spin briefly, then sleep until the last one.
    for (int spin = 0; job->done.load(std::memory_order_acquire) < chunks; ++spin) {
      if (spin < 2000) {
        cpu_relax();
      } else {
        const int64_t done = job->done.load(std::memory_order_acquire);
        if (done < chunks) job->done.wait(done, std::memory_order_acquire);
      }
    }
    const int64_t end = now_ns();
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_.reset();  // a helper waking after this finds no job
    }
    busy_.store(false, std::memory_order_release);
    const int64_t first = job->first_helper_ns.load(std::memory_order_relaxed);
    const int64_t late = first == kNever ? end - job->start_ns : first - job->start_ns;
    const int64_t waited = end - own_end;
    const int64_t alone = mine > 0 ? chunks * (own_cpu / mine) : 0;
    last_late_ns_.store(late, std::memory_order_relaxed);
    last_wait_ns_.store(waited, std::memory_order_relaxed);
    if (policy == kAdaptive) {
      // the helpers did not pay for themselves (mine == 0: they ran every chunk, they did)
      if (mine == chunks || (mine > 0 && 5 * (end - job->start_ns) >= 4 * alone)) {
        contended_calls_.fetch_add(1, std::memory_order_relaxed);
        const int64_t backoff = backoff_ns_.load(std::memory_order_relaxed);
        single_until_ns_.store(end + backoff, std::memory_order_relaxed);
        backoff_ns_.store(std::min(2 * backoff, kMaxBackoffNs), std::memory_order_relaxed);
      } else {
        backoff_ns_.store(kBackoffNs, std::memory_order_relaxed);
      }
    }
  }

  void set_policy(int policy) {
    policy_.store(policy, std::memory_order_relaxed);
    single_until_ns_.store(0, std::memory_order_relaxed);
    backoff_ns_.store(kBackoffNs, std::memory_order_relaxed);
  }
  // Pretend (or forget) contention: calls of the next `ns` nanoseconds run on one thread.
  void set_contended_for(int64_t ns) { single_until_ns_.store(ns > 0 ? now_ns() + ns : 0, std::memory_order_relaxed); }

  struct State {
    int policy;
    bool contended;  // threads are held back now (kAdaptive)
    int64_t threaded_calls, single_calls, contended_calls, last_late_ns, last_wait_ns, helpers_started;
  };
  State state() const {
    return {policy_.load(), now_ns() < single_until_ns_.load(), threaded_calls_.load(), single_calls_.load(),
            contended_calls_.load(), last_late_ns_.load(), last_wait_ns_.load(), threads_started_.load()};
  }

 private:
  static constexpr int64_t kNever = INT64_MAX;

  struct Job {
    Fn fn = nullptr;
    const void* ctx = nullptr;
    int64_t chunks = 0;
    int helpers = 0;
    int64_t start_ns = 0;
    std::atomic<int64_t> next{0};  // the next chunk to claim
    std::atomic<int64_t> done{0};  // chunks finished
    std::atomic<int64_t> first_helper_ns{kNever};
  };

  ChunkPool() : pid_(getpid()) {
    if (const char* env = std::getenv("SNNTORCH_CLIF_CPU_POLICY")) {
      const std::string v = env;
      policy_ = v == "threads" ? kThreads : v == "single" ? kSingle : kAdaptive;
    }
  }

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
  }

  // Claim and run chunks until none is left; returns how many ran here. ctx is only touched for
  // a chunk claimed here, and the caller returns only after every claimed chunk is done, so it
  // is alive meanwhile.
  static int64_t work(Job& job, bool helper) {
    int64_t ran = 0;
    for (int64_t c; (c = job.next.fetch_add(1, std::memory_order_relaxed)) < job.chunks; ++ran) {
      job.fn(job.ctx, c);
      // (a helper notifies: the caller may be asleep; the caller's own last chunk needs none)
      if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.chunks && helper) job.done.notify_all();
    }
    return ran;
  }

  // One more helper (under mu_); false when the system refuses a thread (the call then uses those it has).
  bool start_helper() {
    const int index = threads_started_.load(std::memory_order_relaxed);
    try {
      std::thread([this, index] { helper_loop(index); }).detach();
    } catch (const std::system_error&) {
      return false;
    }
    threads_started_.store(index + 1, std::memory_order_relaxed);
    return true;
  }

  void helper_loop(int index) {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "snntorch_clif");
#endif
    uint64_t seen = 0;
    bool worked = false;
    for (;;) {
      std::shared_ptr<Job> job;
      for (const int64_t until = worked ? now_ns() + kSpinNs : 0;
           posted_.load(std::memory_order_acquire) == seen && now_ns() < until;) {
        cpu_relax();
      }
      worked = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = current_;
      }
      if (!job || index >= job->helpers) continue;
      if (job->next.load(std::memory_order_relaxed) >= job->chunks) continue;  // the caller took them all
      const int64_t t = now_ns();
      int64_t first = job->first_helper_ns.load(std::memory_order_relaxed);
      while (t < first && !job->first_helper_ns.compare_exchange_weak(first, t, std::memory_order_relaxed)) {
      }
      worked = work(*job, true) > 0;
    }
  }

  const pid_t pid_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Job> current_;  // guarded by mu_
  uint64_t generation_ = 0;       // guarded by mu_
  std::atomic<uint64_t> posted_{0};  // generation_, for helpers spinning outside the lock
  std::atomic<int> threads_started_{0};  // written under mu_
  std::atomic<bool> busy_{false};
  std::atomic<int> policy_{kAdaptive};
  std::atomic<int64_t> single_until_ns_{0};
  std::atomic<int64_t> backoff_ns_{kBackoffNs};
  std::atomic<int64_t> threaded_calls_{0}, single_calls_{0}, contended_calls_{0};
  std::atomic<int64_t> last_late_ns_{0}, last_wait_ns_{0};
};

// Neurons [0, N) in chunks of kBlock through the pool, with as many threads as torch allows
// (torch.set_num_threads) and the work pays for (grain_size). Nested inside a parallel region:
// the calling thread alone.
template <typename RangeFn>
void parallel_chunks(int64_t N, int64_t T, const RangeFn& range) {
  const int64_t chunks = (N + kBlock - 1) / kBlock;
  int64_t threads = std::min<int64_t>(at::get_num_threads(), N / grain_size(T));
  threads = std::min(threads, chunks);
  if (threads <= 1 || at::in_parallel_region()) {
    range(int64_t(0), N);
    return;
  }
  struct Ctx {
    const RangeFn* range;
    int64_t N;
  } ctx{&range, N};
  ChunkPool::get().run(
      chunks, static_cast<int>(threads - 1),
      [](const void* p, int64_t c) {
        const Ctx& x = *static_cast<const Ctx*>(p);
        (*x.range)(c * kBlock, std::min(x.N, (c + 1) * kBlock));
      },
      &ctx);
}

template <typename S>
using Acc = std::conditional_t<std::is_same<S, double>::value, double, float>;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> clif_forward_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& comp0, const std::optional<at::Tensor>& mem0,
    const at::Tensor& beta, const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset, int64_t surrogate,
    double surrogate_param, bool return_sequences, bool save, bool reset_delay) {
  (void)surrogate;
  (void)surrogate_param;
  check_forward_args(x, comp0, mem0, beta, threshold, gsf, reset);
  ForwardOutputs o = allocate_forward(x, return_sequences, save);
  for (at::Tensor* t : {&o.spk, &o.comp, &o.mem, &o.saved}) *t = pooled(*t);
  const int64_t T = x.size(0), N = neurons(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "clif_forward_cpu", [&] {
    using S = Acc<scalar_t>;
    ForwardJob<scalar_t, S> j;
    j.T = T;
    j.N = N;
    j.reset = static_cast<int>(reset);
    j.x = x.const_data_ptr<scalar_t>();
    j.comp0 = has_state(comp0) ? comp0->const_data_ptr<scalar_t>() : nullptr;
    j.mem0 = has_state(mem0) ? mem0->const_data_ptr<scalar_t>() : nullptr;
    j.beta = beta.const_data_ptr<S>();
    j.theta = threshold.const_data_ptr<S>();
    j.gsf = gsf.const_data_ptr<S>();
    j.beta_pn = beta.numel() == N && N != 1;
    j.theta_pn = threshold.numel() == N && N != 1;
    j.gsf_pn = gsf.numel() == N && N != 1;
    j.return_sequences = return_sequences;
    j.delay = reset_delay && reset != RESET_NONE;
    j.spk = o.spk.mutable_data_ptr<scalar_t>();
    j.comp = o.comp.mutable_data_ptr<scalar_t>();
    j.mem = o.mem.mutable_data_ptr<scalar_t>();
    j.saved = save ? o.saved.mutable_data_ptr<S>() : nullptr;
    parallel_chunks(N, T, [&](int64_t begin, int64_t end) { forward_range(j, begin, end); });
  });
  return {o.spk, o.comp, o.mem, o.saved};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> clif_backward_cpu(
    const at::Tensor& grad_spk, const std::optional<at::Tensor>& grad_comp,
    const std::optional<at::Tensor>& grad_mem, const at::Tensor& saved, const std::optional<at::Tensor>& mem0,
    const at::Tensor& beta, const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset, int64_t surrogate,
    double surrogate_param, bool param_grads, bool reset_delay) {
  check_backward_args(grad_spk, grad_comp, grad_mem, saved, mem0, beta, threshold, gsf, reset, surrogate);
  BackwardOutputs o = allocate_backward(grad_spk, param_grads);
  for (at::Tensor* t : {&o.dx, &o.dcomp0, &o.dmem0, &o.dbeta, &o.dthreshold, &o.dgsf}) *t = pooled(*t);
  const int64_t T = grad_spk.size(0), N = neurons(grad_spk);
  const bool has_gcomp = grad_comp.has_value() && grad_comp->defined();
  const bool has_gmem = grad_mem.has_value() && grad_mem->defined();
  const bool has_mem0 = mem0.has_value() && mem0->defined();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_spk.scalar_type(), "clif_backward_cpu", [&] {
    using S = Acc<scalar_t>;
    BackwardJob<scalar_t, S> j;
    j.T = T;
    j.N = N;
    j.reset = static_cast<int>(reset);
    j.kind = static_cast<int>(surrogate);
    j.sc = make_surrogate_consts<S>(j.kind, surrogate_param);
    j.gspk = grad_spk.const_data_ptr<scalar_t>();
    j.gcomp = has_gcomp ? grad_comp->const_data_ptr<scalar_t>() : nullptr;
    j.gmem = has_gmem ? grad_mem->const_data_ptr<scalar_t>() : nullptr;
    j.gcomp_seq = is_sequence_grad(grad_comp, grad_spk);
    j.gmem_seq = is_sequence_grad(grad_mem, grad_spk);
    j.saved = saved.const_data_ptr<S>();
    j.mem0 = has_mem0 ? mem0->const_data_ptr<scalar_t>() : nullptr;
    j.beta = beta.const_data_ptr<S>();
    j.theta = threshold.const_data_ptr<S>();
    j.gsf = gsf.const_data_ptr<S>();
    j.beta_pn = beta.numel() == N && N != 1;
    j.theta_pn = threshold.numel() == N && N != 1;
    j.gsf_pn = gsf.numel() == N && N != 1;
    j.delay = reset_delay && reset != RESET_NONE;
    j.dx = o.dx.mutable_data_ptr<scalar_t>();
    j.dcomp0 = o.dcomp0.mutable_data_ptr<scalar_t>();
    j.dmem0 = o.dmem0.mutable_data_ptr<scalar_t>();
    j.dbeta = param_grads ? o.dbeta.mutable_data_ptr<S>() : nullptr;
    j.dtheta = param_grads ? o.dthreshold.mutable_data_ptr<S>() : nullptr;
    j.dgsf = param_grads ? o.dgsf.mutable_data_ptr<S>() : nullptr;
    parallel_chunks(N, T, [&](int64_t begin, int64_t end) { backward_range(j, begin, end); });
  });
  return {o.dx, o.dcomp0, o.dmem0, o.dbeta, o.dthreshold, o.dgsf};
}

}  // namespace

const char* cpu_isa_name() { return float_variant().name; }

// register.cpp's cpu_threads: the thread policy's state, after setting it where asked
// (policy < 0, contended_ns < 0: leave as it is).
std::vector<int64_t> cpu_threads(int64_t policy, int64_t contended_ns) {
  ChunkPool& pool = ChunkPool::get();
  if (policy >= 0) pool.set_policy(static_cast<int>(policy));
  if (contended_ns >= 0) pool.set_contended_for(contended_ns);
  const ChunkPool::State s = pool.state();
  return {s.policy, s.contended, s.threaded_calls, s.single_calls, s.contended_calls, s.last_late_ns,
          s.last_wait_ns, s.helpers_started};
}

TORCH_LIBRARY_IMPL(snntorch_clif, CPU, m) {
  m.impl("clif_forward", &forward_with_step<&clif_forward_cpu>);
  m.impl("clif_backward", &clif_backward_cpu);
}

}  // namespace snntorch_clif
