/* The VM: KVM objects, guest memory, devices, one thread per vCPU and one event thread.
 *
 * Threads
 * - vCPU threads run KVM_RUN and dispatch port I/O and MMIO exits to the buses.
 * - The event thread services the event loop: virtio queue notifications (ioeventfds), host
 *   stdin, and the exit eventfd, which is written by the exit handle and by vm_stop().
 * Stopping: vm_stop() (any thread) records the first reason, writes the exit eventfd and kicks
 * every vCPU (immediate_exit + EMBER_KICK_SIGNAL). The event thread then flushes the console and
 * returns; ember_vm_wait() joins everything and tears down. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/boot.h"
#include "core/dev_env.h"
#include "core/evloop.h"
#include "core/gmem.h"
#include "core/metrics.h"
#include "core/tty.h"
#include "core/vm_internal.h"
#include "dev/ioapic.h"
#include "dev/legacy.h"
#include "ember/kvm.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "arch/x86_64/layout.h"

enum vm_state { VM_CREATED, VM_RUNNING, VM_WAITED };

struct vm_vcpu {
        struct ember_vm *vm;
        struct ember_kvm_vcpu *kvcpu;
        unsigned index;
        pthread_t thread;
        bool started;
};

struct ember_vm {
        enum vm_state state;
        unsigned nvcpus;
        struct ember_observer observer[EMBER_MAX_OBSERVERS];
        size_t nobservers;

        struct ember_kvm *kvm;
        struct ember_kvm_vm *kvm_vm;
        struct gmem mem;
        struct bus pio, mmio;
        struct evloop loop;
        struct dev_env env;

        struct ioapic ioapic;
        bool ioapic_ready;
        struct serial16550 serial;
        struct i8042 kbd;
        struct status_port status;
        struct virtio_console *console;

        struct vm_vcpu vcpu[X86_MAX_VCPUS];
        pthread_t event_thread;
        bool event_started;
        pthread_mutex_t thread_lock; /* vcpu[].started vs. kicks */
        atomic_bool coalescing;      /* a coalesced zone is registered (from a vCPU thread) */
        bool tearing_down;           /* closing the VM fd will drop every KVM binding at once */
        pthread_mutex_t ring_lock;   /* one reader of the coalesced ring at a time */

        int exit_efd;       /* stop requests: exit handles and vm_stop() */
        int kernel_log_fd;  /* owned, or -1 */
        int console_out_fd; /* owned (console_output file), or -1 */
        int stdio_fd[3];    /* owned duplicates of the caller's console fds, or -1 */

        atomic_int exit_code;
        atomic_int stopping; /* first stop wins */
        enum vm_stop_reason stop_reason;
        bool stopped_by_handle;
        pthread_mutex_t err_lock;
        char err[EMBER_ERR_LEN];

        struct ember_metrics *metrics;
        struct tty_relay *tty; /* ember_builder_console_tty, or NULL */
};

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void kick_handler(int sig)
{
        /* Only there so the signal interrupts KVM_RUN; immediate_exit does the rest. */
}

static void kick_install(void)
{
        struct sigaction sa = {.sa_handler = kick_handler};
        sigemptyset(&sa.sa_mask);
        sigaction(EMBER_KICK_SIGNAL, &sa, NULL);
}

__attribute__((format(printf, 2, 3))) static void vm_set_err(struct ember_vm *vm, const char *fmt,
                                                             ...)
{
        va_list ap;
        pthread_mutex_lock(&vm->err_lock);
        if (!vm->err[0]) {
                va_start(ap, fmt);
                vsnprintf(vm->err, sizeof(vm->err), fmt, ap);
                va_end(ap);
        }
        pthread_mutex_unlock(&vm->err_lock);
}

static void vm_kick_all(struct ember_vm *vm)
{
        pthread_mutex_lock(&vm->thread_lock);
        for (unsigned i = 0; i < vm->nvcpus; i++) {
                struct vm_vcpu *v = &vm->vcpu[i];
                if (!v->kvcpu)
                        continue;
                ember_kvm_vcpu_set_immediate_exit(v->kvcpu, true);
                if (v->started && !pthread_equal(v->thread, pthread_self()))
                        pthread_kill(v->thread, EMBER_KICK_SIGNAL);
        }
        pthread_mutex_unlock(&vm->thread_lock);
}

