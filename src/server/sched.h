/* sched.h - the scheduler: one thread owns the model's workspace and the prefix cache and
 * runs continuous-batching steps over every active generation job; request threads submit
 * jobs and read their events.
 *
 * A job's prompt is evaluated in chunks interleaved with other jobs' decode steps; each step
 * evaluates all active jobs together (model_eval_batch), so concurrent requests share one read
 * of the weights. Generated tokens become conv_events (text deltas, tool calls, the stop with
 * usage) in a bounded per-job queue; a job whose queue is full is skipped until its reader
 * catches up, and a cancelled job (client gone) stops within one step. */
#ifndef SH_SCHED_H
#define SH_SCHED_H

#include <stdint.h>

#include "engine/chat.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "proto/conv.h"

typedef struct sched sched;
typedef struct sched_job sched_job;

typedef struct {
    int n_threads;
    int32_t n_ctx;  /* context of each sequence */
    int kv_type;
    int parallel;   /* jobs decoded together (and sequences in the prefix cache) */
    int prefill_chunk; /* prompt tokens evaluated per step and job (keeps decoding fluid) */
} sched_opts;

/* m and t borrowed (must outlive the scheduler). Starts the thread. Caller frees. */
int sched_new(sched **out, const model *m, const tok *t, const sched_opts *o);
/* Stops the thread: running and queued jobs get an error event and end; their readers can
 * still read them (the scheduler's memory stays until sched_free). */
void sched_stop(sched *s);
/* Stops (if not yet) and frees. Every job must have been released. */
void sched_free(sched *s);
int32_t sched_n_ctx(const sched *s);

typedef struct {
    const int32_t *prompt; /* copied */
    int32_t n_prompt;
    smp_params sampling;
    int64_t max_tokens;    /* generated tokens at most (also bounded by the context) */
    const char *const *stop;
    int n_stop;
    const chat_template *tools_template; /* non-NULL: parse tool calls in this template's form */
    const char *forced_prefix; /* text already in the prompt that opens the reply (e.g. a forced
                                  tool call): fed to the tool-call parser first, not emitted */
    int json_mode; /* the reply is constrained to one JSON object (OpenAI json_object) */
} sched_params;

/* Queues a job. SH_ERANGE when the prompt does not fit the context. The job holds a reference
 * for the caller: release it with sched_job_release() (cancels it if still running). */
int sched_submit(sched *s, const sched_params *p, sched_job **out);

/* ---- reading a job's events ---- */
enum { SCHED_TEXT_MAX = 256, SCHED_NAME_MAX = 128 };
typedef struct {
    conv_event ev;                /* pointers refer to the fields below */
    char text[SCHED_TEXT_MAX];    /* text delta, argument fragment, stop sequence, error */
    char id[SCHED_NAME_MAX];
    char name[SCHED_NAME_MAX];
} sched_event;

/* Waits up to timeout_ms (-1: forever) for the next event. Returns 1 with *ev filled, 0 on
 * timeout. After the STOP or ERROR event the job produces nothing more. */
int sched_job_next(sched_job *j, sched_event *ev, int timeout_ms);
/* 1 when the job has ended and every event was read. */
int sched_job_done(sched_job *j);
void sched_job_cancel(sched_job *j);
void sched_job_release(sched_job *j);

/* Serve with adapter l (borrowed until the next swap has been applied; NULL: none) from the
 * next step on; idle cached prefixes are forgotten (they were computed with the old weights).
 * Returns the adapter in use before, which the caller may free only after
 * sched_lora_applied() says the swap happened. */
const void *sched_set_lora(sched *s, const void *l);
int sched_lora_applied(sched *s);

/* ---- status ---- */
typedef struct {
    int active;   /* jobs being evaluated */
    int queued;   /* jobs waiting for a slot */
    int64_t prompt_tokens, generated_tokens, cached_tokens, steps;
    uint64_t kv_bytes; /* KV cache memory of all sequences */
} sched_stats;
void sched_get_stats(sched *s, sched_stats *out);

#endif
