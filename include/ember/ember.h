/* ember: boot a minimal Linux microVM on KVM, run one command in it, return its exit code.
 *
 * Conventions
 * - Every function that can fail returns 0 (or a value >= 0) on success and -errno on failure.
 *   A readable detail of the last failure is available from the object it happened on
 *   (ember_builder_error(), ember_vm_error()).
 * - Nothing here exits or aborts the process, except ember_vm_enter() as documented.
 * - There is no global state: any number of builders and VMs can live in one process, used
 *   from different threads (one object is used by one thread at a time unless said otherwise).
 *   The one process-wide effect is the vCPU kick signal (EMBER_KICK_SIGNAL), whose handler
 *   ember installs once; the application must not use that signal for anything else.
 *
 * Lifecycle
 *   b = ember_builder_new(); ember_builder_machine(b, 2, 256); ... ember_builder_build(b, &vm);
 *   code = ember_vm_run(vm);   // boots, waits, runs the observers, frees vm: returns exit code
 * or ember_vm_start()/ember_vm_wait()/ember_vm_free() to run several VMs at once from one thread,
 * or ember_vm_enter(), which never returns on success and ends the process with the code.
 */
#ifndef EMBER_EMBER_H
#define EMBER_EMBER_H

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EMBER_API
#define EMBER_API __attribute__((visibility("default")))
#endif

/* Signal used to kick vCPU threads out of KVM_RUN. */
#define EMBER_KICK_SIGNAL (SIGRTMIN + 3)

/* Value of the exit code before the guest (or ember) has set one. */
#define EMBER_EXIT_CODE_UNSET INT_MAX
/* Exit code when the exit handle stopped the VM before the workload reported a status
 * (as for a process killed by SIGKILL). */
#define EMBER_EXIT_STOPPED 137
/* Exit code when the guest stopped without reporting a status (kernel panic, reset, triple
 * fault, init failure) or the VMM failed while running it. */
#define EMBER_EXIT_GUEST_FAILED 125

/* Default machine, as msb_krun's. */
#define EMBER_DEFAULT_VCPUS      1u
#define EMBER_DEFAULT_MEMORY_MIB 512u
/* Memory bounds the x86_64 layout supports (MiB). */
#define EMBER_MIN_MEMORY_MIB 32u
#define EMBER_MAX_MEMORY_MIB (1024u * 1024u)

/* Named errors, so callers can react without parsing the detail text. */
enum ember_error {
        EMBER_OK = 0,
        EMBER_ERR_VCPUS,            /* vCPU count 0 or above what KVM / the layout allows */
        EMBER_ERR_MEMORY,           /* memory too small or too large */
        EMBER_ERR_KERNEL,           /* kernel missing, unreadable or not a bzImage / PVH ELF */
        EMBER_ERR_INITRAMFS,        /* extra initramfs missing or unreadable */
        EMBER_ERR_CMDLINE,          /* kernel command line too long or invalid */
        EMBER_ERR_ROOTFS,           /* root directory missing, unreadable or not packable */
        EMBER_ERR_EXEC,             /* no command, or a path/arg that cannot be passed */
        EMBER_ERR_ENV,              /* environment entry that cannot be passed */
        EMBER_ERR_WORKDIR,          /* workdir not absolute or invalid */
        EMBER_ERR_RLIMIT,           /* unknown resource or soft > hard */
        EMBER_ERR_CONSOLE,          /* console output file or fds unusable */
        EMBER_ERR_KVM,              /* /dev/kvm missing, unusable, or an ioctl failed */
        EMBER_ERR_NO_GUEST_SUPPORT, /* this host's KVM cannot run Linux guests (software hypervisor)
                                     */
        EMBER_ERR_RESOURCE,         /* out of memory, threads or file descriptors */
        EMBER_ERR_STATE,            /* call not valid in the object's current state */
        EMBER_ERR_INVALID,          /* any other invalid argument */
        EMBER_ERR_USER,             /* user or group that cannot be passed */
        EMBER_ERR_DISK,             /* disk image missing, unreadable, locked, or not 512-aligned */
};

/* Stable name of an error ("EMBER_ERR_KERNEL"), never NULL. */
EMBER_API const char *ember_error_name(enum ember_error err);

/* ---------------------------------------------------------------- builder */

struct ember_builder;
struct ember_vm;

