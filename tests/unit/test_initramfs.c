/* cpio newc writer: read back with a minimal parser written here and with the system
 * `cpio -idm`; host trees with a 1 MiB file, symlinks, empty dirs, modes and mtimes. */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/initramfs.h"

struct parsed {
        char name[4096];
        uint32_t ino, mode, uid, gid, nlink, mtime, size, rmaj, rmin;
        const uint8_t *data;
};

static uint32_t hex8(const uint8_t *p)
{
        char b[9];
        memcpy(b, p, 8);
        b[8] = '\0';
        return (uint32_t)strtoul(b, NULL, 16);
}

/* Parses the archive the way the kernel does; returns the entry count (trailer excluded), or -1
 * on any format error (bad magic, misalignment, overrun, missing trailer). */
static int parse_cpio(const uint8_t *buf, size_t len, struct parsed *out, int max)
{
        size_t off = 0;
        int n = 0;
        for (;;) {
                if (off % 4 != 0 || len - off < 110 || memcmp(buf + off, "070701", 6) != 0)
                        return -1;
                const uint8_t *h = buf + off + 6;
                struct parsed e = {0};
                e.ino = hex8(h);
                e.mode = hex8(h + 8);
                e.uid = hex8(h + 16);
                e.gid = hex8(h + 24);
                e.nlink = hex8(h + 32);
                e.mtime = hex8(h + 40);
                e.size = hex8(h + 48);
                e.rmaj = hex8(h + 72);
                e.rmin = hex8(h + 80);
                uint32_t namesize = hex8(h + 88);
                if (hex8(h + 96) != 0)
                        return -1;
                if (namesize == 0 || namesize > sizeof(e.name) || len - off - 110 < namesize)
                        return -1;
                const uint8_t *name = buf + off + 110;
                if (name[namesize - 1] != '\0')
                        return -1;
                memcpy(e.name, name, namesize);
                size_t data_off = (off + 110 + namesize + 3) & ~(size_t)3;
                for (size_t i = off + 110 + namesize; i < data_off; i++)
                        if (i >= len || buf[i] != 0)
                                return -1;
                if (data_off > len || len - data_off < e.size)
                        return -1;
                e.data = buf + data_off;
                off = (data_off + e.size + 3) & ~(size_t)3;
                if (off > len)
                        return -1;
                if (strcmp(e.name, "TRAILER!!!") == 0)
                        return off == len ? n : -1;
                if (n < max)
                        out[n] = e;
                n++;
        }
}

static const struct parsed *find(const struct parsed *e, int n, const char *name)
{
        for (int i = 0; i < n; i++)
                if (strcmp(e[i].name, name) == 0)
                        return &e[i];
        return NULL;
}

static char *make_tmpdir(void)
{
        char tmpl[] = "/tmp/ember-test-initramfs-XXXXXX";
        char *d = mkdtemp(tmpl);
        return d ? strdup(d) : NULL;
}

static int run(const char *cmd)
{
        int st = system(cmd);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void rm_rf(const char *dir)
{
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
        (void)run(cmd);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(write(fd, data, len) == (ssize_t)len);
        close(fd);
        REQUIRE(chmod(path, mode) == 0);
}

static void set_mtime(const char *path, time_t t)
{
        struct timeval tv[2] = {{t, 0}, {t, 0}};
        REQUIRE(lutimes(path, tv) == 0);
}

static int extract_with_cpio(const struct initramfs *ir, const char *dir)
{
        char archive[4200], cmd[9000];
        snprintf(archive, sizeof(archive), "%s.cpio", dir);
        int fd = open(archive, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 ||
            write(fd, initramfs_data(ir), initramfs_len(ir)) != (ssize_t)initramfs_len(ir))
                return -1;
        close(fd);
        if (mkdir(dir, 0755) != 0)
                return -1;
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && cpio -idm --quiet --no-absolute-filenames < '%s' 2>/dev/null", dir,
                 archive);
        int r = run(cmd);
        unlink(archive);
        return r;
}

