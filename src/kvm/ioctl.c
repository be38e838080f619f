/* The two ioctl entry points of the KVM layer (in the style of the kernel's KVM selftests):
 * a raw call that turns -1/errno into -errno, and a checked call that also records which ioctl
 * failed and why in the handle's error buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvm/kvm_internal.h"

int kvm_ioctl_raw(int fd, unsigned long request, unsigned long arg)
{
        int ret = ioctl(fd, request, arg);

        return ret < 0 ? -errno : ret;
}

int kvm_ioctl_checked(int fd, unsigned long request, const char *name, unsigned long arg, char *err,
                      size_t err_len)
{
        int ret = kvm_ioctl_raw(fd, request, arg);

        if (ret < 0) {
                char msg[96];

                snprintf(err, err_len, "%s: %s", name, strerror_r(-ret, msg, sizeof(msg)));
        }
        return ret;
}

int kvm_fail(char *buf, size_t len, int err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
        return -err;
}
