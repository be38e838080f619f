#include "core/hostfd.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/thread.h"
#include "ember/ember.h"

/* 1 if epoll accepts the fd, 0 if it refuses it (EPERM: regular files and the like). */
static int fd_pollable(int fd)
{
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return -errno;
        struct epoll_event ev = {.events = EPOLLIN};
        int r = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        int e = errno;
        close(ep);
        if (r == 0)
                return 1;
        return e == EPERM ? 0 : -e;
}

int hostfd_classify(int fd, enum hostfd_kind *kind)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        int p = fd_pollable(fd);
        if (p < 0)
                return p;
        *kind = !p ? HOSTFD_FILE : S_ISSOCK(st.st_mode) ? HOSTFD_SOCKET : HOSTFD_STREAM;
        return 0;
}

struct timespec hostfd_deadline_in(uint64_t ms)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += (time_t)(ms / 1000);
        t.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

bool hostfd_deadline_passed(const struct timespec *deadline)
{
        if (!deadline)
                return false;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return now.tv_sec > deadline->tv_sec ||
               (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

struct hostfd_writer {
        int fd;
        enum hostfd_kind kind;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t data_cv; /* the thread waits for data */
        pthread_cond_t done_cv; /* drain waits for progress */
        uint8_t *buf;
        size_t cap, head, len;
        size_t writing; /* bytes of [head, head + len) the thread is writing now */
        bool stop, dead, room_wanted;
        char name[16];
        int room_fd;
        struct hostfd_writer_stats stats;
};

static ssize_t write_some(struct hostfd_writer *w, const void *p, size_t n)
{
        if (w->kind == HOSTFD_SOCKET)
                return send(w->fd, p, n, MSG_NOSIGNAL);
        return write(w->fd, p, n);
}

static void *writer_main(void *arg)
{
        struct hostfd_writer *w = arg;
        pthread_mutex_lock(&w->lock);
        for (;;) {
                while ((!w->len || w->dead) && !w->stop)
                        pthread_cond_wait(&w->data_cv, &w->lock);
                if (w->stop)
                        break;
                /* Put only appends after head + len, so this chunk is ours while unlocked. */
                size_t chunk = w->len < w->cap - w->head ? w->len : w->cap - w->head;
                const uint8_t *p = w->buf + w->head;
                w->writing = chunk;
                pthread_mutex_unlock(&w->lock);
                ssize_t n = write_some(w, p, chunk);
                int e = errno;
                pthread_mutex_lock(&w->lock);
                if (n > 0) {
                        w->head = (w->head + (size_t)n) % w->cap;
                        w->len -= (size_t)n;
                        w->stats.written += (uint64_t)n;
                        if (w->room_wanted) {
                                uint64_t one = 1;
                                w->room_wanted = false;
                                if (write(w->room_fd, &one, sizeof(one)) < 0) {
                                        /* saturated: readable anyway */
                                }
                        }
                } else if (n < 0 && (e == EINTR || e == EAGAIN)) {
                        /* Kicked (stop checked above), or a non-blocking fd the caller shares:
                         * wait for it rather than spin. */
                        if (e == EAGAIN && !w->stop) {
                                struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
                                pthread_mutex_unlock(&w->lock);
                                poll(&pfd, 1, 100);
                                pthread_mutex_lock(&w->lock);
                        }
                } else {
                        w->dead = true;
                        w->stats.error = n == 0 ? EIO : e;
                        w->stats.dropped += w->len;
                        w->len = 0;
                }
                w->writing = 0;
                if (w->dead && w->len) {
                        /* drain gave up on the rest while this write ran */
                        w->stats.dropped += w->len;
                        w->len = 0;
                }
                pthread_cond_broadcast(&w->done_cv);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int hostfd_writer_create(int fd, size_t capacity, const char *name, struct hostfd_writer **out)
{
        *out = NULL;
        if (fd < 0 || capacity == 0)
                return -EINVAL;
        struct hostfd_writer *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->fd = fd;
        w->cap = capacity;
        w->room_fd = -1;
        int rc = hostfd_classify(fd, &w->kind);
        if (rc)
                goto fail;
        w->buf = malloc(capacity);
        w->room_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!w->buf || w->room_fd < 0) {
                rc = w->buf ? -errno : -ENOMEM;
                goto fail;
        }
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->data_cv, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&w->done_cv, &ca);
        pthread_condattr_destroy(&ca);
        snprintf(w->name, sizeof(w->name), "%s", name ? name : "ember-writer");
        *out = w;
        return 0;
fail:
        if (w->room_fd >= 0)
                close(w->room_fd);
        free(w->buf);
        free(w);
        return rc;
}

void hostfd_writer_destroy(struct hostfd_writer *w)
{
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_broadcast(&w->data_cv);
        pthread_mutex_unlock(&w->lock);
        /* It may be blocked in a write to a stuck reader: the kick interrupts it. */
        if (w->started)
                ember_thread_join_kicking(w->thread, NULL, NULL);
        w->started = false;
        pthread_cond_destroy(&w->data_cv);
        pthread_cond_destroy(&w->done_cv);
        pthread_mutex_destroy(&w->lock);
        close(w->room_fd);
        free(w->buf);
        free(w);
}

/* The thread starts with the first byte to write: a stream that never carries anything costs
 * no thread. Lock held. */
static void writer_start(struct hostfd_writer *w)
{
        if (w->started || w->dead)
                return;
        if (ember_thread_spawn(&w->thread, writer_main, w, true, w->name) == 0) {
                w->started = true;
                return;
        }
        w->dead = true;
        w->stats.error = EAGAIN;
}

size_t hostfd_writer_put(struct hostfd_writer *w, const void *p, size_t len)
{
        pthread_mutex_lock(&w->lock);
        if (len && !w->stop)
                writer_start(w);
        size_t take = len;
        if (w->dead || w->stop) {
                w->stats.dropped += len;
        } else {
                size_t room = w->cap - w->len;
                if (take > room) {
                        take = room;
                        w->room_wanted = true;
                }
                size_t tail = (w->head + w->len) % w->cap;
                size_t first = take < w->cap - tail ? take : w->cap - tail;
                memcpy(w->buf + tail, p, first);
                memcpy(w->buf, (const uint8_t *)p + first, take - first);
                w->len += take;
                if (take)
                        pthread_cond_signal(&w->data_cv);
        }
        pthread_mutex_unlock(&w->lock);
        return take;
}

int hostfd_writer_room_fd(const struct hostfd_writer *w)
{
        return w->room_fd;
}

static bool cancelled(int cancel_fd)
{
        if (cancel_fd < 0)
                return false;
        struct pollfd p = {.fd = cancel_fd, .events = POLLIN};
        return poll(&p, 1, 0) > 0;
}

/* Waits on done_cv for at most 20 ms, and less than what is left to the deadline. Lock held. */
static void wait_progress(struct hostfd_writer *w, const struct timespec *deadline)
{
        struct timespec t = hostfd_deadline_in(20);
        if (deadline && (deadline->tv_sec < t.tv_sec ||
                         (deadline->tv_sec == t.tv_sec && deadline->tv_nsec < t.tv_nsec)))
                t = *deadline;
        pthread_cond_timedwait(&w->done_cv, &w->lock, &t);
}

uint64_t hostfd_writer_drain(struct hostfd_writer *w, const struct timespec *deadline,
                             int cancel_fd)
{
        pthread_mutex_lock(&w->lock);
        while (w->len && !w->dead && !hostfd_deadline_passed(deadline) && !cancelled(cancel_fd))
                wait_progress(w, deadline);
        uint64_t dropped = 0;
        if (w->len && !w->dead) {
                /* The chunk being written may still reach the fd (counted as written then); the
                 * rest is dropped, and so is anything put later. */
                dropped = w->len - w->writing;
                w->stats.dropped += dropped;
                w->len = w->writing;
                w->dead = true;
        }
        pthread_mutex_unlock(&w->lock);
        return dropped;
}

bool hostfd_writer_wait_room(struct hostfd_writer *w, const struct timespec *deadline,
                             int cancel_fd)
{
        pthread_mutex_lock(&w->lock);
        while (w->len == w->cap && !w->dead && !hostfd_deadline_passed(deadline) &&
               !cancelled(cancel_fd))
                wait_progress(w, deadline);
        bool room = w->len < w->cap || w->dead;
        pthread_mutex_unlock(&w->lock);
        return room;
}

void hostfd_writer_get_stats(struct hostfd_writer *w, struct hostfd_writer_stats *s)
{
        pthread_mutex_lock(&w->lock);
        *s = w->stats;
        pthread_mutex_unlock(&w->lock);
}
