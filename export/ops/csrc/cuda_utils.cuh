// Launch helpers shared by the mlffd CUDA kernels (conv_scatter_cuda.cu, fused_edge_cuda.cu).
//
// Only c10/cuda headers: ATen/cuda/CUDAContext.h would pull in cuBLAS/cuSPARSE headers, which the
// kernels do not need (and which a compile check without the full toolkit does not have).
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace mlffd {

constexpr int kThreads = 256;

// Blocks for n grid-stride work items (the grid is capped; the loops cover the rest).
inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(b, 1), 65535));
}

// for (i = global thread index; i < n; i += total threads)
#define MLFFD_GRID_STRIDE(i, n)                                                        \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
       i += (int64_t)gridDim.x * blockDim.x)

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

namespace {  // one copy per translation unit

// rowptr[k] = first edge with centre >= k, k = 0..n_nodes (centre already validated: sorted, in range).
__global__ void rowptr_kernel(const int64_t* __restrict__ centre, int64_t E, int64_t n_nodes,
                              int64_t* __restrict__ rowptr) {
  MLFFD_GRID_STRIDE(e, E + 1) {
    const int64_t lo = (e == 0) ? -1 : centre[e - 1];
    const int64_t hi = (e == E) ? n_nodes : centre[e];
    for (int64_t k = lo + 1; k <= hi; ++k) rowptr[k] = e;
  }
}

// CSR row pointers [n_nodes + 1] of the edges grouped by (sorted, validated) centre atom.
inline at::Tensor centre_rowptr(const at::Tensor& centre, int64_t n_nodes) {
  const int64_t E = centre.size(0);
  at::Tensor rowptr = at::empty({n_nodes + 1}, centre.options());
  rowptr_kernel<<<blocks_for(E + 1), kThreads, 0, current_stream()>>>(centre.data_ptr<int64_t>(), E, n_nodes,
                                                                      rowptr.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return rowptr;
}

}  // namespace

}  // namespace mlffd
