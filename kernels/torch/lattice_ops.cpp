// torch wrapper of fcam::lattice_filter: schema + CPU kernel. Thin: checks, contiguous, allocate, launcher.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "fcam/lattice_filter.h"
#include "lattice_glue.h"

namespace fcam {
namespace torch_glue {

LatticeFilterParams makeLatticeParams(const at::Tensor& images, const at::Tensor& values, double sigma_rgb,
                                      double sigma_xy, bool adjoint) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3, "fcam::lattice_filter: images must be (N, 3, H, W), got ",
              images.sizes());
  TORCH_CHECK(values.dim() == 4, "fcam::lattice_filter: values must be (N, C, H, W), got ", values.sizes());
  TORCH_CHECK(images.size(0) == values.size(0) && images.size(2) == values.size(2) &&
                  images.size(3) == values.size(3),
              "fcam::lattice_filter: images ", images.sizes(), " and values ", values.sizes(), " differ in N, H or W");
  TORCH_CHECK(images.scalar_type() == at::kFloat && values.scalar_type() == at::kFloat,
              "fcam::lattice_filter: images and values must be float32, got ", images.scalar_type(), " and ",
              values.scalar_type());
  TORCH_CHECK(images.device() == values.device(), "fcam::lattice_filter: images on ", images.device(),
              ", values on ", values.device());
  LatticeFilterParams p;
  p.n = values.size(0);
  p.channels = values.size(1);
  p.h = values.size(2);
  p.w = values.size(3);
  p.sigma_rgb = static_cast<float>(sigma_rgb);
  p.sigma_xy = static_cast<float>(sigma_xy);
  p.adjoint = adjoint;
  const LatticeStatus st = validateLatticeParams(p);
  TORCH_CHECK(st == LatticeStatus::kOk, "fcam::lattice_filter: ", latticeStatusString(st), "; got values ",
              values.sizes(), " sigma_rgb=", sigma_rgb, " sigma_xy=", sigma_xy);
  return p;
}

namespace {

at::Tensor latticeFilterCpuKernel(const at::Tensor& images, const at::Tensor& values, double sigma_rgb,
                                  double sigma_xy, bool adjoint) {
  TORCH_CHECK(values.device().is_cpu(), "fcam::lattice_filter (CPU kernel): tensors must be on the CPU");
  const LatticeFilterParams p = makeLatticeParams(images, values, sigma_rgb, sigma_xy, adjoint);
  const at::Tensor img = images.contiguous();
  const at::Tensor val = values.contiguous();
  at::Tensor out = at::empty_like(val, at::MemoryFormat::Contiguous);
  if (p.n == 0) return out;
  const LatticeStatus st =
      latticeFilterCpu(img.data_ptr<float>(), val.data_ptr<float>(), out.data_ptr<float>(), p, at::get_num_threads());
  TORCH_CHECK(st == LatticeStatus::kOk, "fcam::lattice_filter: ", latticeStatusString(st));
  return out;
}

}  // namespace
}  // namespace torch_glue
}  // namespace fcam

TORCH_LIBRARY_FRAGMENT(fcam, m) {
  m.def("lattice_filter(Tensor images, Tensor values, float sigma_rgb, float sigma_xy, bool adjoint=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(fcam, CPU, m) {
  m.impl("lattice_filter", &fcam::torch_glue::latticeFilterCpuKernel);
}
