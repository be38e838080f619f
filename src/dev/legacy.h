/* Legacy x86 devices on the port I/O bus. */
#ifndef EMBER_DEV_LEGACY_H
#define EMBER_DEV_LEGACY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "core/dev_env.h"

/* 16550A UART, transmit side only: what the guest writes goes to out_fd (or nowhere if -1),
 * through a writer thread (core/hostfd.h), so a vCPU never blocks on the log's sink. Enough
 * for the Linux 8250 driver and its console; the receive side always reads empty. */
struct hostfd_writer;
struct serial16550 {
        pthread_mutex_t lock;
        const struct dev_env *env;
        uint32_t gsi;
        struct hostfd_writer *w; /* NULL: no log */
        uint64_t dropped;        /* bytes that did not fit the writer's buffer */
        uint8_t ier, lcr, mcr, scr, dll, dlm;
        int thre_pending; /* "transmitter empty" interrupt owed to the guest */
        int irq_level;
};
int serial16550_init(struct serial16550 *s, const struct dev_env *env, uint16_t port, uint32_t gsi,
                     int out_fd);
/* At VM exit: waits (bounded) until the log reached out_fd; returns the bytes ever dropped. */
uint64_t serial16550_flush(struct serial16550 *s, const struct timespec *deadline, int cancel_fd);
void serial16550_destroy(struct serial16550 *s);

/* i8042 keyboard controller, only as far as reset goes: command 0xfe on port 0x64 (what the
 * kernel does for reboot=k) stops the VM. */
struct i8042 {
        const struct dev_env *env;
};
int i8042_init(struct i8042 *k, const struct dev_env *env);

/* ember's status port (include/ember/guest_abi.h): "init reached", "exec", "exit with N". */
struct ember_metrics;
struct status_port {
        const struct dev_env *env;
        struct ember_metrics *metrics; /* receives the boot markers */
        _Atomic uint32_t abi_version;  /* what init announced, 0 before */
        _Atomic bool abi_refused;      /* it was not EMBER_ABI_VERSION: the VM is stopping */
};
int status_port_init(struct status_port *p, const struct dev_env *env, struct ember_metrics *m);

#endif
