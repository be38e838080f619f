/* virtio-balloon: what the VM calls besides the device table entry (src/virtio/balloon.c). */
#ifndef EMBER_VIRTIO_BALLOON_H
#define EMBER_VIRTIO_BALLOON_H

#include <stddef.h>
#include <stdint.h>

struct virtio_dev;

/* Asks the guest to hold a balloon of `mib` MiB (0 deflates it fully): sets num_pages in config
 * space and sends a config interrupt. Any thread, while the device exists. Returns 0, -ENODEV
 * if `vd` is not a balloon, -ESRCH once the VM stopped, or -EINVAL for more than the guest's RAM,
 * with `err` filled. */
int virtio_balloon_set_target(struct virtio_dev *vd, uint64_t mib, char *err, size_t errlen);

#endif
