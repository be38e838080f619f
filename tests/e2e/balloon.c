/* virtio-balloon end to end through the C library with a real Linux guest (KERNEL, ROOTFS from
 * the e2e harness): the guest's memory statistics reach the metrics handle and agree with its
 * /proc/meminfo, and ember_vm_balloon_set_target called while the guest runs shrinks its
 * MemTotal (or, with DEFLATE_ON_OOM, its MemAvailable). ember's RSS dropping after the guest
 * frees memory is a scenario (balloon_rss_drop in scenarios.sh): it reads the RSS of an
 * `ember run` process from outside. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ember/ember.h"
#include "test.h"

#define MIB (1ull << 20)

static const char *kernel, *rootfs;

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct guest {
        struct ember_vm *vm;
        struct ember_metrics *m;
        int in, out; /* our ends of the guest's stdin and stdout */
        char buf[16384];
        size_t len;
};

/* Builds and starts a 256 MiB guest with a balloon running `script`. */
static void guest_start(struct guest *g, unsigned flags, const char *script)
{
        memset(g, 0, sizeof(*g));
        int in[2], out[2];
        REQUIRE_EQ(pipe(in), 0);
        REQUIRE_EQ(pipe(out), 0);
        const char *argv[] = {"/bin/sh", "-c", script, NULL};
        struct ember_builder *b = ember_builder_new();
        REQUIRE(b);
        REQUIRE_EQ(ember_builder_machine(b, 1, 256), 0);
        REQUIRE_EQ(ember_builder_kernel(b, kernel), 0);
        REQUIRE_EQ(ember_builder_fs_root(b, rootfs), 0);
        REQUIRE_EQ(ember_builder_exec(b, argv[0], argv), 0);
        REQUIRE_EQ(ember_builder_console_fds(b, in[0], out[1], 2), 0);
        REQUIRE_EQ(ember_builder_balloon(b, 1, flags), 0);
        int rc = ember_builder_build(b, &g->vm);
        if (rc)
                printf("    build: %s\n", ember_builder_error(b));
        ember_builder_free(b);
        close(in[0]);
        close(out[1]);
        g->in = in[1];
        g->out = out[0];
        REQUIRE_EQ(rc, 0);
        g->m = ember_vm_metrics(g->vm);
        REQUIRE(g->m);
}

static void guest_end(struct guest *g)
{
        if (g->m)
                ember_metrics_release(g->m);
        if (g->vm)
                ember_vm_free(g->vm);
        if (g->in >= 0)
                close(g->in);
        close(g->out);
}

/* Reads guest output until it holds a line starting with `prefix` (returned, within g->buf),
 * or `secs` pass (NULL). */
static const char *guest_line(struct guest *g, const char *prefix, int secs)
{
        uint64_t end = now_ns() + (uint64_t)secs * 1000000000ull;
        for (;;) {
                /* Whole lines only. */
                for (const char *p = g->buf, *nl; (nl = strchr(p, '\n')); p = nl + 1)
                        if (!strncmp(p, prefix, strlen(prefix)))
                                return p;
                uint64_t now = now_ns();
                if (now >= end || g->len + 1 >= sizeof(g->buf))
                        return NULL;
                struct pollfd pfd = {g->out, POLLIN, 0};
                if (poll(&pfd, 1, (int)((end - now) / 1000000) + 1) <= 0)
                        continue;
                ssize_t n = read(g->out, g->buf + g->len, sizeof(g->buf) - 1 - g->len);
                if (n <= 0)
                        return NULL;
                g->len += (size_t)n;
                g->buf[g->len] = 0;
        }
}

static void sample(struct guest *g, struct ember_metrics_sample *s)
{
        REQUIRE_EQ(ember_metrics_sample(g->m, s), 0);
}

/* Waits up to `secs` for a stats report that arrived after `after_ns`. */
static int stats_after(struct guest *g, uint64_t after_ns, int secs, struct ember_metrics_sample *s)
{
        for (int i = 0; i < secs * 20; i++) {
                sample(g, s);
                if (s->guest_stats_mono_ns > after_ns)
                        return 1;
                usleep(50000);
        }
        return 0;
}

