#include "virtio/virtio.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/err.h"
#include "virtio/transport.h"

#define STATUS_DRIVER_BITS                                                                         \
        (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |            \
         VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED)

struct virtio_queue {
        struct virtio_dev *vd;
        unsigned index;
        struct virtio_queue_regs regs;
        int notify_fd;
        bool in_loop;
        bool bound; /* the transport had the hypervisor signal notify_fd */
        struct virtq vq;
};

struct virtio_dev {
        struct dev_env env;
        const struct virtio_dev_ops *ops;
        void *dev;
        pthread_mutex_t lock;

        const struct virtio_transport_ops *tops;
        void *t;

        uint32_t status;
        uint32_t generation;
        uint64_t offered;
        uint64_t driver_features;
        unsigned usable_queues; /* after FEATURES_OK: ops->queue_count */
        uint64_t epoch;
        bool quiesced;

        char why[160];
        struct virtio_queue q[];
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

void virtio_lock(struct virtio_dev *vd)
{
        pthread_mutex_lock(&vd->lock);
}

void virtio_unlock(struct virtio_dev *vd)
{
        pthread_mutex_unlock(&vd->lock);
}

bool virtio_live(const struct virtio_dev *vd)
{
        return (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
               !(vd->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

uint64_t virtio_features(const struct virtio_dev *vd)
{
        return vd->driver_features;
}

uint32_t virtio_status(const struct virtio_dev *vd)
{
        return vd->status;
}

const struct gmem *virtio_mem(const struct virtio_dev *vd)
{
        return vd->env.mem;
}

const struct dev_env *virtio_env(const struct virtio_dev *vd)
{
        return &vd->env;
}

const char *virtio_failure(const struct virtio_dev *vd)
{
        return vd->why;
}

uint64_t virtio_epoch(const struct virtio_dev *vd)
{
        return vd->epoch;
}

const char *virtio_dev_name(const struct virtio_dev *vd)
{
        return vd->ops->name;
}

void *virtio_dev_priv(const struct virtio_dev *vd)
{
        return vd->dev;
}

static void interrupt(struct virtio_dev *vd, uint32_t kinds)
{
        if (vd->tops && vd->tops->interrupt)
                vd->tops->interrupt(vd->t, kinds);
}

void virtio_fail(struct virtio_dev *vd, const char *fmt, ...)
{
        if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
                return;
        int n = snprintf(vd->why, sizeof(vd->why), "%s: ", vd->ops->name);
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < sizeof(vd->why))
                vsnprintf(vd->why + n, sizeof(vd->why) - n, fmt, ap);
        va_end(ap);
        vd->status |= VIRTIO_STATUS_NEEDS_RESET;
        if (vd->status & VIRTIO_STATUS_DRIVER_OK)
                interrupt(vd, VIRTIO_INT_CONFIG);
        if (vd->env.stop)
                vd->env.stop(vd->env.hv, VM_STOP_ERROR, 0, vd->why);
}

/* ------------------------------------------------------------------ queues */

static uint16_t queue_num_max(const struct virtio_dev_ops *ops, unsigned index)
{
        return ops->queue_sizes && ops->queue_sizes[index] ? ops->queue_sizes[index]
                                                           : ops->queue_max;
}

static void queue_stop(struct virtio_dev *vd, struct virtio_queue *q)
{
        if (q->bound && vd->tops && vd->tops->bind_notify)
                vd->tops->bind_notify(vd->t, q->index, q->notify_fd, false);
        q->bound = false;
        virtq_reset(&q->vq);
}

static void queue_start(struct virtio_dev *vd, struct virtio_queue *q)
{
        if (!(vd->status & VIRTIO_STATUS_FEATURES_OK) ||
            (vd->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)))
                return;
        if (q->index >= vd->usable_queues) {
                virtio_fail(vd, "queue %u enabled, but the negotiated features give %u queues",
                            q->index, vd->usable_queues);
                return;
        }
        bool indirect = vd->driver_features & (1ull << VIRTIO_F_INDIRECT_DESC);
        uint16_t max = queue_num_max(vd->ops, q->index);
        if (q->regs.num > max) {
                virtio_fail(vd, "queue %u: size %u above the maximum %u", q->index, q->regs.num,
                            max);
                return;
        }
        if (virtq_setup(&q->vq, vd->env.mem, q->regs.num, q->regs.desc, q->regs.driver,
                        q->regs.device, indirect) < 0) {
                virtio_fail(vd, "queue %u: %s", q->index, q->vq.error);
                return;
        }
        if (vd->tops && vd->tops->bind_notify &&
            vd->tops->bind_notify(vd->t, q->index, q->notify_fd, true) == 0)
                q->bound = true;
        /* Buffers made available before the queue went live still need a look. */
        if (virtio_live(vd))
                eventfd_signal(q->notify_fd);
}

static void device_reset(struct virtio_dev *vd)
{
        for (unsigned i = 0; i < vd->ops->num_queues; i++) {
                struct virtio_queue *q = &vd->q[i];
                queue_stop(vd, q);
                q->regs = (struct virtio_queue_regs){0};
        }
        vd->epoch++;
        if (vd->ops->reset)
                vd->ops->reset(vd->dev);
        vd->status = 0;
        vd->driver_features = 0;
        vd->usable_queues = vd->ops->num_queues;
        vd->why[0] = 0;
}

static unsigned usable_queues(const struct virtio_dev *vd)
{
        if (!vd->ops->queue_count)
                return vd->ops->num_queues;
        unsigned n = vd->ops->queue_count(vd->dev, vd->driver_features);
        return n < vd->ops->num_queues ? n : vd->ops->num_queues;
}

void virtio_t_set_status(struct virtio_dev *vd, uint32_t v)
{
        v &= 0xff;
        if (v == 0) {
                device_reset(vd);
                return;
        }
        /* Bits only accumulate until reset; NEEDS_RESET belongs to the device. */
        uint32_t added = (v & STATUS_DRIVER_BITS) & ~vd->status;
        if (added & VIRTIO_STATUS_FEATURES_OK) {
                bool ok = (vd->status & VIRTIO_STATUS_DRIVER) &&
                          !(vd->driver_features & ~vd->offered) &&
                          (vd->driver_features & (1ull << VIRTIO_F_VERSION_1));
                if (!ok)
                        added &= ~VIRTIO_STATUS_FEATURES_OK;
                else
                        vd->usable_queues = usable_queues(vd);
        }
        if ((added & VIRTIO_STATUS_DRIVER_OK) &&
            !((vd->status | added) & VIRTIO_STATUS_FEATURES_OK))
                added &= ~VIRTIO_STATUS_DRIVER_OK;
        vd->status |= added;
        if (!(added & VIRTIO_STATUS_DRIVER_OK) || !virtio_live(vd))
                return;
        if (vd->ops->activate && vd->ops->activate(vd->dev, vd->driver_features) < 0) {
                virtio_fail(vd, "the device refused to start with features 0x%llx",
                            (unsigned long long)vd->driver_features);
                return;
        }
        for (unsigned i = 0; i < vd->ops->num_queues; i++)
                if (vd->q[i].vq.ready)
                        eventfd_signal(vd->q[i].notify_fd);
}

void virtio_t_set_driver_features(struct virtio_dev *vd, uint32_t sel, uint32_t v)
{
        if (!(vd->status & VIRTIO_STATUS_DRIVER) || (vd->status & VIRTIO_STATUS_FEATURES_OK) ||
            sel >= 2)
                return;
        if (sel)
                vd->driver_features = (vd->driver_features & 0xffffffffull) | ((uint64_t)v << 32);
        else
                vd->driver_features = (vd->driver_features & ~0xffffffffull) | v;
}

uint64_t virtio_t_offered(const struct virtio_dev *vd)
{
        return vd->offered;
}

const struct virtio_dev_ops *virtio_t_ops(const struct virtio_dev *vd)
{
        return vd->ops;
}

uint32_t virtio_t_generation(const struct virtio_dev *vd)
{
        return vd->generation;
}

void virtio_t_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len)
{
        memset(data, 0, len);
        if ((len != 1 && len != 2 && len != 4 && len != 8) || off >= vd->ops->config_size ||
            len > vd->ops->config_size - off || !vd->ops->config_read)
                return;
        vd->ops->config_read(vd->dev, off, data, len);
}

void virtio_t_config_write(struct virtio_dev *vd, uint32_t off, const uint8_t *data, uint32_t len)
{
        if ((len != 1 && len != 2 && len != 4 && len != 8) || off >= vd->ops->config_size ||
            len > vd->ops->config_size - off || !vd->ops->config_write)
                return;
        vd->ops->config_write(vd->dev, off, data, len);
}

unsigned virtio_t_num_queues(const struct virtio_dev *vd)
{
        return vd->ops->num_queues;
}

uint16_t virtio_t_queue_num_max(const struct virtio_dev *vd, unsigned q)
{
        if (q >= vd->ops->num_queues)
                return 0;
        /* Past the queues the negotiated features give: no such queue. */
        if ((vd->status & VIRTIO_STATUS_FEATURES_OK) && q >= vd->usable_queues)
                return 0;
        return queue_num_max(vd->ops, q);
}

const struct virtio_queue_regs *virtio_t_queue_regs(const struct virtio_dev *vd, unsigned q)
{
        return q < vd->ops->num_queues ? &vd->q[q].regs : NULL;
}

struct virtio_queue_regs *virtio_t_queue_regs_w(struct virtio_dev *vd, unsigned q)
{
        /* The layout is frozen while the queue is enabled. */
        return q < vd->ops->num_queues && !vd->q[q].vq.ready ? &vd->q[q].regs : NULL;
}

bool virtio_t_queue_ready(const struct virtio_dev *vd, unsigned q)
{
        return q < vd->ops->num_queues && vd->q[q].vq.ready;
}

void virtio_t_queue_enable(struct virtio_dev *vd, unsigned qi, bool enable)
{
        if (qi >= vd->ops->num_queues)
                return;
        struct virtio_queue *q = &vd->q[qi];
        if (enable) {
                if (!q->vq.ready)
                        queue_start(vd, q);
                return;
        }
        if (!q->vq.ready)
                return;
        /* Without VIRTIO_F_RING_RESET a running device cannot lose a queue. */
        if (virtio_live(vd)) {
                virtio_fail(vd, "queue %u disabled while the device runs", qi);
                return;
        }
        queue_stop(vd, q);
}

void virtio_t_notify(struct virtio_dev *vd, unsigned q)
{
        if (q < vd->ops->num_queues && vd->q[q].vq.ready)
                eventfd_signal(vd->q[q].notify_fd);
}

const struct virtio_shm *virtio_t_shm(const struct virtio_dev *vd, unsigned i)
{
        if (i >= vd->ops->num_shm || !vd->ops->shm)
                return NULL;
        return vd->ops->shm(vd->dev, i);
}

void virtio_t_attach(struct virtio_dev *vd, const struct virtio_transport_ops *ops, void *t)
{
        vd->tops = ops;
        vd->t = t;
}

void virtio_t_detach(struct virtio_dev *vd)
{
        virtio_lock(vd);
        for (unsigned i = 0; i < vd->ops->num_queues; i++) {
                struct virtio_queue *q = &vd->q[i];
                if (q->bound && vd->tops->bind_notify)
                        vd->tops->bind_notify(vd->t, i, q->notify_fd, false);
                q->bound = false;
        }
        vd->tops = NULL;
        vd->t = NULL;
        virtio_unlock(vd);
}

/* ------------------------------------------------------------------ device helpers */

int virtio_avail(struct virtio_dev *vd, unsigned qi)
{
        if (qi >= vd->ops->num_queues)
                return 0;
        if (!virtio_live(vd) || vd->quiesced)
                return -EIO;
        struct virtio_queue *q = &vd->q[qi];
        int n = virtq_avail_count(&q->vq);
        if (n < 0)
                virtio_fail(vd, "queue %u: %s", qi, q->vq.error);
        return n;
}

int virtio_pop(struct virtio_dev *vd, unsigned qi, struct virtq_chain *c)
{
        if (qi >= vd->ops->num_queues)
                return 0;
        if (!virtio_live(vd) || vd->quiesced)
                return -EIO;
        struct virtio_queue *q = &vd->q[qi];
        int r = virtq_pop(&q->vq, c);
        if (r < 0)
                virtio_fail(vd, "queue %u: %s", qi, q->vq.error);
        return r;
}

void virtio_push(struct virtio_dev *vd, unsigned qi, uint16_t head, uint32_t len)
{
        if (qi < vd->ops->num_queues && !vd->quiesced)
                virtq_push(&vd->q[qi].vq, head, len);
}

void virtio_signal_used(struct virtio_dev *vd, unsigned qi)
{
        if (qi < vd->ops->num_queues && virtq_need_interrupt(&vd->q[qi].vq))
                interrupt(vd, VIRTIO_INT_VRING);
}

void virtio_suppress_notify(struct virtio_dev *vd, unsigned qi, bool suppress)
{
        if (qi < vd->ops->num_queues)
                virtq_suppress_notify(&vd->q[qi].vq, suppress);
}

void virtio_config_changed(struct virtio_dev *vd)
{
        vd->generation++;
        if (vd->status & VIRTIO_STATUS_DRIVER_OK)
                interrupt(vd, VIRTIO_INT_CONFIG);
}

void virtio_kick(struct virtio_dev *vd, unsigned qi)
{
        if (qi < vd->ops->num_queues)
                eventfd_signal(vd->q[qi].notify_fd);
}

int virtio_pop_budget(struct virtio_dev *vd, unsigned q, struct virtq_chain *c,
                      struct virtio_budget *b)
{
        if (b->spent || b->chains == 0 || b->bytes == 0) {
                if (!b->spent)
                        virtio_kick(vd, q);
                b->spent = true;
                return 0;
        }
        int r = virtio_pop(vd, q, c);
        if (r > 0)
                b->chains--;
        return r;
}

bool virtio_budget_charge(struct virtio_dev *vd, unsigned q, struct virtio_budget *b,
                          uint64_t bytes)
{
        b->bytes = bytes >= b->bytes ? 0 : b->bytes - bytes;
        if (b->bytes > 0)
                return true;
        if (!b->spent)
                virtio_kick(vd, q);
        b->spent = true;
        return false;
}

/* ------------------------------------------------------------------ lifecycle */

static void notify_ready(void *opaque, uint32_t events)
{
        struct virtio_queue *q = opaque;
        struct virtio_dev *vd = q->vd;
        eventfd_drain(q->notify_fd);
        virtio_lock(vd);
        if (virtio_live(vd) && !vd->quiesced && q->vq.ready && !q->vq.broken &&
            vd->ops->queue_notify)
                vd->ops->queue_notify(vd->dev, q->index);
        virtio_unlock(vd);
}

static bool queue_size_valid(uint16_t n)
{
        return n >= 1 && n <= VIRTQ_MAX_SIZE && !(n & (n - 1));
}

static bool ops_valid(const struct virtio_dev_ops *ops)
{
        if (!ops->name || ops->num_queues < 1 || ops->num_queues > VIRTIO_MAX_QUEUES ||
            ops->num_shm > VIRTIO_MAX_SHM || (ops->num_shm && !ops->shm) ||
            (ops->features & (1ull << VIRTIO_F_EVENT_IDX)))
                return false;
        for (unsigned i = 0; i < ops->num_queues; i++)
                if (!queue_size_valid(queue_num_max(ops, i)))
                        return false;
        return true;
}

void virtio_dev_quiesce(struct virtio_dev *vd)
{
        if (!vd || vd->quiesced)
                return;
        if (vd->ops->quiesce)
                vd->ops->quiesce(vd->dev);
        virtio_lock(vd);
        vd->quiesced = true;
        virtio_unlock(vd);
}

uint64_t virtio_dev_flush(struct virtio_dev *vd, const struct timespec *deadline,
                          uint64_t max_bytes, int cancel_fd)
{
        if (!vd || !vd->ops->flush)
                return 0;
        return vd->ops->flush(vd->dev, deadline, max_bytes, cancel_fd);
}

static void free_core(struct virtio_dev *vd)
{
        for (unsigned i = 0; i < vd->ops->num_queues; i++) {
                struct virtio_queue *q = &vd->q[i];
                if (q->notify_fd < 0)
                        continue;
                queue_stop(vd, q);
                if (q->in_loop)
                        evloop_del(vd->env.loop, q->notify_fd);
                close(q->notify_fd);
        }
        pthread_mutex_destroy(&vd->lock);
        free(vd);
}

void virtio_dev_destroy(struct virtio_dev *vd)
{
        if (!vd)
                return;
        void (*destroy)(void *) = vd->ops->destroy;
        void *dev = vd->dev;
        free_core(vd);
        if (destroy)
                destroy(dev);
}

int virtio_dev_create(const struct dev_env *env, const struct virtio_dev_ops *ops, void *dev,
                      struct virtio_dev **out, char *err, size_t errlen)
{
        *out = NULL;
        if (!env || !env->mem || !env->loop || !ops || !ops_valid(ops))
                return ember_errf(err, errlen, EINVAL, "virtio: invalid device description");
        struct virtio_dev *vd = calloc(1, sizeof(*vd) + ops->num_queues * sizeof(vd->q[0]));
        if (!vd)
                return ember_errf(err, errlen, ENOMEM, "%s: out of memory", ops->name);
        vd->env = *env;
        vd->ops = ops;
        vd->dev = dev;
        vd->offered =
            ops->features | (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_INDIRECT_DESC);
        vd->usable_queues = ops->num_queues;
        pthread_mutex_init(&vd->lock, NULL);
        for (unsigned i = 0; i < ops->num_queues; i++) {
                vd->q[i].vd = vd;
                vd->q[i].index = i;
                vd->q[i].notify_fd = -1;
                vd->q[i].vq.mem = env->mem;
        }
        int r;
        for (unsigned i = 0; i < ops->num_queues; i++) {
                struct virtio_queue *q = &vd->q[i];
                q->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (q->notify_fd < 0) {
                        r = ember_errf(err, errlen, errno, "%s: eventfd: %s", ops->name,
                                       strerror(errno));
                        goto fail;
                }
                r = evloop_add(env->loop, q->notify_fd, EPOLLIN, notify_ready, q);
                if (r < 0) {
                        ember_errf(err, errlen, r, "%s: adding queue %u to the event loop: %s",
                                   ops->name, i, strerror(-r));
                        goto fail;
                }
                q->in_loop = true;
        }
        *out = vd;
        return 0;
fail:
        free_core(vd); /* the device is the caller's to free */
        return r;
}
