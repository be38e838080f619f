/* ember's KVM layer: thin, checked wrappers over the /dev/kvm ioctls (x86_64).
 *
 * Conventions
 * - Four opaque handles, one per kind of KVM file descriptor: the system (/dev/kvm), a VM, a
 *   vCPU and a device. Each owns its fd and closes it in its *_close function.
 * - Every call returns 0, a value >= 0, or -errno. Nothing exits, aborts or prints.
 * - When an ioctl (or a check ember makes before it) fails, the handle it was called on keeps
 *   a readable detail naming the ioctl, e.g. "KVM_SET_USER_MEMORY_REGION: Invalid argument";
 *   read it with ember_kvm_last_error(), ember_kvm_vm_last_error(), ... ("" until a failure).
 * - The kernel's own structs and constants from <linux/kvm.h> are used directly.
 * - No global state. A handle is used by one thread at a time, except where said otherwise
 *   (ember_kvm_vcpu_set_immediate_exit may be called from any thread or a signal handler).
 * - Bounds per call: at most EMBER_KVM_MAX_CPUID_ENTRIES CPUID entries, EMBER_KVM_MAX_MSR_ENTRIES
 *   MSRs (KVM_GET_MSRS / KVM_SET_MSRS), EMBER_KVM_MAX_MSR_INDICES MSR indices (the index lists)
 *   and EMBER_KVM_MAX_IRQ_ROUTES GSI routes; asking for more gives -ENOMEM before any syscall.
 * - UAPI that Debian 12's <linux/kvm.h> (Linux 6.1) predates is defined below, in one block.
 */
#ifndef EMBER_KVM_H
#define EMBER_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EMBER_API
#define EMBER_API __attribute__((visibility("default")))
#endif

#define EMBER_KVM_DEFAULT_PATH      "/dev/kvm"
#define EMBER_KVM_MAX_CPUID_ENTRIES 256u
/* The kernel's msr_io() refuses nmsrs >= MAX_IO_MSRS (256) with E2BIG: 255 is the most that
 * works (kvm-ioctls' 256 does not). */
#define EMBER_KVM_MAX_MSR_ENTRIES 255u
#define EMBER_KVM_MAX_MSR_INDICES 256u
#define EMBER_KVM_MAX_IRQ_ROUTES  1024u
/* Used when the kernel does not report KVM_CAP_NR_VCPUS / KVM_CAP_NR_MEMSLOTS. */
#define EMBER_KVM_DEFAULT_NR_VCPUS    4
#define EMBER_KVM_DEFAULT_NR_MEMSLOTS 32

/* ---------------------------------------------------------------- newer UAPI
 * Linux 6.8's guest_memfd, memory attributes and KVM_SET_USER_MEMORY_REGION2, for headers that
 * predate them (numbers and layouts are the kernel ABI, copied from Linux 6.8's
 * include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h). */
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif
#ifndef KVM_CAP_MEMORY_ATTRIBUTES
#define KVM_CAP_MEMORY_ATTRIBUTES 233
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235 /* bit n set: KVM_CREATE_VM accepts type n */
#endif
#ifndef KVM_SET_USER_MEMORY_REGION2
struct kvm_userspace_memory_region2 {
        __u32 slot;
        __u32 flags;
        __u64 guest_phys_addr;
        __u64 memory_size;
        __u64 userspace_addr;
        __u64 guest_memfd_offset;
        __u32 guest_memfd;
        __u32 pad1;
        __u64 pad2[14];
};
#define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#endif
#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif
#ifndef KVM_SET_MEMORY_ATTRIBUTES
struct kvm_memory_attributes {
        __u64 address;
        __u64 size;
        __u64 attributes;
        __u64 flags;
};
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
#endif
#ifndef KVM_MEMORY_ATTRIBUTE_PRIVATE
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#endif
#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_create_guest_memfd {
        __u64 size;
        __u64 flags;
        __u64 reserved[6];
};
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3) /* in ember_kvm_exit.u.memory_fault.flags */
#endif
#ifndef KVM_X86_DEFAULT_VM
#define KVM_X86_DEFAULT_VM 0
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1 /* private memory without encryption (testing) */
#endif

struct ember_kvm;
struct ember_kvm_vm;
struct ember_kvm_vcpu;
struct ember_kvm_device;

/* ---------------------------------------------------------------- names */

/* "KVM_EXIT_IO", ... for every exit reason KVM defines; "unsupported" for any other value. */
EMBER_API const char *ember_kvm_exit_reason_name(uint32_t reason);
/* "EINVAL", "EBADF", ...; accepts errno or -errno; "OK" for 0, "unknown errno" otherwise. */
EMBER_API const char *ember_kvm_errno_name(int err);

/* ---------------------------------------------------------------- host */

