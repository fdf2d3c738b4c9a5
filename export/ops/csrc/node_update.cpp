// mlffd::interaction_node: the node half of one interaction layer (distiller/model/student.py
// Interaction.forward after the convolution), export only, first-order gradients.
//
//   interaction_node(Tensor h, Tensor basis, Tensor mix, Tensor w1, Tensor b1, Tensor w2, Tensor b2,
//                    bool residual) -> Tensor
//     h [N, C] node states, basis [M, N, C] (spline_conv's output, M = (lmax+1)^2), mix [L, C, 2P]
//     (the e3nn o3.Linear as one matrix per degree, export/fused.py; P invariant products per
//     degree), w1 [H, 2C + L P], w2 [O, H]:
//       U_l | V_l      = basis[l-block] @ mix[l]                     [2l+1, N, P] each
//       B_l[n, p]      = sum_m U_l[m, n, p] V_l[m, n, p] / sqrt(2l+1)
//       out            = w2 silu(w1 [h, basis[0], B_0 .. B_lmax] + b1) + b2  (+ h when residual)
//
// One device-generic composite of ATen calls (matmuls, elementwise), so it has no kernel per
// device: on CUDA tensors ATen's CUDA kernels run. It replaces ~30 small TorchScript ops per layer
// (and their autograd nodes) with one call. Gradients w.r.t. h and basis; the weights must not
// require grad; double backward raises.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace mlffd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kOp = "mlffd::interaction_node";

struct NodeDims {
  int64_t N, C, P, L, H, O;
};

NodeDims check_node(const at::Tensor& h, const at::Tensor& basis, const at::Tensor& mix, const at::Tensor& w1,
                    const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2, bool residual) {
  TORCH_CHECK(h.dim() == 2, kOp, ": h must be [N, C], got shape ", h.sizes());
  TORCH_CHECK(h.scalar_type() == at::kFloat || h.scalar_type() == at::kDouble, kOp,
              ": h must be float32 or float64, got ", h.scalar_type());
  NodeDims d;
  d.N = h.size(0);
  d.C = h.size(1);
  TORCH_CHECK(mix.dim() == 3 && mix.size(1) == d.C && mix.size(2) % 2 == 0 && mix.size(2) > 0, kOp,
              ": mix must be [lmax+1, C, 2P] with C=", d.C, ", got shape ", mix.sizes());
  d.L = mix.size(0);
  d.P = mix.size(2) / 2;
  TORCH_CHECK(basis.dim() == 3 && basis.size(0) == d.L * d.L && basis.size(1) == d.N && basis.size(2) == d.C, kOp,
              ": basis must be [(lmax+1)^2, N, C] = [", d.L * d.L, ", ", d.N, ", ", d.C, "], got shape ",
              basis.sizes());
  TORCH_CHECK(w1.dim() == 2 && w1.size(1) == 2 * d.C + d.L * d.P, kOp, ": w1 must be [H, 2C + (lmax+1) P] = [H, ",
              2 * d.C + d.L * d.P, "], got shape ", w1.sizes());
  d.H = w1.size(0);
  TORCH_CHECK(b1.dim() == 1 && b1.size(0) == d.H, kOp, ": b1 must be [H=", d.H, "], got shape ", b1.sizes());
  TORCH_CHECK(w2.dim() == 2 && w2.size(1) == d.H, kOp, ": w2 must be [O, H=", d.H, "], got shape ", w2.sizes());
  d.O = w2.size(0);
  TORCH_CHECK(b2.dim() == 1 && b2.size(0) == d.O, kOp, ": b2 must be [O=", d.O, "], got shape ", b2.sizes());
  TORCH_CHECK(!residual || d.O == d.C, kOp, ": residual needs O == C, got O=", d.O, ", C=", d.C);
  for (const at::Tensor* t : {&basis, &mix, &w1, &b1, &w2, &b2}) {
    TORCH_CHECK(t->scalar_type() == h.scalar_type(), kOp, ": every argument must have h's dtype (", h.scalar_type(),
                "), got ", t->scalar_type());
    TORCH_CHECK(t->device() == h.device(), kOp, ": every argument must be on ", h.device(), ", got ", t->device());
  }
  return d;
}

