#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int init_status_from_wait(int wstatus)
{
        if (WIFEXITED(wstatus))
                return WEXITSTATUS(wstatus);
        if (WIFSIGNALED(wstatus))
                return 128 + WTERMSIG(wstatus);
        return 255;
}

int init_status_from_exec_errno(int err)
{
        return err == ENOENT ? 127 : 126;
}

/* Reads a small sysfs attribute without its trailing newline. Returns its length or -1. */
static ssize_t init_read_attr(int dirfd, const char *path, char *buf, size_t len)
{
        ssize_t n;
        int fd;

        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, len - 1);
        close(fd);
        if (n < 0)
                return -1;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0'))
                n--;
        buf[n] = '\0';
        return n;
}

int init_find_port(const char *class_dir, const char *name, char *dev, size_t devlen)
{
        struct dirent *de;
        char path[NAME_MAX + 16], val[128];
        int ret = -ENOENT;
        DIR *d;

        d = opendir(class_dir);
        if (!d)
                return -ENOENT;
        while ((de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.')
                        continue;
                /* The name attribute only exists once the host has named the port. */
                snprintf(path, sizeof(path), "%s/name", de->d_name);
                if (init_read_attr(dirfd(d), path, val, sizeof(val)) < 0 || strcmp(val, name) != 0)
                        continue;
                if (strlen(de->d_name) >= devlen)
                        continue;
                strcpy(dev, de->d_name);
                ret = 0;
                break;
        }
        closedir(d);
        return ret;
}

int init_passwd_lookup(const char *passwd_path, uint32_t uid, char *home, size_t homelen,
                       uint32_t *gid)
{
        char line[1024];
        int ret = -ENOENT;
        FILE *f;

        f = fopen(passwd_path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                /* name:password:uid:gid:gecos:home:shell */
                char *field[7], *p = line, *end;
                unsigned long id, g;
                size_t n = 0;

                if (!strchr(line, '\n') && !feof(f)) {
                        int c;
                        /* An overlong line is skipped, not misparsed. */
                        while ((c = fgetc(f)) != EOF && c != '\n')
                                ;
                        continue;
                }
                line[strcspn(line, "\n")] = '\0';
                while (n < 7) {
                        field[n++] = p;
                        p = strchr(p, ':');
                        if (!p)
                                break;
                        *p++ = '\0';
                }
                if (n < 6)
                        continue;
                errno = 0;
                id = strtoul(field[2], &end, 10);
                if (errno || end == field[2] || *end || id != uid)
                        continue;
                g = strtoul(field[3], &end, 10);
                if (errno || end == field[3] || *end || g >= UINT32_MAX)
                        continue;
                if (strlen(field[5]) >= homelen)
                        continue;
                strcpy(home, field[5]);
                *gid = (uint32_t)g;
                ret = 0;
                break;
        }
        fclose(f);
        return ret;
}

/* Reads the next line of a colon-separated database (passwd, group) into line and splits it into
 * at most nmax fields. Overlong lines are skipped. Returns the field count, or -1 at the end. */
static int init_db_next(FILE *f, char *line, size_t len, char **field, int nmax)
{
        while (fgets(line, (int)len, f)) {
                char *p = line;
                int n = 0;

                if (!strchr(line, '\n') && !feof(f)) {
                        int c;
                        while ((c = fgetc(f)) != EOF && c != '\n')
                                ;
                        continue;
                }
                line[strcspn(line, "\n")] = '\0';
                while (n < nmax) {
                        field[n++] = p;
                        p = strchr(p, ':');
                        if (!p)
                                break;
                        *p++ = '\0';
                }
                return n;
        }
        return -1;
}

/* A database id: decimal, below UINT32_MAX (-1 is "no id"). */
static int init_db_id(const char *s, uint32_t *out)
{
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v >= UINT32_MAX)
                return -1;
        *out = (uint32_t)v;
        return 0;
}

