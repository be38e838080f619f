/* Split virtqueue: well-formed chains, the used ring, and every kind of malformed guest input
 * the device must survive (loops, out-of-RAM buffers, bad indices, index jumps, indirect abuse).
 * Guest RAM is split by the MMIO gap, as in a VM of more than 3 GiB: LOW bytes from 0, HIGH
 * bytes from 4 GiB; rings and buffers live on both sides. */
#include "test.h"

#include "test_virtio_guest.h"

#include <sys/mman.h>

static struct fake_vm vm;
static struct gq g;    /* guest's view (layout + helpers; not attached to a transport) */
static struct virtq q; /* device's view */
static struct virtq_chain ch;

#define LOW      (8ull << 20) /* RAM below the gap, which starts here */
#define HIGH_AT  (4ull << 30)
#define HIGH     (8ull << 20)
#define HIGH_END (HIGH_AT + HIGH)

/* The layout as the test knows it, not as gmem_ptr computes it: whether [gpa, gpa+len) lies
 * wholly in one range, and where the host mapping holds it. */
static int64_t ram_off(uint64_t gpa, uint64_t len)
{
        if ((unsigned __int128)gpa + len <= LOW)
                return (int64_t)gpa;
        if (gpa >= HIGH_AT && (unsigned __int128)gpa + len <= HIGH_END)
                return (int64_t)(LOW + (gpa - HIGH_AT));
        return -1;
}

static uint64_t next_high; /* bump allocator over high RAM */

static uint64_t high_alloc(uint64_t len, uint64_t align)
{
        uint64_t p = (next_high + align - 1) & ~(align - 1);
        next_high = p + len;
        return p;
}

/* The fake VM, with its RAM split by the gap. */
static void split_vm_init(void)
{
        REQUIRE(fake_vm_init(&vm) == 0);
        gmem_destroy(&vm.mem);
        REQUIRE_EQ(gmem_init(&vm.mem, LOW + HIGH, LOW), 0);
        REQUIRE_EQ(vm.mem.nregions, 2);
        next_high = HIGH_AT + 0x10000;
}

/* Lays out a ring of `size` entries (in high RAM if `high`) and sets up the device side over
 * it; the device's views of the rings are where the layout puts them. */
static void ring_at(uint16_t size, bool indirect, bool high)
{
        split_vm_init();
        memset(&g, 0, sizeof(g));
        g.vm = &vm;
        g.size = size;
        g.desc = high ? high_alloc(VIRTQ_DESC_BYTES(size), 4096)
                      : guest_alloc(&vm, VIRTQ_DESC_BYTES(size), 4096);
        g.avail = high ? high_alloc(VIRTQ_AVAIL_BYTES(size), 4096)
                       : guest_alloc(&vm, VIRTQ_AVAIL_BYTES(size), 4096);
        g.used = high ? high_alloc(VIRTQ_USED_BYTES(size), 4096)
                      : guest_alloc(&vm, VIRTQ_USED_BYTES(size), 4096);
        memset(&q, 0, sizeof(q));
        REQUIRE_EQ(virtq_setup(&q, &vm.mem, size, g.desc, g.avail, g.used, indirect), 0);
        REQUIRE(q.desc == vm.mem.map + ram_off(g.desc, VIRTQ_DESC_BYTES(size)));
        REQUIRE(q.avail == vm.mem.map + ram_off(g.avail, VIRTQ_AVAIL_BYTES(size)));
        REQUIRE(q.used == vm.mem.map + ram_off(g.used, VIRTQ_USED_BYTES(size)));
}

static void ring(uint16_t size, bool indirect)
{
        ring_at(size, indirect, false);
}

static void done(void)
{
        fake_vm_destroy(&vm);
}

static uint64_t buf(uint32_t len)
{
        return guest_alloc(&vm, len, 64);
}

