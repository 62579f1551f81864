/* cmd_bench.c - `shammah bench`: prompt-processing and generation throughput, like llama-bench.
 *
 * pp: one context evaluates P prompt tokens (fixed pseudo-random ids) in one call.
 * tg: K sequences each generate N tokens one at a time after a short prompt, all K decoded
 * together in one batched step (model_eval_batch: the weights are read once per step for all
 * of them); the rate is the aggregate tokens per second over all K. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "engine/model.h"
#include "engine/quant.h"

#define BENCH_MAX_PARALLEL 64

static void bench_usage(FILE *f) {
    fprintf(f, "usage: shammah bench -m MODEL [-t THREADS] [-p PROMPT_TOKENS] [-n GEN_TOKENS]\n"
               "                     [--parallel K] [--ctx N] [--kv f16|f32] [--json]\n"
               "defaults: -p 512 -n 128 --parallel 1\n");
}

int cmd_bench(int argc, char **argv) {
    const char *path = NULL;
    long long threads = cli_default_threads(), n_pp = 512, n_tg = 128, par = 1, ctx = 0;
    int json = 0, kv = KV_F16, rc = 1, st = SH_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "shammah bench: %s needs a value (or is unknown; see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m"))
            path = v;
        else if (!strcmp(a, "-t"))
            bad = cli_int("bench", a, v, 1, 256, &threads);
        else if (!strcmp(a, "-p"))
            bad = cli_int("bench", a, v, 0, 1 << 20, &n_pp);
        else if (!strcmp(a, "-n"))
            bad = cli_int("bench", a, v, 0, 1 << 20, &n_tg);
        else if (!strcmp(a, "--parallel"))
            bad = cli_int("bench", a, v, 1, BENCH_MAX_PARALLEL, &par);
        else if (!strcmp(a, "--ctx"))
            bad = cli_int("bench", a, v, 1, 1 << 24, &ctx);
        else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f32"))
                kv = KV_F32;
            else if (strcmp(v, "f16"))
                bad = -1, fprintf(stderr, "shammah bench: --kv f16|f32\n");
        } else {
            fprintf(stderr, "shammah bench: unknown option '%s'\n", a);
            bad = -1;
        }
        if (bad) return 2;
    }
    if (!path) {
        fprintf(stderr, "shammah bench: -m MODEL is required\n");
        return 2;
    }
    char model_path[4096]; /* -m NAME through the registry */
    if (cli_resolve_model("bench", path, model_path, sizeof model_path)) return 1;
    path = model_path;
    model *m = NULL;
    model_ws *ws = NULL;
    model_seq *seqs[BENCH_MAX_PARALLEL] = {0};
    model_batch items[BENCH_MAX_PARALLEL];
    int32_t *toks = NULL;
    float *logits = NULL;
    if ((st = model_load(&m, path))) goto out;
    const model_hparams *hp = model_hp(m);
    int32_t need = (int32_t)(n_pp > n_tg + 8 + par ? n_pp : n_tg + 8 + par);
    int32_t n_ctx = (int32_t)(ctx ? ctx : need);
    if (n_ctx > hp->n_ctx_train || need > n_ctx) {
        st = sh_error_set(SH_ERANGE, "the run needs %d tokens of context; the model has %d", need,
                          hp->n_ctx_train);
        goto out;
    }
    toks = malloc(sizeof(int32_t) * (size_t)need);
    /* every sequence gets its logits, as a server's would: the output matrix is part of
     * each generated token's cost */
    logits = malloc(sizeof(float) * (size_t)hp->n_vocab * (size_t)par);
    if (!toks || !logits) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    uint32_t x = 12345;
    for (int32_t i = 0; i < need; i++) {
        x = x * 1103515245u + 12345u;
        toks[i] = (int32_t)((x >> 8) % (uint32_t)hp->n_vocab);
    }
    double pp_ms = 0, tg_ms = 0;
    if ((st = model_ws_new(&ws, m, (int)threads, n_ctx))) goto out;
    for (int k = 0; k < par; k++)
        if ((st = model_seq_new(&seqs[k], m, n_ctx, kv))) goto out;
    if (n_pp > 0) {
        model_batch b = {seqs[0], toks, (int32_t)n_pp, logits};
        double t0 = cli_now_ms();
        if ((st = model_eval_batch(ws, &b, 1))) goto out;
        pp_ms = cli_now_ms() - t0;
        model_seq_truncate(seqs[0], 0);
    }
    if (n_tg > 0) {
        for (int k = 0; k < par; k++) {
            model_batch b = {seqs[k], toks + k, 8, NULL};
            if ((st = model_eval_batch(ws, &b, 1))) goto out;
        }
        double t0 = cli_now_ms();
        for (int64_t i = 0; i < n_tg; i++) {
            for (int k = 0; k < par; k++)
                items[k] =
                    (model_batch){seqs[k], &toks[8 + i + k], 1, logits + (size_t)k * hp->n_vocab};
            if ((st = model_eval_batch(ws, items, (int)par))) goto out;
        }
        tg_ms = cli_now_ms() - t0;
    }
    double pp_s = pp_ms > 0 ? n_pp * 1000.0 / pp_ms : 0,
           tg_s = tg_ms > 0 ? n_tg * par * 1000.0 / tg_ms : 0;
    if (json) {
        json_t *o = json_pack(
            "{s:f,s:f,s:I,s:I,s:I,s:I,s:s,s:I,s:I}", "pp_per_second", pp_s, "tg_per_second", tg_s,
            "parallel", (json_int_t)par, "threads", (json_int_t)threads, "pp_tokens",
            (json_int_t)n_pp, "tg_tokens", (json_int_t)n_tg, "model", path, "model_bytes",
            (json_int_t)model_weight_bytes(m), "params", (json_int_t)model_n_params(m));
        char *s = json_dumps(o, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("| model | threads | test | tokens/s |\n|---|---|---|---|\n");
        if (n_pp > 0) printf("| %s | %lld | pp%lld | %.2f |\n", path, threads, n_pp, pp_s);
        if (n_tg > 0)
            printf("| %s | %lld | tg%lld x%lld | %.2f |\n", path, threads, n_tg, par, tg_s);
    }
    rc = 0;
out:
    if (st) fprintf(stderr, "shammah bench: %s: %s\n", path, sh_error_last());
    for (int k = 0; k < BENCH_MAX_PARALLEL; k++) model_seq_free(seqs[k]);
    model_ws_free(ws);
    free(toks);
    free(logits);
    model_free(m);
    return rc;
}
