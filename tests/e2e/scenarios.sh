#!/bin/sh
# shellcheck disable=SC2016 # a single-quoted $ is for the guest's shell
# ember's end-to-end scenarios: real Linux guests started with `ember run`, checked from outside.
# POSIX sh: the same script runs directly on a host with vmx/svm and inside the TCG test host,
# where only busybox is around. tests/e2e/run.sh decides where and sets the environment:
#
#   EMBER         the ember binary (required)
#   KERNEL        guest kernel, PVH ELF vmlinux (required)
#   BZIMAGE       the same kernel as a bzImage (required)
#   ROOTFS        guest root directory (required)
#   SCRATCH       writable scratch directory (required; created, its files are overwritten)
#   E2E_PROGS     directory of C end-to-end programs (optional): every executable file in it is
#                 run with the variables above exported (SCRATCH: a directory of its own) and
#                 its "PASS name" / "FAIL name: why" / "SKIP name: why" lines are folded in as
#                 "PASS program/name" ...; indented lines pass through as details
#   E2E_TIMEOUT   seconds one guest run may take before it counts as hung and is killed (60)
#   E2E_PROG_TIMEOUT  the same for one C program (300)
#   E2E_ONLY      run only the scenarios / programs whose name matches this extended regex
#
# Output: one line per scenario, "PASS name", "FAIL name: reason" or "SKIP name: reason",
# details indented by four spaces, and last "N passed, N failed, N skipped". Exit status 1 if
# anything failed.
set -u

for v in EMBER KERNEL BZIMAGE ROOTFS SCRATCH; do
	eval "val=\${$v:-}"
	if [ -z "$val" ]; then
		echo "FAIL e2e_setup: $v is not set"
		echo "0 passed, 1 failed, 0 skipped"
		exit 1
	fi
done
E2E_TIMEOUT=${E2E_TIMEOUT:-60}
E2E_PROG_TIMEOUT=${E2E_PROG_TIMEOUT:-300}
export EMBER KERNEL BZIMAGE ROOTFS E2E_TIMEOUT
mkdir -p "$SCRATCH" || exit 1

passed=0 failed=0 skipped=0 rc='' hung='' IN='' after='' why=''
pass() {
	echo "PASS $1"
	passed=$((passed + 1))
}
fail() { # name reason...
	n=$1
	shift
	echo "FAIL $n: $*"
	failed=$((failed + 1))
}
skip() { # name reason...
	n=$1
	shift
	echo "SKIP $n: $*"
	skipped=$((skipped + 1))
}
indent() { sed -e 's/^/    /' | head -n "${1:-15}"; }
selected() { [ -z "${E2E_ONLY:-}" ] || echo "$1" | grep -Eq -- "$E2E_ONLY"; }
# One line, printable, short: for quoting output in a failure reason.
excerpt() { head -c 160 "$1" | cat -v | tr '\n\t' '|>'; }

# run_bounded LIMIT CMD...: runs CMD with stdin from $IN (default /dev/null), stdout and stderr
# into $SCRATCH/out and $SCRATCH/err, and kills it after LIMIT seconds. Sets rc, and hung=1 if
# it was killed. A watchdog file, not the exit status, tells a hang apart: a workload killed by
# a signal has an exit status of 128+N as well.
run_bounded() {
	limit=$1
	shift
	hung=
	"$@" <"${IN:-/dev/null}" >"$SCRATCH/out" 2>"$SCRATCH/err" &
	pid=$!
	rm -f "$SCRATCH/hung.$pid"
	(
		i=0
		while kill -0 "$pid" 2>/dev/null; do
			if [ "$i" -ge "$limit" ]; then
				: >"$SCRATCH/hung.$pid"
				kill -KILL "$pid"
				break
			fi
			sleep 1
			i=$((i + 1))
		done
	) >/dev/null 2>&1 &
	watchdog=$!
	# 2>/dev/null: no "Killed" remark from the shell when the workload dies of a signal.
	wait "$pid" 2>/dev/null
	rc=$?
	kill "$watchdog" 2>/dev/null
	wait "$watchdog" 2>/dev/null
	if [ -e "$SCRATCH/hung.$pid" ]; then
		hung=1
		rm -f "$SCRATCH/hung.$pid"
	fi
}

# ember_run [ember run options] [-- CMD ARGS...]: KERNEL and ROOTFS come first, so options
# given here override them.
ember_run() { run_bounded "$E2E_TIMEOUT" "$EMBER" run --kernel "$KERNEL" --rootfs "$ROOTFS" "$@"; }

# The start and the end of a long file, indented: ember's own message comes last.
show_ends() { # file
	if [ "$(wc -l <"$1")" -le 16 ]; then
		indent 16 <"$1"
	else
		head -n 3 "$1" | indent
		echo "    [...]"
		tail -n 12 "$1" | indent
	fi
}
fail_run() { # name reason: FAIL plus what the run left on stderr
	fail "$1" "$2"
	if [ -s "$SCRATCH/err" ]; then
		echo "    stderr:"
		show_ends "$SCRATCH/err"
	fi
}

# guest_file NAME RC WANT_FILE [ember run args]: one ember run must end with exit status RC and
# print exactly the bytes of WANT_FILE on stdout ('' for any output). If $after names a
# function, it checks more of the run and, when it returns non-zero, $why says what is wrong.
# Returns 0 if the scenario ran and passed.
guest_file() {
	gname=$1 want_rc=$2 want_file=$3
	shift 3
	selected "$gname" || return 1
	if [ -n "$smoke_hung" ]; then
		fail "$gname" "not run: echo_hello hung, so this would too"
		return 1
	fi
	ember_run "$@"
	if [ -n "$hung" ]; then
		fail_run "$gname" "no exit within ${E2E_TIMEOUT}s (killed)"
	elif [ "$rc" != "$want_rc" ]; then
		fail_run "$gname" "exit status $rc, want $want_rc"
	elif [ -n "$want_file" ] && ! cmp -s "$SCRATCH/out" "$want_file"; then
		fail_run "$gname" "stdout ($(wc -c <"$SCRATCH/out") bytes) differs from the expected $(wc -c <"$want_file") bytes: got '$(excerpt "$SCRATCH/out")', want '$(excerpt "$want_file")'"
	elif [ -n "$after" ] && ! "$after"; then
		fail_run "$gname" "$why"
	else
		pass "$gname"
		return 0
	fi
	return 1
}

