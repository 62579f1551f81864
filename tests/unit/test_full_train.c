/* test_full_train.c - the full-parameter trainer: its forward pass against the engine's,
 * every tensor's gradient against finite differences, learning from scratch (loss falls, the
 * saved file then generates the taught answer in the engine, F32 and F16), bad arguments.
 *
 * Models come from `$BUILD/shammah model synth` (deterministic for a given seed). */
#include "synthutil.h"

#include <math.h>

#include "base/status.h"
#include "engine/model.h"
#include "train/full_train.h"

static int setup(void **state) {
    (void)state;
    return su_setup("test_full_train");
}

static uint64_t rng = 777;
static double urand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* ---- forward: trainer == engine ---- */

/* tol: F32 weights agree to rounding; F16 ones differ as the engine rounds activations to F16 */
static void check_forward(const char *name, const char *args, double tol) {
    const char *path = su_synth(name, args);
    ft_params p;
    ft_params_default(&p);
    p.max_seq_len = 24;
    p.batch_size = 2;
    p.n_threads = 2;
    ft_trainer *t = NULL;
    if (ft_new(&t, path, &p)) fail_msg("ft_new: %s", sh_error_last());
    model *m = NULL;
    assert_int_equal(model_load(&m, path), 0);
    int64_t V = model_hp(m)->n_vocab;
    int32_t toks[20];
    for (int i = 0; i < 20; i++) toks[i] = (int32_t)(urand() * V);
    float *mine = malloc(sizeof(float) * 20 * V), *eng = malloc(sizeof(float) * 20 * V);
    assert_int_equal(ft_logits(t, toks, 20, 0, mine), 0);
    model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(&c, m, 32, KV_F32, 1), 0);
    for (int i = 0; i < 20; i++) assert_int_equal(model_eval(c, &toks[i], 1, eng + i * V), 0);
    double md = 0, mb = 0;
    for (int64_t i = 0; i < 20 * V; i++) {
        md = fmax(md, fabs((double)mine[i] - eng[i]));
        mb = fmax(mb, fabs((double)eng[i]));
    }
    if (md / mb > tol) fail_msg("%s: trainer vs engine logits: max relative difference %g", name, md / mb);
    model_ctx_free(c);
    model_free(m);
    free(mine);
    free(eng);
    ft_free(t);
}

static void test_forward_matches_engine(void **state) {
    (void)state;
    check_forward("llama-tied.gguf", "--arch llama --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie", 1e-4);
    check_forward("llama.gguf", "--arch llama --type f32 --embd 32 --heads 4 --kv-heads 1 --ff 48 --layers 3", 1e-4);
    check_forward("f16.gguf", "--arch llama --type f16 --embd 32 --heads 2 --kv-heads 2 --ff 64 --layers 1 --tie", 3e-3);
}

/* ---- gradients ---- */

static double batch_loss(ft_trainer *t, const lt_example *ex, int n) {
    double l;
    assert_int_equal(ft_batch(t, ex, n, 0, &l, NULL), 0);
    return l;
}

/* Directional derivative along the normalised gradient must equal its norm. */
static void check_dir(ft_trainer *t, const lt_example *ex, int n_ex, const char *name) {
    int64_t n;
    float *w = ft_param(t, name, &n), *g = ft_grad(t, name, NULL);
    if (!w || !g) fail_msg("no tensor %s", name);
    double norm = 0;
    for (int64_t i = 0; i < n; i++) norm += (double)g[i] * g[i];
    norm = sqrt(norm);
    if (norm < 1e-9) fail_msg("%s: zero gradient", name);
    float *w0 = malloc(sizeof(float) * (size_t)n), *g0 = malloc(sizeof(float) * (size_t)n);
    memcpy(w0, w, sizeof(float) * (size_t)n);
    memcpy(g0, g, sizeof(float) * (size_t)n);
    double eps = 1e-2;
    for (int64_t i = 0; i < n; i++) w[i] = (float)(w0[i] + eps * g0[i] / norm);
    double lp = batch_loss(t, ex, n_ex);
    for (int64_t i = 0; i < n; i++) w[i] = (float)(w0[i] - eps * g0[i] / norm);
    double lm = batch_loss(t, ex, n_ex);
    memcpy(w, w0, sizeof(float) * (size_t)n);
    double num = (lp - lm) / (2 * eps), rel = fabs(num - norm) / norm;
    if (rel > 1e-2) fail_msg("%s: directional derivative %g vs |grad| %g (rel %g)", name, num, norm, rel);
    free(w0);
    free(g0);
}

static void check_grads(const char *file, const char *args, int tied) {
    const char *path = su_synth(file, args);
    ft_params p;
    ft_params_default(&p);
    p.max_seq_len = 16;
    p.batch_size = 3;
    p.n_threads = 2;
    ft_trainer *t = NULL;
    if (ft_new(&t, path, &p)) fail_msg("ft_new: %s", sh_error_last());
    model *m = NULL;
    assert_int_equal(model_load(&m, path), 0);
    int32_t V = model_hp(m)->n_vocab, L = model_hp(m)->n_layer;
    model_free(m);
    int32_t toks[3][14];
    for (int e = 0; e < 3; e++)
        for (int i = 0; i < 14; i++) toks[e][i] = (int32_t)(urand() * V);
    lt_example ex[3] = {{toks[0], 12, 5, 2.5f}, {toks[1], 10, 3, 0.5f}, {toks[2], 14, 1, 1.0f}};
    ft_zero_grad(t);
    double loss;
    assert_int_equal(ft_batch(t, ex, 3, 1, &loss, NULL), 0);
    assert_true(loss > 0);
    check_dir(t, ex, 3, "token_embd.weight");
    check_dir(t, ex, 3, "output_norm.weight");
    if (!tied) check_dir(t, ex, 3, "output.weight");
    static const char *const names[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                        "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < L; l++)
        for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, names[k]);
            check_dir(t, ex, 3, nm);
        }
    ft_free(t);
}

