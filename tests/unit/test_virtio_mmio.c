/* virtio-mmio transport: the register handshake, notifications (ioeventfd and the fallback),
 * interrupts (irqfd and level line), reset, and a guest writing garbage to the window. */
#include "test.h"

#include "test_virtio_guest.h"

#define BASE            0xd0000000ull
#define GSI             5u
#define DEV_FEATURE_BIT 5

struct dummy {
        unsigned activates, resets, config_reads, config_writes;
        uint64_t activated_features;
        unsigned notifies[4];
        uint64_t bytes_seen;
        int activate_result;
        uint8_t config[8];
};

static struct fake_vm vm;
static struct virtio_mmio *T;
static struct virtio_dev *VD, *VD2;
static struct dummy dev;
static struct virtq_chain ch;

static void d_config_read(void *opaque, uint32_t off, uint8_t *data, uint32_t len)
{
        struct dummy *d = opaque;
        d->config_reads++;
        memcpy(data, d->config + off, len);
}

static void d_config_write(void *opaque, uint32_t off, const uint8_t *data, uint32_t len)
{
        struct dummy *d = opaque;
        d->config_writes++;
        memcpy(d->config + off, data, len);
}

static int d_activate(void *opaque, uint64_t features)
{
        struct dummy *d = opaque;
        d->activates++;
        d->activated_features = features;
        return d->activate_result;
}

/* Echo device: returns every chain with its writable part filled with 0xab. */
static void d_queue_notify(void *opaque, unsigned q)
{
        struct dummy *d = opaque;
        d->notifies[q]++;
        const struct gmem *mem = virtio_mem(VD);
        while (virtio_pop(VD, q, &ch) > 0) {
                static uint8_t fill[4096];
                memset(fill, 0xab, sizeof(fill));
                uint32_t n = ch.write_len < sizeof(fill) ? ch.write_len : sizeof(fill);
                d->bytes_seen += ch.read_len;
                virtq_chain_write(mem, &ch, 0, fill, n);
                virtio_push(VD, q, ch.head, n);
        }
        virtio_signal_used(VD, q);
}

static void d_reset(void *opaque)
{
        struct dummy *d = opaque;
        d->resets++;
}

static const struct virtio_dev_ops dummy_ops = {
    .name = "dummy",
    .device_id = 0x42,
    .features = 1ull << DEV_FEATURE_BIT,
    .num_queues = 2,
    .queue_max = 16,
    .config_size = 8,
    .config_read = d_config_read,
    .config_write = d_config_write,
    .activate = d_activate,
    .queue_notify = d_queue_notify,
    .reset = d_reset,
};

#define FEATURES ((1ull << VIRTIO_F_VERSION_1) | (1ull << DEV_FEATURE_BIT))

static void start(void)
{
        REQUIRE(fake_vm_init(&vm) == 0);
        memset(&dev, 0, sizeof(dev));
        memcpy(dev.config, "CONFIG!!", 8);
        char err[256] = "";
        int r = fake_virtio_create(&vm.env, BASE, GSI, &dummy_ops, &dev, &VD, &T, err, sizeof(err));
        if (r < 0)
                FAILF("virtio_mmio_create: %d %s", r, err);
}

static void stop_all(void)
{
        virtio_mmio_destroy(T);
        T = NULL;
        virtio_dev_destroy(VD);
        VD = NULL;
        fake_vm_destroy(&vm);
}

static uint32_t rd(uint64_t off)
{
        return mmio_r32(&vm, BASE + off);
}

static void wr(uint64_t off, uint32_t v)
{
        mmio_w32(&vm, BASE + off, v);
}

/* Notifies q, lets the device run, and takes the one used element it must have returned for
 * `head`. Returns its length. */
static uint32_t round_trip(struct gq *q, uint16_t head)
{
        gq_kick(q);
        fake_run(&vm, 0);
        uint32_t id = 0, len = 0;
        REQUIRE_EQ(gq_used(q, &id, &len), 1);
        CHECK_EQ(id, head);
        return len;
}

/* Negotiates, sets up both queues, DRIVER_OK. */
static void bring_up(struct gq *q0, struct gq *q1)
{
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        REQUIRE_EQ(gq_setup(q0, &vm, BASE, 0, 16), 1);
        if (q1)
                REQUIRE_EQ(gq_setup(q1, &vm, BASE, 1, 8), 1);
        guest_driver_ok(&vm, BASE);
        REQUIRE(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK);
        fake_run(&vm, 0);
}

