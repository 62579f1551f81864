/* model.c - loading llama/qwen2/qwen3 GGUF models and the forward pass.
 *
 * Numerics follow llama.cpp's CPU backend where it matters for matching logits: activations
 * are converted to each weight's dot-product type (quant.h), RMSNorm sums squares in double,
 * RoPE angles are built by repeated multiplication, and with an F16 KV cache the query and
 * the attention weights are rounded to F16 as ggml does for F16 x F32 products. */
#include "engine/model.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/status.h"
#include "engine/lora.h"
#include "engine/pool.h"
#include "engine/quant.h"

/* Rows (tokens of any sequences) evaluated together: weights are read once per chunk. */
#define MODEL_UBATCH 64
/* Rows whose logits are computed together at the end of a chunk. */
#define MODEL_LOGIT_ROWS 16
/* Attention: query rows of one sequence handled together, and keys converted per block, so
 * an F16 cache is converted once per block for ATT_ROWS rows x all heads sharing a KV head. */
#define ATT_ROWS 4
#define ATT_KEYS 64
#define MODEL_MAX_LAYERS 512
#define MODEL_MAX_DIM (1 << 20)

typedef struct {
    const float *attn_norm;       /* (n_embd) */
    model_mat wq;                 /* (n_head * head_dim, n_embd) */
    model_mat wk;                 /* (n_head_kv * head_dim, n_embd) */
    model_mat wv;                 /* (n_head_kv * head_dim_v, n_embd) */
    model_mat wo;                 /* (n_embd, n_head * head_dim_v) */
    const float *bq, *bk, *bv;    /* optional biases (qwen2) */
    const float *q_norm, *k_norm; /* (head_dim), qwen3 */
    const float *ffn_norm;        /* (n_embd) */
    model_mat w_gate;             /* (n_ff, n_embd) */
    model_mat w_up;               /* (n_ff, n_embd) */
    model_mat w_down;             /* (n_embd, n_ff) */
} layer;

struct model {
    gguf *g;
    model_hparams hp;
    model_mat tok_embd;    /* (n_vocab, n_embd) */
    model_mat output;      /* (n_vocab, n_embd), tied to tok_embd when absent */
    const float *out_norm; /* (n_embd) */
    layer *layers;
    float *vecs; /* owned F32 copies of every 1-D tensor (norms, biases) */
    uint64_t vecs_used, vecs_cap;
    uint64_t weight_bytes, n_params;
    void *pack_base; /* owned mapping holding the packed matrices (model_mat.packed), or NULL */
    size_t pack_len;
};

static const char *const arch_names[ARCH_COUNT_] = {"llama", "qwen2", "qwen3"};

const char *model_arch_name(model_arch a) {
    return a < ARCH_COUNT_ ? arch_names[a] : "?";
}

/* ---- loading ---- */

static int hp_key(const gguf *g, const char *arch, const char *suffix, int required, int64_t dflt,
                  int64_t lo, int64_t hi, int32_t *out) {
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int st = gguf_get_i64(g, key, &v);
    if (st == SH_ENOTFOUND && !required) {
        v = dflt;
    } else if (st == SH_ENOTFOUND) {
        return sh_error_set(SH_EFORMAT, "missing required key '%s'", key);
    } else if (st) {
        return st;
    }
    if (v < lo || v > hi)
        return sh_error_set(SH_EFORMAT,
                            "'%s' = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", key, v,
                            lo, hi);
    *out = (int32_t)v;
    return SH_OK;
}

static int read_hparams(const gguf *g, model_hparams *hp) {
    char arch[64];
    int st = gguf_get_cstr(g, "general.architecture", arch, sizeof arch);
    if (st == SH_ENOTFOUND)
        return sh_error_set(SH_EFORMAT, "missing required key 'general.architecture'");
    if (st) return st;
    hp->arch = ARCH_COUNT_;
    for (int a = 0; a < ARCH_COUNT_; a++)
        if (!strcmp(arch, arch_names[a])) hp->arch = (model_arch)a;
    /* Mistral-style files are written with arch "llama"; others are genuinely different nets */
    if (hp->arch == ARCH_COUNT_)
        return sh_error_set(SH_EUNSUPPORTED,
                            "unknown architecture '%s' (supported: llama, qwen2, qwen3)", arch);
    if ((st = hp_key(g, arch, "embedding_length", 1, 0, 1, MODEL_MAX_DIM, &hp->n_embd)) ||
        (st = hp_key(g, arch, "block_count", 1, 0, 1, MODEL_MAX_LAYERS, &hp->n_layer)) ||
        (st = hp_key(g, arch, "feed_forward_length", 1, 0, 1, MODEL_MAX_DIM, &hp->n_ff)) ||
        (st = hp_key(g, arch, "attention.head_count", 1, 0, 1, 4096, &hp->n_head)) ||
        (st = hp_key(g, arch, "context_length", 1, 0, 1, 1 << 24, &hp->n_ctx_train)) ||
        (st = hp_key(g, arch, "attention.head_count_kv", 0, hp->n_head, 1, hp->n_head,
                     &hp->n_head_kv)))
        return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return sh_error_set(SH_EFORMAT, "head_count %d is not a multiple of head_count_kv %d",
                            hp->n_head, hp->n_head_kv);
    int32_t hd_default = hp->n_embd / hp->n_head;
    if ((st = hp_key(g, arch, "attention.key_length", 0, hd_default, 2, 65536, &hp->head_dim)) ||
        (st = hp_key(g, arch, "attention.value_length", 0, hp->head_dim, 1, 65536,
                     &hp->head_dim_v)) ||
        (st = hp_key(g, arch, "rope.dimension_count", 0, hp->head_dim, 2, hp->head_dim,
                     &hp->rope_dim)))
        return st;
    if (hp->head_dim % 2 || hp->rope_dim % 2)
        return sh_error_set(SH_EFORMAT, "head and rope dimensions must be even");
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if ((st = gguf_get_f32(g, key, &hp->norm_eps)))
        return st == SH_ENOTFOUND ? sh_error_set(SH_EFORMAT, "missing required key '%s'", key) : st;
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1))
        return sh_error_set(SH_EFORMAT, "'%s' = %g is out of range", key, hp->norm_eps);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    hp->rope_base = 10000.0f;
    st = gguf_get_f32(g, key, &hp->rope_base);
    if (st && st != SH_ENOTFOUND) return st;
    if (!(hp->rope_base > 1))
        return sh_error_set(SH_EFORMAT, "'%s' = %g is out of range", key, hp->rope_base);
    hp->rope_neox = hp->arch != ARCH_LLAMA;
    return SH_OK;
}

