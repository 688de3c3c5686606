// ONNX Runtime backend (C++ API): CPU execution provider, CUDA when the linked ONNX Runtime provides it.
// Session settings follow fcam_deploy.runtime.ort.make_session: `threads` intra-op threads with spinning off, one
// inter-op thread, sequential execution; ONNX Runtime's log goes to a sink that drops it (never to stderr).
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <functional>

#include "internal.hpp"

namespace fcam {
namespace detail {
namespace {

void ort_log_sink(void*, OrtLoggingLevel, const char*, const char*, const char*, const char*) {}

Ort::Env& shared_env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "fcam_localizer", ort_log_sink, nullptr);
  return env;
}

// ORT's message when a graph has fcam-domain nodes and no kernel is registered for them.
bool missing_custom_op(const std::string& what) {
  return what.find("CamPostprocess") != std::string::npos ||
         (what.find("fcam") != std::string::npos &&
          (what.find("not a registered") != std::string::npos || what.find("No opset import") != std::string::npos));
}

std::vector<std::int64_t> tensor_dims(const Ort::TypeInfo& info) {
  return info.GetTensorTypeAndShapeInfo().GetShape();
}

class OrtRunner final : public Runner {
 public:
  OrtRunner(const ModelSource& src, const LocalizerOptions& options, int threads) {
    const std::string& name = src.path;
    const int cuda_index = parse_device(options.device);  // validates the string first (Input error)
    const bool want_cuda = cuda_index >= 0;
    if (want_cuda) {
      const auto avail = Ort::GetAvailableProviders();
      have_cuda_ep_ = std::find(avail.begin(), avail.end(), "CUDAExecutionProvider") != avail.end();
    }
    // The custom-op library is registered up front only when passed explicitly. Otherwise the session is built
    // without it, and $FCAM_ORT_OPS is loaded only when ONNX Runtime reports the fused fcam node missing.
    const std::string& explicit_ops = options.custom_ops_library;
    try {
      session_ = open(src, explicit_ops, threads, cuda_index);
    } catch (const Ort::Exception& e) {
      const std::string what = e.what();
      if (!missing_custom_op(what) || !explicit_ops.empty()) throw load_error(name, what, explicit_ops);
      const std::string env_ops = env("FCAM_ORT_OPS");
      if (env_ops.empty())
        throw Error(ErrorKind::BackendUnavailable,
                    name + " has the fused fcam::CamPostprocess node, which needs the ONNX Runtime custom-op library "
                           "libfcam_ort_ops.so (fix: build it with `make kernels` and pass "
                           "LocalizerOptions::custom_ops_library / --custom-ops, or set FCAM_ORT_OPS; or export with "
                           "--postprocess onnx, which runs on any ONNX runtime): " + what);
      try {
        session_ = open(src, env_ops, threads, cuda_index);
      } catch (const Ort::Exception& e2) {
        throw load_error(name, e2.what(), env_ops);
      }
    }
    fell_back_ = want_cuda && (providers_.empty() || providers_.front() != "CUDAExecutionProvider");
    providers_.push_back("CPUExecutionProvider");

    Ort::AllocatorWithDefaultOptions alloc;
    Ort::ModelMetadata mm = session_->GetModelMetadata();
    std::map<std::string, std::string> props;
    for (const auto& key : mm.GetCustomMetadataMapKeysAllocated(alloc)) {
      auto value = mm.LookupCustomMetadataMapAllocated(key.get(), alloc);
      props[key.get()] = value.get();
    }
    meta_ = parse_metadata(props, name);

    if (session_->GetInputCount() != 1 || std::string(session_->GetInputNameAllocated(0, alloc).get()) != "images")
      throw Error(ErrorKind::ModelFormat, name + ": graph input must be exactly 'images' (uint8 N,H,W,3)");
    const Ort::TypeInfo in_info = session_->GetInputTypeInfo(0);
    if (in_info.GetONNXType() != ONNX_TYPE_TENSOR ||
        in_info.GetTensorTypeAndShapeInfo().GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8)
      throw Error(ErrorKind::ModelFormat, name + ": graph input 'images' must be a uint8 tensor");
    const std::vector<std::int64_t> in_dims = tensor_dims(in_info);

    std::map<std::string, size_t> index;
    for (size_t i = 0; i < session_->GetOutputCount(); ++i) index[session_->GetOutputNameAllocated(i, alloc).get()] = i;
    std::vector<std::string> promised{"logits", "pred_class", "map"};
    if (meta_.postprocess == "onnx" || meta_.postprocess == "custom-op") promised.push_back("mask");
    if (meta_.postprocess == "custom-op") {
      promised.push_back("boxes");
      promised.push_back("box_count");
    }
    for (const auto& out : promised)
      if (!index.count(out))
        throw Error(ErrorKind::ModelFormat, name + ": graph lacks output '" + out + "' that its metadata promises");
    const auto out_info = [&](const char* out, ONNXTensorElementDataType type) {
      const Ort::TypeInfo info = session_->GetOutputTypeInfo(index.at(out));
      if (info.GetONNXType() != ONNX_TYPE_TENSOR || info.GetTensorTypeAndShapeInfo().GetElementType() != type)
        throw Error(ErrorKind::ModelFormat, name + ": graph output '" + out + "' has an unexpected element type");
      return tensor_dims(info);
    };
    const auto logits_dims = out_info("logits", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    out_info("pred_class", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);
    const auto map_dims = out_info("map", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    check_graph_shapes(meta_, in_dims, logits_dims, map_dims, name);
    max_batch_ = in_dims[0] > 0 ? static_cast<int>(std::min<std::int64_t>(in_dims[0], 1 << 20)) : (1 << 20);
  }

  RawOutputs run(const std::uint8_t* images, int n) override {
    const int h = meta_.input_height, w = meta_.input_width;
    const std::array<int64_t, 4> shape{n, h, w, 3};
    Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value input = Ort::Value::CreateTensor<uint8_t>(cpu, const_cast<uint8_t*>(images),
                                                         static_cast<size_t>(n) * h * w * 3, shape.data(), shape.size());
    const char* in_names[] = {"images"};
    const char* out_names[] = {"logits", "pred_class", "map"};
    std::vector<Ort::Value> outs;
    try {
      outs = session_->Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 3);
    } catch (const Ort::Exception& e) {
      throw Error(ErrorKind::Runtime, std::string("ONNX Runtime failed: ") + e.what());
    }
    RawOutputs r;
    r.n = n;
    r.height = h;
    r.width = w;
    const auto logits_shape = outs[0].GetTensorTypeAndShapeInfo().GetShape();
    const auto map_shape = outs[2].GetTensorTypeAndShapeInfo().GetShape();
    const size_t classes = meta_.class_names.size();
    if (logits_shape != std::vector<int64_t>{n, static_cast<int64_t>(classes)} ||
        outs[1].GetTensorTypeAndShapeInfo().GetShape() != std::vector<int64_t>{n} ||
        map_shape != std::vector<int64_t>{n, h, w})
      throw Error(ErrorKind::Runtime, "ONNX Runtime returned outputs of unexpected shapes for a batch of " +
                                          std::to_string(n) + " (logits, pred_class, map must be (N, " +
                                          std::to_string(classes) + "), (N,), (N, " + std::to_string(h) + ", " +
                                          std::to_string(w) + "))");
    r.num_classes = static_cast<int>(classes);
    const float* lp = outs[0].GetTensorData<float>();
    r.logits.assign(lp, lp + static_cast<size_t>(n) * classes);
    const int64_t* cp = outs[1].GetTensorData<int64_t>();
    r.pred_class.assign(cp, cp + n);
    const float* mp = outs[2].GetTensorData<float>();
    r.map.assign(mp, mp + static_cast<size_t>(n) * h * w);
    return r;
  }

  const Metadata& metadata() const override { return meta_; }
  std::string backend() const override { return "onnxruntime"; }
  std::vector<std::string> providers() const override { return providers_; }
  bool fell_back_to_cpu() const override { return fell_back_; }
  bool thread_safe() const override { return true; }  // Ort::Session::Run is thread-safe
  int max_batch() const override { return max_batch_; }

 private:
  std::unique_ptr<Ort::Session> open(const ModelSource& src, const std::string& ops, int threads, int cuda_index) {
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(threads);
    so.SetInterOpNumThreads(1);
    so.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
    so.AddConfigEntry("session.intra_op.allow_spinning", "0");
    so.AddConfigEntry("session.inter_op.allow_spinning", "0");
    if (!ops.empty()) {
      try {
        so.RegisterCustomOpsLibrary(ops.c_str());
      } catch (const Ort::Exception& e) {
        throw Error(ErrorKind::BackendUnavailable, "ONNX Runtime could not load the custom-op library " + ops + ": " +
                                                       e.what() + " (fix: build it with `make kernels`, or unset "
                                                                  "FCAM_ORT_OPS / pass the right path)");
      }
    }
    providers_.clear();
    if (cuda_index >= 0 && have_cuda_ep_) {
      try {
        OrtCUDAProviderOptions cuda{};
        cuda.device_id = cuda_index;
        so.AppendExecutionProvider_CUDA(cuda);
        providers_.push_back("CUDAExecutionProvider");
      } catch (const Ort::Exception&) {
        // reported through fell_back_to_cpu(), as the Python runtime does
      }
    }
    if (src.in_memory()) return std::make_unique<Ort::Session>(shared_env(), src.data, src.size, so);
    return std::make_unique<Ort::Session>(shared_env(), src.path.c_str(), so);
  }

  static Error load_error(const std::string& name, const std::string& what, const std::string& ops) {
    if (missing_custom_op(what))
      return Error(ErrorKind::BackendUnavailable,
                   name + ": the custom-op library " + ops + " does not provide the fcam::CamPostprocess kernel "
                          "(fix: rebuild libfcam_ort_ops.so with `make kernels`): " + what);
    const bool missing = what.find("No such file") != std::string::npos ||
                         what.find("doesn't exist") != std::string::npos;
    return Error(ErrorKind::ModelFormat, name + (missing ? ": no such model file: " : ": ONNX Runtime cannot load it: ") + what);
  }

  std::unique_ptr<Ort::Session> session_;
  Metadata meta_;
  std::vector<std::string> providers_;
  bool have_cuda_ep_ = false;
  bool fell_back_ = false;
  int max_batch_ = 1;
};

}  // namespace

std::unique_ptr<Runner> make_ort_runner(const ModelSource& source, const LocalizerOptions& options, int threads) {
  return std::make_unique<OrtRunner>(source, options, threads);
}

}  // namespace detail
}  // namespace fcam
