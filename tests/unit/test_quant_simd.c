/* test_quant_simd.c - every SIMD level against the portable (generic) kernels.
 *
 * For each level the CPU has: activation preparation must be bit-identical, matrix
 * products equal within float reordering (1e-5 of the sum of |terms|), the attention
 * helpers (dot, axpy, f16 rows) bit-identical. Odd shapes on purpose: rows not a multiple of the
 * tiles, unaligned row ranges, 1..9 tokens, padded strides; and y outside the computed range must
 * stay untouched. */
#include "testutil.h"

#include <math.h>

#include "engine/quant.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd32(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}

static float frand(void) { /* uniform in [-1, 1) */
    return (float)(int32_t)rnd32() / 2147483648.0f;
}

/* Blocks of varied magnitude with outliers; some blocks all zero, some with ties of +-max. */
static void fill(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t blk = i / 32;
        x[i] = frand() * 0.05f * (float)(1 + blk % 5);
        if (rnd32() % 53 == 0) x[i] *= 20;
        if (blk % 17 == 5) x[i] = 0;
        if (blk % 13 == 7 && i % 32 < 4)
            x[i] = (i % 2) ? 0.75f : -0.75f; /* equal magnitudes, both signs */
    }
}

static int levels_run[QT_ISA_AVX512VBMI + 1];

/* Levels above generic this CPU supports; 0 when there are none. */
static int simd_levels(int *out) {
    int k = 0;
    for (int l = QT_ISA_AVX2; l <= qt_isa_best(); l++) out[k++] = l;
    return k;
}

