/* The builder: collects and validates the user's configuration, then hands it to the VM. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "core/guest_config.h"
#include "core/vm_internal.h"
#include "ember/guest_abi.h"
#include "ember_paths.h"
#include "virtio/blk.h"

struct ember_builder {
        struct ember_config cfg;
        enum ember_error err_code;
        char err[EMBER_ERR_LEN];
        int last_disk; /* for ember_builder_disk_serial; -1: none */
};

static const char *const error_names[] = {
    [EMBER_OK] = "EMBER_OK",
    [EMBER_ERR_VCPUS] = "EMBER_ERR_VCPUS",
    [EMBER_ERR_MEMORY] = "EMBER_ERR_MEMORY",
    [EMBER_ERR_KERNEL] = "EMBER_ERR_KERNEL",
    [EMBER_ERR_INITRAMFS] = "EMBER_ERR_INITRAMFS",
    [EMBER_ERR_CMDLINE] = "EMBER_ERR_CMDLINE",
    [EMBER_ERR_ROOTFS] = "EMBER_ERR_ROOTFS",
    [EMBER_ERR_EXEC] = "EMBER_ERR_EXEC",
    [EMBER_ERR_ENV] = "EMBER_ERR_ENV",
    [EMBER_ERR_WORKDIR] = "EMBER_ERR_WORKDIR",
    [EMBER_ERR_RLIMIT] = "EMBER_ERR_RLIMIT",
    [EMBER_ERR_CONSOLE] = "EMBER_ERR_CONSOLE",
    [EMBER_ERR_KVM] = "EMBER_ERR_KVM",
    [EMBER_ERR_NO_GUEST_SUPPORT] = "EMBER_ERR_NO_GUEST_SUPPORT",
    [EMBER_ERR_RESOURCE] = "EMBER_ERR_RESOURCE",
    [EMBER_ERR_STATE] = "EMBER_ERR_STATE",
    [EMBER_ERR_INVALID] = "EMBER_ERR_INVALID",
    [EMBER_ERR_USER] = "EMBER_ERR_USER",
    [EMBER_ERR_DISK] = "EMBER_ERR_DISK",
};

EMBER_API const char *ember_error_name(enum ember_error err)
{
        if ((unsigned)err < sizeof(error_names) / sizeof(error_names[0]) && error_names[err])
                return error_names[err];
        return "EMBER_ERR_UNKNOWN";
}

EMBER_API const char *ember_version(void)
{
        return EMBER_VERSION;
}

/* Records a failure on the builder; returns -err. */
__attribute__((format(printf, 4, 5))) static int
fail(struct ember_builder *b, enum ember_error code, int err, const char *fmt, ...)
{
        va_list ap;
        b->err_code = code;
        va_start(ap, fmt);
        vsnprintf(b->err, sizeof(b->err), fmt, ap);
        va_end(ap);
        return -err;
}

static int set_str(struct ember_builder *b, char **slot, const char *val, enum ember_error code,
                   const char *what)
{
        if (!val)
                return fail(b, code, EINVAL, "%s: NULL is not a valid value", what);
        char *dup = strdup(val);
        if (!dup)
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "%s: out of memory", what);
        free(*slot);
        *slot = dup;
        return 0;
}

EMBER_API struct ember_builder *ember_builder_new(void)
{
        struct ember_builder *b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        b->cfg.vcpus = EMBER_DEFAULT_VCPUS;
        b->cfg.memory_mib = EMBER_DEFAULT_MEMORY_MIB;
        b->cfg.in_fd = 0;
        b->cfg.out_fd = 1;
        b->cfg.err_fd = 2;
        b->last_disk = -1;
        return b;
}

