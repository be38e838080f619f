/* Exec configuration: host encoder (src/core/guest_config.c) against the guest decoder
 * (guest/init/config.c), compiled in here, plus malformed inputs for the decoder. */
#include "core/guest_config.h"
#include "ember/guest_abi.h"
#include "test.h"

#include "../../guest/init/config.c"

#include <sys/resource.h>

static uint8_t *encode_ok(const struct guest_config *cfg, size_t *len)
{
        char err[256];
        uint8_t *buf = NULL;
        int ret = guest_config_encode(cfg, &buf, len, err, sizeof(err));

        if (ret != 0)
                FAILF("encode failed: %d %s", ret, err);
        return buf;
}

static void put32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

/* Builds a header plus raw records for malformed-input cases; total_len = buffer length. */
struct raw {
        uint8_t buf[512];
        size_t len;
};

static void raw_init(struct raw *r)
{
        memcpy(r->buf, EMBER_ABI_CFG_MAGIC, 8);
        put32(r->buf + 8, EMBER_ABI_VERSION);
        r->len = EMBER_ABI_CFG_HDR_LEN;
        put32(r->buf + 12, (uint32_t)r->len);
}

static void raw_rec(struct raw *r, uint16_t type, const void *v, uint32_t n)
{
        r->buf[r->len] = (uint8_t)type;
        r->buf[r->len + 1] = (uint8_t)(type >> 8);
        r->buf[r->len + 2] = 0;
        r->buf[r->len + 3] = 0;
        put32(r->buf + r->len + 4, n);
        memcpy(r->buf + r->len + 8, v, n);
        r->len += 8 + n;
        put32(r->buf + 12, (uint32_t)r->len);
}

static void raw_str(struct raw *r, uint16_t type, const char *s)
{
        raw_rec(r, type, s, (uint32_t)strlen(s));
}

static int parse(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
        struct init_config cfg;
        int ret = init_config_parse(buf, len, &cfg, err, errlen);

        if (ret == 0)
                init_config_release(&cfg);
        return ret;
}

static void expect_reject(const struct raw *r, const char *what)
{
        char err[256] = "";
        int ret = parse(r->buf, r->len, err, sizeof(err));

        if (ret != -EINVAL)
                t_fail(__FILE__, __LINE__, "%s: parse returned %d, want -EINVAL", what, ret);
        else if (!err[0])
                t_fail(__FILE__, __LINE__, "%s: rejected without a message", what);
}

static void t_roundtrip_full(void)
{
        const char *argv[] = {"sh", "-c", "echo hi; exit 7", ""};
        const char *env[] = {"A=1", "EMPTY=", "EQ==x=y"};
        struct guest_config c = {
            .exec_path = "/bin/sh",
            .argv = argv,
            .argc = 4,
            .env = env,
            .envc = 3,
            .workdir = "/tmp/work dir",
            .has_uid = true,
            .uid = 1000,
            .has_gid = true,
            .gid = 0,
            .rlimits = {{RLIMIT_NOFILE, 1024, 4096}, {RLIMIT_CORE, 0, RLIM_INFINITY}},
            .nrlimits = 2,
            .hostname = "box",
            .flags = EMBER_CFG_FLAG_PID1,
        };
        struct init_config d;
        char err[256];
        size_t len, i;
        uint8_t *buf = encode_ok(&c, &len);

        /* The header layout is ABI. */
        CHECK(memcmp(buf, "EMBERCFG", 8) == 0);
        CHECK_EQ(cfg_le32(buf + 8), EMBER_ABI_VERSION);
        CHECK_EQ(cfg_le32(buf + 12), len);
        CHECK_EQ(cfg_le16(buf + 16), EMBER_CFG_EXEC_PATH);
        CHECK_EQ(cfg_le16(buf + 18), 0);
        CHECK_EQ(cfg_le32(buf + 20), 7);
        CHECK(memcmp(buf + 24, "/bin/sh", 7) == 0);

        REQUIRE_EQ(init_config_parse(buf, len, &d, err, sizeof(err)), 0);
        CHECK_STR(d.exec_path, "/bin/sh");
        REQUIRE_EQ(d.argc, 4);
        for (i = 0; i < 4; i++)
                CHECK_STR(d.argv[i], argv[i]);
        CHECK(d.argv[4] == NULL);
        REQUIRE_EQ(d.envc, 3);
        for (i = 0; i < 3; i++)
                CHECK_STR(d.envp[i], env[i]);
        CHECK(d.envp[3] == NULL);
        CHECK_STR(d.workdir, "/tmp/work dir");
        CHECK_STR(d.hostname, "box");
        CHECK(d.has_uid && d.uid == 1000);
        CHECK(d.has_gid && d.gid == 0);
        REQUIRE_EQ(d.nrlimits, 2);
        CHECK_EQ(d.rlimits[0].resource, RLIMIT_NOFILE);
        CHECK_EQ(d.rlimits[0].soft, 1024);
        CHECK_EQ(d.rlimits[0].hard, 4096);
        CHECK_EQ(d.rlimits[1].resource, RLIMIT_CORE);
        CHECK(d.rlimits[1].hard == RLIM_INFINITY);
        CHECK_EQ(d.flags, EMBER_CFG_FLAG_PID1);
        init_config_release(&d);
        free(buf);
}

