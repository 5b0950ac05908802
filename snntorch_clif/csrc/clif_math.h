// Per-element CLIF math, shared by the CPU kernel (cpu/clif_cpu.cpp) and the CUDA
// kernel (cuda/clif_cuda.cu): the ONLY place the neuron's arithmetic is written in C++,
// so the CPU tests exercise exactly the arithmetic the GPU runs.
//
// Forward step  = snntorch_clif/reference.py, clif_step_reference, lines 142-166 at this
//                 writing: `delay = reset_delay and ...` .. `return s * graded_spikes_factor,
//                 comp, mem` (inhibition and state_quant excluded: those stay on the
//                 reference path).
// Surrogates    = snntorch_clif/surrogate.py, surrogate_derivative, lines 74-89 (ids
//                 RECTANGLE..DISABLED).
// Backward step = the reverse-mode derivative of the forward step (DESIGN.md sec. 2), plus
//                 the per-neuron partial sums for beta, threshold and graded_spikes_factor.
// reset_delay   = reference.py, clif_step_reference's `reset_delay` branch (the reset of step
//                 t-1 applied at the start of step t, its spike and sigma(m) detached):
//                 clif_delayed_reset forward, clif_backward_core(delay=true) and
//                 clif_delayed_reset_backward for its derivative.
//
// Everything is a template on the compute type S (float, or double for gradcheck on the
// CPU) and on compile-time reset / surrogate ids, so kernels contain no runtime switch but
// reset_delay's flag (a few selects; a template on it would double every kernel).
// No -ffast-math anywhere: operations follow reference.py's order so that results agree
// with eager PyTorch to a few ulp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if !defined(__CUDACC__) && (defined(__x86_64__) || defined(__i386__))
#include <xmmintrin.h>
#endif

#if defined(__CUDACC__)
#define CLIF_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define CLIF_HD inline __attribute__((always_inline))
#else
#define CLIF_HD inline
#endif

namespace snntorch_clif {

// Reset mechanisms (ops.py passes the same numbers).
constexpr int RESET_SUBTRACT = 0;
constexpr int RESET_ZERO = 1;
constexpr int RESET_NONE = 2;

// Surrogate ids: snntorch_clif/surrogate.py's RECTANGLE .. DISABLED.
constexpr int SG_RECTANGLE = 0;
constexpr int SG_ATAN = 1;
constexpr int SG_FAST_SIGMOID = 2;
constexpr int SG_SIGMOID = 3;
constexpr int SG_TRIANGULAR = 4;
constexpr int SG_STRAIGHT_THROUGH = 5;
constexpr int SG_DISABLED = 6;
constexpr int NUM_SURROGATES = 7;

CLIF_HD float clif_int_as_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof f);  // compilers turn this into a register move (and vectorise it)
  return f;
#endif
}

CLIF_HD int32_t clif_float_as_int(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(f);
#else
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
#endif
}

// Subnormal floats are flushed to zero on both devices: this guard on the CPU (set by every
// thread of a float32 kernel, the previous mode restored on exit), nvcc --ftz=true on the GPU.
// CLIF's complementary state decays geometrically while a neuron is silent
// (m_t = sigma((1 - beta) h_t) m_{t-1}, about 0.5 per step), and so does its gradient carry,
// so long sequences are full of values below FLT_MIN; x86 computes with them up to ~100x
// slower (float32 forward+backward at beta = 0.9, T = 256: 2x the time of the whole call).
// Flushing changes results only where a value is below 1.2e-38. The float64 kernels (used
// for gradcheck) keep IEEE subnormals: they do not construct the guard.
#if !defined(__CUDACC__)
class FlushSubnormals {
 public:
  FlushSubnormals() {
#if defined(__x86_64__) || defined(__i386__)
    saved_ = _mm_getcsr();
    _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15): results; DAZ (bit 6): inputs
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | (uint64_t(1) << 24)));  // FZ
#endif
  }
  ~FlushSubnormals() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(static_cast<unsigned>(saved_));
#elif defined(__aarch64__)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(saved_));
#endif
  }
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;

 private:
  uint64_t saved_ = 0;
};
#endif

