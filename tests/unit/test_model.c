/* test_model.c - model loading errors and forward-pass consistency.
 *
 * Models come from `$BUILD/shammah model synth`; broken variants are made by copying one
 * through the GGUF writer with a key or tensor dropped or changed. The consistency checks
 * need no reference: the same tokens must give the same logits however they are fed
 * (one call or one by one, 1 or 2 threads, after truncating the cache), and an F16 cache
 * must stay close to an F32 one. */
#include "synthutil.h"

#include <math.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"

static int setup(void **state) {
    (void)state;
    return su_setup("test_model");
}

/* ---- broken copies ---- */

typedef struct {
    const char *drop_key;
    const char *str_key, *str_val;  /* replace a string value */
    const char *u32_key;            /* replace (or add) an integer value */
    uint32_t u32_val;
    const char *u32_keys[4]; /* more of them */
    uint32_t u32_vals[4];
    const char *drop_tensor;
    const char *swap_tensor; /* exchange its first two dimensions */
} edit;

static const char *rewrite(const char *src, const char *name, const edit *e) {
    const char *dst = su_path(name);
    gguf *g;
    gguf_writer *w;
    int u32_done = 0;
    assert_int_equal(gguf_open(&g, src), SH_OK);
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        gguf_str k = gguf_kv_key(g, i);
        if (e->drop_key && gguf_str_eq(k, e->drop_key)) continue;
        int more = 0;
        for (int j = 0; j < 4 && e->u32_keys[j]; j++) more |= gguf_str_eq(k, e->u32_keys[j]);
        if (more) continue; /* written below */
        if (e->str_key && gguf_str_eq(k, e->str_key)) {
            assert_int_equal(gguf_w_str(w, e->str_key, e->str_val), SH_OK);
        } else if (e->u32_key && gguf_str_eq(k, e->u32_key)) {
            assert_int_equal(gguf_w_u32(w, e->u32_key, e->u32_val), SH_OK);
            u32_done = 1;
        } else {
            assert_int_equal(gguf_w_copy_kv(w, g, i), SH_OK);
        }
    }
    if (e->u32_key && !u32_done) assert_int_equal(gguf_w_u32(w, e->u32_key, e->u32_val), SH_OK);
    for (int j = 0; j < 4 && e->u32_keys[j]; j++)
        assert_int_equal(gguf_w_u32(w, e->u32_keys[j], e->u32_vals[j]), SH_OK);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        char tn[300];
        int64_t ne[4];
        snprintf(tn, sizeof tn, "%.*s", (int)t->name.len, t->name.ptr);
        if (e->drop_tensor && !strcmp(tn, e->drop_tensor)) continue;
        memcpy(ne, t->ne, sizeof ne);
        if (e->swap_tensor && !strcmp(tn, e->swap_tensor)) {
            ne[0] = t->ne[1];
            ne[1] = t->ne[0];
        }
        assert_int_equal(gguf_w_tensor(w, tn, t->type, t->n_dims, ne, t->data, t->nbytes), SH_OK);
    }
    assert_int_equal(gguf_writer_write(w, dst), SH_OK);
    gguf_writer_free(w);
    gguf_close(g);
    return dst;
}

static void expect_load_fail_at(const char *path, int code, const char *sub, const char *f, int l) {
    model *m = (model *)1;
    sh_error_clear();
    int st = model_load(&m, path);
    const char *msg = sh_error_last();
    if (st != code || !strstr(msg, sub) || strchr(msg, '\n') || m != NULL) {
        if (st == SH_OK) model_free(m);
        fail_msg("%s:%d: model_load = %d (%s), want %d with \"%s\"", f, l, st, msg, code, sub);
    }
}
#define expect_load_fail(path, code, sub) expect_load_fail_at(path, code, sub, __FILE__, __LINE__)

