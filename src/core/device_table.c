/* Every device type, in creation order (see core/devices.h). */
#include "core/devices.h"

extern const struct vm_device_type virtio_console_type;
extern const struct vm_device_type virtio_rng_type;
extern const struct vm_device_type virtio_blk_type;
extern const struct vm_device_type virtio_balloon_type;

const struct vm_device_type *const vm_device_table[] = {
    &virtio_console_type, &virtio_rng_type, &virtio_blk_type, &virtio_balloon_type, NULL,
};
