// ONNX Runtime backend (C++ API): CPU execution provider, CUDA when the linked ONNX Runtime provides it.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <mutex>

#include "internal.hpp"

namespace fcam {
namespace detail {
namespace {

Ort::Env& shared_env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "fcam_localizer");
  return env;
}

int parse_cuda_index(const std::string& device) {
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) == 0) {
    const std::string rest = device.substr(5);
    if (!rest.empty() && std::all_of(rest.begin(), rest.end(), ::isdigit)) return std::stoi(rest);
  }
  throw Error(ErrorKind::Input, "device must be 'cpu', 'cuda' or 'cuda:N', got '" + device + "'");
}

class OrtRunner final : public Runner {
 public:
  OrtRunner(const std::string& path, const LocalizerOptions& options) {
    Ort::SessionOptions so;
    if (options.intra_op_threads > 0) so.SetIntraOpNumThreads(options.intra_op_threads);
    const std::string ops = env_or("FCAM_ORT_OPS", options.custom_ops_library);
    if (!ops.empty()) {
      try {
        so.RegisterCustomOpsLibrary(ops.c_str());
      } catch (const Ort::Exception& e) {
        throw Error(ErrorKind::BackendUnavailable, "ONNX Runtime could not load the custom-op library " + ops + ": " +
                                                       e.what() + " (build it with `make kernels`)");
      }
      custom_ops_ = ops;
    }
    const bool want_cuda = options.device != "cpu";
    if (want_cuda) {
      const int index = parse_cuda_index(options.device);
      const auto avail = Ort::GetAvailableProviders();
      if (std::find(avail.begin(), avail.end(), "CUDAExecutionProvider") != avail.end()) {
        try {
          OrtCUDAProviderOptions cuda{};
          cuda.device_id = index;
          so.AppendExecutionProvider_CUDA(cuda);
          providers_.push_back("CUDAExecutionProvider");
        } catch (const Ort::Exception&) {
          // reported through fell_back_to_cpu(), as the Python runtime does
        }
      }
      fell_back_ = providers_.empty();
    }
    providers_.push_back("CPUExecutionProvider");
    try {
      session_ = std::make_unique<Ort::Session>(shared_env(), path.c_str(), so);
    } catch (const Ort::Exception& e) {
      const std::string what = e.what();
      if (what.find("fcam") != std::string::npos &&
          (what.find("not a registered") != std::string::npos || what.find("No opset import") != std::string::npos ||
           what.find("implementation") != std::string::npos))
        throw Error(ErrorKind::BackendUnavailable,
                    path + " uses fcam-domain custom ops; pass the ONNX Runtime custom-op library "
                           "(LocalizerOptions::custom_ops_library or $FCAM_ORT_OPS, libfcam_ort_ops.so from `make "
                           "kernels`): " + what);
      const bool missing = what.find("No such file") != std::string::npos || what.find("doesn't exist") != std::string::npos;
      throw Error(ErrorKind::ModelFormat, path + (missing ? ": no such model file: " : ": ONNX Runtime cannot load it: ") + what);
    }
    Ort::AllocatorWithDefaultOptions alloc;
    Ort::ModelMetadata mm = session_->GetModelMetadata();
    std::map<std::string, std::string> props;
    for (const auto& key : mm.GetCustomMetadataMapKeysAllocated(alloc)) {
      auto value = mm.LookupCustomMetadataMapAllocated(key.get(), alloc);
      props[key.get()] = value.get();
    }
    meta_ = parse_metadata(props, path);
    outputs_ = output_names(meta_);
    std::vector<std::string> have;
    for (size_t i = 0; i < session_->GetOutputCount(); ++i)
      have.push_back(session_->GetOutputNameAllocated(i, alloc).get());
    for (const auto& name : outputs_)
      if (std::find(have.begin(), have.end(), name) == have.end())
        throw Error(ErrorKind::ModelFormat, path + ": graph lacks output '" + name + "' that its metadata promises");
    if (session_->GetInputCount() != 1 || std::string(session_->GetInputNameAllocated(0, alloc).get()) != "images")
      throw Error(ErrorKind::ModelFormat, path + ": graph input must be exactly 'images' (uint8 N,H,W,3)");
  }

  RawOutputs run(const std::uint8_t* images, int n) override {
    const int h = meta_.input_height, w = meta_.input_width;
    const std::array<int64_t, 4> shape{n, h, w, 3};
    Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value input = Ort::Value::CreateTensor<uint8_t>(cpu, const_cast<uint8_t*>(images),
                                                         static_cast<size_t>(n) * h * w * 3, shape.data(), shape.size());
    const char* in_names[] = {"images"};
    std::vector<const char*> out_names;
    for (const auto& s : outputs_) out_names.push_back(s.c_str());
    std::vector<Ort::Value> outs;
    try {
      outs = session_->Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names.data(), out_names.size());
    } catch (const Ort::Exception& e) {
      throw Error(ErrorKind::Runtime, std::string("ONNX Runtime failed: ") + e.what());
    }
    RawOutputs r;
    r.n = n;
    r.height = h;
    r.width = w;
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const std::string& name = outputs_[i];
      auto info = outs[i].GetTensorTypeAndShapeInfo();
      const size_t count = info.GetElementCount();
      const auto dims = info.GetShape();
      if (name == "logits") {
        expect(info, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, name);
        r.num_classes = static_cast<int>(dims.at(1));
        const float* p = outs[i].GetTensorData<float>();
        r.logits.assign(p, p + count);
      } else if (name == "pred_class") {
        expect(info, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, name);
        const int64_t* p = outs[i].GetTensorData<int64_t>();
        r.pred_class.assign(p, p + count);
      } else if (name == "map") {
        expect(info, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, name);
        if (dims.size() != 3 || dims[1] != h || dims[2] != w)
          throw Error(ErrorKind::ModelFormat, "graph output 'map' must be (N, H, W) at the input size");
        const float* p = outs[i].GetTensorData<float>();
        r.map.assign(p, p + count);
      } else if (name == "boxes") {
        expect(info, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, name);
        r.has_boxes = true;
        r.max_boxes = static_cast<int>(dims.at(1));
        const int32_t* p = outs[i].GetTensorData<int32_t>();
        r.boxes.assign(p, p + count);
      } else if (name == "box_count") {
        expect(info, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, name);
        const int32_t* p = outs[i].GetTensorData<int32_t>();
        r.box_count.assign(p, p + count);
      }
    }
    return r;
  }

  const Metadata& metadata() const override { return meta_; }
  std::string backend() const override { return "onnxruntime"; }
  std::vector<std::string> providers() const override { return providers_; }
  bool fell_back_to_cpu() const override { return fell_back_; }
  bool thread_safe() const override { return true; }  // Ort::Session::Run is thread-safe

 private:
  static void expect(const Ort::TensorTypeAndShapeInfo& info, ONNXTensorElementDataType t, const std::string& name) {
    if (info.GetElementType() != t)
      throw Error(ErrorKind::ModelFormat, "graph output '" + name + "' has an unexpected element type");
  }

  std::unique_ptr<Ort::Session> session_;
  Metadata meta_;
  std::vector<std::string> outputs_;
  std::vector<std::string> providers_;
  std::string custom_ops_;
  bool fell_back_ = false;
};

}  // namespace

std::unique_ptr<Runner> make_ort_runner(const std::string& path, const LocalizerOptions& options) {
  return std::make_unique<OrtRunner>(path, options);
}

}  // namespace detail
}  // namespace fcam
