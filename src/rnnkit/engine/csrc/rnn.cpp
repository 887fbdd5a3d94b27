// rnnkit's compiled recurrences: forward and backward of rnn (tanh/relu), lstm, gru (reset after, torch.nn) and
// gru-before (the lecture's), one layer-direction per call: the input projection, the recurrence and, backward,
// every gradient of the direction (docs/engine.md, "The compiled kernel").
//
// Shape symbols: T time, B batch, I input, H hidden, G gates·H (rnn H, gru 3H, lstm 4H). Every tensor is
// contiguous, row-major, float or double. The input projection is one GEMM over all T·B rows. Per step: one GEMM
// (two for gru-before) with W_hh prepared once per call (StepWeight: MKL-packed for float32, W_hhᵀ laid out for a
// register-blocked product at B ≤ 4, else sgemm_/dgemm_ from the BLAS torch links; no dispatcher call, no tensor
// made per step), then the gate math as one loop over B·H that the compiler vectorises (float: a polynomial exp;
// double: libm, for exactness). The backward allocates nothing per step; the weight, input and bias gradients are
// one GEMM (or one column sum) each over all T·B rows after the loop. A row b of step t with mask 0 carries the
// state unchanged (the gradient passes through it), exactly as rnnkit.engine.own does.
//
// Over 600 lines on purpose: one translation unit, because the build cache (rnnkit.engine.build) is keyed by the
// hash of the listed sources, so a header of its own would not rebuild the kernels when it changed.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>
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

// ----------------------------------------------------------------------------------------------- buffer pool
// The large buffers of a call (projected inputs, gates, states, their gradients: MBs at small shapes) come from a
// pool that keeps freed blocks by size, so the next call reuses them. From the heap, glibc returns a freed heap
// top above its trim threshold to the OS at every call, and the next call faulted every page in again: 360 page
// faults per LSTM forward+backward at 50/16/32/64, a quarter of its time (torch's LSTM: none). Blocks under
// POOL_MIN bytes come from at::empty; the pool keeps at most POOL_LIMIT bytes of free blocks (more are freed).
constexpr size_t POOL_MIN = 32 << 10, POOL_LIMIT = size_t(256) << 20, POOL_HEAD = 64;

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // bytes (with the header) → block
  size_t cached = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: tensors may be freed during interpreter shutdown
  return *p;
}

void pool_release(void* base) {
  const size_t bytes = *static_cast<size_t*>(base);
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> g(p.mu);
    if (p.cached + bytes <= POOL_LIMIT) {
      p.free_blocks.emplace(bytes, base);
      p.cached += bytes;
      return;
    }
  }
  std::free(base);
}

