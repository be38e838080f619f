/* Boot preparation: kernel image, initramfs (ember-init + exec config + the root tree),
 * command line, boot structures, and each vCPU's initial state. */
#ifndef EMBER_CORE_BOOT_H
#define EMBER_CORE_BOOT_H

#include <linux/kvm.h>

#include "arch/x86_64/boot.h"
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/kernel.h"
#include "core/cmdline.h"
#include "core/initramfs.h"
#include "core/gmem.h"
#include "core/vm_internal.h"
#include "ember/kvm.h"

/* Everything derived from the configuration before any KVM or guest-memory work, so that
 * mistakes in user input are reported first and without /dev/kvm. */
struct boot_image {
        int kernel_fd; /* kept open until the kernel is loaded into guest memory */
        uint64_t kernel_len;
        struct x86_kernel_info ki;
        struct initramfs initramfs;
        struct cmdline cmdline;
};

struct boot_result {
        struct x86_boot_entry entry;
        struct kvm_cpuid_entry2 cpuid[EMBER_KVM_MAX_CPUID_ENTRIES];
        uint32_t ncpuid;
        struct x86_cpuid_host cpuid_host;
        size_t initramfs_bytes;
};

/* Opens the kernel and probes it from its headers (the image is read later, by
 * boot_load_kernel). Initializes `img`; release it with boot_image_free whatever the result. */
int boot_open_kernel(const struct ember_config *cfg, struct boot_image *img, enum ember_error *code,
                     char *err, size_t errlen);
/* Packs the initramfs (and saves it when asked): user input, checked before any KVM work. */
int boot_prepare_initramfs(const struct ember_config *cfg, struct boot_image *img,
                           enum ember_error *code, char *err, size_t errlen);
/* Builds the command line; `devices_cmdline` holds the devices' virtio_mmio.device= words. */
int boot_prepare_cmdline(const struct ember_config *cfg, const char *devices_cmdline,
                         struct boot_image *img, enum ember_error *code, char *err, size_t errlen);
void boot_image_free(struct boot_image *img);
/* Reads the kernel's loadable parts into guest memory. It touches nothing but `img` (read only)
 * and the kernel's range of guest memory, so it may run on another thread while boot_prepare
 * fills the initramfs and command line of the same `img`. */
int boot_load_kernel(struct gmem *m, const struct boot_image *img, enum ember_error *code,
                     char *err, size_t errlen);
/* Writes the command line, initramfs and boot structures into guest memory. They all lie
 * outside the kernel's extent [ki.mem_start, ki.mem_end), which is not read either: this may
 * run while boot_load_kernel copies the kernel. */
int boot_place(struct gmem *m, const struct boot_image *img, unsigned nvcpus,
               struct boot_result *out, enum ember_error *code, char *err, size_t errlen);

/* Reads KVM's supported CPUID and the host facts the guest's CPUID needs, once per VM. */
int boot_read_cpuid(struct ember_kvm *kvm, struct boot_result *boot, char *err, size_t errlen);

/* CPUID, MSRs, LAPIC, FPU for every vCPU; registers and segments for vCPU 0. */
int boot_setup_vcpu(struct ember_kvm_vcpu *vcpu, unsigned index, unsigned nvcpus,
                    const struct boot_result *boot, char *err, size_t errlen);

#endif
