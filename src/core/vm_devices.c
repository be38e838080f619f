/* The VM's devices: the hooks they get (struct dev_env), the legacy devices, and every device of
 * the table (core/devices.h) with the MMIO window and interrupt line it is given. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/devices.h"
#include "core/hostfd.h"
#include "core/metrics.h"
#include "core/vm_priv.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"

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

void vm_env_init(struct ember_vm *vm)
{
        vm->env = (struct dev_env){
            .mem = &vm->mem,
            .loop = &vm->loop,
            .pio = &vm->pio,
            .mmio = &vm->mmio,
            .metrics = vm->metrics,
            .hv = vm,
            .ioeventfd = hook_ioeventfd,
            .irqfd = hook_irqfd,
            .irq_line = hook_irq_line,
            .msi_routes = hook_msi_routes,
            .coalesce_writes = hook_coalesce_writes,
            .stop = vm_stop,
        };
}

/* The kernel log goes to a file of ours or to a duplicate of the caller's stderr ("-"): never
 * to the caller's own fd 2, which it may close or reuse once the VM is built. */
static int open_kernel_log(struct ember_vm *vm, const char *path, enum ember_error *code, char *err,
                           size_t errlen)
{
        int fd = !strcmp(path, "-") ? fcntl(2, F_DUPFD_CLOEXEC, 3)
                                    : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                *code = EMBER_ERR_CONSOLE;
                return ember_errf(err, errlen, errno, "kernel log '%s': %s", path, strerror(errno));
        }
        vm->kernel_log_fd = fd;
        return 0;
}

static int add_legacy_devices(struct ember_vm *vm, const struct ember_config *cfg,
                              enum ember_error *code, char *err, size_t errlen)
{
        int rc;
        if (cfg->kernel_log_path &&
            (rc = open_kernel_log(vm, cfg->kernel_log_path, code, err, errlen)))
                return rc;
        *code = EMBER_ERR_RESOURCE;
        if ((rc = ioapic_init(&vm->ioapic, &vm->env, X86_IOAPIC_ADDR, X86_IOAPIC_ID)))
                return ember_errf(err, errlen, rc, "cannot register the IOAPIC: %s", strerror(-rc));
        vm->ioapic_ready = true;
        if ((rc = serial16550_init(&vm->serial, &vm->env, X86_COM1_PORT, X86_COM1_IRQ,
                                   vm->kernel_log_fd)))
                return ember_errf(err, errlen, rc, "cannot register the serial port: %s",
                                  strerror(-rc));
        vm->serial_ready = true;
        if ((rc = i8042_init(&vm->kbd, &vm->env)) ||
            (rc = status_port_init(&vm->status, &vm->env, vm->metrics)))
                return ember_errf(err, errlen, rc, "cannot register legacy devices: %s",
                                  strerror(-rc));
        return 0;
}

/* One allocator for virtio devices: slot n gets the MMIO window at BASE + n * SLOT_SIZE and
 * interrupt line IRQ_FIRST + n, in table order. */
static uint64_t slot_base(unsigned slot)
{
        return X86_VIRTIO_MMIO_BASE + slot * X86_VIRTIO_MMIO_SLOT_SIZE;
}

static uint32_t slot_gsi(unsigned slot)
{
        return X86_VIRTIO_IRQ_FIRST + slot;
}

int vm_devices_plan(const struct ember_config *cfg, char *cmdline, size_t cmdline_len,
                    enum ember_error *code, char *err, size_t errlen)
{
        unsigned slot = 0;
        size_t used = 0;
        cmdline[0] = 0;
        for (const struct vm_device_type *const *t = vm_device_table; *t; t++) {
                for (unsigned i = (*t)->count(cfg); i > 0; i--, slot++) {
                        char entry[96];
                        if (slot >= VM_MAX_DEVICES) {
                                *code = EMBER_ERR_INVALID;
                                return ember_errf(err, errlen, ENOSPC,
                                                  "%s: at most %u virtio devices", (*t)->name,
                                                  VM_MAX_DEVICES);
                        }
                        if (virtio_mmio_cmdline(entry, sizeof(entry), slot_base(slot),
                                                slot_gsi(slot)) < 0 ||
                            used + 1 + strlen(entry) >= cmdline_len) {
                                *code = EMBER_ERR_CMDLINE;
                                return ember_errf(err, errlen, ENOSPC,
                                                  "too many devices for the command line");
                        }
                        used += (size_t)snprintf(cmdline + used, cmdline_len - used, "%s%s",
                                                 used ? " " : "", entry);
                }
        }
        return 0;
}

int vm_add_devices(struct ember_vm *vm, const struct ember_config *cfg, enum ember_error *code,
                   char *err, size_t errlen)
{
        int rc = add_legacy_devices(vm, cfg, code, err, errlen);
        if (rc)
                return rc;
        /* The same order as vm_devices_plan, so each device gets the slot it was given there. */
        for (const struct vm_device_type *const *t = vm_device_table; *t; t++) {
                unsigned n = (*t)->count(cfg);
                for (unsigned i = 0; i < n; i++) {
                        if (vm->ndevs == VM_MAX_DEVICES) {
                                *code = EMBER_ERR_INVALID;
                                return ember_errf(err, errlen, ENOSPC,
                                                  "%s: at most %u virtio devices", (*t)->name,
                                                  VM_MAX_DEVICES);
                        }
                        struct vm_device *d = &vm->dev[vm->ndevs];
                        d->type = *t;
                        rc = (*t)->create(&vm->env, cfg, i, &d->vd, code, err, errlen);
                        if (rc)
                                return rc;
                        unsigned slot = vm->ndevs++; /* torn down from here on */
                        rc = virtio_mmio_create(&vm->env, slot_base(slot), slot_gsi(slot), d->vd,
                                                &d->mmio, err, errlen);
                        if (rc) {
                                *code = EMBER_ERR_RESOURCE;
                                return rc;
                        }
                }
        }
        return 0;
}

void vm_devices_stop(struct ember_vm *vm, bool flush)
{
        if (flush) {
                /* One deadline and one byte cap for everything; a second exit-handle trigger
                 * (a second Ctrl-C) cancels it. */
                struct timespec deadline = hostfd_deadline_in(VM_FLUSH_TIMEOUT_MS);
                uint64_t dropped = 0;
                for (unsigned i = 0; i < vm->ndevs; i++)
                        dropped += virtio_dev_flush(vm->dev[i].vd, &deadline, VM_FLUSH_MAX_BYTES,
                                                    vm->exit_rx);
                if (vm->serial_ready)
                        dropped += serial16550_flush(&vm->serial, &deadline, vm->exit_rx);
                metrics_add_dropped(vm->metrics, dropped);
        }
        for (unsigned i = 0; i < vm->ndevs; i++)
                virtio_dev_quiesce(vm->dev[i].vd);
}

void vm_devices_destroy(struct ember_vm *vm)
{
        for (unsigned i = vm->ndevs; i-- > 0;) {
                struct vm_device *d = &vm->dev[i];
                virtio_mmio_destroy(d->mmio);
                virtio_dev_quiesce(d->vd);
                virtio_dev_destroy(d->vd);
                *d = (struct vm_device){0};
        }
        vm->ndevs = 0;
        if (vm->serial_ready)
                serial16550_destroy(&vm->serial);
        vm->serial_ready = false;
        if (vm->ioapic_ready)
                ioapic_destroy(&vm->ioapic);
        vm->ioapic_ready = false;
}
