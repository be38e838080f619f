#!/usr/bin/env python3
"""Writes the seed inputs in fuzz/seeds/<target>/ (checked in; rerun after changing a target's
input format). Each seed is a well-formed input that takes its target deep: mutations of it
(fuzz/replay.c, or libFuzzer) then explore the hostile variations around it."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(here, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


# fuzz_kernel_image: a minimal bzImage (boot protocol 2.15) and a minimal PVH ELF.
bz = bytearray(5 * 512 + 4096)
bz[0x1f1] = 4
struct.pack_into("<I", bz, 0x1f4, 4096 // 16)
struct.pack_into("<H", bz, 0x1fe, 0xAA55)
bz[0x200:0x202] = b"\xeb\x6a"
bz[0x202:0x206] = b"HdrS"
struct.pack_into("<H", bz, 0x206, 0x020F)
bz[0x211] = 1
struct.pack_into("<IIBBHI", bz, 0x22C, 0x7FFFFFFF, 0x200000, 1, 0, 1, 2047)
struct.pack_into("<Q", bz, 0x258, 0x1000000)
struct.pack_into("<I", bz, 0x260, 4 << 20)
write("fuzz_kernel_image", "synthetic-bzimage", bz)
el = bytearray(4096 + 4096)
el[0:7] = b"\x7fELF\x02\x01\x01"
struct.pack_into("<HHIQQQIHHHHHH", el, 16, 2, 62, 1, 0x1000000, 64, 0, 0, 64, 56, 2, 64, 0, 0)
struct.pack_into("<IIQQQQQQ", el, 64, 1, 5, 4096, 0, 0x1000000, 4096, 8192, 4096)
struct.pack_into("<IIQQQQQQ", el, 120, 4, 4, 512, 0, 0, 24, 24, 4)
struct.pack_into("<III4sQ", el, 512, 4, 8, 18, b"Xen\0", 0x1000010)
write("fuzz_kernel_image", "synthetic-pvh", el)

# fuzz_virtq: 8 entries, indirect allowed; a two-descriptor chain (read 64, write 32) and an
# indirect one, both made available.
q = bytearray(8)
q[0], q[1], q[6] = 3, 1, 8
ram = bytearray(1024)
struct.pack_into("<QIHH", ram, 0, 0x8000, 64, 1, 1)  # desc 0: read, NEXT -> 1
struct.pack_into("<QIHH", ram, 16, 0x9000, 32, 2, 0)  # desc 1: write
struct.pack_into("<QIHH", ram, 32, 0x300, 32, 4, 0)  # desc 2: indirect table of 2 at 0x300
struct.pack_into("<QIHH", ram, 0x300, 0xA000, 16, 1, 1)
struct.pack_into("<QIHH", ram, 0x310, 0xB000, 16, 2, 0)
avail = 8 * 16
struct.pack_into("<HHHH", ram, avail, 0, 2, 0, 2)
write("fuzz_virtq", "two-chains", q + ram)

# fuzz_virtq, RAM split by the gap (256 KiB low, 256 KiB from 4 GiB): rings in high RAM (header
# byte 7 bit 0), buffers on both sides and at each range's very ends: the last bytes below the
# gap, the first at 4 GiB, the last of high RAM, and an indirect table in high RAM pointing low.
LOW, HIGH_AT, HIGH = 256 << 10, 4 << 30, 256 << 10
q = bytearray(8)
q[0], q[1], q[6], q[7] = 3, 1, 8, 1
ram = bytearray(1024)
struct.pack_into("<QIHH", ram, 0, LOW - 64, 64, 1, 1)  # desc 0: read, last 64 bytes below the gap
struct.pack_into("<QIHH", ram, 16, HIGH_AT, 32, 3, 2)  # desc 1: write, first bytes at 4 GiB
struct.pack_into("<QIHH", ram, 32, HIGH_AT + HIGH - 48, 48, 2, 0)  # desc 2: write, high's end
struct.pack_into("<QIHH", ram, 48, HIGH_AT + 0x300, 32, 4, 0)  # desc 3: indirect table
struct.pack_into("<QIHH", ram, 0x300, 0x1000, 16, 1, 1)  # low, read
struct.pack_into("<QIHH", ram, 0x310, HIGH_AT + 0x8000, 16, 2, 0)  # high, write
struct.pack_into("<QIHH", ram, 64, LOW - 1, 1, 0, 0)  # desc 4: the very last byte below the gap
avail = 8 * 16
struct.pack_into("<HHHHH", ram, avail, 0, 3, 0, 3, 4)
write("fuzz_virtq", "split-ram-edges", q + ram)
# the same chains with the rings in low RAM
q[7] = 0
write("fuzz_virtq", "split-ram-edges-low-rings", q + ram)

# fuzz_virtio_console: the opcodes of fuzz/fuzz_virtio_console.c.
SETUP, POST, CTRL, RUN, STDIN, MEMW = 6, 7, 8, 4, 9, 3


def post(queue, gpa, length, writable):
    return [POST, queue, 0, *gpa.to_bytes(3, "little"), *length.to_bytes(2, "little"),
            2 if writable else 0]


def ctrl(port, event, value):
    return [CTRL, port, *struct.pack("<HH", event, value)]


p = [SETUP, *struct.pack("<I", (1 << 1) | (1 << 28)), 1, 6]
for i in range(4):
    p += post(2, 0x200000 + i * 0x200, 512, True)  # control rx
for queue in (0, 4, 6):
    p += post(queue, 0x210000 + queue * 0x1000, 4096, True)
p += ctrl(0, 0, 1) + [RUN]  # DEVICE_READY
for port in range(3):
    p += ctrl(port, 3, 1)  # PORT_READY
p += [RUN] + ctrl(0, 6, 1)  # PORT_OPEN stdin
p += [STDIN, 5, *b"hello", RUN]
p += [MEMW, *(0x220000).to_bytes(3, "little"), 6, *b"output"]
p += post(5, 0x220000, 6, False) + [RUN]  # stdout tx
p += post(7, 0x220000, 6, False) + [RUN]  # stderr tx
p += [STDIN, 0, RUN]  # EOF
write("fuzz_virtio_console", "bring-up-and-streams", p)

# fuzz_virtio_blk: the opcodes of fuzz/fuzz_virtio_blk.c. First byte: read-only (bit 0).
B_SETUP, B_REQ, B_RUN, B_MEMW, B_RAW = 6, 7, 4, 3, 9
B_IN, B_OUT, B_FLUSH, B_GETID, B_DISC, B_WZ = 0, 1, 2, 3, 4, 5  # indices into its type table


def breq(type_index, sector, segs):
    r = [B_REQ, type_index, *sector.to_bytes(2, "little"), len(segs)]
    for gpa, sectors, plain16, writable in segs:
        r += [*gpa.to_bytes(3, "little"), sectors, 0 if plain16 else 1, 2 if writable else 0]
    return r


for ro in (0, 1):
    # VERSION_1 | INDIRECT_DESC | SIZE_MAX | SEG_MAX | BLK_SIZE | FLUSH | DISCARD | WRITE_ZEROES
    feats = (1 << 28) | (1 << 1) | (1 << 2) | (1 << 6) | (1 << 9) | (1 << 13) | (1 << 14)
    p = [ro, B_SETUP, *struct.pack("<I", feats), 1, 8]
    p += breq(B_OUT, 8, [(0x300000, 8, False, False)]) + [B_RUN]
    p += breq(B_IN, 8, [(0x301000, 4, False, True), (0x302000, 4, False, True)]) + [B_RUN]
    p += breq(B_FLUSH, 0, []) + breq(B_GETID, 0, [(0x303000, 0, True, True)]) + [B_RUN]
    p += [B_MEMW, *(0x304000).to_bytes(3, "little"), 16, *struct.pack("<QII", 16, 64, 0)]
    p += breq(B_DISC, 0, [(0x304000, 0, True, False)])
    p += breq(B_WZ, 0, [(0x304000, 0, True, False)]) + [B_RUN]
    p += breq(B_IN, 0xffff, [(0x301000, 1, False, True)]) + [B_RUN]
    write("fuzz_virtio_blk", "rw-requests" if ro == 0 else "ro-requests", p)

# fuzz_legacy_devices: op byte = write (bit 0) | (length - 1) << 1 | port group << 4 | MMIO (bit
# 7), then a 32-bit value, then the offset (MMIO: 2 bytes from IOAPIC - 0x200; port: 1 byte,
# base + b % 16 - 4).


def mmio(write, length, value, off):
    return [0x80 | write | (length - 1) << 1, *struct.pack("<IH", value, 0x200 + off)]


def pio(group, write, length, value, delta=0):
    return [write | (length - 1) << 1 | group << 4, *struct.pack("<I", value), 4 + delta]


p = []
for pin, vector in ((4, 0x31), (5, 0x30), (1, 0x32)):
    p += mmio(1, 4, 0x10 + 2 * pin + 1, 0) + mmio(1, 4, 0, 0x10)  # destination 0
    p += mmio(1, 4, 0x10 + 2 * pin, 0) + mmio(1, 4, vector, 0x10)  # fixed, edge, unmasked
    p += mmio(1, 4, 0x10 + 2 * pin, 0) + mmio(0, 4, 0, 0x10)  # read it back
p += mmio(1, 4, 1, 0) + mmio(0, 4, 0, 0x10)  # version
for ch in b"hi\n":
    p += pio(0, 1, 1, ch)  # COM1 THR
p += pio(0, 1, 1, 0x0F, 1) + pio(0, 0, 1, 0, 2) + pio(0, 0, 1, 0, 5)  # IER, IIR, LSR
p += pio(2, 0, 4, 0) + pio(2, 1, 4, 0x01000001) + pio(2, 1, 4, 0x02000000)  # magic, init, exec
p += pio(1, 1, 1, 0xFE, 4)  # i8042 reset (port 0x64)
p += pio(2, 1, 4, 0x03000007)  # exit 7
write("fuzz_legacy_devices", "program-and-report", p)

# fuzz_virtio_balloon: the opcodes of fuzz/fuzz_virtio_balloon.c. The first byte is the
# configuration's flags. Addresses go through take_gpa: selector 0 is low RAM from 0x200000,
# 1 the high region.
B_REGW, B_REGR, B_MEMW, B_RUN, B_SETUP, B_POST, B_PFNS, B_TARGET, B_TICK = 0, 1, 3, 4, 6, 7, 8, 9, 10


def b_post(queue, sel, off, length, writable):
    return [B_POST, queue, 0, sel, *off.to_bytes(3, "little"), *length.to_bytes(3, "little"),
            2 if writable else 0]


def b_pfns(queue, offs):
    out = [B_PFNS, queue, len(offs) - 1]
    for off in offs:
        out += [0, 0, *off.to_bytes(3, "little")]  # kind 0, selector 0: a page of low RAM
    return out + [0]


stats = b"".join(struct.pack("<HQ", tag, val)
                 for tag, val in ((5, 200 << 20), (4, 50 << 20), (6, 120 << 20)))
for name, flags, feats in (("stats-reporting", 0, (1 << 1) | (1 << 5)),
                           ("deflate-on-oom-poison", 1, (1 << 1) | (1 << 2) | (1 << 4) | (1 << 5))):
    p = [flags, B_SETUP, feats, 1, 6]
    # the stats buffer at 0x200000 (MEMW reaches 0x80000 + up to 0x380000)
    p += [B_MEMW, *(0x200000 - 0x80000).to_bytes(3, "little"), len(stats), *stats]
    p += b_post(2, 0, 0, len(stats), False) + [B_RUN]
    p += b_pfns(0, [0x180000 + i * 0x1000 for i in range(8)]) + [B_RUN]
    p += b_post(3, 0, 0x100000, 0x100000, True) + [B_RUN]
    p += b_post(3, 1, 0, 0x200000, True) + [B_RUN]
    p += b_pfns(1, [0x180000 + i * 0x1000 for i in range(4)]) + [B_RUN]
    p += [B_TARGET, 8, B_RUN, B_REGR, 0x00, 0x01, B_REGW, 0x04, 0x01, 0x00, 0x08, 0, 0]
    p += [B_REGW, 0x0c, 0x01, 0, 0, 0, 0, B_TICK, B_RUN]
    write("fuzz_virtio_balloon", name, p)