static void test_load_errors(void **state) {
    const char *base = su_synth("base.gguf", "--ctx 128");
    const char *qw3 = su_synth("qwen3.gguf", "--arch qwen3 --ctx 128");
    model *m;
    assert_int_equal(model_load(&m, base), SH_OK);
    assert_int_equal(model_hp(m)->arch, ARCH_LLAMA);
    assert_int_equal(model_hp(m)->n_embd, 64);
    model_free(m);
    model_free(NULL);

    /* the rewrite itself keeps the model valid */
    edit none = {0};
    assert_int_equal(model_load(&m, rewrite(base, "same.gguf", &none)), SH_OK);
    model_free(m);

    /* file-level problems pass through with gguf's message */
    expect_load_fail(su_path("nonexistent.gguf"), SH_ENOTFOUND, "cannot open");
    expect_load_fail(FIXTURES "/vocab/ggml-vocab-qwen2.gguf", SH_EFORMAT, "");

    static const struct {
        edit e;
        int code;
        const char *msg;
    } cases[] = {
        {{.drop_key = "llama.embedding_length"}, SH_EFORMAT,
         "missing required key 'llama.embedding_length'"},
        {{.drop_key = "llama.block_count"}, SH_EFORMAT, "missing required key 'llama.block_count'"},
        {{.drop_key = "llama.attention.layer_norm_rms_epsilon"}, SH_EFORMAT,
         "llama.attention.layer_norm_rms_epsilon"},
        {{.drop_key = "general.architecture"}, SH_EFORMAT,
         "missing required key 'general.architecture'"},
        {{.str_key = "general.architecture", .str_val = "gpt5"}, SH_EUNSUPPORTED,
         "unknown architecture 'gpt5'"},
        {{.str_key = "general.architecture", .str_val = ""}, SH_EUNSUPPORTED,
         "unknown architecture"},
        {{.drop_tensor = "blk.1.ffn_up.weight"}, SH_EFORMAT, "missing tensor 'blk.1.ffn_up.weight'"},
        {{.drop_tensor = "token_embd.weight"}, SH_EFORMAT, "missing tensor 'token_embd.weight'"},
        {{.drop_tensor = "output_norm.weight"}, SH_EFORMAT, "missing tensor 'output_norm.weight'"},
        {{.swap_tensor = "blk.0.attn_k.weight"}, SH_EFORMAT, "tensor 'blk.0.attn_k.weight' has shape"},
        {{.swap_tensor = "blk.1.ffn_down.weight"}, SH_EFORMAT, "blk.1.ffn_down.weight"},
        {{.u32_key = "llama.attention.head_count_kv", .u32_val = 3}, SH_EFORMAT, "not a multiple"},
        {{.u32_key = "llama.attention.head_count_kv", .u32_val = 0}, SH_EFORMAT, "out of range"},
        {{.u32_key = "llama.attention.head_count", .u32_val = 0}, SH_EFORMAT, "out of range"},
        {{.u32_key = "llama.block_count", .u32_val = 0}, SH_EFORMAT, "llama.block_count"},
        {{.u32_key = "llama.block_count", .u32_val = 3}, SH_EFORMAT, "missing tensor 'blk.2."},
        {{.u32_key = "llama.block_count", .u32_val = 1000000}, SH_EFORMAT, "out of range"},
        {{.u32_key = "llama.embedding_length", .u32_val = 128}, SH_EFORMAT, "has shape"},
        {{.u32_key = "llama.feed_forward_length", .u32_val = 4000000000u}, SH_EFORMAT,
         "out of range"},
        {{.u32_key = "llama.rope.dimension_count", .u32_val = 7}, SH_EFORMAT, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "bad%zu.gguf", i);
        expect_load_fail_at(rewrite(base, nm, &cases[i].e), cases[i].code, cases[i].msg,
                            __FILE__, 1000 + (int)i);
    }
    /* a string where an integer belongs */
    edit e = {.str_key = "llama.embedding_length", .str_val = "64"};
    expect_load_fail(rewrite(base, "strdim.gguf", &e), SH_EFORMAT,
                     "'llama.embedding_length' is not an integer");
    edit e2 = {.drop_key = "llama.context_length"};
    expect_load_fail(rewrite(base, "noctx.gguf", &e2), SH_EFORMAT, "llama.context_length");
    /* huge shapes the tensors do not have: the shape is the error, not memory */
    edit huge = {.u32_keys = {"llama.embedding_length", "llama.block_count",
                              "llama.attention.head_count", "llama.attention.key_length"},
                 .u32_vals = {1 << 20, 512, 4096, 65536}};
    expect_load_fail(rewrite(base, "huge.gguf", &huge), SH_EFORMAT, "has shape");
    /* qwen3 needs its head norms; llama does not */
    edit q = {.drop_tensor = "blk.0.attn_q_norm.weight"};
    expect_load_fail(rewrite(qw3, "qwen3_nonorm.gguf", &q), SH_EFORMAT,
                     "missing tensor 'blk.0.attn_q_norm.weight'");
    edit q2 = {.str_key = "general.architecture", .str_val = "qwen2"};
    expect_load_fail(rewrite(qw3, "qwen3_as_qwen2.gguf", &q2), SH_EFORMAT, "qwen2.");
}

