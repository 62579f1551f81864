/* cmd_run.c - `shammah run`: complete a prompt with a local model, streaming to stdout. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "engine/chat.h"
#include "engine/lora.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

#define RUN_MAX_STOPS SMP_STOP_MAX
#define RUN_DEFAULT_CTX 4096
#define RUN_MAX_TEXT (64 << 20) /* generated text kept for --json */

typedef struct {
    const char *model, *prompt, *dump_logits, *lora_path;
    float lora_scale;
    long long n_predict, threads, ctx;
    int chat, json, kv_type, seed_given, ignore_eos;
    smp_params sp;
    const char *stops[RUN_MAX_STOPS];
    int n_stops;
} run_opts;

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: shammah run -m MODEL.gguf -p PROMPT [options]\n"
            "  -n N               tokens to generate (default 128; stops earlier at end of text)\n"
            "  --temp T           temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K --top-p P --min-p P   sampling filters (defaults 40, 0.95, 0.05)\n"
            "  --repeat-penalty F --presence-penalty F --frequency-penalty F\n"
            "  --seed S           random seed (default: from the clock)\n"
            "  --stop STR         stop before this text (repeatable, up to %d)\n"
            "  -t THREADS         worker threads (default: cores, at most 8)\n"
            "  --ctx N            context size in tokens (default min(model, %d))\n"
            "  --kv f16|f32       KV cache type (default f16)\n"
            "  --chat             wrap the prompt as one user message in the model's chat template\n"
            "  --json             print one JSON object with tokens, text and timings\n"
            "  --ignore-eos       keep generating past end-of-generation tokens\n"
            "  --dump-logits FILE write the float32 logits at the last prompt position\n"
            "  --lora FILE        apply a LoRA adapter (llama.cpp's GGUF format)\n"
            "  --lora-scale S     scale of the adapter (default 1)\n",
            RUN_MAX_STOPS, RUN_DEFAULT_CTX);
}

static int parse(int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->threads = cli_default_threads();
    o->kv_type = KV_F16;
    o->lora_scale = 1.0f;
    smp_params_default(&o->sp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--chat")) { o->chat = 1; continue; }
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--ignore-eos")) { o->ignore_eos = 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { run_usage(stdout); exit(0); }
        if (i + 1 >= argc) {
            fprintf(stderr, "shammah run: %s needs a value (or is unknown; see --help)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        long long n;
        int bad = 0;
        if (!strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "-p")) o->prompt = v;
        else if (!strcmp(a, "--dump-logits")) o->dump_logits = v;
        else if (!strcmp(a, "--lora")) o->lora_path = v;
        else if (!strcmp(a, "--lora-scale")) bad = cli_float("run", a, v, -100, 100, &o->lora_scale);
        else if (!strcmp(a, "-n")) bad = cli_int("run", a, v, 0, 1 << 24, &o->n_predict);
        else if (!strcmp(a, "-t")) bad = cli_int("run", a, v, 1, 256, &o->threads);
        else if (!strcmp(a, "--ctx")) bad = cli_int("run", a, v, 1, 1 << 24, &o->ctx);
        else if (!strcmp(a, "--temp")) bad = cli_float("run", a, v, 0, 100, &o->sp.temperature);
        else if (!strcmp(a, "--top-p")) bad = cli_float("run", a, v, 0, 1, &o->sp.top_p);
        else if (!strcmp(a, "--min-p")) bad = cli_float("run", a, v, 0, 1, &o->sp.min_p);
        else if (!strcmp(a, "--repeat-penalty"))
            bad = cli_float("run", a, v, 0.01, 100, &o->sp.repeat_penalty);
        else if (!strcmp(a, "--presence-penalty"))
            bad = cli_float("run", a, v, -2, 2, &o->sp.presence_penalty);
        else if (!strcmp(a, "--frequency-penalty"))
            bad = cli_float("run", a, v, -2, 2, &o->sp.frequency_penalty);
        else if (!strcmp(a, "--top-k")) {
            bad = cli_int("run", a, v, 0, 1 << 24, &n);
            o->sp.top_k = (int32_t)n;
        } else if (!strcmp(a, "--seed")) {
            bad = cli_int("run", a, v, 0, (1ll << 62), &n);
            o->sp.seed = (uint64_t)n;
            o->seed_given = 1;
        } else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f16")) o->kv_type = KV_F16;
            else if (!strcmp(v, "f32")) o->kv_type = KV_F32;
            else {
                fprintf(stderr, "shammah run: --kv must be f16 or f32\n");
                bad = -1;
            }
        } else if (!strcmp(a, "--stop")) {
            if (o->n_stops == RUN_MAX_STOPS || !*v) {
                fprintf(stderr, "shammah run: at most %d non-empty --stop strings\n", RUN_MAX_STOPS);
                bad = -1;
            } else {
                o->stops[o->n_stops++] = v;
            }
        } else {
            fprintf(stderr, "shammah run: unknown option '%s' (see --help)\n", a);
            bad = -1;
        }
        if (bad) return -1;
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "shammah run: -m MODEL and -p PROMPT are required (see --help)\n");
        return -1;
    }
    if (!*o->prompt) {
        fprintf(stderr, "shammah run: the prompt is empty\n");
        return -1;
    }
    if (!o->seed_given) o->sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    return 0;
}

