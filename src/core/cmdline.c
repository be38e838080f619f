#include "core/cmdline.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(struct cmdline *c, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct cmdline *c, int error, const char *fmt, ...)
{
        if (c->error)
                return c->error;
        c->error = error;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
        va_end(ap);
        return error;
}

static int is_control(unsigned char ch)
{
        return ch < 0x20 || ch == 0x7f;
}

void cmdline_init(struct cmdline *c)
{
        memset(c, 0, sizeof(*c));
        c->max = CMDLINE_HARD_MAX;
}

int cmdline_set_max(struct cmdline *c, size_t max)
{
        if (c->error)
                return c->error;
        if (max == 0 || max > CMDLINE_HARD_MAX)
                return fail(c, -EINVAL, "kernel command line limit %zu out of range (1 to %u)", max,
                            CMDLINE_HARD_MAX);
        c->max = max;
        if (c->len > max)
                return fail(c, -E2BIG,
                            "kernel command line is %zu bytes, the kernel accepts at most %zu",
                            c->len, max);
        return 0;
}

/* Room for `len` characters plus the NUL. */
static int ensure(struct cmdline *c, size_t len)
{
        if (len < c->cap)
                return 0;
        size_t cap = c->cap ? c->cap : 256;
        while (cap <= len)
                cap *= 2; /* len <= CMDLINE_HARD_MAX: no overflow */
        char *p = realloc(c->buf, cap);
        if (!p)
                return fail(c, -ENOMEM, "out of memory");
        c->buf = p;
        c->cap = cap;
        return 0;
}

void cmdline_free(struct cmdline *c)
{
        free(c->buf);
        memset(c, 0, sizeof(*c));
}

/* Appends the pieces as one word group, preceded by a space unless the line is empty. */
static int append_parts(struct cmdline *c, const char *const *parts, const size_t *lens, unsigned n)
{
        size_t add = c->len ? 1 : 0;
        for (unsigned i = 0; i < n; i++)
                add = lens[i] > SIZE_MAX - add ? SIZE_MAX : add + lens[i];
        if (add > c->max - c->len)
                return fail(c, -E2BIG,
                            "too long: %zu bytes with the %zu added, over the kernel's limit of "
                            "%zu",
                            add > SIZE_MAX - c->len ? SIZE_MAX : c->len + add, add, c->max);
        if (ensure(c, c->len + add))
                return c->error;
        if (c->len)
                c->buf[c->len++] = ' ';
        for (unsigned i = 0; i < n; i++) {
                memcpy(c->buf + c->len, parts[i], lens[i]);
                c->len += lens[i];
        }
        c->buf[c->len] = '\0';
        return 0;
}

int cmdline_append(struct cmdline *c, const char *text)
{
        if (c->error)
                return c->error;
        if (!text)
                return 0;
        for (const char *p = text; *p; p++)
                if (is_control((unsigned char)*p))
                        return fail(c, -EINVAL,
                                    "kernel command line: control character 0x%02x in \"%.40s\"",
                                    (unsigned char)*p, text);
        /* Outer spaces would only double the separators. */
        while (*text == ' ')
                text++;
        size_t len = strlen(text);
        while (len && text[len - 1] == ' ')
                len--;
        if (len == 0)
                return 0;
        const char *parts[1] = {text};
        size_t lens[1] = {len};
        return append_parts(c, parts, lens, 1);
}

int cmdline_append_kv(struct cmdline *c, const char *key, const char *value)
{
        if (c->error)
                return c->error;
        if (!key || !*key)
                return fail(c, -EINVAL, "kernel command line: empty parameter name");
        for (const char *p = key; *p; p++)
                if (is_control((unsigned char)*p) || *p == ' ' || *p == '=' || *p == '"')
                        return fail(c, -EINVAL,
                                    "kernel command line: invalid parameter name \"%.40s\"", key);
        if (!value)
                value = "";
        int quote = 0;
        for (const char *p = value; *p; p++) {
                if (is_control((unsigned char)*p) || *p == '"')
                        return fail(c, -EINVAL,
                                    "kernel command line: %s= value contains %s, which the kernel "
                                    "cannot parse",
                                    key, *p == '"' ? "a double quote" : "a control character");
                if (*p == ' ')
                        quote = 1;
        }
        const char *parts[5] = {key, "=", quote ? "\"" : "", value, quote ? "\"" : ""};
        size_t lens[5] = {strlen(key), 1, quote ? 1u : 0u, strlen(value), quote ? 1u : 0u};
        return append_parts(c, parts, lens, 5);
}

int cmdline_appendf(struct cmdline *c, const char *fmt, ...)
{
        if (c->error)
                return c->error;
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return fail(c, -ENOMEM, "out of memory");
        int r = cmdline_append(c, s);
        free(s);
        return r;
}

const char *cmdline_str(const struct cmdline *c)
{
        return c->buf ? c->buf : "";
}

size_t cmdline_len(const struct cmdline *c)
{
        return c->len;
}

int cmdline_error(const struct cmdline *c)
{
        return c->error;
}

const char *cmdline_errmsg(const struct cmdline *c)
{
        return c->error ? c->errmsg : "";
}
