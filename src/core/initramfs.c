#include "core/initramfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CPIO_MAGIC      "070701"
#define CPIO_HEADER_LEN 110
#define CPIO_TRAILER    "TRAILER!!!"
#define CPIO_MAX_FILE   0xffffffffull /* the size field is 8 hex digits */
#define INITIAL_CAP     (64u * 1024u)
#define TREE_MAX_DEPTH  128

static int fail(struct initramfs *ir, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct initramfs *ir, int error, const char *fmt, ...)
{
        if (ir->error)
                return ir->error;
        ir->error = error;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ir->errmsg, sizeof(ir->errmsg), fmt, ap);
        va_end(ap);
        return error;
}

void initramfs_init(struct initramfs *ir)
{
        memset(ir, 0, sizeof(*ir));
        ir->next_ino = 1;
}

void initramfs_free(struct initramfs *ir)
{
        free(ir->buf);
        memset(ir, 0, sizeof(*ir));
}

const uint8_t *initramfs_data(const struct initramfs *ir)
{
        return ir->buf;
}

size_t initramfs_len(const struct initramfs *ir)
{
        return ir->len;
}

int initramfs_error(const struct initramfs *ir)
{
        return ir->error;
}

const char *initramfs_errmsg(const struct initramfs *ir)
{
        return ir->error ? ir->errmsg : "";
}

/* Makes room for `extra` more bytes. */
static int reserve(struct initramfs *ir, size_t extra)
{
        if (extra > SIZE_MAX / 2 - ir->len)
                return fail(ir, -EFBIG, "initramfs larger than this host can address");
        size_t need = ir->len + extra;
        if (need <= ir->cap)
                return 0;
        size_t cap = ir->cap ? ir->cap : INITIAL_CAP;
        while (cap < need)
                cap *= 2; /* cannot overflow: need <= SIZE_MAX / 2 */
        uint8_t *p = realloc(ir->buf, cap);
        if (!p)
                return fail(ir, -ENOMEM, "out of memory for a %zu-byte initramfs", cap);
        ir->buf = p;
        ir->cap = cap;
        return 0;
}

static void put_zeros(struct initramfs *ir, size_t n)
{
        memset(ir->buf + ir->len, 0, n);
        ir->len += n;
}

static size_t pad4(size_t n)
{
        return (4 - (n & 3)) & 3;
}

/* A path the kernel will unpack where we mean it to: relative, no empty, "." or ".." part. */
static int check_path(struct initramfs *ir, const char *path)
{
        size_t len = strlen(path);
        if (len == 0 || len + 1 > PATH_MAX)
                return fail(ir, -EINVAL, "initramfs path \"%.80s\": empty or longer than %d bytes",
                            path, PATH_MAX - 1);
        if (path[0] == '/')
                return fail(ir, -EINVAL,
                            "initramfs path \"%.80s\" must be relative (no leading '/')", path);
        if (strcmp(path, CPIO_TRAILER) == 0)
                return fail(ir, -EINVAL, "initramfs path \"%s\" would end the archive", path);
        const char *p = path;
        while (*p) {
                const char *end = strchr(p, '/');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return fail(
                            ir, -EINVAL,
                            "initramfs path \"%.80s\" has an empty, \".\" or \"..\" component",
                            path);
                p += n;
                if (*p == '/')
                        p++;
                if (end && *p == '\0')
                        return fail(ir, -EINVAL, "initramfs path \"%.80s\" ends with '/'", path);
        }
        return 0;
}

static uint32_t clamp_mtime(int64_t t)
{
        if (t < 0)
                return 0;
        if (t > 0xffffffffll)
                return 0xffffffffu;
        return (uint32_t)t;
}

struct entry {
        const char *path;
        uint32_t mode; /* type and permissions */
        uint32_t uid, gid, nlink;
        uint32_t mtime;
        uint64_t size;
        uint32_t rdev_major, rdev_minor;
};

/* Writes a header and name; the caller writes `size` data bytes and then end_data(). Reserves
 * room for the data and its padding too. */
