/* Fuzz target: a hostile guest driving virtio-balloon through its virtio-mmio window, as vCPU
 * MMIO exits would, with every byte of guest RAM under its control: features (and with them the
 * queue roles), rings, descriptors, PFN arrays for inflate and deflate, reported ranges
 * (anywhere: inside RAM, across the MMIO gap, past the end), stats buffers, config writes,
 * resets; the host sets targets and the stats timer fires. RAM is two regions, [0, 8 MiB) and
 * [4 GiB, 4 GiB + 8 MiB), so the gap is in reach. The input is a little program; each step is
 * one of the operations below, its operands taken from the following bytes. Nothing may crash,
 * hang or touch memory outside guest RAM; a guest error may only fail the device, which then
 * says why.
 *
 *   fuzz/run.sh fuzz_virtio_balloon [seconds]    libFuzzer (clang)
 *   build/fuzz/fuzz_virtio_balloon [--random N] [FILE...]    replay / random inputs (any cc)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "fuzz_input.h"
#include "test_virtio_guest.h"
#include "core/devices.h"
#include "core/metrics.h"
#include "core/vm_internal.h"
#include "virtio/balloon.h"

#define BASE      0xd0000000ull
#define GSI       5u
#define NQ        4u
#define RINGS     0x100000ull /* queue i's rings at RINGS + i * RING_SLOT */
#define RING_SLOT 0x10000ull
#define RAM       (16ull << 20)
#define GAP       (8ull << 20)
#define HIGH      (4ull << 30)

extern const struct vm_device_type virtio_balloon_type;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_queue {
        uint16_t size, avail_idx, next_desc;
};

static void bring_up(struct fake_vm *vm, struct fuzz_queue *q, struct fuzz_input *in)
{
        uint32_t feat_lo = fuzz_take(in, 1), feat_hi = fuzz_take(in, 1);
        uint64_t features = feat_lo | (uint64_t)(feat_hi & 1) << 32 | (feat_hi & 2ull) << 27;
        guest_negotiate(vm, BASE, features);
        /* 1..256 entries, cut to each queue's QueueNumMax as a driver does; 512 is kept, for a
         * size the device must refuse. */
        unsigned logsz = fuzz_take(in, 1) % 10;
        for (unsigned i = 0; i < NQ; i++) {
                uint64_t r = RINGS + i * RING_SLOT;
                memset(guest_ptr(vm, r, RING_SLOT), 0, RING_SLOT);
                uint32_t size = 1u << logsz, max = guest_queue_num_max(vm, BASE, i);
                if (size <= VIRTQ_MAX_SIZE && size > max)
                        size = max;
                q[i] = (struct fuzz_queue){.size = (uint16_t)size};
                if (!size)
                        continue;
                guest_set_queue_regs(vm, BASE, i, size, r, r + 0x4000, r + 0x8000);
                mmio_w32(vm, BASE + VIRTIO_MMIO_QUEUE_READY, 1);
        }
        guest_driver_ok(vm, BASE);
}

/* A guest physical address: low RAM, the high region, or around and past them. */
static uint64_t take_gpa(struct fuzz_input *in)
{
        uint32_t sel = fuzz_take(in, 1), off = fuzz_take(in, 3);
        switch (sel % 4) {
        case 0:
                return 0x200000ull + off % (GAP - 0x200000ull); /* low, past the rings */
        case 1:
                return HIGH + off % (RAM - GAP);
        case 2:
                return GAP - 0x8000ull + off % 0x10000ull; /* across the gap's start */
        default:
                return HIGH + (RAM - GAP) - 0x8000ull + off % 0x10000ull; /* past the end */
        }
}