static void free_strv(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

EMBER_API void ember_builder_free(struct ember_builder *b)
{
        if (!b)
                return;
        struct ember_config *c = &b->cfg;
        free(c->kernel_path);
        free(c->cmdline_extra);
        free(c->initramfs_path);
        free(c->save_initramfs_path);
        free(c->kernel_log_path);
        free(c->rootfs);
        free(c->exec_path);
        free_strv(c->argv);
        free_strv(c->env);
        free(c->workdir);
        free(c->hostname);
        free(c->console_output);
        free(c->user_name);
        free(c->group_name);
        for (unsigned i = 0; i < c->ndisks; i++) {
                free(c->disk[i].path);
                free(c->disk[i].serial);
        }
        free(c->root_fstype);
        free(b);
}

EMBER_API enum ember_error ember_builder_error_code(const struct ember_builder *b)
{
        return b ? b->err_code : EMBER_ERR_INVALID;
}

EMBER_API const char *ember_builder_error(const struct ember_builder *b)
{
        return b ? b->err : "no builder";
}

EMBER_API int ember_builder_machine(struct ember_builder *b, unsigned vcpus, size_t memory_mib)
{
        if (!b)
                return -EINVAL;
        b->cfg.vcpus = vcpus;
        b->cfg.memory_mib = memory_mib;
        return 0;
}

EMBER_API int ember_builder_machine_allow_software_kvm(struct ember_builder *b, int allow)
{
        if (!b)
                return -EINVAL;
        b->cfg.allow_software_kvm = allow != 0;
        return 0;
}

EMBER_API int ember_builder_kernel(struct ember_builder *b, const char *path)
{
        return b ? set_str(b, &b->cfg.kernel_path, path, EMBER_ERR_KERNEL, "kernel path") : -EINVAL;
}

EMBER_API int ember_builder_kernel_cmdline(struct ember_builder *b, const char *extra)
{
        if (!b)
                return -EINVAL;
        if (!extra)
                return fail(b, EMBER_ERR_CMDLINE, EINVAL, "kernel command line: NULL");
        if (strpbrk(extra, "\n\r"))
                return fail(b, EMBER_ERR_CMDLINE, EINVAL,
                            "kernel command line must not contain a newline");
        size_t old = b->cfg.cmdline_extra ? strlen(b->cfg.cmdline_extra) : 0;
        char *n = realloc(b->cfg.cmdline_extra, old + strlen(extra) + 2);
        if (!n)
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "kernel command line: out of memory");
        if (old)
                n[old++] = ' ';
        strcpy(n + old, extra);
        b->cfg.cmdline_extra = n;
        return 0;
}

EMBER_API int ember_builder_kernel_initramfs(struct ember_builder *b, const char *path)
{
        return b ? set_str(b, &b->cfg.initramfs_path, path, EMBER_ERR_INITRAMFS, "initramfs path")
                 : -EINVAL;
}

EMBER_API int ember_builder_kernel_save_initramfs(struct ember_builder *b, const char *path)
{
        return b ? set_str(b, &b->cfg.save_initramfs_path, path, EMBER_ERR_INITRAMFS,
                           "save initramfs path")
                 : -EINVAL;
}

EMBER_API int ember_builder_kernel_log(struct ember_builder *b, const char *path)
{
        return b ? set_str(b, &b->cfg.kernel_log_path, path, EMBER_ERR_CONSOLE, "kernel log path")
                 : -EINVAL;
}

EMBER_API int ember_builder_fs_root(struct ember_builder *b, const char *dir)
{
        return b ? set_str(b, &b->cfg.rootfs, dir, EMBER_ERR_ROOTFS, "root directory") : -EINVAL;
}

static char **dup_strv(const char *const *v, size_t *count)
{
        size_t n = 0;
        while (v[n])
                n++;
        char **out = calloc(n + 1, sizeof(*out));
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                out[i] = strdup(v[i]);
                if (!out[i]) {
                        free_strv(out);
                        return NULL;
                }
        }
        *count = n;
        return out;
}

EMBER_API int ember_builder_exec(struct ember_builder *b, const char *path, const char *const *argv)
{
        if (!b)
                return -EINVAL;
        if (!path || !*path)
                return fail(b, EMBER_ERR_EXEC, EINVAL, "no command given");
        const char *def[] = {path, NULL};
        size_t argc;
        char **v = dup_strv(argv ? argv : def, &argc);
        if (!v)
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "exec: out of memory");
        int rc = set_str(b, &b->cfg.exec_path, path, EMBER_ERR_EXEC, "exec path");
        if (rc) {
                free_strv(v);
                return rc;
        }
        free_strv(b->cfg.argv);
        b->cfg.argv = v;
        b->cfg.argc = argc;
        return 0;
}

