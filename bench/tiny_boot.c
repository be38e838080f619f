/* tiny_boot: ember vs QEMU microvm on this host's /dev/kvm, starting the same tiny PVH ELF guest
 * that exits at once. Reports medians (min, max) of wall time and peak RSS, their ratios, and
 * ember's time to the guest's first instruction. It only reports: nothing here is a test.
 *
 * The guest (32-bit code at CPL0, paging off) runs three port writes:
 *   1. ember status port: INIT_REACHED  -> ember's first-instruction marker (init_mono_ns)
 *   2. isa-debug-exit: GUEST_DEBUG_EXIT_VALUE -> QEMU exits with (value << 1) | 1; on ember
 *      that port is unclaimed and the write is ignored
 *   3. ember status port: EXIT GUEST_EMBER_STATUS -> ember ends the VM with that status
 * Each VMM's exit status proves it ran the guest; any other status aborts the benchmark.
 *
 * Per round, in turn, each as a fresh child process (posix_spawn, wait4 for ru_maxrss):
 *   ember CLI   build/ember run --allow-software-kvm --kernel tiny.elf --rootfs EMPTY -- /x
 *   QEMU        qemu-system-x86_64 -M microvm,... -accel kvm ... -kernel tiny.elf
 *   ember lib   this program re-executed in --child-lib mode: one VM through the public API,
 *               timing ember_builder_new() -> first guest instruction -> VM end
 * plus baselines for "RSS overhead": the same binaries doing nothing (ember run --help,
 * qemu -version, this program in --child-noop mode).
 *
 *   build/bench/tiny_boot [-n N] [-w W] [-m MiB] [--ember PATH] [--qemu PATH]
 *                         [--qemu-machine OPTS] [--raw] [--save-guest PATH]
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "tiny_boot"
#include "bench_util.h"

#include "ember/ember.h"
#include "ember/guest_abi.h"
#include "ember/kvm.h"
#include "../tests/tiny_guest.h"

extern char **environ;

#define GUEST_EMBER_STATUS     42u
#define GUEST_DEBUG_EXIT_PORT  0x501u
#define GUEST_DEBUG_EXIT_VALUE 0x2au
#define QEMU_EXPECTED_STATUS   ((GUEST_DEBUG_EXIT_VALUE << 1) | 1u) /* 85 */
/* Fastest microvm setup that still boots a PVH ELF: qboot (the default firmware without ACPI;
 * microvm cannot run without firmware), no option ROMs, no legacy devices, no ACPI. */
#define QEMU_MACHINE_DEFAULT                                                                       \
        "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=off,acpi=off"

struct opts {
        int rounds, warmup, timeout_s;
        unsigned memory_mib;
        const char *ember, *qemu, *qemu_machine, *save_guest;
        bool raw;
};

/* One series of samples. */
struct series {
        const char *name;
        double *v;
        int n;
};

static void series_init(struct series *s, const char *name, int cap)
{
        s->name = name;
        s->n = 0;
        s->v = calloc((size_t)(cap > 0 ? cap : 1), sizeof(double));
        if (!s->v)
                die("out of memory");
}

/* Median, min, max of a series (sorted in place). */
static void stats(struct series *s, double *med, double *min, double *max)
{
        bench_stats(s->v, s->n, med, min, max);
}

static double median(struct series *s)
{
        double med, min, max;
        stats(s, &med, &min, &max);
        return med;
}

static void print_row(struct series *s, const char *unit)
{
        double med, min, max;
        stats(s, &med, &min, &max);
        printf("  %-46s %9.3f %9.3f %9.3f  %s\n", s->name, med, min, max, unit);
}

/* ------------------------------------------------------------------ child processes */

struct child_result {
        int status;        /* exit status, or 128+signal */
        double wall_ms;    /* spawn to reaped */
        double maxrss_mib; /* ru_maxrss */
        char out[512];     /* stdout (only when asked for) */
};

