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
// reset_delay=True (reference.py's reset_delay): mem0 and the returned mem are h, the membrane
// before the reset; a given mem0 gets its reset (from comp0) before step 0, None means u_{-1} = 0
// with no reset. Spikes and comp are those of reset_delay=False.
constexpr const char* kForwardSchema =
    "clif_forward(Tensor x, Tensor? comp0, Tensor? mem0, Tensor beta, Tensor threshold, Tensor gsf, "
    "int reset, int surrogate, float surrogate_param, bool return_sequences, bool save, bool step=False, "
    "bool reset_delay=False) "
    "-> (Tensor spk, Tensor comp, Tensor mem, Tensor saved)";

// mem0: the forward's, or None. Without reset_delay only dL/dbeta reads it (None: u_{-1} = 0);
// with reset_delay it must be passed exactly when the forward got one (its reset is differentiated).
constexpr const char* kBackwardSchema =
    "clif_backward(Tensor grad_spk, Tensor? grad_comp, Tensor? grad_mem, Tensor saved, Tensor? mem0, "
    "Tensor beta, Tensor threshold, Tensor gsf, int reset, int surrogate, float surrogate_param, "
    "bool param_grads, bool reset_delay=False) "
    "-> (Tensor grad_x, Tensor grad_comp0, Tensor grad_mem0, Tensor grad_beta, Tensor grad_threshold, "
    "Tensor grad_gsf)";

}  // namespace snntorch_clif