/* dev_env hook: first caller decides how the VM ended. */
static void vm_stop(void *hv, enum vm_stop_reason reason, int code, const char *why)
{
        struct ember_vm *vm = hv;
        int expected = 0;
        if (!atomic_compare_exchange_strong(&vm->stopping, &expected, 1))
                return;
        vm->stop_reason = reason;
        if (reason == VM_STOP_GUEST_EXIT)
                atomic_store(&vm->exit_code, code);
        else if (reason == VM_STOP_ERROR)
                vm_set_err(vm, "%s", why);
        else if (reason == VM_STOP_GUEST_RESET)
                vm_set_err(vm,
                           "guest stopped without reporting an exit status (%s); "
                           "see --kernel-log for the kernel's messages",
                           why);
        uint64_t one = 1;
        if (write(vm->exit_efd, &one, sizeof(one)) < 0) {
                /* The counter cannot overflow with our writes; nothing else can go wrong here. */
        }
        vm_kick_all(vm);
}

/* Once the VM is going away its ioeventfds and irqfds are not unbound one by one: closing the
 * VM fd drops them all, and each unbinding waits for an SRCU grace period in KVM (~7 ms apiece
 * on Linux 6.18). */
static int hook_ioeventfd(void *hv, int fd, uint64_t addr, uint32_t len, bool has_match,
                          uint64_t match, bool assign)
{
        struct ember_vm *vm = hv;
        if (!assign && vm->tearing_down)
                return 0;
        struct ember_kvm_ioevent ev = {
            .addr = addr, .len = len, .pio = false, .datamatch = has_match, .value = match};
        return assign ? ember_kvm_vm_register_ioevent(vm->kvm_vm, fd, &ev)
                      : ember_kvm_vm_unregister_ioevent(vm->kvm_vm, fd, &ev);
}

static int hook_irqfd(void *hv, int fd, uint32_t gsi, bool assign)
{
        struct ember_vm *vm = hv;
        if (!assign && vm->tearing_down)
                return 0;
        return assign ? ember_kvm_vm_register_irqfd(vm->kvm_vm, fd, gsi)
                      : ember_kvm_vm_unregister_irqfd(vm->kvm_vm, fd, gsi);
}

static int hook_irq_line(void *hv, uint32_t gsi, int level)
{
        struct ember_vm *vm = hv;
        return ember_kvm_vm_set_irq_line(vm->kvm_vm, gsi, level != 0);
}

static int hook_msi_routes(void *hv, const struct dev_msi_route *routes, unsigned n)
{
        struct ember_vm *vm = hv;
        struct kvm_irq_routing_entry e[X86_IOAPIC_PINS];
        if (n > X86_IOAPIC_PINS)
                return -E2BIG;
        for (unsigned i = 0; i < n; i++)
                e[i] = (struct kvm_irq_routing_entry){
                    .gsi = routes[i].gsi,
                    .type = KVM_IRQ_ROUTING_MSI,
                    .u.msi = {.address_lo = (uint32_t)routes[i].address,
                              .address_hi = (uint32_t)(routes[i].address >> 32),
                              .data = routes[i].data},
                };
        return ember_kvm_vm_set_gsi_routing(vm->kvm_vm, e, n);
}

static int hook_coalesce_writes(void *hv, uint64_t addr, uint32_t len)
{
        struct ember_vm *vm = hv;
        int rc = ember_kvm_vm_register_coalesced(vm->kvm_vm, false, addr, len);
        if (!rc)
                atomic_store(&vm->coalescing, true);
        return rc;
}

/* ------------------------------------------------------------------ vCPU threads */

/* Writes KVM queued in the coalesced ring came before the exit at hand (from this vCPU or
 * another): they go through the bus first, oldest first. */
static void vcpu_replay_coalesced(struct ember_vm *vm, struct vm_vcpu *v)
{
        struct kvm_coalesced_mmio_ring *ring = ember_kvm_vcpu_coalesced_ring(v->kvcpu);
        if (!ring || __atomic_load_n(&ring->first, __ATOMIC_RELAXED) ==
                         __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE))
                return;
        struct kvm_coalesced_mmio e;
        pthread_mutex_lock(&vm->ring_lock);
        while (ember_kvm_vcpu_coalesced_read(v->kvcpu, &e) == 1) {
                uint32_t len = e.len < sizeof(e.data) ? e.len : (uint32_t)sizeof(e.data);
                bus_dispatch(e.pio ? &vm->pio : &vm->mmio, e.phys_addr, e.data, len, true);
        }
        pthread_mutex_unlock(&vm->ring_lock);
}

static void vcpu_handle_io(struct ember_vm *vm, struct ember_kvm_exit *ex)
{
        bool is_write = ex->u.io.direction == KVM_EXIT_IO_OUT;
        uint32_t size = ex->u.io.size;
        for (uint32_t i = 0; i < ex->u.io.count; i++)
                bus_dispatch(&vm->pio, ex->u.io.port, ex->u.io.data + (size_t)i * size, size,
                             is_write);
}

