#include "tty.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/io.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static size_t rec_len(const struct init_tty_decoder *d)
{
        return (size_t)d->buf[2] | (size_t)d->buf[3] << 8;
}

int init_tty_decode(struct init_tty_decoder *d, const uint8_t *in, size_t n,
                    const struct init_tty_sink *sink)
{
        while (n > 0) {
                size_t want =
                    d->len < EMBER_TTY_REC_HDR ? EMBER_TTY_REC_HDR : EMBER_TTY_REC_HDR + rec_len(d);
                size_t take = want - d->len < n ? want - d->len : n;

                memcpy(d->buf + d->len, in, take);
                d->len += take;
                in += take;
                n -= take;
                if (d->len == EMBER_TTY_REC_HDR) {
                        /* Checked as soon as the header is complete. */
                        size_t len = rec_len(d);
                        bool ok =
                            d->buf[1] == 0 &&
                            ((d->buf[0] == EMBER_TTY_REC_DATA && len >= 1 &&
                              len <= EMBER_TTY_DATA_MAX) ||
                             (d->buf[0] == EMBER_TTY_REC_RESIZE && len == EMBER_TTY_RESIZE_LEN));
                        if (!ok)
                                return -EPROTO;
                        continue;
                }
                if (d->len < EMBER_TTY_REC_HDR + rec_len(d))
                        continue;
                const uint8_t *p = d->buf + EMBER_TTY_REC_HDR;
                if (d->buf[0] == EMBER_TTY_REC_DATA)
                        sink->data(sink->ctx, p, rec_len(d));
                else
                        sink->resize(sink->ctx, (unsigned)(p[0] | p[1] << 8),
                                     (unsigned)(p[2] | p[3] << 8));
                d->len = 0;
        }
        return 0;
}

static struct {
        int master;
        char slave[64];
        pid_t relay;
} tty = {.master = -1};

static void tty_msg(const char *what, int err)
{
        char buf[160];
        int n = snprintf(buf, sizeof(buf), "ember-init: terminal: %s: %s\n", what, strerror(err));
        if (write(2, buf, (size_t)n) < 0) {
                /* nowhere else to say it */
        }
}

/* Keyboard input waiting for the pty (its input queue may be full while the workload does not
 * read: then the relay stops reading the port, never blocks). */
struct relay_state {
        uint8_t pending[1 << 16];
        size_t npending;
        int master;
};

static void relay_data(void *ctx, const uint8_t *p, size_t n)
{
        struct relay_state *s = ctx;
        if (n > sizeof(s->pending) - s->npending)
                n = sizeof(s->pending) - s->npending; /* cannot happen: reads are bounded */
        memcpy(s->pending + s->npending, p, n);
        s->npending += n;
}

static void relay_resize(void *ctx, unsigned rows, unsigned cols)
{
        struct relay_state *s = ctx;
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        /* The kernel sends SIGWINCH to the pty's foreground process group. */
        ioctl(s->master, TIOCSWINSZ, &ws);
}

static void write_all_fd(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return;
                p += w;
                n -= (size_t)w;
        }
}

/* Copies the pty's output to the stdout port: 1 if there was some, 0 if none for now, -1 once
 * the pty has no writer left (EIO: its slave is closed everywhere). */
static int relay_output(int master)
{
        uint8_t buf[4096];
        ssize_t n = read(master, buf, sizeof(buf));
        if (n > 0) {
                write_all_fd(1, buf, (size_t)n);
                return 1;
        }
        return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
}

static __attribute__((noreturn)) void relay_main(int sigfd)
{
        static struct relay_state s;
        struct init_tty_decoder dec = {.len = 0};
        struct init_tty_sink sink = {relay_data, relay_resize, &s};
        bool in_open = true;

        s.master = tty.master;
        for (;;) {
                struct pollfd p[3] = {
                    {.fd = tty.master, .events = POLLIN | (s.npending ? POLLOUT : 0)},
                    {.fd = sigfd, .events = POLLIN},
                    {.fd = in_open && s.npending == 0 ? 0 : -1, .events = POLLIN},
                };
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(1);
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        /* After a hangup, reading still returns what the pty holds (the kernel
                         * flushes its buffers into the read), then EIO. */
                        int r = relay_output(tty.master);
                        if (r < 0 || (r == 0 && (p[0].revents & (POLLHUP | POLLERR))))
                                _exit(0);
                }
                if ((p[0].revents & POLLOUT) && s.npending) {
                        ssize_t w = write(tty.master, s.pending, s.npending);
                        if (w > 0) {
                                memmove(s.pending, s.pending + w, s.npending - (size_t)w);
                                s.npending -= (size_t)w;
                        }
                }
                if (p[2].revents) {
                        uint8_t buf[EMBER_TTY_REC_HDR + EMBER_TTY_DATA_MAX];
                        ssize_t n = read(0, buf, sizeof(buf));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                in_open = false;
                        } else if (init_tty_decode(&dec, buf, (size_t)n, &sink) != 0) {
                                tty_msg("bad record from the host", EPROTO);
                                in_open = false;
                        }
                }
                if (p[1].revents) {
                        /* The workload has ended: forward what the pty still holds (until it
                         * is quiet for a moment or has no writer left), then end. */
                        struct pollfd m = {.fd = tty.master, .events = POLLIN};
                        while (poll(&m, 1, 100) > 0 && relay_output(tty.master) > 0)
                                ;
                        _exit(0);
                }
        }
}

int init_tty_setup(void)
{
        sigset_t usr1, old;
        int sigfd, err;

        tty.master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (tty.master < 0 || grantpt(tty.master) != 0 || unlockpt(tty.master) != 0 ||
            ptsname_r(tty.master, tty.slave, sizeof(tty.slave)) != 0) {
                err = errno;
                tty_msg("cannot open a pty", err);
                return -err;
        }
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, &old);
        tty.relay = fork();
        if (tty.relay < 0) {
                err = errno;
                sigprocmask(SIG_SETMASK, &old, NULL);
                tty_msg("fork", err);
                return -err;
        }
        if (tty.relay == 0) {
                sigset_t all;
                sigfillset(&all);
                sigprocmask(SIG_SETMASK, &all, NULL);
                ioperm(EMBER_ABI_PORT, EMBER_ABI_PORT_LEN, 0);
                sigfd = signalfd(-1, &usr1, SFD_CLOEXEC);
                if (sigfd < 0)
                        _exit(1);
                relay_main(sigfd);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        return 0;
}

int init_tty_attach(void)
{
        int fd, err;

        if (tty.master < 0)
                return 0;
        close(tty.master);
        fd = open(tty.slave, O_RDWR);
        if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) != 0) {
                err = errno;
                tty_msg(tty.slave, err);
                return -err;
        }
        if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                return -errno;
        if (fd > 2)
                close(fd);
        return 0;
}

void init_tty_workload_ended(void)
{
        if (tty.relay <= 0)
                return;
        kill(tty.relay, SIGUSR1);
        while (waitpid(tty.relay, NULL, 0) < 0 && errno == EINTR)
                ;
        tty.relay = 0;
}

void init_tty_reaped(pid_t pid)
{
        if (pid == tty.relay)
                tty.relay = 0;
}
