/* The VM handle: memory, interrupt controllers, clock, interrupt injection, ioeventfd/irqfd,
 * coalesced zones, dirty logging, and the creation of vCPUs and devices. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm/kvm_internal.h"

/* KVM tracks dirty pages and lays out the run area in host pages (4 KiB on x86_64). */
#define KVM_PAGE_SIZE 4096u

void ember_kvm_vm_close(struct ember_kvm_vm *vm)
{
        if (!vm)
                return;
        if (vm->fd >= 0)
                close(vm->fd);
        free(vm->slots);
        free(vm);
}

int ember_kvm_vm_fd(const struct ember_kvm_vm *vm)
{
        return vm->fd;
}

const char *ember_kvm_vm_last_error(const struct ember_kvm_vm *vm)
{
        return vm->error;
}

size_t ember_kvm_vm_run_size(const struct ember_kvm_vm *vm)
{
        return vm->run_size;
}

int ember_kvm_vm_check_extension_int(struct ember_kvm_vm *vm, unsigned long cap)
{
        return KVM_IOCTL(vm, KVM_CHECK_EXTENSION, cap);
}

int ember_kvm_vm_check_extension(struct ember_kvm_vm *vm, unsigned long cap)
{
        return ember_kvm_vm_check_extension_int(vm, cap) > 0;
}

int ember_kvm_vm_enable_cap(struct ember_kvm_vm *vm, const struct kvm_enable_cap *cap)
{
        return KVM_IOCTL(vm, KVM_ENABLE_CAP, cap);
}

static struct kvm_slot_size *slot_find(struct ember_kvm_vm *vm, uint32_t slot)
{
        for (size_t i = 0; i < vm->nslots; i++)
                if (vm->slots[i].slot == slot)
                        return &vm->slots[i];
        return NULL;
}

/* Room for one more slot, made before the ioctl so that a slot the kernel accepted is always
 * recorded. */
static int slots_reserve(struct ember_kvm_vm *vm, const char *name)
{
        struct kvm_slot_size *grown;
        size_t cap;

        if (vm->nslots < vm->slots_cap)
                return 0;
        cap = vm->slots_cap ? vm->slots_cap * 2 : 8;
        grown = realloc(vm->slots, cap * sizeof(*grown));
        if (!grown)
                return KVM_FAIL(vm, ENOMEM, "%s: out of memory", name);
        vm->slots = grown;
        vm->slots_cap = cap;
        return 0;
}

/* After the kernel accepted a region: size 0 deleted the slot, else it now has this size. */
static void slot_record(struct ember_kvm_vm *vm, uint32_t slot, uint64_t size)
{
        struct kvm_slot_size *s = slot_find(vm, slot);

        if (size == 0) {
                if (s)
                        *s = vm->slots[--vm->nslots];
        } else if (s) {
                s->size = size;
        } else {
                vm->slots[vm->nslots++] = (struct kvm_slot_size){.slot = slot, .size = size};
        }
}

int ember_kvm_vm_set_user_memory_region(struct ember_kvm_vm *vm,
                                        const struct kvm_userspace_memory_region *region)
{
        int ret;

        if (!region)
                return KVM_FAIL(vm, EINVAL, "KVM_SET_USER_MEMORY_REGION: no region");
        ret = slots_reserve(vm, "KVM_SET_USER_MEMORY_REGION");
        if (ret < 0)
                return ret;
        ret = KVM_IOCTL(vm, KVM_SET_USER_MEMORY_REGION, region);
        if (ret >= 0)
                slot_record(vm, region->slot, region->memory_size);
        return ret;
}

int ember_kvm_vm_set_user_memory_region2(struct ember_kvm_vm *vm,
                                         const struct kvm_userspace_memory_region2 *region)
{
        int ret;

        if (!region)
                return KVM_FAIL(vm, EINVAL, "KVM_SET_USER_MEMORY_REGION2: no region");
        ret = slots_reserve(vm, "KVM_SET_USER_MEMORY_REGION2");
        if (ret < 0)
                return ret;
        ret = KVM_IOCTL(vm, KVM_SET_USER_MEMORY_REGION2, region);
        if (ret >= 0)
                slot_record(vm, region->slot, region->memory_size);
        return ret;
}

int ember_kvm_vm_create_guest_memfd(struct ember_kvm_vm *vm, uint64_t size, uint64_t flags)
{
        struct kvm_create_guest_memfd req = {.size = size, .flags = flags};

        return KVM_IOCTL(vm, KVM_CREATE_GUEST_MEMFD, &req);
}

