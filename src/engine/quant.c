/* quant.c - tensor element types: sizes, (de)quantization, and dot products.
 *
 * Block layouts are ggml's, byte for byte, because the files we write are also read by
 * llama.cpp and the files we read were written by it. Numerics follow llama.cpp's x86 CPU
 * backend where it matters for matching logits:
 *   - Q8_0 activations: d = amax/127 (stored f16), q = round-to-nearest-even(x * (127/amax)).
 *     This is what ggml's AVX quantize_row_q8_0 does; its portable reference instead
 *     multiplies by 1/d and rounds half away from zero, which differs on a few elements.
 *   - Q8_K activations: ggml's reference (signed max, iscale = -127/max, d = 1/iscale).
 *   - Q8_1 activations (Q4_1/Q5_1): as Q8_0's, plus s = f16(d * sum(q)) from the unrounded d.
 *   - Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q5_K weight quantization: ggml's reference (Q5_K with its
 *     weighted scale search), so our files equal llama-quantize's (no imatrix) for these.
 *   - Quantized dots accumulate integers per (sub-)block and scale once per block.
 *
 * Every type has one entry in a kernel table; a SIMD build replaces table entries only.
 * Row pointers must be aligned to 2 bytes (4 for Q8_K and F32), which GGUF data and
 * malloc'd buffers are. */
#include "engine/quant.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/status.h"
#include "engine/quant_impl.h"

/* ---- scalar conversions ---- */
static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float qt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t qt_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep the top payload bits, force quiet like F16C does */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) /* >= 65520 rounds to infinity (65504 is odd, ties go up) */
        return (uint16_t)(sign | 0x7c00);
    if (a >= 0x38800000u) { /* normal in f16: round mantissa, carries flow into exponent */
        uint32_t r = a + 0xfffu + ((a >> 13) & 1);
        return (uint16_t)(sign | ((r - (112u << 23)) >> 13));
    }
    /* subnormal or zero in f16: value in units of 2^-24, rounded to nearest even */
    uint32_t e = a >> 23;
    if (e < 102) /* below 2^-25: rounds to zero (also covers f32 subnormals) */
        return sign;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t s = 126 - e; /* 14..24 */
    uint32_t q = m >> s;
    uint32_t rem = m & ((1u << s) - 1);
    uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

float qt_bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t qt_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN even if the payload is low */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* Round to nearest, ties to even (the default FP environment), like ggml's nearest_int. */
static int round_even(float v) {
    return (int)lrintf(v);
}

/* ---- F32 / F16 / BF16 rows ---- */
static void deq_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void deq_f16(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qt_f16_to_f32(h[i]);
}

static void deq_bf16(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = qt_bf16_to_f32(h[i]);
}

static void q_f32(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void q_f16(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = qt_f32_to_f16(src[i]);
}

static void q_bf16(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = qt_f32_to_bf16(src[i]);
}

/* Float dots keep 8 partial sums: the shape of an 8-lane SIMD kernel, and a little more
 * accurate than one running sum. n is any length for the float types. */
static float dot_f32(const void *w, const void *a, int64_t n) {
    const float *x = w, *y = a;
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[i + l] * y[i + l];
    for (; i < n; i++) acc[0] += x[i] * y[i];
    float s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

static float dot_f16(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += qt_f16_to_f32(x[i + l]) * qt_f16_to_f32(y[i + l]);
    for (; i < n; i++) acc[0] += qt_f16_to_f32(x[i]) * qt_f16_to_f32(y[i]);
    float s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

static float dot_bf16(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += qt_bf16_to_f32(x[i + l]) * qt_bf16_to_f32(y[i + l]);
    for (; i < n; i++) acc[0] += qt_bf16_to_f32(x[i]) * qt_bf16_to_f32(y[i]);
    float s = 0;
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* ---- Q8_0 ---- */
static void deq_q8_0(const void *src, float *dst, int64_t n) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = qt_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = b[i].qs[j] * d;
    }
}

/* Weight quantizer: ggml's reference (x * (1/d), rounded half away from zero). */
static void q_q8_0(const float *src, void *dst, int64_t n) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = qt_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Activation quantizer: ggml's x86 kernel (x * (127/amax), ties to even, saturating). */
static void act_q8_0(const float *src, void *dst, int64_t n) {
    blk_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        b[i].d = qt_f32_to_f16(amax / 127.0f);
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            int q = round_even(x[j] * id);
            b[i].qs[j] = (int8_t)(q > 127 ? 127 : q < -128 ? -128 : q);
        }
    }
}

static float dot_q8_0(const void *w, const void *a, int64_t n) {
    const blk_q8_0 *x = w, *y = a;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK8_0; j++) isum += x[i].qs[j] * y[i].qs[j];
        sum += (float)isum * (qt_f16_to_f32(x[i].d) * qt_f16_to_f32(y[i].d));
    }
    return sum;
}

/* ---- Q4_0: low nibbles hold elements 0..15, high nibbles 16..31, value (q-8)*d ---- */
static void deq_q4_0(const void *src, float *dst, int64_t n) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        float d = qt_f16_to_f32(b[i].d);
        float *y = dst + i * QK4_0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((b[i].qs[j] & 0x0f) - 8) * d;
            y[j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ggml's reference: the element of largest magnitude maps exactly to -8, so the sign of
 * the scale follows it and the asymmetric range [-8, 7] is fully used. */
static void q_q4_0(const float *src, void *dst, int64_t n) {
    blk_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *x = src + i * QK4_0;
        float amax = 0, max = 0;
        for (int j = 0; j < QK4_0; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = qt_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = (int)(x[j] * id + 8.5f);
            int q1 = (int)(x[j + QK4_0 / 2] * id + 8.5f);
            q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
            q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static float dot_q4_0(const void *w, const void *a, int64_t n) {
    const blk_q4_0 *x = w;
    const blk_q8_0 *y = a;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            isum += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK4_0 / 2];
        }
        sum += (float)isum * (qt_f16_to_f32(x[i].d) * qt_f16_to_f32(y[i].d));
    }
    return sum;
}

/* ---- Q8_1: Q8_0 plus s = d * sum(q), the activations of Q4_1/Q5_1 ---- */
static void deq_q8_1(const void *src, float *dst, int64_t n) {
    const blk_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = qt_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = b[i].qs[j] * d;
    }
}

