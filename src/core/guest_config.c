/* Encoder for ember-init's exec configuration. It enforces the same rules as the guest's decoder
 * so that a bad value is reported to the caller by name instead of failing inside the guest. */
#include "core/guest_config.h"

#include "ember/guest_abi.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#define GUEST_CONFIG_PATH_MAX     EMBER_ABI_PATH_MAX
#define GUEST_CONFIG_HOSTNAME_MAX 64u
#define GUEST_CONFIG_NLIMITS      16u /* Linux RLIM_NLIMITS */

static int gcfg_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int gcfg_fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

struct gcfg_writer {
        uint8_t *buf; /* NULL while sizing */
        size_t len;
        size_t total; /* total_len for the header; 0 while sizing */
        bool too_large;
};

static void gcfg_put(struct gcfg_writer *w, const void *p, size_t n)
{
        if (w->too_large || n > EMBER_ABI_CFG_MAX_LEN - w->len) {
                w->too_large = true;
                return;
        }
        if (w->buf)
                memcpy(w->buf + w->len, p, n);
        w->len += n;
}

static void gcfg_put_le(struct gcfg_writer *w, uint64_t v, size_t n)
{
        uint8_t b[8];
        size_t i;

        for (i = 0; i < n; i++)
                b[i] = (uint8_t)(v >> (8 * i));
        gcfg_put(w, b, n);
}

static void gcfg_record(struct gcfg_writer *w, uint16_t type, const void *v, size_t n)
{
        if (n > EMBER_ABI_CFG_MAX_LEN) {
                w->too_large = true;
                return;
        }
        gcfg_put_le(w, type, 2);
        gcfg_put_le(w, 0, 2);
        gcfg_put_le(w, n, 4);
        gcfg_put(w, v, n);
}

static void gcfg_record_str(struct gcfg_writer *w, uint16_t type, const char *s)
{
        gcfg_record(w, type, s, strlen(s));
}

static void gcfg_record_u32(struct gcfg_writer *w, uint16_t type, uint32_t v)
{
        uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};

        gcfg_record(w, type, b, sizeof(b));
}

static int gcfg_validate(const struct guest_config *cfg, char *err, size_t errlen)
{
        uint32_t seen = 0;
        size_t i, n;

        if (!cfg->exec_path || !cfg->exec_path[0])
                return gcfg_fail(err, errlen, "exec path is missing or empty");
        if (strlen(cfg->exec_path) > GUEST_CONFIG_PATH_MAX)
                return gcfg_fail(err, errlen, "exec path is longer than %u bytes",
                                 GUEST_CONFIG_PATH_MAX);
        if (cfg->argc && !cfg->argv)
                return gcfg_fail(err, errlen, "argc is %zu but argv is NULL", cfg->argc);
        for (i = 0; i < cfg->argc; i++)
                if (!cfg->argv[i])
                        return gcfg_fail(err, errlen, "argument %zu is NULL", i);
        if (cfg->envc && !cfg->env)
                return gcfg_fail(err, errlen, "envc is %zu but env is NULL", cfg->envc);
        for (i = 0; i < cfg->envc; i++) {
                const char *e = cfg->env[i], *eq;

                if (!e)
                        return gcfg_fail(err, errlen, "environment entry %zu is NULL", i);
                eq = strchr(e, '=');
                if (!eq)
                        return gcfg_fail(err, errlen,
                                         "environment entry '%.64s' has no '=' (want KEY=VALUE)",
                                         e);
                if (eq == e)
                        return gcfg_fail(err, errlen, "environment entry '%.64s' has an empty name",
                                         e);
        }
        if (cfg->workdir) {
                n = strlen(cfg->workdir);
                if (cfg->workdir[0] != '/')
                        return gcfg_fail(err, errlen, "workdir '%.64s' is not an absolute path",
                                         cfg->workdir);
                if (n > GUEST_CONFIG_PATH_MAX)
                        return gcfg_fail(err, errlen, "workdir is longer than %u bytes",
                                         GUEST_CONFIG_PATH_MAX);
        }
        if (cfg->hostname) {
                n = strlen(cfg->hostname);
                if (n == 0 || n > GUEST_CONFIG_HOSTNAME_MAX)
                        return gcfg_fail(err, errlen, "hostname must be 1 to %u bytes, not %zu",
                                         GUEST_CONFIG_HOSTNAME_MAX, n);
        }
        if (cfg->has_uid && cfg->uid == UINT32_MAX)
                return gcfg_fail(err, errlen, "uid 4294967295 (-1) is not a valid user");
        if (cfg->has_gid && cfg->gid == UINT32_MAX)
                return gcfg_fail(err, errlen, "gid 4294967295 (-1) is not a valid group");
        if (cfg->nrlimits > GUEST_CONFIG_MAX_RLIMITS)
                return gcfg_fail(err, errlen, "%zu rlimits, at most %d", cfg->nrlimits,
                                 GUEST_CONFIG_MAX_RLIMITS);
        for (i = 0; i < cfg->nrlimits; i++) {
                const struct guest_config_rlimit *rl = &cfg->rlimits[i];

                if (rl->resource >= GUEST_CONFIG_NLIMITS)
                        return gcfg_fail(err, errlen, "rlimit %zu: unknown resource %u", i,
                                         rl->resource);
                if (seen & (1u << rl->resource))
                        return gcfg_fail(err, errlen, "rlimit %zu: resource %u given twice", i,
                                         rl->resource);
                seen |= 1u << rl->resource;
                if (rl->soft > rl->hard)
                        return gcfg_fail(err, errlen,
                                         "rlimit %zu (resource %u): soft limit %llu is above hard "
                                         "limit %llu",
                                         i, rl->resource, (unsigned long long)rl->soft,
                                         (unsigned long long)rl->hard);
        }
        if (cfg->flags & ~EMBER_CFG_FLAG_PID1)
                return gcfg_fail(err, errlen, "unknown flags 0x%x",
                                 cfg->flags & ~EMBER_CFG_FLAG_PID1);
        return 0;
}

