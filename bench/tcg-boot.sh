#!/bin/sh
# Boot to workload exec, ember vs QEMU microvm, inside the TCG test host (one L1 boot).
#
#   bench/tcg-boot.sh [-n N] [-w W] [-m MiB] [--qemu-machine M] [--logs DIR]
#
#   -n N       measured runs of each VMM (default 10), alternating ember, QEMU, ember, ...
#   -w W       unmeasured rounds first (default 1)
#   -m MiB     guest memory for both (default 256); 1 vCPU each
#   --qemu-machine M  QEMU's -M value (default microvm,x-option-roms=off,rtc=off,acpi=off)
#   --logs DIR keep the guests' output of the first run of each VMM in DIR (on this host)
#
# Both VMMs boot the same kernel (build/guest/vmlinux, PVH ELF) with the same initramfs (the one
# ember generates from build/rootfs, saved with `ember run --save-initramfs`) and the same kernel
# command line (ember's, read back from the guest's /proc/cmdline; QEMU gets it with -append).
# The workload, `/bin/sh -c 'echo ember-bench-exec; ...'`, prints the marker first thing; the
# time from spawning the VMM until the marker line reaches the VMM's output is "boot to workload
# exec". Under ember the workload's stdout travels over virtio-console; under QEMU (no
# virtio-console) ember-init gives it the serial console. The total is spawn to VMM exit: ember
# exits when ember-init reports the status; under QEMU ember-init finds no ember status port,
# prints the status and reboots, and `reboot=t` (in the command line of both) with
# -no-reboot ends QEMU.
#
# Needs: build/ember-static (made here), build/guest/vmlinux (guest/kernel/build.sh),
# build/rootfs (guest/rootfs/build.sh), qemu-system-x86_64 on this host (copied into L1 with its
# shared libraries and qboot.rom), a C compiler with static glibc (for the runner).
# Inside L1 this same script runs with --in-l1.
set -eu

MARKER='ember-bench-exec'
# What the workload runs: the marker first, then the kernel command line it booted with.
WORKLOAD="echo $MARKER; read -r l </proc/cmdline; echo \"guest-cmdline: \$l\""
# QEMU microvm for a Linux guest, as close to ember's machine as it gets: in-kernel PIC, IOAPIC
# and PIT (microvm's defaults under KVM), an ISA serial port for the console, no ACPI (ember
# has none; Linux finds the CPUs and IOAPIC through the MP table), no RTC, no option ROMs.
# microvm always runs its firmware (qboot).
QEMU_MACHINE=${TCG_BOOT_QEMU_MACHINE:-microvm,x-option-roms=off,rtc=off,acpi=off}

