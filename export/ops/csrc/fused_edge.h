// mlffd fused edge ops: declarations shared by the CPU file (fused_edge.cpp: schemas, CPU kernels,
// C++ autograd), the CUDA file (fused_edge_cuda.cu) and the argument checks (op_checks.cpp).
//
// Dispatch: conv_scatter_h(_backward), edge_geometry(_backward) and edge_forces_virial have one
// kernel per device, registered under the CPU and CUDA keys; the Autograd kernels call them
// through the dispatcher. radial_mlp is a composite (two matmuls from ATen between elementwise
// passes); its elementwise passes branch on the device to the *_cuda functions below.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace mlffd {

// ---- argument checks (shapes, dtypes, devices; they never read tensor data) -------------------
int64_t check_conv_h(const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh, const at::Tensor& centre,
                     const at::Tensor& neighbour, int64_t lmax, const char* op);
void check_conv_h_grad_out(const at::Tensor& grad_out, const at::Tensor& radial, int64_t n_nodes, int64_t lmax,
                           const char* op);
void check_geometry(const at::Tensor& vec, int64_t lmax, const char* op);
void check_geometry_grads(const at::Tensor& grad_length, const at::Tensor& grad_sh, const at::Tensor& vec,
                          int64_t lmax, const char* op);
void check_radial(const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1, const at::Tensor& b1,
                  const at::Tensor& w2, const at::Tensor& b2, int64_t n_split, const char* op);
void check_edge_forces(const at::Tensor& edge_grad, const at::Tensor& edge_vec, const at::Tensor& centre,
                       const at::Tensor& neighbour, int64_t n_nodes, const char* op);

// conv_scatter_h_backward's inputs (checked, made contiguous) and outputs (allocated; written by
// the device kernels unless `trivial`), shared by the CPU and CUDA kernels.
struct ConvHBackward {
  at::Tensor grad_out, radial, h, sh, centre, neighbour;
  at::Tensor grad_radial, grad_h, grad_sh;
  at::Tensor gh_edge;  // [E, C] per-edge terms of grad_h, gathered by neighbour (when need_h)
  int64_t E, N, C, L;
  bool trivial;  // E == 0 or C == 0: the outputs are final
};
ConvHBackward prepare_conv_h_backward(const at::Tensor& grad_out, const at::Tensor& radial, const at::Tensor& h,
                                      const at::Tensor& sh, const at::Tensor& centre, const at::Tensor& neighbour,
                                      int64_t lmax, bool need_h, const char* op);

// Device-generic (ATen ops, one host sync): centre sorted ascending, centre and neighbour in
// [0, n_nodes). The CPU kernels check inline instead and name the first offending edge.
void check_edges_generic(const at::Tensor& centre, const at::Tensor& neighbour, int64_t n_nodes, const char* op);

// Edges grouped by neighbour atom (device-generic, ATen): order [E] lists the edges sorted by
// neighbour (stable: ascending edge index within an atom), start [n_nodes + 1] the group bounds.
std::tuple<at::Tensor, at::Tensor> group_by_neighbour(const at::Tensor& neighbour, int64_t n_nodes);

#ifdef MLFFD_WITH_CUDA
// ---- radial_mlp's elementwise passes on CUDA (fused_edge_cuda.cu) ------------------------------
// basis[e, n] = prefactor sin(f_n r_e) / r_e and envelope[e] = u(r_e), written into the outputs.
void radial_basis_envelope_cuda(const at::Tensor& length, const at::Tensor& freq, double prefactor, double cutoff,
                                double p, at::Tensor& basis, at::Tensor& envelope);
// outs[t][e, k] = mlp[e, t * Kt + k] * envelope[e].
void radial_scale_split_cuda(const at::Tensor& mlp, const at::Tensor& envelope, std::vector<at::Tensor>& outs);
// From the block gradients (undefined blocks count as zero): G = grad_out * envelope [E, K],
// S[e] = sum_k grad_out * mlp, dbasis = d basis / dr [E, B], denv = du/dr [E].
void radial_backward_terms_cuda(const std::vector<at::Tensor>& grads, const at::Tensor& length, const at::Tensor& freq,
                                const at::Tensor& mlp, double prefactor, double cutoff, double p, at::Tensor& G,
                                at::Tensor& S, at::Tensor& dbasis, at::Tensor& denv);
#endif

}  // namespace mlffd