static void t_entries_parse_back(void)
{
        struct initramfs ir;
        initramfs_init(&ir);
        CHECK_EQ(initramfs_add_dir(&ir, ".ember", 0700), 0);
        CHECK_EQ(initramfs_add_file(&ir, ".ember/init",
                                    "\x7f"
                                    "ELFxyz",
                                    7, 0755),
                 0);
        CHECK_EQ(initramfs_add_file(&ir, ".ember/empty", NULL, 0, 0400), 0);
        CHECK_EQ(initramfs_add_symlink(&ir, "init", ".ember/init"), 0);
        struct initramfs_attr a = {.mode = 0620, .uid = 0, .gid = 5, .mtime = 1234567890};
        CHECK_EQ(initramfs_add_dir(&ir, "dev", 0755), 0);
        CHECK_EQ(initramfs_add_node(&ir, "dev/console", 0, 5, 1, &a), 0);
        struct initramfs_attr fa = {.mode = 04711, .uid = 1000, .gid = 100, .mtime = 42};
        CHECK_EQ(initramfs_add_file_attr(&ir, "suid", "abc", 3, &fa), 0);
        CHECK_EQ(initramfs_finish(&ir), 0);
        CHECK_EQ(initramfs_len(&ir) % 4, 0);

        struct parsed e[16];
        int n = parse_cpio(initramfs_data(&ir), initramfs_len(&ir), e, 16);
        REQUIRE_EQ(n, 7);
        CHECK_STR(e[0].name, ".ember");
        CHECK_EQ(e[0].mode, S_IFDIR | 0700);
        CHECK_EQ(e[0].nlink, 2);
        CHECK_STR(e[1].name, ".ember/init");
        CHECK_EQ(e[1].mode, S_IFREG | 0755);
        CHECK_EQ(e[1].size, 7);
        CHECK(memcmp(e[1].data,
                     "\x7f"
                     "ELFxyz",
                     7) == 0);
        CHECK_EQ(e[1].nlink, 1);
        CHECK_EQ(e[2].size, 0);
        CHECK_EQ(e[2].mode, S_IFREG | 0400);
        CHECK_EQ(e[3].mode, S_IFLNK | 0777);
        CHECK_EQ(e[3].size, strlen(".ember/init"));
        CHECK(memcmp(e[3].data, ".ember/init", e[3].size) == 0);
        CHECK_EQ(e[5].mode, S_IFCHR | 0620);
        CHECK_EQ(e[5].rmaj, 5);
        CHECK_EQ(e[5].rmin, 1);
        CHECK_EQ(e[5].gid, 5);
        CHECK_EQ(e[5].mtime, 1234567890);
        CHECK_EQ(e[6].mode, S_IFREG | 04711);
        CHECK_EQ(e[6].uid, 1000);
        CHECK_EQ(e[6].gid, 100);
        CHECK_EQ(e[6].mtime, 42);
        /* Distinct inode numbers: the kernel would hard-link entries sharing one with nlink > 1. */
        for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++)
                        CHECK(e[i].ino != e[j].ino);
        /* finished: nothing more */
        CHECK_EQ(initramfs_add_dir(&ir, "late", 0755), -EINVAL);
        initramfs_free(&ir);
}

static void t_name_and_data_alignment(void)
{
        /* Every name length mod 4 and data length mod 4 combination. */
        struct initramfs ir;
        initramfs_init(&ir);
        const char *names[] = {"a", "ab", "abc", "abcd", "abcde"};
        char path[32];
        int count = 0;
        for (int i = 0; i < 5; i++)
                for (int len = 0; len < 5; len++) {
                        snprintf(path, sizeof(path), "%s%d", names[i], len);
                        CHECK_EQ(initramfs_add_file(&ir, path, "12345", (size_t)len, 0644), 0);
                        count++;
                }
        CHECK_EQ(initramfs_finish(&ir), 0);
        struct parsed e[32];
        int n = parse_cpio(initramfs_data(&ir), initramfs_len(&ir), e, 32);
        CHECK_EQ(n, count);
        for (int i = 0; i < n && i < 32; i++)
                CHECK(memcmp(e[i].data, "12345", e[i].size) == 0);
        initramfs_free(&ir);
}