static int env_key_valid(const char *k, size_t len)
{
        if (len == 0)
                return 0;
        for (size_t i = 0; i < len; i++)
                if (k[i] == '=')
                        return 0;
        return 1;
}

EMBER_API int ember_builder_exec_env_str(struct ember_builder *b, const char *kv)
{
        if (!b)
                return -EINVAL;
        if (!kv)
                return fail(b, EMBER_ERR_ENV, EINVAL, "environment entry: NULL");
        const char *eq = strchr(kv, '=');
        if (!eq)
                return fail(b, EMBER_ERR_ENV, EINVAL,
                            "environment entry '%s' has no '=' (expected KEY=VALUE)", kv);
        size_t klen = (size_t)(eq - kv);
        if (!env_key_valid(kv, klen))
                return fail(b, EMBER_ERR_ENV, EINVAL, "environment entry '%s' has an empty name",
                            kv);
        char *dup = strdup(kv);
        if (!dup)
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "environment: out of memory");
        struct ember_config *c = &b->cfg;
        for (size_t i = 0; i < c->envc; i++) {
                if (strncmp(c->env[i], kv, klen + 1) == 0) {
                        free(c->env[i]);
                        c->env[i] = dup;
                        return 0;
                }
        }
        char **n = realloc(c->env, (c->envc + 2) * sizeof(*n));
        if (!n) {
                free(dup);
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "environment: out of memory");
        }
        n[c->envc++] = dup;
        n[c->envc] = NULL;
        c->env = n;
        return 0;
}

EMBER_API int ember_builder_exec_env(struct ember_builder *b, const char *key, const char *value)
{
        if (!b)
                return -EINVAL;
        if (!key || !value)
                return fail(b, EMBER_ERR_ENV, EINVAL, "environment: NULL key or value");
        if (!env_key_valid(key, strlen(key)))
                return fail(b, EMBER_ERR_ENV, EINVAL,
                            "environment name '%s' is empty or contains '='", key);
        size_t len = strlen(key) + strlen(value) + 2;
        char *kv = malloc(len);
        if (!kv)
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "environment: out of memory");
        snprintf(kv, len, "%s=%s", key, value);
        int rc = ember_builder_exec_env_str(b, kv);
        free(kv);
        return rc;
}

EMBER_API int ember_builder_exec_env_file(struct ember_builder *b, const char *path)
{
        if (!b)
                return -EINVAL;
        if (!path)
                return fail(b, EMBER_ERR_ENV, EINVAL, "env file: NULL path");
        FILE *f = fopen(path, "re");
        if (!f)
                return fail(b, EMBER_ERR_ENV, errno, "env file '%s': %s", path, strerror(errno));
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        int rc = 0;
        for (unsigned lineno = 1; rc == 0 && (len = getline(&line, &cap, f)) >= 0; lineno++) {
                if (memchr(line, '\0', (size_t)len)) {
                        rc = fail(b, EMBER_ERR_ENV, EINVAL, "env file '%s', line %u: NUL byte",
                                  path, lineno);
                        break;
                }
                if (len > 0 && line[len - 1] == '\n')
                        line[--len] = 0;
                if (len > 0 && line[len - 1] == '\r')
                        line[--len] = 0;
                char *p = line;
                if (lineno == 1 && !strncmp(p, "\xef\xbb\xbf", 3))
                        p += 3; /* a UTF-8 byte order mark */
                p += strspn(p, " \t\v\f");
                if (!*p || *p == '#')
                        continue;
                char *eq = strchr(p, '=');
                size_t klen = eq ? (size_t)(eq - p) : strlen(p);
                if (klen == 0) {
                        rc = fail(b, EMBER_ERR_ENV, EINVAL,
                                  "env file '%s', line %u: no variable name before '='", path,
                                  lineno);
                } else if (strcspn(p, " \t\v\f") < klen) {
                        rc = fail(b, EMBER_ERR_ENV, EINVAL,
                                  "env file '%s', line %u: variable name '%.*s' contains white "
                                  "space",
                                  path, lineno, (int)(klen > 64 ? 64 : klen), p);
                } else if (eq) {
                        rc = ember_builder_exec_env_str(b, p);
                } else {
                        const char *host = getenv(p);
                        if (host)
                                rc = ember_builder_exec_env(b, p, host);
                }
        }
        if (rc == 0 && ferror(f))
                rc = fail(b, EMBER_ERR_ENV, EIO, "env file '%s': read error", path);
        free(line);
        fclose(f);
        return rc;
}

