# cmake/aarch64-linux-gnu.cmake — cross-compiling liandan for 64-bit ARM Linux with Debian's
# gcc-aarch64-linux-gnu (scripts/setup.sh installs it, qemu-user, and the arm64 -dev packages of
# the required libraries through dpkg multiarch). `make test-arm` uses it:
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Tests run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), so ctest works unchanged.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Libraries and headers of the target only: the arm64 packages' multiarch directories and the
# cross libc (libc6-dev-arm64-cross); programs (pkg-config, qemu) from the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# pkg-config reads the arm64 .pc files only (an amd64 library must never be found).
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# Optional libraries the cross build leaves out even where arm64 packages exist: MPI (its
# compiler wrappers are the build machine's) and BLAS (benchmark comparison only).
set(CMAKE_DISABLE_FIND_PACKAGE_MPI ON)
set(CMAKE_DISABLE_FIND_PACKAGE_BLAS ON)

find_program(LD_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(LD_QEMU_AARCH64)
  # (no -L: the arm64 loader and libc live under /, multiarch)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LD_QEMU_AARCH64})
endif()
