/* cmd_model.c - `shammah model synth`: writes a random-weight model of any supported
 * architecture, shape and tensor type, deterministic by seed, with a toy byte-level BPE
 * vocabulary learned from a small built-in corpus or a vocabulary copied from another GGUF.
 * Tests and benchmarks make their models with it. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "cli/commands.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/tokenizer.h"
#include "train/bpe_train.h"
#include "cli/cliutil.h"

#define TOY_MAX_SYMS 4096
#define TOY_MAX_WORDS 1024
#define TOY_MAX_TOKENS 2048

static const char toy_corpus[] =
    "The quick brown fox jumps over the lazy dog. Once upon a time there was a little\n"
    "model that wanted to learn how to speak. It read the same sentence again and again,\n"
    "and every time it read the sentence it learned a little more about the world.\n"
    "Hello world! This is a test of the tokenizer: numbers 0 1 2 3 4 5 6 7 8 9, punctuation\n"
    "like commas, periods, question marks? and exclamation marks! We want the merges to cover\n"
    "common English words such as the, and, of, to, in, is, that, it, was, for, on, with, as.\n"
    "def main(): print(\"hello\") return 0 if x == 1 else -1  # some code too\n"
    "shammah run -m model.gguf -p prompt; shammah daemon --bind 127.0.0.1:11434\n";

static const char *const toy_specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

/* ---- deterministic random numbers ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) { /* (0, 1) */
    return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_gauss(void) {
    double u = rng_uniform(), v = rng_uniform();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ---- toy vocabulary: byte-level BPE learned from toy_corpus ---- */

typedef struct {
    char *s; /* token text in GPT-2 byte-to-unicode form */
} sym;

typedef struct {
    char **tokens;
    int n_tokens;
    char **merges;
    int n_merges;
    int32_t *types;
} toy_vocab;

static void toy_free(toy_vocab *v) {
    for (int i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->merges);
    free(v->types);
}

static char *cat2(const char *a, const char *b, const char *sep) {
    size_t na = strlen(a), nb = strlen(b), ns = strlen(sep);
    char *r = malloc(na + ns + nb + 1);
    if (!r) return NULL;
    memcpy(r, a, na);
    memcpy(r + na, sep, ns);
    memcpy(r + na + ns, b, nb + 1);
    return r;
}

/* Splits the corpus into words (a letter run or digit or punctuation run, with an optional
 * leading space; whitespace runs alone), each word a sequence of symbols; then merges the most
 * frequent adjacent pair n_merges times (ties: lexicographically smallest). */
static int toy_learn(toy_vocab *v, int n_merges) {
    int st = SH_OK;
    char *words[TOY_MAX_WORDS][64];
    int wlen[TOY_MAX_WORDS];
    int n_words = 0;
    memset(v, 0, sizeof *v);
    v->tokens = calloc(TOY_MAX_TOKENS, sizeof *v->tokens);
    v->types = calloc(TOY_MAX_TOKENS, sizeof *v->types);
    v->merges = calloc((size_t)n_merges + 1, sizeof *v->merges);
    if (!v->tokens || !v->types || !v->merges) return sh_error_set(SH_ENOMEM, "out of memory");
    const unsigned char *p = (const unsigned char *)toy_corpus;
    while (*p && n_words < TOY_MAX_WORDS) {
        const unsigned char *s = p;
        if (*p == ' ' && p[1] && p[1] != ' ' && p[1] != '\n') p++;
        if ((*p | 32) >= 'a' && (*p | 32) <= 'z') {
            while ((*p | 32) >= 'a' && (*p | 32) <= 'z') p++;
        } else if (*p >= '0' && *p <= '9') {
            p++;
        } else if (*p == ' ' || *p == '\n') {
            while (*p == ' ' || *p == '\n') p++;
        } else {
            while (*p && *p != ' ' && *p != '\n' && !(((*p | 32) >= 'a' && (*p | 32) <= 'z')) &&
                   !(*p >= '0' && *p <= '9'))
                p++;
        }
        int n = 0;
        for (const unsigned char *q = s; q < p && n < 64; q++) {
            char u[4] = {0};
            tok_byte_text(*q, u);
            words[n_words][n++] = strdup(u);
        }
        wlen[n_words++] = n;
    }
    for (int b = 0; b < 256; b++) {
        char u[4] = {0};
        tok_byte_text((uint8_t)b, u);
        v->tokens[v->n_tokens] = strdup(u);
        v->types[v->n_tokens++] = 1;
    }
    for (int m = 0; m < n_merges; m++) {
        /* count pairs: few enough that a quadratic scan is fine */
        const char *best_a = NULL, *best_b = NULL;
        int best_n = 0;
        for (int w = 0; w < n_words; w++)
            for (int i = 0; i + 1 < wlen[w]; i++) {
                int cnt = 0;
                for (int w2 = 0; w2 < n_words; w2++)
                    for (int j = 0; j + 1 < wlen[w2]; j++)
                        if (!strcmp(words[w2][j], words[w][i]) &&
                            !strcmp(words[w2][j + 1], words[w][i + 1]))
                            cnt++;
                int better = cnt > best_n;
                if (cnt == best_n && best_a) {
                    int c = strcmp(words[w][i], best_a);
                    better = c < 0 || (c == 0 && strcmp(words[w][i + 1], best_b) < 0);
                }
                if (better) {
                    best_n = cnt;
                    best_a = words[w][i];
                    best_b = words[w][i + 1];
                }
            }
        if (!best_a) break;
        char *a = strdup(best_a), *b = strdup(best_b);
        v->merges[v->n_merges++] = cat2(a, b, " ");
        char *joined = cat2(a, b, "");
        int seen = 0;
        for (int t = 0; t < v->n_tokens; t++) seen |= !strcmp(v->tokens[t], joined);
        if (!seen && v->n_tokens < TOY_MAX_TOKENS - 8) {
            v->tokens[v->n_tokens] = strdup(joined);
            v->types[v->n_tokens++] = 1;
        }
        for (int w = 0; w < n_words; w++)
            for (int i = 0; i + 1 < wlen[w]; i++)
                if (!strcmp(words[w][i], a) && !strcmp(words[w][i + 1], b)) {
                    free(words[w][i]);
                    free(words[w][i + 1]);
                    words[w][i] = strdup(joined);
                    memmove(&words[w][i + 1], &words[w][i + 2], sizeof(char *) * (wlen[w] - i - 2));
                    wlen[w]--;
                }
        free(a);
        free(b);
        free(joined);
    }
    for (size_t s = 0; s < sizeof toy_specials / sizeof *toy_specials; s++) {
        v->tokens[v->n_tokens] = strdup(toy_specials[s]);
        v->types[v->n_tokens++] = 3;
    }
    for (int w = 0; w < n_words; w++)
        for (int i = 0; i < wlen[w]; i++) free(words[w][i]);
    for (int t = 0; t < v->n_tokens; t++)
        if (!v->tokens[t]) st = sh_error_set(SH_ENOMEM, "out of memory");
    return st;
}

/* ---- options ---- */

typedef struct {
    const char *arch, *type, *vocab, *out, *preset;
    int embd, layers, heads, kv_heads, head_dim, ff, ctx, tie, merges;
    float rope_base, eps;
    uint64_t seed;
} synth_opts;

static void synth_usage(FILE *f) {
    fprintf(f,
            "usage: shammah model synth --out FILE [options]\n"
            "  --arch llama|qwen2|qwen3   architecture (default llama)\n"
            "  --type T                   2-D weights: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1\n"
            "                             q4_k q5_k q6_k (default f32)\n"
            "  --vocab toy|copy:F.gguf    toy byte-level BPE, or the tokenizer of another GGUF\n"
            "  --embd N --layers N --heads N --kv-heads N --head-dim N --ff N --ctx N\n"
            "  --rope-base F --eps F --tie --merges N --seed N\n"
            "  --preset qwen2.5-0.5b|qwen2.5-1.5b   real shapes\n");
}

static int parse_opts(int argc, char **argv, synth_opts *o) {
    *o = (synth_opts){.arch = "llama", .type = "f32", .vocab = "toy", .embd = 64, .layers = 2,
                      .heads = 4, .kv_heads = 2, .ff = 128, .ctx = 2048, .merges = 200,
                      .rope_base = 10000.0f, .eps = 1e-5f, .seed = 1234};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--tie")) {
            o->tie = 1;
            takes = 0;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            synth_usage(stdout);
            exit(0);
        } else if (!v) {
            fprintf(stderr, "shammah model synth: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--arch")) o->arch = v;
        else if (!strcmp(a, "--type")) o->type = v;
        else if (!strcmp(a, "--vocab")) o->vocab = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--preset")) o->preset = v;
        else if (!strcmp(a, "--embd")) o->embd = atoi(v);
        else if (!strcmp(a, "--layers")) o->layers = atoi(v);
        else if (!strcmp(a, "--heads")) o->heads = atoi(v);
        else if (!strcmp(a, "--kv-heads")) o->kv_heads = atoi(v);
        else if (!strcmp(a, "--head-dim")) o->head_dim = atoi(v);
        else if (!strcmp(a, "--ff")) o->ff = atoi(v);
        else if (!strcmp(a, "--ctx")) o->ctx = atoi(v);
        else if (!strcmp(a, "--merges")) o->merges = atoi(v);
        else if (!strcmp(a, "--rope-base")) o->rope_base = strtof(v, NULL);
        else if (!strcmp(a, "--eps")) o->eps = strtof(v, NULL);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "shammah model synth: unknown option %s\n", a);
            return 2;
        }
        i += takes;
    }
    if (o->preset) {
        if (!strcmp(o->preset, "qwen2.5-0.5b")) {
            o->arch = "qwen2"; o->embd = 896; o->layers = 24; o->heads = 14; o->kv_heads = 2;
            o->ff = 4864; o->ctx = 32768; o->rope_base = 1000000.0f; o->eps = 1e-6f; o->tie = 1;
        } else if (!strcmp(o->preset, "qwen2.5-1.5b")) {
            o->arch = "qwen2"; o->embd = 1536; o->layers = 28; o->heads = 12; o->kv_heads = 2;
            o->ff = 8960; o->ctx = 32768; o->rope_base = 1000000.0f; o->eps = 1e-6f; o->tie = 1;
        } else {
            fprintf(stderr, "shammah model synth: unknown preset '%s'\n", o->preset);
            return 2;
        }
    }
    if (!o->out) {
        fprintf(stderr, "shammah model synth: --out FILE is required\n");
        return 2;
    }
    if (strcmp(o->arch, "llama") && strcmp(o->arch, "qwen2") && strcmp(o->arch, "qwen3")) {
        fprintf(stderr, "shammah model synth: unknown --arch '%s'\n", o->arch);
        return 2;
    }
    if (o->embd < 1 || o->layers < 1 || o->heads < 1 || o->kv_heads < 1 || o->ff < 1 ||
        o->ctx < 1 || o->heads % o->kv_heads || o->head_dim < 0 ||
        (!o->head_dim && o->embd % o->heads)) {
        fprintf(stderr, "shammah model synth: inconsistent shape (heads must divide embd unless "
                        "--head-dim, kv-heads must divide heads)\n");
        return 2;
    }
    return 0;
}

