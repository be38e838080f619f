/* ioctls whose argument is a header with a u32 count followed by a flexible array (CPUID,
 * MSRs, MSR lists, GSI routes): one helper that checks the bound before anything else, builds
 * the request, and copies entries in and out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/kvm_internal.h"

const struct kvm_fam_layout kvm_fam_cpuid = {offsetof(struct kvm_cpuid2, entries),
                                             sizeof(struct kvm_cpuid_entry2),
                                             EMBER_KVM_MAX_CPUID_ENTRIES, "CPUID entries"};
const struct kvm_fam_layout kvm_fam_msrs = {offsetof(struct kvm_msrs, entries),
                                            sizeof(struct kvm_msr_entry), EMBER_KVM_MAX_MSR_ENTRIES,
                                            "MSRs"};
const struct kvm_fam_layout kvm_fam_msr_list = {offsetof(struct kvm_msr_list, indices),
                                                sizeof(uint32_t), EMBER_KVM_MAX_MSR_INDICES,
                                                "MSR indices"};
const struct kvm_fam_layout kvm_fam_irq_routing = {offsetof(struct kvm_irq_routing, entries),
                                                   sizeof(struct kvm_irq_routing_entry),
                                                   EMBER_KVM_MAX_IRQ_ROUTES, "routes"};

int kvm_fam_ioctl(int fd, unsigned long request, const char *name,
                  const struct kvm_fam_layout *layout, void *entries, uint32_t n, int dir,
                  char *err, size_t err_len)
{
        uint8_t *req;
        uint32_t count;
        int ret;

        if (n > layout->max)
                return kvm_fail(err, err_len, ENOMEM, "%s: %u %s, at most %u", name, n,
                                layout->unit, layout->max);
        if (n && !entries)
                return kvm_fail(err, err_len, EINVAL, "%s: no %s", name, layout->unit);
        req = calloc(1, layout->header + (size_t)n * layout->entry);
        if (!req)
                return kvm_fail(err, err_len, ENOMEM, "%s: out of memory", name);
        memcpy(req, &n, sizeof(n)); /* the count is the header's first field */
        if ((dir & KVM_FAM_IN) && n)
                memcpy(req + layout->header, entries, (size_t)n * layout->entry);
        ret = kvm_ioctl_checked(fd, request, name, (unsigned long)req, err, err_len);
        if (ret >= 0 && (dir & (KVM_FAM_OUT | KVM_FAM_OUT_RET))) {
                if (dir & KVM_FAM_OUT)
                        memcpy(&count, req, sizeof(count));
                else
                        count = (uint32_t)ret;
                if (count > n)
                        count = n;
                if (count)
                        memcpy(entries, req + layout->header, (size_t)count * layout->entry);
                ret = (int)count;
        }
        free(req);
        return ret;
}