/* ggml's reference (the writer's choice): rounding half away from zero, as q_q8_0. */
static void q_q8_1(const float *src, void *dst, int64_t n) {
    blk_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_0; j++) {
            b[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = qt_f32_to_f16(d);
        b[i].s = qt_f32_to_f16((float)sum * d);
    }
}

/* ggml's x86 from_float, as act_q8_0 (ties to even), the sum scaled by the unrounded d. */
static void act_q8_1(const float *src, void *dst, int64_t n) {
    blk_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK8_0; j++) {
            int q = round_even(x[j] * id);
            q = q > 127 ? 127 : q < -128 ? -128 : q;
            b[i].qs[j] = (int8_t)q;
            sum += q;
        }
        b[i].d = qt_f32_to_f16(d);
        b[i].s = qt_f32_to_f16(d * (float)sum);
    }
}

/* ---- Q4_1: value q*d + m, q 0..15, nibble order of Q4_0 ---- */
static void deq_q4_1(const void *src, float *dst, int64_t n) {
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        float d = qt_f16_to_f32(b[i].d), m = qt_f16_to_f32(b[i].m);
        float *y = dst + i * QK4_0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (b[i].qs[j] & 0x0f) * d + m;
            y[j + QK4_0 / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

/* Block min and max of the row (f32, not yet rounded to f16), as ggml's references for the
 * _1 types start. */
static void minmax32(const float *x, float *lo, float *hi) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    *lo = mn;
    *hi = mx;
}

/* ggml's reference: d = (max - min)/15 from the unrounded min, q = trunc((x - min)/d + 0.5)
 * capped at 15. */
static void q_q4_1(const float *src, void *dst, int64_t n) {
    blk_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *x = src + i * QK4_0;
        float mn, mx;
        minmax32(x, &mn, &mx);
        float d = (mx - mn) / 15;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = qt_f32_to_f16(d);
        b[i].m = qt_f32_to_f16(mn);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = (int)((x[j] - mn) * id + 0.5f);
            int q1 = (int)((x[j + QK4_0 / 2] - mn) * id + 0.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Both dots with Q8_1 activations: the min term m * sum(a) comes from the activation's s. */
static float dot_q4_1(const void *w, const void *a, int64_t n) {
    const blk_q4_1 *x = w;
    const blk_q8_1 *y = a;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int32_t isum = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            isum += (x[i].qs[j] & 0x0f) * y[i].qs[j];
            isum += (x[i].qs[j] >> 4) * y[i].qs[j + QK4_0 / 2];
        }
        sum += (float)isum * (qt_f16_to_f32(x[i].d) * qt_f16_to_f32(y[i].d)) +
               qt_f16_to_f32(x[i].m) * qt_f16_to_f32(y[i].s);
    }
    return sum;
}

/* ---- Q5_0 / Q5_1: Q4_0's nibbles plus a fifth bit per element in qh ---- */
static void q5_unpack(const uint8_t *qh4, const uint8_t *qs, uint8_t *q) {
    uint32_t qh;
    memcpy(&qh, qh4, 4); /* little endian, like the file */
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
        q[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
}

/* q[0..32) of 0..31 -> nibbles and high bits; only bits 0..4 of each q are kept. */
static void q5_pack(const int *q, uint8_t *qh4, uint8_t *qs) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    memcpy(qh4, &qh, 4);
}

static void deq_q5_0(const void *src, float *dst, int64_t n) {
    const blk_q5_0 *b = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / 32; i++) {
        float d = qt_f16_to_f32(b[i].d);
        q5_unpack(b[i].qh, b[i].qs, q);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (q[j] - 16) * d;
    }
}

/* ggml's reference: as Q4_0's, the signed extreme maps to -16, q = trunc(x/d + 16.5) capped
 * at 31. */
static void q_q5_0(const float *src, void *dst, int64_t n) {
    blk_q5_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + i * 32;
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -16;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = qt_f32_to_f16(d);
        int q[32];
        for (int j = 0; j < 32; j++) {
            q[j] = (int)(x[j] * id + 16.5f);
            q[j] = q[j] > 31 ? 31 : q[j];
        }
        q5_pack(q, b[i].qh, b[i].qs);
    }
}

static float dot_q5_0(const void *w, const void *a, int64_t n) {
    const blk_q5_0 *x = w;
    const blk_q8_0 *y = a;
    uint8_t q[32];
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        q5_unpack(x[i].qh, x[i].qs, q);
        int32_t isum = 0;
        for (int j = 0; j < 32; j++) isum += (q[j] - 16) * y[i].qs[j];
        sum += (float)isum * (qt_f16_to_f32(x[i].d) * qt_f16_to_f32(y[i].d));
    }
    return sum;
}

static void deq_q5_1(const void *src, float *dst, int64_t n) {
    const blk_q5_1 *b = src;
    uint8_t q[32];
    for (int64_t i = 0; i < n / 32; i++) {
        float d = qt_f16_to_f32(b[i].d), m = qt_f16_to_f32(b[i].m);
        q5_unpack(b[i].qh, b[i].qs, q);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = q[j] * d + m;
    }
}

/* ggml's reference: as Q4_1's with 31 steps and no cap (a value rounding to 32 keeps its
 * low five bits, 0, exactly as ggml's byte store does). */
static void q_q5_1(const float *src, void *dst, int64_t n) {
    blk_q5_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        const float *x = src + i * 32;
        float mn, mx;
        minmax32(x, &mn, &mx);
        float d = (mx - mn) / 31;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = qt_f32_to_f16(d);
        b[i].m = qt_f32_to_f16(mn);
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = (int)((x[j] - mn) * id + 0.5f) & 0xff;
        q5_pack(q, b[i].qh, b[i].qs);
    }
}

static float dot_q5_1(const void *w, const void *a, int64_t n) {
    const blk_q5_1 *x = w;
    const blk_q8_1 *y = a;
    uint8_t q[32];
    float sum = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        q5_unpack(x[i].qh, x[i].qs, q);
        int32_t isum = 0;
        for (int j = 0; j < 32; j++) isum += q[j] * y[i].qs[j];
        sum += (float)isum * (qt_f16_to_f32(x[i].d) * qt_f16_to_f32(y[i].d)) +
               qt_f16_to_f32(x[i].m) * qt_f16_to_f32(y[i].s);
    }
    return sum;
}

