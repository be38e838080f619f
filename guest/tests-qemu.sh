#!/bin/sh
# Developer check of ember's guest side without ember: boots the guest kernel with ember-init
# under plain QEMU (TCG, no KVM), microvm machine, virtio-mmio console ports named like ember's.
#
#   guest/tests-qemu.sh [--quick] [--keep]
#
# Each scenario builds an initramfs (default busybox root + /.ember/init + an exec config made
# with the real encoder, src/core/guest_config.c), boots it, and checks the workload's output on
# the named ports, the exit status (ember-init prints it on the console when not under ember),
# and that the kernel log shows nothing alarming. Output: "PASS name" / "FAIL name: why" lines
# like the C tests, then a summary with the boot-to-init times seen. --quick runs fewer
# scenarios; --keep keeps the work directory. Env: BUILD (default build), QEMU, EMBER_QEMU_ACCEL.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${BUILD:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
qemu=${QEMU:-qemu-system-x86_64}
accel=${EMBER_QEMU_ACCEL:-tcg}
quick=0
keep=0
for arg in "$@"; do
	case "$arg" in
	--quick) quick=1 ;;
	--keep) keep=1 ;;
	*)
		echo "usage: $0 [--quick] [--keep]" >&2
		exit 2
		;;
	esac
done

die() {
	echo "guest/tests-qemu.sh: $*" >&2
	exit 1
}
command -v "$qemu" >/dev/null 2>&1 || die "$qemu not found (apt-get install qemu-system-x86)"
command -v cpio >/dev/null 2>&1 || die "cpio not found (apt-get install cpio)"
command -v cc >/dev/null 2>&1 || die "cc not found"

make -s -C "$root" BUILD="$build" "$build/guest/ember-init" >&2
"$root/guest/rootfs/build.sh" "$build/rootfs" 2>/dev/null
"$root/guest/kernel/build.sh" "$build/guest" 2>/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ember-qemu.XXXXXX")
if [ $keep = 0 ]; then
	trap 'rm -rf "$tmp"' EXIT
else
	echo "work directory: $tmp" >&2
fi

# Encoder front end for the tests: mkcfg OUT [-x exec] [-e K=V] [-w dir] [-h host] [-u uid]
# [-g gid] [-r name=soft:hard] [-f flags] -- argv...
cat >"$tmp/mkcfg.c" <<'EOF'
#include "core/guest_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	static const char *env[256];
	struct guest_config c = {0};
	char err[256];
	uint8_t *buf;
	size_t len;
	FILE *f;
	int i;

	for (i = 2; i + 1 < argc && strcmp(argv[i], "--") != 0; i += 2) {
		const char *o = argv[i], *v = argv[i + 1];
		char name[32];
		unsigned long long soft, hard;
		uint32_t res;

		if (!strcmp(o, "-x"))
			c.exec_path = v;
		else if (!strcmp(o, "-e") && c.envc < 256)
			env[c.envc++] = v;
		else if (!strcmp(o, "-w"))
			c.workdir = v;
		else if (!strcmp(o, "-h"))
			c.hostname = v;
		else if (!strcmp(o, "-u"))
			c.has_uid = true, c.uid = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(o, "-g"))
			c.has_gid = true, c.gid = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(o, "-f"))
			c.flags = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(o, "-r") && c.nrlimits < GUEST_CONFIG_MAX_RLIMITS &&
			 sscanf(v, "%31[^=]=%llu:%llu", name, &soft, &hard) == 3 &&
			 guest_config_rlimit_from_name(name, &res) == 0)
			c.rlimits[c.nrlimits++] = (struct guest_config_rlimit){res, soft, hard};
		else
			return fprintf(stderr, "mkcfg: bad option %s %s\n", o, v), 2;
	}
	if (i >= argc)
		return fprintf(stderr, "mkcfg: missing --\n"), 2;
	i++;
	c.argv = (const char *const *)argv + i;
	c.argc = (size_t)(argc - i);
	c.env = env;
	if (!c.exec_path)
		c.exec_path = argv[i];
	if (guest_config_encode(&c, &buf, &len, err, sizeof(err)) != 0)
		return fprintf(stderr, "mkcfg: %s\n", err), 1;
	f = fopen(argv[1], "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		return perror(argv[1]), 1;
	free(buf);
	return 0;
}
EOF
cc -std=gnu11 -D_GNU_SOURCE -I"$root/include" -I"$root/src" -o "$tmp/mkcfg" "$tmp/mkcfg.c" \
	"$root/src/core/guest_config.c"

