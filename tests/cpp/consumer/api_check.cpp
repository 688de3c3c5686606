// api_check MODEL IMAGE : the public API as a downstream user sees it (only <fcam/localizer.hpp> and the installed
// library): version macros, decoding from memory, loading from memory, image views of every pixel format and row
// stride, optional outputs, batches, and the throw contract (every failure an fcam::Error of the documented kind,
// caught across the shared-library boundary). Prints one line per failed check and "api_check OK <n>" at the end;
// exit 0 only when every check passed.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <fcam/localizer.hpp>

namespace {

int checks = 0, failed = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

bool same(const fcam::Prediction& a, const fcam::Prediction& b) {
  return a.class_index == b.class_index && a.class_name == b.class_name && a.score == b.score &&
         a.logits == b.logits && a.boxes == b.boxes && a.map == b.map && a.mask == b.mask && a.width == b.width &&
         a.height == b.height;
}

// Expect `f` to throw fcam::Error of `kind`; anything else (no throw, another kind, another type) fails.
void expect_error(fcam::ErrorKind kind, const std::string& what, const std::function<void()>& f) {
  try {
    f();
    check(false, what + ": no exception");
  } catch (const fcam::Error& e) {
    check(e.kind() == kind, what + ": kind " + fcam::error_kind_name(e.kind()) + " (" + e.what() + "), expected " +
                                fcam::error_kind_name(kind));
  } catch (const std::exception& e) {
    check(false, what + ": a non-fcam exception escaped: " + e.what());
  }
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The decoded RGB image re-laid out as `format` with `pad` extra bytes at the end of every row.
std::vector<std::uint8_t> relayout(const fcam::Image& img, fcam::PixelFormat format, std::size_t pad,
                                   std::size_t* stride) {
  const int bpp = fcam::bytes_per_pixel(format);
  *stride = static_cast<std::size_t>(img.width) * bpp + pad;
  std::vector<std::uint8_t> out(*stride * img.height, 0xAB);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const std::uint8_t* s = img.rgb.data() + (static_cast<std::size_t>(y) * img.width + x) * 3;
      std::uint8_t* d = out.data() + y * *stride + static_cast<std::size_t>(x) * bpp;
      switch (format) {
        case fcam::PixelFormat::RGB: d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; break;
        case fcam::PixelFormat::BGR: d[0] = s[2]; d[1] = s[1]; d[2] = s[0]; break;
        case fcam::PixelFormat::RGBA: d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; d[3] = 7; break;
        case fcam::PixelFormat::BGRA: d[0] = s[2]; d[1] = s[1]; d[2] = s[0]; d[3] = 200; break;
        case fcam::PixelFormat::GRAY: d[0] = s[1]; break;
      }
    }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: api_check MODEL IMAGE\n");
    return 2;
  }
  const std::string model = argv[1], image_path = argv[2];
  try {
    // --- version macros agree with the loaded library
    char macro[32];
    std::snprintf(macro, sizeof macro, "%d.%d.%d", FCAM_LOCALIZER_VERSION_MAJOR, FCAM_LOCALIZER_VERSION_MINOR,
                  FCAM_LOCALIZER_VERSION_PATCH);
    check(fcam::version() == FCAM_LOCALIZER_VERSION_STRING && fcam::version() == macro,
          "version " + fcam::version() + " vs macros " + macro);
    check(FCAM_LOCALIZER_VERSION == FCAM_LOCALIZER_VERSION_MAJOR * 10000 + FCAM_LOCALIZER_VERSION_MINOR * 100 +
                                        FCAM_LOCALIZER_VERSION_PATCH,
          "FCAM_LOCALIZER_VERSION");

    // --- decoding from memory equals decoding the file
    const fcam::Image img = fcam::load_image(image_path);
    const std::vector<std::uint8_t> file = read_bytes(image_path);
    const fcam::Image mem = fcam::decode_image(file.data(), file.size());
    check(mem.width == img.width && mem.height == img.height && mem.rgb == img.rgb, "decode_image == load_image");

    // --- loading from memory equals loading the file
    const fcam::Localizer loc = fcam::Localizer::load(model);
    const std::vector<std::uint8_t> model_bytes = read_bytes(model);
    const fcam::Localizer mloc = fcam::Localizer::load_from_memory(model_bytes.data(), model_bytes.size());
    const fcam::Prediction ref = loc.predict(img);
    check(!ref.boxes.empty() && ref.map.size() == static_cast<std::size_t>(img.width) * img.height,
          "reference prediction has boxes and a full-size map");
    check(same(mloc.predict(img), ref), "load_from_memory predicts the same");
    check(loc.threads() >= 1 && loc.metadata().input_height > 0, "threads() and metadata()");

    // --- every pixel format and a padded stride give the RGB result (gray: the replicated-gray image's)
    for (fcam::PixelFormat f : {fcam::PixelFormat::RGB, fcam::PixelFormat::BGR, fcam::PixelFormat::RGBA,
                                fcam::PixelFormat::BGRA}) {
      std::size_t stride = 0;
      const std::vector<std::uint8_t> buf = relayout(img, f, 5, &stride);
      const fcam::ImageView view(buf.data(), img.width, img.height, f, stride);
      check(same(loc.predict(view), ref), "format " + std::to_string(static_cast<int>(f)) + " with padded stride");
    }
    std::size_t gstride = 0;
    const std::vector<std::uint8_t> gray = relayout(img, fcam::PixelFormat::GRAY, 3, &gstride);
    fcam::Image gray_rgb = img;
    for (std::size_t i = 0; i < gray_rgb.rgb.size(); i += 3)
      gray_rgb.rgb[i] = gray_rgb.rgb[i + 2] = gray_rgb.rgb[i + 1];
    const fcam::Prediction gref = loc.predict(gray_rgb);
    check(same(loc.predict(fcam::ImageView(gray.data(), img.width, img.height, fcam::PixelFormat::GRAY, gstride)), gref),
          "GRAY view == replicated-gray RGB image");
    check(fcam::resize_bilinear(fcam::ImageView(gray.data(), img.width, img.height, fcam::PixelFormat::GRAY, gstride),
                                17, 9).rgb == fcam::resize_bilinear(gray_rgb, 17, 9).rgb,
          "GRAY resize == replicated-gray RGB resize");

    // --- optional outputs: no map / mask kept, everything else identical
    fcam::PredictOptions lean;
    lean.map = lean.mask = false;
    const fcam::Prediction p0 = loc.predict(img, lean);
    check(p0.map.empty() && p0.mask.empty(), "PredictOptions{map=false, mask=false} keeps neither");
    check(p0.boxes == ref.boxes && p0.score == ref.score && p0.class_index == ref.class_index,
          "lean prediction: same class, score, boxes");
    fcam::PredictOptions mask_only;
    mask_only.map = false;
    const fcam::Prediction p1 = loc.predict(img, mask_only);
    check(p1.map.empty() && p1.mask == ref.mask, "mask only");

    // --- a batch of mixed views equals the single predictions; the zero-copy path (packed RGB at model size)
    // equals the resize path of the same pixels given as BGR
    const int mh = loc.metadata().input_height, mw = loc.metadata().input_width;
    const fcam::Image small = fcam::resize_bilinear(img, mw, mh);
    std::size_t sstride = 0;
    const std::vector<std::uint8_t> small_bgr = relayout(small, fcam::PixelFormat::BGR, 0, &sstride);
    const fcam::Prediction direct = loc.predict(small);
    check(same(direct, loc.predict(fcam::ImageView(small_bgr.data(), mw, mh, fcam::PixelFormat::BGR))),
          "model-size RGB (handed to the engine as is) == model-size BGR (converted)");
    const std::vector<fcam::ImageView> views{img, fcam::ImageView(gray.data(), img.width, img.height,
                                                                  fcam::PixelFormat::GRAY, gstride), small};
    // (the engine's own results may differ in the last bit between batch sizes, so a batch of views is compared
    // with the same batch of owning RGB images, and the class / boxes with the single predictions)
    const std::vector<fcam::Prediction> many = loc.predict(views);
    const std::vector<fcam::Prediction> owning = loc.predict(std::vector<fcam::Image>{img, gray_rgb, small});
    check(many.size() == 3 && owning.size() == 3, "batch sizes");
    for (std::size_t j = 0; j < many.size() && j < owning.size(); ++j)
      check(same(many[j], owning[j]), "batch[" + std::to_string(j) + "] of views == batch of RGB images");
    check(many.size() == 3 && many[0].boxes == ref.boxes && many[1].class_index == gref.class_index &&
              many[2].class_index == direct.class_index,
          "batch results agree with the single predictions on class and boxes");

    // --- the throw contract
    using K = fcam::ErrorKind;
    expect_error(K::Input, "null data", [&] { loc.predict(fcam::ImageView(nullptr, 4, 4)); });
    expect_error(K::Input, "zero width", [&] { loc.predict(fcam::ImageView(img.rgb.data(), 0, 4)); });
    expect_error(K::Input, "stride too small",
                 [&] { loc.predict(fcam::ImageView(img.rgb.data(), img.width, img.height, fcam::PixelFormat::RGB, 5)); });
    expect_error(K::Input, "more than 2^30 pixels",
                 [&] { loc.predict(fcam::ImageView(img.rgb.data(), 1 << 16, 1 << 15)); });
    fcam::Image broken = img;
    broken.rgb.pop_back();
    expect_error(K::Input, "Image with a short rgb buffer", [&] { loc.predict(broken); });
    expect_error(K::Input, "Image with a short rgb buffer in a batch",
                 [&] { loc.predict(std::vector<fcam::Image>{img, broken}); });
    expect_error(K::Input, "resize to 0x5", [&] { fcam::resize_bilinear(img, 0, 5); });
    fcam::LocalizerOptions bad;
    bad.max_boxes = 0;
    expect_error(K::Input, "max_boxes 0", [&] { fcam::Localizer::load(model, bad); });
    bad = {};
    bad.threads = -1;
    expect_error(K::Input, "threads -1", [&] { fcam::Localizer::load(model, bad); });
    bad = {};
    bad.device = "cuda:99999999999";
    expect_error(K::Input, "device cuda:99999999999", [&] { fcam::Localizer::load(model, bad); });
    expect_error(K::Input, "empty model buffer", [&] { fcam::Localizer::load_from_memory(nullptr, 0); });
    const char junk[] = "this is not an onnx model";
    expect_error(K::ModelFormat, "junk model bytes", [&] { fcam::Localizer::load_from_memory(junk, sizeof junk); });
    bad = {};
    bad.backend = fcam::Backend::TensorRT;
    expect_error(fcam::has_tensorrt() ? K::Input : K::BackendUnavailable, "TensorRT from memory without a sidecar",
                 [&] { fcam::Localizer::load_from_memory(junk, sizeof junk, bad); });
    expect_error(K::Image, "decode junk", [&] { fcam::decode_image(junk, sizeof junk); });
    expect_error(K::Image, "decode empty", [&] { fcam::decode_image(junk, 0); });
    expect_error(K::Image, "decode half a file", [&] { fcam::decode_image(file.data(), file.size() / 2); });
    expect_error(K::Image, "missing file", [&] { fcam::load_image(image_path + ".does-not-exist"); });
    // fcam::Error is a std::runtime_error, so generic handlers see the message too
    try {
      fcam::load_image(image_path + ".does-not-exist");
    } catch (const std::runtime_error& e) {
      check(std::strstr(e.what(), "cannot open") != nullptr, "std::runtime_error handler sees the message");
    }
    check(std::string(fcam::error_kind_name(K::OutOfMemory)) == "OutOfMemoryError" &&
              std::string(fcam::error_kind_name(K::Internal)) == "InternalError",
          "error_kind_name");
  } catch (const fcam::Error& e) {
    std::printf("FAIL unexpected fcam::Error %s: %s\n", fcam::error_kind_name(e.kind()), e.what());
    return 1;
  }
  std::printf("api_check %s %d\n", failed ? "FAILED" : "OK", checks);
  return failed ? 1 : 0;
}
