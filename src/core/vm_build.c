/* Creating a VM, top to bottom: user input that can be checked without KVM (kernel, memory
 * size), guest memory, KVM, the devices (each with its MMIO window, interrupt and command-line
 * entry), the boot image (initramfs, command line, boot structures), the vCPUs. And tearing it
 * down. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/thread.h"
#include "core/vm_priv.h"

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
            ember_thread_spawn(&l->thread, kernel_loader_main, l, false, "ember-kload") == 0) {
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

static int vm_create_vcpus(struct ember_vm *vm, struct boot_result *boot, enum ember_error *code,
                           char *err, size_t errlen)
{
        int rc = boot_read_cpuid(vm->kvm, boot, err, errlen);
        if (rc) {
                *code = EMBER_ERR_KVM;
                return rc;
        }
        for (unsigned i = 0; i < vm->nvcpus; i++) {
                struct vm_vcpu *v = &vm->vcpu[i];
                v->vm = vm;
                v->index = i;
                rc = ember_kvm_vm_create_vcpu(vm->kvm_vm, i, &v->kvcpu);
                if (rc)
                        FAIL(EMBER_ERR_KVM, rc, "vCPU %u: %s", i,
                             ember_kvm_vm_last_error(vm->kvm_vm));
                rc = boot_setup_vcpu(v->kvcpu, i, vm->nvcpus, boot, err, errlen);
                if (rc) {
                        *code = EMBER_ERR_KVM;
                        return rc;
                }
        }
        return 0;
fail:
        return rc;
}

void vm_destroy_resources(struct ember_vm *vm)
{
        vm->tearing_down = true;
        vm_devices_destroy(vm);
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
        evloop_destroy(&vm->loop);
        if (vm->exit_rx >= 0)
                close(vm->exit_rx);
        if (vm->exit_tx >= 0)
                close(vm->exit_tx);
        vm->exit_rx = vm->exit_tx = -1;
        if (vm->kernel_log_fd >= 0)
                close(vm->kernel_log_fd);
        vm->kernel_log_fd = -1;
}

void vm_free_object(struct ember_vm *vm)
{
        metrics_release(vm->metrics);
        pthread_mutex_destroy(&vm->err_lock);
        pthread_mutex_destroy(&vm->thread_lock);
        pthread_mutex_destroy(&vm->ring_lock);
        free(vm);
}

static int open_exit_socket(struct ember_vm *vm, enum ember_error *code, char *err, size_t errlen)
{
        int sv[2];
        struct stat st;
        *code = EMBER_ERR_RESOURCE;
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                return ember_errf(err, errlen, errno, "exit socket: %s", strerror(errno));
        vm->exit_rx = sv[0];
        vm->exit_tx = sv[1];
        if (fstat(vm->exit_tx, &st) < 0)
                return ember_errf(err, errlen, errno, "exit socket: %s", strerror(errno));
        vm->exit_id = (uint64_t)st.st_ino;
        int rc = evloop_add(&vm->loop, vm->exit_rx, EPOLLIN, vm_on_exit_event, vm);
        if (rc)
                return ember_errf(err, errlen, rc, "epoll: %s", strerror(-rc));
        return 0;
}

int ember_vm_create(const struct ember_config *cfg, struct ember_vm **out, enum ember_error *code,
                    char *err, size_t errlen)
{
        int rc;
        struct boot_image *img = NULL;
        struct boot_result *boot = NULL;
        struct kernel_loader loader;
        bool loading = false;
        char devices[512];
        struct ember_vm *vm = calloc(1, sizeof(*vm));
        if (!vm) {
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, ENOMEM, "out of memory");
        }
        vm->exit_rx = vm->exit_tx = vm->kernel_log_fd = -1;
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
        if ((rc = open_exit_socket(vm, code, err, errlen)))
                goto fail;

        /* 1. User input first: a bad kernel, memory size, root or command line is reported
         * before any KVM work.
         * The kernel is copied into guest memory meanwhile (kernel_load_begin); what follows
         * writes only outside the kernel's extent, so it need not wait for the copy. */
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
        if ((rc = boot_prepare_initramfs(cfg, img, code, err, errlen)) ||
            (rc = vm_devices_plan(cfg, devices, sizeof(devices), code, err, errlen)) ||
            (rc = boot_prepare_cmdline(cfg, devices, img, code, err, errlen)))
                goto fail;
        /* 2. KVM and its view of guest memory. */
        if ((rc = vm_open_kvm(vm, cfg, code, err, errlen)) ||
            (rc = vm_register_memory(vm, code, err, errlen)))
                goto fail;
        /* 3. Devices, each contributing its window, interrupt and command-line entry. */
        vm_env_init(vm);
        if ((rc = vm_add_devices(vm, cfg, code, err, errlen)))
                goto fail;
        /* 4. The boot structures. */
        if ((rc = boot_place(&vm->mem, img, cfg->vcpus, boot, code, err, errlen)))
                goto fail;
        loading = false;
        if ((rc = kernel_load_end(&loader, code, err, errlen)))
                goto fail;
        /* 5. vCPUs. */
        if ((rc = vm_create_vcpus(vm, boot, code, err, errlen)))
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
        vm_free_object(vm);
done:
        if (img)
                boot_image_free(img);
        free(img);
        free(boot);
        return rc;
}
