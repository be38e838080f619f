/* The transport-neutral virtio device core: what every virtio device (console, rng, balloon, blk,
 * and later fs, vsock, net) is written against. A device fills one struct virtio_dev_ops and
 * calls the helpers below; it never sees registers, interrupts or notification plumbing. A
 * transport (virtio-mmio today, virtio-pci later) decodes the guest's register accesses into the
 * core's calls (src/virtio/transport.h) and delivers the core's interrupts.
 *
 * Threads and locking
 * - Each device has one lock (virtio_lock()). Every op runs with it held: config accesses and
 *   status changes on vCPU threads, queue notifications on the VM's event thread.
 * - A device's own event sources (host fds in env->loop) and its worker threads take the same
 *   lock around any call marked "lock held" below. Host I/O (disk reads, socket writes) must
 *   not happen with the lock held or on the event thread: take the buffers under the lock, do
 *   the I/O on a worker, take the lock again to return them.
 * - Work per notification is bounded (virtio_pop_budget): when the budget is spent the queue is
 *   notified again and the callback returns, so no guest can keep the event thread (and with it
 *   the stop path) busy.
 *
 * Failures caused by the guest (bad ring placement, malformed chains, an activation the device
 * refuses) fail the device: NEEDS_RESET, a config interrupt if the driver runs, no more queue
 * processing, and VM_STOP_ERROR through env->stop with the reason. */
#ifndef EMBER_VIRTIO_VIRTIO_H
#define EMBER_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/dev_env.h"
#include "virtio/virtq.h"

/* Device status bits (virtio 1.2, 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01u
#define VIRTIO_STATUS_DRIVER      0x02u
#define VIRTIO_STATUS_DRIVER_OK   0x04u
#define VIRTIO_STATUS_FEATURES_OK 0x08u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED      0x80u

/* Feature bits the core itself offers or refuses. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29 /* not offered */
#define VIRTIO_F_VERSION_1     32

/* Interrupt kinds a transport delivers. */
#define VIRTIO_INT_VRING  0x1u
#define VIRTIO_INT_CONFIG 0x2u

#define VIRTIO_MAX_QUEUES 64u
#define VIRTIO_MAX_SHM    4u

/* Default work one queue notification may do before it yields (virtio_pop_budget). */
#define VIRTIO_BUDGET_CHAINS 32u
#define VIRTIO_BUDGET_BYTES  (1ull << 20)

struct virtio_dev;

/* One shared-memory region (virtio 1.2, 2.10), for devices that map host memory into the guest
 * (virtio-fs DAX later). */
struct virtio_shm {
        uint64_t gpa, len;
};

/* A device. Everything runs with the device's lock held. */
struct virtio_dev_ops {
        const char *name;    /* for messages: "virtio-rng" */
        uint32_t device_id;  /* virtio device type (3 console, 4 rng, 2 blk, 5 balloon) */
        uint64_t features;   /* device-specific bits; VERSION_1 and INDIRECT_DESC are added */
        unsigned num_queues; /* queues at most: 1..VIRTIO_MAX_QUEUES */
        uint16_t queue_max;  /* QueueNumMax of every queue: power of two <= VIRTQ_MAX_SIZE */
        /* Optional, num_queues entries: a QueueNumMax for that queue instead (same rules), or 0
         * for queue_max. */
        const uint16_t *queue_sizes;
        uint32_t config_size; /* bytes of device config space */
        /* Guest access to config space, 1/2/4/8 bytes, already bounds-checked. vCPU thread. */
        void (*config_read)(void *dev, uint32_t offset, uint8_t *data, uint32_t len);
        void (*config_write)(void *dev, uint32_t offset, const uint8_t *data, uint32_t len);
        /* Optional: how many queues the driver may use with these (accepted) features; queues
         * from that index up then report size 0 and cannot be enabled. Linux numbers the queues
         * it uses consecutively (a balloon without FREE_PAGE_HINT has its reporting queue at
         * index 3, not 4): a device whose queues depend on features maps indices to roles in
         * activate(). NULL: num_queues. */
        unsigned (*queue_count)(void *dev, uint64_t features);
        /* The driver set DRIVER_OK with these features. Negative fails the device. vCPU thread.
         * Queues that are ready get a notification right after. */
        int (*activate)(void *dev, uint64_t features);
        /* Queue `q` has (or may have) work. Event thread, only while the device is live. */
        void (*queue_notify)(void *dev, unsigned q);
        /* Device reset: forget all guest-visible state. Work a worker still has in flight must
         * not reach the rings afterwards. vCPU thread, or the VM's teardown. */
        void (*reset)(void *dev);
        /* Optional. The VM is stopping: stop touching guest memory and the rings, end worker
         * threads. Called once, after the vCPUs and the event thread stopped and after flush,
         * lock NOT held (a worker may need it to finish). The core refuses pops and pushes
         * afterwards. */
        void (*quiesce)(void *dev);
        /* Optional. Deliver what the guest left queued for the host (console output) until
         * `deadline` (CLOCK_MONOTONIC), at most `max_bytes`, giving up at once when `cancel_fd`
         * becomes readable. Returns the bytes of guest output that never reached the host over
         * the device's life (this flush included). After the vCPUs and the event thread
         * stopped, before quiesce, lock NOT held (take it around queue work). */
        uint64_t (*flush)(void *dev, const struct timespec *deadline, uint64_t max_bytes,
                          int cancel_fd);
        /* Optional. Frees the device (after the transport is gone). */
        void (*destroy)(void *dev);
        /* Optional: shared-memory regions (count, and each one's placement). */
        unsigned num_shm;
        const struct virtio_shm *(*shm)(void *dev, unsigned index);
};

