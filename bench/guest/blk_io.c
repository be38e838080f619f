/* The guest side of bench/tcg-blk.sh: block I/O on a disk with O_DIRECT (so the guest's page
 * cache is out of the way), timed inside the guest. Built static and packed into the guest's
 * root; the same binary runs under ember and under QEMU.
 *
 *   blk_io DEV seqwrite|seqread MiB     1 MiB requests over the first MiB mebibytes
 *   blk_io DEV randread COUNT MiB       COUNT 4 KiB reads at random 4 KiB offsets in the first
 *                                       MiB mebibytes (a fixed sequence)
 * Prints "blk_io MODE bytes=B seconds=S MBps=X iops=Y" (MB = 10^6 bytes). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
        fprintf(stderr, "blk_io: %s: %s\n", what, strerror(errno));
        exit(1);
}

int main(int argc, char **argv)
{
        if (argc != 4 && argc != 5) {
                fprintf(stderr,
                        "usage: blk_io DEV seqwrite|seqread MiB | DEV randread COUNT MiB\n");
                return 2;
        }
        const char *mode = argv[2];
        int rnd = strcmp(mode, "randread") == 0, wr = strcmp(mode, "seqwrite") == 0;
        if (!rnd && !wr && strcmp(mode, "seqread") != 0) {
                fprintf(stderr, "blk_io: unknown mode %s\n", mode);
                return 2;
        }
        uint64_t mib = strtoull(argv[rnd ? 4 : 3], NULL, 10);
        uint64_t count = rnd ? strtoull(argv[3], NULL, 10) : mib;
        size_t bs = rnd ? 4096 : 1 << 20;
        int fd = open(argv[1], (wr ? O_WRONLY : O_RDONLY) | O_DIRECT);
        if (fd < 0)
                die(argv[1]);
        void *buf;
        if (posix_memalign(&buf, 4096, bs))
                die("posix_memalign");
        memset(buf, 0x5a, bs);
        uint64_t blocks = (mib << 20) / 4096, x = 0x9e3779b97f4a7c15ull;
        double t0 = now();
        for (uint64_t i = 0; i < count; i++) {
                off_t off;
                if (rnd) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        off = (off_t)((x % blocks) * 4096);
                } else {
                        off = (off_t)(i << 20);
                }
                ssize_t n = wr ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);
                if (n != (ssize_t)bs)
                        die(wr ? "pwrite" : "pread");
        }
        if (wr && fdatasync(fd) != 0)
                die("fdatasync");
        double s = now() - t0;
        double bytes = (double)count * (double)bs;
        printf("blk_io %s bytes=%.0f seconds=%.4f MBps=%.2f iops=%.0f\n", mode, bytes, s,
               bytes / s / 1e6, (double)count / s);
        close(fd);
        return 0;
}
