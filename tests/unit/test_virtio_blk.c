/* virtio-blk behind the virtio core and virtio-mmio, driven by a fake guest that talks to it as
 * Linux's virtio_blk does (header, data segments, status byte), and by a hostile one: malformed
 * requests of every kind, the same head re-added forever, aliased and overlapping descriptors,
 * chains without writable space, a read-only disk asked to write, resets with I/O in flight,
 * and a queue hammered after the VM stopped. */
#include "test.h"

#include "test_virtio_guest.h"

#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "virtio/blk.h"
#include "virtio/virtio.h"

#define BBASE 0xd0002000ull
#define BGSI  7u

#define T_IN    0u
#define T_OUT   1u
#define T_FLUSH 4u
#define T_GETID 8u
#define T_DISC  11u
#define T_WZ    13u

#define S_OK     0u
#define S_IOERR  1u
#define S_UNSUPP 2u
#define S_NONE   0xeeu /* what the fake driver leaves in a status byte before the request */

#define F_SIZE_MAX 1
#define F_SEG_MAX  2
#define F_RO       5
#define F_BLK_SIZE 6
#define F_FLUSH    9
#define F_DISCARD  13
#define F_WZ       14

#define IMG_SIZE (8u << 20)

static struct fake_vm vm;
static struct virtio_dev *VD;
static struct virtio_blk *B;
static struct virtio_mmio *T;
static struct gq Q;
static char img[256];

/* ---- the fake guest */

static void make_image(const char *path, uint64_t size, uint8_t fill)
{
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        REQUIRE(fd >= 0);
        static uint8_t buf[64 * 1024];
        memset(buf, fill, sizeof(buf));
        for (uint64_t off = 0; off < size; off += sizeof(buf))
                REQUIRE(pwrite(fd, buf, sizeof(buf), (off_t)off) == (ssize_t)sizeof(buf));
        REQUIRE(ftruncate(fd, (off_t)size) == 0);
        close(fd);
}

static void stop_disk(void)
{
        if (T) {
                virtio_dev_quiesce(VD);
                virtio_mmio_destroy(T);
                T = NULL;
        }
        if (VD)
                virtio_dev_destroy(VD);
        VD = NULL;
        B = NULL;
        fake_vm_destroy(&vm);
}

/* The worker's hook (blk_params.io_done_hook): when `hold` is set, the first request to finish
 * its I/O waits there until the test lets it go. */
static struct {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool hold, held, release;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false};

static void gate_hook(void *arg)
{
        pthread_mutex_lock(&gate.mu);
        if (gate.hold && !gate.held) {
                gate.held = true;
                pthread_cond_broadcast(&gate.cv);
                while (!gate.release)
                        pthread_cond_wait(&gate.cv, &gate.mu);
        }
        pthread_mutex_unlock(&gate.mu);
}

/* A disk on `path`, with Linux's probe: features, the queue (as large as offered), DRIVER_OK. */
static void start_disk(const char *path, bool ro, uint64_t features)
{
        if (VD)
                stop_disk(); /* a test that bailed out left its disk */
        REQUIRE(fake_vm_init(&vm) == 0);
        struct blk_params p = {.path = path,
                               .read_only = ro,
                               .serial = "ember-test-serial",
                               .io_done_hook = gate_hook};
        enum ember_error code = EMBER_OK;
        char err[256] = "";
        int rc = blk_create(&vm.env, &p, &VD, &B, &code, err, sizeof(err));
        if (rc)
                FAILF("blk_create: %d %s", rc, err);
        rc = virtio_mmio_create(&vm.env, BBASE, BGSI, VD, &T, err, sizeof(err));
        if (rc)
                FAILF("virtio_mmio_create: %d %s", rc, err);
        REQUIRE_EQ(mmio_r32(&vm, BBASE + VIRTIO_MMIO_DEVICE_ID), 2);
        uint32_t st = guest_negotiate(&vm, BBASE, (1ull << VIRTIO_F_VERSION_1) | features);
        REQUIRE(st & VIRTIO_STATUS_FEATURES_OK);
        uint32_t max = guest_queue_num_max(&vm, BBASE, 0);
        REQUIRE_EQ(max, BLK_QUEUE_SIZE);
        REQUIRE_EQ(gq_setup(&Q, &vm, BBASE, 0, (uint16_t)max), 1);
        guest_driver_ok(&vm, BBASE);
}