/* ---- tensors ---- */

typedef struct {
    void **bufs;
    int n, cap;
} buflist;

static void *keep(buflist *b, size_t n) {
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        void **nb = realloc(b->bufs, sizeof(void *) * (size_t)cap);
        if (!nb) return NULL;
        b->bufs = nb;
        b->cap = cap;
    }
    void *p = malloc(n ? n : 1);
    if (p) b->bufs[b->n++] = p;
    return p;
}

/* Adds a tensor of n_out rows of n_in values drawn by gen; 1-D when n_out == 0. */
static int add_tensor(gguf_writer *w, buflist *bl, const char *name, int64_t n_in, int64_t n_out,
                      uint32_t type, float mean, float std) {
    int two_d = n_out > 0;
    int64_t rows = two_d ? n_out : 1;
    uint32_t t = two_d ? type : QT_F32;
    size_t rb = qt_row_bytes(t, n_in);
    if (!rb) return sh_error_set(SH_EINVAL, "%s: row of %" PRId64 " is not a multiple of the %s block",
                                 name, n_in, qt_name(t));
    uint8_t *data = keep(bl, rb * (size_t)rows);
    float *row = malloc(sizeof(float) * (size_t)n_in);
    if (!data || !row) {
        free(row);
        return sh_error_set(SH_ENOMEM, "out of memory");
    }
    int st = SH_OK;
    for (int64_t r = 0; r < rows && !st; r++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = mean + std * rng_gauss();
        st = qt_quantize_row(t, row, data + (size_t)r * rb, n_in);
    }
    free(row);
    if (st) return st;
    int64_t ne[2] = {n_in, rows};
    return gguf_w_tensor(w, name, t, two_d ? 2 : 1, ne, data, rb * (size_t)rows);
}