static int find(const model *m, const char *name, int required, const gguf_tensor **out) {
    *out = gguf_find_tensor(m->g, name);
    if (!*out && required) return sh_error_set(SH_EFORMAT, "missing tensor '%s'", name);
    return SH_OK;
}

static int shape_error(const gguf_tensor *t, int64_t a, int64_t b) {
    return sh_error_set(SH_EFORMAT,
                        "tensor '%.*s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64
                        "], expected [%" PRId64 ", %" PRId64 "]",
                        (int)t->name.len, t->name.ptr, t->ne[0], t->ne[1], t->ne[2], a, b);
}

static int get_mat(model *m, const char *name, int64_t n_in, int64_t n_out, int required,
                   model_mat *out) {
    const gguf_tensor *t;
    int st = find(m, name, required, &t);
    if (st || !t) return st;
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1)
        return shape_error(t, n_in, n_out);
    if (t->type == QT_Q8_K)
        return sh_error_set(SH_EUNSUPPORTED,
                            "tensor '%s' has type Q8_K, which is for activations only", name);
    out->data = t->data;
    out->type = t->type;
    out->n_in = n_in;
    out->n_out = n_out;
    out->row_bytes = qt_row_bytes(t->type, n_in);
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n_in * (uint64_t)n_out;
    return SH_OK;
}

/* 1-D tensors are tiny: keep an F32 copy so the hot path never converts them. */
static int get_vec(model *m, const char *name, int64_t n, int required, const float **out) {
    const gguf_tensor *t;
    *out = NULL;
    int st = find(m, name, required, &t);
    if (st || !t) return st;
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return shape_error(t, n, 1);
    if (m->vecs_used + (uint64_t)n > m->vecs_cap)
        return sh_error_set(SH_EFORMAT, "tensor '%s' exceeds the vector budget", name);
    float *dst = m->vecs + m->vecs_used;
    qt_dequant_row(t->type, t->data, dst, n);
    m->vecs_used += (uint64_t)n;
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n;
    *out = dst;
    return SH_OK;
}

static int load_tensors(model *m) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    int64_t QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t VD = (int64_t)hp->n_head_kv * hp->head_dim_v, OD = (int64_t)hp->n_head * hp->head_dim_v;
    /* Only 1-D tensors are copied: size the copy by what the file holds, not by
     * hyper-parameters no tensor has confirmed yet (a hostile header could ask for TBs). */
    m->vecs_cap = 0;
    for (int64_t i = 0; i < gguf_n_tensors(m->g); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->g, i);
        if (t->ne[1] == 1 && t->ne[2] == 1 && t->ne[3] == 1) m->vecs_cap += (uint64_t)t->ne[0];
    }
    m->vecs = malloc((m->vecs_cap ? m->vecs_cap : 1) * sizeof *m->vecs);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->vecs || !m->layers) return sh_error_set(SH_ENOMEM, "out of memory");
    int st;
    if ((st = get_mat(m, "token_embd.weight", E, V, 1, &m->tok_embd)) ||
        (st = get_vec(m, "output_norm.weight", E, 1, &m->out_norm)) ||
        (st = get_mat(m, "output.weight", E, V, 0, &m->output)))
        return st;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    char name[96];
#define NM(s) (snprintf(name, sizeof name, "blk.%d." s, l), name)
    for (int l = 0; l < hp->n_layer; l++) {
        layer *L = &m->layers[l];
        if ((st = get_vec(m, NM("attn_norm.weight"), E, 1, &L->attn_norm)) ||
            (st = get_mat(m, NM("attn_q.weight"), E, QD, 1, &L->wq)) ||
            (st = get_mat(m, NM("attn_k.weight"), E, KD, 1, &L->wk)) ||
            (st = get_mat(m, NM("attn_v.weight"), E, VD, 1, &L->wv)) ||
            (st = get_mat(m, NM("attn_output.weight"), OD, E, 1, &L->wo)) ||
            (st = get_vec(m, NM("attn_q.bias"), QD, 0, &L->bq)) ||
            (st = get_vec(m, NM("attn_k.bias"), KD, 0, &L->bk)) ||
            (st = get_vec(m, NM("attn_v.bias"), VD, 0, &L->bv)) ||
            (st = get_vec(m, NM("attn_q_norm.weight"), hp->head_dim, hp->arch == ARCH_QWEN3,
                          &L->q_norm)) ||
            (st = get_vec(m, NM("attn_k_norm.weight"), hp->head_dim, hp->arch == ARCH_QWEN3,
                          &L->k_norm)) ||
            (st = get_vec(m, NM("ffn_norm.weight"), E, 1, &L->ffn_norm)) ||
            (st = get_mat(m, NM("ffn_gate.weight"), E, F, 1, &L->w_gate)) ||
            (st = get_mat(m, NM("ffn_up.weight"), E, F, 1, &L->w_up)) ||
            (st = get_mat(m, NM("ffn_down.weight"), F, E, 1, &L->w_down)))
            return st;
    }
