// The CPU kernels of mlffd::spline_conv and its backward, included twice by spline_edge.cpp (no
// include guard, on purpose): once for any x86-64 / other CPU and once compiled for AVX2 + FMA,
// chosen at run time (cpu_kernels in mlffd::build_info(); MLFFD_CPU_KERNELS=generic forces the
// portable one). Same source and, but for channel_sums4, summation order; the AVX2 build handles
// more channels per instruction and fuses multiply-adds (GCC's default contraction), so the two
// agree to rounding.
// Needs, declared by the includer: check_row, grain, SplineConvArgs, kernel_math.h and sh_monomials.h.

// f(integral_constant<int, m>) for m = 0 .. M-1, written out: a loop there would stay a loop in
// the vectoriser's eyes and keep the loop around it scalar.
template <typename F, int... m>
inline void each_index(F&& f, std::integer_sequence<int, m...>) {
  (f(std::integral_constant<int, m>{}), ...);
}
template <int M, typename F>
inline void unrolled(F&& f) {
  each_index(f, std::make_integer_sequence<int, M>{});
}

// sum_c v[c] over the channels. For a compile-time power-of-two count by halving (v[c] += v[c + w]):
// a fixed order, so it needs no reassociation, and every step is one vector add, where an in-order
// sum is a chain of dependent scalar adds. Overwrites v.
template <int W, typename T>
inline void halve(T* __restrict__ v) {
  if constexpr (W >= 1) {
#pragma omp simd
    for (int c = 0; c < W; ++c) v[c] += v[c + W];
    halve<W / 2>(v);
  }
}
template <int CC, typename T>
inline T channel_sum(T* __restrict__ v, int64_t n) {
  if constexpr (CC > 0 && (CC & (CC - 1)) == 0) {
    halve<CC / 2>(v);
    return v[0];
  } else {
    T s = 0;
    for (int64_t c = 0; c < n; ++c) s += v[c];
    return s;
  }
}

// sums[d] = sum_c v[d n + c] for d = 0 .. 3. The AVX2 build, for float and a multiple of 8 channels,
// folds each row into one vector and adds the four pairwise horizontally (about 20 instructions,
// where four channel_sums take about 60); other builds and types use channel_sum.
template <int CC, typename T>
inline void channel_sums4(T* __restrict__ v, int64_t n, T* __restrict__ sums) {
#if MLFFD_AVX2_KERNELS
  if constexpr (std::is_same_v<T, float> && CC > 0 && CC % 8 == 0) {
    __m256 row[4];
    for (int d = 0; d < 4; ++d) {
      row[d] = _mm256_loadu_ps(v + d * CC);
      for (int c = 8; c < CC; c += 8) row[d] = _mm256_add_ps(row[d], _mm256_loadu_ps(v + d * CC + c));
    }
    const __m256 pairs = _mm256_hadd_ps(_mm256_hadd_ps(row[0], row[1]), _mm256_hadd_ps(row[2], row[3]));
    _mm_storeu_ps(sums, _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1)));
    return;
  }
#endif
  for (int d = 0; d < 4; ++d) sums[d] = channel_sum<CC>(v + d * n, n);
}

// Up to kBlock edges of one atom in structure-of-arrays form, so that the per-edge scalar work
// (square root, division, spherical harmonics or, for the backward, the monomials of the unit
// vector, locating the table interval) runs in loops over edges that vectorise (the fixed stride
// matters: with a runtime one the compiler cannot rule out overlapping stores). The per-channel
// work then runs per edge over channels.
constexpr int64_t kBlock = 64;

template <typename T>
struct EdgeInterval {
  T r[kBlock], t[kBlock], inside[kBlock];
  int k[kBlock];

  void locate(int64_t q, T len, T inv_h, int n_int) {
    int kq;
    T tq;
    inside[q] = spline_locate(len, inv_h, n_int, kq, tq) ? T(1) : T(0);
    r[q] = len;
    k[q] = kq;
    t[q] = tq;
  }
};

// The forward's block: Y[m * kBlock + q] = Y_m of edge q.
template <typename T, int L>
struct EdgeBlock : EdgeInterval<T> {
  static constexpr int M = L * L;
  T Y[M * kBlock];

  // edges [e0, e0 + n) of vec [E, 3], n <= kBlock
  void fill(const T* __restrict__ vec, int64_t e0, int64_t n, T inv_h, int n_int) {
    for (int64_t q = 0; q < n; ++q) {
      const T x = vec[3 * (e0 + q)], y = vec[3 * (e0 + q) + 1], z = vec[3 * (e0 + q) + 2];
      const T len = std::sqrt(x * x + y * y + z * z);
      const T inv = T(1) / (len > T(kNormalizeEps) ? len : T(kNormalizeEps));
      T o[M];
      o[0] = T(1);
      sh_poly<T, T>(L - 1, x * inv, y * inv, z * inv, o);
      unrolled<M>([&](auto m) { Y[m * kBlock + q] = o[m]; });
      this->locate(q, len, inv_h, n_int);
    }
  }
};

