/* Decoding of KVM_RUN's result and the run area into struct ember_kvm_exit. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kvm/kvm_internal.h"

/* Layout of kvm_run's exit union for KVM_EXIT_MEMORY_FAULT (Linux 6.8+), for headers that
 * predate it. */
struct memory_fault_layout {
        uint64_t flags, gpa, size;
};

static uint32_t min_u32(uint32_t a, uint32_t b)
{
        return a < b ? a : b;
}

static int decode_io(struct kvm_run *run, size_t run_size, struct ember_kvm_exit *exit)
{
        uint64_t len = (uint64_t)run->io.size * run->io.count;

        if (run->io.direction != KVM_EXIT_IO_IN && run->io.direction != KVM_EXIT_IO_OUT)
                return -EINVAL;
        if (run->io.size != 1 && run->io.size != 2 && run->io.size != 4)
                return -EINVAL;
        if (run->io.count == 0 || run->io.data_offset > run_size ||
            len > run_size - run->io.data_offset)
                return -EINVAL;
        exit->u.io.port = run->io.port;
        exit->u.io.direction = run->io.direction;
        exit->u.io.size = run->io.size;
        exit->u.io.count = run->io.count;
        exit->u.io.data = (uint8_t *)run + run->io.data_offset;
        return 0;
}

int kvm_exit_decode(struct kvm_run *run, size_t run_size, int ret, struct ember_kvm_exit *exit)
{
        memset(exit, 0, sizeof(*exit));
        exit->reason = run->exit_reason;
        exit->kind = EMBER_KVM_EXIT_UNKNOWN;
        if (ret < 0) {
                /* The one exit that comes with -1: errno EFAULT or EHWPOISON. */
                if ((ret == -EFAULT || ret == -EHWPOISON) &&
                    run->exit_reason == EMBER_KVM_EXIT_MEMORY_FAULT)
                        goto decode;
                if (ret == -EINTR) {
                        exit->kind = EMBER_KVM_EXIT_INTR;
                        exit->reason = KVM_EXIT_INTR;
                }
                return ret;
        }
decode:
        if (!kvm_exit_reason_known(run->exit_reason)) {
                exit->kind = EMBER_KVM_EXIT_UNSUPPORTED;
                return 0;
        }
        exit->kind = (enum ember_kvm_exit_kind)run->exit_reason;
        switch (exit->kind) {
        case EMBER_KVM_EXIT_UNKNOWN:
                exit->u.unknown.hardware_exit_reason = run->hw.hardware_exit_reason;
                break;
        case EMBER_KVM_EXIT_EXCEPTION:
                exit->u.exception.exception = run->ex.exception;
                exit->u.exception.error_code = run->ex.error_code;
                break;
        case EMBER_KVM_EXIT_IO:
                return decode_io(run, run_size, exit);
        case EMBER_KVM_EXIT_MMIO:
                if (run->mmio.len == 0 || run->mmio.len > sizeof(run->mmio.data))
                        return -EINVAL;
                exit->u.mmio.gpa = run->mmio.phys_addr;
                exit->u.mmio.data = run->mmio.data;
                exit->u.mmio.len = run->mmio.len;
                exit->u.mmio.is_write = run->mmio.is_write != 0;
                break;
        case EMBER_KVM_EXIT_HYPERCALL:
                exit->u.hypercall.nr = run->hypercall.nr;
                memcpy(exit->u.hypercall.args, run->hypercall.args, sizeof(exit->u.hypercall.args));
                exit->u.hypercall.ret = (uint64_t *)&run->hypercall.ret;
                exit->u.hypercall.longmode = run->hypercall.longmode;
                break;
        case EMBER_KVM_EXIT_DEBUG:
                exit->u.debug = run->debug.arch;
                break;
        case EMBER_KVM_EXIT_FAIL_ENTRY:
                exit->u.fail_entry.hardware_entry_failure_reason =
                    run->fail_entry.hardware_entry_failure_reason;
                exit->u.fail_entry.cpu = run->fail_entry.cpu;
                break;
        case EMBER_KVM_EXIT_TPR_ACCESS:
                exit->u.tpr_access.rip = run->tpr_access.rip;
                exit->u.tpr_access.is_write = run->tpr_access.is_write;
                break;
        case EMBER_KVM_EXIT_INTERNAL_ERROR:
                exit->u.internal.suberror = run->internal.suberror;
                exit->u.internal.ndata = min_u32(run->internal.ndata, 16);
                exit->u.internal.data = (const uint64_t *)run->internal.data;
                break;
        case EMBER_KVM_EXIT_SYSTEM_EVENT:
                exit->u.system_event.type = run->system_event.type;
                exit->u.system_event.ndata = min_u32(run->system_event.ndata, 16);
                exit->u.system_event.data = (const uint64_t *)run->system_event.data;
                break;
        case EMBER_KVM_EXIT_IOAPIC_EOI:
                exit->u.ioapic_eoi.vector = run->eoi.vector;
                break;
        case EMBER_KVM_EXIT_X86_RDMSR:
        case EMBER_KVM_EXIT_X86_WRMSR:
                exit->u.msr.reason = run->msr.reason;
                exit->u.msr.index = run->msr.index;
                exit->u.msr.data = (uint64_t *)&run->msr.data;
                exit->u.msr.error = &run->msr.error;
                break;
        case EMBER_KVM_EXIT_MEMORY_FAULT: {
                struct memory_fault_layout mf;

                memcpy(&mf, run->padding, sizeof(mf));
                exit->u.memory_fault.flags = mf.flags;
                exit->u.memory_fault.gpa = mf.gpa;
                exit->u.memory_fault.size = mf.size;
                break;
        }
        case EMBER_KVM_EXIT_NOTIFY:
                exit->u.notify.flags = run->notify.flags;
                break;
        case EMBER_KVM_EXIT_HYPERV:
                exit->u.hyperv = &run->hyperv;
                break;
        case EMBER_KVM_EXIT_XEN:
                exit->u.xen = &run->xen;
                break;
        default:
                /* Known exit without a payload ember decodes (HLT, SHUTDOWN, ...). */
                break;
        }
        return 0;
}