static void t_setup_validation(void)
{
        split_vm_init();
        struct virtq v = {0};
        uint64_t d = 0x100000, a = 0x101000, u = 0x102000;
        CHECK_EQ(virtq_setup(&v, &vm.mem, 0, d, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 3, d, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 100, d, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 512, d, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 0x10000, d, a, u, false), -EINVAL);
        CHECK(!v.ready);
        /* misaligned rings */
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d + 8, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, a + 1, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, a, u + 2, false), -EINVAL);
        /* outside RAM, across an edge (into the gap, out of it, past the end), and wrapping */
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, LOW, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, LOW - 16 * 8, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, 3ull << 30, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, HIGH_AT - 16 * 8, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, HIGH_AT - 2, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, a, LOW - 8, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, HIGH_END, a, u, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, a, HIGH_END - 8, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, a, UINT64_MAX - 15, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, 0xfffffffffffff000ull, u, false), -EINVAL);
        /* overlapping rings, e.g. all left at 0 */
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, 0, 0, 0, false), -EINVAL);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 16, d, d + 0x80, u, false), -EINVAL);
        CHECK(!v.ready);
        CHECK(v.error[0] != 0);
        /* the largest ring fitting exactly at the end of each range is fine, as are rings on
         * both sides of the gap and at 4 GiB itself */
        CHECK_EQ(virtq_setup(&v, &vm.mem, 256, LOW - 4096, a, u, false), 0);
        CHECK(v.ready);
        CHECK_EQ(virtq_setup(&v, &vm.mem, 256, HIGH_END - 4096, a, u, false), 0);
        CHECK(v.ready);
        CHECK_EQ(
            virtq_setup(&v, &vm.mem, 16, HIGH_AT, a, HIGH_END - VIRTQ_USED_BYTES(16) - 2, false),
            0);
        CHECK(v.ready);
        CHECK(v.desc == vm.mem.map + LOW);
        /* not ready: nothing to pop, nothing to push */
        virtq_reset(&v);
        CHECK_EQ(virtq_pop(&v, &ch), 0);
        CHECK_EQ(virtq_push(&v, 0, 0), -EINVAL);
        CHECK(!virtq_need_interrupt(&v));
        done();
}

static void t_simple_chain(void)
{
        ring(16, false);
        uint64_t r1 = buf(100), r2 = buf(50), w1 = buf(30), w2 = buf(4096);
        memset(guest_ptr(&vm, r1, 100), 'a', 100);
        memset(guest_ptr(&vm, r2, 50), 'b', 50);
        struct gseg s[] = {{r1, 100, false}, {r2, 50, false}, {w1, 30, true}, {w2, 4096, true}};
        uint16_t head = gq_add(&g, s, 4);
        CHECK_EQ(virtq_avail_count(&q), 1);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        CHECK_EQ(ch.head, head);
        CHECK_EQ(ch.nread, 2);
        CHECK_EQ(ch.nwrite, 2);
        CHECK_EQ(ch.read_len, 150);
        CHECK_EQ(ch.write_len, 4126);
        CHECK_EQ(virtq_pop(&q, &ch), 0);

        char tmp[200];
        CHECK_EQ(virtq_chain_read(&vm.mem, &ch, 0, tmp, sizeof(tmp)), 150);
        CHECK(tmp[0] == 'a' && tmp[99] == 'a' && tmp[100] == 'b' && tmp[149] == 'b');
        CHECK_EQ(virtq_chain_read(&vm.mem, &ch, 99, tmp, 2), 2);
        CHECK(tmp[0] == 'a' && tmp[1] == 'b');
        CHECK_EQ(virtq_chain_read(&vm.mem, &ch, 150, tmp, 10), 0);

        char out[64];
        memset(out, 'z', sizeof(out));
        CHECK_EQ(virtq_chain_write(&vm.mem, &ch, 0, out, sizeof(out)), 64);
        CHECK(((char *)guest_ptr(&vm, w1, 30))[29] == 'z');
        CHECK(((char *)guest_ptr(&vm, w2, 34))[33] == 'z');
        CHECK(((char *)guest_ptr(&vm, w2, 35))[34] == 0);
        CHECK_EQ(virtq_chain_write(&vm.mem, &ch, 4120, out, 64), 6);

        CHECK_EQ(virtq_push(&q, ch.head, 64), 0);
        uint32_t id, len;
        REQUIRE_EQ(gq_used(&g, &id, &len), 1);
        CHECK_EQ(id, head);
        CHECK_EQ(len, 64);
        CHECK(virtq_need_interrupt(&q));
        CHECK(!virtq_need_interrupt(&q)); /* nothing new pushed */
        CHECK_EQ(virtq_push(&q, 16, 0), -EINVAL);
        done();
}

