/* The vCPU handle of ember's KVM layer: register state round trips, LAPIC, MSRs, CPUID2,
 * XSAVE/XCRs, XSAVE2 (also AMX-sized), nested state, debug registers, events, MP state, TSC,
 * kvmclock, translation, immediate exit, adopting a vCPU fd. */
#include <asm/prctl.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "kvm_test_util.h"

static struct kt *vcpu_only(void)
{
        struct kt *t = kt_open_vm();

        kt_create_vcpu(t);
        return t;
}

static void t_regs_sregs_roundtrip(void)
{
        struct kt *t = vcpu_only();
        struct kvm_regs regs, back;
        struct kvm_sregs sregs, sback;

        KT_VCPU_OK(t, ember_kvm_vcpu_get_regs(t->vcpu, &regs));
        CHECK_EQ(regs.rip, 0xfff0); /* reset vector */
        regs.rax = 0x1122334455667788ull;
        regs.r15 = 42;
        regs.rip = 0x1000;
        regs.rflags = 2;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_regs(t->vcpu, &regs));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_regs(t->vcpu, &back));
        CHECK(memcmp(&regs, &back, sizeof(regs)) == 0);

        KT_VCPU_OK(t, ember_kvm_vcpu_get_sregs(t->vcpu, &sregs));
        CHECK_EQ(sregs.cs.selector, 0xf000);
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_sregs(t->vcpu, &sregs));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_sregs(t->vcpu, &sback));
        CHECK_EQ(sback.cs.base, 0);
        CHECK_EQ(sback.cs.selector, 0);
}

/* fcw and an XMM register round-trip. (KVM_GET_FPU/KVM_SET_FPU ignore mxcsr, which
 * kvm-ioctls also sets: the kernel neither reads nor reports it.) */
static void t_fpu_roundtrip(void)
{
        struct kt *t = vcpu_only();
        struct kvm_fpu fpu = {.fcw = 0x27f, .mxcsr = 0x1f80}, back;

        fpu.xmm[1][0] = 0xab;
        fpu.xmm[1][15] = 0xcd;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_fpu(t->vcpu, &fpu));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_fpu(t->vcpu, &back));
        CHECK_EQ(back.fcw, 0x27f);
        CHECK_EQ(back.xmm[1][0], 0xab);
        CHECK_EQ(back.xmm[1][15], 0xcd);
}

static void t_lapic_roundtrip(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_lapic_state lapic;
        uint32_t icr;

        KT_NEED_CAP(t, KVM_CAP_IRQCHIP);
        KT_VM_OK(t, ember_kvm_vm_create_irqchip(t->vm));
        kt_create_vcpu(t);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_lapic(t->vcpu, &lapic));
        icr = 2;
        memcpy(&lapic.regs[0x300], &icr, sizeof(icr));
        KT_VCPU_OK(t, ember_kvm_vcpu_set_lapic(t->vcpu, &lapic));
        memset(&lapic, 0, sizeof(lapic));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_lapic(t->vcpu, &lapic));
        memcpy(&icr, &lapic.regs[0x300], sizeof(icr));
        CHECK_EQ(icr, 2);
}

static void t_msrs_roundtrip(void)
{
        struct kt *t = vcpu_only();
        struct kvm_msr_entry set[2] = {{.index = 0x174, .data = 0}, {.index = 0x175, .data = 1}};
        struct kvm_msr_entry get[2] = {{.index = 0x174}, {.index = 0x175}};
        static struct kvm_msr_entry many[EMBER_KVM_MAX_MSR_ENTRIES + 1];

        CHECK_EQ(ember_kvm_vcpu_set_msrs(t->vcpu, set, 2), 2);
        CHECK_EQ(ember_kvm_vcpu_get_msrs(t->vcpu, get, 2), 2);
        CHECK_EQ(get[0].data, 0);
        CHECK_EQ(get[1].data, 1);
        CHECK_EQ(ember_kvm_vcpu_get_msrs(t->vcpu, many, EMBER_KVM_MAX_MSR_ENTRIES + 1), -ENOMEM);
        CHECK_EQ(ember_kvm_vcpu_set_msrs(t->vcpu, many, EMBER_KVM_MAX_MSR_ENTRIES + 1), -ENOMEM);
        CHECK(strstr(ember_kvm_vcpu_last_error(t->vcpu), "KVM_SET_MSRS") != NULL);
}