/* ---- Q8_K (activations of the K-quants) ---- */
static void deq_q8_k(const void *src, float *dst, int64_t n) {
    const blk_q8_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++) dst[i * QK_K + j] = b[i].d * b[i].qs[j];
}

/* ggml's reference: scaled by the signed max so that element maps to -127; bsums hold the
 * sums of each 16 quants, which the K-quant dots use to apply the mins cheaply. */
static void q_q8_k(const float *src, void *dst, int64_t n) {
    blk_q8_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float amax = 0, max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (amax == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int q = round_even(iscale * x[j]);
            b[i].qs[j] = (int8_t)(q > 127 ? 127 : q);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b[i].qs[g * 16 + l];
            b[i].bsums[g] = (int16_t)s;
        }
        b[i].d = 1 / iscale;
    }
}

/* ---- Q4_K: 8 sub-blocks of 32, value d*sc*q - dmin*m with 6-bit sc and m ---- */

/* The 12 scale bytes: bytes 0..3 hold sc[0..3] in bits 0..5, bytes 4..7 hold m[0..3];
 * sub-blocks 4..7 keep their low 4 bits in bytes 8..11 (sc low, m high nibble) and their
 * top 2 bits in bits 6..7 of bytes 0..3 (sc) and 4..7 (m). */
static void q4k_get_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void q4k_pack_scales(uint8_t *s, const int *sc, const int *m) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4));
    }
}

/* Unpack a Q4_K block's quants to 0..15 in element order. */
static void q4k_unpack(const blk_q4_k *b, uint8_t *q) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = b->qs[32 * c + l] & 0x0f;
            q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
}

static void deq_q4_k(const void *src, float *dst, int64_t n) {
    const blk_q4_k *b = src;
    uint8_t q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = qt_f16_to_f32(b[i].d), dmin = qt_f16_to_f32(b[i].dmin);
        q4k_unpack(&b[i], q);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_get_scale_min(b[i].scales, j, &sc, &m);
            float ds = d * sc, dm = dmin * m;
            for (int l = 0; l < 32; l++) dst[i * QK_K + 32 * j + l] = ds * q[32 * j + l] - dm;
        }
    }
}

static int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* A plain min/max quantizer: valid blocks with modest error. It does not reproduce
 * llama-quantize's search; files only need to be readable identically by both engines. */
static void q_q4_k(const float *src, void *dst, int64_t n) {
    blk_q4_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float scale[8], mn[8], max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            float lo = x[32 * j], hi = x[32 * j];
            for (int l = 1; l < 32; l++) {
                lo = fminf(lo, x[32 * j + l]);
                hi = fmaxf(hi, x[32 * j + l]);
            }
            if (lo > 0) /* the offset is subtracted, so only non-positive minimums fit */
                lo = 0;
            scale[j] = (hi - lo) / 15;
            mn[j] = -lo;
            max_scale = fmaxf(max_scale, scale[j]);
            max_min = fmaxf(max_min, mn[j]);
        }
        uint16_t hd = qt_f32_to_f16(max_scale / 63), hm = qt_f32_to_f16(max_min / 63);
        float d = qt_f16_to_f32(hd), dmin = qt_f16_to_f32(hm);
        int sc[8], m[8];
        for (int j = 0; j < 8; j++) {
            /* round the scale up so the largest element still fits in 15 steps */
            sc[j] = d > 0 ? clampi((int)ceilf(scale[j] / d), 0, 63) : 0;
            m[j] = dmin > 0 ? clampi(round_even(mn[j] / dmin), 0, 63) : 0;
        }
        b[i].d = hd;
        b[i].dmin = hm;
        q4k_pack_scales(b[i].scales, sc, m);
        uint8_t q[QK_K];
        for (int j = 0; j < 8; j++) {
            float ds = d * sc[j], dm = dmin * m[j];
            for (int l = 0; l < 32; l++)
                q[32 * j + l] =
                    (uint8_t)(ds > 0 ? clampi(round_even((x[32 * j + l] + dm) / ds), 0, 15) : 0);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

static float dot_q4_k(const void *w, const void *a, int64_t n) {
    const blk_q4_k *x = w;
    const blk_q8_k *y = a;
    uint8_t q[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q4k_unpack(&x[i], q);
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_get_scale_min(x[i].scales, j, &sc, &m);
            int32_t s = 0;
            for (int l = 0; l < 32; l++) s += q[32 * j + l] * y[i].qs[32 * j + l];
            isum += sc * s;
            /* the min term needs only the activation sums, which bsums carry */
            msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += qt_f16_to_f32(x[i].d) * y[i].d * (float)isum;
        sum -= qt_f16_to_f32(x[i].dmin) * y[i].d * (float)msum;
    }
    return sum;
}

/* ---- Q5_K: Q4_K's sub-blocks and scales with 5-bit quants (bit 4 in qh) ---- */

static void q5k_unpack(const blk_q5_k *b, uint8_t *q) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] =
                (uint8_t)((b->qs[32 * c + l] & 0x0f) | (((b->qh[l] >> (2 * c)) & 1) << 4));
            q[64 * c + 32 + l] =
                (uint8_t)((b->qs[32 * c + l] >> 4) | (((b->qh[l] >> (2 * c + 1)) & 1) << 4));
        }
}

static void q5k_pack(blk_q5_k *b, const uint8_t *q) {
    memset(b->qh, 0, sizeof b->qh);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            b->qs[32 * c + l] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
            b->qh[l] |= (uint8_t)(((lo >> 4) & 1) << (2 * c) | ((hi >> 4) & 1) << (2 * c + 1));
        }
}

static void deq_q5_k(const void *src, float *dst, int64_t n) {
    const blk_q5_k *b = src;
    uint8_t q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = qt_f16_to_f32(b[i].d), dmin = qt_f16_to_f32(b[i].dmin);
        q5k_unpack(&b[i], q);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_get_scale_min(b[i].scales, j, &sc, &m);
            float ds = d * sc, dm = dmin * m;
            for (int l = 0; l < 32; l++) dst[i * QK_K + 32 * j + l] = ds * q[32 * j + l] - dm;
        }
    }
}