/* Allocates a builder with defaults: 1 vCPU, 512 MiB, caller's stdin/stdout/stderr, no
 * kernel, the default root (none: the initramfs holds only ember-init). NULL on ENOMEM.
 * A build without a kernel takes ember's default guest: the kernel in $EMBER_KERNEL, else the
 * one `make install` put in $PREFIX/lib/ember/guest/vmlinux, and, if no root was given either,
 * the root in $EMBER_ROOTFS, else $PREFIX/lib/ember/rootfs (ember's busybox root). */
EMBER_API struct ember_builder *ember_builder_new(void);
EMBER_API void ember_builder_free(struct ember_builder *b);

/* Last failure on this builder: its named error, and a detail naming the problem. */
EMBER_API enum ember_error ember_builder_error_code(const struct ember_builder *b);
EMBER_API const char *ember_builder_error(const struct ember_builder *b);

/* machine: vCPU count and memory size in MiB (checked in ember_builder_build). */
EMBER_API int ember_builder_machine(struct ember_builder *b, unsigned vcpus, size_t memory_mib);

/* By default ember_builder_build refuses a host whose KVM is a software hypervisor that cannot
 * run unmodified Linux guests (EMBER_ERR_NO_GUEST_SUPPORT). Allow it for custom guest kernels
 * that run there (tests, benchmarks with tiny PVH guests). */
EMBER_API int ember_builder_machine_allow_software_kvm(struct ember_builder *b, int allow);

/* kernel: bzImage or ELF vmlinux with a PVH note (format detected at build). */
EMBER_API int ember_builder_kernel(struct ember_builder *b, const char *path);
/* Appends to the kernel command line (after ember's defaults, so it can override them). */
EMBER_API int ember_builder_kernel_cmdline(struct ember_builder *b, const char *extra);
/* An extra initramfs (cpio, any format the kernel accepts) loaded before ember's own. */
EMBER_API int ember_builder_kernel_initramfs(struct ember_builder *b, const char *path);
/* Writes the initramfs ember generates (extra initramfs, root, ember-init and its exec
 * configuration) to `path` at build time, for debugging and for running the same guest under
 * another VMM. Created or truncated; a failure fails the build with EMBER_ERR_INITRAMFS. */
EMBER_API int ember_builder_kernel_save_initramfs(struct ember_builder *b, const char *path);
/* Kernel log (serial console, ttyS0) to this file; "-" means the caller's stderr. Off by default.
 */
EMBER_API int ember_builder_kernel_log(struct ember_builder *b, const char *path);

/* fs root: a host directory that becomes the guest's "/". In this version it is packed into
 * the guest's initramfs at build time (files are read then, not live). */
EMBER_API int ember_builder_fs_root(struct ember_builder *b, const char *dir);

/* Disks (virtio-blk): raw images (regular files or block devices), the guest's /dev/vda,
 * /dev/vdb, ... in the order given (a root disk, below, is always /dev/vda). At build each image
 * is opened (read-only, or read-write) and flock'ed (shared for read-only, exclusive for
 * read-write, so two VMs never write one image); a missing, unreadable, locked or empty image,
 * or one whose size is not a multiple of 512 bytes, fails the build with EMBER_ERR_DISK. On a
 * read-only disk the guest's writes fail and the file is never written. A write the guest
 * synced (fsync, sync, a FLUSH) is in the host file (fdatasync'ed); the guest's discards punch
 * holes in the file. At most EMBER_MAX_DISKS disks, root disk included. */
#define EMBER_MAX_DISKS 8
EMBER_API int ember_builder_disk(struct ember_builder *b, const char *path, int read_only);
/* The serial number the guest reads for the last disk added (/sys/block/vdX/serial; 1 to 20
 * bytes). Default: "ember-vdX". */
EMBER_API int ember_builder_disk_serial(struct ember_builder *b, const char *serial);
/* Root on a disk: the image becomes /dev/vda and ember-init mounts it as the workload's "/"
 * (with /dev, /proc, /sys, /tmp, /run as usual). `fstype` is the file system type ("ext4");
 * NULL detects it from the image (ext2/3/4 are recognized). The initramfs then holds only
 * ember-init: a root directory (ember_builder_fs_root) cannot be given as well. */
EMBER_API int ember_builder_root_disk(struct ember_builder *b, const char *path, int read_only,
                                      const char *fstype);

/* exec: the program (looked up in the guest's PATH when it has no '/') and its argv.
 * argv is NULL-terminated and includes argv[0]; NULL means { path, NULL }. */
EMBER_API int ember_builder_exec(struct ember_builder *b, const char *path,
                                 const char *const *argv);
