/* tokenizer.h - GGUF tokenizers: GPT-2 style byte-level BPE (tokenizer.ggml.model = "gpt2",
 * pre-tokenizer chosen by tokenizer.ggml.pre) and SentencePiece style (model = "llama", scores
 * and byte fallback), matching llama.cpp token for token. Knows nothing of chat templates. */
#ifndef SH_TOKENIZER_H
#define SH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

typedef struct tok tok;

/* token attributes (as llama.cpp's token types) */
enum {
    TOK_ATTR_NORMAL = 1,
    TOK_ATTR_UNKNOWN = 2,
    TOK_ATTR_CONTROL = 3,
    TOK_ATTR_USER_DEFINED = 4,
    TOK_ATTR_UNUSED = 5,
    TOK_ATTR_BYTE = 6
};

/* ---- life cycle ---- */
/* Build from a GGUF's tokenizer.* metadata (g is borrowed only during the call; the tokenizer
 * copies what it needs). Errors name the problem (sh_error_last()). Caller frees. */
int tok_load(tok **out, const gguf *g);
void tok_free(tok *t);

/* ---- properties ---- */
int32_t tok_n_vocab(const tok *t);
int32_t tok_bos(const tok *t); /* -1 if none */
int32_t tok_eos(const tok *t);
int32_t tok_eot(const tok *t);
int32_t tok_pad(const tok *t);
int tok_add_bos(const tok *t);    /* 1 if a BOS is prepended to prompts (metadata / defaults) */
int tok_is_eog(const tok *t, int32_t id); /* end of generation: eos, eot, <|im_end|>, ... */
int tok_attr(const tok *t, int32_t id);
const char *tok_model_name(const tok *t); /* "gpt2" / "llama" */
const char *tok_pre_name(const tok *t);   /* pre-tokenizer name, e.g. "qwen2" */
/* Token id whose vocabulary text is exactly s (special tokens included), or -1. */
int32_t tok_find(const tok *t, const char *s);

/* ---- encode ---- */
/* Tokenize text[0..len) (at most 256 MiB). add_bos: prepend BOS if the model wants one
 * (tok_add_bos()). parse_special: recognise control/unknown token texts as single tokens;
 * user-defined token texts are always recognised, as in llama.cpp. Invalid UTF-8 is
 * tokenized as llama.cpp does (BPE: as U+FFFD; SPM: byte tokens).
 * Writes at most cap ids; *n_out receives the full count (returns SH_EFULL if > cap). */
int tok_encode(const tok *t, const char *text, size_t len, int add_bos, int parse_special,
               int32_t *out, int64_t cap, int64_t *n_out);

/* ---- vocabulary building ---- */
/* Splits text[0..len) into the words a byte-level BPE tokenizer with pre-tokenizer `pre`
 * ("qwen2", "llama3", "default", ...) would merge within, calling fn with each word's raw
 * bytes (borrowed for the call). A vocabulary learnt on these words tokenizes consistently. */
typedef int (*tok_word_fn)(void *user, const char *word, size_t n);
int tok_pre_split(const char *pre, const char *text, size_t len, tok_word_fn fn, void *user);
/* The byte-level (GPT-2) text of byte b, as vocabulary entries spell it: writes 1-2 bytes of
 * UTF-8 to out and returns the count. */
int tok_byte_text(uint8_t b, char out[4]);

/* ---- decode ---- */
/* Raw bytes of one token (byte-level decoding applied, SPM "▁" -> space, byte tokens ->
 * the byte). Control tokens give their text only when render_special. Returns the number of
 * bytes (may exceed cap: then only cap bytes were written). */
int64_t tok_piece(const tok *t, int32_t id, int render_special, char *buf, int64_t cap);

/* Streaming detokenizer: feeds token pieces and releases only complete UTF-8 characters, so a
 * stream never shows half a character. */
typedef struct {
    char pend[8];
    int n_pend;
} tok_utf8_stream;
/* Append the piece of id; writes complete characters to out (cap >= 256 + 8 is enough for one
 * token of the usual vocabularies) and returns the number of bytes written. Invalid bytes
 * come out one U+FFFD each. Returns SH_EFULL, consuming nothing, if out is too small. */
int64_t tok_stream_push(const tok *t, tok_utf8_stream *s, int32_t id, int render_special,
                        char *out, int64_t cap);
/* Flush what is left at the end (an incomplete character becomes one U+FFFD; needs cap >= 3,
 * else SH_EFULL). */
int64_t tok_stream_flush(tok_utf8_stream *s, char *out, int64_t cap);

#endif