static void t_handshake(void)
{
        start();
        CHECK_EQ(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
        CHECK_EQ(rd(VIRTIO_MMIO_VERSION), 2);
        CHECK_EQ(rd(VIRTIO_MMIO_DEVICE_ID), 0x42);
        CHECK_EQ(rd(VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
        CHECK_EQ(vm.irq_gsi, GSI);
        CHECK(vm.irq_fd >= 0);
        CHECK_EQ(rd(VIRTIO_MMIO_STATUS), 0);

        wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        CHECK_EQ(rd(VIRTIO_MMIO_DEVICE_FEATURES), (1u << DEV_FEATURE_BIT) | (1u << 28));
        wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        CHECK_EQ(rd(VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 is bit 32 */
        wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
        CHECK_EQ(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);
        wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
        CHECK_EQ(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0);

        uint32_t st = guest_negotiate(&vm, BASE, FEATURES | (1ull << VIRTIO_F_INDIRECT_DESC));
        CHECK_EQ(st, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);

        wr(VIRTIO_MMIO_QUEUE_SEL, 0);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        wr(VIRTIO_MMIO_QUEUE_SEL, 2);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);

        struct gq q0, q1;
        CHECK_EQ(gq_setup(&q0, &vm, BASE, 0, 16), 1);
        CHECK_EQ(gq_setup(&q1, &vm, BASE, 1, 4), 1);
        CHECK_EQ(fake_active_ioev(&vm), 2);
        CHECK_EQ(vm.ioev[0].addr, BASE + 0x50);
        CHECK_EQ(vm.ioev[0].len, 4);
        CHECK_EQ(vm.ioev[0].match, 0);
        CHECK_EQ(vm.ioev[1].match, 1);
        wr(VIRTIO_MMIO_QUEUE_SEL, 0);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), (uint32_t)q0.desc);
        CHECK_EQ(dev.activates, 0);

        guest_driver_ok(&vm, BASE);
        CHECK_EQ(rd(VIRTIO_MMIO_STATUS), 0x0f);
        CHECK_EQ(dev.activates, 1);
        CHECK_EQ(dev.activated_features, FEATURES | (1ull << VIRTIO_F_INDIRECT_DESC));
        CHECK_EQ(vm.stops, 0);

        /* an echo round trip through an indirect chain */
        uint64_t b = guest_alloc(&vm, 64, 64);
        struct gseg s[] = {{b, 16, false}, {b + 16, 48, true}};
        uint16_t head = gq_add_indirect(&q0, s, 2);
        CHECK_EQ(round_trip(&q0, head), 48);
        CHECK_EQ(((uint8_t *)guest_ptr(&vm, b + 16, 48))[47], 0xab);
        CHECK(fake_irq_taken(&vm));
        CHECK_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
        wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        CHECK_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);

        char line[128];
        CHECK(virtio_mmio_cmdline(line, sizeof(line), BASE, GSI) > 0);
        CHECK_STR(line, "virtio_mmio.device=4K@0xd0000000:5");
        CHECK_EQ(virtio_mmio_cmdline(line, 10, BASE, GSI), -ENOSPC);
        stop_all();
}

static void t_feature_negotiation_rules(void)
{
        start();
        /* a feature the device does not offer */
        uint32_t st = guest_negotiate(&vm, BASE, FEATURES | (1ull << 3));
        CHECK(!(st & VIRTIO_STATUS_FEATURES_OK));
        /* a legacy driver (no VERSION_1) */
        st = guest_negotiate(&vm, BASE, 1ull << DEV_FEATURE_BIT);
        CHECK(!(st & VIRTIO_STATUS_FEATURES_OK));
        /* DRIVER_OK without FEATURES_OK is refused */
        wr(VIRTIO_MMIO_STATUS, 0x07);
        CHECK(!(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK));
        CHECK_EQ(dev.activates, 0);
        /* features are frozen after FEATURES_OK */
        st = guest_negotiate(&vm, BASE, FEATURES);
        REQUIRE(st & VIRTIO_STATUS_FEATURES_OK);
        wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        wr(VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
        /* clearing bits is not possible without a reset; NEEDS_RESET is the device's */
        wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_NEEDS_RESET);
        CHECK_EQ(rd(VIRTIO_MMIO_STATUS), 0x0b);
        guest_driver_ok(&vm, BASE);
        CHECK_EQ(dev.activated_features, FEATURES);
        /* feature writes before DRIVER are ignored */
        wr(VIRTIO_MMIO_STATUS, 0);
        wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        wr(VIRTIO_MMIO_DRIVER_FEATURES, 1);
        wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        wr(VIRTIO_MMIO_STATUS, 0x0b);
        CHECK(!(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK));
        CHECK_EQ(vm.stops, 0);
        stop_all();
}

static void t_activate_refused(void)
{
        start();
        dev.activate_result = -ENOTSUP;
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        guest_driver_ok(&vm, BASE);
        CHECK(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
        CHECK_EQ(vm.stops, 1);
        CHECK_EQ(vm.stop_reason, VM_STOP_ERROR);
        CHECK(strstr(vm.stop_why, "dummy") != NULL);
        stop_all();
}

static void t_notify_paths(void)
{
        /* with ioeventfd: the guest's write goes straight to the eventfd */
        start();
        struct gq q0, q1;
        bring_up(&q0, &q1);
        uint64_t b = guest_alloc(&vm, 16, 16);
        struct gseg s = {b, 16, true};
        unsigned n1 = dev.notifies[1];
        gq_add(&q1, &s, 1);
        gq_kick(&q1);
        CHECK_EQ(dev.notifies[1], n1); /* not on the "vCPU" */
        fake_run(&vm, 0);
        CHECK_EQ(dev.notifies[1], n1 + 1);
        uint32_t id, len;
        CHECK_EQ(gq_used(&q1, &id, &len), 1);
        stop_all();

        /* without: the MMIO write exits and the transport signals the event thread */
        start();
        vm.ioeventfd_fails = true;
        bring_up(&q0, &q1);
        CHECK_EQ(fake_active_ioev(&vm), 0);
        unsigned before = dev.notifies[0];
        gq_add(&q0, &s, 1);
        wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        fake_run(&vm, 0);
        CHECK_EQ(dev.notifies[0], before + 1);
        CHECK_EQ(gq_used(&q0, &id, &len), 1);
        /* bad queue indices and odd widths do nothing */
        wr(VIRTIO_MMIO_QUEUE_NOTIFY, 2);
        wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
        uint8_t two[2] = {0, 0};
        fake_mmio(&vm, BASE + VIRTIO_MMIO_QUEUE_NOTIFY, two, 2, true);
        fake_run(&vm, 0);
        CHECK_EQ(dev.notifies[0], before + 1);
        stop_all();

        /* buffers made available before DRIVER_OK are looked at once it is set */
        start();
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        REQUIRE_EQ(gq_setup(&q0, &vm, BASE, 0, 16), 1);
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        CHECK_EQ(dev.notifies[0], 0);
        guest_driver_ok(&vm, BASE);
        fake_run(&vm, 0);
        CHECK_EQ(dev.notifies[0], 1);
        CHECK_EQ(gq_used(&q0, &id, &len), 1);
        stop_all();
}

static void t_interrupt_suppressed(void)
{
        start();
        struct gq q0;
        bring_up(&q0, NULL);
        fake_irq_taken(&vm);
        gq_set_avail_flags(&q0, VIRTQ_AVAIL_F_NO_INTERRUPT);
        uint64_t b = guest_alloc(&vm, 16, 16);
        struct gseg s = {b, 16, true};
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        uint32_t id, len;
        CHECK_EQ(gq_used(&q0, &id, &len), 1);
        CHECK(!fake_irq_taken(&vm));
        CHECK_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        stop_all();
}

static void t_level_interrupt(void)
{
        REQUIRE(fake_vm_init(&vm) == 0);
        vm.irqfd_fails = true;
        char err[256];
        REQUIRE_EQ(
            fake_virtio_create(&vm.env, BASE, GSI, &dummy_ops, &dev, &VD, &T, err, sizeof(err)), 0);
        struct gq q0;
        bring_up(&q0, NULL);
        uint64_t b = guest_alloc(&vm, 16, 16);
        struct gseg s = {b, 16, true};
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        CHECK_EQ(vm.line_level, 1);
        CHECK_EQ(vm.line_raises, 1);
        /* A second used buffer before the guest acknowledged the first: with edge MSI routes
         * a line that stays high would never interrupt again, so it is a new delivery. */
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        CHECK_EQ(vm.line_raises, 2);
        wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG); /* not the pending bit */
        CHECK_EQ(vm.line_level, 1);
        wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        CHECK_EQ(vm.line_level, 0);
        /* a reset lowers the line too */
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        CHECK_EQ(vm.line_level, 1);
        wr(VIRTIO_MMIO_STATUS, 0);
        CHECK_EQ(vm.line_level, 0);
        stop_all();

        /* neither irqfd nor irq_line: refused */
        REQUIRE(fake_vm_init(&vm) == 0);
        vm.env.irqfd = NULL;
        vm.env.irq_line = NULL;
        CHECK_EQ(
            fake_virtio_create(&vm.env, BASE, GSI, &dummy_ops, &dev, &VD, &T, err, sizeof(err)),
            -EINVAL);
        CHECK(T == NULL);
        fake_vm_destroy(&vm);
}

static void t_reset_undoes_everything(void)
{
        start();
        struct gq q0, q1;
        bring_up(&q0, &q1);
        CHECK_EQ(fake_active_ioev(&vm), 2);
        uint64_t b = guest_alloc(&vm, 16, 16);
        struct gseg s = {b, 16, true};
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        CHECK(rd(VIRTIO_MMIO_INTERRUPT_STATUS) != 0);

        unsigned resets = dev.resets;
        wr(VIRTIO_MMIO_STATUS, 0);
        CHECK_EQ(dev.resets, resets + 1);
        CHECK_EQ(rd(VIRTIO_MMIO_STATUS), 0);
        CHECK_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        CHECK_EQ(fake_active_ioev(&vm), 0);
        CHECK_EQ(vm.ioev_deassigns, 2);
        for (unsigned i = 0; i < 2; i++) {
                wr(VIRTIO_MMIO_QUEUE_SEL, i);
                CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
                CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), 0);
        }
        /* a stale notification after reset reaches nobody */
        unsigned before = dev.notifies[0];
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        fake_run(&vm, 0);
        CHECK_EQ(dev.notifies[0], before);

        /* and the device comes back after a fresh handshake */
        bring_up(&q0, &q1);
        CHECK_EQ(fake_active_ioev(&vm), 2);
        gq_add(&q0, &s, 1);
        gq_kick(&q0);
        fake_run(&vm, 0);
        uint32_t id, len;
        CHECK_EQ(gq_used(&q0, &id, &len), 1);
        CHECK_EQ(vm.stops, 0);
        stop_all();
}

