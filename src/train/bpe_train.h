/* bpe_train.h - learning a byte-level BPE vocabulary from a text corpus.
 *
 * The corpus is split into words by the same pre-tokenizer the engine's tokenizer uses
 * (tok_pre_split), so the learnt merges apply exactly as learnt. Starting from the 256 bytes,
 * the most frequent adjacent pair of symbols (counted over words weighted by their frequency;
 * ties broken by the smaller pair of ids, so the result is deterministic) is merged into a new
 * symbol until the vocabulary reaches its size or no pair occurs min_freq times. Token ids:
 * bytes 0..255 in byte order, then merges in rank order, then the special tokens.
 *
 * The result is written as GGUF tokenizer metadata (tokenizer.ggml.model = "gpt2"), which
 * tok_load and llama.cpp read. */
#ifndef SH_BPE_TRAIN_H
#define SH_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

#define BPE_MAX_VOCAB 65536
#define BPE_MAX_SPECIALS 16

typedef struct {
    int32_t vocab_size; /* bytes + merges + specials, 256 + n_specials < size <= BPE_MAX_VOCAB */
    const char *pre;    /* pre-tokenizer name: "qwen2" (default), "llama3", "default", ... */
    int64_t min_freq;   /* stop when the best pair is rarer (default 2) */
    /* special tokens, appended after the merges as control tokens; the first three roles
     * below name ids in the metadata (-1 = none) */
    const char *specials[BPE_MAX_SPECIALS];
    int n_specials;
    int bos, eos, pad; /* indices into specials[] */
    const char *chat_template; /* tokenizer.chat_template, may be NULL */
} bpe_params;

/* ChatML: <|endoftext|> (bos, pad), <|im_start|>, <|im_end|> (eos) and a ChatML template
 * without a default system prompt. */
void bpe_params_default(bpe_params *p, int32_t vocab_size);

typedef struct {
    char **tokens; /* byte-level texts (GPT-2 mapping), n_tokens of them */
    int32_t *types; /* tokenizer.ggml.token_type: 1 normal, 3 control, 6 byte */
    int32_t n_tokens;
    char **merges; /* "left right", n_merges of them */
    int32_t n_merges;
    int64_t n_words, n_unique; /* corpus statistics */
} bpe_vocab;

/* Learns a vocabulary from text[0..len) (borrowed). Caller frees v with bpe_vocab_free
 * (also after an error). */
int bpe_learn(bpe_vocab *v, const char *text, size_t len, const bpe_params *p);
void bpe_vocab_free(bpe_vocab *v);

/* Adds the tokenizer.* keys of v (and p's specials, ids, template) to w. */
int bpe_write_kv(gguf_writer *w, const bpe_vocab *v, const bpe_params *p);

#endif
