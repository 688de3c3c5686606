// fcam-deploy C++ embedding: the one public header of the fcam_localizer library.
//
// The same Localizer contract as the Python runtime (fcam_deploy.runtime.Localizer), with the same bits:
//   * load an exported model (.onnx from `fcam export`, or a TensorRT .plan from `fcam build-engine` plus its
//     sidecar <plan>.json), from a file or from memory, and read its metadata (class names, input size, tau, ...);
//   * predict(image) takes an 8-bit image of any size as a non-owning view (RGB, BGR, RGBA, BGRA or gray, any row
//     stride), resizes it to the model's input size with Pillow's bilinear filter (the algorithm of Pillow >= 13,
//     pass order included, which the Python runtime uses), runs the graph (normalisation is inside it), then
//     post-processes each map natively at the image's ORIGINAL size with the same launcher as the Python runtime
//     (kernels/src/cpu, camPostprocessCpuSized): bilinear upsampling (align_corners=False) of the model-size map
//     (clamped to [0, 1]), mask = map > tau * max(map), boxes of the mask's 8-connected components in original
//     pixels (largest first, inclusive coordinates). The graph's own model-size mask / boxes are not used.
// Backends: ONNX Runtime (CPU; CUDA execution provider when the linked ONNX Runtime has it) and TensorRT (only when
// the library was built with TensorRT found).
//
// Errors: every exception that leaves a function of this header is an fcam::Error (a std::runtime_error) whose
// kind() says what went wrong and whose message names the fix; std::bad_alloc becomes ErrorKind::OutOfMemory and any
// other unexpected exception ErrorKind::Internal. Functions marked noexcept never throw.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// Version of this header and library (CMake reads the project version from these three lines).
#define FCAM_LOCALIZER_VERSION_MAJOR 0
#define FCAM_LOCALIZER_VERSION_MINOR 2
#define FCAM_LOCALIZER_VERSION_PATCH 0
#define FCAM_LOCALIZER_VERSION_STRING "0.2.0"
/// One integer for compile-time checks: MAJOR * 10000 + MINOR * 100 + PATCH.
#define FCAM_LOCALIZER_VERSION \
  (FCAM_LOCALIZER_VERSION_MAJOR * 10000 + FCAM_LOCALIZER_VERSION_MINOR * 100 + FCAM_LOCALIZER_VERSION_PATCH)

// Symbols of the public API; everything else in the shared library is hidden.
#if defined(_WIN32)
#if defined(FCAM_LOCALIZER_BUILDING)
#define FCAM_API __declspec(dllexport)
#else
#define FCAM_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define FCAM_API __attribute__((visibility("default")))
#else
#define FCAM_API
#endif

namespace fcam {

/// What went wrong, mirroring fcam_deploy.errors (error_kind_name gives the Python class name).
enum class ErrorKind {
  ModelFormat,         ///< model file of another kind/version, invalid metadata, metadata that contradicts the graph
  BackendUnavailable,  ///< backend, device, or custom-op / plugin library missing
  Input,               ///< bad image view or argument handed to the API
  Image,               ///< image file unreadable, corrupt, truncated, of an unsupported format, or too large
  Runtime,             ///< the inference library failed while running, or produced non-finite maps
  OutOfMemory,         ///< an allocation failed (std::bad_alloc inside the library)
  Internal,            ///< an unexpected exception inside the library (a bug: please report it)
};

/// Python-side name of a kind: "ModelFormatError", "BackendUnavailableError", "InputError", "ImageError",
/// "RuntimeError", "OutOfMemoryError", "InternalError".
FCAM_API const char* error_kind_name(ErrorKind kind) noexcept;

/// The only exception type the library throws.
class FCAM_API Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message);
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

/// Byte layout of one pixel of an ImageView (8 bits per channel, channels interleaved).
enum class PixelFormat {
  RGB,   ///< 3 bytes R, G, B (PIL, most decoders)
  BGR,   ///< 3 bytes B, G, R (OpenCV's cv::Mat CV_8UC3)
  RGBA,  ///< 4 bytes; alpha is ignored, as PIL's convert("RGB") does
  BGRA,  ///< 4 bytes; alpha is ignored
  GRAY,  ///< 1 byte, replicated to R = G = B, as PIL's convert("RGB") does
};

/// Bytes per pixel of a format (3, 3, 4, 4, 1).
FCAM_API int bytes_per_pixel(PixelFormat format) noexcept;

