/* The user-space IOAPIC of the split irqchip, driven through the MMIO bus as a guest would:
 * identification registers, redirection entries becoming MSI routes (and only when they
 * change), read-only bits, every delivery mode, masking, and a guest writing garbage. */
#include "test.h"

#include "arch/x86_64/boot.h"
#include "core/gmem.h"
#include "dev/ioapic.h"

#define BASE X86_IOAPIC_ADDR

static struct bus mmio;
static struct dev_env env;
static struct ioapic A;

static struct {
        struct dev_msi_route r[X86_IOAPIC_PINS + 1];
        unsigned n, calls;
        int fail_with;
        unsigned stops;
        enum vm_stop_reason reason;
        char why[200];
        uint64_t coalesced_addr;
        uint32_t coalesced_len;
        unsigned coalesce_calls;
} kvm;

static int fake_coalesce(void *hv, uint64_t addr, uint32_t len)
{
        kvm.coalesce_calls++;
        kvm.coalesced_addr = addr;
        kvm.coalesced_len = len;
        return 0;
}

static int fake_msi_routes(void *hv, const struct dev_msi_route *routes, unsigned n)
{
        kvm.calls++;
        if (kvm.fail_with)
                return kvm.fail_with;
        if (n > X86_IOAPIC_PINS + 1)
                return -E2BIG;
        memcpy(kvm.r, routes, n * sizeof(routes[0]));
        kvm.n = n;
        return 0;
}

static void fake_stop(void *hv, enum vm_stop_reason reason, int code, const char *why)
{
        kvm.stops++;
        kvm.reason = reason;
        snprintf(kvm.why, sizeof(kvm.why), "%s", why);
}

static void setup(void)
{
        memset(&kvm, 0, sizeof(kvm));
        bus_init(&mmio);
        env = (struct dev_env){.mmio = &mmio,
                               .msi_routes = fake_msi_routes,
                               .coalesce_writes = fake_coalesce,
                               .stop = fake_stop};
        REQUIRE_EQ(ioapic_init(&A, &env, BASE, X86_IOAPIC_ID), 0);
}

static void mmio_write(uint64_t off, uint32_t v, uint32_t len)
{
        uint8_t b[8] = {0};
        memcpy(b, &v, sizeof(v));
        bus_dispatch(&mmio, BASE + off, b, len, true);
}

static uint32_t mmio_read(uint64_t off, uint32_t len)
{
        uint8_t b[8];
        memset(b, 0x5a, sizeof(b));
        bus_dispatch(&mmio, BASE + off, b, len, false);
        uint32_t v;
        memcpy(&v, b, sizeof(v));
        return v;
}

static void reg_write(uint32_t reg, uint32_t v)
{
        mmio_write(0x00, reg, 4);
        mmio_write(0x10, v, 4);
}

static uint32_t reg_read(uint32_t reg)
{
        mmio_write(0x00, reg, 4);
        return mmio_read(0x10, 4);
}

static void rte_write(unsigned pin, uint64_t rte)
{
        reg_write(0x10 + 2 * pin + 1, (uint32_t)(rte >> 32));
        reg_write(0x10 + 2 * pin, (uint32_t)rte);
}

static uint64_t rte_read(unsigned pin)
{
        return (uint64_t)reg_read(0x10 + 2 * pin + 1) << 32 | reg_read(0x10 + 2 * pin);
}

static void t_identification_and_reset_state(void)
{
        setup();
        CHECK_EQ(reg_read(0x01), (X86_IOAPIC_PINS - 1) << 16 | 0x11);
        CHECK_EQ(reg_read(0x00), X86_IOAPIC_ID << 24);
        CHECK_EQ(reg_read(0x02), X86_IOAPIC_ID << 24);
        for (unsigned pin = 0; pin < X86_IOAPIC_PINS; pin++)
                CHECK_EQ(rte_read(pin), IOAPIC_RTE_MASKED);
        CHECK_EQ(kvm.calls, 0); /* masking what is masked changes nothing */
        mmio_write(0x00, 0x01, 4);
        CHECK_EQ(mmio_read(0x00, 4), 0x01);
        reg_write(0x00, 0xab00ffff); /* the ID register is writable (bits 31:24) */
        CHECK_EQ(reg_read(0x00), 0xab000000);
        ioapic_destroy(&A);
}

/* The id the guest reads from the IOAPIC's ID register is the one the MP table gives it (and
 * that every interrupt source entry names): Linux takes the table's. */
