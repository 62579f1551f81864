/* direct.c - the engine in this process behind the client's chat call (see direct.h). The
 * token-to-event steps follow the daemon's scheduler (server/sched.c) for one sequence, so an
 * answer reads the same whichever side produced it. */
#include "cli/direct.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/config.h"
#include "base/paths.h"
#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "engine/chat.h"
#include "engine/jsonc.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "server/local.h"

#define DIRECT_DEFAULT_CTX 32768 /* the daemon's, when the config gives none */

struct direct {
    char path[PATHS_MAX];
    model *m;
    tok *t;
    model_ctx *c; /* one sequence; its cache outlives a call for prefix reuse */
    local_model lm;
    int32_t n_ctx;
    float *logits; /* n_vocab */
    uint64_t id_seed;
};

/* Reads config.toml into *cfg (defaults when missing). SH status; caller frees with
 * config_free() on success. */
static int load_config(sh_config *cfg, char *home, size_t home_cap) {
    char path[PATHS_MAX];
    int st = paths_home(home, home_cap);
    if (!st) st = paths_join(path, sizeof path, home, PATHS_CONFIG);
    if (!st) st = config_load(cfg, path);
    return st;
}

int direct_configured(void) {
    char home[PATHS_MAX];
    sh_config cfg;
    if (load_config(&cfg, home, sizeof home)) return 0;
    int direct = !cfg.client.use_daemon;
    config_free(&cfg);
    return direct;
}

int direct_pick_model(const char *cmd, const char *name, char *out, size_t cap) {
    if (name && *name) return cli_resolve_model(cmd, name, out, cap);
    const char *env = getenv("SHAMMAH_MODEL");
    if (env && *env) return cli_resolve_model(cmd, env, out, cap);
    char home[PATHS_MAX];
    sh_config cfg;
    if (load_config(&cfg, home, sizeof home)) {
        fprintf(stderr, "shammah %s: %s\n", cmd, sh_error_last());
        return -1;
    }
    char conf[PATHS_MAX];
    snprintf(conf, sizeof conf, "%s", cfg.backend.model);
    config_free(&cfg);
    if (*conf) return cli_resolve_model(cmd, conf, out, cap);
    return cli_default_model(cmd, home, out, cap);
}

void direct_free(direct *d) {
    if (!d) return;
    model_ctx_free(d->c);
    tok_free(d->t);
    model_free(d->m);
    free(d->logits);
    free(d);
}

int direct_new(direct **out, const char *path) {
    *out = NULL;
    char home[PATHS_MAX];
    sh_config cfg;
    int st = load_config(&cfg, home, sizeof home);
    if (st) return st;
    int threads = cfg.backend.threads > 0 ? cfg.backend.threads : cli_default_threads();
    int32_t ctx = cfg.backend.ctx > 0 ? cfg.backend.ctx : DIRECT_DEFAULT_CTX;
    int kv = !strcmp(cfg.backend.kv_type, "f32") ? KV_F32 : KV_F16;
    config_free(&cfg);
    char *jinja = NULL;
    direct *d = calloc(1, sizeof *d);
    if (!d) return sh_error_set(SH_ENOMEM, "out of memory");
    if (snprintf(d->path, sizeof d->path, "%s", path) >= (int)sizeof d->path) {
        st = sh_error_set(SH_ERANGE, "model path too long");
        goto out;
    }
    if ((st = model_load(&d->m, path)) || (st = tok_load(&d->t, model_gguf(d->m)))) goto named;
    const model_hparams *hp = model_hp(d->m);
    if (tok_n_vocab(d->t) > hp->n_vocab) {
        st = sh_error_set(SH_EFORMAT, "the tokenizer has %d tokens but the embedding only %d rows",
                          tok_n_vocab(d->t), hp->n_vocab);
        goto named;
    }
    d->n_ctx = ctx < hp->n_ctx_train ? ctx : hp->n_ctx_train;
    if ((st = model_ctx_new(&d->c, d->m, d->n_ctx, kv, threads))) goto named;
    if (!(d->logits = malloc(sizeof(float) * (size_t)hp->n_vocab))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    gguf_str js;
    if (gguf_get_str(model_gguf(d->m), "tokenizer.chat_template", &js) == SH_OK &&
        !(jinja = strndup(js.ptr, js.len))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    local_model_init(&d->lm, d->t, jinja);
    d->id_seed = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)d << 16);
    goto out;
named: { /* the engine's message does not always say which file */
    char why[512];
    snprintf(why, sizeof why, "%s", sh_error_last());
    st = sh_error_set(st, "%s: %s", path, why);
}
out:
    free(jinja);
    if (st) direct_free(d);
    else *out = d;
    return st;
}

const char *direct_model_path(const direct *d) { return d->path; }

void direct_describe(const direct *d, char *out, size_t cap) {
    const char *base = strrchr(d->path, '/');
    base = base ? base + 1 : d->path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf")) n -= 5;
    snprintf(out, cap, "%.*s (%s, %llu parameters, context %d, template %s)", (int)n, base,
             model_arch_name(model_hp(d->m)->arch), (unsigned long long)model_n_params(d->m),
             d->n_ctx, chat_kind_name(d->lm.tmpl.kind));
}

