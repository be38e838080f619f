/* Many VMs in one process, one after another, through the public API (builder -> build -> run):
 * after a warm-up, open fds, threads, RSS and virtual size stay flat over 1000 cycles
 * (EMBER_TEST_VM_CYCLES overrides the count: tests/e2e/kvm-suite.sh lowers it inside the TCG test
 * host, where a cycle takes about 180 ms instead of 4). */
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "ember/ember.h"
#include "test.h"
#include "tiny_guest.h"

#define WARMUP 30
#define CYCLES 1000
#define SAMPLE 10 /* cycles between two samples */

/* ASan's quarantine and shadow grow RSS on their own; fds and threads are still checked there,
 * and LeakSanitizer checks the heap. */
#if defined(__SANITIZE_ADDRESS__)
#define CHECK_MEMORY 0
#else
#define CHECK_MEMORY 1
#endif
/* Allowed drift after the warm-up (measured here: none). One cycle maps 64 MiB of guest RAM
 * and builds a few hundred KiB of initramfs; leaking the VM's metrics block (about 500 bytes a
 * cycle) grew RSS by 624 KiB over the 1000 cycles. */
#define RSS_SLACK_KB    256
#define VMSIZE_SLACK_KB 256

static int count_dir(const char *path)
{
        DIR *d = opendir(path);
        REQUIRE(d);
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - (strcmp(path, "/proc/self/fd") == 0); /* the directory's own fd */
}

static long status_kb(const char *key)
{
        FILE *f = fopen("/proc/self/status", "r");
        REQUIRE(f);
        char line[256];
        long v = -1;
        size_t n = strlen(key);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, n) == 0 && line[n] == ':') {
                        v = strtol(line + n + 1, NULL, 10);
                        break;
                }
        fclose(f);
        REQUIRE(v >= 0);
        return v;
}

struct usage {
        int fds, threads;
        long rss_kb, vmsize_kb;
};

static struct usage usage_now(void)
{
        return (struct usage){count_dir("/proc/self/fd"), count_dir("/proc/self/task"),
                              status_kb("VmRSS"), status_kb("VmSize")};
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cycle(const char *path, unsigned vcpus, int i)
{
        struct ember_builder *b = ember_builder_new();
        REQUIRE(b);
        REQUIRE_EQ(ember_builder_machine(b, vcpus, 64), 0);
        REQUIRE_EQ(ember_builder_machine_allow_software_kvm(b, 1), 0);
        REQUIRE_EQ(ember_builder_kernel(b, path), 0);
        REQUIRE_EQ(ember_builder_exec(b, "/bin/true", NULL), 0);
        REQUIRE_EQ(ember_builder_console_fds(b, -1, -1, -1), 0);
        struct ember_vm *vm = NULL;
        if (ember_builder_build(b, &vm) != 0)
                FAILF("cycle %d: build: %s: %s", i, ember_error_name(ember_builder_error_code(b)),
                      ember_builder_error(b));
        ember_builder_free(b);
        return ember_vm_run(vm);
}

static void t_thousand_vms_no_growth(void)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                SKIP("/dev/kvm is not usable here");
        close(fd);
        struct tiny_code c = {0};
        tiny_exit(&c, 42);
        char *path = tiny_guest_write(&c);
        REQUIRE(path);
        int cycles = CYCLES;
        const char *env = getenv("EMBER_TEST_VM_CYCLES");
        if (env && (cycles = atoi(env)) < SAMPLE)
                FAILF("EMBER_TEST_VM_CYCLES=%s: want a count of at least %d", env, SAMPLE);
        /* Two vCPUs: two threads to start and join each cycle, besides the event thread. */
        for (int i = 0; i < WARMUP; i++)
                REQUIRE_EQ(cycle(path, 2, i), 42);
        struct usage base = usage_now(), worst = base;
        double t0 = now_s();
        for (int i = 1; i <= cycles; i++) {
                int code = cycle(path, 2, i);
                if (code != 42)
                        FAILF("cycle %d: exit code %d, not 42", i, code);
                if (i % SAMPLE)
                        continue;
                struct usage u = usage_now();
                if (u.fds != base.fds || u.threads != base.threads)
                        FAILF("cycle %d: %d fds and %d threads, %d and %d after the warm-up", i,
                              u.fds, u.threads, base.fds, base.threads);
                if (u.rss_kb > worst.rss_kb)
                        worst.rss_kb = u.rss_kb;
                if (u.vmsize_kb > worst.vmsize_kb)
                        worst.vmsize_kb = u.vmsize_kb;
        }
        double dt = now_s() - t0;
        printf(
            "    %d cycles in %.1f s (%.2f ms each); fds %d, threads %d; RSS %ld -> max %ld KiB, "
            "VmSize %ld -> max %ld KiB\n",
            cycles, dt, dt * 1000 / cycles, base.fds, base.threads, base.rss_kb, worst.rss_kb,
            base.vmsize_kb, worst.vmsize_kb);
        if (CHECK_MEMORY) {
                CHECK(worst.rss_kb - base.rss_kb <= RSS_SLACK_KB);
                CHECK(worst.vmsize_kb - base.vmsize_kb <= VMSIZE_SLACK_KB);
        }
        unlink(path);
        free(path);
}

int main(void)
{
        T_RUN(t_thousand_vms_no_growth);
        return T_DONE();
}
