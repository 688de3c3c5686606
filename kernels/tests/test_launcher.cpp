// Test binary of the CPU launcher (no torch). Built with ASan + UBSan by kernels/build.sh and run by
// tests/ops/test_launcher_binary.py.
//   fcam_launcher_test            hand-computed golden cases (WSOL protocol examples, edge cases)
//   fcam_launcher_test CASES.bin  cases written by the Python reference; compares every output
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fcam/cam_postprocess.h"
#include "expect.h"

namespace {

struct Out {
  std::vector<float> full;
  std::vector<uint8_t> mask;
  std::vector<int32_t> boxes, count;
};

Out run(const std::vector<float>& maps, const fcam::CamPostprocessParams& p, int threads = 2) {
  Out o;
  const size_t px = size_t(p.n * p.out_h * p.out_w);
  o.full.assign(px, -7.0f);
  o.mask.assign(px, 7);
  o.boxes.assign(size_t(p.n * p.max_boxes * 4), 7);
  o.count.assign(size_t(p.n), 7);
  const fcam::Status st = fcam::camPostprocessCpu(maps.data(), o.full.data(), o.mask.data(), o.boxes.data(),
                                                  o.count.data(), p, threads);
  EXPECT(st == fcam::Status::kOk, "launcher status %s", fcam::statusString(st));
  return o;
}

fcam::CamPostprocessParams params(int64_t n, int64_t h, int64_t w, int64_t oh, int64_t ow, double tau, bool q,
                                  bool proto, int64_t k) {
  fcam::CamPostprocessParams p;
  p.n = n; p.in_h = h; p.in_w = w; p.out_h = oh; p.out_w = ow; p.tau = tau;
  p.quantize_uint8 = q; p.protocol_boxes = proto; p.max_boxes = k;
  return p;
}

void expectBox(const Out& o, int k, int x0, int y0, int x1, int y1, const char* what) {
  const int32_t* b = o.boxes.data() + 4 * k;
  EXPECT(b[0] == x0 && b[1] == y0 && b[2] == x1 && b[3] == y1, "%s: box %d = (%d,%d,%d,%d), want (%d,%d,%d,%d)",
         what, k, b[0], b[1], b[2], b[3], x0, y0, x1, y1);
}

void goldenCases() {
  // Single pixel at (2, 2) in 5x5 (identity resize): protocol box [2,2,3,3] (+1 overshoot).
  {
    std::vector<float> m(25, 0.0f);
    m[2 * 5 + 2] = 1.0f;
    for (bool proto : {false, true}) {
      for (bool q : {false, true}) {
        Out o = run(m, params(1, 5, 5, 5, 5, 0.5, q, proto, 2));
        EXPECT(o.count[0] == 1, "single pixel count %d", o.count[0]);
        if (proto) expectBox(o, 0, 2, 2, 3, 3, "single pixel protocol");
        else expectBox(o, 0, 2, 2, 2, 2, "single pixel");
        expectBox(o, 1, -1, -1, -1, -1, "unused slot");
        EXPECT(o.full[12] == 1.0f && o.full[0] == 0.0f, "identity upsample");
      }
    }
  }
  // 7x7 square at 1..7 with a 3x3 hole in 9x9: protocol v1 box [1,1,8,8]; exact extents [1,1,7,7].
  {
    std::vector<float> m(81, 0.0f);
    for (int y = 1; y <= 7; ++y) for (int x = 1; x <= 7; ++x) m[y * 9 + x] = 1.0f;
    for (int y = 3; y <= 5; ++y) for (int x = 3; x <= 5; ++x) m[y * 9 + x] = 0.0f;
    Out a = run(m, params(1, 9, 9, 9, 9, 0.0, true, true, 1));
    expectBox(a, 0, 1, 1, 8, 8, "square with hole, protocol");
    Out b = run(m, params(1, 9, 9, 9, 9, 0.0, false, false, 1));
    expectBox(b, 0, 1, 1, 7, 7, "square with hole");
    EXPECT(b.count[0] == 1, "square count %d", b.count[0]);
  }
  // Diagonal chain (1,1),(2,2),(3,3): one 8-connected component, protocol box [1,1,4,4].
  {
    std::vector<float> m(36, 0.0f);
    for (int i = 1; i <= 3; ++i) m[i * 6 + i] = 1.0f;
    Out a = run(m, params(1, 6, 6, 6, 6, 0.5, true, true, 3));
    EXPECT(a.count[0] == 1, "diagonal count %d", a.count[0]);
    expectBox(a, 0, 1, 1, 4, 4, "diagonal protocol");
  }
  // Two blobs: the larger one first; protocol ties on contour area -> the later start pixel first.
  {
    std::vector<float> m(64, 0.0f);
    m[0 * 8 + 0] = 1.0f;                                  // single pixel, area 0
    for (int y = 4; y <= 6; ++y) for (int x = 4; x <= 6; ++x) m[y * 8 + x] = 1.0f;  // 3x3 block
    m[2 * 8 + 7] = 1.0f;                                  // another single pixel
    Out a = run(m, params(1, 8, 8, 8, 8, 0.5, false, false, 3));
    EXPECT(a.count[0] == 3, "three blobs count %d", a.count[0]);
    expectBox(a, 0, 4, 4, 6, 6, "largest first");
    expectBox(a, 1, 0, 0, 0, 0, "pixel tie: earlier start first");
    expectBox(a, 2, 7, 2, 7, 2, "pixel tie: later start second");
    Out b = run(m, params(1, 8, 8, 8, 8, 0.5, true, true, 3));
    expectBox(b, 0, 4, 4, 7, 7, "protocol largest first");
    expectBox(b, 1, 7, 2, 7, 3, "protocol tie: later start first");
    expectBox(b, 2, 0, 0, 1, 1, "protocol tie: earlier start last");
  }
  // Constant, NaN and +inf maps: zeros, no component; the protocol reports one (0,0,0,0) box.
  for (float v : {3.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> m(12, v);
    m[5] = std::isfinite(v) ? v : 1.0f;
    for (bool proto : {false, true}) {
      Out o = run(m, params(1, 3, 4, 7, 5, 0.3, false, proto, 2));
      bool zeros = true;
      for (float f : o.full) zeros = zeros && f == 0.0f;
      EXPECT(zeros, "constant/non-finite map must give zeros");
      EXPECT(o.count[0] == (proto ? 1 : 0), "constant/non-finite count %d", o.count[0]);
      if (proto) expectBox(o, 0, 0, 0, 0, 0, "empty protocol box");
    }
  }
  // All above the threshold (tau = 0, strictly positive map): one box covering the image.
  {
    std::vector<float> m = {1.0f, 2.0f, 3.0f, 4.0f};
    Out o = run(m, params(1, 2, 2, 5, 6, 0.0, false, false, 1));
    // the minimum pixel normalises to 0 and is not > 0, but bilinear spreads it: corner (0,0) is exactly 0
    EXPECT(o.mask[0] == 0 && o.count[0] == 1, "tau=0 mask[0]=%d count=%d", o.mask[0], o.count[0]);
  }
  // Output smaller than the input and 1x1 maps.
  {
    std::vector<float> m(7 * 9);
    for (size_t i = 0; i < m.size(); ++i) m[i] = float((i * 37) % 11);
    Out o = run(m, params(1, 7, 9, 3, 2, 0.4, false, false, 4));
    for (float f : o.full) EXPECT(f >= 0.0f && f <= 1.0f, "full out of range %g", f);
    Out one = run({5.0f}, params(1, 1, 1, 1, 1, 0.5, false, true, 1));
    EXPECT(one.full[0] == 0.0f && one.count[0] == 1, "1x1 map");
  }
  // -0.0 in a pass-through map (normalize=false; torch.relu(-0.0) is -0.0): it never reaches `full` as -0.0,
  // so it cannot win the bit-pattern max (0x80000000 > 0x3f800000) and make every positive pixel foreground.
  {
    // 4x4 identity: three pixels 0.9, 0.2, 0.6; the rest -0.0. tau 0.5 -> mask = {0.9, 0.6}.
    std::vector<float> m(16, -0.0f);
    m[1] = 0.9f; m[6] = 0.2f; m[15] = 0.6f;
    for (bool q : {false, true}) {
      fcam::CamPostprocessParams p = params(1, 4, 4, 4, 4, 0.5, q, false, 4);
      p.normalize = false;
      Out o = run(m, p);
      for (size_t i = 0; i < o.full.size(); ++i) {
        EXPECT(!std::signbit(o.full[i]), "-0.0 reached full[%zu]", i);
      }
      EXPECT(o.mask[1] == 1 && o.mask[15] == 1 && o.mask[6] == 0 && o.mask[0] == 0,
             "-0.0 map mask (q=%d): %d %d %d %d", int(q), o.mask[1], o.mask[15], o.mask[6], o.mask[0]);
      EXPECT(o.count[0] == 2, "-0.0 map count %d (q=%d)", o.count[0], int(q));
      // an all -0.0 map is an empty map, upsampled too (products of -0.0 stay -0.0 without the clamp)
      std::vector<float> z(16, -0.0f);
      fcam::CamPostprocessParams pz = params(1, 4, 4, 9, 7, 0.0, q, false, 1);
      pz.normalize = false;
      Out oz = run(z, pz);
      bool plus_zero = true;
      for (float f : oz.full) plus_zero = plus_zero && f == 0.0f && !std::signbit(f);
      EXPECT(plus_zero && oz.count[0] == 0, "all -0.0 map: full must be +0.0 everywhere, count %d", oz.count[0]);
    }
  }
  // int32 mask output (the ONNX node / TensorRT plugin contract): same 0/1 values as the uint8 mask.
  {
    std::vector<float> m(2 * 5 * 6);
    for (size_t i = 0; i < m.size(); ++i) m[i] = float((i * 29) % 13) - 4.0f;
    for (bool proto : {false, true}) {
      fcam::CamPostprocessParams p = params(2, 5, 6, 11, 9, 0.45, proto, proto, 3);
      Out ref = run(m, p);
      p.mask_type = fcam::MaskType::kInt32;
      std::vector<float> full(ref.full.size());
      std::vector<int32_t> mask32(ref.mask.size(), 7), boxes(ref.boxes.size()), count(2);
      EXPECT(fcam::camPostprocessCpu(m.data(), full.data(), mask32.data(), boxes.data(), count.data(), p, 2) ==
             fcam::Status::kOk, "int32 mask launch");
      bool same = full == ref.full && boxes == ref.boxes && count == ref.count;
      for (size_t i = 0; i < mask32.size(); ++i) same = same && mask32[i] == int32_t(ref.mask[i]);
      EXPECT(same, "int32 mask output differs from the uint8 one (proto=%d)", int(proto));
    }
  }
  // CUDA workspace size and checks (host arithmetic, no GPU): sub-buffers of 4 bytes per input pixel and
  // 32 per output pixel (+1 with an int32 mask), each rounded up to 256 bytes; 8-byte alignment required.
  {
    auto up = [](size_t v) { return (v + 255) / 256 * 256; };
    fcam::CamPostprocessParams p = params(3, 28, 28, 224, 224, 0.5, false, false, 4);
    const size_t in_px = 3 * 28 * 28, out_px = 3 * 224 * 224;
    const size_t want = up(4 * in_px) + 6 * up(4 * out_px) + up(8 * out_px);
    EXPECT(fcam::camPostprocessCudaWorkspaceSize(p) == want, "workspace %zu, want %zu",
           fcam::camPostprocessCudaWorkspaceSize(p), want);
    fcam::CamPostprocessParams p32 = p;
    p32.mask_type = fcam::MaskType::kInt32;
    EXPECT(fcam::camPostprocessCudaWorkspaceSize(p32) == want + up(out_px), "int32-mask workspace %zu",
           fcam::camPostprocessCudaWorkspaceSize(p32));
    std::vector<uint64_t> buf(want / 8 + 2);
    char* base = reinterpret_cast<char*>(buf.data());
    EXPECT(fcam::validateCudaWorkspace(p, base, want) == fcam::Status::kOk, "aligned workspace rejected");
    EXPECT(fcam::validateCudaWorkspace(p, base + 4, want) == fcam::Status::kBadWorkspace,
           "4-byte aligned workspace accepted (the 64-bit keys need 8)");
    EXPECT(fcam::validateCudaWorkspace(p, base, want - 1) == fcam::Status::kBadWorkspace, "short workspace accepted");
    EXPECT(fcam::validateCudaWorkspace(p, nullptr, want) == fcam::Status::kBadWorkspace, "null workspace accepted");
    EXPECT(fcam::validateCudaWorkspace(p32, base, want) == fcam::Status::kBadWorkspace,
           "int32-mask params accepted a uint8-mask-sized workspace");
    fcam::CamPostprocessParams p0 = p;
    p0.n = 0;
    EXPECT(fcam::validateCudaWorkspace(p0, nullptr, 0) == fcam::Status::kOk, "n=0 needs no workspace");
    fcam::CamPostprocessParams bad = p;
    bad.max_boxes = (int64_t(1) << 24) + 1;
    EXPECT(fcam::camPostprocessCudaWorkspaceSize(bad) == 0 &&
           fcam::validateCudaWorkspace(bad, base, want) == fcam::Status::kInvalidArgument, "K > 2^24 accepted");
    fcam::CamPostprocessParams badtype = p;
    badtype.mask_type = static_cast<fcam::MaskType>(7);
    EXPECT(fcam::validateParams(badtype) == fcam::Status::kInvalidArgument, "unknown mask type accepted");
  }
  // The per-map-size launcher writes uint8 masks only: an int32 mask type is refused, not misread.
  {
    std::vector<float> m(2 * 3 * 3, 1.0f), f0(4), f1(6);
    std::vector<uint8_t> m0(4), m1(6);
    std::vector<int32_t> boxes(2 * 4), count(2);
    const int64_t sizes[4] = {2, 2, 2, 3};
    float* fulls[2] = {f0.data(), f1.data()};
    uint8_t* masks[2] = {m0.data(), m1.data()};
    fcam::CamPostprocessParams p = params(2, 3, 3, 1, 1, 0.5, false, false, 1);
    EXPECT(fcam::camPostprocessCpuSized(m.data(), sizes, fulls, masks, boxes.data(), count.data(), p, 1) ==
           fcam::Status::kOk, "sized launcher, uint8 masks");
    p.mask_type = fcam::MaskType::kInt32;
    EXPECT(fcam::camPostprocessCpuSized(m.data(), sizes, fulls, masks, boxes.data(), count.data(), p, 1) ==
           fcam::Status::kInvalidArgument, "sized launcher accepted an int32 mask type");
  }
  // n = 0 and invalid params.
  {
    fcam::CamPostprocessParams p = params(0, 4, 4, 4, 4, 0.5, false, false, 1);
    EXPECT(fcam::camPostprocessCpu(nullptr, nullptr, nullptr, nullptr, nullptr, p, 1) == fcam::Status::kOk, "n=0");
    for (auto bad : {params(1, 0, 4, 4, 4, 0.5, false, false, 1), params(1, 4, 4, 4, 4, 1.5, false, false, 1),
                     params(1, 4, 4, 4, 4, 0.5, false, false, 0), params(1, 4, 4, 1 << 16, 1 << 16, 0.5, false, false, 1)}) {
      EXPECT(fcam::validateParams(bad) == fcam::Status::kInvalidArgument, "invalid params accepted");
    }
  }
}

template <typename T>
bool readVec(std::FILE* f, std::vector<T>& v, size_t n) {
  v.resize(n);
  return n == 0 || std::fread(v.data(), sizeof(T), n, f) == n;
}

int fileCases(const char* path) {
  std::FILE* f = std::fopen(path, "rb");
  if (!f) { std::fprintf(stderr, "cannot open %s\n", path); return 2; }
  char magic[8];
  int64_t ncases = 0;
  if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, "FCAMCASE", 8) != 0 ||
      std::fread(&ncases, sizeof(ncases), 1, f) != 1) {
    std::fprintf(stderr, "%s: not an FCAMCASE file\n", path);
    std::fclose(f);
    return 2;
  }
  for (int64_t c = 0; c < ncases; ++c) {
    int64_t hdr[7];
    double tau;
    if (std::fread(hdr, sizeof(int64_t), 6, f) != 6 || std::fread(&tau, sizeof(double), 1, f) != 1 ||
        std::fread(&hdr[6], sizeof(int64_t), 1, f) != 1) {
      std::fprintf(stderr, "truncated header in case %lld\n", static_cast<long long>(c));
      std::fclose(f);
      return 2;
    }
    fcam::CamPostprocessParams p = params(hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], tau, hdr[6] & 1, hdr[6] & 2, hdr[5]);
    p.normalize = (hdr[6] & 4) != 0;
    const size_t in_px = size_t(p.n * p.in_h * p.in_w), out_px = size_t(p.n * p.out_h * p.out_w);
    std::vector<float> maps, full;
    std::vector<uint8_t> mask;
    std::vector<int32_t> boxes, count;
    if (!readVec(f, maps, in_px) || !readVec(f, full, out_px) || !readVec(f, mask, out_px) ||
        !readVec(f, boxes, size_t(p.n * p.max_boxes * 4)) || !readVec(f, count, size_t(p.n))) {
      std::fprintf(stderr, "truncated data in case %lld\n", static_cast<long long>(c));
      std::fclose(f);
      return 2;
    }
    Out o = run(maps, p, 1 + int(c % 3));
    // bit for bit (the spec's float operation order; -0.0 vs +0.0 counts as a difference)
    const bool same_bits = out_px == 0 || std::memcmp(o.full.data(), full.data(), out_px * sizeof(float)) == 0;
    double maxdiff = 0.0;
    for (size_t i = 0; i < out_px; ++i) maxdiff = std::fmax(maxdiff, std::fabs(double(o.full[i]) - full[i]));
    EXPECT(same_bits, "case %lld: full differs (max |diff| %g, or a signed zero)", static_cast<long long>(c), maxdiff);
    EXPECT(o.mask == mask, "case %lld: mask differs", static_cast<long long>(c));
    EXPECT(o.boxes == boxes, "case %lld: boxes differ", static_cast<long long>(c));
    EXPECT(o.count == count, "case %lld: count differs", static_cast<long long>(c));
  }
  std::fclose(f);
  std::printf("fcam_launcher_test: %lld file cases\n", static_cast<long long>(ncases));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  goldenCases();
  int rc = 0;
  if (argc > 1) rc = fileCases(argv[1]);
  if (fcam_test::g_failures) {
    std::fprintf(stderr, "fcam_launcher_test: %d failure(s)\n", fcam_test::g_failures);
    return 1;
  }
  std::printf("fcam_launcher_test: all checks passed\n");
  return rc;
}