static void test_gradients(void **state) {
    (void)state;
    check_grads("g-tied.gguf", "--arch llama --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie --seed 3", 1);
    check_grads("g-untied.gguf", "--arch llama --type f32 --embd 32 --heads 2 --kv-heads 1 --ff 40 --layers 2 --seed 4", 0);
}

/* ---- learning from scratch ---- */

/* Greedy continuation of prompt in the engine must be `want`. */
static void engine_reproduces(const char *path, const int32_t *prompt, int np, const int32_t *want,
                              int nw) {
    model *m = NULL;
    if (model_load(&m, path)) fail_msg("load %s: %s", path, sh_error_last());
    int64_t V = model_hp(m)->n_vocab;
    model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(&c, m, 64, KV_F16, 1), 0);
    float *lg = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(model_eval(c, prompt, np, lg), 0);
    for (int i = 0; i < nw; i++) {
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = (int32_t)v;
        if (best != want[i]) fail_msg("%s: token %d is %d, taught %d", path, i, best, want[i]);
        assert_int_equal(model_eval(c, &best, 1, lg), 0);
    }
    free(lg);
    model_ctx_free(c);
    model_free(m);
}

static void test_learns_from_scratch(void **state) {
    (void)state;
    const char *path = su_synth("scratch.gguf", "--arch llama --type f32 --embd 48 --heads 4 --kv-heads 2 --ff 96 --layers 2 --tie --seed 9");
    ft_params p;
    ft_params_default(&p);
    p.max_seq_len = 32;
    p.batch_size = 4;
    p.n_threads = 2;
    p.reinit = 1;
    p.epochs = 150;
    p.warmup_steps = 10;
    p.lr = 1e-2f;
    p.lr_min = 1e-3f;
    ft_trainer *t = NULL;
    if (ft_new(&t, path, &p)) fail_msg("ft_new: %s", sh_error_last());
    /* three "questions" with distinct answers; the loss covers the answers only */
    int32_t seq[3][12] = {{5, 6, 7, 8, 40, 41, 42, 43, 44, 45, 46, 47},
                          {5, 9, 7, 8, 50, 51, 52, 53, 54, 55, 56, 57},
                          {10, 6, 7, 8, 60, 61, 62, 63, 64, 65, 66, 67}};
    lt_example ex[3] = {{seq[0], 12, 4, 1}, {seq[1], 12, 4, 1}, {seq[2], 12, 4, 3}};
    lt_result r;
    if (ft_train(t, ex, 3, NULL, NULL, &r)) fail_msg("ft_train: %s", sh_error_last());
    if (!(r.loss_before > 4 && r.loss_after < 0.05))
        fail_msg("loss %g -> %g after %d steps", r.loss_before, r.loss_after, r.steps);
    assert_int_equal(ft_save(t, su_path("learnt.gguf"), 0, "learnt"), 0);
    assert_int_equal(ft_save(t, su_path("learnt16.gguf"), 1, NULL), 0);
    ft_free(t);
    for (int e = 0; e < 3; e++) {
        engine_reproduces(su_path("learnt.gguf"), seq[e], 4, seq[e] + 4, 8);
        engine_reproduces(su_path("learnt16.gguf"), seq[e], 4, seq[e] + 4, 8);
    }
    /* a saved model trains on: loading its weights (not reinit) starts where it ended */
    p.reinit = 0;
    p.epochs = 1;
    assert_int_equal(ft_new(&t, su_path("learnt.gguf"), &p), 0);
    double l;
    assert_int_equal(ft_eval(t, ex, 3, &l), 0);
    if (!(l < 0.05)) fail_msg("reloaded model's loss %g", l);
    ft_free(t);
}

static void test_errors(void **state) {
    (void)state;
    ft_params p;
    ft_params_default(&p);
    ft_trainer *t = NULL;
    assert_int_not_equal(ft_new(&t, su_path("missing.gguf"), &p), 0);
    assert_null(t);
    const char *qwen2 = su_synth("biased.gguf", "--arch qwen2 --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 1");
    assert_int_equal(ft_new(&t, qwen2, &p), SH_EUNSUPPORTED);
    assert_non_null(strstr(sh_error_last(), "biases"));
    p.batch_size = 0;
    assert_int_equal(ft_new(&t, su_synth("llama.gguf", ""), &p), SH_EINVAL);
    ft_params_default(&p);
    p.max_seq_len = 8;
    p.batch_size = 2;
    assert_int_equal(ft_new(&t, su_synth("llama.gguf", ""), &p), 0);
    int32_t bad[3] = {1, 2, 1 << 30};
    lt_example ex[3] = {{bad, 3, 1, 1}, {bad, 2, 1, 1}, {bad, 2, 1, 1}};
    double l;
    assert_int_equal(ft_batch(t, ex, 1, 0, &l, NULL), SH_EINVAL); /* token out of range */
    assert_int_equal(ft_batch(t, ex + 1, 3, 0, &l, NULL), SH_EINVAL); /* more than batch_size */
    ex[1].weight = 0;
    assert_int_equal(ft_batch(t, ex + 1, 1, 0, &l, NULL), SH_EINVAL);
    float lg[8];
    assert_int_equal(ft_logits(t, bad, 9, 1, lg), SH_EINVAL);
    ft_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_engine),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_learns_from_scratch),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, su_teardown);
}
