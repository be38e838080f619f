#include "core/evloop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int evloop_init(struct evloop *l)
{
        memset(l, 0, sizeof(*l));
        for (unsigned i = 0; i < EVLOOP_MAX_SOURCES; i++)
                l->src[i].fd = -1;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        return l->epfd < 0 ? -errno : 0;
}

void evloop_destroy(struct evloop *l)
{
        if (l->epfd >= 0)
                close(l->epfd);
        l->epfd = -1;
}

/* epoll's cookie for a source: its slot and generation. */
static uint64_t evloop_cookie(const struct evloop *l, const struct evloop_source *s)
{
        return (uint64_t)s->gen << 32 | (uint64_t)(s - l->src);
}

static struct evloop_source *evloop_find(struct evloop *l, int fd)
{
        for (unsigned i = 0; i < EVLOOP_MAX_SOURCES; i++)
                if (l->src[i].fd == fd)
                        return &l->src[i];
        return NULL;
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque)
{
        if (fd < 0 || !cb)
                return -EINVAL;
        if (evloop_find(l, fd))
                return -EEXIST;
        struct evloop_source *s = evloop_find(l, -1);
        if (!s)
                return -ENOSPC;
        struct epoll_event ev = {.events = events, .data.u64 = evloop_cookie(l, s)};
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        s->fd = fd;
        s->cb = cb;
        s->opaque = opaque;
        return 0;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
        struct evloop_source *s = evloop_find(l, fd);
        if (fd < 0 || !s)
                return -ENOENT;
        struct epoll_event ev = {.events = events, .data.u64 = evloop_cookie(l, s)};
        return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int evloop_del(struct evloop *l, int fd)
{
        struct evloop_source *s = evloop_find(l, fd);
        if (fd < 0 || !s)
                return -ENOENT;
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
        s->fd = -1;
        s->cb = NULL;
        s->gen++;
        return 0;
}

int evloop_run_once(struct evloop *l, int timeout_ms)
{
        struct epoll_event ev[16];
        int n = epoll_wait(l->epfd, ev, 16, timeout_ms);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        int ran = 0;
        for (int i = 0; i < n; i++) {
                uint64_t cookie = ev[i].data.u64;
                uint32_t slot = (uint32_t)cookie;
                if (slot >= EVLOOP_MAX_SOURCES)
                        continue;
                struct evloop_source *s = &l->src[slot];
                /* A callback earlier in this batch may have removed this source, and maybe
                 * added another one in its slot. */
                if (s->fd < 0 || !s->cb || s->gen != (uint32_t)(cookie >> 32))
                        continue;
                s->cb(s->opaque, ev[i].events);
                ran++;
        }
        return ran;
}
