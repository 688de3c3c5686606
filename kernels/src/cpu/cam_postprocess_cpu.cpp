// CPU launcher of fcam::cam_postprocess: threads over maps (std::thread), one scratch set per thread.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "../common/cam_common.h"
#include "fcam/cam_postprocess.h"

namespace fcam {

const char* statusString(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kCudaError: return "CUDA error";
    case Status::kOutOfMemory: return "out of memory";
  }
  return "unknown status";
}

Status validateParams(const CamPostprocessParams& p) {
  if (p.n < 0 || p.in_h < 1 || p.in_w < 1 || p.out_h < 1 || p.out_w < 1 || p.max_boxes < 1) {
    return Status::kInvalidArgument;
  }
  if (!(p.tau >= 0.0 && p.tau <= 1.0)) return Status::kInvalidArgument;
  if (p.out_h > kMaxPixelsPerMap / p.out_w || p.in_h > kMaxPixelsPerMap / p.in_w) {
    return Status::kInvalidArgument;
  }
  if (p.max_boxes > (int64_t(1) << 24)) return Status::kInvalidArgument;
  if (p.n > 0 && p.out_h * p.out_w > std::numeric_limits<int64_t>::max() / 8 / p.n) {
    return Status::kInvalidArgument;
  }
  return Status::kOk;
}

namespace {

struct Scratch {
  std::vector<float> norm;
  std::vector<detail::AxisTap> ty, tx;
  std::vector<int32_t> parent, cnt, minx, maxx, maxy;
  std::vector<int32_t> roots;
  std::vector<uint64_t> keys;
};

int32_t findRoot(std::vector<int32_t>& parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving
    i = parent[i];
  }
  return i;
}

void unite(std::vector<int32_t>& parent, int32_t a, int32_t b) {
  a = findRoot(parent, a);
  b = findRoot(parent, b);
  if (a < b) parent[b] = a;  // the root is always the component's first pixel in raster order
  else if (b < a) parent[a] = b;
}

