/* The ember command as a user runs it: help, version, usage errors, kvm-info, and `ember run`
 * with a tiny guest (and what it says on a host whose KVM cannot run Linux guests). */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ember/ember.h"
#include "ember/kvm.h"
#include "test.h"
#include "tiny_guest.h"

static char ember_bin[PATH_MAX];
static char out[65536], err[65536];

/* Runs ember with argv (NULL-terminated, without argv[0]); captures stdout and stderr. */
static int run_ember(const char *const *args)
{
        char outf[] = "/tmp/ember-cli-out-XXXXXX", errf[] = "/tmp/ember-cli-err-XXXXXX";
        int o = mkstemp(outf), e = mkstemp(errf);
        REQUIRE(o >= 0 && e >= 0);
        const char *argv[32] = {ember_bin};
        for (int i = 0; args[i] && i < 30; i++)
                argv[i + 1] = args[i];
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
                dup2(o, 1);
                dup2(e, 2);
                int null = open("/dev/null", O_RDONLY);
                dup2(null, 0);
                execv(ember_bin, (char *const *)argv);
                _exit(99);
        }
        int st;
        waitpid(pid, &st, 0);
        memset(out, 0, sizeof(out));
        memset(err, 0, sizeof(err));
        lseek(o, 0, SEEK_SET);
        lseek(e, 0, SEEK_SET);
        CHECK(read(o, out, sizeof(out) - 1) >= 0);
        CHECK(read(e, err, sizeof(err) - 1) >= 0);
        close(o);
        close(e);
        unlink(outf);
        unlink(errf);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define NEED_EMBER()                                                                               \
        do {                                                                                       \
                if (access(ember_bin, X_OK) != 0)                                                  \
                        SKIP("%s not built (make build/ember)", ember_bin);                        \
        } while (0)

static void t_help_and_version(void)
{
        NEED_EMBER();
        CHECK_EQ(run_ember((const char *[]){"--help", NULL}), 0);
        CHECK(strstr(out, "usage: ember") != NULL);
        CHECK_EQ(run_ember((const char *[]){"run", "--help", NULL}), 0);
        CHECK(strstr(out, "--memory") != NULL && strstr(out, "--rootfs") != NULL);
        CHECK_EQ(run_ember((const char *[]){"--version", NULL}), 0);
        CHECK(strstr(out, ember_version()) != NULL);
}

static void t_usage_errors(void)
{
        NEED_EMBER();
        CHECK_EQ(run_ember((const char *[]){NULL}), 2);
        CHECK_EQ(run_ember((const char *[]){"frobnicate", NULL}), 2);
        CHECK(strstr(err, "unknown command 'frobnicate'") != NULL);
        CHECK_EQ(run_ember((const char *[]){"run", "--bogus", "--", "true", NULL}), 2);
        CHECK(strstr(err, "unknown option") != NULL);
        CHECK_EQ(run_ember((const char *[]){"run", "--cpus", "two", "--", "true", NULL}), 2);
        CHECK(strstr(err, "--cpus 'two'") != NULL);
        CHECK_EQ(run_ember((const char *[]){"run", "--kernel", "/x", NULL}), 2);
        CHECK(strstr(err, "no command given") != NULL);
}

