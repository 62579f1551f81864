/* local.h - the local producer: turns a conv_request into the engine's prompt (chat template,
 * tools, forced tool calls, fill-in-the-middle) and scheduler parameters. */
#ifndef SH_LOCAL_H
#define SH_LOCAL_H

#include "engine/chat.h"
#include "engine/tokenizer.h"
#include "proto/conv.h"
#include "server/sched.h"

typedef struct {
    const tok *t;             /* borrowed */
    chat_template tmpl;       /* the model's chat template family */
    int32_t fim_prefix, fim_suffix, fim_middle; /* -1 when the model has none */
} local_model;

void local_model_init(local_model *lm, const tok *t, const char *jinja /* may be NULL */);

/* The prepared request: everything sched_submit needs, owned here. */
typedef struct {
    sched_params p;
    int32_t *tokens;
    char *forced_prefix;
    const char *stops[SMP_STOP_MAX];
    int tools; /* tool calls are parsed */
} local_req;

/* Fills lr from r. On a request the model cannot serve (e.g. a suffix without FIM tokens, more
 * stop strings than supported) returns SH_EINVAL with a message for a 400 (sh_error_last()).
 * Free with local_req_free() (also after failure). */
int local_prepare(const local_model *lm, const conv_request *r, local_req *lr);
void local_req_free(local_req *lr);

/* Prompt tokens of a request (count_tokens). */
int local_count_tokens(const local_model *lm, const conv_request *r, int64_t *n);

#endif
