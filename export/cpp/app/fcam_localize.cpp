// fcam_localize MODEL IMAGE... : print the class, score and boxes the fcam_localizer library finds in each image.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "fcam/localizer.hpp"

namespace {

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: fcam_localize [--json] [--backend auto|onnxruntime|tensorrt] [--device cpu|cuda[:N]]\n"
               "                     [--custom-ops LIB] [--plugins LIB] [--max-boxes K] MODEL IMAGE...\n"
               "MODEL: .onnx from `fcam export` or .plan from `fcam build-engine`. IMAGE: PNG or JPEG.\n"
               "Prints one line per image (or one JSON object per line with --json).\n"
               "Custom-op / plugin libraries default to $FCAM_ORT_OPS / $FCAM_TRT_PLUGINS.\n");
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

const char* kind_name(fcam::ErrorKind k) {
  switch (k) {
    case fcam::ErrorKind::ModelFormat: return "ModelFormatError";
    case fcam::ErrorKind::BackendUnavailable: return "BackendUnavailableError";
    case fcam::ErrorKind::Input: return "InputError";
    case fcam::ErrorKind::Image: return "ImageError";
    default: return "RuntimeError";
  }
}

}  // namespace

int main(int argc, char** argv) {
  fcam::LocalizerOptions opt;
  bool json = false;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fcam_localize: %s needs a value\n", flag);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--backend") {
      const std::string b = value("--backend");
      if (b == "auto") opt.backend = fcam::Backend::Auto;
      else if (b == "onnxruntime") opt.backend = fcam::Backend::OnnxRuntime;
      else if (b == "tensorrt") opt.backend = fcam::Backend::TensorRT;
      else {
        std::fprintf(stderr, "fcam_localize: unknown backend '%s'\n", b.c_str());
        return 2;
      }
    } else if (a == "--device") {
      opt.device = value("--device");
    } else if (a == "--custom-ops") {
      opt.custom_ops_library = value("--custom-ops");
    } else if (a == "--plugins") {
      opt.plugin_library = value("--plugins");
    } else if (a == "--max-boxes") {
      opt.max_boxes = std::atoi(value("--max-boxes").c_str());
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "fcam_localize: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() < 2) {
    usage(stderr);
    return 2;
  }
  try {
    const fcam::Localizer loc = fcam::Localizer::load(positional[0], opt);
    if (loc.fell_back_to_cpu())
      std::fprintf(stderr, "fcam_localize: warning: a GPU was requested but the model runs on the CPU\n");
    int failures = 0;
    for (size_t i = 1; i < positional.size(); ++i) {
      const std::string& path = positional[i];
      fcam::Prediction p;
      try {
        p = loc.predict(fcam::load_image(path));
      } catch (const fcam::Error& e) {
        std::fprintf(stderr, "fcam_localize: %s: %s\n", kind_name(e.kind()), e.what());
        ++failures;
        continue;
      }
      long mask_pixels = 0;
      double map_sum = 0.0;
      for (size_t j = 0; j < p.mask.size(); ++j) {
        mask_pixels += p.mask[j];
        map_sum += p.map[j];
      }
      if (json) {
        std::printf("{\"image\": \"%s\", \"class_index\": %d, \"class_name\": \"%s\", \"score\": %.17g, "
                    "\"size\": [%d, %d], \"tau\": %.9g, \"mask_pixels\": %ld, \"map_sum\": %.17g, \"boxes\": [",
                    json_escape(path).c_str(), p.class_index, json_escape(p.class_name).c_str(), p.score, p.height,
                    p.width, static_cast<double>(p.tau), mask_pixels, map_sum);
        for (size_t b = 0; b < p.boxes.size(); ++b)
          std::printf("%s[%d, %d, %d, %d]", b ? ", " : "", p.boxes[b].x0, p.boxes[b].y0, p.boxes[b].x1, p.boxes[b].y1);
        std::printf("], \"backend\": \"%s\"}\n", loc.backend().c_str());
      } else {
        std::printf("%s: class %d (%s) score %.6f boxes", path.c_str(), p.class_index, p.class_name.c_str(), p.score);
        if (p.boxes.empty()) std::printf(" none");
        for (const auto& b : p.boxes) std::printf(" [%d,%d,%d,%d]", b.x0, b.y0, b.x1, b.y1);
        std::printf("\n");
      }
    }
    return failures ? 1 : 0;
  } catch (const fcam::Error& e) {
    std::fprintf(stderr, "fcam_localize: %s: %s\n", kind_name(e.kind()), e.what());
    return 2;
  }
}
