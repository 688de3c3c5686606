// Python module fcam_deploy._native_cpu: the CPU launcher of fcam::cam_postprocess over NumPy arrays, with no
// torch. Thin glue (pybind11): check dtypes/shapes, allocate the outputs, release the GIL, call the launcher.
// This is the compiled core of the lean runtime; `pip install fcam-deploy` builds it (setup.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "fcam/cam_postprocess.h"

namespace py = pybind11;

namespace {

using FloatArray = py::array_t<float, py::array::c_style>;
using SizeArray = py::array_t<int64_t, py::array::c_style>;

// postprocess(maps, sizes, tau, max_boxes, normalize, quantize_uint8, protocol_boxes, threads)
//   -> (list of full (H_i, W_i) float32, list of mask (H_i, W_i) bool, boxes (N, K, 4) int32, count (N,) int32)
py::tuple postprocess(const py::array& maps_in, const py::array& sizes_in, double tau, int64_t max_boxes,
                      bool normalize, bool quantize_uint8, bool protocol_boxes, int threads) {
  if (!py::isinstance<FloatArray>(maps_in) || !(maps_in.flags() & py::array::c_style)) {
    throw py::type_error("maps must be a C-contiguous float32 array (N, h, w), got dtype " +
                         std::string(py::str(maps_in.dtype())));
  }
  if (!py::isinstance<SizeArray>(sizes_in) || !(sizes_in.flags() & py::array::c_style)) {
    throw py::type_error("sizes must be a C-contiguous int64 array (N, 2)");
  }
  const auto maps = py::reinterpret_borrow<FloatArray>(maps_in);
  const auto sizes = py::reinterpret_borrow<SizeArray>(sizes_in);
  if (maps.ndim() != 3) throw py::value_error("maps must be (N, h, w), got ndim " + std::to_string(maps.ndim()));
  const int64_t n = maps.shape(0);
  if (sizes.ndim() != 2 || sizes.shape(0) != n || sizes.shape(1) != 2) {
    throw py::value_error("sizes must be (N, 2) with N = maps.shape[0] = " + std::to_string(n));
  }
  fcam::CamPostprocessParams p;
  p.n = n;
  p.in_h = maps.shape(1);
  p.in_w = maps.shape(2);
  p.out_h = 1;
  p.out_w = 1;
  p.tau = tau;
  p.max_boxes = max_boxes;
  p.normalize = normalize;
  p.quantize_uint8 = quantize_uint8;
  p.protocol_boxes = protocol_boxes;
  if (fcam::validateParams(p) != fcam::Status::kOk) {
    throw py::value_error("invalid arguments: need h, w >= 1, h*w <= 2^30, tau in [0, 1], 1 <= max_boxes <= 2^24; "
                          "got maps (" + std::to_string(n) + ", " + std::to_string(p.in_h) + ", " +
                          std::to_string(p.in_w) + "), tau " + std::to_string(tau) + ", max_boxes " +
                          std::to_string(max_boxes));
  }
  const int64_t* sz = sizes.data();
  py::list fulls, masks;
  std::vector<float*> full_ptrs(static_cast<size_t>(n));
  std::vector<uint8_t*> mask_ptrs(static_cast<size_t>(n));
  for (int64_t m = 0; m < n; ++m) {
    const int64_t h = sz[2 * m], w = sz[2 * m + 1];
    if (h < 1 || w < 1 || h > fcam::kMaxPixelsPerMap / w) {
      throw py::value_error("sizes[" + std::to_string(m) + "] = (" + std::to_string(h) + ", " + std::to_string(w) +
                            ") must be >= 1 with height*width <= 2^30");
    }
    FloatArray full({h, w});
    py::array_t<bool, py::array::c_style> mask({h, w});
    full_ptrs[static_cast<size_t>(m)] = full.mutable_data();
    mask_ptrs[static_cast<size_t>(m)] = reinterpret_cast<uint8_t*>(mask.mutable_data());  // bool is one 0/1 byte
    fulls.append(full);
    masks.append(mask);
  }
  py::array_t<int32_t, py::array::c_style> boxes({n, max_boxes, int64_t(4)});
  py::array_t<int32_t, py::array::c_style> count({n});
  fcam::Status st;
  {
    const float* src = maps.data();
    int32_t* b = boxes.mutable_data();
    int32_t* c = count.mutable_data();
    py::gil_scoped_release nogil;
    st = fcam::camPostprocessCpuSized(src, sz, full_ptrs.data(), mask_ptrs.data(), b, c, p, threads);
  }
  if (st == fcam::Status::kOutOfMemory) throw std::bad_alloc();
  if (st != fcam::Status::kOk) throw py::value_error(std::string("cam_postprocess failed: ") + fcam::statusString(st));
  return py::make_tuple(fulls, masks, boxes, count);
}

}  // namespace

PYBIND11_MODULE(_native_cpu, m) {
  m.doc() = "CPU launcher of fcam::cam_postprocess over NumPy arrays (the lean runtime's compiled core).";
  m.def("postprocess", &postprocess, py::arg("maps"), py::arg("sizes"), py::arg("tau"), py::arg("max_boxes") = 1,
        py::arg("normalize") = true, py::arg("quantize_uint8") = false, py::arg("protocol_boxes") = false,
        py::arg("threads") = 0,
        "Per map: normalise or clamp, bilinear upsampling to its own (H_i, W_i), threshold, 8-connected boxes.\n"
        "Returns (fulls, masks, boxes (N, K, 4) int32, count (N,) int32); spec: kernels/README.md.");
  m.def("hardware_threads", []() { return static_cast<int>(std::thread::hardware_concurrency()); },
        "std::thread::hardware_concurrency() as the launcher sees it.");
  m.attr("ABI_VERSION") = 1;
}
