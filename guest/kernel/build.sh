#!/bin/sh
# Builds ember's guest kernel from Debian's linux-source-6.1, cached.
#
#   guest/kernel/build.sh [OUTDIR]     (default OUTDIR: build/guest under the repo root)
#
# Output: OUTDIR/vmlinux (ELF with the PVH entry note; what ember boots) and OUTDIR/bzImage.
# The tree is built in ${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}/kernel/<key>,
# key = hash of (config fragment, this script, the source tarball's identity, the compiler).
# A second run with the same key only copies. Env: EMBER_KERNEL_JOBS (default nproc),
# EMBER_KERNEL_KEEP_TREE=1 keeps the built source tree in the cache (default: removed, ~1.5 GB).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fragment="$here/ember.config"
script="$here/build.sh"
tarball=${EMBER_KERNEL_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
outdir=${1:-$root/build/guest}
case "$outdir" in /*) ;; *) outdir="$(pwd)/$outdir" ;; esac

die() {
	echo "guest/kernel/build.sh: error: $*" >&2
	exit 1
}
log() { echo "guest/kernel/build.sh: $*" >&2; }

[ -r "$tarball" ] || die "$tarball not found: install the Debian package linux-source-6.1 (apt-get install linux-source-6.1)"
for tool in make gcc bc flex bison readelf sha256sum tar xz; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; kernel build deps: apt-get install build-essential bc flex bison libelf-dev libssl-dev xz-utils"
done
[ -e /usr/include/libelf.h ] || [ -e /usr/include/gelf.h ] || die "libelf headers missing: apt-get install libelf-dev"
[ -e /usr/include/openssl/ssl.h ] || die "OpenSSL headers missing: apt-get install libssl-dev"

cache=${EMBER_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ember}/kernel
tar_id=$(stat -c '%n %s %Y' "$tarball")
pkg_id=$(dpkg-query -W -f '${Package} ${Version}' linux-source-6.1 2>/dev/null || true)
cc_id=$(gcc --version | head -n 1)
key=$( (cat "$fragment" "$script"; echo "$tar_id"; echo "$pkg_id"; echo "$cc_id") | sha256sum | cut -c1-16)
dir="$cache/$key"

# Every CONFIG_X=v in the fragment must hold in the final .config, every "is not set" must not be y.
verify_config() {
	cfg=$1
	bad=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			grep -qxF "$line" "$cfg" || {
				have=$(grep -E "^(# )?${line%%=*}[= ]" "$cfg" || echo "${line%%=*} absent")
				log "config mismatch: wanted $line, have: $have"
				bad=1
			}
			;;
		"# CONFIG_"*" is not set")
			opt=${line#\# }
			opt=${opt%% *}
			if grep -qx "$opt=[ym]" "$cfg"; then
				log "config mismatch: wanted $opt off, have: $(grep -x "$opt=.*" "$cfg")"
				bad=1
			fi
			;;
		esac
	done <"$fragment"
	if grep -q '=m$' "$cfg"; then
		log "modules in config: $(grep '=m$' "$cfg" | tr '\n' ' ')"
		bad=1
	fi
	[ $bad = 0 ] || die "the built .config lacks required options (see above): fix guest/kernel/ember.config"
}

verify_pvh() {
	notes=$(readelf -n "$1" 2>/dev/null) || die "$1 is not an ELF file"
	# XEN_ELFNOTE_PHYS32_ENTRY = 18; binutils names it, older ones print the number.
	echo "$notes" | grep -Eq 'XEN_ELFNOTE_PHYS32_ENTRY|Unknown note type: \(0x00000012\)|NT_VERSION.*0x12' ||
		die "$1 has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): is CONFIG_PVH=y?"
}

copy_out() {
	mkdir -p "$outdir"
	for f in vmlinux bzImage config; do
		dst=$f
		[ $f = config ] && dst=kernel.config
		cp -f "$dir/$f" "$outdir/.$dst.tmp.$$"
		mv -f "$outdir/.$dst.tmp.$$" "$outdir/$dst"
	done
	log "kernel $key -> $outdir/vmlinux, $outdir/bzImage"
}

mkdir -p "$cache"
exec 9>"$cache/.lock-$key"
flock 9

if [ -f "$dir/done" ]; then
	copy_out
	exit 0
fi

rm -rf "$dir"
work="$dir.tmp"
rm -rf "$work"
mkdir -p "$work"
log "building kernel $key in $work (first time: several minutes)"
tar -xJf "$tarball" -C "$work"
src="$work/linux-source-6.1"
[ -f "$src/Makefile" ] || die "unexpected layout in $tarball (no linux-source-6.1/Makefile)"

jobs=${EMBER_KERNEL_JOBS:-$(nproc)}
buildlog="$work/build.log"
# Quiet unless something fails: then the end of the log says why.
run_logged() {
	if ! "$@" >>"$buildlog" 2>&1; then
		tail -n 40 "$buildlog" >&2
		die "'$*' failed (full log: $buildlog)"
	fi
}
# Append the fragment, then let olddefconfig resolve dependencies (what merge_config.sh does;
# its "override" warnings are expected).
run_logged make -C "$src" ARCH=x86_64 tinyconfig
cat "$fragment" >>"$src/.config"
run_logged make -C "$src" ARCH=x86_64 olddefconfig
verify_config "$src/.config"
run_logged make -C "$src" -s ARCH=x86_64 -j"$jobs" bzImage
verify_config "$src/.config"
verify_pvh "$src/vmlinux"

mkdir -p "$dir"
cp "$src/vmlinux" "$src/arch/x86/boot/bzImage" "$dir/"
cp "$src/.config" "$dir/config"
if [ "${EMBER_KERNEL_KEEP_TREE:-0}" = 1 ]; then
	mv "$src" "$dir/tree"
fi
rm -rf "$work"
echo "$key" >"$dir/done"
copy_out