static void t_bad_paths(void)
{
        const char *bad[] = {"",  "/etc", "..",  "a/../b", "a//b",       "a/",
                             ".", "./a",  "a/.", "a/..",   "TRAILER!!!", "x/./y"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct initramfs ir;
                initramfs_init(&ir);
                int r = initramfs_add_file(&ir, bad[i], "x", 1, 0644);
                if (r != -EINVAL)
                        FAILF("path \"%s\" accepted (%d)", bad[i], r);
                CHECK(strstr(initramfs_errmsg(&ir), "initramfs path") != NULL);
                /* sticky */
                CHECK_EQ(initramfs_add_dir(&ir, "ok", 0755), -EINVAL);
                CHECK_EQ(initramfs_finish(&ir), -EINVAL);
                initramfs_free(&ir);
        }
        struct initramfs ir;
        initramfs_init(&ir);
        CHECK_EQ(initramfs_add_file(&ir, "dir/TRAILER!!!", "x", 1, 0644),
                 0); /* only the root one ends */
        CHECK_EQ(initramfs_add_file(&ir, "...", "x", 1, 0644), 0);
        CHECK_EQ(initramfs_add_symlink(&ir, "l", ""), -EINVAL);
        initramfs_free(&ir);

        char *longp = malloc(5000);
        REQUIRE(longp != NULL);
        memset(longp, 'a', 4999);
        longp[4999] = '\0';
        initramfs_init(&ir);
        CHECK_EQ(initramfs_add_dir(&ir, longp, 0755), -EINVAL);
        initramfs_free(&ir);
        free(longp);
}

static void t_mtime_clamped(void)
{
        struct initramfs ir;
        initramfs_init(&ir);
        struct initramfs_attr neg = {.mode = 0644, .mtime = -5},
                              big = {.mode = 0644, .mtime = 1ll << 40};
        CHECK_EQ(initramfs_add_file_attr(&ir, "neg", "", 0, &neg), 0);
        CHECK_EQ(initramfs_add_file_attr(&ir, "big", "", 0, &big), 0);
        CHECK_EQ(initramfs_finish(&ir), 0);
        struct parsed e[4];
        REQUIRE_EQ(parse_cpio(initramfs_data(&ir), initramfs_len(&ir), e, 4), 2);
        CHECK_EQ(e[0].mtime, 0);
        CHECK_EQ(e[1].mtime, 0xffffffffu);
        initramfs_free(&ir);
}

static void t_raw_archive_padded(void)
{
        struct initramfs ir;
        initramfs_init(&ir);
        CHECK_EQ(initramfs_add_raw(&ir, "\x1f\x8b\x08\x00\x01", 5), 0);
        CHECK_EQ(initramfs_len(&ir), 8);
        CHECK(memcmp(initramfs_data(&ir), "\x1f\x8b\x08\x00\x01\0\0\0", 8) == 0);
        CHECK_EQ(initramfs_add_dir(&ir, "x", 0755), 0);
        CHECK(memcmp(initramfs_data(&ir) + 8, "070701", 6) == 0);
        CHECK_EQ(initramfs_finish(&ir), 0);
        CHECK_EQ(initramfs_add_raw(&ir, "abc", 3), -EINVAL);
        initramfs_free(&ir);

        /* Two archives back to back both parse (the kernel handles the second after zero pad). */
        struct initramfs a, b;
        initramfs_init(&a);
        initramfs_add_file(&a, "first", "1", 1, 0644);
        initramfs_finish(&a);
        initramfs_init(&b);
        CHECK_EQ(initramfs_add_raw(&b, initramfs_data(&a), initramfs_len(&a)), 0);
        initramfs_add_file(&b, "second", "22", 2, 0644);
        CHECK_EQ(initramfs_finish(&b), 0);
        struct parsed e[4];
        CHECK_EQ(parse_cpio(initramfs_data(&b), initramfs_len(&a), e, 4), 1);
        CHECK_EQ(parse_cpio(initramfs_data(&b) + initramfs_len(&a),
                            initramfs_len(&b) - initramfs_len(&a), e, 4),
                 1);
        CHECK_STR(e[0].name, "second");
        initramfs_free(&a);
        initramfs_free(&b);
}

