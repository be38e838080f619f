/* x86_64 boot structures in guest memory: command line, initramfs, e820 map, MP table, GDT/IDT,
 * identity page tables, and the zero page (bzImage) or hvm_start_info (PVH). Pure functions over
 * gmem: the caller does every KVM call. */
#ifndef EMBER_ARCH_X86_64_BOOT_H
#define EMBER_ARCH_X86_64_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "arch/x86_64/kernel.h"
#include "core/gmem.h"

#define X86_E820_RAM      1u
#define X86_E820_RESERVED 2u
#define X86_E820_MAX      8u

struct x86_e820_entry {
        uint64_t addr, size;
        uint32_t type;
};

struct x86_boot_cfg {
        const struct x86_kernel_info *kernel; /* probed and loaded */
        const char *cmdline;                  /* NULL means empty */
        const void *initramfs;                /* cpio archive(s); NULL / 0 bytes: none */
        size_t initramfs_len;
        unsigned ncpus; /* 1..X86_MAX_VCPUS; APIC ids 0..ncpus-1 */
};

enum x86_entry_mode {
        X86_ENTRY_LONG64 = 1, /* 64-bit, paging on (CR3 = X86_PML4_ADDR), rsi = zero page */
        X86_ENTRY_PVH32 = 2,  /* 32-bit protected mode, paging off, rbx = hvm_start_info */
};

/* vCPU 0's starting state and where things went (for logs and tests). */
struct x86_boot_entry {
        enum x86_entry_mode mode;
        uint64_t rip, rsp, rsi, rbx;
        uint64_t cmdline_addr;
        uint64_t initrd_addr, initrd_size; /* 0, 0 without initramfs */
};

/* Writes everything the kernel needs besides itself (x86_kernel_load does that) and fills
 * `entry`. Returns 0, or -EINVAL / -ENOMEM / -E2BIG with a message in err, e.g.
 * "guest memory 32 MiB too small for kernel (20 MiB) + initramfs (15 MiB)". */
int x86_boot_setup(struct gmem *m, const struct x86_boot_cfg *cfg, struct x86_boot_entry *entry,
                   char *err, size_t errlen);

/* --- the pieces x86_boot_setup is made of (also used by tests) ---------------------------- */

/* e820 map of m's RAM: [0, EBDA) RAM, [EBDA, 1 MiB) reserved, [1 MiB, low end) RAM,
 * [4 GiB, ...) RAM. Returns the number of entries, or -EINVAL if low RAM ends below 2 MiB
 * or max is too small. */
int x86_e820_build(const struct gmem *m, struct x86_e820_entry *out, unsigned max);

/* Chooses where a `size`-byte initramfs goes: page-aligned, as high as possible below
 * min(end of low RAM, initrd_addr_max + 1), above the kernel's memory. */
int x86_initrd_place(const struct gmem *m, const struct x86_kernel_info *ki, uint64_t size,
                     uint64_t *addr, char *err, size_t errlen);

/* Bytes of the MP floating pointer + configuration table for ncpus. */
size_t x86_mptable_size(unsigned ncpus);
/* MP table at X86_MPTABLE_ADDR: ncpus processors (APIC ids 0..n-1, BSP 0), an ISA bus, one
 * IOAPIC (id X86_IOAPIC_ID, 24 pins), ISA IRQ n -> pin n for n = 0..15 except the cascade 2,
 * LINT0 ExtINT and LINT1 NMI to all local APICs. */
int x86_mptable_write(struct gmem *m, unsigned ncpus, char *err, size_t errlen);

/* The raw GDT descriptor for a selector (X86_SEL_*); 0 for the null or an unknown one. */
uint64_t x86_gdt_descriptor(unsigned selector);
/* GDT at X86_GDT_ADDR and an empty IDT at X86_IDT_ADDR. */
int x86_gdt_write(struct gmem *m);
/* PML4/PDPT/PD identity-mapping [0, 1 GiB) with 2 MiB pages. */
int x86_page_tables_write(struct gmem *m);

#endif