static void *vcpu_thread(void *arg)
{
        struct vm_vcpu *v = arg;
        struct ember_vm *vm = v->vm;
        char name[16];
        snprintf(name, sizeof(name), "ember-vcpu%u", v->index);
        pthread_setname_np(pthread_self(), name);

        struct ember_kvm_exit ex;
        while (!atomic_load(&vm->stopping)) {
                int rc = ember_kvm_vcpu_run(v->kvcpu, &ex);
                if (rc == -EINTR || rc == -EAGAIN)
                        continue;
                if (rc < 0) {
                        char why[EMBER_ERR_LEN];
                        snprintf(why, sizeof(why), "vCPU %u: %s", v->index,
                                 ember_kvm_vcpu_last_error(v->kvcpu));
                        vm_stop(vm, VM_STOP_ERROR, 0, why);
                        break;
                }
                if (atomic_load_explicit(&vm->coalescing, memory_order_relaxed))
                        vcpu_replay_coalesced(vm, v);
                metrics_count_exit(vm->metrics, ex.kind);
                switch (ex.kind) {
                case EMBER_KVM_EXIT_IO:
                        vcpu_handle_io(vm, &ex);
                        break;
                case EMBER_KVM_EXIT_MMIO:
                        bus_dispatch(&vm->mmio, ex.u.mmio.gpa, ex.u.mmio.data, ex.u.mmio.len,
                                     ex.u.mmio.is_write);
                        break;
                case EMBER_KVM_EXIT_HLT:
                        /* With the in-kernel irqchip Linux never gets here; a tiny guest that
                         * halts with interrupts off has nothing left to do. */
                        vm_stop(vm, VM_STOP_GUEST_RESET, 0, "guest halted");
                        break;
                case EMBER_KVM_EXIT_SHUTDOWN:
                        vm_stop(vm, VM_STOP_GUEST_RESET, 0, "triple fault or shutdown");
                        break;
                case EMBER_KVM_EXIT_SYSTEM_EVENT:
                        vm_stop(vm, VM_STOP_GUEST_RESET, 0, "guest system event (reset/poweroff)");
                        break;
                case EMBER_KVM_EXIT_INTR:
                        break;
                case EMBER_KVM_EXIT_IOAPIC_EOI:
                        /* Only level-triggered routes ask for EOIs, and ember's IOAPIC makes
                         * edge routes only; nothing to do if KVM sends one anyway. */
                        break;
                default: {
                        char desc[200], why[EMBER_ERR_LEN];
                        ember_kvm_exit_describe(&ex, desc, sizeof(desc));
                        snprintf(why, sizeof(why), "vCPU %u: unexpected exit: %s", v->index, desc);
                        vm_stop(vm, VM_STOP_ERROR, 0, why);
                        break;
                }
                }
        }
        metrics_vcpu_done(vm->metrics, v->index);
        return NULL;
}

/* ------------------------------------------------------------------ event thread */

static void on_exit_event(void *opaque, uint32_t events)
{
        struct ember_vm *vm = opaque;
        uint64_t v;
        if (read(vm->exit_efd, &v, sizeof(v)) < 0) {
                /* EAGAIN: another wakeup already drained it. */
        }
        if (!atomic_load(&vm->stopping)) {
                vm->stopped_by_handle = true;
                vm_stop(vm, VM_STOP_GUEST_RESET, 0, "stopped by the exit handle");
        }
}

static void *event_thread(void *arg)
{
        struct ember_vm *vm = arg;
        pthread_setname_np(pthread_self(), "ember-events");
        while (!atomic_load(&vm->stopping)) {
                int rc = evloop_run_once(&vm->loop, -1);
                if (rc < 0) {
                        vm_stop(vm, VM_STOP_ERROR, 0, "event loop failed");
                        break;
                }
        }
        return NULL;
}