static const uint64_t all_features = (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << F_SIZE_MAX) |
                                     (1ull << F_SEG_MAX) | (1ull << F_BLK_SIZE) |
                                     (1ull << F_FLUSH) | (1ull << F_DISCARD) | (1ull << F_WZ);

/* A read-only disk offers neither DISCARD nor WRITE_ZEROES (accepting them fails FEATURES_OK). */
static const uint64_t ro_features = all_features & ~((1ull << F_DISCARD) | (1ull << F_WZ));

static uint64_t header(uint32_t type, uint64_t sector)
{
        uint64_t h = guest_alloc(&vm, 16, 16);
        uint8_t *p = guest_ptr(&vm, h, 16);
        memset(p, 0, 16);
        memcpy(p, &type, 4);
        memcpy(p + 8, &sector, 8);
        return h;
}

static uint64_t status_byte(void)
{
        uint64_t s = guest_alloc(&vm, 1, 1);
        *(uint8_t *)guest_ptr(&vm, s, 1) = S_NONE;
        return s;
}

/* Runs the event loop until the next used entry (bounded: a hang fails, nothing else is timed). */
static bool wait_used(uint32_t *id, uint32_t *len)
{
        for (int i = 0; i < 1000; i++) {
                if (gq_used(&Q, id, len))
                        return true;
                evloop_run_once(&vm.loop, 5);
        }
        return gq_used(&Q, id, len);
}

/* Submits a chain and returns the status byte the device wrote (S_NONE: none), and the used
 * length in *used. */
static uint8_t submit(const struct gseg *s, unsigned n, uint64_t status_gpa, uint32_t *used)
{
        uint16_t head = gq_add(&Q, s, n);
        gq_kick(&Q);
        uint32_t id = 0, len = 0;
        if (!wait_used(&id, &len))
                FAILF("request at head %u never completed", head);
        CHECK_EQ(id, head);
        if (used)
                *used = len;
        return status_gpa ? *(uint8_t *)guest_ptr(&vm, status_gpa, 1) : S_NONE;
}

/* One request as Linux builds it: header, one data segment (if len), status. */
static uint8_t rw(uint32_t type, uint64_t sector, uint64_t data, uint32_t len, bool writable)
{
        uint64_t st = status_byte();
        struct gseg s[3] = {
            {header(type, sector), 16, false}, {data, len, writable}, {st, 1, true}};
        if (len)
                return submit(s, 3, st, NULL);
        s[1] = s[2];
        return submit(s, 2, st, NULL);
}

static uint64_t guest_buf(uint32_t len, uint8_t fill)
{
        uint64_t g = guest_alloc(&vm, len, 4096);
        memset(guest_ptr(&vm, g, len), fill, len);
        return g;
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        REQUIRE(pread(fd, buf, len, (off_t)off) == (ssize_t)len);
        close(fd);
}

static uint64_t file_blocks(const char *path)
{
        struct stat st;
        REQUIRE(stat(path, &st) == 0);
        return (uint64_t)st.st_blocks;
}

/* The device still serves a plain read and was never failed. */
static void still_healthy(void)
{
        uint64_t d = guest_buf(512, 0);
        CHECK_EQ(rw(T_IN, 0, d, 512, true), S_OK);
        CHECK_EQ(vm.stops, 0);
        CHECK(!(mmio_r32(&vm, BBASE + VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET));
}

static uint32_t cfg32(uint32_t off)
{
        return mmio_r32(&vm, BBASE + VIRTIO_MMIO_CONFIG + off);
}

/* ---- tests */

static void t_config_and_features(void)
{
        make_image(img, IMG_SIZE, 0);
        start_disk(img, false, all_features);
        uint64_t cap = cfg32(0) | (uint64_t)cfg32(4) << 32;
        CHECK_EQ(cap, IMG_SIZE / 512);
        CHECK_EQ(cfg32(8), BLK_SIZE_MAX);
        CHECK_EQ(cfg32(12), BLK_SEG_MAX);
        CHECK_EQ(cfg32(20), 512);
        CHECK_EQ(cfg32(40), BLK_MAX_DWZ_SEGS);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        uint32_t f = mmio_r32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES);
        CHECK(f & (1u << F_SEG_MAX));
        CHECK(f & (1u << F_SIZE_MAX));
        CHECK(f & (1u << F_FLUSH));
        CHECK(f & (1u << F_DISCARD));
        CHECK(f & (1u << F_WZ));
        CHECK(!(f & (1u << F_RO)));
        stop_disk();

        start_disk(img, true, ro_features);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        f = mmio_r32(&vm, BBASE + VIRTIO_MMIO_DEVICE_FEATURES);
        CHECK(f & (1u << F_RO));
        CHECK(!(f & (1u << F_DISCARD)));
        CHECK(!(f & (1u << F_WZ)));
        stop_disk();
}

