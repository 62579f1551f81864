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
    int32_t rope_dim;  /* rope.dimension_count: leading dims of each head that rotate */
    int rope_neox;     /* 1: rotate halves (qwen2/3); 0: adjacent pairs (llama) */
    float rope_base;
    float norm_eps;
} model_hparams;

/* one weight matrix: n_out rows of n_in elements of `type`, row-major */
typedef struct {
    const void *data; /* borrowed from the mapping */
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

/* ---- sequences ---- */
enum { KV_F32 = 0, KV_F16 = 1 };

typedef struct model_ctx model_ctx;
/* n_ctx: tokens the KV cache holds (clamped to the model's training context by the caller's
 * choice; must be >= 1). kv_type: KV_F32 or KV_F16. n_threads >= 1. m is borrowed and must
 * outlive the context. Caller frees. */
int model_ctx_new(model_ctx **out, const model *m, int32_t n_ctx, int kv_type, int n_threads);
void model_ctx_free(model_ctx *c);
int32_t model_ctx_n_ctx(const model_ctx *c);
int32_t model_ctx_pos(const model_ctx *c); /* tokens already in the cache */
/* Forget cached tokens from position pos on (pos <= model_ctx_pos()). */
void model_ctx_truncate(model_ctx *c, int32_t pos);

/* Evaluates n tokens at the next positions. If logits is non-NULL it receives the n_vocab
 * logits of the last of them. SH_ERANGE if the cache would overflow (nothing is evaluated). */
int model_eval(model_ctx *c, const int32_t *tokens, int32_t n, float *logits);

#endif
