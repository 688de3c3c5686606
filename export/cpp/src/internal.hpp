// Internal interfaces of fcam_localizer (not installed, not exported: the library is built with hidden visibility).
#pragma once

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "fcam/localizer.hpp"

namespace fcam {
namespace detail {

/// Graph outputs the Localizer uses for a batch of N images (names and layouts of fcam_deploy.runtime.base). The
/// graph's model-size mask / boxes (postprocess onnx / custom-op) are not fetched: the Localizer post-processes
/// the model-size map itself at each image's original size.
struct RawOutputs {
  int n = 0;
  int num_classes = 0;
  int height = 0, width = 0;
  std::vector<float> logits;             // (N, K)
  std::vector<std::int64_t> pred_class;  // (N,)
  std::vector<float> map;                // (N, H, W)
};

/// Where a model comes from: a file, or bytes in memory (plus the plan sidecar text for TensorRT).
struct ModelSource {
  std::string path;           // file path; for memory sources a display name ("<memory>")
  const void* data = nullptr;  // non-null: load from these bytes
  std::size_t size = 0;
  std::string sidecar_json;  // TensorRT from memory: the sidecar's text
  bool in_memory() const { return data != nullptr; }
};

/// One backend executing the graph on a uint8 (N, H, W, 3) batch.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual RawOutputs run(const std::uint8_t* images, int n) = 0;
  virtual const Metadata& metadata() const = 0;
  virtual std::string backend() const = 0;
  virtual std::vector<std::string> providers() const = 0;
  virtual bool fell_back_to_cpu() const = 0;
  virtual bool thread_safe() const = 0;
  virtual int max_batch() const = 0;  ///< largest N one run() accepts (1 for a fixed-batch graph)
};

std::unique_ptr<Runner> make_ort_runner(const ModelSource& source, const LocalizerOptions& options, int threads);
std::unique_ptr<Runner> make_trt_runner(const ModelSource& source, const LocalizerOptions& options);

/// Parse and validate the fcam_deploy.* metadata (the rules of ModelMetadata.from_props / validate).
Metadata parse_metadata(const std::map<std::string, std::string>& props, const std::string& source);

/// Parse a flat JSON object of strings (the TensorRT plan sidecar).
std::map<std::string, std::string> parse_flat_json_object(const std::string& text, const std::string& source);

/// Largest input side accepted from metadata (a model's input is at most this many pixels per side).
constexpr int kMaxInputSide = 4096;  // = fcam_deploy._limits.MAX_INPUT_SIDE (one bound for Python and C++)

/// Check the graph's static shapes against the metadata: input (N, H, W, 3) and output logits (N, K).
/// Dimensions < 0 are symbolic and accepted. Throws ModelFormat naming the mismatch.
void check_graph_shapes(const Metadata& meta, const std::vector<std::int64_t>& input_dims,
                        const std::vector<std::int64_t>& logits_dims, const std::vector<std::int64_t>& map_dims,
                        const std::string& source);

/// "cpu" -> -1; "cuda" -> 0; "cuda:N" -> N (0 <= N <= 65535). Throws Input for anything else.
int parse_device(const std::string& device);

/// $name, or "" when unset.
std::string env(const char* name);

/// The cores this process may run on (sched_getaffinity; hardware_concurrency where unknown; at least 1).
int available_cores() noexcept;

/// Resize a view with Pillow's bilinear filter straight into `out` (out_h * out_w * 3 RGB bytes). The view must
/// have been checked with check_view.
void resize_into(const ImageView& image, std::uint8_t* out, int out_w, int out_h);

/// Throws Input ("<what>: ...") when the view is null, empty, has a too-small stride or more than 2^30 pixels.
void check_view(const ImageView& image, const std::string& what);

/// Run f(), turning every exception that is not an fcam::Error into one (bad_alloc -> OutOfMemory, anything else
/// -> Internal), with `where` naming the API function.
template <class F>
auto guarded(const char* where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Error(ErrorKind::OutOfMemory, std::string(where) +
                                            ": out of memory (fix: smaller images or batches, or more memory)");
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Internal, std::string(where) + ": internal error: " + e.what() +
                                         " (please report it to fcam-deploy with the model and image)");
  } catch (...) {
    throw Error(ErrorKind::Internal, std::string(where) + ": internal error: unknown exception");
  }
}

}  // namespace detail
}  // namespace fcam
