/* Terminal mode's records: the host's relay (src/core/tty.c, its thread included) against
 * ember-init's decoder (guest/init/tty.c, compiled in here), and malformed streams. */
#include "core/tty.h"
#include "ember/guest_abi.h"
#include "test.h"

#include "../../guest/init/tty.c"

struct got {
        char log[8192];
        size_t len;
        uint8_t data[8192];
        size_t ndata;
};

static void got_data(void *ctx, const uint8_t *p, size_t n)
{
        struct got *g = ctx;
        memcpy(g->data + g->ndata, p, n);
        g->ndata += n;
        g->len += (size_t)snprintf(g->log + g->len, sizeof(g->log) - g->len, "D%zu ", n);
}

static void got_resize(void *ctx, unsigned rows, unsigned cols)
{
        struct got *g = ctx;
        g->len += (size_t)snprintf(g->log + g->len, sizeof(g->log) - g->len, "R%ux%u ", rows, cols);
}

static size_t resize_rec(uint8_t *out, unsigned rows, unsigned cols)
{
        uint8_t p[4] = {(uint8_t)rows, (uint8_t)(rows >> 8), (uint8_t)cols, (uint8_t)(cols >> 8)};
        return tty_record(out, EMBER_TTY_REC_RESIZE, p, 4);
}

static void t_roundtrip_any_split(void)
{
        static uint8_t stream[4096], big[EMBER_TTY_DATA_MAX];
        size_t n = 0;
        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (uint8_t)(i * 7);
        n += resize_rec(stream + n, 30, 100);
        n += tty_record(stream + n, EMBER_TTY_REC_DATA, "hello\x03", 6);
        n += tty_record(stream + n, EMBER_TTY_REC_DATA, big, sizeof(big));
        n += resize_rec(stream + n, 1, 65535);
        for (size_t chunk = 1; chunk <= n; chunk = chunk < 9 ? chunk + 1 : chunk * 3) {
                struct got g = {.len = 0};
                struct init_tty_decoder d = {.len = 0};
                struct init_tty_sink sink = {got_data, got_resize, &g};
                for (size_t off = 0; off < n; off += chunk)
                        REQUIRE_EQ(init_tty_decode(&d, stream + off,
                                                   off + chunk > n ? n - off : chunk, &sink),
                                   0);
                CHECK_STR(g.log, "R30x100 D6 D1024 R1x65535 ");
                CHECK_EQ(g.ndata, 6 + sizeof(big));
                CHECK(!memcmp(g.data, "hello\x03", 6));
                CHECK(!memcmp(g.data + 6, big, sizeof(big)));
                CHECK_EQ(d.len, 0);
        }
}

static int decode_all(const uint8_t *p, size_t n)
{
        struct got g = {.len = 0};
        struct init_tty_decoder d = {.len = 0};
        struct init_tty_sink sink = {got_data, got_resize, &g};
        return init_tty_decode(&d, p, n, &sink);
}

static void t_malformed_records(void)
{
        uint8_t unknown[] = {3, 0, 1, 0, 'x'}, empty[] = {1, 0, 0, 0},
                toolong[] = {1, 0, 0x01, 0x04}, /* 1025 */
            badresize[] = {2, 0, 3, 0, 1, 2, 3}, reserved[] = {1, 1, 1, 0, 'x'};
        CHECK_EQ(decode_all(unknown, sizeof(unknown)), -EPROTO);
        CHECK_EQ(decode_all(empty, sizeof(empty)), -EPROTO);
        CHECK_EQ(decode_all(toolong, sizeof(toolong)), -EPROTO);
        CHECK_EQ(decode_all(badresize, sizeof(badresize)), -EPROTO);
        CHECK_EQ(decode_all(reserved, sizeof(reserved)), -EPROTO);
        /* A bad header is refused as soon as it is complete, before any payload. */
        CHECK_EQ(decode_all(toolong, 4), -EPROTO);
        /* A partial record is not an error, and delivers nothing yet. */
        uint8_t partial[] = {1, 0, 5, 0, 'a', 'b'};
        CHECK_EQ(decode_all(partial, sizeof(partial)), 0);
}

/* The host relay's thread: stdin bytes become DATA records, resizes RESIZE records, the size
 * given at creation comes first. */
static void t_host_relay(void)
{
        int in[2];
        REQUIRE_EQ(pipe(in), 0);
        struct tty_relay *r = NULL;
        int console_in = -1;
        char err[128];
        REQUIRE_EQ(tty_relay_create(&r, in[0], 24, 80, &console_in, err, sizeof(err)), 0);
        struct got g = {.len = 0};
        struct init_tty_decoder d = {.len = 0};
        struct init_tty_sink sink = {got_data, got_resize, &g};
        uint8_t buf[2048];
        ssize_t n = read(console_in, buf, sizeof(buf));
        REQUIRE(n > 0);
        REQUIRE_EQ(init_tty_decode(&d, buf, (size_t)n, &sink), 0);
        CHECK_STR(g.log, "R24x80 ");
        REQUIRE_EQ(write(in[1], "ls\r", 3), 3);
        while (g.ndata < 3 && (n = read(console_in, buf, sizeof(buf))) > 0)
                REQUIRE_EQ(init_tty_decode(&d, buf, (size_t)n, &sink), 0);
        CHECK(!memcmp(g.data, "ls\r", 3));
        CHECK_EQ(tty_relay_resize(r, 50, 132), 0);
        while (!strstr(g.log, "R50x132") && (n = read(console_in, buf, sizeof(buf))) > 0)
                REQUIRE_EQ(init_tty_decode(&d, buf, (size_t)n, &sink), 0);
        CHECK_STR(g.log, "R24x80 D3 R50x132 ");
        CHECK_EQ(tty_relay_resize(r, 0, 10), -EINVAL);
        CHECK_EQ(tty_relay_resize(NULL, 10, 10), -ENOTTY);
        /* Teardown while the thread waits on stdin. */
        tty_relay_destroy(r);
        close(in[0]);
        close(in[1]);
}

int main(void)
{
        T_RUN(t_roundtrip_any_split);
        T_RUN(t_malformed_records);
        T_RUN(t_host_relay);
        return T_DONE();
}
