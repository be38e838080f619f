/* Fuzz target: a hostile guest driving virtio-blk (the request path: header, data segments,
 * status, discard/write-zeroes segments) through its virtio-mmio window, with every byte of
 * guest RAM under its control, on a small image file (read-write or read-only). The input is a
 * little program; each step is one of the operations below, its operands taken from the
 * following bytes. Nothing may crash, read or write outside guest RAM, hang, or write a
 * read-only image; a guest error may only fail the device, with a reason.
 *
 *   fuzz/run.sh fuzz_virtio_blk [seconds]    libFuzzer (clang)
 *   build/fuzz/fuzz_virtio_blk [--random N] [FILE...]    replay / random inputs (any cc)
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "test_virtio_guest.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"

#define BASE       0xd0000000ull
#define GSI        5u
#define RINGS      0x100000ull
#define REQS       0x200000ull  /* headers, statuses, discard segments */
#define GUEST_SPAN (4ull << 20) /* where guest writes and buffers may land (RAM is 16 MiB) */
#define IMG_BYTES  (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_queue {
        uint16_t size, avail_idx, next_desc;
};

static void bring_up(struct fake_vm *vm, struct fuzz_queue *q, struct fuzz_input *in)
{
        uint32_t feat_lo = fuzz_take(in, 4), feat_hi = fuzz_take(in, 1);
        uint64_t features = feat_lo | (uint64_t)(feat_hi & 1) << 32;
        guest_negotiate(vm, BASE, features);
        unsigned logsz = fuzz_take(in, 1) % 10;
        memset(guest_ptr(vm, RINGS, 0x10000), 0, 0x10000);
        uint32_t size = 1u << logsz, max = guest_queue_num_max(vm, BASE, 0);
        if (size <= VIRTQ_MAX_SIZE && size > max)
                size = max;
        *q = (struct fuzz_queue){.size = (uint16_t)size};
        guest_set_queue_regs(vm, BASE, 0, size, RINGS, RINGS + 0x4000, RINGS + 0x8000);
        mmio_w32(vm, BASE + VIRTIO_MMIO_QUEUE_READY, 1);
        guest_driver_ok(vm, BASE);
}

static void publish(struct fake_vm *vm, struct fuzz_queue *fq, uint16_t head)
{
        uint16_t size = fq->size ? fq->size : 1;
        uint8_t *avail = guest_ptr(vm, RINGS + 0x4000, 4 + 2ull * size);
        memcpy(avail + 4 + 2 * (fq->avail_idx % size), &head, 2);
        fq->avail_idx++;
        __atomic_store_n((uint16_t *)(avail + 2), fq->avail_idx, __ATOMIC_RELEASE);
}

static void put_desc(struct fake_vm *vm, uint16_t d, uint64_t gpa, uint32_t len, uint16_t flags,
                     uint16_t next)
{
        uint8_t *e = guest_ptr(vm, RINGS + 16ull * d, 16);
        memcpy(e, &gpa, 8);
        memcpy(e + 8, &len, 4);
        memcpy(e + 12, &flags, 2);
        memcpy(e + 14, &next, 2);
}

/* A request shaped like Linux's: a header (type and sector from the input), 0..4 data
 * segments with addresses, lengths and directions from the input, and a status byte. */
static void request(struct fake_vm *vm, struct fuzz_queue *fq, struct fuzz_input *in)
{
        static const uint32_t types[] = {0, 1, 4, 8, 11, 13, 2, 0xffffffffu};
        uint16_t size = fq->size ? fq->size : 1;
        uint32_t type = types[fuzz_take(in, 1) % 8];
        uint64_t sector = fuzz_take(in, 2);
        if (sector >= 0xff00)
                sector = UINT64_MAX - (sector & 0xff); /* near the top, for overflow */
        unsigned slot = fq->avail_idx % 64;
        uint64_t hdr = REQS + 32ull * slot, st = REQS + 0x1000 + slot;
        uint8_t *h = guest_ptr(vm, hdr, 16);
        memset(h, 0, 16);
        memcpy(h, &type, 4);
        memcpy(h + 8, &sector, 8);
        unsigned nseg = fuzz_take(in, 1) % 5;
        uint16_t head = fq->next_desc % size, d = head;
        put_desc(vm, d, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)((d + 1) % size));
        d = (uint16_t)((d + 1) % size);
        for (unsigned k = 0; k < nseg; k++) {
                uint64_t gpa = fuzz_take(in, 3) % GUEST_SPAN;
                uint32_t len = fuzz_take(in, 1) * 512u + (fuzz_take(in, 1) & 1 ? 0 : 16);
                uint16_t flags = (uint16_t)(fuzz_take(in, 1) & VIRTQ_DESC_F_WRITE);
                put_desc(vm, d, gpa, len, flags | VIRTQ_DESC_F_NEXT, (uint16_t)((d + 1) % size));
                d = (uint16_t)((d + 1) % size);
        }
        put_desc(vm, d, st, 1, VIRTQ_DESC_F_WRITE, 0);
        fq->next_desc = (uint16_t)((d + 1) % size);
        publish(vm, fq, head);
        gq_kick_index(vm, BASE, 0);
}

