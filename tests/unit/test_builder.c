/* Builder validation: every bad input is refused with a named error and a detail that names
 * the problem, before any KVM work (so these run without /dev/kvm). */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ember/ember.h"
#include "test.h"
#include "tiny_guest.h"

static char *tiny_kernel;

static struct ember_builder *valid_builder(void)
{
        struct ember_builder *b = ember_builder_new();
        REQUIRE(b);
        REQUIRE_EQ(ember_builder_kernel(b, tiny_kernel), 0);
        REQUIRE_EQ(ember_builder_exec(b, "/bin/true", NULL), 0);
        return b;
}

/* Builds and expects a failure with `code` whose detail contains `needle`. */
static void expect_build_error(struct ember_builder *b, enum ember_error code, const char *needle)
{
        struct ember_vm *vm = NULL;
        int rc = ember_builder_build(b, &vm);
        CHECK(rc < 0);
        CHECK(vm == NULL);
        if (ember_builder_error_code(b) != code)
                FAILF("error %s (%s), expected %s", ember_error_name(ember_builder_error_code(b)),
                      ember_builder_error(b), ember_error_name(code));
        if (!strstr(ember_builder_error(b), needle))
                FAILF("detail '%s' does not mention '%s'", ember_builder_error(b), needle);
        ember_vm_free(vm);
}

static void t_zero_vcpus(void)
{
        struct ember_builder *b = valid_builder();
        ember_builder_machine(b, 0, 128);
        expect_build_error(b, EMBER_ERR_VCPUS, "0 vCPUs");
        ember_builder_machine(b, 100000, 128);
        expect_build_error(b, EMBER_ERR_VCPUS, "at most");
        ember_builder_free(b);
}

static void t_memory_bounds(void)
{
        struct ember_builder *b = valid_builder();
        ember_builder_machine(b, 1, 4);
        expect_build_error(b, EMBER_ERR_MEMORY, "too small");
        ember_builder_machine(b, 1, 999999999);
        expect_build_error(b, EMBER_ERR_MEMORY, "too large");
        ember_builder_free(b);
}

static void t_kernel_missing_or_garbage(void)
{
        struct ember_builder *b = ember_builder_new();
        ember_builder_exec(b, "/bin/true", NULL);
        expect_build_error(b, EMBER_ERR_KERNEL, "no kernel");
        ember_builder_kernel(b, "/nonexistent/vmlinux");
        expect_build_error(b, EMBER_ERR_KERNEL, "/nonexistent/vmlinux");

        char garbage[] = "/tmp/ember-garbage-XXXXXX";
        int fd = mkstemp(garbage);
        REQUIRE(fd >= 0);
        char junk[8192];
        for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (char)(i * 131 + 7);
        REQUIRE_EQ(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
        close(fd);
        ember_builder_kernel(b, garbage);
        expect_build_error(b, EMBER_ERR_KERNEL, "not a bzImage");

        fd = open(garbage, O_WRONLY | O_TRUNC);
        close(fd);
        expect_build_error(b, EMBER_ERR_KERNEL, "0 bytes");
        unlink(garbage);

        ember_builder_kernel(b, "/tmp");
        expect_build_error(b, EMBER_ERR_KERNEL, "not a regular file");
        ember_builder_free(b);
}

static void t_rootfs_missing_or_not_dir(void)
{
        struct ember_builder *b = valid_builder();
        ember_builder_fs_root(b, "/nonexistent/root");
        expect_build_error(b, EMBER_ERR_ROOTFS, "/nonexistent/root");
        ember_builder_fs_root(b, tiny_kernel);
        expect_build_error(b, EMBER_ERR_ROOTFS, "not a directory");
        ember_builder_free(b);
}

static void t_no_command(void)
{
        struct ember_builder *b = ember_builder_new();
        ember_builder_kernel(b, tiny_kernel);
        expect_build_error(b, EMBER_ERR_EXEC, "no command");
        CHECK(ember_builder_exec(b, "", NULL) < 0);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_EXEC);
        ember_builder_free(b);
}

