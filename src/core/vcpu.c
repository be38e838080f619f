/* vCPU threads and the event thread (see core/vm_priv.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/thread.h"
#include "core/vm_priv.h"

void vm_kick_all(struct ember_vm *vm)
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

void *vcpu_thread(void *arg)
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

void vm_on_exit_event(void *opaque, uint32_t events)
{
        struct ember_vm *vm = opaque;
        char b[16];
        while (recv(vm->exit_rx, b, sizeof(b), MSG_DONTWAIT) >= 0)
                ;
        if (!atomic_load(&vm->stopping)) {
                vm->stopped_by_handle = true;
                vm_stop(vm, VM_STOP_GUEST_RESET, 0, "stopped by the exit handle");
        }
}

void *vm_event_thread(void *arg)
{
        struct ember_vm *vm = arg;
        /* Every callback does bounded work (virtio_pop_budget), so `stopping` is seen within
         * one turn of the loop however busy the guest keeps its queues. */
        while (!atomic_load(&vm->stopping)) {
                int rc = evloop_run_once(&vm->loop, -1);
                if (rc < 0) {
                        vm_stop(vm, VM_STOP_ERROR, 0, "event loop failed");
                        break;
                }
        }
        return NULL;
}

static void set_immediate_exit(void *kvcpu)
{
        ember_kvm_vcpu_set_immediate_exit(kvcpu, true);
}

void vm_join(struct ember_vm *vm)
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
                ember_thread_join_kicking(v->thread, set_immediate_exit, v->kvcpu);
                pthread_mutex_lock(&vm->thread_lock);
                v->started = false;
                pthread_mutex_unlock(&vm->thread_lock);
        }
}