EMBER_API int ember_builder_exec_workdir(struct ember_builder *b, const char *dir)
{
        if (!b)
                return -EINVAL;
        if (!dir || dir[0] != '/')
                return fail(b, EMBER_ERR_WORKDIR, EINVAL, "workdir '%s' is not an absolute path",
                            dir ? dir : "(null)");
        return set_str(b, &b->cfg.workdir, dir, EMBER_ERR_WORKDIR, "workdir");
}

EMBER_API int ember_builder_exec_rlimit(struct ember_builder *b, const char *resource,
                                        uint64_t soft, uint64_t hard)
{
        if (!b)
                return -EINVAL;
        uint32_t res;
        if (!resource || guest_config_rlimit_from_name(resource, &res) != 0)
                return fail(b, EMBER_ERR_RLIMIT, EINVAL, "unknown rlimit resource '%s'",
                            resource ? resource : "(null)");
        if (soft > hard)
                return fail(b, EMBER_ERR_RLIMIT, EINVAL,
                            "rlimit %s: soft limit %llu is above hard limit %llu", resource,
                            (unsigned long long)soft, (unsigned long long)hard);
        struct ember_config *c = &b->cfg;
        size_t i = 0;
        while (i < c->nrlimits && c->rlimit[i].resource != res)
                i++;
        if (i == EMBER_MAX_RLIMITS)
                return fail(b, EMBER_ERR_RLIMIT, ENOSPC, "too many rlimits (at most %d)",
                            EMBER_MAX_RLIMITS);
        c->rlimit[i] = (struct ember_rlimit_cfg){res, soft, hard};
        if (i == c->nrlimits)
                c->nrlimits++;
        return 0;
}

EMBER_API int ember_builder_exec_user(struct ember_builder *b, uint32_t uid, uint32_t gid)
{
        if (!b)
                return -EINVAL;
        b->cfg.has_user = true;
        b->cfg.uid = uid;
        b->cfg.gid = gid;
        free(b->cfg.user_name);
        free(b->cfg.group_name);
        b->cfg.user_name = b->cfg.group_name = NULL;
        b->cfg.group_from_user = false;
        return 0;
}

/* A decimal id below UINT32_MAX (-1 means "none" to the kernel), or a name (0 returned). */
static int parse_id(const char *s, size_t len, uint32_t *id, bool *numeric)
{
        unsigned long long v = 0;
        *numeric = len > 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9') {
                        *numeric = false;
                        return 0;
                }
                v = v * 10 + (unsigned)(s[i] - '0');
                if (v >= UINT32_MAX)
                        return -1;
        }
        *id = (uint32_t)v;
        return 0;
}

static bool name_valid(const char *s, size_t len)
{
        return len > 0 && len <= EMBER_CFG_NAME_MAX && !memchr(s, '\n', len) &&
               !memchr(s, ':', len);
}

EMBER_API int ember_builder_exec_user_spec(struct ember_builder *b, const char *spec)
{
        if (!b)
                return -EINVAL;
        if (!spec)
                return fail(b, EMBER_ERR_USER, EINVAL, "user: NULL");
        const char *colon = strchr(spec, ':');
        size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
        const char *group = colon ? colon + 1 : NULL;
        size_t glen = group ? strlen(group) : 0;
        uint32_t uid = 0, gid = 0;
        bool unum, gnum = false;
        if (parse_id(spec, ulen, &uid, &unum) || (group && parse_id(group, glen, &gid, &gnum)))
                return fail(b, EMBER_ERR_USER, ERANGE, "user '%s': ids must be below 4294967295",
                            spec);
        if ((!unum && !name_valid(spec, ulen)) || (group && !gnum && !name_valid(group, glen)))
                return fail(b, EMBER_ERR_USER, EINVAL,
                            "user '%s' is not USER[:GROUP] (names or numbers, 1 to %u bytes "
                            "each, no newline)",
                            spec, EMBER_CFG_NAME_MAX);
        char *uname = unum ? NULL : strndup(spec, ulen);
        char *gname = !group || gnum ? NULL : strdup(group);
        if ((!unum && !uname) || (group && !gnum && !gname)) {
                free(uname);
                free(gname);
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "user: out of memory");
        }
        struct ember_config *c = &b->cfg;
        free(c->user_name);
        free(c->group_name);
        c->has_user = true;
        c->uid = uid;
        /* A number alone is its own group, as ember_builder_exec_user(uid, uid). */
        c->gid = group ? gid : uid;
        c->user_name = uname;
        c->group_name = gname;
        c->group_from_user = uname && !group;
        return 0;
}

