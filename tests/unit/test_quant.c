/* test_quant.c - element types: conversions, (de)quantization, dot products.
 *
 * Known answers in tests/fixtures/quant come from llama.cpp's own functions (written by
 * tools/quant_fixtures.c); they pin our decoders and activation quantizers bit for bit. */
#include "testutil.h"

#include <math.h>

#include "base/status.h"
#include "engine/quant.h"

/* ---- helpers ---- */
static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t rng_state = 12345;

static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(int32_t)(rng_state >> 32) / 2147483648.0f;
}

/* Weights/activations with per-block magnitudes that vary and occasional outliers. */
static void fill(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = frand() * 0.05f * (float)(1 + (i / 32) % 5);
        if ((i * 7919) % 53 == 0)
            x[i] *= 20;
    }
}

/* ---- type table ---- */
static void test_type_table(void **state) {
    (void)state;
    assert_string_equal(qt_name(QT_Q4_K), "Q4_K");
    assert_string_equal(qt_name(QT_BF16), "BF16");
    assert_string_equal(qt_name(13), "Q5_K");
    assert_string_equal(qt_name(4), "?");
    assert_string_equal(qt_name(1000), "?");

    assert_int_equal(qt_from_name("f32"), QT_F32);
    assert_int_equal(qt_from_name("F16"), QT_F16);
    assert_int_equal(qt_from_name("bf16"), QT_BF16);
    assert_int_equal(qt_from_name("Q8_0"), QT_Q8_0);
    assert_int_equal(qt_from_name("q4_0"), QT_Q4_0);
    assert_int_equal(qt_from_name("q4_K"), QT_Q4_K);
    assert_int_equal(qt_from_name("Q4_K_M"), QT_Q4_K);
    assert_int_equal(qt_from_name("q6_k"), QT_Q6_K);
    assert_int_equal(qt_from_name("q5_k"), QT_Q5_K);
    assert_int_equal(qt_from_name("Q4_1"), QT_Q4_1);
    assert_int_equal(qt_from_name("q5_0"), QT_Q5_0);
    assert_int_equal(qt_from_name("q5_1"), QT_Q5_1);
    assert_int_equal(qt_from_name("q8_1"), -1); /* activations only: not a name to write */
    assert_int_equal(qt_from_name("q3_k"), -1);
    assert_int_equal(qt_from_name(""), -1);
    assert_int_equal(qt_from_name(NULL), -1);

    static const struct {
        uint32_t t;
        int64_t blk;
        size_t bytes;
        int supported;
        uint32_t dot;
    } want[] = {
        {QT_F32, 1, 4, 1, QT_F32},       {QT_F16, 1, 2, 1, QT_F16},
        {QT_BF16, 1, 2, 1, QT_BF16},     {QT_Q8_0, 32, 34, 1, QT_Q8_0},
        {QT_Q4_0, 32, 18, 1, QT_Q8_0},   {QT_Q4_K, 256, 144, 1, QT_Q8_K},
        {QT_Q6_K, 256, 210, 1, QT_Q8_K}, {QT_Q8_K, 256, 292, 0, QT_F32},
        {QT_Q4_1, 32, 20, 1, QT_Q8_1},   {QT_Q5_0, 32, 22, 1, QT_Q8_0},
        {QT_Q5_1, 32, 24, 1, QT_Q8_1},   {QT_Q5_K, 256, 176, 1, QT_Q8_K},
        {QT_Q8_1, 32, 36, 0, QT_F32},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(qt_block_elems(want[i].t), want[i].blk);
        assert_int_equal(qt_block_bytes(want[i].t), want[i].bytes);
        assert_int_equal(qt_supported(want[i].t), want[i].supported);
        if (want[i].supported)
            assert_int_equal(qt_vec_dot_type(want[i].t), want[i].dot);
    }
    assert_int_equal(qt_supported(11), 0); /* Q3_K: sized, not computed */
    assert_int_equal(qt_block_bytes(11), 110);
    assert_int_equal(qt_supported(4), 0);
    assert_int_equal(qt_supported(QT_MAX_ID), 0);
    assert_int_equal(qt_block_elems(4), 0);

    assert_int_equal(qt_row_bytes(QT_Q4_K, 512), 288);
    assert_int_equal(qt_row_bytes(QT_Q4_K, 500), 0);
    assert_int_equal(qt_row_bytes(QT_Q8_0, 4096), 4096 / 32 * 34);
    assert_int_equal(qt_row_bytes(QT_F16, 7), 14);
    assert_int_equal(qt_row_bytes(QT_F32, 0), 0);
    assert_int_equal(qt_row_bytes(4, 32), 0);
    assert_int_equal(qt_row_bytes(QT_Q4_0, -32), 0);
    assert_int_equal(qt_row_bytes(QT_F32, INT64_MAX), 0);
}

