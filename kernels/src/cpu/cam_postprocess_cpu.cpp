// CPU launcher of fcam::cam_postprocess: threads over maps (std::thread), one scratch set per thread.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <system_error>
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
    case Status::kBadWorkspace: return "workspace is null, too small or not 8-byte aligned";
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
  if (p.mask_type != MaskType::kUint8 && p.mask_type != MaskType::kInt32) return Status::kInvalidArgument;
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 8;
  if (p.n > 0 && (p.out_h * p.out_w > kMax / p.n || p.in_h * p.in_w > kMax / p.n || p.max_boxes * 4 > kMax / p.n)) {
    return Status::kInvalidArgument;
  }
  return Status::kOk;
}

size_t camPostprocessCudaWorkspaceSize(const CamPostprocessParams& p) {
  if (validateParams(p) != Status::kOk) return 0;
  return detail::workspaceLayout(p.n, p.in_h, p.in_w, p.out_h, p.out_w, p.mask_type == MaskType::kInt32).total;
}

Status validateCudaWorkspace(const CamPostprocessParams& p, const void* workspace, size_t workspace_bytes) {
  const Status st = validateParams(p);
  if (st != Status::kOk) return st;
  if (p.n == 0) return Status::kOk;  // nothing to do, no scratch needed
  if (!workspace || workspace_bytes < camPostprocessCudaWorkspaceSize(p) ||
      reinterpret_cast<uintptr_t>(workspace) % kCudaWorkspaceAlignment != 0) {
    return Status::kBadWorkspace;
  }
  return Status::kOk;
}

