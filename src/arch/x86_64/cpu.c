#include "arch/x86_64/cpu.h"

#include <cpuid.h>
#include <stdbool.h>
#include <string.h>

#include "arch/x86_64/bytes.h"
#include "arch/x86_64/layout.h"

#define CR0_PE   0x00000001ull
#define CR0_ET   0x00000010ull
#define CR0_PG   0x80000000ull
#define CR4_PAE  0x00000020ull
#define EFER_LME 0x00000100ull
#define EFER_LMA 0x00000400ull

#define RFLAGS_RESERVED 0x2ull

/* The hidden part of a segment register, decoded from the descriptor that x86_gdt_write
 * put in guest memory, so the cached state and the table agree. */
static struct kvm_segment segment_from_gdt(unsigned selector)
{
        uint64_t d = x86_gdt_descriptor(selector);
        uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
        uint8_t access = (uint8_t)(d >> 40), flags = (uint8_t)((d >> 52) & 0xf);
        struct kvm_segment s = {
            .base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24),
            .limit = (flags & 0x8) ? (limit << 12) | 0xfff : limit,
            .selector = (uint16_t)selector,
            .type = access & 0xf,
            .s = (access >> 4) & 1,
            .dpl = (access >> 5) & 3,
            .present = (access >> 7) & 1,
            .avl = flags & 1,
            .l = (flags >> 1) & 1,
            .db = (flags >> 2) & 1,
            .g = (flags >> 3) & 1,
        };
        return s;
}

void x86_vcpu_init_regs(const struct x86_boot_entry *e, struct kvm_regs *r)
{
        memset(r, 0, sizeof(*r));
        r->rflags = RFLAGS_RESERVED;
        r->rip = e->rip;
        r->rsp = e->rsp;
        r->rbp = e->rsp;
        r->rsi = e->rsi;
        r->rbx = e->rbx;
}

void x86_vcpu_init_sregs(const struct x86_boot_entry *e, struct kvm_sregs *s)
{
        int long_mode = e->mode == X86_ENTRY_LONG64;
        struct kvm_segment data = segment_from_gdt(X86_SEL_DATA);

        s->cs = segment_from_gdt(long_mode ? X86_SEL_CODE64 : X86_SEL_CODE32);
        s->ds = s->es = s->fs = s->gs = s->ss = data;
        s->tr = segment_from_gdt(X86_SEL_TSS);
        s->gdt.base = X86_GDT_ADDR;
        s->gdt.limit = X86_GDT_ENTRIES * 8 - 1;
        s->idt.base = X86_IDT_ADDR;
        s->idt.limit = X86_IDT_LIMIT;
        /* CD/NW from the reset value are cleared: the kernel runs cached from the start. */
        if (long_mode) {
                s->cr0 = CR0_PE | CR0_ET | CR0_PG;
                s->cr3 = X86_PML4_ADDR;
                s->cr4 = CR4_PAE;
                s->efer = EFER_LME | EFER_LMA;
        } else {
                s->cr0 = CR0_PE | CR0_ET;
                s->cr3 = 0;
                s->cr4 = 0;
                s->efer = 0;
        }
}

void x86_vcpu_init_fpu(struct kvm_fpu *f)
{
        memset(f, 0, sizeof(*f));
        f->fcw = 0x37f;
        f->mxcsr = 0x1f80;
}

/* --- CPUID -------------------------------------------------------------------------------- */

#define LEAF_VENDOR    0x0u
#define LEAF_FEATURES  0x1u
#define LEAF_CACHE     0x4u
#define LEAF_TOPOLOGY  0xbu
#define LEAF_TOPOLOGY2 0x1fu
#define LEAF_KVM_SIG   0x40000000u
#define LEAF_KVM_FEAT  0x40000001u
#define LEAF_EXT_MAX   0x80000000u
#define LEAF_BRAND     0x80000002u /* ..0x80000004 */
#define LEAF_AMD_L1    0x80000005u
#define LEAF_AMD_SIZES 0x80000008u
#define LEAF_AMD_CACHE 0x8000001du
#define LEAF_AMD_TOPO  0x8000001eu

