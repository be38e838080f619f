/* virtio-mmio (version 2) transport for a device of the virtio core (virtio/virtio.h): one
 * 4 KiB register window on the VM's MMIO bus, decoded into the core's calls.
 *
 * - Register accesses come from vCPU threads (through the MMIO bus) and take the device's lock.
 * - Queue notifications: KVM signals the core's per-queue eventfd directly (ioeventfd on
 *   QueueNotify, datamatch = queue index), or, when env->ioeventfd is absent or fails, the vCPU
 *   thread that exits on the QueueNotify write signals it.
 * - Interrupts: an eventfd bound to the GSI with env->irqfd (edge), or env->irq_line when there
 *   is no irqfd (raised on every new interrupt, lowered once InterruptStatus is acknowledged).
 * - A status write of 0 resets the device and the transport (selectors, interrupt status). */
#ifndef EMBER_VIRTIO_MMIO_H
#define EMBER_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dev_env.h"
#include "virtio/virtio.h"

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

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING  VIRTIO_INT_VRING
#define VIRTIO_MMIO_INT_CONFIG VIRTIO_INT_CONFIG

struct virtio_mmio;

/* Registers the window [base, base+4K) on env->mmio for the device `vd` and its interrupt on
 * `gsi`, and attaches itself as vd's transport. `env` is copied; vd must outlive the transport.
 * Call before the vCPUs and the event thread start. Returns 0 or -errno with `err` filled. */
int virtio_mmio_create(const struct dev_env *env, uint64_t base, uint32_t gsi,
                       struct virtio_dev *vd, struct virtio_mmio **out, char *err, size_t errlen);
/* Unbinds the ioeventfds and the irqfd and frees. Call after the vCPU and event threads are
 * gone: the bus keeps its (now dangling) range, so it must not be dispatched afterwards. Does
 * not reset the device. NULL is a no-op. */
void virtio_mmio_destroy(struct virtio_mmio *t);

/* "virtio_mmio.device=4K@0x<base>:<gsi>" for the kernel command line. Returns the length, or
 * -ENOSPC if it does not fit in `len` bytes (NUL included). */
int virtio_mmio_cmdline(char *buf, size_t len, uint64_t base, uint32_t gsi);

#endif
