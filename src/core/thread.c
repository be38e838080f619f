#include "core/thread.h"

#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "ember/ember.h"

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void kick_handler(int sig)
{
        /* Only there so that the signal interrupts a blocking call (KVM_RUN, a write); the
         * thread then sees why it was kicked. No SA_RESTART: the call must return EINTR. */
}

static void kick_install(void)
{
        struct sigaction sa = {.sa_handler = kick_handler};
        sigemptyset(&sa.sa_mask);
        sigaction(EMBER_KICK_SIGNAL, &sa, NULL);
}

void ember_thread_join_kicking(pthread_t t, void (*before_kick)(void *), void *arg)
{
        for (;;) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 20 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                if (pthread_timedjoin_np(t, NULL, &ts) != ETIMEDOUT)
                        return;
                if (before_kick)
                        before_kick(arg);
                pthread_kill(t, EMBER_KICK_SIGNAL);
        }
}

int ember_thread_spawn(pthread_t *t, void *(*fn)(void *), void *arg, bool kickable,
                       const char *name)
{
        pthread_once(&kick_once, kick_install);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        sigset_t child = all;
        if (kickable)
                sigdelset(&child, EMBER_KICK_SIGNAL);
        pthread_sigmask(SIG_SETMASK, &child, NULL);
        int rc = pthread_create(t, NULL, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0 && name) {
                char n[16];
                snprintf(n, sizeof(n), "%s", name);
                pthread_setname_np(*t, n);
        }
        return -rc;
}
