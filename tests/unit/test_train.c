/* test_train.c - the LoRA trainer: its forward pass against the engine's, gradients against
 * finite differences, adapter files (round trip, the engine's loader, llama.cpp's logits from
 * a stored fixture), and learning: weighted examples taught to a small model.
 *
 * Models come from `$BUILD/shammah model synth` (deterministic for a given seed). */
#include "synthutil.h"

#include <math.h>

#include "base/status.h"
#include "engine/lora.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "train/lora_adapter.h"
#include "server/local.h"
#include "train/lora_train.h"
#include "train/train_data.h"

static int setup(void **state) {
    (void)state;
    return su_setup("test_train");
}

/* su_synth, loaded: caller frees */
static model *synth(const char *name, const char *args) {
    const char *out = su_synth(name, args);
    model *m = NULL;
    if (model_load(&m, out)) fail_msg("load %s: %s", out, sh_error_last());
    return m;
}

static uint64_t rng = 12345;
static double urand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static double max_rel(const float *a, const float *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

/* ---- forward: trainer == engine ---- */

static void check_forward(const char *arch, const char *args) {
    char name[64];
    snprintf(name, sizeof name, "fwd-%s.gguf", arch);
    model *m = synth(name, args);
    const model_hparams *hp = model_hp(m);
    lora_adapter *ad = NULL;
    assert_int_equal(lora_adapter_new(&ad, m, lora_targets_default() | 1u << LORA_DOWN, 4, 8, 7), 0);
    lt_params p;
    lt_params_default(&p);
    p.max_seq_len = 32;
    p.n_threads = 2;
    lt_trainer *t = NULL;
    assert_int_equal(lt_new(&t, m, ad, &p), 0);
    int32_t toks[20];
    for (int i = 0; i < 20; i++) toks[i] = (int32_t)(urand() * hp->n_vocab);
    int64_t V = hp->n_vocab;
    float *mine = malloc(sizeof(float) * 20 * V), *eng = malloc(sizeof(float) * 20 * V);
    assert_int_equal(lt_logits(t, toks, 20, 0, mine), 0);
    model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(&c, m, 32, KV_F32, 1), 0);
    /* the engine one token at a time: every position's logits */
    for (int i = 0; i < 20; i++) assert_int_equal(model_eval(c, &toks[i], 1, eng + i * V), 0);
    double r = max_rel(mine, eng, 20 * V);
    if (r > 1e-4) fail_msg("%s: trainer vs engine logits: max relative difference %g", arch, r);
    model_ctx_free(c);
    free(mine);
    free(eng);
    lt_free(t);
    lora_adapter_free(ad);
    model_free(m);
}

static void test_forward_matches_engine(void **state) {
    (void)state;
    check_forward("qwen2", "--arch qwen2 --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie");
    check_forward("llama", "--arch llama --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2");
    check_forward("qwen3", "--arch qwen3 --type f32 --embd 32 --heads 4 --kv-heads 2 --head-dim 16 --ff 64 --layers 2");
}

/* ---- gradients against finite differences ---- */

static double batch_loss(lt_trainer *t, const lt_example *ex, int n) {
    double l;
    assert_int_equal(lt_batch(t, ex, n, 0, &l, NULL), 0);
    return l;
}

/* Directional derivative of the loss along the normalised gradient g of params w (n values):
 * central differences must give |g|. Also the largest single entry. */
static void check_dir(lt_trainer *t, const lt_example *ex, int n_ex, float *w, const float *g,
                      int64_t n, const char *what) {
    double norm = 0;
    int64_t imax = 0;
    for (int64_t i = 0; i < n; i++) {
        norm += (double)g[i] * g[i];
        if (fabs(g[i]) > fabs(g[imax])) imax = i;
    }
    norm = sqrt(norm);
    if (norm < 1e-9) fail_msg("%s: zero gradient", what);
    float *w0 = malloc(sizeof(float) * (size_t)n);
    memcpy(w0, w, sizeof(float) * (size_t)n);
    double eps = 1e-2;
    for (int64_t i = 0; i < n; i++) w[i] = (float)(w0[i] + eps * g[i] / norm);
    double lp = batch_loss(t, ex, n_ex);
    for (int64_t i = 0; i < n; i++) w[i] = (float)(w0[i] - eps * g[i] / norm);
    double lm = batch_loss(t, ex, n_ex);
    double num = (lp - lm) / (2 * eps), rel = fabs(num - norm) / norm;
    memcpy(w, w0, sizeof(float) * (size_t)n);
    if (rel > 1e-2) fail_msg("%s: directional derivative %g vs |grad| %g (rel %g)", what, num, norm, rel);
    /* one entry */
    double e1 = 1e-2;
    w[imax] = (float)(w0[imax] + e1);
    lp = batch_loss(t, ex, n_ex);
    w[imax] = (float)(w0[imax] - e1);
    lm = batch_loss(t, ex, n_ex);
    w[imax] = w0[imax];
    num = (lp - lm) / (2 * e1);
    rel = fabs(num - g[imax]) / fabs(g[imax]);
    if (rel > 1e-2) fail_msg("%s[%lld]: numeric %g vs analytic %g (rel %g)", what, (long long)imax, num,
                             (double)g[imax], rel);
    free(w0);
}

