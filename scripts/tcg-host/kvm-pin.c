/* kvm-pin: holds one idle KVM VM (one vCPU with an in-kernel local APIC, never run) for as long
 * as the TCG test host lives.
 *
 * Why: creating and destroying a VM flips static keys in the host kernel (KVM's preempt
 * notifier key, used in __schedule, and the "APIC software-disabled" key), and each flip
 * rewrites kernel text with int3 breakpoints (text_poke_bp). QEMU's multi-threaded TCG sometimes
 * keeps executing a stale translation of such a site: both L1 vCPUs then loop forever on the
 * int3 at __schedule+0x2ab (seen with QEMU 7.2's monitor), and the whole test host freezes.
 * With one VM always alive the keys never go back to zero, so running guests no longer
 * rewrites kernel text.
 *
 * It sets everything up, forks, and the parent exits 0 once the pin is in place (non-zero, with
 * a message, if it could not be); the child keeps the VM until it is killed. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
        int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0) {
                fprintf(stderr, "kvm-pin: /dev/kvm: %s\n", strerror(errno));
                return 1;
        }
        int vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm < 0) {
                fprintf(stderr, "kvm-pin: KVM_CREATE_VM: %s\n", strerror(errno));
                return 1;
        }
        struct kvm_enable_cap split = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {24}};
        if (ioctl(vm, KVM_ENABLE_CAP, &split) != 0 && ioctl(vm, KVM_CREATE_IRQCHIP, 0) != 0) {
                fprintf(stderr, "kvm-pin: no in-kernel local APIC: %s\n", strerror(errno));
                return 1;
        }
        int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
        if (vcpu < 0) {
                fprintf(stderr, "kvm-pin: KVM_CREATE_VCPU: %s\n", strerror(errno));
                return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
                fprintf(stderr, "kvm-pin: fork: %s\n", strerror(errno));
                return 1;
        }
        if (pid > 0)
                return 0; /* the child holds the VM */
        setsid();
        for (;;)
                pause();
}
