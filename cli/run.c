/* `ember run`: parse options, build the VM, run it, return the workload's exit status. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <termios.h>
#include <stdbool.h>
#include <unistd.h>

#include "cli.h"
#include "ember/ember.h"
#include "ember_paths.h"
#include "ember/kvm.h"

/* Exit statuses of the CLI itself (the workload's status is passed through otherwise). */
#define CLI_EXIT_USAGE   2
#define CLI_EXIT_EMBER   EMBER_EXIT_GUEST_FAILED /* ember could not build or start the VM */
#define CLI_EXIT_TIMEOUT 124                     /* --timeout stopped the VM (as timeout(1)) */

/* The option text, grouped; also the source of the man page (`make man`). */
static void run_usage(FILE *f)
{
        fprintf(
            f,
            "usage: ember run [options] -- CMD [ARGS...]\n"
            "\n"
            "Boots a Linux microVM, runs CMD in it with the given root, streams its stdin,\n"
            "stdout and stderr, and exits with its status (128+N if it died of signal N).\n"
            "\n"
            "machine:\n"
            "  -c, --cpus N             vCPUs (default %u)\n"
            "  -m, --memory MiB         guest memory in MiB (default %u)\n"
            "      --no-rng             no virtio-rng device (the guest's entropy then comes from\n"
            "                           its own sources only)\n"
            "      --balloon[=OPTS]     virtio-balloon: the guest's free memory goes back to the\n"
            "                           host; OPTS, comma-separated: deflate-on-oom,\n"
            "                           no-reporting, no-stats\n"
            "      --balloon-target MiB ask the guest to give MiB of its RAM back (implies\n"
            "                           --balloon)\n"
            "      --allow-software-kvm run even where /dev/kvm cannot run Linux (custom kernels)\n"
            "\n"
            "kernel:\n"
            "  -k, --kernel PATH        guest kernel: bzImage or PVH vmlinux (default: ember's "
            "own)\n"
            "      --cmdline ARGS       extra kernel command line\n"
            "      --initramfs PATH     extra initramfs, loaded before ember's\n"
            "      --save-initramfs F   also write the initramfs ember generates to file F\n"
            "\n"
            "root and files:\n"
            "  -r, --rootfs DIR         host directory that becomes the guest's / (default: "
            "ember's\n"
            "                           busybox root)\n"
            "      --disk PATH[:ro]     raw disk image (file or block device): /dev/vda, vdb, ...\n"
            "                           in order (repeatable; ':ro' read-only)\n"
            "      --root-disk PATH[:ro] boot with this disk image (/dev/vda) as / instead of a\n"
            "                           root directory (not with --rootfs)\n"
            "      --root-disk-fstype T its file system type (default: detected; ext2/3/4)\n"
            "\n"
            "process:\n"
            "  -e, --env KEY=VALUE      environment variable for CMD (repeatable); a bare KEY\n"
            "                           passes this process's value (none if it has none)\n"
            "      --env-file FILE      variables from FILE, Docker's format: KEY=VALUE lines\n"
            "                           (value literal), '#' comments, bare KEY as above\n"
            "  -w, --workdir DIR        working directory of CMD (absolute)\n"
            "  -u, --user USER[:GROUP]  run CMD as this user and group: numbers, or names looked\n"
            "                           up in the root's /etc/passwd and /etc/group (a name\n"
            "                           alone also sets its supplementary groups)\n"
            "      --rlimit RES=SOFT[:HARD]  resource limit (e.g. nofile=1024:4096; 'unlimited')\n"
            "      --hostname NAME      guest hostname (default: " EMBER_DEFAULT_HOSTNAME ")\n"
            "      --as-pid1            run CMD as PID 1 (of a PID namespace of its own)\n"
            "\n"
            "terminal and streams:\n"
            "  -i, --interactive        forward this process's stdin to CMD (without it, CMD's\n"
            "                           stdin is empty)\n"
            "  -t, --tty                give CMD a terminal in the guest (its stdin, stdout and\n"
            "                           stderr); with -i this terminal is put in raw mode, so\n"
            "                           keys like Ctrl-C and Ctrl-Z reach CMD, and its size is\n"
            "                           followed (-t needs a terminal on stdin)\n"
            "      --console-output F   write CMD's stdout and stderr to file F (stdin is empty)\n"
            "      --kernel-log F       write the kernel's log (serial console) to F ('-': "
            "stderr)\n"
            "\n"
            "limits and output:\n"
            "      --timeout SECONDS    stop the VM once it has run this long (exit status %d)\n"
            "      --metrics-json F     at the end, write the run's metrics as one JSON object\n"
            "                           to F ('-': stderr); fields: see the README\n"
            "  -h, --help               this help\n"
            "\n"
            "exit status: CMD's; %d after --timeout; %d if ember stopped the VM on a signal;\n"
            "%d if ember or the guest failed before CMD reported one; 2 for a usage error.\n"
            "environment: EMBER_KERNEL and EMBER_ROOTFS override the default kernel and root.\n",
            EMBER_DEFAULT_VCPUS, EMBER_DEFAULT_MEMORY_MIB, CLI_EXIT_TIMEOUT, CLI_EXIT_TIMEOUT,
            EMBER_EXIT_STOPPED, EMBER_EXIT_GUEST_FAILED);
}