#define LEAF_EXT_FEATURES   0x7u
#define LEAF_XSAVE          0xdu
#define F1_ECX_AVX          (1u << 28)
#define F7_EBX_MPX          (1u << 14)
#define F7_EBX_AVX512F      (1u << 16)
#define XSAVE_LEGACY_SIZE   576u /* x87 + SSE area and the XSAVE header */
#define F1_ECX_TSC_DEADLINE (1u << 24)
#define F1_ECX_HYPERVISOR   (1u << 31)
#define F1_EDX_HTT          (1u << 28)

#define TOPO_LEVEL_INVALID 0u
#define TOPO_LEVEL_SMT     1u
#define TOPO_LEVEL_CORE    2u

/* "KVMKVMKVM\0\0\0" in ebx, ecx, edx */
#define KVM_SIG_EBX 0x4b4d564bu
#define KVM_SIG_ECX 0x564b4d56u
#define KVM_SIG_EDX 0x0000004du

struct cpuid_table {
        struct kvm_cpuid_entry2 *entries;
        uint32_t nent, capacity;
};

static struct kvm_cpuid_entry2 *cpuid_find(struct cpuid_table *c, uint32_t function, uint32_t index)
{
        for (uint32_t i = 0; i < c->nent; i++) {
                struct kvm_cpuid_entry2 *e = &c->entries[i];
                if (e->function != function)
                        continue;
                if (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index)
                        return e;
        }
        return NULL;
}

static struct kvm_cpuid_entry2 *cpuid_add(struct cpuid_table *c, uint32_t function, uint32_t index,
                                          uint32_t flags)
{
        if (c->nent >= c->capacity)
                return NULL;
        struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];
        memset(e, 0, sizeof(*e));
        e->function = function;
        e->index = index;
        e->flags = flags;
        return e;
}

/* Leaf 0xd must not offer state components whose feature flag is off: Linux drops such a
 * component from XCR0, then finds CPUID's XSAVE size disagree with its own (seen under QEMU
 * TCG, whose EPYC model has no AVX while the host's XSAVE leaf describes AVX state). */
static void xsave_leaf_trim(struct cpuid_table *c)
{
        struct kvm_cpuid_entry2 *xs = cpuid_find(c, LEAF_XSAVE, 0);
        struct kvm_cpuid_entry2 *f1 = cpuid_find(c, LEAF_FEATURES, 0);
        struct kvm_cpuid_entry2 *f7 = cpuid_find(c, LEAF_EXT_FEATURES, 0);
        if (!xs || !f1)
                return;
        uint32_t drop = 0;
        if (!(f1->ecx & F1_ECX_AVX))
                drop |= 1u << 2 | 0xe0u; /* AVX, and AVX-512 which needs it */
        if (!f7 || !(f7->ebx & F7_EBX_AVX512F))
                drop |= 0xe0u; /* opmask, ZMM_Hi256, Hi16_ZMM */
        if (!f7 || !(f7->ebx & F7_EBX_MPX))
                drop |= 0x18u; /* BNDREGS, BNDCSR */
        if (!(xs->eax & drop))
                return;
        xs->eax &= ~drop;
        uint32_t size = XSAVE_LEGACY_SIZE;
        for (uint32_t i = 0; i < c->nent; i++) {
                struct kvm_cpuid_entry2 *e = &c->entries[i];
                if (e->function != LEAF_XSAVE || e->index < 2 || e->index >= 32)
                        continue;
                if (drop & (1u << e->index)) {
                        e->eax = e->ebx = e->ecx = e->edx = 0;
                        continue;
                }
                if ((xs->eax & (1u << e->index)) && e->eax + e->ebx > size)
                        size = e->eax + e->ebx; /* size + offset of a user state component */
        }
        xs->ebx = size; /* KVM recomputes this from the guest's XCR0 as it changes */
        xs->ecx = size;
}

