// The CPU kernels of mlffd::spline_conv and its backward, included twice by spline_edge.cpp (no
// include guard, on purpose): once for any x86-64 / other CPU and once compiled for AVX2 + FMA,
// chosen at run time (cpu_kernels in mlffd::build_info(); MLFFD_CPU_KERNELS=generic forces the
// portable one). Same source and summation order; the AVX2 build handles more channels per
// instruction and fuses multiply-adds (GCC's default contraction), so the two agree to rounding.
// Needs, declared by the includer: check_row, grain, SplineConvArgs and kernel_math.h.

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

// Up to kBlock edges of one atom in structure-of-arrays form, so that the per-edge scalar work
// (square root, division, spherical harmonics and, for the backward, their gradient, locating the
// table interval) runs in loops over edges that vectorise (the fixed stride matters: with a
// runtime one the compiler cannot rule out overlapping stores). The per-channel work then runs
// per edge over channels.
constexpr int64_t kBlock = 64;

template <typename T, int L, bool kGrad>
struct EdgeBlock {
  static constexpr int M = L * L;
  T r[kBlock], t[kBlock], inside[kBlock];
  int k[kBlock];
  T Y[M * kBlock];  // Y[m * kBlock + q]: component m of edge q
  T dYx[kGrad ? M * kBlock : 1], dYy[kGrad ? M * kBlock : 1], dYz[kGrad ? M * kBlock : 1];

  // edges [e0, e0 + n) of vec [E, 3], n <= kBlock
  void fill(const T* __restrict__ vec, int64_t e0, int64_t n, T inv_h, int n_int) {
    for (int64_t q = 0; q < n; ++q) {
      const T x = vec[3 * (e0 + q)], y = vec[3 * (e0 + q) + 1], z = vec[3 * (e0 + q) + 2];
      T len;
      if constexpr (kGrad) {
        Dual<T> d[M];
        len = sh_with_gradient<T>(L - 1, x, y, z, d);
        unrolled<M>([&](auto m) {
          Y[m * kBlock + q] = d[m].v;
          dYx[m * kBlock + q] = d[m].dx;
          dYy[m * kBlock + q] = d[m].dy;
          dYz[m * kBlock + q] = d[m].dz;
        });
      } else {
        len = std::sqrt(x * x + y * y + z * z);
        const T inv = T(1) / (len > T(kNormalizeEps) ? len : T(kNormalizeEps));
        T o[M];
        o[0] = T(1);
        sh_poly<T, T>(L - 1, x * inv, y * inv, z * inv, o);
        unrolled<M>([&](auto m) { Y[m * kBlock + q] = o[m]; });
      }
      r[q] = len;
      int kq;
      T tq;
      inside[q] = spline_locate(len, inv_h, n_int, kq, tq) ? T(1) : T(0);
      k[q] = kq;
      t[q] = tq;
    }
  }
};

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
    auto block = std::make_unique<EdgeBlock<scalar_t, L, false>>();
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