# guest NAME RC STDOUT [ember run args]: as guest_file, STDOUT being a printf format.
guest() {
	g=$1 r=$2
	# shellcheck disable=SC2059 # the format is the point
	printf "$3" >"$SCRATCH/want.$g"
	shift 3
	guest_file "$g" "$r" "$SCRATCH/want.$g" "$@"
}

# bad_input NAME [ember run args]: ember must refuse, quickly, with a message on stderr and an
# exit status of its own (1-125, not a crash).
bad_input() {
	bname=$1
	shift
	selected "$bname" || return 0
	run_bounded 30 "$EMBER" run "$@"
	if [ -n "$hung" ]; then
		fail_run "$bname" "no exit within 30s (killed)"
	elif [ "$rc" -lt 1 ] || [ "$rc" -gt 125 ]; then
		fail_run "$bname" "exit status $rc, want an error status (1-125)"
	elif [ ! -s "$SCRATCH/err" ]; then
		fail_run "$bname" "exit status $rc but nothing on stderr"
	else
		pass "$bname"
	fi
}

# --- basic run, exit statuses -----------------------------------------------------------------
smoke_hung=''
if ! guest echo_hello 0 'hello\n' -- echo hello && selected echo_hello; then
	[ -z "$hung" ] || smoke_hung=1
	# Once more with the kernel log on, to show how far the guest got.
	run_bounded "$E2E_TIMEOUT" "$EMBER" run --kernel "$KERNEL" --rootfs "$ROOTFS" \
		--kernel-log "$SCRATCH/kernel.log" -- echo hello
	echo "    guest kernel log of a second try (last lines):"
	tail -n 25 "$SCRATCH/kernel.log" 2>/dev/null | indent 25
fi
guest exit_0 0 '' -- true
guest exit_1 1 '' -- false
guest exit_42 42 '' -- sh -c 'exit 42'
# Not executable: a plain file of the default root, or a /proc file (mode 0444) otherwise.
not_exec=/proc/version
[ -f "$ROOTFS/etc/passwd" ] && [ ! -x "$ROOTFS/etc/passwd" ] && not_exec=/etc/passwd
guest exit_126_not_executable 126 '' -- "$not_exec"
guest exit_127_no_such_path 127 '' -- /no/such/program
guest exit_127_not_in_path 127 '' -- no-such-program-ember-e2e
guest signal_kill_137 137 '' -- sh -c 'kill -9 $$'
guest signal_term_143 143 '' -- sh -c 'kill -TERM $$'

# --- arguments, environment, working directory ----------------------------------------------
long_arg=$(printf '%0400d' 0 | tr 0 x)
set -- 'a b' '' "it's" '"double"' 'back\slash' '$HOME' '*' '  lead and trail  ' 'tab	in' 'new
line' '%d %s' 'héllo ✓' '--' '-n' "$long_arg"
printf '[%s]' "$@" >"$SCRATCH/want.args"
guest_file args_exact 0 "$SCRATCH/want.args" -- printf '[%s]' "$@"
set --
seq 1 300 | tr '\n' ',' >"$SCRATCH/want.many"
# shellcheck disable=SC2046 # one argument per number
guest_file args_many 0 "$SCRATCH/want.many" -- printf '%s,' $(seq 1 300)
printf '[%s]' 'hello world' '' "a\"b'c" 'x=y' >"$SCRATCH/want.env"
guest_file env_reaches_workload 0 "$SCRATCH/want.env" \
	--env 'GREETING=hello world' --env 'EMPTY=' --env "QUOTED=a\"b'c" --env 'EQ=x=y' \
	-- sh -c 'printf "[%s]" "$GREETING" "${EMPTY-unset}" "$QUOTED" "$EQ"'
guest workdir_applies 0 '/proc\n' --workdir /proc -- pwd

# --- who and what the workload runs as ----------------------------------------------------------
guest user_and_group 0 '1000\n1001\n1001\n' --user 1000:1001 -- sh -c 'id -u; id -g; id -G'
guest user_group_defaults_to_uid 0 '1000\n1000\n' --user 1000 -- sh -c 'id -u; id -g'
guest rlimits_apply 0 '256\n512\nunlimited\n' \
	--rlimit nofile=256:512 --rlimit nproc=unlimited -- sh -c 'ulimit -n; ulimit -Hn; ulimit -u'
guest hostname_applies 0 'box-1\nbox-1\n' --hostname box-1 \
	-- sh -c 'hostname; cat /proc/sys/kernel/hostname'
guest hostname_default 0 'ember\n' -- hostname
# --as-pid1: the workload is PID 1 of its own PID namespace, with a /proc that shows it, and
# ember-init (outside) still reports its status: its own exit code, exec failures, and the
# namespace is set up before --user drops root.
guest as_pid1 7 'pid 1\nsh\n' --as-pid1 \
	-- sh -c 'echo pid $$; read -r c </proc/1/comm; echo $c; exit 7'
guest as_pid1_not_found 127 '' --as-pid1 -- /nonexistent/program
guest as_pid1_user 0 '1000\n1\n' --as-pid1 --user 1000 -- sh -c 'id -u; echo $$'

# --- Docker's habits: env files, a bare --env KEY, user names, --timeout -----------------------
# --env-file: KEY=VALUE taken literally (spaces and quotes kept), comments and blank lines
# skipped, leading white space ignored, a bare KEY passes ember's own value (nothing when ember
# has none), a later line wins.
printf '%s\n' '# a comment' '' '   A=first' 'B= spaced "quoted" ' 'EMBER_E2E_FROM_HOST' \
	'EMBER_E2E_NOT_SET' 'C=x=y' '  # indented comment' 'A=second' >"$SCRATCH/env.list"
printf '[%s]' 'second' ' spaced "quoted" ' 'from the host' 'unset' 'x=y' >"$SCRATCH/want.envfile"
export EMBER_E2E_FROM_HOST='from the host'
unset EMBER_E2E_NOT_SET
guest_file env_file 0 "$SCRATCH/want.envfile" --env-file "$SCRATCH/env.list" \
	-- sh -c 'printf "[%s]" "$A" "$B" "$EMBER_E2E_FROM_HOST" "${EMBER_E2E_NOT_SET-unset}" "$C"'
