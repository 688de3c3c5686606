// TensorRT plugin FcamCamPostprocess (version "1", namespace "fcam"): IPluginV3 with the IPluginV3OneCore /
// IPluginV3OneBuild / IPluginV3OneRuntime capabilities, created by an IPluginCreatorV3One. Works with the
// TensorRT 10.x and 11.x headers (only the v_1_0 capability interfaces are used).
//
// The library exposes the dynamic entry points getCreators / setLoggerFinder and does NOT link libnvinfer:
// load it with IPluginRegistry::loadLibrary, trt.get_plugin_registry().load_library(path) or
// `trtexec --dynamicPlugins=libfcam_trt_plugins.so` (and --setPluginsToSerialize to embed it in a plan).
//
// ONNX: the parser maps the node fcam::CamPostprocess (op_type "CamPostprocess", string attributes
// plugin_namespace="fcam", plugin_version="1") to the alias creator "CamPostprocess"; a node with op_type
// "FcamCamPostprocess" reaches the canonical one. INT attributes arrive as kINT32 fields, FLOAT as kFLOAT32.
// I/O: input maps float32 (N, h, w); outputs full float32 (N, H, W), mask INT32 0/1 (N, H, W), boxes int32
// (N, K, 4), count int32 (N). The mask is int32 because IPluginV3OneBuild::getOutputDataTypes may not declare
// kUINT8 or kBOOL (NvInferRuntime.h, TensorRT 10.3 ... 11.1); the exported ONNX graph casts it to the uint8
// `mask` output with a standard Cast, which TensorRT builds as an ICastLayer (the only kind of layer allowed to
// produce a UINT8 network output). enqueue calls fcam::camPostprocessCuda on TensorRT's stream and workspace.
#include <NvInferRuntime.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fcam/cam_postprocess.h"
#include "fcam/names.h"

namespace fcam {
namespace trt {
namespace {

using namespace nvinfer1;
namespace nm = fcam::names;

std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

void logError(const std::string& msg) {
  ILoggerFinder* finder = gLoggerFinder.load();
  ILogger* logger = finder ? finder->findLogger() : nullptr;
  if (logger) logger->log(ILogger::Severity::kERROR, (std::string(nm::kTrtPluginName) + ": " + msg).c_str());
}

constexpr int32_t kNbFields = 7;

struct Attrs {
  int32_t out_h = 0, out_w = 0;
  float tau = 0.5f;
  int32_t quantize_uint8 = 0, protocol_boxes = 0, max_boxes = 1, normalize = 1;

  // Checked when the plugin is created (engine build, or deserialization), so a bad attribute fails the build
  // with a message instead of every enqueue: the launcher's own limits on the fields that do not depend on the
  // input shape (validateParams with a 1x1x1 input).
  bool valid(std::string* why) const {
    if (out_h < 1 || out_w < 1) { *why = "out_h and out_w must be >= 1"; return false; }
    if (int64_t(out_h) * out_w > kMaxPixelsPerMap) { *why = "out_h * out_w must be <= 2^30"; return false; }
    if (!(tau >= 0.0f && tau <= 1.0f)) { *why = "tau must be in [0, 1]"; return false; }
    if (max_boxes < 1 || max_boxes > (int32_t(1) << 24)) { *why = "max_boxes must be in [1, 2^24]"; return false; }
    if (validateParams(params(1, 1, 1)) != Status::kOk) { *why = "invalid attributes"; return false; }
    return true;
  }