static int begin_entry(struct initramfs *ir, const struct entry *e)
{
        if (ir->error)
                return ir->error;
        if (ir->finished)
                return fail(ir, -EINVAL, "initramfs already finished");
        if (e->size > CPIO_MAX_FILE)
                return fail(
                    ir, -EFBIG,
                    "initramfs entry \"%.200s\" is %llu bytes, cpio newc allows at most %llu",
                    e->path, (unsigned long long)e->size, CPIO_MAX_FILE);
        size_t namesize = strlen(e->path) + 1;
        size_t head = CPIO_HEADER_LEN + namesize;
        int r = reserve(ir, head + pad4(head) + (size_t)e->size + 3);
        if (r)
                return r;
        char hdr[CPIO_HEADER_LEN + 1];
        snprintf(hdr, sizeof(hdr), "%s%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
                 CPIO_MAGIC, ir->next_ino++, e->mode, e->uid, e->gid, e->nlink, e->mtime,
                 (uint32_t)e->size, 0u, 0u, e->rdev_major, e->rdev_minor, (uint32_t)namesize, 0u);
        memcpy(ir->buf + ir->len, hdr, CPIO_HEADER_LEN);
        ir->len += CPIO_HEADER_LEN;
        memcpy(ir->buf + ir->len, e->path, namesize);
        ir->len += namesize;
        put_zeros(ir, pad4(head)); /* entries start 4-aligned, so the offset's padding is head's */
        return 0;
}

static void end_data(struct initramfs *ir, size_t size)
{
        put_zeros(ir, pad4(size));
}

static void fill_attr(struct entry *e, const struct initramfs_attr *a, uint32_t type,
                      uint32_t default_perm)
{
        e->mode = type | (a ? (a->mode & 07777) : default_perm);
        e->uid = a ? a->uid : 0;
        e->gid = a ? a->gid : 0;
        e->mtime = a ? clamp_mtime(a->mtime) : 0;
}

int initramfs_add_dir_attr(struct initramfs *ir, const char *path, const struct initramfs_attr *a)
{
        if (ir->error || check_path(ir, path))
                return ir->error;
        struct entry e = {.path = path, .nlink = 2};
        fill_attr(&e, a, S_IFDIR, 0755);
        return begin_entry(ir, &e);
}

int initramfs_add_file_attr(struct initramfs *ir, const char *path, const void *data, size_t len,
                            const struct initramfs_attr *a)
{
        if (ir->error || check_path(ir, path))
                return ir->error;
        struct entry e = {.path = path, .nlink = 1, .size = len};
        fill_attr(&e, a, S_IFREG, 0644);
        int r = begin_entry(ir, &e);
        if (r)
                return r;
        if (len)
                memcpy(ir->buf + ir->len, data, len);
        ir->len += len;
        end_data(ir, len);
        return 0;
}

int initramfs_add_symlink_attr(struct initramfs *ir, const char *path, const char *target,
                               const struct initramfs_attr *a)
{
        if (ir->error || check_path(ir, path))
                return ir->error;
        size_t len = strlen(target);
        if (len == 0 || len + 1 > PATH_MAX)
                return fail(ir, -EINVAL, "initramfs symlink \"%.200s\": target empty or too long",
                            path);
        struct entry e = {.path = path, .nlink = 1, .size = len};
        fill_attr(&e, a, S_IFLNK, 0777);
        int r = begin_entry(ir, &e);
        if (r)
                return r;
        memcpy(ir->buf + ir->len, target, len);
        ir->len += len;
        end_data(ir, len);
        return 0;
}

int initramfs_add_node(struct initramfs *ir, const char *path, int is_block, uint32_t major,
                       uint32_t minor, const struct initramfs_attr *a)
{
        if (ir->error || check_path(ir, path))
                return ir->error;
        struct entry e = {.path = path, .nlink = 1, .rdev_major = major, .rdev_minor = minor};
        fill_attr(&e, a, is_block ? S_IFBLK : S_IFCHR, 0600);
        return begin_entry(ir, &e);
}

int initramfs_add_dir(struct initramfs *ir, const char *path, uint32_t mode)
{
        struct initramfs_attr a = {.mode = mode};
        return initramfs_add_dir_attr(ir, path, &a);
}

int initramfs_add_file(struct initramfs *ir, const char *path, const void *data, size_t len,
                       uint32_t mode)
{
        struct initramfs_attr a = {.mode = mode};
        return initramfs_add_file_attr(ir, path, data, len, &a);
}

int initramfs_add_symlink(struct initramfs *ir, const char *path, const char *target)
{
        return initramfs_add_symlink_attr(ir, path, target, NULL);
}

