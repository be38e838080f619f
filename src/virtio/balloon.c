/* virtio-balloon (device id 5, virtio 1.2 section 5.5): lets the host take guest RAM back.
 *
 * - inflate / deflate: arrays of le32 page frame numbers (4 KiB pages) the guest puts into or
 *   takes out of the balloon. Inflated pages are given back to the host at once (gmem_discard);
 *   deflated ones need nothing: the guest's next touch faults in a zeroed page. That also holds
 *   when the guest reuses balloon pages on OOM (DEFLATE_ON_OOM) or before the deflate is acked
 *   (MUST_TELL_HOST is not offered): a page is discarded before its inflate is acked, so never
 *   after the guest may use it again.
 * - stats: the driver posts one buffer of (le16 tag, le64 value) entries; the device keeps it,
 *   and every second returns it, which makes the driver refill and post it again. The figures
 *   go to the VM's metrics.
 * - reporting (free page reporting): chains of writable buffers that are free guest memory
 *   (2 or 4 MiB blocks); each is given back to the host and the chain returned. Not when the
 *   guest poisons free pages with a non-zero pattern (PAGE_POISON): those must keep it.
 * FREE_PAGE_HINT (migration hints) is not offered.
 *
 * Linux numbers the queues it uses consecutively (inflate, deflate, [stats], [free_page],
 * [reporting]), so the roles of queue indices follow from the negotiated features.
 *
 * The guest is hostile: every page and range goes through gmem_discard, which refuses anything
 * not wholly inside one RAM region (counted in the metrics, otherwise ignored), and the work
 * per notification is bounded by BALLOON_BUDGET_BYTES of RAM: a larger chain is worked through
 * over several turns of the event loop. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/devices.h"
#include "core/err.h"
#include "core/metrics.h"
#include "virtio/balloon.h"
#include "virtio/virtio.h"

#define VIRTIO_ID_BALLOON 5u
#define BALLOON_NAME      "virtio-balloon"

#define BALLOON_F_MUST_TELL_HOST 0
#define BALLOON_F_STATS_VQ       1
#define BALLOON_F_DEFLATE_ON_OOM 2
#define BALLOON_F_FREE_PAGE_HINT 3
#define BALLOON_F_PAGE_POISON    4
#define BALLOON_F_REPORTING      5

#define BALLOON_S_MEMFREE 4
#define BALLOON_S_MEMTOT  5
#define BALLOON_S_AVAIL   6

#define BALLOON_PAGE       4096u
#define BALLOON_NUM_QUEUES 4u
/* Linux's free page reporting posts chains of up to 32 buffers (PAGE_REPORTING_CAPACITY) and
 * fails its probe on a smaller queue. */
#define BALLOON_QUEUE_SIZE 64u
#define BALLOON_CONFIG     16u
/* RAM given back per notification, and per madvise call; each call is charged as this much
 * more, so that a guest naming scattered or repeated pages gets at most ~1000 calls a turn. */
#define BALLOON_BUDGET_BYTES (64ull << 20)
#define BALLOON_PIECE        (4ull << 20)
#define BALLOON_CALL_COST    (64ull << 10)
#define BALLOON_PFN_BATCH    256u
#define BALLOON_MAX_STATS    32u /* entries read from one stats buffer (Linux sends 10) */

enum balloon_role {
        ROLE_NONE,
        ROLE_INFLATE,
        ROLE_DEFLATE,
        ROLE_STATS,
        ROLE_FREE_PAGE,
        ROLE_REPORT
};

/* A chain being worked through, possibly over several notifications. */
struct balloon_work {
        bool busy;
        uint64_t pos; /* bytes of its data part done */
        struct virtq_chain chain;
};

struct virtio_balloon {
        struct virtio_dev *vd;
        struct virtio_dev_ops ops; /* offered features depend on the configuration */
        struct ember_metrics *metrics;
        uint64_t ram_mib;
        int timer_fd;
        struct evloop *loop; /* the timer is in it while non-NULL */
        bool quiesced;

        uint64_t features;
        enum balloon_role role[BALLOON_NUM_QUEUES];
        unsigned stats_q;
        struct balloon_work inflate, report;
        struct virtq_chain scratch; /* deflate and stats chains, handled at once */
        bool stats_held;
        uint16_t stats_head;

