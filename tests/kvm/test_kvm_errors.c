/* Error paths of ember's KVM layer on a real /dev/kvm: each failure comes back as -errno and
 * leaves a detail naming the ioctl on the handle. (Bad fds and the checks made before any
 * syscall are covered without KVM in tests/unit/test_kvm_layer.c.) */
#include "kvm_test_util.h"

static struct kvm_userspace_memory_region region_at(struct kt *t, uint32_t slot, uint64_t gpa,
                                                    uint64_t size)
{
        return (struct kvm_userspace_memory_region){
            .slot = slot,
            .guest_phys_addr = gpa,
            .memory_size = size,
            .userspace_addr = (uint64_t)(uintptr_t)t->mem,
        };
}

static void t_overlapping_slot(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_userspace_memory_region region;

        kt_add_memory(t, 0x100000, 0x10000, 0);
        region = region_at(t, 1, 0x108000, 0x10000);
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(t->vm, &region), -EEXIST);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_SET_USER_MEMORY_REGION: File exists");
}

static void t_bad_slot(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_userspace_memory_region region;

        kt_add_memory(t, 0x100000, 0x10000, 0);
        /* A slot number at the limit. */
        region = region_at(t, (uint32_t)ember_kvm_nr_memslots(t->kvm), 0x200000, 0x10000);
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(t->vm, &region), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_SET_USER_MEMORY_REGION: Invalid argument");
        /* An address space that does not exist. */
        region = region_at(t, 5u << 16, 0x200000, 0x10000);
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(t->vm, &region), -EINVAL);
        /* Unaligned guest address, size, host address. */
        region = region_at(t, 1, 0x200800, 0x10000);
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(t->vm, &region), -EINVAL);
        region = region_at(t, 1, 0x200000, 0x10800);
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(t->vm, &region), -EINVAL);
        region = region_at(t, 1, 0x200000, 0x1000);
        region.userspace_addr += 8;
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(t->vm, &region), -EINVAL);
        /* Size 0 for a slot that does not exist (a deletion of nothing). */
        region = region_at(t, 7, 0x300000, 0);
        CHECK(ember_kvm_vm_set_user_memory_region(t->vm, &region) <= 0);
        /* Unknown flags. */
        region = region_at(t, 1, 0x200000, 0x1000);
        region.flags = 1u << 20;
        CHECK_EQ(ember_kvm_vm_set_user_memory_region(t->vm, &region), -EINVAL);
}

/* More than 256 entries: -ENOMEM before any syscall, on a working fd. */
static void t_too_many_cpuid_entries(void)
{
        static struct kvm_cpuid_entry2 entries[EMBER_KVM_MAX_CPUID_ENTRIES + 1];
        struct kt *t = kt_open_vm();

        CHECK_EQ(ember_kvm_get_supported_cpuid(t->kvm, entries, 257), -ENOMEM);
        CHECK_STR(ember_kvm_last_error(t->kvm),
                  "KVM_GET_SUPPORTED_CPUID: 257 CPUID entries, at most 256");
        CHECK_EQ(ember_kvm_get_emulated_cpuid(t->kvm, entries, 1000), -ENOMEM);
        kt_create_vcpu(t);
        CHECK_EQ(ember_kvm_vcpu_set_cpuid2(t->vcpu, entries, 257), -ENOMEM);
        CHECK_EQ(ember_kvm_vcpu_get_cpuid2(t->vcpu, entries, 257), -ENOMEM);
        CHECK_STR(ember_kvm_vcpu_last_error(t->vcpu),
                  "KVM_GET_CPUID2: 257 CPUID entries, at most 256");
        /* 0 entries is a kernel error (E2BIG), not ember's. */
        CHECK_EQ(ember_kvm_get_supported_cpuid(t->kvm, entries, 0), -E2BIG);
}

