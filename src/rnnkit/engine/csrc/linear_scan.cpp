// The diagonal linear recurrence h_t = a_t * h_{t-1} + b_t, forward and backward, as one sequential loop over
// time with an elementwise, vectorisable inner loop over the N = B*H independent channels.
//
// Built on first use by rnnkit.engine.build.load_extension("linear_scan", ["linear_scan.cpp"]); the Python side
// (rnnkit/engine/scan.py) wraps both functions in one torch.autograd.Function and checks shapes, dtypes and
// contiguity before calling. Shapes: a, b, g, hs (T, N); h0 (N). float32 and float64.
//
// Channels are split between threads with at::parallel_for (each thread walks all T steps over its own block of
// channels, so no synchronisation between steps); inside a block the channel loop has no dependencies and the
// compiler vectorises it (-O3 -march=native).

#include <torch/extension.h>

#include <ATen/Parallel.h>

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

// ------------------------------------------------------------------------------------------------------------
// minGRU / minLSTM with the gate math fused into the loop: the input P = x W^T + b (T, B, G*H) is read once per
// step and the coefficients a_t, b_t are formed in registers; the backward recomputes them (so only P and hs are
// kept). kind 0: minGRU, P = [k, c]; kind 1: minLSTM, P = [k_f, k_i, c]. E = exp(-P) comes in precomputed (one
// vectorised torch.exp over all of P: the loops below then hold only arithmetic and selects, which the compiler
// vectorises; scalar exp calls in the loop ran 2-3x slower). mask (T, B) of 0/1 or an empty tensor: a masked
// step carries the state (a = 1, b = 0) and gets no gradient.
//
// Gates from E: sigm(k) = 1/(1 + e^-k); g(c) = c + 1/2 for c >= 0, else 1/(1 + e^-c). minLSTM: with
// e_f = e^-k_f, e_i = e^-k_i, i/f = (1 + e_f)/(1 + e_i) = r, so f' = f/(f+i) = 1/(1 + r) and i' = 1/(1 + 1/r).

template <typename scalar_t>
struct Gates {
  scalar_t a, b, gc, dgc, z, sf, si;  // z: minGRU's update gate or minLSTM's i'; sf, si: sigm(-k_f), sigm(-k_i)
};

template <typename scalar_t>
inline Gates<scalar_t> gates(int kind, const scalar_t* p, const scalar_t* e, int64_t j, int64_t H) {
  const scalar_t one(1);
  Gates<scalar_t> q;
  const int64_t jc = (kind == 0 ? 1 : 2) * H + j;
  const scalar_t c = p[jc];
  const scalar_t sc = one / (one + e[jc]);
  q.gc = c >= scalar_t(0) ? c + scalar_t(0.5) : sc;
  q.dgc = c >= scalar_t(0) ? one : sc * (one - sc);
  if (kind == 0) {
    q.z = one / (one + e[j]);
    q.a = one - q.z;
    q.sf = q.si = scalar_t(0);
  } else {
    const scalar_t ef = e[j], ei = e[H + j];
    const scalar_t r = (one + ef) / (one + ei);
    q.a = one / (one + r);
    q.z = one / (one + one / r);
    q.sf = ef / (one + ef);
    q.si = ei / (one + ei);
  }
  q.b = q.z * q.gc;
  return q;
}

template <typename scalar_t>
void min_forward_kernel(int kind, const scalar_t* P, const scalar_t* E, const scalar_t* h0, const scalar_t* mask,
                        scalar_t* hs, int64_t T, int64_t B, int64_t H) {
  const int64_t G = kind == 0 ? 2 : 3;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* p = P + (t * B + bi) * G * H;
        const scalar_t* e = E + (t * B + bi) * G * H;
        const scalar_t* prev = t > 0 ? hs + ((t - 1) * B + bi) * H : h0 + bi * H;
        scalar_t* h = hs + (t * B + bi) * H;
        if (mask != nullptr && mask[t * B + bi] == scalar_t(0)) {
          for (int64_t j = 0; j < H; ++j) h[j] = prev[j];
          continue;
        }
        for (int64_t j = 0; j < H; ++j) {
          const Gates<scalar_t> q = gates(kind, p, e, j, H);
          h[j] = q.a * prev[j] + q.b;
        }
      }
    }
  });
}

