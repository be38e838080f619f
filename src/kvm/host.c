/* What backs /dev/kvm on this host: hardware virtualization (vmx/svm) or a software
 * hypervisor (PVM), which runs small guests but not an unmodified Linux kernel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm/kvm_internal.h"

/* The vmx/svm flag of the first "flags" line that has one. */
static enum ember_kvm_host_virt cpu_flag(const char *cpuinfo_path)
{
        enum ember_kvm_host_virt found = EMBER_KVM_HOST_UNKNOWN;
        FILE *f = fopen(cpuinfo_path, "re");
        char *line = NULL;
        size_t cap = 0;

        if (!f)
                return EMBER_KVM_HOST_UNKNOWN;
        while (found == EMBER_KVM_HOST_UNKNOWN && getline(&line, &cap, f) > 0) {
                char *colon, *tok, *save = NULL;

                if (strncmp(line, "flags", 5) != 0 || !(colon = strchr(line, ':')))
                        continue;
                for (tok = strtok_r(colon + 1, " \t\n", &save); tok;
                     tok = strtok_r(NULL, " \t\n", &save)) {
                        if (strcmp(tok, "vmx") == 0)
                                found = EMBER_KVM_HOST_VMX;
                        else if (strcmp(tok, "svm") == 0)
                                found = EMBER_KVM_HOST_SVM;
                }
        }
        free(line);
        fclose(f);
        return found;
}

enum ember_kvm_host_virt ember_kvm_host_virt_at(const char *cpuinfo_path,
                                                const char *sysfs_module_dir)
{
        enum ember_kvm_host_virt v = cpu_flag(cpuinfo_path);
        char path[512];

        if (v != EMBER_KVM_HOST_UNKNOWN)
                return v;
        if ((size_t)snprintf(path, sizeof(path), "%s/kvm_pvm", sysfs_module_dir) < sizeof(path) &&
            access(path, F_OK) == 0)
                return EMBER_KVM_HOST_PVM;
        return EMBER_KVM_HOST_UNKNOWN;
}

enum ember_kvm_host_virt ember_kvm_host_virt(void)
{
        return ember_kvm_host_virt_at("/proc/cpuinfo", "/sys/module");
}

const char *ember_kvm_host_virt_name(enum ember_kvm_host_virt v)
{
        switch (v) {
        case EMBER_KVM_HOST_VMX:
                return "hardware (vmx)";
        case EMBER_KVM_HOST_SVM:
                return "hardware (svm)";
        case EMBER_KVM_HOST_PVM:
                return "software hypervisor (PVM)";
        default:
                return "unknown";
        }
}

int ember_kvm_host_virt_is_hardware(enum ember_kvm_host_virt v)
{
        return v == EMBER_KVM_HOST_VMX || v == EMBER_KVM_HOST_SVM;
}