static void t_read_write_roundtrip(void)
{
        make_image(img, IMG_SIZE, 0x11);
        start_disk(img, false, all_features);
        /* A write gathered from three segments of different sizes ... */
        uint64_t a = guest_buf(4096, 0), b2 = guest_buf(512, 0), c = guest_buf(8192 + 512, 0);
        uint8_t *pa = guest_ptr(&vm, a, 4096), *pb = guest_ptr(&vm, b2, 512),
                *pc = guest_ptr(&vm, c, 8704);
        for (unsigned i = 0; i < 4096; i++)
                pa[i] = (uint8_t)(i * 7);
        for (unsigned i = 0; i < 512; i++)
                pb[i] = (uint8_t)(i ^ 0x5a);
        for (unsigned i = 0; i < 8704; i++)
                pc[i] = (uint8_t)(i * 13 + 1);
        uint64_t st = status_byte();
        struct gseg w[5] = {{header(T_OUT, 100), 16, false},
                            {a, 4096, false},
                            {b2, 512, false},
                            {c, 8704, false},
                            {st, 1, true}};
        uint32_t used = 0;
        CHECK_EQ(submit(w, 5, st, &used), S_OK);
        CHECK_EQ(used, 1);
        /* ... is in the file at sector 100, and the bytes around it are untouched ... */
        static uint8_t want[13312], got[13312 + 1024];
        memcpy(want, pa, 4096);
        memcpy(want + 4096, pb, 512);
        memcpy(want + 4608, pc, 8704);
        file_read(img, 100 * 512 - 512, got, sizeof(got));
        CHECK(memcmp(got + 512, want, sizeof(want)) == 0);
        CHECK_EQ(got[0], 0x11);
        CHECK_EQ(got[511], 0x11);
        CHECK_EQ(got[512 + sizeof(want)], 0x11);
        /* ... and reads back scattered over two other segments. */
        uint64_t r1 = guest_buf(1024, 0), r2 = guest_buf(13312 - 1024, 0);
        st = status_byte();
        struct gseg r[4] = {{header(T_IN, 100), 16, false},
                            {r1, 1024, true},
                            {r2, 13312 - 1024, true},
                            {st, 1, true}};
        CHECK_EQ(submit(r, 4, st, &used), S_OK);
        CHECK_EQ(used, 13312 + 1);
        CHECK(memcmp(guest_ptr(&vm, r1, 1024), want, 1024) == 0);
        CHECK(memcmp(guest_ptr(&vm, r2, 13312 - 1024), want + 1024, 13312 - 1024) == 0);
        /* The last sector of the disk is reachable, through an indirect table too. */
        uint64_t d = guest_buf(512, 0x77);
        CHECK_EQ(rw(T_OUT, IMG_SIZE / 512 - 1, d, 512, false), S_OK);
        uint64_t d2 = guest_buf(512, 0);
        st = status_byte();
        struct gseg ind[3] = {
            {header(T_IN, IMG_SIZE / 512 - 1), 16, false}, {d2, 512, true}, {st, 1, true}};
        gq_add_indirect(&Q, ind, 3);
        gq_kick(&Q);
        uint32_t id, len;
        REQUIRE(wait_used(&id, &len));
        CHECK_EQ(*(uint8_t *)guest_ptr(&vm, st, 1), S_OK);
        CHECK(memcmp(guest_ptr(&vm, d2, 512), guest_ptr(&vm, d, 512), 512) == 0);
        struct blk_stats bs;
        blk_get_stats(B, &bs);
        CHECK_EQ(bs.write_bytes, 13312 + 512);
        CHECK_EQ(bs.errors, 0);
        stop_disk();
}

