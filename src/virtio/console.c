#include "core/vm_internal.h"
#include "virtio/console.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ember/guest_abi.h"

#define IN_BUF_SIZE   (64u * 1024u)
#define CTRL_QUEUE    16u /* a reset epoch sends at most 3 * 3 + 1 messages */
#define OUT_BUDGET    64u /* chains per output pump before yielding to the event loop */
#define PORT_NAME_MAX 32u

/* How an fd is driven without blocking the event thread. */
enum fd_kind {
        FD_FILE,   /* epoll refuses it (regular file, /dev/null): I/O never waits for long */
        FD_SOCKET, /* MSG_DONTWAIT / MSG_NOSIGNAL */
        FD_STREAM, /* pipe, FIFO, tty: poll() first, then at most PIPE_BUF bytes */
};

struct virtio_console;

struct out_stream {
        struct virtio_console *c;
        unsigned index; /* 0 stdout, 1 stderr */
        unsigned queue;
        int fd; /* borrowed; -1: discard */
        enum fd_kind kind;
        int poll_fd; /* our dup of fd for EPOLLOUT, -1 if none */
        bool polling;
        bool dead;       /* a write failed: drop the rest of the stream */
        bool have_chain; /* `chain` popped, `done` bytes of it written */
        uint32_t done;
        uint64_t bytes;
        int error;
        struct virtq_chain chain;
};

struct port_state {
        bool ready;      /* guest sent PORT_READY(1) */
        bool guest_open; /* guest has the port open */
        bool host_open;  /* we sent PORT_OPEN(1) */
};

struct ctrl_msg {
        uint32_t id;
        uint16_t event, value;
};

struct virtio_console {
        struct virtio_mmio *t;
        struct dev_env env;

        bool ports_added;
        struct port_state port[VIRTIO_CONSOLE_NR_PORTS];
        struct ctrl_msg ctrl[CTRL_QUEUE];
        unsigned ctrl_head, ctrl_len;

        int in_fd; /* borrowed; -1: none */
        enum fd_kind in_kind;
        int in_poll_fd; /* dup of in_fd, or an always-readable eventfd for FD_FILE */
        bool in_polling;
        bool in_eof;
        bool eof_sent;
        uint8_t *in_buf;
        size_t in_len, in_off;
        uint64_t in_bytes;

        struct out_stream out[2];
        uint64_t dropped;
        struct virtq_chain scratch; /* control and stdin chains, used one at a time */
};

static const char *const port_names[VIRTIO_CONSOLE_NR_PORTS] = {
    EMBER_ABI_PORT_STDIN, EMBER_ABI_PORT_STDOUT, EMBER_ABI_PORT_STDERR};

/* ------------------------------------------------------------------ SIGPIPE */

/* Writing to a pipe whose reader is gone raises SIGPIPE on the writing thread. Block it around
 * such writes and, if one returned EPIPE, consume the signal it left pending. */
struct sigpipe_guard {
        bool active, was_pending, hit;
        sigset_t old;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
        if (g->active)
                return;
        sigset_t set, pending;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, &g->old);
        sigpending(&pending);
        g->was_pending = sigismember(&pending, SIGPIPE);
        g->active = true;
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
        if (!g->active)
                return;
        if (g->hit && !g->was_pending) {
                sigset_t set;
                sigemptyset(&set);
                sigaddset(&set, SIGPIPE);
                struct timespec zero = {0, 0};
                while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
                        ;
        }
        pthread_sigmask(SIG_SETMASK, &g->old, NULL);
        g->active = false;
}

/* ------------------------------------------------------------------ fds */

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

static int classify_fd(int fd, enum fd_kind *kind)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        int p = fd_pollable(fd);
        if (p < 0)
                return p;
        *kind = !p ? FD_FILE : S_ISSOCK(st.st_mode) ? FD_SOCKET : FD_STREAM;
        return 0;
}

/* ------------------------------------------------------------------ control queue */

