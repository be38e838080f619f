/* Internals of ember's KVM layer: the handle structs and the ioctl wrappers every call uses. */
#ifndef EMBER_SRC_KVM_INTERNAL_H
#define EMBER_SRC_KVM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ember/kvm.h"

#define KVM_ERROR_LEN 192

struct ember_kvm {
        int fd;
        char error[KVM_ERROR_LEN];
};

/* A memory slot registered through the VM handle, and its size: the kernel sizes a slot's
 * dirty bitmap from the slot, not from what the caller says. */
struct kvm_slot_size {
        uint32_t slot; /* as the kernel takes it: address space << 16 | id */
        uint64_t size;
};

struct ember_kvm_vm {
        int fd;
        size_t run_size;
        /* KVM_CAP_COALESCED_MMIO: page index of the ring in a vCPU's run area, 0 if absent. */
        int coalesced_page;
        struct kvm_slot_size *slots;
        size_t nslots, slots_cap;
        char error[KVM_ERROR_LEN];
};

struct ember_kvm_vcpu {
        int fd;
        struct kvm_run *run;
        size_t run_size;
        struct kvm_coalesced_mmio_ring *ring;
        uint32_t ring_entries;
        size_t xsave2_size; /* KVM_CAP_XSAVE2 at creation, 0 without it */
        char error[KVM_ERROR_LEN];
};

struct ember_kvm_device {
        int fd;
        char error[KVM_ERROR_LEN];
};

/* The raw call: ioctl's result (>= 0) or -errno. */
int kvm_ioctl_raw(int fd, unsigned long request, unsigned long arg);
/* The checked call: as kvm_ioctl_raw, and on failure writes "NAME: strerror" into err. */
int kvm_ioctl_checked(int fd, unsigned long request, const char *name, unsigned long arg, char *err,
                      size_t err_len);
/* Any handle h with fd and error members; names the request as written at the call site. */
#define KVM_IOCTL(h, request, arg)                                                                 \
        kvm_ioctl_checked((h)->fd, (request), #request, (unsigned long)(arg), (h)->error,          \
                          sizeof((h)->error))

/* Records a failure ember detected itself; returns -err (err > 0). */
int kvm_fail(char *buf, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define KVM_FAIL(h, err, ...) kvm_fail((h)->error, sizeof((h)->error), (err), __VA_ARGS__)

/* Flexible-array ioctls (fam.c): a header starting with a u32 count, then entries. */
struct kvm_fam_layout {
        size_t header; /* offset of the entries */
        size_t entry;  /* size of one entry */
        uint32_t max;  /* more gives -ENOMEM before any syscall */
        const char *unit;
};
extern const struct kvm_fam_layout kvm_fam_cpuid, kvm_fam_msrs, kvm_fam_msr_list,
    kvm_fam_irq_routing;
#define KVM_FAM_IN      1 /* entries[0..n) go to the kernel */
#define KVM_FAM_OUT     2 /* the kernel fills entries and sets the count: returns the count */
#define KVM_FAM_OUT_RET 4 /* the kernel fills the first ret entries (KVM_GET_MSRS): returns ret */
/* Returns the ioctl's result (or the count, per dir) or -errno; records failures in err. */
int kvm_fam_ioctl(int fd, unsigned long request, const char *name,
                  const struct kvm_fam_layout *layout, void *entries, uint32_t n, int dir,
                  char *err, size_t err_len);
/* On handle h, naming the request as written. entries may point to const data when dir is
 * KVM_FAM_IN only. */
#define KVM_FAM(h, request, layout, entries, n, dir)                                               \
        kvm_fam_ioctl((h)->fd, (request), #request, &(layout), (void *)(uintptr_t)(entries), (n),  \
                      (dir), (h)->error, sizeof((h)->error))

/* True for the exit reasons KVM defines (those ember_kvm_exit_reason_name knows). */
bool kvm_exit_reason_known(uint32_t reason);

/* Decodes the run area after KVM_RUN returned ret (>= 0 or -errno). Returns 0 with *exit filled,
 * or -errno. run_size bounds the I/O data the kernel points at. */
int kvm_exit_decode(struct kvm_run *run, size_t run_size, int ret, struct ember_kvm_exit *exit);

/* Number of entries the coalesced ring holds in one page of page_size bytes. */
uint32_t kvm_coalesced_ring_entries(size_t page_size);

#endif