int initramfs_add_raw(struct initramfs *ir, const void *data, size_t len)
{
        if (ir->error)
                return ir->error;
        if (ir->finished)
                return fail(ir, -EINVAL, "initramfs already finished");
        if (len > SIZE_MAX / 2)
                return fail(ir, -EFBIG, "initramfs larger than this host can address");
        int r = reserve(ir, len + 3);
        if (r)
                return r;
        if (len)
                memcpy(ir->buf + ir->len, data, len);
        ir->len += len;
        put_zeros(ir, pad4(ir->len));
        return 0;
}

int initramfs_finish(struct initramfs *ir)
{
        if (ir->error)
                return ir->error;
        struct entry e = {.path = CPIO_TRAILER, .nlink = 1};
        int r = begin_entry(ir, &e);
        if (r)
                return r;
        ir->finished = 1;
        return 0;
}

/* --- host trees --------------------------------------------------------------------------- */

static struct entry entry_from_stat(const char *path, const struct stat *st,
                                    const struct initramfs_owner *owner)
{
        struct entry e = {
            .path = path,
            .mode = (uint32_t)st->st_mode,
            .uid = owner ? owner->uid : (uint32_t)st->st_uid,
            .gid = owner ? owner->gid : (uint32_t)st->st_gid,
            .nlink = S_ISDIR(st->st_mode) ? 2 : 1,
            .mtime = clamp_mtime(st->st_mtime),
        };
        return e;
}

/* Reads the regular file `name` of directory `dfd` straight into the archive. */
static int tree_file(struct initramfs *ir, int dfd, const char *name, const char *host,
                     const char *arc, const struct initramfs_owner *owner)
{
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return fail(ir, -errno, "cannot open '%s': %s", host, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) != 0) {
                int e = errno;
                close(fd);
                return fail(ir, -e, "cannot stat '%s': %s", host, strerror(e));
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return fail(ir, -EAGAIN, "'%s' changed type while being read", host);
        }
        if ((uint64_t)st.st_size > CPIO_MAX_FILE) {
                close(fd);
                return fail(ir, -EFBIG, "'%s' is %lld bytes, cpio newc allows at most %llu", host,
                            (long long)st.st_size, CPIO_MAX_FILE);
        }
        struct entry e = entry_from_stat(arc, &st, owner);
        e.size = (uint64_t)st.st_size;
        int r = begin_entry(ir, &e);
        if (r) {
                close(fd);
                return r;
        }
        size_t want = (size_t)st.st_size, got = 0;
        while (got < want) {
                ssize_t n = read(fd, ir->buf + ir->len + got, want - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int err = errno;
                        close(fd);
                        return fail(ir, -err, "cannot read '%s': %s", host, strerror(err));
                }
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        if (got != want)
                return fail(ir, -EAGAIN, "'%s' shrank while being read (%zu of %zu bytes)", host,
                            got, want);
        ir->len += want;
        end_data(ir, want);
        return 0;
}

static int tree_symlink(struct initramfs *ir, int dfd, const char *name, const char *host,
                        const char *arc, const struct stat *st, const struct initramfs_owner *owner)
{
        char target[PATH_MAX];
        ssize_t n = readlinkat(dfd, name, target, sizeof(target));
        if (n < 0)
                return fail(ir, -errno, "cannot read link '%s': %s", host, strerror(errno));
        if (n == 0 || (size_t)n >= sizeof(target))
                return fail(ir, -ENAMETOOLONG, "link '%s': target empty or too long", host);
        struct entry e = entry_from_stat(arc, st, owner);
        e.size = (uint64_t)n;
        int r = begin_entry(ir, &e);
        if (r)
                return r;
        memcpy(ir->buf + ir->len, target, (size_t)n);
        ir->len += (size_t)n;
        end_data(ir, (size_t)n);
        return 0;
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* The sorted entry names of an open directory (fd is consumed). */
static int list_dir(struct initramfs *ir, int fd, const char *host, char ***out, size_t *count)
{
        DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                return fail(ir, -e, "cannot read directory '%s': %s", host, strerror(e));
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        errno = 0;
        while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 32;
                        char **p = realloc(names, ncap * sizeof(*names));
                        if (!p)
                                goto nomem;
                        names = p;
                        cap = ncap;
                }
                if (!(names[n] = strdup(de->d_name)))
                        goto nomem;
                n++;
                errno = 0;
        }
        if (errno) {
                int e = errno;
                closedir(d);
                free_names(names, n);
                return fail(ir, -e, "cannot read directory '%s': %s", host, strerror(e));
        }
        closedir(d);
        if (n)
                qsort(names, n, sizeof(*names), compare_names);
        *out = names;
        *count = n;
        return 0;
