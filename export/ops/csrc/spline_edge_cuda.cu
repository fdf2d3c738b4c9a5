// mlffd tabulated-radial ops: CUDA kernels. Schemas, argument checks, CPU kernels and autograd live
// in spline_edge.cpp; the per-element formulas (spherical harmonics and their gradient, radial
// table lookup, its derivative) are kernel_math.h, shared with the CPU kernels.
//
// Checked without a GPU like fused_edge_cuda.cu: compiled by nvcc (export.ops.cuda_check) and run
// on CPU tensors through the host emulation (cuda_utils.cuh, cuda_emulation.cpp).
//
// edge_graph validates the edge list with one host sync per model call; the other kernels trust its
// CSR (no sync) and skip, rather than read, indices outside their range. No atomics: every output
// is written by one thread, sums run in ascending edge order:
//   edge_graph               device CSR (rowptr_kernel) and a stable sort by neighbour (ATen)
//   radial_spline            one thread per (edge, column); backward one thread per edge
//   spline_conv              one thread per (atom, channel), all (lmax+1)^2 components in registers
//   spline_conv_backward     one thread per edge (its centre found in rowptr by bisection), then
//                            grad_h per (atom, channel) over the edges grouped by neighbour
#include "cuda_utils.cuh"
#include "fused_edge.h"
#include "kernel_math.h"
#include "spline_edge.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

namespace mlffd {
namespace {


// First and one-past-last edge of atom i, clamped to [0, E].
MLFFD_HD void edge_range(const int64_t* rowptr, int64_t i, int64_t E, int64_t& begin, int64_t& end) {
  begin = rowptr[i] < 0 ? 0 : (rowptr[i] > E ? E : rowptr[i]);
  end = rowptr[i + 1] < begin ? begin : (rowptr[i + 1] > E ? E : rowptr[i + 1]);
}

// ------------------------------------------------------------------------------------------------
// radial_spline
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void radial_spline_kernel(const T* __restrict__ length, const T* __restrict__ table, T* __restrict__ out,
                                     int64_t E, int64_t K, int n_int, T inv_h) {
  MLFFD_GRID_STRIDE(idx, E * K) {
    const int64_t q = idx % K;
    const int64_t e = idx / K;
    int k;
    T t;
    out[idx] = spline_locate(length[e], inv_h, n_int, k, t) ? spline_value(table + int64_t(k) * 4 * K + q, K, t) : T(0);
  }
}

template <typename T>
__global__ void radial_spline_backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ length,
                                              const T* __restrict__ table, T* __restrict__ grad, int64_t E,
                                              int64_t K, int n_int, T inv_h) {
  MLFFD_GRID_STRIDE(e, E) {
    int k;
    T t;
    T s = T(0);
    if (spline_locate(length[e], inv_h, n_int, k, t)) {
      const T* co = table + int64_t(k) * 4 * K;
      for (int64_t q = 0; q < K; ++q) s += grad_out[e * K + q] * spline_slope(co + q, K, t);
    }
    grad[e] = s * T(inv_h);
  }
}

// ------------------------------------------------------------------------------------------------
// spline_conv
// ------------------------------------------------------------------------------------------------

// out[m, i, c] = sum over the edges of i of R[l(m) C + c](r) h[j, c] Y_m
template <typename T, int L>
__global__ void spline_conv_kernel(const T* __restrict__ vec, const T* __restrict__ h, const T* __restrict__ table,
                                   const int64_t* __restrict__ neighbour, const int64_t* __restrict__ rowptr,
                                   T* __restrict__ out, int64_t N, int64_t E, int64_t C, int n_int, T inv_h) {
  constexpr int M = L * L;
  const int64_t K = L * C;
  MLFFD_GRID_STRIDE(idx, N * C) {
    const int64_t c = idx % C;
    const int64_t i = idx / C;
    T acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = T(0);
    int64_t e0, e1;
    edge_range(rowptr, i, E, e0, e1);
    for (int64_t e = e0; e < e1; ++e) {
      const T x = vec[3 * e], y = vec[3 * e + 1], z = vec[3 * e + 2];
      const T r = sqrt(x * x + y * y + z * z);
      int k;
      T t;
      const int64_t j = neighbour[e];
      if (!spline_locate(r, inv_h, n_int, k, t) || j < 0 || j >= N) continue;
      const T n = r > T(kNormalizeEps) ? r : T(kNormalizeEps);
      T Y[kMaxSh];
      Y[0] = T(1);
      sh_poly<T, T>(L - 1, x / n, y / n, z / n, Y);
      const T hj = h[j * C + c];
      const T* __restrict__ co = table + int64_t(k) * 4 * K + c;
#pragma unroll
      for (int l = 0; l < L; ++l) {
        const T w = spline_value(co + l * C, K, t) * hj;
#pragma unroll
        for (int m = l * l; m < (l + 1) * (l + 1); ++m) acc[m] += w * Y[m];
      }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) out[(m * N + i) * C + c] = acc[m];
  }
}

// The atom whose CSR row holds edge e: the last i with rowptr[i] <= e (bisection).
MLFFD_HD int64_t centre_of(const int64_t* rowptr, int64_t N, int64_t e) {
  int64_t lo = 0, hi = N;  // invariant: rowptr[lo] <= e < rowptr[hi] for a valid CSR
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (rowptr[mid] <= e) lo = mid;
    else hi = mid;
  }
  return lo;
}