/* ---- one answer ---- */

typedef struct {
    direct *d;
    conv_event_fn fn;
    void *user;
    int stopped; /* fn's non-zero answer: nothing more is sent */
    int n_calls;
    int parse_tools;
    chat_tcp *tcp;
    smp_stop stop;
    int saw_stop;
    tok_utf8_stream us;
} gen;

static int send_ev(gen *g, const conv_event *ev) {
    if (g->stopped) return g->stopped;
    int r = g->fn(g->user, ev);
    if (r) g->stopped = r;
    return r;
}

static int send_text(gen *g, const char *text, size_t len) {
    conv_event ev = {.kind = CONV_EV_TEXT, .text = text, .len = len};
    return len ? send_ev(g, &ev) : 0;
}

/* msg is copied first: sh_error_last()'s buffer may be reused by the consumer */
static int send_error(gen *g, conv_error_kind kind, const char *msg) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", msg ? msg : "error");
    conv_event ev = {.kind = CONV_EV_ERROR, .text = buf, .len = strlen(buf), .error_kind = kind};
    return send_ev(g, &ev);
}

static int on_chat_event(void *user, const chat_event *ce) {
    gen *g = user;
    if (ce->kind == CHAT_EV_TEXT) return send_text(g, ce->text, ce->len);
    direct *d = g->d;
    char id[40];
    d->id_seed = d->id_seed * 6364136223846793005ull + 1442695040888963407ull;
    snprintf(id, sizeof id, "call_%016llx", (unsigned long long)d->id_seed);
    int index = g->n_calls++;
    conv_event ev = {.kind = CONV_EV_TOOL_START, .index = index, .id = id, .name = ce->name};
    if (send_ev(g, &ev)) return g->stopped;
    ev = (conv_event){.kind = CONV_EV_TOOL_DELTA, .index = index, .text = ce->arguments,
                      .len = strlen(ce->arguments)};
    if (send_ev(g, &ev)) return g->stopped;
    ev = (conv_event){.kind = CONV_EV_TOOL_END, .index = index};
    return send_ev(g, &ev);
}

/* generated text after stop strings: to the tool-call parser or straight out */
static int out_text(gen *g, const char *text, size_t len) {
    if (!len) return g->stopped;
    if (g->parse_tools) {
        int st = chat_tcp_feed(g->tcp, text, len, on_chat_event, g);
        return g->stopped ? g->stopped : st;
    }
    return send_text(g, text, len);
}

/* The end of a completed answer: what the matchers held back, then STOP with usage. */
static int finish(gen *g, conv_stop_reason reason, int32_t n_prompt, int64_t n_gen, int32_t n_reused) {
    char buf[512], rel[512 + SMP_STOP_LEN_MAX];
    int st = SH_OK;
    if (!g->saw_stop) {
        int64_t n = tok_stream_flush(&g->us, buf, sizeof buf);
        size_t nr = 0;
        if (n > 0 && smp_stop_push(&g->stop, buf, (size_t)n, rel, sizeof rel, &nr) == 1) {
            reason = CONV_STOP_SEQUENCE;
            g->saw_stop = 1;
        }
        if ((st = out_text(g, rel, nr))) return st;
        if (!g->saw_stop && (st = out_text(g, buf, smp_stop_flush(&g->stop, buf, sizeof buf)))) return st;
    }
    if (g->parse_tools) {
        st = chat_tcp_finish(g->tcp, on_chat_event, g);
        if (g->stopped || st) return g->stopped ? g->stopped : st;
    }
    if (g->n_calls > 0 && reason == CONV_STOP_END) reason = CONV_STOP_TOOL_USE;
    const char *sq = reason == CONV_STOP_SEQUENCE && g->stop.hit >= 0 ? g->stop.str[g->stop.hit] : NULL;
    conv_event ev = {.kind = CONV_EV_STOP,
                     .reason = reason,
                     .text = sq,
                     .len = sq ? strlen(sq) : 0,
                     .stop_sequence = sq,
                     .usage = {.prompt_tokens = n_prompt, .completion_tokens = n_gen, .cached_tokens = n_reused}};
    return send_ev(g, &ev);
}

/* Tokens of the cache that the new prompt starts with; at least the last prompt token is
 * evaluated again, since its logits are needed. */
static int32_t reusable(direct *d, const int32_t *prompt, int32_t n_prompt) {
    int32_t have = model_ctx_pos(d->c), n = 0;
    const int32_t *cached = model_seq_tokens(model_ctx_seq(d->c));
    while (n < have && n < n_prompt - 1 && cached[n] == prompt[n]) n++;
    return n;
}

