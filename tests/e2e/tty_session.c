/* `ember run -it` driven through a real pseudo-terminal (EMBER, KERNEL, ROOTFS from the e2e
 * harness): this program opens a pty pair, runs ember on its slave as a terminal session would,
 * types at the master and reads the screen. A prompt appears; `stty size` in the guest matches
 * the pty's size and follows a resize; Ctrl-C interrupts a `sleep 100` while the shell survives;
 * `exit 3` ends ember with status 3; and the terminal's mode, raw while ember runs, is restored
 * afterwards, also when the guest panics. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static const char *ember, *kernel, *rootfs;
static int timeout_s = 120;

struct session {
        int master, slave; /* the harness keeps a slave fd to read the terminal's mode */
        pid_t pid;
        char screen[1 << 16];
        size_t len;
};

static void set_size(int fd, unsigned short rows, unsigned short cols)
{
        struct winsize ws = {.ws_row = rows, .ws_col = cols};
        REQUIRE_EQ(ioctl(fd, TIOCSWINSZ, &ws), 0);
}

static void start(struct session *s, const char *const *extra)
{
        const char *argv[24] = {ember,  "run",   "--kernel",     kernel, "--rootfs",
                                rootfs, "--env", "PS1=PROMPT> ", "-it"};
        size_t n = 9;
        while (*extra && n < 22)
                argv[n++] = *extra++;
        argv[n] = NULL;
        memset(s, 0, sizeof(*s));
        s->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        REQUIRE(s->master >= 0);
        REQUIRE_EQ(grantpt(s->master), 0);
        REQUIRE_EQ(unlockpt(s->master), 0);
        char name[64];
        REQUIRE_EQ(ptsname_r(s->master, name, sizeof(name)), 0);
        s->slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        REQUIRE(s->slave >= 0);
        set_size(s->master, 30, 100);
        s->pid = fork();
        REQUIRE(s->pid >= 0);
        if (s->pid == 0) {
                /* A terminal session: ember leads it, the pty is its controlling terminal. */
                setsid();
                int fd = open(name, O_RDWR);
                if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) != 0)
                        _exit(97);
                dup2(fd, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                execv(ember, (char *const *)argv);
                _exit(98);
        }
}

/* Reads the screen until `needle` shows up after offset `from`, or the time is up. */
static int wait_for(struct session *s, size_t from, const char *needle, int seconds)
{
        time_t end = time(NULL) + seconds;
        for (;;) {
                s->screen[s->len] = 0;
                if (s->len >= from && strstr(s->screen + from, needle))
                        return 1;
                int left = (int)(end - time(NULL));
                if (left <= 0)
                        return 0;
                struct pollfd p = {.fd = s->master, .events = POLLIN};
                if (poll(&p, 1, left * 1000) <= 0)
                        return 0;
                if (s->len + 1 >= sizeof(s->screen)) {
                        /* Keep the last half: what we wait for is recent. */
                        memmove(s->screen, s->screen + sizeof(s->screen) / 2,
                                s->len - sizeof(s->screen) / 2);
                        s->len -= sizeof(s->screen) / 2;
                        from = from > sizeof(s->screen) / 2 ? from - sizeof(s->screen) / 2 : 0;
                }
                ssize_t n = read(s->master, s->screen + s->len, sizeof(s->screen) - 1 - s->len);
                if (n <= 0)
                        return 0; /* EIO: ember and everything on the slave are gone */
                s->len += (size_t)n;
        }
}

static void type(struct session *s, const char *keys)
{
        REQUIRE_EQ(write(s->master, keys, strlen(keys)), (ssize_t)strlen(keys));
}

static void show_screen(struct session *s)
{
        size_t from = s->len > 600 ? s->len - 600 : 0;
        printf("    last of the screen:\n      ");
        for (size_t i = from; i < s->len; i++) {
                unsigned char c = (unsigned char)s->screen[i];
                if (c == '\n')
                        printf("\n      ");
                else if (c >= 0x20 && c < 0x7f)
                        putchar(c);
                else if (c != '\r')
                        printf("\\x%02x", c);
        }
        printf("\n");
}

/* Waits for ember to end (killing it when the time is up); its exit status or -1. */
static int finish(struct session *s, int seconds)
{
        int ws;
        for (int i = 0; i < seconds * 10; i++) {
                pid_t r = waitpid(s->pid, &ws, WNOHANG);
                if (r == s->pid)
                        return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
                struct pollfd p = {.fd = s->master, .events = POLLIN};
                if (s->len + 4096 >= sizeof(s->screen))
                        s->len = 0; /* only the end matters here */
                ssize_t n = poll(&p, 1, 100) > 0 ? read(s->master, s->screen + s->len, 4095) : 0;
                if (n > 0) /* EIO once the slave is closed: keep waiting for the exit */
                        s->len += (size_t)n;
                s->screen[s->len] = 0;
        }
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &ws, 0);
        return -1;
}

static int same_mode(const struct termios *a, const struct termios *b)
{
        return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag &&
               a->c_lflag == b->c_lflag && !memcmp(a->c_cc, b->c_cc, sizeof(a->c_cc));
}

