/* End to end through the C library with a real Linux guest (KERNEL, ROOTFS from the e2e
 * harness): the issue's `echo hi; exit 7` from C, the exit handle stopping `sleep 1000`,
 * metrics while a real guest runs, and 20 VMs one after another in one process with no fd or
 * memory growth. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ember/ember.h"
#include "test.h"

static const char *kernel, *rootfs;

static struct ember_builder *guest_builder(const char *const *argv)
{
        struct ember_builder *b = ember_builder_new();
        REQUIRE(b);
        REQUIRE_EQ(ember_builder_machine(b, 1, 128), 0);
        REQUIRE_EQ(ember_builder_kernel(b, kernel), 0);
        REQUIRE_EQ(ember_builder_fs_root(b, rootfs), 0);
        REQUIRE_EQ(ember_builder_exec(b, argv[0], argv), 0);
        return b;
}

static struct ember_vm *build(struct ember_builder *b)
{
        struct ember_vm *vm = NULL;
        int rc = ember_builder_build(b, &vm);
        if (rc)
                printf("    build: %s: %s\n", ember_error_name(ember_builder_error_code(b)),
                       ember_builder_error(b));
        ember_builder_free(b);
        REQUIRE_EQ(rc, 0);
        return vm;
}

/* Reads everything from fd until EOF into buf (NUL-terminated). */
static size_t slurp(int fd, char *buf, size_t cap)
{
        size_t n = 0;
        ssize_t r;
        while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
                n += (size_t)r;
        buf[n] = 0;
        return n;
}

static void t_echo_hi_exit_7(void)
{
        const char *argv[] = {"/bin/sh", "-c", "echo hi; echo oops >&2; exit 7", NULL};
        int out[2], err[2];
        REQUIRE_EQ(pipe(out), 0);
        REQUIRE_EQ(pipe(err), 0);
        struct ember_builder *b = guest_builder(argv);
        REQUIRE_EQ(ember_builder_console_fds(b, -1, out[1], err[1]), 0);
        struct ember_vm *vm = build(b);
        close(out[1]);
        close(err[1]);
        /* Small outputs fit in the pipes, so reading after the run cannot deadlock. */
        CHECK_EQ(ember_vm_run(vm), 7);
        char buf[256];
        slurp(out[0], buf, sizeof(buf));
        CHECK_STR(buf, "hi\n");
        slurp(err[0], buf, sizeof(buf));
        CHECK_STR(buf, "oops\n");
        close(out[0]);
        close(err[0]);
}

struct stopper {
        int ready_fd;
        struct ember_exit_handle h;
        int saw_ready;
};

/* Waits for the workload to say it is running, then stops the VM. */
static void *stop_when_ready(void *p)
{
        struct stopper *s = p;
        char buf[64];
        ssize_t n = read(s->ready_fd, buf, sizeof(buf));
        s->saw_ready = n > 0;
        ember_exit_handle_trigger(s->h);
        return NULL;
}

