/* Guest physical memory (src/core/gmem.c): how the RAM mapping is kept out of fork() children
 * and core dumps. */
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

int main(void)
{
        T_RUN(t_ram_is_dontfork_and_dontdump);
        T_RUN(t_forked_child_lacks_ram);
        return T_DONE();
}