static void t_env_validation(void)
{
        struct ember_builder *b = valid_builder();
        CHECK_EQ(ember_builder_exec_env_str(b, "NOEQUALS"), -EINVAL);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_ENV);
        CHECK(strstr(ember_builder_error(b), "NOEQUALS") != NULL);
        CHECK_EQ(ember_builder_exec_env_str(b, "=value"), -EINVAL);
        CHECK_EQ(ember_builder_exec_env(b, "A=B", "c"), -EINVAL);
        CHECK_EQ(ember_builder_exec_env(b, "", "c"), -EINVAL);
        /* Values may hold anything but NUL: spaces, quotes, '=', newlines. */
        CHECK_EQ(ember_builder_exec_env(b, "A", "x y \"z\" = '\n"), 0);
        CHECK_EQ(ember_builder_exec_env_str(b, "A=replaced"), 0);
        ember_builder_free(b);
}

static char envdir[64];

static const char *env_file(const char *name, const char *content)
{
        static char path[128];
        snprintf(path, sizeof(path), "%s/%s", envdir, name);
        FILE *f = fopen(path, "w");
        REQUIRE(f);
        fputs(content, f);
        fclose(f);
        return path;
}

/* What the values become is checked in a booted guest (e2e env_file_*); here, what is refused. */
static void t_env_file(void)
{
        strcpy(envdir, "/tmp/ember-envfile.XXXXXX");
        REQUIRE(mkdtemp(envdir));
        struct ember_builder *b = valid_builder();
        setenv("EMBER_TEST_FROM_HOST", "host value", 1);
        unsetenv("EMBER_TEST_UNSET");
        CHECK_EQ(ember_builder_exec_env_file(
                     b, env_file("good", "\xef\xbb\xbf# comment\n\n   \t\nA=1\n  B= x \n"
                                         "C=\"quoted\" 'kept'\r\nEMBER_TEST_FROM_HOST\n"
                                         "EMBER_TEST_UNSET\nD=a=b\nE=\n#F=no\nA=2")),
                 0);
        ember_builder_free(b);

        b = valid_builder();
        CHECK_EQ(ember_builder_exec_env_file(b, env_file("space", "OK=1\nBAD NAME=1\n")), -EINVAL);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_ENV);
        CHECK(strstr(ember_builder_error(b), "line 2") != NULL);
        CHECK(strstr(ember_builder_error(b), "white space") != NULL);
        CHECK_EQ(ember_builder_exec_env_file(b, env_file("noname", "=value\n")), -EINVAL);
        CHECK(strstr(ember_builder_error(b), "line 1") != NULL);
        CHECK_EQ(ember_builder_exec_env_file(b, env_file("trailing", "KEY \n")), -EINVAL);
        CHECK_EQ(ember_builder_exec_env_file(b, "/nonexistent/env"), -ENOENT);
        CHECK(strstr(ember_builder_error(b), "/nonexistent/env") != NULL);
        {
                const char *p = env_file("nul", "A=1\n");
                FILE *f = fopen(p, "a");
                REQUIRE(f);
                fwrite("B=\0\n", 1, 4, f);
                fclose(f);
                CHECK_EQ(ember_builder_exec_env_file(b, p), -EINVAL);
                CHECK(strstr(ember_builder_error(b), "NUL") != NULL);
        }
        ember_builder_free(b);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", envdir);
        CHECK_EQ(system(cmd), 0);
}

