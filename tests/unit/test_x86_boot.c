/* x86 boot structures in guest memory: zero page (checked against the kernel's own
 * <asm/bootparam.h>), e820 maps, MP table, PVH start_info, GDT, page tables, command line and
 * initramfs placement. */
#include "test.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>
#include <asm/bootparam.h>

#include "arch/x86_64/boot.h"
#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "core/gmem.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
        return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint16_t le16(const uint8_t *p)
{
        return (uint16_t)(p[0] | p[1] << 8);
}

/* A minimal valid bzImage (see test_x86_kernel.c for the corrupt ones). */
static uint8_t bz[5 * 512 + 4096];

static void make_bzimage(uint32_t init_size, uint32_t initrd_addr_max)
{
        memset(bz, 0, sizeof(bz));
        bz[0x1f1] = 4;
        bz[0x1f5] = 1; /* syssize 256 paragraphs = 4096 bytes */
        bz[0x1fe] = 0x55;
        bz[0x1ff] = 0xaa;
        bz[0x200] = 0xeb;
        bz[0x201] = 0x6a;
        memcpy(bz + 0x202, "HdrS", 4);
        bz[0x206] = 0x0f;
        bz[0x207] = 0x02;
        bz[0x211] = 0x01;
        memcpy(bz + 0x22c, &initrd_addr_max, 4);
        bz[0x232] = 0x20; /* kernel_alignment 2 MiB */
        bz[0x236] = 0x01;
        bz[0x238] = 0xff; /* cmdline_size 2047 */
        bz[0x239] = 0x07;
        bz[0x25a] = 0x00; /* pref_address 16 MiB */
        bz[0x25b] = 0x01;
        memcpy(bz + 0x260, &init_size, 4);
}

static void bz_kernel(struct gmem *m, struct x86_kernel_info *ki, uint32_t init_size,
                      uint32_t initrd_max)
{
        char err[256];
        make_bzimage(init_size, initrd_max);
        int r = x86_kernel_probe(bz, sizeof(bz), "test", ki, err, sizeof(err));
        if (r)
                FAILF("probe: %s", err);
        if (m && (r = x86_kernel_load(m, bz, sizeof(bz), ki, err, sizeof(err))))
                FAILF("load: %s", err);
}

/* A PVH kernel's info, as if probed: one segment [16 MiB, 16 MiB + size). */
static struct x86_kernel_info pvh_kernel(uint64_t size)
{
        struct x86_kernel_info ki = {
            .kind = X86_KERNEL_ELF_PVH,
            .entry = 0x1000100,
            .mem_start = 0x1000000,
            .mem_end = 0x1000000 + size,
            .cmdline_max = X86_PVH_CMDLINE_MAX,
            .initrd_addr_max = 0xffffffff,
            .nsegments = 1,
            .segment = {{.file_offset = 0, .file_size = 0, .paddr = 0x1000000, .mem_size = size}},
        };
        return ki;
}

static void t_layout_areas_disjoint(void)
{
        struct area {
                const char *name;
                uint64_t start, size;
        } a[] = {
            {"GDT", X86_GDT_ADDR, X86_GDT_ENTRIES * 8},
            {"IDT", X86_IDT_ADDR, X86_IDT_LIMIT + 1},
            {"PVH start_info", X86_PVH_START_INFO_ADDR, 56},
            {"PVH modlist", X86_PVH_MODLIST_ADDR, 32 * X86_PVH_MODLIST_MAX},
            {"PVH memmap", X86_PVH_MEMMAP_ADDR, 24 * X86_PVH_MEMMAP_MAX},
            {"zero page", X86_ZERO_PAGE_ADDR, 4096},
            {"stack", 0x8000, X86_BOOT_STACK - 0x8000},
            {"PML4", X86_PML4_ADDR, 4096},
            {"PDPT", X86_PDPT_ADDR, 4096},
            {"PD", X86_PD_ADDR, 4096},
            {"cmdline", X86_CMDLINE_ADDR, X86_CMDLINE_AREA},
            {"EBDA..1MiB", X86_EBDA_START, X86_HIGH_MEM_START - X86_EBDA_START},
        };
        size_t n = sizeof(a) / sizeof(a[0]);
        for (size_t i = 0; i < n; i++) {
                CHECK(a[i].start + a[i].size <= X86_HIGH_MEM_START);
                CHECK(a[i].start >= 0x500); /* real-mode IVT and BDA stay untouched */
                for (size_t j = i + 1; j < n; j++)
                        if (a[i].start < a[j].start + a[j].size &&
                            a[j].start < a[i].start + a[i].size)
                                t_fail(__FILE__, __LINE__, "%s overlaps %s", a[i].name, a[j].name);
        }
        /* The MP table lives in the reserved F-segment, and fits for the most vCPUs. */
        CHECK(X86_MPTABLE_ADDR >= X86_EBDA_START);
        CHECK(X86_MPTABLE_ADDR + x86_mptable_size(X86_MAX_VCPUS) <= X86_HIGH_MEM_START);
        CHECK(X86_MAX_VCPUS <= 254);
        CHECK(X86_IOAPIC_ID >= X86_MAX_VCPUS && X86_IOAPIC_ID <= 254);
        /* KVM's TSS (3 pages) and identity map page sit in the gap, clear of the IOAPIC and the
         * virtio window. */
        CHECK(X86_IDENTITY_MAP_ADDR + 4096 <= X86_TSS_ADDR);
        CHECK(X86_TSS_ADDR + 3 * 4096 <= X86_IOAPIC_ADDR || X86_TSS_ADDR >= X86_IOAPIC_ADDR + 4096);
        CHECK(X86_IDENTITY_MAP_ADDR >= X86_MMIO_GAP_START);
        CHECK(X86_VIRTIO_MMIO_BASE >= X86_MMIO_GAP_START);
        CHECK(X86_VIRTIO_MMIO_BASE + X86_VIRTIO_MAX_DEVICES * X86_VIRTIO_MMIO_SLOT_SIZE <=
              X86_IDENTITY_MAP_ADDR);
        CHECK(X86_VIRTIO_IRQ_FIRST > X86_COM1_IRQ);
        CHECK(X86_VIRTIO_IRQ_LAST < 16);
        CHECK_EQ(X86_VIRTIO_MAX_DEVICES, 11);
}