/* What each thread of a hung child is doing, for the report (kernel stacks need root). */
static void describe_hang(pid_t pid)
{
        char path[512], buf[4096];
        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        DIR *d = opendir(path);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.')
                        continue;
                static const char *const files[] = {"comm", "wchan", "stack"};
                fprintf(stderr, "tiny_boot:   thread %s:", de->d_name);
                for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                        snprintf(path, sizeof(path), "/proc/%d/task/%s/%s", (int)pid, de->d_name,
                                 files[i]);
                        int fd = open(path, O_RDONLY | O_CLOEXEC);
                        if (fd < 0)
                                continue;
                        ssize_t n = read(fd, buf, sizeof(buf) - 1);
                        close(fd);
                        if (n <= 0)
                                continue;
                        buf[n] = 0;
                        fprintf(stderr, " %s: %s%s", files[i], buf, strchr(buf, '\n') ? "" : "\n");
                }
        }
        closedir(d);
}

/* Spawns argv with stdin and stderr on /dev/null, stdout captured (want_out) or /dev/null,
 * and waits for it (at most timeout_s: a child still running then is a bug, reported). */
static void run_child(char *const argv[], bool want_out, int timeout_s, struct child_result *r)
{
        int pipefd[2] = {-1, -1};
        if (want_out && pipe2(pipefd, O_CLOEXEC) != 0)
                die("pipe: %s", strerror(errno));
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (want_out)
                posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
        else
                posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);

        memset(r, 0, sizeof(*r));
        pid_t pid;
        uint64_t t0 = now_ns();
        int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0)
                die("cannot run %s: %s", argv[0], strerror(rc));
        if (want_out)
                close(pipefd[1]);
        /* A pidfd turns "exited or timed out" into one poll, without polling loops. */
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd >= 0) {
                struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
                int n;
                do
                        n = poll(&pfd, 1, timeout_s * 1000);
                while (n < 0 && errno == EINTR);
                close(pidfd);
                if (n == 0) {
                        fprintf(stderr, "tiny_boot: %s did not exit within %d s; its threads:\n",
                                argv[0], timeout_s);
                        describe_hang(pid);
                        kill(pid, SIGKILL);
                        waitpid(pid, NULL, 0);
                        die("%s hung (killed): run it by hand to investigate", argv[0]);
                }
        }
        int st;
        struct rusage ru;
        while (wait4(pid, &st, 0, &ru) < 0)
                if (errno != EINTR)
                        die("wait4: %s", strerror(errno));
        r->wall_ms = (double)(now_ns() - t0) / 1e6;
        r->maxrss_mib = (double)ru.ru_maxrss / 1024.0;
        r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        size_t got = 0;
        if (want_out) {
                /* The child is gone: its output is all in the pipe (one short line). */
                for (;;) {
                        ssize_t n = read(pipefd[0], r->out + got, sizeof(r->out) - 1 - got);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        got += (size_t)n;
                        if (got == sizeof(r->out) - 1)
                                break;
                }
                close(pipefd[0]);
        }
        r->out[got] = 0;
}

/* ------------------------------------------------------------------ in-process (library) */

struct lib_times {
        double to_built_ms, to_first_insn_ms, to_end_ms, start_to_first_insn_ms;
        double guest_resident_mib; /* guest RAM resident after build (mincore) */
        int exit_code;
};

/* One VM through the public API; times from ember_builder_new(). */
static int lib_run_once(const char *kernel, unsigned memory_mib, struct lib_times *t)
{
        uint64_t t0 = now_ns();
        struct ember_builder *b = ember_builder_new();
        if (!b)
                return -ENOMEM;
        const char *argv[] = {"/x", NULL};
        int rc = ember_builder_machine(b, 1, memory_mib);
        if (!rc)
                rc = ember_builder_machine_allow_software_kvm(b, 1);
        if (!rc)
                rc = ember_builder_kernel(b, kernel);
        if (!rc)
                rc = ember_builder_exec(b, argv[0], argv);
        if (!rc)
                rc = ember_builder_console_fds(b, -1, -1, -1);
        struct ember_vm *vm = NULL;
        if (!rc)
                rc = ember_builder_build(b, &vm);
        if (rc) {
                fprintf(stderr, "tiny_boot: build: %s: %s\n",
                        ember_error_name(ember_builder_error_code(b)), ember_builder_error(b));
                ember_builder_free(b);
                return rc;
        }
        ember_builder_free(b);
        uint64_t t_built = now_ns();
        struct ember_metrics *m = ember_vm_metrics(vm);
        struct ember_metrics_sample s;
        ember_metrics_sample(m, &s);
        t->guest_resident_mib = (double)s.host_resident_bytes / (1024.0 * 1024.0);
        /* The sample (mincore over guest RAM) is the benchmark's doing: its time is left out. */
        uint64_t sampling = now_ns() - t_built;
        rc = ember_vm_start(vm);
        if (rc == 0)
                rc = ember_vm_wait(vm);
        else
                fprintf(stderr, "tiny_boot: start: %s\n", ember_vm_error(vm));
        uint64_t t_end = now_ns();
        ember_metrics_sample(m, &s);
        ember_metrics_release(m);
        ember_vm_free(vm);
        if (rc < 0)
                return rc;
        t->exit_code = rc;
        t->to_built_ms = (double)(t_built - t0) / 1e6;
        t->to_end_ms = (double)(t_end - t0 - sampling) / 1e6;
        t->to_first_insn_ms = s.init_mono_ns ? (double)(s.init_mono_ns - t0 - sampling) / 1e6 : -1;
        t->start_to_first_insn_ms = s.init_mono_ns && s.start_mono_ns
                                        ? (double)(s.init_mono_ns - s.start_mono_ns) / 1e6
                                        : -1;
        return 0;
}

