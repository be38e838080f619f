/* tcg_boot_runner: runs two VMM command lines in turn, N times each, and reports for each the
 * time from spawn to a marker line in its output ("boot to workload exec", when the workload
 * prints the marker first thing) and to its exit, as medians (min, max), plus the ratios of the
 * medians (first / second). Used inside the TCG test host by bench/tcg-boot.sh; no dependency
 * beyond libc, so it can be built static for L1. It only reports: nothing here is a test.
 *
 *   tcg_boot_runner [-n N] [-w W] [-t SECS] [--log-dir DIR] --marker TEXT \
 *                   -- NAME_A CMD_A... ::: NAME_B CMD_B...
 *
 * Each child gets stdin from /dev/null and one pipe for stdout and stderr together. A run
 * counts only if the marker appeared at the start of a line and the child exited 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "tcg_boot_runner"
#include "bench_util.h"

extern char **environ;

#define OUT_MAX (256u << 10) /* output kept per run, for the marker and --log-dir */

struct vmm {
        const char *name;
        char **argv;
        double *marker_ms, *exit_ms, *rss_mib;
        int n;
};

struct run_result {
        double marker_ms, exit_ms, rss_mib;
        int status;
        char *out;
        size_t out_len;
};

/* True if `marker` starts a line of out[0..len) at an offset >= from. */
static bool marker_at_line_start(const char *out, size_t from, size_t len, const char *marker)
{
        size_t mlen = strlen(marker);
        for (size_t i = from; i + mlen <= len; i++) {
                if ((i == 0 || out[i - 1] == '\n' || out[i - 1] == '\r') &&
                    memcmp(out + i, marker, mlen) == 0)
                        return true;
        }
        return false;
}

static void run_once(char **argv, const char *marker, int timeout_s, struct run_result *r)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
                die("pipe: %s", strerror(errno));
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        posix_spawn_file_actions_adddup2(&fa, p[1], 2);

        memset(r, 0, sizeof(*r));
        r->marker_ms = -1;
        r->out = malloc(OUT_MAX + 1);
        if (!r->out)
                die("out of memory");
        pid_t pid;
        uint64_t t0 = now_ns();
        int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        if (rc != 0)
                die("cannot run %s: %s", argv[0], strerror(rc));
        size_t scanned = 0, mlen = strlen(marker);
        uint64_t deadline = t0 + (uint64_t)timeout_s * 1000000000ull;
        bool killed = false;
        for (;;) {
                uint64_t t = now_ns();
                if (t >= deadline && !killed) {
                        kill(pid, SIGKILL);
                        killed = true;
                }
                struct pollfd pfd = {.fd = p[0], .events = POLLIN};
                int wait_ms = killed ? 1000 : (int)((deadline - t) / 1000000u) + 1;
                int n = poll(&pfd, 1, wait_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n == 0) {
                        if (killed)
                                break;
                        continue;
                }
                char buf[4096];
                ssize_t got = read(p[0], buf, sizeof(buf));
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        break;
                uint64_t t_read = now_ns();
                size_t keep = (size_t)got;
                if (keep > OUT_MAX - r->out_len)
                        keep = OUT_MAX - r->out_len;
                memcpy(r->out + r->out_len, buf, keep);
                r->out_len += keep;
                if (r->marker_ms < 0) {
                        /* A marker split across reads started at most mlen bytes back. */
                        size_t from = scanned > mlen ? scanned - mlen : 0;
                        if (marker_at_line_start(r->out, from, r->out_len, marker))
                                r->marker_ms = (double)(t_read - t0) / 1e6;
                        scanned = r->out_len;
                }
        }
        close(p[0]);
        r->out[r->out_len] = 0;
        int st;
        struct rusage ru;
        while (wait4(pid, &st, 0, &ru) < 0)
                if (errno != EINTR)
                        die("wait4: %s", strerror(errno));
        r->exit_ms = (double)(now_ns() - t0) / 1e6;
        r->rss_mib = (double)ru.ru_maxrss / 1024.0;
        r->status = killed ? 124 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void save_log(const char *dir, const char *name, int round, const struct run_result *r)
{
        if (!dir)
                return;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s-%d.log", dir, name, round);
        FILE *f = fopen(path, "w");
        if (!f)
                return;
        fwrite(r->out, 1, r->out_len, f);
        fclose(f);
}

static void usage(FILE *f)
{
        fprintf(f, "usage: tcg_boot_runner [-n N] [-w W] [-t SECS] [--log-dir DIR] --marker TEXT "
                   "-- NAME_A CMD_A... ::: NAME_B CMD_B...\n");
}

