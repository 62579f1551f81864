/* jsonc.h - incremental JSON validator for constrained generation (response_format
 * json_object).
 *
 * A jsonc is a small fixed-size state (no allocation, copy it with =) fed with bytes. It answers
 * two questions: are the bytes so far a prefix of some JSON document of the required kind
 * (jsonc_feed() keeps returning 0), and would ending here give a valid document
 * (jsonc_complete()). The grammar is RFC 8259 with these limits, chosen so that every prefix it
 * accepts can really be completed by a strict parser (jansson):
 *   - nesting is bounded by JSONC_DEPTH_MAX containers;
 *   - strings must be valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), and
 *     \u escapes must pair surrogates correctly (a high one followed by \uDC00-\uDFFF; a lone
 *     surrogate is refused at the first hex digit that rules out a correct pair);
 *   - optionally, runs of whitespace outside strings are bounded (jsonc_set_ws_max()), so a
 *     model cannot pad forever.
 * Rejection is as early as possible: a prefix is refused at the first byte after which no
 * completion exists, which is what constrained sampling needs to never paint itself into a
 * corner.
 *
 * Token level: jsonc_accept_token() / jsonc_advance() apply the validator to a tokenizer's
 * pieces, for smp_sample_constrained() (sampler.h) through jsonc_accept_cb(). */
#ifndef SH_JSONC_H
#define SH_JSONC_H

#include <stddef.h>
#include <stdint.h>

#include "engine/tokenizer.h"

enum {
    JSONC_DEPTH_MAX = 64,   /* containers open at once */
    JSONC_PIECE_MAX = 1024, /* longer token pieces are refused by the token functions */
    /* a whitespace run long enough for pretty-printed output at any allowed depth; a sensible
     * jsonc_set_ws_max() value for generation */
    JSONC_WS_GEN = 2 * JSONC_DEPTH_MAX + 8
};

/* Opaque in spirit: read it only through the functions below. Plain data, safe to copy. */
typedef struct {
    uint64_t stack;  /* bit i set: the container at depth i+1 is an object */
    uint16_t ws_run; /* whitespace bytes in the current run outside strings */
    uint16_t ws_max; /* 0: unbounded */
    uint16_t hex;    /* value of the \u escape so far */
    uint8_t depth;
    uint8_t state;
    uint8_t sub; /* hex digits seen / literal position / UTF-8 continuation bytes left */
    uint8_t lit; /* which literal (true/false/null) */
    uint8_t lo;  /* allowed range of the next UTF-8 continuation byte */
    uint8_t hi;
    uint8_t flags; /* in a key, low surrogate expected, object required */
} jsonc;

/* ---- bytes ---- */
/* Start of a document. require_object: the top-level value must be an object (OpenAI's
 * json_object); otherwise any JSON value. */
void jsonc_init(jsonc *j, int require_object);
/* Bound whitespace runs outside strings to n bytes (0: unbounded, the default; at most
 * 65535). Leading and trailing whitespace count too. */
void jsonc_set_ws_max(jsonc *j, int n);
/* Feed p[0..n) (borrowed). Returns 0 if everything fed so far is still a valid prefix, -1
 * otherwise; after -1 the state is unspecified (test on a copy when unsure). */
int jsonc_feed(jsonc *j, const char *p, size_t n);
/* 1 if the bytes fed so far form a complete document: the top-level value is closed and only
 * whitespace follows. A top-level number (require_object 0) counts as complete as soon as it
 * could end ("12" and "1e5" are complete, "-" and "1." are not), because ending the input there
 * is a valid document; more digits may still follow. */
int jsonc_complete(const jsonc *j);
/* 1 once the top-level value is closed for good: nothing but whitespace may follow. Unlike
 * jsonc_complete() this is 0 for a bare top-level number, which could still grow. */
int jsonc_done(const jsonc *j);

/* ---- tokens ---- */
/* 1 if token id may come next after the bytes in j (j and t borrowed, j unchanged):
 *   - an end-of-generation token only when the document is complete;
 *   - once the top-level value is closed for good (jsonc_done()), nothing else, so generation
 *     ends instead of trailing whitespace;
 *   - otherwise a token whose piece (tok_piece, specials not rendered) is 1..JSONC_PIECE_MAX
 *     bytes and keeps the prefix valid; control tokens and empty pieces never. */
int jsonc_accept_token(const jsonc *j, const tok *t, int32_t id);
/* Commit token id: feeds its piece (nothing for an end-of-generation token). Returns SH_OK, or
 * SH_EINVAL with j unchanged if jsonc_accept_token() would have refused it. */
int jsonc_advance(jsonc *j, const tok *t, int32_t id);

/* Adapter for smp_sample_constrained(): pass jsonc_accept_cb as the accept function and a
 * jsonc_acceptor as its user pointer. Both pointers are borrowed for the call. */
typedef struct {
    const jsonc *j;
    const tok *t;
} jsonc_acceptor;
int jsonc_accept_cb(void *user, int32_t id);

#endif
