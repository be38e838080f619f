#include "core/metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"

struct ember_metrics {
        atomic_int refs;
        pthread_mutex_t lock; /* guards everything below that is not atomic */
        atomic_uint_fast64_t exits_total, exits_io, exits_mmio, exits_hlt, exits_other;
        void *mem;
        size_t mem_len;
        uint64_t memory_bytes;
        uint64_t start_ns, end_ns;
        int running;
        struct {
                clockid_t clock;
                int live;
        } vcpu[X86_MAX_VCPUS];
        uint64_t banked_vcpu_ns; /* CPU time of vCPU threads that have ended */
        atomic_uint_fast64_t init_ns, exec_ns;
        atomic_uint_fast64_t output_dropped;
        int end, exit_code;
        uint64_t resident_end;
        struct metrics_balloon balloon;
};

static uint64_t ts_ns(const struct timespec *ts)
{
        return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

static uint64_t mono_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts_ns(&ts);
}

struct ember_metrics *metrics_new(void)
{
        struct ember_metrics *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        atomic_init(&m->refs, 1);
        m->exit_code = EMBER_EXIT_CODE_UNSET;
        pthread_mutex_init(&m->lock, NULL);
        return m;
}

void metrics_retain(struct ember_metrics *m)
{
        atomic_fetch_add(&m->refs, 1);
}

void metrics_release(struct ember_metrics *m)
{
        if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
                pthread_mutex_destroy(&m->lock);
                free(m);
        }
}

EMBER_API void ember_metrics_release(struct ember_metrics *m)
{
        metrics_release(m);
}

void metrics_count_exit(struct ember_metrics *m, enum ember_kvm_exit_kind kind)
{
        atomic_fetch_add_explicit(&m->exits_total, 1, memory_order_relaxed);
        switch (kind) {
        case EMBER_KVM_EXIT_IO:
                atomic_fetch_add_explicit(&m->exits_io, 1, memory_order_relaxed);
                break;
        case EMBER_KVM_EXIT_MMIO:
                atomic_fetch_add_explicit(&m->exits_mmio, 1, memory_order_relaxed);
                break;
        case EMBER_KVM_EXIT_HLT:
                atomic_fetch_add_explicit(&m->exits_hlt, 1, memory_order_relaxed);
                break;
        default:
                atomic_fetch_add_explicit(&m->exits_other, 1, memory_order_relaxed);
                break;
        }
}

void metrics_attach_memory(struct ember_metrics *m, void *base, size_t len)
{
        pthread_mutex_lock(&m->lock);
        m->mem = base;
        m->mem_len = len;
        m->memory_bytes = len;
        pthread_mutex_unlock(&m->lock);
}

static uint64_t resident_bytes(void *base, size_t len);

void metrics_detach_memory(struct ember_metrics *m)
{
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        /* The last look at the guest's RAM, for the end-of-run figure. */
        if (m->mem && m->start_ns)
                m->resident_end = resident_bytes(m->mem, m->mem_len);
        m->mem = NULL;
        m->mem_len = 0;
        pthread_mutex_unlock(&m->lock);
}

void metrics_started(struct ember_metrics *m)
{
        pthread_mutex_lock(&m->lock);
        m->start_ns = mono_ns();
        m->running = 1;
        pthread_mutex_unlock(&m->lock);
}

void metrics_add_vcpu_thread(struct ember_metrics *m, unsigned index, pthread_t thread)
{
        pthread_mutex_lock(&m->lock);
        if (index < X86_MAX_VCPUS && pthread_getcpuclockid(thread, &m->vcpu[index].clock) == 0)
                m->vcpu[index].live = 1;
        pthread_mutex_unlock(&m->lock);
}

void metrics_vcpu_done(struct ember_metrics *m, unsigned index)
{
        struct timespec ts;
        pthread_mutex_lock(&m->lock);
        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
                m->banked_vcpu_ns += ts_ns(&ts);
        if (index < X86_MAX_VCPUS)
                m->vcpu[index].live = 0;
        pthread_mutex_unlock(&m->lock);
}

void metrics_stopped(struct ember_metrics *m)
{
        pthread_mutex_lock(&m->lock);
        if (m->running) {
                m->end_ns = mono_ns();
                m->running = 0;
        }
        pthread_mutex_unlock(&m->lock);
}

static void mark_once(atomic_uint_fast64_t *slot)
{
        uint_fast64_t zero = 0;
        atomic_compare_exchange_strong(slot, &zero, mono_ns());
}

void metrics_mark_init(struct ember_metrics *m)
{
        mark_once(&m->init_ns);
}

