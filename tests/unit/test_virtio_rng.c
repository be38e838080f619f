/* virtio-rng behind virtio-mmio, driven by a fake guest: requests are filled from the host's
 * RNG up to the per-request cap, chains with no room come back empty, and a guest re-adding
 * the same chain forever gets one budget per turn of the event loop. */
#include "test.h"

#include "test_virtio_guest.h"

#include "core/devices.h"
#include "core/hostfd.h"

#define RBASE 0xd0002000ull
#define RGSI  7u

extern const struct vm_device_type virtio_rng_type;

static struct fake_vm vm;
static struct virtio_dev *VD;
static struct virtio_mmio *T;
static struct gq q0;

static void start(void)
{
        REQUIRE_EQ(fake_vm_init(&vm), 0);
        struct ember_config cfg = {0};
        enum ember_error code = EMBER_OK;
        char err[256] = "";
        REQUIRE_EQ(virtio_rng_type.count(&cfg), 1);
        cfg.no_rng = true;
        REQUIRE_EQ(virtio_rng_type.count(&cfg), 0);
        int r = virtio_rng_type.create(&vm.env, &cfg, 0, &VD, &code, err, sizeof(err));
        if (r)
                FAILF("create: %d %s", r, err);
        REQUIRE_EQ(virtio_mmio_create(&vm.env, RBASE, RGSI, VD, &T, err, sizeof(err)), 0);
        REQUIRE_EQ(mmio_r32(&vm, RBASE + VIRTIO_MMIO_DEVICE_ID), 4);
        REQUIRE(guest_negotiate(&vm, RBASE, 1ull << VIRTIO_F_VERSION_1) &
                VIRTIO_STATUS_FEATURES_OK);
        REQUIRE_EQ(gq_setup(&q0, &vm, RBASE, 0, (uint16_t)guest_queue_num_max(&vm, RBASE, 0)), 1);
        guest_driver_ok(&vm, RBASE);
}

static void finish(void)
{
        virtio_mmio_destroy(T);
        virtio_dev_destroy(VD);
        T = NULL;
        VD = NULL;
        fake_vm_destroy(&vm);
}

/* Bytes of a buffer that differ from a fill value (the device must have written them all). */
static size_t count_not(const uint8_t *p, size_t n, uint8_t v)
{
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
                c += p[i] != v;
        return c;
}

static void t_fills_requests(void)
{
        start();
        const uint32_t sizes[] = {1, 64, 4096, 100000};
        for (unsigned i = 0; i < 4; i++) {
                uint64_t b = guest_alloc(&vm, sizes[i], 64);
                uint8_t *p = guest_ptr(&vm, b, sizes[i]);
                memset(p, 0x5a, sizes[i]);
                struct gseg s = {b, sizes[i], true};
                gq_add(&q0, &s, 1);
                gq_kick(&q0);
                fake_run(&vm, 0);
                uint32_t id, len;
                REQUIRE_EQ(gq_used(&q0, &id, &len), 1);
                uint32_t want = sizes[i] < 65536 ? sizes[i] : 65536; /* capped per request */
                CHECK_EQ(len, want);
                if (want >= 64)
                        CHECK(count_not(p, want, 0x5a) + want / 16 + 2 > want); /* ~1/256 match */
                CHECK_EQ(count_not(p + want, sizes[i] - want, 0x5a), 0); /* nothing past it */
        }
        /* a chain with nothing writable comes back empty */
        uint64_t b = guest_alloc(&vm, 16, 16);
        struct gseg ro = {b, 16, false};
        gq_add(&q0, &ro, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        uint32_t id, len;
        REQUIRE_EQ(gq_used(&q0, &id, &len), 1);
        CHECK_EQ(len, 0);
        CHECK_EQ(vm.stops, 0);
        finish();
}

/* The same 256-descriptor aliased chain (256 x 1 MiB of room) re-added forever: each request
 * still gets at most 64 KiB, and no turn of the loop does more than one budget. */
static void t_hostile_same_head(void)
{
        start();
        uint64_t b = guest_alloc(&vm, 1u << 20, 4096);
        for (unsigned i = 0; i < q0.size; i++)
                gq_write_desc(&q0, (uint16_t)i, b, 1u << 20,
                              VIRTQ_DESC_F_WRITE | (i + 1 < q0.size ? VIRTQ_DESC_F_NEXT : 0),
                              (uint16_t)(i + 1));
        REQUIRE(VIRTIO_BUDGET_CHAINS < q0.size);
        unsigned most;
        uint64_t total = fake_budget_per_turn(&vm, &q0, 0, 300, &most);
        printf("    %llu requests in 300 ms, at most %u in one turn\n", (unsigned long long)total,
               most);
        CHECK(most <= VIRTIO_BUDGET_CHAINS);
        CHECK(total >= q0.size);
        /* every used length is within the cap */
        uint8_t *ring = guest_ptr(&vm, q0.used, VIRTQ_USED_BYTES(q0.size));
        for (unsigned i = 0; i < q0.size; i++) {
                uint32_t len;
                memcpy(&len, ring + 4 + 8 * i + 4, 4);
                CHECK(len <= 65536);
        }
        CHECK_EQ(vm.stops, 0);
        finish();
}

int main(void)
{
        T_RUN(t_fills_requests);
        T_RUN(t_hostile_same_head);
        return T_DONE();
}