enum ember_kvm_host_virt {
        EMBER_KVM_HOST_UNKNOWN = 0, /* no vmx/svm flag and no known software hypervisor */
        EMBER_KVM_HOST_VMX,         /* Intel VT-x */
        EMBER_KVM_HOST_SVM,         /* AMD SVM */
        EMBER_KVM_HOST_PVM,         /* software hypervisor (kvm_pvm): no unmodified Linux guests */
};
/* What backs /dev/kvm here: the vmx/svm CPU flags in /proc/cpuinfo, else PVM when
 * /sys/module/kvm_pvm exists, else unknown. Never fails. */
EMBER_API enum ember_kvm_host_virt ember_kvm_host_virt(void);
/* Same, reading the given cpuinfo file and sysfs module directory (for tests). */
EMBER_API enum ember_kvm_host_virt ember_kvm_host_virt_at(const char *cpuinfo_path,
                                                          const char *sysfs_module_dir);
/* "hardware (vmx)", "hardware (svm)", "software hypervisor (PVM)", "unknown". */
EMBER_API const char *ember_kvm_host_virt_name(enum ember_kvm_host_virt v);
/* 1 when the host has hardware virtualization (vmx or svm), so it can run a Linux guest. */
EMBER_API int ember_kvm_host_virt_is_hardware(enum ember_kvm_host_virt v);

/* ---------------------------------------------------------------- system (/dev/kvm) */

/* Opens /dev/kvm with O_CLOEXEC. */
EMBER_API int ember_kvm_open(struct ember_kvm **out);
/* Opens path (NULL: /dev/kvm); cloexec=false lets the fd survive exec. */
EMBER_API int ember_kvm_open_path(const char *path, bool cloexec, struct ember_kvm **out);
/* Opens path (NULL: /dev/kvm) and returns the raw fd (>= 0), e.g. to pass across exec. */
EMBER_API int ember_kvm_open_raw(const char *path, bool cloexec);
/* Wraps an fd the caller opened. The fd is not checked (calls on a bad one fail with -EBADF);
 * on success the handle owns it. */
EMBER_API int ember_kvm_adopt(int fd, struct ember_kvm **out);
EMBER_API void ember_kvm_close(struct ember_kvm *kvm);
EMBER_API int ember_kvm_fd(const struct ember_kvm *kvm);
EMBER_API const char *ember_kvm_last_error(const struct ember_kvm *kvm);

/* KVM_GET_API_VERSION (12). */
EMBER_API int ember_kvm_api_version(struct ember_kvm *kvm);
/* KVM_CHECK_EXTENSION: the raw value (0 when absent or unknown) or -errno. */
EMBER_API int ember_kvm_check_extension_int(struct ember_kvm *kvm, unsigned long cap);
/* 1 when KVM_CHECK_EXTENSION gives > 0, else 0 (also on error). */
EMBER_API int ember_kvm_check_extension(struct ember_kvm *kvm, unsigned long cap);
/* KVM_GET_VCPU_MMAP_SIZE: the size of a vCPU's shared run area. */
EMBER_API int ember_kvm_vcpu_mmap_size(struct ember_kvm *kvm);
/* Limits; these never fail. Recommended vCPUs (KVM_CAP_NR_VCPUS, else 4), memory slots
 * (KVM_CAP_NR_MEMSLOTS, else 32), max vCPUs (KVM_CAP_MAX_VCPUS, else the recommended count),
 * max vCPU id (KVM_CAP_MAX_VCPU_ID, else max vCPUs). */
EMBER_API int ember_kvm_nr_vcpus(struct ember_kvm *kvm);
EMBER_API int ember_kvm_nr_memslots(struct ember_kvm *kvm);
EMBER_API int ember_kvm_max_vcpus(struct ember_kvm *kvm);
EMBER_API int ember_kvm_max_vcpu_id(struct ember_kvm *kvm);
/* KVM_GET_SUPPORTED_CPUID / KVM_GET_EMULATED_CPUID into entries[0..max): returns the number
 * of entries filled. max > 256 gives -ENOMEM; too small a max gives the kernel's -E2BIG. */
EMBER_API int ember_kvm_get_supported_cpuid(struct ember_kvm *kvm, struct kvm_cpuid_entry2 *entries,
                                            uint32_t max);
EMBER_API int ember_kvm_get_emulated_cpuid(struct ember_kvm *kvm, struct kvm_cpuid_entry2 *entries,
                                           uint32_t max);
/* KVM_GET_MSR_INDEX_LIST / KVM_GET_MSR_FEATURE_INDEX_LIST into indices[0..max): returns the
 * count. max > EMBER_KVM_MAX_MSR_INDICES (256) gives -ENOMEM; too small a max gives -E2BIG. */
EMBER_API int ember_kvm_get_msr_index_list(struct ember_kvm *kvm, uint32_t *indices, uint32_t max);
EMBER_API int ember_kvm_get_msr_feature_index_list(struct ember_kvm *kvm, uint32_t *indices,
                                                   uint32_t max);
/* System KVM_GET_MSRS: reads feature MSR values for entries[i].index, n <= 255; returns how
 * many. */
EMBER_API int ember_kvm_get_feature_msrs(struct ember_kvm *kvm, struct kvm_msr_entry *entries,
                                         uint32_t n);

