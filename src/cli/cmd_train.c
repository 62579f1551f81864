/* cmd_train.c - `shammah train`: train a LoRA adapter on weighted chat examples (JSONL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/status.h"
#include "cli/cliutil.h"
#include "cli/commands.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "server/local.h"
#include "train/lora_adapter.h"
#include "train/full_train.h"
#include "train/lora_train.h"
#include "train/train_data.h"

typedef struct {
    const char *data, *model, *out, *targets, *init;
    long long rank;
    float alpha;
    lt_params p;
    int quiet;
    /* --full: every weight, written as a new model */
    int full, scratch, f16, lr_given;
    const char *name;
    ft_params fp;
} train_opts;

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: shammah train --data FILE.jsonl -m MODEL.gguf -o ADAPTER.gguf [options]\n"
            "       shammah train --full --data FILE.jsonl -m MODEL.gguf -o NEW_MODEL.gguf [options]\n"
            "  --full              train every weight (F32/F16 llama-style models without biases)\n"
            "                      and write a new model instead of an adapter\n"
            "  --from-scratch      with --full: fresh random weights (the file gives the shape,\n"
            "                      tokenizer and template; e.g. from `shammah model synth`)\n"
            "  --lr-min LR         with --full: final learning rate of the cosine schedule (3e-4)\n"
            "  --warmup N          with --full: linear warmup steps (50)\n"
            "  --f16               with --full: write matrices as F16 (half the size)\n"
            "  --name NAME         with --full: general.name of the written model\n"
            "  --rank R            LoRA rank (default 16)\n"
            "  --alpha A           LoRA alpha; the update is scaled by alpha/rank (default 32)\n"
            "  --targets LIST      adapted weights, comma-separated, from attn_q attn_k attn_v\n"
            "                      attn_output ffn_gate ffn_up ffn_down (default the attn_* four)\n"
            "  --lr LR             AdamW learning rate (default 1e-4)\n"
            "  --weight-decay W    AdamW decoupled weight decay (default 0)\n"
            "  --dropout P         dropout on the LoRA input (default 0)\n"
            "  --epochs E          passes over the data (default 1)\n"
            "  --batch-size B      examples per optimizer step (default 4)\n"
            "  --max-seq-len N     tokens per example, prompt included; longer ones are cut (default 512)\n"
            "  --seed S            initialisation, shuffling and dropout seed (default 42)\n"
            "  --init ADAPTER      continue training an existing adapter (rank/alpha/targets from it)\n"
            "  -t THREADS          worker threads (default: cores, at most 8)\n"
            "  -q                  no progress line\n"
            "\n"
            "Data: one JSON object per line (blank lines and lines starting with # are skipped):\n"
            "  {\"messages\": [{\"role\": \"user\", \"content\": \"...\"},\n"
            "                {\"role\": \"assistant\", \"content\": \"...\"}], \"weight\": 3}\n"
            "  {\"prompt\": \"...\", \"response\": \"...\", \"weight\": 1}\n"
            "Roles: system, user, assistant; the last message is the response to learn. The prompt\n"
            "is rendered with the model's chat template exactly as the daemon renders a chat request\n"
            "(default system prompt included); the loss covers the response and its end-of-turn\n"
            "token. weight: a number > 0, or critical (10), medium (3), good (1); default 1. Each\n"
            "example's loss is multiplied by its weight.\n");
}

static int parse(int argc, char **argv, train_opts *o) {
    memset(o, 0, sizeof *o);
    lt_params_default(&o->p);
    o->rank = 16;
    o->alpha = 32;
    o->p.n_threads = cli_default_threads();
    ft_params_default(&o->fp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            train_usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--full") || !strcmp(a, "--from-scratch") ||
            !strcmp(a, "--f16")) {
            if (!strcmp(a, "-q")) o->quiet = 1;
            else if (!strcmp(a, "--full")) o->full = 1;
            else if (!strcmp(a, "--from-scratch")) o->fp.reinit = 1;
            else o->f16 = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "shammah train: %s needs a value (or is unknown; see --help)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        long long n;
        int bad = 0;
        if (!strcmp(a, "--data")) o->data = v;
        else if (!strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "-o")) o->out = v;
        else if (!strcmp(a, "--targets")) o->targets = v;
        else if (!strcmp(a, "--init")) o->init = v;
        else if (!strcmp(a, "--rank")) bad = cli_int("train", a, v, 1, LORA_ADAPTER_MAX_RANK, &o->rank);
        else if (!strcmp(a, "--alpha")) bad = cli_float("train", a, v, 0, 1e5, &o->alpha);
        else if (!strcmp(a, "--lr")) {
            bad = cli_float("train", a, v, 1e-9, 10, &o->p.lr);
            o->lr_given = 1;
        } else if (!strcmp(a, "--lr-min")) bad = cli_float("train", a, v, 0, 10, &o->fp.lr_min);
        else if (!strcmp(a, "--warmup")) {
            bad = cli_int("train", a, v, 0, 1000000, &n);
            o->fp.warmup_steps = (int)n;
        } else if (!strcmp(a, "--name")) o->name = v;
        else if (!strcmp(a, "--weight-decay")) bad = cli_float("train", a, v, 0, 10, &o->p.weight_decay);
        else if (!strcmp(a, "--dropout")) bad = cli_float("train", a, v, 0, 0.95, &o->p.dropout);
        else if (!strcmp(a, "--epochs")) {
            bad = cli_int("train", a, v, 1, 100000, &n);
            o->p.epochs = (int)n;
        } else if (!strcmp(a, "--batch-size")) {
            bad = cli_int("train", a, v, 1, 65536, &n);
            o->p.batch_size = (int)n;
        } else if (!strcmp(a, "--max-seq-len")) {
            bad = cli_int("train", a, v, 2, 65536, &n);
            o->p.max_seq_len = (int32_t)n;
        } else if (!strcmp(a, "--seed")) {
            bad = cli_int("train", a, v, 0, (1LL << 62), &n);
            o->p.seed = (uint64_t)n;
        } else if (!strcmp(a, "-t")) {
            bad = cli_int("train", a, v, 1, 256, &n);
            o->p.n_threads = (int)n;
        } else {
            fprintf(stderr, "shammah train: unknown option %s (see --help)\n", a);
            return -1;
        }
        if (bad) return -1;
    }
    if (o->fp.reinit && !o->full) {
        fprintf(stderr, "shammah train: --from-scratch needs --full\n");
        return -1;
    }
    /* shared options carry over; the learning rate keeps its full-training default unless given */
    o->fp.epochs = o->p.epochs;
    o->fp.batch_size = o->p.batch_size;
    o->fp.max_seq_len = o->p.max_seq_len;
    o->fp.seed = o->p.seed;
    o->fp.n_threads = o->p.n_threads;
    if (o->lr_given) o->fp.lr = o->p.lr;
    if (o->fp.lr_min > o->fp.lr) o->fp.lr_min = o->fp.lr;
    if (o->p.weight_decay > 0) o->fp.weight_decay = o->p.weight_decay;
    if (!o->data || !o->model || !o->out) {
        fprintf(stderr, "shammah train: --data, -m and -o are required (see --help)\n");
        return -1;
    }
    return 0;
}

