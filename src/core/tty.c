#include "core/tty.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "ember/guest_abi.h"

struct tty_relay {
        int in_fd;          /* borrowed, or -1 */
        int pipe_r, pipe_w; /* console's stdin / our output */
        int wake_fd;        /* eventfd: a new size, or stop */
        atomic_uint size;   /* rows << 16 | cols; the last one asked for */
        unsigned sent;      /* the last one sent, + 1 (0: none yet) */
        atomic_bool stop;
        pthread_t thread;
        bool started;
};

size_t tty_record(uint8_t *out, unsigned type, const void *payload, size_t len)
{
        out[0] = (uint8_t)type;
        out[1] = 0;
        out[2] = (uint8_t)len;
        out[3] = (uint8_t)(len >> 8);
        memcpy(out + EMBER_TTY_REC_HDR, payload, len);
        return EMBER_TTY_REC_HDR + len;
}

int tty_size_of(int fd, unsigned *rows, unsigned *cols)
{
        struct winsize ws;
        if (fd < 0 || ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0)
                return -1;
        *rows = ws.ws_row;
        *cols = ws.ws_col;
        return 0;
}

static unsigned pack_size(unsigned rows, unsigned cols)
{
        rows = rows > 0xffff ? 0xffff : rows;
        cols = cols > 0xffff ? 0xffff : cols;
        return rows << 16 | cols;
}

/* Writes a whole record; false once the console's end is gone (teardown). */
static bool put(struct tty_relay *r, const uint8_t *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = write(r->pipe_w, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return false;
                buf += n;
                len -= (size_t)n;
        }
        return true;
}

static bool send_size(struct tty_relay *r)
{
        unsigned s = atomic_load(&r->size);
        if (s + 1 == r->sent)
                return true;
        uint8_t p[EMBER_TTY_RESIZE_LEN] = {(uint8_t)(s >> 16), (uint8_t)(s >> 24), (uint8_t)s,
                                           (uint8_t)(s >> 8)};
        uint8_t rec[EMBER_TTY_REC_HDR + EMBER_TTY_RESIZE_LEN];
        r->sent = s + 1;
        return put(r, rec, tty_record(rec, EMBER_TTY_REC_RESIZE, p, sizeof(p)));
}

static void *relay_thread(void *arg)
{
        struct tty_relay *r = arg;
        uint8_t rec[EMBER_TTY_REC_HDR + EMBER_TTY_DATA_MAX];
        int in = r->in_fd;
        pthread_setname_np(pthread_self(), "ember-tty");
        while (!atomic_load(&r->stop) && send_size(r)) {
                struct pollfd p[2] = {{.fd = r->wake_fd, .events = POLLIN},
                                      {.fd = in, .events = POLLIN}};
                if (poll(p, in >= 0 ? 2 : 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[0].revents) {
                        uint64_t v;
                        if (read(r->wake_fd, &v, sizeof(v)) < 0) {
                                /* EAGAIN: drained by an earlier wakeup */
                        }
                }
                if (in >= 0 && p[1].revents) {
                        ssize_t n = read(in, rec + EMBER_TTY_REC_HDR, EMBER_TTY_DATA_MAX);
                        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (n <= 0) {
                                in = -1; /* EOF: sizes still go through */
                                continue;
                        }
                        tty_record(rec, EMBER_TTY_REC_DATA, rec + EMBER_TTY_REC_HDR, (size_t)n);
                        if (!put(r, rec, EMBER_TTY_REC_HDR + (size_t)n))
                                break;
                }
        }
        return NULL;
}

int tty_relay_create(struct tty_relay **out, int in_fd, unsigned rows, unsigned cols,
                     int *console_in, char *err, size_t errlen)
{
        struct tty_relay *r = calloc(1, sizeof(*r));
        int fds[2], rc;
        if (!r)
                return -ENOMEM;
        r->in_fd = in_fd;
        r->pipe_r = r->pipe_w = r->wake_fd = -1;
        atomic_init(&r->size, pack_size(rows, cols));
        if (pipe2(fds, O_CLOEXEC) != 0) {
                rc = -errno;
                goto fail;
        }
        r->pipe_r = fds[0];
        r->pipe_w = fds[1];
        r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->wake_fd < 0) {
                rc = -errno;
                goto fail;
        }
        /* The relay takes none of the application's signals; a closed pipe is EPIPE. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = -pthread_create(&r->thread, NULL, relay_thread, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc)
                goto fail;
        r->started = true;
        *console_in = r->pipe_r;
        *out = r;
        return 0;
fail:
        snprintf(err, errlen, "terminal relay: %s", strerror(-rc));
        tty_relay_destroy(r);
        return rc;
}

void tty_relay_destroy(struct tty_relay *r)
{
        if (!r)
                return;
        if (r->started) {
                atomic_store(&r->stop, true);
                uint64_t one = 1;
                if (write(r->wake_fd, &one, sizeof(one)) < 0) {
                        /* the counter cannot overflow with our writes */
                }
                /* A write blocked on a full pipe ends with EPIPE once the reader is gone. */
                close(r->pipe_r);
                r->pipe_r = -1;
                pthread_join(r->thread, NULL);
        }
        if (r->pipe_r >= 0)
                close(r->pipe_r);
        if (r->pipe_w >= 0)
                close(r->pipe_w);
        if (r->wake_fd >= 0)
                close(r->wake_fd);
        free(r);
}

int tty_relay_resize(struct tty_relay *r, unsigned rows, unsigned cols)
{
        if (!r)
                return -ENOTTY;
        if (rows == 0 || cols == 0)
                return -EINVAL;
        atomic_store(&r->size, pack_size(rows, cols));
        uint64_t one = 1;
        if (write(r->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                return -errno;
        return 0;
}