static void ctrl_queue(struct virtio_console *c, uint32_t id, uint16_t event, uint16_t value)
{
        if (c->ctrl_len == CTRL_QUEUE)
                return; /* cannot happen within one reset epoch; never grow for a guest */
        c->ctrl[(c->ctrl_head + c->ctrl_len) % CTRL_QUEUE] = (struct ctrl_msg){id, event, value};
        c->ctrl_len++;
}

/* The device wants a buffer on rx queue q and found none: ask the driver to announce the next
 * one. True if one was posted meanwhile (look again), false to wait for the notification. */
static bool rx_wait_for_buffer(struct virtio_console *c, unsigned q)
{
        virtio_mmio_suppress_notify(c->t, q, false);
        return virtio_mmio_avail(c->t, q) > 0;
}

/* Delivers queued control messages, one per guest buffer. The driver's rx notifications are
 * wanted only while messages wait for a buffer (Linux posts 64 buffers one kick at a time). */
static void ctrl_send(struct virtio_console *c)
{
        const struct gmem *mem = virtio_mmio_mem(c->t);
        bool pushed = false;
        while (c->ctrl_len) {
                int r = virtio_mmio_pop(c->t, VIRTIO_CONSOLE_CTRL_RX, &c->scratch);
                if (r == 0 && rx_wait_for_buffer(c, VIRTIO_CONSOLE_CTRL_RX))
                        continue;
                if (r <= 0)
                        break;
                const struct ctrl_msg *m = &c->ctrl[c->ctrl_head];
                uint8_t buf[VIRTIO_CONSOLE_CTRL_LEN + PORT_NAME_MAX];
                memcpy(buf, &m->id, 4);
                memcpy(buf + 4, &m->event, 2);
                memcpy(buf + 6, &m->value, 2);
                size_t len = VIRTIO_CONSOLE_CTRL_LEN;
                if (m->event == VIRTIO_CONSOLE_PORT_NAME && m->id < VIRTIO_CONSOLE_NR_PORTS) {
                        /* Linux takes the name from the bytes after the header; no NUL needed. */
                        size_t n = strlen(port_names[m->id]);
                        memcpy(buf + len, port_names[m->id], n);
                        len += n;
                }
                size_t n = virtq_chain_write(mem, &c->scratch, 0, buf, len);
                virtio_mmio_push(c->t, VIRTIO_CONSOLE_CTRL_RX, c->scratch.head, (uint32_t)n);
                pushed = true;
                c->ctrl_head = (c->ctrl_head + 1) % CTRL_QUEUE;
                c->ctrl_len--;
        }
        if (!c->ctrl_len)
                virtio_mmio_suppress_notify(c->t, VIRTIO_CONSOLE_CTRL_RX, true);
        if (pushed)
                virtio_mmio_signal_used(c->t, VIRTIO_CONSOLE_CTRL_RX);
}

/* ------------------------------------------------------------------ stdin */

static void stdin_ready(void *opaque, uint32_t events);

static void set_in_polling(struct virtio_console *c, bool want)
{
        if (want == c->in_polling || c->in_poll_fd < 0)
                return;
        if (!want) {
                evloop_del(c->env.loop, c->in_poll_fd);
                c->in_polling = false;
                return;
        }
        int r = evloop_add(c->env.loop, c->in_poll_fd, EPOLLIN, stdin_ready, c);
        if (r < 0) {
                /* Without a way to wait for input, end the stream rather than hang the guest. */
                c->in_eof = true;
                c->in_off = c->in_len = 0;
                if (c->env.stop)
                        c->env.stop(c->env.hv, VM_STOP_ERROR, 0,
                                    "virtio-console: cannot watch stdin in the event loop");
                return;
        }
        c->in_polling = true;
}