/* Bad inputs that ember itself refuses: a clear message naming the problem, status 125. */
static void t_bad_inputs_named(void)
{
        NEED_EMBER();
        /* A file of its own rather than some host file: test hosts differ in what /etc holds. */
        char garbage[] = "/tmp/ember-cli-kernel-XXXXXX";
        int gfd = mkstemp(garbage);
        REQUIRE(gfd >= 0);
        CHECK_EQ(write(gfd, "not a kernel\n", 13), 13);
        close(gfd);
        CHECK_EQ(run_ember((const char *[]){"run", "--kernel", "/nonexistent/k", "--rootfs", "/",
                                            "--", "true", NULL}),
                 EMBER_EXIT_GUEST_FAILED);
        CHECK(strstr(err, "/nonexistent/k") != NULL);
        CHECK_EQ(run_ember((const char *[]){"run", "--kernel", garbage, "--rootfs", "/", "--",
                                            "true", NULL}),
                 EMBER_EXIT_GUEST_FAILED);
        CHECK(strstr(err, garbage) != NULL && strstr(err, "not a bzImage") != NULL);
        CHECK_EQ(run_ember((const char *[]){"run", "--kernel", garbage, "--rootfs", "/", "--cpus",
                                            "0", "--", "true", NULL}),
                 EMBER_EXIT_GUEST_FAILED);
        CHECK(strstr(err, "0 vCPUs") != NULL);
        CHECK_EQ(run_ember((const char *[]){"run", "--kernel", garbage, "--rootfs",
                                            "/nonexistent/root", "--", "true", NULL}),
                 EMBER_EXIT_GUEST_FAILED);
        CHECK(strstr(err, "/nonexistent/root") != NULL);
        unlink(garbage);
}

static void t_kvm_info_matches_host(void)
{
        NEED_EMBER();
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                SKIP("/dev/kvm is not usable here");
        close(fd);
        int rc = run_ember((const char *[]){"kvm-info", NULL});
        CHECK_EQ(rc, 0);
        CHECK(strstr(out, "API version: 12") != NULL);
        CHECK(strstr(out, "KVM_CAP_IRQCHIP") != NULL);
        enum ember_kvm_host_virt v = ember_kvm_host_virt();
        char want[128];
        snprintf(want, sizeof(want), "host virtualization: %s", ember_kvm_host_virt_name(v));
        CHECK(strstr(out, want) != NULL);
}

/* `ember run` with a tiny guest on either kind of host. A software-only KVM must refuse clearly,
 * pointing to the TCG test host, and run the guest with --allow-software-kvm; a hardware KVM
 * runs it as is. Either way the guest's status comes back. */
static void t_run_tiny_guest(void)
{
        NEED_EMBER();
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                SKIP("/dev/kvm is not usable here");
        close(fd);
        const bool software = ember_kvm_host_virt() == EMBER_KVM_HOST_PVM;
        struct tiny_code c = {0};
        tiny_exit(&c, 42);
        char *k = tiny_guest_write(&c);
        REQUIRE(k);
        CHECK_EQ(run_ember((const char *[]){"run", "--kernel", k, "--rootfs", "/nonexistent/..",
                                            "--", "true", NULL}),
                 EMBER_EXIT_GUEST_FAILED);
        char emptydir[] = "/tmp/ember-cli-root-XXXXXX";
        REQUIRE(mkdtemp(emptydir));
        const int plain = run_ember(
            (const char *[]){"run", "--kernel", k, "--rootfs", emptydir, "--", "true", NULL});
        if (software) {
                CHECK_EQ(plain, EMBER_EXIT_GUEST_FAILED);
                CHECK(strstr(err, "cannot run an unmodified Linux guest") != NULL);
                CHECK(strstr(err, "scripts/ember-tcg") != NULL);
                CHECK_EQ(run_ember((const char *[]){"run", "--allow-software-kvm", "--kernel", k,
                                                    "--rootfs", emptydir, "--", "true", NULL}),
                         42);
        } else {
                CHECK_EQ(plain, 42);
                CHECK_STR(err, "");
        }
        rmdir(emptydir);
        unlink(k);
        free(k);
}

int main(void)
{
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return 1;
        self[n] = 0;
        /* build/tests/kvm/test_cli -> build/ember */
        snprintf(ember_bin, sizeof(ember_bin), "%s/ember", dirname(dirname(dirname(self))));
        T_RUN(t_help_and_version);
        T_RUN(t_usage_errors);
        T_RUN(t_bad_inputs_named);
        T_RUN(t_kvm_info_matches_host);
        T_RUN(t_run_tiny_guest);
        return T_DONE();
}
