// Test binary of the lattice_filter CPU launcher (no torch). Built with ASan + UBSan by kernels/build.sh and run by
// tests/ops/test_ops_lattice_binary.py. Checks, on small images:
//   * the filter against a dense Gaussian computed here in double precision (cosine >= 0.99, scale 0.4-0.8);
//   * the adjoint identity <W x, y> == <x, W^T y>;
//   * identical results for 1 and 3 threads, and one image alone vs inside a batch;
//   * linearity and the zero input;
//   * typed statuses: invalid sizes / sigmas / null pointers / aliasing, N = 0, out-of-range features.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "fcam/lattice_filter.h"
#include "expect.h"

namespace {

struct Case {
  int64_t n, c, h, w;
  std::vector<float> images, values;
};

// Piecewise-smooth images: two colour regions split by a slanted edge, plus noise.
Case makeCase(int64_t n, int64_t c, int64_t h, int64_t w, uint32_t seed) {
  Case k{n, c, h, w, {}, {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  k.images.resize(static_cast<size_t>(n * 3 * h * w));
  k.values.resize(static_cast<size_t>(n * c * h * w));
  for (int64_t i = 0; i < n; ++i) {
    float col[2][3];
    for (auto& cc : col) {
      for (float& v : cc) v = 255.0f * u(rng);
    }
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const int side = (x + y / 2) < w / 2 ? 0 : 1;
        for (int ch = 0; ch < 3; ++ch) {
          k.images[static_cast<size_t>(((i * 3 + ch) * h + y) * w + x)] = col[side][ch] + 8.0f * (u(rng) - 0.5f);
        }
        for (int64_t ch = 0; ch < c; ++ch) {
          k.values[static_cast<size_t>(((i * c + ch) * h + y) * w + x)] = u(rng) + (side ? 0.5f : 0.0f);
        }
      }
    }
  }
  return k;
}

std::vector<float> run(const Case& k, const std::vector<float>& values, float srgb, float sxy, bool adjoint,
                       int threads, fcam::LatticeStatus want = fcam::LatticeStatus::kOk) {
  fcam::LatticeFilterParams p;
  p.n = k.n;
  p.channels = k.c;
  p.h = k.h;
  p.w = k.w;
  p.sigma_rgb = srgb;
  p.sigma_xy = sxy;
  p.adjoint = adjoint;
  std::vector<float> out(values.size(), -7.0f);
  const fcam::LatticeStatus st = fcam::latticeFilterCpu(k.images.data(), values.data(), out.data(), p, threads);
  EXPECT(st == want, "status %s, want %s", fcam::latticeStatusString(st), fcam::latticeStatusString(want));
  return out;
}

std::vector<double> dense(const Case& k, const std::vector<float>& values, double srgb, double sxy) {
  const int64_t hw = k.h * k.w;
  std::vector<double> out(values.size(), 0.0);
  for (int64_t i = 0; i < k.n; ++i) {
    const float* img = k.images.data() + i * 3 * hw;
    for (int64_t p = 0; p < hw; ++p) {
      for (int64_t q = 0; q < hw; ++q) {
        const double dx = double(p % k.w - q % k.w), dy = double(p / k.w - q / k.w);
        double d2 = (dx * dx + dy * dy) / (sxy * sxy);
        for (int ch = 0; ch < 3; ++ch) {
          const double dc = double(img[ch * hw + p]) - double(img[ch * hw + q]);
          d2 += dc * dc / (srgb * srgb);
        }
        const double wpq = std::exp(-0.5 * d2);
        for (int64_t c = 0; c < k.c; ++c) {
          out[static_cast<size_t>((i * k.c + c) * hw + p)] += wpq * values[static_cast<size_t>((i * k.c + c) * hw + q)];
        }
      }
    }
  }
  return out;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

void testAgainstDenseGaussian() {
  const float sigmas[3][2] = {{15.0f, 100.0f}, {15.0f, 4.0f}, {30.0f, 2.5f}};
  for (const auto& s : sigmas) {
    const Case k = makeCase(2, 2, 13, 17, 1234);
    const std::vector<float> got = run(k, k.values, s[0], s[1], false, 2);
    const std::vector<double> want = dense(k, k.values, s[0], s[1]);
    double gw = 0, gg = 0, ww = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      gw += double(got[i]) * want[i];
      gg += double(got[i]) * got[i];
      ww += want[i] * want[i];
    }
    const double cosine = gw / std::sqrt(gg * ww), scale = gw / ww;
    std::printf("dense Gaussian, sigma_rgb %.1f sigma_xy %.1f: cosine %.4f scale %.3f\n", s[0], s[1], cosine, scale);
    EXPECT(cosine >= 0.99, "cosine %.4f < 0.99", cosine);
    EXPECT(scale > 0.4 && scale < 0.8, "scale %.3f outside (0.4, 0.8)", scale);
  }
}

void testAdjointThreadsBatchLinearity() {
  const Case k = makeCase(3, 2, 11, 14, 99);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> y(k.values.size());
  for (float& v : y) v = u(rng);
  const std::vector<float> wx = run(k, k.values, 10.0f, 3.0f, false, 2);
  const std::vector<float> wty = run(k, y, 10.0f, 3.0f, true, 2);
  const double lhs = dot(wx, y), rhs = dot(k.values, wty);
  EXPECT(std::fabs(lhs - rhs) <= 1e-5 * std::fabs(lhs), "adjoint: <Wx,y> %.8g vs <x,W^T y> %.8g", lhs, rhs);
  const std::vector<float> one = run(k, k.values, 10.0f, 3.0f, false, 1);
  const std::vector<float> three = run(k, k.values, 10.0f, 3.0f, false, 3);
  EXPECT(one == wx && three == wx, "results depend on the thread count");
  // Image 1 alone equals image 1 inside the batch.
  Case k1 = makeCase(1, 2, 11, 14, 0);
  const int64_t hw = k.h * k.w;
  k1.images.assign(k.images.begin() + 3 * hw, k.images.begin() + 6 * hw);
  k1.values.assign(k.values.begin() + 2 * hw, k.values.begin() + 4 * hw);
  const std::vector<float> alone = run(k1, k1.values, 10.0f, 3.0f, false, 1);
  EXPECT(std::equal(alone.begin(), alone.end(), wx.begin() + 2 * hw), "batch changes an image's result");
  // Linearity: W(2x) = 2 W x exactly (scaling by 2 is exact in float); W 0 = 0.
  std::vector<float> x2(k.values.size()), zero(k.values.size(), 0.0f);
  for (size_t i = 0; i < x2.size(); ++i) x2[i] = 2.0f * k.values[i];
  const std::vector<float> w2 = run(k, x2, 10.0f, 3.0f, false, 2);
  bool lin = true;
  for (size_t i = 0; i < w2.size(); ++i) lin = lin && w2[i] == 2.0f * wx[i];
  EXPECT(lin, "W(2x) != 2 Wx");
  const std::vector<float> w0 = run(k, zero, 10.0f, 3.0f, false, 2);
  bool zeros = true;
  for (float v : w0) zeros = zeros && v == 0.0f;
  EXPECT(zeros, "W 0 != 0");
}

void testStatuses() {
  Case k = makeCase(1, 1, 5, 6, 3);
  fcam::LatticeFilterParams p;
  p.n = 1;
  p.channels = 1;
  p.h = 5;
  p.w = 6;
  std::vector<float> out(30);
  using S = fcam::LatticeStatus;
  auto status = [&](const fcam::LatticeFilterParams& q, const float* img, const float* val, float* o) {
    return fcam::latticeFilterCpu(img, val, o, q, 1);
  };
  EXPECT(status(p, k.images.data(), k.values.data(), out.data()) == S::kOk, "valid call");
  fcam::LatticeFilterParams bad = p;
  bad.channels = 0;
  EXPECT(status(bad, k.images.data(), k.values.data(), out.data()) == S::kInvalidArgument, "C = 0");
  bad = p;
  bad.h = 0;
  EXPECT(status(bad, k.images.data(), k.values.data(), out.data()) == S::kInvalidArgument, "H = 0");
  bad = p;
  bad.sigma_rgb = 0.0f;
  EXPECT(status(bad, k.images.data(), k.values.data(), out.data()) == S::kInvalidArgument, "sigma_rgb = 0");
  bad = p;
  bad.sigma_xy = std::numeric_limits<float>::quiet_NaN();
  EXPECT(status(bad, k.images.data(), k.values.data(), out.data()) == S::kInvalidArgument, "sigma_xy NaN");
  bad = p;
  bad.h = bad.w = int64_t(1) << 13;  // 2^26 pixels > 2^24
  EXPECT(status(bad, k.images.data(), k.values.data(), out.data()) == S::kInvalidArgument, "too many pixels");
  EXPECT(status(p, nullptr, k.values.data(), out.data()) == S::kInvalidArgument, "null images");
  std::vector<float> alias = k.values;
  EXPECT(status(p, k.images.data(), alias.data(), alias.data()) == S::kInvalidArgument, "out aliases values");
  bad = p;
  bad.n = 0;
  EXPECT(status(bad, nullptr, nullptr, nullptr) == S::kOk, "N = 0 is a no-op");
  // Features far beyond the packed range (sigma_rgb tiny) and a NaN pixel: kFeatureRange, never a crash.
  bad = p;
  bad.sigma_rgb = 0.01f;
  EXPECT(status(bad, k.images.data(), k.values.data(), out.data()) == S::kFeatureRange, "range error");
  Case nan = k;
  nan.images[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT(status(p, nan.images.data(), nan.values.data(), out.data()) == S::kFeatureRange, "NaN image");
}

}  // namespace

int main() {
  testAgainstDenseGaussian();
  testAdjointThreadsBatchLinearity();
  testStatuses();
  if (fcam_test::g_failures) {
    std::printf("%d check(s) failed\n", fcam_test::g_failures);
    return 1;
  }
  std::printf("all lattice checks passed\n");
  return 0;
}
