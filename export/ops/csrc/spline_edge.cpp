// mlffd tabulated-radial ops (export only, first-order gradients): schemas, CPU kernels, C++ autograd.
//
//   mlffd::edge_graph(Tensor centre, Tensor neighbour, int n_nodes) -> (Tensor rowptr, Tensor nb_order, Tensor nb_start)
//     validates the edge list once per model call (centre sorted, both ends in [0, n_nodes)) and
//     returns its CSR by centre (rowptr [n_nodes+1]) and its grouping by neighbour (nb_order [E]:
//     edges sorted by neighbour, stable; nb_start [n_nodes+1]); the ops below take these instead of
//     rebuilding them.
//   mlffd::radial_spline(Tensor length, Tensor table, float r_max) -> Tensor
//     out[e, k] = R_k(length[e]) from a radial table [n_int, 4, K] (kernel_math.h); gradient
//     w.r.t. length.
//   mlffd::spline_conv(Tensor vec, Tensor h, Tensor table, Tensor neighbour, Tensor rowptr,
//                      Tensor nb_order, Tensor nb_start, float r_max, int lmax) -> Tensor
//     out[m, i, c] = sum_{e: centre[e] = i} R[l(m) C + c](|vec[e]|) h[neighbour[e], c] Y_m(vec[e])
//     (one pass per edge: e3nn spherical harmonics, the radial table, the product with the
//     neighbour state and the sum per centre; output layout [M, N, C]); gradients w.r.t. vec and h.
//     The backward recomputes the per-edge terms from the table instead of storing [E, K] tensors.
//
// Their backward ops (radial_spline_backward, spline_conv_backward) have no Autograd kernel:
// double backward raises. CUDA kernels: spline_edge_cuda.cu; formulas: kernel_math.h.
// This file also holds the library's TORCH_LIBRARY(mlffd) block and mlffd::build_info() -> str.
// Compile the .cpp files with OpenMP (-fopenmp): without it at::parallel_for runs serially.
#include "spline_edge.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "kernel_math.h"
#include "op_schemas.h"
#include "op_support.h"
#include "sh_monomials.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef _OPENMP
#warning "mlffd ops compiled without OpenMP (-fopenmp): at::parallel_for will run on one thread"
#endif

// Runtime choice between generic and AVX2 + FMA builds of the hot kernels: GCC on x86-64 (clang
// and other compilers get the generic kernels only).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MLFFD_X86_DISPATCH 1
#include <immintrin.h>  // the AVX2 build's horizontal sums (spline_conv_cpu.h, MLFFD_AVX2_KERNELS)
#else
#define MLFFD_X86_DISPATCH 0
#endif

namespace mlffd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;


// ------------------------------------------------------------------------------------------------
// edge_graph
// ------------------------------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_graph_cpu(const at::Tensor& centre_, const at::Tensor& neighbour_,
                                                              int64_t n_nodes) {
  const char* op = "mlffd::edge_graph";
  check_edge_list(centre_, neighbour_, n_nodes, op);
  at::Tensor centre = centre_.contiguous(), neighbour = neighbour_.contiguous();
  const int64_t E = centre.size(0), N = n_nodes;
  at::Tensor rowptr = at::empty({N + 1}, centre.options());
  at::Tensor nb_start = at::zeros({N + 1}, centre.options());
  at::Tensor nb_order = at::empty({E}, centre.options());
  const int64_t* c = centre.data_ptr<int64_t>();
  const int64_t* nb = neighbour.data_ptr<int64_t>();
  int64_t* rp = rowptr.data_ptr<int64_t>();
  int64_t* start = nb_start.data_ptr<int64_t>();
  int64_t* order = nb_order.data_ptr<int64_t>();
  int64_t prev = -1;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t i = c[e], j = nb[e];
    TORCH_CHECK(i >= 0 && i < N, op, ": centre[", e, "] = ", i, " is outside [0, n_nodes=", N, ")");
    TORCH_CHECK(i >= prev, op, ": centre must be sorted ascending (edges grouped by centre atom), but centre[", e - 1,
                "] = ", prev, " > centre[", e, "] = ", i);
    TORCH_CHECK(j >= 0 && j < N, op, ": neighbour[", e, "] = ", j, " is outside [0, n_nodes=", N, ")");
    for (int64_t k = prev + 1; k <= i; ++k) rp[k] = e;
    prev = i;
    ++start[j + 1];
  }
  for (int64_t k = prev + 1; k <= N; ++k) rp[k] = E;
  for (int64_t j = 0; j < N; ++j) start[j + 1] += start[j];
  std::vector<int64_t> fill(start, start + N);  // counting sort: stable, ascending edge order per neighbour
  for (int64_t e = 0; e < E; ++e) order[fill[nb[e]]++] = e;
  return {rowptr, nb_order, nb_start};
}