/* ---- f16 / bf16 ---- */
static void test_f16_known(void **state) {
    (void)state;
    assert_int_equal(qt_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(qt_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(qt_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(qt_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(qt_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(qt_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(qt_f32_to_f16(65520.0f), 0x7c00); /* tie, goes to even = inf */
    assert_int_equal(qt_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(qt_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(qt_f32_to_f16(-INFINITY), 0xfc00);
    /* ties to even around 1.0: ulp is 2^-10 */
    assert_int_equal(qt_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(qt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(qt_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    /* mantissa carry into the exponent */
    assert_int_equal(qt_f32_to_f16(2.0f - 0x1p-12f), 0x4000);
    /* subnormals: unit 2^-24 */
    assert_int_equal(qt_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(qt_f32_to_f16(0x1p-25f), 0x0000);       /* tie to even (0) */
    assert_int_equal(qt_f32_to_f16(3 * 0x1p-25f), 0x0002);   /* tie to even (2) */
    assert_int_equal(qt_f32_to_f16(0x1p-25f * 1.01f), 0x0001);
    assert_int_equal(qt_f32_to_f16(-0x1p-24f), 0x8001);
    assert_int_equal(qt_f32_to_f16(0x3ffp-24f), 0x03ff);
    assert_int_equal(qt_f32_to_f16(0x7ffp-25f), 0x0400); /* rounds up into the normals */
    assert_int_equal(qt_f32_to_f16(0x1p-14f), 0x0400);
    assert_int_equal(qt_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(qt_f32_to_f16(from_bits(1)), 0x0000); /* f32 subnormal */
    /* NaN stays NaN, sign kept */
    uint16_t hn = qt_f32_to_f16(NAN);
    assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    assert_true(isnan(qt_f16_to_f32(qt_f32_to_f16(-NAN))));
    assert_true(qt_f32_to_f16(-NAN) & 0x8000);
    assert_true(isnan(qt_f16_to_f32(qt_f32_to_f16(from_bits(0x7f800001)))));

    assert_true(qt_f16_to_f32(0x3c00) == 1.0f);
    assert_true(qt_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(qt_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(qt_f16_to_f32(0x03ff) == 0x3ffp-24f);
    assert_true(qt_f16_to_f32(0x8001) == -0x1p-24f);
    assert_int_equal(bits(qt_f16_to_f32(0x8000)), 0x80000000u);
    assert_true(isinf(qt_f16_to_f32(0x7c00)) && qt_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(qt_f16_to_f32(0xfc00)) && qt_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(qt_f16_to_f32(0x7e00)));
}

/* Every f16 survives f16 -> f32 -> f16, and each is the nearest-even rounding of the
 * values half an ulp around it. */
static void test_f16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = qt_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_true(isnan(qt_f16_to_f32(qt_f32_to_f16(f))));
            continue;
        }
        assert_int_equal(qt_f32_to_f16(f), h);
        if ((h & 0x7fff) >= 0x7bff)
            continue; /* largest finite and inf: no next value */
        float next = qt_f16_to_f32((uint16_t)(h + 1));
        float mid = (f + next) / 2; /* exact in f32 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(qt_f32_to_f16(mid), even);
        assert_int_equal(qt_f32_to_f16(nextafterf(mid, f)), h);
        assert_int_equal(qt_f32_to_f16(nextafterf(mid, next)), (uint16_t)(h + 1));
    }
}

static void test_bf16_known(void **state) {
    (void)state;
    assert_int_equal(qt_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(qt_f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(qt_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(qt_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(qt_f32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie, even stays */
    assert_int_equal(qt_f32_to_bf16(from_bits(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    assert_int_equal(qt_f32_to_bf16(from_bits(0x3f808001)), 0x3f81);
    assert_int_equal(qt_f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80); /* FLT_MAX rounds to inf */
    assert_int_equal(qt_f32_to_bf16(from_bits(0x00018000)), 0x0002); /* subnormal, kept */
    uint16_t n = qt_f32_to_bf16(from_bits(0x7f800001)); /* payload below bf16's bits */
    assert_true(isnan(qt_bf16_to_f32(n)));
    assert_true(isnan(qt_bf16_to_f32(qt_f32_to_bf16(-NAN))));
    assert_true(qt_bf16_to_f32(0x3f80) == 1.0f);
    assert_int_equal(bits(qt_bf16_to_f32(0x8001)), 0x80010000u);
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = qt_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            assert_true(isnan(qt_bf16_to_f32(qt_f32_to_bf16(f))));
        else
            assert_int_equal(qt_f32_to_bf16(f), h);
    }
}

/* ---- llama.cpp fixtures ---- */
typedef struct {
    uint32_t type, n, qbytes, has_dot;
    float *x, *deq, *act;
    uint8_t *q;
    float dot;
} fixture;

static void fixture_free(fixture *fx) {
    free(fx->x);
    free(fx->deq);
    free(fx->act);
    free(fx->q);
}

static void read_exact(FILE *f, void *p, size_t n) {
    assert_int_equal(fread(p, 1, n, f), n);
}

static void fixture_load(const char *name, fixture *fx) {
    char path[256];
    snprintf(path, sizeof path, FIXTURES "/quant/%s.bin", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (run tests from the repository root)", path);
    char magic[8];
    uint32_t hdr[4];
    read_exact(f, magic, 8);
    assert_memory_equal(magic, "SHQF1\0\0\0", 8);
    read_exact(f, hdr, sizeof hdr);
    fx->type = hdr[0];
    fx->n = hdr[1];
    fx->qbytes = hdr[2];
    fx->has_dot = hdr[3];
    assert_true(fx->n > 0 && fx->n <= 1 << 16 && fx->qbytes <= 1 << 20);
    fx->x = malloc(fx->n * sizeof(float));
    fx->deq = malloc(fx->n * sizeof(float));
    fx->act = malloc(fx->n * sizeof(float));
    fx->q = malloc(fx->qbytes);
    assert_non_null(fx->x);
    assert_non_null(fx->deq);
    assert_non_null(fx->act);
    assert_non_null(fx->q);
    read_exact(f, fx->x, fx->n * sizeof(float));
    read_exact(f, fx->q, fx->qbytes);
    read_exact(f, fx->deq, fx->n * sizeof(float));
    read_exact(f, fx->act, fx->n * sizeof(float));
    read_exact(f, &fx->dot, sizeof(float));
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
    assert_int_equal(qt_row_bytes(fx->type, fx->n), fx->qbytes);
}

/* Bit-exact float arrays (so -0 vs 0 and NaN payloads would show). */
static void assert_floats_bitequal(const float *got, const float *want, uint32_t n, const char *what) {
    for (uint32_t i = 0; i < n; i++)
        if (bits(got[i]) != bits(want[i]))
            fail_msg("%s: element %u: got %.9g (0x%08x), llama.cpp %.9g (0x%08x)", what, i, got[i], bits(got[i]),
                     want[i], bits(want[i]));
}

/* Our dot of llama.cpp's weight row with our prepared activations, against llama.cpp's
 * CPU dot. The prepared activations are bit-identical, so only float summation order may
 * differ: the tolerance scales with the sum of term magnitudes. */
static void check_dot(const fixture *fx, const char *name) {
    uint32_t at = qt_vec_dot_type(fx->type);
    size_t ab = qt_row_bytes(at, fx->n);
    void *buf = malloc(ab);
    float *w = malloc(fx->n * sizeof(float));
    float *a = malloc(fx->n * sizeof(float));
    assert_non_null(buf);
    assert_non_null(w);
    assert_non_null(a);
    qt_prep_act(fx->type, fx->act, buf, fx->n);
    float got = qt_vec_dot(fx->type, fx->q, buf, fx->n);
    qt_dequant_row(fx->type, fx->q, w, fx->n);
    qt_dequant_row(at, buf, a, fx->n);
    double mag = 0;
    for (uint32_t i = 0; i < fx->n; i++)
        mag += fabs((double)w[i] * a[i]);
    if (fabs((double)got - fx->dot) > 1e-5 * mag + 1e-7)
        fail_msg("%s: dot %.9g, llama.cpp %.9g (magnitude %.6g)", name, got, fx->dot, mag);
    free(buf);
    free(w);
    free(a);
}

static void check_weight_fixture(const char *name, int quantizer_matches) {
    fixture fx;
    fixture_load(name, &fx);
    float *out = malloc(fx.n * sizeof(float));
    uint8_t *q = malloc(fx.qbytes);
    assert_non_null(out);
    assert_non_null(q);
    qt_dequant_row(fx.type, fx.q, out, fx.n);
    assert_floats_bitequal(out, fx.deq, fx.n, name);
    if (quantizer_matches) {
        assert_int_equal(qt_quantize_row(fx.type, fx.x, q, fx.n), SH_OK);
        assert_memory_equal(q, fx.q, fx.qbytes);
    }
    if (fx.has_dot)
        check_dot(&fx, name);
    free(out);
    free(q);
    fixture_free(&fx);
}

static void test_fixture_q8_0(void **state) {
    (void)state;
    check_weight_fixture("q8_0", 1);
    check_weight_fixture("q8_0_rand", 0);
}

static void test_fixture_q4_0(void **state) {
    (void)state;
    check_weight_fixture("q4_0", 1);
    check_weight_fixture("q4_0_rand", 0);
}

static void test_fixture_q4_k(void **state) {
    (void)state;
    check_weight_fixture("q4_k", 0);
    check_weight_fixture("q4_k_rand", 0);
}

static void test_fixture_q6_k(void **state) {
    (void)state;
    check_weight_fixture("q6_k", 0);
    check_weight_fixture("q6_k_rand", 0);
}

static void test_fixture_q4_1(void **state) {
    (void)state;
    check_weight_fixture("q4_1", 1);
    check_weight_fixture("q4_1_pos", 1);
    check_weight_fixture("q4_1_rand", 0);
}

static void test_fixture_q5_0(void **state) {
    (void)state;
    check_weight_fixture("q5_0", 1);
    check_weight_fixture("q5_0_rand", 0);
}

static void test_fixture_q5_1(void **state) {
    (void)state;
    check_weight_fixture("q5_1", 1);
    check_weight_fixture("q5_1_pos", 1);
    check_weight_fixture("q5_1_rand", 0);
}

/* Our Q5_K quantizer reproduces ggml's reference search, so its bytes must match too. */
static void test_fixture_q5_k(void **state) {
    (void)state;
    check_weight_fixture("q5_k", 1);
    check_weight_fixture("q5_k_pos", 1);
    check_weight_fixture("q5_k_rand", 0);
}

/* Q8_1 is never a weight, but its writer (ggml's reference) is checked like the others. */
static void test_fixture_q8_1(void **state) {
    (void)state;
    check_weight_fixture("q8_1", 1);
}

static void test_fixture_float(void **state) {
    (void)state;
    check_weight_fixture("f16", 1);
    check_weight_fixture("bf16", 1);
}

/* Activation quantization must be bit-identical to llama.cpp's CPU backend. */
static void check_act_fixture(const char *name, uint32_t weight_type) {
    fixture fx;
    fixture_load(name, &fx);
    assert_int_equal(qt_vec_dot_type(weight_type), fx.type);
    uint8_t *q = malloc(fx.qbytes);
    float *out = malloc(fx.n * sizeof(float));
    assert_non_null(q);
    assert_non_null(out);
    qt_prep_act(weight_type, fx.x, q, fx.n);
    for (uint32_t i = 0; i < fx.qbytes; i++)
        if (q[i] != fx.q[i])
            fail_msg("%s: byte %u: got 0x%02x, llama.cpp 0x%02x", name, i, q[i], fx.q[i]);
    qt_dequant_row(fx.type, fx.q, out, fx.n);
    assert_floats_bitequal(out, fx.deq, fx.n, name);
    free(q);
    free(out);
    fixture_free(&fx);
}

static void test_fixture_act(void **state) {
    (void)state;
    check_act_fixture("q8_0_act", QT_Q8_0);
    check_act_fixture("q8_0_act", QT_Q4_0);
    check_act_fixture("q8_k_act", QT_Q4_K);
    check_act_fixture("q8_k_act", QT_Q6_K);
    check_act_fixture("q8_0_act", QT_Q5_0);
    check_act_fixture("q8_1_act", QT_Q4_1);
    check_act_fixture("q8_1_act", QT_Q5_1);
    check_act_fixture("q8_k_act", QT_Q5_K);
}

/* Scalar conversions against ggml's over edge cases (subnormals, ties, overflow). */
static void test_fixture_conversions(void **state) {
    (void)state;
    static const struct {
        const char *name;
        uint16_t (*enc)(float);
        float (*dec)(uint16_t);
    } cases[] = {{"f16_conv", qt_f32_to_f16, qt_f16_to_f32}, {"bf16_conv", qt_f32_to_bf16, qt_bf16_to_f32}};
    for (size_t c = 0; c < 2; c++) {
        fixture fx;
        fixture_load(cases[c].name, &fx);
        assert_int_equal(fx.qbytes, fx.n * 2);
        const uint16_t *want = (const uint16_t *)fx.q;
        for (uint32_t i = 0; i < fx.n; i++) {
            uint16_t h = cases[c].enc(fx.x[i]);
            if (h != want[i])
                fail_msg("%s: %.9g (0x%08x): got 0x%04x, ggml 0x%04x", cases[c].name, fx.x[i], bits(fx.x[i]), h,
                         want[i]);
            float f = cases[c].dec(want[i]);
            if (bits(f) != bits(fx.deq[i]))
                fail_msg("%s: decode 0x%04x: got %.9g, ggml %.9g", cases[c].name, want[i], f, fx.deq[i]);
        }
        fixture_free(&fx);
    }
}

/* ---- round trips with our own quantizers ---- */

/* Quantize then dequantize; the error of each element must stay under bound_rel times the
 * largest magnitude in its group (block or super-block), and the RMS error under rms_rel
 * times the RMS of the data. */
static void check_roundtrip(uint32_t type, int64_t group, float bound_rel, float rms_rel) {
    enum { N = 2048 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    fill(x, N);
    for (int i = 0; i < 64; i++) /* one all-zero group, one constant positive group */
        x[i] = 0;
    for (int i = 256; i < 512; i++)
        x[i] = 0.25f;
    assert_true(qt_row_bytes(type, N) <= sizeof q);
    assert_int_equal(qt_quantize_row(type, x, q, N), SH_OK);
    qt_dequant_row(type, q, y, N);
    double se = 0, sx = 0;
    for (int64_t g = 0; g < N; g += group) {
        float amax = 0;
        for (int64_t i = g; i < g + group; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        for (int64_t i = g; i < g + group; i++) {
            float err = fabsf(x[i] - y[i]);
            if (err > bound_rel * amax + 0x1p-25f) /* f16 subnormal spacing */
                fail_msg("%s: element %lld: %.7g -> %.7g (group amax %.7g)", qt_name(type), (long long)i, x[i], y[i],
                         amax);
            se += (double)err * err;
            sx += (double)x[i] * x[i];
        }
    }
    if (sqrt(se / sx) > rms_rel)
        fail_msg("%s: relative rms error %.5f > %.5f", qt_name(type), sqrt(se / sx), rms_rel);
    for (int i = 0; i < 64; i++)
        assert_true(y[i] == 0.0f);
}

static void test_roundtrip(void **state) {
    (void)state;
    check_roundtrip(QT_F32, 1, 0, 0);
    check_roundtrip(QT_F16, 1, 0x1p-11f, 0x1p-11f);
    check_roundtrip(QT_BF16, 1, 0x1p-8f, 0x1p-8f);
    /* half a step of amax/127, plus f16 rounding of the scale */
    /* data with 20x outliers, so RMS bounds are loose; llama.cpp's own quantizers give
     * 0.091 (Q4_K) and 0.034 (Q6_K) RMS on it */
    /* half a step of amax/127, plus the f16 rounding of the scale */
    check_roundtrip(QT_Q8_0, 32, 0.6f / 127, 0.015f);
    /* one full step (amax/8) at the far end of the asymmetric range */
    check_roundtrip(QT_Q4_0, 32, 1.0f / 8 * 1.01f, 0.2f);
    check_roundtrip(QT_Q4_K, 256, 0.08f, 0.13f);
    check_roundtrip(QT_Q6_K, 256, 0.025f, 0.04f);
    /* min/max types: half a step of (max - min)/15 or /31 (up to amax/15, amax/31) plus the
     * f16 roundings of d and m; Q5_0 as Q4_0 with twice the steps */
    check_roundtrip(QT_Q4_1, 32, 1.0f / 15 * 1.01f, 0.12f);
    check_roundtrip(QT_Q5_1, 32, 1.0f / 31 * 1.01f, 0.05f);
    check_roundtrip(QT_Q5_0, 32, 1.0f / 16 * 1.01f, 0.1f);
    check_roundtrip(QT_Q5_K, 256, 0.04f, 0.07f);
}

/* Extremes within a block: one huge element, sign flips, tiny neighbours. */
static void test_quant_edge_values(void **state) {
    (void)state;
    enum { N = 256 };
    static const uint32_t types[] = {QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q5_K};
    float x[N], y[N];
    uint8_t q[N * 2];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (int i = 0; i < N; i++)
            x[i] = (i % 2 ? -1e-4f : 1e-4f);
        x[5] = -100.0f; /* dominant negative */
        x[100] = 3e4f;  /* dominant positive, near the f16 limit after scaling */
        x[200] = -3e4f;
        assert_int_equal(qt_quantize_row(types[t], x, q, N), SH_OK);
        qt_dequant_row(types[t], q, y, N);
        for (int i = 0; i < N; i++)
            assert_true(isfinite(y[i]));
        assert_true(fabsf(y[100] - 3e4f) < 3e4f * 0.07f);
        assert_true(fabsf(y[200] + 3e4f) < 3e4f * 0.07f);
    }
}

/* ---- dot products against float dots of the dequantized operands ---- */
static void check_dot_consistency(uint32_t type, int64_t n) {
    float *w = malloc((size_t)n * sizeof(float));
    float *a = malloc((size_t)n * sizeof(float));
    float *wd = malloc((size_t)n * sizeof(float));
    float *ad = malloc((size_t)n * sizeof(float));
    uint8_t *wq = malloc(qt_row_bytes(type, n));
    uint32_t at = qt_vec_dot_type(type);
    uint8_t *aq = malloc(qt_row_bytes(at, n));
    assert_true(w && a && wd && ad && wq && aq);
    fill(w, n);
    fill(a, n);
    for (int64_t i = 0; i < n; i++)
        a[i] = a[i] * 40 - 0.3f * (i % 3 == 0); /* activations: larger, not centred */
    assert_int_equal(qt_quantize_row(type, w, wq, n), SH_OK);
    qt_prep_act(type, a, aq, n);
    qt_dequant_row(type, wq, wd, n);
    qt_dequant_row(at, aq, ad, n);
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        ref += (double)wd[i] * ad[i];
        mag += fabs((double)wd[i] * ad[i]);
    }
    float got = qt_vec_dot(type, wq, aq, n);
    /* Q8_1's s is d * sum(q) rounded to f16 (from the unrounded d), while the reference sums
     * the decoded activations: the min terms differ by up to ~2^-10 of their size */
    double tol = at == QT_Q8_1 ? 1.1e-3 : 2e-6;
    if (fabs(got - ref) > tol * mag + 1e-9)
        fail_msg("%s n=%lld: dot %.9g, float reference %.9g (magnitude %.6g)", qt_name(type), (long long)n, got, ref,
                 mag);
    /* and the prepared activations are close to the originals: half a step of amax/127
     * per block (plus the f16 rounding of the scale), or a float rounding */
    int64_t blk = qt_block_elems(at);
    for (int64_t g = 0; g < n; g += blk) {
        float amax = 0;
        for (int64_t i = g; i < g + blk; i++)
            amax = fmaxf(amax, fabsf(a[i]));
        float bound = blk == 1 ? 0x1p-8f * amax : 0.6f / 127 * amax;
        for (int64_t i = g; i < g + blk; i++)
            if (fabsf(ad[i] - a[i]) > bound)
                fail_msg("%s: activation %lld: %.7g -> %.7g", qt_name(at), (long long)i, a[i], ad[i]);
    }
    free(w);
    free(a);
    free(wd);
    free(ad);
    free(wq);
    free(aq);
}

static void test_dot_consistency(void **state) {
    (void)state;
    static const uint32_t types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K,
                                     QT_Q6_K, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q5_K};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        check_dot_consistency(types[t], 256);
        check_dot_consistency(types[t], 4096);
    }
    check_dot_consistency(QT_F32, 37); /* float types take any length */
    check_dot_consistency(QT_F16, 13);
    check_dot_consistency(QT_BF16, 3);
}

/* Zero activations give zero, whatever the weights. */
static void test_dot_zero(void **state) {
    (void)state;
    enum { N = 512 };
    static const uint32_t types[] = {QT_F32,  QT_F16,  QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K,
                                     QT_Q6_K, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q5_K};
    float w[N], a[N] = {0};
    static uint8_t wq[N * 4], aq[N * 4];
    fill(w, N);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        assert_int_equal(qt_quantize_row(types[t], w, wq, N), SH_OK);
        qt_prep_act(types[t], a, aq, N);
        assert_true(qt_vec_dot(types[t], wq, aq, N) == 0.0f);
    }
}

static void test_invalid(void **state) {
    (void)state;
    float x[64] = {0};
    uint8_t q[256];
    assert_int_equal(qt_quantize_row(11 /* Q3_K */, x, q, 256), SH_EINVAL);
    assert_int_equal(qt_quantize_row(1000, x, q, 32), SH_EINVAL);
    assert_int_equal(qt_quantize_row(QT_Q8_0, x, q, 33), SH_EINVAL);
    assert_int_equal(qt_quantize_row(QT_Q4_K, x, q, 64), SH_EINVAL);
    assert_int_equal(qt_quantize_row(QT_Q8_0, x, q, -32), SH_EINVAL);
    assert_int_equal(qt_quantize_row(QT_Q8_0, NULL, q, 32), SH_EINVAL);
    assert_int_equal(qt_quantize_row(QT_Q8_0, x, q, 0), SH_OK);
    assert_true(qt_vec_dot(11, q, q, 256) == 0.0f);
    assert_true(qt_vec_dot(QT_Q8_1, q, q, 32) == 0.0f); /* activations, not weights */
    assert_int_equal(qt_quantize_row(QT_Q5_K, x, q, 32), SH_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_f16_known),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_bf16_known),
        cmocka_unit_test(test_fixture_q8_0),
        cmocka_unit_test(test_fixture_q4_0),
        cmocka_unit_test(test_fixture_q4_k),
        cmocka_unit_test(test_fixture_q6_k),
        cmocka_unit_test(test_fixture_q4_1),
        cmocka_unit_test(test_fixture_q5_0),
        cmocka_unit_test(test_fixture_q5_1),
        cmocka_unit_test(test_fixture_q5_k),
        cmocka_unit_test(test_fixture_q8_1),
        cmocka_unit_test(test_fixture_float),
        cmocka_unit_test(test_fixture_act),
        cmocka_unit_test(test_fixture_conversions),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_quant_edge_values),
        cmocka_unit_test(test_dot_consistency),
        cmocka_unit_test(test_dot_zero),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