static int progress(void *user, const lt_progress *p) {
    const train_opts *o = user;
    if (o->quiet) return 0;
    int eta = (int)(p->eta_s + 0.5);
    fprintf(stderr, "\rstep %d/%d  loss %.4f  %.0f tok/s  ETA %d:%02d:%02d ", p->step, p->steps,
            p->loss, p->tok_per_s, eta / 3600, eta / 60 % 60, eta % 60);
    if (p->step == p->steps) fputc('\n', stderr);
    return 0;
}

/* --full: every weight of the model trained, written as a new model file */
static int train_full(train_opts *o, const td_set *data, const local_model *lm) {
    ft_trainer *t = NULL;
    int st = ft_new(&t, o->model, &o->fp);
    if (st) return st;
    int64_t cut = 0;
    for (int i = 0; i < data->n; i++) cut += data->ex[i].n > o->fp.max_seq_len;
    fprintf(stderr, "shammah train: full, %d examples, %lld tokens (%lld cut to %d), %lld parameters "
                    "(%s), chat template %s\n",
            data->n, (long long)data->n_tokens, (long long)cut, o->fp.max_seq_len,
            (long long)ft_n_params(t), o->fp.reinit ? "from scratch" : "from the file",
            chat_kind_name(lm->tmpl.kind));
    lt_result res;
    if (!(st = ft_train(t, data->ex, data->n, progress, o, &res)) &&
        !(st = ft_save(t, o->out, o->f16, o->name)))
        fprintf(stderr, "shammah train: loss %.4f -> %.4f, %d steps, %.0f tok/s, %.0f s, model %s\n",
                res.loss_before, res.loss_after, res.steps,
                res.seconds > 0 ? (double)res.tokens / res.seconds : 0.0, res.seconds, o->out);
    ft_free(t);
    return st;
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    if (parse(argc, argv, &o)) return 2;
    model *m = NULL;
    tok *tk = NULL;
    lora_adapter *ad = NULL;
    lt_trainer *t = NULL;
    td_set data = {0};
    char *jinja = NULL;
    int rc = 1, st;
    unsigned targets = lora_targets_default();
    if (o.targets && (st = lora_targets_parse(o.targets, &targets))) goto out;
    if ((st = model_load(&m, o.model)) || (st = tok_load(&tk, model_gguf(m)))) goto out;
    gguf_str js;
    if (gguf_get_str(model_gguf(m), "tokenizer.chat_template", &js) == SH_OK &&
        !(jinja = strndup(js.ptr, js.len))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    local_model lm;
    local_model_init(&lm, tk, jinja);
    if ((st = td_load(&data, &lm, o.data))) goto out;
    if (o.full) {
        st = train_full(&o, &data, &lm);
        rc = st ? 1 : 0;
        goto out;
    }
    if (o.init) st = lora_adapter_load(&ad, o.init, m);
    else st = lora_adapter_new(&ad, m, targets, (int)o.rank, o.alpha, o.p.seed);
    if (st || (st = lt_new(&t, m, ad, &o.p))) goto out;
    int64_t cut = 0;
    for (int i = 0; i < data.n; i++) cut += data.ex[i].n > o.p.max_seq_len;
    fprintf(stderr, "shammah train: %d examples, %lld tokens (%lld cut to %d), %lld parameters "
                    "(%s), chat template %s\n",
            data.n, (long long)data.n_tokens, (long long)cut, o.p.max_seq_len,
            (long long)lora_adapter_n_params(ad), model_arch_name(model_hp(m)->arch),
            chat_kind_name(lm.tmpl.kind));
    lt_result res;
    if ((st = lt_train(t, data.ex, data.n, progress, &o, &res))) goto out;
    if ((st = lora_adapter_save(ad, o.out))) goto out;
    fprintf(stderr, "shammah train: loss %.4f -> %.4f, %d steps, %.0f tok/s, adapter %s\n",
            res.loss_before, res.loss_after, res.steps,
            res.seconds > 0 ? (double)res.tokens / res.seconds : 0.0, o.out);
    rc = 0;
out:
    if (rc) fprintf(stderr, "shammah train: %s\n", sh_error_last());
    lt_free(t);
    lora_adapter_free(ad);
    td_set_free(&data);
    free(jinja);
    tok_free(tk);
    model_free(m);
    return rc;
}