/* ---- evaluation ---- */

typedef struct {
    model *m;
    int32_t n_vocab;
    int32_t toks[64];
} fixture;

static fixture fx[3]; /* llama f32, qwen2 q8_0, qwen3 f16 */
static const char *const fx_args[3] = {
    "--arch llama --type f32 --ctx 256 --seed 1",
    "--arch qwen2 --type q8_0 --ctx 256 --seed 2 --tie",
    "--arch qwen3 --type f16 --head-dim 32 --ctx 256 --seed 3",
};

/* F16 KV against F32 KV. With Q8_0 weights the activations are requantized to 8 bits
 * before every matmul, which turns the F16 rounding into whole quantization steps: llama.cpp
 * itself differs by 2.3e-2 between its F16 and F32 caches on fixture 1's model. */
static const double f16_tol[3] = {1e-2, 5e-2, 1e-2};

static fixture *get_fx(int i) {
    if (!fx[i].m) {
        char nm[32];
        snprintf(nm, sizeof nm, "fx%d.gguf", i);
        assert_int_equal(model_load(&fx[i].m, su_synth(nm, fx_args[i])), SH_OK);
        fx[i].n_vocab = model_hp(fx[i].m)->n_vocab;
        uint32_t x = 777u + (uint32_t)i;
        for (int k = 0; k < 64; k++) {
            x = x * 1664525u + 1013904223u;
            fx[i].toks[k] = (int32_t)((x >> 8) % (uint32_t)fx[i].n_vocab);
        }
    }
    return &fx[i];
}

static int teardown_all(void **state) {
    for (int i = 0; i < 3; i++) model_free(fx[i].m);
    return su_teardown(state);
}

/* max |a - b| / max |a| */
static double rel_diff(const float *a, const float *b, int32_t n) {
    double md = 0, ma = 0;
    for (int32_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(a[i]) > ma) ma = fabs(a[i]);
    }
    return ma > 0 ? md / ma : md;
}

static float *eval_new(fixture *f, int32_t n_ctx, int kv, int threads, const int32_t *t, int32_t n) {
    model_ctx *c;
    float *lg = malloc(sizeof(float) * (size_t)f->n_vocab);
    assert_non_null(lg);
    assert_int_equal(model_ctx_new(&c, f->m, n_ctx, kv, threads), SH_OK);
    assert_int_equal(model_eval(c, t, n, lg), SH_OK);
    assert_int_equal(model_ctx_pos(c), n);
    model_ctx_free(c);
    for (int32_t i = 0; i < f->n_vocab; i++) assert_true(isfinite(lg[i]));
    return lg;
}

