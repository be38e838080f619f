/* ember-init: the guest's PID 1 (rdinit=/.ember/init).
 *
 * Mounts what programs expect, connects the workload's stdio to the named virtio-console ports,
 * applies /.ember/config, runs the command as its child, forwards signals, reaps zombies, and
 * reports the command's exit status on ember's status port (which ends the VM).
 *
 * With EMBER_CFG_FLAG_PID1 the command runs as PID 1 of a PID namespace of its own (with its own
 * /proc), still a child of init, which reports its status as usual. On a kernel without PID
 * namespaces the command replaces init instead, and its status cannot be reported: when PID 1
 * exits the kernel panics, and with panic=-1 the guest resets, which ember reports as a guest
 * failure.
 *
 * Not under ember (no magic on the status port), init works the same but reports the exit status
 * on the console and reboots (the kernel's reboot= option picks how; under QEMU, reboot=t with
 * -no-reboot ends the VM). */
#include "config.h"
#include "util.h"

#include "ember/guest_abi.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORTS_CLASS_DIR   "/sys/class/virtio-ports"
#define PORT_WAIT_MS      1000
#define VIRTIO_ID_CONSOLE 3

static struct {
        bool ember;       /* the status port answered with the magic */
        int console_fd;   /* kernel console (or /dev/kmsg) for init's own messages, or -1 */
        bool stderr_port; /* fd 2 is the workload's stderr port, not the console */
        uint32_t cfg_uid; /* for HOME: the user the workload runs as */
} init = {.console_fd = -1};

static void port_write(uint32_t cmd, uint32_t arg)
{
        if (init.ember)
                outl(EMBER_ABI_WORD(cmd, arg), EMBER_ABI_PORT);
}

static void write_all(int fd, const char *s, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, s, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return;
                s += w;
                n -= (size_t)w;
        }
}

/* "ember-init: ..." on the workload's stderr and on the console. */
static void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void msg(const char *fmt, ...)
{
        char buf[512];
        va_list ap;
        int n;

        n = snprintf(buf, sizeof(buf), "ember-init: ");
        va_start(ap, fmt);
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if ((size_t)n > sizeof(buf) - 2)
                n = (int)sizeof(buf) - 2;
        buf[n++] = '\n';
        if (fcntl(2, F_GETFD) >= 0)
                write_all(2, buf, (size_t)n);
        if (init.console_fd >= 0 && (init.stderr_port || fcntl(2, F_GETFD) < 0))
                write_all(init.console_fd, buf, (size_t)n);
}

/* Ends the VM with `status`. Never returns: PID 1 must not exit. */
static __attribute__((noreturn)) void finish(int status)
{
        /* Anything the workload left in the page cache of a disk must reach the host first. */
        sync();
        port_write(EMBER_ABI_CMD_EXIT, (uint32_t)status);
        if (init.console_fd >= 0) {
                char buf[64];
                int n = snprintf(buf, sizeof(buf), "ember-init: exit status %d\n", status);
                write_all(init.console_fd, buf, (size_t)n);
        }
        reboot(RB_AUTOBOOT);
        /* Not allowed to reboot (PID1 mode after dropping root): exiting panics the kernel,
         * and panic=-1 resets. */
        _exit(status);
}

static __attribute__((noreturn)) void setup_failed(void)
{
        finish(EMBER_EXIT_SETUP_FAILED);
}

/* The workload gets no access to the status port (ioperm bits survive fork and exec). */
static void drop_status_port(void)
{
        if (init.ember)
                ioperm(EMBER_ABI_PORT, EMBER_ABI_PORT_LEN, 0);
}

/* capget/capset's ABI (linux/capability.h, which musl does not ship). */
#define INIT_CAP_VERSION_3 0x20080522u
#define INIT_CAP_SYS_RAWIO 17u
struct init_cap_header {
        uint32_t version;
        int pid;
};
struct init_cap_data {
        uint32_t effective, permitted, inheritable;
};

/* A root workload could otherwise call ioperm() or iopl() and write the status port itself
 * (reporting any exit status, or garbage), or reach other raw I/O: CAP_SYS_RAWIO leaves its
 * bounding, ambient, effective, permitted and inheritable sets, so neither it nor anything it
 * execs can regain it. Returns 0, or EMBER_EXIT_SETUP_FAILED after a message. */