static void t_id_agrees_with_mp_table(void)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 16 << 20, X86_MMIO_GAP_START), 0);
        char err[256];
        REQUIRE_EQ(x86_mptable_write(&m, 4, err, sizeof(err)), 0);
        const uint8_t *mpf = NULL;
        for (uint64_t a = 0xf0000; a < 0x100000 && !mpf; a += 16) {
                const uint8_t *p = gmem_ptr(&m, a, 16);
                if (p && memcmp(p, "_MP_", 4) == 0)
                        mpf = p;
        }
        REQUIRE(mpf);
        uint32_t physptr = (uint32_t)mpf[4] | (uint32_t)mpf[5] << 8 | (uint32_t)mpf[6] << 16 |
                           (uint32_t)mpf[7] << 24;
        const uint8_t *mpc = gmem_ptr(&m, physptr, 44);
        REQUIRE(mpc && memcmp(mpc, "PCMP", 4) == 0);
        size_t len = (size_t)mpc[4] | (size_t)mpc[5] << 8;
        REQUIRE(gmem_ptr(&m, physptr, len));
        int table_id = -1, intsrcs = 0;
        for (size_t off = 44; off < len; off += mpc[off] == 0 ? 20 : 8) {
                if (mpc[off] == 2)
                        table_id = mpc[off + 1];
                if (mpc[off] == 3) {
                        CHECK_EQ(mpc[off + 6], table_id);
                        intsrcs++;
                }
        }
        gmem_destroy(&m);
        REQUIRE(table_id >= 0);
        CHECK(intsrcs > 0);
        setup();
        CHECK_EQ(reg_read(0x00) >> 24, table_id);
        ioapic_destroy(&A);
        CHECK_EQ(ioapic_init(&A, &env, BASE, 256), -EINVAL);
}

static void t_unmasked_pin_becomes_msi_route(void)
{
        setup();
        rte_write(5, 0x31); /* fixed, physical, edge, unmasked, CPU 0 */
        REQUIRE_EQ(kvm.n, 1);
        CHECK_EQ(kvm.r[0].gsi, 5);
        CHECK_EQ(kvm.r[0].address, 0xfee00000ull);
        CHECK_EQ(kvm.r[0].data, 0x31);
        unsigned calls = kvm.calls;
        rte_write(5, 0x31); /* same entry again: KVM is not asked again */
        CHECK_EQ(kvm.calls, calls);

        rte_write(9, 3ull << 56 | IOAPIC_RTE_DESTMODE | 1u << 8 | 0x42); /* lowest prio, logical */
        REQUIRE_EQ(kvm.n, 2);
        CHECK_EQ(kvm.r[1].gsi, 9);
        CHECK_EQ(kvm.r[1].address, 0xfee03004ull);
        CHECK_EQ(kvm.r[1].data, 0x142);

        rte_write(5, IOAPIC_RTE_MASKED | 0x31); /* masking removes the route */
        REQUIRE_EQ(kvm.n, 1);
        CHECK_EQ(kvm.r[0].gsi, 9);
        CHECK_EQ(rte_read(5), IOAPIC_RTE_MASKED | 0x31);
        ioapic_destroy(&A);
}

static void t_delivery_modes(void)
{
        uint64_t address;
        uint32_t data;
        CHECK(ioapic_rte_to_msi(0x4ull << 8 | 0x02, &address, &data)); /* NMI */
        CHECK_EQ(data, 0x402);
        for (unsigned mode = 0; mode < 8; mode++) {
                bool routed = ioapic_rte_to_msi((uint64_t)mode << 8 | 0x40, &address, &data);
                CHECK_EQ(routed, mode == 0 || mode == 1 || mode == 4);
        }
        CHECK(!ioapic_rte_to_msi(IOAPIC_RTE_MASKED | 0x40, &address, &data));

        /* level-triggered, active-low entries are kept as written but delivered as edges */
        setup();
        rte_write(7, IOAPIC_RTE_LEVEL | IOAPIC_RTE_POLARITY | 0x55);
        REQUIRE_EQ(kvm.n, 1);
        CHECK_EQ(kvm.r[0].data, 0x55);
        CHECK_EQ(rte_read(7), IOAPIC_RTE_LEVEL | IOAPIC_RTE_POLARITY | 0x55);
        rte_write(7, 7u << 8 | 0x55); /* ExtINT: nothing to route (there is no PIC) */
        CHECK_EQ(kvm.n, 0);
        ioapic_destroy(&A);
}

static void t_read_only_and_reserved_bits(void)
{
        setup();
        rte_write(3, ~0ull);
        uint64_t v = rte_read(3);
        CHECK_EQ(v, 0xff0000000001afffull);
        CHECK(!(v & IOAPIC_RTE_DELIVS));
        CHECK(!(v & IOAPIC_RTE_REMOTE_IRR));
        CHECK_EQ(v >> 32 & 0xffffff, 0); /* reserved high bits */
        reg_write(0x01, 0);              /* version is read-only */
        CHECK_EQ(reg_read(0x01), (X86_IOAPIC_PINS - 1) << 16 | 0x11);
        ioapic_destroy(&A);
}