static void t_roundtrip_minimal(void)
{
        struct guest_config c = {.exec_path = "true"};
        struct init_config d;
        char err[256];
        size_t len;
        uint8_t *buf = encode_ok(&c, &len);

        CHECK_EQ(len, EMBER_ABI_CFG_HDR_LEN + EMBER_ABI_CFG_REC_LEN + 4);
        REQUIRE_EQ(init_config_parse(buf, len, &d, err, sizeof(err)), 0);
        CHECK_STR(d.exec_path, "true");
        /* No ARG record: argv is { exec_path }. */
        REQUIRE_EQ(d.argc, 1);
        CHECK_STR(d.argv[0], "true");
        CHECK(d.argv[1] == NULL);
        CHECK_EQ(d.envc, 0);
        CHECK(d.envp[0] == NULL);
        CHECK(d.workdir == NULL);
        CHECK(d.hostname == NULL);
        CHECK(!d.has_uid && !d.has_gid);
        CHECK_EQ(d.nrlimits, 0);
        CHECK_EQ(d.flags, 0);
        init_config_release(&d);
        free(buf);
}

static void t_roundtrip_all_rlimits(void)
{
        struct guest_config c = {.exec_path = "/x"};
        struct init_config d;
        char err[256];
        size_t len, i;
        uint8_t *buf;

        for (i = 0; i < 16; i++)
                c.rlimits[i] = (struct guest_config_rlimit){(uint32_t)(15 - i), i, i * 2};
        c.nrlimits = 16;
        buf = encode_ok(&c, &len);
        REQUIRE_EQ(init_config_parse(buf, len, &d, err, sizeof(err)), 0);
        REQUIRE_EQ(d.nrlimits, 16);
        for (i = 0; i < 16; i++) {
                CHECK_EQ(d.rlimits[i].resource, 15 - i);
                CHECK_EQ(d.rlimits[i].soft, i);
                CHECK_EQ(d.rlimits[i].hard, i * 2);
        }
        init_config_release(&d);
        free(buf);
}

static void expect_encode_error(const struct guest_config *c, const char *needle, int line)
{
        char err[256] = "";
        uint8_t *buf = (uint8_t *)1;
        size_t len = 1;
        int ret = guest_config_encode(c, &buf, &len, err, sizeof(err));

        if (ret != -EINVAL)
                t_fail(__FILE__, line, "encode returned %d, want -EINVAL", ret);
        else if (!strstr(err, needle))
                t_fail(__FILE__, line, "error \"%s\" does not mention \"%s\"", err, needle);
        if (buf != NULL || len != 0)
                t_fail(__FILE__, line, "output not cleared on error");
}

