# toolchain/android-arm64.mk — builds libnuri for Android arm64-v8a with the
# NDK's clang, through the project's Makefile (README "Android").
#
#   export ANDROID_NDK=$HOME/Android/Sdk/ndk/27.2.12479018   # any r23 or later
#   make -f toolchain/android-arm64.mk -j8 lib               # build-android/libnuri.a
#
# Variables: ANDROID_API (minSdk, default 24), NDK_HOST (the prebuilt
# folder: linux-x86_64, or darwin-x86_64 on macOS), OUT (build-android).
#
# The result is a static library with include/nuri.h as its interface; it
# needs only bionic's libc and libm (link the app with -lm). The kernels
# pick NEON, dot-product or int8-matrix code at run time from getauxval, so
# one library runs on every arm64-v8a device. The `nuri` program and the
# tests are not built here: the front ends use Debian libraries (jansson,
# libedit, libmicrohttpd) that the NDK does not have. For Gradle projects,
# toolchain/android/CMakeLists.txt builds the same library (and a kernel
# self-test to run with adb).

ANDROID_NDK ?= $(error set ANDROID_NDK to the NDK folder, e.g. $$HOME/Android/Sdk/ndk/27.2.12479018)
ANDROID_API ?= 24
NDK_HOST ?= linux-x86_64
NDK_BIN = $(ANDROID_NDK)/toolchains/llvm/prebuilt/$(NDK_HOST)/bin

CC = $(NDK_BIN)/aarch64-linux-android$(ANDROID_API)-clang
AR = $(NDK_BIN)/llvm-ar
OUT ?= build-android
# Position-independent code, so the library can go into an app's JNI .so.
CFLAGS += -fPIC

include Makefile