/* `shammah model synth-lora`: a random adapter in llama.cpp's format for a model (tests and
 * reference checks of adapter loading). A and B both random so it changes the outputs. */
static int synth_lora(int argc, char **argv) {
    const char *mpath = NULL, *out = NULL, *targets = "attn_q,attn_k,attn_v,attn_output";
    int rank = 8;
    float alpha = 16, sd = 0.05f;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "shammah model synth-lora: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m")) mpath = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--targets")) targets = v;
        else if (!strcmp(a, "--rank")) rank = atoi(v);
        else if (!strcmp(a, "--alpha")) alpha = strtof(v, NULL);
        else if (!strcmp(a, "--std")) sd = strtof(v, NULL);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "shammah model synth-lora: unknown option %s\n", a);
            return 2;
        }
    }
    if (!mpath || !out || rank < 1 || rank > 1024) {
        fprintf(stderr, "usage: shammah model synth-lora -m MODEL --out FILE [--rank R] [--alpha A] "
                        "[--targets attn_q,...] [--std S] [--seed N]\n");
        return 2;
    }
    gguf *g = NULL;
    gguf_writer *w = NULL;
    buflist bl = {0};
    int st = gguf_open(&g, mpath), rc = 1;
    char arch[64] = "", nm[160];
    if (!st) st = gguf_get_cstr(g, "general.architecture", arch, sizeof arch);
    if (!st) st = gguf_writer_new(&w);
    if (!st) st = gguf_w_str(w, "general.architecture", arch);
    if (!st) st = gguf_w_str(w, "general.type", "adapter");
    if (!st) st = gguf_w_str(w, "adapter.type", "lora");
    if (!st) st = gguf_w_f32(w, "adapter.lora.alpha", alpha);
    rng_state = seed;
    for (int64_t i = 0; !st && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->n_dims != 2 || t->name.len > 100 || strncmp(t->name.ptr, "blk.", 4)) continue;
        char name[128];
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        const char *dot = strchr(name + 4, '.');
        char tgt[64];
        if (!dot || sscanf(dot + 1, "%63[^.]", tgt) != 1) continue;
        char list[256];
        snprintf(list, sizeof list, ",%s,", targets);
        char key[70];
        snprintf(key, sizeof key, ",%s,", tgt);
        if (!strstr(list, key)) continue;
        snprintf(nm, sizeof nm, "%s.lora_a", name);
        st = add_tensor(w, &bl, nm, t->ne[0], rank, QT_F32, 0, sd);
        snprintf(nm, sizeof nm, "%s.lora_b", name);
        if (!st) st = add_tensor(w, &bl, nm, rank, t->ne[1], QT_F32, 0, sd);
    }
    if (!st) st = gguf_writer_write(w, out);
    if (st) fprintf(stderr, "shammah model synth-lora: %s\n", sh_error_last());
    else rc = 0;
    for (int i = 0; i < bl.n; i++) free(bl.bufs[i]);
    free(bl.bufs);
    gguf_writer_free(w);
    gguf_close(g);
    return rc;
}

