/* tokenizer.c - GGUF tokenizers matching llama.cpp token for token.
 *
 * Two algorithms share one vocabulary store (all token texts in one pool, an open-addressing
 * text -> id table):
 *   - "gpt2": byte-level BPE. Text is split by the pre-tokenizer regexes (PCRE2, compiled once
 *     at load), each word is byte-encoded (GPT-2's byte -> printable code point table) and
 *     merged with a min-heap on merge rank (ties: leftmost first).
 *   - "llama": SentencePiece BPE over scores. Spaces become U+2581, symbols are UTF-8
 *     characters, the pair whose concatenation is the highest-scoring token merges first;
 *     what never became a token falls back to <0xXX> byte tokens.
 * Before either runs, special token texts are cut out of the input the way llama.cpp does it:
 * longest special first over the whole text, leftmost non-overlapping occurrences. */
#include "engine/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

/* Bounds on what a file may make us allocate; real vocabularies are far below them. */
#define TOK_MAX_VOCAB (1 << 23)
#define TOK_MAX_MERGES (1 << 23)
#define TOK_MAX_TOKEN_LEN 65535
#define TOK_MAX_POOL (1u << 30)
/* Longest input tok_encode accepts (offsets are kept in 32 bits; sanitising may triple it). */
#define TOK_MAX_TEXT (256u << 20)
#define TOK_MAX_REGEX 4

enum { KIND_SPM, KIND_BPE };
enum { TF_EOG = 1 };

typedef struct {
    uint32_t off;  /* in mpool */
    uint32_t llen; /* left part; the right part follows after one space */
    uint32_t rlen;
} merge_ent;

struct tok {
    int kind;
    char model[16];
    char pre[64];
    int32_t n_vocab;

    char *pool; /* token texts, each NUL-terminated */
    uint32_t *off;
    uint32_t *len;
    float *score;
    uint8_t *attr; /* TOK_ATTR_*, 0 = undefined */
    uint8_t *flags;
    int32_t *vtab; /* text -> id, -1 empty */
    uint32_t vmask;

    char *mpool;
    merge_ent *merges; /* index = rank */
    int32_t n_merges;
    int32_t *mtab; /* (left, right) -> rank, -1 empty */
    uint32_t mmask;

    int32_t *special; /* specials by priority: longer text first, then lower id */
    int32_t n_special;
    uint32_t spec_first[257]; /* specials bucketed by first byte: spec_by_first[a..b) */
    int32_t *spec_by_first;   /* indices into special[] */

    pcre2_code *re[TOK_MAX_REGEX];
    int n_re;
    int ignore_merges;
    int add_bos;
    int add_space_prefix;
    int32_t bos, eos, eot, eom, pad, unk;

    char benc[256][2]; /* byte -> UTF-8 of its GPT-2 code point */
    uint8_t benc_len[256];
    int16_t bdec[0x144];     /* GPT-2 code point -> byte, -1 */
    int32_t byte_tok[256];   /* SPM: byte fallback token; BPE: token of the 1-byte string */
};

/* ------------------------------------------------------------------------------------------ */
/* hashing */

#define FNV_OFF 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Pair hash without building the concatenation; 0xff cannot occur in UTF-8 so it separates. */
static uint64_t pair_hash(const char *l, size_t ll, const char *r, size_t rl) {
    uint64_t h = fnv(FNV_OFF, l, ll);
    h ^= 0xff;
    h *= FNV_PRIME;
    return fnv(h, r, rl);
}

