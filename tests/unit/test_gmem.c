/* Guest physical memory (src/core/gmem.c): the bounds of gmem_ptr/gmem_read/gmem_write at every
 * edge of a layout split by the MMIO gap, checked against the test's own list of RAM ranges,
 * and how the RAM mapping is kept out of fork() children and core dumps. */
#include "test.h"

#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/gmem.h"

#define MIB (1ull << 20)

/* The VmFlags line of the /proc/self/smaps entry that holds `addr`, or "" if none. */
static void smaps_vmflags(const void *addr, char *flags, size_t size)
{
        flags[0] = 0;
        FILE *f = fopen("/proc/self/smaps", "r");
        REQUIRE(f);
        char line[512];
        bool in = false;
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
                        in = lo <= (uintptr_t)addr && (uintptr_t)addr < hi;
                        continue;
                }
                if (in && strncmp(line, "VmFlags:", 8) == 0) {
                        snprintf(flags, size, "%s", line + 8);
                        break;
                }
        }
        fclose(f);
}

static bool has_flag(const char *flags, const char *flag)
{
        size_t n = strlen(flag);
        for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += n)
                if ((p == flags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
                        return true;
        return false;
}

/* Both regions of a RAM split by the MMIO gap come from one mapping: its VmFlags carry "dc"
 * (MADV_DONTFORK) and "dd" (MADV_DONTDUMP). */
static void t_ram_is_dontfork_and_dontdump(void)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 8 * MIB, 4 * MIB), 0);
        REQUIRE_EQ(m.nregions, 2);
        char flags[512];
        smaps_vmflags(m.map, flags, sizeof(flags));
        if (!flags[0])
                FAILF("no smaps entry holds the guest RAM mapping %p", (void *)m.map);
        if (!has_flag(flags, "dc") || !has_flag(flags, "dd"))
                t_fail(__FILE__, __LINE__, "VmFlags lack dc/dd:%s", flags);
        gmem_destroy(&m);
}

/* A forked child has no guest RAM: mincore() and msync() on it fail with ENOMEM there, while
 * the parent keeps it, with its contents. */
static void t_forked_child_lacks_ram(void)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, 8 * MIB, 4 * MIB), 0);
        uint8_t *lo = gmem_ptr(&m, 0x1000, 1), *hi = gmem_ptr(&m, 4ull << 30, 1);
        REQUIRE(lo && hi);
        *lo = 0x5a;
        *hi = 0xa5;
        fflush(stdout);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
                unsigned char vec[1];
                int code = 0;
                for (int i = 0; i < 2; i++) {
                        void *page = (void *)((uintptr_t)(i ? hi : lo) & ~(uintptr_t)4095);
                        if (mincore(page, 4096, vec) == 0 || errno != ENOMEM)
                                code |= 1 << (2 * i);
                        if (msync(page, 4096, MS_ASYNC) == 0 || errno != ENOMEM)
                                code |= 2 << (2 * i);
                }
                _exit(code);
        }
        int st;
        REQUIRE_EQ(waitpid(pid, &st, 0), pid);
        REQUIRE(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), 0);
        unsigned char vec[1];
        CHECK_EQ(mincore((void *)((uintptr_t)lo & ~(uintptr_t)4095), 4096, vec), 0);
        CHECK_EQ(*lo, 0x5a);
        CHECK_EQ(*hi, 0xa5);
        gmem_destroy(&m);
}

/* ---- bounds, against an oracle: the layout gmem_init documents, computed here */

struct range {
        uint64_t gpa, end; /* [gpa, end) */
        uint64_t ram_off;  /* offset of gpa in the one host mapping */
};

struct oracle {
        struct range r[2];
        unsigned n;
};

/* RAM below gap_start, the rest from 4 GiB up, back to back in the host mapping. */
static struct oracle oracle_of(uint64_t ram, uint64_t gap_start)
{
        struct oracle o = {0};
        uint64_t low = ram < gap_start ? ram : gap_start;
        o.r[o.n++] = (struct range){0, low, 0};
        if (ram > low)
                o.r[o.n++] = (struct range){4ull << 30, (4ull << 30) + (ram - low), low};
        return o;
}

/* The offset in the mapping of [gpa, gpa+len), or -1 if any byte is outside RAM. len 0 is
 * inside when gpa is in a range or at its end. 128-bit sums: no wrap to reason about. */
static int64_t oracle_off(const struct oracle *o, uint64_t gpa, uint64_t len)
{
        for (unsigned i = 0; i < o->n; i++)
                if (gpa >= o->r[i].gpa && (unsigned __int128)gpa + len <= o->r[i].end)
                        return (int64_t)(o->r[i].ram_off + (gpa - o->r[i].gpa));
        return -1;
}

static unsigned checked;

static void check_one(const struct gmem *m, const struct oracle *o, uint64_t gpa, uint64_t len)
{
        int64_t off = oracle_off(o, gpa, len);
        uint8_t *p = gmem_ptr(m, gpa, len);
        uint8_t *want = off < 0 ? NULL : m->map + off;
        checked++;
        if (p != want)
                FAILF("gmem_ptr(0x%" PRIx64 ", 0x%" PRIx64 ") = %p, want %p (offset %" PRId64 ")",
                      gpa, len, (void *)p, (void *)want, off);
        /* The copies agree, and move the right bytes, for lengths a buffer can hold. */
        if (len > 64)
                return;
        uint8_t src[64], dst[64];
        for (unsigned i = 0; i < len; i++)
                src[i] = (uint8_t)(gpa + i * 7 + 1);
        int w = gmem_write(m, gpa, src, len), r = gmem_read(m, gpa, dst, len);
        if (w != (off < 0 ? -EFAULT : 0) || r != w)
                FAILF("gmem_write/read(0x%" PRIx64 ", %" PRIu64 ") = %d/%d, offset %" PRId64, gpa,
                      len, w, r, off);
        if (off >= 0 && (memcmp(m->map + off, src, len) != 0 || memcmp(dst, src, len) != 0))
                FAILF("gmem_write/read(0x%" PRIx64 ", %" PRIu64 ") moved the wrong bytes", gpa,
                      len);
}

