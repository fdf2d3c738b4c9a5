// The CUDA kernels compiled as host C++ and run on CPU tensors (MLFFD_CUDA_EMULATION, see
// cuda_utils.cuh), so that machines without a GPU test their indexing and host logic.
//
// Built only by tests (export.ops.cuda_check.load_emulation) into a library of its own, with
// op_checks.cpp, and never into mlffd_ops or the LAMMPS plugin (which glob csrc/*.cpp only). Its ops
// live in the namespace mlffd_cuda_emulation, take CPU tensors and have the schemas of the mlffd ops.
#define MLFFD_CUDA_EMULATION
#define MLFFD_WITH_CUDA

#include "fused_edge_cuda.cu"
#include "op_schemas.h"
#include "spline_edge_cuda.cu"

TORCH_LIBRARY(mlffd_cuda_emulation, m) {
  namespace schema = mlffd::schema;
  for (const char* s : {schema::kConvScatterH, schema::kConvScatterHBackward, schema::kEdgeForcesVirial,
                        schema::kEdgeGraph, schema::kRadialSpline, schema::kRadialSplineBackward, schema::kSplineConv,
                        schema::kSplineConvBackward})
    m.def(s);
}