/* --child-lib KERNEL MIB: one VM, results on stdout as one line. */
static int child_lib(const char *kernel, const char *mib)
{
        struct lib_times t;
        int rc = lib_run_once(kernel, (unsigned)strtoul(mib, NULL, 10), &t);
        if (rc < 0)
                return 125;
        printf("%d %.6f %.6f %.6f %.6f %.6f\n", t.exit_code, t.to_built_ms, t.to_first_insn_ms,
               t.to_end_ms, t.start_to_first_insn_ms, t.guest_resident_mib);
        fflush(stdout);
        return 0;
}

/* ------------------------------------------------------------------ setup */

static char *self_path(void)
{
        char buf[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        if (n <= 0)
                die("readlink /proc/self/exe: %s", strerror(errno));
        buf[n] = 0;
        return strdup(buf);
}

/* build/bench/tiny_boot -> build/ember */
static char *default_ember(const char *self)
{
        char *dup = strdup(self);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/../ember", dirname(dup));
        free(dup);
        char *real = realpath(path, NULL);
        return real ? real : strdup(path);
}

static char *find_in_path(const char *name)
{
        if (strchr(name, '/'))
                return strdup(name);
        const char *path = getenv("PATH");
        if (!path)
                path = "/usr/bin:/bin";
        char *dup = strdup(path), *save = NULL;
        for (char *d = strtok_r(dup, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                char full[PATH_MAX];
                snprintf(full, sizeof(full), "%s/%s", d, name);
                if (access(full, X_OK) == 0) {
                        free(dup);
                        return strdup(full);
                }
        }
        free(dup);
        return NULL;
}

static void host_description(char *buf, size_t len)
{
        char model[128] = "unknown CPU";
        FILE *f = fopen("/proc/cpuinfo", "r");
        if (f) {
                char line[256];
                while (fgets(line, sizeof(line), f)) {
                        if (!strncmp(line, "model name", 10)) {
                                char *colon = strchr(line, ':');
                                if (colon) {
                                        snprintf(model, sizeof(model), "%s", colon + 2);
                                        model[strcspn(model, "\n")] = 0;
                                }
                                break;
                        }
                }
                fclose(f);
        }
        struct utsname u;
        uname(&u);
        snprintf(buf, len, "%s, %ld CPUs, Linux %s, /dev/kvm: %s", model,
                 sysconf(_SC_NPROCESSORS_ONLN), u.release,
                 ember_kvm_host_virt_name(ember_kvm_host_virt()));
}

static void write_guest(const char *path, char **out)
{
        struct tiny_code c = {0};
        tiny_outl(&c, EMBER_ABI_PORT,
                  EMBER_ABI_WORD(EMBER_ABI_CMD_INIT_REACHED, EMBER_ABI_VERSION));
        tiny_outb(&c, GUEST_DEBUG_EXIT_PORT, GUEST_DEBUG_EXIT_VALUE);
        tiny_exit(&c, GUEST_EMBER_STATUS);
        tiny_hlt(&c);
        char *tmp = tiny_guest_write(&c);
        if (!tmp)
                die("cannot write the guest image: %s", strerror(errno));
        if (path) {
                /* A copy for running the guest by hand. */
                char cmd[PATH_MAX * 2 + 16];
                snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", tmp, path);
                if (system(cmd) != 0)
                        die("cannot copy the guest to %s", path);
        }
        *out = tmp;
}

static void usage(FILE *f)
{
        fprintf(
            f,
            "usage: tiny_boot [options]\n"
            "  -n, --rounds N         measured rounds (default 20): each runs ember CLI, QEMU and\n"
            "                         ember library once, in turn\n"
            "  -w, --warmup N         unmeasured rounds first (default 3)\n"
            "  -m, --memory MiB       guest memory for both VMMs (default 128, QEMU's default)\n"
            "      --ember PATH       ember CLI (default: build/ember next to build/bench)\n"
            "      --qemu PATH        QEMU (default: qemu-system-x86_64 in PATH; 'none' skips it)\n"
            "      --qemu-machine M   QEMU -M value (default %s)\n"
            "      --raw              print every sample\n"
            "      --timeout SECS     a child running longer is a hang: reported, benchmark ends\n"
            "                         (default 60)\n"
            "      --save-guest PATH  also write the guest ELF to PATH\n",
            QEMU_MACHINE_DEFAULT);
}

static void parse(int argc, char **argv, struct opts *o)
{
        static const struct option lo[] = {
            {"rounds", required_argument, NULL, 'n'},
            {"warmup", required_argument, NULL, 'w'},
            {"memory", required_argument, NULL, 'm'},
            {"ember", required_argument, NULL, 'E'},
            {"qemu", required_argument, NULL, 'Q'},
            {"qemu-machine", required_argument, NULL, 'M'},
            {"raw", no_argument, NULL, 'r'},
            {"timeout", required_argument, NULL, 'T'},
            {"save-guest", required_argument, NULL, 'S'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        *o = (struct opts){.rounds = 20,
                           .warmup = 3,
                           .timeout_s = 60,
                           .memory_mib = 128,
                           .qemu_machine = QEMU_MACHINE_DEFAULT};
        int c;
        while ((c = getopt_long(argc, argv, "n:w:m:h", lo, NULL)) != -1) {
                switch (c) {
                case 'n':
                        o->rounds = atoi(optarg);
                        break;
                case 'w':
                        o->warmup = atoi(optarg);
                        break;
                case 'm':
                        o->memory_mib = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'E':
                        o->ember = optarg;
                        break;
                case 'Q':
                        o->qemu = optarg;
                        break;
                case 'M':
                        o->qemu_machine = optarg;
                        break;
                case 'r':
                        o->raw = true;
                        break;
                case 'T':
                        o->timeout_s = atoi(optarg);
                        break;
                case 'S':
                        o->save_guest = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        usage(stderr);
                        exit(2);
                }
        }
        if (o->rounds < 1 || o->warmup < 0 || o->timeout_s < 1 ||
            o->memory_mib < EMBER_MIN_MEMORY_MIB)
                die("bad -n, -w or -m value");
}

/* ------------------------------------------------------------------ main */

static void on_alarm(int sig)
{
        static const char msg[] = "tiny_boot: an in-process VM did not end in time (hang)\n";
        ssize_t n = write(2, msg, sizeof(msg) - 1);
        (void)n;
        _exit(1);
}

enum {
        S_EMBER_WALL,
        S_QEMU_WALL,
        S_LIB_WALL,
        S_EMBER_RSS,
        S_QEMU_RSS,
        S_LIB_RSS,
        S_EMBER_BASE_RSS,
        S_QEMU_BASE_RSS,
        S_LIB_BASE_RSS,
        S_EMBER_BASE_WALL,
        S_LIB_FIRST,
        S_LIB_START_FIRST,
        S_LIB_BUILT,
        S_LIB_END,
        S_LIB_GUEST_RES,
        S_WARM_FIRST,
        S_WARM_END,
        S_COUNT
};

static const char *const series_names[S_COUNT] = {
    [S_EMBER_WALL] = "ember run (CLI) wall",
    [S_QEMU_WALL] = "QEMU microvm wall",
    [S_LIB_WALL] = "ember library, fresh process: wall",
    [S_EMBER_RSS] = "ember run (CLI) peak RSS",
    [S_QEMU_RSS] = "QEMU microvm peak RSS",
    [S_LIB_RSS] = "ember library, fresh process: peak RSS",
    [S_EMBER_BASE_RSS] = "baseline: ember run --help peak RSS",
    [S_QEMU_BASE_RSS] = "baseline: qemu -version peak RSS",
    [S_LIB_BASE_RSS] = "baseline: bench --child-noop peak RSS",
    [S_EMBER_BASE_WALL] = "baseline: ember run --help wall",
    [S_LIB_FIRST] = "builder_new -> first guest instruction",
    [S_LIB_START_FIRST] = "vm_start -> first guest instruction",
    [S_LIB_BUILT] = "builder_new -> build done",
    [S_LIB_END] = "builder_new -> VM end (wait returned)",
    [S_LIB_GUEST_RES] = "guest RAM resident after build (mincore)",
    [S_WARM_FIRST] = "warm: builder_new -> first guest instruction",
    [S_WARM_END] = "warm: builder_new -> VM end",
};

int main(int argc, char **argv)
{
        if (argc == 4 && !strcmp(argv[1], "--child-lib"))
                return child_lib(argv[2], argv[3]);
        if (argc == 2 && !strcmp(argv[1], "--child-noop"))
                return 0;

        struct opts o;
        parse(argc, argv, &o);
        char *self = self_path();
        char *ember = o.ember ? strdup(o.ember) : default_ember(self);
        if (access(ember, X_OK) != 0)
                die("ember CLI not found at %s (make build/ember, or --ember PATH)", ember);
        char *qemu = NULL;
        if (!o.qemu || strcmp(o.qemu, "none") != 0) {
                qemu = find_in_path(o.qemu ? o.qemu : "qemu-system-x86_64");
                if (!qemu)
                        die("qemu-system-x86_64 not found (apt-get install qemu-system-x86, or "
                            "--qemu none)");
        }
        char *guest;
        write_guest(o.save_guest, &guest);
        char empty_root[] = "/tmp/ember-bench-root-XXXXXX";
        if (!mkdtemp(empty_root))
                die("mkdtemp: %s", strerror(errno));

        char mib[16], qmem[32], qexit[96];
        snprintf(mib, sizeof(mib), "%u", o.memory_mib);
        snprintf(qmem, sizeof(qmem), "%uM", o.memory_mib);
        snprintf(qexit, sizeof(qexit), "isa-debug-exit,iobase=0x%x,iosize=1",
                 GUEST_DEBUG_EXIT_PORT);
        char *ember_argv[] = {ember,      "run",      "--allow-software-kvm",
                              "--kernel", guest,      "--rootfs",
                              empty_root, "--memory", mib,
                              "--",       "/x",       NULL};
        char *ember_base_argv[] = {ember, "run", "--help", NULL};
        char *qemu_argv[] = {qemu,
                             "-M",
                             (char *)o.qemu_machine,
                             "-accel",
                             "kvm",
                             "-cpu",
                             "host,-arch-capabilities",
                             "-smp",
                             "1",
                             "-m",
                             qmem,
                             "-nodefaults",
                             "-no-user-config",
                             "-nographic",
                             "-no-reboot",
                             "-kernel",
                             guest,
                             "-device",
                             qexit,
                             NULL};
        char *qemu_base_argv[] = {qemu, "-version", NULL};
        char *lib_argv[] = {self, "--child-lib", guest, mib, NULL};
        char *lib_base_argv[] = {self, "--child-noop", NULL};

        struct series s[S_COUNT];
        for (int i = 0; i < S_COUNT; i++)
                series_init(&s[i], series_names[i], o.rounds);

        char host[384];
        host_description(host, sizeof(host));
        printf("tiny_boot: %d rounds after %d warm-up, guest memory %u MiB, 1 vCPU\n", o.rounds,
               o.warmup, o.memory_mib);
        printf("host: %s\n", host);
        printf("ember: %s\nqemu:  %s -M %s\n", ember, qemu ? qemu : "(skipped)", o.qemu_machine);
        fflush(stdout);

        struct child_result r;
        for (int round = 0; round < o.warmup + o.rounds; round++) {
                bool keep = round >= o.warmup;
                run_child(ember_argv, false, o.timeout_s, &r);
                if (r.status != (int)GUEST_EMBER_STATUS)
                        die("ember run exited %d, expected %u: it did not run the guest (try: %s "
                            "run "
                            "--allow-software-kvm --kernel %s --rootfs %s -- /x)",
                            r.status, GUEST_EMBER_STATUS, ember, guest, empty_root);
                if (keep) {
                        s[S_EMBER_WALL].v[s[S_EMBER_WALL].n++] = r.wall_ms;
                        s[S_EMBER_RSS].v[s[S_EMBER_RSS].n++] = r.maxrss_mib;
                }
                if (qemu) {
                        run_child(qemu_argv, false, o.timeout_s, &r);
                        if (r.status != (int)QEMU_EXPECTED_STATUS)
                                die("QEMU exited %d, expected %u from isa-debug-exit: it did not "
                                    "run "
                                    "the guest",
                                    r.status, QEMU_EXPECTED_STATUS);
                        if (keep) {
                                s[S_QEMU_WALL].v[s[S_QEMU_WALL].n++] = r.wall_ms;
                                s[S_QEMU_RSS].v[s[S_QEMU_RSS].n++] = r.maxrss_mib;
                        }
                }
                run_child(lib_argv, true, o.timeout_s, &r);
                int code;
                double built, first, end, start_first, res;
                if (r.status != 0 ||
                    sscanf(r.out, "%d %lf %lf %lf %lf %lf", &code, &built, &first, &end,
                           &start_first, &res) != 6 ||
                    code != (int)GUEST_EMBER_STATUS || first < 0)
                        die("library child failed (status %d, output '%s')", r.status, r.out);
                if (keep) {
                        s[S_LIB_WALL].v[s[S_LIB_WALL].n++] = r.wall_ms;
                        s[S_LIB_RSS].v[s[S_LIB_RSS].n++] = r.maxrss_mib;
                        s[S_LIB_BUILT].v[s[S_LIB_BUILT].n++] = built;
                        s[S_LIB_FIRST].v[s[S_LIB_FIRST].n++] = first;
                        s[S_LIB_END].v[s[S_LIB_END].n++] = end;
                        s[S_LIB_START_FIRST].v[s[S_LIB_START_FIRST].n++] = start_first;
                        s[S_LIB_GUEST_RES].v[s[S_LIB_GUEST_RES].n++] = res;
                }
                /* Baselines: the same binaries doing nothing. */
                run_child(ember_base_argv, false, o.timeout_s, &r);
                if (keep) {
                        s[S_EMBER_BASE_RSS].v[s[S_EMBER_BASE_RSS].n++] = r.maxrss_mib;
                        s[S_EMBER_BASE_WALL].v[s[S_EMBER_BASE_WALL].n++] = r.wall_ms;
                }
                if (qemu) {
                        run_child(qemu_base_argv, false, o.timeout_s, &r);
                        if (keep)
                                s[S_QEMU_BASE_RSS].v[s[S_QEMU_BASE_RSS].n++] = r.maxrss_mib;
                }
                run_child(lib_base_argv, false, o.timeout_s, &r);
                if (keep)
                        s[S_LIB_BASE_RSS].v[s[S_LIB_BASE_RSS].n++] = r.maxrss_mib;
                if (keep && o.raw)
                        printf("raw %d: ember %.3f ms %.2f MiB | qemu %.3f ms %.2f MiB | lib first "
                               "%.3f end %.3f ms %.2f MiB\n",
                               round - o.warmup, s[S_EMBER_WALL].v[s[S_EMBER_WALL].n - 1],
                               s[S_EMBER_RSS].v[s[S_EMBER_RSS].n - 1],
                               qemu ? s[S_QEMU_WALL].v[s[S_QEMU_WALL].n - 1] : 0,
                               qemu ? s[S_QEMU_RSS].v[s[S_QEMU_RSS].n - 1] : 0, first, end,
                               s[S_LIB_RSS].v[s[S_LIB_RSS].n - 1]);
        }

        /* Warm: the same process builds and runs VM after VM (library code and data paged in). */
        struct lib_times t;
        signal(SIGALRM, on_alarm);
        for (int i = 0; i < o.warmup + o.rounds; i++) {
                alarm((unsigned)o.timeout_s);
                if (lib_run_once(guest, o.memory_mib, &t) < 0 ||
                    t.exit_code != (int)GUEST_EMBER_STATUS)
                        die("in-process run failed");
                alarm(0);
                if (i >= o.warmup) {
                        s[S_WARM_FIRST].v[s[S_WARM_FIRST].n++] = t.to_first_insn_ms;
                        s[S_WARM_END].v[s[S_WARM_END].n++] = t.to_end_ms;
                }
        }

        printf("\n  %-46s %9s %9s %9s\n", "", "median", "min", "max");
        printf("wall time, spawn to reaped (each a fresh process)\n");
        print_row(&s[S_EMBER_WALL], "ms");
        if (qemu)
                print_row(&s[S_QEMU_WALL], "ms");
        print_row(&s[S_LIB_WALL], "ms");
        print_row(&s[S_EMBER_BASE_WALL], "ms");
        printf("ember library, fresh process (times from ember_builder_new)\n");
        print_row(&s[S_LIB_FIRST], "ms");
        print_row(&s[S_LIB_BUILT], "ms");
        print_row(&s[S_LIB_START_FIRST], "ms");
        print_row(&s[S_LIB_END], "ms");
        printf("ember library, warm (%d VMs in turn in one process)\n", o.rounds);
        print_row(&s[S_WARM_FIRST], "ms");
        print_row(&s[S_WARM_END], "ms");
        printf("peak RSS (ru_maxrss)\n");
        print_row(&s[S_EMBER_RSS], "MiB");
        if (qemu)
                print_row(&s[S_QEMU_RSS], "MiB");
        print_row(&s[S_LIB_RSS], "MiB");
        print_row(&s[S_EMBER_BASE_RSS], "MiB");
        if (qemu)
                print_row(&s[S_QEMU_BASE_RSS], "MiB");
        print_row(&s[S_LIB_BASE_RSS], "MiB");
        print_row(&s[S_LIB_GUEST_RES], "MiB");

        double ember_wall = median(&s[S_EMBER_WALL]), ember_rss = median(&s[S_EMBER_RSS]);
        double ember_over = ember_rss - median(&s[S_EMBER_BASE_RSS]);
        double lib_over = median(&s[S_LIB_RSS]) - median(&s[S_LIB_BASE_RSS]);
        double first = median(&s[S_LIB_FIRST]);
        printf("\nsummary (medians)\n");
        double start_first = median(&s[S_LIB_START_FIRST]);
        printf("  ember vm_start -> first guest instruction: %.3f ms (target <= 1 ms: %s)\n",
               start_first, start_first <= 1.0 ? "met" : "MISSED");
        printf("  ember builder_new -> first guest instruction: %.3f ms (target <= 1 ms: %s)\n",
               first, first <= 1.0 ? "met" : "MISSED");
        if (qemu) {
                double qemu_wall = median(&s[S_QEMU_WALL]), qemu_rss = median(&s[S_QEMU_RSS]);
                double wall_ratio = ember_wall / qemu_wall;
                printf(
                    "  wall: ember %.3f ms, QEMU %.3f ms, ember/QEMU %.4f (target <= 0.05: %s)\n",
                    ember_wall, qemu_wall, wall_ratio, wall_ratio <= 0.05 ? "met" : "MISSED");
                printf("  peak RSS: ember %.2f MiB, QEMU %.2f MiB, ember/QEMU %.4f\n", ember_rss,
                       qemu_rss, ember_rss / qemu_rss);
                printf("  QEMU RSS over its own baseline: %.2f MiB\n",
                       qemu_rss - median(&s[S_QEMU_BASE_RSS]));
        }
        printf("  ember RSS overhead (CLI run - CLI --help): %.2f MiB (target <= 2 MiB: %s)\n",
               ember_over, ember_over <= 2.0 ? "met" : "MISSED");
        printf("  ember RSS overhead (library child - noop child): %.2f MiB, of which guest RAM "
               "%.2f MiB\n",
               lib_over, median(&s[S_LIB_GUEST_RES]));

        unlink(guest);
        rmdir(empty_root);
        return 0;
}
