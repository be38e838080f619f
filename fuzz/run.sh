#!/bin/sh
# Builds and runs the kernel image fuzzer (needs clang with libFuzzer).
#   fuzz/run.sh [seconds]     default 60; corpus in build/fuzz/corpus, crashes in build/fuzz/
# Seeds: the first 64 KiB of build/guest/bzImage and vmlinux when they exist.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
out=build/fuzz
mkdir -p "$out/corpus"
clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Isrc -Iinclude -D_GNU_SOURCE -o "$out/fuzz_kernel_image" fuzz/fuzz_kernel_image.c \
	src/arch/x86_64/kernel.c src/arch/x86_64/boot.c src/core/gmem.c
for k in bzImage vmlinux; do
	[ -f "build/guest/$k" ] && head -c 65536 "build/guest/$k" >"$out/corpus/seed-$k"
done
# Small valid images (as in tests/unit/test_x86_kernel.c), so the fuzzer starts past the checks.
command -v python3 >/dev/null && python3 - "$out/corpus" <<'PY'
import struct, sys
d = sys.argv[1]
bz = bytearray(5 * 512 + 4096)
bz[0x1f1] = 4
struct.pack_into('<I', bz, 0x1f4, 4096 // 16)
struct.pack_into('<H', bz, 0x1fe, 0xaa55)
bz[0x200:0x202] = b'\xeb\x6a'
bz[0x202:0x206] = b'HdrS'
struct.pack_into('<H', bz, 0x206, 0x020f)
bz[0x211] = 1
struct.pack_into('<IIBBHI', bz, 0x22c, 0x7fffffff, 0x200000, 1, 0, 1, 2047)
struct.pack_into('<Q', bz, 0x258, 0x1000000)
struct.pack_into('<I', bz, 0x260, 4 << 20)
open(d + '/seed-synthetic-bzimage', 'wb').write(bz)
el = bytearray(4096 + 4096)
el[0:7] = b'\x7fELF\x02\x01\x01'
struct.pack_into('<HHIQQQIHHHHHH', el, 16, 2, 62, 1, 0x1000000, 64, 0, 0, 64, 56, 2, 64, 0, 0)
struct.pack_into('<IIQQQQQQ', el, 64, 1, 5, 4096, 0, 0x1000000, 4096, 8192, 4096)
struct.pack_into('<IIQQQQQQ', el, 120, 4, 4, 512, 0, 0, 24, 24, 4)
struct.pack_into('<III4sQ', el, 512, 4, 8, 18, b'Xen\0', 0x1000010)
open(d + '/seed-synthetic-pvh', 'wb').write(el)
PY
# -rss_limit_mb: the target maps a 64 MiB guest once.
exec "$out/fuzz_kernel_image" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 \
	-artifact_prefix="$out/" "$out/corpus"
