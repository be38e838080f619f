/* virtio-balloon behind virtio-mmio, driven by a fake guest: queue roles from the negotiated
 * features (Linux compacts the indices), inflate and free page reporting giving pages back,
 * statistics held and returned every second, the target in config space, and a hostile guest:
 * heads re-added forever, aliased and overlapping buffers, pages and ranges outside RAM or
 * across the MMIO gap, chains with no writable space, huge chains (bounded work per
 * notification), a reset in the middle of a chain, and all queues hammered while the VM
 * stops. */
#include "test.h"

#include "test_virtio_guest.h"

#include <sys/mman.h>
#include <time.h>

#include "core/devices.h"
#include "core/metrics.h"
#include "core/vm_internal.h"
#include "virtio/balloon.h"
#include "virtio/virtio.h"

extern const struct vm_device_type virtio_balloon_type;
extern const struct vm_device_type virtio_rng_type;

#define BBASE 0xd0000000ull
#define BGSI  5u
#define QS    64u
#define PAGE  4096ull
#define MIB   (1ull << 20)

#define F_MUST_TELL_HOST (1ull << 0)
#define F_STATS          (1ull << 1)
#define F_DEFLATE_ON_OOM (1ull << 2)
#define F_FREE_PAGE_HINT (1ull << 3)
#define F_PAGE_POISON    (1ull << 4)
#define F_REPORTING      (1ull << 5)
#define F_VERSION_1      (1ull << 32)

#define Q_INFLATE 0
#define Q_DEFLATE 1

static struct fake_vm vm;
static struct ember_metrics *M;
static struct virtio_dev *VD;
static struct virtio_mmio *T;
static struct gq Q[4];
static bool quiesced;

/* A balloon on a fake VM of `ram` bytes (0: the harness's 16 MiB) below a gap at `gap`. */
static void setup_ram(uint64_t ram, uint64_t gap, unsigned flags)
{
        REQUIRE_EQ(fake_vm_init(&vm), 0);
        if (ram) {
                gmem_destroy(&vm.mem);
                REQUIRE_EQ(gmem_init(&vm.mem, ram, gap), 0);
        }
        quiesced = false;
        M = metrics_new();
        REQUIRE(M);
        vm.env.metrics = M;
        struct ember_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.balloon = true;
        cfg.balloon_flags = flags;
        REQUIRE_EQ(virtio_balloon_type.count(&cfg), 1);
        enum ember_error code = EMBER_OK;
        char err[256] = "";
        int r = virtio_balloon_type.create(&vm.env, &cfg, 0, &VD, &code, err, sizeof(err));
        if (r)
                FAILF("create: %d %s", r, err);
        r = virtio_mmio_create(&vm.env, BBASE, BGSI, VD, &T, err, sizeof(err));
        if (r)
                FAILF("virtio_mmio_create: %d %s", r, err);
}

static void setup(unsigned flags)
{
        setup_ram(0, 0, flags);
}

static void teardown(void)
{
        if (!quiesced)
                virtio_dev_quiesce(VD);
        virtio_mmio_destroy(T);
        virtio_dev_destroy(VD);
        metrics_release(M);
        fake_vm_destroy(&vm);
}

