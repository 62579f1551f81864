/* lora.c - loading llama.cpp-format LoRA adapters for inference. */
#include "engine/lora.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#define LORA_MAX_RANK 4096

static const char *const target_names[LORA_N_TARGETS] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

struct lora {
    int n_layer;
    lora_pair *pairs; /* (n_layer, LORA_N_TARGETS) */
    float *data;      /* all A and B matrices */
    float alpha;
    int n_adapted;
};

void lora_free(lora *l) {
    if (!l) return;
    free(l->pairs);
    free(l->data);
    free(l);
}

lora_pair lora_get(const lora *l, int layer, int target) {
    lora_pair none = {0};
    if (!l || layer < 0 || layer >= l->n_layer || target < 0 || target >= LORA_N_TARGETS) return none;
    return l->pairs[layer * LORA_N_TARGETS + target];
}

int lora_n_adapted(const lora *l) {
    return l ? l->n_adapted : 0;
}

float lora_alpha(const lora *l) {
    return l ? l->alpha : 0;
}

/* "blk.N.TARGET.weight.lora_a|b" -> layer, target, which (0 = a, 1 = b); -1 if not that form */
static int parse_name(gguf_str name, int *layer, int *target, int *which) {
    char buf[160];
    if (name.len >= sizeof buf) return -1;
    memcpy(buf, name.ptr, name.len);
    buf[name.len] = 0;
    int n = -1, pos = 0;
    if (sscanf(buf, "blk.%d.%n", &n, &pos) != 1 || n < 0 || pos == 0) return -1;
    const char *rest = buf + pos;
    for (int t = 0; t < LORA_N_TARGETS; t++) {
        size_t tl = strlen(target_names[t]);
        if (strncmp(rest, target_names[t], tl) != 0) continue;
        if (!strcmp(rest + tl, ".weight.lora_a")) *which = 0;
        else if (!strcmp(rest + tl, ".weight.lora_b")) *which = 1;
        else continue;
        *layer = n;
        *target = t;
        return 0;
    }
    return -1;
}

static void model_dims(const model *m, int target, int64_t *n_in, int64_t *n_out) {
    const model_hparams *hp = model_hp(m);
    int64_t E = hp->n_embd, QD = (int64_t)hp->n_head * hp->head_dim;
    int64_t KD = (int64_t)hp->n_head_kv * hp->head_dim, VD = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t OD = (int64_t)hp->n_head * hp->head_dim_v, F = hp->n_ff;
    switch (target) {
    case LORA_Q: *n_in = E; *n_out = QD; break;
    case LORA_K: *n_in = E; *n_out = KD; break;
    case LORA_V: *n_in = E; *n_out = VD; break;
    case LORA_O: *n_in = OD; *n_out = E; break;
    case LORA_GATE: *n_in = E; *n_out = F; break;
    case LORA_UP: *n_in = E; *n_out = F; break;
    default: *n_in = F; *n_out = E; break;
    }
}

int lora_load(lora **out, const char *path, const model *m, float scale) {
    int st = SH_OK;
    gguf *g = NULL;
    lora *l = NULL;
    char buf[64];
    *out = NULL;
    if ((st = gguf_open(&g, path))) goto out;
    if (gguf_get_cstr(g, "general.type", buf, sizeof buf) || strcmp(buf, "adapter") ||
        gguf_get_cstr(g, "adapter.type", buf, sizeof buf) || strcmp(buf, "lora")) {
        st = sh_error_set(SH_EFORMAT, "not a LoRA adapter (general.type must be 'adapter', "
                                      "adapter.type 'lora')");
        goto out;
    }
    char arch[64];
    if (gguf_get_cstr(g, "general.architecture", arch, sizeof arch) ||
        strcmp(arch, model_arch_name(model_hp(m)->arch))) {
        st = sh_error_set(SH_EFORMAT, "adapter architecture '%s' does not match the model's '%s'",
                          arch, model_arch_name(model_hp(m)->arch));
        goto out;
    }
    l = calloc(1, sizeof *l);
    if (!l) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    l->n_layer = model_hp(m)->n_layer;
    if (gguf_get_f32(g, "adapter.lora.alpha", &l->alpha)) l->alpha = 0;
    l->pairs = calloc((size_t)l->n_layer * LORA_N_TARGETS, sizeof *l->pairs);
    /* first pass: validate names and shapes, size the data */
    uint64_t total = 0;
    for (int64_t i = 0; l->pairs && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        int layer, target, which;
        if (parse_name(t->name, &layer, &target, &which) || layer >= l->n_layer) {
            st = sh_error_set(SH_EFORMAT, "unexpected adapter tensor '%.*s'", (int)t->name.len, t->name.ptr);
            goto out;
        }
        int64_t n_in, n_out;
        model_dims(m, target, &n_in, &n_out);
        int64_t rank = which == 0 ? t->ne[1] : t->ne[0];
        int64_t want0 = which == 0 ? n_in : rank, want1 = which == 0 ? rank : n_out;
        if (rank < 1 || rank > LORA_MAX_RANK || t->ne[0] != want0 || t->ne[1] != want1 ||
            t->ne[2] != 1 || t->ne[3] != 1) {
            st = sh_error_set(SH_EFORMAT, "adapter tensor '%.*s' has shape [%" PRId64 ", %" PRId64
                              "], expected [%" PRId64 ", %" PRId64 "]", (int)t->name.len,
                              t->name.ptr, t->ne[0], t->ne[1], want0, want1);
            goto out;
        }
        lora_pair *p = &l->pairs[layer * LORA_N_TARGETS + target];
        if (p->rank && p->rank != rank) {
            st = sh_error_set(SH_EFORMAT, "blk.%d.%s: lora_a and lora_b ranks differ", layer,
                              target_names[target]);
            goto out;
        }
        p->rank = (int32_t)rank;
        total += (uint64_t)t->ne[0] * (uint64_t)t->ne[1];
    }
    if (!l->pairs || !(l->data = malloc((total ? total : 1) * sizeof(float)))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    /* second pass: convert */
    float *d = l->data;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        int layer, target, which;
        parse_name(t->name, &layer, &target, &which);
        lora_pair *p = &l->pairs[layer * LORA_N_TARGETS + target];
        size_t rb = qt_row_bytes(t->type, t->ne[0]);
        for (int64_t r = 0; r < t->ne[1]; r++)
            qt_dequant_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, d + r * t->ne[0], t->ne[0]);
        if (which == 0) p->a = d;
        else p->b = d;
        d += t->ne[0] * t->ne[1];
    }
    for (int i = 0; i < l->n_layer * LORA_N_TARGETS; i++) {
        lora_pair *p = &l->pairs[i];
        if (!p->rank) continue;
        if (!p->a || !p->b) {
            st = sh_error_set(SH_EFORMAT, "blk.%d.%s: lora_a or lora_b missing", i / LORA_N_TARGETS,
                              target_names[i % LORA_N_TARGETS]);
            goto out;
        }
        p->s = l->alpha != 0 ? scale * l->alpha / (float)p->rank : scale;
        l->n_adapted++;
    }
out:
    gguf_close(g);
    if (st) {
        lora_free(l);
        return st;
    }
    *out = l;
    return SH_OK;
}
