/* lora_adapter.c - trainable LoRA adapters: creation, GGUF save and load. */
#include "train/lora_adapter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/quant.h"

static const char *const target_names[LORA_N_TARGETS] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

const char *lora_target_name(int target) {
    return target >= 0 && target < LORA_N_TARGETS ? target_names[target] : "?";
}

unsigned lora_targets_default(void) {
    return 1u << LORA_Q | 1u << LORA_K | 1u << LORA_V | 1u << LORA_O;
}

int lora_targets_parse(const char *list, unsigned *mask) {
    unsigned m = 0;
    const char *p = list ? list : "";
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int found = -1;
        for (int t = 0; t < LORA_N_TARGETS; t++)
            if (n == strlen(target_names[t]) && !strncmp(p, target_names[t], n)) found = t;
        if (found < 0)
            return sh_error_set(SH_EINVAL, "unknown LoRA target '%.*s' (known: attn_q, attn_k, "
                                "attn_v, attn_output, ffn_gate, ffn_up, ffn_down)", (int)n, p);
        m |= 1u << found;
        if (!e) break;
        p = e + 1;
    }
    *mask = m;
    return SH_OK;
}

/* Shape of a target's weight in m. */
static void target_dims(const model_hparams *hp, int target, int64_t *n_in, int64_t *n_out) {
    int64_t E = hp->n_embd, F = hp->n_ff;
    int64_t QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t VD = (int64_t)hp->n_head_kv * hp->head_dim_v, OD = (int64_t)hp->n_head * hp->head_dim_v;
    switch (target) {
    case LORA_Q: *n_in = E; *n_out = QD; break;
    case LORA_K: *n_in = E; *n_out = KD; break;
    case LORA_V: *n_in = E; *n_out = VD; break;
    case LORA_O: *n_in = OD; *n_out = E; break;
    case LORA_GATE:
    case LORA_UP: *n_in = E; *n_out = F; break;
    default: *n_in = F; *n_out = E; break;
    }
}

void lora_adapter_free(lora_adapter *a) {
    if (!a) return;
    if (a->mats)
        for (int i = 0; i < a->n_layer * LORA_N_TARGETS; i++) {
            free(a->mats[i].a);
            free(a->mats[i].b);
        }
    free(a->mats);
    free(a);
}

lora_adapter_mat *lora_adapter_at(const lora_adapter *a, int layer, int target) {
    return &a->mats[layer * LORA_N_TARGETS + target];
}

float lora_adapter_scale(const lora_adapter *a, const lora_adapter_mat *mat) {
    return a->alpha != 0 && mat->rank > 0 ? a->alpha / (float)mat->rank : 1.0f;
}

int64_t lora_adapter_n_params(const lora_adapter *a) {
    int64_t n = 0;
    for (int i = 0; i < a->n_layer * LORA_N_TARGETS; i++)
        if (a->mats[i].a) n += (int64_t)a->mats[i].rank * (a->mats[i].n_in + a->mats[i].n_out);
    return n;
}

/* Empty adapter shell for m: every matrix shaped, none allocated. */
static int shell(lora_adapter **out, const model *m, float alpha) {
    const model_hparams *hp = model_hp(m);
    lora_adapter *a = calloc(1, sizeof *a);
    if (!a) return sh_error_set(SH_ENOMEM, "out of memory");
    snprintf(a->arch, sizeof a->arch, "%s", model_arch_name(hp->arch));
    a->n_layer = hp->n_layer;
    a->alpha = alpha;
    a->mats = calloc((size_t)hp->n_layer * LORA_N_TARGETS, sizeof *a->mats);
    if (!a->mats) {
        free(a);
        return sh_error_set(SH_ENOMEM, "out of memory");
    }
    for (int l = 0; l < hp->n_layer; l++)
        for (int t = 0; t < LORA_N_TARGETS; t++) {
            lora_adapter_mat *mt = lora_adapter_at(a, l, t);
            target_dims(hp, t, &mt->n_in, &mt->n_out);
        }
    *out = a;
    return SH_OK;
}

static int alloc_mat(lora_adapter_mat *mt, int32_t rank) {
    mt->rank = rank;
    mt->a = calloc((size_t)rank * (size_t)mt->n_in, sizeof(float));
    mt->b = calloc((size_t)rank * (size_t)mt->n_out, sizeof(float));
    return mt->a && mt->b ? SH_OK : sh_error_set(SH_ENOMEM, "out of memory for the adapter");
}

