#include "arch/x86_64/boot.h"

#include <errno.h>
#include <string.h>

#include "arch/x86_64/bytes.h"
#include "arch/x86_64/layout.h"

/* struct boot_params offsets (arch/x86/include/uapi/asm/bootparam.h). */
#define ZP_SIZE              0x1000
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE  0x0c4
#define ZP_EXT_CMD_LINE_PTR  0x0c8
#define ZP_E820_ENTRIES      0x1e8
#define ZP_TYPE_OF_LOADER    0x210
#define ZP_LOADFLAGS         0x211
#define ZP_CODE32_START      0x214
#define ZP_RAMDISK_IMAGE     0x218
#define ZP_RAMDISK_SIZE      0x21c
#define ZP_CMD_LINE_PTR      0x228
#define ZP_E820_TABLE        0x2d0
#define ZP_E820_ENTRY_SIZE   20
#define LOADER_UNDEFINED     0xff /* type_of_loader: "boot loader without an assigned id" */
#define LOADFLAG_LOADED_HIGH 0x01

/* hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h), version 1. */
#define PVH_MAGIC           0x336ec578u
#define PVH_VERSION         1u
#define PVH_START_INFO_SIZE 56
#define PVH_MODLIST_ENTRY   32
#define PVH_MEMMAP_ENTRY    24

/* Intel MP spec 1.4 structures. */
#define MPF_SIZE          16
#define MPC_HEADER_SIZE   44
#define MPC_CPU_SIZE      20
#define MPC_SMALL_SIZE    8 /* bus, IOAPIC, interrupt and local interrupt entries */
#define MP_SPEC_REV       4
#define MP_PROCESSOR      0
#define MP_BUS            1
#define MP_IOAPIC         2
#define MP_INTSRC         3
#define MP_LINTSRC        4
#define MP_CPU_ENABLED    0x01
#define MP_CPU_BSP        0x02
#define MP_INT            0
#define MP_NMI            1
#define MP_EXTINT         3
#define MP_APIC_ALL       0xff
#define MP_ISA_BUS_ID     0
#define MP_ISA_IRQS       16
#define MP_CASCADE_IRQ    2
#define MP_LAPIC_VERSION  0x14  /* what KVM's local APIC reports */
#define MP_IOAPIC_VERSION 0x11  /* ember's IOAPIC (src/dev/ioapic.h): an 82093AA */
#define MP_CPU_SIGNATURE  0x600 /* family 6: only informational for Linux */
#define MP_CPU_FEATURES   0x201 /* FPU, APIC */

/* Page table entry bits. */
#define PTE_PRESENT 0x1ull
#define PTE_WRITE   0x2ull
#define PTE_HUGE    0x80ull

static uint64_t align_up(uint64_t v, uint64_t a)
{
        return (v + a - 1) & ~(a - 1);
}

static const struct gmem_region *region_at(const struct gmem *m, uint64_t gpa)
{
        for (unsigned i = 0; i < m->nregions && i < GMEM_MAX_REGIONS; i++)
                if (m->region[i].gpa == gpa && m->region[i].size > 0)
                        return &m->region[i];
        return NULL;
}

static uint64_t low_ram_end(const struct gmem *m)
{
        const struct gmem_region *r = region_at(m, 0);
        return r ? r->size : 0;
}

int x86_e820_build(const struct gmem *m, struct x86_e820_entry *out, unsigned max)
{
        uint64_t low = low_ram_end(m);
        const struct gmem_region *high = region_at(m, X86_HIGH_RAM_START);
        unsigned n = 0;

        if (low < 2 * X86_MIB || max < 4)
                return -EINVAL;
        out[n++] = (struct x86_e820_entry){0, X86_EBDA_START, X86_E820_RAM};
        out[n++] = (struct x86_e820_entry){X86_EBDA_START, X86_HIGH_MEM_START - X86_EBDA_START,
                                           X86_E820_RESERVED};
        out[n++] =
            (struct x86_e820_entry){X86_HIGH_MEM_START, low - X86_HIGH_MEM_START, X86_E820_RAM};
        if (high)
                out[n++] = (struct x86_e820_entry){high->gpa, high->size, X86_E820_RAM};
        return (int)n;
}

