/* The malloc family's contract, checked from a program the preload library interposes: every
 * function, with every pointer kind passed to every other (plain, recorded behind the agent's
 * header, aligned, reallocated across the two), contents kept, alignment, zeroing, usable sizes,
 * errno and the failures glibc reports. Prints "ok <checks>" or the first failed check. Run with
 * the agent recording everything (CONTPROF_ALLOC=exact), sampling with a small interval (some
 * recorded, some not), and off. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            printf("failed at line %d: %s\n", __LINE__, #cond);                         \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}
/* Usable size: at least what was asked, and not absurdly more (a header read as a chunk size is). */
static int usable(void *p, size_t n, size_t page) {
    size_t u = malloc_usable_size(p);
    return u >= n && u < n + 2 * page + 64;
}
static int same(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

/* Sizes the compiler cannot see, so that it neither warns about nor folds the failing calls. */
static volatile size_t huge = SIZE_MAX - 8, half = SIZE_MAX / 2;

int main(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned x = 1;
    for (int round = 0; round < 3000; round++) {
        x = x * 1103515245u + 12345u;
        size_t n = 1 + (x >> 8) % 5000;

        unsigned char *a = malloc(n);
        CHECK(a && ((uintptr_t)a % 16) == 0 && usable(a, n, page));
        fill(a, n, round);

        /* Grow, shrink, grow again: contents kept up to the smaller size. */
        unsigned char *b = realloc(a, n * 3);
        CHECK(b && same(b, n, round) && usable(b, n * 3, page));
        fill(b, n * 3, round + 1);
        unsigned char *c = realloc(b, n / 2 + 1);
        CHECK(c && same(c, n / 2 + 1, round + 1));
        unsigned char *d = reallocarray(c, 2, n);
        CHECK(d && same(d, n / 2 + 1, round + 1));
        free(d);

        unsigned char *z = calloc(n, 3);
        CHECK(z);
        for (size_t i = 0; i < n * 3; i++) CHECK(z[i] == 0);
        z = realloc(z, n * 4);
        CHECK(z);
        for (size_t i = 0; i < n * 3; i++) CHECK(z[i] == 0);
        free(z);

        size_t align = (size_t)1 << (3 + round % 10); /* 8 .. 4096 */
        void *m = memalign(align, n);
        CHECK(m && ((uintptr_t)m % align) == 0 && usable(m, n, page));
        fill(m, n, 3);
        m = realloc(m, n + 100);
        CHECK(m && same(m, n, 3));
        free(m);

        void *pm = 0;
        CHECK(posix_memalign(&pm, align < 8 ? 8 : align, n) == 0);
        CHECK(((uintptr_t)pm % (align < 8 ? 8 : align)) == 0);
        fill(pm, n, 4);
        CHECK(same(pm, n, 4));
        free(pm);

        void *al = aligned_alloc(64, 64 * (1 + n / 64));
        CHECK(al && ((uintptr_t)al % 64) == 0);
        free(al);

        void *v = valloc(n);
        CHECK(v && ((uintptr_t)v % page) == 0 && usable(v, n, page));
        free(v);
        void *pv = pvalloc(n);
        CHECK(pv && ((uintptr_t)pv % page) == 0 && usable(pv, n, page));
        free(pv);

        /* realloc(NULL, n) is malloc; realloc(p, 0) frees and returns NULL (glibc). */
        void *r = realloc(NULL, n);
        CHECK(r);
        CHECK(realloc(r, 0) == NULL);
        free(NULL);
    }

    /* Failures, as glibc reports them. */
    errno = 0;
    CHECK(malloc(huge) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(half, 4) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(NULL, half, 4) == NULL && errno == ENOMEM);
    void *keep = malloc(100);
    fill(keep, 100, 9);
    errno = 0;
    CHECK(realloc(keep, huge) == NULL && errno == ENOMEM && same(keep, 100, 9));
    free(keep);
    void *out = (void *)1;
    CHECK(posix_memalign(&out, 3, 16) == EINVAL && out == (void *)1);
    CHECK(posix_memalign(&out, 64, huge) == ENOMEM);

    /* Pointers that live across many others, freed in another order. */
    void *held[512];
    for (int i = 0; i < 512; i++) {
        held[i] = malloc(16 + i * 13);
        fill(held[i], 16 + i * 13, i);
    }
    for (int i = 511; i >= 0; i -= 2) {
        CHECK(same(held[i], 16 + i * 13, i));
        free(held[i]);
    }
    for (int i = 0; i < 512; i += 2) {
        held[i] = realloc(held[i], 40 + i * 29);
        CHECK(same(held[i], 16 + i * 13, i));
        free(held[i]);
    }
    printf("ok\n");
    return 0;
}