static void t_system_cpio_extracts_entries(void)
{
        if (run("command -v cpio >/dev/null 2>&1") != 0)
                SKIP("cpio not installed");
        char *tmp = make_tmpdir();
        REQUIRE(tmp != NULL);
        struct initramfs ir;
        initramfs_init(&ir);
        struct initramfs_attr da = {.mode = 0750, .mtime = 1000000};
        struct initramfs_attr fa = {.mode = 0755, .mtime = 2000000};
        CHECK_EQ(initramfs_add_dir_attr(&ir, "bin", &da), 0);
        CHECK_EQ(initramfs_add_file_attr(&ir, "bin/tool", "#!/bin/sh\necho hi\n", 18, &fa), 0);
        CHECK_EQ(initramfs_add_symlink(&ir, "bin/alias", "tool"), 0);
        CHECK_EQ(initramfs_add_dir(&ir, "empty", 0700), 0);
        CHECK_EQ(initramfs_finish(&ir), 0);
        char out[4200];
        snprintf(out, sizeof(out), "%s/out", tmp);
        REQUIRE_EQ(extract_with_cpio(&ir, out), 0);

        char p[4300], buf[64] = {0};
        struct stat st;
        snprintf(p, sizeof(p), "%s/bin/tool", out);
        REQUIRE_EQ(stat(p, &st), 0);
        CHECK_EQ(st.st_mode & 07777, 0755);
        CHECK_EQ(st.st_mtime, 2000000);
        int fd = open(p, O_RDONLY);
        REQUIRE(fd >= 0);
        CHECK_EQ(read(fd, buf, sizeof(buf)), 18);
        close(fd);
        CHECK_STR(buf, "#!/bin/sh\necho hi\n");
        snprintf(p, sizeof(p), "%s/bin/alias", out);
        ssize_t n = readlink(p, buf, sizeof(buf) - 1);
        REQUIRE(n > 0);
        buf[n] = '\0';
        CHECK_STR(buf, "tool");
        snprintf(p, sizeof(p), "%s/empty", out);
        REQUIRE_EQ(lstat(p, &st), 0);
        CHECK(S_ISDIR(st.st_mode));
        CHECK_EQ(st.st_mode & 07777, 0700);
        snprintf(p, sizeof(p), "%s/bin", out);
        REQUIRE_EQ(lstat(p, &st), 0);
        CHECK_EQ(st.st_mode & 07777, 0750);
        initramfs_free(&ir);
        rm_rf(tmp);
        free(tmp);
}

/* A host tree: 1 MiB file, 0755 file, symlinks (to a file, dangling, to a dir), empty dir,
 * nested dirs, a hard link, a fifo (skipped). */