struct PoolAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = ((n + 4095) / 4096) * 4096 + POOL_HEAD;  // rounded, so near sizes share blocks
    void* base = nullptr;
    Pool& p = pool();
    {
      std::lock_guard<std::mutex> g(p.mu);
      auto it = p.free_blocks.find(bytes);
      if (it != p.free_blocks.end()) {
        base = it->second;
        p.free_blocks.erase(it);
        p.cached -= bytes;
      }
    }
    if (base == nullptr) {
      base = std::aligned_alloc(POOL_HEAD, bytes);
      if (base == nullptr) throw std::bad_alloc();
      *static_cast<size_t*>(base) = bytes;
    }
    return {static_cast<char*>(base) + POOL_HEAD, base, &pool_release, c10::Device(c10::DeviceType::CPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

PoolAllocator& pool_allocator() {
  static PoolAllocator* a = new PoolAllocator();
  return *a;
}

// at::empty(sizes, opt) for a CPU tensor, its storage from the pool when it is large
Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opt) {
  const size_t bytes = size_t(c10::multiply_integers(sizes)) * c10::elementSize(c10::typeMetaToScalarType(opt.dtype()));
  if (bytes < POOL_MIN) return at::empty(sizes, opt);
  c10::Storage storage(c10::Storage::use_byte_size_t(), bytes, &pool_allocator(), /*resizable=*/true);
  return at::empty({0}, opt).set_(storage, 0, sizes);
}

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

// Row-major C (M×N, row stride ldc) = op(A)·op(B) + beta·C, op(A) M×K, op(B) K×N; A stored M×K (or K×M when
// ta), B stored K×N (or N×K when tb), each with its row stride. beta = 0 ignores what C held. One BLAS call
// (no dispatcher); at::addmm_ where torch links no BLAS symbol.
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T beta,
          T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
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

// Few rows (batch ≤ SMALL_B: sampling, serving): C = A·W (+ C) with W laid out K×N, a block of NB columns of C
// held in a local accumulator over all of K (the compiler keeps it in vector registers), so W streams through
// once and C is written once. BLAS pays a fixed cost per call that dominates a product this small.
constexpr int64_t SMALL_B = 4;

template <typename T, int MR, int NB>
__attribute__((noinline)) void small_mm_block(const T* __restrict A, int64_t lda, const T* __restrict W, int64_t ldw,
                                              int64_t K, T beta, T* __restrict C, int64_t ldc) {
  T acc[MR][NB];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = beta == T(0) ? T(0) : C[i * ldc + j];
  for (int64_t k = 0; k < K; ++k) {
    const T* w = W + k * ldw;
    for (int i = 0; i < MR; ++i) {
      const T s = A[i * lda + k];
      for (int j = 0; j < NB; ++j) acc[i][j] = std::fma(s, w[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NB; ++j) C[i * ldc + j] = acc[i][j];
}

template <typename T, int MR>
void small_mm_rows(int64_t N, const T* A, int64_t lda, const T* W, int64_t ldw, int64_t K, T beta, T* C, int64_t ldc) {
  // 8 vectors of 512 bits per row of C in flight (16 for two rows): enough independent FMA chains to hide
  // their latency; narrower blocks for the remainder, then one column at a time
  constexpr int V = 64 / sizeof(T);  // elements per 512-bit vector
  int64_t n0 = 0;
  for (; n0 + 8 * V <= N; n0 += 8 * V) small_mm_block<T, MR, 8 * V>(A, lda, W + n0, ldw, K, beta, C + n0, ldc);
  for (; n0 + 2 * V <= N; n0 += 2 * V) small_mm_block<T, MR, 2 * V>(A, lda, W + n0, ldw, K, beta, C + n0, ldc);
  for (; n0 + V / 2 <= N; n0 += V / 2) small_mm_block<T, MR, V / 2>(A, lda, W + n0, ldw, K, beta, C + n0, ldc);
  for (; n0 < N; ++n0) small_mm_block<T, MR, 1>(A, lda, W + n0, ldw, K, beta, C + n0, ldc);
}

template <typename T>
void small_mm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* W, int64_t ldw, T beta, T* C,
              int64_t ldc) {
  int64_t i = 0;
  for (; i + 2 <= M; i += 2) small_mm_rows<T, 2>(N, A + i * lda, lda, W, ldw, K, beta, C + i * ldc, ldc);
  if (i < M) small_mm_rows<T, 1>(N, A + i * lda, lda, W, ldw, K, beta, C + i * ldc, ldc);
}

extern "C" {
size_t sgemm_pack_get_size(const char*, const int*, const int*, const int*) __attribute__((weak));
void sgemm_pack(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
                float*) __attribute__((weak));
void sgemm_compute(const char*, const char*, const int*, const int*, const int*, const float*, const int*,
                   const float*, const int*, const float*, float*, const int*) __attribute__((weak));
}

// The fixed right operand of a loop's per-step products: C (M×N) = A (M×K)·op(W) + beta·C, op(W) K×N (W stored
// N×K when `wt`, else K×N, row stride ldw), the same M every step. Prepared once before the loop: for M ≤ SMALL_B
// laid out K×N for small_mm; for float with MKL's packed GEMM, packed once (MKL otherwise re-packs W on every
// call, which at these sizes costs as much as the product); else plain BLAS per step.
template <typename T>
struct StepWeight {
  const T* W;
  int64_t ldw, N, K, M;
  bool wt;
  Tensor layout;  // K×N copy for small_mm (when wt), or MKL's packed buffer (bytes)
  const T* kn = nullptr;
  const float* packed = nullptr;

  StepWeight(const T* W_, int64_t ldw_, bool wt_, int64_t N_, int64_t K_, int64_t M_, bool small_ok, int64_t uses)
      : W(W_), ldw(ldw_), N(N_), K(K_), M(M_), wt(wt_) {
    if (M <= SMALL_B && small_ok) {
      if (!wt) {
        kn = W;
        return;
      }
      auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
      layout = at::from_blob(const_cast<T*>(W), {N, K}, {ldw, 1}, opt).t().contiguous();  // (K, N)
      kn = layout.data_ptr<T>();
      ldw = N;
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      // packing costs about one product: only for a loop of several steps
      if (uses >= 4 && sgemm_pack_get_size != nullptr && sgemm_pack != nullptr && sgemm_compute != nullptr &&
          M > 0 && N > 0 && K > 0) {
        const int m = (int)N, n = (int)M, k = (int)K, ld = (int)ldw;
        const float one = 1.0f;
        const size_t bytes = sgemm_pack_get_size("A", &m, &n, &k);
        layout = pooled_empty({(int64_t)(bytes / sizeof(float)) + 16}, at::TensorOptions().dtype(at::kFloat));
        float* buf = layout.data_ptr<float>();
        sgemm_pack("A", wt ? "T" : "N", &m, &n, &k, &one, W, &ld, buf);
        packed = buf;
      }
    }
  }

  void mul(const T* A, int64_t lda, T beta, T* C, int64_t ldc) const {
    if (kn != nullptr) {
      small_mm<T>(M, N, K, A, lda, kn, ldw, beta, C, ldc);
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (packed != nullptr) {
        const int m = (int)N, n = (int)M, k = (int)K, la = (int)ldw, lb = (int)lda, lc = (int)ldc;
        sgemm_compute("P", "N", &m, &n, &k, packed, &la, A, &lb, &beta, C, &lc);
        return;
      }
    }
    gemm<T>(false, wt, M, N, K, A, lda, W, ldw, beta, C, ldc);
  }
};

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

// One LSTM unit j on pre-activations that already hold x W_ihᵀ + b + h W_hhᵀ, overwritten by the activated gates:
// gate q at g[q·gs + j] (gs = H in a row of the gate buffer, PANEL in a B = 1 panel's sums)
template <typename T>
inline __attribute__((always_inline)) void lstm_unit(T* __restrict g, int64_t gs, const T* __restrict c_prev,
                                                     T* __restrict c, T* __restrict h, T* __restrict tc, int64_t j) {
  const T i = Act<T>::sigmoid(g[j]);
  const T f = Act<T>::sigmoid(g[gs + j]);
  const T gg = Act<T>::tanh(g[2 * gs + j]);
  const T o = Act<T>::sigmoid(g[3 * gs + j]);
  const T cn = f * c_prev[j] + i * gg;
  const T tn = Act<T>::tanh(cn);
  g[j] = i;
  g[gs + j] = f;
  g[2 * gs + j] = gg;
  g[3 * gs + j] = o;
  c[j] = cn;
  tc[j] = tn;
  h[j] = o * tn;
}

// LSTM gates of one row (the step's GEMM accumulated into the projected inputs), overwritten by the activated gates
ROW lstm_fwd_row_inplace(T* __restrict g, const T* __restrict c_prev, T* __restrict c, T* __restrict h,
                         T* __restrict tc, int64_t H) {
  for (int64_t j = 0; j < H; ++j) lstm_unit<T>(g, H, c_prev, c, h, tc, j);
}

// gru (reset after): the projected inputs' row x (3H) is overwritten by the activated r, z, n (as the LSTM's gates
// are), the candidate's hidden part W_hn h + b_hn goes to its own row gn (H): the backward reads both
ROW gru_fwd_row(const T* __restrict g, T* __restrict x, const T* __restrict p, const T* __restrict bhn,
                T* __restrict gn, T* __restrict h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = Act<T>::sigmoid(x[j] + g[j]);
    const T z = Act<T>::sigmoid(x[H + j] + g[H + j]);
    const T ghn = g[2 * H + j] + bhn[j];
    const T n = Act<T>::tanh(x[2 * H + j] + r * ghn);
    x[j] = r;
    x[H + j] = z;
    x[2 * H + j] = n;
    gn[j] = ghn;
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

// a: the row's gate gradient [d_a_r, d_a_z, d_a_n] (of xp); q: the step's hidden-product gradient [d_a_r, d_a_z,
// d_a_n ⊙ r] (a reused (B, 3H) buffer, the per-step GEMM's operand); qn: d_a_n ⊙ r kept for dW_hn and d b_hn
ROW gru_bwd_row(T* __restrict a, T* __restrict q, T* __restrict qn, T* __restrict d, const T* __restrict gin,
                const T* __restrict st, const T* __restrict ghnp, const T* __restrict p, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = st[j], z = st[H + j], n = st[2 * H + j], ghn = ghnp[j];
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
    qn[j] = dan * r;
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

// ------------------------------------------------------------------------------------------ B = 1 LSTM panels
// One sequence at a time (sampling, serving, a batch of one): W_hh laid out in panels of PANEL hidden units —
// panel q holds, for every k, the 4·PANEL weights of units PANEL·q … PANEL·q + PANEL − 1 of the gates i, f, g, o
// (H/PANEL, H, 4·PANEL) — so W_hh streams through once per step, in address order, and each panel ends with all
// four gates of its units in registers: their gate math runs right after (on an AVX2 core the step takes about
// the time of reading W_hh from L2, against 1.3× that for the product into a (1, 4H) row and a pass over it).
// The sums are the small-batch product's (from the projected inputs, k in order) and the gate math the same
// function: the numbers are bitwise those of the row path (tested).
constexpr int64_t PANEL = 16;

bool lstm_panels_apply(int64_t kind, at::ScalarType dtype, int64_t B, int64_t H) {
  return kind == LSTM && dtype == at::kFloat && B == 1 && H > 0 && H % PANEL == 0;
}

// W_hh (4H, H) → panels (H/PANEL, H, 4·PANEL)
Tensor lstm_panels(const Tensor& w_hh) {
  const int64_t H = w_hh.size(1);
  return w_hh.reshape({4, H / PANEL, PANEL, H}).permute({1, 3, 0, 2}).contiguous().reshape({H / PANEL, H, 4 * PANEL});
}

template <typename T>
__attribute__((noinline)) void lstm_panel_step(const T* __restrict P, const T* __restrict hp, int64_t H,
                                               T* __restrict g, const T* __restrict cp, T* __restrict c,
                                               T* __restrict h, T* __restrict tc) {
  constexpr int64_t N = 4 * PANEL;
  T acc[N];
  for (int q = 0; q < 4; ++q)
    for (int u = 0; u < PANEL; ++u) acc[q * PANEL + u] = g[q * H + u];
  for (int64_t k = 0; k < H; ++k) {
    const T s = hp[k];
    const T* w = P + k * N;
    for (int j = 0; j < N; ++j) acc[j] = std::fma(s, w[j], acc[j]);
  }
  for (int u = 0; u < PANEL; ++u) lstm_unit<T>(acc, PANEL, cp, c, h, tc, u);
  for (int q = 0; q < 4; ++q)
    for (int u = 0; u < PANEL; ++u) g[q * H + u] = acc[q * PANEL + u];  // the activated gates, for the backward
}

// Rows of a step in parallel only when a step is large enough to pay for it (torch's thread count decides): from
// B·H > 8192 on, in blocks of at least 8192 elements (the names classifier, B = 64 and H = 256, splits its gate
// math over two threads; until 16384 it ran it on one while MKL ran the step's product on two).
template <typename F>
void for_rows(int64_t B, int64_t H, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(H, 1));
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
// Returns rnn: {hs}; lstm: {hs, cs, gates (i, f, g, o activated), tanh(c)}; gru: {hs, [r, z, n] (T, B, 3H: xp
// overwritten), gh_n = W_hn h + b_hn (T, B, H)};
// gru-before: {hs, S = [r, z, n, r⊙h]}. Without `train` the per-step buffers (all but hs, cs) hold one step only.
template <typename T>
std::vector<Tensor> forward_impl(int64_t kind, const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const Tensor& w_t, const Tensor& b_hn, const Tensor& mask,
                                 bool train) {
  const int64_t Tn = xp.size(0), B = xp.size(1), G = xp.size(2), H = h0.size(1);
  const int64_t BH = B * H, Ts = train ? Tn : 1;
  const T* X = xp.data_ptr<T>();
  const T* W = w_hh.data_ptr<T>();
  const T* M = opt_ptr<T>(mask);
  const T* h0p = h0.data_ptr<T>();
  Tensor hs = pooled_empty({Tn, B, H}, xp.options());
  T* HS = hs.data_ptr<T>();
  auto keep = [&](int64_t t, int64_t b) { return M == nullptr || M[t * B + b] != T(0); };
  auto xrow = [&](int64_t t, int64_t b) { return X + (t * B + b) * G; };
  // h W_hhᵀ per step, W_hh prepared once (small batch: W_hhᵀ laid out (H, G), given by the caller's cache when
  // w_t is defined, or made here for sequences; else packed for BLAS). gru-before multiplies two row blocks.
  const bool small_ok = B <= SMALL_B && (live(w_t) || Tn >= 4);  // laying out W_hhᵀ costs about one step
  const int64_t G1 = kind == GRU_BEFORE ? 2 * H : G;
  auto prep = [&](int64_t rows0, int64_t n) {
    if (small_ok && live(w_t)) {
      return StepWeight<T>(w_t.data_ptr<T>() + rows0, G, false, n, H, B, true, Tn);
    }
    return StepWeight<T>(W + rows0 * H, H, true, n, H, B, small_ok, Tn);
  };
  if (lstm_panels_apply(kind, xp.scalar_type(), B, H) && (w_t.dim() == 3 || (!live(w_t) && Tn >= 4))) {
    // B = 1 LSTM: panels given by the caller's cache, or made here for a sequence (about one step's reading)
    const Tensor panels = w_t.dim() == 3 ? w_t : lstm_panels(w_hh);
    const T* P = panels.data_ptr<T>();
    Tensor cs = pooled_empty({Tn, 1, H}, xp.options());
    Tensor tcs = pooled_empty({Ts, 1, H}, xp.options());
    T* CS = cs.data_ptr<T>();
    T* GA = const_cast<T*>(X);
    T* TC = tcs.data_ptr<T>();
    for (int64_t t = 0; t < Tn; ++t) {
      const T* hp = t ? HS + (t - 1) * H : h0p;
      const T* cp = t ? CS + (t - 1) * H : c0.data_ptr<T>();
      T* c = CS + t * H;
      T* h = HS + t * H;
      if (!keep(t, 0)) {  // a carried step: its gate row is never read
        std::memcpy(c, cp, H * sizeof(T));
        std::memcpy(h, hp, H * sizeof(T));
        continue;
      }
      T* ga = GA + t * G;
      T* tc = TC + (train ? t : 0) * H;
      for (int64_t q = 0; q < H / PANEL; ++q) {
        const int64_t u = q * PANEL;
        lstm_panel_step<T>(P + q * H * 4 * PANEL, hp, H, ga + u, cp + u, c + u, h + u, tc + u);
      }
    }
    return {hs, cs, xp, tcs};
  }
  TORCH_CHECK(w_t.dim() < 3, "panels are for a one-row float LSTM");
  const StepWeight<T> w1 = prep(0, G1);
  auto hw = [&](const T* a, int64_t lda, T* c, int64_t ldc) { w1.mul(a, lda, T(0), c, ldc); };

  if (kind == RNN_TANH || kind == RNN_RELU) {
    const bool relu = kind == RNN_RELU;
    for (int64_t t = 0; t < Tn; ++t) {
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      T* out = HS + t * BH;
      hw(hp, H, out, H);  // h_{t−1} W_hhᵀ
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
    // xp (owned by the caller) is the gate buffer: each step's GEMM adds h W_hhᵀ into its rows and the row
    // function overwrites them with the activated gates, which the backward reads; no second (T, B, 4H) buffer
    Tensor cs = pooled_empty({Tn, B, H}, xp.options());
    Tensor tcs = pooled_empty({Ts, B, H}, xp.options());
    T* CS = cs.data_ptr<T>();
    T* GA = const_cast<T*>(X);
    T* TC = tcs.data_ptr<T>();
    const T* c0p = c0.data_ptr<T>();
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t s = train ? t : 0;
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      const T* cp = t ? CS + (t - 1) * BH : c0p;
      T* ga = GA + t * B * G;
      w1.mul(hp, H, T(1), ga, G);  // (B, 4H) += h_{t−1} W_hhᵀ
      for_rows(B, H, [&](int64_t b) {
        T* c = CS + t * BH + b * H;
        T* h = HS + t * BH + b * H;
        if (keep(t, b)) {
          lstm_fwd_row_inplace<T>(ga + b * G, cp + b * H, c, h, TC + s * BH + b * H, H);
        } else {  // a carried row: its gate row is never read (the backward passes the gradient through)
          std::memcpy(c, cp + b * H, H * sizeof(T));
          std::memcpy(h, hp + b * H, H * sizeof(T));
        }
      });
    }
    return {hs, cs, xp, tcs};
  }

  if (kind == GRU) {
    // like the LSTM's, xp (the caller's) holds the activated gates afterwards; only the candidate's hidden part
    // gets a buffer of its own (T, B, H), not a (T, B, 4H) copy of all four
    Tensor gh = pooled_empty({B, G}, xp.options());  // the step's hidden products, reused
    Tensor ghn = pooled_empty({Ts, B, H}, xp.options());
    T* GH = gh.data_ptr<T>();
    T* GHN = ghn.data_ptr<T>();
    T* XA = const_cast<T*>(X);
    const T* bhn = b_hn.data_ptr<T>();
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t s = train ? t : 0;
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      hw(hp, H, GH, G);  // (B, 3H)
      for_rows(B, H, [&](int64_t b) {
        T* h = HS + t * BH + b * H;
        if (keep(t, b)) {  // else the row's gates are never read (the backward passes the gradient through)
          gru_fwd_row<T>(GH + b * G, XA + (t * B + b) * G, hp + b * H, bhn, GHN + s * BH + b * H, h, H);
        } else {
          std::memcpy(h, hp + b * H, H * sizeof(T));
        }
      });
    }
    return {hs, xp, ghn};
  }

  Tensor S = pooled_empty({Ts, B, 4 * H}, xp.options());
  T* SP = S.data_ptr<T>();

  // GRU_BEFORE: r, z from h_{t−1}; the candidate's product takes r ⊙ h_{t−1}
  Tensor grz = pooled_empty({B, 2 * H}, xp.options());
  Tensor gn = pooled_empty({B, H}, xp.options());
  T* GRZ = grz.data_ptr<T>();
  T* GN = gn.data_ptr<T>();
  const StepWeight<T> w2 = prep(2 * H, H);
  for (int64_t t = 0; t < Tn; ++t) {
    const int64_t s = train ? t : 0;
    const T* hp = t ? HS + (t - 1) * BH : h0p;
    T* st0 = SP + s * B * 4 * H;
    hw(hp, H, GRZ, 2 * H);  // (B, 2H)
    for_rows(B, H, [&](int64_t b) { grub_fwd_row1<T>(GRZ + b * 2 * H, xrow(t, b), hp + b * H, st0 + b * 4 * H, H); });
    w2.mul(st0 + 3 * H, 4 * H, T(0), GN, H);  // (r ⊙ h) W_hnᵀ
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
// out[0:n] = Σ_r A[r, 0:n] over `rows` rows (row stride n): blocks of 64 rows summed first, then the blocks, so
// the rounding grows with 64 + rows/64 rather than with rows
template <typename T>
void column_sums(const T* __restrict A, int64_t rows, int64_t n, T* __restrict out) {
  std::vector<T> part(n);
  for (int64_t r0 = 0; r0 < rows; r0 += 64) {
    std::fill(part.begin(), part.end(), T(0));
    T* __restrict p = part.data();
    for (int64_t r = r0; r < std::min(rows, r0 + 64); ++r) {
      const T* __restrict a = A + r * n;
      for (int64_t j = 0; j < n; ++j) p[j] += a[j];
    }
    for (int64_t j = 0; j < n; ++j) out[j] += p[j];
  }
}

// gru: from this many rows (T·B) on, its weight gradients are formed transposed (see below)
constexpr int64_t GRU_T_ROWS = 2048;

// Returns {d_xp (T, B, G), dh0 (B, H), dc0 (B, H) or empty, dW_hh (G, H), d_b_hn (H,) or empty}.
template <typename T>
std::vector<Tensor> backward_impl(int64_t kind, const Tensor& d_hs, const Tensor& d_hn, const Tensor& d_cn, const Tensor& h0,
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
  // dh += d_a_t W_hh per step with W_hh (G, H) as it is stored (K×N), prepared once (gru-before: rows 0:2H here,
  // the candidate's block separately)
  const StepWeight<T> wb(W, H, false, H, kind == GRU_BEFORE ? 2 * H : G, B, true, Tn);
  // gradient reaching h_t from later steps, updated in place; it starts as the final state's own gradient
  Tensor dh = live(d_hn) ? d_hn.clone(at::MemoryFormat::Contiguous) : at::zeros({B, H}, hs.options());
  T* DH = dh.data_ptr<T>();
  // dW (N, H) = Σ_t D_tᵀ h_{t−1} over all steps at once (h_{−1} = h0): two GEMMs, no copy of the states
  auto weight_grad = [&](const T* D, int64_t ldd, int64_t N, T* DW) {
    gemm<T>(true, false, N, H, B, D, ldd, h0p, H, T(0), DW, H);
    if (Tn > 1) gemm<T>(true, false, N, H, (Tn - 1) * B, D + B * ldd, ldd, HS, H, T(1), DW, H);
  };
  Tensor dw = pooled_empty({G, H}, hs.options());
  T* DW = dw.data_ptr<T>();
  Tensor da = pooled_empty({Tn, B, G}, hs.options());  // gradient of the gate pre-activations (= of xp)
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
      wb.mul(DA + t * BH, H, T(1), DH, H);  // dh += d_a_t W_hh
    }
    weight_grad(DA, H, H, DW);
    return {da, dh, Tensor(), dw, Tensor()};
  }

  if (kind == LSTM) {
    const T* CS = s1.data_ptr<T>();
    const T* GA = s2.data_ptr<T>();
    const T* TC = s3.data_ptr<T>();
    const T* c0p = c0.data_ptr<T>();
    Tensor dc = d_cn.clone(at::MemoryFormat::Contiguous);
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
      wb.mul(DA + t * B * G, G, T(1), DH, H);  // dh += d_a_t W_hh
    }
    weight_grad(DA, G, G, DW);
    return {da, dh, dc, dw, Tensor()};
  }

  const T* SP = s1.data_ptr<T>();
  if (kind == GRU) {
    // gradient of the step's hidden products [d_a_r, d_a_z, d_a_n ⊙ r] in one reused (B, 3H) buffer (one GEMM
    // over all three gates per step); d_a_n ⊙ r of every step kept (T, B, H) for dW_hn and d b_hn. d_a_r and
    // d_a_z are rows of da: dW_hr, dW_hz read them from there, so no (T, B, 3H) second gradient.
    Tensor dq = pooled_empty({B, G}, hs.options());
    Tensor dqn = pooled_empty({Tn, B, H}, hs.options());
    T* DQ = dq.data_ptr<T>();
    T* DQN = dqn.data_ptr<T>();
    const T* GHN = s2.data_ptr<T>();
    for (int64_t t = Tn - 1; t >= 0; --t) {
      const T* hp = t ? HS + (t - 1) * BH : h0p;
      for_rows(B, H, [&](int64_t b) {
        const int64_t o = t * BH + b * H, og = (t * B + b) * G;
        if (keep(t, b)) {
          gru_bwd_row<T>(DA + og, DQ + b * G, DQN + o, DH + b * H, DHS + o, SP + og, GHN + o, hp + b * H, H);
        } else {
          carry_row<T>(DA + og, G, DH + b * H, DHS + o, H);
          std::memset(DQ + b * G, 0, G * sizeof(T));
          std::memset(DQN + o, 0, H * sizeof(T));
        }
      });
      wb.mul(DQ, G, T(1), DH, H);  // dh += d_gh_t W_hh
    }
    // d_a_r, d_a_z are rows of da, d_a_n ⊙ r those of dqn. Over many rows (GRU_T_ROWS) dW_hhᵀ (H, 3H) =
    // Σ_t h_{t−1}ᵀ [d_a_r, d_a_z, d_a_n ⊙ r]_t, then transposed: MKL ran hᵀ·D 10–15% faster than Dᵀ·h at
    // 200/64/128/512 (one thread); at small shapes the transpose's copy costs more than that.
    Tensor dbhn = at::zeros({H}, hs.options());
    column_sums<T>(DQN, Tn * B, H, dbhn.data_ptr<T>());
    if (Tn * B < GRU_T_ROWS) {
      weight_grad(DA, G, 2 * H, DW);           // rows of W_hr, W_hz
      weight_grad(DQN, H, H, DW + 2 * H * H);  // W_hn
    } else {
      Tensor dwt = pooled_empty({H, G}, hs.options());
      T* DWT = dwt.data_ptr<T>();
      auto weight_grad_t = [&](const T* D, int64_t ldd, int64_t N, T* CT) {  // CT (H, N), row stride G
        gemm<T>(true, false, H, N, B, h0p, H, D, ldd, T(0), CT, G);
        if (Tn > 1) gemm<T>(true, false, H, N, (Tn - 1) * B, HS, H, D + B * ldd, ldd, T(1), CT, G);
      };
      weight_grad_t(DA, G, 2 * H, DWT);
      weight_grad_t(DQN, H, H, DWT + 2 * H);
      dw.copy_(dwt.t());
    }
    return {da, dh, Tensor(), dw, dbhn};
  }

  // GRU_BEFORE
  Tensor drh = pooled_empty({B, H}, hs.options());  // gradient of r ⊙ h_{t−1}, reused
  T* DRH = drh.data_ptr<T>();
  const StepWeight<T> wn(W + 2 * H * H, H, false, H, H, B, true, Tn);
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
    wn.mul(dat + 2 * H, G, T(0), DRH, H);  // d(r⊙h) = d_a_n W_hn
    for_rows(B, H, [&](int64_t b) {
      if (keep(t, b)) {  // else d_a_r stays 0 and d(r⊙h) is 0 on this row
        grub_bwd_row2<T>(dat + b * G, DH + b * H, DRH + b * H, SP + (t * B + b) * 4 * H, hp + b * H, H);
      }
    });
    wb.mul(dat, G, T(1), DH, H);  // dh += [d_a_r, d_a_z] W_hrz
  }
  weight_grad(DA, G, 2 * H, DW);                                                           // rows of W_hr, W_hz
  gemm<T>(true, false, H, H, Tn * B, DA + 2 * H, G, SP + 3 * H, 4 * H, T(0), DW + 2 * H * H, H);  // W_hn: (r⊙h)
  return {da, dh, Tensor(), dw, Tensor()};
}

void check(const Tensor& t, const char* name) {
  TORCH_CHECK(!t.defined() || t.numel() == 0 || (t.device().is_cpu() && t.is_contiguous()), name,
              " must be a contiguous CPU tensor");
}

// ------------------------------------------------------------------------------------------- one layer-direction
// The whole direction in one call: xp = x W_ihᵀ + (folded biases) as one GEMM over all T·B rows, then the
// recurrence. gru (reset after) keeps b_hn inside the step (r ⊙ (W_hn h + b_hn)); every other bias is folded.
template <typename T>
std::vector<Tensor> layer_forward_impl(int64_t kind, const Tensor& x, const Tensor& h0, const Tensor& c0,
                                       const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_t, const Tensor& b_ih,
                                       const Tensor& b_hh, const Tensor& mask, bool train) {
  const int64_t Tn = x.size(0), B = x.size(1), I = x.size(2), G = w_hh.size(0), H = w_hh.size(1);
  Tensor xp = pooled_empty({Tn, B, G}, x.options());
  T* XP = xp.data_ptr<T>();
  Tensor b_hn = kind == GRU ? at::zeros({H}, x.options()) : Tensor();
  const bool bias = live(b_ih);
  if (bias) {
    std::vector<T> folded(G);
    const T* bi = b_ih.data_ptr<T>();
    const T* bh = b_hh.data_ptr<T>();
    const int64_t outside = kind == GRU ? G - H : G;  // biases added before any gate multiplies them
    for (int64_t j = 0; j < G; ++j) folded[j] = j < outside ? bi[j] + bh[j] : bi[j];
    if (kind == GRU) std::memcpy(b_hn.data_ptr<T>(), bh + G - H, H * sizeof(T));
    for (int64_t r = 0; r < Tn * B; ++r) std::memcpy(XP + r * G, folded.data(), G * sizeof(T));
  }
  gemm<T>(false, true, Tn * B, G, I, x.data_ptr<T>(), I, w_ih.data_ptr<T>(), I, bias ? T(1) : T(0), XP, G);
  return forward_impl<T>(kind, xp, h0, c0, w_hh, w_t, b_hn, mask, train);
}

// Returns {dx (T, B, I), dh0, dc0 or undefined, dW_ih (G, I), dW_hh (G, H), db_ih (G), db_hh (G)}; what `need`
// (x, w_ih, bias) marks as not needed is undefined.
template <typename T>
std::vector<Tensor> layer_backward_impl(int64_t kind, const Tensor& d_hs, const Tensor& d_hn, const Tensor& d_cn,
                                        const Tensor& x,
                                        const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                                        const Tensor& mask, const Tensor& hs, const Tensor& s1, const Tensor& s2,
                                        const Tensor& s3, bool need_x, bool need_wih, bool need_bias) {
  const int64_t Tn = x.size(0), B = x.size(1), I = x.size(2), G = w_hh.size(0), H = w_hh.size(1);
  auto r = backward_impl<T>(kind, d_hs, d_hn, d_cn, h0, c0, w_hh, mask, hs, s1, s2, s3);
  const T* DA = r[0].template data_ptr<T>();  // (T·B, G): the gradient of xp
  Tensor dx, dwih, dbih, dbhh;
  if (need_x) {
    dx = pooled_empty({Tn, B, I}, x.options());
    gemm<T>(false, false, Tn * B, I, G, DA, G, w_ih.data_ptr<T>(), I, T(0), dx.data_ptr<T>(), I);
  }
  if (need_wih && kind == GRU && Tn * B >= GRU_T_ROWS) {  // as its dW_hh: xᵀ·da (I, G), then transposed
    Tensor dwiht = pooled_empty({I, G}, x.options());
    gemm<T>(true, false, I, G, Tn * B, x.data_ptr<T>(), I, DA, G, T(0), dwiht.data_ptr<T>(), G);
    dwih = dwiht.t().contiguous();
  } else if (need_wih) {
    dwih = pooled_empty({G, I}, x.options());
    gemm<T>(true, false, G, I, Tn * B, DA, G, x.data_ptr<T>(), I, T(0), dwih.data_ptr<T>(), I);
  }
  if (need_bias) {
    dbih = at::zeros({G}, x.options());
    column_sums<T>(DA, Tn * B, G, dbih.data_ptr<T>());
    dbhh = dbih.clone();
    if (kind == GRU) dbhh.narrow(0, G - H, H).copy_(r[4]);
  }
  return {dx, r[1], r[2], dwih, r[3], dbih, dbhh};
}

std::vector<Tensor> layer_forward(int64_t kind, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor w_t,
                                  Tensor b_ih, Tensor b_hh, Tensor mask, bool train) {
  for (auto* p : {&x, &h0, &c0, &w_ih, &w_hh, &w_t, &b_ih, &b_hh, &mask}) check(*p, "input");
  TORCH_CHECK(kind >= 0 && kind <= 4, "unknown kind");
  at::NoGradGuard no_grad;
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_layer_forward", [&] {
    out = layer_forward_impl<scalar_t>(kind, x, h0, c0, w_ih, w_hh, w_t, b_ih, b_hh, mask, train);
  });
  return out;
}