/* Threads ember starts must not take the application's signals, nor die of SIGPIPE. */
static int spawn(pthread_t *t, void *(*fn)(void *), void *arg, bool kickable)
{
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        sigset_t child = all;
        if (kickable)
                sigdelset(&child, EMBER_KICK_SIGNAL);
        pthread_sigmask(SIG_SETMASK, &child, NULL);
        int rc = pthread_create(t, NULL, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return -rc;
}

/* ------------------------------------------------------------------ creation */

static void vm_destroy_resources(struct ember_vm *vm)
{
        vm->tearing_down = true;
        if (vm->console)
                virtio_console_destroy(vm->console);
        vm->console = NULL;
        tty_relay_destroy(vm->tty); /* reads stdio_fd[0]: before it is closed */
        vm->tty = NULL;
        for (unsigned i = 0; i < vm->nvcpus; i++) {
                if (vm->vcpu[i].kvcpu)
                        ember_kvm_vcpu_close(vm->vcpu[i].kvcpu);
                vm->vcpu[i].kvcpu = NULL;
        }
        if (vm->kvm_vm)
                ember_kvm_vm_close(vm->kvm_vm);
        vm->kvm_vm = NULL;
        if (vm->kvm)
                ember_kvm_close(vm->kvm);
        vm->kvm = NULL;
        metrics_detach_memory(vm->metrics);
        gmem_destroy(&vm->mem);
        serial16550_destroy(&vm->serial);
        if (vm->ioapic_ready)
                ioapic_destroy(&vm->ioapic);
        vm->ioapic_ready = false;
        evloop_destroy(&vm->loop);
        if (vm->exit_efd >= 0)
                close(vm->exit_efd);
        vm->exit_efd = -1;
        if (vm->kernel_log_fd > 2)
                close(vm->kernel_log_fd);
        vm->kernel_log_fd = -1;
        if (vm->console_out_fd >= 0)
                close(vm->console_out_fd);
        vm->console_out_fd = -1;
        for (int i = 0; i < 3; i++) {
                if (vm->stdio_fd[i] >= 0)
                        close(vm->stdio_fd[i]);
                vm->stdio_fd[i] = -1;
        }
}

#define FAIL(code_, err_, ...)                                                                     \
        do {                                                                                       \
                *code = (code_);                                                                   \
                rc = ember_errf(err, errlen, (err_), __VA_ARGS__);                                 \
                goto fail;                                                                         \
        } while (0)

static int vm_open_kvm(struct ember_vm *vm, const struct ember_config *cfg, enum ember_error *code,
                       char *err, size_t errlen)
{
        int rc = ember_kvm_open(&vm->kvm);
        if (rc)
                FAIL(EMBER_ERR_KVM, rc, "cannot open /dev/kvm: %s%s", strerror(-rc),
                     rc == -ENOENT   ? " (is the kvm module loaded?)"
                     : rc == -EACCES ? " (is this user in the kvm group?)"
                                     : "");
        enum ember_kvm_host_virt hv = ember_kvm_host_virt();
        if (hv == EMBER_KVM_HOST_PVM && !cfg->allow_software_kvm)
                FAIL(EMBER_ERR_NO_GUEST_SUPPORT, ENOTSUP,
                     "this host's /dev/kvm is a %s without VT-x/AMD-V: it cannot run an unmodified "
                     "Linux guest",
                     ember_kvm_host_virt_name(hv));
        rc = ember_kvm_check_required_caps(vm->kvm);
        if (rc)
                FAIL(EMBER_ERR_KVM, rc, "%s", ember_kvm_last_error(vm->kvm));
        int kvm_max = ember_kvm_max_vcpus(vm->kvm);
        unsigned max = X86_MAX_VCPUS;
        if (kvm_max > 0 && (unsigned)kvm_max < max)
                max = (unsigned)kvm_max;
        if (cfg->vcpus > max)
                FAIL(EMBER_ERR_VCPUS, EINVAL, "%u vCPUs: at most %u here (KVM allows %d, ember %u)",
                     cfg->vcpus, max, kvm_max, X86_MAX_VCPUS);
        rc = ember_kvm_vm_create(vm->kvm, &vm->kvm_vm);
        if (rc)
                FAIL(EMBER_ERR_KVM, rc, "%s", ember_kvm_last_error(vm->kvm));
        /* Split irqchip: the LAPICs in the kernel, the IOAPIC in user space (dev/ioapic.c), no
         * PIC and no PIT (the guest's timer is the LAPIC's TSC-deadline mode). Creating and
         * destroying the kernel's PIC, IOAPIC and PIT costs milliseconds per VM on some hosts,
         * and it is guest-reachable kernel code that ember's guests do not need. */
        struct kvm_enable_cap split = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {X86_IOAPIC_PINS}};
        if ((rc = ember_kvm_vm_set_tss_address(vm->kvm_vm, X86_TSS_ADDR)) ||
            (rc = ember_kvm_vm_set_identity_map_address(vm->kvm_vm, X86_IDENTITY_MAP_ADDR)) ||
            (rc = ember_kvm_vm_enable_cap(vm->kvm_vm, &split)))
                FAIL(EMBER_ERR_KVM, rc, "%s", ember_kvm_vm_last_error(vm->kvm_vm));
        return 0;
fail:
        return rc;
}

