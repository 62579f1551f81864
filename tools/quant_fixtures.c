/* quant_fixtures.c - writes the .bin fixtures of tests/fixtures/quant with llama.cpp's own (de)quantizers.
 *
 * Not part of the build: it links against the prebuilt ggml libraries of the reference
 * install (see /work/shared/reference/README.md). Build and run from the repository root:
 *
 *   R=~/.cache/llama-ref/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
 *   gcc -O1 -o /tmp/quant_fixtures tools/quant_fixtures.c \
 *       -I ~/.cache/llama-ref/llama.cpp/ggml/include \
 *       -L$R -l:libggml-base.so -l:libggml-cpu-icelake.so -Wl,-rpath,$R -lm
 *   /tmp/quant_fixtures tests/fixtures/quant
 *
 * File format (little endian), read by tests/unit/test_quant.c:
 *   char magic[8] = "SHQF1\0\0\0"; u32 type; u32 n; u32 qbytes; u32 has_dot;
 *   f32 x[n]        source values (zeros when q holds random bytes)
 *   u8  q[qbytes]   llama.cpp's encoding (quantizer output, or random valid blocks)
 *   f32 deq[n]      llama.cpp's decoding of q
 *   f32 act[n]      activations for the dot product (zeros if !has_dot)
 *   f32 dot         llama.cpp CPU vec_dot(q, from_float(act)) (0 if !has_dot)
 * For the activation formats (Q8_0 via the CPU backend's from_float, Q8_K) q is the
 * quantized activation of x. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-cpu.h"
#include "ggml.h"

/* ggml-quants.h is internal; the row functions take block pointers, passed here as void. */
void quantize_row_q4_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q8_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q8_1_ref(const float *x, void *y, int64_t k);
void dequantize_row_q4_0(const void *x, float *y, int64_t k);
void dequantize_row_q8_0(const void *x, float *y, int64_t k);
void dequantize_row_q4_K(const void *x, float *y, int64_t k);
void dequantize_row_q6_K(const void *x, float *y, int64_t k);
void dequantize_row_q8_K(const void *x, float *y, int64_t k);
void dequantize_row_q4_1(const void *x, float *y, int64_t k);
void dequantize_row_q5_0(const void *x, float *y, int64_t k);
void dequantize_row_q5_1(const void *x, float *y, int64_t k);
void dequantize_row_q5_K(const void *x, float *y, int64_t k);
void ggml_fp32_to_bf16_row_ref(const float *x, ggml_bf16_t *y, int64_t n);

#define N 512

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}

static float frand(void) { /* uniform in [-1, 1) */
    return (float)((int32_t)rnd()) / 2147483648.0f;
}

/* Values like real activations/weights: mostly small, a few outliers, varying block scale,
 * some exact zeros and an all-zero block to hit the d == 0 paths. */
static void fill(float *x, int n, int zero_block) {
    for (int i = 0; i < n; i++) {
        float scale = 0.02f * (float)(1 + (i / 32) % 7);
        x[i] = frand() * scale;
        if (rnd() % 61 == 0)
            x[i] *= 25;
        if (rnd() % 97 == 0)
            x[i] = 0;
    }
    if (zero_block >= 0)
        memset(x + zero_block, 0, 32 * sizeof(float));
}

static void put(FILE *f, const void *p, size_t n) {
    if (fwrite(p, 1, n, f) != n) {
        perror("fwrite");
        exit(1);
    }
}

static void write_fixture(const char *dir, const char *name, uint32_t type, const float *x, const void *q,
                          size_t qbytes, const float *deq, const float *act, float dot, int has_dot) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    static const float zeros[N];
    uint32_t hdr[4] = {type, N, (uint32_t)qbytes, (uint32_t)has_dot};
    put(f, "SHQF1\0\0\0", 8);
    put(f, hdr, sizeof hdr);
    put(f, x ? x : zeros, N * sizeof(float));
    put(f, q, qbytes);
    put(f, deq, N * sizeof(float));
    put(f, has_dot ? act : zeros, N * sizeof(float));
    put(f, &dot, sizeof dot);
    fclose(f);
    printf("%s: type %u, %zu bytes of blocks\n", path, type, qbytes);
}

/* llama.cpp's dot of a weight row with float activations, the way its CPU matmul does it. */
static float ref_dot(enum ggml_type t, const void *q, const float *act) {
    const struct ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(t);
    enum ggml_type vt = tr->vec_dot_type;
    void *buf = malloc(ggml_row_size(vt, N));
    if (vt == GGML_TYPE_F32)
        memcpy(buf, act, N * sizeof(float));
    else
        ggml_get_type_traits_cpu(vt)->from_float(act, buf, N);
    float s = 0;
    tr->vec_dot(N, &s, 0, q, 0, buf, 0, 1);
    free(buf);
    return s;
}

typedef void (*qfn)(const float *, void *, int64_t);
typedef void (*dfn)(const void *, float *, int64_t);

/* shift moves the source values off zero, so sub-blocks with a positive minimum (the
 * min/max types' other branch) appear. */
