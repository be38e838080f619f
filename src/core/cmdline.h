/* A bounded kernel command-line builder.
 *
 * The limit is the kernel's (bzImage: setup header cmdline_size; PVH: X86_PVH_CMDLINE_MAX),
 * terminating NUL not included; until cmdline_set_max() it is CMDLINE_HARD_MAX. Errors are
 * sticky: after the first failure every append is a no-op returning the same error, so a
 * caller can append everything and check once. */
#ifndef EMBER_CORE_CMDLINE_H
#define EMBER_CORE_CMDLINE_H

#include <stddef.h>

/* What any x86 kernel could take at ember's command-line address (64 KiB, NUL included). */
#define CMDLINE_HARD_MAX 65535u

struct cmdline {
        char *buf;  /* NULL until the first append, then always NUL-terminated */
        size_t len; /* strlen(buf) */
        size_t cap; /* bytes allocated */
        size_t max; /* longest allowed length */
        int error;  /* first error (-errno), 0 if none */
        char errmsg[200];
};

void cmdline_init(struct cmdline *c);
void cmdline_free(struct cmdline *c);

/* Sets the limit (1..CMDLINE_HARD_MAX). A line already longer gives -E2BIG (sticky). */
int cmdline_set_max(struct cmdline *c, size_t max);

/* Appends `text` (one or more space-separated words) after a separating space. Rejected with
 * -EINVAL: control characters (newline included). -E2BIG: the result would exceed max.
 * Empty or NULL text is a no-op. */
int cmdline_append(struct cmdline *c, const char *text);

/* Appends key=value. The key must be non-empty, without spaces, '=', '"' or control characters.
 * A value with spaces is quoted ("key=\"a b\""); a value may not contain '"' or control
 * characters (the kernel's parser cannot escape them). */
int cmdline_append_kv(struct cmdline *c, const char *key, const char *value);

/* printf-style cmdline_append. */
int cmdline_appendf(struct cmdline *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The built line (never NULL, "" when empty), its length, the first error. */
const char *cmdline_str(const struct cmdline *c);
size_t cmdline_len(const struct cmdline *c);
int cmdline_error(const struct cmdline *c);
const char *cmdline_errmsg(const struct cmdline *c);

#endif
