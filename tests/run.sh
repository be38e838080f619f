#!/usr/bin/env bash
# Runs ember's test groups and prints one closing line: "N passed, N failed, N skipped".
#   tests/run.sh [--build DIR] [unit] [fuzz] [kvm] [e2e]
# unit: no KVM needed. fuzz: the fuzz targets on their seeds and FUZZ_RUNS (20000) deterministic
# mutations of them (FUZZ_SEED), no KVM needed. kvm: tiny guests on /dev/kvm.
# e2e: real Linux guests, directly when the host has vmx/svm, else inside the TCG test host.
# A group that finds no test program to run fails. A /dev/kvm that cannot be opened for reading
# and writing fails the kvm group (a machine without KVM would otherwise show green while covering
# none of the VM tests) unless EMBER_TESTS_ALLOW_NO_KVM=1, which runs the KVM programs anyway (they
# skip) and says so above the closing line. EMBER_TESTS_KVM_DEVICE (default /dev/kvm) is the path
# the probe checks, so the no-KVM case can be tried on a machine that has KVM.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=build
groups=()
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	*) groups+=("$1"); shift ;;
	esac
done
[ ${#groups[@]} -gt 0 ] || groups=(unit fuzz kvm e2e)
cd "$here"
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
total_pass=0 total_fail=0 total_skip=0
failed_names=()
notes=()

# Counts one failure that no test program reported (a missing group, an unusable /dev/kvm).
fail_group() { # name reason
	echo "FAIL $1: $2"
	failed_names+=("$1: $2")
	total_fail=$((total_fail + 1))
}

# Counts PASS/FAIL/SKIP lines of one test program's output; a program that crashes or
# exits non-zero without printing a FAIL line counts as one failure of its own.
tally() { # name status outfile
	local name=$1 status=$2 out=$3 p f s
	p=$(grep -c '^PASS ' "$out" || true)
	f=$(grep -c '^FAIL ' "$out" || true)
	s=$(grep -c '^SKIP ' "$out" || true)
	if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL $name: exited with status $status without reporting a failed test"
		f=$((f + 1))
	fi
	while read -r line; do failed_names+=("$name: ${line#FAIL }"); done < <(grep '^FAIL ' "$out")
	[ "$status" -ne 0 ] && [ "$(grep -c '^FAIL ' "$out")" -eq 0 ] && failed_names+=("$name: exit status $status")
	total_pass=$((total_pass + p)) total_fail=$((total_fail + f)) total_skip=$((total_skip + s))
	printf '%-40s %3d passed, %d failed, %d skipped\n' "$name" "$p" "$f" "$s"
}

run_bins() { # group
	local g=$1 b out n=0
	for b in "$build"/tests/"$g"/test_*; do
		[ -x "$b" ] || continue
		n=$((n + 1))
		out="$log/$(basename "$b").out"
		timeout 600 "$b" >"$out" 2>&1
		local st=$?
		[ "${VERBOSE:-0}" = 1 ] && cat "$out"
		grep -E '^(FAIL|SKIP|    )' "$out" | sed 's/^/    /'
		tally "$g/$(basename "$b")" $st "$out"
	done
	[ $n -gt 0 ] || fail_group "$g" "no test programs in $build/tests/$g (not built?)"
}

for g in "${groups[@]}"; do
	echo "=== $g ==="
	case "$g" in
	unit) run_bins unit ;;
	fuzz)
		# The fuzz targets, replaying fuzz/seeds/<target>/ and then deterministic mutations of
		# those seeds (fuzz/replay.c). A failing input is left in $build/fuzz/<target>.crash.
		n=0
		for b in "$build"/fuzz/fuzz_*; do
			t=$(basename "$b")
			case "$t" in *.*) continue ;; esac # reproducers and other files
			[ -x "$b" ] || continue
			n=$((n + 1))
			out="$log/$t.out"
			seeds=()
			[ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
			timeout 600 "$b" --random "${FUZZ_RUNS:-20000}" --seed "${FUZZ_SEED:-1}" \
				--crash-file "$build/fuzz/$t.crash" "${seeds[@]}" >"$out" 2>&1
			st=$?
			[ "${VERBOSE:-0}" = 1 ] && cat "$out"
			[ $st -ne 0 ] && tail -n 30 "$out" | sed 's/^/    /'
			tally "fuzz/$t" $st "$out"
		done
		[ $n -gt 0 ] || fail_group fuzz "no fuzz targets in $build/fuzz (not built?)"
		;;
	kvm)
		dev=${EMBER_TESTS_KVM_DEVICE:-/dev/kvm}
		# Opening it (not only its mode bits) is the test: root passes -r/-w on anything.
		if [ -c "$dev" ] && { exec 3<>"$dev"; } 2>/dev/null; then
			exec 3>&-
		elif [ "${EMBER_TESTS_ALLOW_NO_KVM:-0}" = 1 ]; then
			echo "!!! $dev is not usable here: the KVM tests skip (EMBER_TESTS_ALLOW_NO_KVM=1)"
			notes+=("KVM NOT TESTED: $dev is not usable and EMBER_TESTS_ALLOW_NO_KVM=1")
		else
			fail_group kvm "$dev is not usable (set EMBER_TESTS_ALLOW_NO_KVM=1 to allow)"
		fi
		run_bins kvm
		;;
	e2e)
		out="$log/e2e.out"
		tests/e2e/run.sh --build "$build" >"$out" 2>&1
		st=$?
		cat "$out"
		tally "e2e" $st "$out"
		;;
	*) echo "unknown test group: $g" >&2; exit 2 ;;
	esac
done

echo
if [ ${#failed_names[@]} -gt 0 ]; then
	echo "Failures:"
	printf '  %s\n' "${failed_names[@]}"
fi
[ ${#notes[@]} -gt 0 ] && printf '%s\n' "${notes[@]}"
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
