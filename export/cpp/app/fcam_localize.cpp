// fcam_localize MODEL IMAGE... : print the class, score and boxes the fcam_localizer library finds in each image.
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "fcam/localizer.hpp"

namespace {

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: fcam_localize [--json] [--batch] [--backend auto|onnxruntime|tensorrt] [--device cpu|cuda[:N]]\n"
               "                     [--custom-ops LIB] [--plugins LIB] [--max-boxes K] [--threads N]\n"
               "                     [--save-maps DIR] MODEL IMAGE...\n"
               "MODEL: .onnx from `fcam export` or .plan from `fcam build-engine`. IMAGE: PNG or JPEG.\n"
               "Prints one line per image (or one JSON object per line with --json). --batch predicts all images in\n"
               "one call (engine batches); --save-maps writes DIR/<i>_map.npy (float32) and DIR/<i>_mask.npy (uint8)\n"
               "for the i-th image argument. Custom-op / plugin libraries default to $FCAM_ORT_OPS / $FCAM_TRT_PLUGINS.\n"
               "Exit status: 0 ok, 1 some image failed (the others are printed), 2 model or usage error.\n");
}

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "fcam_localize: %s\n", what.c_str());
  std::exit(2);
}

int parse_int(const char* flag, const std::string& text, long lo, long hi) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    usage_error(std::string(flag) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                "], got '" + text + "'");
  return static_cast<int>(v);
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

// A NumPy .npy file (format 1.0) of a C-ordered (h, w) array.
bool write_npy(const std::string& path, const char* descr, int h, int w, const void* data, std::size_t bytes) {
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" +
                       std::to_string(h) + ", " + std::to_string(w) + "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const std::uint16_t len = static_cast<std::uint16_t>(header.size());
  const unsigned char len_le[2] = {static_cast<unsigned char>(len & 0xff), static_cast<unsigned char>(len >> 8)};
  bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(len_le, 1, 2, f) == 2 &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data, 1, bytes, f) == bytes;
  ok = (std::fclose(f) == 0) && ok;
  return ok;
}

void report_error(const fcam::Error& e) {
  std::fprintf(stderr, "fcam_localize: %s: %s\n", fcam::error_kind_name(e.kind()), e.what());
}

}  // namespace

