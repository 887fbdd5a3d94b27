// rnnkit's compiled recurrences: forward and backward of rnn (tanh/relu), lstm, gru (reset after, torch.nn) and
// gru-before (the lecture's), one layer-direction at a time, on the hoisted input projection.
//
// Shape symbols: T time, B batch, H hidden, G gates·H (rnn H, gru 3H, lstm 4H). Every tensor is contiguous,
// row-major, float or double. Per step: one GEMM (two for gru-before) into a preallocated buffer, through the
// BLAS torch links (sgemm_/dgemm_, no dispatcher call per step; at::addmm_ where the symbol is absent), then the gate
// math as one loop over B·H that the compiler vectorises (float: a polynomial exp; double: libm, for exactness).
// The backward stores nothing per step that it allocates: every buffer is made before the loop, and the recurrent
// weight gradient is one GEMM over all T·B rows after it. A row b of step t with mask 0 carries the state unchanged
// (the gradient passes through it), exactly as rnnkit.engine.own does.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

namespace {

using at::Tensor;

enum Kind : int64_t { RNN_TANH = 0, RNN_RELU = 1, LSTM = 2, GRU = 3, GRU_BEFORE = 4 };

// ------------------------------------------------------------------------------------------------------ GEMM
template <typename T>
void blas(const char* ta, const char* tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb,
          T beta, T* c, int ldc);

template <>
void blas<float>(const char* ta, const char* tb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc) {
  sgemm_(ta, tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

template <>
void blas<double>(const char* ta, const char* tb, int m, int n, int k, double alpha, const double* a, int lda,
                  const double* b, int ldb, double beta, double* c, int ldc) {
  dgemm_(ta, tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

template <typename T>
bool have_blas();
template <>
bool have_blas<float>() { return sgemm_ != nullptr; }
template <>
bool have_blas<double>() { return dgemm_ != nullptr; }

// c[0:n] += s·x[0:n] (fused multiply-add, vectorised)
template <typename T>
__attribute__((noinline)) void axpy_row(T* __restrict c, T s, const T* __restrict x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) c[j] = std::fma(s, x[j], c[j]);
}

// c[0:n] += s0·x0 + s1·x1 + s2·x2 + s3·x3 (four rows per pass: c is loaded and stored once for four FMAs)
template <typename T>
__attribute__((noinline)) void axpy4_row(T* __restrict c, const T* s, const T* __restrict x0, const T* __restrict x1,
                                         const T* __restrict x2, const T* __restrict x3, int64_t n) {
  const T s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
  for (int64_t j = 0; j < n; ++j) c[j] = std::fma(s3, x3[j], std::fma(s2, x2[j], std::fma(s1, x1[j], std::fma(s0, x0[j], c[j]))));
}

// Few rows (batch ≤ SMALL_B): C = A·B (+ C) as axpys over B's rows, which stay in cache from step to step. BLAS
// pays a fixed cost per call that dominates a matrix–vector product of this size (sampling, serving at B = 1).
constexpr int64_t SMALL_B = 4;

// Row-major C (M×N, row stride ldc) = alpha·op(A)·op(B) + beta·C, op(A) M×K, op(B) K×N; A stored M×K (or K×M when
// ta), B stored K×N (or N×K when tb), each with its row stride. beta = 0 ignores what C held.
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T beta,
          T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (!ta && !tb && M <= SMALL_B) {
    for (int64_t i = 0; i < M; ++i) {
      T* c = C + i * ldc;
      if (beta == T(0)) std::fill(c, c + N, T(0));
      const T* a = A + i * lda;
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        axpy4_row<T>(c, a + k, B + k * ldb, B + (k + 1) * ldb, B + (k + 2) * ldb, B + (k + 3) * ldb, N);
      }
      for (; k < K; ++k) axpy_row<T>(c, a[k], B + k * ldb, N);
    }
    return;
  }
  if (have_blas<T>()) {
    // column-major view: Cᵀ = op(B)ᵀ·op(A)ᵀ
    blas<T>(tb ? "T" : "N", ta ? "T" : "N", (int)N, (int)M, (int)K, T(1), B, (int)ldb, A, (int)lda, beta, C,
            (int)ldc);
    return;
  }
  auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  Tensor a = ta ? at::from_blob(const_cast<T*>(A), {K, M}, {lda, 1}, opt).t()
                : at::from_blob(const_cast<T*>(A), {M, K}, {lda, 1}, opt);
  Tensor b = tb ? at::from_blob(const_cast<T*>(B), {N, K}, {ldb, 1}, opt).t()
                : at::from_blob(const_cast<T*>(B), {K, N}, {ldb, 1}, opt);
  Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opt);
  c.addmm_(a, b, beta, 1);
}

// ------------------------------------------------------------------------------------------------ activations
// float: exp by range reduction and Cephes' degree-6 polynomial (≈1 ulp), branch-free so the loops vectorise;
// sigmoid and tanh from it (absolute error ≲ 2e-7). double: libm, so float64 results match torch to rounding.
inline float exp_f(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  float y = p * r * r + r + 1.0f;
  int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float s;
  std::memcpy(&s, &e, sizeof(s));
  return y * s;
}

template <typename T>
struct Act;

template <>
struct Act<float> {
  static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
  static inline float tanh(float x) {
    float t = exp_f(-2.0f * std::fabs(x));
    return std::copysign((1.0f - t) / (1.0f + t), x);
  }
};

template <>
struct Act<double> {
  static inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static inline double tanh(double x) { return std::tanh(x); }
};

// ------------------------------------------------------------------------------------------------ row kernels
// One row (one sequence of the batch) of one step. Separate functions with restrict pointers and H by value, so
// that the compiler proves the arrays independent and vectorises each loop over H.
#define ROW template <typename T> __attribute__((noinline)) void

ROW rnn_fwd_row(T* __restrict o, const T* __restrict x, int64_t H, bool relu) {
  if (relu) {
    for (int64_t j = 0; j < H; ++j) o[j] = std::max(o[j] + x[j], T(0));
  } else {
    for (int64_t j = 0; j < H; ++j) o[j] = Act<T>::tanh(o[j] + x[j]);
  }
}

ROW lstm_fwd_row(T* __restrict g, const T* __restrict x, const T* __restrict c_prev, T* __restrict c,
                 T* __restrict h, T* __restrict tc, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T i = Act<T>::sigmoid(g[j] + x[j]);
    const T f = Act<T>::sigmoid(g[H + j] + x[H + j]);
    const T gg = Act<T>::tanh(g[2 * H + j] + x[2 * H + j]);
    const T o = Act<T>::sigmoid(g[3 * H + j] + x[3 * H + j]);
    const T cn = f * c_prev[j] + i * gg;
    const T tn = Act<T>::tanh(cn);
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = gg;
    g[3 * H + j] = o;
    c[j] = cn;
    tc[j] = tn;
    h[j] = o * tn;
  }
}

