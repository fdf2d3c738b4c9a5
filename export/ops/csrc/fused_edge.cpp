// mlffd fused edge ops (export only, first-order gradients): schemas, CPU kernels, C++ autograd.
//
//   mlffd::conv_scatter_h(Tensor radial, Tensor h, Tensor sh, Tensor centre, Tensor neighbour, int lmax) -> Tensor
//     out[i, c, m] = sum_{e: centre[e] = i} radial[e, l(m), c] * h[neighbour[e], c] * sh[e, m]
//     (gradients for radial, h, sh; mlffd.model.kernels.conv_scatter_h is its PyTorch reference)
//   mlffd::edge_forces_virial(Tensor edge_grad, Tensor edge_vec, Tensor rowptr, Tensor nb_order, Tensor nb_start)
//       -> (Tensor forces, Tensor virial, Tensor atom_virial)      (no gradient: inputs are detached;
//       rowptr / nb_order / nb_start: the edge list's CSR from mlffd::edge_graph, spline_edge.cpp)
//
// conv_scatter_h_backward is a plain kernel without an Autograd kernel: double backward raises a
// clear error.
// Training uses the reference modules (distiller/model/student.py), which support any order.
// CUDA kernels: fused_edge_cuda.cu; per-element formulas shared with them: kernel_math.h; argument
// checks: op_checks.cpp.
#include "fused_edge.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "kernel_math.h"
#include "op_schemas.h"
#include "op_support.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mlffd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;


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
// edge_forces_virial: forces, virial and per-atom virial from dE/d(edge vector) (no autograd)
// ------------------------------------------------------------------------------------------------

// forces[k]      = sum_{e: centre = k} g[e] - sum_{e: neighbour = k} g[e]
// virial         = sum_e -vec[e] (x) g[e]       (per centre atom, then over atoms, in double)
// atom_virial[k] = sum_{e: centre = k or neighbour = k} 0.5 voigt(-vec[e] (x) g[e])   (xx yy zz yz xz xy)
// One pass per atom over its CSR rows (from mlffd::edge_graph); sums run in ascending edge order
// per atom (like index_add_); no atomics, any thread count.
std::tuple<at::Tensor, at::Tensor, at::Tensor> edge_forces_virial_cpu(const at::Tensor& grad_, const at::Tensor& vec_,
                                                                       const at::Tensor& rowptr_,
                                                                       const at::Tensor& nb_order_,
                                                                       const at::Tensor& nb_start_) {
  const char* op = "mlffd::edge_forces_virial";
  const int64_t N = check_edge_forces(grad_, vec_, rowptr_, nb_order_, nb_start_, op);
  at::Tensor g = grad_.contiguous(), v = vec_.contiguous(), rowptr_t = rowptr_.contiguous(),
             order_t = nb_order_.contiguous(), start_t = nb_start_.contiguous();
  const int64_t E = g.size(0);
  const int64_t* rowptr = rowptr_t.data_ptr<int64_t>();
  const int64_t* order = order_t.data_ptr<int64_t>();
  const int64_t* start = start_t.data_ptr<int64_t>();
  at::Tensor forces = at::empty({N, 3}, g.options());
  at::Tensor virial = at::empty({3, 3}, g.options());
  at::Tensor atom_virial = at::empty({N, 6}, g.options());
  std::vector<double> centre_virial(9 * N);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "mlffd_edge_forces_virial", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    scalar_t* fp = forces.data_ptr<scalar_t>();
    scalar_t* ap = atom_virial.data_ptr<scalar_t>();
    at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        TORCH_CHECK(rowptr[k] >= 0 && rowptr[k] <= rowptr[k + 1] && rowptr[k + 1] <= E && start[k] >= 0 &&
                        start[k] <= start[k + 1] && start[k + 1] <= E,
                    op, ": rowptr / nb_start are not a CSR of the edges (use mlffd::edge_graph)");
        scalar_t f[3] = {0, 0, 0}, a[6] = {0, 0, 0, 0, 0, 0}, w[6];
        double full[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t e = rowptr[k]; e < rowptr[k + 1]; ++e) {
          const scalar_t* ge = gp + 3 * e;
          const scalar_t* ve = vp + 3 * e;
          half_edge_virial(ve, ge, w);
          for (int d = 0; d < 3; ++d) f[d] += ge[d];
          for (int d = 0; d < 6; ++d) a[d] += w[d];
          for (int x = 0; x < 3; ++x)
            for (int y = 0; y < 3; ++y) full[3 * x + y] += double(-ve[x] * ge[y]);
        }
        for (int64_t q = start[k]; q < start[k + 1]; ++q) {
          const int64_t e = order[q];
          TORCH_CHECK(e >= 0 && e < E, op, ": nb_order is not a permutation of the edges (use mlffd::edge_graph)");
          half_edge_virial(vp + 3 * e, gp + 3 * e, w);
          for (int d = 0; d < 3; ++d) f[d] -= gp[3 * e + d];
          for (int d = 0; d < 6; ++d) a[d] += w[d];
        }
        for (int d = 0; d < 3; ++d) fp[3 * k + d] = f[d];
        for (int d = 0; d < 6; ++d) ap[6 * k + d] = a[d];
        std::copy(full, full + 9, centre_virial.data() + 9 * k);
      }
    });
    double total[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};  // serial over atoms: deterministic
    for (int64_t k = 0; k < N; ++k)
      for (int d = 0; d < 9; ++d) total[d] += centre_virial[9 * k + d];
    scalar_t* vr = virial.data_ptr<scalar_t>();
    for (int d = 0; d < 9; ++d) vr[d] = scalar_t(total[d]);
  });
  return {forces, virial, atom_virial};
}

}  // namespace
}  // namespace mlffd

TORCH_LIBRARY_FRAGMENT(mlffd, m) {
  m.def(mlffd::schema::kConvScatterH);
  m.def(mlffd::schema::kConvScatterHBackward);
  m.def(mlffd::schema::kEdgeForcesVirial);
}

TORCH_LIBRARY_IMPL(mlffd, CPU, m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_cpu);
  m.impl("conv_scatter_h_backward", &mlffd::conv_scatter_h_backward_cpu);
  m.impl("edge_forces_virial", &mlffd::edge_forces_virial_cpu);
}

TORCH_LIBRARY_IMPL(mlffd, Autograd, m) {
  m.impl("conv_scatter_h", &mlffd::conv_scatter_h_autograd);
}