/* Weighted fit of one sub-block of 32 to scale * L + min (L 0..31, min <= 0), the search
 * ggml's reference quantizer does, so our files equal llama-quantize's: start from the
 * min/max grid, then try 16 slightly different grid steps, each followed by the closed-form
 * least-squares scale and offset for its L, and keep the one of least weighted squared
 * error. Float operations are in ggml's order (the byte-exact result depends on it).
 * Returns the scale; *neg_min = -min (>= 0); L[32] the quants of the best fit. */
static float q5k_fit(const float *x, const float *w, uint8_t *L, float *neg_min) {
    enum { NMAX = 31 };
    float mn = x[0], mx = x[0], sw = w[0], sx = w[0] * x[0];
    for (int i = 1; i < 32; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sw += w[i];
        sx += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, 32);
        *neg_min = -mn;
        return 0.0f;
    }
    float iscale = NMAX / (mx - mn);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < 32; i++) {
        L[i] = (uint8_t)clampi(round_even(iscale * (x[i] - mn)), 0, NMAX);
        float diff = scale * L[i] + mn - x[i];
        best += w[i] * (diff * diff);
    }
    for (int step = 0; step <= 15; step++) {
        iscale = (-0.5f + 0.1f * step + NMAX) / (mx - mn);
        uint8_t la[32];
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < 32; i++) {
            int l = clampi(round_even(iscale * (x[i] - mn)), 0, NMAX);
            la[i] = (uint8_t)l;
            sl += w[i] * l;
            sl2 += w[i] * l * l;
            sxl += w[i] * l * x[i];
        }
        float det = sw * sl2 - sl * sl;
        if (!(det > 0)) continue;
        float s = (sw * sxl - sx * sl) / det;
        float m = (sl2 * sx - sl * sxl) / det;
        if (m > 0) { /* the offset can only be subtracted: refit the scale alone */
            m = 0;
            s = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < 32; i++) {
            float diff = s * la[i] + m - x[i];
            err += w[i] * (diff * diff);
        }
        if (err < best) {
            memcpy(L, la, 32);
            best = err;
            scale = s;
            mn = m;
        }
    }
    *neg_min = -mn;
    return scale;
}

/* ggml's reference quantizer (no importance matrix): per sub-block fits weighted by
 * rms + |x|, 6-bit scales and mins against the largest of each, then the quants redone
 * against the rounded scales (sub-blocks whose scale rounds to 0 keep the fit's quants). */
static void q_q5_k(const float *src, void *dst, int64_t n) {
    blk_q5_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        uint8_t L[QK_K];
        float scale[8], mn[8], max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            float s2 = 0, w[32];
            for (int l = 0; l < 32; l++) s2 += xs[l] * xs[l];
            float rms = sqrtf(s2 / 32);
            for (int l = 0; l < 32; l++) w[l] = rms + fabsf(xs[l]);
            scale[j] = q5k_fit(xs, w, L + 32 * j, &mn[j]);
            if (scale[j] > max_scale) max_scale = scale[j];
            if (mn[j] > max_min) max_min = mn[j];
        }
        float inv_s = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_m = max_min > 0 ? 63.f / max_min : 0.f;
        int sc[8], m[8];
        for (int j = 0; j < 8; j++) {
            /* ggml stores the rounded value in a byte before capping at 63 */
            sc[j] = round_even(inv_s * scale[j]) & 0xff;
            m[j] = round_even(inv_m * mn[j]) & 0xff;
            sc[j] = sc[j] > 63 ? 63 : sc[j];
            m[j] = m[j] > 63 ? 63 : m[j];
        }
        q4k_pack_scales(b[i].scales, sc, m);
        b[i].d = qt_f32_to_f16(max_scale / 63.f);
        b[i].dmin = qt_f32_to_f16(max_min / 63.f);
        float d = qt_f16_to_f32(b[i].d), dmin = qt_f16_to_f32(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            float ds = d * sc[j];
            if (ds == 0) continue;
            float dm = dmin * m[j];
            for (int l = 0; l < 32; l++)
                L[32 * j + l] = (uint8_t)clampi(round_even((x[32 * j + l] + dm) / ds), 0, 31);
        }
        q5k_pack(&b[i], L);
    }
}

static float dot_q5_k(const void *w, const void *a, int64_t n) {
    const blk_q5_k *x = w;
    const blk_q8_k *y = a;
    uint8_t q[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q5k_unpack(&x[i], q);
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_get_scale_min(x[i].scales, j, &sc, &m);
            int32_t s = 0;
            for (int l = 0; l < 32; l++) s += q[32 * j + l] * y[i].qs[32 * j + l];
            isum += sc * s;
            msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += qt_f16_to_f32(x[i].d) * y[i].d * (float)isum;
        sum -= qt_f16_to_f32(x[i].dmin) * y[i].d * (float)msum;
    }
    return sum;
}

/* ---- Q6_K: 16 sub-blocks of 16, value d*sc*(q-32), q 6 bits split in ql (low 4) and qh ---- */

/* Element 128h + 32k + l (k = 0..3, l = 0..31): low nibble of ql[64h + l] for k = 0,
 * ql[64h + 32 + l] for k = 1, their high nibbles for k = 2, 3; bits 2k..2k+1 of qh[32h + l]. */
static void q6k_unpack(const blk_q6_k *b, int8_t *q) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static void q6k_pack(blk_q6_k *b, const uint8_t *q) {
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const uint8_t *s = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((s[l] & 0x0f) | ((s[l + 64] & 0x0f) << 4));
            ql[l + 32] = (uint8_t)((s[l + 32] & 0x0f) | ((s[l + 96] & 0x0f) << 4));
            qh[l] = (uint8_t)((s[l] >> 4) | ((s[l + 32] >> 4) << 2) | ((s[l + 64] >> 4) << 4) |
                              ((s[l + 96] >> 4) << 6));
        }
    }
}

static void deq_q6_k(const void *src, float *dst, int64_t n) {
    const blk_q6_k *b = src;
    int8_t q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = qt_f16_to_f32(b[i].d);
        q6k_unpack(&b[i], q);
        for (int j = 0; j < QK_K; j++) dst[i * QK_K + j] = d * b[i].scales[j / 16] * q[j];
    }
}

