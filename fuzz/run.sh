#!/bin/sh
# Builds one fuzz target with clang's libFuzzer (+ ASan, UBSan) and fuzzes it.
#   fuzz/run.sh [TARGET] [SECONDS]     TARGET: fuzz_kernel_image (default), fuzz_virtq,
#                                      fuzz_virtio_console; SECONDS default 60
# Corpus: build/libfuzzer/corpus-TARGET (starts from fuzz/seeds/TARGET, plus the first 64 KiB of the
# guest kernels for fuzz_kernel_image); crash reproducers land in build/libfuzzer/. Replay one with
# the plain build: build/fuzz/TARGET FILE (make builds those; tests/run.sh fuzz runs them).
set -eu
cd "$(dirname "$0")/.."
target=${1:-fuzz_kernel_image}
secs=${2:-60}
[ -f "fuzz/$target.c" ] || {
	echo "fuzz/run.sh: no fuzz/$target.c (targets: $(cd fuzz && ls fuzz_*.c | sed 's/\.c$//' | tr '\n' ' '))" >&2
	exit 2
}
command -v clang >/dev/null || {
	echo "fuzz/run.sh: clang not found (apt-get install clang)" >&2
	exit 2
}
out=build/libfuzzer
corpus="$out/corpus-$target"
mkdir -p "$corpus"
# The library, instrumented the same way, as an archive: the target pulls in only what it uses.
flags="-std=gnu11 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
flags="$flags -Isrc -Iinclude -Itests/unit -D_GNU_SOURCE -DEMBER_VERSION=\"fuzz\""
objs="$out/libfuzzer-obj"
rm -rf "$objs"
mkdir -p "$objs"
for f in $(find src -name '*.c' | sort); do
	clang $flags -c "$f" -o "$objs/$(echo "$f" | tr / _).o"
done
# No guest is booted here: an empty ember-init stands in for the embedded one.
printf '\t.section .rodata\n\t.globl ember_init_blob\nember_init_blob:\n\t.globl ember_init_blob_end\nember_init_blob_end:\n\t.section .note.GNU-stack,"",@progbits\n' >"$objs/init_blob.s"
clang -c "$objs/init_blob.s" -o "$objs/init_blob.o"
rm -f "$out/libember-fuzz.a"
ar rcs "$out/libember-fuzz.a" "$objs"/*.o
clang $flags -fsanitize=fuzzer -o "$out/$target" "fuzz/$target.c" "$out/libember-fuzz.a" \
	-lpthread
[ -d "fuzz/seeds/$target" ] && cp fuzz/seeds/"$target"/* "$corpus"/
if [ "$target" = fuzz_kernel_image ]; then
	for k in bzImage vmlinux; do
		[ -f "build/guest/$k" ] && head -c 65536 "build/guest/$k" >"$corpus/seed-$k"
	done
fi
# -rss_limit_mb: fuzz_kernel_image maps a 64 MiB guest once.
exec "$out/$target" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 \
	-artifact_prefix="$out/$target-" "$corpus"