/* Adds or replaces one environment variable of the workload. */
EMBER_API int ember_builder_exec_env(struct ember_builder *b, const char *key, const char *value);
/* Adds "KEY=VALUE". */
EMBER_API int ember_builder_exec_env_str(struct ember_builder *b, const char *kv);
/* Adds the variables of an env file in Docker's format: one KEY=VALUE per line (the value taken
 * literally, quotes and spaces included), blank lines and lines starting with '#' ignored,
 * leading white space ignored, and a bare KEY taking the caller's own value (left out when the
 * caller has none). A missing file, a name with white space or none, or a NUL byte fails with
 * EMBER_ERR_ENV and a detail naming the file and line. */
EMBER_API int ember_builder_exec_env_file(struct ember_builder *b, const char *path);
EMBER_API int ember_builder_exec_workdir(struct ember_builder *b, const char *dir);
/* resource: "nofile", "nproc", "core", "stack", ... or "RLIMIT_NOFILE"; RLIM_INFINITY allowed. */
EMBER_API int ember_builder_exec_rlimit(struct ember_builder *b, const char *resource,
                                        uint64_t soft, uint64_t hard);
EMBER_API int ember_builder_exec_user(struct ember_builder *b, uint32_t uid, uint32_t gid);
/* "USER[:GROUP]", each a decimal id or a name. Names are resolved in the guest, against the
 * root's /etc/passwd and /etc/group: a user name gives the uid, its primary group and HOME, and,
 * when no GROUP is given, its supplementary groups (the /etc/group entries that list it). An
 * unknown name ends the run with exit code 125 (EMBER_EXIT_SETUP_FAILED) and a message on
 * stderr naming it. A number alone is also the group, as ember_builder_exec_user(uid, uid).
 * Replaces an earlier user setting. */
EMBER_API int ember_builder_exec_user_spec(struct ember_builder *b, const char *spec);
/* The guest's hostname, 1 to 64 characters. Default: EMBER_DEFAULT_HOSTNAME. */
#define EMBER_DEFAULT_HOSTNAME "ember"
EMBER_API int ember_builder_exec_hostname(struct ember_builder *b, const char *hostname);
/* Run the workload as PID 1 of a PID namespace of its own, with its own /proc: it reaps its
 * orphans and gets PID 1's signal rules, and ember-init (outside) still reports its status. On a
 * guest kernel without PID namespaces it replaces the guest's init, and its status cannot be
 * reported (the run ends with EMBER_EXIT_GUEST_FAILED). */
EMBER_API int ember_builder_exec_as_pid1(struct ember_builder *b, int enable);

/* console: the workload's stdin/stdout/stderr. Defaults: the caller's fds 0, 1, 2. ember
 * duplicates them when the VM is built and closes its duplicates when the VM is torn down, so
 * the caller may close its own at any time after ember_builder_build (a pipe's reader sees EOF
 * once both are closed). -1 for in_fd gives the workload an empty stdin (EOF at once); -1 for
 * out_fd / err_fd discards that stream. */
EMBER_API int ember_builder_console_fds(struct ember_builder *b, int in_fd, int out_fd, int err_fd);
/* Send the workload's stdout and stderr to a file (created or truncated); stdin is empty. */
EMBER_API int ember_builder_console_output(struct ember_builder *b, const char *path);
/* Terminal mode, as `docker run -t`: the workload gets a pseudo-terminal in the guest as its
 * controlling terminal and stdin/stdout/stderr (stderr merged into stdout, as on a terminal).
 * in_fd's bytes reach the pty as keyboard input (^C, ^Z become signals in the guest); the
 * terminal's size at the start is in_fd's, else out_fd's (24x80 if neither is a terminal), and
 * ember_vm_console_resize changes it. Putting the caller's own terminal in raw mode is the
 * caller's part. in_fd -1 gives a pty without input. Off by default. */
EMBER_API int ember_builder_console_tty(struct ember_builder *b, int enable);

/* ---------------------------------------------------------------- devices
 * Besides the console (stdin, stdout, stderr), the VM gets these virtio devices, each on its own
 * virtio-mmio window, in this order (the guest sees them in it): rng, then the others below. */

/* virtio-rng: the guest's /dev/hwrng (and its entropy pool at boot) is fed from the host's
 * getrandom(), at most 64 KiB per request. On by default; 0 removes the device. */
