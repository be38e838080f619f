/* x86 vCPU state helpers: registers, segments and control registers for both entry modes,
 * CPUID topology edits on Intel- and AMD-like tables, boot MSRs, LAPIC LINT wiring. */
#include "test.h"

#include <cpuid.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"

#define SIG 1u /* KVM_CPUID_FLAG_SIGNIFCANT_INDEX */

static struct kvm_cpuid_entry2 tab[64];
static uint32_t ntab;

static void add(uint32_t fn, uint32_t idx, uint32_t flags, uint32_t a, uint32_t b, uint32_t c,
                uint32_t d)
{
        tab[ntab++] = (struct kvm_cpuid_entry2){
            .function = fn, .index = idx, .flags = flags, .eax = a, .ebx = b, .ecx = c, .edx = d};
}

static void vendor(const char *v12, uint32_t max_leaf)
{
        uint32_t b, d, c;
        memcpy(&b, v12, 4);
        memcpy(&d, v12 + 4, 4);
        memcpy(&c, v12 + 8, 4);
        add(0, 0, 0, max_leaf, b, c, d);
}

/* A host-like Intel table: 2 threads per core, 8 cores. */
static void intel_table(int with_topology_levels)
{
        ntab = 0;
        vendor("GenuineIntel", 0x1f);
        add(1, 0, 0, 0x000906ea, 0x05100800, 0x7ffafbff, 0xbfebfbff);
        add(4, 0, SIG, 0x1c004121, 0x01c0003f, 0x3f, 0);   /* L1d */
        add(4, 1, SIG, 0x1c004122, 0x01c0003f, 0x3f, 0);   /* L1i */
        add(4, 2, SIG, 0x1c004143, 0x00c0003f, 0x3ff, 0);  /* L2 */
        add(4, 3, SIG, 0x1c03c163, 0x02c0003f, 0x3fff, 6); /* L3 */
        add(4, 4, SIG, 0, 0, 0, 0);
        add(0xb, 0, SIG, 1, 2, 0x100, 5);
        if (with_topology_levels) {
                add(0xb, 1, SIG, 4, 16, 0x201, 5);
                add(0xb, 2, SIG, 0, 0, 2, 5);
        }
        add(0x1f, 0, SIG, 1, 2, 0x100, 5);
        add(0x1f, 1, SIG, 4, 16, 0x201, 5);
        add(0x1f, 2, SIG, 0, 0, 2, 5);
        add(0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
        add(0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
        add(0x80000000, 0, 0, 0x80000008, 0, 0, 0);
        add(0x80000008, 0, 0, 0x3027, 0, 0, 0);
}

static void amd_table(void)
{
        ntab = 0;
        vendor("AuthenticAMD", 0x10);
        add(1, 0, 0, 0x00a00f11, 0x03200800, 0x7ed8320b, 0x178bfbff);
        add(4, 0, SIG, 0x1234, 0x5678, 0, 0); /* not AMD's: left alone */
        add(0x80000000, 0, 0, 0x80000023, 0, 0, 0);
        add(0x80000008, 0, 0, 0x3030, 0, 0x0000701f, 0);
        add(0x8000001d, 0, SIG, 0x00004121, 0x01c0003f, 0x3f, 0);
        add(0x8000001d, 3, SIG, 0x0003c163, 0x03c0003f, 0x7fff, 1);
        add(0x8000001e, 0, 0, 0x0000000a, 0x00000105, 0x00000300, 0);
}

static struct kvm_cpuid_entry2 *get(uint32_t fn, uint32_t idx)
{
        for (uint32_t i = 0; i < ntab; i++)
                if (tab[i].function == fn && (!(tab[i].flags & SIG) || tab[i].index == idx))
                        return &tab[i];
        return NULL;
}

static void t_cpuid_intel_topology(void)
{
        intel_table(1);
        uint32_t n = x86_cpuid_adjust(tab, ntab, 64, 3, 8, NULL);
        CHECK_EQ(n, ntab);
        struct kvm_cpuid_entry2 *e = get(1, 0);
        CHECK_EQ(e->ebx >> 24, 3);          /* initial APIC id */
        CHECK_EQ((e->ebx >> 16) & 0xff, 8); /* logical processors */
        CHECK_EQ(e->ebx & 0xffff, 0x0800);  /* CLFLUSH size kept */
        CHECK(e->edx & (1u << 28));         /* HTT: more than one logical CPU */
        CHECK(e->ecx & (1u << 31));         /* hypervisor */
        CHECK_EQ(e->eax, 0x000906ea);

        const uint32_t type_level[4] = {0x121, 0x122, 0x143, 0x163};
        for (uint32_t i = 0; i < 4; i++) {
                e = get(4, i);
                CHECK_EQ((e->eax >> 26) + 1, 8);
                CHECK_EQ(e->eax & 0x3fff, type_level[i]);
                CHECK_EQ(((e->eax >> 14) & 0xfff) + 1, i == 3 ? 8 : 1);
        }
        CHECK_EQ(get(4, 4)->eax, 0); /* the terminating subleaf stays null */

        for (uint32_t leaf = 0xb; leaf <= 0x1f; leaf += 0x14) {
                e = get(leaf, 0);
                CHECK_EQ(e->eax & 0x1f, 0);
                CHECK_EQ(e->ebx, 1);
                CHECK_EQ(e->ecx, 0x100);
                CHECK_EQ(e->edx, 3);
                e = get(leaf, 1);
                CHECK_EQ(e->eax & 0x1f, 3);
                CHECK_EQ(e->ebx, 8);
                CHECK_EQ(e->ecx, 0x201);
                CHECK_EQ(e->edx, 3);
                e = get(leaf, 2);
                CHECK_EQ(e->ebx, 0);
                CHECK_EQ(e->ecx, 2);
                CHECK_EQ(e->edx, 3);
        }

        e = get(0x40000000, 0);
        char sig[12];
        memcpy(sig, &e->ebx, 4);
        memcpy(sig + 4, &e->ecx, 4);
        memcpy(sig + 8, &e->edx, 4);
        CHECK(memcmp(sig, "KVMKVMKVM\0\0\0", 12) == 0);
        CHECK_EQ(e->eax, 0x40000001);
        CHECK_EQ(get(0x40000001, 0)->eax, 0x01007afb); /* KVM's feature bits kept */
        CHECK_EQ(get(0x80000008, 0)->ecx, 0);          /* AMD-only field untouched */
}

static void t_cpuid_single_cpu(void)
{
        intel_table(1);
        CHECK_EQ(x86_cpuid_adjust(tab, ntab, 64, 0, 1, NULL), ntab);
        struct kvm_cpuid_entry2 *e = get(1, 0);
        CHECK_EQ(e->ebx >> 24, 0);
        CHECK_EQ((e->ebx >> 16) & 0xff, 1);
        CHECK(!(e->edx & (1u << 28)));
        CHECK_EQ(get(0xb, 1)->eax & 0x1f, 0);
        CHECK_EQ(get(0xb, 1)->ebx, 1);
        CHECK_EQ(get(4, 3)->eax >> 14, 0);

        /* non-power-of-two counts round the APIC id width up */
        intel_table(1);
        x86_cpuid_adjust(tab, ntab, 64, 2, 3, NULL);
        CHECK_EQ(get(0xb, 1)->eax & 0x1f, 2);
        CHECK_EQ(get(0xb, 1)->ebx, 3);
        intel_table(1);
        x86_cpuid_adjust(tab, ntab, 64, 63, 64, NULL);
        CHECK_EQ(get(0xb, 1)->eax & 0x1f, 6);
        CHECK_EQ(get(1, 0)->ebx >> 24, 63);
        CHECK_EQ((get(4, 0)->eax >> 26) + 1, 64);
}

static void t_cpuid_adds_missing_entries(void)
{
        intel_table(0); /* leaf 0xb with only its SMT level */
        uint32_t before = ntab;
        /* remove the KVM leaves too */
        for (uint32_t i = 0; i < ntab; i++)
                if (tab[i].function == 0x40000000 || tab[i].function == 0x40000001) {
                        memmove(&tab[i], &tab[i + 1], (ntab - i - 1) * sizeof(tab[0]));
                        ntab--;
                        i--;
                }
        CHECK_EQ(ntab, before - 2);
        uint32_t n = x86_cpuid_adjust(tab, ntab, 64, 1, 2, NULL);
        CHECK_EQ(n, ntab + 4);
        ntab = n;
        CHECK_EQ(get(0xb, 1)->ebx, 2);
        CHECK_EQ(get(0xb, 1)->edx, 1);
        CHECK_EQ(get(0xb, 1)->flags, SIG);
        CHECK_EQ(get(0xb, 2)->ecx, 2);
        CHECK_EQ(get(0x40000000, 0)->ebx, 0x4b4d564b);
        CHECK(get(0x40000001, 0) != NULL);

        /* no room: nothing added, nothing written past capacity */
        intel_table(0);
        tab[ntab] = (struct kvm_cpuid_entry2){.function = 0xdead};
        n = x86_cpuid_adjust(tab, ntab, ntab, 0, 2, NULL);
        CHECK_EQ(n, ntab);
        CHECK_EQ(tab[ntab].function, 0xdead);

        /* bad arguments: untouched count */
        intel_table(1);
        CHECK_EQ(x86_cpuid_adjust(tab, ntab, 64, 2, 2, NULL), ntab);
        CHECK_EQ(x86_cpuid_adjust(tab, ntab, 64, 0, 0, NULL), ntab);
        CHECK_EQ(x86_cpuid_adjust(tab, ntab, 64, 0, X86_MAX_VCPUS + 1, NULL), ntab);
        CHECK_EQ(x86_cpuid_adjust(tab, ntab, ntab - 1, 0, 1, NULL), ntab);
}

static void t_cpuid_amd_topology(void)
{
        amd_table();
        uint32_t n = x86_cpuid_adjust(tab, ntab, 64, 5, 6, NULL);
        CHECK_EQ(n, ntab + 2); /* KVM leaves added */
        ntab = n;
        struct kvm_cpuid_entry2 *e = get(1, 0);
        CHECK_EQ(e->ebx >> 24, 5);
        CHECK_EQ((e->ebx >> 16) & 0xff, 6);
        e = get(0x80000008, 0);
        CHECK_EQ(e->ecx & 0xff, 5);        /* NC = cores - 1 */
        CHECK_EQ((e->ecx >> 12) & 0xf, 3); /* APIC id bits for 6 cores */
        CHECK_EQ(e->eax, 0x3030);
        e = get(0x8000001e, 0);
        CHECK_EQ(e->eax, 5);
        CHECK_EQ(e->ebx & 0xff, 5);        /* core id */
        CHECK_EQ((e->ebx >> 8) & 0xff, 0); /* one thread per core */
        CHECK_EQ(e->ecx & 0x7ff, 0);       /* node 0 of 1 */
        CHECK_EQ(((get(0x8000001d, 0)->eax >> 14) & 0xfff), 0);
        CHECK_EQ(((get(0x8000001d, 3)->eax >> 14) & 0xfff), 5);
        CHECK_EQ(get(0x8000001d, 3)->eax & 0x3fff, 0x0163 & 0x3fff);
        e = get(4, 0);
        CHECK_EQ(e->eax, 0x1234); /* Intel leaf on AMD: untouched */
}

/* XSAVE leaf advertising AVX state while leaf 1 has no AVX (QEMU TCG's EPYC under a host
 * with AVX): the AVX component is dropped and the sizes recomputed; with AVX it is kept. */
static void t_cpuid_xsave_consistent_with_features(void)
{
        for (int avx = 0; avx <= 1; avx++) {
                amd_table();
                struct kvm_cpuid_entry2 *f1 = get(1, 0);
                f1->ecx = avx ? (f1->ecx | (1u << 28)) : (f1->ecx & ~(1u << 28));
                add(0xd, 0, SIG, 0x7, 0x340, 0x340, 0);
                add(0xd, 1, SIG, 0x5, 0, 0, 0);
                add(0xd, 2, SIG, 0x100, 0x240, 0, 0);
                ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, NULL);
                struct kvm_cpuid_entry2 *xs = get(0xd, 0), *ymm = get(0xd, 2);
                REQUIRE(xs && ymm);
                CHECK_EQ(xs->eax, avx ? 0x7 : 0x3);
                CHECK_EQ(xs->ebx, avx ? 0x340 : 576);
                CHECK_EQ(xs->ecx, avx ? 0x340 : 576);
                CHECK_EQ(ymm->eax, avx ? 0x100 : 0);
        }
}

/* Host facts: the TSC-deadline bit follows KVM_CAP_TSC_DEADLINE_TIMER (and is cleared without
 * it, whatever the table said); KVM's all-zero AMD L1 leaf 0x80000005 gets the host's. */
static void t_cpuid_host_facts(void)
{
        const struct x86_cpuid_host host = {
            .tsc_deadline = 1, .amd_l1 = {0x01ff01ff, 0x01ff01ff, 0x40020140, 0x40020140}};
        const struct x86_cpuid_host bare = {0};

        amd_table();
        add(0x80000005, 0, 0, 0, 0, 0, 0);
        ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, &host);
        CHECK(get(1, 0)->ecx & (1u << 24));
        struct kvm_cpuid_entry2 *l1 = get(0x80000005, 0);
        REQUIRE(l1);
        CHECK_EQ(l1->eax, 0x01ff01ff);
        CHECK_EQ(l1->ecx, 0x40020140);
        CHECK_EQ(l1->edx, 0x40020140);

        /* the leaf missing from KVM's table is added; a non-zero one is KVM's and stays */
        amd_table();
        uint32_t before = ntab;
        ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, &host);
        CHECK_EQ(ntab, before + 3); /* KVM leaves + 0x80000005 */
        CHECK_EQ(get(0x80000005, 0)->ecx, 0x40020140);
        amd_table();
        add(0x80000005, 0, 0, 1, 2, 3, 4);
        ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, &host);
        CHECK_EQ(get(0x80000005, 0)->ecx, 3);

        /* no TSC deadline in KVM, no L1 leaf on the host: bit cleared, leaf left zero */
        amd_table();
        get(1, 0)->ecx |= 1u << 24;
        add(0x80000005, 0, 0, 0, 0, 0, 0);
        ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, &bare);
        CHECK(!(get(1, 0)->ecx & (1u << 24)));
        CHECK_EQ(get(0x80000005, 0)->ecx, 0);

        /* Intel: leaf 0x80000005 is reserved there and stays as KVM gave it */
        intel_table(1);
        add(0x80000005, 0, 0, 0, 0, 0, 0);
        get(0x80000000, 0)->eax = 0x80000008;
        ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, &host);
        CHECK_EQ(get(0x80000005, 0)->ecx, 0);
        CHECK(get(1, 0)->ecx & (1u << 24));

        /* brand string: KVM's empty leaves get the host's, a non-empty one is kept */
        struct x86_cpuid_host branded = host;
        static const char brand_text[48] = "AMD EPYC Test Processor";
        memcpy(branded.brand, brand_text, sizeof(branded.brand));
        amd_table();
        add(0x80000002, 0, 0, 0, 0, 0, 0);
        ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, &branded);
        char name[49] = {0};
        for (unsigned i = 0; i < 3; i++) {
                struct kvm_cpuid_entry2 *b = get(0x80000002 + i, 0);
                REQUIRE(b);
                memcpy(name + 16 * i, &b->eax, 4);
                memcpy(name + 16 * i + 4, &b->ebx, 4);
                memcpy(name + 16 * i + 8, &b->ecx, 4);
                memcpy(name + 16 * i + 12, &b->edx, 4);
        }
        CHECK_STR(name, "AMD EPYC Test Processor");
        amd_table();
        add(0x80000003, 0, 0, 0x41414141, 0, 0, 0);
        ntab = x86_cpuid_adjust(tab, ntab, 64, 0, 1, &branded);
        CHECK(get(0x80000002, 0) == NULL); /* KVM said something: left as it is */
        CHECK_EQ(get(0x80000003, 0)->eax, 0x41414141);

        /* the probe reads this CPU; on an AMD host its L1 data cache size is not zero */
        struct x86_cpuid_host probed;
        x86_cpuid_host_probe(&probed, 1);
        CHECK_EQ(probed.tsc_deadline, 1);
        unsigned a, b, c, d;
        __cpuid(0, a, b, c, d);
        if (b == 0x68747541) /* "Auth" */
                CHECK(probed.amd_l1[2] >> 24 != 0);
}