ROW gru_fwd_row(const T* __restrict g, const T* __restrict x, const T* __restrict p, const T* __restrict bhn,
                T* __restrict st, T* __restrict h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = Act<T>::sigmoid(x[j] + g[j]);
    const T z = Act<T>::sigmoid(x[H + j] + g[H + j]);
    const T ghn = g[2 * H + j] + bhn[j];
    const T n = Act<T>::tanh(x[2 * H + j] + r * ghn);
    st[j] = r;
    st[H + j] = z;
    st[2 * H + j] = n;
    st[3 * H + j] = ghn;
    h[j] = n + z * (p[j] - n);
  }
}

ROW grub_fwd_row1(const T* __restrict g, const T* __restrict x, const T* __restrict p, T* __restrict st, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = Act<T>::sigmoid(x[j] + g[j]);
    st[j] = r;
    st[H + j] = Act<T>::sigmoid(x[H + j] + g[H + j]);
    st[3 * H + j] = r * p[j];
  }
}

ROW grub_fwd_row2(const T* __restrict g, const T* __restrict x, const T* __restrict p, T* __restrict st,
                  T* __restrict h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T n = Act<T>::tanh(x[2 * H + j] + g[j]);
    st[2 * H + j] = n;
    h[j] = n + st[H + j] * (p[j] - n);
  }
}

// a carried row: no gate gradient, the gradient passes to the previous state unchanged
ROW carry_row(T* __restrict a, int64_t G, T* __restrict d, const T* __restrict gin, int64_t H) {
  for (int64_t j = 0; j < G; ++j) a[j] = T(0);
  for (int64_t j = 0; j < H; ++j) d[j] += gin[j];
}

ROW rnn_bwd_row(T* __restrict a, T* __restrict d, const T* __restrict gin, const T* __restrict h, int64_t H,
                bool relu) {
  if (relu) {
    for (int64_t j = 0; j < H; ++j) {
      a[j] = h[j] > T(0) ? gin[j] + d[j] : T(0);
      d[j] = T(0);
    }
  } else {
    for (int64_t j = 0; j < H; ++j) {
      a[j] = (gin[j] + d[j]) * (T(1) - h[j] * h[j]);
      d[j] = T(0);
    }
  }
}