/* One chain of 1..4 descriptors: addresses, lengths and flags from the input. */
static void post(struct fake_vm *vm, struct fuzz_queue *queues, unsigned qi, struct fuzz_input *in)
{
        struct fuzz_queue *fq = &queues[qi];
        uint64_t r = RINGS + qi * RING_SLOT;
        uint16_t size = fq->size ? fq->size : 1;
        unsigned nseg = 1 + fuzz_take(in, 1) % 4;
        uint16_t head = fq->next_desc % size, d = head;
        for (unsigned k = 0; k < nseg; k++) {
                uint64_t gpa = take_gpa(in);
                uint32_t len = fuzz_take(in, 3);
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

/* A PFN array at a fixed place (the input chooses the frames) and one chain naming it. */
static void post_pfns(struct fake_vm *vm, struct fuzz_queue *queues, unsigned qi,
                      struct fuzz_input *in)
{
        static const uint64_t arr = 0x180000ull;
        unsigned n = 1 + fuzz_take(in, 1) % 64;
        uint32_t pfn[64];
        for (unsigned i = 0; i < n; i++) {
                uint32_t kind = fuzz_take(in, 1);
                /* runs, repeats, the gap, far away */
                if (kind < 200)
                        pfn[i] = (uint32_t)(take_gpa(in) >> 12);
                else if (kind < 240 && i)
                        pfn[i] = pfn[i - 1] + 1;
                else
                        pfn[i] = fuzz_take(in, 4);
        }
        memcpy(guest_ptr(vm, arr, sizeof(pfn)), pfn, 4ull * n);
        uint32_t len = 4 * n - fuzz_take(in, 1) % 4; /* sometimes a ragged end */
        struct fuzz_queue *fq = &queues[qi];
        uint64_t r = RINGS + qi * RING_SLOT;
        uint16_t size = fq->size ? fq->size : 1;
        uint16_t head = fq->next_desc % size;
        uint8_t *e = guest_ptr(vm, r + 16ull * head, 16);
        uint16_t flags = 0, next = 0;
        memcpy(e, &arr, 8);
        memcpy(e + 8, &len, 4);
        memcpy(e + 12, &flags, 2);
        memcpy(e + 14, &next, 2);
        fq->next_desc = (uint16_t)((head + 1) % size);
        uint8_t *avail = guest_ptr(vm, r + 0x4000, 4 + 2ull * size);
        memcpy(avail + 4 + 2 * (fq->avail_idx % size), &head, 2);
        fq->avail_idx++;
        __atomic_store_n((uint16_t *)(avail + 2), fq->avail_idx, __ATOMIC_RELEASE);
        gq_kick_index(vm, BASE, qi);
}

/* The stats timer, fired now instead of after a second: the loop source the device owns. */
static void stats_tick(struct fake_vm *vm, struct virtio_dev *vd)
{
        for (unsigned i = 0; i < EVLOOP_MAX_SOURCES; i++) {
                struct evloop_source *s = &vm->loop.src[i];
                if (s->fd >= 0 && s->cb && s->opaque == virtio_dev_priv(vd))
                        s->cb(s->opaque, EPOLLIN);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct fake_vm vm;
        if (fake_vm_init(&vm) != 0)
                abort();
        gmem_destroy(&vm.mem);
        if (gmem_init(&vm.mem, RAM, GAP) != 0)
                abort();
        struct ember_metrics *m = metrics_new();
        if (!m)
                abort();
        vm.env.metrics = m;
        struct fuzz_input in = {data, size};
        struct ember_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.balloon = true;
        cfg.balloon_flags = fuzz_take(&in, 1) & 7;
        struct virtio_dev *vd;
        struct virtio_mmio *t;
        enum ember_error code;
        char err[256];
        if (virtio_balloon_type.create(&vm.env, &cfg, 0, &vd, &code, err, sizeof(err)) != 0 ||
            virtio_mmio_create(&vm.env, BASE, GSI, vd, &t, err, sizeof(err)) != 0)
                abort();
        struct fuzz_queue q[NQ] = {{0}};
        unsigned steps = 0;
        while (in.n && steps++ < 512) {
                switch (fuzz_take(&in, 1) % 11) {
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
                case 3: { /* the guest rewrites its memory: rings, descriptors, stats, arrays */
                        uint64_t gpa = 0x80000ull + fuzz_take(&in, 3) % 0x380000ull;
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
                        gq_kick_index(&vm, BASE, fuzz_take(&in, 1) % (NQ + 2));
                        break;
                case 6:
                        bring_up(&vm, q, &in);
                        break;
                case 7:
                        post(&vm, q, fuzz_take(&in, 1) % NQ, &in);
                        break;
                case 8:
                        post_pfns(&vm, q, fuzz_take(&in, 1) % NQ, &in);
                        break;
                case 9:
                        virtio_balloon_set_target(vd, fuzz_take(&in, 1) % 20, err, sizeof(err));
                        break;
                case 10:
                        stats_tick(&vm, vd);
                        break;
                }
        }
        fake_run(&vm, 0);
        struct ember_metrics_sample s;
        ember_metrics_sample(m, &s);
        /* Only whole pages are given back. */
        if (s.balloon_reported_bytes % 4096 || s.balloon_inflated_bytes % 4096)
                abort();
        virtio_dev_quiesce(vd);
        virtio_mmio_destroy(t);
        virtio_dev_destroy(vd);
        if (vm.stops && !vm.stop_why[0])
                abort(); /* a failed device says why */
        metrics_release(m);
        fake_vm_destroy(&vm);
        return 0;
}