/* Simple scheme: each sub-block's signed extreme maps to -32 (so the asymmetric range
 * [-32, 31] is fully used), and the sub-block scales are quantized to int8 against d. */
static void q_q6_k(const float *src, void *dst, int64_t n) {
    blk_q6_k *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float scale[16], amax_s = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0, max = 0;
            for (int l = 0; l < 16; l++) {
                if (fabsf(x[16 * j + l]) > amax) {
                    amax = fabsf(x[16 * j + l]);
                    max = x[16 * j + l];
                }
            }
            scale[j] = max / -32;
            amax_s = fmaxf(amax_s, fabsf(scale[j]));
        }
        uint16_t hd = qt_f32_to_f16(amax_s / 127);
        float d = qt_f16_to_f32(hd);
        uint8_t q[QK_K];
        for (int j = 0; j < 16; j++) {
            int sc = d > 0 ? clampi(round_even(scale[j] / d), -128, 127) : 0;
            b[i].scales[j] = (int8_t)sc;
            float ds = d * sc;
            for (int l = 0; l < 16; l++)
                q[16 * j + l] =
                    (uint8_t)(ds != 0 ? clampi(round_even(x[16 * j + l] / ds), -32, 31) + 32 : 32);
        }
        b[i].d = hd;
        q6k_pack(&b[i], q);
    }
}

static float dot_q6_k(const void *w, const void *a, int64_t n) {
    const blk_q6_k *x = w;
    const blk_q8_k *y = a;
    int8_t q[QK_K];
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q6k_unpack(&x[i], q);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * j + l] * y[i].qs[16 * j + l];
            isum += x[i].scales[j] * s;
        }
        sum += qt_f16_to_f32(x[i].d) * y[i].d * (float)isum;
    }
    return sum;
}

/* ---- type table ---- */
typedef void (*deq_fn)(const void *src, float *dst, int64_t n);
typedef void (*q_fn)(const float *src, void *dst, int64_t n);
typedef float (*dot_fn)(const void *w, const void *a, int64_t n);

typedef struct {
    const char *name;
    int64_t blk;  /* elements per block; 0 = id not a ggml type */
    size_t bytes; /* bytes per block */
    uint32_t dot_type;
    deq_fn deq; /* NULL: cannot compute with this type */
    q_fn quant; /* weight quantizer (writer) */
    q_fn act;   /* activation converter when this is a vec-dot type */
    dot_fn dot; /* dot of a row of this type with activations of dot_type */
} type_info;

/* Sizes of ggml types we cannot compute with are kept so files holding them can still be
 * sized, listed and rejected with a precise message. */
static const type_info types[QT_MAX_ID] = {
    [QT_F32] = {"F32", 1, 4, QT_F32, deq_f32, q_f32, q_f32, dot_f32},
    [QT_F16] = {"F16", 1, 2, QT_F16, deq_f16, q_f16, q_f16, dot_f16},
    [QT_Q4_0] = {"Q4_0", 32, 18, QT_Q8_0, deq_q4_0, q_q4_0, NULL, dot_q4_0},
    [QT_Q4_1] = {"Q4_1", 32, 20, QT_Q8_1, deq_q4_1, q_q4_1, NULL, dot_q4_1},
    [QT_Q5_0] = {"Q5_0", 32, 22, QT_Q8_0, deq_q5_0, q_q5_0, NULL, dot_q5_0},
    [QT_Q5_1] = {"Q5_1", 32, 24, QT_Q8_1, deq_q5_1, q_q5_1, NULL, dot_q5_1},
    [QT_Q8_0] = {"Q8_0", 32, 34, QT_Q8_0, deq_q8_0, q_q8_0, act_q8_0, dot_q8_0},
    [QT_Q8_1] = {"Q8_1", 32, 36, QT_Q8_1, deq_q8_1, q_q8_1, act_q8_1, NULL},
    [10] = {"Q2_K", 256, 84, 0, NULL, NULL, NULL, NULL},
    [11] = {"Q3_K", 256, 110, 0, NULL, NULL, NULL, NULL},
    [QT_Q4_K] = {"Q4_K", 256, 144, QT_Q8_K, deq_q4_k, q_q4_k, NULL, dot_q4_k},
    [QT_Q5_K] = {"Q5_K", 256, 176, QT_Q8_K, deq_q5_k, q_q5_k, NULL, dot_q5_k},
    [QT_Q6_K] = {"Q6_K", 256, 210, QT_Q8_K, deq_q6_k, q_q6_k, NULL, dot_q6_k},
    [QT_Q8_K] = {"Q8_K", 256, 292, QT_Q8_K, deq_q8_k, q_q8_k, q_q8_k, NULL},
    [16] = {"IQ2_XXS", 256, 66, 0, NULL, NULL, NULL, NULL},
    [17] = {"IQ2_XS", 256, 74, 0, NULL, NULL, NULL, NULL},
    [18] = {"IQ3_XXS", 256, 98, 0, NULL, NULL, NULL, NULL},
    [19] = {"IQ1_S", 256, 50, 0, NULL, NULL, NULL, NULL},
    [20] = {"IQ4_NL", 32, 18, 0, NULL, NULL, NULL, NULL},
    [21] = {"IQ3_S", 256, 110, 0, NULL, NULL, NULL, NULL},
    [22] = {"IQ2_S", 256, 82, 0, NULL, NULL, NULL, NULL},
    [23] = {"IQ4_XS", 256, 136, 0, NULL, NULL, NULL, NULL},
    [24] = {"I8", 1, 1, 0, NULL, NULL, NULL, NULL},
    [25] = {"I16", 1, 2, 0, NULL, NULL, NULL, NULL},
    [26] = {"I32", 1, 4, 0, NULL, NULL, NULL, NULL},
    [27] = {"I64", 1, 8, 0, NULL, NULL, NULL, NULL},
    [28] = {"F64", 1, 8, 0, NULL, NULL, NULL, NULL},
    [29] = {"IQ1_M", 256, 56, 0, NULL, NULL, NULL, NULL},
    [QT_BF16] = {"BF16", 1, 2, QT_BF16, deq_bf16, q_bf16, q_bf16, dot_bf16},
    [34] = {"TQ1_0", 256, 54, 0, NULL, NULL, NULL, NULL},
    [35] = {"TQ2_0", 256, 66, 0, NULL, NULL, NULL, NULL},
    [39] = {"MXFP4", 32, 17, 0, NULL, NULL, NULL, NULL},
};

