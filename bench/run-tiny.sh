#!/bin/sh
# Builds and runs bench/tiny_boot (ember vs QEMU microvm on this host's /dev/kvm, tiny guest).
#
#   bench/run-tiny.sh [--quiet-load L] [--wait SECS] [tiny_boot options...]
#
#   --quiet-load L  first wait until the 1-minute load average is below L (default 0.5): the
#                   numbers are milliseconds, and a busy machine (a kernel build, a TCG test
#                   host) inflates them several times over
#   --wait SECS     give up waiting after SECS (default 600) and run anyway, saying so
# Other options go to build/bench/tiny_boot (see its --help: -n, -w, -m, --raw, ...).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quiet=0.5 wait_s=600
while [ $# -gt 0 ]; do
	case "$1" in
	--quiet-load) quiet=$2; shift 2 ;;
	--wait) wait_s=$2; shift 2 ;;
	*) break ;;
	esac
done
make -j2 build/ember build/bench/tiny_boot >/dev/null
waited=0
while awk -v q="$quiet" '{ exit !($1 >= q) }' /proc/loadavg; do
	if [ "$waited" -ge "$wait_s" ]; then
		echo "run-tiny: load still $(cut -d' ' -f1-3 /proc/loadavg) after ${waited}s: running anyway (numbers inflated)"
		break
	fi
	sleep 10
	waited=$((waited + 10))
done
echo "run-tiny: $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec build/bench/tiny_boot "$@"