static void t_flush_and_get_id(void)
{
        make_image(img, IMG_SIZE, 0);
        start_disk(img, false, all_features);
        CHECK_EQ(rw(T_FLUSH, 0, 0, 0, false), S_OK);
        uint64_t id = guest_buf(20, 0xff);
        uint64_t st = status_byte();
        struct gseg s[3] = {{header(T_GETID, 0), 16, false}, {id, 20, true}, {st, 1, true}};
        uint32_t used = 0;
        CHECK_EQ(submit(s, 3, st, &used), S_OK);
        CHECK_EQ(used, 21);
        CHECK(memcmp(guest_ptr(&vm, id, 17), "ember-test-serial", 17) == 0);
        CHECK_EQ(((uint8_t *)guest_ptr(&vm, id, 20))[17], 0);
        /* A shorter buffer gets what fits. */
        uint64_t id2 = guest_buf(8, 0xff);
        st = status_byte();
        struct gseg s2[3] = {{header(T_GETID, 0), 16, false}, {id2, 8, true}, {st, 1, true}};
        CHECK_EQ(submit(s2, 3, st, &used), S_OK);
        CHECK_EQ(used, 9);
        CHECK(memcmp(guest_ptr(&vm, id2, 8), "ember-te", 8) == 0);
        stop_disk();
}

static void t_ro_refuses_writes(void)
{
        make_image(img, IMG_SIZE, 0x42);
        start_disk(img, true, ro_features);
        uint64_t d = guest_buf(4096, 0x99);
        CHECK_EQ(rw(T_OUT, 0, d, 4096, false), S_IOERR);
        uint8_t dwz[16] = {0};
        uint32_t num = 64;
        memcpy(dwz + 8, &num, 4);
        uint64_t seg = guest_buf(16, 0);
        memcpy(guest_ptr(&vm, seg, 16), dwz, 16);
        CHECK_EQ(rw(T_DISC, 0, seg, 16, false), S_IOERR);
        CHECK_EQ(rw(T_WZ, 0, seg, 16, false), S_IOERR);
        CHECK_EQ(rw(T_FLUSH, 0, 0, 0, false), S_OK);
        /* Reads work, and the file is as it was. */
        uint64_t r = guest_buf(4096, 0);
        CHECK_EQ(rw(T_IN, 0, r, 4096, true), S_OK);
        CHECK_EQ(((uint8_t *)guest_ptr(&vm, r, 4096))[4095], 0x42);
        static uint8_t got[65536];
        file_read(img, 0, got, sizeof(got));
        for (unsigned i = 0; i < sizeof(got); i++)
                if (got[i] != 0x42) {
                        FAILF("byte %u of the read-only image changed to 0x%02x", i, got[i]);
                        break;
                }
        still_healthy();
        stop_disk();
}