EMBER_API int ember_builder_rng(struct ember_builder *b, int enable);
/* virtio-balloon: lets the host take guest RAM back (off by default). With it the guest
 * reports its free memory, which ember gives back to the host within seconds (so memory the
 * guest has used and freed stops counting against the host); sends memory statistics every
 * second (struct ember_metrics_sample: guest_*_bytes); and gives up the RAM asked with
 * ember_vm_balloon_set_target. Flags, or-ed:
 *   EMBER_BALLOON_DEFLATE_ON_OOM  the guest may take balloon pages back when it runs out of
 *                                 memory (its MemTotal then stays; MemAvailable shrinks)
 *   EMBER_BALLOON_NO_REPORTING    no free page reporting
 *   EMBER_BALLOON_NO_STATS        no statistics queue
 * Unknown flags are refused (EMBER_ERR_INVALID). */
#define EMBER_BALLOON_DEFLATE_ON_OOM 0x1u
#define EMBER_BALLOON_NO_REPORTING   0x2u
#define EMBER_BALLOON_NO_STATS       0x4u
EMBER_API int ember_builder_balloon(struct ember_builder *b, int enable, unsigned flags);

/* Observer run when the VM has ended, after its exit code is set and its resources are
 * released, in registration order, on the thread that waits for the VM. */
typedef void (*ember_exit_observer)(int exit_code, void *user);
EMBER_API int ember_builder_on_exit(struct ember_builder *b, ember_exit_observer fn, void *user);

/* Validates everything, loads the kernel, packs the root and creates the VM (KVM objects,
 * memory, devices; no vCPU runs yet). On failure returns -errno and sets the builder's error.
 * The builder stays usable (and must still be freed). */
EMBER_API int ember_builder_build(struct ember_builder *b, struct ember_vm **out);

/* ---------------------------------------------------------------- vm */

/* Copyable handle that stops the VM. It owns a duplicate of the VM's exit socket, so it stays
 * valid after the VM is gone (triggering then does nothing). It also knows which socket that
 * is: once released, a copy whose fd number was reused by another file refuses to touch it
 * (-EBADF) instead of writing to that file. */
struct ember_exit_handle {
        int fd;
        uint64_t id; /* the socket's inode */
};
/* Creates a handle; release it (once, whichever copy) with ember_exit_handle_release. */
EMBER_API int ember_vm_exit_handle(struct ember_vm *vm, struct ember_exit_handle *out);
/* Stops the VM: async-signal-safe, callable from any thread, idempotent. After the VM has
 * stopped, while its final flush of guest output runs (at most EMBER_FLUSH_TIMEOUT_MS), a
 * trigger cancels the flush: a second Ctrl-C ends a run stuck behind a reader that never
 * reads. Returns 0, or -EBADF for a released handle. */
EMBER_API int ember_exit_handle_trigger(struct ember_exit_handle h);
EMBER_API void ember_exit_handle_release(struct ember_exit_handle *h);

/* Terminal mode: the workload's terminal is now rows x cols (SIGWINCH in the guest).
 * Async-signal-safe (call it from a SIGWINCH handler). -ENOTTY without terminal mode. */
EMBER_API int ember_vm_console_resize(struct ember_vm *vm, unsigned rows, unsigned cols);

/* The exit code, shared: EMBER_EXIT_CODE_UNSET until set; set before observers run.
 * The pointer stays valid until the VM is freed (by ember_vm_free or ember_vm_run). */
EMBER_API atomic_int *ember_vm_exit_code(struct ember_vm *vm);

/* Metrics: a reference-counted handle, safe to sample from any thread while the VM runs
 * and after it ended (then it reports the final values). */