/// An 8-bit RGB image that owns its pixels, rows top to bottom, pixels interleaved (H, W, 3).
struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  ///< width * height * 3 bytes
};

/// A non-owning view of 8-bit pixels (e.g. a cv::Mat: {m.data, m.cols, m.rows, PixelFormat::BGR, m.step}).
/// The pixels must stay valid and unchanged while a call that received the view runs; nothing is copied.
struct ImageView {
  const std::uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  PixelFormat format = PixelFormat::RGB;
  std::size_t stride = 0;  ///< bytes from one row to the next; 0: width * bytes_per_pixel(format)

  ImageView() = default;
  ImageView(const std::uint8_t* data_, int width_, int height_, PixelFormat format_ = PixelFormat::RGB,
            std::size_t stride_ = 0)
      : data(data_), width(width_), height(height_), format(format_), stride(stride_) {}
  /// View of an owning Image (RGB, packed rows). An Image whose rgb buffer does not hold width * height * 3 bytes
  /// gives a view with a null data pointer, which every function refuses with an Input error.
  ImageView(const Image& image)  // NOLINT(google-explicit-constructor): an Image is usable wherever a view is
      : data(image.width > 0 && image.height > 0 &&
                     image.rgb.size() == static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3
                 ? image.rgb.data()
                 : nullptr),
        width(image.width),
        height(image.height),
        format(PixelFormat::RGB),
        stride(0) {}
};

/// An axis-aligned box with inclusive pixel coordinates, x0 <= x1 and y0 <= y1.
struct Box {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool operator==(const Box& o) const { return x0 == o.x0 && y0 == o.y0 && x1 == o.x1 && y1 == o.y1; }
  bool operator!=(const Box& o) const { return !(*this == o); }
};

/// The model's metadata (ONNX metadata_props / plan sidecar, keys "fcam_deploy.*"), validated at load like
/// fcam_deploy.runtime.base.ModelMetadata, and checked against the graph's own input/output shapes.
struct Metadata {
  std::vector<std::string> class_names;
  int input_height = 0;
  int input_width = 0;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};  ///< each > 0
  double tau = 0.5;            ///< in [0, 1]
  std::string method;          ///< fcam | cam | gradcam | gradcampp | xgradcam | layercam
  std::string postprocess;     ///< none | onnx | custom-op
  std::string input_layout;    ///< NHWC-uint8-RGB
  std::string resize;          ///< bilinear
  int max_boxes = 0;           ///< rows of the graph's boxes output (custom-op graphs)
  bool dynamic_batch = true;
  std::map<std::string, std::string> props;  ///< every key/value as stored
};

/// Localization of one image.
struct Prediction {
  int class_index = -1;
  std::string class_name;
  double score = 0.0;              ///< softmax probability of class_index (double, like the Python runtime)
  std::vector<float> logits;       ///< (K,)
  int width = 0, height = 0;       ///< original image size
  std::vector<float> map;          ///< (height, width) in [0, 1]; empty unless PredictOptions::map
  std::vector<std::uint8_t> mask;  ///< (height, width) 0/1, map > tau * max(map); empty unless PredictOptions::mask
  std::vector<Box> boxes;          ///< original pixels, largest component first, at most LocalizerOptions::max_boxes
  double tau = 0.5;
};

/// What predict() returns besides class, score, logits and boxes (which are always computed).
struct PredictOptions {
  bool map = true;   ///< keep the original-size map (4 bytes per pixel)
  bool mask = true;  ///< keep the original-size mask (1 byte per pixel)
};

enum class Backend { Auto, OnnxRuntime, TensorRT };

struct LocalizerOptions {
  Backend backend = Backend::Auto;  ///< Auto: .onnx (and memory buffers) -> ONNX Runtime, .plan/.engine/.trt -> TensorRT
  std::string device = "cpu";       ///< "cpu" or "cuda[:N]" (TensorRT always uses CUDA, default cuda:0)
  /// ORT custom-op library (libfcam_ort_ops.so). Empty: $FCAM_ORT_OPS, loaded only when the graph has the fused
  /// fcam::CamPostprocess node (so a stale $FCAM_ORT_OPS never breaks a standard-op model).
  std::string custom_ops_library;
  std::string plugin_library;  ///< TensorRT plugin library; default $FCAM_TRT_PLUGINS
  /// The thread budget (0: the cores this process may run on, its affinity mask): ONNX Runtime's intra-op threads
  /// (spinning off, one inter-op thread) and the native post-processing's workers, which run one after the other.
  /// Results are identical for every setting.
  int threads = 0;
  int max_boxes = 8;    ///< boxes kept per image (1 .. 2^24)
  int batch_size = 16;  ///< images per engine call (1 for a graph with a fixed batch)
};

