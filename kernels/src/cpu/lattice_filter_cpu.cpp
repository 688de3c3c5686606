// CPU launcher of fcam::lattice_filter: threads over images (std::thread), one lattice per image.
// Per image: embed every pixel (src/common/lattice_common.h) and insert its d+1 vertex keys into an
// open-addressing hash table (vertex ids in first-insertion order), find every vertex's two neighbours along each
// of the d+1 lattice axes, then splat -> blur (axes 0..d, or d..0 for the adjoint) -> slice for all channels.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <new>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../common/lattice_common.h"
#include "fcam/lattice_filter.h"

namespace fcam {

const char* latticeStatusString(LatticeStatus s) {
  switch (s) {
    case LatticeStatus::kOk:
      return "ok";
    case LatticeStatus::kInvalidArgument:
      return "invalid argument (need N >= 0, C >= 1, H, W >= 1, H*W <= 2^24, finite sigmas > 0)";
    case LatticeStatus::kFeatureRange:
      return "lattice coordinate out of range (features / sigma too large: raise sigma_rgb / sigma_xy or "
             "rescale the images; non-finite image values also give this)";
    case LatticeStatus::kOutOfMemory:
      return "out of memory";
  }
  return "unknown status";
}

LatticeStatus validateLatticeParams(const LatticeFilterParams& p) {
  if (p.n < 0 || p.channels < 1 || p.h < 1 || p.w < 1) return LatticeStatus::kInvalidArgument;
  if (p.h > kLatticeMaxPixels || p.w > kLatticeMaxPixels || p.h * p.w > kLatticeMaxPixels) {
    return LatticeStatus::kInvalidArgument;
  }
  if (p.channels > (int64_t(1) << 20)) return LatticeStatus::kInvalidArgument;
  if (!(p.sigma_rgb > 0.0f) || !(p.sigma_xy > 0.0f) || !std::isfinite(p.sigma_rgb) ||
      !std::isfinite(p.sigma_xy)) {
    return LatticeStatus::kInvalidArgument;
  }
  return LatticeStatus::kOk;
}

namespace {

using lattice::kD;
using lattice::kD1;

// Open addressing with linear probing over packed keys; grows (doubling) at half load. Vertex ids are dense, in
// first-insertion order; vertex_keys[id] is the key of vertex id.
class VertexTable {
 public:
  void reset() {
    if (slots_.empty()) {
      slots_.assign(kInitialSlots, lattice::kEmptyKey);
      ids_.assign(kInitialSlots, -1);
    } else {
      std::fill(slots_.begin(), slots_.end(), lattice::kEmptyKey);
    }
    vertex_keys.clear();
  }

  int32_t insert(uint64_t key) {
    if (2 * (vertex_keys.size() + 1) > slots_.size()) grow();
    const size_t mask = slots_.size() - 1;
    for (size_t h = lattice::hashKey(key) & mask;; h = (h + 1) & mask) {
      if (slots_[h] == key) return ids_[h];
      if (slots_[h] == lattice::kEmptyKey) {
        slots_[h] = key;
        ids_[h] = static_cast<int32_t>(vertex_keys.size());
        vertex_keys.push_back(key);
        return ids_[h];
      }
    }
  }

  int32_t find(uint64_t key) const {
    const size_t mask = slots_.size() - 1;
    for (size_t h = lattice::hashKey(key) & mask;; h = (h + 1) & mask) {
      if (slots_[h] == key) return ids_[h];
      if (slots_[h] == lattice::kEmptyKey) return -1;
    }
  }

  std::vector<uint64_t> vertex_keys;

 private:
  static constexpr size_t kInitialSlots = 4096;

  void grow() {
    const size_t cap = slots_.size() * 2;
    slots_.assign(cap, lattice::kEmptyKey);
    ids_.assign(cap, -1);
    const size_t mask = cap - 1;
    for (size_t id = 0; id < vertex_keys.size(); ++id) {
      size_t h = lattice::hashKey(vertex_keys[id]) & mask;
      while (slots_[h] != lattice::kEmptyKey) h = (h + 1) & mask;
      slots_[h] = vertex_keys[id];
      ids_[h] = static_cast<int32_t>(id);
    }
  }