#undef NM
    return SH_OK;
}

/* All matrices a pointer walks only through qt_matmul, in quant.h's packed layout when the
 * level in use has one (Q8_0, Q4_0 at avx512): batched decode steps and prompts then read
 * each group of 16 rows as one stream and never repack them. The mapped pages the packed
 * copy replaces are dropped from this process (the page cache keeps them), so the resident
 * size stays about the file's (the packed layout has the same bytes).
 * SHAMMAH_PACK=0 keeps the mapped layout (for comparisons).
 * packable(): the matrices a packed copy is made for (layers, then the output). */
static int packable(model *m, model_mat **out, int max) {
    int n = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        layer *L = &m->layers[l];
        model_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0] && n < max; i++) out[n++] = mats[i];
    }
    if (n < max) out[n++] = &m->output;
    return n;
}

#define PACK_ALIGN ((size_t)2 << 20) /* transparent huge pages: fewer faults and TLB misses */
#define PACK_THREADS 8

typedef struct {
    model_mat **mats;
    uint8_t **dst;
    int n, k, step;
} pack_job;

/* Packs every step-th matrix from k, then drops the mapped pages it replaces (the page cache
 * keeps them; for tied embeddings a lookup faults its row back). */
static void *pack_some(void *arg) {
    pack_job *j = arg;
    long pg = sysconf(_SC_PAGESIZE);
    for (int i = j->k; i < j->n; i += j->step) {
        model_mat *w = j->mats[i];
        if (!j->dst[i]) continue;
        qt_pack(w->type, w->data, w->n_in, w->n_out, j->dst[i]);
        uintptr_t a = (uintptr_t)w->data, e = a + (uintptr_t)(w->row_bytes * (uint64_t)w->n_out);
        uintptr_t a2 = (a + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
        uintptr_t e2 = e / (uintptr_t)pg * (uintptr_t)pg;
        if (pg > 0 && e2 > a2) madvise((void *)a2, e2 - a2, MADV_DONTNEED);
    }
    return NULL;
}

static int pack_all(model *m) {
    const char *env = getenv("SHAMMAH_PACK");
    if (env && !strcmp(env, "0")) return SH_OK;
    int max = m->hp.n_layer * 7 + 1, n, st = SH_OK;
    model_mat **mats = malloc(sizeof *mats * (size_t)max);
    uint8_t **dst = calloc((size_t)max, sizeof *dst);
    size_t *off = malloc(sizeof *off * (size_t)max); /* in the mapping; SIZE_MAX: not packed */
    if (!mats || !dst || !off) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    n = packable(m, mats, max);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = qt_pack_bytes(mats[i]->type, mats[i]->n_in, mats[i]->n_out);
        off[i] = nb ? total : SIZE_MAX;
        total += (nb + 63) / 64 * 64;
    }
    if (!total) goto out;
    size_t len = total + PACK_ALIGN;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        st = sh_error_set(SH_ENOMEM, "cannot map %zu bytes for the packed weights", len);
        goto out;
    }
    m->pack_base = base;
    m->pack_len = len;
    uint8_t *p = (uint8_t *)(((uintptr_t)base + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN);
    madvise(p, total, MADV_HUGEPAGE);
    for (int i = 0; i < n; i++)
        if (off[i] != SIZE_MAX) dst[i] = p + off[i];
    /* one thread per core (at most PACK_THREADS): packing is a copy, memory-bound */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = cores < 1 ? 1 : cores > PACK_THREADS ? PACK_THREADS : (int)cores;
    pthread_t th[PACK_THREADS];
    pack_job jobs[PACK_THREADS];
    int started = 0;
    for (int k = 0; k < nt; k++) {
        jobs[k] = (pack_job){mats, dst, n, k, nt};
        if (k > 0 && pthread_create(&th[k], NULL, pack_some, &jobs[k]) == 0) {
            started |= 1 << k;
            continue;
        }
        if (k > 0) { /* no thread: this one does that share too */
            pack_some(&jobs[k]);
        }
    }
    pack_some(&jobs[0]);
    for (int k = 1; k < nt; k++)
        if (started & (1 << k)) pthread_join(th[k], NULL);
    for (int i = 0; i < n; i++) mats[i]->packed = dst[i];
out:
    free(mats);
    free(dst);
    free(off);
    return st;
}

static void unpack_all(model *m) {
    if (m->pack_base) munmap(m->pack_base, m->pack_len);
    m->pack_base = NULL;
}

int model_load(model **out, const char *path) {
    int st;
    model *m = calloc(1, sizeof *m);
    *out = NULL;
    if (!m) return sh_error_set(SH_ENOMEM, "out of memory");
    if ((st = gguf_open(&m->g, path))) goto out;
    if ((st = read_hparams(m->g, &m->hp))) goto out;
    const gguf_tensor *te = gguf_find_tensor(m->g, "token_embd.weight");
    if (!te) {
        st = sh_error_set(SH_EFORMAT, "missing tensor 'token_embd.weight'");
        goto out;
    }
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24)) {
        st = sh_error_set(SH_EFORMAT, "token_embd.weight has %" PRId64 " rows", te->ne[1]);
        goto out;
    }
    m->hp.n_vocab = (int32_t)te->ne[1];
    if ((st = load_tensors(m))) goto out;
    st = pack_all(m);