template <typename scalar_t>
void min_backward_kernel(int kind, const scalar_t* P, const scalar_t* E, const scalar_t* hs, const scalar_t* h0,
                         const scalar_t* mask, const scalar_t* g, scalar_t* dP, scalar_t* dh0, int64_t T, int64_t B,
                         int64_t H) {
  const int64_t G = kind == 0 ? 2 : 3;
  const scalar_t one(1);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      scalar_t* carry = dh0 + bi * H;  // a_{t+1} dh_{t+1}; ends as a_0 dh_0
      for (int64_t j = 0; j < H; ++j) carry[j] = scalar_t(0);
      for (int64_t t = T - 1; t >= 0; --t) {
        const scalar_t* p = P + (t * B + bi) * G * H;
        const scalar_t* e = E + (t * B + bi) * G * H;
        const scalar_t* gt = g + (t * B + bi) * H;
        const scalar_t* prev = t > 0 ? hs + ((t - 1) * B + bi) * H : h0 + bi * H;
        scalar_t* dp = dP + (t * B + bi) * G * H;
        if (mask != nullptr && mask[t * B + bi] == scalar_t(0)) {
          for (int64_t j = 0; j < G * H; ++j) dp[j] = scalar_t(0);
          for (int64_t j = 0; j < H; ++j) carry[j] += gt[j];
          continue;
        }
        for (int64_t j = 0; j < H; ++j) {
          const Gates<scalar_t> q = gates(kind, p, e, j, H);
          const scalar_t dh = gt[j] + carry[j];  // dL/dh_t = dL/db_t
          const scalar_t da = dh * prev[j];      // dL/da_t
          carry[j] = q.a * dh;
          if (kind == 0) {  // a = 1 - z, b = z g(c), z = sigm(k)
            dp[j] = (dh * q.gc - da) * q.z * (one - q.z);
            dp[H + j] = dh * q.z * q.dgc;
          } else {  // a = sigm(-d), i' = sigm(d), d = softplus(-k_f) - softplus(-k_i)
            const scalar_t dd = (dh * q.gc - da) * q.a * (one - q.a);
            dp[j] = -dd * q.sf;
            dp[H + j] = dd * q.si;
            dp[2 * H + j] = dh * q.z * q.dgc;
          }
        }
      }
    }
  });
}

torch::Tensor min_forward(int64_t kind, torch::Tensor P, torch::Tensor E, torch::Tensor h0, torch::Tensor mask) {
  check(P, "P", 3);
  check(E, "E", 3);
  check(h0, "h0", 2);
  const int64_t T = P.size(0), B = P.size(1), H = h0.size(1);
  TORCH_CHECK(kind == 0 || kind == 1, "min_forward: kind is 0 (minGRU) or 1 (minLSTM)");
  TORCH_CHECK(P.size(2) == (kind == 0 ? 2 : 3) * H && h0.size(0) == B && E.sizes() == P.sizes(),
              "min_forward: shapes disagree");
  const bool masked = mask.numel() > 0;
  if (masked) TORCH_CHECK(mask.is_contiguous() && mask.numel() == T * B, "min_forward: mask is (T, B)");
  auto hs = torch::empty({T, B, H}, P.options());
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "min_forward", [&] {
    min_forward_kernel<scalar_t>(static_cast<int>(kind), P.data_ptr<scalar_t>(), E.data_ptr<scalar_t>(),
                                 h0.data_ptr<scalar_t>(), masked ? mask.data_ptr<scalar_t>() : nullptr,
                                 hs.data_ptr<scalar_t>(), T, B, H);
  });
  return hs;
}

std::vector<torch::Tensor> min_backward(int64_t kind, torch::Tensor P, torch::Tensor E, torch::Tensor hs,
                                        torch::Tensor h0, torch::Tensor mask, torch::Tensor g) {
  check(P, "P", 3);
  check(E, "E", 3);
  check(hs, "hs", 3);
  check(h0, "h0", 2);
  check(g, "grad", 3);
  const int64_t T = P.size(0), B = P.size(1), H = h0.size(1);
  const bool masked = mask.numel() > 0;
  auto dP = torch::empty_like(P);
  auto dh0 = torch::empty_like(h0);
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "min_backward", [&] {
    min_backward_kernel<scalar_t>(static_cast<int>(kind), P.data_ptr<scalar_t>(), E.data_ptr<scalar_t>(),
                                  hs.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(),
                                  masked ? mask.data_ptr<scalar_t>() : nullptr, g.data_ptr<scalar_t>(),
                                  dP.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>(), T, B, H);
  });
  return {dP, dh0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &scan_forward, "h_t = a_t * h_{t-1} + b_t over (T, N); returns hs (T, N)");
  m.def("backward", &scan_backward, "gradients (da, db, dh0) of the scan given grad of hs");
  m.def("min_forward", &min_forward, "minGRU (kind 0) / minLSTM (kind 1) over P (T, B, G*H): hs (T, B, H)");
  m.def("min_backward", &min_backward, "gradients (dP, dh0) of min_forward given grad of hs");
}
