/* Fuzz target: a hostile guest driving virtio-console through its virtio-mmio window, as vCPU
 * MMIO exits would, with every byte of guest RAM (rings, descriptors, buffers, control messages)
 * under its control, while the host feeds stdin. The input is a little program; each step is
 * one of the operations below, its operands taken from the following bytes. Nothing may crash,
 * read or write outside guest RAM, or hang; a guest error may only fail the device.
 *
 *   fuzz/run.sh fuzz_virtio_console [seconds]    libFuzzer (clang)
 *   build/fuzz/fuzz_virtio_console [--random N] [FILE...]    replay / random inputs (any cc)
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "test_virtio_guest.h"
#include "core/hostfd.h"
#include "virtio/console.h"

#define BASE       0xd0000000ull
#define GSI        5u
#define RINGS      0x100000ull /* queue i's rings at RINGS + i * RING_SLOT */
#define RING_SLOT  0x10000ull
#define GUEST_SPAN (4ull << 20) /* where guest writes and buffers may land (RAM is 16 MiB) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_queue {
        uint16_t size, avail_idx, next_desc;
};

static void bring_up(struct fake_vm *vm, struct fuzz_queue *q, struct fuzz_input *in)
{
        uint32_t feat_lo = fuzz_take(in, 4), feat_hi = fuzz_take(in, 1);
        uint64_t features = feat_lo | (uint64_t)(feat_hi & 1) << 32;
        guest_negotiate(vm, BASE, features);
        /* 1..256 entries, cut to each queue's QueueNumMax as a driver does; 512 is kept, for a
         * size the device must refuse. */
        unsigned logsz = fuzz_take(in, 1) % 10;
        for (unsigned i = 0; i < VIRTIO_CONSOLE_NR_QUEUES; i++) {
                uint64_t r = RINGS + i * RING_SLOT;
                memset(guest_ptr(vm, r, RING_SLOT), 0, RING_SLOT);
                uint32_t size = 1u << logsz, max = guest_queue_num_max(vm, BASE, i);
                if (size <= VIRTQ_MAX_SIZE && size > max)
                        size = max;
                q[i] = (struct fuzz_queue){.size = (uint16_t)size};
                guest_set_queue_regs(vm, BASE, i, size, r, r + 0x4000, r + 0x8000);
                mmio_w32(vm, BASE + VIRTIO_MMIO_QUEUE_READY, 1);
        }
        guest_driver_ok(vm, BASE);
}

