// mlffd fused edge ops (export only, first-order gradients): schemas, CPU kernels, C++ autograd.
//
//   mlffd::conv_scatter_h(Tensor radial, Tensor h, Tensor sh, Tensor centre, Tensor neighbour, int lmax) -> Tensor
//     out[i, c, m] = sum_{e: centre[e] = i} radial[e, l(m), c] * h[neighbour[e], c] * sh[e, m]
//     (conv_scatter with the edge weights radial * h[neighbour] folded in; gradients for radial, h, sh)
//   mlffd::edge_geometry(Tensor vec, int lmax) -> (Tensor length, Tensor sh)
//     length = |vec|, sh = e3nn SphericalHarmonics(0..lmax, normalize=True, "component")(vec), lmax <= 3
//   mlffd::radial_mlp(Tensor length, Tensor frequencies, Tensor w1, Tensor b1, Tensor w2, Tensor b2,
//                     float prefactor, float cutoff, float p, int n_split) -> Tensor[]
//     (Linear(w2, b2)(silu(Linear(w1, b1)(bessel(length)))) * envelope(length)) split into n_split
//     equal column blocks; gradient w.r.t. length only (the weights must not require grad).
//   mlffd::edge_forces_virial(Tensor edge_grad, Tensor edge_vec, Tensor centre, Tensor neighbour, int n_nodes)
//       -> (Tensor forces, Tensor virial, Tensor atom_virial)      (no gradient: inputs are detached)
//
// Their backward ops (conv_scatter_h_backward, edge_geometry_backward) are plain kernels without
// an Autograd kernel, and radial_mlp's backward is C++ only: double backward raises a clear error.
// Training uses the reference modules (distiller/model/student.py), which support any order.
// CUDA kernels: fused_edge_cuda.cu; per-element formulas shared with them: kernel_math.h; argument
// checks: op_checks.cpp.
#include "fused_edge.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "conv_scatter.h"
#include "kernel_math.h"
#include "op_schemas.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mlffd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kFirstOrderOnly =
    ": only first-order gradients are implemented (export-only fused op); double backward / "
    "create_graph=True needs the reference modules (training path) or mlffd::conv_scatter";

int64_t grain(int64_t work_per_item) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, work_per_item)); }

// Calls through the dispatcher, so that the kernel of the tensors' device runs.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// ------------------------------------------------------------------------------------------------
// conv_scatter_h
// ------------------------------------------------------------------------------------------------

// Validates centre (sorted, in range) and neighbour (in range); fills rowptr (n_nodes + 1).
void scan_edges(const int64_t* centre, const int64_t* neighbour, int64_t E, int64_t n_nodes, int64_t* rowptr,
                const char* op) {
  int64_t prev = -1;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t c = centre[e];
    TORCH_CHECK(c >= 0 && c < n_nodes, op, ": centre[", e, "] = ", c, " is outside [0, n_nodes=", n_nodes, ")");
    TORCH_CHECK(c >= prev, op, ": centre must be sorted ascending (edges grouped by centre atom), but centre[",
                e - 1, "] = ", prev, " > centre[", e, "] = ", c);
    const int64_t j = neighbour[e];
    TORCH_CHECK(j >= 0 && j < n_nodes, op, ": neighbour[", e, "] = ", j, " is outside [0, n_nodes=", n_nodes, ")");
    for (int64_t k = prev + 1; k <= c; ++k) rowptr[k] = e;
    prev = c;
  }
  for (int64_t k = prev + 1; k <= n_nodes; ++k) rowptr[k] = E;
}

