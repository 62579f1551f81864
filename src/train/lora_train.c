/* lora_train.c - LoRA training: forward with cached activations, backward, AdamW.
 *
 * Shapes: a sequence of n tokens (n <= T = max_seq_len) is processed whole. Per layer the
 * forward pass keeps the layer's input in xs (checkpoints); the backward pass recomputes one
 * layer's activations from its input, then walks back through it. Gradients flow only into
 * the LoRA matrices; base weights are read (dequantized row by row) to pass gradients to the
 * layer inputs: dx = W^T dy is computed as sum over rows r of dy[r] * W[r], so no transposed
 * copy of any weight is ever made. */
#include "train/lora_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "engine/pool.h"
#include "engine/quant.h"

#define LT_MAX_SEQ (1 << 16)
#define LT_MAX_THREADS 256
#define LT_TOK_CHUNK 64   /* tokens per weight pass in forward products (as the engine) */
#define LT_TB 16          /* tokens per weight pass in backward products */
#define LT_LOGIT_ROWS 16  /* positions whose logits are computed together */
/* Products smaller than this (multiply-adds) run on the calling thread: waking the pool costs
 * more than it saves, and on a shared machine idle workers spinning steal from others. */
#define LT_PAR_MIN (1 << 18)

typedef struct {
    const void *data; /* borrowed from the model's mapping */
    uint32_t type;
    int64_t n_in, n_out;
    size_t row_bytes;
} wmat;

typedef struct {
    float *attn_norm, *ffn_norm, *bq, *bk, *bv, *q_norm, *k_norm; /* owned F32 copies */
    wmat w[LORA_N_TARGETS];
} tlayer;

struct lt_trainer {
    const model *m;
    model_hparams hp;
    lora_adapter *ad;
    lt_params p;
    pool *pool;
    int nth;
    tlayer *L;
    wmat emb, out;
    float *out_norm;
    int32_t T;
    int64_t E, F, QD, KD, VD, OD, hd, hdv, max_in, max_rank;
    /* optimizer: per (layer, target), NULL when not adapted */
    float **ga, **gb, **ma, **mb, **va, **vb;
    int64_t n_steps;
    /* activations of one sequence */
    float *xs; /* (n_layer + 1, T, E) */
    float *xn1, *qr, *kr, *q, *k, *v, *att, *xm, *xn2, *g, *u, *h;
    float *z[LORA_N_TARGETS]; /* (T, rank) A x of each target */
    int cached_layer;         /* layer whose activations fill the buffers, -1 none */
    /* gradients of activations */
    float *dx, *dxm, *dxn, *dq, *dk, *dv, *datt, *dg, *du, *dh;
    float *xd;  /* (T, max_in) dropped-out LoRA input */
    float *dz;  /* (max_rank) */
    float *tmp; /* (max_in) */
    uint8_t *act;
    size_t act_stride;
    float *cosb, *sinb; /* (T, rope_dim / 2) */
    float *logits;      /* (LT_LOGIT_ROWS, n_vocab) */
    float *xf, *dxf;    /* (LT_LOGIT_ROWS, E) */
    float *acc;         /* (nth, LT_TB, max_in) per-thread partial W^T dy */
    float *wrow;        /* (nth, max_in) a dequantized weight row */
    int used[LT_MAX_THREADS];
    float *att_s;       /* (nth, 2 T) attention rows */
    int training;       /* dropout on */
    uint64_t drop_seed, n_seen;
};

void lt_params_default(lt_params *p) {
    *p = (lt_params){.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .adam_eps = 1e-8f,
                     .weight_decay = 0.0f, .dropout = 0.0f, .epochs = 1, .batch_size = 4,
                     .max_seq_len = 512, .seed = 42, .n_threads = 1};
}

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- setup ---- */

static int get_mat(lt_trainer *t, const char *name, int64_t n_in, int64_t n_out, wmat *w) {
    const gguf_tensor *gt = gguf_find_tensor(model_gguf(t->m), name);
    if (!gt) return sh_error_set(SH_EFORMAT, "missing tensor '%s'", name);
    if (gt->ne[0] != n_in || gt->ne[1] != n_out)
        return sh_error_set(SH_EFORMAT, "tensor '%s' has an unexpected shape", name);
    *w = (wmat){gt->data, gt->type, n_in, n_out, qt_row_bytes(gt->type, n_in)};
    return SH_OK;
}

/* Owned F32 copy of a 1-D tensor (NULL when absent and optional). */
static int get_vec(lt_trainer *t, const char *name, int64_t n, int required, float **out) {
    const gguf_tensor *gt = gguf_find_tensor(model_gguf(t->m), name);
    *out = NULL;
    if (!gt) return required ? sh_error_set(SH_EFORMAT, "missing tensor '%s'", name) : SH_OK;
    if (gt->ne[0] != n) return sh_error_set(SH_EFORMAT, "tensor '%s' has an unexpected shape", name);
    if (!(*out = malloc(sizeof(float) * (size_t)n))) return sh_error_set(SH_ENOMEM, "out of memory");
    qt_dequant_row(gt->type, gt->data, *out, n);
    return SH_OK;
}

static int load_weights(lt_trainer *t) {
    const model_hparams *hp = &t->hp;
    int st;
    char nm[128];
    if ((st = get_mat(t, "token_embd.weight", t->E, hp->n_vocab, &t->emb)) ||
        (st = get_vec(t, "output_norm.weight", t->E, 1, &t->out_norm)))
        return st;
    if (gguf_find_tensor(model_gguf(t->m), "output.weight")) {
        if ((st = get_mat(t, "output.weight", t->E, hp->n_vocab, &t->out))) return st;
    } else {
        t->out = t->emb; /* tied */
    }
    static const char *const mats[LORA_N_TARGETS] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                     "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < hp->n_layer; l++) {
        tlayer *L = &t->L[l];
        for (int k = 0; k < LORA_N_TARGETS; k++) {
            const lora_adapter_mat *am = lora_adapter_at(t->ad, l, k);
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, mats[k]);
            if ((st = get_mat(t, nm, am->n_in, am->n_out, &L->w[k]))) return st;
        }
