// mlffd::conv_scatter: schema, CPU and Meta kernels (argument checks: op_checks.cpp). See conv_scatter.h.
#include "conv_scatter.h"
#include "op_schemas.h"
#include "spline_edge.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#ifndef _OPENMP
#warning "mlffd ops compiled without OpenMP (-fopenmp): at::parallel_for will run on one thread"
#endif

namespace mlffd {

namespace {

// Serial O(E) pass: validates centre (sorted, in range; the first offending edge is named) and,
// when rowptr is given, fills rowptr[k] = first edge with centre >= k, k = 0..n_nodes.
void scan_centre_cpu(const int64_t* centre, int64_t E, int64_t n_nodes, int64_t* rowptr, const char* op) {
  int64_t prev = -1;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t c = centre[e];
    TORCH_CHECK(c >= 0 && c < n_nodes, op, ": centre[", e, "] = ", c, " is outside [0, n_nodes=", n_nodes, ")");
    TORCH_CHECK(c >= prev, op, ": centre must be sorted ascending (edges grouped by centre atom), but centre[",
                e - 1, "] = ", prev, " > centre[", e, "] = ", c);
    if (rowptr != nullptr)
      for (int64_t k = prev + 1; k <= c; ++k) rowptr[k] = e;
    prev = c;
  }
  if (rowptr != nullptr)
    for (int64_t k = prev + 1; k <= n_nodes; ++k) rowptr[k] = E;
}

// Aim for tasks of at least ~16k multiply-adds.
int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, work_per_item));
}

template <typename scalar_t>
void conv_scatter_forward_cpu_impl(const scalar_t* __restrict__ w, const scalar_t* __restrict__ sh,
                                   const int64_t* __restrict__ rowptr, scalar_t* __restrict__ out, int64_t N,
                                   int64_t E, int64_t C, int64_t L) {
  const int64_t M = L * L;
  const int64_t per_atom = (E / std::max<int64_t>(N, 1) + 1) * C * M;
  at::parallel_for(0, N, grain_for(per_atom), [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> acc_buf(M * C);  // [M, C]: channel innermost so the inner loop vectorises
    scalar_t* __restrict__ acc = acc_buf.data();
    for (int64_t i = begin; i < end; ++i) {
      std::fill(acc_buf.begin(), acc_buf.end(), scalar_t(0));
      for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
        accumulate_edge(w + e * L * C, sh + e * M, acc, L, C);
      }
      store_node(acc, out + i * C * M, C, M);
    }
  });
}

template <typename scalar_t>
void conv_scatter_backward_cpu_impl(const scalar_t* __restrict__ gout, const scalar_t* __restrict__ w,
                                    const scalar_t* __restrict__ sh, const int64_t* __restrict__ centre,
                                    scalar_t* __restrict__ gw, scalar_t* __restrict__ gsh, int64_t E, int64_t C,
                                    int64_t L) {
  const int64_t M = L * L;
  // Parallel over edges: every edge's gradients are written by exactly one task (no races).
  at::parallel_for(0, E, grain_for(2 * C * M), [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> got_buf(M * C);  // grad_out[i] transposed to [M, C], reused along the atom's edges
    scalar_t* __restrict__ got = got_buf.data();
    int64_t current = -1;
    for (int64_t e = begin; e < end; ++e) {
      const int64_t i = centre[e];
      if (i != current) {
        load_node(gout + i * C * M, got, C, M);
        current = i;
      }
      const scalar_t* __restrict__ se = sh + e * M;
      const scalar_t* __restrict__ we = w + e * L * C;
      scalar_t* __restrict__ gwe = gw + e * L * C;
      scalar_t* __restrict__ gse = gsh + e * M;
      for (int64_t l = 0; l < L; ++l) {
        const scalar_t* __restrict__ wl = we + l * C;
        scalar_t* __restrict__ gwl = gwe + l * C;
        for (int64_t c = 0; c < C; ++c) gwl[c] = scalar_t(0);
        for (int64_t m = l * l; m < (l + 1) * (l + 1); ++m) {
          const scalar_t s = se[m];
          const scalar_t* __restrict__ gm = got + m * C;
          scalar_t dot = 0;
          for (int64_t c = 0; c < C; ++c) {
            gwl[c] += gm[c] * s;
            dot += gm[c] * wl[c];
          }
          gse[m] = dot;
        }
      }
    }
  });
}