/* Reads host stdin into in_buf. 1: data, 0: EOF (or error, treated as EOF), -EAGAIN: wait. */
static int stdin_read(struct virtio_console *c)
{
        for (;;) {
                if (c->in_kind == FD_STREAM) {
                        struct pollfd p = {.fd = c->in_fd, .events = POLLIN};
                        int r = poll(&p, 1, 0);
                        if (r < 0 && errno == EINTR)
                                continue;
                        if (r == 0)
                                return -EAGAIN;
                }
                ssize_t n = c->in_kind == FD_SOCKET
                                ? recv(c->in_fd, c->in_buf, IN_BUF_SIZE, MSG_DONTWAIT)
                                : read(c->in_fd, c->in_buf, IN_BUF_SIZE);
                if (n > 0) {
                        c->in_off = 0;
                        c->in_len = (size_t)n;
                        return 1;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return -EAGAIN;
                c->in_eof = true;
                return 0;
        }
}

/* Moves host stdin into the guest's port-0 buffers as far as both sides allow, then decides
 * whether to watch the host fd. The driver's rx notifications are wanted only while stdin
 * waits for a buffer. Event thread, lock held. */
static void stdin_pump(struct virtio_console *c)
{
        const struct gmem *mem = virtio_mmio_mem(c->t);
        struct port_state *p = &c->port[VIRTIO_CONSOLE_PORT_STDIN];
        const unsigned rxq = VIRTIO_CONSOLE_RX_QUEUE(VIRTIO_CONSOLE_PORT_STDIN);
        bool want_poll = false, pushed = false, want_buffer = false;

        while (virtio_mmio_live(c->t)) {
                if (c->in_off < c->in_len) {
                        if (!p->guest_open)
                                break;
                        int r = virtio_mmio_pop(c->t, rxq, &c->scratch);
                        if (r == 0 && rx_wait_for_buffer(c, rxq))
                                continue;
                        if (r <= 0) {
                                want_buffer = r == 0; /* resumed by the guest's next rx notify */
                                break;
                        }
                        size_t n = virtq_chain_write(mem, &c->scratch, 0, c->in_buf + c->in_off,
                                                     c->in_len - c->in_off);
                        virtio_mmio_push(c->t, rxq, c->scratch.head, (uint32_t)n);
                        pushed = true;
                        c->in_off += n;
                        c->in_bytes += n;
                        continue;
                }
                c->in_off = c->in_len = 0;
                if (c->in_eof) {
                        /* Only after every byte is in guest buffers: the guest reads them first,
                         * then read() returns 0 because the host side is closed. */
                        if (p->host_open && !c->eof_sent) {
                                c->eof_sent = true;
                                p->host_open = false;
                                ctrl_queue(c, VIRTIO_CONSOLE_PORT_STDIN, VIRTIO_CONSOLE_PORT_OPEN,
                                           0);
                                ctrl_send(c);
                        }
                        break;
                }
                /* Read only for an open port with buffers posted: the rest waits in the host. */
                if (!p->guest_open)
                        break;
                int avail = virtio_mmio_avail(c->t, rxq);
                if (avail == 0 && rx_wait_for_buffer(c, rxq))
                        continue;
                if (avail <= 0) {
                        want_buffer = avail == 0;
                        break;
                }
                int r = stdin_read(c);
                if (r == -EAGAIN) {
                        want_poll = true;
                        break;
                }
        }
        if (!want_buffer)
                virtio_mmio_suppress_notify(c->t, rxq, true);
        if (pushed)
                virtio_mmio_signal_used(c->t, rxq);
        set_in_polling(c, want_poll);
}

static void stdin_ready(void *opaque, uint32_t events)
{
        struct virtio_console *c = opaque;
        virtio_mmio_lock(c->t);
        stdin_pump(c);
        virtio_mmio_unlock(c->t);
}

/* ------------------------------------------------------------------ stdout / stderr */

static void out_ready(void *opaque, uint32_t events);

static int set_out_polling(struct out_stream *s, bool want)
{
        struct virtio_console *c = s->c;
        if (want == s->polling)
                return 0;
        if (!want) {
                evloop_del(c->env.loop, s->poll_fd);
                s->polling = false;
                return 0;
        }
        if (s->poll_fd < 0)
                return -EINVAL;
        int r = evloop_add(c->env.loop, s->poll_fd, EPOLLOUT, out_ready, s);
        if (r == 0)
                s->polling = true;
        return r;
}

/* One write of at most `len` bytes. Returns bytes written, -EAGAIN (not writable now and not
 * `blocking`), or another -errno that ends the stream. */
static ssize_t out_write(struct out_stream *s, const void *p, size_t len, bool blocking,
                         struct sigpipe_guard *g)
{
        for (;;) {
                ssize_t n;
                if (s->kind == FD_SOCKET) {
                        n = send(s->fd, p, len, MSG_NOSIGNAL | (blocking ? 0 : MSG_DONTWAIT));
                } else if (s->kind == FD_FILE) {
                        n = write(s->fd, p, len);
                } else {
                        struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};
                        int r = poll(&pfd, 1, blocking ? -1 : 0);
                        if (r < 0 && errno == EINTR)
                                continue;
                        if (r == 0)
                                return -EAGAIN;
                        /* After POLLOUT a pipe takes PIPE_BUF bytes without blocking. */
                        sigpipe_block(g);
                        n = write(s->fd, p, len < PIPE_BUF ? len : PIPE_BUF);
                        if (n < 0 && errno == EPIPE)
                                g->hit = true;
                }
                if (n > 0)
                        return n;
                if (n == 0)
                        return -EIO;
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        if (s->kind == FD_FILE)
                                return -EIO;
                        if (!blocking)
                                return -EAGAIN;
                        struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};
                        poll(&pfd, 1, -1);
                        continue;
                }
                return -errno;
        }
}