#define V(field, s, n, req) \
    (snprintf(nm, sizeof nm, "blk.%d." s, l), get_vec(t, nm, n, req, &L->field))
        if ((st = V(attn_norm, "attn_norm.weight", t->E, 1)) ||
            (st = V(ffn_norm, "ffn_norm.weight", t->E, 1)) ||
            (st = V(bq, "attn_q.bias", t->QD, 0)) || (st = V(bk, "attn_k.bias", t->KD, 0)) ||
            (st = V(bv, "attn_v.bias", t->VD, 0)) ||
            (st = V(q_norm, "attn_q_norm.weight", t->hd, hp->arch == ARCH_QWEN3)) ||
            (st = V(k_norm, "attn_k_norm.weight", t->hd, hp->arch == ARCH_QWEN3)))
            return st;
#undef V
    }
    return SH_OK;
}

static float *fbuf(int64_t n, int *st) {
    if (*st) return NULL;
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!p) *st = sh_error_set(SH_ENOMEM, "out of memory allocating %lld floats for training",
                               (long long)n);
    return p;
}

void lt_free(lt_trainer *t) {
    if (!t) return;
    pool_free(t->pool);
    if (t->L)
        for (int l = 0; l < t->hp.n_layer; l++) {
            tlayer *L = &t->L[l];
            free(L->attn_norm), free(L->ffn_norm), free(L->bq), free(L->bk), free(L->bv);
            free(L->q_norm), free(L->k_norm);
        }
    free(t->L);
    free(t->out_norm);
    int nm = t->hp.n_layer * LORA_N_TARGETS;
    float **opt[6] = {t->ga, t->gb, t->ma, t->mb, t->va, t->vb};
    for (int k = 0; k < 6; k++) {
        for (int i = 0; opt[k] && i < nm; i++) free(opt[k][i]);
        free(opt[k]);
    }
    float *bufs[] = {t->xs, t->xn1, t->qr, t->kr, t->q, t->k, t->v, t->att, t->xm, t->xn2,
                     t->g, t->u, t->h, t->dx, t->dxm, t->dxn, t->dq, t->dk, t->dv, t->datt,
                     t->dg, t->du, t->dh, t->xd, t->dz, t->tmp, t->cosb, t->sinb, t->logits,
                     t->xf, t->dxf, t->acc, t->wrow, t->att_s};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    for (int k = 0; k < LORA_N_TARGETS; k++) free(t->z[k]);
    free(t->act);
    free(t);
}

int lt_new(lt_trainer **out, const model *m, lora_adapter *ad, const lt_params *p) {
    *out = NULL;
    const model_hparams *hp = model_hp(m);
    if (strcmp(ad->arch, model_arch_name(hp->arch)) || ad->n_layer != hp->n_layer)
        return sh_error_set(SH_EINVAL, "the adapter was made for another model");
    if (p->max_seq_len < 2 || p->max_seq_len > LT_MAX_SEQ)
        return sh_error_set(SH_EINVAL, "max_seq_len %d out of range [2, %d]", p->max_seq_len, LT_MAX_SEQ);
    if (p->n_threads < 1 || p->n_threads > LT_MAX_THREADS || p->batch_size < 1 || p->epochs < 1 ||
        !(p->dropout >= 0 && p->dropout < 1) || !(p->lr > 0) || !(p->beta1 >= 0 && p->beta1 < 1) ||
        !(p->beta2 >= 0 && p->beta2 < 1) || !(p->adam_eps > 0) || !(p->weight_decay >= 0))
        return sh_error_set(SH_EINVAL, "bad training parameters");
    int st = SH_OK;
    lt_trainer *t = calloc(1, sizeof *t);
    if (!t) return sh_error_set(SH_ENOMEM, "out of memory");
    t->m = m;
    t->hp = *hp;
    t->ad = ad;
    t->p = *p;
    t->T = p->max_seq_len;
    t->cached_layer = -1;
    t->E = hp->n_embd;
    t->F = hp->n_ff;
    t->hd = hp->head_dim;
    t->hdv = hp->head_dim_v;
    t->QD = (int64_t)hp->n_head * t->hd;
    t->KD = (int64_t)hp->n_head_kv * t->hd;
    t->VD = (int64_t)hp->n_head_kv * t->hdv;
    t->OD = (int64_t)hp->n_head * t->hdv;
    t->max_in = t->E > t->F ? t->E : t->F;
    if (t->OD > t->max_in) t->max_in = t->OD;
    int64_t max_out = t->QD > t->max_in ? t->QD : t->max_in;
    int nm = hp->n_layer * LORA_N_TARGETS;
    t->L = calloc((size_t)hp->n_layer, sizeof *t->L);
    if (!t->L) st = sh_error_set(SH_ENOMEM, "out of memory");
    if (!st) st = load_weights(t);
    if (!st) st = pool_new(&t->pool, p->n_threads);
    t->nth = p->n_threads;
    float ***opt[6] = {&t->ga, &t->gb, &t->ma, &t->mb, &t->va, &t->vb};
    for (int k = 0; k < 6 && !st; k++)
        if (!(*opt[k] = calloc((size_t)nm, sizeof(float *)))) st = sh_error_set(SH_ENOMEM, "out of memory");
    for (int i = 0; i < nm && !st; i++) {
        const lora_adapter_mat *am = &ad->mats[i];
        if (!am->a) continue;
        if (am->rank > t->max_rank) t->max_rank = am->rank;
        int64_t na = (int64_t)am->rank * am->n_in, nb = (int64_t)am->rank * am->n_out;
        t->ga[i] = fbuf(na, &st), t->ma[i] = fbuf(na, &st), t->va[i] = fbuf(na, &st);
        t->gb[i] = fbuf(nb, &st), t->mb[i] = fbuf(nb, &st), t->vb[i] = fbuf(nb, &st);
    }
    int64_t T = t->T, E = t->E;
    t->xs = fbuf((hp->n_layer + 1) * T * E, &st);
    t->xn1 = fbuf(T * E, &st), t->xm = fbuf(T * E, &st), t->xn2 = fbuf(T * E, &st);
    t->qr = fbuf(T * t->QD, &st), t->kr = fbuf(T * t->KD, &st);
    t->q = fbuf(T * t->QD, &st), t->k = fbuf(T * t->KD, &st), t->v = fbuf(T * t->VD, &st);
    t->att = fbuf(T * t->OD, &st);
    t->g = fbuf(T * t->F, &st), t->u = fbuf(T * t->F, &st), t->h = fbuf(T * t->F, &st);
    for (int k = 0; k < LORA_N_TARGETS; k++) t->z[k] = fbuf(T * (t->max_rank ? t->max_rank : 1), &st);
    t->dx = fbuf(T * E, &st), t->dxm = fbuf(T * E, &st), t->dxn = fbuf(T * E, &st);
    t->dq = fbuf(T * t->QD, &st), t->dk = fbuf(T * t->KD, &st), t->dv = fbuf(T * t->VD, &st);
    t->datt = fbuf(T * t->OD, &st);
    t->dg = fbuf(T * t->F, &st), t->du = fbuf(T * t->F, &st), t->dh = fbuf(T * t->F, &st);
    t->xd = fbuf(T * t->max_in, &st);
    t->dz = fbuf(t->max_rank, &st);
    t->tmp = fbuf(max_out, &st);
    t->cosb = fbuf(T * hp->rope_dim / 2, &st), t->sinb = fbuf(T * hp->rope_dim / 2, &st);
    t->logits = fbuf((int64_t)LT_LOGIT_ROWS * hp->n_vocab, &st);
    t->xf = fbuf(LT_LOGIT_ROWS * E, &st), t->dxf = fbuf(LT_LOGIT_ROWS * E, &st);
    t->acc = fbuf((int64_t)t->nth * LT_TB * t->max_in, &st);
    t->wrow = fbuf((int64_t)t->nth * t->max_in, &st);
    t->att_s = fbuf((int64_t)t->nth * 2 * T, &st);
    /* activations converted to a weight's dot type: F32 is the widest (4 bytes / element) */
    t->act_stride = (size_t)((t->max_in * 4 + 63) / 64 * 64);
    if (!st && !(t->act = malloc(t->act_stride * LT_TOK_CHUNK)))
        st = sh_error_set(SH_ENOMEM, "out of memory");
    if (st) {
        lt_free(t);
        return st;
    }
    /* rope tables for positions 0..T-1, built as the engine builds them */
    int half = hp->rope_dim / 2;
    float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->rope_dim);
    for (int32_t pos = 0; pos < T; pos++) {
        float theta = (float)pos;
        for (int i = 0; i < half; i++) {
            t->cosb[pos * half + i] = cosf(theta);
            t->sinb[pos * half + i] = sinf(theta);
            theta *= theta_scale;
        }
    }
    *out = t;
    return SH_OK;
}