template <typename scalar_t>
void conv_h_forward_impl(const scalar_t* __restrict__ radial, const scalar_t* __restrict__ h,
                         const scalar_t* __restrict__ sh, const int64_t* __restrict__ neighbour,
                         const int64_t* __restrict__ rowptr, scalar_t* __restrict__ out, int64_t N, int64_t E,
                         int64_t C, int64_t L) {
  const int64_t M = L * L;
  const int64_t per_atom = (E / std::max<int64_t>(N, 1) + 1) * C * (M + L);
  at::parallel_for(0, N, grain(per_atom), [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> acc_buf(M * C), w_buf(L * C);
    scalar_t* __restrict__ acc = acc_buf.data();
    scalar_t* __restrict__ w = w_buf.data();
    for (int64_t i = begin; i < end; ++i) {
      std::fill(acc_buf.begin(), acc_buf.end(), scalar_t(0));
      for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
        const scalar_t* __restrict__ re = radial + e * L * C;
        const scalar_t* __restrict__ hn = h + neighbour[e] * C;
        for (int64_t l = 0; l < L; ++l)
          for (int64_t c = 0; c < C; ++c) w[l * C + c] = re[l * C + c] * hn[c];  // the reference's weights
        accumulate_edge(w, sh + e * M, acc, L, C);
      }
      store_node(acc, out + i * C * M, C, M);
    }
  });
}

// grad_radial[e,l,c] = h[j,c] P[e,l,c], grad_sh[e,m] = sum_c g[i,c,m] radial[e,l,c] h[j,c],
// grad_h[j,c] = sum_{e: neighbour[e] = j} sum_l radial[e,l,c] P[e,l,c],  P[e,l,c] = sum_{m in l} g[i,c,m] sh[e,m]
template <typename scalar_t>
void conv_h_backward_impl(const scalar_t* __restrict__ gout, const scalar_t* __restrict__ radial,
                          const scalar_t* __restrict__ h, const scalar_t* __restrict__ sh,
                          const int64_t* __restrict__ centre, const int64_t* __restrict__ neighbour,
                          scalar_t* __restrict__ grad_radial, scalar_t* __restrict__ grad_sh,
                          scalar_t* __restrict__ gh_edge, int64_t E, int64_t C, int64_t L) {
  const int64_t M = L * L;
  at::parallel_for(0, E, grain(3 * C * M), [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> got_buf(M * C), p_buf(C), w_buf(C);
    scalar_t* __restrict__ got = got_buf.data();
    scalar_t* __restrict__ p = p_buf.data();
    scalar_t* __restrict__ w = w_buf.data();
    int64_t current = -1;
    for (int64_t e = begin; e < end; ++e) {
      const int64_t i = centre[e];
      if (i != current) {
        load_node(gout + i * C * M, got, C, M);
        current = i;
      }
      const scalar_t* __restrict__ se = sh + e * M;
      const scalar_t* __restrict__ re = radial + e * L * C;
      const scalar_t* __restrict__ hn = h + neighbour[e] * C;
      scalar_t* __restrict__ gre = grad_radial + e * L * C;
      scalar_t* __restrict__ gse = grad_sh + e * M;
      scalar_t* __restrict__ ghe = gh_edge != nullptr ? gh_edge + e * C : nullptr;
      if (ghe != nullptr)
        for (int64_t c = 0; c < C; ++c) ghe[c] = scalar_t(0);
      for (int64_t l = 0; l < L; ++l) {
        const scalar_t* __restrict__ rl = re + l * C;
        for (int64_t c = 0; c < C; ++c) {
          w[c] = rl[c] * hn[c];
          p[c] = scalar_t(0);
        }
        for (int64_t m = l * l; m < (l + 1) * (l + 1); ++m) {
          const scalar_t s = se[m];
          const scalar_t* __restrict__ gm = got + m * C;
          scalar_t dot = 0;
          for (int64_t c = 0; c < C; ++c) {
            p[c] += gm[c] * s;
            dot += gm[c] * w[c];
          }
          gse[m] = dot;
        }
        scalar_t* __restrict__ grl = gre + l * C;
        for (int64_t c = 0; c < C; ++c) grl[c] = p[c] * hn[c];
        if (ghe != nullptr)
          for (int64_t c = 0; c < C; ++c) ghe[c] += p[c] * rl[c];
      }
    }
  });
}

