#!/bin/sh
# virtio-blk throughput, ember vs QEMU microvm, inside the TCG test host (one L1 boot).
#
#   bench/tcg-blk.sh [-n N] [-s MiB] [-r COUNT] [-m MiB]
#
#   -n N      runs of each VMM (default 3), alternating ember, QEMU, ember, ...
#   -s MiB    bytes of the sequential write and read (default 128)
#   -r COUNT  4 KiB random reads (default 4000), within the first -s MiB
#   -m MiB    guest memory for both (default 256); 1 vCPU each
#
# Both VMMs boot the same kernel (build/guest/vmlinux) with the same initramfs (the one ember
# generates from build/rootfs plus bench/guest/blk_io, saved with --save-initramfs) and the same
# kernel command line, and give the guest one virtio-blk disk (/dev/vda) on a fresh 2*-s MiB raw
# image in L1's tmpfs: ember with --disk, QEMU with -drive format=raw (cache=writeback, its
# default, like ember's buffered preadv/pwritev) on a virtio-blk-device (virtio-mmio). The
# workload runs bench/guest/blk_io three times with O_DIRECT, queue depth 1: a sequential write
# of 1 MiB requests (then fdatasync), a sequential read of 1 MiB requests, and 4 KiB reads at
# random offsets. blk_io times itself inside the guest. Reported: each run's MB/s and IOPS,
# the medians, and ember/QEMU ratios of the medians (> 1: ember is faster).
#
# Needs what bench/tcg-boot.sh needs (build/ember-static, build/guest/vmlinux, build/rootfs,
# qemu-system-x86_64 on this host, a static libc). Inside L1 this same script runs with --in-l1.
set -eu

QEMU_MACHINE=${TCG_BLK_QEMU_MACHINE:-microvm,x-option-roms=off,rtc=off,acpi=off}

