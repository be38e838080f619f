/* Little-endian field access on byte buffers and error text, shared by the x86_64 boot code.
 * Byte-wise on purpose: image and guest buffers have no alignment guarantee. */
#ifndef EMBER_ARCH_X86_64_BYTES_H
#define EMBER_ARCH_X86_64_BYTES_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

static inline uint16_t x86_le16(const uint8_t *p)
{
        return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t x86_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t x86_le64(const uint8_t *p)
{
        return (uint64_t)x86_le32(p) | (uint64_t)x86_le32(p + 4) << 32;
}

static inline void x86_put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static inline void x86_put32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static inline void x86_put64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static inline void x86_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void x86_errf(char *err, size_t errlen, const char *fmt, ...)
{
        if (!err || errlen == 0)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

/* Whole MiB, rounded up: what a size "needs". */
static inline unsigned long long x86_mib_up(uint64_t bytes)
{
        return (unsigned long long)(bytes / (1ull << 20) + (bytes % (1ull << 20) != 0));
}

#endif
