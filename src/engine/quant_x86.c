/* quant_x86.c - AVX2 and AVX-512 kernels for quant.c's kernel table, chosen at run time.
 *
 * The build targets x86-64-v2, so each kernel carries its own target (GCC pragmas) and is
 * only installed after the CPU reported the features. Three levels:
 *   avx2:       AVX2 + FMA + F16C; 8-bit dots with vpmaddubsw (+ sign tricks).
 *   avx512:     AVX-512 F/BW/VL/DQ + VNNI (vpdpbusd, vpdpwssd); BF16 dots with vdpbf16ps
 *               when the CPU has AVX512-BF16.
 *   avx512vbmi: avx512 + byte permutes (vpermb, vpermt2b): Q4_0 decode gathers four blocks'
 *               quants and scales with two permutes.
 *
 * Three shapes of matrix product:
 *   - decode (one token): one weight row at a time. Interleaving several row streams halved
 *     the memory bandwidth on the test machine (its prefetchers follow one stream well), so
 *     the activation side is prepared once per call and each row costs only its own bytes.
 *   - few tokens: tiles of RM rows x RN tokens with RM*RN accumulators; rows outer so the
 *     rows stay in L1 while every token passes (256-bit integer template, both levels).
 *   - prompts (avx512, Q8_0/Q4_0/Q4_K/Q5_K/Q6_K): 16 weight rows repacked per vector lane,
 *     token activations broadcast; no horizontal sums, ~4x fewer instructions per product.
 *     Q5_0 instead pairs rows in the two halves of a vector, so each row keeps llama.cpp's
 *     8-lane order (a 16-row layout would make each row's sum one scalar chain).
 * Integer parts are exact (the portable code's integers). Float sums are reordered in the
 * Q8_0/Q4_0 decode kernels (Q5_0's keeps the template's order); the K-quant kernels and
 * the 16-row kernels keep the portable code's per-row float order, and the attention
 * helpers are bit-identical at every level (tiny models turned last-bit differences into
 * percent-level logit changes).
 *
 * The tile kernels are the same code at both levels except for the 8-bit dot itself, so
 * that part of this file is a template: it includes itself once per level (QX_TEMPLATE)
 * with QX() naming the level's copy. */
#ifndef QX_TEMPLATE

#include "engine/quant_impl.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---- CPU detection ---- */
static int has_avx512bf16(void) {
    return __builtin_cpu_supports("avx512bf16");
}

int qti_x86_best(void) {
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    if (!avx2) return QT_ISA_GENERIC;
    /* libgcc also checks that the OS saves the ZMM state before reporting avx512f */
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512vnni");
    if (!avx512) return QT_ISA_AVX2;
    return __builtin_cpu_supports("avx512vbmi") ? QT_ISA_AVX512VBMI : QT_ISA_AVX512;
}

/* ---- tiling driver (no SIMD of its own) ---- */
/* A tile: rows [0, RM) of w x tokens [0, RN) of act into y[t * ys + r]; RM, RN are fixed
 * per function so the accumulators live in registers. */
typedef void (*tile_fn)(const uint8_t *w, size_t rb, const uint8_t *act, size_t as, int64_t n,
                        float *y, int64_t ys);

typedef struct {
    int mr, nr;      /* full tile */
    tile_fn full[4]; /* [rn - 1]: mr rows x rn tokens */
    tile_fn one[4];  /* [rn - 1]: 1 row x rn tokens, for the last rows */
} tile_set;

static void run_tiles(const tile_set *ts, const void *w, size_t rb, int64_t n, int64_t r0,
                      int64_t r1, const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    const uint8_t *wb = w, *ab = act;
    for (int64_t r = r0; r < r1;) {
        int full = r1 - r >= ts->mr;
        const tile_fn *fns = full ? ts->full : ts->one;
        if (nt > ts->nr && r + ts->mr < r1) {
            /* The first token tile reads mr rows side by side, a pattern the hardware
             * prefetchers follow poorly; ask for the next rows while these compute. */
            const char *nx = (const char *)wb + (size_t)(r + ts->mr) * rb;
            size_t len = (size_t)ts->mr * rb;
            for (size_t off = 0; off < len; off += 64) _mm_prefetch(nx + off, _MM_HINT_T1);
        }
        for (int32_t t = 0; t < nt; t += ts->nr) {
            int rn = nt - t < ts->nr ? nt - t : ts->nr;
            fns[rn - 1](wb + (size_t)r * rb, rb, ab + (size_t)t * as, as, n, y + t * ys + r, ys);
        }
        r += full ? ts->mr : 1;
    }
}

/* Instantiation: tile functions from an always-inline template tmpl(RM, RN, ...), and the
 * sets built from them (the extra macro levels let QX(...) names expand before pasting). */
#define QX_TILE_(tmpl, pre, RM, RN)                                                                \
    static void pre##_##RM##x##RN(const uint8_t *w, size_t rb, const uint8_t *a, size_t as,        \
                                  int64_t n, float *y, int64_t ys) {                               \
        tmpl(RM, RN, w, rb, a, as, n, y, ys);                                                      \
    }
#define QX_TILE(tmpl, pre, RM, RN) QX_TILE_(tmpl, pre, RM, RN)

/* decode set: MR x 1 */
#define QX_SET1_(tmpl, pre, MR)                                                                    \
    QX_TILE(tmpl, pre, MR, 1)                                                                      \
    QX_TILE(tmpl, pre, 1, 1)                                                                       \
    static const tile_set pre##_set = {MR, 1, {pre##_##MR##x1}, {pre##_1x1}};
#define QX_SET1(tmpl, pre, MR) QX_SET1_(tmpl, pre, MR)

/* decode set of single rows: one weight stream at a time, which the hardware prefetchers
 * follow at full bandwidth (interleaving 4 row streams halved it on the test machine) */
#define QX_SETR_(tmpl, pre)                                                                        \
    QX_TILE(tmpl, pre, 1, 1)                                                                       \
    static const tile_set pre##_set = {1, 1, {pre##_1x1}, {pre##_1x1}};
#define QX_SETR(tmpl, pre) QX_SETR_(tmpl, pre)

#define QX_SET2_(tmpl, pre, MR)                                                                    \
    QX_TILE(tmpl, pre, MR, 1)                                                                      \
    QX_TILE(tmpl, pre, MR, 2)                                                                      \
    QX_TILE(tmpl, pre, 1, 1)                                                                       \
    QX_TILE(tmpl, pre, 1, 2)                                                                       \
    static const tile_set pre##_set = {                                                            \
        MR, 2, {pre##_##MR##x1, pre##_##MR##x2}, {pre##_1x1, pre##_1x2}};
#define QX_SET2(tmpl, pre, MR) QX_SET2_(tmpl, pre, MR)

#define QX_SET3_(tmpl, pre, MR)                                                                    \
    QX_TILE(tmpl, pre, MR, 1)                                                                      \
    QX_TILE(tmpl, pre, MR, 2)                                                                      \
    QX_TILE(tmpl, pre, MR, 3)                                                                      \
    QX_TILE(tmpl, pre, 1, 1)                                                                       \
    QX_TILE(tmpl, pre, 1, 2)                                                                       \
    QX_TILE(tmpl, pre, 1, 3)                                                                       \
    static const tile_set pre##_set = {MR,                                                         \
                                       3,                                                          \
                                       {pre##_##MR##x1, pre##_##MR##x2, pre##_##MR##x3},           \
                                       {pre##_1x1, pre##_1x2, pre##_1x3}};
#define QX_SET3(tmpl, pre, MR) QX_SET3_(tmpl, pre, MR)

#define QX_SET4_(tmpl, pre, MR)                                                                    \
    QX_TILE(tmpl, pre, MR, 1)                                                                      \
    QX_TILE(tmpl, pre, MR, 2)                                                                      \
    QX_TILE(tmpl, pre, MR, 3)                                                                      \
    QX_TILE(tmpl, pre, MR, 4)                                                                      \
    QX_TILE(tmpl, pre, 1, 1)                                                                       \
    QX_TILE(tmpl, pre, 1, 2)                                                                       \
    QX_TILE(tmpl, pre, 1, 3)                                                                       \
    QX_TILE(tmpl, pre, 1, 4)                                                                       \
    static const tile_set pre##_set = {                                                            \
        MR,                                                                                        \
        4,                                                                                         \
        {pre##_##MR##x1, pre##_##MR##x2, pre##_##MR##x3, pre##_##MR##x4},                          \
        {pre##_1x1, pre##_1x2, pre##_1x3, pre##_1x4}};
#define QX_SET4(tmpl, pre, MR) QX_SET4_(tmpl, pre, MR)
#define QX_SET_(tmpl, pre, MR, NR) QX_SET##NR(tmpl, pre, MR)
#define QX_SET(tmpl, pre, MR, NR) QX_SET_(tmpl, pre, MR, NR)

/* A matmul entry: the decode set for one token, the prompt set otherwise. */
#define QX_MATMUL_(name, dec, pp)                                                                  \
    static void name(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1, const void *act, \
                     size_t as, int32_t nt, float *y, int64_t ys) {                                \
        run_tiles(nt == 1 ? &dec##_set : &pp##_set, w, rb, n, r0, r1, act, as, nt, y, ys);         \
    }
#define QX_MATMUL(name, dec, pp) QX_MATMUL_(name, dec, pp)

#ifndef QX_PF
#define QX_PF 512
#endif
#define AI static inline __attribute__((always_inline))
/* Tiles index small arrays of vectors with loop counters: only full unrolling lets them
 * live in registers, and -O2 does not unroll on its own; hence the unroll pragmas. */

/* ================================ AVX2 level ================================ */
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

AI float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI int32_t hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

AI float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AI float f32_at(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

/* 32 floats -> 32 int8 rounded to nearest even with saturation, in order. */
AI __m256i quant32(const float *x, __m256 scale) {
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), scale));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), scale));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), scale));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), scale));
    __m256i ab = _mm256_packs_epi32(i0, i1);
    __m256i cd = _mm256_packs_epi32(i2, i3);
    __m256i q = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

AI __m256 absmax8(__m256 m, __m256 v) {
    return _mm256_max_ps(m, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v));
}

AI float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Q8_0 activations, bit-identical to quant.c's act_q8_0. */
static void act_q8_0_avx2(const float *x, void *dst, int64_t n) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        __m256 m = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int j = 0; j < 32; j += 8) m = absmax8(m, _mm256_loadu_ps(x + j));
        float amax = hmax256(m);
        b[i].d = _cvtss_sh(amax / 127.0f, _MM_FROUND_TO_NEAREST_INT);
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        _mm256_storeu_si256((__m256i *)b[i].qs, quant32(x, _mm256_set1_ps(id)));
    }
}

/* Q8_1 activations (Q4_1/Q5_1), bit-identical to quant.c's act_q8_1: Q8_0's, plus the sum
 * of the stored quants times the unrounded d. */
static void act_q8_1_avx2(const float *x, void *dst, int64_t n) {
    blk_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        __m256 m = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int j = 0; j < 32; j += 8) m = absmax8(m, _mm256_loadu_ps(x + j));
        float amax = hmax256(m);
        float d = amax / 127.0f;
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        __m256i q = quant32(x, _mm256_set1_ps(id));
        _mm256_storeu_si256((__m256i *)b[i].qs, q);
        __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
        int32_t sum = hsum256_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
        b[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        b[i].s = _cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT);
    }
}

/* Q8_K activations, bit-identical to quant.c's q_q8_k. */
static void act_q8_k_avx2(const float *x, void *dst, int64_t n) {
    blk_q8_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) m = absmax8(m, _mm256_loadu_ps(x + j));
        float amax = hmax256(m);
        if (amax == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        /* the portable code keeps the first element of largest magnitude (its sign) */
        float max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (__builtin_fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 s = _mm256_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i q = quant32(x + j, s);
            _mm256_storeu_si256((__m256i *)(b[i].qs + j), q);
            /* sums of each 16: widen to int16, pair-add, then finish the 8 pairs */
            __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1));
            __m256i s0 = _mm256_madd_epi16(w0, _mm256_set1_epi16(1));
            __m256i s1 = _mm256_madd_epi16(w1, _mm256_set1_epi16(1));
            b[i].bsums[j / 16] = (int16_t)hsum256_epi32(s0);
            b[i].bsums[j / 16 + 1] = (int16_t)hsum256_epi32(s1);
        }
        b[i].d = 1 / iscale;
    }
}

/* F16 activations (also the attention row helper): F16C rounds to nearest even like
 * qt_f32_to_f16, NaNs included. */
static void f32_to_f16_row_avx2(const float *x, uint16_t *h, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = qt_f32_to_f16(x[i]);
}

static void act_f16_avx2(const float *x, void *dst, int64_t n) {
    f32_to_f16_row_avx2(x, dst, n);
}

/* BF16 activations: integer rounding, as quant.c's qt_f32_to_bf16. */
static void act_bf16_avx2(const float *x, void *dst, int64_t n) {
    uint16_t *h = dst;
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8 * k));
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            __m256i rnd = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
            __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
            r[k] = _mm256_blendv_epi8(rnd, qn, nan);
        }
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(h + i), p);
    }
    for (; i < n; i++) h[i] = qt_f32_to_bf16(x[i]);
}

/* ---- float rows ---- */
/* Bit-identical to the portable dot_f32: 8 lanes, multiply then add, the tail into lane 0,
 * lanes summed in order. */
static float dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    float l[8];
    _mm256_storeu_ps(l, acc);
    for (; i < n; i++) l[0] += a[i] * b[i];
    float s = 0;
    for (int k = 0; k < 8; k++) s += l[k];
    return s;
}

/* Multiply then add, not fused: the same roundings as the portable loop. */
static void axpy_f32_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i),
                                              _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

/* 8 keys side by side: one 8-lane accumulator per key, then an 8x8 transpose puts lane l
 * of every key in vector l, so the lanes are summed in dot_f32's order (0 + l0 + l1 ...)
 * for 8 keys at once. Rows whose length is not a multiple of 8 use dot_f32_avx2. */
AI void transpose8_ps(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

static void dot_f32_rows_avx2(const float *q, const float *k, size_t stride, int64_t nk, int64_t n,
                              float scale, float *out) {
    int64_t j = 0;
    if (n % 8 == 0) {
        const __m256 vs = _mm256_set1_ps(scale);
        for (; j + 8 <= nk; j += 8) {
            const float *kj = k + (size_t)j * stride;
            __m256 acc[8];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) acc[u] = _mm256_setzero_ps();
            for (int64_t i = 0; i < n; i += 8) {
                __m256 qv = _mm256_loadu_ps(q + i);
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++)
                    acc[u] = _mm256_add_ps(
                        acc[u], _mm256_mul_ps(qv, _mm256_loadu_ps(kj + (size_t)u * stride + i)));
            }
            transpose8_ps(acc);
            __m256 sum = _mm256_add_ps(_mm256_setzero_ps(), acc[0]);
#pragma GCC unroll 8
            for (int l = 1; l < 8; l++) sum = _mm256_add_ps(sum, acc[l]);
            _mm256_storeu_ps(out + j, _mm256_mul_ps(sum, vs));
        }
    }
    for (; j < nk; j++) out[j] = dot_f32_avx2(q, k + (size_t)j * stride, n) * scale;
}

