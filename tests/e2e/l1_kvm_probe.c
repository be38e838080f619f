/* Checks that /dev/kvm can run a guest at all, independently of ember: opens it, creates a VM
 * with one vCPU and runs a few real-mode instructions that write to a port, loop and halt.
 * On the TCG test host this proves that kvm-amd loaded and nested SVM works; wherever else it
 * runs it is a cheap sanity check alongside the ember scenarios. */
#include "test.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUEST_MEM_SIZE  0x10000
#define GUEST_CODE_ADDR 0x1000
#define PROBE_PORT      0x10
#define PROBE_VALUE     0x42
#define LOOP_COUNT      100000

struct probe_vm {
        int kvm_fd, vm_fd, vcpu_fd;
        void *mem;
        struct kvm_run *run;
        size_t run_size;
};

static void probe_vm_close(struct probe_vm *p)
{
        if (p->run && p->run != MAP_FAILED)
                munmap(p->run, p->run_size);
        if (p->mem && p->mem != MAP_FAILED)
                munmap(p->mem, GUEST_MEM_SIZE);
        if (p->vcpu_fd >= 0)
                close(p->vcpu_fd);
        if (p->vm_fd >= 0)
                close(p->vm_fd);
        if (p->kvm_fd >= 0)
                close(p->kvm_fd);
}

static void t_kvm_api_version(void)
{
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

        if (fd < 0)
                FAILF("open /dev/kvm: %s", strerror(errno));
        CHECK_EQ(ioctl(fd, KVM_GET_API_VERSION, 0), KVM_API_VERSION);
        close(fd);
}

static void t_kvm_real_mode_guest(void)
{
        /* Writes PROBE_VALUE to PROBE_PORT, then counts LOOP_COUNT iterations (two rounds of
         * LOOP_COUNT / 2 in cx) so the guest runs for a while before it halts. */
        /* clang-format off */
        static const unsigned char code[] = {
                0xb0, PROBE_VALUE,                      /* mov al, PROBE_VALUE */
                0xe6, PROBE_PORT,                       /* out PROBE_PORT, al */
                0xba, 0x02, 0x00,                       /* mov dx, 2 */
                0xb9, (LOOP_COUNT / 2) & 0xff,          /* mov cx, LOOP_COUNT / 2 */
                      ((LOOP_COUNT / 2) >> 8) & 0xff,
                0xe2, 0xfe,                             /* loop $ */
                0x4a,                                   /* dec dx */
                0x75, 0xf8,                             /* jnz back to mov cx */
                0xf4,                                   /* hlt */
        };
        /* clang-format on */
        struct probe_vm p = {.kvm_fd = -1, .vm_fd = -1, .vcpu_fd = -1};
        struct kvm_userspace_memory_region region;
        struct kvm_sregs sregs;
        struct kvm_regs regs;
        int mmap_size, saw_out = 0, saw_hlt = 0;

        p.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (p.kvm_fd < 0)
                FAILF("open /dev/kvm: %s", strerror(errno));
        p.vm_fd = ioctl(p.kvm_fd, KVM_CREATE_VM, 0);
        if (p.vm_fd < 0) {
                t_fail(__FILE__, __LINE__, "KVM_CREATE_VM: %s", strerror(errno));
                goto out;
        }
        p.mem =
            mmap(NULL, GUEST_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p.mem == MAP_FAILED) {
                t_fail(__FILE__, __LINE__, "mmap guest memory: %s", strerror(errno));
                goto out;
        }
        memcpy((char *)p.mem + GUEST_CODE_ADDR, code, sizeof(code));
        region = (struct kvm_userspace_memory_region){
            .slot = 0,
            .guest_phys_addr = 0,
            .memory_size = GUEST_MEM_SIZE,
            .userspace_addr = (unsigned long)p.mem,
        };
        if (ioctl(p.vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
                t_fail(__FILE__, __LINE__, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
                goto out;
        }
        p.vcpu_fd = ioctl(p.vm_fd, KVM_CREATE_VCPU, 0);
        if (p.vcpu_fd < 0) {
                t_fail(__FILE__, __LINE__, "KVM_CREATE_VCPU: %s", strerror(errno));
                goto out;
        }
        mmap_size = ioctl(p.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (mmap_size <= 0) {
                t_fail(__FILE__, __LINE__, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
                goto out;
        }
        p.run_size = (size_t)mmap_size;
        p.run = mmap(NULL, p.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p.vcpu_fd, 0);
        if (p.run == MAP_FAILED) {
                t_fail(__FILE__, __LINE__, "mmap kvm_run: %s", strerror(errno));
                goto out;
        }
        if (ioctl(p.vcpu_fd, KVM_GET_SREGS, &sregs) < 0) {
                t_fail(__FILE__, __LINE__, "KVM_GET_SREGS: %s", strerror(errno));
                goto out;
        }
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        if (ioctl(p.vcpu_fd, KVM_SET_SREGS, &sregs) < 0) {
                t_fail(__FILE__, __LINE__, "KVM_SET_SREGS: %s", strerror(errno));
                goto out;
        }
        memset(&regs, 0, sizeof(regs));
        regs.rip = GUEST_CODE_ADDR;
        regs.rflags = 0x2;
        if (ioctl(p.vcpu_fd, KVM_SET_REGS, &regs) < 0) {
                t_fail(__FILE__, __LINE__, "KVM_SET_REGS: %s", strerror(errno));
                goto out;
        }
        for (int i = 0; i < 16 && !saw_hlt; i++) {
                if (ioctl(p.vcpu_fd, KVM_RUN, 0) < 0) {
                        if (errno == EINTR)
                                continue;
                        t_fail(__FILE__, __LINE__, "KVM_RUN: %s", strerror(errno));
                        goto out;
                }
                switch (p.run->exit_reason) {
                case KVM_EXIT_IO: {
                        const unsigned char *data =
                            (const unsigned char *)p.run + p.run->io.data_offset;

                        CHECK_EQ(p.run->io.port, PROBE_PORT);
                        CHECK_EQ(p.run->io.direction, KVM_EXIT_IO_OUT);
                        CHECK_EQ(data[0], PROBE_VALUE);
                        saw_out = 1;
                        break;
                }
                case KVM_EXIT_HLT:
                        saw_hlt = 1;
                        break;
                default:
                        t_fail(__FILE__, __LINE__, "unexpected exit reason %u", p.run->exit_reason);
                        goto out;
                }
        }
        CHECK(saw_out);
        CHECK(saw_hlt);
        if (saw_hlt) {
                CHECK(ioctl(p.vcpu_fd, KVM_GET_REGS, &regs) == 0);
                CHECK_EQ(regs.rip, GUEST_CODE_ADDR + sizeof(code));
                CHECK_EQ(regs.rcx & 0xffff, 0);
        }
out:
        probe_vm_close(&p);
}

int main(void)
{
        T_RUN(t_kvm_api_version);
        T_RUN(t_kvm_real_mode_guest);
        return T_DONE();
}