static void build_tree(const char *root)
{
        char p[4300];
        uint8_t *big = malloc(1 << 20);
        REQUIRE(big != NULL);
        for (size_t i = 0; i < (1u << 20); i++)
                big[i] = (uint8_t)(i * 2654435761u >> 13);
        snprintf(p, sizeof(p), "%s/big.bin", root);
        write_file(p, big, 1 << 20, 0644);
        free(big);
        snprintf(p, sizeof(p), "%s/run.sh", root);
        write_file(p, "#!/bin/sh\n", 10, 0755);
        snprintf(p, sizeof(p), "%s/etc", root);
        REQUIRE(mkdir(p, 0755) == 0);
        snprintf(p, sizeof(p), "%s/etc/hostname", root);
        write_file(p, "guest\n", 6, 0640);
        snprintf(p, sizeof(p), "%s/etc/deep", root);
        REQUIRE(mkdir(p, 0700) == 0);
        snprintf(p, sizeof(p), "%s/etc/deep/er", root);
        REQUIRE(mkdir(p, 0711) == 0);
        snprintf(p, sizeof(p), "%s/etc/deep/er/file", root);
        write_file(p, "x", 1, 0600);
        snprintf(p, sizeof(p), "%s/empty", root);
        REQUIRE(mkdir(p, 0755) == 0);
        snprintf(p, sizeof(p), "%s/link", root);
        REQUIRE(symlink("run.sh", p) == 0);
        snprintf(p, sizeof(p), "%s/dangling", root);
        REQUIRE(symlink("/nonexistent/target", p) == 0);
        snprintf(p, sizeof(p), "%s/etclink", root);
        REQUIRE(symlink("etc", p) == 0);
        char q[4300];
        snprintf(p, sizeof(p), "%s/etc/hostname", root);
        snprintf(q, sizeof(q), "%s/hardlink", root);
        REQUIRE(link(p, q) == 0);
        snprintf(p, sizeof(p), "%s/fifo", root);
        REQUIRE(mkfifo(p, 0644) == 0);
        /* mtimes last: creating entries touches their directories */
        snprintf(p, sizeof(p), "%s/run.sh", root);
        set_mtime(p, 1500000000);
        snprintf(p, sizeof(p), "%s/link", root);
        set_mtime(p, 1400000000);
        snprintf(p, sizeof(p), "%s/etc/deep/er", root);
        set_mtime(p, 1300000000);
        snprintf(p, sizeof(p), "%s/etc", root);
        set_mtime(p, 1200000000);
}

static void t_tree_parses_back(void)
{
        char *tmp = make_tmpdir();
        REQUIRE(tmp != NULL);
        char root[4200];
        snprintf(root, sizeof(root), "%s/root", tmp);
        REQUIRE(mkdir(root, 0755) == 0);
        build_tree(root);

        struct initramfs ir;
        initramfs_init(&ir);
        char err[512] = "";
        int r = initramfs_add_tree(&ir, root, err, sizeof(err));
        if (r)
                FAILF("add_tree: %d %s", r, err);
        CHECK_EQ(ir.skipped, 1); /* the fifo */
        CHECK_EQ(initramfs_finish(&ir), 0);

        static struct parsed e[64];
        int n = parse_cpio(initramfs_data(&ir), initramfs_len(&ir), e, 64);
        REQUIRE_EQ(n, 12);
        /* sorted, parents before children */
        const char *order[] = {
            "big.bin",          "dangling",     "empty",   "etc",      "etc/deep", "etc/deep/er",
            "etc/deep/er/file", "etc/hostname", "etclink", "hardlink", "link",     "run.sh"};
        for (int i = 0; i < 12; i++)
                CHECK_STR(e[i].name, order[i]);
        const struct parsed *x = find(e, n, "big.bin");
        REQUIRE(x != NULL);
        CHECK_EQ(x->size, 1u << 20);
        for (size_t i = 0; i < (1u << 20); i += 4099)
                CHECK_EQ(x->data[i], (uint8_t)(i * 2654435761u >> 13));
        x = find(e, n, "run.sh");
        REQUIRE(x != NULL);
        CHECK_EQ(x->mode, S_IFREG | 0755);
        CHECK_EQ(x->mtime, 1500000000);
        CHECK_EQ(x->uid, geteuid());
        x = find(e, n, "etc/deep");
        REQUIRE(x != NULL);
        CHECK_EQ(x->mode, S_IFDIR | 0700);
        x = find(e, n, "etc/deep/er");
        REQUIRE(x != NULL);
        CHECK_EQ(x->mode, S_IFDIR | 0711);
        CHECK_EQ(x->mtime, 1300000000);
        x = find(e, n, "link");
        REQUIRE(x != NULL);
        CHECK_EQ(x->mode & S_IFMT, S_IFLNK);
        CHECK_EQ(x->size, 6);
        CHECK(memcmp(x->data, "run.sh", 6) == 0);
        CHECK_EQ(x->mtime, 1400000000);
        x = find(e, n, "dangling");
        REQUIRE(x != NULL);
        CHECK(memcmp(x->data, "/nonexistent/target", 19) == 0);
        x = find(e, n, "etclink");
        REQUIRE(x != NULL);
        CHECK_EQ(x->mode & S_IFMT, S_IFLNK); /* not followed */
        x = find(e, n, "hardlink");
        REQUIRE(x != NULL);
        CHECK_EQ(x->mode, S_IFREG | 0640);
        CHECK_EQ(x->nlink, 1); /* a separate file, not a kernel hard link */
        CHECK(memcmp(x->data, "guest\n", 6) == 0);
        CHECK(find(e, n, "fifo") == NULL);
        x = find(e, n, "empty");
        REQUIRE(x != NULL);
        CHECK_EQ(x->mode, S_IFDIR | 0755);

        /* Same tree twice: identical bytes (sorted names, inode numbers from the writer). */
        struct initramfs ir2;
        initramfs_init(&ir2);
        CHECK_EQ(initramfs_add_tree(&ir2, root, err, sizeof(err)), 0);
        CHECK_EQ(initramfs_finish(&ir2), 0);
        CHECK_EQ(initramfs_len(&ir2), initramfs_len(&ir));
        CHECK(memcmp(initramfs_data(&ir2), initramfs_data(&ir), initramfs_len(&ir)) == 0);
        initramfs_free(&ir2);
        initramfs_free(&ir);
        rm_rf(tmp);
        free(tmp);
}