static double sum_abs_terms(uint32_t wt, const void *wrow, const void *act, int64_t n, float *tw,
                            float *ta) {
    qt_dequant_row(wt, wrow, tw, n);
    qt_dequant_row(qt_vec_dot_type(wt), act, ta, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += fabs((double)tw[i] * ta[i]);
    return s;
}

/* ---- prepared activations: bit-identical ---- */
static void check_prep(uint32_t wt, int64_t n, int level) {
    uint32_t at = qt_vec_dot_type(wt);
    size_t ab = qt_row_bytes(at, n);
    float *x = malloc((size_t)n * sizeof *x);
    uint8_t *g = malloc(ab), *s = malloc(ab);
    assert_non_null(x);
    assert_non_null(g);
    assert_non_null(s);
    fill(x, n);
    qt_set_isa(QT_ISA_GENERIC);
    qt_prep_act(wt, x, g, n);
    qt_set_isa(level);
    qt_prep_act(wt, x, s, n);
    if (memcmp(g, s, ab) != 0) {
        size_t i = 0;
        while (g[i] == s[i]) i++;
        fail_msg("prep_act %s n=%lld level %s: byte %zu differs (%u vs %u)", qt_name(wt),
                 (long long)n, qt_isa_name(level), i, g[i], s[i]);
    }
    free(x);
    free(g);
    free(s);
}

static void test_prep_act(void **state) {
    (void)state;
    static const uint32_t types[] = {QT_Q8_0, QT_Q4_1, QT_Q4_K, QT_F16, QT_BF16, QT_F32};
    static const int64_t sizes[] = {256, 512, 1024, 4096, 896 * 2 + 256};
    int lv[4], nl = simd_levels(lv);
    for (int l = 0; l < nl; l++)
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
                check_prep(types[t], sizes[k], lv[l]);
    /* float activations of any length */
    for (int l = 0; l < nl; l++)
        for (int64_t n = 1; n < 70; n += 3) {
            check_prep(QT_F16, n, lv[l]);
            check_prep(QT_BF16, n, lv[l]);
        }
    qt_set_isa(qt_isa_best());
}

/* ---- matrix products ---- */
static void check_matmul(uint32_t wt, int64_t n, int64_t rows, int64_t r0, int64_t r1,
                         int32_t n_tok, int level) {
    uint32_t at = qt_vec_dot_type(wt);
    size_t rb = qt_row_bytes(wt, n);
    size_t as = qt_row_bytes(at, n) + 4; /* padded stride */
    int64_t ys = rows + 3;
    float *xf = malloc((size_t)n * sizeof(float));
    uint8_t *w = malloc(rb * (size_t)rows);
    uint8_t *ag = malloc(as * (size_t)n_tok), *asimd = malloc(as * (size_t)n_tok);
    float *yg = malloc((size_t)(ys * n_tok) * sizeof(float));
    float *yv = malloc((size_t)(ys * n_tok) * sizeof(float));
    float *tw = malloc((size_t)n * sizeof(float)), *ta = malloc((size_t)n * sizeof(float));
    assert_true(xf && w && ag && asimd && yg && yv && tw && ta);
    for (int64_t r = 0; r < rows; r++) {
        fill(xf, n);
        assert_int_equal(qt_quantize_row(wt, xf, w + (size_t)r * rb, n), 0);
    }
    memset(ag, 0, as * (size_t)n_tok);
    memset(asimd, 0, as * (size_t)n_tok);
    for (int32_t t = 0; t < n_tok; t++) {
        fill(xf, n);
        qt_set_isa(QT_ISA_GENERIC);
        qt_prep_act(wt, xf, ag + (size_t)t * as, n);
        qt_set_isa(level);
        qt_prep_act(wt, xf, asimd + (size_t)t * as, n);
    }
    assert_memory_equal(ag, asimd, as * (size_t)n_tok);
    for (int64_t i = 0; i < ys * n_tok; i++) yg[i] = yv[i] = -12345.0f;
    qt_set_isa(QT_ISA_GENERIC);
    qt_matmul(wt, w, n, r0, r1, ag, as, n_tok, yg, ys);
    qt_set_isa(level);
    qt_matmul(wt, w, n, r0, r1, asimd, as, n_tok, yv, ys);
    for (int32_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < ys; r++) {
            float g = yg[t * ys + r], v = yv[t * ys + r];
            if (r < r0 || r >= r1) {
                if (v != -12345.0f)
                    fail_msg("%s level %s: y[%d][%lld] written outside [%lld, %lld)", qt_name(wt),
                             qt_isa_name(level), t, (long long)r, (long long)r0, (long long)r1);
                continue;
            }
            double sa = sum_abs_terms(wt, w + (size_t)r * rb, ag + (size_t)t * as, n, tw, ta);
            double tol = 1e-5 * sa + 1e-30;
            if (!(fabs((double)g - v) <= tol))
                fail_msg("%s n=%lld row %lld tok %d level %s: %.9g vs generic %.9g (tol %.3g)",
                         qt_name(wt), (long long)n, (long long)r, t, qt_isa_name(level), v, g, tol);
        }
    /* the single-row entry point goes through the same kernels */
    float dv = qt_vec_dot(wt, w + (size_t)r0 * rb, asimd, n);
    qt_set_isa(QT_ISA_GENERIC);
    float dg = qt_vec_dot(wt, w + (size_t)r0 * rb, ag, n);
    double sa = sum_abs_terms(wt, w + (size_t)r0 * rb, ag, n, tw, ta);
    assert_true(fabs((double)dv - dg) <= 1e-5 * sa + 1e-30);
    assert_true(fabs((double)dg - yg[r0]) <= 1e-5 * sa + 1e-30);
    free(xf);
    free(w);
    free(ag);
    free(asimd);
    free(yg);
    free(yv);
    free(tw);
    free(ta);
}

static void run_type(uint32_t wt, const int64_t *sizes, size_t ns) {
    static const int32_t toks[] = {1, 2, 3, 4, 5, 9};
    int lv[4], nl = simd_levels(lv);
    for (int l = 0; l < nl; l++) {
        levels_run[lv[l]] = 1;
        for (size_t k = 0; k < ns; k++)
            for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++) {
                check_matmul(wt, sizes[k], 11, 1, 10, toks[t], lv[l]);
                check_matmul(wt, sizes[k], 7, 0, 7, toks[t], lv[l]);
                check_matmul(wt, sizes[k], 3, 2, 3, toks[t], lv[l]);
            }
        /* many rows and tokens: several row chunks and token groups of the prompt kernels */
        check_matmul(wt, sizes[0] * 3, 53, 3, 50, 70, lv[l]);
    }
    qt_set_isa(qt_isa_best());
}

static void test_matmul_q8_0(void **state) {
    (void)state;
    static const int64_t sizes[] = {32, 64, 96, 896, 4096, 8192 + 96}; /* > one decode chunk */
    run_type(QT_Q8_0, sizes, 6);
}