ROW lstm_bwd_row(T* __restrict a, T* __restrict d, T* __restrict e, const T* __restrict gin, const T* __restrict g,
                 const T* __restrict tc, const T* __restrict c_prev, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j], tn = tc[j];
    const T gh = gin[j] + d[j];
    const T dcj = e[j] + gh * o * (T(1) - tn * tn);
    a[j] = dcj * gg * i * (T(1) - i);
    a[H + j] = dcj * c_prev[j] * f * (T(1) - f);
    a[2 * H + j] = dcj * i * (T(1) - gg * gg);
    a[3 * H + j] = gh * tn * o * (T(1) - o);
    e[j] = dcj * f;
    d[j] = T(0);
  }
}

ROW gru_bwd_row(T* __restrict a, T* __restrict q, T* __restrict d, const T* __restrict gin, const T* __restrict st,
                const T* __restrict p, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = st[j], z = st[H + j], n = st[2 * H + j], ghn = st[3 * H + j];
    const T g = gin[j] + d[j];
    const T dan = g * (T(1) - z) * (T(1) - n * n);
    const T daz = g * (p[j] - n) * z * (T(1) - z);
    const T dar = dan * ghn * r * (T(1) - r);
    a[j] = dar;
    a[H + j] = daz;
    a[2 * H + j] = dan;
    q[j] = dar;
    q[H + j] = daz;
    q[2 * H + j] = dan * r;
    d[j] = g * z;
  }
}

ROW grub_bwd_row1(T* __restrict a, T* __restrict d, const T* __restrict gin, const T* __restrict st,
                  const T* __restrict p, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T z = st[H + j], n = st[2 * H + j];
    const T g = gin[j] + d[j];
    a[H + j] = g * (p[j] - n) * z * (T(1) - z);
    a[2 * H + j] = g * (T(1) - z) * (T(1) - n * n);
    d[j] = g * z;
  }
}

ROW grub_bwd_row2(T* __restrict a, T* __restrict d, const T* __restrict e, const T* __restrict st,
                  const T* __restrict p, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = st[j];
    a[j] = e[j] * p[j] * r * (T(1) - r);
    d[j] += e[j] * r;
  }
}
#undef ROW

// Rows of a step in parallel only when a step is large enough to pay for it (torch's thread count decides).
template <typename F>
void for_rows(int64_t B, int64_t H, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(H, 1));
  if (B <= grain) {
    for (int64_t b = 0; b < B; ++b) f(b);
    return;
  }
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

inline bool live(const Tensor& mask) { return mask.defined() && mask.numel() > 0; }

template <typename T>
const T* opt_ptr(const Tensor& t) {
  return live(t) ? t.data_ptr<T>() : nullptr;
}