/* Writes the rest of the stream's current chain. 0 when done (written or dropped), -EAGAIN. */
static int out_write_chain(struct out_stream *s, bool blocking, struct sigpipe_guard *g)
{
        struct virtio_console *c = s->c;
        const struct gmem *mem = virtio_mmio_mem(c->t);
        const struct virtq_chain *ch = &s->chain;

        while (s->done < ch->read_len && !s->dead && s->fd >= 0) {
                uint32_t off = s->done;
                unsigned i = 0;
                while (i < ch->nread && off >= ch->seg[i].len)
                        off -= ch->seg[i++].len;
                if (i == ch->nread)
                        break;
                uint32_t len = ch->seg[i].len - off;
                const void *p = gmem_ptr(mem, ch->seg[i].gpa + off, len);
                if (!p)
                        break;
                ssize_t n = out_write(s, p, len, blocking, g);
                if (n == -EAGAIN)
                        return -EAGAIN;
                if (n < 0) {
                        s->dead = true;
                        s->error = (int)-n;
                        break;
                }
                s->done += (uint32_t)n;
                s->bytes += (uint64_t)n;
        }
        if (s->done < ch->read_len)
                c->dropped += ch->read_len - s->done;
        s->done = ch->read_len;
        return 0;
}

/* Drains one output port's tx queue into its fd. Event thread (blocking = false) or
 * virtio_console_flush (blocking = true); lock held. */
static void out_pump(struct out_stream *s, bool blocking)
{
        struct virtio_console *c = s->c;
        struct sigpipe_guard g = {0};
        bool pushed = false, want_poll = false;
        unsigned budget = OUT_BUDGET;

        for (;;) {
                if (!s->have_chain) {
                        if (!blocking && budget-- == 0) {
                                virtio_mmio_kick(c->t, s->queue);
                                break;
                        }
                        if (virtio_mmio_pop(c->t, s->queue, &s->chain) <= 0)
                                break;
                        s->have_chain = true;
                        s->done = 0;
                }
                if (out_write_chain(s, blocking, &g) == -EAGAIN) {
                        if (set_out_polling(s, true) == 0) {
                                want_poll = true;
                                break;
                        }
                        /* Cannot wait in the loop: finish this stream here. */
                        blocking = true;
                        continue;
                }
                virtio_mmio_push(c->t, s->queue, s->chain.head, 0);
                s->have_chain = false;
                pushed = true;
        }
        sigpipe_restore(&g);
        if (pushed)
                virtio_mmio_signal_used(c->t, s->queue);
        if (!want_poll && s->polling && !blocking)
                set_out_polling(s, false);
}

static void out_ready(void *opaque, uint32_t events)
{
        struct out_stream *s = opaque;
        struct virtio_console *c = s->c;
        virtio_mmio_lock(c->t);
        if (virtio_mmio_live(c->t)) {
                out_pump(s, false);
        } else {
                s->have_chain = false;
                set_out_polling(s, false);
        }
        virtio_mmio_unlock(c->t);
}

