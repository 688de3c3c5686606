// Localizer: preprocessing (PIL-exact bilinear resize), backend dispatch, post-processing to original pixels.
#include "fcam/localizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>

#include "internal.hpp"

namespace fcam {

Error::Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}

std::string version() { return FCAM_LOCALIZER_VERSION; }

bool has_tensorrt() {
#ifdef FCAM_HAVE_TENSORRT
  return true;
#else
  return false;
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// PIL's bilinear resample (Pillow libImaging/Resample.c): separable triangle filter whose support grows with the
// downscale factor (antialiasing), 22-bit fixed-point coefficients, horizontal pass first into an 8-bit image.
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;   // (xmin, count) per output pixel
  std::vector<int32_t> k;    // ksize per output pixel
};

Coeffs precompute(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> pre(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    std::fill(pre.begin(), pre.end(), 0.0);
    for (int x = 0; x < xmax; ++x) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0.0) t = -t;
      const double w = t < 1.0 ? 1.0 - t : 0.0;
      pre[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) pre[x] /= ww;
    for (int x = 0; x < c.ksize; ++x) {
      const double v = pre[x] * (1 << kPrecisionBits);
      c.k[static_cast<size_t>(xx) * c.ksize + x] = static_cast<int32_t>(pre[x] < 0 ? v - 0.5 : v + 0.5);
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t in) {
  const int32_t v = in >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

Image resize_bilinear(const Image& image, int width, int height) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw Error(ErrorKind::Input, "resize_bilinear: image is empty or its buffer does not hold width*height*3 bytes");
  if (width <= 0 || height <= 0) throw Error(ErrorKind::Input, "resize_bilinear: target size must be positive");
  if (width == image.width && height == image.height) return image;
  const bool need_h = width != image.width;
  const bool need_v = height != image.height;
  const Coeffs ch = precompute(image.width, width);
  Coeffs cv = precompute(image.height, height);
  const Image* src = &image;
  Image temp;
  if (need_h) {
    const int y_first = cv.bounds[0];
    const int y_last = cv.bounds[height * 2 - 2] + cv.bounds[height * 2 - 1];
    for (int i = 0; i < height; ++i) cv.bounds[i * 2] -= y_first;
    temp.width = width;
    temp.height = y_last - y_first;
    temp.rgb.resize(static_cast<size_t>(temp.width) * temp.height * 3);
    for (int yy = 0; yy < temp.height; ++yy) {
      const uint8_t* row = image.rgb.data() + static_cast<size_t>(yy + y_first) * image.width * 3;
      uint8_t* out = temp.rgb.data() + static_cast<size_t>(yy) * width * 3;
      for (int xx = 0; xx < width; ++xx) {
        const int xmin = ch.bounds[xx * 2], xmax = ch.bounds[xx * 2 + 1];
        const int32_t* k = ch.k.data() + static_cast<size_t>(xx) * ch.ksize;
        for (int b = 0; b < 3; ++b) {
          int32_t ss = 1 << (kPrecisionBits - 1);
          for (int x = 0; x < xmax; ++x) ss += static_cast<int32_t>(row[(x + xmin) * 3 + b]) * k[x];
          out[xx * 3 + b] = clip8(ss);
        }
      }
    }
    src = &temp;
  }
  if (!need_v) return temp;
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int yy = 0; yy < height; ++yy) {
    const int ymin = cv.bounds[yy * 2], ymax = cv.bounds[yy * 2 + 1];
    const int32_t* k = cv.k.data() + static_cast<size_t>(yy) * cv.ksize;
    for (int xx = 0; xx < width; ++xx)
      for (int b = 0; b < 3; ++b) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < ymax; ++y)
          ss += static_cast<int32_t>(src->rgb[(static_cast<size_t>(y + ymin) * width + xx) * 3 + b]) * k[y];
        out.rgb[(static_cast<size_t>(yy) * width + xx) * 3 + b] = clip8(ss);
      }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Post-processing (fcam_deploy.runtime.localizer / fcam_deploy.ops reference semantics).
