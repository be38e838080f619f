/* The VM handle of ember's KVM layer: memory slots, TSS and identity map, irqchip, PIT2, clock,
 * IRQ lines and MSIs, GSI routing, ioeventfd, irqfd, coalesced zones, capabilities, devices. */
#include "kvm_test_util.h"

static void t_user_memory_region(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_userspace_memory_region region;

        kt_add_memory(t, 0x100000, 0x10000, 0);
        region = (struct kvm_userspace_memory_region){
            .slot = 0,
            .flags = KVM_MEM_LOG_DIRTY_PAGES,
            .guest_phys_addr = 0x100000,
            .memory_size = 0x10000,
            .userspace_addr = (uint64_t)(uintptr_t)t->mem,
        };
        /* Changing the flags of an existing slot. */
        KT_VM_OK(t, ember_kvm_vm_set_user_memory_region(t->vm, &region));
        /* A second slot next to the first, using the same host memory. */
        region.slot = 1;
        region.flags = 0;
        region.guest_phys_addr = 0x200000;
        KT_VM_OK(t, ember_kvm_vm_set_user_memory_region(t->vm, &region));
        /* Size 0 deletes. */
        region.memory_size = 0;
        KT_VM_OK(t, ember_kvm_vm_set_user_memory_region(t->vm, &region));
        if (ember_kvm_check_extension(t->kvm, KVM_CAP_READONLY_MEM)) {
                region.slot = 2;
                region.flags = KVM_MEM_READONLY;
                region.memory_size = 0x10000;
                KT_VM_OK(t, ember_kvm_vm_set_user_memory_region(t->vm, &region));
        }
}

static void t_tss_and_identity_map(void)
{
        struct kt *t = kt_open_vm();

        KT_NEED_CAP(t, KVM_CAP_SET_TSS_ADDR);
        KT_VM_OK(t, ember_kvm_vm_set_tss_address(t->vm, 0xfffbd000));
        if (ember_kvm_check_extension(t->kvm, KVM_CAP_SET_IDENTITY_MAP_ADDR)) {
                KT_VM_OK(t, ember_kvm_vm_set_identity_map_address(t->vm, 0xfffbc000));
                /* Only before the first vCPU. */
                kt_create_vcpu(t);
                CHECK(ember_kvm_vm_set_identity_map_address(t->vm, 0xfffbc000) < 0);
                CHECK(strstr(ember_kvm_vm_last_error(t->vm), "KVM_SET_IDENTITY_MAP_ADDR") != NULL);
        }
}

static void t_irqchip_roundtrip(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_PIC_MASTER};

        KT_NEED_CAP(t, KVM_CAP_IRQCHIP);
        KT_VM_OK(t, ember_kvm_vm_create_irqchip(t->vm));
        KT_VM_OK(t, ember_kvm_vm_get_irqchip(t->vm, &chip));
        chip.chip.pic.irq_base = 10;
        KT_VM_OK(t, ember_kvm_vm_set_irqchip(t->vm, &chip));
        memset(&chip, 0, sizeof(chip));
        chip.chip_id = KVM_IRQCHIP_PIC_MASTER;
        KT_VM_OK(t, ember_kvm_vm_get_irqchip(t->vm, &chip));
        CHECK_EQ(chip.chip.pic.irq_base, 10);

        memset(&chip, 0, sizeof(chip));
        chip.chip_id = KVM_IRQCHIP_IOAPIC;
        KT_VM_OK(t, ember_kvm_vm_get_irqchip(t->vm, &chip));
        CHECK_EQ(chip.chip.ioapic.base_address, 0xfec00000);
}

static void t_pit2_roundtrip(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_pit_config cfg = {0};
        struct kvm_pit_state2 a, b;

        KT_NEED_CAP(t, KVM_CAP_IRQCHIP);
        KT_NEED_CAP(t, KVM_CAP_PIT2);
        KT_VM_OK(t, ember_kvm_vm_create_irqchip(t->vm));
        KT_VM_OK(t, ember_kvm_vm_create_pit2(t->vm, &cfg));
        CHECK_EQ(ember_kvm_vm_create_pit2(t->vm, &cfg), -EEXIST);
        CHECK_STR(ember_kvm_vm_last_error(t->vm), "KVM_CREATE_PIT2: File exists");
        KT_VM_OK(t, ember_kvm_vm_get_pit2(t->vm, &a));
        a.channels[2].gate = 1;
        KT_VM_OK(t, ember_kvm_vm_set_pit2(t->vm, &a));
        KT_VM_OK(t, ember_kvm_vm_get_pit2(t->vm, &b));
        /* count_load_time is the host's clock at the load: it moves. */
        for (int i = 0; i < 3; i++)
                a.channels[i].count_load_time = b.channels[i].count_load_time = 0;
        CHECK(memcmp(&a, &b, sizeof(a)) == 0);
        CHECK_EQ(b.channels[2].gate, 1);
}

