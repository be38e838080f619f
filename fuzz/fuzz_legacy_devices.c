/* Fuzz target: a hostile guest's port and MMIO accesses to the devices outside virtio, as vCPU
 * exits deliver them through the buses: the 16550 UART, the i8042, ember's status port and the
 * IOAPIC (whose redirection entries become MSI routes). Accesses come in any size (including
 * odd ones), at any offset in and around each device. Nothing may crash, an
 * IOAPIC route table may never exceed its pins, and every stop must say why.
 *
 *   fuzz/run.sh fuzz_legacy_devices [seconds]    libFuzzer (clang)
 *   build/fuzz/fuzz_legacy_devices [--random N] [FILE...]    replay / random inputs (any cc)
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"
#include "core/bus.h"
#include "core/dev_env.h"
#include "core/metrics.h"
#include "dev/ioapic.h"
#include "dev/legacy.h"
#include "ember/guest_abi.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fake {
        unsigned stops, routes_calls;
        char why[200];
};

static int fake_msi_routes(void *hv, const struct dev_msi_route *routes, unsigned n)
{
        struct fake *f = hv;
        f->routes_calls++;
        if (n > X86_IOAPIC_PINS)
                abort(); /* more routes than pins */
        for (unsigned i = 0; i < n; i++)
                if (routes[i].gsi >= X86_IOAPIC_PINS || (routes[i].address >> 20) != 0xfee)
                        abort(); /* a route outside the IOAPIC's pins or the MSI window */
        return 0;
}

static int fake_coalesce(void *hv, uint64_t addr, uint32_t len)
{
        return 0;
}

static int fake_irq_line(void *hv, uint32_t gsi, int level)
{
        return 0;
}

static void fake_stop(void *hv, enum vm_stop_reason reason, int code, const char *why)
{
        struct fake *f = hv;
        if (!why || !why[0])
                abort(); /* every stop says why */
        if (reason == VM_STOP_GUEST_EXIT && (code < 0 || code > 255))
                abort();
        f->stops++;
        snprintf(f->why, sizeof(f->why), "%s", why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static int devnull = -1;
        if (devnull < 0 && (devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
                abort();
        struct fake f = {0};
        struct bus pio, mmio;
        bus_init(&pio);
        bus_init(&mmio);
        struct dev_env env = {.pio = &pio,
                              .mmio = &mmio,
                              .hv = &f,
                              .irq_line = fake_irq_line,
                              .msi_routes = fake_msi_routes,
                              .coalesce_writes = fake_coalesce,
                              .stop = fake_stop};
        struct ember_metrics *m = metrics_new();
        struct serial16550 serial;
        struct i8042 kbd;
        struct status_port status;
        struct ioapic ioapic;
        if (!m || serial16550_init(&serial, &env, X86_COM1_PORT, X86_COM1_IRQ, devnull) != 0 ||
            i8042_init(&kbd, &env) != 0 || status_port_init(&status, &env, m) != 0 ||
            ioapic_init(&ioapic, &env, X86_IOAPIC_ADDR, X86_IOAPIC_ID) != 0)
                abort();

        /* Ports around each device, and the IOAPIC's window with some room either side. */
        static const uint16_t ports[] = {X86_COM1_PORT, X86_I8042_DATA, EMBER_ABI_PORT, 0x0};
        struct fuzz_input in = {data, size};
        while (in.n) {
                uint32_t op = fuzz_take(&in, 1);
                /* KVM reports 1..8 bytes for MMIO, 1/2/4 for port I/O: all 1..8 here. */
                uint32_t len = 1 + (op >> 1) % 8;
                bool write = op & 1;
                uint8_t buf[8];
                uint32_t v = fuzz_take(&in, 4);
                memcpy(buf, &v, 4);
                memcpy(buf + 4, &v, 4);
                if (op & 0x80) {
                        uint64_t off = fuzz_take(&in, 2) % 0x1400;
                        bus_dispatch(&mmio, X86_IOAPIC_ADDR - 0x200 + off, buf, len, write);
                } else {
                        uint16_t base = ports[(op >> 4) % 4]; /* 0: ports nobody claims */
                        uint16_t port = (uint16_t)(base + fuzz_take(&in, 1) % 16 - 4);
                        bus_dispatch(&pio, port, buf, len, write);
                }
        }
        if (ioapic.nroutes > X86_IOAPIC_PINS)
                abort();
        ioapic_destroy(&ioapic);
        serial16550_destroy(&serial);
        metrics_release(m);
        return 0;
}
