// mlffd fused edge ops: CUDA kernels. Schemas, argument checks, CPU kernels and autograd live in
// fused_edge.cpp; the per-element formulas (spherical harmonics and their gradient, envelope,
// Bessel derivative, virial) are kernel_math.h, shared with the CPU kernels.
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
//   edge_geometry(_backward) one thread per edge
//   radial_mlp passes       one thread per (edge, basis function) / (edge, output column) / edge
//   edge_forces_virial      one thread per atom; the total virial is one 3x3 matmul
#include "cuda_utils.cuh"
#include "fused_edge.h"
#include "kernel_math.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

namespace mlffd {
namespace {

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
// edge_geometry
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void edge_geometry_kernel(const T* __restrict__ vec, T* __restrict__ length, T* __restrict__ sh,
                                     int64_t E, int64_t lmax) {
  const int64_t M = (lmax + 1) * (lmax + 1);
  MLFFD_GRID_STRIDE(e, E) {
    const T x = vec[3 * e], y = vec[3 * e + 1], z = vec[3 * e + 2];
    const T r = sqrt(x * x + y * y + z * z);
    length[e] = r;
    const T n = r > T(kNormalizeEps) ? r : T(kNormalizeEps);
    T* o = sh + e * M;
    o[0] = T(1);
    sh_poly<T, T>(lmax, x / n, y / n, z / n, o);
  }
}

template <typename T>
__global__ void edge_geometry_backward_kernel(const T* __restrict__ grad_length, const T* __restrict__ grad_sh,
                                              const T* __restrict__ vec, T* __restrict__ grad, int64_t E,
                                              int64_t lmax) {
  const int64_t M = (lmax + 1) * (lmax + 1);
  MLFFD_GRID_STRIDE(e, E) {
    edge_geometry_grad<T>(lmax, vec[3 * e], vec[3 * e + 1], vec[3 * e + 2], grad_length[e], grad_sh + e * M,
                          grad + 3 * e);
  }
}

std::tuple<at::Tensor, at::Tensor> edge_geometry_cuda(const at::Tensor& vec_, int64_t lmax) {
  check_geometry(vec_, lmax, "mlffd::edge_geometry");
  const DeviceGuard guard(vec_.device());
  at::Tensor vec = vec_.contiguous();
  const int64_t E = vec.size(0), M = (lmax + 1) * (lmax + 1);
  at::Tensor length = at::empty({E}, vec.options());
  at::Tensor sh = at::empty({E, M}, vec.options());
  if (E == 0) return {length, sh};
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "mlffd_edge_geometry_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(E), current_stream(), edge_geometry_kernel<scalar_t>)(
        vec.data_ptr<scalar_t>(), length.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(), E, lmax);
    MLFFD_LAUNCH_CHECK();
  });
  return {length, sh};
}

at::Tensor edge_geometry_backward_cuda(const at::Tensor& grad_length_, const at::Tensor& grad_sh_,
                                       const at::Tensor& vec_, int64_t lmax) {
  const char* op = "mlffd::edge_geometry_backward";
  check_geometry(vec_, lmax, op);
  check_geometry_grads(grad_length_, grad_sh_, vec_, lmax, op);
  const DeviceGuard guard(vec_.device());
  at::Tensor vec = vec_.contiguous(), gl = grad_length_.contiguous(), gs = grad_sh_.contiguous();
  const int64_t E = vec.size(0);
  at::Tensor grad = at::empty({E, 3}, vec.options());
  if (E == 0) return grad;
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "mlffd_edge_geometry_backward_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(E), current_stream(), edge_geometry_backward_kernel<scalar_t>)(
        gl.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>(), vec.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), E,
        lmax);
    MLFFD_LAUNCH_CHECK();
  });
  return grad;
}

