/* Guest physical memory: the one place that turns a guest physical address into a host pointer.
 * Every guest memory access in ember goes through gmem_ptr() (directly or via the helpers below),
 * which checks that the whole range lies inside one RAM region, without integer overflow. */
#ifndef EMBER_CORE_GMEM_H
#define EMBER_CORE_GMEM_H

#include <stddef.h>
#include <stdint.h>

#define GMEM_MAX_REGIONS 4

struct gmem_region {
        uint64_t gpa;  /* guest physical start */
        uint64_t size; /* bytes */
        uint8_t *host; /* host mapping of the region */
};

struct gmem {
        struct gmem_region region[GMEM_MAX_REGIONS];
        unsigned nregions;
        uint8_t *map; /* one anonymous mapping backing all regions */
        size_t map_size;
};

/* Host alignment of guest RAM (the x86 huge page size). */
#define GMEM_ALIGN (2ull << 20)

/* Lays out `ram_size` bytes of RAM below `gap_start` and, for what does not fit, from 4 GiB up;
 * maps it (anonymous, MAP_NORESERVE, GMEM_ALIGN-aligned, left out of fork() children and core
 * dumps). Returns 0 or -errno. */
int gmem_init(struct gmem *m, uint64_t ram_size, uint64_t gap_start);
void gmem_destroy(struct gmem *m);

/* Host pointer for [gpa, gpa+len) if the range is wholly inside one region, else NULL.
 * len 0 is valid (returns a pointer if gpa is inside or at the end of a region). */
void *gmem_ptr(const struct gmem *m, uint64_t gpa, uint64_t len);

/* Copy in/out of guest memory: 0 or -EFAULT if any byte is outside RAM. */
int gmem_read(const struct gmem *m, uint64_t gpa, void *dst, size_t len);
int gmem_write(const struct gmem *m, uint64_t gpa, const void *src, size_t len);

/* Gives the whole host pages inside [gpa, gpa+len) back to the host (MADV_DONTNEED on the
 * anonymous mapping): the guest reads zeros there afterwards, and the host memory is free until
 * the guest touches the pages again. The range must lie wholly inside one region (-EFAULT
 * otherwise, nothing done); partial pages at its ends are kept. Returns the bytes given back
 * (>= 0) or -errno. */
int64_t gmem_discard(const struct gmem *m, uint64_t gpa, uint64_t len);

/* Total RAM bytes. */
uint64_t gmem_ram_size(const struct gmem *m);

#endif
