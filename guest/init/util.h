/* ember-init helpers that do not need to run as PID 1; the unit tests compile them on the host. */
#ifndef EMBER_INIT_UTIL_H
#define EMBER_INIT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INIT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Exit status for a waitpid() status: the exit code, or 128+N for signal N. */
int init_status_from_wait(int wstatus);

/* Exit status for an exec failure, as a shell reports it: ENOENT 127, anything else 126. */
int init_status_from_exec_errno(int err);

/* Finds the virtio-console port called `name` under class_dir (normally
 * /sys/class/virtio-ports): writes its entry name ("vport0p1") to dev. 0 or -ENOENT. */
int init_find_port(const char *class_dir, const char *name, char *dev, size_t devlen);

/* Looks up uid in a passwd file: its home directory and primary group. 0, -ENOENT or -errno. */
int init_passwd_lookup(const char *passwd_path, uint32_t uid, char *home, size_t homelen,
                       uint32_t *gid);

/* Looks up a user by name in a passwd file: its uid, primary group and home directory.
 * 0, -ENOENT or -errno. */
int init_passwd_lookup_name(const char *passwd_path, const char *name, uint32_t *uid, uint32_t *gid,
                            char *home, size_t homelen);

/* Looks up a group by name in a group file. 0, -ENOENT or -errno. */
int init_group_lookup_name(const char *group_path, const char *name, uint32_t *gid);

/* The groups of a group file whose member list names `user` (its supplementary groups): stores
 * up to `max` gids, without duplicates, and returns how many, or -errno. */
int init_group_members(const char *group_path, const char *user, uint32_t *gids, size_t max);

/* Value of `key` in a NULL-terminated KEY=VALUE list, or NULL. */
const char *init_env_get(char *const *envp, const char *key);

/* execve() with a PATH search (from envp, else INIT_DEFAULT_PATH) when file has no '/'.
 * Returns only on failure, with the errno to report: ENOENT when nothing was found, EACCES when
 * only non-executable candidates were, else the first other error (ENOEXEC, E2BIG, ...).
 * *interp_missing is set when a candidate exists but execve said ENOENT (its ELF interpreter
 * is missing). */
int init_exec(const char *file, char *const argv[], char *const envp[], bool *interp_missing);

#endif