int ember_kvm_vm_set_memory_attributes(struct ember_kvm_vm *vm, uint64_t gpa, uint64_t size,
                                       uint64_t attributes)
{
        struct kvm_memory_attributes attrs = {
            .address = gpa, .size = size, .attributes = attributes};

        return KVM_IOCTL(vm, KVM_SET_MEMORY_ATTRIBUTES, &attrs);
}

int ember_kvm_vm_memory_encrypt_op(struct ember_kvm_vm *vm, void *arg)
{
        return KVM_IOCTL(vm, KVM_MEMORY_ENCRYPT_OP, arg);
}

int ember_kvm_vm_sev_op(struct ember_kvm_vm *vm, struct kvm_sev_cmd *cmd)
{
        int ret;

        if (!cmd)
                return KVM_FAIL(vm, EINVAL, "KVM_MEMORY_ENCRYPT_OP: no SEV command");
        ret = KVM_IOCTL(vm, KVM_MEMORY_ENCRYPT_OP, cmd);
        if (ret < 0 && cmd->error) {
                char detail[KVM_ERROR_LEN];

                memcpy(detail, vm->error, sizeof(detail));
                KVM_FAIL(vm, -ret, "%.150s (SEV command %u, firmware error %u)", detail, cmd->id,
                         cmd->error);
        }
        return ret;
}

static int enc_region(struct ember_kvm_vm *vm, uint64_t addr, uint64_t size, bool reg)
{
        struct kvm_enc_region region = {.addr = addr, .size = size};

        return reg ? KVM_IOCTL(vm, KVM_MEMORY_ENCRYPT_REG_REGION, &region)
                   : KVM_IOCTL(vm, KVM_MEMORY_ENCRYPT_UNREG_REGION, &region);
}

int ember_kvm_vm_register_enc_region(struct ember_kvm_vm *vm, uint64_t addr, uint64_t size)
{
        return enc_region(vm, addr, size, true);
}

int ember_kvm_vm_unregister_enc_region(struct ember_kvm_vm *vm, uint64_t addr, uint64_t size)
{
        return enc_region(vm, addr, size, false);
}

int ember_kvm_vm_set_tss_address(struct ember_kvm_vm *vm, uint64_t addr)
{
        return KVM_IOCTL(vm, KVM_SET_TSS_ADDR, addr);
}

int ember_kvm_vm_set_identity_map_address(struct ember_kvm_vm *vm, uint64_t addr)
{
        return KVM_IOCTL(vm, KVM_SET_IDENTITY_MAP_ADDR, &addr);
}

int ember_kvm_vm_create_irqchip(struct ember_kvm_vm *vm)
{
        return KVM_IOCTL(vm, KVM_CREATE_IRQCHIP, 0);
}

int ember_kvm_vm_get_irqchip(struct ember_kvm_vm *vm, struct kvm_irqchip *chip)
{
        return KVM_IOCTL(vm, KVM_GET_IRQCHIP, chip);
}

int ember_kvm_vm_set_irqchip(struct ember_kvm_vm *vm, const struct kvm_irqchip *chip)
{
        return KVM_IOCTL(vm, KVM_SET_IRQCHIP, chip);
}

int ember_kvm_vm_create_pit2(struct ember_kvm_vm *vm, const struct kvm_pit_config *cfg)
{
        return KVM_IOCTL(vm, KVM_CREATE_PIT2, cfg);
}

int ember_kvm_vm_get_pit2(struct ember_kvm_vm *vm, struct kvm_pit_state2 *state)
{
        return KVM_IOCTL(vm, KVM_GET_PIT2, state);
}

int ember_kvm_vm_set_pit2(struct ember_kvm_vm *vm, const struct kvm_pit_state2 *state)
{
        return KVM_IOCTL(vm, KVM_SET_PIT2, state);
}

int ember_kvm_vm_get_clock(struct ember_kvm_vm *vm, struct kvm_clock_data *clock)
{
        return KVM_IOCTL(vm, KVM_GET_CLOCK, clock);
}

int ember_kvm_vm_set_clock(struct ember_kvm_vm *vm, const struct kvm_clock_data *clock)
{
        return KVM_IOCTL(vm, KVM_SET_CLOCK, clock);
}

int ember_kvm_vm_set_irq_line(struct ember_kvm_vm *vm, uint32_t irq, bool active)
{
        struct kvm_irq_level level = {.irq = irq, .level = active ? 1 : 0};

        return KVM_IOCTL(vm, KVM_IRQ_LINE, &level);
}

int ember_kvm_vm_signal_msi(struct ember_kvm_vm *vm, const struct kvm_msi *msi)
{
        return KVM_IOCTL(vm, KVM_SIGNAL_MSI, msi);
}

