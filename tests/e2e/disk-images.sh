#!/bin/sh
# Makes the disk images of the virtio-blk scenarios (scenarios.sh, "disks"): mkfs.ext4 -d needs
# e2fsprogs, which the TCG test host lacks, so tests/e2e/run.sh runs this where it starts and
# passes the directory in as BLK_ASSETS.
#
#   tests/e2e/disk-images.sh OUTDIR ROOTFS
#
# OUTDIR/data.img     ext4 (16 MiB) made from OUTDIR/data/: a text file, 300 KiB of random
#                     bytes and a file in a subdirectory
# OUTDIR/data.sha256  `sha256sum` of those files, relative paths, as the guest prints them
# OUTDIR/root.img     ext4 (32 MiB) made from ROOTFS plus /ember-root-disk (a marker file)
set -eu
out=$1 rootfs=$2
command -v mkfs.ext4 >/dev/null 2>&1 || PATH=$PATH:/sbin:/usr/sbin
command -v mkfs.ext4 >/dev/null 2>&1 || { echo "disk-images.sh: mkfs.ext4 not found (Debian package e2fsprogs)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/data/sub" "$out/root"
echo "hello from an ext4 disk" >"$out/data/hello.txt"
head -c 307200 /dev/urandom >"$out/data/random.bin"
printf 'nested\n' >"$out/data/sub/nested.txt"
(cd "$out/data" && sha256sum hello.txt random.bin sub/nested.txt) >"$out/data.sha256"
truncate -s 16M "$out/data.img"
mkfs.ext4 -q -F -E root_owner=0:0 -d "$out/data" "$out/data.img"
cp -a "$rootfs/." "$out/root/"
echo root-disk-marker >"$out/root/ember-root-disk"
truncate -s 32M "$out/root.img"
mkfs.ext4 -q -F -E root_owner=0:0 -d "$out/root" "$out/root.img"
rm -rf "$out/root"
