/* ember-init's host-testable helpers (guest/init/util.c), compiled in here. */
#include "test.h"

#include "../../guest/init/util.c"

#include <signal.h>
#include <sys/stat.h>

static char tmpdir[64];

static void make_tmpdir(void)
{
        strcpy(tmpdir, "/tmp/ember-init-test.XXXXXX");
        if (!mkdtemp(tmpdir))
                FAILF("mkdtemp: %s", strerror(errno));
}

static void rm_tmpdir(void)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                printf("# could not remove %s\n", tmpdir);
}

static void write_file(const char *rel, const char *content, mode_t mode)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
        f = fopen(path, "w");
        if (!f)
                FAILF("fopen %s: %s", path, strerror(errno));
        fputs(content, f);
        fclose(f);
        chmod(path, mode);
}

static void make_dir(const char *rel)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
        if (mkdir(path, 0755) != 0)
                FAILF("mkdir %s: %s", path, strerror(errno));
}

static int child_status(void (*fn)(void))
{
        int ws;
        pid_t pid = fork();

        if (pid == 0) {
                fn();
                _exit(99);
        }
        if (pid < 0 || waitpid(pid, &ws, 0) != pid)
                return -1;
        return ws;
}

static void exit7(void)
{
        _exit(7);
}

static void die_by_kill(void)
{
        raise(SIGKILL);
}

static void t_status_from_wait(void)
{
        CHECK_EQ(init_status_from_wait(child_status(exit7)), 7);
        CHECK_EQ(init_status_from_wait(child_status(die_by_kill)), 128 + SIGKILL);
}

static void t_status_from_exec_errno(void)
{
        CHECK_EQ(init_status_from_exec_errno(ENOENT), 127);
        CHECK_EQ(init_status_from_exec_errno(EACCES), 126);
        CHECK_EQ(init_status_from_exec_errno(ENOEXEC), 126);
        CHECK_EQ(init_status_from_exec_errno(E2BIG), 126);
}

static void t_find_port(void)
{
        char dev[64], cls[128];

        make_tmpdir();
        make_dir("vport0p1");
        write_file("vport0p1/name", "ember.stdout\n", 0644);
        make_dir("vport0p2");
        write_file("vport0p2/name", "ember.stdin\n", 0644);
        make_dir("vport0p3"); /* not named yet: no name attribute */
        make_dir("vport0p4");
        write_file("vport0p4/name", "ember.stderrX\n", 0644);
        make_dir("vport1p1");
        write_file("vport1p1/name", "ember.stderr", 0644);
        snprintf(cls, sizeof(cls), "%s", tmpdir);

        CHECK_EQ(init_find_port(cls, "ember.stdin", dev, sizeof(dev)), 0);
        CHECK_STR(dev, "vport0p2");
        CHECK_EQ(init_find_port(cls, "ember.stdout", dev, sizeof(dev)), 0);
        CHECK_STR(dev, "vport0p1");
        CHECK_EQ(init_find_port(cls, "ember.stderr", dev, sizeof(dev)), 0);
        CHECK_STR(dev, "vport1p1");
        CHECK_EQ(init_find_port(cls, "ember.other", dev, sizeof(dev)), -ENOENT);
        CHECK_EQ(init_find_port(cls, "ember.stdin", dev, 4), -ENOENT); /* does not fit */
        CHECK_EQ(init_find_port("/nonexistent/ember", "ember.stdin", dev, sizeof(dev)), -ENOENT);
        rm_tmpdir();
}

