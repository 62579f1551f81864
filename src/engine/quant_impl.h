/* quant_impl.h - internals shared by quant.c (types, portable kernels, dispatch) and
 * quant_x86.c (SIMD kernels): ggml's block layouts and the kernel table an instruction-set
 * level fills in. Not part of the engine's API: only quant*.c include it. */
#ifndef SH_QUANT_IMPL_H
#define SH_QUANT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/quant.h"

#define QK8_0 32
#define QK4_0 32
#define QK_K 256

/* ---- block layouts (ggml's) ---- */
typedef struct {
    uint16_t d;
    int8_t qs[QK8_0];
} blk_q8_0;

typedef struct {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} blk_q4_0;

typedef struct {
    uint16_t d, m; /* value q * d + m, q 0..15 */
    uint8_t qs[QK4_0 / 2];
} blk_q4_1;

/* 5-bit quants: low nibbles as Q4_0 (elements 0..15 low, 16..31 high); bit j of qh (read
 * little endian) is bit 4 of element j. */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK4_0 / 2];
} blk_q5_0;

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK4_0 / 2];
} blk_q5_1;

/* Activations of Q4_1/Q5_1: s = d * sum(qs), which carries the weights' min term. */
typedef struct {
    uint16_t d, s;
    int8_t qs[QK8_0];
} blk_q8_1;

typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} blk_q4_k;

/* Scales as Q4_K; element 64c + l is the low nibble of qs[32c + l] (high nibble for
 * 64c + 32 + l), with bit 4 in bit 2c (2c + 1) of qh[l]. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} blk_q5_k;

typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} blk_q6_k;

typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} blk_q8_k;

_Static_assert(sizeof(blk_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(blk_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(blk_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(blk_q4_k) == 144, "q4_K layout");
_Static_assert(sizeof(blk_q5_k) == 176, "q5_K layout");
_Static_assert(sizeof(blk_q6_k) == 210, "q6_K layout");
_Static_assert(sizeof(blk_q8_k) == 292, "q8_K layout");

/* ---- kernel table ---- */
/* Rows r in [r0, r1) of w (rows rb bytes apart, n elements) times n_tok prepared activation
 * rows (act_stride bytes apart): y[t * y_stride + r]. n > 0, a multiple of the block. */
typedef void (*qti_matmul_fn)(const void *w, size_t rb, int64_t n, int64_t r0, int64_t r1,
                              const void *act, size_t act_stride, int32_t n_tok, float *y,
                              int64_t y_stride);
/* Converts x[0..n) to an activation row; n > 0, a multiple of the block. */
typedef void (*qti_act_fn)(const float *x, void *dst, int64_t n);

/* Packed layout (quant.h): a group of 16 rows is (nb + 1) / 2 pairs of blocks, each pair
 * the quants of both blocks (QT_PACK_Q* bytes each) then both blocks' 16 fp16 scales
 * (QT_PACK_D bytes each): the file's bytes, with every quant load 64-byte aligned (a pair
 * is a whole number of cache lines). An odd last block leaves its pair's second half zero. */
#define QT_PACK_ROWS 16
#define QT_PACK_Q8_0 (8 * 64)
#define QT_PACK_Q4_0 (4 * 64)
#define QT_PACK_D 32
#define QT_PACK_PAIR(qb) (2 * (size_t)(qb) + 2 * QT_PACK_D)
/* byte offsets of block b's quants and scales in its group */
#define QT_PACK_QOFF(qb, b) ((size_t)(b) / 2 * QT_PACK_PAIR(qb) + ((size_t)(b)&1) * (size_t)(qb))
#define QT_PACK_DOFF(qb, b)                                                                        \
    ((size_t)(b) / 2 * QT_PACK_PAIR(qb) + 2 * (size_t)(qb) + ((size_t)(b)&1) * QT_PACK_D)
#define QT_PACK_GROUP(qb, nb) (((size_t)(nb) + 1) / 2 * QT_PACK_PAIR(qb))

typedef struct {
    qti_matmul_fn matmul[QT_MAX_ID];        /* by weight type */
    qti_matmul_fn matmul_packed[QT_MAX_ID]; /* packed layout; rb unused; NULL: none */
    qti_act_fn act[QT_MAX_ID];              /* by vec-dot (activation) type */
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);
    void (*f16_to_f32_row)(const uint16_t *src, float *dst, int64_t n);
    void (*f32_to_f16_row)(const float *src, uint16_t *dst, int64_t n);
    void (*dot_f32_rows)(const float *q, const float *k, size_t stride, int64_t nk, int64_t n,
                         float scale, float *out);
    void (*axpy_f32_rows)(float *o, const float *p, const float *v, size_t stride, int64_t nv,
                          int64_t n);
    void (*round_f16_row)(float *x, int64_t n);
    void (*softmax_row)(float *x, int64_t n);
    void (*swiglu_row)(float *g, const float *u, int64_t n);
} qti_kernels;

/* qt_exp's constants, shared by the portable code and the SIMD levels (same operations in
 * the same order: clamp, n = rint(x log2 e), r = x - n ln2_hi - n ln2_lo (ln2_hi has 16
 * significant bits, so n ln2_hi is exact), Horner on 1/k!, times 2^n). */
#define QT_EXP_LO (-87.33654f)
#define QT_EXP_HI 88.3f
#define QT_EXP_LOG2E 1.44269504088896341f
#define QT_EXP_LN2HI 0.693145751953125f
#define QT_EXP_LN2LO 1.42860682030941723e-06f
#define QT_EXP_C6 1.38888889e-3f
#define QT_EXP_C5 8.33333333e-3f
#define QT_EXP_C4 4.16666667e-2f
#define QT_EXP_C3 1.66666667e-1f
#define QT_EXP_C2 0.5f

/* Best level the CPU supports among those this build has kernels for (QT_ISA_GENERIC on
 * non-x86 builds). Calls no quant.c function, so quant.c may call it during its init. */
int qti_x86_best(void);
/* Overwrites the entries of k that level isa (QT_ISA_AVX2 or QT_ISA_AVX512) implements;
 * the rest are left as they are (k starts as a copy of the level below). */
void qti_x86_fill(int isa, qti_kernels *k);

#endif