/* Generated text, bounded, for --json. */
typedef struct {
    char *buf;
    size_t len, cap;
} text_buf;

static void text_add(text_buf *t, const char *s, size_t n) {
    if (t->len + n > RUN_MAX_TEXT) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) return;
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = 0;
}

static void emit(const run_opts *o, text_buf *tb, const char *s, size_t n) {
    if (!n) return;
    if (o->json) {
        text_add(tb, s, n);
    } else {
        fwrite(s, 1, n, stdout);
        fflush(stdout);
    }
}

static int tokenize_prompt(const run_opts *o, const model *m, const tok *tk, int32_t **ids,
                           int64_t *n_ids) {
    char *rendered = NULL;
    const char *text = o->prompt;
    size_t len = strlen(text);
    int add_bos = tok_add_bos(tk), special = 0, st = SH_OK;
    if (o->chat) {
        char tmpl_buf[1] = {0};
        gguf_str js = {tmpl_buf, 0};
        char *jinja = NULL;
        if (gguf_get_str(model_gguf(m), "tokenizer.chat_template", &js) == SH_OK) {
            jinja = strndup(js.ptr, js.len);
            if (!jinja) return sh_error_set(SH_ENOMEM, "out of memory");
        }
        chat_template t;
        chat_template_detect(&t, jinja);
        free(jinja);
        chat_msg msg = {.role = CHAT_USER, .content = o->prompt};
        chat_opts co = {.add_generation_prompt = 1};
        if ((st = chat_render(&t, &msg, 1, &co, &rendered, &len))) return st;
        text = rendered;
        add_bos = 0; /* the template writes its own BOS text where it has one */
        special = 1;
    }
    int64_t cap = (int64_t)len + 8;
    *ids = malloc(sizeof(int32_t) * (size_t)cap);
    if (!*ids) st = sh_error_set(SH_ENOMEM, "out of memory");
    if (!st) st = tok_encode(tk, text, len, add_bos, special, *ids, cap, n_ids);
    free(rendered);
    return st;
}

static int write_logits(const char *path, const float *logits, int32_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return sh_error_set(SH_EIO, "cannot create %s", path);
    size_t w = fwrite(logits, sizeof(float), (size_t)n, f);
    int bad = fclose(f) != 0 || w != (size_t)n;
    return bad ? sh_error_set(SH_EIO, "cannot write %s", path) : SH_OK;
}

static void print_json(const int32_t *prompt, int64_t n_prompt, const int32_t *gen, int64_t n_gen,
                       const text_buf *tb, double p_ms, int64_t n_dec, double g_ms) {
    json_t *pt = json_array(), *gt = json_array();
    for (int64_t i = 0; i < n_prompt; i++) json_array_append_new(pt, json_integer(prompt[i]));
    for (int64_t i = 0; i < n_gen; i++) json_array_append_new(gt, json_integer(gen[i]));
    json_t *timings = json_pack("{s:I,s:f,s:f,s:I,s:f,s:f}", "prompt_n", (json_int_t)n_prompt,
                                "prompt_ms", p_ms, "prompt_per_second",
                                p_ms > 0 ? n_prompt * 1000.0 / p_ms : 0.0, "predicted_n",
                                (json_int_t)n_gen, "predicted_ms", g_ms, "predicted_per_second",
                                g_ms > 0 ? n_dec * 1000.0 / g_ms : 0.0);
    json_t *root = json_pack("{s:o,s:o,s:s%,s:o}", "prompt_tokens", pt, "tokens", gt, "text",
                             tb->buf ? tb->buf : "", tb->len, "timings", timings);
    char *s = root ? json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    json_decref(root);
}

