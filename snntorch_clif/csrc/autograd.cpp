// Autograd of snntorch_clif::clif_forward, registered in C++ for the Autograd key: each call
// then costs one C++ autograd node, with no Python wrapper around the kernel (the
// torch.library Python registration cost more host time per call than a small layer's kernel).
// The node is written directly, as PyTorch's own generated nodes are: the generic
// torch::autograd::Function cost ~3 us more per call (per-input and per-output records, a
// string-keyed map of saved data), about a tenth of a small layer's forward + backward.
// The backward is the op clif_backward (cpu/clif_cpu.cpp, cuda/clif_cuda.cu), whose per-neuron
// parameter partial sums are reduced here to the parameters' own shapes.
#include "clif_math.h"  // RESET_NONE
#include "op_handles.h"

#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>

namespace snntorch_clif {

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

namespace {

using at::Tensor;
using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

std::optional<Tensor> contiguous_or_none(const Tensor& t) {
  return t.defined() ? std::optional<Tensor>(t.contiguous()) : std::nullopt;
}

// How the autograd graph holds its nodes: std::shared_ptr<Node> up to torch 2.11,
// c10::intrusive_ptr<Node> in later versions (both are supported: setup.cfg asks torch>=2.4).
using NodePtr = decltype(torch::autograd::Edge::function);

template <typename N>
NodePtr make_node() {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<Node>>) {
    // deleteNode (found by argument lookup) frees a long chain of nodes without deep recursion
    return std::shared_ptr<N>(new N(), [](auto* node) { deleteNode(node); });
  } else {
    return c10::make_intrusive<N>();
  }
}

// The backward of one clif_forward call. Next edges, one per tensor input in the op's order:
// x, comp0, mem0, beta, threshold, gsf (an absent state has an empty edge). Incoming gradients:
// spk, comp, mem (undefined where the loss does not use that output).
struct ClifBackward : public Node {
  // mem0: when beta needs a gradient, or with reset_delay (its reset is differentiated)
  SavedVariable saved, mem0, beta, threshold, gsf;
  int64_t reset = 0, surrogate = 0;
  double surrogate_param = 0.0;
  bool step = false;  // the forward's step form: spk and its gradient have no time dim
  bool reset_delay = false;

  std::string name() const override { return "ClifBackward"; }

  void release_variables() override {
    saved.reset_data();
    mem0.reset_data();
    beta.reset_data();
    threshold.reset_data();
    gsf.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    const Tensor saved_ = saved.unpack(), mem0_ = mem0.unpack();
    const Tensor beta_ = beta.unpack(), threshold_ = threshold.unpack(), gsf_ = gsf.unpack();
    // spk unused by the loss: zeros in its shape (symbolic under torch.compile), dtype, device
    Tensor grad_spk = grads[0].defined() ? grads[0].contiguous() : input_metadata(0).zeros_like();
    if (step) grad_spk = grad_spk.unsqueeze(0);  // the op's [1, ...] (a view: no copy)
    const bool param_grads =
        task_should_compute_output(3) || task_should_compute_output(4) || task_should_compute_output(5);
    auto [dx, dcomp0, dmem0, dbeta, dthreshold, dgsf] = backward_op().call(
        grad_spk, contiguous_or_none(grads[1]), contiguous_or_none(grads[2]), saved_,
        mem0_.defined() ? std::optional<Tensor>(mem0_) : std::nullopt, beta_, threshold_, gsf_, reset, surrogate,
        surrogate_param, param_grads, reset_delay);
    // per-neuron partial sums [N] -> the parameter the op was given: one value or one per
    // neuron, in its own shape (same dtype)
    auto reduce = [](const Tensor& partial, const Tensor& param) {
      return param.sym_numel() == 1 ? partial.sum().reshape_symint(param.sym_sizes())
                                    : partial.reshape_symint(param.sym_sizes());
    };
    variable_list out(6);
    if (task_should_compute_output(0)) out[0] = step ? dx.squeeze(0) : dx;
    if (task_should_compute_output(1)) out[1] = dcomp0;
    if (task_should_compute_output(2)) out[2] = dmem0;
    if (task_should_compute_output(3)) out[3] = reduce(dbeta, beta_);
    if (task_should_compute_output(4)) out[4] = reduce(dthreshold, threshold_);
    if (task_should_compute_output(5)) out[5] = reduce(dgsf, gsf_);
    return out;
  }
};

bool has_forward_grad(const Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); }

