/* Host file descriptors that devices read from and write to (the console's stdio, the kernel
 * log, later vsock's sockets): what kind an fd is, and a writer that never blocks its caller.
 *
 * The writer owns a bounded buffer and a thread of its own that drains it into the fd with
 * ordinary blocking writes, so a slow or stuck reader (a full pipe, a tty with one byte of
 * room, a file on a slow disk) stalls nothing but that thread: the caller (the event thread,
 * a vCPU thread) only copies into the buffer, which takes what fits. SIGPIPE never reaches the
 * application: the writer's thread has it blocked, and sockets are written with MSG_NOSIGNAL.
 * A stream whose write fails (EPIPE, EBADF, ...) is dead: everything after is dropped, and
 * counted. */
#ifndef EMBER_CORE_HOSTFD_H
#define EMBER_CORE_HOSTFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum hostfd_kind {
        HOSTFD_FILE,   /* epoll refuses it (regular file, /dev/null): always ready */
        HOSTFD_SOCKET, /* recv/send with MSG_DONTWAIT / MSG_NOSIGNAL */
        HOSTFD_STREAM, /* pipe, FIFO, tty, character device: poll() before a read */
};

/* 0 and *kind, or -errno (EBADF for a closed fd). */
int hostfd_classify(int fd, enum hostfd_kind *kind);

struct hostfd_writer;

struct hostfd_writer_stats {
        uint64_t written; /* bytes the fd took */
        uint64_t dropped; /* bytes given to the writer that never reached the fd */
        int error;        /* the errno that killed the stream, or 0 */
};

/* A writer for `fd` (borrowed: never closed; it must stay open until destroy) with a buffer of
 * `capacity` bytes and a thread named `name`. Returns 0 or -errno. */
int hostfd_writer_create(int fd, size_t capacity, const char *name, struct hostfd_writer **out);
/* Stops the thread, interrupting a write it is blocked in, and frees. What was still buffered
 * is counted as dropped. NULL is a no-op. */
void hostfd_writer_destroy(struct hostfd_writer *w);

/* Copies as much of [p, p+len) as there is room for and returns the bytes taken; never blocks.
 * A dead stream takes everything (and counts it dropped). When it takes less than `len`, the
 * room fd becomes readable once the thread has made room. Any thread. */
size_t hostfd_writer_put(struct hostfd_writer *w, const void *p, size_t len);
/* An eventfd (for an event loop) that is signalled when room was made after a short put; the
 * reader drains it. */
int hostfd_writer_room_fd(const struct hostfd_writer *w);
/* Waits until everything put so far reached the fd (or the stream died), until `deadline`
 * (CLOCK_MONOTONIC; NULL: no deadline) or until `cancel_fd` (-1: none) is readable, whichever
 * comes first. What is still buffered then is dropped. Returns the bytes dropped by this call. */
uint64_t hostfd_writer_drain(struct hostfd_writer *w, const struct timespec *deadline,
                             int cancel_fd);
/* Waits (as drain, same limits) until there is room for at least one byte. True if there is. */
bool hostfd_writer_wait_room(struct hostfd_writer *w, const struct timespec *deadline,
                             int cancel_fd);
void hostfd_writer_get_stats(struct hostfd_writer *w, struct hostfd_writer_stats *s);

/* Helpers for deadlines: now + ms, and whether `deadline` has passed (NULL: never). */
struct timespec hostfd_deadline_in(uint64_t ms);
bool hostfd_deadline_passed(const struct timespec *deadline);

#endif