// exp(x) in float: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and the
// classic Cephes minimax polynomial (max error ~1 ulp). Written with plain arithmetic,
// explicit fmaf and bit casts only, so GCC vectorises it across neurons (libm's expf would
// not be vectorised without -ffast-math) and the GPU runs the very same operations: fmaf
// rounds once on every target (a libm call on a CPU without FMA, still the same bits).
CLIF_HD float clif_exp(float x) {
  x = x < -87.0f ? -87.0f : x;  // keeps 2^n normal; sigmoid saturates long before
  x = x > 88.0f ? 88.0f : x;
  // Round x*log2(e) to the nearest integer with the 1.5*2^23 trick: exact, branch-free.
  const float shifter = 12582912.0f;
  const float t = fmaf(x, 1.44269504088896341f, shifter);
  const float n = t - shifter;
  const int32_t ni = clif_float_as_int(t) - clif_float_as_int(shifter);
  float r = fmaf(n, -0.693359375f, x);  // ln2 split in two so n*ln2_hi is exact
  r = fmaf(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fmaf(p, r, 1.3981999507e-3f);
  p = fmaf(p, r, 8.3334519073e-3f);
  p = fmaf(p, r, 4.1665795894e-2f);
  p = fmaf(p, r, 1.6666665459e-1f);
  p = fmaf(p, r, 5.0000001201e-1f);
  p = fmaf(p, r * r, r) + 1.0f;
  return p * clif_int_as_float((ni + 127) << 23);
}

CLIF_HD double clif_exp(double x) { return ::exp(x); }

template <typename S>
CLIF_HD S clif_sigmoid(S x) {
  return S(1) / (S(1) + clif_exp(-x));
}

// Heaviside with the package-wide rule: fires when h - theta >= 0 (surrogate.py).
template <typename S>
CLIF_HD S clif_fire(S z) {
  return z >= S(0) ? S(1) : S(0);
}

// The constants of one surrogate, computed once per launch from its float parameter
// the way surrogate_derivative computes them (Python doubles rounded to S).
template <typename S>
struct SurrogateConsts {
  S c0;  // rectangle: alpha/2 | atan: alpha/2 | fast_sigmoid/sigmoid: slope | triangular: c
  S c1;  // rectangle: 1/alpha (as S(1) / S(alpha): the bits of the reference's mask / alpha) | atan: pi*alpha/2
};

template <typename S>
inline SurrogateConsts<S> make_surrogate_consts(int kind, double param) {
  SurrogateConsts<S> c{S(0), S(0)};
  switch (kind) {
    case SG_RECTANGLE: c.c0 = S(0.5 * param); c.c1 = S(1) / S(param); break;
    case SG_ATAN: c.c0 = S(0.5 * param); c.c1 = S(0.5 * 3.14159265358979323846 * param); break;
    default: c.c0 = S(param); c.c1 = S(0); break;
  }
  return c;
}

// g(z), surrogate.py's surrogate_derivative for id KIND.
template <typename S, int KIND>
CLIF_HD S clif_surrogate(S z, SurrogateConsts<S> c) {
  if (KIND == SG_RECTANGLE) {
    const S az = z < S(0) ? -z : z;
    return az <= c.c0 ? c.c1 : S(0);  // no per-element divide: 1/alpha is a constant
  } else if (KIND == SG_ATAN) {
    const S w = c.c1 * z;
    return c.c0 / (S(1) + w * w);
  } else if (KIND == SG_FAST_SIGMOID) {
    const S az = z < S(0) ? -z : z;
    const S d = c.c0 * az + S(1);
    return S(1) / (d * d);
  } else if (KIND == SG_SIGMOID) {
    const S sig = clif_sigmoid(c.c0 * z);
    return c.c0 * sig * (S(1) - sig);
  } else if (KIND == SG_TRIANGULAR) {
    return z >= S(0) ? -c.c0 : c.c0;
  } else if (KIND == SG_STRAIGHT_THROUGH) {
    return S(1);
  } else {
    return S(0);
  }
}

// The membrane potential after the reset, from h_t, the spike and sigma(m_t).
template <typename S, int RESET>
CLIF_HD S clif_reset(S h, S s, S b, S theta) {
  if (RESET == RESET_SUBTRACT) return h - s * (theta + b);
  if (RESET == RESET_ZERO) return (S(1) - s) * h - s * b;
  return h;
}

// One forward step (reference.py, clif_step_reference, `h = beta * mem + x` .. the reset).
// In: x_t, beta, theta; in/out: u (= mem) and m (= comp). Out: h_t and the spike s_t.
// Split in two halves so that the CPU kernel can run them as two vector loops: within one
// step sigma(m_t) waits on a_t (two exp + divide chains back to back), which leaves a single
// fused loop latency-bound; two loops over a row each have independent iterations.
// a_t = sigma((1 - beta) h_t), the gate of the complementary state.
template <typename S>
CLIF_HD S clif_comp_gate(S h, S beta) {
  return clif_sigmoid((S(1) - beta) * h);
}

// m_t = a_t m_{t-1} + s_t. The backward recomputes m inside each checkpoint chunk from the
// saved h with this same function (and clif_comp_gate, clif_fire), so it gets the same bits.
template <typename S>
CLIF_HD S clif_comp_update(S a, S m_prev, S s) {
  return a * m_prev + s;
}

// First half: h_t, the spike and a_t from x_t and u_{t-1}.
template <typename S>
CLIF_HD void clif_forward_pre(S x, S beta, S theta, S u, S& h, S& s, S& a) {
  h = beta * u + x;
  s = clif_fire(h - theta);
  a = clif_comp_gate(h, beta);
}

// Second half: m_t and u_t from h_t, s_t, a_t and m_{t-1}.
template <typename S, int RESET>
CLIF_HD void clif_forward_post(S h, S s, S a, S theta, S& u, S& m) {
  m = clif_comp_update(a, m, s);
  if (RESET == RESET_NONE) {
    u = h;  // sigma(m) only feeds the reset: skip its exp
  } else {
    u = clif_reset<S, RESET>(h, s, clif_sigmoid(m), theta);
  }
}

template <typename S, int RESET>
CLIF_HD void clif_forward_step(S x, S beta, S theta, S& u, S& m, S& h_out, S& s_out) {
  S h, s, a;
  clif_forward_pre(x, beta, theta, u, h, s, a);
  clif_forward_post<S, RESET>(h, s, a, theta, u, m);
  h_out = h;
  s_out = s;
}

// Running sums of the parameters' partial derivatives for one neuron.
template <typename S>
struct ParamGrads {
  S beta, theta, gsf;
};

// One backward step t (DESIGN.md sec. 2). Needs from the forward pass h_t, m_{t-1}, u_{t-1}
// and b = sigma(m_t) (the caller computes sigma(m_{t-1}) and u_{t-1} for step t-1 while at
// step t, so each sigma(m) costs one exp per step). Incoming: dspk (dL/d output spike),
// du, dm (dL/d mem_t, comp_t from the state sequences; 0 otherwise). Carries GU = dL/du_t,
// GM = dL/dm_t from the future; on return they hold dL/du_{t-1}, dL/dm_{t-1}.
//
// With c = dh/du-path factor (1, or 1 - s for the zero reset):
//   gu = GU + du
//   gm = GM + dm - gu s b (1 - b)                     (no reset term for "none")
//   gs = dspk*gsf - gu (theta + b) + gm   subtract | - gu (h + b) zero | + gm none
//   gh = gu c + gs g(h - theta) + gm m_{t-1} a (1 - a) (1 - beta)
//   dx = gh, GU = beta gh, GM = a gm
// Parameters (h = beta u_{t-1} + x, a = sigma((1 - beta) h), z = h - theta, reset):
//   dbeta  += gh u_{t-1} - gm m_{t-1} a (1 - a) h
//   dtheta += -gs g - gu s              (the last term for subtract only)
//   dgsf   += dspk s
//
// clif_backward_gates: the exp-heavy, carry-free factors g and a; clif_backward_core: the rest.
template <typename S, int KIND>
CLIF_HD void clif_backward_gates(S h, S beta, S theta, SurrogateConsts<S> sc, S& g, S& a) {
  g = clif_surrogate<S, KIND>(h - theta, sc);
  a = clif_comp_gate(h, beta);
}

// clif_backward_core's `delay` (reset_delay; a runtime flag, no second set of kernels): step
// t's reset is not in step t's graph, so its terms drop out and the step is the "none" one
// (the same operations as RESET = RESET_NONE); GU then holds dL/dh_t from the future
// (clif_delayed_reset_backward) and du, the gradient of the reported mem_t = h_t, lands on h:
// gh = GU + du + gs g + ... u_prev stays u_{t-1}, the reset value (for dbeta).
template <typename S, int RESET>
CLIF_HD S clif_backward_core(S h, S g, S a, S m_prev, S b, S u_prev, S beta, S theta, S gsf,
                             S dspk, S du, S dm, S& GU, S& GM, ParamGrads<S>& pg, bool delay = false) {
  const S s = clif_fire(h - theta);
  const S gu = GU + du;
  S gm = GM + dm;
  S gs, gh_u;
  if (RESET == RESET_SUBTRACT && !delay) {
    gm = gm - gu * s * b * (S(1) - b);
    gs = dspk * gsf - gu * (theta + b) + gm;
    gh_u = gu;
  } else if (RESET == RESET_ZERO && !delay) {
    gm = gm - gu * s * b * (S(1) - b);
    gs = dspk * gsf - gu * (h + b) + gm;
    gh_u = gu * (S(1) - s);
  } else {
    gs = dspk * gsf + gm;
    gh_u = gu;
  }
  const S gate = m_prev * a * (S(1) - a);
  const S gh = gh_u + gs * g + gm * gate * (S(1) - beta);
  pg.beta += gh * u_prev - gm * gate * h;
  pg.theta -= gs * g;
  if (RESET == RESET_SUBTRACT && !delay) pg.theta -= gu * s;
  pg.gsf += dspk * s;
  GU = beta * gh;
  GM = a * gm;
  return gh;
}

template <typename S, int RESET, int KIND>
CLIF_HD S clif_backward_step(S h, S m_prev, S b, S u_prev, S beta, S theta, S gsf,
                             SurrogateConsts<S> sc, S dspk, S du, S dm, S& GU, S& GM,
                             ParamGrads<S>& pg, bool delay = false) {
  S g, a;
  clif_backward_gates<S, KIND>(h, beta, theta, sc, g, a);
  return clif_backward_core<S, RESET>(h, g, a, m_prev, b, u_prev, beta, theta, gsf, dspk, du, dm, GU, GM, pg,
                                      delay);
}

// reset_delay: u_{t-1} = R(h_{t-1}, H(h_{t-1} - theta), sigma(m_{t-1}), theta), the reset of step
// t-1 applied at the start of step t from the carried h and m. The operations of the forward's
// own reset (clif_forward_post), so u_{t-1} has the bits it has with reset_delay off. The
// kernels apply it to a given initial state (h_{-1} = mem0, m_{-1} = comp0); later steps' u is
// the forward's own.
template <typename S, int RESET>
CLIF_HD S clif_delayed_reset(S h, S m, S theta) {
  if (RESET == RESET_NONE) return h;
  return clif_reset<S, RESET>(h, clif_fire(h - theta), clif_sigmoid(m), theta);
}

// reset_delay backward, after step t's clif_backward_core(delay=true) left GU = dL/du_{t-1}: on
// through the delayed reset to h_{t-1} (the spike and sigma(m_{t-1}) are detached, theta is not):
//   GU = GU c_{t-1}   (c = 1; 1 - s_{t-1} for "zero"),   dtheta += -GU s_{t-1}   ("subtract")
// with s_{t-1} = H(h_{t-1} - theta). At t = 0 with a given mem0 (= h_{-1}) this makes GU the
// gradient of mem0.
template <typename S, int RESET>
CLIF_HD void clif_delayed_reset_backward(S h_prev, S theta, S& GU, S& ptheta) {
  const S s = clif_fire(h_prev - theta);
  if (RESET == RESET_SUBTRACT) ptheta -= GU * s;
  if (RESET == RESET_ZERO) GU = GU * (S(1) - s);
}

}  // namespace snntorch_clif