static void t_tree_extracts_identically(void)
{
        if (run("command -v cpio >/dev/null 2>&1") != 0)
                SKIP("cpio not installed");
        char *tmp = make_tmpdir();
        REQUIRE(tmp != NULL);
        char root[512], out[512], cmd[4096];
        snprintf(root, sizeof(root), "%s/root", tmp);
        snprintf(out, sizeof(out), "%s/out", tmp);
        REQUIRE(mkdir(root, 0755) == 0);
        build_tree(root);
        struct initramfs ir;
        initramfs_init(&ir);
        char err[512] = "";
        CHECK_EQ(initramfs_add_tree(&ir, root, err, sizeof(err)), 0);
        CHECK_EQ(initramfs_finish(&ir), 0);
        REQUIRE_EQ(extract_with_cpio(&ir, out), 0);
        /* Same names, types, contents and link targets (fifo aside). */
        snprintf(cmd, sizeof(cmd),
                 "rm -f '%s/fifo' && diff -r --no-dereference '%s' '%s' >/dev/null", root, root,
                 out);
        CHECK_EQ(run(cmd), 0);
        /* Same modes and mtimes (whole seconds: newc has no more) for files; same modes for dirs
         * (GNU cpio sets a dir's mtime before filling it, and none on symlinks). */
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && { find . -type f -exec stat -c '%%n %%a %%Y' {} +; "
                 "find . -type d -exec stat -c '%%n %%a' {} +; } | sort > ../a.txt && "
                 "cd '%s' && { find . -type f -exec stat -c '%%n %%a %%Y' {} +; "
                 "find . -type d -exec stat -c '%%n %%a' {} +; } | sort > ../b.txt && "
                 "cmp -s ../a.txt ../b.txt",
                 root, out);
        CHECK_EQ(run(cmd), 0);
        initramfs_free(&ir);
        rm_rf(tmp);
        free(tmp);
}