# The root + init part of the initramfs is shared; each scenario appends a small archive with
# its /.ember/config (the kernel unpacks concatenated cpio archives in order).
mkdir -p "$tmp/init/.ember"
cp "$build/guest/ember-init" "$tmp/init/.ember/init"
(cd "$build/rootfs" && find . | cpio -o -H newc -R 0:0 --quiet) >"$tmp/base.cpio"
(cd "$tmp/init" && find . | cpio -o -H newc -R 0:0 --quiet) >>"$tmp/base.cpio"

passed=0
failed=0
boot_times=""
cmdline_base="console=ttyS0 panic=-1 reboot=t rdinit=/.ember/init printk.time=1"

# boot NAME KERNEL [mkcfg options] -- argv...
# Env knobs: PORTS (default "stdin stdout stderr"), STDIN_DATA, SMP (default 1).
# Leaves $d (work dir), $out $err $serial (files) and $status (number, or "none").
boot() {
	name=$1
	kernel=$2
	shift 2
	d="$tmp/$name"
	mkdir -p "$d/cfg/.ember"
	out="$d/stdout"
	err="$d/stderr"
	serial="$d/serial"
	: >"$out"
	: >"$err"
	"$tmp/mkcfg" "$d/cfg/.ember/config" "$@"
	(cd "$d/cfg" && find . | cpio -o -H newc -R 0:0 --quiet) >"$d/cfg.cpio"
	cat "$tmp/base.cpio" "$d/cfg.cpio" >"$d/initrd.cpio"

	set -- -M microvm,acpi=off -accel "$accel" -m 256 -smp "${SMP:-1}" -display none \
		-no-reboot -serial "file:$serial" -kernel "$build/guest/$kernel" \
		-initrd "$d/initrd.cpio" -append "$cmdline_base"
	ports=${PORTS-stdin stdout stderr}
	if [ -n "$ports" ]; then
		set -- "$@" -device virtio-serial-device
		for p in $ports; do
			case $p in
			stdin)
				mkfifo "$d/in.in" "$d/in.out"
				set -- "$@" -chardev "pipe,id=c$p,path=$d/in"
				;;
			stdout) set -- "$@" -chardev "file,id=c$p,path=$out" ;;
			stderr) set -- "$@" -chardev "file,id=c$p,path=$err" ;;
			esac
			set -- "$@" -device "virtserialport,chardev=c$p,name=ember.$p"
		done
	fi
	# O_RDWR keeps the FIFO from blocking; the data sits there until the guest reads it.
	if [ -p "$d/in.in" ]; then
		exec 8<>"$d/in.in"
		printf '%s' "${STDIN_DATA:-}" >&8
	fi
	if ! timeout 120 "$qemu" "$@" >"$d/qemu.log" 2>&1; then
		echo "qemu failed or timed out: $(head -c 300 "$d/qemu.log")" >>"$d/problems"
	fi
	[ -p "$d/in.in" ] && exec 8>&-
	# The console's tty turns \n into \r\n.
	if [ -f "$serial" ]; then
		mv "$serial" "$d/serial.raw"
		tr -d '\r' <"$d/serial.raw" >"$serial"
	else
		: >"$serial"
	fi
	status=$(sed -n 's/^ember-init: exit status \([0-9]*\).*/\1/p' "$serial" | tail -n 1)
	[ -n "$status" ] || status=none
	t=$(sed -n 's/^\[ *\([0-9.]*\)\] Run \/.ember\/init as init process.*/\1/p' "$serial")
	[ -n "$t" ] && boot_times="$boot_times $kernel:$t"
	return 0
}

