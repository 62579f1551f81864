/* full_train.c - full-parameter training of small llama-style models (see full_train.h). */
#include "train/full_train.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/pool.h"
#include "engine/quant.h"

void ft_params_default(ft_params *p) {
    memset(p, 0, sizeof *p);
    p->lr = 3e-3f;
    p->lr_min = 3e-4f;
    p->warmup_steps = 50;
    p->beta1 = 0.9f;
    p->beta2 = 0.98f;
    p->adam_eps = 1e-8f;
    p->weight_decay = 0.01f;
    p->grad_clip = 1.0f;
    p->epochs = 1;
    p->batch_size = 16;
    p->max_seq_len = 256;
    p->seed = 42;
    p->n_threads = 1;
    p->init_std = 0.02f;
}

/* per-layer tensors, in GGUF naming */
enum { L_ATTN_NORM, L_Q, L_K, L_V, L_O, L_FFN_NORM, L_GATE, L_UP, L_DOWN, L_COUNT };
static const char *const layer_names[L_COUNT] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
    "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};

typedef struct {
    char name[64];
    int64_t n_in, n_out; /* 1-D tensors: n_out = 1 */
    int64_t off;         /* into P / G / M1 / M2 */
    int matrix;
} ft_tensor;

#define FT_MAX_LAYERS 256

struct ft_trainer {
    ft_params p;
    model *m; /* source file: metadata and initial weights */
    model_hparams hp;
    int tied;
    int64_t D, QD, KD, F, V, H, HK, HD, L; /* shapes */
    int64_t n_params;
    float *P, *G, *M1, *M2; /* (n_params) each: parameters, gradients, Adam moments */
    ft_tensor *tens;
    int n_tens;
    int i_embd, i_out_norm, i_output; /* i_output == i_embd when tied */
    int64_t step;
    pool *pool;
    uint64_t rng;

    int64_t max_rows, max_t;
    /* activations of one batch, kept for the backward pass */
    float *x;        /* (L + 1, rows, D): input of each layer, then of the final norm */
    float *xm;       /* (L, rows, D): residual stream between attention and FFN */
    float *s1, *s2;  /* (L, rows): RMSNorm inverse scales */
    float *xn1, *xn2;/* (L, rows, D) */
    float *q, *k, *v;/* (L, rows, QD | KD | KD), q and k rotated */
    float *att;      /* (L, rows, QD): attention output, input of attn_output */
    float *prob;     /* (L, batch, H, max_t, max_t): softmax rows */
    float *ga, *up, *hh; /* (L, rows, F): gate and up products, silu(gate) * up */
    float *sf, *xf;  /* (rows), (rows, D): final norm */
    float *logits;   /* (rows, V); becomes d logits during the backward pass */
    /* backward scratch */
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dga, *dup, *dh;
    float *wt; /* transposed weight (largest matrix) */
    float *at; /* transposed activation gradient (rows x largest n_out) */
    float *rope_cos, *rope_sin; /* (max_t, rope_dim / 2) */
    float *scr;                 /* (threads, max_t): attention backward rows */
    /* batch layout */
    int32_t *tok, *tgt; /* (rows): input token, target (-1: no loss) */
    float *coef;        /* (rows): loss weight of the row */
    int32_t *seq_off, *seq_len; /* (batch) */
    int n_seq;
    int64_t n_rows;
};

/* ------------------------------------------------------------------------------------------ */
/* matrix products: C (M x N) = [C +] A (M x K) . B (K x N), all row-major */

typedef struct {
    int64_t M, N, K, lda, ldb, ldc;
    const float *A, *B;
    float *C;
    int acc;
} gemm_args;

static void gemm_generic(const gemm_args *g, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
        float *c = g->C + i * g->ldc;
        const float *a = g->A + i * g->lda;
        if (!g->acc) memset(c, 0, (size_t)g->N * sizeof *c);
        for (int64_t k = 0; k < g->K; k++) {
            const float av = a[k], *b = g->B + k * g->ldb;
            for (int64_t j = 0; j < g->N; j++) c[j] += av * b[j];
        }
    }
}

__attribute__((target("avx2,fma"))) static void gemm_avx2(const gemm_args *g, int64_t i0,
                                                           int64_t i1) {
    const int64_t N = g->N, K = g->K, lda = g->lda, ldb = g->ldb, ldc = g->ldc;
    int64_t j = 0;
    for (; j + 16 <= N; j += 16) {
        int64_t i = i0;
        for (; i + 4 <= i1; i += 4) {
            __m256 c[4][2];
            for (int r = 0; r < 4; r++)
                for (int h = 0; h < 2; h++)
                    c[r][h] = g->acc ? _mm256_loadu_ps(g->C + (i + r) * ldc + j + 8 * h)
                                     : _mm256_setzero_ps();
            const float *a = g->A + i * lda, *b = g->B + j;
            for (int64_t k = 0; k < K; k++, b += ldb) {
                __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
                for (int r = 0; r < 4; r++) {
                    __m256 x = _mm256_broadcast_ss(a + r * lda + k);
                    c[r][0] = _mm256_fmadd_ps(x, b0, c[r][0]);
                    c[r][1] = _mm256_fmadd_ps(x, b1, c[r][1]);
                }
            }
            for (int r = 0; r < 4; r++)
                for (int h = 0; h < 2; h++) _mm256_storeu_ps(g->C + (i + r) * ldc + j + 8 * h, c[r][h]);
        }
        for (; i < i1; i++) {
            __m256 c0 = g->acc ? _mm256_loadu_ps(g->C + i * ldc + j) : _mm256_setzero_ps();
            __m256 c1 = g->acc ? _mm256_loadu_ps(g->C + i * ldc + j + 8) : _mm256_setzero_ps();
            const float *a = g->A + i * lda, *b = g->B + j;
            for (int64_t k = 0; k < K; k++, b += ldb) {
                __m256 x = _mm256_broadcast_ss(a + k);
                c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b), c0);
                c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + 8), c1);
            }
            _mm256_storeu_ps(g->C + i * ldc + j, c0);
            _mm256_storeu_ps(g->C + i * ldc + j + 8, c1);
        }
    }
    for (; j < N; j++) /* tail columns */
        for (int64_t i = i0; i < i1; i++) {
            float s = g->acc ? g->C[i * ldc + j] : 0.0f;
            for (int64_t k = 0; k < K; k++) s += g->A[i * lda + k] * g->B[k * ldb + j];
            g->C[i * ldc + j] = s;
        }
}

