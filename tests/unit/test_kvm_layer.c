/* ember's KVM layer without /dev/kvm: name tables, exit decoding on a synthetic run area, host
 * detection on fake /proc and /sys files, bad fds (-EBADF with the ioctl named, the 4/32
 * defaults), and the checks made before any syscall (-ENOMEM, -EINVAL, -EIO). */
#include <limits.h>
#include <stdalign.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ember/kvm.h"
#include "kvm/kvm_internal.h"
#include "test.h"

static void t_exit_reason_names(void)
{
        static const struct {
                uint32_t reason;
                const char *name;
        } known[] = {
#define X(r) {KVM_EXIT_##r, "KVM_EXIT_" #r}
            X(UNKNOWN),
            X(EXCEPTION),
            X(IO),
            X(HYPERCALL),
            X(DEBUG),
            X(HLT),
            X(MMIO),
            X(IRQ_WINDOW_OPEN),
            X(SHUTDOWN),
            X(FAIL_ENTRY),
            X(INTR),
            X(SET_TPR),
            X(TPR_ACCESS),
            X(S390_SIEIC),
            X(S390_RESET),
            X(DCR),
            X(NMI),
            X(INTERNAL_ERROR),
            X(OSI),
            X(PAPR_HCALL),
            X(S390_UCONTROL),
            X(WATCHDOG),
            X(S390_TSCH),
            X(EPR),
            X(SYSTEM_EVENT),
            X(S390_STSI),
            X(IOAPIC_EOI),
            X(HYPERV),
            X(ARM_NISV),
            X(X86_RDMSR),
            X(X86_WRMSR),
            X(DIRTY_RING_FULL),
            X(AP_RESET_HOLD),
            X(X86_BUS_LOCK),
            X(XEN),
            X(RISCV_SBI),
            X(RISCV_CSR),
            X(NOTIFY),
#ifdef KVM_EXIT_LOONGARCH_IOCSR
            X(LOONGARCH_IOCSR),
#endif
#ifdef KVM_EXIT_MEMORY_FAULT
            X(MEMORY_FAULT),
#endif
#ifdef KVM_EXIT_TDX
            X(TDX),
#endif
#undef X
        };
        uint32_t highest = 0;

        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
                CHECK_STR(ember_kvm_exit_reason_name(known[i].reason), known[i].name);
                if (known[i].reason > highest)
                        highest = known[i].reason;
        }
        /* No gap below the highest reason this header defines. */
        for (uint32_t r = 0; r <= highest; r++)
                CHECK(strcmp(ember_kvm_exit_reason_name(r), "unsupported") != 0);
        /* Reasons newer than some headers. */
        CHECK_STR(ember_kvm_exit_reason_name(38), "KVM_EXIT_LOONGARCH_IOCSR");
        CHECK_STR(ember_kvm_exit_reason_name(39), "KVM_EXIT_MEMORY_FAULT");
        CHECK_STR(ember_kvm_exit_reason_name(40), "KVM_EXIT_TDX");
        CHECK_STR(ember_kvm_exit_reason_name(99), "unsupported");
        CHECK_STR(ember_kvm_exit_reason_name(UINT32_MAX), "unsupported");
}

static void t_errno_names(void)
{
        CHECK_STR(ember_kvm_errno_name(EINVAL), "EINVAL");
        CHECK_STR(ember_kvm_errno_name(-EINVAL), "EINVAL");
        CHECK_STR(ember_kvm_errno_name(-EBADF), "EBADF");
        CHECK_STR(ember_kvm_errno_name(ENOMEM), "ENOMEM");
        CHECK_STR(ember_kvm_errno_name(E2BIG), "E2BIG");
        CHECK_STR(ember_kvm_errno_name(EEXIST), "EEXIST");
        CHECK_STR(ember_kvm_errno_name(EAGAIN), "EAGAIN");
        CHECK_STR(ember_kvm_errno_name(EOPNOTSUPP), "EOPNOTSUPP");
        CHECK_STR(ember_kvm_errno_name(EHWPOISON), "EHWPOISON");
        CHECK_STR(ember_kvm_errno_name(0), "OK");
        CHECK_STR(ember_kvm_errno_name(9999), "unknown errno");
        CHECK_STR(ember_kvm_errno_name(INT_MIN), "unknown errno");
        /* Every errno up to the last one Linux defines has a name. */
        for (int e = 1; e <= EHWPOISON; e++)
                if (e != 41 && e != 58) /* unused numbers */
                        CHECK(ember_kvm_errno_name(e)[0] == 'E');
}

/* A synthetic run area the size the kernel maps (3 pages). */
static alignas(4096) uint8_t run_area[3 * 4096];

static struct kvm_run *fresh_run(uint32_t reason)
{
        struct kvm_run *run = (struct kvm_run *)run_area;