/* ---- products ---- */

typedef struct {
    const wmat *w;
    const uint8_t *act;
    size_t act_stride;
    float *y;
    int64_t y_stride;
    int32_t n_tok;
} fwd_job;

static void fwd_rows(void *arg, int64_t r0, int64_t r1, int ith) {
    const fwd_job *j = arg;
    qt_matmul(j->w->type, j->w->data, j->w->n_in, r0, r1, j->act, j->act_stride, j->n_tok, j->y,
              j->y_stride);
}

/* y[i] (stride y_stride) = W x[i] for i < n; x rows n_in apart. */
static void mm(lt_trainer *t, const wmat *w, const float *x, float *y, int64_t y_stride, int32_t n) {
    for (int32_t c = 0; c < n; c += LT_TOK_CHUNK) {
        int32_t nc = n - c < LT_TOK_CHUNK ? n - c : LT_TOK_CHUNK;
        for (int32_t i = 0; i < nc; i++)
            qt_prep_act(w->type, x + (size_t)(c + i) * w->n_in, t->act + (size_t)i * t->act_stride, w->n_in);
        fwd_job j = {w, t->act, t->act_stride, y + (size_t)c * y_stride, y_stride, nc};
        if (w->n_in * w->n_out * nc < LT_PAR_MIN) fwd_rows(&j, 0, w->n_out, 0);
        else pool_run(t->pool, fwd_rows, &j, w->n_out, 16);
    }
}

typedef struct {
    lt_trainer *t;
    const wmat *w;
    const float *dy; /* (nb, n_out) */
    int32_t nb;
} bwd_job;

/* Each thread sums dy[r] * W[r] over its rows into its own accumulator. */
static void bwd_rows(void *arg, int64_t r0, int64_t r1, int ith) {
    const bwd_job *j = arg;
    lt_trainer *t = j->t;
    const wmat *w = j->w;
    int64_t n_in = w->n_in;
    float *acc = t->acc + (size_t)ith * LT_TB * t->max_in;
    float *row = t->wrow + (size_t)ith * t->max_in;
    memset(acc, 0, sizeof(float) * (size_t)(j->nb * n_in));
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        const float *wr = row;
        if (w->type == QT_F32) wr = (const float *)src;
        else qt_dequant_row(w->type, src, row, n_in);
        for (int32_t i = 0; i < j->nb; i++) {
            float a = j->dy[(size_t)i * w->n_out + r];
            if (a != 0.0f) qt_axpy_f32(acc + (size_t)i * n_in, a, wr, n_in);
        }
    }
    t->used[ith] = 1;
}