/* o in registers, 64 elements (8 vectors) a pass over the values; multiply then add */
static void axpy_f32_rows_avx2(float *o, const float *p, const float *v, size_t stride, int64_t nv,
                               int64_t n) {
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256 acc[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) acc[u] = _mm256_loadu_ps(o + i + 8 * u);
        for (int64_t j = 0; j < nv; j++) {
            const float *vj = v + (size_t)j * stride + i;
            __m256 pj = _mm256_set1_ps(p[j]);
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                acc[u] = _mm256_add_ps(acc[u], _mm256_mul_ps(pj, _mm256_loadu_ps(vj + 8 * u)));
        }
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) _mm256_storeu_ps(o + i + 8 * u, acc[u]);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 acc = _mm256_loadu_ps(o + i);
        for (int64_t j = 0; j < nv; j++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(p[j]),
                                                   _mm256_loadu_ps(v + (size_t)j * stride + i)));
        _mm256_storeu_ps(o + i, acc);
    }
    for (; i < n; i++) {
        float a = o[i];
        for (int64_t j = 0; j < nv; j++) a += p[j] * v[(size_t)j * stride + i];
        o[i] = a;
    }
}

/* qt_exp on 8 lanes: the same operations in the same order (quant_impl.h) */
AI __m256 exp8_avx2(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(QT_EXP_LO));
    x = _mm256_min_ps(x, _mm256_set1_ps(QT_EXP_HI));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(QT_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(k, _mm256_set1_ps(QT_EXP_LN2HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(k, _mm256_set1_ps(QT_EXP_LN2LO)));
    __m256 p = _mm256_set1_ps(QT_EXP_C6);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QT_EXP_C5));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QT_EXP_C4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QT_EXP_C3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(QT_EXP_C2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void softmax_row_avx2(float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm);
    float l[8];
    _mm256_storeu_ps(l, vm);
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++) mx = l[k] > mx ? l[k] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    /* exp and the 8 partial double sums (lane k: elements i % 8 == k) */
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    const __m256 vmx = _mm256_set1_ps(mx);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double acc[8];
    _mm256_storeu_pd(acc, a0);
    _mm256_storeu_pd(acc + 4, a1);
    for (; i < n; i++) {
        x[i] = qt_exp(x[i] - mx);
        acc[i % 8] += x[i];
    }
    double sum = 0;
    for (int k = 0; k < 8; k++) sum += acc[k];
    float inv = (float)(1.0 / sum);
    const __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
    for (; i < n; i++) x[i] *= inv;
}

static void swiglu_row_avx2(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i);
        __m256 e = exp8_avx2(_mm256_xor_ps(v, _mm256_set1_ps(-0.0f))); /* -g, as the C */
        _mm256_storeu_ps(
            g + i, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + qt_exp(-g[i])) * u[i];
}

static void round_f16_row_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                                                _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) x[i] = qt_f16_to_f32(qt_f32_to_f16(x[i]));
}

static void f16_to_f32_row_avx2(const uint16_t *h, float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) x[i] = qt_f16_to_f32(h[i]);
}

/* ---- float matmuls: 8 elements a step, a scalar tail ---- */
#define F_F32 0
#define F_F16 1
#define F_BF16 2

AI __m256 load8_avx2(int kind, const uint8_t *p) {
    if (kind == F_F32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (kind == F_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AI float load1(int kind, const uint8_t *p, int64_t i) {
    if (kind == F_F32) return f32_at(p + 4 * i);
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return kind == F_F16 ? qt_f16_to_f32(h) : qt_bf16_to_f32(h);
}

AI void fl_tile_avx2(int kind, int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *act,
                     size_t as, int64_t n, float *y, int64_t ys) {
    const int es = kind == F_F32 ? 4 : 2;
    __m256 acc[4][4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[4], av[4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) wv[r] = load8_avx2(kind, w + r * rb + i * es);
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) av[t] = load8_avx2(kind, act + t * as + i * es);
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
            for (int t = 0; t < RN; t++) acc[r][t] = _mm256_fmadd_ps(wv[r], av[t], acc[r][t]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) {
            float s = hsum256(acc[r][t]);
            for (int64_t k = i; k < n; k++)
                s += load1(kind, w + r * rb, k) * load1(kind, act + t * as, k);
            y[t * ys + r] = s;
        }
}

AI void f32_tile_avx2(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    fl_tile_avx2(F_F32, RM, RN, w, rb, a, as, n, y, ys);
}
AI void f16_tile_avx2(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    fl_tile_avx2(F_F16, RM, RN, w, rb, a, as, n, y, ys);
}
AI void bf16_tile_avx2(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                       int64_t n, float *y, int64_t ys) {
    fl_tile_avx2(F_BF16, RM, RN, w, rb, a, as, n, y, ys);
}

QX_SETR(f32_tile_avx2, f32_avx2_dec)
QX_SET(f32_tile_avx2, f32_avx2_pp, 3, 3)
QX_MATMUL(mm_f32_avx2, f32_avx2_dec, f32_avx2_pp)
QX_SETR(f16_tile_avx2, f16_avx2_dec)
QX_SET(f16_tile_avx2, f16_avx2_pp, 3, 3)
QX_MATMUL(mm_f16_avx2, f16_avx2_dec, f16_avx2_pp)
QX_SETR(bf16_tile_avx2, bf16_avx2_dec)
QX_SET(bf16_tile_avx2, bf16_avx2_pp, 3, 3)
QX_MATMUL(mm_bf16_avx2, bf16_avx2_dec, bf16_avx2_pp)

/* the integer kernels of this level */
#define QX_TEMPLATE 1
#define QX(name) name##_avx2
#define QX_VNNI 0
#define QX_MR 2 /* prompt tiles: 2 rows x 3 tokens fit AVX2's 16 registers */
#define QX_NR 3
#define QX_KMR 2
#define QX_KNR 2
#include "engine/quant_x86.c"
#undef QX
#undef QX_VNNI
#undef QX_MR
#undef QX_NR
#undef QX_KMR
#undef QX_KNR

static void fill_avx2(qti_kernels *k) {
    k->matmul[QT_F32] = mm_f32_avx2;
    k->matmul[QT_F16] = mm_f16_avx2;
    k->matmul[QT_BF16] = mm_bf16_avx2;
    fill_int_avx2(k);
    k->act[QT_Q8_0] = act_q8_0_avx2;
    k->act[QT_Q8_1] = act_q8_1_avx2;
    k->act[QT_Q8_K] = act_q8_k_avx2;
    k->act[QT_F16] = act_f16_avx2;
    k->act[QT_BF16] = act_bf16_avx2;
    k->dot_f32 = dot_f32_avx2;
    k->axpy_f32 = axpy_f32_avx2;
    k->f16_to_f32_row = f16_to_f32_row_avx2;
    k->f32_to_f16_row = f32_to_f16_row_avx2;
    k->dot_f32_rows = dot_f32_rows_avx2;
    k->axpy_f32_rows = axpy_f32_rows_avx2;
    k->round_f16_row = round_f16_row_avx2;
    k->softmax_row = softmax_row_avx2;
    k->swiglu_row = swiglu_row_avx2;
}

#pragma GCC pop_options

/* ================================ AVX-512 level ================================ */
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")

AI __m512 load16_512(int kind, const uint8_t *p, __mmask16 m) {
    if (kind == F_F32) return _mm512_maskz_loadu_ps(m, p);
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (kind == F_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 elements a step; the tail is a masked step (masked loads do not fault). */
AI void fl_tile_512(int kind, int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *act,
                    size_t as, int64_t n, float *y, int64_t ys) {
    const int es = kind == F_F32 ? 4 : 2;
    if (RM * RN == 1) { /* decode: four chains, or the fmadd latency is the limit */
        __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
        int64_t i = 0;
        for (; i + 64 <= n; i += 64)
#pragma GCC unroll 16
            for (int u = 0; u < 4; u++)
                s[u] = _mm512_fmadd_ps(load16_512(kind, w + (i + 16 * u) * es, 0xffff),
                                       load16_512(kind, act + (i + 16 * u) * es, 0xffff), s[u]);
        for (; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
            s[0] = _mm512_fmadd_ps(load16_512(kind, w + i * es, m),
                                   load16_512(kind, act + i * es, m), s[0]);
        }
        y[0] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
        return;
    }
    __m512 acc[4][4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 wv[4], av[4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) wv[r] = load16_512(kind, w + r * rb + i * es, m);
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) av[t] = load16_512(kind, act + t * as + i * es, m);
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
            for (int t = 0; t < RN; t++) acc[r][t] = _mm512_fmadd_ps(wv[r], av[t], acc[r][t]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) y[t * ys + r] = _mm512_reduce_add_ps(acc[r][t]);
}

AI void f32_tile_512(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                     int64_t n, float *y, int64_t ys) {
    fl_tile_512(F_F32, RM, RN, w, rb, a, as, n, y, ys);
}
AI void f16_tile_512(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                     int64_t n, float *y, int64_t ys) {
    fl_tile_512(F_F16, RM, RN, w, rb, a, as, n, y, ys);
}
AI void bf16_tile_512(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    fl_tile_512(F_BF16, RM, RN, w, rb, a, as, n, y, ys);
}

/* F16 decode: the activation row is widened to f32 once per call (in chunks on the
 * stack), so each weight row costs one conversion and one fmadd per 16 elements. */
#define F16_DEC_CHUNK 4096

static void mm_dec_f16_512(const void *wv, size_t rb, int64_t n, int64_t r0, int64_t r1,
                           const void *actv, float *y) {
    const uint8_t *w = wv;
    const uint16_t *act = actv;
    float xa[F16_DEC_CHUNK];
    for (int64_t k0 = 0; k0 < n; k0 += F16_DEC_CHUNK) {
        int64_t kc = n - k0 < F16_DEC_CHUNK ? n - k0 : F16_DEC_CHUNK;
        for (int64_t i = 0; i < kc; i += 16) {
            __mmask16 m = kc - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (kc - i)) - 1);
            _mm512_mask_storeu_ps(xa + i, m,
                                  _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, act + k0 + i)));
        }
        for (int64_t r = r0; r < r1; r++) {
            const uint16_t *h = (const uint16_t *)(w + (size_t)r * rb) + k0;
            __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
                   s3 = _mm512_setzero_ps();
            int64_t i = 0;
            for (; i + 64 <= kc; i += 64) {
                s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))),
                                     _mm512_loadu_ps(xa + i), s0);
                s1 = _mm512_fmadd_ps(
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 16))),
                    _mm512_loadu_ps(xa + i + 16), s1);
                s2 = _mm512_fmadd_ps(
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 32))),
                    _mm512_loadu_ps(xa + i + 32), s2);
                s3 = _mm512_fmadd_ps(
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 48))),
                    _mm512_loadu_ps(xa + i + 48), s3);
            }
            for (; i < kc; i += 16) {
                __mmask16 m = kc - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (kc - i)) - 1);
                s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + i)),
                                     _mm512_maskz_loadu_ps(m, xa + i), s0);
            }
            float s =
                _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
            y[r] = k0 == 0 ? s : y[r] + s;
        }
    }
}

QX_SETR(f32_tile_512, f32_512_dec)
QX_SET(f32_tile_512, f32_512_pp, 4, 4)
QX_MATMUL(mm_f32_512, f32_512_dec, f32_512_pp)
QX_SET(f16_tile_512, f16_512_pp, 4, 4)

static void mm_f16_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1, const void *act,
                       size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1)
        mm_dec_f16_512(w, rb, n, r0, r1, act, y);
    else
        run_tiles(&f16_512_pp_set, w, rb, n, r0, r1, act, as, nt, y, ys);
}
QX_SETR(bf16_tile_512, bf16_512_dec)
QX_SET(bf16_tile_512, bf16_512_pp, 4, 4)
QX_MATMUL(mm_bf16_512, bf16_512_dec, bf16_512_pp)

static void axpy_f32_512(float *y, float a, const float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                 _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, x + i)));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

#define QX(name) name##_avx512
#define QX_VNNI 1
#define QX_MR 4 /* 4 x 4 tiles: 16 accumulators of the 32 registers */
#define QX_NR 4
#define QX_KMR 4
#define QX_KNR 2
#include "engine/quant_x86.c"
#undef QX
#undef QX_VNNI
#undef QX_MR
#undef QX_NR
#undef QX_KMR
#undef QX_KNR

/* ---- Q8_0 / Q4_0 with 512-bit vectors: two blocks a step ---- */
/* Same integers as the 256-bit template (unsigned weights, -K * activation sums as the
 * accumulator's start); each 256-bit half of a vector is one block with its own scale.
 * A trailing odd block runs the same step with the upper halves zeroed. */
AI __m512i load2_512(const uint8_t *p, size_t stride, int two) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)p);
    if (!two) return _mm512_zextsi256_si512(lo);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                              _mm256_loadu_si256((const __m256i *)(p + stride)), 1);
}

/* [scale of block 0] x 8, [scale of block 1 or 0] x 8 */
AI __m512 scale2_512(const uint8_t *p, size_t stride, int two) {
    uint16_t h0, h1 = 0;
    memcpy(&h0, p, 2);
    if (two) memcpy(&h1, p + stride, 2);
    return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short)h1), _mm_set1_epi16((short)h0)));
}

/* The same for the nibble order of the decode kernel: 128-bit lanes hold block 0, block 1,
 * block 0, block 1, so the scales repeat per 4 lanes: [d0 x4, d1 x4] twice. */
AI __m512 scale2q4_512(const uint8_t *p, size_t stride, int two) {
    uint16_t h0, h1 = 0;
    memcpy(&h0, p, 2);
    if (two) memcpy(&h1, p + stride, 2);
    __m128i v = _mm_unpacklo_epi64(_mm_set1_epi16((short)h0), _mm_set1_epi16((short)h1));
    return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(v));
}

AI void q32_step_512(int kind, int RM, int RN, int two, const uint8_t *w, size_t rb,
                     const uint8_t *act, size_t as, int64_t b, __m512 acc[4][4]) {
    const size_t wbs = kind == QT_Q8_0 ? sizeof(blk_q8_0) : sizeof(blk_q4_0);
    const __m512i kk = _mm512_set1_epi8(kind == QT_Q8_0 ? (char)0x80 : 8);
    __m512i wq[4];
    __m512 dw[4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++) {
        const uint8_t *p = w + r * rb + b * wbs;
        dw[r] = scale2_512(p, wbs, two);
        if (kind == QT_Q8_0) {
            wq[r] = _mm512_xor_si512(load2_512(p + 2, wbs, two), kk);
        } else {
            const __m256i m4 = _mm256_set1_epi8(0x0f);
            __m128i x0 = _mm_loadu_si128((const __m128i *)(p + 2));
            __m128i x1 =
                two ? _mm_loadu_si128((const __m128i *)(p + 2 + wbs)) : _mm_setzero_si128();
            __m256i x = _mm256_set_m128i(x1, x0);
            __m256i lo = _mm256_and_si256(x, m4),
                    hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
            wq[r] = _mm512_permutex2var_epi64(_mm512_castsi256_si512(lo),
                                              _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11),
                                              _mm512_castsi256_si512(hi));
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < RN; t++) {
        const uint8_t *q = act + t * as + b * sizeof(blk_q8_0);
        __m512 da = scale2_512(q, sizeof(blk_q8_0), two);
        __m512i a = load2_512(q + 2, sizeof(blk_q8_0), two);
        __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(),
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(), kk, a));
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            __m512i p = _mm512_dpbusd_epi32(c, wq[r], a);
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[r], da), acc[r][t]);
        }
    }
}

