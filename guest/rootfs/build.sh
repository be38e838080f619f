#!/bin/sh
# Assembles ember's default guest root directory from Debian's busybox-static.
#
#   guest/rootfs/build.sh [OUTDIR]     (default OUTDIR: build/rootfs under the repo root)
#
# Contents: bin/busybox, a symlink per applet at its usual path (busybox --list-full),
# etc/{passwd,group,hostname,hosts}, and empty proc sys dev tmp run root.
# Idempotent: rerunning only fixes what differs. Env: EMBER_BUSYBOX (default /bin/busybox).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
busybox=${EMBER_BUSYBOX:-/bin/busybox}
outdir=${1:-$root/build/rootfs}

die() {
	echo "guest/rootfs/build.sh: error: $*" >&2
	exit 1
}

[ -x "$busybox" ] || die "$busybox not found: install the Debian package busybox-static (apt-get install busybox-static)"
# A dynamically linked busybox would need its libraries inside the guest.
if command -v readelf >/dev/null 2>&1 && readelf -l "$busybox" 2>/dev/null | grep -q 'INTERP'; then
	die "$busybox is dynamically linked: install busybox-static (not busybox)"
fi
applets=$("$busybox" --list-full) || die "$busybox --list-full failed"

mkdir -p "$outdir"
cd "$outdir"
mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp run root
chmod 1777 tmp
chmod 0700 root
chmod 0755 bin sbin usr usr/bin usr/sbin etc proc sys dev run

if ! cmp -s "$busybox" bin/busybox; then
	cp "$busybox" bin/.busybox.tmp
	chmod 0755 bin/.busybox.tmp
	mv -f bin/.busybox.tmp bin/busybox
fi

# Relative links, so the tree also reads correctly from the host. Only missing or wrong links
# are (re)made: one find instead of a readlink per applet keeps reruns fast.
want=$(for path in $applets; do
	case "$path" in
	*/ | linuxrc | bin/busybox) continue ;;
	bin/*) echo "$path busybox" ;;
	sbin/*) echo "$path ../bin/busybox" ;;
	usr/bin/* | usr/sbin/*) echo "$path ../../bin/busybox" ;;
	esac
done
echo "bin/sh busybox")
have=$(find bin sbin usr/bin usr/sbin -type l -printf '%p %l\n')
echo "$want" | sort -u | grep -vxF -e "$have" | while read -r path target; do
	ln -sfn "$target" "$path"
done

write() { # file mode content: rewritten only when it differs
	if [ ! -f "$1" ] || [ "$(cat "$1")" != "$3" ]; then
		printf '%s\n' "$3" >"$1"
	fi
	chmod "$2" "$1"
}
write etc/passwd 0644 'root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false'
write etc/group 0644 'root:x:0:
tty:x:5:
nobody:x:65534:'
write etc/hostname 0644 'ember'
write etc/hosts 0644 '127.0.0.1	localhost
::1	localhost'

echo "guest/rootfs/build.sh: root directory in $outdir ($(echo "$applets" | wc -l) applets)" >&2