static void t_passwd_lookup(void)
{
        char path[128], home[64], longline[2100];
        uint32_t gid = 0;

        make_tmpdir();
        memset(longline, 'a', sizeof(longline) - 2);
        longline[sizeof(longline) - 2] = '\n';
        longline[sizeof(longline) - 1] = '\0';
        {
                char content[4096];
                snprintf(content, sizeof(content),
                         "root:x:0:0:root:/root:/bin/sh\n"
                         "broken line\n"
                         "short:x:5\n"
                         "%s"
                         "bad:x:12x:1:b:/bad:/bin/sh\n"
                         "app:x:1000:1001:App User:/home/app:/bin/sh\n"
                         "nohome:x:1002:1002::",
                         longline);
                write_file("passwd", content, 0644);
        }
        snprintf(path, sizeof(path), "%s/passwd", tmpdir);
        CHECK_EQ(init_passwd_lookup(path, 0, home, sizeof(home), &gid), 0);
        CHECK_STR(home, "/root");
        CHECK_EQ(gid, 0);
        CHECK_EQ(init_passwd_lookup(path, 1000, home, sizeof(home), &gid), 0);
        CHECK_STR(home, "/home/app");
        CHECK_EQ(gid, 1001);
        CHECK_EQ(init_passwd_lookup(path, 12, home, sizeof(home), &gid), -ENOENT);
        CHECK_EQ(init_passwd_lookup(path, 5, home, sizeof(home), &gid), -ENOENT);
        CHECK_EQ(init_passwd_lookup(path, 4242, home, sizeof(home), &gid), -ENOENT);
        CHECK_EQ(init_passwd_lookup(path, 1000, home, 4, &gid), -ENOENT); /* does not fit */
        /* Last line without newline, empty home: found, home "". */
        CHECK_EQ(init_passwd_lookup(path, 1002, home, sizeof(home), &gid), 0);
        CHECK_STR(home, "");
        CHECK_EQ(init_passwd_lookup("/nonexistent/passwd", 0, home, sizeof(home), &gid), -ENOENT);
        rm_tmpdir();
}

static void t_user_and_group_by_name(void)
{
        char passwd[128], group[128], home[64];
        uint32_t uid = 0, gid = 0, gids[8];
        int n;

        make_tmpdir();
        write_file("passwd",
                   "root:x:0:0:root:/root:/bin/sh\n"
                   "broken\n"
                   "bad:x:12x:1:b:/bad:/bin/sh\n"
                   "alice:x:1000:1001:Alice:/home/alice:/bin/sh\n"
                   "alice:x:2000:2000:second entry:/other:/bin/sh\n"
                   "bob:x:1002:1002::/home/bob",
                   0644);
        write_file("group",
                   "root:x:0:\n"
                   "staff:x:50:bob,alice\n"
                   "wheel:x:10:alice\n"
                   "bad:x:nope:alice\n"
                   "alicegroup:x:1001:\n"
                   "again:x:50:alice\n"
                   "other:x:60:alicex,xalice\n"
                   "nomembers:x:70",
                   0644);
        snprintf(passwd, sizeof(passwd), "%s/passwd", tmpdir);
        snprintf(group, sizeof(group), "%s/group", tmpdir);

        CHECK_EQ(init_passwd_lookup_name(passwd, "alice", &uid, &gid, home, sizeof(home)), 0);
        CHECK_EQ(uid, 1000); /* the first entry of a name wins */
        CHECK_EQ(gid, 1001);
        CHECK_STR(home, "/home/alice");
        CHECK_EQ(init_passwd_lookup_name(passwd, "bob", &uid, &gid, home, sizeof(home)), 0);
        CHECK_EQ(uid, 1002);
        CHECK_EQ(init_passwd_lookup_name(passwd, "bad", &uid, &gid, home, sizeof(home)), -ENOENT);
        CHECK_EQ(init_passwd_lookup_name(passwd, "ali", &uid, &gid, home, sizeof(home)), -ENOENT);
        CHECK_EQ(init_passwd_lookup_name(passwd, "1000", &uid, &gid, home, sizeof(home)), -ENOENT);
        CHECK_EQ(
            init_passwd_lookup_name("/nonexistent/passwd", "root", &uid, &gid, home, sizeof(home)),
            -ENOENT);

        CHECK_EQ(init_group_lookup_name(group, "wheel", &gid), 0);
        CHECK_EQ(gid, 10);
        CHECK_EQ(init_group_lookup_name(group, "nomembers", &gid), 0);
        CHECK_EQ(gid, 70);
        CHECK_EQ(init_group_lookup_name(group, "bad", &gid), -ENOENT);
        CHECK_EQ(init_group_lookup_name(group, "nosuch", &gid), -ENOENT);

        /* Listed in staff, wheel and again (same gid as staff: once); not in "other". */
        n = init_group_members(group, "alice", gids, 8);
        REQUIRE_EQ(n, 2);
        CHECK_EQ(gids[0], 50);
        CHECK_EQ(gids[1], 10);
        CHECK_EQ(init_group_members(group, "alice", gids, 1), 1);
        CHECK_EQ(init_group_members(group, "bob", gids, 8), 1);
        CHECK_EQ(init_group_members(group, "nobody", gids, 8), 0);
        CHECK_EQ(init_group_members("/nonexistent/group", "alice", gids, 8), -ENOENT);
        rm_tmpdir();
}

