// mlffd fused edge ops (export only, first-order gradients): schema, CPU kernels, C++ autograd.
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
// Their backward ops (conv_scatter_h_backward, edge_geometry_backward, radial_mlp_backward) are
// plain CPU kernels without an Autograd kernel: double backward raises a clear error. Training
// uses the reference modules (distiller/model/student.py), which support any order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "conv_scatter.h"

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

void check_float(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

void check_same(const at::Tensor& t, const at::Tensor& ref, const char* name, const char* op) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " dtype (", t.scalar_type(),
              ") must equal the first argument's (", ref.scalar_type(), ")");
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " must be on ", ref.device(), ", got ", t.device());
}

void check_cpu(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu(), op, ": only a CPU kernel is built (got a tensor on ", t.device(), ")");
}

// ------------------------------------------------------------------------------------------------
// conv_scatter_h
// ------------------------------------------------------------------------------------------------

int64_t check_conv_h(const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh, const at::Tensor& centre,
                     const at::Tensor& neighbour, int64_t lmax, const char* op) {
  TORCH_CHECK(lmax >= 0, op, ": lmax must be >= 0, got ", lmax);
  const int64_t L = lmax + 1;
  TORCH_CHECK(radial.dim() == 3 && radial.size(1) == L, op, ": radial must be [E, lmax+1, C] with lmax=", lmax,
              ", got shape ", radial.sizes());
  const int64_t E = radial.size(0), C = radial.size(2);
  TORCH_CHECK(h.dim() == 2 && h.size(1) == C, op, ": h must be [n_nodes, C] with C=", C, ", got shape ", h.sizes());
  TORCH_CHECK(sh.dim() == 2 && sh.size(0) == E && sh.size(1) == L * L, op, ": sh must be [E, (lmax+1)^2] = [", E,
              ", ", L * L, "], got shape ", sh.sizes());
  TORCH_CHECK(centre.dim() == 1 && centre.size(0) == E, op, ": centre must be [E] = [", E, "], got shape ",
              centre.sizes());
  TORCH_CHECK(neighbour.dim() == 1 && neighbour.size(0) == E, op, ": neighbour must be [E] = [", E,
              "], got shape ", neighbour.sizes());
  check_float(radial, "radial", op);
  check_same(h, radial, "h", op);
  check_same(sh, radial, "sh", op);
  TORCH_CHECK(centre.scalar_type() == at::kLong && neighbour.scalar_type() == at::kLong, op,
              ": centre and neighbour must be int64");
  check_cpu(radial, op);
  TORCH_CHECK(centre.device().is_cpu() && neighbour.device().is_cpu(), op, ": centre/neighbour must be on CPU");
  return E;
}

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
    const at::Tensor& grad_out_, const at::Tensor& radial_, const at::Tensor& h_, const at::Tensor& sh_,
    const at::Tensor& centre_, const at::Tensor& neighbour_, int64_t lmax, bool need_h) {
  const char* op = "mlffd::conv_scatter_h_backward";
  const int64_t E = check_conv_h(radial_, h_, sh_, centre_, neighbour_, lmax, op);
  const int64_t N = h_.size(0), C = radial_.size(2), L = lmax + 1;
  TORCH_CHECK(grad_out_.dim() == 3 && grad_out_.size(0) == N && grad_out_.size(1) == C && grad_out_.size(2) == L * L,
              op, ": grad_out must be [n_nodes, C, (lmax+1)^2] = [", N, ", ", C, ", ", L * L, "], got shape ",
              grad_out_.sizes());
  check_same(grad_out_, radial_, "grad_out", op);
  at::Tensor g = grad_out_.contiguous(), radial = radial_.contiguous(), h = h_.contiguous(), sh = sh_.contiguous();
  at::Tensor centre = centre_.contiguous(), neighbour = neighbour_.contiguous();
  std::vector<int64_t> rowptr(N + 1);
  scan_edges(centre.data_ptr<int64_t>(), neighbour.data_ptr<int64_t>(), E, N, rowptr.data(), op);
  at::Tensor grad_radial = at::empty({E, L, C}, radial.options());  // every entry written below
  at::Tensor grad_sh = at::empty({E, L * L}, radial.options());
  if (E > 0 && C == 0) grad_sh.zero_();
  at::Tensor grad_h = need_h ? at::zeros({N, C}, radial.options()) : at::empty({0}, radial.options());
  if (E == 0 || C == 0) return {grad_radial, grad_h, grad_sh};
  at::Tensor gh_edge = need_h ? at::empty({E, C}, radial.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "mlffd_conv_scatter_h_backward", [&] {
    conv_h_backward_impl<scalar_t>(g.data_ptr<scalar_t>(), radial.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                                   sh.data_ptr<scalar_t>(), centre.data_ptr<int64_t>(), neighbour.data_ptr<int64_t>(),
                                   grad_radial.data_ptr<scalar_t>(), grad_sh.data_ptr<scalar_t>(),
                                   need_h ? gh_edge.data_ptr<scalar_t>() : nullptr, E, C, L);
    if (need_h)
      gather_by_neighbour<scalar_t>(gh_edge.data_ptr<scalar_t>(), neighbour.data_ptr<int64_t>(),
                                    grad_h.data_ptr<scalar_t>(), N, E, C);
  });
  return {grad_radial, grad_h, grad_sh};
}

