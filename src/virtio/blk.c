/* virtio-blk (device id 2) on a raw image file or block device.
 *
 * Threads: the queue notification (event thread, device lock held) pops chains, validates them
 * completely and turns each valid read/write/flush/discard into a request slot for the disk's
 * own worker thread; it never touches the file. The worker does the I/O (preadv/pwritev straight
 * into/out of guest memory, fdatasync, fallocate) without the device lock, then takes the lock
 * to write the status byte, return the chain and interrupt the guest. Requests in flight are
 * bounded by a fixed pool of BLK_QUEUE_SIZE slots: when it is empty the notification stops
 * popping and the worker re-notifies the queue as slots come back, so a guest that re-adds the
 * same head forever costs no host memory. A device reset does not wait for the worker: requests
 * not started are dropped and the ones running are dropped when they finish, because their
 * epoch (virtio_epoch) is over.
 *
 * Everything the guest sends is checked: header length, the status byte, the data direction
 * for the type, lengths (multiples of 512, at most BLK_MAX_REQ_BYTES), the sector range
 * (overflow-safe), discard/write-zeroes segments (count, ranges, flags). A bad request gets
 * IOERR (UNSUPP for unknown types or flags), never a device failure or a crash, and a read-only
 * disk refuses everything that would change the file. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/devices.h"
#include "core/err.h"
#include "core/thread.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"

#define VIRTIO_ID_BLK 2u

#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0u
#define VIRTIO_BLK_T_OUT          1u
#define VIRTIO_BLK_T_FLUSH        4u
#define VIRTIO_BLK_T_GET_ID       8u
#define VIRTIO_BLK_T_DISCARD      11u
#define VIRTIO_BLK_T_WRITE_ZEROES 13u

#define VIRTIO_BLK_S_OK     0u
#define VIRTIO_BLK_S_IOERR  1u
#define VIRTIO_BLK_S_UNSUPP 2u

#define VIRTIO_BLK_WZ_F_UNMAP 1u

#define BLK_HDR_LEN     16u
#define BLK_DWZ_SEG_LEN 16u /* struct virtio_blk_discard_write_zeroes */

/* Config space layout (struct virtio_blk_config) up to write_zeroes_may_unmap. */
#define BLK_CFG_CAPACITY        0u
#define BLK_CFG_SIZE_MAX        8u
#define BLK_CFG_SEG_MAX         12u
#define BLK_CFG_BLK_SIZE        20u
#define BLK_CFG_MAX_DISCARD_SEC 36u
#define BLK_CFG_MAX_DISCARD_SEG 40u
#define BLK_CFG_DISCARD_ALIGN   44u
#define BLK_CFG_MAX_WZ_SEC      48u
#define BLK_CFG_MAX_WZ_SEG      52u
#define BLK_CFG_WZ_MAY_UNMAP    56u
#define BLK_CFG_SIZE            60u

static void blk_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len);
static void blk_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len);
static int blk_activate(void *dev, uint64_t features);
static void blk_queue_notify(void *dev, unsigned q);
static void blk_reset(void *dev);
static void blk_quiesce(void *dev);
static void blk_destroy(void *dev);