static const type_info *info(uint32_t type) {
    if (type >= QT_MAX_ID || types[type].blk == 0) return NULL;
    return &types[type];
}

/* ---- public API ---- */
int qt_supported(uint32_t type) {
    const type_info *t = info(type);
    return t && t->dot != NULL; /* Q8_K is an activation format, never a weight */
}

const char *qt_name(uint32_t type) {
    const type_info *t = info(type);
    return t ? t->name : "?";
}

int qt_from_name(const char *name) {
    static const struct {
        const char *name;
        int type;
    } names[] = {
        {"f32", QT_F32},   {"f16", QT_F16},   {"bf16", QT_BF16}, {"q8_0", QT_Q8_0},
        {"q4_0", QT_Q4_0}, {"q4_1", QT_Q4_1}, {"q5_0", QT_Q5_0}, {"q5_1", QT_Q5_1},
        {"q4_k", QT_Q4_K}, {"q5_k", QT_Q5_K}, {"q6_k", QT_Q6_K}, {"q4_k_m", QT_Q4_K},
    };
    if (!name) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(name, names[i].name) == 0) return names[i].type;
    return -1;
}

int64_t qt_block_elems(uint32_t type) {
    const type_info *t = info(type);
    return t ? t->blk : 0;
}

size_t qt_block_bytes(uint32_t type) {
    const type_info *t = info(type);
    return t ? t->bytes : 0;
}

size_t qt_row_bytes(uint32_t type, int64_t n) {
    const type_info *t = info(type);
    if (!t || n < 0 || n % t->blk != 0) return 0;
    /* a row larger than the address space cannot exist; say 0 rather than wrap */
    if ((uint64_t)(n / t->blk) > SIZE_MAX / t->bytes) return 0;
    return (size_t)(n / t->blk) * t->bytes;
}

void qt_dequant_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const type_info *t = info(type);
    if (!t || !t->deq || n <= 0 || n % t->blk != 0) return;
    t->deq(src, dst, n);
}

int qt_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    const type_info *t = info(type);
    if (!t || !t->quant)
        return sh_error_set(SH_EINVAL, "cannot quantize to type %s (%u)", qt_name(type), type);
    if (n < 0 || n % t->blk != 0)
        return sh_error_set(SH_EINVAL,
                            "row of %lld elements is not a multiple of %s's block of %lld",
                            (long long)n, t->name, (long long)t->blk);
    if (n > 0 && (!src || !dst)) return sh_error_set(SH_EINVAL, "quantize_row: NULL buffer");
    if (n > 0) t->quant(src, dst, n);
    return SH_OK;
}

uint32_t qt_vec_dot_type(uint32_t weight_type) {
    const type_info *t = info(weight_type);
    return t && t->dot ? t->dot_type : QT_F32;
}

/* ---- portable kernels of the generic level ---- */

/* One row's dot per output, through the type table: the reference every level is tested
 * against. */
static void matmul_generic(uint32_t weight_type, const void *w, size_t rb, int64_t n, int64_t r0,
                           int64_t r1, const void *act, size_t act_stride, int32_t n_tok, float *y,
                           int64_t y_stride) {
    dot_fn dot = types[weight_type].dot;
    const uint8_t *row = (const uint8_t *)w + (size_t)r0 * rb;
    for (int64_t r = r0; r < r1; r++, row += rb)
        for (int32_t k = 0; k < n_tok; k++)
            y[k * y_stride + r] = dot(row, (const uint8_t *)act + (size_t)k * act_stride, n);
}

/* The table holds plain function pointers, so each weight type gets a tiny wrapper. */
#define MATMUL_GENERIC(T)                                                                          \
    static void mm_generic_##T(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,        \
                               const void *act, size_t as, int32_t nt, float *y, int64_t ys) {     \
        matmul_generic(QT_##T, w, rb, n, r0, r1, act, as, nt, y, ys);                              \
    }
MATMUL_GENERIC(F32)
MATMUL_GENERIC(F16)
MATMUL_GENERIC(BF16)
MATMUL_GENERIC(Q8_0)
MATMUL_GENERIC(Q4_0)
MATMUL_GENERIC(Q4_1)
MATMUL_GENERIC(Q5_0)
MATMUL_GENERIC(Q5_1)
MATMUL_GENERIC(Q5_K)
MATMUL_GENERIC(Q4_K)
MATMUL_GENERIC(Q6_K)

/* ---- packed Q8_0 / Q4_0 (quant.h) ---- */
static size_t pack_q(uint32_t type) { /* quant bytes per block of 16 rows; 0: not packable */
    return type == QT_Q8_0 ? QT_PACK_Q8_0 : type == QT_Q4_0 ? QT_PACK_Q4_0 : 0;
}

void qt_pack(uint32_t type, const void *w, int64_t n, int64_t rows, void *dst) {
    const size_t qb = pack_q(type), rb = qt_row_bytes(type, n), nb = (size_t)(n / QK8_0);
    const size_t wbs = type == QT_Q8_0 ? sizeof(blk_q8_0) : sizeof(blk_q4_0);
    const size_t gb = QT_PACK_GROUP(qb, nb);
    const int nq = type == QT_Q8_0 ? 8 : 4; /* dwords of quants per row and block */
    const uint32_t flip = type == QT_Q8_0 ? 0x80808080u : 0; /* Q8_0: unsigned quants */
    for (int64_t g = 0; g < rows; g += QT_PACK_ROWS) {
        int nr = rows - g < QT_PACK_ROWS ? (int)(rows - g) : QT_PACK_ROWS;
        const uint8_t *src = (const uint8_t *)w + (size_t)g * rb;
        uint8_t *grp = (uint8_t *)dst + (size_t)(g / QT_PACK_ROWS) * gb;
        if (nr < QT_PACK_ROWS || nb % 2) memset(grp, 0, gb);
        for (size_t b = 0; b < nb; b++) {
            uint8_t *o = grp + QT_PACK_QOFF(qb, b), *dp = grp + QT_PACK_DOFF(qb, b);
            for (int j = 0; j < nr; j++) {
                const uint8_t *blk = src + (size_t)j * rb + b * wbs;
                memcpy(dp + 2 * j, blk, 2); /* fp16 scale */
                for (int q = 0; q < nq; q++) {
                    uint32_t v;
                    memcpy(&v, blk + 2 + 4 * q, 4);
                    v ^= flip;
                    memcpy(o + 64 * q + 4 * j, &v, 4);
                }
            }
        }
    }
}

/* Portable: each block of a row put back together, then the generic per-row order. */
static void mm_packed_generic(uint32_t type, const void *pw, int64_t n, int64_t r0, int64_t r1,
                              const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    const size_t qb = pack_q(type), nb = (size_t)(n / QK8_0), gb = QT_PACK_GROUP(qb, nb);
    const int nq = type == QT_Q8_0 ? 8 : 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *grp = (const uint8_t *)pw + (size_t)(r / QT_PACK_ROWS) * gb;
        int j = (int)(r % QT_PACK_ROWS);
        for (int32_t t = 0; t < nt; t++) {
            const blk_q8_0 *a = (const blk_q8_0 *)((const uint8_t *)act + (size_t)t * as);
            float sum = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *o = grp + QT_PACK_QOFF(qb, b);
                uint16_t h;
                memcpy(&h, grp + QT_PACK_DOFF(qb, b) + 2 * j, 2);
                int32_t isum = 0;
                for (int q = 0; q < nq; q++)
                    for (int k = 0; k < 4; k++) {
                        uint8_t v = o[64 * q + 4 * j + k];
                        int e = 4 * q + k;
                        if (type == QT_Q8_0)
                            isum += ((int)v - 128) * a[b].qs[e];
                        else
                            isum +=
                                ((v & 0x0f) - 8) * a[b].qs[e] + ((v >> 4) - 8) * a[b].qs[e + 16];
                    }
                sum += (float)isum * (qt_f16_to_f32(h) * qt_f16_to_f32(a[b].d));
            }
            y[t * ys + r] = sum;
        }
    }
}