std::vector<Tensor> layer_backward(int64_t kind, Tensor d_hs, Tensor d_hn, Tensor d_cn, Tensor x, Tensor h0, Tensor c0,
                                   Tensor w_ih, Tensor w_hh, Tensor mask, Tensor hs, Tensor s1, Tensor s2, Tensor s3,
                                   bool need_x, bool need_wih, bool need_bias) {
  for (auto* p : {&x, &h0, &c0, &w_ih, &w_hh, &mask, &hs, &s1, &s2, &s3}) check(*p, "input");
  // the incoming gradients may have any strides (a loss's sum() hands an expanded tensor): d_hn and d_cn are cloned
  // contiguous where they are read, d_hs is copied into a pooled buffer (not at::empty: its pages would fault in
  // again every call, see the pool above)
  for (auto* p : {&d_hs, &d_hn, &d_cn}) TORCH_CHECK(!p->defined() || p->device().is_cpu(), "gradients must be on the CPU");
  if (!d_hs.is_contiguous()) {
    Tensor dense = pooled_empty(d_hs.sizes(), d_hs.options());
    dense.copy_(d_hs);
    d_hs = dense;
  }
  at::NoGradGuard no_grad;
  std::vector<Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_layer_backward", [&] {
    out = layer_backward_impl<scalar_t>(kind, d_hs, d_hn, d_cn, x, h0, c0, w_ih, w_hh, mask, hs, s1, s2, s3, need_x,
                                        need_wih, need_bias);
  });
  return out;
}