struct ember_metrics;
struct ember_metrics_sample {
        uint64_t uptime_ns;    /* since ember_vm_start; frozen when the VM ends */
        uint64_t vcpu_time_ns; /* CPU time of all vCPU threads */
        uint64_t exits_total;  /* KVM exits handled in user space */
        uint64_t exits_io;     /* port I/O */
        uint64_t exits_mmio;
        uint64_t exits_hlt;
        uint64_t exits_other;
        uint64_t memory_bytes;        /* guest RAM size */
        uint64_t host_resident_bytes; /* guest RAM resident on the host (mincore); 0 once ended */
        int running;                  /* 1 while vCPUs run */
        /* Boot markers, CLOCK_MONOTONIC ns (0 until seen): ember_vm_start, ember-init reached
         * (the guest's first report), and the workload about to be exec'd. */
        uint64_t start_mono_ns;
        uint64_t init_mono_ns;
        uint64_t exec_mono_ns;
        /* Guest output (stdout, stderr, kernel log) that never reached its host fd: the fd
         * failed, or the final flush ran out of time (EMBER_FLUSH_TIMEOUT_MS), hit its byte cap
         * (EMBER_FLUSH_MAX_BYTES) or was cancelled by a second exit-handle trigger. */
        uint64_t output_dropped_bytes;
        /* Once the VM has ended (ember_vm_wait): how (enum ember_vm_end), its exit code
         * (EMBER_EXIT_CODE_UNSET before), and the guest RAM that was resident on the host just
         * before it was released (0 before). */
        int end;
        int exit_code;
        uint64_t host_resident_end_bytes;
        /* virtio-balloon (all 0 without it). The guest's own figures from its last memory
         * statistics (the device asks for them every second): as MemTotal, MemFree and
         * MemAvailable in its /proc/meminfo, and when they arrived (CLOCK_MONOTONIC ns). */
        uint64_t guest_total_bytes;
        uint64_t guest_free_bytes;
        uint64_t guest_available_bytes;
        uint64_t guest_stats_mono_ns;
        uint64_t balloon_target_bytes; /* balloon size asked of the guest */
        uint64_t balloon_actual_bytes; /* balloon size the guest says it holds */
        /* Guest RAM given back to the host since boot: free memory the guest reported, and
         * pages it put in the balloon. */
        uint64_t balloon_reported_bytes;
        uint64_t balloon_inflated_bytes;
        uint64_t balloon_refused; /* pages or ranges the guest named outside RAM (ignored) */
};

/* How a VM ended. */
enum ember_vm_end {
        EMBER_VM_END_NONE = 0,     /* not ended (yet) */
        EMBER_VM_END_EXITED,       /* the workload's status was reported: the exit code is its */
        EMBER_VM_END_STOPPED,      /* an exit handle stopped it (EMBER_EXIT_STOPPED) */
        EMBER_VM_END_GUEST_FAILED, /* the guest stopped without a status: panic, reset, fault */
        EMBER_VM_END_ERROR,        /* ember failed while running it (ember_vm_error says why) */
};
/* "none", "exited", "stopped", "guest_failed", "error"; "unknown" for other values. */
EMBER_API const char *ember_vm_end_name(int end);
EMBER_API struct ember_metrics *ember_vm_metrics(struct ember_vm *vm);
EMBER_API int ember_metrics_sample(struct ember_metrics *m, struct ember_metrics_sample *out);
EMBER_API void ember_metrics_release(struct ember_metrics *m);

/* Starts the vCPUs and the VM's event thread; returns at once. */
EMBER_API int ember_vm_start(struct ember_vm *vm);
/* Waits for the VM to end, delivers the guest output still queued (within
 * EMBER_FLUSH_TIMEOUT_MS and EMBER_FLUSH_MAX_BYTES; an exit-handle trigger cancels it; what is
 * left is dropped and counted in output_dropped_bytes), tears it down (threads joined, fds
 * closed, memory unmapped), runs the observers, and returns the exit code (>= 0). */
#define EMBER_FLUSH_TIMEOUT_MS 5000u
#define EMBER_FLUSH_MAX_BYTES  (64ull << 20)
EMBER_API int ember_vm_wait(struct ember_vm *vm);
/* Frees a VM in any state (stopping it first if it runs, without running observers). */
EMBER_API void ember_vm_free(struct ember_vm *vm);
/* start + wait + free: returns the exit code (>= 0). -errno if the VM could not start (or was
 * started already): then the VM is NOT freed, so that ember_vm_error() can say why; free it
 * with ember_vm_free(). */
EMBER_API int ember_vm_run(struct ember_vm *vm);
/* Like ember_vm_run, but on success never returns: after the observers it calls _exit(code).
 * Returns -errno only for failures before the guest starts (the VM is then not freed, as for
 * ember_vm_run). */
EMBER_API int ember_vm_enter(struct ember_vm *vm);
/* The balloon's target size: asks the guest to give `mib` MiB of its RAM back to the host (0:
 * all of it returned to the guest). Callable once the VM is built, before it starts (the guest
 * inflates as soon as its driver is up) and while it runs, from any thread, as long as no
 * ember_vm_wait / ember_vm_free has begun. The guest works towards it at its own pace
 * (balloon_actual_bytes in the metrics). -ENODEV without ember_builder_balloon, -EINVAL for
 * more than the guest's RAM, -ESRCH once the VM has stopped; ember_vm_error() says which. */
EMBER_API int ember_vm_balloon_set_target(struct ember_vm *vm, uint64_t mib);

/* Detail of the last failure on this VM ("" if none). */
EMBER_API const char *ember_vm_error(const struct ember_vm *vm);

/* Library version string. */
EMBER_API const char *ember_version(void);

#ifdef __cplusplus
}
#endif
#endif
