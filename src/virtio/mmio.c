#include "core/vm_internal.h"
#include "virtio/mmio.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define STATUS_DRIVER_BITS                                                                         \
        (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |            \
         VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED)

struct mmio_queue {
        struct virtio_mmio *t;
        unsigned index;
        uint32_t num;
        uint64_t desc, driver, device;
        int notify_fd;
        bool in_loop;
        bool ioeventfd; /* KVM signals notify_fd for us */
        struct virtq vq;
};

struct virtio_mmio {
        struct dev_env env;
        uint64_t base;
        uint32_t gsi;
        const struct virtio_dev_ops *ops;
        void *dev;
        pthread_mutex_t lock;

        uint32_t status;
        uint32_t isr;
        uint32_t generation;
        uint32_t dev_features_sel, drv_features_sel, queue_sel;
        uint64_t offered;
        uint64_t driver_features;

        bool coalesce_asked; /* the latch registers' coalesced zones were asked for */

        int irq_fd; /* irqfd eventfd, or -1 when using env->irq_line */
        bool irqfd_bound;
        int line_level; /* current level in irq_line mode */

        char why[160];
        struct mmio_queue q[];
};

static void eventfd_signal(int fd)
{
        uint64_t one = 1;
        /* EAGAIN means the counter is saturated: it is readable anyway. */
        while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
                ;
}

static void eventfd_drain(int fd)
{
        uint64_t v;
        while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
                ;
}

static struct mmio_queue *sel_queue(struct virtio_mmio *t)
{
        return t->queue_sel < t->ops->num_queues ? &t->q[t->queue_sel] : NULL;
}

void virtio_mmio_lock(struct virtio_mmio *t)
{
        pthread_mutex_lock(&t->lock);
}

void virtio_mmio_unlock(struct virtio_mmio *t)
{
        pthread_mutex_unlock(&t->lock);
}

bool virtio_mmio_live(const struct virtio_mmio *t)
{
        return (t->status & VIRTIO_STATUS_DRIVER_OK) &&
               !(t->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

uint64_t virtio_mmio_features(const struct virtio_mmio *t)
{
        return t->driver_features;
}

const struct gmem *virtio_mmio_mem(const struct virtio_mmio *t)
{
        return t->env.mem;
}

uint32_t virtio_mmio_status(const struct virtio_mmio *t)
{
        return t->status;
}

const char *virtio_mmio_failure(const struct virtio_mmio *t)
{
        return t->why;
}

static void raise_irq(struct virtio_mmio *t, uint32_t bits)
{
        t->isr |= bits;
        if (t->irqfd_bound) {
                eventfd_signal(t->irq_fd);
        } else if (t->env.irq_line && !t->line_level) {
                t->line_level = 1;
                t->env.irq_line(t->env.hv, t->gsi, 1);
        }
}

static void ack_irq(struct virtio_mmio *t, uint32_t bits)
{
        t->isr &= ~bits;
        if (!t->irqfd_bound && t->env.irq_line && t->line_level && !t->isr) {
                t->line_level = 0;
                t->env.irq_line(t->env.hv, t->gsi, 0);
        }
}

void virtio_mmio_fail(struct virtio_mmio *t, const char *fmt, ...)
{
        if (t->status & VIRTIO_STATUS_NEEDS_RESET)
                return;
        int n = snprintf(t->why, sizeof(t->why), "%s: ", t->ops->name);
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < sizeof(t->why))
                vsnprintf(t->why + n, sizeof(t->why) - n, fmt, ap);
        va_end(ap);
        t->status |= VIRTIO_STATUS_NEEDS_RESET;
        if (t->status & VIRTIO_STATUS_DRIVER_OK)
                raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
        if (t->env.stop)
                t->env.stop(t->env.hv, VM_STOP_ERROR, 0, t->why);
}

static void queue_stop(struct virtio_mmio *t, struct mmio_queue *q)
{
        if (q->ioeventfd && t->env.ioeventfd)
                t->env.ioeventfd(t->env.hv, q->notify_fd, t->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4,
                                 true, q->index, false);
        q->ioeventfd = false;
        virtq_reset(&q->vq);
}

static uint16_t queue_num_max(const struct virtio_dev_ops *ops, unsigned index)
{
        return ops->queue_sizes && ops->queue_sizes[index] ? ops->queue_sizes[index]
                                                           : ops->queue_max;
}

static void queue_start(struct virtio_mmio *t, struct mmio_queue *q)
{
        if (!(t->status & VIRTIO_STATUS_FEATURES_OK) ||
            (t->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)))
                return;
        bool indirect = t->driver_features & (1ull << VIRTIO_F_INDIRECT_DESC);
        uint16_t max = queue_num_max(t->ops, q->index);
        if (q->num > max) {
                virtio_mmio_fail(t, "queue %u: size %u above the maximum %u", q->index, q->num,
                                 max);
                return;
        }
        if (virtq_setup(&q->vq, t->env.mem, q->num, q->desc, q->driver, q->device, indirect) < 0) {
                virtio_mmio_fail(t, "queue %u: %s", q->index, q->vq.error);
                return;
        }
        if (t->env.ioeventfd &&
            t->env.ioeventfd(t->env.hv, q->notify_fd, t->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, true,
                             q->index, true) == 0)
                q->ioeventfd = true;
        /* Buffers made available before the queue went live still need a look. */
        if (virtio_mmio_live(t))
                eventfd_signal(q->notify_fd);
}