guest env_bare_key_from_host 0 '[from the host][unset][given]\n' \
	--env EMBER_E2E_FROM_HOST --env EMBER_E2E_NOT_SET --env-file "$SCRATCH/env.list" --env A=given \
	-- sh -c 'printf "[%s][%s][%s]\n" "$EMBER_E2E_FROM_HOST" "${EMBER_E2E_NOT_SET-unset}" "$A"'
# --user NAME[:GROUP], resolved in the guest against the root's own /etc/passwd and /etc/group:
# a root of the default one's files plus users of its own.
users_root=$SCRATCH/users-root
if selected 'user_name|group_name|unknown_user|unknown_group'; then
	rm -rf "$users_root" && cp -a "$ROOTFS" "$users_root" && mkdir -p "$users_root/home/alice" &&
		printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'alice:x:1000:1001:Alice:/home/alice:/bin/sh' \
			'bob:x:1002:1002::/:/bin/sh' >"$users_root/etc/passwd" &&
		printf '%s\n' 'root:x:0:' 'wheel:x:10:bob,alice' 'staff:x:50:alice' 'alice:x:1001:' \
			'bob:x:1002:' 'other:x:60:bob' >"$users_root/etc/group" ||
		echo "    could not make $users_root"
fi
# A name alone: its uid, primary group, HOME, and the groups that list it.
guest user_name 0 '1000\n1001\n1001 10 50\n/home/alice\n' --rootfs "$users_root" --user alice \
	-- sh -c 'id -u; id -g; id -G; echo "$HOME"'
# With a group (name or number): that group only, as Docker does.
guest user_name_group_name 0 '1000\n50\n50\n' --rootfs "$users_root" --user alice:staff \
	-- sh -c 'id -u; id -g; id -G'
guest user_number_group_name 0 '4321\n10\n' --rootfs "$users_root" --user 4321:wheel \
	-- sh -c 'id -u; id -g'
guest user_name_group_number 0 '1002\n77\n' --rootfs "$users_root" --user bob:77 \
	-- sh -c 'id -u; id -g'
check_names_user() {
	why="stderr does not name the user 'nosuchuser': '$(excerpt "$SCRATCH/err")'"
	grep -q "nosuchuser" "$SCRATCH/err"
}
after=check_names_user
guest unknown_user_125 125 '' --rootfs "$users_root" --user nosuchuser -- echo should-not-run
after=
check_names_group() {
	why="stderr does not name the group 'nosuchgroup': '$(excerpt "$SCRATCH/err")'"
	grep -q "nosuchgroup" "$SCRATCH/err"
}
after=check_names_group
guest unknown_group_125 125 '' --rootfs "$users_root" --user alice:nosuchgroup -- echo no
after=
# --timeout: a run that ends in time keeps its own status; one that does not is stopped (124,
# and a message).
guest timeout_not_reached 3 'in time\n' --timeout 300 -- sh -c 'echo in time; exit 3'
check_timeout_message() {
	why="no message about --timeout on stderr: '$(excerpt "$SCRATCH/err")'"
	grep -q -- "--timeout" "$SCRATCH/err"
}
after=check_timeout_message
guest timeout_stops_sleep 124 '' --timeout 2 -- sleep 1000
after=

# --- what ember-init does for the workload -----------------------------------------------------
guest init_mounts 0 '/proc\n/sys\n/dev\n/dev/pts\n/dev/shm\n/tmp\n/run\n' \
	-- sh -c 'for m in /proc /sys /dev /dev/pts /dev/shm /tmp /run; do
		grep -q "^[^ ]* $m " /proc/mounts && echo $m; done'
# A signal sent to init (PID 1) reaches the workload: a trapped one runs its trap, an untrapped
# TERM ends it with 143.
guest init_forwards_trapped_signal 7 'got-usr1\n' \
	-- sh -c 'trap "echo got-usr1; exit 7" USR1; kill -USR1 1; sleep 20 & wait; echo not-reached'
guest init_forwards_term 143 '' -- sh -c 'kill -TERM 1; sleep 20'
# Orphans are reparented to init, which reaps them: no zombie is left behind.
guest init_reaps_orphans 0 'reaped\n' -- sh -c '(sleep 0.2 &); sleep 1
	for s in /proc/[0-9]*/stat; do
		[ "$(cut -d" " -f3 "$s" 2>/dev/null)" = Z ] && echo zombie
	done; echo reaped'
# A root workload has no CAP_SYS_RAWIO (bit 17) in any set, so it cannot ioperm()/iopl() its way
# to ember's status port; its other capabilities (SYS_ADMIN 21, SETPCAP 8) stay. Likewise as
# PID 1 of its own namespace.
caps='for k in CapInh CapPrm CapEff CapBnd CapAmb; do
		v=$(sed -n "s/^$k:[[:space:]]*//p" /proc/self/status); echo "$k $(((0x$v >> 17) & 1))"
	done; v=$(sed -n "s/^CapEff:[[:space:]]*//p" /proc/self/status)
	echo "others $(((0x$v >> 21) & 1))$(((0x$v >> 8) & 1))"'
guest init_drops_raw_io 0 'CapInh 0\nCapPrm 0\nCapEff 0\nCapBnd 0\nCapAmb 0\nothers 11\n' \
	-- sh -c "$caps"
guest init_drops_raw_io_as_pid1 0 'CapInh 0\nCapPrm 0\nCapEff 0\nCapBnd 0\nCapAmb 0\nothers 11\n' \
	--as-pid1 -- sh -c "$caps"

# --- devices ---------------------------------------------------------------------------------
# virtio-rng is the guest's hardware RNG, and its bytes look random: 64 KiB hold every byte value.
guest rng_virtio_hwrng 0 'virtio_rng.0\n1048576\n256\n' -- sh -c '
	cat /sys/class/misc/hw_random/rng_current
	head -c 1048576 /dev/hwrng | wc -c
	head -c 65536 /dev/hwrng | od -An -v -tx1 | tr -s " " "\n" | grep . | sort -u | wc -l'
