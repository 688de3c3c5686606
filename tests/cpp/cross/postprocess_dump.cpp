// postprocess_dump IN.bin OUT.bin : run camPostprocessCpuSized (kernels/src/cpu, the launcher the C++ library and
// the Python core call) on the maps of IN.bin and write every output byte to OUT.bin, so builds for two CPU
// architectures (x86-64 natively, aarch64 under qemu-user) can be compared byte for byte by
// tests/cpp/test_aarch64.py.
//   IN.bin:  "FCAMPPD1", int64 n, in_h, in_w, max_boxes, threads, flags (1 normalize, 2 quantize_uint8,
//            4 protocol_boxes), double tau, int64 sizes[2n] (H, W per map), float32 maps[n * in_h * in_w]
//   OUT.bin: per map full[H*W] float32 and mask[H*W] uint8, then boxes[n*K*4] int32, count[n] int32
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "fcam/cam_postprocess.h"

namespace {

template <typename T>
bool read_into(std::FILE* f, T* dst, std::size_t n) {
  return n == 0 || std::fread(dst, sizeof(T), n, f) == n;
}

template <typename T>
bool write_from(std::FILE* f, const T* src, std::size_t n) {
  return n == 0 || std::fwrite(src, sizeof(T), n, f) == n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: postprocess_dump IN.bin OUT.bin\n");
    return 2;
  }
  std::FILE* in = std::fopen(argv[1], "rb");
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  char magic[8];
  int64_t hdr[6];
  double tau = 0.0;
  if (!read_into(in, magic, 8) || std::memcmp(magic, "FCAMPPD1", 8) != 0 || !read_into(in, hdr, 6) ||
      !read_into(in, &tau, 1)) {
    std::fprintf(stderr, "%s: bad header\n", argv[1]);
    return 2;
  }
  fcam::CamPostprocessParams p;
  p.n = hdr[0];
  p.in_h = hdr[1];
  p.in_w = hdr[2];
  p.max_boxes = hdr[3];
  p.out_h = p.out_w = 1;
  p.normalize = (hdr[5] & 1) != 0;
  p.quantize_uint8 = (hdr[5] & 2) != 0;
  p.protocol_boxes = (hdr[5] & 4) != 0;
  p.tau = tau;
  const int threads = static_cast<int>(hdr[4]);
  if (p.n < 1 || p.n > 4096 || p.in_h < 1 || p.in_w < 1 || p.in_h * p.in_w > (1 << 24) || p.max_boxes < 1 ||
      p.max_boxes > 1024) {
    std::fprintf(stderr, "%s: sizes out of range\n", argv[1]);
    return 2;
  }
  std::vector<int64_t> sizes(static_cast<std::size_t>(p.n) * 2);
  std::vector<float> maps(static_cast<std::size_t>(p.n * p.in_h * p.in_w));
  if (!read_into(in, sizes.data(), sizes.size()) || !read_into(in, maps.data(), maps.size())) {
    std::fprintf(stderr, "%s: truncated\n", argv[1]);
    return 2;
  }
  std::fclose(in);
  std::vector<std::vector<float>> full(static_cast<std::size_t>(p.n));
  std::vector<std::vector<uint8_t>> mask(static_cast<std::size_t>(p.n));
  std::vector<float*> fp(static_cast<std::size_t>(p.n));
  std::vector<uint8_t*> mp(static_cast<std::size_t>(p.n));
  for (int64_t m = 0; m < p.n; ++m) {
    const int64_t h = sizes[2 * m], w = sizes[2 * m + 1];
    if (h < 1 || w < 1 || h * w > (1 << 24)) {
      std::fprintf(stderr, "%s: output size of map %lld out of range\n", argv[1], static_cast<long long>(m));
      return 2;
    }
    full[m].assign(static_cast<std::size_t>(h * w), -1.0f);
    mask[m].assign(static_cast<std::size_t>(h * w), 7);
    fp[m] = full[m].data();
    mp[m] = mask[m].data();
  }
  std::vector<int32_t> boxes(static_cast<std::size_t>(p.n * p.max_boxes * 4), 7), count(static_cast<std::size_t>(p.n), 7);
  const fcam::Status st =
      fcam::camPostprocessCpuSized(maps.data(), sizes.data(), fp.data(), mp.data(), boxes.data(), count.data(), p, threads);
  if (st != fcam::Status::kOk) {
    std::fprintf(stderr, "camPostprocessCpuSized: %s\n", fcam::statusString(st));
    return 1;
  }
  std::FILE* out = std::fopen(argv[2], "wb");
  if (!out) {
    std::fprintf(stderr, "cannot open %s\n", argv[2]);
    return 2;
  }
  bool ok = true;
  for (int64_t m = 0; m < p.n; ++m)
    ok = ok && write_from(out, full[m].data(), full[m].size()) && write_from(out, mask[m].data(), mask[m].size());
  ok = ok && write_from(out, boxes.data(), boxes.size()) && write_from(out, count.data(), count.size());
  ok = (std::fclose(out) == 0) && ok;
  if (!ok) {
    std::fprintf(stderr, "cannot write %s\n", argv[2]);
    return 2;
  }
  std::printf("postprocess_dump: %lld maps\n", static_cast<long long>(p.n));
  return 0;
}
