// The gradients of e3nn's spherical harmonics as polynomials in the unit vector u, for the CPU
// backward of mlffd::spline_conv (spline_conv_cpu.h).
//
// Y_m(u) of degree l is a homogeneous polynomial of degree l in (u_x, u_y, u_z), so its gradient is
// one of degree l - 1. Contracted with an atom's output gradient G[m, c] (fixed for all its edges),
//   grad_l[c](u) = sum_{m in l} G[m, c] dY_m/du
// is then a polynomial of degree l - 1 whose coefficients are computed once per atom; per edge it
// costs 3 x (number of monomials) multiply-adds per channel, and, by Euler's theorem for
// homogeneous polynomials, P_l[c] = sum_{m in l} G[m, c] Y_m(u) = (u . grad_l[c]) / l costs 3 more.
// The coefficients come from expanding kernel_math.h's sh_poly with a polynomial type, so the
// formulas have one source.
#pragma once

#include "kernel_math.h"

#include <array>
#include <stdexcept>

namespace mlffd {

// Monomials u_x^a u_y^b u_z^c, ordered by degree d = a + b + c, then a descending, then b descending.
constexpr int monomial_count(int d) { return (d + 1) * (d + 2) / 2; }        // of degree d
constexpr int monomial_offset(int d) { return d * (d + 1) * (d + 2) / 6; }  // of degree < d
constexpr int monomial_index(int a, int b, int c) {
  const int d = a + b + c;
  return monomial_offset(d) + (d - a) * (d - a + 1) / 2 + (d - a - b);
}
constexpr int kMaxMonomials = monomial_offset(kMaxLmax + 1);  // degrees 0 .. kMaxLmax

// Polynomial of degree <= kMaxLmax in the monomial basis above (host only, built once).
struct Polynomial {
  std::array<double, kMaxMonomials> c{};

  static std::array<std::array<int, 3>, kMaxMonomials> exponents() {
    std::array<std::array<int, 3>, kMaxMonomials> e{};
    for (int d = 0; d <= kMaxLmax; ++d)
      for (int a = d; a >= 0; --a)
        for (int b = d - a; b >= 0; --b) e[monomial_index(a, b, d - a - b)] = {a, b, d - a - b};
    return e;
  }
  static Polynomial monomial(int a, int b, int c) {
    Polynomial p;
    p.c[monomial_index(a, b, c)] = 1.0;
    return p;
  }
};

inline Polynomial operator+(const Polynomial& p, const Polynomial& q) {
  Polynomial r;
  for (int i = 0; i < kMaxMonomials; ++i) r.c[i] = p.c[i] + q.c[i];
  return r;
}
inline Polynomial operator-(const Polynomial& p, const Polynomial& q) {
  Polynomial r;
  for (int i = 0; i < kMaxMonomials; ++i) r.c[i] = p.c[i] - q.c[i];
  return r;
}
inline Polynomial operator*(double s, const Polynomial& p) {
  Polynomial r;
  for (int i = 0; i < kMaxMonomials; ++i) r.c[i] = s * p.c[i];
  return r;
}
inline Polynomial operator*(const Polynomial& p, const Polynomial& q) {
  static const auto e = Polynomial::exponents();
  Polynomial r;
  for (int i = 0; i < kMaxMonomials; ++i)
    for (int j = 0; j < kMaxMonomials; ++j) {
      if (p.c[i] == 0.0 || q.c[j] == 0.0) continue;
      const int a = e[i][0] + e[j][0], b = e[i][1] + e[j][1], c = e[i][2] + e[j][2];
      if (a + b + c > kMaxLmax) throw std::logic_error("mlffd: spherical-harmonic polynomial beyond lmax");
      r.c[monomial_index(a, b, c)] += p.c[i] * q.c[j];
    }
  return r;
}

// coef[m][d][k]: the coefficient of the k-th monomial of degree l(m) - 1 in dY_m/du_d (m >= 1).
struct ShGradientPolynomials {
  double coef[kMaxSh][3][monomial_count(kMaxLmax - 1)] = {};
};

inline const ShGradientPolynomials& sh_gradient_polynomials() {
  static const ShGradientPolynomials table = [] {
    Polynomial y[kMaxSh];
    y[0] = Polynomial::monomial(0, 0, 0);
    sh_poly<double, Polynomial>(kMaxLmax, Polynomial::monomial(1, 0, 0), Polynomial::monomial(0, 1, 0),
                                Polynomial::monomial(0, 0, 1), y);
    const auto e = Polynomial::exponents();
    ShGradientPolynomials t;
    for (int m = 1; m < kMaxSh; ++m) {
      const int l = static_cast<int>(degree_of(m));
      for (int i = 0; i < kMaxMonomials; ++i) {
        if (y[m].c[i] == 0.0) continue;
        if (e[i][0] + e[i][1] + e[i][2] != l) throw std::logic_error("mlffd: spherical harmonic is not homogeneous");
        for (int d = 0; d < 3; ++d) {
          if (e[i][d] == 0) continue;
          std::array<int, 3> lower = e[i];
          --lower[d];
          const int k = monomial_index(lower[0], lower[1], lower[2]) - monomial_offset(l - 1);
          t.coef[m][d][k] += y[m].c[i] * e[i][d];
        }
      }
    }
    return t;
  }();
  return table;
}

}  // namespace mlffd
