// Localizer: preprocessing (Pillow bilinear resize from an image view), backend dispatch, and the post-processing at
// each image's original size through the CPU launcher of fcam::cam_postprocess (kernels/src/cpu,
// camPostprocessCpuSized) — the very function the Python runtime calls (fcam_deploy._native_cpu), so the map, mask
// and boxes are the same bits.
#include "fcam/localizer.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <mutex>

#include "fcam/cam_postprocess.h"
#include "internal.hpp"

namespace fcam {

Error::Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}

const char* error_kind_name(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::ModelFormat: return "ModelFormatError";
    case ErrorKind::BackendUnavailable: return "BackendUnavailableError";
    case ErrorKind::Input: return "InputError";
    case ErrorKind::Image: return "ImageError";
    case ErrorKind::Runtime: return "RuntimeError";
    case ErrorKind::OutOfMemory: return "OutOfMemoryError";
    case ErrorKind::Internal: return "InternalError";
  }
  return "InternalError";
}

std::string version() { return FCAM_LOCALIZER_VERSION_STRING; }

bool has_tensorrt() noexcept {
#ifdef FCAM_HAVE_TENSORRT
  return true;
#else
  return false;
#endif
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                    [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}

// NumPy's pairwise summation of float64 (numpy/_core/src/umath/loops_utils.h: below 8 elements a plain loop, up to
// 128 eight interleaved partial sums combined pairwise, above that split in halves at a multiple of 8), so the
// softmax denominator is the one np.sum computes in the Python runtime.
double pairwise_sum(const double* a, std::size_t n) {
  if (n < 8) {
    double r = 0.0;  // NumPy starts from -0.0 for a sum of no terms; n >= 1 here, where 0.0 + x == x
    for (std::size_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

struct Localizer::Impl {
  std::unique_ptr<detail::Runner> runner;
  int max_boxes = 8;
  int batch = 16;
  int threads = 1;
  mutable std::mutex mutex;  // only used when the runner is not thread-safe

  detail::RawOutputs run(const std::uint8_t* batch_data, int n) const {
    if (runner->thread_safe()) return runner->run(batch_data, n);
    std::lock_guard<std::mutex> lock(mutex);
    return runner->run(batch_data, n);
  }

  // Class, score (softmax in double as the Python runtime: exp(z - max) / sum), original-size map, mask and boxes of
  // the chunk's images [first, first + n), written into out[first ...].
  void post(const detail::RawOutputs& raw, const ImageView* views, int n, const PredictOptions& want,
            Prediction* out) const {
    const Metadata& meta = runner->metadata();
    const int k = raw.num_classes, h = raw.height, w = raw.width;
    const std::size_t per_map = static_cast<std::size_t>(h) * w;
    for (int i = 0; i < n; ++i) {
      const float* m = raw.map.data() + per_map * i;
      for (std::size_t j = 0; j < per_map; ++j)
        if (!std::isfinite(m[j]))
          throw Error(ErrorKind::Runtime, "the graph's map for image " + std::to_string(i) +
                                              " contains NaN or inf (a broken model or weights; the Python runtime "
                                              "refuses such maps too)");
    }
    std::vector<double> z(static_cast<std::size_t>(k));
    std::vector<std::int64_t> sizes(static_cast<std::size_t>(n) * 2);
    std::vector<float*> fulls(static_cast<std::size_t>(n));
    std::vector<std::uint8_t*> masks(static_cast<std::size_t>(n));
    std::vector<std::vector<float>> tmp_full;  // outputs the caller did not ask for still need a buffer
    std::vector<std::vector<std::uint8_t>> tmp_mask;
    tmp_full.reserve(want.map ? 0 : static_cast<std::size_t>(n));
    tmp_mask.reserve(want.mask ? 0 : static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      Prediction& p = out[i];
      p.logits.assign(raw.logits.begin() + static_cast<std::ptrdiff_t>(i) * k,
                      raw.logits.begin() + static_cast<std::ptrdiff_t>(i + 1) * k);
      const std::int64_t cls = raw.pred_class[i];
      const bool valid = cls >= 0 && cls < k && cls < static_cast<std::int64_t>(meta.class_names.size());
      p.class_index = valid ? static_cast<int>(cls) : -1;
      p.class_name = valid ? meta.class_names[static_cast<std::size_t>(cls)] : std::to_string(cls);
      float mx = -INFINITY;
      for (float v : p.logits) mx = std::max(mx, v);
      for (int c = 0; c < k; ++c) z[c] = std::exp(static_cast<double>(p.logits[c]) - static_cast<double>(mx));
      const double sum = pairwise_sum(z.data(), z.size());
      p.score = valid ? z[static_cast<std::size_t>(cls)] / sum : std::nan("");
      p.height = views[i].height;
      p.width = views[i].width;
      p.tau = meta.tau;
      sizes[2 * i] = p.height;
      sizes[2 * i + 1] = p.width;
      const std::size_t px = static_cast<std::size_t>(p.height) * p.width;
      if (want.map) {
        p.map.resize(px);
        fulls[i] = p.map.data();
      } else {
        tmp_full.emplace_back(px);
        fulls[i] = tmp_full.back().data();
      }
      if (want.mask) {
        p.mask.resize(px);
        masks[i] = p.mask.data();
      } else {
        tmp_mask.emplace_back(px);
        masks[i] = tmp_mask.back().data();
      }
    }
    CamPostprocessParams prm;
    prm.n = n;
    prm.in_h = h;
    prm.in_w = w;
    prm.out_h = 1;  // per-map sizes come from `sizes`
    prm.out_w = 1;
    prm.tau = meta.tau;
    prm.quantize_uint8 = false;
    prm.protocol_boxes = false;
    prm.normalize = false;  // the graph's map already is in [0, 1]: clamp only
    prm.max_boxes = max_boxes;
    std::vector<std::int32_t> boxes(static_cast<std::size_t>(n) * max_boxes * 4);
    std::vector<std::int32_t> count(static_cast<std::size_t>(n));
    const Status st = camPostprocessCpuSized(raw.map.data(), sizes.data(), fulls.data(), masks.data(), boxes.data(),
                                             count.data(), prm, threads);
    if (st == Status::kOutOfMemory) throw std::bad_alloc();
    if (st != Status::kOk)
      throw Error(ErrorKind::Internal, std::string("cam_postprocess rejected its arguments: ") + statusString(st));
    for (int i = 0; i < n; ++i) {
      const std::int32_t* b = boxes.data() + static_cast<std::size_t>(i) * max_boxes * 4;
      out[i].boxes.clear();
      for (int j = 0; j < count[i]; ++j) out[i].boxes.push_back(Box{b[j * 4], b[j * 4 + 1], b[j * 4 + 2], b[j * 4 + 3]});
    }
  }

  std::vector<Prediction> predict(const ImageView* views, std::size_t count, const PredictOptions& want) const {
    const Metadata& meta = runner->metadata();
    const int h = meta.input_height, w = meta.input_width;
    for (std::size_t i = 0; i < count; ++i) detail::check_view(views[i], "image " + std::to_string(i));
    const std::size_t per = static_cast<std::size_t>(h) * w * 3;
    std::vector<Prediction> out(count);
    std::vector<std::uint8_t> buf;
    for (std::size_t start = 0; start < count; start += static_cast<std::size_t>(batch)) {
      const int n = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(batch), count - start));
      const ImageView& first = views[start];
      const std::uint8_t* input;
      const std::size_t packed = static_cast<std::size_t>(first.width) * 3;
      if (n == 1 && first.format == PixelFormat::RGB && first.width == w && first.height == h &&
          (first.stride == 0 || first.stride == packed)) {
        input = first.data;  // already what the graph takes: handed to the engine as is
      } else {
        buf.resize(per * n);
        for (int j = 0; j < n; ++j) detail::resize_into(views[start + j], buf.data() + per * j, w, h);
        input = buf.data();
      }
      const detail::RawOutputs raw = run(input, n);
      post(raw, views + start, n, want, out.data() + start);
    }
    return out;
  }
};

Localizer::Localizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Localizer::Localizer(Localizer&&) noexcept = default;
Localizer& Localizer::operator=(Localizer&&) noexcept = default;
Localizer::~Localizer() = default;

namespace {

std::unique_ptr<Localizer::Impl> open(const detail::ModelSource& src, Backend backend, const LocalizerOptions& options) {
  if (options.max_boxes < 1 || options.max_boxes > (1 << 24))
    throw Error(ErrorKind::Input, "max_boxes must be in [1, 2^24], got " + std::to_string(options.max_boxes));
  if (options.batch_size < 1) throw Error(ErrorKind::Input, "batch_size must be >= 1, got " + std::to_string(options.batch_size));
  if (options.threads < 0)
    throw Error(ErrorKind::Input, "threads must be >= 0 (0 = the cores this process may use), got " +
                                      std::to_string(options.threads));
  detail::parse_device(options.device);
  auto impl = std::make_unique<Localizer::Impl>();
  impl->max_boxes = options.max_boxes;
  impl->threads = options.threads > 0 ? options.threads : detail::available_cores();
  impl->runner = backend == Backend::OnnxRuntime ? detail::make_ort_runner(src, options, impl->threads)
                                                 : detail::make_trt_runner(src, options);
  const Metadata& meta = impl->runner->metadata();
  impl->batch = std::max(1, std::min({options.batch_size, impl->runner->max_batch(), meta.dynamic_batch ? options.batch_size : 1}));
  return impl;
}

}  // namespace

Localizer Localizer::load(const std::string& model_path, const LocalizerOptions& options) {
  return detail::guarded("fcam::Localizer::load", [&] {
    Backend backend = options.backend;
    const bool is_onnx = ends_with(model_path, ".onnx");
    const bool is_plan =
        ends_with(model_path, ".plan") || ends_with(model_path, ".engine") || ends_with(model_path, ".trt");
    if (backend == Backend::Auto) {
      if (is_onnx) backend = Backend::OnnxRuntime;
      else if (is_plan) backend = Backend::TensorRT;
      else
        throw Error(ErrorKind::ModelFormat, model_path + ": unknown model kind (expected a .onnx file from `fcam "
                                                         "export` or a .plan/.engine/.trt from `fcam build-engine`)");
    }
    if (backend == Backend::OnnxRuntime && is_plan)
      throw Error(ErrorKind::ModelFormat, model_path + " is a TensorRT plan; ONNX Runtime takes .onnx models");
    if (backend == Backend::TensorRT && is_onnx)
      throw Error(ErrorKind::ModelFormat,
                  model_path + " is an ONNX file; build a plan with `fcam build-engine` for the TensorRT backend");
    detail::ModelSource src;
    src.path = model_path;
    return Localizer(open(src, backend, options));
  });
}

Localizer Localizer::load_from_memory(const void* data, std::size_t size, const LocalizerOptions& options,
                                      const std::string& metadata_json) {
  return detail::guarded("fcam::Localizer::load_from_memory", [&] {
    if (!data || size == 0) throw Error(ErrorKind::Input, "load_from_memory: the model buffer is empty");
    const Backend backend = options.backend == Backend::Auto ? Backend::OnnxRuntime : options.backend;
    detail::ModelSource src;
    src.path = "<memory>";
    src.data = data;
    src.size = size;
    src.sidecar_json = metadata_json;
    return Localizer(open(src, backend, options));
  });
}

Prediction Localizer::predict(const ImageView& image, const PredictOptions& options) const {
  return detail::guarded("fcam::Localizer::predict", [&] { return std::move(impl_->predict(&image, 1, options).at(0)); });
}

std::vector<Prediction> Localizer::predict(const std::vector<ImageView>& images, const PredictOptions& options) const {
  return detail::guarded("fcam::Localizer::predict",
                         [&] { return impl_->predict(images.data(), images.size(), options); });
}

std::vector<Prediction> Localizer::predict(const std::vector<Image>& images, const PredictOptions& options) const {
  return detail::guarded("fcam::Localizer::predict", [&] {
    std::vector<ImageView> views;
    views.reserve(images.size());
    for (std::size_t i = 0; i < images.size(); ++i) {
      const Image& im = images[i];
      if (im.rgb.size() != static_cast<std::size_t>(std::max(im.width, 0)) * std::max(im.height, 0) * 3)
        throw Error(ErrorKind::Input, "image " + std::to_string(i) +
                                          ": rgb buffer must hold width*height*3 bytes (8-bit RGB, H x W x 3)");
      views.emplace_back(im);
    }
    return impl_->predict(views.data(), views.size(), options);
  });
}

const Metadata& Localizer::metadata() const noexcept { return impl_->runner->metadata(); }
std::string Localizer::backend() const { return impl_->runner->backend(); }
std::vector<std::string> Localizer::providers() const { return impl_->runner->providers(); }
bool Localizer::fell_back_to_cpu() const noexcept { return impl_->runner->fell_back_to_cpu(); }
int Localizer::threads() const noexcept { return impl_->threads; }

}  // namespace fcam