// The CSR arrays are trusted to come from edge_graph (their shapes are checked by check_graph);
// the kernels below still refuse an index outside its range rather than read out of bounds.
inline void check_row(const int64_t* rowptr, int64_t i, int64_t E, const char* op) {
  TORCH_CHECK(rowptr[i] >= 0 && rowptr[i] <= rowptr[i + 1] && rowptr[i + 1] <= E, op,
              ": rowptr is not a CSR of the edges (use mlffd::edge_graph)");
}

// out[j, c] = sum over the edges of neighbour j (ascending edge order) of per_edge[e, c]; CC: the
// channel count when it is a compile-time width (as in spline_conv_cpu.h), 0 otherwise.
template <typename scalar_t, int CC>
void gather_by_neighbour(const scalar_t* __restrict__ per_edge, const int64_t* __restrict__ order,
                         const int64_t* __restrict__ start, scalar_t* __restrict__ out, int64_t N, int64_t E,
                         int64_t C_, const char* op) {
  const int64_t C = CC > 0 ? CC : C_;
  at::parallel_for(0, N, grain((E / std::max<int64_t>(N, 1) + 1) * C), [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      check_row(start, j, E, op);
      scalar_t* __restrict__ g = out + j * C;
      for (int64_t c = 0; c < C; ++c) g[c] = scalar_t(0);
      for (int64_t q = start[j]; q < start[j + 1]; ++q) {
        const int64_t e = order[q];
        TORCH_CHECK(e >= 0 && e < E, op, ": nb_order is not a permutation of the edges (use mlffd::edge_graph)");
        const scalar_t* __restrict__ src = per_edge + e * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) g[c] += src[c];
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------
// radial_spline
// ------------------------------------------------------------------------------------------------

at::Tensor radial_spline_cpu(const at::Tensor& length_, const at::Tensor& table_, double r_max) {
  check_radial_table(length_, table_, r_max, "mlffd::radial_spline");
  at::Tensor length = length_.contiguous(), table = table_.contiguous();
  const int64_t E = length.size(0), K = table.size(2);
  const int n_int = static_cast<int>(table.size(0));
  at::Tensor out = at::empty({E, K}, length.options());
  AT_DISPATCH_FLOATING_TYPES(length.scalar_type(), "mlffd_radial_spline", [&] {
    const scalar_t* r = length.data_ptr<scalar_t>();
    const scalar_t* tab = table.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t inv_h = scalar_t(n_int / r_max);
    at::parallel_for(0, E, grain(8 * K), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        scalar_t* __restrict__ oe = o + e * K;
        int k;
        scalar_t t;
        if (!spline_locate(r[e], inv_h, n_int, k, t)) {
          for (int64_t q = 0; q < K; ++q) oe[q] = scalar_t(0);
          continue;
        }
        const scalar_t* __restrict__ co = tab + k * 4 * K;
        for (int64_t q = 0; q < K; ++q) oe[q] = spline_value(co + q, K, t);
      }
    });
  });
  return out;
}

// grad_length[e] = sum_k grad_out[e, k] dR_k/dr(length[e])
template <typename scalar_t>
void radial_spline_backward_impl(const scalar_t* __restrict__ r, const scalar_t* __restrict__ tab,
                                 const scalar_t* __restrict__ gp, scalar_t* __restrict__ out, int64_t E, int64_t K,
                                 int n_int, double r_max) {
  const scalar_t inv_h = scalar_t(n_int / r_max);
  at::parallel_for(0, E, grain(8 * K), [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      int k;
      scalar_t t;
      if (!spline_locate(r[e], inv_h, n_int, k, t)) {
        out[e] = scalar_t(0);
        continue;
      }
      const scalar_t* __restrict__ co = tab + k * 4 * K;
      const scalar_t* __restrict__ ge = gp + e * K;
      scalar_t s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t q = 0; q < K; ++q) s += ge[q] * spline_slope(co + q, K, t);
      out[e] = s * inv_h;
    }
  });
}

at::Tensor radial_spline_backward_cpu(const at::Tensor& grad_out_, const at::Tensor& length_, const at::Tensor& table_,
                                      double r_max) {
  const char* op = "mlffd::radial_spline_backward";
  check_radial_table(length_, table_, r_max, op);
  check_radial_grad(grad_out_, length_, table_, op);
  at::Tensor g = grad_out_.contiguous(), length = length_.contiguous(), table = table_.contiguous();
  const int64_t E = length.size(0), K = table.size(2);
  at::Tensor grad = at::empty({E}, length.options());
  AT_DISPATCH_FLOATING_TYPES(length.scalar_type(), "mlffd_radial_spline_backward", [&] {
    radial_spline_backward_impl<scalar_t>(length.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                          g.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), E, K,
                                          static_cast<int>(table.size(0)), r_max);
  });
  return grad;
}