static void t_unknown_capability(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_enable_cap cap = {.cap = 696969};

        CHECK_EQ(ember_kvm_check_extension_int(t->kvm, 696969), 0);
        CHECK_EQ(ember_kvm_vm_check_extension_int(t->vm, 696969), 0);
        CHECK_EQ(ember_kvm_vm_enable_cap(t->vm, &cap), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_ENABLE_CAP: Invalid argument");
        kt_create_vcpu(t);
        CHECK_EQ(ember_kvm_vcpu_enable_cap(t->vcpu, &cap), -EINVAL);
}

static void t_bad_vcpu_id(void)
{
        struct kt *t = kt_open_vm();
        struct ember_kvm_vcpu *vcpu = NULL;

        CHECK_EQ(
            ember_kvm_vm_create_vcpu(t->vm, (unsigned long)ember_kvm_max_vcpu_id(t->kvm), &vcpu),
            -EINVAL);
        CHECK(vcpu == NULL);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_CREATE_VCPU: Invalid argument");
        CHECK_EQ(ember_kvm_vm_create_vcpu(t->vm, 65537, &vcpu), -EINVAL);
}

/* Calls that need the in-kernel irqchip, made without it. */
static void t_no_irqchip(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_pit_state2 pit;
        struct kvm_lapic_state lapic;
        struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_PIC_MASTER};

        /* No PIT either. (Creating one without the irqchip is refused only by newer kernels:
         * Debian 12's 6.1 accepts it, so that is not asserted.) */
        CHECK_EQ(ember_kvm_vm_get_pit2(t->vm, &pit), -ENXIO);
        CHECK(strncmp(ember_kvm_vm_last_error(t->vm), "KVM_GET_PIT2: ", 14) == 0);
        CHECK(ember_kvm_vm_get_irqchip(t->vm, &chip) < 0);
        CHECK(ember_kvm_vm_set_irq_line(t->vm, 4, true) < 0);
        CHECK(strncmp(ember_kvm_vm_last_error(t->vm), "KVM_IRQ_LINE: ", 14) == 0);
        kt_create_vcpu(t);
        CHECK(ember_kvm_vcpu_get_lapic(t->vcpu, &lapic) < 0);
        CHECK(strncmp(ember_kvm_vcpu_last_error(t->vcpu), "KVM_GET_LAPIC: ", 15) == 0);
        /* The irqchip must come before the vCPUs. */
        CHECK(ember_kvm_vm_create_irqchip(t->vm) < 0);
}

static void t_dirty_log_errors(void)
{
        struct kt *t = kt_open_vm();
        uint64_t bitmap[2];

        kt_add_memory(t, 0x100000, 0x10000, 0);
        /* No logging on the slot. */
        CHECK_EQ(ember_kvm_vm_get_dirty_log(t->vm, 0, 0x10000, bitmap, 1), -ENOENT);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_GET_DIRTY_LOG: No such file or directory");
        /* A slot this handle did not register. */
        CHECK_EQ(ember_kvm_vm_get_dirty_log(t->vm, 3, 0x10000, bitmap, 1), -ENOENT);
        CHECK_STR(ember_kvm_vm_last_error(t->vm),
                  "KVM_GET_DIRTY_LOG: slot 3 was not registered through this handle");
}

/* The kernel writes a bit for every page of the slot it has: told a smaller size, a 1-word
 * bitmap would look enough for a 65-page slot that takes 2 words. */
static void t_dirty_log_sized_from_slot(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_userspace_memory_region region;
        uint64_t bitmap[3] = {0, 0, 0x5e5e5e5e5e5e5e5eull};

        kt_add_memory(t, 0x100000, 65 * 4096, KVM_MEM_LOG_DIRTY_PAGES);
        CHECK_EQ(ember_kvm_vm_get_dirty_log(t->vm, 0, 4096, bitmap, 1), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(t->vm),
                  "KVM_GET_DIRTY_LOG: slot 0 is 266240 bytes, not 4096");
        CHECK_EQ(ember_kvm_vm_get_dirty_log(t->vm, 0, 65 * 4096, bitmap, 1), -EINVAL);
        CHECK(strstr(ember_kvm_vm_last_error(t->vm), "needs 2 bitmap words, got 1") != NULL);
        KT_VM_OK(t, ember_kvm_vm_get_dirty_log(t->vm, 0, 65 * 4096, bitmap, 2));
        CHECK_EQ(bitmap[2], 0x5e5e5e5e5e5e5e5eull);
        /* Deleted, the slot is unknown; registered again, it has its new size. */
        region = (struct kvm_userspace_memory_region){.slot = 0};
        KT_VM_OK(t, ember_kvm_vm_set_user_memory_region(t->vm, &region));
        CHECK_EQ(ember_kvm_vm_get_dirty_log(t->vm, 0, 65 * 4096, bitmap, 2), -ENOENT);
        region = (struct kvm_userspace_memory_region){
            .slot = 0,
            .flags = KVM_MEM_LOG_DIRTY_PAGES,
            .guest_phys_addr = 0x100000,
            .memory_size = 16 * 4096,
            .userspace_addr = (uint64_t)(uintptr_t)t->mem,
        };
        KT_VM_OK(t, ember_kvm_vm_set_user_memory_region(t->vm, &region));
        KT_VM_OK(t, ember_kvm_vm_get_dirty_log(t->vm, 0, 16 * 4096, bitmap, 1));
        /* A registration the kernel refused changes nothing. */
        region.memory_size = 32 * 4096;
        CHECK(ember_kvm_vm_set_user_memory_region(t->vm, &region) < 0);
        KT_VM_OK(t, ember_kvm_vm_get_dirty_log(t->vm, 0, 16 * 4096, bitmap, 1));
}

