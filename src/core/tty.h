/* Terminal mode (ember_builder_console_tty): the workload's stdin travels as records (format in
 * include/ember/guest_abi.h) that ember-init decodes into its pty: keyboard input, and the
 * terminal's size at the start and on every ember_vm_console_resize. A thread of the relay's own
 * reads the caller's stdin and writes the records into a pipe that the console reads as its
 * stdin. */
#ifndef EMBER_CORE_TTY_H
#define EMBER_CORE_TTY_H

#include <stddef.h>
#include <stdint.h>

struct tty_relay;

/* Starts the relay. in_fd (borrowed, may be -1: no input, only sizes) is read until EOF; the
 * first size is rows x cols. *console_in receives the pipe end the console reads (owned by the
 * relay). Returns 0 or -errno with a detail in err. */
int tty_relay_create(struct tty_relay **out, int in_fd, unsigned rows, unsigned cols,
                     int *console_in, char *err, size_t errlen);
/* Stops and joins the thread and closes the pipe: after the console is gone, before in_fd is
 * closed. NULL is ignored. */
void tty_relay_destroy(struct tty_relay *r);
/* A new terminal size, sent as soon as the thread gets to it (the last one wins).
 * Async-signal-safe. */
int tty_relay_resize(struct tty_relay *r, unsigned rows, unsigned cols);

/* Encodes one record into out (at least EMBER_TTY_REC_HDR + len bytes); returns its length. */
size_t tty_record(uint8_t *out, unsigned type, const void *payload, size_t len);

/* The size of the terminal on fd, if it is one: 0, or -1 (rows and cols left alone). */
int tty_size_of(int fd, unsigned *rows, unsigned *cols);

#endif