/* dx[i] += W^T dy[i] for i < n; dy rows n_out apart, dx rows n_in apart. */
static void mm_t(lt_trainer *t, const wmat *w, const float *dy, float *dx, int32_t n) {
    for (int32_t c = 0; c < n; c += LT_TB) {
        int32_t nb = n - c < LT_TB ? n - c : LT_TB;
        memset(t->used, 0, sizeof t->used);
        bwd_job j = {t, w, dy + (size_t)c * w->n_out, nb};
        if (w->n_in * w->n_out * nb < LT_PAR_MIN) bwd_rows(&j, 0, w->n_out, 0);
        else pool_run(t->pool, bwd_rows, &j, w->n_out, 16);
        for (int th = 0; th < t->nth; th++) {
            if (!t->used[th]) continue;
            const float *acc = t->acc + (size_t)th * LT_TB * t->max_in;
            for (int64_t k = 0; k < (int64_t)nb * w->n_in; k++) dx[(size_t)c * w->n_in + k] += acc[k];
        }
    }
}

/* ---- LoRA ---- */

/* Dropout keeps element (sequence seed, layer, target, position, i) with probability
 * 1 - dropout: a counter-based hash, so the backward pass regenerates the forward's mask. */
static uint64_t drop_base(const lt_trainer *t, int layer, int tgt) {
    return mix64(t->drop_seed ^ ((uint64_t)layer << 8 | (uint64_t)tgt));
}

static int drop_keep(const lt_trainer *t, uint64_t base, int64_t k) {
    uint64_t thr = (uint64_t)((1.0 - (double)t->p.dropout) * 16777216.0);
    return (mix64(base + (uint64_t)k) >> 40) < thr;
}

static const float *lora_input(lt_trainer *t, int layer, int tgt, const float *x, int64_t n_in,
                               int32_t n) {
    if (!t->training || t->p.dropout <= 0) return x;
    float inv = 1.0f / (1.0f - t->p.dropout);
    uint64_t base = drop_base(t, layer, tgt);
    for (int64_t k = 0; k < (int64_t)n * n_in; k++) t->xd[k] = drop_keep(t, base, k) ? x[k] * inv : 0.0f;
    return t->xd;
}

/* y[i] += s B (A x[i]); keeps A x in z. */
static void lora_fwd(lt_trainer *t, int layer, int tgt, const float *x, float *y, int32_t n) {
    const lora_adapter_mat *am = lora_adapter_at(t->ad, layer, tgt);
    if (!am->a) return;
    float s = lora_adapter_scale(t->ad, am);
    const float *xin = lora_input(t, layer, tgt, x, am->n_in, n);
    for (int32_t i = 0; i < n; i++) {
        float *z = t->z[tgt] + (size_t)i * am->rank;
        float *yi = y + (size_t)i * am->n_out;
        for (int32_t r = 0; r < am->rank; r++)
            z[r] = qt_dot_f32(am->a + (size_t)r * am->n_in, xin + (size_t)i * am->n_in, am->n_in);
        for (int64_t o = 0; o < am->n_out; o++)
            yi[o] += s * qt_dot_f32(am->b + (size_t)o * am->rank, z, am->rank);
    }
}

/* Given dy = dL/dy: gradients of A and B accumulate, dx += the LoRA path's dL/dx. */
static void lora_bwd(lt_trainer *t, int layer, int tgt, const float *x, const float *dy, float *dx,
                     int32_t n) {
    const lora_adapter_mat *am = lora_adapter_at(t->ad, layer, tgt);
    if (!am->a) return;
    int idx = layer * LORA_N_TARGETS + tgt;
    float s = lora_adapter_scale(t->ad, am);
    const float *xin = lora_input(t, layer, tgt, x, am->n_in, n);
    int drop = xin != x;
    float inv = drop ? 1.0f / (1.0f - t->p.dropout) : 1.0f;
    float *ga = t->ga[idx], *gb = t->gb[idx], *dz = t->dz;
    int32_t R = am->rank;
    for (int32_t i = 0; i < n; i++) {
        const float *z = t->z[tgt] + (size_t)i * R, *dyi = dy + (size_t)i * am->n_out;
        const float *xi = xin + (size_t)i * am->n_in;
        memset(dz, 0, sizeof(float) * (size_t)R);
        for (int64_t o = 0; o < am->n_out; o++) {
            float d = dyi[o];
            if (d == 0.0f) continue;
            qt_axpy_f32(dz, s * d, am->b + (size_t)o * R, R);
            qt_axpy_f32(gb + (size_t)o * R, s * d, z, R);
        }
        float *dxi = dx + (size_t)i * am->n_in;
        if (drop) {
            float *tmp = t->tmp;
            uint64_t base = drop_base(t, layer, tgt);
            memset(tmp, 0, sizeof(float) * (size_t)am->n_in);
            for (int32_t r = 0; r < R; r++) {
                qt_axpy_f32(ga + (size_t)r * am->n_in, dz[r], xi, am->n_in);
                qt_axpy_f32(tmp, dz[r], am->a + (size_t)r * am->n_in, am->n_in);
            }
            for (int64_t k = 0; k < am->n_in; k++)
                if (drop_keep(t, base, (int64_t)i * am->n_in + k)) dxi[k] += tmp[k] * inv;
        } else {
            for (int32_t r = 0; r < R; r++) {
                qt_axpy_f32(ga + (size_t)r * am->n_in, dz[r], xi, am->n_in);
                qt_axpy_f32(dxi, dz[r], am->a + (size_t)r * am->n_in, am->n_in);
            }
        }
    }
}

/* ---- elementwise pieces ---- */

static float rms_scale(const float *x, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return 1.0f / sqrtf((float)(ss / n) + eps);
}

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    float scale = rms_scale(x, n, eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* dx += d/dx of y = x * r(x) * w, given dy. */
static void rmsnorm_bwd(float *dx, const float *x, const float *w, const float *dy, int64_t n,
                        float eps) {
    float r = rms_scale(x, n, eps);
    double dot = 0;
    for (int64_t i = 0; i < n; i++) dot += (double)dy[i] * w[i] * x[i];
    float c = (float)(dot * r * r * r / n);
    for (int64_t i = 0; i < n; i++) dx[i] += r * w[i] * dy[i] - c * x[i];
}

static void add_bias(float *y, const float *b, int64_t n, int32_t n_tok) {
    if (!b) return;
    for (int32_t i = 0; i < n_tok; i++)
        for (int64_t k = 0; k < n; k++) y[i * n + k] += b[k];
}

/* Rotates (dir = 1) or rotates back (dir = -1: the transpose, for gradients) the rope dims of
 * n_heads heads of v at position pos. */
static void rope(const lt_trainer *t, float *v, int n_heads, int32_t pos, float dir) {
    int half = t->hp.rope_dim / 2, neox = t->hp.rope_neox;
    const float *cs = t->cosb + pos * half, *sn = t->sinb + pos * half;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + h * t->hd;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = x[a], x1 = x[b], s = dir * sn[i];
            x[a] = x0 * cs[i] - x1 * s;
            x[b] = x0 * s + x1 * cs[i];
        }
    }
}