class RadialSplineFunction : public torch::autograd::Function<RadialSplineFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& length, const at::Tensor& table, double r_max) {
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, double)>("mlffd::radial_spline");
    ctx->save_for_backward({length, table});
    ctx->saved_data["r_max"] = r_max;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(length, table, r_max);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>(
        "mlffd::radial_spline_backward");
    TORCH_CHECK(!at::GradMode::is_enabled(), "mlffd::radial_spline", kFirstOrderOnly);
    auto s = ctx->get_saved_variables();
    at::AutoDispatchBelowADInplaceOrView guard;
    return {op.call(grads[0], s[0], s[1], ctx->saved_data["r_max"].toDouble()), at::Tensor(), at::Tensor()};
  }
};

at::Tensor radial_spline_autograd(const at::Tensor& length, const at::Tensor& table, double r_max) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && table.requires_grad()), "mlffd::radial_spline",
              ": differentiates w.r.t. length only, but the table requires grad (export-only op)");
  return RadialSplineFunction::apply(length, table, r_max);
}

// ------------------------------------------------------------------------------------------------
// spline_conv
// ------------------------------------------------------------------------------------------------

// The kernels, generic and (GCC on x86-64) compiled for AVX2 + FMA; cpu_isa() picks one per process.
namespace isa_generic {
#include "spline_conv_cpu.h"
}  // namespace isa_generic
#if MLFFD_X86_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define MLFFD_AVX2_KERNELS 1
namespace isa_avx2 {
#include "spline_conv_cpu.h"
}  // namespace isa_avx2
#undef MLFFD_AVX2_KERNELS
#pragma GCC pop_options
#endif

bool use_avx2() {
#if MLFFD_X86_DISPATCH
  static const bool yes = [] {
    const char* force = std::getenv("MLFFD_CPU_KERNELS");  // "generic": the portable kernels (tests)
    if (force != nullptr && std::strcmp(force, "generic") == 0) return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
#else
  return false;
#endif
}

// Calls f(L, CC) as integral constants: L = lmax + 1 (prepare_spline_conv checked lmax <= 3), CC =
// the channel count if it is 8, 16 or 32, else 0 (runtime channel loops).
template <typename F>
void with_shape(int64_t lmax, int64_t channels, F&& f) {
  auto with_channels = [&](auto degrees) {
    switch (channels) {
      case 8: f(degrees, std::integral_constant<int, 8>{}); break;
      case 16: f(degrees, std::integral_constant<int, 16>{}); break;
      case 32: f(degrees, std::integral_constant<int, 32>{}); break;
      default: f(degrees, std::integral_constant<int, 0>{}); break;
    }
  };
  switch (lmax) {
    case 0: with_channels(std::integral_constant<int, 1>{}); break;
    case 1: with_channels(std::integral_constant<int, 2>{}); break;
    case 2: with_channels(std::integral_constant<int, 3>{}); break;
    default: with_channels(std::integral_constant<int, 4>{}); break;
  }
}

at::Tensor spline_conv_cpu(const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
                           const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order,
                           const at::Tensor& nb_start, double r_max, int64_t lmax) {
  SplineConvArgs a = prepare_spline_conv(vec, h, table, neighbour, rowptr, nb_order, nb_start, r_max, lmax,
                                         "mlffd::spline_conv");
  at::Tensor out = at::empty({a.L * a.L, a.N, a.C}, a.vec.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.vec.scalar_type(), "mlffd_spline_conv", [&] {
    with_shape(a.L - 1, a.C, [&](auto degrees, auto channels) {
      constexpr int L = decltype(degrees)::value, CC = decltype(channels)::value;
#if MLFFD_X86_DISPATCH
      if (use_avx2()) return isa_avx2::spline_conv_forward_impl<scalar_t, L, CC>(a, out);
#endif
      isa_generic::spline_conv_forward_impl<scalar_t, L, CC>(a, out);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> spline_conv_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
    const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order, const at::Tensor& nb_start,
    double r_max, int64_t lmax, bool need_h) {
  const char* op = "mlffd::spline_conv_backward";
  SplineConvArgs a = prepare_spline_conv(vec, h, table, neighbour, rowptr, nb_order, nb_start, r_max, lmax, op);
  check_spline_conv_grad(grad_out, a, op);
  at::Tensor g = grad_out.contiguous();
  at::Tensor grad_vec = at::zeros({a.E, 3}, a.vec.options());
  at::Tensor grad_h = need_h ? at::zeros({a.N, a.C}, a.vec.options()) : at::empty({0}, a.vec.options());
  if (a.E == 0 || a.C == 0) return {grad_vec, grad_h};
  at::Tensor gh_edge = need_h ? at::empty({a.E, a.C}, a.vec.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.vec.scalar_type(), "mlffd_spline_conv_backward", [&] {
    with_shape(a.L - 1, a.C, [&](auto degrees, auto channels) {
      constexpr int L = decltype(degrees)::value, CC = decltype(channels)::value;
#if MLFFD_X86_DISPATCH
      if (use_avx2())
        isa_avx2::spline_conv_backward_impl<scalar_t, L, CC>(a, g, grad_vec, gh_edge);
      else
#endif
        isa_generic::spline_conv_backward_impl<scalar_t, L, CC>(a, g, grad_vec, gh_edge);
      if (need_h)
        gather_by_neighbour<scalar_t, CC>(gh_edge.data_ptr<scalar_t>(), a.nb_order.data_ptr<int64_t>(),
                                          a.nb_start.data_ptr<int64_t>(), grad_h.data_ptr<scalar_t>(), a.N, a.E, a.C,
                                          op);
    });
  });
  return {grad_vec, grad_h};
}

class SplineConvFunction : public torch::autograd::Function<SplineConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
                            const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order,
                            const at::Tensor& nb_start, double r_max, int64_t lmax) {
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, const at::Tensor&, const at::Tensor&, double, int64_t)>(
        "mlffd::spline_conv");
    ctx->save_for_backward({vec, h, table, neighbour, rowptr, nb_order, nb_start});
    ctx->saved_data["r_max"] = r_max;
    ctx->saved_data["lmax"] = lmax;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(vec, h, table, neighbour, rowptr, nb_order, nb_start, r_max, lmax);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = find_op<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
        const at::Tensor&, const at::Tensor&, const at::Tensor&, double, int64_t, bool)>("mlffd::spline_conv_backward");
    TORCH_CHECK(!at::GradMode::is_enabled(), "mlffd::spline_conv", kFirstOrderOnly);
    variable_list none(9);
    if (!grads[0].defined()) return none;
    auto s = ctx->get_saved_variables();
    const bool need_h = ctx->needs_input_grad(1);
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gv, gh] = op.call(grads[0], s[0], s[1], s[2], s[3], s[4], s[5], s[6], ctx->saved_data["r_max"].toDouble(),
                            ctx->saved_data["lmax"].toInt(), need_h);
    none[0] = gv;
    if (need_h) none[1] = gh;
    return none;
  }
};