/* KVM_SET_USER_MEMORY_REGION2, guest_memfd and memory attributes given what no kernel takes:
 * the refusal (-ENOTTY before Linux 6.8 or without the feature, else -EINVAL), with the ioctl
 * named. */
static void t_private_memory_refused(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_userspace_memory_region2 region = {
            .slot = 0,
            .flags = KVM_MEM_GUEST_MEMFD,
            .guest_phys_addr = 0x100000,
            .memory_size = 0x1000,
            .guest_memfd = UINT32_MAX, /* no such fd */
        };
        int ret;

        kt_add_memory(t, 0x200000, 0x1000, 0);
        region.userspace_addr = (uint64_t)(uintptr_t)t->mem;
        ret = ember_kvm_vm_set_user_memory_region2(t->vm, &region);
        CHECK(ret == -EINVAL || ret == -ENOTTY || ret == -EBADF);
        CHECK(strncmp(ember_kvm_vm_last_error(t->vm), "KVM_SET_USER_MEMORY_REGION2: ", 29) == 0);
        CHECK_EQ(ember_kvm_vm_set_user_memory_region2(t->vm, NULL), -EINVAL);
        ret = ember_kvm_vm_create_guest_memfd(t->vm, 0x4000, 1ull << 63);
        CHECK(ret == -EINVAL || ret == -ENOTTY);
        CHECK(strncmp(ember_kvm_vm_last_error(t->vm), "KVM_CREATE_GUEST_MEMFD: ", 24) == 0);
        ret = ember_kvm_vm_set_memory_attributes(t->vm, 0x200000, 0x1000, 1ull << 60);
        CHECK(ret == -EINVAL || ret == -ENOTTY);
        CHECK(strncmp(ember_kvm_vm_last_error(t->vm), "KVM_SET_MEMORY_ATTRIBUTES: ", 27) == 0);
}

/* SEV wrappers: on a host without SEV every call is the kernel's -ENOTTY, named; with SEV, a
 * default VM is no SEV guest (no regions) and an unknown command is refused. */
static void t_sev_refusals(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_sev_cmd cmd = {.id = 0x7777};
        int probe;

        kt_add_memory(t, 0x100000, 0x1000, 0);
        CHECK_EQ(ember_kvm_vm_sev_op(t->vm, NULL), -EINVAL);
        probe = ember_kvm_vm_memory_encrypt_op(t->vm, NULL);
        if (probe == 0) {
                CHECK_EQ(ember_kvm_vm_sev_op(t->vm, &cmd), -EINVAL);
                CHECK(strncmp(ember_kvm_vm_last_error(t->vm), "KVM_MEMORY_ENCRYPT_OP: ", 23) == 0);
        } else {
                CHECK_EQ(probe, -ENOTTY);
                CHECK_STR(ember_kvm_vm_last_error(t->vm),
                          "KVM_MEMORY_ENCRYPT_OP: Inappropriate ioctl for device");
                CHECK_EQ(ember_kvm_vm_sev_op(t->vm, &cmd), -ENOTTY);
        }
        CHECK_EQ(ember_kvm_vm_register_enc_region(t->vm, (uint64_t)(uintptr_t)t->mem, 0x1000),
                 -ENOTTY);
        CHECK_STR(ember_kvm_vm_last_error(t->vm),
                  "KVM_MEMORY_ENCRYPT_REG_REGION: Inappropriate ioctl for device");
        CHECK_EQ(ember_kvm_vm_unregister_enc_region(t->vm, (uint64_t)(uintptr_t)t->mem, 0x1000),
                 -ENOTTY);
        CHECK_STR(ember_kvm_vm_last_error(t->vm),
                  "KVM_MEMORY_ENCRYPT_UNREG_REGION: Inappropriate ioctl for device");
}

/* Nested state: buffers the kernel would overrun are refused first; without nested
 * virtualization the kernel refuses, with it a state of unknown format is refused. */