__attribute__((target("avx512f"))) static void gemm_avx512(const gemm_args *g, int64_t i0,
                                                           int64_t i1) {
    const int64_t N = g->N, K = g->K, lda = g->lda, ldb = g->ldb, ldc = g->ldc;
    int64_t j = 0;
    for (; j + 32 <= N; j += 32) {
        int64_t i = i0;
        for (; i + 6 <= i1; i += 6) {
            __m512 c[6][2];
            for (int r = 0; r < 6; r++)
                for (int h = 0; h < 2; h++)
                    c[r][h] = g->acc ? _mm512_loadu_ps(g->C + (i + r) * ldc + j + 16 * h)
                                     : _mm512_setzero_ps();
            const float *a = g->A + i * lda, *b = g->B + j;
            for (int64_t k = 0; k < K; k++, b += ldb) {
                __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
                for (int r = 0; r < 6; r++) {
                    __m512 x = _mm512_set1_ps(a[r * lda + k]);
                    c[r][0] = _mm512_fmadd_ps(x, b0, c[r][0]);
                    c[r][1] = _mm512_fmadd_ps(x, b1, c[r][1]);
                }
            }
            for (int r = 0; r < 6; r++)
                for (int h = 0; h < 2; h++)
                    _mm512_storeu_ps(g->C + (i + r) * ldc + j + 16 * h, c[r][h]);
        }
        for (; i < i1; i++) {
            __m512 c0 = g->acc ? _mm512_loadu_ps(g->C + i * ldc + j) : _mm512_setzero_ps();
            __m512 c1 = g->acc ? _mm512_loadu_ps(g->C + i * ldc + j + 16) : _mm512_setzero_ps();
            const float *a = g->A + i * lda, *b = g->B + j;
            for (int64_t k = 0; k < K; k++, b += ldb) {
                __m512 x = _mm512_set1_ps(a[k]);
                c0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(b), c0);
                c1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(b + 16), c1);
            }
            _mm512_storeu_ps(g->C + i * ldc + j, c0);
            _mm512_storeu_ps(g->C + i * ldc + j + 16, c1);
        }
    }
    for (; j < N; j += 16) { /* 1..31 columns left: 16 at a time, masked */
        __mmask16 mk = N - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - j)) - 1);
        for (int64_t i = i0; i < i1; i++) {
            __m512 c0 = g->acc ? _mm512_maskz_loadu_ps(mk, g->C + i * ldc + j) : _mm512_setzero_ps();
            const float *a = g->A + i * lda, *b = g->B + j;
            for (int64_t k = 0; k < K; k++, b += ldb)
                c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[k]), _mm512_maskz_loadu_ps(mk, b), c0);
            _mm512_mask_storeu_ps(g->C + i * ldc + j, mk, c0);
        }
    }
}

static void gemm_task(void *arg, int64_t i0, int64_t i1, int ith) {
    (void)ith;
    const gemm_args *g = arg;
    int isa = qt_isa();
    if (isa >= QT_ISA_AVX512) gemm_avx512(g, i0, i1);
    else if (isa >= QT_ISA_AVX2) gemm_avx2(g, i0, i1);
    else gemm_generic(g, i0, i1);
}

static void gemm(ft_trainer *t, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float *C, int64_t ldc, int acc) {
    gemm_args g = {M, N, K, lda, ldb, ldc, A, B, C, acc};
    if (M <= 0 || N <= 0) return;
    pool_run(t->pool, gemm_task, &g, M, 6);
}