static void device_reset(struct virtio_mmio *t)
{
        for (unsigned i = 0; i < t->ops->num_queues; i++) {
                struct mmio_queue *q = &t->q[i];
                queue_stop(t, q);
                q->num = 0;
                q->desc = q->driver = q->device = 0;
        }
        if (t->ops->reset)
                t->ops->reset(t->dev);
        ack_irq(t, ~0u);
        t->status = 0;
        t->dev_features_sel = t->drv_features_sel = t->queue_sel = 0;
        t->driver_features = 0;
        t->why[0] = 0;
}

static void write_status(struct virtio_mmio *t, uint32_t v)
{
        v &= 0xff;
        if (v == 0) {
                device_reset(t);
                return;
        }
        /* Bits only accumulate until reset; NEEDS_RESET belongs to the device. */
        uint32_t added = (v & STATUS_DRIVER_BITS) & ~t->status;
        if (added & VIRTIO_STATUS_FEATURES_OK) {
                bool ok = (t->status & VIRTIO_STATUS_DRIVER) &&
                          !(t->driver_features & ~t->offered) &&
                          (t->driver_features & (1ull << VIRTIO_F_VERSION_1));
                if (!ok)
                        added &= ~VIRTIO_STATUS_FEATURES_OK;
        }
        if ((added & VIRTIO_STATUS_DRIVER_OK) && !((t->status | added) & VIRTIO_STATUS_FEATURES_OK))
                added &= ~VIRTIO_STATUS_DRIVER_OK;
        t->status |= added;
        if (!(added & VIRTIO_STATUS_DRIVER_OK) || !virtio_mmio_live(t))
                return;
        if (t->ops->activate && t->ops->activate(t->dev, t->driver_features) < 0) {
                virtio_mmio_fail(t, "the device refused to start with features 0x%llx",
                                 (unsigned long long)t->driver_features);
                return;
        }
        for (unsigned i = 0; i < t->ops->num_queues; i++)
                if (t->q[i].vq.ready)
                        eventfd_signal(t->q[i].notify_fd);
}

static void write_queue_ready(struct virtio_mmio *t, struct mmio_queue *q, uint32_t v)
{
        if (v & 1) {
                if (!q->vq.ready)
                        queue_start(t, q);
                return;
        }
        if (!q->vq.ready)
                return;
        /* Without VIRTIO_F_RING_RESET a running device cannot lose a queue. */
        if (virtio_mmio_live(t)) {
                virtio_mmio_fail(t, "queue %u disabled while the device runs", q->index);
                return;
        }
        queue_stop(t, q);
}

static void set_half(uint64_t *reg, bool high, uint32_t v)
{
        if (high)
                *reg = (*reg & 0xffffffffull) | ((uint64_t)v << 32);
        else
                *reg = (*reg & ~0xffffffffull) | v;
}