AI void q32_tile_512(int kind, int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *act,
                     size_t as, int64_t n, float *y, int64_t ys) {
    const int64_t nb = n / QK8_0;
    __m512 acc[4][4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) q32_step_512(kind, RM, RN, 1, w, rb, act, as, b, acc);
    if (b < nb) q32_step_512(kind, RM, RN, 0, w, rb, act, as, b, acc);
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) y[t * ys + r] = _mm512_reduce_add_ps(acc[r][t]);
}

AI void q8_0_tile_512(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    q32_tile_512(QT_Q8_0, RM, RN, w, rb, a, as, n, y, ys);
}
AI void q4_0_tile_512(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    q32_tile_512(QT_Q4_0, RM, RN, w, rb, a, as, n, y, ys);
}

/* Decode (one token): a single weight stream, so everything on the activation side -
 * pairs of blocks, their scales, the -K * sums - is prepared once per call (in chunks of
 * DEC_PAIRS block pairs on the stack) and each weight row costs only its own unpacking. */
#define DEC_PAIRS 128

AI void q32_dec_512(int kind, const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                    const uint8_t *act, float *y) {
    const size_t wbs = kind == QT_Q8_0 ? sizeof(blk_q8_0) : sizeof(blk_q4_0);
    const size_t abs_ = sizeof(blk_q8_0);
    const __m512i kk = _mm512_set1_epi8(kind == QT_Q8_0 ? (char)0x80 : 8);
    const __m512i m4z = _mm512_set1_epi8(0x0f);
    __m512i av[DEC_PAIRS], cv[DEC_PAIRS];
    __m512 dav[DEC_PAIRS];
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += 2 * DEC_PAIRS) {
        int64_t nbc = nb - b0 < 2 * DEC_PAIRS ? nb - b0 : 2 * DEC_PAIRS;
        int64_t np = (nbc + 1) / 2;
        for (int64_t j = 0; j < np; j++) {
            int two = 2 * j + 1 < nbc;
            const uint8_t *q = act + (b0 + 2 * j) * abs_;
            dav[j] = kind == QT_Q4_0 ? scale2q4_512(q, abs_, two) : scale2_512(q, abs_, two);
            av[j] = load2_512(q + 2, abs_, two);
            if (kind == QT_Q4_0) /* to the weights' nibble order: lows of both, then highs */
                av[j] = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7), av[j]);
            cv[j] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(), kk, av[j]));
        }
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *p = w + (size_t)r * rb + b0 * wbs;
            __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
            for (int64_t j = 0; j < np; j++, p += 2 * wbs) {
                int two = 2 * j + 1 < nbc;
                __m512i wq;
                __m512 dw;
                if (kind == QT_Q8_0) {
                    wq = _mm512_xor_si512(two ? load2_512(p + 2, wbs, 1) : load2_512(p + 2, wbs, 0),
                                          kk);
                } else {
                    __m128i x0 = _mm_loadu_si128((const __m128i *)(p + 2));
                    __m128i x1 =
                        two ? _mm_loadu_si128((const __m128i *)(p + 2 + wbs)) : _mm_setzero_si128();
                    __m256i x = _mm256_set_m128i(x1, x0);
                    wq = _mm512_and_si512(
                        _mm512_inserti64x4(_mm512_castsi256_si512(x), _mm256_srli_epi16(x, 4), 1),
                        m4z);
                }
                if (kind == QT_Q4_0)
                    dw = two ? scale2q4_512(p, wbs, 1) : scale2q4_512(p, wbs, 0);
                else
                    dw = two ? scale2_512(p, wbs, 1) : scale2_512(p, wbs, 0);
                __m512i pr = _mm512_dpbusd_epi32(cv[j], wq, av[j]);
                /* two accumulators: consecutive fmadds need not wait for each other */
                if (j & 1)
                    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(dw, dav[j]), acc1);
                else
                    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(dw, dav[j]), acc0);
            }
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
            y[r] = b0 == 0 ? s : y[r] + s;
        }
    }
}

static void mm_dec_q8_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                            const void *act, float *y) {
    q32_dec_512(QT_Q8_0, w, rb, n, r0, r1, act, y);
}
static void mm_dec_q4_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                            const void *act, float *y) {
    q32_dec_512(QT_Q4_0, w, rb, n, r0, r1, act, y);
}

/* ---- Q5_0 decode with 512-bit vectors: two blocks a step ---- */
/* Lanes are [block 0 elements 0-15 | 16-31 | block 1 elements 0-15 | 16-31]: each 16-byte
 * qs is broadcast to two 128-bit lanes and shifted by 0 or 4, so the activations keep their
 * order and the two qh words, side by side in a 64-bit mask, give bit 4 of every byte in
 * one masked add. Weights unsigned (value + 16); the accumulator starts at -16 * the
 * activation sums, prepared once per call (rows up to 2 * DEC_PAIRS blocks, longer ones use
 * the template). The integers are 512 bits wide but the float sum is the 256-bit
 * template's, to the bit: 8 lanes, one fmadd per block in block order, then hsum256. That
 * is also llama.cpp's order for Q5_0 x Q8_0 on x86, and Qwen2.5-0.5B's Q4_K_M files are
 * mostly Q5_0: a 16-lane sum (two chains) was ~1.5x faster here but moved the greedy tokens
 * of a random-weight model away from llama.cpp's after 16 steps, for ~6 % end to end. */
AI __m512i q50_load2_512(const uint8_t *p, size_t wbs, int two) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* int16 shift counts: 0 for the low-nibble lanes 0 and 2, 4 for lanes 1 and 3 */
    const __m512i sh = _mm512_setr_epi64(0, 0, 0x0004000400040004ll, 0x0004000400040004ll, 0, 0,
                                         0x0004000400040004ll, 0x0004000400040004ll);
    __m256i x0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + 6)));
    __m256i x1 = two ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + wbs + 6)))
                     : _mm256_setzero_si256();
    __m512i q = _mm512_and_si512(
        _mm512_srlv_epi16(_mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1), sh), m4);
    uint32_t h0, h1 = 0;
    memcpy(&h0, p + 2, 4);
    if (two) memcpy(&h1, p + wbs + 2, 4);
    __mmask64 hb = _cvtu64_mask64((uint64_t)h0 | (uint64_t)h1 << 32);
    return _mm512_mask_add_epi8(q, hb, q, _mm512_set1_epi8(0x10));
}

static void q50_dec_512(const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                        const uint8_t *act, float *y) {
    const size_t wbs = sizeof(blk_q5_0), abs_ = sizeof(blk_q8_0);
    const __m512i k16 = _mm512_set1_epi8(16);
    __m512i av[DEC_PAIRS], cv[DEC_PAIRS];
    __m512 dav[DEC_PAIRS];
    const int64_t nb = n / QK8_0, np = (nb + 1) / 2;
    for (int64_t j = 0; j < np; j++) {
        int two = 2 * j + 1 < nb;
        const uint8_t *q = act + 2 * j * abs_;
        dav[j] = scale2_512(q, abs_, two);
        av[j] = load2_512(q + 2, abs_, two);
        cv[j] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                 _mm512_dpbusd_epi32(_mm512_setzero_si512(), k16, av[j]));
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *p = w + (size_t)r * rb;
        __m256 acc = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j < nb / 2; j++, p += 2 * wbs) {
            __m512i pr = _mm512_dpbusd_epi32(cv[j], q50_load2_512(p, wbs, 1), av[j]);
            __m512 f = _mm512_cvtepi32_ps(pr), s = _mm512_mul_ps(scale2_512(p, wbs, 1), dav[j]);
            acc = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm512_castps512_ps256(s), acc);
            acc = _mm256_fmadd_ps(_mm512_extractf32x8_ps(f, 1), _mm512_extractf32x8_ps(s, 1), acc);
        }
        if (j < np) {
            __m512i pr = _mm512_dpbusd_epi32(cv[j], q50_load2_512(p, wbs, 0), av[j]);
            acc = _mm256_fmadd_ps(
                _mm512_castps512_ps256(_mm512_cvtepi32_ps(pr)),
                _mm512_castps512_ps256(_mm512_mul_ps(scale2_512(p, wbs, 0), dav[j])), acc);
        }
        y[r] = hsum256(acc);
    }
}

QX_SET(q8_0_tile_512, q8_0_512_pp, 4, 4)
QX_SET(q4_0_tile_512, q4_0_512_pp, 4, 4)

/* ---- Q8_0 / Q4_0 prompt kernel: 16 weight rows per vector ---- */
/* For several tokens the tiles above spend 4 instructions per 64 multiply-adds. Here the
 * lanes of a vector are 16 rows: 16 rows are repacked once (unsigned quants, dword g of
 * every row's block in vector g: an 8x8 dword transpose per 256-bit half) and each token's
 * activation dwords are broadcast, so a block of 16 rows x 1 token is 8 vpdpbusd plus
 * the scaling, with no horizontal sums. Per row the float order is the portable code's:
 * sum += (float)isum * (dw * da), so results equal the generic level's. */
#define PK_BLOCKS 256 /* blocks per pass over k (8192 elements) */
#define PK_TOKENS 64  /* tokens whose sums and scales are prepared together */
#define PK_RT 8       /* tokens per inner tile */
#ifndef PK_MIN_TOKENS
#define PK_MIN_TOKENS 16 /* fewer: the tiles (rows read whole, 4 at a time) were 1.5x faster */
#endif

typedef struct {
    __m512i q[PK_BLOCKS][8]; /* q[b][g] lane j: bytes 4g..4g+3 of row j's block b, unsigned */
    __m512 d[PK_BLOCKS];     /* lane j: row j's scale of block b (0 for missing rows) */
    int32_t corr[PK_TOKENS][PK_BLOCKS]; /* -K * sum of the token's block */
    float da[PK_TOKENS][PK_BLOCKS];
} pk_buf;

#define PK4K_BLOCKS 32 /* blocks per pass over k (8192 elements) */

typedef struct {
    __m512i q[PK4K_BLOCKS][8][8]; /* [b][sub-block j][dword g] lane r: row r's 4 quants */
    __m512i sc[PK4K_BLOCKS][8];   /* int32 lanes: sc_j of each row */
    __m512i m2[PK4K_BLOCKS][4];   /* int16 pairs per lane: m_2p, m_2p+1 */
    __m512 d[PK4K_BLOCKS], dmin[PK4K_BLOCKS];
    int32_t bs2[PK_TOKENS][PK4K_BLOCKS][4]; /* int16 pairs: bsum2_2p, bsum2_2p+1 */
    float da[PK_TOKENS][PK4K_BLOCKS];
} pk4k_buf;

typedef struct {
    __m512i q[PK4K_BLOCKS][8][8]; /* [b][32-element group 4h+k][dword g] lane r: 4 quants */
    __m512i sc[PK4K_BLOCKS][16];  /* int32 lanes: sub-block scale of each row */
    __m512i sc2[PK4K_BLOCKS][8];  /* int16 pairs per lane: sc_2p, sc_2p+1 */
    __m512 d[PK4K_BLOCKS];
    int32_t bs[PK_TOKENS][PK4K_BLOCKS][8]; /* int16 pairs: bsum_2p, bsum_2p+1 */
    float da[PK_TOKENS][PK4K_BLOCKS];
} pk6k_buf;

/* Per thread, reused: no allocation on the hot path (the pool's threads and the caller's).
 * One kernel runs at a time per thread, so the layouts share the space. */
static _Thread_local union {
    pk_buf q8;
    pk4k_buf q4k;
    pk6k_buf q6k;
} pk_tls;

AI void pk_repack(int kind, pk_buf *pk, const uint8_t *w, size_t rb, int rows, int64_t b0,
                  int64_t nbc) {
    const size_t wbs = kind == QT_Q8_0 ? sizeof(blk_q8_0) : sizeof(blk_q4_0);
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m512i lohi = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i sel0 = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i sel1 = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int64_t b = 0; b < nbc; b++) {
        __m512i z[8];
        uint16_t dh[16];
        for (int j = 0; j < 16; j++) {
            if (j < rows)
                memcpy(&dh[j], w + (size_t)j * rb + (size_t)(b0 + b) * wbs, 2);
            else
                dh[j] = 0;
        }
        pk->d[b] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dh));
#pragma GCC unroll 16
        for (int k = 0; k < 8; k++) {
            /* z[k] = [row k | row k + 8]; missing rows read row 0 again (their scale is 0) */
            const uint8_t *p0 = w + (size_t)(k < rows ? k : 0) * rb + (size_t)(b0 + b) * wbs + 2;
            const uint8_t *p1 =
                w + (size_t)(k + 8 < rows ? k + 8 : 0) * rb + (size_t)(b0 + b) * wbs + 2;
            if (kind == QT_Q8_0) {
                __m512i v = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                    _mm256_loadu_si256((const __m256i *)p1), 1);
                z[k] = _mm512_xor_si512(v, k80);
            } else {
                __m256i x = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)p1),
                                             _mm_loadu_si128((const __m128i *)p0));
                __m256i lo = _mm256_and_si256(x, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                z[k] = _mm512_permutex2var_epi64(_mm512_castsi256_si512(lo), lohi,
                                                 _mm512_castsi256_si512(hi));
            }
        }
        /* 8x8 dword transpose inside each 256-bit half */
        __m512i t[8], u[8];
#pragma GCC unroll 16
        for (int k = 0; k < 8; k += 2) {
            t[k] = _mm512_unpacklo_epi32(z[k], z[k + 1]);
            t[k + 1] = _mm512_unpackhi_epi32(z[k], z[k + 1]);
        }
#pragma GCC unroll 16
        for (int k = 0; k < 8; k += 4) {
            u[k] = _mm512_unpacklo_epi64(t[k], t[k + 2]);
            u[k + 1] = _mm512_unpackhi_epi64(t[k], t[k + 2]);
            u[k + 2] = _mm512_unpacklo_epi64(t[k + 1], t[k + 3]);
            u[k + 3] = _mm512_unpackhi_epi64(t[k + 1], t[k + 3]);
        }
#pragma GCC unroll 16
        for (int g = 0; g < 4; g++) {
            pk->q[b][g] = _mm512_permutex2var_epi64(u[g], sel0, u[g + 4]);
            pk->q[b][g + 4] = _mm512_permutex2var_epi64(u[g], sel1, u[g + 4]);
        }
    }
}

/* y rows of a 16-row tile (rows valid), tokens t0..t0+RT: set on the first pass over k,
 * added to after */
AI void pk_store(int RT, const __m512 *acc, int t0, int rows, int first, float *y, int64_t ys) {
    __mmask16 m = rows >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rows) - 1);
#pragma GCC unroll 16
    for (int t = 0; t < RT; t++) {
        float *yt = y + (t0 + t) * ys;
        __m512 v = first ? acc[t] : _mm512_add_ps(_mm512_maskz_loadu_ps(m, yt), acc[t]);
        _mm512_mask_storeu_ps(yt, m, v);
    }
}