// ----------------------------------------------------------------------------------------------------- forward
// Returns rnn: {hs}; lstm: {hs, cs, gates (i, f, g, o activated), tanh(c)}; gru: {hs, S = [r, z, n, gh_n]};
// gru-before: {hs, S = [r, z, n, r⊙h]}. Without `train` the per-step buffers (all but hs, cs) hold one step only.
template <typename T>
std::vector<Tensor> forward_impl(int64_t kind, const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const Tensor& b_hn, const Tensor& mask, bool train) {
  const int64_t Tn = xp.size(0), B = xp.size(1), G = xp.size(2), H = h0.size(1);
  const int64_t BH = B * H, Ts = train ? Tn : 1;
  const T* X = xp.data_ptr<T>();
  const T* W = w_hh.data_ptr<T>();
  const T* M = opt_ptr<T>(mask);
  const T* h0p = h0.data_ptr<T>();
  Tensor hs = at::empty({Tn, B, H}, xp.options());
  T* HS = hs.data_ptr<T>();
  auto keep = [&](int64_t t, int64_t b) { return M == nullptr || M[t * B + b] != T(0); };
  auto xrow = [&](int64_t t, int64_t b) { return X + (t * B + b) * G; };
  // h W_hhᵀ per step: for a small batch from W_hhᵀ (H, G) laid out once, so each step is axpys over its rows
  const bool small = B <= SMALL_B && Tn >= 4;  // laying out W_hhᵀ costs about one step: only for sequences
  Tensor w_t = small ? w_hh.t().contiguous() : Tensor();
  const T* WT = small ? w_t.data_ptr<T>() : nullptr;
  const int64_t GW = w_hh.size(0);  // G·H rows of W_hh
  auto hw = [&](const T* a, int64_t lda, int64_t rows0, int64_t n, T* c, int64_t ldc) {
    // c (B×n) = a (B×H) · W_hh[rows0 : rows0+n]ᵀ
    if (small) {
      gemm<T>(false, false, B, n, H, a, lda, WT + rows0, GW, T(0), c, ldc);
    } else {
      gemm<T>(false, true, B, n, H, a, lda, W + rows0 * H, H, T(0), c, ldc);
    }
  };

  if (kind == RNN_TANH || kind == RNN_RELU) {
    const bool relu = kind == RNN_RELU;
    for (int64_t t = 0; t < Tn; ++t) {
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      T* out = HS + t * BH;
      hw(hp, H, 0, H, out, H);  // h_{t−1} W_hhᵀ
      for_rows(B, H, [&](int64_t b) {
        if (keep(t, b)) {
          rnn_fwd_row<T>(out + b * H, xrow(t, b), H, relu);
        } else {
          std::memcpy(out + b * H, hp + b * H, H * sizeof(T));
        }
      });
    }
    return {hs};
  }

  if (kind == LSTM) {
    Tensor cs = at::empty({Tn, B, H}, xp.options());
    Tensor gates = at::empty({Ts, B, G}, xp.options());
    Tensor tcs = at::empty({Ts, B, H}, xp.options());
    T* CS = cs.data_ptr<T>();
    T* GA = gates.data_ptr<T>();
    T* TC = tcs.data_ptr<T>();
    const T* c0p = c0.data_ptr<T>();
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t s = train ? t : 0;
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      const T* cp = t ? CS + (t - 1) * BH : c0p;
      T* ga = GA + s * B * G;
      hw(hp, H, 0, G, ga, G);  // (B, 4H)
      for_rows(B, H, [&](int64_t b) {
        T* c = CS + t * BH + b * H;
        T* h = HS + t * BH + b * H;
        if (keep(t, b)) {
          lstm_fwd_row<T>(ga + b * G, xrow(t, b), cp + b * H, c, h, TC + s * BH + b * H, H);
        } else {
          std::memcpy(c, cp + b * H, H * sizeof(T));
          std::memcpy(h, hp + b * H, H * sizeof(T));
        }
      });
    }
    return {hs, cs, gates, tcs};
  }

  Tensor S = at::empty({Ts, B, 4 * H}, xp.options());
  T* SP = S.data_ptr<T>();
  if (kind == GRU) {
    Tensor gh = at::empty({B, G}, xp.options());  // the step's hidden products, reused
    T* GH = gh.data_ptr<T>();
    const T* bhn = b_hn.data_ptr<T>();
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t s = train ? t : 0;
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      hw(hp, H, 0, G, GH, G);  // (B, 3H)
      for_rows(B, H, [&](int64_t b) {
        T* h = HS + t * BH + b * H;
        if (keep(t, b)) {
          gru_fwd_row<T>(GH + b * G, xrow(t, b), hp + b * H, bhn, SP + (s * B + b) * 4 * H, h, H);
        } else {
          std::memcpy(h, hp + b * H, H * sizeof(T));
        }
      });
    }
    return {hs, S};
  }

  // GRU_BEFORE: r, z from h_{t−1}; the candidate's product takes r ⊙ h_{t−1}
  Tensor grz = at::empty({B, 2 * H}, xp.options());
  Tensor gn = at::empty({B, H}, xp.options());
  T* GRZ = grz.data_ptr<T>();
  T* GN = gn.data_ptr<T>();
  for (int64_t t = 0; t < Tn; ++t) {
    const int64_t s = train ? t : 0;
    const T* hp = t ? HS + (t - 1) * BH : h0p;
    T* st0 = SP + s * B * 4 * H;
    hw(hp, H, 0, 2 * H, GRZ, 2 * H);  // (B, 2H)
    for_rows(B, H, [&](int64_t b) { grub_fwd_row1<T>(GRZ + b * 2 * H, xrow(t, b), hp + b * H, st0 + b * 4 * H, H); });
    hw(st0 + 3 * H, 4 * H, 2 * H, H, GN, H);  // (r ⊙ h) W_hnᵀ
    for_rows(B, H, [&](int64_t b) {
      T* h = HS + t * BH + b * H;
      if (keep(t, b)) {
        grub_fwd_row2<T>(GN + b * H, xrow(t, b), hp + b * H, st0 + b * 4 * H, h, H);
      } else {
        std::memcpy(h, hp + b * H, H * sizeof(T));
      }
    });
  }
  return {hs, S};
}