static uint32_t table_size(uint64_t n) {
    uint32_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

static int32_t vocab_get(const tok *t, const char *s, size_t n) {
    uint32_t i = (uint32_t)fnv(FNV_OFF, s, n) & t->vmask;
    for (;;) {
        int32_t id = t->vtab[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->pool + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->vmask;
    }
}

/* Later duplicates replace earlier ones, as llama.cpp's token_to_id map does. */
static void vocab_put(tok *t, int32_t id) {
    const char *s = t->pool + t->off[id];
    size_t n = t->len[id];
    uint32_t i = (uint32_t)fnv(FNV_OFF, s, n) & t->vmask;
    for (;;) {
        int32_t o = t->vtab[i];
        if (o < 0 || (t->len[o] == n && memcmp(t->pool + t->off[o], s, n) == 0)) {
            t->vtab[i] = id;
            return;
        }
        i = (i + 1) & t->vmask;
    }
}

static int32_t merge_get(const tok *t, const char *l, size_t ll, const char *r, size_t rl) {
    uint32_t i = (uint32_t)pair_hash(l, ll, r, rl) & t->mmask;
    for (;;) {
        int32_t k = t->mtab[i];
        if (k < 0) return -1;
        const merge_ent *m = &t->merges[k];
        const char *ms = t->mpool + m->off;
        if (m->llen == ll && m->rlen == rl && memcmp(ms, l, ll) == 0 &&
            memcmp(ms + ll + 1, r, rl) == 0)
            return k;
        i = (i + 1) & t->mmask;
    }
}

/* The first occurrence keeps its rank (llama.cpp's emplace does not overwrite). */
static void merge_put(tok *t, int32_t k) {
    const merge_ent *m = &t->merges[k];
    const char *ms = t->mpool + m->off;
    uint32_t i = (uint32_t)pair_hash(ms, m->llen, ms + m->llen + 1, m->rlen) & t->mmask;
    for (;;) {
        int32_t o = t->mtab[i];
        if (o < 0) {
            t->mtab[i] = k;
            return;
        }
        const merge_ent *p = &t->merges[o];
        if (p->llen == m->llen && p->rlen == m->rlen &&
            memcmp(t->mpool + p->off, ms, m->llen + 1 + m->rlen) == 0)
            return;
        i = (i + 1) & t->mmask;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 */

static size_t utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of a character from its lead byte alone, as llama.cpp splits SPM/BPE symbols. */
static size_t utf8_lead_len(uint8_t b) {
    static const uint8_t lk[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lk[b >> 4];
}

/* Strict check of the character at s: returns its length if complete and valid, 0 if the n
 * bytes available are a valid but unfinished prefix, -1 if the lead byte starts no valid
 * character. */
static int utf8_check(const uint8_t *s, size_t n) {
    uint8_t b = s[0];
    int need;
    uint8_t lo = 0x80, hi = 0xbf;
    if (b < 0x80) return 1;
    if (b >= 0xc2 && b <= 0xdf) need = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        need = 3;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 4;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else
        return -1;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t c = s[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) return -1;
    }
    return need;
}

/* llama.cpp reads text as code points leniently (overlong forms accepted, stray bytes become
 * U+FFFD) before pre-tokenizing; we produce the same code points, re-encoded, in out. PCRE2
 * cannot take encoded surrogates, which llama.cpp keeps: out gets U+FFFD (the same class for
 * the regexes, and the same length) while raw, when given, gets the surrogate's own bytes at
 * the same offset, and *surrogates is set. Values above U+10FFFF become U+FFFD (llama.cpp
 * cannot encode them either). out and raw must hold 3 * n bytes. */
static size_t sanitize_utf8(const uint8_t *s, size_t n, char *out, char *raw, int *surrogates) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t cp;
        size_t k;
        if (b < 0x80) {
            out[o++] = (char)b;
            i++;
            continue;
        }
        if (!(b & 0x40)) k = 0;
        else if (!(b & 0x20)) k = 2;
        else if (!(b & 0x10)) k = 3;
        else if (!(b & 0x08)) k = 4;
        else k = 0;
        int ok = k > 0 && i + k - 1 < n;
        for (size_t j = 1; ok && j < k; j++) ok = (s[i + j] & 0xc0) == 0x80;
        if (!ok) {
            o += utf8_put(0xfffd, out + o);
            i++;
            continue;
        }
        if (k == 2) cp = ((uint32_t)(b & 0x1f) << 6) | (s[i + 1] & 0x3f);
        else if (k == 3)
            cp = ((uint32_t)(b & 0x0f) << 12) | ((uint32_t)(s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f);
        else
            cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3f) << 12) |
                 ((uint32_t)(s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f);
        if (cp > 0x10ffff) cp = 0xfffd;
        if (cp >= 0xd800 && cp <= 0xdfff) {
            /* same length as U+FFFD, which stands in for it in the regex subject */
            if (raw) {
                raw[o] = (char)0xed;
                raw[o + 1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                raw[o + 2] = (char)(0x80 | (cp & 0x3f));
            }
            *surrogates = 1;
            cp = 0xfffd;
        }
        o += utf8_put(cp, out + o);
        i += k;
    }
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* pre-tokenizers */

/* llama.cpp's whitespace set (its own table, which unlike PCRE2's \s includes U+0085). */
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define CONTRACT_CI "'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])"

static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])";
static const char RE_LLAMA3[] =
    CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS
    "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";
static const char RE_QWEN2[] =
    CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS
    "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";
static const char RE_QWEN35[] =
    CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^" WS
    "\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";
static const char RE_PUNCT[] = "[\\p{P}\\$\\+<=>\\^~\\|]+";
static const char RE_PUNCT_FALCON[] = "[\\p{P}\\$\\+<=>\\^~\\|`]+";
static const char RE_NUMS[] = "\\p{N}+";
static const char RE_NUM1[] = "\\p{N}";
static const char RE_DIGIT3[] = "[0-9][0-9][0-9]";

typedef struct {
    const char *re[TOK_MAX_REGEX];
} pre_family;

enum { FAM_DEFAULT, FAM_GPT2, FAM_LLAMA3, FAM_QWEN2, FAM_QWEN35, FAM_STARCODER, FAM_FALCON };

static const pre_family families[] = {
    [FAM_DEFAULT] = {{RE_PUNCT, RE_GPT2, RE_NUMS, RE_DIGIT3}},
    [FAM_GPT2] = {{RE_GPT2}},
    [FAM_LLAMA3] = {{RE_LLAMA3}},
    [FAM_QWEN2] = {{RE_QWEN2}},
    [FAM_QWEN35] = {{RE_QWEN35}},
    [FAM_STARCODER] = {{RE_NUM1, RE_GPT2}},
    [FAM_FALCON] = {{RE_PUNCT_FALCON, RE_GPT2, RE_DIGIT3}},
};

typedef struct {
    const char *name;
    uint8_t family;
    uint8_t ignore_merges;
    uint8_t add_bos;
    uint8_t no_bos; /* the model has no BOS token by default */
} pre_def;

/* The pre-tokenizer names llama.cpp maps onto the regex families above. */
static const pre_def pre_defs[] = {
    {"default", FAM_DEFAULT, 0, 0, 0},
    {"llama3", FAM_LLAMA3, 1, 1, 0},      {"llama-v3", FAM_LLAMA3, 1, 1, 0},
    {"llama-bpe", FAM_LLAMA3, 1, 1, 0},   {"falcon3", FAM_LLAMA3, 1, 1, 0},
    {"falcon-h1", FAM_LLAMA3, 1, 1, 0},   {"pixtral", FAM_LLAMA3, 1, 1, 0},
    {"midm-2.0", FAM_LLAMA3, 1, 1, 0},    {"lfm2", FAM_LLAMA3, 1, 1, 0},
    {"jina-v5-nano", FAM_LLAMA3, 1, 1, 0}, {"dbrx", FAM_LLAMA3, 0, 0, 0},
    {"smaug-bpe", FAM_LLAMA3, 0, 0, 0},   {"glm4", FAM_LLAMA3, 0, 0, 1},
    {"chatglm-bpe", FAM_LLAMA3, 0, 0, 1}, {"gpt-2", FAM_GPT2, 0, 0, 0},
    {"phi-2", FAM_GPT2, 0, 0, 0},         {"jina-es", FAM_GPT2, 0, 0, 0},
    {"jina-de", FAM_GPT2, 0, 0, 0},       {"gigachat", FAM_GPT2, 0, 0, 0},
    {"jina-v2-es", FAM_GPT2, 0, 0, 0},    {"jina-v2-de", FAM_GPT2, 0, 0, 0},
    {"a.x-4.0", FAM_GPT2, 0, 0, 0},       {"mellum", FAM_GPT2, 0, 0, 0},
    {"modern-bert", FAM_GPT2, 0, 0, 0},   {"mpt", FAM_GPT2, 0, 0, 0},
    {"olmo", FAM_GPT2, 0, 0, 0},          {"jais", FAM_GPT2, 0, 0, 0},
    {"exaone4", FAM_GPT2, 0, 0, 0},       {"qwen2", FAM_QWEN2, 0, 0, 0},
    {"deepseek-r1-qwen", FAM_QWEN2, 0, 0, 0}, {"kormo", FAM_QWEN2, 0, 0, 0},
    {"f2llmv2", FAM_QWEN2, 0, 0, 0},      {"stablelm2", FAM_QWEN2, 0, 0, 0},
    {"qwen35", FAM_QWEN35, 0, 0, 0},      {"starcoder", FAM_STARCODER, 0, 0, 0},
    {"refact", FAM_STARCODER, 0, 0, 0},   {"command-r", FAM_STARCODER, 0, 0, 0},
    {"smollm", FAM_STARCODER, 0, 0, 0},   {"codeshell", FAM_STARCODER, 0, 0, 0},
    {"exaone", FAM_STARCODER, 0, 0, 0},   {"falcon", FAM_FALCON, 0, 0, 0},
};

/* ------------------------------------------------------------------------------------------ */
/* life cycle */

void tok_free(tok *t) {
    if (!t) return;
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->attr);
    free(t->flags);
    free(t->vtab);
    free(t->mpool);
    free(t->merges);
    free(t->mtab);
    free(t->special);
    free(t->spec_by_first);
    free(t);
}

static int find_array(const gguf *g, const char *key, gguf_vtype et, int64_t *idx) {
    *idx = gguf_find_key(g, key);
    if (*idx < 0) return SH_ENOTFOUND;
    if (gguf_kv_type(g, *idx) != GGUF_T_ARRAY || gguf_arr_type(g, *idx) != et)
        return sh_error_set(SH_EFORMAT, "%s has the wrong type", key);
    return SH_OK;
}

/* GPT-2's byte-level mapping: printable Latin-1 bytes stand for themselves, the others take
 * the code points from 256 up, in byte order. */
static int byte_is_self(unsigned b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

static void init_byte_tables(tok *t) {
    int n = 0;
    for (int i = 0; i < 0x144; i++) t->bdec[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        if (byte_is_self((unsigned)b))
            cp = (uint32_t)b;
        else
            cp = 256 + (uint32_t)n++;
        t->benc_len[b] = (uint8_t)utf8_put(cp, t->benc[b]);
        t->bdec[cp] = (int16_t)b;
    }
}

static int load_tokens(tok *t, const gguf *g) {
    int64_t ti, si = -1, yi = -1;
    int rc = find_array(g, "tokenizer.ggml.tokens", GGUF_T_STRING, &ti);
    if (rc == SH_ENOTFOUND)
        return sh_error_set(SH_ENOTFOUND, "tokenizer.ggml.tokens missing: no vocabulary");
    if (rc) return rc;
    uint64_t n = gguf_arr_n(g, ti);
    if (n == 0) return sh_error_set(SH_EFORMAT, "tokenizer.ggml.tokens is empty");
    if (n > TOK_MAX_VOCAB)
        return sh_error_set(SH_ERANGE, "vocabulary of %llu tokens exceeds the limit",
                            (unsigned long long)n);
    t->n_vocab = (int32_t)n;

    const void *scores = NULL;
    gguf_vtype score_t = GGUF_T_FLOAT32;
    si = gguf_find_key(g, "tokenizer.ggml.scores");
    if (si >= 0) {
        score_t = gguf_arr_type(g, si);
        if (gguf_kv_type(g, si) != GGUF_T_ARRAY ||
            (score_t != GGUF_T_FLOAT32 && score_t != GGUF_T_INT32))
            return sh_error_set(SH_EFORMAT, "tokenizer.ggml.scores has the wrong type");
        if (gguf_arr_n(g, si) < n)
            return sh_error_set(SH_EFORMAT, "tokenizer.ggml.scores has fewer entries than tokens");
        scores = gguf_arr_data(g, si);
    }
    const void *types = NULL;
    rc = find_array(g, "tokenizer.ggml.token_type", GGUF_T_INT32, &yi);
    if (rc && rc != SH_ENOTFOUND) return rc;
    if (rc == SH_OK) {
        if (gguf_arr_n(g, yi) < n)
            return sh_error_set(SH_EFORMAT, "tokenizer.ggml.token_type has fewer entries than tokens");
        types = gguf_arr_data(g, yi);
    }

    /* size the pool first: empty texts become "[EMPTY_<id>]" as in llama.cpp */
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(g, ti, i);
        if (s.len > TOK_MAX_TOKEN_LEN)
            return sh_error_set(SH_EFORMAT, "token %llu is %llu bytes long", (unsigned long long)i,
                                (unsigned long long)s.len);
        total += (s.len ? s.len : 24) + 1;
    }
    if (total > TOK_MAX_POOL) return sh_error_set(SH_ERANGE, "vocabulary texts too large");
    t->pool = malloc(total);
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->score = malloc(n * sizeof *t->score);
    t->attr = malloc(n);
    t->flags = calloc(n, 1);
    t->vmask = table_size(n) - 1;
    t->vtab = malloc(((size_t)t->vmask + 1) * sizeof *t->vtab);
    if (!t->pool || !t->off || !t->len || !t->score || !t->attr || !t->flags || !t->vtab)
        return sh_error_set(SH_ENOMEM, "out of memory loading the vocabulary");
    memset(t->vtab, 0xff, ((size_t)t->vmask + 1) * sizeof *t->vtab);

    uint64_t p = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(g, ti, i);
        t->off[i] = (uint32_t)p;
        if (s.len) {
            memcpy(t->pool + p, s.ptr, s.len);
            t->len[i] = (uint32_t)s.len;
        } else {
            t->len[i] = (uint32_t)snprintf(t->pool + p, 24, "[EMPTY_%llu]", (unsigned long long)i);
        }
        p += t->len[i];
        t->pool[p++] = '\0';
        float sc = 0.0f;
        if (scores && score_t == GGUF_T_FLOAT32) memcpy(&sc, (const char *)scores + 4 * i, 4);
        else if (scores) {
            int32_t v;
            memcpy(&v, (const char *)scores + 4 * i, 4);
            sc = (float)v;
        }
        t->score[i] = sc;
        uint8_t a = TOK_ATTR_NORMAL;
        if (types) {
            int32_t v;
            memcpy(&v, (const char *)types + 4 * i, 4);
            a = (v >= TOK_ATTR_NORMAL && v <= TOK_ATTR_BYTE) ? (uint8_t)v : 0;
        }
        t->attr[i] = a;
        vocab_put(t, (int32_t)i);
    }
    return SH_OK;
}

