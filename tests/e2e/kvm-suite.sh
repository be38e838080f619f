#!/bin/sh
# Runs the KVM test programs (tests/kvm, built static) found in DIR/tests/kvm, one after the
# other, with DIR/ember as the CLI they drive. Used by run.sh inside the TCG test host, whose
# KVM is kvm-amd on emulated SVM under Debian 12's kernel, where this host's KVM may be another
# kind (PVM here). POSIX sh: it runs under busybox.
#
#   sh kvm-suite.sh DIR [PREFIX]
#
# Every result line comes out as "PASS PREFIX:PROGRAM/TEST" (likewise FAIL and SKIP; details
# stay indented). A program that exits non-zero without a FAIL line, or hangs past
# E2E_PROG_TIMEOUT seconds (default 300), is one failure. Exit status: 1 on any failure.
set -u
# test_vm_cycles runs 1000 VMs on a direct host in about 4 s; here each takes about 180 ms.
export EMBER_TEST_VM_CYCLES="${EMBER_TEST_VM_CYCLES:-100}"
dir=${1:?usage: kvm-suite.sh DIR [PREFIX]}
prefix=${2:-svm}
status=0
found=0
for b in "$dir"/tests/kvm/test_*; do
	[ -x "$b" ] || continue
	found=1
	name=${b##*/}
	out=/tmp/kvm-suite-$name.out
	timeout "${E2E_PROG_TIMEOUT:-300}" "$b" >"$out" 2>&1
	rc=$?
	sed -n -E "s#^(PASS|FAIL|SKIP) #\\1 $prefix:$name/#p; /^    /p" "$out"
	if [ "$rc" -ne 0 ]; then
		status=1
		if ! grep -q '^FAIL ' "$out"; then
			echo "FAIL $prefix:$name: exited with status $rc without reporting a failed test"
			tail -n 20 "$out" | sed 's/^/    /'
		fi
	fi
	rm -f "$out"
done
if [ "$found" -eq 0 ]; then
	echo "FAIL $prefix:kvm_suite: no test programs in $dir/tests/kvm"
	status=1
fi
exit "$status"