void processMap(const float* in, float* full, uint8_t* mask, int32_t* boxes, int32_t* count,
                const CamPostprocessParams& p, Scratch& s) {
  const int ih = static_cast<int>(p.in_h), iw = static_cast<int>(p.in_w);
  const int oh = static_cast<int>(p.out_h), ow = static_cast<int>(p.out_w);
  const int64_t in_px = static_cast<int64_t>(ih) * iw, out_px = static_cast<int64_t>(oh) * ow;
  const int K = static_cast<int>(p.max_boxes);

  // 1. Low-res values: min-max normalised (float64) or clamped; non-finite anywhere -> zeros.
  bool finite = true;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int64_t i = 0; i < in_px; ++i) {
    const float v = in[i];
    if (!std::isfinite(v)) { finite = false; break; }
    lo = std::min(lo, static_cast<double>(v));
    hi = std::max(hi, static_cast<double>(v));
  }
  s.norm.resize(in_px);
  const double range = hi - lo;
  for (int64_t i = 0; i < in_px; ++i) {
    s.norm[i] = !finite ? 0.0f : (p.normalize ? detail::normalise(in[i], lo, range) : detail::clamp01(in[i]));
  }

  // 2. Bilinear upsampling (torch align_corners=False) and the map maximum.
  s.ty.resize(oh);
  s.tx.resize(ow);
  for (int y = 0; y < oh; ++y) s.ty[y] = detail::axisTap(y, ih, oh);
  for (int x = 0; x < ow; ++x) s.tx[x] = detail::axisTap(x, iw, ow);
  float mx = 0.0f;
  for (int y = 0; y < oh; ++y) {
    float* row = full + static_cast<int64_t>(y) * ow;
    for (int x = 0; x < ow; ++x) {
      const float v = detail::bilinear(s.norm.data(), iw, s.ty[y], s.tx[x]);
      row[x] = v;
      mx = std::max(mx, v);
    }
  }

  // 3. Threshold.
  if (p.quantize_uint8) {
    const int thr = detail::quantisedThreshold(p.tau, detail::quantise(mx));
    for (int64_t i = 0; i < out_px; ++i) mask[i] = detail::quantise(full[i]) > thr ? 1 : 0;
  } else {
    const float thr = detail::floatThreshold(p.tau, mx);
    for (int64_t i = 0; i < out_px; ++i) mask[i] = full[i] > thr ? 1 : 0;
  }

  // 4. 8-connected components: union-find over the already-visited half of the neighbourhood.
  s.parent.resize(out_px);
  for (int y = 0; y < oh; ++y) {
    for (int x = 0; x < ow; ++x) {
      const int32_t i = y * ow + x;
      if (!mask[i]) { s.parent[i] = -1; continue; }
      s.parent[i] = i;
      if (x > 0 && mask[i - 1]) unite(s.parent, i, i - 1);
      if (y > 0) {
        const int32_t up = i - ow;
        if (x > 0 && mask[up - 1]) unite(s.parent, i, up - 1);
        if (mask[up]) unite(s.parent, i, up);
        if (x + 1 < ow && mask[up + 1]) unite(s.parent, i, up + 1);
      }
    }
  }
  // 5. Per-component pixel count and extent, stored at the root.
  s.cnt.assign(out_px, 0);
  s.minx.resize(out_px);
  s.maxx.resize(out_px);
  s.maxy.resize(out_px);
  s.roots.clear();
  for (int y = 0; y < oh; ++y) {
    for (int x = 0; x < ow; ++x) {
      const int32_t i = y * ow + x;
      if (s.parent[i] < 0) continue;
      const int32_t r = findRoot(s.parent, i);
      if (r == i) {
        s.roots.push_back(i);
        s.minx[r] = x; s.maxx[r] = x; s.maxy[r] = y;
      } else {
        s.minx[r] = std::min(s.minx[r], x);
        s.maxx[r] = std::max(s.maxx[r], x);
        s.maxy[r] = y;  // raster order: y only grows
      }
      ++s.cnt[r];
    }
  }
  // 6. Rank components, keep the top K.
  s.keys.resize(s.roots.size());
  for (size_t c = 0; c < s.roots.size(); ++c) {
    const int32_t r = s.roots[c];
    const int64_t primary = p.protocol_boxes ? detail::outerContourArea2(mask, oh, ow, r % ow, r / ow)
                                             : static_cast<int64_t>(s.cnt[r]);
    s.keys[c] = detail::rankKey(p.protocol_boxes, primary, r);
  }
  std::vector<size_t> order(s.roots.size());
  for (size_t c = 0; c < order.size(); ++c) order[c] = c;
  const size_t keep = std::min(order.size(), static_cast<size_t>(K));
  std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                    [&](size_t a, size_t b) { return s.keys[a] > s.keys[b]; });
  for (int k = 0; k < K; ++k) {
    int32_t* b = boxes + static_cast<int64_t>(k) * 4;
    b[0] = b[1] = b[2] = b[3] = -1;
  }
  for (size_t k = 0; k < keep; ++k) {
    const int32_t r = s.roots[order[k]];
    int32_t* b = boxes + static_cast<int64_t>(k) * 4;
    b[0] = s.minx[r];
    b[1] = r / ow;
    b[2] = s.maxx[r];
    b[3] = s.maxy[r];
    if (p.protocol_boxes) {
      b[2] = std::min(b[2] + 1, ow - 1);
      b[3] = std::min(b[3] + 1, oh - 1);
    }
  }
  if (keep == 0 && p.protocol_boxes) {
    boxes[0] = boxes[1] = boxes[2] = boxes[3] = 0;
    *count = 1;
  } else {
    *count = static_cast<int32_t>(keep);
  }
}

}  // namespace

Status camPostprocessCpu(const float* maps, float* full, uint8_t* mask, int32_t* boxes, int32_t* count,
                         const CamPostprocessParams& p, int num_threads) {
  const Status st = validateParams(p);
  if (st != Status::kOk) return st;
  if (p.n == 0) return Status::kOk;
  if (!maps || !full || !mask || !boxes || !count) return Status::kInvalidArgument;
  const int64_t in_px = p.in_h * p.in_w, out_px = p.out_h * p.out_w;
  int threads = num_threads > 0 ? num_threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, p.n)));
  std::atomic<int64_t> next{0};
  auto worker = [&]() {
    Scratch s;
    for (int64_t m = next.fetch_add(1); m < p.n; m = next.fetch_add(1)) {
      processMap(maps + m * in_px, full + m * out_px, mask + m * out_px, boxes + m * p.max_boxes * 4,
                 count + m, p, s);
    }
  };
  try {
    if (threads == 1) {
      worker();
    } else {
      std::vector<std::thread> pool;
      pool.reserve(threads - 1);
      for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
      worker();
      for (auto& t : pool) t.join();
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

}  // namespace fcam