static void t_tree_prefix_and_owner(void)
{
        char *tmp = make_tmpdir();
        REQUIRE(tmp != NULL);
        char p[4300];
        snprintf(p, sizeof(p), "%s/f", tmp);
        write_file(p, "data", 4, 0604);
        struct initramfs ir;
        initramfs_init(&ir);
        struct initramfs_owner root = {0, 0};
        CHECK_EQ(initramfs_add_dir(&ir, "opt", 0755), 0);
        char err[256];
        CHECK_EQ(initramfs_add_tree_at(&ir, tmp, "opt/app", &root, err, sizeof(err)), 0);
        struct initramfs_owner other = {123, 456};
        CHECK_EQ(initramfs_add_tree_at(&ir, tmp, "srv", &other, err, sizeof(err)), 0);
        CHECK_EQ(initramfs_finish(&ir), 0);
        struct parsed e[8];
        int n = parse_cpio(initramfs_data(&ir), initramfs_len(&ir), e, 8);
        REQUIRE_EQ(n, 5);
        CHECK_STR(e[1].name, "opt/app");
        CHECK_EQ(e[1].mode & S_IFMT, S_IFDIR);
        CHECK_EQ(e[1].mode & 07777, 0700); /* mkdtemp's mode */
        CHECK_STR(e[2].name, "opt/app/f");
        CHECK_EQ(e[2].mode, S_IFREG | 0604);
        CHECK_EQ(e[2].uid, 0);
        CHECK_STR(e[4].name, "srv/f");
        CHECK_EQ(e[4].uid, 123);
        CHECK_EQ(e[4].gid, 456);
        initramfs_free(&ir);
        rm_rf(tmp);
        free(tmp);
}

static void t_tree_errors_name_the_path(void)
{
        struct initramfs ir;
        initramfs_init(&ir);
        char err[512] = "";
        CHECK_EQ(initramfs_add_tree(&ir, "/nonexistent/ember/rootfs", err, sizeof(err)), -ENOENT);
        CHECK(strstr(err, "/nonexistent/ember/rootfs") != NULL);
        CHECK(strstr(err, "No such file") != NULL);
        initramfs_free(&ir);

        /* A file, not a directory. */
        initramfs_init(&ir);
        CHECK_EQ(initramfs_add_tree(&ir, "/etc/hostname", err, sizeof(err)), -ENOTDIR);
        CHECK(strstr(err, "/etc/hostname") != NULL);
        initramfs_free(&ir);

        /* Unreadable file. Root reads anything, so as root the check runs in a child that drops
         * to nobody. */
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
                if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
                        _exit(3);
                char *tmp = make_tmpdir();
                if (!tmp)
                        _exit(4);
                char p[4300];
                snprintf(p, sizeof(p), "%s/secret", tmp);
                int fd = open(p, O_WRONLY | O_CREAT, 0000);
                if (fd < 0)
                        _exit(5);
                close(fd);
                initramfs_init(&ir);
                int r = initramfs_add_tree(&ir, tmp, err, sizeof(err));
                int ok = r == -EACCES && strstr(err, p) && strstr(err, "Permission denied");
                unlink(p);
                rmdir(tmp);
                _exit(ok ? 0 : 1);
        }
        int status;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        if (WEXITSTATUS(status) == 3)
                SKIP("cannot drop privileges to check permission errors");
        CHECK_EQ(WEXITSTATUS(status), 0);
}

static void t_big_archive_growth(void)
{
        struct initramfs ir;
        initramfs_init(&ir);
        static uint8_t chunk[100000];
        memset(chunk, 0xab, sizeof(chunk));
        char name[32];
        for (int i = 0; i < 100; i++) {
                snprintf(name, sizeof(name), "f%03d", i);
                REQUIRE_EQ(initramfs_add_file(&ir, name, chunk, sizeof(chunk) - (size_t)i, 0644),
                           0);
        }
        CHECK_EQ(initramfs_finish(&ir), 0);
        static struct parsed e[128];
        CHECK_EQ(parse_cpio(initramfs_data(&ir), initramfs_len(&ir), e, 128), 100);
        CHECK_EQ(e[99].size, 100000 - 99);
        CHECK_EQ(e[99].data[e[99].size - 1], 0xab);
        initramfs_free(&ir);
}

int main(void)
{
        T_RUN(t_entries_parse_back);
        T_RUN(t_name_and_data_alignment);
        T_RUN(t_bad_paths);
        T_RUN(t_mtime_clamped);
        T_RUN(t_raw_archive_padded);
        T_RUN(t_system_cpio_extracts_entries);
        T_RUN(t_tree_parses_back);
        T_RUN(t_tree_extracts_identically);
        T_RUN(t_tree_prefix_and_owner);
        T_RUN(t_tree_errors_name_the_path);
        T_RUN(t_big_archive_growth);
        return T_DONE();
}