static void t_e820_maps(void)
{
        struct {
                uint64_t ram;
                int n;
                uint64_t low_end, high_size;
        } cases[] = {
            {64 * MIB, 3, 64 * MIB, 0},
            {3 * GIB, 3, 3 * GIB, 0},
            {X86_MMIO_GAP_START, 3, X86_MMIO_GAP_START, 0},
            {5 * GIB, 4, X86_MMIO_GAP_START, 5 * GIB - X86_MMIO_GAP_START},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct gmem m;
                REQUIRE_EQ(gmem_init(&m, cases[i].ram, X86_MMIO_GAP_START), 0);
                /* huge-page friendly: host and guest addresses agree modulo 2 MiB */
                for (unsigned r = 0; r < m.nregions; r++)
                        CHECK_EQ((uintptr_t)m.region[r].host % GMEM_ALIGN,
                                 m.region[r].gpa % GMEM_ALIGN);
                m.map[0] = 1; /* both ends of the trimmed mapping are ours */
                m.map[m.map_size - 1] = 1;
                struct x86_e820_entry e[X86_E820_MAX];
                int n = x86_e820_build(&m, e, X86_E820_MAX);
                REQUIRE_EQ(n, cases[i].n);
                CHECK_EQ(e[0].addr, 0);
                CHECK_EQ(e[0].size, 0x9fc00);
                CHECK_EQ(e[0].type, X86_E820_RAM);
                CHECK_EQ(e[1].addr, 0x9fc00);
                CHECK_EQ(e[1].size, 0x100000 - 0x9fc00);
                CHECK_EQ(e[1].type, X86_E820_RESERVED);
                CHECK_EQ(e[2].addr, 0x100000);
                CHECK_EQ(e[2].size, cases[i].low_end - 0x100000);
                CHECK_EQ(e[2].type, X86_E820_RAM);
                if (n == 4) {
                        CHECK_EQ(e[3].addr, 4 * GIB);
                        CHECK_EQ(e[3].size, cases[i].high_size);
                        CHECK_EQ(e[3].type, X86_E820_RAM);
                }
                uint64_t ram = 0;
                for (int k = 0; k < n; k++)
                        if (e[k].type == X86_E820_RAM)
                                ram += e[k].size;
                /* all RAM is reported except the EBDA..1 MiB hole */
                CHECK_EQ(ram, cases[i].ram - (0x100000 - 0x9fc00));
                CHECK_EQ(x86_e820_build(&m, e, 3), -EINVAL);
                gmem_destroy(&m);
        }
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 1 * MIB, X86_MMIO_GAP_START), 0);
        struct x86_e820_entry e[X86_E820_MAX];
        CHECK_EQ(x86_e820_build(&m, e, X86_E820_MAX), -EINVAL);
        gmem_destroy(&m);
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
        uint8_t s = 0;
        for (size_t i = 0; i < n; i++)
                s = (uint8_t)(s + p[i]);
        return s;
}

