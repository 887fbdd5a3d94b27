// Dynamic time warping distances between two sets of padded series: the classic dynamic programme
//
//   D[0, 0] = c[0, 0];   D[i, j] = c[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1]);   c[i, j] = sum_ch (a_i - b_j)^2
//
// with no window, read at each pair's own last cell (rnnkit/tasks/elastic.py, whose pure-PyTorch row scan computes
// the same distances and is the fallback where this file cannot be built).
//
// Built on first use by rnnkit.engine.build.load_threaded_extension("dtw", ["dtw.cpp"]); the Python side
// (rnnkit.tasks.elastic.dtw_distances) checks shapes and lengths and casts to float64 / int64 on the CPU before
// calling, and this file checks them again (TORCH_CHECK). The GIL is released while it runs. Shapes: a (n, La, C), b (N, Lb, C) float64 contiguous; a_lengths (n,),
// b_lengths (N,) int64, each in [1, L]; the result (n, N) float64.
//
// Each cell depends on its left neighbour, so one pair is a chain of dependent min/add operations. The kernel runs
// kLanes pairs side by side instead: one series of a against kLanes series of b, their rows interleaved
// (buffer[j * kLanes + lane]), so the lane loop has no dependencies and the compiler vectorises it (-O3
// -march=native). A lane shorter than its block's longest series is padded with zeros past its end; a cell only
// depends on cells to its left and above, so the padding never reaches the cell the lane's distance is read at.
// Tasks (a series of a x a block of b) are split between threads with at::parallel_for; every pair's arithmetic is
// the same for any split.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kLanes = 8;

// b (N, Lb, C) -> (blocks, Lb, C, kLanes), zero past each series' end and past N
std::vector<double> interleave(const double* b, const int64_t* b_len, int64_t N, int64_t Lb, int64_t C) {
  const int64_t blocks = (N + kLanes - 1) / kLanes;
  std::vector<double> out(static_cast<size_t>(blocks * Lb * C * kLanes), 0.0);
  for (int64_t s = 0; s < N; ++s) {
    const int64_t blk = s / kLanes, lane = s % kLanes;
    for (int64_t j = 0; j < b_len[s]; ++j) {
      for (int64_t ch = 0; ch < C; ++ch) {
        out[((blk * Lb + j) * C + ch) * kLanes + lane] = b[(s * Lb + j) * C + ch];
      }
    }
  }
  return out;
}

// the DTW distances of series x (la steps, C channels) to the kLanes series of one interleaved block (width
// steps: the block's longest), written to out[lane] for the block's `count` real lanes
void block_distances(const double* __restrict x, int64_t la, const double* __restrict blk, int64_t width,
                     int64_t C, const int64_t* __restrict lens, int64_t count, double* __restrict prev,
                     double* __restrict cur, double* __restrict out) {
  for (int64_t i = 0; i < la; ++i) {
    const double* xi = x + i * C;
    for (int64_t j = 0; j < width; ++j) {
      double cost[kLanes];
      for (int64_t l = 0; l < kLanes; ++l) cost[l] = 0.0;
      const double* bj = blk + j * C * kLanes;
      for (int64_t ch = 0; ch < C; ++ch) {
        for (int64_t l = 0; l < kLanes; ++l) {
          const double d = xi[ch] - bj[ch * kLanes + l];
          cost[l] += d * d;
        }
      }
      double* c = cur + j * kLanes;
      if (i == 0 && j == 0) {
        for (int64_t l = 0; l < kLanes; ++l) c[l] = cost[l];
      } else if (i == 0) {
        const double* left = c - kLanes;
        for (int64_t l = 0; l < kLanes; ++l) c[l] = cost[l] + left[l];
      } else if (j == 0) {
        const double* up = prev;
        for (int64_t l = 0; l < kLanes; ++l) c[l] = cost[l] + up[l];
      } else {
        const double* left = c - kLanes;
        const double* up = prev + j * kLanes;
        const double* diag = up - kLanes;
        for (int64_t l = 0; l < kLanes; ++l) c[l] = cost[l] + std::min(std::min(diag[l], up[l]), left[l]);
      }
    }
    std::swap(prev, cur);
  }
  for (int64_t l = 0; l < count; ++l) out[l] = prev[(lens[l] - 1) * kLanes + l];  // the last row is in prev
}

void check(const torch::Tensor& x, const char* name, int64_t dims, at::ScalarType type) {
  TORCH_CHECK(x.device().is_cpu(), "dtw: ", name, " must be on the CPU");
  TORCH_CHECK(x.is_contiguous(), "dtw: ", name, " must be contiguous");
  TORCH_CHECK(x.dim() == dims, "dtw: ", name, " must have ", dims, " dimensions");
  TORCH_CHECK(x.scalar_type() == type, "dtw: ", name, " has the wrong dtype");
}

}  // namespace

torch::Tensor dtw_distances(torch::Tensor a, torch::Tensor a_lengths, torch::Tensor b, torch::Tensor b_lengths) {
  check(a, "a", 3, at::kDouble);
  check(b, "b", 3, at::kDouble);
  check(a_lengths, "a_lengths", 1, at::kLong);
  check(b_lengths, "b_lengths", 1, at::kLong);
  const int64_t n = a.size(0), La = a.size(1), C = a.size(2), N = b.size(0), Lb = b.size(1);
  TORCH_CHECK(b.size(2) == C && a_lengths.size(0) == n && b_lengths.size(0) == N, "dtw: shapes disagree");
  const int64_t* a_len = a_lengths.data_ptr<int64_t>();
  const int64_t* b_len = b_lengths.data_ptr<int64_t>();
  for (int64_t s = 0; s < n; ++s) TORCH_CHECK(a_len[s] >= 1 && a_len[s] <= La, "dtw: a length out of range");
  for (int64_t s = 0; s < N; ++s) TORCH_CHECK(b_len[s] >= 1 && b_len[s] <= Lb, "dtw: b length out of range");
  auto out = torch::empty({n, N}, a.options());
  if (n == 0 || N == 0) return out;
  const std::vector<double> blocks = interleave(b.data_ptr<double>(), b_len, N, Lb, C);
  const int64_t num_blocks = (N + kLanes - 1) / kLanes;
  const double* ap = a.data_ptr<double>();
  double* op = out.data_ptr<double>();
  // about 2^16 cells per task at least, so that threads are not woken for tiny pieces
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, La * Lb * kLanes));
  at::parallel_for(0, n * num_blocks, grain, [&](int64_t lo, int64_t hi) {
    std::vector<double> rows(static_cast<size_t>(2 * Lb * kLanes));
    double res[kLanes];
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t s = task / num_blocks, blk = task % num_blocks;
      const int64_t first = blk * kLanes, count = std::min(kLanes, N - first);
      const int64_t width = *std::max_element(b_len + first, b_len + first + count);
      block_distances(ap + s * La * C, a_len[s], blocks.data() + blk * Lb * C * kLanes, width, C, b_len + first,
                      count, rows.data(), rows.data() + Lb * kLanes, res);
      for (int64_t l = 0; l < count; ++l) op[s * N + first + l] = res[l];
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("dtw_distances", &dtw_distances, "DTW distances (n, N) between padded float64 series, no window",
        py::call_guard<py::gil_scoped_release>());
}