/* ---- attention ---- */

typedef struct {
    lt_trainer *t;
    int32_t n;
} att_job;

/* Softmax row of query i of head h against keys 0..i (as the engine computes it). */
static void att_probs(const lt_trainer *t, int h, int32_t i, float *row) {
    int64_t hd = t->hd;
    int kvh = h / (t->hp.n_head / t->hp.n_head_kv);
    const float *q = t->q + (size_t)i * t->QD + (size_t)h * hd;
    float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY;
    for (int32_t j = 0; j <= i; j++) {
        row[j] = qt_dot_f32(q, t->k + (size_t)j * t->KD + (size_t)kvh * hd, hd) * scale;
        if (row[j] > mx) mx = row[j];
    }
    double sum = 0;
    for (int32_t j = 0; j <= i; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    float inv = (float)(1.0 / sum);
    for (int32_t j = 0; j <= i; j++) row[j] *= inv;
}

/* items: KV heads; each handles the query heads that share it. */
static void att_fwd_task(void *arg, int64_t k0, int64_t k1, int ith) {
    const att_job *j = arg;
    const lt_trainer *t = j->t;
    int group = t->hp.n_head / t->hp.n_head_kv;
    float *row = t->att_s + (size_t)ith * 2 * t->T;
    for (int64_t kvh = k0; kvh < k1; kvh++)
        for (int g = 0; g < group; g++) {
            int h = (int)kvh * group + g;
            for (int32_t i = 0; i < j->n; i++) {
                att_probs(t, h, i, row);
                float *o = t->att + (size_t)i * t->OD + (size_t)h * t->hdv;
                memset(o, 0, sizeof(float) * (size_t)t->hdv);
                for (int32_t p = 0; p <= i; p++)
                    qt_axpy_f32(o, row[p], t->v + (size_t)p * t->VD + (size_t)kvh * t->hdv, t->hdv);
            }
        }
}

static void att_bwd_task(void *arg, int64_t k0, int64_t k1, int ith) {
    const att_job *j = arg;
    lt_trainer *t = j->t;
    int group = t->hp.n_head / t->hp.n_head_kv;
    int64_t hd = t->hd, hdv = t->hdv;
    float scale = 1.0f / sqrtf((float)hd);
    float *P = t->att_s + (size_t)ith * 2 * t->T, *dP = P + t->T;
    for (int64_t kvh = k0; kvh < k1; kvh++) {
        for (int32_t p = 0; p < j->n; p++) {
            memset(t->dk + (size_t)p * t->KD + kvh * hd, 0, sizeof(float) * (size_t)hd);
            memset(t->dv + (size_t)p * t->VD + kvh * hdv, 0, sizeof(float) * (size_t)hdv);
        }
        for (int g = 0; g < group; g++) {
            int h = (int)kvh * group + g;
            for (int32_t i = 0; i < j->n; i++) {
                att_probs(t, h, i, P);
                const float *dO = t->datt + (size_t)i * t->OD + (size_t)h * hdv;
                const float *q = t->q + (size_t)i * t->QD + (size_t)h * hd;
                float *dq = t->dq + (size_t)i * t->QD + (size_t)h * hd;
                double sum = 0;
                for (int32_t p = 0; p <= i; p++) {
                    const float *vp = t->v + (size_t)p * t->VD + kvh * hdv;
                    dP[p] = qt_dot_f32(dO, vp, hdv);
                    sum += (double)P[p] * dP[p];
                    qt_axpy_f32(t->dv + (size_t)p * t->VD + kvh * hdv, P[p], dO, hdv);
                }
                memset(dq, 0, sizeof(float) * (size_t)hd);
                for (int32_t p = 0; p <= i; p++) {
                    float ds = P[p] * (dP[p] - (float)sum) * scale;
                    if (ds == 0.0f) continue;
                    qt_axpy_f32(dq, ds, t->k + (size_t)p * t->KD + kvh * hd, hd);
                    qt_axpy_f32(t->dk + (size_t)p * t->KD + kvh * hd, ds, q, hd);
                }
            }
        }
    }
}

/* ---- a layer ---- */

static float silu(float x) {
    return x / (1.0f + expf(-x));
}

/* x (n, E) -> y (n, E); fills the layer's activation buffers. */
static void layer_fwd(lt_trainer *t, int l, const float *x, float *y, int32_t n) {
    const tlayer *L = &t->L[l];
    const model_hparams *hp = &t->hp;
    int64_t E = t->E, F = t->F, hd = t->hd;
    for (int32_t i = 0; i < n; i++) rmsnorm(t->xn1 + i * E, x + i * E, L->attn_norm, E, hp->norm_eps);
    mm(t, &L->w[LORA_Q], t->xn1, t->q, t->QD, n);
    lora_fwd(t, l, LORA_Q, t->xn1, t->q, n);
    mm(t, &L->w[LORA_K], t->xn1, t->k, t->KD, n);
    lora_fwd(t, l, LORA_K, t->xn1, t->k, n);
    mm(t, &L->w[LORA_V], t->xn1, t->v, t->VD, n);
    lora_fwd(t, l, LORA_V, t->xn1, t->v, n);
    add_bias(t->q, L->bq, t->QD, n);
    add_bias(t->k, L->bk, t->KD, n);
    add_bias(t->v, L->bv, t->VD, n);
    if (L->q_norm) {
        memcpy(t->qr, t->q, sizeof(float) * (size_t)(n * t->QD));
        memcpy(t->kr, t->k, sizeof(float) * (size_t)(n * t->KD));
        for (int64_t hh = 0; hh < (int64_t)n * hp->n_head; hh++)
            rmsnorm(t->q + hh * hd, t->q + hh * hd, L->q_norm, hd, hp->norm_eps);
        for (int64_t hh = 0; hh < (int64_t)n * hp->n_head_kv; hh++)
            rmsnorm(t->k + hh * hd, t->k + hh * hd, L->k_norm, hd, hp->norm_eps);
    }
    for (int32_t i = 0; i < n; i++) {
        rope(t, t->q + i * t->QD, hp->n_head, i, 1.0f);
        rope(t, t->k + i * t->KD, hp->n_head_kv, i, 1.0f);
    }
    att_job aj = {t, n};
    if ((int64_t)n * n * t->QD < LT_PAR_MIN) att_fwd_task(&aj, 0, hp->n_head_kv, 0);
    else pool_run(t->pool, att_fwd_task, &aj, hp->n_head_kv, 1);
    mm(t, &L->w[LORA_O], t->att, t->xm, E, n);
    lora_fwd(t, l, LORA_O, t->att, t->xm, n);
    for (int64_t k = 0; k < (int64_t)n * E; k++) t->xm[k] += x[k];

    for (int32_t i = 0; i < n; i++) rmsnorm(t->xn2 + i * E, t->xm + i * E, L->ffn_norm, E, hp->norm_eps);
    mm(t, &L->w[LORA_GATE], t->xn2, t->g, F, n);
    lora_fwd(t, l, LORA_GATE, t->xn2, t->g, n);
    mm(t, &L->w[LORA_UP], t->xn2, t->u, F, n);
    lora_fwd(t, l, LORA_UP, t->xn2, t->u, n);
    for (int64_t k = 0; k < (int64_t)n * F; k++) t->h[k] = silu(t->g[k]) * t->u[k];
    mm(t, &L->w[LORA_DOWN], t->h, y, E, n);
    lora_fwd(t, l, LORA_DOWN, t->h, y, n);
    for (int64_t k = 0; k < (int64_t)n * E; k++) y[k] += t->xm[k];
    t->cached_layer = l;
}

/* t->dx holds dL/d(layer output); replaced by dL/d(layer input x). */
static void layer_bwd(lt_trainer *t, int l, const float *x, int32_t n) {
    const tlayer *L = &t->L[l];
    const model_hparams *hp = &t->hp;
    int64_t E = t->E, F = t->F, hd = t->hd;
    float eps = hp->norm_eps;
    /* feed-forward */
    memset(t->dh, 0, sizeof(float) * (size_t)(n * F));
    mm_t(t, &L->w[LORA_DOWN], t->dx, t->dh, n);
    lora_bwd(t, l, LORA_DOWN, t->h, t->dx, t->dh, n);
    for (int64_t k = 0; k < (int64_t)n * F; k++) {
        float g = t->g[k], sg = 1.0f / (1.0f + expf(-g));
        t->dg[k] = t->dh[k] * t->u[k] * sg * (1.0f + g * (1.0f - sg));
        t->du[k] = t->dh[k] * g * sg;
    }
    memset(t->dxn, 0, sizeof(float) * (size_t)(n * E));
    mm_t(t, &L->w[LORA_GATE], t->dg, t->dxn, n);
    mm_t(t, &L->w[LORA_UP], t->du, t->dxn, n);
    lora_bwd(t, l, LORA_GATE, t->xn2, t->dg, t->dxn, n);
    lora_bwd(t, l, LORA_UP, t->xn2, t->du, t->dxn, n);
    memcpy(t->dxm, t->dx, sizeof(float) * (size_t)(n * E));
    for (int32_t i = 0; i < n; i++)
        rmsnorm_bwd(t->dxm + i * E, t->xm + i * E, L->ffn_norm, t->dxn + i * E, E, eps);
    /* attention */
    memset(t->datt, 0, sizeof(float) * (size_t)(n * t->OD));
    mm_t(t, &L->w[LORA_O], t->dxm, t->datt, n);
    lora_bwd(t, l, LORA_O, t->att, t->dxm, t->datt, n);
    att_job aj = {t, n};
    if ((int64_t)n * n * t->QD < LT_PAR_MIN) att_bwd_task(&aj, 0, hp->n_head_kv, 0);
    else pool_run(t->pool, att_bwd_task, &aj, hp->n_head_kv, 1);
    for (int32_t i = 0; i < n; i++) {
        rope(t, t->dq + i * t->QD, hp->n_head, i, -1.0f);
        rope(t, t->dk + i * t->KD, hp->n_head_kv, i, -1.0f);
    }
    if (L->q_norm) {
        float *tmp = t->tmp;
        for (int64_t hh = 0; hh < (int64_t)n * hp->n_head; hh++) {
            memcpy(tmp, t->dq + hh * hd, sizeof(float) * (size_t)hd);
            memset(t->dq + hh * hd, 0, sizeof(float) * (size_t)hd);
            rmsnorm_bwd(t->dq + hh * hd, t->qr + hh * hd, L->q_norm, tmp, hd, eps);
        }
        for (int64_t hh = 0; hh < (int64_t)n * hp->n_head_kv; hh++) {
            memcpy(tmp, t->dk + hh * hd, sizeof(float) * (size_t)hd);
            memset(t->dk + hh * hd, 0, sizeof(float) * (size_t)hd);
            rmsnorm_bwd(t->dk + hh * hd, t->kr + hh * hd, L->k_norm, tmp, hd, eps);
        }
    }
    memset(t->dxn, 0, sizeof(float) * (size_t)(n * E));
    mm_t(t, &L->w[LORA_Q], t->dq, t->dxn, n);
    mm_t(t, &L->w[LORA_K], t->dk, t->dxn, n);
    mm_t(t, &L->w[LORA_V], t->dv, t->dxn, n);
    lora_bwd(t, l, LORA_Q, t->xn1, t->dq, t->dxn, n);
    lora_bwd(t, l, LORA_K, t->xn1, t->dk, t->dxn, n);
    lora_bwd(t, l, LORA_V, t->xn1, t->dv, t->dxn, n);
    memcpy(t->dx, t->dxm, sizeof(float) * (size_t)(n * E));
    for (int32_t i = 0; i < n; i++)
        rmsnorm_bwd(t->dx + i * E, x + i * E, L->attn_norm, t->dxn + i * E, E, eps);
}

/* ---- whole sequences ---- */

static int check_tokens(const lt_trainer *t, const int32_t *tokens, int32_t n) {
    if (n < 1 || n > t->T) return sh_error_set(SH_ERANGE, "sequence of %d tokens (max %d)", n, t->T);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= t->hp.n_vocab)
            return sh_error_set(SH_EINVAL, "token id %d out of range (vocab %d)", tokens[i], t->hp.n_vocab);
    return SH_OK;
}

