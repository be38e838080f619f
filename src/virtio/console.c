#include "virtio/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/devices.h"
#include "core/err.h"
#include "core/hostfd.h"
#include "core/tty.h"
#include "ember/guest_abi.h"

#define IN_BUF_SIZE   (64u * 1024u)
#define OUT_BUF_SIZE  (256u * 1024u) /* per stream, between the guest and the writer thread */
#define CTRL_QUEUE    16u            /* a reset epoch sends at most 3 * 3 + 1 messages */
#define PORT_NAME_MAX 32u

struct virtio_console;

struct out_stream {
        struct virtio_console *c;
        unsigned index; /* 0 stdout, 1 stderr */
        unsigned queue;
        struct hostfd_writer *w; /* NULL: discard */
        int fd;                  /* what w writes to */
        bool shared;             /* stderr using stdout's writer (the same file) */
        bool in_loop;            /* the writer's room fd is in the event loop */
        bool have_chain;         /* `chain` popped, `done` bytes of it handed to the writer */
        uint32_t done;
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
        struct virtio_dev *vd;
        struct dev_env env;
        int owned_fd[3]; /* our duplicates of the caller's fds (table-created consoles), or -1 */
        struct tty_relay *tty; /* terminal mode: stdin arrives framed through it, or NULL */

        bool ports_added;
        struct port_state port[VIRTIO_CONSOLE_NR_PORTS];
        struct ctrl_msg ctrl[CTRL_QUEUE];
        unsigned ctrl_head, ctrl_len;

        int in_fd; /* borrowed; -1: none */
        enum hostfd_kind in_kind;
        int in_poll_fd; /* dup of in_fd, or an always-readable eventfd for HOSTFD_FILE */
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
        virtio_suppress_notify(c->vd, q, false);
        return virtio_avail(c->vd, q) > 0;
}

/* Delivers queued control messages, one per guest buffer. The driver's rx notifications are
 * wanted only while messages wait for a buffer (Linux posts 64 buffers one kick at a time). */
