/* libFuzzer target: a guest that controls every byte of a split virtqueue (descriptor table,
 * available ring, indirect tables, buffers) and the queue configuration, in RAM split by the MMIO
 * gap: 256 KiB below it and 256 KiB from 4 GiB up. Checks, against the target's own list of RAM
 * ranges (not gmem_ptr), that every ring view and every segment the device returns lies inside
 * one range, that a chain read returns the guest's bytes at those addresses, that a chain write
 * and the pushes change no byte but those the write reaches in the writable segments and the
 * used ring, and that every chain respects the bounds.
 *
 * Input: byte 0 log2 queue size (mod 10: also invalid sizes), 1 bit 0 indirect, 2-3 descriptor
 * table offset (16-byte units) in the chosen range, 4 and 5 padding before the avail and the used
 * rings, 6 pops, 7 bit 0 rings in high RAM; the rest is written into that range from the table.
 *
 *   fuzz/run.sh fuzz_virtq [seconds]    libFuzzer (clang)
 *   build/fuzz/fuzz_virtq [--random N] [FILE...]    replay / random inputs (any cc)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/gmem.h"
#include "virtio/virtq.h"

#define LOW     (256u << 10) /* also the gap's start */
#define HIGH    (256u << 10)
#define RAM     (LOW + HIGH)
#define HIGH_AT (4ull << 30)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gmem mem;
static struct virtq_chain chain;
static uint8_t
    may_change[RAM]; /* bytes the device may write: what a chain write reaches, used ring */
static const uint8_t zero[4096];

/* The oracle: the layout, as gmem_init is documented to make it. The offset in the host
 * mapping of [gpa, gpa+len), or -1 if it is not wholly inside one range. */
static int64_t ram_off(uint64_t gpa, uint64_t len)
{
        static const struct {
                uint64_t gpa, end, off;
        } r[] = {{0, LOW, 0}, {HIGH_AT, HIGH_AT + HIGH, LOW}};
        for (unsigned i = 0; i < 2; i++)
                if (gpa >= r[i].gpa && (unsigned __int128)gpa + len <= r[i].end)
                        return (int64_t)(r[i].off + (gpa - r[i].gpa));
        return -1;
}

/* A host view the device holds must be where the oracle puts its guest range. */
static void check_view(const uint8_t *view, uint64_t gpa, uint64_t len)
{
        int64_t off = ram_off(gpa, len);
        if (off < 0 || view != mem.map + off)
                abort();
}

/* Visits the RAM offsets of bytes [from, from+n) of the part made of segments [first, end):
 * the model of where a chain read or write of them goes. Returns the bytes visited. */
static uint64_t part_walk(unsigned first, unsigned end, uint64_t from, uint64_t n,
                          void (*fn)(int64_t off, uint64_t len, uint64_t at, void *ctx), void *ctx)
{
        uint64_t pos = 0, done = 0;
        for (unsigned k = first; k < end && done < n; k++) {
                uint64_t len = chain.seg[k].len, skip = from > pos ? from - pos : 0;
                pos += len;
                if (skip >= len)
                        continue;
                uint64_t take = len - skip < n - done ? len - skip : n - done;
                fn(ram_off(chain.seg[k].gpa, len) + (int64_t)skip, take, done, ctx);
                done += take;
        }
        return done;
}

static void gather(int64_t off, uint64_t len, uint64_t at, void *ctx)
{
        memcpy((uint8_t *)ctx + at, mem.map + off, len);
}

