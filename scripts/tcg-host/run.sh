#!/usr/bin/env bash
# Runs one command inside the TCG test host ("L1"): QEMU's TCG emulating an AMD EPYC with SVM and
# nested paging, booting a stock Debian kernel that loads kvm-amd, so /dev/kvm inside is a real
# hardware-style KVM even on hosts without vmx/svm. See /work/shared/reference/host-kvm.md.
#
#   scripts/tcg-host/run.sh [options] -- COMMAND [ARGS...]
#
# The command runs as root in L1's initramfs with PATH=/payload/build:/payload/bin:/bin, in
# /payload unless --workdir says otherwise. Its stdout and stderr stream to ours, separately and
# byte-exact; our exit status is its exit status.
#
# Options:
#   --payload DIR         copy DIR's contents into /payload (repeatable; later copies win)
#   --file SRC[:DEST]     copy file or directory SRC to /payload/DEST (default: its basename)
#   --stdin FILE          the command's stdin (default: our stdin when it is not a terminal,
#                         else /dev/null; it is read completely before L1 boots)
#   --no-stdin            the command's stdin is /dev/null
#   --env K=V             set K=V in the command's environment (repeatable)
#   --workdir DIR         the command's working directory inside L1 (default /payload)
#   --export L1PATH:FILE  after the command, copy file L1PATH out of L1 to FILE (repeatable)
#   --disk FILE[:ro]      attach FILE as a virtio-blk disk of L1 (repeatable): the first is
#                         /dev/vda there, the next /dev/vdb, ...; what L1 writes lands in FILE
#                         (L1 syncs before it powers off); ':ro' attaches it read-only
#   --timeout SECS        hard limit for the whole run, boot included (default $EMBER_TCG_TIMEOUT
#                         or 600); past it QEMU is killed and we exit 124
#   --freeze-after SECS   from /init until the command ends, L1 reports a heartbeat every 5 s;
#                         past SECS with no word from L1 (default $EMBER_TCG_FREEZE or 120; 0:
#                         never; counted from QEMU's start, so a boot that hangs counts too)
#                         L1 is taken as frozen, QEMU is killed and we exit 123 at once
#   --memory MIB          L1's memory (default $EMBER_TCG_MEMORY or 2048)
#   --cpus N              L1's vCPUs (default $EMBER_TCG_CPUS or 2)
#   --append ARGS         extra L1 kernel command line
#   --kernel-log FILE     keep L1's console (kernel messages) in FILE
#   --timings             print how long the stages took on stderr
#   -v, --verbose         print timings and L1's kernel log on stderr
#
# Exit status: the command's; 123 if L1 froze; 124 if the timeout hit; 125 if L1 failed (no
# /dev/kvm, QEMU error, L1 crash). Those cases also print "tcg-host: ..." on stderr.
# Debugging: EMBER_TCG_MONITOR=SOCKET gives QEMU's human monitor on that unix socket (for
# example `info registers -a` when L1 seems stuck).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
payloads=() files=() envs=() exports=() disks=()
stdin_mode=auto stdin_file=
workdir=/payload
timeout_s=${EMBER_TCG_TIMEOUT:-600}
freeze_s=${EMBER_TCG_FREEZE:-120}
memory=${EMBER_TCG_MEMORY:-2048}
cpus=${EMBER_TCG_CPUS:-2}
append=
kernel_log=
verbose=${EMBER_TCG_VERBOSE:-0}
timings=0

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() {
	echo "tcg-host: $*" >&2
	exit 125
}
need() { [ $# -ge 2 ] || die "option $1 needs a value"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--) shift; break ;;
	--payload) need "$@"; payloads+=("$2"); shift 2 ;;
	--file) need "$@"; files+=("$2"); shift 2 ;;
	--stdin) need "$@"; stdin_mode=file stdin_file=$2; shift 2 ;;
	--no-stdin) stdin_mode=none; shift ;;
	--env) need "$@"; envs+=("$2"); shift 2 ;;
	--workdir) need "$@"; workdir=$2; shift 2 ;;
	--export) need "$@"; exports+=("$2"); shift 2 ;;
	--disk) need "$@"; disks+=("$2"); shift 2 ;;
	--timeout) need "$@"; timeout_s=$2; shift 2 ;;
	--freeze-after) need "$@"; freeze_s=$2; shift 2 ;;
	--memory) need "$@"; memory=$2; shift 2 ;;
	--cpus) need "$@"; cpus=$2; shift 2 ;;
	--append) need "$@"; append=$2; shift 2 ;;
	--kernel-log) need "$@"; kernel_log=$2; shift 2 ;;
	--timings) timings=1; shift ;;
	-v | --verbose) verbose=1 timings=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option: $1 (see --help)" ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || die "no command given (usage: run.sh [options] -- COMMAND [ARGS...])"
