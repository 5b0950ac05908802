// Autograd of snntorch_clif::clif_forward, registered in C++ for the Autograd key: each call
// then costs one C++ autograd node, with no Python wrapper around the kernel (the
// torch.library Python registration cost more host time per call than a small layer's kernel).
// The backward is the op clif_backward (cpu/clif_cpu.cpp, cuda/clif_cuda.cu), whose per-neuron
// parameter partial sums are reduced here to the parameters' own shapes.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace snntorch_clif {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardOp = std::tuple<Tensor, Tensor, Tensor, Tensor>(const Tensor&, const std::optional<Tensor>&,
                                                             const std::optional<Tensor>&, const Tensor&,
                                                             const Tensor&, const Tensor&, int64_t, int64_t, double,
                                                             bool, bool);
using BackwardOp = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const std::optional<Tensor>&, const std::optional<Tensor>&, const Tensor&,
    const std::optional<Tensor>&, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, double, bool);

const c10::TypedOperatorHandle<ForwardOp>& forward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("snntorch_clif::clif_forward", "").typed<ForwardOp>();
  return op;
}

const c10::TypedOperatorHandle<BackwardOp>& backward_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("snntorch_clif::clif_backward", "").typed<BackwardOp>();
  return op;
}

std::optional<Tensor> contiguous_or_none(const Tensor& t) {
  return t.defined() ? std::optional<Tensor>(t.contiguous()) : std::nullopt;
}

class ClifFunction : public torch::autograd::Function<ClifFunction> {
 public:
  // comp0 / mem0: absent means zeros (then they get no gradient)
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const std::optional<Tensor>& comp0,
                               const std::optional<Tensor>& mem0, const Tensor& beta, const Tensor& threshold,
                               const Tensor& gsf, int64_t reset, int64_t surrogate, double surrogate_param,
                               bool return_sequences, bool save) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [spk, comp, mem, saved] = forward_op().call(x, comp0, mem0, beta, threshold, gsf, reset, surrogate,
                                                     surrogate_param, return_sequences, save);
    // Unused outputs (the saved buffer, often the states) get no zero-filled gradient.
    ctx->set_materialize_grads(false);
    ctx->mark_non_differentiable({saved});
    // u_{-1} enters only dL/dbeta; h and m (the saved buffer) are all the rest needs.
    const Tensor mem0_or_none = mem0.has_value() ? *mem0 : Tensor();
    ctx->save_for_backward({saved, beta.requires_grad() ? mem0_or_none : Tensor(), beta, threshold, gsf});
    ctx->saved_data["has_comp0"] = comp0.has_value() && comp0->defined();
    ctx->saved_data["has_mem0"] = mem0_or_none.defined();
    ctx->saved_data["reset"] = reset;
    ctx->saved_data["surrogate"] = surrogate;
    ctx->saved_data["surrogate_param"] = surrogate_param;
    ctx->saved_data["save"] = save;
    ctx->saved_data["param_grads"] = beta.requires_grad() || threshold.requires_grad() || gsf.requires_grad();
    // x's shape (symbolic under torch.compile), dtype and device, for a missing grad_spk
    ctx->saved_data["x_sizes"] = x.sym_sizes();
    ctx->saved_data["x"] = x.new_empty({0});
    return {spk, comp, mem, saved};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(ctx->saved_data["save"].toBool(),
                "snntorch_clif::clif_forward ran with save=False (no gradient expected); call it with save=True "
                "to differentiate it");
    const variable_list s = ctx->get_saved_variables();
    const Tensor &saved = s[0], &mem0 = s[1], &beta = s[2], &threshold = s[3], &gsf = s[4];
    Tensor grad_spk = grads[0].defined() ? grads[0].contiguous()
                                         : at::zeros_symint(ctx->saved_data["x_sizes"].toSymIntVector(),
                                                            ctx->saved_data["x"].toTensor().options());
    auto [dx, dcomp0, dmem0, dbeta, dthreshold, dgsf] = backward_op().call(
        grad_spk, contiguous_or_none(grads[1]), contiguous_or_none(grads[2]), saved,
        mem0.defined() ? std::optional<Tensor>(mem0) : std::nullopt, beta, threshold, gsf,
        ctx->saved_data["reset"].toInt(), ctx->saved_data["surrogate"].toInt(),
        ctx->saved_data["surrogate_param"].toDouble(), ctx->saved_data["param_grads"].toBool());
    // per-neuron partial sums [N] -> the parameter the op was given: one value or one per
    // neuron, in its own shape (same dtype)
    auto reduce = [](const Tensor& partial, const Tensor& param) {
      return param.sym_numel() == 1 ? partial.sum().reshape_symint(param.sym_sizes())
                                    : partial.reshape_symint(param.sym_sizes());
    };
    variable_list out(11);  // one per forward input; none for the non-tensor ones
    out[0] = dx;
    const bool has_comp0 = ctx->saved_data["has_comp0"].toBool(), has_mem0 = ctx->saved_data["has_mem0"].toBool();
    if (has_comp0) out[1] = dcomp0;
    if (has_mem0) out[2] = dmem0;
    // needs_input_grad counts the tensor inputs that were given: absent states have no edge
    const size_t params_edge = 1 + has_comp0 + has_mem0;
    if (ctx->needs_input_grad(params_edge)) out[3] = reduce(dbeta, beta);
    if (ctx->needs_input_grad(params_edge + 1)) out[4] = reduce(dthreshold, threshold);
    if (ctx->needs_input_grad(params_edge + 2)) out[5] = reduce(dgsf, gsf);
    return out;
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor> clif_forward_autograd(const Tensor& x,
                                                                 const std::optional<Tensor>& comp0,
                                                                 const std::optional<Tensor>& mem0,
                                                                 const Tensor& beta,
                                                                 const Tensor& threshold, const Tensor& gsf,
                                                                 int64_t reset, int64_t surrogate,
                                                                 double surrogate_param, bool return_sequences,
                                                                 bool save) {
  auto requires_grad = [](const std::optional<Tensor>& t) { return t.has_value() && t->requires_grad(); };
  if (!at::GradMode::is_enabled() || !(x.requires_grad() || requires_grad(comp0) || requires_grad(mem0) ||
                                       beta.requires_grad() || threshold.requires_grad() || gsf.requires_grad())) {
    // Nothing to differentiate: straight to the kernel, without a node and its saved state.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return forward_op().call(x, comp0, mem0, beta, threshold, gsf, reset, surrogate, surrogate_param,
                             return_sequences, save);
  }
  const variable_list out = ClifFunction::apply(x, comp0, mem0, beta, threshold, gsf, reset, surrogate,
                                                surrogate_param, return_sequences, save);
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(snntorch_clif, Autograd, m) { m.impl("clif_forward", &clif_forward_autograd); }

}  // namespace snntorch_clif