static void test_matmul_q4_0(void **state) {
    (void)state;
    /* 160: one full group of 4 blocks and a tail of 1 in the avx512vbmi decode kernel */
    static const int64_t sizes[] = {32, 64, 96, 160, 896, 4096, 8192 + 96};
    run_type(QT_Q4_0, sizes, 7);
}

static void test_matmul_q4_k(void **state) {
    (void)state;
    static const int64_t sizes[] = {256, 512, 1280, 4096, 8192 + 512};
    run_type(QT_Q4_K, sizes, 5);
}

static void test_matmul_q6_k(void **state) {
    (void)state;
    static const int64_t sizes[] = {256, 512, 1280, 4096, 8192 + 512};
    run_type(QT_Q6_K, sizes, 5);
}

static void test_matmul_q4_1(void **state) {
    (void)state;
    static const int64_t sizes[] = {32, 64, 96, 896, 4096, 8192 + 96};
    run_type(QT_Q4_1, sizes, 6);
}

static void test_matmul_q5_0(void **state) {
    (void)state;
    static const int64_t sizes[] = {32, 64, 96, 896, 4096, 8192 + 96};
    run_type(QT_Q5_0, sizes, 6);
}

static void test_matmul_q5_1(void **state) {
    (void)state;
    static const int64_t sizes[] = {32, 64, 96, 896, 4096, 8192 + 96};
    run_type(QT_Q5_1, sizes, 6);
}

static void test_matmul_q5_k(void **state) {
    (void)state;
    static const int64_t sizes[] = {256, 512, 1280, 4096, 8192 + 512};
    run_type(QT_Q5_K, sizes, 5);
}

static void test_matmul_f16(void **state) {
    (void)state;
    static const int64_t sizes[] = {1, 7, 16, 37, 64, 100, 896, 4099};
    run_type(QT_F16, sizes, 8);
}

static void test_matmul_bf16(void **state) {
    (void)state;
    static const int64_t sizes[] = {1, 7, 16, 37, 64, 100, 896, 4099};
    run_type(QT_BF16, sizes, 8);
}

static void test_matmul_f32(void **state) {
    (void)state;
    static const int64_t sizes[] = {1, 7, 16, 37, 64, 100, 896, 4099};
    run_type(QT_F32, sizes, 8);
}

/* ---- float order: some kernels promise equal bits, not only a tolerance ---- */
/* y of rows [0, rows) for n_tok tokens at one level; caller frees. */
static float *matmul_at(uint32_t wt, const uint8_t *w, int64_t n, int64_t rows, const uint8_t *act,
                        size_t as, int32_t n_tok, int level) {
    float *y = malloc((size_t)(rows * n_tok) * sizeof(float));
    assert_non_null(y);
    qt_set_isa(level);
    qt_matmul(wt, w, n, 0, rows, act, as, n_tok, y, rows);
    return y;
}

/* K-quants: the portable per-block float order at every level, so equal to generic.
 * Q5_0: the 256-bit template's order (llama.cpp's) at both SIMD levels, so avx512 equals
 * avx2; its 512-bit decode kernel must not reorder the sums. */
static void check_same_bits(uint32_t wt, int64_t n, int32_t n_tok, int ref_level) {
    const int64_t rows = 19;
    size_t rb = qt_row_bytes(wt, n), as = qt_row_bytes(qt_vec_dot_type(wt), n);
    float *xf = malloc((size_t)n * sizeof(float));
    uint8_t *w = malloc(rb * rows), *act = malloc(as * (size_t)n_tok);
    assert_true(xf && w && act);
    for (int64_t r = 0; r < rows; r++) {
        fill(xf, n);
        assert_int_equal(qt_quantize_row(wt, xf, w + (size_t)r * rb, n), 0);
    }
    qt_set_isa(QT_ISA_GENERIC);
    for (int32_t t = 0; t < n_tok; t++) {
        fill(xf, n);
        qt_prep_act(wt, xf, act + (size_t)t * as, n);
    }
    float *yr = matmul_at(wt, w, n, rows, act, as, n_tok, ref_level);
    int lv[4], nl = simd_levels(lv);
    for (int l = 0; l < nl; l++) {
        if (lv[l] <= ref_level) continue;
        float *yv = matmul_at(wt, w, n, rows, act, as, n_tok, lv[l]);
        for (int64_t i = 0; i < rows * n_tok; i++)
            if (memcmp(&yr[i], &yv[i], 4) != 0)
                fail_msg("%s n=%lld tokens %d: level %s %.9g vs %s %.9g at %lld", qt_name(wt),
                         (long long)n, n_tok, qt_isa_name(lv[l]), yv[i], qt_isa_name(ref_level),
                         yr[i], (long long)i);
        free(yv);
    }
    free(yr);
    free(xf);
    free(w);
    free(act);
}

