/* ioctls whose argument is a header followed by a flexible array (CPUID, MSRs, MSR lists),
 * shared by the system and vCPU calls. The bounds are checked before any allocation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/kvm_internal.h"

int kvm_cpuid_get(int fd, unsigned long request, const char *name,
		  struct kvm_cpuid_entry2 *entries, uint32_t max, char *err, size_t err_len)
{
	struct kvm_cpuid2 *cpuid;
	int ret;

	if (max > EMBER_KVM_MAX_CPUID_ENTRIES)
		return kvm_fail(err, err_len, ENOMEM, "%s: %u entries asked for, at most %u", name,
				max, EMBER_KVM_MAX_CPUID_ENTRIES);
	if (max && !entries)
		return kvm_fail(err, err_len, EINVAL, "%s: no entry buffer", name);
	cpuid = calloc(1, sizeof(*cpuid) + (size_t)max * sizeof(cpuid->entries[0]));
	if (!cpuid)
		return kvm_fail(err, err_len, ENOMEM, "%s: out of memory", name);
	cpuid->nent = max;
	ret = kvm_ioctl_checked(fd, request, name, (unsigned long)cpuid, err, err_len);
	if (ret >= 0) {
		uint32_t n = cpuid->nent < max ? cpuid->nent : max;

		memcpy(entries, cpuid->entries, (size_t)n * sizeof(entries[0]));
		ret = (int)n;
	}
	free(cpuid);
	return ret;
}

int kvm_cpuid_set(int fd, unsigned long request, const char *name,
		  const struct kvm_cpuid_entry2 *entries, uint32_t n, char *err, size_t err_len)
{
	struct kvm_cpuid2 *cpuid;
	int ret;

	if (n > EMBER_KVM_MAX_CPUID_ENTRIES)
		return kvm_fail(err, err_len, ENOMEM, "%s: %u entries, at most %u", name, n,
				EMBER_KVM_MAX_CPUID_ENTRIES);
	if (n && !entries)
		return kvm_fail(err, err_len, EINVAL, "%s: no entries", name);
	cpuid = calloc(1, sizeof(*cpuid) + (size_t)n * sizeof(cpuid->entries[0]));
	if (!cpuid)
		return kvm_fail(err, err_len, ENOMEM, "%s: out of memory", name);
	cpuid->nent = n;
	if (n)
		memcpy(cpuid->entries, entries, (size_t)n * sizeof(entries[0]));
	ret = kvm_ioctl_checked(fd, request, name, (unsigned long)cpuid, err, err_len);
	free(cpuid);
	return ret;
}

int kvm_msrs_io(int fd, unsigned long request, const char *name, struct kvm_msr_entry *entries,
		uint32_t n, bool read, char *err, size_t err_len)
{
	struct kvm_msrs *msrs;
	int ret;

	if (n > EMBER_KVM_MAX_MSR_ENTRIES)
		return kvm_fail(err, err_len, ENOMEM, "%s: %u MSRs, at most %u", name, n,
				EMBER_KVM_MAX_MSR_ENTRIES);
	if (n && !entries)
		return kvm_fail(err, err_len, EINVAL, "%s: no entries", name);
	msrs = calloc(1, sizeof(*msrs) + (size_t)n * sizeof(msrs->entries[0]));
	if (!msrs)
		return kvm_fail(err, err_len, ENOMEM, "%s: out of memory", name);
	msrs->nmsrs = n;
	if (n)
		memcpy(msrs->entries, entries, (size_t)n * sizeof(entries[0]));
	ret = kvm_ioctl_checked(fd, request, name, (unsigned long)msrs, err, err_len);
	/* The kernel processes a prefix and returns its length. */
	if (ret > 0 && read)
		memcpy(entries, msrs->entries, (size_t)(ret <= (int)n ? ret : (int)n) * sizeof(entries[0]));
	free(msrs);
	return ret;
}

int kvm_msr_list_get(int fd, unsigned long request, const char *name, uint32_t *indices,
		     uint32_t max, char *err, size_t err_len)
{
	struct kvm_msr_list *list;
	int ret;

	if (max > EMBER_KVM_MAX_MSR_ENTRIES)
		return kvm_fail(err, err_len, ENOMEM, "%s: %u indices asked for, at most %u", name,
				max, EMBER_KVM_MAX_MSR_ENTRIES);
	if (max && !indices)
		return kvm_fail(err, err_len, EINVAL, "%s: no index buffer", name);
	list = calloc(1, sizeof(*list) + (size_t)max * sizeof(list->indices[0]));
	if (!list)
		return kvm_fail(err, err_len, ENOMEM, "%s: out of memory", name);
	list->nmsrs = max;
	ret = kvm_ioctl_checked(fd, request, name, (unsigned long)list, err, err_len);
	if (ret >= 0) {
		uint32_t n = list->nmsrs < max ? list->nmsrs : max;

		memcpy(indices, list->indices, (size_t)n * sizeof(indices[0]));
		ret = (int)n;
	}
	free(list);
	return ret;
}
