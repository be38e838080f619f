/* Minimal test harness shared by every C test in ember.
 *
 * Each test is a function `static void name(void)`; main() calls T_RUN(name) for each.
 * Output, one line per test, is parsed by tests/run.sh:
 *   PASS name | FAIL name: file:line: message | SKIP name: reason
 * and the binary ends with "N passed, N failed, N skipped". Exit status is 1 if anything failed.
 */
#ifndef EMBER_TEST_H
#define EMBER_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct t_state {
        int passed, failed, skipped;
        int cur_failed, cur_skipped;
        jmp_buf bail;
};
static struct t_state t_state;
static const char *t_cur_name;

static inline void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void t_fail(const char *file, int line, const char *fmt, ...)
{
        va_list ap;
        printf("%s %s: %s:%d: ", t_state.cur_failed ? "    " : "FAIL", t_cur_name, file, line);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        t_state.cur_failed = 1;
}

/* Fails the current test and keeps going. */
#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond))                                                                       \
                        t_fail(__FILE__, __LINE__, "check failed: %s", #cond);                     \
        } while (0)
/* Fails the current test and leaves it. */
#define REQUIRE(cond)                                                                              \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        t_fail(__FILE__, __LINE__, "required: %s", #cond);                         \
                        longjmp(t_state.bail, 1);                                                  \
                }                                                                                  \
        } while (0)
#define CHECK_EQ(a, b)                                                                             \
        do {                                                                                       \
                long long t_a_ = (long long)(a), t_b_ = (long long)(b);                            \
                if (t_a_ != t_b_)                                                                  \
                        t_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld (0x%llx != 0x%llx)",    \
                               #a, #b, t_a_, t_b_, (unsigned long long)t_a_,                       \
                               (unsigned long long)t_b_);                                          \
        } while (0)
#define REQUIRE_EQ(a, b)                                                                           \
        do {                                                                                       \
                long long t_a_ = (long long)(a), t_b_ = (long long)(b);                            \
                if (t_a_ != t_b_) {                                                                \
                        t_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, t_a_, t_b_);  \
                        longjmp(t_state.bail, 1);                                                  \
                }                                                                                  \
        } while (0)
#define CHECK_STR(a, b)                                                                            \
        do {                                                                                       \
                const char *t_a_ = (a), *t_b_ = (b);                                               \
                if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0)                                     \
                        t_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,           \
                               t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)");                    \
        } while (0)
#define FAILF(...)                                                                                 \
        do {                                                                                       \
                t_fail(__FILE__, __LINE__, __VA_ARGS__);                                           \
                longjmp(t_state.bail, 1);                                                          \
        } while (0)
/* Skips the rest of the current test, with a reason that is printed. */
#define SKIP(...)                                                                                  \
        do {                                                                                       \
                printf("SKIP %s: ", t_cur_name);                                                   \
                printf(__VA_ARGS__);                                                               \
                printf("\n");                                                                      \
                t_state.cur_skipped = 1;                                                           \
                longjmp(t_state.bail, 1);                                                          \
        } while (0)

#define T_RUN(fn)                                                                                  \
        do {                                                                                       \
                t_cur_name = #fn;                                                                  \
                t_state.cur_failed = 0;                                                            \
                t_state.cur_skipped = 0;                                                           \
                fflush(stdout);                                                                    \
                if (setjmp(t_state.bail) == 0)                                                     \
                        fn();                                                                      \
                if (t_state.cur_skipped)                                                           \
                        t_state.skipped++;                                                         \
                else if (t_state.cur_failed) {                                                     \
                        t_state.failed++;                                                          \
                } else {                                                                           \
                        printf("PASS %s\n", #fn);                                                  \
                        t_state.passed++;                                                          \
                }                                                                                  \
                fflush(stdout);                                                                    \
        } while (0)

/* Open file descriptors of this process (below 4096), for leak checks. */
static inline int t_count_open_fds(void)
{
        int n = 0;
        for (int fd = 0; fd < 4096; fd++)
                if (fcntl(fd, F_GETFD) != -1)
                        n++;
        return n;
}

#define T_DONE()                                                                                   \
        (printf("%d passed, %d failed, %d skipped\n", t_state.passed, t_state.failed,              \
                t_state.skipped),                                                                  \
         fflush(stdout), t_state.failed ? 1 : 0)

#endif