static void reg_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
        struct mmio_queue *q = sel_queue(t);
        /* Queue layout is frozen while the queue is enabled. */
        struct mmio_queue *qw = q && !q->vq.ready ? q : NULL;

        switch (off) {
        case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
                t->dev_features_sel = v;
                break;
        case VIRTIO_MMIO_DRIVER_FEATURES:
                if ((t->status & VIRTIO_STATUS_DRIVER) &&
                    !(t->status & VIRTIO_STATUS_FEATURES_OK) && t->drv_features_sel < 2)
                        set_half(&t->driver_features, t->drv_features_sel == 1, v);
                break;
        case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
                t->drv_features_sel = v;
                break;
        case VIRTIO_MMIO_QUEUE_SEL:
                t->queue_sel = v;
                break;
        case VIRTIO_MMIO_QUEUE_NUM:
                if (qw)
                        qw->num = v;
                break;
        case VIRTIO_MMIO_QUEUE_READY:
                if (q)
                        write_queue_ready(t, q, v);
                break;
        case VIRTIO_MMIO_QUEUE_NOTIFY:
                /* Reached only when KVM did not take the write (no ioeventfd). */
                if (v < t->ops->num_queues && t->q[v].vq.ready)
                        eventfd_signal(t->q[v].notify_fd);
                break;
        case VIRTIO_MMIO_INTERRUPT_ACK:
                ack_irq(t, v);
                break;
        case VIRTIO_MMIO_STATUS:
                write_status(t, v);
                break;
        case VIRTIO_MMIO_QUEUE_DESC_LOW:
        case VIRTIO_MMIO_QUEUE_DESC_HIGH:
                if (qw)
                        set_half(&qw->desc, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
                break;
        case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
        case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
                if (qw)
                        set_half(&qw->driver, off == VIRTIO_MMIO_QUEUE_DRIVER_HIGH, v);
                break;
        case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
        case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
                if (qw)
                        set_half(&qw->device, off == VIRTIO_MMIO_QUEUE_DEVICE_HIGH, v);
                break;
        default:
                /* Read-only, legacy-only (GuestPageSize, QueuePFN, ...) or unknown: ignored. */
                break;
        }
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
        struct mmio_queue *q = sel_queue(t);

        switch (off) {
        case VIRTIO_MMIO_MAGIC_VALUE:
                return VIRTIO_MMIO_MAGIC;
        case VIRTIO_MMIO_VERSION:
                return 2;
        case VIRTIO_MMIO_DEVICE_ID:
                return t->ops->device_id;
        case VIRTIO_MMIO_VENDOR_ID:
                return VIRTIO_MMIO_VENDOR;
        case VIRTIO_MMIO_DEVICE_FEATURES:
                if (t->dev_features_sel >= 2)
                        return 0;
                return (uint32_t)(t->offered >> (32 * t->dev_features_sel));
        case VIRTIO_MMIO_QUEUE_NUM_MAX:
                return q ? queue_num_max(t->ops, q->index) : 0;
        case VIRTIO_MMIO_QUEUE_READY:
                return q ? q->vq.ready : 0;
        case VIRTIO_MMIO_INTERRUPT_STATUS:
                return t->isr;
        case VIRTIO_MMIO_STATUS:
                return t->status;
        case VIRTIO_MMIO_QUEUE_DESC_LOW:
                return q ? (uint32_t)q->desc : 0;
        case VIRTIO_MMIO_QUEUE_DESC_HIGH:
                return q ? (uint32_t)(q->desc >> 32) : 0;
        case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
                return q ? (uint32_t)q->driver : 0;
        case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
                return q ? (uint32_t)(q->driver >> 32) : 0;
        case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
                return q ? (uint32_t)q->device : 0;
        case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
                return q ? (uint32_t)(q->device >> 32) : 0;
        case VIRTIO_MMIO_SHM_LEN_LOW:
        case VIRTIO_MMIO_SHM_LEN_HIGH:
                return 0xffffffffu; /* no shared memory regions: length -1 */
        case VIRTIO_MMIO_CONFIG_GENERATION:
                return t->generation;
        default:
                return 0;
        }
}

/* Registers whose writes only latch a value (selectors, feature words, queue size and ring
 * addresses) or are ignored (read-only ones): [0, QueueReady) and [QueueDescLow, ShmLenLow).
 * Each takes effect at a later access that exits anyway (a read, QueueReady, Status), and the
 * queued writes are replayed before it, so KVM may queue them instead of exiting: a Linux
 * driver setting up a queue writes 8 of them. Asked for at the guest's first access, not at
 * creation, so that a VM that never uses the device binds nothing on KVM's I/O bus (see
 * dev/ioapic.c). */