static void t_encode_rejects(void)
{
        const char *no_eq[] = {"A=1", "NOEQUALS"};
        const char *empty_key[] = {"=value"};
        const char *null_arg[] = {"a", NULL};
        struct guest_config base = {.exec_path = "/bin/true"}, c;
        char longname[70];

        c = base;
        c.exec_path = NULL;
        expect_encode_error(&c, "exec path", __LINE__);
        c.exec_path = "";
        expect_encode_error(&c, "exec path", __LINE__);

        c = base;
        c.env = no_eq;
        c.envc = 2;
        expect_encode_error(&c, "NOEQUALS", __LINE__);
        c.env = empty_key;
        c.envc = 1;
        expect_encode_error(&c, "empty name", __LINE__);

        c = base;
        c.argv = null_arg;
        c.argc = 2;
        expect_encode_error(&c, "argument 1", __LINE__);

        c = base;
        c.workdir = "relative/dir";
        expect_encode_error(&c, "relative/dir", __LINE__);
        c.workdir = "";
        expect_encode_error(&c, "workdir", __LINE__);

        c = base;
        memset(longname, 'h', 65);
        longname[65] = '\0';
        c.hostname = longname;
        expect_encode_error(&c, "hostname", __LINE__);
        c.hostname = "";
        expect_encode_error(&c, "hostname", __LINE__);

        c = base;
        c.rlimits[0] = (struct guest_config_rlimit){16, 0, 0};
        c.nrlimits = 1;
        expect_encode_error(&c, "unknown resource", __LINE__);
        c.rlimits[0] = (struct guest_config_rlimit){RLIMIT_NOFILE, 10, 5};
        expect_encode_error(&c, "soft limit", __LINE__);
        c.rlimits[0] = (struct guest_config_rlimit){RLIMIT_NOFILE, 1, 5};
        c.rlimits[1] = (struct guest_config_rlimit){RLIMIT_NOFILE, 1, 5};
        c.nrlimits = 2;
        expect_encode_error(&c, "twice", __LINE__);
        c.nrlimits = 17;
        expect_encode_error(&c, "rlimits", __LINE__);

        c = base;
        c.flags = 0x80;
        expect_encode_error(&c, "flags", __LINE__);
        c = base;
        c.has_uid = true;
        c.uid = UINT32_MAX;
        expect_encode_error(&c, "uid", __LINE__);
}

/* User and group names travel as strings; the guest resolves them. */
static void t_user_and_group_names(void)
{
        struct guest_config c = {.exec_path = "id", .user_name = "alice", .group_name = "staff"};
        struct init_config d;
        char err[256];
        size_t len;
        uint8_t *buf = encode_ok(&c, &len);
        struct raw r;

        REQUIRE_EQ(init_config_parse(buf, len, &d, err, sizeof(err)), 0);
        CHECK_STR(d.user_name, "alice");
        CHECK_STR(d.group_name, "staff");
        CHECK(!d.has_uid && !d.has_gid);
        init_config_release(&d);
        free(buf);
        /* A numeric uid with a group name. */
        c = (struct guest_config){.exec_path = "id", .has_uid = true, .uid = 7, .group_name = "g"};
        buf = encode_ok(&c, &len);
        REQUIRE_EQ(init_config_parse(buf, len, &d, err, sizeof(err)), 0);
        CHECK(d.has_uid && d.uid == 7 && d.user_name == NULL);
        CHECK_STR(d.group_name, "g");
        init_config_release(&d);
        free(buf);

        c = (struct guest_config){.exec_path = "id", .user_name = "a:b"};
        expect_encode_error(&c, "user name", __LINE__);
        c.user_name = "";
        expect_encode_error(&c, "user name", __LINE__);
        c.user_name = "new\nline";
        expect_encode_error(&c, "user name", __LINE__);
        c = (struct guest_config){.exec_path = "id", .user_name = "a", .has_uid = true};
        expect_encode_error(&c, "uid", __LINE__);
        c = (struct guest_config){.exec_path = "id", .group_name = "g", .has_gid = true};
        expect_encode_error(&c, "gid", __LINE__);

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "id");
        raw_str(&r, EMBER_CFG_USER_NAME, "x:y");
        expect_reject(&r, "user name with ':'");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "id");
        raw_str(&r, EMBER_CFG_GROUP_NAME, "");
        expect_reject(&r, "empty group name");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "id");
        raw_str(&r, EMBER_CFG_USER_NAME, "a");
        raw_str(&r, EMBER_CFG_USER_NAME, "b");
        expect_reject(&r, "two user names");
        {
                uint8_t one[4] = {1, 0, 0, 0};
                raw_init(&r);
                raw_str(&r, EMBER_CFG_EXEC_PATH, "id");
                raw_str(&r, EMBER_CFG_USER_NAME, "a");
                raw_rec(&r, EMBER_CFG_UID, one, 4);
                expect_reject(&r, "user name and uid");
                raw_init(&r);
                raw_str(&r, EMBER_CFG_EXEC_PATH, "id");
                raw_rec(&r, EMBER_CFG_GID, one, 4);
                raw_str(&r, EMBER_CFG_GROUP_NAME, "g");
                expect_reject(&r, "group name and gid");
        }
}

