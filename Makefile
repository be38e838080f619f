# ember build. Plain make: no dependency beyond gcc/make, and sources are found by
# directory so adding a file never means editing this file.
#
#   make              library (shared + static + pkg-config), CLI, ember-init, tests
#   make check        unit, fuzz-replay and KVM tests, then the end-to-end suite (real Linux guests)
#   make check-fast   unit, fuzz-replay and KVM tests only
#   make check-asan   unit, fuzz-replay and KVM tests built with ASan+UBSan (into build-asan/)
#   make guest        guest kernel (cached) and default busybox root
#   make format-check clang-format over every C file

VERSION      := 0.1.0
SOVERSION    := 0
CC           ?= cc
BUILD        ?= build
PREFIX       ?= /usr/local
SAN          ?=

CPPFLAGS_ALL := -Iinclude -Isrc -D_GNU_SOURCE -DEMBER_VERSION=\"$(VERSION)\"
WARN         := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
                -Wno-unused-parameter -Wformat=2 -Wvla
OPT          ?= -O2 -g
ifeq ($(SAN),1)
OPT          := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SANLD        := -fsanitize=address,undefined
endif
CFLAGS_ALL   := -std=gnu11 $(OPT) $(WARN) -fPIC -fvisibility=hidden $(CFLAGS)
LDLIBS_ALL   := -lpthread $(LDLIBS)