static uint64_t offered(void)
{
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        uint64_t lo = mmio_r32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        return lo | (uint64_t)mmio_r32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

/* Negotiates `features`, sets up every queue they give and sets DRIVER_OK: the queue count. */
static unsigned up(uint64_t features)
{
        uint32_t st = guest_negotiate(&vm, BBASE, features | F_VERSION_1);
        REQUIRE(st & VIRTIO_STATUS_FEATURES_OK);
        unsigned n = 0;
        while (n < 4 && guest_queue_num_max(&vm, BBASE, n) > 0) {
                REQUIRE_EQ(gq_setup(&Q[n], &vm, BBASE, n, QS), 1);
                n++;
        }
        guest_driver_ok(&vm, BBASE);
        REQUIRE(virtio_status(VD) & VIRTIO_STATUS_DRIVER_OK);
        return n;
}

static struct ember_metrics_sample sample(void)
{
        struct ember_metrics_sample s;
        ember_metrics_sample(M, &s);
        return s;
}

static uint8_t *host(uint64_t gpa, uint64_t len)
{
        uint8_t *p = guest_ptr(&vm, gpa, len);
        REQUIRE(p);
        return p;
}

/* Guest pages filled with a non-zero pattern. */
static uint64_t filled_pages(unsigned n)
{
        uint64_t gpa = guest_alloc(&vm, n * PAGE, PAGE);
        memset(host(gpa, n * PAGE), 0x5a, n * PAGE);
        return gpa;
}

static bool all_bytes(uint64_t gpa, uint64_t len, uint8_t v)
{
        const uint8_t *p = host(gpa, len);
        for (uint64_t i = 0; i < len; i++)
                if (p[i] != v)
                        return false;
        return true;
}

static bool resident(uint64_t gpa)
{
        unsigned char v = 0;
        REQUIRE_EQ(mincore(host(gpa, PAGE), PAGE, &v), 0);
        return v & 1;
}

/* Runs the event loop until queue q has a used entry (up to `ms`). */
static int wait_used(unsigned q, int ms, uint32_t *id, uint32_t *len)
{
        for (int i = 0; i < ms / 10; i++) {
                if (gq_used(&Q[q], id, len))
                        return 1;
                evloop_run_once(&vm.loop, 10);
        }
        return gq_used(&Q[q], id, len);
}

/* A readable PFN array in guest memory. */
static struct gseg pfn_array(const uint32_t *pfn, unsigned n)
{
        uint64_t gpa = guest_alloc(&vm, 4ull * n, 4);
        memcpy(host(gpa, 4ull * n), pfn, 4ull * n);
        return (struct gseg){gpa, 4u * n, false};
}

static void post(unsigned q, const struct gseg *s, unsigned n)
{
        gq_add(&Q[q], s, n);
        gq_kick(&Q[q]);
}

/* ---- features and queue layout */

static void t_features_offered(void)
{
        setup(0);
        uint64_t f = offered();
        CHECK(f & F_STATS);
        CHECK(f & F_REPORTING);
        CHECK(f & F_PAGE_POISON);
        CHECK(f & F_VERSION_1);
        CHECK(!(f & (F_MUST_TELL_HOST | F_FREE_PAGE_HINT | F_DEFLATE_ON_OOM)));
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_DEVICE_ID), 5);
        /* The reporting queue must have room for Linux's 32-buffer chains. */
        for (unsigned i = 0; i < 4; i++)
                CHECK(guest_queue_num_max(&vm, BBASE, i) >= 32);
        teardown();
        setup(EMBER_BALLOON_DEFLATE_ON_OOM | EMBER_BALLOON_NO_REPORTING | EMBER_BALLOON_NO_STATS);
        f = offered();
        CHECK(f & F_DEFLATE_ON_OOM);
        CHECK(!(f & (F_STATS | F_REPORTING | F_PAGE_POISON)));
        /* Not offered, so not accepted. */
        CHECK(!(guest_negotiate(&vm, BBASE, F_VERSION_1 | F_STATS) & VIRTIO_STATUS_FEATURES_OK));
        teardown();
}

/* Reports a 16-page range on queue q and checks it was given back. */
static void check_reporting_on(unsigned q)
{
        uint64_t before = sample().balloon_reported_bytes;
        uint64_t gpa = filled_pages(16);
        struct gseg s = {gpa, 16 * PAGE, true};
        post(q, &s, 1);
        uint32_t id, len;
        REQUIRE(wait_used(q, 500, &id, &len));
        CHECK_EQ(len, 0);
        CHECK(!resident(gpa)); /* before reading: a read maps the zero page */
        CHECK(all_bytes(gpa, 16 * PAGE, 0));
        CHECK_EQ(sample().balloon_reported_bytes - before, 16 * PAGE);
}

