/* VM metrics: a reference-counted object shared by the VM and any metrics handles. */
#ifndef EMBER_CORE_METRICS_H
#define EMBER_CORE_METRICS_H

#include <pthread.h>
#include <stddef.h>

#include "core/dev_env.h"
#include "ember/ember.h"
#include "ember/kvm.h"

struct ember_metrics *metrics_new(void);
void metrics_retain(struct ember_metrics *m);
/* Also ember_metrics_release: frees on the last reference. NULL is ignored. */
void metrics_release(struct ember_metrics *m);
void metrics_count_exit(struct ember_metrics *m, enum ember_kvm_exit_kind kind);
void metrics_attach_memory(struct ember_metrics *m, void *base, size_t len);
void metrics_detach_memory(struct ember_metrics *m);
void metrics_started(struct ember_metrics *m);
void metrics_add_vcpu_thread(struct ember_metrics *m, unsigned index, pthread_t thread);
/* Called by a vCPU thread as its last act, to bank its CPU time. */
void metrics_vcpu_done(struct ember_metrics *m, unsigned index);
void metrics_stopped(struct ember_metrics *m);
/* Boot markers reported by the guest through the status port (first report wins). */
void metrics_mark_init(struct ember_metrics *m);
void metrics_mark_exec(struct ember_metrics *m);
/* Guest output that never reached its host fd (a dead fd, or the final flush gave up). */
void metrics_add_dropped(struct ember_metrics *m, uint64_t bytes);
/* The VM has ended with `code`: `reason` is the first stop's, `by_handle` whether an exit handle
 * asked for it. */
void metrics_ended(struct ember_metrics *m, enum vm_stop_reason reason, bool by_handle, int code);

/* What virtio-balloon reports (see struct ember_metrics_sample for each field). */
struct metrics_balloon {
        uint64_t guest_total, guest_free, guest_available, stats_mono_ns;
        uint64_t target, actual, reported, inflated, refused;
};
/* Replaces the balloon's figures; any thread. */
void metrics_set_balloon(struct ember_metrics *m, const struct metrics_balloon *b);

#endif
