#include "virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/err.h"
#include "virtio/transport.h"

struct virtio_mmio {
        struct dev_env env;
        struct virtio_dev *vd;
        uint64_t base;
        uint32_t gsi;
        const char *name;

        uint32_t isr;
        uint32_t dev_features_sel, drv_features_sel, queue_sel, shm_sel;
        bool coalesce_asked; /* the latch registers' coalesced zones were asked for */

        int irq_fd; /* irqfd eventfd, or -1 when using env->irq_line */
        bool irqfd_bound;
        int line_level; /* current level in irq_line mode */
};

static void eventfd_signal(int fd)
{
        uint64_t one = 1;
        while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
                ;
}

/* Lock held (the core calls it). */
static void mmio_interrupt(void *opaque, uint32_t kinds)
{
        struct virtio_mmio *t = opaque;
        t->isr |= kinds;
        if (t->irqfd_bound) {
                eventfd_signal(t->irq_fd);
        } else if (t->env.irq_line) {
                /* ember routes every pin as an edge MSI: each new interrupt is a fresh edge,
                 * whether or not an earlier one is still unacknowledged. */
                if (t->line_level)
                        t->env.irq_line(t->env.hv, t->gsi, 0);
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

static int mmio_bind_notify(void *opaque, unsigned q, int fd, bool assign)
{
        struct virtio_mmio *t = opaque;
        if (!t->env.ioeventfd)
                return -ENOSYS;
        return t->env.ioeventfd(t->env.hv, fd, t->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, true, q,
                                assign);
}

static const struct virtio_transport_ops mmio_transport_ops = {
    .interrupt = mmio_interrupt,
    .bind_notify = mmio_bind_notify,
};

static void write_status(struct virtio_mmio *t, uint32_t v)
{
        virtio_t_set_status(t->vd, v);
        if ((v & 0xff) == 0) {
                ack_irq(t, ~0u);
                t->dev_features_sel = t->drv_features_sel = t->queue_sel = 0;
        }
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
        struct virtio_queue_regs *qw = virtio_t_queue_regs_w(t->vd, t->queue_sel);

        switch (off) {
        case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
                t->dev_features_sel = v;
                break;
        case VIRTIO_MMIO_DRIVER_FEATURES:
                virtio_t_set_driver_features(t->vd, t->drv_features_sel, v);
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
                virtio_t_queue_enable(t->vd, t->queue_sel, v & 1);
                break;
        case VIRTIO_MMIO_QUEUE_NOTIFY:
                /* Reached only when KVM did not take the write (no ioeventfd). */
                virtio_t_notify(t->vd, v);
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
        case VIRTIO_MMIO_SHM_SEL:
                t->shm_sel = v;
                break;
        default:
                /* Read-only, legacy-only (GuestPageSize, QueuePFN, ...) or unknown: ignored. */
                break;
        }
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
        const struct virtio_queue_regs *q = virtio_t_queue_regs(t->vd, t->queue_sel);
        const struct virtio_shm *shm;

        switch (off) {
        case VIRTIO_MMIO_MAGIC_VALUE:
                return VIRTIO_MMIO_MAGIC;
        case VIRTIO_MMIO_VERSION:
                return 2;
        case VIRTIO_MMIO_DEVICE_ID:
                return virtio_t_ops(t->vd)->device_id;
        case VIRTIO_MMIO_VENDOR_ID:
                return VIRTIO_MMIO_VENDOR;
        case VIRTIO_MMIO_DEVICE_FEATURES:
                if (t->dev_features_sel >= 2)
                        return 0;
                return (uint32_t)(virtio_t_offered(t->vd) >> (32 * t->dev_features_sel));
        case VIRTIO_MMIO_QUEUE_NUM_MAX:
                return virtio_t_queue_num_max(t->vd, t->queue_sel);
        case VIRTIO_MMIO_QUEUE_READY:
                return virtio_t_queue_ready(t->vd, t->queue_sel);
        case VIRTIO_MMIO_INTERRUPT_STATUS:
                return t->isr;
        case VIRTIO_MMIO_STATUS:
                return virtio_status(t->vd);
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
                shm = virtio_t_shm(t->vd, t->shm_sel);
                if (!shm)
                        return 0xffffffffu; /* no such region: length -1 */
                return (uint32_t)(shm->len >> (off == VIRTIO_MMIO_SHM_LEN_HIGH ? 32 : 0));
        case VIRTIO_MMIO_SHM_BASE_LOW:
        case VIRTIO_MMIO_SHM_BASE_HIGH:
                shm = virtio_t_shm(t->vd, t->shm_sel);
                if (!shm)
                        return 0xffffffffu;
                return (uint32_t)(shm->gpa >> (off == VIRTIO_MMIO_SHM_BASE_HIGH ? 32 : 0));
        case VIRTIO_MMIO_CONFIG_GENERATION:
                return virtio_t_generation(t->vd);
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

static void bus_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct virtio_mmio *t = opaque;
        memset(data, 0, len);
        virtio_lock(t->vd);
        ask_coalescing(t);
        if (off >= VIRTIO_MMIO_CONFIG) {
                virtio_t_config_read(t->vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
        } else if (len == 4 && off % 4 == 0) {
                uint32_t v = reg_read(t, off);
                memcpy(data, &v, 4);
        }
        virtio_unlock(t->vd);
}

static void bus_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct virtio_mmio *t = opaque;
        virtio_lock(t->vd);
        ask_coalescing(t);
        if (off >= VIRTIO_MMIO_CONFIG) {
                virtio_t_config_write(t->vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
        } else if (len == 4 && off % 4 == 0) {
                uint32_t v;
                memcpy(&v, data, 4);
                reg_write(t, off, v);
        }
        virtio_unlock(t->vd);
}

static const struct bus_dev_ops mmio_bus_ops = {.read = bus_read, .write = bus_write};

int virtio_mmio_cmdline(char *buf, size_t len, uint64_t base, uint32_t gsi)
{
        int n =
            snprintf(buf, len, "virtio_mmio.device=4K@0x%llx:%u", (unsigned long long)base, gsi);
        if (n < 0 || (size_t)n >= len)
                return -ENOSPC;
        return n;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
        if (!t)
                return;
        if (t->vd)
                virtio_t_detach(t->vd);
        if (t->irqfd_bound)
                t->env.irqfd(t->env.hv, t->irq_fd, t->gsi, false);
        if (t->irq_fd >= 0)
                close(t->irq_fd);
        free(t);
}

int virtio_mmio_create(const struct dev_env *env, uint64_t base, uint32_t gsi,
                       struct virtio_dev *vd, struct virtio_mmio **out, char *err, size_t errlen)
{
        *out = NULL;
        if (!env || !env->mmio || !vd)
                return ember_errf(err, errlen, EINVAL, "virtio-mmio: invalid arguments");
        const struct virtio_dev_ops *ops = virtio_t_ops(vd);
        if (ops->config_size > VIRTIO_MMIO_WINDOW - VIRTIO_MMIO_CONFIG)
                return ember_errf(err, errlen, EINVAL, "%s: config space too large for MMIO",
                                  ops->name);
        if (!env->irqfd && !env->irq_line)
                return ember_errf(err, errlen, EINVAL, "%s: no way to raise interrupts", ops->name);
        struct virtio_mmio *t = calloc(1, sizeof(*t));
        if (!t)
                return ember_errf(err, errlen, ENOMEM, "%s: out of memory", ops->name);
        t->env = *env;
        t->vd = NULL;
        t->base = base;
        t->gsi = gsi;
        t->name = ops->name;
        t->irq_fd = -1;
        int r;
        if (env->irqfd) {
                t->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (t->irq_fd < 0) {
                        r = ember_errf(err, errlen, errno, "%s: eventfd: %s", ops->name,
                                       strerror(errno));
                        goto fail;
                }
                if (env->irqfd(env->hv, t->irq_fd, gsi, true) == 0) {
                        t->irqfd_bound = true;
                } else if (!env->irq_line) {
                        r = ember_errf(err, errlen, EIO, "%s: binding GSI %u with irqfd failed",
                                       ops->name, gsi);
                        goto fail;
                }
        }
        r = bus_add(env->mmio, base, VIRTIO_MMIO_WINDOW, &mmio_bus_ops, t, ops->name);
        if (r < 0) {
                ember_errf(err, errlen, r, "%s: MMIO window at 0x%llx: %s", ops->name,
                           (unsigned long long)base, strerror(-r));
                goto fail;
        }
        t->vd = vd;
        virtio_t_attach(vd, &mmio_transport_ops, t);
        *out = t;
        return 0;
fail:
        virtio_mmio_destroy(t);
        return r;
}
