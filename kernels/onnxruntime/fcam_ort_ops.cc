// ONNX Runtime custom-op library: node fcam::CamPostprocess (domain "fcam", op version 2), C++ Lite API.
// Outputs: full float32, mask INT32 0/1 (the exported graph casts it to the uint8 `mask` output with a standard
// Cast, the same contract as the TensorRT plugin, which may not declare a UINT8 output), boxes int32, count int32.
// CPU EP kernel -> fcam::camPostprocessCpu; CUDA EP kernel (FCAM_WITH_CUDA) -> fcam::camPostprocessCuda on
// ORT's compute stream with a stream-bound scratch buffer from the kernel context. Loaded with
// SessionOptions.register_custom_ops_library("libfcam_ort_ops.so"); entry point RegisterCustomOps.
// Headers come from the npm package com.github.asus4.onnxruntime at build time (kernels/build.sh); the library
// also runs on older ONNX Runtime releases (>= 1.17; CUDA kernel >= 1.18), see RegisterCustomOps.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fcam/cam_postprocess.h"
#include "fcam/names.h"

namespace {

template <typename T>
T attrOr(const Ort::ConstKernelInfo& ki, const char* name, T fallback) {
  try {
    return ki.GetAttribute<T>(name);
  } catch (const Ort::Exception&) {
    return fallback;  // optional attribute absent
  }
}

struct AttrParams {
  fcam::CamPostprocessParams p;
  explicit AttrParams(const OrtKernelInfo* info) {
    Ort::ConstKernelInfo ki(info);
    namespace nm = fcam::names;
    p.out_h = ki.GetAttribute<int64_t>(nm::kAttrOutH);
    p.out_w = ki.GetAttribute<int64_t>(nm::kAttrOutW);
    p.tau = static_cast<double>(ki.GetAttribute<float>(nm::kAttrTau));
    p.quantize_uint8 = attrOr<int64_t>(ki, nm::kAttrQuantizeUint8, 0) != 0;
    p.protocol_boxes = attrOr<int64_t>(ki, nm::kAttrProtocolBoxes, 0) != 0;
    p.max_boxes = attrOr<int64_t>(ki, nm::kAttrMaxBoxes, 1);
    p.normalize = attrOr<int64_t>(ki, nm::kAttrNormalize, 1) != 0;
    p.mask_type = fcam::MaskType::kInt32;  // the node's mask output is int32 (see the file comment)
  }
  // Fills the map sizes from the input shape; returns an error status naming the problem.
  Ort::Status bind(const std::vector<int64_t>& shape, fcam::CamPostprocessParams& out) const {
    if (shape.size() != 3) {
      return Ort::Status("fcam::CamPostprocess: input must be (N, h, w) float32", ORT_INVALID_ARGUMENT);
    }
    out = p;
    out.n = shape[0];
    out.in_h = shape[1];
    out.in_w = shape[2];
    if (fcam::validateParams(out) != fcam::Status::kOk) {
      return Ort::Status("fcam::CamPostprocess: invalid sizes or attributes (need h, w, out_h, out_w, max_boxes "
                         ">= 1, max_boxes <= 2^24, tau in [0, 1], out_h*out_w <= 2^30)", ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }
};

// The input's data pointer through GetTensorMutableData (C API 1). The headers' Ort::Custom::Tensor::Data() and
// ConstValue::GetTensorData() call OrtApi::GetTensorData, which only ONNX Runtime >= 1.23 serves: with an older
// runtime that entry is past the end of its table (a call through garbage: the segfault seen with ORT 1.19).
Ort::Status inputData(OrtKernelContext* ctx, const float** out) {
  const OrtApi& api = Ort::GetApi();
  const OrtValue* v = nullptr;
  if (OrtStatus* s = api.KernelContext_GetInput(ctx, 0, &v)) return Ort::Status(s);
  void* data = nullptr;
  if (OrtStatus* s = api.GetTensorMutableData(const_cast<OrtValue*>(v), &data)) return Ort::Status(s);
  *out = static_cast<const float*>(data);
  return Ort::Status{nullptr};
}

// CPU threads over maps: FCAM_CPU_THREADS (read when the session creates the kernel); unset or 0 = all cores.
int cpuThreadsFromEnv() {
  const char* v = std::getenv("FCAM_CPU_THREADS");
  return v ? std::atoi(v) : 0;
}

struct CamPostprocessCpu {
  AttrParams attrs;
  int threads;
  CamPostprocessCpu(const OrtApi*, const OrtKernelInfo* info) : attrs(info), threads(cpuThreadsFromEnv()) {}
  Ort::Status Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& maps, Ort::Custom::Tensor<float>& full,
                      Ort::Custom::Tensor<int32_t>& mask, Ort::Custom::Tensor<int32_t>& boxes,
                      Ort::Custom::Tensor<int32_t>& count) {
    fcam::CamPostprocessParams p;
    Ort::Status st = attrs.bind(maps.Shape(), p);
    if (!st.IsOK()) return st;
    float* f = full.Allocate({p.n, p.out_h, p.out_w});
    int32_t* m = mask.Allocate({p.n, p.out_h, p.out_w});
    int32_t* b = boxes.Allocate({p.n, p.max_boxes, 4});
    int32_t* c = count.Allocate({p.n});
    if (p.n == 0) return Ort::Status{nullptr};
    const float* in = nullptr;
    st = inputData(ctx, &in);
    if (!st.IsOK()) return st;
    const fcam::Status s = fcam::camPostprocessCpu(in, f, m, b, c, p, threads);
    if (s != fcam::Status::kOk) {
      return Ort::Status((std::string("fcam::CamPostprocess: ") + fcam::statusString(s)).c_str(), ORT_FAIL);
    }
    return Ort::Status{nullptr};
  }
};

#ifdef FCAM_WITH_CUDA
// Scratch: KernelContext_GetScratchBuffer (ORT >= 1.18) allocates on the device of the node's input, from the
// allocator ORT registered for that OrtMemoryInfo, bound to this kernel's compute stream. The in-tree CUDA EP's
// device allocator is a stream-aware arena: a chunk freed after the launches are enqueued is handed out again
// only to work ordered after them on the same stream (another stream - a concurrent Run() - gets other memory
// unless cross-stream reuse is enabled, which then inserts a wait). The plain allocator of
// KernelContext_GetAllocator + Alloc (no stream) had no such ordering: two concurrent Run() calls could reuse the
// chunk while the first one's kernels still ran. (An environment-level shared allocator, session.use_env_allocators,
// is not stream-aware in ORT; with it that ordering is lost again: kernels/README.md §3.)
struct CamPostprocessCuda {
  AttrParams attrs;
  CamPostprocessCuda(const OrtApi*, const OrtKernelInfo* info) : attrs(info) {}
  Ort::Status Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& maps, Ort::Custom::Tensor<float>& full,
                      Ort::Custom::Tensor<int32_t>& mask, Ort::Custom::Tensor<int32_t>& boxes,
                      Ort::Custom::Tensor<int32_t>& count) {
    fcam::CamPostprocessParams p;
    Ort::Status st = attrs.bind(maps.Shape(), p);
    if (!st.IsOK()) return st;
    float* f = full.Allocate({p.n, p.out_h, p.out_w});
    int32_t* m = mask.Allocate({p.n, p.out_h, p.out_w});
    int32_t* b = boxes.Allocate({p.n, p.max_boxes, 4});
    int32_t* c = count.Allocate({p.n});
    if (p.n == 0) return Ort::Status{nullptr};
    Ort::KernelContext kc(ctx);
    // The input's memory info names the device this node runs on (not device 0).
    const Ort::ConstMemoryInfo mi = kc.GetInput(0).GetTensorMemoryInfo();
    if (mi.GetDeviceType() != OrtMemoryInfoDeviceType_GPU) {
      return Ort::Status("fcam::CamPostprocess (CUDA kernel): the input is not in GPU memory", ORT_FAIL);
    }
    const OrtMemoryInfo* ort_mi = mi;
    void* stream = kc.GetGPUComputeStream();
    if (!stream) return Ort::Status("fcam::CamPostprocess (CUDA kernel): ORT gave no compute stream", ORT_FAIL);
    const float* in = nullptr;
    st = inputData(ctx, &in);
    if (!st.IsOK()) return st;
    const size_t ws_bytes = fcam::camPostprocessCudaWorkspaceSize(p);
    void* ws = nullptr;
    if (OrtStatus* s = Ort::GetApi().KernelContext_GetScratchBuffer(ctx, ort_mi, ws_bytes, &ws)) return Ort::Status(s);
    if (!ws) return Ort::Status("fcam::CamPostprocess (CUDA kernel): no scratch buffer", ORT_FAIL);
    const int err = fcam::camPostprocessCuda(in, f, m, b, c, p, ws, ws_bytes,
                                             static_cast<CUstream_st*>(stream));
    kc.GetAllocator(*ort_mi).Free(ws);  // stream-ordered (see above): safe while the launches still run
    if (err != 0) {
      return Ort::Status((std::string("fcam::CamPostprocess: CUDA launcher error ") + std::to_string(err) + ": " +
                          fcam::camPostprocessCudaErrorString(err)).c_str(), ORT_FAIL);
    }
    return Ort::Status{nullptr};
  }
};
#endif

// ORT API tables: the headers are ORT_API_VERSION 29, but an older runtime (JetPack wheels, distro packages)
// returns no table for 29 (OrtApiBase::GetApi gives nullptr) and rejects custom ops whose OrtCustomOp::version
// is above its own. ONNX Runtime 1.x serves API version x, and every later release still serves older tables.
// Every OrtApi entry this file reaches (directly or through the headers' inline wrappers: kernel info attributes,
// kernel context inputs/outputs, shapes, GetTensorMutableData, memory info, GPU stream, allocator) is at most
// the version below; OrtApi::GetTensorData (1.23) is avoided on purpose (inputData above).
// ORT 1.17: the Lite struct API's CreateKernelV2 / KernelComputeV2 path. Checked with the PyPI CPU wheels:
// 1.17.3, 1.18.1 and 1.19.2 run the node and equal the reference; 1.16.3 crashes inside ORT on the first Run().
constexpr uint32_t kMinApiCpu = 17;
constexpr uint32_t kMinApiCuda = 18;  // ORT 1.18: KernelContext_GetScratchBuffer

// The API version to use with the runtime that loaded us: min(ORT_API_VERSION, the runtime's), 0 if unknown.
uint32_t runtimeApiVersion(const OrtApiBase* base) {
  const char* v = base->GetVersionString ? base->GetVersionString() : nullptr;
  if (!v) return 0;
  char* end = nullptr;
  const long major = std::strtol(v, &end, 10);
  if (end == v || *end != '.') return 0;
  const char* minor_at = end + 1;
  const long minor = std::strtol(minor_at, &end, 10);
  if (end == minor_at || major < 1) return 0;
  if (major > 1) return ORT_API_VERSION;  // a later major version still serves the tables up to its own
  return static_cast<uint32_t>(std::min<long>(minor, ORT_API_VERSION));
}

OrtStatus* loadError(const OrtApiBase* base, const std::string& msg) {
  const OrtApi* api1 = base->GetApi(1);  // served by every ONNX Runtime release
  return api1 ? api1->CreateStatus(ORT_FAIL, msg.c_str()) : nullptr;
}

}  // namespace

