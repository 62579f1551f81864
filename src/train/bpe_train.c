/* bpe_train.c - byte-level BPE vocabulary learning (see bpe_train.h). */
#include "train/bpe_train.h"

#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "engine/tokenizer.h"

static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

void bpe_params_default(bpe_params *p, int32_t vocab_size) {
    memset(p, 0, sizeof *p);
    p->vocab_size = vocab_size;
    p->pre = "qwen2";
    p->min_freq = 2;
    p->specials[0] = "<|endoftext|>";
    p->specials[1] = "<|im_start|>";
    p->specials[2] = "<|im_end|>";
    p->n_specials = 3;
    p->bos = 0;
    p->pad = 0;
    p->eos = 2;
    p->chat_template = CHATML_TEMPLATE;
}

/* ---- the word table: unique pre-tokenized words and their counts ---- */

typedef struct {
    char *bytes;        /* all words, back to back (bounded by the corpus size) */
    size_t n_bytes, cap_bytes;
    uint32_t *off, *len; /* per unique word */
    int64_t *count;
    int64_t n, cap;
    int64_t *slot; /* open addressing: index + 1, 0 empty */
    uint64_t mask;
    int64_t n_words;
} words;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int words_grow_slots(words *w) {
    uint64_t cap = w->mask ? (w->mask + 1) * 2 : 1024;
    int64_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return sh_error_set(SH_ENOMEM, "out of memory");
    for (int64_t i = 0; i < w->n; i++) {
        uint64_t h = hash_bytes(w->bytes + w->off[i], w->len[i]) & (cap - 1);
        while (slot[h]) h = (h + 1) & (cap - 1);
        slot[h] = i + 1;
    }
    free(w->slot);
    w->slot = slot;
    w->mask = cap - 1;
    return SH_OK;
}

static int add_word(void *user, const char *s, size_t n) {
    words *w = user;
    int rc;
    if (n == 0) return SH_OK;
    if (n > UINT32_MAX / 2) return sh_error_set(SH_ERANGE, "a word of %zu bytes is too long", n);
    w->n_words++;
    if ((uint64_t)(w->n + 1) * 2 > w->mask + 1 && (rc = words_grow_slots(w))) return rc;
    uint64_t h = hash_bytes(s, n) & w->mask;
    for (; w->slot[h]; h = (h + 1) & w->mask) {
        int64_t i = w->slot[h] - 1;
        if (w->len[i] == n && !memcmp(w->bytes + w->off[i], s, n)) {
            w->count[i]++;
            return SH_OK;
        }
    }
    if (w->n == w->cap) {
        int64_t cap = w->cap ? w->cap * 2 : 1024;
        uint32_t *off = realloc(w->off, (size_t)cap * sizeof *off);
        if (off) w->off = off;
        uint32_t *len = realloc(w->len, (size_t)cap * sizeof *len);
        if (len) w->len = len;
        int64_t *count = realloc(w->count, (size_t)cap * sizeof *count);
        if (count) w->count = count;
        if (!off || !len || !count) return sh_error_set(SH_ENOMEM, "out of memory");
        w->cap = cap;
    }
    if (w->n_bytes + n > w->cap_bytes) return sh_error_set(SH_EFULL, "word store is full");
    memcpy(w->bytes + w->n_bytes, s, n);
    w->off[w->n] = (uint32_t)w->n_bytes;
    w->len[w->n] = (uint32_t)n;
    w->count[w->n] = 1;
    w->n_bytes += n;
    w->slot[h] = ++w->n;
    return SH_OK;
}

static void words_free(words *w) {
    free(w->bytes);
    free(w->off);
    free(w->len);
    free(w->count);
    free(w->slot);
}

/* ---- pair counting ---- */

typedef struct {
    uint64_t key; /* left << 32 | right, UINT64_MAX empty */
    int64_t count;
} pair_ent;

static void pairs_add(pair_ent *t, uint64_t mask, uint64_t key, int64_t c) {
    uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 20 & mask;
    while (t[h].key != UINT64_MAX && t[h].key != key) h = (h + 1) & mask;
    t[h].key = key;
    t[h].count += c;
}