static void t_queue_indices_follow_features(void)
{
        /* STATS and REPORTING, no FREE_PAGE_HINT: reporting is queue 3 (Linux compacts). */
        setup(0);
        CHECK_EQ(up(F_STATS | F_REPORTING), 4);
        check_reporting_on(3);
        teardown();
        /* REPORTING alone: queue 2; there is no queue 3. */
        setup(0);
        CHECK_EQ(up(F_REPORTING), 3);
        CHECK_EQ(guest_queue_num_max(&vm, BBASE, 3), 0);
        check_reporting_on(2);
        teardown();
        /* STATS alone: queue 2 is stats, so a "report" there is held, not given back. */
        setup(0);
        CHECK_EQ(up(F_STATS), 3);
        uint64_t gpa = filled_pages(4);
        struct gseg s = {gpa, 4 * PAGE, true};
        post(2, &s, 1);
        fake_run(&vm, 20);
        uint32_t id, len;
        CHECK(!gq_used(&Q[2], &id, &len));
        CHECK(all_bytes(gpa, 4 * PAGE, 0x5a));
        teardown();
        /* Neither: two queues. */
        setup(0);
        CHECK_EQ(up(0), 2);
        teardown();
}

/* ---- inflate, deflate, reporting */

static void t_inflate_gives_pages_back(void)
{
        setup(0);
        up(F_STATS | F_REPORTING);
        uint64_t gpa = filled_pages(8);
        /* Pages 1, 2, 3 (a run) and 6; 0, 4, 5 and 7 stay. */
        uint32_t pfn[] = {(uint32_t)(gpa / PAGE) + 1, (uint32_t)(gpa / PAGE) + 2,
                          (uint32_t)(gpa / PAGE) + 3, (uint32_t)(gpa / PAGE) + 6};
        struct gseg s = pfn_array(pfn, 4);
        post(Q_INFLATE, &s, 1);
        uint32_t id, len;
        REQUIRE(wait_used(Q_INFLATE, 500, &id, &len));
        CHECK_EQ(len, 0);
        for (unsigned i = 0; i < 8; i++) {
                bool gone = i == 1 || i == 2 || i == 3 || i == 6;
                CHECK_EQ(resident(gpa + i * PAGE), !gone);
                CHECK(all_bytes(gpa + i * PAGE, PAGE, gone ? 0 : 0x5a));
        }
        struct ember_metrics_sample m = sample();
        CHECK_EQ(m.balloon_inflated_bytes, 4 * PAGE);
        CHECK_EQ(m.balloon_refused, 0);
        teardown();
}

static void t_deflate_leaves_pages_alone(void)
{
        setup(0);
        up(F_STATS | F_REPORTING);
        uint64_t gpa = filled_pages(2);
        uint32_t pfn[] = {(uint32_t)(gpa / PAGE), (uint32_t)(gpa / PAGE) + 1};
        struct gseg s = pfn_array(pfn, 2);
        post(Q_DEFLATE, &s, 1);
        uint32_t id, len;
        REQUIRE(wait_used(Q_DEFLATE, 500, &id, &len));
        CHECK(all_bytes(gpa, 2 * PAGE, 0x5a));
        CHECK_EQ(sample().balloon_inflated_bytes, 0);
        teardown();
}

/* Free pages poisoned with a non-zero pattern must keep it; with 0 (init_on_free) they go. */
static void t_reporting_keeps_poisoned_pages(void)
{
        setup(0);
        up(F_REPORTING | F_PAGE_POISON);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_CONFIG + 12, 0xaaaaaaaau);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG + 12), 0xaaaaaaaau);
        uint64_t gpa = filled_pages(4);
        struct gseg s = {gpa, 4 * PAGE, true};
        post(2, &s, 1);
        uint32_t id, len;
        REQUIRE(wait_used(2, 500, &id, &len));
        CHECK(all_bytes(gpa, 4 * PAGE, 0x5a));
        CHECK_EQ(sample().balloon_reported_bytes, 0);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_CONFIG + 12, 0);
        post(2, &s, 1);
        REQUIRE(wait_used(2, 500, &id, &len));
        CHECK(all_bytes(gpa, 4 * PAGE, 0));
        CHECK_EQ(sample().balloon_reported_bytes, 4 * PAGE);
        teardown();
}

/* ---- statistics */

static void put_stat(uint8_t *p, uint16_t tag, uint64_t val)
{
        p[0] = (uint8_t)tag;
        p[1] = (uint8_t)(tag >> 8);
        for (unsigned i = 0; i < 8; i++)
                p[2 + i] = (uint8_t)(val >> (8 * i));
}