// Registers fcam::CamPostprocess (op version kOnnxOpsetVersion onwards; graphs exported before the int32 mask
// contract declared version 1 and must be re-exported) for the CPU EP and, when built with CUDA and the runtime
// is ORT >= 1.18, for the CUDA EP (with ORT 1.17 a CUDA session runs the node on the CPU EP).
extern "C" ORT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  if (!api_base) return nullptr;  // nothing to report through
  const uint32_t api_version = runtimeApiVersion(api_base);
  const char* rt = api_base->GetVersionString ? api_base->GetVersionString() : "unknown";
  if (api_version < kMinApiCpu) {
    return loadError(api_base, std::string(fcam::names::kOrtLibrary) + ": needs ONNX Runtime >= 1.17 (C API " +
                                   std::to_string(kMinApiCpu) + "), this is ONNX Runtime " + rt);
  }
  const OrtApi* api = api_base->GetApi(api_version);
  if (!api) {
    return loadError(api_base, std::string(fcam::names::kOrtLibrary) + ": ONNX Runtime " + rt +
                                   " serves no C API table " + std::to_string(api_version));
  }
  Ort::InitApi(api);
  static Ort::CustomOpDomain domain{fcam::names::kOnnxDomain};
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> cpu_op{Ort::Custom::CreateLiteCustomOp<CamPostprocessCpu>(
      fcam::names::kOnnxOp, "CPUExecutionProvider", fcam::names::kOnnxOpsetVersion)};
#ifdef FCAM_WITH_CUDA
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> cuda_op{Ort::Custom::CreateLiteCustomOp<CamPostprocessCuda>(
      fcam::names::kOnnxOp, "CUDAExecutionProvider", fcam::names::kOnnxOpsetVersion)};
#endif
  static std::once_flag once;
  try {
    std::call_once(once, [api_version] {
      // The OrtCustomOp struct layout is append-only: declaring the runtime's version makes it read only the
      // fields it knows (it rejects a version above its own with "Unsupported version").
      cpu_op->version = api_version;
      domain.Add(cpu_op.get());
#ifdef FCAM_WITH_CUDA
      if (api_version >= kMinApiCuda) {
        cuda_op->version = api_version;
        domain.Add(cuda_op.get());
      }
#endif
    });
    Ort::UnownedSessionOptions(options).Add(domain);
  } catch (const Ort::Exception& e) {
    return Ort::Status(e).release();
  }
  return nullptr;
}