static void forward(lt_trainer *t, const int32_t *tokens, int32_t n) {
    int64_t E = t->E;
    for (int32_t i = 0; i < n; i++)
        qt_dequant_row(t->emb.type, (const uint8_t *)t->emb.data + (size_t)tokens[i] * t->emb.row_bytes,
                       t->xs + i * E, E);
    for (int l = 0; l < t->hp.n_layer; l++) {
        if (t->p.pause) t->p.pause(t->p.pause_user);
        layer_fwd(t, l, t->xs + (size_t)l * t->T * E, t->xs + (size_t)(l + 1) * t->T * E, n);
    }
}

/* Logits of positions pos[0..np) (np <= LT_LOGIT_ROWS) from the last layer's output. */
static void logits_at(lt_trainer *t, const int32_t *pos, int32_t np) {
    int64_t E = t->E;
    const float *xl = t->xs + (size_t)t->hp.n_layer * t->T * E;
    for (int32_t i = 0; i < np; i++)
        rmsnorm(t->xf + i * E, xl + (size_t)pos[i] * E, t->out_norm, E, t->hp.norm_eps);
    mm(t, &t->out, t->xf, t->logits, t->hp.n_vocab, np);
}

int lt_logits(lt_trainer *t, const int32_t *tokens, int32_t n, int last_only, float *logits) {
    int st = check_tokens(t, tokens, n);
    if (st) return st;
    t->training = 0;
    forward(t, tokens, n);
    int64_t V = t->hp.n_vocab;
    for (int32_t p0 = last_only ? n - 1 : 0; p0 < n; p0 += LT_LOGIT_ROWS) {
        int32_t pos[LT_LOGIT_ROWS], np = 0;
        for (int32_t p = p0; p < n && np < LT_LOGIT_ROWS; p++) pos[np++] = p;
        logits_at(t, pos, np);
        float *dst = last_only ? logits : logits + (size_t)p0 * V;
        memcpy(dst, t->logits, sizeof(float) * (size_t)(np * V));
    }
    return SH_OK;
}