// Forward; also returns what the backward needs: the mixed features per degree and the MLP's
// pre-activation.
std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor> node_forward(
    const at::Tensor& h, const at::Tensor& basis_, const at::Tensor& mix, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, bool residual) {
  const NodeDims d = check_node(h, basis_, mix, w1, b1, w2, b2, residual);
  const at::Tensor basis = basis_.contiguous();
  std::vector<at::Tensor> parts{h, basis.select(0, 0)}, mixed;
  for (int64_t l = 0; l < d.L; ++l) {
    const int64_t dim = 2 * l + 1;
    // [dim, N, C] is contiguous in basis: one matmul per degree, no copy
    at::Tensor mx = at::mm(basis.narrow(0, l * l, dim).reshape({dim * d.N, d.C}), mix.select(0, l))
                        .view({dim, d.N, 2 * d.P});
    parts.push_back(at::mul(mx.narrow(2, 0, d.P), mx.narrow(2, d.P, d.P)).sum(0).mul_(1.0 / std::sqrt(double(dim))));
    mixed.push_back(mx);
  }
  at::Tensor pre = at::addmm(b1, at::cat(parts, 1), w1.t());
  at::Tensor out = at::addmm(b2, at::silu(pre), w2.t());
  if (residual) out.add_(h);
  return {out, mixed, pre};
}

at::Tensor interaction_node_impl(const at::Tensor& h, const at::Tensor& basis, const at::Tensor& mix,
                                 const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                                 const at::Tensor& b2, bool residual) {
  return std::get<0>(node_forward(h, basis, mix, w1, b1, w2, b2, residual));
}

class InteractionNodeFunction : public torch::autograd::Function<InteractionNodeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& basis, const at::Tensor& mix,
                            const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                            bool residual) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, mixed, pre] = node_forward(h, basis, mix, w1, b1, w2, b2, residual);
    std::vector<at::Tensor> saved{mix, w1, w2, pre};
    saved.insert(saved.end(), mixed.begin(), mixed.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["residual"] = residual;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(), kOp,
                ": only first-order gradients are implemented (export-only fused op); double backward / "
                "create_graph=True needs the reference modules (training path)");
    variable_list result(8);
    const at::Tensor& g_out = grads[0];
    if (!g_out.defined()) return result;
    auto s = ctx->get_saved_variables();
    const at::Tensor &mix = s[0], &w1 = s[1], &w2 = s[2], &pre = s[3];
    const int64_t L = mix.size(0), C = mix.size(1), P = mix.size(2) / 2, N = g_out.size(0);
    at::AutoDispatchBelowADInplaceOrView guard;
    const at::Tensor g_inv = at::mm(at::silu_backward(at::mm(g_out, w2), pre), w1);  // [N, 2C + L P]
    if (ctx->needs_input_grad(0)) {
      at::Tensor g_h = g_inv.narrow(1, 0, C).contiguous();
      if (ctx->saved_data["residual"].toBool()) g_h.add_(g_out);
      result[0] = g_h;
    }
    at::Tensor g_basis = at::empty({L * L, N, C}, g_out.options());
    for (int64_t l = 0; l < L; ++l) {
      const int64_t dim = 2 * l + 1;
      const at::Tensor& mx = s[4 + l];
      const at::Tensor gB = g_inv.narrow(1, 2 * C + l * P, P).mul(1.0 / std::sqrt(double(dim)));  // [N, P]
      // d B / d U = V, d B / d V = U
      const at::Tensor g_mx = at::cat({at::mul(mx.narrow(2, P, P), gB), at::mul(mx.narrow(2, 0, P), gB)}, 2);
      at::Tensor dst = g_basis.narrow(0, l * l, dim).view({dim * N, C});
      at::mm_out(dst, g_mx.view({dim * N, 2 * P}), mix.select(0, l).t());
    }
    g_basis.select(0, 0).add_(g_inv.narrow(1, C, C));
    result[1] = g_basis;
    return result;
  }
};

at::Tensor interaction_node_autograd(const at::Tensor& h, const at::Tensor& basis, const at::Tensor& mix,
                                     const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                                     const at::Tensor& b2, bool residual) {
  if (at::GradMode::is_enabled())
    for (const at::Tensor* t : {&mix, &w1, &b1, &w2, &b2})
      TORCH_CHECK(!t->requires_grad(), kOp,
                  ": differentiates w.r.t. h and basis only, but a weight requires grad (export-only op: freeze the "
                  "parameters, or use the reference modules to train)");
  return InteractionNodeFunction::apply(h, basis, mix, w1, b1, w2, b2, residual);
}

}  // namespace
}  // namespace mlffd

TORCH_LIBRARY_FRAGMENT(mlffd, m) {
  m.def("interaction_node(Tensor h, Tensor basis, Tensor mix, Tensor w1, Tensor b1, Tensor w2, Tensor b2, "
        "bool residual) -> Tensor");
}

// ATen calls only: the same kernel serves every device.
TORCH_LIBRARY_IMPL(mlffd, CompositeExplicitAutograd, m) { m.impl("interaction_node", &mlffd::interaction_node_impl); }

TORCH_LIBRARY_IMPL(mlffd, Autograd, m) { m.impl("interaction_node", &mlffd::interaction_node_autograd); }