static int parse_u64(const char *s, uint64_t *out)
{
        if (!s || !*s || *s == '-')
                return -1;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end)
                return -1;
        *out = v;
        return 0;
}

static int parse_limit(const char *s, uint64_t *out)
{
        if (!strcmp(s, "unlimited") || !strcmp(s, "infinity")) {
                *out = RLIM_INFINITY;
                return 0;
        }
        return parse_u64(s, out);
}

/* --balloon=deflate-on-oom,no-reporting,no-stats */
static int parse_balloon_opts(const char *s, unsigned *flags)
{
        static const struct {
                const char *name;
                unsigned flag;
        } names[] = {
            {"deflate-on-oom", EMBER_BALLOON_DEFLATE_ON_OOM},
            {"no-reporting", EMBER_BALLOON_NO_REPORTING},
            {"no-stats", EMBER_BALLOON_NO_STATS},
        };
        while (*s) {
                size_t len = strcspn(s, ",");
                size_t i = 0;
                while (i < sizeof(names) / sizeof(names[0]) &&
                       (strlen(names[i].name) != len || strncmp(s, names[i].name, len)))
                        i++;
                if (i == sizeof(names) / sizeof(names[0])) {
                        fprintf(stderr,
                                "ember: --balloon: unknown option '%.*s' (known: "
                                "deflate-on-oom, no-reporting, no-stats)\n",
                                (int)len, s);
                        return -1;
                }
                *flags |= names[i].flag;
                s += len;
                if (*s == ',')
                        s++;
        }
        return 0;
}

/* One of ember's guest files (rel: "guest/vmlinux", "rootfs"): next to the ember binary
 * (build/ember -> build/<rel>), in the lib/ember directory beside an installed bin/ (also after
 * copying the installed tree elsewhere), or where `make install` put it. */
static char *find_default(const char *rel)
{
        char self[PATH_MAX], path[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = 0;
                char *dir = dirname(self);
                static const char *const subdirs[] = {"", "/../lib/ember"};
                for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
                        if (snprintf(path, sizeof(path), "%s%s/%s", dir, subdirs[i], rel) >=
                            (int)sizeof(path))
                                continue;
                        if (access(path, R_OK) == 0)
                                return strdup(path);
                }
        }
        if (snprintf(path, sizeof(path), "%s/%s", EMBER_LIBDIR, rel) < (int)sizeof(path) &&
            access(path, R_OK) == 0)
                return strdup(path);
        return NULL;
}

/* PATH[:ro] or PATH[:rw]: strips the suffix in place; true for ':ro'. */
static bool disk_arg(char *arg)
{
        size_t n = strlen(arg);
        if (n > 3 && (!strcmp(arg + n - 3, ":ro") || !strcmp(arg + n - 3, ":rw"))) {
                bool ro = arg[n - 2] == 'r' && arg[n - 1] == 'o';
                arg[n - 3] = 0;
                return ro;
        }
        return false;
}