static char *concat(const char *a, const char *sep, const char *b) {
    size_t na = strlen(a), ns = strlen(sep), nb = strlen(b);
    char *s = malloc(na + ns + nb + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    memcpy(s + na, sep, ns);
    memcpy(s + na + ns, b, nb + 1);
    return s;
}

int bpe_learn(bpe_vocab *v, const char *text, size_t len, const bpe_params *p) {
    int rc = SH_OK;
    words w = {0};
    int32_t *sym = NULL;   /* every unique word as symbol ids, in its own slot */
    uint32_t *n_sym = NULL; /* current length of each word's symbols */
    pair_ent *pairs = NULL;
    memset(v, 0, sizeof *v);
    if (!p || (!text && len) || p->n_specials < 0 || p->n_specials > BPE_MAX_SPECIALS ||
        p->vocab_size <= 256 + p->n_specials || p->vocab_size > BPE_MAX_VOCAB)
        return sh_error_set(SH_EINVAL, "vocabulary size must be in (%d, %d]",
                            256 + (p ? p->n_specials : 0), BPE_MAX_VOCAB);
    int32_t max_merges = p->vocab_size - 256 - p->n_specials;
    v->tokens = calloc((size_t)p->vocab_size, sizeof *v->tokens);
    v->types = calloc((size_t)p->vocab_size, sizeof *v->types);
    v->merges = calloc((size_t)max_merges, sizeof *v->merges);
    w.cap_bytes = len;
    w.bytes = malloc(len ? len : 1);
    if (!v->tokens || !v->types || !v->merges || !w.bytes) {
        rc = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    for (int b = 0; b < 256; b++) {
        char t[4];
        int n = tok_byte_text((uint8_t)b, t);
        if (!(v->tokens[b] = strndup(t, (size_t)n))) {
            rc = sh_error_set(SH_ENOMEM, "out of memory");
            goto out;
        }
        v->types[b] = 1;
    }
    v->n_tokens = 256;
    if ((rc = tok_pre_split(p->pre ? p->pre : "qwen2", text, len, add_word, &w))) goto out;
    v->n_words = w.n_words;
    v->n_unique = w.n;

    sym = malloc((w.n_bytes ? w.n_bytes : 1) * sizeof *sym);
    n_sym = malloc((size_t)(w.n ? w.n : 1) * sizeof *n_sym);
    if (!sym || !n_sym) {
        rc = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < w.n; i++) {
        for (uint32_t j = 0; j < w.len[i]; j++) sym[w.off[i] + j] = (uint8_t)w.bytes[w.off[i] + j];
        n_sym[i] = w.len[i];
    }
    uint64_t cap = 1024;
    while (cap < 2 * (uint64_t)w.n_bytes) cap *= 2;
    pairs = malloc(cap * sizeof *pairs);
    if (!pairs) {
        rc = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    while (v->n_merges < max_merges) {
        for (uint64_t h = 0; h < cap; h++) pairs[h] = (pair_ent){UINT64_MAX, 0};
        for (int64_t i = 0; i < w.n; i++) {
            const int32_t *s = sym + w.off[i];
            for (uint32_t j = 1; j < n_sym[i]; j++)
                pairs_add(pairs, cap - 1, (uint64_t)s[j - 1] << 32 | (uint32_t)s[j], w.count[i]);
        }
        uint64_t best = UINT64_MAX;
        int64_t best_n = 0;
        for (uint64_t h = 0; h < cap; h++) {
            if (pairs[h].key == UINT64_MAX) continue;
            if (pairs[h].count > best_n || (pairs[h].count == best_n && pairs[h].key < best)) {
                best = pairs[h].key;
                best_n = pairs[h].count;
            }
        }
        if (best_n < (p->min_freq > 0 ? p->min_freq : 1)) break;
        int32_t a = (int32_t)(best >> 32), b = (int32_t)(uint32_t)best, id = v->n_tokens;
        v->tokens[id] = concat(v->tokens[a], "", v->tokens[b]);
        v->merges[v->n_merges] = concat(v->tokens[a], " ", v->tokens[b]);
        if (!v->tokens[id] || !v->merges[v->n_merges]) {
            rc = sh_error_set(SH_ENOMEM, "out of memory");
            goto out;
        }
        v->types[id] = 1;
        v->n_tokens++;
        v->n_merges++;
        for (int64_t i = 0; i < w.n; i++) { /* left to right, non-overlapping, as BPE applies */
            int32_t *s = sym + w.off[i];
            uint32_t o = 0;
            for (uint32_t j = 0; j < n_sym[i]; j++) {
                if (j + 1 < n_sym[i] && s[j] == a && s[j + 1] == b) {
                    s[o++] = id;
                    j++;
                } else {
                    s[o++] = s[j];
                }
            }
            n_sym[i] = o;
        }
    }
    for (int k = 0; k < p->n_specials; k++) {
        if (!p->specials[k] || !(v->tokens[v->n_tokens] = strdup(p->specials[k]))) {
            rc = sh_error_set(p->specials[k] ? SH_ENOMEM : SH_EINVAL, "special token %d", k);
            goto out;
        }
        v->types[v->n_tokens++] = 3;
    }
out:
    free(pairs);
    free(sym);
    free(n_sym);
    words_free(&w);
    return rc;
}

void bpe_vocab_free(bpe_vocab *v) {
    if (!v) return;
    for (int32_t i = 0; v->tokens && i < v->n_tokens; i++) free(v->tokens[i]);
    for (int32_t i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

int bpe_write_kv(gguf_writer *w, const bpe_vocab *v, const bpe_params *p) {
    int rc;
    int32_t first_special = v->n_tokens - p->n_specials;
    if ((rc = gguf_w_str(w, "tokenizer.ggml.model", "gpt2")) ||
        (rc = gguf_w_str(w, "tokenizer.ggml.pre", p->pre ? p->pre : "qwen2")) ||
        (rc = gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, NULL,
                             (uint64_t)v->n_tokens)) ||
        (rc = gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, v->types,
                         (uint64_t)v->n_tokens)) ||
        (rc = gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, NULL,
                             (uint64_t)v->n_merges)) ||
        (rc = gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 0)))
        return rc;
    if (p->bos >= 0 && p->bos < p->n_specials &&
        (rc = gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(first_special + p->bos))))
        return rc;
    if (p->eos >= 0 && p->eos < p->n_specials &&
        (rc = gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(first_special + p->eos))))
        return rc;
    if (p->pad >= 0 && p->pad < p->n_specials &&
        (rc = gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)(first_special + p->pad))))
        return rc;
    if (p->chat_template && (rc = gguf_w_str(w, "tokenizer.chat_template", p->chat_template)))
        return rc;
    return SH_OK;
}