static void ask_coalescing(struct virtio_mmio *t)
{
        if (t->coalesce_asked || !t->env.coalesce_writes)
                return;
        t->coalesce_asked = true;
        if (t->env.coalesce_writes(t->env.hv, t->base, VIRTIO_MMIO_QUEUE_READY) == 0)
                t->env.coalesce_writes(t->env.hv, t->base + VIRTIO_MMIO_QUEUE_DESC_LOW,
                                       VIRTIO_MMIO_SHM_LEN_LOW - VIRTIO_MMIO_QUEUE_DESC_LOW);
}

static bool config_access_ok(const struct virtio_mmio *t, uint64_t off, uint32_t len)
{
        if (len != 1 && len != 2 && len != 4 && len != 8)
                return false;
        off -= VIRTIO_MMIO_CONFIG;
        return off < t->ops->config_size && len <= t->ops->config_size - off;
}

static void bus_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct virtio_mmio *t = opaque;
        memset(data, 0, len);
        pthread_mutex_lock(&t->lock);
        ask_coalescing(t);
        if (off >= VIRTIO_MMIO_CONFIG) {
                if (config_access_ok(t, off, len) && t->ops->config_read)
                        t->ops->config_read(t->dev, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data,
                                            len);
        } else if (len == 4 && off % 4 == 0) {
                uint32_t v = reg_read(t, off);
                memcpy(data, &v, 4);
        }
        pthread_mutex_unlock(&t->lock);
}

static void bus_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct virtio_mmio *t = opaque;
        pthread_mutex_lock(&t->lock);
        ask_coalescing(t);
        if (off >= VIRTIO_MMIO_CONFIG) {
                if (config_access_ok(t, off, len) && t->ops->config_write)
                        t->ops->config_write(t->dev, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data,
                                             len);
        } else if (len == 4 && off % 4 == 0) {
                uint32_t v;
                memcpy(&v, data, 4);
                reg_write(t, off, v);
        }
        pthread_mutex_unlock(&t->lock);
}

static const struct bus_dev_ops mmio_bus_ops = {.read = bus_read, .write = bus_write};

static void notify_ready(void *opaque, uint32_t events)
{
        struct mmio_queue *q = opaque;
        struct virtio_mmio *t = q->t;
        eventfd_drain(q->notify_fd);
        pthread_mutex_lock(&t->lock);
        if (virtio_mmio_live(t) && q->vq.ready && !q->vq.broken && t->ops->queue_notify)
                t->ops->queue_notify(t->dev, q->index);
        pthread_mutex_unlock(&t->lock);
}

int virtio_mmio_avail(struct virtio_mmio *t, unsigned qi)
{
        if (qi >= t->ops->num_queues)
                return 0;
        if (!virtio_mmio_live(t))
                return -EIO;
        struct mmio_queue *q = &t->q[qi];
        int n = virtq_avail_count(&q->vq);
        if (n < 0)
                virtio_mmio_fail(t, "queue %u: %s", qi, q->vq.error);
        return n;
}

int virtio_mmio_pop(struct virtio_mmio *t, unsigned qi, struct virtq_chain *c)
{
        if (qi >= t->ops->num_queues)
                return 0;
        if (!virtio_mmio_live(t))
                return -EIO;
        struct mmio_queue *q = &t->q[qi];
        int r = virtq_pop(&q->vq, c);
        if (r < 0)
                virtio_mmio_fail(t, "queue %u: %s", qi, q->vq.error);
        return r;
}

void virtio_mmio_suppress_notify(struct virtio_mmio *t, unsigned qi, bool suppress)
{
        if (qi < t->ops->num_queues)
                virtq_suppress_notify(&t->q[qi].vq, suppress);
}

void virtio_mmio_push(struct virtio_mmio *t, unsigned qi, uint16_t head, uint32_t len)
{
        if (qi < t->ops->num_queues)
                virtq_push(&t->q[qi].vq, head, len);
}

void virtio_mmio_signal_used(struct virtio_mmio *t, unsigned qi)
{
        if (qi < t->ops->num_queues && virtq_need_interrupt(&t->q[qi].vq))
                raise_irq(t, VIRTIO_MMIO_INT_VRING);
}

void virtio_mmio_kick(struct virtio_mmio *t, unsigned qi)
{
        if (qi < t->ops->num_queues)
                eventfd_signal(t->q[qi].notify_fd);
}