static void t_clock(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_clock_data clock = {0};

        KT_NEED_CAP(t, KVM_CAP_ADJUST_CLOCK);
        KT_VM_OK(t, ember_kvm_vm_get_clock(t->vm, &clock));
        memset(&clock, 0, sizeof(clock));
        clock.clock = 10;
        KT_VM_OK(t, ember_kvm_vm_set_clock(t->vm, &clock));
        memset(&clock, 0, sizeof(clock));
        KT_VM_OK(t, ember_kvm_vm_get_clock(t->vm, &clock));
        CHECK(clock.clock >= 10);
}

static void t_irq_line_and_msi(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_msi msi = {.address_lo = 0xfee00000, .data = 0x30};
        int ret;

        KT_NEED_CAP(t, KVM_CAP_IRQCHIP);
        KT_VM_OK(t, ember_kvm_vm_create_irqchip(t->vm));
        kt_create_vcpu(t);
        KT_VM_OK(t, ember_kvm_vm_set_irq_line(t->vm, 4, true));
        KT_VM_OK(t, ember_kvm_vm_set_irq_line(t->vm, 4, false));
        if (!ember_kvm_check_extension(t->kvm, KVM_CAP_SIGNAL_MSI))
                SKIP("this KVM lacks KVM_CAP_SIGNAL_MSI (IRQ lines passed)");
        /* > 0 delivered, 0 when the guest's LAPIC does not accept it (software-disabled here). */
        ret = ember_kvm_vm_signal_msi(t->vm, &msi);
        if (ret < 0)
                FAILF("%s", ember_kvm_vm_last_error(t->vm));
}

static void t_gsi_routing(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_irq_routing_entry routes[2] = {
            {.gsi = 5,
             .type = KVM_IRQ_ROUTING_IRQCHIP,
             .u.irqchip = {.irqchip = KVM_IRQCHIP_PIC_MASTER, .pin = 5}},
            {.gsi = 24,
             .type = KVM_IRQ_ROUTING_MSI,
             .u.msi = {.address_lo = 0xfee00000, .data = 0x31}},
        };
        static struct kvm_irq_routing_entry many[EMBER_KVM_MAX_IRQ_ROUTES + 1];

        KT_NEED_CAP(t, KVM_CAP_IRQ_ROUTING);
        /* Without an irqchip there is nothing to route to. */
        CHECK(ember_kvm_vm_set_gsi_routing(t->vm, routes, 2) < 0);
        CHECK(strstr(ember_kvm_vm_last_error(t->vm), "KVM_SET_GSI_ROUTING") != NULL);
        KT_VM_OK(t, ember_kvm_vm_create_irqchip(t->vm));
        KT_VM_OK(t, ember_kvm_vm_set_gsi_routing(t->vm, routes, 2));
        CHECK_EQ(ember_kvm_vm_set_gsi_routing(t->vm, many, EMBER_KVM_MAX_IRQ_ROUTES + 1), -ENOMEM);
}

/* Every length and both spaces, with and without datamatch. */
static void t_ioevent_register_unregister(void)
{
        static const uint32_t lens[] = {1, 2, 4, 8};
        struct kt *t = kt_open_vm();
        int efd = kt_eventfd(t);
        struct ember_kvm_ioevent ev;

        KT_NEED_CAP(t, KVM_CAP_IOEVENTFD);
        for (int pio = 0; pio < 2; pio++) {
                for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
                        for (int dm = 0; dm < 2; dm++) {
                                ev = (struct ember_kvm_ioevent){
                                    .addr = pio ? 0x700u + (uint32_t)i * 8 : 0xd0000000u + i * 8,
                                    .len = lens[i],
                                    .pio = pio,
                                    .datamatch = dm,
                                    .value = dm ? 0x5a : 0,
                                };
                                KT_VM_OK(t, ember_kvm_vm_register_ioevent(t->vm, efd, &ev));
                                KT_VM_OK(t, ember_kvm_vm_unregister_ioevent(t->vm, efd, &ev));
                        }
                }
        }
        /* Unregistering what was never registered fails. */
        ev = (struct ember_kvm_ioevent){.addr = 0x7f0, .len = 1, .pio = true};
        CHECK(ember_kvm_vm_unregister_ioevent(t->vm, efd, &ev) < 0);
        CHECK(strstr(ember_kvm_vm_last_error(t->vm), "KVM_IOEVENTFD") != NULL);
}