/* Every start near an edge (a range's ends, the gap, 4 GiB, the top of the address space)
 * with every length near an edge (0, 1, to that range's end and just past it, spans of the
 * gap, sizes that wrap). */
static void check_layout(uint64_t ram, uint64_t gap_start)
{
        struct gmem m;
        REQUIRE_EQ(gmem_init(&m, ram, gap_start), 0);
        struct oracle o = oracle_of(ram, gap_start);
        CHECK_EQ(m.nregions, o.n);
        CHECK_EQ(gmem_ram_size(&m), ram);
        uint64_t pts[32];
        unsigned np = 0;
        for (unsigned i = 0; i < o.n; i++) {
                pts[np++] = o.r[i].gpa;
                pts[np++] = o.r[i].end;
        }
        pts[np++] = gap_start;
        pts[np++] = 4ull << 30;
        pts[np++] = UINT64_MAX;
        pts[np++] = UINT64_MAX - 4095;
        pts[np++] = 1ull << 63;
        uint64_t starts[200], lens[200];
        unsigned ns = 0, nl = 0;
        static const int64_t d[] = {-4097, -4096, -65, -64, -2, -1, 0, 1, 2, 63, 4096};
        for (unsigned i = 0; i < np; i++)
                for (unsigned k = 0; k < sizeof(d) / sizeof(d[0]); k++)
                        starts[ns++] = pts[i] + (uint64_t)d[k];
        static const uint64_t l[] = {0, 1, 2, 7, 8, 63, 64, 4096, 4097};
        for (unsigned k = 0; k < sizeof(l) / sizeof(l[0]); k++)
                lens[nl++] = l[k];
        lens[nl++] = UINT64_MAX;
        lens[nl++] = UINT64_MAX - 1;
        lens[nl++] = 1ull << 63;
        lens[nl++] = ram;
        lens[nl++] = ram + 1;
        for (unsigned i = 0; i < o.n; i++) {
                uint64_t size = o.r[i].end - o.r[i].gpa;
                lens[nl++] = size;
                lens[nl++] = size - 1;
                lens[nl++] = size + 1;
                lens[nl++] = (4ull << 30) - o.r[i].gpa; /* from a start up to 4 GiB */
        }
        for (unsigned i = 0; i < ns; i++)
                for (unsigned k = 0; k < nl; k++)
                        check_one(&m, &o, starts[i], lens[k]);
        /* Each start with the lengths that end exactly at, and just past, each range's end. */
        for (unsigned i = 0; i < ns; i++)
                for (unsigned r = 0; r < o.n; r++)
                        for (int64_t e = -1; e <= 1; e++)
                                check_one(&m, &o, starts[i], o.r[r].end + (uint64_t)e - starts[i]);
        gmem_destroy(&m);
}

static void t_bounds_at_every_edge(void)
{
        checked = 0;
        check_layout(8 * MIB, 4 * MIB);            /* low 4 MiB, high 4 MiB at 4 GiB */
        check_layout(6 * MIB + 4095, 2 * MIB + 1); /* odd sizes */
        check_layout(4 * MIB, 4 * MIB);            /* fills the low part exactly: one range */
        check_layout(3 * MIB, 4 * MIB);            /* below the gap */
        check_layout(4 * MIB + 1, 4 * MIB);        /* one byte at 4 GiB */
        check_layout(2 * MIB, 4ull << 30);         /* no gap below 4 GiB */
        printf("info %u ranges checked\n", checked);
}

static void t_bounds_random(void)
{
        struct gmem m;
        const uint64_t ram = 8 * MIB, gap = 4 * MIB;
        REQUIRE_EQ(gmem_init(&m, ram, gap), 0);
        struct oracle o = oracle_of(ram, gap);
        uint64_t x = 0x2545f4914f6cdd1dull;
        static const uint64_t near[] = {0, 4 * MIB, 4ull << 30, (4ull << 30) + 4 * MIB, UINT64_MAX};
        for (unsigned i = 0; i < 200000; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                uint64_t gpa = near[x % 5] + (x >> 8) % 8192 - 4096;
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                uint64_t len = x % 4 ? (x >> 8) % 8192 : x;
                check_one(&m, &o, gpa, len);
        }
        gmem_destroy(&m);
}

static void t_init_rejects_bad_layouts(void)
{
        struct gmem m;
        CHECK_EQ(gmem_init(&m, 0, 4 * MIB), -EINVAL);
        CHECK_EQ(gmem_init(&m, 4 * MIB, 0), -EINVAL);
        CHECK_EQ(gmem_init(&m, 4 * MIB, (4ull << 30) + 1), -EINVAL);
        CHECK(gmem_init(&m, UINT64_MAX, 4 * MIB) < 0);
        CHECK(m.map == NULL && m.nregions == 0);
}

int main(void)
{
        T_RUN(t_bounds_at_every_edge);
        T_RUN(t_bounds_random);
        T_RUN(t_init_rejects_bad_layouts);
        T_RUN(t_ram_is_dontfork_and_dontdump);
        T_RUN(t_forked_child_lacks_ram);
        return T_DONE();
}