/* KVM_CREATE_VM with the default type (0), or a given type (KVM_X86_SW_PROTECTED_VM, ...: the
 * types accepted are the bits of KVM_CAP_VM_TYPES). */
EMBER_API int ember_kvm_vm_create(struct ember_kvm *kvm, struct ember_kvm_vm **out);
EMBER_API int ember_kvm_vm_create_type(struct ember_kvm *kvm, unsigned long type,
                                       struct ember_kvm_vm **out);
/* Wraps an existing VM fd; on success the handle owns it. Slots registered before are unknown
 * to the handle (ember_kvm_vm_get_dirty_log refuses them). */
EMBER_API int ember_kvm_vm_adopt(struct ember_kvm *kvm, int vm_fd, struct ember_kvm_vm **out);

/* Capabilities ember's VMM uses, for `ember kvm-info` and start-up checks. */
struct ember_kvm_cap_info {
        unsigned long cap;
        const char *name; /* "KVM_CAP_IRQCHIP" */
        bool required;    /* ember cannot run a guest without it */
};
EMBER_API const struct ember_kvm_cap_info *ember_kvm_caps_used(size_t *count);
/* 0 when every required capability is present, else -EOPNOTSUPP with the first missing one
 * named in the last error. */
EMBER_API int ember_kvm_check_required_caps(struct ember_kvm *kvm);

/* ---------------------------------------------------------------- VM */

EMBER_API void ember_kvm_vm_close(struct ember_kvm_vm *vm);
EMBER_API int ember_kvm_vm_fd(const struct ember_kvm_vm *vm);
EMBER_API const char *ember_kvm_vm_last_error(const struct ember_kvm_vm *vm);
/* The cached KVM_GET_VCPU_MMAP_SIZE. */
EMBER_API size_t ember_kvm_vm_run_size(const struct ember_kvm_vm *vm);
/* KVM_CHECK_EXTENSION on the VM fd. */
EMBER_API int ember_kvm_vm_check_extension_int(struct ember_kvm_vm *vm, unsigned long cap);
EMBER_API int ember_kvm_vm_check_extension(struct ember_kvm_vm *vm, unsigned long cap);
EMBER_API int ember_kvm_vm_enable_cap(struct ember_kvm_vm *vm, const struct kvm_enable_cap *cap);

/* The caller keeps the memory mapped while the slot exists. memory_size 0 deletes the slot.
 * The handle remembers each slot's size (for ember_kvm_vm_get_dirty_log). */
EMBER_API int ember_kvm_vm_set_user_memory_region(struct ember_kvm_vm *vm,
                                                  const struct kvm_userspace_memory_region *region);
/* KVM_SET_USER_MEMORY_REGION2 (KVM_CAP_USER_MEMORY2, Linux 6.8): the same, plus a guest_memfd
 * (flag KVM_MEM_GUEST_MEMFD, fields guest_memfd and guest_memfd_offset) that backs the slot's
 * private pages. The pads must be zero. */
EMBER_API int
ember_kvm_vm_set_user_memory_region2(struct ember_kvm_vm *vm,
                                     const struct kvm_userspace_memory_region2 *region);
/* KVM_CREATE_GUEST_MEMFD (KVM_CAP_GUEST_MEMFD, Linux 6.8): a file of size bytes (a multiple of
 * the page size) holding guest-private memory that the host cannot map. Returns the new fd
 * (>= 0; the caller closes it) or -errno. */
EMBER_API int ember_kvm_vm_create_guest_memfd(struct ember_kvm_vm *vm, uint64_t size,
                                              uint64_t flags);
/* KVM_SET_MEMORY_ATTRIBUTES (KVM_CAP_MEMORY_ATTRIBUTES, Linux 6.8): sets the attributes of the
 * guest-physical pages [gpa, gpa + size) (page-aligned), e.g. KVM_MEMORY_ATTRIBUTE_PRIVATE; 0
 * makes them shared. A guest access whose kind the slot cannot serve (a private page in a slot
 * without a guest_memfd) ends KVM_RUN with EMBER_KVM_EXIT_MEMORY_FAULT. */
EMBER_API int ember_kvm_vm_set_memory_attributes(struct ember_kvm_vm *vm, uint64_t gpa,
                                                 uint64_t size, uint64_t attributes);
EMBER_API int ember_kvm_vm_set_tss_address(struct ember_kvm_vm *vm, uint64_t addr);
/* Fails once a vCPU exists. */
EMBER_API int ember_kvm_vm_set_identity_map_address(struct ember_kvm_vm *vm, uint64_t addr);

