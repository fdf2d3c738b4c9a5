// mlffd tabulated-radial ops: declarations shared by the CPU file (spline_edge.cpp: schemas, CPU
// kernels, C++ autograd), the CUDA file (spline_edge_cuda.cu) and the argument checks
// (op_checks.cpp). Per-element formulas: kernel_math.h.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace mlffd {

// ---- argument checks (shapes, dtypes, devices; they never read tensor data) -------------------
// centre, neighbour: [E] int64 on one device; n_nodes >= 0.
void check_edge_list(const at::Tensor& centre, const at::Tensor& neighbour, int64_t n_nodes, const char* op);
// length [E] float; table [n_int >= 1, 4, K] of length's dtype and device; r_max > 0.
void check_radial_table(const at::Tensor& length, const at::Tensor& table, double r_max, const char* op);
void check_radial_grad(const at::Tensor& grad_out, const at::Tensor& length, const at::Tensor& table, const char* op);
// rowptr [n_nodes + 1], nb_order [E], nb_start [n_nodes + 1]: int64 on `ref`'s device (from mlffd::edge_graph).
void check_graph(const at::Tensor& rowptr, const at::Tensor& nb_order, const at::Tensor& nb_start, int64_t E,
                 const at::Tensor& ref, const char* op);

// spline_conv(_backward)'s inputs, checked and made contiguous.
struct SplineConvArgs {
  at::Tensor vec, h, table, neighbour, rowptr, nb_order, nb_start;
  int64_t E, N, C, L, n_int;
  double r_max;
};
SplineConvArgs prepare_spline_conv(const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
                                   const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order,
                                   const at::Tensor& nb_start, double r_max, int64_t lmax, const char* op);
// grad_out [(lmax+1)^2, N, C] like spline_conv's output.
void check_spline_conv_grad(const at::Tensor& grad_out, const SplineConvArgs& a, const char* op);

// Which build of spline_conv's CPU kernels this process runs: "avx2" or "generic" (build_info()).
const char* spline_cpu_isa();

}  // namespace mlffd