problem() { echo "$*" >>"$d/problems"; }
want_status() { [ "$status" = "$1" ] || problem "exit status $status, want $1"; }
# want_file FILE LABEL TEXT: TEXT is a whole line of FILE
want_line() { grep -qxF -- "$3" "$1" || problem "$2 lacks line '$3' (has: $(head -c 300 "$1" | tr '\n' '|'))"; }
want_grep() { grep -qE -- "$3" "$1" || problem "$2 does not match /$3/ (has: $(head -c 300 "$1" | tr '\n' '|'))"; }
want_no_grep() { ! grep -qE -- "$3" "$1" || problem "$2 matches /$3/: $(grep -E -- "$3" "$1" | head -n 3 | tr '\n' '|')"; }
# Nothing alarming from the kernel, and no message from init beyond its final status line and
# what it also told the workload's stderr. TSC/delay calibration complaints are TCG timing noise
# on a busy host (a KVM guest gets its TSC frequency from kvmclock).
want_clean_log() {
	grep -vE 'ommand line:|^ember-init: exit status|tsc: |calibrate_delay|APIC timer disabled due to verification failure' "$serial" |
		grep -vxF -f "$err" |
		grep -iE 'warn|bug|oops|call trace|panic|segfault|unable|error|fail|invalid|ember-init' \
			>"$d/alarming" || true
	if [ -s "$d/alarming" ]; then
		problem "kernel log: $(head -n 5 "$d/alarming" | tr '\n' '|')"
	fi
	want_grep "$serial" "kernel log" 'Run /.ember/init as init process'
}

verdict() {
	if [ -s "$d/problems" ]; then
		echo "FAIL $name: $(tr '\n' ';' <"$d/problems")"
		failed=$((failed + 1))
	else
		echo "PASS $name"
		passed=$((passed + 1))
	fi
}

t_basic() { # $1: kernel
	boot "basic_$1" "$1" -- /bin/sh -c 'echo hi; echo err >&2; exit 7'
	want_status 7
	want_line "$out" stdout hi
	want_line "$err" stderr err
	want_clean_log
	verdict
}

t_env_args_workdir() {
	boot env_args_workdir vmlinux -e FOO=bar -e 'SPACED=a b' -w /tmp -h testhost -- \
		/bin/sh -c 'echo "args:$#:$1:$2"; echo "pwd:$(pwd)"; echo "host:$(hostname)"; env' \
		argv0 'x y' z
	want_status 0
	want_line "$out" stdout 'args:2:x y:z'
	want_line "$out" stdout 'pwd:/tmp'
	want_line "$out" stdout 'host:testhost'
	want_line "$out" stdout 'FOO=bar'
	want_line "$out" stdout 'SPACED=a b'
	want_line "$out" stdout 'HOME=/root'
	want_line "$out" stdout 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	want_clean_log
	verdict
}

t_exact_env() {
	# Exactly the configured environment, plus HOME (PATH given). Run env itself via PATH.
	boot exact_env vmlinux -e PATH=/bin:/usr/bin -e A=1 -- env
	want_status 0
	printf 'PATH=/bin:/usr/bin\nA=1\nHOME=/root\n' >"$d/want_env"
	cmp -s "$out" "$d/want_env" || problem "env is '$(tr '\n' '|' <"$out")'"
	verdict
}

t_not_found() {
	boot not_found vmlinux -- nosuchcmd arg
	want_status 127
	want_line "$err" stderr 'ember-init: nosuchcmd: not found'
	want_clean_log
	verdict
}

t_not_executable() {
	boot not_executable vmlinux -- /etc/passwd
	want_status 126
	want_line "$err" stderr 'ember-init: /etc/passwd: Permission denied'
	verdict
}

t_bad_workdir() {
	boot bad_workdir vmlinux -w /no/such/dir -- /bin/true
	want_status 125
	want_grep "$err" stderr '^ember-init: workdir /no/such/dir: No such file or directory$'
	verdict
}

t_signal_status() {
	boot signal_status vmlinux -- /bin/sh -c 'kill -KILL $$'
	want_status 137
	verdict
}

t_user_rlimits() {
	boot user_rlimits vmlinux -u 1000 -g 1001 -r nofile=123:456 -r RLIMIT_CORE=0:0 -- \
		/bin/sh -c 'echo "id:$(id -u):$(id -g):$(id -G)"; echo "nofile:$(ulimit -n):$(ulimit -Hn)"; echo "home:$HOME"'
	want_status 0
	want_line "$out" stdout 'id:1000:1001:1001'
	want_line "$out" stdout 'nofile:123:456'
	want_line "$out" stdout 'home:/'
	verdict
}