class ConvScatterHFunction : public torch::autograd::Function<ConvScatterHFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& radial, const at::Tensor& h, const at::Tensor& sh,
                            const at::Tensor& centre, const at::Tensor& neighbour, int64_t lmax) {
    ctx->save_for_backward({radial, h, sh, centre, neighbour});
    ctx->saved_data["lmax"] = lmax;
    at::AutoDispatchBelowADInplaceOrView guard;
    return conv_scatter_h_cpu(radial, h, sh, centre, neighbour, lmax);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(), "mlffd::conv_scatter_h", kFirstOrderOnly);
    variable_list none(6);
    if (!grads[0].defined()) return none;
    auto s = ctx->get_saved_variables();
    const bool need_h = ctx->needs_input_grad(1);
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [gr, gh, gsh] = conv_scatter_h_backward_cpu(grads[0], s[0], s[1], s[2], s[3], s[4],
                                                     ctx->saved_data["lmax"].toInt(), need_h);
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

// Forward-mode dual number (value + gradient w.r.t. the unit vector's x, y, z).
template <typename T>
struct Dual {
  T v, dx, dy, dz;
};
template <typename T>
inline Dual<T> operator*(T a, const Dual<T>& b) { return {a * b.v, a * b.dx, a * b.dy, a * b.dz}; }
template <typename T>
inline Dual<T> operator*(const Dual<T>& a, const Dual<T>& b) {
  return {a.v * b.v, a.dx * b.v + a.v * b.dx, a.dy * b.v + a.v * b.dy, a.dz * b.v + a.v * b.dz};
}
template <typename T>
inline Dual<T> operator+(const Dual<T>& a, const Dual<T>& b) { return {a.v + b.v, a.dx + b.dx, a.dy + b.dy, a.dz + b.dz}; }
template <typename T>
inline Dual<T> operator-(const Dual<T>& a, const Dual<T>& b) { return {a.v - b.v, a.dx - b.dx, a.dy - b.dy, a.dz - b.dz}; }

