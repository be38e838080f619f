/* The VM's event loop: one epoll set serviced by the VM's event thread. Callbacks run on that
 * thread only. fds may be added and removed from callbacks. */
#ifndef EMBER_CORE_EVLOOP_H
#define EMBER_CORE_EVLOOP_H

#include <stdint.h>

#define EVLOOP_MAX_SOURCES 64

typedef void (*evloop_cb)(void *opaque, uint32_t events);

struct evloop_source {
        int fd;
        evloop_cb cb;
        void *opaque;
        /* Bumped when the slot is freed: an event fetched for the slot's previous source (in the
         * batch being dispatched) carries the old value and is dropped, not given to a source
         * that reused the slot. */
        uint32_t gen;
};

struct evloop {
        int epfd;
        struct evloop_source src[EVLOOP_MAX_SOURCES];
};

int evloop_init(struct evloop *l);
void evloop_destroy(struct evloop *l);
/* events: EPOLLIN / EPOLLOUT / ... Returns 0 or -errno (-ENOSPC when full, -EEXIST for a fd
 * already present). */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque);
int evloop_mod(struct evloop *l, int fd, uint32_t events);
int evloop_del(struct evloop *l, int fd);
/* Waits up to timeout_ms (-1: forever) and dispatches ready sources. Returns the number of
 * callbacks run, 0 on timeout, or -errno (EINTR is retried internally as a 0). */
int evloop_run_once(struct evloop *l, int timeout_ms);

#endif