/* The bound is the kernel's: msr_io() refuses nmsrs >= 256 (MAX_IO_MSRS) with E2BIG, so 255
 * entries work and ember refuses 256 itself, with -ENOMEM, before the syscall. */
static void t_msrs_at_the_bound(void)
{
        static struct kvm_msr_entry many[EMBER_KVM_MAX_MSR_ENTRIES + 1];
        static struct {
                struct kvm_msrs h;
                struct kvm_msr_entry e[256];
        } raw;
        struct kt *t = vcpu_only();

        CHECK_EQ(EMBER_KVM_MAX_MSR_ENTRIES, 255);
        for (uint32_t i = 0; i <= EMBER_KVM_MAX_MSR_ENTRIES; i++)
                many[i] = (struct kvm_msr_entry){.index = 0x175, .data = 0x1000 + i};
        CHECK_EQ(ember_kvm_vcpu_set_msrs(t->vcpu, many, 255), 255);
        for (uint32_t i = 0; i <= EMBER_KVM_MAX_MSR_ENTRIES; i++)
                many[i].data = 0;
        CHECK_EQ(ember_kvm_vcpu_get_msrs(t->vcpu, many, 255), 255);
        CHECK_EQ(many[0].data, 0x1000 + 254); /* the last of the 255 writes */
        CHECK_EQ(many[254].data, 0x1000 + 254);
        CHECK_EQ(ember_kvm_vcpu_get_msrs(t->vcpu, many, 256), -ENOMEM);
        CHECK_STR(ember_kvm_vcpu_last_error(t->vcpu), "KVM_GET_MSRS: 256 MSRs, at most 255");
        CHECK_EQ(ember_kvm_vcpu_set_msrs(t->vcpu, many, 256), -ENOMEM);
        CHECK_STR(ember_kvm_vcpu_last_error(t->vcpu), "KVM_SET_MSRS: 256 MSRs, at most 255");
        /* Why: the kernel itself refuses 256. */
        raw.h.nmsrs = 256;
        for (int i = 0; i < 256; i++)
                raw.e[i].index = 0x175;
        CHECK_EQ(ioctl(ember_kvm_vcpu_fd(t->vcpu), KVM_GET_MSRS, &raw), -1);
        CHECK_EQ(errno, E2BIG);
}

/* kvm-ioctls' CPUID test: set the supported CPUID with KVM's vendor string and SHA cleared on
 * two vCPUs, read it back. A software hypervisor (PVM) rewrites leaves 1, 7 and 0xd with the
 * host's values after KVM_SET_CPUID2, so there only the vendor leaf is compared. */
static void t_cpuid2_roundtrip(void)
{
        static struct kvm_cpuid_entry2 supported[EMBER_KVM_MAX_CPUID_ENTRIES];
        static struct kvm_cpuid_entry2 back[EMBER_KVM_MAX_CPUID_ENTRIES];
        const bool rewritten = ember_kvm_host_virt() == EMBER_KVM_HOST_PVM;
        struct kt *t = kt_open_vm();
        char vendor[13] = {0};
        int n;

        KT_NEED_CAP(t, KVM_CAP_EXT_CPUID);
        n = ember_kvm_get_supported_cpuid(t->kvm, supported, EMBER_KVM_MAX_CPUID_ENTRIES);
        REQUIRE(n > 3);
        REQUIRE_EQ(supported[0].function, 0);
        memcpy(&supported[0].ebx, "KVMK", 4);
        memcpy(&supported[0].edx, "VMKV", 4);
        memcpy(&supported[0].ecx, "MKVM", 4);
        for (int i = 0; i < n; i++)
                if (supported[i].function == 7 && supported[i].index == 0)
                        supported[i].ebx &= ~(1u << 29);
        for (int id = 0; id < 2; id++) {
                struct ember_kvm_vcpu *vcpu = NULL;

                KT_VM_OK(t, ember_kvm_vm_create_vcpu(t->vm, (unsigned long)id, &vcpu));
                if (id == 0)
                        t->vcpu = vcpu; /* released with the test's objects */
                KT_OK(ember_kvm_vcpu_set_cpuid2(vcpu, supported, (uint32_t)n),
                      ember_kvm_vcpu_last_error(vcpu));
                CHECK_EQ(ember_kvm_vcpu_get_cpuid2(vcpu, back, EMBER_KVM_MAX_CPUID_ENTRIES), n);
                /* Later entries may be adjusted by the kernel. */
                CHECK(memcmp(back, supported, (rewritten ? 1 : 3) * sizeof(back[0])) == 0);
                CHECK_EQ(ember_kvm_vcpu_get_cpuid2(vcpu, back, (uint32_t)n - 1), -E2BIG);
                CHECK_EQ(ember_kvm_vcpu_get_cpuid2(vcpu, back, EMBER_KVM_MAX_CPUID_ENTRIES + 1),
                         -ENOMEM);
                CHECK_EQ(ember_kvm_vcpu_set_cpuid2(vcpu, back, EMBER_KVM_MAX_CPUID_ENTRIES + 1),
                         -ENOMEM);
                if (id != 0)
                        ember_kvm_vcpu_close(vcpu);
        }
        CHECK_EQ(ember_kvm_vcpu_get_cpuid2(t->vcpu, back, (uint32_t)n), n);
        memcpy(vendor, &back[0].ebx, 4);
        memcpy(vendor + 4, &back[0].edx, 4);
        memcpy(vendor + 8, &back[0].ecx, 4);
        CHECK_STR(vendor, "KVMKVMKVMKVM");
        for (int i = 0; i < n && !rewritten; i++)
                if (back[i].function == 7 && back[i].index == 0)
                        CHECK_EQ(back[i].ebx & (1u << 29), 0);
}