static int drop_raw_io_capability(void)
{
        struct init_cap_header h = {.version = INIT_CAP_VERSION_3, .pid = 0};
        struct init_cap_data d[2];
        uint32_t bit = 1u << INIT_CAP_SYS_RAWIO; /* in the first word: capabilities 0-31 */

        if (prctl(PR_CAPBSET_DROP, INIT_CAP_SYS_RAWIO, 0, 0, 0) != 0) {
                msg("dropping CAP_SYS_RAWIO from the bounding set: %s", strerror(errno));
                return EMBER_EXIT_SETUP_FAILED;
        }
        /* EINVAL: a kernel without ambient capabilities (before 4.3), so none to lower. */
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, INIT_CAP_SYS_RAWIO, 0, 0) != 0 &&
            errno != EINVAL) {
                msg("dropping CAP_SYS_RAWIO from the ambient set: %s", strerror(errno));
                return EMBER_EXIT_SETUP_FAILED;
        }
        if (syscall(SYS_capget, &h, d) != 0) {
                msg("capget: %s", strerror(errno));
                return EMBER_EXIT_SETUP_FAILED;
        }
        d[0].effective &= ~bit;
        d[0].permitted &= ~bit;
        d[0].inheritable &= ~bit;
        if (syscall(SYS_capset, &h, d) != 0) {
                msg("dropping CAP_SYS_RAWIO: capset: %s", strerror(errno));
                return EMBER_EXIT_SETUP_FAILED;
        }
        return 0;
}

static sigjmp_buf probe_jmp;

static void probe_fault(int sig)
{
        (void)sig;
        siglongjmp(probe_jmp, 1);
}

/* A hypervisor that does not let user mode touch I/O ports faults the probe: that is "not
 * ember" too, not a crash of PID 1. */
static void probe_status_port(void)
{
        struct sigaction sa = {.sa_handler = probe_fault}, old_segv;
        volatile uint32_t magic = 0;

        if (ioperm(EMBER_ABI_PORT, EMBER_ABI_PORT_LEN, 1) != 0)
                return;
        sigaction(SIGSEGV, &sa, &old_segv);
        if (sigsetjmp(probe_jmp, 1) == 0)
                magic = inl(EMBER_ABI_PORT);
        sigaction(SIGSEGV, &old_segv, NULL);
        if (magic != EMBER_ABI_PORT_MAGIC) {
                ioperm(EMBER_ABI_PORT, EMBER_ABI_PORT_LEN, 0);
                return;
        }
        init.ember = true;
        port_write(EMBER_ABI_CMD_INIT_REACHED, EMBER_ABI_VERSION);
}

static int do_mount(const char *src, const char *target, const char *type, unsigned long flags,
                    const char *data, mode_t mode)
{
        if (mkdir(target, mode) != 0 && errno != EEXIST) {
                msg("mkdir %s: %s", target, strerror(errno));
                return -1;
        }
        if (mount(src, target, type, flags, data) != 0) {
                msg("mount %s on %s: %s", type, target, strerror(errno));
                return -1;
        }
        return 0;
}

/* True if dir has no entries (or does not exist): mounting over it hides nothing. */
static bool dir_is_empty(const char *path)
{
        struct dirent *de;
        bool empty = true;
        DIR *d = opendir(path);

        if (!d)
                return true;
        while (empty && (de = readdir(d)) != NULL)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        empty = false;
        closedir(d);
        return empty;
}

static void ensure_symlink(const char *target, const char *path)
{
        if (symlink(target, path) != 0 && errno != EEXIST)
                msg("symlink %s: %s", path, strerror(errno));
}

