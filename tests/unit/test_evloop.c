/* The VM's event loop (src/core/evloop.c): dispatch, and callbacks that remove and add sources
 * while a batch of fetched events is being dispatched. */
#include "test.h"

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/evloop.h"

static struct evloop L;

struct src {
        int fd;
        unsigned calls;
        uint32_t events;
};

static struct src A, X, B;
static int b_added;

/* Level-triggered: a callback drains its eventfd or is called again in the next batch. */
static void drain(int fd)
{
        uint64_t v;
        if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                t_fail(__FILE__, __LINE__, "read eventfd: %s", strerror(errno));
}

static void count_cb(void *opaque, uint32_t events)
{
        struct src *s = opaque;
        drain(s->fd);
        s->calls++;
        s->events = events;
}

/* Whichever of A and X runs first removes the other and adds B, which takes the freed slot
 * (the first free one). The other's event is already fetched in this batch: it must not reach
 * B, whose fd is not even readable. */
static void swap_cb(void *opaque, uint32_t events)
{
        struct src *self = opaque, *other = self == &A ? &X : &A;
        drain(self->fd);
        self->calls++;
        if (b_added)
                return;
        CHECK_EQ(evloop_del(&L, other->fd), 0);
        CHECK_EQ(evloop_add(&L, B.fd, EPOLLIN, count_cb, &B), 0);
        b_added = 1;
}

static void signal_fd(int fd)
{
        uint64_t one = 1;
        REQUIRE_EQ(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

static void reset(void)
{
        memset(&A, 0, sizeof(A));
        memset(&X, 0, sizeof(X));
        memset(&B, 0, sizeof(B));
        b_added = 0;
        A.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        X.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        B.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        REQUIRE(A.fd >= 0 && X.fd >= 0 && B.fd >= 0);
        REQUIRE_EQ(evloop_init(&L), 0);
}

static void done(void)
{
        evloop_destroy(&L);
        close(A.fd);
        close(X.fd);
        close(B.fd);
}

static void t_dispatches_ready_sources(void)
{
        reset();
        REQUIRE_EQ(evloop_add(&L, A.fd, EPOLLIN, count_cb, &A), 0);
        REQUIRE_EQ(evloop_add(&L, X.fd, EPOLLIN, count_cb, &X), 0);
        CHECK_EQ(evloop_add(&L, A.fd, EPOLLIN, count_cb, &A), -EEXIST);
        CHECK_EQ(evloop_run_once(&L, 0), 0);
        signal_fd(X.fd);
        CHECK_EQ(evloop_run_once(&L, 1000), 1);
        CHECK_EQ(X.calls, 1);
        CHECK_EQ(X.events, EPOLLIN);
        CHECK_EQ(A.calls, 0);
        CHECK_EQ(evloop_del(&L, X.fd), 0);
        CHECK_EQ(evloop_del(&L, X.fd), -ENOENT);
        CHECK_EQ(evloop_run_once(&L, 0), 0);
        done();
}

/* A fetched event of a source removed in the same batch goes nowhere, even when a source
 * added in the same batch took its slot; the new source gets its own events afterwards. */
static void t_removed_source_event_not_given_to_slot_reuser(void)
{
        reset();
        REQUIRE_EQ(evloop_add(&L, A.fd, EPOLLIN, swap_cb, &A), 0);
        REQUIRE_EQ(evloop_add(&L, X.fd, EPOLLIN, swap_cb, &X), 0);
        signal_fd(A.fd);
        signal_fd(X.fd);
        CHECK_EQ(evloop_run_once(&L, 1000), 1);
        CHECK_EQ(A.calls + X.calls, 1);
        CHECK(b_added);
        CHECK_EQ(B.calls, 0);
        /* B works, and the removed source is gone for good. */
        signal_fd(B.fd);
        CHECK_EQ(evloop_run_once(&L, 1000), 1);
        CHECK_EQ(B.calls, 1);
        CHECK_EQ(A.calls + X.calls, 1);
        done();
}

/* The same with the fd itself removed and added again in its own slot by the other callback:
 * the old event is not dispatched to the re-added source. */
static void readd_cb(void *opaque, uint32_t events)
{
        struct src *self = opaque, *other = self == &A ? &X : &A;
        drain(self->fd);
        self->calls++;
        if (b_added)
                return;
        CHECK_EQ(evloop_del(&L, other->fd), 0);
        CHECK_EQ(evloop_add(&L, other->fd, EPOLLOUT, count_cb, &B), 0);
        b_added = 1;
}

static void t_readded_fd_does_not_get_stale_event(void)
{
        reset();
        REQUIRE_EQ(evloop_add(&L, A.fd, EPOLLIN, readd_cb, &A), 0);
        REQUIRE_EQ(evloop_add(&L, X.fd, EPOLLIN, readd_cb, &X), 0);
        signal_fd(A.fd);
        signal_fd(X.fd);
        /* The re-added fd is writable, so a fresh EPOLLOUT for it may legitimately come in a later
         * batch; in this one only the stale EPOLLIN could reach B. */
        CHECK_EQ(evloop_run_once(&L, 1000), 1);
        CHECK_EQ(B.calls, 0);
        done();
}

int main(void)
{
        T_RUN(t_dispatches_ready_sources);
        T_RUN(t_removed_source_event_not_given_to_slot_reuser);
        T_RUN(t_readded_fd_does_not_get_stale_event);
        return T_DONE();
}