// ---------------------------------------------------------------------------------------------------- backward
// Returns {d_xp (T, B, G), dh0 (B, H), dc0 (B, H) or empty, dW_hh (G, H), d_b_hn (H,) or empty}.
template <typename T>
std::vector<Tensor> backward_impl(int64_t kind, const Tensor& d_hs, const Tensor& d_cn, const Tensor& h0,
                                  const Tensor& c0, const Tensor& w_hh, const Tensor& mask, const Tensor& hs,
                                  const Tensor& s1, const Tensor& s2, const Tensor& s3) {
  const int64_t Tn = hs.size(0), B = hs.size(1), H = hs.size(2), G = w_hh.size(0);
  const int64_t BH = B * H;
  const T* DHS = d_hs.data_ptr<T>();
  const T* W = w_hh.data_ptr<T>();
  const T* M = opt_ptr<T>(mask);
  const T* HS = hs.data_ptr<T>();
  const T* h0p = h0.data_ptr<T>();
  auto keep = [&](int64_t t, int64_t b) { return M == nullptr || M[t * B + b] != T(0); };
  Tensor dh = at::zeros({B, H}, hs.options());  // gradient reaching h_t from later steps, updated in place
  T* DH = dh.data_ptr<T>();
  Tensor h_prev = at::cat({h0.unsqueeze(0), hs.narrow(0, 0, Tn - 1)}).view({Tn * B, H});  // (T·B, H)
  Tensor da = at::empty({Tn, B, G}, hs.options());  // gradient of the gate pre-activations (= of xp)
  T* DA = da.data_ptr<T>();

  if (kind == RNN_TANH || kind == RNN_RELU) {
    const bool relu = kind == RNN_RELU;
    for (int64_t t = Tn - 1; t >= 0; --t) {
      for_rows(B, H, [&](int64_t b) {
        const int64_t o = t * BH + b * H;
        if (keep(t, b)) {
          rnn_bwd_row<T>(DA + o, DH + b * H, DHS + o, HS + o, H, relu);
        } else {
          carry_row<T>(DA + o, H, DH + b * H, DHS + o, H);
        }
      });
      gemm<T>(false, false, B, H, H, DA + t * BH, H, W, H, T(1), DH, H);  // dh += d_a_t W_hh
    }
    Tensor dw = at::mm(da.view({Tn * B, H}).t(), h_prev);
    return {da, dh, Tensor(), dw, Tensor()};
  }

  if (kind == LSTM) {
    const T* CS = s1.data_ptr<T>();
    const T* GA = s2.data_ptr<T>();
    const T* TC = s3.data_ptr<T>();
    const T* c0p = c0.data_ptr<T>();
    Tensor dc = d_cn.clone().contiguous();
    T* DC = dc.data_ptr<T>();
    for (int64_t t = Tn - 1; t >= 0; --t) {
      const T* cp = t ? CS + (t - 1) * BH : c0p;
      for_rows(B, H, [&](int64_t b) {
        const int64_t o = t * BH + b * H, og = (t * B + b) * G;
        if (keep(t, b)) {
          lstm_bwd_row<T>(DA + og, DH + b * H, DC + b * H, DHS + o, GA + og, TC + o, cp + b * H, H);
        } else {  // dc passes unchanged too
          carry_row<T>(DA + og, G, DH + b * H, DHS + o, H);
        }
      });
      gemm<T>(false, false, B, H, G, DA + t * B * G, G, W, H, T(1), DH, H);  // dh += d_a_t W_hh
    }
    Tensor dw = at::mm(da.view({Tn * B, G}).t(), h_prev);
    return {da, dh, dc, dw, Tensor()};
  }

  const T* SP = s1.data_ptr<T>();
  if (kind == GRU) {
    Tensor dg = at::empty({Tn, B, G}, hs.options());  // gradient of the hidden products [d_r, d_z, d_n ⊙ r]
    T* DG = dg.data_ptr<T>();
    for (int64_t t = Tn - 1; t >= 0; --t) {
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      for_rows(B, H, [&](int64_t b) {
        const int64_t o = t * BH + b * H, og = (t * B + b) * G;
        if (keep(t, b)) {
          gru_bwd_row<T>(DA + og, DG + og, DH + b * H, DHS + o, SP + (t * B + b) * 4 * H, hp + b * H, H);
        } else {
          carry_row<T>(DA + og, G, DH + b * H, DHS + o, H);
          std::memset(DG + og, 0, G * sizeof(T));
        }
      });
      gemm<T>(false, false, B, H, G, DG + t * B * G, G, W, H, T(1), DH, H);  // dh += d_gh_t W_hh
    }
    Tensor dg2 = dg.view({Tn * B, G});
    Tensor dw = at::mm(dg2.t(), h_prev);
    Tensor dbhn = dg2.narrow(1, 2 * H, H).sum(0);
    return {da, dh, Tensor(), dw, dbhn};
  }

  // GRU_BEFORE
  Tensor drh = at::empty({B, H}, hs.options());  // gradient of r ⊙ h_{t−1}, reused
  T* DRH = drh.data_ptr<T>();
  for (int64_t t = Tn - 1; t >= 0; --t) {
    const T* hp = t ? HS + (t - 1) * BH : h0p;
    T* dat = DA + t * B * G;
    for_rows(B, H, [&](int64_t b) {
      const int64_t o = t * BH + b * H;
      if (keep(t, b)) {
        grub_bwd_row1<T>(dat + b * G, DH + b * H, DHS + o, SP + (t * B + b) * 4 * H, hp + b * H, H);
      } else {
        carry_row<T>(dat + b * G, G, DH + b * H, DHS + o, H);
      }
    });
    gemm<T>(false, false, B, H, H, dat + 2 * H, G, W + 2 * H * H, H, T(0), DRH, H);  // d(r⊙h) = d_a_n W_hn
    for_rows(B, H, [&](int64_t b) {
      if (keep(t, b)) {  // else d_a_r stays 0 and d(r⊙h) is 0 on this row
        grub_bwd_row2<T>(dat + b * G, DH + b * H, DRH + b * H, SP + (t * B + b) * 4 * H, hp + b * H, H);
      }
    });
    gemm<T>(false, false, B, H, 2 * H, dat, G, W, H, T(1), DH, H);  // dh += [d_a_r, d_a_z] W_hrz
  }
  Tensor da2 = da.view({Tn * B, G});
  Tensor rh = s1.narrow(2, 3 * H, H).reshape({Tn * B, H});
  Tensor dw = at::cat({at::mm(da2.narrow(1, 0, 2 * H).t(), h_prev), at::mm(da2.narrow(1, 2 * H, H).t(), rh)});
  return {da, dh, Tensor(), dw, Tensor()};
}