/* Bits needed to number n things (0 for 1). */
static uint32_t order_bits(unsigned n)
{
        uint32_t bits = 0;
        while ((1u << bits) < n)
                bits++;
        return bits;
}

enum cpu_vendor { VENDOR_OTHER, VENDOR_INTEL, VENDOR_AMD };

static enum cpu_vendor cpuid_vendor(struct cpuid_table *c)
{
        struct kvm_cpuid_entry2 *e = cpuid_find(c, LEAF_VENDOR, 0);
        if (!e)
                return VENDOR_OTHER;
        char v[12];
        memcpy(v, &e->ebx, 4);
        memcpy(v + 4, &e->edx, 4);
        memcpy(v + 8, &e->ecx, 4);
        if (memcmp(v, "GenuineIntel", 12) == 0)
                return VENDOR_INTEL;
        if (memcmp(v, "AuthenticAMD", 12) == 0 || memcmp(v, "HygonGenuine", 12) == 0)
                return VENDOR_AMD;
        return VENDOR_OTHER;
}

/* One topology level of leaf 0xb / 0x1f: SMT (1 thread per core), then cores. */
static void topology_level(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned ncpus)
{
        switch (e->index) {
        case 0:
                e->eax = 0; /* shift to the next level: 1 thread -> 0 bits */
                e->ebx = 1;
                e->ecx = TOPO_LEVEL_SMT << 8;
                break;
        case 1:
                e->eax = order_bits(ncpus);
                e->ebx = ncpus;
                e->ecx = TOPO_LEVEL_CORE << 8 | 1;
                break;
        default:
                e->eax = 0;
                e->ebx = 0;
                e->ecx = (TOPO_LEVEL_INVALID << 8) | (e->index & 0xff);
                break;
        }
        e->edx = apic_id;
}

/* This CPU's `leaf` into r[0..3] (eax..edx); left zero where the CPU lacks the leaf. */
static void host_leaf(uint32_t leaf, uint32_t r[4])
{
        unsigned a, b, c, d;
        if (!__get_cpuid(leaf, &a, &b, &c, &d))
                return;
        r[0] = a;
        r[1] = b;
        r[2] = c;
        r[3] = d;
}

static bool entry_empty(const struct kvm_cpuid_entry2 *e)
{
        return !e->eax && !e->ebx && !e->ecx && !e->edx;
}

static void entry_set(struct kvm_cpuid_entry2 *e, const uint32_t r[4])
{
        e->eax = r[0];
        e->ebx = r[1];
        e->ecx = r[2];
        e->edx = r[3];
}

void x86_cpuid_host_probe(struct x86_cpuid_host *h, int tsc_deadline)
{
        memset(h, 0, sizeof(*h));
        h->tsc_deadline = tsc_deadline;
        host_leaf(LEAF_AMD_L1, h->amd_l1);
        for (unsigned i = 0; i < 3; i++)
                host_leaf(LEAF_BRAND + i, h->brand[i]);
}

/* The brand string leaves, as QEMU's -cpu host passes them: only where KVM left all three
 * empty, and only what the host has. Descriptive: "model name" in the guest's /proc/cpuinfo. */
static void brand_leaves_fill(struct cpuid_table *c, const struct x86_cpuid_host *host)
{
        struct kvm_cpuid_entry2 *max = cpuid_find(c, LEAF_EXT_MAX, 0);
        if (!max || max->eax < LEAF_BRAND + 2 || !host->brand[0][0])
                return;
        struct kvm_cpuid_entry2 *e[3];
        for (unsigned i = 0; i < 3; i++) {
                e[i] = cpuid_find(c, LEAF_BRAND + i, 0);
                if (e[i] && !entry_empty(e[i]))
                        return;
        }
        for (unsigned i = 0; i < 3; i++) {
                if (!e[i])
                        e[i] = cpuid_add(c, LEAF_BRAND + i, 0, 0);
                if (!e[i])
                        return;
                entry_set(e[i], host->brand[i]);
        }
}

