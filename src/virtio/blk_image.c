/* Opening a disk image (src/virtio/blk.h): apart from the device, so that the builder can check
 * images before any KVM work without pulling in the virtio core. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "virtio/blk.h"

int blk_image_open(const char *path, bool ro, int *fd_out, uint64_t *bytes, bool *is_blockdev,
                   char *err, size_t errlen)
{
        int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                if (e == EACCES || e == EROFS || e == EPERM)
                        return ember_errf(err, errlen, e,
                                          "disk '%s': %s (give it as %s:ro to use it read-only)",
                                          path, strerror(e), path);
                return ember_errf(err, errlen, e, "disk '%s': %s", path, strerror(e));
        }
        struct stat st;
        uint64_t size = 0;
        int rc = 0;
        if (fstat(fd, &st) != 0) {
                rc = ember_errf(err, errlen, errno, "disk '%s': %s", path, strerror(errno));
        } else if (S_ISREG(st.st_mode)) {
                size = (uint64_t)st.st_size;
        } else if (S_ISBLK(st.st_mode)) {
                if (ioctl(fd, BLKGETSIZE64, &size) != 0)
                        rc = ember_errf(err, errlen, errno, "disk '%s': cannot get its size: %s",
                                        path, strerror(errno));
        } else {
                rc = ember_errf(err, errlen, EINVAL,
                                "disk '%s' is not a regular file or a block device", path);
        }
        if (!rc && flock(fd, (ro ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
                if (errno == EWOULDBLOCK)
                        rc = ember_errf(err, errlen, EBUSY,
                                        "disk '%s' is in use by another process (locked)", path);
                else
                        rc = ember_errf(err, errlen, errno, "disk '%s': cannot lock it: %s", path,
                                        strerror(errno));
        }
        if (!rc && size == 0)
                rc = ember_errf(err, errlen, EINVAL, "disk '%s' is empty", path);
        if (!rc && size % BLK_SECTOR)
                rc = ember_errf(err, errlen, EINVAL,
                                "disk '%s' is %llu bytes, not a multiple of 512 bytes", path,
                                (unsigned long long)size);
        if (rc) {
                close(fd);
                return rc;
        }
        *fd_out = fd;
        *bytes = size;
        *is_blockdev = S_ISBLK(st.st_mode);
        return 0;
}
