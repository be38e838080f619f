/* The vCPU handle: register state, CPUID/MSRs, debug, the run area, KVM_RUN and the
 * coalesced ring. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm/kvm_internal.h"

void ember_kvm_vcpu_close(struct ember_kvm_vcpu *vcpu)
{
        if (!vcpu)
                return;
        if (vcpu->run)
                munmap(vcpu->run, vcpu->run_size);
        if (vcpu->fd >= 0)
                close(vcpu->fd);
        free(vcpu);
}

int ember_kvm_vcpu_fd(const struct ember_kvm_vcpu *vcpu)
{
        return vcpu->fd;
}

const char *ember_kvm_vcpu_last_error(const struct ember_kvm_vcpu *vcpu)
{
        return vcpu->error;
}

int ember_kvm_vcpu_enable_cap(struct ember_kvm_vcpu *vcpu, const struct kvm_enable_cap *cap)
{
        return KVM_IOCTL(vcpu, KVM_ENABLE_CAP, cap);
}

int ember_kvm_vcpu_get_regs(struct ember_kvm_vcpu *vcpu, struct kvm_regs *regs)
{
        return KVM_IOCTL(vcpu, KVM_GET_REGS, regs);
}

int ember_kvm_vcpu_set_regs(struct ember_kvm_vcpu *vcpu, const struct kvm_regs *regs)
{
        return KVM_IOCTL(vcpu, KVM_SET_REGS, regs);
}

int ember_kvm_vcpu_get_sregs(struct ember_kvm_vcpu *vcpu, struct kvm_sregs *sregs)
{
        return KVM_IOCTL(vcpu, KVM_GET_SREGS, sregs);
}

int ember_kvm_vcpu_set_sregs(struct ember_kvm_vcpu *vcpu, const struct kvm_sregs *sregs)
{
        return KVM_IOCTL(vcpu, KVM_SET_SREGS, sregs);
}

int ember_kvm_vcpu_get_fpu(struct ember_kvm_vcpu *vcpu, struct kvm_fpu *fpu)
{
        return KVM_IOCTL(vcpu, KVM_GET_FPU, fpu);
}

int ember_kvm_vcpu_set_fpu(struct ember_kvm_vcpu *vcpu, const struct kvm_fpu *fpu)
{
        return KVM_IOCTL(vcpu, KVM_SET_FPU, fpu);
}

int ember_kvm_vcpu_get_lapic(struct ember_kvm_vcpu *vcpu, struct kvm_lapic_state *lapic)
{
        return KVM_IOCTL(vcpu, KVM_GET_LAPIC, lapic);
}

int ember_kvm_vcpu_set_lapic(struct ember_kvm_vcpu *vcpu, const struct kvm_lapic_state *lapic)
{
        return KVM_IOCTL(vcpu, KVM_SET_LAPIC, lapic);
}

int ember_kvm_vcpu_get_msrs(struct ember_kvm_vcpu *vcpu, struct kvm_msr_entry *entries, uint32_t n)
{
        return KVM_FAM(vcpu, KVM_GET_MSRS, kvm_fam_msrs, entries, n, KVM_FAM_IN | KVM_FAM_OUT_RET);
}

int ember_kvm_vcpu_set_msrs(struct ember_kvm_vcpu *vcpu, const struct kvm_msr_entry *entries,
                            uint32_t n)
{
        return KVM_FAM(vcpu, KVM_SET_MSRS, kvm_fam_msrs, entries, n, KVM_FAM_IN);
}

int ember_kvm_vcpu_set_cpuid2(struct ember_kvm_vcpu *vcpu, const struct kvm_cpuid_entry2 *entries,
                              uint32_t n)
{
        return KVM_FAM(vcpu, KVM_SET_CPUID2, kvm_fam_cpuid, entries, n, KVM_FAM_IN);
}

/* Whether the vCPU's CPUID fits in n entries: KVM_GET_CPUID2 fails with E2BIG when it does not. */
static int cpuid2_fits(int fd, struct kvm_cpuid2 *req, uint32_t n)
{
        req->nent = n;
        int rc = kvm_ioctl_raw(fd, KVM_GET_CPUID2, (unsigned long)req);
        return rc == 0 ? 1 : rc == -E2BIG ? 0 : rc;
}

