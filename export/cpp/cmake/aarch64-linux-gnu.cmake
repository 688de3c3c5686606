# CMake toolchain file: cross-compile for 64-bit Arm Linux (Jetson / JetPack 6, Graviton, Raspberry Pi OS 64-bit)
# with Debian's / Ubuntu's cross compiler (apt-get install g++-aarch64-linux-gnu) and arm64 libraries installed
# through multiarch (dpkg --add-architecture arm64; apt-get install libpng-dev:arm64 libjpeg-dev:arm64).
# Used by export/cpp/cross/aarch64.sh for kernels/ and export/cpp/.
#   cmake -S export/cpp -B build -DCMAKE_TOOLCHAIN_FILE=export/cpp/cmake/aarch64-linux-gnu.cmake ...
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(FCAM_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "prefix of the cross tools (aarch64-linux-gnu-g++, ...)")
set(CMAKE_C_COMPILER "${FCAM_CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${FCAM_CROSS_PREFIX}g++")

# Libraries and headers of the target only (multiarch: /usr/lib/aarch64-linux-gnu, /usr/include[/aarch64-linux-gnu]);
# programs (cmake, the host compiler's helpers) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Programs run under user-mode emulation (apt-get install qemu-user) with the multiarch arm64 loader and libraries
# (libc6:arm64, libstdc++6:arm64); export/cpp/cross/aarch64.sh says why not with the cross toolchain's sysroot.
find_program(FCAM_QEMU_AARCH64 qemu-aarch64)
if(FCAM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${FCAM_QEMU_AARCH64}")
endif()
