#!/usr/bin/env bash
# Prepares the TCG test host ("L1"): a stock Debian cloud kernel plus the modules that give it
# a real, SVM-backed /dev/kvm when QEMU's TCG emulates an AMD CPU with +svm,+npt.
#
#   scripts/tcg-host/prepare.sh [--refresh]
#
# Prints the prepared directory on stdout (everything else goes to stderr):
#   DIR/vmlinuz        the L1 kernel
#   DIR/vmlinux        the same kernel as a PVH ELF, when it can be extracted (boots faster)
#   DIR/modules/*.ko   irqbypass, kvm, kvm-amd, virtio_pci, virtio_blk and whatever else they
#                      depend on, uncompressed
#   DIR/load-order     module file names, one a line, dependencies first
#   DIR/kernel-version
# The result is cached under ${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/tcg-host/;
# a second run only checks that the cache is complete. --refresh looks for a newer kernel package.
# EMBER_TCG_KERNEL_DEB=/path/to/linux-image-*.deb uses that package instead of downloading one.
set -euo pipefail

refresh=0
for arg in "$@"; do
	case "$arg" in
	--refresh) refresh=1 ;;
	-h | --help)
		sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "prepare.sh: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

die() {
	echo "tcg-host: $*" >&2
	exit 1
}

# The tools run.sh needs too, so that one check covers both scripts.
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v cpio >/dev/null || missing+=(cpio)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
busybox=${EMBER_TCG_BUSYBOX:-/bin/busybox}
# L1 has no shared libraries, so the busybox it gets must be the static build.
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
	missing+=(busybox-static)
