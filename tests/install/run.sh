#!/usr/bin/env bash
# `make install` as a user runs it, and what the installed tree can do.
#
#   tests/install/run.sh [--build DIR]
#
# Installs (PREFIX=/usr/local, DESTDIR=a scratch directory) and checks:
#   install_files          the library, headers, pkg-config file, CLI, man page, guest kernel
#                          and default root are where they belong
#   install_cli_default_guest   the installed `ember run -- CMD` (no --kernel, no --rootfs)
#                          boots the installed guest
#   install_pkg_config_program  a program built with `pkg-config --cflags --libs ember`
#                          against the installed tree runs a VM with the library's defaults
#   uninstall_removes_all  `make uninstall` leaves no file behind
# The two runs go through the TCG test host where this host cannot run Linux guests: the
# installed tree is copied to /usr/local there, with the C library the programs need.
# Prints PASS/FAIL lines and "N passed, N failed, N skipped"; exit status 1 on any failure.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=build
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	*) echo "tests/install/run.sh: unknown argument: $1" >&2; exit 2 ;;
	esac
done
case "$build" in /*) ;; *) build="$root/$build" ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ember-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest prefix=/usr/local
passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); [ -z "${3:-}" ] || sed 's/^/    /' "$3" | tail -n 20; }
finish() { echo "$passed passed, $failed failed, 0 skipped"; [ "$failed" = 0 ]; exit; }

if ! make -C "$root" -s BUILD="$build" PREFIX="$prefix" DESTDIR="$dest" install >"$tmp/make.log" 2>&1; then
	fail install_files "make install failed" "$tmp/make.log"
	finish
fi
inst=$dest$prefix
missing=''
for f in lib/libember.so.0 lib/libember.so lib/libember.a include/ember/ember.h \
	include/ember/kvm.h include/ember/guest_abi.h lib/pkgconfig/ember.pc bin/ember \
	share/man/man1/ember.1 lib/ember/guest/vmlinux lib/ember/rootfs/bin/busybox \
	lib/ember/rootfs/etc/passwd; do
	[ -e "$inst/$f" ] || missing="$missing $f"
done
if [ -n "$missing" ]; then fail install_files "missing:$missing"; else pass install_files; fi

# The program, built only from what pkg-config says about the installed tree.
pc() { PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$inst/lib/pkgconfig pkg-config "$@" ember; }
if ! cc -o "$tmp/prog" "$root/tests/install/prog.c" $(pc --cflags) $(pc --libs) >"$tmp/cc.log" 2>&1; then
	fail install_pkg_config_program "cc with \`pkg-config --cflags --libs ember\` failed" "$tmp/cc.log"
fi

run_cmd='/usr/local/bin/ember run -- /bin/true && echo cli-true-ok
/usr/local/bin/ember run -- sh -c "echo hello from the installed guest"
LD_LIBRARY_PATH=/usr/local/lib ./prog'
if grep -Eqw 'vmx|svm' /proc/cpuinfo && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	# Here the tree stays in DESTDIR: the CLI finds the guest beside its bin/, the library
	# through EMBER_KERNEL / EMBER_ROOTFS (its built-in default is the real /usr/local).
	(cd "$tmp" && EMBER_KERNEL=$inst/lib/ember/guest/vmlinux EMBER_ROOTFS=$inst/lib/ember/rootfs \
		sh -c "${run_cmd//\/usr\/local/$inst}") >"$tmp/out" 2>"$tmp/err"
else
	files=(--file "$inst:inst" --file "$tmp/prog:prog")
	# The C library of the two dynamic programs, at the same paths as here.
	for lib in $(ldd "$inst/bin/ember" "$tmp/prog" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
		case "$lib" in "$dest"*) continue ;; esac
		[ -e "$lib" ] && files+=(--file "$(readlink -f "$lib"):sysroot$lib")
	done
	"$root/scripts/tcg-host/run.sh" --no-stdin "${files[@]}" -- sh -c \
		"cp -a /payload/sysroot/. / && mkdir -p /usr/local && cp -a /payload/inst/. /usr/local/ && $run_cmd" \
		>"$tmp/out" 2>"$tmp/err"
fi
if grep -qx cli-true-ok "$tmp/out" && grep -qx 'hello from the installed guest' "$tmp/out"; then
	pass install_cli_default_guest
else
	cat "$tmp/out" >>"$tmp/err"
	fail install_cli_default_guest "the installed ember did not boot the installed guest" "$tmp/err"
fi
if [ -x "$tmp/prog" ]; then
	if grep -qx 'from the installed library' "$tmp/out" && grep -qx 'prog: exit 7' "$tmp/out"; then
		pass install_pkg_config_program
	else
		fail install_pkg_config_program "the program did not run its VM" "$tmp/err"
	fi
fi

make -C "$root" -s BUILD="$build" PREFIX="$prefix" DESTDIR="$dest" uninstall >"$tmp/make.log" 2>&1
left=$(find "$dest" ! -type d | head -n 5)
if [ -n "$left" ]; then fail uninstall_removes_all "left behind: $(echo $left)"; else pass uninstall_removes_all; fi
finish
