// Internal interfaces of fcam_localizer (not installed).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fcam/localizer.hpp"

namespace fcam {
namespace detail {

/// Graph outputs for a batch of N images (names and layouts of fcam_deploy.runtime.base).
struct RawOutputs {
  int n = 0;
  int num_classes = 0;
  int height = 0, width = 0;
  int max_boxes = 0;
  std::vector<float> logits;        // (N, K)
  std::vector<std::int64_t> pred_class;  // (N,)
  std::vector<float> map;           // (N, H, W)
  bool has_boxes = false;
  std::vector<std::int32_t> boxes;  // (N, B, 4)
  std::vector<std::int32_t> box_count;  // (N,)
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
};

std::unique_ptr<Runner> make_ort_runner(const std::string& path, const LocalizerOptions& options);
std::unique_ptr<Runner> make_trt_runner(const std::string& path, const LocalizerOptions& options);

/// Parse and validate the fcam_deploy.* metadata (same rules as ModelMetadata.from_props).
Metadata parse_metadata(const std::map<std::string, std::string>& props, const std::string& source);

/// Parse a flat JSON object of strings (the TensorRT plan sidecar).
std::map<std::string, std::string> parse_flat_json_object(const std::string& text, const std::string& source);

/// Outputs the graph has for this metadata, in order.
std::vector<std::string> output_names(const Metadata& meta);

std::string env_or(const char* name, const std::string& fallback);

}  // namespace detail
}  // namespace fcam