static void t_xsave_xcrs_roundtrip(void)
{
        struct kt *t = vcpu_only();
        struct kvm_xsave xsave, xback;
        struct kvm_xcrs xcrs, xcback;

        KT_NEED_CAP(t, KVM_CAP_XSAVE);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_xsave(t->vcpu, &xsave));
        KT_VCPU_OK(t, ember_kvm_vcpu_set_xsave(t->vcpu, &xsave));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_xsave(t->vcpu, &xback));
        CHECK(memcmp(&xsave, &xback, sizeof(xsave)) == 0);
        KT_NEED_CAP(t, KVM_CAP_XCRS);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_xcrs(t->vcpu, &xcrs));
        KT_VCPU_OK(t, ember_kvm_vcpu_set_xcrs(t->vcpu, &xcrs));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_xcrs(t->vcpu, &xcback));
        CHECK(memcmp(&xcrs, &xcback, sizeof(xcrs)) == 0);
}

static _Alignas(64) uint8_t xsave_buf[2][64 * 1024];

/* KVM_GET_XSAVE2 / KVM_SET_XSAVE with the size from KVM_CAP_XSAVE2: an XMM register changed in
 * the buffer reaches the vCPU, the state reads back the same, and a buffer one byte short is
 * refused either way. */
static void t_xsave2_roundtrip(void)
{
        struct kt *t = vcpu_only();
        struct kvm_xsave *x = (struct kvm_xsave *)xsave_buf[0];
        struct kvm_xsave *back = (struct kvm_xsave *)xsave_buf[1];
        const uint32_t xmm1 = 0xfeedf00d;
        struct kvm_fpu fpu;
        size_t size;

        KT_NEED_CAP(t, KVM_CAP_XSAVE2);
        size = ember_kvm_vcpu_xsave2_size(t->vcpu);
        CHECK_EQ(size, ember_kvm_vm_check_extension_int(t->vm, KVM_CAP_XSAVE2));
        REQUIRE(size >= sizeof(struct kvm_xsave) && size <= sizeof(xsave_buf[0]));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_xsave2(t->vcpu, x, size));
        memcpy(&x->region[(160 + 16) / 4], &xmm1, sizeof(xmm1)); /* XMM1 in the legacy area */
        x->region[512 / 4] |= 3; /* XSTATE_BV: x87 and SSE state present (else reset on load) */
        KT_VCPU_OK(t, ember_kvm_vcpu_set_xsave2(t->vcpu, x, size));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_fpu(t->vcpu, &fpu));
        CHECK(memcmp(fpu.xmm[1], &xmm1, sizeof(xmm1)) == 0);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_xsave2(t->vcpu, back, size));
        CHECK(memcmp(x, back, size) == 0);

        CHECK_EQ(ember_kvm_vcpu_get_xsave2(t->vcpu, back, size - 1), -EINVAL);
        CHECK(strncmp(ember_kvm_vcpu_last_error(t->vcpu), "KVM_GET_XSAVE2: a ", 18) == 0);
        CHECK_EQ(ember_kvm_vcpu_set_xsave2(t->vcpu, x, size - 1), -EINVAL);
        CHECK(strncmp(ember_kvm_vcpu_last_error(t->vcpu), "KVM_SET_XSAVE: a ", 17) == 0);
        CHECK_EQ(ember_kvm_vcpu_get_xsave2(t->vcpu, NULL, size), -EINVAL);
}