static void t_regs_long_mode(void)
{
        struct x86_boot_entry e = {.mode = X86_ENTRY_LONG64,
                                   .rip = 0x100200,
                                   .rsp = X86_BOOT_STACK,
                                   .rsi = X86_ZERO_PAGE_ADDR};
        struct kvm_regs r;
        memset(&r, 0xaa, sizeof(r));
        x86_vcpu_init_regs(&e, &r);
        CHECK_EQ(r.rip, 0x100200);
        CHECK_EQ(r.rsi, X86_ZERO_PAGE_ADDR);
        CHECK_EQ(r.rsp, X86_BOOT_STACK);
        CHECK_EQ(r.rbp, X86_BOOT_STACK);
        CHECK_EQ(r.rflags, 2);
        CHECK_EQ(r.rax, 0);
        CHECK_EQ(r.rbx, 0);
        CHECK_EQ(r.r15, 0);

        struct kvm_sregs s;
        memset(&s, 0, sizeof(s));
        s.apic_base = 0xfee00900;
        s.interrupt_bitmap[1] = 0x42;
        s.cr0 = 0x60000010; /* reset value: CD NW ET */
        x86_vcpu_init_sregs(&e, &s);
        CHECK_EQ(s.cs.selector, 0x10);
        CHECK_EQ(s.cs.l, 1);
        CHECK_EQ(s.cs.db, 0);
        CHECK_EQ(s.cs.type, 11);
        CHECK_EQ(s.cs.s, 1);
        CHECK_EQ(s.cs.present, 1);
        CHECK_EQ(s.cs.dpl, 0);
        CHECK_EQ(s.cs.g, 1);
        CHECK_EQ(s.cs.base, 0);
        CHECK_EQ(s.cs.limit, 0xffffffff);
        const struct kvm_segment *data[] = {&s.ds, &s.es, &s.fs, &s.gs, &s.ss};
        for (int i = 0; i < 5; i++) {
                CHECK_EQ(data[i]->selector, 0x18);
                CHECK_EQ(data[i]->type, 3);
                CHECK_EQ(data[i]->db, 1);
                CHECK_EQ(data[i]->l, 0);
                CHECK_EQ(data[i]->present, 1);
                CHECK_EQ(data[i]->s, 1);
                CHECK_EQ(data[i]->limit, 0xffffffff);
        }
        CHECK_EQ(s.tr.selector, 0x20);
        CHECK_EQ(s.tr.type, 11);
        CHECK_EQ(s.tr.s, 0);
        CHECK_EQ(s.tr.present, 1);
        CHECK_EQ(s.tr.limit, 0x67);
        CHECK_EQ(s.gdt.base, X86_GDT_ADDR);
        CHECK_EQ(s.gdt.limit, X86_GDT_ENTRIES * 8 - 1);
        CHECK_EQ(s.idt.base, X86_IDT_ADDR);
        CHECK_EQ(s.idt.limit, 7);
        CHECK_EQ(s.cr0, 0x80000011);
        CHECK_EQ(s.cr3, X86_PML4_ADDR);
        CHECK_EQ(s.cr4, 0x20);
        CHECK_EQ(s.efer, 0x500);
        CHECK_EQ(s.apic_base, 0xfee00900);
        CHECK_EQ(s.interrupt_bitmap[1], 0x42);
}

