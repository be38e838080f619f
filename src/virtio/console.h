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
 * Guest output goes to the host fds through a writer each (core/hostfd.h): a bounded buffer
 * drained by a thread of its own, so a slow or stuck reader stalls nothing else; the guest's
 * chain is returned as soon as its bytes are in the buffer, and a full buffer holds the guest
 * back (its tx queue fills). If a fd fails (EPIPE, EBADF, ...) the rest of that stream is
 * dropped but still consumed, so the guest never blocks. SIGPIPE never reaches the application.
 *
 * Work per queue notification is bounded in chains and bytes (virtio_pop_budget). At VM exit,
 * flush delivers what the guest left queued, within a deadline and a byte cap and until a
 * cancel fd fires; the rest is dropped and counted. */
#ifndef EMBER_VIRTIO_CONSOLE_H
#define EMBER_VIRTIO_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dev_env.h"
#include "virtio/virtio.h"

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
        uint64_t dropped_bytes; /* guest output discarded (fd gone or failing, no fd, stdin tx,
                                   not delivered by the final flush) */
        int out_error[2];       /* first errno that made a stream drop its output, or 0 */
};

/* Creates the console and its virtio core (a transport is attached by the caller: the VM, or
 * a test). The fds are borrowed, never closed, and must stay open until destroy; -1 means:
 * stdin at EOF at once / output discarded. The same fd may be passed for out and err. Call
 * before the vCPU and event threads start. Returns 0 or -errno + `err`. */
int virtio_console_create(const struct dev_env *env, int in_fd, int out_fd, int err_fd,
                          struct virtio_console **out, char *err, size_t errlen);
/* Frees everything, core included (after the transport and the threads are gone). NULL is a
 * no-op. */
void virtio_console_destroy(struct virtio_console *c);
struct virtio_dev *virtio_console_dev(struct virtio_console *c);

/* Delivers the stdout/stderr data the guest has queued (ops->flush): at VM exit, after the
 * vCPUs and the event thread stopped. Stops at `deadline` (CLOCK_MONOTONIC, NULL: none), after
 * `max_bytes`, or when `cancel_fd` (-1: none) is readable; returns the bytes dropped. */
uint64_t virtio_console_flush(struct virtio_console *c, const struct timespec *deadline,
                              uint64_t max_bytes, int cancel_fd);

void virtio_console_get_stats(struct virtio_console *c, struct virtio_console_stats *s);

#endif