  CamPostprocessParams params(int64_t n, int64_t in_h, int64_t in_w) const {
    CamPostprocessParams p;
    p.n = n; p.in_h = in_h; p.in_w = in_w; p.out_h = out_h; p.out_w = out_w; p.tau = tau;
    p.quantize_uint8 = quantize_uint8 != 0; p.protocol_boxes = protocol_boxes != 0;
    p.max_boxes = max_boxes; p.normalize = normalize != 0;
    p.mask_type = MaskType::kInt32;  // see the file comment
    return p;
  }
};

// Reads one scalar field that may come as INT32, INT64 (ints) or FLOAT32/FLOAT64 (tau). Returns "" or the
// reason it cannot (wrong type, no data, an INT64 value outside the int32 range, a non-finite tau).
std::string readField(const PluginField& f, Attrs& a) {
  const std::string name = f.name ? f.name : "?";
  auto asInt = [&](int32_t* dst) -> std::string {
    if (f.length < 1 || !f.data) return "field '" + name + "' has no data";
    if (f.type == PluginFieldType::kINT32) { *dst = *static_cast<const int32_t*>(f.data); return ""; }
    if (f.type == PluginFieldType::kINT64) {
      const int64_t v = *static_cast<const int64_t*>(f.data);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        return "field '" + name + "' = " + std::to_string(v) + " is outside the int32 range";
      }
      *dst = static_cast<int32_t>(v);
      return "";
    }
    return "field '" + name + "' must be INT32 or INT64";
  };
  const char* n = f.name;
  if (!n) return "";
  if (!std::strcmp(n, nm::kAttrOutH)) return asInt(&a.out_h);
  if (!std::strcmp(n, nm::kAttrOutW)) return asInt(&a.out_w);
  if (!std::strcmp(n, nm::kAttrQuantizeUint8)) return asInt(&a.quantize_uint8);
  if (!std::strcmp(n, nm::kAttrProtocolBoxes)) return asInt(&a.protocol_boxes);
  if (!std::strcmp(n, nm::kAttrMaxBoxes)) return asInt(&a.max_boxes);
  if (!std::strcmp(n, nm::kAttrNormalize)) return asInt(&a.normalize);
  if (!std::strcmp(n, nm::kAttrTau)) {
    if (f.length < 1 || !f.data) return "field 'tau' has no data";
    if (f.type == PluginFieldType::kFLOAT32) { a.tau = *static_cast<const float*>(f.data); return ""; }
    if (f.type == PluginFieldType::kFLOAT64) { a.tau = float(*static_cast<const double*>(f.data)); return ""; }
    return "field 'tau' must be FLOAT32 or FLOAT64";
  }
  return "";  // unknown fields (plugin_namespace, plugin_version, ...) are ignored
}

class CamPostprocessPlugin final : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild,
                                   public IPluginV3OneRuntime {
 public:
  explicit CamPostprocessPlugin(const Attrs& a) : a_(a) { buildSerialFields(); }

  // IPluginV3
  IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
    switch (type) {
      case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
      case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
      case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }
  IPluginV3* clone() noexcept override {
    try { return new CamPostprocessPlugin(a_); } catch (...) { return nullptr; }
  }

  // IPluginV3OneCore
  AsciiChar const* getPluginName() const noexcept override { return nm::kTrtPluginName; }
  AsciiChar const* getPluginVersion() const noexcept override { return nm::kTrtPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return nm::kTrtPluginNamespace; }

  // IPluginV3OneBuild
  int32_t getNbOutputs() const noexcept override { return 4; }
  int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*,
                          int32_t nbOutputs) noexcept override {
    if (nbInputs != 1 || nbOutputs != 4 || in[0].desc.dims.nbDims != 3) {
      logError("expects one (N, h, w) input and four outputs");
      return -1;
    }
    return 0;
  }
  int32_t getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in,
                             int32_t nbInputs) const noexcept override {
    if (nbInputs != 1 || nbOutputs != 4 || in[0] != DataType::kFLOAT) return -1;
    out[0] = DataType::kFLOAT;
    out[1] = DataType::kINT32;  // mask 0/1: kUINT8 / kBOOL are not allowed for plugin outputs
    out[2] = DataType::kINT32;
    out[3] = DataType::kINT32;
    return 0;
  }
  int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                          int32_t nbOutputs, IExprBuilder& eb) noexcept override {
    if (nbInputs != 1 || nbOutputs != 4 || inputs[0].nbDims != 3) return -1;
    const IDimensionExpr* n = inputs[0].d[0];
    outputs[0].nbDims = 3;
    outputs[0].d[0] = n;
    outputs[0].d[1] = eb.constant(a_.out_h);
    outputs[0].d[2] = eb.constant(a_.out_w);
    outputs[1] = outputs[0];
    outputs[2].nbDims = 3;
    outputs[2].d[0] = n;
    outputs[2].d[1] = eb.constant(a_.max_boxes);
    outputs[2].d[2] = eb.constant(4);
    outputs[3].nbDims = 1;
    outputs[3].d[0] = n;
    return 0;
  }
  bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override {
    if (nbInputs != 1 || nbOutputs != 4 || pos < 0 || pos > 4) return false;
    static const DataType kTypes[5] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32, DataType::kINT32,
                                       DataType::kINT32};
    return io[pos].desc.format == TensorFormat::kLINEAR && io[pos].desc.type == kTypes[pos];
  }
  size_t getWorkspaceSize(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*,
                          int32_t) const noexcept override {
    if (nbInputs != 1 || in[0].max.nbDims != 3) return 0;
    return camPostprocessCudaWorkspaceSize(a_.params(in[0].max.d[0], in[0].max.d[1], in[0].max.d[2]));
  }

  // IPluginV3OneRuntime
  int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*,
                        int32_t nbOutputs) noexcept override {
    if (nbInputs != 1 || nbOutputs != 4 || in[0].dims.nbDims != 3) return -1;
    const CamPostprocessParams p = a_.params(in[0].dims.d[0], in[0].dims.d[1], in[0].dims.d[2]);
    return validateParams(p) == Status::kOk ? 0 : -1;
  }
  int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const*, void const* const* inputs,
                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
    const Dims& d = inDesc[0].dims;
    const CamPostprocessParams p = a_.params(d.d[0], d.d[1], d.d[2]);
    const size_t ws = camPostprocessCudaWorkspaceSize(p);
    const int err = camPostprocessCuda(static_cast<const float*>(inputs[0]), static_cast<float*>(outputs[0]),
                                       outputs[1], static_cast<int32_t*>(outputs[2]),
                                       static_cast<int32_t*>(outputs[3]), p, workspace, ws,
                                       reinterpret_cast<CUstream_st*>(stream));
    if (err != 0) {
      logError("CUDA launcher failed with error " + std::to_string(err) + ": " + camPostprocessCudaErrorString(err));
      return -1;
    }
    return 0;
  }
  IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }
  PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &fc_; }

 private:
  void buildSerialFields() {
    fields_.clear();
    fields_.emplace_back(nm::kAttrOutH, &a_.out_h, PluginFieldType::kINT32, 1);
    fields_.emplace_back(nm::kAttrOutW, &a_.out_w, PluginFieldType::kINT32, 1);
    fields_.emplace_back(nm::kAttrTau, &a_.tau, PluginFieldType::kFLOAT32, 1);
    fields_.emplace_back(nm::kAttrQuantizeUint8, &a_.quantize_uint8, PluginFieldType::kINT32, 1);
    fields_.emplace_back(nm::kAttrProtocolBoxes, &a_.protocol_boxes, PluginFieldType::kINT32, 1);
    fields_.emplace_back(nm::kAttrMaxBoxes, &a_.max_boxes, PluginFieldType::kINT32, 1);
    fields_.emplace_back(nm::kAttrNormalize, &a_.normalize, PluginFieldType::kINT32, 1);
    fc_.nbFields = static_cast<int32_t>(fields_.size());
    fc_.fields = fields_.data();
  }

  Attrs a_;
  std::vector<PluginField> fields_;
  PluginFieldCollection fc_{};
};

