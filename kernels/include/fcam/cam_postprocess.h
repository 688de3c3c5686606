// fcam::cam_postprocess launchers: plain functions over raw pointers, sizes and a stream.
// No torch, ONNX Runtime or TensorRT types appear here; every wrapper (torch op, ORT custom op, TRT plugin,
// C++ test binary) calls these. The op's exact semantics are written down in kernels/README.md.
#pragma once

#include <cstddef>
#include <cstdint>

struct CUstream_st;  // = cudaStream_t's pointee; declared here so this header needs no CUDA headers.

namespace fcam {

// Element type of the mask output. The op's own type is uint8 (torch op, C++ callers). The ONNX node and the
// TensorRT plugin output int32 0/1 instead, because a TensorRT plugin may not declare a UINT8 (or BOOL) output;
// the exported graph casts it to the uint8 `mask` graph output with a standard ONNX Cast (kernels/README.md §3).
enum class MaskType : int32_t { kUint8 = 0, kInt32 = 1 };

struct CamPostprocessParams {
  int64_t n = 0;          // number of maps N (>= 0)
  int64_t in_h = 0;       // low-res map height h (>= 1)
  int64_t in_w = 0;       // low-res map width w (>= 1)
  int64_t out_h = 0;      // output height H (>= 1)
  int64_t out_w = 0;      // output width W (>= 1)
  double tau = 0.5;       // relative threshold in [0, 1]
  bool quantize_uint8 = false;  // WSOL protocol: u8 = trunc(full*255); mask = u8 > int(tau * max(u8))
  bool protocol_boxes = false;  // WSOL protocol boxes: order by cv2.contourArea, +1 overshoot, empty -> (0,0,0,0)
  bool normalize = true;        // per-map min-max of the low-res map; false: values clamped to [0,1] as is
  int64_t max_boxes = 1;  // K (>= 1, <= 2^24)
  MaskType mask_type = MaskType::kUint8;  // element type of the `mask` output
};

enum class Status : int { kOk = 0, kInvalidArgument = 1, kCudaError = 2, kOutOfMemory = 3, kBadWorkspace = 4 };

// Human-readable text of a status.
const char* statusString(Status s);

// Checks the sizes and options (ranges, overflow of N*H*W). Returns kOk or kInvalidArgument.
Status validateParams(const CamPostprocessParams& p);

// Largest supported H*W (labels are int32 pixel indices).
constexpr int64_t kMaxPixelsPerMap = int64_t(1) << 30;

// CPU launcher. maps: [N, in_h, in_w] float32, C-contiguous. Outputs (C-contiguous, caller-allocated):
// full [N, out_h, out_w] float32 in [0,1], mask [N, out_h, out_w] 0/1 of type p.mask_type (uint8_t or
// int32_t), boxes [N, K, 4] int32, count [N] int32. num_threads <= 0: std::thread::hardware_concurrency().
// Threads run over maps. Non-finite values in a map make that whole map zeros (never a crash).
Status camPostprocessCpu(const float* maps, float* full, void* mask, int32_t* boxes, int32_t* count,
                         const CamPostprocessParams& p, int num_threads);

// CPU launcher with one output size per map (the runtime's original-resolution post-processing: each image of
// a batch is brought back to its own size). maps: [N, in_h, in_w] float32, C-contiguous. out_sizes: [N, 2]
// (height, width) of each map's output, each >= 1 with height*width <= kMaxPixelsPerMap. full[m] / mask[m]:
// caller-allocated buffers of out_sizes[2m] * out_sizes[2m+1] elements each. boxes [N, K, 4] int32, count [N]
// int32. p.n, p.in_h, p.in_w, the options and p.max_boxes are used (p.mask_type must be kUint8); p.out_h / p.out_w
// are ignored. Per map the result equals camPostprocessCpu with out_h, out_w set to that map's size (same code,
// bit for bit).
Status camPostprocessCpuSized(const float* maps, const int64_t* out_sizes, float* const* full, uint8_t* const* mask,
                              int32_t* boxes, int32_t* count, const CamPostprocessParams& p, int num_threads);

// Alignment the CUDA workspace pointer must have (the rank keys are 64-bit); 256 is what allocators give.
constexpr size_t kCudaWorkspaceAlignment = 8;

// Bytes of device scratch the CUDA launcher needs for `p` (256-byte aligned sub-buffers: 4 bytes per input
// pixel + 32 bytes per output pixel, + 1 byte per output pixel with an int32 mask); 0 for invalid params.
// Plain host arithmetic, defined in every build (also without CUDA).
size_t camPostprocessCudaWorkspaceSize(const CamPostprocessParams& p);

// Checks a workspace for `p`: kOk, kInvalidArgument (params), or kBadWorkspace (null, smaller than
// camPostprocessCudaWorkspaceSize(p), or not kCudaWorkspaceAlignment-aligned). Host only, every build.
Status validateCudaWorkspace(const CamPostprocessParams& p, const void* workspace, size_t workspace_bytes);

// CUDA launcher: all pointers are device pointers; everything runs on `stream`, asynchronously, with no
// host copy and no allocation. Returns 0 on success, the cudaError_t of the launches (> 0), or a negative
// fcam::Status (-1 invalid params / null output, -4 bad workspace, see validateCudaWorkspace).
// camPostprocessCudaErrorString() names any of these codes. Defined only when the library is built with CUDA.
int camPostprocessCuda(const float* maps, float* full, void* mask, int32_t* boxes, int32_t* count,
                       const CamPostprocessParams& p, void* workspace, size_t workspace_bytes,
                       CUstream_st* stream);

// Text of a camPostprocessCuda return code (CUDA error name and message, or the fcam::Status text).
const char* camPostprocessCudaErrorString(int code);

}  // namespace fcam