static void t_encode_rejects_too_large(void)
{
        size_t n = EMBER_ABI_CFG_MAX_LEN;
        char *big = malloc(n + 1);
        const char *env[1];
        struct guest_config c = {.exec_path = "/bin/true", .env = env, .envc = 1};

        REQUIRE(big);
        memset(big, 'x', n);
        big[0] = 'K';
        big[1] = '=';
        big[n] = '\0';
        env[0] = big;
        expect_encode_error(&c, "larger", __LINE__);
        /* Just fits: header + exec record + this env record = MAX. */
        big[EMBER_ABI_CFG_MAX_LEN - EMBER_ABI_CFG_HDR_LEN - 2 * EMBER_ABI_CFG_REC_LEN - 9] = '\0';
        {
                uint8_t *buf;
                size_t len;
                struct init_config d;
                char err[128];

                buf = encode_ok(&c, &len);
                CHECK_EQ(len, EMBER_ABI_CFG_MAX_LEN);
                CHECK_EQ(init_config_parse(buf, len, &d, err, sizeof(err)), 0);
                init_config_release(&d);
                free(buf);
        }
        free(big);
}

static void t_rlimit_names(void)
{
        uint32_t r = 99;

        CHECK_EQ(guest_config_rlimit_from_name("nofile", &r), 0);
        CHECK_EQ(r, RLIMIT_NOFILE);
        r = 99;
        CHECK_EQ(guest_config_rlimit_from_name("NOFILE", &r), 0);
        CHECK_EQ(r, RLIMIT_NOFILE);
        r = 99;
        CHECK_EQ(guest_config_rlimit_from_name("RLIMIT_NOFILE", &r), 0);
        CHECK_EQ(r, RLIMIT_NOFILE);
        CHECK_EQ(guest_config_rlimit_from_name("rlimit_stack", &r), 0);
        CHECK_EQ(r, RLIMIT_STACK);
        CHECK_EQ(guest_config_rlimit_from_name("as", &r), 0);
        CHECK_EQ(r, RLIMIT_AS);
        CHECK_EQ(guest_config_rlimit_from_name("rttime", &r), 0);
        CHECK_EQ(r, RLIMIT_RTTIME);
        CHECK_EQ(guest_config_rlimit_from_name("bogus", &r), -EINVAL);
        CHECK_EQ(guest_config_rlimit_from_name("", &r), -EINVAL);
        CHECK_EQ(guest_config_rlimit_from_name("RLIMIT_", &r), -EINVAL);
        CHECK_EQ(guest_config_rlimit_from_name("nofilex", &r), -EINVAL);
        CHECK_EQ(guest_config_rlimit_from_name(NULL, &r), -EINVAL);
}

