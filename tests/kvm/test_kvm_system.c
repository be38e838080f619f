/* The system handle (/dev/kvm) of ember's KVM layer: opening, adopting, version, capabilities,
 * limits, CPUID and MSR lists, VM creation. */
#include <fcntl.h>

#include "kvm_test_util.h"

static void t_open_cloexec(void)
{
        struct kt *t = kt_open();
        struct ember_kvm *kvm = NULL;
        int fd;

        CHECK(fcntl(ember_kvm_fd(t->kvm), F_GETFD) & FD_CLOEXEC);

        REQUIRE_EQ(ember_kvm_open_path(NULL, false, &kvm), 0);
        CHECK_EQ(fcntl(ember_kvm_fd(kvm), F_GETFD) & FD_CLOEXEC, 0);
        ember_kvm_close(kvm);

        fd = ember_kvm_open_raw(NULL, false);
        REQUIRE(fd >= 0);
        CHECK_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
        close(fd);
        fd = ember_kvm_open_raw(EMBER_KVM_DEFAULT_PATH, true);
        REQUIRE(fd >= 0);
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);

        CHECK_EQ(ember_kvm_open_path("/nonexistent/kvm", true, &kvm), -ENOENT);
        CHECK(kvm == NULL);
}

/* An fd opened elsewhere (as after exec) works through ember_kvm_adopt. */
static void t_adopt_raw_fd(void)
{
        struct kt *t = kt_open();
        struct ember_kvm *kvm = NULL;
        int fd = ember_kvm_open_raw(NULL, true);

        REQUIRE(fd >= 0);
        REQUIRE_EQ(ember_kvm_adopt(fd, &kvm), 0);
        CHECK_EQ(ember_kvm_fd(kvm), fd);
        CHECK_EQ(ember_kvm_api_version(kvm), ember_kvm_api_version(t->kvm));
        ember_kvm_close(kvm);
        CHECK_EQ(fcntl(fd, F_GETFD), -1); /* the handle owned and closed it */
}

static void t_api_version(void)
{
        struct kt *t = kt_open();

        CHECK_EQ(ember_kvm_api_version(t->kvm), KVM_API_VERSION);
        CHECK_EQ(ember_kvm_api_version(t->kvm), 12);
}

static void t_check_extension(void)
{
        struct kt *t = kt_open();

        CHECK_EQ(ember_kvm_check_extension(t->kvm, KVM_CAP_USER_MEMORY), 1);
        CHECK(ember_kvm_check_extension_int(t->kvm, KVM_CAP_USER_MEMORY) > 0);
        /* Unknown capabilities are absent, not errors. */
        CHECK_EQ(ember_kvm_check_extension_int(t->kvm, 696969), 0);
        CHECK_EQ(ember_kvm_check_extension(t->kvm, 696969), 0);
        /* An int-valued capability: the memory slot count. */
        CHECK(ember_kvm_check_extension_int(t->kvm, KVM_CAP_NR_MEMSLOTS) >= 0);
}

static void t_vcpu_mmap_size(void)
{
        struct kt *t = kt_open_vm();
        int size = ember_kvm_vcpu_mmap_size(t->kvm);

        CHECK(size >= (int)sizeof(struct kvm_run));
        CHECK_EQ(ember_kvm_vm_run_size(t->vm), size);
}

/* kvm-ioctls also asserts nr_vcpus >= 4; that depends on the host (2 on a 2-CPU machine). */
static void t_limits(void)
{
        struct kt *t = kt_open();
        int nr_vcpus = ember_kvm_nr_vcpus(t->kvm);
        int max_vcpus = ember_kvm_max_vcpus(t->kvm);

        CHECK(nr_vcpus >= 1);
        CHECK(ember_kvm_nr_memslots(t->kvm) >= 32);
        CHECK(max_vcpus >= nr_vcpus);
        CHECK(ember_kvm_max_vcpu_id(t->kvm) >= max_vcpus);
}

static void cpuid_common(int (*get)(struct ember_kvm *, struct kvm_cpuid_entry2 *, uint32_t),
                         struct kt *t)
{
        static struct kvm_cpuid_entry2 entries[EMBER_KVM_MAX_CPUID_ENTRIES + 1];
        int n = get(t->kvm, entries, EMBER_KVM_MAX_CPUID_ENTRIES);

        if (n < 0)
                FAILF("%s", ember_kvm_last_error(t->kvm));
        CHECK(n > 0 && n <= (int)EMBER_KVM_MAX_CPUID_ENTRIES);
        CHECK_EQ(get(t->kvm, entries, EMBER_KVM_MAX_CPUID_ENTRIES + 1), -ENOMEM);
        /* Too small a buffer: the kernel's E2BIG. */
        if (n > 1)
                CHECK_EQ(get(t->kvm, entries, 1), -E2BIG);
}

static void t_supported_cpuid(void)
{
        struct kt *t = kt_open();
        struct kvm_cpuid_entry2 entries[EMBER_KVM_MAX_CPUID_ENTRIES];
        int n;

        KT_NEED_CAP(t, KVM_CAP_EXT_CPUID);
        cpuid_common(ember_kvm_get_supported_cpuid, t);
        n = ember_kvm_get_supported_cpuid(t->kvm, entries, EMBER_KVM_MAX_CPUID_ENTRIES);
        REQUIRE(n > 0);
        /* Leaf 0 is there, and reports a maximum basic leaf. */
        CHECK_EQ(entries[0].function, 0);
        CHECK(entries[0].eax >= 1);
}