AI void pk_tokens(int kind, int RT, const pk_buf *pk, int t0, const uint8_t *act, size_t as,
                  int64_t b0, int64_t nbc, int rows, int first, float *y, int64_t ys) {
    __m512 acc[PK_RT];
#pragma GCC unroll 16
    for (int t = 0; t < RT; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nbc; b++) {
        __m512i p[PK_RT];
        const uint8_t *q[PK_RT];
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            p[t] = _mm512_set1_epi32(pk->corr[t0 + t][b]);
            q[t] = act + (size_t)t * as + (size_t)(b0 + b) * sizeof(blk_q8_0) + 2;
        }
#pragma GCC unroll 16
        for (int g = 0; g < 8; g++) {
            __m512i wv = _mm512_load_si512(&pk->q[b][g]);
#pragma GCC unroll 16
            for (int t = 0; t < RT; t++) {
                int32_t a4;
                memcpy(&a4, q[t] + 4 * g, 4);
                p[t] = _mm512_dpbusd_epi32(p[t], wv, _mm512_set1_epi32(a4));
            }
        }
        __m512 d = _mm512_load_ps(&pk->d[b]);
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            __m512 s = _mm512_mul_ps(d, _mm512_set1_ps(pk->da[t0 + t][b]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(p[t]), s));
        }
    }
    pk_store(RT, acc, t0, rows, first, y, ys);
}

/* Per token and block of the pass: -K * the activation sum (the unsigned weights' offset)
 * and the scale, shared by the repacking and the packed kernels. */
AI void pk_prep_tokens(int K, pk_buf *pk, const uint8_t *ag, size_t as, int ntg, int64_t b0,
                       int64_t nbc) {
    for (int t = 0; t < ntg; t++)
        for (int64_t b = 0; b < nbc; b++) {
            const uint8_t *q = ag + (size_t)t * as + (size_t)(b0 + b) * sizeof(blk_q8_0);
            __m256i s = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_set1_epi8(1),
                                     _mm256_loadu_si256((const __m256i *)(q + 2))),
                _mm256_set1_epi16(1));
            pk->corr[t][b] = -K * hsum256_epi32(s);
            pk->da[t][b] = f16_at(q);
        }
}

AI void q32_pk_512(int kind, const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                   const uint8_t *act, size_t as, int32_t nt, float *y, int64_t ys) {
    pk_buf *pk = &pk_tls.q8;
    const int K = kind == QT_Q8_0 ? 128 : 8;
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += PK_BLOCKS) {
        int64_t nbc = nb - b0 < PK_BLOCKS ? nb - b0 : PK_BLOCKS;
        for (int32_t tg = 0; tg < nt; tg += PK_TOKENS) {
            int ntg = nt - tg < PK_TOKENS ? nt - tg : PK_TOKENS;
            const uint8_t *ag = act + (size_t)tg * as;
            pk_prep_tokens(K, pk, ag, as, ntg, b0, nbc);
            for (int64_t r = r0; r < r1; r += 16) {
                int rows = r1 - r < 16 ? (int)(r1 - r) : 16;
                pk_repack(kind, pk, w + (size_t)r * rb, rb, rows, b0, nbc);
                float *yr = y + tg * ys + r;
                int t = 0;
                for (; t + PK_RT <= ntg; t += PK_RT)
                    pk_tokens(kind, PK_RT, pk, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0,
                              yr, ys);
                switch (ntg - t) {
#define PK_CASE(k)                                                                                 \
    case k:                                                                                        \
        pk_tokens(kind, k, pk, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0, yr, ys);        \
        break;
                    PK_CASE(1)
                    PK_CASE(2)
                    PK_CASE(3)
                    PK_CASE(4)
                    PK_CASE(5)
                    PK_CASE(6)
                    PK_CASE(7)
#undef PK_CASE
                default:
                    break;
                }
            }
        }
    }
}

/* ---- Q8_0 / Q4_0 packed at load (quant.h): the 16-row layout without the repacking ---- */
#define PKP_PF 1024 /* bytes ahead of the packed stream (0.25-8 KB measured the same) */
/* The same products and per-row float order as pk_tokens; the quants come from the packed
 * matrix, one contiguous stream per group of 16 rows, instead of a per-call repack of 16 rows
 * read side by side (which, with few tokens, waited on memory). */
AI void pkp_tokens(int kind, int RT, const pk_buf *pk, const uint8_t *grp, int64_t nb, int t0,
                   const uint8_t *act, size_t as, int64_t b0, int64_t nbc, int rows, int first,
                   float *y, int64_t ys) {
    const size_t qb = kind == QT_Q8_0 ? QT_PACK_Q8_0 : QT_PACK_Q4_0;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[PK_RT];
#pragma GCC unroll 16
    for (int t = 0; t < RT; t++) acc[t] = _mm512_setzero_ps();
    (void)nb;
    for (int64_t b = 0; b < nbc; b++) {
        const uint8_t *o = grp + QT_PACK_QOFF(qb, b0 + b);
        /* the hardware prefetchers do not run far enough ahead of this stream alone */
        _mm_prefetch((const char *)o + PKP_PF, _MM_HINT_T0);
        if (kind == QT_Q8_0) _mm_prefetch((const char *)o + PKP_PF + 256, _MM_HINT_T0);
        __m512i p[PK_RT], p2[PK_RT];
        const uint8_t *q[PK_RT];
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            p[t] = _mm512_set1_epi32(pk->corr[t0 + t][b]);
            p2[t] = _mm512_setzero_si512();
            q[t] = act + (size_t)t * as + (size_t)(b0 + b) * sizeof(blk_q8_0) + 2;
        }
#pragma GCC unroll 16
        for (int g = 0; g < 8; g++) {
            __m512i wv;
            if (kind == QT_Q8_0)
                wv = _mm512_loadu_si512(o + 64 * g);
            else if (g < 4)
                wv = _mm512_and_si512(_mm512_loadu_si512(o + 64 * g), m4);
            else
                wv = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(o + 64 * (g - 4)), 4),
                                      m4);
#pragma GCC unroll 16
            for (int t = 0; t < RT; t++) {
                int32_t a4;
                memcpy(&a4, q[t] + 4 * g, 4);
                if (RT <= 2 && g >= 4) /* a second chain: 8 dependent dots per block are slow */
                    p2[t] = _mm512_dpbusd_epi32(p2[t], wv, _mm512_set1_epi32(a4));
                else
                    p[t] = _mm512_dpbusd_epi32(p[t], wv, _mm512_set1_epi32(a4));
            }
        }
        if (RT <= 2)
#pragma GCC unroll 16
            for (int t = 0; t < RT; t++) p[t] = _mm512_add_epi32(p[t], p2[t]); /* exact */
        __m512 d =
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(grp + QT_PACK_DOFF(qb, b0 + b))));
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            __m512 sc = _mm512_mul_ps(d, _mm512_set1_ps(pk->da[t0 + t][b]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(p[t]), sc));
        }
    }
    pk_store(RT, acc, t0, rows, first, y, ys);
}

AI void q32_pkp_512(int kind, const uint8_t *pw, int64_t n, int64_t r0, int64_t r1,
                    const uint8_t *act, size_t as, int32_t nt, float *y, int64_t ys) {
    pk_buf *pk = &pk_tls.q8;
    const int K = kind == QT_Q8_0 ? 128 : 8;
    const size_t gb = QT_PACK_GROUP(kind == QT_Q8_0 ? QT_PACK_Q8_0 : QT_PACK_Q4_0, n / QK8_0);
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += PK_BLOCKS) {
        int64_t nbc = nb - b0 < PK_BLOCKS ? nb - b0 : PK_BLOCKS;
        for (int32_t tg = 0; tg < nt; tg += PK_TOKENS) {
            int ntg = nt - tg < PK_TOKENS ? nt - tg : PK_TOKENS;
            const uint8_t *ag = act + (size_t)tg * as;
            pk_prep_tokens(K, pk, ag, as, ntg, b0, nbc);
            for (int64_t r = r0; r < r1; r += 16) {
                int rows = r1 - r < 16 ? (int)(r1 - r) : 16;
                const uint8_t *grp = pw + (size_t)(r / 16) * gb;
                float *yr = y + tg * ys + r;
                int t = 0;
                for (; t + PK_RT <= ntg; t += PK_RT)
                    pkp_tokens(kind, PK_RT, pk, grp, nb, t, ag + (size_t)t * as, as, b0, nbc, rows,
                               b0 == 0, yr, ys);
                switch (ntg - t) {
#define PKP_CASE(k)                                                                                \
    case k:                                                                                        \
        pkp_tokens(kind, k, pk, grp, nb, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0, yr,   \
                   ys);                                                                            \
        break;
                    PKP_CASE(1)
                    PKP_CASE(2)
                    PKP_CASE(3)
                    PKP_CASE(4)
                    PKP_CASE(5)
                    PKP_CASE(6)
                    PKP_CASE(7)
#undef PKP_CASE
                default:
                    break;
                }
            }
        }
    }
}

static void mm_pkp_q8_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                            const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    (void)rb;
    q32_pkp_512(QT_Q8_0, w, n, r0, r1, act, as, nt, y, ys);
}
static void mm_pkp_q4_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                            const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    (void)rb;
    q32_pkp_512(QT_Q4_0, w, n, r0, r1, act, as, nt, y, ys);
}

static void mm_pk_q8_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                           const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    q32_pk_512(QT_Q8_0, w, rb, n, r0, r1, act, as, nt, y, ys);
}
static void mm_pk_q4_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                           const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    q32_pk_512(QT_Q4_0, w, rb, n, r0, r1, act, as, nt, y, ys);
}

static void mm_q8_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                        const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1)
        mm_dec_q8_0_512(w, rb, n, r0, r1, act, y);
    else if (nt >= PK_MIN_TOKENS)
        mm_pk_q8_0_512(w, rb, n, r0, r1, act, as, nt, y, ys);
    else
        run_tiles(&q8_0_512_pp_set, w, rb, n, r0, r1, act, as, nt, y, ys);
}

static void mm_q4_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                        const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1)
        mm_dec_q4_0_512(w, rb, n, r0, r1, act, y);
    else if (nt >= PK_MIN_TOKENS)
        mm_pk_q4_0_512(w, rb, n, r0, r1, act, as, nt, y, ys);
    else
        run_tiles(&q4_0_512_pp_set, w, rb, n, r0, r1, act, as, nt, y, ys);
}

/* ---- Q5_0 prompt kernel: row pairs, llama.cpp's float order ---- */
/* The template's 256-bit tile keeps llama.cpp's Q5_0 order (per row and token: 8 int32
 * lanes of 4 products, one fmadd per block, then hsum256) but spends 256-bit work and a
 * full unpacking on every row and block. Here a 512-bit vector holds the same block of two
 * rows ([row r | row r+1], each half exactly the template's 8 lanes) and each unpacked
 * pair meets up to 8 tokens, so the integers and the float sums per half are the
 * template's, bit for bit, at twice the width and with the unpacking shared by 8 tokens.
 * (A 16-row layout, lanes = rows, was 5x faster but changes the order; see the header.) */
#define Q50P_RN 8 /* tokens per tile: 2 pairs x 8 tokens = 16 accumulators */

AI void q50_pair_tile_512(int P, int RN, const uint8_t *w, size_t rb, const uint8_t *act, size_t as,
                          int64_t n, float *y, int64_t ys) {
    const size_t wbs = sizeof(blk_q5_0), abs_ = sizeof(blk_q8_0);
    const __m512i k16 = _mm512_set1_epi8(16);
    const int64_t nb = n / QK8_0;
    __m512 acc[2][Q50P_RN];
#pragma GCC unroll 16
    for (int i = 0; i < P; i++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) acc[i][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i wq[2];
        __m512 dw[2];
#pragma GCC unroll 16
        for (int i = 0; i < P; i++) {
            const uint8_t *p = w + 2 * i * rb + b * wbs;
            _mm_prefetch((const char *)p + 512, _MM_HINT_T0);
            _mm_prefetch((const char *)p + rb + 512, _MM_HINT_T0);
            wq[i] = q50_load2_512(p, rb, 1);
            dw[i] = scale2_512(p, rb, 1);
        }
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) {
            const uint8_t *q = act + t * as + b * abs_;
            __m512i a = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(q + 2)));
            __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(),
                                         _mm512_dpbusd_epi32(_mm512_setzero_si512(), k16, a));
            __m512 da = _mm512_set1_ps(f16_at(q));
#pragma GCC unroll 16
            for (int i = 0; i < P; i++)
                acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, wq[i], a)),
                                            _mm512_mul_ps(dw[i], da), acc[i][t]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < P; i++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) {
            y[t * ys + 2 * i] = hsum256(_mm512_castps512_ps256(acc[i][t]));
            y[t * ys + 2 * i + 1] = hsum256(_mm512_extractf32x8_ps(acc[i][t], 1));
        }
}

#define Q50P_FN(P, RN)                                                                             \
    static void q50_pair_##P##x##RN(const uint8_t *w, size_t rb, const uint8_t *a, size_t as,      \
                                    int64_t n, float *y, int64_t ys) {                             \
        q50_pair_tile_512(P, RN, w, rb, a, as, n, y, ys);                                          \
    }
#define Q50P_FNS(P)                                                                                \
    Q50P_FN(P, 1)                                                                                  \
    Q50P_FN(P, 2)                                                                                  \
    Q50P_FN(P, 3) Q50P_FN(P, 4) Q50P_FN(P, 5) Q50P_FN(P, 6) Q50P_FN(P, 7) Q50P_FN(P, 8)
Q50P_FNS(1)
Q50P_FNS(2)
static const tile_fn q50_pair_fns[2][Q50P_RN] = {
    {q50_pair_1x1, q50_pair_1x2, q50_pair_1x3, q50_pair_1x4, q50_pair_1x5, q50_pair_1x6,
     q50_pair_1x7, q50_pair_1x8},
    {q50_pair_2x1, q50_pair_2x2, q50_pair_2x3, q50_pair_2x4, q50_pair_2x5, q50_pair_2x6,
     q50_pair_2x7, q50_pair_2x8}};

/* Rows in fours (two pairs), then a last pair, then a last single row through the
 * template's one-row tiles (the same order); tokens in groups of Q50P_RN. */
static void q50_pp_512(const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                       const uint8_t *act, size_t as, int32_t nt, float *y, int64_t ys) {
    for (int64_t r = r0; r < r1;) {
        int64_t left = r1 - r;
        int pairs = left >= 4 ? 2 : left >= 2 ? 1 : 0;
        for (int32_t t = 0; t < nt;) {
            int32_t rn;
            if (pairs) {
                rn = nt - t < Q50P_RN ? nt - t : Q50P_RN;
                q50_pair_fns[pairs - 1][rn - 1](w + (size_t)r * rb, rb, act + (size_t)t * as, as, n,
                                                y + t * ys + r, ys);
            } else {
                rn = nt - t < 4 ? nt - t : 4;
                q5_0_pp_avx512_set.one[rn - 1](w + (size_t)r * rb, rb, act + (size_t)t * as, as, n,
                                               y + t * ys + r, ys);
            }
            t += rn;
        }
        r += pairs ? 2 * pairs : 1;
    }
}