/// One loaded model. predict() is safe to call from several threads at once.
class FCAM_API Localizer {
 public:
  /// Load a model file.
  /// Throws Error: ModelFormat (unknown kind, unreadable, foreign or invalid metadata, metadata contradicting the
  /// graph), BackendUnavailable (TensorRT not built, device or custom-op/plugin library missing), Input (bad option),
  /// OutOfMemory, Internal.
  static Localizer load(const std::string& model_path, const LocalizerOptions& options = {});

  /// Load a model from memory (the bytes are copied or parsed before this returns; the buffer may then be freed).
  /// backend Auto or OnnxRuntime: `data` holds an .onnx file. TensorRT: `data` holds a plan and `metadata_json` the
  /// text of its sidecar <plan>.json. Throws as load(), and Input for an empty buffer or a missing sidecar.
  static Localizer load_from_memory(const void* data, std::size_t size, const LocalizerOptions& options = {},
                                    const std::string& metadata_json = {});

  Localizer(Localizer&&) noexcept;
  Localizer& operator=(Localizer&&) noexcept;
  Localizer(const Localizer&) = delete;
  Localizer& operator=(const Localizer&) = delete;
  ~Localizer();

  /// Localize one image. Throws Error: Input (null/empty view, stride too small, more than 2^30 pixels), Runtime
  /// (engine failure, non-finite map), OutOfMemory, Internal.
  Prediction predict(const ImageView& image, const PredictOptions& options = {}) const;
  /// Localize several images (engine batches of LocalizerOptions::batch_size). Throws as predict(); the message of
  /// an Input error names the image index.
  std::vector<Prediction> predict(const std::vector<ImageView>& images, const PredictOptions& options = {}) const;
  std::vector<Prediction> predict(const std::vector<Image>& images, const PredictOptions& options = {}) const;

  const Metadata& metadata() const noexcept;
  std::string backend() const;                 ///< "onnxruntime" or "tensorrt"
  std::vector<std::string> providers() const;  ///< what executes the graph, most preferred first
  bool fell_back_to_cpu() const noexcept;      ///< a GPU was requested but the graph runs on the CPU
  int threads() const noexcept;                ///< the thread budget in use (LocalizerOptions::threads resolved)

  struct Impl;

 private:
  explicit Localizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Largest image decode_image / load_image accept (PIL's decompression-bomb limit, 2 * 89478485 pixels).
constexpr std::uint64_t kMaxDecodedPixels = 178956970ULL;

/// Decode a PNG or JPEG file to RGB (gray is replicated, alpha dropped, palette expanded, 16-bit reduced to the high
/// byte, like PIL's convert("RGB")). Nothing is written to stdout/stderr.
/// Throws Error: Image (cannot open, not PNG/JPEG, corrupt or truncated data, any libjpeg warning, CMYK JPEG, more
/// than kMaxDecodedPixels pixels), OutOfMemory, Internal.
FCAM_API Image load_image(const std::string& path);

/// Decode a PNG or JPEG held in memory (e.g. a camera frame or an HTTP body). Throws as load_image.
FCAM_API Image decode_image(const void* data, std::size_t size);

/// Resize with Pillow's bilinear filter, as Image.resize((width, height), Image.BILINEAR) on the RGB image (Pillow
/// >= 13: pass order included; Pillow <= 12 always ran the horizontal pass first, so for images shrunk vertically by
/// more than twice the horizontal reduction its bytes may differ from this by 1). Returns RGB.
/// Throws Error: Input (bad view or target size), OutOfMemory, Internal.
FCAM_API Image resize_bilinear(const ImageView& image, int width, int height);

/// Whether this build of the library includes the TensorRT backend.
FCAM_API bool has_tensorrt() noexcept;

/// Library version string of the shared library actually loaded (compare with FCAM_LOCALIZER_VERSION_STRING).
FCAM_API std::string version();

}  // namespace fcam
