// The ops' schemas, in one place: register.cpp defines the ops with them, and the
// emulated-CUDA test build (tests/cuda_shim/) defines its twin ops with the same text.
#pragma once

namespace snntorch_clif {

// x [T, *neurons] contiguous (N = the neurons' count; outputs keep these shapes); comp0/mem0
// shaped `neurons` in x's dtype, or None for zeros (nothing to read: a fresh state costs no
// buffer); beta/threshold/gsf 1 or N elements in the compute dtype (float32; float64 for float64 x).
// reset: 0 subtract, 1 zero, 2 none. surrogate/surrogate_param are unused by the forward
// kernel; they are inputs so the autograd formula (ops.py) can see them.
// step=True: x is one time step with no time dim (x.shape = the neurons' shape, T = 1); spk
// comes back in x's shape, so a single step needs no view nodes around the op.
constexpr const char* kForwardSchema =
    "clif_forward(Tensor x, Tensor? comp0, Tensor? mem0, Tensor beta, Tensor threshold, Tensor gsf, "
    "int reset, int surrogate, float surrogate_param, bool return_sequences, bool save, bool step=False) "
    "-> (Tensor spk, Tensor comp, Tensor mem, Tensor saved)";

constexpr const char* kBackwardSchema =
    "clif_backward(Tensor grad_spk, Tensor? grad_comp, Tensor? grad_mem, Tensor saved, Tensor? mem0, "
    "Tensor beta, Tensor threshold, Tensor gsf, int reset, int surrogate, float surrogate_param, "
    "bool param_grads) "
    "-> (Tensor grad_x, Tensor grad_comp0, Tensor grad_mem0, Tensor grad_beta, Tensor grad_threshold, "
    "Tensor grad_gsf)";

}  // namespace snntorch_clif