static void test_ctx_args(void **state) {
    fixture *f = get_fx(0);
    model_ctx *c = (model_ctx *)1;
    assert_int_equal(model_ctx_new(&c, f->m, 0, KV_F32, 1), SH_EINVAL);
    assert_null(c);
    assert_int_equal(model_ctx_new(&c, f->m, -5, KV_F32, 1), SH_EINVAL);
    assert_int_equal(model_ctx_new(&c, f->m, 8, 7, 1), SH_EINVAL);
    assert_int_equal(model_ctx_new(&c, f->m, 8, KV_F16, 1), SH_OK);
    assert_int_equal(model_ctx_n_ctx(c), 8);
    assert_int_equal(model_ctx_pos(c), 0);
    model_ctx_free(c);
    model_ctx_free(NULL);
}

/* Rejected calls change nothing: the context still evaluates like a fresh one. */
static void test_eval_rejects(void **state) {
    fixture *f = get_fx(0);
    float *want = eval_new(f, 16, KV_F32, 1, f->toks, 10);
    float *lg = malloc(sizeof(float) * (size_t)f->n_vocab);
    model_ctx *c;
    assert_int_equal(model_ctx_new(&c, f->m, 16, KV_F32, 1), SH_OK);

    int32_t bad[3] = {f->toks[0], f->n_vocab, f->toks[1]};
    assert_int_equal(model_eval(c, bad, 3, lg), SH_EINVAL);
    assert_non_null(strstr(sh_error_last(), "out of range"));
    bad[1] = -1;
    assert_int_equal(model_eval(c, bad, 3, lg), SH_EINVAL);
    bad[1] = INT32_MAX;
    assert_int_equal(model_eval(c, bad, 3, NULL), SH_EINVAL);
    assert_int_equal(model_eval(c, f->toks, 0, lg), SH_EINVAL);
    assert_int_equal(model_eval(c, f->toks, -3, lg), SH_EINVAL);
    assert_int_equal(model_eval(c, f->toks, 17, lg), SH_ERANGE);
    assert_non_null(strstr(sh_error_last(), "context"));
    assert_int_equal(model_ctx_pos(c), 0);

    assert_int_equal(model_eval(c, f->toks, 10, lg), SH_OK);
    assert_memory_equal(lg, want, sizeof(float) * (size_t)f->n_vocab);
    assert_int_equal(model_eval(c, f->toks + 10, 7, lg), SH_ERANGE); /* 10 + 7 > 16 */
    assert_int_equal(model_ctx_pos(c), 10);
    assert_int_equal(model_eval(c, f->toks + 10, 6, lg), SH_OK); /* exactly full */
    assert_int_equal(model_ctx_pos(c), 16);
    assert_int_equal(model_eval(c, f->toks, 1, lg), SH_ERANGE);
    assert_int_equal(model_ctx_pos(c), 16);
    /* truncating out of range is ignored */
    model_ctx_truncate(c, 20);
    model_ctx_truncate(c, -1);
    assert_int_equal(model_ctx_pos(c), 16);
    model_ctx_truncate(c, 10);
    assert_int_equal(model_ctx_pos(c), 10);
    model_ctx_free(c);
    free(lg);
    free(want);
}