int ember_kvm_exit_describe(const struct ember_kvm_exit *exit, char *buf, size_t len)
{
        const char *name = ember_kvm_exit_reason_name(exit->reason);

        switch (exit->kind) {
        case EMBER_KVM_EXIT_UNSUPPORTED:
                return snprintf(buf, len, "unsupported %u", exit->reason);
        case EMBER_KVM_EXIT_UNKNOWN:
                return snprintf(buf, len, "%s hardware reason 0x%llx", name,
                                (unsigned long long)exit->u.unknown.hardware_exit_reason);
        case EMBER_KVM_EXIT_EXCEPTION:
                return snprintf(buf, len, "%s vector %u error code 0x%x", name,
                                exit->u.exception.exception, exit->u.exception.error_code);
        case EMBER_KVM_EXIT_IO:
                return snprintf(buf, len, "%s %s port 0x%x size %u count %u", name,
                                exit->u.io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
                                exit->u.io.port, exit->u.io.size, exit->u.io.count);
        case EMBER_KVM_EXIT_MMIO:
                return snprintf(buf, len, "%s %s gpa 0x%llx len %u", name,
                                exit->u.mmio.is_write ? "write" : "read",
                                (unsigned long long)exit->u.mmio.gpa, exit->u.mmio.len);
        case EMBER_KVM_EXIT_HYPERCALL:
                return snprintf(buf, len, "%s nr %llu", name,
                                (unsigned long long)exit->u.hypercall.nr);
        case EMBER_KVM_EXIT_DEBUG:
                return snprintf(buf, len, "%s exception %u pc 0x%llx dr6 0x%llx dr7 0x%llx", name,
                                exit->u.debug.exception, (unsigned long long)exit->u.debug.pc,
                                (unsigned long long)exit->u.debug.dr6,
                                (unsigned long long)exit->u.debug.dr7);
        case EMBER_KVM_EXIT_FAIL_ENTRY:
                return snprintf(
                    buf, len, "%s hardware reason 0x%llx cpu %u", name,
                    (unsigned long long)exit->u.fail_entry.hardware_entry_failure_reason,
                    exit->u.fail_entry.cpu);
        case EMBER_KVM_EXIT_INTERNAL_ERROR: {
                int n = snprintf(buf, len, "%s suberror %u", name, exit->u.internal.suberror);

                for (uint32_t i = 0; i < exit->u.internal.ndata && n >= 0 && (size_t)n < len; i++)
                        n += snprintf(buf + n, len - (size_t)n, " 0x%llx",
                                      (unsigned long long)exit->u.internal.data[i]);
                return n;
        }
        case EMBER_KVM_EXIT_SYSTEM_EVENT:
                return snprintf(buf, len, "%s type %u", name, exit->u.system_event.type);
        case EMBER_KVM_EXIT_X86_RDMSR:
        case EMBER_KVM_EXIT_X86_WRMSR:
                return snprintf(buf, len, "%s index 0x%x reason 0x%x", name, exit->u.msr.index,
                                exit->u.msr.reason);
        case EMBER_KVM_EXIT_MEMORY_FAULT:
                return snprintf(buf, len, "%s gpa 0x%llx size 0x%llx flags 0x%llx", name,
                                (unsigned long long)exit->u.memory_fault.gpa,
                                (unsigned long long)exit->u.memory_fault.size,
                                (unsigned long long)exit->u.memory_fault.flags);
        default:
                return snprintf(buf, len, "%s", name);
        }
}