case "$timeout_s" in '' | *[!0-9]*) die "--timeout wants whole seconds, got '$timeout_s'" ;; esac
case "$freeze_s" in '' | *[!0-9]*) die "--freeze-after wants whole seconds, got '$freeze_s'" ;; esac

now() { date +%s.%N; }
t_begin=$(now)

l1=$("$here/prepare.sh") || exit 125

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ember-tcg.XXXXXX")
pids=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Single-quotes a word for sh.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# The base initramfs (busybox, modules, /init) depends only on those inputs, so it is cached.
busybox=${EMBER_TCG_BUSYBOX:-/bin/busybox}
key=$( {
	cat "$here/init" "$here/kvm-pin.c" "$l1/load-order" "$l1/kernel-version"
	sha256sum "$busybox" "$l1"/modules/*
} | sha256sum | cut -c1-16)
base="$(dirname "$l1")/base-$key.cpio"
if [ ! -s "$base" ]; then
	b="$tmp/base"
	mkdir -p "$b"/{bin,dev,proc,sys,tmp,root,lib/modules,payload,ember-tcg}
	cp "$busybox" "$b/bin/busybox"
	for a in $("$busybox" --list); do
		[ "$a" = busybox ] || ln -s busybox "$b/bin/$a"
	done
	ln -s bin "$b/sbin"
	cp "$l1"/modules/*.ko "$l1/load-order" "$b/lib/modules/"
	install -m 755 "$here/init" "$b/init"
	cc -std=gnu11 -O2 -static -Wall -Wextra -Werror -o "$b/bin/kvm-pin" "$here/kvm-pin.c" ||
		die "cannot build kvm-pin (need gcc and libc6-dev)"
	(cd "$b" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$base.$$" ||
		die "cpio failed"
	mv "$base.$$" "$base"
	rm -rf "$b"
	find "$(dirname "$l1")" -maxdepth 1 -name 'base-*.cpio*' -mtime +1 -delete 2>/dev/null
fi

# The per-run part: payload, command, environment, stdin. Hard links where possible: the tree
# is only read (by cpio) and removed.
# The fallback replaces whatever links the first attempt made, never writing through them.
copy_in() { cp -a -H -l "$1" "$2" 2>/dev/null || cp -a -H --remove-destination "$1" "$2"; }
stage="$tmp/stage"
mkdir -p "$stage/payload" "$stage/ember-tcg"
for p in "${payloads[@]}"; do
	[ -d "$p" ] || die "--payload $p: not a directory"
	copy_in "$p/." "$stage/payload/" || die "copying $p failed"
done
for f in "${files[@]}"; do
	src=${f%%:*} dest=${f#*:}
	[ "$dest" != "$f" ] || dest=$(basename "$src")
	[ -e "$src" ] || die "--file $src: no such file"
	mkdir -p "$(dirname "$stage/payload/$dest")"
	rm -rf "${stage:?}/payload/$dest"
	copy_in "$src" "$stage/payload/$dest" || die "copying $src failed"
done
{
	# shellcheck disable=SC2016 # $1 and $2 are for L1's shell
	printf 'exec </ember-tcg/stdin >"$1" 2>"$2"\nexec'
	for a in "$@"; do printf ' %s' "$(shquote "$a")"; done
	printf '\n'
} >"$stage/ember-tcg/cmd"
{
	for e in "${envs[@]}"; do
		case "${e%%=*}" in
		'' | [0-9]* | *[!A-Za-z0-9_]*) die "--env $e: not NAME=VALUE" ;;
		esac
		[ "${e#*=}" != "$e" ] || die "--env $e: not NAME=VALUE"
		printf 'export %s\n' "$(shquote "$e")"
	done
	printf 'EMBER_TCG_WORKDIR=%s\n' "$(shquote "$workdir")"
} >"$stage/ember-tcg/env"
: >"$stage/ember-tcg/exports"
for x in "${exports[@]}"; do
	[ "${x#*:}" != "$x" ] || die "--export $x: not L1PATH:FILE"
	printf '%s\n' "${x%%:*}" >>"$stage/ember-tcg/exports"
done
case "$stdin_mode" in
auto) if [ -t 0 ]; then : >"$stage/ember-tcg/stdin"; else cat >"$stage/ember-tcg/stdin" 2>/dev/null || true; fi ;;
file) cp "$stdin_file" "$stage/ember-tcg/stdin" || die "--stdin $stdin_file: cannot read" ;;
none) : >"$stage/ember-tcg/stdin" ;;
esac
# The kernel unpacks concatenated newc archives one after another.
cp "$base" "$tmp/initrd.cpio" || die "cannot read $base"
(cd "$stage" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) >>"$tmp/initrd.cpio" ||
	die "cpio of the payload failed"
rm -rf "$stage"

mkfifo "$tmp/out" "$tmp/err"
cat <"$tmp/out" &
pids+=($!)
cat <"$tmp/err" >&2 &
pids+=($!)
streamers=("${pids[@]}")

l1_kernel="$l1/vmlinuz"
[ ! -s "$l1/vmlinux" ] || [ "${EMBER_TCG_L1_KERNEL:-}" = bzimage ] || l1_kernel="$l1/vmlinux"

# Disks: virtio-blk-pci in slots 0x11.., so that L1 names them vda, vdb, ... in the order given.
disk_args=()
for i in "${!disks[@]}"; do
	d=${disks[$i]} ro=off
	case "$d" in *:ro) d=${d%:ro} ro=on ;; esac
	[ -f "$d" ] || die "--disk $d: not a file"
	[ "$i" -lt 8 ] || die "--disk: at most 8 disks"
	# The path goes into an option list: a comma in it would split the option.
	case "$d" in *,*) die "--disk $d: a comma in the path is not supported" ;; esac
	disk_args+=(-drive "file=$d,format=raw,if=none,id=disk$i,readonly=$ro"
		-device "virtio-blk-pci,drive=disk$i,addr=0x$((11 + i))")
done

# cryptomgr.notests: the crypto self-tests cost L1 half a second of boot under TCG.
# 8250.nr_uarts=5: the console and the four ports of the PCI card.
t_qemu=$(now)
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
	-accel tcg,thread=multi -smp "$cpus" -cpu EPYC,+svm,+npt -m "$memory" \
	-display none -nodefaults -no-reboot \
	-kernel "$l1_kernel" -initrd "$tmp/initrd.cpio" \
	-append "console=ttyS0 quiet panic=-1 mitigations=off cryptomgr.notests 8250.nr_uarts=5 $append" \
	-serial "file:$tmp/console" \
	-chardev "file,id=out,path=$tmp/out" -chardev "file,id=err,path=$tmp/err" \
	-chardev "file,id=ctl,path=$tmp/ctl" \
	-device pci-serial-4x,chardev1=out,chardev2=err,chardev3=ctl,addr=0x10 \
	"${disk_args[@]}" \
	${EMBER_TCG_MONITOR:+-monitor "unix:$EMBER_TCG_MONITOR,server,nowait"} \
	</dev/null >"$tmp/qemu.log" 2>&1 &
qpid=$!
pids+=("$qpid")
# The freeze watchdog. L1 has frozen for good before (both vCPUs spinning in QEMU; see
# kvm-pin.c), and a frozen L1 would otherwise hold the caller until the whole --timeout.
# Silence counts from QEMU's start: L1 reaches /init in seconds, and the freeze seen in CI came
# while kvm-amd was loading, before the command started.
if [ "$freeze_s" -gt 0 ]; then
	(
		size=0 quiet=0
		while sleep 5; do
			s=$(stat -c %s "$tmp/ctl" 2>/dev/null || echo 0)
			if [ "$s" = "$size" ]; then quiet=$((quiet + 5)); else size=$s quiet=0; fi
			if [ "$quiet" -ge "$freeze_s" ]; then
				: >"$tmp/frozen"
				kill "$qpid" 2>/dev/null
				exit 0
			fi
		done
	) &
	pids+=($!)
fi
wait "$qpid"
qemu_status=$?
t_end=$(now)

# If QEMU died before opening a FIFO its reader still waits; a read-write open never blocks and
# gives it the end of file when closed.
for f in "$tmp/out" "$tmp/err"; do exec 3<>"$f" && exec 3>&-; done
for p in "${streamers[@]}"; do wait "$p"; done

[ -z "$kernel_log" ] || cp "$tmp/console" "$kernel_log" 2>/dev/null || true
ctl_val() { sed -n "s/^$1 //p" "$tmp/ctl" 2>/dev/null | tail -n1; }
status=$(ctl_val status)

for i in "${!exports[@]}"; do
	dest=${exports[$i]#*:}
	if grep -qx "export $i" "$tmp/ctl" 2>/dev/null; then
		sed -n "/^export $i\$/,/^export-end $i\$/p" "$tmp/ctl" | sed '1d;$d' | base64 -d >"$dest" ||
			echo "tcg-host: could not decode exported file $dest" >&2
	fi
done

show_l1_log() {
	echo "tcg-host: --- L1 console (last 40 lines) ---" >&2
	tail -n 40 "$tmp/console" 2>/dev/null | tr -d '\r' | sed 's/^/tcg-host:   /' >&2
	if [ -s "$tmp/qemu.log" ]; then
		echo "tcg-host: --- QEMU ---" >&2
		grep -v "TCG doesn't support requested feature" "$tmp/qemu.log" | tail -n 20 |
			sed 's/^/tcg-host:   /' >&2
	fi
}

if [ "$timings" = 1 ]; then
	awk -v b="$t_begin" -v q="$t_qemu" -v e="$t_end" -v i="$(ctl_val init)" -v k="$(ctl_val kvm)" \
		-v s="$(ctl_val start)" -v n="$(ctl_val end)" 'BEGIN {
		printf "tcg-host: timings: prepare+initramfs %.2fs, qemu %.2fs wall", q - b, e - q
		if (i != "") printf "; L1 uptime at /init %.2fs", i
		if (k != "") printf ", kvm loaded %.2fs", k
		else if (i != "") printf ", kvm not loaded"
		if (s != "" && n != "") printf ", command %.2fs", n - s
		printf "; total %.2fs\n", e - b
	}' >&2
fi
if [ "$verbose" = 1 ]; then
	tr -d '\r' <"$tmp/console" 2>/dev/null | grep -v '^$' | sed 's/^/tcg-host: L1: /' >&2
fi

if [ -n "$status" ]; then
	err=$(ctl_val error)
	[ -z "$err" ] || { echo "tcg-host: L1 setup failed: $err" >&2; show_l1_log; }
	exit "$status"
fi
if [ -e "$tmp/frozen" ]; then
	if grep -q '^start ' "$tmp/ctl" 2>/dev/null; then when="while the command ran"
	elif grep -q '^init ' "$tmp/ctl" 2>/dev/null; then when="while loading KVM"
	else when="before reaching /init"; fi
	echo "tcg-host: L1 froze: no word from it for ${freeze_s}s $when; QEMU killed" >&2
	show_l1_log
	exit 123
fi
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
	echo "tcg-host: timed out after ${timeout_s}s; QEMU killed" >&2
	show_l1_log
	exit 124
fi
echo "tcg-host: L1 ended without reporting a status (QEMU exit status $qemu_status)" >&2
show_l1_log
exit 125