at::Tensor conv_scatter_cpu(const at::Tensor& weights, const at::Tensor& sh, const at::Tensor& centre,
                            int64_t n_nodes, int64_t lmax) {
  const char* op = "mlffd::conv_scatter";
  const int64_t E = check_conv_scatter_args(weights, sh, centre, n_nodes, lmax, op);
  const int64_t C = weights.size(2);
  const int64_t L = lmax + 1;
  at::Tensor w = weights.contiguous();
  at::Tensor s = sh.contiguous();
  at::Tensor ctr = centre.contiguous();
  std::vector<int64_t> rowptr(n_nodes + 1);
  scan_centre_cpu(ctr.data_ptr<int64_t>(), E, n_nodes, rowptr.data(), op);
  at::Tensor out = at::empty({n_nodes, C, L * L}, w.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "mlffd_conv_scatter_cpu", [&] {
    conv_scatter_forward_cpu_impl<scalar_t>(w.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), rowptr.data(),
                                            out.data_ptr<scalar_t>(), n_nodes, E, C, L);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> conv_scatter_backward_cpu(const at::Tensor& grad_out, const at::Tensor& weights,
                                                             const at::Tensor& sh, const at::Tensor& centre,
                                                             int64_t lmax) {
  const char* op = "mlffd::conv_scatter_backward";
  const int64_t n_nodes = grad_out.dim() > 0 ? grad_out.size(0) : 0;
  const int64_t E = check_conv_scatter_args(weights, sh, centre, n_nodes, lmax, op);
  check_grad_out(grad_out, weights, lmax, op);
  const int64_t C = weights.size(2);
  const int64_t L = lmax + 1;
  at::Tensor g = grad_out.contiguous();
  at::Tensor w = weights.contiguous();
  at::Tensor s = sh.contiguous();
  at::Tensor ctr = centre.contiguous();
  scan_centre_cpu(ctr.data_ptr<int64_t>(), E, n_nodes, nullptr, op);
  at::Tensor gw = at::empty({E, L, C}, w.options());
  at::Tensor gsh = at::empty({E, L * L}, w.options());
  if (E == 0) return {gw, gsh};
  if (C == 0) {
    gw.zero_();
    gsh.zero_();
    return {gw, gsh};
  }
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "mlffd_conv_scatter_backward_cpu", [&] {
    conv_scatter_backward_cpu_impl<scalar_t>(g.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                                             ctr.data_ptr<int64_t>(), gw.data_ptr<scalar_t>(),
                                             gsh.data_ptr<scalar_t>(), E, C, L);
  });
  return {gw, gsh};
}

// Meta (shape-only) kernels, for tracing (torch.export / torch.compile fake tensors).
at::Tensor conv_scatter_meta(const at::Tensor& weights, const at::Tensor& sh, const at::Tensor& centre,
                             int64_t n_nodes, int64_t lmax) {
  check_conv_scatter_args(weights, sh, centre, n_nodes, lmax, "mlffd::conv_scatter");
  return at::empty({n_nodes, weights.size(2), (lmax + 1) * (lmax + 1)}, weights.options());
}

std::tuple<at::Tensor, at::Tensor> conv_scatter_backward_meta(const at::Tensor& grad_out, const at::Tensor& weights,
                                                              const at::Tensor& sh, const at::Tensor& centre,
                                                              int64_t lmax) {
  const char* op = "mlffd::conv_scatter_backward";
  check_conv_scatter_args(weights, sh, centre, grad_out.dim() > 0 ? grad_out.size(0) : 0, lmax, op);
  check_grad_out(grad_out, weights, lmax, op);
  return {at::empty_like(weights, at::MemoryFormat::Contiguous), at::empty_like(sh, at::MemoryFormat::Contiguous)};
}

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

TORCH_LIBRARY(mlffd, m) {
  m.def(mlffd::schema::kConvScatter);
  m.def(mlffd::schema::kConvScatterBackward);
  m.def("build_info() -> str", &mlffd::build_info);
}

TORCH_LIBRARY_IMPL(mlffd, CPU, m) {
  m.impl("conv_scatter", &mlffd::conv_scatter_cpu);
  m.impl("conv_scatter_backward", &mlffd::conv_scatter_backward_cpu);
}

TORCH_LIBRARY_IMPL(mlffd, Meta, m) {
  m.impl("conv_scatter", &mlffd::conv_scatter_meta);
  m.impl("conv_scatter_backward", &mlffd::conv_scatter_backward_meta);
}