/* Length 0: any access width (MMIO: KVM_CAP_IOEVENTFD_NO_LENGTH). */
static void t_ioevent_any_length(void)
{
        struct kt *t = kt_open_vm();
        int efd = kt_eventfd(t);
        struct ember_kvm_ioevent ev = {.addr = 0xd0001000, .len = 0};

        KT_NEED_CAP(t, KVM_CAP_IOEVENTFD_NO_LENGTH);
        KT_VM_OK(t, ember_kvm_vm_register_ioevent(t->vm, efd, &ev));
        KT_VM_OK(t, ember_kvm_vm_unregister_ioevent(t->vm, efd, &ev));
        ev.pio = true;
        ev.addr = 0x7f8;
        if (!ember_kvm_check_extension(t->kvm, KVM_CAP_IOEVENTFD_ANY_LENGTH))
                SKIP("this KVM lacks KVM_CAP_IOEVENTFD_ANY_LENGTH (MMIO length 0 passed)");
        KT_VM_OK(t, ember_kvm_vm_register_ioevent(t->vm, efd, &ev));
        KT_VM_OK(t, ember_kvm_vm_unregister_ioevent(t->vm, efd, &ev));
}

static void t_irqfd_register_unregister(void)
{
        struct kt *t = kt_open_vm();
        int efd, efd2, resample;

        KT_NEED_CAP(t, KVM_CAP_IRQCHIP);
        KT_NEED_CAP(t, KVM_CAP_IRQFD);
        KT_VM_OK(t, ember_kvm_vm_create_irqchip(t->vm));
        efd = kt_eventfd(t);
        KT_VM_OK(t, ember_kvm_vm_register_irqfd(t->vm, efd, 4));
        /* The same eventfd twice is refused. */
        CHECK(ember_kvm_vm_register_irqfd(t->vm, efd, 4) < 0);
        CHECK(strstr(ember_kvm_vm_last_error(t->vm), "KVM_IRQFD") != NULL);
        KT_VM_OK(t, ember_kvm_vm_unregister_irqfd(t->vm, efd, 4));
        /* Unregistering again is not an error. */
        KT_VM_OK(t, ember_kvm_vm_unregister_irqfd(t->vm, efd, 4));

        if (!ember_kvm_check_extension(t->kvm, KVM_CAP_IRQFD_RESAMPLE))
                SKIP("this KVM lacks KVM_CAP_IRQFD_RESAMPLE (plain irqfd passed)");
        efd2 = kt_eventfd(t);
        resample = kt_eventfd(t);
        KT_VM_OK(t, ember_kvm_vm_register_irqfd_resample(t->vm, efd2, resample, 5));
        KT_VM_OK(t, ember_kvm_vm_unregister_irqfd(t->vm, efd2, 5));
}

static void t_coalesced_zones(void)
{
        struct kt *t = kt_open_vm();

        KT_NEED_CAP(t, KVM_CAP_COALESCED_MMIO);
        KT_VM_OK(t, ember_kvm_vm_register_coalesced(t->vm, false, 0xd0000000, 0x1000));
        KT_VM_OK(t, ember_kvm_vm_unregister_coalesced(t->vm, false, 0xd0000000, 0x1000));
        if (!ember_kvm_check_extension(t->kvm, KVM_CAP_COALESCED_PIO))
                SKIP("this KVM lacks KVM_CAP_COALESCED_PIO (MMIO zones passed)");
        KT_VM_OK(t, ember_kvm_vm_register_coalesced(t->vm, true, 0x2c, 2));
        KT_VM_OK(t, ember_kvm_vm_unregister_coalesced(t->vm, true, 0x2c, 2));
}

static void t_vm_check_and_enable_cap(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {24}};

        CHECK_EQ(ember_kvm_vm_check_extension(t->vm, KVM_CAP_USER_MEMORY), 1);
        CHECK_EQ(ember_kvm_vm_check_extension_int(t->vm, 696969), 0);
        KT_NEED_CAP(t, KVM_CAP_SPLIT_IRQCHIP);
        KT_VM_OK(t, ember_kvm_vm_enable_cap(t->vm, &cap));
        /* The split irqchip replaces the full in-kernel one. */
        CHECK(ember_kvm_vm_create_irqchip(t->vm) < 0);
}

static void t_create_vcpu(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_run *run;

        kt_create_vcpu(t);
        CHECK(ember_kvm_vcpu_fd(t->vcpu) >= 0);
        run = ember_kvm_vcpu_run_page(t->vcpu);
        REQUIRE(run != NULL);
        CHECK_EQ(run->immediate_exit, 0);
        /* The same id twice is refused. */
        {
                struct ember_kvm_vcpu *again = NULL;

                CHECK(ember_kvm_vm_create_vcpu(t->vm, 0, &again) < 0);
                CHECK(again == NULL);
        }
}