// Per edge: grad_vec[e] and gh_edge[e, :] (see spline_edge.cpp for the formulas).
template <typename T, int L>
__global__ void spline_conv_backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ vec,
                                            const T* __restrict__ h, const T* __restrict__ table,
                                            const int64_t* __restrict__ neighbour, const int64_t* __restrict__ rowptr,
                                            T* __restrict__ grad_vec, T* __restrict__ gh_edge, int64_t N, int64_t E,
                                            int64_t C, int n_int, T inv_h) {
  constexpr int M = L * L;
  const int64_t K = L * C;
  MLFFD_GRID_STRIDE(e, E) {
    const T x = vec[3 * e], y = vec[3 * e + 1], z = vec[3 * e + 2];
    Dual<T> d[kMaxSh];
    const T r = sh_with_gradient<T>(L - 1, x, y, z, d);
    int k;
    T t;
    const int64_t j = neighbour[e];
    const int64_t i = centre_of(rowptr, N, e);
    const bool active = N > 0 && spline_locate(r, inv_h, n_int, k, t) && j >= 0 && j < N;
    T g_len = T(0), gY[M];
#pragma unroll
    for (int m = 0; m < M; ++m) gY[m] = T(0);
    for (int64_t c = 0; c < C; ++c) {
      T gh = T(0);
      if (active) {
        const T hj = h[j * C + c];
        const T* __restrict__ co = table + int64_t(k) * 4 * K + c;
#pragma unroll
        for (int l = 0; l < L; ++l) {
          const T rv = spline_value(co + l * C, K, t), rs = spline_slope(co + l * C, K, t);
          T p = T(0);
#pragma unroll
          for (int m = l * l; m < (l + 1) * (l + 1); ++m) {
            const T g = grad_out[(m * N + i) * C + c];
            p += g * d[m].v;
            gY[m] += g * rv * hj;
          }
          g_len += p * hj * rs;
          gh += rv * p;
        }
      }
      if (gh_edge != nullptr) gh_edge[e * C + c] = gh;
    }
    T gx = T(0), gy = T(0), gz = T(0);
#pragma unroll
    for (int m = 1; m < M; ++m) {
      gx += gY[m] * d[m].dx;
      gy += gY[m] * d[m].dy;
      gz += gY[m] * d[m].dz;
    }
    if (active) {
      vec_grad_from_unit(x, y, z, r, g_len * T(inv_h), gx, gy, gz, grad_vec + 3 * e);
    } else {
      grad_vec[3 * e] = grad_vec[3 * e + 1] = grad_vec[3 * e + 2] = T(0);
    }
  }
}

// out[j, c] = sum over the edges of neighbour j (ascending edge order) of per_edge[e, c]
template <typename T>
__global__ void gather_neighbour_kernel(const T* __restrict__ per_edge, const int64_t* __restrict__ order,
                                        const int64_t* __restrict__ start, T* __restrict__ out, int64_t N, int64_t E,
                                        int64_t C) {
  MLFFD_GRID_STRIDE(idx, N * C) {
    const int64_t c = idx % C;
    const int64_t j = idx / C;
    int64_t q0, q1;
    edge_range(start, j, E, q0, q1);
    T acc = T(0);
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t e = order[q];
      if (e >= 0 && e < E) acc += per_edge[e * C + c];
    }
    out[idx] = acc;
  }
}

// ------------------------------------------------------------------------------------------------
// host functions
// ------------------------------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_graph_cuda(const at::Tensor& centre_, const at::Tensor& neighbour_,
                                                               int64_t n_nodes) {
  const char* op = "mlffd::edge_graph";
  check_edge_list(centre_, neighbour_, n_nodes, op);
  const DeviceGuard guard(centre_.device());
  at::Tensor centre = centre_.contiguous(), neighbour = neighbour_.contiguous();
  check_edges_generic(centre, neighbour, n_nodes, op);  // the one host sync of a model call
  at::Tensor rowptr = centre_rowptr(centre, n_nodes);
  auto [order, start] = group_by_neighbour(neighbour, n_nodes);
  return {rowptr, order, start};
}