        uint32_t num_pages, actual, poison_val; /* config space */
        struct metrics_balloon m;
};

static void publish(struct virtio_balloon *b)
{
        if (b->metrics)
                metrics_set_balloon(b->metrics, &b->m);
}

static uint64_t mono_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool has(uint64_t features, unsigned bit)
{
        return features & (1ull << bit);
}

/* ---- config space: le32 num_pages, actual, free_page_hint_cmd_id, poison_val */

static void config_bytes(const struct virtio_balloon *b, uint8_t out[BALLOON_CONFIG])
{
        const uint32_t v[4] = {b->num_pages, b->actual, 0, b->poison_val};
        for (unsigned i = 0; i < BALLOON_CONFIG; i++)
                out[i] = (uint8_t)(v[i / 4] >> (8 * (i % 4)));
}

static void balloon_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
        uint8_t c[BALLOON_CONFIG];
        config_bytes(dev, c);
        memcpy(data, c + offset, len);
}

/* The driver may write `actual` and `poison_val`; the rest is the device's. */
static void balloon_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
        struct virtio_balloon *b = dev;
        uint8_t c[BALLOON_CONFIG];
        config_bytes(b, c);
        for (uint32_t i = 0; i < len; i++) {
                uint32_t at = offset + i;
                if ((at >= 4 && at < 8) || at >= 12)
                        c[at] = data[i];
        }
        b->actual =
            (uint32_t)c[4] | (uint32_t)c[5] << 8 | (uint32_t)c[6] << 16 | (uint32_t)c[7] << 24;
        b->poison_val =
            (uint32_t)c[12] | (uint32_t)c[13] << 8 | (uint32_t)c[14] << 16 | (uint32_t)c[15] << 24;
        b->m.actual = (uint64_t)b->actual * BALLOON_PAGE;
        publish(b);
}

/* ---- queues */

/* Queue roles in Linux's order, present ones numbered consecutively. */
static unsigned balloon_roles(uint64_t features, enum balloon_role role[BALLOON_NUM_QUEUES + 1])
{
        unsigned n = 0;
        role[n++] = ROLE_INFLATE;
        role[n++] = ROLE_DEFLATE;
        if (has(features, BALLOON_F_STATS_VQ))
                role[n++] = ROLE_STATS;
        if (has(features, BALLOON_F_FREE_PAGE_HINT))
                role[n++] = ROLE_FREE_PAGE;
        if (has(features, BALLOON_F_REPORTING))
                role[n++] = ROLE_REPORT;
        return n;
}

static unsigned balloon_queue_count(void *dev, uint64_t features)
{
        enum balloon_role role[BALLOON_NUM_QUEUES + 1];
        return balloon_roles(features, role);
}

/* Gives back [gpa, gpa+len) and counts it; false (and counted as refused) if it is not wholly
 * inside one RAM region. */
static bool give_back(struct virtio_balloon *b, uint64_t gpa, uint64_t len, uint64_t *counter)
{
        int64_t r = gmem_discard(virtio_mem(b->vd), gpa, len);
        if (r < 0) {
                b->m.refused++;
                return false;
        }
        *counter += (uint64_t)r;
        return true;
}

/* Inflated pages: a run of consecutive (or repeated) frames is given back in one call; a run
 * that is refused (it may cross the end of a region) is retried page by page, so only the bad
 * pages are lost. Returns the calls made (each costs a system call). */
static unsigned discard_pfns(struct virtio_balloon *b, const uint32_t *pfn, unsigned n)
{
        unsigned calls = 0, i = 0;
        while (i < n) {
                uint64_t first = pfn[i], last = pfn[i];
                unsigned j = i + 1;
                while (j < n && (pfn[j] == last || pfn[j] == last + 1))
                        last = pfn[j++];
                uint64_t pages = last - first + 1;
                calls++;
                if (gmem_discard(virtio_mem(b->vd), first * BALLOON_PAGE, pages * BALLOON_PAGE) >=
                    0) {
                        b->m.inflated += pages * BALLOON_PAGE;
                } else {
                        for (uint64_t p = first; p <= last; p++, calls++)
                                give_back(b, p * BALLOON_PAGE, BALLOON_PAGE, &b->m.inflated);
                }
                i = j;
        }
        return calls;
}

