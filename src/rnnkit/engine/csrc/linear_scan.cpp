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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &scan_forward, "h_t = a_t * h_{t-1} + b_t over (T, N); returns hs (T, N)");
  m.def("backward", &scan_backward, "gradients (da, db, dh0) of the scan given grad of hs");
}
