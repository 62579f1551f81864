/* lora_train.h - training LoRA adapters on a frozen model: forward pass with cached
 * activations, backward pass, weighted cross-entropy on response tokens, AdamW.
 *
 * The forward pass follows the engine's (model.c) operation by operation - the same weight
 * dot products (quant.h, activations converted to each weight's dot type), RMSNorm, RoPE,
 * attention with an F32 cache - so with B = 0 its logits equal model_eval's. Base weights of
 * any type stay frozen and mapped: the backward pass dequantizes them a row at a time.
 * Memory is bounded by max_seq_len: each layer's input is kept (checkpoints) and a layer's
 * other activations are recomputed from it during the backward pass, one layer at a time.
 *
 * Objective of a batch of n examples: (1/n) sum_e w_e * mean over e's response tokens of
 * -log p(token), so an example of weight 10 pulls ten times harder than one of weight 1. */
#ifndef SH_LORA_TRAIN_H
#define SH_LORA_TRAIN_H

#include <stdint.h>

#include "engine/model.h"
#include "train/lora_adapter.h"

/* One training example: the loss covers tokens[n_prompt .. n), each predicted from the tokens
 * before it. Longer than max_seq_len: the tail is cut. */
typedef struct {
    const int32_t *tokens; /* borrowed */
    int32_t n;
    int32_t n_prompt;
    float weight; /* > 0 */
} lt_example;

typedef struct {
    float lr;           /* AdamW learning rate (default 1e-4) */
    float beta1, beta2; /* 0.9, 0.999 */
    float adam_eps;     /* 1e-8 */
    float weight_decay; /* decoupled, 0.0 */
    float dropout;      /* on the LoRA input, [0, 1); 0 */
    int epochs;         /* 1 */
    int batch_size;     /* examples per optimizer step (gradient accumulation), 4 */
    int32_t max_seq_len;/* tokens per example (prompt + response), 512 */
    uint64_t seed;      /* shuffling and dropout, 42 */
    int n_threads;      /* 1 */
    /* Called between layers, forward and backward (may be NULL): the daemon waits there while
     * requests are being generated, so serving does not run beside a whole training step. */
    void (*pause)(void *user);
    void *pause_user;
} lt_params;

void lt_params_default(lt_params *p);

typedef struct lt_trainer lt_trainer;

/* m and ad are borrowed and must outlive the trainer; ad is trained in place. Buffers for
 * sequences of p->max_seq_len tokens are allocated here, once. Caller frees. */
int lt_new(lt_trainer **out, const model *m, lora_adapter *ad, const lt_params *p);
void lt_free(lt_trainer *t);

/* Logits of every position of tokens[0..n) with the adapter applied (n <= max_seq_len):
 * logits receives n x n_vocab floats (or only the last row when last_only). */
int lt_logits(lt_trainer *t, const int32_t *tokens, int32_t n, int last_only, float *logits);

/* ---- one step at a time (tests, custom loops) ---- */
/* Objective of ex[0..n) as a batch (see top); with want_grad the gradients of A and B are
 * added to the trainer's accumulators. *loss receives the objective; tok (may be NULL) the
 * number of loss tokens. */
int lt_batch(lt_trainer *t, const lt_example *ex, int n, int want_grad, double *loss, int64_t *tok);
void lt_zero_grad(lt_trainer *t);
/* Gradient of (layer, target): (rank x n_in) for A, (n_out x rank) for B. Borrowed. */
const float *lt_grad_a(const lt_trainer *t, int layer, int target);
const float *lt_grad_b(const lt_trainer *t, int layer, int target);
/* One AdamW update of the adapter with the accumulated gradients, which are then zeroed. */
void lt_step(lt_trainer *t);

/* ---- a whole run ---- */
typedef struct {
    int step, steps;     /* optimizer steps done, planned */
    double loss;         /* objective of the last batch, divided by its mean weight */
    double tok_per_s;    /* tokens (prompt + response) through forward + backward per second */
    double eta_s;        /* estimated seconds left */
} lt_progress;
/* Called after each step; a non-zero return cancels the run (SH_ECANCELED). */
typedef int (*lt_progress_fn)(void *user, const lt_progress *p);

typedef struct {
    double loss_before, loss_after; /* weighted mean of per-example losses over the data */
    int steps;
    int64_t tokens;                 /* tokens trained on (all epochs) */
    double seconds;                 /* training time (evaluations excluded) */
} lt_result;

/* epochs x ceil(n / batch_size) steps over ex[0..n) (shuffled each epoch), with the loss
 * over all examples measured before and after. fn may be NULL. res may be NULL. */
int lt_train(lt_trainer *t, const lt_example *ex, int n, lt_progress_fn fn, void *user,
             lt_result *res);
/* Weighted mean loss over ex[0..n) (sum w_e L_e / sum w_e), no gradients. */
int lt_eval(lt_trainer *t, const lt_example *ex, int n, double *loss);

#endif
