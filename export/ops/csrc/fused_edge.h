// mlffd fused edge ops: declarations shared by the CPU file (fused_edge.cpp: schemas, CPU kernels,
// C++ autograd), the CUDA file (fused_edge_cuda.cu) and the argument checks (op_checks.cpp).
//
// Dispatch: conv_scatter_h(_backward) and edge_forces_virial have one kernel per device,
// registered under the CPU and CUDA keys; the Autograd kernel of conv_scatter_h calls them
// through the dispatcher.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

namespace mlffd {

// ---- argument checks (shapes, dtypes, devices; they never read tensor data) -------------------
int64_t check_conv_h(const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh, const at::Tensor& centre,
                     const at::Tensor& neighbour, int64_t lmax, const char* op);
void check_conv_h_grad_out(const at::Tensor& grad_out, const at::Tensor& radial, int64_t n_nodes, int64_t lmax,
                           const char* op);
// edge_forces_virial's arguments (rowptr, nb_order, nb_start from mlffd::edge_graph); returns n_nodes.
int64_t check_edge_forces(const at::Tensor& edge_grad, const at::Tensor& edge_vec, const at::Tensor& rowptr,
                          const at::Tensor& nb_order, const at::Tensor& nb_start, const char* op);

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

// ---- CPU helpers of conv_scatter_h's kernels (fused_edge.cpp) ----------------------------------
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