int cmd_run(int argc, char **argv) {
    run_opts o;
    if (parse(argc, argv, &o)) return 2;
    char model_path[4096]; /* -m NAME through the registry */
    if (cli_resolve_model("run", o.model, model_path, sizeof model_path)) return 1;
    o.model = model_path;
    int rc = 1, st;
    model *m = NULL;
    tok *tk = NULL;
    model_ctx *c = NULL;
    smp *sampler = NULL;
    int32_t *prompt = NULL, *hist = NULL;
    float *logits = NULL;
    int64_t n_prompt = 0;
    text_buf tb = {0};
    smp_stop stop;
    lora *adapter = NULL;
    const char *what = o.model;

    if ((st = model_load(&m, o.model)) || (st = tok_load(&tk, model_gguf(m)))) goto out;
    const model_hparams *hp = model_hp(m);
    if (tok_n_vocab(tk) > hp->n_vocab) {
        st = sh_error_set(SH_EFORMAT, "tokenizer has %d tokens but the embedding only %d rows",
                          tok_n_vocab(tk), hp->n_vocab);
        goto out;
    }
    what = "prompt";
    if ((st = tokenize_prompt(&o, m, tk, &prompt, &n_prompt))) goto out;
    if (n_prompt == 0) {
        st = sh_error_set(SH_EINVAL, "the prompt has no tokens");
        goto out;
    }
    int32_t n_ctx = (int32_t)(o.ctx ? o.ctx : (hp->n_ctx_train < RUN_DEFAULT_CTX ? hp->n_ctx_train
                                                                              : RUN_DEFAULT_CTX));
    if (n_ctx > hp->n_ctx_train) {
        fprintf(stderr, "shammah run: --ctx %d exceeds the model's context %d; using %d\n", n_ctx,
                hp->n_ctx_train, hp->n_ctx_train);
        n_ctx = hp->n_ctx_train;
    }
    if (n_prompt > n_ctx) {
        st = sh_error_set(SH_ERANGE, "%lld tokens do not fit in the context of %d tokens",
                          (long long)n_prompt, n_ctx);
        goto out;
    }
    what = o.model;
    if (o.lora_path) {
        what = o.lora_path;
        if ((st = lora_load(&adapter, o.lora_path, m, o.lora_scale))) goto out;
        what = o.model;
    }
    if ((st = model_ctx_new(&c, m, n_ctx, o.kv_type, (int)o.threads)) ||
        (st = smp_init(&sampler, hp->n_vocab, &o.sp)) ||
        (st = smp_stop_init(&stop, o.stops, o.n_stops)))
        goto out;
    model_ws_set_lora(model_ctx_ws(c), adapter);
    logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    hist = malloc(sizeof(int32_t) * (size_t)(n_prompt + o.n_predict + 1));
    if (!logits || !hist) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(hist, prompt, sizeof(int32_t) * (size_t)n_prompt);

    double t0 = cli_now_ms();
    if ((st = model_eval(c, prompt, (int32_t)n_prompt, logits))) goto out;
    double t1 = cli_now_ms();
    if (o.dump_logits && (st = write_logits(o.dump_logits, logits, hp->n_vocab))) goto out;

    tok_utf8_stream us = {0};
    char piece[512], released[512 + SMP_STOP_LEN_MAX];
    int64_t n_gen = 0, n_dec = 0;
    int stopped = 0;
    while (n_gen < o.n_predict && !stopped) {
        int32_t id;
        if ((st = smp_sample(sampler, logits, hist, n_prompt + n_gen, &id))) goto out;
        hist[n_prompt + n_gen++] = id;
        if (!o.ignore_eos && tok_is_eog(tk, id)) break;
        int64_t np = tok_stream_push(tk, &us, id, 0, piece, sizeof piece);
        size_t nr = 0;
        stopped = smp_stop_push(&stop, piece, (size_t)np, released, sizeof released, &nr) == 1;
        emit(&o, &tb, released, nr);
        if (stopped || n_gen == o.n_predict) break;
        if (model_ctx_pos(c) >= n_ctx) {
            fprintf(stderr, "\nshammah run: context full (%d tokens)\n", n_ctx);
            break;
        }
        if ((st = model_eval(c, &id, 1, logits))) goto out;
        n_dec++;
    }
    if (!stopped) {
        int64_t np = tok_stream_flush(&us, piece, sizeof piece);
        size_t nr = 0;
        smp_stop_push(&stop, piece, (size_t)np, released, sizeof released, &nr);
        emit(&o, &tb, released, nr);
        nr = smp_stop_flush(&stop, released, sizeof released);
        emit(&o, &tb, released, nr);
    }
    double t2 = cli_now_ms();
    if (o.json)
        print_json(prompt, n_prompt, hist + n_prompt, n_gen, &tb, t1 - t0, n_dec, t2 - t1);
    else
        printf("\n");
    rc = 0;
out:
    if (st) fprintf(stderr, "shammah run: %s: %s\n", what, sh_error_last());
    free(tb.buf);
    free(logits);
    free(hist);
    free(prompt);
    smp_free(sampler);
    model_ctx_free(c);
    lora_free(adapter);
    tok_free(tk);
    model_free(m);
    return rc;
}
