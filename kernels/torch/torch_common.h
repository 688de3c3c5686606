// Helpers shared by the torch CPU and CUDA kernels of fcam::cam_postprocess.
#pragma once
#include <ATen/ATen.h>
#include "fcam/cam_postprocess.h"

namespace fcam {
namespace torch_glue {

struct Outputs {
  at::Tensor full, mask, boxes, count;
};

// Checks rank/dtype/sizes (TORCH_CHECK -> RuntimeError) and builds the launcher params.
CamPostprocessParams makeParams(const at::Tensor& maps, int64_t out_h, int64_t out_w, double tau,
                                bool quantize_uint8, bool protocol_boxes, int64_t max_boxes, bool normalize);

// Allocates the four outputs on maps' device.
Outputs allocate(const at::Tensor& maps, const CamPostprocessParams& p);

}  // namespace torch_glue
}  // namespace fcam
