// mlffd fused edge ops: CUDA kernels. Schemas, argument checks, CPU kernels and autograd live in
// fused_edge.cpp; the per-element formula of the virial is kernel_math.h, shared with the CPU kernels.
//
// Checked without a GPU twice over (tests/test_ops.py): nvcc compiles this file against the torch
// headers (export.ops.cuda_check), and its kernels run on CPU tensors through the host emulation in
// cuda_utils.cuh (cuda_emulation.cpp). On a GPU: benchmarks/gpu_check.sh.
//
// No atomics anywhere: every output element is written by one thread, and sums over edges run in
// ascending edge order, so results are deterministic (as on the CPU):
//   conv_scatter_h          one thread per (atom, channel), all (lmax+1)^2 components in registers
//   conv_scatter_h_backward one thread per (edge, channel) and per (edge, m); grad_h per (atom, channel)
//                           over the edges grouped by neighbour
//   edge_forces_virial      one thread per atom over the CSR from mlffd::edge_graph; the total
//                           virial is one 3x3 matmul
#include "cuda_utils.cuh"
#include "fused_edge.h"
#include "kernel_math.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

namespace mlffd {
namespace {


// ------------------------------------------------------------------------------------------------
// conv_scatter_h
// ------------------------------------------------------------------------------------------------

template <typename T, int L>
__global__ void conv_h_forward_kernel(const T* __restrict__ radial, const T* __restrict__ h,
                                      const T* __restrict__ sh, const int64_t* __restrict__ neighbour,
                                      const int64_t* __restrict__ rowptr, T* __restrict__ out, int64_t N, int64_t C) {
  constexpr int M = L * L;
  MLFFD_GRID_STRIDE(idx, N * C) {
    const int64_t c = idx % C;
    const int64_t i = idx / C;
    T acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = T(0);
    for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
      const T hj = h[neighbour[e] * C + c];
      const T* __restrict__ re = radial + e * L * C + c;
      const T* __restrict__ se = sh + e * M;
#pragma unroll
      for (int l = 0; l < L; ++l) {
        const T w = re[l * C] * hj;
#pragma unroll
        for (int m = l * l; m < (l + 1) * (l + 1); ++m) acc[m] += w * se[m];
      }
    }
    T* __restrict__ o = out + idx * M;  // out[i, c, :]
#pragma unroll
    for (int m = 0; m < M; ++m) o[m] = acc[m];
  }
}

// P[l] = sum_{m in l} g[i,c,m] sh[e,m];  grad_radial[e,l,c] = h[j,c] P[l];  gh_edge[e,c] = sum_l radial[e,l,c] P[l]
template <typename T, int L>
__global__ void conv_h_backward_edge_kernel(const T* __restrict__ gout, const T* __restrict__ radial,
                                            const T* __restrict__ h, const T* __restrict__ sh,
                                            const int64_t* __restrict__ centre, const int64_t* __restrict__ neighbour,
                                            T* __restrict__ grad_radial, T* __restrict__ gh_edge, int64_t E,
                                            int64_t C) {
  constexpr int M = L * L;
  MLFFD_GRID_STRIDE(idx, E * C) {
    const int64_t c = idx % C;
    const int64_t e = idx / C;
    const T* __restrict__ g = gout + (centre[e] * C + c) * M;
    const T* __restrict__ se = sh + e * M;
    const T hj = h[neighbour[e] * C + c];
    T gh = T(0);
#pragma unroll
    for (int l = 0; l < L; ++l) {
      T p = T(0);
#pragma unroll
      for (int m = l * l; m < (l + 1) * (l + 1); ++m) p += g[m] * se[m];
      grad_radial[(e * L + l) * C + c] = p * hj;
      gh += radial[(e * L + l) * C + c] * p;
    }
    if (gh_edge != nullptr) gh_edge[e * C + c] = gh;
  }
}

// grad_sh[e,m] = sum_c g[i,c,m] (radial[e,l(m),c] h[j,c])
template <typename T>
__global__ void conv_h_backward_sh_kernel(const T* __restrict__ gout, const T* __restrict__ radial,
                                          const T* __restrict__ h, const int64_t* __restrict__ centre,
                                          const int64_t* __restrict__ neighbour, T* __restrict__ grad_sh, int64_t E,
                                          int64_t C, int64_t L) {
  const int64_t M = L * L;
  MLFFD_GRID_STRIDE(idx, E * M) {
    const int64_t m = idx % M;
    const int64_t e = idx / M;
    const T* __restrict__ g = gout + centre[e] * C * M + m;
    const T* __restrict__ rl = radial + (e * L + degree_of(m)) * C;
    const T* __restrict__ hj = h + neighbour[e] * C;
    T dot = T(0);
    for (int64_t c = 0; c < C; ++c) dot += g[c * M] * (rl[c] * hj[c]);
    grad_sh[idx] = dot;
  }
}

// out[j, c] = sum over the edges of neighbour j (ascending edge order) of per_edge[e, c]
template <typename T>
__global__ void gather_by_neighbour_kernel(const T* __restrict__ per_edge, const int64_t* __restrict__ order,
                                           const int64_t* __restrict__ start, T* __restrict__ out, int64_t N,
                                           int64_t C) {
  MLFFD_GRID_STRIDE(idx, N * C) {
    const int64_t c = idx % C;
    const int64_t j = idx / C;
    T acc = T(0);
    for (int64_t q = start[j]; q < start[j + 1]; ++q) acc += per_edge[order[q] * C + c];
    out[idx] = acc;
  }
}

at::Tensor conv_scatter_h_cuda(const at::Tensor& radial_, const at::Tensor& h_, const at::Tensor& sh_,
                               const at::Tensor& centre_, const at::Tensor& neighbour_, int64_t lmax) {
  const char* op = "mlffd::conv_scatter_h";
  check_conv_h(radial_, h_, sh_, centre_, neighbour_, lmax, op);
  const DeviceGuard guard(radial_.device());
  const int64_t N = h_.size(0), C = radial_.size(2), L = lmax + 1;
  at::Tensor radial = radial_.contiguous(), h = h_.contiguous(), sh = sh_.contiguous();
  at::Tensor centre = centre_.contiguous(), neighbour = neighbour_.contiguous();
  check_edges_generic(centre, neighbour, N, op);
  at::Tensor out = at::empty({N, C, L * L}, radial.options());
  if (out.numel() == 0) return out;
  at::Tensor rowptr = centre_rowptr(centre, N);
  AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "mlffd_conv_scatter_h_cuda", [&] {
    with_degree_count(lmax, op, [&](auto degrees) {
      constexpr int LL = decltype(degrees)::value;
      MLFFD_LAUNCH(blocks_for(N * C), current_stream(), conv_h_forward_kernel<scalar_t, LL>)(
          radial.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(), neighbour.data_ptr<int64_t>(),
          rowptr.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), N, C);
      MLFFD_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_scatter_h_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh,
    const at::Tensor& centre, const at::Tensor& neighbour, int64_t lmax, bool need_h) {
  const char* op = "mlffd::conv_scatter_h_backward";
  ConvHBackward b = prepare_conv_h_backward(grad_out, radial, h, sh, centre, neighbour, lmax, need_h, op);
  const DeviceGuard guard(b.radial.device());
  check_edges_generic(b.centre, b.neighbour, b.N, op);
  if (b.trivial) return {b.grad_radial, b.grad_h, b.grad_sh};
  const int64_t E = b.E, N = b.N, C = b.C, L = b.L;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(b.radial.scalar_type(), "mlffd_conv_scatter_h_backward_cuda", [&] {
    const scalar_t* g = b.grad_out.data_ptr<scalar_t>();
    const scalar_t* r = b.radial.data_ptr<scalar_t>();
    const scalar_t* hp = b.h.data_ptr<scalar_t>();
    const int64_t* ctr = b.centre.data_ptr<int64_t>();
    const int64_t* nbr = b.neighbour.data_ptr<int64_t>();
    with_degree_count(lmax, op, [&](auto degrees) {
      constexpr int LL = decltype(degrees)::value;
      MLFFD_LAUNCH(blocks_for(E * C), stream, conv_h_backward_edge_kernel<scalar_t, LL>)(
          g, r, hp, b.sh.data_ptr<scalar_t>(), ctr, nbr, b.grad_radial.data_ptr<scalar_t>(),
          need_h ? b.gh_edge.data_ptr<scalar_t>() : nullptr, E, C);
      MLFFD_LAUNCH_CHECK();
    });
    MLFFD_LAUNCH(blocks_for(E * L * L), stream, conv_h_backward_sh_kernel<scalar_t>)(
        g, r, hp, ctr, nbr, b.grad_sh.data_ptr<scalar_t>(), E, C, L);
    MLFFD_LAUNCH_CHECK();
    if (need_h) {
      auto [order, start] = group_by_neighbour(b.neighbour, N);
      MLFFD_LAUNCH(blocks_for(N * C), stream, gather_by_neighbour_kernel<scalar_t>)(
          b.gh_edge.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), start.data_ptr<int64_t>(),
          b.grad_h.data_ptr<scalar_t>(), N, C);
      MLFFD_LAUNCH_CHECK();
    }
  });
  return {b.grad_radial, b.grad_h, b.grad_sh};
}

// ------------------------------------------------------------------------------------------------
// edge_forces_virial
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void edge_forces_kernel(const T* __restrict__ grad, const T* __restrict__ vec,
                                   const int64_t* __restrict__ rowptr, const int64_t* __restrict__ order,
                                   const int64_t* __restrict__ start, T* __restrict__ forces,
                                   T* __restrict__ atom_virial, int64_t E, int64_t N) {
  // The CSR comes from mlffd::edge_graph (validated there, once per call): no host sync here, and
  // indices outside [0, E) are skipped rather than read.
  MLFFD_GRID_STRIDE(k, N) {
    T f[3] = {0, 0, 0}, a[6] = {0, 0, 0, 0, 0, 0}, w[6];
    const int64_t e1 = rowptr[k + 1] < E ? rowptr[k + 1] : E;
    for (int64_t e = rowptr[k] > 0 ? rowptr[k] : 0; e < e1; ++e) {  // k is the centre
      half_edge_virial(vec + 3 * e, grad + 3 * e, w);
      for (int d = 0; d < 3; ++d) f[d] += grad[3 * e + d];
      for (int d = 0; d < 6; ++d) a[d] += w[d];
    }
    const int64_t q1 = start[k + 1] < E ? start[k + 1] : E;
    for (int64_t q = start[k] > 0 ? start[k] : 0; q < q1; ++q) {  // k is the neighbour
      const int64_t e = order[q];
      if (e < 0 || e >= E) continue;
      half_edge_virial(vec + 3 * e, grad + 3 * e, w);
      for (int d = 0; d < 3; ++d) f[d] -= grad[3 * e + d];
      for (int d = 0; d < 6; ++d) a[d] += w[d];
    }
    for (int d = 0; d < 3; ++d) forces[3 * k + d] = f[d];
    for (int d = 0; d < 6; ++d) atom_virial[6 * k + d] = a[d];
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_forces_virial_cuda(const at::Tensor& grad_, const at::Tensor& vec_,
                                                                        const at::Tensor& rowptr_,
                                                                        const at::Tensor& nb_order_,
                                                                        const at::Tensor& nb_start_) {
  const char* op = "mlffd::edge_forces_virial";
  const int64_t N = check_edge_forces(grad_, vec_, rowptr_, nb_order_, nb_start_, op);
  const DeviceGuard guard(grad_.device());
  at::Tensor g = grad_.contiguous(), v = vec_.contiguous(), rowptr = rowptr_.contiguous(),
             order = nb_order_.contiguous(), start = nb_start_.contiguous();
  at::Tensor forces = at::empty({N, 3}, g.options());
  at::Tensor atom_virial = at::empty({N, 6}, g.options());
  at::Tensor virial = at::mm(v.t(), g).neg_();  // sum_e -vec[e] (x) g[e]
  if (N == 0) return {forces, virial, atom_virial};
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "mlffd_edge_forces_virial_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(N), current_stream(), edge_forces_kernel<scalar_t>)(
        g.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), rowptr.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
        start.data_ptr<int64_t>(), forces.data_ptr<scalar_t>(), atom_virial.data_ptr<scalar_t>(), g.size(0), N);
    MLFFD_LAUNCH_CHECK();
  });
  return {forces, virial, atom_virial};
}

}  // namespace
}  // namespace mlffd

MLFFD_REGISTER_CUDA_KERNELS(m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_cuda);
  m.impl("conv_scatter_h_backward", &mlffd::conv_scatter_h_backward_cuda);
  m.impl("edge_forces_virial", &mlffd::edge_forces_virial_cuda);
}