in_l1() { # N W MiB
	n=$1 w=$2 mem=$3
	# QEMU's shared libraries where its loader looks for them.
	mkdir -p /lib64 /lib/x86_64-linux-gnu
	cp /payload/qemu/lib/* /lib/x86_64-linux-gnu/
	mv /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 /lib64/
	qemu=/payload/qemu/bin/qemu-system-x86_64
	ember=/payload/bin/ember
	initramfs=/tmp/bench-initramfs.cpio

	echo "in L1: $(nproc) CPUs, Linux $(uname -r), $(grep -c . /proc/modules) modules loaded"
	# One ember run saves the initramfs and tells the kernel command line it booted with.
	out=$("$ember" run --cpus 1 --memory "$mem" --kernel /payload/vmlinux \
		--rootfs /payload/rootfs --cmdline reboot=t --save-initramfs "$initramfs" \
		-- /bin/sh -c "$WORKLOAD" </dev/null 2>&1) || {
		echo "tcg-boot: ember run failed: $out"
		exit 1
	}
	cmdline=$(printf '%s\n' "$out" | sed -n 's/^guest-cmdline: //p' | tr -d '\r')
	[ -n "$cmdline" ] || {
		echo "tcg-boot: no command line in ember's output: $out"
		exit 1
	}
	echo "initramfs: $(wc -c <"$initramfs") bytes (saved by ember)"
	echo "kernel command line (both): $cmdline"
	out=$("$qemu" -M "$QEMU_MACHINE" -accel kvm -cpu host -smp 1 -m "${mem}M" -nodefaults \
		-no-user-config -nographic -no-reboot -serial stdio -kernel /payload/vmlinux \
		-initrd "$initramfs" -append "$cmdline" </dev/null 2>&1) || {
		echo "tcg-boot: QEMU failed: $out"
		exit 1
	}
	qcmdline=$(printf '%s\n' "$out" | sed -n 's/^guest-cmdline: //p' | tr -d '\r')
	if [ "$qcmdline" != "$cmdline" ]; then
		echo "tcg-boot: QEMU's guest booted with a different command line: '$qcmdline'"
		echo "$out"
		exit 1
	fi
	mkdir -p /tmp/logs
	/payload/bin/tcg_boot_runner -n "$n" -w "$w" --marker "$MARKER" --log-dir /tmp/logs \
		-- ember "$ember" run --cpus 1 --memory "$mem" --kernel /payload/vmlinux \
		--rootfs /payload/rootfs --cmdline reboot=t -- /bin/sh -c "$WORKLOAD" \
		::: qemu "$qemu" -M "$QEMU_MACHINE" -accel kvm -cpu host -smp 1 -m "${mem}M" \
		-nodefaults -no-user-config -nographic -no-reboot -serial stdio \
		-kernel /payload/vmlinux -initrd "$initramfs" -append "$cmdline"
}

if [ "${1:-}" = --in-l1 ]; then
	shift
	in_l1 "$@"
	exit
fi

n=10 w=1 mem=256 logs=
while [ $# -gt 0 ]; do
	case "$1" in
	-n) n=$2; shift 2 ;;
	-w) w=$2; shift 2 ;;
	-m) mem=$2; shift 2 ;;
	--qemu-machine) QEMU_MACHINE=$2; shift 2 ;;
	--logs) logs=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/tcg-boot.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done
for v in "$n" "$w" "$mem"; do
	case "$v" in '' | *[!0-9]*) echo "bench/tcg-boot.sh: -n, -w, -m take numbers" >&2; exit 2 ;; esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() {
	echo "bench/tcg-boot.sh: $*" >&2
	exit 1
}
qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
make -j2 build/ember-static >/dev/null || die "make build/ember-static failed"
# guest/kernel/build.sh is cached and locked: a build already under way is waited for.
[ -s build/guest/vmlinux ] || guest/kernel/build.sh || die "guest kernel build failed"
[ -x build/rootfs/bin/busybox ] || guest/rootfs/build.sh || die "guest root build failed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ember-tcg-boot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
p=$tmp/payload
mkdir -p "$p/bin" "$p/qemu/bin" "$p/qemu/lib" "$p/qemu/share/qemu"
cc -std=gnu11 -D_GNU_SOURCE -O2 -static -Wall -Wextra -Werror -o "$p/bin/tcg_boot_runner" \
	bench/tcg_boot_runner.c || die "cannot build the runner statically (need libc6-dev)"
cp build/ember-static "$p/bin/ember"
cp build/guest/vmlinux "$p/vmlinux"
cp -a build/rootfs "$p/rootfs"
cp "$0" "$p/tcg-boot.sh"
# QEMU finds its firmware in <bin>/../share/qemu.
cp "$qemu" "$p/qemu/bin/"
cp -L /usr/share/qemu/qboot.rom "$p/qemu/share/qemu/"
ldd "$qemu" | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r lib; do
	cp -L "$lib" "$p/qemu/lib/"
done
[ -e "$p/qemu/lib/ld-linux-x86-64.so.2" ] || die "QEMU's dynamic loader not found by ldd"

echo "tcg-boot: $(date -u '+%Y-%m-%d %H:%M UTC'), $n runs each after $w warm-up round(s), guest ${mem} MiB, 1 vCPU"
echo "host: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(nproc) CPUs, Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "L1: scripts/tcg-host/run.sh (QEMU TCG, -cpu EPYC,+svm,+npt, 2 vCPUs, 2048 MiB); ember: build/ember-static; QEMU: $("$qemu" --version | head -n1) -M $QEMU_MACHINE"
set -- --payload "$p" --no-stdin --timeout $((600 + (n + w) * 60))
[ -z "$logs" ] || {
	mkdir -p "$logs"
	set -- "$@" --export "/tmp/logs/ember-0.log:$logs/ember-0.log" \
		--export "/tmp/logs/qemu-0.log:$logs/qemu-0.log"
}
scripts/tcg-host/run.sh "$@" --env "TCG_BOOT_QEMU_MACHINE=$QEMU_MACHINE" \
	-- sh /payload/tcg-boot.sh --in-l1 "$n" "$w" "$mem"