void check(const Tensor& t, const char* name) {
  TORCH_CHECK(!t.defined() || t.numel() == 0 || (t.device().is_cpu() && t.is_contiguous()), name,
              " must be a contiguous CPU tensor");
}

std::vector<Tensor> forward(int64_t kind, Tensor xp, Tensor h0, Tensor c0, Tensor w_hh, Tensor b_hn, Tensor mask,
                            bool train) {
  for (auto* p : {&xp, &h0, &c0, &w_hh, &b_hn, &mask}) check(*p, "input");
  TORCH_CHECK(kind >= 0 && kind <= 4, "unknown kind");
  at::NoGradGuard no_grad;
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnnkit_rnn_forward", [&] {
    out = forward_impl<scalar_t>(kind, xp, h0, c0, w_hh, b_hn, mask, train);
  });
  return out;
}

std::vector<Tensor> backward(int64_t kind, Tensor d_hs, Tensor d_cn, Tensor h0, Tensor c0, Tensor w_hh, Tensor mask,
                             Tensor hs, Tensor s1, Tensor s2, Tensor s3) {
  for (auto* p : {&d_hs, &d_cn, &h0, &c0, &w_hh, &mask, &hs, &s1, &s2, &s3}) check(*p, "input");
  at::NoGradGuard no_grad;
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "rnnkit_rnn_backward", [&] {
    out = backward_impl<scalar_t>(kind, d_hs, d_cn, h0, c0, w_hh, mask, hs, s1, s2, s3);
  });
  return out;
}

bool direct_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "one layer-direction's recurrence, forward");
  m.def("backward", &backward, "one layer-direction's recurrence, backward (BPTT)");
  m.def("direct_blas", &direct_blas, "whether the per-step GEMMs call BLAS directly (else at::addmm_)");
}
