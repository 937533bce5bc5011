# nuri — build with `make`; `make test` runs the suite (release + ASan/UBSan);
# `make demo` generates text from the demo model in ../shared/models.
#
# BUILD=release (default, build/), debug (build-debug/), san (build-san/).

BUILD ?= release
CC ?= cc
ifeq ($(BUILD),release)
  OUT ?= build
  OPT := -O2 -DNDEBUG
else ifeq ($(BUILD),debug)
  OUT ?= build-debug
  OPT := -O0 -g
else ifeq ($(BUILD),san)
  OUT ?= build-san
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDSAN := -fsanitize=address,undefined
else
  $(error BUILD must be release, debug or san)
endif

# -ffp-contract=off: no multiply-add fused unless the source asks (GCC's
# default with -std=c11, not clang's), so the SIMD kernels can repeat the
# scalar reference's float operations bit for bit with any compiler.
CFLAGS_ALL := -std=c11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -ffp-contract=off \
              -D_GNU_SOURCE -Iinclude -Isrc $(OPT) -pthread -MMD -MP $(CFLAGS)
LDLIBS_ALL := $(LDSAN) -pthread -lm $(LDFLAGS)

LIB_SRC := $(sort $(wildcard src/core/*.c src/gguf/*.c src/quant/*.c src/model/*.c \
                             src/tokenizer/*.c src/sample/*.c src/kernels/*.c))
# Front ends (chat templates, server, command line) may use Debian libraries;
# libnuri itself needs only libc, libm and pthreads.
FRONT_SRC := $(sort $(wildcard src/chat/*.c src/server/*.c))
FRONT_LIBS := -ljansson -ledit -lmicrohttpd
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_SUPPORT := $(sort $(wildcard tests/support/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(OUT)/obj/%.o)
FRONT_OBJ := $(FRONT_SRC:%.c=$(OUT)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(OUT)/obj/%.o)
SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(OUT)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(OUT)/tests/%)

.PHONY: all lib tests test test-release test-san demo clean check-deps
# Keep test objects between runs (make would delete them as intermediates).
.SECONDARY:

all: $(OUT)/nuri

lib: $(OUT)/libnuri.a

$(OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(ISA_FLAGS) -c $< -o $@

# Only the ISA-specific kernel files get ISA flags; they run only on CPUs
# that have those instructions (src/kernels/dispatch.c decides).
ifneq ($(filter x86_64 amd64,$(shell $(CC) -dumpmachine | cut -d- -f1)),)
$(OUT)/obj/src/kernels/kernels_avx2.o: ISA_FLAGS := -mavx2 -mfma -mf16c
$(OUT)/obj/src/kernels/kernels_avx512.o: ISA_FLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
    -mavx512vl -mavx512dq -mavx512vnni
$(OUT)/obj/src/kernels/kernels_avx2_k.o: ISA_FLAGS := -mavx2 -mfma -mf16c
$(OUT)/obj/src/kernels/kernels_avx512_k.o: ISA_FLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512bw \
    -mavx512vl -mavx512dq -mavx512vnni
endif
# aarch64: Advanced SIMD is the baseline (kernels_neon.c takes no flags); the
# dot-product and int8-matrix files get the extensions they use.
ifneq ($(filter aarch64 arm64,$(shell $(CC) -dumpmachine | cut -d- -f1)),)
$(OUT)/obj/src/kernels/kernels_dotprod.o: ISA_FLAGS := -march=armv8.2-a+dotprod
$(OUT)/obj/src/kernels/kernels_i8mm.o: ISA_FLAGS := -march=armv8.2-a+dotprod+i8mm
endif

$(OUT)/libnuri.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(OUT)/libnuri-front.a: $(FRONT_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(OUT)/nuri: $(CLI_OBJ) $(OUT)/libnuri-front.a $(OUT)/libnuri.a | check-deps
	$(CC) $(CFLAGS_ALL) -o $@ $(CLI_OBJ) $(OUT)/libnuri-front.a $(OUT)/libnuri.a $(FRONT_LIBS) $(LDLIBS_ALL)

# Tests may use the front ends' libraries too (jansson reads the JSON goldens).
$(OUT)/tests/%: $(OUT)/obj/tests/%.o $(SUPPORT_OBJ) $(OUT)/libnuri-front.a $(OUT)/libnuri.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(SUPPORT_OBJ) $(OUT)/libnuri-front.a $(OUT)/libnuri.a $(FRONT_LIBS) $(LDLIBS_ALL)

tests: $(OUT)/nuri $(TEST_BIN)

# Stops with the exact install line when a Debian library is missing.
DEB_PACKAGES := libjansson-dev libedit-dev libmicrohttpd-dev
check-deps:
	@printf '#include <jansson.h>\n#include <stdio.h>\n#include <editline/readline.h>\n#include <microhttpd.h>\nint main(void){return 0;}\n' | $(CC) -x c - -o /dev/null -ljansson -ledit -lmicrohttpd 2>/dev/null || { \
	  echo "nuri needs Debian packages that are not installed. Install them with:"; \
	  echo "  apt-get install -y $(DEB_PACKAGES)"; exit 1; }

# The whole suite, in the release build and again under ASan + UBSan.
test:
	@$(MAKE) --no-print-directory BUILD=release tests
	@$(MAKE) --no-print-directory BUILD=san tests
	@tests/run_tests.sh build build-san

test-release:
	@$(MAKE) --no-print-directory BUILD=release tests
	@tests/run_tests.sh build

test-san:
	@$(MAKE) --no-print-directory BUILD=san tests
	@tests/run_tests.sh build-san

# Arm (aarch64), README "Arm": `make arm` cross-builds nuri and the tests
# into build-arm/; `make test-arm` runs the whole suite under qemu-aarch64
# once per CPU model in ARM_CPUS (plain NEON; + dotprod; + dotprod and
# i8mm). Needs gcc-aarch64-linux-gnu, qemu-user and DEB_PACKAGES for arm64
# (Debian multiarch), which .ci/run installs.
ARM_CC ?= aarch64-linux-gnu-gcc
ARM_OUT ?= build-arm
ARM_CPUS ?= cortex-a53 cortex-a76 max
ARM_QEMU ?= qemu-aarch64
.PHONY: arm test-arm deb-packages
deb-packages:
	@echo $(DEB_PACKAGES)

arm:
	@command -v $(ARM_CC) >/dev/null || { \
	  echo "make arm needs the cross compiler: apt-get install -y gcc-aarch64-linux-gnu"; exit 1; }
	@printf 'int main(void){return 0;}\n' | $(ARM_CC) -x c - -o /dev/null $(FRONT_LIBS) 2>/dev/null || { \
	  echo "make arm needs the front ends' libraries for arm64 (Debian multiarch):"; \
	  echo "  dpkg --add-architecture arm64 && apt-get update && apt-get install -y $(DEB_PACKAGES:%=%:arm64)"; exit 1; }
	@$(MAKE) --no-print-directory CC=$(ARM_CC) OUT=$(ARM_OUT) BUILD=release tests

test-arm: arm
	@command -v $(ARM_QEMU) >/dev/null || { echo "make test-arm needs $(ARM_QEMU): apt-get install -y qemu-user"; exit 1; }
	@status=0; for cpu in $(ARM_CPUS); do \
	  echo "== $(ARM_QEMU) -cpu $$cpu"; \
	  NURI_TEST_WRAPPER="$(ARM_QEMU) -cpu $$cpu" tests/run_tests.sh $(ARM_OUT) || status=1; \
	done; exit $$status

SHARED ?= ../shared
demo: $(OUT)/nuri
	@test -f $(SHARED)/models/aidreams260K.gguf || { echo "demo: $(SHARED)/models/aidreams260K.gguf not found (the shared/ folder beside the project)"; exit 1; }
	$(OUT)/nuri run -m $(SHARED)/models/aidreams260K.gguf -p "The machine" -n 80 --temp 0 --echo

# Memory read bandwidth probe for the benchmarks (bench/README.md); not built by default.
.PHONY: bench-bandwidth
bench-bandwidth: $(OUT)/bandwidth
$(OUT)/bandwidth: bench/bandwidth.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -pthread -o $@ $< $(CFLAGS)

clean:
	rm -rf build build-debug build-san build-arm

# Single-thread kernel speed per type and level (options: bench/kernels_bench.c);
# not built by default.
.PHONY: bench-kernels
bench-kernels: $(OUT)/bench/kernels_bench
$(OUT)/bench/kernels_bench: $(OUT)/obj/bench/kernels_bench.o $(OUT)/libnuri.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(OUT)/libnuri.a $(LDLIBS_ALL)

-include $(LIB_OBJ:.o=.d) $(FRONT_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(SUPPORT_OBJ:.o=.d) $(TEST_BIN:$(OUT)/tests/%=$(OUT)/obj/tests/%.d)