int x86_initrd_place(const struct gmem *m, const struct x86_kernel_info *ki, uint64_t size,
                     uint64_t *addr, char *err, size_t errlen)
{
        uint64_t low = low_ram_end(m);
        uint64_t limit = low < X86_MMIO_GAP_START ? low : X86_MMIO_GAP_START;
        int limited_by_kernel = 0;
        if (ki->initrd_addr_max < UINT64_MAX && ki->initrd_addr_max + 1 < limit) {
                limit = ki->initrd_addr_max + 1;
                limited_by_kernel = 1;
        }
        uint64_t floor = align_up(
            ki->mem_end > X86_HIGH_MEM_START ? ki->mem_end : X86_HIGH_MEM_START, X86_PAGE_SIZE);

        *addr = 0;
        if (size == 0)
                return 0;
        if (size <= limit && ((limit - size) & ~(X86_PAGE_SIZE - 1)) >= floor) {
                *addr = (limit - size) & ~(X86_PAGE_SIZE - 1);
                return 0;
        }
        if (limited_by_kernel)
                x86_errf(err, errlen,
                         "initramfs (%llu MiB) does not fit between the kernel's end (%llu MiB) "
                         "and the kernel's initrd limit (%llu MiB)",
                         x86_mib_up(size), x86_mib_up(ki->mem_end),
                         (unsigned long long)(limit >> 20));
        else
                x86_errf(
                    err, errlen,
                    "guest memory %llu MiB too small for kernel (%llu MiB) + initramfs (%llu MiB)",
                    (unsigned long long)(gmem_ram_size(m) >> 20), x86_mib_up(ki->mem_end),
                    x86_mib_up(size));
        return -ENOMEM;
}

size_t x86_mptable_size(unsigned ncpus)
{
        return MPF_SIZE + MPC_HEADER_SIZE + (size_t)ncpus * MPC_CPU_SIZE +
               MPC_SMALL_SIZE * (1 /* bus */ + 1 /* IOAPIC */ + (MP_ISA_IRQS - 1) + 2 /* LINTs */);
}

static uint8_t checksum_fix(const uint8_t *p, size_t len)
{
        uint8_t sum = 0;
        for (size_t i = 0; i < len; i++)
                sum = (uint8_t)(sum + p[i]);
        return (uint8_t)-sum;
}

