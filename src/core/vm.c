/* The VM's public API: lifecycle, stop, exit handles, metrics (see core/vm_priv.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/thread.h"
#include "core/vm_priv.h"
#include "virtio/console.h"
#include "virtio/balloon.h"

void vm_set_err(struct ember_vm *vm, const char *fmt, ...)
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

/* dev_env hook: first caller decides how the VM ended. */
void vm_stop(void *hv, enum vm_stop_reason reason, int code, const char *why)
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
        /* Wakes the event thread; a full socket buffer means a wakeup is pending anyway. */
        if (send(vm->exit_tx, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        }
        vm_kick_all(vm);
}

EMBER_API int ember_vm_start(struct ember_vm *vm)
{
        if (!vm)
                return -EINVAL;
        if (vm->state != VM_CREATED) {
                vm_set_err(vm, "ember_vm_start: the VM was already started");
                return -EBUSY;
        }
        vm->state = VM_RUNNING;
        metrics_started(vm->metrics);
        int rc = ember_thread_spawn(&vm->event_thread, vm_event_thread, vm, false, "ember-events");
        if (rc) {
                vm_set_err(vm, "cannot start the event thread: %s", strerror(-rc));
                vm_stop(vm, VM_STOP_ERROR, 0, "cannot start the event thread");
                return rc;
        }
        vm->event_started = true;
        /* Under thread_lock so that a stop racing with the start kicks every thread created. */
        pthread_mutex_lock(&vm->thread_lock);
        for (unsigned i = 0; i < vm->nvcpus; i++) {
                rc = ember_thread_spawn(&vm->vcpu[i].thread, vcpu_thread, &vm->vcpu[i], true, NULL);
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

/* Requests that arrived before the threads ended were this stop's own: what arrives after is
 * a new one, which cancels the flush. */
static void drain_exit_socket(struct ember_vm *vm)
{
        char b[16];
        while (recv(vm->exit_rx, b, sizeof(b), MSG_DONTWAIT) >= 0)
                ;
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
        /* Threads end once vm_stop() ran; the exit socket wakes the event thread. */
        vm_join(vm);
        drain_exit_socket(vm);
        /* The guest may have queued output right before it reported its exit. */
        vm_devices_stop(vm, true);
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
                vm_devices_stop(vm, false);
                metrics_stopped(vm->metrics);
        }
        vm_destroy_resources(vm);
        vm_free_object(vm);
}

EMBER_API int ember_vm_run(struct ember_vm *vm)
{
        if (!vm)
                return -EINVAL;
        int rc = ember_vm_start(vm);
        if (rc < 0)
                return rc; /* not freed: the caller reads ember_vm_error(), then frees it */
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
        if (!vm)
                return -EINVAL;
        /* No lock: the device array is fixed while the VM lives (async-signal-safe). */
        for (unsigned i = 0; i < vm->ndevs; i++)
                if (vm->dev[i].type == &virtio_console_type)
                        return virtio_console_resize(vm->dev[i].vd, rows, cols);
        return -ENODEV;
}

EMBER_API atomic_int *ember_vm_exit_code(struct ember_vm *vm)
{
        return vm ? &vm->exit_code : NULL;
}

EMBER_API int ember_vm_exit_handle(struct ember_vm *vm, struct ember_exit_handle *out)
{
        if (!vm || !out)
                return -EINVAL;
        if (vm->exit_tx < 0)
                return -EBADF;
        int fd = fcntl(vm->exit_tx, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        out->fd = fd;
        out->id = vm->exit_id;
        return 0;
}

EMBER_API int ember_exit_handle_trigger(struct ember_exit_handle h)
{
        struct stat st;
        if (h.fd < 0)
                return -EBADF;
        /* Released, or the number now belongs to another file: never write to that. */
        if (fstat(h.fd, &st) < 0 || !S_ISSOCK(st.st_mode) || (uint64_t)st.st_ino != h.id)
                return -EBADF;
        if (send(h.fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
                /* EAGAIN: a stop is pending already. ECONNREFUSED: the VM is gone. */
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNREFUSED &&
                    errno != ENOTCONN && errno != EPIPE)
                        return -errno;
        }
        return 0;
}

EMBER_API void ember_exit_handle_release(struct ember_exit_handle *h)
{
        if (h && h->fd >= 0) {
                struct stat st;
                /* Close only what is still ours. */
                if (fstat(h->fd, &st) == 0 && S_ISSOCK(st.st_mode) && (uint64_t)st.st_ino == h->id)
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

/* The balloon is one of the table's devices: the first that answers is it. */
EMBER_API int ember_vm_balloon_set_target(struct ember_vm *vm, uint64_t mib)
{
        if (!vm)
                return -EINVAL;
        char err[EMBER_ERR_LEN] = "the VM has no balloon device (see ember_builder_balloon)";
        int rc = -ENODEV;
        for (unsigned i = 0; i < vm->ndevs && rc == -ENODEV; i++)
                rc = virtio_balloon_set_target(vm->dev[i].vd, mib, err, sizeof(err));
        if (rc == -ENODEV && vm->state == VM_WAITED)
                rc = ember_errf(err, sizeof(err), ESRCH, "balloon target: the VM has ended");
        if (rc)
                vm_set_err(vm, "%s", err);
        return rc;
}