/* `shammah model vocab`: learns a byte-level BPE vocabulary (ChatML specials and template)
 * from a corpus and writes it as a vocabulary-only GGUF, for `model synth --vocab copy:`. */
static int model_vocab(int argc, char **argv) {
    const char *corpus = NULL, *out = NULL, *pre = "qwen2";
    long long size = 4096, min_freq = 2;
    int rc = 0, st = SH_OK;
    char *text = NULL;
    gguf_writer *w = NULL;
    bpe_vocab v = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: shammah model vocab --corpus FILE --out VOCAB.gguf [--size N] [--pre NAME]"
                   " [--min-freq N]\n"
                   "  learns a byte-level BPE vocabulary of N tokens (default 4096: 256 bytes, the\n"
                   "  merges, and <|endoftext|> <|im_start|> <|im_end|>) from the corpus, split by the\n"
                   "  pre-tokenizer NAME (default qwen2), with a ChatML chat template\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "shammah model vocab: %s needs a value\n", a);
            return 2;
        }
        const char *val = argv[++i];
        if (!strcmp(a, "--corpus")) corpus = val;
        else if (!strcmp(a, "--out")) out = val;
        else if (!strcmp(a, "--pre")) pre = val;
        else if (!strcmp(a, "--size")) {
            if (cli_int("shammah model vocab", a, val, 260, BPE_MAX_VOCAB, &size)) return 2;
        } else if (!strcmp(a, "--min-freq")) {
            if (cli_int("shammah model vocab", a, val, 1, 1000000000, &min_freq)) return 2;
        } else {
            fprintf(stderr, "shammah model vocab: unknown option %s\n", a);
            return 2;
        }
    }
    if (!corpus || !out) {
        fprintf(stderr, "usage: shammah model vocab --corpus FILE --out VOCAB.gguf [--size N]\n");
        return 2;
    }
    FILE *f = fopen(corpus, "rb");
    if (!f) {
        fprintf(stderr, "shammah model vocab: %s: %s\n", corpus, strerror(errno));
        return 1;
    }
    size_t n = 0, cap = 0;
    for (;;) { /* bounded: BPE over more than 256 MiB of text would take hours anyway */
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *t = cap <= (256u << 20) ? realloc(text, cap) : NULL;
            if (!t) {
                st = sh_error_set(SH_ERANGE, "%s: corpus larger than 256 MiB or out of memory", corpus);
                break;
            }
            text = t;
        }
        size_t got = fread(text + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (!st && ferror(f)) st = sh_error_set(SH_EIO, "%s: read error", corpus);
    fclose(f);
    if (st) goto out;
    bpe_params p;
    bpe_params_default(&p, (int32_t)size);
    p.pre = pre;
    p.min_freq = min_freq;
    if ((st = bpe_learn(&v, text, n, &p)) || (st = gguf_writer_new(&w)) ||
        (st = gguf_w_str(w, "general.architecture", "llama")) ||
        (st = gguf_w_str(w, "general.name", "shammah-vocab")) || (st = bpe_write_kv(w, &v, &p)) ||
        (st = gguf_writer_write(w, out)))
        goto out;
    fprintf(stderr, "%s: %d tokens (%d merges) from %lld words (%lld distinct)\n", out,
            v.n_tokens, v.n_merges, (long long)v.n_words, (long long)v.n_unique);
out:
    if (st) {
        fprintf(stderr, "shammah model vocab: %s\n", sh_error_last());
        rc = 1;
    }
    bpe_vocab_free(&v);
    gguf_writer_free(w);
    free(text);
    return rc;
}