static void t_regs_pvh(void)
{
        struct x86_boot_entry e = {.mode = X86_ENTRY_PVH32,
                                   .rip = 0x10004a0,
                                   .rsp = X86_BOOT_STACK,
                                   .rbx = X86_PVH_START_INFO_ADDR};
        struct kvm_regs r;
        x86_vcpu_init_regs(&e, &r);
        CHECK_EQ(r.rip, 0x10004a0);
        CHECK_EQ(r.rbx, X86_PVH_START_INFO_ADDR);
        CHECK_EQ(r.rsi, 0);
        CHECK_EQ(r.rflags, 2); /* IF, TF, VM clear */

        struct kvm_sregs s;
        memset(&s, 0, sizeof(s));
        s.cr0 = 0x60000010;
        s.efer = 0x500;
        s.cr4 = 0x20;
        s.cr3 = 0x1234000;
        x86_vcpu_init_sregs(&e, &s);
        CHECK_EQ(s.cs.selector, 0x08);
        CHECK_EQ(s.cs.l, 0);
        CHECK_EQ(s.cs.db, 1);
        CHECK_EQ(s.cs.type, 11);
        CHECK_EQ(s.cs.limit, 0xffffffff);
        CHECK_EQ(s.cs.base, 0);
        CHECK_EQ(s.ss.db, 1);
        CHECK_EQ(s.ds.selector, 0x18);
        CHECK_EQ(s.tr.type, 11);
        CHECK_EQ(s.tr.limit, 0x67);
        CHECK_EQ(s.tr.base, 0);
        CHECK_EQ(s.cr0, 0x11); /* PE (ET is read-only 1) */
        CHECK_EQ(s.cr3, 0);
        CHECK_EQ(s.cr4, 0);
        CHECK_EQ(s.efer, 0);
}