/* Maps guest RAM (no KVM work yet: the kernel can be copied in while KVM is set up). */
static int vm_alloc_memory(struct ember_vm *vm, const struct ember_config *cfg,
                           enum ember_error *code, char *err, size_t errlen)
{
        uint64_t bytes = (uint64_t)cfg->memory_mib << 20;
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        int rc;
        if (pages > 0 && psz > 0 && bytes > (uint64_t)pages * (uint64_t)psz)
                FAIL(EMBER_ERR_MEMORY, ENOMEM,
                     "memory %zu MiB is more than this host has (%llu MiB)", cfg->memory_mib,
                     (unsigned long long)pages * (unsigned long long)psz >> 20);
        rc = gmem_init(&vm->mem, bytes, X86_MMIO_GAP_START);
        if (rc)
                FAIL(EMBER_ERR_RESOURCE, rc, "cannot map %zu MiB of guest memory: %s",
                     cfg->memory_mib, strerror(-rc));
        metrics_attach_memory(vm->metrics, vm->mem.map, vm->mem.map_size);
        return 0;
fail:
        return rc;
}

static int vm_register_memory(struct ember_vm *vm, enum ember_error *code, char *err, size_t errlen)
{
        for (unsigned i = 0; i < vm->mem.nregions; i++) {
                struct kvm_userspace_memory_region r = {
                    .slot = i,
                    .guest_phys_addr = vm->mem.region[i].gpa,
                    .memory_size = vm->mem.region[i].size,
                    .userspace_addr = (uintptr_t)vm->mem.region[i].host,
                };
                int rc = ember_kvm_vm_set_user_memory_region(vm->kvm_vm, &r);
                if (rc) {
                        *code = EMBER_ERR_KVM;
                        return ember_errf(err, errlen, rc, "%s",
                                          ember_kvm_vm_last_error(vm->kvm_vm));
                }
        }
        return 0;
}

/* A vmlinux is 10+ MB to copy into guest memory, the longest step of a build: a helper thread
 * copies it while the initramfs is packed and KVM is set up. A small kernel is copied inline,
 * where a thread would cost more than it saves. */
#define KERNEL_LOAD_THREAD_MIN (1u << 20)

struct kernel_loader {
        struct gmem *mem;
        const struct boot_image *img;
        pthread_t thread;
        bool threaded;
        int rc;
        enum ember_error code;
        char err[EMBER_ERR_LEN];
};

static void *kernel_loader_main(void *arg)
{
        struct kernel_loader *l = arg;
        l->rc = boot_load_kernel(l->mem, l->img, &l->code, l->err, sizeof(l->err));
        return NULL;
}

static void kernel_load_begin(struct kernel_loader *l, struct gmem *m, const struct boot_image *img)
{
        *l = (struct kernel_loader){.mem = m, .img = img};
        if (x86_kernel_load_bytes(&img->ki) >= KERNEL_LOAD_THREAD_MIN &&
            spawn(&l->thread, kernel_loader_main, l, false) == 0) {
                l->threaded = true;
                return;
        }
        kernel_loader_main(l);
}

/* Waits for the copy; safe to call again. NULL code and err: the result is not wanted. */
static int kernel_load_end(struct kernel_loader *l, enum ember_error *code, char *err,
                           size_t errlen)
{
        if (l->threaded)
                pthread_join(l->thread, NULL);
        l->threaded = false;
        if (l->rc && code && err) {
                *code = l->code;
                snprintf(err, errlen, "%s", l->err);
        }
        return l->rc;
}

static int open_out(const char *path, int *owned, enum ember_error *code, char *err, size_t errlen)
{
        int rc;
        if (!strcmp(path, "-"))
                return 2;
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                FAIL(EMBER_ERR_CONSOLE, errno, "cannot open '%s' for writing: %s", path,
                     strerror(errno));
        *owned = fd;
        return fd;
fail:
        return rc;
}

/* Terminal mode: the console reads the relay's records instead of stdin (core/tty.c). */
static int vm_tty_start(struct ember_vm *vm, int *in, char *err, size_t errlen)
{
        unsigned rows = 24, cols = 80;
        if (tty_size_of(vm->stdio_fd[0], &rows, &cols) != 0)
                tty_size_of(vm->stdio_fd[1], &rows, &cols);
        return tty_relay_create(&vm->tty, *in, rows, cols, in, err, errlen);
}

static int vm_add_devices(struct ember_vm *vm, const struct ember_config *cfg,
                          enum ember_error *code, char *err, size_t errlen)
{
        int rc, log_fd = -1;
        if (cfg->kernel_log_path) {
                log_fd = open_out(cfg->kernel_log_path, &vm->kernel_log_fd, code, err, errlen);
                if (log_fd < 0)
                        return log_fd;
        }
        if ((rc = ioapic_init(&vm->ioapic, &vm->env, X86_IOAPIC_ADDR, X86_IOAPIC_ID)))
                FAIL(EMBER_ERR_RESOURCE, rc, "cannot register the IOAPIC: %s", strerror(-rc));
        vm->ioapic_ready = true;
        if ((rc = serial16550_init(&vm->serial, &vm->env, X86_COM1_PORT, X86_COM1_IRQ, log_fd)) ||
            (rc = i8042_init(&vm->kbd, &vm->env)) ||
            (rc = status_port_init(&vm->status, &vm->env, vm->metrics)))
                FAIL(EMBER_ERR_RESOURCE, rc, "cannot register legacy devices: %s", strerror(-rc));