guest rng_off 0 'none\n' --no-rng -- sh -c \
	'cat /sys/class/misc/hw_random/rng_current 2>/dev/null || echo none'

# --- output and input streams ---------------------------------------------------------------
seq 1 200000 | head -c 1048576 >"$SCRATCH/want.1mib"
guest_file stdout_1mib_intact 0 "$SCRATCH/want.1mib" -- sh -c 'seq 1 200000 | head -c 1048576'
{
	seq 1 20000
	echo err-end
} >"$SCRATCH/want.stderr"
check_stderr() {
	cmp -s "$SCRATCH/err" "$SCRATCH/want.stderr" && return 0
	why="stderr ($(wc -c <"$SCRATCH/err") bytes) differs from the expected $(wc -c <"$SCRATCH/want.stderr") bytes: got '$(excerpt "$SCRATCH/err")'"
	return 1
}
after=check_stderr
guest stdout_stderr_apart 0 'out-1\nout-2\n' \
	-- sh -c 'echo out-1; seq 1 20000 >&2; echo out-2; echo err-end >&2'
after=
# Binary input larger than any pipe or ring buffer: the start of the kernel image.
head -c 300000 "$KERNEL" >"$SCRATCH/stdin.bin"
IN="$SCRATCH/stdin.bin"
guest_file stdin_binary_cat 0 "$SCRATCH/stdin.bin" -i -- cat
check_wc() {
	n=$(tr -d ' \n' <"$SCRATCH/out")
	why="wc -c in the guest counted '$n' bytes, want 300000"
	[ "$n" = 300000 ]
}
after=check_wc
guest_file stdin_wc_bytes 0 '' --interactive -- wc -c
after=
# As docker run: without -i the workload's stdin is empty, whatever ember's is.
guest stdin_not_forwarded_without_i 0 '' -- cat
IN=
guest stdin_empty_eof 0 '' -i -- cat
# --console-output: both streams go to the file, nothing to ember's own stdout.
check_console_file() {
	why="console file: '$(excerpt "$SCRATCH/console.txt" 2>/dev/null)', want the lines out and err"
	[ "$(sort "$SCRATCH/console.txt" 2>/dev/null | tr '\n' ,)" = "err,out," ]
}
rm -f "$SCRATCH/console.txt"
after=check_console_file
guest console_output_file 3 '' --console-output "$SCRATCH/console.txt" \
	-- sh -c 'echo out; echo err >&2; exit 3'
after=

# --- an extra initramfs ------------------------------------------------------------------------
# Its files are in the guest's root next to ember's (ember's own are loaded after it).
if selected extra_initramfs; then
	rm -rf "$SCRATCH/extra" && mkdir -p "$SCRATCH/extra/opt" &&
		echo from-the-extra-initramfs >"$SCRATCH/extra/opt/extra.txt"
	if ! command -v cpio >/dev/null 2>&1; then
		skip extra_initramfs "no cpio here to make one"
	elif ! (cd "$SCRATCH/extra" && find opt | cpio -o -H newc >"$SCRATCH/extra.cpio") 2>/dev/null; then
		fail extra_initramfs "cpio could not make the test initramfs"
	else
		guest extra_initramfs 0 'from-the-extra-initramfs\n' \
			--initramfs "$SCRATCH/extra.cpio" -- cat /opt/extra.txt
	fi
fi

# --- machine shape ----------------------------------------------------------------------------
guest cpus_2 0 '2\n2\n' --cpus 2 -- sh -c 'nproc; grep -c ^processor /proc/cpuinfo'
# MemTotal is the RAM the kernel manages: what it was given minus its own image, the memmap
# and firmware-reserved ranges (a few percent at 256 MiB). So: at most 256 MiB, at least 200.
check_memtotal() {
	kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' "$SCRATCH/out")
	why="MemTotal '$(excerpt "$SCRATCH/out")' not within 200-256 MiB"
	[ -n "$kb" ] && [ "$kb" -ge $((200 * 1024)) ] && [ "$kb" -le $((256 * 1024)) ]
}
after=check_memtotal
guest_file memory_256 0 '' --memory 256 -- grep MemTotal /proc/meminfo
after=
# More RAM than fits below the MMIO gap (0xd0000000): the rest is mapped from 4 GiB up, and the
# guest manages both parts. Skipped where the machine running ember has too little RAM for it.
check_high_memory() {
	kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' "$SCRATCH/out")
	why="MemTotal or RAM above 4 GiB missing: '$(excerpt "$SCRATCH/out")'"
	[ -n "$kb" ] && [ "$kb" -ge $((4300 * 1024)) ] && [ "$kb" -le $((4608 * 1024)) ] &&
		grep -q '^100000000-[0-9a-f]* : System RAM$' "$SCRATCH/out"
}
host_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
if selected memory_above_4g && [ "${host_kb:-0}" -lt $((5120 * 1024)) ]; then
	skip memory_above_4g "this machine has $((${host_kb:-0} / 1024)) MiB of RAM, less than the 5 GiB this needs"
else
	after=check_high_memory
	guest_file memory_above_4g 0 '' --memory 4608 -- sh -c 'grep MemTotal /proc/meminfo
		grep "System RAM" /proc/iomem'
	after=
fi
# The CPU the guest sees: the LAPIC's TSC-deadline mode is advertised and used as the tick (so
# the kernel needs no PIT), its cache hierarchy is described (sysfs has the L1 data cache), and
# it has the host's model name.
guest cpu_timer_and_caches 0 'tsc_deadline_timer\nlapic-deadline\nL1 data cache\nmodel name\n' \
	-- sh -c 'grep -o -w -m1 tsc_deadline_timer /proc/cpuinfo; grep -o -m1 lapic-deadline /proc/timer_list
	d=/sys/devices/system/cpu/cpu0/cache/index0
	[ "$(cat $d/level) $(cat $d/type)" = "1 Data" ] && [ -n "$(cat $d/size)" ] && echo L1 data cache
	grep -q "^model name.*: .*[A-Za-z]" /proc/cpuinfo && echo model name'
