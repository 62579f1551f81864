/* test_batch.c - batched evaluation of several sequences and the prefix cache give the same
 * logits as evaluating each sequence alone from scratch. */
#include "testutil.h"

#include <math.h>
#include <unistd.h>

#include "base/status.h"
#include "engine/model.h"
#include "engine/pcache.h"

static char model_path[256];
static model *m;

static double rel_err(const float *a, const float *b, int n) {
    double md = 0, mx = 0;
    for (int i = 0; i < n; i++) {
        if (fabs((double)a[i] - b[i]) > md) md = fabs((double)a[i] - b[i]);
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
    }
    return md / (mx > 0 ? mx : 1);
}

static int setup(void **state) {
    (void)state;
    const char *b = getenv("BUILD");
    char dir[] = "/tmp/shammah-batch-XXXXXX", cmd[1024];
    if (!mkdtemp(dir)) return -1;
    snprintf(model_path, sizeof model_path, "%s/m.gguf", dir);
    snprintf(cmd, sizeof cmd,
             "%s/shammah model synth --arch qwen2 --type q8_0 --embd 128 --heads 4 --kv-heads 2 "
             "--ff 256 --layers 2 --seed 5 --out %s",
             b ? b : "build", model_path);
    if (system(cmd) != 0) return -1;
    return model_load(&m, model_path);
}

static int teardown(void **state) {
    (void)state;
    model_free(m);
    unlink(model_path);
    return 0;
}

/* logits of tokens[0..n) evaluated alone, in one call */
static void alone(const int32_t *tokens, int n, float *logits) {
    model_ctx *c;
    assert_int_equal(model_ctx_new(&c, m, 128, KV_F32, 1), 0);
    assert_int_equal(model_eval(c, tokens, n, logits), 0);
    model_ctx_free(c);
}

static void test_batch_equals_alone(void **state) {
    (void)state;
    int V = model_hp(m)->n_vocab;
    enum { K = 5 };
    int32_t toks[K][40];
    int lens[K] = {1, 7, 33, 12, 30}; /* 83 rows: more than one chunk of 64 */
    for (int k = 0; k < K; k++)
        for (int i = 0; i < 40; i++) toks[k][i] = (int32_t)((k * 131 + i * 17) % V);
    float *want = malloc(sizeof(float) * (size_t)V * K), *got = malloc(sizeof(float) * (size_t)V * K);
    for (int k = 0; k < K; k++) alone(toks[k], lens[k], want + (size_t)k * V);

    /* all five prompts in one call (71+ rows: spans two chunks), two threads */
    model_ws *ws;
    model_seq *seqs[K];
    assert_int_equal(model_ws_new(&ws, m, 2, 128), 0);
    model_batch items[K];
    for (int k = 0; k < K; k++) {
        assert_int_equal(model_seq_new(&seqs[k], m, 128, KV_F32), 0);
        items[k] = (model_batch){seqs[k], toks[k], lens[k], got + (size_t)k * V};
    }
    assert_int_equal(model_eval_batch(ws, items, K), 0);
    for (int k = 0; k < K; k++) {
        double e = rel_err(got + (size_t)k * V, want + (size_t)k * V, V);
        if (e > 1e-5) print_error("sequence %d: rel err %g\n", k, e);
        assert_true(e <= 1e-5);
        assert_int_equal(model_seq_pos(seqs[k]), lens[k]);
    }

    /* then one decode step for all of them together vs. alone */
    int32_t next[K];
    for (int k = 0; k < K; k++) {
        next[k] = (int32_t)((k * 7 + 3) % V);
        items[k] = (model_batch){seqs[k], &next[k], 1, got + (size_t)k * V};
    }
    assert_int_equal(model_eval_batch(ws, items, K), 0);
    for (int k = 0; k < K; k++) {
        toks[k][lens[k]] = next[k];
        alone(toks[k], lens[k] + 1, want + (size_t)k * V);
        assert_true(rel_err(got + (size_t)k * V, want + (size_t)k * V, V) <= 1e-5);
    }

    /* invalid batches evaluate nothing */
    items[1] = items[0];
    assert_int_equal(model_eval_batch(ws, items, 2), SH_EINVAL);
    assert_int_equal(model_seq_pos(seqs[0]), lens[0] + 1);
    int32_t big[200] = {0};
    model_batch over = {seqs[2], big, 128, NULL};
    assert_int_equal(model_eval_batch(ws, &over, 1), SH_ERANGE);
    assert_int_equal(model_seq_pos(seqs[2]), lens[2] + 1);

    for (int k = 0; k < K; k++) model_seq_free(seqs[k]);
    model_ws_free(ws);
    free(want);
    free(got);
}