int direct_stream(direct *d, const conv_request *r, volatile sig_atomic_t *cancel,
                  conv_event_fn fn, void *user) {
    gen g = {.d = d, .fn = fn, .user = user};
    local_req lr;
    smp *sampler = NULL;
    int32_t *hist = NULL;
    jsonc json;
    int st = local_prepare(&d->lm, r, &lr);
    if (st) {
        if (st != SH_ENOMEM) st = send_error(&g, CONV_ERR_INVALID, sh_error_last());
        goto out;
    }
    const int32_t n_prompt = lr.p.n_prompt;
    if (n_prompt < 1) {
        st = send_error(&g, CONV_ERR_INVALID, "empty prompt");
        goto out;
    }
    if (n_prompt >= d->n_ctx) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the prompt has %d tokens, more than the context of %d tokens allows (at least "
                 "one token must be left to generate)",
                 n_prompt, d->n_ctx);
        st = send_error(&g, CONV_ERR_INVALID, msg);
        goto out;
    }
    int64_t max_gen = d->n_ctx - n_prompt;
    if (lr.p.max_tokens > 0 && lr.p.max_tokens < max_gen) max_gen = lr.p.max_tokens;
    if (!(hist = malloc(sizeof(int32_t) * (size_t)(n_prompt + max_gen + 1)))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(hist, lr.p.prompt, sizeof(int32_t) * (size_t)n_prompt);
    if ((st = smp_init(&sampler, model_hp(d->m)->n_vocab, &lr.p.sampling)) ||
        (st = smp_stop_init(&g.stop, lr.p.stop, lr.p.n_stop))) {
        if (st != SH_ENOMEM) st = send_error(&g, CONV_ERR_INVALID, sh_error_last());
        goto out;
    }
    if (lr.p.tools_template) {
        if ((st = chat_tcp_new(&g.tcp, lr.p.tools_template))) goto out;
        g.parse_tools = 1;
    }
    if (lr.p.json_mode) {
        jsonc_init(&json, 1);
        jsonc_set_ws_max(&json, JSONC_WS_GEN);
    }
    int32_t n_reused = reusable(d, hist, n_prompt);
    model_ctx_truncate(d->c, n_reused);
    conv_event ev = {.kind = CONV_EV_START, .usage = {.prompt_tokens = n_prompt, .cached_tokens = n_reused}};
    if ((st = send_ev(&g, &ev))) goto out;
    /* the reply starts with text already in the prompt (a forced tool call): parse, don't emit */
    if (g.parse_tools && lr.p.forced_prefix &&
        (st = out_text(&g, lr.p.forced_prefix, strlen(lr.p.forced_prefix))))
        goto out;
    for (int32_t i = n_reused; i < n_prompt; i += DIRECT_PREFILL_CHUNK) {
        if (cancel && *cancel) {
            st = SH_ECANCELED;
            goto out;
        }
        int32_t n = n_prompt - i < DIRECT_PREFILL_CHUNK ? n_prompt - i : DIRECT_PREFILL_CHUNK;
        if ((st = model_eval(d->c, hist + i, n, i + n == n_prompt ? d->logits : NULL))) {
            st = send_error(&g, CONV_ERR_INTERNAL, sh_error_last());
            goto out;
        }
    }
    int64_t n_gen = 0;
    conv_stop_reason reason = CONV_STOP_END;
    for (;;) {
        if (cancel && *cancel) {
            st = SH_ECANCELED;
            goto out;
        }
        int32_t id;
        if (lr.p.json_mode) {
            jsonc_acceptor acc = {&json, d->t};
            st = smp_sample_constrained(sampler, d->logits, hist, n_prompt + n_gen, jsonc_accept_cb, &acc, &id);
            if (st == SH_ENOTFOUND) { /* nothing can continue the document: end here */
                st = SH_OK;
                break;
            }
            if (!st) jsonc_advance(&json, d->t, id);
        } else {
            st = smp_sample(sampler, d->logits, hist, n_prompt + n_gen, &id);
        }
        if (st) {
            st = send_error(&g, CONV_ERR_INTERNAL, "sampling failed");
            goto out;
        }
        hist[n_prompt + n_gen++] = id;
        if (tok_is_eog(d->t, id)) break;
        char piece[512], rel[512 + SMP_STOP_LEN_MAX];
        int64_t np = tok_stream_push(d->t, &g.us, id, 0, piece, sizeof piece);
        size_t nr = 0;
        int hit = np > 0 && smp_stop_push(&g.stop, piece, (size_t)np, rel, sizeof rel, &nr) == 1;
        if ((st = out_text(&g, rel, nr))) goto out;
        if (hit) {
            g.saw_stop = 1;
            reason = CONV_STOP_SEQUENCE;
            break;
        }
        if (n_gen >= max_gen || model_ctx_pos(d->c) >= d->n_ctx) {
            reason = CONV_STOP_LENGTH;
            break;
        }
        if ((st = model_eval(d->c, &id, 1, d->logits))) {
            st = send_error(&g, CONV_ERR_INTERNAL, sh_error_last());
            goto out;
        }
    }
    st = finish(&g, reason, n_prompt, n_gen, n_reused);
out:
    chat_tcp_free(g.tcp);
    smp_free(sampler);
    free(hist);
    local_req_free(&lr);
    return st;
}
