#include "core/bus.h"

#include <errno.h>
#include <string.h>

void bus_init(struct bus *b)
{
        memset(b, 0, sizeof(*b));
}

int bus_add(struct bus *b, uint64_t base, uint64_t len, const struct bus_dev_ops *ops, void *opaque,
            const char *name)
{
        if (len == 0 || base + len < base || !ops)
                return -EINVAL;
        if (b->n == BUS_MAX_DEVICES)
                return -ENOSPC;
        unsigned pos = 0;
        for (; pos < b->n; pos++) {
                const struct bus_range *r = &b->range[pos];
                if (base < r->base + r->len && r->base < base + len)
                        return -EEXIST;
                if (base < r->base)
                        break;
        }
        for (unsigned i = pos; i < b->n; i++)
                if (b->range[i].base < base + len && base < b->range[i].base + b->range[i].len)
                        return -EEXIST;
        memmove(&b->range[pos + 1], &b->range[pos], (b->n - pos) * sizeof(b->range[0]));
        b->range[pos] = (struct bus_range){base, len, ops, opaque, name};
        b->n++;
        return 0;
}

static const struct bus_range *bus_find(const struct bus *b, uint64_t addr)
{
        unsigned lo = 0, hi = b->n;
        while (lo < hi) {
                unsigned mid = lo + (hi - lo) / 2;
                const struct bus_range *r = &b->range[mid];
                if (addr < r->base)
                        hi = mid;
                else if (addr - r->base >= r->len)
                        lo = mid + 1;
                else
                        return r;
        }
        return NULL;
}

bool bus_dispatch(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
        const struct bus_range *r = len ? bus_find(b, addr) : NULL;
        if (!r || len > 8 || len > r->len - (addr - r->base)) {
                if (!is_write)
                        memset(data, 0xff, len > 8 ? 8 : len);
                return false;
        }
        if (is_write) {
                if (r->ops->write)
                        r->ops->write(r->opaque, addr - r->base, data, len);
        } else {
                memset(data, 0, len);
                if (r->ops->read)
                        r->ops->read(r->opaque, addr - r->base, data, len);
        }
        return true;
}
