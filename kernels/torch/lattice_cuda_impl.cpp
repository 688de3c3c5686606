// torch CUDA kernel of fcam::lattice_filter: current stream + workspace tensor -> the CUDA launcher, in chunks of
// images so the workspace stays under 256 MiB. Compiled only when the extension is built with CUDA.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "fcam/lattice_filter.h"
#include "lattice_glue.h"

namespace fcam {
namespace torch_glue {
namespace {

constexpr size_t kMaxWorkspaceBytes = size_t(256) << 20;

at::Tensor latticeFilterCudaKernel(const at::Tensor& images, const at::Tensor& values, double sigma_rgb,
                                   double sigma_xy, bool adjoint) {
  TORCH_CHECK(values.device().is_cuda(), "fcam::lattice_filter (CUDA kernel): tensors must be on a CUDA device");
  const LatticeFilterParams p = makeLatticeParams(images, values, sigma_rgb, sigma_xy, adjoint);
  c10::cuda::CUDAGuard guard(values.device());
  const at::Tensor img = images.contiguous();
  const at::Tensor val = values.contiguous();
  at::Tensor out = at::empty_like(val, at::MemoryFormat::Contiguous);
  if (p.n == 0) return out;
  LatticeFilterParams one = p;
  one.n = 1;
  const size_t per_image = latticeFilterCudaWorkspaceSize(one);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(p.n, int64_t(kMaxWorkspaceBytes / per_image)));
  LatticeFilterParams cp = p;
  cp.n = chunk;
  const size_t ws_bytes = latticeFilterCudaWorkspaceSize(cp);
  at::Tensor ws = at::empty({static_cast<int64_t>(ws_bytes)}, val.options().dtype(at::kByte));
  const int64_t n_chunks = (p.n + chunk - 1) / chunk;
  at::Tensor status = at::zeros({n_chunks}, val.options().dtype(at::kInt));
  auto stream = reinterpret_cast<CUstream_st*>(c10::cuda::getCurrentCUDAStream().stream());
  const int64_t img_stride = 3 * p.h * p.w, val_stride = p.channels * p.h * p.w;
  for (int64_t i = 0; i < n_chunks; ++i) {
    const int64_t n0 = i * chunk;
    cp.n = std::min(chunk, p.n - n0);
    const int err = latticeFilterCuda(img.data_ptr<float>() + n0 * img_stride, val.data_ptr<float>() + n0 * val_stride,
                                      out.data_ptr<float>() + n0 * val_stride, cp, ws.data_ptr(), ws_bytes,
                                      status.data_ptr<int32_t>() + i, stream);
    TORCH_CHECK(err == 0, "fcam::lattice_filter: CUDA launcher failed with error ", err);
  }
  const int worst = status.max().item<int>();  // one device->host sync
  TORCH_CHECK(worst == 0, "fcam::lattice_filter: ", latticeStatusString(static_cast<LatticeStatus>(worst)));
  return out;
}

}  // namespace
}  // namespace torch_glue
}  // namespace fcam

TORCH_LIBRARY_IMPL(fcam, CUDA, m) {
  m.impl("lattice_filter", &fcam::torch_glue::latticeFilterCudaKernel);
}