        memset(run_area, 0, sizeof(run_area));
        run->exit_reason = reason;
        return run;
}

static void t_decode_io(void)
{
        struct kvm_run *run = fresh_run(KVM_EXIT_IO);
        struct ember_kvm_exit exit;
        char desc[128];

        run->io.direction = KVM_EXIT_IO_OUT;
        run->io.size = 2;
        run->io.port = 0x3f8;
        run->io.count = 3;
        run->io.data_offset = 4096;
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_IO);
        CHECK_EQ(exit.reason, KVM_EXIT_IO);
        CHECK_EQ(exit.u.io.port, 0x3f8);
        CHECK_EQ(exit.u.io.size, 2);
        CHECK_EQ(exit.u.io.count, 3);
        CHECK(exit.u.io.data == run_area + 4096);
        ember_kvm_exit_describe(&exit, desc, sizeof(desc));
        CHECK_STR(desc, "KVM_EXIT_IO out port 0x3f8 size 2 count 3");

        /* What the kernel must never report is refused, not followed. */
        run->io.direction = 2;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), -EINVAL);
        run->io.direction = KVM_EXIT_IO_IN;
        run->io.size = 3;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), -EINVAL);
        run->io.size = 4;
        run->io.data_offset = sizeof(run_area) - 8;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), -EINVAL);
        run->io.data_offset = UINT64_MAX - 4;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), -EINVAL);
        run->io.data_offset = sizeof(run_area) - 12;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        run->io.count = 0;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), -EINVAL);
}

static void t_decode_mmio(void)
{
        struct kvm_run *run = fresh_run(KVM_EXIT_MMIO);
        struct ember_kvm_exit exit;
        char desc[128];

        run->mmio.phys_addr = 0xd0000000;
        run->mmio.len = 4;
        run->mmio.is_write = 1;
        memcpy(run->mmio.data, "\x01\x02\x03\x04", 4);
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_MMIO);
        CHECK(exit.u.mmio.is_write);
        CHECK_EQ(exit.u.mmio.gpa, 0xd0000000);
        CHECK_EQ(exit.u.mmio.len, 4);
        CHECK(exit.u.mmio.data == run->mmio.data);
        ember_kvm_exit_describe(&exit, desc, sizeof(desc));
        CHECK_STR(desc, "KVM_EXIT_MMIO write gpa 0xd0000000 len 4");
        run->mmio.len = 9;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), -EINVAL);
        run->mmio.len = 0;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), -EINVAL);
}

/* The only exit reported with -1: EFAULT or EHWPOISON and exit_reason MEMORY_FAULT. */
static void t_decode_memory_fault(void)
{
        struct kvm_run *run = fresh_run(EMBER_KVM_EXIT_MEMORY_FAULT);
        const uint64_t fault[3] = {8, 0x123000, 0x1000}; /* flags (private), gpa, size */
        struct ember_kvm_exit exit;
        char desc[128];

        memcpy(run->padding, fault, sizeof(fault));
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), -EFAULT, &exit), 0);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_MEMORY_FAULT);
        CHECK_EQ(exit.u.memory_fault.flags, 8);
        CHECK_EQ(exit.u.memory_fault.gpa, 0x123000);
        CHECK_EQ(exit.u.memory_fault.size, 0x1000);
        ember_kvm_exit_describe(&exit, desc, sizeof(desc));
        CHECK_STR(desc, "KVM_EXIT_MEMORY_FAULT gpa 0x123000 size 0x1000 flags 0x8");
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), -EHWPOISON, &exit), 0);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_MEMORY_FAULT);
        /* Other errors, or EFAULT with another reason, stay errors. */
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), -EINVAL, &exit), -EINVAL);
        run->exit_reason = KVM_EXIT_MMIO;
        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), -EFAULT, &exit), -EFAULT);
}

static void t_decode_intr_and_unsupported(void)
{
        struct kvm_run *run = fresh_run(KVM_EXIT_INTR);
        struct ember_kvm_exit exit;
        char desc[64];

        CHECK_EQ(kvm_exit_decode(run, sizeof(run_area), -EINTR, &exit), -EINTR);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_INTR);

        run = fresh_run(99);
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_UNSUPPORTED);
        CHECK_EQ(exit.reason, 99);
        ember_kvm_exit_describe(&exit, desc, sizeof(desc));
        CHECK_STR(desc, "unsupported 99");
        run = fresh_run(UINT32_MAX);
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.kind, EMBER_KVM_EXIT_UNSUPPORTED);
}