/* In a child process (guest XSAVE permissions are per process and locked by its first vCPU):
 * 0 when the AMX-sized state round-trips, 77 when the host grants no AMX, else the step that
 * failed. */
static int xsave2_amx_child(void)
{
        struct kvm_xsave *x = (struct kvm_xsave *)xsave_buf[0];
        struct ember_kvm *kvm;
        struct ember_kvm_vm *vm;
        struct ember_kvm_vcpu *vcpu;
        size_t size;

        if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_GUEST_PERM, 18 /* XTILEDATA */) != 0)
                return 77;
        if (ember_kvm_open(&kvm) < 0 || ember_kvm_vm_create(kvm, &vm) < 0 ||
            ember_kvm_vm_create_vcpu(vm, 0, &vcpu) < 0)
                return 1;
        size = ember_kvm_vcpu_xsave2_size(vcpu);
        if (size <= sizeof(struct kvm_xsave) || size > sizeof(xsave_buf[0]))
                return 2;
        if (ember_kvm_vcpu_get_xsave2(vcpu, x, size) < 0 ||
            ember_kvm_vcpu_set_xsave2(vcpu, x, size) < 0)
                return 3;
        /* The 4 KiB calls would let the kernel read past their struct. */
        if (ember_kvm_vcpu_set_xsave(vcpu, x) != -EINVAL)
                return 4;
        if (ember_kvm_vcpu_get_xsave2(vcpu, x, sizeof(struct kvm_xsave)) != -EINVAL)
                return 5;
        return 0;
}

static void t_xsave2_amx_sized(void)
{
        int status;
        pid_t pid;

        fflush(stdout);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0)
                _exit(xsave2_amx_child());
        REQUIRE_EQ(waitpid(pid, &status, 0), pid);
        REQUIRE(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77)
                SKIP("this host grants no AMX to guests (arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, "
                     "XTILEDATA) refused): only 4 KiB XSAVE2 states checked");
        CHECK_EQ(WEXITSTATUS(status), 0);
}

/* KVM_GET/SET_NESTED_STATE round trip; on SVM also the GIF, which the kernel takes from the
 * state (with EFER.SVME set). */
static void t_nested_state_roundtrip(void)
{
        static _Alignas(8) uint8_t buf[2][16384];
        struct kvm_nested_state *st = (struct kvm_nested_state *)buf[0];
        struct kvm_nested_state *back = (struct kvm_nested_state *)buf[1];
        static struct kvm_cpuid_entry2 cpuid[EMBER_KVM_MAX_CPUID_ENTRIES];
        struct kt *t = vcpu_only();
        struct kvm_sregs sregs;
        int cap, n;

        cap = ember_kvm_check_extension_int(t->kvm, KVM_CAP_NESTED_STATE);
        if (cap <= 0)
                SKIP("this KVM lacks KVM_CAP_NESTED_STATE (no nested virtualization)");
        REQUIRE((size_t)cap >= sizeof(*st) && (size_t)cap <= sizeof(buf[0]));
        n = ember_kvm_vcpu_get_nested_state(t->vcpu, st, (size_t)cap);
        if (n < 0)
                FAILF("%s", ember_kvm_vcpu_last_error(t->vcpu));
        CHECK_EQ(n, sizeof(*st)); /* no nested guest: the header alone */
        CHECK_EQ(st->size, n);
        KT_VCPU_OK(t, ember_kvm_vcpu_set_nested_state(t->vcpu, st, (size_t)cap));
        CHECK_EQ(ember_kvm_vcpu_get_nested_state(t->vcpu, back, (size_t)cap), n);
        CHECK(memcmp(st, back, (size_t)n) == 0);
        if (st->format != KVM_STATE_NESTED_FORMAT_SVM)
                return;
        CHECK(st->flags & KVM_STATE_NESTED_GIF_SET);
        n = ember_kvm_get_supported_cpuid(t->kvm, cpuid, EMBER_KVM_MAX_CPUID_ENTRIES);
        REQUIRE(n > 0);
        KT_VCPU_OK(t, ember_kvm_vcpu_set_cpuid2(t->vcpu, cpuid, (uint32_t)n));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_sregs(t->vcpu, &sregs));
        sregs.efer |= 1u << 12; /* EFER.SVME */
        KT_VCPU_OK(t, ember_kvm_vcpu_set_sregs(t->vcpu, &sregs));
        st->flags = 0;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_nested_state(t->vcpu, st, (size_t)cap));
        REQUIRE(ember_kvm_vcpu_get_nested_state(t->vcpu, back, (size_t)cap) > 0);
        CHECK_EQ(back->flags & KVM_STATE_NESTED_GIF_SET, 0);
        st->flags = KVM_STATE_NESTED_GIF_SET;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_nested_state(t->vcpu, st, (size_t)cap));
        REQUIRE(ember_kvm_vcpu_get_nested_state(t->vcpu, back, (size_t)cap) > 0);
        CHECK(back->flags & KVM_STATE_NESTED_GIF_SET);
}

