/* virtio-blk on a raw image (src/virtio/blk.c). The VM creates disks through the device table
 * (virtio_blk_type, one per configured disk); blk_create is for tests and fuzzing. */
#ifndef EMBER_VIRTIO_BLK_H
#define EMBER_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dev_env.h"
#include "ember/ember.h"

#define BLK_SECTOR     512u
#define BLK_QUEUE_SIZE 256u
/* Requests: at most BLK_SEG_MAX data segments of at most BLK_SIZE_MAX bytes (what Linux is
 * told), and never more than BLK_MAX_REQ_BYTES of data (what the device enforces). */
#define BLK_SEG_MAX       254u
#define BLK_SIZE_MAX      (16u * 1024u)
#define BLK_MAX_REQ_BYTES (4u << 20)
/* Discard / write-zeroes: segments per request, sectors per segment, alignment (4 KiB). */
#define BLK_MAX_DWZ_SEGS          16u
#define BLK_MAX_DWZ_SECTORS       (1u << 23)
#define BLK_DISCARD_ALIGN_SECTORS 8u
#define BLK_ID_LEN                20u /* VIRTIO_BLK_ID_BYTES */

struct virtio_dev;
struct virtio_blk;

struct blk_params {
        const char *path;
        bool read_only;
        const char *serial; /* GET_ID answer, at most BLK_ID_LEN bytes used; NULL: empty */
        /* For tests: called on the worker after each request's I/O, before it takes the device
         * lock to answer (so a test can reset the device while a request is in flight). */
        void (*io_done_hook)(void *arg);
        void *hook_arg;
};

struct blk_stats {
        uint64_t requests;    /* chains popped */
        uint64_t errors;      /* requests answered IOERR or UNSUPP */
        uint64_t dropped;     /* finished after a reset (or stop): not returned */
        uint64_t read_bytes;  /* completed IN data */
        uint64_t write_bytes; /* completed OUT data */
};

/* Opens and checks an image: O_RDONLY or O_RDWR (O_CLOEXEC), a regular file or a block device,
 * flock'ed (shared for ro, exclusive for rw, non-blocking: "in use by another process"),
 * non-empty and a multiple of 512 bytes. Returns 0 with the fd and its size, or -errno with a
 * message naming the disk. */
int blk_image_open(const char *path, bool ro, int *fd, uint64_t *bytes, bool *is_blockdev,
                   char *err, size_t errlen);

/* A disk with its worker thread and its virtio core. On failure *code is EMBER_ERR_DISK for a
 * problem with the image (blk_image_open), EMBER_ERR_RESOURCE otherwise. */
int blk_create(const struct dev_env *env, const struct blk_params *p, struct virtio_dev **out,
               struct virtio_blk **blk, enum ember_error *code, char *err, size_t errlen);
void blk_get_stats(struct virtio_blk *b, struct blk_stats *out);
/* Request slots taken (queued, running, or being answered). At most BLK_QUEUE_SIZE. */
unsigned blk_in_flight(struct virtio_blk *b);

#endif