        int fds[3] = {cfg->in_fd, cfg->out_fd, cfg->err_fd};
        if (cfg->console_output) {
                fds[1] = fds[2] =
                    open_out(cfg->console_output, &vm->console_out_fd, code, err, errlen);
                if (fds[1] < 0)
                        return fds[1];
                fds[0] = -1;
        }
        /* Our own duplicates: the caller may close its fds as soon as the VM is built. */
        for (int i = 0; i < 3; i++) {
                if (fds[i] < 0)
                        continue;
                vm->stdio_fd[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (vm->stdio_fd[i] < 0)
                        FAIL(EMBER_ERR_CONSOLE, errno, "console: %s fd %d: %s",
                             i == 0   ? "stdin"
                             : i == 1 ? "stdout"
                                      : "stderr",
                             fds[i], strerror(errno));
        }
        int in = vm->stdio_fd[0], out = vm->stdio_fd[1], errfd = vm->stdio_fd[2];
        if (cfg->tty && (rc = vm_tty_start(vm, &in, err, errlen))) {
                *code = EMBER_ERR_CONSOLE;
                return rc;
        }
        rc = virtio_console_create(&vm->env, X86_VIRTIO_MMIO_BASE, X86_VIRTIO_IRQ_FIRST, in, out,
                                   errfd, &vm->console, err, errlen);
        if (rc) {
                *code = EMBER_ERR_CONSOLE;
                return rc;
        }
        return 0;
fail:
        return rc;
}

static int vm_create_vcpus(struct ember_vm *vm, struct boot_result *boot, enum ember_error *code,
                           char *err, size_t errlen)
{
        int rc = boot_read_cpuid(vm->kvm, boot, err, errlen);
        if (rc)
                FAIL(EMBER_ERR_KVM, rc, "%s", err);
        for (unsigned i = 0; i < vm->nvcpus; i++) {
                struct vm_vcpu *v = &vm->vcpu[i];
                v->vm = vm;
                v->index = i;
                rc = ember_kvm_vm_create_vcpu(vm->kvm_vm, i, &v->kvcpu);
                if (rc)
                        FAIL(EMBER_ERR_KVM, rc, "vCPU %u: %s", i,
                             ember_kvm_vm_last_error(vm->kvm_vm));
                rc = boot_setup_vcpu(v->kvcpu, i, vm->nvcpus, boot, err, errlen);
                if (rc)
                        FAIL(EMBER_ERR_KVM, rc, "%s", err);
        }
        return 0;
fail:
        return rc;
}

int ember_vm_create(const struct ember_config *cfg, struct ember_vm **out, enum ember_error *code,
                    char *err, size_t errlen);

int ember_vm_create(const struct ember_config *cfg, struct ember_vm **out, enum ember_error *code,
                    char *err, size_t errlen)
{
        int rc;
        struct boot_image *img = NULL;
        struct boot_result *boot = NULL;
        struct kernel_loader loader;
        bool loading = false;
        struct ember_vm *vm = calloc(1, sizeof(*vm));
        if (!vm) {
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, ENOMEM, "out of memory");
        }
        vm->exit_efd = vm->kernel_log_fd = vm->console_out_fd = -1;
        vm->stdio_fd[0] = vm->stdio_fd[1] = vm->stdio_fd[2] = -1;
        vm->loop.epfd = -1;
        atomic_init(&vm->exit_code, EMBER_EXIT_CODE_UNSET);
        pthread_mutex_init(&vm->err_lock, NULL);
        pthread_mutex_init(&vm->thread_lock, NULL);
        pthread_mutex_init(&vm->ring_lock, NULL);
        vm->nvcpus = cfg->vcpus;
        memcpy(vm->observer, cfg->observer, sizeof(vm->observer));
        vm->nobservers = cfg->nobservers;
        bus_init(&vm->pio);
        bus_init(&vm->mmio);
        vm->metrics = metrics_new();
        if (!vm->metrics)
                FAIL(EMBER_ERR_RESOURCE, ENOMEM, "out of memory");
        if ((rc = evloop_init(&vm->loop)))
                FAIL(EMBER_ERR_RESOURCE, rc, "epoll: %s", strerror(-rc));
        vm->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vm->exit_efd < 0)
                FAIL(EMBER_ERR_RESOURCE, errno, "eventfd: %s", strerror(errno));
        if ((rc = evloop_add(&vm->loop, vm->exit_efd, EPOLLIN, on_exit_event, vm)))
                FAIL(EMBER_ERR_RESOURCE, rc, "epoll: %s", strerror(-rc));

        /* User input first: a bad kernel, memory size or root is reported before any KVM work.
         * The kernel is copied into guest memory meanwhile (kernel_load_begin); boot_place
         * writes only outside the kernel's extent, so it need not wait for the copy. */
        char devices[128];
        virtio_mmio_cmdline(devices, sizeof(devices), X86_VIRTIO_MMIO_BASE, X86_VIRTIO_IRQ_FIRST);
        img = calloc(1, sizeof(*img));
        boot = malloc(sizeof(*boot));
        if (!img || !boot) {
                free(img);
                img = NULL; /* not initialized: nothing for boot_image_free */
                FAIL(EMBER_ERR_RESOURCE, ENOMEM, "out of memory");
        }
        if ((rc = boot_open_kernel(cfg, img, code, err, errlen)))
                goto fail;
        if ((rc = vm_alloc_memory(vm, cfg, code, err, errlen)))
                goto fail;
        kernel_load_begin(&loader, &vm->mem, img);
        loading = true;
        if ((rc = boot_prepare(cfg, devices, img, code, err, errlen)) ||
            (rc = boot_place(&vm->mem, img, cfg->vcpus, boot, code, err, errlen)))
                goto fail;
        if ((rc = vm_open_kvm(vm, cfg, code, err, errlen)))
                goto fail;
        if ((rc = vm_register_memory(vm, code, err, errlen)))
                goto fail;
        vm->env = (struct dev_env){
            .mem = &vm->mem,
            .loop = &vm->loop,
            .pio = &vm->pio,
            .mmio = &vm->mmio,
            .hv = vm,
            .ioeventfd = hook_ioeventfd,
            .irqfd = hook_irqfd,
            .irq_line = hook_irq_line,
            .msi_routes = hook_msi_routes,
            .coalesce_writes = hook_coalesce_writes,
            .stop = vm_stop,
        };
        if ((rc = vm_add_devices(vm, cfg, code, err, errlen)))
                goto fail;
        loading = false;
        if ((rc = kernel_load_end(&loader, code, err, errlen)) ||
            (rc = vm_create_vcpus(vm, boot, code, err, errlen)))
                goto fail;
        *out = vm;
        rc = 0;
        goto done;
