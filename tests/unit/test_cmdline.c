/* Kernel command-line builder: words, key=value quoting, limits, rejected characters. */
#include "test.h"

#include "core/cmdline.h"

static void t_words_and_kv(void)
{
        struct cmdline c;
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 2047), 0);
        CHECK_STR(cmdline_str(&c), "");
        CHECK_EQ(cmdline_append(&c, "console=ttyS0"), 0);
        CHECK_EQ(cmdline_append(&c, "  quiet   panic=-1 "), 0);
        CHECK_EQ(cmdline_append_kv(&c, "rdinit", "/.ember/init"), 0);
        CHECK_EQ(cmdline_append(&c, ""), 0);
        CHECK_EQ(cmdline_appendf(&c, "virtio_mmio.device=4K@0x%x:%u", 0xd0000000u, 5u), 0);
        CHECK_STR(cmdline_str(&c), "console=ttyS0 quiet   panic=-1 rdinit=/.ember/init "
                                   "virtio_mmio.device=4K@0xd0000000:5");
        CHECK_EQ(cmdline_len(&c), strlen(cmdline_str(&c)));
        CHECK_EQ(cmdline_error(&c), 0);
        CHECK_STR(cmdline_errmsg(&c), "");
        cmdline_free(&c);
}

static void t_kv_quoting(void)
{
        struct cmdline c;
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
        CHECK_EQ(cmdline_append_kv(&c, "ember.env", "A=b c"), 0);
        CHECK_EQ(cmdline_append_kv(&c, "empty", ""), 0);
        CHECK_EQ(cmdline_append_kv(&c, "nullval", NULL), 0);
        CHECK_STR(cmdline_str(&c), "ember.env=\"A=b c\" empty= nullval=");
        cmdline_free(&c);
}

static void t_bad_keys_and_values(void)
{
        const char *bad_keys[] = {"", "a b", "a=b", "a\"", "a\nb", "\t"};
        for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
                struct cmdline c;
                cmdline_init(&c);
                REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
                CHECK_EQ(cmdline_append_kv(&c, bad_keys[i], "v"), -EINVAL);
                CHECK(strstr(cmdline_errmsg(&c), "parameter name") != NULL);
                cmdline_free(&c);
        }
        struct cmdline c;
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
        CHECK_EQ(cmdline_append_kv(&c, "k", "say \"hi\""), -EINVAL);
        CHECK(strstr(cmdline_errmsg(&c), "double quote") != NULL);
        cmdline_free(&c);
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
        CHECK_EQ(cmdline_append_kv(&c, "k", "a\nb"), -EINVAL);
        CHECK(strstr(cmdline_errmsg(&c), "control character") != NULL);
        cmdline_free(&c);
}

static void t_rejects_newline_and_control(void)
{
        struct cmdline c;
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
        CHECK_EQ(cmdline_append(&c, "a\nb"), -EINVAL);
        CHECK(strstr(cmdline_errmsg(&c), "0x0a") != NULL);
        /* sticky */
        CHECK_EQ(cmdline_append(&c, "fine"), -EINVAL);
        CHECK_EQ(cmdline_append_kv(&c, "k", "v"), -EINVAL);
        CHECK_EQ(cmdline_error(&c), -EINVAL);
        CHECK_STR(cmdline_str(&c), "");
        cmdline_free(&c);

        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
        CHECK_EQ(cmdline_append(&c, "tab\there"), -EINVAL);
        cmdline_free(&c);
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
        CHECK_EQ(cmdline_append(&c, "del\x7f"), -EINVAL);
        cmdline_free(&c);
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 100), 0);
        CHECK_EQ(cmdline_append(&c, "utf8 \xc3\xa9t\xc3\xa9"), 0); /* bytes >= 0x80 are fine */
        cmdline_free(&c);
}

static void t_limit_exact(void)
{
        struct cmdline c;
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 10), 0);
        CHECK_EQ(cmdline_append(&c, "12345"), 0);
        CHECK_EQ(cmdline_append(&c, "6789"), 0); /* "12345 6789" = 10 */
        CHECK_EQ(cmdline_len(&c), 10);
        CHECK_EQ(cmdline_append(&c, "x"), -E2BIG);
        CHECK_STR(cmdline_errmsg(&c),
                  "too long: 12 bytes with the 2 added, over the kernel's limit of 10");
        CHECK_STR(cmdline_str(&c), "12345 6789"); /* unchanged on failure */
        cmdline_free(&c);

        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 10), 0);
        CHECK_EQ(cmdline_append(&c, "12345678901"), -E2BIG);
        CHECK_EQ(cmdline_len(&c), 0);
        cmdline_free(&c);

        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 10), 0);
        CHECK_EQ(cmdline_append_kv(&c, "abc", "d f"), 0); /* abc="d f" = 9 */
        CHECK_EQ(cmdline_append_kv(&c, "x", ""), -E2BIG);
        cmdline_free(&c);
}

static void t_limits_and_defaults(void)
{
        struct cmdline c;
        cmdline_init(&c);
        CHECK_STR(cmdline_str(&c), "");
        CHECK_EQ(cmdline_append(&c, NULL), 0);
        CHECK_EQ(cmdline_set_max(&c, 0), -EINVAL);
        cmdline_free(&c);
        cmdline_init(&c);
        CHECK_EQ(cmdline_set_max(&c, CMDLINE_HARD_MAX + 1), -EINVAL);
        cmdline_free(&c);

        /* Built first, limit learned later (after the kernel probe). */
        cmdline_init(&c);
        CHECK_EQ(cmdline_append(&c, "0123456789 0123456789"), 0);
        CHECK_EQ(cmdline_set_max(&c, 21), 0);
        CHECK_EQ(cmdline_set_max(&c, 20), -E2BIG);
        CHECK(strstr(cmdline_errmsg(&c), "at most 20") != NULL);
        cmdline_free(&c);

        /* The default limit is the hard one. */
        cmdline_init(&c);
        char *big = malloc(CMDLINE_HARD_MAX + 2);
        REQUIRE(big != NULL);
        memset(big, 'a', CMDLINE_HARD_MAX);
        big[CMDLINE_HARD_MAX] = '\0';
        CHECK_EQ(cmdline_append(&c, big), 0);
        CHECK_EQ(cmdline_len(&c), CMDLINE_HARD_MAX);
        CHECK_EQ(cmdline_append(&c, "b"), -E2BIG);
        free(big);
        cmdline_free(&c);
}

static void t_many_appends_until_full(void)
{
        struct cmdline c;
        cmdline_init(&c);
        REQUIRE_EQ(cmdline_set_max(&c, 2047), 0);
        int r = 0, n = 0;
        while ((r = cmdline_append_kv(&c, "ember.k", "0123456789")) == 0)
                n++;
        CHECK_EQ(r, -E2BIG);
        CHECK(cmdline_len(&c) <= 2047);
        CHECK(cmdline_len(&c) > 2047 - 19);
        CHECK_EQ(n, (2047 + 1) / 19);
        CHECK_EQ(strlen(cmdline_str(&c)), cmdline_len(&c));
        cmdline_free(&c);
}

int main(void)
{
        T_RUN(t_words_and_kv);
        T_RUN(t_kv_quoting);
        T_RUN(t_bad_keys_and_values);
        T_RUN(t_rejects_newline_and_control);
        T_RUN(t_limit_exact);
        T_RUN(t_limits_and_defaults);
        T_RUN(t_many_appends_until_full);
        return T_DONE();
}