static void test_float_order(void **state) {
    (void)state;
    static const uint32_t kq[] = {QT_Q4_K, QT_Q5_K, QT_Q6_K};
    static const int64_t ks[] = {256, 1280, 4864, 8192 + 512};
    static const int64_t qs[] = {32, 96, 896, 4864, 8192, 8192 + 96};
    static const int32_t toks[] = {1, 2, 5};
    for (size_t k = 0; k < sizeof kq / sizeof kq[0]; k++)
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
            for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++)
                check_same_bits(kq[k], ks[i], toks[t], QT_ISA_GENERIC);
    if (qt_isa_best() >= QT_ISA_AVX2)
        for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
            for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++)
                check_same_bits(QT_Q5_0, qs[i], toks[t], QT_ISA_AVX2);
    qt_set_isa(qt_isa_best());
}

/* ---- float rows ---- */
static void test_float_rows(void **state) {
    (void)state;
    enum { N = 4099 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    float *yg = malloc(N * sizeof(float)), *yv = malloc(N * sizeof(float));
    uint16_t *hg = malloc(N * 2), *hv = malloc(N * 2);
    assert_true(a && b && yg && yv && hg && hv);
    int lv[4], nl = simd_levels(lv);
    for (int l = 0; l < nl; l++) {
        for (int64_t n = 1; n <= N; n = n < 70 ? n + 1 : n * 2 + 3) {
            if (n > N) n = N;
            for (int64_t i = 0; i < n; i++) {
                a[i] = frand() * 4;
                b[i] = frand();
            }
            qt_set_isa(QT_ISA_GENERIC);
            float dg = qt_dot_f32(a, b, n);
            qt_set_isa(lv[l]);
            float dv = qt_dot_f32(a, b, n);
            assert_memory_equal(&dg, &dv, sizeof dg); /* same order at every level */

            memcpy(yg, b, (size_t)n * sizeof(float));
            memcpy(yv, b, (size_t)n * sizeof(float));
            qt_set_isa(QT_ISA_GENERIC);
            qt_axpy_f32(yg, 0.37f, a, n);
            qt_set_isa(lv[l]);
            qt_axpy_f32(yv, 0.37f, a, n);
            assert_memory_equal(yg, yv, (size_t)n * sizeof(float));

            /* f32 -> f16 -> f32, with specials and values around the f16 range limits */
            for (int64_t i = 0; i < n; i++) {
                uint32_t u = rnd32();
                switch (i % 8) {
                case 0:
                    memcpy(&a[i], &u, 4);
                    break; /* any bit pattern: NaN, inf, subnormal */
                case 1:
                    a[i] = frand() * 70000.0f;
                    break;
                case 2:
                    a[i] = frand() * 1e-5f;
                    break;
                case 3:
                    a[i] = frand() * 1e-7f;
                    break;
                default:
                    a[i] = frand() * 10;
                    break;
                }
            }
            qt_set_isa(QT_ISA_GENERIC);
            qt_f32_to_f16_row(a, hg, n);
            qt_set_isa(lv[l]);
            qt_f32_to_f16_row(a, hv, n);
            assert_memory_equal(hg, hv, (size_t)n * 2);
            qt_set_isa(QT_ISA_GENERIC);
            qt_f16_to_f32_row(hg, yg, n);
            qt_set_isa(lv[l]);
            qt_f16_to_f32_row(hg, yv, n);
            for (int64_t i = 0; i < n; i++)
                if (!(isnan(yg[i]) && isnan(yv[i]))) assert_memory_equal(&yg[i], &yv[i], 4);
            if (n == N) break;
        }
        /* every half value, NaNs excepted */
        for (uint32_t h = 0; h < 65536; h++) {
            uint16_t hh = (uint16_t)h;
            float g = qt_f16_to_f32(hh), v;
            qt_set_isa(lv[l]);
            qt_f16_to_f32_row(&hh, &v, 1);
            if (!isnan(g)) assert_memory_equal(&g, &v, 4);
        }
    }
    qt_set_isa(qt_isa_best());
    free(a);
    free(b);
    free(yg);
    free(yv);
    free(hg);
    free(hv);
}

/* The attention row kernels: many keys / values per call, to the bit of the one-row calls
 * (and so of the portable code) at every level. */
static void test_attention_rows(void **state) {
    (void)state;
    static const int64_t dims[] = {8, 64, 80, 128, 13};
    static const int64_t counts[] = {1, 7, 8, 9, 64, 71};
    enum { MAXN = 128, MAXK = 71, STRIDE = 2 * MAXN + 3 };
    float *q = malloc(MAXN * sizeof(float)), *k = malloc(MAXK * STRIDE * sizeof(float));
    float *p = malloc(MAXK * sizeof(float)), *og = malloc(MAXN * sizeof(float));
    float *ov = malloc(MAXN * sizeof(float)), *sg = malloc(MAXK * sizeof(float));
    float *sv = malloc(MAXK * sizeof(float)), *rg = malloc(4099 * sizeof(float));
    float *rv = malloc(4099 * sizeof(float));
    assert_true(q && k && p && og && ov && sg && sv && rg && rv);
    int lv[4], nl = simd_levels(lv);
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            int64_t n = dims[di], nk = counts[ci];
            for (int64_t i = 0; i < n; i++) q[i] = frand() * 3;
            for (int64_t i = 0; i < MAXK * STRIDE; i++) k[i] = frand();
            for (int64_t j = 0; j < nk; j++) p[j] = frand() * frand();
            for (int64_t i = 0; i < n; i++) og[i] = frand();
            memcpy(ov, og, MAXN * sizeof(float));
            qt_set_isa(QT_ISA_GENERIC);
            for (int64_t j = 0; j < nk; j++) sg[j] = qt_dot_f32(q, k + j * STRIDE, n) * 0.125f;
            for (int64_t j = 0; j < nk; j++) qt_axpy_f32(og, p[j], k + j * STRIDE, n);
            for (int l = -1; l < nl; l++) {
                qt_set_isa(l < 0 ? QT_ISA_GENERIC : lv[l]);
                qt_dot_f32_rows(q, k, STRIDE, nk, n, 0.125f, sv);
                assert_memory_equal(sg, sv, (size_t)nk * sizeof(float));
                float o2[MAXN];
                memcpy(o2, ov, sizeof o2);
                qt_axpy_f32_rows(o2, p, k, STRIDE, nk, n);
                assert_memory_equal(og, o2, (size_t)n * sizeof(float));
            }
        }
    for (int64_t i = 0; i < 4099; i++) {
        uint32_t u = rnd32();
        if (i % 5 == 0)
            memcpy(&rg[i], &u, 4); /* any bit pattern */
        else
            rg[i] = frand() * (i % 3 ? 70000.0f : 1e-6f);
    }
    for (int l = 0; l < nl; l++) {
        memcpy(rv, rg, 4099 * sizeof(float));
        qt_set_isa(lv[l]);
        qt_round_f16_row(rv, 4099);
        for (int64_t i = 0; i < 4099; i++) {
            float g = qt_f16_to_f32(qt_f32_to_f16(rg[i]));
            if (!(isnan(g) && isnan(rv[i]))) assert_memory_equal(&g, &rv[i], 4);
        }
    }
    qt_set_isa(qt_isa_best());
    free(q);
    free(k);
    free(p);
    free(og);
    free(ov);
    free(sg);
    free(sv);
    free(rg);
    free(rv);
}

