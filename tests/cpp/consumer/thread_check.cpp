// thread_check MODEL IMAGE... : predict every image once serially, then from 4 threads x 8 rounds concurrently on
// one shared fcam::Localizer; exit 0 only if every concurrent result equals the serial one.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <fcam/localizer.hpp>

namespace {
bool same(const fcam::Prediction& a, const fcam::Prediction& b) {
  return a.class_index == b.class_index && a.score == b.score && a.boxes == b.boxes && a.map == b.map &&
         a.mask == b.mask;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: thread_check MODEL IMAGE...\n");
    return 2;
  }
  try {
    const fcam::Localizer loc = fcam::Localizer::load(argv[1]);
    std::vector<fcam::Image> images;
    for (int i = 2; i < argc; ++i) images.push_back(fcam::load_image(argv[i]));
    std::vector<fcam::Prediction> serial;
    for (const auto& im : images) serial.push_back(loc.predict(im));
    std::atomic<int> mismatches{0}, calls{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int round = 0; round < 8; ++round)
          for (size_t i = 0; i < images.size(); ++i) {
            const size_t j = (i + static_cast<size_t>(t)) % images.size();
            if (!same(loc.predict(images[j]), serial[j])) ++mismatches;
            ++calls;
          }
      });
    for (auto& th : threads) th.join();
    std::printf("calls %d mismatches %d\n", calls.load(), mismatches.load());
    return mismatches.load() == 0 ? 0 : 1;
  } catch (const fcam::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