static void t_decode_header_errors(void)
{
        struct raw r;
        size_t n;

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        CHECK_EQ(parse(r.buf, r.len, NULL, 0), 0);

        for (n = 0; n < EMBER_ABI_CFG_HDR_LEN; n++) {
                struct raw t = r;
                t.len = n;
                put32(t.buf + 12, (uint32_t)n);
                expect_reject(&t, "truncated header");
        }
        CHECK_EQ(parse(NULL, 0, NULL, 0), -EINVAL);
        {
                struct raw t = r;
                t.buf[0] = 'X';
                expect_reject(&t, "bad magic");
        }
        {
                struct raw t = r;
                put32(t.buf + 8, EMBER_ABI_VERSION + 1);
                expect_reject(&t, "bad version");
                put32(t.buf + 8, 0);
                expect_reject(&t, "version 0");
        }
        {
                struct raw t = r;
                put32(t.buf + 12, (uint32_t)r.len + 1);
                expect_reject(&t, "total_len above size");
                put32(t.buf + 12, (uint32_t)r.len - 1);
                expect_reject(&t, "total_len below size");
        }
        {
                /* Header only: no exec path. */
                struct raw t;
                raw_init(&t);
                expect_reject(&t, "no exec path");
        }
}

static void t_decode_oversized(void)
{
        size_t n = (size_t)EMBER_ABI_CFG_MAX_LEN + 8;
        uint8_t *buf = calloc(1, n);
        char err[128];

        REQUIRE(buf);
        memcpy(buf, EMBER_ABI_CFG_MAGIC, 8);
        put32(buf + 8, EMBER_ABI_VERSION);
        put32(buf + 12, (uint32_t)n);
        CHECK_EQ(parse(buf, n, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "too large") != NULL);
        free(buf);
}

static void t_decode_record_errors(void)
{
        uint8_t v20[20] = {0}, v4[4] = {0};
        struct raw r;

        /* Record header cut short. */
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        r.len += 4;
        put32(r.buf + 12, (uint32_t)r.len);
        expect_reject(&r, "truncated record header");

        /* Record length past the end (and a huge one that would overflow off + len). */
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        put32(r.buf + 20, 8);
        expect_reject(&r, "length past end");
        put32(r.buf + 20, 0xffffffffu);
        expect_reject(&r, "length 0xffffffff");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        r.buf[18] = 1;
        expect_reject(&r, "reserved nonzero");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, 0, "x");
        expect_reject(&r, "type 0");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, EMBER_CFG_GROUP_NAME + 1, "x");
        expect_reject(&r, "the first unknown type");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, 0xffff, "");
        expect_reject(&r, "type 0xffff");

        raw_init(&r);
        raw_rec(&r, EMBER_CFG_EXEC_PATH, "/bin\0sh", 7);
        expect_reject(&r, "NUL in exec path");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_rec(&r, EMBER_CFG_ARG, "a\0", 2);
        expect_reject(&r, "NUL in arg");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_rec(&r, EMBER_CFG_ENV, "A=\0", 3);
        expect_reject(&r, "NUL in env");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "");
        expect_reject(&r, "empty exec path");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/b");
        expect_reject(&r, "duplicate exec path");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_str(&r, EMBER_CFG_ENV, "NOEQ");
        expect_reject(&r, "env without =");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_str(&r, EMBER_CFG_ENV, "=v");
        expect_reject(&r, "env with empty name");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_str(&r, EMBER_CFG_WORKDIR, "rel");
        expect_reject(&r, "relative workdir");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_str(&r, EMBER_CFG_WORKDIR, "/a");
        raw_str(&r, EMBER_CFG_WORKDIR, "/b");
        expect_reject(&r, "duplicate workdir");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_str(&r, EMBER_CFG_HOSTNAME,
                "01234567890123456789012345678901234567890123456789012345678901234");
        expect_reject(&r, "hostname 65");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_rec(&r, EMBER_CFG_UID, v4, 3);
        expect_reject(&r, "uid length 3");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_rec(&r, EMBER_CFG_GID, v20, 8);
        expect_reject(&r, "gid length 8");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_rec(&r, EMBER_CFG_UID, v4, 4);
        raw_rec(&r, EMBER_CFG_UID, v4, 4);
        expect_reject(&r, "duplicate uid");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_rec(&r, EMBER_CFG_UID, "\xff\xff\xff\xff", 4);
        expect_reject(&r, "uid -1");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_rec(&r, EMBER_CFG_FLAGS, "\x04\0\0\0", 4);
        expect_reject(&r, "unknown flag");

        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        raw_rec(&r, EMBER_CFG_RLIMIT, v20, 19);
        expect_reject(&r, "rlimit length 19");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        put32(v20, 16);
        raw_rec(&r, EMBER_CFG_RLIMIT, v20, 20);
        expect_reject(&r, "rlimit resource 16");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        put32(v20, RLIMIT_NOFILE);
        v20[4] = 2; /* soft 2 > hard 0 */
        raw_rec(&r, EMBER_CFG_RLIMIT, v20, 20);
        expect_reject(&r, "rlimit soft > hard");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/a");
        v20[4] = 0;
        raw_rec(&r, EMBER_CFG_RLIMIT, v20, 20);
        raw_rec(&r, EMBER_CFG_RLIMIT, v20, 20);
        expect_reject(&r, "duplicate rlimit");
}