/* Loss of one example times coef (sum over its loss tokens of -log p times coef); with grad,
 * the backward pass adds coef-scaled gradients. Returns the token count in *ntok. */
static double example(lt_trainer *t, const lt_example *e, double coef_tok, int grad) {
    int32_t n = e->n < t->T ? e->n : t->T;
    int32_t p0 = e->n_prompt < 1 ? 1 : e->n_prompt;
    int64_t E = t->E, V = t->hp.n_vocab;
    t->drop_seed = mix64(t->p.seed ^ mix64(++t->n_seen));
    forward(t, e->tokens, n);
    if (grad) memset(t->dx, 0, sizeof(float) * (size_t)(n * E));
    const float *xl = t->xs + (size_t)t->hp.n_layer * t->T * E;
    double loss = 0;
    for (int32_t c = p0 - 1; c < n - 1; c += LT_LOGIT_ROWS) {
        int32_t pos[LT_LOGIT_ROWS], np = 0;
        for (int32_t p = c; p < n - 1 && np < LT_LOGIT_ROWS; p++) pos[np++] = p;
        logits_at(t, pos, np);
        for (int32_t i = 0; i < np; i++) {
            float *lg = t->logits + (size_t)i * V;
            int32_t target = e->tokens[pos[i] + 1];
            float mx = -INFINITY;
            for (int64_t v = 0; v < V; v++)
                if (lg[v] > mx) mx = lg[v];
            float lt = lg[target];
            double sum = 0;
            for (int64_t v = 0; v < V; v++) {
                lg[v] = expf(lg[v] - mx);
                sum += lg[v];
            }
            loss += (mx + log(sum) - lt) * coef_tok;
            if (!grad) continue;
            /* dL/dlogit = coef * (softmax - onehot) */
            float inv = (float)(coef_tok / sum);
            for (int64_t v = 0; v < V; v++) lg[v] *= inv;
            lg[target] -= (float)coef_tok;
        }
        if (!grad) continue;
        memset(t->dxf, 0, sizeof(float) * (size_t)(np * E));
        mm_t(t, &t->out, t->logits, t->dxf, np);
        for (int32_t i = 0; i < np; i++)
            rmsnorm_bwd(t->dx + (size_t)pos[i] * E, xl + (size_t)pos[i] * E, t->out_norm,
                        t->dxf + i * E, E, t->hp.norm_eps);
    }
    if (!grad) return loss;
    for (int l = t->hp.n_layer - 1; l >= 0; l--) {
        if (t->p.pause) t->p.pause(t->p.pause_user);
        const float *x = t->xs + (size_t)l * t->T * E;
        if (t->cached_layer != l) layer_fwd(t, l, x, t->xs + (size_t)(l + 1) * t->T * E, n);
        layer_bwd(t, l, x, n);
    }
    return loss;
}

/* Tokens with a loss in e, after the cut to max_seq_len. */
static int32_t loss_tokens(const lt_trainer *t, const lt_example *e) {
    int32_t n = e->n < t->T ? e->n : t->T;
    int32_t p0 = e->n_prompt < 1 ? 1 : e->n_prompt;
    return n > p0 ? n - p0 : 0;
}

