/* ember's status port (src/dev/status_port.c), driven through the port I/O bus as ember-init
 * would: the magic, the exit status, and the guest ABI version that init announces. */
#include "test.h"

#include "core/metrics.h"
#include "dev/legacy.h"
#include "ember/guest_abi.h"

static struct bus pio;
static struct dev_env env;
static struct status_port P;
static struct ember_metrics *metrics;

static struct {
        unsigned stops;
        enum vm_stop_reason reason;
        int code;
        char why[256];
} vm;

static void fake_stop(void *hv, enum vm_stop_reason reason, int code, const char *why)
{
        /* Like the VM's: the first stop decides. */
        if (vm.stops++)
                return;
        vm.reason = reason;
        vm.code = code;
        snprintf(vm.why, sizeof(vm.why), "%s", why);
}

static void setup(void)
{
        memset(&vm, 0, sizeof(vm));
        bus_init(&pio);
        env = (struct dev_env){.pio = &pio, .stop = fake_stop};
        metrics = metrics_new();
        REQUIRE(metrics);
        REQUIRE_EQ(status_port_init(&P, &env, metrics), 0);
}

static void done(void)
{
        metrics_release(metrics);
}

static void port_write(uint32_t cmd, uint32_t arg)
{
        uint32_t w = EMBER_ABI_WORD(cmd, arg);
        uint8_t b[4];
        memcpy(b, &w, 4);
        bus_dispatch(&pio, EMBER_ABI_PORT, b, 4, true);
}

static void t_reads_magic(void)
{
        setup();
        uint8_t b[4] = {0};
        bus_dispatch(&pio, EMBER_ABI_PORT, b, 4, false);
        uint32_t v;
        memcpy(&v, b, 4);
        CHECK_EQ(v, EMBER_ABI_PORT_MAGIC);
        done();
}

static void t_matching_version_then_exit(void)
{
        setup();
        port_write(EMBER_ABI_CMD_INIT_REACHED, EMBER_ABI_VERSION);
        CHECK_EQ(vm.stops, 0);
        CHECK_EQ(atomic_load(&P.abi_version), EMBER_ABI_VERSION);
        port_write(EMBER_ABI_CMD_EXEC, 0);
        CHECK_EQ(vm.stops, 0);
        port_write(EMBER_ABI_CMD_EXIT, 7);
        CHECK_EQ(vm.stops, 1);
        CHECK_EQ(vm.reason, VM_STOP_GUEST_EXIT);
        CHECK_EQ(vm.code, 7);
        done();
}

/* An init of another ABI version stops the VM with an error that names both versions, and
 * what it reports afterwards (an exit status here) is not taken. */
static void t_version_mismatch_stops_vm(void)
{
        static const uint32_t other[] = {0, EMBER_ABI_VERSION + 1, EMBER_ABI_ARG_MASK};
        for (unsigned i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
                setup();
                port_write(EMBER_ABI_CMD_INIT_REACHED, other[i]);
                CHECK_EQ(vm.stops, 1);
                CHECK_EQ(vm.reason, VM_STOP_ERROR);
                char theirs[64], ours[64];
                snprintf(theirs, sizeof(theirs), "version %u,", other[i]);
                snprintf(ours, sizeof(ours), "version %u ", EMBER_ABI_VERSION);
                if (!strstr(vm.why, theirs) || !strstr(vm.why, ours) || !strstr(vm.why, "ABI"))
                        t_fail(__FILE__, __LINE__, "reason does not name both versions: %s",
                               vm.why);
                port_write(EMBER_ABI_CMD_EXIT, 0);
                CHECK_EQ(vm.stops, 1);
                CHECK_EQ(vm.reason, VM_STOP_ERROR);
                done();
        }
}

static void t_exit_status_above_255_is_an_error(void)
{
        setup();
        port_write(EMBER_ABI_CMD_INIT_REACHED, EMBER_ABI_VERSION);
        port_write(EMBER_ABI_CMD_EXIT, 256);
        CHECK_EQ(vm.stops, 1);
        CHECK_EQ(vm.reason, VM_STOP_ERROR);
        done();
}

int main(void)
{
        T_RUN(t_reads_magic);
        T_RUN(t_matching_version_then_exit);
        T_RUN(t_version_mismatch_stops_vm);
        T_RUN(t_exit_status_above_255_is_an_error);
        return T_DONE();
}
