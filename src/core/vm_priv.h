/* The VM object, shared by the files that make it up:
 *   vm.c          public API: lifecycle (start, wait, free, run, enter), stop, exit handles
 *   vm_build.c    creation, top to bottom: memory and KVM, devices, boot image, vCPUs; teardown
 *   vm_devices.c  the devices: the hooks they get (dev_env), legacy devices, the device table
 *                 with its MMIO-window / interrupt allocator, and their stop path
 *   vcpu.c        vCPU threads and the event thread
 *
 * Threads
 * - vCPU threads run KVM_RUN and dispatch port I/O and MMIO exits to the buses.
 * - The event thread services the event loop: virtio queue notifications (ioeventfds), host
 *   stdin, output buffer room, timers, and the exit socket, which the exit handles and
 *   vm_stop() write. Every callback does bounded work, so a stop request is seen within one
 *   turn of the loop whatever the guest does.
 * - Devices may have threads of their own (output writers, disk workers).
 * Stopping: vm_stop() (any thread) records the first reason, writes the exit socket and kicks
 * every vCPU (immediate_exit + EMBER_KICK_SIGNAL). ember_vm_wait() joins the vCPUs and the
 * event thread, flushes the devices (deadline, byte cap, cancelled by another exit-handle
 * trigger), quiesces them (their threads end) and tears everything down. */
#ifndef EMBER_CORE_VM_PRIV_H
#define EMBER_CORE_VM_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "arch/x86_64/layout.h"
#include "core/boot.h"
#include "core/bus.h"
#include "core/dev_env.h"
#include "core/evloop.h"
#include "core/gmem.h"
#include "core/vm_internal.h"
#include "dev/ioapic.h"
#include "dev/legacy.h"
#include "ember/kvm.h"

/* What the final flush may take at most. */
#define VM_FLUSH_TIMEOUT_MS EMBER_FLUSH_TIMEOUT_MS
#define VM_FLUSH_MAX_BYTES  EMBER_FLUSH_MAX_BYTES

#define VM_MAX_DEVICES X86_VIRTIO_MAX_DEVICES

enum vm_state { VM_CREATED, VM_RUNNING, VM_WAITED };

struct vm_vcpu {
        struct ember_vm *vm;
        struct ember_kvm_vcpu *kvcpu;
        unsigned index;
        pthread_t thread;
        bool started;
};

struct virtio_dev;
struct virtio_mmio;

struct vm_device {
        const struct vm_device_type *type;
        struct virtio_dev *vd;
        struct virtio_mmio *mmio;
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
        bool serial_ready;
        struct i8042 kbd;
        struct status_port status;
        struct vm_device dev[VM_MAX_DEVICES];
        unsigned ndevs;

        struct vm_vcpu vcpu[X86_MAX_VCPUS];
        pthread_t event_thread;
        bool event_started;
        pthread_mutex_t thread_lock; /* vcpu[].started vs. kicks */
        atomic_bool coalescing;      /* a coalesced zone is registered (from a vCPU thread) */
        bool tearing_down;           /* closing the VM fd will drop every KVM binding at once */
        pthread_mutex_t ring_lock;   /* one reader of the coalesced ring at a time */

        /* Stop requests: a datagram socket pair. Exit handles hold duplicates of exit_tx and
         * know its inode, so a handle whose fd number was reused by something else is refused
         * (an eventfd cannot be told apart from another one). */
        int exit_rx, exit_tx;
        uint64_t exit_id;
        int kernel_log_fd; /* owned duplicate, or -1 */

        atomic_int exit_code;
        atomic_int stopping; /* first stop wins */
        enum vm_stop_reason stop_reason;
        bool stopped_by_handle;
        pthread_mutex_t err_lock;
        char err[EMBER_ERR_LEN];

        struct ember_metrics *metrics;
};

/* vm.c */
void vm_stop(void *hv, enum vm_stop_reason reason, int code, const char *why);
void vm_set_err(struct ember_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* vcpu.c */
void *vcpu_thread(void *arg);
void *vm_event_thread(void *arg);
void vm_on_exit_event(void *opaque, uint32_t events);
void vm_kick_all(struct ember_vm *vm);
void vm_join(struct ember_vm *vm);

/* vm_devices.c */
void vm_env_init(struct ember_vm *vm);
/* The virtio devices this configuration gets, each with its MMIO window and interrupt (one
 * allocator): their kernel command-line entries, written to `cmdline`. Needs no KVM. */
int vm_devices_plan(const struct ember_config *cfg, char *cmdline, size_t cmdline_len,
                    enum ember_error *code, char *err, size_t errlen);
/* Legacy devices, then every device of the table, in the slots vm_devices_plan gave them. */
int vm_add_devices(struct ember_vm *vm, const struct ember_config *cfg, enum ember_error *code,
                   char *err, size_t errlen);
/* The stop path: flush every device (bounded), then quiesce them all. */
void vm_devices_stop(struct ember_vm *vm, bool flush);
void vm_devices_destroy(struct ember_vm *vm);

/* vm_build.c */
int ember_vm_create(const struct ember_config *cfg, struct ember_vm **out, enum ember_error *code,
                    char *err, size_t errlen);
void vm_destroy_resources(struct ember_vm *vm);
void vm_free_object(struct ember_vm *vm);

#endif
