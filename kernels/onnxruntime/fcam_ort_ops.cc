// ONNX Runtime custom-op library: node fcam::CamPostprocess (domain "fcam", opset 1), C++ Lite API.
// CPU EP kernel -> fcam::camPostprocessCpu; CUDA EP kernel (FCAM_WITH_CUDA) -> fcam::camPostprocessCuda on
// ORT's compute stream with scratch from ORT's CUDA allocator. Loaded with
// SessionOptions.register_custom_ops_library("libfcam_ort_ops.so"); entry point RegisterCustomOps.
// Headers come from the npm package com.github.asus4.onnxruntime at build time (kernels/build.sh).
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"

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
                         ">= 1, tau in [0, 1], out_h*out_w <= 2^30)", ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }
};

// CPU threads over maps: FCAM_CPU_THREADS (read when the session creates the kernel); unset or 0 = all cores.
int cpuThreadsFromEnv() {
  const char* v = std::getenv("FCAM_CPU_THREADS");
  return v ? std::atoi(v) : 0;
}

struct CamPostprocessCpu {
  AttrParams attrs;
  int threads;
  CamPostprocessCpu(const OrtApi*, const OrtKernelInfo* info) : attrs(info), threads(cpuThreadsFromEnv()) {}
  Ort::Status Compute(const Ort::Custom::Tensor<float>& maps, Ort::Custom::Tensor<float>& full,
                      Ort::Custom::Tensor<uint8_t>& mask, Ort::Custom::Tensor<int32_t>& boxes,
                      Ort::Custom::Tensor<int32_t>& count) {
    fcam::CamPostprocessParams p;
    Ort::Status st = attrs.bind(maps.Shape(), p);
    if (!st.IsOK()) return st;
    float* f = full.Allocate({p.n, p.out_h, p.out_w});
    uint8_t* m = mask.Allocate({p.n, p.out_h, p.out_w});
    int32_t* b = boxes.Allocate({p.n, p.max_boxes, 4});
    int32_t* c = count.Allocate({p.n});
    const fcam::Status s = fcam::camPostprocessCpu(maps.Data(), f, m, b, c, p, threads);
    if (s != fcam::Status::kOk) {
      return Ort::Status((std::string("fcam::CamPostprocess: ") + fcam::statusString(s)).c_str(), ORT_FAIL);
    }
    return Ort::Status{nullptr};
  }
};

#ifdef FCAM_WITH_CUDA
struct CamPostprocessCuda {
  AttrParams attrs;
  CamPostprocessCuda(const OrtApi*, const OrtKernelInfo* info) : attrs(info) {}
  Ort::Status Compute(OrtKernelContext* ctx, const Ort::Custom::Tensor<float>& maps, Ort::Custom::Tensor<float>& full,
                      Ort::Custom::Tensor<uint8_t>& mask, Ort::Custom::Tensor<int32_t>& boxes,
                      Ort::Custom::Tensor<int32_t>& count) {
    fcam::CamPostprocessParams p;
    Ort::Status st = attrs.bind(maps.Shape(), p);
    if (!st.IsOK()) return st;
    float* f = full.Allocate({p.n, p.out_h, p.out_w});
    uint8_t* m = mask.Allocate({p.n, p.out_h, p.out_w});
    int32_t* b = boxes.Allocate({p.n, p.max_boxes, 4});
    int32_t* c = count.Allocate({p.n});
    if (p.n == 0) return Ort::Status{nullptr};
    Ort::KernelContext kc(ctx);
    Ort::MemoryInfo mi("Cuda", OrtDeviceAllocator, 0, OrtMemTypeDefault);
    Ort::Allocator alloc = kc.GetAllocator(*static_cast<const OrtMemoryInfo*>(mi));
    const size_t ws_bytes = fcam::camPostprocessCudaWorkspaceSize(p);
    void* ws = alloc.Alloc(ws_bytes);
    const int err = fcam::camPostprocessCuda(maps.Data(), f, m, b, c, p, ws, ws_bytes,
                                             static_cast<CUstream_st*>(kc.GetGPUComputeStream()));
    alloc.Free(ws);  // ORT's CUDA allocator is stream-ordered with the compute stream
    if (err != 0) {
      return Ort::Status(("fcam::CamPostprocess: CUDA launcher error " + std::to_string(err)).c_str(), ORT_FAIL);
    }
    return Ort::Status{nullptr};
  }
};
#endif

}  // namespace

extern "C" ORT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  static Ort::CustomOpDomain domain{fcam::names::kOnnxDomain};
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> cpu_op{
      Ort::Custom::CreateLiteCustomOp<CamPostprocessCpu>(fcam::names::kOnnxOp, "CPUExecutionProvider")};
#ifdef FCAM_WITH_CUDA
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> cuda_op{
      Ort::Custom::CreateLiteCustomOp<CamPostprocessCuda>(fcam::names::kOnnxOp, "CUDAExecutionProvider")};
#endif
  static std::once_flag once;
  try {
    std::call_once(once, [] {
      domain.Add(cpu_op.get());
#ifdef FCAM_WITH_CUDA
      domain.Add(cuda_op.get());
#endif
    });
    Ort::UnownedSessionOptions(options).Add(domain);
  } catch (const Ort::Exception& e) {
    return Ort::Status(e).release();
  }
  return nullptr;
}