// grad_h[j] = sum over edges with neighbour j (ascending edge order, like index_add), parallel over j
// through a counting sort of the edges by neighbour: deterministic for any thread count.
template <typename scalar_t>
void gather_by_neighbour(const scalar_t* __restrict__ gh_edge, const int64_t* __restrict__ neighbour,
                         scalar_t* __restrict__ grad_h, int64_t N, int64_t E, int64_t C) {
  std::vector<int64_t> start(N + 1, 0), order(E);
  for (int64_t e = 0; e < E; ++e) ++start[neighbour[e] + 1];
  for (int64_t j = 0; j < N; ++j) start[j + 1] += start[j];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t e = 0; e < E; ++e) order[fill[neighbour[e]]++] = e;
  }
  const int64_t per = (E / std::max<int64_t>(N, 1) + 1) * C;
  at::parallel_for(0, N, grain(per), [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      scalar_t* __restrict__ g = grad_h + j * C;
      for (int64_t c = 0; c < C; ++c) g[c] = scalar_t(0);
      for (int64_t k = start[j]; k < start[j + 1]; ++k) {
        const scalar_t* __restrict__ src = gh_edge + order[k] * C;
        for (int64_t c = 0; c < C; ++c) g[c] += src[c];
      }
    }
  });
}

at::Tensor conv_scatter_h_cpu(const at::Tensor& radial_, const at::Tensor& h_, const at::Tensor& sh_,
                              const at::Tensor& centre_, const at::Tensor& neighbour_, int64_t lmax) {
  const char* op = "mlffd::conv_scatter_h";
  const int64_t E = check_conv_h(radial_, h_, sh_, centre_, neighbour_, lmax, op);
  const int64_t N = h_.size(0), C = radial_.size(2), L = lmax + 1;
  at::Tensor radial = radial_.contiguous(), h = h_.contiguous(), sh = sh_.contiguous();
  at::Tensor centre = centre_.contiguous(), neighbour = neighbour_.contiguous();
  std::vector<int64_t> rowptr(N + 1);
  scan_edges(centre.data_ptr<int64_t>(), neighbour.data_ptr<int64_t>(), E, N, rowptr.data(), op);
  at::Tensor out = at::empty({N, C, L * L}, radial.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "mlffd_conv_scatter_h", [&] {
    conv_h_forward_impl<scalar_t>(radial.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(),
                                  neighbour.data_ptr<int64_t>(), rowptr.data(), out.data_ptr<scalar_t>(), N, E, C, L);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv_scatter_h_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh,
    const at::Tensor& centre, const at::Tensor& neighbour, int64_t lmax, bool need_h) {
  const char* op = "mlffd::conv_scatter_h_backward";
  ConvHBackward b = prepare_conv_h_backward(grad_out, radial, h, sh, centre, neighbour, lmax, need_h, op);
  std::vector<int64_t> rowptr(b.N + 1);
  scan_edges(b.centre.data_ptr<int64_t>(), b.neighbour.data_ptr<int64_t>(), b.E, b.N, rowptr.data(), op);
  if (b.trivial) return {b.grad_radial, b.grad_h, b.grad_sh};
  AT_DISPATCH_FLOATING_TYPES(b.radial.scalar_type(), "mlffd_conv_scatter_h_backward", [&] {
    conv_h_backward_impl<scalar_t>(b.grad_out.data_ptr<scalar_t>(), b.radial.data_ptr<scalar_t>(),
                                   b.h.data_ptr<scalar_t>(), b.sh.data_ptr<scalar_t>(), b.centre.data_ptr<int64_t>(),
                                   b.neighbour.data_ptr<int64_t>(), b.grad_radial.data_ptr<scalar_t>(),
                                   b.grad_sh.data_ptr<scalar_t>(), need_h ? b.gh_edge.data_ptr<scalar_t>() : nullptr,
                                   b.E, b.C, b.L);
    if (need_h)
      gather_by_neighbour<scalar_t>(b.gh_edge.data_ptr<scalar_t>(), b.neighbour.data_ptr<int64_t>(),
                                    b.grad_h.data_ptr<scalar_t>(), b.N, b.E, b.C);
  });
  return {b.grad_radial, b.grad_h, b.grad_sh};
}

class ConvScatterHFunction : public torch::autograd::Function<ConvScatterHFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh,
                            const at::Tensor& centre, const at::Tensor& neighbour, int64_t lmax) {
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, int64_t)>("mlffd::conv_scatter_h");
    ctx->save_for_backward({radial, h, sh, centre, neighbour});
    ctx->saved_data["lmax"] = lmax;
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(radial, h, sh, centre, neighbour, lmax);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
        const at::Tensor&, int64_t, bool)>("mlffd::conv_scatter_h_backward");
    TORCH_CHECK(!at::GradMode::is_enabled(), "mlffd::conv_scatter_h", kFirstOrderOnly);
    variable_list none(6);
    if (!grads[0].defined()) return none;
    auto s = ctx->get_saved_variables();
    const bool need_h = ctx->needs_input_grad(1);
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gr, gh, gsh] = op.call(grads[0], s[0], s[1], s[2], s[3], s[4], ctx->saved_data["lmax"].toInt(), need_h);
    return {gr, need_h ? gh : at::Tensor(), gsh, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor conv_scatter_h_autograd(const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh,
                                   const at::Tensor& centre, const at::Tensor& neighbour, int64_t lmax) {
  return ConvScatterHFunction::apply(radial, h, sh, centre, neighbour, lmax);
}

// ------------------------------------------------------------------------------------------------
// edge_geometry: lengths and e3nn spherical harmonics ("component", normalize=True), lmax <= 3
// ------------------------------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> edge_geometry_cpu(const at::Tensor& vec_, int64_t lmax) {
  check_geometry(vec_, lmax, "mlffd::edge_geometry");
  at::Tensor vec = vec_.contiguous();
  const int64_t E = vec.size(0), M = (lmax + 1) * (lmax + 1);
  at::Tensor length = at::empty({E}, vec.options());
  at::Tensor sh = at::empty({E, M}, vec.options());
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "mlffd_edge_geometry", [&] {
    const scalar_t* v = vec.data_ptr<scalar_t>();
    scalar_t* len = length.data_ptr<scalar_t>();
    scalar_t* out = sh.data_ptr<scalar_t>();
    at::parallel_for(0, E, grain(4 * M), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const scalar_t x = v[3 * e], y = v[3 * e + 1], z = v[3 * e + 2];
        const scalar_t r = std::sqrt(x * x + y * y + z * z);
        len[e] = r;
        const scalar_t n = std::max(r, scalar_t(kNormalizeEps));
        scalar_t* o = out + e * M;
        o[0] = scalar_t(1);
        sh_poly<scalar_t, scalar_t>(lmax, x / n, y / n, z / n, o);
      }
    });
  });
  return {length, sh};
}