/* Every truncation and many single-byte corruptions of a valid config: never a crash (ASan
 * build), and whatever is accepted is internally consistent. */
/* Root on a disk: the three records round-trip, and the decoder refuses them incomplete,
 * duplicated, relative or with unknown flags (the encoder refuses the same). */
static void t_root_disk_records(void)
{
        struct guest_config g = {.exec_path = "/bin/sh",
                                 .root_dev = "/dev/vda",
                                 .root_fstype = "ext4",
                                 .root_flags = EMBER_CFG_ROOT_RO};
        struct init_config cfg;
        char err[256];
        size_t len;
        uint8_t *buf = encode_ok(&g, &len);
        REQUIRE(buf);
        REQUIRE_EQ(init_config_parse(buf, len, &cfg, err, sizeof(err)), 0);
        CHECK_STR(cfg.root_dev, "/dev/vda");
        CHECK_STR(cfg.root_fstype, "ext4");
        CHECK_EQ(cfg.root_flags, EMBER_CFG_ROOT_RO);
        init_config_release(&cfg);
        free(buf);
        /* Without a root disk there are no such records. */
        g.root_dev = g.root_fstype = NULL;
        g.root_flags = 0;
        buf = encode_ok(&g, &len);
        REQUIRE(buf);
        REQUIRE_EQ(init_config_parse(buf, len, &cfg, err, sizeof(err)), 0);
        CHECK(cfg.root_dev == NULL);
        init_config_release(&cfg);
        free(buf);

        buf = NULL;
        g.root_dev = "/dev/vda";
        CHECK_EQ(guest_config_encode(&g, &buf, &len, err, sizeof(err)), -EINVAL);
        g.root_fstype = "ext4";
        g.root_dev = "vda";
        CHECK_EQ(guest_config_encode(&g, &buf, &len, err, sizeof(err)), -EINVAL);
        g.root_dev = "/dev/vda";
        g.root_flags = 2;
        CHECK_EQ(guest_config_encode(&g, &buf, &len, err, sizeof(err)), -EINVAL);
        g.root_dev = g.root_fstype = NULL;
        g.root_flags = EMBER_CFG_ROOT_RO;
        CHECK_EQ(guest_config_encode(&g, &buf, &len, err, sizeof(err)), -EINVAL);
        CHECK(buf == NULL);

        uint8_t v4[4] = {0};
        struct raw r;
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, EMBER_CFG_ROOT_DEV, "/dev/vda");
        expect_reject(&r, "root device without a type");
        raw_str(&r, EMBER_CFG_ROOT_FSTYPE, "ext4");
        CHECK_EQ(parse(r.buf, r.len, err, sizeof(err)), 0);
        raw_str(&r, EMBER_CFG_ROOT_FSTYPE, "ext4");
        expect_reject(&r, "duplicate root type");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, EMBER_CFG_ROOT_DEV, "dev/vda");
        raw_str(&r, EMBER_CFG_ROOT_FSTYPE, "ext4");
        expect_reject(&r, "relative root device");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, EMBER_CFG_ROOT_DEV, "/dev/vda");
        raw_str(&r, EMBER_CFG_ROOT_FSTYPE, "");
        expect_reject(&r, "empty root type");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, EMBER_CFG_ROOT_DEV, "/dev/vda");
        raw_str(&r, EMBER_CFG_ROOT_FSTYPE, "ext4");
        put32(v4, 6);
        raw_rec(&r, EMBER_CFG_ROOT_FLAGS, v4, 4);
        expect_reject(&r, "unknown root flags");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        put32(v4, 1);
        raw_rec(&r, EMBER_CFG_ROOT_FLAGS, v4, 4);
        expect_reject(&r, "root flags without a root device");
        raw_init(&r);
        raw_str(&r, EMBER_CFG_EXEC_PATH, "/bin/sh");
        raw_str(&r, EMBER_CFG_ROOT_DEV, "/dev/vda");
        raw_str(&r, EMBER_CFG_ROOT_FSTYPE, "ext4");
        raw_rec(&r, EMBER_CFG_ROOT_FLAGS, v4, 3);
        expect_reject(&r, "short root flags");
}