static void t_env_get(void)
{
        char *env[] = {"PATHX=1", "PATH=/bin", "EMPTY=", "A=b=c", NULL};

        CHECK_STR(init_env_get(env, "PATH"), "/bin");
        CHECK_STR(init_env_get(env, "EMPTY"), "");
        CHECK_STR(init_env_get(env, "A"), "b=c");
        CHECK(init_env_get(env, "PAT") == NULL);
        CHECK(init_env_get(env, "HOME") == NULL);
        CHECK(init_env_get(NULL, "PATH") == NULL);
}

/* init_exec() cases run in a child: success replaces it. The child exits with 200 + errno
 * returned (interp_missing adds 50), or with the exec'd program's status. */
static const char *exec_file;
static char *exec_env[4];

static void exec_child(void)
{
        char *argv[] = {(char *)exec_file, NULL};
        bool interp = false;
        int err;

        if (chdir(tmpdir) != 0)
                _exit(98);
        err = init_exec(exec_file, argv, exec_env, &interp);
        _exit(err == ENOENT    ? (interp ? 160 : 110)
              : err == EACCES  ? 113
              : err == ENOEXEC ? 108
                               : 97);
}

static int run_exec(const char *file, const char *path_var)
{
        static char pathbuf[512];
        int ws;

        exec_file = file;
        snprintf(pathbuf, sizeof(pathbuf), "%s", path_var ? path_var : "");
        exec_env[0] = path_var ? pathbuf : NULL;
        exec_env[1] = NULL;
        ws = child_status(exec_child);
        return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

static void t_exec(void)
{
        char path_var[256];

        make_tmpdir();
        make_dir("bin");
        make_dir("notexec");
        write_file("bin/five", "#!/bin/sh\nexit 5\n", 0755);
        write_file("notexec/five", "#!/bin/sh\nexit 6\n", 0644);
        write_file("notexec/garbage", "\x01\x02\x03 not a program\n", 0755);
        write_file("here", "#!/bin/sh\nexit 9\n", 0755);

        snprintf(path_var, sizeof(path_var), "PATH=%s/notexec:%s/bin", tmpdir, tmpdir);
        /* A non-executable candidate is skipped; the later one runs. */
        CHECK_EQ(run_exec("five", path_var), 5);
        snprintf(path_var, sizeof(path_var), "PATH=/nonexistent:%s/notexec", tmpdir);
        CHECK_EQ(run_exec("five", path_var), 113);
        CHECK_EQ(run_exec("nosuch", path_var), 110);
        CHECK_EQ(run_exec("garbage", path_var), 108);
        /* An empty PATH element is the current directory. */
        CHECK_EQ(run_exec("here", "PATH=/nonexistent:"), 9);
        CHECK_EQ(run_exec("here", "PATH=/nonexistent"), 110);
        /* With a '/', no search. */
        CHECK_EQ(run_exec("./here", "PATH=/nonexistent"), 9);
        CHECK_EQ(run_exec("/nonexistent/x", NULL), 110);
        /* No PATH in the environment: the default one finds sh. */
        CHECK_EQ(run_exec("true", NULL), 0);
        CHECK_EQ(run_exec("", NULL), 110);
        rm_tmpdir();
}

int main(void)
{
        T_RUN(t_status_from_wait);
        T_RUN(t_status_from_exec_errno);
        T_RUN(t_find_port);
        T_RUN(t_passwd_lookup);
        T_RUN(t_user_and_group_by_name);
        T_RUN(t_env_get);
        T_RUN(t_exec);
        return T_DONE();
}
