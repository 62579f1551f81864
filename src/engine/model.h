/* model.h - transformer models from GGUF (llama, qwen2, qwen3) and their forward pass.
 *
 * A `model` holds the hyper-parameters and views of the mmapped weights (read-only, shared by
 * every sequence). A `model_ctx` holds what one sequence needs: its KV cache, sized to the
 * requested context, and scratch buffers allocated once, so evaluation allocates nothing. */
#ifndef SH_MODEL_H
#define SH_MODEL_H

#include <stdint.h>

#include "engine/gguf.h"

typedef enum { ARCH_LLAMA = 0, ARCH_QWEN2, ARCH_QWEN3, ARCH_COUNT_ } model_arch;

typedef struct {
    model_arch arch;
    int32_t n_vocab;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;   /* attention.key_length (may differ from n_embd / n_head) */
    int32_t head_dim_v; /* attention.value_length */
    int32_t n_ff;
    int32_t n_ctx_train;
    int32_t rope_dim; /* rope.dimension_count: leading dims of each head that rotate */
    int rope_neox;    /* 1: rotate halves (qwen2/3); 0: adjacent pairs (llama) */
    float rope_base;
    float norm_eps;
} model_hparams;

/* one weight matrix: n_out rows of n_in elements of `type`, row-major */
typedef struct {
    const void *data; /* borrowed from the mapping */
    void *packed;     /* quant.h's packed copy (in the model's pack mapping), or NULL */
    uint32_t type;
    int64_t n_in, n_out;
    uint64_t row_bytes;
} model_mat;

typedef struct model model;

/* ---- loading ---- */
/* Opens and validates path (every tensor's presence, type and shape). The GGUF stays open
 * and mapped for the model's life. Errors: one line naming the problem (sh_error_last()).
 * Caller frees with model_free(). */
int model_load(model **out, const char *path);
void model_free(model *m);
const model_hparams *model_hp(const model *m);
const gguf *model_gguf(const model *m); /* borrowed; valid until model_free() */
const char *model_arch_name(model_arch a);
/* Bytes and parameter count of all weights (for info tools). */
uint64_t model_weight_bytes(const model *m);
uint64_t model_n_params(const model *m);

/* ---- sequences and workspaces ---- */
enum { KV_F32 = 0, KV_F16 = 1 };

/* A sequence: its KV cache (sized to n_ctx tokens) and the tokens it holds. */
typedef struct model_seq model_seq;
/* A workspace: worker threads and the scratch of one evaluation step, shared by any number of
 * sequences (one step at a time). max_ctx bounds the context of the sequences it evaluates. */
typedef struct model_ws model_ws;

/* m is borrowed and must outlive both. Caller frees. */
int model_seq_new(model_seq **out, const model *m, int32_t n_ctx, int kv_type);
void model_seq_free(model_seq *s);
int32_t model_seq_n_ctx(const model_seq *s);
int32_t model_seq_pos(const model_seq *s);           /* tokens already in the cache */
const int32_t *model_seq_tokens(const model_seq *s); /* borrowed: model_seq_pos() entries */
/* Forget cached tokens from position pos on (pos <= model_seq_pos()). */
void model_seq_truncate(model_seq *s, int32_t pos);
/* Memory a sequence of n_ctx tokens takes. */
uint64_t model_seq_bytes(const model *m, int32_t n_ctx, int kv_type);

int model_ws_new(model_ws **out, const model *m, int n_threads, int32_t max_ctx);
void model_ws_free(model_ws *w);

/* One step over several sequences (continuous batching): every item's tokens are evaluated at
 * its sequence's next positions, all items together, so the weights are read once per chunk
 * of rows whatever the number of sequences. logits (may be NULL) receives the n_vocab logits
 * of the item's last token. A sequence may appear once per call. Nothing is evaluated when an
 * item is invalid (SH_EINVAL) or would overflow its context (SH_ERANGE). */
typedef struct {
    model_seq *seq;
    const int32_t *tokens; /* borrowed */
    int32_t n;
    float *logits;
} model_batch;
int model_eval_batch(model_ws *w, const model_batch *items, int n_items);

/* ---- one sequence with its own workspace (the simple API) ---- */
typedef struct model_ctx model_ctx;
/* n_ctx >= 1; kv_type KV_F32 or KV_F16; n_threads >= 1. m is borrowed and must outlive the
 * context. Caller frees. */
int model_ctx_new(model_ctx **out, const model *m, int32_t n_ctx, int kv_type, int n_threads);
void model_ctx_free(model_ctx *c);
int32_t model_ctx_n_ctx(const model_ctx *c);
int32_t model_ctx_pos(const model_ctx *c);
void model_ctx_truncate(model_ctx *c, int32_t pos);
model_seq *model_ctx_seq(model_ctx *c); /* borrowed */
model_ws *model_ctx_ws(model_ctx *c);   /* borrowed */

/* Evaluates n tokens at the next positions. If logits is non-NULL it receives the n_vocab
 * logits of the last of them. SH_ERANGE if the cache would overflow (nothing is evaluated). */
int model_eval(model_ctx *c, const int32_t *tokens, int32_t n, float *logits);

#endif
