/* lora.h - LoRA adapters at inference, in llama.cpp's GGUF format.
 *
 * File: general.type = "adapter", general.architecture = the model's, adapter.type = "lora",
 * adapter.lora.alpha (f32); per adapted weight W (e.g. "blk.3.attn_q.weight") two tensors
 * "W.lora_a" (ne = [n_in, rank]) and "W.lora_b" (ne = [rank, n_out]). The effective weight is
 * W + s * B A with s = scale * alpha / rank (scale alone when alpha is 0), as llama.cpp does.
 * A and B are kept in F32 (converted at load); applying them costs rank * (n_in + n_out) per
 * token and weight, next to n_in * n_out for W. */
#ifndef SH_LORA_H
#define SH_LORA_H

#include <stdint.h>

#include "engine/model.h"

enum {
    LORA_Q = 0,
    LORA_K,
    LORA_V,
    LORA_O,
    LORA_GATE,
    LORA_UP,
    LORA_DOWN,
    LORA_N_TARGETS
};

typedef struct {
    const float *a; /* (rank, n_in), NULL when this weight is not adapted */
    const float *b; /* (n_out, rank) */
    int32_t rank;
    float s;        /* scale * alpha / rank */
} lora_pair;

typedef struct lora lora;

/* Loads and validates path against m (architecture, every shape; unknown tensors are an error).
 * scale multiplies the adapter (1 = as trained). Caller frees. */
int lora_load(lora **out, const char *path, const model *m, float scale);
void lora_free(lora *l);
/* The pair for a layer's target (a NULL when not adapted). */
lora_pair lora_get(const lora *l, int layer, int target);
int lora_n_adapted(const lora *l); /* adapted weights */
float lora_alpha(const lora *l);

/* ---- using it ---- */
/* Evaluations through w apply l (borrowed; NULL removes it) from the next step on. */
void model_ws_set_lora(model_ws *w, const lora *l);

#endif