int lt_batch(lt_trainer *t, const lt_example *ex, int n, int want_grad, double *loss, int64_t *tok) {
    *loss = 0;
    if (tok) *tok = 0;
    if (n < 1) return sh_error_set(SH_EINVAL, "empty batch");
    for (int i = 0; i < n; i++) {
        int st = check_tokens(t, ex[i].tokens, ex[i].n < t->T ? ex[i].n : t->T);
        if (st) return st;
        if (!(ex[i].weight > 0) || ex[i].weight > 1e6f)
            return sh_error_set(SH_EINVAL, "example weight %g out of range (0, 1e6]", ex[i].weight);
    }
    t->training = want_grad;
    double total = 0;
    for (int i = 0; i < n; i++) {
        int32_t nt = loss_tokens(t, &ex[i]);
        if (!nt) continue;
        total += example(t, &ex[i], (double)ex[i].weight / ((double)n * nt), want_grad);
        if (tok) *tok += nt;
    }
    t->training = 0;
    *loss = total;
    return SH_OK;
}

void lt_zero_grad(lt_trainer *t) {
    for (int i = 0; i < t->hp.n_layer * LORA_N_TARGETS; i++) {
        const lora_adapter_mat *am = &t->ad->mats[i];
        if (!am->a) continue;
        memset(t->ga[i], 0, sizeof(float) * (size_t)(am->rank * am->n_in));
        memset(t->gb[i], 0, sizeof(float) * (size_t)(am->rank * am->n_out));
    }
}

const float *lt_grad_a(const lt_trainer *t, int layer, int target) {
    return t->ga[layer * LORA_N_TARGETS + target];
}

const float *lt_grad_b(const lt_trainer *t, int layer, int target) {
    return t->gb[layer * LORA_N_TARGETS + target];
}

static void adamw(const lt_trainer *t, float *w, float *g, float *m, float *v, int64_t n, float c1,
                  float c2) {
    const lt_params *p = &t->p;
    for (int64_t i = 0; i < n; i++) {
        m[i] = p->beta1 * m[i] + (1 - p->beta1) * g[i];
        v[i] = p->beta2 * v[i] + (1 - p->beta2) * g[i] * g[i];
        float mh = m[i] / c1, vh = v[i] / c2;
        w[i] -= p->lr * (mh / (sqrtf(vh) + p->adam_eps) + p->weight_decay * w[i]);
        g[i] = 0;
    }
}

void lt_step(lt_trainer *t) {
    t->n_steps++;
    float c1 = 1.0f - powf(t->p.beta1, (float)t->n_steps), c2 = 1.0f - powf(t->p.beta2, (float)t->n_steps);
    for (int i = 0; i < t->hp.n_layer * LORA_N_TARGETS; i++) {
        lora_adapter_mat *am = &t->ad->mats[i];
        if (!am->a) continue;
        adamw(t, am->a, t->ga[i], t->ma[i], t->va[i], (int64_t)am->rank * am->n_in, c1, c2);
        adamw(t, am->b, t->gb[i], t->mb[i], t->vb[i], (int64_t)am->rank * am->n_out, c1, c2);
    }
}

int lt_eval(lt_trainer *t, const lt_example *ex, int n, double *loss) {
    double sum = 0, wsum = 0;
    for (int i = 0; i < n; i++) {
        double l;
        if (!loss_tokens(t, &ex[i])) continue;
        int st = lt_batch(t, &ex[i], 1, 0, &l, NULL);
        if (st) return st;
        sum += l;
        wsum += ex[i].weight;
    }
    *loss = wsum > 0 ? sum / wsum : 0;
    return SH_OK;
}

int lt_train(lt_trainer *t, const lt_example *ex, int n, lt_progress_fn fn, void *user,
             lt_result *res) {
    int st = SH_OK, bs = t->p.batch_size < n ? t->p.batch_size : n;
    if (n < 1) return sh_error_set(SH_EINVAL, "no training examples");
    int *order = malloc(sizeof(int) * (size_t)n);
    lt_example *batch = malloc(sizeof(lt_example) * (size_t)bs);
    lt_result r = {0};
    if (!order || !batch) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    int per_epoch = (n + bs - 1) / bs;
    int steps = per_epoch * t->p.epochs;
    if ((st = lt_eval(t, ex, n, &r.loss_before))) goto out;
    uint64_t rs = t->p.seed;
    double t0 = now_s();
    lt_zero_grad(t);
    for (int ep = 0; ep < t->p.epochs && !st; ep++) {
        for (int i = 0; i < n; i++) order[i] = i;
        for (int i = n - 1; i > 0; i--) {
            rs = mix64(rs);
            int j = (int)(rs % (uint64_t)(i + 1)), x = order[i];
            order[i] = order[j];
            order[j] = x;
        }
        for (int b = 0; b < per_epoch && !st; b++) {
            int nb = 0;
            double wsum = 0;
            int64_t seq_tok = 0;
            for (int i = b * bs; i < n && i < (b + 1) * bs; i++) {
                batch[nb] = ex[order[i]];
                wsum += batch[nb].weight;
                seq_tok += batch[nb].n < t->T ? batch[nb].n : t->T;
                nb++;
            }
            double loss;
            if ((st = lt_batch(t, batch, nb, 1, &loss, NULL))) break;
            lt_step(t);
            r.steps++;
            r.tokens += seq_tok;
            double el = now_s() - t0;
            lt_progress pr = {r.steps, steps, wsum > 0 ? loss * nb / wsum : 0,
                              el > 0 ? (double)r.tokens / el : 0,
                              el / r.steps * (steps - r.steps)};
            if (fn && fn(user, &pr)) st = sh_error_set(SH_ECANCELED, "training canceled");
        }
    }
    r.seconds = now_s() - t0;
    if (!st) st = lt_eval(t, ex, n, &r.loss_after);
out:
    if (res) *res = r;
    free(order);
    free(batch);
    return st;
}
