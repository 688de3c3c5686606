// Metadata parsing: fcam_deploy.* key/value pairs, and the small JSON subset they use.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <sstream>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

#include "internal.hpp"

namespace fcam {
namespace detail {
namespace {

const char* kPrefix = "fcam_deploy.";

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw Error(ErrorKind::ModelFormat,
              source + ": " + what + "; export it with `fcam export` from this fcam-deploy version");
}

// Minimal JSON reader for the values we store: arrays of strings/numbers and flat objects of strings.
class JsonReader {
 public:
  JsonReader(const std::string& text, std::string source) : s_(text), src_(std::move(source)) {}

  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  void end() {
    ws();
    if (i_ != s_.size()) fail("trailing characters");
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::ModelFormat, src_ + ": malformed JSON (" + what + " at offset " + std::to_string(i_) + ")");
  }

  std::string string() {
    ws();
    if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string");
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') break;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i_ >= s_.size()) fail("bad escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // surrogate pair
            if (!(i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u')) fail("lone surrogate");
            i_ += 2;
            unsigned lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(cp, out);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }

  double number() {
    ws();
    const char* begin = s_.c_str() + i_;
    char* endp = nullptr;
    double v = std::strtod(begin, &endp);
    if (endp == begin) fail("expected a number");
    // JSON numbers only: strtod would also take "nan", "inf" and hex floats
    if (!std::isfinite(v) || !(*begin == '-' || std::isdigit(static_cast<unsigned char>(*begin))))
      fail("expected a finite JSON number");
    i_ += static_cast<size_t>(endp - begin);
    return v;
  }

  template <class F>
  void array(F&& item) {
    expect('[');
    if (eat(']')) return;
    do {
      item();
    } while (eat(','));
    expect(']');
  }

 private:
  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("bad \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }
  static void utf8(unsigned cp, std::string& out) {
    if (cp < 0x80) {
      out.push_back(char(cp));
    } else if (cp < 0x800) {
      out.push_back(char(0xC0 | (cp >> 6)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(char(0xE0 | (cp >> 12)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(char(0xF0 | (cp >> 18)));
      out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    }
  }

  const std::string& s_;
  std::string src_;
  size_t i_ = 0;
};

std::vector<double> numbers(const std::string& text, const std::string& what) {
  JsonReader r(text, what);
  std::vector<double> out;
  r.array([&] { out.push_back(r.number()); });
  r.end();
  return out;
}

// A finite number written in full (no trailing text, no "nan"/"inf", which strtod would take).
double to_double(const std::string& text, const std::string& what, const std::string& source) {
  char* endp = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &endp);
  if (text.empty() || *endp != '\0' || std::isspace(static_cast<unsigned char>(text[0])) || !std::isfinite(v))
    bad(source, "metadata " + what + " is not a finite number: '" + text + "'");
  return v;
}

// A double that must be an integer in [lo, hi]: checked before the conversion, so no out-of-range cast (UB).
int to_int(double v, int lo, int hi, const std::string& what, const std::string& source) {
  if (!std::isfinite(v) || v != std::floor(v) || v < lo || v > hi) {
    std::ostringstream ss;
    ss.precision(17);
    ss << "metadata " << what << " must be an integer in [" << lo << ", " << hi << "], got " << v;
    bad(source, ss.str());
  }
  return static_cast<int>(v);
}

const char* const kMethods[] = {"fcam", "cam", "gradcam", "gradcampp", "xgradcam", "layercam"};

}  // namespace

std::map<std::string, std::string> parse_flat_json_object(const std::string& text, const std::string& source) {
  JsonReader r(text, source);
  std::map<std::string, std::string> out;
  r.expect('{');
  if (!r.eat('}')) {
    do {
      std::string k = r.string();
      r.expect(':');
      out[k] = r.string();
    } while (r.eat(','));
    r.expect('}');
  }
  r.end();
  return out;
}

Metadata parse_metadata(const std::map<std::string, std::string>& props, const std::string& source) {
  std::map<std::string, std::string> ours;
  for (const auto& kv : props)
    if (kv.first.rfind(kPrefix, 0) == 0) ours[kv.first.substr(std::string(kPrefix).size())] = kv.second;
  auto get = [&](const std::string& k) -> const std::string& {
    auto it = ours.find(k);
    if (it == ours.end()) bad(source, "metadata key '" + std::string(kPrefix) + k + "' is missing");
    return it->second;
  };
  auto opt = [&](const std::string& k, const std::string& d) {
    auto it = ours.find(k);
    return it == ours.end() ? d : it->second;
  };
  if (opt("format", "") != "fcam-deploy-model")
    bad(source, "not an fcam-deploy model (metadata key 'fcam_deploy.format' is '" + opt("format", "<missing>") +
                    "', expected 'fcam-deploy-model')");
  if (opt("format_version", "") != "1")
    bad(source, "fcam-deploy model format version '" + opt("format_version", "<missing>") +
                    "', this reader supports 1");
  Metadata m;
  m.props = props;
  {
    JsonReader r(get("class_names"), source + " class_names");
    r.array([&] { m.class_names.push_back(r.string()); });
    r.end();
  }
  auto size = numbers(get("input_size"), source + " input_size");
  auto mean = numbers(get("mean"), source + " mean");
  auto stdv = numbers(get("std"), source + " std");
  if (size.size() != 2) bad(source, "metadata input_size must be [H, W], got " + std::to_string(size.size()) + " values");
  if (mean.size() != 3 || stdv.size() != 3) bad(source, "metadata mean and std must have 3 values each");
  m.input_height = to_int(size[0], 1, kMaxInputSide, "input_size[0] (H)", source);
  m.input_width = to_int(size[1], 1, kMaxInputSide, "input_size[1] (W)", source);
  for (int c = 0; c < 3; ++c) {
    m.mean[c] = static_cast<float>(mean[c]);
    m.std[c] = static_cast<float>(stdv[c]);
  }
  m.tau = to_double(get("tau"), "tau", source);
  m.method = get("method");
  m.postprocess = get("postprocess");
  m.max_boxes = to_int(to_double(opt("max_boxes", "0"), "max_boxes", source), 0, 1 << 24, "max_boxes", source);
  m.input_layout = opt("input_layout", "NHWC-uint8-RGB");
  m.resize = opt("resize", "bilinear");
  const std::string dyn = opt("dynamic_batch", "true");
  m.dynamic_batch = dyn == "true";

  std::vector<std::string> problems;
  if (m.class_names.empty()) problems.push_back("no class names");
  for (int c = 0; c < 3; ++c)
    if (!(stdv[c] > 0.0) || !std::isfinite(static_cast<float>(stdv[c])) || !std::isfinite(m.mean[c])) {
      problems.push_back("mean/std must be finite with std > 0");
      break;
    }
  if (!(m.tau >= 0.0 && m.tau <= 1.0)) problems.push_back("tau outside [0, 1]");
  if (std::find(std::begin(kMethods), std::end(kMethods), m.method) == std::end(kMethods))
    problems.push_back("unknown method '" + m.method + "' (fcam, cam, gradcam, gradcampp, xgradcam, layercam)");
  if (m.postprocess != "none" && m.postprocess != "onnx" && m.postprocess != "custom-op")
    problems.push_back("unknown postprocess '" + m.postprocess + "'");
  if (m.input_layout != "NHWC-uint8-RGB")
    problems.push_back("input_layout '" + m.input_layout + "' (this reader supports 'NHWC-uint8-RGB')");
  if (m.resize != "bilinear") problems.push_back("resize '" + m.resize + "' (this reader supports 'bilinear')");
  if (dyn != "true" && dyn != "false") problems.push_back("dynamic_batch '" + dyn + "' (true or false)");
  if (!problems.empty()) {
    std::string msg = "invalid fcam-deploy metadata:";
    for (const auto& p : problems) msg += " " + p + ";";
    bad(source, msg);
  }
  return m;
}

void check_graph_shapes(const Metadata& meta, const std::vector<std::int64_t>& input_dims,
                        const std::vector<std::int64_t>& logits_dims, const std::vector<std::int64_t>& map_dims,
                        const std::string& source) {
  auto dims_text = [](const std::vector<std::int64_t>& d) {
    std::string s = "(";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + (d[i] < 0 ? std::string("?") : std::to_string(d[i]));
    return s + ")";
  };
  const std::string fix = "; the metadata does not describe this graph (re-export it with `fcam export`)";
  if (input_dims.size() != 4 || (input_dims[3] >= 0 && input_dims[3] != 3))
    bad(source, "graph input 'images' is " + dims_text(input_dims) + ", expected (N, H, W, 3)");
  if ((input_dims[1] >= 0 && input_dims[1] != meta.input_height) ||
      (input_dims[2] >= 0 && input_dims[2] != meta.input_width))
    throw Error(ErrorKind::ModelFormat, source + ": metadata input_size [" + std::to_string(meta.input_height) + ", " +
                                            std::to_string(meta.input_width) + "] but the graph input 'images' is " +
                                            dims_text(input_dims) + fix);
  if (logits_dims.size() != 2)
    throw Error(ErrorKind::ModelFormat, source + ": graph output 'logits' is " + dims_text(logits_dims) +
                                            ", expected (N, K)" + fix);
  if (logits_dims[1] >= 0 && logits_dims[1] != static_cast<std::int64_t>(meta.class_names.size()))
    throw Error(ErrorKind::ModelFormat, source + ": metadata has " + std::to_string(meta.class_names.size()) +
                                            " class names but the graph has " + std::to_string(logits_dims[1]) +
                                            " logits" + fix);
  if (map_dims.size() != 3 || (map_dims[1] >= 0 && map_dims[1] != meta.input_height) ||
      (map_dims[2] >= 0 && map_dims[2] != meta.input_width))
    throw Error(ErrorKind::ModelFormat, source + ": graph output 'map' is " + dims_text(map_dims) +
                                            ", expected (N, " + std::to_string(meta.input_height) + ", " +
                                            std::to_string(meta.input_width) + ")" + fix);
}

int parse_device(const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) == 0) {
    const std::string rest = device.substr(5);
    if (!rest.empty() && rest.size() <= 5 &&
        std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      const long v = std::strtol(rest.c_str(), nullptr, 10);
      if (v <= 65535) return static_cast<int>(v);
    }
  }
  throw Error(ErrorKind::Input, "device must be 'cpu', 'cuda' or 'cuda:N' with 0 <= N <= 65535, got '" + device + "'");
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

int available_cores() noexcept {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

}  // namespace detail
}  // namespace fcam