namespace {

struct Taps {
  std::vector<int> i0, i1;
  std::vector<float> l0, l1;
};

// torch bilinear, align_corners=False, float32 arithmetic (fcam_deploy.ops._reference.axis_taps).
Taps axis_taps(int in_size, int out_size) {
  Taps t;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  t.i0.resize(out_size);
  t.i1.resize(out_size);
  t.l0.resize(out_size);
  t.l1.resize(out_size);
  for (int d = 0; d < out_size; ++d) {
    float real = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
    if (real < 0.f) real = 0.f;
    const int i0 = std::min(static_cast<int>(real), in_size - 1);
    t.i0[d] = i0;
    t.i1[d] = i0 + (i0 < in_size - 1 ? 1 : 0);
    t.l1[d] = real - static_cast<float>(i0);
    t.l0[d] = 1.f - t.l1[d];
  }
  return t;
}

std::vector<float> upsample(const float* v, int h, int w, int out_h, int out_w) {
  const Taps ty = axis_taps(h, out_h), tx = axis_taps(w, out_w);
  std::vector<float> r(static_cast<size_t>(out_h) * out_w);
  for (int y = 0; y < out_h; ++y) {
    const float* r0 = v + static_cast<size_t>(ty.i0[y]) * w;
    const float* r1 = v + static_cast<size_t>(ty.i1[y]) * w;
    for (int x = 0; x < out_w; ++x) {
      const float top = tx.l0[x] * r0[tx.i0[x]] + tx.l1[x] * r0[tx.i1[x]];
      const float bot = tx.l0[x] * r1[tx.i0[x]] + tx.l1[x] * r1[tx.i1[x]];
      const float val = ty.l0[y] * top + ty.l1[y] * bot;
      r[static_cast<size_t>(y) * out_w + x] = std::min(1.f, std::max(0.f, val));
    }
  }
  return r;
}

// Boxes of (map > tau * max) 8-connected components: pixel count desc, then earliest raster start.
std::vector<Box> boxes_from_map(const float* map, int h, int w, float tau, int max_boxes) {
  const size_t n = static_cast<size_t>(h) * w;
  bool finite = true;
  float mx = 0.f;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(map[i])) finite = false;
  }
  std::vector<float> m(n, 0.f);
  if (finite)
    for (size_t i = 0; i < n; ++i) m[i] = std::min(1.f, std::max(0.f, map[i]));
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, m[i]);
  const float thr = tau * mx;
  std::vector<int> label(n, -1);
  struct Comp {
    long count = 0;
    size_t start = 0;
    int x0, y0, x1, y1;
  };
  std::vector<Comp> comps;
  std::vector<size_t> stack;
  for (size_t s = 0; s < n; ++s) {
    if (!(m[s] > thr) || label[s] >= 0) continue;
    const int id = static_cast<int>(comps.size());
    Comp c;
    c.start = s;
    c.x0 = w;
    c.x1 = -1;
    c.y0 = static_cast<int>(s / w);
    c.y1 = -1;
    label[s] = id;
    stack.assign(1, s);
    while (!stack.empty()) {
      const size_t p = stack.back();
      stack.pop_back();
      const int py = static_cast<int>(p / w), px = static_cast<int>(p % w);
      ++c.count;
      c.x0 = std::min(c.x0, px);
      c.x1 = std::max(c.x1, px);
      c.y1 = std::max(c.y1, py);
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int qy = py + dy, qx = px + dx;
          if (qy < 0 || qy >= h || qx < 0 || qx >= w) continue;
          const size_t q = static_cast<size_t>(qy) * w + qx;
          if (label[q] < 0 && m[q] > thr) {
            label[q] = id;
            stack.push_back(q);
          }
        }
    }
    comps.push_back(c);
  }
  std::vector<size_t> order(comps.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (comps[a].count != comps[b].count) return comps[a].count > comps[b].count;
    return comps[a].start < comps[b].start;
  });
  std::vector<Box> out;
  for (size_t k = 0; k < order.size() && static_cast<int>(k) < max_boxes; ++k) {
    const Comp& c = comps[order[k]];
    out.push_back(Box{c.x0, c.y0, c.x1, c.y1});
  }
  return out;
}

Box scale_box(const Box& b, int hi, int wi, int ho, int wo) {
  const double sx = static_cast<double>(wo) / wi, sy = static_cast<double>(ho) / hi;
  Box r;
  r.x0 = std::min(wo - 1, static_cast<int>(std::floor(b.x0 * sx)));
  r.y0 = std::min(ho - 1, static_cast<int>(std::floor(b.y0 * sy)));
  r.x1 = std::max(r.x0, std::min(wo - 1, static_cast<int>(std::ceil((b.x1 + 1) * sx)) - 1));
  r.y1 = std::max(r.y0, std::min(ho - 1, static_cast<int>(std::ceil((b.y1 + 1) * sy)) - 1));
  return r;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                    [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}

}  // namespace

struct Localizer::Impl {
  std::unique_ptr<detail::Runner> runner;
  int max_boxes = 8;
  mutable std::mutex mutex;  // only used when the runner is not thread-safe

