/* Helpers shared by the tests of ember's KVM layer (tests/kvm/test_kvm_*.c): opening /dev/kvm
 * or skipping, capability checks, and the tiny real-mode guest setup kvm-ioctls' tests use
 * (0x4000 bytes at GPA 0x1000, code at 0x1000, flat real mode). */
#ifndef EMBER_TESTS_KVM_TEST_UTIL_H
#define EMBER_TESTS_KVM_TEST_UTIL_H

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ember/kvm.h"
#include "test.h"

#define KT_GUEST_GPA  0x1000u
#define KT_GUEST_SIZE 0x4000u
#ifndef KT_RUN_GUARD_SECONDS
#define KT_RUN_GUARD_SECONDS 60
#endif

/* One test's KVM objects. A test that bails out (REQUIRE, SKIP) leaves them behind; the next
 * kt_open() releases them, so a failing test does not leak into the others. */
struct kt {
        struct ember_kvm *kvm;
        struct ember_kvm_vm *vm;
        struct ember_kvm_vcpu *vcpu;
        uint8_t *mem;
        size_t mem_size;
        int fds[8];
        int nfds;
};
static struct kt kt_cur;

static inline void kt_release(void)
{
        ember_kvm_vcpu_close(kt_cur.vcpu);
        ember_kvm_vm_close(kt_cur.vm);
        ember_kvm_close(kt_cur.kvm);
        if (kt_cur.mem)
                munmap(kt_cur.mem, kt_cur.mem_size);
        for (int i = 0; i < kt_cur.nfds; i++)
                close(kt_cur.fds[i]);
        memset(&kt_cur, 0, sizeof(kt_cur));
}

/* Opens /dev/kvm, or skips the test with the reason. */
static inline struct kt *kt_open(void)
{
        int ret;

        kt_release();
        ret = ember_kvm_open(&kt_cur.kvm);
        if (ret < 0)
                SKIP("cannot open /dev/kvm: %s (%s)", strerror(-ret), ember_kvm_errno_name(ret));
        return &kt_cur;
}

/* Opens /dev/kvm and creates a VM. */
static inline struct kt *kt_open_vm(void)
{
        struct kt *t = kt_open();
        int ret = ember_kvm_vm_create(t->kvm, &t->vm);

        if (ret < 0)
                FAILF("%s", ember_kvm_last_error(t->kvm));
        return t;
}

#define KT_NEED_CAP(t, cap)                                                                        \
        do {                                                                                       \
                if (!ember_kvm_check_extension((t)->kvm, (cap)))                                   \
                        SKIP("this KVM lacks " #cap);                                              \
        } while (0)

/* Fails the test with the handle's last error when expr (a call returning -errno) fails. */
#define KT_OK(expr, err)                                                                           \
        do {                                                                                       \
                int kt_r_ = (expr);                                                                \
                if (kt_r_ < 0)                                                                     \
                        FAILF("%s = %s: %s", #expr, ember_kvm_errno_name(kt_r_), (err));           \
        } while (0)
#define KT_VM_OK(t, expr)   KT_OK(expr, ember_kvm_vm_last_error((t)->vm))
#define KT_VCPU_OK(t, expr) KT_OK(expr, ember_kvm_vcpu_last_error((t)->vcpu))

/* A new eventfd, closed by kt_release. */
static inline int kt_eventfd(struct kt *t)
{
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

        REQUIRE(fd >= 0);
        REQUIRE(t->nfds < (int)(sizeof(t->fds) / sizeof(t->fds[0])));
        t->fds[t->nfds++] = fd;
        return fd;
}

/* The eventfd's counter (reset to 0), or 0 when it was not signalled. */
static inline uint64_t kt_eventfd_take(int fd)
{
        uint64_t v = 0;

        if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
                return 0;
        return v;
}

/* Maps size bytes of guest memory at gpa as slot 0. */
static inline void kt_add_memory(struct kt *t, uint64_t gpa, size_t size, uint32_t flags)
{
        struct kvm_userspace_memory_region region;

        t->mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        REQUIRE(t->mem != MAP_FAILED);
        t->mem_size = size;
        region = (struct kvm_userspace_memory_region){
            .slot = 0,
            .flags = flags,
            .guest_phys_addr = gpa,
            .memory_size = size,
            .userspace_addr = (uint64_t)(uintptr_t)t->mem,
        };
        KT_VM_OK(t, ember_kvm_vm_set_user_memory_region(t->vm, &region));
}

static inline void kt_create_vcpu(struct kt *t)
{
        KT_VM_OK(t, ember_kvm_vm_create_vcpu(t->vm, 0, &t->vcpu));
}

/* The vCPU in flat real mode at rip: CS base and selector 0 (after checking they start at the
 * reset values), rflags 2. */
static inline void kt_real_mode(struct kt *t, uint64_t rip)
{
        struct kvm_sregs sregs;
        struct kvm_regs regs;

        KT_VCPU_OK(t, ember_kvm_vcpu_get_sregs(t->vcpu, &sregs));
        CHECK(sregs.cs.base != 0 && sregs.cs.selector != 0);
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_sregs(t->vcpu, &sregs));
        KT_VCPU_OK(t, ember_kvm_vcpu_get_regs(t->vcpu, &regs));
        regs.rip = rip;
        regs.rflags = 2;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_regs(t->vcpu, &regs));
}