static void mount_filesystems(void)
{
        const unsigned long nsd = MS_NOSUID | MS_NODEV;

        if (do_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755) != 0 ||
            do_mount("proc", "/proc", "proc", nsd | MS_NOEXEC, NULL, 0555) != 0 ||
            do_mount("sysfs", "/sys", "sysfs", nsd | MS_NOEXEC, NULL, 0555) != 0)
                setup_failed();

        /* The rest is what programs commonly expect; a failure is reported, not fatal. */
        if (do_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                     "newinstance,ptmxmode=0666,mode=0620,gid=5", 0755) == 0 &&
            access("/dev/ptmx", F_OK) != 0)
                ensure_symlink("pts/ptmx", "/dev/ptmx");
        do_mount("shm", "/dev/shm", "tmpfs", nsd, "mode=1777", 01777);
        /* /tmp and /run get a tmpfs unless the root already put files there. */
        if (dir_is_empty("/tmp"))
                do_mount("tmpfs", "/tmp", "tmpfs", nsd, "mode=1777", 01777);
        if (dir_is_empty("/run"))
                do_mount("tmpfs", "/run", "tmpfs", nsd, "mode=0755", 0755);
        ensure_symlink("/proc/self/fd", "/dev/fd");
        ensure_symlink("/proc/self/fd/0", "/dev/stdin");
        ensure_symlink("/proc/self/fd/1", "/dev/stdout");
        ensure_symlink("/proc/self/fd/2", "/dev/stderr");
}

static int open_high(const char *path, int flags)
{
        int fd = open(path, flags | O_CLOEXEC), high;

        if (fd < 0 || fd > 2)
                return fd;
        high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        return high;
}

/* Gives init a console for its own messages (kept above fd 2) and makes sure fds 0-2 are open,
 * so that nothing init opens later lands on them. Called before and after /dev is mounted. */
static void setup_console(void)
{
        int fd, i;

        if (init.console_fd < 0 && fcntl(1, F_GETFD) >= 0)
                init.console_fd = fcntl(1, F_DUPFD_CLOEXEC, 3);
        if (init.console_fd < 0)
                init.console_fd = open_high("/dev/console", O_WRONLY | O_NOCTTY);
        if (init.console_fd < 0)
                init.console_fd = open_high("/dev/kmsg", O_WRONLY);
        for (i = 0; i < 3; i++) {
                if (fcntl(i, F_GETFD) >= 0)
                        continue;
                fd = open("/dev/null", O_RDWR);
                if (fd >= 0 && fd != i) {
                        dup2(fd, i);
                        close(fd);
                }
        }
}

