/* The device handle (KVM_CREATE_DEVICE, or an adopted fd): attributes. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "kvm/kvm_internal.h"

int ember_kvm_device_adopt(int fd, struct ember_kvm_device **out)
{
        struct ember_kvm_device *dev;

        if (!out)
                return -EINVAL;
        *out = NULL;
        dev = calloc(1, sizeof(*dev));
        if (!dev)
                return -ENOMEM;
        dev->fd = fd;
        *out = dev;
        return 0;
}

void ember_kvm_device_close(struct ember_kvm_device *dev)
{
        if (!dev)
                return;
        if (dev->fd >= 0)
                close(dev->fd);
        free(dev);
}

int ember_kvm_device_fd(const struct ember_kvm_device *dev)
{
        return dev->fd;
}

const char *ember_kvm_device_last_error(const struct ember_kvm_device *dev)
{
        return dev->error;
}

int ember_kvm_device_set_attr(struct ember_kvm_device *dev, const struct kvm_device_attr *attr)
{
        return KVM_IOCTL(dev, KVM_SET_DEVICE_ATTR, attr);
}

int ember_kvm_device_get_attr(struct ember_kvm_device *dev, struct kvm_device_attr *attr)
{
        return KVM_IOCTL(dev, KVM_GET_DEVICE_ATTR, attr);
}

int ember_kvm_device_has_attr(struct ember_kvm_device *dev, const struct kvm_device_attr *attr)
{
        return KVM_IOCTL(dev, KVM_HAS_DEVICE_ATTR, attr);
}