/* The kvm-ioctls tiny guest: VM, 0x4000 bytes at 0x1000 holding code, vCPU 0 in real mode at
 * 0x1000. */
static inline struct kt *kt_tiny_guest(const uint8_t *code, size_t len, uint32_t slot_flags)
{
        struct kt *t = kt_open_vm();

        REQUIRE(len <= KT_GUEST_SIZE);
        kt_add_memory(t, KT_GUEST_GPA, KT_GUEST_SIZE, slot_flags);
        memcpy(t->mem, code, len);
        kt_create_vcpu(t);
        kt_real_mode(t, KT_GUEST_GPA);
        return t;
}

static inline void kt_set_rax_rbx(struct kt *t, uint64_t rax, uint64_t rbx)
{
        struct kvm_regs regs;

        KT_VCPU_OK(t, ember_kvm_vcpu_get_regs(t->vcpu, &regs));
        regs.rax = rax;
        regs.rbx = rbx;
        KT_VCPU_OK(t, ember_kvm_vcpu_set_regs(t->vcpu, &regs));
}

static volatile sig_atomic_t kt_guard_fired;
static inline void kt_on_guard(int sig)
{
        (void)sig;
        kt_guard_fired = 1;
}

/* KVM_RUN under a generous alarm, so that a guest stuck in the kernel (halted with no
 * interrupt coming, or spinning) fails the test instead of hanging the suite. No timing is
 * asserted: the alarm only bounds a hang. */
static inline int kt_run_guarded(struct kt *t, struct ember_kvm_exit *exit)
{
        struct sigaction sa = {.sa_handler = kt_on_guard}, old;
        int ret;

        kt_guard_fired = 0;
        sigaction(SIGALRM, &sa, &old);
        alarm(KT_RUN_GUARD_SECONDS);
        ret = ember_kvm_vcpu_run(t->vcpu, exit);
        alarm(0);
        sigaction(SIGALRM, &old, NULL);
        if (ret == -EINTR && kt_guard_fired)
                FAILF("the guest did not exit within %d s", KT_RUN_GUARD_SECONDS);
        return ret;
}

/* Runs the vCPU once and requires an exit of the given kind. */
static inline void kt_run_expect(struct kt *t, struct ember_kvm_exit *exit,
                                 enum ember_kvm_exit_kind kind)
{
        char desc[256];
        int ret = kt_run_guarded(t, exit);

        if (ret < 0)
                FAILF("run: %s: %s", ember_kvm_errno_name(ret), ember_kvm_vcpu_last_error(t->vcpu));
        if (exit->kind != kind) {
                ember_kvm_exit_describe(exit, desc, sizeof(desc));
                FAILF("expected %s, got %s", ember_kvm_exit_reason_name((uint32_t)kind), desc);
        }
}

#endif
