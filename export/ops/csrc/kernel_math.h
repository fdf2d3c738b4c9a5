// Per-element formulas shared by the CPU kernels (fused_edge.cpp) and the CUDA kernels
// (fused_edge_cuda.cu): one copy of the maths, so the CPU tests check what the GPU computes.
//
// Everything here is header-only, allocation-free and compiles as host code (g++) and as
// __host__ __device__ code (nvcc). Constants are literals (not std::sqrt) so device code needs
// no host math; each literal is the double that e3nn's Python expression evaluates to.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MLFFD_HD __host__ __device__ __forceinline__
#else
#define MLFFD_HD inline
#endif

namespace mlffd {

// Largest lmax of the spherical harmonics the fused ops implement ((lmax+1)^2 = 16 components).
constexpr int64_t kMaxLmax = 3;
constexpr int64_t kMaxSh = (kMaxLmax + 1) * (kMaxLmax + 1);

// torch.nn.functional.normalize's eps (e3nn's SphericalHarmonics(normalize=True) uses it).
constexpr double kNormalizeEps = 1e-12;

// l of spherical-harmonic component m (e3nn order: l = 0, 1, 1, 1, 2, ...).
MLFFD_HD int64_t degree_of(int64_t m) {
  int64_t l = 0;
  while ((l + 1) * (l + 1) <= m) ++l;
  return l;
}

// Forward-mode dual number: value and gradient w.r.t. the unit vector's x, y, z.
template <typename T>
struct Dual {
  T v, dx, dy, dz;
};
template <typename T>
MLFFD_HD Dual<T> operator*(T a, const Dual<T>& b) { return {a * b.v, a * b.dx, a * b.dy, a * b.dz}; }
template <typename T>
MLFFD_HD Dual<T> operator*(const Dual<T>& a, const Dual<T>& b) {
  return {a.v * b.v, a.dx * b.v + a.v * b.dx, a.dy * b.v + a.v * b.dy, a.dz * b.v + a.v * b.dz};
}
template <typename T>
MLFFD_HD Dual<T> operator+(const Dual<T>& a, const Dual<T>& b) {
  return {a.v + b.v, a.dx + b.dx, a.dy + b.dy, a.dz + b.dz};
}
template <typename T>
MLFFD_HD Dual<T> operator-(const Dual<T>& a, const Dual<T>& b) {
  return {a.v - b.v, a.dx - b.dx, a.dy - b.dy, a.dz - b.dz};
}

// e3nn's _spherical_harmonics (same expressions, same order), "component" normalisation, for
// components 1 .. (lmax+1)^2 - 1 of a unit vector; sh_0_0 = 1 is written by the caller.
// V is scalar_t (forward) or Dual<scalar_t> (backward); S is scalar_t (constants).
template <typename S, typename V>
MLFFD_HD void sh_poly(int64_t lmax, const V& x, const V& y, const V& z, V* out) {
  if (lmax < 1) return;
  const S s3 = S(1.7320508075688772);    // sqrt(3)
  const S s15 = S(3.872983346207417);    // sqrt(15)
  const S s5 = S(2.23606797749979);      // sqrt(5)
  const S h15 = S(1.9364916731037085);   // sqrt(15) / 2
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
  const V sh24 = h15 * (z * z - x * x);
  out[4] = sh20;
  out[5] = sh21;
  out[6] = sh22;
  out[7] = sh23;
  out[8] = sh24;
  if (lmax < 3) return;
  const S c42 = S(1.0801234497346432);   // sqrt(42) / 6
  const S s7 = S(2.6457513110645907);    // sqrt(7)
  const S c168 = S(1.620185174601965);   // sqrt(168) / 8
  const S c7h = S(1.3228756555322954);   // sqrt(7) / 2
  out[9] = c42 * (sh20 * z + sh24 * x);
  out[10] = s7 * sh20 * y;
  out[11] = c168 * (S(4.0) * y2 - x2z2) * x;
  out[12] = c7h * y * (S(2.0) * y2 - S(3.0) * x2z2);
  out[13] = c168 * z * (S(4.0) * y2 - x2z2);
  out[14] = s7 * sh24 * y;
  out[15] = c42 * (sh24 * z - sh20 * x);
}

// Spherical harmonics of one edge direction u = vec / max(|vec|, eps) (e3nn normalises that way)
// as dual numbers: d[m].v = Y_m(u), d[m].dx/dy/dz = dY_m/du. Returns |vec|.
template <typename T>
MLFFD_HD T sh_with_gradient(int64_t lmax, T x, T y, T z, Dual<T>* d) {
  using std::sqrt;
  const T r = sqrt(x * x + y * y + z * z);
  const T n = r > T(kNormalizeEps) ? r : T(kNormalizeEps);
  d[0] = Dual<T>{T(1), T(0), T(0), T(0)};
  sh_poly<T, Dual<T>>(lmax, Dual<T>{x / n, 1, 0, 0}, Dual<T>{y / n, 0, 1, 0}, Dual<T>{z / n, 0, 0, 1}, d);
  return r;
}

// d loss / d vec for one edge of length r, from d loss / d |vec| (g_len) and d loss / d unit
// vector (gx, gy, gz): (g - u (u . g)) / r + g_len u. Below eps the clamp of the normalisation
// is constant (g / eps, no projection) and vector_norm's gradient is 0 at 0 (as in torch).
// Selects instead of branches, so that the CPU loops over edges vectorise.
template <typename T>
MLFFD_HD void vec_grad_from_unit(T x, T y, T z, T r, T g_len, T gx, T gy, T gz, T* grad) {
  const bool clamped = !(r > T(kNormalizeEps));
  const T inv_n = T(1) / (clamped ? T(kNormalizeEps) : r);
  const T inv_r = r > T(0) ? T(1) / r : T(0);
  const T ux = x * inv_n, uy = y * inv_n, uz = z * inv_n;
  const T ug = clamped ? T(0) : ux * gx + uy * gy + uz * gz;
  grad[0] = (gx - ux * ug) * inv_n + g_len * x * inv_r;
  grad[1] = (gy - uy * ug) * inv_n + g_len * y * inv_r;
  grad[2] = (gz - uz * ug) * inv_n + g_len * z * inv_r;
}

// ---- tabulated radial functions ---------------------------------------------------------------
// A radial table [n_int, 4, K] (fitted from the student's radial network at export,
// export/fused.py) holds, for each of n_int equal intervals of [0, r_max) and each of K columns,
// the cubic R(r) = a + t (b + t (c + t d)) with t = r n_int / r_max - k in [0, 1] on interval k,
// stored as table[k, 0..3, column]. Every column is zero from r_max on (the cutoff envelope).

// Interval k and local coordinate t of r, with inv_h = n_int / r_max; false when r >= r_max, where
// every column is zero. NaN gives k = 0 and t = NaN (it propagates). Branch-free, so that the CPU
// kernels' loops over edges vectorise. In float32 t carries the rounding of r itself (~1e-7 of an
// interval per A), like any float32 evaluation.
template <typename T>
MLFFD_HD bool spline_locate(T r, T inv_h, int n_int, int& k, T& t) {
  const T x = r * inv_h;
  const bool inside = !(x >= T(n_int));
  const T clamped = (x > T(0) && inside) ? x : T(0);
  const int kk = static_cast<int>(clamped);
  k = kk < n_int - 1 ? kk : n_int - 1;
  t = x - T(k);
  return inside;
}

// R at t and dR/dt, for the column whose coefficients are coef[0], coef[K], coef[2K], coef[3K].
template <typename T>
MLFFD_HD T spline_value(const T* coef, int64_t K, T t) {
  return coef[0] + t * (coef[K] + t * (coef[2 * K] + t * coef[3 * K]));
}
template <typename T>
MLFFD_HD T spline_slope(const T* coef, int64_t K, T t) {
  return coef[K] + t * (T(2) * coef[2 * K] + T(3) * t * coef[3 * K]);
}

// x^q for the envelope: repeated multiplication when q is a small integer (the default p = 6),
// else pow. Same value as torch.pow within a few ulps.
template <typename T>
MLFFD_HD T power(T x, T q) {
  using std::pow;
  const int qi = static_cast<int>(q);
  if (T(qi) == q && qi >= 0 && qi <= 32) {
    T out = T(1);
    for (int k = 0; k < qi; ++k) out *= x;
    return out;
  }
  return pow(x, q);
}

// distiller.model.radial.PolynomialCutoff: u(x) = 1 - c1 x^p + c2 x^(p+1) - c3 x^(p+2) for
// x = r / cutoff < 1, else 0; and du/dr.
template <typename T>
struct Envelope {
  T cutoff, p, c1, c2, c3;
  MLFFD_HD Envelope(double cutoff_, double p_)
      : cutoff(T(cutoff_)),
        p(T(p_)),
        c1(T((p_ + 1.0) * (p_ + 2.0) / 2.0)),
        c2(T(p_ * (p_ + 2.0))),
        c3(T(p_ * (p_ + 1.0) / 2.0)) {}

