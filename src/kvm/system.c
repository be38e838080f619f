/* The system handle (/dev/kvm): version, capabilities, limits, CPUID/MSR lists, VM creation. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "kvm/kvm_internal.h"

int ember_kvm_open_raw(const char *path, bool cloexec)
{
        int fd = open(path ? path : EMBER_KVM_DEFAULT_PATH, O_RDWR | (cloexec ? O_CLOEXEC : 0));

        return fd < 0 ? -errno : fd;
}

int ember_kvm_adopt(int fd, struct ember_kvm **out)
{
        struct ember_kvm *kvm;

        if (!out)
                return -EINVAL;
        *out = NULL;
        kvm = calloc(1, sizeof(*kvm));
        if (!kvm)
                return -ENOMEM;
        kvm->fd = fd;
        *out = kvm;
        return 0;
}

int ember_kvm_open_path(const char *path, bool cloexec, struct ember_kvm **out)
{
        int fd, ret;

        if (!out)
                return -EINVAL;
        *out = NULL;
        fd = ember_kvm_open_raw(path, cloexec);
        if (fd < 0)
                return fd;
        ret = ember_kvm_adopt(fd, out);
        if (ret < 0)
                close(fd);
        return ret;
}

int ember_kvm_open(struct ember_kvm **out)
{
        return ember_kvm_open_path(NULL, true, out);
}

void ember_kvm_close(struct ember_kvm *kvm)
{
        if (!kvm)
                return;
        if (kvm->fd >= 0)
                close(kvm->fd);
        free(kvm);
}

int ember_kvm_fd(const struct ember_kvm *kvm)
{
        return kvm->fd;
}

const char *ember_kvm_last_error(const struct ember_kvm *kvm)
{
        return kvm->error;
}

int ember_kvm_api_version(struct ember_kvm *kvm)
{
        return KVM_IOCTL(kvm, KVM_GET_API_VERSION, 0);
}

int ember_kvm_check_extension_int(struct ember_kvm *kvm, unsigned long cap)
{
        return KVM_IOCTL(kvm, KVM_CHECK_EXTENSION, cap);
}

int ember_kvm_check_extension(struct ember_kvm *kvm, unsigned long cap)
{
        return ember_kvm_check_extension_int(kvm, cap) > 0;
}

int ember_kvm_vcpu_mmap_size(struct ember_kvm *kvm)
{
        return KVM_IOCTL(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
}

int ember_kvm_nr_vcpus(struct ember_kvm *kvm)
{
        int n = ember_kvm_check_extension_int(kvm, KVM_CAP_NR_VCPUS);

        return n > 0 ? n : EMBER_KVM_DEFAULT_NR_VCPUS;
}

int ember_kvm_nr_memslots(struct ember_kvm *kvm)
{
        int n = ember_kvm_check_extension_int(kvm, KVM_CAP_NR_MEMSLOTS);

        return n > 0 ? n : EMBER_KVM_DEFAULT_NR_MEMSLOTS;
}

int ember_kvm_max_vcpus(struct ember_kvm *kvm)
{
        int n = ember_kvm_check_extension_int(kvm, KVM_CAP_MAX_VCPUS);

        return n > 0 ? n : ember_kvm_nr_vcpus(kvm);
}

int ember_kvm_max_vcpu_id(struct ember_kvm *kvm)
{
        int n = ember_kvm_check_extension_int(kvm, KVM_CAP_MAX_VCPU_ID);

        return n > 0 ? n : ember_kvm_max_vcpus(kvm);
}

int ember_kvm_get_supported_cpuid(struct ember_kvm *kvm, struct kvm_cpuid_entry2 *entries,
                                  uint32_t max)
{
        return KVM_FAM(kvm, KVM_GET_SUPPORTED_CPUID, kvm_fam_cpuid, entries, max, KVM_FAM_OUT);
}

int ember_kvm_get_emulated_cpuid(struct ember_kvm *kvm, struct kvm_cpuid_entry2 *entries,
                                 uint32_t max)
{
        return KVM_FAM(kvm, KVM_GET_EMULATED_CPUID, kvm_fam_cpuid, entries, max, KVM_FAM_OUT);
}

int ember_kvm_get_msr_index_list(struct ember_kvm *kvm, uint32_t *indices, uint32_t max)
{
        return KVM_FAM(kvm, KVM_GET_MSR_INDEX_LIST, kvm_fam_msr_list, indices, max, KVM_FAM_OUT);
}

int ember_kvm_get_msr_feature_index_list(struct ember_kvm *kvm, uint32_t *indices, uint32_t max)
{
        return KVM_FAM(kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, kvm_fam_msr_list, indices, max,
                       KVM_FAM_OUT);
}

int ember_kvm_get_feature_msrs(struct ember_kvm *kvm, struct kvm_msr_entry *entries, uint32_t n)
{
        return KVM_FAM(kvm, KVM_GET_MSRS, kvm_fam_msrs, entries, n, KVM_FAM_IN | KVM_FAM_OUT_RET);
}

int ember_kvm_vm_create_type(struct ember_kvm *kvm, unsigned long type, struct ember_kvm_vm **out)
{
        int fd, ret;

        if (!out)
                return KVM_FAIL(kvm, EINVAL, "KVM_CREATE_VM: no result pointer");
        *out = NULL;
        fd = KVM_IOCTL(kvm, KVM_CREATE_VM, type);
        if (fd < 0)
                return fd;
        ret = ember_kvm_vm_adopt(kvm, fd, out);
        if (ret < 0)
                close(fd);
        return ret;
}

int ember_kvm_vm_create(struct ember_kvm *kvm, struct ember_kvm_vm **out)
{
        return ember_kvm_vm_create_type(kvm, 0, out);
}

int ember_kvm_vm_adopt(struct ember_kvm *kvm, int vm_fd, struct ember_kvm_vm **out)
{
        struct ember_kvm_vm *vm;
        int run_size, coalesced;

        if (!out)
                return KVM_FAIL(kvm, EINVAL, "adopting a VM fd: no result pointer");
        *out = NULL;
        run_size = ember_kvm_vcpu_mmap_size(kvm);
        if (run_size < 0)
                return run_size;
        if ((size_t)run_size < sizeof(struct kvm_run))
                return KVM_FAIL(kvm, EIO,
                                "KVM_GET_VCPU_MMAP_SIZE: %d bytes, less than struct kvm_run",
                                run_size);
        /* The value of this capability is the ring's page offset in the vCPU mapping. */
        coalesced = kvm_ioctl_raw(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
        vm = calloc(1, sizeof(*vm));
        if (!vm)
                return KVM_FAIL(kvm, ENOMEM, "adopting a VM fd: out of memory");
        vm->fd = vm_fd;
        vm->run_size = (size_t)run_size;
        vm->coalesced_page = coalesced > 0 ? coalesced : 0;
        *out = vm;
        return 0;
}