/* dst (cols x rows) = src (rows x cols)^T */
static void transpose(float *dst, const float *src, int64_t rows, int64_t cols) {
    for (int64_t i0 = 0; i0 < rows; i0 += 32)
        for (int64_t j0 = 0; j0 < cols; j0 += 32)
            for (int64_t i = i0; i < i0 + 32 && i < rows; i++)
                for (int64_t j = j0; j < j0 + 32 && j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

/* Y (rows x n_out) = X (rows x n_in) . W^T, W (n_out x n_in) */
static void mm_fwd(ft_trainer *t, const float *X, const float *W, int64_t n_in, int64_t n_out,
                   float *Y, int64_t rows) {
    transpose(t->wt, W, n_out, n_in);
    gemm(t, rows, n_out, n_in, X, n_in, t->wt, n_out, Y, n_out, 0);
}

/* dX [+]= dY . W; dW += dY^T . X */
static void mm_bwd(ft_trainer *t, const float *dY, const float *X, const float *W, int64_t n_in,
                   int64_t n_out, float *dX, int acc_dx, float *dW, int64_t rows) {
    if (dX) gemm(t, rows, n_in, n_out, dY, n_out, W, n_in, dX, n_in, acc_dx);
    transpose(t->at, dY, rows, n_out);
    gemm(t, n_out, n_in, rows, t->at, rows, X, n_in, dW, n_in, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* set-up */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_gauss(uint64_t *s) {
    double u1 = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static int add_tensor(ft_trainer *t, const char *name, int64_t n_in, int64_t n_out) {
    ft_tensor *e = &t->tens[t->n_tens++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->n_in = n_in;
    e->n_out = n_out;
    e->matrix = n_out > 1;
    e->off = t->n_params;
    t->n_params += n_in * n_out;
    return t->n_tens - 1;
}

static const ft_tensor *layer_t(const ft_trainer *t, int64_t l, int k) {
    return &t->tens[3 + l * L_COUNT + k];
}
#define LW(t, l, k) ((t)->P + layer_t(t, l, k)->off)
#define LG(t, l, k) ((t)->G + layer_t(t, l, k)->off)

/* Copies (dequantizes) a tensor of the source file into its parameter slot. */
static int load_weights(ft_trainer *t, const ft_tensor *e) {
    const gguf_tensor *gt = gguf_find_tensor(model_gguf(t->m), e->name);
    if (!gt) return sh_error_set(SH_ENOTFOUND, "tensor %s missing", e->name);
    if (gt->ne[0] != e->n_in || (e->matrix ? gt->ne[1] : 1) != e->n_out)
        return sh_error_set(SH_EFORMAT, "tensor %s has an unexpected shape", e->name);
    size_t rb = qt_row_bytes(gt->type, e->n_in);
    if (!rb || rb * (uint64_t)e->n_out > gt->nbytes)
        return sh_error_set(SH_EFORMAT, "tensor %s: bad size", e->name);
    for (int64_t r = 0; r < e->n_out; r++)
        qt_dequant_row(gt->type, (const uint8_t *)gt->data + r * rb, t->P + e->off + r * e->n_in,
                       e->n_in);
    return SH_OK;
}

static float *xalloc(size_t n, int *st) {
    if (*st) return NULL;
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) *st = sh_error_set(SH_ENOMEM, "out of memory for training buffers (%zu floats)", n);
    return p;
}

int ft_new(ft_trainer **out, const char *path, const ft_params *p) {
    *out = NULL;
    int st;
    ft_trainer *t = calloc(1, sizeof *t);
    if (!t) return sh_error_set(SH_ENOMEM, "out of memory");
    t->p = *p;
    if (t->p.batch_size < 1 || t->p.batch_size > 4096 || t->p.max_seq_len < 2 ||
        t->p.max_seq_len > 8192 || t->p.n_threads < 1) {
        st = sh_error_set(SH_EINVAL, "bad batch size, sequence length or thread count");
        goto out;
    }
    if ((st = model_load(&t->m, path))) goto out;
    t->hp = *model_hp(t->m);
    const model_hparams *hp = &t->hp;
    const gguf *g = model_gguf(t->m);
    if (gguf_find_tensor(g, "blk.0.attn_q.bias") || gguf_find_tensor(g, "blk.0.attn_q_norm.weight") ||
        hp->head_dim_v != hp->head_dim || hp->n_layer > FT_MAX_LAYERS) {
        st = sh_error_set(SH_EUNSUPPORTED, "full training supports plain llama-style blocks only "
                                           "(no biases, no q/k norms)");
        goto out;
    }
    t->tied = gguf_find_tensor(g, "output.weight") == NULL;
    t->D = hp->n_embd;
    t->H = hp->n_head;
    t->HK = hp->n_head_kv;
    t->HD = hp->head_dim;
    t->QD = t->H * t->HD;
    t->KD = t->HK * t->HD;
    t->F = hp->n_ff;
    t->V = hp->n_vocab;
    t->L = hp->n_layer;
    t->tens = calloc((size_t)(3 + t->L * L_COUNT), sizeof *t->tens);
    if (!t->tens) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    t->i_embd = add_tensor(t, "token_embd.weight", t->D, t->V);
    t->i_out_norm = add_tensor(t, "output_norm.weight", t->D, 1);
    t->i_output = t->tied ? t->i_embd : add_tensor(t, "output.weight", t->D, t->V);
    if (t->tied) t->n_tens++; /* keep layer tensors at index 3 */
    for (int64_t l = 0; l < t->L; l++) {
        const int64_t shape[L_COUNT][2] = {
            {t->D, 1}, {t->D, t->QD}, {t->D, t->KD}, {t->D, t->KD}, {t->QD, t->D},
            {t->D, 1}, {t->D, t->F},  {t->D, t->F},  {t->F, t->D}};
        for (int k = 0; k < L_COUNT; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, layer_names[k]);
            add_tensor(t, nm, shape[k][0], shape[k][1]);
        }
    }
    st = SH_OK;
    t->P = xalloc((size_t)t->n_params, &st);
    t->G = xalloc((size_t)t->n_params, &st);
    t->M1 = xalloc((size_t)t->n_params, &st);
    t->M2 = xalloc((size_t)t->n_params, &st);
    if (st) goto out;
    t->rng = p->seed;
    for (int i = 0; i < t->n_tens; i++) {
        const ft_tensor *e = &t->tens[i];
        if (!e->name[0]) continue; /* the slot a tied output leaves */
        if (!p->reinit) {
            if ((st = load_weights(t, e))) goto out;
            continue;
        }
        float *w = t->P + e->off;
        int64_t n = e->n_in * e->n_out;
        if (!e->matrix) {
            for (int64_t j = 0; j < n; j++) w[j] = 1.0f;
            continue;
        }
        /* residual outputs scaled down with depth, as GPT-2 does, so the stream stays O(1) */
        float sd = p->init_std;
        if (strstr(e->name, "attn_output") || strstr(e->name, "ffn_down"))
            sd /= sqrtf(2.0f * (float)t->L);
        for (int64_t j = 0; j < n; j++) w[j] = sd * rng_gauss(&t->rng);
    }

    int64_t R = (int64_t)p->batch_size * p->max_seq_len, T = p->max_seq_len, L = t->L;
    int64_t big = t->V > t->F ? t->V : t->F;
    if (t->QD > big) big = t->QD;
    t->max_rows = R;
    t->max_t = T;
    t->x = xalloc((size_t)((L + 1) * R * t->D), &st);
    t->xm = xalloc((size_t)(L * R * t->D), &st);
    t->s1 = xalloc((size_t)(L * R), &st);
    t->s2 = xalloc((size_t)(L * R), &st);
    t->xn1 = xalloc((size_t)(L * R * t->D), &st);
    t->xn2 = xalloc((size_t)(L * R * t->D), &st);
    t->q = xalloc((size_t)(L * R * t->QD), &st);
    t->k = xalloc((size_t)(L * R * t->KD), &st);
    t->v = xalloc((size_t)(L * R * t->KD), &st);
    t->att = xalloc((size_t)(L * R * t->QD), &st);
    t->prob = xalloc((size_t)(L * p->batch_size * t->H * T * T), &st);
    t->ga = xalloc((size_t)(L * R * t->F), &st);
    t->up = xalloc((size_t)(L * R * t->F), &st);
    t->hh = xalloc((size_t)(L * R * t->F), &st);
    t->sf = xalloc((size_t)R, &st);
    t->xf = xalloc((size_t)(R * t->D), &st);
    t->logits = xalloc((size_t)(R * t->V), &st);
    t->dx = xalloc((size_t)(R * t->D), &st);
    t->dxn = xalloc((size_t)(R * t->D), &st);
    t->dq = xalloc((size_t)(R * t->QD), &st);
    t->dk = xalloc((size_t)(R * t->KD), &st);
    t->dv = xalloc((size_t)(R * t->KD), &st);
    t->datt = xalloc((size_t)(R * t->QD), &st);
    t->dga = xalloc((size_t)(R * t->F), &st);
    t->dup = xalloc((size_t)(R * t->F), &st);
    t->dh = xalloc((size_t)(R * t->F), &st);
    t->wt = xalloc((size_t)(big * (t->D > t->F ? t->D : t->F)), &st);
    t->at = xalloc((size_t)(R * big), &st);
    t->rope_cos = xalloc((size_t)(T * (hp->rope_dim / 2 + 1)), &st);
    t->rope_sin = xalloc((size_t)(T * (hp->rope_dim / 2 + 1)), &st);
    t->coef = xalloc((size_t)R, &st);
    t->scr = xalloc((size_t)(p->n_threads * T), &st);
    if (st) goto out;
    t->tok = calloc((size_t)R, sizeof *t->tok);
    t->tgt = calloc((size_t)R, sizeof *t->tgt);
    t->seq_off = calloc((size_t)p->batch_size, sizeof *t->seq_off);
    t->seq_len = calloc((size_t)p->batch_size, sizeof *t->seq_len);
    if (!t->tok || !t->tgt || !t->seq_off || !t->seq_len) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    int half = hp->rope_dim / 2;
    for (int64_t pos = 0; pos < T; pos++) { /* the engine's angles, in the same float steps */
        float theta = (float)pos, scale = powf(hp->rope_base, -2.0f / (float)hp->rope_dim);
        for (int i = 0; i < half; i++) {
            t->rope_cos[pos * half + i] = cosf(theta);
            t->rope_sin[pos * half + i] = sinf(theta);
            theta *= scale;
        }
    }
    if ((st = pool_new(&t->pool, p->n_threads))) goto out;
    *out = t;
    t = NULL;
out:
    ft_free(t);
    return st;
}

void ft_free(ft_trainer *t) {
    if (!t) return;
    float *bufs[] = {t->P, t->G, t->M1, t->M2, t->x, t->xm, t->s1, t->s2, t->xn1, t->xn2, t->q, t->k,
                     t->v, t->att, t->prob, t->ga, t->up, t->hh, t->sf, t->xf, t->logits, t->dx,
                     t->dxn, t->dq, t->dk, t->dv, t->datt, t->dga, t->dup, t->dh, t->wt, t->at,
                     t->rope_cos, t->rope_sin, t->coef, t->scr};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(t->tok);
    free(t->tgt);
    free(t->seq_off);
    free(t->seq_len);
    free(t->tens);
    pool_free(t->pool);
    model_free(t->m);
    free(t);
}

int64_t ft_n_params(const ft_trainer *t) { return t->n_params; }

static const ft_tensor *find(const ft_trainer *t, const char *name) {
    for (int i = 0; i < t->n_tens; i++)
        if (t->tens[i].name[0] && !strcmp(t->tens[i].name, name)) return &t->tens[i];
    return NULL;
}

float *ft_grad(ft_trainer *t, const char *name, int64_t *n) {
    const ft_tensor *e = find(t, name);
    if (n) *n = e ? e->n_in * e->n_out : 0;
    return e ? t->G + e->off : NULL;
}

float *ft_param(ft_trainer *t, const char *name, int64_t *n) {
    const ft_tensor *e = find(t, name);
    if (n) *n = e ? e->n_in * e->n_out : 0;
    return e ? t->P + e->off : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* forward */

static void rmsnorm_fwd(float *y, float *s, const float *x, const float *w, int64_t rows, int64_t n,
                        float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float sc = 1.0f / sqrtf((float)(ss / n) + eps);
        s[r] = sc;
        for (int64_t i = 0; i < n; i++) y[r * n + i] = xr[i] * sc * w[i];
    }
}

/* y = x * s * w: dx = s * (w * dy) - x * s^3 / n * sum(w * dy * x); dw += dy * x * s */
static void rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *s, const float *w,
                        float *dw, int64_t rows, int64_t n, int acc) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n, *dyr = dy + r * n;
        float sc = s[r];
        double dot = 0;
        for (int64_t i = 0; i < n; i++) {
            dot += (double)w[i] * dyr[i] * xr[i];
            dw[i] += dyr[i] * xr[i] * sc;
        }
        float c = (float)(dot * sc * sc * sc / (double)n);
        for (int64_t i = 0; i < n; i++) {
            float d = sc * w[i] * dyr[i] - xr[i] * c;
            dx[r * n + i] = acc ? dx[r * n + i] + d : d;
        }
    }
}

/* Rotates (dir = 1) or rotates back (dir = -1, the backward pass) the heads of rows. */
static void rope_rows(const ft_trainer *t, float *v, int64_t width, int64_t n_heads, int dir) {
    int half = t->hp.rope_dim / 2, neox = t->hp.rope_neox;
    for (int e = 0; e < t->n_seq; e++)
        for (int32_t p = 0; p < t->seq_len[e]; p++) {
            float *row = v + (t->seq_off[e] + p) * width;
            const float *cs = t->rope_cos + p * half, *sn = t->rope_sin + p * half;
            for (int64_t h = 0; h < n_heads; h++) {
                float *x = row + h * t->HD;
                for (int i = 0; i < half; i++) {
                    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                    float x0 = x[a], x1 = x[b], sv = dir * sn[i];
                    x[a] = x0 * cs[i] - x1 * sv;
                    x[b] = x0 * sv + x1 * cs[i];
                }
            }
        }
}

static float *prob_at(const ft_trainer *t, int64_t l, int e, int64_t h) {
    return t->prob + ((l * t->p.batch_size + e) * t->H + h) * t->max_t * t->max_t;
}

typedef struct {
    ft_trainer *t;
    int64_t l;
} att_args;

/* causal attention of one (sequence, head) per item */
static void att_fwd_task(void *arg, int64_t b, int64_t e_, int ith) {
    (void)ith;
    const att_args *a = arg;
    ft_trainer *t = a->t;
    int64_t l = a->l, QD = t->QD, KD = t->KD, HD = t->HD, R = t->max_rows;
    const float *q = t->q + l * R * QD, *k = t->k + l * R * KD, *v = t->v + l * R * KD;
    float *o = t->att + l * R * QD;
    float scale = 1.0f / sqrtf((float)HD);
    for (int64_t it = b; it < e_; it++) {
        int e = (int)(it / t->H);
        int64_t h = it % t->H, kh = h / (t->H / t->HK), off = t->seq_off[e], T = t->seq_len[e];
        float *P = prob_at(t, l, e, h);
        for (int64_t i = 0; i < T; i++) {
            const float *qi = q + (off + i) * QD + h * HD;
            float *pr = P + i * t->max_t, mx = -INFINITY;
            for (int64_t j = 0; j <= i; j++) {
                const float *kj = k + (off + j) * KD + kh * HD;
                float s = 0;
                for (int64_t d = 0; d < HD; d++) s += qi[d] * kj[d];
                pr[j] = s * scale;
                if (pr[j] > mx) mx = pr[j];
            }
            float sum = 0;
            for (int64_t j = 0; j <= i; j++) sum += pr[j] = expf(pr[j] - mx);
            float inv = 1.0f / sum;
            float *oi = o + (off + i) * QD + h * HD;
            memset(oi, 0, (size_t)HD * sizeof *oi);
            for (int64_t j = 0; j <= i; j++) {
                pr[j] *= inv;
                const float *vj = v + (off + j) * KD + kh * HD;
                for (int64_t d = 0; d < HD; d++) oi[d] += pr[j] * vj[d];
            }
        }
    }
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

static void forward(ft_trainer *t) {
    int64_t D = t->D, R = t->max_rows, N = t->n_rows, F = t->F;
    float eps = t->hp.norm_eps;
    const float *E = t->P + t->tens[t->i_embd].off;
    for (int64_t r = 0; r < N; r++) memcpy(t->x + r * D, E + (int64_t)t->tok[r] * D, (size_t)D * 4);
    for (int64_t l = 0; l < t->L; l++) {
        float *x = t->x + l * R * D, *xn1 = t->xn1 + l * R * D, *xn2 = t->xn2 + l * R * D;
        float *q = t->q + l * R * t->QD, *k = t->k + l * R * t->KD, *v = t->v + l * R * t->KD;
        float *att = t->att + l * R * t->QD, *xm = t->xm + l * R * D, *xo = t->x + (l + 1) * R * D;
        float *ga = t->ga + l * R * F, *up = t->up + l * R * F, *hh = t->hh + l * R * F;
        rmsnorm_fwd(xn1, t->s1 + l * R, x, LW(t, l, L_ATTN_NORM), N, D, eps);
        mm_fwd(t, xn1, LW(t, l, L_Q), D, t->QD, q, N);
        mm_fwd(t, xn1, LW(t, l, L_K), D, t->KD, k, N);
        mm_fwd(t, xn1, LW(t, l, L_V), D, t->KD, v, N);
        rope_rows(t, q, t->QD, t->H, 1);
        rope_rows(t, k, t->KD, t->HK, 1);
        att_args aa = {t, l};
        pool_run(t->pool, att_fwd_task, &aa, (int64_t)t->n_seq * t->H, 1);
        mm_fwd(t, att, LW(t, l, L_O), t->QD, D, xm, N);
        for (int64_t i = 0; i < N * D; i++) xm[i] += x[i];
        rmsnorm_fwd(xn2, t->s2 + l * R, xm, LW(t, l, L_FFN_NORM), N, D, eps);
        mm_fwd(t, xn2, LW(t, l, L_GATE), D, F, ga, N);
        mm_fwd(t, xn2, LW(t, l, L_UP), D, F, up, N);
        for (int64_t i = 0; i < N * F; i++) hh[i] = silu(ga[i]) * up[i];
        mm_fwd(t, hh, LW(t, l, L_DOWN), F, D, xo, N);
        for (int64_t i = 0; i < N * D; i++) xo[i] += xm[i];
    }
    rmsnorm_fwd(t->xf, t->sf, t->x + t->L * R * D, t->P + t->tens[t->i_out_norm].off, N, D, eps);
    mm_fwd(t, t->xf, t->P + t->tens[t->i_output].off, D, t->V, t->logits, N);
}

/* ------------------------------------------------------------------------------------------ */
/* backward */

/* one sequence per item: its heads in turn, since heads of a group share K and V rows */
static void att_bwd_task(void *arg, int64_t b, int64_t e_, int ith) {
    const att_args *a = arg;
    ft_trainer *t = a->t;
    int64_t l = a->l, QD = t->QD, KD = t->KD, HD = t->HD, R = t->max_rows;
    const float *q = t->q + l * R * QD, *k = t->k + l * R * KD, *v = t->v + l * R * KD;
    float scale = 1.0f / sqrtf((float)HD), *dp = t->scr + (int64_t)ith * t->max_t;
    for (int64_t e = b; e < e_; e++) {
        int64_t off = t->seq_off[e], T = t->seq_len[e];
        for (int64_t h = 0; h < t->H; h++) {
            int64_t kh = h / (t->H / t->HK);
            const float *P = prob_at(t, l, (int)e, h);
            for (int64_t i = 0; i < T; i++) {
                const float *doi = t->datt + (off + i) * QD + h * HD, *pr = P + i * t->max_t;
                const float *qi = q + (off + i) * QD + h * HD;
                float *dqi = t->dq + (off + i) * QD + h * HD;
                double sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    const float *vj = v + (off + j) * KD + kh * HD;
                    float *dvj = t->dv + (off + j) * KD + kh * HD, s = 0;
                    for (int64_t d = 0; d < HD; d++) {
                        s += doi[d] * vj[d];
                        dvj[d] += pr[j] * doi[d];
                    }
                    dp[j] = s;
                    sum += (double)pr[j] * s;
                }
                memset(dqi, 0, (size_t)HD * sizeof *dqi);
                for (int64_t j = 0; j <= i; j++) {
                    float ds = pr[j] * (dp[j] - (float)sum) * scale;
                    const float *kj = k + (off + j) * KD + kh * HD;
                    float *dkj = t->dk + (off + j) * KD + kh * HD;
                    for (int64_t d = 0; d < HD; d++) {
                        dqi[d] += ds * kj[d];
                        dkj[d] += ds * qi[d];
                    }
                }
            }
        }
    }
}

static void backward(ft_trainer *t) {
    int64_t D = t->D, R = t->max_rows, N = t->n_rows, F = t->F, QD = t->QD, KD = t->KD;
    const ft_tensor *out = &t->tens[t->i_output], *on = &t->tens[t->i_out_norm];
    mm_bwd(t, t->logits, t->xf, t->P + out->off, D, t->V, t->dxn, 0, t->G + out->off, N);
    rmsnorm_bwd(t->dx, t->dxn, t->x + t->L * R * D, t->sf, t->P + on->off, t->G + on->off, N, D, 0);
    for (int64_t l = t->L - 1; l >= 0; l--) {
        const float *xn1 = t->xn1 + l * R * D, *xn2 = t->xn2 + l * R * D, *xm = t->xm + l * R * D;
        const float *ga = t->ga + l * R * F, *up = t->up + l * R * F, *hh = t->hh + l * R * F;
        mm_bwd(t, t->dx, hh, LW(t, l, L_DOWN), F, D, t->dh, 0, LG(t, l, L_DOWN), N);
        for (int64_t i = 0; i < N * F; i++) {
            float s = 1.0f / (1.0f + expf(-ga[i]));
            t->dga[i] = t->dh[i] * up[i] * s * (1.0f + ga[i] * (1.0f - s));
            t->dup[i] = t->dh[i] * ga[i] * s;
        }
        mm_bwd(t, t->dga, xn2, LW(t, l, L_GATE), D, F, t->dxn, 0, LG(t, l, L_GATE), N);
        mm_bwd(t, t->dup, xn2, LW(t, l, L_UP), D, F, t->dxn, 1, LG(t, l, L_UP), N);
        rmsnorm_bwd(t->dx, t->dxn, xm, t->s2 + l * R, LW(t, l, L_FFN_NORM), LG(t, l, L_FFN_NORM),
                    N, D, 1);
        mm_bwd(t, t->dx, t->att + l * R * QD, LW(t, l, L_O), QD, D, t->datt, 0, LG(t, l, L_O), N);
        memset(t->dk, 0, (size_t)(N * KD) * sizeof *t->dk);
        memset(t->dv, 0, (size_t)(N * KD) * sizeof *t->dv);
        att_args aa = {t, l};
        pool_run(t->pool, att_bwd_task, &aa, t->n_seq, 1);
        rope_rows(t, t->dq, QD, t->H, -1);
        rope_rows(t, t->dk, KD, t->HK, -1);
        mm_bwd(t, t->dq, xn1, LW(t, l, L_Q), D, QD, t->dxn, 0, LG(t, l, L_Q), N);
        mm_bwd(t, t->dk, xn1, LW(t, l, L_K), D, KD, t->dxn, 1, LG(t, l, L_K), N);
        mm_bwd(t, t->dv, xn1, LW(t, l, L_V), D, KD, t->dxn, 1, LG(t, l, L_V), N);
        rmsnorm_bwd(t->dx, t->dxn, t->x + l * R * D, t->s1 + l * R, LW(t, l, L_ATTN_NORM),
                    LG(t, l, L_ATTN_NORM), N, D, 1);
    }
    float *gE = t->G + t->tens[t->i_embd].off;
    for (int64_t r = 0; r < N; r++) {
        float *g = gE + (int64_t)t->tok[r] * D;
        for (int64_t i = 0; i < D; i++) g[i] += t->dx[r * D + i];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* batches */

/* Packs ex[0..n) into rows; per-row loss coefficients w_e / (n_loss_rows_e * n_with_loss). */
static int layout(ft_trainer *t, const lt_example *ex, int n) {
    if (n < 1 || n > t->p.batch_size)
        return sh_error_set(SH_EINVAL, "batch of %d examples (1..%d)", n, t->p.batch_size);
    int64_t rows = 0;
    int with_loss = 0;
    for (int e = 0; e < n; e++) {
        int32_t len = ex[e].n < t->p.max_seq_len ? ex[e].n : t->p.max_seq_len;
        if (len < 1 || !ex[e].tokens || !(ex[e].weight > 0))
            return sh_error_set(SH_EINVAL, "example %d is empty or has a weight <= 0", e);
        t->seq_off[e] = (int32_t)rows;
        t->seq_len[e] = len;
        int32_t first = ex[e].n_prompt > 1 ? ex[e].n_prompt - 1 : 0, n_loss = 0;
        for (int32_t i = 0; i < len; i++) {
            int32_t id = ex[e].tokens[i];
            if (id < 0 || id >= t->V) return sh_error_set(SH_EINVAL, "token %d out of range", id);
            t->tok[rows + i] = id;
            t->tgt[rows + i] = i >= first && i + 1 < len ? ex[e].tokens[i + 1] : -1;
            n_loss += t->tgt[rows + i] >= 0;
        }
        for (int32_t i = 0; i < len; i++) t->coef[rows + i] = n_loss ? ex[e].weight / n_loss : 0;
        with_loss += n_loss > 0;
        rows += len;
    }
    for (int64_t r = 0; r < rows; r++) t->coef[r] /= with_loss ? with_loss : 1;
    t->n_seq = n;
    t->n_rows = rows;
    return SH_OK;
}

/* Cross-entropy of the rows with a target; logits become d objective / d logits.
 * seq_loss[e] (may be NULL) receives each example's mean loss. */
static double loss_rows(ft_trainer *t, int want_grad, double *seq_loss, int64_t *n_tok) {
    double obj = 0;
    int64_t V = t->V, cnt = 0;
    for (int e = 0; e < t->n_seq; e++) {
        double sum = 0;
        int64_t ne = 0;
        for (int64_t r = t->seq_off[e]; r < t->seq_off[e] + t->seq_len[e]; r++) {
            float *z = t->logits + r * V;
            if (t->tgt[r] < 0) {
                if (want_grad) memset(z, 0, (size_t)V * sizeof *z);
                continue;
            }
            float mx = z[0];
            for (int64_t i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
            double se = 0;
            for (int64_t i = 0; i < V; i++) se += exp((double)(z[i] - mx));
            double lse = mx + log(se), nll = lse - z[t->tgt[r]];
            sum += nll;
            ne++;
            obj += t->coef[r] * nll;
            if (want_grad) {
                float c = t->coef[r];
                for (int64_t i = 0; i < V; i++) z[i] = c * (float)exp((double)z[i] - lse);
                z[t->tgt[r]] -= c;
            }
        }
        if (seq_loss) seq_loss[e] = ne ? sum / (double)ne : 0;
        cnt += ne;
    }
    if (n_tok) *n_tok = cnt;
    return obj;
}

static int run_batch(ft_trainer *t, const lt_example *ex, int n, int want_grad, double *loss,
                     double *seq_loss, int64_t *tok) {
    int st = layout(t, ex, n);
    if (st) return st;
    forward(t);
    double obj = loss_rows(t, want_grad, seq_loss, tok);
    if (want_grad) backward(t);
    if (loss) *loss = obj;
    return SH_OK;
}

int ft_batch(ft_trainer *t, const lt_example *ex, int n, int want_grad, double *loss, int64_t *tok) {
    return run_batch(t, ex, n, want_grad, loss, NULL, tok);
}

int ft_logits(ft_trainer *t, const int32_t *tokens, int32_t n, int last_only, float *logits) {
    if (n < 1 || n > t->p.max_seq_len)
        return sh_error_set(SH_EINVAL, "%d tokens (1..%d)", n, t->p.max_seq_len);
    lt_example e = {tokens, n, n, 1.0f};
    int st = layout(t, &e, 1);
    if (st) return st;
    forward(t);
    if (last_only) memcpy(logits, t->logits + (int64_t)(n - 1) * t->V, (size_t)t->V * sizeof *logits);
    else memcpy(logits, t->logits, (size_t)(n * t->V) * sizeof *logits);
    return SH_OK;
}

void ft_zero_grad(ft_trainer *t) { memset(t->G, 0, (size_t)t->n_params * sizeof *t->G); }

double ft_step(ft_trainer *t, float lr) {
    double nrm = 0;
    for (int64_t i = 0; i < t->n_params; i++) nrm += (double)t->G[i] * t->G[i];
    nrm = sqrt(nrm);
    float clip = t->p.grad_clip > 0 && nrm > t->p.grad_clip ? (float)(t->p.grad_clip / nrm) : 1.0f;
    t->step++;
    float b1 = t->p.beta1, b2 = t->p.beta2;
    float c1 = 1.0f - powf(b1, (float)t->step), c2 = 1.0f - powf(b2, (float)t->step);
    for (int i = 0; i < t->n_tens; i++) {
        const ft_tensor *e = &t->tens[i];
        if (!e->name[0]) continue;
        float wd = e->matrix ? t->p.weight_decay : 0.0f;
        for (int64_t j = e->off; j < e->off + e->n_in * e->n_out; j++) {
            float g = t->G[j] * clip;
            t->M1[j] = b1 * t->M1[j] + (1 - b1) * g;
            t->M2[j] = b2 * t->M2[j] + (1 - b2) * g * g;
            float mh = t->M1[j] / c1, vh = t->M2[j] / c2;
            t->P[j] -= lr * (mh / (sqrtf(vh) + t->p.adam_eps) + wd * t->P[j]);
        }
    }
    ft_zero_grad(t);
    return nrm;
}

int ft_eval(ft_trainer *t, const lt_example *ex, int n, double *loss) {
    double sw = 0, swl = 0, per[4096];
    int st = SH_OK;
    for (int b = 0; b < n && !st; b += t->p.batch_size) {
        int m = n - b < t->p.batch_size ? n - b : t->p.batch_size;
        if (m > 4096) m = 4096;
        if ((st = run_batch(t, ex + b, m, 0, NULL, per, NULL))) break;
        for (int e = 0; e < m; e++) {
            sw += ex[b + e].weight;
            swl += ex[b + e].weight * per[e];
        }
    }
    if (!st) *loss = sw > 0 ? swl / sw : 0;
    return st;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ft_train(ft_trainer *t, const lt_example *ex, int n, lt_progress_fn fn, void *user,
             lt_result *res) {
    int st = SH_OK, bs = t->p.batch_size;
    lt_example *order = NULL, *batch = NULL;
    if (n < 1) return sh_error_set(SH_EINVAL, "no examples");
    order = malloc((size_t)n * sizeof *order);
    batch = malloc((size_t)bs * sizeof *batch);
    if (!order || !batch) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(order, ex, (size_t)n * sizeof *order);
    lt_result r = {0};
    if ((st = ft_eval(t, ex, n, &r.loss_before))) goto out;
    int per_epoch = (n + bs - 1) / bs, steps = per_epoch * (t->p.epochs > 0 ? t->p.epochs : 1);
    double t0 = now_s();
    int step = 0;
    for (int ep = 0; ep < (t->p.epochs > 0 ? t->p.epochs : 1); ep++) {
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(rng_next(&t->rng) % (uint64_t)(i + 1));
            lt_example tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (int b = 0; b < n; b += bs, step++) {
            int m = n - b < bs ? n - b : bs;
            double loss, wsum = 0;
            int64_t tok = 0;
            if ((st = run_batch(t, order + b, m, 1, &loss, NULL, NULL))) goto out;
            for (int e = 0; e < m; e++) {
                wsum += order[b + e].weight;
                tok += order[b + e].n < t->p.max_seq_len ? order[b + e].n : t->p.max_seq_len;
            }
            float lr;
            if (step < t->p.warmup_steps) lr = t->p.lr * (float)(step + 1) / (float)t->p.warmup_steps;
            else {
                double f = (double)(step - t->p.warmup_steps) /
                           (double)(steps - t->p.warmup_steps > 1 ? steps - t->p.warmup_steps : 1);
                lr = t->p.lr_min + (t->p.lr - t->p.lr_min) * (float)(0.5 * (1 + cos(M_PI * f)));
            }
            ft_step(t, lr);
            r.tokens += tok;
            r.steps = step + 1;
            if (fn) {
                double el = now_s() - t0;
                lt_progress pr = {step + 1, steps, loss / (wsum / m), r.tokens / (el > 0 ? el : 1e-9),
                                  el / (step + 1) * (steps - step - 1)};
                if (fn(user, &pr)) {
                    st = sh_error_set(SH_ECANCELED, "training canceled");
                    goto out;
                }
            }
        }
    }
    r.seconds = now_s() - t0;
    if ((st = ft_eval(t, ex, n, &r.loss_after))) goto out;
    if (res) *res = r;
out:
    free(order);
    free(batch);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* saving */

int ft_save(const ft_trainer *t, const char *path, int f16, const char *name) {
    gguf_writer *w = NULL;
    const gguf *g = model_gguf(t->m);
    uint16_t *h = NULL;
    int st = gguf_writer_new(&w);
    if (st) return st;
    for (int64_t i = 0; i < gguf_n_kv(g) && !st; i++) {
        gguf_str k = gguf_kv_key(g, i);
        if (name && gguf_str_eq(k, "general.name")) continue;
        if (gguf_str_eq(k, "general.file_type")) continue;
        st = gguf_w_copy_kv(w, g, i);
    }
    if (!st && name) st = gguf_w_str(w, "general.name", name);
    if (!st && f16) {
        h = malloc((size_t)t->n_params * sizeof *h);
        if (!h) st = sh_error_set(SH_ENOMEM, "out of memory");
    }
    for (int i = 0; i < t->n_tens && !st; i++) {
        const ft_tensor *e = &t->tens[i];
        if (!e->name[0]) continue;
        int64_t ne[2] = {e->n_in, e->n_out}, n = e->n_in * e->n_out;
        if (f16 && e->matrix) {
            qt_f32_to_f16_row(t->P + e->off, h + e->off, n);
            st = gguf_w_tensor(w, e->name, QT_F16, 2, ne, h + e->off, (uint64_t)n * 2);
        } else {
            st = gguf_w_tensor(w, e->name, QT_F32, e->matrix ? 2 : 1, ne, t->P + e->off,
                               (uint64_t)n * 4);
        }
    }
    if (!st) st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    free(h);
    return st;
}
