// torch CUDA kernel of fcam::cam_postprocess: current stream + workspace tensor -> the CUDA launcher.
// Compiled only when the extension is built with CUDA. Includes only c10/cuda headers (ATen/cuda would
// pull cusparse.h, absent from the pip toolkit; docs/op-contract.md §4).
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "fcam/cam_postprocess.h"
#include "torch_common.h"

namespace fcam {
namespace torch_glue {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> camPostprocessCudaKernel(
    const at::Tensor& maps, int64_t out_h, int64_t out_w, double tau, bool quantize_uint8,
    bool protocol_boxes, int64_t max_boxes, bool normalize) {
  TORCH_CHECK(maps.device().is_cuda(), "fcam::cam_postprocess (CUDA kernel): maps must be on a CUDA device");
  const CamPostprocessParams p =
      makeParams(maps, out_h, out_w, tau, quantize_uint8, protocol_boxes, max_boxes, normalize);
  c10::cuda::CUDAGuard guard(maps.device());
  const at::Tensor in = maps.contiguous();
  Outputs o = allocate(maps, p);
  if (p.n == 0) return {o.full, o.mask, o.boxes, o.count};
  const size_t ws_bytes = camPostprocessCudaWorkspaceSize(p);
  at::Tensor ws = at::empty({static_cast<int64_t>(ws_bytes)}, maps.options().dtype(at::kByte));
  const int err = camPostprocessCuda(in.data_ptr<float>(), o.full.data_ptr<float>(), o.mask.data_ptr<uint8_t>(),
                                     o.boxes.data_ptr<int32_t>(), o.count.data_ptr<int32_t>(), p,
                                     ws.data_ptr(), ws_bytes,
                                     reinterpret_cast<CUstream_st*>(c10::cuda::getCurrentCUDAStream().stream()));
  TORCH_CHECK(err == 0, "fcam::cam_postprocess: CUDA launcher failed with error ", err, ": ",
              camPostprocessCudaErrorString(err));
  return {o.full, o.mask, o.boxes, o.count};
}

}  // namespace
}  // namespace torch_glue
}  // namespace fcam

TORCH_LIBRARY_IMPL(fcam, CUDA, m) {
  m.impl("cam_postprocess", &fcam::torch_glue::camPostprocessCudaKernel);
}
