// mlffd::conv_scatter CUDA kernels (forward and backward). See conv_scatter.h.
//
// STATUS: written without a CUDA toolchain or GPU; NOT compiled and NOT tested yet. Build it on
// a machine with CUDA torch (export.ops.load_library() adds this file when
// torch.cuda.is_available() and CUDA_HOME is set) and run tests/test_ops.py there.
//
// All kernels are race-free and deterministic (no atomics):
//   forward        one thread per output element (i, c, m), looping over atom i's edges (CSR rowptr)
//   grad_weights   one thread per (e, l, c)
//   grad_sh        one thread per (e, m)
#include "conv_scatter.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace mlffd {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(b, 1), 65535));  // grid-stride loops cover the rest
}

__device__ __forceinline__ int64_t degree_of(int64_t m) {
  int64_t l = 0;
  while ((l + 1) * (l + 1) <= m) ++l;
  return l;
}

// rowptr[k] = first edge with centre >= k, k = 0..n_nodes (centre already validated).
__global__ void rowptr_kernel(const int64_t* __restrict__ centre, int64_t E, int64_t n_nodes,
                              int64_t* __restrict__ rowptr) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e <= E; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t lo = (e == 0) ? -1 : centre[e - 1];
    const int64_t hi = (e == E) ? n_nodes : centre[e];
    for (int64_t k = lo + 1; k <= hi; ++k) rowptr[k] = e;
  }
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ w, const scalar_t* __restrict__ sh,
                               const int64_t* __restrict__ rowptr, scalar_t* __restrict__ out, int64_t n_nodes,
                               int64_t C, int64_t L) {
  const int64_t M = L * L;
  const int64_t total = n_nodes * C * M;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = idx % M;
    const int64_t c = (idx / M) % C;
    const int64_t i = idx / (M * C);
    const int64_t l = degree_of(m);
    scalar_t acc = 0;
    for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) acc += w[(e * L + l) * C + c] * sh[e * M + m];
    out[idx] = acc;
  }
}

template <typename scalar_t>
__global__ void grad_weights_kernel(const scalar_t* __restrict__ gout, const scalar_t* __restrict__ sh,
                                    const int64_t* __restrict__ centre, scalar_t* __restrict__ gw, int64_t E,
                                    int64_t C, int64_t L) {
  const int64_t M = L * L;
  const int64_t total = E * L * C;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t c = idx % C;
    const int64_t l = (idx / C) % L;
    const int64_t e = idx / (C * L);
    const scalar_t* g = gout + (centre[e] * C + c) * M;
    scalar_t acc = 0;
    for (int64_t m = l * l; m < (l + 1) * (l + 1); ++m) acc += g[m] * sh[e * M + m];
    gw[idx] = acc;
  }
}

template <typename scalar_t>
__global__ void grad_sh_kernel(const scalar_t* __restrict__ gout, const scalar_t* __restrict__ w,
                               const int64_t* __restrict__ centre, scalar_t* __restrict__ gsh, int64_t E, int64_t C,
                               int64_t L) {
  const int64_t M = L * L;
  const int64_t total = E * M;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = idx % M;
    const int64_t e = idx / M;
    const int64_t l = degree_of(m);
    const scalar_t* g = gout + centre[e] * C * M + m;
    const scalar_t* wl = w + (e * L + l) * C;
    scalar_t acc = 0;
    for (int64_t c = 0; c < C; ++c) acc += g[c * M] * wl[c];
    gsh[idx] = acc;
  }
}

at::Tensor conv_scatter_cuda(const at::Tensor& weights, const at::Tensor& sh, const at::Tensor& centre,
                             int64_t n_nodes, int64_t lmax) {
  const char* op = "mlffd::conv_scatter";
  const int64_t E = check_conv_scatter_args(weights, sh, centre, n_nodes, lmax, op);
  check_centre_sorted_generic(centre, n_nodes, op);
  const c10::cuda::CUDAGuard device_guard(weights.device());
  const int64_t C = weights.size(2);
  const int64_t L = lmax + 1;
  at::Tensor w = weights.contiguous();
  at::Tensor s = sh.contiguous();
  at::Tensor ctr = centre.contiguous();
  at::Tensor out = at::empty({n_nodes, C, L * L}, w.options());
  if (out.numel() == 0) return out;
  at::Tensor rowptr = at::empty({n_nodes + 1}, ctr.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  rowptr_kernel<<<blocks_for(E + 1), kThreads, 0, stream>>>(ctr.data_ptr<int64_t>(), E, n_nodes,
                                                             rowptr.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "mlffd_conv_scatter_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream>>>(
        w.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), rowptr.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
        n_nodes, C, L);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> conv_scatter_backward_cuda(const at::Tensor& grad_out, const at::Tensor& weights,
                                                              const at::Tensor& sh, const at::Tensor& centre,
                                                              int64_t lmax) {
  const char* op = "mlffd::conv_scatter_backward";
  const int64_t n_nodes = grad_out.dim() > 0 ? grad_out.size(0) : 0;
  const int64_t E = check_conv_scatter_args(weights, sh, centre, n_nodes, lmax, op);
  check_grad_out(grad_out, weights, lmax, op);
  check_centre_sorted_generic(centre, n_nodes, op);
  const c10::cuda::CUDAGuard device_guard(weights.device());
  const int64_t C = weights.size(2);
  const int64_t L = lmax + 1;
  at::Tensor g = grad_out.contiguous();
  at::Tensor w = weights.contiguous();
  at::Tensor s = sh.contiguous();
  at::Tensor ctr = centre.contiguous();
  at::Tensor gw = at::empty({E, L, C}, w.options());
  at::Tensor gsh = at::empty({E, L * L}, w.options());
  if (E == 0) return {gw, gsh};
  if (C == 0) {
    gw.zero_();
    gsh.zero_();
    return {gw, gsh};
  }
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "mlffd_conv_scatter_backward_cuda", [&] {
    grad_weights_kernel<scalar_t><<<blocks_for(gw.numel()), kThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), ctr.data_ptr<int64_t>(), gw.data_ptr<scalar_t>(), E, C, L);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_sh_kernel<scalar_t><<<blocks_for(gsh.numel()), kThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), ctr.data_ptr<int64_t>(), gsh.data_ptr<scalar_t>(), E, C, L);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gw, gsh};
}

}  // namespace
}  // namespace mlffd

TORCH_LIBRARY_IMPL(mlffd, CUDA, m) {
  m.impl("conv_scatter", &mlffd::conv_scatter_cuda);
  m.impl("conv_scatter_backward", &mlffd::conv_scatter_backward_cuda);
}