static struct ember_exit_handle g_stop = {.fd = -1};
static volatile sig_atomic_t g_timed_out;
static struct ember_vm *volatile g_tty_vm; /* -t: the VM whose terminal follows ours */

static void on_winch(int sig)
{
        unsigned rows, cols;
        struct winsize ws;
        int saved = errno;
        if (g_tty_vm && (ioctl(0, TIOCGWINSZ, &ws) == 0 || ioctl(1, TIOCGWINSZ, &ws) == 0)) {
                rows = ws.ws_row;
                cols = ws.ws_col;
                if (rows && cols)
                        ember_vm_console_resize(g_tty_vm, rows, cols);
        }
        errno = saved;
}

/* -it: this terminal in raw mode for the run; restored on every way out of ember_cli_run (a
 * signal stops the VM, so it ends through the same path). */
static struct {
        bool raw;
        struct termios saved;
} g_term;

static int term_raw(void)
{
        struct termios t;
        if (tcgetattr(0, &g_term.saved) != 0)
                return -1;
        t = g_term.saved;
        cfmakeraw(&t);
        if (tcsetattr(0, TCSANOW, &t) != 0)
                return -1;
        g_term.raw = true;
        return 0;
}

static void term_restore(void)
{
        if (g_term.raw)
                tcsetattr(0, TCSANOW, &g_term.saved);
        g_term.raw = false;
}

static void on_signal(int sig)
{
        if (sig == SIGALRM)
                g_timed_out = 1;
        if (g_stop.fd >= 0)
                ember_exit_handle_trigger(g_stop);
}

/* --timeout: a positive number of seconds (fractions allowed), at most a year. */
static int parse_timeout(const char *s, struct timeval *out)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !(v > 0) || v > 366.0 * 86400)
                return -1;
        out->tv_sec = (time_t)v;
        out->tv_usec = (suseconds_t)((v - (double)out->tv_sec) * 1e6);
        if (out->tv_sec == 0 && out->tv_usec == 0)
                out->tv_usec = 1;
        return 0;
}

/* --env KEY: this process's value, as Docker does; nothing when it has none. */
static int env_from_host(struct ember_builder *b, const char *key)
{
        const char *v = getenv(key);
        if (!*key)
                return ember_builder_exec_env_str(b, "="); /* the builder names the problem */
        return v ? ember_builder_exec_env(b, key, v) : 0;
}

static void json_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

/* A boot marker as a duration since the start, or null if the guest never reported it. */
static void json_marker(FILE *f, const char *name, uint64_t mark, uint64_t start)
{
        if (mark && start && mark >= start)
                fprintf(f, "  \"%s\": %" PRIu64 ",\n", name, mark - start);
        else
                fprintf(f, "  \"%s\": null,\n", name);
}

