// The ops as typed dispatcher handles (looked up once), for C++ callers: the autograd node
// (autograd.cpp) and the Python entry (python_call.cpp). A call through a handle runs the
// whole dispatch (autograd, profiler, dispatch modes, vmap), as torch.ops does.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

namespace snntorch_clif {

using ForwardOp = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, int64_t, int64_t, double, bool, bool, bool, bool);
using BackwardOp = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const at::Tensor&,
    const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
    double, bool, bool);

const c10::TypedOperatorHandle<ForwardOp>& forward_op();
const c10::TypedOperatorHandle<BackwardOp>& backward_op();

}  // namespace snntorch_clif