# Device interrupts go through ember's user-space IOAPIC (split irqchip): the console's line is
# IOAPIC pin 5, edge, and it has fired.
guest interrupts_through_ioapic 0 '1 IO-APIC 5-edge\n' -- sh -c \
	'grep virtio0 /proc/interrupts | { read -r irq n chip pin rest; echo "$((n > 0)) $chip $pin"; }'
guest bzimage_boots 0 'hello from bzImage\n' --kernel "$BZIMAGE" -- echo hello from bzImage

# --- virtio-balloon ----------------------------------------------------------------------------
# Free page reporting gives memory the guest used and freed back to the host. The guest fills
# 256 MiB of a tmpfs and frees it; ember's RSS, read here from /proc/PID/status, must then drop
# by most of it (192 MiB). The guest reports after a 2 s delay; 60 s is a bound only a hang
# misses. stdin (a FIFO) paces the guest: one line to free, one more to exit.
rss_kib() { sed -n 's/^VmRSS:[^0-9]*\([0-9]*\) kB$/\1/p' "/proc/$1/status" 2>/dev/null; }
# wait_for FILE REGEX SECONDS PID: until a line of FILE matches, or PID ended or time ran out.
wait_for() {
	i=0
	while [ "$i" -lt "$(($3 * 10))" ]; do
		grep -Eq "$2" "$1" && return 0
		kill -0 "$4" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	grep -Eq "$2" "$1"
}
if selected balloon_rss_drop; then
	fifo="$SCRATCH/balloon.in"
	rm -f "$fifo" && mkfifo "$fifo"
	"$EMBER" run -i --kernel "$KERNEL" --rootfs "$ROOTFS" --memory 768 --balloon -- sh -c '
		mkdir -p /mnt/fill && mount -t tmpfs -o size=300m fill /mnt/fill || exit 3
		dd if=/dev/zero of=/mnt/fill/x bs=1M count=256 2>/dev/null || exit 4
		echo filled; read -r x; rm /mnt/fill/x; echo freed; read -r x; echo bye' \
		<"$fifo" >"$SCRATCH/out" 2>"$SCRATCH/err" &
	bpid=$!
	trap '' PIPE # a guest that is gone must not take this script with it
	exec 3>"$fifo"
	r_full='' r_low='' why=''
	if ! wait_for "$SCRATCH/out" '^filled$' "$E2E_TIMEOUT" "$bpid"; then
		why="the guest never said it had filled 256 MiB"
	else
		r_full=$(rss_kib "$bpid")
		echo go >&3 2>/dev/null
		wait_for "$SCRATCH/out" '^freed$' 30 "$bpid" || why="the guest never said it had freed them"
	fi
	if [ -z "$why" ]; then
		r_low=$r_full secs=0
		while [ "$secs" -lt 60 ] && [ $((r_full - r_low)) -lt $((192 * 1024)) ]; do
			sleep 1
			r_low=$(rss_kib "$bpid")
			[ -n "$r_low" ] || break
			secs=$((secs + 1))
		done
		[ -n "$r_low" ] && [ $((r_full - r_low)) -ge $((192 * 1024)) ] ||
			why="ember's RSS went from ${r_full} KiB (filled) to ${r_low:-?} KiB ${secs} s after the guest freed 256 MiB: want a drop of at least 192 MiB"
	fi
	echo bye >&3 2>/dev/null
	exec 3>&-
	trap - PIPE
	# Bounded: the guest exits on the line just sent (or stdin EOF).
	i=0
	while kill -0 "$bpid" 2>/dev/null && [ "$i" -lt "$E2E_TIMEOUT" ]; do
		sleep 1
		i=$((i + 1))
	done
	kill -KILL "$bpid" 2>/dev/null
	wait "$bpid" 2>/dev/null
	brc=$?
	if [ -z "$why" ] && [ "$brc" != 0 ]; then
		why="exit status $brc, want 0"
	fi
	if [ -n "$why" ]; then
		fail_run balloon_rss_drop "$why"
	else
		pass balloon_rss_drop
		echo "    RSS ${r_full} KiB filled -> ${r_low} KiB ${secs} s after freeing"
	fi
fi
# --balloon-target from the command line: the guest gives 64 MiB back as soon as its driver is
# up. Its MemTotal, 240 MiB or so at --memory 256 (memory_256), must fall to 192 MiB or less (it
# waits up to 60 s for that).
check_balloon_target() {
	kb=$(tr -d '\n' <"$SCRATCH/out")
	why="MemTotal is '$kb' KiB with a 64 MiB balloon, want at most 196608"
	[ -n "$kb" ] && [ "$kb" -le 196608 ]
}
after=check_balloon_target
guest_file balloon_target_cli 0 '' --memory 256 --balloon-target 64 -- sh -c '
	kib() { sed -n "s/^MemTotal: *\([0-9]*\) kB$/\1/p" /proc/meminfo; }
	n=0; while [ $n -lt 240 ] && [ "$(kib)" -gt 196608 ]; do sleep 0.25; n=$((n + 1)); done
	kib'
after=
bad_input bad_balloon_option --kernel "$KERNEL" --rootfs "$ROOTFS" --balloon=no-such -- true
bad_input bad_balloon_target --kernel "$KERNEL" --rootfs "$ROOTFS" --memory 256 \
	--balloon-target 300 -- true

# --- the guest dying --------------------------------------------------------------------------
# rdinit= given last wins over ember's own, and nothing else in the initramfs can be init, so
# the kernel panics ("No working init found"); the VM must end with an error, not hang.
if selected kernel_panic_exits; then
	ember_run --cmdline rdinit=/nonexistent -- echo should-not-run
	if [ -n "$hung" ]; then
		fail_run kernel_panic_exits "no exit within ${E2E_TIMEOUT}s after a guest kernel panic (killed)"
	elif [ "$rc" = 0 ]; then
		fail_run kernel_panic_exits "exit status 0 after a guest kernel panic"
	elif grep -q should-not-run "$SCRATCH/out"; then
		fail_run kernel_panic_exits "the workload ran: the panic did not happen"
	else
		pass kernel_panic_exits
	fi
fi

