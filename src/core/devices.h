/* The device table: every device type the VM can have, declared in one place
 * (src/core/device_table.c). The VM never names a device: it asks each type how many
 * instances the configuration wants, creates them in table order, gives each virtio device a
 * transport (an MMIO window and an interrupt line from one allocator, with its kernel
 * command-line entry), and quiesces, flushes and destroys them through struct virtio_dev_ops.
 *
 * Adding a device: its own file(s) under src/virtio/ defining a `const struct vm_device_type`,
 * one line in device_table.c, its configuration fields and builder calls, and its tests. */
#ifndef EMBER_CORE_DEVICES_H
#define EMBER_CORE_DEVICES_H

#include <stddef.h>

#include "core/dev_env.h"
#include "core/vm_internal.h"

struct virtio_dev;

struct vm_device_type {
        const char *name; /* "virtio-blk" */
        /* Instances this configuration asks for (0: none). */
        unsigned (*count)(const struct ember_config *cfg);
        /* Creates instance `index` (0..count-1) with its virtio core (virtio_dev_create). On
         * failure returns -errno with *code and err filled, and has freed what it made. Runs
         * before any vCPU or the event thread. */
        int (*create)(const struct dev_env *env, const struct ember_config *cfg, unsigned index,
                      struct virtio_dev **out, enum ember_error *code, char *err, size_t errlen);
};

/* NULL-terminated, in creation order (which is the guest's probe order: /dev/vda before vdb). */
extern const struct vm_device_type *const vm_device_table[];

#endif