/* Finds the MP floating pointer the way Linux does: 16-byte steps through the F-segment. */
static const uint8_t *find_mpf(const struct gmem *m)
{
        for (uint64_t a = 0xf0000; a < 0x100000; a += 16) {
                const uint8_t *p = gmem_ptr(m, a, 16);
                if (p && memcmp(p, "_MP_", 4) == 0 && p[8] == 1 && sum8(p, 16) == 0 &&
                    (p[9] == 1 || p[9] == 4))
                        return p;
        }
        return NULL;
}

static void check_mptable(unsigned ncpus)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        char err[256];
        REQUIRE_EQ(x86_mptable_write(&m, ncpus, err, sizeof(err)), 0);
        const uint8_t *mpf = find_mpf(&m);
        REQUIRE(mpf != NULL);
        CHECK_EQ(mpf[11], 0); /* feature1: no default configuration, read the table */
        uint32_t physptr = le32(mpf + 4);
        const uint8_t *mpc = gmem_ptr(&m, physptr, 44);
        REQUIRE(mpc != NULL);
        CHECK(memcmp(mpc, "PCMP", 4) == 0);
        uint16_t len = le16(mpc + 4);
        REQUIRE(gmem_ptr(&m, physptr, len) != NULL);
        CHECK_EQ(sum8(mpc, len), 0);
        CHECK_EQ(mpc[6], 4);
        CHECK_EQ(le32(mpc + 36), 0xfee00000);
        CHECK_EQ(16 + len, x86_mptable_size(ncpus));
        unsigned count = le16(mpc + 34);

        unsigned cpus = 0, buses = 0, ioapics = 0, intsrc = 0, lints = 0, entries = 0, bsp = 0;
        unsigned seen_irq = 0;
        uint8_t ioapic_id = 0xff;
        size_t off = 44;
        while (off < len) {
                const uint8_t *e = mpc + off;
                entries++;
                switch (e[0]) {
                case 0:
                        CHECK_EQ(e[1], cpus); /* APIC ids 0..n-1 in order */
                        CHECK(e[3] & 1);      /* enabled */
                        if (e[3] & 2) {
                                bsp++;
                                CHECK_EQ(e[1], 0);
                        }
                        cpus++;
                        off += 20;
                        break;
                case 1:
                        CHECK_EQ(e[1], 0);
                        CHECK(memcmp(e + 2, "ISA   ", 6) == 0);
                        buses++;
                        off += 8;
                        break;
                case 2:
                        ioapic_id = e[1];
                        CHECK(e[1] >= ncpus);
                        CHECK_EQ(e[3], 1);
                        CHECK_EQ(le32(e + 4), 0xfec00000);
                        ioapics++;
                        off += 8;
                        break;
                case 3:
                        CHECK_EQ(e[1], 0);        /* INT */
                        CHECK_EQ(le16(e + 2), 0); /* conforms to ISA: edge, high */
                        CHECK_EQ(e[4], 0);        /* ISA bus */
                        CHECK_EQ(e[6], ioapic_id);
                        CHECK_EQ(e[7], e[5]); /* ISA IRQ n -> pin n */
                        CHECK(e[5] < 16 && e[5] != 2);
                        seen_irq |= 1u << e[5];
                        intsrc++;
                        off += 8;
                        break;
                case 4:
                        CHECK_EQ(e[6], 0xff);
                        CHECK_EQ(e[7], lints);
                        CHECK_EQ(e[1], lints == 0 ? 3 : 1); /* LINT0 ExtINT, LINT1 NMI */
                        lints++;
                        off += 8;
                        break;
                default:
                        FAILF("unknown MP entry type %u at %zu", e[0], off);
                }
        }
        CHECK_EQ(off, len);
        CHECK_EQ(cpus, ncpus);
        CHECK_EQ(bsp, 1);
        CHECK_EQ(buses, 1);
        CHECK_EQ(ioapics, 1);
        CHECK_EQ(intsrc, 15);
        CHECK_EQ(seen_irq, 0xfffb);
        CHECK_EQ(lints, 2);
        CHECK_EQ(count, entries);
        gmem_destroy(&m);
}

static void t_mptable(void)
{
        check_mptable(1);
        check_mptable(2);
        check_mptable(8);
        check_mptable(X86_MAX_VCPUS);
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        char err[256];
        CHECK_EQ(x86_mptable_write(&m, 0, err, sizeof(err)), -EINVAL);
        CHECK_EQ(x86_mptable_write(&m, X86_MAX_VCPUS + 1, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "65 vCPUs") != NULL);
        gmem_destroy(&m);
}

