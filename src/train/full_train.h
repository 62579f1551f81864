/* full_train.h - full-parameter training (every weight, not an adapter) of a small model,
 * from scratch or from an F32/F16 checkpoint. This is how the embedded default model is made.
 *
 * The model is a llama / qwen2 / qwen3-architecture GGUF (without biases or q/k norms: those
 * are rejected) whose weights are copied into F32 buffers; the forward pass is the engine's
 * (RMSNorm, RoPE as the architecture says, grouped-query causal attention, SwiGLU, tied or
 * separate output), so ft_save's file gives the same logits in model_eval. Examples of a batch
 * are packed into one matrix of rows so every weight product is a real matrix product (tiled
 * GEMM, AVX2 / AVX-512 at run time), and every activation of the batch is kept for the
 * backward pass (memory grows with batch_size x max_seq_len, allocated once).
 *
 * Objective: as lora_train.h (weighted mean of per-example mean response-token losses).
 * Optimizer: AdamW (decay on matrices only), global gradient-norm clipping, linear warmup then
 * cosine decay to lr_min. */
#ifndef SH_FULL_TRAIN_H
#define SH_FULL_TRAIN_H

#include <stdint.h>

#include "train/lora_train.h"

typedef struct {
    float lr, lr_min;   /* peak and final learning rate (3e-3, 3e-4) */
    int warmup_steps;   /* linear warmup (50) */
    float beta1, beta2, adam_eps; /* 0.9, 0.98, 1e-8 */
    float weight_decay; /* decoupled, on matrices (0.01) */
    float grad_clip;    /* global L2 norm, 0 = off (1.0) */
    int epochs;         /* 1 */
    int batch_size;     /* examples per step (16) */
    int32_t max_seq_len;/* tokens per example (256) */
    uint64_t seed;      /* initialisation and shuffling (42) */
    int n_threads;      /* 1 */
    int reinit;         /* 1: ignore the file's weights, initialise from scratch */
    float init_std;     /* from-scratch N(0, std) for matrices (0.02) */
} ft_params;

void ft_params_default(ft_params *p);

typedef struct ft_trainer ft_trainer;

/* Reads the architecture, hyperparameters, tokenizer and (unless p->reinit) weights of the
 * GGUF at path; allocates parameters, gradients, optimizer state and activation buffers once.
 * Caller frees. */
int ft_new(ft_trainer **out, const char *path, const ft_params *p);
void ft_free(ft_trainer *t);
int64_t ft_n_params(const ft_trainer *t);

/* Logits (n x n_vocab, or the last row when last_only) of tokens[0..n), n <= max_seq_len. */
int ft_logits(ft_trainer *t, const int32_t *tokens, int32_t n, int last_only, float *logits);

/* Objective of ex[0..n) (n <= batch_size) as one batch; with want_grad its gradient is added
 * to the accumulators. */
int ft_batch(ft_trainer *t, const lt_example *ex, int n, int want_grad, double *loss, int64_t *tok);
void ft_zero_grad(ft_trainer *t);
/* Gradient of a parameter tensor by GGUF name ("blk.0.attn_q.weight"), NULL if none. Borrowed;
 * *n receives the element count. Parameters likewise (writable: tests perturb them). */
float *ft_grad(ft_trainer *t, const char *name, int64_t *n);
float *ft_param(ft_trainer *t, const char *name, int64_t *n);
/* One AdamW step at learning rate lr with the accumulated gradients (clipped), then zeroed.
 * Returns the gradient norm before clipping. */
double ft_step(ft_trainer *t, float lr);

/* epochs x ceil(n / batch_size) steps with the schedule of the params; the loss over all
 * examples is measured before and after. fn and res may be NULL. */
int ft_train(ft_trainer *t, const lt_example *ex, int n, lt_progress_fn fn, void *user,
             lt_result *res);
int ft_eval(ft_trainer *t, const lt_example *ex, int n, double *loss);

/* Writes the model: every metadata key of the source file (general.name replaced by name when
 * not NULL) and the weights as F32, or F16 for matrices when f16. Via a temporary file. */
int ft_save(const ft_trainer *t, const char *path, int f16, const char *name);

#endif
