// The Python extension module torchlite._C. It exports no functions: importing
// it loads the shared library, whose static initializers register the
// operators with the dispatcher (torch.ops.torchlite.*). Kept apart from the
// operator sources so cpp_app/ can link those without Python.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "torchlite operators (registered under torch.ops.torchlite)",
      -1,
      nullptr,
  };
  return PyModule_Create(&module_def);
}
}