static void t_interrupt_suppression(void)
{
        ring(8, false);
        uint64_t b = buf(16);
        struct gseg s = {b, 16, true};
        gq_set_avail_flags(&g, VIRTQ_AVAIL_F_NO_INTERRUPT);
        gq_add(&g, &s, 1);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        virtq_push(&q, ch.head, 0);
        CHECK(!virtq_need_interrupt(&q));
        gq_set_avail_flags(&g, 0);
        gq_add(&g, &s, 1);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        virtq_push(&q, ch.head, 0);
        CHECK(virtq_need_interrupt(&q));
        done();
}

/* The ring wraps many times; the 16-bit indices wrap too. */
static void t_wraparound(void)
{
        ring(4, false);
        uint64_t b = buf(8);
        struct gseg s = {b, 8, true};
        for (unsigned i = 0; i < 70000; i++) {
                gq_add(&g, &s, 1);
                if (virtq_pop(&q, &ch) != 1)
                        FAILF("pop %u failed: %s", i, q.error);
                virtq_push(&q, ch.head, 1);
                uint32_t id, len;
                if (gq_used(&g, &id, &len) != 1 || id != ch.head)
                        FAILF("used %u", i);
        }
        CHECK(!q.broken);
        done();
}

static void expect_broken(const char *what)
{
        int r = virtq_pop(&q, &ch);
        if (r != -EIO)
                FAILF("%s: pop returned %d, want -EIO", what, r);
        CHECK(q.broken);
        CHECK(q.error[0] != 0);
        /* stays broken: no more chains come out */
        CHECK_EQ(virtq_pop(&q, &ch), -EIO);
        CHECK_EQ(virtq_avail_count(&q), -EIO);
}