static void check_consistency(int which) {
    fixture *f = get_fx(which);
    const int32_t n = 40; /* more than one internal batch */
    size_t bytes = sizeof(float) * (size_t)f->n_vocab;
    float *first = eval_new(f, 64, KV_F32, 1, f->toks, n);
    float *lg = malloc(bytes);
    assert_non_null(lg);
    model_ctx *c;

    /* truncate and re-evaluate: identical */
    assert_int_equal(model_ctx_new(&c, f->m, 64, KV_F32, 1), SH_OK);
    assert_int_equal(model_eval(c, f->toks, n, lg), SH_OK);
    model_ctx_truncate(c, 0);
    assert_int_equal(model_ctx_pos(c), 0);
    memset(lg, 0, bytes);
    assert_int_equal(model_eval(c, f->toks, n, lg), SH_OK);
    assert_memory_equal(lg, first, bytes);
    /* truncate part way, with other tokens in the dropped cells first */
    model_ctx_truncate(c, 7);
    assert_int_equal(model_eval(c, f->toks + 20, 20, NULL), SH_OK);
    model_ctx_truncate(c, 7);
    assert_int_equal(model_eval(c, f->toks + 7, n - 7, lg), SH_OK);
    double d = rel_diff(first, lg, f->n_vocab);
    if (d > 1e-6) fail_msg("%s: truncate to 7 and re-eval: rel diff %g", fx_args[which], d);

    /* token by token */
    model_ctx_truncate(c, 0);
    for (int32_t i = 0; i < n; i++)
        assert_int_equal(model_eval(c, f->toks + i, 1, i == n - 1 ? lg : NULL), SH_OK);
    d = rel_diff(first, lg, f->n_vocab);
    if (d > 1e-4) fail_msg("%s: one call vs token by token: rel diff %g", fx_args[which], d);
    /* uneven chunks */
    model_ctx_truncate(c, 0);
    assert_int_equal(model_eval(c, f->toks, 3, NULL), SH_OK);
    assert_int_equal(model_eval(c, f->toks + 3, 33, NULL), SH_OK);
    assert_int_equal(model_eval(c, f->toks + 36, n - 36, lg), SH_OK);
    d = rel_diff(first, lg, f->n_vocab);
    if (d > 1e-4) fail_msg("%s: chunks 3+33+4: rel diff %g", fx_args[which], d);
    model_ctx_free(c);

    /* threads */
    float *two = eval_new(f, 64, KV_F32, 2, f->toks, n);
    d = rel_diff(first, two, f->n_vocab);
    if (d > 1e-5) fail_msg("%s: 1 vs 2 threads: rel diff %g", fx_args[which], d);
    free(two);
    float *three = eval_new(f, 64, KV_F32, 3, f->toks, n);
    d = rel_diff(first, three, f->n_vocab);
    if (d > 1e-5) fail_msg("%s: 1 vs 3 threads: rel diff %g", fx_args[which], d);
    free(three);

    /* F16 cache close to F32 */
    float *h = eval_new(f, 64, KV_F16, 2, f->toks, n);
    d = rel_diff(first, h, f->n_vocab);
    if (d > f16_tol[which]) fail_msg("%s: F16 vs F32 KV: rel diff %g", fx_args[which], d);
    free(h);

    /* a larger cache changes nothing */
    float *big = eval_new(f, 256, KV_F32, 1, f->toks, n);
    d = rel_diff(first, big, f->n_vocab);
    if (d > 1e-6) fail_msg("%s: n_ctx 64 vs 256: rel diff %g", fx_args[which], d);
    free(big);

    free(lg);
    free(first);
}

static void test_consistency_llama(void **state) {
    check_consistency(0);
}
static void test_consistency_qwen2(void **state) {
    check_consistency(1);
}
static void test_consistency_qwen3(void **state) {
    check_consistency(2);
}

/* The model's own context length bounds nothing here: the caller chooses n_ctx. But the
 * logits of different prompts must differ, or the checks above prove nothing. */
static void test_logits_depend_on_input(void **state) {
    fixture *f = get_fx(0);
    float *a = eval_new(f, 16, KV_F32, 1, f->toks, 8);
    float *b = eval_new(f, 16, KV_F32, 1, f->toks + 1, 8);
    assert_true(rel_diff(a, b, f->n_vocab) > 1e-3);
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_ctx_args),
        cmocka_unit_test(test_eval_rejects),
        cmocka_unit_test(test_consistency_llama),
        cmocka_unit_test(test_consistency_qwen2),
        cmocka_unit_test(test_consistency_qwen3),
        cmocka_unit_test(test_logits_depend_on_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown_all);
}