at::Tensor edge_geometry_backward_cpu(const at::Tensor& grad_length_, const at::Tensor& grad_sh_,
                                      const at::Tensor& vec_, int64_t lmax) {
  const char* op = "mlffd::edge_geometry_backward";
  check_geometry(vec_, lmax, op);
  check_geometry_grads(grad_length_, grad_sh_, vec_, lmax, op);
  at::Tensor vec = vec_.contiguous(), gl = grad_length_.contiguous(), gs = grad_sh_.contiguous();
  const int64_t E = vec.size(0), M = (lmax + 1) * (lmax + 1);
  at::Tensor grad = at::empty({E, 3}, vec.options());
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "mlffd_edge_geometry_backward", [&] {
    const scalar_t* v = vec.data_ptr<scalar_t>();
    const scalar_t* g_len = gl.data_ptr<scalar_t>();
    const scalar_t* g_sh = gs.data_ptr<scalar_t>();
    scalar_t* gv = grad.data_ptr<scalar_t>();
    at::parallel_for(0, E, grain(16 * M), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e)
        edge_geometry_grad<scalar_t>(lmax, v[3 * e], v[3 * e + 1], v[3 * e + 2], g_len[e], g_sh + e * M, gv + 3 * e);
    });
  });
  return grad;
}

class EdgeGeometryFunction : public torch::autograd::Function<EdgeGeometryFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& vec, int64_t lmax) {
    static auto op = find_op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>("mlffd::edge_geometry");
    ctx->save_for_backward({vec});
    ctx->saved_data["lmax"] = lmax;
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [length, sh] = op.call(vec, lmax);
    return {length, sh};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>(
        "mlffd::edge_geometry_backward");
    TORCH_CHECK(!at::GradMode::is_enabled(), "mlffd::edge_geometry", kFirstOrderOnly);
    auto s = ctx->get_saved_variables();
    at::AutoDispatchBelowADInplaceOrView guard;
    // grads are materialised (zeros for an unused output) by the autograd Function machinery.
    return {op.call(grads[0], grads[1], s[0], ctx->saved_data["lmax"].toInt()), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> edge_geometry_autograd(const at::Tensor& vec, int64_t lmax) {
  auto out = EdgeGeometryFunction::apply(vec, lmax);
  return {out[0], out[1]};
}

// ------------------------------------------------------------------------------------------------
// radial_mlp: Bessel basis -> Linear -> SiLU -> Linear, times the polynomial envelope
// ------------------------------------------------------------------------------------------------

#ifndef MLFFD_WITH_CUDA
[[noreturn]] void no_cuda(const char* op) {
  TORCH_CHECK(false, op, ": this build of the mlffd ops has no CUDA kernels (built with a CPU-only torch or "
              "without CUDA_HOME); rebuild them with CUDA torch, or export with --no-ops");
}
#endif

// Forward: out_t = (mlp(bessel(r)))[:, block t] * env(r). Also returns the pre-activation and the
// MLP output, which the backward needs.
std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> radial_forward(
    const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
    const at::Tensor& b2, double prefactor, double cutoff, double p, int64_t n_split) {
  const int64_t E = length.size(0), B = freq.size(0), K = w2.size(0), Kt = K / n_split;
  at::Tensor r = length.contiguous();
  at::Tensor basis = at::empty({E, B}, r.options());
  at::Tensor envelope = at::empty({E}, r.options());
  if (r.is_cuda()) {
#ifdef MLFFD_WITH_CUDA
    radial_basis_envelope_cuda(r, freq.contiguous(), prefactor, cutoff, p, basis, envelope);
#else
    no_cuda("mlffd::radial_mlp");
#endif
  } else {
    // sin(f r) through ATen's vectorised kernel (a scalar std::sin loop is several times slower).
    at::sin_out(basis, at::mul(r.unsqueeze(1), freq.unsqueeze(0)));
    AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "mlffd_radial_basis", [&] {
      const scalar_t* rp = r.data_ptr<scalar_t>();
      scalar_t* bp = basis.data_ptr<scalar_t>();
      scalar_t* ep = envelope.data_ptr<scalar_t>();
      const scalar_t pref = scalar_t(prefactor);
      const Envelope<scalar_t> env(cutoff, p);
      at::parallel_for(0, E, grain(8 * B), [&](int64_t begin, int64_t end) {
        for (int64_t e = begin; e < end; ++e) {
          const scalar_t re = rp[e];
          for (int64_t n = 0; n < B; ++n) bp[e * B + n] = pref * bp[e * B + n] / re;
          ep[e] = env.value(re);
        }
      });
    });
  }
  at::Tensor pre = at::addmm(b1, basis, w1.t());
  at::Tensor mlp = at::addmm(b2, at::silu(pre), w2.t());
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < n_split; ++t) outs.push_back(at::empty({E, Kt}, r.options()));
  if (r.is_cuda()) {
#ifdef MLFFD_WITH_CUDA
    radial_scale_split_cuda(mlp, envelope, outs);
#endif
    return {outs, pre, mlp};
  }
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "mlffd_radial_envelope", [&] {
    const scalar_t* mp = mlp.data_ptr<scalar_t>();
    const scalar_t* ep = envelope.data_ptr<scalar_t>();
    std::vector<scalar_t*> op(n_split);
    for (int64_t t = 0; t < n_split; ++t) op[t] = outs[t].data_ptr<scalar_t>();
    at::parallel_for(0, E, grain(K), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const scalar_t u = ep[e];
        for (int64_t t = 0; t < n_split; ++t) {
          const scalar_t* src = mp + e * K + t * Kt;
          scalar_t* dst = op[t] + e * Kt;
          for (int64_t k = 0; k < Kt; ++k) dst[k] = src[k] * u;
        }
      }
    });
  });
  return {outs, pre, mlp};
}