static int load_merges(tok *t, const gguf *g) {
    int64_t mi;
    int rc = find_array(g, "tokenizer.ggml.merges", GGUF_T_STRING, &mi);
    if (rc == SH_ENOTFOUND)
        return sh_error_set(SH_ENOTFOUND, "tokenizer.ggml.merges missing (needed by a gpt2 tokenizer)");
    if (rc) return rc;
    uint64_t n = gguf_arr_n(g, mi), total = 0;
    if (n > TOK_MAX_MERGES)
        return sh_error_set(SH_ERANGE, "%llu merges exceed the limit", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(g, mi, i);
        if (s.len > TOK_MAX_TOKEN_LEN) return sh_error_set(SH_EFORMAT, "merge %llu too long", (unsigned long long)i);
        total += s.len + 1;
    }
    if (total > TOK_MAX_POOL) return sh_error_set(SH_ERANGE, "merges too large");
    t->mpool = malloc(total ? total : 1);
    t->merges = malloc((n ? n : 1) * sizeof *t->merges);
    t->mmask = table_size(n) - 1;
    t->mtab = malloc(((size_t)t->mmask + 1) * sizeof *t->mtab);
    if (!t->mpool || !t->merges || !t->mtab)
        return sh_error_set(SH_ENOMEM, "out of memory loading the merges");
    memset(t->mtab, 0xff, ((size_t)t->mmask + 1) * sizeof *t->mtab);
    uint64_t p = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(g, mi, i);
        memcpy(t->mpool + p, s.ptr, s.len);
        t->mpool[p + s.len] = '\0';
        /* llama.cpp splits at the first space after the first byte; a merge without one is
         * an empty pair that can never apply */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        merge_ent *m = &t->merges[i];
        m->off = (uint32_t)p;
        m->llen = sp ? (uint32_t)(sp - s.ptr) : 0;
        m->rlen = sp ? (uint32_t)(s.len - m->llen - 1) : 0;
        p += s.len + 1;
        t->n_merges = (int32_t)i + 1;
        if (sp) merge_put(t, (int32_t)i);
    }
    return SH_OK;
}

