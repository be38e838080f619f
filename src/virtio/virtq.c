#include "virtio/virtq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "virtio rings are little-endian; this code assumes a little-endian host"
#endif

/* struct virtq_desc in guest memory */
struct desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
};

#define AVAIL_FLAGS_OFF 0
#define AVAIL_IDX_OFF   2
#define AVAIL_RING_OFF  4
#define USED_FLAGS_OFF  0
#define USED_IDX_OFF    2
#define USED_RING_OFF   4

static void set_error(struct virtq *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct virtq *q, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->error, sizeof(q->error), fmt, ap);
        va_end(ap);
}

static int broken(struct virtq *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int broken(struct virtq *q, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->error, sizeof(q->error), fmt, ap);
        va_end(ap);
        q->broken = true;
        return -EIO;
}

/* The guest may rewrite a descriptor while we look at it: take one copy, and keep the compiler
 * from re-reading guest memory in place of the copy. */
static void desc_snapshot(struct desc *d, const uint8_t *p)
{
        memcpy(d, p, sizeof(*d));
        __asm__ __volatile__("" ::: "memory");
}

static uint16_t load16_acquire(const uint8_t *p)
{
        return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static uint16_t load16(const uint8_t *p)
{
        return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
        return a < b + blen && b < a + alen;
}

static uint8_t *ring_view(struct virtq *q, const struct gmem *mem, const char *what, uint64_t gpa,
                          uint64_t len, uint64_t align)
{
        if (gpa % align) {
                set_error(q, "%s ring at 0x%llx is not %llu-byte aligned", what,
                          (unsigned long long)gpa, (unsigned long long)align);
                return NULL;
        }
        uint8_t *p = gmem_ptr(mem, gpa, len);
        if (!p)
                set_error(q, "%s ring 0x%llx+%llu is outside guest RAM", what,
                          (unsigned long long)gpa, (unsigned long long)len);
        return p;
}

void virtq_reset(struct virtq *q)
{
        const struct gmem *mem = q->mem;
        memset(q, 0, sizeof(*q));
        q->mem = mem;
}

int virtq_setup(struct virtq *q, const struct gmem *mem, uint32_t size, uint64_t desc_gpa,
                uint64_t avail_gpa, uint64_t used_gpa, bool indirect)
{
        virtq_reset(q);
        q->mem = mem;
        if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1))) {
                set_error(q, "queue size %u is not a power of two in 1..%u", size, VIRTQ_MAX_SIZE);
                return -EINVAL;
        }
        uint64_t dlen = VIRTQ_DESC_BYTES(size), alen = VIRTQ_AVAIL_BYTES(size),
                 ulen = VIRTQ_USED_BYTES(size);
        uint8_t *d = ring_view(q, mem, "descriptor", desc_gpa, dlen, VIRTQ_DESC_ALIGN);
        uint8_t *a = d ? ring_view(q, mem, "available", avail_gpa, alen, VIRTQ_AVAIL_ALIGN) : NULL;
        uint8_t *u = a ? ring_view(q, mem, "used", used_gpa, ulen, VIRTQ_USED_ALIGN) : NULL;
        if (!u)
                return -EINVAL;
        if (ranges_overlap(desc_gpa, dlen, avail_gpa, alen) ||
            ranges_overlap(desc_gpa, dlen, used_gpa, ulen) ||
            ranges_overlap(avail_gpa, alen, used_gpa, ulen)) {
                set_error(q, "rings overlap (desc 0x%llx, avail 0x%llx, used 0x%llx)",
                          (unsigned long long)desc_gpa, (unsigned long long)avail_gpa,
                          (unsigned long long)used_gpa);
                return -EINVAL;
        }
        q->size = (uint16_t)size;
        q->desc_gpa = desc_gpa;
        q->avail_gpa = avail_gpa;
        q->used_gpa = used_gpa;
        q->desc = d;
        q->avail = a;
        q->used = u;
        q->indirect = indirect;
        /* Indices start at 0 for a fresh queue (the driver zeroes the rings); a guest that left
         * avail->idx elsewhere is caught by the "too far ahead" check. */
        q->last_avail = 0;
        q->used_idx = 0;
        q->ready = true;
        /* Notifications on, whatever the guest left in the ring. */
        __atomic_store_n((uint16_t *)(q->used + USED_FLAGS_OFF), 0, __ATOMIC_RELAXED);
        return 0;
}