// The backward's block: the edge vector v[d * kBlock + q], its direction u[d * kBlock + q] and the
// monomials of u of degree 0 .. L - 2 (sh_monomials.h), mono[i * kBlock + q].
template <typename T, int L>
struct EdgeMonomialBlock : EdgeInterval<T> {
  static constexpr int kMono = monomial_offset(L - 1);
  T v[3 * kBlock], u[3 * kBlock];
  T mono[(kMono > 0 ? kMono : 1) * kBlock];

  void fill(const T* __restrict__ vec, int64_t e0, int64_t n, T inv_h, int n_int) {
    for (int64_t q = 0; q < n; ++q) {
      const T x = vec[3 * (e0 + q)], y = vec[3 * (e0 + q) + 1], z = vec[3 * (e0 + q) + 2];
      const T len = std::sqrt(x * x + y * y + z * z);
      const T inv = T(1) / (len > T(kNormalizeEps) ? len : T(kNormalizeEps));
      const T ux = x * inv, uy = y * inv, uz = z * inv;
      v[q] = x;
      v[kBlock + q] = y;
      v[2 * kBlock + q] = z;
      u[q] = ux;
      u[kBlock + q] = uy;
      u[2 * kBlock + q] = uz;
      if constexpr (kMono >= 1) mono[q] = T(1);
      if constexpr (kMono >= 4) {
        mono[1 * kBlock + q] = ux;
        mono[2 * kBlock + q] = uy;
        mono[3 * kBlock + q] = uz;
      }
      if constexpr (kMono >= 10) {  // monomial_index order
        mono[4 * kBlock + q] = ux * ux;
        mono[5 * kBlock + q] = ux * uy;
        mono[6 * kBlock + q] = ux * uz;
        mono[7 * kBlock + q] = uy * uy;
        mono[8 * kBlock + q] = uy * uz;
        mono[9 * kBlock + q] = uz * uz;
      }
      this->locate(q, len, inv_h, n_int);
    }
  }
};
static_assert(monomial_index(1, 0, 0) == 1 && monomial_index(0, 1, 0) == 2 && monomial_index(0, 0, 1) == 3 &&
                  monomial_index(2, 0, 0) == 4 && monomial_index(1, 1, 0) == 5 && monomial_index(1, 0, 1) == 6 &&
                  monomial_index(0, 2, 0) == 7 && monomial_index(0, 1, 1) == 8 && monomial_index(0, 0, 2) == 9,
              "EdgeMonomialBlock::fill writes the monomials in monomial_index order");
static_assert(kMaxLmax <= 3, "EdgeMonomialBlock::fill writes monomials up to degree 2");

// CC: the channel count when it is one of the compile-time widths, 0 otherwise. The loops over
// channels carry `omp simd`: without it GCC unrolls a fixed 16-iteration loop into scalar code
// instead of vectorising it.
template <typename scalar_t, int L, int CC>
void spline_conv_forward_impl(const SplineConvArgs& a, at::Tensor& out) {
  constexpr int M = L * L;
  const int64_t N = a.N, E = a.E, C = CC > 0 ? CC : a.C, K = L * C;
  const int n_int = static_cast<int>(a.n_int);
  const scalar_t inv_h = scalar_t(n_int / a.r_max);
  const scalar_t* vec = a.vec.data_ptr<scalar_t>();
  const scalar_t* h = a.h.data_ptr<scalar_t>();
  const scalar_t* tab = a.table.data_ptr<scalar_t>();
  const int64_t* nb = a.neighbour.data_ptr<int64_t>();
  const int64_t* rowptr = a.rowptr.data_ptr<int64_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  const char* op = "mlffd::spline_conv";
  at::parallel_for(0, N, grain((E / std::max<int64_t>(N, 1) + 1) * (M + 2 * L) * C), [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> acc_buf(M * C), w_buf(K);
    scalar_t* __restrict__ acc = acc_buf.data();
    scalar_t* __restrict__ w = w_buf.data();
    auto block = std::make_unique<EdgeBlock<scalar_t, L>>();
    for (int64_t i = begin; i < end; ++i) {
      check_row(rowptr, i, E, op);
      std::fill(acc_buf.begin(), acc_buf.end(), scalar_t(0));
      for (int64_t e0 = rowptr[i]; e0 < rowptr[i + 1]; e0 += kBlock) {
        const int64_t n = std::min<int64_t>(kBlock, rowptr[i + 1] - e0);
        block->fill(vec, e0, n, inv_h, n_int);
        for (int64_t q = 0; q < n; ++q) {
          if (block->inside[q] == scalar_t(0)) continue;  // beyond the cutoff: exactly zero
          const int64_t j = nb[e0 + q];
          TORCH_CHECK(j >= 0 && j < N, op, ": neighbour[", e0 + q, "] = ", j, " is outside [0, n_nodes=", N, ")");
          const scalar_t t = block->t[q];
          const scalar_t* __restrict__ co = tab + int64_t(block->k[q]) * 4 * K;
          const scalar_t* __restrict__ hj = h + j * C;
          for (int l = 0; l < L; ++l) {
            const scalar_t* __restrict__ cl = co + l * C;
            scalar_t* __restrict__ wl = w + l * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) wl[c] = spline_value(cl + c, K, t) * hj[c];
            for (int m = l * l; m < (l + 1) * (l + 1); ++m) {
              const scalar_t ym = block->Y[m * kBlock + q];
              scalar_t* __restrict__ am = acc + m * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) am[c] += wl[c] * ym;
            }
          }
        }
      }
      for (int m = 0; m < M; ++m) std::copy(acc + m * C, acc + (m + 1) * C, o + (m * N + i) * C);
    }
  });
}