EMBER_API int ember_kvm_vm_create_irqchip(struct ember_kvm_vm *vm);
/* The caller sets chip->chip_id (KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC). */
EMBER_API int ember_kvm_vm_get_irqchip(struct ember_kvm_vm *vm, struct kvm_irqchip *chip);
EMBER_API int ember_kvm_vm_set_irqchip(struct ember_kvm_vm *vm, const struct kvm_irqchip *chip);
/* Needs the irqchip first. */
EMBER_API int ember_kvm_vm_create_pit2(struct ember_kvm_vm *vm, const struct kvm_pit_config *cfg);
EMBER_API int ember_kvm_vm_get_pit2(struct ember_kvm_vm *vm, struct kvm_pit_state2 *state);
EMBER_API int ember_kvm_vm_set_pit2(struct ember_kvm_vm *vm, const struct kvm_pit_state2 *state);
EMBER_API int ember_kvm_vm_get_clock(struct ember_kvm_vm *vm, struct kvm_clock_data *clock);
EMBER_API int ember_kvm_vm_set_clock(struct ember_kvm_vm *vm, const struct kvm_clock_data *clock);

EMBER_API int ember_kvm_vm_set_irq_line(struct ember_kvm_vm *vm, uint32_t irq, bool active);
/* KVM_SIGNAL_MSI: > 0 delivered, 0 blocked by the guest, or -errno. */
EMBER_API int ember_kvm_vm_signal_msi(struct ember_kvm_vm *vm, const struct kvm_msi *msi);
/* Replaces the whole GSI routing table with entries[0..n), n <= 1024. */
EMBER_API int ember_kvm_vm_set_gsi_routing(struct ember_kvm_vm *vm,
                                           const struct kvm_irq_routing_entry *entries, uint32_t n);

/* An ioeventfd: a guest write to addr signals an eventfd inside the kernel (no exit). */
struct ember_kvm_ioevent {
        uint64_t addr;
        uint32_t len;   /* 1, 2, 4, 8, or 0 (any access; KVM_CAP_IOEVENTFD_ANY_LENGTH) */
        bool pio;       /* port I/O, else MMIO */
        bool datamatch; /* only when the written value equals `value` (needs len > 0) */
        uint64_t value;
};
/* A bad len, or datamatch with len 0, gives -EINVAL before the syscall. Unregistering needs
 * the same description as the registration. */
EMBER_API int ember_kvm_vm_register_ioevent(struct ember_kvm_vm *vm, int eventfd,
                                            const struct ember_kvm_ioevent *ev);
EMBER_API int ember_kvm_vm_unregister_ioevent(struct ember_kvm_vm *vm, int eventfd,
                                              const struct ember_kvm_ioevent *ev);
/* irqfd: a write to eventfd raises gsi. With resample (KVM_CAP_IRQFD_RESAMPLE), the line is
 * level-triggered and resample_fd is signalled when the guest acknowledges it. */
EMBER_API int ember_kvm_vm_register_irqfd(struct ember_kvm_vm *vm, int eventfd, uint32_t gsi);
EMBER_API int ember_kvm_vm_register_irqfd_resample(struct ember_kvm_vm *vm, int eventfd,
                                                   int resample_fd, uint32_t gsi);
EMBER_API int ember_kvm_vm_unregister_irqfd(struct ember_kvm_vm *vm, int eventfd, uint32_t gsi);

/* Coalesced zones: guest writes there are queued in the ring (see ember_kvm_vcpu_coalesced_read)
 * instead of exiting. */
EMBER_API int ember_kvm_vm_register_coalesced(struct ember_kvm_vm *vm, bool pio, uint64_t addr,
                                              uint32_t size);
EMBER_API int ember_kvm_vm_unregister_coalesced(struct ember_kvm_vm *vm, bool pio, uint64_t addr,
                                                uint32_t size);

/* KVM_GET_DIRTY_LOG into bitmap[0..words): one bit per 4 KiB page of the slot. The kernel
 * writes a bit for every page of the slot as registered, so the size that counts is the one
 * this handle registered (ember_kvm_vm_set_user_memory_region{,2}): a slot it did not register
 * gives -ENOENT, a memory_size other than the registered size -EINVAL, and fewer than
 * ceil(pages / 64) words -EINVAL, all before the syscall. Resets the log unless manual
 * protection (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) is enabled. */
EMBER_API int ember_kvm_vm_get_dirty_log(struct ember_kvm_vm *vm, uint32_t slot,
                                         uint64_t memory_size, uint64_t *bitmap, size_t words);
/* KVM_CLEAR_DIRTY_LOG: re-protects the pages set in bitmap, page first_page + i for bit i. */
EMBER_API int ember_kvm_vm_clear_dirty_log(struct ember_kvm_vm *vm, uint32_t slot,
                                           uint64_t first_page, uint32_t num_pages,
                                           const uint64_t *bitmap);

EMBER_API int ember_kvm_vm_create_vcpu(struct ember_kvm_vm *vm, unsigned long id,
                                       struct ember_kvm_vcpu **out);
/* Wraps an existing vCPU fd (maps its run area); on success the handle owns it. */
EMBER_API int ember_kvm_vcpu_adopt(struct ember_kvm_vm *vm, int vcpu_fd,
                                   struct ember_kvm_vcpu **out);
/* SEV (AMD memory encryption), as thin wrappers: KVM_MEMORY_ENCRYPT_OP with the caller's
 * argument (NULL asks whether the VM supports it: 0 when it does), the same with a SEV command
 * (the firmware's error code comes back in cmd->error), and KVM_MEMORY_ENCRYPT_REG_REGION /
 * _UNREG_REGION, which pin / unpin the host range [addr, addr + size) of an SEV guest's memory.
 * Without SEV the kernel answers -ENOTTY. */