static void t_stats_held_and_returned_every_second(void)
{
        setup(0);
        up(F_STATS | F_REPORTING);
        uint64_t buf = guest_alloc(&vm, 40 * 10, 8);
        uint8_t *p = host(buf, 40 * 10);
        put_stat(p, 5, 200 * MIB);      /* MEMTOT */
        put_stat(p + 10, 4, 50 * MIB);  /* MEMFREE */
        put_stat(p + 20, 6, 120 * MIB); /* AVAIL */
        put_stat(p + 30, 999, 1);       /* unknown: ignored */
        struct gseg s = {buf, 40, false};
        post(2, &s, 1);
        fake_run(&vm, 20);
        struct ember_metrics_sample m = sample();
        CHECK_EQ(m.guest_total_bytes, 200 * MIB);
        CHECK_EQ(m.guest_free_bytes, 50 * MIB);
        CHECK_EQ(m.guest_available_bytes, 120 * MIB);
        CHECK(m.guest_stats_mono_ns > 0);
        /* Held: only the timer (1 s) returns it. */
        uint32_t id, len;
        CHECK(!gq_used(&Q[2], &id, &len));
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        REQUIRE(wait_used(2, 5000, &id, &len));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        CHECK(waited > 0.5); /* not returned at once; the upper bound is wait_used's 5 s */
        CHECK(fake_irq_taken(&vm));
        /* The driver refills and posts it again: fresh figures. */
        put_stat(p + 10, 4, 60 * MIB);
        post(2, &s, 1);
        fake_run(&vm, 20);
        CHECK_EQ(sample().guest_free_bytes, 60 * MIB);
        /* A second buffer while one is held: the older goes back at once. */
        uint64_t buf2 = guest_alloc(&vm, 10, 8);
        put_stat(host(buf2, 10), 4, 70 * MIB);
        struct gseg s2 = {buf2, 10, false};
        post(2, &s2, 1);
        CHECK(wait_used(2, 200, &id, &len));
        CHECK_EQ(sample().guest_free_bytes, 70 * MIB);
        /* More entries than the device reads: no harm, the first ones count. */
        uint64_t big = guest_alloc(&vm, 64 * 10, 8);
        for (unsigned i = 0; i < 64; i++)
                put_stat(host(big, 640) + 10 * i, 5, (i + 1) * MIB);
        struct gseg s3 = {big, 640, false};
        post(2, &s3, 1);
        CHECK(wait_used(2, 200, &id, &len));
        CHECK_EQ(sample().guest_total_bytes, 32 * MIB);
        CHECK_EQ(virtio_failure(VD)[0], 0);
        teardown();
}

/* ---- config space and the target */

static void t_target_in_config_space(void)
{
        setup(0);
        up(F_STATS | F_REPORTING);
        char err[256];
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG), 0);
        uint32_t gen = mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG_GENERATION);
        fake_irq_taken(&vm);
        CHECK_EQ(virtio_balloon_set_target(VD, 8, err, sizeof(err)), 0);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG), 8 * MIB / PAGE);
        CHECK(mmio_r32(&vm, BBASE + VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
        CHECK(fake_irq_taken(&vm));
        CHECK(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG_GENERATION) != gen);
        CHECK_EQ(sample().balloon_target_bytes, 8 * MIB);
        /* num_pages is the device's: a guest write is ignored; `actual` is the driver's. */
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_CONFIG, 1);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG), 8 * MIB / PAGE);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_CONFIG + 4, 100);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG + 4), 100);
        CHECK_EQ(sample().balloon_actual_bytes, 100 * PAGE);
        /* A byte write into the middle of both fields, as a guest may. */
        uint8_t b[2] = {0xff, 0x01};
        fake_mmio(&vm, BBASE + VIRTIO_MMIO_CONFIG + 3, b, 2, true);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG), 8 * MIB / PAGE);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG + 4), 1);
        /* Bounds and the wrong device. */
        CHECK_EQ(virtio_balloon_set_target(VD, 17, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "more than") != NULL);
        CHECK_EQ(virtio_balloon_set_target(VD, 16, err, sizeof(err)), 0);
        CHECK_EQ(virtio_balloon_set_target(VD, 0, err, sizeof(err)), 0);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG), 0);
        struct ember_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        struct virtio_dev *rng = NULL;
        enum ember_error code;
        REQUIRE_EQ(virtio_rng_type.create(&vm.env, &cfg, 0, &rng, &code, err, sizeof(err)), 0);
        CHECK_EQ(virtio_balloon_set_target(rng, 1, err, sizeof(err)), -ENODEV);
        virtio_dev_destroy(rng);
        /* A device reset forgets what the driver wrote, not the host's target. */
        CHECK_EQ(virtio_balloon_set_target(VD, 4, err, sizeof(err)), 0);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_STATUS, 0);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG), 4 * MIB / PAGE);
        CHECK_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG + 4), 0);
        /* Once the VM stops, no more. */
        virtio_dev_quiesce(VD);
        quiesced = true;
        CHECK_EQ(virtio_balloon_set_target(VD, 1, err, sizeof(err)), -ESRCH);
        teardown();
}