// ------------------------------------------------------------------------------------- the autograd node, in C++
// layer_train: one layer-direction with grad, as one C++ autograd node (no Python between the forward, the
// autograd engine and the backward: torch.autograd.Function cost about 0.1 ms a call in Python glue). Its inputs
// as layer_forward's, except that a None (an empty tensor inside) h0/c0 is the zero state and b_ih/b_hh/mask may
// be None.
// Returns {hs (T, B, H), h_T (B, H), c_T (B, H); empty and not differentiable but for lstm}; h_T and c_T are
// their own tensors, so their gradients enter the backward as its starting dh, dc (never a (T, B, H) scatter).
// Under create_graph=True the backward is not this kernel (it is not differentiable) but the Python function set
// by set_double_backward (the autograd reference, rnnkit.engine.compiled), so double backward works.
py::object* double_backward_fn = nullptr;  // leaked on purpose: never destroyed after the interpreter

void set_double_backward(py::object fn) {
  if (double_backward_fn == nullptr) double_backward_fn = new py::object();
  *double_backward_fn = std::move(fn);
}

// a contiguous tensor for the kernels, an empty one (their "None") for an undefined one
Tensor dense(const Tensor& t, const Tensor& like) { return t.defined() ? t.contiguous() : at::empty({0}, like.options()); }