static void t_fpu(void)
{
        struct kvm_fpu f;
        memset(&f, 0xff, sizeof(f));
        x86_vcpu_init_fpu(&f);
        CHECK_EQ(f.fcw, 0x37f);
        CHECK_EQ(f.mxcsr, 0x1f80);
        CHECK_EQ(f.fsw, 0);
        CHECK_EQ(f.xmm[3][5], 0);
}

static void t_boot_msrs(void)
{
        struct kvm_msr_entry m[X86_BOOT_MSRS_MAX];
        memset(m, 0xff, sizeof(m));
        size_t n = x86_boot_msrs(m, X86_BOOT_MSRS_MAX);
        CHECK_EQ(n, 11);
        int misc = 0, mtrr = 0, lstar = 0, tsc = 0;
        for (size_t i = 0; i < n; i++) {
                CHECK_EQ(m[i].reserved, 0);
                for (size_t j = i + 1; j < n; j++)
                        CHECK(m[i].index != m[j].index);
                switch (m[i].index) {
                case X86_MSR_IA32_MISC_ENABLE:
                        misc = 1;
                        CHECK_EQ(m[i].data, 1); /* fast strings */
                        break;
                case X86_MSR_MTRR_DEF_TYPE:
                        mtrr = 1;
                        CHECK_EQ(m[i].data, 0x806); /* enabled, default write-back */
                        break;
                case X86_MSR_LSTAR:
                        lstar = 1;
                        CHECK_EQ(m[i].data, 0);
                        break;
                case X86_MSR_IA32_TSC:
                        tsc = 1;
                        CHECK_EQ(m[i].data, 0);
                        break;
                default:
                        CHECK_EQ(m[i].data, 0);
                }
        }
        CHECK(misc && mtrr && lstar && tsc);
        memset(m, 0xff, sizeof(m));
        CHECK_EQ(x86_boot_msrs(m, 3), 3);
        CHECK_EQ(m[3].index, 0xffffffff); /* nothing past max */
        CHECK_EQ(x86_boot_msrs(m, 0), 0);
}