std::tuple<Tensor, Tensor, Tensor, Tensor> clif_forward_autograd(const Tensor& x,
                                                                 const std::optional<Tensor>& comp0,
                                                                 const std::optional<Tensor>& mem0,
                                                                 const Tensor& beta,
                                                                 const Tensor& threshold, const Tensor& gsf,
                                                                 int64_t reset, int64_t surrogate,
                                                                 double surrogate_param, bool return_sequences,
                                                                 bool save, bool step, bool reset_delay) {
  const Tensor none;
  const Tensor& comp0_ = comp0.has_value() ? *comp0 : none;
  const Tensor& mem0_ = mem0.has_value() ? *mem0 : none;
  // Without this check a dual tensor's tangent would be dropped without a word.
  TORCH_CHECK(!(has_forward_grad(x) || has_forward_grad(comp0_) || has_forward_grad(mem0_) ||
                has_forward_grad(beta) || has_forward_grad(threshold) || has_forward_grad(gsf)),
              "snntorch_clif: forward-mode AD (torch.autograd.forward_ad, torch.func.jvp) is not supported by "
              "the CLIF op; use reverse mode (backward, torch.autograd.grad, torch.func.grad)");
  std::tuple<Tensor, Tensor, Tensor, Tensor> out;
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    out = forward_op().call(x, comp0, mem0, beta, threshold, gsf, reset, surrogate, surrogate_param,
                            return_sequences, save, step, reset_delay);
  }
  if (!torch::autograd::compute_requires_grad(x, comp0_, mem0_, beta, threshold, gsf)) {
    return out;  // nothing to differentiate: no node, nothing saved
  }
  TORCH_CHECK(save,
              "snntorch_clif::clif_forward: save=False with inputs that require grad (the backward needs the "
              "saved buffer); call it with save=True to differentiate it");
  auto& [spk, comp, mem, saved] = out;
  const NodePtr node_ptr = make_node<ClifBackward>();
  auto& node = static_cast<ClifBackward&>(*node_ptr);
  node.set_next_edges(torch::autograd::collect_next_edges(x, comp0_, mem0_, beta, threshold, gsf));
  node.saved = SavedVariable(saved, /*is_output=*/false);  // no history: not differentiable
  // u_{-1} enters only dL/dbeta; h and m (the saved buffer) are all the rest needs. With
  // reset_delay a given mem0 is h_{-1}, whose reset the backward differentiates: it must know
  // that there was one (without it: u_{-1} = 0, no reset), so mem0 is kept whenever given.
  const bool delayed_reset = reset_delay && reset != RESET_NONE;  // "none": the option changes nothing
  if ((beta.requires_grad() || delayed_reset) && mem0_.defined()) node.mem0 = SavedVariable(mem0_, false);
  node.beta = SavedVariable(beta, false);
  node.threshold = SavedVariable(threshold, false);
  node.gsf = SavedVariable(gsf, false);
  node.reset = reset;
  node.surrogate = surrogate;
  node.surrogate_param = surrogate_param;
  node.step = step;
  node.reset_delay = reset_delay;
  torch::autograd::set_history(spk, node_ptr);  // gradient 0
  torch::autograd::set_history(comp, node_ptr);  // 1
  torch::autograd::set_history(mem, node_ptr);  // 2
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(snntorch_clif, Autograd, m) { m.impl("clif_forward", &clif_forward_autograd); }

}  // namespace snntorch_clif