// e3nn's _spherical_harmonics (same expressions, same order), component normalisation.
// V is scalar_t (forward) or Dual<scalar_t> (backward); S is scalar_t (constants).
template <typename S, typename V>
inline void sh_poly(int64_t lmax, const V& x, const V& y, const V& z, V* out) {
  // sh_0_0 is constant 1 (zero gradient): written by the caller.
  if (lmax < 1) return;
  const S s3 = S(std::sqrt(3.0)), s15 = S(std::sqrt(15.0)), s5 = S(std::sqrt(5.0));
  out[1] = s3 * x;
  out[2] = s3 * y;
  out[3] = s3 * z;
  if (lmax < 2) return;
  const V sh20 = s15 * x * z;
  const V sh21 = s15 * x * y;
  const V y2 = y * y;
  const V x2z2 = x * x + z * z;
  const V sh22 = s5 * (y2 - S(0.5) * x2z2);
  const V sh23 = s15 * y * z;
  const V sh24 = S(0.5 * std::sqrt(15.0)) * (z * z - x * x);
  out[4] = sh20;
  out[5] = sh21;
  out[6] = sh22;
  out[7] = sh23;
  out[8] = sh24;
  if (lmax < 3) return;
  const S c42 = S((1.0 / 6.0) * std::sqrt(42.0)), s7 = S(std::sqrt(7.0)), c168 = S((1.0 / 8.0) * std::sqrt(168.0)),
          c7h = S(0.5 * std::sqrt(7.0));
  out[9] = c42 * (sh20 * z + sh24 * x);
  out[10] = s7 * sh20 * y;
  out[11] = c168 * (S(4.0) * y2 - x2z2) * x;
  out[12] = c7h * y * (S(2.0) * y2 - S(3.0) * x2z2);
  out[13] = c168 * z * (S(4.0) * y2 - x2z2);
  out[14] = s7 * sh24 * y;
  out[15] = c42 * (sh24 * z - sh20 * x);
}

void check_geometry(const at::Tensor& vec, int64_t lmax, const char* op) {
  TORCH_CHECK(lmax >= 0 && lmax <= 3, op, ": lmax must be in [0, 3], got ", lmax);
  TORCH_CHECK(vec.dim() == 2 && vec.size(1) == 3, op, ": vec must be [E, 3], got shape ", vec.sizes());
  check_float(vec, "vec", op);
  check_cpu(vec, op);
}

constexpr double kNormalizeEps = 1e-12;  // torch.nn.functional.normalize's eps

std::tuple<at::Tensor, at::Tensor> edge_geometry_cpu(const at::Tensor& vec_, int64_t lmax) {
  const char* op = "mlffd::edge_geometry";
  check_geometry(vec_, lmax, op);
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
  at::Tensor vec = vec_.contiguous();
  const int64_t E = vec.size(0), M = (lmax + 1) * (lmax + 1);
  TORCH_CHECK(grad_length_.dim() == 1 && grad_length_.size(0) == E, op, ": grad_length must be [E]");
  TORCH_CHECK(grad_sh_.dim() == 2 && grad_sh_.size(0) == E && grad_sh_.size(1) == M, op, ": grad_sh must be [E, ", M,
              "], got shape ", grad_sh_.sizes());
  check_same(grad_length_, vec, "grad_length", op);
  check_same(grad_sh_, vec, "grad_sh", op);
  at::Tensor gl = grad_length_.contiguous(), gs = grad_sh_.contiguous();
  at::Tensor grad = at::empty({E, 3}, vec.options());
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "mlffd_edge_geometry_backward", [&] {
    using D = Dual<scalar_t>;
    const scalar_t* v = vec.data_ptr<scalar_t>();
    const scalar_t* g_len = gl.data_ptr<scalar_t>();
    const scalar_t* g_sh = gs.data_ptr<scalar_t>();
    scalar_t* gv = grad.data_ptr<scalar_t>();
    at::parallel_for(0, E, grain(16 * M), [&](int64_t begin, int64_t end) {
      D d[16];
      for (int64_t e = begin; e < end; ++e) {
        const scalar_t x = v[3 * e], y = v[3 * e + 1], z = v[3 * e + 2];
        const scalar_t r = std::sqrt(x * x + y * y + z * z);
        const bool clamped = r <= scalar_t(kNormalizeEps);
        const scalar_t n = clamped ? scalar_t(kNormalizeEps) : r;
        const scalar_t ux = x / n, uy = y / n, uz = z / n;
        sh_poly<scalar_t, D>(lmax, D{ux, 1, 0, 0}, D{uy, 0, 1, 0}, D{uz, 0, 0, 1}, d);
        scalar_t gx = 0, gy = 0, gz = 0;  // d loss / d unit vector
        const scalar_t* g = g_sh + e * M;
        for (int64_t m = 1; m < M; ++m) {
          gx += g[m] * d[m].dx;
          gy += g[m] * d[m].dy;
          gz += g[m] * d[m].dz;
        }
        scalar_t ox, oy, oz;
        if (clamped) {  // u = vec / eps: the clamp has zero gradient; vector_norm's gradient is 0 at 0
          ox = gx / n;
          oy = gy / n;
          oz = gz / n;
          if (r > scalar_t(0)) {
            ox += g_len[e] * x / r;
            oy += g_len[e] * y / r;
            oz += g_len[e] * z / r;
          }
        } else {  // u = vec / r: (g - u (u . g)) / r, plus d|vec| = u
          const scalar_t ug = ux * gx + uy * gy + uz * gz;
          ox = (gx - ux * ug) / r + g_len[e] * ux;
          oy = (gy - uy * ug) / r + g_len[e] * uy;
          oz = (gz - uz * ug) / r + g_len[e] * uz;
        }
        gv[3 * e] = ox;
        gv[3 * e + 1] = oy;
        gv[3 * e + 2] = oz;
      }
    });
  });
  return grad;
}