out:
    if (st) {
        model_free(m);
        return st;
    }
    *out = m;
    return SH_OK;
}

void model_free(model *m) {
    if (!m) return;
    unpack_all(m);
    free(m->layers);
    free(m->vecs);
    gguf_close(m->g);
    free(m);
}

const model_hparams *model_hp(const model *m) {
    return &m->hp;
}

const gguf *model_gguf(const model *m) {
    return m->g;
}

uint64_t model_weight_bytes(const model *m) {
    return m->weight_bytes;
}

uint64_t model_n_params(const model *m) {
    return m->n_params;
}

/* ---- workspaces and sequences ---- */

struct model_seq {
    const model *m;
    int32_t n_ctx, pos;
    int kv_type;
    size_t kv_elem;   /* bytes per cached element */
    uint8_t *k_cache; /* (n_layer, n_ctx, n_head_kv * head_dim) */
    uint8_t *v_cache; /* (n_layer, n_ctx, n_head_kv * head_dim_v) */
    int32_t *tokens;  /* (n_ctx) the tokens whose keys and values are cached */
};

struct model_ws {
    const model *m;
    pool *pool;
    int n_threads;
    int32_t max_ctx;
    float *x;        /* (UBATCH, n_embd) residual stream */
    float *xb;       /* (UBATCH, n_embd) normed input of a sub-layer */
    float *xb2;      /* (UBATCH, n_embd) sub-layer output */
    float *q;        /* (UBATCH, n_head * head_dim) */
    float *k;        /* (UBATCH, n_head_kv * head_dim) */
    float *v;        /* (UBATCH, n_head_kv * head_dim_v) */
    float *att_out;  /* (UBATCH, n_head * head_dim_v) */
    float *hb, *hb2; /* (UBATCH, n_ff) */
    float *scores;   /* (n_threads, ATT_ROWS * group, max_ctx) attention weights */
    float *tmp;      /* (n_threads, ATT_ROWS * group * head_dim + ATT_KEYS * hmax) queries and
                        a block of keys or values in F32 */
    size_t tmp_per_thread;
    /* attention tasks of the current chunk: (kv head, first row, rows) of one sequence */
    int32_t *att_tasks; /* (UBATCH * n_head_kv, 3) */
    uint8_t *act;       /* (UBATCH, act_stride) activations in the dot-product type */
    size_t act_stride;
    float *rope_cos, *rope_sin; /* (UBATCH, rope_dim / 2) */
    float *logits;              /* (LOGIT_ROWS, n_vocab) */
    const lora *adapter;        /* borrowed; NULL: none */
    float *lora_t;              /* (UBATCH, max rank) A x */
    /* per row of the current chunk */
    model_seq *row_seq[MODEL_UBATCH];
    int32_t row_pos[MODEL_UBATCH];
    float *row_logits[MODEL_UBATCH];
};

struct model_ctx {
    model_ws *ws;
    model_seq *seq;
};