/* Newer kernels report the vCPU's entry count in KVM_GET_CPUID2's nent. Older ones (Debian 12's
 * 6.1 among them) report it nowhere: nent comes back as the caller set it. When it comes back
 * unchanged, the count is found as the smallest nent that the call accepts. */
int ember_kvm_vcpu_get_cpuid2(struct ember_kvm_vcpu *vcpu, struct kvm_cpuid_entry2 *entries,
                              uint32_t max)
{
        int n = KVM_FAM(vcpu, KVM_GET_CPUID2, kvm_fam_cpuid, entries, max, KVM_FAM_OUT);
        if (n < 0 || (uint32_t)n < max)
                return n;
        struct kvm_cpuid2 *req =
            calloc(1, sizeof(*req) + (size_t)max * sizeof(struct kvm_cpuid_entry2));
        if (!req)
                return KVM_FAIL(vcpu, ENOMEM, "KVM_GET_CPUID2: out of memory");
        uint32_t lo = 0, hi = max; /* the call accepts hi entries; the count is in [lo, hi] */
        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                int fits = cpuid2_fits(vcpu->fd, req, mid);
                if (fits < 0) {
                        char msg[96];
                        free(req);
                        return KVM_FAIL(vcpu, -fits, "KVM_GET_CPUID2: %s",
                                        strerror_r(-fits, msg, sizeof(msg)));
                }
                if (fits)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        free(req);
        return (int)hi;
}

int ember_kvm_vcpu_get_xsave(struct ember_kvm_vcpu *vcpu, struct kvm_xsave *xsave)
{
        return KVM_IOCTL(vcpu, KVM_GET_XSAVE, xsave);
}

int ember_kvm_vcpu_set_xsave(struct ember_kvm_vcpu *vcpu, const struct kvm_xsave *xsave)
{
        if (vcpu->xsave2_size > sizeof(*xsave))
                return KVM_FAIL(vcpu, EINVAL,
                                "KVM_SET_XSAVE: the state takes %zu bytes, more than struct "
                                "kvm_xsave (use ember_kvm_vcpu_set_xsave2)",
                                vcpu->xsave2_size);
        return KVM_IOCTL(vcpu, KVM_SET_XSAVE, xsave);
}

size_t ember_kvm_vcpu_xsave2_size(const struct ember_kvm_vcpu *vcpu)
{
        return vcpu->xsave2_size;
}

/* The kernel copies the vCPU's whole state size, bounded by KVM_CAP_XSAVE2, in either
 * direction: the buffer must hold that much. */
static int xsave2_check(struct ember_kvm_vcpu *vcpu, const char *name, const void *buf, size_t len)
{
        if (vcpu->xsave2_size == 0)
                return KVM_FAIL(vcpu, EOPNOTSUPP, "%s: this KVM lacks KVM_CAP_XSAVE2", name);
        if (!buf || len < vcpu->xsave2_size)
                return KVM_FAIL(vcpu, EINVAL, "%s: a %zu-byte buffer, the state takes %zu", name,
                                buf ? len : 0, vcpu->xsave2_size);
        return 0;
}

int ember_kvm_vcpu_get_xsave2(struct ember_kvm_vcpu *vcpu, struct kvm_xsave *xsave, size_t len)
{
        int ret = xsave2_check(vcpu, "KVM_GET_XSAVE2", xsave, len);

        return ret < 0 ? ret : KVM_IOCTL(vcpu, KVM_GET_XSAVE2, xsave);
}

int ember_kvm_vcpu_set_xsave2(struct ember_kvm_vcpu *vcpu, const struct kvm_xsave *xsave,
                              size_t len)
{
        int ret = xsave2_check(vcpu, "KVM_SET_XSAVE", xsave, len);

        return ret < 0 ? ret : KVM_IOCTL(vcpu, KVM_SET_XSAVE, xsave);
}

