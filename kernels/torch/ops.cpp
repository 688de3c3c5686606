// torch wrapper of fcam::cam_postprocess: schema + CPU kernel. Thin: checks, contiguous, allocate, launcher.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

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

// One output size per map (sizes = [h0, w0, h1, w1, ...]): the runtime's original-resolution post-processing.
std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor, at::Tensor> camPostprocessSizedCpuKernel(
    const at::Tensor& maps, at::IntArrayRef sizes, double tau, bool quantize_uint8, bool protocol_boxes,
    int64_t max_boxes, bool normalize) {
  TORCH_CHECK(maps.device().is_cpu(), "fcam::cam_postprocess_sized: maps must be on the CPU");
  const CamPostprocessParams p = makeParams(maps, 1, 1, tau, quantize_uint8, protocol_boxes, max_boxes, normalize);
  TORCH_CHECK(static_cast<int64_t>(sizes.size()) == 2 * p.n, "fcam::cam_postprocess_sized: sizes must hold 2*N = ",
              2 * p.n, " values (h0, w0, h1, w1, ...), got ", sizes.size());
  const at::Tensor in = maps.contiguous();
  auto f = maps.options();
  std::vector<at::Tensor> fulls, masks;
  std::vector<float*> full_ptrs;
  std::vector<uint8_t*> mask_ptrs;
  for (int64_t m = 0; m < p.n; ++m) {
    const int64_t h = sizes[2 * m], w = sizes[2 * m + 1];
    TORCH_CHECK(h >= 1 && w >= 1 && h <= kMaxPixelsPerMap / w, "fcam::cam_postprocess_sized: size ", m, " = (", h,
                ", ", w, ") must be >= 1 with h*w <= 2^30");
    fulls.push_back(at::empty({h, w}, f.dtype(at::kFloat)));
    masks.push_back(at::empty({h, w}, f.dtype(at::kByte)));
    full_ptrs.push_back(fulls.back().data_ptr<float>());
    mask_ptrs.push_back(masks.back().data_ptr<uint8_t>());
  }
  at::Tensor boxes = at::empty({p.n, p.max_boxes, 4}, f.dtype(at::kInt));
  at::Tensor count = at::empty({p.n}, f.dtype(at::kInt));
  const Status st = camPostprocessCpuSized(in.data_ptr<float>(), sizes.data(), full_ptrs.data(), mask_ptrs.data(),
                                           boxes.data_ptr<int32_t>(), count.data_ptr<int32_t>(), p,
                                           at::get_num_threads());
  TORCH_CHECK(st == Status::kOk, "fcam::cam_postprocess_sized: CPU launcher failed: ", statusString(st));
  return {fulls, masks, boxes, count};
}

}  // namespace
}  // namespace torch_glue
}  // namespace fcam

TORCH_LIBRARY(fcam, m) {
  m.def(
      "cam_postprocess(Tensor maps, int out_h, int out_w, float tau, bool quantize_uint8=False, "
      "bool protocol_boxes=False, int max_boxes=1, bool normalize=True) -> "
      "(Tensor full, Tensor mask, Tensor boxes, Tensor count)");
  m.def(
      "cam_postprocess_sized(Tensor maps, int[] sizes, float tau, bool quantize_uint8=False, "
      "bool protocol_boxes=False, int max_boxes=1, bool normalize=True) -> "
      "(Tensor[] full, Tensor[] mask, Tensor boxes, Tensor count)");
}

TORCH_LIBRARY_IMPL(fcam, CPU, m) {
  m.impl("cam_postprocess", &fcam::torch_glue::camPostprocessCpuKernel);
  m.impl("cam_postprocess_sized", &fcam::torch_glue::camPostprocessSizedCpuKernel);
}