int x86_mptable_write(struct gmem *m, unsigned ncpus, char *err, size_t errlen)
{
        if (ncpus == 0 || ncpus > X86_MAX_VCPUS) {
                x86_errf(err, errlen, "%u vCPUs: the x86 layout supports 1 to %u", ncpus,
                         X86_MAX_VCPUS);
                return -EINVAL;
        }
        size_t size = x86_mptable_size(ncpus);
        uint8_t *mpf = gmem_ptr(m, X86_MPTABLE_ADDR, size);
        if (!mpf || size > X86_MPTABLE_MAX) {
                x86_errf(err, errlen, "no room for the MP table at 0x%llx",
                         (unsigned long long)X86_MPTABLE_ADDR);
                return -ENOMEM;
        }
        memset(mpf, 0, size);
        uint8_t *mpc = mpf + MPF_SIZE;
        uint8_t *p = mpc + MPC_HEADER_SIZE;
        unsigned entries = 0;

        for (unsigned cpu = 0; cpu < ncpus; cpu++, p += MPC_CPU_SIZE, entries++) {
                p[0] = MP_PROCESSOR;
                p[1] = (uint8_t)cpu; /* APIC id */
                p[2] = MP_LAPIC_VERSION;
                p[3] = MP_CPU_ENABLED | (cpu == 0 ? MP_CPU_BSP : 0);
                x86_put32(p + 4, MP_CPU_SIGNATURE);
                x86_put32(p + 8, MP_CPU_FEATURES);
        }
        p[0] = MP_BUS;
        p[1] = MP_ISA_BUS_ID;
        memcpy(p + 2, "ISA   ", 6);
        p += MPC_SMALL_SIZE, entries++;

        _Static_assert(X86_IOAPIC_ID <= 0xff, "the IOAPIC's ID register holds 8 bits");
        p[0] = MP_IOAPIC;
        p[1] = X86_IOAPIC_ID;
        p[2] = MP_IOAPIC_VERSION;
        p[3] = 1; /* usable */
        x86_put32(p + 4, (uint32_t)X86_IOAPIC_ADDR);
        p += MPC_SMALL_SIZE, entries++;

        /* ember's IOAPIC routes GSI n as pin n, so ISA IRQ n is pin n. Flags 0: polarity and
         * trigger conform to the ISA bus, i.e. edge, active high. */
        for (unsigned irq = 0; irq < MP_ISA_IRQS; irq++) {
                if (irq == MP_CASCADE_IRQ)
                        continue;
                p[0] = MP_INTSRC;
                p[1] = MP_INT;
                x86_put16(p + 2, 0);
                p[4] = MP_ISA_BUS_ID;
                p[5] = (uint8_t)irq;
                p[6] = X86_IOAPIC_ID;
                p[7] = (uint8_t)irq;
                p += MPC_SMALL_SIZE, entries++;
        }
        const uint8_t lint_type[2] = {MP_EXTINT, MP_NMI};
        for (unsigned lint = 0; lint < 2; lint++) {
                p[0] = MP_LINTSRC;
                p[1] = lint_type[lint];
                x86_put16(p + 2, 0);
                p[4] = MP_ISA_BUS_ID;
                p[5] = 0;
                p[6] = MP_APIC_ALL;
                p[7] = (uint8_t)lint;
                p += MPC_SMALL_SIZE, entries++;
        }
        uint16_t mpc_len = (uint16_t)(p - mpc);

        memcpy(mpc, "PCMP", 4);
        x86_put16(mpc + 4, mpc_len);
        mpc[6] = MP_SPEC_REV;
        memcpy(mpc + 8, "EMBER   ", 8);
        memcpy(mpc + 16, "EMBER VM    ", 12);
        x86_put16(mpc + 34, (uint16_t)entries);
        x86_put32(mpc + 36, (uint32_t)X86_LAPIC_ADDR);
        mpc[7] = checksum_fix(mpc, mpc_len);

        memcpy(mpf, "_MP_", 4);
        x86_put32(mpf + 4, (uint32_t)(X86_MPTABLE_ADDR + MPF_SIZE));
        mpf[8] = 1; /* length in 16-byte paragraphs */
        mpf[9] = MP_SPEC_REV;
        mpf[10] = checksum_fix(mpf, MPF_SIZE);
        return 0;
}

/* A descriptor from `flags` = (G D/B L AVL) << 12 | access byte, as in Linux's GDT_ENTRY. */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
        return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
               ((uint64_t)(limit & 0x000f0000u) << 32) | (uint64_t)(limit & 0x0000ffffu) |
               ((uint64_t)(flags & 0xf0ffu) << 40);
}

uint64_t x86_gdt_descriptor(unsigned selector)
{
        switch (selector) {
        case X86_SEL_CODE32:
                return gdt_entry(0xc09b, 0, 0xfffff); /* G, D; present, code, read, accessed */
        case X86_SEL_CODE64:
                return gdt_entry(0xa09b, 0, 0xfffff); /* G, L */
        case X86_SEL_DATA:
                return gdt_entry(0xc093, 0, 0xfffff); /* G, B; present, data, write, accessed */
        case X86_SEL_TSS:
                return gdt_entry(0x008b, 0, 0x67); /* present, busy 32-bit TSS */
        }
        return 0;
}

int x86_gdt_write(struct gmem *m)
{
        uint8_t gdt[X86_GDT_ENTRIES * 8];
        for (unsigned i = 0; i < X86_GDT_ENTRIES; i++)
                x86_put64(gdt + 8 * i, x86_gdt_descriptor(8 * i));
        uint8_t idt[X86_IDT_LIMIT + 1] = {0};
        if (gmem_write(m, X86_GDT_ADDR, gdt, sizeof(gdt)) ||
            gmem_write(m, X86_IDT_ADDR, idt, sizeof(idt)))
                return -EFAULT;
        return 0;
}

