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
#include <unistd.h>

#include "cli.h"
#include "ember/ember.h"
#include "ember/kvm.h"

/* Exit statuses of the CLI itself (the workload's status is passed through otherwise). */
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_EMBER EMBER_EXIT_GUEST_FAILED /* ember could not build or start the VM */

static void run_usage(FILE *f)
{
        fprintf(
            f,
            "usage: ember run [options] -- CMD [ARGS...]\n"
            "\n"
            "Boots a Linux microVM, runs CMD in it with the given root, streams its stdin,\n"
            "stdout and stderr, and exits with its status (128+N if it died of signal N).\n"
            "\n"
            "options:\n"
            "  -c, --cpus N             vCPUs (default %u)\n"
            "  -m, --memory MiB         guest memory in MiB (default %u)\n"
            "  -k, --kernel PATH        guest kernel: bzImage or PVH vmlinux (default: ember's "
            "own)\n"
            "      --initramfs PATH     extra initramfs, loaded before ember's\n"
            "      --cmdline ARGS       extra kernel command line\n"
            "      --save-initramfs F   also write the initramfs ember generates to file F\n"
            "  -r, --rootfs DIR         host directory that becomes the guest's / (default: "
            "ember's\n"
            "                           busybox root)\n"
            "  -e, --env KEY=VALUE      environment variable for CMD (repeatable)\n"
            "  -w, --workdir DIR        working directory of CMD (absolute)\n"
            "  -u, --user UID[:GID]     run CMD as this numeric user and group\n"
            "      --rlimit RES=SOFT[:HARD]  resource limit (e.g. nofile=1024:4096; 'unlimited')\n"
            "      --hostname NAME      guest hostname (default: " EMBER_DEFAULT_HOSTNAME ")\n"
            "      --as-pid1            run CMD as PID 1 (of a PID namespace of its own)\n"
            "      --console-output F   write CMD's stdout and stderr to file F (stdin is empty)\n"
            "      --kernel-log F       write the kernel's log (serial console) to F ('-': "
            "stderr)\n"
            "      --no-rng             no virtio-rng device (the guest's entropy then comes from\n"
            "                           its own sources only)\n"
            "      --balloon[=OPTS]     virtio-balloon: the guest's free memory goes back to the\n"
            "                           host; OPTS, comma-separated: deflate-on-oom,\n"
            "                           no-reporting, no-stats\n"
            "      --balloon-target MiB ask the guest to give MiB of its RAM back (implies\n"
            "                           --balloon)\n"
            "      --allow-software-kvm run even where /dev/kvm cannot run Linux (custom kernels)\n"
            "  -h, --help               this help\n"
            "\n"
            "environment: EMBER_KERNEL and EMBER_ROOTFS override the defaults.\n",
            EMBER_DEFAULT_VCPUS, EMBER_DEFAULT_MEMORY_MIB);
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

/* A file next to the ember binary (build/ember -> build/<rel>), if it exists. */
static char *beside_self(const char *rel)
{
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return NULL;
        self[n] = 0;
        char *dir = dirname(self);
        static const char *const subdirs[] = {"", "/../share/ember"};
        for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
                char path[PATH_MAX];
                if (snprintf(path, sizeof(path), "%s%s/%s", dir, subdirs[i], rel) >=
                    (int)sizeof(path))
                        continue;
                if (access(path, R_OK) == 0)
                        return strdup(path);
        }
        return NULL;
}

static struct ember_exit_handle g_stop = {.fd = -1};