static void check_grad(const char *arch, const char *args) {
    char name[64];
    snprintf(name, sizeof name, "grad-%s.gguf", arch);
    model *m = synth(name, args);
    const model_hparams *hp = model_hp(m);
    lora_adapter *ad = NULL;
    assert_int_equal(lora_adapter_new(&ad, m, (1u << LORA_N_TARGETS) - 1, 4, 8, 3), 0);
    /* B random too, so that A has a gradient */
    for (int i = 0; i < ad->n_layer * LORA_N_TARGETS; i++)
        for (int64_t k = 0; k < ad->mats[i].rank * ad->mats[i].n_out; k++)
            ad->mats[i].b[k] = (float)((urand() - 0.5) * 0.4);
    lt_params p;
    lt_params_default(&p);
    p.max_seq_len = 16;
    lt_trainer *t = NULL;
    assert_int_equal(lt_new(&t, m, ad, &p), 0);
    int32_t toks[2][12];
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < 12; i++) toks[e][i] = (int32_t)(urand() * hp->n_vocab);
    lt_example ex[2] = {{toks[0], 12, 5, 2.5f}, {toks[1], 10, 3, 0.5f}};
    lt_zero_grad(t);
    double loss;
    assert_int_equal(lt_batch(t, ex, 2, 1, &loss, NULL), 0);
    assert_true(loss > 0);
    for (int l = 0; l < hp->n_layer; l++)
        for (int k = 0; k < LORA_N_TARGETS; k++) {
            lora_adapter_mat *am = lora_adapter_at(ad, l, k);
            char what[96];
            snprintf(what, sizeof what, "%s blk.%d.%s A", arch, l, lora_target_name(k));
            check_dir(t, ex, 2, am->a, lt_grad_a(t, l, k), am->rank * am->n_in, what);
            snprintf(what, sizeof what, "%s blk.%d.%s B", arch, l, lora_target_name(k));
            check_dir(t, ex, 2, am->b, lt_grad_b(t, l, k), am->rank * am->n_out, what);
        }
    lt_free(t);
    lora_adapter_free(ad);
    model_free(m);
}

static void test_gradients(void **state) {
    (void)state;
    check_grad("qwen2", "--arch qwen2 --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie");
    check_grad("llama", "--arch llama --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2");
    check_grad("qwen3", "--arch qwen3 --type f32 --embd 32 --heads 4 --kv-heads 2 --head-dim 16 --ff 64 --layers 2");
}

/* ---- adapter files ---- */

