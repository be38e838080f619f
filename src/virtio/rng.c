/* virtio-rng (device id 4): one queue; the device fills each writable buffer with bytes from
 * the host's getrandom(). Linux registers it as a hwrng of quality 1000, so its bytes feed the
 * guest's entropy pool at boot. Each request gets at most RNG_MAX_PER_REQUEST bytes: Linux
 * asks for what it wants and takes what it gets, and a guest posting huge (or aliased)
 * buffers gets no more host work than that per chain. */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "core/devices.h"
#include "core/err.h"
#include "virtio/virtio.h"

#define VIRTIO_ID_RNG       4u
#define RNG_QUEUE_SIZE      64u
#define RNG_MAX_PER_REQUEST (64u * 1024u)

struct virtio_rng {
        struct virtio_dev *vd;
        struct virtq_chain chain;
        uint8_t buf[RNG_MAX_PER_REQUEST];
        uint64_t bytes; /* delivered to the guest */
};

/* Fills the writable part of the chain, at most `max` bytes; returns the bytes written. */
static uint32_t rng_fill(struct virtio_rng *r, uint32_t max)
{
        const struct gmem *mem = virtio_mem(r->vd);
        uint32_t want = r->chain.write_len < max ? r->chain.write_len : max;
        uint32_t got = 0;
        while (got < want) {
                ssize_t n = getrandom(r->buf + got, want - got, GRND_NONBLOCK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break; /* the pool is not ready (never after boot): deliver what we have */
                got += (uint32_t)n;
        }
        return (uint32_t)virtq_chain_write(mem, &r->chain, 0, r->buf, got);
}

static void rng_queue_notify(void *dev, unsigned q)
{
        struct virtio_rng *r = dev;
        struct virtio_budget b = virtio_budget_default();
        bool pushed = false;
        while (virtio_pop_budget(r->vd, q, &r->chain, &b) > 0) {
                uint32_t n = rng_fill(r, RNG_MAX_PER_REQUEST);
                virtio_push(r->vd, q, r->chain.head, n);
                r->bytes += n;
                pushed = true;
                if (!virtio_budget_charge(r->vd, q, &b, n))
                        break;
        }
        if (pushed)
                virtio_signal_used(r->vd, q);
}

static void rng_destroy(void *dev)
{
        free(dev);
}

static const struct virtio_dev_ops rng_ops = {
    .name = "virtio-rng",
    .device_id = VIRTIO_ID_RNG,
    .num_queues = 1,
    .queue_max = RNG_QUEUE_SIZE,
    .queue_notify = rng_queue_notify,
    .destroy = rng_destroy,
};

static unsigned rng_count(const struct ember_config *cfg)
{
        return cfg->no_rng ? 0 : 1;
}

static int rng_create(const struct dev_env *env, const struct ember_config *cfg, unsigned index,
                      struct virtio_dev **out, enum ember_error *code, char *err, size_t errlen)
{
        struct virtio_rng *r = calloc(1, sizeof(*r));
        if (!r) {
                *code = EMBER_ERR_RESOURCE;
                return ember_errf(err, errlen, ENOMEM, "virtio-rng: out of memory");
        }
        int rc = virtio_dev_create(env, &rng_ops, r, &r->vd, err, errlen);
        if (rc) {
                free(r);
                *code = EMBER_ERR_RESOURCE;
                return rc;
        }
        *out = r->vd;
        return 0;
}

const struct vm_device_type virtio_rng_type = {
    .name = "virtio-rng",
    .count = rng_count,
    .create = rng_create,
};