static void t_malformed_requests(void)
{
        make_image(img, IMG_SIZE, 0);
        start_disk(img, false, all_features);
        uint64_t d = guest_buf(BLK_MAX_REQ_BYTES + 4096, 0);
        uint64_t cap = IMG_SIZE / 512;
        /* Past the end, overflowing, misaligned, too large, wrong direction. */
        CHECK_EQ(rw(T_IN, cap, d, 512, true), S_IOERR);
        CHECK_EQ(rw(T_IN, cap - 1, d, 1024, true), S_IOERR);
        CHECK_EQ(rw(T_IN, UINT64_MAX, d, 512, true), S_IOERR);
        CHECK_EQ(rw(T_IN, UINT64_MAX / 512 + 1, d, 512, true), S_IOERR);
        CHECK_EQ(rw(T_OUT, (UINT64_MAX >> 9) - 1, d, 1024, false), S_IOERR);
        CHECK_EQ(rw(T_IN, 0, d, 100, true), S_IOERR);
        CHECK_EQ(rw(T_OUT, 0, d, 513, false), S_IOERR);
        CHECK_EQ(rw(T_IN, 0, d, BLK_MAX_REQ_BYTES + 512, true), S_IOERR);
        CHECK_EQ(rw(T_IN, 0, d, 512, false), S_IOERR);   /* IN with readable data */
        CHECK_EQ(rw(T_OUT, 0, d, 512, true), S_IOERR);   /* OUT with writable data */
        CHECK_EQ(rw(T_FLUSH, 0, d, 512, true), S_IOERR); /* FLUSH with data */
        CHECK_EQ(rw(T_GETID, 0, d, 512, false), S_IOERR);
        CHECK_EQ(rw(77, 0, 0, 0, false), S_UNSUPP);
        CHECK_EQ(rw(UINT32_MAX, 0, d, 512, true), S_UNSUPP);
        /* A header shorter than 16 bytes, split over two descriptors is fine, 12 is not. */
        uint64_t h = header(T_IN, 0), st = status_byte();
        struct gseg shorth[3] = {{h, 12, false}, {d, 512, true}, {st, 1, true}};
        CHECK_EQ(submit(shorth, 3, st, NULL), S_IOERR);
        h = header(T_IN, 3);
        st = status_byte();
        struct gseg split[4] = {{h, 5, false}, {h + 5, 11, false}, {d, 512, true}, {st, 1, true}};
        CHECK_EQ(submit(split, 4, st, NULL), S_OK);
        /* Discard / write-zeroes segments: count, length, range, flags. */
        uint64_t seg = guest_buf(16 * (BLK_MAX_DWZ_SEGS + 1), 0);
        uint8_t *sp = guest_ptr(&vm, seg, 16 * (BLK_MAX_DWZ_SEGS + 1));
        uint64_t sec = cap - 8;
        uint32_t num = 16, flags = 0;
        memcpy(sp, &sec, 8);
        memcpy(sp + 8, &num, 4);
        memcpy(sp + 12, &flags, 4);
        CHECK_EQ(rw(T_DISC, 0, seg, 16, false), S_IOERR); /* past the end */
        CHECK_EQ(rw(T_DISC, 0, seg, 15, false), S_IOERR); /* not a whole segment */
        sec = 0;
        memcpy(sp, &sec, 8);
        flags = 1; /* UNMAP on a discard */
        memcpy(sp + 12, &flags, 4);
        CHECK_EQ(rw(T_DISC, 0, seg, 16, false), S_UNSUPP);
        flags = 0x80; /* unknown flag */
        memcpy(sp + 12, &flags, 4);
        CHECK_EQ(rw(T_WZ, 0, seg, 16, false), S_UNSUPP);
        flags = 0;
        memcpy(sp + 12, &flags, 4);
        for (unsigned i = 1; i <= BLK_MAX_DWZ_SEGS; i++)
                memcpy(sp + 16 * i, sp, 16);
        CHECK_EQ(rw(T_DISC, 0, seg, 16 * (BLK_MAX_DWZ_SEGS + 1), false), S_IOERR);
        CHECK_EQ(rw(T_DISC, 0, seg, 16 * BLK_MAX_DWZ_SEGS, false), S_OK);
        CHECK_EQ(rw(T_DISC, 0, seg, 16, true), S_IOERR); /* segments must be readable */
        num = UINT32_MAX;
        memcpy(sp + 8, &num, 4);
        CHECK_EQ(rw(T_WZ, 0, seg, 16, false), S_IOERR);
        /* A status "byte" of several bytes: the last one is the status. */
        st = guest_buf(4, S_NONE);
        struct gseg wide[3] = {{header(T_IN, 0), 16, false}, {d, 512, true}, {st, 4, true}};
        uint32_t used;
        submit(wide, 3, 0, &used);
        CHECK_EQ(*(uint8_t *)guest_ptr(&vm, st + 3, 1), S_IOERR); /* 515 writable: misaligned */
        struct blk_stats bs;
        blk_get_stats(B, &bs);
        CHECK(bs.errors >= 20);
        still_healthy();
        stop_disk();
}

static void t_discard_and_write_zeroes(void)
{
        make_image(img, IMG_SIZE, 0xab);
        uint64_t before = file_blocks(img);
        start_disk(img, false, all_features);
        uint64_t seg = guest_buf(32, 0);
        uint8_t *sp = guest_ptr(&vm, seg, 32);
        /* Discard the first 4 MiB and 1 MiB at 6 MiB, in one request of two segments. */
        uint64_t s0 = 0, s1 = (6u << 20) / 512;
        uint32_t n0 = (4u << 20) / 512, n1 = (1u << 20) / 512, fl = 0;
        memcpy(sp, &s0, 8);
        memcpy(sp + 8, &n0, 4);
        memcpy(sp + 12, &fl, 4);
        memcpy(sp + 16, &s1, 8);
        memcpy(sp + 24, &n1, 4);
        memcpy(sp + 28, &fl, 4);
        CHECK_EQ(rw(T_DISC, 0, seg, 32, false), S_OK);
        uint64_t after = file_blocks(img);
        CHECK(after + (5u << 20) / 512 <= before + 64);
        struct stat sb;
        REQUIRE(stat(img, &sb) == 0);
        CHECK_EQ(sb.st_size, IMG_SIZE);
        /* Write zeroes without UNMAP (zero range) and with it (punch): zeros either way. */
        uint64_t s2 = (5u << 20) / 512;
        uint32_t n2 = 64;
        memcpy(sp, &s2, 8);
        memcpy(sp + 8, &n2, 4);
        CHECK_EQ(rw(T_WZ, 0, seg, 16, false), S_OK);
        fl = 1;
        s2 += 64;
        memcpy(sp, &s2, 8);
        memcpy(sp + 12, &fl, 4);
        CHECK_EQ(rw(T_WZ, 0, seg, 16, false), S_OK);
        static uint8_t got[128 * 512 + 512];
        file_read(img, (5u << 20), got, sizeof(got));
        for (unsigned i = 0; i < 128 * 512; i++)
                if (got[i]) {
                        FAILF("byte %u of the zeroed range is 0x%02x", i, got[i]);
                        break;
                }
        CHECK_EQ(got[128 * 512], 0xab);
        stop_disk();
}