static void t_loop(void)
{
        ring(8, false);
        uint64_t b = buf(16);
        gq_write_desc(&g, 0, b, 16, VIRTQ_DESC_F_NEXT, 1);
        gq_write_desc(&g, 1, b, 16, VIRTQ_DESC_F_NEXT, 0);
        gq_publish(&g, 0);
        expect_broken("two-descriptor loop");
        done();

        ring(8, false);
        gq_write_desc(&g, 3, 0x20000, 16, VIRTQ_DESC_F_NEXT, 3);
        gq_publish(&g, 3);
        expect_broken("self loop");
        done();

        /* a chain exactly as long as the queue is fine; one longer is not */
        ring(8, false);
        for (unsigned i = 0; i < 8; i++)
                gq_write_desc(&g, i, 0x20000, 1, i < 7 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
        gq_publish(&g, 0);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        CHECK_EQ(ch.nread, 8);
        gq_write_desc(&g, 7, 0x20000, 1, VIRTQ_DESC_F_NEXT, 0);
        gq_publish(&g, 0);
        expect_broken("ring-sized loop");
        done();
}

static void t_out_of_ram(void)
{
        static const struct {
                uint64_t addr;
                uint32_t len;
        } bad[] = {
            {LOW, 1},
            {LOW - 10, 11}, /* into the gap */
            {UINT64_MAX, 1},
            {UINT64_MAX - 10, 100},
            {0x1000, UINT32_MAX},
            {3ull << 30, 16},    /* in the gap */
            {HIGH_AT - 1, 2},    /* from the gap into high RAM */
            {HIGH_AT - 16, 32},  /* the same */
            {HIGH_END, 1},       /* past the end */
            {HIGH_END - 10, 11}, /* across the end */
            {HIGH_AT + 16, UINT32_MAX},
        };
        for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ring(8, false);
                gq_write_desc(&g, 0, 0x20000, 8, VIRTQ_DESC_F_NEXT, 1);
                gq_write_desc(&g, 1, bad[i].addr, bad[i].len, VIRTQ_DESC_F_WRITE, 0);
                gq_publish(&g, 0);
                expect_broken("buffer outside RAM");
                done();
        }
        /* buffers at each range's very ends are fine, and land where the layout says */
        static const struct {
                uint64_t addr;
                uint32_t len;
        } good[] = {{LOW - 16, 16}, {LOW - 1, 1}, {HIGH_AT, 16}, {HIGH_END - 16, 16}, {0, 1}};
        for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                ring_at(8, false, i % 2);
                memset(vm.mem.map + ram_off(good[i].addr, good[i].len), 'a' + i, good[i].len);
                gq_write_desc(&g, 0, good[i].addr, good[i].len, VIRTQ_DESC_F_NEXT, 1);
                gq_write_desc(&g, 1, good[i].addr, good[i].len, VIRTQ_DESC_F_WRITE, 0);
                gq_publish(&g, 0);
                REQUIRE_EQ(virtq_pop(&q, &ch), 1);
                char tmp[16];
                CHECK_EQ(virtq_chain_read(&vm.mem, &ch, good[i].len - 1, tmp, 16), 1);
                CHECK_EQ(tmp[0], 'a' + i);
                CHECK_EQ(virtq_chain_write(&vm.mem, &ch, 0, "z", 1), 1);
                CHECK_EQ(vm.mem.map[ram_off(good[i].addr, 1)], 'z');
                done();
        }
        /* zero-length descriptors anywhere are harmless and dropped */
        ring(8, false);
        gq_write_desc(&g, 0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 1);
        gq_write_desc(&g, 1, 0x20000, 4, 0, 0);
        gq_publish(&g, 0);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        CHECK_EQ(ch.nread, 1);
        CHECK_EQ(ch.read_len, 4);
        done();
}

static void t_huge_total(void)
{
        /* Two 3 GiB buffers, each inside RAM, add up to more than 4 GiB. */
        struct virtq v = {0};
        struct gmem big;
        if (gmem_init(&big, 5ull << 30, 4ull << 30) < 0)
                SKIP("cannot reserve 5 GiB of address space");
        uint64_t d = 0x1000, a = 0x2000, u = 0x3000;
        REQUIRE_EQ(virtq_setup(&v, &big, 4, d, a, u, false), 0);
        uint8_t *desc = gmem_ptr(&big, d, 64);
        uint64_t addr = 0x100000;
        uint32_t len = 3u << 30;
        uint16_t f0 = VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, f1 = VIRTQ_DESC_F_WRITE, n1 = 1;
        memcpy(desc, &addr, 8);
        memcpy(desc + 8, &len, 4);
        memcpy(desc + 12, &f0, 2);
        memcpy(desc + 14, &n1, 2);
        memcpy(desc + 16, &addr, 8);
        memcpy(desc + 24, &len, 4);
        memcpy(desc + 28, &f1, 2);
        uint16_t idx = 1;
        memcpy(gmem_ptr(&big, a + 2, 2), &idx, 2);
        CHECK_EQ(virtq_pop(&v, &ch), -EIO);
        CHECK(v.broken);
        CHECK(strstr(v.error, "4 GiB") != NULL);
        gmem_destroy(&big);
}

static void t_bad_indices(void)
{
        ring(8, false);
        gq_publish(&g, 8);
        expect_broken("head == size");
        done();

        ring(8, false);
        gq_publish(&g, 0xffff);
        expect_broken("head 0xffff");
        done();

        ring(8, false);
        gq_write_desc(&g, 0, 0x20000, 4, VIRTQ_DESC_F_NEXT, 8);
        gq_publish(&g, 0);
        expect_broken("next == size");
        done();
}