static void t_debugregs_events_mp_state(void)
{
        struct kt *t = vcpu_only();
        struct kvm_debugregs dregs, dback;
        struct kvm_vcpu_events events, eback;
        struct kvm_mp_state mp, mback;

        KT_NEED_CAP(t, KVM_CAP_DEBUGREGS);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_debugregs(t->vcpu, &dregs));
        dregs.db[0] = 0x1000;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_debugregs(t->vcpu, &dregs));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_debugregs(t->vcpu, &dback));
        CHECK_EQ(dback.db[0], 0x1000);
        CHECK_EQ(dback.dr7, dregs.dr7);

        KT_NEED_CAP(t, KVM_CAP_VCPU_EVENTS);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_events(t->vcpu, &events));
        KT_VCPU_OK(t, ember_kvm_vcpu_set_events(t->vcpu, &events));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_events(t->vcpu, &eback));
        CHECK_EQ(eback.exception.injected, events.exception.injected);
        CHECK_EQ(eback.nmi.pending, events.nmi.pending);

        KT_NEED_CAP(t, KVM_CAP_MP_STATE);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_mp_state(t->vcpu, &mp));
        CHECK_EQ(mp.mp_state, KVM_MP_STATE_RUNNABLE);
        KT_VCPU_OK(t, ember_kvm_vcpu_set_mp_state(t->vcpu, &mp));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_mp_state(t->vcpu, &mback));
        CHECK_EQ(mback.mp_state, mp.mp_state);
}

static void t_tsc_khz(void)
{
        struct kt *t = vcpu_only();
        int khz;

        KT_NEED_CAP(t, KVM_CAP_GET_TSC_KHZ);
        khz = ember_kvm_vcpu_get_tsc_khz(t->vcpu);
        if (khz < 0)
                FAILF("%s", ember_kvm_vcpu_last_error(t->vcpu));
        CHECK(khz > 0);
        if (!ember_kvm_check_extension(t->kvm, KVM_CAP_TSC_CONTROL))
                SKIP("this KVM lacks KVM_CAP_TSC_CONTROL (reading %d kHz passed)", khz);
        KT_VCPU_OK(t, ember_kvm_vcpu_set_tsc_khz(t->vcpu, (uint32_t)khz - 500000));
        CHECK_EQ(ember_kvm_vcpu_get_tsc_khz(t->vcpu), khz - 500000);
}

/* KVMCLOCK_CTRL needs a guest kvmclock: it fails before MSR_KVM_SYSTEM_TIME_NEW enables one. */
static void t_kvmclock_ctrl(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_msr_entry msr = {.index = 0x4b564d01, .data = 0x2000 | 1};

        KT_NEED_CAP(t, KVM_CAP_KVMCLOCK_CTRL);
        kt_add_memory(t, 0, 0x10000, 0);
        kt_create_vcpu(t);
        CHECK_EQ(ember_kvm_vcpu_kvmclock_ctrl(t->vcpu), -EINVAL);
        CHECK(strstr(ember_kvm_vcpu_last_error(t->vcpu), "KVM_KVMCLOCK_CTRL") != NULL);
        REQUIRE_EQ(ember_kvm_vcpu_set_msrs(t->vcpu, &msr, 1), 1);
        KT_VCPU_OK(t, ember_kvm_vcpu_kvmclock_ctrl(t->vcpu));
}