int main(int argc, char **argv)
{
        static const struct option lo[] = {
            {"rounds", required_argument, NULL, 'n'},
            {"warmup", required_argument, NULL, 'w'},
            {"timeout", required_argument, NULL, 't'},
            {"marker", required_argument, NULL, 'M'},
            {"log-dir", required_argument, NULL, 'L'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        int rounds = 10, warmup = 1, timeout_s = 120, c;
        const char *marker = NULL, *log_dir = NULL;
        while ((c = getopt_long(argc, argv, "+n:w:t:h", lo, NULL)) != -1) {
                switch (c) {
                case 'n':
                        rounds = atoi(optarg);
                        break;
                case 'w':
                        warmup = atoi(optarg);
                        break;
                case 't':
                        timeout_s = atoi(optarg);
                        break;
                case 'M':
                        marker = optarg;
                        break;
                case 'L':
                        log_dir = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!marker || !*marker || rounds < 1 || warmup < 0 || timeout_s < 1) {
                usage(stderr);
                return 2;
        }
        /* NAME_A CMD_A... ::: NAME_B CMD_B... */
        struct vmm v[2];
        int sep = -1;
        for (int i = optind; i < argc; i++)
                if (!strcmp(argv[i], ":::"))
                        sep = i;
        if (sep < 0 || sep - optind < 2 || argc - sep < 3) {
                usage(stderr);
                return 2;
        }
        argv[sep] = NULL;
        v[0] = (struct vmm){.name = argv[optind], .argv = &argv[optind + 1]};
        v[1] = (struct vmm){.name = argv[sep + 1], .argv = &argv[sep + 2]};
        for (int k = 0; k < 2; k++) {
                v[k].marker_ms = calloc((size_t)rounds, sizeof(double));
                v[k].exit_ms = calloc((size_t)rounds, sizeof(double));
                v[k].rss_mib = calloc((size_t)rounds, sizeof(double));
                if (!v[k].marker_ms || !v[k].exit_ms || !v[k].rss_mib)
                        die("out of memory");
        }

        for (int round = 0; round < warmup + rounds; round++) {
                for (int k = 0; k < 2; k++) {
                        struct run_result r;
                        run_once(v[k].argv, marker, timeout_s, &r);
                        if (round == 0)
                                save_log(log_dir, v[k].name, 0, &r);
                        if (r.status != 0 || r.marker_ms < 0) {
                                save_log(log_dir, v[k].name, round, &r);
                                fprintf(
                                    stderr,
                                    "tcg_boot_runner: %s run %d: exit status %d, marker %s; its "
                                    "output:\n%.*s\n",
                                    v[k].name, round, r.status,
                                    r.marker_ms < 0 ? "missing" : "seen",
                                    (int)(r.out_len > 4000 ? 4000 : r.out_len),
                                    r.out + (r.out_len > 4000 ? r.out_len - 4000 : 0));
                                return 1;
                        }
                        bool keep = round >= warmup;
                        printf("raw %s %s %d: marker %.1f ms, exit %.1f ms, peak RSS %.1f MiB\n",
                               keep ? "run" : "warm-up", v[k].name, keep ? round - warmup : round,
                               r.marker_ms, r.exit_ms, r.rss_mib);
                        fflush(stdout);
                        if (keep) {
                                v[k].marker_ms[v[k].n] = r.marker_ms;
                                v[k].exit_ms[v[k].n] = r.exit_ms;
                                v[k].rss_mib[v[k].n] = r.rss_mib;
                                v[k].n++;
                        }
                        free(r.out);
                }
        }

        double med[2][3], min, max;
        printf("\n%-34s %10s %10s %10s\n", "", "median", "min", "max");
        for (int k = 0; k < 2; k++) {
                char label[96];
                bench_stats(v[k].marker_ms, v[k].n, &med[k][0], &min, &max);
                snprintf(label, sizeof(label), "%s: spawn -> marker (ms)", v[k].name);
                printf("%-34s %10.1f %10.1f %10.1f\n", label, med[k][0], min, max);
                bench_stats(v[k].exit_ms, v[k].n, &med[k][1], &min, &max);
                snprintf(label, sizeof(label), "%s: spawn -> exit (ms)", v[k].name);
                printf("%-34s %10.1f %10.1f %10.1f\n", label, med[k][1], min, max);
                bench_stats(v[k].rss_mib, v[k].n, &med[k][2], &min, &max);
                snprintf(label, sizeof(label), "%s: peak RSS (MiB)", v[k].name);
                printf("%-34s %10.1f %10.1f %10.1f\n", label, med[k][2], min, max);
        }
        printf("ratio %s/%s of medians: boot to marker %.3f, to exit %.3f, peak RSS %.3f\n",
               v[0].name, v[1].name, med[0][0] / med[1][0], med[0][1] / med[1][1],
               med[0][2] / med[1][2]);
        return 0;
}
