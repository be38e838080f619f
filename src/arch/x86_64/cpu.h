/* x86_64 vCPU boot state as KVM structures. Pure: the caller does KVM_GET_* / KVM_SET_*.
 *
 * Per vCPU i (APIC id i, created with KVM_CREATE_VCPU id i):
 *   KVM_GET_SUPPORTED_CPUID -> (copy) x86_cpuid_adjust(e, nent, cap, i, n, host) -> KVM_SET_CPUID2
 *   x86_boot_msrs -> KVM_SET_MSRS (check the count KVM accepted)
 *   KVM_GET_LAPIC -> x86_lapic_init -> KVM_SET_LAPIC
 * vCPU 0 only (the others wait for INIT/SIPI from the guest, handled by KVM):
 *   KVM_GET_SREGS -> x86_vcpu_init_sregs -> KVM_SET_SREGS
 *   x86_vcpu_init_regs -> KVM_SET_REGS
 *   x86_vcpu_init_fpu -> KVM_SET_FPU
 */
#ifndef EMBER_ARCH_X86_64_CPU_H
#define EMBER_ARCH_X86_64_CPU_H

#include <stddef.h>
#include <linux/kvm.h>

#include "arch/x86_64/boot.h"

/* General registers for the entry: rip, rsp/rbp, rsi (zero page) or rbx (start_info),
 * rflags = 0x2 (interrupts off); everything else 0. */
void x86_vcpu_init_regs(const struct x86_boot_entry *e, struct kvm_regs *r);

/* Segments, descriptor tables and control registers for the entry mode, on top of what
 * KVM_GET_SREGS returned (APIC base and pending interrupts are kept). Long mode: CS = 0x10
 * (64-bit), DS/ES/FS/GS/SS = 0x18, CR0 PE|ET|PG, CR3 = PML4, CR4 PAE, EFER LME|LMA.
 * PVH: CS = 0x08 (32-bit flat), data 0x18, CR0 PE|ET, CR3/CR4/EFER 0. TR is a busy TSS with
 * limit 0x67 in both. */
void x86_vcpu_init_sregs(const struct x86_boot_entry *e, struct kvm_sregs *s);

/* x87 control word 0x37f and MXCSR 0x1f80, as after reset. */
void x86_vcpu_init_fpu(struct kvm_fpu *f);

/* What the guest's CPUID needs beyond KVM_GET_SUPPORTED_CPUID, probed once per VM. */
struct x86_cpuid_host {
        /* KVM_CAP_TSC_DEADLINE_TIMER: KVM emulates the LAPIC TSC-deadline mode but leaves the
         * CPUID bit (leaf 1 ECX[24]) to us. With it Linux needs no PIT at all. */
        int tsc_deadline;
        /* This CPU's leaf 0x80000005 (AMD L1 cache and TLB), all zero if it has none. KVM
         * reports the leaf as zeros; without it Linux finds no AMD L1 cache and registers no
         * cache at all in sysfs. */
        uint32_t amd_l1[4];
        /* This CPU's brand string (leaves 0x80000002..4), all zero if it has none. KVM reports
         * zeros; Linux shows it as the "model name". */
        uint32_t brand[3][4];
};

/* Fills `h` from this CPU (the cache leaf); the caller sets tsc_deadline from KVM. */
void x86_cpuid_host_probe(struct x86_cpuid_host *h, int tsc_deadline);

/* Edits a copy of KVM_GET_SUPPORTED_CPUID's `nent` entries for vCPU `vcpu_index` of `ncpus`
 * (one package, ncpus cores, one thread each): APIC ids in leaves 1, 0xb, 0x1f and 0x8000001e,
 * core counts in leaves 1, 4, 0xb, 0x1f, 0x80000008, cache sharing in 4 / 0x8000001d, the
 * hypervisor bit, and the KVM signature leaf 0x40000000 (max leaf 0x40000001). With `host`
 * (may be NULL): the TSC-deadline bit, an all-zero AMD leaf 0x80000005 and all-zero brand
 * string leaves filled from the host's. Missing leaf 0xb levels and KVM leaves are appended while
 * there is room (`capacity` entries). Returns the new entry count (nent unchanged if the arguments
 * are out of range). */
uint32_t x86_cpuid_adjust(struct kvm_cpuid_entry2 *entries, uint32_t nent, uint32_t capacity,
                          unsigned vcpu_index, unsigned ncpus, const struct x86_cpuid_host *host);

/* Boot values of the MSRs Linux expects a firmware to have set. Fills at most `max` entries
 * and returns how many it filled (X86_BOOT_MSRS_MAX is always enough for all of them). */
#define X86_BOOT_MSRS_MAX 16u
size_t x86_boot_msrs(struct kvm_msr_entry *out, size_t max);

/* Local APIC virtual wire: LVT LINT0 delivery mode ExtINT, LINT1 NMI (other bits kept). */
void x86_lapic_init(struct kvm_lapic_state *l);

/* MSR numbers used above (for the caller's logs and tests). */
#define X86_MSR_IA32_TSC          0x00000010u
#define X86_MSR_IA32_SYSENTER_CS  0x00000174u
#define X86_MSR_IA32_SYSENTER_ESP 0x00000175u
#define X86_MSR_IA32_SYSENTER_EIP 0x00000176u
#define X86_MSR_IA32_MISC_ENABLE  0x000001a0u
#define X86_MSR_MTRR_DEF_TYPE     0x000002ffu
#define X86_MSR_STAR              0xc0000081u
#define X86_MSR_LSTAR             0xc0000082u
#define X86_MSR_CSTAR             0xc0000083u
#define X86_MSR_SYSCALL_MASK      0xc0000084u
#define X86_MSR_KERNEL_GS_BASE    0xc0000102u

#define X86_MISC_ENABLE_FAST_STRING 0x1ull
#define X86_MTRR_DEF_TYPE_E         0x800ull /* MTRRs enabled */
#define X86_MTRR_TYPE_WB            0x6ull

#define X86_APIC_LVT_LINT0 0x350u
#define X86_APIC_LVT_LINT1 0x360u

#endif