t_system() {
	# Mounts, /dev links, ptys, loopback, /proc files, orphans reaped by init.
	boot system vmlinux -- /bin/sh -c '
		cat /proc/mounts
		for f in /dev/fd /dev/stdin /dev/stdout /dev/stderr; do echo "link:$f:$(readlink $f)"; done
		test -c /dev/ptmx && echo ptmx:ok
		test -c /dev/null && test -c /dev/zero && test -c /dev/urandom && echo devnodes:ok
		ip addr show lo | grep -q "inet 127.0.0.1" && echo lo:up
		grep -q "^processor" /proc/cpuinfo && grep -q MemTotal /proc/meminfo && echo proc:ok
		stat -c "tmp:%a" /tmp
		(sleep 0.1 &)
		sleep 0.5
		ps -o stat= | grep -q Z && echo zombie || echo nozombie
		echo "pid1:$(cat /proc/1/comm)"'
	want_status 0
	for m in '^devtmpfs /dev devtmpfs' '^proc /proc proc' '^sysfs /sys sysfs' '^devpts /dev/pts devpts' \
		'^shm /dev/shm tmpfs' '^tmpfs /tmp tmpfs' '^tmpfs /run tmpfs'; do
		want_grep "$out" stdout "$m"
	done
	want_line "$out" stdout 'link:/dev/fd:/proc/self/fd'
	want_line "$out" stdout 'link:/dev/stderr:/proc/self/fd/2'
	want_line "$out" stdout 'ptmx:ok'
	want_line "$out" stdout 'devnodes:ok'
	want_line "$out" stdout 'lo:up'
	want_line "$out" stdout 'proc:ok'
	want_line "$out" stdout 'tmp:1777'
	want_line "$out" stdout 'nozombie'
	want_line "$out" stdout 'pid1:init'
	want_clean_log
	verdict
}

t_stdin() {
	STDIN_DATA='line1
line2
' boot stdin vmlinux -- /bin/sh -c 'read a; read b; echo "got:$a:$b"'
	want_status 0
	want_line "$out" stdout 'got:line1:line2'
	verdict
}

t_signal_forward() {
	# SIGTERM to PID 1 reaches the workload.
	boot signal_forward vmlinux -- /bin/sh -c 'trap "echo got-term; exit 3" TERM; kill -TERM 1; sleep 5 & wait'
	want_status 3
	want_line "$out" stdout got-term
	verdict
}

t_pid1() {
	# The workload replaces init: it is PID 1, and its exit panics the kernel (no status).
	boot pid1 vmlinux -f 1 -- /bin/sh -c 'echo "pid:$$"'
	want_status none
	want_line "$out" stdout 'pid:1'
	want_grep "$serial" "kernel log" 'Kernel panic - not syncing: Attempted to kill init'
	verdict
}

t_missing_stdin_port() {
	# Without an ember.stdin port, stdin falls back to /dev/null after a bounded wait.
	PORTS="stdout stderr" boot missing_stdin_port vmlinux -- /bin/sh -c 'cat; echo eof'
	want_status 0
	want_line "$out" stdout eof
	want_line "$err" stderr 'ember-init: no virtio-console port named ember.stdin'
	verdict
}

t_no_virtio_console() {
	# No virtio console at all: stdout/stderr fall back to the console, no wait.
	PORTS="" boot no_virtio_console vmlinux -- /bin/sh -c 'echo on-console; exit 4'
	want_status 4
	want_line "$serial" console on-console
	verdict
}

t_smp() {
	# Application processors come up from the MP table (no ACPI).
	SMP=2 boot smp vmlinux -- /bin/sh -c 'grep -c ^processor /proc/cpuinfo'
	want_status 0
	want_line "$out" stdout 2
	want_clean_log
	verdict
}

t_basic vmlinux
t_basic bzImage
t_env_args_workdir
t_not_found
if [ $quick = 0 ]; then
	t_exact_env
	t_not_executable
	t_bad_workdir
	t_signal_status
	t_user_rlimits
	t_system
	t_stdin
	t_signal_forward
	t_pid1
	t_missing_stdin_port
	t_no_virtio_console
	t_smp
fi

echo "boot to init (s, TCG):$boot_times"
echo "$passed passed, $failed failed, 0 skipped"
[ $failed = 0 ]
