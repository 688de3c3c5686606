// torch wrapper of fcam::cam_postprocess: schema + CPU kernel. Thin: checks, contiguous, allocate, launcher.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "fcam/cam_postprocess.h"
#include "torch_common.h"

namespace fcam {
namespace torch_glue {

CamPostprocessParams makeParams(const at::Tensor& maps, int64_t out_h, int64_t out_w, double tau,
                                bool quantize_uint8, bool protocol_boxes, int64_t max_boxes, bool normalize) {
  TORCH_CHECK(maps.dim() == 3, "fcam::cam_postprocess: maps must be (N, h, w), got ", maps.sizes());
  TORCH_CHECK(maps.scalar_type() == at::kFloat, "fcam::cam_postprocess: maps must be float32, got ",
              maps.scalar_type());
  CamPostprocessParams p;
  p.n = maps.size(0);
  p.in_h = maps.size(1);
  p.in_w = maps.size(2);
  p.out_h = out_h;
  p.out_w = out_w;
  p.tau = tau;
  p.quantize_uint8 = quantize_uint8;
  p.protocol_boxes = protocol_boxes;
  p.max_boxes = max_boxes;
  p.normalize = normalize;
  TORCH_CHECK(validateParams(p) == Status::kOk,
              "fcam::cam_postprocess: invalid arguments (need h, w, out_h, out_w, max_boxes >= 1, "
              "tau in [0, 1], out_h*out_w <= 2^30, max_boxes <= 2^24), got maps ", maps.sizes(), " out=(", out_h, ", ", out_w,
              ") tau=", tau, " max_boxes=", max_boxes);
  return p;
}

Outputs allocate(const at::Tensor& maps, const CamPostprocessParams& p) {
  auto f = maps.options();
  return Outputs{at::empty({p.n, p.out_h, p.out_w}, f.dtype(at::kFloat)),
                 at::empty({p.n, p.out_h, p.out_w}, f.dtype(at::kByte)),
                 at::empty({p.n, p.max_boxes, 4}, f.dtype(at::kInt)),
                 at::empty({p.n}, f.dtype(at::kInt))};
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> camPostprocessCpuKernel(
    const at::Tensor& maps, int64_t out_h, int64_t out_w, double tau, bool quantize_uint8,
    bool protocol_boxes, int64_t max_boxes, bool normalize) {
  TORCH_CHECK(maps.device().is_cpu(), "fcam::cam_postprocess (CPU kernel): maps must be on the CPU");
  const CamPostprocessParams p =
      makeParams(maps, out_h, out_w, tau, quantize_uint8, protocol_boxes, max_boxes, normalize);
  const at::Tensor in = maps.contiguous();
  Outputs o = allocate(maps, p);
  const Status st = camPostprocessCpu(in.data_ptr<float>(), o.full.data_ptr<float>(),
                                      o.mask.data_ptr<uint8_t>(), o.boxes.data_ptr<int32_t>(),
                                      o.count.data_ptr<int32_t>(), p, at::get_num_threads());
  TORCH_CHECK(st == Status::kOk, "fcam::cam_postprocess: CPU launcher failed: ", statusString(st));
  return {o.full, o.mask, o.boxes, o.count};
}

}  // namespace
}  // namespace torch_glue
}  // namespace fcam

TORCH_LIBRARY(fcam, m) {
  m.def(
      "cam_postprocess(Tensor maps, int out_h, int out_w, float tau, bool quantize_uint8=False, "
      "bool protocol_boxes=False, int max_boxes=1, bool normalize=True) -> "
      "(Tensor full, Tensor mask, Tensor boxes, Tensor count)");
}

TORCH_LIBRARY_IMPL(fcam, CPU, m) {
  m.impl("cam_postprocess", &fcam::torch_glue::camPostprocessCpuKernel);
}