static void mm_q5_0_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                        const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1 && n <= 2 * DEC_PAIRS * QK8_0)
        q50_dec_512(w, rb, n, r0, r1, act, y);
    else if (nt == 1)
        run_tiles(&q5_0_dec_avx512_set, w, rb, n, r0, r1, act, as, nt, y, ys);
    else /* row pairs: llama.cpp's float order (no 16-row kernel, see above) */
        q50_pp_512(w, rb, n, r0, r1, act, as, nt, y, ys);
}

/* ---- Q4_K / Q5_K decode with 512-bit vectors ---- */
/* One row at a time (one stream). The activations are rearranged once per call so that a
 * 64-byte load of quants lines up: quants 64 bytes = chunks c, c+1, whose low nibbles are
 * sub-blocks 2c, 2c+2 and high nibbles 2c+1, 2c+3. Q5_K's fifth bits: the 32 qh bytes
 * broadcast to both 256-bit halves, each half shifted so that its chunk's bit lands on
 * bit 4. Float order per block as the portable code (see the 256-bit template). */
#define Q4K_DEC_BLOCKS 32

AI __m128i q4k_scales_sse(const uint8_t *sc12) {
    /* 12 packed bytes -> sc[0..7] (bytes 0..7) and m[0..7] (bytes 8..15), as the scalar
     * word trick in the template: dword0 = u0 & k1, dword1 = (u2 & k2) | ((u0 >> 6) & k3) << 4,
     * dword2 = u1 & k1, dword3 = ((u2 >> 4) & k2) | ((u1 >> 6) & k3) << 4 */
    /* 16 bytes: the scales and 4 bytes of the quants that follow them in the block (unused);
     * a copy to a 12-byte buffer first would stall on store forwarding */
    __m128i v = _mm_loadu_si128((const __m128i *)sc12);
    __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)); /* u0 u2 u1 u2 */
    __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)); /* u0 u0 u1 u1 */
    __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                               _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    __m128i hi = _mm_slli_epi32(
        _mm_and_si128(_mm_srli_epi32(b, 6), _mm_setr_epi32(0, 0x03030303, 0, 0x03030303)), 4);
    return _mm_or_si128(lo, hi);
}

/* shift counts (int16, per 256-bit half) bringing bit 2c (+1 for the high nibbles) of qh to
 * bit 4 for vector k of q4k_dec_512 (chunks c = 2(k/2), 2(k/2) + 1): left for k < 2, right
 * for k >= 2 */
#define Q5K_SH(a, b)                                                                               \
    _mm512_setr_epi64(0x0001000100010001ll * (a), 0x0001000100010001ll * (a),                      \
                      0x0001000100010001ll * (a), 0x0001000100010001ll * (a),                      \
                      0x0001000100010001ll * (b), 0x0001000100010001ll * (b),                      \
                      0x0001000100010001ll * (b), 0x0001000100010001ll * (b))

AI __m512i q5k_high_512(__m512i H, int k) {
    const __m512i b4 = _mm512_set1_epi8(0x10);
    switch (k) {
    case 0:
        return _mm512_and_si512(_mm512_sllv_epi16(H, Q5K_SH(4, 2)), b4);
    case 1:
        return _mm512_and_si512(_mm512_sllv_epi16(H, Q5K_SH(3, 1)), b4);
    case 2:
        return _mm512_and_si512(_mm512_srlv_epi16(H, Q5K_SH(0, 2)), b4);
    default:
        return _mm512_and_si512(_mm512_srlv_epi16(H, Q5K_SH(1, 3)), b4);
    }
}
#undef Q5K_SH

AI void qk45_dec_512(int five, const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                     const uint8_t *act, float *y) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* int16 splat of scale byte j in 128-bit lanes 0-1, byte k in lanes 2-3 */
#define Q4K_SPL(j, k)                                                                              \
    _mm512_setr_epi32(                                                                             \
        0x80008000 | (j) << 16 | (j), 0x80008000 | (j) << 16 | (j), 0x80008000 | (j) << 16 | (j),  \
        0x80008000 | (j) << 16 | (j), 0x80008000 | (j) << 16 | (j), 0x80008000 | (j) << 16 | (j),  \
        0x80008000 | (j) << 16 | (j), 0x80008000 | (j) << 16 | (j), 0x80008000 | (k) << 16 | (k),  \
        0x80008000 | (k) << 16 | (k), 0x80008000 | (k) << 16 | (k), 0x80008000 | (k) << 16 | (k),  \
        0x80008000 | (k) << 16 | (k), 0x80008000 | (k) << 16 | (k), 0x80008000 | (k) << 16 | (k),  \
        0x80008000 | (k) << 16 | (k))
    const __m512i spl[4] = {Q4K_SPL(0, 2), Q4K_SPL(1, 3), Q4K_SPL(4, 6), Q4K_SPL(5, 7)};
#undef Q4K_SPL
    __m512i av[Q4K_DEC_BLOCKS][4];
    __m128i bs2[Q4K_DEC_BLOCKS];
    float da[Q4K_DEC_BLOCKS];
    const int64_t nb = n / QK_K;
    for (int64_t b0 = 0; b0 < nb; b0 += Q4K_DEC_BLOCKS) {
        int64_t nbc = nb - b0 < Q4K_DEC_BLOCKS ? nb - b0 : Q4K_DEC_BLOCKS;
        for (int64_t j = 0; j < nbc; j++) {
            const blk_q8_k *a = (const blk_q8_k *)act + b0 + j;
            for (int k = 0; k < 4; k++) {
                /* k: (sub-blocks 4(k/2) + (k&1), and + 2) = elements 128(k/2) + 32(k&1) + 0/64 */
                const int8_t *q = a->qs + 128 * (k / 2) + 32 * (k & 1);
                av[j][k] = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q)),
                    _mm256_loadu_si256((const __m256i *)(q + 64)), 1);
            }
            __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
            __m256i pr = _mm256_madd_epi16(bs, _mm256_set1_epi16(1)); /* 8 pair sums, int32 */
            bs2[j] = _mm_packs_epi32(_mm256_castsi256_si128(pr), _mm256_extracti128_si256(pr, 1));
            da[j] = a->d;
        }
        const size_t bs = five ? sizeof(blk_q5_k) : sizeof(blk_q4_k);
        const size_t qs_off = five ? offsetof(blk_q5_k, qs) : offsetof(blk_q4_k, qs);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *xb = w + (size_t)r * rb + (size_t)b0 * bs;
            float sum = b0 == 0 ? 0.0f : y[r]; /* one running sum, as the portable code */
            for (int64_t j = 0; j < nbc; j++, xb += bs) {
                /* Q4_K and Q5_K share d, dmin and the scales at the same offsets */
                const blk_q4_k *x = (const blk_q4_k *)xb;
                __m128i u = q4k_scales_sse(x->scales);
                __m512i U = _mm512_broadcast_i32x4(u);
                __m512i x0 = _mm512_loadu_si512(xb + qs_off),
                        x1 = _mm512_loadu_si512(xb + qs_off + 64);
                __m512i q[4] = {
                    _mm512_and_si512(x0, m4), _mm512_and_si512(_mm512_srli_epi16(x0, 4), m4),
                    _mm512_and_si512(x1, m4), _mm512_and_si512(_mm512_srli_epi16(x1, 4), m4)};
                if (five) {
                    __m512i H = _mm512_broadcast_i64x4(
                        _mm256_loadu_si256((const __m256i *)((const blk_q5_k *)xb)->qh));
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) q[k] = _mm512_or_si512(q[k], q5k_high_512(H, k));
                }
                __m512i is = _mm512_setzero_si512();
#pragma GCC unroll 16
                for (int k = 0; k < 4; k++)
                    is = _mm512_dpwssd_epi32(is, _mm512_maddubs_epi16(q[k], av[j][k]),
                                             _mm512_shuffle_epi8(U, spl[k]));
                __m128i mm = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(u, 8)), bs2[j]);
                mm = _mm_add_epi32(mm, _mm_shuffle_epi32(mm, 0x4e));
                mm = _mm_add_epi32(mm, _mm_shuffle_epi32(mm, 0xb1));
                int32_t isum = _mm512_reduce_add_epi32(is), msum = _mm_cvtsi128_si32(mm);
                sum += _cvtsh_ss(x->d) * da[j] * (float)isum;
                sum -= _cvtsh_ss(x->dmin) * da[j] * (float)msum;
            }
            y[r] = sum;
        }
    }
}

/* ---- Q4_K / Q5_K prompt kernel: 16 weight rows per vector (as the Q8_0/Q4_0 one) ---- */
/* Per lane (row) and block: isum = sum_j sc_j * (q_j . a_j), msum = sum_j m_j * bsum2_j,
 * exact; then the portable code's float steps, so results equal the generic level's. */

AI void tr8x8_halves(const __m512i z[8], __m512i out[8]) {
    const __m512i sel0 = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i sel1 = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    __m512i t[8], u[8];
#pragma GCC unroll 16
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm512_unpacklo_epi32(z[k], z[k + 1]);
        t[k + 1] = _mm512_unpackhi_epi32(z[k], z[k + 1]);
    }
#pragma GCC unroll 16
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm512_unpacklo_epi64(t[k], t[k + 2]);
        u[k + 1] = _mm512_unpackhi_epi64(t[k], t[k + 2]);
        u[k + 2] = _mm512_unpacklo_epi64(t[k + 1], t[k + 3]);
        u[k + 3] = _mm512_unpackhi_epi64(t[k + 1], t[k + 3]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 4; g++) {
        out[g] = _mm512_permutex2var_epi64(u[g], sel0, u[g + 4]);
        out[g + 4] = _mm512_permutex2var_epi64(u[g], sel1, u[g + 4]);
    }
}

AI void pk45k_repack(int five, pk4k_buf *pk, const uint8_t *w, size_t rb, int rows, int64_t b0,
                     int64_t nbc) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), b4 = _mm512_set1_epi8(0x10);
    const size_t bs = five ? sizeof(blk_q5_k) : sizeof(blk_q4_k);
    const size_t qs_off = five ? offsetof(blk_q5_k, qs) : offsetof(blk_q4_k, qs);
    for (int64_t b = 0; b < nbc; b++) {
        int32_t sc[8][16], mn[8][16];
        float d[16], dm[16];
        for (int r = 0; r < 16; r++) {
            if (r >= rows) {
                for (int j = 0; j < 8; j++) sc[j][r] = mn[j][r] = 0;
                d[r] = dm[r] = 0.0f;
                continue;
            }
            const blk_q4_k *x = (const blk_q4_k *)(w + (size_t)r * rb + (size_t)(b0 + b) * bs);
            uint8_t u[16];
            _mm_storeu_si128((__m128i *)u, q4k_scales_sse(x->scales));
            for (int j = 0; j < 8; j++) {
                sc[j][r] = u[j];
                mn[j][r] = u[8 + j];
            }
            d[r] = _cvtsh_ss(x->d);
            dm[r] = _cvtsh_ss(x->dmin);
        }
        for (int j = 0; j < 8; j++) pk->sc[b][j] = _mm512_loadu_si512(sc[j]);
        for (int p = 0; p < 4; p++)
            pk->m2[b][p] =
                _mm512_or_si512(_mm512_loadu_si512(mn[2 * p]),
                                _mm512_slli_epi32(_mm512_loadu_si512(mn[2 * p + 1]), 16));
        pk->d[b] = _mm512_loadu_ps(d);
        pk->dmin[b] = _mm512_loadu_ps(dm);
        for (int c = 0; c < 4; c++) {
            __m512i lo[8], hi[8];
            for (int k = 0; k < 8; k++) {
                /* rows beyond the chunk read row 0 again: their scales are 0 */
                const uint8_t *x0 = w + (size_t)(k < rows ? k : 0) * rb + (size_t)(b0 + b) * bs;
                const uint8_t *x1 =
                    w + (size_t)(k + 8 < rows ? k + 8 : 0) * rb + (size_t)(b0 + b) * bs;
                __m512i v = _mm512_inserti64x4(
                    _mm512_castsi256_si512(
                        _mm256_loadu_si256((const __m256i *)(x0 + qs_off + 32 * c))),
                    _mm256_loadu_si256((const __m256i *)(x1 + qs_off + 32 * c)), 1);
                lo[k] = _mm512_and_si512(v, m4);
                hi[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                if (five) { /* bit 2c (2c + 1) of qh[l] to bit 4 of lo (hi) byte l */
                    const size_t qh_off = offsetof(blk_q5_k, qh);
                    __m512i h = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x0 + qh_off))),
                        _mm256_loadu_si256((const __m256i *)(x1 + qh_off)), 1);
                    __m512i hl = 2 * c <= 4 ? _mm512_slli_epi16(h, 4 - 2 * c)
                                            : _mm512_srli_epi16(h, 2 * c - 4);
                    __m512i hh = 2 * c + 1 <= 4 ? _mm512_slli_epi16(h, 3 - 2 * c)
                                                : _mm512_srli_epi16(h, 2 * c - 3);
                    lo[k] = _mm512_or_si512(lo[k], _mm512_and_si512(hl, b4));
                    hi[k] = _mm512_or_si512(hi[k], _mm512_and_si512(hh, b4));
                }
            }
            tr8x8_halves(lo, pk->q[b][2 * c]);
            tr8x8_halves(hi, pk->q[b][2 * c + 1]);
        }
    }
}

AI void pk4k_tokens(int RT, const pk4k_buf *pk, int t0, const uint8_t *act, size_t as, int64_t b0,
                    int64_t nbc, int rows, int first, float *y, int64_t ys) {
    __m512 sum[4];
    __mmask16 m = rows >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rows) - 1);
    /* one running sum per row across the passes over k, as the portable code */
#pragma GCC unroll 16
    for (int t = 0; t < RT; t++)
        sum[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (t0 + t) * ys);
    for (int64_t b = 0; b < nbc; b++) {
        __m512i is[4], ms[4];
        const int8_t *q[4];
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            is[t] = _mm512_setzero_si512();
            ms[t] = _mm512_setzero_si512();
            q[t] = ((const blk_q8_k *)(act + (size_t)t * as) + b0 + b)->qs;
        }
        for (int j = 0; j < 8; j++) {
            __m512i p[4];
#pragma GCC unroll 16
            for (int t = 0; t < RT; t++) p[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
            for (int g = 0; g < 8; g++) {
                __m512i wv = _mm512_load_si512(&pk->q[b][j][g]);
#pragma GCC unroll 16
                for (int t = 0; t < RT; t++) {
                    int32_t a4;
                    memcpy(&a4, q[t] + 32 * j + 4 * g, 4);
                    p[t] = _mm512_dpbusd_epi32(p[t], wv, _mm512_set1_epi32(a4));
                }
            }
            __m512i scj = _mm512_load_si512(&pk->sc[b][j]);
#pragma GCC unroll 16
            for (int t = 0; t < RT; t++)
                is[t] = _mm512_add_epi32(is[t], _mm512_mullo_epi32(p[t], scj));
        }
#pragma GCC unroll 16
        for (int p2 = 0; p2 < 4; p2++) {
            __m512i m2 = _mm512_load_si512(&pk->m2[b][p2]);
#pragma GCC unroll 16
            for (int t = 0; t < RT; t++)
                ms[t] = _mm512_dpwssd_epi32(ms[t], m2, _mm512_set1_epi32(pk->bs2[t0 + t][b][p2]));
        }
        __m512 d = _mm512_load_ps(&pk->d[b]), dm = _mm512_load_ps(&pk->dmin[b]);
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            __m512 da = _mm512_set1_ps(pk->da[t0 + t][b]);
            sum[t] = _mm512_add_ps(sum[t],
                                   _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(is[t])));
            sum[t] = _mm512_sub_ps(sum[t],
                                   _mm512_mul_ps(_mm512_mul_ps(dm, da), _mm512_cvtepi32_ps(ms[t])));
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < RT; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ys, m, sum[t]);
}