/* The stdin port's tx queue: the guest should not write there; consume and discard. */
static void drop_queue(struct virtio_console *c, unsigned q)
{
        bool pushed = false;
        while (virtio_mmio_pop(c->t, q, &c->scratch) > 0) {
                c->dropped += c->scratch.read_len;
                virtio_mmio_push(c->t, q, c->scratch.head, 0);
                pushed = true;
        }
        if (pushed)
                virtio_mmio_signal_used(c->t, q);
}

/* ------------------------------------------------------------------ control messages */

static void handle_ctrl(struct virtio_console *c, const struct ctrl_msg *m)
{
        switch (m->event) {
        case VIRTIO_CONSOLE_DEVICE_READY:
                if (m->value != 1 || c->ports_added)
                        break;
                c->ports_added = true;
                for (uint32_t i = 0; i < VIRTIO_CONSOLE_NR_PORTS; i++)
                        ctrl_queue(c, i, VIRTIO_CONSOLE_DEVICE_ADD, 1);
                break;
        case VIRTIO_CONSOLE_PORT_READY: {
                if (m->id >= VIRTIO_CONSOLE_NR_PORTS || m->value != 1)
                        break;
                struct port_state *p = &c->port[m->id];
                if (p->ready)
                        break;
                p->ready = true;
                p->host_open = true;
                ctrl_queue(c, m->id, VIRTIO_CONSOLE_PORT_OPEN, 1);
                ctrl_queue(c, m->id, VIRTIO_CONSOLE_PORT_NAME, 1);
                if (m->id == VIRTIO_CONSOLE_PORT_STDIN)
                        stdin_pump(c);
                break;
        }
        case VIRTIO_CONSOLE_PORT_OPEN:
                if (m->id >= VIRTIO_CONSOLE_NR_PORTS || !c->port[m->id].ready)
                        break;
                c->port[m->id].guest_open = m->value != 0;
                if (m->id == VIRTIO_CONSOLE_PORT_STDIN)
                        stdin_pump(c);
                break;
        default:
                break;
        }
}

static void ctrl_receive(struct virtio_console *c)
{
        const struct gmem *mem = virtio_mmio_mem(c->t);
        bool pushed = false;
        while (virtio_mmio_pop(c->t, VIRTIO_CONSOLE_CTRL_TX, &c->scratch) > 0) {
                uint8_t raw[VIRTIO_CONSOLE_CTRL_LEN];
                size_t n = virtq_chain_read(mem, &c->scratch, 0, raw, sizeof(raw));
                /* The guest spins until its message is used: return it before acting on it. */
                virtio_mmio_push(c->t, VIRTIO_CONSOLE_CTRL_TX, c->scratch.head, 0);
                pushed = true;
                if (n < sizeof(raw))
                        continue;
                struct ctrl_msg m;
                memcpy(&m.id, raw, 4);
                memcpy(&m.event, raw + 4, 2);
                memcpy(&m.value, raw + 6, 2);
                handle_ctrl(c, &m);
        }
        if (pushed)
                virtio_mmio_signal_used(c->t, VIRTIO_CONSOLE_CTRL_TX);
        ctrl_send(c);
}

/* ------------------------------------------------------------------ device ops */

static void console_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
        /* cols, rows (unused without F_SIZE), max_nr_ports, emerg_wr */
        uint8_t cfg[12] = {0};
        uint32_t nports = VIRTIO_CONSOLE_NR_PORTS;
        memcpy(cfg + 4, &nports, 4);
        if (offset < sizeof(cfg) && len <= sizeof(cfg) - offset)
                memcpy(data, cfg + offset, len);
}

static void console_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
        /* emerg_wr is not offered (no F_EMERG_WRITE): ignore. */
}