static long long meminfo_kib(const char *text, const char *key)
{
        const char *p = strstr(text, key);
        long long v = -1;
        if (p)
                sscanf(p + strlen(key), ": %lld kB", &v);
        return v;
}

static long long absdiff(long long a, long long b)
{
        return a > b ? a - b : b - a;
}

/* The guest's statistics reach the metrics every second and agree with /proc/meminfo. */
static void t_stats_match_meminfo(void)
{
        struct guest g;
        /* Without free page reporting, which takes free pages off the guest's count while it
         * reports them. */
        guest_start(&g, EMBER_BALLOON_NO_REPORTING,
                    "echo ready; read -r x; cat /proc/meminfo; echo end; read -r x");
        REQUIRE_EQ(ember_vm_start(g.vm), 0);
        REQUIRE(guest_line(&g, "ready", 60));
        struct ember_metrics_sample s;
        REQUIRE(stats_after(&g, 0, 30, &s));
        /* Refreshed every second: two more reports come within a generous 15 s. */
        uint64_t first = s.guest_stats_mono_ns;
        CHECK(stats_after(&g, first, 15, &s));
        CHECK(stats_after(&g, s.guest_stats_mono_ns, 15, &s));
        printf("    reports %.2f s apart on average\n",
               (double)(s.guest_stats_mono_ns - first) / 2e9);

        REQUIRE_EQ(write(g.in, "go\n", 3), 3);
        REQUIRE(guest_line(&g, "end", 30));
        uint64_t printed = now_ns();
        /* A report made after the guest printed its figures (the guest is idle meanwhile). */
        REQUIRE(stats_after(&g, printed, 15, &s));
        long long total = meminfo_kib(g.buf, "MemTotal"), free = meminfo_kib(g.buf, "MemFree"),
                  avail = meminfo_kib(g.buf, "MemAvailable");
        printf("    meminfo  total %lld free %lld available %lld KiB\n", total, free, avail);
        printf("    metrics  total %llu free %llu available %llu KiB\n",
               (unsigned long long)(s.guest_total_bytes >> 10),
               (unsigned long long)(s.guest_free_bytes >> 10),
               (unsigned long long)(s.guest_available_bytes >> 10));
        REQUIRE(total > 0 && free > 0 && avail > 0);
        CHECK_EQ(s.guest_total_bytes, (unsigned long long)total * 1024);
        CHECK(absdiff((long long)(s.guest_free_bytes >> 10), free) <= 16 * 1024);
        CHECK(absdiff((long long)(s.guest_available_bytes >> 10), avail) <= 16 * 1024);
        CHECK(s.guest_free_bytes <= s.guest_total_bytes);
        CHECK(s.guest_total_bytes <= 256 * MIB);
        CHECK_EQ(s.balloon_target_bytes, 0);
        CHECK_EQ(s.balloon_actual_bytes, 0);

        REQUIRE_EQ(write(g.in, "x\n", 2), 2);
        CHECK_EQ(ember_vm_wait(g.vm), 0);
        guest_end(&g);
}

/* Sets a 64 MiB target once the guest runs; the guest waits until its memory shrinks by 60 MiB
 * (at most 60 s). `key` is the /proc/meminfo line that must shrink, `other` one that must stay
 * within 8 MiB. */
