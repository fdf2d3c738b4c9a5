// Argument checks and device-generic helpers of the mlffd ops, shared by the CPU kernels, the CUDA
// kernels and their host emulation (tests). No op is registered here, so a second library (the
// emulation) can compile this file too. Declarations: conv_scatter.h, fused_edge.h.
#include "conv_scatter.h"
#include "fused_edge.h"
#include "kernel_math.h"

namespace mlffd {
namespace {

void check_float(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

void check_same(const at::Tensor& t, const at::Tensor& ref, const char* name, const char* op) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " dtype (", t.scalar_type(),
              ") must equal the first argument's (", ref.scalar_type(), ")");
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " must be on ", ref.device(), ", got ", t.device());
}

void check_index(const at::Tensor& t, const at::Tensor& ref, int64_t E, const char* name, const char* op) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == E, op, ": ", name, " must be [E] = [", E, "], got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " must be on ", ref.device(), ", got ", t.device());
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// conv_scatter (conv_scatter.h)
// ------------------------------------------------------------------------------------------------

int64_t check_conv_scatter_args(const at::Tensor& weights, const at::Tensor& sh, const at::Tensor& centre,
                                int64_t n_nodes, int64_t lmax, const char* op) {
  TORCH_CHECK(lmax >= 0, op, ": lmax must be >= 0, got ", lmax);
  TORCH_CHECK(n_nodes >= 0, op, ": n_nodes must be >= 0, got ", n_nodes);
  TORCH_CHECK(weights.dim() == 3, op, ": weights must be [E, lmax+1, C], got shape ", weights.sizes());
  TORCH_CHECK(sh.dim() == 2, op, ": sh must be [E, (lmax+1)^2], got shape ", sh.sizes());
  TORCH_CHECK(centre.dim() == 1, op, ": centre must be [E], got shape ", centre.sizes());
  const int64_t E = weights.size(0);
  const int64_t L = lmax + 1;
  TORCH_CHECK(weights.size(1) == L, op, ": weights must be [E, lmax+1, C] with lmax=", lmax,
              ", got shape ", weights.sizes());
  TORCH_CHECK(sh.size(0) == E && sh.size(1) == L * L, op, ": sh must be [E, (lmax+1)^2] = [", E, ", ", L * L,
              "], got shape ", sh.sizes());
  TORCH_CHECK(centre.size(0) == E, op, ": centre must be [E] = [", E, "], got shape ", centre.sizes());
  TORCH_CHECK(weights.scalar_type() == at::kFloat || weights.scalar_type() == at::kDouble, op,
              ": weights must be float32 or float64, got ", weights.scalar_type());
  TORCH_CHECK(sh.scalar_type() == weights.scalar_type(), op, ": sh dtype (", sh.scalar_type(),
              ") must equal weights dtype (", weights.scalar_type(), ")");
  TORCH_CHECK(centre.scalar_type() == at::kLong, op, ": centre must be int64, got ", centre.scalar_type());
  TORCH_CHECK(sh.device() == weights.device() && centre.device() == weights.device(), op,
              ": weights, sh and centre must be on one device, got ", weights.device(), ", ", sh.device(), ", ",
              centre.device());
  return E;
}

void check_grad_out(const at::Tensor& grad_out, const at::Tensor& weights, int64_t lmax, const char* op) {
  const int64_t L = lmax + 1;
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(1) == weights.size(2) && grad_out.size(2) == L * L, op,
              ": grad_out must be [n_nodes, C, (lmax+1)^2] with C=", weights.size(2), ", lmax=", lmax,
              ", got shape ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == weights.scalar_type(), op, ": grad_out dtype (", grad_out.scalar_type(),
              ") must equal weights dtype (", weights.scalar_type(), ")");
  TORCH_CHECK(grad_out.device() == weights.device(), op, ": grad_out must be on ", weights.device(), ", got ",
              grad_out.device());
}

void check_centre_sorted_generic(const at::Tensor& centre, int64_t n_nodes, const char* op) {
  const int64_t E = centre.size(0);
  if (E == 0) return;
  at::Tensor bad = at::logical_or(centre.select(0, 0) < 0, centre.select(0, E - 1) >= n_nodes);
  if (E > 1) bad = at::logical_or(bad, (centre.slice(0, 1, E) < centre.slice(0, 0, E - 1)).any());
  TORCH_CHECK(!bad.item<bool>(), op, ": centre must be sorted ascending (edges grouped by centre atom) ",
              "with values in [0, n_nodes=", n_nodes, ")");
}

// ------------------------------------------------------------------------------------------------
// fused edge ops (fused_edge.h)
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
  check_float(radial, "radial", op);
  check_same(h, radial, "h", op);
  check_same(sh, radial, "sh", op);
  check_index(centre, radial, E, "centre", op);
  check_index(neighbour, radial, E, "neighbour", op);
  return E;
}

void check_conv_h_grad_out(const at::Tensor& grad_out, const at::Tensor& radial, int64_t n_nodes, int64_t lmax,
                           const char* op) {
  const int64_t C = radial.size(2), M = (lmax + 1) * (lmax + 1);
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == n_nodes && grad_out.size(1) == C && grad_out.size(2) == M,
              op, ": grad_out must be [n_nodes, C, (lmax+1)^2] = [", n_nodes, ", ", C, ", ", M, "], got shape ",
              grad_out.sizes());
  check_same(grad_out, radial, "grad_out", op);
}