/* ---- qt_exp, softmax and SwiGLU rows: accurate, and the same bits at every level ---- */
static void test_exp_rows(void **state) {
    (void)state;
    /* accuracy against libm over the range softmax and SiLU use */
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        double e = exp((double)x), rel = fabs((double)qt_exp(x) - e) / e;
        if (rel > worst) worst = rel;
    }
    assert_true(worst < 4e-7); /* ~3 ulp */
    assert_true(qt_exp(0.0f) == 1.0f);
    assert_true(qt_exp(-1000.0f) >= 0.0f && qt_exp(-1000.0f) < 1e-37f);
    assert_true(isfinite(qt_exp(1000.0f)));
    enum { N = 1000 };
    float *x = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float));
    float *v = malloc(N * sizeof(float)), *u = malloc(N * sizeof(float));
    assert_true(x && g && v && u);
    int lv[4], nl = simd_levels(lv);
    static const int64_t lens[] = {1, 7, 8, 9, 64, 453, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int64_t n = lens[li];
        for (int64_t i = 0; i < n; i++) {
            x[i] = frand() * 30.0f;
            u[i] = frand();
            if (i % 97 == 3) x[i] = -200.0f; /* far below the max: exp underflows */
        }
        memcpy(g, x, (size_t)n * sizeof(float));
        qt_set_isa(QT_ISA_GENERIC);
        qt_softmax_row(g, n);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += g[i];
        assert_true(fabs(sum - 1.0) < 1e-5);
        for (int l = 0; l < nl; l++) {
            memcpy(v, x, (size_t)n * sizeof(float));
            qt_set_isa(lv[l]);
            qt_softmax_row(v, n);
            assert_memory_equal(g, v, (size_t)n * sizeof(float));
        }
        memcpy(g, x, (size_t)n * sizeof(float));
        qt_set_isa(QT_ISA_GENERIC);
        qt_swiglu_row(g, u, n);
        for (int64_t i = 0; i < n; i++) {
            double ref = (double)x[i] / (1.0 + exp(-(double)x[i])) * (double)u[i];
            assert_true(fabs(g[i] - ref) <= 1e-6 * fabs(ref) + 1e-30);
        }
        for (int l = 0; l < nl; l++) {
            memcpy(v, x, (size_t)n * sizeof(float));
            qt_set_isa(lv[l]);
            qt_swiglu_row(v, u, n);
            assert_memory_equal(g, v, (size_t)n * sizeof(float));
        }
    }
    qt_set_isa(qt_isa_best());
    free(x);
    free(g);
    free(v);
    free(u);
}