/* kvm-vfio is the device every x86 KVM with VFIO support offers; it needs no hardware. */
static void t_device_attrs(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_create_device cd = {.type = KVM_DEV_TYPE_VFIO, .flags = KVM_CREATE_DEVICE_TEST};
        struct ember_kvm_device *dev = (struct ember_kvm_device *)&cd; /* must become NULL */
        struct kvm_device_attr attr = {.group = KVM_DEV_VFIO_GROUP, .attr = KVM_DEV_VFIO_GROUP_ADD};
        int32_t bad_fd = -1;
        int ret;

        ret = ember_kvm_vm_create_device(t->vm, &cd, &dev);
        if (ret == -ENODEV)
                SKIP("this KVM has no kvm-vfio device");
        /* TEST: supported, no device and no fd. */
        REQUIRE_EQ(ret, 0);
        CHECK(dev == NULL);

        cd.flags = 0;
        KT_VM_OK(t, ember_kvm_vm_create_device(t->vm, &cd, &dev));
        REQUIRE(dev != NULL);
        CHECK(ember_kvm_device_fd(dev) >= 0);
        CHECK_EQ(ember_kvm_device_has_attr(dev, &attr), 0);
        attr.group = 0x7777;
        CHECK_EQ(ember_kvm_device_has_attr(dev, &attr), -ENXIO);
        CHECK(strstr(ember_kvm_device_last_error(dev), "KVM_HAS_DEVICE_ATTR") != NULL);
        attr.group = KVM_DEV_VFIO_GROUP;
        attr.addr = (uint64_t)(uintptr_t)&bad_fd;
        CHECK_EQ(ember_kvm_device_set_attr(dev, &attr), -EBADF);
        CHECK(strstr(ember_kvm_device_last_error(dev), "KVM_SET_DEVICE_ATTR") != NULL);
        /* kvm-vfio has no readable attributes. */
        CHECK(ember_kvm_device_get_attr(dev, &attr) < 0);
        CHECK(strstr(ember_kvm_device_last_error(dev), "KVM_GET_DEVICE_ATTR") != NULL);
        ember_kvm_device_close(dev);
}

/* A device fd adopted into a second handle (kvm-ioctls' DeviceFd::from_raw_fd) reaches the same
 * device, and closing one handle leaves the other working. */
static void t_device_adopt(void)
{
        struct kt *t = kt_open_vm();
        struct kvm_create_device cd = {.type = KVM_DEV_TYPE_VFIO};
        struct kvm_device_attr attr = {.group = KVM_DEV_VFIO_GROUP, .attr = KVM_DEV_VFIO_GROUP_ADD};
        struct ember_kvm_device *dev = NULL, *other = NULL;
        int fd, ret;

        ret = ember_kvm_vm_create_device(t->vm, &cd, &dev);
        if (ret == -ENODEV)
                SKIP("this KVM has no kvm-vfio device");
        KT_VM_OK(t, ret);
        fd = fcntl(ember_kvm_device_fd(dev), F_DUPFD_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        REQUIRE_EQ(ember_kvm_device_adopt(fd, &other), 0);
        CHECK_EQ(ember_kvm_device_fd(other), fd);
        ember_kvm_device_close(dev);
        CHECK_EQ(ember_kvm_device_has_attr(other, &attr), 0);
        attr.group = 0x7777;
        CHECK_EQ(ember_kvm_device_has_attr(other, &attr), -ENXIO);
        CHECK(strstr(ember_kvm_device_last_error(other), "KVM_HAS_DEVICE_ATTR") != NULL);
        ember_kvm_device_close(other);
        /* The handle owned the fd: closed with it. */
        CHECK_EQ(fcntl(fd, F_GETFD), -1);
        CHECK_EQ(ember_kvm_device_adopt(0, NULL), -EINVAL);
}

int main(void)
{
        T_RUN(t_user_memory_region);
        T_RUN(t_tss_and_identity_map);
        T_RUN(t_irqchip_roundtrip);
        T_RUN(t_pit2_roundtrip);
        T_RUN(t_clock);
        T_RUN(t_irq_line_and_msi);
        T_RUN(t_gsi_routing);
        T_RUN(t_ioevent_register_unregister);
        T_RUN(t_ioevent_any_length);
        T_RUN(t_irqfd_register_unregister);
        T_RUN(t_coalesced_zones);
        T_RUN(t_vm_check_and_enable_cap);
        T_RUN(t_create_vcpu);
        T_RUN(t_device_attrs);
        T_RUN(t_device_adopt);
        kt_release();
        return T_DONE();
}