int ember_kvm_vcpu_get_xcrs(struct ember_kvm_vcpu *vcpu, struct kvm_xcrs *xcrs)
{
        return KVM_IOCTL(vcpu, KVM_GET_XCRS, xcrs);
}

int ember_kvm_vcpu_set_xcrs(struct ember_kvm_vcpu *vcpu, const struct kvm_xcrs *xcrs)
{
        return KVM_IOCTL(vcpu, KVM_SET_XCRS, xcrs);
}

int ember_kvm_vcpu_get_debugregs(struct ember_kvm_vcpu *vcpu, struct kvm_debugregs *dregs)
{
        return KVM_IOCTL(vcpu, KVM_GET_DEBUGREGS, dregs);
}

int ember_kvm_vcpu_set_debugregs(struct ember_kvm_vcpu *vcpu, const struct kvm_debugregs *dregs)
{
        return KVM_IOCTL(vcpu, KVM_SET_DEBUGREGS, dregs);
}

int ember_kvm_vcpu_get_events(struct ember_kvm_vcpu *vcpu, struct kvm_vcpu_events *events)
{
        return KVM_IOCTL(vcpu, KVM_GET_VCPU_EVENTS, events);
}

int ember_kvm_vcpu_set_events(struct ember_kvm_vcpu *vcpu, const struct kvm_vcpu_events *events)
{
        return KVM_IOCTL(vcpu, KVM_SET_VCPU_EVENTS, events);
}

int ember_kvm_vcpu_get_mp_state(struct ember_kvm_vcpu *vcpu, struct kvm_mp_state *mp)
{
        return KVM_IOCTL(vcpu, KVM_GET_MP_STATE, mp);
}

int ember_kvm_vcpu_set_mp_state(struct ember_kvm_vcpu *vcpu, const struct kvm_mp_state *mp)
{
        return KVM_IOCTL(vcpu, KVM_SET_MP_STATE, mp);
}

int ember_kvm_vcpu_get_tsc_khz(struct ember_kvm_vcpu *vcpu)
{
        return KVM_IOCTL(vcpu, KVM_GET_TSC_KHZ, 0);
}

int ember_kvm_vcpu_set_tsc_khz(struct ember_kvm_vcpu *vcpu, uint32_t khz)
{
        return KVM_IOCTL(vcpu, KVM_SET_TSC_KHZ, khz);
}

int ember_kvm_vcpu_kvmclock_ctrl(struct ember_kvm_vcpu *vcpu)
{
        return KVM_IOCTL(vcpu, KVM_KVMCLOCK_CTRL, 0);
}

int ember_kvm_vcpu_set_guest_debug(struct ember_kvm_vcpu *vcpu, const struct kvm_guest_debug *dbg)
{
        return KVM_IOCTL(vcpu, KVM_SET_GUEST_DEBUG, dbg);
}

int ember_kvm_vcpu_translate(struct ember_kvm_vcpu *vcpu, struct kvm_translation *tr)
{
        return KVM_IOCTL(vcpu, KVM_TRANSLATE, tr);
}

int ember_kvm_vcpu_nmi(struct ember_kvm_vcpu *vcpu)
{
        return KVM_IOCTL(vcpu, KVM_NMI, 0);
}

int ember_kvm_vcpu_smi(struct ember_kvm_vcpu *vcpu)
{
        return KVM_IOCTL(vcpu, KVM_SMI, 0);
}

int ember_kvm_vcpu_get_nested_state(struct ember_kvm_vcpu *vcpu, struct kvm_nested_state *state,
                                    size_t len)
{
        int ret;

        if (!state || len < sizeof(*state))
                return KVM_FAIL(vcpu, EINVAL,
                                "KVM_GET_NESTED_STATE: a %zu-byte buffer, less than the %zu-byte "
                                "header",
                                state ? len : 0, sizeof(*state));
        /* The kernel takes the buffer's size from the header and writes at most that much. */
        state->size = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
        ret = KVM_IOCTL(vcpu, KVM_GET_NESTED_STATE, state);
        if (ret < 0)
                return ret;
        if (state->size > len || state->size > INT32_MAX)
                return KVM_FAIL(vcpu, EIO, "KVM_GET_NESTED_STATE: %u bytes in a %zu-byte buffer",
                                state->size, len);
        return (int)state->size;
}

