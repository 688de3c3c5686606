// Pillow's bilinear resample of 8-bit images (the algorithm of Pillow's libImaging/Resample.c, written here from
// its description): a separable triangle filter whose support grows with the downscale factor (antialiasing),
// coefficients normalised per output pixel and rounded to 22-bit fixed point, one pass per axis with the
// intermediate image rounded to 8 bits. Pass order as in Pillow 13.0: the vertical pass runs first when the height
// shrinks by more than twice as many pixels as the width ((h - oh) > 0 and (h - oh) > 2 (w - ow)), otherwise the
// horizontal pass runs first, on the source rows the vertical pass will read. Pillow <= 12 always ran horizontal
// first. Reads any ImageView layout directly (no conversion copy); gray images are resampled once and replicated,
// which gives the same bytes as resampling the three equal channels of PIL's convert("RGB").
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "internal.hpp"

namespace fcam {
namespace detail {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // (first input index, tap count) per output index
  std::vector<std::int32_t> k;  // ksize fixed-point weights per output index
};

Coeffs precompute(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;  // bilinear: support 1
  const double inv_filterscale = 1.0 / filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(static_cast<size_t>(c.ksize));
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int taps = hi - lo;
    double total = 0.0;
    std::fill(w.begin(), w.end(), 0.0);
    for (int t = 0; t < taps; ++t) {
      double d = (t + lo - center + 0.5) * inv_filterscale;
      if (d < 0.0) d = -d;
      w[t] = d < 1.0 ? 1.0 - d : 0.0;
      total += w[t];
    }
    if (total != 0.0)
      for (int t = 0; t < taps; ++t) w[t] /= total;
    for (int t = 0; t < c.ksize; ++t) {
      const double v = w[t] * (1 << kPrecisionBits);
      c.k[static_cast<size_t>(o) * c.ksize + t] = static_cast<std::int32_t>(w[t] < 0 ? v - 0.5 : v + 0.5);
    }
    c.bounds[static_cast<size_t>(o) * 2] = lo;
    c.bounds[static_cast<size_t>(o) * 2 + 1] = taps;
  }
  return c;
}

inline std::uint8_t clip8(std::int32_t acc) {
  const std::int32_t v = acc >> kPrecisionBits;
  return static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// A plane of interleaved 8-bit pixels: `nc` channels are read at byte offsets `off` of each pixel.
struct Src {
  const std::uint8_t* data;
  std::size_t row;  // bytes per row
  int px;           // bytes per pixel
  int nc;           // channels computed (1 for gray, else 3)
  int off[3];       // byte offset of computed channel c inside a pixel
};

// Destination: `nc` computed channels, written to `px`-byte pixels; a gray result is replicated to 3 bytes when
// `replicate` is set (the final RGB output).
struct Dst {
  std::uint8_t* data;
  std::size_t row;
  int px;
  int nc;
  bool replicate;
};

inline void store(const Dst& d, std::uint8_t* p, int c, std::uint8_t v) {
  if (d.replicate) {
    p[0] = p[1] = p[2] = v;
  } else {
    p[c] = v;
  }
}

// Horizontal pass: output rows r = 0..rows-1 read source rows r + row0.
void horizontal(const Src& s, int row0, int rows, const Coeffs& c, const Dst& d, int out_w) {
  for (int r = 0; r < rows; ++r) {
    const std::uint8_t* in = s.data + static_cast<std::size_t>(r + row0) * s.row;
    std::uint8_t* out = d.data + static_cast<std::size_t>(r) * d.row;
    for (int o = 0; o < out_w; ++o) {
      const int lo = c.bounds[static_cast<size_t>(o) * 2], taps = c.bounds[static_cast<size_t>(o) * 2 + 1];
      const std::int32_t* k = c.k.data() + static_cast<size_t>(o) * c.ksize;
      const std::uint8_t* p = in + static_cast<std::size_t>(lo) * s.px;
      for (int ch = 0; ch < s.nc; ++ch) {
        std::int32_t acc = 1 << (kPrecisionBits - 1);
        const std::uint8_t* q = p + s.off[ch];
        for (int t = 0; t < taps; ++t) acc += static_cast<std::int32_t>(q[static_cast<std::size_t>(t) * s.px]) * k[t];
        store(d, out + static_cast<std::size_t>(o) * d.px, ch, clip8(acc));
      }
    }
  }
}

// Vertical pass: output row o reads source rows bounds[o] - row_shift ...; every column 0..width-1.
void vertical(const Src& s, int row_shift, int width, const Coeffs& c, const Dst& d, int out_h) {
  for (int o = 0; o < out_h; ++o) {
    const int lo = c.bounds[static_cast<size_t>(o) * 2] - row_shift, taps = c.bounds[static_cast<size_t>(o) * 2 + 1];
    const std::int32_t* k = c.k.data() + static_cast<size_t>(o) * c.ksize;
    std::uint8_t* out = d.data + static_cast<std::size_t>(o) * d.row;
    const std::uint8_t* base = s.data + static_cast<std::size_t>(lo) * s.row;
    for (int x = 0; x < width; ++x) {
      const std::uint8_t* p = base + static_cast<std::size_t>(x) * s.px;
      for (int ch = 0; ch < s.nc; ++ch) {
        std::int32_t acc = 1 << (kPrecisionBits - 1);
        const std::uint8_t* q = p + s.off[ch];
        for (int t = 0; t < taps; ++t) acc += static_cast<std::int32_t>(q[static_cast<std::size_t>(t) * s.row]) * k[t];
        store(d, out + static_cast<std::size_t>(x) * d.px, ch, clip8(acc));
      }
    }
  }
}

Src source_of(const ImageView& v) {
  Src s{};
  s.data = v.data;
  s.px = bytes_per_pixel(v.format);
  s.row = v.stride ? v.stride : static_cast<std::size_t>(v.width) * s.px;
  s.nc = v.format == PixelFormat::GRAY ? 1 : 3;
  const bool bgr = v.format == PixelFormat::BGR || v.format == PixelFormat::BGRA;
  for (int c = 0; c < 3; ++c) s.off[c] = v.format == PixelFormat::GRAY ? 0 : (bgr ? 2 - c : c);
  return s;
}

}  // namespace