/* Every reason KVM defines decodes to its own kind (with a well-formed payload). */
static void t_decode_every_reason(void)
{
        for (uint32_t r = 0; r <= EMBER_KVM_EXIT_TDX; r++) {
                struct kvm_run *run = fresh_run(r);
                struct ember_kvm_exit exit;
                char desc[128];

                run->io.direction = KVM_EXIT_IO_OUT; /* a valid payload for IO and MMIO */
                run->io.size = 1;
                run->io.count = 1;
                run->io.data_offset = 4096;
                if (r == KVM_EXIT_MMIO)
                        run->mmio.len = 1;
                REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
                CHECK_EQ(exit.kind, r);
                CHECK_EQ(exit.reason, r);
                CHECK(ember_kvm_exit_describe(&exit, desc, sizeof(desc)) > 0);
                CHECK(strncmp(desc, ember_kvm_exit_reason_name(r),
                              strlen(ember_kvm_exit_reason_name(r))) == 0);
        }
}

static void t_decode_payloads(void)
{
        struct kvm_run *run = fresh_run(KVM_EXIT_INTERNAL_ERROR);
        struct ember_kvm_exit exit;
        char desc[512];

        run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
        run->internal.ndata = 1000; /* clamped to the 16 words there are */
        run->internal.data[0] = 0xabc;
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.u.internal.suberror, 1);
        CHECK_EQ(exit.u.internal.ndata, 16);
        CHECK_EQ(exit.u.internal.data[0], 0xabc);
        ember_kvm_exit_describe(&exit, desc, sizeof(desc));
        CHECK(strncmp(desc, "KVM_EXIT_INTERNAL_ERROR suberror 1 0xabc 0x0", 44) == 0);

        run = fresh_run(KVM_EXIT_SYSTEM_EVENT);
        run->system_event.type = KVM_SYSTEM_EVENT_RESET;
        run->system_event.ndata = 17;
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.u.system_event.type, KVM_SYSTEM_EVENT_RESET);
        CHECK_EQ(exit.u.system_event.ndata, 16);

        run = fresh_run(KVM_EXIT_DEBUG);
        run->debug.arch.exception = 1;
        run->debug.arch.pc = 0x1003;
        run->debug.arch.dr6 = 0xffff4ff0;
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.u.debug.pc, 0x1003);
        CHECK_EQ(exit.u.debug.dr6, 0xffff4ff0);

        run = fresh_run(KVM_EXIT_X86_RDMSR);
        run->msr.index = 0x474f4f00;
        run->msr.reason = KVM_MSR_EXIT_REASON_UNKNOWN;
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.u.msr.index, 0x474f4f00);
        *exit.u.msr.data = 42;
        *exit.u.msr.error = 1;
        CHECK_EQ(run->msr.data, 42);
        CHECK_EQ(run->msr.error, 1);

        run = fresh_run(KVM_EXIT_HYPERCALL);
        run->hypercall.nr = 12;
        run->hypercall.args[5] = 6;
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        CHECK_EQ(exit.u.hypercall.nr, 12);
        CHECK_EQ(exit.u.hypercall.args[5], 6);
        *exit.u.hypercall.ret = 7;
        CHECK_EQ(run->hypercall.ret, 7);

        run = fresh_run(KVM_EXIT_FAIL_ENTRY);
        run->fail_entry.hardware_entry_failure_reason = 0x80000021;
        run->fail_entry.cpu = 1;
        REQUIRE_EQ(kvm_exit_decode(run, sizeof(run_area), 0, &exit), 0);
        ember_kvm_exit_describe(&exit, desc, sizeof(desc));
        CHECK_STR(desc, "KVM_EXIT_FAIL_ENTRY hardware reason 0x80000021 cpu 1");
}

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
        char path[160];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        f = fopen(path, "w");
        REQUIRE(f != NULL);
        fputs(text, f);
        fclose(f);
}

static enum ember_kvm_host_virt virt_of(const char *cpuinfo, const char *modules)
{
        char c[160], m[160];

        snprintf(c, sizeof(c), "%s/%s", tmpdir, cpuinfo);
        snprintf(m, sizeof(m), "%s/%s", tmpdir, modules);
        return ember_kvm_host_virt_at(c, m);
}