static void on_signal(int sig)
{
        if (g_stop.fd >= 0)
                ember_exit_handle_trigger(g_stop);
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
                OPT_BALLOON,
                OPT_BALLOON_TARGET
        };
        static const struct option opts[] = {
            {"cpus", required_argument, NULL, 'c'},
            {"memory", required_argument, NULL, 'm'},
            {"kernel", required_argument, NULL, 'k'},
            {"initramfs", required_argument, NULL, OPT_INITRAMFS},
            {"cmdline", required_argument, NULL, OPT_CMDLINE},
            {"save-initramfs", required_argument, NULL, OPT_SAVE_INITRAMFS},
            {"rootfs", required_argument, NULL, 'r'},
            {"env", required_argument, NULL, 'e'},
            {"workdir", required_argument, NULL, 'w'},
            {"user", required_argument, NULL, 'u'},
            {"rlimit", required_argument, NULL, OPT_RLIMIT},
            {"hostname", required_argument, NULL, OPT_HOSTNAME},
            {"as-pid1", no_argument, NULL, OPT_PID1},
            {"console-output", required_argument, NULL, OPT_CONSOLE_OUTPUT},
            {"kernel-log", required_argument, NULL, OPT_KERNEL_LOG},
            {"allow-software-kvm", no_argument, NULL, OPT_ALLOW_SW},
            {"no-rng", no_argument, NULL, OPT_NO_RNG},
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
        int rc = 0, status = CLI_EXIT_USAGE;
        optind = 1;
        opterr = 0;
        int c;
        /* '+': stop at the first non-option, so CMD's own options are never ours. */
        while ((c = getopt_long(argc, argv, "+c:m:k:r:e:w:u:h", opts, NULL)) != -1) {
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
                        break;
                case 'e':
                        rc = ember_builder_exec_env_str(b, optarg);
                        break;
                case 'w':
                        rc = ember_builder_exec_workdir(b, optarg);
                        break;
                case 'u': {
                        uint64_t uid, gid;
                        char *colon = strchr(optarg, ':');
                        if (colon)
                                *colon = 0;
                        if (parse_u64(optarg, &uid) || uid > UINT32_MAX ||
                            (colon && (parse_u64(colon + 1, &gid) || gid > UINT32_MAX))) {
                                fprintf(stderr, "ember: --user expects UID[:GID] (numbers)\n");
                                goto out;
                        }
                        rc = ember_builder_exec_user(b, (uint32_t)uid,
                                                     colon ? (uint32_t)gid : (uint32_t)uid);
                        break;
                }
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
        if (balloon && ember_builder_balloon(b, 1, balloon_flags)) {
                status = fail_build(b);
                goto out;
        }

        char *def_kernel = NULL, *def_rootfs = NULL;
        if (!kernel)
                kernel = def_kernel = beside_self("guest/vmlinux");
        if (!kernel) {
                fprintf(stderr, "ember: no --kernel given and ember's default kernel was not found "
                                "(build it with `make guest`, or set EMBER_KERNEL)\n");
                status = CLI_EXIT_EMBER;
                goto out;
        }
        if (!rootfs)
                rootfs = def_rootfs = beside_self("rootfs");
        if (!rootfs) {
                fprintf(stderr, "ember: no --rootfs given and ember's default root was not found "
                                "(build it with `make guest`, or set EMBER_ROOTFS)\n");
                free(def_kernel);
                status = CLI_EXIT_EMBER;
                goto out;
        }
        rc = ember_builder_kernel(b, kernel);
        if (!rc)
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

        /* Ctrl-C, SIGTERM, SIGHUP stop the VM; a closed stdout must not kill ember. */
        signal(SIGPIPE, SIG_IGN);
        if (ember_vm_exit_handle(vm, &g_stop) == 0) {
                struct sigaction sa = {.sa_handler = on_signal};
                sigemptyset(&sa.sa_mask);
                sigaction(SIGINT, &sa, NULL);
                sigaction(SIGTERM, &sa, NULL);
                sigaction(SIGHUP, &sa, NULL);
        }
        rc = ember_vm_start(vm);
        if (rc < 0) {
                fprintf(stderr, "ember: %s\n", ember_vm_error(vm));
                ember_vm_free(vm);
                status = CLI_EXIT_EMBER;
                goto out;
        }
        status = ember_vm_wait(vm);
        if (status == EMBER_EXIT_GUEST_FAILED && ember_vm_error(vm)[0])
                fprintf(stderr, "ember: %s\n", ember_vm_error(vm));
        ember_vm_free(vm);
        if (status < 0)
                status = CLI_EXIT_EMBER;
out:
        ember_builder_free(b);
        return status;
}