int x86_page_tables_write(struct gmem *m)
{
        uint8_t *pml4 = gmem_ptr(m, X86_PML4_ADDR, X86_PAGE_SIZE);
        uint8_t *pdpt = gmem_ptr(m, X86_PDPT_ADDR, X86_PAGE_SIZE);
        uint8_t *pd = gmem_ptr(m, X86_PD_ADDR, X86_PAGE_SIZE);
        if (!pml4 || !pdpt || !pd)
                return -EFAULT;
        memset(pml4, 0, X86_PAGE_SIZE);
        memset(pdpt, 0, X86_PAGE_SIZE);
        x86_put64(pml4, X86_PDPT_ADDR | PTE_PRESENT | PTE_WRITE);
        x86_put64(pdpt, X86_PD_ADDR | PTE_PRESENT | PTE_WRITE);
        for (uint64_t i = 0; i < 512; i++)
                x86_put64(pd + 8 * i, (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_HUGE);
        return 0;
}

static int write_zero_page(struct gmem *m, const struct x86_kernel_info *ki,
                           const struct x86_e820_entry *e820, int ne820, uint64_t initrd_addr,
                           uint64_t initrd_size)
{
        uint8_t *zp = gmem_ptr(m, X86_ZERO_PAGE_ADDR, ZP_SIZE);
        if (!zp)
                return -EFAULT;
        /* A clean boot_params with only the image's setup header copied in (so the sentinel at
         * 0x1ef is 0 and the kernel trusts the rest). */
        memset(zp, 0, ZP_SIZE);
        memcpy(zp + X86_SETUP_HEADER_OFFSET, ki->setup_header, ki->setup_header_len);
        zp[ZP_TYPE_OF_LOADER] = LOADER_UNDEFINED;
        /* LOADED_HIGH stays; no QUIET, KEEP_SEGMENTS or CAN_USE_HEAP: the real-mode heap only
         * matters for the 16-bit entry, which ember does not use. */
        zp[ZP_LOADFLAGS] = LOADFLAG_LOADED_HIGH;
        x86_put32(zp + ZP_CODE32_START, (uint32_t)X86_BZIMAGE_LOAD_ADDR);
        x86_put32(zp + ZP_RAMDISK_IMAGE, (uint32_t)initrd_addr);
        x86_put32(zp + ZP_RAMDISK_SIZE, (uint32_t)initrd_size);
        x86_put32(zp + ZP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
        x86_put32(zp + ZP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));
        x86_put32(zp + ZP_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR);
        x86_put32(zp + ZP_EXT_CMD_LINE_PTR, (uint32_t)(X86_CMDLINE_ADDR >> 32));
        zp[ZP_E820_ENTRIES] = (uint8_t)ne820;
        for (int i = 0; i < ne820; i++) {
                uint8_t *e = zp + ZP_E820_TABLE + ZP_E820_ENTRY_SIZE * i;
                x86_put64(e, e820[i].addr);
                x86_put64(e + 8, e820[i].size);
                x86_put32(e + 16, e820[i].type);
        }
        return 0;
}

static int write_pvh_start_info(struct gmem *m, const struct x86_e820_entry *e820, int ne820,
                                uint64_t initrd_addr, uint64_t initrd_size)
{
        uint8_t si[PVH_START_INFO_SIZE] = {0};
        x86_put32(si, PVH_MAGIC);
        x86_put32(si + 4, PVH_VERSION);
        x86_put32(si + 12, initrd_size ? 1 : 0); /* nr_modules: module 0 is the ramdisk */
        x86_put64(si + 16, initrd_size ? X86_PVH_MODLIST_ADDR : 0);
        x86_put64(si + 24, X86_CMDLINE_ADDR);
        x86_put64(si + 40, X86_PVH_MEMMAP_ADDR);
        x86_put32(si + 48, (uint32_t)ne820);
        if (gmem_write(m, X86_PVH_START_INFO_ADDR, si, sizeof(si)))
                return -EFAULT;

        uint8_t mod[PVH_MODLIST_ENTRY] = {0};
        x86_put64(mod, initrd_addr);
        x86_put64(mod + 8, initrd_size);
        if (gmem_write(m, X86_PVH_MODLIST_ADDR, mod, sizeof(mod)))
                return -EFAULT;

        if (ne820 > (int)X86_PVH_MEMMAP_MAX)
                return -EINVAL;
        for (int i = 0; i < ne820; i++) {
                uint8_t e[PVH_MEMMAP_ENTRY] = {0};
                x86_put64(e, e820[i].addr);
                x86_put64(e + 8, e820[i].size);
                x86_put32(e + 16, e820[i].type);
                if (gmem_write(m, X86_PVH_MEMMAP_ADDR + (uint64_t)PVH_MEMMAP_ENTRY * i, e,
                               sizeof(e)))
                        return -EFAULT;
        }
        return 0;
}

int x86_boot_setup(struct gmem *m, const struct x86_boot_cfg *cfg, struct x86_boot_entry *entry,
                   char *err, size_t errlen)
{
        const struct x86_kernel_info *ki = cfg->kernel;
        int r;

        memset(entry, 0, sizeof(*entry));
        if (!ki || (ki->kind != X86_KERNEL_BZIMAGE && ki->kind != X86_KERNEL_ELF_PVH)) {
                x86_errf(err, errlen, "no probed kernel");
                return -EINVAL;
        }
        if (cfg->ncpus == 0 || cfg->ncpus > X86_MAX_VCPUS) {
                x86_errf(err, errlen, "%u vCPUs: the x86 layout supports 1 to %u", cfg->ncpus,
                         X86_MAX_VCPUS);
                return -EINVAL;
        }
        if (cfg->initramfs_len && !cfg->initramfs) {
                x86_errf(err, errlen, "initramfs of %zu bytes without data", cfg->initramfs_len);
                return -EINVAL;
        }

        struct x86_e820_entry e820[X86_E820_MAX];
        int ne820 = x86_e820_build(m, e820, X86_E820_MAX);
        if (ne820 < 0) {
                x86_errf(err, errlen, "guest memory %llu MiB: too small for the x86 layout",
                         (unsigned long long)(gmem_ram_size(m) >> 20));
                return -ENOMEM;
        }
        if (!gmem_ptr(m, ki->mem_start, ki->mem_end - ki->mem_start)) {
                x86_errf(err, errlen, "guest memory %llu MiB too small for kernel (%llu MiB)",
                         (unsigned long long)(gmem_ram_size(m) >> 20), x86_mib_up(ki->mem_end));
                return -ENOMEM;
        }

        const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
        size_t cmdline_len = strlen(cmdline);
        if (cmdline_len > ki->cmdline_max || cmdline_len >= X86_CMDLINE_AREA) {
                x86_errf(err, errlen,
                         "kernel command line is %zu bytes, the kernel accepts at most %u",
                         cmdline_len, ki->cmdline_max);
                return -E2BIG;
        }
        if (gmem_write(m, X86_CMDLINE_ADDR, cmdline, cmdline_len + 1)) {
                x86_errf(err, errlen, "cannot write the command line");
                return -EFAULT;
        }

        uint64_t initrd_size = cfg->initramfs_len, initrd_addr = 0;
        r = x86_initrd_place(m, ki, initrd_size, &initrd_addr, err, errlen);
        if (r)
                return r;
        if (initrd_size && gmem_write(m, initrd_addr, cfg->initramfs, cfg->initramfs_len)) {
                x86_errf(err, errlen, "initramfs placement outside RAM");
                return -EFAULT;
        }

        if (x86_gdt_write(m) || (r = x86_mptable_write(m, cfg->ncpus, err, errlen)) != 0) {
                if (!r)
                        x86_errf(err, errlen, "cannot write the GDT");
                return r ? r : -EFAULT;
        }

        entry->cmdline_addr = X86_CMDLINE_ADDR;
        entry->initrd_addr = initrd_addr;
        entry->initrd_size = initrd_size;
        entry->rip = ki->entry;
        entry->rsp = X86_BOOT_STACK;
        if (ki->kind == X86_KERNEL_BZIMAGE) {
                if (x86_page_tables_write(m) ||
                    write_zero_page(m, ki, e820, ne820, initrd_addr, initrd_size)) {
                        x86_errf(err, errlen, "cannot write the page tables or zero page");
                        return -EFAULT;
                }
                entry->mode = X86_ENTRY_LONG64;
                entry->rsi = X86_ZERO_PAGE_ADDR;
        } else {
                if (write_pvh_start_info(m, e820, ne820, initrd_addr, initrd_size)) {
                        x86_errf(err, errlen, "cannot write the PVH start info");
                        return -EFAULT;
                }
                entry->mode = X86_ENTRY_PVH32;
                entry->rbx = X86_PVH_START_INFO_ADDR;
        }
        return 0;
}
