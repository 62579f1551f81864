/* kbench.c - one matrix-product kernel on one thread, timed in thread CPU time.
 *
 * The machine this project is measured on is shared, and whole-model runs swing by 2x
 * between identical runs; a kernel alone, repeated and taking the best of many runs, shows
 * what a kernel change bought. Usage:
 *   kbench TYPE N ROWS TOKENS [REPS] [ISA]
 * KBENCH_PACKED=1 times the packed layout (qt_pack / qt_matmul_packed) where there is one.
 * e.g. `build/kbench Q8_0 896 4864 8` (the 0.5B shape's ffn_gate with 8 tokens). Prints the
 * best and median of REPS runs (default 30) in GMAC/s and weight GB/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/quant.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint32_t type_id(const char *name) {
    for (uint32_t t = 0; t < 64; t++)
        if (!strcmp(qt_name(t), name)) return t;
    return UINT32_MAX;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr,
                "usage: kbench TYPE N ROWS TOKENS [REPS] [generic|avx2|avx512|avx512vbmi]\n");
        return 2;
    }
    uint32_t wt = type_id(argv[1]);
    long long n = atoll(argv[2]), rows = atoll(argv[3]), nt = atoll(argv[4]);
    int reps = argc > 5 ? atoi(argv[5]) : 30;
    if (wt == UINT32_MAX || n <= 0 || rows <= 0 || nt <= 0 || nt > 4096 || reps < 1 ||
        n > (1 << 20) || rows > (1 << 22)) {
        fprintf(stderr, "kbench: bad arguments\n");
        return 2;
    }
    if (argc > 6) {
        static const char *names[] = {"generic", "avx2", "avx512", "avx512vbmi"};
        for (int l = 0; l < 4; l++)
            if (!strcmp(argv[6], names[l])) qt_set_isa(l);
    }
    size_t rb = qt_row_bytes(wt, n), as = qt_row_bytes(qt_vec_dot_type(wt), n);
    float *x = malloc((size_t)n * sizeof(float));
    uint8_t *w = malloc(rb * (size_t)rows), *act = malloc(as * (size_t)nt);
    float *y = malloc(sizeof(float) * (size_t)(rows * nt));
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!x || !w || !act || !y || !t) {
        fprintf(stderr, "kbench: out of memory\n");
        return 1;
    }
    uint32_t s = 1;
    for (long long r = 0; r < rows; r++) {
        for (long long i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            x[i] = (float)((int)(s >> 9) - (1 << 22)) / (float)(1 << 22);
        }
        if (qt_quantize_row(wt, x, w + (size_t)r * rb, n)) {
            fprintf(stderr, "kbench: cannot quantize %s rows of %lld\n", argv[1], n);
            return 1;
        }
    }
    for (long long k = 0; k < nt; k++) {
        for (long long i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            x[i] = (float)((int)(s >> 9) - (1 << 22)) / (float)(1 << 22);
        }
        qt_prep_act(wt, x, act + (size_t)k * as, n);
    }
    const char *pe = getenv("KBENCH_PACKED");
    size_t pb = pe && *pe == '1' ? qt_pack_bytes(wt, n, rows) : 0;
    void *pw = pb ? aligned_alloc(64, (pb + 63) / 64 * 64) : NULL;
    if (pw) qt_pack(wt, w, n, rows, pw);
    for (int i = -1; i < reps; i++) { /* -1: warm */
        double t0 = cpu_s();
        if (pw)
            qt_matmul_packed(wt, pw, n, 0, rows, act, as, (int32_t)nt, y, rows);
        else
            qt_matmul(wt, w, n, 0, rows, act, as, (int32_t)nt, y, rows);
        if (i >= 0) t[i] = cpu_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double mac = (double)n * (double)rows * (double)nt, bytes = (double)rb * (double)rows;
    printf("%s%s %s n=%lld rows=%lld tokens=%lld: best %.1f GMAC/s %.1f GB/s, median %.1f GMAC/s"
           " (%.3f ms)\n",
           argv[1], pw ? " packed" : "", qt_isa_name(qt_isa()), n, rows, nt, mac / t[0] * 1e-9,
           bytes / t[0] * 1e-9, mac / t[reps / 2] * 1e-9, t[reps / 2] * 1e3);
    free(x);
    free(w);
    free(act);
    free(y);
    free(t);
    free(pw);
    return 0;
}
