/* Threads that ember starts. */
#ifndef EMBER_CORE_THREAD_H
#define EMBER_CORE_THREAD_H

#include <pthread.h>
#include <stdbool.h>

/* pthread_create with every signal blocked in the new thread (ember's threads must not take
 * the application's signals, nor die of SIGPIPE), except EMBER_KICK_SIGNAL when `kickable`:
 * that signal then interrupts the thread's blocking system calls (EINTR), which is how a
 * stop reaches a thread blocked in KVM_RUN or in a write to a stuck pipe. The kick handler is
 * installed by the first call. `name` (<= 15 chars) names the thread. Returns 0 or -errno. */
int ember_thread_spawn(pthread_t *t, void *(*fn)(void *), void *arg, bool kickable,
                       const char *name);

/* Joins a kickable thread that may be blocked in a system call: kicks it with
 * EMBER_KICK_SIGNAL every 20 ms until it is gone (a kick can land just before the call starts,
 * and is then lost). `before_kick` (may be NULL) runs before each kick. */
void ember_thread_join_kicking(pthread_t t, void (*before_kick)(void *), void *arg);

#endif
