/* `ember kvm-info`: what this host's KVM offers and what ember needs from it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ember/kvm.h"

static void usage(FILE *out)
{
        fprintf(out,
                "usage: ember kvm-info [--device PATH]\n"
                "Prints the KVM API version, the limits, the capabilities ember relies on,\n"
                "and whether this host virtualizes in hardware (vmx/svm).\n"
                "Exit status: 0 when ember can use this KVM, 1 when it cannot, 2 on bad usage.\n");
}

static const char *host_verdict(enum ember_kvm_host_virt v)
{
        switch (v) {
        case EMBER_KVM_HOST_VMX:
        case EMBER_KVM_HOST_SVM:
                return "runs Linux guests directly";
        case EMBER_KVM_HOST_PVM:
                return "cannot run unmodified Linux guests; e2e tests run inside a QEMU TCG test "
                       "host";
        default:
                return "no vmx/svm flag in /proc/cpuinfo and no known software hypervisor";
        }
}

static void print_limits(struct ember_kvm *kvm)
{
        int mmap_size = ember_kvm_vcpu_mmap_size(kvm);

        printf("limits:\n");
        printf("  recommended vCPUs   %d\n", ember_kvm_nr_vcpus(kvm));
        printf("  max vCPUs           %d\n", ember_kvm_max_vcpus(kvm));
        printf("  max vCPU id         %d\n", ember_kvm_max_vcpu_id(kvm));
        printf("  memory slots        %d\n", ember_kvm_nr_memslots(kvm));
        if (mmap_size >= 0)
                printf("  vCPU mmap size      %d\n", mmap_size);
        else
                printf("  vCPU mmap size      unknown (%s)\n", ember_kvm_last_error(kvm));
}

/* Prints each capability; returns how many required ones are missing. */
static int print_caps(struct ember_kvm *kvm)
{
        size_t n = 0;
        const struct ember_kvm_cap_info *caps = ember_kvm_caps_used(&n);
        int missing = 0;

        printf("capabilities ember uses:\n");
        for (size_t i = 0; i < n; i++) {
                int v = ember_kvm_check_extension_int(kvm, caps[i].cap);
                const char *state = v > 0 ? "yes" : v == 0 ? "no" : "error";

                if (v <= 0 && caps[i].required)
                        missing++;
                printf("  %-34s %-5s %s", caps[i].name, state,
                       caps[i].required ? "required" : "optional");
                if (v > 1)
                        printf(" (%d)", v);
                printf("\n");
        }
        return missing;
}

int ember_cli_kvm_info(int argc, char **argv)
{
        const char *path = EMBER_KVM_DEFAULT_PATH;
        enum ember_kvm_host_virt virt = ember_kvm_host_virt();
        struct ember_kvm *kvm = NULL;
        int ret, version, missing;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        usage(stdout);
                        return 0;
                } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
                        path = argv[++i];
                } else {
                        fprintf(stderr, "ember kvm-info: unexpected argument '%s'\n", argv[i]);
                        usage(stderr);
                        return 2;
                }
        }

        printf("host virtualization: %s: %s\n", ember_kvm_host_virt_name(virt), host_verdict(virt));
        ret = ember_kvm_open_path(path, true, &kvm);
        if (ret < 0) {
                printf("KVM device: %s: cannot open: %s (%s)\n", path, strerror(-ret),
                       ember_kvm_errno_name(ret));
                printf("verdict: ember cannot use KVM here\n");
                return 1;
        }
        printf("KVM device: %s\n", path);
        version = ember_kvm_api_version(kvm);
        if (version < 0)
                printf("API version: unknown (%s)\n", ember_kvm_last_error(kvm));
        else
                printf("API version: %d%s\n", version,
                       version == KVM_API_VERSION ? "" : " (ember needs version 12)");
        print_limits(kvm);
        missing = print_caps(kvm);
        ember_kvm_close(kvm);

        if (version != KVM_API_VERSION || missing) {
                printf("verdict: ember cannot use this KVM (%d required capabilities missing)\n",
                       missing);
                return 1;
        }
        if (!ember_kvm_host_virt_is_hardware(virt))
                printf("verdict: usable for ember's tiny-guest tests; Linux guests need "
                       "hardware virtualization\n");
        else
                printf("verdict: ember can run Linux guests here\n");
        return 0;
}