std::vector<at::Tensor> radial_mlp_impl(const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1,
                                        const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                                        double prefactor, double cutoff, double p, int64_t n_split) {
  check_radial(length, freq, w1, b1, w2, b2, n_split, "mlffd::radial_mlp");
  return std::get<0>(radial_forward(length, freq, w1, b1, w2, b2, prefactor, cutoff, p, n_split));
}

// The elementwise first pass of the backward on CPU (see radial_backward_terms_cuda).
void radial_backward_terms_cpu(const std::vector<at::Tensor>& gs, const at::Tensor& r, const at::Tensor& freq,
                               const at::Tensor& mlp, double prefactor, double cutoff, double p, at::Tensor& G,
                               at::Tensor& S, at::Tensor& dbasis, at::Tensor& denv) {
  const int64_t E = r.size(0), B = freq.size(0), K = mlp.size(1);
  const int64_t n_split = static_cast<int64_t>(gs.size()), Kt = K / n_split;
  at::Tensor arg = at::mul(r.unsqueeze(1), freq.unsqueeze(0));  // f r, [E, B]
  at::Tensor sin_fr = at::sin(arg), cos_fr = at::cos(arg);
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "mlffd_radial_backward_terms", [&] {
    const scalar_t* rp = r.data_ptr<scalar_t>();
    const scalar_t* f = freq.data_ptr<scalar_t>();
    const scalar_t* sn = sin_fr.data_ptr<scalar_t>();
    const scalar_t* cs = cos_fr.data_ptr<scalar_t>();
    const scalar_t* mp = mlp.data_ptr<scalar_t>();
    scalar_t* Gp = G.data_ptr<scalar_t>();
    scalar_t* Sp = S.data_ptr<scalar_t>();
    scalar_t* dbp = dbasis.data_ptr<scalar_t>();
    scalar_t* dep = denv.data_ptr<scalar_t>();
    std::vector<const scalar_t*> gp(n_split, nullptr);
    for (int64_t t = 0; t < n_split; ++t)
      if (gs[t].defined()) gp[t] = gs[t].data_ptr<scalar_t>();
    const scalar_t pref = scalar_t(prefactor);
    const Envelope<scalar_t> env(cutoff, p);
    at::parallel_for(0, E, grain(2 * K + 8 * B), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const scalar_t re = rp[e];
        const scalar_t u = env.value(re);
        dep[e] = env.derivative(re);
        scalar_t s = 0;
        for (int64_t t = 0; t < n_split; ++t) {
          scalar_t* dst = Gp + e * K + t * Kt;
          if (gp[t] == nullptr) {
            for (int64_t k = 0; k < Kt; ++k) dst[k] = scalar_t(0);
            continue;
          }
          const scalar_t* g = gp[t] + e * Kt;
          const scalar_t* m = mp + e * K + t * Kt;
          for (int64_t k = 0; k < Kt; ++k) {
            dst[k] = g[k] * u;
            s += g[k] * m[k];
          }
        }
        Sp[e] = s;
        for (int64_t n = 0; n < B; ++n)
          dbp[e * B + n] = bessel_derivative(pref, f[n], re, sn[e * B + n], cs[e * B + n]);
      }
    });
  });
}

