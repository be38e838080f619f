/* The IOAPIC, in user space, for KVM's split irqchip (the LAPICs stay in the kernel; there is
 * no PIC and no PIT). Modelled on the 82093AA: version 0x11, X86_IOAPIC_PINS pins, registers
 * reached through IOREGSEL (offset 0x00) and IOWIN (offset 0x10), 32-bit accesses only.
 *
 * Interrupts never pass through here: every unmasked pin whose redirection entry can be
 * delivered (fixed, lowest priority or NMI) becomes an MSI route for GSI = pin, so irqfd and
 * KVM_IRQ_LINE reach the LAPICs without leaving the kernel. Routes change only when the guest
 * reprograms an entry in a way that changes where or how the interrupt goes.
 *
 * Every pin is edge-triggered for delivery: ember's devices pulse their interrupt (irqfd), and
 * the MP table declares the ISA IRQs edge, active high. A guest that programs an entry as level
 * still gets edges (remote IRR stays 0), and an edge arriving while its pin is masked is lost,
 * as on the chip. */
#ifndef EMBER_DEV_IOAPIC_H
#define EMBER_DEV_IOAPIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86_64/layout.h"
#include "core/dev_env.h"

#define IOAPIC_MMIO_SIZE 0x1000u
#define IOAPIC_VERSION   0x11u

/* Redirection entry bits. */
#define IOAPIC_RTE_VECTOR        0xffull
#define IOAPIC_RTE_DELMODE_SHIFT 8
#define IOAPIC_RTE_DESTMODE      (1ull << 11)
#define IOAPIC_RTE_DELIVS        (1ull << 12)
#define IOAPIC_RTE_POLARITY      (1ull << 13)
#define IOAPIC_RTE_REMOTE_IRR    (1ull << 14)
#define IOAPIC_RTE_LEVEL         (1ull << 15)
#define IOAPIC_RTE_MASKED        (1ull << 16)
#define IOAPIC_RTE_DEST_SHIFT    56

/* What the guest may change: vector, delivery mode, destination mode, polarity, trigger, mask,
 * destination (delivery status and remote IRR are read-only). */
#define IOAPIC_RTE_WRITABLE 0xff0000000001afffull

enum ioapic_delivery_mode {
        IOAPIC_DELMODE_FIXED = 0,
        IOAPIC_DELMODE_LOWEST = 1,
        IOAPIC_DELMODE_SMI = 2,
        IOAPIC_DELMODE_NMI = 4,
        IOAPIC_DELMODE_INIT = 5,
        IOAPIC_DELMODE_EXTINT = 7,
};

struct ioapic {
        pthread_mutex_t lock;
        const struct dev_env *env;
        uint64_t base;
        uint32_t id;
        uint32_t ioregsel;
        uint64_t rte[X86_IOAPIC_PINS];
        /* The routes KVM has now, to skip updates that change nothing. */
        struct dev_msi_route routes[X86_IOAPIC_PINS];
        unsigned nroutes;
        unsigned route_updates; /* how many times the table went to KVM (for tests) */
        bool failed;            /* a route update failed: the VM is being stopped */
        bool coalesce_asked;    /* the select register's coalesced zone was asked for */
};

/* Registers the IOAPIC at `base` on the MMIO bus; all pins masked, no routes. `id` (0-255,
 * else -EINVAL) is what its ID register reads: the MP table's id for it. */
int ioapic_init(struct ioapic *a, const struct dev_env *env, uint64_t base, uint32_t id);
void ioapic_destroy(struct ioapic *a);

/* The MSI a redirection entry delivers as. False when it delivers nothing: masked, or a
 * delivery mode that has no MSI meaning here (SMI, INIT, ExtINT, reserved). */
bool ioapic_rte_to_msi(uint64_t rte, uint64_t *address, uint32_t *data);

#endif
