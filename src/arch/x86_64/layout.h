/* ember's x86_64 guest physical layout: every fixed address and number in one place.
 *
 * Low memory (all inside RAM region 0, which always starts at 0):
 *   0x00500  GDT (5 descriptors: null, code32 0x08, code64 0x10, data 0x18, TSS 0x20)
 *   0x00540  IDT (one empty descriptor: any early exception is a triple fault, i.e. a reset)
 *   0x06000  PVH hvm_start_info, then its module list (0x6040) and memory map (0x6100)
 *   0x07000  zero page (struct boot_params) for the 64-bit bzImage entry
 *   0x08ff0  initial stack pointer (grows down into 0x8000..0x8ff0)
 *   0x09000  PML4, 0xa000 PDPT, 0xb000 PD: identity map of the first 1 GiB with 2 MiB pages
 *   0x20000  kernel command line (64 KiB reserved; the kernel's own limit is lower)
 *   0x9fc00  EBDA start: e820 reserves [0x9fc00, 1 MiB)
 *   0xf0000  MP floating pointer + configuration table (BIOS F-segment, scanned by Linux;
 *            the 1 KiB at 0x9fc00 is too small for the table of 64 vCPUs)
 *   1 MiB    bzImage protected-mode kernel; an ELF kernel loads at its own p_paddr (>= 1 MiB)
 *   top of low RAM: initramfs (below min(initrd_addr_max, MMIO gap), after the kernel)
 * MMIO gap [0xd0000000, 4 GiB): virtio-mmio slots, IOAPIC, LAPIC, KVM's TSS and identity map
 * page. RAM that does not fit below the gap continues at 4 GiB.
 */
#ifndef EMBER_ARCH_X86_64_LAYOUT_H
#define EMBER_ARCH_X86_64_LAYOUT_H

#define X86_KIB (1ull << 10)
#define X86_MIB (1ull << 20)
#define X86_GIB (1ull << 30)

#define X86_PAGE_SIZE 0x1000ull

/* --- descriptor tables ------------------------------------------------------------------ */
#define X86_GDT_ADDR    0x500ull
#define X86_GDT_ENTRIES 5u
#define X86_IDT_ADDR    0x540ull
#define X86_IDT_LIMIT   7u /* a single 8-byte zero descriptor */

/* GDT selectors. The 64-bit boot protocol wants __BOOT_CS 0x10 and __BOOT_DS 0x18. */
#define X86_SEL_CODE32 0x08u /* PVH entry: flat 32-bit code */
#define X86_SEL_CODE64 0x10u /* long mode entry: 64-bit code */
#define X86_SEL_DATA   0x18u /* flat data for both */
#define X86_SEL_TSS    0x20u

/* --- PVH -------------------------------------------------------------------------------- */
#define X86_PVH_START_INFO_ADDR 0x6000ull
#define X86_PVH_MODLIST_ADDR    0x6040ull
#define X86_PVH_MODLIST_MAX     4u /* 32-byte entries up to 0x60c0 */
#define X86_PVH_MEMMAP_ADDR     0x6100ull
#define X86_PVH_MEMMAP_MAX      128u /* 24-byte entries up to 0x6d00 */

/* --- 64-bit boot protocol ---------------------------------------------------------------- */
#define X86_ZERO_PAGE_ADDR 0x7000ull
#define X86_BOOT_STACK     0x8ff0ull
#define X86_PML4_ADDR      0x9000ull
#define X86_PDPT_ADDR      0xa000ull
#define X86_PD_ADDR        0xb000ull
#define X86_IDENT_MAP_SIZE X86_GIB /* what the boot page tables map */

/* --- command line ------------------------------------------------------------------------ */
#define X86_CMDLINE_ADDR 0x20000ull
/* Bytes reserved at X86_CMDLINE_ADDR, terminating NUL included. */
#define X86_CMDLINE_AREA 0x10000ull
/* PVH has no header to ask: Linux copies at most COMMAND_LINE_SIZE (2048 on x86) bytes,
 * NUL included, and silently truncates the rest. */
#define X86_PVH_CMDLINE_MAX 2047u

/* --- legacy BIOS areas ------------------------------------------------------------------- */
#define X86_EBDA_START     0x9fc00ull
#define X86_MPTABLE_ADDR   0xf0000ull
#define X86_MPTABLE_MAX    0x10000ull  /* the F-segment */
#define X86_HIGH_MEM_START 0x100000ull /* 1 MiB */

/* --- kernel ------------------------------------------------------------------------------ */
#define X86_BZIMAGE_LOAD_ADDR 0x100000ull
/* The 64-bit entry point is 0x200 past the start of the loaded protected-mode kernel. */
#define X86_BZIMAGE_ENTRY64_OFFSET 0x200ull

/* --- MMIO gap and the devices in it ------------------------------------------------------ */
#define X86_MMIO_GAP_START 0xd0000000ull
#define X86_MMIO_GAP_END   0x100000000ull /* 4 GiB: high RAM starts here */
#define X86_HIGH_RAM_START X86_MMIO_GAP_END

/* KVM_SET_TSS_ADDR wants 3 pages, KVM_SET_IDENTITY_MAP_ADDR 1 page, both unused by RAM and
 * devices: the top of the gap, below the IOAPIC. */
#define X86_TSS_ADDR          0xfffbd000ull
#define X86_IDENTITY_MAP_ADDR 0xfffbc000ull

#define X86_IOAPIC_ADDR 0xfec00000ull
#define X86_IOAPIC_PINS 24u
#define X86_LAPIC_ADDR  0xfee00000ull

/* virtio-mmio: slot n at BASE + n * SLOT_SIZE, interrupt X86_VIRTIO_IRQ_FIRST + n. The ISA IRQs
 * 5..15 are free in ember's machine (COM1 is 4, i8042 is 1, timer 0, cascade 2, COM2 3 is left
 * alone); ember's IOAPIC (src/dev/ioapic.c) routes GSI n as its pin n, and the MP table declares
 * ISA IRQ n -> IOAPIC pin n, edge, active high. irqfd pulses suit
 * edge triggering. 8 (RTC) and 12 (PS/2 mouse) are only claimed by kernels with those drivers;
 * ember's kernel has neither. */
#define X86_VIRTIO_MMIO_BASE      0xd0000000ull
#define X86_VIRTIO_MMIO_SLOT_SIZE 0x1000ull
#define X86_VIRTIO_IRQ_FIRST      5u
#define X86_VIRTIO_IRQ_LAST       15u
#define X86_VIRTIO_MAX_DEVICES    (X86_VIRTIO_IRQ_LAST - X86_VIRTIO_IRQ_FIRST + 1u)

/* --- legacy port I/O devices ------------------------------------------------------------- */
#define X86_COM1_PORT     0x3f8u
#define X86_COM1_PORT_LEN 8u
#define X86_COM1_IRQ      4u
#define X86_I8042_DATA    0x60u
#define X86_I8042_CMD     0x64u
#define X86_I8042_IRQ     1u

/* --- vCPUs ------------------------------------------------------------------------------- */
/* APIC id = vCPU index. The MP table and xAPIC ids allow up to 254; the guest kernel is built
 * with NR_CPUS=64. The IOAPIC takes id X86_MAX_VCPUS (never collides with a CPU); its ID
 * register is 8 bits wide so that it reads this id back. */
#define X86_MAX_VCPUS 64u
#define X86_IOAPIC_ID X86_MAX_VCPUS

#endif