fail:
        if (loading) {
                /* Guest memory goes away below: the copy must be over first. */
                kernel_load_end(&loader, NULL, NULL, 0);
        }
        vm_destroy_resources(vm);
        metrics_release(vm->metrics);
        pthread_mutex_destroy(&vm->err_lock);
        pthread_mutex_destroy(&vm->thread_lock);
        pthread_mutex_destroy(&vm->ring_lock);
        free(vm);
done:
        if (img)
                boot_image_free(img);
        free(img);
        free(boot);
        return rc;
}

/* ------------------------------------------------------------------ lifecycle */

EMBER_API int ember_vm_start(struct ember_vm *vm)
{
        if (!vm)
                return -EINVAL;
        if (vm->state != VM_CREATED) {
                vm_set_err(vm, "ember_vm_start: the VM was already started");
                return -EBUSY;
        }
        pthread_once(&kick_once, kick_install);
        vm->state = VM_RUNNING;
        metrics_started(vm->metrics);
        int rc = spawn(&vm->event_thread, event_thread, vm, false);
        if (rc) {
                vm_set_err(vm, "cannot start the event thread: %s", strerror(-rc));
                vm_stop(vm, VM_STOP_ERROR, 0, "cannot start the event thread");
                return rc;
        }
        vm->event_started = true;
        /* Under thread_lock so that a stop racing with the start kicks every thread created. */
        pthread_mutex_lock(&vm->thread_lock);
        for (unsigned i = 0; i < vm->nvcpus; i++) {
                rc = spawn(&vm->vcpu[i].thread, vcpu_thread, &vm->vcpu[i], true);
                if (rc)
                        break;
                vm->vcpu[i].started = true;
                metrics_add_vcpu_thread(vm->metrics, i, vm->vcpu[i].thread);
        }
        pthread_mutex_unlock(&vm->thread_lock);
        if (rc) {
                vm_set_err(vm, "cannot start a vCPU thread: %s", strerror(-rc));
                vm_stop(vm, VM_STOP_ERROR, 0, "cannot start a vCPU thread");
                return rc;
        }
        return 0;
}