fi
if [ ${#missing[@]} -gt 0 ]; then
	die "missing Debian packages: ${missing[*]} (install them with: apt-get install ${missing[*]})"
fi

cache=${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/tcg-host
mkdir -p "$cache"

is_complete() { # dir
	[ -s "$1/vmlinuz" ] && [ -s "$1/load-order" ] && [ -s "$1/kernel-version" ] || return 1
	local m
	while read -r m; do [ -s "$1/modules/$m" ] || return 1; done <"$1/load-order"
	# virtio-blk (run.sh --disk) came later: a cache without it is prepared again.
	grep -qx 'virtio_blk.ko' "$1/load-order"
}

if [ "$refresh" = 0 ] && [ -z "${EMBER_TCG_KERNEL_DEB:-}" ] && [ -L "$cache/current" ] &&
	is_complete "$cache/current"; then
	readlink -f "$cache/current"
	exit 0
fi

# One preparation at a time; whoever waited finds the cache complete.
exec 9>"$cache/.lock"
flock 9
if [ "$refresh" = 0 ] && [ -z "${EMBER_TCG_KERNEL_DEB:-}" ] && [ -L "$cache/current" ] &&
	is_complete "$cache/current"; then
	readlink -f "$cache/current"
	exit 0
fi

work=$(mktemp -d "$cache/.prepare.XXXXXX")
trap 'rm -rf "$work"' EXIT

deb=${EMBER_TCG_KERNEL_DEB:-}
if [ -z "$deb" ]; then
	command -v apt-get >/dev/null || die "apt-get not found: set EMBER_TCG_KERNEL_DEB to a linux-image-*-cloud-amd64 .deb"
	# linux-image-cloud-amd64 is a metapackage; the kernel is in the package it depends on.
	resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1; }
	pkg=$(resolve)
	if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
		echo "tcg-host: linux-image-cloud-amd64 not in the package lists; running apt-get update" >&2
		apt-get update -qq >&2 || true
		pkg=$(resolve)
	fi
	[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 (run apt-get update?)"
	echo "tcg-host: downloading $pkg" >&2
	(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
		die "apt-get download $pkg failed"
	deb=$(ls "$work"/*.deb)
fi
[ -f "$deb" ] || die "no such kernel package: $deb"

dpkg-deb -x "$deb" "$work/x"
vmlinuz=$(find "$work/x/boot" -name 'vmlinuz-*' -print -quit 2>/dev/null)
[ -n "$vmlinuz" ] || die "$deb has no /boot/vmlinuz-*"
kver=${vmlinuz##*/vmlinuz-}
moddir="$work/x/lib/modules/$kver"
[ -d "$moddir" ] || die "$deb has no /lib/modules/$kver"

out="$cache/$kver"
rm -rf "$out.new"
mkdir -p "$out.new/modules"

# Module file for a module name: names use '_' where file names may use '-'; newer Debian
# kernels compress modules (.ko.xz / .ko.zst), which busybox insmod may not read, so they are
# decompressed here.
find_module() { # name
	local pattern
	pattern=$(printf '%s' "$1" | sed 's/[-_]/[-_]/g')
	find "$moddir/kernel" -regextype posix-extended \
		-regex ".*/${pattern}\.ko(\.xz|\.zst|\.gz)?" -print -quit
}
add_module() { # name; appends dependencies first
	local name=$1 file base plain dep
	grep -qx "$name" "$work/seen" 2>/dev/null && return 0
	echo "$name" >>"$work/seen"
	file=$(find_module "$name")
	[ -n "$file" ] || die "module $name not found in $deb"
	base=${file##*/}
	case "$base" in
	*.ko.xz) plain=${base%.xz}; xz -dc "$file" >"$out.new/modules/$plain" ;;
	*.ko.zst) plain=${base%.zst}; zstd -qdc "$file" >"$out.new/modules/$plain" ;;
	*.ko.gz) plain=${base%.gz}; gzip -dc "$file" >"$out.new/modules/$plain" ;;
	*) plain=$base; cp "$file" "$out.new/modules/$plain" ;;
	esac
	for dep in $(modinfo -F depends "$out.new/modules/$plain" | tr ',' ' '); do
		add_module "$dep"
	done
	echo "$plain" >>"$out.new/load-order"
}
command -v modinfo >/dev/null || die "modinfo not found (Debian package kmod)"
add_module kvm_amd
# Disks passed in with run.sh --disk: virtio-blk over PCI.
add_module virtio_pci
add_module virtio_blk

cp "$vmlinuz" "$out.new/vmlinuz"

# QEMU boots a PVH ELF kernel directly, skipping the bzImage's real-mode setup and its
# decompression, which under TCG take most of a second. The ELF is the payload of the bzImage;
# find it by the compressor's magic (as the kernel's scripts/extract-vmlinux does).
extract_pvh_elf() { # bzImage out
	local magic tool off
	command -v readelf >/dev/null || return 1
	for magic in '\x02\x21\x4c\x18:lz4 -dc' '\xfd\x37\x7a\x58\x5a\x00:xz -dc' \
		'\x28\xb5\x2f\xfd:zstd -qdc' '\x1f\x8b\x08:gzip -dc'; do
		tool=${magic#*:}
		command -v "${tool%% *}" >/dev/null || continue
		for off in $(LC_ALL=C grep -aobUP "${magic%%:*}" "$1" 2>/dev/null | head -n 3 | cut -d: -f1); do
			tail -c +$((off + 1)) "$1" | $tool >"$2" 2>/dev/null
			# XEN_ELFNOTE_PHYS32_ENTRY (0x12) is the PVH entry point.
			if [ "$(head -c 4 "$2")" = $'\x7fELF' ] &&
				readelf -n "$2" 2>/dev/null | grep -q 'type: (0x00000012)'; then
				return 0
			fi
		done
	done
	rm -f "$2"
	return 1
}
extract_pvh_elf "$vmlinuz" "$out.new/vmlinux" ||
	echo "tcg-host: no PVH ELF found inside $(basename "$vmlinuz"); booting the bzImage" >&2
echo "$kver" >"$out.new/kernel-version"
rm -rf "$out"
mv "$out.new" "$out"
ln -sfn "$kver" "$cache/current"
echo "tcg-host: prepared $kver (modules: $(tr '\n' ' ' <"$out/load-order"))" >&2
echo "$out"