# --- disks (virtio-blk) -------------------------------------------------------------------------
# BLK_ASSETS: images that tests/e2e/disk-images.sh made where mkfs.ext4 exists (run.sh passes
# them in). Images the guest writes are copied or made in $SCRATCH first.
blk_names='blk_ext4_read_back|blk_write_64m_sync|blk_ro_refused|blk_two_disks|blk_discard_punches|blk_root_disk|blk_root_disk_rw_persists|blk_locked_by_other_ember|bad_disk_'
# Without the images the disk scenarios are not run; that fails only where one was selected (a
# run for a single C program has none and passes no images).
blk_ok=
if [ -n "${BLK_ASSETS:-}" ] && [ -f "$BLK_ASSETS/data.img" ]; then
	blk_ok=1
elif selected "$blk_names"; then
	fail blk_assets "BLK_ASSETS is not set or has no data.img (tests/e2e/run.sh makes them with tests/e2e/disk-images.sh)"
fi
img_sum() { sha256sum "$1" | cut -d' ' -f1; }
# root-disk runs: ember_run would add --rootfs, which a root disk excludes.
ember_run_noroot() { run_bounded "$E2E_TIMEOUT" "$EMBER" run --kernel "$KERNEL" "$@"; }
disk_guest() { # name rc want-format ember-run-args...: as guest, without the default --rootfs
	dg=$1 dr=$2
	# shellcheck disable=SC2059 # the format is the point
	printf "$3" >"$SCRATCH/want.$dg"
	shift 3
	selected "$dg" || return 1
	ember_run_noroot "$@"
	if [ -n "$hung" ]; then
		fail_run "$dg" "no exit within ${E2E_TIMEOUT}s (killed)"
	elif [ "$rc" != "$dr" ]; then
		fail_run "$dg" "exit status $rc, want $dr"
	elif ! cmp -s "$SCRATCH/out" "$SCRATCH/want.$dg"; then
		fail_run "$dg" "stdout '$(excerpt "$SCRATCH/out")', want '$(excerpt "$SCRATCH/want.$dg")'"
	elif [ -n "$after" ] && ! "$after"; then
		fail_run "$dg" "$why"
	else
		pass "$dg"
		return 0
	fi
	return 1
}
if [ -n "$blk_ok" ]; then
	# An ext4 image made with mkfs.ext4 -d reads back byte-exact, and a read-only disk's file
	# is not modified (not even by the mount).
	data_sum=$(img_sum "$BLK_ASSETS/data.img")
	check_data_unchanged() {
		[ "$(img_sum "$BLK_ASSETS/data.img")" = "$data_sum" ] && return 0
		why="data.img changed on the host"
		return 1
	}
	after=check_data_unchanged
	guest_file blk_ext4_read_back 0 "$BLK_ASSETS/data.sha256" --disk "$BLK_ASSETS/data.img:ro" \
		-- sh -c 'mkdir -p /tmp/m && mount -t ext4 -o ro /dev/vda /tmp/m && cd /tmp/m &&
			sha256sum hello.txt random.bin sub/nested.txt'
	# Writing to a read-only disk fails in the guest.
	guest blk_ro_refused 0 'ro 1\nrefused\n' --disk "$BLK_ASSETS/data.img:ro" \
		-- sh -c 'echo ro $(cat /sys/block/vda/ro)
			if echo junk | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null; then
				echo written; else echo refused; fi'
	after=

	# 64 MiB written and synced by the guest are in the host file (sha256 on both sides).
	if selected blk_write_64m_sync; then
		rm -f "$SCRATCH/w.img"
		truncate -s 80M "$SCRATCH/w.img"
		ember_run --disk "$SCRATCH/w.img" --memory 512 -- sh -c 'head -c 67108864 /dev/urandom >/tmp/d &&
			sha256sum /tmp/d | cut -d" " -f1 && cat /tmp/d >/dev/vda && sync'
		host_sum=$(head -c 67108864 "$SCRATCH/w.img" | sha256sum | cut -d' ' -f1)
		if [ -n "$hung" ]; then
			fail_run blk_write_64m_sync "no exit within ${E2E_TIMEOUT}s (killed)"
		elif [ "$rc" != 0 ]; then
			fail_run blk_write_64m_sync "exit status $rc, want 0"
		elif [ "$(cat "$SCRATCH/out")" != "$host_sum" ]; then
			fail_run blk_write_64m_sync "guest wrote sha256 '$(excerpt "$SCRATCH/out")', the host file has $host_sum"
		elif [ "$(stat -c %s "$SCRATCH/w.img")" != 83886080 ]; then
			fail blk_write_64m_sync "the image changed size: $(stat -c %s "$SCRATCH/w.img")"
		else
			pass blk_write_64m_sync
		fi
		rm -f "$SCRATCH/w.img"
	fi

	# Two disks at once: /dev/vda and /dev/vdb in order, each with its serial and size; the
	# rw one takes the write.
	rm -f "$SCRATCH/b.img"
	truncate -s 4M "$SCRATCH/b.img"
	check_b_written() {
		[ "$(head -c 12 "$SCRATCH/b.img")" = "second-disk!" ] && return 0
		why="b.img does not start with what the guest wrote: '$(head -c 12 "$SCRATCH/b.img" | cat -v)'"
		return 1
	}
	after=check_b_written
	guest blk_two_disks 0 'ember-vda 32768 1\nember-vdb 8192 0\n' \
		--disk "$BLK_ASSETS/data.img:ro" --disk "$SCRATCH/b.img" \
		-- sh -c 'for d in vda vdb; do
				echo $(cat /sys/block/$d/serial) $(cat /sys/block/$d/size) $(cat /sys/block/$d/ro)
			done; printf second-disk! | dd of=/dev/vdb conv=fsync 2>/dev/null'
	after=

	# Discard punches holes: the host file's allocated blocks shrink.
	if selected blk_discard_punches; then
		rm -f "$SCRATCH/d.img"
		head -c 16777216 /dev/urandom >"$SCRATCH/d.img"
		before=$(stat -c %b "$SCRATCH/d.img")
		ember_run --disk "$SCRATCH/d.img" -- sh -c 'blkdiscard /dev/vda && sync && echo discarded'
		after_blocks=$(stat -c %b "$SCRATCH/d.img")
		if [ -n "$hung" ]; then
			fail_run blk_discard_punches "no exit within ${E2E_TIMEOUT}s (killed)"
		elif [ "$rc" != 0 ] || [ "$(cat "$SCRATCH/out")" != discarded ]; then
			fail_run blk_discard_punches "exit status $rc, stdout '$(excerpt "$SCRATCH/out")'"
		elif [ "$after_blocks" -ge $((before / 4)) ]; then
			fail blk_discard_punches "st_blocks $before before, $after_blocks after: not punched"
		elif [ "$(stat -c %s "$SCRATCH/d.img")" != 16777216 ]; then
			fail blk_discard_punches "the image changed size"
		else
			pass blk_discard_punches
		fi
		rm -f "$SCRATCH/d.img"
	fi

	# Root on a disk: / is the ext4 image (read-only here), with the usual mounts.
	disk_guest blk_root_disk 0 'root-disk-marker\n/dev/vda / ext4 ro\n/proc\n/dev\nread-only\n' \
		--root-disk "$BLK_ASSETS/root.img:ro" \
		-- sh -c 'cat /ember-root-disk
			grep " / " /proc/mounts | cut -d" " -f1-3 | tr "\n" " "; grep " / " /proc/mounts | grep -o "[ ,]ro[ ,]" | tr -d " ,"
			grep -q " /proc proc" /proc/mounts && echo /proc
			grep -q " /dev devtmpfs" /proc/mounts && echo /dev
			touch /new 2>/dev/null || echo read-only'
	# A read-write root disk keeps what the guest wrote for the next run.
	if selected blk_root_disk_rw_persists; then
		cp "$BLK_ASSETS/root.img" "$SCRATCH/root-rw.img"
		ember_run_noroot --root-disk "$SCRATCH/root-rw.img" --root-disk-fstype ext4 \
			-- sh -c 'echo kept >/persist && sync'
		first=$rc
		disk_guest blk_root_disk_rw_persists 0 'kept\n' --root-disk "$SCRATCH/root-rw.img" \
			-- sh -c '[ '"$first"' = 0 ] && cat /persist'
		rm -f "$SCRATCH/root-rw.img"
	fi

	# An image another ember holds read-write is refused, with a clear message.
	if selected blk_locked_by_other_ember; then
		rm -f "$SCRATCH/l.img" "$SCRATCH/l.out"
		truncate -s 1M "$SCRATCH/l.img"
		"$EMBER" run --kernel "$KERNEL" --rootfs "$ROOTFS" --disk "$SCRATCH/l.img" \
			-- sh -c 'echo holding; sleep 60' >"$SCRATCH/l.out" 2>&1 </dev/null &
		holder=$!
		i=0
		while [ "$i" -lt "$E2E_TIMEOUT" ] && ! grep -q holding "$SCRATCH/l.out" 2>/dev/null; do
			sleep 1
			i=$((i + 1))
		done
		run_bounded 30 "$EMBER" run --kernel "$KERNEL" --rootfs "$ROOTFS" --disk "$SCRATCH/l.img:ro" -- true
		kill "$holder" 2>/dev/null
		wait "$holder" 2>/dev/null
		if ! grep -q holding "$SCRATCH/l.out"; then
			fail blk_locked_by_other_ember "the first ember never started: '$(excerpt "$SCRATCH/l.out")'"
		elif [ "$rc" -lt 1 ] || [ "$rc" -gt 125 ] || ! grep -q "in use by another process" "$SCRATCH/err"; then
			fail_run blk_locked_by_other_ember "exit status $rc, want a refusal naming the lock"
		else
			pass blk_locked_by_other_ember
		fi
		rm -f "$SCRATCH/l.img" "$SCRATCH/l.out"
	fi

	# Images ember refuses at build.
	head -c 1000 /dev/zero >"$SCRATCH/odd.img"
	rm -f "$SCRATCH/zero.img"
	truncate -s 1M "$SCRATCH/zero.img"
	bad_input bad_disk_missing --kernel "$KERNEL" --rootfs "$ROOTFS" --disk "$SCRATCH/no-such.img" -- true
	bad_input bad_disk_not_512 --kernel "$KERNEL" --rootfs "$ROOTFS" --disk "$SCRATCH/odd.img" -- true
	bad_input bad_disk_directory --kernel "$KERNEL" --rootfs "$ROOTFS" --disk "$SCRATCH" -- true
	bad_input bad_disk_root_and_rootfs --kernel "$KERNEL" --rootfs "$ROOTFS" \
		--root-disk "$BLK_ASSETS/root.img:ro" -- true
	bad_input bad_disk_root_unknown_fs --kernel "$KERNEL" --root-disk "$SCRATCH/zero.img:ro" -- true
	rm -f "$SCRATCH/odd.img" "$SCRATCH/zero.img"
