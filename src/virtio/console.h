/* virtio-console (device id 3) with VIRTIO_CONSOLE_F_MULTIPORT: the workload's stdin, stdout
 * and stderr as three named serial ports, never as hvc consoles.
 *
 *   port 0 "ember.stdin"  host -> guest   queues rx 0, tx 1
 *   port 1 "ember.stdout" guest -> host   queues rx 4, tx 5
 *   port 2 "ember.stderr" guest -> host   queues rx 6, tx 7
 *   control                               queues rx 2, tx 3
 *
 * Protocol: on the guest's DEVICE_READY the device sends PORT_ADD for each port; on PORT_READY
 * for a port it sends PORT_OPEN(1) and then PORT_NAME (so the port is host-connected before
 * its name appears in sysfs; the guest may open it once the name is there). Host stdin is read
 * only while the guest has the stdin port open (Linux drops data that arrives on a closed port)
 * and has buffers posted; once the host fd reaches EOF and every byte has been placed in guest
 * buffers, the device sends PORT_OPEN(0) for port 0 and the guest's read() returns 0.
 * Guest output is written to the host fds completely, in order per stream; if a fd fails
 * (EPIPE, EBADF, ...) the rest of that stream is dropped but still consumed, so the guest never
 * blocks. The device never lets a write raise SIGPIPE (it blocks the signal around pipe writes
 * on its own thread and uses MSG_NOSIGNAL on sockets).
 *
 * Threads: all queue work and fd I/O run on the VM's event thread with the transport's lock
 * held, and never block there (pipes and ttys are polled before each <= PIPE_BUF write; a
 * stream that is not writable is waited for with EPOLLOUT). Regular files (and other fds epoll
 * refuses, like /dev/null) are read and written directly. */
#ifndef EMBER_VIRTIO_CONSOLE_H
#define EMBER_VIRTIO_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dev_env.h"
#include "virtio/mmio.h"

#define VIRTIO_ID_CONSOLE 3u

#define VIRTIO_CONSOLE_F_SIZE        0
#define VIRTIO_CONSOLE_F_MULTIPORT   1
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2

/* struct virtio_console_control events */
#define VIRTIO_CONSOLE_DEVICE_READY  0
#define VIRTIO_CONSOLE_DEVICE_ADD    1
#define VIRTIO_CONSOLE_DEVICE_REMOVE 2
#define VIRTIO_CONSOLE_PORT_READY    3
#define VIRTIO_CONSOLE_CONSOLE_PORT  4
#define VIRTIO_CONSOLE_RESIZE        5
#define VIRTIO_CONSOLE_PORT_OPEN     6
#define VIRTIO_CONSOLE_PORT_NAME     7

#define VIRTIO_CONSOLE_BAD_ID   0xffffffffu /* port id of device-wide messages */
#define VIRTIO_CONSOLE_CTRL_LEN 8u          /* le32 id, le16 event, le16 value */

#define VIRTIO_CONSOLE_PORT_STDIN     0u
#define VIRTIO_CONSOLE_PORT_STDOUT    1u
#define VIRTIO_CONSOLE_PORT_STDERR    2u
#define VIRTIO_CONSOLE_NR_PORTS       3u
#define VIRTIO_CONSOLE_NR_QUEUES      (2u * (VIRTIO_CONSOLE_NR_PORTS + 1u))
#define VIRTIO_CONSOLE_QUEUE_MAX      64u /* data queues that carry streams */
#define VIRTIO_CONSOLE_CTRL_RX_MAX    16u /* host-to-guest control: ~10 messages at start */
#define VIRTIO_CONSOLE_IDLE_RX_MAX    2u  /* stdout's and stderr's receive queues: unused */
#define VIRTIO_CONSOLE_CTRL_RX        2u
#define VIRTIO_CONSOLE_CTRL_TX        3u
#define VIRTIO_CONSOLE_RX_QUEUE(port) ((port) == 0 ? 0u : 2u + 2u * (port))
#define VIRTIO_CONSOLE_TX_QUEUE(port) (VIRTIO_CONSOLE_RX_QUEUE(port) + 1u)

struct virtio_console;

struct virtio_console_stats {
        uint64_t in_bytes;      /* host stdin bytes placed in guest buffers */
        uint64_t out_bytes[2];  /* bytes written to the stdout / stderr fd */
        uint64_t dropped_bytes; /* guest output discarded (fd gone or failing, no fd, stdin tx) */
        int out_error[2];       /* first errno that made a stream drop its output, or 0 */
};

/* Creates the console and its virtio-mmio transport at [base, base+4K) on GSI `gsi` (the core
 * adds virtio_mmio_cmdline(base, gsi) to the kernel command line). The fds are borrowed, never
 * closed (but dup'ed for epoll until destroy, so a pipe reader sees EOF only after
 * virtio_console_destroy); -1 means: stdin at EOF at once / output discarded. The same fd may
 * be passed for out and err. Call before the vCPU and event threads start. Returns 0 or -errno +
 * `err`. */
int virtio_console_create(const struct dev_env *env, uint64_t base, uint32_t gsi, int in_fd,
                          int out_fd, int err_fd, struct virtio_console **out, char *err,
                          size_t errlen);
/* Frees everything (after the vCPU and event threads are gone). NULL is a no-op. */
void virtio_console_destroy(struct virtio_console *c);

/* Writes out every stdout/stderr buffer the guest has queued, blocking until each is written
 * or its fd fails. Call at VM exit after the vCPUs stopped (preferably after the event thread
 * stopped too; it is safe either way), before virtio_console_destroy(). */
void virtio_console_flush(struct virtio_console *c);

void virtio_console_get_stats(struct virtio_console *c, struct virtio_console_stats *s);
struct virtio_mmio *virtio_console_transport(struct virtio_console *c);

#endif