/* --metrics-json: one object; every field is described in the README. */
static int write_metrics_json(FILE *f, const struct ember_metrics_sample *s, int code,
                              const char *end, const char *error, unsigned vcpus)
{
        fprintf(f, "{\n  \"ember_version\": ");
        json_string(f, ember_version());
        fprintf(f, ",\n  \"exit_code\": %d,\n  \"end\": ", code);
        json_string(f, end);
        fprintf(f, ",\n  \"error\": ");
        json_string(f, error);
        fprintf(f, ",\n  \"vcpus\": %u,\n  \"uptime_ns\": %" PRIu64 ",\n", vcpus, s->uptime_ns);
        json_marker(f, "init_reached_ns", s->init_mono_ns, s->start_mono_ns);
        json_marker(f, "exec_ns", s->exec_mono_ns, s->start_mono_ns);
        fprintf(f,
                "  \"vcpu_time_ns\": %" PRIu64 ",\n"
                "  \"exits\": {\"total\": %" PRIu64 ", \"io\": %" PRIu64 ", \"mmio\": %" PRIu64
                ", \"hlt\": %" PRIu64 ", \"other\": %" PRIu64 "},\n"
                "  \"memory_bytes\": %" PRIu64 ",\n"
                "  \"host_resident_bytes\": %" PRIu64 "\n}\n",
                s->vcpu_time_ns, s->exits_total, s->exits_io, s->exits_mmio, s->exits_hlt,
                s->exits_other, s->memory_bytes, s->host_resident_end_bytes);
        return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

static int fail_build(struct ember_builder *b)
{
        enum ember_error code = ember_builder_error_code(b);
        fprintf(stderr, "ember: %s\n", ember_builder_error(b));
        if (code == EMBER_ERR_NO_GUEST_SUPPORT)
                fprintf(stderr, "ember: on such a host, run the same command inside the TCG test "
                                "host: scripts/ember-tcg -- ember run ...\n");
        return CLI_EXIT_EMBER;
}

int ember_cli_run(int argc, char **argv)
{
        enum {
                OPT_INITRAMFS = 1000,
                OPT_CMDLINE,
                OPT_RLIMIT,
                OPT_HOSTNAME,
                OPT_PID1,
                OPT_CONSOLE_OUTPUT,
                OPT_KERNEL_LOG,
                OPT_ALLOW_SW,
                OPT_SAVE_INITRAMFS,
                OPT_NO_RNG,
                OPT_ENV_FILE,
                OPT_TIMEOUT,
                OPT_METRICS_JSON,
                OPT_DISK,
                OPT_ROOT_DISK,
                OPT_ROOT_DISK_FSTYPE,
                OPT_BALLOON,
                OPT_BALLOON_TARGET
        };
        bool tty = false, interactive = false;
        static const struct option opts[] = {
            {"cpus", required_argument, NULL, 'c'},
            {"memory", required_argument, NULL, 'm'},
            {"kernel", required_argument, NULL, 'k'},
            {"initramfs", required_argument, NULL, OPT_INITRAMFS},
            {"cmdline", required_argument, NULL, OPT_CMDLINE},
            {"save-initramfs", required_argument, NULL, OPT_SAVE_INITRAMFS},
            {"rootfs", required_argument, NULL, 'r'},
            {"env", required_argument, NULL, 'e'},
            {"env-file", required_argument, NULL, OPT_ENV_FILE},
            {"timeout", required_argument, NULL, OPT_TIMEOUT},
            {"metrics-json", required_argument, NULL, OPT_METRICS_JSON},
            {"workdir", required_argument, NULL, 'w'},
            {"user", required_argument, NULL, 'u'},
            {"rlimit", required_argument, NULL, OPT_RLIMIT},
            {"hostname", required_argument, NULL, OPT_HOSTNAME},
            {"as-pid1", no_argument, NULL, OPT_PID1},
            {"console-output", required_argument, NULL, OPT_CONSOLE_OUTPUT},
            {"kernel-log", required_argument, NULL, OPT_KERNEL_LOG},
            {"allow-software-kvm", no_argument, NULL, OPT_ALLOW_SW},
            {"no-rng", no_argument, NULL, OPT_NO_RNG},
            {"tty", no_argument, NULL, 't'},
            {"interactive", no_argument, NULL, 'i'},
            {"disk", required_argument, NULL, OPT_DISK},
            {"root-disk", required_argument, NULL, OPT_ROOT_DISK},
            {"root-disk-fstype", required_argument, NULL, OPT_ROOT_DISK_FSTYPE},
            {"balloon", optional_argument, NULL, OPT_BALLOON},
            {"balloon-target", required_argument, NULL, OPT_BALLOON_TARGET},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        struct ember_builder *b = ember_builder_new();
        if (!b) {
                fprintf(stderr, "ember: out of memory\n");
                return CLI_EXIT_EMBER;
        }
        uint64_t cpus = EMBER_DEFAULT_VCPUS, mem = EMBER_DEFAULT_MEMORY_MIB;
        bool balloon = false, has_target = false;
        unsigned balloon_flags = 0;
        uint64_t balloon_target = 0;
        const char *kernel = getenv("EMBER_KERNEL"), *rootfs = getenv("EMBER_ROOTFS");
        char *root_disk = NULL;
        const char *root_fstype = NULL;
        bool rootfs_given = false;
        int rc = 0, status = CLI_EXIT_USAGE;
        struct timeval timeout = {0, 0};
        g_timed_out = 0;
        FILE *metrics_out = NULL;
        optind = 1;
        opterr = 0;
        int c;
        /* '+': stop at the first non-option, so CMD's own options are never ours. */
        while ((c = getopt_long(argc, argv, "+c:m:k:r:e:w:u:hit", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        if (parse_u64(optarg, &cpus) || cpus > UINT_MAX) {
                                fprintf(stderr, "ember: --cpus '%s' is not a number\n", optarg);
                                goto out;
                        }
                        break;
                case 'm':
                        if (parse_u64(optarg, &mem) || mem > SIZE_MAX) {
                                fprintf(stderr, "ember: --memory '%s' is not a number of MiB\n",
                                        optarg);
                                goto out;
                        }
                        break;
                case 'k':
                        kernel = optarg;
                        break;
                case OPT_INITRAMFS:
                        rc = ember_builder_kernel_initramfs(b, optarg);
                        break;
                case OPT_CMDLINE:
                        rc = ember_builder_kernel_cmdline(b, optarg);
                        break;
                case OPT_SAVE_INITRAMFS:
                        rc = ember_builder_kernel_save_initramfs(b, optarg);
                        break;
                case 'r':
                        rootfs = optarg;
                        rootfs_given = true;
                        break;
                case OPT_DISK: {
                        bool ro = disk_arg(optarg);
                        rc = ember_builder_disk(b, optarg, ro);
                        break;
                }
                case OPT_ROOT_DISK:
                        root_disk = optarg;
                        break;
                case OPT_ROOT_DISK_FSTYPE:
                        root_fstype = optarg;
                        break;
                case 'e':
                        rc = strchr(optarg, '=') ? ember_builder_exec_env_str(b, optarg)
                                                 : env_from_host(b, optarg);
                        break;
                case OPT_ENV_FILE:
                        rc = ember_builder_exec_env_file(b, optarg);
                        break;
                case OPT_TIMEOUT:
                        if (parse_timeout(optarg, &timeout)) {
                                fprintf(stderr,
                                        "ember: --timeout '%s' is not a positive number of "
                                        "seconds\n",
                                        optarg);
                                goto out;
                        }
                        break;
                case OPT_METRICS_JSON:
                        if (metrics_out && metrics_out != stderr)
                                fclose(metrics_out);
                        /* Opened now, so that an unwritable file fails before the VM runs. */
                        metrics_out = strcmp(optarg, "-") ? fopen(optarg, "we") : stderr;
                        if (!metrics_out) {
                                fprintf(stderr, "ember: --metrics-json '%s': %s\n", optarg,
                                        strerror(errno));
                                status = CLI_EXIT_EMBER;
                                goto out;
                        }
                        break;
                case 'w':
                        rc = ember_builder_exec_workdir(b, optarg);
                        break;
                case 'u':
                        rc = ember_builder_exec_user_spec(b, optarg);
                        break;
                case OPT_RLIMIT: {
                        char *eq = strchr(optarg, '=');
                        uint64_t soft, hard;
                        if (!eq) {
                                fprintf(stderr, "ember: --rlimit expects RES=SOFT[:HARD]\n");
                                goto out;
                        }
                        *eq = 0;
                        char *colon = strchr(eq + 1, ':');
                        if (colon)
                                *colon = 0;
                        if (parse_limit(eq + 1, &soft) ||
                            (colon && parse_limit(colon + 1, &hard))) {
                                fprintf(
                                    stderr,
                                    "ember: --rlimit %s: limits must be numbers or 'unlimited'\n",
                                    optarg);
                                goto out;
                        }
                        rc = ember_builder_exec_rlimit(b, optarg, soft, colon ? hard : soft);
                        break;
                }
                case OPT_HOSTNAME:
                        rc = ember_builder_exec_hostname(b, optarg);
                        break;
                case OPT_NO_RNG:
                        rc = ember_builder_rng(b, 0);
                        break;
                case OPT_PID1:
                        rc = ember_builder_exec_as_pid1(b, 1);
                        break;
                case OPT_CONSOLE_OUTPUT:
                        rc = ember_builder_console_output(b, optarg);
                        break;
                case OPT_KERNEL_LOG:
                        rc = ember_builder_kernel_log(b, optarg);
                        break;
                case OPT_ALLOW_SW:
                        rc = ember_builder_machine_allow_software_kvm(b, 1);
                        break;
                case 't':
                        tty = true;
                        break;
                case 'i':
                        interactive = true;
                        break;
                case OPT_BALLOON:
                        balloon = true;
                        if (optarg && parse_balloon_opts(optarg, &balloon_flags))
                                goto out;
                        break;
                case OPT_BALLOON_TARGET:
                        if (parse_u64(optarg, &balloon_target)) {
                                fprintf(stderr,
                                        "ember: --balloon-target '%s' is not a number of MiB\n",
                                        optarg);
                                goto out;
                        }
                        balloon = has_target = true;
                        break;
                case 'h':
                        run_usage(stdout);
                        status = 0;
                        goto out;
                default:
                        if (optopt)
                                fprintf(stderr, "ember: option -%c: unknown or missing its value\n",
                                        optopt);
                        else
                                fprintf(stderr, "ember: unknown option '%s'\n", argv[optind - 1]);
                        fprintf(stderr, "ember: try ember run --help\n");
                        goto out;
                }
                if (rc) {
                        status = fail_build(b);
                        goto out;
                }
        }
        if (optind >= argc) {
                fprintf(stderr,
                        "ember: no command given (usage: ember run [options] -- CMD [ARGS...])\n");
                goto out;
        }
        ember_builder_machine(b, (unsigned)cpus, (size_t)mem);
        if (tty && !isatty(0)) {
                fprintf(stderr, "ember: -t needs a terminal on stdin, and stdin is not one (run "
                                "from a terminal, or leave -t out)\n");
                goto out;
        }
        /* As docker run: stdin reaches CMD only with -i. */
        if (!interactive)
                rc = ember_builder_console_fds(b, -1, 1, 2);
        if (!rc && tty)
                rc = ember_builder_console_tty(b, 1);
        if (rc) {
                status = fail_build(b);
                goto out;
        }
        if (balloon && ember_builder_balloon(b, 1, balloon_flags)) {
                status = fail_build(b);
                goto out;
        }

        char *def_kernel = NULL, *def_rootfs = NULL;
        if (!kernel)
                kernel = def_kernel = find_default("guest/vmlinux");
        if (!kernel) {
                fprintf(stderr,
                        "ember: no --kernel given and ember's default kernel was not found beside "
                        "this ember nor in " EMBER_LIBDIR "/guest (build it with `make guest`, "
                        "install it with `make install`, or set EMBER_KERNEL)\n");
                status = CLI_EXIT_EMBER;
                goto out;
        }
        if (root_disk) {
                /* The root is the disk: no default root directory (an explicit one is refused
                 * by the builder). */
                bool ro = disk_arg(root_disk);
                if (!rootfs_given)
                        rootfs = NULL;
                rc = ember_builder_root_disk(b, root_disk, ro, root_fstype);
                if (rc) {
                        free(def_kernel);
                        status = fail_build(b);
                        goto out;
                }
        } else if (root_fstype) {
                fprintf(stderr, "ember: --root-disk-fstype needs --root-disk\n");
                free(def_kernel);
                goto out;
        }
        if (!rootfs && !root_disk)
                rootfs = def_rootfs = find_default("rootfs");
        if (!rootfs && !root_disk) {
                fprintf(stderr,
                        "ember: no --rootfs given and ember's default root was not found beside "
                        "this ember nor in " EMBER_LIBDIR " (build it with `make guest`, install "
                        "it with `make install`, or set EMBER_ROOTFS)\n");
                free(def_kernel);
                status = CLI_EXIT_EMBER;
                goto out;
        }
        rc = ember_builder_kernel(b, kernel);
        if (!rc && rootfs)
                rc = ember_builder_fs_root(b, rootfs);
        free(def_kernel);
        free(def_rootfs);
        if (!rc)
                rc = ember_builder_exec(b, argv[optind], (const char *const *)&argv[optind]);
        struct ember_vm *vm = NULL;
        if (!rc)
                rc = ember_builder_build(b, &vm);
        if (rc) {
                status = fail_build(b);
                goto out;
        }

        if (has_target && ember_vm_balloon_set_target(vm, balloon_target) < 0) {
                fprintf(stderr, "ember: %s\n", ember_vm_error(vm));
                ember_vm_free(vm);
                status = CLI_EXIT_EMBER;
                goto out;
        }

        /* Ctrl-C, SIGTERM, SIGHUP (and --timeout's SIGALRM) stop the VM; a closed stdout must
         * not kill ember. */
        signal(SIGPIPE, SIG_IGN);
        bool have_handle = ember_vm_exit_handle(vm, &g_stop) == 0;
        if (have_handle) {
                struct sigaction sa = {.sa_handler = on_signal};
                sigemptyset(&sa.sa_mask);
                sigaction(SIGINT, &sa, NULL);
                sigaction(SIGTERM, &sa, NULL);
                sigaction(SIGHUP, &sa, NULL);
                sigaction(SIGALRM, &sa, NULL);
        } else if (timeout.tv_sec || timeout.tv_usec) {
                fprintf(stderr, "ember: --timeout: cannot get the VM's exit handle\n");
                ember_vm_free(vm);
                status = CLI_EXIT_EMBER;
                goto out;
        }
        /* Also how --timeout tells its own stop from a workload that exits with 137. */
        struct ember_metrics *metrics = ember_vm_metrics(vm);
        if (timeout.tv_sec || timeout.tv_usec) {
                struct itimerval it = {.it_value = timeout};
                setitimer(ITIMER_REAL, &it, NULL);
        }
        if (tty) {
                g_tty_vm = vm;
                struct sigaction wa = {.sa_handler = on_winch, .sa_flags = SA_RESTART};
                sigemptyset(&wa.sa_mask);
                sigaction(SIGWINCH, &wa, NULL);
                if (interactive && term_raw() != 0)
                        fprintf(stderr, "ember: cannot put the terminal in raw mode: %s\n",
                                strerror(errno));
        }
        rc = ember_vm_start(vm);
        if (rc < 0) {
                term_restore();
                g_tty_vm = NULL;
                fprintf(stderr, "ember: %s\n", ember_vm_error(vm));
                ember_vm_free(vm);
                ember_metrics_release(metrics);
                status = CLI_EXIT_EMBER;
                goto out;
        }
        status = ember_vm_wait(vm);
        term_restore();
        if (tty) {
                signal(SIGWINCH, SIG_IGN);
                g_tty_vm = NULL;
        }
        struct itimerval off = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &off, NULL);
        struct ember_metrics_sample sample = {0};
        if (metrics)
                ember_metrics_sample(metrics, &sample);
        const char *end = ember_vm_end_name(sample.end);
        if (g_timed_out && sample.end == EMBER_VM_END_STOPPED) {
                fprintf(stderr,
                        "ember: the VM ran longer than --timeout (%ld.%06ld s) and was stopped\n",
                        (long)timeout.tv_sec, (long)timeout.tv_usec);
                status = CLI_EXIT_TIMEOUT;
                end = "timeout";
        }
        if (status == EMBER_EXIT_GUEST_FAILED && ember_vm_error(vm)[0])
                fprintf(stderr, "ember: %s\n", ember_vm_error(vm));
        if (metrics_out && write_metrics_json(metrics_out, &sample, status, end, ember_vm_error(vm),
                                              (unsigned)cpus) != 0)
                fprintf(stderr, "ember: --metrics-json: write failed\n");
        ember_metrics_release(metrics);
        ember_vm_free(vm);
        if (have_handle)
                ember_exit_handle_release(&g_stop);
        if (status < 0)
                status = CLI_EXIT_EMBER;
out:
        if (metrics_out && metrics_out != stderr)
                fclose(metrics_out);
        ember_builder_free(b);
        return status;
}