static void t_host_virt(void)
{
        char path[160];

        snprintf(tmpdir, sizeof(tmpdir), "/tmp/ember-kvm-host-XXXXXX");
        REQUIRE(mkdtemp(tmpdir) != NULL);
        snprintf(path, sizeof(path), "%s/modules", tmpdir);
        REQUIRE(mkdir(path, 0700) == 0);
        snprintf(path, sizeof(path), "%s/modules-pvm", tmpdir);
        REQUIRE(mkdir(path, 0700) == 0);
        snprintf(path, sizeof(path), "%s/modules-pvm/kvm_pvm", tmpdir);
        REQUIRE(mkdir(path, 0700) == 0);
        write_file("amd", "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                          "flags\t\t: fpu vme de pse tsc msr pae svm extapic\n\n"
                          "processor\t: 1\nflags\t\t: fpu svm\n");
        write_file("intel", "processor\t: 0\nflags\t\t: fpu vme vmx est tm2\n");
        write_file("none", "processor\t: 0\nflags\t\t: fpu vme svm_lock vmxon hypervisor\n"
                           "svm flags\t: npt\n");

        CHECK_EQ(virt_of("amd", "modules"), EMBER_KVM_HOST_SVM);
        CHECK_EQ(virt_of("intel", "modules"), EMBER_KVM_HOST_VMX);
        CHECK_EQ(virt_of("amd", "modules-pvm"), EMBER_KVM_HOST_SVM);
        CHECK_EQ(virt_of("none", "modules-pvm"), EMBER_KVM_HOST_PVM);
        CHECK_EQ(virt_of("none", "modules"), EMBER_KVM_HOST_UNKNOWN);
        CHECK_EQ(virt_of("missing", "modules"), EMBER_KVM_HOST_UNKNOWN);

        CHECK_STR(ember_kvm_host_virt_name(EMBER_KVM_HOST_SVM), "hardware (svm)");
        CHECK_STR(ember_kvm_host_virt_name(EMBER_KVM_HOST_VMX), "hardware (vmx)");
        CHECK_STR(ember_kvm_host_virt_name(EMBER_KVM_HOST_PVM), "software hypervisor (PVM)");
        CHECK_STR(ember_kvm_host_virt_name(EMBER_KVM_HOST_UNKNOWN), "unknown");
        CHECK_EQ(ember_kvm_host_virt_is_hardware(EMBER_KVM_HOST_SVM), 1);
        CHECK_EQ(ember_kvm_host_virt_is_hardware(EMBER_KVM_HOST_PVM), 0);
        /* The real host: any answer, never a failure. */
        CHECK((int)ember_kvm_host_virt() >= 0);

        const char *names[] = {"amd",         "intel",  "none", "modules-pvm/kvm_pvm",
                               "modules-pvm", "modules"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
                remove(path);
        }
        rmdir(tmpdir);
}

/* A system handle over fd -2, as kvm-ioctls' bad-fd tests: every ioctl gives -EBADF with the
 * ioctl named, the limits fall back to 4 and 32, the bounds checks come first. */