/* One chain of 1..3 arbitrary descriptors (addresses, lengths, flags from the input). */
static void raw_chain(struct fake_vm *vm, struct fuzz_queue *fq, struct fuzz_input *in)
{
        uint16_t size = fq->size ? fq->size : 1;
        unsigned nseg = 1 + fuzz_take(in, 1) % 3;
        uint16_t head = fq->next_desc % size, d = head;
        for (unsigned k = 0; k < nseg; k++) {
                uint64_t gpa = fuzz_take(in, 3) % GUEST_SPAN;
                uint32_t len = fuzz_take(in, 2);
                uint16_t flags = (uint16_t)(fuzz_take(in, 1) & (VIRTQ_DESC_F_WRITE | 4u));
                uint16_t next = (uint16_t)((d + 1) % size);
                if (k + 1 < nseg)
                        flags |= VIRTQ_DESC_F_NEXT;
                put_desc(vm, d, gpa, len, flags, next);
                d = next;
        }
        fq->next_desc = d;
        publish(vm, fq, head);
        gq_kick_index(vm, BASE, 0);
}

/* Lets the worker finish what it has (bounded), servicing the event loop meanwhile. */
static void settle(struct fake_vm *vm, struct virtio_blk *b)
{
        for (int i = 0; i < 200; i++) {
                evloop_run_once(&vm->loop, 0);
                if (blk_in_flight(b) == 0)
                        break;
                usleep(100);
        }
        evloop_run_once(&vm->loop, 0);
}

static char img_path[128];
static uint8_t img_ref[IMG_BYTES]; /* the image as it must stay when read-only */

static void image_remove(void)
{
        unlink(img_path);
}

static void image_reset(void)
{
        int fd = open(img_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || pwrite(fd, img_ref, IMG_BYTES, 0) != IMG_BYTES)
                abort();
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (!img_path[0]) {
                const char *tmp = getenv("TMPDIR");
                snprintf(img_path, sizeof(img_path), "%s/ember-fuzz-blk.%d.img",
                         tmp && *tmp ? tmp : "/tmp", (int)getpid());
                for (unsigned i = 0; i < IMG_BYTES; i++)
                        img_ref[i] = (uint8_t)(i * 31 + (i >> 9));
                atexit(image_remove);
        }
        struct fuzz_input in = {data, size};
        bool ro = fuzz_take(&in, 1) & 1;
        image_reset();
        static struct fake_vm vm;
        if (fake_vm_init(&vm) != 0)
                abort();
        struct blk_params p = {.path = img_path, .read_only = ro, .serial = "fuzz"};
        struct virtio_dev *vd;
        struct virtio_blk *b;
        struct virtio_mmio *t;
        enum ember_error code;
        char err[256];
        if (blk_create(&vm.env, &p, &vd, &b, &code, err, sizeof(err)) != 0)
                abort();
        if (virtio_mmio_create(&vm.env, BASE, GSI, vd, &t, err, sizeof(err)) != 0)
                abort();
        struct fuzz_queue q = {0};
        unsigned steps = 0;
        while (in.n && steps++ < 256) {
                switch (fuzz_take(&in, 1) % 10) {
                case 0:
                        mmio_w32(&vm, BASE + fuzz_take(&in, 2) % 0x200, fuzz_take(&in, 4));
                        break;
                case 1:
                        mmio_r32(&vm, BASE + fuzz_take(&in, 2) % 0x200);
                        break;
                case 2: { /* odd sizes and offsets, config space included */
                        static const uint32_t sizes[] = {1, 2, 4, 8};
                        uint32_t len = sizes[fuzz_take(&in, 1) % 4];
                        uint64_t off = 0x100 + fuzz_take(&in, 1) % 0x48;
                        uint8_t buf[8];
                        uint32_t v = fuzz_take(&in, 4);
                        memcpy(buf, &v, 4);
                        memcpy(buf + 4, &v, 4);
                        fake_mmio(&vm, BASE + off, buf, len, fuzz_take(&in, 1) & 1);
                        break;
                }
                case 3: { /* the guest rewrites its memory: rings, headers, segments */
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
                        settle(&vm, b);
                        break;
                case 5:
                        gq_kick_index(&vm, BASE, fuzz_take(&in, 1) % 3);
                        break;
                case 6:
                        bring_up(&vm, &q, &in);
                        break;
                case 7:
                case 8:
                        request(&vm, &q, &in);
                        break;
                case 9:
                        if (fuzz_take(&in, 1) & 1)
                                raw_chain(&vm, &q, &in);
                        else
                                mmio_w32(&vm, BASE + VIRTIO_MMIO_STATUS, 0); /* reset */
                        break;
                }
        }
        settle(&vm, b);
        virtio_dev_quiesce(vd);
        virtio_mmio_destroy(t);
        virtio_dev_destroy(vd);
        if (vm.stops && !vm.stop_why[0])
                abort(); /* a failed device says why */
        fake_vm_destroy(&vm);
        if (ro) {
                static uint8_t now[IMG_BYTES];
                int fd = open(img_path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || pread(fd, now, IMG_BYTES, 0) != IMG_BYTES)
                        abort();
                close(fd);
                if (memcmp(now, img_ref, IMG_BYTES) != 0)
                        abort(); /* a read-only image was written */
        }
        return 0;
}