/* Hostile: chains that leave the device nowhere to put a status. */
static void t_no_writable_space(void)
{
        make_image(img, IMG_SIZE, 0);
        start_disk(img, false, all_features);
        uint64_t d = guest_buf(4096, 0x5c);
        struct gseg s[2] = {{header(T_OUT, 0), 16, false}, {d, 4096, false}};
        uint32_t used = 99;
        submit(s, 2, 0, &used);
        CHECK_EQ(used, 0);
        struct gseg only_hdr[1] = {{header(T_IN, 0), 16, false}};
        submit(only_hdr, 1, 0, &used);
        CHECK_EQ(used, 0);
        /* Nothing was written for the OUT without a status byte. */
        uint8_t got[4096];
        file_read(img, 0, got, sizeof(got));
        CHECK_EQ(got[0], 0);
        CHECK_EQ(got[4095], 0);
        still_healthy();
        stop_disk();
}

/* Hostile: every avail entry names the same head, again and again. Host memory stays bounded
 * (a fixed pool of request slots), every request is answered, and the device keeps working. */
static void t_same_head_forever(void)
{
        make_image(img, IMG_SIZE, 0x33);
        start_disk(img, false, all_features);
        uint64_t d = guest_buf(4096, 0), st = status_byte();
        struct gseg s[3] = {{header(T_IN, 8), 16, false}, {d, 4096, true}, {st, 1, true}};
        uint16_t head = gq_add(&Q, s, 3);
        unsigned answered = 0, max_in_flight = 0;
        for (unsigned round = 0; round < 40; round++) {
                for (unsigned i = 1; i < BLK_QUEUE_SIZE; i++)
                        gq_publish(&Q, head); /* one ring's worth in flight at most */
                gq_kick(&Q);
                for (int spin = 0; spin < 2000; spin++) {
                        unsigned f = blk_in_flight(B);
                        if (f > max_in_flight)
                                max_in_flight = f;
                        evloop_run_once(&vm.loop, 1);
                        uint32_t id, len;
                        while (gq_used(&Q, &id, &len)) {
                                CHECK_EQ(id, head);
                                answered++;
                        }
                        if (answered == (round + 1) * (BLK_QUEUE_SIZE - 1) + 1)
                                break;
                }
        }
        CHECK_EQ(answered, 40 * (BLK_QUEUE_SIZE - 1) + 1);
        CHECK(max_in_flight <= BLK_QUEUE_SIZE);
        CHECK_EQ(*(uint8_t *)guest_ptr(&vm, st, 1), S_OK);
        still_healthy();
        stop_disk();
}

/* Hostile: data segments that overlap each other, the header and the status byte. Only the
 * guest's own memory is scribbled on; a canary after it stays intact. */
