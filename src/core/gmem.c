#include "core/gmem.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define GIB      (1ull << 30)
#define FOUR_GIB (4ull << 30)

int gmem_init(struct gmem *m, uint64_t ram_size, uint64_t gap_start)
{
        memset(m, 0, sizeof(*m));
        if (ram_size == 0 || gap_start == 0 || gap_start > FOUR_GIB)
                return -EINVAL;
        if (ram_size > SIZE_MAX - GMEM_ALIGN)
                return -ENOMEM;
        /* Over-map, then trim to a GMEM_ALIGN boundary: KVM can back a 2 MiB guest page with a
         * huge page only when guest and host addresses agree modulo 2 MiB. With the host's
         * transparent huge pages that makes a booting Linux guest about a quarter faster
         * (measured in the TCG test host); ember follows the host's THP policy otherwise. */
        uint8_t *raw = mmap(NULL, ram_size + GMEM_ALIGN, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw == MAP_FAILED)
                return -errno;
        uint8_t *p = (uint8_t *)(((uintptr_t)raw + GMEM_ALIGN - 1) & ~(uintptr_t)(GMEM_ALIGN - 1));
        size_t head = (size_t)(p - raw), tail = GMEM_ALIGN - head;
        if (head)
                munmap(raw, head);
        if (tail)
                munmap(p + ram_size, tail);
        /* Guest RAM is the guest's, not the embedding application's: a fork() of that
         * application must not copy it (or share its pages copy-on-write with a child that
         * outlives the VM), and a core dump of the VMM must not carry the guest's secrets. */
        if (madvise(p, ram_size, MADV_DONTFORK) != 0 || madvise(p, ram_size, MADV_DONTDUMP) != 0) {
                int err = -errno;
                munmap(p, ram_size);
                return err;
        }
        m->map = p;
        m->map_size = ram_size;
        uint64_t low = ram_size < gap_start ? ram_size : gap_start;
        m->region[0] = (struct gmem_region){.gpa = 0, .size = low, .host = m->map};
        m->nregions = 1;
        if (ram_size > low) {
                m->region[1] = (struct gmem_region){
                    .gpa = FOUR_GIB, .size = ram_size - low, .host = m->map + low};
                m->nregions = 2;
        }
        return 0;
}

void gmem_destroy(struct gmem *m)
{
        if (m->map)
                munmap(m->map, m->map_size);
        memset(m, 0, sizeof(*m));
}

void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len)
{
        for (unsigned i = 0; i < m->nregions; i++) {
                const struct gmem_region *r = &m->region[i];
                if (gpa < r->gpa)
                        continue;
                uint64_t off = gpa - r->gpa;
                /* Written so that neither side can overflow: off <= size, then len <= size - off.
                 */
                if (off > r->size || len > r->size - off)
                        continue;
                return r->host + off;
        }
        return NULL;
}

int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, size_t len)
{
        void *p = gmem_ptr(m, gpa, len);
        if (!p)
                return -EFAULT;
        memcpy(dst, p, len);
        return 0;
}

int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, size_t len)
{
        void *p = gmem_ptr(m, gpa, len);
        if (!p)
                return -EFAULT;
        memcpy(p, src, len);
        return 0;
}

int64_t gmem_discard(const struct gmem *m, uint64_t gpa, uint64_t len)
{
        uint8_t *p = gmem_ptr(m, gpa, len);
        if (!p || len > INT64_MAX)
                return -EFAULT;
        /* Host pages are 4 KiB on x86_64, and regions start 2 MiB-aligned on the host, so guest
         * and host page boundaries agree. */
        const uint64_t page = 4096;
        uint64_t start = (gpa + page - 1) & ~(page - 1), end = (gpa + len) & ~(page - 1);
        if (start < gpa || end <= start)
                return 0;
        if (madvise(p + (start - gpa), end - start, MADV_DONTNEED) != 0)
                return -errno;
        return (int64_t)(end - start);
}

uint64_t gmem_ram_size(const struct gmem *m)
{
        uint64_t total = 0;
        for (unsigned i = 0; i < m->nregions; i++)
                total += m->region[i].size;
        return total;
}
