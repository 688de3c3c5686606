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
// Version 2: the node outputs the mask as int32 0/1 (a TensorRT plugin may not declare UINT8); the exported
// graph casts it to uint8 with a standard Cast. Version-1 graphs (uint8 node output) must be re-exported.
constexpr int kOnnxOpsetVersion = 2;
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
