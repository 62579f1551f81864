/* lora_adapter.h - a trainable LoRA adapter: F32 A and B matrices per adapted weight, owned
 * and mutable, saved in llama.cpp's GGUF LoRA format (the format engine/lora.h serves).
 *
 * For weight W (n_out x n_in) of a layer: A is (rank x n_in), B is (n_out x rank), both
 * row-major, and the effective weight is W + s B A with s = alpha / rank (1 when alpha is 0).
 * File: general.type = "adapter", general.architecture = the model's, adapter.type = "lora",
 * adapter.lora.alpha (f32); tensors "blk.L.TARGET.weight.lora_a" (F32, ne = [n_in, rank]) and
 * "...lora_b" (F32, ne = [rank, n_out]). */
#ifndef SH_LORA_ADAPTER_H
#define SH_LORA_ADAPTER_H

#include <stdint.h>

#include "engine/lora.h"
#include "engine/model.h"

#define LORA_ADAPTER_MAX_RANK 1024

typedef struct {
    float *a; /* (rank, n_in); NULL when the weight is not adapted */
    float *b; /* (n_out, rank) */
    int32_t rank;
    int64_t n_in, n_out;
} lora_adapter_mat;

typedef struct {
    char arch[32];            /* the model's architecture name */
    int32_t n_layer;
    float alpha;
    unsigned targets;         /* bit t set: LORA_Q.. target t adapted in every layer */
    lora_adapter_mat *mats;   /* (n_layer, LORA_N_TARGETS) */
} lora_adapter;

/* GGUF name of a target ("attn_q" ...); "?" when out of range. Static string. */
const char *lora_target_name(int target);
/* Comma-separated target names -> bit mask. SH_EINVAL naming an unknown or empty entry. */
int lora_targets_parse(const char *list, unsigned *mask);
/* Default targets: attn_q, attn_k, attn_v, attn_output. */
unsigned lora_targets_default(void);

/* A fresh adapter for m on the targets in mask: A uniform in +-1/sqrt(n_in) (seeded), B zero,
 * so the adapted model starts equal to the base. rank in [1, LORA_ADAPTER_MAX_RANK].
 * m is only read during the call. Caller frees. */
int lora_adapter_new(lora_adapter **out, const model *m, unsigned targets, int rank, float alpha,
                     uint64_t seed);
void lora_adapter_free(lora_adapter *a);
/* Borrowed pointer to the matrices of (layer, target); a->mats[...].a is NULL if not adapted. */
lora_adapter_mat *lora_adapter_at(const lora_adapter *a, int layer, int target);
/* s = alpha / rank of one matrix (1 when alpha is 0), as llama.cpp applies it. */
float lora_adapter_scale(const lora_adapter *a, const lora_adapter_mat *mat);
/* Trainable parameters. */
int64_t lora_adapter_n_params(const lora_adapter *a);

/* Write to path (temporary file + rename). */
int lora_adapter_save(const lora_adapter *a, const char *path);
/* Read path and validate it against m (architecture, tensor names, every shape, ranks, both
 * matrices present); errors name the offending tensor. Caller frees. */
int lora_adapter_load(lora_adapter **out, const char *path, const model *m);

#endif
