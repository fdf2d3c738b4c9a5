// mlffd::conv_scatter CUDA kernels (forward and backward). See conv_scatter.h.
//
// Checked without a GPU twice over (tests/test_ops.py): nvcc compiles this file against the torch
// headers (export.ops.cuda_check), and its kernels run on CPU tensors through the host emulation in
// cuda_utils.cuh (cuda_emulation.cpp). On a GPU: benchmarks/gpu_check.sh.
//
// All kernels are race-free and deterministic (no atomics):
//   forward        one thread per output element (i, c, m), looping over atom i's edges (CSR rowptr)
//   grad_weights   one thread per (e, l, c)
//   grad_sh        one thread per (e, m)
#include "conv_scatter.h"
#include "cuda_utils.cuh"
#include "kernel_math.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

namespace mlffd {
namespace {

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ w, const scalar_t* __restrict__ sh,
                               const int64_t* __restrict__ rowptr, scalar_t* __restrict__ out, int64_t n_nodes,
                               int64_t C, int64_t L) {
  const int64_t M = L * L;
  const int64_t total = n_nodes * C * M;
  MLFFD_GRID_STRIDE(idx, total) {
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
  MLFFD_GRID_STRIDE(idx, total) {
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
  MLFFD_GRID_STRIDE(idx, total) {
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
  const DeviceGuard device_guard(weights.device());
  const int64_t C = weights.size(2);
  const int64_t L = lmax + 1;
  at::Tensor w = weights.contiguous();
  at::Tensor s = sh.contiguous();
  at::Tensor ctr = centre.contiguous();
  at::Tensor out = at::empty({n_nodes, C, L * L}, w.options());
  if (out.numel() == 0) return out;
  at::Tensor rowptr = centre_rowptr(ctr, n_nodes);
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "mlffd_conv_scatter_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(out.numel()), stream, forward_kernel<scalar_t>)(
        w.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), rowptr.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
        n_nodes, C, L);
    MLFFD_LAUNCH_CHECK();
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
  const DeviceGuard device_guard(weights.device());
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
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "mlffd_conv_scatter_backward_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(gw.numel()), stream, grad_weights_kernel<scalar_t>)(
        g.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), ctr.data_ptr<int64_t>(), gw.data_ptr<scalar_t>(), E, C, L);
    MLFFD_LAUNCH_CHECK();
    MLFFD_LAUNCH(blocks_for(gsh.numel()), stream, grad_sh_kernel<scalar_t>)(
        g.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), ctr.data_ptr<int64_t>(), gsh.data_ptr<scalar_t>(), E, C, L);
    MLFFD_LAUNCH_CHECK();
  });
  return {gw, gsh};
}

}  // namespace
}  // namespace mlffd

MLFFD_REGISTER_CUDA_KERNELS(m) {
  m.impl("conv_scatter", &mlffd::conv_scatter_cuda);
  m.impl("conv_scatter_backward", &mlffd::conv_scatter_backward_cuda);
}