static uint32_t reg32(const struct kvm_lapic_state *l, unsigned off)
{
        uint32_t v;
        memcpy(&v, l->regs + off, 4);
        return v;
}

static void t_lapic_lint(void)
{
        struct kvm_lapic_state l;
        memset(&l, 0x11, sizeof(l));
        uint32_t masked = 0x00010000, other = 0x12345678;
        memcpy(l.regs + 0x350, &masked, 4);
        memcpy(l.regs + 0x360, &masked, 4);
        memcpy(l.regs + 0x340, &other, 4);
        x86_lapic_init(&l);
        CHECK_EQ(reg32(&l, 0x350), 0x00010700); /* ExtINT, mask kept */
        CHECK_EQ(reg32(&l, 0x360), 0x00010400); /* NMI */
        CHECK_EQ(reg32(&l, 0x340), 0x12345678);
        CHECK_EQ((uint8_t)l.regs[0x370], 0x11);
        /* a delivery mode already set is replaced, not ORed */
        uint32_t fixed_vec = 0x000000ef | 0x200; /* SMI + vector */
        memcpy(l.regs + 0x350, &fixed_vec, 4);
        x86_lapic_init(&l);
        CHECK_EQ(reg32(&l, 0x350), 0x000007ef);
}

int main(void)
{
        T_RUN(t_cpuid_intel_topology);
        T_RUN(t_cpuid_single_cpu);
        T_RUN(t_cpuid_adds_missing_entries);
        T_RUN(t_cpuid_amd_topology);
        T_RUN(t_cpuid_xsave_consistent_with_features);
        T_RUN(t_cpuid_host_facts);
        T_RUN(t_regs_long_mode);
        T_RUN(t_regs_pvh);
        T_RUN(t_fpu);
        T_RUN(t_boot_msrs);
        T_RUN(t_lapic_lint);
        return T_DONE();
}
