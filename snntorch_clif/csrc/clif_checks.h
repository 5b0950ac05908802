// Host-side argument checks and output allocation shared by the CPU and CUDA backends
// of the ops declared in register.cpp, so both backends accept and return exactly the
// same shapes and dtypes (ops.py's fake kernels mirror these rules).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <tuple>
#ifdef CLIF_POISON_OUTPUTS
#include <ATen/ops/full.h>

#include <limits>
#endif

namespace snntorch_clif {

// Every output buffer of the ops. Test builds define CLIF_POISON_OUTPUTS to fill them with
// NaN, so an element a kernel never writes cannot pass for a result (tests/cuda_shim/).
inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
#ifdef CLIF_POISON_OUTPUTS
  return at::full(sizes, std::numeric_limits<double>::quiet_NaN(), options);
#else
  return at::empty(sizes, options);
#endif
}

// Compute (and saved-tensor) dtype: float32 for float32/float16/bfloat16, float64 for float64.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// The ops take x time-major, [T, *neuron_shape] (any neuron shape, read as N = its numel
// neurons in a row): the callers pass a layer's tensors as they are, with no reshape.
inline int64_t neurons(const at::Tensor& x) {
  int64_t n = 1;
  for (int64_t d = 1; d < x.dim(); ++d) n *= x.size(d);
  return n;
}

inline at::IntArrayRef neuron_shape(const at::Tensor& x) { return x.sizes().slice(1); }

// One value for all neurons (any shape with one element) or one per neuron (N elements).
inline void check_param(const at::Tensor& p, const char* name, const at::Tensor& x, int64_t n) {
  TORCH_CHECK(p.numel() == 1 || p.numel() == n, "snntorch_clif: ", name, " must have 1 or N=", n,
              " elements, got shape ", p.sizes());
  // Parameters come in the compute dtype, so their gradients are reduced in it too.
  TORCH_CHECK(p.scalar_type() == acc_dtype(x.scalar_type()), "snntorch_clif: ", name, " must have dtype ",
              acc_dtype(x.scalar_type()), " (the compute dtype of ", x.scalar_type(), "), got ", p.scalar_type());
  TORCH_CHECK(p.device() == x.device(), "snntorch_clif: ", name, " is on ", p.device(),
              ", x on ", x.device());
  TORCH_CHECK(p.is_contiguous(), "snntorch_clif: ", name, " must be contiguous");
}

// A state: the neuron shape x.shape[1:].
inline void check_state(const at::Tensor& s, const char* name, const at::Tensor& x) {
  TORCH_CHECK(s.sizes() == neuron_shape(x), "snntorch_clif: ", name, " must have the neuron shape ",
              neuron_shape(x), " (x.shape[1:]), got ", s.sizes());
  TORCH_CHECK(s.scalar_type() == x.scalar_type() && s.device() == x.device(),
              "snntorch_clif: ", name, " must match x's dtype and device");
  TORCH_CHECK(s.is_contiguous(), "snntorch_clif: ", name, " must be contiguous");
}

inline void check_reset(int64_t reset) {
  TORCH_CHECK(reset >= 0 && reset <= 2, "snntorch_clif: reset id must be 0, 1 or 2, got ", reset);
}

// An optional initial state: absent (or undefined) means zeros.
inline bool has_state(const c10::optional<at::Tensor>& s) { return s.has_value() && s->defined(); }

inline void check_forward_args(const at::Tensor& x, const c10::optional<at::Tensor>& comp0,
                               const c10::optional<at::Tensor>& mem0, const at::Tensor& beta,
                               const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset) {
  TORCH_CHECK(x.dim() >= 1, "snntorch_clif: x must be time-major [T, ...], got a 0-d tensor");
  TORCH_CHECK(x.is_contiguous(), "snntorch_clif: x must be contiguous");
  const int64_t n = neurons(x);
  if (has_state(comp0)) check_state(*comp0, "comp", x);
  if (has_state(mem0)) check_state(*mem0, "mem", x);
  check_param(beta, "beta", x, n);
  check_param(threshold, "threshold", x, n);
  check_param(gsf, "graded_spikes_factor", x, n);
  check_reset(reset);
}

// What the forward saves for the backward: h_t at every step, and the complementary state m
// only at the start of every chunk of kSaveChunk steps. The backward recomputes m_t inside a
// chunk from its checkpoint and the saved h (m_t = sigma((1 - beta) h_t) m_{t-1} + s_t, the
// forward's own operations in clif_math.h, so the same bits), chunk by chunk from the last:
// 4 + 4 / kSaveChunk bytes per neuron-step in float32 instead of 8 for h and m.
constexpr int64_t kSaveChunk = 16;

// Rows of the saved buffer: rows 0..T-1 hold h_t; row T + c holds m_{c K - 1} (K = kSaveChunk,
// c = 0 .. ceil(T / K) - 1; row T is m_{-1}, the initial comp).
inline int64_t saved_rows(int64_t T) { return T + (T + kSaveChunk - 1) / kSaveChunk; }

// A forward kernel of the op's sequence form, registered for its full schema: with step=True
// it runs on x as [1, *x.shape] and returns spk (and state sequences) in x's shape. The views
// are taken below autograd, where they are plain tensors sharing storage.
using ForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
template <ForwardResult (*Kernel)(const at::Tensor&, const c10::optional<at::Tensor>&,
                                  const c10::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                                  const at::Tensor&, int64_t, int64_t, double, bool, bool, bool)>
