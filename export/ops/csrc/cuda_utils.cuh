// Launch helpers shared by the mlffd CUDA kernels (fused_edge_cuda.cu, spline_edge_cuda.cu), and
// a host emulation of them.
//
// Real build (nvcc): only c10/cuda headers, since ATen/cuda/CUDAContext.h would pull in cuBLAS and
// cuSPARSE headers that the kernels do not need (and a compile check without the full toolkit
// lacks).
//
// MLFFD_CUDA_EMULATION (cuda_emulation.cpp, tests only): the same .cu files compile as host C++
// and their kernels run on CPU tensors, launched as one block of one thread, so every grid-stride
// loop visits all of its work items in order. That checks the kernels' indexing and host logic on a
// machine without a GPU; it cannot check what only a GPU does (memory spaces, launch limits, races
// between threads, which these kernels avoid by writing every output from one thread).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernel_math.h"

#ifdef MLFFD_CUDA_EMULATION

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
namespace mlffd {
struct EmulatedDim3 {
  unsigned x;
};
constexpr EmulatedDim3 blockIdx{0}, threadIdx{0}, blockDim{1}, gridDim{1};
using cudaStream_t = void*;
inline cudaStream_t current_stream() { return nullptr; }
struct DeviceGuard {
  explicit DeviceGuard(const c10::Device&) {}
};
using std::cos;
using std::sin;
using std::sqrt;
}  // namespace mlffd
// kernel(args...) runs the whole grid on the calling thread
#define MLFFD_LAUNCH(blocks, stream, ...) __VA_ARGS__
#define MLFFD_LAUNCH_CHECK() ((void)0)
#define MLFFD_REGISTER_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(mlffd_cuda_emulation, CPU, m)

#else

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace mlffd {
using DeviceGuard = c10::cuda::CUDAGuard;
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
}  // namespace mlffd
// MLFFD_LAUNCH(blocks, stream, kernel<T, L>)(args...): the kernel comes last because template
// arguments contain commas.
#define MLFFD_LAUNCH(blocks, stream, ...) __VA_ARGS__<<<(blocks), ::mlffd::kThreads, 0, (stream)>>>
#define MLFFD_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()
#define MLFFD_REGISTER_CUDA_KERNELS(m) TORCH_LIBRARY_IMPL(mlffd, CUDA, m)

#endif

namespace mlffd {

constexpr int kThreads = 256;

// Blocks for n grid-stride work items (the grid is capped; the loops cover the rest).
inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(b, 1), 65535));
}

// for (i = global thread index; i < n; i += total threads)
#define MLFFD_GRID_STRIDE(i, n)                                                \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
       i += (int64_t)gridDim.x * blockDim.x)

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
  MLFFD_LAUNCH(blocks_for(E + 1), current_stream(), rowptr_kernel)(centre.data_ptr<int64_t>(), E, n_nodes,
                                                                    rowptr.data_ptr<int64_t>());
  MLFFD_LAUNCH_CHECK();
  return rowptr;
}

// Calls f(std::integral_constant<int, L>) for L = lmax + 1 in 1..kMaxLmax+1, so that the
// per-component loops unroll and their accumulators stay in registers.
template <typename F>
void with_degree_count(int64_t lmax, const char* op, F&& f) {
  switch (lmax) {
    case 0: f(std::integral_constant<int, 1>{}); break;
    case 1: f(std::integral_constant<int, 2>{}); break;
    case 2: f(std::integral_constant<int, 3>{}); break;
    case 3: f(std::integral_constant<int, 4>{}); break;
    default: TORCH_CHECK(false, op, ": the CUDA kernels support lmax <= ", kMaxLmax, ", got ", lmax);
  }
}

}  // namespace
}  // namespace mlffd