static void t_hostile_accesses(void)
{
        setup();
        /* registers past the table, and IOREGSEL keeps only 8 bits */
        for (uint32_t reg = 0x10 + 2 * X86_IOAPIC_PINS; reg <= 0xff; reg++) {
                reg_write(reg, 0xffffffff);
                CHECK_EQ(reg_read(reg), 0);
        }
        mmio_write(0x00, 0x12345611, 4);
        CHECK_EQ(mmio_read(0x00, 4), 0x11);
        /* other widths and offsets: reads give zero, writes do nothing */
        mmio_write(0x00, 0x10, 4);
        mmio_write(0x10, 0x31, 1);
        mmio_write(0x10, 0x31, 2);
        mmio_write(0x10, 0x31, 8);
        CHECK_EQ(rte_read(0), IOAPIC_RTE_MASKED);
        CHECK_EQ(mmio_read(0x10, 1) & 0xff, 0);
        CHECK_EQ(mmio_read(0x10, 2) & 0xffff, 0);
        for (uint64_t off = 0x04; off < IOAPIC_MMIO_SIZE; off += 0x3c) {
                if (off == 0x10)
                        continue;
                mmio_write(off, 0xffffffff, 4);
                CHECK_EQ(mmio_read(off, 4), 0);
        }
        CHECK_EQ(kvm.calls, 0);
        /* every 32-bit value into every entry: never more routes than pins, never a crash */
        for (uint32_t i = 0; i < 4096; i++) {
                uint32_t x = i * 2654435761u;
                reg_write(0x10 + (x >> 8) % (2 * X86_IOAPIC_PINS), x);
                CHECK(kvm.n <= X86_IOAPIC_PINS);
        }
        ioapic_destroy(&A);
}

static void t_route_failure_stops_the_vm(void)
{
        setup();
        kvm.fail_with = -ENOMEM;
        rte_write(5, 0x31);
        CHECK_EQ(kvm.stops, 1);
        CHECK_EQ(kvm.reason, VM_STOP_ERROR);
        CHECK(strstr(kvm.why, "IOAPIC") != NULL);
        unsigned calls = kvm.calls;
        rte_write(6, 0x32); /* the VM is stopping: KVM is not asked again */
        CHECK_EQ(kvm.calls, calls);
        CHECK_EQ(kvm.stops, 1);
        ioapic_destroy(&A);

        /* the bus is full: init fails with the bus's error */
        bus_init(&mmio);
        static const struct bus_dev_ops none = {0};
        for (unsigned i = 0; i < BUS_MAX_DEVICES; i++)
                REQUIRE_EQ(bus_add(&mmio, 0x1000ull * i, 0x1000, &none, NULL, "x"), 0);
        CHECK_EQ(ioapic_init(&A, &env, BASE, 0), -ENOSPC);
}

/* Only the select register is coalesced: its writes matter only at the next window access,
 * which exits (and replays the queue first). Its zone is asked for once, at the guest's first
 * select write: a VM whose guest never touches the IOAPIC binds nothing on KVM's I/O bus (which
 * would make its destruction wait for an SRCU grace period). Window writes and reads do not ask.
 * Without the hook the IOAPIC works the same. */
static void t_select_register_coalesced_on_first_use(void)
{
        setup();
        CHECK_EQ(kvm.coalesce_calls, 0);
        mmio_read(0x10, 4);
        mmio_write(0x10, 0, 4);
        mmio_read(0x00, 4);
        CHECK_EQ(kvm.coalesce_calls, 0);
        CHECK_EQ(reg_read(0x01) & 0xff, 0x11);
        CHECK_EQ(kvm.coalesce_calls, 1);
        CHECK_EQ(kvm.coalesced_addr, BASE);
        CHECK_EQ(kvm.coalesced_len, 4);
        reg_write(0x10, IOAPIC_RTE_MASKED);
        CHECK_EQ(reg_read(0x00), (X86_IOAPIC_ID & 0xf) << 24);
        CHECK_EQ(kvm.coalesce_calls, 1);
        ioapic_destroy(&A);

        /* No hook: the IOAPIC works the same, every write exits. */
        memset(&kvm, 0, sizeof(kvm));
        bus_init(&mmio);
        env = (struct dev_env){.mmio = &mmio, .msi_routes = fake_msi_routes, .stop = fake_stop};
        REQUIRE_EQ(ioapic_init(&A, &env, BASE, X86_IOAPIC_ID), 0);
        CHECK_EQ(reg_read(0x01) & 0xff, 0x11);
        ioapic_destroy(&A);
}

int main(void)
{
        T_RUN(t_identification_and_reset_state);
        T_RUN(t_id_agrees_with_mp_table);
        T_RUN(t_unmasked_pin_becomes_msi_route);
        T_RUN(t_delivery_modes);
        T_RUN(t_read_only_and_reserved_bits);
        T_RUN(t_hostile_accesses);
        T_RUN(t_route_failure_stops_the_vm);
        T_RUN(t_select_register_coalesced_on_first_use);
        return T_DONE();
}