static void ctrl_send(struct virtio_console *c)
{
        const struct gmem *mem = virtio_mem(c->vd);
        struct virtio_budget b = virtio_budget_default();
        bool pushed = false;
        while (c->ctrl_len) {
                int r = virtio_pop_budget(c->vd, VIRTIO_CONSOLE_CTRL_RX, &c->scratch, &b);
                if (b.spent)
                        break;
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
                virtio_push(c->vd, VIRTIO_CONSOLE_CTRL_RX, c->scratch.head, (uint32_t)n);
                pushed = true;
                c->ctrl_head = (c->ctrl_head + 1) % CTRL_QUEUE;
                c->ctrl_len--;
        }
        if (!c->ctrl_len)
                virtio_suppress_notify(c->vd, VIRTIO_CONSOLE_CTRL_RX, true);
        if (pushed)
                virtio_signal_used(c->vd, VIRTIO_CONSOLE_CTRL_RX);
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
                if (c->in_kind == HOSTFD_STREAM) {
                        struct pollfd p = {.fd = c->in_fd, .events = POLLIN};
                        int r = poll(&p, 1, 0);
                        if (r < 0 && errno == EINTR)
                                continue;
                        if (r == 0)
                                return -EAGAIN;
                }
                ssize_t n = c->in_kind == HOSTFD_SOCKET
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
        const struct gmem *mem = virtio_mem(c->vd);
        struct port_state *p = &c->port[VIRTIO_CONSOLE_PORT_STDIN];
        const unsigned rxq = VIRTIO_CONSOLE_RX_QUEUE(VIRTIO_CONSOLE_PORT_STDIN);
        bool want_poll = false, pushed = false, want_buffer = false;
        struct virtio_budget b = virtio_budget_default();

        while (virtio_live(c->vd) && !b.spent) {
                if (c->in_off < c->in_len) {
                        if (!p->guest_open)
                                break;
                        int r = virtio_pop_budget(c->vd, rxq, &c->scratch, &b);
                        if (b.spent)
                                break;
                        if (r == 0 && rx_wait_for_buffer(c, rxq))
                                continue;
                        if (r <= 0) {
                                want_buffer = r == 0; /* resumed by the guest's next rx notify */
                                break;
                        }
                        size_t n = virtq_chain_write(mem, &c->scratch, 0, c->in_buf + c->in_off,
                                                     c->in_len - c->in_off);
                        virtio_push(c->vd, rxq, c->scratch.head, (uint32_t)n);
                        pushed = true;
                        c->in_off += n;
                        c->in_bytes += n;
                        /* A chain with no room still costs a turn: a guest posting only those
                         * cannot keep this loop going. */
                        virtio_budget_charge(c->vd, rxq, &b, n ? n : 1);
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
                int avail = virtio_avail(c->vd, rxq);
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
        if (!want_buffer && !b.spent)
                virtio_suppress_notify(c->vd, rxq, true);
        if (pushed)
                virtio_signal_used(c->vd, rxq);
        set_in_polling(c, want_poll);
}

static void stdin_ready(void *opaque, uint32_t events)
{
        struct virtio_console *c = opaque;
        virtio_lock(c->vd);
        stdin_pump(c);
        virtio_unlock(c->vd);
}

/* ------------------------------------------------------------------ stdout / stderr */

/* Hands the rest of the stream's current chain to its writer, charging `b` (NULL: no budget,
 * for the final flush; then *cap bounds the bytes). True when the chain is all handed over (or
 * dropped), false when the writer is full or the budget ran out. */
static bool out_take_chain(struct out_stream *s, struct virtio_budget *b, uint64_t *cap)
{
        struct virtio_console *c = s->c;
        const struct gmem *mem = virtio_mem(c->vd);
        const struct virtq_chain *ch = &s->chain;

        while (s->done < ch->read_len && s->w) {
                uint32_t off = s->done;
                unsigned i = 0;
                while (i < ch->nread && off >= ch->seg[i].len)
                        off -= ch->seg[i++].len;
                if (i == ch->nread)
                        break;
                uint64_t len = ch->seg[i].len - off;
                uint64_t limit = b ? b->bytes : *cap;
                if (len > limit)
                        len = limit;
                if (len == 0)
                        return false;
                const void *p = gmem_ptr(mem, ch->seg[i].gpa + off, len);
                if (!p)
                        break;
                size_t n = hostfd_writer_put(s->w, p, (size_t)len);
                s->done += (uint32_t)n;
                if (b) {
                        if (!virtio_budget_charge(c->vd, s->queue, b, n))
                                return s->done == ch->read_len;
                } else {
                        *cap -= n;
                }
                if (n < len)
                        return false; /* full: the writer's room fd resumes us */
        }
        if (s->done < ch->read_len)
                c->dropped += ch->read_len - s->done;
        s->done = ch->read_len;
        return true;
}

/* Moves one output port's tx chains into its writer, within one notification's budget. Event
 * thread, lock held. Each chain is returned to the guest as soon as its bytes are in the
 * writer's buffer: the guest never waits for the host fd, only for buffer room. */
static void out_pump(struct out_stream *s)
{
        struct virtio_console *c = s->c;
        struct virtio_budget b = virtio_budget_default();
        bool pushed = false;

        for (;;) {
                if (!s->have_chain) {
                        if (virtio_pop_budget(c->vd, s->queue, &s->chain, &b) <= 0)
                                break;
                        s->have_chain = true;
                        s->done = 0;
                }
                if (!out_take_chain(s, &b, NULL))
                        break;
                virtio_push(c->vd, s->queue, s->chain.head, 0);
                s->have_chain = false;
                pushed = true;
                /* An empty chain still costs a turn. */
                if (!s->chain.read_len && !virtio_budget_charge(c->vd, s->queue, &b, 1))
                        break;
        }
        if (pushed)
                virtio_signal_used(c->vd, s->queue);
}

static void out_room(void *opaque, uint32_t events)
{
        struct out_stream *s = opaque;
        struct virtio_console *c = s->c;
        uint64_t v;
        if (read(hostfd_writer_room_fd(s->w), &v, sizeof(v)) < 0) {
                /* EAGAIN: already drained */
        }
        virtio_lock(c->vd);
        if (virtio_live(c->vd)) {
                out_pump(s);
                if (c->out[1].shared)
                        out_pump(&c->out[1]); /* it waits for the same room */
        }
        virtio_unlock(c->vd);
}

/* The stdin port's tx queue: the guest should not write there; consume and discard. */
static void drop_queue(struct virtio_console *c, unsigned q)
{
        struct virtio_budget b = virtio_budget_default();
        bool pushed = false;
        while (virtio_pop_budget(c->vd, q, &c->scratch, &b) > 0) {
                c->dropped += c->scratch.read_len;
                virtio_push(c->vd, q, c->scratch.head, 0);
                pushed = true;
        }
        if (pushed)
                virtio_signal_used(c->vd, q);
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
        const struct gmem *mem = virtio_mem(c->vd);
        struct virtio_budget b = virtio_budget_default();
        bool pushed = false;
        while (virtio_pop_budget(c->vd, VIRTIO_CONSOLE_CTRL_TX, &c->scratch, &b) > 0) {
                uint8_t raw[VIRTIO_CONSOLE_CTRL_LEN];
                size_t n = virtq_chain_read(mem, &c->scratch, 0, raw, sizeof(raw));
                /* The guest spins until its message is used: return it before acting on it. */
                virtio_push(c->vd, VIRTIO_CONSOLE_CTRL_TX, c->scratch.head, 0);
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
                virtio_signal_used(c->vd, VIRTIO_CONSOLE_CTRL_TX);
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
                virtio_suppress_notify(c->vd, VIRTIO_CONSOLE_RX_QUEUE(port), true);
        virtio_suppress_notify(c->vd, VIRTIO_CONSOLE_CTRL_RX, true);
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
                out_pump(&c->out[0]);
                break;
        case VIRTIO_CONSOLE_TX_QUEUE(VIRTIO_CONSOLE_PORT_STDERR):
                out_pump(&c->out[1]);
                break;
        default:
                /* rx of the output ports: buffers stay posted, nothing to send */
                virtio_suppress_notify(c->vd, q, true);
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

static uint64_t console_flush_op(void *dev, const struct timespec *deadline, uint64_t max_bytes,
                                 int cancel_fd);
static void console_free(void *dev);

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
    .flush = console_flush_op,
    .destroy = console_free,
};

/* ------------------------------------------------------------------ lifecycle */

static int setup_out(struct virtio_console *c, unsigned i, int fd, char *err, size_t errlen)
{
        struct out_stream *s = &c->out[i];
        s->c = c;
        s->index = i;
        s->queue = VIRTIO_CONSOLE_TX_QUEUE(i + 1);
        if (fd < 0)
                return 0;
        /* stdout and stderr on one file (2>&1, a terminal, --console-output): one writer, so
         * the guest's chains reach it whole and in the order the guest queued them, as two
         * threads writing at once would not keep them. */
        struct stat a, b;
        if (i == 1 && c->out[0].w && fstat(fd, &b) == 0 && fstat(c->out[0].fd, &a) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
                s->w = c->out[0].w;
                s->shared = true;
                return 0;
        }
        s->fd = fd;
        int r = hostfd_writer_create(fd, OUT_BUF_SIZE, i ? "ember-stderr" : "ember-stdout", &s->w);
        if (r < 0)
                return ember_errf(err, errlen, r, "virtio-console: %s fd %d: %s",
                                  i ? "stderr" : "stdout", fd, strerror(-r));
        r = evloop_add(c->env.loop, hostfd_writer_room_fd(s->w), EPOLLIN, out_room, s);
        if (r < 0)
                return ember_errf(err, errlen, r, "virtio-console: event loop: %s", strerror(-r));
        s->in_loop = true;
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
        int r = hostfd_classify(fd, &c->in_kind);
        if (r < 0)
                return ember_errf(err, errlen, r, "virtio-console: stdin fd %d: %s", fd,
                                  strerror(-r));
        /* A file is always readable: stand in for it with an eventfd that always is. */
        c->in_poll_fd = c->in_kind == HOSTFD_FILE ? eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK)
                                                  : fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (c->in_poll_fd < 0)
                return ember_errf(err, errlen, errno, "virtio-console: stdin: %s", strerror(errno));
        return 0;
}

/* Frees the device's own state (the virtio core is freed by virtio_dev_destroy). */
static void console_free(void *dev)
{
        struct virtio_console *c = dev;
        if (c->in_polling)
                evloop_del(c->env.loop, c->in_poll_fd);
        if (c->in_poll_fd >= 0)
                close(c->in_poll_fd);
        for (unsigned i = 0; i < 2; i++) {
                struct out_stream *s = &c->out[i];
                if (s->in_loop)
                        evloop_del(c->env.loop, hostfd_writer_room_fd(s->w));
                if (!s->shared)
                        hostfd_writer_destroy(s->w);
        }
        tty_relay_destroy(c->tty); /* reads owned_fd[0]: before it is closed */
        for (unsigned i = 0; i < 3; i++)
                if (c->owned_fd[i] >= 0)
                        close(c->owned_fd[i]);
        free(c->in_buf);
        free(c);
}

void virtio_console_destroy(struct virtio_console *c)
{
        if (c)
                virtio_dev_destroy(c->vd);
}

int virtio_console_create(const struct dev_env *env, int in_fd, int out_fd, int err_fd,
                          struct virtio_console **out, char *err, size_t errlen)
{
        *out = NULL;
        if (!env || !env->loop)
                return ember_errf(err, errlen, EINVAL, "virtio-console: no event loop");
        struct virtio_console *c = calloc(1, sizeof(*c));
        if (!c || !(c->in_buf = malloc(IN_BUF_SIZE))) {
                free(c);
                return ember_errf(err, errlen, ENOMEM, "virtio-console: out of memory");
        }
        c->env = *env;
        c->in_poll_fd = -1;
        c->owned_fd[0] = c->owned_fd[1] = c->owned_fd[2] = -1;
        int r = setup_in(c, in_fd, err, errlen);
        if (r == 0)
                r = setup_out(c, 0, out_fd, err, errlen);
        if (r == 0)
                r = setup_out(c, 1, err_fd, err, errlen);
        if (r == 0)
                r = virtio_dev_create(env, &console_ops, c, &c->vd, err, errlen);
        if (r < 0) {
                console_free(c);
                return r;
        }
        *out = c;
        return 0;
}

/* Pops what is left on a stream's tx queue without delivering it: after the deadline. */
static uint64_t out_discard(struct out_stream *s)
{
        struct virtio_console *c = s->c;
        uint64_t dropped = 0;
        if (s->have_chain)
                dropped += s->chain.read_len - s->done;
        s->have_chain = false;
        /* The vCPUs are stopped: the avail ring can no longer grow, so this ends. */
        while (virtio_pop(c->vd, s->queue, &s->chain) > 0)
                dropped += s->chain.read_len;
        return dropped;
}

static uint64_t console_flush_op(void *dev, const struct timespec *deadline, uint64_t max_bytes,
                                 int cancel_fd)
{
        struct virtio_console *c = dev;
        uint64_t cap = max_bytes;
        for (unsigned i = 0; i < 2; i++) {
                struct out_stream *s = &c->out[i];
                for (;;) {
                        virtio_lock(c->vd);
                        bool more = false;
                        if (virtio_live(c->vd) && cap > 0) {
                                if (!s->have_chain && virtio_pop(c->vd, s->queue, &s->chain) > 0) {
                                        s->have_chain = true;
                                        s->done = 0;
                                }
                                if (s->have_chain) {
                                        more = true;
                                        if (out_take_chain(s, NULL, &cap)) {
                                                s->have_chain = false;
                                                virtio_push(c->vd, s->queue, s->chain.head, 0);
                                        }
                                }
                        }
                        virtio_unlock(c->vd);
                        if (!more)
                                break;
                        if (s->w && !hostfd_writer_wait_room(s->w, deadline, cancel_fd))
                                break;
                        if (hostfd_deadline_passed(deadline))
                                break;
                }
                if (s->w)
                        hostfd_writer_drain(s->w, deadline, cancel_fd);
                virtio_lock(c->vd);
                if (virtio_live(c->vd))
                        c->dropped += out_discard(s);
                virtio_unlock(c->vd);
        }
        struct virtio_console_stats st;
        virtio_console_get_stats(c, &st);
        return st.dropped_bytes;
}

uint64_t virtio_console_flush(struct virtio_console *c, const struct timespec *deadline,
                              uint64_t max_bytes, int cancel_fd)
{
        return virtio_dev_flush(c->vd, deadline, max_bytes, cancel_fd);
}

void virtio_console_get_stats(struct virtio_console *c, struct virtio_console_stats *s)
{
        virtio_lock(c->vd);
        s->in_bytes = c->in_bytes;
        s->dropped_bytes = c->dropped;
        for (unsigned i = 0; i < 2; i++) {
                struct hostfd_writer_stats ws = {0};
                /* A shared writer (stderr on stdout's file) is counted once, under stdout. */
                if (c->out[i].w && !c->out[i].shared)
                        hostfd_writer_get_stats(c->out[i].w, &ws);
                s->out_bytes[i] = ws.written;
                s->out_error[i] = ws.error;
                s->dropped_bytes += ws.dropped;
        }
        virtio_unlock(c->vd);
}

struct virtio_dev *virtio_console_dev(struct virtio_console *c)
{
        return c->vd;
}

int virtio_console_resize(struct virtio_dev *vd, unsigned rows, unsigned cols)
{
        struct virtio_console *c = virtio_dev_priv(vd);
        return c->tty ? tty_relay_resize(c->tty, rows, cols) : -ENOTTY;
}

/* ------------------------------------------------------------------ device table */

static unsigned console_count(const struct ember_config *cfg)
{
        return 1;
}

static int open_output(const char *path, int *fd, char *err, size_t errlen)
{
        *fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (*fd < 0)
                return ember_errf(err, errlen, errno, "cannot open '%s' for writing: %s", path,
                                  strerror(errno));
        return 0;
}

static int console_table_create(const struct dev_env *env, const struct ember_config *cfg,
                                unsigned index, struct virtio_dev **out, enum ember_error *code,
                                char *err, size_t errlen)
{
        static const char *const names[3] = {"stdin", "stdout", "stderr"};
        int owned[3] = {-1, -1, -1};
        int rc = 0;
        *code = EMBER_ERR_CONSOLE;
        if (cfg->console_output) {
                rc = open_output(cfg->console_output, &owned[1], err, errlen);
        } else {
                /* Our own duplicates: the caller may close its fds once the VM is built. */
                int fds[3] = {cfg->in_fd, cfg->out_fd, cfg->err_fd};
                for (int i = 0; i < 3 && !rc; i++) {
                        if (fds[i] < 0)
                                continue;
                        owned[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                        if (owned[i] < 0)
                                rc = ember_errf(err, errlen, errno, "console: %s fd %d: %s",
                                                names[i], fds[i], strerror(errno));
                }
        }
        /* Terminal mode: the console reads the relay's records instead of stdin (core/tty.c). */
        struct tty_relay *tty = NULL;
        int in_fd = owned[0];
        if (!rc && cfg->tty) {
                unsigned rows = 24, cols = 80;
                if (tty_size_of(owned[0], &rows, &cols) != 0)
                        tty_size_of(owned[1], &rows, &cols);
                rc = tty_relay_create(&tty, owned[0], rows, cols, &in_fd, err, errlen);
        }
        struct virtio_console *c = NULL;
        if (!rc) {
                int out_fd = owned[1];
                int err_fd = cfg->console_output ? owned[1] : owned[2];
                rc = virtio_console_create(env, in_fd, out_fd, err_fd, &c, err, errlen);
        }
        if (rc) {
                tty_relay_destroy(tty);
                for (int i = 0; i < 3; i++)
                        if (owned[i] >= 0)
                                close(owned[i]);
                return rc;
        }
        memcpy(c->owned_fd, owned, sizeof(owned));
        c->tty = tty;
        *out = c->vd;
        return 0;
}

const struct vm_device_type virtio_console_type = {
    .name = "virtio-console",
    .count = console_count,
    .create = console_table_create,
};