static void t_interactive_shell(void)
{
        struct session s;
        struct termios before, during, after;
        const char *none[] = {"--", "/bin/sh", NULL};
        start(&s, none);
        REQUIRE_EQ(tcgetattr(s.slave, &before), 0);
        REQUIRE(before.c_lflag &
                ICANON); /* a fresh pty is cooked: the check below means something */
        if (!wait_for(&s, 0, "PROMPT> ", timeout_s)) {
                show_screen(&s);
                finish(&s, 1);
                FAILF("no prompt within %d s", timeout_s);
        }
        REQUIRE_EQ(tcgetattr(s.slave, &during), 0);
        CHECK(!(during.c_lflag & (ICANON | ECHO | ISIG))); /* ember made it raw */

        size_t mark = s.len;
        type(&s, "stty size\r");
        if (!wait_for(&s, mark, "30 100", 60)) {
                show_screen(&s);
                FAILF("stty size did not say 30 100");
        }
        /* A resize reaches the guest's pty; SIGWINCH may land after the next keys, so ask again
         * until it shows (a bounded number of times). */
        set_size(s.master, 40, 120);
        int seen = 0;
        for (int i = 0; i < 20 && !seen; i++) {
                mark = s.len;
                type(&s, "stty size\r");
                seen = wait_for(&s, mark, "40 120", 3);
        }
        if (!seen) {
                show_screen(&s);
                FAILF("stty size did not follow the resize to 40 120");
        }

        /* Ctrl-C reaches the guest's foreground job, not ember: the sleep ends, the shell stays. */
        mark = s.len;
        type(&s, "echo start-$((2+3)); sleep 100\r");
        if (!wait_for(&s, mark, "start-5", 60)) {
                show_screen(&s);
                FAILF("the sleep did not start");
        }
        sleep(1);
        type(&s, "\x03");
        mark = s.len;
        type(&s, "echo alive-$((6*7))\r");
        if (!wait_for(&s, mark, "alive-42", 60)) {
                show_screen(&s);
                FAILF("Ctrl-C did not interrupt sleep 100 (or the shell did not survive it)");
        }

        /* What the shell writes right before it exits still reaches the screen. */
        mark = s.len;
        type(&s, "echo bye-$((1+1)); exit 3\r");
        int rc = finish(&s, 60);
        CHECK_EQ(rc, 3);
        if (!strstr(s.screen + (mark <= s.len ? mark : 0), "bye-2")) {
                show_screen(&s);
                FAILF("the last output before exit did not reach the screen");
        }
        REQUIRE_EQ(tcgetattr(s.slave, &after), 0);
        CHECK(same_mode(&before, &after));
        close(s.slave);
        close(s.master);
}

/* The guest panics at boot (no init): ember ends with 125 and the terminal is cooked again. */
static void t_mode_restored_after_guest_panic(void)
{
        struct session s;
        struct termios before, after;
        const char *panic[] = {"--cmdline", "rdinit=/nonexistent", "--", "/bin/sh", NULL};
        start(&s, panic);
        REQUIRE_EQ(tcgetattr(s.slave, &before), 0);
        /* Raw while ember runs (so the restore below means something). */
        int saw_raw = 0, ws;
        for (int i = 0; i < timeout_s * 200 && !saw_raw; i++) {
                struct termios now;
                if (tcgetattr(s.slave, &now) == 0 && !(now.c_lflag & ICANON))
                        saw_raw = 1;
                else if (waitpid(s.pid, &ws, WNOHANG) == s.pid)
                        FAILF("ember ended before the terminal was seen raw");
                else
                        usleep(5000);
        }
        CHECK(saw_raw);
        int rc = finish(&s, timeout_s);
        CHECK_EQ(rc, 125);
        REQUIRE_EQ(tcgetattr(s.slave, &after), 0);
        CHECK(same_mode(&before, &after));
        close(s.slave);
        close(s.master);
}

/* -t needs a terminal on stdin, as docker run's. */
static void t_tty_refused_without_terminal(void)
{
        int errp[2];
        REQUIRE_EQ(pipe(errp), 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, 0);
                dup2(null, 1);
                dup2(errp[1], 2);
                execl(ember, ember, "run", "--kernel", kernel, "--rootfs", rootfs, "-t", "--",
                      "true", (char *)NULL);
                _exit(98);
        }
        close(errp[1]);
        char buf[512] = "";
        ssize_t n = read(errp[0], buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = 0;
        close(errp[0]);
        int ws;
        waitpid(pid, &ws, 0);
        CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) != 0);
        CHECK(strstr(buf, "terminal") != NULL);
}

int main(void)
{
        ember = getenv("EMBER");
        kernel = getenv("KERNEL");
        rootfs = getenv("ROOTFS");
        if (getenv("E2E_TIMEOUT"))
                timeout_s = atoi(getenv("E2E_TIMEOUT"));
        if (!ember || !kernel || !rootfs) {
                printf("SKIP tty_session: EMBER, KERNEL and ROOTFS must be set (run through "
                       "tests/e2e/run.sh)\n");
                return 0;
        }
        signal(SIGPIPE, SIG_IGN);
        T_RUN(t_tty_refused_without_terminal);
        T_RUN(t_interactive_shell);
        T_RUN(t_mode_restored_after_guest_panic);
        return T_DONE();
}
