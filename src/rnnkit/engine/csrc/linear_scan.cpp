// The diagonal linear recurrence h_t = a_t * h_{t-1} + b_t, forward and backward, as one sequential loop over
// time with an elementwise, vectorisable inner loop over the N = B*H independent channels.
//
// Built on first use by rnnkit.engine.build.load_extension("linear_scan", ["linear_scan.cpp"]); the Python side
// (rnnkit/engine/scan.py) wraps both functions in one torch.autograd.Function and checks shapes, dtypes and
// contiguity before calling. Shapes: a, b, g, hs (T, N); h0 (N). float32 and float64.
//
// Channels are split between threads with at::parallel_for (each thread walks all T steps over its own block of
// channels, so no synchronisation between steps, and each channel's arithmetic is the same for any split); inside a
// block the channel loop has no dependencies and the compiler vectorises it (-O3 -march=native). Threads need
// -fopenmp (see the fused kernels' note below).

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace {

// a block of channels [lo, hi) per task: at least a few cache lines, so threads do not share lines
constexpr int64_t kGrain = 256;

template <typename scalar_t>
void forward_kernel(const scalar_t* __restrict a, const scalar_t* __restrict b, const scalar_t* __restrict h0,
                    scalar_t* __restrict hs, int64_t T, int64_t N) {
  at::parallel_for(0, N, kGrain, [&](int64_t lo, int64_t hi) {
    const scalar_t* prev = h0;
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* at_ = a + t * N;
      const scalar_t* bt = b + t * N;
      scalar_t* ht = hs + t * N;

      for (int64_t n = lo; n < hi; ++n) {
        ht[n] = at_[n] * prev[n] + bt[n];
      }
      prev = ht;
    }
  });
}

// dh_t = g_t + a_{t+1} dh_{t+1} (carried backwards), db_t = dh_t, da_t = dh_t h_{t-1}, dh0 = a_0 dh_0.
template <typename scalar_t>
void backward_kernel(const scalar_t* __restrict a, const scalar_t* __restrict hs, const scalar_t* __restrict h0,
                     const scalar_t* __restrict g, scalar_t* __restrict da, scalar_t* __restrict db,
                     scalar_t* __restrict dh0, int64_t T, int64_t N) {
  at::parallel_for(0, N, kGrain, [&](int64_t lo, int64_t hi) {
    // the carry a_{t+1} dh_{t+1} lives in dh0 (written last as a_0 dh_0), so no scratch buffer is needed
    for (int64_t n = lo; n < hi; ++n) dh0[n] = scalar_t(0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* at_ = a + t * N;
      const scalar_t* gt = g + t * N;
      const scalar_t* prev = t > 0 ? hs + (t - 1) * N : h0;
      scalar_t* dat = da + t * N;
      scalar_t* dbt = db + t * N;

      for (int64_t n = lo; n < hi; ++n) {
        const scalar_t dh = gt[n] + dh0[n];
        dbt[n] = dh;
        dat[n] = dh * prev[n];
        dh0[n] = at_[n] * dh;
      }
    }
  });
}

void check(const torch::Tensor& x, const char* name, int64_t dims) {
  TORCH_CHECK(x.device().is_cpu(), "linear_scan: ", name, " must be on the CPU");
  TORCH_CHECK(x.is_contiguous(), "linear_scan: ", name, " must be contiguous");
  TORCH_CHECK(x.dim() == dims, "linear_scan: ", name, " must have ", dims, " dimensions");
}

}  // namespace

torch::Tensor scan_forward(torch::Tensor a, torch::Tensor b, torch::Tensor h0) {
  check(a, "a", 2);
  check(b, "b", 2);
  check(h0, "h0", 1);
  TORCH_CHECK(a.sizes() == b.sizes() && h0.size(0) == a.size(1), "linear_scan: shapes disagree");
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && a.scalar_type() == h0.scalar_type(), "linear_scan: dtypes");
  const int64_t T = a.size(0), N = a.size(1);
  auto hs = torch::empty_like(a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "linear_scan_forward", [&] {
    forward_kernel<scalar_t>(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(),
                             hs.data_ptr<scalar_t>(), T, N);
  });
  return hs;
}