void virtio_mmio_config_changed(struct virtio_mmio *t)
{
        t->generation++;
        if (t->status & VIRTIO_STATUS_DRIVER_OK)
                raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

int virtio_mmio_cmdline(char *buf, size_t len, uint64_t base, uint32_t gsi)
{
        int n =
            snprintf(buf, len, "virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)base, gsi);
        if (n < 0 || (size_t)n >= len)
                return -ENOSPC;
        return n;
}

static bool queue_size_valid(uint16_t n)
{
        return n >= 1 && n <= VIRTQ_MAX_SIZE && !(n & (n - 1));
}

static bool ops_valid(const struct virtio_dev_ops *ops)
{
        if (!ops->name || ops->num_queues < 1 || ops->num_queues > VIRTIO_MMIO_MAX_QUEUES ||
            ops->config_size > VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG ||
            (ops->features & (1ull << VIRTIO_F_EVENT_IDX)))
                return false;
        for (unsigned i = 0; i < ops->num_queues; i++)
                if (!queue_size_valid(queue_num_max(ops, i)))
                        return false;
        return true;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
        if (!t)
                return;
        for (unsigned i = 0; i < t->ops->num_queues; i++) {
                struct mmio_queue *q = &t->q[i];
                if (q->notify_fd < 0)
                        continue;
                queue_stop(t, q);
                if (q->in_loop)
                        evloop_del(t->env.loop, q->notify_fd);
                close(q->notify_fd);
        }
        if (t->irqfd_bound)
                t->env.irqfd(t->env.hv, t->irq_fd, t->gsi, false);
        if (t->irq_fd >= 0)
                close(t->irq_fd);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

int virtio_mmio_create(const struct dev_env *env, uint64_t base, uint32_t gsi,
                       const struct virtio_dev_ops *ops, void *dev, struct virtio_mmio **out,
                       char *err, size_t errlen)
{
        *out = NULL;
        if (!env || !env->mem || !env->loop || !env->mmio || !ops || !ops_valid(ops)) {
                ember_errf(err, errlen, 0, "virtio-mmio: invalid device description");
                return -EINVAL;
        }
        if (!env->irqfd && !env->irq_line) {
                ember_errf(err, errlen, 0, "%s: no way to raise interrupts", ops->name);
                return -EINVAL;
        }
        struct virtio_mmio *t = calloc(1, sizeof(*t) + ops->num_queues * sizeof(t->q[0]));
        if (!t) {
                ember_errf(err, errlen, 0, "%s: out of memory", ops->name);
                return -ENOMEM;
        }
        t->env = *env;
        t->base = base;
        t->gsi = gsi;
        t->ops = ops;
        t->dev = dev;
        t->irq_fd = -1;
        t->offered =
            ops->features | (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_INDIRECT_DESC);
        pthread_mutex_init(&t->lock, NULL);
        for (unsigned i = 0; i < ops->num_queues; i++) {
                t->q[i].t = t;
                t->q[i].index = i;
                t->q[i].notify_fd = -1;
                t->q[i].vq.mem = env->mem;
        }

        int r;
        for (unsigned i = 0; i < ops->num_queues; i++) {
                struct mmio_queue *q = &t->q[i];
                q->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (q->notify_fd < 0) {
                        r = -errno;
                        ember_errf(err, errlen, 0, "%s: eventfd: %s", ops->name, strerror(-r));
                        goto fail;
                }
                r = evloop_add(env->loop, q->notify_fd, EPOLLIN, notify_ready, q);
                if (r < 0) {
                        ember_errf(err, errlen, 0, "%s: adding queue %u to the event loop: %s",
                                   ops->name, i, strerror(-r));
                        goto fail;
                }
                q->in_loop = true;
        }
        if (env->irqfd) {
                t->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (t->irq_fd < 0) {
                        r = -errno;
                        ember_errf(err, errlen, 0, "%s: eventfd: %s", ops->name, strerror(-r));
                        goto fail;
                }
                if (env->irqfd(env->hv, t->irq_fd, gsi, true) == 0) {
                        t->irqfd_bound = true;
                } else if (!env->irq_line) {
                        ember_errf(err, errlen, 0, "%s: binding GSI %u with irqfd failed",
                                   ops->name, gsi);
                        r = -EIO;
                        goto fail;
                }
        }
        r = bus_add(env->mmio, base, VIRTIO_MMIO_WINDOW, &mmio_bus_ops, t, ops->name);
        if (r < 0) {
                ember_errf(err, errlen, 0, "%s: MMIO window at 0x%llx: %s", ops->name,
                           (unsigned long long)base, strerror(-r));
                goto fail;
        }
        *out = t;
        return 0;
fail:
        virtio_mmio_destroy(t);
        return r;
}