/* Works through an inflate chain's PFN array from w->pos; true when it is done. */
static bool inflate_step(struct virtio_balloon *b, unsigned q, struct balloon_work *w,
                         struct virtio_budget *bud)
{
        uint64_t end = w->chain.read_len & ~3ull;
        while (w->pos < end) {
                uint32_t pfn[BALLOON_PFN_BATCH];
                uint64_t want = end - w->pos < sizeof(pfn) ? end - w->pos : sizeof(pfn);
                /* Copied out first: the pages named may include the array's own. */
                size_t got = virtq_chain_read(virtio_mem(b->vd), &w->chain, w->pos, pfn, want);
                got &= ~(size_t)3;
                if (!got)
                        break; /* cannot happen: the chain's buffers are inside RAM */
                w->pos += got;
                unsigned n = (unsigned)(got / 4);
                for (unsigned i = 0; i < n; i++)
                        pfn[i] = le32toh(pfn[i]);
                unsigned calls = discard_pfns(b, pfn, n);
                if (!virtio_budget_charge(b->vd, q, bud,
                                          (uint64_t)n * BALLOON_PAGE + calls * BALLOON_CALL_COST))
                        return w->pos >= end;
        }
        return true;
}

/* Works through a reporting chain's writable ranges from w->pos; true when it is done. */
static bool report_step(struct virtio_balloon *b, unsigned q, struct balloon_work *w,
                        struct virtio_budget *bud)
{
        /* Poisoned free pages must keep their pattern; discarded ones would read as zeros. */
        bool keep = has(b->features, BALLOON_F_PAGE_POISON) && b->poison_val != 0;
        const struct virtq_chain *c = &w->chain;
        uint64_t skip = w->pos;
        for (unsigned i = c->nread; i < (unsigned)c->nread + c->nwrite; i++) {
                const struct virtq_seg *s = &c->seg[i];
                if (skip >= s->len) {
                        skip -= s->len;
                        continue;
                }
                uint64_t off = skip;
                skip = 0;
                while (off < s->len) {
                        uint64_t n = s->len - off < BALLOON_PIECE ? s->len - off : BALLOON_PIECE;
                        if (!keep && !give_back(b, s->gpa + off, n, &b->m.reported))
                                n = s->len - off; /* refused: the rest of it too */
                        off += n;
                        w->pos += n;
                        if (!virtio_budget_charge(b->vd, q, bud, n + BALLOON_CALL_COST))
                                return w->pos >= c->write_len;
                }
        }
        return true;
}

/* Inflate and reporting: chains that may take several turns. */
static void work_notify(struct virtio_balloon *b, unsigned q, struct balloon_work *w,
                        bool (*step)(struct virtio_balloon *, unsigned, struct balloon_work *,
                                     struct virtio_budget *))
{
        struct virtio_budget bud = virtio_budget_default();
        bud.bytes = BALLOON_BUDGET_BYTES;
        bool pushed = false;
        uint64_t before = b->m.reported + b->m.inflated + b->m.refused;
        while (!bud.spent) {
                if (!w->busy) {
                        if (virtio_pop_budget(b->vd, q, &w->chain, &bud) <= 0)
                                break;
                        w->busy = true;
                        w->pos = 0;
                }
                if (!step(b, q, w, &bud))
                        break;
                virtio_push(b->vd, q, w->chain.head, 0);
                w->busy = false;
                pushed = true;
        }
        if (pushed)
                virtio_signal_used(b->vd, q);
        if (b->m.reported + b->m.inflated + b->m.refused != before)
                publish(b);
}

static void deflate_notify(struct virtio_balloon *b, unsigned q)
{
        struct virtio_budget bud = virtio_budget_default();
        bool pushed = false;
        while (virtio_pop_budget(b->vd, q, &b->scratch, &bud) > 0) {
                virtio_push(b->vd, q, b->scratch.head, 0);
                pushed = true;
        }
        if (pushed)
                virtio_signal_used(b->vd, q);
}