struct LayerFn : public torch::autograd::Function<LayerFn> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, int64_t kind, const Tensor& x,
                                                const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                                const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh,
                                                const Tensor& mask, bool lead) {
    const int64_t B = x.size(1), H = w_hh.size(1), Tn = x.size(0);
    Tensor h0_ = live(h0) ? h0.contiguous() : at::zeros({B, H}, x.options());
    Tensor c0_ = kind != LSTM ? dense(Tensor(), x) : live(c0) ? c0.contiguous() : at::zeros({B, H}, x.options());
    Tensor x_ = x.contiguous(), w_ih_ = w_ih.contiguous(), w_hh_ = w_hh.contiguous();
    Tensor b_ih_ = dense(b_ih, x), b_hh_ = dense(b_hh, x), mask_ = dense(mask, x);
    std::vector<Tensor> out = layer_forward(kind, x_, h0_, c0_, w_ih_, w_hh_, dense(Tensor(), x), b_ih_, b_hh_, mask_, true);
    Tensor hs = out[0];
    // lead: the finals (1, B, H), as a one-layer module returns them (an unsqueeze node per call saved)
    auto last = [&](const Tensor& t) { return (lead ? t.narrow(0, Tn - 1, 1) : t[Tn - 1]).clone(); };
    Tensor h_n = last(hs);
    Tensor c_n = kind == LSTM ? last(out[1]) : at::empty({0}, x.options());
    if (kind != LSTM) ctx->mark_non_differentiable({c_n});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["zero_h"] = !live(h0);
    ctx->saved_data["zero_c"] = !live(c0);
    ctx->saved_data["bias"] = live(b_ih);
    while (out.size() < 4) out.push_back(dense(Tensor(), x));
    // the inputs as given (the double backward differentiates with respect to them); made contiguous when read
    ctx->save_for_backward({x, live(h0) ? h0 : h0_, live(c0) ? c0 : c0_, w_ih, w_hh, b_ih, b_hh, mask, hs,
                            out[1], out[2], out[3]});
    return {hs, h_n, c_n};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const int64_t kind = ctx->saved_data["kind"].toInt();
    const bool bias = ctx->saved_data["bias"].toBool();
    Tensor d_hs = grads[0], d_hn = grads[1], d_cn = grads[2];
    const Tensor &x = saved[0], &h0 = saved[1], &c0 = saved[2], &w_ih = saved[3], &w_hh = saved[4];
    const Tensor &b_ih = saved[5], &b_hh = saved[6], &mask = saved[7];
    // indices among the tensor inputs: x 0, h0 1, c0 2, w_ih 3, w_hh 4, b_ih 5, b_hh 6, mask 7
    const bool need_h0 = !ctx->saved_data["zero_h"].toBool() && ctx->needs_input_grad(1);
    const bool need_c0 = kind == LSTM && !ctx->saved_data["zero_c"].toBool() && ctx->needs_input_grad(2);
    if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the autograd reference instead
      TORCH_CHECK(double_backward_fn != nullptr, "rnnkit: no double backward registered");
      if (d_hn.dim() == 3) d_hn = d_hn.squeeze(0);  // lead: the reference's finals are (B, H)
      if (d_cn.dim() == 3) d_cn = d_cn.squeeze(0);
      py::gil_scoped_acquire gil;
      py::tuple g = (*double_backward_fn)(kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, d_hs, d_hn, d_cn);
      auto at = [&](int i) { return g[i].is_none() ? Tensor() : g[i].cast<Tensor>(); };
      return {Tensor(), at(0),         need_h0 ? at(1) : Tensor(), need_c0 ? at(2) : Tensor(), at(3), at(4),
              bias ? at(5) : Tensor(), bias ? at(6) : Tensor(),     Tensor(), Tensor()};
    }
    if (!d_cn.defined() || d_cn.numel() == 0) {
      d_cn = kind == LSTM ? at::zeros_like(h0) : at::empty({0}, h0.options());
    }
    const bool need_x = ctx->needs_input_grad(0), need_wih = ctx->needs_input_grad(3);
    const bool need_bias = bias && (ctx->needs_input_grad(5) || ctx->needs_input_grad(6));
    std::vector<Tensor> r = layer_backward(kind, d_hs, d_hn, d_cn, x.contiguous(), h0.contiguous(), dense(c0, x),
                                           w_ih.contiguous(), w_hh.contiguous(), dense(mask, x), saved[8], saved[9],
                                           saved[10], saved[11], need_x, need_wih, need_bias);
    return {Tensor(),
            need_x ? r[0] : Tensor(),
            need_h0 ? r[1] : Tensor(),
            need_c0 ? r[2] : Tensor(),
            need_wih ? r[3] : Tensor(),
            ctx->needs_input_grad(4) ? r[4] : Tensor(),
            bias && ctx->needs_input_grad(5) ? r[5] : Tensor(),
            bias && ctx->needs_input_grad(6) ? r[6] : Tensor(),
            Tensor(),
            Tensor()};
  }
};