// ------------------------------------------------------------------------------------------------
// edge_forces_virial
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void edge_forces_kernel(const T* __restrict__ grad, const T* __restrict__ vec,
                                   const int64_t* __restrict__ rowptr, const int64_t* __restrict__ order,
                                   const int64_t* __restrict__ start, T* __restrict__ forces,
                                   T* __restrict__ atom_virial, int64_t N) {
  MLFFD_GRID_STRIDE(k, N) {
    T f[3] = {0, 0, 0}, a[6] = {0, 0, 0, 0, 0, 0}, w[6];
    for (int64_t e = rowptr[k]; e < rowptr[k + 1]; ++e) {  // k is the centre
      half_edge_virial(vec + 3 * e, grad + 3 * e, w);
      for (int d = 0; d < 3; ++d) f[d] += grad[3 * e + d];
      for (int d = 0; d < 6; ++d) a[d] += w[d];
    }
    for (int64_t q = start[k]; q < start[k + 1]; ++q) {  // k is the neighbour
      const int64_t e = order[q];
      half_edge_virial(vec + 3 * e, grad + 3 * e, w);
      for (int d = 0; d < 3; ++d) f[d] -= grad[3 * e + d];
      for (int d = 0; d < 6; ++d) a[d] += w[d];
    }
    for (int d = 0; d < 3; ++d) forces[3 * k + d] = f[d];
    for (int d = 0; d < 6; ++d) atom_virial[6 * k + d] = a[d];
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_forces_virial_cuda(const at::Tensor& grad_, const at::Tensor& vec_,
                                                                        const at::Tensor& centre_,
                                                                        const at::Tensor& neighbour_, int64_t n_nodes) {
  const char* op = "mlffd::edge_forces_virial";
  check_edge_forces(grad_, vec_, centre_, neighbour_, n_nodes, op);
  const DeviceGuard guard(grad_.device());
  at::Tensor g = grad_.contiguous(), v = vec_.contiguous(), centre = centre_.contiguous(),
             neighbour = neighbour_.contiguous();
  const int64_t N = n_nodes;
  check_edges_generic(centre, neighbour, N, op);
  at::Tensor forces = at::empty({N, 3}, g.options());
  at::Tensor atom_virial = at::empty({N, 6}, g.options());
  at::Tensor virial = at::mm(v.t(), g).neg_();  // sum_e -vec[e] (x) g[e]
  if (N == 0) return {forces, virial, atom_virial};
  at::Tensor rowptr = centre_rowptr(centre, N);
  auto [order, start] = group_by_neighbour(neighbour, N);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "mlffd_edge_forces_virial_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(N), current_stream(), edge_forces_kernel<scalar_t>)(
        g.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), rowptr.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
        start.data_ptr<int64_t>(), forces.data_ptr<scalar_t>(), atom_virial.data_ptr<scalar_t>(), N);
    MLFFD_LAUNCH_CHECK();
  });
  return {forces, virial, atom_virial};
}

// ------------------------------------------------------------------------------------------------
// radial_mlp's elementwise passes (the composite itself is in fused_edge.cpp)
// ------------------------------------------------------------------------------------------------

constexpr int64_t kMaxSplit = 8;  // radial_mlp's n_split is the number of interaction layers

template <typename T>
struct BlockPointers {  // passed by value: the kernel needs no device-side pointer array
  T* p[kMaxSplit];
};

template <typename T>
__global__ void radial_basis_envelope_kernel(const T* __restrict__ length, const T* __restrict__ freq,
                                             T* __restrict__ basis, T* __restrict__ envelope, int64_t E, int64_t B,
                                             T prefactor, Envelope<T> env) {
  MLFFD_GRID_STRIDE(idx, E * B) {
    const int64_t n = idx % B;
    const int64_t e = idx / B;
    const T r = length[e];
    basis[idx] = prefactor * sin(r * freq[n]) / r;
    if (n == 0) envelope[e] = env.value(r);
  }
}

template <typename T>
__global__ void radial_scale_split_kernel(const T* __restrict__ mlp, const T* __restrict__ envelope,
                                          BlockPointers<T> outs, int64_t E, int64_t K, int64_t Kt) {
  MLFFD_GRID_STRIDE(idx, E * K) {
    const int64_t k = idx % K;
    const int64_t e = idx / K;
    outs.p[k / Kt][e * Kt + k % Kt] = mlp[idx] * envelope[e];
  }
}

// Per edge: S[e] = sum_k grad_out[e, k] mlp[e, k], denv[e] = u'(r), dbasis[e, :] = d basis / dr.
template <typename T>
__global__ void radial_backward_edge_kernel(BlockPointers<const T> grads, const T* __restrict__ length,
                                            const T* __restrict__ freq, const T* __restrict__ mlp,
                                            T* __restrict__ S, T* __restrict__ dbasis, T* __restrict__ denv,
                                            int64_t E, int64_t B, int64_t K, int64_t Kt, int64_t n_split,
                                            T prefactor, Envelope<T> env) {
  MLFFD_GRID_STRIDE(e, E) {
    const T r = length[e];
    denv[e] = env.derivative(r);
    T s = T(0);
    for (int64_t t = 0; t < n_split; ++t) {
      if (grads.p[t] == nullptr) continue;
      const T* g = grads.p[t] + e * Kt;
      const T* m = mlp + e * K + t * Kt;
      for (int64_t k = 0; k < Kt; ++k) s += g[k] * m[k];
    }
    S[e] = s;
    for (int64_t n = 0; n < B; ++n) {
      const T fr = r * freq[n];
      dbasis[e * B + n] = bessel_derivative(prefactor, freq[n], r, T(sin(fr)), T(cos(fr)));
    }
  }
}

