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

class TrtRunner final : public Runner {
 public:
  TrtRunner(const std::string& path, const LocalizerOptions& options) {
    device_ = 0;
    if (options.device.rfind("cuda:", 0) == 0) device_ = std::stoi(options.device.substr(5));
    check_cuda(cudaSetDevice(device_), "cudaSetDevice (is a CUDA GPU present?)");
    const std::string side = read_file(path + ".json", ErrorKind::ModelFormat,
                                       "sidecar missing; rebuild the engine with `fcam build-engine`, which writes "
                                       "<plan>.json next to the plan");
    const auto props = parse_flat_json_object(side, path + ".json");
    meta_ = parse_metadata(props, path + ".json");
    outputs_ = output_names(meta_);
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error(ErrorKind::BackendUnavailable, "TensorRT could not create a runtime: " + logger_.last_);
    const std::string plugins = env_or("FCAM_TRT_PLUGINS", options.plugin_library);
    const bool serialized = props.count("fcam_deploy_engine.plugins_serialized") &&
                            props.at("fcam_deploy_engine.plugins_serialized") == "true";
    if (serialized) runtime_->setEngineHostCodeAllowed(true);
    if (!plugins.empty()) {
      if (!runtime_->getPluginRegistry().loadLibrary(plugins.c_str()))
        throw Error(ErrorKind::BackendUnavailable,
                    "TensorRT could not load plugin library " + plugins + ": " + logger_.last_);
    }
    const std::string blob = read_file(path, ErrorKind::ModelFormat, "cannot read the plan");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_)
      throw Error(ErrorKind::ModelFormat, path + ": TensorRT could not deserialize the plan (other TensorRT version or "
                                                 "GPU, or a missing plugin library): " + logger_.last_);
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(ErrorKind::BackendUnavailable, "TensorRT could not create an execution context");
    for (const auto& name : outputs_)
      if (engine_->getTensorIOMode(name.c_str()) != nvinfer1::TensorIOMode::kOUTPUT)
        throw Error(ErrorKind::ModelFormat, path + ": engine lacks output '" + name + "'");
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
    outputs_dev_.resize(outputs_.size());
    std::vector<std::vector<char>> host(outputs_.size());
    std::vector<nvinfer1::Dims> dims(outputs_.size());
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const char* name = outputs_[i].c_str();
      dims[i] = context_->getTensorShape(name);
      size_t count = 1;
      for (int d = 0; d < dims[i].nbDims; ++d) count *= static_cast<size_t>(dims[i].d[d]);
      const size_t bytes = count * element_size(engine_->getTensorDataType(name));
      outputs_dev_[i].reserve(bytes);
      host[i].resize(bytes);
      context_->setTensorAddress(name, outputs_dev_[i].ptr);
    }
    if (!context_->enqueueV3(stream_)) throw Error(ErrorKind::Runtime, "TensorRT enqueueV3 failed: " + logger_.last_);
    for (size_t i = 0; i < outputs_.size(); ++i)
      check_cuda(cudaMemcpyAsync(host[i].data(), outputs_dev_[i].ptr, host[i].size(), cudaMemcpyDeviceToHost, stream_),
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
      } else if (name == "boxes") {
        r.has_boxes = true;
        r.max_boxes = static_cast<int>(dims[i].d[1]);
        r.boxes.resize(bytes / 4);
        std::memcpy(r.boxes.data(), p, bytes);
      } else if (name == "box_count") {
        r.box_count.resize(bytes / 4);
        std::memcpy(r.box_count.data(), p, bytes);
      }
    }
    return r;
  }

  const Metadata& metadata() const override { return meta_; }
  std::string backend() const override { return "tensorrt"; }
  std::vector<std::string> providers() const override { return {"tensorrt:cuda:" + std::to_string(device_)}; }
  bool fell_back_to_cpu() const override { return false; }
  bool thread_safe() const override { return false; }  // one execution context: the Localizer serialises calls

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
  std::vector<std::string> outputs_;
};

}  // namespace

std::unique_ptr<Runner> make_trt_runner(const std::string& path, const LocalizerOptions& options) {
  return std::make_unique<TrtRunner>(path, options);
}

#else

std::unique_ptr<Runner> make_trt_runner(const std::string& path, const LocalizerOptions&) {
  throw Error(ErrorKind::BackendUnavailable,
              path + ": this fcam_localizer was built without TensorRT; rebuild with TENSORRT_ROOT pointing at a "
                     "TensorRT 10.x/11.x install (include/NvInfer.h, lib/libnvinfer.so) and the CUDA toolkit");
}

#endif

}  // namespace detail
}  // namespace fcam
