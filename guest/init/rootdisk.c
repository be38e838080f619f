/* Root on a disk (EMBER_CFG_ROOT_*). The initramfs then holds only ember-init and its
 * configuration; the disk's tree becomes "/" as switch_root would make it, except that the
 * initramfs is left as it is (it is tiny: nothing worth deleting). */
#include "rootdisk.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NEW_ROOT    "/.ember/root"
#define DEV_WAIT_MS 2000

static int rd_fail(char *err, size_t errlen, const char *what, const char *path)
{
        snprintf(err, errlen, "root disk: %s %s: %s", what, path, strerror(errno));
        return -1;
}

static bool rd_dir_is_empty(const char *path)
{
        struct dirent *de;
        bool empty = true;
        DIR *d = opendir(path);

        if (!d)
                return false;
        while (empty && (de = readdir(d)) != NULL)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        empty = false;
        closedir(d);
        return empty;
}

int init_switch_root(const char *dev, const char *fstype, bool ro, char *err, size_t errlen)
{
        static const char *const moved[] = {"/dev", "/proc", "/sys"};
        static const char *const scratch[] = {"/tmp", "/run"};
        struct timespec step = {0, 5 * 1000 * 1000};
        char target[64];
        struct stat st;
        size_t i;
        int waited;

        /* The disk is probed before init starts; the wait only covers a slow devtmpfs. */
        for (waited = 0; stat(dev, &st) != 0 && waited < DEV_WAIT_MS; waited += 5)
                nanosleep(&step, NULL);
        if (mkdir(NEW_ROOT, 0755) != 0 && errno != EEXIST)
                return rd_fail(err, errlen, "mkdir", NEW_ROOT);
        if (mount(dev, NEW_ROOT, fstype, ro ? MS_RDONLY : 0, NULL) != 0) {
                snprintf(err, errlen, "root disk: mount %s (%s%s) on %s: %s", dev, fstype,
                         ro ? ", read-only" : "", NEW_ROOT, strerror(errno));
                return -1;
        }
        for (i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
                snprintf(target, sizeof(target), NEW_ROOT "%s", moved[i]);
                if (mkdir(target, 0755) != 0 && errno != EEXIST)
                        return rd_fail(err, errlen,
                                       "the disk has no directory (and it cannot be made)",
                                       moved[i]);
                if (mount(moved[i], target, NULL, MS_MOVE, NULL) != 0)
                        return rd_fail(err, errlen, "moving the mount", moved[i]);
        }
        /* /tmp and /run: the disk's own files win, as they would in the initramfs. */
        for (i = 0; i < sizeof(scratch) / sizeof(scratch[0]); i++) {
                snprintf(target, sizeof(target), NEW_ROOT "%s", scratch[i]);
                if (rd_dir_is_empty(target))
                        mount(scratch[i], target, NULL, MS_MOVE, NULL);
                else
                        umount2(scratch[i], MNT_DETACH);
        }
        if (chdir(NEW_ROOT) != 0)
                return rd_fail(err, errlen, "chdir", NEW_ROOT);
        if (mount(".", "/", NULL, MS_MOVE, NULL) != 0)
                return rd_fail(err, errlen, "moving it to", "/");
        if (chroot(".") != 0 || chdir("/") != 0)
                return rd_fail(err, errlen, "chroot", NEW_ROOT);
        return 0;
}
