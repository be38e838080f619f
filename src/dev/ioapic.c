#include "dev/ioapic.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define IOAPIC_REG_SELECT 0x00u
#define IOAPIC_REG_WINDOW 0x10u

#define IOAPIC_ID     0x00u
#define IOAPIC_VER    0x01u
#define IOAPIC_ARB    0x02u
#define IOAPIC_REDTBL 0x10u
/* The 82093AA's ID is bits 27:24. ember's is 31:24, as Linux reads it (IO_APIC_reg_00.ID): the
 * MP table gives the IOAPIC an id above every vCPU's APIC id (X86_IOAPIC_ID, 64), and the
 * register must read back what the table says. */
#define IOAPIC_ID_MASK  0xff000000u
#define IOAPIC_ID_SHIFT 24

#define MSI_ADDRESS_BASE       0xfee00000ull
#define MSI_ADDR_DEST_SHIFT    12
#define MSI_ADDR_DEST_LOGICAL  (1ull << 2)
#define MSI_DATA_DELMODE_SHIFT 8

bool ioapic_rte_to_msi(uint64_t rte, uint64_t *address, uint32_t *data)
{
        if (rte & IOAPIC_RTE_MASKED)
                return false;
        unsigned mode = (unsigned)(rte >> IOAPIC_RTE_DELMODE_SHIFT) & 7;
        if (mode != IOAPIC_DELMODE_FIXED && mode != IOAPIC_DELMODE_LOWEST &&
            mode != IOAPIC_DELMODE_NMI)
                return false;
        uint64_t dest = (rte >> IOAPIC_RTE_DEST_SHIFT) & 0xff;
        *address = MSI_ADDRESS_BASE | dest << MSI_ADDR_DEST_SHIFT |
                   ((rte & IOAPIC_RTE_DESTMODE) ? MSI_ADDR_DEST_LOGICAL : 0);
        /* Edge (trigger bit 15 clear): KVM then never asks us for EOIs. */
        *data = (uint32_t)(rte & IOAPIC_RTE_VECTOR) | mode << MSI_DATA_DELMODE_SHIFT;
        return true;
}

/* Pushes the routes of the current entries to KVM if they differ from what it has.
 * Called with the lock held. */
static void ioapic_sync_routes(struct ioapic *a)
{
        struct dev_msi_route want[X86_IOAPIC_PINS];
        /* Compared with memcmp below: the padding must be zero too, or every sync looks like
         * a change and asks KVM again. */
        memset(want, 0, sizeof(want));
        unsigned n = 0;
        for (unsigned pin = 0; pin < X86_IOAPIC_PINS; pin++) {
                uint64_t address;
                uint32_t data;
                if (!ioapic_rte_to_msi(a->rte[pin], &address, &data))
                        continue;
                want[n].gsi = pin;
                want[n].address = address;
                want[n].data = data;
                n++;
        }
        if (a->failed || (n == a->nroutes && !memcmp(want, a->routes, n * sizeof(want[0]))))
                return;
        int rc = a->env->msi_routes ? a->env->msi_routes(a->env->hv, want, n) : -ENOSYS;
        if (rc) {
                char why[128];
                snprintf(why, sizeof(why), "IOAPIC: cannot route interrupts: %s", strerror(-rc));
                a->failed = true;
                a->env->stop(a->env->hv, VM_STOP_ERROR, 0, why);
                return;
        }
        memcpy(a->routes, want, n * sizeof(want[0]));
        a->nroutes = n;
        a->route_updates++;
}

static uint32_t ioapic_reg_read(const struct ioapic *a, uint32_t reg)
{
        switch (reg) {
        case IOAPIC_ID:
                return a->id << IOAPIC_ID_SHIFT;
        case IOAPIC_VER:
                return (X86_IOAPIC_PINS - 1) << 16 | IOAPIC_VERSION;
        case IOAPIC_ARB:
                return a->id << IOAPIC_ID_SHIFT;
        }
        if (reg >= IOAPIC_REDTBL && reg < IOAPIC_REDTBL + 2 * X86_IOAPIC_PINS) {
                uint64_t rte = a->rte[(reg - IOAPIC_REDTBL) / 2];
                return (reg & 1) ? (uint32_t)(rte >> 32) : (uint32_t)rte;
        }
        return 0; /* unimplemented registers read as zero */
}