int cmd_model(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "vocab")) return model_vocab(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "synth-lora")) return synth_lora(argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "synth") != 0) {
        fprintf(stderr, "usage: shammah model synth|synth-lora|vocab ...  (--help for options)\n");
        return 2;
    }
    synth_opts o;
    int rc = parse_opts(argc - 1, argv + 1, &o);
    if (rc) return rc;
    int qtype = qt_from_name(o.type);
    if (qtype < 0 || !qt_supported((uint32_t)qtype) || qtype == QT_Q8_K) {
        fprintf(stderr, "shammah model synth: unknown --type '%s'\n", o.type);
        return 2;
    }
    rng_state = o.seed;
    gguf_writer *w = NULL;
    gguf *src = NULL;
    toy_vocab tv = {0};
    buflist bl = {0};
    int st = gguf_writer_new(&w);
    int64_t n_vocab = 0;
    const char *A = o.arch;
    int hd = o.head_dim ? o.head_dim : o.embd / o.heads;
    char key[128];
#define K(s) (snprintf(key, sizeof key, "%s." s, A), key)
    if (!st) st = gguf_w_str(w, "general.architecture", A);
    if (!st) st = gguf_w_str(w, "general.name", "shammah-synth");
    if (!st) st = gguf_w_u32(w, K("context_length"), (uint32_t)o.ctx);
    if (!st) st = gguf_w_u32(w, K("embedding_length"), (uint32_t)o.embd);
    if (!st) st = gguf_w_u32(w, K("block_count"), (uint32_t)o.layers);
    if (!st) st = gguf_w_u32(w, K("feed_forward_length"), (uint32_t)o.ff);
    if (!st) st = gguf_w_u32(w, K("attention.head_count"), (uint32_t)o.heads);
    if (!st) st = gguf_w_u32(w, K("attention.head_count_kv"), (uint32_t)o.kv_heads);
    if (!st) st = gguf_w_f32(w, K("attention.layer_norm_rms_epsilon"), o.eps);
    if (!st) st = gguf_w_f32(w, K("rope.freq_base"), o.rope_base);
    if (!st) st = gguf_w_u32(w, K("rope.dimension_count"), (uint32_t)hd);
    if (!st && o.head_dim) st = gguf_w_u32(w, K("attention.key_length"), (uint32_t)hd);
    if (!st && o.head_dim) st = gguf_w_u32(w, K("attention.value_length"), (uint32_t)hd);
    if (st) goto out;
    if (!strcmp(o.vocab, "toy")) {
        if ((st = toy_learn(&tv, o.merges))) goto out;
        int32_t eot = tv.n_tokens - 3;
        n_vocab = tv.n_tokens;
        if ((st = gguf_w_str(w, "tokenizer.ggml.model", "gpt2")) ||
            (st = gguf_w_str(w, "tokenizer.ggml.pre", "qwen2")) ||
            (st = gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tv.tokens, NULL,
                                 (uint64_t)tv.n_tokens)) ||
            (st = gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, tv.types,
                             (uint64_t)tv.n_tokens)) ||
            (st = gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)tv.merges, NULL,
                                 (uint64_t)tv.n_merges)) ||
            (st = gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)eot)) ||
            (st = gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eot + 2)) ||
            (st = gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)eot)) ||
            (st = gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 0)) ||
            (st = gguf_w_str(w, "tokenizer.chat_template",
                             "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
                             "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                             "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                             "{% endif %}")))
            goto out;
    } else if (!strncmp(o.vocab, "copy:", 5)) {
        if ((st = gguf_open(&src, o.vocab + 5))) {
            fprintf(stderr, "shammah model synth: %s: %s\n", o.vocab + 5, sh_error_last());
            rc = 1;
            goto out;
        }
        for (int64_t i = 0; i < gguf_n_kv(src) && !st; i++) {
            gguf_str k = gguf_kv_key(src, i);
            if (k.len > 10 && !memcmp(k.ptr, "tokenizer.", 10)) st = gguf_w_copy_kv(w, src, i);
        }
        int64_t ti = gguf_find_key(src, "tokenizer.ggml.tokens");
        n_vocab = ti >= 0 ? (int64_t)gguf_arr_n(src, ti) : 0;
        if (!st && n_vocab <= 0) st = sh_error_set(SH_EFORMAT, "%s has no tokenizer.ggml.tokens", o.vocab + 5);
        if (st) goto out;
    } else {
        fprintf(stderr, "shammah model synth: --vocab must be toy or copy:FILE\n");
        rc = 2;
        goto out;
    }
    if ((st = gguf_w_u32(w, K("vocab_size"), (uint32_t)n_vocab))) goto out;