void virtq_suppress_notify(struct virtq *q, bool suppress)
{
        if (!q->ready || q->notify_suppressed == suppress)
                return;
        q->notify_suppressed = suppress;
        __atomic_store_n((uint16_t *)(q->used + USED_FLAGS_OFF),
                         suppress ? VIRTQ_USED_F_NO_NOTIFY : 0, __ATOMIC_RELAXED);
        /* Turning them back on: the flag must be visible before the caller looks at avail->idx
         * again (store-load), or a buffer the driver posted meanwhile is never announced. */
        if (!suppress)
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

int virtq_avail_count(struct virtq *q)
{
        if (!q->ready)
                return 0;
        if (q->broken)
                return -EIO;
        uint16_t avail_idx = load16_acquire(q->avail + AVAIL_IDX_OFF);
        uint16_t n = (uint16_t)(avail_idx - q->last_avail);
        if (n > q->size)
                return broken(q, "avail index %u is %u entries ahead of %u (queue size %u)",
                              avail_idx, n, q->last_avail, q->size);
        return n;
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
        int n = virtq_avail_count(q);
        if (n <= 0)
                return n;
        uint16_t slot = q->last_avail % q->size;
        uint16_t head = load16(q->avail + AVAIL_RING_OFF + 2u * slot);
        if (head >= q->size)
                return broken(q, "avail entry %u names descriptor %u >= queue size %u", slot, head,
                              q->size);

        c->head = head;
        c->nread = c->nwrite = 0;
        c->read_len = c->write_len = 0;
        const uint8_t *table = q->desc;
        uint32_t table_len = q->size;
        bool in_indirect = false, seen_writable = false;
        unsigned visited = 0;
        uint64_t read_total = 0, write_total = 0;
        uint32_t i = head;

        for (;;) {
                if (i >= table_len)
                        return broken(q, "chain at head %u: next index %u >= %s size %u", head, i,
                                      in_indirect ? "indirect table" : "queue", table_len);
                /* A well-formed chain has at most `size` descriptors, so this bounds loops. */
                if (++visited > q->size)
                        return broken(q, "chain at head %u is longer than the queue (loop?)", head);
                struct desc d;
                desc_snapshot(&d, table + (size_t)i * VIRTQ_DESC_SIZE);

                if (d.flags & VIRTQ_DESC_F_INDIRECT) {
                        if (!q->indirect)
                                return broken(
                                    q, "chain at head %u: indirect descriptor not negotiated",
                                    head);
                        if (in_indirect)
                                return broken(q, "chain at head %u: nested indirect table", head);
                        if (d.flags & VIRTQ_DESC_F_NEXT)
                                return broken(q, "chain at head %u: indirect descriptor with NEXT",
                                              head);
                        if (d.len == 0 || d.len % VIRTQ_DESC_SIZE ||
                            d.len / VIRTQ_DESC_SIZE > q->size)
                                return broken(q, "chain at head %u: bad indirect table length %u",
                                              head, d.len);
                        const uint8_t *t = gmem_ptr(q->mem, d.addr, d.len);
                        if (!t)
                                return broken(
                                    q, "chain at head %u: indirect table 0x%llx+%u outside RAM",
                                    head, (unsigned long long)d.addr, d.len);
                        /* The pointer descriptor itself carries no data: do not count it. */
                        visited--;
                        table = t;
                        table_len = d.len / VIRTQ_DESC_SIZE;
                        in_indirect = true;
                        i = 0;
                        continue;
                }

                bool writable = d.flags & VIRTQ_DESC_F_WRITE;
                if (!writable && seen_writable)
                        return broken(q, "chain at head %u: readable descriptor after writable one",
                                      head);
                seen_writable |= writable;
                if (d.len) {
                        if (!gmem_ptr(q->mem, d.addr, d.len))
                                return broken(q, "chain at head %u: buffer 0x%llx+%u outside RAM",
                                              head, (unsigned long long)d.addr, d.len);
                        uint64_t *total = writable ? &write_total : &read_total;
                        *total += d.len;
                        if (*total > UINT32_MAX)
                                return broken(q, "chain at head %u: more than 4 GiB of buffers",
                                              head);
                        /* visited <= size <= VIRTQ_MAX_SIZE, so there is room. */
                        c->seg[c->nread + c->nwrite] = (struct virtq_seg){d.addr, d.len};
                        if (writable)
                                c->nwrite++;
                        else
                                c->nread++;
                }
                if (!(d.flags & VIRTQ_DESC_F_NEXT))
                        break;
                i = d.next;
        }
        c->read_len = (uint32_t)read_total;
        c->write_len = (uint32_t)write_total;
        q->last_avail++;
        return 1;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
        if (!q->ready || head >= q->size)
                return -EINVAL;
        uint8_t *elem = q->used + USED_RING_OFF + 8u * (q->used_idx % q->size);
        __atomic_store_n((uint32_t *)elem, (uint32_t)head, __ATOMIC_RELAXED);
        __atomic_store_n((uint32_t *)(elem + 4), len, __ATOMIC_RELAXED);
        q->used_idx++;
        /* Release: the element (and the data written into the buffers) before the index. */
        __atomic_store_n((uint16_t *)(q->used + USED_IDX_OFF), q->used_idx, __ATOMIC_RELEASE);
        q->used_pending = true;
        return 0;
}

bool virtq_need_interrupt(struct virtq *q)
{
        if (!q->ready || !q->used_pending)
                return false;
        q->used_pending = false;
        /* Order our used->idx store before reading the driver's flags (store-load). */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        return !(load16(q->avail + AVAIL_FLAGS_OFF) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

size_t virtq_chain_read(const struct gmem *mem, const struct virtq_chain *c, uint64_t off,
                        void *dst, size_t len)
{
        size_t done = 0;
        for (unsigned i = 0; i < c->nread && done < len; i++) {
                const struct virtq_seg *s = &c->seg[i];
                if (off >= s->len) {
                        off -= s->len;
                        continue;
                }
                size_t n = s->len - off;
                if (n > len - done)
                        n = len - done;
                if (gmem_read(mem, s->gpa + off, (uint8_t *)dst + done, n) < 0)
                        break;
                done += n;
                off = 0;
        }
        return done;
}

size_t virtq_chain_write(const struct gmem *mem, const struct virtq_chain *c, uint64_t off,
                         const void *src, size_t len)
{
        size_t done = 0;
        for (unsigned i = c->nread; i < (unsigned)c->nread + c->nwrite && done < len; i++) {
                const struct virtq_seg *s = &c->seg[i];
                if (off >= s->len) {
                        off -= s->len;
                        continue;
                }
                size_t n = s->len - off;
                if (n > len - done)
                        n = len - done;
                if (gmem_write(mem, s->gpa + off, (const uint8_t *)src + done, n) < 0)
                        break;
                done += n;
                off = 0;
        }
        return done;
}