static void t_exit_handle_stops_sleep(void)
{
        const char *argv[] = {"/bin/sh", "-c", "echo ready; exec sleep 1000", NULL};
        int out[2];
        REQUIRE_EQ(pipe(out), 0);
        struct ember_builder *b = guest_builder(argv);
        REQUIRE_EQ(ember_builder_console_fds(b, -1, out[1], 2), 0);
        struct ember_vm *vm = build(b);
        close(out[1]);
        struct stopper s = {.ready_fd = out[0]};
        REQUIRE_EQ(ember_vm_exit_handle(vm, &s.h), 0);
        struct ember_metrics *m = ember_vm_metrics(vm);
        pthread_t t;
        REQUIRE_EQ(pthread_create(&t, NULL, stop_when_ready, &s), 0);
        struct timespec t0, t1;
        REQUIRE_EQ(ember_vm_start(vm), 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int code = ember_vm_wait(vm);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_join(t, NULL);
        CHECK(s.saw_ready);
        CHECK_EQ(code, EMBER_EXIT_STOPPED);
        CHECK_EQ(atomic_load(ember_vm_exit_code(vm)), EMBER_EXIT_STOPPED);
        struct ember_metrics_sample ms;
        REQUIRE_EQ(ember_metrics_sample(m, &ms), 0);
        CHECK(ms.exits_total > 0);
        CHECK(ms.vcpu_time_ns > 0);
        CHECK_EQ(ms.end, EMBER_VM_END_STOPPED);
        CHECK_EQ(ms.exit_code, EMBER_EXIT_STOPPED);
        CHECK_STR(ember_vm_end_name(ms.end), "stopped");
        printf("    stopped `sleep 1000` %.2f s after start; %llu exits, vCPU time %.2f s\n",
               (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
               (unsigned long long)ms.exits_total, (double)ms.vcpu_time_ns / 1e9);
        ember_metrics_release(m);
        ember_exit_handle_release(&s.h);
        ember_vm_free(vm);
        close(out[0]);
}

static void t_metrics_while_guest_runs(void)
{
        const char *argv[] = {"/bin/sh", "-c", "echo ready; read x; echo done", NULL};
        int out[2], in[2];
        REQUIRE_EQ(pipe(out), 0);
        REQUIRE_EQ(pipe(in), 0);
        struct ember_builder *b = guest_builder(argv);
        REQUIRE_EQ(ember_builder_console_fds(b, in[0], out[1], 2), 0);
        struct ember_vm *vm = build(b);
        close(out[1]);
        close(in[0]);
        struct ember_metrics *m = ember_vm_metrics(vm);
        REQUIRE_EQ(ember_vm_start(vm), 0);
        char buf[64];
        CHECK(read(out[0], buf, sizeof(buf)) > 0);
        struct ember_metrics_sample s;
        REQUIRE_EQ(ember_metrics_sample(m, &s), 0);
        CHECK_EQ(s.running, 1);
        CHECK(s.uptime_ns > 0);
        CHECK(s.exits_total > 0);
        CHECK(s.host_resident_bytes > (1u << 20)); /* at least the kernel is resident */
        CHECK(s.host_resident_bytes <= s.memory_bytes);
        CHECK_EQ(s.memory_bytes, 128u << 20);
        CHECK_EQ(s.end, EMBER_VM_END_NONE);
        CHECK_EQ(s.exit_code, EMBER_EXIT_CODE_UNSET);
        CHECK_EQ(s.host_resident_end_bytes, 0);
        printf("    while running: uptime %.2f s, vCPU %.2f s, exits %llu (io %llu, mmio %llu), "
               "resident %llu MiB of %llu\n",
               (double)s.uptime_ns / 1e9, (double)s.vcpu_time_ns / 1e9,
               (unsigned long long)s.exits_total, (unsigned long long)s.exits_io,
               (unsigned long long)s.exits_mmio, (unsigned long long)(s.host_resident_bytes >> 20),
               (unsigned long long)(s.memory_bytes >> 20));
        CHECK_EQ(write(in[1], "go\n", 3), 3);
        close(in[1]);
        CHECK_EQ(ember_vm_wait(vm), 0);
        slurp(out[0], buf, sizeof(buf));
        CHECK_STR(buf, "done\n");
        REQUIRE_EQ(ember_metrics_sample(m, &s), 0);
        CHECK_EQ(s.running, 0);
        CHECK_EQ(s.host_resident_bytes, 0);
        /* The last look before the memory went: at least the kernel was resident. */
        CHECK(s.host_resident_end_bytes > (1u << 20));
        CHECK(s.host_resident_end_bytes <= s.memory_bytes);
        CHECK_EQ(s.end, EMBER_VM_END_EXITED);
        CHECK_EQ(s.exit_code, 0);
        ember_metrics_release(m);
        ember_vm_free(vm);
        close(out[0]);
}

static long rss_kib(void)
{
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        long v = -1;
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld", &v) == 1)
                        break;
        if (f)
                fclose(f);
        return v;
}

static void t_twenty_vms_in_one_process(void)
{
        const char *argv[] = {"/bin/sh", "-c", "exit $((3 + 4))", NULL};
        int fds0 = 0;
        long rss_after_warmup = 0;
        for (int i = 0; i < 20; i++) {
                struct ember_builder *b = guest_builder(argv);
                REQUIRE_EQ(ember_builder_console_fds(b, -1, -1, -1), 0);
                struct ember_vm *vm = build(b);
                int code = ember_vm_run(vm);
                if (code != 7)
                        FAILF("VM %d exited with %d, expected 7", i, code);
                if (i == 1) {
                        fds0 = t_count_open_fds();
                        rss_after_warmup = rss_kib();
                }
        }
        int fds = t_count_open_fds();
        long rss = rss_kib();
        printf("    fds %d -> %d, RSS %ld KiB -> %ld KiB over 18 VMs\n", fds0, fds,
               rss_after_warmup, rss);
        CHECK_EQ(fds, fds0);
        /* Guest RAM is unmapped after each run; allow malloc arena noise, not a per-VM leak. */
        CHECK(rss - rss_after_warmup < 4096);
}

int main(void)
{
        kernel = getenv("KERNEL");
        rootfs = getenv("ROOTFS");
        if (!kernel || !rootfs) {
                printf(
                    "SKIP lib_api: KERNEL and ROOTFS must be set (run through tests/e2e/run.sh)\n");
                return 0;
        }
        signal(SIGPIPE, SIG_IGN);
        T_RUN(t_echo_hi_exit_7);
        T_RUN(t_exit_handle_stops_sleep);
        T_RUN(t_metrics_while_guest_runs);
        T_RUN(t_twenty_vms_in_one_process);
        return T_DONE();
}