in_l1() { # N MiB COUNT MEM
	n=$1 size=$2 count=$3 mem=$4
	mkdir -p /lib64 /lib/x86_64-linux-gnu
	cp /payload/qemu/lib/* /lib/x86_64-linux-gnu/
	mv /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 /lib64/
	qemu=/payload/qemu/bin/qemu-system-x86_64
	ember=/payload/bin/ember
	initramfs=/tmp/bench-initramfs.cpio
	img=/tmp/bench.img
	# The workload, identical under both; it also prints the command line it booted with.
	work="blk_io /dev/vda seqwrite $size && blk_io /dev/vda seqread $size &&
		blk_io /dev/vda randread $count $size && read -r l </proc/cmdline && echo \"guest-cmdline: \$l\""
	fresh() { rm -f "$img" && truncate -s $((2 * size))M "$img"; }
	run_ember() { # [extra ember options]
		"$ember" run --cpus 1 --memory "$mem" --kernel /payload/vmlinux --rootfs /payload/rootfs \
			--cmdline reboot=t --disk "$img" "$@" -- /bin/sh -c "$work" </dev/null 2>&1
	}

	echo "in L1: $(nproc) CPUs, Linux $(uname -r)"
	# A warm-up ember run saves the initramfs (root, ember-init, this workload) for QEMU and
	# tells the kernel command line.
	fresh
	out=$(run_ember --save-initramfs "$initramfs") || {
		echo "tcg-blk: ember run failed: $out"
		exit 1
	}
	cmdline=$(printf '%s\n' "$out" | sed -n 's/^guest-cmdline: //p' | tr -d '\r')
	[ -n "$cmdline" ] || {
		echo "tcg-blk: no command line in ember's output: $out"
		exit 1
	}
	echo "kernel command line (both): $cmdline"
	i=0
	while [ "$i" -lt "$n" ]; do
		for vmm in ember qemu; do
			fresh
			if [ "$vmm" = ember ]; then
				out=$(run_ember) || {
					echo "tcg-blk: ember run failed: $out"
					exit 1
				}
			else
				out=$("$qemu" -M "$QEMU_MACHINE" -accel kvm -cpu host -smp 1 -m "${mem}M" \
					-nodefaults -no-user-config -nographic -no-reboot -serial stdio \
					-kernel /payload/vmlinux -initrd "$initramfs" -append "$cmdline" \
					-drive "file=$img,format=raw,if=none,id=d0" \
					-device virtio-blk-device,drive=d0 </dev/null 2>&1) || {
					echo "tcg-blk: QEMU failed: $out"
					exit 1
				}
			fi
			lines=$(printf '%s\n' "$out" | tr -d '\r' | grep '^blk_io ' || true)
			if [ "$(printf '%s\n' "$lines" | grep -c '^blk_io ')" != 3 ]; then
				echo "tcg-blk: $vmm run $i did not report three results:"
				printf '%s\n' "$out" | tail -n 20
				exit 1
			fi
			printf '%s\n' "$lines" | sed "s/^/result $vmm $i /"
		done
		i=$((i + 1))
	done
}

if [ "${1:-}" = --in-l1 ]; then
	shift
	in_l1 "$@"
	exit
fi

n=3 size=128 count=4000 mem=256
while [ $# -gt 0 ]; do
	case "$1" in
	-n) n=$2; shift 2 ;;
	-s) size=$2; shift 2 ;;
	-r) count=$2; shift 2 ;;
	-m) mem=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/tcg-blk.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done
for v in "$n" "$size" "$count" "$mem"; do
	case "$v" in '' | *[!0-9]*) echo "bench/tcg-blk.sh: -n, -s, -r, -m take numbers" >&2; exit 2 ;; esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() {
	echo "bench/tcg-blk.sh: $*" >&2
	exit 1
}
qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
make -j2 build/ember-static >/dev/null || die "make build/ember-static failed"
[ -s build/guest/vmlinux ] || guest/kernel/build.sh || die "guest kernel build failed"
[ -x build/rootfs/bin/busybox ] || guest/rootfs/build.sh || die "guest root build failed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ember-tcg-blk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
p=$tmp/payload
mkdir -p "$p/bin" "$p/qemu/bin" "$p/qemu/lib" "$p/qemu/share/qemu"
cp build/ember-static "$p/bin/ember"
cp build/guest/vmlinux "$p/vmlinux"
cp -a build/rootfs "$p/rootfs"
cc -std=gnu11 -D_GNU_SOURCE -O2 -static -Wall -Wextra -Werror -o "$p/rootfs/bin/blk_io" \
	bench/guest/blk_io.c || die "cannot build bench/guest/blk_io.c statically (need libc6-dev)"
cp "$0" "$p/tcg-blk.sh"
cp "$qemu" "$p/qemu/bin/"
cp -L /usr/share/qemu/qboot.rom "$p/qemu/share/qemu/"
ldd "$qemu" | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r lib; do
	cp -L "$lib" "$p/qemu/lib/"
done
[ -e "$p/qemu/lib/ld-linux-x86-64.so.2" ] || die "QEMU's dynamic loader not found by ldd"

echo "tcg-blk: $(date -u '+%Y-%m-%d %H:%M UTC'), $n runs each; seq ${size} MiB in 1 MiB requests, $count random 4 KiB reads; guest ${mem} MiB, 1 vCPU; O_DIRECT, queue depth 1"
echo "host: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(nproc) CPUs, Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "L1: scripts/tcg-host/run.sh (QEMU TCG, 2 vCPUs, 3072 MiB); ember: build/ember-static; QEMU: $("$qemu" --version | head -n1) -M $QEMU_MACHINE, virtio-blk-device, -drive format=raw"
scripts/tcg-host/run.sh --payload "$p" --no-stdin --memory 3072 --timeout $((900 + n * 600)) \
	--env "TCG_BLK_QEMU_MACHINE=$QEMU_MACHINE" -- sh /payload/tcg-blk.sh --in-l1 "$n" "$size" "$count" "$mem" |
	tee "$tmp/out"
# Medians per VMM and mode, and the ratios.
awk '
/^result / {
	vmm = $2; mode = $5
	for (f = 6; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
	val = (mode == "randread") ? v["iops"] : v["MBps"]
	k = vmm SUBSEP mode
	cnt[k]++; x[k, cnt[k]] = val
}
function median(k,   n, i, j, t, a) {
	n = cnt[k]
	for (i = 1; i <= n; i++) a[i] = x[k, i]
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	split("seqwrite seqread randread", modes, " ")
	for (m = 1; m <= 3; m++) {
		mode = modes[m]; unit = (mode == "randread") ? "IOPS" : "MB/s"
		e = median("ember" SUBSEP mode); q = median("qemu" SUBSEP mode)
		printf "%-9s ember %8.1f %s  QEMU %8.1f %s  ratio ember/QEMU %.3f\n", mode, e, unit, q, unit, (q > 0 ? e / q : 0)
	}
}' "$tmp/out"
