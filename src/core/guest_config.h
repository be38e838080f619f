/* Host side of the exec configuration that ember-init reads from /.ember/config
 * (format: include/ember/guest_abi.h; guest decoder: guest/init/config.c). */
#ifndef EMBER_CORE_GUEST_CONFIG_H
#define EMBER_CORE_GUEST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ember/guest_abi.h"

#define GUEST_CONFIG_MAX_RLIMITS EMBER_ABI_MAX_RLIMITS

struct guest_config_rlimit {
        uint32_t resource; /* Linux RLIMIT_* number */
        uint64_t soft, hard;
};

struct guest_config {
        const char *exec_path;   /* required; looked up in the guest's PATH if it has no '/' */
        const char *const *argv; /* argc strings, argv[0] included; argc 0 means { exec_path } */
        size_t argc;
        const char *const *env; /* envc "KEY=VALUE" strings */
        size_t envc;
        const char *workdir; /* NULL: unset; else absolute */
        bool has_uid;
        uint32_t uid;
        bool has_gid;
        uint32_t gid;
        struct guest_config_rlimit rlimits[GUEST_CONFIG_MAX_RLIMITS];
        size_t nrlimits;
        const char *hostname; /* NULL: unset; 1..64 bytes */
        uint32_t flags;       /* EMBER_CFG_FLAG_* */
};

/* Encodes cfg. On success *out is a malloc'd buffer of *len bytes (free() it) and 0 is returned.
 * Returns -EINVAL with a detail naming the bad item in err (exec path missing or too long,
 * NULL string, env entry without '=' or with an empty name, relative workdir, bad hostname,
 * unknown or duplicate rlimit, soft above hard, unknown flags, uid/gid -1, total above
 * EMBER_ABI_CFG_MAX_LEN), or -ENOMEM. */
int guest_config_encode(const struct guest_config *cfg, uint8_t **out, size_t *len, char *err,
                        size_t errlen);

/* "nofile", "NOFILE" and "RLIMIT_NOFILE" all give RLIMIT_NOFILE. Returns 0 or -EINVAL. */
int guest_config_rlimit_from_name(const char *name, uint32_t *resource);

#endif