static void t_gdt_and_page_tables(void)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        REQUIRE_EQ(x86_gdt_write(&m), 0);
        REQUIRE_EQ(x86_page_tables_write(&m), 0);
        const uint8_t *gdt = gmem_ptr(&m, X86_GDT_ADDR, X86_GDT_ENTRIES * 8);
        REQUIRE(gdt != NULL);
        CHECK_EQ(le64(gdt), 0);
        CHECK_EQ(le64(gdt + X86_SEL_CODE32), 0x00cf9b000000ffffull);
        CHECK_EQ(le64(gdt + X86_SEL_CODE64), 0x00af9b000000ffffull);
        CHECK_EQ(le64(gdt + X86_SEL_DATA), 0x00cf93000000ffffull);
        CHECK_EQ(le64(gdt + X86_SEL_TSS), 0x00008b0000000067ull);
        const uint8_t *idt = gmem_ptr(&m, X86_IDT_ADDR, 8);
        REQUIRE(idt != NULL);
        CHECK_EQ(le64(idt), 0);

        const uint8_t *pml4 = gmem_ptr(&m, X86_PML4_ADDR, 4096);
        const uint8_t *pdpt = gmem_ptr(&m, X86_PDPT_ADDR, 4096);
        const uint8_t *pd = gmem_ptr(&m, X86_PD_ADDR, 4096);
        REQUIRE(pml4 && pdpt && pd);
        CHECK_EQ(le64(pml4), X86_PDPT_ADDR | 3);
        CHECK_EQ(le64(pdpt), X86_PD_ADDR | 3);
        for (int i = 1; i < 512; i++) {
                CHECK_EQ(le64(pml4 + 8 * i), 0);
                CHECK_EQ(le64(pdpt + 8 * i), 0);
        }
        /* walk: every 2 MiB page of the first GiB maps to itself, writable */
        for (uint64_t va = 0; va < GIB; va += 2 * MIB + 4096 * 7) {
                uint64_t e4 = le64(pml4 + 8 * ((va >> 39) & 511));
                REQUIRE(e4 & 1);
                const uint8_t *t3 = gmem_ptr(&m, e4 & ~0xfffull, 4096);
                REQUIRE(t3 != NULL);
                uint64_t e3 = le64(t3 + 8 * ((va >> 30) & 511));
                REQUIRE(e3 & 1);
                CHECK(!(e3 & 0x80));
                const uint8_t *t2 = gmem_ptr(&m, e3 & ~0xfffull, 4096);
                REQUIRE(t2 != NULL);
                uint64_t e2 = le64(t2 + 8 * ((va >> 21) & 511));
                CHECK((e2 & 0x83) == 0x83);
                CHECK_EQ((e2 & ~0x1fffffull) | (va & 0x1fffff), va);
        }
        gmem_destroy(&m);
}