std::vector<Tensor> layer_train(int64_t kind, const Tensor& x, const std::optional<Tensor>& h0,
                                const std::optional<Tensor>& c0, const Tensor& w_ih, const Tensor& w_hh,
                                const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh,
                                const std::optional<Tensor>& mask, bool lead) {
  TORCH_CHECK(kind >= 0 && kind <= 4, "unknown kind");
  // torch's C++ autograd Function takes no undefined tensors: an empty one stands for None
  auto get = [&](const std::optional<Tensor>& t) { return t.has_value() ? *t : at::empty({0}, x.options()); };
  return LayerFn::apply(kind, x, get(h0), get(c0), w_ih, w_hh, get(b_ih), get(b_hh), get(mask), lead);
}

// What forward_impl multiplies by at a small batch, made once by the caller's cache (sampling: a call per step):
// LSTM panels for one float row, else W_hhᵀ (H, G)
Tensor step_layout(int64_t kind, const Tensor& w_hh, int64_t B) {
  at::NoGradGuard no_grad;
  if (lstm_panels_apply(kind, w_hh.scalar_type(), B, w_hh.size(1))) return lstm_panels(w_hh.contiguous());
  return w_hh.t().contiguous();
}

bool direct_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }
bool packed_gemm() { return sgemm_pack != nullptr && sgemm_compute != nullptr && sgemm_pack_get_size != nullptr; }