static void *xcalloc(size_t n, size_t size, int *st) {
    if (*st) return NULL;
    void *p = (n && size <= SIZE_MAX / n) ? calloc(n, size) : NULL;
    if (!p) *st = sh_error_set(SH_ENOMEM, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

int model_seq_new(model_seq **out, const model *m, int32_t n_ctx, int kv_type) {
    const model_hparams *hp = &m->hp;
    int st = SH_OK;
    *out = NULL;
    if (n_ctx < 1) return sh_error_set(SH_EINVAL, "context size must be >= 1");
    if (kv_type != KV_F32 && kv_type != KV_F16) return sh_error_set(SH_EINVAL, "bad KV type");
    model_seq *s = calloc(1, sizeof *s);
    if (!s) return sh_error_set(SH_ENOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv_type = kv_type;
    s->kv_elem = kv_type == KV_F16 ? 2 : 4;
    size_t cells = (size_t)hp->n_layer * (size_t)n_ctx;
    s->k_cache = xcalloc(cells, (size_t)hp->n_head_kv * hp->head_dim * s->kv_elem, &st);
    s->v_cache = xcalloc(cells, (size_t)hp->n_head_kv * hp->head_dim_v * s->kv_elem, &st);
    s->tokens = xcalloc((size_t)n_ctx, sizeof(int32_t), &st);
    if (st) {
        model_seq_free(s);
        return st;
    }
    *out = s;
    return SH_OK;
}

void model_seq_free(model_seq *s) {
    if (!s) return;
    free(s->k_cache);
    free(s->v_cache);
    free(s->tokens);
    free(s);
}

int32_t model_seq_n_ctx(const model_seq *s) {
    return s->n_ctx;
}

int32_t model_seq_pos(const model_seq *s) {
    return s->pos;
}

const int32_t *model_seq_tokens(const model_seq *s) {
    return s->tokens;
}

void model_seq_truncate(model_seq *s, int32_t pos) {
    if (pos >= 0 && pos < s->pos) s->pos = pos;
}

uint64_t model_seq_bytes(const model *m, int32_t n_ctx, int kv_type) {
    const model_hparams *hp = &m->hp;
    uint64_t per = (uint64_t)hp->n_layer *
                   ((uint64_t)hp->n_head_kv * (hp->head_dim + hp->head_dim_v)) *
                   (kv_type == KV_F16 ? 2 : 4);
    return per * (uint64_t)n_ctx + (uint64_t)n_ctx * sizeof(int32_t);
}

int model_ws_new(model_ws **out, const model *m, int n_threads, int32_t max_ctx) {
    const model_hparams *hp = &m->hp;
    int st = SH_OK;
    *out = NULL;
    if (max_ctx < 1) return sh_error_set(SH_EINVAL, "context size must be >= 1");
    model_ws *w = calloc(1, sizeof *w);
    if (!w) return sh_error_set(SH_ENOMEM, "out of memory");
    w->m = m;
    w->max_ctx = max_ctx;
    if ((st = pool_new(&w->pool, n_threads))) goto out;
    w->n_threads = n_threads;
    size_t E = hp->n_embd, KD = (size_t)hp->n_head_kv * hp->head_dim;
    size_t VD = (size_t)hp->n_head_kv * hp->head_dim_v, QD = (size_t)hp->n_head * hp->head_dim;
    size_t OD = (size_t)hp->n_head * hp->head_dim_v, B = MODEL_UBATCH;
    size_t hmax = hp->head_dim > hp->head_dim_v ? hp->head_dim : hp->head_dim_v;
    w->x = xcalloc(B * E, sizeof(float), &st);
    w->xb = xcalloc(B * E, sizeof(float), &st);
    w->xb2 = xcalloc(B * E, sizeof(float), &st);
    w->q = xcalloc(B * QD, sizeof(float), &st);
    w->k = xcalloc(B * KD, sizeof(float), &st);
    w->v = xcalloc(B * VD, sizeof(float), &st);
    w->att_out = xcalloc(B * OD, sizeof(float), &st);
    w->hb = xcalloc(B * (size_t)hp->n_ff, sizeof(float), &st);
    w->hb2 = xcalloc(B * (size_t)hp->n_ff, sizeof(float), &st);
    size_t group = (size_t)(hp->n_head / hp->n_head_kv);
    w->scores = xcalloc((size_t)n_threads * ATT_ROWS * group, (size_t)max_ctx * sizeof(float), &st);
    w->tmp_per_thread = ATT_ROWS * group * (size_t)hp->head_dim + ATT_KEYS * hmax;
    w->tmp = xcalloc((size_t)n_threads * w->tmp_per_thread, sizeof(float), &st);
    w->att_tasks = xcalloc(B * (size_t)hp->n_head_kv * 3, sizeof(int32_t), &st);
    w->rope_cos = xcalloc(B * (size_t)hp->rope_dim / 2, sizeof(float), &st);
    w->rope_sin = xcalloc(B * (size_t)hp->rope_dim / 2, sizeof(float), &st);
    w->logits = xcalloc((size_t)MODEL_LOGIT_ROWS * (size_t)hp->n_vocab, sizeof(float), &st);
    size_t max_in = E;
    if ((size_t)hp->n_ff > max_in) max_in = hp->n_ff;
    if (OD > max_in) max_in = OD;
    /* F32 is the widest dot-product type: 4 bytes an element */
    w->act_stride = (max_in * 4 + 63) / 64 * 64;
    w->act = xcalloc(B, w->act_stride, &st);
out:
    if (st) {
        model_ws_free(w);
        return st;
    }
    *out = w;
    return SH_OK;
}

void model_ws_free(model_ws *w) {
    if (!w) return;
    pool_free(w->pool);
    free(w->x);
    free(w->xb);
    free(w->xb2);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->att_out);
    free(w->hb);
    free(w->hb2);
    free(w->scores);
    free(w->tmp);
    free(w->att_tasks);
    free(w->rope_cos);
    free(w->rope_sin);
    free(w->logits);
    free(w->lora_t);
    free(w->act);
    free(w);
}

/* ---- kernels ---- */

typedef struct {
    const model_mat *w;
    const uint8_t *act;
    size_t act_stride;
    float *y;
    int64_t y_stride;
    int32_t n_tok;
} matmul_job;

static void matmul_rows(void *arg, int64_t r0, int64_t r1, int ith) {
    const matmul_job *j = arg;
    qt_matmul(j->w->type, j->w->data, j->w->n_in, r0, r1, j->act, j->act_stride, j->n_tok, j->y,
              j->y_stride);
}

static void matmul_rows_packed(void *arg, int64_t r0, int64_t r1, int ith) {
    const matmul_job *j = arg;
    qt_matmul_packed(j->w->type, j->w->packed, j->w->n_in, r0, r1, j->act, j->act_stride, j->n_tok,
                     j->y, j->y_stride);
}

/* y[t][0..n_out) = W x[t] for t < n_tok; x rows are n_in apart, y rows y_stride apart. */
static void matmul(model_ws *w, const model_mat *m, const float *x, float *y, int64_t y_stride,
                   int32_t n_tok) {
    for (int32_t t = 0; t < n_tok; t++)
        qt_prep_act(m->type, x + (size_t)t * m->n_in, w->act + (size_t)t * w->act_stride, m->n_in);
    matmul_job j = {m, w->act, w->act_stride, y, y_stride, n_tok};
    pool_run(w->pool, m->packed ? matmul_rows_packed : matmul_rows, &j, m->n_out, 16);
}

/* matmul plus the adapter's s * B (A x) for this layer's target, when one is set */
static void matmul_l(model_ws *w, const model_mat *m, int layer, int target, const float *x,
                     float *y, int64_t y_stride, int32_t n_tok) {
    matmul(w, m, x, y, y_stride, n_tok);
    lora_pair p = lora_get(w->adapter, layer, target);
    if (!p.a || !w->lora_t) return;
    for (int32_t t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * m->n_in;
        float *at = w->lora_t + (size_t)t * p.rank, *yt = y + (size_t)t * y_stride;
        for (int32_t r = 0; r < p.rank; r++)
            at[r] = qt_dot_f32(p.a + (size_t)r * m->n_in, xt, m->n_in);
        for (int64_t o = 0; o < m->n_out; o++)
            yt[o] += p.s * qt_dot_f32(p.b + (size_t)o * p.rank, at, p.rank);
    }
}

void model_ws_set_lora(model_ws *w, const lora *l) {
    int32_t rank = 0;
    for (int layer = 0; l && layer < w->m->hp.n_layer; layer++)
        for (int t = 0; t < LORA_N_TARGETS; t++)
            if (lora_get(l, layer, t).rank > rank) rank = lora_get(l, layer, t).rank;
    free(w->lora_t);
    w->lora_t = rank ? calloc((size_t)MODEL_UBATCH * (size_t)rank, sizeof(float)) : NULL;
    w->adapter = w->lora_t ? l : NULL;
}

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void add_bias(float *y, const float *b, int64_t n, int32_t n_tok) {
    if (!b) return;
    for (int32_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += b[i];
}

static void rope_tables(model_ws *w, int32_t n_rows) {
    const model_hparams *hp = &w->m->hp;
    int half = hp->rope_dim / 2;
    float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->rope_dim);
    for (int32_t t = 0; t < n_rows; t++) {
        float theta = (float)w->row_pos[t];
        for (int i = 0; i < half; i++) {
            w->rope_cos[t * half + i] = cosf(theta);
            w->rope_sin[t * half + i] = sinf(theta);
            theta *= theta_scale;
        }
    }
}

/* Rotates the leading rope_dim dims of each of n_heads heads of vector v. */
static void rope(const model_ws *w, float *v, int n_heads, int head_dim, int32_t t) {
    const model_hparams *hp = &w->m->hp;
    int half = hp->rope_dim / 2;
    const float *cs = w->rope_cos + t * half, *sn = w->rope_sin + t * half;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = hp->rope_neox ? i : 2 * i, b = hp->rope_neox ? i + half : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * cs[i] - x1 * sn[i];
            x[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

static float round_f16(float f) {
    return qt_f16_to_f32(qt_f32_to_f16(f));
}

/* n_rows cached rows of n elements, row_stride elements apart, as F32: the cache itself
 * when it is F32 (returned with stride row_stride), else converted into tmp (stride n). */
static const float *kv_block(const model_seq *s, const uint8_t *base, int64_t n, int64_t n_rows,
                             size_t row_stride, float *tmp, size_t *stride) {
    if (s->kv_type == KV_F32) {
        *stride = row_stride;
        return (const float *)base;
    }
    for (int64_t r = 0; r < n_rows; r++)
        qt_f16_to_f32_row((const uint16_t *)base + (size_t)r * row_stride, tmp + (size_t)r * n, n);
    *stride = (size_t)n;
    return tmp;
}

static void kv_put(const model_seq *s, uint8_t *base, const float *src, size_t n) {
    if (s->kv_type == KV_F16)
        qt_f32_to_f16_row(src, (uint16_t *)base, (int64_t)n);
    else
        memcpy(base, src, n * sizeof(float));
}

typedef struct {
    model_ws *w;
    int layer;
} attn_job;

/* One task: rows [r0, r0 + nr) of one sequence (consecutive positions) against KV head kvh,
 * for the `group` query heads that share it. Scores are computed block of keys by block of
 * keys, then normalised per (row, head) exactly as before, then values are accumulated block
 * by block: each cached block is converted once for the whole task. */
static void attn_task(model_ws *w, int layer, int kvh, int32_t r0, int32_t nr, int ith) {
    const model_hparams *hp = &w->m->hp;
    int hd = hp->head_dim, hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
    size_t KD = (size_t)hp->n_head_kv * hd, VD = (size_t)hp->n_head_kv * hdv;
    const model_seq *s = w->row_seq[r0];
    size_t es = s->kv_elem;
    const uint8_t *kc = s->k_cache + (size_t)layer * s->n_ctx * KD * es + (size_t)kvh * hd * es;
    const uint8_t *vc = s->v_cache + (size_t)layer * s->n_ctx * VD * es + (size_t)kvh * hdv * es;
    float *sc = w->scores + (size_t)ith * ATT_ROWS * group * w->max_ctx;
    float *qv = w->tmp + (size_t)ith * w->tmp_per_thread;
    float *blk = qv + (size_t)ATT_ROWS * group * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int32_t n_keys_max = w->row_pos[r0 + nr - 1] + 1;

    /* queries; with an F16 cache ggml rounds them to F16 for the F16 x F32 product */
    for (int32_t r = 0; r < nr; r++)
        for (int g = 0; g < group; g++) {
            const float *q =
                w->q + (size_t)(r0 + r) * hp->n_head * hd + (size_t)(kvh * group + g) * hd;
            float *d = qv + ((size_t)r * group + g) * hd;
            for (int i = 0; i < hd; i++) d[i] = s->kv_type == KV_F16 ? round_f16(q[i]) : q[i];
        }
    for (int32_t p0 = 0; p0 < n_keys_max; p0 += ATT_KEYS) {
        int32_t np = n_keys_max - p0 < ATT_KEYS ? n_keys_max - p0 : ATT_KEYS;
        size_t stride;
        const float *kb = kv_block(s, kc + (size_t)p0 * KD * es, hd, np, KD, blk, &stride);
        for (int32_t r = 0; r < nr; r++) {
            int32_t n_keys = w->row_pos[r0 + r] + 1;
            int32_t lim = n_keys - p0 < np ? n_keys - p0 : np;
            for (int g = 0; g < group; g++) {
                const float *q = qv + ((size_t)r * group + g) * hd;
                float *row = sc + ((size_t)r * group + g) * w->max_ctx + p0;
                qt_dot_f32_rows(q, kb, stride, lim, hd, scale, row);
            }
        }
    }
    for (int32_t r = 0; r < nr; r++) {
        int32_t n_keys = w->row_pos[r0 + r] + 1;
        for (int g = 0; g < group; g++) {
            float *row = sc + ((size_t)r * group + g) * w->max_ctx;
            qt_softmax_row(row, n_keys);
            if (s->kv_type == KV_F16) qt_round_f16_row(row, n_keys); /* ggml: F16 V x F32 weights */
            float *o =
                w->att_out + (size_t)(r0 + r) * hp->n_head * hdv + (size_t)(kvh * group + g) * hdv;
            memset(o, 0, sizeof(float) * (size_t)hdv);
        }
    }
    for (int32_t p0 = 0; p0 < n_keys_max; p0 += ATT_KEYS) {
        int32_t np = n_keys_max - p0 < ATT_KEYS ? n_keys_max - p0 : ATT_KEYS;
        size_t stride;
        const float *vb = kv_block(s, vc + (size_t)p0 * VD * es, hdv, np, VD, blk, &stride);
        for (int32_t r = 0; r < nr; r++) {
            int32_t n_keys = w->row_pos[r0 + r] + 1;
            int32_t lim = n_keys - p0 < np ? n_keys - p0 : np;
            for (int g = 0; g < group; g++) {
                const float *row = sc + ((size_t)r * group + g) * w->max_ctx + p0;
                float *o = w->att_out + (size_t)(r0 + r) * hp->n_head * hdv +
                           (size_t)(kvh * group + g) * hdv;
                qt_axpy_f32_rows(o, row, vb, stride, lim, hdv);
            }
        }
    }
}

static void attn_tasks(void *arg, int64_t i0, int64_t i1, int ith) {
    const attn_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        const int32_t *t = j->w->att_tasks + 3 * i;
        attn_task(j->w, j->layer, t[0], t[1], t[2], ith);
    }
}

/* Splits the chunk's rows into tasks: runs of consecutive rows of one sequence, at most
 * ATT_ROWS long, times KV heads. Returns the number of tasks. */
static int64_t plan_attention(model_ws *w, int32_t n_rows) {
    const model_hparams *hp = &w->m->hp;
    int64_t n = 0;
    for (int32_t r = 0; r < n_rows;) {
        int32_t e = r + 1;
        while (e < n_rows && e - r < ATT_ROWS && w->row_seq[e] == w->row_seq[r] &&
               w->row_pos[e] == w->row_pos[e - 1] + 1)
            e++;
        for (int h = 0; h < hp->n_head_kv; h++) {
            w->att_tasks[3 * n] = h;
            w->att_tasks[3 * n + 1] = r;
            w->att_tasks[3 * n + 2] = e - r;
            n++;
        }
        r = e;
    }
    return n;
}

/* Evaluates n_rows rows whose token, sequence, position and logits target are set. */
static void eval_rows(model_ws *w, const int32_t *tokens, int32_t n_rows) {
    const model *m = w->m;
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, F = hp->n_ff, hd = hp->head_dim;
    int64_t QD = (int64_t)hp->n_head * hd, KD = (int64_t)hp->n_head_kv * hd;
    int64_t VD = (int64_t)hp->n_head_kv * hp->head_dim_v;

    for (int32_t t = 0; t < n_rows; t++)
        qt_dequant_row(m->tok_embd.type,
                       (const uint8_t *)m->tok_embd.data +
                           (size_t)tokens[t] * m->tok_embd.row_bytes,
                       w->x + t * E, E);
    rope_tables(w, n_rows);
    int64_t n_tasks = plan_attention(w, n_rows);

    for (int l = 0; l < hp->n_layer; l++) {
        const layer *L = &m->layers[l];
        for (int32_t t = 0; t < n_rows; t++)
            rmsnorm(w->xb + t * E, w->x + t * E, L->attn_norm, E, hp->norm_eps);
        matmul_l(w, &L->wq, l, LORA_Q, w->xb, w->q, QD, n_rows);
        matmul_l(w, &L->wk, l, LORA_K, w->xb, w->k, KD, n_rows);
        matmul_l(w, &L->wv, l, LORA_V, w->xb, w->v, VD, n_rows);
        add_bias(w->q, L->bq, QD, n_rows);
        add_bias(w->k, L->bk, KD, n_rows);
        add_bias(w->v, L->bv, VD, n_rows);
        for (int32_t t = 0; t < n_rows; t++) {
            if (L->q_norm) {
                for (int h = 0; h < hp->n_head; h++) {
                    float *q = w->q + t * QD + h * hd;
                    rmsnorm(q, q, L->q_norm, hd, hp->norm_eps);
                }
                for (int h = 0; h < hp->n_head_kv; h++) {
                    float *k = w->k + t * KD + h * hd;
                    rmsnorm(k, k, L->k_norm, hd, hp->norm_eps);
                }
            }
            rope(w, w->q + t * QD, hp->n_head, (int)hd, t);
            rope(w, w->k + t * KD, hp->n_head_kv, (int)hd, t);
            model_seq *s = w->row_seq[t];
            size_t cell = (size_t)l * s->n_ctx + (size_t)w->row_pos[t];
            kv_put(s, s->k_cache + cell * KD * s->kv_elem, w->k + t * KD, (size_t)KD);
            kv_put(s, s->v_cache + cell * VD * s->kv_elem, w->v + t * VD, (size_t)VD);
        }
        attn_job aj = {w, l};
        pool_run(w->pool, attn_tasks, &aj, n_tasks, 1);
        matmul_l(w, &L->wo, l, LORA_O, w->att_out, w->xb2, E, n_rows);
        for (int64_t i = 0; i < n_rows * E; i++) w->x[i] += w->xb2[i];

        for (int32_t t = 0; t < n_rows; t++)
            rmsnorm(w->xb + t * E, w->x + t * E, L->ffn_norm, E, hp->norm_eps);
        matmul_l(w, &L->w_gate, l, LORA_GATE, w->xb, w->hb, F, n_rows);
        matmul_l(w, &L->w_up, l, LORA_UP, w->xb, w->hb2, F, n_rows);
        qt_swiglu_row(w->hb, w->hb2, n_rows * F);
        matmul_l(w, &L->w_down, l, LORA_DOWN, w->hb, w->xb2, E, n_rows);
        for (int64_t i = 0; i < n_rows * E; i++) w->x[i] += w->xb2[i];
    }

    /* logits of the rows that want them, MODEL_LOGIT_ROWS at a time */
    int32_t want[MODEL_UBATCH], n_want = 0;
    for (int32_t t = 0; t < n_rows; t++)
        if (w->row_logits[t]) want[n_want++] = t;
    for (int32_t g = 0; g < n_want; g += MODEL_LOGIT_ROWS) {
        int32_t ng = n_want - g < MODEL_LOGIT_ROWS ? n_want - g : MODEL_LOGIT_ROWS;
        for (int32_t i = 0; i < ng; i++)
            rmsnorm(w->xb + i * E, w->x + want[g + i] * E, m->out_norm, E, hp->norm_eps);
        matmul(w, &m->output, w->xb, w->logits, hp->n_vocab, ng);
        for (int32_t i = 0; i < ng; i++)
            memcpy(w->row_logits[want[g + i]], w->logits + (size_t)i * hp->n_vocab,
                   sizeof(float) * (size_t)hp->n_vocab);
    }
}

int model_eval_batch(model_ws *w, const model_batch *items, int n_items) {
    const model_hparams *hp = &w->m->hp;
    if (n_items < 1) return sh_error_set(SH_EINVAL, "nothing to evaluate");
    for (int i = 0; i < n_items; i++) {
        const model_batch *b = &items[i];
        if (!b->seq || b->seq->m != w->m || b->n < 1)
            return sh_error_set(SH_EINVAL, "batch item %d: no sequence or no tokens", i);
        if (b->seq->n_ctx > w->max_ctx)
            return sh_error_set(SH_EINVAL, "sequence context %d exceeds the workspace's %d",
                                b->seq->n_ctx, w->max_ctx);
        if (b->n > b->seq->n_ctx - b->seq->pos)
            return sh_error_set(SH_ERANGE, "%d tokens do not fit in the context (%d of %d used)",
                                b->n, b->seq->pos, b->seq->n_ctx);
        for (int j = 0; j < i; j++)
            if (items[j].seq == b->seq)
                return sh_error_set(SH_EINVAL, "a sequence appears twice in one batch");
        for (int32_t k = 0; k < b->n; k++)
            if (b->tokens[k] < 0 || b->tokens[k] >= hp->n_vocab)
                return sh_error_set(SH_EINVAL, "token id %d out of range (vocab %d)", b->tokens[k],
                                    hp->n_vocab);
    }
    int32_t chunk_tok[MODEL_UBATCH], n_rows = 0;
    for (int i = 0; i < n_items; i++) {
        const model_batch *b = &items[i];
        for (int32_t k = 0; k < b->n; k++) {
            w->row_seq[n_rows] = b->seq;
            w->row_pos[n_rows] = b->seq->pos + k;
            w->row_logits[n_rows] = k == b->n - 1 ? b->logits : NULL;
            b->seq->tokens[b->seq->pos + k] = b->tokens[k];
            chunk_tok[n_rows++] = b->tokens[k];
            if (n_rows == MODEL_UBATCH) {
                eval_rows(w, chunk_tok, n_rows);
                n_rows = 0;
            }
        }
    }
    if (n_rows) eval_rows(w, chunk_tok, n_rows);
    for (int i = 0; i < n_items; i++) items[i].seq->pos += items[i].n;
    return SH_OK;
}

/* ---- one sequence with its own workspace ---- */

int model_ctx_new(model_ctx **out, const model *m, int32_t n_ctx, int kv_type, int n_threads) {
    int st;
    *out = NULL;
    model_ctx *c = calloc(1, sizeof *c);
    if (!c) return sh_error_set(SH_ENOMEM, "out of memory");
    if ((st = model_seq_new(&c->seq, m, n_ctx, kv_type)) ||
        (st = model_ws_new(&c->ws, m, n_threads, n_ctx))) {
        model_ctx_free(c);
        return st;
    }
    *out = c;
    return SH_OK;
}

void model_ctx_free(model_ctx *c) {
    if (!c) return;
    model_ws_free(c->ws);
    model_seq_free(c->seq);
    free(c);
}

int32_t model_ctx_n_ctx(const model_ctx *c) {
    return c->seq->n_ctx;
}

int32_t model_ctx_pos(const model_ctx *c) {
    return c->seq->pos;
}

void model_ctx_truncate(model_ctx *c, int32_t pos) {
    model_seq_truncate(c->seq, pos);
}

model_seq *model_ctx_seq(model_ctx *c) {
    return c->seq;
}

model_ws *model_ctx_ws(model_ctx *c) {
    return c->ws;
}

int model_eval(model_ctx *c, const int32_t *tokens, int32_t n, float *logits) {
    model_batch b = {c->seq, tokens, n, logits};
    return model_eval_batch(c->ws, &b, 1);
}