// d loss / d length, from the per-block output gradients (an undefined block contributes nothing):
// dL/dr = S u'(r) + sum_n (((G w2) silu'(pre)) w1)[n] dbasis_n/dr.
at::Tensor radial_backward(const std::vector<at::Tensor>& grads, const at::Tensor& length, const at::Tensor& freq_,
                           const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& pre, const at::Tensor& mlp,
                           double prefactor, double cutoff, double p) {
  const int64_t E = length.size(0), B = freq_.size(0), K = w2.size(0);
  at::Tensor r = length.contiguous(), freq = freq_.contiguous();
  std::vector<at::Tensor> gs(grads.size());
  for (size_t t = 0; t < grads.size(); ++t)
    if (grads[t].defined()) gs[t] = grads[t].contiguous();
  at::Tensor G = at::empty({E, K}, r.options());  // grad_out * envelope
  at::Tensor S = at::empty({E}, r.options());     // sum_k grad_out * mlp   (envelope term)
  at::Tensor dbasis = at::empty({E, B}, r.options());
  at::Tensor denv = at::empty({E}, r.options());
  if (r.is_cuda()) {
#ifdef MLFFD_WITH_CUDA
    radial_backward_terms_cuda(gs, r, freq, mlp, prefactor, cutoff, p, G, S, dbasis, denv);
#else
    no_cuda("mlffd::radial_mlp");
#endif
  } else {
    radial_backward_terms_cpu(gs, r, freq, mlp, prefactor, cutoff, p, G, S, dbasis, denv);
  }
  at::Tensor gpre = at::silu_backward(at::mm(G, w2), pre);  // [E, H]
  at::Tensor gbasis = at::mm(gpre, w1);                      // [E, B]
  return at::add(at::mul(gbasis, dbasis).sum(1), at::mul(S, denv));
}
class RadialMlpFunction : public torch::autograd::Function<RadialMlpFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& length, const at::Tensor& freq,
                               const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                               double prefactor, double cutoff, double p, int64_t n_split) {
    check_radial(length, freq, w1, b1, w2, b2, n_split, "mlffd::radial_mlp");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [outs, pre, mlp] = radial_forward(length, freq, w1, b1, w2, b2, prefactor, cutoff, p, n_split);
    ctx->save_for_backward({length, freq, w1, w2, pre, mlp});
    ctx->saved_data["prefactor"] = prefactor;
    ctx->saved_data["cutoff"] = cutoff;
    ctx->saved_data["p"] = p;
    ctx->set_materialize_grads(false);
    return outs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(), "mlffd::radial_mlp", kFirstOrderOnly);
    variable_list result(10);
    bool any = false;
    for (const auto& g : grads) any = any || g.defined();
    if (!any) return result;
    auto s = ctx->get_saved_variables();
    at::AutoDispatchBelowADInplaceOrView guard;
    result[0] = radial_backward(grads, s[0], s[1], s[2], s[3], s[4], s[5], ctx->saved_data["prefactor"].toDouble(),
                                ctx->saved_data["cutoff"].toDouble(), ctx->saved_data["p"].toDouble());
    return result;
  }
};