int init_passwd_lookup_name(const char *passwd_path, const char *name, uint32_t *uid, uint32_t *gid,
                            char *home, size_t homelen)
{
        char line[1024], *field[7];
        int ret = -ENOENT, n;
        FILE *f;

        f = fopen(passwd_path, "re");
        if (!f)
                return -errno;
        /* name:password:uid:gid:gecos:home:shell; the first entry of a name wins. */
        while ((n = init_db_next(f, line, sizeof(line), field, 7)) >= 0) {
                uint32_t u, g;

                if (n < 6 || strcmp(field[0], name) != 0)
                        continue;
                if (init_db_id(field[2], &u) || init_db_id(field[3], &g) ||
                    strlen(field[5]) >= homelen)
                        continue;
                *uid = u;
                *gid = g;
                strcpy(home, field[5]);
                ret = 0;
                break;
        }
        fclose(f);
        return ret;
}

int init_group_lookup_name(const char *group_path, const char *name, uint32_t *gid)
{
        char line[4096], *field[4];
        int ret = -ENOENT, n;
        FILE *f;

        f = fopen(group_path, "re");
        if (!f)
                return -errno;
        /* name:password:gid:member,member,... */
        while ((n = init_db_next(f, line, sizeof(line), field, 4)) >= 0) {
                if (n < 3 || strcmp(field[0], name) != 0 || init_db_id(field[2], gid))
                        continue;
                ret = 0;
                break;
        }
        fclose(f);
        return ret;
}

int init_group_members(const char *group_path, const char *user, uint32_t *gids, size_t max)
{
        char line[4096], *field[4];
        size_t count = 0;
        int n;
        FILE *f;

        f = fopen(group_path, "re");
        if (!f)
                return -errno;
        while ((n = init_db_next(f, line, sizeof(line), field, 4)) >= 0 && count < max) {
                uint32_t g;
                char *member, *save = NULL;
                bool listed = false, dup = false;
                size_t i;

                if (n < 4 || init_db_id(field[2], &g))
                        continue;
                for (member = strtok_r(field[3], ",", &save); member && !listed;
                     member = strtok_r(NULL, ",", &save))
                        listed = strcmp(member, user) == 0;
                for (i = 0; i < count; i++)
                        dup = dup || gids[i] == g;
                if (listed && !dup)
                        gids[count++] = g;
        }
        fclose(f);
        return (int)count;
}

const char *init_env_get(char *const *envp, const char *key)
{
        size_t klen = strlen(key);

        for (; envp && *envp; envp++)
                if (strncmp(*envp, key, klen) == 0 && (*envp)[klen] == '=')
                        return *envp + klen + 1;
        return NULL;
}

int init_exec(const char *file, char *const argv[], char *const envp[], bool *interp_missing)
{
        char buf[PATH_MAX];
        const char *path, *p, *end;
        bool eacces = false;
        size_t flen = strlen(file);

        *interp_missing = false;
        if (flen == 0)
                return ENOENT;
        if (strchr(file, '/')) {
                execve(file, argv, envp);
                if (errno == ENOENT && access(file, F_OK) == 0)
                        *interp_missing = true;
                return errno;
        }
        path = init_env_get(envp, "PATH");
        if (!path)
                path = INIT_DEFAULT_PATH;
        for (p = path;; p = end + 1) {
                size_t dlen;

                end = strchrnul(p, ':');
                dlen = (size_t)(end - p);
                if (dlen == 0) {
                        /* An empty PATH element means the current directory. */
                        p = ".";
                        dlen = 1;
                }
                if (dlen + 1 + flen < sizeof(buf)) {
                        memcpy(buf, p, dlen);
                        buf[dlen] = '/';
                        memcpy(buf + dlen + 1, file, flen + 1);
                        execve(buf, argv, envp);
                        switch (errno) {
                        case EACCES:
                                eacces = true;
                                break;
                        case ENOENT:
                                if (access(buf, F_OK) == 0)
                                        *interp_missing = true;
                                break;
                        case ENOTDIR:
                        case ESTALE:
                        case ENODEV:
                        case ELOOP:
                        case ENAMETOOLONG:
                                break;
                        default:
                                return errno;
                        }
                }
                if (*end == '\0')
                        break;
        }
        return eacces ? EACCES : ENOENT;
}