static void t_zero_page(void)
{
        /* The offsets ember writes are the kernel's. */
        CHECK_EQ(offsetof(struct boot_params, e820_entries), 0x1e8);
        CHECK_EQ(offsetof(struct boot_params, hdr), 0x1f1);
        CHECK_EQ(offsetof(struct boot_params, e820_table), 0x2d0);
        CHECK_EQ(offsetof(struct boot_params, ext_ramdisk_image), 0xc0);
        CHECK_EQ(offsetof(struct boot_params, ext_cmd_line_ptr), 0xc8);
        CHECK_EQ(sizeof(struct setup_header), X86_SETUP_HEADER_MAX);
        CHECK_EQ(sizeof(struct boot_params), 4096);

        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        struct x86_kernel_info ki;
        bz_kernel(&m, &ki, 4 * MIB, 0x7fffffff);
        static uint8_t initrd[100000];
        for (size_t i = 0; i < sizeof(initrd); i++)
                initrd[i] = (uint8_t)(i ^ (i >> 8));
        struct x86_boot_cfg cfg = {.kernel = &ki,
                                   .cmdline = "console=ttyS0 rdinit=/.ember/init",
                                   .initramfs = initrd,
                                   .initramfs_len = sizeof(initrd),
                                   .ncpus = 2};
        struct x86_boot_entry e;
        char err[256] = "";
        int r = x86_boot_setup(&m, &cfg, &e, err, sizeof(err));
        if (r)
                FAILF("boot_setup: %s", err);
        CHECK_EQ(e.mode, X86_ENTRY_LONG64);
        CHECK_EQ(e.rip, 0x100200);
        CHECK_EQ(e.rsi, X86_ZERO_PAGE_ADDR);
        CHECK_EQ(e.rsp, X86_BOOT_STACK);

        const struct boot_params *bp = gmem_ptr(&m, X86_ZERO_PAGE_ADDR, sizeof(*bp));
        REQUIRE(bp != NULL);
        CHECK_EQ(bp->hdr.header, 0x53726448);
        CHECK_EQ(bp->hdr.boot_flag, 0xaa55);
        CHECK_EQ(bp->hdr.version, 0x020f);
        CHECK_EQ(bp->hdr.setup_sects, 4);
        CHECK_EQ(bp->hdr.type_of_loader, 0xff);
        CHECK_EQ(bp->hdr.loadflags, LOADED_HIGH);
        CHECK_EQ(bp->hdr.code32_start, 0x100000);
        CHECK_EQ(bp->hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
        CHECK_EQ(bp->ext_cmd_line_ptr, 0);
        CHECK_EQ(bp->hdr.ramdisk_image, e.initrd_addr);
        CHECK_EQ(bp->hdr.ramdisk_size, sizeof(initrd));
        CHECK_EQ(bp->ext_ramdisk_image, 0);
        CHECK_EQ(bp->ext_ramdisk_size, 0);
        CHECK_EQ(bp->hdr.cmdline_size, 2047);
        CHECK_EQ(bp->hdr.kernel_alignment, 0x200000);
        CHECK_EQ(bp->hdr.init_size, 4 * MIB);
        CHECK_EQ(bp->hdr.xloadflags & XLF_KERNEL_64, XLF_KERNEL_64);
        CHECK_EQ(bp->hdr.hardware_subarch, 0);
        CHECK_EQ(bp->hdr.setup_data, 0);
        CHECK_EQ(bp->sentinel, 0);
        CHECK_EQ(bp->acpi_rsdp_addr, 0);
        struct x86_e820_entry want[X86_E820_MAX];
        int n = x86_e820_build(&m, want, X86_E820_MAX);
        REQUIRE_EQ(bp->e820_entries, n);
        for (int i = 0; i < n; i++) {
                CHECK_EQ(bp->e820_table[i].addr, want[i].addr);
                CHECK_EQ(bp->e820_table[i].size, want[i].size);
                CHECK_EQ(bp->e820_table[i].type, want[i].type);
        }
        /* the initramfs bytes are where the zero page says */
        const uint8_t *rd = gmem_ptr(&m, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size);
        REQUIRE(rd != NULL);
        CHECK(memcmp(rd, initrd, sizeof(initrd)) == 0);
        CHECK_STR((const char *)gmem_ptr(&m, bp->hdr.cmd_line_ptr, 1),
                  "console=ttyS0 rdinit=/.ember/init");
        /* and the MP table, GDT and page tables are there too */
        CHECK(find_mpf(&m) != NULL);
        const uint8_t *pml4 = gmem_ptr(&m, X86_PML4_ADDR, 8);
        CHECK_EQ(le64(pml4), X86_PDPT_ADDR | 3);
        gmem_destroy(&m);
}

static void t_pvh_start_info(void)
{
        CHECK_EQ(X86_PVH_START_INFO_ADDR % 8, 0);
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 5 * GIB, X86_MMIO_GAP_START), 0);
        struct x86_kernel_info ki = pvh_kernel(14 * MIB);
        static uint8_t initrd[12345];
        memset(initrd, 0x5a, sizeof(initrd));
        struct x86_boot_cfg cfg = {.kernel = &ki,
                                   .cmdline = "quiet",
                                   .initramfs = initrd,
                                   .initramfs_len = sizeof(initrd),
                                   .ncpus = 4};
        struct x86_boot_entry e;
        char err[256] = "";
        int r = x86_boot_setup(&m, &cfg, &e, err, sizeof(err));
        if (r)
                FAILF("boot_setup: %s", err);
        CHECK_EQ(e.mode, X86_ENTRY_PVH32);
        CHECK_EQ(e.rip, 0x1000100);
        CHECK_EQ(e.rbx, X86_PVH_START_INFO_ADDR);

        const uint8_t *si = gmem_ptr(&m, e.rbx, 56);
        REQUIRE(si != NULL);
        CHECK_EQ(le32(si), 0x336ec578);
        CHECK_EQ(le32(si + 4), 1);  /* version */
        CHECK_EQ(le32(si + 8), 0);  /* flags */
        CHECK_EQ(le32(si + 12), 1); /* nr_modules */
        CHECK_EQ(le64(si + 16), X86_PVH_MODLIST_ADDR);
        CHECK_EQ(le64(si + 24), X86_CMDLINE_ADDR);
        CHECK_EQ(le64(si + 32), 0); /* rsdp */
        CHECK_EQ(le64(si + 40), X86_PVH_MEMMAP_ADDR);
        CHECK_EQ(le32(si + 48), 4); /* memmap entries: 5 GiB has a high part */
        CHECK_EQ(le32(si + 52), 0);
        CHECK_STR((const char *)gmem_ptr(&m, le64(si + 24), 1), "quiet");

        const uint8_t *mod = gmem_ptr(&m, X86_PVH_MODLIST_ADDR, 32);
        REQUIRE(mod != NULL);
        CHECK_EQ(le64(mod), e.initrd_addr);
        CHECK_EQ(le64(mod + 8), sizeof(initrd));
        CHECK_EQ(le64(mod + 16), 0);
        CHECK_EQ(le64(mod + 24), 0);
        const uint8_t *rd = gmem_ptr(&m, e.initrd_addr, sizeof(initrd));
        REQUIRE(rd != NULL);
        CHECK(memcmp(rd, initrd, sizeof(initrd)) == 0);
        /* high in low RAM: just below the gap */
        CHECK(e.initrd_addr + sizeof(initrd) <= X86_MMIO_GAP_START);
        CHECK(e.initrd_addr + sizeof(initrd) > X86_MMIO_GAP_START - 4096);

        const uint8_t *mm = gmem_ptr(&m, X86_PVH_MEMMAP_ADDR, 24 * 4);
        REQUIRE(mm != NULL);
        struct x86_e820_entry want[X86_E820_MAX];
        REQUIRE_EQ(x86_e820_build(&m, want, X86_E820_MAX), 4);
        for (int i = 0; i < 4; i++) {
                CHECK_EQ(le64(mm + 24 * i), want[i].addr);
                CHECK_EQ(le64(mm + 24 * i + 8), want[i].size);
                CHECK_EQ(le32(mm + 24 * i + 16), want[i].type);
                CHECK_EQ(le32(mm + 24 * i + 20), 0);
        }
        CHECK_EQ(le64(mm + 24 * 3), 4 * GIB);

        /* without an initramfs: no module */
        cfg.initramfs = NULL;
        cfg.initramfs_len = 0;
        REQUIRE_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), 0);
        CHECK_EQ(le32(si + 12), 0);
        CHECK_EQ(le64(si + 16), 0);
        CHECK_EQ(e.initrd_addr, 0);
        CHECK_EQ(e.initrd_size, 0);
        gmem_destroy(&m);
}

