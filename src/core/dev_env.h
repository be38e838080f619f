/* What a device gets from the VM it lives in. The KVM-facing parts are hooks, so devices do
 * not depend on the KVM layer and unit tests can drive them with fakes. */
#ifndef EMBER_CORE_DEV_ENV_H
#define EMBER_CORE_DEV_ENV_H

#include <stdbool.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/evloop.h"
#include "core/gmem.h"

struct ember_metrics;

/* Why a device asks the VM to stop. */
enum vm_stop_reason {
        VM_STOP_GUEST_EXIT,  /* workload status reported through the status port */
        VM_STOP_GUEST_RESET, /* i8042 reset / triple fault / shutdown, no status */
        VM_STOP_ERROR,       /* device or VMM failure */
};

/* An MSI route: interrupts raised on `gsi` are delivered as this message. */
struct dev_msi_route {
        uint32_t gsi;
        uint64_t address;
        uint32_t data;
};

struct dev_env {
        const struct gmem *mem;
        struct evloop *loop;           /* serviced by the VM's event thread */
        struct ember_metrics *metrics; /* the VM's (core/metrics.h), or NULL */
        struct bus *pio;
        struct bus *mmio;
        void *hv; /* first argument of every hook */
        /* KVM_IOEVENTFD on MMIO: the guest's `len`-byte write at `addr` (equal to `match` when
         * has_match) signals eventfd `fd` without leaving the kernel. */
        int (*ioeventfd)(void *hv, int fd, uint64_t addr, uint32_t len, bool has_match,
                         uint64_t match, bool assign);
        /* KVM_IRQFD: a write to eventfd `fd` raises (edge) interrupt `gsi`. */
        int (*irqfd)(void *hv, int fd, uint32_t gsi, bool assign);
        /* KVM_IRQ_LINE, for legacy devices: raising the line delivers the GSI's route. */
        int (*irq_line)(void *hv, uint32_t gsi, int level);
        /* KVM_SET_GSI_ROUTING: the GSI table becomes exactly these `n` MSI routes. */
        int (*msi_routes)(void *hv, const struct dev_msi_route *routes, unsigned n);
        /* KVM coalesced MMIO, optional (NULL, or a failure: writes exit as usual). The guest's
         * writes to [addr, addr + len) are queued in the kernel instead of exiting, and are
         * replayed through the bus, in order, before the next exit of any vCPU is handled. Only
         * for registers whose writes take effect at a later access that exits anyway. Callable
         * while the VM runs, from a device's bus handler on a vCPU thread. */
        int (*coalesce_writes)(void *hv, uint64_t addr, uint32_t len);
        /* Ends the VM; callable from any thread, first call wins. `code` is the exit status for
         * VM_STOP_GUEST_EXIT and ignored otherwise; `why` is a short text for the VM's error. */
        void (*stop)(void *hv, enum vm_stop_reason reason, int code, const char *why);
};

#endif