static void stats_parse(struct virtio_balloon *b, const struct virtq_chain *c)
{
        uint8_t buf[BALLOON_MAX_STATS * 10];
        size_t got = virtq_chain_read(virtio_mem(b->vd), c, 0, buf, sizeof(buf));
        for (size_t at = 0; at + 10 <= got; at += 10) {
                uint16_t tag = (uint16_t)(buf[at] | buf[at + 1] << 8);
                uint64_t val = 0;
                for (unsigned i = 0; i < 8; i++)
                        val |= (uint64_t)buf[at + 2 + i] << (8 * i);
                if (tag == BALLOON_S_MEMTOT)
                        b->m.guest_total = val;
                else if (tag == BALLOON_S_MEMFREE)
                        b->m.guest_free = val;
                else if (tag == BALLOON_S_AVAIL)
                        b->m.guest_available = val;
        }
        b->m.stats_mono_ns = mono_ns();
        publish(b);
}

static void stats_notify(struct virtio_balloon *b, unsigned q)
{
        struct virtio_budget bud = virtio_budget_default();
        bool pushed = false;
        while (virtio_pop_budget(b->vd, q, &b->scratch, &bud) > 0) {
                /* The driver has one buffer in flight; should another come, the older one goes
                 * back so that the guest never loses buffers to us. */
                if (b->stats_held) {
                        virtio_push(b->vd, q, b->stats_head, 0);
                        pushed = true;
                }
                b->stats_head = b->scratch.head;
                b->stats_held = true;
                stats_parse(b, &b->scratch);
        }
        if (pushed)
                virtio_signal_used(b->vd, q);
}

static void balloon_queue_notify(void *dev, unsigned q)
{
        struct virtio_balloon *b = dev;
        switch (q < BALLOON_NUM_QUEUES ? b->role[q] : ROLE_NONE) {
        case ROLE_INFLATE:
                work_notify(b, q, &b->inflate, inflate_step);
                break;
        case ROLE_DEFLATE:
                deflate_notify(b, q);
                break;
        case ROLE_STATS:
                stats_notify(b, q);
                break;
        case ROLE_REPORT:
                work_notify(b, q, &b->report, report_step);
                break;
        default:
                break;
        }
}

/* Every second: return the stats buffer, so the driver sends fresh figures. */
static void stats_tick(void *opaque, uint32_t events)
{
        struct virtio_balloon *b = opaque;
        uint64_t expirations;
        if (read(b->timer_fd, &expirations, sizeof(expirations)) < 0) {
                /* EAGAIN: nothing expired after all. */
        }
        virtio_lock(b->vd);
        if (virtio_live(b->vd) && b->stats_held) {
                b->stats_held = false;
                virtio_push(b->vd, b->stats_q, b->stats_head, 0);
                virtio_signal_used(b->vd, b->stats_q);
        }
        virtio_unlock(b->vd);
}

static void timer_set(struct virtio_balloon *b, bool on)
{
        struct itimerspec t = {{0, 0}, {0, 0}};
        if (on)
                t.it_interval.tv_sec = t.it_value.tv_sec = 1;
        timerfd_settime(b->timer_fd, 0, &t, NULL);
}

static int balloon_activate(void *dev, uint64_t features)
{
        struct virtio_balloon *b = dev;
        enum balloon_role role[BALLOON_NUM_QUEUES + 1];
        unsigned n = balloon_roles(features, role);
        b->features = features;
        for (unsigned i = 0; i < BALLOON_NUM_QUEUES; i++) {
                b->role[i] = i < n ? role[i] : ROLE_NONE;
                if (b->role[i] == ROLE_STATS)
                        b->stats_q = i;
        }
        timer_set(b, has(features, BALLOON_F_STATS_VQ));
        return 0;
}

static void balloon_reset(void *dev)
{
        struct virtio_balloon *b = dev;
        timer_set(b, false);
        b->features = 0;
        for (unsigned i = 0; i < BALLOON_NUM_QUEUES; i++)
                b->role[i] = ROLE_NONE;
        b->inflate.busy = b->report.busy = false;
        b->stats_held = false;
        /* The target is the host's and stays; what the driver wrote goes. */
        b->actual = b->poison_val = 0;
        if (!b->quiesced) { /* at teardown the metrics keep the last figures */
                b->m.actual = 0;
                publish(b);
        }
}

static void balloon_quiesce(void *dev)
{
        struct virtio_balloon *b = dev;
        virtio_lock(b->vd);
        b->quiesced = true;
        timer_set(b, false);
        virtio_unlock(b->vd);
        /* The event thread has stopped: the loop can be changed from here. */
        if (b->loop)
                evloop_del(b->loop, b->timer_fd);
        b->loop = NULL;
}