static void t_odd_register_access(void)
{
        start();
        uint8_t d[8];
        for (uint32_t len = 1; len <= 8; len *= 2) {
                memset(d, 0x55, sizeof(d));
                fake_mmio(&vm, BASE + VIRTIO_MMIO_MAGIC_VALUE, d, len, false);
                if (len != 4)
                        CHECK(d[0] == 0 && d[len - 1] == 0);
        }
        memset(d, 0x55, sizeof(d));
        fake_mmio(&vm, BASE + 1, d, 4, false);
        CHECK(d[0] == 0 && d[3] == 0);
        fake_mmio(&vm, BASE + 0x0fe, d, 2, false);
        CHECK(d[0] == 0);

        /* narrow or unaligned status writes are ignored */
        uint8_t one = VIRTIO_STATUS_ACKNOWLEDGE;
        fake_mmio(&vm, BASE + VIRTIO_MMIO_STATUS, &one, 1, true);
        uint8_t eight[8] = {1, 0, 0, 0, 0, 0, 0, 0};
        fake_mmio(&vm, BASE + VIRTIO_MMIO_STATUS, eight, 8, true);
        fake_mmio(&vm, BASE + VIRTIO_MMIO_STATUS + 2, eight, 4, true);
        CHECK_EQ(rd(VIRTIO_MMIO_STATUS), 0);

        /* config space: any width that fits, nothing beyond config_size */
        memset(d, 0, sizeof(d));
        fake_mmio(&vm, BASE + 0x100, d, 8, false);
        CHECK(memcmp(d, "CONFIG!!", 8) == 0);
        fake_mmio(&vm, BASE + 0x103, d, 1, false);
        CHECK(d[0] == 'F');
        fake_mmio(&vm, BASE + 0x106, d, 2, false);
        CHECK(d[0] == '!' && d[1] == '!');
        unsigned reads = dev.config_reads;
        memset(d, 0x55, sizeof(d));
        fake_mmio(&vm, BASE + 0x106, d, 4, false);
        CHECK(d[0] == 0 && d[3] == 0);
        fake_mmio(&vm, BASE + 0x108, d, 1, false);
        fake_mmio(&vm, BASE + 0xffc, d, 4, false);
        fake_mmio(&vm, BASE + 0x101, d, 3, false);
        CHECK_EQ(dev.config_reads, reads);
        CHECK(d[0] == 0);
        uint8_t w[2] = {'x', 'y'};
        fake_mmio(&vm, BASE + 0x100, w, 2, true);
        fake_mmio(&vm, BASE + 0x107, w, 2, true); /* crosses the end */
        CHECK(memcmp(dev.config, "xyNFIG!!", 8) == 0);
        /* beyond the window the bus answers all-ones and the device sees nothing */
        CHECK(!fake_mmio(&vm, BASE + 0xffe, d, 4, false));
        CHECK_EQ(vm.stops, 0);
        stop_all();
}