  MLFFD_HD T value(T r) const {
    const T x = r / cutoff;
    if (!(x < T(1))) return T(0);
    return T(1) - c1 * power(x, p) + c2 * power(x, p + T(1)) - c3 * power(x, p + T(2));
  }

  MLFFD_HD T derivative(T r) const {
    const T x = r / cutoff;
    if (!(x < T(1))) return T(0);
    return (-c1 * p * power(x, p - T(1)) + c2 * (p + T(1)) * power(x, p) - c3 * (p + T(2)) * power(x, p + T(1))) /
           cutoff;
  }
};

// d/dr [prefactor sin(f r) / r], given sin(f r) and cos(f r).
template <typename T>
MLFFD_HD T bessel_derivative(T prefactor, T f, T r, T sin_fr, T cos_fr) {
  return prefactor * (f * cos_fr * r - sin_fr) / (r * r);
}

// 0.5 voigt(-vec (x) grad) in mlffd's (ASE's) order xx yy zz yz xz xy (distiller/voigt.py): one edge's
// share of each end atom's virial.
template <typename T>
MLFFD_HD void half_edge_virial(const T* vec, const T* grad, T* out) {
  out[0] = -vec[0] * grad[0] * T(0.5);
  out[1] = -vec[1] * grad[1] * T(0.5);
  out[2] = -vec[2] * grad[2] * T(0.5);
  out[3] = -vec[1] * grad[2] * T(0.5);
  out[4] = -vec[0] * grad[2] * T(0.5);
  out[5] = -vec[0] * grad[1] * T(0.5);
}

}  // namespace mlffd
