// TensorRT backend (TensorRT 10.x / 11.x name-based API): deserialize a plan from `fcam build-engine`, read its
// sidecar <plan>.json for the metadata, setInputShape / setTensorAddress per I/O tensor, enqueueV3 on a stream.
// Compiled only when CMake found TensorRT (FCAM_HAVE_TENSORRT); otherwise loading a plan reports how to get it.
#include <fstream>
#include <sstream>

#include "internal.hpp"

#ifdef FCAM_HAVE_TENSORRT
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <mutex>
#endif

namespace fcam {
namespace detail {

#ifdef FCAM_HAVE_TENSORRT
namespace {

std::string read_file(const std::string& path, ErrorKind kind, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(kind, path + ": " + what);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class TrtLogger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) last_ = msg;
  }
  std::string last_;
};

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(ErrorKind::Runtime, std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr(o.ptr), bytes(o.bytes) { o.ptr = nullptr; o.bytes = 0; }
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  void reserve(size_t n) {
    if (n <= bytes) return;
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    check_cuda(cudaMalloc(&ptr, n), "cudaMalloc");
    bytes = n;
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

size_t element_size(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kINT64: return 8;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kBF16: return 2;
    case nvinfer1::DataType::kUINT8: return 1;
    case nvinfer1::DataType::kINT8: return 1;
    case nvinfer1::DataType::kBOOL: return 1;
    default: throw Error(ErrorKind::ModelFormat, "engine I/O tensor of an unsupported data type");
  }
}

std::vector<std::int64_t> dims_of(const nvinfer1::Dims& d) {
  std::vector<std::int64_t> out;
  for (int i = 0; i < d.nbDims; ++i) out.push_back(static_cast<std::int64_t>(d.d[i]));
  return out;
}

class TrtRunner final : public Runner {
 public:
  TrtRunner(const ModelSource& src, const LocalizerOptions& options) {
    const std::string& name = src.path;
    device_ = parse_device(options.device);
    if (device_ < 0) device_ = 0;  // TensorRT always runs on a GPU
    check_cuda(cudaSetDevice(device_), "cudaSetDevice (is a CUDA GPU present?)");
    std::string side, blob;
    if (src.in_memory()) {
      if (src.sidecar_json.empty())
        throw Error(ErrorKind::Input, "TensorRT from memory needs the plan's metadata: pass the text of its sidecar "
                                      "<plan>.json as metadata_json");
      side = src.sidecar_json;
      blob.assign(static_cast<const char*>(src.data), src.size);
    } else {
      side = read_file(name + ".json", ErrorKind::ModelFormat,
                       "sidecar missing; rebuild the engine with `fcam build-engine`, which writes <plan>.json next to "
                       "the plan");
    }
    const auto props = parse_flat_json_object(side, name + ".json");
    meta_ = parse_metadata(props, name + ".json");
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error(ErrorKind::BackendUnavailable, "TensorRT could not create a runtime: " + logger_.last_);
    const std::string plugins = options.plugin_library.empty() ? env("FCAM_TRT_PLUGINS") : options.plugin_library;
    const bool serialized = props.count("fcam_deploy_engine.plugins_serialized") &&
                            props.at("fcam_deploy_engine.plugins_serialized") == "true";
    if (serialized) runtime_->setEngineHostCodeAllowed(true);
    if (!plugins.empty()) {
      if (!runtime_->getPluginRegistry().loadLibrary(plugins.c_str()))
        throw Error(ErrorKind::BackendUnavailable,
                    "TensorRT could not load plugin library " + plugins + ": " + logger_.last_);
    }
    if (!src.in_memory()) blob = read_file(name, ErrorKind::ModelFormat, "cannot read the plan");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_)
      throw Error(ErrorKind::ModelFormat, name + ": TensorRT could not deserialize the plan (other TensorRT version or "
                                                 "GPU, or a missing plugin library): " + logger_.last_);
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(ErrorKind::BackendUnavailable, "TensorRT could not create an execution context");
    for (const char* out : {"logits", "pred_class", "map"})
      if (engine_->getTensorIOMode(out) != nvinfer1::TensorIOMode::kOUTPUT)
        throw Error(ErrorKind::ModelFormat, name + ": engine lacks output '" + out + "'");
    if (engine_->getTensorIOMode("images") != nvinfer1::TensorIOMode::kINPUT ||
        engine_->getTensorDataType("images") != nvinfer1::DataType::kUINT8)
      throw Error(ErrorKind::ModelFormat, name + ": engine input 'images' must be uint8 (N, H, W, 3)");
    check_graph_shapes(meta_, dims_of(engine_->getTensorShape("images")), dims_of(engine_->getTensorShape("logits")),
                       dims_of(engine_->getTensorShape("map")), name);
    const nvinfer1::Dims hi = engine_->getProfileShape("images", 0, nvinfer1::OptProfileSelector::kMAX);
    const nvinfer1::Dims in = engine_->getTensorShape("images");
    max_batch_ = in.d[0] > 0 ? static_cast<int>(in.d[0]) : (hi.nbDims == 4 && hi.d[0] > 0 ? static_cast<int>(hi.d[0]) : 1);
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }

  ~TrtRunner() override {
    context_.reset();
    engine_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  RawOutputs run(const std::uint8_t* images, int n) override {
    const int h = meta_.input_height, w = meta_.input_width;
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    const nvinfer1::Dims in = engine_->getProfileShape("images", 0, nvinfer1::OptProfileSelector::kMAX);
    const nvinfer1::Dims lo = engine_->getProfileShape("images", 0, nvinfer1::OptProfileSelector::kMIN);
    if (in.nbDims == 4 && (n > in.d[0] || n < lo.d[0]))
      throw Error(ErrorKind::Input, "batch of " + std::to_string(n) + " is outside the engine's optimisation profile [" +
                                        std::to_string(lo.d[0]) + ", " + std::to_string(in.d[0]) + "]");
    nvinfer1::Dims4 shape{n, h, w, 3};
    if (!context_->setInputShape("images", shape)) throw Error(ErrorKind::Input, "TensorRT rejected the input shape");
    const size_t in_bytes = static_cast<size_t>(n) * h * w * 3;
    input_.reserve(in_bytes);
    check_cuda(cudaMemcpyAsync(input_.ptr, images, in_bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
    context_->setTensorAddress("images", input_.ptr);
    // Every output tensor needs an address; only logits, pred_class and map are copied back.
    std::vector<std::string> all_outputs;
    for (int t = 0; t < engine_->getNbIOTensors(); ++t) {
      const char* tn = engine_->getIOTensorName(t);
      if (engine_->getTensorIOMode(tn) == nvinfer1::TensorIOMode::kOUTPUT) all_outputs.emplace_back(tn);
    }
    outputs_dev_.resize(all_outputs.size());
    std::vector<std::vector<char>> host(outputs_.size());
    std::vector<nvinfer1::Dims> dims(outputs_.size());
    std::vector<size_t> dev_index(outputs_.size());
    for (size_t j = 0; j < all_outputs.size(); ++j) {
      const char* name = all_outputs[j].c_str();
      const nvinfer1::Dims d = context_->getTensorShape(name);
      size_t count = 1;
      for (int k = 0; k < d.nbDims; ++k) count *= static_cast<size_t>(d.d[k] > 0 ? d.d[k] : 0);
      const size_t bytes = count * element_size(engine_->getTensorDataType(name));
      outputs_dev_[j].reserve(bytes > 0 ? bytes : 1);
      context_->setTensorAddress(name, outputs_dev_[j].ptr);
      for (size_t i = 0; i < outputs_.size(); ++i)
        if (outputs_[i] == all_outputs[j]) {
          dims[i] = d;
          host[i].resize(bytes);
          dev_index[i] = j;
        }
    }
    if (!context_->enqueueV3(stream_)) throw Error(ErrorKind::Runtime, "TensorRT enqueueV3 failed: " + logger_.last_);
    for (size_t i = 0; i < outputs_.size(); ++i)
      check_cuda(cudaMemcpyAsync(host[i].data(), outputs_dev_[dev_index[i]].ptr, host[i].size(), cudaMemcpyDeviceToHost,
                                 stream_),
                 "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    RawOutputs r;
    r.n = n;
    r.height = h;
    r.width = w;
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const std::string& name = outputs_[i];
      const char* p = host[i].data();
      const size_t bytes = host[i].size();
      if (name == "logits") {
        r.num_classes = static_cast<int>(dims[i].d[1]);
        r.logits.resize(bytes / 4);
        std::memcpy(r.logits.data(), p, bytes);
      } else if (name == "pred_class") {
        if (engine_->getTensorDataType(name.c_str()) == nvinfer1::DataType::kINT32) {  // parser may narrow ArgMax
          std::vector<int32_t> narrow(bytes / 4);
          std::memcpy(narrow.data(), p, bytes);
          r.pred_class.assign(narrow.begin(), narrow.end());
        } else {
          r.pred_class.resize(bytes / 8);
          std::memcpy(r.pred_class.data(), p, bytes);
        }
      } else if (name == "map") {
        r.map.resize(bytes / 4);
        std::memcpy(r.map.data(), p, bytes);
      }
    }
    return r;
  }

  const Metadata& metadata() const override { return meta_; }
  std::string backend() const override { return "tensorrt"; }
  std::vector<std::string> providers() const override { return {"tensorrt:cuda:" + std::to_string(device_)}; }
  bool fell_back_to_cpu() const override { return false; }
  bool thread_safe() const override { return false; }  // one execution context: the Localizer serialises calls
  int max_batch() const override { return max_batch_; }

 private:
  TrtLogger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  DeviceBuffer input_;
  std::vector<DeviceBuffer> outputs_dev_;
  Metadata meta_;
  // Only these are fetched: the Localizer post-processes the map itself (the graph's mask / boxes are not used).
  std::vector<std::string> outputs_{"logits", "pred_class", "map"};
  int max_batch_ = 1;
};

}  // namespace

std::unique_ptr<Runner> make_trt_runner(const ModelSource& source, const LocalizerOptions& options) {
  return std::make_unique<TrtRunner>(source, options);
}

#else

std::unique_ptr<Runner> make_trt_runner(const ModelSource& source, const LocalizerOptions&) {
  throw Error(ErrorKind::BackendUnavailable,
              source.path + ": this fcam_localizer was built without TensorRT; rebuild with TENSORRT_ROOT pointing at a "
                     "TensorRT 10.x/11.x install (include/NvInfer.h, lib/libnvinfer.so) and the CUDA toolkit");
}

#endif

}  // namespace detail
}  // namespace fcam
