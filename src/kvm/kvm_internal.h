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

struct ember_kvm_vm {
	int fd;
	size_t run_size;
	/* KVM_CAP_COALESCED_MMIO: page index of the ring in a vCPU's run area, 0 if absent. */
	int coalesced_page;
	char error[KVM_ERROR_LEN];
};

struct ember_kvm_vcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
	struct kvm_coalesced_mmio_ring *ring;
	uint32_t ring_entries;
	char error[KVM_ERROR_LEN];
};

struct ember_kvm_device {
	int fd;
	char error[KVM_ERROR_LEN];
};

/* The raw call: ioctl's result (>= 0) or -errno. */
int kvm_ioctl_raw(int fd, unsigned long request, unsigned long arg);
/* The checked call: as kvm_ioctl_raw, and on failure writes "NAME: strerror" into err. */
int kvm_ioctl_checked(int fd, unsigned long request, const char *name, unsigned long arg,
		      char *err, size_t err_len);
/* Any handle h with fd and error members; names the request as written at the call site. */
#define KVM_IOCTL(h, request, arg)                                                                 \
	kvm_ioctl_checked((h)->fd, (request), #request, (unsigned long)(arg), (h)->error,          \
			  sizeof((h)->error))

/* Records a failure ember detected itself; returns -err (err > 0). */
int kvm_fail(char *buf, size_t len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define KVM_FAIL(h, err, ...) kvm_fail((h)->error, sizeof((h)->error), (err), __VA_ARGS__)

/* Flexible-array ioctls (fam.c). Each checks its bound (256) before any syscall, returns the
 * number of entries processed or -errno, and records failures in err. */
int kvm_cpuid_get(int fd, unsigned long request, const char *name,
		  struct kvm_cpuid_entry2 *entries, uint32_t max, char *err, size_t err_len);
int kvm_cpuid_set(int fd, unsigned long request, const char *name,
		  const struct kvm_cpuid_entry2 *entries, uint32_t n, char *err, size_t err_len);
/* KVM_GET_MSRS / KVM_SET_MSRS; read copies the values back into entries. */
int kvm_msrs_io(int fd, unsigned long request, const char *name, struct kvm_msr_entry *entries,
		uint32_t n, bool read, char *err, size_t err_len);
int kvm_msr_list_get(int fd, unsigned long request, const char *name, uint32_t *indices,
		     uint32_t max, char *err, size_t err_len);
/* Calls one of the above on handle h, naming the request as written. */
#define KVM_FAM(fn, h, request, ...)                                                               \
	fn((h)->fd, (request), #request, __VA_ARGS__, (h)->error, sizeof((h)->error))

/* True for the exit reasons KVM defines (those ember_kvm_exit_reason_name knows). */
bool kvm_exit_reason_known(uint32_t reason);

/* Decodes the run area after KVM_RUN returned ret (>= 0 or -errno). Returns 0 with *exit filled,
 * or -errno. run_size bounds the I/O data the kernel points at. */
int kvm_exit_decode(struct kvm_run *run, size_t run_size, int ret, struct ember_kvm_exit *exit);

/* Number of entries the coalesced ring holds in one page of page_size bytes. */
uint32_t kvm_coalesced_ring_entries(size_t page_size);

#endif