/* Without paging, translation is the identity; the all-ones address is the invalid one. */
static void t_translate_real_mode(void)
{
        struct kt *t = vcpu_only();
        struct kvm_translation tr = {.linear_address = 0x10000};

        KT_VCPU_OK(t, ember_kvm_vcpu_translate(t->vcpu, &tr));
        CHECK_EQ(tr.valid, 1);
        CHECK_EQ(tr.physical_address, 0x10000);
        tr = (struct kvm_translation){.linear_address = ~0ull};
        KT_VCPU_OK(t, ember_kvm_vcpu_translate(t->vcpu, &tr));
        CHECK_EQ(tr.valid, 0);
}

/* With immediate_exit set, KVM_RUN returns -EINTR before running the guest. */
static void t_immediate_exit(void)
{
        static const uint8_t code[] = {0xf4};
        struct kt *t = kt_tiny_guest(code, sizeof(code), 0);
        struct ember_kvm_exit exit;
        struct kvm_regs regs;

        KT_NEED_CAP(t, KVM_CAP_IMMEDIATE_EXIT);
        ember_kvm_vcpu_set_immediate_exit(t->vcpu, true);
        CHECK_EQ(ember_kvm_vcpu_run_page(t->vcpu)->immediate_exit, 1);
        CHECK_EQ(ember_kvm_vcpu_run(t->vcpu, &exit), -EINTR);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_INTR);
        KT_VCPU_OK(t, ember_kvm_vcpu_get_regs(t->vcpu, &regs));
        CHECK_EQ(regs.rip, KT_GUEST_GPA);
        ember_kvm_vcpu_set_immediate_exit(t->vcpu, false);
        kt_run_expect(t, &exit, EMBER_KVM_EXIT_HLT);
}

/* A second handle on the same vCPU through a duplicated fd sees the same state. */
static void t_adopt_vcpu_fd(void)
{
        struct kt *t = vcpu_only();
        struct ember_kvm_vcpu *other = NULL;
        struct kvm_regs regs;
        int fd = fcntl(ember_kvm_vcpu_fd(t->vcpu), F_DUPFD_CLOEXEC, 0);

        REQUIRE(fd >= 0);
        KT_VM_OK(t, ember_kvm_vcpu_adopt(t->vm, fd, &other));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_regs(t->vcpu, &regs));
        regs.rbx = 0xb0b;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_regs(t->vcpu, &regs));
        memset(&regs, 0, sizeof(regs));
        CHECK_EQ(ember_kvm_vcpu_get_regs(other, &regs), 0);
        CHECK_EQ(regs.rbx, 0xb0b);
        CHECK(ember_kvm_vcpu_run_page(other) != NULL);
        ember_kvm_vcpu_close(other);
}

/* SPLIT_IRQCHIP on the VM, then HYPERV_SYNIC on the vCPU (kvm-ioctls' vCPU enable_cap). */
static void t_vcpu_enable_cap(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_enable_cap split = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {24}};
        struct kvm_enable_cap synic = {.cap = KVM_CAP_HYPERV_SYNIC};

        KT_NEED_CAP(t, KVM_CAP_SPLIT_IRQCHIP);
        KT_NEED_CAP(t, KVM_CAP_HYPERV_SYNIC);
        KT_VM_OK(t, ember_kvm_vm_enable_cap(t->vm, &split));
        kt_create_vcpu(t);
        KT_VCPU_OK(t, ember_kvm_vcpu_enable_cap(t->vcpu, &synic));
}

int main(void)
{
        /* First: it needs a process without vCPUs to fork from. */
        T_RUN(t_xsave2_amx_sized);
        T_RUN(t_regs_sregs_roundtrip);
        T_RUN(t_fpu_roundtrip);
        T_RUN(t_lapic_roundtrip);
        T_RUN(t_msrs_roundtrip);
        T_RUN(t_msrs_at_the_bound);
        T_RUN(t_cpuid2_roundtrip);
        T_RUN(t_xsave_xcrs_roundtrip);
        T_RUN(t_xsave2_roundtrip);
        T_RUN(t_nested_state_roundtrip);
        T_RUN(t_debugregs_events_mp_state);
        T_RUN(t_tsc_khz);
        T_RUN(t_kvmclock_ctrl);
        T_RUN(t_translate_real_mode);
        T_RUN(t_immediate_exit);
        T_RUN(t_adopt_vcpu_fd);
        T_RUN(t_vcpu_enable_cap);
        kt_release();
        return T_DONE();
}