static void t_bad_fd_system(void)
{
        static struct kvm_cpuid_entry2 cpuid[EMBER_KVM_MAX_CPUID_ENTRIES + 1];
        static struct kvm_msr_entry msrs[EMBER_KVM_MAX_MSR_ENTRIES + 1];
        uint32_t idx[EMBER_KVM_MAX_MSR_INDICES + 1];
        struct ember_kvm *kvm = NULL;
        struct ember_kvm_vm *vm = (struct ember_kvm_vm *)run_area; /* must become NULL */

        REQUIRE_EQ(ember_kvm_adopt(-2, &kvm), 0);
        CHECK_STR(ember_kvm_last_error(kvm), "");
        CHECK_EQ(ember_kvm_fd(kvm), -2);
        CHECK_EQ(ember_kvm_api_version(kvm), -EBADF);
        CHECK_STR(ember_kvm_last_error(kvm), "KVM_GET_API_VERSION: Bad file descriptor");
        CHECK_EQ(ember_kvm_check_extension_int(kvm, KVM_CAP_IRQCHIP), -EBADF);
        CHECK_STR(ember_kvm_last_error(kvm), "KVM_CHECK_EXTENSION: Bad file descriptor");
        CHECK_EQ(ember_kvm_check_extension(kvm, KVM_CAP_IRQCHIP), 0);
        CHECK_EQ(ember_kvm_vcpu_mmap_size(kvm), -EBADF);
        CHECK_EQ(ember_kvm_nr_vcpus(kvm), 4);
        CHECK_EQ(ember_kvm_nr_memslots(kvm), 32);
        CHECK_EQ(ember_kvm_max_vcpus(kvm), 4);
        CHECK_EQ(ember_kvm_max_vcpu_id(kvm), 4);

        CHECK_EQ(ember_kvm_get_supported_cpuid(kvm, cpuid, 257), -ENOMEM);
        CHECK_STR(ember_kvm_last_error(kvm),
                  "KVM_GET_SUPPORTED_CPUID: 257 CPUID entries, at most 256");
        CHECK_EQ(ember_kvm_get_supported_cpuid(kvm, cpuid, 256), -EBADF);
        CHECK_EQ(ember_kvm_get_emulated_cpuid(kvm, cpuid, 257), -ENOMEM);
        CHECK_EQ(ember_kvm_get_emulated_cpuid(kvm, cpuid, 10), -EBADF);
        CHECK_STR(ember_kvm_last_error(kvm), "KVM_GET_EMULATED_CPUID: Bad file descriptor");
        CHECK_EQ(ember_kvm_get_supported_cpuid(kvm, NULL, 4), -EINVAL);
        CHECK_EQ(ember_kvm_get_msr_index_list(kvm, idx, 257), -ENOMEM);
        CHECK_EQ(ember_kvm_get_msr_index_list(kvm, idx, 256), -EBADF);
        CHECK_EQ(ember_kvm_get_msr_feature_index_list(kvm, idx, 257), -ENOMEM);
        CHECK_EQ(ember_kvm_get_msr_feature_index_list(kvm, idx, 2), -EBADF);
        CHECK_STR(ember_kvm_last_error(kvm), "KVM_GET_MSR_FEATURE_INDEX_LIST: Bad file descriptor");
        CHECK_EQ(ember_kvm_get_feature_msrs(kvm, msrs, 256), -ENOMEM);
        CHECK_STR(ember_kvm_last_error(kvm), "KVM_GET_MSRS: 256 MSRs, at most 255");
        CHECK_EQ(ember_kvm_get_feature_msrs(kvm, msrs, 255), -EBADF);

        CHECK_EQ(ember_kvm_vm_create(kvm, &vm), -EBADF);
        CHECK(vm == NULL);
        CHECK_STR(ember_kvm_last_error(kvm), "KVM_CREATE_VM: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_create_type(kvm, 0, NULL), -EINVAL);
        CHECK_EQ(ember_kvm_vm_adopt(kvm, -2, &vm), -EBADF);
        CHECK_STR(ember_kvm_last_error(kvm), "KVM_GET_VCPU_MMAP_SIZE: Bad file descriptor");
        CHECK_EQ(ember_kvm_check_required_caps(kvm), -EBADF);
        ember_kvm_close(kvm);
        ember_kvm_close(NULL);
}

/* A VM handle over fd -2 (built directly: creating one needs KVM). */
static void t_bad_fd_vm(void)
{
        static struct kvm_irq_routing_entry routes[EMBER_KVM_MAX_IRQ_ROUTES + 1];
        struct ember_kvm_vm vm = {.fd = -2, .run_size = sizeof(run_area)};
        struct kvm_userspace_memory_region region = {.memory_size = 4096};
        struct ember_kvm_ioevent ev = {.addr = 0x700, .len = 3, .pio = true};
        struct ember_kvm_vcpu *vcpu = (struct ember_kvm_vcpu *)run_area;
        struct ember_kvm_device *dev = NULL;
        struct kvm_create_device cd = {.type = KVM_DEV_TYPE_VFIO};
        struct kvm_irqchip chip = {0};
        uint64_t bitmap[1];

        CHECK_EQ(ember_kvm_vm_set_user_memory_region(&vm, &region), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_SET_USER_MEMORY_REGION: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_check_extension_int(&vm, KVM_CAP_IRQCHIP), -EBADF);
        CHECK_EQ(ember_kvm_vm_check_extension(&vm, KVM_CAP_IRQCHIP), 0);
        CHECK_EQ(ember_kvm_vm_set_tss_address(&vm, 0xfffbd000), -EBADF);
        CHECK_EQ(ember_kvm_vm_set_identity_map_address(&vm, 0xfffbc000), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_SET_IDENTITY_MAP_ADDR: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_create_irqchip(&vm), -EBADF);
        CHECK_EQ(ember_kvm_vm_get_irqchip(&vm, &chip), -EBADF);
        CHECK_EQ(ember_kvm_vm_set_irq_line(&vm, 4, true), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_IRQ_LINE: Bad file descriptor");

        /* ioeventfd descriptions are checked first. */
        CHECK_EQ(ember_kvm_vm_register_ioevent(&vm, 5, &ev), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_IOEVENTFD: length 3 is not 0, 1, 2, 4 or 8");
        ev.len = 0;
        ev.datamatch = true;
        CHECK_EQ(ember_kvm_vm_register_ioevent(&vm, 5, &ev), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_IOEVENTFD: datamatch needs a length");
        ev.len = 1;
        ev.value = 0x100;
        CHECK_EQ(ember_kvm_vm_register_ioevent(&vm, 5, &ev), -EINVAL);
        CHECK_EQ(ember_kvm_vm_register_ioevent(&vm, 5, NULL), -EINVAL);
        ev.value = 0xff;
        CHECK_EQ(ember_kvm_vm_register_ioevent(&vm, 5, &ev), -EBADF);
        ev.len = 8;
        ev.value = UINT64_MAX;
        CHECK_EQ(ember_kvm_vm_unregister_ioevent(&vm, 5, &ev), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_IOEVENTFD: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_register_irqfd(&vm, 5, 4), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_IRQFD: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_register_coalesced(&vm, true, 0x2c, 1), -EBADF);

        CHECK_EQ(ember_kvm_vm_set_gsi_routing(&vm, routes, EMBER_KVM_MAX_IRQ_ROUTES + 1), -ENOMEM);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_SET_GSI_ROUTING: 1025 routes, at most 1024");
        CHECK_EQ(ember_kvm_vm_set_gsi_routing(&vm, routes, EMBER_KVM_MAX_IRQ_ROUTES), -EBADF);

        /* The kernel refused the region above: the slot is unknown. */
        CHECK_EQ(ember_kvm_vm_get_dirty_log(&vm, 0, 4096, bitmap, 1), -ENOENT);
        CHECK_STR(ember_kvm_vm_last_error(&vm),
                  "KVM_GET_DIRTY_LOG: slot 0 was not registered through this handle");
        CHECK_EQ(ember_kvm_vm_clear_dirty_log(&vm, 0, 0, 64, bitmap), -EBADF);
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(&vm, NULL), -EINVAL);

        struct kvm_userspace_memory_region2 region2 = {.memory_size = 4096};
        CHECK_EQ(ember_kvm_vm_set_user_memory_region2(&vm, &region2), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_SET_USER_MEMORY_REGION2: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_set_user_memory_region2(&vm, NULL), -EINVAL);
        CHECK_EQ(ember_kvm_vm_create_guest_memfd(&vm, 4096, 0), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_CREATE_GUEST_MEMFD: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_set_memory_attributes(&vm, 0, 4096, KVM_MEMORY_ATTRIBUTE_PRIVATE),
                 -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_SET_MEMORY_ATTRIBUTES: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_memory_encrypt_op(&vm, NULL), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_MEMORY_ENCRYPT_OP: Bad file descriptor");
        struct kvm_sev_cmd sev = {.id = KVM_SEV_INIT};
        CHECK_EQ(ember_kvm_vm_sev_op(&vm, &sev), -EBADF);
        CHECK_EQ(ember_kvm_vm_sev_op(&vm, NULL), -EINVAL);
        CHECK_EQ(ember_kvm_vm_register_enc_region(&vm, 0x10000, 4096), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm),
                  "KVM_MEMORY_ENCRYPT_REG_REGION: Bad file descriptor");
        CHECK_EQ(ember_kvm_vm_unregister_enc_region(&vm, 0x10000, 4096), -EBADF);
        CHECK_STR(ember_kvm_vm_last_error(&vm),
                  "KVM_MEMORY_ENCRYPT_UNREG_REGION: Bad file descriptor");

        CHECK_EQ(ember_kvm_vm_create_vcpu(&vm, 0, &vcpu), -EBADF);
        CHECK(vcpu == NULL);
        CHECK_STR(ember_kvm_vm_last_error(&vm), "KVM_CREATE_VCPU: Bad file descriptor");
        CHECK_EQ(ember_kvm_vcpu_adopt(&vm, -2, &vcpu), -EBADF);
        CHECK(strncmp(ember_kvm_vm_last_error(&vm), "mmap of the vCPU run area", 25) == 0);
        CHECK_EQ(ember_kvm_vm_create_device(&vm, &cd, &dev), -EBADF);
        CHECK_EQ(ember_kvm_vm_create_device(&vm, NULL, &dev), -EINVAL);
        CHECK_EQ(ember_kvm_vm_create_device(&vm, &cd, NULL), -EINVAL);
        cd.flags = KVM_CREATE_DEVICE_TEST;
        CHECK_EQ(ember_kvm_vm_create_device(&vm, &cd, NULL), -EBADF);
        free(vm.slots); /* room reserved by the refused regions */
}

/* The dirty bitmap is sized from the slot as registered, not from what the caller says. */
static void t_dirty_log_slot_size(void)
{
        struct kvm_slot_size slots[2] = {{.slot = 0, .size = 65 * 4096},
                                         {.slot = 1u << 16 | 2, .size = 4096}};
        struct ember_kvm_vm vm = {.fd = -2, .slots = slots, .nslots = 2, .slots_cap = 2};
        uint64_t bitmap[2];

        CHECK_EQ(ember_kvm_vm_get_dirty_log(&vm, 0, 4096, bitmap, 1), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(&vm),
                  "KVM_GET_DIRTY_LOG: slot 0 is 266240 bytes, not 4096");
        CHECK_EQ(ember_kvm_vm_get_dirty_log(&vm, 0, 65 * 4096, bitmap, 1), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(&vm),
                  "KVM_GET_DIRTY_LOG: 266240-byte slot needs 2 bitmap words, got 1");
        CHECK_EQ(ember_kvm_vm_get_dirty_log(&vm, 0, 65 * 4096, NULL, 2), -EINVAL);
        CHECK_EQ(ember_kvm_vm_get_dirty_log(&vm, 0, 65 * 4096, bitmap, 2), -EBADF);
        /* Slots are told apart by address space too. */
        CHECK_EQ(ember_kvm_vm_get_dirty_log(&vm, 2, 4096, bitmap, 1), -ENOENT);
        CHECK_EQ(ember_kvm_vm_get_dirty_log(&vm, 1u << 16 | 2, 4096, bitmap, 1), -EBADF);
}

/* A vCPU handle over fd -2 with no run area. */
static void t_bad_fd_vcpu(void)
{
        static struct kvm_cpuid_entry2 cpuid[EMBER_KVM_MAX_CPUID_ENTRIES + 1];
        static struct kvm_msr_entry msrs[EMBER_KVM_MAX_MSR_ENTRIES + 1];
        struct ember_kvm_vcpu vcpu = {.fd = -2};
        struct kvm_coalesced_mmio entry;
        struct kvm_regs regs;

        CHECK_EQ(ember_kvm_vcpu_get_regs(&vcpu, &regs), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_GET_REGS: Bad file descriptor");
        CHECK_EQ(ember_kvm_vcpu_get_cpuid2(&vcpu, cpuid, 257), -ENOMEM);
        CHECK_EQ(ember_kvm_vcpu_set_cpuid2(&vcpu, cpuid, 257), -ENOMEM);
        CHECK_EQ(ember_kvm_vcpu_set_cpuid2(&vcpu, cpuid, 1), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_SET_CPUID2: Bad file descriptor");
        CHECK_EQ(ember_kvm_vcpu_get_msrs(&vcpu, msrs, 256), -ENOMEM);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_GET_MSRS: 256 MSRs, at most 255");
        CHECK_EQ(ember_kvm_vcpu_set_msrs(&vcpu, msrs, 256), -ENOMEM);
        CHECK_EQ(ember_kvm_vcpu_set_msrs(&vcpu, msrs, 255), -EBADF);
        CHECK_EQ(ember_kvm_vcpu_set_msrs(&vcpu, NULL, 1), -EINVAL);
        CHECK_EQ(ember_kvm_vcpu_get_tsc_khz(&vcpu), -EBADF);
        CHECK_EQ(ember_kvm_vcpu_kvmclock_ctrl(&vcpu), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_KVMCLOCK_CTRL: Bad file descriptor");
        CHECK(ember_kvm_vcpu_coalesced_ring(&vcpu) == NULL);
        CHECK_EQ(ember_kvm_vcpu_coalesced_read(&vcpu, &entry), -EIO);
        CHECK_EQ(ember_kvm_vcpu_nmi(&vcpu), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_NMI: Bad file descriptor");
        CHECK_EQ(ember_kvm_vcpu_smi(&vcpu), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_SMI: Bad file descriptor");
}

/* XSAVE2 and nested-state buffers are checked against what the kernel will copy. */
static void t_vcpu_buffer_checks(void)
{
        static _Alignas(64) uint8_t buf[8192];
        struct kvm_xsave *x = (struct kvm_xsave *)buf;
        struct kvm_nested_state *st = (struct kvm_nested_state *)buf;
        struct ember_kvm_vcpu vcpu = {.fd = -2};

        CHECK_EQ(ember_kvm_vcpu_xsave2_size(&vcpu), 0);
        CHECK_EQ(ember_kvm_vcpu_get_xsave2(&vcpu, x, sizeof(buf)), -EOPNOTSUPP);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu),
                  "KVM_GET_XSAVE2: this KVM lacks KVM_CAP_XSAVE2");
        CHECK_EQ(ember_kvm_vcpu_set_xsave(&vcpu, x), -EBADF);
        vcpu.xsave2_size = 4096;
        CHECK_EQ(ember_kvm_vcpu_get_xsave2(&vcpu, x, 4095), -EINVAL);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu),
                  "KVM_GET_XSAVE2: a 4095-byte buffer, the state takes 4096");
        CHECK_EQ(ember_kvm_vcpu_get_xsave2(&vcpu, x, 4096), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_GET_XSAVE2: Bad file descriptor");
        CHECK_EQ(ember_kvm_vcpu_set_xsave2(&vcpu, x, 4096), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_SET_XSAVE: Bad file descriptor");
        CHECK_EQ(ember_kvm_vcpu_set_xsave(&vcpu, x), -EBADF);
        /* An AMX-sized state: the 4 KiB struct would be read past its end. */
        vcpu.xsave2_size = 8192 + 2752;
        CHECK_EQ(ember_kvm_vcpu_set_xsave(&vcpu, x), -EINVAL);
        CHECK(strstr(ember_kvm_vcpu_last_error(&vcpu), "use ember_kvm_vcpu_set_xsave2") != NULL);
        CHECK_EQ(ember_kvm_vcpu_set_xsave2(&vcpu, x, sizeof(buf)), -EINVAL);
        CHECK_EQ(ember_kvm_vcpu_get_xsave2(&vcpu, NULL, 1u << 20), -EINVAL);

        CHECK_EQ(ember_kvm_vcpu_get_nested_state(&vcpu, st, 127), -EINVAL);
        CHECK_EQ(ember_kvm_vcpu_get_nested_state(&vcpu, st, sizeof(buf)), -EBADF);
        CHECK_EQ(st->size, sizeof(buf)); /* the kernel is told the buffer's size */
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_GET_NESTED_STATE: Bad file descriptor");
        st->size = 128;
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(&vcpu, st, 127), -EINVAL);
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(&vcpu, st, 128), -EBADF);
        CHECK_STR(ember_kvm_vcpu_last_error(&vcpu), "KVM_SET_NESTED_STATE: Bad file descriptor");
        st->size = 127;
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(&vcpu, st, 128), -EINVAL);
        st->size = sizeof(buf) + 1;
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(&vcpu, st, sizeof(buf)), -EINVAL);
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(&vcpu, NULL, sizeof(buf)), -EINVAL);
}

/* An adopted device fd is owned by the handle, and used as is. */
static void t_device_adopt_bad_fd(void)
{
        struct kvm_device_attr attr = {.group = 1};
        struct ember_kvm_device *dev = (struct ember_kvm_device *)run_area; /* must become NULL */

        CHECK_EQ(ember_kvm_device_adopt(-2, NULL), -EINVAL);
        REQUIRE_EQ(ember_kvm_device_adopt(-2, &dev), 0);
        CHECK_EQ(ember_kvm_device_fd(dev), -2);
        CHECK_STR(ember_kvm_device_last_error(dev), "");
        CHECK_EQ(ember_kvm_device_has_attr(dev, &attr), -EBADF);
        CHECK_STR(ember_kvm_device_last_error(dev), "KVM_HAS_DEVICE_ATTR: Bad file descriptor");
        ember_kvm_device_close(dev);
}

/* The ring arithmetic: entries in one 4 KiB page, popping in order, wrapping. */
static void t_coalesced_ring_logic(void)
{
        struct kvm_coalesced_mmio_ring *ring = (struct kvm_coalesced_mmio_ring *)run_area;
        struct ember_kvm_vcpu vcpu = {.fd = -2, .ring = ring};
        struct kvm_coalesced_mmio entry;
        uint32_t n = kvm_coalesced_ring_entries(4096);

        CHECK_EQ(n, (4096 - 8) / 24);
        vcpu.ring_entries = n;
        memset(run_area, 0, sizeof(run_area));
        CHECK_EQ(ember_kvm_vcpu_coalesced_read(&vcpu, &entry), 0);
        ring->first = n - 1;
        ring->last = 1;
        ring->coalesced_mmio[n - 1].phys_addr = 0x10;
        ring->coalesced_mmio[0].phys_addr = 0x20;
        REQUIRE_EQ(ember_kvm_vcpu_coalesced_read(&vcpu, &entry), 1);
        CHECK_EQ(entry.phys_addr, 0x10);
        CHECK_EQ(ring->first, 0);
        REQUIRE_EQ(ember_kvm_vcpu_coalesced_read(&vcpu, &entry), 1);
        CHECK_EQ(entry.phys_addr, 0x20);
        CHECK_EQ(ember_kvm_vcpu_coalesced_read(&vcpu, &entry), 0);
        /* Indices outside the ring are refused. */
        ring->first = n;
        CHECK_EQ(ember_kvm_vcpu_coalesced_read(&vcpu, &entry), -EIO);
}

static void t_open_missing_device(void)
{
        struct ember_kvm *kvm = (struct ember_kvm *)run_area;

        CHECK_EQ(ember_kvm_open_path("/nonexistent/kvm", true, &kvm), -ENOENT);
        CHECK(kvm == NULL);
        CHECK_EQ(ember_kvm_open_raw("/nonexistent/kvm", false), -ENOENT);
        CHECK_EQ(ember_kvm_open_path(NULL, true, NULL), -EINVAL);
        CHECK_EQ(ember_kvm_adopt(3, NULL), -EINVAL);
}

int main(void)
{
        T_RUN(t_exit_reason_names);
        T_RUN(t_errno_names);
        T_RUN(t_decode_io);
        T_RUN(t_decode_mmio);
        T_RUN(t_decode_memory_fault);
        T_RUN(t_decode_intr_and_unsupported);
        T_RUN(t_decode_every_reason);
        T_RUN(t_decode_payloads);
        T_RUN(t_host_virt);
        T_RUN(t_bad_fd_system);
        T_RUN(t_bad_fd_vm);
        T_RUN(t_bad_fd_vcpu);
        T_RUN(t_dirty_log_slot_size);
        T_RUN(t_vcpu_buffer_checks);
        T_RUN(t_device_adopt_bad_fd);
        T_RUN(t_coalesced_ring_logic);
        T_RUN(t_open_missing_device);
        return T_DONE();
}