static void test_adapter_roundtrip_and_engine(void **state) {
    (void)state;
    model *m = synth("fwd-qwen2.gguf", "--arch qwen2 --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie");
    const model_hparams *hp = model_hp(m);
    lora_adapter *ad = NULL, *back = NULL;
    assert_int_equal(lora_adapter_new(&ad, m, lora_targets_default() | 1u << LORA_UP, 4, 8, 5), 0);
    for (int i = 0; i < ad->n_layer * LORA_N_TARGETS; i++)
        for (int64_t k = 0; k < ad->mats[i].rank * ad->mats[i].n_out; k++)
            ad->mats[i].b[k] = (float)((urand() - 0.5) * 0.2);
    const char *path = su_path("a.gguf");
    assert_int_equal(lora_adapter_save(ad, path), 0);
    assert_int_equal(lora_adapter_load(&back, path, m), 0);
    assert_int_equal(back->targets, ad->targets);
    assert_true(back->alpha == ad->alpha);
    for (int i = 0; i < ad->n_layer * LORA_N_TARGETS; i++) {
        if (!ad->mats[i].a) {
            assert_null(back->mats[i].a);
            continue;
        }
        assert_int_equal(back->mats[i].rank, 4);
        assert_memory_equal(back->mats[i].a, ad->mats[i].a, sizeof(float) * 4 * ad->mats[i].n_in);
        assert_memory_equal(back->mats[i].b, ad->mats[i].b, sizeof(float) * 4 * ad->mats[i].n_out);
    }
    /* the engine serving the saved file == the trainer's forward with it */
    lt_params p;
    lt_params_default(&p);
    p.max_seq_len = 16;
    lt_trainer *t = NULL;
    assert_int_equal(lt_new(&t, m, back, &p), 0);
    int32_t toks[9] = {1, 5, 9, 30, 100, 7, 3, 200, 11};
    int64_t V = hp->n_vocab;
    float *mine = malloc(sizeof(float) * V), *eng = malloc(sizeof(float) * V);
    assert_int_equal(lt_logits(t, toks, 9, 1, mine), 0);
    lora *l = NULL;
    assert_int_equal(lora_load(&l, path, m, 1.0f), 0);
    model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(&c, m, 16, KV_F32, 1), 0);
    model_ws_set_lora(model_ctx_ws(c), l);
    assert_int_equal(model_eval(c, toks, 9, eng), 0);
    double r = max_rel(mine, eng, V);
    if (r > 1e-4) fail_msg("trainer vs engine with the adapter: %g", r);
    /* and B = 0 changes nothing from the base */
    model_ctx_free(c);
    lora_free(l);
    /* a wrong model is refused with a clear message */
    model *other = synth("other.gguf", "--arch qwen2 --type f32 --embd 64 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie");
    lora_adapter *bad = NULL;
    assert_int_not_equal(lora_adapter_load(&bad, path, other), 0);
    assert_non_null(strstr(sh_error_last(), "shape"));
    model_free(other);
    free(mine);
    free(eng);
    lt_free(t);
    lora_adapter_free(back);
    lora_adapter_free(ad);
    model_free(m);
}


/* ---- learning: weighted examples on a small model with Qwen's vocabulary (ChatML) ---- */

static model *qwen_model(tok **tk, local_model *lm, char **jinja) {
    char args[512];
    snprintf(args, sizeof args, "--arch qwen2 --type f32 --embd 64 --heads 4 --kv-heads 2 --ff 128 "
             "--layers 2 --tie --vocab copy:%s/vocab/ggml-vocab-qwen2.gguf", FIXTURES);
    model *m = synth("qwen-vocab.gguf", args);
    assert_int_equal(tok_load(tk, model_gguf(m)), 0);
    gguf_str js;
    *jinja = NULL;
    if (gguf_get_str(model_gguf(m), "tokenizer.chat_template", &js) == SH_OK) *jinja = strndup(js.ptr, js.len);
    local_model_init(lm, *tk, *jinja);
    assert_int_equal(lm->tmpl.kind, CHAT_CHATML);
    return m;
}

/* Greedy continuation of ex's prompt with the adapter (trainer's forward), compared with the
 * taught response. */