static int32_t find_cstr(const tok *t, const char *s) { return vocab_get(t, s, strlen(s)); }

/* Make id a control token, as llama.cpp does for tokens it recognises by their text. */
static void force_control(tok *t, int32_t id) {
    if (id >= 0 && t->attr[id] != TOK_ATTR_CONTROL) t->attr[id] = TOK_ATTR_CONTROL;
}

/* First token of the list (in list order) present in the vocabulary, or -1. */
static int32_t first_of(const tok *t, const char *const *names) {
    for (int i = 0; names[i]; i++) {
        int32_t id = find_cstr(t, names[i]);
        if (id >= 0) return id;
    }
    return -1;
}

static void read_id(const tok *t, const gguf *g, const char *key, int32_t *id) {
    uint32_t v;
    if (*id >= t->n_vocab) *id = -1;
    if (gguf_get_u32(g, key, &v) == SH_OK && v < (uint32_t)t->n_vocab) *id = (int32_t)v;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const tok *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static int setup_specials(tok *t, const gguf *g, int no_bos) {
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
                                            "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                            "<end_of_utterance>", NULL};
    static const char *const eom_names[] = {"<|eom_id|>", NULL};
    static const char *const fim_pad_names[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
    static const char *const fim_rep_names[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
    static const char *const fim_sep_names[] = {"<|file_sep|>", NULL};
    static const char *const fim_pre_names[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
    static const char *const fim_suf_names[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
    static const char *const fim_mid_names[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
    static const char *const eog_names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL};
    static const char *const always_user[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

    if (t->kind == KIND_SPM) {
        t->bos = 1, t->eos = 2, t->unk = 0;
    } else {
        t->bos = no_bos ? -1 : 11, t->eos = 11, t->unk = -1;
    }
    t->eot = t->eom = t->pad = -1;
    int32_t sep = -1, fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    read_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos);
    read_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos);
    read_id(t, g, "tokenizer.ggml.eot_token_id", &t->eot);
    read_id(t, g, "tokenizer.ggml.eom_token_id", &t->eom);
    read_id(t, g, "tokenizer.ggml.unknown_token_id", &t->unk);
    read_id(t, g, "tokenizer.ggml.seperator_token_id", &sep);
    read_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad);
    read_id(t, g, "tokenizer.ggml.fim_pre_token_id", &fim_pre);
    read_id(t, g, "tokenizer.ggml.fim_suf_token_id", &fim_suf);
    read_id(t, g, "tokenizer.ggml.fim_mid_token_id", &fim_mid);
    read_id(t, g, "tokenizer.ggml.fim_pad_token_id", &fim_pad);
    read_id(t, g, "tokenizer.ggml.fim_rep_token_id", &fim_rep);
    read_id(t, g, "tokenizer.ggml.fim_sep_token_id", &fim_sep);
    read_id(t, g, "tokenizer.ggml.prefix_token_id", &fim_pre);
    read_id(t, g, "tokenizer.ggml.suffix_token_id", &fim_suf);
    read_id(t, g, "tokenizer.ggml.middle_token_id", &fim_mid);

    int b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == SH_OK) t->add_bos = b != 0;

    /* Tokens found by text. llama.cpp walks a hash map and keeps the first hit; taking the
     * first name in list order reproduces its choices on the reference vocabularies. */
    struct { int32_t *id; const char *const *names; } autos[] = {
        {&t->eot, eot_names}, {&t->eom, eom_names}, {&fim_pre, fim_pre_names},
        {&fim_suf, fim_suf_names}, {&fim_mid, fim_mid_names}, {&fim_pad, fim_pad_names},
        {&fim_rep, fim_rep_names}, {&fim_sep, fim_sep_names},
    };
    for (size_t i = 0; i < sizeof autos / sizeof autos[0]; i++) {
        if (*autos[i].id >= 0) continue;
        *autos[i].id = first_of(t, autos[i].names);
        force_control(t, *autos[i].id);
    }

    int32_t eog_extra[] = {fim_pad, fim_rep, fim_sep};
    for (size_t i = 0; i < 3; i++)
        if (eog_extra[i] >= 0) t->flags[eog_extra[i]] |= TF_EOG;
    for (int i = 0; eog_names[i]; i++) {
        int32_t id = find_cstr(t, eog_names[i]);
        if (id < 0) continue;
        t->flags[id] |= TF_EOG;
        force_control(t, id);
    }
    for (int i = 0; always_user[i]; i++) {
        int32_t id = find_cstr(t, always_user[i]);
        if (id >= 0) t->attr[id] = TOK_ATTR_USER_DEFINED;
    }
    if (t->eos >= 0) t->flags[t->eos] |= TF_EOG;
    if (t->eot >= 0) t->flags[t->eot] |= TF_EOG;
    if (t->eom >= 0) t->flags[t->eom] |= TF_EOG;

    /* harmony / solar-open: "<|end|>" ends a message, not the generation */
    int32_t ret = find_cstr(t, "<|return|>"), call = find_cstr(t, "<|call|>");
    int32_t calls = find_cstr(t, "<|calls|>"), flush = find_cstr(t, "<|flush|>");
    int32_t end = find_cstr(t, "<|end|>");
#define IS_EOG(x) ((x) >= 0 && (t->flags[x] & TF_EOG))
    int has_call = IS_EOG(call) || IS_EOG(calls);
    if (IS_EOG(end) && ((IS_EOG(ret) && has_call) || (has_call && IS_EOG(flush)))) {
        t->flags[end] &= (uint8_t)~TF_EOG;
        t->attr[end] = TOK_ATTR_USER_DEFINED;
    }
    int32_t tool_resp = find_cstr(t, "<|tool_response>"), s_end = find_cstr(t, "</s>");
    if (IS_EOG(tool_resp) && IS_EOG(s_end)) {
        t->flags[s_end] &= (uint8_t)~TF_EOG;
        t->attr[s_end] = TOK_ATTR_NORMAL;
    }
#undef IS_EOG
    (void)sep;

    /* special texts cut out before tokenizing, by priority */
    int32_t n_sp = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint8_t a = t->attr[i];
        if (a == TOK_ATTR_CONTROL || a == TOK_ATTR_USER_DEFINED || a == TOK_ATTR_UNKNOWN) n_sp++;
    }
    t->special = malloc((n_sp ? n_sp : 1) * sizeof *t->special);
    t->spec_by_first = malloc((n_sp ? n_sp : 1) * sizeof *t->spec_by_first);
    if (!t->special || !t->spec_by_first) return sh_error_set(SH_ENOMEM, "out of memory");
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint8_t a = t->attr[i];
        if (a == TOK_ATTR_CONTROL || a == TOK_ATTR_USER_DEFINED || a == TOK_ATTR_UNKNOWN)
            t->special[t->n_special++] = i;
    }
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);
    uint32_t count[257] = {0};
    for (int32_t k = 0; k < t->n_special; k++)
        count[(uint8_t)t->pool[t->off[t->special[k]]] + 1]++;
    for (int i = 0; i < 256; i++) count[i + 1] += count[i];
    memcpy(t->spec_first, count, sizeof count);
    for (int32_t k = 0; k < t->n_special; k++) /* stays in priority order inside a bucket */
        t->spec_by_first[count[(uint8_t)t->pool[t->off[t->special[k]]]]++] = k;
    return SH_OK;
}