// How many threads a for_rows loop of this build really runs on (1 where it was compiled without -fopenmp).
int64_t row_threads() {
  std::vector<int64_t> used(std::max<int64_t>(at::get_num_threads(), 1) + 1, 0);
  const int64_t last = static_cast<int64_t>(used.size()) - 1;
  at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) { used[std::min<int64_t>(at::get_thread_num(), last)] = 1; });
  int64_t n = 0;
  for (int64_t u : used) n += u;
  return n;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("layer_forward", &layer_forward, "one layer-direction: input projection and recurrence, forward");
  m.def("layer_backward", &layer_backward, "one layer-direction: BPTT and the input projection's gradients");
  m.def("layer_train", &layer_train, "one layer-direction with grad: forward, its backward as one C++ autograd node",
        py::arg("kind"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih"), py::arg("b_hh"), py::arg("mask"), py::arg("lead") = false);
  m.def("set_double_backward", &set_double_backward, "the Python function layer_train's backward calls under create_graph");
  m.def("step_layout", &step_layout, "W_hh laid out for a small batch's per-step product (see forward_impl)");
  m.def("direct_blas", &direct_blas, "whether the GEMMs call BLAS directly (else at::addmm_)");
  m.def("packed_gemm", &packed_gemm, "whether float32 per-step GEMMs use MKL's packed weights");
  m.def("row_threads", &row_threads, "how many threads an at::parallel_for loop of this build runs on");
}