/* ---- a hostile guest */

/* Outside RAM, across the MMIO gap, past the end: refused page by page, counted; the pages
 * around them that are RAM still go. RAM: [0, 8 MiB) and [4 GiB, 4 GiB + 8 MiB). */
static void t_inflate_outside_ram_refused(void)
{
        setup_ram(16 * MIB, 8 * MIB, 0);
        up(F_STATS | F_REPORTING);
        const uint64_t hi = 4ull << 30;
        memset(host(8 * MIB - PAGE, PAGE), 0x5a, PAGE);
        memset(host(hi, PAGE), 0x5a, PAGE);
        memset(host(hi + 8 * MIB - PAGE, PAGE), 0x5a, PAGE);
        uint32_t pfn[] = {
            (uint32_t)((8 * MIB - PAGE) / PAGE), /* last low page */
            (uint32_t)(8 * MIB / PAGE),          /* the gap (same run as the one before) */
            (uint32_t)(hi / PAGE),               /* first high page */
            (uint32_t)((hi + 8 * MIB) / PAGE),   /* just past the end */
            0xffffffffu,                         /* 16 TiB */
            (uint32_t)((3ull << 30) / PAGE),     /* the gap again */
        };
        struct gseg s = pfn_array(pfn, 6);
        post(Q_INFLATE, &s, 1);
        uint32_t id, len;
        REQUIRE(wait_used(Q_INFLATE, 500, &id, &len));
        CHECK(all_bytes(8 * MIB - PAGE, PAGE, 0));
        CHECK(all_bytes(hi, PAGE, 0));
        CHECK(all_bytes(hi + 8 * MIB - PAGE, PAGE, 0x5a));
        struct ember_metrics_sample m = sample();
        CHECK_EQ(m.balloon_inflated_bytes, 2 * PAGE);
        CHECK_EQ(m.balloon_refused, 4);
        CHECK_EQ(virtio_failure(VD)[0], 0);
        teardown();
}

/* A reported range that crosses the gap or leaves RAM is a malformed chain: the device fails
 * (NEEDS_RESET, the VM is told) and gives nothing back, not even the part inside RAM. */
static void t_reporting_outside_ram_fails_device(void)
{
        const uint64_t bad[][2] = {
            {8 * MIB - PAGE, 2 * PAGE},                /* across the gap */
            {(4ull << 30) + 8 * MIB - PAGE, 2 * PAGE}, /* past the end */
            {(3ull << 30), PAGE},                      /* inside the gap */
            {~0ull - PAGE + 1, PAGE},                  /* the top of the address space */
        };
        for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                setup_ram(16 * MIB, 8 * MIB, 0);
                up(F_STATS | F_REPORTING);
                memset(host(8 * MIB - PAGE, PAGE), 0x5a, PAGE);
                memset(host((4ull << 30) + 8 * MIB - PAGE, PAGE), 0x5a, PAGE);
                struct gseg s = {bad[i][0], (uint32_t)bad[i][1], true};
                post(3, &s, 1);
                fake_run(&vm, 20);
                CHECK(virtio_status(VD) & VIRTIO_STATUS_NEEDS_RESET);
                CHECK_EQ(vm.stops, 1);
                CHECK_EQ(vm.stop_reason, VM_STOP_ERROR);
                CHECK(all_bytes(8 * MIB - PAGE, PAGE, 0x5a));
                CHECK(all_bytes((4ull << 30) + 8 * MIB - PAGE, PAGE, 0x5a));
                CHECK_EQ(sample().balloon_reported_bytes, 0);
                teardown();
        }
}