static void t_cmdline_written(void)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        uint8_t *area = gmem_ptr(&m, X86_CMDLINE_ADDR, X86_CMDLINE_AREA);
        REQUIRE(area != NULL);
        memset(area, 'X', X86_CMDLINE_AREA);
        struct x86_kernel_info ki = pvh_kernel(8 * MIB);
        struct x86_boot_cfg cfg = {.kernel = &ki, .cmdline = "a b=c", .ncpus = 1};
        struct x86_boot_entry e;
        char err[256];
        REQUIRE_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), 0);
        CHECK_EQ(e.cmdline_addr, X86_CMDLINE_ADDR);
        CHECK(memcmp(area, "a b=c\0", 6) == 0);

        cfg.cmdline = NULL; /* empty */
        REQUIRE_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), 0);
        CHECK_EQ(area[0], 0);

        /* exactly the PVH limit, then one more */
        char *line = malloc(X86_PVH_CMDLINE_MAX + 2);
        REQUIRE(line != NULL);
        memset(line, 'y', X86_PVH_CMDLINE_MAX + 1);
        line[X86_PVH_CMDLINE_MAX] = '\0';
        cfg.cmdline = line;
        REQUIRE_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), 0);
        CHECK_EQ(strlen((const char *)area), X86_PVH_CMDLINE_MAX);
        line[X86_PVH_CMDLINE_MAX] = 'y';
        line[X86_PVH_CMDLINE_MAX + 1] = '\0';
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -E2BIG);
        CHECK_STR(err, "kernel command line is 2048 bytes, the kernel accepts at most 2047");
        free(line);
        gmem_destroy(&m);
}

static void check_placement(uint64_t ram, const struct x86_kernel_info *ki, uint64_t size)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, ram, X86_MMIO_GAP_START), 0);
        uint64_t addr = 0;
        char err[256] = "";
        int r = x86_initrd_place(&m, ki, size, &addr, err, sizeof(err));
        if (r)
                FAILF("ram %llu MiB, initrd %llu: %s", (unsigned long long)(ram >> 20),
                      (unsigned long long)size, err);
        uint64_t low_end = ram < X86_MMIO_GAP_START ? ram : X86_MMIO_GAP_START;
        uint64_t limit = low_end < ki->initrd_addr_max + 1 ? low_end : ki->initrd_addr_max + 1;
        CHECK_EQ(addr % 4096, 0);
        CHECK(addr >= ki->mem_end);        /* after the kernel's memory */
        CHECK(addr >= X86_HIGH_MEM_START); /* never in ember's low structures */
        CHECK(addr + size <= limit);       /* in RAM, below the kernel's limit */
        CHECK(addr + size > limit - 4096); /* as high as it goes */
        CHECK(gmem_ptr(&m, addr, size) != NULL);
        gmem_destroy(&m);
}