int ember_kvm_vcpu_set_nested_state(struct ember_kvm_vcpu *vcpu,
                                    const struct kvm_nested_state *state, size_t len)
{
        if (!state || len < sizeof(*state))
                return KVM_FAIL(vcpu, EINVAL,
                                "KVM_SET_NESTED_STATE: a %zu-byte buffer, less than the %zu-byte "
                                "header",
                                state ? len : 0, sizeof(*state));
        if (state->size < sizeof(*state) || state->size > len)
                return KVM_FAIL(vcpu, EINVAL,
                                "KVM_SET_NESTED_STATE: the state says %u bytes, the buffer has %zu",
                                state->size, len);
        return KVM_IOCTL(vcpu, KVM_SET_NESTED_STATE, state);
}

struct kvm_run *ember_kvm_vcpu_run_page(struct ember_kvm_vcpu *vcpu)
{
        return vcpu->run;
}

void ember_kvm_vcpu_set_immediate_exit(struct ember_kvm_vcpu *vcpu, bool on)
{
        __atomic_store_n(&vcpu->run->immediate_exit, on ? 1 : 0, __ATOMIC_SEQ_CST);
}

int ember_kvm_vcpu_run(struct ember_kvm_vcpu *vcpu, struct ember_kvm_exit *exit)
{
        struct ember_kvm_exit scratch;
        int ret, decoded;

        /* Most failures leave exit_reason alone: clearing it keeps an earlier MEMORY_FAULT from
         * being decoded again. */
        vcpu->run->exit_reason = KVM_EXIT_UNKNOWN;
        ret = KVM_IOCTL(vcpu, KVM_RUN, 0);
        decoded = kvm_exit_decode(vcpu->run, vcpu->run_size, ret, exit ? exit : &scratch);
        if (ret >= 0 && decoded < 0)
                KVM_FAIL(vcpu, -decoded, "KVM_RUN: inconsistent %s exit from the kernel",
                         ember_kvm_exit_reason_name(vcpu->run->exit_reason));
        return decoded;
}

struct kvm_coalesced_mmio_ring *ember_kvm_vcpu_coalesced_ring(struct ember_kvm_vcpu *vcpu)
{
        return vcpu->ring;
}

uint32_t kvm_coalesced_ring_entries(size_t page_size)
{
        return (uint32_t)((page_size - sizeof(struct kvm_coalesced_mmio_ring)) /
                          sizeof(struct kvm_coalesced_mmio));
}

int ember_kvm_vcpu_coalesced_read(struct ember_kvm_vcpu *vcpu, struct kvm_coalesced_mmio *out)
{
        struct kvm_coalesced_mmio_ring *ring = vcpu->ring;
        uint32_t first, last;

        if (!ring)
                return KVM_FAIL(vcpu, EIO,
                                "coalesced ring: not mapped (no KVM_CAP_COALESCED_MMIO)");
        /* The kernel publishes an entry and then moves last; we consume and then move first. */
        first = __atomic_load_n(&ring->first, __ATOMIC_RELAXED);
        last = __atomic_load_n(&ring->last, __ATOMIC_ACQUIRE);
        if (first == last)
                return 0;
        if (first >= vcpu->ring_entries || last >= vcpu->ring_entries)
                return KVM_FAIL(vcpu, EIO, "coalesced ring: first %u / last %u out of %u entries",
                                first, last, vcpu->ring_entries);
        *out = ring->coalesced_mmio[first];
        __atomic_store_n(&ring->first, (first + 1) % vcpu->ring_entries, __ATOMIC_RELEASE);
        return 1;
}