EMBER_API int ember_builder_exec_hostname(struct ember_builder *b, const char *hostname)
{
        if (!b)
                return -EINVAL;
        if (!hostname || !*hostname || strlen(hostname) > EMBER_ABI_HOSTNAME_MAX)
                return fail(b, EMBER_ERR_INVALID, EINVAL, "hostname must be 1 to %u characters",
                            EMBER_ABI_HOSTNAME_MAX);
        return set_str(b, &b->cfg.hostname, hostname, EMBER_ERR_INVALID, "hostname");
}

EMBER_API int ember_builder_exec_as_pid1(struct ember_builder *b, int enable)
{
        if (!b)
                return -EINVAL;
        b->cfg.as_pid1 = enable != 0;
        return 0;
}

EMBER_API int ember_builder_console_fds(struct ember_builder *b, int in_fd, int out_fd, int err_fd)
{
        if (!b)
                return -EINVAL;
        if (in_fd < -1 || out_fd < -1 || err_fd < -1)
                return fail(b, EMBER_ERR_CONSOLE, EBADF, "console: invalid file descriptor");
        b->cfg.in_fd = in_fd;
        b->cfg.out_fd = out_fd;
        b->cfg.err_fd = err_fd;
        return 0;
}

EMBER_API int ember_builder_console_output(struct ember_builder *b, const char *path)
{
        return b ? set_str(b, &b->cfg.console_output, path, EMBER_ERR_CONSOLE, "console output")
                 : -EINVAL;
}

EMBER_API int ember_builder_rng(struct ember_builder *b, int enable)
{
        if (!b)
                return -EINVAL;
        b->cfg.no_rng = !enable;
        return 0;
}

EMBER_API int ember_builder_console_tty(struct ember_builder *b, int enable)
{
        if (!b)
                return -EINVAL;
        b->cfg.tty = enable != 0;
        return 0;
}

EMBER_API int ember_builder_on_exit(struct ember_builder *b, ember_exit_observer fn, void *user)
{
        if (!b)
                return -EINVAL;
        if (!fn)
                return fail(b, EMBER_ERR_INVALID, EINVAL, "exit observer: NULL function");
        if (b->cfg.nobservers == EMBER_MAX_OBSERVERS)
                return fail(b, EMBER_ERR_INVALID, ENOSPC, "too many exit observers (at most %d)",
                            EMBER_MAX_OBSERVERS);
        b->cfg.observer[b->cfg.nobservers++] = (struct ember_observer){fn, user};
        return 0;
}

#define DEFAULT_KERNEL EMBER_LIBDIR "/guest/vmlinux"
#define DEFAULT_ROOTFS EMBER_LIBDIR "/rootfs"

/* With no kernel given: EMBER_KERNEL, else the one `make install` put in EMBER_LIBDIR; and
 * then, with no root given either, EMBER_ROOTFS, else the installed root. */