/* What the VMM core needs from KVM to boot a Linux guest (required), and what it uses when
 * present. */
#define CAP(name, required)                                                                        \
        {                                                                                          \
                KVM_CAP_##name, "KVM_CAP_" #name, required                                         \
        }
static const struct ember_kvm_cap_info caps_used[] = {
    CAP(USER_MEMORY, true),
    CAP(IRQCHIP, true),
    CAP(SPLIT_IRQCHIP, true),
    CAP(IRQ_ROUTING, true),
    CAP(TSC_DEADLINE_TIMER, true),
    CAP(IOEVENTFD, true),
    CAP(IRQFD, true),
    CAP(SET_TSS_ADDR, true),
    CAP(EXT_CPUID, true),
    CAP(MP_STATE, true),
    CAP(IMMEDIATE_EXIT, true),
    CAP(SET_IDENTITY_MAP_ADDR, false),
    CAP(PIT2, false),
    CAP(PIT_STATE2, false),
    CAP(SIGNAL_MSI, false),
    CAP(IRQFD_RESAMPLE, false),
    CAP(X2APIC_API, false),
    CAP(GET_TSC_KHZ, false),
    CAP(TSC_CONTROL, false),
    CAP(KVMCLOCK_CTRL, false),
    CAP(ADJUST_CLOCK, false),
    CAP(VCPU_EVENTS, false),
    CAP(DEBUGREGS, false),
    CAP(XSAVE, false),
    CAP(XCRS, false),
    CAP(COALESCED_MMIO, false),
    CAP(COALESCED_PIO, false),
    CAP(IOEVENTFD_ANY_LENGTH, false),
    CAP(SET_GUEST_DEBUG, false),
    CAP(MANUAL_DIRTY_LOG_PROTECT2, false),
    CAP(GET_MSR_FEATURES, false),
    CAP(SYNC_REGS, false),
};
#undef CAP

const struct ember_kvm_cap_info *ember_kvm_caps_used(size_t *count)
{
        if (count)
                *count = sizeof(caps_used) / sizeof(caps_used[0]);
        return caps_used;
}

int ember_kvm_check_required_caps(struct ember_kvm *kvm)
{
        for (size_t i = 0; i < sizeof(caps_used) / sizeof(caps_used[0]); i++) {
                int v;

                if (!caps_used[i].required)
                        continue;
                v = ember_kvm_check_extension_int(kvm, caps_used[i].cap);
                if (v < 0)
                        return v;
                if (v == 0)
                        return KVM_FAIL(kvm, EOPNOTSUPP, "%s: not supported by this KVM",
                                        caps_used[i].name);
        }
        return 0;
}
