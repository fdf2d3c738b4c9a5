// mlffd custom ops: shared declarations.
//
// Pure libtorch (ATen + torch/library.h + torch autograd): no Python, no pybind. The LAMMPS
// plugin compiles these sources into itself; Python builds them with torch.utils.cpp_extension.
//
//   mlffd::conv_scatter(Tensor weights, Tensor sh, Tensor centre, int n_nodes, int lmax) -> Tensor
//     weights [E, lmax+1, C], sh [E, (lmax+1)^2] (same floating dtype), centre [E] int64 sorted
//     out[i, c, m] = sum_{e: centre[e] = i} weights[e, l(m), c] * sh[e, m],  l(m) = floor(sqrt(m))
//   mlffd::conv_scatter_backward(Tensor grad_out, Tensor weights, Tensor sh, Tensor centre, int lmax)
//       -> (Tensor grad_weights, Tensor grad_sh)
//     grad_weights[e, l, c] = sum_{m in l} grad_out[centre[e], c, m] * sh[e, m]
//     grad_sh[e, m]         = sum_c grad_out[centre[e], c, m] * weights[e, l(m), c]
//
// Source files: conv_scatter.cpp (schema, CPU + Meta kernels), conv_scatter_autograd.cpp
// (Autograd key, any order of differentiation), conv_scatter_cuda.cu (CUDA kernels, optional),
// op_checks.cpp (the argument checks below).
// Compile the .cpp files with OpenMP (-fopenmp): without it at::parallel_for runs serially.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

namespace mlffd {

// Shapes, dtypes, devices; never reads tensor data. Returns E.
int64_t check_conv_scatter_args(const at::Tensor& weights, const at::Tensor& sh, const at::Tensor& centre,
                                int64_t n_nodes, int64_t lmax, const char* op);

// grad_out [n_nodes, C, (lmax+1)^2] against weights/sh (shapes/dtypes/devices only).
void check_grad_out(const at::Tensor& grad_out, const at::Tensor& weights, int64_t lmax, const char* op);

// Device-generic (ATen ops, one host sync) check that centre is sorted ascending with values in
// [0, n_nodes). Used by the CUDA kernels; the CPU kernels check inline with a precise message.
void check_centre_sorted_generic(const at::Tensor& centre, int64_t n_nodes, const char* op);

// acc[m, c] += w_edge[l(m), c] * sh_edge[m] for one edge (acc is m-major: the inner loop runs
// over contiguous channels).
template <typename scalar_t>
inline void accumulate_edge(const scalar_t* __restrict__ w_edge, const scalar_t* __restrict__ sh_edge,
                            scalar_t* __restrict__ acc, int64_t L, int64_t C) {
  for (int64_t l = 0; l < L; ++l) {
    const scalar_t* __restrict__ wl = w_edge + l * C;
    for (int64_t m = l * l; m < (l + 1) * (l + 1); ++m) {
      const scalar_t s = sh_edge[m];
      scalar_t* __restrict__ a = acc + m * C;
      for (int64_t c = 0; c < C; ++c) a[c] += wl[c] * s;
    }
  }
}

// out_node[c, m] = acc[m, c]: the op's output layout is [N, C, M].
template <typename scalar_t>
inline void store_node(const scalar_t* __restrict__ acc, scalar_t* __restrict__ out_node, int64_t C, int64_t M) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t m = 0; m < M; ++m) out_node[c * M + m] = acc[m * C + c];
}

// acc[m, c] = node[c, m]: one atom's [C, M] gradient, transposed for the edge loops.
template <typename scalar_t>
inline void load_node(const scalar_t* __restrict__ node, scalar_t* __restrict__ acc, int64_t C, int64_t M) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t m = 0; m < M; ++m) acc[m * C + c] = node[c * M + m];
}

}  // namespace mlffd