  std::vector<uint64_t> slots_;
  std::vector<int32_t> ids_;
};

struct Scratch {
  VertexTable table;
  std::vector<int32_t> offset;  // [HW, d+1] vertex id + 1 (0 = the zero row)
  std::vector<float> bary;      // [HW, d+1] barycentric weight
  std::vector<int32_t> nbr;     // [d+1, M, 2] neighbour id + 1 (0 = absent)
  std::vector<float> a, b;      // [(M+1), C] lattice values, row 0 stays 0
};

bool filterImage(const float* image, const float* values, float* out, const LatticeFilterParams& p,
                 const lattice::Consts& k, Scratch& s) {
  const int64_t hw = p.h * p.w;
  const int64_t nc = p.channels;
  s.table.reset();
  s.offset.resize(static_cast<size_t>(hw * kD1));
  s.bary.resize(static_cast<size_t>(hw * kD1));
  float f[kD];
  uint64_t key[kD1];
  float bw[kD1];
  for (int64_t y = 0; y < p.h; ++y) {
    for (int64_t x = 0; x < p.w; ++x) {
      const int64_t px = y * p.w + x;
      lattice::pixelFeatures(image, hw, px, static_cast<int>(y), static_cast<int>(x), p.sigma_rgb, p.sigma_xy, f);
      if (!lattice::embed(f, k, key, bw)) return false;
      for (int r = 0; r < kD1; ++r) {
        s.offset[static_cast<size_t>(px * kD1 + r)] = s.table.insert(key[r]) + 1;
        s.bary[static_cast<size_t>(px * kD1 + r)] = bw[r];
      }
    }
  }
  const int64_t m = static_cast<int64_t>(s.table.vertex_keys.size());
  s.nbr.resize(static_cast<size_t>(kD1 * m * 2));
  for (int j = 0; j < kD1; ++j) {
    int32_t* nb = s.nbr.data() + static_cast<size_t>(j * m * 2);
    for (int64_t v = 0; v < m; ++v) {
      uint64_t nk;
      const uint64_t vk = s.table.vertex_keys[static_cast<size_t>(v)];
      nb[2 * v] = lattice::neighborKey(vk, j, +1, &nk) ? s.table.find(nk) + 1 : 0;
      nb[2 * v + 1] = lattice::neighborKey(vk, j, -1, &nk) ? s.table.find(nk) + 1 : 0;
    }
  }
  const size_t rows = static_cast<size_t>((m + 1) * nc);
  s.a.assign(rows, 0.0f);
  s.b.assign(rows, 0.0f);
  // Splat.
  for (int64_t px = 0; px < hw; ++px) {
    for (int r = 0; r < kD1; ++r) {
      const int64_t o = s.offset[static_cast<size_t>(px * kD1 + r)];
      const float w = s.bary[static_cast<size_t>(px * kD1 + r)];
      float* dst = s.a.data() + o * nc;
      for (int64_t c = 0; c < nc; ++c) dst[c] += w * values[c * hw + px];
    }
  }
  // Blur along each lattice axis (ping-pong; row 0 is the zero row of absent neighbours).
  for (int step = 0; step < kD1; ++step) {
    const int j = p.adjoint ? kD - step : step;
    const int32_t* nb = s.nbr.data() + static_cast<size_t>(j * m * 2);
    for (int64_t v = 0; v < m; ++v) {
      const float* src = s.a.data() + (v + 1) * nc;
      const float* n1 = s.a.data() + static_cast<int64_t>(nb[2 * v]) * nc;
      const float* n2 = s.a.data() + static_cast<int64_t>(nb[2 * v + 1]) * nc;
      float* dst = s.b.data() + (v + 1) * nc;
      for (int64_t c = 0; c < nc; ++c) dst[c] = src[c] + 0.5f * (n1[c] + n2[c]);
    }
    std::swap(s.a, s.b);
  }
  // Slice.
  for (int64_t px = 0; px < hw; ++px) {
    for (int64_t c = 0; c < nc; ++c) {
      float acc = 0.0f;
      for (int r = 0; r < kD1; ++r) {
        const int64_t o = s.offset[static_cast<size_t>(px * kD1 + r)];
        const float w = s.bary[static_cast<size_t>(px * kD1 + r)] * k.alpha;
        acc += w * s.a[static_cast<size_t>(o * nc + c)];
      }
      out[c * hw + px] = acc;
    }
  }
  return true;
}

}  // namespace

LatticeStatus latticeFilterCpu(const float* images, const float* values, float* out, const LatticeFilterParams& p,
                               int num_threads) {
  const LatticeStatus st = validateLatticeParams(p);
  if (st != LatticeStatus::kOk) return st;
  if (p.n == 0) return LatticeStatus::kOk;
  if (!images || !values || !out || values == out) return LatticeStatus::kInvalidArgument;
  const lattice::Consts k = lattice::makeConsts();
  const int64_t hw = p.h * p.w;
  int threads = num_threads > 0 ? num_threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, p.n)));
  std::atomic<int64_t> next{0};
  std::atomic<bool> oom{false};
  std::atomic<bool> range{false};
  auto worker = [&]() {
    try {
      Scratch s;
      for (int64_t i = next.fetch_add(1); i < p.n && !oom.load(); i = next.fetch_add(1)) {
        if (!filterImage(images + i * 3 * hw, values + i * p.channels * hw, out + i * p.channels * hw, p, k, s)) {
          range.store(true);
        }
      }
    } catch (const std::bad_alloc&) {
      oom.store(true);
    } catch (const std::length_error&) {
      oom.store(true);
    }
  };
  std::vector<std::thread> pool;
  try {
    pool.reserve(static_cast<size_t>(threads - 1));
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
  if (oom.load()) return LatticeStatus::kOutOfMemory;
  return range.load() ? LatticeStatus::kFeatureRange : LatticeStatus::kOk;
}

}  // namespace fcam
