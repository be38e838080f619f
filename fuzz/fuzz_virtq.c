/* libFuzzer target: a guest that controls every byte of a split virtqueue (descriptor table,
 * available ring, indirect tables, buffers) and the queue configuration. Checks that popping
 * never touches memory outside guest RAM and that every chain it returns respects the bounds.
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

#define RAM (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gmem mem;
static struct virtq_chain chain;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (!mem.map && gmem_init(&mem, RAM, 3ull << 30) < 0)
                abort();
        if (size < 8)
                return 0;
        /* header: log2 queue size, flags, ring offsets (in 16-byte units) */
        uint32_t qsize = 1u << (data[0] % 10); /* up to 512: also the invalid sizes */
        bool indirect = data[1] & 1;
        uint64_t desc = (uint64_t)(data[2] | data[3] << 8) * 16;
        uint64_t avail = desc + VIRTQ_DESC_BYTES(qsize) + (data[4] & 0xf) * 2;
        uint64_t used = (avail + VIRTQ_AVAIL_BYTES(qsize) + 3 + (data[5] & 0xf) * 4) & ~3ull;
        unsigned pops = 1 + data[6] % 64;
        data += 8;
        size -= 8;

        /* the rest of the input becomes guest RAM starting at the descriptor table, so the
         * fuzzer writes descriptors, the avail ring and the buffers it points at */
        uint8_t *ram = gmem_ptr(&mem, 0, RAM);
        memset(ram, 0, RAM);
        if (desc < RAM) {
                size_t n = size < RAM - desc ? size : RAM - desc;
                memcpy(ram + desc, data, n);
        }

        struct virtq q;
        memset(&q, 0, sizeof(q));
        if (virtq_setup(&q, &mem, qsize, desc, avail, used, indirect) < 0)
                return 0;
        for (unsigned i = 0; i < pops; i++) {
                int r = virtq_pop(&q, &chain);
                if (r <= 0)
                        break;
                if (chain.head >= qsize || (unsigned)chain.nread + chain.nwrite > qsize)
                        abort();
                uint64_t rl = 0, wl = 0;
                for (unsigned k = 0; k < (unsigned)chain.nread + chain.nwrite; k++) {
                        if (!gmem_ptr(&mem, chain.seg[k].gpa, chain.seg[k].len))
                                abort();
                        *(k < chain.nread ? &rl : &wl) += chain.seg[k].len;
                }
                if (rl != chain.read_len || wl != chain.write_len)
                        abort();
                uint8_t tmp[64];
                virtq_chain_read(&mem, &chain, rl / 2, tmp, sizeof(tmp));
                virtq_chain_write(&mem, &chain, wl / 2, tmp, sizeof(tmp));
                virtq_push(&q, chain.head, (uint32_t)wl);
                virtq_need_interrupt(&q);
        }
        return 0;
}
