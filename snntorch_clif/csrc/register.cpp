// The ops' schemas (one place), and the Python module `snntorch_clif._C` whose import
// loads this library. Kernels: cpu/clif_cpu.cpp (CPU) and cuda/clif_cuda.cu (CUDA);
// fake (meta) kernels and autograd: snntorch_clif/ops.py.
#include <Python.h>
#include <torch/library.h>

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
}

TORCH_LIBRARY(snntorch_clif, m) {
  // x [T, N] contiguous; comp0/mem0 [N] in x's dtype; beta/threshold/gsf [1] or [N] in the
  // compute dtype (float32; float64 for float64 x).
  // reset: 0 subtract, 1 zero, 2 none. surrogate/surrogate_param are unused by the forward
  // kernel; they are inputs so the autograd formula (ops.py) can see them.
  m.def(
      "clif_forward(Tensor x, Tensor comp0, Tensor mem0, Tensor beta, Tensor threshold, Tensor gsf, "
      "int reset, int surrogate, float surrogate_param, bool return_sequences, bool save) "
      "-> (Tensor spk, Tensor comp, Tensor mem, Tensor saved)");
  m.def(
      "clif_backward(Tensor grad_spk, Tensor? grad_comp, Tensor? grad_mem, Tensor saved, Tensor? mem0, "
      "Tensor beta, Tensor threshold, Tensor gsf, int reset, int surrogate, float surrogate_param, "
      "bool param_grads) "
      "-> (Tensor grad_x, Tensor grad_comp0, Tensor grad_mem0, Tensor grad_beta, Tensor grad_threshold, "
      "Tensor grad_gsf)");
}

static PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(snntorch_clif::cpu_isa_name());
}

static PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "The SIMD instruction set the CPU kernel uses on this machine."},
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