/* Chains with nothing the device can use: returned, nothing given back. */
static void t_chains_without_usable_space(void)
{
        setup(0);
        up(F_STATS | F_REPORTING);
        uint64_t gpa = filled_pages(4);
        uint32_t id, len;
        /* A report with only readable buffers. */
        struct gseg r = {gpa, 4 * PAGE, false};
        post(3, &r, 1);
        REQUIRE(wait_used(3, 500, &id, &len));
        CHECK(all_bytes(gpa, 4 * PAGE, 0x5a));
        /* A report smaller than a page, and one not page-aligned: no whole page inside. */
        struct gseg small[] = {{gpa + 100, 1000, true}, {gpa + PAGE + 1, PAGE, true}};
        post(3, small, 2);
        REQUIRE(wait_used(3, 500, &id, &len));
        CHECK(all_bytes(gpa, 4 * PAGE, 0x5a));
        /* An inflate whose array is writable, or 3 bytes long. */
        uint32_t pfn = (uint32_t)(gpa / PAGE);
        struct gseg w = pfn_array(&pfn, 1);
        w.writable = true;
        post(Q_INFLATE, &w, 1);
        REQUIRE(wait_used(Q_INFLATE, 500, &id, &len));
        w.writable = false;
        w.len = 3;
        post(Q_INFLATE, &w, 1);
        REQUIRE(wait_used(Q_INFLATE, 500, &id, &len));
        CHECK(all_bytes(gpa, 4 * PAGE, 0x5a));
        /* A stats buffer of 0 bytes (a writable one): held and returned like any. */
        struct gseg st = {gpa, PAGE, true};
        post(2, &st, 1);
        fake_run(&vm, 20);
        CHECK(all_bytes(gpa, 4 * PAGE, 0x5a));
        CHECK_EQ(sample().guest_total_bytes, 0);
        struct ember_metrics_sample m = sample();
        CHECK_EQ(m.balloon_reported_bytes + m.balloon_inflated_bytes, 0);
        CHECK_EQ(virtio_failure(VD)[0], 0);
        teardown();
}

/* Aliased and overlapping buffers: the same range twice, half overlaps, a PFN array that names
 * its own page and repeats one page. */
static void t_aliased_and_overlapping(void)
{
        setup(0);
        up(F_STATS | F_REPORTING);
        uint64_t gpa = filled_pages(8);
        struct gseg r[] = {{gpa, 4 * PAGE, true},
                           {gpa, 4 * PAGE, true},
                           {gpa + 2 * PAGE, 4 * PAGE, true},
                           {gpa + 3 * PAGE, PAGE, true}};
        post(3, r, 4);
        uint32_t id, len;
        REQUIRE(wait_used(3, 500, &id, &len));
        CHECK(all_bytes(gpa, 6 * PAGE, 0));
        CHECK(all_bytes(gpa + 6 * PAGE, 2 * PAGE, 0x5a));
        /* The array lives in page 7 and names page 7 itself, then page 6 three times. */
        uint64_t arr = gpa + 7 * PAGE;
        uint32_t pfn[] = {(uint32_t)(arr / PAGE), (uint32_t)(gpa / PAGE) + 6,
                          (uint32_t)(gpa / PAGE) + 6, (uint32_t)(gpa / PAGE) + 6};
        memcpy(host(arr, sizeof(pfn)), pfn, sizeof(pfn));
        struct gseg s = {arr, sizeof(pfn), false};
        post(Q_INFLATE, &s, 1);
        REQUIRE(wait_used(Q_INFLATE, 500, &id, &len));
        CHECK(all_bytes(gpa, 8 * PAGE, 0));
        CHECK_EQ(virtio_failure(VD)[0], 0);
        teardown();
}

/* The same head re-added forever (one PFN array of 4096 pages, 16 MiB of RAM each time): every
 * notification does at most 64 MiB of work, so at most 4 chains, and the device stays live. */