static void gcfg_write(const struct guest_config *cfg, struct gcfg_writer *w)
{
        size_t i;

        gcfg_put(w, EMBER_ABI_CFG_MAGIC, 8);
        gcfg_put_le(w, EMBER_ABI_VERSION, 4);
        gcfg_put_le(w, w->total, 4); /* known in the second pass */
        gcfg_record_str(w, EMBER_CFG_EXEC_PATH, cfg->exec_path);
        for (i = 0; i < cfg->argc; i++)
                gcfg_record_str(w, EMBER_CFG_ARG, cfg->argv[i]);
        for (i = 0; i < cfg->envc; i++)
                gcfg_record_str(w, EMBER_CFG_ENV, cfg->env[i]);
        if (cfg->workdir)
                gcfg_record_str(w, EMBER_CFG_WORKDIR, cfg->workdir);
        if (cfg->has_uid)
                gcfg_record_u32(w, EMBER_CFG_UID, cfg->uid);
        if (cfg->has_gid)
                gcfg_record_u32(w, EMBER_CFG_GID, cfg->gid);
        for (i = 0; i < cfg->nrlimits; i++) {
                uint8_t v[20];
                uint64_t soft = cfg->rlimits[i].soft, hard = cfg->rlimits[i].hard;
                size_t k;

                for (k = 0; k < 4; k++)
                        v[k] = (uint8_t)(cfg->rlimits[i].resource >> (8 * k));
                for (k = 0; k < 8; k++) {
                        v[4 + k] = (uint8_t)(soft >> (8 * k));
                        v[12 + k] = (uint8_t)(hard >> (8 * k));
                }
                gcfg_record(w, EMBER_CFG_RLIMIT, v, sizeof(v));
        }
        if (cfg->hostname)
                gcfg_record_str(w, EMBER_CFG_HOSTNAME, cfg->hostname);
        if (cfg->flags)
                gcfg_record_u32(w, EMBER_CFG_FLAGS, cfg->flags);
}

int guest_config_encode(const struct guest_config *cfg, uint8_t **out, size_t *len, char *err,
                        size_t errlen)
{
        struct gcfg_writer w = {0};
        int ret;

        *out = NULL;
        *len = 0;
        if (err && errlen)
                err[0] = '\0';
        ret = gcfg_validate(cfg, err, errlen);
        if (ret)
                return ret;
        gcfg_write(cfg, &w);
        if (w.too_large)
                return gcfg_fail(err, errlen, "exec configuration is larger than %u bytes",
                                 EMBER_ABI_CFG_MAX_LEN);
        w.buf = malloc(w.len);
        if (!w.buf)
                return -ENOMEM;
        w.total = w.len;
        w.len = 0;
        gcfg_write(cfg, &w);
        *len = w.len;
        *out = w.buf;
        return 0;
}

static const struct {
        const char *name;
        int resource;
} gcfg_rlimit_names[] = {
    {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK},
};

int guest_config_rlimit_from_name(const char *name, uint32_t *resource)
{
        size_t i;

        if (!name)
                return -EINVAL;
        if (strncasecmp(name, "RLIMIT_", 7) == 0)
                name += 7;
        for (i = 0; i < sizeof(gcfg_rlimit_names) / sizeof(gcfg_rlimit_names[0]); i++) {
                if (strcasecmp(name, gcfg_rlimit_names[i].name) == 0) {
                        *resource = (uint32_t)gcfg_rlimit_names[i].resource;
                        return 0;
                }
        }
        return -EINVAL;
}
