/* quant.h - tensor element types: sizes, (de)quantization, and dot products.
 *
 * Type ids are ggml's, so they can be stored in GGUF files as is. The dot products follow
 * llama.cpp's CPU backend so results match it closely: a weight row of type T is multiplied
 * with an activation vector first converted to qt_vec_dot_type(T) (F16 for F16 weights, BF16
 * for BF16, Q8_0 blocks for Q8_0/Q4_0/Q5_0, Q8_1 blocks (with their sums) for Q4_1/Q5_1,
 * Q8_K blocks for Q4_K/Q5_K/Q6_K, F32 for F32).
 *
 * This file is the entry point that SIMD kernels replace: callers only use qt_* functions. */
#ifndef SH_QUANT_H
#define SH_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ---- types ---- */
enum {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q8_1 = 9, /* activations only */
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_Q8_K = 15, /* activations only */
    QT_BF16 = 30,
    QT_MAX_ID = 40
};

int qt_supported(uint32_t type);       /* 1 if this engine can compute with the type */
const char *qt_name(uint32_t type);    /* "Q4_K" ...; "?" for unknown ids */
int qt_from_name(const char *name);    /* case-insensitive; -1 if unknown */
int64_t qt_block_elems(uint32_t type); /* elements per block (1 for float types) */
size_t qt_block_bytes(uint32_t type);  /* bytes per block */
/* Bytes for a row of n elements; 0 if n is not a multiple of the block size or type unknown. */
size_t qt_row_bytes(uint32_t type, int64_t n);

/* ---- scalar conversions ---- */
float qt_f16_to_f32(uint16_t h);
uint16_t qt_f32_to_f16(float f); /* round to nearest even */
float qt_bf16_to_f32(uint16_t h);
uint16_t qt_f32_to_bf16(float f); /* round to nearest even, NaN kept */

/* ---- rows ---- */
/* dst[0..n) = dequantized src row. n must be a multiple of the block size. */
void qt_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Quantize a float row into dst (qt_row_bytes(type, n) bytes). Returns SH_OK or SH_EINVAL. */
int qt_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* ---- dot products ---- */
uint32_t qt_vec_dot_type(uint32_t weight_type);
/* Convert activations x[0..n) to the vec-dot type of weight_type into buf
 * (qt_row_bytes(qt_vec_dot_type(weight_type), n) bytes). */
void qt_prep_act(uint32_t weight_type, const float *x, void *buf, int64_t n);
/* Dot product of one weight row (type weight_type) with prepared activations. */
float qt_vec_dot(uint32_t weight_type, const void *w_row, const void *act, int64_t n);

/* ---- matrix products: the entry point SIMD kernels tile ---- */
/* For r in [r0, r1) and t in [0, n_tok): y[t * y_stride + r] = dot(row r of w, activation row
 * t). Rows of w (weight_type, n elements each) are qt_row_bytes(weight_type, n) apart from w;
 * activation rows, prepared by qt_prep_act, are act_stride bytes apart. All borrowed. */
void qt_matmul(uint32_t weight_type, const void *w, int64_t n, int64_t r0, int64_t r1,
               const void *act, size_t act_stride, int32_t n_tok, float *y, int64_t y_stride);

/* ---- matrices packed at load (Q8_0, Q4_0) ---- */
/* 16 rows interleaved per block, as the 16-row kernels use them: per group of 16 rows and
 * block, dword g of the 16 rows' quants side by side (Q8_0: 8 x 64 bytes, unsigned; Q4_0:
 * 4 x 64 bytes of nibble pairs); after a group's blocks, their 16 fp16 scales each. As many
 * bytes as the file's rows, a row range is one stream, and nothing is repacked per call.
 * Results equal qt_matmul's at the generic level (the per-row order) within its tolerance.
 * qt_pack_bytes: bytes for `rows` rows of n, 0 when the type or the level in use has no
 * packed kernels (then use qt_matmul). */
size_t qt_pack_bytes(uint32_t weight_type, int64_t n, int64_t rows);
/* Packs all rows of w (rows x n, qt_row_bytes apart; borrowed) into dst (qt_pack_bytes
 * bytes, 64-byte aligned; caller owns). */
void qt_pack(uint32_t weight_type, const void *w, int64_t n, int64_t rows, void *dst);
/* qt_matmul on a packed matrix of `rows` rows; r0 a multiple of 16. */
void qt_matmul_packed(uint32_t weight_type, const void *packed, int64_t n, int64_t r0, int64_t r1,
                      const void *act, size_t act_stride, int32_t n_tok, float *y,
                      int64_t y_stride);

/* ---- float rows (attention) ---- */
float qt_dot_f32(const float *a, const float *b, int64_t n);
/* y[i] += a * x[i] */
void qt_axpy_f32(float *y, float a, const float *x, int64_t n);
void qt_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void qt_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n);
/* Many keys against one query: out[j] = qt_dot_f32(q, k + j * stride, n) * scale for j in
 * [0, nk), to the bit (the dots are computed side by side, each in qt_dot_f32's order). */
void qt_dot_f32_rows(const float *q, const float *k, size_t stride, int64_t nk, int64_t n,
                     float scale, float *out);
/* Many values into one output: for j = 0, 1, ..., nv - 1 in turn, o[i] += p[j] * v_j[i] with
 * v_j = v + j * stride, to the bit (o stays in registers across the values). */
void qt_axpy_f32_rows(float *o, const float *p, const float *v, size_t stride, int64_t nv,
                      int64_t n);
/* x[i] = (float)(f16)x[i], round to nearest even */
void qt_round_f16_row(float *x, int64_t n);
/* e^x to ~2 ulp with multiplies and adds only (no FMA), so every level computes the same
 * bits: x clamped to [-87.3, 88.3]. The element function of the two rows below. */
float qt_exp(float x);
/* softmax in place: m = max, x[i] = qt_exp(x[i] - m), divided by their sum (taken in double,
 * 8 partial sums by i % 8 added in order); the same bits at every level. n > 0. */
void qt_softmax_row(float *x, int64_t n);
/* g[i] = g[i] / (1 + qt_exp(-g[i])) * u[i] (SiLU(g) * u); the same bits at every level. */
void qt_swiglu_row(float *g, const float *u, int64_t n);

/* ---- instruction sets ---- */
/* Kernels are chosen at run time from what the CPU supports (the build targets x86-64-v2);
 * the portable C kernels stay available and tests compare every level against them. */
/* avx512vbmi: avx512 plus byte permutes (Ice Lake, Zen 4 and later) */
enum { QT_ISA_GENERIC = 0, QT_ISA_AVX2 = 1, QT_ISA_AVX512 = 2, QT_ISA_AVX512VBMI = 3 };
int qt_isa(void);      /* level in use */
int qt_isa_best(void); /* best level this CPU (and build) supports */
/* Use a level <= qt_isa_best() (tests, benchmarks; not thread-safe against running kernels).
 * Returns the level now in use. Environment SHAMMAH_ISA=generic|avx2|avx512|avx512vbmi caps the
 * default. */
int qt_set_isa(int isa);
const char *qt_isa_name(int isa);

#endif