/* ---- packed matrices (qt_pack): the same products as qt_matmul, any row count ---- */
static void check_packed(uint32_t wt, int64_t n, int64_t rows, int32_t n_tok) {
    size_t rb = qt_row_bytes(wt, n), as = qt_row_bytes(qt_vec_dot_type(wt), n);
    size_t pb = qt_pack_bytes(wt, n, rows);
    assert_true(pb > 0);
    float *xf = malloc((size_t)n * sizeof(float));
    uint8_t *w = malloc(rb * (size_t)rows), *act = malloc(as * (size_t)n_tok);
    void *pw = aligned_alloc(64, (pb + 63) / 64 * 64);
    float *yg = malloc(sizeof(float) * (size_t)(rows * n_tok));
    float *yp = malloc(sizeof(float) * (size_t)(rows * n_tok));
    float *tw = malloc((size_t)n * sizeof(float)), *ta = malloc((size_t)n * sizeof(float));
    assert_true(xf && w && act && pw && yg && yp && tw && ta);
    for (int64_t r = 0; r < rows; r++) {
        fill(xf, n);
        assert_int_equal(qt_quantize_row(wt, xf, w + (size_t)r * rb, n), 0);
    }
    for (int32_t t = 0; t < n_tok; t++) {
        fill(xf, n);
        qt_prep_act(wt, xf, act + (size_t)t * as, n);
    }
    qt_pack(wt, w, n, rows, pw);
    int best = qt_isa_best();
    qt_set_isa(QT_ISA_GENERIC);
    qt_matmul(wt, w, n, 0, rows, act, as, n_tok, yg, rows);
    for (int level = QT_ISA_GENERIC; level <= best; level++) {
        qt_set_isa(level);
        for (int64_t i = 0; i < rows * n_tok; i++) yp[i] = -12345.0f;
        /* in two row ranges, the second starting at a group of 16 */
        int64_t mid = rows > 16 ? 16 * ((rows / 16 + 1) / 2) : rows;
        qt_matmul_packed(wt, pw, n, 0, mid, act, as, n_tok, yp, rows);
        if (mid < rows) qt_matmul_packed(wt, pw, n, mid, rows, act, as, n_tok, yp, rows);
        for (int32_t t = 0; t < n_tok; t++)
            for (int64_t r = 0; r < rows; r++) {
                float g = yg[t * rows + r], v = yp[t * rows + r];
                double sa = sum_abs_terms(wt, w + (size_t)r * rb, act + (size_t)t * as, n, tw, ta);
                if (!(fabs((double)g - v) <= 1e-5 * sa + 1e-30))
                    fail_msg("packed %s n=%lld rows=%lld row %lld tok %d level %s: %.9g vs %.9g",
                             qt_name(wt), (long long)n, (long long)rows, (long long)r, t,
                             qt_isa_name(level), v, g);
            }
    }
    qt_set_isa(best);
    free(xf);
    free(w);
    free(act);
    free(pw);
    free(yg);
    free(yp);
    free(tw);
    free(ta);
}