ForwardResult forward_with_step(const at::Tensor& x, const c10::optional<at::Tensor>& comp0,
                                const c10::optional<at::Tensor>& mem0, const at::Tensor& beta,
                                const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset, int64_t surrogate,
                                double surrogate_param, bool return_sequences, bool save, bool step,
                                bool reset_delay) {
  if (!step) {
    return Kernel(x, comp0, mem0, beta, threshold, gsf, reset, surrogate, surrogate_param, return_sequences, save,
                  reset_delay);
  }
  auto [spk, comp, mem, saved] = Kernel(x.unsqueeze(0), comp0, mem0, beta, threshold, gsf, reset, surrogate,
                                        surrogate_param, return_sequences, save, reset_delay);
  if (return_sequences) return {spk.squeeze(0), comp.squeeze(0), mem.squeeze(0), saved};
  return {spk.squeeze(0), comp, mem, saved};
}

struct ForwardOutputs {
  at::Tensor spk, comp, mem, saved;
};

// spk x.shape; comp/mem the neuron shape x.shape[1:] (x.shape with return_sequences); saved
// [saved_rows(T), N] in the compute dtype when `save`, else [0].
inline ForwardOutputs allocate_forward(const at::Tensor& x, bool return_sequences, bool save) {
  const int64_t T = x.size(0), n = neurons(x);
  const at::IntArrayRef state = return_sequences ? x.sizes() : neuron_shape(x);
  ForwardOutputs o;
  o.spk = new_output(x.sizes(), x.options());
  o.comp = new_output(state, x.options());
  o.mem = new_output(state, x.options());
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));
  o.saved = save ? new_output({saved_rows(T), n}, acc) : new_output({0}, acc);
  return o;
}

// An incoming gradient of a state output: undefined, the neuron shape (final state) or
// grad_spk's [T, ...] (sequence).
inline bool is_sequence_grad(const c10::optional<at::Tensor>& g, const at::Tensor& gspk) {
  return g.has_value() && g->defined() && g->sizes() == gspk.sizes();
}

inline void check_state_grad(const c10::optional<at::Tensor>& g, const char* name, const at::Tensor& gspk) {
  if (!g.has_value() || !g->defined()) return;
  TORCH_CHECK(g->sizes() == neuron_shape(gspk) || g->sizes() == gspk.sizes(), "snntorch_clif: ", name,
              " must have the neuron shape ", neuron_shape(gspk), " or grad_spk's shape ", gspk.sizes(), ", got ",
              g->sizes());
  TORCH_CHECK(g->scalar_type() == gspk.scalar_type() && g->device() == gspk.device(),
              "snntorch_clif: ", name, " must match grad_spk's dtype and device");
  TORCH_CHECK(g->is_contiguous(), "snntorch_clif: ", name, " must be contiguous");
}

inline void check_backward_args(const at::Tensor& gspk, const c10::optional<at::Tensor>& gcomp,
                                const c10::optional<at::Tensor>& gmem, const at::Tensor& saved,
                                const c10::optional<at::Tensor>& mem0, const at::Tensor& beta,
                                const at::Tensor& threshold, const at::Tensor& gsf, int64_t reset,
                                int64_t surrogate) {
  TORCH_CHECK(gspk.dim() >= 1 && gspk.is_contiguous(), "snntorch_clif: grad_spk must be a contiguous [T, ...]");
  const int64_t T = gspk.size(0), n = neurons(gspk);
  check_state_grad(gcomp, "grad_comp", gspk);
  check_state_grad(gmem, "grad_mem", gspk);
  TORCH_CHECK(saved.dim() == 2 && saved.size(0) == saved_rows(T) && saved.size(1) == n && saved.is_contiguous(),
              "snntorch_clif: saved must be the forward's contiguous [", saved_rows(T), ", ", n,
              "] buffer (T + ceil(T/", kSaveChunk, ") rows), got ", saved.sizes(),
              " (was the forward run with save=False?)");
  TORCH_CHECK(saved.scalar_type() == acc_dtype(gspk.scalar_type()) && saved.device() == gspk.device(),
              "snntorch_clif: saved has the wrong dtype or device");
  if (has_state(mem0)) check_state(*mem0, "mem", gspk);
  check_param(beta, "beta", gspk, n);
  check_param(threshold, "threshold", gspk, n);
  check_param(gsf, "graded_spikes_factor", gspk, n);
  check_reset(reset);
  TORCH_CHECK(surrogate >= 0 && surrogate < 7, "snntorch_clif: surrogate id must be in 0..6, got ", surrogate);
}

struct BackwardOutputs {
  at::Tensor dx, dcomp0, dmem0, dbeta, dthreshold, dgsf;
};

// dx grad_spk's shape, dcomp0/dmem0 the neuron shape, in x's dtype; per-neuron parameter
// partial sums [N] in the compute dtype when `param_grads`, else [0].
inline BackwardOutputs allocate_backward(const at::Tensor& gspk, bool param_grads) {
  const int64_t n = neurons(gspk);
  BackwardOutputs o;
  o.dx = new_output(gspk.sizes(), gspk.options());
  o.dcomp0 = new_output(neuron_shape(gspk), gspk.options());
  o.dmem0 = new_output(neuron_shape(gspk), gspk.options());
  const auto acc = gspk.options().dtype(acc_dtype(gspk.scalar_type()));
  const int64_t pn = param_grads ? n : 0;
  o.dbeta = new_output({pn}, acc);
  o.dthreshold = new_output({pn}, acc);
  o.dgsf = new_output({pn}, acc);
  return o;
}

}  // namespace snntorch_clif