static void t_user_spec(void)
{
        struct ember_builder *b = valid_builder();
        CHECK_EQ(ember_builder_exec_user_spec(b, "1000"), 0);
        CHECK_EQ(ember_builder_exec_user_spec(b, "alice"), 0);
        CHECK_EQ(ember_builder_exec_user_spec(b, "alice:staff"), 0);
        CHECK_EQ(ember_builder_exec_user_spec(b, "1000:staff"), 0);
        CHECK_EQ(ember_builder_exec_user_spec(b, "alice:50"), 0);
        CHECK_EQ(ember_builder_exec_user_spec(b, ""), -EINVAL);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_USER);
        CHECK_EQ(ember_builder_exec_user_spec(b, ":staff"), -EINVAL);
        CHECK_EQ(ember_builder_exec_user_spec(b, "alice:"), -EINVAL);
        CHECK_EQ(ember_builder_exec_user_spec(b, "a:b:c"), -EINVAL);
        CHECK(strstr(ember_builder_error(b), "a:b:c") != NULL);
        CHECK_EQ(ember_builder_exec_user_spec(b, "4294967295"), -ERANGE);
        CHECK_EQ(ember_builder_exec_user_spec(b, "1:99999999999999999999"), -ERANGE);
        CHECK_EQ(ember_builder_exec_user_spec(b, NULL), -EINVAL);
        ember_builder_free(b);
}

static void t_workdir_rlimit_hostname(void)
{
        struct ember_builder *b = valid_builder();
        CHECK_EQ(ember_builder_exec_workdir(b, "relative/dir"), -EINVAL);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_WORKDIR);
        CHECK_EQ(ember_builder_exec_workdir(b, "/tmp"), 0);
        CHECK_EQ(ember_builder_exec_rlimit(b, "bogus", 1, 2), -EINVAL);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_RLIMIT);
        CHECK(strstr(ember_builder_error(b), "bogus") != NULL);
        CHECK_EQ(ember_builder_exec_rlimit(b, "nofile", 10, 5), -EINVAL);
        CHECK(strstr(ember_builder_error(b), "soft") != NULL);
        CHECK_EQ(ember_builder_exec_rlimit(b, "nofile", 100, 200), 0);
        CHECK_EQ(ember_builder_exec_rlimit(b, "RLIMIT_NPROC", 100, 200), 0);
        CHECK_EQ(ember_builder_exec_hostname(b, ""), -EINVAL);
        CHECK_EQ(ember_builder_exec_hostname(b, "guest"), 0);
        ember_builder_free(b);
}

static void t_cmdline_validation(void)
{
        struct ember_builder *b = valid_builder();
        CHECK_EQ(ember_builder_kernel_cmdline(b, "a\nb"), -EINVAL);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_CMDLINE);
        /* Longer than a PVH kernel takes (2047 bytes). */
        char big[3000];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        CHECK_EQ(ember_builder_kernel_cmdline(b, big), 0);
        expect_build_error(b, EMBER_ERR_CMDLINE, "command line");
        ember_builder_free(b);
}

static void t_observers_and_null_args(void)
{
        struct ember_builder *b = valid_builder();
        CHECK_EQ(ember_builder_on_exit(b, NULL, NULL), -EINVAL);
        CHECK_EQ(ember_builder_kernel(b, NULL), -EINVAL);
        CHECK_EQ(ember_builder_console_fds(b, -5, 1, 2), -EBADF);
        CHECK_EQ(ember_builder_machine(NULL, 1, 1), -EINVAL);
        CHECK_EQ(ember_builder_build(NULL, NULL), -EINVAL);
        CHECK_EQ(ember_vm_run(NULL), -EINVAL);
        CHECK_EQ(ember_vm_start(NULL), -EINVAL);
        ember_vm_free(NULL);
        ember_builder_free(NULL);
        ember_builder_free(b);
}

static void t_error_names(void)
{
        CHECK_STR(ember_error_name(EMBER_ERR_KERNEL), "EMBER_ERR_KERNEL");
        CHECK_STR(ember_error_name(EMBER_ERR_NO_GUEST_SUPPORT), "EMBER_ERR_NO_GUEST_SUPPORT");
        CHECK_STR(ember_error_name((enum ember_error)999), "EMBER_ERR_UNKNOWN");
        CHECK(ember_version()[0] != 0);
}

