// fcam-deploy C++ embedding: the one public header of the fcam_localizer library.
//
// The same Localizer contract as the Python runtime (fcam_deploy.runtime.Localizer):
//   * load an exported model (.onnx from `fcam export`, or a TensorRT .plan from `fcam build-engine` plus its
//     sidecar <plan>.json) and read its metadata (class names, input size, tau, method, input layout);
//   * predict(image) takes an RGB image of any size, resizes it to the model's input size exactly as PIL's
//     bilinear resize does (the Python runtime's preprocessing), runs the graph (normalisation is inside it) and
//     returns the predicted class, its softmax score, the map at the original image size, the mask
//     (map > tau * max of the model-size map) and the boxes of the mask's 8-connected components (largest first,
//     computed at model size and scaled to original pixels, inclusive coordinates).
// Backends: ONNX Runtime (CPU; CUDA execution provider when the linked ONNX Runtime has it) and TensorRT (only when
// the library was built with TensorRT found). Errors are fcam::Error with a kind and a message that names the fix.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fcam {

/// What went wrong, mirroring fcam_deploy.errors.
enum class ErrorKind {
  ModelFormat,         ///< model file of another kind/version, missing or invalid metadata
  BackendUnavailable,  ///< backend, device, or custom-op / plugin library missing
  Input,               ///< bad image or argument handed to the API
  Image,               ///< image file unreadable, corrupt or of an unsupported format
  Runtime,             ///< the inference library failed while running
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message);
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (H, W, 3).
struct Image {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  ///< width * height * 3 bytes
};

/// An axis-aligned box with inclusive pixel coordinates, x0 <= x1 and y0 <= y1.
struct Box {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool operator==(const Box& o) const { return x0 == o.x0 && y0 == o.y0 && x1 == o.x1 && y1 == o.y1; }
};

/// The model's metadata (ONNX metadata_props / plan sidecar, keys "fcam_deploy.*").
struct Metadata {
  std::vector<std::string> class_names;
  int input_height = 0;
  int input_width = 0;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  float tau = 0.5f;
  std::string method;
  std::string postprocess;   ///< none | onnx | custom-op
  std::string input_layout;  ///< NHWC-uint8-RGB
  std::string resize;        ///< bilinear
  int max_boxes = 0;         ///< rows of the graph's boxes output (custom-op graphs)
  bool dynamic_batch = true;
  std::map<std::string, std::string> props;  ///< every key/value as stored
};

/// Localization of one image.
struct Prediction {
  int class_index = -1;
  std::string class_name;
  double score = 0.0;            ///< softmax probability of class_index
  std::vector<float> logits;     ///< (K,)
  int width = 0, height = 0;     ///< original image size
  std::vector<float> map;        ///< (height, width) in [0, 1]
  std::vector<std::uint8_t> mask;  ///< (height, width) 0/1
  std::vector<Box> boxes;        ///< original pixels, largest component first
  float tau = 0.5f;
};

enum class Backend { Auto, OnnxRuntime, TensorRT };

struct LocalizerOptions {
  Backend backend = Backend::Auto;   ///< Auto: .onnx -> ONNX Runtime, .plan/.engine -> TensorRT
  std::string device = "cpu";        ///< "cpu" or "cuda[:N]" (TensorRT always uses CUDA, default cuda:0)
  std::string custom_ops_library;    ///< ORT custom-op library (libfcam_ort_ops.so); default $FCAM_ORT_OPS
  std::string plugin_library;        ///< TensorRT plugin library; default $FCAM_TRT_PLUGINS
  int intra_op_threads = 0;          ///< ONNX Runtime intra-op threads (0: ORT default)
  int max_boxes = 8;                 ///< boxes kept per image when the graph has no boxes output
};

/// One loaded model. predict() is safe to call from several threads at once.
class Localizer {
 public:
  static Localizer load(const std::string& model_path, const LocalizerOptions& options = {});

  Localizer(Localizer&&) noexcept;
  Localizer& operator=(Localizer&&) noexcept;
  Localizer(const Localizer&) = delete;
  Localizer& operator=(const Localizer&) = delete;
  ~Localizer();

  Prediction predict(const Image& image) const;
  std::vector<Prediction> predict(const std::vector<Image>& images) const;

  const Metadata& metadata() const noexcept;
  std::string backend() const;                 ///< "onnxruntime" or "tensorrt"
  std::vector<std::string> providers() const;  ///< what executes the graph, most preferred first
  bool fell_back_to_cpu() const noexcept;      ///< a GPU was requested but the graph runs on the CPU

  struct Impl;

 private:
  explicit Localizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Decode a PNG or JPEG file to RGB (gray is replicated, alpha dropped, 16-bit reduced to the high byte).
Image load_image(const std::string& path);

/// Resize exactly like PIL's Image.resize((width, height), Image.BILINEAR) on an RGB image.
Image resize_bilinear(const Image& image, int width, int height);

/// Whether this build of the library includes the TensorRT backend.
bool has_tensorrt();

/// Library version string.
std::string version();

}  // namespace fcam