static void t_same_head_forever_bounded(void)
{
        setup_ram(64 * MIB, 3ull << 30, 0);
        up(F_STATS | F_REPORTING);
        uint32_t *pfn = calloc(4096, 4);
        REQUIRE(pfn);
        for (unsigned i = 0; i < 4096; i++)
                pfn[i] = (uint32_t)(32 * MIB / PAGE) + i;
        struct gseg s = pfn_array(pfn, 4096);
        free(pfn);
        gq_write_desc(&Q[Q_INFLATE], 0, s.gpa, s.len, 0, 0);
        unsigned total = 0, max_per_turn = 0;
        for (unsigned turn = 0; turn < 200; turn++) {
                /* Keep the ring full of head 0. */
                while (Q[Q_INFLATE].in_flight < QS) {
                        gq_publish(&Q[Q_INFLATE], 0);
                        Q[Q_INFLATE].in_flight++;
                }
                gq_kick(&Q[Q_INFLATE]);
                evloop_run_once(&vm.loop, 100);
                unsigned n = 0;
                uint32_t id, len;
                while (gq_used(&Q[Q_INFLATE], &id, &len)) {
                        CHECK_EQ(id, 0);
                        n++;
                }
                total += n;
                if (n > max_per_turn)
                        max_per_turn = n;
        }
        printf("    %u chains over 200 turns, at most %u per notification\n", total, max_per_turn);
        CHECK(max_per_turn <= 4);
        CHECK(total >= 200 * 3);
        CHECK_EQ(virtio_failure(VD)[0], 0);
        /* Every chain returned, and maybe part of one still in progress. */
        uint64_t inflated = sample().balloon_inflated_bytes;
        CHECK(inflated >= 4096ull * PAGE * total && inflated < 4096ull * PAGE * (total + 1));
        teardown();
}

/* Small chains re-added as fast as the device uses them, on every queue: no turn of the event
 * loop uses more than one budget of chains (the harness's measurement). */
static void t_budget_per_turn_every_queue(void)
{
        setup(0);
        up(F_STATS | F_REPORTING);
        uint64_t page = filled_pages(1);
        uint32_t pfn = (uint32_t)(page / PAGE);
        struct gseg arr = pfn_array(&pfn, 1);
        gq_put_desc(&Q[0], 0, arr.gpa, arr.len, false);
        gq_put_desc(&Q[1], 0, arr.gpa, arr.len, false);
        gq_put_desc(&Q[2], 0, arr.gpa, 4, false);
        gq_put_desc(&Q[3], 0, page, PAGE, true);
        static const char *const names[] = {"inflate", "deflate", "stats", "reporting"};
        for (unsigned q = 0; q < 4; q++) {
                unsigned most;
                uint64_t total = fake_budget_per_turn(&vm, &Q[q], 0, 200, &most);
                printf("    %s: %llu chains in 200 ms, at most %u in one turn\n", names[q],
                       (unsigned long long)total, most);
                CHECK(most <= VIRTIO_BUDGET_CHAINS);
                CHECK(total >= QS - 1); /* a full ring used (stats holds one back) */
        }
        CHECK_EQ(virtio_failure(VD)[0], 0);
        teardown();
}

/* A 480 MiB report is worked through 64 MiB per notification; a reset in the middle drops the
 * rest of it. */
static void t_huge_report_in_pieces(void)
{
        setup_ram(512 * MIB, 3ull << 30, 0);
        up(F_STATS | F_REPORTING);
        struct gseg r[4];
        for (unsigned i = 0; i < 4; i++)
                r[i] = (struct gseg){16 * MIB + i * 120 * MIB, 120 * MIB, true};
        post(3, r, 4);
        uint32_t id, len;
        evloop_run_once(&vm.loop, 100);
        CHECK(!gq_used(&Q[3], &id, &len));
        CHECK_EQ(sample().balloon_reported_bytes, 64 * MIB);
        unsigned turns = 1;
        while (!gq_used(&Q[3], &id, &len) && turns < 100) {
                evloop_run_once(&vm.loop, 100);
                turns++;
        }
        CHECK_EQ(turns, 8);
        CHECK_EQ(sample().balloon_reported_bytes, 480 * MIB);
        /* Again, and reset after the first piece. */
        post(3, r, 4);
        evloop_run_once(&vm.loop, 100);
        CHECK_EQ(sample().balloon_reported_bytes, 544 * MIB);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_STATUS, 0);
        fake_run(&vm, 20);
        CHECK_EQ(sample().balloon_reported_bytes, 544 * MIB);
        /* And the device comes up again. */
        memset(Q, 0, sizeof(Q));
        up(F_STATS | F_REPORTING);
        check_reporting_on(3);
        teardown();
}