static void t_aliased_overlapping(void)
{
        make_image(img, IMG_SIZE, 0xc3);
        start_disk(img, false, all_features);
        uint64_t area = guest_buf(8192 + 64, 0);
        uint8_t *canary = guest_ptr(&vm, area + 8192, 64);
        memset(canary, 0xcc, 64);
        uint64_t h = area;
        uint8_t *hp = guest_ptr(&vm, h, 16);
        uint32_t type = T_IN;
        uint64_t sector = 0;
        memset(hp, 0, 16);
        memcpy(hp, &type, 4);
        memcpy(hp + 8, &sector, 8);
        /* IN into [area, area+4096) three times over, the status byte inside it too. */
        struct gseg s[5] = {{h, 16, false},
                            {area, 4096, true},
                            {area + 512, 2048, true},
                            {area, 1536, true},
                            {area + 100, 1, true}};
        uint32_t used;
        submit(s, 5, 0, &used);
        for (unsigned i = 0; i < 64; i++)
                CHECK_EQ(canary[i], 0xcc);
        /* OUT from a buffer that is also its header, and whose status is in the data. */
        type = T_OUT;
        memcpy(hp, &type, 4);
        struct gseg w[4] = {
            {h, 16, false}, {h, 512, false}, {h + 16, 496, false}, {h + 8, 1, true}};
        submit(w, 4, 0, &used);
        for (unsigned i = 0; i < 64; i++)
                CHECK_EQ(canary[i], 0xcc);
        still_healthy();
        stop_disk();
}

/* Requests still queued or running when the driver resets the device are never returned: the
 * driver may already have set the queue up again at the same place. */
static void t_reset_drops_in_flight(void)
{
        make_image(img, 64u << 20, 0x10);
        start_disk(img, false, all_features);
        unsigned n = 60;
        uint64_t d = guest_alloc(&vm, BLK_MAX_REQ_BYTES, 4096); /* shared: RAM is 16 MiB */
        for (unsigned i = 0; i < n; i++) {
                uint64_t st = status_byte();
                struct gseg s[3] = {{header(T_IN, (uint64_t)i * 16), 16, false},
                                    {d, BLK_MAX_REQ_BYTES, true},
                                    {st, 1, true}};
                gq_add(&Q, s, 3);
        }
        pthread_mutex_lock(&gate.mu);
        gate.hold = true;
        gate.held = gate.release = false;
        pthread_mutex_unlock(&gate.mu);
        gq_kick(&Q);
        evloop_run_once(&vm.loop, 50); /* the notification pops them all for the worker */
        /* The first request has done its I/O and waits to be answered. */
        pthread_mutex_lock(&gate.mu);
        for (int i = 0; i < 200 && !gate.held; i++) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 10 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&gate.cv, &gate.mu, &ts);
        }
        bool held = gate.held;
        pthread_mutex_unlock(&gate.mu);
        REQUIRE(held);
        /* Reset, and set the queue up again at the same rings, as a driver re-probing does. */
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_STATUS, 0);
        struct gq old = Q;
        uint32_t st = guest_negotiate(&vm, BBASE, (1ull << VIRTIO_F_VERSION_1) | all_features);
        REQUIRE(st & VIRTIO_STATUS_FEATURES_OK);
        memset(guest_ptr(&vm, old.used, VIRTQ_USED_BYTES(old.size)), 0, VIRTQ_USED_BYTES(old.size));
        memset(guest_ptr(&vm, old.avail, VIRTQ_AVAIL_BYTES(old.size)), 0,
               VIRTQ_AVAIL_BYTES(old.size));
        guest_set_queue_regs(&vm, BBASE, 0, old.size, old.desc, old.avail, old.used);
        mmio_w32(&vm, BBASE + VIRTIO_MMIO_QUEUE_READY, 1);
        guest_driver_ok(&vm, BBASE);
        Q.avail_idx = Q.last_used = 0;
        Q.in_flight = 0;
        pthread_mutex_lock(&gate.mu);
        gate.hold = false;
        gate.release = true;
        pthread_cond_broadcast(&gate.cv);
        pthread_mutex_unlock(&gate.mu);
        /* Let the worker finish whatever it had. */
        for (int i = 0; i < 2000 && blk_in_flight(B) > 0; i++)
                evloop_run_once(&vm.loop, 2);
        CHECK_EQ(blk_in_flight(B), 0);
        uint16_t used_idx;
        memcpy(&used_idx, guest_ptr(&vm, old.used + 2, 2), 2);
        CHECK_EQ(used_idx, 0);
        struct blk_stats bs;
        blk_get_stats(B, &bs);
        CHECK(bs.dropped > 0);
        CHECK(bs.read_bytes < (uint64_t)n * BLK_MAX_REQ_BYTES);
        still_healthy();
        stop_disk();
}

/* The VM stopped (quiesce): a guest still hammering the queue gets nothing done, and nothing
 * breaks. */