static void weight_case_shift(const char *dir, const char *name, enum ggml_type t, qfn quant, dfn deq,
                              float shift) {
    float x[N], out[N], act[N];
    size_t qb = ggml_row_size(t, N);
    uint8_t *q = malloc(qb);
    fill(x, N, 64);
    for (int i = 0; i < N; i++)
        x[i] += shift;
    fill(act, N, -1);
    quant(x, q, N);
    deq(q, out, N);
    write_fixture(dir, name, t, x, q, qb, out, act, ref_dot(t, q, act), 1);
    free(q);
}

static void weight_case(const char *dir, const char *name, enum ggml_type t, qfn quant, dfn deq) {
    weight_case_shift(dir, name, t, quant, deq, 0.0f);
}

/* Random bytes reach scale/nibble patterns a quantizer may never produce. The f16 scales
 * are overwritten with sane values so the result stays finite. */
static void random_case(const char *dir, const char *name, enum ggml_type t, dfn deq, size_t blk_bytes,
                        const int *f16_offsets, int n_off) {
    float out[N], act[N];
    size_t qb = ggml_row_size(t, N);
    uint8_t *q = malloc(qb);
    for (size_t i = 0; i < qb; i++)
        q[i] = (uint8_t)rnd();
    for (size_t b = 0; b < qb / blk_bytes; b++)
        for (int k = 0; k < n_off; k++) {
            ggml_fp16_t h = ggml_fp32_to_fp16(0.001f + 0.01f * (frand() + 1));
            memcpy(q + b * blk_bytes + f16_offsets[k], &h, 2);
        }
    fill(act, N, -1);
    deq(q, out, N);
    write_fixture(dir, name, t, NULL, q, qb, out, act, ref_dot(t, q, act), 1);
    free(q);
}

static void act_case(const char *dir, const char *name, enum ggml_type t, qfn quant, dfn deq) {
    float x[N], out[N];
    size_t qb = ggml_row_size(t, N);
    uint8_t *q = malloc(qb);
    fill(x, N, t == GGML_TYPE_Q8_K ? -1 : 128);
    /* exact ties of x * 127/amax exercise the rounding rule */
    x[1] = 1.0f;
    x[2] = 0.5f / 127.0f;
    x[3] = -1.5f / 127.0f;
    x[4] = 2.5f / 127.0f;
    quant(x, q, N);
    deq(q, out, N);
    write_fixture(dir, name, t, x, q, qb, out, NULL, 0, 0);
    free(q);
}

static void cpu_q8_0(const float *x, void *y, int64_t k) {
    ggml_get_type_traits_cpu(GGML_TYPE_Q8_0)->from_float(x, y, k);
}

static void cpu_q8_1(const float *x, void *y, int64_t k) {
    ggml_get_type_traits_cpu(GGML_TYPE_Q8_1)->from_float(x, y, k);
}

/* ggml has no Q8_1 decoder: qs * d, with d the block's f16 scale. */
static void deq_q8_1(const void *x, float *y, int64_t k) {
    const uint8_t *b = x;
    for (int64_t i = 0; i < k / 32; i++, b += 36) {
        ggml_fp16_t h;
        memcpy(&h, b, 2);
        float d = ggml_fp16_to_fp32(h);
        for (int j = 0; j < 32; j++)
            y[i * 32 + j] = (int8_t)b[4 + j] * d;
    }
}

static void f16_quant(const float *x, void *y, int64_t k) {
    ggml_fp32_to_fp16_row(x, y, k);
}

static void f16_deq(const void *x, float *y, int64_t k) {
    ggml_fp16_to_fp32_row(x, y, k);
}

static void bf16_quant(const float *x, void *y, int64_t k) {
    ggml_fp32_to_bf16_row_ref(x, y, k);
}

static void bf16_deq(const void *x, float *y, int64_t k) {
    ggml_bf16_to_fp32_row(x, y, k);
}