/* All four queues kept full of valid chains by guests on their own threads (the harness's
 * fake_hammer: re-added as soon as used, never notified again), the event loop on a thread of
 * its own; then the VM stops: the stop request, an event in the same loop, must be seen at
 * once (bounded work per notification), and the device is quiesced with the guests still at
 * it. */
static void t_hammer_all_queues_while_stopping(void)
{
        setup_ram(64 * MIB, 3ull << 30, 0);
        unsigned n = up(F_STATS | F_REPORTING);
        REQUIRE_EQ(n, 4);
        /* Head 0 of every queue: what its role reads. */
        uint64_t data = filled_pages(1024); /* 4 MiB */
        uint32_t *pfn = calloc(1024, 4);
        REQUIRE(pfn);
        for (unsigned i = 0; i < 1024; i++)
                pfn[i] = (uint32_t)(data / PAGE) + i;
        struct gseg arr = pfn_array(pfn, 1024);
        free(pfn);
        gq_put_desc(&Q[0], 0, arr.gpa, arr.len, false);
        gq_put_desc(&Q[1], 0, arr.gpa, arr.len, false);
        gq_put_desc(&Q[2], 0, arr.gpa, 100, false);
        gq_put_desc(&Q[3], 0, data, 4 * MIB, true);
        struct fake_events e;
        REQUIRE_EQ(fake_events_start(&vm, &e), 0);
        struct fake_hammer h[4];
        for (unsigned q = 0; q < 4; q++)
                REQUIRE_EQ(fake_hammer_start(&h[q], &Q[q], 0), 0);
        usleep(300 * 1000);
        double took_ms = -1;
        bool stopped = fake_events_stop(&e, 5000, &took_ms);
        CHECK(stopped); /* only a hang misses this */
        if (stopped)
                virtio_dev_quiesce(VD);
        quiesced = stopped;
        usleep(50 * 1000);
        uint64_t published = 0;
        for (unsigned q = 0; q < 4; q++)
                published += fake_hammer_stop(&h[q]);
        REQUIRE(stopped);
        struct ember_metrics_sample m = sample();
        printf("    %llu chains published; the event thread stopped %.1f ms after the request; "
               "%llu MiB reported, %llu MiB inflated\n",
               (unsigned long long)published, took_ms,
               (unsigned long long)(m.balloon_reported_bytes / MIB),
               (unsigned long long)(m.balloon_inflated_bytes / MIB));
        CHECK(m.balloon_reported_bytes > 0);
        CHECK(m.balloon_inflated_bytes > 0);
        CHECK(m.guest_stats_mono_ns > 0);
        CHECK_EQ(virtio_failure(VD)[0], 0);
        /* Nothing is processed after quiesce. */
        uint64_t before = m.balloon_reported_bytes + m.balloon_inflated_bytes;
        for (unsigned q = 0; q < 4; q++)
                gq_kick(&Q[q]);
        fake_run(&vm, 20);
        m = sample();
        CHECK_EQ(m.balloon_reported_bytes + m.balloon_inflated_bytes, before);
        teardown();
}

int main(void)
{
        T_RUN(t_features_offered);
        T_RUN(t_queue_indices_follow_features);
        T_RUN(t_inflate_gives_pages_back);
        T_RUN(t_deflate_leaves_pages_alone);
        T_RUN(t_reporting_keeps_poisoned_pages);
        T_RUN(t_stats_held_and_returned_every_second);
        T_RUN(t_target_in_config_space);
        T_RUN(t_inflate_outside_ram_refused);
        T_RUN(t_reporting_outside_ram_fails_device);
        T_RUN(t_chains_without_usable_space);
        T_RUN(t_aliased_and_overlapping);
        T_RUN(t_same_head_forever_bounded);
        T_RUN(t_budget_per_turn_every_queue);
        T_RUN(t_huge_report_in_pieces);
        T_RUN(t_hammer_all_queues_while_stopping);
        return T_DONE();
}