static bool have_virtio_console(void)
{
        struct dirent *de;
        char path[NAME_MAX + 16], val[32];
        bool found = false;
        DIR *d = opendir("/sys/bus/virtio/devices");
        ssize_t n;
        int fd;

        if (!d)
                return false;
        while (!found && (de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/device", de->d_name);
                fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                n = read(fd, val, sizeof(val) - 1);
                close(fd);
                if (n > 0) {
                        val[n] = '\0';
                        found = strtoul(val, NULL, 0) == VIRTIO_ID_CONSOLE;
                }
        }
        closedir(d);
        return found;
}

/* Opens /dev/<vport>, creating the node from sysfs if devtmpfs has not. */
static int open_port(const char *vport, int flags)
{
        char path[96], attr[128];
        unsigned maj, min;
        int fd, afd;
        ssize_t n;

        snprintf(path, sizeof(path), "/dev/%s", vport);
        fd = open_high(path, flags | O_NOCTTY);
        if (fd >= 0 || errno != ENOENT)
                return fd;
        snprintf(attr, sizeof(attr), PORTS_CLASS_DIR "/%s/dev", vport);
        afd = open(attr, O_RDONLY | O_CLOEXEC);
        if (afd < 0)
                return -1;
        n = read(afd, attr, sizeof(attr) - 1);
        close(afd);
        if (n <= 0)
                return -1;
        attr[n] = '\0';
        if (sscanf(attr, "%u:%u", &maj, &min) != 2 ||
            mknod(path, S_IFCHR | 0600, makedev(maj, min)))
                return -1;
        return open_high(path, flags | O_NOCTTY);
}

static void setup_stdio(void)
{
        static const char *const names[3] = {EMBER_ABI_PORT_STDIN, EMBER_ABI_PORT_STDOUT,
                                             EMBER_ABI_PORT_STDERR};
        char dev[3][64], problem[3][160];
        bool found[3] = {false, false, false}, have_console;
        struct timespec step = {0, 2 * 1000 * 1000};
        int i, fd[3], nfound = 0, waited;

        /* Ports appear as the host announces them, possibly after init started: wait, bounded. */
        have_console = have_virtio_console();
        for (waited = 0;; waited += 2) {
                for (i = 0; i < 3; i++) {
                        if (!found[i] && init_find_port(PORTS_CLASS_DIR, names[i], dev[i],
                                                        sizeof(dev[i])) == 0) {
                                found[i] = true;
                                nfound++;
                        }
                }
                if (nfound == 3 || !have_console || waited >= PORT_WAIT_MS)
                        break;
                nanosleep(&step, NULL);
        }

        for (i = 0; i < 3; i++) {
                int flags = (i == 0 ? O_RDONLY : O_WRONLY);

                fd[i] = -1;
                problem[i][0] = '\0';
                if (found[i]) {
                        fd[i] = open_port(dev[i], flags);
                        if (fd[i] < 0)
                                snprintf(problem[i], sizeof(problem[i]), "open port %s (%s): %s",
                                         names[i], dev[i], strerror(errno));
                } else if (have_console) {
                        snprintf(problem[i], sizeof(problem[i]), "no virtio-console port named %s",
                                 names[i]);
                }
                if (fd[i] < 0 && i > 0)
                        fd[i] = open_high("/dev/console", flags | O_NOCTTY);
                if (fd[i] < 0)
                        fd[i] = open_high("/dev/null", flags);
        }
        for (i = 0; i < 3; i++) {
                if (fd[i] < 0) {
                        msg("cannot open a file for fd %d: %s", i, strerror(errno));
                        setup_failed();
                }
                /* dup2 clears O_CLOEXEC on the copy. */
                dup2(fd[i], i);
                close(fd[i]);
        }
        init.stderr_port = found[2] && !problem[2][0];
        /* Reported once stderr is in place, so that the user sees them. */
        for (i = 0; i < 3; i++)
                if (problem[i][0])
                        msg("%s", problem[i]);
}

static void read_config(struct init_config *cfg)
{
        char err[256];
        uint8_t *buf;
        struct stat st;
        size_t got = 0;
        int fd, ret;

        fd = open(EMBER_ABI_CONFIG_PATH, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                msg("%s: %s", EMBER_ABI_CONFIG_PATH, strerror(errno));
                setup_failed();
        }
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
            (uint64_t)st.st_size > EMBER_ABI_CFG_MAX_LEN) {
                msg("%s: not a regular file of at most %u bytes", EMBER_ABI_CONFIG_PATH,
                    EMBER_ABI_CFG_MAX_LEN);
                setup_failed();
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                msg("out of memory reading %s", EMBER_ABI_CONFIG_PATH);
                setup_failed();
        }
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        msg("%s: short read", EMBER_ABI_CONFIG_PATH);
                        setup_failed();
                }
                got += (size_t)n;
        }
        close(fd);
        ret = init_config_parse(buf, got, cfg, err, sizeof(err));
        free(buf);
        if (ret) {
                msg("invalid %s: %s", EMBER_ABI_CONFIG_PATH,
                    ret == -ENOMEM ? "out of memory" : err);
                setup_failed();
        }
}

/* The workload's environment: exactly the configured one, plus PATH and HOME if missing. */
static char **build_env(const struct init_config *cfg)
{
        static char path_var[] = "PATH=" INIT_DEFAULT_PATH;
        static char home_var[6 + PATH_MAX];
        char home[PATH_MAX];
        uint32_t gid;
        char **envp;
        size_t n = 0, i;

        envp = calloc(cfg->envc + 3, sizeof(char *));
        if (!envp) {
                msg("out of memory");
                setup_failed();
        }
        for (i = 0; i < cfg->envc; i++)
                envp[n++] = cfg->envp[i];
        if (!init_env_get(cfg->envp, "PATH"))
                envp[n++] = path_var;
        if (!init_env_get(cfg->envp, "HOME")) {
                if (init_passwd_lookup("/etc/passwd", init.cfg_uid, home, sizeof(home), &gid) !=
                        0 ||
                    home[0] != '/')
                        strcpy(home, "/");
                snprintf(home_var, sizeof(home_var), "HOME=%s", home);
                envp[n++] = home_var;
        }
        envp[n] = NULL;
        return envp;
}