static void t_initrd_placement(void)
{
        struct x86_kernel_info ki;
        bz_kernel(NULL, &ki, 4 * MIB, 0x7fffffff); /* kernel memory [1 MiB, 20 MiB) */
        uint64_t rams[] = {24 * MIB, 64 * MIB, 512 * MIB, 3 * GIB, 5 * GIB};
        uint64_t sizes[] = {1, 4095, 4096, 4097, 1 * MIB, 3 * MIB + 17};
        for (size_t i = 0; i < sizeof(rams) / sizeof(rams[0]); i++)
                for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
                        check_placement(rams[i], &ki, sizes[j]);
        /* initrd_addr_max below RAM's end: the kernel's limit wins */
        bz_kernel(NULL, &ki, 4 * MIB, 0x2ffffff);
        check_placement(256 * MIB, &ki, 5 * MIB);
        struct x86_kernel_info pvh = pvh_kernel(30 * MIB);
        check_placement(64 * MIB, &pvh, 16 * MIB);
        check_placement(5 * GIB, &pvh, 200 * MIB);

        /* no initramfs: nothing placed */
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        uint64_t addr = 1;
        char err[256];
        CHECK_EQ(x86_initrd_place(&m, &ki, 0, &addr, err, sizeof(err)), 0);
        CHECK_EQ(addr, 0);
        gmem_destroy(&m);
}

static void t_too_small_errors(void)
{
        struct gmem m;
        struct x86_kernel_info ki;
        char err[256];
        uint64_t addr;
        /* The brief's example: 32 MiB for a kernel up to 20 MiB and a 15 MiB initramfs. */
        bz_kernel(NULL, &ki, 4 * MIB, 0x7fffffff);
        REQUIRE_EQ(gmem_init(&m, 32 * MIB, X86_MMIO_GAP_START), 0);
        CHECK_EQ(x86_initrd_place(&m, &ki, 15 * MIB, &addr, err, sizeof(err)), -ENOMEM);
        CHECK_STR(err, "guest memory 32 MiB too small for kernel (20 MiB) + initramfs (15 MiB)");
        /* through x86_boot_setup too */
        static uint8_t big[15 * MIB];
        struct x86_boot_cfg cfg = {.kernel = &ki,
                                   .cmdline = "",
                                   .initramfs = big,
                                   .initramfs_len = sizeof(big),
                                   .ncpus = 1};
        struct x86_boot_entry e;
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -ENOMEM);
        CHECK_STR(err, "guest memory 32 MiB too small for kernel (20 MiB) + initramfs (15 MiB)");
        /* 12 MiB fits exactly; 12 MiB + 1 byte does not */
        CHECK_EQ(x86_initrd_place(&m, &ki, 12 * MIB, &addr, err, sizeof(err)), 0);
        CHECK_EQ(addr, 20 * MIB);
        CHECK_EQ(x86_initrd_place(&m, &ki, 12 * MIB + 1, &addr, err, sizeof(err)), -ENOMEM);
        CHECK_STR(err, "guest memory 32 MiB too small for kernel (20 MiB) + initramfs (13 MiB)");
        gmem_destroy(&m);

        /* the kernel alone does not fit */
        REQUIRE_EQ(gmem_init(&m, 16 * MIB, X86_MMIO_GAP_START), 0);
        cfg.initramfs_len = 0;
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -ENOMEM);
        CHECK_STR(err, "guest memory 16 MiB too small for kernel (20 MiB)");
        gmem_destroy(&m);

        /* the kernel's initrd_addr_max, not RAM, is the limit */
        bz_kernel(NULL, &ki, 4 * MIB, 0x17fffff); /* 24 MiB */
        REQUIRE_EQ(gmem_init(&m, 256 * MIB, X86_MMIO_GAP_START), 0);
        CHECK_EQ(x86_initrd_place(&m, &ki, 5 * MIB, &addr, err, sizeof(err)), -ENOMEM);
        CHECK_STR(err, "initramfs (5 MiB) does not fit between the kernel's end (20 MiB) and the "
                       "kernel's initrd limit (24 MiB)");
        gmem_destroy(&m);
}

