#!/usr/bin/env bash
# ember's end-to-end suite: real Linux guests under `ember run` (tests/e2e/scenarios.sh) plus the
# C programs built from tests/e2e/*.c.
#
#   tests/e2e/run.sh [--build DIR] [--path auto|direct|tcg] [--only REGEX]
#
# Where: directly on this host when it has hardware virtualization (vmx/svm in /proc/cpuinfo) and
# a usable /dev/kvm; otherwise inside the TCG test host (scripts/tcg-host/run.sh), booted once
# for all scenarios. Both print the same lines: "PASS name", "FAIL name: reason",
# "SKIP name: reason", then "N passed, N failed, N skipped"; the exit status is 1 on any failure.
#
# Needs, under the build directory (`make check` builds them all):
#   guest/vmlinux, guest/bzImage, rootfs/   the guest (make guest)
#   ember            direct path;  tests/e2e/<name>         for each tests/e2e/<name>.c
#   ember-static     TCG path;     static/tests/e2e/<name>  for each tests/e2e/<name>.c
#                                  static/tests/kvm/test_*  the KVM suite, for the test host
# Environment: E2E_PATH (as --path), E2E_ONLY (as --only), E2E_TIMEOUT (seconds per guest run;
# default 60 direct, 120 in the TCG host), E2E_PROG_TIMEOUT (per C program, default 300),
# E2E_TCG_TIMEOUT (the whole TCG host run, default 2400), E2E_TCG_MEMORY (its MiB, default 6144),
# E2E_DIRECT_IN_TCG (1, the default: on the TCG path, also run the direct path inside the test
# host, reported as "direct:NAME"; needs bash-static), E2E_KVM_IN_TCG (1, the default: on the TCG
# path, also run the KVM suite, static/tests/kvm/*, on the test host's KVM, reported as
# "svm:PROGRAM/TEST"; with --only, when the regex matches "kvm_suite").
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=build
path=${E2E_PATH:-auto}
only=${E2E_ONLY:-}
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--path) path=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "tests/e2e/run.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done
case "$build" in /*) ;; *) build="$root/$build" ;; esac

t0=$(date +%s)
log=$(mktemp -d "${TMPDIR:-/tmp}/ember-e2e.XXXXXX")
trap 'rm -rf "$log"' EXIT
extra_pass=0 extra_fail=0

harness_fail() { # name reason
	echo "FAIL $1: $2"
	extra_fail=$((extra_fail + 1))
}
finish() {
	local p f s
	p=$(grep -c '^PASS ' "$log/out" 2>/dev/null)
	f=$(grep -c '^FAIL ' "$log/out" 2>/dev/null)
	s=$(grep -c '^SKIP ' "$log/out" 2>/dev/null)
	p=$((${p:-0} + extra_pass)) f=$((${f:-0} + extra_fail)) s=${s:-0}
	echo "e2e: $path path, $(($(date +%s) - t0))s"
	echo "$p passed, $f failed, $s skipped"
	[ "$f" -eq 0 ]
	exit
}

has_hw_virt() { grep -Eqw 'vmx|svm' /proc/cpuinfo 2>/dev/null; }
kvm_usable() { [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; }
if [ "$path" = auto ]; then
	if has_hw_virt && kvm_usable; then
		path=direct
		echo "e2e: path: direct (this host has hardware virtualization and a usable /dev/kvm)"
	else
		path=tcg
		why="no vmx/svm in /proc/cpuinfo"
		has_hw_virt && why="/dev/kvm is not usable"
		echo "e2e: path: TCG test host ($why: Linux guests run inside QEMU TCG with nested SVM)"
	fi
else
	echo "e2e: path: $path (chosen by --path / E2E_PATH)"
fi
case "$path" in direct | tcg) ;; *) echo "tests/e2e/run.sh: --path must be auto, direct or tcg" >&2; exit 2 ;; esac

# Missing inputs are failures, not skips: `make check` builds all of them.
if [ "$path" = direct ]; then
	ember="$build/ember" progdir="$build/tests/e2e"
else
	ember="$build/ember-static" progdir="$build/static/tests/e2e"
fi
missing=()
for f in "$ember" "$build/guest/vmlinux" "$build/guest/bzImage"; do
	[ -f "$f" ] || missing+=("${f#"$root"/}")
done
[ -x "$build/rootfs/bin/sh" ] || missing+=("${build#"$root"/}/rootfs/bin/sh")
progs=()
for src in "$here"/*.c; do
	[ -e "$src" ] || continue
	name=$(basename "$src" .c)
	if [ -x "$progdir/$name" ]; then
		progs+=("$progdir/$name")
	else
		missing+=("${progdir#"$root"/}/$name")
	fi
done
: >"$log/out"
if [ ${#missing[@]} -gt 0 ]; then
	harness_fail e2e_prerequisites "missing ${missing[*]} (make check builds them; by hand: make guest, make ${ember#"$root"/}, make ${progdir#"$root"/}/NAME)"
	finish
fi

# Only the programs of the current sources, in a directory of their own.
mkdir -p "$log/progs"
for p in "${progs[@]}"; do ln -s "$p" "$log/progs/"; done

# Passes lines through as they come, without the summary line (the caller prints its own).
# Plain bash: it also runs inside the test host, whose busybox grep has no --line-buffered.
drop_summary() {
	local l
	while IFS= read -r l; do
		case "$l" in
		[0-9]*' passed, '*' failed'*) ;;
		*) printf '%s\n' "$l" ;;
		esac
	done
}

# Disk images for the virtio-blk scenarios, made here: the TCG test host has no mkfs.ext4. A run
# inside the test host (the direct path there) gets them from outside in BLK_ASSETS.
blk_assets=${BLK_ASSETS:-}
if [ -z "$blk_assets" ]; then
	blk_assets="$log/blk"
	if ! sh "$here/disk-images.sh" "$blk_assets" "$build/rootfs" >"$log/blk.err" 2>&1; then
		harness_fail blk_disk_images "tests/e2e/disk-images.sh failed: $(head -c 300 "$log/blk.err")"
	fi
fi

if [ "$path" = direct ]; then
	mkdir -p "$log/scratch"
	BLK_ASSETS="$blk_assets" EMBER="$ember" KERNEL="$build/guest/vmlinux" BZIMAGE="$build/guest/bzImage" \
		ROOTFS="$build/rootfs" SCRATCH="$log/scratch" E2E_PROGS="$log/progs" E2E_ONLY="$only" \
		E2E_TIMEOUT="${E2E_TIMEOUT:-60}" E2E_PROG_TIMEOUT="${E2E_PROG_TIMEOUT:-300}" \
		sh "$here/scenarios.sh" </dev/null 2>&1 | drop_summary | tee "$log/out"
	status=${PIPESTATUS[0]}
else
	# One test-host boot for the shell scenarios, then one per C program, one for the KVM suite
	# and one for the direct path. The test host once froze now and then (a QEMU TCG bug with
	# kernel text patching, avoided by kvm-pin: see scripts/tcg-host/README.md); should one still
	# freeze, its stage is retried once (l1_stage below).
	guest_files() { # PREFIX: ember, the kernels and the root, under /payload/PREFIX in L1
		l1_guest=(
			--file "$ember:$1/ember"
			--file "$build/guest/vmlinux:$1/guest/vmlinux"
			--file "$build/guest/bzImage:$1/guest/bzImage"
			--file "$build/rootfs:$1/rootfs"
		)
	}
	tcg_host() { # LIMIT tcg-host-args... -- command...: one test-host run, stderr included
		local limit=$1
		shift
		# 6 GiB: room for the programs that run many guests at once and for a guest with RAM
		# above 4 GiB (QEMU allocates lazily: only what the guests touch is used).
		"$root/scripts/tcg-host/run.sh" --no-stdin --timings --timeout "$limit" \
			--memory "${E2E_TCG_MEMORY:-6144}" \
			--env "E2E_TIMEOUT=${E2E_TIMEOUT:-120}" \
			--env "E2E_PROG_TIMEOUT=${E2E_PROG_TIMEOUT:-300}" "$@" 2>&1
	}
	run_l1() { # timeout only progs-args...
		local limit=$1 sel=$2
		shift 2
		guest_files build
		tcg_host "$limit" "${l1_guest[@]}" --file "$here/scenarios.sh:e2e/scenarios.sh" "$@" \
			--env EMBER=/payload/build/ember \
			--env KERNEL=/payload/build/guest/vmlinux \
			--env BZIMAGE=/payload/build/guest/bzImage \
			--env ROOTFS=/payload/build/rootfs \
			--env SCRATCH=/tmp/e2e \
			--env E2E_PROGS=/payload/e2e/progs \
			--env "E2E_ONLY=$sel" \
			-- sh /payload/e2e/scenarios.sh | drop_summary | tee -a "$log/out"
		return "${PIPESTATUS[0]}"
	}
	# One test-host stage (a command and its arguments). A test host that froze (exit 123: its
	# heartbeat stopped, see scripts/tcg-host/README.md) is a harness failure, not a test's: the
	# stage runs again once in a fresh test host, its frozen attempt's lines are dropped from the
	# count, and a RETRY line says so. A failing test is never retried, nor is a timeout (124).
	l1_stage() { # name command...
		local name=$1 attempt mark st
		shift
		for attempt in 1 2; do
			mark=$(wc -l <"$log/out")
			"$@"
			st=$?
			[ "$st" -eq 123 ] && [ "$attempt" -eq 1 ] || break
			head -n "$mark" "$log/out" >"$log/out.kept" && mv "$log/out.kept" "$log/out"
			echo "RETRY $name: the TCG test host froze; running the stage again in a fresh one"
		done
		case "$st" in
		123) harness_fail "$name" "the TCG test host froze twice" ;;
		124) harness_fail "$name" "the TCG test host timed out" ;;
		125) harness_fail "$name" "the TCG test host failed (see the tcg-host lines above)" ;;
		esac
		[ "$st" -eq 0 ] || status=$st
	}
	mkdir -p "$log/empty"
	status=0
	# Shell scenarios: everything except the programs.
	scen_only=$only
	[ -n "$scen_only" ] || scen_only='.'
	l1_stage e2e_tcg_host run_l1 "${E2E_TCG_TIMEOUT:-2400}" "$scen_only" \
		--file "$log/empty:e2e/progs" --file "$blk_assets:e2e/blk" --env BLK_ASSETS=/payload/e2e/blk
	for p in "${progs[@]}"; do
		name=$(basename "$p")
		if [ -n "$only" ] && ! echo "$name" | grep -Eq -- "$only"; then
			continue
		fi
		l1_stage "e2e_tcg_host_$name" run_l1 "${E2E_PROG_L1_TIMEOUT:-900}" "^$name\$" \
			--file "$log/empty:e2e/progs" --file "$p:e2e/progs/$name"
	done
	# scripts/ember-tcg itself: its --disk images become disks of the test host, so what the
	# guest writes to a read-write one is in the file here afterwards (as with ember run), and a
	# read-only one stays as it was.
	if [ -z "$only" ] || echo ember_tcg_disk_passthrough | grep -Eq -- "$only"; then
		t=ember_tcg_disk_passthrough
		rm -f "$log/tcg-rw.img"
		truncate -s 4M "$log/tcg-rw.img"
		ro_sum=$(sha256sum <"$blk_assets/data.img")
		EMBER_TCG_EMBER="$ember" "$root/scripts/ember-tcg" --build "$build" --force-tcg \
			--timeout "${E2E_PROG_L1_TIMEOUT:-900}" -- ember run --kernel "$build/guest/vmlinux" \
			--rootfs "$build/rootfs" --disk "$log/tcg-rw.img" --disk "$blk_assets/data.img:ro" \
			-- sh -c 'printf written-through-ember-tcg | dd of=/dev/vda conv=fsync 2>/dev/null
				cat /sys/block/vdb/ro' >"$log/tcg.out" 2>"$log/tcg.err"
		st=$?
		got=$(head -c 25 "$log/tcg-rw.img")
		if [ "$st" -ne 0 ]; then
			harness_fail "$t" "scripts/ember-tcg exited $st: $(tail -c 300 "$log/tcg.err")"
		elif [ "$got" != written-through-ember-tcg ]; then
			harness_fail "$t" "the host file holds '$(printf '%s' "$got" | cat -v)', not what the guest wrote"
		elif [ "$(cat "$log/tcg.out")" != 1 ] || [ "$(sha256sum <"$blk_assets/data.img")" != "$ro_sum" ]; then
			harness_fail "$t" "the read-only disk was not read-only (ro flag '$(cat "$log/tcg.out")') or its file changed"
		else
			echo "PASS $t" | tee -a "$log/out"
		fi
	fi
	# The KVM suite (tests/kvm: tiny guests driving the KVM layer, the VM core and the CLI) on
	# the test host's KVM as well: a hardware-style KVM (kvm-amd) on Debian 12's kernel, where
	# this host's may be another kind. Its lines come back as "svm:PROGRAM/TEST".
	if [ "${E2E_KVM_IN_TCG:-1}" = 1 ] && { [ -z "$only" ] || echo kvm_suite | grep -Eq -- "$only"; }; then
		k="$log/kvm"
		mkdir -p "$k/tests/kvm"
		kvm_bins=("$build"/static/tests/kvm/test_*)
		if [ ! -x "${kvm_bins[0]}" ]; then
			harness_fail kvm_suite_in_tcg_host "no static KVM test programs in ${build#"$root"/}/static/tests/kvm (make static builds them)"
			status=1
		else
			cp "${kvm_bins[@]}" "$k/tests/kvm/"
			cp "$ember" "$k/ember"
			kvm_suite_l1() {
				tcg_host "${E2E_PROG_L1_TIMEOUT:-900}" --file "$k:kvm" \
					--file "$here/kvm-suite.sh:kvm-suite.sh" \
					-- sh /payload/kvm-suite.sh /payload/kvm svm | drop_summary | tee -a "$log/out"
				return "${PIPESTATUS[0]}"
			}
			l1_stage e2e_tcg_host_kvm_suite kvm_suite_l1
		fi
	fi
	# The direct path, run where it can run: inside the test host, whose KVM is hardware-style
	# (svm). This script drives the same scenarios and programs there in direct mode, so the
	# path that vmx/svm hosts take is exercised too; its lines come back as "direct:NAME".
	if [ "${E2E_DIRECT_IN_TCG:-1}" = 1 ]; then
		bash_static=$(command -v bash-static || true)
		if [ -z "$bash_static" ]; then
			harness_fail direct_path_in_tcg_host "bash-static is not installed (scripts/setup installs it)"
			status=1
		else
			d="$log/direct"
			mkdir -p "$d/tests/e2e" "$d/build/tests/e2e"
			cp "$here"/run.sh "$here"/scenarios.sh "$here"/disk-images.sh "$here"/*.c "$d/tests/e2e/"
			for p in "${progs[@]}"; do cp "$p" "$d/build/tests/e2e/"; done
			direct_l1() {
				guest_files main/build
				tcg_host "${E2E_TCG_TIMEOUT:-2400}" "${l1_guest[@]}" \
					--file "$d/tests:main/tests" --file "$d/build/tests:main/build/tests" \
					--file "$bash_static:bin/bash" --env "E2E_ONLY=$only" \
					--file "$blk_assets:main/blk" --env BLK_ASSETS=/payload/main/blk \
					-- bash /payload/main/tests/e2e/run.sh --build /payload/main/build --path direct |
					drop_summary | sed -E 's/^(PASS|FAIL|SKIP) /\1 direct:/' | tee -a "$log/out"
				return "${PIPESTATUS[0]}"
			}
			l1_stage e2e_tcg_host_direct_path direct_l1
		fi
	fi
fi
if [ "$status" -ne 0 ] && [ "$(grep -c '^FAIL ' "$log/out")" -eq 0 ] && [ "$extra_fail" -eq 0 ]; then
	harness_fail e2e_scenarios "scenarios.sh exited with status $status without reporting a failure"
fi
finish