std::vector<at::Tensor> radial_mlp_autograd(const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1,
                                            const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                                            double prefactor, double cutoff, double p, int64_t n_split) {
  // (Function::forward runs with grad mode off, so this check lives here.)
  if (at::GradMode::is_enabled())
    for (const at::Tensor* t : {&freq, &w1, &b1, &w2, &b2})
      TORCH_CHECK(!t->requires_grad(), "mlffd::radial_mlp",
                  ": differentiates w.r.t. length only, but a weight requires grad (export-only op: freeze the "
                  "parameters, or use the reference modules to train)");
  return RadialMlpFunction::apply(length, freq, w1, b1, w2, b2, prefactor, cutoff, p, n_split);
}



// ------------------------------------------------------------------------------------------------
// edge_forces_virial: forces, virial and per-atom virial from dE/d(edge vector) (no autograd)
// ------------------------------------------------------------------------------------------------

// forces[k]      = sum_{e: centre = k} g[e] - sum_{e: neighbour = k} g[e]
// virial         = sum_e -vec[e] (x) g[e]
// atom_virial[k] = sum_{e: centre = k or neighbour = k} 0.5 voigt(-vec[e] (x) g[e])   (xx yy zz xy xz yz)
// Sums run in ascending edge order per atom (like index_add_); no atomics, any thread count.
std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_forces_virial_cpu(const at::Tensor& grad_, const at::Tensor& vec_,
                                                                       const at::Tensor& centre_,
                                                                       const at::Tensor& neighbour_, int64_t n_nodes) {
  const char* op = "mlffd::edge_forces_virial";
  check_edge_forces(grad_, vec_, centre_, neighbour_, n_nodes, op);
  at::Tensor g = grad_.contiguous(), v = vec_.contiguous(), centre = centre_.contiguous(),
             neighbour = neighbour_.contiguous();
  const int64_t E = g.size(0), N = n_nodes;
  std::vector<int64_t> rowptr(N + 1);
  scan_edges(centre.data_ptr<int64_t>(), neighbour.data_ptr<int64_t>(), E, N, rowptr.data(), op);
  std::vector<int64_t> start(N + 1, 0), order(E);  // edges by neighbour (counting sort, stable)
  const int64_t* nb = neighbour.data_ptr<int64_t>();
  for (int64_t e = 0; e < E; ++e) ++start[nb[e] + 1];
  for (int64_t j = 0; j < N; ++j) start[j + 1] += start[j];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t e = 0; e < E; ++e) order[fill[nb[e]]++] = e;
  }
  at::Tensor forces = at::empty({N, 3}, g.options());
  at::Tensor virial = at::empty({3, 3}, g.options());
  at::Tensor atom_virial = at::empty({N, 6}, g.options());
  at::Tensor voigt = at::empty({E, 6}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "mlffd_edge_forces_virial", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    scalar_t* vo = voigt.data_ptr<scalar_t>();
    at::parallel_for(0, E, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) half_edge_virial(vp + 3 * e, gp + 3 * e, vo + 6 * e);
    });
    double vir[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};  // serial, double accumulator: deterministic
    for (int64_t e = 0; e < E; ++e)
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) vir[3 * a + b] += double(-vp[3 * e + a] * gp[3 * e + b]);
    scalar_t* vr = virial.data_ptr<scalar_t>();
    for (int k = 0; k < 9; ++k) vr[k] = scalar_t(vir[k]);
    scalar_t* fp = forces.data_ptr<scalar_t>();
    scalar_t* ap = atom_virial.data_ptr<scalar_t>();
    at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        scalar_t f[3] = {0, 0, 0}, a[6] = {0, 0, 0, 0, 0, 0};
        for (int64_t e = rowptr[k]; e < rowptr[k + 1]; ++e) {
          for (int d = 0; d < 3; ++d) f[d] += gp[3 * e + d];
          for (int d = 0; d < 6; ++d) a[d] += vo[6 * e + d];
        }
        for (int64_t q = start[k]; q < start[k + 1]; ++q) {
          const int64_t e = order[q];
          for (int d = 0; d < 3; ++d) f[d] -= gp[3 * e + d];
          for (int d = 0; d < 6; ++d) a[d] += vo[6 * e + d];
        }
        for (int d = 0; d < 3; ++d) fp[3 * k + d] = f[d];
        for (int d = 0; d < 6; ++d) ap[6 * k + d] = a[d];
      }
    });
  });
  return {forces, virial, atom_virial};
}

}  // namespace
}  // namespace mlffd

