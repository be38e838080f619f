/* main() for the fuzz targets when they are built without libFuzzer (any C compiler, usually
 * with ASan+UBSan): replays the files given, then runs --random N more inputs, each a mutation of
 * one of those files (or plain random bytes when none is given). Deterministic for a --seed, so
 * a failure in CI reproduces. It prints one "PASS <target>: ..." line for tests/run.sh, or dies
 * (abort, sanitizer report) on the input that broke the target, after saving it.
 *
 *   build/fuzz/fuzz_virtq [--random N] [--seed S] [--max-len L] [FILE|DIR...] */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seed {
        uint8_t *data;
        size_t len;
};

static struct seed *seeds;
static size_t nseeds;
static const char *crash_path = "fuzz-crash-input";

static uint64_t rng;
static uint64_t rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void die(const char *what, const char *path)
{
        fprintf(stderr, "FAIL replay: %s %s: %s\n", what, path, strerror(errno));
        exit(1);
}

static void add_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        if (!f)
                die("cannot open", path);
        struct seed s = {NULL, 0};
        size_t cap = 0;
        for (;;) {
                if (s.len == cap) {
                        cap = cap ? cap * 2 : 4096;
                        if (!(s.data = realloc(s.data, cap)))
                                die("out of memory for", path);
                }
                size_t n = fread(s.data + s.len, 1, cap - s.len, f);
                if (n == 0)
                        break;
                s.len += n;
        }
        fclose(f);
        if (!(seeds = realloc(seeds, (nseeds + 1) * sizeof(*seeds))))
                die("out of memory for", path);
        seeds[nseeds++] = s;
}

static void add_path(const char *path)
{
        struct stat st;
        if (stat(path, &st) != 0)
                die("cannot stat", path);
        if (!S_ISDIR(st.st_mode)) {
                add_file(path);
                return;
        }
        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort);
        if (n < 0)
                die("cannot list", path);
        for (int i = 0; i < n; i++) {
                if (names[i]->d_name[0] != '.') {
                        char p[4096];
                        snprintf(p, sizeof(p), "%s/%s", path, names[i]->d_name);
                        add_file(p);
                }
                free(names[i]);
        }
        free(names);
}

/* The input about to run is saved first: if the target dies, it is there to replay. */
static void run_one(const uint8_t *data, size_t len)
{
        FILE *f = fopen(crash_path, "wb");
        if (f) {
                fwrite(data, 1, len, f);
                fclose(f);
        }
        LLVMFuzzerTestOneInput(data, len);
}

static size_t mutate(uint8_t *buf, size_t max_len)
{
        size_t len;
        if (!nseeds) {
                len = rnd() % (max_len + 1);
                for (size_t i = 0; i < len; i++)
                        buf[i] = (uint8_t)rnd();
                return len;
        }
        const struct seed *s = &seeds[rnd() % nseeds];
        len = s->len < max_len ? s->len : max_len;
        memcpy(buf, s->data, len);
        unsigned edits = 1 + (unsigned)(rnd() % 8);
        for (unsigned e = 0; e < edits && len; e++) {
                size_t at = rnd() % len;
                switch (rnd() % 4) {
                case 0: /* a random byte */
                        buf[at] = (uint8_t)rnd();
                        break;
                case 1: /* a bit */
                        buf[at] ^= (uint8_t)(1u << (rnd() % 8));
                        break;
                case 2: /* an interesting value */
                        buf[at] = (const uint8_t[]){0, 1, 0x7f, 0x80, 0xff}[rnd() % 5];
                        break;
                default: /* cut the tail */
                        len = at + 1;
                        break;
                }
        }
        return len;
}

int main(int argc, char **argv)
{
        unsigned long random_runs = 0;
        unsigned long long seed = 1;
        size_t max_len = 4096;
        const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--random") && i + 1 < argc)
                        random_runs = strtoul(argv[++i], NULL, 0);
                else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
                        seed = strtoull(argv[++i], NULL, 0);
                else if (!strcmp(argv[i], "--max-len") && i + 1 < argc)
                        max_len = strtoul(argv[++i], NULL, 0);
                else if (!strcmp(argv[i], "--crash-file") && i + 1 < argc)
                        crash_path = argv[++i];
                else if (argv[i][0] == '-') {
                        fprintf(stderr,
                                "usage: %s [--random N] [--seed S] [--max-len L] [--crash-file F] "
                                "[FILE|DIR...]\n",
                                name);
                        return 2;
                } else
                        add_path(argv[i]);
        }
        rng = seed * 0x9e3779b97f4a7c15ull + 1;
        for (size_t i = 0; i < nseeds; i++)
                run_one(seeds[i].data, seeds[i].len);
        uint8_t *buf = malloc(max_len ? max_len : 1);
        if (!buf)
                die("out of memory for", "inputs");
        for (unsigned long i = 0; i < random_runs; i++)
                run_one(buf, mutate(buf, max_len));
        remove(crash_path);
        printf("PASS %s: %zu seed inputs and %lu mutations (seed %llu)\n", name, nseeds,
               random_runs, seed);
        free(buf);
        for (size_t i = 0; i < nseeds; i++)
                free(seeds[i].data);
        free(seeds);
        return 0;
}