  Prediction post(const detail::RawOutputs& raw, int i, int orig_h, int orig_w) const {
    const Metadata& meta = runner->metadata();
    const int k = raw.num_classes, h = raw.height, w = raw.width;
    Prediction p;
    p.logits.assign(raw.logits.begin() + static_cast<long>(i) * k, raw.logits.begin() + static_cast<long>(i + 1) * k);
    p.class_index = static_cast<int>(raw.pred_class[i]);
    p.class_name = (p.class_index >= 0 && p.class_index < static_cast<int>(meta.class_names.size()))
                       ? meta.class_names[p.class_index]
                       : std::to_string(p.class_index);
    double mx = -INFINITY;
    for (float v : p.logits) mx = std::max(mx, static_cast<double>(v));
    double sum = 0.0;
    for (float v : p.logits) sum += std::exp(static_cast<double>(v) - mx);
    p.score = (p.class_index >= 0 && p.class_index < k)
                  ? std::exp(static_cast<double>(p.logits[p.class_index]) - mx) / sum
                  : 0.0;
    const float* map_in = raw.map.data() + static_cast<size_t>(i) * h * w;
    std::vector<Box> boxes_in;
    if (raw.has_boxes) {
      const int count = raw.box_count[i];
      for (int b = 0; b < count && b < raw.max_boxes; ++b) {
        const int32_t* row = raw.boxes.data() + (static_cast<size_t>(i) * raw.max_boxes + b) * 4;
        boxes_in.push_back(Box{row[0], row[1], row[2], row[3]});
      }
    } else {
      boxes_in = boxes_from_map(map_in, h, w, meta.tau, max_boxes);
    }
    p.height = orig_h;
    p.width = orig_w;
    if (orig_h == h && orig_w == w)
      p.map.assign(map_in, map_in + static_cast<size_t>(h) * w);
    else
      p.map = upsample(map_in, h, w, orig_h, orig_w);
    float in_max = -INFINITY;
    for (size_t j = 0; j < static_cast<size_t>(h) * w; ++j) in_max = std::max(in_max, map_in[j]);
    const float thr = meta.tau * in_max;
    p.mask.resize(p.map.size());
    for (size_t j = 0; j < p.map.size(); ++j) p.mask[j] = p.map[j] > thr ? 1 : 0;
    for (const Box& b : boxes_in) p.boxes.push_back(scale_box(b, h, w, orig_h, orig_w));
    p.tau = meta.tau;
    return p;
  }
};

Localizer::Localizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Localizer::Localizer(Localizer&&) noexcept = default;
Localizer& Localizer::operator=(Localizer&&) noexcept = default;
Localizer::~Localizer() = default;

Localizer Localizer::load(const std::string& model_path, const LocalizerOptions& options) {
  if (options.max_boxes < 1) throw Error(ErrorKind::Input, "max_boxes must be >= 1");
  Backend backend = options.backend;
  const bool is_onnx = ends_with(model_path, ".onnx");
  const bool is_plan = ends_with(model_path, ".plan") || ends_with(model_path, ".engine") || ends_with(model_path, ".trt");
  if (backend == Backend::Auto) {
    if (is_onnx) backend = Backend::OnnxRuntime;
    else if (is_plan) backend = Backend::TensorRT;
    else
      throw Error(ErrorKind::ModelFormat, model_path + ": unknown model kind (expected a .onnx file from `fcam export` "
                                                       "or a .plan/.engine/.trt from `fcam build-engine`)");
  }
  if (backend == Backend::OnnxRuntime && is_plan)
    throw Error(ErrorKind::ModelFormat, model_path + " is a TensorRT plan; ONNX Runtime takes .onnx models");
  if (backend == Backend::TensorRT && is_onnx)
    throw Error(ErrorKind::ModelFormat,
                model_path + " is an ONNX file; build a plan with `fcam build-engine` for the TensorRT backend");
  auto impl = std::make_unique<Impl>();
  impl->max_boxes = options.max_boxes;
  impl->runner = backend == Backend::OnnxRuntime ? detail::make_ort_runner(model_path, options)
                                                 : detail::make_trt_runner(model_path, options);
  return Localizer(std::move(impl));
}

Prediction Localizer::predict(const Image& image) const { return predict(std::vector<Image>{image}).at(0); }

std::vector<Prediction> Localizer::predict(const std::vector<Image>& images) const {
  const Metadata& meta = impl_->runner->metadata();
  const int h = meta.input_height, w = meta.input_width;
  const size_t per = static_cast<size_t>(h) * w * 3;
  std::vector<Prediction> out;
  const size_t batch = meta.dynamic_batch ? 16 : 1;
  for (size_t start = 0; start < images.size(); start += batch) {
    const size_t n = std::min(batch, images.size() - start);
    std::vector<uint8_t> buf(per * n);
    for (size_t j = 0; j < n; ++j) {
      const Image& im = images[start + j];
      if (im.width <= 0 || im.height <= 0)
        throw Error(ErrorKind::Input, "image " + std::to_string(start + j) + ": empty image");
      if (im.rgb.size() != static_cast<size_t>(im.width) * im.height * 3)
        throw Error(ErrorKind::Input, "image " + std::to_string(start + j) +
                                          ": rgb buffer must hold width*height*3 bytes (8-bit RGB, H x W x 3)");
      const Image resized = resize_bilinear(im, w, h);
      std::memcpy(buf.data() + j * per, resized.rgb.data(), per);
    }
    detail::RawOutputs raw;
    if (impl_->runner->thread_safe()) {
      raw = impl_->runner->run(buf.data(), static_cast<int>(n));
    } else {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      raw = impl_->runner->run(buf.data(), static_cast<int>(n));
    }
    for (size_t j = 0; j < n; ++j)
      out.push_back(impl_->post(raw, static_cast<int>(j), images[start + j].height, images[start + j].width));
  }
  return out;
}

const Metadata& Localizer::metadata() const noexcept { return impl_->runner->metadata(); }
std::string Localizer::backend() const { return impl_->runner->backend(); }
std::vector<std::string> Localizer::providers() const { return impl_->runner->providers(); }
bool Localizer::fell_back_to_cpu() const noexcept { return impl_->runner->fell_back_to_cpu(); }

}  // namespace fcam