// Per edge e = (i, j), with G = grad_out[:, i, :], w[l, c] = R[l, c] h[j, c] and P[l, c] = sum_{m in l} G[m, c] Y_m:
//   dL/d|vec| = sum_{l,c} P[l, c] h[j, c] dR[l, c]/dr,   dL/dY_m = sum_c G[m, c] w[l(m), c],
//   gh_edge[e, c] = sum_l R[l, c] P[l, c]   (then grad_h[j] = sum over the edges of neighbour j).
template <typename scalar_t, int L, int CC>
void spline_conv_backward_impl(const SplineConvArgs& a, const at::Tensor& grad_out, at::Tensor& grad_vec,
                               at::Tensor& gh_edge) {
  constexpr int M = L * L;
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
  at::parallel_for(0, N, grain((E / std::max<int64_t>(N, 1) + 1) * 3 * (M + 2 * L) * C), [&](int64_t begin,
                                                                                             int64_t end) {
    std::vector<scalar_t> gi_buf(M * C), buf(4 * C), per_edge((M + 1) * kBlock);
    scalar_t* __restrict__ gi = gi_buf.data();
    scalar_t* __restrict__ p = buf.data();             // P[l, c]
    scalar_t* __restrict__ rv = buf.data() + C;        // R[l, c], then w[l, c]
    scalar_t* __restrict__ rs = buf.data() + 2 * C;    // dR[l, c]/dt
    scalar_t* __restrict__ prod = buf.data() + 3 * C;  // terms of a sum over channels
    scalar_t* __restrict__ gY = per_edge.data();                   // gY[m * kBlock + q] = dL/dY_m
    scalar_t* __restrict__ g_len = per_edge.data() + M * kBlock;  // dL/d|vec|
    auto block = std::make_unique<EdgeBlock<scalar_t, L, true>>();
    for (int64_t i = begin; i < end; ++i) {
      check_row(rowptr, i, E, op);
      if (rowptr[i] == rowptr[i + 1]) continue;
      for (int m = 0; m < M; ++m) std::copy(g + (m * N + i) * C, g + (m * N + i + 1) * C, gi + m * C);
      for (int64_t e0 = rowptr[i]; e0 < rowptr[i + 1]; e0 += kBlock) {
        const int64_t n = std::min<int64_t>(kBlock, rowptr[i + 1] - e0);
        block->fill(vec, e0, n, inv_h, n_int);
        for (int64_t q = 0; q < n; ++q) {
          scalar_t* __restrict__ gh = ghe != nullptr ? ghe + (e0 + q) * C : nullptr;
          if (gh != nullptr) std::fill(gh, gh + C, scalar_t(0));
          g_len[q] = 0;
          for (int m = 0; m < M; ++m) gY[m * kBlock + q] = 0;
          if (block->inside[q] == scalar_t(0)) continue;
          const int64_t j = nb[e0 + q];
          TORCH_CHECK(j >= 0 && j < N, op, ": neighbour[", e0 + q, "] = ", j, " is outside [0, n_nodes=", N, ")");
          const scalar_t t = block->t[q];
          const scalar_t* __restrict__ co = tab + int64_t(block->k[q]) * 4 * K;
          const scalar_t* __restrict__ hj = h + j * C;
          scalar_t gl = 0;
          for (int l = 0; l < L; ++l) {
            const scalar_t* __restrict__ cl = co + l * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
              rv[c] = spline_value(cl + c, K, t);
              rs[c] = spline_slope(cl + c, K, t);
              p[c] = 0;
            }
            for (int m = l * l; m < (l + 1) * (l + 1); ++m) {
              const scalar_t ym = block->Y[m * kBlock + q];
              const scalar_t* __restrict__ gm = gi + m * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) p[c] += gm[c] * ym;
            }
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) prod[c] = p[c] * hj[c] * rs[c];
            gl += channel_sum<CC>(prod, C);
            if (gh != nullptr) {
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) gh[c] += rv[c] * p[c];
            }
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) rv[c] *= hj[c];
            for (int m = l * l; m < (l + 1) * (l + 1); ++m) {
              const scalar_t* __restrict__ gm = gi + m * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) prod[c] = gm[c] * rv[c];
              gY[m * kBlock + q] = channel_sum<CC>(prod, C);
            }
          }
          g_len[q] = gl * inv_h;
        }
        scalar_t* __restrict__ out = gv + 3 * e0;
        for (int64_t q = 0; q < n; ++q) {
          scalar_t gx = 0, gy = 0, gz = 0;  // d loss / d unit vector (Y_0 is constant)
          unrolled<M>([&](auto m) {
            if constexpr (decltype(m)::value > 0) {
              gx += gY[m * kBlock + q] * block->dYx[m * kBlock + q];
              gy += gY[m * kBlock + q] * block->dYy[m * kBlock + q];
              gz += gY[m * kBlock + q] * block->dYz[m * kBlock + q];
            }
          });
          const scalar_t x = vec[3 * (e0 + q)], y = vec[3 * (e0 + q) + 1], z = vec[3 * (e0 + q) + 2];
          scalar_t grad[3];
          vec_grad_from_unit(x, y, z, block->r[q], g_len[q], gx, gy, gz, grad);
          out[3 * q] = grad[0];
          out[3 * q + 1] = grad[1];
          out[3 * q + 2] = grad[2];
        }
      }
    }
  });
}
