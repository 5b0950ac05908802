// The ops (their schemas: schemas.h), and the Python module `snntorch_clif._C` whose import
// loads this library (with a direct entry to clif_forward: python_call.cpp). Kernels:
// cpu/clif_cpu.cpp (CPU) and cuda/clif_cuda.cu (CUDA); fake (meta) kernels: snntorch_clif/ops.py;
// autograd: autograd.cpp.
#include "schemas.h"

#include <Python.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

// setup.py passes the arch list as bare tokens (a quoted string does not survive the
// build tools' shell): stringify them here.
#define CLIF_STR_(...) #__VA_ARGS__
#define CLIF_STR(...) CLIF_STR_(__VA_ARGS__)
#ifdef SNNTORCH_CLIF_CUDA_ARCHS
#define CLIF_CUDA_ARCHS CLIF_STR(SNNTORCH_CLIF_CUDA_ARCHS)
#else
#define CLIF_CUDA_ARCHS ""
#endif

namespace snntorch_clif {
const char* cpu_isa_name();  // cpu/clif_cpu.cpp: the SIMD variant picked for this machine
std::vector<int64_t> cpu_threads(int64_t policy, int64_t contended_ns);  // cpu/clif_cpu.cpp
PyObject* forward_from_python(PyObject*, PyObject* const*, Py_ssize_t);  // python_call.cpp
}

TORCH_LIBRARY(snntorch_clif, m) {
  m.def(snntorch_clif::kForwardSchema);
  m.def(snntorch_clif::kBackwardSchema);
}

static PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(snntorch_clif::cpu_isa_name());
}

static PyObject* cpu_threads(PyObject*, PyObject* args) {
  long long policy = -1, contended_ns = -1;
  if (!PyArg_ParseTuple(args, "|LL", &policy, &contended_ns)) return nullptr;
  if (policy > 2) {
    PyErr_SetString(PyExc_ValueError, "policy must be 0 (adaptive), 1 (threads) or 2 (single)");
    return nullptr;
  }
  const std::vector<int64_t> state = snntorch_clif::cpu_threads(policy, contended_ns);
  PyObject* out = PyTuple_New(static_cast<Py_ssize_t>(state.size()));
  if (out == nullptr) return nullptr;
  for (size_t i = 0; i < state.size(); ++i) PyTuple_SET_ITEM(out, i, PyLong_FromLongLong(state[i]));
  return out;
}

static PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "The SIMD instruction set the CPU kernel uses on this machine."},
    {"cpu_threads", cpu_threads, METH_VARARGS,
     "cpu_threads(policy=-1, contended_ns=-1): the CPU kernel's thread policy (0 adaptive, 1 threads, 2 single), "
     "after setting it and/or marking the CPU contended for contended_ns (-1: leave); returns (policy, contended, "
     "threaded_calls, single_calls, contended_calls, last_late_ns, last_wait_ns, helper_threads)."},
    {"forward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(snntorch_clif::forward_from_python)),
     METH_FASTCALL,
     "torch.ops.snntorch_clif.clif_forward's arguments, positional; NotImplemented for what torch.ops must "
     "handle (python_call.cpp)."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                                        "Fused CLIF kernels (ops in torch.ops.snntorch_clif).", -1, methods};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
#ifdef SNNTORCH_CLIF_WITH_CUDA
  PyModule_AddIntConstant(m, "WITH_CUDA", 1);
#else
  PyModule_AddIntConstant(m, "WITH_CUDA", 0);
#endif
  PyModule_AddStringConstant(m, "CUDA_ARCHS", CLIF_CUDA_ARCHS);
  return m;
}