TORCH_LIBRARY_FRAGMENT(mlffd, m) {
  m.def(mlffd::schema::kConvScatterH);
  m.def(mlffd::schema::kConvScatterHBackward);
  m.def(mlffd::schema::kEdgeGeometry);
  m.def(mlffd::schema::kEdgeGeometryBackward);
  m.def("radial_mlp(Tensor length, Tensor frequencies, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
        "float prefactor, float cutoff, float p, int n_split) -> Tensor[]");
  m.def(mlffd::schema::kEdgeForcesVirial);
}

TORCH_LIBRARY_IMPL(mlffd, CPU, m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_cpu);
  m.impl("conv_scatter_h_backward", &mlffd::conv_scatter_h_backward_cpu);
  m.impl("edge_geometry", &mlffd::edge_geometry_cpu);
  m.impl("edge_geometry_backward", &mlffd::edge_geometry_backward_cpu);
  m.impl("edge_forces_virial", &mlffd::edge_forces_virial_cpu);
}

// radial_mlp is ATen matmuls around elementwise passes that pick their device themselves.
TORCH_LIBRARY_IMPL(mlffd, CompositeExplicitAutograd, m) { m.impl("radial_mlp", &mlffd::radial_mlp_impl); }

TORCH_LIBRARY_IMPL(mlffd, Autograd, m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_autograd);
  m.impl("edge_geometry", &mlffd::edge_geometry_autograd);
  m.impl("radial_mlp", &mlffd::radial_mlp_autograd);
}
