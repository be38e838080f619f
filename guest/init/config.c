/* Exec configuration decoder. The host writes this file, but init still treats it as untrusted
 * input: every length is checked against what is left before it is used. */
#include "config.h"

#include "ember/guest_abi.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint16_t cfg_le16(const uint8_t *p)
{
        return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t cfg_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t cfg_le64(const uint8_t *p)
{
        return (uint64_t)cfg_le32(p) | (uint64_t)cfg_le32(p + 4) << 32;
}

static int cfg_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfg_fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static const char *cfg_type_name(uint16_t type)
{
        switch (type) {
        case EMBER_CFG_EXEC_PATH:
                return "exec path";
        case EMBER_CFG_ARG:
                return "argument";
        case EMBER_CFG_ENV:
                return "environment variable";
        case EMBER_CFG_WORKDIR:
                return "workdir";
        case EMBER_CFG_UID:
                return "uid";
        case EMBER_CFG_GID:
                return "gid";
        case EMBER_CFG_RLIMIT:
                return "rlimit";
        case EMBER_CFG_HOSTNAME:
                return "hostname";
        case EMBER_CFG_FLAGS:
                return "flags";
        case EMBER_CFG_USER_NAME:
                return "user name";
        case EMBER_CFG_GROUP_NAME:
                return "group name";
        case EMBER_CFG_ROOT_DEV:
                return "root device";
        case EMBER_CFG_ROOT_FSTYPE:
                return "root file system type";
        case EMBER_CFG_ROOT_FLAGS:
                return "root flags";
        }
        return "unknown";
}

/* Where pass 2 puts things; NULL during pass 1 (validation and counting only). */
struct cfg_sink {
        char *strings;
        size_t used;
};

static char *cfg_string(struct cfg_sink *sink, const uint8_t *v, uint32_t len)
{
        char *s;

        if (!sink)
                return NULL;
        s = sink->strings + sink->used;
        memcpy(s, v, len);
        s[len] = '\0';
        sink->used += (size_t)len + 1;
        return s;
}

/* One pass over the records. Pass 1 (sink == NULL) validates everything and counts arguments,
 * environment entries and string bytes; pass 2 fills cfg from the same, already-checked bytes. */
static int cfg_walk(const uint8_t *buf, size_t len, struct init_config *cfg, struct cfg_sink *sink,
                    size_t *string_bytes, char *err, size_t errlen)
{
        size_t off = EMBER_ABI_CFG_HDR_LEN, index = 0;
        bool seen[EMBER_CFG_GROUP_NAME + 1] = {false};
        size_t argc = 0, envc = 0, nrlimits = 0;
        uint32_t rlimit_seen = 0;
        bool root_seen[3] = {false, false, false}; /* EMBER_CFG_ROOT_DEV.. */

        *string_bytes = 0;
        while (off < len) {
                uint16_t type, reserved;
                uint32_t vlen;
                const uint8_t *v;
                const char *name;

                if (len - off < EMBER_ABI_CFG_REC_LEN)
                        return cfg_fail(err, errlen, "record %zu at offset %zu: truncated header",
                                        index, off);
                type = cfg_le16(buf + off);
                reserved = cfg_le16(buf + off + 2);
                vlen = cfg_le32(buf + off + 4);
                v = buf + off + EMBER_ABI_CFG_REC_LEN;
                name = cfg_type_name(type);
                if (reserved != 0)
                        return cfg_fail(err, errlen,
                                        "record %zu (%s) at offset %zu: reserved field %u", index,
                                        name, off, reserved);
                if (vlen > len - off - EMBER_ABI_CFG_REC_LEN)
                        return cfg_fail(
                            err, errlen,
                            "record %zu (%s) at offset %zu: length %u runs past the end", index,
                            name, off, vlen);

                switch (type) {
                case EMBER_CFG_EXEC_PATH:
                case EMBER_CFG_ARG:
                case EMBER_CFG_ENV:
                case EMBER_CFG_WORKDIR:
                case EMBER_CFG_HOSTNAME:
                case EMBER_CFG_USER_NAME:
                case EMBER_CFG_GROUP_NAME: {
                        const uint8_t *eq;
                        char *s;

                        if (memchr(v, '\0', vlen))
                                return cfg_fail(err, errlen, "record %zu (%s): NUL byte in string",
                                                index, name);
                        if (type != EMBER_CFG_ARG && type != EMBER_CFG_ENV) {
                                if (seen[type])
                                        return cfg_fail(err, errlen, "record %zu: duplicate %s",
                                                        index, name);
                                seen[type] = true;
                        }
                        if (type == EMBER_CFG_EXEC_PATH && (vlen == 0 || vlen > INIT_CFG_PATH_MAX))
                                return cfg_fail(err, errlen, "record %zu: exec path length %u",
                                                index, vlen);
                        if (type == EMBER_CFG_WORKDIR &&
                            (vlen == 0 || v[0] != '/' || vlen > INIT_CFG_PATH_MAX))
                                return cfg_fail(err, errlen,
                                                "record %zu: workdir is not an absolute path",
                                                index);
                        if (type == EMBER_CFG_HOSTNAME &&
                            (vlen == 0 || vlen > INIT_CFG_HOSTNAME_MAX))
                                return cfg_fail(err, errlen, "record %zu: hostname length %u",
                                                index, vlen);
                        if ((type == EMBER_CFG_USER_NAME || type == EMBER_CFG_GROUP_NAME) &&
                            (vlen == 0 || vlen > EMBER_CFG_NAME_MAX || memchr(v, ':', vlen) ||
                             memchr(v, '\n', vlen)))
                                return cfg_fail(err, errlen, "record %zu: bad %s", index, name);
                        if (type == EMBER_CFG_ENV) {
                                eq = memchr(v, '=', vlen);
                                if (!eq)
                                        return cfg_fail(err, errlen,
                                                        "record %zu: environment entry without '='",
                                                        index);
                                if (eq == v)
                                        return cfg_fail(
                                            err, errlen,
                                            "record %zu: environment entry with empty name", index);
                        }
                        *string_bytes += (size_t)vlen + 1;
                        s = cfg_string(sink, v, vlen);
                        if (sink) {
                                if (type == EMBER_CFG_EXEC_PATH)
                                        cfg->exec_path = s;
                                else if (type == EMBER_CFG_ARG)
                                        cfg->argv[argc] = s;
                                else if (type == EMBER_CFG_ENV)
                                        cfg->envp[envc] = s;
                                else if (type == EMBER_CFG_WORKDIR)
                                        cfg->workdir = s;
                                else if (type == EMBER_CFG_USER_NAME)
                                        cfg->user_name = s;
                                else if (type == EMBER_CFG_GROUP_NAME)
                                        cfg->group_name = s;
                                else
                                        cfg->hostname = s;
                        }
                        if (type == EMBER_CFG_ARG)
                                argc++;
                        if (type == EMBER_CFG_ENV)
                                envc++;
                        break;
                }
                case EMBER_CFG_UID:
                case EMBER_CFG_GID:
                case EMBER_CFG_FLAGS: {
                        uint32_t val;

                        if (vlen != 4)
                                return cfg_fail(err, errlen, "record %zu (%s): length %u, want 4",
                                                index, name, vlen);
                        if (seen[type])
                                return cfg_fail(err, errlen, "record %zu: duplicate %s", index,
                                                name);
                        seen[type] = true;
                        val = cfg_le32(v);
                        if (type == EMBER_CFG_FLAGS &&
                            (val & ~(EMBER_CFG_FLAG_PID1 | EMBER_CFG_FLAG_TTY)))
                                return cfg_fail(err, errlen, "record %zu: unknown flags 0x%x",
                                                index,
                                                val & ~(EMBER_CFG_FLAG_PID1 | EMBER_CFG_FLAG_TTY));
                        if (type != EMBER_CFG_FLAGS && val == UINT32_MAX)
                                return cfg_fail(err, errlen, "record %zu: %s -1 is not valid",
                                                index, name);
                        if (sink) {
                                if (type == EMBER_CFG_UID) {
                                        cfg->has_uid = true;
                                        cfg->uid = val;
                                } else if (type == EMBER_CFG_GID) {
                                        cfg->has_gid = true;
                                        cfg->gid = val;
                                } else {
                                        cfg->flags = val;
                                }
                        }
                        break;
                }
                case EMBER_CFG_RLIMIT: {
                        struct init_rlimit rl;

                        if (vlen != 20)
                                return cfg_fail(err, errlen,
                                                "record %zu (rlimit): length %u, want 20", index,
                                                vlen);
                        rl.resource = cfg_le32(v);
                        rl.soft = cfg_le64(v + 4);
                        rl.hard = cfg_le64(v + 12);
                        if (rl.resource >= INIT_CFG_RLIMIT_COUNT)
                                return cfg_fail(err, errlen,
                                                "record %zu: unknown rlimit resource %u", index,
                                                rl.resource);
                        if (rl.soft > rl.hard)
                                return cfg_fail(err, errlen,
                                                "record %zu: rlimit %u soft limit above hard limit",
                                                index, rl.resource);
                        if (rlimit_seen & (1u << rl.resource))
                                return cfg_fail(err, errlen, "record %zu: duplicate rlimit %u",
                                                index, rl.resource);
                        rlimit_seen |= 1u << rl.resource;
                        /* At most one record per resource, so nrlimits stays within the array. */
                        if (sink)
                                cfg->rlimits[nrlimits] = rl;
                        nrlimits++;
                        break;
                }
                case EMBER_CFG_ROOT_DEV:
                case EMBER_CFG_ROOT_FSTYPE:
                case EMBER_CFG_ROOT_FLAGS: {
                        unsigned k = type - EMBER_CFG_ROOT_DEV;

                        if (root_seen[k])
                                return cfg_fail(err, errlen, "record %zu: duplicate %s", index,
                                                name);
                        root_seen[k] = true;
                        if (type == EMBER_CFG_ROOT_FLAGS) {
                                if (vlen != 4)
                                        return cfg_fail(err, errlen,
                                                        "record %zu (%s): length %u, want 4", index,
                                                        name, vlen);
                                if (cfg_le32(v) & ~EMBER_CFG_ROOT_RO)
                                        return cfg_fail(err, errlen,
                                                        "record %zu: unknown root flags 0x%x",
                                                        index, cfg_le32(v) & ~EMBER_CFG_ROOT_RO);
                                if (sink)
                                        cfg->root_flags = cfg_le32(v);
                                break;
                        }
                        if (vlen == 0 || vlen > INIT_CFG_PATH_MAX || memchr(v, '\0', vlen))
                                return cfg_fail(err, errlen, "record %zu (%s): bad string", index,
                                                name);
                        if (type == EMBER_CFG_ROOT_DEV && v[0] != '/')
                                return cfg_fail(err, errlen,
                                                "record %zu: root device is not an absolute path",
                                                index);
                        *string_bytes += (size_t)vlen + 1;
                        if (sink) {
                                char *s = cfg_string(sink, v, vlen);
                                if (type == EMBER_CFG_ROOT_DEV)
                                        cfg->root_dev = s;
                                else
                                        cfg->root_fstype = s;
                        }
                        break;
                }
                default:
                        return cfg_fail(err, errlen, "record %zu at offset %zu: unknown type %u",
                                        index, off, type);
                }
                off += EMBER_ABI_CFG_REC_LEN + (size_t)vlen;
                index++;
        }
        if (!seen[EMBER_CFG_EXEC_PATH])
                return cfg_fail(err, errlen, "no exec path record");
        if (seen[EMBER_CFG_USER_NAME] && seen[EMBER_CFG_UID])
                return cfg_fail(err, errlen, "both a user name and a uid");
        if (seen[EMBER_CFG_GROUP_NAME] && seen[EMBER_CFG_GID])
                return cfg_fail(err, errlen, "both a group name and a gid");
        if (root_seen[0] != root_seen[1] || (root_seen[2] && !root_seen[0]))
                return cfg_fail(err, errlen,
                                "root device and its file system type must come together");
        cfg->argc = argc;
        cfg->envc = envc;
        cfg->nrlimits = nrlimits;
        return 0;
}

int init_config_parse(const uint8_t *buf, size_t len, struct init_config *cfg, char *err,
                      size_t errlen)
{
        struct init_config count;
        struct cfg_sink sink;
        size_t string_bytes, nptrs, argc;
        char **ptrs;
        int ret;

        memset(cfg, 0, sizeof(*cfg));
        if (err && errlen)
                err[0] = '\0';
        if (!buf || len < EMBER_ABI_CFG_HDR_LEN)
                return cfg_fail(err, errlen, "config too short (%zu bytes)", len);
        if (len > EMBER_ABI_CFG_MAX_LEN)
                return cfg_fail(err, errlen, "config too large (%zu bytes)", len);
        if (memcmp(buf, EMBER_ABI_CFG_MAGIC, 8) != 0)
                return cfg_fail(err, errlen, "bad magic");
        if (cfg_le32(buf + 8) != EMBER_ABI_VERSION)
                return cfg_fail(err, errlen, "unsupported config version %u (init speaks %u)",
                                cfg_le32(buf + 8), EMBER_ABI_VERSION);
        if (cfg_le32(buf + 12) != len)
                return cfg_fail(err, errlen, "total length %u does not match the file size %zu",
                                cfg_le32(buf + 12), len);

        memset(&count, 0, sizeof(count));
        ret = cfg_walk(buf, len, &count, NULL, &string_bytes, err, errlen);
        if (ret)
                return ret;

        /* Counts are bounded by len / 8 (a record header each), so none of this can overflow. */
        argc = count.argc ? count.argc : 1;
        nptrs = argc + 1 + count.envc + 1;
        cfg->mem = calloc(1, nptrs * sizeof(char *) + string_bytes + 1);
        if (!cfg->mem)
                return -ENOMEM;
        ptrs = cfg->mem;
        cfg->argv = ptrs;
        cfg->envp = ptrs + argc + 1;
        sink.strings = (char *)(ptrs + nptrs);
        sink.used = 0;
        ret = cfg_walk(buf, len, cfg, &sink, &string_bytes, err, errlen);
        if (ret) {
                init_config_release(cfg);
                return ret;
        }
        if (cfg->argc == 0) {
                cfg->argv[0] = cfg->exec_path;
                cfg->argc = 1;
        }
        cfg->argv[cfg->argc] = NULL;
        cfg->envp[cfg->envc] = NULL;
        return 0;
}

void init_config_release(struct init_config *cfg)
{
        free(cfg->mem);
        memset(cfg, 0, sizeof(*cfg));
}