static void balloon_destroy(void *dev)
{
        struct virtio_balloon *b = dev;
        if (b->loop)
                evloop_del(b->loop, b->timer_fd);
        if (b->timer_fd >= 0)
                close(b->timer_fd);
        free(b);
}

static const struct virtio_dev_ops balloon_ops = {
    .name = BALLOON_NAME,
    .device_id = VIRTIO_ID_BALLOON,
    .num_queues = BALLOON_NUM_QUEUES,
    .queue_max = BALLOON_QUEUE_SIZE,
    .config_size = BALLOON_CONFIG,
    .config_read = balloon_config_read,
    .config_write = balloon_config_write,
    .queue_count = balloon_queue_count,
    .activate = balloon_activate,
    .queue_notify = balloon_queue_notify,
    .reset = balloon_reset,
    .quiesce = balloon_quiesce,
    .destroy = balloon_destroy,
};

int virtio_balloon_set_target(struct virtio_dev *vd, uint64_t mib, char *err, size_t errlen)
{
        if (!vd || strcmp(virtio_dev_name(vd), BALLOON_NAME) != 0)
                return ember_errf(err, errlen, ENODEV, "the VM has no balloon device");
        struct virtio_balloon *b = virtio_dev_priv(vd);
        if (mib > b->ram_mib)
                return ember_errf(
                    err, errlen, EINVAL,
                    "balloon target %llu MiB is more than the guest's %llu MiB of RAM",
                    (unsigned long long)mib, (unsigned long long)b->ram_mib);
        int rc = 0;
        virtio_lock(vd);
        if (b->quiesced) {
                rc = ember_errf(err, errlen, ESRCH, "balloon target: the VM has stopped");
        } else {
                /* ram_mib <= EMBER_MAX_MEMORY_MIB (1 TiB): the page count fits in 32 bits. */
                b->num_pages = (uint32_t)(mib * ((1u << 20) / BALLOON_PAGE));
                b->m.target = mib << 20;
                publish(b);
                virtio_config_changed(vd);
        }
        virtio_unlock(vd);
        return rc;
}

/* ---- device table */

static unsigned balloon_count(const struct ember_config *cfg)
{
        return cfg->balloon ? 1 : 0;
}

static int balloon_create(const struct dev_env *env, const struct ember_config *cfg, unsigned index,
                          struct virtio_dev **out, enum ember_error *code, char *err, size_t errlen)
{
        struct virtio_balloon *b = calloc(1, sizeof(*b));
        if (!b) {
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, ENOMEM, "virtio-balloon: out of memory");
        }
        b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (b->timer_fd < 0) {
                int e = errno;
                free(b);
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, e, "virtio-balloon: timerfd: %s", strerror(e));
        }
        b->ops = balloon_ops;
        if (!(cfg->balloon_flags & EMBER_BALLOON_NO_STATS))
                b->ops.features |= 1ull << BALLOON_F_STATS_VQ;
        if (!(cfg->balloon_flags & EMBER_BALLOON_NO_REPORTING))
                b->ops.features |= 1ull << BALLOON_F_REPORTING | 1ull << BALLOON_F_PAGE_POISON;
        if (cfg->balloon_flags & EMBER_BALLOON_DEFLATE_ON_OOM)
                b->ops.features |= 1ull << BALLOON_F_DEFLATE_ON_OOM;
        b->metrics = env->metrics;
        b->ram_mib = gmem_ram_size(env->mem) >> 20;
        int rc = virtio_dev_create(env, &b->ops, b, &b->vd, err, errlen);
        if (rc) {
                close(b->timer_fd);
                free(b);
                *code = EMBER_ERR_RESOURCE;
                return rc;
        }
        rc = evloop_add(env->loop, b->timer_fd, EPOLLIN, stats_tick, b);
        if (rc) {
                virtio_dev_destroy(b->vd); /* frees b */
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, rc, "virtio-balloon: event loop: %s", strerror(-rc));
        }
        b->loop = env->loop;
        publish(b);
        *out = b->vd;
        return 0;
}

const struct vm_device_type virtio_balloon_type = {
    .name = BALLOON_NAME,
    .count = balloon_count,
    .create = balloon_create,
};