EMBER_API int ember_kvm_vm_memory_encrypt_op(struct ember_kvm_vm *vm, void *arg);
EMBER_API int ember_kvm_vm_sev_op(struct ember_kvm_vm *vm, struct kvm_sev_cmd *cmd);
EMBER_API int ember_kvm_vm_register_enc_region(struct ember_kvm_vm *vm, uint64_t addr,
                                               uint64_t size);
EMBER_API int ember_kvm_vm_unregister_enc_region(struct ember_kvm_vm *vm, uint64_t addr,
                                                 uint64_t size);

/* KVM_CREATE_DEVICE. With KVM_CREATE_DEVICE_TEST in dev->flags it only asks whether the type
 * is supported: 0 means yes, and *out is set to NULL (no device, no fd). */
EMBER_API int ember_kvm_vm_create_device(struct ember_kvm_vm *vm, struct kvm_create_device *dev,
                                         struct ember_kvm_device **out);

/* ---------------------------------------------------------------- vCPU */

EMBER_API void ember_kvm_vcpu_close(struct ember_kvm_vcpu *vcpu);
EMBER_API int ember_kvm_vcpu_fd(const struct ember_kvm_vcpu *vcpu);
EMBER_API const char *ember_kvm_vcpu_last_error(const struct ember_kvm_vcpu *vcpu);
EMBER_API int ember_kvm_vcpu_enable_cap(struct ember_kvm_vcpu *vcpu,
                                        const struct kvm_enable_cap *cap);

EMBER_API int ember_kvm_vcpu_get_regs(struct ember_kvm_vcpu *vcpu, struct kvm_regs *regs);
EMBER_API int ember_kvm_vcpu_set_regs(struct ember_kvm_vcpu *vcpu, const struct kvm_regs *regs);
EMBER_API int ember_kvm_vcpu_get_sregs(struct ember_kvm_vcpu *vcpu, struct kvm_sregs *sregs);
EMBER_API int ember_kvm_vcpu_set_sregs(struct ember_kvm_vcpu *vcpu, const struct kvm_sregs *sregs);
EMBER_API int ember_kvm_vcpu_get_fpu(struct ember_kvm_vcpu *vcpu, struct kvm_fpu *fpu);
EMBER_API int ember_kvm_vcpu_set_fpu(struct ember_kvm_vcpu *vcpu, const struct kvm_fpu *fpu);
/* Needs the in-kernel irqchip. */
EMBER_API int ember_kvm_vcpu_get_lapic(struct ember_kvm_vcpu *vcpu, struct kvm_lapic_state *lapic);
EMBER_API int ember_kvm_vcpu_set_lapic(struct ember_kvm_vcpu *vcpu,
                                       const struct kvm_lapic_state *lapic);
/* Reads / writes entries[0..n) (n <= EMBER_KVM_MAX_MSR_ENTRIES, 255: more gives -ENOMEM); returns
 * how many were processed. */
EMBER_API int ember_kvm_vcpu_get_msrs(struct ember_kvm_vcpu *vcpu, struct kvm_msr_entry *entries,
                                      uint32_t n);
EMBER_API int ember_kvm_vcpu_set_msrs(struct ember_kvm_vcpu *vcpu,
                                      const struct kvm_msr_entry *entries, uint32_t n);
/* KVM_SET_CPUID2 with entries[0..n); KVM_GET_CPUID2 into entries[0..max), returning the count
 * (-E2BIG when max is below the number set). n or max > 256 gives -ENOMEM. The count is right on
 * kernels that do not report it (Debian 12's 6.1 among them): it is then found by probing. */
EMBER_API int ember_kvm_vcpu_set_cpuid2(struct ember_kvm_vcpu *vcpu,
                                        const struct kvm_cpuid_entry2 *entries, uint32_t n);
EMBER_API int ember_kvm_vcpu_get_cpuid2(struct ember_kvm_vcpu *vcpu,
                                        struct kvm_cpuid_entry2 *entries, uint32_t max);
/* KVM_GET_XSAVE / KVM_SET_XSAVE with the fixed 4 KiB struct. The kernel reads the vCPU's whole
 * state size, which exceeds 4 KiB when the process enabled a dynamic feature (AMX) for guests:
 * then set_xsave gives -EINVAL before the syscall and the *_xsave2 calls are the ones to use. */
EMBER_API int ember_kvm_vcpu_get_xsave(struct ember_kvm_vcpu *vcpu, struct kvm_xsave *xsave);
EMBER_API int ember_kvm_vcpu_set_xsave(struct ember_kvm_vcpu *vcpu, const struct kvm_xsave *xsave);
/* The XSAVE state size of this vCPU's process, KVM_CAP_XSAVE2 read when the vCPU was created
 * (>= 4096; larger with AMX enabled through arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)), or 0 when
 * the kernel lacks KVM_CAP_XSAVE2. Guest permissions are locked by the first vCPU, so it holds. */