std::vector<torch::Tensor> scan_backward(torch::Tensor a, torch::Tensor hs, torch::Tensor h0, torch::Tensor g) {
  check(a, "a", 2);
  check(hs, "hs", 2);
  check(h0, "h0", 1);
  check(g, "grad", 2);
  TORCH_CHECK(a.sizes() == hs.sizes() && a.sizes() == g.sizes() && h0.size(0) == a.size(1),
              "linear_scan: shapes disagree");
  const int64_t T = a.size(0), N = a.size(1);
  auto da = torch::empty_like(a);
  auto db = torch::empty_like(a);
  auto dh0 = torch::empty_like(h0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "linear_scan_backward", [&] {
    backward_kernel<scalar_t>(a.data_ptr<scalar_t>(), hs.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(),
                              g.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(), db.data_ptr<scalar_t>(),
                              dh0.data_ptr<scalar_t>(), T, N);
  });
  return {da, db, dh0};
}

// minGRU / minLSTM with the gate math fused into the loop. The layer computes P = x W^T (T, B, G*H) with one
// matrix product (no bias); the kernels add the bias, form the gates and run the recurrence in one pass forward
// and one pass backward, so nothing between the matrix product and the states is a separate torch op:
//
//   forward:  reads P (G values per channel) and h_{t-1}, writes h_t                       (T, B, H) once
//   backward: reads P, h_{t-1} and dL/dh_t, writes dL/dP, sums dL/dbias in registers       (T, B, H) once
//
// The backward recomputes the gates from P (cheaper than storing them: the loop is memory-bound), so the layer
// keeps only P and the states for the backward pass. kind 0: minGRU, P = [k, c]; kind 1: minLSTM,
// P = [k_f, k_i, c]. mask (T, B) of 0/1 or an empty tensor: a masked step carries the state (a = 1, b = 0) and
// gets no gradient.
//
// Vectorisation: exp is the branch-free Cody-Waite + polynomial below (no libm call), every select is a
// blend, the kind is a template parameter, so the channel loop compiles to SIMD code (-O3 -march=native).
// Threads: at::parallel_for over slices of the channels (see Slices below); each slice walks all T steps and all
// rows, so the threads never synchronise between steps and the results do not depend on their number. at::
// parallel_for is OpenMP inside torch's headers: it only forks when this file is compiled with -fopenmp
// (rnnkit/engine/scan.py asks for it), else every "parallel" loop runs on the calling thread.
//
// Gates: sigm(k) = 1/(1 + e^-k); g(c) = c + 1/2 for c >= 0, else sigm(c). minLSTM: with e_f = e^-k_f,
// e_i = e^-k_i, r = i/f = (1 + e_f)/(1 + e_i), so f' = f/(f+i) = 1/(1 + r) and i' = r/(1 + r).

// exp(x), branch-free and vectorisable: x = n ln2 + r (|r| <= ln2/2, Cody-Waite split of ln2), e^r by a
// polynomial, 2^n built in the exponent bits. Within 2 ulp of the exact value on the clamped range; arguments are
// clamped where exp would overflow or leave the normal range (the gates then differ from the exact ones by less
// than 1e-37 in float32, 1e-307 in float64).
inline float vexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
  const float t = x * 1.44269504088896341f + shift;
  const float n = t - shift;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits;
  __builtin_memcpy(&bits, &t, sizeof bits);
  bits = (bits + 127) << 23;  // the low mantissa bits of t hold n; n + 127 is the biased exponent of 2^n
  float s;
  __builtin_memcpy(&s, &bits, sizeof s);
  return p * s;
}

inline double vexp(double x) {
  x = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
  const double shift = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634 + shift;
  const double n = t - shift;
  double r = x - n * 6.93147180369123816490e-01;  // ln2 high part: n * it is exact for |n| < 2^11
  r = r - n * 1.90821492927058770002e-10;         // ln2 low part
  // Taylor series of e^r to degree 13 (remainder below 5e-18 relative for |r| <= ln2/2)
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  int64_t bits;
  __builtin_memcpy(&bits, &t, sizeof bits);
  bits = (bits + 1023) << 52;
  double s;
  __builtin_memcpy(&s, &bits, sizeof s);
  return p * s;
}

