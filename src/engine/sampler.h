/* sampler.h - choosing the next token from a logits vector, and spotting stop strings in a
 * streamed reply.
 *
 * The sampler applies, in this order (as llama.cpp's default chain does):
 *   1. penalties over the last repeat_last_n tokens of the history: repetition (a positive
 *      logit is divided by repeat_penalty, a negative one multiplied), then frequency
 *      (count * frequency_penalty subtracted) and presence (presence_penalty subtracted once
 *      for any token seen) - the OpenAI formulas, restricted to the same window;
 *   2. top-k (k largest logits; 0 = off);
 *   3. top-p (smallest set of most likely tokens whose probability reaches top_p; 1 = off);
 *   4. min-p (drop tokens whose probability is below min_p times the best one; 0 = off);
 *   5. temperature (logits divided by it), softmax over what is left, one random draw.
 * Steps 3 and 4 look at the distribution before temperature, as llama.cpp does, so the
 * temperature only reshapes the draw among the survivors. temperature <= 0 means greedy: the
 * arg max after penalties (ties go to the lower id), with no random draw.
 *
 * Randomness comes from the sampler's own xoshiro256** generator seeded with splitmix64, so
 * the same seed, logits and history always give the same tokens on every platform. */
#ifndef SH_SAMPLER_H
#define SH_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float temperature;       /* <= 0: greedy */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off */
    int32_t repeat_last_n;   /* window of the three penalties; 0: off, -1: whole history */
    float presence_penalty;  /* 0: off */
    float frequency_penalty; /* 0: off */
    uint64_t seed;           /* the caller picks a random one when the user gave none */
} smp_params;

/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1,
 * repeat_last_n 64, presence/frequency 0, seed 0. */
void smp_params_default(smp_params *p);

typedef struct smp smp;

/* ---- life cycle ---- */
/* Scratch buffers for n_vocab candidates are allocated here once; sampling never allocates.
 * p is copied. Values out of range (NaN, negative top_p, ...) give SH_EINVAL. Caller frees. */
int smp_init(smp **out, int32_t n_vocab, const smp_params *p);
void smp_free(smp *s);
/* Restart the random sequence as if freshly created with this seed. */
void smp_reseed(smp *s, uint64_t seed);

/* ---- sampling ---- */
/* Choose a token from logits[0..n_vocab) (borrowed, not modified). history (borrowed, may be
 * NULL when n_history is 0) holds the tokens so far, oldest first; only its last
 * repeat_last_n entries matter, and ids outside the vocabulary are ignored. Non-finite logits
 * are never chosen unless all are; all -inf gives SH_EINVAL. */
int smp_sample(smp *s, const float *logits, const int32_t *history, int64_t n_history,
               int32_t *out_token);

/* ---- constrained sampling ---- */
/* Returns nonzero if token id may be chosen. Called with ids in order of decreasing logit,
 * each at most once per smp_sample_constrained() call; must not call back into the sampler. */
typedef int (*smp_accept_fn)(void *user, int32_t id);

/* smp_sample() restricted to the tokens accept() allows: the same chain, as if every refused
 * token's logit were -inf (top-k counts only allowed tokens, min-p and top-p are relative to
 * the allowed ones). Greedy, top-k and min-p-bounded results are exact; with only top-p or
 * temperature deciding, unscanned tokens whose total probability is provably below 1e-6 of the
 * allowed mass are ignored (see sampler.c). accept is asked about as few tokens as the
 * parameters permit (with greedy or top-k, usually a few dozen), the whole vocabulary only when
 * allowed tokens are rare. user is passed through (borrowed). accept NULL: smp_sample().
 * Returns SH_ENOTFOUND when no token with a finite logit is allowed (the caller should end
 * generation), SH_EINVAL when every logit is -inf or NaN. */
int smp_sample_constrained(smp *s, const float *logits, const int32_t *history, int64_t n_history,
                           smp_accept_fn accept, void *user, int32_t *out_token);

/* ---- stop strings ---- */
/* Streaming matcher: text goes in as arbitrary deltas; text that cannot be the start of a stop
 * string comes out at once, a possible beginning is held back, and when a stop string is
 * complete the text before it is released and the stop string (and all after it) dropped. */
enum { SMP_STOP_MAX = 16, SMP_STOP_LEN_MAX = 256 };

typedef struct {
    char str[SMP_STOP_MAX][SMP_STOP_LEN_MAX];
    size_t len[SMP_STOP_MAX];
    int n;
    char hold[SMP_STOP_LEN_MAX]; /* held-back possible prefix; always shorter than a stop */
    size_t n_hold;
    int hit; /* index of the stop string found, -1 before */
} smp_stop;

/* At most SMP_STOP_MAX strings, each 1..SMP_STOP_LEN_MAX-1 bytes (SH_ERANGE otherwise; empty
 * strings are SH_EINVAL). stops and its strings are copied. */
int smp_stop_init(smp_stop *m, const char *const *stops, int n_stops);
/* Feed text[0..len). Writes the releasable text to out and its length to *n_out; out needs
 * cap >= len + SMP_STOP_LEN_MAX (SH_EFULL otherwise). Returns 1 when a stop string was hit
 * (during this call or before: after a hit everything is swallowed), 0 otherwise. */
int smp_stop_push(smp_stop *m, const char *text, size_t len, char *out, size_t cap, size_t *n_out);
/* End of generation: release what is held back (nothing after a hit). out needs
 * cap >= SMP_STOP_LEN_MAX. Returns the number of bytes written. */
size_t smp_stop_flush(smp_stop *m, char *out, size_t cap);

#endif