namespace {

struct Scratch {
  std::vector<float> norm, hrow;
  std::vector<detail::AxisTap> ty;
  std::vector<int32_t> xi0, xi1;  // x taps as structure of arrays (vectorisable gathers)
  std::vector<float> xl0, xl1;
  // Runs of foreground pixels, in raster order: row, first and last column, union-find parent.
  std::vector<int32_t> ry, rx0, rx1, parent, row_start;
  std::vector<int32_t> cnt, minx, maxx, maxy;
  std::vector<int32_t> roots;
  std::vector<uint64_t> keys, bits;
  std::vector<uint8_t> mask8;  // the map's 0/1 mask when the mask output is int32
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
  if (a < b) parent[b] = a;  // the root is the component's first run, so it holds its first pixel
  else if (b < a) parent[a] = b;
}

inline uint64_t load8(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Appends the runs of one mask row (values 0/1): the row is packed into 64-bit words (8 mask bytes -> 8 bits
// by one multiplication), then runs are read with count-trailing-zeros.
void rowRuns(const uint8_t* m, int ow, int y, Scratch& s) {
  const int nwords = (ow + 63) / 64;
  s.bits.resize(static_cast<size_t>(nwords));
  for (int wi = 0; wi < nwords; ++wi) {
    uint64_t bits = 0;
    const int base = wi * 64;
    for (int b = 0; b < 8; ++b) {
      const int idx = base + b * 8;
      uint64_t byte = 0;
      if (idx + 8 <= ow) {
        byte = (load8(m + idx) * 0x0102040810204080ULL) >> 56;
      } else {
        for (int k = 0; idx + k < ow && k < 8; ++k) byte |= static_cast<uint64_t>(m[idx + k] != 0) << k;
      }
      bits |= byte << (b * 8);
    }
    s.bits[wi] = bits;
  }
  // x: next position to examine; `inside` scans for a clear bit, otherwise for a set bit.
  int x = 0;
  while (x < ow) {
    // first set bit at or after x
    int wi = x >> 6;
    uint64_t w = s.bits[wi] & (~0ULL << (x & 63));
    while (w == 0 && ++wi < nwords) w = s.bits[wi];
    if (w == 0) break;
    const int x0 = (wi << 6) + __builtin_ctzll(w);
    if (x0 >= ow) break;
    // first clear bit after x0
    wi = x0 >> 6;
    uint64_t c = ~s.bits[wi] & (~0ULL << (x0 & 63));
    while (c == 0 && ++wi < nwords) c = ~s.bits[wi];
    int x1 = c == 0 ? ow : (wi << 6) + __builtin_ctzll(c);
    if (x1 > ow) x1 = ow;
    s.ry.push_back(y);
    s.rx0.push_back(x0);
    s.rx1.push_back(x1 - 1);
    s.parent.push_back(static_cast<int32_t>(s.parent.size()));
    x = x1;
  }
}

// x86-64 builds get an AVX2 clone picked at load time (no FMA: -ffp-contract=off keeps the op order).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && defined(__linux__)
#define FCAM_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FCAM_CPU_CLONES
#endif

// `mask` is this map's uint8 mask (the output, or s.mask8 when the output is `mask32`, which is then filled too).
FCAM_CPU_CLONES void processMap(const float* in, float* full, uint8_t* mask, int32_t* mask32, int32_t* boxes,
                                int32_t* count, const CamPostprocessParams& p, Scratch& s) {
  const int ih = static_cast<int>(p.in_h), iw = static_cast<int>(p.in_w);
  const int oh = static_cast<int>(p.out_h), ow = static_cast<int>(p.out_w);
  const int64_t in_px = static_cast<int64_t>(ih) * iw;
  const int K = static_cast<int>(p.max_boxes);

  // 1. Low-res values: min-max normalised (float64) or clamped; non-finite anywhere -> zeros.
  //    (float min/max are exact; written without early exit so the loop vectorises)
  float flo = std::numeric_limits<float>::infinity(), fhi = -flo;
  uint32_t nonfinite = 0;
  for (int64_t i = 0; i < in_px; ++i) {
    const float v = in[i];
    nonfinite |= !(v - v == 0.0f);  // NaN or +-inf
    flo = v < flo ? v : flo;
    fhi = v > fhi ? v : fhi;
  }
  const bool finite = nonfinite == 0;
  s.norm.resize(in_px);
  const double lo = flo, inv = detail::inverseRange(flo, fhi);
  if (!finite) {
    std::fill(s.norm.begin(), s.norm.end(), 0.0f);
  } else if (p.normalize) {
    for (int64_t i = 0; i < in_px; ++i) s.norm[i] = detail::normalise(in[i], lo, inv);
  } else {
    for (int64_t i = 0; i < in_px; ++i) s.norm[i] = detail::clamp01(in[i]);
  }

  // 2. Bilinear upsampling (torch align_corners=False), separable but with exactly the float operations of
  //    detail::bilinear: hrow[r][x] = l0*v[r][i0] + l1*v[r][i1]; out = ly0*hrow[i0][x] + ly1*hrow[i1][x].
  s.ty.resize(oh);
  for (int y = 0; y < oh; ++y) s.ty[y] = detail::axisTap(y, ih, oh);
  s.xi0.resize(ow); s.xi1.resize(ow); s.xl0.resize(ow); s.xl1.resize(ow);
  for (int x = 0; x < ow; ++x) {
    const detail::AxisTap t = detail::axisTap(x, iw, ow);
    s.xi0[x] = t.i0; s.xi1[x] = t.i1; s.xl0[x] = t.l0; s.xl1[x] = t.l1;
  }
  const int32_t* xi0 = s.xi0.data();
  const int32_t* xi1 = s.xi1.data();
  const float* xl0 = s.xl0.data();
  const float* xl1 = s.xl1.data();
  s.hrow.resize(static_cast<size_t>(ih) * ow);
  for (int r = 0; r < ih; ++r) {
    const float* v = s.norm.data() + static_cast<int64_t>(r) * iw;
    float* h = s.hrow.data() + static_cast<int64_t>(r) * ow;
    for (int x = 0; x < ow; ++x) h[x] = xl0[x] * v[xi0[x]] + xl1[x] * v[xi1[x]];
  }
  uint32_t max_bits = 0;  // values are +0.0 or positive (never -0.0), so their bit patterns order like the floats
  for (int y = 0; y < oh; ++y) {
    const detail::AxisTap& t = s.ty[y];
    const float* a = s.hrow.data() + static_cast<int64_t>(t.i0) * ow;
    const float* b = s.hrow.data() + static_cast<int64_t>(t.i1) * ow;
    float* row = full + static_cast<int64_t>(y) * ow;
    const float l0 = t.l0, l1 = t.l1;
    for (int x = 0; x < ow; ++x) {
      float r = l0 * a[x] + l1 * b[x];
      r = r > 0.0f ? r : 0.0f;  // = detail::clampUnit (-0.0 and NaN become +0.0), written so that it vectorises:
      r = r < 1.0f ? r : 1.0f;  // the bit-pattern max below is then exact
      row[x] = r;
    }
    for (int x = 0; x < ow; ++x) {
      uint32_t u;
      std::memcpy(&u, row + x, 4);
      max_bits = u > max_bits ? u : max_bits;
    }
  }
  float mx;
  std::memcpy(&mx, &max_bits, 4);

  // 3. Threshold row by row, collecting the runs of each row.
  s.ry.clear(); s.rx0.clear(); s.rx1.clear(); s.parent.clear();
  s.row_start.resize(static_cast<size_t>(oh) + 1);
  const int thr8 = detail::quantisedThreshold(p.tau, detail::quantise(mx));
  const float thr = detail::floatThreshold(p.tau, mx);
  for (int y = 0; y < oh; ++y) {
    const float* row = full + static_cast<int64_t>(y) * ow;
    uint8_t* m = mask + static_cast<int64_t>(y) * ow;
    if (p.quantize_uint8) {
      for (int x = 0; x < ow; ++x) m[x] = detail::quantise(row[x]) > thr8 ? 1 : 0;
    } else {
      for (int x = 0; x < ow; ++x) m[x] = row[x] > thr ? 1 : 0;
    }
    if (mask32) {
      int32_t* m32 = mask32 + static_cast<int64_t>(y) * ow;
      for (int x = 0; x < ow; ++x) m32[x] = m[x];
    }
    s.row_start[y] = static_cast<int32_t>(s.rx0.size());
    rowRuns(m, ow, y, s);
  }
  s.row_start[oh] = static_cast<int32_t>(s.rx0.size());

  // 4. 8-connected components: union runs that touch a run of the previous row (columns overlap by >= 1
  //    after widening by one pixel on each side).
  for (int y = 1; y < oh; ++y) {
    int32_t q = s.row_start[y - 1];
    const int32_t qe = s.row_start[y];
    for (int32_t r = s.row_start[y]; r < s.row_start[y + 1]; ++r) {
      while (q < qe && s.rx1[q] < s.rx0[r] - 1) ++q;
      for (int32_t k = q; k < qe && s.rx0[k] <= s.rx1[r] + 1; ++k) unite(s.parent, r, k);
    }
  }
  // 5. Per-component pixel count and extent, stored at the root run.
  const size_t nruns = s.rx0.size();
  s.cnt.assign(nruns, 0);
  s.minx.resize(nruns);
  s.maxx.resize(nruns);
  s.maxy.resize(nruns);
  s.roots.clear();
  for (size_t r = 0; r < nruns; ++r) {
    const int32_t root = findRoot(s.parent, static_cast<int32_t>(r));
    if (root == static_cast<int32_t>(r)) {
      s.roots.push_back(root);
      s.minx[root] = s.rx0[r]; s.maxx[root] = s.rx1[r]; s.maxy[root] = s.ry[r];
    } else {
      s.minx[root] = std::min(s.minx[root], s.rx0[r]);
      s.maxx[root] = std::max(s.maxx[root], s.rx1[r]);
      s.maxy[root] = s.ry[r];  // raster order: rows only grow
    }
    s.cnt[root] += s.rx1[r] - s.rx0[r] + 1;
  }
  // 6. Rank components, keep the top K.
  s.keys.resize(s.roots.size());
  for (size_t c = 0; c < s.roots.size(); ++c) {
    const int32_t r = s.roots[c];
    const int64_t start = static_cast<int64_t>(s.ry[r]) * ow + s.rx0[r];
    const int64_t primary = p.protocol_boxes ? detail::outerContourArea2(mask, oh, ow, s.rx0[r], s.ry[r])
                                             : static_cast<int64_t>(s.cnt[r]);
    s.keys[c] = detail::rankKey(p.protocol_boxes, primary, start);
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
    b[1] = s.ry[r];
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

// Runs job(m, scratch) for m in [0, n) on up to num_threads std::threads (0 = all cores), one scratch set per
// thread, maps handed out through an atomic counter. Returns kOutOfMemory when a worker could not allocate.
template <typename Job>
Status forEachMap(int64_t n, int num_threads, const Job& job) {
  int threads = num_threads > 0 ? num_threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
  std::atomic<int64_t> next{0};
  std::atomic<bool> oom{false};
  auto worker = [&]() {
    try {
      Scratch s;
      for (int64_t m = next.fetch_add(1); m < n && !oom.load(); m = next.fetch_add(1)) job(m, s);
    } catch (const std::bad_alloc&) {
      oom.store(true);
    }
  };
  std::vector<std::thread> pool;
  try {
    pool.reserve(threads - 1);
  } catch (const std::bad_alloc&) {
    threads = 1;
  }
  for (int t = 1; t < threads; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error&) {  // could not start another thread: the others share the work
      break;
    }
  }
  worker();
  for (auto& t : pool) t.join();
  return oom.load() ? Status::kOutOfMemory : Status::kOk;
}

}  // namespace

Status camPostprocessCpu(const float* maps, float* full, void* mask, int32_t* boxes, int32_t* count,
                         const CamPostprocessParams& p, int num_threads) {
  const Status st = validateParams(p);
  if (st != Status::kOk) return st;
  if (p.n == 0) return Status::kOk;
  if (!maps || !full || !mask || !boxes || !count) return Status::kInvalidArgument;
  const int64_t in_px = p.in_h * p.in_w, out_px = p.out_h * p.out_w;
  const bool m32 = p.mask_type == MaskType::kInt32;
  return forEachMap(p.n, num_threads, [&](int64_t m, Scratch& s) {
    if (m32 && s.mask8.size() < static_cast<size_t>(out_px)) s.mask8.resize(static_cast<size_t>(out_px));
    uint8_t* m8 = m32 ? s.mask8.data() : static_cast<uint8_t*>(mask) + m * out_px;
    int32_t* mo32 = m32 ? static_cast<int32_t*>(mask) + m * out_px : nullptr;
    processMap(maps + m * in_px, full + m * out_px, m8, mo32, boxes + m * p.max_boxes * 4, count + m, p, s);
  });
}

Status camPostprocessCpuSized(const float* maps, const int64_t* out_sizes, float* const* full, uint8_t* const* mask,
                              int32_t* boxes, int32_t* count, const CamPostprocessParams& p, int num_threads) {
  if (p.n < 0 || p.mask_type != MaskType::kUint8) return Status::kInvalidArgument;  // uint8 masks only
  if (p.n == 0) return Status::kOk;
  if (!maps || !out_sizes || !full || !mask || !boxes || !count) return Status::kInvalidArgument;
  for (int64_t m = 0; m < p.n; ++m) {  // every map's size is checked before any work starts
    CamPostprocessParams q = p;
    q.n = 1;
    q.out_h = out_sizes[2 * m];
    q.out_w = out_sizes[2 * m + 1];
    const Status st = validateParams(q);
    if (st != Status::kOk) return st;
    if (!full[m] || !mask[m]) return Status::kInvalidArgument;
  }
  const int64_t in_px = p.in_h * p.in_w;
  return forEachMap(p.n, num_threads, [&](int64_t m, Scratch& s) {
    CamPostprocessParams q = p;
    q.n = 1;
    q.out_h = out_sizes[2 * m];
    q.out_w = out_sizes[2 * m + 1];
    processMap(maps + m * in_px, full[m], mask[m], nullptr, boxes + m * p.max_boxes * 4, count + m, q, s);
  });
}

}  // namespace fcam