AI void qk45_pk_512(int five, const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                    const uint8_t *act, size_t as, int32_t nt, float *y, int64_t ys) {
    pk4k_buf *pk = &pk_tls.q4k;
    const int64_t nb = n / QK_K;
    for (int64_t b0 = 0; b0 < nb; b0 += PK4K_BLOCKS) {
        int64_t nbc = nb - b0 < PK4K_BLOCKS ? nb - b0 : PK4K_BLOCKS;
        for (int32_t tg = 0; tg < nt; tg += PK_TOKENS) {
            int ntg = nt - tg < PK_TOKENS ? nt - tg : PK_TOKENS;
            const uint8_t *ag = act + (size_t)tg * as;
            for (int t = 0; t < ntg; t++)
                for (int64_t b = 0; b < nbc; b++) {
                    const blk_q8_k *a = (const blk_q8_k *)(ag + (size_t)t * as) + b0 + b;
                    for (int p2 = 0; p2 < 4; p2++) {
                        int32_t s0 = a->bsums[4 * p2] + a->bsums[4 * p2 + 1];
                        int32_t s1 = a->bsums[4 * p2 + 2] + a->bsums[4 * p2 + 3];
                        pk->bs2[t][b][p2] =
                            (int32_t)(((uint32_t)s1 << 16) | ((uint32_t)s0 & 0xffff));
                    }
                    pk->da[t][b] = a->d;
                }
            for (int64_t r = r0; r < r1; r += 16) {
                int rows = r1 - r < 16 ? (int)(r1 - r) : 16;
                pk45k_repack(five, pk, w + (size_t)r * rb, rb, rows, b0, nbc);
                float *yr = y + tg * ys + r;
                int t = 0;
                for (; t + 4 <= ntg; t += 4)
                    pk4k_tokens(4, pk, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0, yr, ys);
                switch (ntg - t) {
                case 1:
                    pk4k_tokens(1, pk, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0, yr, ys);
                    break;
                case 2:
                    pk4k_tokens(2, pk, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0, yr, ys);
                    break;
                case 3:
                    pk4k_tokens(3, pk, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0, yr, ys);
                    break;
                default:
                    break;
                }
            }
        }
    }
}

/* ---- Q6_K prompt kernel: 16 weight rows per vector ---- */
/* q used unsigned (0..63): isum = sum_j sc_j * (q_j . a_j) - 32 * sum_j sc_j * bsum_j per
 * lane, exact; then the portable code's float steps. */
static void pk6k_repack(pk6k_buf *pk, const uint8_t *w, size_t rb, int rows, int64_t b0,
                        int64_t nbc) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    for (int64_t b = 0; b < nbc; b++) {
        int32_t sc[16][16];
        float d[16];
        for (int r = 0; r < 16; r++) {
            const blk_q6_k *x = (const blk_q6_k *)(w + (size_t)(r < rows ? r : 0) * rb) + b0 + b;
            for (int j = 0; j < 16; j++) sc[j][r] = r < rows ? x->scales[j] : 0;
            d[r] = r < rows ? _cvtsh_ss(x->d) : 0.0f;
        }
        for (int j = 0; j < 16; j++) pk->sc[b][j] = _mm512_loadu_si512(sc[j]);
        for (int p = 0; p < 8; p++)
            pk->sc2[b][p] = _mm512_or_si512(
                _mm512_and_si512(_mm512_loadu_si512(sc[2 * p]), _mm512_set1_epi32(0xffff)),
                _mm512_slli_epi32(_mm512_loadu_si512(sc[2 * p + 1]), 16));
        pk->d[b] = _mm512_loadu_ps(d);
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++) {
                __m512i z[8];
                for (int i = 0; i < 8; i++) {
                    const blk_q6_k *x0 =
                        (const blk_q6_k *)(w + (size_t)(i < rows ? i : 0) * rb) + b0 + b;
                    const blk_q6_k *x1 =
                        (const blk_q6_k *)(w + (size_t)(i + 8 < rows ? i + 8 : 0) * rb) + b0 + b;
                    const int qo = 64 * h + 32 * (k & 1), ho = 32 * h;
                    __m512i A = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x0->ql + qo))),
                        _mm256_loadu_si256((const __m256i *)(x1->ql + qo)), 1);
                    __m512i H = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x0->qh + ho))),
                        _mm256_loadu_si256((const __m256i *)(x1->qh + ho)), 1);
                    __m512i lo4 = k < 2 ? _mm512_and_si512(A, m4)
                                        : _mm512_and_si512(_mm512_srli_epi16(A, 4), m4);
                    __m512i hi2 = k == 0   ? _mm512_slli_epi16(H, 4)
                                  : k == 1 ? _mm512_slli_epi16(H, 2)
                                  : k == 2 ? H
                                           : _mm512_srli_epi16(H, 2);
                    z[i] = _mm512_or_si512(lo4, _mm512_and_si512(hi2, m30));
                }
                tr8x8_halves(z, pk->q[b][4 * h + k]);
            }
    }
}

AI void pk6k_tokens(int RT, const pk6k_buf *pk, int t0, const uint8_t *act, size_t as, int64_t b0,
                    int64_t nbc, int rows, int first, float *y, int64_t ys) {
    __m512 sum[4];
    __mmask16 m = rows >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rows) - 1);
    /* one running sum per row across the passes over k, as the portable code */
#pragma GCC unroll 16
    for (int t = 0; t < RT; t++)
        sum[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (t0 + t) * ys);
    for (int64_t b = 0; b < nbc; b++) {
        __m512i is[4], cs[4];
        const int8_t *q[4];
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            is[t] = _mm512_setzero_si512();
            cs[t] = _mm512_setzero_si512();
            q[t] = ((const blk_q8_k *)(act + (size_t)t * as) + b0 + b)->qs;
        }
        for (int gr = 0; gr < 8; gr++) {
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) { /* sub-block 2 gr + half: dwords 4 half.. */
                __m512i p[4];
#pragma GCC unroll 16
                for (int t = 0; t < RT; t++) p[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
                for (int g = 4 * half; g < 4 * half + 4; g++) {
                    __m512i wv = _mm512_load_si512(&pk->q[b][gr][g]);
#pragma GCC unroll 16
                    for (int t = 0; t < RT; t++) {
                        int32_t a4;
                        memcpy(&a4, q[t] + 32 * gr + 4 * g, 4);
                        p[t] = _mm512_dpbusd_epi32(p[t], wv, _mm512_set1_epi32(a4));
                    }
                }
                __m512i scj = _mm512_load_si512(&pk->sc[b][2 * gr + half]);
#pragma GCC unroll 16
                for (int t = 0; t < RT; t++)
                    is[t] = _mm512_add_epi32(is[t], _mm512_mullo_epi32(p[t], scj));
            }
        }
#pragma GCC unroll 16
        for (int p2 = 0; p2 < 8; p2++) {
            __m512i s2 = _mm512_load_si512(&pk->sc2[b][p2]);
#pragma GCC unroll 16
            for (int t = 0; t < RT; t++)
                cs[t] = _mm512_dpwssd_epi32(cs[t], s2, _mm512_set1_epi32(pk->bs[t0 + t][b][p2]));
        }
        __m512 d = _mm512_load_ps(&pk->d[b]);
#pragma GCC unroll 16
        for (int t = 0; t < RT; t++) {
            __m512i it = _mm512_sub_epi32(is[t], _mm512_slli_epi32(cs[t], 5));
            __m512 da = _mm512_set1_ps(pk->da[t0 + t][b]);
            sum[t] =
                _mm512_add_ps(sum[t], _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(it)));
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < RT; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ys, m, sum[t]);
}

static void q6k_pk_512(const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                       const uint8_t *act, size_t as, int32_t nt, float *y, int64_t ys) {
    pk6k_buf *pk = &pk_tls.q6k;
    const int64_t nb = n / QK_K;
    for (int64_t b0 = 0; b0 < nb; b0 += PK4K_BLOCKS) {
        int64_t nbc = nb - b0 < PK4K_BLOCKS ? nb - b0 : PK4K_BLOCKS;
        for (int32_t tg = 0; tg < nt; tg += PK_TOKENS) {
            int ntg = nt - tg < PK_TOKENS ? nt - tg : PK_TOKENS;
            const uint8_t *ag = act + (size_t)tg * as;
            for (int t = 0; t < ntg; t++)
                for (int64_t b = 0; b < nbc; b++) {
                    const blk_q8_k *a = (const blk_q8_k *)(ag + (size_t)t * as) + b0 + b;
                    for (int p2 = 0; p2 < 8; p2++)
                        pk->bs[t][b][p2] =
                            (int32_t)(((uint32_t)(uint16_t)a->bsums[2 * p2 + 1] << 16) |
                                      (uint16_t)a->bsums[2 * p2]);
                    pk->da[t][b] = a->d;
                }
            for (int64_t r = r0; r < r1; r += 16) {
                int rows = r1 - r < 16 ? (int)(r1 - r) : 16;
                pk6k_repack(pk, w + (size_t)r * rb, rb, rows, b0, nbc);
                float *yr = y + tg * ys + r;
                const uint8_t *at;
                int t = 0;
                for (; t + 4 <= ntg; t += 4)
                    pk6k_tokens(4, pk, t, ag + (size_t)t * as, as, b0, nbc, rows, b0 == 0, yr, ys);
                at = ag + (size_t)t * as;
                switch (ntg - t) {
                case 1:
                    pk6k_tokens(1, pk, t, at, as, b0, nbc, rows, b0 == 0, yr, ys);
                    break;
                case 2:
                    pk6k_tokens(2, pk, t, at, as, b0, nbc, rows, b0 == 0, yr, ys);
                    break;
                case 3:
                    pk6k_tokens(3, pk, t, at, as, b0, nbc, rows, b0 == 0, yr, ys);
                    break;
                default:
                    break;
                }
            }
        }
    }
}

/* ---- Q6_K decode with 512-bit vectors ---- */
/* One row at a time (one stream). Per 128-element half, the 64 ql bytes hold elements 0-63
 * in their low nibbles and 64-127 in their high ones; the 32 qh bytes, broadcast to both
 * 256-bit halves and shifted by a different count in each, give bits 4-5. So the
 * activations are used in their own order, every 128-bit lane is one 16-element sub-block
 * and its scale is a lane-wide int16 splat (the signed byte shuffled into the high byte of
 * each int16, then shifted down arithmetically). q unsigned (0..63) with the -32 folded in
 * through the bsums, as the template; per block the integer sum is exact and the float
 * steps are the portable code's. */
static void q6k_dec_512(const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                        const uint8_t *act, float *y) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const long long c4 = 0x0004000400040004ll, c2 = 0x0002000200020002ll;
    /* elements 0-31 take qh bits 0-1 (<< 4), 32-63 bits 2-3 (<< 2); 64-95 bits 4-5 (as they
     * are), 96-127 bits 6-7 (>> 2) */
    const __m512i shl = _mm512_setr_epi64(c4, c4, c4, c4, c2, c2, c2, c2);
    const __m512i shr = _mm512_setr_epi64(0, 0, 0, 0, c2, c2, c2, c2);
    /* group g (128-bit lanes = sub-blocks 4g..4g+3): byte 4g + lane into each int16's high
     * byte, 0 into the low byte */
#define Q6K_SPL(g)                                                                                 \
    _mm512_setr_epi32((4 * (g)) << 24 | 0x80 << 16 | (4 * (g)) << 8 | 0x80,                        \
                      (4 * (g)) << 24 | 0x80 << 16 | (4 * (g)) << 8 | 0x80,                        \
                      (4 * (g)) << 24 | 0x80 << 16 | (4 * (g)) << 8 | 0x80,                        \
                      (4 * (g)) << 24 | 0x80 << 16 | (4 * (g)) << 8 | 0x80,                        \
                      (4 * (g) + 1) << 24 | 0x80 << 16 | (4 * (g) + 1) << 8 | 0x80,                \
                      (4 * (g) + 1) << 24 | 0x80 << 16 | (4 * (g) + 1) << 8 | 0x80,                \
                      (4 * (g) + 1) << 24 | 0x80 << 16 | (4 * (g) + 1) << 8 | 0x80,                \
                      (4 * (g) + 1) << 24 | 0x80 << 16 | (4 * (g) + 1) << 8 | 0x80,                \
                      (4 * (g) + 2) << 24 | 0x80 << 16 | (4 * (g) + 2) << 8 | 0x80,                \
                      (4 * (g) + 2) << 24 | 0x80 << 16 | (4 * (g) + 2) << 8 | 0x80,                \
                      (4 * (g) + 2) << 24 | 0x80 << 16 | (4 * (g) + 2) << 8 | 0x80,                \
                      (4 * (g) + 2) << 24 | 0x80 << 16 | (4 * (g) + 2) << 8 | 0x80,                \
                      (4 * (g) + 3) << 24 | 0x80 << 16 | (4 * (g) + 3) << 8 | 0x80,                \
                      (4 * (g) + 3) << 24 | 0x80 << 16 | (4 * (g) + 3) << 8 | 0x80,                \
                      (4 * (g) + 3) << 24 | 0x80 << 16 | (4 * (g) + 3) << 8 | 0x80,                \
                      (4 * (g) + 3) << 24 | 0x80 << 16 | (4 * (g) + 3) << 8 | 0x80)
    const __m512i spl[4] = {Q6K_SPL(0), Q6K_SPL(1), Q6K_SPL(2), Q6K_SPL(3)};
#undef Q6K_SPL
    const blk_q8_k *a0 = (const blk_q8_k *)act;
    const int64_t nb = n / QK_K;
    for (int64_t r = r0; r < r1; r++) {
        const blk_q6_k *x = (const blk_q6_k *)(w + (size_t)r * rb);
        float sum = 0.0f;
        for (int64_t b = 0; b < nb; b++, x++) {
            const blk_q8_k *a = a0 + b;
            __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
            __m512i S = _mm512_broadcast_i32x4(s8);
            /* -32 * sum_j sc_j * bsum_j, in the low 8 int32 lanes */
            __m256i c = _mm256_madd_epi16(_mm256_cvtepi8_epi16(s8),
                                          _mm256_loadu_si256((const __m256i *)a->bsums));
            __m512i is = _mm512_zextsi256_si512(
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(c, 5)));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512i L = _mm512_loadu_si512(x->ql + 64 * h);
                __m512i H =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * h)));
                __m512i vlo = _mm512_or_si512(_mm512_and_si512(L, m4),
                                              _mm512_and_si512(_mm512_sllv_epi16(H, shl), m30));
                __m512i vhi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                              _mm512_and_si512(_mm512_srlv_epi16(H, shr), m30));
                __m512i alo = _mm512_loadu_si512(a->qs + 128 * h);
                __m512i ahi = _mm512_loadu_si512(a->qs + 128 * h + 64);
                is = _mm512_dpwssd_epi32(is, _mm512_maddubs_epi16(vlo, alo),
                                         _mm512_srai_epi16(_mm512_shuffle_epi8(S, spl[2 * h]), 8));
                is = _mm512_dpwssd_epi32(
                    is, _mm512_maddubs_epi16(vhi, ahi),
                    _mm512_srai_epi16(_mm512_shuffle_epi8(S, spl[2 * h + 1]), 8));
            }
            sum += _cvtsh_ss(x->d) * a->d * (float)_mm512_reduce_add_epi32(is);
        }
        y[r] = sum;
    }
}