nomem:
        closedir(d);
        free_names(names, n);
        return fail(ir, -ENOMEM, "out of memory listing '%s'", host);
}

static int tree_dir(struct initramfs *ir, int dfd, const char *host, const char *arc,
                    const struct initramfs_owner *owner, int depth)
{
        if (depth > TREE_MAX_DEPTH)
                return fail(ir, -ELOOP, "'%s': directories nested deeper than %d", host,
                            TREE_MAX_DEPTH);
        int listfd = dup(dfd);
        if (listfd < 0)
                return fail(ir, -errno, "'%s': %s", host, strerror(errno));
        char **names = NULL;
        size_t n = 0;
        int r = list_dir(ir, listfd, host, &names, &n);
        if (r)
                return r;

        for (size_t i = 0; i < n && !r; i++) {
                const char *name = names[i];
                char *child_host = NULL, *child_arc = NULL;
                if (asprintf(&child_host, "%s/%s", host, name) < 0) {
                        child_host = NULL;
                        r = fail(ir, -ENOMEM, "out of memory");
                        break;
                }
                int ar = *arc ? asprintf(&child_arc, "%s/%s", arc, name)
                              : asprintf(&child_arc, "%s", name);
                if (ar < 0) {
                        child_arc = NULL;
                        free(child_host);
                        r = fail(ir, -ENOMEM, "out of memory");
                        break;
                }
                struct stat st;
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                        r = fail(ir, -errno, "cannot stat '%s': %s", child_host, strerror(errno));
                } else if (check_path(ir, child_arc)) {
                        r = ir->error;
                } else if (S_ISREG(st.st_mode)) {
                        r = tree_file(ir, dfd, name, child_host, child_arc, owner);
                } else if (S_ISLNK(st.st_mode)) {
                        r = tree_symlink(ir, dfd, name, child_host, child_arc, &st, owner);
                } else if (S_ISDIR(st.st_mode)) {
                        int sub =
                            openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0) {
                                r = fail(ir, -errno, "cannot open directory '%s': %s", child_host,
                                         strerror(errno));
                        } else {
                                struct entry e = entry_from_stat(child_arc, &st, owner);
                                r = begin_entry(ir, &e);
                                if (!r)
                                        r = tree_dir(ir, sub, child_host, child_arc, owner,
                                                     depth + 1);
                                close(sub);
                        }
                } else {
                        ir->skipped++; /* socket, fifo, device */
                }
                free(child_host);
                free(child_arc);
        }
        free_names(names, n);
        return r;
}

static int copy_error(const struct initramfs *ir, char *err, size_t errlen)
{
        if (ir->error && err && errlen)
                snprintf(err, errlen, "%s", ir->errmsg);
        return ir->error;
}

int initramfs_add_tree_at(struct initramfs *ir, const char *host_dir, const char *prefix,
                          const struct initramfs_owner *owner, char *err, size_t errlen)
{
        if (ir->error)
                return copy_error(ir, err, errlen);
        if (!prefix)
                prefix = "";
        if (*prefix && check_path(ir, prefix))
                return copy_error(ir, err, errlen);
        int fd = open(host_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                fail(ir, -errno, "cannot open directory '%s': %s", host_dir, strerror(errno));
                return copy_error(ir, err, errlen);
        }
        int r = 0;
        if (*prefix) {
                struct stat st;
                if (fstat(fd, &st) != 0) {
                        r = fail(ir, -errno, "cannot stat '%s': %s", host_dir, strerror(errno));
                } else {
                        struct entry e = entry_from_stat(prefix, &st, owner);
                        r = begin_entry(ir, &e);
                }
        }
        if (!r)
                tree_dir(ir, fd, host_dir, prefix, owner, 0);
        close(fd);
        return copy_error(ir, err, errlen);
}

int initramfs_add_tree(struct initramfs *ir, const char *host_dir, char *err, size_t errlen)
{
        return initramfs_add_tree_at(ir, host_dir, "", NULL, err, errlen);
}
