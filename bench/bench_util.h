/* What both benchmark programs need: a monotonic clock, a fatal error, and median/min/max of a
 * series. Header-only, so bench/tcg-boot.sh can build its runner with a plain `cc`. Define
 * BENCH_NAME (the program's name, for messages) before including it. */
#ifndef EMBER_BENCH_UTIL_H
#define EMBER_BENCH_UTIL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_util.h"
#endif

static inline uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, BENCH_NAME ": ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        exit(1);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* Median, min and max of v[0..n) (sorted in place); all zero for an empty series. */
static inline void bench_stats(double *v, int n, double *med, double *min, double *max)
{
        if (n <= 0) {
                *med = *min = *max = 0;
                return;
        }
        qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
        *min = v[0];
        *max = v[n - 1];
        *med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