/* Creates the core of a device (status, features, queues, notification eventfds in env->loop).
 * `env` is copied; `ops` and `dev` must outlive it. A transport is attached later by the VM
 * (virtio_mmio_create). Returns 0 or -errno with `err` filled. */
int virtio_dev_create(const struct dev_env *env, const struct virtio_dev_ops *ops, void *dev,
                      struct virtio_dev **out, char *err, size_t errlen);
/* Frees the core and then the device (ops->destroy). After the transport is destroyed and the
 * threads are gone. NULL is a no-op. */
void virtio_dev_destroy(struct virtio_dev *vd);
/* ops->quiesce and ops->flush, for the VM's stop path (lock not held). */
void virtio_dev_quiesce(struct virtio_dev *vd);
uint64_t virtio_dev_flush(struct virtio_dev *vd, const struct timespec *deadline,
                          uint64_t max_bytes, int cancel_fd);
const char *virtio_dev_name(const struct virtio_dev *vd);
void *virtio_dev_priv(const struct virtio_dev *vd);

void virtio_lock(struct virtio_dev *vd);
void virtio_unlock(struct virtio_dev *vd);

/* --- for the device, lock held --- */

/* DRIVER_OK set and neither NEEDS_RESET nor FAILED. */
bool virtio_live(const struct virtio_dev *vd);
uint64_t virtio_features(const struct virtio_dev *vd); /* negotiated */
uint32_t virtio_status(const struct virtio_dev *vd);
const struct gmem *virtio_mem(const struct virtio_dev *vd);
const struct dev_env *virtio_env(const struct virtio_dev *vd);
/* Why the device failed ("" if it has not). */
const char *virtio_failure(const struct virtio_dev *vd);
/* Bumped at every device reset: a worker that took a chain in epoch E must not return it once
 * the epoch moved on. */
uint64_t virtio_epoch(const struct virtio_dev *vd);

/* Number of available chains on queue q (0 if not ready); -EIO if the device is not live or
 * the queue broke (the device is then failed). */
int virtio_avail(struct virtio_dev *vd, unsigned q);
/* Pops a chain: 1, 0 when empty or not ready, -EIO when the device is not live or the chain
 * was malformed (then the device is failed). Unbounded: use virtio_pop_budget in loops. */
int virtio_pop(struct virtio_dev *vd, unsigned q, struct virtq_chain *c);
/* Returns a chain; `len` = bytes written into its writable part. */
void virtio_push(struct virtio_dev *vd, unsigned q, uint16_t head, uint32_t len);
/* After a batch of pushes: interrupts the guest unless it suppressed interrupts. */
void virtio_signal_used(struct virtio_dev *vd, unsigned q);
/* Asks the driver to stop (or resume) notifying queue q. After resuming, check
 * virtio_avail() once more: a buffer posted meanwhile was not announced. */
void virtio_suppress_notify(struct virtio_dev *vd, unsigned q, bool suppress);
/* Device config changed: bump the generation and send a config interrupt. */
void virtio_config_changed(struct virtio_dev *vd);
/* Fails the device (see top of file). The first failure's reason is kept. */
void virtio_fail(struct virtio_dev *vd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Asks the event thread to run ops->queue_notify(q) soon. Any thread, lock not needed. */
void virtio_kick(struct virtio_dev *vd, unsigned q);

/* --- bounded work --- */

/* What one notification callback may still do. */
struct virtio_budget {
        unsigned chains;
        uint64_t bytes;
        bool spent; /* ran out: the queue was notified again */
};

static inline struct virtio_budget virtio_budget_default(void)
{
        return (struct virtio_budget){VIRTIO_BUDGET_CHAINS, VIRTIO_BUDGET_BYTES, false};
}

/* Pops the next chain on queue q if the budget allows one more (as virtio_pop). When the
 * budget is spent it does not pop: it re-queues q's notification (virtio_kick), sets b->spent
 * and returns 0, so the caller's loop ends and the rest is done on a later turn of the event
 * loop, after the other sources (the stop request among them) had theirs. */
int virtio_pop_budget(struct virtio_dev *vd, unsigned q, struct virtq_chain *c,
                      struct virtio_budget *b);
/* Charges `bytes` of work done; false once the byte budget is spent (then the queue was
 * notified again, as above). For a device that works through a large chain in pieces. */
bool virtio_budget_charge(struct virtio_dev *vd, unsigned q, struct virtio_budget *b,
                          uint64_t bytes);

#endif