static void t_emulated_cpuid(void)
{
        struct kt *t = kt_open();

        KT_NEED_CAP(t, KVM_CAP_EXT_EMUL_CPUID);
        cpuid_common(ember_kvm_get_emulated_cpuid, t);
}

static void t_msr_index_list(void)
{
        struct kt *t = kt_open();
        uint32_t idx[EMBER_KVM_MAX_MSR_INDICES];
        int n = ember_kvm_get_msr_index_list(t->kvm, idx, EMBER_KVM_MAX_MSR_INDICES);

        if (n < 0)
                FAILF("%s", ember_kvm_last_error(t->kvm));
        CHECK(n >= 2);
        CHECK_EQ(ember_kvm_get_msr_index_list(t->kvm, idx, EMBER_KVM_MAX_MSR_INDICES + 1), -ENOMEM);
        CHECK_EQ(ember_kvm_get_msr_index_list(t->kvm, idx, 1), -E2BIG);
}

/* Feature MSRs: the index list, then their values through the system KVM_GET_MSRS. */
static void t_feature_msrs(void)
{
        struct kt *t = kt_open();
        uint32_t idx[EMBER_KVM_MAX_MSR_INDICES];
        struct kvm_msr_entry entries[EMBER_KVM_MAX_MSR_ENTRIES + 1];
        int n;

        KT_NEED_CAP(t, KVM_CAP_GET_MSR_FEATURES);
        n = ember_kvm_get_msr_feature_index_list(t->kvm, idx, EMBER_KVM_MAX_MSR_INDICES);
        if (n < 0)
                FAILF("%s", ember_kvm_last_error(t->kvm));
        if (n == 0)
                SKIP("this KVM lists no feature MSRs");
        memset(entries, 0, sizeof(entries));
        for (int i = 0; i < n; i++)
                entries[i].index = idx[i];
        CHECK_EQ(ember_kvm_get_feature_msrs(t->kvm, entries, (uint32_t)n), n);
        /* At the bound (the kernel refuses 256 entries, see t_msrs_at_the_bound): 255 reads of
         * the first feature MSR work, 256 are refused before the syscall. */
        for (int i = 0; i <= (int)EMBER_KVM_MAX_MSR_ENTRIES; i++)
                entries[i] = (struct kvm_msr_entry){.index = idx[0]};
        CHECK_EQ(ember_kvm_get_feature_msrs(t->kvm, entries, 255), 255);
        CHECK_EQ(entries[254].data, entries[0].data);
        CHECK_EQ(ember_kvm_get_feature_msrs(t->kvm, entries, 256), -ENOMEM);
        CHECK_STR(ember_kvm_last_error(t->kvm), "KVM_GET_MSRS: 256 MSRs, at most 255");
}

static void t_create_vm(void)
{
        struct kt *t = kt_open();
        struct ember_kvm_vm *vm = NULL, *adopted = NULL;
        int fd;

        REQUIRE_EQ(ember_kvm_vm_create(t->kvm, &vm), 0);
        CHECK(ember_kvm_vm_fd(vm) >= 0);
        CHECK(fcntl(ember_kvm_vm_fd(vm), F_GETFD) & FD_CLOEXEC);
        ember_kvm_vm_close(vm);

        REQUIRE_EQ(ember_kvm_vm_create_type(t->kvm, 0, &vm), 0);
        fd = dup(ember_kvm_vm_fd(vm));
        REQUIRE(fd >= 0);
        REQUIRE_EQ(ember_kvm_vm_adopt(t->kvm, fd, &adopted), 0);
        CHECK_EQ(ember_kvm_vm_fd(adopted), fd);
        CHECK_EQ(ember_kvm_vm_run_size(adopted), ember_kvm_vm_run_size(vm));
        CHECK_EQ(ember_kvm_vm_check_extension(adopted, KVM_CAP_USER_MEMORY), 1);
        ember_kvm_vm_close(adopted);
        ember_kvm_vm_close(vm);

        /* An unknown VM type. */
        CHECK(ember_kvm_vm_create_type(t->kvm, 0x7f, &vm) < 0);
        CHECK(vm == NULL);
        CHECK(strncmp(ember_kvm_last_error(t->kvm), "KVM_CREATE_VM: ", 15) == 0);
}

static void t_required_caps(void)
{
        struct kt *t = kt_open();
        size_t n = 0;
        const struct ember_kvm_cap_info *caps = ember_kvm_caps_used(&n);
        int ret;

        REQUIRE(n > 0);
        for (size_t i = 0; i < n; i++)
                CHECK(strncmp(caps[i].name, "KVM_CAP_", 8) == 0);
        ret = ember_kvm_check_required_caps(t->kvm);
        if (ret < 0)
                FAILF("%s", ember_kvm_last_error(t->kvm));
}

int main(void)
{
        T_RUN(t_open_cloexec);
        T_RUN(t_adopt_raw_fd);
        T_RUN(t_api_version);
        T_RUN(t_check_extension);
        T_RUN(t_vcpu_mmap_size);
        T_RUN(t_limits);
        T_RUN(t_supported_cpuid);
        T_RUN(t_emulated_cpuid);
        T_RUN(t_msr_index_list);
        T_RUN(t_feature_msrs);
        T_RUN(t_create_vm);
        T_RUN(t_required_caps);
        kt_release();
        return T_DONE();
}