#undef K
    {
        int64_t D = o.embd, F = o.ff, QD = (int64_t)o.heads * hd, KV = (int64_t)o.kv_heads * hd;
        uint32_t T = (uint32_t)qtype;
        float sd = 1.0f / sqrtf((float)D);
        char nm[96];
        if ((st = add_tensor(w, &bl, "token_embd.weight", D, n_vocab, T, 0, o.tie ? sd : 1.0f)) ||
            (st = add_tensor(w, &bl, "output_norm.weight", D, 0, T, 1, 0.1f)))
            goto out;
        if (!o.tie && (st = add_tensor(w, &bl, "output.weight", D, n_vocab, T, 0, sd))) goto out;
        for (int l = 0; l < o.layers && !st; l++) {
#define N(s) (snprintf(nm, sizeof nm, "blk.%d." s, l), nm)
            st = add_tensor(w, &bl, N("attn_norm.weight"), D, 0, T, 1, 0.1f);
            if (!st) st = add_tensor(w, &bl, N("attn_q.weight"), D, QD, T, 0, sd);
            if (!st) st = add_tensor(w, &bl, N("attn_k.weight"), D, KV, T, 0, sd);
            if (!st) st = add_tensor(w, &bl, N("attn_v.weight"), D, KV, T, 0, sd);
            if (!st && !strcmp(A, "qwen2")) {
                st = add_tensor(w, &bl, N("attn_q.bias"), QD, 0, T, 0, 0.1f);
                if (!st) st = add_tensor(w, &bl, N("attn_k.bias"), KV, 0, T, 0, 0.1f);
                if (!st) st = add_tensor(w, &bl, N("attn_v.bias"), KV, 0, T, 0, 0.1f);
            }
            if (!st && !strcmp(A, "qwen3")) {
                st = add_tensor(w, &bl, N("attn_q_norm.weight"), hd, 0, T, 1, 0.1f);
                if (!st) st = add_tensor(w, &bl, N("attn_k_norm.weight"), hd, 0, T, 1, 0.1f);
            }
            if (!st) st = add_tensor(w, &bl, N("attn_output.weight"), QD, D, T, 0, 1.0f / sqrtf((float)QD));
            if (!st) st = add_tensor(w, &bl, N("ffn_norm.weight"), D, 0, T, 1, 0.1f);
            if (!st) st = add_tensor(w, &bl, N("ffn_gate.weight"), D, F, T, 0, sd);
            if (!st) st = add_tensor(w, &bl, N("ffn_up.weight"), D, F, T, 0, sd);
            if (!st) st = add_tensor(w, &bl, N("ffn_down.weight"), F, D, T, 0, 1.0f / sqrtf((float)F));
#undef N
        }
        if (st) goto out;
    }
    st = gguf_writer_write(w, o.out);
out:
    if (st && !rc) {
        fprintf(stderr, "shammah model synth: %s\n", sh_error_last());
        rc = 1;
    }
    for (int i = 0; i < bl.n; i++) free(bl.bufs[i]);
    free(bl.bufs);
    toy_free(&tv);
    gguf_writer_free(w);
    gguf_close(src);
    return rc;
}
