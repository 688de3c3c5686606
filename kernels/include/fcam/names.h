// Shared names of the fcam post-processing op. Mirrors fcam_deploy/ops/names.py; tests/ops/test_names.py
// checks that both tables agree. Change both together.
#pragma once

namespace fcam {
namespace names {
constexpr const char* kTorchNamespace = "fcam";
constexpr const char* kTorchOp = "cam_postprocess";
constexpr const char* kTorchLatticeOp = "lattice_filter";  // the dense-CRF filter (lattice_filter.h)
constexpr const char* kOnnxDomain = "fcam";
constexpr const char* kOnnxOp = "CamPostprocess";
constexpr int kOnnxOpsetVersion = 1;
constexpr const char* kTrtPluginName = "FcamCamPostprocess";
constexpr const char* kTrtPluginVersion = "1";
constexpr const char* kTrtPluginNamespace = "fcam";
constexpr const char* kOrtLibrary = "libfcam_ort_ops.so";
constexpr const char* kTrtLibrary = "libfcam_trt_plugins.so";
constexpr const char* kOrtEntryPoint = "RegisterCustomOps";
// Attribute names of the ONNX node / TRT plugin fields (same order as the torch schema arguments).
constexpr const char* kAttrOutH = "out_h";
constexpr const char* kAttrOutW = "out_w";
constexpr const char* kAttrTau = "tau";
constexpr const char* kAttrQuantizeUint8 = "quantize_uint8";
constexpr const char* kAttrProtocolBoxes = "protocol_boxes";
constexpr const char* kAttrMaxBoxes = "max_boxes";
constexpr const char* kAttrNormalize = "normalize";
}  // namespace names
}  // namespace fcam
