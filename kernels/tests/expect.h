// The check macro of the C++ test binaries (fcam_launcher_test, fcam_lattice_test): EXPECT(cond, printf-args...)
// prints "FAIL file:line: message" and counts the failure in fcam_test::g_failures; a test's main returns non-zero
// when that count is not 0. Header-only; each test binary has its own counter.
#pragma once

#include <cstdio>

namespace fcam_test {
inline int g_failures = 0;
}  // namespace fcam_test

#define EXPECT(cond, ...)                                       \
  do {                                                          \
    if (!(cond)) {                                              \
      ++::fcam_test::g_failures;                                \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                        \
      std::fprintf(stderr, "\n");                               \
    }                                                           \
  } while (0)