void check_view(const ImageView& image, const std::string& what) {
  if (image.width <= 0 || image.height <= 0)
    throw Error(ErrorKind::Input, what + ": empty image (" + std::to_string(image.width) + "x" +
                                      std::to_string(image.height) + ")");
  if (!image.data)
    throw Error(ErrorKind::Input, what + ": image data pointer is null (or an fcam::Image whose rgb buffer does not "
                                         "hold width * height * 3 bytes)");
  const int bpp = bytes_per_pixel(image.format);
  if (bpp == 0) throw Error(ErrorKind::Input, what + ": unknown PixelFormat value");
  const std::uint64_t pixels = static_cast<std::uint64_t>(image.width) * static_cast<std::uint64_t>(image.height);
  if (pixels > (std::uint64_t(1) << 30))
    throw Error(ErrorKind::Input, what + ": " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                      " is more than 2^30 pixels (the post-processing's limit); downscale it first");
  const std::uint64_t min_stride = static_cast<std::uint64_t>(image.width) * static_cast<std::uint64_t>(bpp);
  if (image.stride != 0 && image.stride < min_stride)
    throw Error(ErrorKind::Input, what + ": stride " + std::to_string(image.stride) + " is smaller than width * " +
                                      std::to_string(bpp) + " = " + std::to_string(min_stride) + " bytes");
}

void resize_into(const ImageView& image, std::uint8_t* out, int out_w, int out_h) {
  const int w = image.width, h = image.height;
  const Src src = source_of(image);
  const Dst final_dst{out, static_cast<std::size_t>(out_w) * 3, 3, src.nc, src.nc == 1};
  const bool need_h = out_w != w, need_v = out_h != h;
  if (!need_h && !need_v) {  // same size: only the channel layout changes
    for (int y = 0; y < h; ++y) {
      const std::uint8_t* in = src.data + static_cast<std::size_t>(y) * src.row;
      std::uint8_t* o = out + static_cast<std::size_t>(y) * out_w * 3;
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) o[x * 3 + c] = in[static_cast<std::size_t>(x) * src.px + src.off[src.nc == 1 ? 0 : c]];
    }
    return;
  }
  const bool vertical_first = (h - out_h) > 0 && (h - out_h) > 2 * (w - out_w);
  std::vector<std::uint8_t> tmp;
  if (!need_h) {
    vertical(src, 0, w, precompute(h, out_h), final_dst, out_h);
  } else if (!need_v) {
    horizontal(src, 0, h, precompute(w, out_w), final_dst, out_w);
  } else if (vertical_first) {
    tmp.resize(static_cast<std::size_t>(out_h) * w * src.nc);
    const Dst mid{tmp.data(), static_cast<std::size_t>(w) * src.nc, src.nc, src.nc, false};
    vertical(src, 0, w, precompute(h, out_h), mid, out_h);
    const Src mid_src{tmp.data(), mid.row, src.nc, src.nc, {0, src.nc == 1 ? 0 : 1, src.nc == 1 ? 0 : 2}};
    horizontal(mid_src, 0, out_h, precompute(w, out_w), final_dst, out_w);
  } else {
    const Coeffs cv = precompute(h, out_h);
    const int first = cv.bounds[0];
    const int last = cv.bounds[static_cast<size_t>(out_h) * 2 - 2] + cv.bounds[static_cast<size_t>(out_h) * 2 - 1];
    const int rows = last - first;
    tmp.resize(static_cast<std::size_t>(rows) * out_w * src.nc);
    const Dst mid{tmp.data(), static_cast<std::size_t>(out_w) * src.nc, src.nc, src.nc, false};
    horizontal(src, first, rows, precompute(w, out_w), mid, out_w);
    const Src mid_src{tmp.data(), mid.row, src.nc, src.nc, {0, src.nc == 1 ? 0 : 1, src.nc == 1 ? 0 : 2}};
    vertical(mid_src, first, out_w, cv, final_dst, out_h);
  }
}

}  // namespace detail

int bytes_per_pixel(PixelFormat format) noexcept {
  switch (format) {
    case PixelFormat::RGB:
    case PixelFormat::BGR: return 3;
    case PixelFormat::RGBA:
    case PixelFormat::BGRA: return 4;
    case PixelFormat::GRAY: return 1;
  }
  return 0;
}

Image resize_bilinear(const ImageView& image, int width, int height) {
  return detail::guarded("fcam::resize_bilinear", [&] {
    detail::check_view(image, "resize_bilinear");
    if (width <= 0 || height <= 0 || static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height) >
                                         (std::uint64_t(1) << 30))
      throw Error(ErrorKind::Input, "resize_bilinear: target size " + std::to_string(width) + "x" +
                                        std::to_string(height) + " must be positive and at most 2^30 pixels");
    Image out;
    out.width = width;
    out.height = height;
    out.rgb.resize(static_cast<std::size_t>(width) * height * 3);
    detail::resize_into(image, out.rgb.data(), width, height);
    return out;
  });
}

}  // namespace fcam