static int console_activate(void *dev, uint64_t features)
{
        struct virtio_console *c = dev;
        /* Without MULTIPORT there would be a single console port: not what ember needs. */
        if (!(features & (1ull << VIRTIO_CONSOLE_F_MULTIPORT)))
                return -ENOTSUP;
        /* Nothing goes to the guest on the output ports' rx queues, and the control and stdin
         * rx queues ask for notifications only while something waits for a buffer (ctrl_send,
         * stdin_pump): Linux would otherwise kick once per buffer it posts, 256 kicks per boot. */
        for (unsigned port = 0; port < VIRTIO_CONSOLE_NR_PORTS; port++)
                virtio_mmio_suppress_notify(c->t, VIRTIO_CONSOLE_RX_QUEUE(port), true);
        virtio_mmio_suppress_notify(c->t, VIRTIO_CONSOLE_CTRL_RX, true);
        return 0;
}

static void console_queue_notify(void *dev, unsigned q)
{
        struct virtio_console *c = dev;
        switch (q) {
        case VIRTIO_CONSOLE_RX_QUEUE(VIRTIO_CONSOLE_PORT_STDIN):
                stdin_pump(c);
                break;
        case VIRTIO_CONSOLE_TX_QUEUE(VIRTIO_CONSOLE_PORT_STDIN):
                drop_queue(c, q);
                break;
        case VIRTIO_CONSOLE_CTRL_RX:
                ctrl_send(c);
                break;
        case VIRTIO_CONSOLE_CTRL_TX:
                ctrl_receive(c);
                break;
        case VIRTIO_CONSOLE_TX_QUEUE(VIRTIO_CONSOLE_PORT_STDOUT):
                out_pump(&c->out[0], false);
                break;
        case VIRTIO_CONSOLE_TX_QUEUE(VIRTIO_CONSOLE_PORT_STDERR):
                out_pump(&c->out[1], false);
                break;
        default:
                /* rx of the output ports: buffers stay posted, nothing to send */
                virtio_mmio_suppress_notify(c->t, q, true);
                break;
        }
}

static void console_reset(void *dev)
{
        struct virtio_console *c = dev;
        /* Host-side state (unread stdin, EOF, dead fds, counters) survives; the guest's does not.
         * fd watches are dropped by their callbacks once they see the device is not live. */
        c->ports_added = false;
        memset(c->port, 0, sizeof(c->port));
        c->ctrl_head = c->ctrl_len = 0;
        c->eof_sent = false;
        for (unsigned i = 0; i < 2; i++)
                c->out[i].have_chain = false;
}

/* Linux fills every receive queue with page-sized buffers, as many as the queue holds. Only
 * stdin's carries data to the guest and the control queue a few messages, so the control queue
 * and the output ports' receive queues are offered small: that spares each guest ~0.7 MiB of
 * buffers and their set-up at boot. The others (0) get VIRTIO_CONSOLE_QUEUE_MAX. */
static const uint16_t console_queue_sizes[VIRTIO_CONSOLE_NR_QUEUES] = {
    [VIRTIO_CONSOLE_CTRL_RX] = VIRTIO_CONSOLE_CTRL_RX_MAX,
    [VIRTIO_CONSOLE_RX_QUEUE(VIRTIO_CONSOLE_PORT_STDOUT)] = VIRTIO_CONSOLE_IDLE_RX_MAX,
    [VIRTIO_CONSOLE_RX_QUEUE(VIRTIO_CONSOLE_PORT_STDERR)] = VIRTIO_CONSOLE_IDLE_RX_MAX,
};

static const struct virtio_dev_ops console_ops = {
    .name = "virtio-console",
    .device_id = VIRTIO_ID_CONSOLE,
    .features = 1ull << VIRTIO_CONSOLE_F_MULTIPORT,
    .num_queues = VIRTIO_CONSOLE_NR_QUEUES,
    .queue_max = VIRTIO_CONSOLE_QUEUE_MAX,
    .queue_sizes = console_queue_sizes,
    .config_size = 12,
    .config_read = console_config_read,
    .config_write = console_config_write,
    .activate = console_activate,
    .queue_notify = console_queue_notify,
    .reset = console_reset,
};

/* ------------------------------------------------------------------ lifecycle */

