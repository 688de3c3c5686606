// Metadata parsing: fcam_deploy.* key/value pairs, and the small JSON subset they use.
#include <cctype>
#include <cstdlib>
#include <sstream>

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

double to_double(const std::string& text, const std::string& what, const std::string& source) {
  char* endp = nullptr;
  double v = std::strtod(text.c_str(), &endp);
  if (text.empty() || *endp != '\0') bad(source, "metadata " + what + " is not a number: '" + text + "'");
  return v;
}

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
  if (size.size() != 2 || mean.size() != 3 || stdv.size() != 3) bad(source, "input_size/mean/std have wrong lengths");
  m.input_height = static_cast<int>(size[0]);
  m.input_width = static_cast<int>(size[1]);
  for (int c = 0; c < 3; ++c) {
    m.mean[c] = static_cast<float>(mean[c]);
    m.std[c] = static_cast<float>(stdv[c]);
  }
  m.tau = static_cast<float>(to_double(get("tau"), "tau", source));
  m.method = get("method");
  m.postprocess = get("postprocess");
  m.max_boxes = static_cast<int>(to_double(opt("max_boxes", "0"), "max_boxes", source));
  m.input_layout = opt("input_layout", "NHWC-uint8-RGB");
  m.resize = opt("resize", "bilinear");
  m.dynamic_batch = opt("dynamic_batch", "true") == "true";

  std::vector<std::string> problems;
  if (m.class_names.empty()) problems.push_back("no class names");
  if (m.input_height <= 0 || m.input_width <= 0) problems.push_back("non-positive input_size");
  if (!(m.tau >= 0.f && m.tau <= 1.f)) problems.push_back("tau outside [0, 1]");
  if (m.postprocess != "none" && m.postprocess != "onnx" && m.postprocess != "custom-op")
    problems.push_back("unknown postprocess '" + m.postprocess + "'");
  if (m.input_layout != "NHWC-uint8-RGB")
    problems.push_back("input_layout '" + m.input_layout + "' (this reader supports 'NHWC-uint8-RGB')");
  if (m.resize != "bilinear") problems.push_back("resize '" + m.resize + "' (this reader supports 'bilinear')");
  if (!problems.empty()) {
    std::string msg = "invalid fcam-deploy metadata:";
    for (const auto& p : problems) msg += " " + p + ";";
    bad(source, msg);
  }
  return m;
}

std::vector<std::string> output_names(const Metadata& meta) {
  std::vector<std::string> names{"logits", "pred_class", "map"};
  if (meta.postprocess == "onnx" || meta.postprocess == "custom-op") names.push_back("mask");
  if (meta.postprocess == "custom-op") {
    names.push_back("boxes");
    names.push_back("box_count");
  }
  return names;
}

std::string env_or(const char* name, const std::string& fallback) {
  if (!fallback.empty()) return fallback;
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

}  // namespace detail
}  // namespace fcam
