// mlffd::conv_scatter gradients, registered under the Autograd key (works from libtorch C++,
// no Python needed). See conv_scatter.h for the formulas.
//
// The backward is itself the op mlffd::conv_scatter_backward, which is bilinear in
// (grad_out, weights/sh); its own gradients are again conv_scatter / conv_scatter_backward calls:
//   d/d grad_out : conv_scatter(gg_w, sh) + conv_scatter(weights, gg_sh)
//   d/d weights  : grad_weights part of conv_scatter_backward(grad_out, ., gg_sh)
//   d/d sh       : grad_sh part of conv_scatter_backward(grad_out, gg_w, .)
// so every order of differentiation is available at the cost of the first-order kernels.
#include "conv_scatter.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace mlffd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Calls through the dispatcher: below the Autograd key inside forward(), through it in backward()
// so that create_graph=True records the gradient computation.
at::Tensor call_conv_scatter(const at::Tensor& weights, const at::Tensor& sh, const at::Tensor& centre,
                             int64_t n_nodes, int64_t lmax) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlffd::conv_scatter", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t)>();
  return op.call(weights, sh, centre, n_nodes, lmax);
}

std::tuple<at::Tensor, at::Tensor> call_conv_scatter_backward(const at::Tensor& grad_out, const at::Tensor& weights,
                                                              const at::Tensor& sh, const at::Tensor& centre,
                                                              int64_t lmax) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mlffd::conv_scatter_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, const at::Tensor&, int64_t)>();
  return op.call(grad_out, weights, sh, centre, lmax);
}

class ConvScatterFunction : public torch::autograd::Function<ConvScatterFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& weights, const at::Tensor& sh,
                            const at::Tensor& centre, int64_t n_nodes, int64_t lmax) {
    ctx->save_for_backward({weights, sh, centre});
    ctx->saved_data["lmax"] = lmax;
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_conv_scatter(weights, sh, centre, n_nodes, lmax);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& grad_out = grads[0];
    if (!grad_out.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    auto saved = ctx->get_saved_variables();
    const int64_t lmax = ctx->saved_data["lmax"].toInt();
    auto [grad_weights, grad_sh] = call_conv_scatter_backward(grad_out, saved[0], saved[1], saved[2], lmax);
    return {grad_weights, grad_sh, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class ConvScatterBackwardFunction : public torch::autograd::Function<ConvScatterBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out, const at::Tensor& weights,
                               const at::Tensor& sh, const at::Tensor& centre, int64_t lmax) {
    ctx->save_for_backward({grad_out, weights, sh, centre});
    ctx->saved_data["lmax"] = lmax;
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [grad_weights, grad_sh] = call_conv_scatter_backward(grad_out, weights, sh, centre, lmax);
    return {grad_weights, grad_sh};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& gg_weights = grads[0];
    const at::Tensor& gg_sh = grads[1];
    auto saved = ctx->get_saved_variables();
    const at::Tensor& grad_out = saved[0];
    const at::Tensor& weights = saved[1];
    const at::Tensor& sh = saved[2];
    const at::Tensor& centre = saved[3];
    const int64_t lmax = ctx->saved_data["lmax"].toInt();
    const int64_t n_nodes = grad_out.size(0);

    at::Tensor d_grad_out;
    if (gg_weights.defined()) d_grad_out = call_conv_scatter(gg_weights, sh, centre, n_nodes, lmax);
    if (gg_sh.defined()) {
      at::Tensor term = call_conv_scatter(weights, gg_sh, centre, n_nodes, lmax);
      d_grad_out = d_grad_out.defined() ? d_grad_out + term : term;
    }
    at::Tensor d_weights, d_sh;
    if (gg_weights.defined() || gg_sh.defined()) {
      // conv_scatter_backward(grad_out, A, B) = (sum_m grad_out * B, sum_c grad_out * A):
      // with A = gg_weights and B = gg_sh it gives (d/d weights, d/d sh) of <gg, backward>.
      at::Tensor a = gg_weights.defined() ? gg_weights : at::zeros_like(weights);
      at::Tensor b = gg_sh.defined() ? gg_sh : at::zeros_like(sh);
      auto [dw, dsh] = call_conv_scatter_backward(grad_out, a, b, centre, lmax);
      if (gg_sh.defined()) d_weights = dw;
      if (gg_weights.defined()) d_sh = dsh;
    }
    return {d_grad_out, d_weights, d_sh, at::Tensor(), at::Tensor()};
  }
};

at::Tensor conv_scatter_autograd(const at::Tensor& weights, const at::Tensor& sh, const at::Tensor& centre,
                                 int64_t n_nodes, int64_t lmax) {
  return ConvScatterFunction::apply(weights, sh, centre, n_nodes, lmax);
}

std::tuple<at::Tensor, at::Tensor> conv_scatter_backward_autograd(const at::Tensor& grad_out,
                                                                  const at::Tensor& weights, const at::Tensor& sh,
                                                                  const at::Tensor& centre, int64_t lmax) {
  auto out = ConvScatterBackwardFunction::apply(grad_out, weights, sh, centre, lmax);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace mlffd

TORCH_LIBRARY_IMPL(mlffd, Autograd, m) {
  m.impl("conv_scatter", &mlffd::conv_scatter_autograd);
  m.impl("conv_scatter_backward", &mlffd::conv_scatter_backward_autograd);
}