static void mm_q6k_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1, const void *act,
                       size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1)
        q6k_dec_512(w, rb, n, r0, r1, act, y);
    else if (nt >= PK_MIN_TOKENS)
        q6k_pk_512(w, rb, n, r0, r1, act, as, nt, y, ys);
    else
        mm_q6k_avx512(w, rb, n, r0, r1, act, as, nt, y, ys);
}

static void mm_q4k_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1, const void *act,
                       size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1)
        qk45_dec_512(0, w, rb, n, r0, r1, act, y);
    else if (nt >= PK_MIN_TOKENS)
        qk45_pk_512(0, w, rb, n, r0, r1, act, as, nt, y, ys);
    else
        run_tiles(&q4k_pp_avx512_set, w, rb, n, r0, r1, act, as, nt, y, ys);
}

static void mm_q5k_512(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1, const void *act,
                       size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1)
        qk45_dec_512(1, w, rb, n, r0, r1, act, y);
    else if (nt >= PK_MIN_TOKENS)
        qk45_pk_512(1, w, rb, n, r0, r1, act, as, nt, y, ys);
    else
        run_tiles(&q5k_pp_avx512_set, w, rb, n, r0, r1, act, as, nt, y, ys);
}

static void fill_avx512(qti_kernels *k) {
    k->matmul[QT_F32] = mm_f32_512;
    k->matmul[QT_F16] = mm_f16_512;
    k->matmul[QT_BF16] = mm_bf16_512;
    fill_int_avx512(k);
    k->matmul[QT_Q8_0] = mm_q8_0_512;
    k->matmul[QT_Q4_0] = mm_q4_0_512;
    k->matmul_packed[QT_Q8_0] = mm_pkp_q8_0_512;
    k->matmul_packed[QT_Q4_0] = mm_pkp_q4_0_512;
    k->matmul[QT_Q5_0] = mm_q5_0_512;
    k->matmul[QT_Q4_K] = mm_q4k_512;
    k->matmul[QT_Q5_K] = mm_q5k_512;
    k->matmul[QT_Q6_K] = mm_q6k_512;
    k->axpy_f32 = axpy_f32_512;
}

#pragma GCC pop_options

/* ---- AVX512-BF16: pairs of bf16 products summed into f32 in one instruction ---- */
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")

AI void bf16dp_tile(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *act, size_t as,
                    int64_t n, float *y, int64_t ys) {
    if (RM * RN == 1) { /* decode: four chains, or the latency is the limit */
        __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
        int64_t i = 0;
        for (; i + 128 <= n; i += 128)
#pragma GCC unroll 16
            for (int u = 0; u < 4; u++)
                s[u] = _mm512_dpbf16_ps(s[u], (__m512bh)_mm512_loadu_si512(w + (i + 32 * u) * 2),
                                        (__m512bh)_mm512_loadu_si512(act + (i + 32 * u) * 2));
        for (; i < n; i += 32) {
            __mmask32 m = n - i >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (n - i)) - 1);
            s[0] = _mm512_dpbf16_ps(s[0], (__m512bh)_mm512_maskz_loadu_epi16(m, w + i * 2),
                                    (__m512bh)_mm512_maskz_loadu_epi16(m, act + i * 2));
        }
        y[0] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
        return;
    }
    __m512 acc[4][4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (n - i)) - 1);
        __m512i wv[4], av[4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) wv[r] = _mm512_maskz_loadu_epi16(m, w + r * rb + i * 2);
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) av[t] = _mm512_maskz_loadu_epi16(m, act + t * as + i * 2);
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
            for (int t = 0; t < RN; t++)
                acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], (__m512bh)av[t]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) y[t * ys + r] = _mm512_reduce_add_ps(acc[r][t]);
}

QX_SETR(bf16dp_tile, bf16dp_dec)
QX_SET(bf16dp_tile, bf16dp_pp, 4, 4)
QX_MATMUL(mm_bf16dp, bf16dp_dec, bf16dp_pp)

#pragma GCC pop_options

/* ---- AVX512-VBMI: byte permutes gather a group of blocks' quants and scales ---- */
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi")

/* Q4_0 decode, four blocks (72 bytes, 128 weights) a step. One 64-byte load plus the 8
 * bytes after it hold the four blocks; a two-source byte permute puts their 16 quant bytes
 * in the four 128-bit lanes and a one-source one spreads their four fp16 scales over the
 * lanes' dwords. The pairwise kernel spends about as many instructions on two blocks as
 * this one does on four (scalar scale loads, inserts), and Q4_0 decode is compute-bound
 * on one core. Same integers; the float sum is per 4-element lane, one fmadd per block
 * group, like the pairwise kernel's. The activation side (quants split into low and high
 * halves per lane, -8 * their sums, scales) is prepared once per call. */
#define V4_GROUPS 64 /* groups of 4 blocks prepared at once: 8192 elements */

static const uint8_t q40v_iq[64] = {
#define Q40V_L(k)                                                                                  \
    18 * k + 2, 18 * k + 3, 18 * k + 4, 18 * k + 5, 18 * k + 6, 18 * k + 7, 18 * k + 8,            \
        18 * k + 9, 18 * k + 10, 18 * k + 11, 18 * k + 12, 18 * k + 13, 18 * k + 14, 18 * k + 15,  \
        18 * k + 16, 18 * k + 17
    Q40V_L(0), Q40V_L(1), Q40V_L(2), Q40V_L(3)
#undef Q40V_L
};
/* fp16 scale of block k into halfwords 4k..4k+3 (the lanes of block k), then zeros */
static const uint8_t q40v_id[64] = {
#define Q40V_D(k) 18 * k, 18 * k + 1, 18 * k, 18 * k + 1, 18 * k, 18 * k + 1, 18 * k, 18 * k + 1
    Q40V_D(0), Q40V_D(1), Q40V_D(2), Q40V_D(3)
#undef Q40V_D
};

static void q40_dec_vbmi(const uint8_t *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                         const uint8_t *act, float *y) {
    const size_t wbs = sizeof(blk_q4_0), abs_ = sizeof(blk_q8_0);
    const __m512i m4 = _mm512_set1_epi8(0x0f), k8 = _mm512_set1_epi8(8);
    const __m512i iq = _mm512_loadu_si512(q40v_iq), id = _mm512_loadu_si512(q40v_id);
    __m512i alo[V4_GROUPS], ahi[V4_GROUPS], cv[V4_GROUPS];
    __m512 dav[V4_GROUPS];
    const int64_t nb = n / QK8_0;
    for (int64_t b0 = 0; b0 < nb; b0 += 4 * V4_GROUPS) {
        const int64_t nbc = nb - b0 < 4 * V4_GROUPS ? nb - b0 : 4 * V4_GROUPS;
        const int64_t nfull = nbc / 4, ng = (nbc + 3) / 4;
        for (int64_t g = 0; g < ng; g++) {
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            uint16_t h[16] = {0};
            for (int k = 0; k < 4 && 4 * g + k < nbc; k++) {
                const uint8_t *q = act + (b0 + 4 * g + k) * abs_;
                __m128i l = _mm_loadu_si128((const __m128i *)(q + 2)),
                        u = _mm_loadu_si128((const __m128i *)(q + 18));
                switch (k) { /* the lane index must be a constant */
                case 0:
                    lo = _mm512_inserti32x4(lo, l, 0);
                    hi = _mm512_inserti32x4(hi, u, 0);
                    break;
                case 1:
                    lo = _mm512_inserti32x4(lo, l, 1);
                    hi = _mm512_inserti32x4(hi, u, 1);
                    break;
                case 2:
                    lo = _mm512_inserti32x4(lo, l, 2);
                    hi = _mm512_inserti32x4(hi, u, 2);
                    break;
                default:
                    lo = _mm512_inserti32x4(lo, l, 3);
                    hi = _mm512_inserti32x4(hi, u, 3);
                    break;
                }
                uint16_t d;
                memcpy(&d, q, 2);
                h[4 * k] = h[4 * k + 1] = h[4 * k + 2] = h[4 * k + 3] = d;
            }
            alo[g] = lo;
            ahi[g] = hi;
            dav[g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
            cv[g] = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), k8, lo), k8, hi));
        }
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *p = w + (size_t)r * rb + b0 * wbs;
            __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
            int64_t g = 0;
            for (; g < nfull; g++, p += 4 * wbs) {
                __m512i a = _mm512_loadu_si512(p);
                __m512i b = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(p + 64)));
                __m512i qv = _mm512_permutex2var_epi8(a, iq, b);
                __m512i pr = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(cv[g], _mm512_and_si512(qv, m4), alo[g]),
                    _mm512_and_si512(_mm512_srli_epi16(qv, 4), m4), ahi[g]);
                __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(id, a)));
                /* two accumulators: consecutive fmadds need not wait for each other */
                if (g & 1)
                    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(dw, dav[g]), acc1);
                else
                    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(dw, dav[g]), acc0);
            }
            if (g < ng) { /* 1-3 blocks: the rest of the group reads as zeros */
                __mmask64 m = _cvtu64_mask64((1ull << (18 * (nbc - 4 * g))) - 1);
                __m512i a = _mm512_maskz_loadu_epi8(m, p);
                __m512i qv = _mm512_permutexvar_epi8(iq, a);
                __m512i pr = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(cv[g], _mm512_and_si512(qv, m4), alo[g]),
                    _mm512_and_si512(_mm512_srli_epi16(qv, 4), m4), ahi[g]);
                __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(id, a)));
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(dw, dav[g]), acc0);
            }
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
            y[r] = b0 == 0 ? s : y[r] + s;
        }
    }
}

static void mm_q4_0_vbmi(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                         const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    if (nt == 1)
        q40_dec_vbmi(w, rb, n, r0, r1, act, y);
    else
        mm_q4_0_512(w, rb, n, r0, r1, act, as, nt, y, ys);
}

static void fill_avx512vbmi(qti_kernels *k) {
    k->matmul[QT_Q4_0] = mm_q4_0_vbmi;
}

#pragma GCC pop_options

void qti_x86_fill(int isa, qti_kernels *k) {
    if (isa == QT_ISA_AVX2) {
        fill_avx2(k);
    } else if (isa == QT_ISA_AVX512) {
        fill_avx512(k);
        if (has_avx512bf16()) k->matmul[QT_BF16] = mm_bf16dp;
    } else if (isa == QT_ISA_AVX512VBMI) {
        fill_avx512vbmi(k);
    }
}

#else /* not x86-64 with GCC/Clang: the portable kernels only */

int qti_x86_best(void) {
    return QT_ISA_GENERIC;
}

void qti_x86_fill(int isa, qti_kernels *k) {
    (void)isa;
    (void)k;
}

#endif

#else /* QX_TEMPLATE: the integer kernels, compiled once per level */

/* ---- blocks of 32 (Q8_0, Q4_0, Q5_0 x Q8_0; Q4_1, Q5_1 x Q8_1) ---- */
/* With VNNI, vpdpbusd wants one unsigned operand: weights are made unsigned (Q8_0: +128 by
 * flipping the sign bit; Q4_0/Q5_0: the raw 4/5-bit q, 8/16 above its value; Q4_1/Q5_1
 * are unsigned already) and the accumulator starts at -K * (sums of 4 activations),
 * K = 128, 8 or 16 (0 for the _1 types), computed once per token and block.
 * Without VNNI: Q8_0 uses |a| x sign-adjusted w through vpmaddubsw (no saturation since
 * |w|, |a| <= 127); the others multiply the unsigned q (<= 31: pairs stay below 2^13) and
 * subtract K * a in 16 bits before widening.
 * The _1 types add m * s (weight min times the activation block's d * sum(q)) per block,
 * in a scalar sum of their own. */
AI size_t QX(q32_wbs)(int kind) {
    return kind == QT_Q8_0   ? sizeof(blk_q8_0)
           : kind == QT_Q4_0 ? sizeof(blk_q4_0)
           : kind == QT_Q4_1 ? sizeof(blk_q4_1)
           : kind == QT_Q5_0 ? sizeof(blk_q5_0)
                             : sizeof(blk_q5_1);
}

/* The 32 unsigned weight bytes of block p in element order (Q8_0: signed, as stored). */
AI __m256i QX(q32_load)(int kind, const uint8_t *p) {
    if (kind == QT_Q8_0) return _mm256_loadu_si256((const __m256i *)(p + 2));
    const int qs = kind == QT_Q4_0 ? 2 : kind == QT_Q4_1 ? 4 : kind == QT_Q5_0 ? 6 : 8;
    __m128i x = _mm_loadu_si128((const __m128i *)(p + qs));
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0f));
    if (kind == QT_Q5_0 || kind == QT_Q5_1) {
        /* bit j of qh -> 0x10 in byte j: byte j of a broadcast holds bit j's byte, then
         * one bit per byte is tested */
        uint32_t qh;
        memcpy(&qh, p + (kind == QT_Q5_0 ? 2 : 4), 4);
        const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                             2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), sel);
        h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
        q = _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
    }
    return q;
}

AI void QX(q32_tile)(int kind, int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *act,
                     size_t as, int64_t n, float *y, int64_t ys) {
    const size_t wbs = QX(q32_wbs)(kind);
    const int one = kind == QT_Q4_1 || kind == QT_Q5_1; /* Q8_1 activations, min term */
    const size_t abs_ = one ? sizeof(blk_q8_1) : sizeof(blk_q8_0);
    const int aqs = one ? 4 : 2;
    const int64_t nb = n / QK8_0;
    const char koff = kind == QT_Q8_0 ? (char)0x80 : kind == QT_Q4_0 ? 8 : kind == QT_Q5_0 ? 16 : 0;
#if QX_VNNI
    const __m256i kk = _mm256_set1_epi8(koff);
#else
    const __m256i ones16 = _mm256_set1_epi16(1);
    const __m256i kk = _mm256_set1_epi8(koff);
#endif
    __m256 acc[4][4];
    float msum[4][4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) {
            acc[r][t] = _mm256_setzero_ps();
            msum[r][t] = 0.0f;
        }
    for (int64_t b = 0; b < nb; b++) {
        __m256i wq[4];
        __m256 dw[4];
        float mw[4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            const uint8_t *p = w + r * rb + b * wbs;
            _mm_prefetch((const char *)p + QX_PF, _MM_HINT_T0);
            dw[r] = _mm256_set1_ps(f16_at(p));
            mw[r] = one ? f16_at(p + 2) : 0.0f;
            wq[r] = QX(q32_load)(kind, p);
#if QX_VNNI
            if (kind == QT_Q8_0) wq[r] = _mm256_xor_si256(wq[r], kk);
#endif
        }
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) {
            const uint8_t *q = act + t * as + b * abs_;
            __m256 da = _mm256_set1_ps(f16_at(q));
            float sa = one ? f16_at(q + 2) : 0.0f;
            __m256i a = _mm256_loadu_si256((const __m256i *)(q + aqs));
#if QX_VNNI
            __m256i c = one ? _mm256_setzero_si256()
                            : _mm256_sub_epi32(_mm256_setzero_si256(),
                                               _mm256_dpbusd_epi32(_mm256_setzero_si256(), kk, a));
#else
            __m256i aa = _mm256_sign_epi8(a, a);
            __m256i c16 = _mm256_maddubs_epi16(kk, a);
#endif
#pragma GCC unroll 16
            for (int r = 0; r < RM; r++) {
#if QX_VNNI
                __m256i p = _mm256_dpbusd_epi32(c, wq[r], a);
#else
                __m256i p16;
                if (kind == QT_Q8_0)
                    p16 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(wq[r], a));
                else if (one)
                    p16 = _mm256_maddubs_epi16(wq[r], a);
                else
                    p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(wq[r], a), c16);
                __m256i p = _mm256_madd_epi16(p16, ones16);
#endif
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[r], da), acc[r][t]);
                if (one) msum[r][t] += mw[r] * sa;
            }
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) y[t * ys + r] = hsum256(acc[r][t]) + msum[r][t];
}