void metrics_mark_exec(struct ember_metrics *m)
{
        mark_once(&m->exec_ns);
}

void metrics_ended(struct ember_metrics *m, enum vm_stop_reason reason, bool by_handle, int code)
{
        int end = EMBER_VM_END_ERROR;
        if (reason == VM_STOP_GUEST_EXIT)
                end = EMBER_VM_END_EXITED;
        else if (reason == VM_STOP_GUEST_RESET)
                end = by_handle ? EMBER_VM_END_STOPPED : EMBER_VM_END_GUEST_FAILED;
        pthread_mutex_lock(&m->lock);
        m->end = end;
        m->exit_code = code;
        pthread_mutex_unlock(&m->lock);
}

EMBER_API const char *ember_vm_end_name(int end)
{
        static const char *const names[] = {
            [EMBER_VM_END_NONE] = "none",       [EMBER_VM_END_EXITED] = "exited",
            [EMBER_VM_END_STOPPED] = "stopped", [EMBER_VM_END_GUEST_FAILED] = "guest_failed",
            [EMBER_VM_END_ERROR] = "error",
        };
        if (end >= 0 && (size_t)end < sizeof(names) / sizeof(names[0]))
                return names[end];
        return "unknown";
}

void metrics_set_balloon(struct ember_metrics *m, const struct metrics_balloon *b)
{
        pthread_mutex_lock(&m->lock);
        m->balloon = *b;
        pthread_mutex_unlock(&m->lock);
}

/* Pages of guest RAM resident on the host, counted with mincore in bounded chunks. */
static uint64_t resident_bytes(void *base, size_t len)
{
        long psz = sysconf(_SC_PAGESIZE);
        unsigned char vec[4096];
        uint64_t total = 0;
        size_t chunk = sizeof(vec) * (size_t)psz;
        for (size_t off = 0; off < len; off += chunk) {
                size_t n = len - off < chunk ? len - off : chunk;
                if (mincore((char *)base + off, n, vec) != 0)
                        return total;
                size_t pages = (n + (size_t)psz - 1) / (size_t)psz;
                for (size_t i = 0; i < pages; i++)
                        total += vec[i] & 1;
        }
        return total * (uint64_t)psz;
}

EMBER_API int ember_metrics_sample(struct ember_metrics *m, struct ember_metrics_sample *out)
{
        if (!m || !out)
                return -EINVAL;
        memset(out, 0, sizeof(*out));
        out->exits_total = atomic_load(&m->exits_total);
        out->exits_io = atomic_load(&m->exits_io);
        out->exits_mmio = atomic_load(&m->exits_mmio);
        out->exits_hlt = atomic_load(&m->exits_hlt);
        out->exits_other = atomic_load(&m->exits_other);
        out->init_mono_ns = atomic_load(&m->init_ns);
        out->exec_mono_ns = atomic_load(&m->exec_ns);
        out->output_dropped_bytes = atomic_load(&m->output_dropped);
        pthread_mutex_lock(&m->lock);
        out->start_mono_ns = m->start_ns;
        out->running = m->running;
        out->memory_bytes = m->memory_bytes;
        if (m->start_ns)
                out->uptime_ns = (m->running ? mono_ns() : m->end_ns) - m->start_ns;
        out->vcpu_time_ns = m->banked_vcpu_ns;
        for (unsigned i = 0; i < X86_MAX_VCPUS; i++) {
                struct timespec ts;
                if (m->vcpu[i].live && clock_gettime(m->vcpu[i].clock, &ts) == 0)
                        out->vcpu_time_ns += ts_ns(&ts);
        }
        out->guest_total_bytes = m->balloon.guest_total;
        out->guest_free_bytes = m->balloon.guest_free;
        out->guest_available_bytes = m->balloon.guest_available;
        out->guest_stats_mono_ns = m->balloon.stats_mono_ns;
        out->balloon_target_bytes = m->balloon.target;
        out->balloon_actual_bytes = m->balloon.actual;
        out->balloon_reported_bytes = m->balloon.reported;
        out->balloon_inflated_bytes = m->balloon.inflated;
        out->balloon_refused = m->balloon.refused;
        if (m->mem)
                out->host_resident_bytes = resident_bytes(m->mem, m->mem_len);
        out->end = m->end;
        out->exit_code = m->exit_code;
        out->host_resident_end_bytes = m->resident_end;
        pthread_mutex_unlock(&m->lock);
        return 0;
}

void metrics_add_dropped(struct ember_metrics *m, uint64_t bytes)
{
        if (m)
                atomic_fetch_add(&m->output_dropped, bytes);
}