static void test_prefix_cache(void **state) {
    (void)state;
    int V = model_hp(m)->n_vocab;
    int32_t a[60], b[60];
    for (int i = 0; i < 60; i++) {
        a[i] = (int32_t)((i * 29 + 1) % V);
        b[i] = i < 25 ? a[i] : (int32_t)((i * 13 + 7) % V); /* shares 25 tokens with a */
    }
    float *want = malloc(sizeof(float) * (size_t)V), *got = malloc(sizeof(float) * (size_t)V);
    pcache *pc;
    model_ws *ws;
    model_seq *s;
    int32_t reused;
    assert_int_equal(pcache_new(&pc, m, 2, 128, KV_F32), 0);
    assert_int_equal(model_ws_new(&ws, m, 1, 128), 0);

    /* first turn: nothing cached */
    assert_int_equal(pcache_acquire(pc, a, 40, &s, &reused), 0);
    assert_int_equal(reused, 0);
    model_batch it = {s, a, 40, got};
    assert_int_equal(model_eval_batch(ws, &it, 1), 0);
    pcache_release(pc, s);

    /* second turn continues the first: only the 20 new tokens are evaluated */
    assert_int_equal(pcache_acquire(pc, a, 60, &s, &reused), 0);
    assert_int_equal(reused, 40);
    it = (model_batch){s, a + reused, 60 - reused, got};
    assert_int_equal(model_eval_batch(ws, &it, 1), 0);
    alone(a, 60, want);
    assert_true(rel_err(got, want, V) <= 1e-5);

    /* while that one is busy, a prompt sharing 25 tokens gets the other slot (nothing reused) */
    model_seq *s2;
    assert_int_equal(pcache_acquire(pc, b, 60, &s2, &reused), 0);
    assert_true(s2 != s);
    assert_int_equal(reused, 0);
    model_seq *s3;
    assert_int_equal(pcache_acquire(pc, b, 60, &s3, &reused), SH_EFULL);
    pcache_release(pc, s2);
    pcache_release(pc, s);

    /* b shares 25 tokens with the first slot's 60: reuse 25, logits as if from scratch */
    assert_int_equal(pcache_acquire(pc, b, 60, &s, &reused), 0);
    assert_int_equal(reused, 25);
    it = (model_batch){s, b + reused, 60 - reused, got};
    assert_int_equal(model_eval_batch(ws, &it, 1), 0);
    alone(b, 60, want);
    assert_true(rel_err(got, want, V) <= 1e-5);
    pcache_release(pc, s);

    /* the same prompt again: everything but the last token is reused */
    assert_int_equal(pcache_acquire(pc, b, 60, &s, &reused), 0);
    assert_int_equal(reused, 59);
    pcache_release(pc, s);
    assert_int_equal(pcache_acquire(pc, b, 200, &s, &reused), SH_ERANGE);
    assert_int_equal(pcache_reused_total(pc), 40 + 25 + 59);

    model_ws_free(ws);
    pcache_free(pc);
    free(want);
    free(got);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_equals_alone),
        cmocka_unit_test(test_prefix_cache),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