AI void QX(q8_0_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    QX(q32_tile)(QT_Q8_0, RM, RN, w, rb, a, as, n, y, ys);
}
AI void QX(q4_0_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    QX(q32_tile)(QT_Q4_0, RM, RN, w, rb, a, as, n, y, ys);
}
AI void QX(q4_1_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    QX(q32_tile)(QT_Q4_1, RM, RN, w, rb, a, as, n, y, ys);
}
AI void QX(q5_0_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    QX(q32_tile)(QT_Q5_0, RM, RN, w, rb, a, as, n, y, ys);
}
AI void QX(q5_1_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                      int64_t n, float *y, int64_t ys) {
    QX(q32_tile)(QT_Q5_1, RM, RN, w, rb, a, as, n, y, ys);
}

/* acc += sums of pairs of (unsigned u x signed s) products, times the int16 scales sc */
AI __m256i QX(dot_scaled)(__m256i acc, __m256i u, __m256i s, __m256i sc) {
#if QX_VNNI
    return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), sc);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc));
#endif
}

/* ---- Q4_K and Q5_K weights x Q8_K activations ---- */
/* Per block: isum = sum_j sc_j * (q_j . a_j) exactly in int32 lanes (|isum| < 2^25), and
 * the mins term sum_j m_j * (bsum_2j + bsum_2j+1) from the activation sums. The K-quant
 * kernels then add the block in the portable code's float order, to the bit: small models
 * with Q8_K activations proved sensitive enough that reordered sums flipped activation
 * roundings downstream and moved logits by percents. */
AI void QX(qk45_tile)(int five, int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *act,
                      size_t as, int64_t n, float *y, int64_t ys) {
    const int64_t nb = n / QK_K;
    const size_t bs = five ? sizeof(blk_q5_k) : sizeof(blk_q4_k);
    const size_t qs_off = five ? offsetof(blk_q5_k, qs) : offsetof(blk_q4_k, qs);
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    /* int16 lane i <- byte j of the 16 unpacked scale bytes (sc 0..7, m 8..15) */
    __m256i splat[8];
#pragma GCC unroll 16
    for (int j = 0; j < 8; j++) splat[j] = _mm256_set1_epi16((short)(0x8000 | j));
    const __m256i mins_idx = _mm256_setr_epi16(
        (short)0x8008, (short)0x8008, (short)0x8009, (short)0x8009, (short)0x800a, (short)0x800a,
        (short)0x800b, (short)0x800b, (short)0x800c, (short)0x800c, (short)0x800d, (short)0x800d,
        (short)0x800e, (short)0x800e, (short)0x800f, (short)0x800f);
    float sum[4][4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) sum[r][t] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        __m256i sc[4], mins[4];
        float d[4], dmin[4];
        const uint8_t *qs[4];
        __m256i qh[4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            /* Q4_K and Q5_K share d, dmin and the scales at the same offsets */
            const blk_q4_k *x = (const blk_q4_k *)(w + r * rb + b * bs);
            d[r] = _cvtsh_ss(x->d);
            dmin[r] = _cvtsh_ss(x->dmin);
            qs[r] = (const uint8_t *)x + qs_off;
            qh[r] = five ? _mm256_loadu_si256((const __m256i *)((const blk_q5_k *)x)->qh)
                         : _mm256_setzero_si256();
            /* 12 bytes of 6-bit scales and mins -> 8 scale bytes then 8 min bytes */
            uint32_t u[4];
            memcpy(u, x->scales, 12);
            const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
            u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
            uint32_t m03 = u[1] & k1;
            u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
            u[2] = m03;
            u[0] &= k1;
            sc[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)u));
            mins[r] = _mm256_shuffle_epi8(sc[r], mins_idx);
        }
        __m256i isum[4][4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
            for (int t = 0; t < RN; t++) isum[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 16
        for (int c = 0; c < 4; c++) {
            __m256i lo[4], hi[4], slo[4], shi[4];
#pragma GCC unroll 16
            for (int r = 0; r < RM; r++) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(qs[r] + 32 * c));
                lo[r] = _mm256_and_si256(x, m4);
                hi[r] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
                if (five) { /* bit 2c (2c + 1) of qh[l] to bit 4 of element 64c + l (+ 32) */
                    __m256i hl = 2 * c <= 4 ? _mm256_slli_epi16(qh[r], 4 - 2 * c)
                                            : _mm256_srli_epi16(qh[r], 2 * c - 4);
                    __m256i hh = 2 * c + 1 <= 4 ? _mm256_slli_epi16(qh[r], 3 - 2 * c)
                                                : _mm256_srli_epi16(qh[r], 2 * c - 3);
                    lo[r] = _mm256_or_si256(lo[r], _mm256_and_si256(hl, b4));
                    hi[r] = _mm256_or_si256(hi[r], _mm256_and_si256(hh, b4));
                }
                slo[r] = _mm256_shuffle_epi8(sc[r], splat[2 * c]);
                shi[r] = _mm256_shuffle_epi8(sc[r], splat[2 * c + 1]);
            }
#pragma GCC unroll 16
            for (int t = 0; t < RN; t++) {
                const blk_q8_k *a = (const blk_q8_k *)(act + t * as) + b;
                __m256i alo = _mm256_loadu_si256((const __m256i *)(a->qs + 64 * c));
                __m256i ahi = _mm256_loadu_si256((const __m256i *)(a->qs + 64 * c + 32));
#pragma GCC unroll 16
                for (int r = 0; r < RM; r++) {
                    isum[r][t] = QX(dot_scaled)(isum[r][t], lo[r], alo, slo[r]);
                    isum[r][t] = QX(dot_scaled)(isum[r][t], hi[r], ahi, shi[r]);
                }
            }
        }
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) {
            const blk_q8_k *a = (const blk_q8_k *)(act + t * as) + b;
            __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
            float da = a->d;
#pragma GCC unroll 16
            for (int r = 0; r < RM; r++) {
                int32_t is = hsum256_epi32(isum[r][t]);
                int32_t ms = hsum256_epi32(_mm256_madd_epi16(mins[r], bs));
                sum[r][t] += d[r] * da * (float)is;
                sum[r][t] -= dmin[r] * da * (float)ms;
            }
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) y[t * ys + r] = sum[r][t];
}

AI void QX(q4k_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                     int64_t n, float *y, int64_t ys) {
    QX(qk45_tile)(0, RM, RN, w, rb, a, as, n, y, ys);
}
AI void QX(q5k_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *a, size_t as,
                     int64_t n, float *y, int64_t ys) {
    QX(qk45_tile)(1, RM, RN, w, rb, a, as, n, y, ys);
}

/* ---- Q6_K weights x Q8_K activations ---- */
/* The 6-bit q is used unsigned (0..63) and the -32 offset folded in at the end:
 * isum = sum_j sc_j * (q_j . a_j) - 32 * sum_j sc_j * bsum_j, all exact in int32. */
AI void QX(q6k_tile)(int RM, int RN, const uint8_t *w, size_t rb, const uint8_t *act, size_t as,
                     int64_t n, float *y, int64_t ys) {
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    /* pair p of sub-block scales: int16 lanes 0..7 <- sc[2p], 8..15 <- sc[2p+1], taken from
     * the 8 int16 scales duplicated in both 128-bit halves */
    __m256i pair[4];
#pragma GCC unroll 16
    for (int p = 0; p < 4; p++)
        pair[p] = _mm256_setr_epi8(
            (char)(4 * p), (char)(4 * p + 1), (char)(4 * p), (char)(4 * p + 1), (char)(4 * p),
            (char)(4 * p + 1), (char)(4 * p), (char)(4 * p + 1), (char)(4 * p), (char)(4 * p + 1),
            (char)(4 * p), (char)(4 * p + 1), (char)(4 * p), (char)(4 * p + 1), (char)(4 * p),
            (char)(4 * p + 1), (char)(4 * p + 2), (char)(4 * p + 3), (char)(4 * p + 2),
            (char)(4 * p + 3), (char)(4 * p + 2), (char)(4 * p + 3), (char)(4 * p + 2),
            (char)(4 * p + 3), (char)(4 * p + 2), (char)(4 * p + 3), (char)(4 * p + 2),
            (char)(4 * p + 3), (char)(4 * p + 2), (char)(4 * p + 3), (char)(4 * p + 2),
            (char)(4 * p + 3));
    float sum[4][4];
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) sum[r][t] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const blk_q6_k *x[4];
        __m256i sc16[4], scl[4], sch[4];
        float d[4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++) {
            x[r] = (const blk_q6_k *)(w + r * rb) + b;
            d[r] = _cvtsh_ss(x[r]->d);
            sc16[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[r]->scales));
            scl[r] = _mm256_permute2x128_si256(sc16[r], sc16[r], 0x00);
            sch[r] = _mm256_permute2x128_si256(sc16[r], sc16[r], 0x11);
        }
        __m256i isum[4][4];
#pragma GCC unroll 16
        for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
            for (int t = 0; t < RN; t++) isum[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 16
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 16
            for (int k = 0; k < 4; k++) {
                __m256i v[4], s[4];
#pragma GCC unroll 16
                for (int r = 0; r < RM; r++) {
                    const uint8_t *ql = x[r]->ql + 64 * h, *qh = x[r]->qh + 32 * h;
                    __m256i A = _mm256_loadu_si256((const __m256i *)(ql + (k & 1) * 32));
                    __m256i H = _mm256_loadu_si256((const __m256i *)qh);
                    __m256i lo4 = k < 2 ? _mm256_and_si256(A, m4)
                                        : _mm256_and_si256(_mm256_srli_epi16(A, 4), m4);
                    __m256i hi2 = k == 0   ? _mm256_slli_epi16(H, 4)
                                  : k == 1 ? _mm256_slli_epi16(H, 2)
                                  : k == 2 ? H
                                           : _mm256_srli_epi16(H, 2);
                    v[r] = _mm256_or_si256(lo4, _mm256_and_si256(hi2, m30));
                    /* element 128h + 32k: sub-blocks 8h + 2k and 8h + 2k + 1 */
                    s[r] = _mm256_shuffle_epi8(h == 0 ? scl[r] : sch[r], pair[k]);
                }
#pragma GCC unroll 16
                for (int t = 0; t < RN; t++) {
                    const blk_q8_k *a = (const blk_q8_k *)(act + t * as) + b;
                    __m256i av = _mm256_loadu_si256((const __m256i *)(a->qs + 128 * h + 32 * k));
#pragma GCC unroll 16
                    for (int r = 0; r < RM; r++)
                        isum[r][t] = QX(dot_scaled)(isum[r][t], v[r], av, s[r]);
                }
            }
        }
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) {
            const blk_q8_k *a = (const blk_q8_k *)(act + t * as) + b;
            __m256i bs = _mm256_loadu_si256((const __m256i *)a->bsums);
            float da = a->d;
#pragma GCC unroll 16
            for (int r = 0; r < RM; r++) {
                __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16[r], bs), 5);
                int32_t is = hsum256_epi32(_mm256_sub_epi32(isum[r][t], corr));
                sum[r][t] += d[r] * da * (float)is;
            }
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++)
#pragma GCC unroll 16
        for (int t = 0; t < RN; t++) y[t * ys + r] = sum[r][t];
}

QX_SETR(QX(q8_0_tile), QX(q8_0_dec))
QX_SET(QX(q8_0_tile), QX(q8_0_pp), QX_MR, QX_NR)
QX_MATMUL(QX(mm_q8_0), QX(q8_0_dec), QX(q8_0_pp))
QX_SETR(QX(q4_0_tile), QX(q4_0_dec))
QX_SET(QX(q4_0_tile), QX(q4_0_pp), QX_MR, QX_NR)
QX_MATMUL(QX(mm_q4_0), QX(q4_0_dec), QX(q4_0_pp))
QX_SETR(QX(q4_1_tile), QX(q4_1_dec))
QX_SET(QX(q4_1_tile), QX(q4_1_pp), QX_MR, QX_NR)
QX_MATMUL(QX(mm_q4_1), QX(q4_1_dec), QX(q4_1_pp))
QX_SETR(QX(q5_0_tile), QX(q5_0_dec))
QX_SET(QX(q5_0_tile), QX(q5_0_pp), QX_MR, QX_NR)
QX_MATMUL(QX(mm_q5_0), QX(q5_0_dec), QX(q5_0_pp))
QX_SETR(QX(q5_1_tile), QX(q5_1_dec))
QX_SET(QX(q5_1_tile), QX(q5_1_pp), QX_MR, QX_NR)
QX_MATMUL(QX(mm_q5_1), QX(q5_1_dec), QX(q5_1_pp))
QX_SETR(QX(q4k_tile), QX(q4k_dec))
QX_SET(QX(q4k_tile), QX(q4k_pp), QX_KMR, QX_KNR)
QX_MATMUL(QX(mm_q4k), QX(q4k_dec), QX(q4k_pp))
QX_SETR(QX(q5k_tile), QX(q5k_dec))
QX_SET(QX(q5k_tile), QX(q5k_pp), QX_KMR, QX_KNR)
QX_MATMUL(QX(mm_q5k), QX(q5k_dec), QX(q5k_pp))
QX_SETR(QX(q6k_tile), QX(q6k_dec))
QX_SET(QX(q6k_tile), QX(q6k_pp), QX_KMR, QX_KNR)
QX_MATMUL(QX(mm_q6k), QX(q6k_dec), QX(q6k_pp))

static void QX(fill_int)(qti_kernels *k) {
    k->matmul[QT_Q8_0] = QX(mm_q8_0);
    k->matmul[QT_Q4_0] = QX(mm_q4_0);
    k->matmul[QT_Q4_K] = QX(mm_q4k);
    k->matmul[QT_Q4_1] = QX(mm_q4_1);
    k->matmul[QT_Q5_0] = QX(mm_q5_0);
    k->matmul[QT_Q5_1] = QX(mm_q5_1);
    k->matmul[QT_Q5_K] = QX(mm_q5k);
    k->matmul[QT_Q6_K] = QX(mm_q6k);
}

#endif /* QX_TEMPLATE */