static const struct virtio_dev_ops blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLK,
    .features = (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
                (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |
                (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES),
    .num_queues = 1,
    .queue_max = BLK_QUEUE_SIZE,
    .config_size = BLK_CFG_SIZE,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .activate = blk_activate,
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
    .quiesce = blk_quiesce,
    .destroy = blk_destroy,
};
/* The same device, read-only: RO offered as well. */
static const struct virtio_dev_ops blk_ro_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLK,
    .features = (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
                (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |
                (1ull << VIRTIO_BLK_F_RO),
    .num_queues = 1,
    .queue_max = BLK_QUEUE_SIZE,
    .config_size = BLK_CFG_SIZE,
    .config_read = blk_config_read,
    .config_write = blk_config_write,
    .activate = blk_activate,
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
    .quiesce = blk_quiesce,
    .destroy = blk_destroy,
};

struct blk_req {
        struct blk_req *next;
        uint64_t epoch;
        uint16_t head;
        uint8_t type;
        bool sync;       /* writethrough: fdatasync after a write */
        uint64_t offset; /* bytes into the disk */
        uint64_t len;    /* data bytes */
        uint32_t used;   /* bytes written into the writable part, status included */
        uint64_t status_gpa;
        unsigned niov, nseg;
        struct iovec iov[VIRTQ_MAX_SIZE];
        struct {
                uint64_t sector;
                uint32_t num, flags;
        } seg[BLK_MAX_DWZ_SEGS];
};

struct virtio_blk {
        struct virtio_dev *vd;
        const struct gmem *mem;
        int fd;
        bool ro;
        bool block_dev;
        uint64_t sectors;
        char serial[BLK_ID_LEN + 1];
        char path[256]; /* for messages */
        void (*io_done_hook)(void *arg);
        void *hook_arg;
        /* negotiated (lock held) */
        bool writethrough; /* FLUSH not negotiated: every write is synced */
        bool starved;      /* a notification stopped because the pool was empty */
        struct virtq_chain chain;
        struct blk_stats stats;

        /* the worker; `mu` nests inside the device lock, never the other way round */
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool stop;
        struct blk_req *free_list;
        struct blk_req *pending_head, **pending_tail;
        unsigned pending;
        struct blk_req *pool;
};

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

static void blk_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
        struct virtio_blk *b = dev;
        uint8_t cfg[BLK_CFG_SIZE] = {0};
        put_le(cfg + BLK_CFG_CAPACITY, b->sectors, 8);
        put_le(cfg + BLK_CFG_SIZE_MAX, BLK_SIZE_MAX, 4);
        put_le(cfg + BLK_CFG_SEG_MAX, BLK_SEG_MAX, 4);
        put_le(cfg + BLK_CFG_BLK_SIZE, BLK_SECTOR, 4);
        if (!b->ro) {
                put_le(cfg + BLK_CFG_MAX_DISCARD_SEC, BLK_MAX_DWZ_SECTORS, 4);
                put_le(cfg + BLK_CFG_MAX_DISCARD_SEG, BLK_MAX_DWZ_SEGS, 4);
                put_le(cfg + BLK_CFG_DISCARD_ALIGN, BLK_DISCARD_ALIGN_SECTORS, 4);
                put_le(cfg + BLK_CFG_MAX_WZ_SEC, BLK_MAX_DWZ_SECTORS, 4);
                put_le(cfg + BLK_CFG_MAX_WZ_SEG, BLK_MAX_DWZ_SEGS, 4);
                cfg[BLK_CFG_WZ_MAY_UNMAP] = 1;
        }
        /* The core checked offset + len against config_size. */
        memcpy(data, cfg + offset, len);
}

static void blk_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
        /* Nothing is writable (no CONFIG_WCE): ignored, as the spec allows. */
}

static int blk_activate(void *dev, uint64_t features)
{
        struct virtio_blk *b = dev;
        b->writethrough = !(features & (1ull << VIRTIO_BLK_F_FLUSH));
        return 0;
}

/* Host views of `len` bytes starting `off` bytes into segments seg[0..n), appended to iov.
 * Returns false if a piece is not in RAM (cannot happen for popped chains, checked anyway) or
 * the chain is shorter than asked. */
static bool build_iov(const struct gmem *mem, const struct virtq_seg *seg, unsigned n, uint64_t off,
                      uint64_t len, struct iovec *iov, unsigned *niov)
{
        for (unsigned i = 0; i < n && len > 0; i++) {
                if (off >= seg[i].len) {
                        off -= seg[i].len;
                        continue;
                }
                uint64_t take = seg[i].len - off;
                if (take > len)
                        take = len;
                void *p = gmem_ptr(mem, seg[i].gpa + off, take);
                if (!p || *niov >= VIRTQ_MAX_SIZE)
                        return false;
                iov[*niov].iov_base = p;
                iov[*niov].iov_len = (size_t)take;
                (*niov)++;
                len -= take;
                off = 0;
        }
        return len == 0;
}

/* Sector range inside the disk, without overflow. */
static bool range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t nsectors)
{
        return sector <= b->sectors && nsectors <= b->sectors - sector;
}

/* Validates the chain in b->chain and fills r. Returns the status to report now (the request
 * then goes no further) or VIRTIO_BLK_S_OK with r ready for the worker; *to_worker says which.
 * r->used is set either way. */