static void t_decode_mutations(void)
{
        const char *argv[] = {"sh", "-c", "x"};
        const char *env[] = {"A=1", "PATH=/bin"};
        struct guest_config c = {.exec_path = "/bin/sh",
                                 .argv = argv,
                                 .argc = 3,
                                 .env = env,
                                 .envc = 2,
                                 .workdir = "/w",
                                 .has_uid = true,
                                 .uid = 5,
                                 .rlimits = {{RLIMIT_NOFILE, 1, 2}},
                                 .nrlimits = 1,
                                 .hostname = "h"};
        static const uint8_t values[] = {0x00, 0x01, 0x02, 0x07, 0x09, 0x0a,
                                         0x10, 0x3d, 0x7f, 0x80, 0xfe, 0xff};
        struct init_config d;
        char err[256];
        size_t len, n, i, k, accepted = 0;
        uint8_t *buf = encode_ok(&c, &len), *m = malloc(len);

        REQUIRE(m);
        for (n = 0; n <= len; n++) {
                memcpy(m, buf, len);
                if (n >= 16)
                        put32(m + 12, (uint32_t)n);
                if (init_config_parse(m, n, &d, err, sizeof(err)) == 0) {
                        accepted++;
                        CHECK(d.argv[d.argc] == NULL && d.envp[d.envc] == NULL);
                        init_config_release(&d);
                }
        }
        CHECK(accepted > 1); /* cuts at record boundaries are valid configs */
        for (i = 0; i < len; i++) {
                for (k = 0; k < sizeof(values); k++) {
                        memcpy(m, buf, len);
                        m[i] = values[k];
                        if (init_config_parse(m, len, &d, err, sizeof(err)) == 0) {
                                for (n = 0; n < d.argc; n++)
                                        CHECK(d.argv[n] != NULL);
                                for (n = 0; n < d.envc; n++)
                                        CHECK(strchr(d.envp[n], '=') > d.envp[n]);
                                CHECK(d.exec_path && d.exec_path[0]);
                                CHECK(!d.workdir || d.workdir[0] == '/');
                                init_config_release(&d);
                        } else {
                                CHECK(err[0] != '\0');
                        }
                }
        }
        free(m);
        free(buf);
}

int main(void)
{
        T_RUN(t_roundtrip_full);
        T_RUN(t_roundtrip_minimal);
        T_RUN(t_roundtrip_all_rlimits);
        T_RUN(t_encode_rejects);
        T_RUN(t_user_and_group_names);
        T_RUN(t_encode_rejects_too_large);
        T_RUN(t_rlimit_names);
        T_RUN(t_decode_header_errors);
        T_RUN(t_decode_oversized);
        T_RUN(t_decode_record_errors);
        T_RUN(t_decode_mutations);
        T_RUN(t_root_disk_records);
        return T_DONE();
}
