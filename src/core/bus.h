/* Address-range dispatch for port I/O and MMIO exits. Devices are registered before the vCPUs
 * start and never removed while they run, so dispatch takes no lock; each device serializes
 * its own state. */
#ifndef EMBER_CORE_BUS_H
#define EMBER_CORE_BUS_H

#include <stdbool.h>
#include <stdint.h>

#define BUS_MAX_DEVICES 64

struct bus_dev_ops {
        /* `offset` is relative to the registered base; len is 1..8 (the access width). A read
         * fills data[0..len). Values come straight from the guest: validate them. */
        void (*read)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len);
        void (*write)(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len);
};

struct bus_range {
        uint64_t base, len;
        const struct bus_dev_ops *ops;
        void *opaque;
        const char *name;
};

struct bus {
        struct bus_range range[BUS_MAX_DEVICES];
        unsigned n;
};

void bus_init(struct bus *b);
/* -EEXIST if the range overlaps a registered one, -ENOSPC when full, -EINVAL for len 0 or wrap. */
int bus_add(struct bus *b, uint64_t base, uint64_t len, const struct bus_dev_ops *ops, void *opaque,
            const char *name);
/* Routes an access. Returns false when no device claims the whole access; then a read
 * returns all-ones, as on a real bus with nothing behind it. */
bool bus_dispatch(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