static void expect_failed(const char *why_part)
{
        CHECK(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
        CHECK_EQ(vm.stops, 1);
        CHECK_EQ(vm.stop_reason, VM_STOP_ERROR);
        if (!strstr(vm.stop_why, why_part))
                FAILF("stop reason \"%s\" lacks \"%s\"", vm.stop_why, why_part);
}

static void t_bad_queue_setup(void)
{
        /* QueueNum not a power of two */
        start();
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        struct gq q0;
        memset(&q0, 0, sizeof(q0));
        uint64_t d = guest_alloc(&vm, 4096, 4096), a = guest_alloc(&vm, 4096, 4096),
                 u = guest_alloc(&vm, 4096, 4096);
        guest_set_queue_regs(&vm, BASE, 0, 3, d, a, u);
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        expect_failed("power of two");
        CHECK_EQ(fake_active_ioev(&vm), 0);
        /* a failed device enables nothing more until reset */
        guest_set_queue_regs(&vm, BASE, 0, 16, d, a, u);
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        guest_driver_ok(&vm, BASE);
        CHECK_EQ(dev.activates, 0);
        /* after reset it works */
        wr(VIRTIO_MMIO_STATUS, 0);
        CHECK_EQ(rd(VIRTIO_MMIO_STATUS), 0);
        CHECK_EQ(virtio_failure(VD)[0], 0);
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        guest_set_queue_regs(&vm, BASE, 0, 16, d, a, u);
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 1);
        stop_all();

        /* above QueueNumMax, zero, never written */
        static const uint32_t bad_num[] = {32, 0, 0x80000000u};
        for (unsigned i = 0; i < 3; i++) {
                start();
                REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
                guest_set_queue_regs(&vm, BASE, 1, bad_num[i], d, a, u);
                wr(VIRTIO_MMIO_QUEUE_READY, 1);
                CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
                expect_failed("queue 1");
                stop_all();
        }

        /* ready without addresses: rings all at 0 overlap */
        start();
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        wr(VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(VIRTIO_MMIO_QUEUE_NUM, 16);
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        expect_failed("overlap");
        stop_all();

        /* rings outside RAM */
        start();
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        guest_set_queue_regs(&vm, BASE, 0, 16, 0xfffffffff000ull, a, u);
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        expect_failed("outside guest RAM");
        stop_all();

        /* ready before FEATURES_OK is ignored (not a failure) */
        start();
        wr(VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        guest_set_queue_regs(&vm, BASE, 0, 16, d, a, u);
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        CHECK_EQ(vm.stops, 0);
        stop_all();
}

/* A device may offer a QueueNumMax per queue. Each queue is held to its own maximum (a size
 * that another queue allows still fails the device), and every size must be a power of two. */
static void t_queue_sizes_per_queue(void)
{
        static const uint16_t sizes[2] = {16, 4}, bad_sizes[2] = {16, 3};
        struct virtio_dev_ops ops = dummy_ops;
        ops.queue_sizes = sizes;
        char err[256] = "";
        for (uint32_t num = 4; num <= 8; num += 4) {
                REQUIRE(fake_vm_init(&vm) == 0);
                memset(&dev, 0, sizeof(dev));
                REQUIRE(fake_virtio_create(&vm.env, BASE, GSI, &ops, &dev, &VD, &T, err,
                                           sizeof(err)) == 0);
                wr(VIRTIO_MMIO_QUEUE_SEL, 0);
                CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 16);
                wr(VIRTIO_MMIO_QUEUE_SEL, 1);
                CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 4);
                REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
                struct gq q0;
                REQUIRE_EQ(gq_setup(&q0, &vm, BASE, 0, 16), 1);
                uint64_t d = guest_alloc(&vm, 4096, 4096), a = guest_alloc(&vm, 4096, 4096),
                         u = guest_alloc(&vm, 4096, 4096);
                guest_set_queue_regs(&vm, BASE, 1, num, d, a, u);
                wr(VIRTIO_MMIO_QUEUE_READY, 1);
                if (num == 4) {
                        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 1);
                        CHECK_EQ(vm.stops, 0);
                } else {
                        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
                        expect_failed("queue 1: size 8 above the maximum 4");
                }
                stop_all();
        }
        REQUIRE(fake_vm_init(&vm) == 0);
        ops.queue_sizes = bad_sizes;
        struct virtio_mmio *t2 = NULL;
        CHECK_EQ(fake_virtio_create(&vm.env, BASE, GSI, &ops, &dev, &VD2, &t2, err, sizeof(err)),
                 -EINVAL);
        CHECK(t2 == NULL);
        fake_vm_destroy(&vm);
}