class EdgeGeometryFunction : public torch::autograd::Function<EdgeGeometryFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& vec, int64_t lmax) {
    ctx->save_for_backward({vec});
    ctx->saved_data["lmax"] = lmax;
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [length, sh] = edge_geometry_cpu(vec, lmax);
    return {length, sh};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(), "mlffd::edge_geometry", kFirstOrderOnly);
    auto s = ctx->get_saved_variables();
    at::AutoDispatchBelowADInplaceOrView guard;
    // grads are materialised (zeros for an unused output) by the autograd Function machinery.
    return {edge_geometry_backward_cpu(grads[0], grads[1], s[0], ctx->saved_data["lmax"].toInt()), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> edge_geometry_autograd(const at::Tensor& vec, int64_t lmax) {
  auto out = EdgeGeometryFunction::apply(vec, lmax);
  return {out[0], out[1]};
}

// ------------------------------------------------------------------------------------------------
// radial_mlp: Bessel basis -> Linear -> SiLU -> Linear, times the polynomial envelope
// ------------------------------------------------------------------------------------------------

void check_radial(const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1, const at::Tensor& b1,
                  const at::Tensor& w2, const at::Tensor& b2, int64_t n_split, const char* op) {
  TORCH_CHECK(length.dim() == 1, op, ": length must be [E], got shape ", length.sizes());
  check_float(length, "length", op);
  check_cpu(length, op);
  TORCH_CHECK(freq.dim() == 1, op, ": frequencies must be [B], got shape ", freq.sizes());
  const int64_t B = freq.size(0);
  TORCH_CHECK(w1.dim() == 2 && w1.size(1) == B, op, ": w1 must be [H, B=", B, "], got shape ", w1.sizes());
  const int64_t H = w1.size(0);
  TORCH_CHECK(b1.dim() == 1 && b1.size(0) == H, op, ": b1 must be [H=", H, "], got shape ", b1.sizes());
  TORCH_CHECK(w2.dim() == 2 && w2.size(1) == H, op, ": w2 must be [K, H=", H, "], got shape ", w2.sizes());
  const int64_t K = w2.size(0);
  TORCH_CHECK(b2.dim() == 1 && b2.size(0) == K, op, ": b2 must be [K=", K, "], got shape ", b2.sizes());
  TORCH_CHECK(n_split >= 1 && K % n_split == 0, op, ": n_split (", n_split, ") must divide K=", K);
  check_same(freq, length, "frequencies", op);
  check_same(w1, length, "w1", op);
  check_same(b1, length, "b1", op);
  check_same(w2, length, "w2", op);
  check_same(b2, length, "b2", op);
}

// x^q for the envelope: repeated multiplication when q is a small integer (the default p = 6),
// else std::pow. Same value as torch.pow within a few ulps.
template <typename T>
inline T power(T x, T q) {
  const int qi = static_cast<int>(q);
  if (T(qi) == q && qi >= 0 && qi <= 32) {
    T out = T(1);
    for (int k = 0; k < qi; ++k) out *= x;
    return out;
  }
  return std::pow(x, q);
}

struct Envelope {
  double cutoff, p, c1, c2, c3;
  Envelope(double cutoff_, double p_)
      : cutoff(cutoff_), p(p_), c1((p_ + 1.0) * (p_ + 2.0) / 2.0), c2(p_ * (p_ + 2.0)), c3(p_ * (p_ + 1.0) / 2.0) {}
};

// Forward: out_t = (mlp(bessel(r)))[:, block t] * env(r). Saves pre-activation and mlp output.
std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> radial_forward(
    const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
    const at::Tensor& b2, double prefactor, double cutoff, double p, int64_t n_split) {
  const int64_t E = length.size(0), B = freq.size(0), K = w2.size(0), Kt = K / n_split;
  const Envelope env(cutoff, p);
  at::Tensor r = length.contiguous();
  at::Tensor envelope = at::empty({E}, r.options());
  // sin(f r) through ATen's vectorised kernel (a scalar std::sin loop is several times slower).
  at::Tensor basis = at::sin(at::mul(r.unsqueeze(1), freq.unsqueeze(0)));  // [E, B]
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "mlffd_radial_basis", [&] {
    const scalar_t* rp = r.data_ptr<scalar_t>();
    scalar_t* bp = basis.data_ptr<scalar_t>();
    scalar_t* ep = envelope.data_ptr<scalar_t>();
    const scalar_t pref = scalar_t(prefactor), rc = scalar_t(cutoff), pp = scalar_t(p);
    const scalar_t c1 = scalar_t(env.c1), c2 = scalar_t(env.c2), c3 = scalar_t(env.c3);
    at::parallel_for(0, E, grain(8 * B), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const scalar_t re = rp[e];
        for (int64_t n = 0; n < B; ++n) bp[e * B + n] = pref * bp[e * B + n] / re;
        const scalar_t x = re / rc;
        const scalar_t u = scalar_t(1) - c1 * power(x, pp) + c2 * power(x, pp + scalar_t(1)) -
                           c3 * power(x, pp + scalar_t(2));
        ep[e] = x < scalar_t(1) ? u : scalar_t(0);
      }
    });
  });
  at::Tensor pre = at::addmm(b1, basis, w1.t());
  at::Tensor mlp = at::addmm(b2, at::silu(pre), w2.t());
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < n_split; ++t) outs.push_back(at::empty({E, Kt}, r.options()));
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

