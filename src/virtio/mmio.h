/* virtio-mmio (version 2) transport: one 4 KiB register window on the VM's MMIO bus, split
 * virtqueues, ioeventfd/irqfd plumbing, and a device plugged in through struct virtio_dev_ops.
 *
 * Threads and locking
 * - Register accesses come from vCPU threads (through the MMIO bus) and take the transport's
 *   mutex. The device's config_read/config_write/activate/reset ops run there, lock held.
 * - Queue notifications always reach the device on the VM's event thread: each queue has an
 *   eventfd in env->loop; KVM signals it directly (ioeventfd on QueueNotify, datamatch = queue
 *   index), or, when env->ioeventfd is absent or fails, the vCPU thread that exits on the
 *   QueueNotify write signals it. ops->queue_notify then runs on the event thread, lock held.
 * - A device's own event sources (host fds) must take the same lock (virtio_mmio_lock()) around
 *   their work. Everything below marked "lock held" must be called that way; none of these
 *   calls blocks, and ops must not block for long (a vCPU may be waiting for the lock).
 * - Interrupts: an eventfd bound to the GSI with env->irqfd (edge), or env->irq_line as a level
 *   line (high while InterruptStatus is non-zero) when there is no irqfd.
 *
 * Failures caused by the guest (bad ring placement, malformed chains, activation refused) set
 * DEVICE_NEEDS_RESET, send a config-change interrupt if the driver is running, stop all queue
 * processing and report VM_STOP_ERROR through env->stop with a reason. A status write of 0
 * resets everything (queues, ioeventfds, interrupt status, ops->reset). */
#ifndef EMBER_VIRTIO_MMIO_H
#define EMBER_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dev_env.h"
#include "virtio/virtq.h"

#define VIRTIO_MMIO_WINDOW 0x1000u
#define VIRTIO_MMIO_MAGIC  0x74726976u /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x52424d45u /* "EMBR" */

/* Register offsets (virtio 1.2, 4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01u
#define VIRTIO_STATUS_DRIVER      0x02u
#define VIRTIO_STATUS_DRIVER_OK   0x04u
#define VIRTIO_STATUS_FEATURES_OK 0x08u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED      0x80u

/* Transport feature bits the transport itself offers. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29 /* not offered */
#define VIRTIO_F_VERSION_1     32

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING  0x1u
#define VIRTIO_MMIO_INT_CONFIG 0x2u

#define VIRTIO_MMIO_MAX_QUEUES 64u

struct virtio_mmio;

/* A device behind the transport. All callbacks run with the transport's lock held. */
struct virtio_dev_ops {
        const char *name;    /* for messages: "virtio-console" */
        uint32_t device_id;  /* virtio device type (3 = console) */
        uint64_t features;   /* device-specific bits; VERSION_1 and INDIRECT_DESC are added */
        unsigned num_queues; /* 1..VIRTIO_MMIO_MAX_QUEUES */
        uint16_t queue_max;  /* QueueNumMax for every queue: power of two <= VIRTQ_MAX_SIZE */
        /* Optional, num_queues entries: a QueueNumMax for that queue instead (same rules), or 0
         * for queue_max. Linux fills a receive queue to its size with page-sized buffers, so a
         * queue that only ever carries a few messages should be offered small. */
        const uint16_t *queue_sizes;
        uint32_t config_size; /* bytes of config space at 0x100 (<= 0xf00) */
        /* Guest access to config space, 1/2/4/8 bytes, already bounds-checked. vCPU thread. */
        void (*config_read)(void *dev, uint32_t offset, uint8_t *data, uint32_t len);
        void (*config_write)(void *dev, uint32_t offset, const uint8_t *data, uint32_t len);
        /* The driver set DRIVER_OK with these negotiated features. Negative fails the device.
         * vCPU thread. Queues that are ready get a notification right after. */
        int (*activate)(void *dev, uint64_t features);
        /* Queue `q` has work (or may have). Event thread, only while the device is live. */
        void (*queue_notify)(void *dev, unsigned q);
        /* Device reset: forget all guest-visible state. vCPU thread (or destroy). */
        void (*reset)(void *dev);
};

/* Registers the window [base, base+4K) on env->mmio, creates the queue eventfds (added to
 * env->loop) and the interrupt. `env` is copied; `ops` and `dev` must outlive the transport.
 * Call before the vCPUs and the event thread start. Returns 0 or -errno with `err` filled. */
int virtio_mmio_create(const struct dev_env *env, uint64_t base, uint32_t gsi,
                       const struct virtio_dev_ops *ops, void *dev, struct virtio_mmio **out,
                       char *err, size_t errlen);
/* Unregisters ioeventfds/irqfd, removes the eventfds from env->loop and frees. Call after the
 * vCPU and event threads are gone: the bus keeps its (now dangling) range, so it must not be
 * dispatched afterwards. Does not call ops->reset. NULL is a no-op. */
void virtio_mmio_destroy(struct virtio_mmio *t);

/* "virtio_mmio.device=4K@0x<base>:<gsi>" for the kernel command line. Returns the length, or
 * -ENOSPC if it does not fit in `len` bytes (NUL included). */
int virtio_mmio_cmdline(char *buf, size_t len, uint64_t base, uint32_t gsi);

void virtio_mmio_lock(struct virtio_mmio *t);
void virtio_mmio_unlock(struct virtio_mmio *t);

/* --- for the device, lock held --- */

/* DRIVER_OK set and neither NEEDS_RESET nor FAILED. */
bool virtio_mmio_live(const struct virtio_mmio *t);
uint64_t virtio_mmio_features(const struct virtio_mmio *t); /* negotiated */
const struct gmem *virtio_mmio_mem(const struct virtio_mmio *t);
uint32_t virtio_mmio_status(const struct virtio_mmio *t);
/* Why the device failed ("" if it has not). */
const char *virtio_mmio_failure(const struct virtio_mmio *t);

/* Number of available chains on queue q (0 if not ready); -EIO if the device is not live or the
 * queue broke (the device is then failed). */
int virtio_mmio_avail(struct virtio_mmio *t, unsigned q);
/* Pops a chain: 1, 0 when empty or not ready, -EIO when the device is not live or the chain
 * was malformed (then the device is failed). */
int virtio_mmio_pop(struct virtio_mmio *t, unsigned q, struct virtq_chain *c);
/* Asks the driver to stop (or resume) notifying queue q: for a queue whose new buffers the device
 * does not need to hear about now. After resuming, check virtio_mmio_avail() once more. */
void virtio_mmio_suppress_notify(struct virtio_mmio *t, unsigned q, bool suppress);
/* Returns a chain; `len` = bytes written into its writable part. */
void virtio_mmio_push(struct virtio_mmio *t, unsigned q, uint16_t head, uint32_t len);
/* After a batch of pushes: interrupts the guest unless it suppressed interrupts. */
void virtio_mmio_signal_used(struct virtio_mmio *t, unsigned q);
/* Asks the event thread to run ops->queue_notify(q) soon (e.g. to resume work later). */
void virtio_mmio_kick(struct virtio_mmio *t, unsigned q);
/* Device config changed: bump ConfigGeneration and send a config interrupt. */
void virtio_mmio_config_changed(struct virtio_mmio *t);
/* Fails the device (see top of file). The first failure's reason is kept. */
void virtio_mmio_fail(struct virtio_mmio *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