EMBER_API size_t ember_kvm_vcpu_xsave2_size(const struct ember_kvm_vcpu *vcpu);
/* KVM_GET_XSAVE2 / KVM_SET_XSAVE with a buffer of len bytes: len below
 * ember_kvm_vcpu_xsave2_size gives -EINVAL before the syscall (the kernel would write or read
 * past it); no KVM_CAP_XSAVE2 gives -EOPNOTSUPP. */
EMBER_API int ember_kvm_vcpu_get_xsave2(struct ember_kvm_vcpu *vcpu, struct kvm_xsave *xsave,
                                        size_t len);
EMBER_API int ember_kvm_vcpu_set_xsave2(struct ember_kvm_vcpu *vcpu, const struct kvm_xsave *xsave,
                                        size_t len);
EMBER_API int ember_kvm_vcpu_get_xcrs(struct ember_kvm_vcpu *vcpu, struct kvm_xcrs *xcrs);
EMBER_API int ember_kvm_vcpu_set_xcrs(struct ember_kvm_vcpu *vcpu, const struct kvm_xcrs *xcrs);
EMBER_API int ember_kvm_vcpu_get_debugregs(struct ember_kvm_vcpu *vcpu,
                                           struct kvm_debugregs *dregs);
EMBER_API int ember_kvm_vcpu_set_debugregs(struct ember_kvm_vcpu *vcpu,
                                           const struct kvm_debugregs *dregs);
EMBER_API int ember_kvm_vcpu_get_events(struct ember_kvm_vcpu *vcpu,
                                        struct kvm_vcpu_events *events);
EMBER_API int ember_kvm_vcpu_set_events(struct ember_kvm_vcpu *vcpu,
                                        const struct kvm_vcpu_events *events);
EMBER_API int ember_kvm_vcpu_get_mp_state(struct ember_kvm_vcpu *vcpu, struct kvm_mp_state *mp);
EMBER_API int ember_kvm_vcpu_set_mp_state(struct ember_kvm_vcpu *vcpu,
                                          const struct kvm_mp_state *mp);
/* KVM_GET_TSC_KHZ: the guest TSC frequency in kHz (> 0) or -errno. */
EMBER_API int ember_kvm_vcpu_get_tsc_khz(struct ember_kvm_vcpu *vcpu);
EMBER_API int ember_kvm_vcpu_set_tsc_khz(struct ember_kvm_vcpu *vcpu, uint32_t khz);
/* Tells the guest's kvmclock that the vCPU was paused (fails unless the guest set up kvmclock). */
EMBER_API int ember_kvm_vcpu_kvmclock_ctrl(struct ember_kvm_vcpu *vcpu);
/* KVM_SET_GUEST_DEBUG, e.g. control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP. */
EMBER_API int ember_kvm_vcpu_set_guest_debug(struct ember_kvm_vcpu *vcpu,
                                             const struct kvm_guest_debug *dbg);
/* KVM_TRANSLATE: tr->linear_address in, the rest out. */
EMBER_API int ember_kvm_vcpu_translate(struct ember_kvm_vcpu *vcpu, struct kvm_translation *tr);
/* KVM_NMI (KVM_CAP_USER_NMI): queues an NMI, delivered at the next KVM_RUN (without an in-kernel
 * LAPIC this is the VMM's LINT1/NMI line). KVM_SMI (KVM_CAP_X86_SMM): queues an SMI; the vCPU
 * enters SMM at SMBASE + 0x8000 (SMBASE 0x30000 after reset) and kvm_run.flags has
 * KVM_RUN_X86_SMM while it is there. */
EMBER_API int ember_kvm_vcpu_nmi(struct ember_kvm_vcpu *vcpu);
EMBER_API int ember_kvm_vcpu_smi(struct ember_kvm_vcpu *vcpu);
/* KVM_GET_NESTED_STATE into state, a buffer of len bytes (at least the 128-byte header; the
 * most a state takes is KVM_CAP_NESTED_STATE): returns the state's size (state->size; 128 when
 * no nested guest runs), or -errno: -E2BIG when len is too small (state->size then says what
 * it takes), -EINVAL for a len below the header. */
EMBER_API int ember_kvm_vcpu_get_nested_state(struct ember_kvm_vcpu *vcpu,
                                              struct kvm_nested_state *state, size_t len);
/* KVM_SET_NESTED_STATE from state, a buffer of len bytes: a state->size below the header or
 * above len gives -EINVAL before the syscall (the kernel reads state->size bytes). */
EMBER_API int ember_kvm_vcpu_set_nested_state(struct ember_kvm_vcpu *vcpu,
                                              const struct kvm_nested_state *state, size_t len);

/* The shared run area (KVM_GET_VCPU_MMAP_SIZE bytes), valid until ember_kvm_vcpu_close. */
EMBER_API struct kvm_run *ember_kvm_vcpu_run_page(struct ember_kvm_vcpu *vcpu);
/* Sets kvm_run.immediate_exit with an atomic store: while set, KVM_RUN returns -EINTR at once.
 * Safe from any thread and from a signal handler (the way to kick a vCPU: set it, then signal
 * the vCPU's thread). */
