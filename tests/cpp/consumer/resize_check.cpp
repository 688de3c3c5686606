// resize_check IMAGE W H OUT.rgb : decode IMAGE with fcam::load_image, resize with fcam::resize_bilinear,
// write the raw RGB bytes to OUT.rgb (compared against PIL by tests/cpp/test_cpp_localizer.py).
#include <cstdio>
#include <cstdlib>

#include <fcam/localizer.hpp>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: resize_check IMAGE W H OUT.rgb\n");
    return 2;
  }
  try {
    const fcam::Image img = fcam::load_image(argv[1]);  // resized through an ImageView of it
    const fcam::Image out = fcam::resize_bilinear(img, std::atoi(argv[2]), std::atoi(argv[3]));
    std::FILE* f = std::fopen(argv[4], "wb");
    if (!f) return 3;
    std::fwrite(out.rgb.data(), 1, out.rgb.size(), f);
    std::fclose(f);
    std::printf("%s %d %d\n", fcam::version().c_str(), out.width, out.height);
  } catch (const fcam::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