static void test_packed(void **state) {
    (void)state;
    if (qt_isa_best() < QT_ISA_AVX512) {
        assert_int_equal(qt_pack_bytes(QT_Q8_0, 64, 16), 0); /* no packed kernels: not offered */
        skip();
    }
    assert_int_equal(qt_pack_bytes(QT_Q4_K, 256, 16), 0); /* no packed layout */
    assert_int_equal(qt_pack_bytes(QT_Q8_0, 48, 16), 0);  /* not whole blocks */
    static const uint32_t types[] = {QT_Q8_0, QT_Q4_0};
    static const int64_t sizes[] = {32, 96, 896, 8192 + 96};
    static const int64_t rows[] = {16, 5, 37, 64};
    static const int32_t toks[] = {1, 2, 8, 9, 70};
    for (size_t a = 0; a < 2; a++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
                for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++)
                    check_packed(types[a], sizes[i], rows[r], toks[t]);
}

/* ---- level selection ---- */
static void test_isa_select(void **state) {
    (void)state;
    int best = qt_isa_best();
    assert_true(best >= QT_ISA_GENERIC && best <= QT_ISA_AVX512VBMI);
    assert_int_equal(qt_set_isa(QT_ISA_GENERIC), QT_ISA_GENERIC);
    assert_int_equal(qt_isa(), QT_ISA_GENERIC);
    assert_int_equal(qt_set_isa(QT_ISA_AVX512VBMI + 5), best); /* capped, never raised */
    assert_int_equal(qt_isa(), best);
    assert_string_equal(qt_isa_name(QT_ISA_AVX2), "avx2");
    assert_string_equal(qt_isa_name(QT_ISA_AVX512), "avx512");
    assert_string_equal(qt_isa_name(QT_ISA_AVX512VBMI), "avx512vbmi");
    assert_string_equal(qt_isa_name(QT_ISA_GENERIC), "generic");
}

static void test_report(void **state) {
    (void)state;
    int lv[4], nl = simd_levels(lv);
    print_message("quant_simd: best level %s; compared against generic:",
                  qt_isa_name(qt_isa_best()));
    for (int l = 0; l < nl; l++)
        print_message(" %s%s", qt_isa_name(lv[l]), levels_run[lv[l]] ? "" : " (not run)");
    print_message(nl ? "\n" : " none (no SIMD level on this CPU)\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_select),     cmocka_unit_test(test_prep_act),
        cmocka_unit_test(test_matmul_q8_0),    cmocka_unit_test(test_matmul_q4_0),
        cmocka_unit_test(test_matmul_q4_k),    cmocka_unit_test(test_matmul_q6_k),
        cmocka_unit_test(test_matmul_q4_1),    cmocka_unit_test(test_matmul_q5_0),
        cmocka_unit_test(test_matmul_q5_1),    cmocka_unit_test(test_matmul_q5_k),
        cmocka_unit_test(test_matmul_f16),     cmocka_unit_test(test_matmul_bf16),
        cmocka_unit_test(test_matmul_f32),     cmocka_unit_test(test_float_rows),
        cmocka_unit_test(test_attention_rows), cmocka_unit_test(test_packed),
        cmocka_unit_test(test_exp_rows),       cmocka_unit_test(test_float_order),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