static void t_exit_handle_without_vm(void)
{
        struct ember_exit_handle h = {.fd = -1};
        CHECK_EQ(ember_exit_handle_trigger(h), -EBADF);
        ember_exit_handle_release(&h);
        CHECK_EQ(ember_vm_exit_handle(NULL, &h), -EINVAL);
        CHECK(ember_vm_metrics(NULL) == NULL);
        CHECK_EQ(ember_metrics_sample(NULL, NULL), -EINVAL);
}

static void t_disks(void)
{
        char img[] = "/tmp/ember-disk-XXXXXX";
        int fd = mkstemp(img);
        REQUIRE(fd >= 0);
        REQUIRE_EQ(ftruncate(fd, 1000), 0);
        struct ember_builder *b = valid_builder();
        CHECK_EQ(ember_builder_disk_serial(b, "x"), -EINVAL); /* no disk yet */
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_DISK);
        CHECK_EQ(ember_builder_disk(b, NULL, 0), -EINVAL);
        CHECK_EQ(ember_builder_disk(b, img, 0), 0);
        CHECK_EQ(ember_builder_disk_serial(b, "123456789012345678901"), -EINVAL);
        CHECK_EQ(ember_builder_disk_serial(b, "serial-1"), 0);
        expect_build_error(b, EMBER_ERR_DISK, "not a multiple of 512");
        ember_builder_free(b);

        b = valid_builder();
        CHECK_EQ(ember_builder_disk(b, "/nonexistent/disk.img", 1), 0);
        expect_build_error(b, EMBER_ERR_DISK, "/nonexistent/disk.img");
        ember_builder_free(b);

        b = valid_builder();
        for (int i = 0; i < EMBER_MAX_DISKS; i++)
                CHECK_EQ(ember_builder_disk(b, img, 1), 0);
        CHECK_EQ(ember_builder_disk(b, img, 1), -ENOSPC);
        CHECK_EQ(ember_builder_error_code(b), EMBER_ERR_DISK);
        ember_builder_free(b);

        /* A held lock: exclusive for read-write, shared for read-only. */
        REQUIRE_EQ(ftruncate(fd, 1 << 20), 0);
        REQUIRE_EQ(flock(fd, LOCK_SH), 0);
        b = valid_builder();
        CHECK_EQ(ember_builder_disk(b, img, 0), 0);
        expect_build_error(b, EMBER_ERR_DISK, "in use by another process");
        ember_builder_free(b);
        close(fd);

        /* Root disk: its file system is detected (zeros: unknown), and it excludes a root dir. */
        b = valid_builder();
        CHECK_EQ(ember_builder_root_disk(b, img, 1, "ext4;rm"), -EINVAL);
        CHECK_EQ(ember_builder_root_disk(b, img, 1, NULL), 0);
        CHECK_EQ(ember_builder_root_disk(b, img, 1, NULL), -EEXIST);
        expect_build_error(b, EMBER_ERR_DISK, "unknown file system");
        ember_builder_fs_root(b, "/tmp");
        expect_build_error(b, EMBER_ERR_ROOTFS, "both a root directory");
        ember_builder_free(b);
        unlink(img);
}

int main(void)
{
        struct tiny_code c = {0};
        tiny_exit(&c, 0);
        tiny_kernel = tiny_guest_write(&c);
        if (!tiny_kernel) {
                printf("FAIL setup: cannot write a tiny kernel\n");
                return 1;
        }
        T_RUN(t_zero_vcpus);
        T_RUN(t_disks);
        T_RUN(t_memory_bounds);
        T_RUN(t_kernel_missing_or_garbage);
        T_RUN(t_rootfs_missing_or_not_dir);
        T_RUN(t_no_command);
        T_RUN(t_env_validation);
        T_RUN(t_env_file);
        T_RUN(t_user_spec);
        T_RUN(t_workdir_rlimit_hostname);
        T_RUN(t_cmdline_validation);
        T_RUN(t_observers_and_null_args);
        T_RUN(t_error_names);
        T_RUN(t_exit_handle_without_vm);
        unlink(tiny_kernel);
        free(tiny_kernel);
        return T_DONE();
}
