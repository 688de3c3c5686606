// PNG (libpng) and JPEG (libjpeg / libjpeg-turbo) decoding to 8-bit RGB, matching PIL's Image.convert("RGB").
#include <png.h>
#include <stdio.h>

#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <memory>

// jpeglib.h needs stdio's FILE and size_t declared first.
#include <jpeglib.h>

#include "fcam/localizer.hpp"

namespace fcam {
namespace {

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) fclose(f);
  }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

[[noreturn]] void image_error(const std::string& path, const std::string& what) {
  throw Error(ErrorKind::Image, path + ": " + what);
}

Image decode_png(const std::string& path, FILE* fp) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) image_error(path, "libpng could not allocate a reader");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    image_error(path, "libpng could not allocate an info struct");
  }
  Image img;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    image_error(path, "corrupt or truncated PNG");
  }
  png_init_io(png, fp);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (w == 0 || h == 0 || static_cast<unsigned long long>(w) * h > 178956970ULL) {
    png_destroy_read_struct(&png, &info, nullptr);
    image_error(path, "PNG size " + std::to_string(w) + "x" + std::to_string(h) +
                          " is empty or above PIL's decompression-bomb limit");
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
    image_error(path, "unsupported PNG pixel layout");
  }
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.rgb.data() + static_cast<size_t>(y) * w * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return img;
}

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

Image decode_jpeg(const std::string& path, FILE* fp) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.message[0] = '\0';
  Image img;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    image_error(path, std::string("corrupt or truncated JPEG (") + err.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, fp);
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    image_error(path, "CMYK JPEGs are not supported by this decoder (convert the file to RGB)");
  }
  cinfo.out_color_space = JCS_RGB;  // gray is replicated, as PIL's convert("RGB")
  jpeg_start_decompress(&cinfo);
  const unsigned w = cinfo.output_width, h = cinfo.output_height;
  if (cinfo.output_components != 3 || w == 0 || h == 0) {
    jpeg_destroy_decompress(&cinfo);
    image_error(path, "unsupported JPEG layout");
  }
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  while (cinfo.output_scanline < h) {
    JSAMPROW row = img.rgb.data() + static_cast<size_t>(cinfo.output_scanline) * w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return img;
}

}  // namespace

Image load_image(const std::string& path) {
  FilePtr fp(fopen(path.c_str(), "rb"));
  if (!fp) image_error(path, std::string("cannot open: ") + std::strerror(errno));
  unsigned char head[8] = {0};
  const size_t got = fread(head, 1, sizeof head, fp.get());
  rewind(fp.get());
  if (got == 8 && png_sig_cmp(head, 0, 8) == 0) return decode_png(path, fp.get());
  if (got >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) return decode_jpeg(path, fp.get());
  image_error(path, "not a PNG or JPEG file (this decoder reads only those two formats)");
}

}  // namespace fcam