static void t_queue_regs_frozen(void)
{
        start();
        struct gq q0;
        bring_up(&q0, NULL);
        wr(VIRTIO_MMIO_QUEUE_SEL, 0);
        wr(VIRTIO_MMIO_QUEUE_NUM, 2);
        wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1234000);
        wr(VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 7);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), (uint32_t)q0.desc);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_DEVICE_HIGH), 0);
        /* ready again is a no-op */
        wr(VIRTIO_MMIO_QUEUE_READY, 1);
        CHECK_EQ(fake_active_ioev(&vm), 1);
        CHECK_EQ(vm.stops, 0);
        /* dropping a queue while the device runs is a driver bug */
        wr(VIRTIO_MMIO_QUEUE_READY, 0);
        expect_failed("disabled");
        stop_all();

        /* before DRIVER_OK (Linux's error path) it is allowed */
        start();
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        REQUIRE_EQ(gq_setup(&q0, &vm, BASE, 0, 16), 1);
        wr(VIRTIO_MMIO_QUEUE_READY, 0);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_READY), 0);
        CHECK_EQ(fake_active_ioev(&vm), 0);
        CHECK_EQ(vm.stops, 0);
        stop_all();
}

static void t_malformed_chain_fails_device(void)
{
        start();
        struct gq q0, q1;
        bring_up(&q0, &q1);
        fake_irq_taken(&vm);
        gq_write_desc(&q0, 0, 0x20000, 4, VIRTQ_DESC_F_NEXT, 1);
        gq_write_desc(&q0, 1, 0x20000, 4, VIRTQ_DESC_F_NEXT, 0);
        gq_publish(&q0, 0);
        gq_kick(&q0);
        fake_run(&vm, 0);
        expect_failed("queue 0");
        CHECK(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
        CHECK(fake_irq_taken(&vm));
        CHECK(!virtio_live(VD));
        /* the other queue is dead too */
        unsigned before = dev.notifies[1];
        uint64_t b = guest_alloc(&vm, 16, 16);
        struct gseg s = {b, 16, true};
        gq_add(&q1, &s, 1);
        gq_kick(&q1);
        fake_run(&vm, 0);
        CHECK_EQ(dev.notifies[1], before);
        uint32_t id, len;
        CHECK_EQ(gq_used(&q1, &id, &len), 0);
        /* reset + handshake: alive again */
        bring_up(&q0, &q1);
        gq_add(&q1, &s, 1);
        gq_kick(&q1);
        fake_run(&vm, 0);
        CHECK_EQ(gq_used(&q1, &id, &len), 1);

        /* avail index jumping ahead fails it the same way */
        gq_set_avail_idx(&q1, (uint16_t)(q1.avail_idx + 100));
        gq_kick(&q1);
        fake_run(&vm, 0);
        CHECK(rd(VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
        stop_all();
}

static void t_config_generation(void)
{
        start();
        struct gq q0;
        uint32_t g0 = rd(VIRTIO_MMIO_CONFIG_GENERATION);
        virtio_lock(VD);
        virtio_config_changed(VD); /* before DRIVER_OK: no interrupt */
        virtio_unlock(VD);
        CHECK_EQ(rd(VIRTIO_MMIO_CONFIG_GENERATION), g0 + 1);
        CHECK_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        bring_up(&q0, NULL);
        fake_irq_taken(&vm);
        virtio_lock(VD);
        virtio_config_changed(VD);
        virtio_unlock(VD);
        CHECK_EQ(rd(VIRTIO_MMIO_CONFIG_GENERATION), g0 + 2);
        CHECK_EQ(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        CHECK(fake_irq_taken(&vm));
        CHECK_EQ(rd(VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffff);
        stop_all();
}

static void t_create_errors(void)
{
        char err[256] = "";
        start();
        struct virtio_mmio *t2 = (struct virtio_mmio *)1;
        CHECK_EQ(fake_virtio_create(&vm.env, BASE + 0x800, GSI, &dummy_ops, &dev, &VD2, &t2, err,
                                    sizeof(err)),
                 -EEXIST);
        CHECK(t2 == NULL);
        CHECK(strstr(err, "dummy") != NULL);
        struct virtio_dev_ops bad = dummy_ops;
        bad.queue_max = 12;
        CHECK_EQ(fake_virtio_create(&vm.env, BASE + 0x10000, GSI, &bad, &dev, &VD2, &t2, err,
                                    sizeof(err)),
                 -EINVAL);
        bad = dummy_ops;
        bad.num_queues = 0;
        CHECK_EQ(fake_virtio_create(&vm.env, BASE + 0x10000, GSI, &bad, &dev, &VD2, &t2, err,
                                    sizeof(err)),
                 -EINVAL);
        bad = dummy_ops;
        bad.config_size = 0x1000;
        CHECK_EQ(fake_virtio_create(&vm.env, BASE + 0x10000, GSI, &bad, &dev, &VD2, &t2, err,
                                    sizeof(err)),
                 -EINVAL);
        virtio_mmio_destroy(NULL);
        stop_all();
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

/* A guest writing anything anywhere in any order: nothing crashes, and a reset plus a proper
 * handshake always brings the device back. */
static void t_register_garbage(void)
{
        static const uint32_t regs[] = {0x000, 0x004, 0x010, 0x014, 0x020, 0x024, 0x030,
                                        0x034, 0x038, 0x03c, 0x040, 0x044, 0x050, 0x060,
                                        0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0a0,
                                        0x0a4, 0x0ac, 0x0b0, 0x0fc, 0x100, 0x104, 0x108};
        unsigned notifies = 0, failures = 0, activations = 0;
        for (unsigned round = 0; round < 20; round++) {
                start();
                for (unsigned i = 0; i < 20000; i++) {
                        uint64_t off = rnd() % 3 ? regs[rnd() % (sizeof(regs) / sizeof(regs[0]))]
                                                 : rnd() % VIRTIO_MMIO_WINDOW;
                        uint32_t len = 1u << (rnd() % 4);
                        uint64_t v = rnd();
                        /* values that matter most of the time */
                        if (rnd() % 2)
                                v %= 20;
                        if (off == 0x038 && rnd() % 2)
                                v = 1u << (rnd() % 6);
                        if ((off == 0x080 || off == 0x090 || off == 0x0a0) && rnd() % 2)
                                v = (rnd() % FAKE_RAM) & ~0xfffull;
                        if (off == 0x070 && rnd() % 4 == 0)
                                v = 0x0f;
                        if (i % 500 == 0 && rnd() % 2)
                                guest_negotiate(&vm, BASE, rnd() % 2 ? FEATURES : rnd());
                        if (i % 500 == 250 && rnd() % 2) {
                                struct gq gq;
                                vm.next_free = 0x20000 + (rnd() % 64) * 0x10000;
                                gq_setup(&gq, &vm, BASE, rnd() % 2, (uint16_t)(1u << (rnd() % 5)));
                                guest_driver_ok(&vm, BASE);
                        }
                        uint8_t d[8];
                        memcpy(d, &v, 8);
                        if (len == 4 && rnd() % 4)
                                off &= ~3ull;
                        fake_mmio(&vm, BASE + off, d, len, rnd() % 3 != 0);
                        if (i % 64 == 0) {
                                /* let queued notifications run, against random ring contents */
                                uint8_t *ram = guest_ptr(&vm, 0, 0x500000);
                                for (unsigned k = 0; k < 256; k++)
                                        ram[rnd() % 0x500000] =
                                            (uint8_t)(rnd() % 4 ? rnd() % 4 : rnd());
                                fake_run(&vm, 0);
                        }
                }
                fake_run(&vm, 0);
                notifies += dev.notifies[0] + dev.notifies[1];
                failures += vm.stops;
                activations += dev.activates;
                /* recovers */
                vm.next_free = 0x200000;
                struct gq q0;
                wr(VIRTIO_MMIO_STATUS, 0);
                CHECK_EQ(fake_active_ioev(&vm), 0);
                bring_up(&q0, NULL);
                uint64_t b = guest_alloc(&vm, 16, 16);
                struct gseg s = {b, 16, true};
                gq_add(&q0, &s, 1);
                gq_kick(&q0);
                fake_run(&vm, 0);
                uint32_t id, len;
                CHECK_EQ(gq_used(&q0, &id, &len), 1);
                stop_all();
        }
        printf("info garbage: %u notifies, %u failures, %u activations\n", notifies, failures,
               activations);
        CHECK(notifies > 0 && failures > 0 && activations > 0);
}

/* The latch registers are coalesced-MMIO zones from the guest's first access on: writes there
 * (selectors, feature words, queue size and ring addresses) wait in KVM's ring and are replayed
 * before the next access that exits. The fake VM does the same (fake_mmio), so every test here
 * runs that way; this one checks the zones and what goes through them. */
static void t_latch_registers_coalesced(void)
{
        start();
        CHECK_EQ(vm.nzones, 0); /* nothing bound until the guest looks */
        CHECK_EQ(rd(VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
        REQUIRE_EQ(vm.nzones, 2);
        CHECK_EQ(vm.zone[0].addr, BASE);
        CHECK_EQ(vm.zone[0].len, VIRTIO_MMIO_QUEUE_READY);
        CHECK_EQ(vm.zone[1].addr, BASE + VIRTIO_MMIO_QUEUE_DESC_LOW);
        CHECK_EQ(vm.zone[1].len, VIRTIO_MMIO_SHM_LEN_LOW - VIRTIO_MMIO_QUEUE_DESC_LOW);
        /* Status, QueueReady, QueueNotify and InterruptACK act at once: never in a zone. */
        static const uint64_t acting[] = {VIRTIO_MMIO_QUEUE_READY, VIRTIO_MMIO_QUEUE_NOTIFY,
                                          VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_STATUS};
        for (unsigned i = 0; i < 4; i++)
                for (unsigned z = 0; z < vm.nzones; z++)
                        CHECK(BASE + acting[i] < vm.zone[z].addr ||
                              BASE + acting[i] >= vm.zone[z].addr + vm.zone[z].len);

        /* Features: the selector and driver words are queued and land before FEATURES_OK. */
        unsigned before = vm.coalesced;
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        CHECK_EQ(vm.coalesced - before, 4);
        /* A queue: 8 writes queued (select, size, 3 addresses of 2 halves), then QueueReady
         * exits, and the queue starts with what they said. */
        struct gq q0;
        before = vm.coalesced;
        REQUIRE_EQ(gq_setup(&q0, &vm, BASE, 0, 16), 1);
        CHECK_EQ(vm.coalesced - before, 8);
        wr(VIRTIO_MMIO_QUEUE_SEL, 0);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), (uint32_t)q0.desc);
        CHECK_EQ(rd(VIRTIO_MMIO_QUEUE_DEVICE_LOW), (uint32_t)q0.used);
        guest_driver_ok(&vm, BASE);
        struct gseg s = {guest_alloc(&vm, 64, 8), 64, true};
        CHECK_EQ(round_trip(&q0, gq_add(&q0, &s, 1)), 64);
        stop_all();

        /* Without coalescing (the hook fails) everything exits and works the same. */
        start();
        vm.coalesce_fails = true;
        struct gq q1;
        REQUIRE(guest_negotiate(&vm, BASE, FEATURES) & VIRTIO_STATUS_FEATURES_OK);
        REQUIRE_EQ(gq_setup(&q1, &vm, BASE, 1, 8), 1);
        guest_driver_ok(&vm, BASE);
        CHECK_EQ(vm.coalesced, 0);
        CHECK_EQ(vm.stops, 0);
        stop_all();
}

int main(void)
{
        T_RUN(t_handshake);
        T_RUN(t_feature_negotiation_rules);
        T_RUN(t_activate_refused);
        T_RUN(t_notify_paths);
        T_RUN(t_interrupt_suppressed);
        T_RUN(t_level_interrupt);
        T_RUN(t_reset_undoes_everything);
        T_RUN(t_odd_register_access);
        T_RUN(t_bad_queue_setup);
        T_RUN(t_queue_sizes_per_queue);
        T_RUN(t_queue_regs_frozen);
        T_RUN(t_malformed_chain_fails_device);
        T_RUN(t_config_generation);
        T_RUN(t_create_errors);
        T_RUN(t_register_garbage);
        T_RUN(t_latch_registers_coalesced);
        return T_DONE();
}
