/* What a virtio transport (virtio-mmio, later virtio-pci) sees of the core: it decodes the
 * guest's register accesses into these calls, made with the device's lock held (virtio_lock),
 * and delivers the interrupts the core asks for. Devices never include this. */
#ifndef EMBER_VIRTIO_TRANSPORT_H
#define EMBER_VIRTIO_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtio.h"

struct virtio_transport_ops {
        /* Raise an interrupt of these VIRTIO_INT_* kinds. Lock held. */
        void (*interrupt)(void *t, uint32_t kinds);
        /* Optional: have the hypervisor signal `fd` when the guest notifies queue q (assign), or
         * stop (!assign). Non-zero: not possible, the transport signals the core itself
         * (virtio_t_notify). Lock held. */
        int (*bind_notify)(void *t, unsigned q, int fd, bool assign);
};

/* Per-queue layout registers, latched while the queue is not ready. */
struct virtio_queue_regs {
        uint32_t num;
        uint64_t desc, driver, device;
};

/* Attaches the transport (one at a time). Before the threads start. */
void virtio_t_attach(struct virtio_dev *vd, const struct virtio_transport_ops *ops, void *t);
/* Detaches it (binds are not undone: the transport tears its own down). After the threads. */
void virtio_t_detach(struct virtio_dev *vd);

const struct virtio_dev_ops *virtio_t_ops(const struct virtio_dev *vd);
uint64_t virtio_t_offered(const struct virtio_dev *vd);
/* Writes half `sel` (0 low, 1 high) of the driver's features; ignored outside feature
 * negotiation. */
void virtio_t_set_driver_features(struct virtio_dev *vd, uint32_t sel, uint32_t v);
void virtio_t_set_status(struct virtio_dev *vd, uint32_t v);
uint32_t virtio_t_generation(const struct virtio_dev *vd);
/* Config space, any offset and width the guest chose: out of range reads 0, writes ignored. */
void virtio_t_config_read(struct virtio_dev *vd, uint32_t off, uint8_t *data, uint32_t len);
void virtio_t_config_write(struct virtio_dev *vd, uint32_t off, const uint8_t *data, uint32_t len);

/* Queues: q < ops->num_queues, else NULL / 0 / ignored. */
unsigned virtio_t_num_queues(const struct virtio_dev *vd);
uint16_t virtio_t_queue_num_max(const struct virtio_dev *vd, unsigned q);
/* The layout registers: writable only while the queue is not ready (NULL then for writes). */
const struct virtio_queue_regs *virtio_t_queue_regs(const struct virtio_dev *vd, unsigned q);
struct virtio_queue_regs *virtio_t_queue_regs_w(struct virtio_dev *vd, unsigned q);
bool virtio_t_queue_ready(const struct virtio_dev *vd, unsigned q);
void virtio_t_queue_enable(struct virtio_dev *vd, unsigned q, bool enable);
/* The guest notified queue q and the hypervisor did not take it (no bind). */
void virtio_t_notify(struct virtio_dev *vd, unsigned q);
/* Shared-memory region `i`, or NULL. */
const struct virtio_shm *virtio_t_shm(const struct virtio_dev *vd, unsigned i);

#endif