void check_geometry(const at::Tensor& vec, int64_t lmax, const char* op) {
  TORCH_CHECK(lmax >= 0 && lmax <= kMaxLmax, op, ": lmax must be in [0, ", kMaxLmax, "], got ", lmax);
  TORCH_CHECK(vec.dim() == 2 && vec.size(1) == 3, op, ": vec must be [E, 3], got shape ", vec.sizes());
  check_float(vec, "vec", op);
}

void check_geometry_grads(const at::Tensor& grad_length, const at::Tensor& grad_sh, const at::Tensor& vec,
                          int64_t lmax, const char* op) {
  const int64_t E = vec.size(0), M = (lmax + 1) * (lmax + 1);
  TORCH_CHECK(grad_length.dim() == 1 && grad_length.size(0) == E, op, ": grad_length must be [E] = [", E,
              "], got shape ", grad_length.sizes());
  TORCH_CHECK(grad_sh.dim() == 2 && grad_sh.size(0) == E && grad_sh.size(1) == M, op, ": grad_sh must be [E, ", M,
              "], got shape ", grad_sh.sizes());
  check_same(grad_length, vec, "grad_length", op);
  check_same(grad_sh, vec, "grad_sh", op);
}

void check_edge_forces(const at::Tensor& edge_grad, const at::Tensor& edge_vec, const at::Tensor& centre,
                       const at::Tensor& neighbour, int64_t n_nodes, const char* op) {
  TORCH_CHECK(n_nodes >= 0, op, ": n_nodes must be >= 0, got ", n_nodes);
  TORCH_CHECK(edge_grad.dim() == 2 && edge_grad.size(1) == 3, op, ": edge_grad must be [E, 3], got shape ",
              edge_grad.sizes());
  const int64_t E = edge_grad.size(0);
  TORCH_CHECK(edge_vec.dim() == 2 && edge_vec.size(0) == E && edge_vec.size(1) == 3, op,
              ": edge_vec must be [E, 3] = [", E, ", 3], got shape ", edge_vec.sizes());
  check_float(edge_grad, "edge_grad", op);
  check_same(edge_vec, edge_grad, "edge_vec", op);
  check_index(centre, edge_grad, E, "centre", op);
  check_index(neighbour, edge_grad, E, "neighbour", op);
}

ConvHBackward prepare_conv_h_backward(const at::Tensor& grad_out, const at::Tensor& radial, const at::Tensor& h,
                                      const at::Tensor& sh, const at::Tensor& centre, const at::Tensor& neighbour,
                                      int64_t lmax, bool need_h, const char* op) {
  ConvHBackward b;
  b.E = check_conv_h(radial, h, sh, centre, neighbour, lmax, op);
  b.N = h.size(0);
  b.C = radial.size(2);
  b.L = lmax + 1;
  check_conv_h_grad_out(grad_out, radial, b.N, lmax, op);
  b.grad_out = grad_out.contiguous();
  b.radial = radial.contiguous();
  b.h = h.contiguous();
  b.sh = sh.contiguous();
  b.centre = centre.contiguous();
  b.neighbour = neighbour.contiguous();
  const auto options = b.radial.options();
  b.grad_radial = at::empty({b.E, b.L, b.C}, options);  // every entry written by the kernels
  b.grad_sh = at::empty({b.E, b.L * b.L}, options);
  b.trivial = b.E == 0 || b.C == 0;
  if (b.E > 0 && b.C == 0) b.grad_sh.zero_();
  b.grad_h = need_h ? at::zeros({b.N, b.C}, options) : at::empty({0}, options);
  if (need_h && !b.trivial) b.gh_edge = at::empty({b.E, b.C}, options);
  return b;
}

void check_edges_generic(const at::Tensor& centre, const at::Tensor& neighbour, int64_t n_nodes, const char* op) {
  const int64_t E = centre.size(0);
  if (E == 0) return;
  at::Tensor bad = at::logical_or(centre.select(0, 0) < 0, centre.select(0, E - 1) >= n_nodes);
  if (E > 1) bad = at::logical_or(bad, (centre.slice(0, 1, E) < centre.slice(0, 0, E - 1)).any());
  bad = at::logical_or(bad, at::logical_or(neighbour.min() < 0, neighbour.max() >= n_nodes));
  TORCH_CHECK(!bad.item<bool>(), op, ": centre must be sorted ascending (edges grouped by centre atom) and centre "
              "and neighbour must lie in [0, n_nodes=", n_nodes, ")");
}

std::tuple<at::Tensor, at::Tensor> group_by_neighbour(const at::Tensor& neighbour, int64_t n_nodes) {
  auto sorted = at::sort(neighbour, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor bounds = at::arange(n_nodes + 1, neighbour.options());
  return {std::get<1>(sorted), at::searchsorted(std::get<0>(sorted), bounds)};
}

void check_radial(const at::Tensor& length, const at::Tensor& freq, const at::Tensor& w1, const at::Tensor& b1,
                  const at::Tensor& w2, const at::Tensor& b2, int64_t n_split, const char* op) {
  TORCH_CHECK(length.dim() == 1, op, ": length must be [E], got shape ", length.sizes());
  check_float(length, "length", op);
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

}  // namespace mlffd
