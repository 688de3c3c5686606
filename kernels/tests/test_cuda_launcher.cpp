// GPU test of the CUDA launcher against the CPU launcher (no torch): every output bit for bit. Built by CMake
// next to libfcam_cuda.a (so CI compile-checks it); run on a GPU by kernels/gpu/gpu_check.py, plain and under
// compute-sanitizer (memcheck / racecheck / synccheck), which is why it is small and has no framework.
//   fcam_cuda_launcher_test [--small]    exit 0 = all equal, 1 = a mismatch or CUDA error, 3 = no CUDA device
// Cases: random maps (upsampling, downsampling, h or w = 1), 0/1 maps with identity resize (checkerboard: one
// 8-connected component; serpentine: one 1-pixel-wide path, the long union-find chains; sparse single pixels: many
// equal-size components, so K >= 16 exercises the tie rule), -0.0 in pass-through maps, NaN and constant maps, and
// N above the SM count. Each case runs with the uint8 and the int32 mask output (the ONNX/TensorRT contract), on a
// non-default stream, twice (the two GPU runs must be identical too), plus workspace size/alignment rejection.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fcam/cam_postprocess.h"

namespace {

int g_failures = 0;
int g_cases = 0;

#define CUDA_OK(expr)                                                                                     \
  do {                                                                                                    \
    const cudaError_t e_ = (expr);                                                                        \
    if (e_ != cudaSuccess) {                                                                              \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, #expr); \
      std::exit(1);                                                                                       \
    }                                                                                                     \
  } while (0)

struct Case {
  std::string name;
  int64_t n, h, w, oh, ow;
  std::vector<float> maps;
};

fcam::CamPostprocessParams params(const Case& c, double tau, bool q, bool proto, bool norm, int64_t k,
                                  fcam::MaskType mt) {
  fcam::CamPostprocessParams p;
  p.n = c.n; p.in_h = c.h; p.in_w = c.w; p.out_h = c.oh; p.out_w = c.ow; p.tau = tau;
  p.quantize_uint8 = q; p.protocol_boxes = proto; p.normalize = norm; p.max_boxes = k; p.mask_type = mt;
  return p;
}

struct Outputs {
  std::vector<float> full;
  std::vector<uint8_t> mask;  // raw bytes of the mask output (uint8 or int32 elements)
  std::vector<int32_t> boxes, count;
};

size_t maskBytes(const fcam::CamPostprocessParams& p) {
  return size_t(p.n * p.out_h * p.out_w) * (p.mask_type == fcam::MaskType::kInt32 ? 4 : 1);
}

Outputs runCpu(const Case& c, const fcam::CamPostprocessParams& p) {
  Outputs o;
  o.full.resize(size_t(p.n * p.out_h * p.out_w));
  o.mask.resize(maskBytes(p));
  o.boxes.resize(size_t(p.n * p.max_boxes * 4));
  o.count.resize(size_t(p.n));
  const fcam::Status st = fcam::camPostprocessCpu(c.maps.data(), o.full.data(), o.mask.data(), o.boxes.data(),
                                                  o.count.data(), p, 0);
  if (st != fcam::Status::kOk) {
    std::fprintf(stderr, "FAIL %s: CPU launcher: %s\n", c.name.c_str(), fcam::statusString(st));
    ++g_failures;
  }
  return o;
}

Outputs runCuda(const Case& c, const fcam::CamPostprocessParams& p, cudaStream_t stream) {
  Outputs o;
  o.full.resize(size_t(p.n * p.out_h * p.out_w));
  o.mask.resize(maskBytes(p));
  o.boxes.resize(size_t(p.n * p.max_boxes * 4));
  o.count.resize(size_t(p.n));
  float *d_in = nullptr, *d_full = nullptr;
  void *d_mask = nullptr, *d_ws = nullptr;
  int32_t *d_boxes = nullptr, *d_count = nullptr;
  const size_t ws = fcam::camPostprocessCudaWorkspaceSize(p);
  CUDA_OK(cudaMalloc(&d_in, c.maps.size() * sizeof(float) + 4));
  CUDA_OK(cudaMalloc(&d_full, o.full.size() * sizeof(float) + 4));
  CUDA_OK(cudaMalloc(&d_mask, o.mask.size() + 4));
  CUDA_OK(cudaMalloc(&d_boxes, o.boxes.size() * sizeof(int32_t) + 4));
  CUDA_OK(cudaMalloc(&d_count, o.count.size() * sizeof(int32_t) + 4));
  CUDA_OK(cudaMalloc(&d_ws, ws + 8));
  CUDA_OK(cudaMemcpyAsync(d_in, c.maps.data(), c.maps.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
  // poison the outputs so that an element the launcher forgets to write shows as a mismatch
  CUDA_OK(cudaMemsetAsync(d_full, 0x7f, o.full.size() * sizeof(float), stream));
  CUDA_OK(cudaMemsetAsync(d_mask, 0x5a, o.mask.size(), stream));
  CUDA_OK(cudaMemsetAsync(d_boxes, 0x5a, o.boxes.size() * sizeof(int32_t), stream));
  CUDA_OK(cudaMemsetAsync(d_count, 0x5a, o.count.size() * sizeof(int32_t), stream));
  const int err = fcam::camPostprocessCuda(d_in, d_full, d_mask, d_boxes, d_count, p, d_ws, ws,
                                           reinterpret_cast<CUstream_st*>(stream));
  if (err != 0) {
    std::fprintf(stderr, "FAIL %s: CUDA launcher returned %d (%s)\n", c.name.c_str(), err,
                 fcam::camPostprocessCudaErrorString(err));
    ++g_failures;
  }
  CUDA_OK(cudaMemcpyAsync(o.full.data(), d_full, o.full.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaMemcpyAsync(o.mask.data(), d_mask, o.mask.size(), cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaMemcpyAsync(o.boxes.data(), d_boxes, o.boxes.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaMemcpyAsync(o.count.data(), d_count, o.count.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  // misaligned (4-byte offset) and short workspaces are refused before any launch
  if (p.n > 0) {
    const int mis = fcam::camPostprocessCuda(d_in, d_full, d_mask, d_boxes, d_count, p,
                                             static_cast<char*>(d_ws) + 4, ws, reinterpret_cast<CUstream_st*>(stream));
    const int shortw = fcam::camPostprocessCuda(d_in, d_full, d_mask, d_boxes, d_count, p, d_ws, ws - 1,
                                                reinterpret_cast<CUstream_st*>(stream));
    const int bad = -static_cast<int>(fcam::Status::kBadWorkspace);
    if (mis != bad || shortw != bad) {
      std::fprintf(stderr, "FAIL %s: bad workspaces returned %d / %d, want %d\n", c.name.c_str(), mis, shortw, bad);
      ++g_failures;
    }
  }
  CUDA_OK(cudaFree(d_in));
  CUDA_OK(cudaFree(d_full));
  CUDA_OK(cudaFree(d_mask));
  CUDA_OK(cudaFree(d_boxes));
  CUDA_OK(cudaFree(d_count));
  CUDA_OK(cudaFree(d_ws));
  return o;
}

void compare(const std::string& what, const Outputs& a, const Outputs& b) {
  ++g_cases;
  const char* bad = nullptr;
  if (a.full.size() != b.full.size() || std::memcmp(a.full.data(), b.full.data(), a.full.size() * 4) != 0) {
    bad = "full (bits)";
  } else if (a.mask != b.mask) {
    bad = "mask";
  } else if (a.boxes != b.boxes) {
    bad = "boxes";
  } else if (a.count != b.count) {
    bad = "count";
  }
  if (bad) {
    ++g_failures;
    std::fprintf(stderr, "FAIL %s: %s differ\n", what.c_str(), bad);
  }
}

// ---- inputs ---------------------------------------------------------------------------------------------------
Case randomCase(const std::string& name, int64_t n, int64_t h, int64_t w, int64_t oh, int64_t ow, uint32_t seed) {
  Case c{name, n, h, w, oh, ow, std::vector<float>(size_t(n * h * w))};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  for (float& v : c.maps) v = nd(rng);
  return c;
}

Case binaryCase(const std::string& name, int64_t s, int kind) {
  Case c{name, 1, s, s, s, s, std::vector<float>(size_t(s * s), 0.0f)};
  for (int64_t y = 0; y < s; ++y) {
    for (int64_t x = 0; x < s; ++x) {
      bool on = false;
      if (kind == 0) on = (x + y) % 2 == 0;                                  // checkerboard
      if (kind == 1) on = y % 4 == 0 || (y % 4 != 0 && x == ((y / 4) % 2 == 0 ? s - 1 : 0));  // serpentine
      if (kind == 2) on = x % 3 == 1 && y % 3 == 1;                          // sparse single pixels
      c.maps[size_t(y * s + x)] = on ? 1.0f : 0.0f;
    }
  }
  return c;
}

void runCase(const Case& c, double tau, bool q, bool proto, bool norm, int64_t k, cudaStream_t stream) {
  for (fcam::MaskType mt : {fcam::MaskType::kUint8, fcam::MaskType::kInt32}) {
    const fcam::CamPostprocessParams p = params(c, tau, q, proto, norm, k, mt);
    char tag[160];
    std::snprintf(tag, sizeof tag, "%s q=%d p=%d norm=%d K=%lld mask=%s", c.name.c_str(), int(q), int(proto),
                  int(norm), static_cast<long long>(k), mt == fcam::MaskType::kInt32 ? "int32" : "uint8");
    const Outputs cpu = runCpu(c, p);
    const Outputs gpu1 = runCuda(c, p, stream);
    compare(std::string(tag) + " [CUDA vs CPU]", gpu1, cpu);
    const Outputs gpu2 = runCuda(c, p, stream);
    compare(std::string(tag) + " [CUDA run 2 vs run 1]", gpu2, gpu1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::strcmp(argv[1], "--small") == 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("fcam_cuda_launcher_test: no CUDA device, nothing run\n");
    return 3;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));  // not the legacy default stream

  const int64_t s = small ? 48 : 256;  // serpentine: union-find chains as long as the path (kernels/README.md §2)
  std::vector<Case> cases = {
      randomCase("random 28->224", small ? 2 : 5, 28, 28, small ? 64 : 224, small ? 64 : 224, 1),
      randomCase("random 7x9->3x2", 3, 7, 9, 3, 2, 2),
      randomCase("random 1x13->5x7 (h=1)", 2, 1, 13, 5, 7, 3),
      randomCase("random 13x1->1x9 (w=1, H=1)", 2, 13, 1, 1, 9, 4),
      randomCase("random 1x1->1x1", 2, 1, 1, 1, 1, 5),
      binaryCase("checkerboard", s, 0),
      binaryCase("serpentine", s, 1),
      binaryCase("sparse pixels", s, 2),
  };
  // N above the SM count: the one-block-per-map kernels get more blocks than SMs
  cases.push_back(randomCase("N > #SMs", prop.multiProcessorCount + 5, 14, 14, small ? 28 : 112, small ? 28 : 112, 6));
  {  // -0.0 in pass-through maps (normalize=false), NaN and constant maps
    Case c = randomCase("-0.0 / NaN / constant", 4, 9, 11, small ? 20 : 60, small ? 23 : 70, 7);
    const size_t px = size_t(9 * 11);
    for (size_t i = 0; i < 2 * px; ++i) c.maps[i] = c.maps[i] > 0 ? c.maps[i] / (1 + c.maps[i]) : -0.0f;
    c.maps[2 * px + 5] = std::numeric_limits<float>::quiet_NaN();
    for (size_t i = 3 * px; i < 4 * px; ++i) c.maps[i] = 0.25f;
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    const bool binary = c.name == "checkerboard" || c.name == "serpentine" || c.name == "sparse pixels";
    if (binary) {
      runCase(c, 0.5, false, false, true, 16, stream);
      runCase(c, 0.5, true, true, true, 16, stream);
    } else {
      for (int f = 0; f < 8; ++f) runCase(c, 0.45, f & 1, f & 2, f & 4, 5, stream);
      runCase(c, 0.0, false, false, false, 3, stream);
      runCase(c, 1.0, true, true, true, 2, stream);
    }
  }
  CUDA_OK(cudaStreamDestroy(stream));
  CUDA_OK(cudaDeviceSynchronize());
  std::printf("fcam_cuda_launcher_test: %d comparisons on %s (sm_%d%d), %d failure(s)\n", g_cases, prop.name,
              prop.major, prop.minor, g_failures);
  return g_failures == 0 ? 0 : 1;
}
