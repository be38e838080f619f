/* Terminal mode (EMBER_CFG_FLAG_TTY): the workload runs on a pty of its own; a relay process
 * copies the pty's output to the stdout port and decodes the stdin port's records (format in
 * include/ember/guest_abi.h) into keyboard input and window sizes. */
#ifndef EMBER_INIT_TTY_H
#define EMBER_INIT_TTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ember/guest_abi.h"

/* Record decoder, fed arbitrary pieces of the stream (host-testable). */
struct init_tty_decoder {
        uint8_t buf[EMBER_TTY_REC_HDR + EMBER_TTY_DATA_MAX];
        size_t len;
};
struct init_tty_sink {
        void (*data)(void *ctx, const uint8_t *p, size_t n);
        void (*resize)(void *ctx, unsigned rows, unsigned cols);
        void *ctx;
};
/* Decodes what n more bytes complete. 0, or -EPROTO at the first bad record (the rest of the
 * stream is not trusted then). */
int init_tty_decode(struct init_tty_decoder *d, const uint8_t *in, size_t n,
                    const struct init_tty_sink *sink);

/* In init, before the workload starts: opens the pty and starts the relay. 0 or -errno. */
int init_tty_setup(void);
/* In the workload's process, after setsid(): the pty becomes its controlling terminal and its
 * fds 0, 1 and 2. 0 or -errno. */
int init_tty_attach(void);
/* In init, once the workload has exited: the relay forwards what the pty still holds, then
 * ends; returns when it has. */
void init_tty_workload_ended(void);
/* In init, for every child it reaps. */
void init_tty_reaped(pid_t pid);

#endif