static uint8_t blk_parse(struct virtio_blk *b, struct blk_req *r, bool *to_worker)
{
        const struct virtq_chain *c = &b->chain;
        const struct virtq_seg *rd = c->seg, *wr = c->seg + c->nread;
        uint8_t hdr[BLK_HDR_LEN];

        *to_worker = false;
        r->used = 1;
        /* No status byte: nothing can be answered (the caller returns the chain empty). */
        if (c->write_len == 0 || c->read_len < BLK_HDR_LEN ||
            virtq_chain_read(b->mem, c, 0, hdr, BLK_HDR_LEN) != BLK_HDR_LEN)
                return VIRTIO_BLK_S_IOERR;
        uint32_t type = (uint32_t)get_le(hdr, 4);
        uint64_t sector = get_le(hdr + 8, 8);
        uint64_t rdata = c->read_len - BLK_HDR_LEN; /* readable bytes after the header */
        uint64_t wdata = c->write_len - 1;          /* writable bytes before the status */
        r->type = (uint8_t)type;
        r->niov = 0;
        r->nseg = 0;

        switch (type) {
        case VIRTIO_BLK_T_IN:
        case VIRTIO_BLK_T_OUT: {
                bool in = type == VIRTIO_BLK_T_IN;
                uint64_t len = in ? wdata : rdata;
                if ((in ? rdata : wdata) != 0 || len % BLK_SECTOR || len > BLK_MAX_REQ_BYTES ||
                    !range_ok(b, sector, len / BLK_SECTOR))
                        return VIRTIO_BLK_S_IOERR;
                if (!in && b->ro)
                        return VIRTIO_BLK_S_IOERR;
                bool ok = in ? build_iov(b->mem, wr, c->nwrite, 0, len, r->iov, &r->niov)
                             : build_iov(b->mem, rd, c->nread, BLK_HDR_LEN, len, r->iov, &r->niov);
                if (!ok)
                        return VIRTIO_BLK_S_IOERR;
                r->offset = sector * BLK_SECTOR;
                r->len = len;
                r->used = in ? (uint32_t)len + 1 : 1;
                *to_worker = len > 0;
                return VIRTIO_BLK_S_OK;
        }
        case VIRTIO_BLK_T_FLUSH:
                if (rdata || wdata)
                        return VIRTIO_BLK_S_IOERR;
                *to_worker = true;
                return VIRTIO_BLK_S_OK;
        case VIRTIO_BLK_T_GET_ID: {
                /* Memory only, no file I/O: answered at once. */
                if (rdata)
                        return VIRTIO_BLK_S_IOERR;
                size_t n = wdata < BLK_ID_LEN ? (size_t)wdata : BLK_ID_LEN;
                uint8_t id[BLK_ID_LEN] = {0};
                memcpy(id, b->serial, strnlen(b->serial, BLK_ID_LEN));
                if (virtq_chain_write(b->mem, c, 0, id, n) != n)
                        return VIRTIO_BLK_S_IOERR;
                r->used = (uint32_t)n + 1;
                return VIRTIO_BLK_S_OK;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES: {
                if (b->ro || wdata || rdata == 0 || rdata % BLK_DWZ_SEG_LEN ||
                    rdata / BLK_DWZ_SEG_LEN > BLK_MAX_DWZ_SEGS)
                        return VIRTIO_BLK_S_IOERR;
                unsigned n = (unsigned)(rdata / BLK_DWZ_SEG_LEN);
                for (unsigned i = 0; i < n; i++) {
                        uint8_t s[BLK_DWZ_SEG_LEN];
                        if (virtq_chain_read(b->mem, c, BLK_HDR_LEN + (uint64_t)i * BLK_DWZ_SEG_LEN,
                                             s, sizeof(s)) != sizeof(s))
                                return VIRTIO_BLK_S_IOERR;
                        uint64_t ssec = get_le(s, 8);
                        uint32_t num = (uint32_t)get_le(s + 8, 4);
                        uint32_t flags = (uint32_t)get_le(s + 12, 4);
                        /* Unknown flags, or UNMAP on a discard: UNSUPP (virtio 1.2, 5.2.6.2). */
                        if ((flags & ~VIRTIO_BLK_WZ_F_UNMAP) ||
                            (type == VIRTIO_BLK_T_DISCARD && flags))
                                return VIRTIO_BLK_S_UNSUPP;
                        if (num > BLK_MAX_DWZ_SECTORS || !range_ok(b, ssec, num))
                                return VIRTIO_BLK_S_IOERR;
                        r->seg[i].sector = ssec;
                        r->seg[i].num = num;
                        r->seg[i].flags = flags;
                }
                r->nseg = n;
                *to_worker = true;
                return VIRTIO_BLK_S_OK;
        }
        default:
                return VIRTIO_BLK_S_UNSUPP;
        }
}

/* Returns a request slot (mu held). */
static void slot_free(struct virtio_blk *b, struct blk_req *r)
{
        r->next = b->free_list;
        b->free_list = r;
}

static void blk_queue_notify(void *dev, unsigned q)
{
        struct virtio_blk *b = dev;
        struct virtio_budget budget = virtio_budget_default();
        bool pushed = false;

        for (;;) {
                pthread_mutex_lock(&b->mu);
                struct blk_req *r = b->free_list;
                bool stopped = b->stop;
                if (r && !stopped)
                        b->free_list = r->next;
                else
                        b->starved = !stopped; /* the worker notifies again as slots return */
                pthread_mutex_unlock(&b->mu);
                if (!r || stopped)
                        break;
                if (virtio_pop_budget(b->vd, q, &b->chain, &budget) <= 0) {
                        pthread_mutex_lock(&b->mu);
                        slot_free(b, r);
                        pthread_mutex_unlock(&b->mu);
                        break;
                }
                b->stats.requests++;
                bool to_worker;
                uint8_t st = blk_parse(b, r, &to_worker);
                r->head = b->chain.head;
                if (to_worker) {
                        r->epoch = virtio_epoch(b->vd);
                        r->sync = b->writethrough;
                        r->status_gpa = 0;
                        const struct virtq_seg *last =
                            &b->chain.seg[b->chain.nread + b->chain.nwrite - 1];
                        r->status_gpa = last->gpa + last->len - 1;
                        r->next = NULL;
                        pthread_mutex_lock(&b->mu);
                        *b->pending_tail = r;
                        b->pending_tail = &r->next;
                        b->pending++;
                        pthread_cond_signal(&b->cv);
                        pthread_mutex_unlock(&b->mu);
                        continue;
                }
                /* Answered now: refused, GET_ID, or an empty read/write. */
                if (st != VIRTIO_BLK_S_OK)
                        b->stats.errors++;
                if (b->chain.write_len > 0) {
                        const struct virtq_seg *last =
                            &b->chain.seg[b->chain.nread + b->chain.nwrite - 1];
                        gmem_write(b->mem, last->gpa + last->len - 1, &st, 1);
                        virtio_push(b->vd, q, b->chain.head, r->used);
                } else {
                        /* No status byte to write: the chain goes back empty. */
                        virtio_push(b->vd, q, b->chain.head, 0);
                }
                pushed = true;
                pthread_mutex_lock(&b->mu);
                slot_free(b, r);
                pthread_mutex_unlock(&b->mu);
        }
        if (pushed)
                virtio_signal_used(b->vd, q);
}

/* All of iov, at `off`; short transfers continue, EINTR retries. 0 or -errno. */
static int blk_rw(int fd, bool write, struct iovec *iov, unsigned niov, uint64_t off)
{
        unsigned i = 0;
        while (i < niov) {
                ssize_t n = write ? pwritev(fd, iov + i, (int)(niov - i), (off_t)off)
                                  : preadv(fd, iov + i, (int)(niov - i), (off_t)off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO; /* the file shrank under us */
                off += (uint64_t)n;
                while (n > 0 && i < niov) {
                        if ((size_t)n >= iov[i].iov_len) {
                                n -= (ssize_t)iov[i].iov_len;
                                i++;
                        } else {
                                iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
                                iov[i].iov_len -= (size_t)n;
                                n = 0;
                        }
                }
        }
        return 0;
}

static const uint8_t blk_zeros[64 * 1024];

/* Zeroes [off, off+len) by writing, for hosts whose file system cannot fallocate. */
static int blk_write_zeroes(int fd, uint64_t off, uint64_t len)
{
        while (len > 0) {
                size_t n = len < sizeof(blk_zeros) ? (size_t)len : sizeof(blk_zeros);
                ssize_t w = pwrite(fd, blk_zeros, n, (off_t)off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                off += (uint64_t)w;
                len -= (uint64_t)w;
        }
        return 0;
}

static int blk_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
        int rc;
        do
                rc = fallocate(fd, mode, (off_t)off, (off_t)len);
        while (rc < 0 && errno == EINTR);
        return rc < 0 ? -errno : 0;
}

static int blk_dwz(struct virtio_blk *b, const struct blk_req *r)
{
        for (unsigned i = 0; i < r->nseg; i++) {
                uint64_t off = r->seg[i].sector * BLK_SECTOR;
                uint64_t len = (uint64_t)r->seg[i].num * BLK_SECTOR;
                int rc;
                if (len == 0)
                        continue;
                if (r->type == VIRTIO_BLK_T_DISCARD) {
                        rc = blk_fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                                           len);
                        /* Discard is a hint: a host that cannot punch holes ignores it. */
                        if (rc == -EOPNOTSUPP || rc == -ENOSYS)
                                rc = 0;
                } else {
                        int mode = (r->seg[i].flags & VIRTIO_BLK_WZ_F_UNMAP)
                                       ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                       : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
                        rc = blk_fallocate(b->fd, mode, off, len);
                        if (rc == -EOPNOTSUPP || rc == -ENOSYS)
                                rc = blk_write_zeroes(b->fd, off, len);
                }
                if (rc)
                        return rc;
        }
        return 0;
}

static int blk_sync(int fd)
{
        int rc;
        do
                rc = fdatasync(fd);
        while (rc < 0 && errno == EINTR);
        return rc < 0 ? -errno : 0;
}

/* The I/O of one request, without any lock. */
static uint8_t blk_execute(struct virtio_blk *b, struct blk_req *r)
{
        int rc = 0;
        switch (r->type) {
        case VIRTIO_BLK_T_IN:
                rc = blk_rw(b->fd, false, r->iov, r->niov, r->offset);
                break;
        case VIRTIO_BLK_T_OUT:
                rc = blk_rw(b->fd, true, r->iov, r->niov, r->offset);
                if (!rc && r->sync)
                        rc = blk_sync(b->fd);
                break;
        case VIRTIO_BLK_T_FLUSH:
                rc = b->ro ? 0 : blk_sync(b->fd);
                break;
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
                rc = blk_dwz(b, r);
                if (!rc && r->sync)
                        rc = blk_sync(b->fd);
                break;
        default:
                rc = -EIO;
        }
        return rc ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static void *blk_worker(void *arg)
{
        struct virtio_blk *b = arg;
        unsigned unsignalled = 0;
        for (;;) {
                pthread_mutex_lock(&b->mu);
                while (!b->stop && !b->pending_head)
                        pthread_cond_wait(&b->cv, &b->mu);
                if (b->stop) {
                        pthread_mutex_unlock(&b->mu);
                        break;
                }
                struct blk_req *r = b->pending_head;
                b->pending_head = r->next;
                if (!b->pending_head)
                        b->pending_tail = &b->pending_head;
                b->pending--;
                pthread_mutex_unlock(&b->mu);

                uint8_t st = blk_execute(b, r);
                if (b->io_done_hook)
                        b->io_done_hook(b->hook_arg);

                virtio_lock(b->vd);
                pthread_mutex_lock(&b->mu);
                bool stopping = b->stop;
                pthread_mutex_unlock(&b->mu);
                bool current = !stopping && virtio_epoch(b->vd) == r->epoch && virtio_live(b->vd);
                if (current) {
                        if (st != VIRTIO_BLK_S_OK)
                                b->stats.errors++;
                        if (r->type == VIRTIO_BLK_T_IN && st == VIRTIO_BLK_S_OK)
                                b->stats.read_bytes += r->len;
                        if (r->type == VIRTIO_BLK_T_OUT && st == VIRTIO_BLK_S_OK)
                                b->stats.write_bytes += r->len;
                        gmem_write(b->mem, r->status_gpa, &st, 1);
                        virtio_push(b->vd, 0, r->head, st == VIRTIO_BLK_S_OK ? r->used : 1);
                        unsignalled++;
                } else {
                        b->stats.dropped++;
                }
                pthread_mutex_lock(&b->mu);
                slot_free(b, r);
                bool idle = !b->pending_head;
                bool kick = b->starved;
                b->starved = false;
                pthread_mutex_unlock(&b->mu);
                /* One interrupt per burst, and at least every 16 completions. */
                if (unsignalled && (idle || unsignalled >= 16)) {
                        virtio_signal_used(b->vd, 0);
                        unsignalled = 0;
                }
                virtio_unlock(b->vd);
                if (kick)
                        virtio_kick(b->vd, 0);
        }
        return NULL;
}

/* Drops the requests no worker started (mu held). */
static void drop_pending(struct virtio_blk *b)
{
        while (b->pending_head) {
                struct blk_req *r = b->pending_head;
                b->pending_head = r->next;
                slot_free(b, r);
                b->stats.dropped++;
        }
        b->pending_tail = &b->pending_head;
        b->pending = 0;
}

static void blk_reset(void *dev)
{
        struct virtio_blk *b = dev;
        pthread_mutex_lock(&b->mu);
        drop_pending(b);
        b->starved = false;
        pthread_mutex_unlock(&b->mu);
        b->writethrough = false;
}

static void blk_quiesce(void *dev)
{
        struct virtio_blk *b = dev;
        pthread_mutex_lock(&b->mu);
        b->stop = true;
        drop_pending(b);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        if (b->thread_started) {
                pthread_join(b->thread, NULL);
                b->thread_started = false;
        }
}

static void blk_destroy(void *dev)
{
        struct virtio_blk *b = dev;
        blk_quiesce(b);
        if (b->fd >= 0)
                close(b->fd);
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free(b->pool);
        free(b);
}

int blk_create(const struct dev_env *env, const struct blk_params *p, struct virtio_dev **out,
               struct virtio_blk **blk_out, enum ember_error *code, char *err, size_t errlen)
{
        struct virtio_blk *b = calloc(1, sizeof(*b));
        if (!b) {
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, ENOMEM, "virtio-blk: out of memory");
        }
        b->fd = -1;
        b->ro = p->read_only;
        b->mem = env->mem;
        b->io_done_hook = p->io_done_hook;
        b->hook_arg = p->hook_arg;
        snprintf(b->path, sizeof(b->path), "%s", p->path);
        snprintf(b->serial, sizeof(b->serial), "%s", p->serial ? p->serial : "");
        pthread_mutex_init(&b->mu, NULL);
        pthread_cond_init(&b->cv, NULL);
        b->pending_tail = &b->pending_head;
        uint64_t bytes;
        int rc = blk_image_open(p->path, p->read_only, &b->fd, &bytes, &b->block_dev, err, errlen);
        if (rc) {
                *code = EMBER_ERR_DISK;
                blk_destroy(b);
                return rc;
        }
        b->sectors = bytes / BLK_SECTOR;
        b->pool = calloc(BLK_QUEUE_SIZE, sizeof(*b->pool));
        if (!b->pool) {
                *code = EMBER_ERR_RESOURCE;
                blk_destroy(b);
                return ember_errf(err, errlen, ENOMEM, "virtio-blk: out of memory");
        }
        for (unsigned i = 0; i < BLK_QUEUE_SIZE; i++)
                slot_free(b, &b->pool[i]);
        rc = ember_thread_spawn(&b->thread, blk_worker, b, false, "ember-blk");
        if (rc) {
                *code = EMBER_ERR_RESOURCE;
                blk_destroy(b);
                return ember_errf(err, errlen, rc, "virtio-blk: cannot start its worker: %s",
                                  strerror(-rc));
        }
        b->thread_started = true;
        rc = virtio_dev_create(env, b->ro ? &blk_ro_ops : &blk_ops, b, &b->vd, err, errlen);
        if (rc) {
                *code = EMBER_ERR_RESOURCE;
                blk_destroy(b);
                return rc;
        }
        *out = b->vd;
        if (blk_out)
                *blk_out = b;
        return 0;
}

void blk_get_stats(struct virtio_blk *b, struct blk_stats *out)
{
        virtio_lock(b->vd);
        *out = b->stats;
        virtio_unlock(b->vd);
}

unsigned blk_in_flight(struct virtio_blk *b)
{
        pthread_mutex_lock(&b->mu);
        unsigned free_slots = 0;
        for (struct blk_req *r = b->free_list; r; r = r->next)
                free_slots++;
        pthread_mutex_unlock(&b->mu);
        return BLK_QUEUE_SIZE - free_slots;
}

/* ---- the device table entry */

static unsigned blk_count(const struct ember_config *cfg)
{
        return cfg->ndisks;
}

static int blk_type_create(const struct dev_env *env, const struct ember_config *cfg,
                           unsigned index, struct virtio_dev **out, enum ember_error *code,
                           char *err, size_t errlen)
{
        const struct ember_disk_cfg *d = &cfg->disk[index];
        char serial[BLK_ID_LEN + 1];
        if (d->serial)
                snprintf(serial, sizeof(serial), "%s", d->serial);
        else
                snprintf(serial, sizeof(serial), "ember-vd%c", 'a' + (int)(index % 26));
        struct blk_params p = {.path = d->path, .read_only = d->read_only, .serial = serial};
        return blk_create(env, &p, out, NULL, code, err, errlen);
}

const struct vm_device_type virtio_blk_type = {
    .name = "virtio-blk",
    .count = blk_count,
    .create = blk_type_create,
};
