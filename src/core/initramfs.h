/* An in-memory cpio "newc" (070701) archive writer for the guest's initramfs.
 *
 * Paths inside the archive are relative ("bin/sh", no leading '/', no empty, "." or ".."
 * parts). The kernel does not create missing parent directories: add a directory before its
 * entries (initramfs_add_tree does). Later entries replace earlier ones of the same name when
 * the kernel unpacks. Errors are sticky: after the first failure every call returns the same
 * -errno and initramfs_errmsg() says what went wrong. */
#ifndef EMBER_CORE_INITRAMFS_H
#define EMBER_CORE_INITRAMFS_H

#include <stddef.h>
#include <stdint.h>

struct initramfs {
        uint8_t *buf;
        size_t len, cap;
        uint32_t next_ino;
        unsigned skipped; /* sockets, fifos and devices left out by initramfs_add_tree */
        int finished;     /* the trailer is written */
        int error;        /* first error (-errno), 0 if none */
        char errmsg[512];
};

void initramfs_init(struct initramfs *ir);
void initramfs_free(struct initramfs *ir);

/* Entries owned by 0:0 with mtime 0; `mode` holds permission bits (07777). */
int initramfs_add_dir(struct initramfs *ir, const char *path, uint32_t mode);
int initramfs_add_file(struct initramfs *ir, const char *path, const void *data, size_t len,
                       uint32_t mode);
int initramfs_add_symlink(struct initramfs *ir, const char *path, const char *target);

/* Appends a ready-made archive (any format the kernel unpacks, compressed or not), zero-padded
 * to 4 bytes so that what follows starts where the kernel looks for the next archive. */
int initramfs_add_raw(struct initramfs *ir, const void *data, size_t len);

/* Adds the contents of host directory `host_dir` at the archive root. Regular files,
 * directories and symlinks keep mode, numeric uid/gid and mtime (lstat, links never followed);
 * hard links become separate files; sockets, fifos and devices are skipped and counted in
 * ir->skipped. Entries are sorted by name so archives are reproducible. On failure err gets a
 * message naming the host path, e.g. "cannot open '/r/etc/shadow': Permission denied". */
int initramfs_add_tree(struct initramfs *ir, const char *host_dir, char *err, size_t errlen);

/* Writes the TRAILER!!! entry; nothing can be added after it. */
int initramfs_finish(struct initramfs *ir);

/* The archive so far (complete after initramfs_finish). */
const uint8_t *initramfs_data(const struct initramfs *ir);
size_t initramfs_len(const struct initramfs *ir);

int initramfs_error(const struct initramfs *ir);
const char *initramfs_errmsg(const struct initramfs *ir);

/* --- full control ----------------------------------------------------------------------- */

/* Owner, permissions (07777; the type comes from the function) and time of an entry. mtime is
 * clamped to the format's unsigned 32 bits. */
struct initramfs_attr {
        uint32_t mode;
        uint32_t uid, gid;
        int64_t mtime;
};

int initramfs_add_dir_attr(struct initramfs *ir, const char *path, const struct initramfs_attr *a);
int initramfs_add_file_attr(struct initramfs *ir, const char *path, const void *data, size_t len,
                            const struct initramfs_attr *a);
int initramfs_add_symlink_attr(struct initramfs *ir, const char *path, const char *target,
                               const struct initramfs_attr *a);
/* A device node (character unless is_block), e.g. a fixed dev/console. Host trees never give
 * device nodes: the guest mounts devtmpfs. */
int initramfs_add_node(struct initramfs *ir, const char *path, int is_block, uint32_t major,
                       uint32_t minor, const struct initramfs_attr *a);

/* initramfs_add_tree under archive directory `prefix` ("" for the root; a non-empty prefix
 * gets its own entry with host_dir's attributes, its parents must exist). owner != NULL
 * replaces every uid/gid (e.g. 0:0 so a user's tree is root's in the guest). */
struct initramfs_owner {
        uint32_t uid, gid;
};
int initramfs_add_tree_at(struct initramfs *ir, const char *host_dir, const char *prefix,
                          const struct initramfs_owner *owner, char *err, size_t errlen);

#endif