// One row of channels [lo, hi) of one step, forward: h[j] = a_j prev[j] + b_j.
template <int KIND, typename scalar_t>
inline void row_forward(const scalar_t* __restrict p, const scalar_t* __restrict bias,
                        const scalar_t* __restrict prev, scalar_t* __restrict h, int64_t lo, int64_t hi, int64_t H) {
  const scalar_t one(1), half(0.5), zero(0);
  constexpr int64_t C = KIND == 0 ? 1 : 2;  // the candidate's block
#pragma GCC ivdep
  for (int64_t j = lo; j < hi; ++j) {
    const scalar_t c = p[C * H + j] + bias[C * H + j];
    const scalar_t gc = c >= zero ? c + half : one / (one + vexp(-c));
    scalar_t a, z;
    if (KIND == 0) {
      z = one / (one + vexp(-(p[j] + bias[j])));
      a = one - z;
    } else {
      const scalar_t r = (one + vexp(-(p[j] + bias[j]))) / (one + vexp(-(p[H + j] + bias[H + j])));
      a = one / (one + r);
      z = r * a;
    }
    h[j] = a * prev[j] + z * gc;
  }
}

// One row of channels [lo, hi) of one step, backward. carry holds a_{t+1} dL/dh_{t+1} on entry and a_t dL/dh_t
// on exit; dp gets dL/dP of this step; db accumulates dL/dbias. g is dL/dh_t of the row: g[j] when GROW, else one
// value g[0] for every channel (a gradient broadcast along H, as that of out.sum(), read without a copy).
template <int KIND, bool GROW, typename scalar_t>
inline void row_backward(const scalar_t* __restrict p, const scalar_t* __restrict bias,
                         const scalar_t* __restrict prev, const scalar_t* __restrict g, scalar_t* __restrict carry,
                         scalar_t* __restrict dp, scalar_t* __restrict db, int64_t lo, int64_t hi, int64_t H) {
  const scalar_t one(1), half(0.5), zero(0);
  constexpr int64_t C = KIND == 0 ? 1 : 2;
#pragma GCC ivdep
  for (int64_t j = lo; j < hi; ++j) {
    const scalar_t c = p[C * H + j] + bias[C * H + j];
    const scalar_t sc = one / (one + vexp(-c));
    const scalar_t gc = c >= zero ? c + half : sc;
    const scalar_t dgc = c >= zero ? one : sc * (one - sc);
    const scalar_t dh = (GROW ? g[j] : g[0]) + carry[j];  // dL/dh_t = dL/db_t
    const scalar_t da = dh * prev[j];     // dL/da_t
    if (KIND == 0) {                      // a = 1 - z, b = z g(c), z = sigm(k)
      const scalar_t z = one / (one + vexp(-(p[j] + bias[j])));
      const scalar_t a = one - z;
      carry[j] = a * dh;
      const scalar_t dk = (dh * gc - da) * z * (one - z);
      const scalar_t dc = dh * z * dgc;
      dp[j] = dk;
      dp[H + j] = dc;
      db[j] += dk;
      db[H + j] += dc;
    } else {  // a = sigm(-d), i' = sigm(d), d = softplus(-k_f) - softplus(-k_i) = log(i/f)
      const scalar_t ef = vexp(-(p[j] + bias[j])), ei = vexp(-(p[H + j] + bias[H + j]));
      const scalar_t r = (one + ef) / (one + ei);
      const scalar_t a = one / (one + r);
      const scalar_t z = r * a;
      carry[j] = a * dh;
      const scalar_t dd = (dh * gc - da) * a * z;  // a (1 - a) = a i'
      const scalar_t dkf = -dd * ef / (one + ef);   // d d / d k_f = -sigm(-k_f)
      const scalar_t dki = dd * ei / (one + ei);    // d d / d k_i = sigm(-k_i)
      const scalar_t dc = dh * z * dgc;
      dp[j] = dkf;
      dp[H + j] = dki;
      dp[2 * H + j] = dc;
      db[j] += dkf;
      db[H + j] += dki;
      db[2 * H + j] += dc;
    }
  }
}

// Work blocks: slices of the H channels, each spanning every batch row and every step. A thread owns its slice for
// the whole pass (no synchronisation between steps), and every value of a channel -- its state, its backward carry
// and its bias gradient, summed over steps (last first) and rows (first first) -- is computed by one thread in the
// same order whatever the number of threads or slices: 1-thread and n-thread results are bit-identical. Slices are
// multiples of kSlice channels (one 64-byte cache line of float32), so threads never write to a shared line.
constexpr int64_t kSlice = 16;

struct Slices {
  int64_t count, width;
};

inline Slices slices_of(int64_t T, int64_t B, int64_t H) {
  const int64_t threads = at::get_num_threads();
  // a small problem (a streaming step, a short sequence) runs on the calling thread: a fork costs more
  if (threads <= 1 || T * B * H < 32768) return {1, H};
  const int64_t lines = (H + kSlice - 1) / kSlice;
  const int64_t count = std::max<int64_t>(1, std::min<int64_t>(threads, lines));
  const int64_t width = ((lines + count - 1) / count) * kSlice;
  return {(H + width - 1) / width, width};
}

