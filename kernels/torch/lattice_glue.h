// Helpers shared by the torch CPU and CUDA kernels of fcam::lattice_filter.
#pragma once
#include <ATen/ATen.h>

#include "fcam/lattice_filter.h"

namespace fcam {
namespace torch_glue {

// Checks ranks / dtypes / sizes / devices (TORCH_CHECK -> RuntimeError) and builds the launcher params.
LatticeFilterParams makeLatticeParams(const at::Tensor& images, const at::Tensor& values, double sigma_rgb,
                                      double sigma_xy, bool adjoint);

}  // namespace torch_glue
}  // namespace fcam