/* splitmix64: a seeded, reproducible stream for the initialisation */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int lora_adapter_new(lora_adapter **out, const model *m, unsigned targets, int rank, float alpha,
                     uint64_t seed) {
    *out = NULL;
    if (rank < 1 || rank > LORA_ADAPTER_MAX_RANK)
        return sh_error_set(SH_EINVAL, "LoRA rank %d out of range [1, %d]", rank, LORA_ADAPTER_MAX_RANK);
    if (!targets || targets >> LORA_N_TARGETS) return sh_error_set(SH_EINVAL, "no LoRA targets");
    if (!(alpha >= 0 && alpha < 1e6f)) return sh_error_set(SH_EINVAL, "LoRA alpha out of range");
    lora_adapter *a;
    int st = shell(&a, m, alpha);
    if (st) return st;
    a->targets = targets;
    uint64_t s = seed;
    for (int l = 0; l < a->n_layer && !st; l++)
        for (int t = 0; t < LORA_N_TARGETS && !st; t++) {
            if (!(targets >> t & 1)) continue;
            lora_adapter_mat *mt = lora_adapter_at(a, l, t);
            if ((st = alloc_mat(mt, rank))) break;
            /* as PEFT: A ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), B = 0 */
            float bound = 1.0f / sqrtf((float)mt->n_in);
            for (int64_t i = 0; i < (int64_t)rank * mt->n_in; i++)
                mt->a[i] = bound * (float)((double)(mix(&s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
        }
    if (st) {
        lora_adapter_free(a);
        return st;
    }
    *out = a;
    return SH_OK;
}

int lora_adapter_save(const lora_adapter *a, const char *path) {
    gguf_writer *w = NULL;
    int st = gguf_writer_new(&w);
    if (!st) st = gguf_w_str(w, "general.architecture", a->arch);
    if (!st) st = gguf_w_str(w, "general.type", "adapter");
    if (!st) st = gguf_w_str(w, "adapter.type", "lora");
    if (!st) st = gguf_w_f32(w, "adapter.lora.alpha", a->alpha);
    char name[128];
    for (int l = 0; l < a->n_layer && !st; l++)
        for (int t = 0; t < LORA_N_TARGETS && !st; t++) {
            const lora_adapter_mat *mt = lora_adapter_at(a, l, t);
            if (!mt->a) continue;
            int64_t ne_a[2] = {mt->n_in, mt->rank}, ne_b[2] = {mt->rank, mt->n_out};
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", l, target_names[t]);
            st = gguf_w_tensor(w, name, QT_F32, 2, ne_a, mt->a,
                               sizeof(float) * (uint64_t)(mt->n_in * mt->rank));
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", l, target_names[t]);
            if (!st)
                st = gguf_w_tensor(w, name, QT_F32, 2, ne_b, mt->b,
                                   sizeof(float) * (uint64_t)(mt->n_out * mt->rank));
        }
    if (!st) st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return st;
}

/* Validation (names, shapes, ranks, architecture) is engine/lora.c's, so what the trainer
 * accepts is exactly what the server can serve; the matrices are then copied out. */
int lora_adapter_load(lora_adapter **out, const char *path, const model *m) {
    lora *l = NULL;
    lora_adapter *a = NULL;
    *out = NULL;
    int st = lora_load(&l, path, m, 1.0f);
    if (!st) st = shell(&a, m, lora_alpha(l));
    for (int ly = 0; !st && ly < a->n_layer; ly++)
        for (int t = 0; !st && t < LORA_N_TARGETS; t++) {
            lora_pair p = lora_get(l, ly, t);
            if (!p.a) continue;
            if (p.rank > LORA_ADAPTER_MAX_RANK) {
                st = sh_error_set(SH_EUNSUPPORTED, "%s: blk.%d.%s has rank %d (max %d)", path, ly,
                                  target_names[t], p.rank, LORA_ADAPTER_MAX_RANK);
                break;
            }
            lora_adapter_mat *mt = lora_adapter_at(a, ly, t);
            if ((st = alloc_mat(mt, p.rank))) break;
            memcpy(mt->a, p.a, sizeof(float) * (size_t)(mt->n_in * p.rank));
            memcpy(mt->b, p.b, sizeof(float) * (size_t)(mt->n_out * p.rank));
            a->targets |= 1u << t;
        }
    if (!st && a->targets == 0) st = sh_error_set(SH_EFORMAT, "%s: the adapter adapts no weight", path);
    lora_free(l);
    if (st) {
        lora_adapter_free(a);
        return st;
    }
    *out = a;
    return SH_OK;
}