// Steps [0, T) of the recurrence over P (T, B, G*H) from h0 (B, H) into hs (T, B, H); mask (T, B) or null.
template <int KIND, typename scalar_t>
void min_forward_kernel(const scalar_t* P, const scalar_t* bias, const scalar_t* h0, const scalar_t* mask,
                        scalar_t* hs, int64_t T, int64_t B, int64_t H) {
  constexpr int64_t G = KIND == 0 ? 2 : 3;
  const Slices q = slices_of(T, B, H);
  at::parallel_for(0, q.count, 1, [&](int64_t s0, int64_t s1) {
    const int64_t lo = s0 * q.width, hi = std::min(H, s1 * q.width);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t bi = 0; bi < B; ++bi) {
        const scalar_t* prev = t > 0 ? hs + ((t - 1) * B + bi) * H : h0 + bi * H;
        scalar_t* h = hs + (t * B + bi) * H;
        if (mask != nullptr && mask[t * B + bi] == scalar_t(0)) {
          for (int64_t j = lo; j < hi; ++j) h[j] = prev[j];
          continue;
        }
        row_forward<KIND, scalar_t>(P + (t * B + bi) * G * H, bias, prev, h, lo, hi, H);
      }
    }
  });
}

// Steps [0, T) backwards. carry (B, H) holds a_T dL/dh_T on entry (zeroed when fresh) and a_0 dL/dh_0 on exit;
// h0 is the state before step 0; dbias (G*H) accumulates the bias gradient (each channel by its slice's thread).
// g is read at g + t*gsT + b*gsB + j*gsH with gsH 1 or 0 (GROW): dL/dhs as autograd gives it, no copy.
template <int KIND, bool GROW, typename scalar_t>
void min_backward_kernel(const scalar_t* P, const scalar_t* bias, const scalar_t* hs, const scalar_t* h0,
                         const scalar_t* mask, const scalar_t* g, int64_t gsT, int64_t gsB, scalar_t* dP,
                         scalar_t* dbias, scalar_t* carry_all, bool fresh, int64_t T, int64_t B, int64_t H) {
  constexpr int64_t G = KIND == 0 ? 2 : 3;
  const Slices q = slices_of(T, B, H);
  at::parallel_for(0, q.count, 1, [&](int64_t s0, int64_t s1) {
    const int64_t lo = s0 * q.width, hi = std::min(H, s1 * q.width);
    if (fresh) {
      for (int64_t bi = 0; bi < B; ++bi)
        for (int64_t j = lo; j < hi; ++j) carry_all[bi * H + j] = scalar_t(0);
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      for (int64_t bi = 0; bi < B; ++bi) {
        const scalar_t* gt = g + t * gsT + bi * gsB;
        scalar_t* carry = carry_all + bi * H;
        scalar_t* dp = dP + (t * B + bi) * G * H;
        if (mask != nullptr && mask[t * B + bi] == scalar_t(0)) {
          for (int64_t gi = 0; gi < G; ++gi)
            for (int64_t j = lo; j < hi; ++j) dp[gi * H + j] = scalar_t(0);
          for (int64_t j = lo; j < hi; ++j) carry[j] += GROW ? gt[j] : gt[0];
          continue;
        }
        const scalar_t* prev = t > 0 ? hs + ((t - 1) * B + bi) * H : h0 + bi * H;
        row_backward<KIND, GROW, scalar_t>(P + (t * B + bi) * G * H, bias, prev, gt, carry, dp, dbias, lo, hi, H);
      }
    }
  });
}

int gates_of(int64_t kind) {
  TORCH_CHECK(kind == 0 || kind == 1, "min_layer: kind is 0 (minGRU) or 1 (minLSTM)");
  return kind == 0 ? 2 : 3;
}

// The layer works through time in chunks of this many P values (about 512 KB in float32): each chunk's matrix
// products and its pass of the loop meet in the cache, so dL/dP never goes to memory and P is read from cache.
constexpr int64_t kChunkValues = 131072;