static void vm_join(struct ember_vm *vm)
{
        if (vm->event_started)
                pthread_join(vm->event_thread, NULL);
        vm->event_started = false;
        for (unsigned i = 0; i < vm->nvcpus; i++) {
                struct vm_vcpu *v = &vm->vcpu[i];
                if (!v->started)
                        continue;
                /* A kick can land just before the thread enters KVM_RUN; immediate_exit covers
                 * that, but keep kicking until it is gone rather than trust every kernel to honour
                 * it. */
                for (;;) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 20 * 1000000L;
                        if (ts.tv_nsec >= 1000000000L) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000L;
                        }
                        if (pthread_timedjoin_np(v->thread, NULL, &ts) != ETIMEDOUT)
                                break;
                        ember_kvm_vcpu_set_immediate_exit(v->kvcpu, true);
                        pthread_kill(v->thread, EMBER_KICK_SIGNAL);
                }
                pthread_mutex_lock(&vm->thread_lock);
                v->started = false;
                pthread_mutex_unlock(&vm->thread_lock);
        }
}

EMBER_API int ember_vm_wait(struct ember_vm *vm)
{
        if (!vm)
                return -EINVAL;
        if (vm->state == VM_WAITED)
                return atomic_load(&vm->exit_code);
        if (vm->state != VM_RUNNING) {
                vm_set_err(vm, "ember_vm_wait: the VM was not started");
                return -EINVAL;
        }
        /* Threads end once vm_stop() ran; the exit eventfd wakes the event thread. */
        vm_join(vm);
        /* The guest may have queued output right before it reported its exit. */
        if (vm->console)
                virtio_console_flush(vm->console);
        int code = atomic_load(&vm->exit_code);
        if (code == EMBER_EXIT_CODE_UNSET) {
                code = vm->stopped_by_handle ? EMBER_EXIT_STOPPED : EMBER_EXIT_GUEST_FAILED;
                atomic_store(&vm->exit_code, code);
        }
        metrics_ended(vm->metrics, vm->stop_reason, vm->stopped_by_handle, code);
        metrics_stopped(vm->metrics);
        vm_destroy_resources(vm);
        vm->state = VM_WAITED;
        for (size_t i = 0; i < vm->nobservers; i++)
                vm->observer[i].fn(code, vm->observer[i].user);
        return code;
}

EMBER_API void ember_vm_free(struct ember_vm *vm)
{
        if (!vm)
                return;
        if (vm->state == VM_RUNNING) {
                vm_stop(vm, VM_STOP_GUEST_RESET, 0, "VM freed while running");
                vm_join(vm);
                metrics_stopped(vm->metrics);
        }
        vm_destroy_resources(vm);
        metrics_release(vm->metrics);
        pthread_mutex_destroy(&vm->err_lock);
        pthread_mutex_destroy(&vm->thread_lock);
        pthread_mutex_destroy(&vm->ring_lock);
        free(vm);
}

EMBER_API int ember_vm_run(struct ember_vm *vm)
{
        if (!vm)
                return -EINVAL;
        int rc = ember_vm_start(vm);
        if (rc < 0) {
                ember_vm_free(vm);
                return rc;
        }
        rc = ember_vm_wait(vm);
        ember_vm_free(vm);
        return rc;
}

EMBER_API int ember_vm_enter(struct ember_vm *vm)
{
        /* Negative only when the VM could not start; once it ran, the result is its code. */
        int rc = ember_vm_run(vm);
        if (rc < 0)
                return rc;
        _exit(rc);
}

EMBER_API const char *ember_vm_error(const struct ember_vm *vm)
{
        return vm ? vm->err : "no VM";
}

EMBER_API int ember_vm_console_resize(struct ember_vm *vm, unsigned rows, unsigned cols)
{
        return vm ? tty_relay_resize(vm->tty, rows, cols) : -EINVAL;
}

EMBER_API atomic_int *ember_vm_exit_code(struct ember_vm *vm)
{
        return vm ? &vm->exit_code : NULL;
}

EMBER_API int ember_vm_exit_handle(struct ember_vm *vm, struct ember_exit_handle *out)
{
        if (!vm || !out)
                return -EINVAL;
        if (vm->exit_efd < 0)
                return -EBADF;
        int fd = fcntl(vm->exit_efd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        out->fd = fd;
        return 0;
}

EMBER_API int ember_exit_handle_trigger(struct ember_exit_handle h)
{
        uint64_t one = 1;
        if (h.fd < 0)
                return -EBADF;
        /* EAGAIN means the counter is saturated: a stop is already pending. */
        if (write(h.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                return -errno;
        return 0;
}

EMBER_API void ember_exit_handle_release(struct ember_exit_handle *h)
{
        if (h && h->fd >= 0) {
                close(h->fd);
                h->fd = -1;
        }
}

EMBER_API struct ember_metrics *ember_vm_metrics(struct ember_vm *vm)
{
        if (!vm)
                return NULL;
        metrics_retain(vm->metrics);
        return vm->metrics;
}