/* One chain of 1..3 descriptors whose addresses and lengths come from the input. */
static void post(struct fake_vm *vm, struct fuzz_queue *queues, unsigned qi, struct fuzz_input *in)
{
        struct fuzz_queue *fq = &queues[qi];
        uint64_t r = RINGS + qi * RING_SLOT;
        uint16_t size = fq->size ? fq->size : 1;
        unsigned nseg = 1 + fuzz_take(in, 1) % 3;
        uint16_t head = fq->next_desc % size, d = head;
        for (unsigned k = 0; k < nseg; k++) {
                uint64_t gpa = fuzz_take(in, 3) % GUEST_SPAN;
                uint32_t len = fuzz_take(in, 2);
                uint16_t flags = (uint16_t)(fuzz_take(in, 1) & (VIRTQ_DESC_F_WRITE | 8u));
                uint16_t next = (uint16_t)((d + 1) % size);
                if (k + 1 < nseg)
                        flags |= VIRTQ_DESC_F_NEXT;
                uint8_t *e = guest_ptr(vm, r + 16ull * d, 16);
                memcpy(e, &gpa, 8);
                memcpy(e + 8, &len, 4);
                memcpy(e + 12, &flags, 2);
                memcpy(e + 14, &next, 2);
                d = next;
        }
        fq->next_desc = d;
        uint8_t *avail = guest_ptr(vm, r + 0x4000, 4 + 2ull * size);
        memcpy(avail + 4 + 2 * (fq->avail_idx % size), &head, 2);
        fq->avail_idx++;
        __atomic_store_n((uint16_t *)(avail + 2), fq->avail_idx, __ATOMIC_RELEASE);
        gq_kick_index(vm, BASE, qi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static int devnull = -1;
        if (devnull < 0 && (devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
                abort();
        static struct fake_vm vm;
        if (fake_vm_init(&vm) != 0)
                abort();
        int in_pipe[2];
        if (pipe2(in_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
                abort();
        struct virtio_console *c;
        struct virtio_mmio *t;
        char err[256];
        if (virtio_console_create(&vm.env, in_pipe[0], devnull, devnull, &c, err, sizeof(err)) !=
                0 ||
            virtio_mmio_create(&vm.env, BASE, GSI, virtio_console_dev(c), &t, err, sizeof(err)) !=
                0)
                abort();
        struct fuzz_queue q[VIRTIO_CONSOLE_NR_QUEUES] = {{0}};
        struct fuzz_input in = {data, size};
        unsigned steps = 0;
        while (in.n && steps++ < 512) {
                switch (fuzz_take(&in, 1) % 10) {
                case 0: /* any register write, config space included */
                        mmio_w32(&vm, BASE + fuzz_take(&in, 2) % 0x200, fuzz_take(&in, 4));
                        break;
                case 1:
                        mmio_r32(&vm, BASE + fuzz_take(&in, 2) % 0x200);
                        break;
                case 2: { /* odd sizes and offsets */
                        static const uint32_t sizes[] = {1, 2, 3, 8};
                        uint32_t len = sizes[fuzz_take(&in, 1) % 4];
                        uint64_t off = fuzz_take(&in, 2) % 0x1000;
                        uint8_t buf[8];
                        uint32_t v = fuzz_take(&in, 4);
                        memcpy(buf, &v, 4);
                        memcpy(buf + 4, &v, 4);
                        fake_mmio(&vm, BASE + off, buf, len, fuzz_take(&in, 1) & 1);
                        break;
                }
                case 3: { /* the guest rewrites its memory: rings, descriptors, buffers */
                        uint64_t gpa = fuzz_take(&in, 3) % GUEST_SPAN;
                        uint32_t len = fuzz_take(&in, 1);
                        if (len > in.n)
                                len = (uint32_t)in.n;
                        memcpy(guest_ptr(&vm, gpa, len ? len : 1), in.p, len);
                        in.p += len;
                        in.n -= len;
                        break;
                }
                case 4:
                        for (int i = 0; i < 4; i++)
                                evloop_run_once(&vm.loop, 0);
                        break;
                case 5:
                        gq_kick_index(&vm, BASE,
                                      fuzz_take(&in, 1) % (VIRTIO_CONSOLE_NR_QUEUES + 2));
                        break;
                case 6:
                        bring_up(&vm, q, &in);
                        break;
                case 7:
                        post(&vm, q, fuzz_take(&in, 1) % VIRTIO_CONSOLE_NR_QUEUES, &in);
                        break;
                case 8: { /* a control message, in a well-formed chain, with any content */
                        /* each in its own buffer: several may wait for the device */
                        uint64_t msg = RINGS + VIRTIO_CONSOLE_NR_QUEUES * RING_SLOT +
                                       16ull * (q[VIRTIO_CONSOLE_CTRL_TX].avail_idx % 64);
                        uint32_t v[2] = {fuzz_take(&in, 1) % 5, fuzz_take(&in, 4)};
                        memcpy(guest_ptr(&vm, msg, 8), v, 8);
                        uint8_t ops[] = {
                            0, (uint8_t)msg, (uint8_t)(msg >> 8), (uint8_t)(msg >> 16), 8, 0, 0};
                        struct fuzz_input one = {ops, sizeof(ops)};
                        post(&vm, q, VIRTIO_CONSOLE_CTRL_TX, &one);
                        break;
                }
                case 9: { /* host stdin: some bytes, or EOF */
                        uint32_t len = fuzz_take(&in, 1);
                        if (len == 0 && in_pipe[1] >= 0) {
                                close(in_pipe[1]);
                                in_pipe[1] = -1;
                        } else if (in_pipe[1] >= 0) {
                                if (len > in.n)
                                        len = (uint32_t)in.n;
                                if (write(in_pipe[1], in.p, len) < 0) {
                                        /* full pipe: the device reads only into guest buffers */
                                }
                                in.p += len;
                                in.n -= len;
                        }
                        break;
                }
                }
        }
        fake_run(&vm, 0);
        struct timespec deadline = hostfd_deadline_in(2000);
        virtio_console_flush(c, &deadline, UINT64_MAX, -1);
        virtio_mmio_destroy(t);
        virtio_console_destroy(c);
        if (vm.stops && !vm.stop_why[0])
                abort(); /* a failed device says why */
        fake_vm_destroy(&vm);
        close(in_pipe[0]);
        if (in_pipe[1] >= 0)
                close(in_pipe[1]);
        return 0;
}