static void target_shrinks(unsigned flags, const char *key, const char *other)
{
        char script[1024];
        snprintf(script, sizeof(script),
                 "kib() { sed -n \"s/^$1: *\\([0-9]*\\) kB$/\\1/p\" /proc/meminfo; }\n"
                 "a=$(kib %s); b=$(kib %s); echo \"before $a $b\"; read -r x; n=0\n"
                 "while [ $n -lt 240 ] && [ $(kib %s) -gt $((a - 61440)) ]; do\n"
                 "  sleep 0.25; n=$((n + 1)); done\n"
                 "echo \"after $(kib %s) $(kib %s)\"; [ $(kib %s) -le $((a - 61440)) ]\n",
                 key, other, key, key, other, key);
        struct guest g;
        guest_start(&g, flags, script);
        /* Before the start: checked, and nothing asked yet. */
        CHECK_EQ(ember_vm_balloon_set_target(g.vm, 257), -EINVAL);
        CHECK(strstr(ember_vm_error(g.vm), "more than") != NULL);
        REQUIRE_EQ(ember_vm_start(g.vm), 0);
        const char *line = guest_line(&g, "before ", 60);
        REQUIRE(line);
        long long a0 = 0, b0 = 0, a1 = 0, b1 = 0;
        REQUIRE_EQ(sscanf(line, "before %lld %lld", &a0, &b0), 2);
        REQUIRE_EQ(ember_vm_balloon_set_target(g.vm, 64), 0);
        REQUIRE_EQ(write(g.in, "go\n", 3), 3);
        int code = ember_vm_wait(g.vm);
        line = guest_line(&g, "after ", 5);
        if (line)
                sscanf(line, "after %lld %lld", &a1, &b1);
        printf("    %s %lld -> %lld KiB, %s %lld -> %lld KiB\n", key, a0, a1, other, b0, b1);
        CHECK_EQ(code, 0);
        CHECK(a1 > 0 && a1 <= a0 - 61440);
        if (!strcmp(other, "MemTotal"))
                CHECK_EQ(b1, b0);
        struct ember_metrics_sample s;
        sample(&g, &s);
        printf("    metrics: target %llu MiB, actual %llu MiB, inflated %llu MiB, refused %llu\n",
               (unsigned long long)(s.balloon_target_bytes / MIB),
               (unsigned long long)(s.balloon_actual_bytes / MIB),
               (unsigned long long)(s.balloon_inflated_bytes / MIB),
               (unsigned long long)s.balloon_refused);
        CHECK_EQ(s.balloon_target_bytes, 64 * MIB);
        CHECK(s.balloon_actual_bytes >= 60 * MIB && s.balloon_actual_bytes <= 64 * MIB);
        CHECK(s.balloon_inflated_bytes >= s.balloon_actual_bytes);
        CHECK_EQ(s.balloon_refused, 0);
        guest_end(&g);
}

static void t_target_shrinks_memtotal(void)
{
        target_shrinks(0, "MemTotal", "MemFree");
}

/* With DEFLATE_ON_OOM the guest keeps counting balloon pages as its own. */
static void t_target_deflate_on_oom_shrinks_available(void)
{
        /* Reporting would take free pages off MemAvailable for a while: not here. */
        target_shrinks(EMBER_BALLOON_DEFLATE_ON_OOM | EMBER_BALLOON_NO_REPORTING, "MemAvailable",
                       "MemTotal");
}

static void t_target_needs_a_balloon(void)
{
        const char *argv[] = {"/bin/true", NULL};
        struct ember_builder *b = ember_builder_new();
        REQUIRE(b);
        REQUIRE_EQ(ember_builder_machine(b, 1, 128), 0);
        REQUIRE_EQ(ember_builder_kernel(b, kernel), 0);
        REQUIRE_EQ(ember_builder_fs_root(b, rootfs), 0);
        REQUIRE_EQ(ember_builder_exec(b, argv[0], argv), 0);
        CHECK_EQ(ember_builder_balloon(b, 1, 0x100), -EINVAL);
        struct ember_vm *vm = NULL;
        REQUIRE_EQ(ember_builder_build(b, &vm), 0);
        ember_builder_free(b);
        CHECK_EQ(ember_vm_balloon_set_target(vm, 16), -ENODEV);
        CHECK(strstr(ember_vm_error(vm), "balloon") != NULL);
        struct ember_metrics *m = ember_vm_metrics(vm);
        struct ember_metrics_sample s;
        REQUIRE_EQ(ember_metrics_sample(m, &s), 0);
        CHECK_EQ(s.guest_total_bytes, 0);
        ember_metrics_release(m);
        ember_vm_free(vm);
}

int main(void)
{
        kernel = getenv("KERNEL");
        rootfs = getenv("ROOTFS");
        if (!kernel || !rootfs) {
                printf("SKIP balloon: KERNEL and ROOTFS must be set (run through "
                       "tests/e2e/run.sh)\n");
                return 0;
        }
        signal(SIGPIPE, SIG_IGN);
        T_RUN(t_target_needs_a_balloon);
        T_RUN(t_stats_match_meminfo);
        T_RUN(t_target_shrinks_memtotal);
        T_RUN(t_target_deflate_on_oom_shrinks_available);
        return T_DONE();
}