static int compile_regexes(tok *t, const pre_family *f) {
    for (int i = 0; i < TOK_MAX_REGEX && f->re[i]; i++) {
        int err;
        PCRE2_SIZE eoff;
        t->re[i] = pcre2_compile((PCRE2_SPTR)f->re[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &eoff, NULL);
        if (!t->re[i]) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(err, msg, sizeof msg);
            return sh_error_set(SH_EINVAL, "pre-tokenizer regex %d: %s at %zu", i, (char *)msg, (size_t)eoff);
        }
        t->n_re = i + 1;
        (void)pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE); /* interpreter if no JIT */
    }
    return SH_OK;
}

int tok_load(tok **out, const gguf *g) {
    if (!out || !g) return sh_error_set(SH_EINVAL, "tok_load: NULL argument");
    *out = NULL;
    int rc;
    const pre_def *pd = NULL;
    tok *t = calloc(1, sizeof *t);
    if (!t) return sh_error_set(SH_ENOMEM, "out of memory");

    rc = gguf_get_cstr(g, "tokenizer.ggml.model", t->model, sizeof t->model);
    if (rc == SH_ENOTFOUND) {
        rc = sh_error_set(SH_ENOTFOUND, "tokenizer.ggml.model missing: the file has no tokenizer");
        goto out;
    }
    if (rc) {
        rc = sh_error_set(SH_EFORMAT, "tokenizer.ggml.model is not a string");
        goto out;
    }
    if (!strcmp(t->model, "llama")) {
        t->kind = KIND_SPM;
        t->add_bos = 1;
        t->add_space_prefix = 1;
    } else if (!strcmp(t->model, "gpt2")) {
        t->kind = KIND_BPE;
    } else {
        rc = sh_error_set(SH_EUNSUPPORTED, "tokenizer model '%s' is not supported (gpt2, llama)", t->model);
        goto out;
    }
    rc = gguf_get_cstr(g, "tokenizer.ggml.pre", t->pre, sizeof t->pre);
    if (rc == SH_ENOTFOUND) strcpy(t->pre, "default");
    else if (rc) {
        rc = sh_error_set(SH_EFORMAT, "tokenizer.ggml.pre is not a string");
        goto out;
    }
    if (t->kind == KIND_BPE) {
        for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
            if (!strcmp(pre_defs[i].name, t->pre)) pd = &pre_defs[i];
        if (!pd) {
            rc = sh_error_set(SH_EUNSUPPORTED, "unknown pre-tokenizer type '%s'", t->pre);
            goto out;
        }
        t->ignore_merges = pd->ignore_merges;
        t->add_bos = pd->add_bos;
    }
    int b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == SH_OK && t->kind == KIND_SPM)
        t->add_space_prefix = b != 0;

    init_byte_tables(t);
    if ((rc = load_tokens(t, g))) goto out;
    if (t->kind == KIND_BPE) {
        if ((rc = load_merges(t, g))) goto out;
        if ((rc = compile_regexes(t, &families[pd->family]))) goto out;
    }
    for (int c = 0; c < 256; c++) {
        char s[8];
        char one = (char)c;
        int32_t id = -1;
        if (t->kind == KIND_SPM) {
            snprintf(s, sizeof s, "<0x%02X>", c);
            id = vocab_get(t, s, 6);
        }
        t->byte_tok[c] = id >= 0 ? id : vocab_get(t, &one, 1);
    }
    if ((rc = setup_specials(t, g, pd ? pd->no_bos : 0))) goto out;
    *out = t;
    t = NULL;
out:
    tok_free(t);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* properties */

int32_t tok_n_vocab(const tok *t) { return t->n_vocab; }
int32_t tok_bos(const tok *t) { return t->bos; }
int32_t tok_eos(const tok *t) { return t->eos; }
int32_t tok_eot(const tok *t) { return t->eot; }
int32_t tok_pad(const tok *t) { return t->pad; }
int tok_add_bos(const tok *t) { return t->add_bos && t->bos >= 0; }
int tok_is_eog(const tok *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->flags[id] & TF_EOG) != 0;
}
int tok_attr(const tok *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->attr[id] : 0;
}
const char *tok_model_name(const tok *t) { return t->model; }
const char *tok_pre_name(const tok *t) { return t->pre; }
int32_t tok_find(const tok *t, const char *s) { return s ? find_cstr(t, s) : -1; }

/* ------------------------------------------------------------------------------------------ */
/* encoding */

typedef struct {
    int32_t prev, next;
    uint32_t start, n; /* bytes in the work buffer */
} sym;

typedef struct {
    float score; /* SPM: token score of the pair (higher merges first) */
    int32_t rank; /* BPE: merge rank (lower merges first) */
    int32_t left, right;
    uint32_t size;
} bigram;