static void t_hammer_while_stopped(void)
{
        make_image(img, IMG_SIZE, 0);
        start_disk(img, false, all_features);
        CHECK_EQ(rw(T_IN, 0, guest_buf(512, 0), 512, true), S_OK);
        virtio_dev_quiesce(VD);
        uint64_t d = guest_buf(4096, 0), st = status_byte();
        struct gseg s[3] = {{header(T_OUT, 0), 16, false}, {d, 4096, false}, {st, 1, true}};
        uint16_t head = gq_add(&Q, s, 3);
        for (unsigned i = 0; i < 2000; i++) {
                if (i % 8 == 0)
                        gq_publish(&Q, head);
                gq_kick(&Q);
                mmio_w32(&vm, BBASE + VIRTIO_MMIO_QUEUE_NOTIFY, 0);
                evloop_run_once(&vm.loop, 0);
        }
        uint32_t id, len;
        CHECK(!gq_used(&Q, &id, &len));
        CHECK_EQ(*(uint8_t *)guest_ptr(&vm, st, 1), S_NONE);
        stop_disk();
}

static void t_image_errors(void)
{
        char err[512];
        int fd;
        uint64_t bytes;
        bool bdev;
        char path[300];
        snprintf(path, sizeof(path), "%s.missing", img);
        unlink(path);
        CHECK_EQ(blk_image_open(path, true, &fd, &bytes, &bdev, err, sizeof(err)), -ENOENT);
        CHECK(strstr(err, path) != NULL);
        CHECK_EQ(blk_image_open("/tmp", true, &fd, &bytes, &bdev, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "not a regular file") != NULL);
        make_image(img, 1000, 0);
        CHECK_EQ(blk_image_open(img, false, &fd, &bytes, &bdev, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "multiple of 512") != NULL);
        make_image(img, 0, 0);
        CHECK_EQ(blk_image_open(img, false, &fd, &bytes, &bdev, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "empty") != NULL);
        /* Locks: rw is exclusive, ro shared. */
        make_image(img, 4096, 0);
        REQUIRE_EQ(blk_image_open(img, false, &fd, &bytes, &bdev, err, sizeof(err)), 0);
        CHECK_EQ(bytes, 4096);
        int fd2;
        CHECK_EQ(blk_image_open(img, true, &fd2, &bytes, &bdev, err, sizeof(err)), -EBUSY);
        CHECK(strstr(err, "in use by another process") != NULL);
        CHECK_EQ(blk_image_open(img, false, &fd2, &bytes, &bdev, err, sizeof(err)), -EBUSY);
        close(fd);
        REQUIRE_EQ(blk_image_open(img, true, &fd, &bytes, &bdev, err, sizeof(err)), 0);
        REQUIRE_EQ(blk_image_open(img, true, &fd2, &bytes, &bdev, err, sizeof(err)), 0);
        int fd3;
        CHECK_EQ(blk_image_open(img, false, &fd3, &bytes, &bdev, err, sizeof(err)), -EBUSY);
        /* Read-only really is O_RDONLY. */
        CHECK(write(fd, "x", 1) < 0);
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
        close(fd2);
        /* blk_create reports EMBER_ERR_DISK. */
        REQUIRE(fake_vm_init(&vm) == 0);
        make_image(img, 1000, 0);
        struct blk_params p = {.path = img};
        enum ember_error code = EMBER_OK;
        struct virtio_dev *vd = NULL;
        CHECK(blk_create(&vm.env, &p, &vd, NULL, &code, err, sizeof(err)) < 0);
        CHECK_EQ(code, EMBER_ERR_DISK);
        CHECK(vd == NULL);
        fake_vm_destroy(&vm);
}

int main(void)
{
        const char *tmp = getenv("TMPDIR");
        snprintf(img, sizeof(img), "%s/ember-blk-test.%d.img", tmp && *tmp ? tmp : "/tmp",
                 (int)getpid());
        T_RUN(t_config_and_features);
        T_RUN(t_read_write_roundtrip);
        T_RUN(t_flush_and_get_id);
        T_RUN(t_ro_refuses_writes);
        T_RUN(t_malformed_requests);
        T_RUN(t_discard_and_write_zeroes);
        T_RUN(t_no_writable_space);
        T_RUN(t_same_head_forever);
        T_RUN(t_aliased_overlapping);
        T_RUN(t_reset_drops_in_flight);
        T_RUN(t_hammer_while_stopped);
        T_RUN(t_image_errors);
        unlink(img);
        return T_DONE();
}
