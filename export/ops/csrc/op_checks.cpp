// Argument checks and device-generic helpers of the mlffd ops, shared by the CPU kernels, the CUDA
// kernels and their host emulation (tests). No op is registered here, so a second library (the
// emulation) can compile this file too. Declarations: fused_edge.h, spline_edge.h.
#include "fused_edge.h"
#include "kernel_math.h"
#include "spline_edge.h"

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

int64_t check_edge_forces(const at::Tensor& edge_grad, const at::Tensor& edge_vec, const at::Tensor& rowptr,
                          const at::Tensor& nb_order, const at::Tensor& nb_start, const char* op) {
  TORCH_CHECK(edge_grad.dim() == 2 && edge_grad.size(1) == 3, op, ": edge_grad must be [E, 3], got shape ",
              edge_grad.sizes());
  const int64_t E = edge_grad.size(0);
  TORCH_CHECK(edge_vec.dim() == 2 && edge_vec.size(0) == E && edge_vec.size(1) == 3, op,
              ": edge_vec must be [E, 3] = [", E, ", 3], got shape ", edge_vec.sizes());
  check_float(edge_grad, "edge_grad", op);
  check_same(edge_vec, edge_grad, "edge_vec", op);
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.size(0) >= 1, op, ": rowptr must be [n_nodes + 1], got shape ",
              rowptr.sizes());
  check_graph(rowptr, nb_order, nb_start, E, edge_grad, op);
  return rowptr.size(0) - 1;
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

// ------------------------------------------------------------------------------------------------
// tabulated-radial ops (spline_edge.h)
// ------------------------------------------------------------------------------------------------

void check_edge_list(const at::Tensor& centre, const at::Tensor& neighbour, int64_t n_nodes, const char* op) {
  TORCH_CHECK(n_nodes >= 0, op, ": n_nodes must be >= 0, got ", n_nodes);
  TORCH_CHECK(centre.dim() == 1, op, ": centre must be [E], got shape ", centre.sizes());
  TORCH_CHECK(centre.scalar_type() == at::kLong, op, ": centre must be int64, got ", centre.scalar_type());
  check_index(neighbour, centre, centre.size(0), "neighbour", op);
}

void check_radial_table(const at::Tensor& length, const at::Tensor& table, double r_max, const char* op) {
  TORCH_CHECK(length.dim() == 1, op, ": length must be [E], got shape ", length.sizes());
  check_float(length, "length", op);
  TORCH_CHECK(table.dim() == 3 && table.size(0) >= 1 && table.size(1) == 4, op,
              ": table must be [n_intervals, 4, K] (cubic coefficients per interval), got shape ", table.sizes());
  check_same(table, length, "table", op);
  TORCH_CHECK(r_max > 0.0, op, ": r_max must be > 0, got ", r_max);
}

void check_radial_grad(const at::Tensor& grad_out, const at::Tensor& length, const at::Tensor& table, const char* op) {
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == length.size(0) && grad_out.size(1) == table.size(2), op,
              ": grad_out must be [E, K] = [", length.size(0), ", ", table.size(2), "], got shape ", grad_out.sizes());
  check_same(grad_out, length, "grad_out", op);
}

void check_graph(const at::Tensor& rowptr, const at::Tensor& nb_order, const at::Tensor& nb_start, int64_t E,
                 const at::Tensor& ref, const char* op) {
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.size(0) >= 1, op, ": rowptr must be [n_nodes + 1], got shape ",
              rowptr.sizes());
  const int64_t N = rowptr.size(0) - 1;
  check_index(rowptr, ref, N + 1, "rowptr", op);
  check_index(nb_order, ref, E, "nb_order", op);
  check_index(nb_start, ref, N + 1, "nb_start", op);
}

SplineConvArgs prepare_spline_conv(const at::Tensor& vec, const at::Tensor& h, const at::Tensor& table,
                                   const at::Tensor& neighbour, const at::Tensor& rowptr, const at::Tensor& nb_order,
                                   const at::Tensor& nb_start, double r_max, int64_t lmax, const char* op) {
  TORCH_CHECK(lmax >= 0 && lmax <= kMaxLmax, op, ": lmax must be in [0, ", kMaxLmax, "], got ", lmax);
  TORCH_CHECK(vec.dim() == 2 && vec.size(1) == 3, op, ": vec must be [E, 3], got shape ", vec.sizes());
  check_float(vec, "vec", op);
  const int64_t E = vec.size(0), L = lmax + 1;
  TORCH_CHECK(h.dim() == 2, op, ": h must be [n_nodes, C], got shape ", h.sizes());
  check_same(h, vec, "h", op);
  const int64_t N = h.size(0), C = h.size(1);
  TORCH_CHECK(table.dim() == 3 && table.size(0) >= 1 && table.size(1) == 4 && table.size(2) == L * C, op,
              ": table must be [n_intervals, 4, (lmax+1) C] = [n, 4, ", L * C, "], got shape ", table.sizes());
  check_same(table, vec, "table", op);
  TORCH_CHECK(r_max > 0.0, op, ": r_max must be > 0, got ", r_max);
  check_index(neighbour, vec, E, "neighbour", op);
  check_graph(rowptr, nb_order, nb_start, E, vec, op);
  TORCH_CHECK(rowptr.size(0) == N + 1, op, ": rowptr must be [n_nodes + 1] = [", N + 1, "], got shape ",
              rowptr.sizes());
  SplineConvArgs a;
  a.vec = vec.contiguous();
  a.h = h.contiguous();
  a.table = table.contiguous();
  a.neighbour = neighbour.contiguous();
  a.rowptr = rowptr.contiguous();
  a.nb_order = nb_order.contiguous();
  a.nb_start = nb_start.contiguous();
  a.E = E;
  a.N = N;
  a.C = C;
  a.L = L;
  a.n_int = table.size(0);
  a.r_max = r_max;
  return a;
}

void check_spline_conv_grad(const at::Tensor& grad_out, const SplineConvArgs& a, const char* op) {
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == a.L * a.L && grad_out.size(1) == a.N &&
                  grad_out.size(2) == a.C,
              op, ": grad_out must be [(lmax+1)^2, n_nodes, C] = [", a.L * a.L, ", ", a.N, ", ", a.C, "], got shape ",
              grad_out.sizes());
  check_same(grad_out, a.vec, "grad_out", op);
}

}  // namespace mlffd