static void ioapic_reg_write(struct ioapic *a, uint32_t reg, uint32_t value)
{
        if (reg == IOAPIC_ID) {
                a->id = (value & IOAPIC_ID_MASK) >> IOAPIC_ID_SHIFT;
                return;
        }
        if (reg < IOAPIC_REDTBL || reg >= IOAPIC_REDTBL + 2 * X86_IOAPIC_PINS)
                return; /* read-only or unimplemented */
        uint64_t *rte = &a->rte[(reg - IOAPIC_REDTBL) / 2];
        uint64_t v = (reg & 1) ? (uint64_t)value << 32 | (*rte & 0xffffffffull)
                               : (*rte & ~0xffffffffull) | value;
        *rte = (*rte & ~IOAPIC_RTE_WRITABLE) | (v & IOAPIC_RTE_WRITABLE);
        ioapic_sync_routes(a);
}

static void ioapic_mmio_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
        struct ioapic *a = opaque;
        uint32_t v = 0;
        memset(data, 0, len);
        if (len != 4)
                return;
        pthread_mutex_lock(&a->lock);
        if (off == IOAPIC_REG_SELECT)
                v = a->ioregsel;
        else if (off == IOAPIC_REG_WINDOW)
                v = ioapic_reg_read(a, a->ioregsel);
        pthread_mutex_unlock(&a->lock);
        memcpy(data, &v, sizeof(v));
}

static void ioapic_mmio_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
        struct ioapic *a = opaque;
        uint32_t v;
        if (len != 4)
                return;
        memcpy(&v, data, sizeof(v));
        pthread_mutex_lock(&a->lock);
        if (off == IOAPIC_REG_SELECT) {
                a->ioregsel = v & 0xff;
                /* Every register access is a select write then a window access: queueing the
                 * selects halves the exits (Linux makes ~200 accesses at boot). The zone is
                 * asked for at the first select, not at creation, because a VM that ends within
                 * an SRCU grace period (~15 ms on Linux 6.18) of binding a KVM I/O-bus device
                 * waits for that grace period when it is destroyed; a guest that never uses the
                 * IOAPIC never pays it. Optional, so a failure only means writes keep exiting. */
                if (!a->coalesce_asked && a->env->coalesce_writes) {
                        a->coalesce_asked = true;
                        a->env->coalesce_writes(a->env->hv, a->base + IOAPIC_REG_SELECT, 4);
                }
        } else if (off == IOAPIC_REG_WINDOW)
                ioapic_reg_write(a, a->ioregsel, v);
        pthread_mutex_unlock(&a->lock);
}

static const struct bus_dev_ops ioapic_ops = {.read = ioapic_mmio_read, .write = ioapic_mmio_write};

int ioapic_init(struct ioapic *a, const struct dev_env *env, uint64_t base, uint32_t id)
{
        memset(a, 0, sizeof(*a));
        if (id > IOAPIC_ID_MASK >> IOAPIC_ID_SHIFT)
                return -EINVAL;
        a->env = env;
        a->base = base;
        a->id = id;
        for (unsigned pin = 0; pin < X86_IOAPIC_PINS; pin++)
                a->rte[pin] = IOAPIC_RTE_MASKED;
        int rc = pthread_mutex_init(&a->lock, NULL);
        if (rc)
                return -rc;
        rc = bus_add(env->mmio, base, IOAPIC_MMIO_SIZE, &ioapic_ops, a, "ioapic");
        if (rc) {
                pthread_mutex_destroy(&a->lock);
                return rc;
        }
        return 0;
}

void ioapic_destroy(struct ioapic *a)
{
        pthread_mutex_destroy(&a->lock);
}