fi

# --- stopping wins ------------------------------------------------------------------------------
# The guest floods stdout into a FIFO that is held open but never read, so ember's writer is stuck
# and the guest blocks on a full queue. A SIGTERM must still end ember: the VM stops at once and
# the final flush gives up at its deadline (EMBER_FLUSH_TIMEOUT_MS, 5 s); a second SIGTERM
# cancels the flush. Bounds are generous (only a hang misses them); the times are reported.
uptime_cs() { read -r up _ </proc/uptime && echo "${up%.*}${up#*.}"; }
stop_stuck() { # name signals-to-send bound-seconds
	sname=$1 nsig=$2 bound=$3
	selected "$sname" || return 0
	rm -f "$SCRATCH/fifo"
	mkfifo "$SCRATCH/fifo" || { fail "$sname" "mkfifo failed"; return; }
	exec 7<>"$SCRATCH/fifo" # holds the FIFO open, never reads
	"$EMBER" run --kernel "$KERNEL" --rootfs "$ROOTFS" -- sh -c 'echo started >&2; yes' \
		>"$SCRATCH/fifo" 2>"$SCRATCH/err" </dev/null &
	spid=$!
	i=0
	while [ "$i" -lt "$E2E_TIMEOUT" ] && ! grep -q started "$SCRATCH/err" 2>/dev/null; do
		sleep 1
		i=$((i + 1))
	done
	sleep 1 # the guest's queue and ember's buffer fill up
	t0=$(uptime_cs)
	kill -TERM "$spid" 2>/dev/null
	[ "$nsig" -gt 1 ] && sleep 1 && kill -TERM "$spid" 2>/dev/null
	i=0
	while kill -0 "$spid" 2>/dev/null && [ "$i" -lt "$((bound * 10))" ]; do
		sleep 0.1
		i=$((i + 1))
	done
	t1=$(uptime_cs)
	if kill -0 "$spid" 2>/dev/null; then
		kill -KILL "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
		exec 7<&-
		fail_run "$sname" "ember still running ${bound}s after SIGTERM (killed)"
		return
	fi
	wait "$spid" 2>/dev/null
	src=$?
	exec 7<&-
	if ! grep -q started "$SCRATCH/err"; then
		fail_run "$sname" "the guest never started"
	elif [ "$src" != 137 ]; then
		fail_run "$sname" "exit status $src, want 137 (stopped)"
	else
		pass "$sname"
		echo "    ember ended $(((t1 - t0) * 10)) ms after the first SIGTERM"
	fi
}
stop_stuck stop_wins_over_stuck_reader 1 30
stop_stuck stop_second_signal_cancels_flush 2 30