EMBER_API void ember_kvm_vcpu_set_immediate_exit(struct ember_kvm_vcpu *vcpu, bool on);

/* A decoded exit. Pointers point into the vCPU's run area and are valid until the next run. */
enum ember_kvm_exit_kind {
        EMBER_KVM_EXIT_UNKNOWN = KVM_EXIT_UNKNOWN,
        EMBER_KVM_EXIT_EXCEPTION = KVM_EXIT_EXCEPTION,
        EMBER_KVM_EXIT_IO = KVM_EXIT_IO,
        EMBER_KVM_EXIT_HYPERCALL = KVM_EXIT_HYPERCALL,
        EMBER_KVM_EXIT_DEBUG = KVM_EXIT_DEBUG,
        EMBER_KVM_EXIT_HLT = KVM_EXIT_HLT,
        EMBER_KVM_EXIT_MMIO = KVM_EXIT_MMIO,
        EMBER_KVM_EXIT_IRQ_WINDOW_OPEN = KVM_EXIT_IRQ_WINDOW_OPEN,
        EMBER_KVM_EXIT_SHUTDOWN = KVM_EXIT_SHUTDOWN,
        EMBER_KVM_EXIT_FAIL_ENTRY = KVM_EXIT_FAIL_ENTRY,
        EMBER_KVM_EXIT_INTR = KVM_EXIT_INTR,
        EMBER_KVM_EXIT_SET_TPR = KVM_EXIT_SET_TPR,
        EMBER_KVM_EXIT_TPR_ACCESS = KVM_EXIT_TPR_ACCESS,
        EMBER_KVM_EXIT_S390_SIEIC = KVM_EXIT_S390_SIEIC,
        EMBER_KVM_EXIT_S390_RESET = KVM_EXIT_S390_RESET,
        EMBER_KVM_EXIT_DCR = KVM_EXIT_DCR,
        EMBER_KVM_EXIT_NMI = KVM_EXIT_NMI,
        EMBER_KVM_EXIT_INTERNAL_ERROR = KVM_EXIT_INTERNAL_ERROR,
        EMBER_KVM_EXIT_OSI = KVM_EXIT_OSI,
        EMBER_KVM_EXIT_PAPR_HCALL = KVM_EXIT_PAPR_HCALL,
        EMBER_KVM_EXIT_S390_UCONTROL = KVM_EXIT_S390_UCONTROL,
        EMBER_KVM_EXIT_WATCHDOG = KVM_EXIT_WATCHDOG,
        EMBER_KVM_EXIT_S390_TSCH = KVM_EXIT_S390_TSCH,
        EMBER_KVM_EXIT_EPR = KVM_EXIT_EPR,
        EMBER_KVM_EXIT_SYSTEM_EVENT = KVM_EXIT_SYSTEM_EVENT,
        EMBER_KVM_EXIT_S390_STSI = KVM_EXIT_S390_STSI,
        EMBER_KVM_EXIT_IOAPIC_EOI = KVM_EXIT_IOAPIC_EOI,
        EMBER_KVM_EXIT_HYPERV = KVM_EXIT_HYPERV,
        EMBER_KVM_EXIT_ARM_NISV = KVM_EXIT_ARM_NISV,
        EMBER_KVM_EXIT_X86_RDMSR = KVM_EXIT_X86_RDMSR,
        EMBER_KVM_EXIT_X86_WRMSR = KVM_EXIT_X86_WRMSR,
        EMBER_KVM_EXIT_DIRTY_RING_FULL = KVM_EXIT_DIRTY_RING_FULL,
        EMBER_KVM_EXIT_AP_RESET_HOLD = KVM_EXIT_AP_RESET_HOLD,
        EMBER_KVM_EXIT_X86_BUS_LOCK = KVM_EXIT_X86_BUS_LOCK,
        EMBER_KVM_EXIT_XEN = KVM_EXIT_XEN,
        EMBER_KVM_EXIT_RISCV_SBI = KVM_EXIT_RISCV_SBI,
        EMBER_KVM_EXIT_RISCV_CSR = KVM_EXIT_RISCV_CSR,
        EMBER_KVM_EXIT_NOTIFY = KVM_EXIT_NOTIFY,
        /* Newer than some distributions' <linux/kvm.h> (numbers fixed by the kernel ABI). */
        EMBER_KVM_EXIT_LOONGARCH_IOCSR = 38,
        EMBER_KVM_EXIT_MEMORY_FAULT = 39,
        EMBER_KVM_EXIT_TDX = 40,
        /* Any other reason; the number is in ember_kvm_exit.reason. */
        EMBER_KVM_EXIT_UNSUPPORTED = 0x10000,
};