typedef struct {
    const tok *t;
    int32_t *out;
    int64_t cap, n;
    /* grown on demand up to the longest word, reused across words */
    char *buf;
    size_t buf_cap;
    sym *syms;
    size_t syms_cap;
    bigram *heap;
    size_t heap_cap, heap_n;
    pcre2_match_data *md[TOK_MAX_REGEX];
    const char *subject; /* sanitised text the regexes run on */
    const char *words;   /* the bytes BPE sees, at the same offsets */
    int is_spm;
    tok_word_fn word_fn; /* tok_pre_split: words go here instead of BPE */
    void *word_user;
} enc;

static void emit(enc *e, int32_t id) {
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return SH_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return sh_error_set(SH_ENOMEM, "out of memory while tokenizing");
    *p = q;
    *cap = c;
    return SH_OK;
}

/* heap order: BPE lowest rank first, SPM highest score first; ties go to the leftmost pair */
static int before(const enc *e, const bigram *a, const bigram *b) {
    if (e->is_spm) {
        if (a->score != b->score) return a->score > b->score;
    } else if (a->rank != b->rank)
        return a->rank < b->rank;
    return a->left < b->left;
}

static int heap_push(enc *e, bigram v) {
    int rc = grow((void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap);
    if (rc) return rc;
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(e, &v, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = v;
    return SH_OK;
}

static bigram heap_pop(enc *e) {
    bigram top = e->heap[0], v = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(e, &e->heap[c + 1], &e->heap[c])) c++;
        if (!before(e, &e->heap[c], &v)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = v;
    return top;
}

static int try_pair(enc *e, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return SH_OK;
    const sym *a = &e->syms[l], *b = &e->syms[r];
    bigram bg = {0, 0, l, r, a->n + b->n};
    if (e->is_spm) {
        int32_t id = vocab_get(e->t, e->buf + a->start, a->n + b->n);
        if (id < 0) return SH_OK;
        bg.score = e->t->score[id];
    } else {
        bg.rank = merge_get(e->t, e->buf + a->start, a->n, e->buf + b->start, b->n);
        if (bg.rank < 0) return SH_OK;
    }
    return heap_push(e, bg);
}

/* Merge the symbols of e->buf[0..n) (one symbol per character) until no pair applies. Pairs
 * whose symbols changed since they were queued are stale: symbols only grow, so a changed
 * pair has a larger total size than recorded. */
static int merge_symbols(enc *e, size_t n) {
    int rc;
    size_t ns = 0;
    if ((rc = grow((void **)&e->syms, &e->syms_cap, n, sizeof *e->syms))) return rc;
    for (size_t off = 0; off < n; ns++) {
        size_t l = utf8_lead_len((uint8_t)e->buf[off]);
        if (l > n - off) l = n - off;
        e->syms[ns] = (sym){(int32_t)ns - 1, -1, (uint32_t)off, (uint32_t)l};
        off += l;
        if (off < n) e->syms[ns].next = (int32_t)ns + 1;
    }
    /* the heap grows as needed: at most 3 * ns pushes (each merge queues two pairs) */
    e->heap_n = 0;
    for (size_t i = 1; i < ns; i++)
        if ((rc = try_pair(e, (int32_t)i - 1, (int32_t)i))) return rc;
    while (e->heap_n) {
        bigram bg = heap_pop(e);
        sym *a = &e->syms[bg.left], *b = &e->syms[bg.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) e->syms[b->next].prev = bg.left;
        if ((rc = try_pair(e, a->prev, bg.left)) || (rc = try_pair(e, bg.left, a->next)))
            return rc;
    }
    return SH_OK;
}

static int bpe_word(enc *e, const char *w, size_t n) {
    const tok *t = e->t;
    int rc;
    if ((rc = grow((void **)&e->buf, &e->buf_cap, 2 * n + 1, 1))) return rc;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)w[i];
        memcpy(e->buf + m, t->benc[c], t->benc_len[c]);
        m += t->benc_len[c];
    }
    if (t->ignore_merges) {
        int32_t id = vocab_get(t, e->buf, m);
        if (id >= 0) {
            emit(e, id);
            return SH_OK;
        }
    }
    if ((rc = merge_symbols(e, m))) return rc;
    for (int32_t i = 0; i >= 0; i = e->syms[i].next) {
        const sym *s = &e->syms[i];
        int32_t id = vocab_get(t, e->buf + s->start, s->n);
        if (id >= 0) {
            emit(e, id);
            continue;
        }
        /* as llama.cpp: each byte of the encoded text alone, when that is a token */
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t b = t->byte_tok[(uint8_t)e->buf[s->start + j]];
            if (b >= 0) emit(e, b);
        }
    }
    return SH_OK;
}

/* Pre-tokenizer stage k splits s[0..n) into matches and the gaps between them, passing each
 * piece to stage k + 1 (the last stage runs BPE). */
static int split_stage(enc *e, int k, const char *s, size_t n) {
    const tok *t = e->t;
    if (k == t->n_re)
        return e->word_fn ? e->word_fn(e->word_user, e->words + (s - e->subject), n)
                          : bpe_word(e, e->words + (s - e->subject), n);
    size_t pos = 0, prev = 0;
    int rc;
    while (pos < n) {
        int r = pcre2_match(t->re[k], (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, e->md[k], NULL);
        if (r == PCRE2_ERROR_NOMATCH) break;
        if (r < 0) return sh_error_set(SH_EINVAL, "pre-tokenizer regex failed (%d)", r);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md[k]);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing: step over one character */
            pos = ms + utf8_lead_len((uint8_t)s[ms]);
            continue;
        }
        if (ms > prev && (rc = split_stage(e, k + 1, s + prev, ms - prev))) return rc;
        if ((rc = split_stage(e, k + 1, s + ms, me - ms))) return rc;
        prev = pos = me;
    }
    if (n > prev) return split_stage(e, k + 1, s + prev, n - prev);
    return SH_OK;
}

static int encode_bpe(enc *e, const char *text, size_t n) {
    int surrogates = 0, rc;
    char *clean = malloc(3 * n + 1);
    if (!clean) return sh_error_set(SH_ENOMEM, "out of memory while tokenizing");
    size_t m = sanitize_utf8((const uint8_t *)text, n, clean, NULL, &surrogates);
    e->subject = e->words = clean;
    if (surrogates) { /* rare: second pass with the surrogate bytes kept for BPE */
        char *raw = malloc(3 * n + 1);
        if (!raw) {
            free(clean);
            return sh_error_set(SH_ENOMEM, "out of memory while tokenizing");
        }
        sanitize_utf8((const uint8_t *)text, n, raw, NULL, &surrogates);
        sanitize_utf8((const uint8_t *)text, n, clean, raw, &surrogates);
        e->words = raw;
    }
    rc = split_stage(e, 0, clean, m);
    if (e->words != clean) free((char *)e->words);
    free(clean);
    return rc;
}