static void mm_packed_generic_Q8_0(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                                   const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    (void)rb;
    mm_packed_generic(QT_Q8_0, w, n, r0, r1, act, as, nt, y, ys);
}

static void mm_packed_generic_Q4_0(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                                   const void *act, size_t as, int32_t nt, float *y, int64_t ys) {
    (void)rb;
    mm_packed_generic(QT_Q4_0, w, n, r0, r1, act, as, nt, y, ys);
}

/* The 8 partial sums of dot_f32 (not fused, tail into the first, summed in order): an
 * order the SIMD levels reproduce to the bit. Attention calls this per key, and tiny test
 * models turned last-bit differences here into percent-level logit changes. */
static float dot_f32_generic(const float *a, const float *b, int64_t n) {
    return dot_f32(a, b, n);
}

static void axpy_f32_generic(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void f16_to_f32_row_generic(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = qt_f16_to_f32(src[i]);
}

static void f32_to_f16_row_generic(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = qt_f32_to_f16(src[i]);
}

static void dot_f32_rows_generic(const float *q, const float *k, size_t stride, int64_t nk,
                                 int64_t n, float scale, float *out) {
    for (int64_t j = 0; j < nk; j++) out[j] = dot_f32(q, k + (size_t)j * stride, n) * scale;
}

static void axpy_f32_rows_generic(float *o, const float *p, const float *v, size_t stride,
                                  int64_t nv, int64_t n) {
    for (int64_t j = 0; j < nv; j++) axpy_f32_generic(o, p[j], v + (size_t)j * stride, n);
}

float qt_exp(float x) {
    x = x > QT_EXP_LO ? x : QT_EXP_LO; /* as max_ps / min_ps: NaN becomes the bound */
    x = x < QT_EXP_HI ? x : QT_EXP_HI;
    float k = rintf(x * QT_EXP_LOG2E);
    float r = x - k * QT_EXP_LN2HI;
    r = r - k * QT_EXP_LN2LO;
    float p = QT_EXP_C6;
    p = p * r + QT_EXP_C5;
    p = p * r + QT_EXP_C4;
    p = p * r + QT_EXP_C3;
    p = p * r + QT_EXP_C2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
    float s;
    memcpy(&s, &bits, 4);
    return p * s;
}

static void softmax_row_generic(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double acc[8] = {0};
    for (int64_t i = 0; i < n; i++) {
        x[i] = qt_exp(x[i] - mx);
        acc[i % 8] += x[i];
    }
    double sum = 0;
    for (int l = 0; l < 8; l++) sum += acc[l];
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void swiglu_row_generic(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + qt_exp(-g[i])) * u[i];
}

static void round_f16_row_generic(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = qt_f16_to_f32(qt_f32_to_f16(x[i]));
}

/* ---- instruction-set dispatch ---- */

/* One kernel table per level, built once; a level starts as a copy of the one below, so a
 * SIMD level only overrides what it implements. */
static qti_kernels levels[QT_ISA_AVX512VBMI + 1];
static int isa_best = QT_ISA_GENERIC;
static atomic_int isa_cur = QT_ISA_GENERIC;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
/* The table in use, NULL until the first call; attention calls the float helpers per key,
 * so the common path is a single load. */
static _Atomic(const qti_kernels *) kern_cur;

static void isa_init(void) {
    qti_kernels *g = &levels[QT_ISA_GENERIC];
    g->matmul[QT_F32] = mm_generic_F32;
    g->matmul[QT_F16] = mm_generic_F16;
    g->matmul[QT_BF16] = mm_generic_BF16;
    g->matmul[QT_Q8_0] = mm_generic_Q8_0;
    g->matmul[QT_Q4_0] = mm_generic_Q4_0;
    g->matmul[QT_Q4_1] = mm_generic_Q4_1;
    g->matmul[QT_Q5_0] = mm_generic_Q5_0;
    g->matmul[QT_Q5_1] = mm_generic_Q5_1;
    g->matmul[QT_Q5_K] = mm_generic_Q5_K;
    g->matmul[QT_Q4_K] = mm_generic_Q4_K;
    g->matmul[QT_Q6_K] = mm_generic_Q6_K;
    g->matmul_packed[QT_Q8_0] = mm_packed_generic_Q8_0;
    g->matmul_packed[QT_Q4_0] = mm_packed_generic_Q4_0;
    for (int t = 0; t < QT_MAX_ID; t++) g->act[t] = types[t].act;
    g->dot_f32 = dot_f32_generic;
    g->axpy_f32 = axpy_f32_generic;
    g->f16_to_f32_row = f16_to_f32_row_generic;
    g->f32_to_f16_row = f32_to_f16_row_generic;
    g->dot_f32_rows = dot_f32_rows_generic;
    g->axpy_f32_rows = axpy_f32_rows_generic;
    g->round_f16_row = round_f16_row_generic;
    g->softmax_row = softmax_row_generic;
    g->swiglu_row = swiglu_row_generic;

    isa_best = qti_x86_best();
    for (int l = QT_ISA_AVX2; l <= isa_best; l++) {
        levels[l] = levels[l - 1];
        qti_x86_fill(l, &levels[l]);
    }
    int use = isa_best;
    const char *env = getenv("SHAMMAH_ISA");
    if (env) { /* a cap, never a raise: an unsupported level would fault */
        int cap = strcasecmp(env, "generic") == 0  ? QT_ISA_GENERIC
                  : strcasecmp(env, "avx2") == 0   ? QT_ISA_AVX2
                  : strcasecmp(env, "avx512") == 0 ? QT_ISA_AVX512
                                                   : QT_ISA_AVX512VBMI;
        if (cap < use) use = cap;
    }
    atomic_store(&isa_cur, use);
    atomic_store(&kern_cur, &levels[use]);
}

static const qti_kernels *kern_slow(void) {
    pthread_once(&isa_once, isa_init);
    return atomic_load(&kern_cur);
}

static inline const qti_kernels *kern(void) {
    const qti_kernels *k = atomic_load_explicit(&kern_cur, memory_order_acquire);
    return k ? k : kern_slow();
}

int qt_isa(void) {
    pthread_once(&isa_once, isa_init);
    return atomic_load(&isa_cur);
}

int qt_isa_best(void) {
    pthread_once(&isa_once, isa_init);
    return isa_best;
}

int qt_set_isa(int isa) {
    pthread_once(&isa_once, isa_init);
    if (isa < QT_ISA_GENERIC) isa = QT_ISA_GENERIC;
    if (isa > isa_best) isa = isa_best;
    atomic_store(&isa_cur, isa);
    atomic_store(&kern_cur, &levels[isa]);
    return isa;
}

const char *qt_isa_name(int isa) {
    return isa == QT_ISA_AVX512VBMI ? "avx512vbmi"
           : isa == QT_ISA_AVX512   ? "avx512"
           : isa == QT_ISA_AVX2     ? "avx2"
                                    : "generic";
}

/* ---- dispatched entry points ---- */

void qt_prep_act(uint32_t weight_type, const float *x, void *buf, int64_t n) {
    uint32_t at = qt_vec_dot_type(weight_type);
    const type_info *a = info(at);
    if (!a || !a->act || n <= 0 || n % a->blk != 0) return;
    kern()->act[at](x, buf, n);
}

float qt_vec_dot(uint32_t weight_type, const void *w_row, const void *act, int64_t n) {
    const type_info *t = info(weight_type);
    if (!t || !t->dot || n <= 0 || n % t->blk != 0) return 0.0f;
    float y = 0.0f;
    kern()->matmul[weight_type](w_row, 0, n, 0, 1, act, 0, 1, &y, 0);
    return y;
}

void qt_matmul(uint32_t weight_type, const void *w, int64_t n, int64_t r0, int64_t r1,
               const void *act, size_t act_stride, int32_t n_tok, float *y, int64_t y_stride) {
    const type_info *t = info(weight_type);
    if (!t || !t->dot || n <= 0 || n % t->blk != 0 || r1 <= r0 || n_tok <= 0) return;
    kern()->matmul[weight_type](w, qt_row_bytes(weight_type, n), n, r0, r1, act, act_stride, n_tok,
                                y, y_stride);
}

size_t qt_pack_bytes(uint32_t type, int64_t n, int64_t rows) {
    size_t qb = pack_q(type);
    /* the portable kernel is there for a level lowered after packing, not for packing */
    if (!qb || n <= 0 || n % QK8_0 || rows <= 0 || qt_isa() < QT_ISA_AVX512) return 0;
    return (size_t)((rows + QT_PACK_ROWS - 1) / QT_PACK_ROWS) * QT_PACK_GROUP(qb, n / QK8_0);
}

void qt_matmul_packed(uint32_t weight_type, const void *packed, int64_t n, int64_t r0, int64_t r1,
                      const void *act, size_t act_stride, int32_t n_tok, float *y,
                      int64_t y_stride) {
    if (!pack_q(weight_type) || n <= 0 || n % QK8_0 || r1 <= r0 || r0 % QT_PACK_ROWS || n_tok <= 0)
        return;
    kern()->matmul_packed[weight_type](packed, 0, n, r0, r1, act, act_stride, n_tok, y, y_stride);
}

float qt_dot_f32(const float *a, const float *b, int64_t n) {
    return n > 0 ? kern()->dot_f32(a, b, n) : 0.0f;
}

void qt_axpy_f32(float *y, float a, const float *x, int64_t n) {
    if (n > 0) kern()->axpy_f32(y, a, x, n);
}

void qt_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n) {
    if (n > 0) kern()->f16_to_f32_row(src, dst, n);
}

void qt_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n) {
    if (n > 0) kern()->f32_to_f16_row(src, dst, n);
}

void qt_dot_f32_rows(const float *q, const float *k, size_t stride, int64_t nk, int64_t n,
                     float scale, float *out) {
    if (nk > 0) kern()->dot_f32_rows(q, k, stride, nk, n, scale, out);
}

void qt_axpy_f32_rows(float *o, const float *p, const float *v, size_t stride, int64_t nv,
                      int64_t n) {
    if (nv > 0 && n > 0) kern()->axpy_f32_rows(o, p, v, stride, nv, n);
}

void qt_softmax_row(float *x, int64_t n) {
    if (n > 0) kern()->softmax_row(x, n);
}

void qt_swiglu_row(float *g, const float *u, int64_t n) {
    if (n > 0) kern()->swiglu_row(g, u, n);
}

void qt_round_f16_row(float *x, int64_t n) {
    if (n > 0) kern()->round_f16_row(x, n);
}