// Two creators build the same plugin: "FcamCamPostprocess" (canonical; the name the plugin reports, so
// serialized engines deserialize through it) and "CamPostprocess", the ONNX node's op_type, because the ONNX
// parser looks a custom node up as plugin name = op_type, namespace = plugin_namespace attribute.
class CamPostprocessCreator final : public IPluginCreatorV3One {
 public:
  explicit CamPostprocessCreator(const char* name) : name_(name) {
    names_.emplace_back(nm::kAttrOutH, nullptr, PluginFieldType::kINT32, 1);
    names_.emplace_back(nm::kAttrOutW, nullptr, PluginFieldType::kINT32, 1);
    names_.emplace_back(nm::kAttrTau, nullptr, PluginFieldType::kFLOAT32, 1);
    names_.emplace_back(nm::kAttrQuantizeUint8, nullptr, PluginFieldType::kINT32, 1);
    names_.emplace_back(nm::kAttrProtocolBoxes, nullptr, PluginFieldType::kINT32, 1);
    names_.emplace_back(nm::kAttrMaxBoxes, nullptr, PluginFieldType::kINT32, 1);
    names_.emplace_back(nm::kAttrNormalize, nullptr, PluginFieldType::kINT32, 1);
    fc_.nbFields = static_cast<int32_t>(names_.size());
    fc_.fields = names_.data();
  }
  IPluginV3* createPlugin(AsciiChar const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
    try {
      Attrs a;
      bool have_h = false, have_w = false;
      for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
        const PluginField& f = fc->fields[i];
        const std::string err = readField(f, a);
        if (!err.empty()) {
          logError(err);
          return nullptr;
        }
        if (f.name && !std::strcmp(f.name, nm::kAttrOutH)) have_h = true;
        if (f.name && !std::strcmp(f.name, nm::kAttrOutW)) have_w = true;
      }
      std::string why;
      if (!have_h || !have_w) {
        logError("fields out_h and out_w are required");
        return nullptr;
      }
      if (!a.valid(&why)) {
        logError(why);
        return nullptr;
      }
      return new CamPostprocessPlugin(a);
    } catch (...) {
      return nullptr;
    }
  }
  PluginFieldCollection const* getFieldNames() noexcept override { return &fc_; }
  AsciiChar const* getPluginName() const noexcept override { return name_; }
  AsciiChar const* getPluginVersion() const noexcept override { return nm::kTrtPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return nm::kTrtPluginNamespace; }

 private:
  const char* name_;
  std::vector<PluginField> names_;
  PluginFieldCollection fc_{};
};

}  // namespace
}  // namespace trt
}  // namespace fcam

static_assert(fcam::trt::kNbFields == 7, "keep the field tables in sync");

extern "C" __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  fcam::trt::gLoggerFinder.store(finder);
}

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
    int32_t& nbCreators) {
  static fcam::trt::CamPostprocessCreator canonical(fcam::names::kTrtPluginName);
  static fcam::trt::CamPostprocessCreator onnx_alias(fcam::names::kOnnxOp);
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&canonical, &onnx_alias};
  nbCreators = 2;
  return creators;
}