// steps per chunk; chunk_values > 0 overrides kChunkValues (tests use a few steps to cross many chunk borders).
// Not a function of the number of threads: the weight gradient sums one matrix product per chunk, so the chunks
// must be the same for every thread count for the results to be.
int64_t chunk_steps(int64_t B, int64_t GH, int64_t chunk_values) {
  const int64_t v = chunk_values > 0 ? chunk_values : kChunkValues;
  return std::max<int64_t>(1, v / std::max<int64_t>(1, B * GH));
}

void check_layer(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias, const torch::Tensor& h0,
                 const torch::Tensor& mask, int64_t G) {
  check(x, "x", 3);
  check(w, "weight", 2);
  check(bias, "bias", 1);
  check(h0, "h0", 2);
  const int64_t T = x.size(0), B = x.size(1), H = h0.size(1);
  TORCH_CHECK(T >= 1, "min_layer: the sequence must have at least one step");
  TORCH_CHECK(w.size(0) == G * H && w.size(1) == x.size(2) && h0.size(0) == B && bias.size(0) == G * H,
              "min_layer: shapes disagree");
  const auto dt = x.scalar_type();
  TORCH_CHECK(w.scalar_type() == dt && bias.scalar_type() == dt && h0.scalar_type() == dt, "min_layer: dtypes");
  if (mask.numel() > 0) {
    TORCH_CHECK(mask.is_contiguous() && mask.numel() == T * B && mask.scalar_type() == dt,
                "min_layer: mask is (T, B) of x's dtype");
  }
}

// One minGRU (kind 0) / minLSTM (kind 1) layer direction: x (T, B, I), w (G*H, I), bias (G*H), h0 (B, H), mask
// (T, B) or empty -> [hs (T, B, H), P = x w^T (T, B, G*H) when keep (for the backward pass), else empty].
std::vector<torch::Tensor> min_layer_forward(int64_t kind, torch::Tensor x, torch::Tensor w, torch::Tensor bias,
                                             torch::Tensor h0, torch::Tensor mask, bool keep,
                                             int64_t chunk_values) {
  const int64_t G = gates_of(kind);
  check_layer(x, w, bias, h0, mask, G);
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = h0.size(1), GH = G * H;
  const int64_t Tc = std::min(T, chunk_steps(B, GH, chunk_values));
  auto hs = torch::empty({T, B, H}, x.options());
  auto P = torch::empty({keep ? T : Tc, B, GH}, x.options());
  const auto wt = w.t();
  const bool masked = mask.numel() > 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "min_layer_forward", [&] {
    auto fn = kind == 0 ? min_forward_kernel<0, scalar_t> : min_forward_kernel<1, scalar_t>;
    scalar_t* hp = hs.data_ptr<scalar_t>();
    for (int64_t t0 = 0; t0 < T; t0 += Tc) {
      const int64_t n = std::min(Tc, T - t0);
      auto Pc = P.narrow(0, keep ? t0 : 0, n);
      auto Pc2 = Pc.view({n * B, GH});
      at::mm_out(Pc2, x.narrow(0, t0, n).view({n * B, I}), wt);
      const scalar_t* prev = t0 > 0 ? hp + (t0 - 1) * B * H : h0.data_ptr<scalar_t>();
      fn(Pc.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), prev, masked ? mask.data_ptr<scalar_t>() + t0 * B : nullptr,
         hp + t0 * B * H, n, B, H);
    }
  });
  return {hs, keep ? P : x.new_empty({0})};
}