static int builder_defaults(struct ember_builder *b)
{
        struct ember_config *c = &b->cfg;
        if (c->kernel_path)
                return 0;
        const char *k = getenv("EMBER_KERNEL");
        if (!k || !*k)
                k = access(DEFAULT_KERNEL, R_OK) == 0 ? DEFAULT_KERNEL : NULL;
        if (!k)
                return 0; /* builder_validate names the problem */
        int rc = set_str(b, &c->kernel_path, k, EMBER_ERR_KERNEL, "default kernel");
        if (rc || c->rootfs)
                return rc;
        const char *r = getenv("EMBER_ROOTFS");
        struct stat st;
        if (!r || !*r)
                r = stat(DEFAULT_ROOTFS, &st) == 0 && S_ISDIR(st.st_mode) ? DEFAULT_ROOTFS : NULL;
        return r ? set_str(b, &c->rootfs, r, EMBER_ERR_ROOTFS, "default root") : 0;
}

static int disk_add(struct ember_builder *b, unsigned at, const char *path, int read_only)
{
        struct ember_config *c = &b->cfg;
        if (!path || !*path)
                return fail(b, EMBER_ERR_DISK, EINVAL, "disk: no image path given");
        if (c->ndisks == EMBER_MAX_DISKS)
                return fail(b, EMBER_ERR_DISK, ENOSPC, "disk '%s': too many disks (at most %d)",
                            path, EMBER_MAX_DISKS);
        char *dup = strdup(path);
        if (!dup)
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "disk: out of memory");
        memmove(&c->disk[at + 1], &c->disk[at], (c->ndisks - at) * sizeof(c->disk[0]));
        c->disk[at] = (struct ember_disk_cfg){.path = dup, .read_only = read_only != 0};
        c->ndisks++;
        b->last_disk = (int)at;
        return 0;
}

EMBER_API int ember_builder_disk(struct ember_builder *b, const char *path, int read_only)
{
        return b ? disk_add(b, b->cfg.ndisks, path, read_only) : -EINVAL;
}

EMBER_API int ember_builder_disk_serial(struct ember_builder *b, const char *serial)
{
        if (!b)
                return -EINVAL;
        if (b->last_disk < 0)
                return fail(b, EMBER_ERR_DISK, EINVAL, "disk serial: no disk added yet");
        if (!serial || !*serial || strlen(serial) > 20)
                return fail(b, EMBER_ERR_DISK, EINVAL, "disk serial must be 1 to 20 bytes");
        return set_str(b, &b->cfg.disk[b->last_disk].serial, serial, EMBER_ERR_DISK, "disk serial");
}

static bool fstype_valid(const char *t)
{
        size_t n = strlen(t);
        if (n == 0 || n > 31)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '_'))
                        return false;
        return true;
}

EMBER_API int ember_builder_root_disk(struct ember_builder *b, const char *path, int read_only,
                                      const char *fstype)
{
        if (!b)
                return -EINVAL;
        if (b->cfg.root_disk)
                return fail(b, EMBER_ERR_DISK, EEXIST, "root disk: one is given already");
        if (fstype && !fstype_valid(fstype))
                return fail(b, EMBER_ERR_DISK, EINVAL,
                            "root disk: '%s' is not a file system type name (like ext4)", fstype);
        char *t = NULL;
        if (fstype && !(t = strdup(fstype)))
                return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "root disk: out of memory");
        int rc = disk_add(b, 0, path, read_only);
        if (rc) {
                free(t);
                return rc;
        }
        b->cfg.root_disk = true;
        b->cfg.root_fstype = t;
        return 0;
}

/* The root disk's file system type, from its superblock. */
static int detect_fstype(struct ember_builder *b, const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return fail(b, EMBER_ERR_DISK, errno, "disk '%s': %s", path, strerror(errno));
        uint8_t magic[2];
        /* ext2/3/4: s_magic 0xEF53 at byte 56 of the superblock, which starts at 1024. */
        ssize_t n = pread(fd, magic, sizeof(magic), 1024 + 56);
        close(fd);
        if (n == 2 && magic[0] == 0x53 && magic[1] == 0xef) {
                b->cfg.root_fstype = strdup("ext4"); /* the ext4 driver mounts ext2 and ext3 */
                if (!b->cfg.root_fstype)
                        return fail(b, EMBER_ERR_RESOURCE, ENOMEM, "root disk: out of memory");
                return 0;
        }
        return fail(b, EMBER_ERR_DISK, EINVAL,
                    "root disk '%s': unknown file system (ext2/3/4 are detected; give the type)",
                    path);
}