static int setup_out(struct virtio_console *c, unsigned i, int fd, char *err, size_t errlen)
{
        struct out_stream *s = &c->out[i];
        s->c = c;
        s->index = i;
        s->queue = VIRTIO_CONSOLE_TX_QUEUE(i + 1);
        s->fd = fd;
        s->poll_fd = -1;
        if (fd < 0)
                return 0;
        int r = classify_fd(fd, &s->kind);
        if (r < 0) {
                ember_errf(err, errlen, 0, "virtio-console: %s fd %d: %s", i ? "stderr" : "stdout",
                           fd, strerror(-r));
                return r;
        }
        if (s->kind != FD_FILE) {
                s->poll_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
                if (s->poll_fd < 0) {
                        r = -errno;
                        ember_errf(err, errlen, 0, "virtio-console: dup: %s", strerror(-r));
                        return r;
                }
        }
        return 0;
}

static int setup_in(struct virtio_console *c, int fd, char *err, size_t errlen)
{
        c->in_fd = fd;
        c->in_poll_fd = -1;
        if (fd < 0) {
                c->in_eof = true;
                return 0;
        }
        int r = classify_fd(fd, &c->in_kind);
        if (r < 0) {
                ember_errf(err, errlen, 0, "virtio-console: stdin fd %d: %s", fd, strerror(-r));
                return r;
        }
        /* A file is always readable: stand in for it with an eventfd that always is. */
        c->in_poll_fd = c->in_kind == FD_FILE ? eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK)
                                              : fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (c->in_poll_fd < 0) {
                r = -errno;
                ember_errf(err, errlen, 0, "virtio-console: stdin: %s", strerror(-r));
                return r;
        }
        return 0;
}

void virtio_console_destroy(struct virtio_console *c)
{
        if (!c)
                return;
        virtio_mmio_destroy(c->t);
        if (c->in_polling)
                evloop_del(c->env.loop, c->in_poll_fd);
        if (c->in_poll_fd >= 0)
                close(c->in_poll_fd);
        for (unsigned i = 0; i < 2; i++) {
                struct out_stream *s = &c->out[i];
                if (s->polling)
                        evloop_del(c->env.loop, s->poll_fd);
                if (s->poll_fd >= 0)
                        close(s->poll_fd);
        }
        free(c->in_buf);
        free(c);
}

int virtio_console_create(const struct dev_env *env, uint64_t base, uint32_t gsi, int in_fd,
                          int out_fd, int err_fd, struct virtio_console **out, char *err,
                          size_t errlen)
{
        *out = NULL;
        if (!env || !env->loop) {
                ember_errf(err, errlen, 0, "virtio-console: no event loop");
                return -EINVAL;
        }
        struct virtio_console *c = calloc(1, sizeof(*c));
        if (!c || !(c->in_buf = malloc(IN_BUF_SIZE))) {
                free(c);
                ember_errf(err, errlen, 0, "virtio-console: out of memory");
                return -ENOMEM;
        }
        c->env = *env;
        c->in_poll_fd = -1;
        c->out[0].poll_fd = c->out[1].poll_fd = -1;
        int r = setup_in(c, in_fd, err, errlen);
        if (r == 0)
                r = setup_out(c, 0, out_fd, err, errlen);
        if (r == 0)
                r = setup_out(c, 1, err_fd, err, errlen);
        if (r == 0)
                r = virtio_mmio_create(env, base, gsi, &console_ops, c, &c->t, err, errlen);
        if (r < 0) {
                virtio_console_destroy(c);
                return r;
        }
        *out = c;
        return 0;
}

void virtio_console_flush(struct virtio_console *c)
{
        virtio_mmio_lock(c->t);
        if (virtio_mmio_live(c->t)) {
                out_pump(&c->out[0], true);
                out_pump(&c->out[1], true);
        }
        virtio_mmio_unlock(c->t);
}

void virtio_console_get_stats(struct virtio_console *c, struct virtio_console_stats *s)
{
        virtio_mmio_lock(c->t);
        s->in_bytes = c->in_bytes;
        s->dropped_bytes = c->dropped;
        for (unsigned i = 0; i < 2; i++) {
                s->out_bytes[i] = c->out[i].bytes;
                s->out_error[i] = c->out[i].error;
        }
        virtio_mmio_unlock(c->t);
}

struct virtio_mmio *virtio_console_transport(struct virtio_console *c)
{
        return c->t;
}
