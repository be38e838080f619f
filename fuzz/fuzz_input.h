/* The fuzz targets read their inputs as little programs: an opcode, then operands. */
#ifndef EMBER_FUZZ_INPUT_H
#define EMBER_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct fuzz_input {
        const uint8_t *p;
        size_t n;
};

/* The next `bytes` (at most 4) bytes, little-endian; bytes past the end of the input read as 0. */
static inline uint32_t fuzz_take(struct fuzz_input *in, unsigned bytes)
{
        uint32_t v = 0;
        for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
                v |= (uint32_t)*in->p << (8 * i);
        return v;
}

#endif
