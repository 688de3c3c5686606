// Host-only test of libfcam_trt_plugins.so against the TensorRT headers, without libnvinfer or a GPU:
// dlopen, getCreators / setLoggerFinder, creator names and fields, createPlugin (valid, invalid, missing
// fields, INT64 range, max_boxes limit), capability interfaces, output types (no UINT8/BOOL: the mask is int32),
// format combinations, workspace size (int32 mask), serialization round trip.
// Built by CMake only where TensorRT headers are found; build.sh runs it.  Usage: fcam_trt_plugin_test LIB.so
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fcam/cam_postprocess.h"
#include "fcam/names.h"

using namespace nvinfer1;

namespace {
int g_fail = 0;
#define CHECK(cond, msg)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      ++g_fail;                                                   \
      std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, msg); \
    }                                                             \
  } while (0)

struct Logger : ILogger {
  std::vector<std::string> errors;
  void log(Severity s, AsciiChar const* msg) noexcept override {
    if (s <= Severity::kERROR) errors.emplace_back(msg);
  }
};
struct Finder : ILoggerFinder {
  Logger* logger;
  explicit Finder(Logger* l) : logger(l) {}
  ILogger* findLogger() override { return logger; }
};

PluginFieldCollection fields(std::vector<PluginField>& v) {
  PluginFieldCollection fc;
  fc.nbFields = static_cast<int32_t>(v.size());
  fc.fields = v.data();
  return fc;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) { std::fprintf(stderr, "usage: %s libfcam_trt_plugins.so\n", argv[0]); return 2; }
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
  using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
  using SetFinder = void (*)(ILoggerFinder*);
  auto getCreators = reinterpret_cast<GetCreators>(dlsym(h, "getCreators"));
  auto setFinder = reinterpret_cast<SetFinder>(dlsym(h, "setLoggerFinder"));
  CHECK(getCreators && setFinder, "entry points exported");
  if (!getCreators || !setFinder) return 1;
  Logger logger;
  Finder finder(&logger);
  setFinder(&finder);
  int32_t n = 0;
  IPluginCreatorInterface* const* cs = getCreators(n);
  CHECK(n == 2, "two creators (canonical + ONNX alias)");
  const char* want[2] = {fcam::names::kTrtPluginName, fcam::names::kOnnxOp};
  for (int32_t i = 0; i < n && i < 2; ++i) {
    CHECK(std::strcmp(cs[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "creator kind V3One");
    auto* c = static_cast<IPluginCreatorV3One*>(cs[i]);
    CHECK(std::strcmp(c->getPluginName(), want[i]) == 0, "creator name");
    CHECK(std::strcmp(c->getPluginVersion(), "1") == 0, "creator version");
    CHECK(std::strcmp(c->getPluginNamespace(), "fcam") == 0, "creator namespace");
    CHECK(c->getFieldNames()->nbFields == 7, "7 fields");
  }
  auto* creator = static_cast<IPluginCreatorV3One*>(cs[1]);  // what the ONNX parser finds
  int32_t oh = 224, ow = 200, k = 3, q = 1, pb = 1, norm = 1;
  float tau = 0.5f;
  std::vector<PluginField> f = {{"out_h", &oh, PluginFieldType::kINT32, 1}, {"out_w", &ow, PluginFieldType::kINT32, 1},
                                {"tau", &tau, PluginFieldType::kFLOAT32, 1}, {"max_boxes", &k, PluginFieldType::kINT32, 1},
                                {"quantize_uint8", &q, PluginFieldType::kINT32, 1},
                                {"protocol_boxes", &pb, PluginFieldType::kINT32, 1},
                                {"normalize", &norm, PluginFieldType::kINT32, 1}};
  PluginFieldCollection fc = fields(f);
  IPluginV3* plugin = creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD);
  CHECK(plugin != nullptr, "createPlugin with valid fields");
  if (!plugin) return 1;
  auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
  auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  CHECK(core && build && rt, "three capabilities");
  CHECK(std::strcmp(core->getPluginName(), fcam::names::kTrtPluginName) == 0, "plugin reports the canonical name");
  CHECK(build->getNbOutputs() == 4, "4 outputs");
  DataType in[1] = {DataType::kFLOAT}, out[4];
  CHECK(build->getOutputDataTypes(out, 4, in, 1) == 0, "output types");
  CHECK(out[0] == DataType::kFLOAT && out[1] == DataType::kINT32 && out[2] == DataType::kINT32 &&
            out[3] == DataType::kINT32, "output types values (mask int32)");
  // NvInferRuntime.h, getOutputDataTypes: "DataType::kBOOL and DataType::kUINT8 are not supported"
  for (int i = 0; i < 4; ++i) {
    CHECK(out[i] != DataType::kUINT8 && out[i] != DataType::kBOOL, "no UINT8/BOOL plugin output");
  }
  DynamicPluginTensorDesc io[5]{};
  const DataType types[5] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32, DataType::kINT32, DataType::kINT32};
  for (int i = 0; i < 5; ++i) {
    io[i].desc.type = types[i];
    io[i].desc.format = TensorFormat::kLINEAR;
  }
  for (int i = 0; i < 5; ++i) CHECK(build->supportsFormatCombination(i, io, 1, 4), "supported combination");
  io[2].desc.type = DataType::kUINT8;
  CHECK(!build->supportsFormatCombination(2, io, 1, 4), "uint8 mask output rejected");
  io[2].desc.type = DataType::kINT32;
  io[0].desc.type = DataType::kHALF;
  CHECK(!build->supportsFormatCombination(0, io, 1, 4), "half input rejected");
  io[0].max.nbDims = 3;
  io[0].max.d[0] = 8; io[0].max.d[1] = 28; io[0].max.d[2] = 28;
  fcam::CamPostprocessParams p;
  p.n = 8; p.in_h = 28; p.in_w = 28; p.out_h = oh; p.out_w = ow; p.max_boxes = k;
  p.mask_type = fcam::MaskType::kInt32;  // + the launcher's internal uint8 mask
  const size_t ws = build->getWorkspaceSize(io, 1, io + 1, 4);
  CHECK(ws > 0 && ws == fcam::camPostprocessCudaWorkspaceSize(p), "workspace from max dims (int32 mask)");
  p.mask_type = fcam::MaskType::kUint8;
  CHECK(ws > fcam::camPostprocessCudaWorkspaceSize(p), "int32-mask workspace holds the uint8 mask too");
  // serialization round trip through the canonical creator
  const PluginFieldCollection* ser = rt->getFieldsToSerialize();
  CHECK(ser && ser->nbFields == 7, "7 serialized fields");
  IPluginV3* again = static_cast<IPluginCreatorV3One*>(cs[0])->createPlugin("pp", ser, TensorRTPhase::kRUNTIME);
  CHECK(again != nullptr, "deserialize from serialized fields");
  IPluginV3* cl = plugin->clone();
  CHECK(cl != nullptr, "clone");
  // invalid and missing fields
  float bad_tau = 2.0f;
  f[2].data = &bad_tau;
  fc = fields(f);
  CHECK(creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD) == nullptr, "tau = 2 rejected");
  CHECK(!logger.errors.empty() && logger.errors.back().find("tau") != std::string::npos, "error names tau");
  f[2].data = &tau;
  std::vector<PluginField> missing(f.begin() + 1, f.end());
  fc = fields(missing);
  CHECK(creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD) == nullptr, "missing out_h rejected");
  int64_t oh64 = 100;
  f[0] = PluginField("out_h", &oh64, PluginFieldType::kINT64, 1);
  fc = fields(f);
  IPluginV3* p64 = creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD);
  CHECK(p64 != nullptr, "INT64 out_h accepted");
  delete p64;
  // INT64 values outside int32 are an error, not truncated (2^32 + 100 used to become 100)
  oh64 = (int64_t(1) << 32) + 100;
  CHECK(creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD) == nullptr, "INT64 out_h = 2^32+100 rejected");
  CHECK(!logger.errors.empty() && logger.errors.back().find("int32 range") != std::string::npos &&
            logger.errors.back().find("out_h") != std::string::npos, "error names the field and the range");
  oh64 = 100;
  // max_boxes <= 2^24 (the rank keys hold K in 24 bits) checked when the engine is built
  int32_t big_k = (1 << 24) + 1;
  f[3].data = &big_k;
  fc = fields(f);
  CHECK(creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD) == nullptr, "max_boxes = 2^24 + 1 rejected");
  CHECK(!logger.errors.empty() && logger.errors.back().find("max_boxes") != std::string::npos, "error names max_boxes");
  big_k = 1 << 24;
  IPluginV3* kmax = creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD);
  CHECK(kmax != nullptr, "max_boxes = 2^24 accepted");
  delete kmax;
  f[3].data = &k;
  float nan_tau = std::numeric_limits<float>::quiet_NaN();
  f[2].data = &nan_tau;
  fc = fields(f);
  CHECK(creator->createPlugin("pp", &fc, TensorRTPhase::kBUILD) == nullptr, "tau = NaN rejected");
  f[2].data = &tau;
  delete cl;
  delete again;
  delete plugin;
  setFinder(nullptr);
  if (g_fail) { std::fprintf(stderr, "fcam_trt_plugin_test: %d failure(s)\n", g_fail); return 1; }
  std::printf("fcam_trt_plugin_test: all checks passed\n");
  return 0;
}