# --- bad inputs -------------------------------------------------------------------------------
{
	seq 1 5000
	head -c 4096 "$KERNEL" | tr '\000' x
} >"$SCRATCH/garbage-kernel"
bad_input bad_missing_kernel --kernel "$SCRATCH/no-such-kernel" --rootfs "$ROOTFS" -- true
bad_input bad_garbage_kernel --kernel "$SCRATCH/garbage-kernel" --rootfs "$ROOTFS" -- true
bad_input bad_cpus_0 --kernel "$KERNEL" --rootfs "$ROOTFS" --cpus 0 -- true
bad_input bad_memory_huge --kernel "$KERNEL" --rootfs "$ROOTFS" --memory 999999999 -- true
bad_input bad_missing_rootfs --kernel "$KERNEL" --rootfs "$SCRATCH/no-such-dir" -- true
bad_input bad_no_command --kernel "$KERNEL" --rootfs "$ROOTFS"
bad_input bad_unknown_option --kernel "$KERNEL" --rootfs "$ROOTFS" --no-such-option -- true
bad_input bad_timeout_0 --kernel "$KERNEL" --rootfs "$ROOTFS" --timeout 0 -- true
bad_input bad_timeout_negative --kernel "$KERNEL" --rootfs "$ROOTFS" --timeout -5 -- true
bad_input bad_timeout_not_a_number --kernel "$KERNEL" --rootfs "$ROOTFS" --timeout soon -- true
bad_input bad_env_file_missing --kernel "$KERNEL" --rootfs "$ROOTFS" \
	--env-file "$SCRATCH/no-such-env-file" -- true
printf 'GOOD=1\nBAD NAME=2\n' >"$SCRATCH/bad.env"
bad_input bad_env_file_malformed --kernel "$KERNEL" --rootfs "$ROOTFS" \
	--env-file "$SCRATCH/bad.env" -- true
bad_input bad_user_malformed --kernel "$KERNEL" --rootfs "$ROOTFS" --user 'a:b:c' -- true
bad_input bad_metrics_json_unwritable --kernel "$KERNEL" --rootfs "$ROOTFS" \
	--metrics-json "$SCRATCH/no-such-dir/m.json" -- true

# --- ember kvm-info ----------------------------------------------------------------------------
# Both paths run where /dev/kvm is hardware-backed (directly with vmx/svm, or inside the TCG
# test host with emulated SVM), so kvm-info must say so, and that ember can use it.
if selected kvm_info; then
	run_bounded "$E2E_TIMEOUT" "$EMBER" kvm-info
	if [ -n "$hung" ]; then
		fail kvm_info "no exit within ${E2E_TIMEOUT}s (killed)"
	elif [ "$rc" != 0 ]; then
		fail_run kvm_info "exit status $rc, want 0"
	elif ! grep -q '^API version: 12$' "$SCRATCH/out"; then
		fail kvm_info "no 'API version: 12' line: '$(excerpt "$SCRATCH/out")'"
	elif ! grep -Eq '^host virtualization: hardware \((svm|vmx)\)' "$SCRATCH/out"; then
		fail kvm_info "does not report hardware virtualization: '$(excerpt "$SCRATCH/out")'"
	elif ! grep -Eq 'KVM_CAP_IRQCHIP +yes +required' "$SCRATCH/out"; then
		fail kvm_info "capability table missing: '$(excerpt "$SCRATCH/out")'"
	else
		pass kvm_info
	fi
fi

# --- C programs -------------------------------------------------------------------------------
if [ -n "${E2E_PROGS:-}" ] && [ -d "$E2E_PROGS" ]; then
	for prog in "$E2E_PROGS"/*; do
		if [ ! -f "$prog" ] || [ ! -x "$prog" ]; then continue; fi
		pname=${prog##*/}
		selected "$pname" || continue
		pscratch="$SCRATCH/prog-$pname"
		mkdir -p "$pscratch"
		run_bounded "$E2E_PROG_TIMEOUT" env SCRATCH="$pscratch" "$prog"
		sed -n -E -e "s#^(PASS|FAIL|SKIP) #\\1 $pname/#p" -e '/^    /p' "$SCRATCH/out" \
			>"$SCRATCH/folded"
		cat "$SCRATCH/folded"
		p=$(grep -c '^PASS ' "$SCRATCH/folded")
		f=$(grep -c '^FAIL ' "$SCRATCH/folded")
		s=$(grep -c '^SKIP ' "$SCRATCH/folded")
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
		if [ -n "$hung" ]; then
			fail_run "$pname" "no exit within ${E2E_PROG_TIMEOUT}s (killed)"
		elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
			fail_run "$pname" "exited with status $rc without reporting a failed test"
		elif [ "$rc" = 0 ] && [ "$((p + f + s))" = 0 ]; then
			pass "$pname"
		elif [ "$f" != 0 ] && [ -s "$SCRATCH/err" ]; then
			echo "    $pname stderr:"
			show_ends "$SCRATCH/err"
		fi
	done
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