int main(int argc, char** argv) {
  fcam::LocalizerOptions opt;
  bool json = false, batch = false;
  std::string save_dir;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) usage_error(std::string(flag) + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--batch") {
      batch = true;
    } else if (a == "--backend") {
      const std::string b = value("--backend");
      if (b == "auto") opt.backend = fcam::Backend::Auto;
      else if (b == "onnxruntime") opt.backend = fcam::Backend::OnnxRuntime;
      else if (b == "tensorrt") opt.backend = fcam::Backend::TensorRT;
      else usage_error("unknown backend '" + b + "'");
    } else if (a == "--device") {
      opt.device = value("--device");
    } else if (a == "--custom-ops") {
      opt.custom_ops_library = value("--custom-ops");
    } else if (a == "--plugins") {
      opt.plugin_library = value("--plugins");
    } else if (a == "--max-boxes") {
      opt.max_boxes = parse_int("--max-boxes", value("--max-boxes"), 1, 1L << 24);
    } else if (a == "--threads") {
      opt.threads = parse_int("--threads", value("--threads"), 0, 4096);
    } else if (a == "--save-maps") {
      save_dir = value("--save-maps");
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
  // Map and mask are only kept when something prints or saves them (the text output needs neither).
  fcam::PredictOptions want;
  want.map = want.mask = json || !save_dir.empty();
  try {
    const fcam::Localizer loc = fcam::Localizer::load(positional[0], opt);
    if (loc.fell_back_to_cpu())
      std::fprintf(stderr, "fcam_localize: warning: a GPU was requested but the model runs on the CPU\n");
    const std::size_t count = positional.size() - 1;
    std::vector<fcam::Image> images(count);
    std::vector<fcam::Prediction> preds(count);
    std::vector<bool> ok(count, false);
    int failures = 0;
    auto decode = [&](std::size_t i) {
      try {
        images[i] = fcam::load_image(positional[i + 1]);
        return true;
      } catch (const fcam::Error& e) {
        report_error(e);
        ++failures;
        return false;
      }
    };
    if (batch) {
      std::vector<fcam::ImageView> views;
      std::vector<std::size_t> index;
      for (std::size_t i = 0; i < count; ++i)
        if (decode(i)) {
          views.emplace_back(images[i]);
          index.push_back(i);
        }
      try {
        std::vector<fcam::Prediction> got = loc.predict(views, want);
        for (std::size_t j = 0; j < index.size(); ++j) {
          preds[index[j]] = std::move(got[j]);
          ok[index[j]] = true;
        }
      } catch (const fcam::Error& e) {  // one call for the batch: its failure fails every image in it
        report_error(e);
        failures += static_cast<int>(index.size());
      }
    }
    for (std::size_t i = 0; i < count; ++i) {
      const std::string& path = positional[i + 1];
      if (!batch) {
        if (!decode(i)) continue;
        try {
          preds[i] = loc.predict(images[i], want);
        } catch (const fcam::Error& e) {
          report_error(e);
          ++failures;
          continue;
        }
        images[i] = fcam::Image();  // one decoded image in memory at a time
      } else if (!ok[i]) {
        continue;
      }
      const fcam::Prediction& p = preds[i];
      if (!save_dir.empty()) {
        const std::string stem = save_dir + "/" + std::to_string(i);
        if (!write_npy(stem + "_map.npy", "<f4", p.height, p.width, p.map.data(), p.map.size() * sizeof(float)) ||
            !write_npy(stem + "_mask.npy", "|u1", p.height, p.width, p.mask.data(), p.mask.size()))
          usage_error("cannot write " + stem + "_{map,mask}.npy: " + std::strerror(errno));
      }
      if (json) {
        long mask_pixels = 0;
        double map_sum = 0.0;
        for (std::size_t j = 0; j < p.mask.size(); ++j) {
          mask_pixels += p.mask[j];
          map_sum += p.map[j];
        }
        std::printf("{\"image\": \"%s\", \"class_index\": %d, \"class_name\": \"%s\", \"score\": %.17g, \"logits\": [",
                    json_escape(path).c_str(), p.class_index, json_escape(p.class_name).c_str(), p.score);
        for (std::size_t c = 0; c < p.logits.size(); ++c)
          std::printf("%s%.9g", c ? ", " : "", static_cast<double>(p.logits[c]));
        std::printf("], \"size\": [%d, %d], \"tau\": %.17g, \"mask_pixels\": %ld, \"map_sum\": %.17g, \"boxes\": [",
                    p.height, p.width, p.tau, mask_pixels, map_sum);
        for (std::size_t b = 0; b < p.boxes.size(); ++b)
          std::printf("%s[%d, %d, %d, %d]", b ? ", " : "", p.boxes[b].x0, p.boxes[b].y0, p.boxes[b].x1, p.boxes[b].y1);
        std::printf("], \"backend\": \"%s\", \"threads\": %d}\n", loc.backend().c_str(), loc.threads());
      } else {
        std::printf("%s: class %d (%s) score %.6f boxes", path.c_str(), p.class_index, p.class_name.c_str(), p.score);
        if (p.boxes.empty()) std::printf(" none");
        for (const auto& b : p.boxes) std::printf(" [%d,%d,%d,%d]", b.x0, b.y0, b.x1, b.y1);
        std::printf("\n");
      }
    }
    return failures ? 1 : 0;
  } catch (const fcam::Error& e) {
    report_error(e);
    return 2;
  } catch (const std::exception& e) {  // the library throws only fcam::Error; this guards the app's own code
    std::fprintf(stderr, "fcam_localize: InternalError: %s\n", e.what());
    return 2;
  }
}