static int encode_spm(enc *e, const char *text, size_t n, int prefix_space) {
    const tok *t = e->t;
    int rc;
    /* the escaped text is built in place of the symbol buffer's text */
    size_t spaces = prefix_space ? 1 : 0;
    for (size_t i = 0; i < n; i++) spaces += text[i] == ' ';
    size_t m = n + (prefix_space ? 1 : 0) + 2 * spaces;
    if ((rc = grow((void **)&e->buf, &e->buf_cap, m + 1, 1))) return rc;
    size_t o = 0;
    if (prefix_space) {
        memcpy(e->buf, "\xe2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(e->buf + o, "\xe2\x96\x81", 3);
            o += 3;
        } else
            e->buf[o++] = text[i];
    }
    if ((rc = merge_symbols(e, o))) return rc;
    for (int32_t i = 0; i >= 0; i = e->syms[i].next) {
        const sym *s = &e->syms[i];
        int32_t id = vocab_get(t, e->buf + s->start, s->n);
        if (id >= 0) {
            emit(e, id);
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t b = t->byte_tok[(uint8_t)e->buf[s->start + j]];
            if (b < 0) b = t->unk; /* llama.cpp would abort on a vocabulary without byte tokens */
            if (b >= 0) emit(e, b);
        }
    }
    return SH_OK;
}

static int encode_raw(enc *e, const char *text, size_t n, int after_special) {
    if (e->is_spm) return encode_spm(e, text, n, e->t->add_space_prefix && after_special);
    return encode_bpe(e, text, n);
}

typedef struct {
    uint32_t key; /* priority while choosing, then the position */
    uint32_t pos;
    int32_t id;
} occ;