static void t_nested_state_errors(void)
{
        static _Alignas(8) uint8_t buf[16384];
        struct kvm_nested_state *st = (struct kvm_nested_state *)buf;
        struct kt *t = kt_open_vm();
        int cap;

        kt_create_vcpu(t);
        CHECK_EQ(ember_kvm_vcpu_get_nested_state(t->vcpu, st, sizeof(*st) - 1), -EINVAL);
        CHECK_STR(ember_kvm_vcpu_last_error(t->vcpu),
                  "KVM_GET_NESTED_STATE: a 127-byte buffer, less than the 128-byte header");
        CHECK_EQ(ember_kvm_vcpu_get_nested_state(t->vcpu, NULL, sizeof(buf)), -EINVAL);
        memset(buf, 0, sizeof(buf));
        st->size = sizeof(*st) + 1;
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(t->vcpu, st, sizeof(*st)), -EINVAL);
        CHECK_STR(ember_kvm_vcpu_last_error(t->vcpu),
                  "KVM_SET_NESTED_STATE: the state says 129 bytes, the buffer has 128");
        st->size = 16;
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(t->vcpu, st, sizeof(buf)), -EINVAL);
        cap = ember_kvm_check_extension_int(t->kvm, KVM_CAP_NESTED_STATE);
        if (cap <= 0) {
                CHECK(ember_kvm_vcpu_get_nested_state(t->vcpu, st, sizeof(buf)) < 0);
                CHECK(strncmp(ember_kvm_vcpu_last_error(t->vcpu), "KVM_GET_NESTED_STATE: ", 22) ==
                      0);
                st->size = sizeof(*st);
                CHECK(ember_kvm_vcpu_set_nested_state(t->vcpu, st, sizeof(buf)) < 0);
                CHECK(strncmp(ember_kvm_vcpu_last_error(t->vcpu), "KVM_SET_NESTED_STATE: ", 22) ==
                      0);
                return;
        }
        REQUIRE(ember_kvm_vcpu_get_nested_state(t->vcpu, st, sizeof(buf)) > 0);
        st->format = 7;
        CHECK_EQ(ember_kvm_vcpu_set_nested_state(t->vcpu, st, sizeof(buf)), -EINVAL);
        CHECK_STR(ember_kvm_vcpu_last_error(t->vcpu), "KVM_SET_NESTED_STATE: Invalid argument");
        /* GIF clear while EFER.SVME is off is no state an SVM vCPU can be in. */
        REQUIRE(ember_kvm_vcpu_get_nested_state(t->vcpu, st, sizeof(buf)) > 0);
        if (st->format == KVM_STATE_NESTED_FORMAT_SVM) {
                st->flags = 0;
                CHECK_EQ(ember_kvm_vcpu_set_nested_state(t->vcpu, st, sizeof(buf)), -EINVAL);
        }
}

static void t_bad_device(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_create_device cd = {.type = 0x7777};
        struct ember_kvm_device *dev = NULL;

        CHECK_EQ(ember_kvm_vm_create_device(t->vm, &cd, &dev), -ENODEV);
        CHECK(dev == NULL);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_CREATE_DEVICE: No such device");
        cd.flags = KVM_CREATE_DEVICE_TEST;
        CHECK_EQ(ember_kvm_vm_create_device(t->vm, &cd, NULL), -ENODEV);
}

static void t_bad_ioevent(void)
{
        struct kt *t = kt_open_vm();
        int efd = kt_eventfd(t);
        struct ember_kvm_ioevent ev = {.addr = 0x700, .len = 3, .pio = true};

        CHECK_EQ(ember_kvm_vm_register_ioevent(t->vm, efd, &ev), -EINVAL);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_IOEVENTFD: length 3 is not 0, 1, 2, 4 or 8");
        /* Not an eventfd. */
        ev.len = 1;
        CHECK(ember_kvm_vm_register_ioevent(t->vm, 0x7fff, &ev) < 0);
        CHECK(strncmp(ember_kvm_vm_last_error(t->vm), "KVM_IOEVENTFD: ", 15) == 0);
}

/* A vCPU with no memory at all: the reset vector is not backed. Hosts report this differently
 * (an emulation failure exit on SVM/VMX, -ENOSPC from KVM_RUN on PVM); either way it comes back
 * decoded or as -errno with KVM_RUN named, never as a crash. */
static void t_run_without_memory(void)
{
        struct kt *t = kt_open_vm();
        struct ember_kvm_exit exit;
        char desc[256];
        int ret;

        kt_create_vcpu(t);
        ret = kt_run_guarded(t, &exit);
        if (ret < 0) {
                CHECK(strncmp(ember_kvm_vcpu_last_error(t->vcpu), "KVM_RUN: ", 9) == 0);
                return;
        }
        CHECK(exit.kind != EMBER_KVM_EXIT_UNSUPPORTED);
        CHECK(ember_kvm_exit_describe(&exit, desc, sizeof(desc)) > 0);
        CHECK(strncmp(desc, "KVM_EXIT_", 9) == 0);
}

int main(void)
{
        T_RUN(t_overlapping_slot);
        T_RUN(t_bad_slot);
        T_RUN(t_too_many_cpuid_entries);
        T_RUN(t_unknown_capability);
        T_RUN(t_bad_vcpu_id);
        T_RUN(t_no_irqchip);
        T_RUN(t_dirty_log_errors);
        T_RUN(t_dirty_log_sized_from_slot);
        T_RUN(t_private_memory_refused);
        T_RUN(t_sev_refusals);
        T_RUN(t_nested_state_errors);
        T_RUN(t_bad_device);
        T_RUN(t_bad_ioevent);
        T_RUN(t_run_without_memory);
        kt_release();
        return T_DONE();
}