LIB_SRCS     := $(sort $(shell find src -name '*.c'))
LIB_OBJS     := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/init_blob.o
CLI_SRCS     := $(sort $(wildcard cli/*.c))
CLI_OBJS     := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
INIT_SRCS    := $(sort $(wildcard guest/init/*.c))
UNIT_SRCS    := $(sort $(wildcard tests/unit/test_*.c))
KVM_SRCS     := $(sort $(wildcard tests/kvm/test_*.c))
E2E_C_SRCS   := $(sort $(wildcard tests/e2e/*.c))
BENCH_SRCS   := $(sort $(wildcard bench/*.c))
FUZZ_SRCS    := $(sort $(wildcard fuzz/fuzz_*.c))
UNIT_BINS    := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
KVM_BINS     := $(KVM_SRCS:tests/kvm/%.c=$(BUILD)/tests/kvm/%)
E2E_BINS     := $(E2E_C_SRCS:tests/e2e/%.c=$(BUILD)/tests/e2e/%)
BENCH_BINS   := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
FUZZ_BINS    := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/%)
STATIC_E2E_BINS := $(E2E_C_SRCS:tests/e2e/%.c=$(BUILD)/static/tests/e2e/%)
STATIC_KVM_BINS := $(KVM_SRCS:tests/kvm/%.c=$(BUILD)/static/tests/kvm/%)

SHLIB        := $(BUILD)/libember.so.$(VERSION)
STLIB        := $(BUILD)/libember.a
INIT_BIN     := $(BUILD)/guest/ember-init

.PHONY: all lib cli tests check check-fast check-asan guest format format-check install clean static
all: lib cli tests $(BUILD)/ember.pc
lib: $(SHLIB) $(STLIB)
cli: $(BUILD)/ember
tests: $(UNIT_BINS) $(KVM_BINS) $(E2E_BINS) $(BENCH_BINS) $(FUZZ_BINS)
static: $(BUILD)/ember-static $(STATIC_E2E_BINS) $(STATIC_KVM_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# ember-init is the guest's PID 1: static, small, embedded into the library. Built against musl
# (Debian's musl-tools) it is 80 KB instead of 900 KB with glibc: less to pack and copy at every
# boot and less for the guest to unpack. Without musl-gcc it falls back to $(CC).
INIT_CC ?= $(shell command -v musl-gcc 2>/dev/null || echo $(CC))
$(INIT_BIN): $(INIT_SRCS) $(wildcard guest/init/*.h) include/ember/guest_abi.h
	@mkdir -p $(dir $@)
	$(INIT_CC) -std=gnu11 -Os -static -Wall -Wextra -Werror -Iinclude -D_GNU_SOURCE \
		-ffunction-sections -fdata-sections -Wl,--gc-sections -s -o $@ $(INIT_SRCS)

$(BUILD)/gen/init_blob.S: $(INIT_BIN)
	@mkdir -p $(dir $@)
	printf '\t.section .rodata\n\t.balign 16\n\t.globl ember_init_blob\n\t.hidden ember_init_blob\nember_init_blob:\n\t.incbin "%s"\n\t.globl ember_init_blob_end\n\t.hidden ember_init_blob_end\nember_init_blob_end:\n\t.section .note.GNU-stack,"",@progbits\n' "$(abspath $(INIT_BIN))" > $@

$(BUILD)/obj/gen/init_blob.o: $(BUILD)/gen/init_blob.S
	@mkdir -p $(dir $@)
	$(CC) -c $< -o $@

$(SHLIB): $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,libember.so.$(SOVERSION) $(SANLD) -o $@ $^ $(LDLIBS_ALL)
	ln -sf libember.so.$(VERSION) $(BUILD)/libember.so.$(SOVERSION)
	ln -sf libember.so.$(SOVERSION) $(BUILD)/libember.so

$(STLIB): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/ember.pc: Makefile
	@mkdir -p $(dir $@)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: ember\nDescription: microVM library for Linux/KVM\nVersion: %s\nLibs: -L$${libdir} -lember\nLibs.private: -lpthread\nCflags: -I$${includedir}\n' "$(PREFIX)" "$(VERSION)" > $@

$(BUILD)/ember: $(CLI_OBJS) $(STLIB)
	$(CC) $(SANLD) -o $@ $(CLI_OBJS) $(STLIB) $(LDLIBS_ALL)

# Fully static CLI, for copying into the TCG test host's initramfs.
$(BUILD)/ember-static: $(CLI_OBJS) $(STLIB)
	$(CC) -static -o $@ $(CLI_OBJS) $(STLIB) $(LDLIBS_ALL)

TEST_HDRS    := $(wildcard tests/*.h tests/*/*.h)

$(BUILD)/tests/%: tests/%.c $(STLIB) $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Itests $(CFLAGS_ALL) $(SANLD) -o $@ $< $(STLIB) $(LDLIBS_ALL)

# Static test programs for the TCG test host.
$(BUILD)/static/tests/%: tests/%.c $(STLIB) $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Itests $(CFLAGS_ALL) -static -o $@ $< $(STLIB) $(LDLIBS_ALL)

# Fuzz targets with fuzz/replay.c as main (seed replay + deterministic mutations); libFuzzer
# builds are fuzz/run.sh's.
$(BUILD)/fuzz/%: fuzz/%.c fuzz/replay.c fuzz/fuzz_input.h $(STLIB) $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Itests/unit $(CFLAGS_ALL) $(SANLD) -o $@ $< fuzz/replay.c $(STLIB) $(LDLIBS_ALL)

$(BUILD)/bench/%: bench/%.c $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(SANLD) -o $@ $< $(STLIB) $(LDLIBS_ALL)

guest:
	guest/kernel/build.sh
	guest/rootfs/build.sh

check-fast: all
	tests/run.sh --build $(BUILD) unit fuzz kvm

check: all static guest
	tests/run.sh --build $(BUILD) unit fuzz kvm e2e

check-asan:
	$(MAKE) SAN=1 BUILD=build-asan lib cli tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 tests/run.sh --build build-asan unit fuzz kvm

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/ember $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(SHLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libember.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libember.so.$(SOVERSION)
	ln -sf libember.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libember.so
	install -m 644 $(STLIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/ember/*.h $(DESTDIR)$(PREFIX)/include/ember/
	install -m 644 $(BUILD)/ember.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(BUILD)/ember $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf $(BUILD) build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