static void set_hostname(const struct init_config *cfg)
{
        if (cfg->hostname && sethostname(cfg->hostname, strlen(cfg->hostname)) != 0) {
                msg("sethostname %s: %s", cfg->hostname, strerror(errno));
                setup_failed();
        }
}

/* Programs expect a working 127.0.0.1; the kernel adds it when lo goes up. */
static void loopback_up(void)
{
        struct ifreq ifr;
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (s < 0)
                return;
        memset(&ifr, 0, sizeof(ifr));
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
                ifr.ifr_flags |= IFF_UP;
                if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
                        msg("bringing up lo: %s", strerror(errno));
        }
        close(s);
}

static const char *rlimit_name(uint32_t r)
{
        static const char *const names[INIT_CFG_RLIMIT_COUNT] = {
            "cpu",     "fsize", "data",  "stack",      "core",     "rss",  "nproc",  "nofile",
            "memlock", "as",    "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime"};
        return r < INIT_CFG_RLIMIT_COUNT ? names[r] : "?";
}

/* What the workload's process must do before exec: limits, credentials, directory.
 * Returns 0, or EMBER_EXIT_SETUP_FAILED after a message. */
static int prepare_process(const struct init_config *cfg)
{
        size_t i;

        for (i = 0; i < cfg->nrlimits; i++) {
                struct rlimit rl = {.rlim_cur = cfg->rlimits[i].soft,
                                    .rlim_max = cfg->rlimits[i].hard};
                if (setrlimit((int)cfg->rlimits[i].resource, &rl) != 0) {
                        msg("setrlimit %s: %s", rlimit_name(cfg->rlimits[i].resource),
                            strerror(errno));
                        return EMBER_EXIT_SETUP_FAILED;
                }
        }
        if (cfg->has_uid || cfg->has_gid) {
                char home[PATH_MAX];
                uint32_t gid = 0;

                if (cfg->has_gid)
                        gid = cfg->gid;
                else
                        init_passwd_lookup("/etc/passwd", cfg->uid, home, sizeof(home), &gid);
                if (setgroups(0, NULL) != 0 || setgid(gid) != 0) {
                        msg("setting group %u: %s", gid, strerror(errno));
                        return EMBER_EXIT_SETUP_FAILED;
                }
                if (cfg->has_uid && setuid(cfg->uid) != 0) {
                        msg("setting user %u: %s", cfg->uid, strerror(errno));
                        return EMBER_EXIT_SETUP_FAILED;
                }
        }
        /* After dropping privileges, so that the user's own access rights apply. */
        if (cfg->workdir && chdir(cfg->workdir) != 0) {
                msg("workdir %s: %s", cfg->workdir, strerror(errno));
                return EMBER_EXIT_SETUP_FAILED;
        }
        return 0;
}

/* Execs the workload; returns only on failure, with the status to report. */
static int exec_workload(const struct init_config *cfg, char **envp)
{
        bool interp_missing;
        int err;

        err = init_exec(cfg->exec_path, cfg->argv, envp, &interp_missing);
        if (err == ENOENT && interp_missing)
                msg("%s: cannot run: its program interpreter (dynamic loader) is missing",
                    cfg->exec_path);
        else if (err == ENOENT)
                msg("%s: not found", cfg->exec_path);
        else
                msg("%s: %s", cfg->exec_path, strerror(err));
        return init_status_from_exec_errno(err);
}

static void noop_handler(int sig)
{
        (void)sig;
}

/* Signals init forwards to the workload: all but the ones that cannot be caught and the
 * synchronous faults (which would be init's own bugs). */
static bool is_forwarded(int sig)
{
        switch (sig) {
        case SIGKILL:
        case SIGSTOP:
        case SIGCHLD:
        case SIGSEGV:
        case SIGBUS:
        case SIGILL:
        case SIGFPE:
        case SIGTRAP:
        case SIGSYS:
                return false;
        }
        return true;
}

/* The first process of a new PID namespace: /proc must show that namespace, so the workload
 * gets a mount namespace of its own with a fresh /proc (its other mounts are private copies).
 * Before privileges are dropped. Returns 0, or EMBER_EXIT_SETUP_FAILED after a message. */
static int mount_own_proc(void)
{
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
                msg("a /proc for the workload's PID namespace: %s", strerror(errno));
                return EMBER_EXIT_SETUP_FAILED;
        }
        return 0;
}