// Gradients of min_layer_forward given g = dL/dhs (T, B, H): [dx (T, B, I) or empty, dw (G*H, I) or empty,
// dbias (G*H), dh0 (B, H)]. Chunks run backwards in time; each chunk's dL/dP stays in one cache-sized buffer that
// the two matrix products read right after the loop wrote it. g may have any strides over T and B and stride 1 or
// 0 over H (autograd's gradient of a sum is one value expanded: read in place, not copied into (T, B, H)).
std::vector<torch::Tensor> min_layer_backward(int64_t kind, torch::Tensor x, torch::Tensor w, torch::Tensor bias,
                                              torch::Tensor P, torch::Tensor hs, torch::Tensor h0, torch::Tensor mask,
                                              torch::Tensor g, bool need_dx, bool need_dw, int64_t chunk_values) {
  const int64_t G = gates_of(kind);
  check_layer(x, w, bias, h0, mask, G);
  check(P, "P", 3);
  check(hs, "hs", 3);
  TORCH_CHECK(g.device().is_cpu() && g.dim() == 3 && g.scalar_type() == x.scalar_type(),
              "min_layer_backward: grad is (T, B, H) on the CPU in x's dtype");
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = h0.size(1), GH = G * H;
  if (g.stride(2) != 1 && g.stride(2) != 0 && H > 1) g = g.contiguous();
  const bool grow = g.stride(2) != 0 || H == 1;
  TORCH_CHECK(P.size(0) == T && P.size(1) == B && P.size(2) == GH && hs.size(0) == T && hs.size(1) == B &&
                  hs.size(2) == H && g.sizes() == hs.sizes(),
              "min_layer_backward: shapes disagree");
  const int64_t Tc = std::min(T, chunk_steps(B, GH, chunk_values));
  auto dx = need_dx ? torch::empty({T, B, I}, x.options()) : x.new_empty({0});
  auto dw = need_dw ? torch::zeros({GH, I}, x.options()) : x.new_empty({0});
  auto dh0 = torch::empty_like(h0);
  auto dbias = torch::zeros({GH}, x.options());
  auto dP = torch::empty({Tc, B, GH}, x.options());
  const bool masked = mask.numel() > 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "min_layer_backward", [&] {
    auto fn = kind == 0 ? (grow ? min_backward_kernel<0, true, scalar_t> : min_backward_kernel<0, false, scalar_t>)
                        : (grow ? min_backward_kernel<1, true, scalar_t> : min_backward_kernel<1, false, scalar_t>);
    const scalar_t* hp = hs.data_ptr<scalar_t>();
    const int64_t gsT = g.stride(0), gsB = g.stride(1);
    bool fresh = true;
    for (int64_t t0 = ((T - 1) / Tc) * Tc; t0 >= 0; t0 -= Tc) {
      const int64_t n = std::min(Tc, T - t0);
      auto dPc = dP.narrow(0, 0, n);
      const scalar_t* prev = t0 > 0 ? hp + (t0 - 1) * B * H : h0.data_ptr<scalar_t>();
      fn(P.data_ptr<scalar_t>() + t0 * B * GH, bias.data_ptr<scalar_t>(), hp + t0 * B * H, prev,
         masked ? mask.data_ptr<scalar_t>() + t0 * B : nullptr, g.data_ptr<scalar_t>() + t0 * gsT, gsT, gsB,
         dPc.data_ptr<scalar_t>(), dbias.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>(), fresh, n, B, H);
      fresh = false;
      auto dP2 = dPc.view({n * B, GH});
      if (need_dx) {
        auto dxc = dx.narrow(0, t0, n).view({n * B, I});
        at::mm_out(dxc, dP2, w);
      }
      if (need_dw) dw.addmm_(dP2.t(), x.narrow(0, t0, n).view({n * B, I}));
    }
  });
  return {dx, dw, dbias, dh0};
}

// One streaming step of a stack of L minGRU/minLSTM layers, no autograd: x (B, I), weights[l] (G*H, I_l),
// biases[l] (G*H), h (L, B, H) -> the new state (L, B, H); the top layer's output is its last row. One call from
// Python per step (the per-step cost of sampling is then one matrix product and one pass per layer).
torch::Tensor min_step(int64_t kind, torch::Tensor x, std::vector<torch::Tensor> weights,
                       std::vector<torch::Tensor> biases, torch::Tensor h) {
  const int64_t L = static_cast<int64_t>(weights.size());
  TORCH_CHECK(L == static_cast<int64_t>(biases.size()) && h.dim() == 3 && h.size(0) == L, "min_step: shapes");
  TORCH_CHECK(x.dim() == 2 && x.size(0) == h.size(1), "min_step: x is (B, I)");
  auto out = torch::empty_like(h);
  auto none = x.new_empty({0});
  auto inp = x;
  for (int64_t l = 0; l < L; ++l) {
    auto r = min_layer_forward(kind, inp.unsqueeze(0), weights[l], biases[l], h[l], none, false, 0);
    out[l].copy_(r[0][0]);
    inp = out[l];
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &scan_forward, "h_t = a_t * h_{t-1} + b_t over (T, N); returns hs (T, N)");
  m.def("backward", &scan_backward, "gradients (da, db, dh0) of the scan given grad of hs");
  m.def("min_layer_forward", &min_layer_forward, "minGRU (kind 0) / minLSTM (kind 1) layer: [hs, P or empty]");
  m.def("min_layer_backward", &min_layer_backward, "gradients [dx, dw, dbias, dh0] of min_layer_forward");
  m.def("min_step", &min_step, "one streaming step of a stack of minGRU/minLSTM layers (no autograd)");
}
