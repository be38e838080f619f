/* Root on a disk: ember-init mounts the disk and makes it "/" (switch_root style). */
#ifndef EMBER_INIT_ROOTDISK_H
#define EMBER_INIT_ROOTDISK_H

#include <stdbool.h>
#include <stddef.h>

/* Waits (bounded) for `dev`, mounts it (type `fstype`, read-only if `ro`) on a new directory,
 * moves /dev, /proc, /sys, /tmp and /run (with what is mounted below them) onto it, and makes
 * it the root of init and of everything it starts. Returns 0, or -1 with err saying why. */
int init_switch_root(const char *dev, const char *fstype, bool ro, char *err, size_t errlen);

#endif
