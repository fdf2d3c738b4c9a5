// The CUDA kernels compiled as host C++ and run on CPU tensors (MLFFD_CUDA_EMULATION, see
// cuda_utils.cuh), so that machines without a GPU test their indexing and host logic.
//
// Built only by tests (export.ops.cuda_check.load_emulation) into a library of its own, with
// op_checks.cpp, and never into mlffd_ops or the LAMMPS plugin (which glob csrc/*.cpp only). Its ops
// live in the namespace mlffd_cuda_emulation, take CPU tensors and have the schemas of the mlffd
// ops; radial_mlp's elementwise passes are exposed one by one.
#define MLFFD_CUDA_EMULATION
#define MLFFD_WITH_CUDA

#include "conv_scatter_cuda.cu"
#include "fused_edge_cuda.cu"
#include "op_schemas.h"

namespace mlffd {
namespace {

std::tuple<at::Tensor, at::Tensor> radial_basis_envelope(const at::Tensor& length, const at::Tensor& freq,
                                                          double prefactor, double cutoff, double p) {
  at::Tensor basis = at::empty({length.size(0), freq.size(0)}, length.options());
  at::Tensor envelope = at::empty({length.size(0)}, length.options());
  radial_basis_envelope_cuda(length.contiguous(), freq.contiguous(), prefactor, cutoff, p, basis, envelope);
  return {basis, envelope};
}

std::vector<at::Tensor> radial_scale_split(const at::Tensor& mlp, const at::Tensor& envelope, int64_t n_split) {
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < n_split; ++t) outs.push_back(at::empty({mlp.size(0), mlp.size(1) / n_split}, mlp.options()));
  radial_scale_split_cuda(mlp.contiguous(), envelope.contiguous(), outs);
  return outs;
}

// An empty tensor in `grads` stands for an undefined block gradient.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> radial_backward_terms(
    at::TensorList grads, const at::Tensor& length, const at::Tensor& freq, const at::Tensor& mlp, double prefactor,
    double cutoff, double p) {
  std::vector<at::Tensor> blocks;
  for (const at::Tensor& g : grads) blocks.push_back(g.numel() > 0 ? g.contiguous() : at::Tensor());
  const int64_t E = length.size(0);
  at::Tensor G = at::empty({E, mlp.size(1)}, length.options());
  at::Tensor S = at::empty({E}, length.options());
  at::Tensor dbasis = at::empty({E, freq.size(0)}, length.options());
  at::Tensor denv = at::empty({E}, length.options());
  radial_backward_terms_cuda(blocks, length.contiguous(), freq.contiguous(), mlp.contiguous(), prefactor, cutoff, p,
                             G, S, dbasis, denv);
  return {G, S, dbasis, denv};
}

}  // namespace
}  // namespace mlffd

TORCH_LIBRARY(mlffd_cuda_emulation, m) {
  namespace schema = mlffd::schema;
  for (const char* s : {schema::kConvScatter, schema::kConvScatterBackward, schema::kConvScatterH,
                        schema::kConvScatterHBackward, schema::kEdgeGeometry, schema::kEdgeGeometryBackward,
                        schema::kEdgeForcesVirial})
    m.def(s);
  m.def("radial_basis_envelope(Tensor length, Tensor frequencies, float prefactor, float cutoff, float p) "
        "-> (Tensor, Tensor)",
        &mlffd::radial_basis_envelope);
  m.def("radial_scale_split(Tensor mlp, Tensor envelope, int n_split) -> Tensor[]", &mlffd::radial_scale_split);
  m.def("radial_backward_terms(Tensor[] grads, Tensor length, Tensor frequencies, Tensor mlp, float prefactor, "
        "float cutoff, float p) -> (Tensor, Tensor, Tensor, Tensor)",
        &mlffd::radial_backward_terms);
}