static void t_avail_jump(void)
{
        ring(8, false);
        uint64_t b = buf(8);
        struct gseg s = {b, 8, false};
        gq_add(&g, &s, 1);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        /* exactly `size` ahead is legal (a full ring) */
        for (unsigned i = 0; i < 8; i++)
                gq_write_desc(&g, i, b, 8, 0, 0);
        gq_set_avail_idx(&g, (uint16_t)(1 + 8));
        CHECK_EQ(virtq_avail_count(&q), 8);
        gq_set_avail_idx(&g, (uint16_t)(1 + 9));
        CHECK_EQ(virtq_avail_count(&q), -EIO);
        CHECK(q.broken);
        done();

        /* running backwards looks like a huge jump too */
        ring(8, false);
        gq_set_avail_idx(&g, 0xffff);
        expect_broken("avail idx backwards");
        done();
}

static void t_writable_then_readable(void)
{
        ring(8, false);
        gq_write_desc(&g, 0, 0x20000, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
        gq_write_desc(&g, 1, 0x20000, 4, 0, 0);
        gq_publish(&g, 0);
        expect_broken("readable after writable");
        done();
}

static void t_indirect_ok(void)
{
        ring(8, true);
        uint64_t r = buf(10), w = buf(20);
        memcpy(guest_ptr(&vm, r, 10), "0123456789", 10);
        struct gseg s[] = {{r, 10, false}, {w, 20, true}};
        uint16_t head = gq_add_indirect(&g, s, 2);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        CHECK_EQ(ch.head, head);
        CHECK_EQ(ch.nread, 1);
        CHECK_EQ(ch.nwrite, 1);
        char tmp[10];
        CHECK_EQ(virtq_chain_read(&vm.mem, &ch, 0, tmp, 10), 10);
        CHECK(memcmp(tmp, "0123456789", 10) == 0);

        /* direct descriptors followed by a final indirect one */
        uint64_t table = guest_alloc(&vm, 16, 16);
        uint8_t *t = guest_ptr(&vm, table, 16);
        uint16_t wf = VIRTQ_DESC_F_WRITE, zero = 0;
        uint32_t wl = 20;
        memcpy(t, &w, 8);
        memcpy(t + 8, &wl, 4);
        memcpy(t + 12, &wf, 2);
        memcpy(t + 14, &zero, 2);
        gq_write_desc(&g, 4, r, 10, VIRTQ_DESC_F_NEXT, 5);
        gq_write_desc(&g, 5, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        gq_publish(&g, 4);
        REQUIRE_EQ(virtq_pop(&q, &ch), 1);
        CHECK_EQ(ch.nread, 1);
        CHECK_EQ(ch.nwrite, 1);
        CHECK_EQ(ch.write_len, 20);
        done();
}

/* Writes a raw indirect table of `n` entries and publishes a head pointing at it. */
static void indirect_case(bool negotiated, uint32_t table_len, uint64_t table_gpa, uint16_t flags,
                          const char *what)
{
        ring(8, negotiated);
        gq_write_desc(&g, 0, table_gpa, table_len, flags, 1);
        gq_publish(&g, 0);
        expect_broken(what);
        done();
}

static void t_indirect_abuse(void)
{
        indirect_case(false, 16, 0x20000, VIRTQ_DESC_F_INDIRECT, "indirect not negotiated");
        indirect_case(true, 0, 0x20000, VIRTQ_DESC_F_INDIRECT, "empty indirect table");
        indirect_case(true, 24, 0x20000, VIRTQ_DESC_F_INDIRECT, "table len not multiple of 16");
        indirect_case(true, 16 * 9, 0x20000, VIRTQ_DESC_F_INDIRECT, "table larger than queue");
        indirect_case(true, 16, LOW - 8, VIRTQ_DESC_F_INDIRECT, "table across the gap");
        indirect_case(true, 16, HIGH_AT - 8, VIRTQ_DESC_F_INDIRECT, "table from the gap");
        indirect_case(true, 16, HIGH_END - 8, VIRTQ_DESC_F_INDIRECT, "table outside RAM");
        indirect_case(true, 16, UINT64_MAX - 7, VIRTQ_DESC_F_INDIRECT, "table address wraps");
        indirect_case(true, 16, 0x20000, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
                      "indirect with NEXT");

        /* nested indirect */
        ring(8, true);
        uint64_t table = guest_alloc(&vm, 32, 16);
        uint8_t *t = guest_ptr(&vm, table, 32);
        uint16_t f = VIRTQ_DESC_F_INDIRECT;
        uint32_t l = 16;
        memcpy(t, &table, 8);
        memcpy(t + 8, &l, 4);
        memcpy(t + 12, &f, 2);
        gq_write_desc(&g, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        gq_publish(&g, 0);
        expect_broken("nested indirect");
        done();

        /* loop inside the table */
        ring(8, true);
        table = guest_alloc(&vm, 32, 16);
        t = guest_ptr(&vm, table, 32);
        uint64_t b = 0x20000;
        uint32_t bl = 4;
        uint16_t nf = VIRTQ_DESC_F_NEXT, n0 = 1, n1 = 0;
        memcpy(t, &b, 8);
        memcpy(t + 8, &bl, 4);
        memcpy(t + 12, &nf, 2);
        memcpy(t + 14, &n0, 2);
        memcpy(t + 16, &b, 8);
        memcpy(t + 24, &bl, 4);
        memcpy(t + 28, &nf, 2);
        memcpy(t + 30, &n1, 2);
        gq_write_desc(&g, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
        gq_publish(&g, 0);
        expect_broken("loop in indirect table");
        done();

        /* next index beyond the table */
        ring(8, true);
        table = guest_alloc(&vm, 16, 16);
        t = guest_ptr(&vm, table, 16);
        uint16_t far = 5;
        memcpy(t, &b, 8);
        memcpy(t + 8, &bl, 4);
        memcpy(t + 12, &nf, 2);
        memcpy(t + 14, &far, 2);
        gq_write_desc(&g, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        gq_publish(&g, 0);
        expect_broken("indirect next out of table");
        done();
}

static void t_reset_recovers(void)
{
        ring(8, false);
        gq_publish(&g, 9);
        expect_broken("bad head");
        uint64_t d = g.desc, a = g.avail, u = g.used;
        virtq_reset(&q);
        CHECK(!q.broken);
        CHECK(!q.ready);
        memset(guest_ptr(&vm, a, VIRTQ_AVAIL_BYTES(8)), 0, VIRTQ_AVAIL_BYTES(8));
        REQUIRE_EQ(virtq_setup(&q, &vm.mem, 8, d, a, u, false), 0);
        g.avail_idx = 0;
        uint64_t b = buf(4);
        struct gseg s = {b, 4, false};
        gq_add(&g, &s, 1);
        CHECK_EQ(virtq_pop(&q, &ch), 1);
        done();
}

/* Deterministic random rings: whatever the guest writes, pop either yields a chain whose every
 * segment is inside RAM and which respects the bounds, or breaks the queue. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static void t_random_rings(void)
{
        unsigned popped = 0, broke = 0;
        for (unsigned iter = 0; iter < 3000; iter++) {
                uint16_t size = (uint16_t)(1u << (rnd() % 9));
                ring_at(size, rnd() & 1, rnd() & 1);
                uint8_t *desc = guest_ptr(&vm, g.desc, VIRTQ_DESC_BYTES(size));
                for (unsigned i = 0; i < size; i++) {
                        /* mostly plausible, on either side of the gap; sometimes near an edge of
                         * a range (where a buffer may cross it); sometimes wild */
                        static const uint64_t edge[] = {LOW, HIGH_AT, HIGH_END};
                        uint64_t kind = rnd() % 16, addr;
                        if (kind == 0)
                                addr = rnd();
                        else if (kind < 4)
                                addr = edge[rnd() % 3] - 64 + rnd() % 128;
                        else
                                addr = (kind & 1 ? HIGH_AT : 0) + 0x20000 + rnd() % 0x100000;
                        uint32_t len = rnd() % 16 == 0 ? (uint32_t)rnd() : (uint32_t)(rnd() % 4096);
                        uint16_t flags = (rnd() % 4 == 0 ? VIRTQ_DESC_F_NEXT : 0) |
                                         (rnd() % 2 ? VIRTQ_DESC_F_WRITE : 0) |
                                         (rnd() % 16 == 0 ? VIRTQ_DESC_F_INDIRECT : 0) |
                                         (rnd() % 64 == 0 ? (uint16_t)rnd() : 0);
                        if (flags & VIRTQ_DESC_F_INDIRECT && rnd() % 2) {
                                addr = g.desc; /* point the table at the ring itself */
                                len = 16u * (uint32_t)(1 + rnd() % size);
                        }
                        uint16_t next = (uint16_t)(rnd() % 16 == 0 ? rnd() : rnd() % size);
                        memcpy(desc + 16 * i, &addr, 8);
                        memcpy(desc + 16 * i + 8, &len, 4);
                        memcpy(desc + 16 * i + 12, &flags, 2);
                        memcpy(desc + 16 * i + 14, &next, 2);
                }
                uint8_t *av = guest_ptr(&vm, g.avail, VIRTQ_AVAIL_BYTES(size));
                for (unsigned i = 0; i < size; i++) {
                        uint16_t h = (uint16_t)(rnd() % 16 == 0 ? rnd() : rnd() % size);
                        memcpy(av + 4 + 2 * i, &h, 2);
                }
                gq_set_avail_idx(&g, (uint16_t)(rnd() % 8 ? rnd() % (size + 1u) : rnd()));
                for (unsigned k = 0; k < 2u * size + 2; k++) {
                        int r = virtq_pop(&q, &ch);
                        broke += r < 0;
                        if (r <= 0)
                                break;
                        popped++;
                        if (ch.head >= size || ch.nread + ch.nwrite > size)
                                FAILF("iteration %u: chain bounds", iter);
                        uint64_t rl = 0, wl = 0;
                        for (unsigned i = 0; i < (unsigned)ch.nread + ch.nwrite; i++) {
                                if (ram_off(ch.seg[i].gpa, ch.seg[i].len) < 0 || !ch.seg[i].len)
                                        FAILF("iteration %u: segment 0x%" PRIx64 "+%u outside RAM",
                                              iter, ch.seg[i].gpa, ch.seg[i].len);
                                *(i < ch.nread ? &rl : &wl) += ch.seg[i].len;
                        }
                        if (rl != ch.read_len || wl != ch.write_len)
                                FAILF("iteration %u: totals", iter);
                        char tmp[256];
                        virtq_chain_read(&vm.mem, &ch, rnd() % 512, tmp, sizeof(tmp));
                        virtq_chain_write(&vm.mem, &ch, rnd() % 512, tmp, sizeof(tmp));
                        virtq_push(&q, ch.head, (uint32_t)rnd());
                }
                done();
        }
        printf("info random rings: %u chains popped, %u queues broken\n", popped, broke);
        CHECK(popped > 500);
        CHECK(broke > 500);
}

int main(void)
{
        T_RUN(t_setup_validation);
        T_RUN(t_simple_chain);
        T_RUN(t_interrupt_suppression);
        T_RUN(t_wraparound);
        T_RUN(t_loop);
        T_RUN(t_out_of_ram);
        T_RUN(t_huge_total);
        T_RUN(t_bad_indices);
        T_RUN(t_avail_jump);
        T_RUN(t_writable_then_readable);
        T_RUN(t_indirect_ok);
        T_RUN(t_indirect_abuse);
        T_RUN(t_reset_recovers);
        T_RUN(t_random_rings);
        return T_DONE();
}