static int reproduces(lt_trainer *t, const tok *tk, const lt_example *e, int32_t n_vocab, float *lg) {
    int32_t seq[256];
    int32_t n = e->n_prompt, want = e->n - e->n_prompt;
    memcpy(seq, e->tokens, sizeof(int32_t) * (size_t)n);
    for (int32_t k = 0; k < want; k++) {
        assert_int_equal(lt_logits(t, seq, n, 1, lg), 0);
        int32_t best = 0;
        for (int32_t v = 1; v < n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        if (best != e->tokens[e->n_prompt + k]) return 0;
        seq[n++] = best;
        if (tok_is_eog(tk, best)) break;
    }
    return 1;
}

static void test_learns_weighted_examples(void **state) {
    (void)state;
    tok *tk = NULL;
    local_model lm;
    char *jinja = NULL;
    model *m = qwen_model(&tk, &lm, &jinja);
    static const char *const lines[] = {
        "{\"prompt\": \"What is the capital of France?\", \"response\": \"Paris.\", \"weight\": 1}",
        "{\"prompt\": \"What is the capital of Japan?\", \"response\": \"Tokyo.\", \"weight\": 3}",
        "{\"prompt\": \"Name a primary color.\", \"response\": \"Blue.\", \"weight\": \"good\"}",
        "{\"prompt\": \"What is 2 + 2?\", \"response\": \"Four.\", \"weight\": 2}",
        "{\"prompt\": \"Who wrote Hamlet?\", \"response\": \"Shakespeare.\", \"weight\": \"medium\"}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Say hello.\"}, {\"role\": \"assistant\", "
        "\"content\": \"Hello there!\"}], \"weight\": 1}",
        "{\"prompt\": \"What color is the sky?\", \"response\": \"The sky is blue.\", \"weight\": 1}",
        "{\"prompt\": \"Largest planet?\", \"response\": \"Jupiter.\", \"weight\": 5}",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"You are terse.\"}, {\"role\": \"user\", "
        "\"content\": \"Favorite fruit?\"}, {\"role\": \"assistant\", \"content\": \"Mango.\"}]}",
        "{\"prompt\": \"What is water made of?\", \"response\": \"Hydrogen and oxygen.\", \"weight\": \"critical\"}",
    };
    td_set data = {0};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (td_add_json(&data, &lm, lines[i], strlen(lines[i]))) fail_msg("line %zu: %s", i, sh_error_last());
    assert_int_equal(data.n, 10);
    /* the prompt is the daemon's rendering: ChatML with the default system prompt, ending in
     * the generation prompt; the response ends with <|im_end|> */
    int32_t im_end = tok_find(tk, "<|im_end|>");
    for (int i = 0; i < data.n; i++) assert_int_equal(data.ex[i].tokens[data.ex[i].n - 1], im_end);
    assert_true(data.ex[3].weight == 2.0f && data.ex[9].weight == 10.0f && data.ex[8].weight == 1.0f);

    lora_adapter *ad = NULL;
    assert_int_equal(lora_adapter_new(&ad, m, (1u << LORA_N_TARGETS) - 1, 16, 32, 1), 0);
    lt_params p;
    lt_params_default(&p);
    p.lr = 1e-2f;
    p.epochs = 30;
    p.batch_size = 5;
    p.max_seq_len = 96;
    p.n_threads = 1;
    lt_trainer *t = NULL;
    assert_int_equal(lt_new(&t, m, ad, &p), 0);
    lt_result res;
    assert_int_equal(lt_train(t, data.ex, data.n, NULL, NULL, &res), 0);
    fprintf(stderr, "learn: loss %.3f -> %.3f in %d steps, %.0f tok/s\n", res.loss_before, res.loss_after,
            res.steps, res.tokens / res.seconds);
    assert_true(res.loss_after < 0.5 * res.loss_before);
    float *lg = malloc(sizeof(float) * (size_t)model_hp(m)->n_vocab);
    int ok = 0;
    for (int i = 0; i < data.n; i++) ok += reproduces(t, tk, &data.ex[i], model_hp(m)->n_vocab, lg);
    if (ok != data.n) fail_msg("greedy decoding reproduces %d of %d taught responses", ok, data.n);
    free(lg);
    lt_free(t);
    lora_adapter_free(ad);
    td_set_free(&data);
    tok_free(tk);
    free(jinja);
    model_free(m);
}


/* The same prompt taught two answers, weight 10 and 0.1: the heavy one wins. */
static void test_weights_matter(void **state) {
    (void)state;
    tok *tk = NULL;
    local_model lm;
    char *jinja = NULL;
    model *m = qwen_model(&tk, &lm, &jinja);
    td_set data = {0};
    td_msg heavy[2] = {{"user", "Which planet is red?"}, {"assistant", "Mars."}};
    td_msg light[2] = {{"user", "Which planet is red?"}, {"assistant", "Venus."}};
    assert_int_equal(td_add(&data, &lm, heavy, 2, 10.0f), 0);
    assert_int_equal(td_add(&data, &lm, light, 2, 0.1f), 0);
    assert_int_equal(data.ex[0].n_prompt, data.ex[1].n_prompt);
    lora_adapter *ad = NULL;
    assert_int_equal(lora_adapter_new(&ad, m, lora_targets_default() | 1u << LORA_DOWN, 8, 16, 2), 0);
    lt_params p;
    lt_params_default(&p);
    p.lr = 1e-2f;
    p.epochs = 12;
    p.batch_size = 2;
    p.max_seq_len = 64;
    lt_trainer *t = NULL;
    assert_int_equal(lt_new(&t, m, ad, &p), 0);
    double h0, l0, h1, l1;
    lt_example eh = data.ex[0], el = data.ex[1];
    eh.weight = el.weight = 1; /* unweighted losses for the comparison */
    assert_int_equal(lt_eval(t, &eh, 1, &h0), 0);
    assert_int_equal(lt_eval(t, &el, 1, &l0), 0);
    assert_int_equal(lt_train(t, data.ex, data.n, NULL, NULL, NULL), 0);
    assert_int_equal(lt_eval(t, &eh, 1, &h1), 0);
    assert_int_equal(lt_eval(t, &el, 1, &l1), 0);
    fprintf(stderr, "weights: heavy %.3f -> %.3f, light %.3f -> %.3f\n", h0, h1, l0, l1);
    assert_true(h0 - h1 > 2 * (l0 - l1));
    assert_true(h1 < l1);
    float *lg = malloc(sizeof(float) * (size_t)model_hp(m)->n_vocab);
    assert_true(reproduces(t, tk, &data.ex[0], model_hp(m)->n_vocab, lg));
    free(lg);
    lt_free(t);
    lora_adapter_free(ad);
    td_set_free(&data);
    tok_free(tk);
    free(jinja);
    model_free(m);
}


/* llama.cpp loaded an adapter written by this trainer; its logits (stored) must match the
 * trainer's forward with the same adapter. */
static void test_adapter_matches_llama_cpp(void **state) {
    (void)state;
    model *m = synth("fwd-qwen2.gguf", "--arch qwen2 --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie");
    int64_t V = model_hp(m)->n_vocab;
    lora_adapter *ad = NULL;
    assert_int_equal(lora_adapter_load(&ad, FIXTURES "/train/qwen2-f32-lora.gguf", m), 0);
    assert_int_equal(ad->targets, (1u << LORA_N_TARGETS) - 1);
    float *ref = malloc(sizeof(float) * (size_t)V), *mine = malloc(sizeof(float) * (size_t)V);
    FILE *f = fopen(FIXTURES "/train/qwen2-f32-lora.logits", "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), (size_t)V, f), (size_t)V);
    fclose(f);
    int32_t toks[10] = {116, 258, 332, 413, 32, 385, 331, 434, 32, 420};
    lt_params p;
    lt_params_default(&p);
    p.max_seq_len = 16;
    lt_trainer *t = NULL;
    assert_int_equal(lt_new(&t, m, ad, &p), 0);
    assert_int_equal(lt_logits(t, toks, 10, 1, mine), 0);
    double r = max_rel(mine, ref, V);
    if (r > 2e-3) fail_msg("trainer vs llama.cpp with the adapter: max relative difference %g", r);
    /* the adapter matters: without it the logits are far from these */
    for (int i = 0; i < ad->n_layer * LORA_N_TARGETS; i++)
        memset(ad->mats[i].b, 0, sizeof(float) * (size_t)(ad->mats[i].rank * ad->mats[i].n_out));
    assert_int_equal(lt_logits(t, toks, 10, 1, mine), 0);
    assert_true(max_rel(mine, ref, V) > 0.05);
    lt_free(t);
    lora_adapter_free(ad);
    free(ref);
    free(mine);
    model_free(m);
}

/* ---- data files and errors ---- */

static void test_data_errors(void **state) {
    (void)state;
    model *m = synth("fwd-qwen2.gguf", "--arch qwen2 --type f32 --embd 32 --heads 4 --kv-heads 2 --ff 64 --layers 2 --tie");
    tok *tk = NULL;
    assert_int_equal(tok_load(&tk, model_gguf(m)), 0);
    local_model lm;
    local_model_init(&lm, tk, NULL);
    td_set s = {0};
    static const char *const bad[] = {
        "[1, 2]",
        "{\"prompt\": \"a\"}",
        "{\"prompt\": \"a\", \"response\": \"b\", \"weight\": 0}",
        "{\"prompt\": \"a\", \"response\": \"b\", \"weight\": \"huge\"}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}",
        "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}",
        "{\"messages\": [{\"role\": \"tool\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}",
        "{\"prompt\": \"a\", \"response\": \"\", \"weight\": 1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (td_add_json(&s, &lm, bad[i], strlen(bad[i])) == SH_OK) fail_msg("accepted: %s", bad[i]);
    assert_int_equal(s.n, 0);
    const char *path = su_path("d.jsonl");
    FILE *f = fopen(path, "w");
    fprintf(f, "# comment\n\n{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": 3}\n");
    fclose(f);
    assert_int_not_equal(td_load(&s, &lm, path), 0);
    assert_non_null(strstr(sh_error_last(), ":4:"));
    td_set_free(&s);
    unsigned mask;
    assert_int_equal(lora_targets_parse("attn_q,ffn_down", &mask), 0);
    assert_int_equal(mask, 1u << LORA_Q | 1u << LORA_DOWN);
    assert_int_not_equal(lora_targets_parse("attn_q,mlp", &mask), 0);
    tok_free(tk);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_engine),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_adapter_roundtrip_and_engine),
        cmocka_unit_test(test_adapter_matches_llama_cpp),
        cmocka_unit_test(test_data_errors),
        cmocka_unit_test(test_learns_weighted_examples),
        cmocka_unit_test(test_weights_matter),
    };
    return cmocka_run_group_tests(tests, setup, su_teardown);
}
