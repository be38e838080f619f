#include <stdio.h>
#include <string.h>

#include "core/metrics.h"
#include "dev/legacy.h"
#include "ember/guest_abi.h"

static void status_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        uint32_t magic = EMBER_ABI_PORT_MAGIC;
        memset(data, 0, len);
        if (off == 0 && len == 4)
                memcpy(data, &magic, 4);
}

static void status_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct status_port *p = opaque;
        uint32_t word;
        if (off != 0 || len != 4)
                return; /* only aligned 32-bit words are commands */
        memcpy(&word, data, 4);
        if (atomic_load(&p->abi_refused))
                return;
        uint32_t arg = word & EMBER_ABI_ARG_MASK;
        switch (word >> EMBER_ABI_CMD_SHIFT) {
        case EMBER_ABI_CMD_INIT_REACHED:
                metrics_mark_init(p->metrics);
                atomic_store(&p->abi_version, arg);
                if (arg != EMBER_ABI_VERSION) {
                        /* An init of another ABI would misread the configuration or be misread:
                         * nothing it reports afterwards is taken. */
                        char why[160];
                        snprintf(why, sizeof(why),
                                 "the guest's init speaks ember guest ABI version %u, this ember "
                                 "speaks version %u (init and library from different builds?)",
                                 arg, EMBER_ABI_VERSION);
                        atomic_store(&p->abi_refused, true);
                        p->env->stop(p->env->hv, VM_STOP_ERROR, 0, why);
                }
                break;
        case EMBER_ABI_CMD_EXEC:
                metrics_mark_exec(p->metrics);
                break;
        case EMBER_ABI_CMD_EXIT:
                /* Exit statuses are 0..255; anything else is a confused guest, reported as such. */
                if (arg > 255)
                        p->env->stop(p->env->hv, VM_STOP_ERROR, 0,
                                     "guest reported an exit status above 255");
                else
                        p->env->stop(p->env->hv, VM_STOP_GUEST_EXIT, (int)arg, "workload exited");
                break;
        default:
                break; /* unknown commands are ignored: a newer init may send more */
        }
}

static const struct bus_dev_ops status_ops = {.read = status_read, .write = status_write};

int status_port_init(struct status_port *p, const struct dev_env *env, struct ember_metrics *m)
{
        memset(p, 0, sizeof(*p));
        p->env = env;
        p->metrics = m;
        return bus_add(env->pio, EMBER_ABI_PORT, EMBER_ABI_PORT_LEN, &status_ops, p,
                       "ember-status");
}