// Per edge e = (i, j), with G = grad_out[:, i, :], grad_l[c](u) = sum_{m in l} G[m, c] dY_m/du and
// P_l[c] = sum_{m in l} G[m, c] Y_m(u) = (u . grad_l[c]) / l (sh_monomials.h; P_0 = G[0, c]):
//   dL/d|vec| = sum_{l,c} P_l[c] h[j, c] dR[l, c]/dr,   dL/du = sum_{l,c} R[l, c] h[j, c] grad_l[c],
//   gh_edge[e, c] = sum_l R[l, c] P_l[c]   (then grad_h[j] = sum over the edges of neighbour j).
// The coefficients of grad_l are formed once per atom, so an edge costs a few multiply-adds per
// channel and degree and four sums over channels.
template <typename scalar_t, int L, int CC>
void spline_conv_backward_impl(const SplineConvArgs& a, const at::Tensor& grad_out, at::Tensor& grad_vec,
                               at::Tensor& gh_edge) {
  constexpr int M = L * L;
  constexpr int kCoef = 3 * monomial_offset(L - 1);  // grad_l's coefficients, l = 1 .. L - 1, per channel
  const int64_t N = a.N, E = a.E, C = CC > 0 ? CC : a.C, K = L * C;
  const int n_int = static_cast<int>(a.n_int);
  const scalar_t inv_h = scalar_t(n_int / a.r_max);
  const scalar_t* vec = a.vec.data_ptr<scalar_t>();
  const scalar_t* h = a.h.data_ptr<scalar_t>();
  const scalar_t* tab = a.table.data_ptr<scalar_t>();
  const int64_t* nb = a.neighbour.data_ptr<int64_t>();
  const int64_t* rowptr = a.rowptr.data_ptr<int64_t>();
  const scalar_t* g = grad_out.data_ptr<scalar_t>();
  scalar_t* gv = grad_vec.data_ptr<scalar_t>();
  scalar_t* ghe = gh_edge.defined() ? gh_edge.data_ptr<scalar_t>() : nullptr;
  const char* op = "mlffd::spline_conv_backward";
  scalar_t dY[kMaxSh][3][monomial_count(kMaxLmax - 1)];  // sh_gradient_polynomials in scalar_t
  {
    const ShGradientPolynomials& p = sh_gradient_polynomials();
    for (int m = 0; m < kMaxSh; ++m)
      for (int d = 0; d < 3; ++d)
        for (int k = 0; k < monomial_count(kMaxLmax - 1); ++k) dY[m][d][k] = scalar_t(p.coef[m][d][k]);
  }
  at::parallel_for(0, N, grain((E / std::max<int64_t>(N, 1) + 1) * (2 * kCoef + 8 * L) * C), [&](int64_t begin,
                                                                                                   int64_t end) {
    std::vector<scalar_t> g0_buf(C), coef_buf(std::max(kCoef, 1) * C), sums_buf(4 * C), per_edge(7 * kBlock);
    scalar_t* __restrict__ g0 = g0_buf.data();      // G[0, c]
    scalar_t* __restrict__ coef = coef_buf.data();  // coef[(3 offset(l-1) + d count(l-1) + k) C + c]
    scalar_t* __restrict__ sx = sums_buf.data();    // per-channel terms of dL/du_x, _y, _z and dL/dt
    scalar_t* __restrict__ sy = sx + C;
    scalar_t* __restrict__ sz = sx + 2 * C;
    scalar_t* __restrict__ st = sx + 3 * C;
    scalar_t* __restrict__ gu = per_edge.data();  // gu[d * kBlock + q] = dL/du_d, gu[3 kBlock + q] = dL/d|vec|
    auto block = std::make_unique<EdgeMonomialBlock<scalar_t, L>>();
    for (int64_t i = begin; i < end; ++i) {
      check_row(rowptr, i, E, op);
      if (rowptr[i] == rowptr[i + 1]) continue;
      const scalar_t* gi = g + i * C;  // G[m, c] = gi[m N C + c]
      std::copy(gi, gi + C, g0);
      unrolled<L - 1>([&](auto lm1) {
        constexpr int l = decltype(lm1)::value + 1, n_k = monomial_count(l - 1);
        for (int d = 0; d < 3; ++d)
          for (int k = 0; k < n_k; ++k) {
            scalar_t* __restrict__ out = coef + (3 * monomial_offset(l - 1) + d * n_k + k) * C;
            std::fill(out, out + C, scalar_t(0));
            for (int m = l * l; m < (l + 1) * (l + 1); ++m) {
              const scalar_t ymk = dY[m][d][k];
              const scalar_t* __restrict__ gm = gi + m * N * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) out[c] += gm[c] * ymk;
            }
          }
      });
      for (int64_t e0 = rowptr[i]; e0 < rowptr[i + 1]; e0 += kBlock) {
        const int64_t n = std::min<int64_t>(kBlock, rowptr[i + 1] - e0);
        block->fill(vec, e0, n, inv_h, n_int);
        for (int64_t q = 0; q < n; ++q) {
          scalar_t* __restrict__ gh = ghe != nullptr ? ghe + (e0 + q) * C : nullptr;
          if (block->inside[q] == scalar_t(0)) {  // beyond the cutoff: exactly zero
            if (gh != nullptr) std::fill(gh, gh + C, scalar_t(0));
            for (int d = 0; d < 4; ++d) gu[d * kBlock + q] = 0;
            continue;
          }
          const int64_t j = nb[e0 + q];
          TORCH_CHECK(j >= 0 && j < N, op, ": neighbour[", e0 + q, "] = ", j, " is outside [0, n_nodes=", N, ")");
          const scalar_t t = block->t[q];
          const scalar_t ux = block->u[q], uy = block->u[kBlock + q], uz = block->u[2 * kBlock + q];
          const scalar_t* __restrict__ co = tab + int64_t(block->k[q]) * 4 * K;
          const scalar_t* __restrict__ hj = h + j * C;
          const scalar_t* __restrict__ mono = block->mono + q;  // mono[k kBlock]
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            scalar_t R = spline_value(co + c, K, t), S = spline_slope(co + c, K, t);
            scalar_t gh_c = R * g0[c], at = S * g0[c], ax = 0, ay = 0, az = 0;
            unrolled<L - 1>([&](auto lm1) {
              constexpr int l = decltype(lm1)::value + 1, n_k = monomial_count(l - 1);
              const scalar_t* __restrict__ cl = coef + 3 * monomial_offset(l - 1) * C + c;
              scalar_t d3[3];
              unrolled<3>([&](auto d) {
                scalar_t s = 0;
                unrolled<n_k>([&](auto k) { s += cl[(d * n_k + k) * C] * mono[(monomial_offset(l - 1) + k) * kBlock]; });
                d3[d] = s;
              });
              const scalar_t P = (ux * d3[0] + uy * d3[1] + uz * d3[2]) * scalar_t(1.0 / l);
              const scalar_t Rl = spline_value(co + l * C + c, K, t), Sl = spline_slope(co + l * C + c, K, t);
              ax += Rl * d3[0];
              ay += Rl * d3[1];
              az += Rl * d3[2];
              at += Sl * P;
              gh_c += Rl * P;
            });
            const scalar_t hc = hj[c];
            sx[c] = ax * hc;
            sy[c] = ay * hc;
            sz[c] = az * hc;
            st[c] = at * hc;
            if (gh != nullptr) gh[c] = gh_c;
          }
          scalar_t sums[4];
          channel_sums4<CC>(sx, C, sums);
          for (int d = 0; d < 3; ++d) gu[d * kBlock + q] = sums[d];
          gu[3 * kBlock + q] = sums[3] * inv_h;
        }
        scalar_t* __restrict__ gvx = gu + 4 * kBlock;  // dL/dvec, one row per component
#pragma omp simd
        for (int64_t q = 0; q < n; ++q) {
          scalar_t grad[3];
          vec_grad_from_unit(block->v[q], block->v[kBlock + q], block->v[2 * kBlock + q], block->r[q],
                             gu[3 * kBlock + q], gu[q], gu[kBlock + q], gu[2 * kBlock + q], grad);
          for (int d = 0; d < 3; ++d) gvx[d * kBlock + q] = grad[d];
        }
        scalar_t* __restrict__ out = gv + 3 * e0;
        for (int64_t q = 0; q < n; ++q)
          for (int d = 0; d < 3; ++d) out[3 * q + d] = gvx[d * kBlock + q];
      }
    }
  });
}