struct ember_kvm_exit {
        enum ember_kvm_exit_kind kind;
        uint32_t reason; /* kvm_run.exit_reason as the kernel wrote it */
        union {
                struct {
                        uint64_t hardware_exit_reason;
                } unknown;
                struct {
                        uint32_t exception, error_code;
                } exception;
                /* IN: fill data[0..size*count) before the next run. */
                struct {
                        uint16_t port;
                        uint8_t direction; /* KVM_EXIT_IO_IN / KVM_EXIT_IO_OUT */
                        uint8_t size;      /* 1, 2 or 4 */
                        uint32_t count;
                        uint8_t *data; /* size * count bytes in the run area */
                } io;
                /* Read: fill data[0..len) before the next run. */
                struct {
                        uint64_t gpa;
                        uint8_t *data; /* len bytes in the run area */
                        uint32_t len;  /* 1..8 */
                        bool is_write;
                } mmio;
                struct {
                        uint64_t nr;
                        uint64_t args[6];
                        uint64_t *ret; /* result for the guest */
                        uint32_t longmode;
                } hypercall;
                struct kvm_debug_exit_arch debug;
                struct {
                        uint64_t hardware_entry_failure_reason;
                        uint32_t cpu;
                } fail_entry;
                struct {
                        uint64_t rip;
                        uint32_t is_write;
                } tpr_access;
                struct {
                        uint32_t suberror; /* KVM_INTERNAL_ERROR_* */
                        uint32_t ndata;    /* valid words in data (at most 16) */
                        const uint64_t *data;
                } internal;
                struct {
                        uint32_t type; /* KVM_SYSTEM_EVENT_* */
                        uint32_t ndata;
                        const uint64_t *data;
                } system_event;
                struct {
                        uint8_t vector;
                } ioapic_eoi;
                /* RDMSR: set *data; either: *error = 1 makes the guest take #GP. */
                struct {
                        uint32_t reason; /* KVM_MSR_EXIT_REASON_* */
                        uint32_t index;
                        uint64_t *data;
                        uint8_t *error;
                } msr;
                /* Reported with KVM_RUN's -1/EFAULT or EHWPOISON (decoded as an exit anyway). */
                struct {
                        uint64_t flags, gpa, size;
                } memory_fault;
                struct {
                        uint32_t flags;
                } notify;
                struct kvm_hyperv_exit *hyperv;
                struct kvm_xen_exit *xen;
        } u;
};

/* KVM_RUN, then decodes the exit into *exit (exit may be NULL). Returns 0 with an exit
 * (including a memory fault, see above), or -errno: -EINTR when a signal or immediate_exit
 * stopped it before or during the run (exit->kind is then EMBER_KVM_EXIT_INTR), -EINVAL for an
 * I/O or MMIO exit the kernel described inconsistently; after any other error *exit means
 * nothing. An exit reason ember does not know is not an error: kind EMBER_KVM_EXIT_UNSUPPORTED. */
EMBER_API int ember_kvm_vcpu_run(struct ember_kvm_vcpu *vcpu, struct ember_kvm_exit *exit);
/* Writes a one-line description ("KVM_EXIT_IO out port 0x3f8 size 1 count 1", "unsupported 99")
 * into buf; returns what snprintf returns. */
EMBER_API int ember_kvm_exit_describe(const struct ember_kvm_exit *exit, char *buf, size_t len);

/* The coalesced MMIO/PIO ring (one per VM, seen through each vCPU's run area); NULL without
 * KVM_CAP_COALESCED_MMIO. */
EMBER_API struct kvm_coalesced_mmio_ring *
ember_kvm_vcpu_coalesced_ring(struct ember_kvm_vcpu *vcpu);
/* Pops the oldest entry: 1 with *out filled, 0 when the ring is empty, -EIO without a ring.
 * One reader at a time per VM. */
EMBER_API int ember_kvm_vcpu_coalesced_read(struct ember_kvm_vcpu *vcpu,
                                            struct kvm_coalesced_mmio *out);

/* ---------------------------------------------------------------- device */

/* Wraps a device fd the caller has (e.g. received from another process), as kvm-ioctls'
 * DeviceFd::from_raw_fd. The fd is not checked (calls on a bad one fail with -EBADF); on success
 * the handle owns it. */
EMBER_API int ember_kvm_device_adopt(int fd, struct ember_kvm_device **out);
EMBER_API void ember_kvm_device_close(struct ember_kvm_device *dev);
EMBER_API int ember_kvm_device_fd(const struct ember_kvm_device *dev);
EMBER_API const char *ember_kvm_device_last_error(const struct ember_kvm_device *dev);
EMBER_API int ember_kvm_device_set_attr(struct ember_kvm_device *dev,
                                        const struct kvm_device_attr *attr);
/* The kernel writes through attr->addr. */
EMBER_API int ember_kvm_device_get_attr(struct ember_kvm_device *dev, struct kvm_device_attr *attr);
/* 0 when the device has the attribute, else -errno (-ENXIO). */
EMBER_API int ember_kvm_device_has_attr(struct ember_kvm_device *dev,
                                        const struct kvm_device_attr *attr);

#ifdef __cplusplus
}
#endif
#endif