at::Tensor radial_spline_cuda(const at::Tensor& length_, const at::Tensor& table_, double r_max) {
  check_radial_table(length_, table_, r_max, "mlffd::radial_spline");
  const DeviceGuard guard(length_.device());
  at::Tensor length = length_.contiguous(), table = table_.contiguous();
  const int64_t E = length.size(0), K = table.size(2);
  const int n_int = static_cast<int>(table.size(0));
  at::Tensor out = at::empty({E, K}, length.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(length.scalar_type(), "mlffd_radial_spline_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(E * K), current_stream(), radial_spline_kernel<scalar_t>)(
        length.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), E, K, n_int,
        scalar_t(n_int / r_max));
    MLFFD_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor radial_spline_backward_cuda(const at::Tensor& grad_out_, const at::Tensor& length_, const at::Tensor& table_,
                                       double r_max) {
  const char* op = "mlffd::radial_spline_backward";
  check_radial_table(length_, table_, r_max, op);
  check_radial_grad(grad_out_, length_, table_, op);
  const DeviceGuard guard(length_.device());
  at::Tensor g = grad_out_.contiguous(), length = length_.contiguous(), table = table_.contiguous();
  const int64_t E = length.size(0), K = table.size(2);
  const int n_int = static_cast<int>(table.size(0));
  at::Tensor grad = at::empty({E}, length.options());
  if (E == 0) return grad;
  AT_DISPATCH_FLOATING_TYPES(length.scalar_type(), "mlffd_radial_spline_backward_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(E), current_stream(), radial_spline_backward_kernel<scalar_t>)(
        g.data_ptr<scalar_t>(), length.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), E,
        K, n_int, scalar_t(n_int / r_max));
    MLFFD_LAUNCH_CHECK();
  });
  return grad;
}

at::Tensor spline_conv_cuda(const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
                            const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order,
                            const at::Tensor& nb_start, double r_max, int64_t lmax) {
  const char* op = "mlffd::spline_conv";
  SplineConvArgs a = prepare_spline_conv(vec, h, table, neighbour, rowptr, nb_order, nb_start, r_max, lmax, op);
  const DeviceGuard guard(a.vec.device());
  at::Tensor out = at::empty({a.L * a.L, a.N, a.C}, a.vec.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.vec.scalar_type(), "mlffd_spline_conv_cuda", [&] {
    with_degree_count(lmax, op, [&](auto degrees) {
      constexpr int LL = decltype(degrees)::value;
      MLFFD_LAUNCH(blocks_for(a.N * a.C), current_stream(), spline_conv_kernel<scalar_t, LL>)(
          a.vec.data_ptr<scalar_t>(), a.h.data_ptr<scalar_t>(), a.table.data_ptr<scalar_t>(),
          a.neighbour.data_ptr<int64_t>(), a.rowptr.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), a.N, a.E, a.C,
          int(a.n_int), scalar_t(a.n_int / a.r_max));
      MLFFD_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> spline_conv_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
    const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order, const at::Tensor& nb_start,
    double r_max, int64_t lmax, bool need_h) {
  const char* op = "mlffd::spline_conv_backward";
  SplineConvArgs a = prepare_spline_conv(vec, h, table, neighbour, rowptr, nb_order, nb_start, r_max, lmax, op);
  check_spline_conv_grad(grad_out, a, op);
  const DeviceGuard guard(a.vec.device());
  at::Tensor g = grad_out.contiguous();
  at::Tensor grad_vec = at::zeros({a.E, 3}, a.vec.options());
  at::Tensor grad_h = need_h ? at::zeros({a.N, a.C}, a.vec.options()) : at::empty({0}, a.vec.options());
  if (a.E == 0 || a.C == 0) return {grad_vec, grad_h};
  at::Tensor gh_edge = need_h ? at::empty({a.E, a.C}, a.vec.options()) : at::Tensor();
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(a.vec.scalar_type(), "mlffd_spline_conv_backward_cuda", [&] {
    with_degree_count(lmax, op, [&](auto degrees) {
      constexpr int LL = decltype(degrees)::value;
      MLFFD_LAUNCH(blocks_for(a.E), stream, spline_conv_backward_kernel<scalar_t, LL>)(
          g.data_ptr<scalar_t>(), a.vec.data_ptr<scalar_t>(), a.h.data_ptr<scalar_t>(), a.table.data_ptr<scalar_t>(),
          a.neighbour.data_ptr<int64_t>(), a.rowptr.data_ptr<int64_t>(), grad_vec.data_ptr<scalar_t>(),
          need_h ? gh_edge.data_ptr<scalar_t>() : nullptr, a.N, a.E, a.C, int(a.n_int), scalar_t(a.n_int / a.r_max));
      MLFFD_LAUNCH_CHECK();
    });
    if (need_h) {
      MLFFD_LAUNCH(blocks_for(a.N * a.C), stream, gather_neighbour_kernel<scalar_t>)(
          gh_edge.data_ptr<scalar_t>(), a.nb_order.data_ptr<int64_t>(), a.nb_start.data_ptr<int64_t>(),
          grad_h.data_ptr<scalar_t>(), a.N, a.E, a.C);
      MLFFD_LAUNCH_CHECK();
    }
  });
  return {grad_vec, grad_h};
}

}  // namespace
}  // namespace mlffd

MLFFD_REGISTER_CUDA_KERNELS(m) {
  m.impl("edge_graph", &mlffd::edge_graph_cuda);
  m.impl("radial_spline", &mlffd::radial_spline_cuda);
  m.impl("radial_spline_backward", &mlffd::radial_spline_backward_cuda);
  m.impl("spline_conv", &mlffd::spline_conv_cuda);
  m.impl("spline_conv_backward", &mlffd::spline_conv_backward_cuda);
}