static int cmp_occ(const void *a, const void *b) {
    const occ *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Special token texts in text[0..n), chosen as llama.cpp's tokenizer_st_partition does:
 * specials in priority order (longest first), each taking its leftmost non-overlapping
 * occurrences that do not touch text already taken. *out (caller frees) is sorted by
 * position, each entry with key = its length. */
static int find_specials(const tok *t, const char *text, size_t n, int parse_special, occ **out,
                         size_t *n_out) {
    occ *o = NULL;
    size_t no = 0, co = 0;
    uint8_t *taken = NULL;
    int rc = SH_OK;
    *out = NULL;
    *n_out = 0;
    for (size_t p = 0; p < n; p++) {
        uint8_t c = (uint8_t)text[p];
        for (uint32_t j = t->spec_first[c]; j < t->spec_first[c + 1]; j++) {
            int32_t k = t->spec_by_first[j], id = t->special[k];
            uint32_t l = t->len[id];
            if (!parse_special && t->attr[id] != TOK_ATTR_USER_DEFINED) continue;
            if (l > n - p || memcmp(text + p, t->pool + t->off[id], l) != 0) continue;
            if ((rc = grow((void **)&o, &co, no + 1, sizeof *o))) goto out;
            o[no++] = (occ){(uint32_t)k, (uint32_t)p, id};
        }
    }
    if (!no) goto out;
    qsort(o, no, sizeof *o, cmp_occ);
    taken = calloc(n, 1);
    if (!taken) {
        rc = sh_error_set(SH_ENOMEM, "out of memory while tokenizing");
        goto out;
    }
    size_t na = 0, last_end = 0;
    for (size_t i = 0; i < no; i++) {
        if (i == 0 || o[i].key != o[i - 1].key) last_end = 0;
        uint32_t l = t->len[o[i].id];
        if (o[i].pos < last_end) continue;
        int free_run = 1;
        for (uint32_t j = 0; j < l && free_run; j++) free_run = !taken[o[i].pos + j];
        if (!free_run) continue;
        memset(taken + o[i].pos, 1, l);
        last_end = o[i].pos + l;
        o[na++] = (occ){l, o[i].pos, o[i].id};
    }
    for (size_t i = 0; i < na; i++) o[i].key = o[i].pos; /* now sort by position */
    qsort(o, na, sizeof *o, cmp_occ);
    for (size_t i = 0; i < na; i++) o[i].key = t->len[o[i].id];
    *out = o;
    *n_out = na;
    o = NULL;
out:
    free(o);
    free(taken);
    return rc;
}

int tok_encode(const tok *t, const char *text, size_t len, int add_bos, int parse_special,
               int32_t *out, int64_t cap, int64_t *n_out) {
    if (!t || (!text && len) || (!out && cap > 0) || cap < 0 || !n_out)
        return sh_error_set(SH_EINVAL, "tok_encode: bad argument");
    *n_out = 0;
    if (len > TOK_MAX_TEXT)
        return sh_error_set(SH_ERANGE, "text of %zu bytes is too long to tokenize", len);
    enc e = {.t = t, .out = out, .cap = cap, .is_spm = t->kind == KIND_SPM};
    occ *sp = NULL;
    size_t n_sp = 0;
    int rc = SH_OK;
    for (int i = 0; i < t->n_re; i++) {
        e.md[i] = pcre2_match_data_create_from_pattern(t->re[i], NULL);
        if (!e.md[i]) {
            rc = sh_error_set(SH_ENOMEM, "out of memory while tokenizing");
            goto out;
        }
    }
    if (add_bos && tok_add_bos(t)) emit(&e, t->bos);
    if (len == 0) goto out;
    if ((rc = find_specials(t, text, len, parse_special, &sp, &n_sp))) goto out;
    size_t prev = 0;
    int after_special = 1; /* SPM puts a space before the text that starts the input */
    for (size_t i = 0; i < n_sp; i++) {
        if (sp[i].pos > prev && (rc = encode_raw(&e, text + prev, sp[i].pos - prev, after_special)))
            goto out;
        emit(&e, sp[i].id);
        after_special = 1;
        prev = sp[i].pos + sp[i].key;
    }
    if (len > prev && (rc = encode_raw(&e, text + prev, len - prev, after_special))) goto out;
out:
    for (int i = 0; i < t->n_re; i++) pcre2_match_data_free(e.md[i]);
    free(sp);
    free(e.buf);
    free(e.syms);
    free(e.heap);
    if (rc) return rc;
    *n_out = e.n;
    return e.n > cap ? sh_error_set(SH_EFULL, "%lld tokens do not fit in %lld", (long long)e.n,
                                    (long long)cap)
                     : SH_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* decoding */

static void put(char *buf, int64_t cap, int64_t *n, const char *s, size_t k) {
    for (size_t i = 0; i < k; i++, (*n)++)
        if (*n < cap) buf[*n] = s[i];
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int64_t tok_piece(const tok *t, int32_t id, int render_special, char *buf, int64_t cap) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    if (!buf) cap = 0;
    const char *s = t->pool + t->off[id];
    uint32_t n = t->len[id];
    int64_t w = 0;
    switch (t->attr[id]) {
    case TOK_ATTR_CONTROL:
    case TOK_ATTR_UNKNOWN:
        if (!render_special) return 0;
        /* fall through */
    case TOK_ATTR_USER_DEFINED:
        put(buf, cap, &w, s, n);
        return w;
    case TOK_ATTR_BYTE: {
        int hi = n == 6 ? hexval(s[3]) : -1, lo = n == 6 ? hexval(s[4]) : -1;
        if (hi < 0 || lo < 0) return 0;
        char c = (char)(hi * 16 + lo);
        put(buf, cap, &w, &c, 1);
        return w;
    }
    case TOK_ATTR_NORMAL:
        break;
    default:
        return 0; /* unused / undefined tokens print nothing, as in llama.cpp */
    }
    for (uint32_t i = 0; i < n;) {
        if (t->kind == KIND_SPM) {
            if (n - i >= 3 && !memcmp(s + i, "\xe2\x96\x81", 3)) {
                put(buf, cap, &w, " ", 1);
                i += 3;
            } else
                put(buf, cap, &w, s + i++, 1);
            continue;
        }
        int l = utf8_check((const uint8_t *)s + i, n - i);
        if (l <= 0) { /* not UTF-8: pass the byte through */
            put(buf, cap, &w, s + i++, 1);
            continue;
        }
        uint32_t cp = (uint8_t)s[i];
        if (l == 2) cp = ((cp & 0x1f) << 6) | ((uint8_t)s[i + 1] & 0x3f);
        if (l == 2 && cp < 0x144 && t->bdec[cp] >= 0) {
            char c = (char)t->bdec[cp];
            put(buf, cap, &w, &c, 1);
        } else if (l == 1 && t->bdec[cp] >= 0) {
            char c = (char)t->bdec[cp];
            put(buf, cap, &w, &c, 1);
        } else
            put(buf, cap, &w, s + i, (size_t)l);
        i += (uint32_t)l;
    }
    return w;
}

/* Emit the complete characters of in[0..n); an unfinished tail is left (its length in *rest)
 * unless final, where it becomes one U+FFFD. Writes only when out != NULL; returns the
 * number of bytes produced. */
static int64_t utf8_drain(const uint8_t *in, size_t n, int final, char *out, size_t *rest) {
    int64_t w = 0;
    size_t i = 0;
    *rest = 0;
    while (i < n) {
        int l = utf8_check(in + i, n - i);
        if (l > 0) {
            if (out) memcpy(out + w, in + i, (size_t)l);
            w += l;
            i += (size_t)l;
        } else if (l == 0 && !final) {
            *rest = n - i;
            break;
        } else {
            if (out) memcpy(out + w, "\xef\xbf\xbd", 3);
            w += 3;
            i += l == 0 ? n - i : 1;
        }
    }
    return w;
}

int64_t tok_stream_push(const tok *t, tok_utf8_stream *s, int32_t id, int render_special,
                        char *out, int64_t cap) {
    if (!t || !s || (!out && cap > 0) || s->n_pend < 0 || s->n_pend > 3)
        return sh_error_set(SH_EINVAL, "tok_stream_push: bad argument");
    char local[1024];
    char *b = local;
    int64_t np = tok_piece(t, id, render_special, NULL, 0);
    size_t total = (size_t)s->n_pend + (size_t)np;
    if (total > sizeof local && !(b = malloc(total)))
        return sh_error_set(SH_ENOMEM, "out of memory");
    memcpy(b, s->pend, (size_t)s->n_pend);
    tok_piece(t, id, render_special, b + s->n_pend, np);
    size_t rest;
    int64_t need = utf8_drain((const uint8_t *)b, total, 0, NULL, &rest);
    int64_t w;
    if (need > cap) {
        w = sh_error_set(SH_EFULL, "stream output needs %lld bytes", (long long)need);
    } else {
        w = utf8_drain((const uint8_t *)b, total, 0, out, &rest);
        memcpy(s->pend, b + total - rest, rest);
        s->n_pend = (int)rest;
    }
    if (b != local) free(b);
    return w;
}

int64_t tok_stream_flush(tok_utf8_stream *s, char *out, int64_t cap) {
    if (!s || (!out && cap > 0) || s->n_pend < 0 || s->n_pend > 3)
        return sh_error_set(SH_EINVAL, "tok_stream_flush: bad argument");
    size_t rest;
    int64_t need = utf8_drain((const uint8_t *)s->pend, (size_t)s->n_pend, 1, NULL, &rest);
    if (need > cap) return sh_error_set(SH_EFULL, "stream output needs %lld bytes", (long long)need);
    utf8_drain((const uint8_t *)s->pend, (size_t)s->n_pend, 1, out, &rest);
    s->n_pend = 0;
    return need;
}

/* ------------------------------------------------------------------------------------------ */
/* vocabulary building */

int tok_pre_split(const char *pre, const char *text, size_t len, tok_word_fn fn, void *user) {
    if (!pre || (!text && len) || !fn) return sh_error_set(SH_EINVAL, "tok_pre_split: bad argument");
    if (len > TOK_MAX_TEXT)
        return sh_error_set(SH_ERANGE, "text of %zu bytes is too long to split", len);
    const pre_def *pd = NULL;
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
        if (!strcmp(pre_defs[i].name, pre)) pd = &pre_defs[i];
    if (!pd) return sh_error_set(SH_EUNSUPPORTED, "unknown pre-tokenizer type '%s'", pre);
    int rc;
    enc e = {.word_fn = fn, .word_user = user};
    tok *t = calloc(1, sizeof *t);
    if (!t) return sh_error_set(SH_ENOMEM, "out of memory");
    e.t = t;
    if ((rc = compile_regexes(t, &families[pd->family]))) goto out;
    for (int i = 0; i < t->n_re; i++) {
        e.md[i] = pcre2_match_data_create_from_pattern(t->re[i], NULL);
        if (!e.md[i]) {
            rc = sh_error_set(SH_ENOMEM, "out of memory while splitting");
            goto out;
        }
    }
    rc = len ? encode_bpe(&e, text, len) : SH_OK;
out:
    for (int i = 0; i < t->n_re; i++) pcre2_match_data_free(e.md[i]);
    tok_free(t);
    return rc;
}

int tok_byte_text(uint8_t b, char out[4]) {
    uint32_t cp = b;
    if (!byte_is_self(b)) {
        uint32_t n = 0;
        for (unsigned c = 0; c < b; c++) n += !byte_is_self(c);
        cp = 256 + n;
    }
    return (int)utf8_put(cp, out);
}