/* Runs the workload as init's child and reports its status. With `own_pid_ns` (the caller has
 * unshared CLONE_NEWPID) the child is PID 1 of that namespace. */
static __attribute__((noreturn)) void run_child(const struct init_config *cfg, char **envp,
                                                bool own_pid_ns)
{
        struct sigaction sa = {.sa_handler = noop_handler};
        sigset_t all, old, wait_set;
        int pipefd[2], status = -1, sig;
        pid_t child, pid;
        ssize_t n;

        /* Blocked signals stay pending for sigwaitinfo(); the handlers only make sure the kernel
         * does not discard signals to PID 1. */
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &old);
        sigemptyset(&wait_set);
        for (sig = 1; sig < NSIG; sig++) {
                if (sig == SIGCHLD || is_forwarded(sig)) {
                        if (sigaction(sig, &sa, NULL) == 0)
                                sigaddset(&wait_set, sig);
                }
        }
        if (pipe2(pipefd, O_CLOEXEC) != 0) {
                msg("pipe: %s", strerror(errno));
                setup_failed();
        }
        port_write(EMBER_ABI_CMD_EXEC, 0);
        child = fork();
        if (child < 0) {
                msg("fork: %s", strerror(errno));
                setup_failed();
        }
        if (child == 0) {
                struct sigaction dfl = {.sa_handler = SIG_DFL};

                for (sig = 1; sig < NSIG; sig++)
                        sigaction(sig, &dfl, NULL);
                sigprocmask(SIG_SETMASK, &old, NULL);
                close(pipefd[0]);
                drop_status_port();
                setsid();
                status = drop_raw_io_capability();
                if (status == 0 && own_pid_ns)
                        status = mount_own_proc();
                if (status == 0)
                        status = prepare_process(cfg);
                if (status == 0)
                        status = exec_workload(cfg, envp);
                n = write(pipefd[1], &status, sizeof(status));
                (void)n;
                _exit(status);
        }
        close(pipefd[1]);
        do
                n = read(pipefd[0], &status, sizeof(status));
        while (n < 0 && errno == EINTR);
        close(pipefd[0]);
        if (n != (ssize_t)sizeof(status))
                status = -1; /* exec succeeded: the workload's own status comes from wait */

        for (;;) {
                siginfo_t si;
                int ws;

                sig = sigwaitinfo(&wait_set, &si);
                if (sig < 0)
                        continue;
                if (sig != SIGCHLD) {
                        kill(child, sig);
                        continue;
                }
                while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
                        if (pid == child)
                                finish(status >= 0 ? status : init_status_from_wait(ws));
                }
        }
}

int main(int argc, char **argv)
{
        struct init_config cfg;
        char **envp;
        int status;

        (void)argc;
        (void)argv;
        if (getpid() != 1) {
                fprintf(stderr, "ember-init: must run as PID 1 (the guest's init)\n");
                return EMBER_EXIT_SETUP_FAILED;
        }
        probe_status_port();
        setup_console();
        mount_filesystems();
        /* /dev/null, /dev/console and /dev/kmsg exist only now. */
        setup_console();
        setup_stdio();
        read_config(&cfg);
        init.cfg_uid = cfg.has_uid ? cfg.uid : 0;
        set_hostname(&cfg);
        loopback_up();
        envp = build_env(&cfg);

        if (!(cfg.flags & EMBER_CFG_FLAG_PID1))
                run_child(&cfg, envp, false);
        if (unshare(CLONE_NEWPID) == 0)
                run_child(&cfg, envp, true);
        msg("no PID namespaces (%s): the command replaces init, and its exit status cannot be "
            "reported",
            strerror(errno));

        port_write(EMBER_ABI_CMD_EXEC, 0);
        /* The port stays open (below); CAP_SYS_RAWIO goes, as for a child workload. */
        status = drop_raw_io_capability();
        if (status == 0)
                status = prepare_process(&cfg);
        if (status == 0) {
                if (init.console_fd >= 0)
                        close(init.console_fd);
                init.console_fd = -1;
                /* The port stays open to the workload here: after dropping root, init could
                 * not get it back to report an exec failure. */
                status = exec_workload(&cfg, envp);
        }
        finish(status);
}