static void allow(int64_t off, uint64_t len, uint64_t at, void *ctx)
{
        memset(may_change + off, 1, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (!mem.map && (gmem_init(&mem, RAM, LOW) < 0 || mem.map_size != RAM))
                abort();
        if (size < 8)
                return 0;
        uint32_t qsize = 1u << (data[0] % 10); /* up to 512: also the invalid sizes */
        bool indirect = data[1] & 1;
        uint64_t base = (data[7] & 1) ? HIGH_AT : 0;
        uint64_t desc = base + (uint64_t)(data[2] | data[3] << 8) * 16;
        uint64_t avail = desc + VIRTQ_DESC_BYTES(qsize) + (data[4] & 0xf) * 2;
        uint64_t used = (avail + VIRTQ_AVAIL_BYTES(qsize) + 3 + (data[5] & 0xf) * 4) & ~3ull;
        unsigned pops = 1 + data[6] % 64;
        data += 8;
        size -= 8;

        /* the rest of the input becomes guest RAM starting at the descriptor table (up to the
         * end of its range), so the fuzzer writes descriptors, the avail ring and the buffers
         * it points at */
        uint8_t *ram = mem.map;
        memset(ram, 0, RAM);
        int64_t at = ram_off(desc, 0);
        size_t n = 0;
        if (at >= 0) {
                uint64_t room = (base ? RAM : LOW) - (uint64_t)at;
                n = size < room ? size : room;
                memcpy(ram + at, data, n);
        }

        struct virtq q;
        memset(&q, 0, sizeof(q));
        if (virtq_setup(&q, &mem, qsize, desc, avail, used, indirect) < 0)
                return 0;
        check_view(q.desc, desc, VIRTQ_DESC_BYTES(qsize));
        check_view(q.avail, avail, VIRTQ_AVAIL_BYTES(qsize));
        check_view(q.used, used, VIRTQ_USED_BYTES(qsize));
        memset(may_change, 0, RAM);
        memset(may_change + (q.used - ram), 1, VIRTQ_USED_BYTES(qsize));

        for (unsigned i = 0; i < pops; i++) {
                int r = virtq_pop(&q, &chain);
                if (r <= 0)
                        break;
                unsigned nseg = (unsigned)chain.nread + chain.nwrite;
                if (chain.head >= qsize || nseg > qsize)
                        abort();
                uint64_t rl = 0, wl = 0;
                for (unsigned k = 0; k < nseg; k++) {
                        if (ram_off(chain.seg[k].gpa, chain.seg[k].len) < 0 ||
                            chain.seg[k].len == 0)
                                abort();
                        *(k < chain.nread ? &rl : &wl) += chain.seg[k].len;
                }
                if (rl != chain.read_len || wl != chain.write_len)
                        abort();

                /* A read from the middle of the readable part returns the guest's bytes at the
                 * segments' addresses, as they are now (earlier writes included). */
                uint8_t tmp[64], expect[64];
                uint64_t want = part_walk(0, chain.nread, rl / 2, sizeof(tmp), gather, expect);
                if (virtq_chain_read(&mem, &chain, rl / 2, tmp, sizeof(tmp)) != want ||
                    memcmp(tmp, expect, want) != 0)
                        abort();
                /* A write into the middle of the writable part may change only what it reaches. */
                part_walk(chain.nread, nseg, wl / 2, sizeof(tmp), allow, NULL);
                memset(tmp, 0xa5 ^ (uint8_t)i, sizeof(tmp));
                virtq_chain_write(&mem, &chain, wl / 2, tmp, sizeof(tmp));
                virtq_push(&q, chain.head, (uint32_t)wl);
                virtq_need_interrupt(&q);
                virtq_suppress_notify(&q, i & 1);
        }

        /* Nothing else changed: RAM is still the input where it was put, zeros elsewhere. */
        for (size_t off = 0; off < RAM; off += sizeof(zero)) {
                const uint8_t *was = zero;
                uint8_t page[sizeof(zero)];
                if (at >= 0 && off < (size_t)at + n && (size_t)at < off + sizeof(zero)) {
                        memset(page, 0, sizeof(page));
                        size_t lo = (size_t)at > off ? (size_t)at : off;
                        size_t hi = (size_t)at + n < off + sizeof(zero) ? (size_t)at + n
                                                                        : off + sizeof(zero);
                        memcpy(page + (lo - off), data + (lo - (size_t)at), hi - lo);
                        was = page;
                }
                if (memcmp(ram + off, was, sizeof(zero)) == 0)
                        continue;
                for (size_t b = 0; b < sizeof(zero); b++)
                        if (ram[off + b] != was[b] && !may_change[off + b])
                                abort();
        }
        return 0;
}
