// PNG (libpng) and JPEG (libjpeg / libjpeg-turbo) decoding to 8-bit RGB, matching PIL's Image.convert("RGB").
// Both decoders read from memory and report through their own error/warning handlers: nothing is written to
// stderr, every failure is an fcam::Error of kind Image, and a size above PIL's decompression-bomb limit is refused
// from the header, before any pixel buffer is allocated.
#include <png.h>
#include <stdio.h>

#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

// jpeglib.h needs stdio's FILE and size_t declared first.
#include <jpeglib.h>

#include "internal.hpp"

namespace fcam {
namespace {

[[noreturn]] void image_error(const std::string& source, const std::string& what) {
  throw Error(ErrorKind::Image, source + ": " + what);
}

void check_pixels(const std::string& source, const char* kind, std::uint64_t w, std::uint64_t h) {
  if (w == 0 || h == 0) image_error(source, std::string(kind) + " declares an empty image");
  if (w * h > kMaxDecodedPixels)
    image_error(source, std::string(kind) + " size " + std::to_string(w) + "x" + std::to_string(h) + " (" +
                            std::to_string(w * h) + " pixels) is above the decompression-bomb limit of " +
                            std::to_string(kMaxDecodedPixels) + " pixels (PIL's); refusing to allocate it");
}

// ---- PNG ------------------------------------------------------------------------------------------------------
struct PngState {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos;
  std::string message;  // libpng's error text
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* st = static_cast<PngState*>(png_get_io_ptr(png));
  if (n > st->size - st->pos) png_error(png, "file ends early (truncated PNG)");
  std::memcpy(out, st->data + st->pos, n);
  st->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  if (st && st->message.empty()) st->message = msg ? msg : "unknown libpng error";
  png_longjmp(png, 1);
}

// Ancillary-chunk warnings (e.g. "iCCP: known incorrect sRGB profile") leave the pixels intact, and PIL decodes
// such files too: they are dropped, never printed.
void png_on_warning(png_structp, png_const_charp) {}

Image decode_png(const std::string& source, const std::uint8_t* data, std::size_t size) {
  PngState st{data, size, 0, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_on_error, png_on_warning);
  if (!png) throw std::bad_alloc();
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw std::bad_alloc();
  }
  // Everything that can throw a C++ exception or allocate with new happens outside the setjmp scope's unwinding:
  // the pixel buffer is created before png_read_image and freed by RAII after the longjmp returned here.
  Image img;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    image_error(source, "corrupt or truncated PNG (" + st.message + ")");
  }
  png_set_read_fn(png, &st, png_read_mem);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (w == 0 || h == 0 || static_cast<std::uint64_t>(w) * h > kMaxDecodedPixels) {
    png_destroy_read_struct(&png, &info, nullptr);
    check_pixels(source, "PNG", w, h);
  }
  const int color = png_get_color_type(png, info);
  png_set_expand(png);    // palette -> RGB, gray < 8 bit -> 8 bit, tRNS -> alpha
  png_set_strip_16(png);  // 16-bit -> high byte
  png_set_strip_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    image_error(source, "unsupported PNG pixel layout");
  }
  try {
    img.width = static_cast<int>(w);
    img.height = static_cast<int>(h);
    img.rgb.resize(static_cast<size_t>(w) * h * 3);
    rows.resize(h);
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.rgb.data() + static_cast<size_t>(y) * w * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return img;
}

// ---- JPEG -----------------------------------------------------------------------------------------------------
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// libjpeg reports recoverable corruption ("Premature end of JPEG file", "Corrupt JPEG data: ...") as warnings
// (msg_level -1) and decodes on with grey or garbage pixels: treated as errors here. Trace messages (level >= 0)
// are dropped. Nothing reaches stderr.
void jpeg_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) jpeg_fail(cinfo);
}

void jpeg_silent(j_common_ptr) {}

Image decode_jpeg(const std::string& source, const std::uint8_t* data, std::size_t size) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  err.mgr.output_message = jpeg_silent;
  err.message[0] = '\0';
  Image img;
  // Outcomes decided inside the setjmp scope are thrown after it (no C++ exception crosses libjpeg frames).
  std::string failure;
  std::uint64_t bomb_w = 0, bomb_h = 0;
  bool bomb = false;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    image_error(source, std::string("corrupt or truncated JPEG (") + err.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.image_width == 0 || cinfo.image_height == 0 ||
      static_cast<std::uint64_t>(cinfo.image_width) * cinfo.image_height > kMaxDecodedPixels) {
    bomb = true;
    bomb_w = cinfo.image_width;
    bomb_h = cinfo.image_height;
  } else if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    failure = "CMYK JPEGs are not supported by this decoder (convert the file to RGB)";
  }
  if (bomb || !failure.empty()) {
    jpeg_destroy_decompress(&cinfo);
    if (bomb) check_pixels(source, "JPEG", bomb_w, bomb_h);
    image_error(source, failure);
  }
  cinfo.out_color_space = JCS_RGB;  // gray is replicated, as PIL's convert("RGB")
  jpeg_start_decompress(&cinfo);
  const unsigned w = cinfo.output_width, h = cinfo.output_height;
  if (cinfo.output_components != 3 || w == 0 || h == 0) {
    jpeg_destroy_decompress(&cinfo);
    image_error(source, "unsupported JPEG layout");
  }
  try {
    img.width = static_cast<int>(w);
    img.height = static_cast<int>(h);
    img.rgb.resize(static_cast<size_t>(w) * h * 3);
  } catch (...) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  while (cinfo.output_scanline < h) {
    JSAMPROW row = img.rgb.data() + static_cast<size_t>(cinfo.output_scanline) * w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return img;
}

Image decode(const std::string& source, const std::uint8_t* data, std::size_t size) {
  if (size >= 8 && png_sig_cmp(data, 0, 8) == 0) return decode_png(source, data, size);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(source, data, size);
  image_error(source, size == 0 ? "empty file" : "not a PNG or JPEG file (this decoder reads only those two formats)");
}

}  // namespace

Image load_image(const std::string& path) {
  return detail::guarded("fcam::load_image", [&] {
    std::ifstream f(path, std::ios::binary);
    if (!f) image_error(path, std::string("cannot open: ") + std::strerror(errno));
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) image_error(path, "read error");
    return decode(path, bytes.data(), bytes.size());
  });
}

Image decode_image(const void* data, std::size_t size) {
  return detail::guarded("fcam::decode_image", [&] {
    if (!data && size) throw Error(ErrorKind::Input, "decode_image: data is null");
    return decode("<memory>", static_cast<const std::uint8_t*>(data), data ? size : 0);
  });
}

}  // namespace fcam
