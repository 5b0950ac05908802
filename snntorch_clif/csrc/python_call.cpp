// snntorch_clif._C.forward: clif_forward called from Python without torch.ops' generic
// binding. That binding converts all the arguments against the schema and back, ~20,000
// instructions a call (the op's own dispatch and kernel on a small input: ~15,000), ~4 us in
// situ at T=16, N=4096. This entry calls the same dispatcher handle (op_handles.h), so
// autograd, the profiler, dispatch modes and vmap see the op exactly as from torch.ops.
//
// It takes the op's arguments, positional and of the schema's exact types, and returns
// NotImplemented for anything else: a tensor subclass, an active __torch_function__ mode
// (handled only by Python's binding), an int for the float. ops.py then calls torch.ops,
// which handles or rejects them as usual.
#include "op_handles.h"

#include <Python.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

namespace snntorch_clif {
namespace {

bool is_tensor(PyObject* o) { return THPVariable_CheckExact(o); }  // Tensor or Parameter, no subclass
bool is_bool(PyObject* o) { return o == Py_True || o == Py_False; }

std::optional<at::Tensor> optional_tensor(PyObject* o) {
  return o == Py_None ? std::nullopt : std::optional<at::Tensor>(THPVariable_Unpack(o));
}

// Releases the GIL for the op, as torch.ops does (a TorchDispatchMode retakes it).
struct WithoutGil {
  PyThreadState* state = PyEval_SaveThread();
  ~WithoutGil() { PyEval_RestoreThread(state); }
};

}  // namespace

PyObject* forward_from_python(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs < 11 || nargs > 13) {  // `step` and `reset_delay` may be left out, as their defaults allow
    PyErr_Format(PyExc_TypeError, "forward() takes 11 to 13 positional arguments (%zd given)", nargs);
    return nullptr;
  }
  const bool typed = is_tensor(args[0]) && (args[1] == Py_None || is_tensor(args[1])) &&
                     (args[2] == Py_None || is_tensor(args[2])) && is_tensor(args[3]) && is_tensor(args[4]) &&
                     is_tensor(args[5]) && PyLong_CheckExact(args[6]) && PyLong_CheckExact(args[7]) &&
                     PyFloat_CheckExact(args[8]) && is_bool(args[9]) && is_bool(args[10]) &&
                     (nargs < 12 || is_bool(args[11])) && (nargs < 13 || is_bool(args[12]));
  if (!typed || at::impl::torch_function_mode_enabled()) Py_RETURN_NOTIMPLEMENTED;
  const int64_t reset = PyLong_AsLongLong(args[6]), surrogate = PyLong_AsLongLong(args[7]);
  if (PyErr_Occurred()) return nullptr;  // an int beyond 64 bits
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> out;
  {
    WithoutGil without_gil;
    out = forward_op().call(THPVariable_Unpack(args[0]), optional_tensor(args[1]), optional_tensor(args[2]),
                            THPVariable_Unpack(args[3]), THPVariable_Unpack(args[4]), THPVariable_Unpack(args[5]),
                            reset, surrogate, PyFloat_AS_DOUBLE(args[8]), args[9] == Py_True, args[10] == Py_True,
                            nargs >= 12 && args[11] == Py_True, nargs == 13 && args[12] == Py_True);
  }
  auto& [spk, comp, mem, saved] = out;
  PyObject* result = PyTuple_New(4);  // its items start as NULL, so a partial tuple frees cleanly
  if (result == nullptr) return nullptr;
  Py_ssize_t i = 0;
  for (at::Tensor* t : {&spk, &comp, &mem, &saved}) {
    PyObject* item = THPVariable_Wrap(std::move(*t));
    if (item == nullptr) {
      Py_DECREF(result);
      return nullptr;
    }
    PyTuple_SET_ITEM(result, i++, item);
  }
  return result;
  END_HANDLE_TH_ERRORS
}

}  // namespace snntorch_clif