at::Tensor spline_conv_autograd(const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
                                const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order,
                                const at::Tensor& nb_start, double r_max, int64_t lmax) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && table.requires_grad()), "mlffd::spline_conv",
              ": differentiates w.r.t. vec and h only, but the table requires grad (export-only op)");
  return SplineConvFunction::apply(vec, h, table, neighbour, rowptr, nb_order, nb_start, r_max, lmax);
}

}  // namespace

const char* spline_cpu_isa() { return use_avx2() ? "avx2" : "generic"; }

namespace {

std::string build_info() {
  std::string info = "mlffd_ops 1";
#ifdef _OPENMP
  info += " openmp=1";
#else
  info += " openmp=0";
#endif
#ifdef MLFFD_WITH_CUDA
  info += " cuda=1";
#else
  info += " cuda=0";
#endif
  info += std::string(" cpu_kernels=") + spline_cpu_isa();
  return info;
}

}  // namespace

}  // namespace mlffd

// The library's one TORCH_LIBRARY block (the other files add TORCH_LIBRARY_FRAGMENTs).
TORCH_LIBRARY(mlffd, m) {
  m.def("build_info() -> str", &mlffd::build_info);
  m.def(mlffd::schema::kEdgeGraph);
  m.def(mlffd::schema::kRadialSpline);
  m.def(mlffd::schema::kRadialSplineBackward);
  m.def(mlffd::schema::kSplineConv);
  m.def(mlffd::schema::kSplineConvBackward);
}

TORCH_LIBRARY_IMPL(mlffd, CPU, m) {
  m.impl("edge_graph", &mlffd::edge_graph_cpu);
  m.impl("radial_spline", &mlffd::radial_spline_cpu);
  m.impl("radial_spline_backward", &mlffd::radial_spline_backward_cpu);
  m.impl("spline_conv", &mlffd::spline_conv_cpu);
  m.impl("spline_conv_backward", &mlffd::spline_conv_backward_cpu);
}

TORCH_LIBRARY_IMPL(mlffd, Autograd, m) {
  m.impl("radial_spline", &mlffd::radial_spline_autograd);
  m.impl("spline_conv", &mlffd::spline_conv_autograd);
}