// G[e, k] = grad_out[e, k] u(r_e) (zero for an undefined block).
template <typename T>
__global__ void radial_backward_scale_kernel(BlockPointers<const T> grads, const T* __restrict__ length,
                                             T* __restrict__ G, int64_t E, int64_t K, int64_t Kt, Envelope<T> env) {
  MLFFD_GRID_STRIDE(idx, E * K) {
    const int64_t k = idx % K;
    const int64_t e = idx / K;
    const T* g = grads.p[k / Kt];
    G[idx] = g == nullptr ? T(0) : g[e * Kt + k % Kt] * env.value(length[e]);
  }
}

}  // namespace

void radial_basis_envelope_cuda(const at::Tensor& length, const at::Tensor& freq, double prefactor, double cutoff,
                                double p, at::Tensor& basis, at::Tensor& envelope) {
  const DeviceGuard guard(length.device());
  const int64_t E = length.size(0), B = freq.size(0);
  if (E == 0) return;
  AT_DISPATCH_FLOATING_TYPES(length.scalar_type(), "mlffd_radial_basis_cuda", [&] {
    MLFFD_LAUNCH(blocks_for(E * B), current_stream(), radial_basis_envelope_kernel<scalar_t>)(
        length.data_ptr<scalar_t>(), freq.data_ptr<scalar_t>(), basis.data_ptr<scalar_t>(),
        envelope.data_ptr<scalar_t>(), E, B, scalar_t(prefactor), Envelope<scalar_t>(cutoff, p));
    MLFFD_LAUNCH_CHECK();
  });
}

void radial_scale_split_cuda(const at::Tensor& mlp, const at::Tensor& envelope, std::vector<at::Tensor>& outs) {
  const int64_t n_split = static_cast<int64_t>(outs.size());
  TORCH_CHECK(n_split <= kMaxSplit, "mlffd::radial_mlp: the CUDA kernels support n_split <= ", kMaxSplit, ", got ",
              n_split);
  const DeviceGuard guard(mlp.device());
  const int64_t E = mlp.size(0), K = mlp.size(1);
  if (E == 0 || K == 0) return;
  AT_DISPATCH_FLOATING_TYPES(mlp.scalar_type(), "mlffd_radial_scale_split_cuda", [&] {
    BlockPointers<scalar_t> ptrs{};
    for (int64_t t = 0; t < n_split; ++t) ptrs.p[t] = outs[t].data_ptr<scalar_t>();
    MLFFD_LAUNCH(blocks_for(E * K), current_stream(), radial_scale_split_kernel<scalar_t>)(
        mlp.data_ptr<scalar_t>(), envelope.data_ptr<scalar_t>(), ptrs, E, K, K / n_split);
    MLFFD_LAUNCH_CHECK();
  });
}

void radial_backward_terms_cuda(const std::vector<at::Tensor>& grads, const at::Tensor& length, const at::Tensor& freq,
                                const at::Tensor& mlp, double prefactor, double cutoff, double p, at::Tensor& G,
                                at::Tensor& S, at::Tensor& dbasis, at::Tensor& denv) {
  const int64_t n_split = static_cast<int64_t>(grads.size());
  TORCH_CHECK(n_split <= kMaxSplit, "mlffd::radial_mlp: the CUDA kernels support n_split <= ", kMaxSplit, ", got ",
              n_split);
  const DeviceGuard guard(length.device());
  const int64_t E = length.size(0), B = freq.size(0), K = mlp.size(1), Kt = K / n_split;
  if (E == 0) return;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(length.scalar_type(), "mlffd_radial_backward_cuda", [&] {
    BlockPointers<const scalar_t> ptrs{};
    for (int64_t t = 0; t < n_split; ++t) ptrs.p[t] = grads[t].defined() ? grads[t].data_ptr<scalar_t>() : nullptr;
    const Envelope<scalar_t> env(cutoff, p);
    MLFFD_LAUNCH(blocks_for(E), stream, radial_backward_edge_kernel<scalar_t>)(
        ptrs, length.data_ptr<scalar_t>(), freq.data_ptr<scalar_t>(), mlp.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(),
        dbasis.data_ptr<scalar_t>(), denv.data_ptr<scalar_t>(), E, B, K, Kt, n_split, scalar_t(prefactor), env);
    MLFFD_LAUNCH_CHECK();
    if (K > 0) {
      MLFFD_LAUNCH(blocks_for(E * K), stream, radial_backward_scale_kernel<scalar_t>)(
          ptrs, length.data_ptr<scalar_t>(), G.data_ptr<scalar_t>(), E, K, Kt, env);
      MLFFD_LAUNCH_CHECK();
    }
  });
}

}  // namespace mlffd

MLFFD_REGISTER_CUDA_KERNELS(m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_cuda);
  m.impl("conv_scatter_h_backward", &mlffd::conv_scatter_h_backward_cuda);
  m.impl("edge_geometry", &mlffd::edge_geometry_cuda);
  m.impl("edge_geometry_backward", &mlffd::edge_geometry_backward_cuda);
  m.impl("edge_forces_virial", &mlffd::edge_forces_virial_cuda);
}
