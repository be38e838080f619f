/* Decoder for the exec configuration (/.ember/config, format in include/ember/guest_abi.h).
 *
 * Also compiled on the host by the unit tests, so it depends only on libc. */
#ifndef EMBER_INIT_CONFIG_H
#define EMBER_INIT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ember/guest_abi.h"

#define INIT_CFG_MAX_RLIMITS EMBER_ABI_MAX_RLIMITS
/* Linux's RLIM_NLIMITS; resources are Linux x86_64 RLIMIT_* numbers. */
#define INIT_CFG_RLIMIT_COUNT 16u
#define INIT_CFG_HOSTNAME_MAX EMBER_ABI_HOSTNAME_MAX
#define INIT_CFG_PATH_MAX     EMBER_ABI_PATH_MAX

/* One record per resource at most, so the array never overflows. */
_Static_assert(INIT_CFG_MAX_RLIMITS >= INIT_CFG_RLIMIT_COUNT, "rlimit array too small");

struct init_rlimit {
        uint32_t resource;
        uint64_t soft, hard;
};

/* Strings are NUL-terminated copies; argv and envp are NULL-terminated. Everything lives in one
 * allocation released by init_config_release(). */
struct init_config {
        char *exec_path;
        char **argv; /* argc entries; if the config has no ARG record, { exec_path } */
        size_t argc;
        char **envp;
        size_t envc;
        char *workdir;  /* NULL: unset */
        char *hostname; /* NULL: unset */
        bool has_uid, has_gid;
        uint32_t uid, gid;
        struct init_rlimit rlimits[INIT_CFG_MAX_RLIMITS];
        size_t nrlimits;
        uint32_t flags;
        void *mem;
};

/* Validates buf strictly (any malformed, unknown, duplicate or out-of-range record is an error).
 * Returns 0, -EINVAL (err says why) or -ENOMEM. On error *cfg holds nothing to release. */
int init_config_parse(const uint8_t *buf, size_t len, struct init_config *cfg, char *err,
                      size_t errlen);
void init_config_release(struct init_config *cfg);

#endif