/* Float conversions: every exponent range, subnormals, exact ties, overflow and infinities. */
static void conv_case(const char *dir, const char *name, enum ggml_type t, qfn quant, dfn deq) {
    float x[N], out[N];
    uint16_t q[N];
    for (int i = 0; i < N; i++) {
        uint32_t u;
        switch (i % 4) {
        case 0: /* any finite float around the f16 range */
            u = (rnd() & 0x807fffffu) | ((uint32_t)(96 + rnd() % 50) << 23);
            break;
        case 1: /* ties: halfway between two f16 (bf16) values */
            u = (rnd() & 0x80ffe000u) | ((uint32_t)(100 + rnd() % 44) << 23) | 0x1000u;
            if (t == GGML_TYPE_BF16)
                u = (u & 0xffff0000u) | 0x8000u;
            break;
        case 2: /* wide range incl. very small, very large */
            u = rnd() & 0xff7fffffu;
            break;
        default:
            u = (uint32_t)(rnd() % 3) == 0 ? (rnd() & 0x80000000u) | (rnd() % 0x800000u) : rnd() & 0x807fffffu;
            u |= (uint32_t)(103 + rnd() % 12) << 23; /* f16 subnormal range */
            break;
        }
        memcpy(&x[i], &u, 4);
    }
    x[0] = INFINITY;
    x[4] = -INFINITY;
    x[8] = 65504.0f;
    x[12] = 65520.0f;
    x[16] = 65519.996f;
    x[20] = 0.0f;
    x[24] = -0.0f;
    x[28] = 5.9604645e-08f; /* smallest f16 subnormal */
    x[32] = 2.9802322e-08f; /* half of it: ties to zero */
    quant(x, q, N);
    deq(q, out, N);
    write_fixture(dir, name, t, x, q, sizeof q, out, NULL, 0, 0);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/quant";
    ggml_cpu_init();
    weight_case(dir, "q8_0", GGML_TYPE_Q8_0, quantize_row_q8_0_ref, dequantize_row_q8_0);
    weight_case(dir, "q4_0", GGML_TYPE_Q4_0, quantize_row_q4_0_ref, dequantize_row_q4_0);
    weight_case(dir, "q4_k", GGML_TYPE_Q4_K, quantize_row_q4_K_ref, dequantize_row_q4_K);
    weight_case(dir, "q6_k", GGML_TYPE_Q6_K, quantize_row_q6_K_ref, dequantize_row_q6_K);
    weight_case(dir, "f16", GGML_TYPE_F16, f16_quant, f16_deq);
    weight_case(dir, "bf16", GGML_TYPE_BF16, bf16_quant, bf16_deq);
    static const int off_q8_0[] = {0}, off_q4_0[] = {0}, off_q4_k[] = {0, 2}, off_q6_k[] = {208};
    random_case(dir, "q8_0_rand", GGML_TYPE_Q8_0, dequantize_row_q8_0, 34, off_q8_0, 1);
    random_case(dir, "q4_0_rand", GGML_TYPE_Q4_0, dequantize_row_q4_0, 18, off_q4_0, 1);
    random_case(dir, "q4_k_rand", GGML_TYPE_Q4_K, dequantize_row_q4_K, 144, off_q4_k, 2);
    random_case(dir, "q6_k_rand", GGML_TYPE_Q6_K, dequantize_row_q6_K, 210, off_q6_k, 1);
    act_case(dir, "q8_0_act", GGML_TYPE_Q8_0, cpu_q8_0, dequantize_row_q8_0);
    act_case(dir, "q8_k_act", GGML_TYPE_Q8_K, quantize_row_q8_K_ref, dequantize_row_q8_K);
    conv_case(dir, "f16_conv", GGML_TYPE_F16, f16_quant, f16_deq);
    conv_case(dir, "bf16_conv", GGML_TYPE_BF16, bf16_quant, bf16_deq);
    /* added with Q4_1, Q5_0, Q5_1, Q5_K (after the others, so their fixtures stay as they were) */
    weight_case(dir, "q4_1", GGML_TYPE_Q4_1, quantize_row_q4_1_ref, dequantize_row_q4_1);
    weight_case(dir, "q5_0", GGML_TYPE_Q5_0, quantize_row_q5_0_ref, dequantize_row_q5_0);
    weight_case(dir, "q5_1", GGML_TYPE_Q5_1, quantize_row_q5_1_ref, dequantize_row_q5_1);
    weight_case(dir, "q5_k", GGML_TYPE_Q5_K, quantize_row_q5_K_ref, dequantize_row_q5_K);
    weight_case_shift(dir, "q4_1_pos", GGML_TYPE_Q4_1, quantize_row_q4_1_ref, dequantize_row_q4_1, 0.3f);
    weight_case_shift(dir, "q5_1_pos", GGML_TYPE_Q5_1, quantize_row_q5_1_ref, dequantize_row_q5_1, 0.3f);
    weight_case_shift(dir, "q5_k_pos", GGML_TYPE_Q5_K, quantize_row_q5_K_ref, dequantize_row_q5_K, 0.1f);
    static const int off_q4_1[] = {0, 2}, off_q5_0[] = {0}, off_q5_1[] = {0, 2}, off_q5_k[] = {0, 2};
    random_case(dir, "q4_1_rand", GGML_TYPE_Q4_1, dequantize_row_q4_1, 20, off_q4_1, 2);
    random_case(dir, "q5_0_rand", GGML_TYPE_Q5_0, dequantize_row_q5_0, 22, off_q5_0, 1);
    random_case(dir, "q5_1_rand", GGML_TYPE_Q5_1, dequantize_row_q5_1, 24, off_q5_1, 2);
    random_case(dir, "q5_k_rand", GGML_TYPE_Q5_K, dequantize_row_q5_K, 176, off_q5_k, 2);
    act_case(dir, "q8_1_act", GGML_TYPE_Q8_1, cpu_q8_1, deq_q8_1);
    act_case(dir, "q8_1", GGML_TYPE_Q8_1, quantize_row_q8_1_ref, deq_q8_1);
    return 0;
}