std::vector<at::Tensor> radial_mlp_cpu(const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1,
                                       const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                                       double prefactor, double cutoff, double p, int64_t n_split) {
  check_radial(length, freq, w1, b1, w2, b2, n_split, "mlffd::radial_mlp");
  return std::get<0>(radial_forward(length, freq, w1, b1, w2, b2, prefactor, cutoff, p, n_split));
}

// d loss / d length, from the per-block output gradients (an undefined block contributes nothing).
at::Tensor radial_backward(const std::vector<at::Tensor>& grads, const at::Tensor& length, const at::Tensor& freq,
                           const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& pre, const at::Tensor& mlp,
                           double prefactor, double cutoff, double p) {
  const int64_t E = length.size(0), B = freq.size(0), K = w2.size(0), H = w1.size(0);
  const int64_t n_split = static_cast<int64_t>(grads.size()), Kt = K / n_split;
  const Envelope env(cutoff, p);
  at::Tensor r = length.contiguous();
  at::Tensor G = at::empty({E, K}, r.options());    // grad_out * envelope
  at::Tensor S = at::empty({E}, r.options());       // sum_k grad_out * mlp   (envelope term)
  at::Tensor dbasis = at::empty({E, B}, r.options());
  at::Tensor denv = at::empty({E}, r.options());
  std::vector<at::Tensor> gs(n_split);
  for (int64_t t = 0; t < n_split; ++t)
    if (grads[t].defined()) gs[t] = grads[t].contiguous();
  at::Tensor arg = at::mul(r.unsqueeze(1), freq.unsqueeze(0));  // f r, [E, B]
  at::Tensor sin_fr = at::sin(arg), cos_fr = at::cos(arg);
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "mlffd_radial_backward_1", [&] {
    const scalar_t* rp = r.data_ptr<scalar_t>();
    const scalar_t* f = freq.contiguous().data_ptr<scalar_t>();
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
    const scalar_t pref = scalar_t(prefactor), rc = scalar_t(cutoff), pp = scalar_t(p);
    const scalar_t c1 = scalar_t(env.c1), c2 = scalar_t(env.c2), c3 = scalar_t(env.c3);
    at::parallel_for(0, E, grain(2 * K + 8 * B), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const scalar_t re = rp[e];
        const scalar_t x = re / rc;
        const bool inside = x < scalar_t(1);
        const scalar_t u = inside ? scalar_t(1) - c1 * power(x, pp) + c2 * power(x, pp + scalar_t(1)) -
                                        c3 * power(x, pp + scalar_t(2))
                                  : scalar_t(0);
        dep[e] = inside ? (-c1 * pp * power(x, pp - scalar_t(1)) + c2 * (pp + scalar_t(1)) * power(x, pp) -
                           c3 * (pp + scalar_t(2)) * power(x, pp + scalar_t(1))) /
                              rc
                        : scalar_t(0);
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
        for (int64_t n = 0; n < B; ++n) {  // d/dr [pref sin(f r) / r]
          dbp[e * B + n] = pref * (f[n] * cs[e * B + n] * re - sn[e * B + n]) / (re * re);
        }
      }
    });
  });
  at::Tensor gact = at::mm(G, w2);  // [E, H]
  at::Tensor gpre = at::empty({E, H}, r.options());
  at::Tensor sig = at::sigmoid(pre);
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "mlffd_radial_backward_2", [&] {
    const scalar_t* ga = gact.data_ptr<scalar_t>();
    const scalar_t* pr = pre.data_ptr<scalar_t>();
    const scalar_t* sp = sig.data_ptr<scalar_t>();
    scalar_t* gp = gpre.data_ptr<scalar_t>();
    at::parallel_for(0, E * H, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {  // silu'(x) = s (1 + x (1 - s))
        const scalar_t xk = pr[k];
        const scalar_t sg = sp[k];
        gp[k] = ga[k] * sg * (scalar_t(1) + xk * (scalar_t(1) - sg));
      }
    });
  });
  at::Tensor gbasis = at::mm(gpre, w1);  // [E, B]
  at::Tensor grad_r = at::empty({E}, r.options());
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "mlffd_radial_backward_3", [&] {
    const scalar_t* gb = gbasis.data_ptr<scalar_t>();
    const scalar_t* db = dbasis.data_ptr<scalar_t>();
    const scalar_t* Sp = S.data_ptr<scalar_t>();
    const scalar_t* de = denv.data_ptr<scalar_t>();
    scalar_t* out = grad_r.data_ptr<scalar_t>();
    at::parallel_for(0, E, grain(2 * B), [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        scalar_t acc = Sp[e] * de[e];
        for (int64_t n = 0; n < B; ++n) acc += gb[e * B + n] * db[e * B + n];
        out[e] = acc;
      }
    });
  });
  return grad_r;
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
  TORCH_CHECK(n_nodes >= 0, op, ": n_nodes must be >= 0, got ", n_nodes);
  TORCH_CHECK(grad_.dim() == 2 && grad_.size(1) == 3, op, ": edge_grad must be [E, 3], got shape ", grad_.sizes());
  const int64_t E = grad_.size(0);
  TORCH_CHECK(vec_.dim() == 2 && vec_.size(0) == E && vec_.size(1) == 3, op, ": edge_vec must be [E, 3] = [", E,
              ", 3], got shape ", vec_.sizes());
  TORCH_CHECK(centre_.dim() == 1 && centre_.size(0) == E && neighbour_.dim() == 1 && neighbour_.size(0) == E, op,
              ": centre and neighbour must be [E] = [", E, "]");
  TORCH_CHECK(centre_.scalar_type() == at::kLong && neighbour_.scalar_type() == at::kLong, op,
              ": centre and neighbour must be int64");
  check_float(grad_, "edge_grad", op);
  check_same(vec_, grad_, "edge_vec", op);
  check_cpu(grad_, op);
  at::Tensor g = grad_.contiguous(), v = vec_.contiguous(), centre = centre_.contiguous(),
             neighbour = neighbour_.contiguous();
  const int64_t N = n_nodes;
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
      for (int64_t e = begin; e < end; ++e) {
        const scalar_t* ge = gp + 3 * e;
        const scalar_t* ve = vp + 3 * e;
        scalar_t* o = vo + 6 * e;
        o[0] = -ve[0] * ge[0] * scalar_t(0.5);
        o[1] = -ve[1] * ge[1] * scalar_t(0.5);
        o[2] = -ve[2] * ge[2] * scalar_t(0.5);
        o[3] = -ve[0] * ge[1] * scalar_t(0.5);
        o[4] = -ve[0] * ge[2] * scalar_t(0.5);
        o[5] = -ve[1] * ge[2] * scalar_t(0.5);
      }
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
  m.def("conv_scatter_h(Tensor radial, Tensor h, Tensor sh, Tensor centre, Tensor neighbour, int lmax) -> Tensor");
  m.def("conv_scatter_h_backward(Tensor grad_out, Tensor radial, Tensor h, Tensor sh, Tensor centre, "
        "Tensor neighbour, int lmax, bool need_h) -> (Tensor, Tensor, Tensor)");
  m.def("edge_geometry(Tensor vec, int lmax) -> (Tensor, Tensor)");
  m.def("edge_geometry_backward(Tensor grad_length, Tensor grad_sh, Tensor vec, int lmax) -> Tensor");
  m.def("radial_mlp(Tensor length, Tensor frequencies, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
        "float prefactor, float cutoff, float p, int n_split) -> Tensor[]");
  m.def("edge_forces_virial(Tensor edge_grad, Tensor edge_vec, Tensor centre, Tensor neighbour, int n_nodes) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mlffd, CPU, m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_cpu);
  m.impl("conv_scatter_h_backward", &mlffd::conv_scatter_h_backward_cpu);
  m.impl("edge_geometry", &mlffd::edge_geometry_cpu);
  m.impl("edge_geometry_backward", &mlffd::edge_geometry_backward_cpu);
  m.impl("radial_mlp", &mlffd::radial_mlp_cpu);
  m.impl("edge_forces_virial", &mlffd::edge_forces_virial_cpu);
}

TORCH_LIBRARY_IMPL(mlffd, Autograd, m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_autograd);
  m.impl("edge_geometry", &mlffd::edge_geometry_autograd);
  m.impl("radial_mlp", &mlffd::radial_mlp_autograd);
}