static void t_boot_setup_argument_errors(void)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 64 * MIB, X86_MMIO_GAP_START), 0);
        struct x86_kernel_info ki = pvh_kernel(8 * MIB);
        struct x86_boot_cfg cfg = {.kernel = &ki, .ncpus = 0};
        struct x86_boot_entry e;
        char err[256];
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "0 vCPUs") != NULL);
        cfg.ncpus = X86_MAX_VCPUS + 1;
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -EINVAL);
        cfg.ncpus = X86_MAX_VCPUS;
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), 0);
        cfg.initramfs_len = 10; /* without data */
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -EINVAL);
        cfg.initramfs_len = 0;
        cfg.kernel = NULL;
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -EINVAL);
        gmem_destroy(&m);

        /* RAM below the layout's minimum */
        REQUIRE_EQ(gmem_init(&m, 1 * MIB, X86_MMIO_GAP_START), 0);
        cfg.kernel = &ki;
        CHECK_EQ(x86_boot_setup(&m, &cfg, &e, err, sizeof(err)), -ENOMEM);
        gmem_destroy(&m);
}

static uint8_t *slurp(const char *path, size_t *len)
{
        int fd = open(path, O_RDONLY);
        if (fd < 0)
                return NULL;
        struct stat st;
        uint8_t *buf = NULL;
        if (fstat(fd, &st) == 0 && st.st_size > 0 && (buf = malloc((size_t)st.st_size))) {
                *len = 0;
                while (*len < (size_t)st.st_size) {
                        ssize_t n = read(fd, buf + *len, (size_t)st.st_size - *len);
                        if (n <= 0)
                                break;
                        *len += (size_t)n;
                }
        }
        close(fd);
        return buf;
}

/* The real guest kernels (if built): 64 MiB and 512 MiB guests with a 1 MiB initramfs. */
static void t_real_kernels_boot_setup(void)
{
        const char *paths[] = {"build/guest/bzImage", "build/guest/vmlinux"};
        int found = 0;
        static uint8_t initrd[1 << 20];
        memset(initrd, 0x30, sizeof(initrd));
        for (int k = 0; k < 2; k++) {
                size_t len = 0;
                uint8_t *img = slurp(paths[k], &len);
                if (!img)
                        continue;
                found++;
                uint64_t rams[] = {64 * MIB, 512 * MIB};
                for (int i = 0; i < 2; i++) {
                        struct gmem m;
                        REQUIRE_EQ(gmem_init(&m, rams[i], X86_MMIO_GAP_START), 0);
                        struct x86_kernel_info ki;
                        char err[256];
                        REQUIRE_EQ(x86_kernel_probe(img, len, paths[k], &ki, err, sizeof(err)), 0);
                        REQUIRE_EQ(x86_kernel_load(&m, img, len, &ki, err, sizeof(err)), 0);
                        struct x86_boot_cfg cfg = {.kernel = &ki,
                                                   .cmdline = "console=ttyS0 earlyprintk=ttyS0",
                                                   .initramfs = initrd,
                                                   .initramfs_len = sizeof(initrd),
                                                   .ncpus = 2};
                        struct x86_boot_entry e;
                        int r = x86_boot_setup(&m, &cfg, &e, err, sizeof(err));
                        if (r)
                                FAILF("%s in %llu MiB: %s", paths[k],
                                      (unsigned long long)(rams[i] >> 20), err);
                        CHECK(e.initrd_addr >= ki.mem_end);
                        CHECK(e.initrd_addr + e.initrd_size <= rams[i]);
                        if (ki.kind == X86_KERNEL_BZIMAGE) {
                                const struct boot_params *bp =
                                    gmem_ptr(&m, X86_ZERO_PAGE_ADDR, sizeof(*bp));
                                REQUIRE(bp != NULL);
                                CHECK_EQ(bp->hdr.header, 0x53726448);
                                CHECK_EQ(memcmp(&bp->hdr, img + 0x1f1, 0x210 - 0x1f1), 0);
                                CHECK_EQ(bp->hdr.ramdisk_image, e.initrd_addr);
                                CHECK_EQ(e.mode, X86_ENTRY_LONG64);
                        } else {
                                CHECK_EQ(e.mode, X86_ENTRY_PVH32);
                                CHECK_EQ(e.rip, ki.entry);
                        }
                        gmem_destroy(&m);
                }
                free(img);
        }
        if (!found)
                SKIP("build/guest/bzImage and vmlinux not built (make guest)");
}

int main(void)
{
        T_RUN(t_layout_areas_disjoint);
        T_RUN(t_e820_maps);
        T_RUN(t_mptable);
        T_RUN(t_gdt_and_page_tables);
        T_RUN(t_zero_page);
        T_RUN(t_pvh_start_info);
        T_RUN(t_cmdline_written);
        T_RUN(t_initrd_placement);
        T_RUN(t_too_small_errors);
        T_RUN(t_boot_setup_argument_errors);
        T_RUN(t_real_kernels_boot_setup);
        return T_DONE();
}