EMBER_API int ember_builder_balloon(struct ember_builder *b, int enable, unsigned flags)
{
        if (!b)
                return -EINVAL;
        const unsigned known =
            EMBER_BALLOON_DEFLATE_ON_OOM | EMBER_BALLOON_NO_REPORTING | EMBER_BALLOON_NO_STATS;
        if (flags & ~known)
                return fail(b, EMBER_ERR_INVALID, EINVAL, "balloon: unknown flags 0x%x",
                            flags & ~known);
        b->cfg.balloon = enable != 0;
        b->cfg.balloon_flags = flags;
        return 0;
}

/* Checks that need no KVM and no file contents. */
static int builder_validate(struct ember_builder *b)
{
        struct ember_config *c = &b->cfg;
        if (c->vcpus == 0)
                return fail(b, EMBER_ERR_VCPUS, EINVAL, "0 vCPUs: a VM needs at least one");
        if (c->vcpus > X86_MAX_VCPUS)
                return fail(b, EMBER_ERR_VCPUS, EINVAL, "%u vCPUs: ember supports at most %u",
                            c->vcpus, X86_MAX_VCPUS);
        if (c->memory_mib < EMBER_MIN_MEMORY_MIB)
                return fail(b, EMBER_ERR_MEMORY, EINVAL,
                            "memory %zu MiB is too small (at least %u MiB)", c->memory_mib,
                            EMBER_MIN_MEMORY_MIB);
        if (c->memory_mib > EMBER_MAX_MEMORY_MIB)
                return fail(b, EMBER_ERR_MEMORY, EINVAL,
                            "memory %zu MiB is too large (at most %u MiB)", c->memory_mib,
                            EMBER_MAX_MEMORY_MIB);
        if (!c->kernel_path)
                return fail(b, EMBER_ERR_KERNEL, EINVAL,
                            "no kernel given, and no default one (EMBER_KERNEL is unset and "
                            "%s is missing)",
                            DEFAULT_KERNEL);
        if (!c->exec_path)
                return fail(b, EMBER_ERR_EXEC, EINVAL, "no command given");
        if (c->rootfs) {
                struct stat st;
                if (stat(c->rootfs, &st) != 0)
                        return fail(b, EMBER_ERR_ROOTFS, errno, "root directory '%s': %s",
                                    c->rootfs, strerror(errno));
                if (!S_ISDIR(st.st_mode))
                        return fail(b, EMBER_ERR_ROOTFS, ENOTDIR,
                                    "root directory '%s' is not a directory", c->rootfs);
        }
        if (c->root_disk && c->rootfs)
                return fail(b, EMBER_ERR_ROOTFS, EINVAL,
                            "both a root directory ('%s') and a root disk ('%s') are given: "
                            "choose one",
                            c->rootfs, c->disk[0].path);
        /* The disks are opened again (and kept) by their devices; checking them here names a
         * bad image before any KVM work. */
        for (unsigned i = 0; i < c->ndisks; i++) {
                int fd;
                uint64_t bytes;
                bool bdev;
                char why[EMBER_ERR_LEN];
                int rc = blk_image_open(c->disk[i].path, c->disk[i].read_only, &fd, &bytes, &bdev,
                                        why, sizeof(why));
                if (rc)
                        return fail(b, EMBER_ERR_DISK, -rc, "%s", why);
                close(fd);
        }
        if (c->root_disk && !c->root_fstype)
                return detect_fstype(b, c->disk[0].path);
        return 0;
}

int ember_vm_create(const struct ember_config *cfg, struct ember_vm **out, enum ember_error *code,
                    char *err, size_t errlen);

EMBER_API int ember_builder_build(struct ember_builder *b, struct ember_vm **out)
{
        if (!b || !out)
                return -EINVAL;
        *out = NULL;
        b->err_code = EMBER_OK;
        b->err[0] = 0;
        int rc = builder_defaults(b);
        if (!rc)
                rc = builder_validate(b);
        if (rc)
                return rc;
        enum ember_error code = EMBER_OK;
        rc = ember_vm_create(&b->cfg, out, &code, b->err, sizeof(b->err));
        if (rc)
                b->err_code = code;
        return rc;
}