/* KVM zeroes leaf 0x80000005; pass the host's L1 cache and TLB description (as QEMU's
 * -cpu host does). It is descriptive only: nothing the guest could rely on for isolation. */
static void amd_l1_leaf_fill(struct cpuid_table *c, const struct x86_cpuid_host *host)
{
        struct kvm_cpuid_entry2 *max = cpuid_find(c, LEAF_EXT_MAX, 0);
        struct kvm_cpuid_entry2 *e = cpuid_find(c, LEAF_AMD_L1, 0);
        if (!max || max->eax < LEAF_AMD_L1 || (host->amd_l1[2] == 0 && host->amd_l1[3] == 0))
                return;
        if (!e)
                e = cpuid_add(c, LEAF_AMD_L1, 0, 0);
        if (e && entry_empty(e))
                entry_set(e, host->amd_l1);
}

uint32_t x86_cpuid_adjust(struct kvm_cpuid_entry2 *entries, uint32_t nent, uint32_t capacity,
                          unsigned vcpu_index, unsigned ncpus, const struct x86_cpuid_host *host)
{
        if (ncpus == 0 || ncpus > X86_MAX_VCPUS || vcpu_index >= ncpus || nent > capacity)
                return nent;
        struct cpuid_table table = {entries, nent, capacity}, *c = &table;
        enum cpu_vendor vendor = cpuid_vendor(c);
        unsigned apic_id = vcpu_index;
        struct kvm_cpuid_entry2 *e;

        e = cpuid_find(c, LEAF_FEATURES, 0);
        if (e) {
                e->ebx = (e->ebx & 0x0000ffffu) | (ncpus & 0xffu) << 16 | (apic_id & 0xffu) << 24;
                if (ncpus > 1)
                        e->edx |= F1_EDX_HTT;
                else
                        e->edx &= ~F1_EDX_HTT;
                e->ecx |= F1_ECX_HYPERVISOR;
                if (host && host->tsc_deadline)
                        e->ecx |= F1_ECX_TSC_DEADLINE;
                else
                        e->ecx &= ~F1_ECX_TSC_DEADLINE;
        }
        if (host && vendor == VENDOR_AMD)
                amd_l1_leaf_fill(c, host);
        if (host)
                brand_leaves_fill(c, host);

        for (uint32_t i = 0; i < c->nent; i++) {
                e = &c->entries[i];
                int shared_cache;
                switch (e->function) {
                case LEAF_CACHE:
                        if (vendor != VENDOR_INTEL || (e->eax & 0x1f) == 0)
                                break;
                        /* EAX[31:26] cores per package - 1; EAX[25:14] threads sharing - 1 (L3:
                         * every core, L1/L2: one). */
                        shared_cache = ((e->eax >> 5) & 7) >= 3;
                        e->eax &= 0x00003fffu;
                        e->eax |= (ncpus - 1) << 26;
                        e->eax |= (shared_cache ? ncpus - 1 : 0) << 14;
                        break;
                case LEAF_AMD_CACHE:
                        if (vendor != VENDOR_AMD || (e->eax & 0x1f) == 0)
                                break;
                        shared_cache = ((e->eax >> 5) & 7) >= 3;
                        e->eax &= ~0x03ffc000u;
                        e->eax |= (shared_cache ? ncpus - 1 : 0) << 14;
                        break;
                case LEAF_TOPOLOGY:
                case LEAF_TOPOLOGY2:
                        topology_level(e, apic_id, ncpus);
                        break;
                case LEAF_AMD_SIZES:
                        if (vendor != VENDOR_AMD)
                                break;
                        /* ECX[15:12] APIC id bits for cores, ECX[7:0] cores - 1 */
                        e->ecx = (e->ecx & ~0xf0ffu) | order_bits(ncpus) << 12 | (ncpus - 1);
                        break;
                case LEAF_AMD_TOPO:
                        if (vendor != VENDOR_AMD)
                                break;
                        e->eax = apic_id;                                 /* extended APIC id */
                        e->ebx = (e->ebx & ~0xffffu) | (apic_id & 0xffu); /* 1 thread per core */
                        e->ecx &= ~0x7ffu;                                /* node 0 of 1 */
                        break;
                }
        }

        xsave_leaf_trim(c);

        /* Leaf 0xb needs its SMT, core and terminating levels if the CPU has the leaf at all. */
        struct kvm_cpuid_entry2 *basic = cpuid_find(c, LEAF_VENDOR, 0);
        if (basic && basic->eax >= LEAF_TOPOLOGY && cpuid_find(c, LEAF_TOPOLOGY, 0)) {
                for (uint32_t level = 0; level < 3; level++) {
                        e = cpuid_find(c, LEAF_TOPOLOGY, level);
                        if (e && e->index == level)
                                continue;
                        e = cpuid_add(c, LEAF_TOPOLOGY, level, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
                        if (e)
                                topology_level(e, apic_id, ncpus);
                }
        }

        e = cpuid_find(c, LEAF_KVM_SIG, 0);
        if (!e)
                e = cpuid_add(c, LEAF_KVM_SIG, 0, 0);
        if (e) {
                e->eax = LEAF_KVM_FEAT;
                e->ebx = KVM_SIG_EBX;
                e->ecx = KVM_SIG_ECX;
                e->edx = KVM_SIG_EDX;
                if (!cpuid_find(c, LEAF_KVM_FEAT, 0))
                        cpuid_add(c, LEAF_KVM_FEAT, 0, 0);
        }
        return c->nent;
}

/* --- MSRs, local APIC --------------------------------------------------------------------- */

size_t x86_boot_msrs(struct kvm_msr_entry *out, size_t max)
{
        const struct {
                uint32_t index;
                uint64_t value;
        } msrs[] = {
            {X86_MSR_IA32_SYSENTER_CS, 0},
            {X86_MSR_IA32_SYSENTER_ESP, 0},
            {X86_MSR_IA32_SYSENTER_EIP, 0},
            {X86_MSR_STAR, 0},
            {X86_MSR_LSTAR, 0},
            {X86_MSR_CSTAR, 0},
            {X86_MSR_SYSCALL_MASK, 0},
            {X86_MSR_KERNEL_GS_BASE, 0},
            {X86_MSR_IA32_TSC, 0},
            {X86_MSR_IA32_MISC_ENABLE, X86_MISC_ENABLE_FAST_STRING},
            {X86_MSR_MTRR_DEF_TYPE, X86_MTRR_DEF_TYPE_E | X86_MTRR_TYPE_WB},
        };
        size_t n = sizeof(msrs) / sizeof(msrs[0]);
        if (n > max)
                n = max;
        for (size_t i = 0; i < n; i++) {
                memset(&out[i], 0, sizeof(out[i]));
                out[i].index = msrs[i].index;
                out[i].data = msrs[i].value;
        }
        return n;
}

#define APIC_DELIVERY_MASK   0x700u
#define APIC_DELIVERY_NMI    0x400u
#define APIC_DELIVERY_EXTINT 0x700u

static void lapic_set_delivery(struct kvm_lapic_state *l, unsigned reg, uint32_t mode)
{
        uint8_t *p = (uint8_t *)l->regs + reg;
        x86_put32(p, (x86_le32(p) & ~APIC_DELIVERY_MASK) | mode);
}

void x86_lapic_init(struct kvm_lapic_state *l)
{
        lapic_set_delivery(l, X86_APIC_LVT_LINT0, APIC_DELIVERY_EXTINT);
        lapic_set_delivery(l, X86_APIC_LVT_LINT1, APIC_DELIVERY_NMI);
}
