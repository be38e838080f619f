/* Split virtqueue (virtio 1.x, section 2.7), device side, over guest memory.
 *
 * Everything the guest wrote is validated before use: ring placement and size when the queue is
 * set up, and on every pop the avail index, head and next indices, chain length (which also
 * catches loops), indirect tables, byte totals and that every buffer lies inside RAM. A queue
 * that sees a malformed chain turns `broken` and stays so until virtq_reset(); the transport
 * then fails the device.
 *
 * Not thread-safe: one caller at a time (the transport's lock serializes users). */
#ifndef EMBER_VIRTIO_VIRTQ_H
#define EMBER_VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gmem.h"

/* Largest queue ember's devices offer; also the longest chain, so a chain always fits. */
#define VIRTQ_MAX_SIZE 256u

#define VIRTQ_DESC_F_NEXT     1u
#define VIRTQ_DESC_F_WRITE    2u
#define VIRTQ_DESC_F_INDIRECT 4u

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
#define VIRTQ_USED_F_NO_NOTIFY     1u

#define VIRTQ_DESC_SIZE   16u
#define VIRTQ_DESC_ALIGN  16u
#define VIRTQ_AVAIL_ALIGN 2u
#define VIRTQ_USED_ALIGN  4u

/* Ring sizes for `n` entries (the avail and used rings include their trailing event fields). */
#define VIRTQ_DESC_BYTES(n)  (16ull * (n))
#define VIRTQ_AVAIL_BYTES(n) (6ull + 2ull * (n))
#define VIRTQ_USED_BYTES(n)  (6ull + 8ull * (n))

/* One guest buffer of a chain; inside RAM (checked when popped). */
struct virtq_seg {
        uint64_t gpa;
        uint32_t len;
};

/* A popped descriptor chain: `nread` device-readable segments, then `nwrite` device-writable
 * ones. Zero-length descriptors are dropped. */
struct virtq_chain {
        uint16_t head;
        uint16_t nread, nwrite;
        uint32_t read_len, write_len; /* byte totals of each part */
        struct virtq_seg seg[VIRTQ_MAX_SIZE];
};

struct virtq {
        const struct gmem *mem;
        uint16_t size;
        bool ready;
        bool broken;
        bool indirect;          /* VIRTIO_F_INDIRECT_DESC negotiated */
        bool used_pending;      /* used entries pushed since the last virtq_need_interrupt() */
        bool notify_suppressed; /* VIRTQ_USED_F_NO_NOTIFY is set in the used ring */
        uint64_t desc_gpa, avail_gpa, used_gpa;
        uint8_t *desc, *avail, *used; /* host views of the rings, from gmem_ptr() */
        uint16_t last_avail;          /* next avail entry to consume */
        uint16_t used_idx;            /* our copy of used->idx (never read back from the guest) */
        char error[96];               /* why setup failed or the queue broke */
};

/* Makes the queue usable: `size` a power of two in 1..VIRTQ_MAX_SIZE, each ring aligned, wholly
 * inside one RAM region and not overlapping the others. Returns 0, or -EINVAL with q->error set
 * and the queue left not ready. */
int virtq_setup(struct virtq *q, const struct gmem *mem, uint32_t size, uint64_t desc_gpa,
                uint64_t avail_gpa, uint64_t used_gpa, bool indirect);
/* Back to the not-ready state (used at device reset and queue teardown). */
void virtq_reset(struct virtq *q);

/* Number of chains the guest has made available and we have not popped; -EIO if the queue is
 * (or just became) broken, e.g. avail->idx ran more than `size` ahead. 0 if not ready. */
int virtq_avail_count(struct virtq *q);

/* Pops the next chain into *c. Returns 1, 0 when nothing is available (or not ready), or -EIO
 * when the chain is malformed (the queue is then broken; q->error says why). */
int virtq_pop(struct virtq *q, struct virtq_chain *c);

/* Returns a chain to the guest with `len` bytes written into its writable part. -EINVAL if the
 * queue is not ready or head is out of range. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t len);

/* After pushes: whether the guest wants an interrupt for them (VRING_AVAIL_F_NO_INTERRUPT is
 * honoured; EVENT_IDX is not offered). False if nothing was pushed since the last call. */
bool virtq_need_interrupt(struct virtq *q);

/* Asks the driver not to notify (VIRTQ_USED_F_NO_NOTIFY; a hint it may ignore) or to notify
 * again. After turning notifications back on, look at the avail ring once more: a buffer the
 * driver posted while they were off was not announced. No-op if not ready. */
void virtq_suppress_notify(struct virtq *q, bool suppress);

/* Copy out of the chain's readable part / into its writable part, starting `off` bytes into that
 * part. Return the bytes copied (short at the end of the part). */
size_t virtq_chain_read(const struct gmem *mem, const struct virtq_chain *c, uint64_t off,
                        void *dst, size_t len);
size_t virtq_chain_write(const struct gmem *mem, const struct virtq_chain *c, uint64_t off,
                         const void *src, size_t len);

#endif