int ember_kvm_vm_set_gsi_routing(struct ember_kvm_vm *vm,
                                 const struct kvm_irq_routing_entry *entries, uint32_t n)
{
        return KVM_FAM(vm, KVM_SET_GSI_ROUTING, kvm_fam_irq_routing, entries, n, KVM_FAM_IN);
}

static int ioevent(struct ember_kvm_vm *vm, int eventfd, const struct ember_kvm_ioevent *ev,
                   bool deassign)
{
        struct kvm_ioeventfd io = {0};

        if (!ev)
                return KVM_FAIL(vm, EINVAL, "KVM_IOEVENTFD: no description");
        if (ev->len != 0 && ev->len != 1 && ev->len != 2 && ev->len != 4 && ev->len != 8)
                return KVM_FAIL(vm, EINVAL, "KVM_IOEVENTFD: length %u is not 0, 1, 2, 4 or 8",
                                ev->len);
        if (ev->datamatch && ev->len == 0)
                return KVM_FAIL(vm, EINVAL, "KVM_IOEVENTFD: datamatch needs a length");
        if (ev->datamatch && ev->len < 8 && (ev->value >> (ev->len * 8)) != 0)
                return KVM_FAIL(vm, EINVAL, "KVM_IOEVENTFD: datamatch 0x%llx wider than %u bytes",
                                (unsigned long long)ev->value, ev->len);
        io.addr = ev->addr;
        io.len = ev->len;
        io.fd = eventfd;
        io.datamatch = ev->datamatch ? ev->value : 0;
        io.flags = (ev->datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) |
                   (ev->pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
                   (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0);
        return KVM_IOCTL(vm, KVM_IOEVENTFD, &io);
}

int ember_kvm_vm_register_ioevent(struct ember_kvm_vm *vm, int eventfd,
                                  const struct ember_kvm_ioevent *ev)
{
        return ioevent(vm, eventfd, ev, false);
}

int ember_kvm_vm_unregister_ioevent(struct ember_kvm_vm *vm, int eventfd,
                                    const struct ember_kvm_ioevent *ev)
{
        return ioevent(vm, eventfd, ev, true);
}

static int irqfd(struct ember_kvm_vm *vm, int eventfd, int resample_fd, uint32_t gsi,
                 uint32_t flags)
{
        struct kvm_irqfd req = {
            .fd = (uint32_t)eventfd,
            .gsi = gsi,
            .flags = flags,
            .resamplefd = (uint32_t)resample_fd,
        };

        return KVM_IOCTL(vm, KVM_IRQFD, &req);
}

int ember_kvm_vm_register_irqfd(struct ember_kvm_vm *vm, int eventfd, uint32_t gsi)
{
        return irqfd(vm, eventfd, 0, gsi, 0);
}

int ember_kvm_vm_register_irqfd_resample(struct ember_kvm_vm *vm, int eventfd, int resample_fd,
                                         uint32_t gsi)
{
        return irqfd(vm, eventfd, resample_fd, gsi, KVM_IRQFD_FLAG_RESAMPLE);
}

int ember_kvm_vm_unregister_irqfd(struct ember_kvm_vm *vm, int eventfd, uint32_t gsi)
{
        return irqfd(vm, eventfd, 0, gsi, KVM_IRQFD_FLAG_DEASSIGN);
}

int ember_kvm_vm_register_coalesced(struct ember_kvm_vm *vm, bool pio, uint64_t addr, uint32_t size)
{
        struct kvm_coalesced_mmio_zone zone = {.addr = addr, .size = size, .pio = pio ? 1 : 0};

        return KVM_IOCTL(vm, KVM_REGISTER_COALESCED_MMIO, &zone);
}

int ember_kvm_vm_unregister_coalesced(struct ember_kvm_vm *vm, bool pio, uint64_t addr,
                                      uint32_t size)
{
        struct kvm_coalesced_mmio_zone zone = {.addr = addr, .size = size, .pio = pio ? 1 : 0};

        return KVM_IOCTL(vm, KVM_UNREGISTER_COALESCED_MMIO, &zone);
}

int ember_kvm_vm_get_dirty_log(struct ember_kvm_vm *vm, uint32_t slot, uint64_t memory_size,
                               uint64_t *bitmap, size_t words)
{
        const struct kvm_slot_size *s = slot_find(vm, slot);
        uint64_t pages, need;
        struct kvm_dirty_log log = {.slot = slot};

        /* The kernel writes one bit per page of the slot it has, whatever size we are told. */
        if (!s)
                return KVM_FAIL(vm, ENOENT,
                                "KVM_GET_DIRTY_LOG: slot %u was not registered through this handle",
                                slot);
        if (memory_size != s->size)
                return KVM_FAIL(vm, EINVAL, "KVM_GET_DIRTY_LOG: slot %u is %llu bytes, not %llu",
                                slot, (unsigned long long)s->size, (unsigned long long)memory_size);
        pages = memory_size / KVM_PAGE_SIZE + (memory_size % KVM_PAGE_SIZE != 0);
        need = pages / 64 + (pages % 64 != 0);
        if (!bitmap || words < need)
                return KVM_FAIL(
                    vm, EINVAL,
                    "KVM_GET_DIRTY_LOG: %llu-byte slot needs %llu bitmap words, got %zu",
                    (unsigned long long)memory_size, (unsigned long long)need, bitmap ? words : 0);
        log.dirty_bitmap = bitmap;
        return KVM_IOCTL(vm, KVM_GET_DIRTY_LOG, &log);
}

int ember_kvm_vm_clear_dirty_log(struct ember_kvm_vm *vm, uint32_t slot, uint64_t first_page,
                                 uint32_t num_pages, const uint64_t *bitmap)
{
        struct kvm_clear_dirty_log clear = {
            .slot = slot,
            .num_pages = num_pages,
            .first_page = first_page,
            .dirty_bitmap = (void *)bitmap,
        };

        return KVM_IOCTL(vm, KVM_CLEAR_DIRTY_LOG, &clear);
}

int ember_kvm_vcpu_adopt(struct ember_kvm_vm *vm, int vcpu_fd, struct ember_kvm_vcpu **out)
{
        struct ember_kvm_vcpu *vcpu;
        void *run;
        int xsave2;

        if (!out)
                return KVM_FAIL(vm, EINVAL, "adopting a vCPU fd: no result pointer");
        *out = NULL;
        vcpu = calloc(1, sizeof(*vcpu));
        if (!vcpu)
                return KVM_FAIL(vm, ENOMEM, "adopting a vCPU fd: out of memory");
        run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
        if (run == MAP_FAILED) {
                int err = errno;

                free(vcpu);
                return KVM_FAIL(vm, err, "mmap of the vCPU run area (%zu bytes): %s", vm->run_size,
                                ember_kvm_errno_name(err));
        }
        vcpu->fd = vcpu_fd;
        vcpu->run = run;
        vcpu->run_size = vm->run_size;
        /* Read once the vCPU exists: its creation locked the process's guest XSAVE features. */
        xsave2 = kvm_ioctl_raw(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
        vcpu->xsave2_size = xsave2 > 0 ? (size_t)xsave2 : 0;
        if (vm->coalesced_page > 0 &&
            ((size_t)vm->coalesced_page + 1) * KVM_PAGE_SIZE <= vm->run_size) {
                vcpu->ring =
                    (struct kvm_coalesced_mmio_ring *)((char *)run +
                                                       (size_t)vm->coalesced_page * KVM_PAGE_SIZE);
                vcpu->ring_entries = kvm_coalesced_ring_entries(KVM_PAGE_SIZE);
        }
        *out = vcpu;
        return 0;
}

int ember_kvm_vm_create_vcpu(struct ember_kvm_vm *vm, unsigned long id, struct ember_kvm_vcpu **out)
{
        int fd, ret;

        if (!out)
                return KVM_FAIL(vm, EINVAL, "KVM_CREATE_VCPU: no result pointer");
        *out = NULL;
        fd = KVM_IOCTL(vm, KVM_CREATE_VCPU, id);
        if (fd < 0)
                return fd;
        ret = ember_kvm_vcpu_adopt(vm, fd, out);
        if (ret < 0)
                close(fd);
        return ret;
}

int ember_kvm_vm_create_device(struct ember_kvm_vm *vm, struct kvm_create_device *dev,
                               struct ember_kvm_device **out)
{
        struct ember_kvm_device *d;
        bool test;
        int ret;

        if (!dev)
                return KVM_FAIL(vm, EINVAL, "KVM_CREATE_DEVICE: no device description");
        test = dev->flags & KVM_CREATE_DEVICE_TEST;
        if (!out && !test)
                return KVM_FAIL(vm, EINVAL, "KVM_CREATE_DEVICE: no result pointer");
        if (out)
                *out = NULL;
        ret = KVM_IOCTL(vm, KVM_CREATE_DEVICE, dev);
        /* With the TEST flag the kernel creates nothing and leaves dev->fd alone. */
        if (ret < 0 || test)
                return ret < 0 ? ret : 0;
        d = calloc(1, sizeof(*d));
        if (!d) {
                close((int)dev->fd);
                return KVM_FAIL(vm, ENOMEM, "KVM_CREATE_DEVICE: out of memory");
        }
        d->fd = (int)dev->fd;
        *out = d;
        return 0;
}
