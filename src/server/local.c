/* local.c - conv_request -> prompt tokens and sampling parameters for the local engine. */
#include "server/local.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"

#define LOCAL_MAX_MSGS 4096
#define LOCAL_MAX_CALLS 4096

void local_model_init(local_model *lm, const tok *t, const char *jinja) {
    lm->t = t;
    chat_template_detect(&lm->tmpl, jinja);
    lm->fim_prefix = tok_find(t, "<|fim_prefix|>");
    lm->fim_suffix = tok_find(t, "<|fim_suffix|>");
    lm->fim_middle = tok_find(t, "<|fim_middle|>");
}

void local_req_free(local_req *lr) {
    free(lr->tokens);
    free(lr->forced_prefix);
    memset(lr, 0, sizeof *lr);
}

/* Joins the text blocks of m with newlines into a malloc'd string. */
static char *join_text(const conv_message *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_blocks; i++)
        if (m->blocks[i].kind == CONV_TEXT && m->blocks[i].text) n += strlen(m->blocks[i].text) + 1;
    char *s = malloc(n + 1), *p = s;
    if (!s) return NULL;
    int first = 1;
    for (int i = 0; i < m->n_blocks; i++) {
        if (m->blocks[i].kind != CONV_TEXT || !m->blocks[i].text) continue;
        if (!first) *p++ = '\n';
        size_t l = strlen(m->blocks[i].text);
        memcpy(p, m->blocks[i].text, l);
        p += l;
        first = 0;
    }
    *p = 0;
    return s;
}

typedef struct {
    chat_msg *msgs;
    int n;
    chat_tool_call *calls;
    int n_calls;
    char **owned; /* joined texts */
    int n_owned;
} msg_build;

static void build_free(msg_build *b) {
    for (int i = 0; i < b->n_owned; i++) free(b->owned[i]);
    free(b->owned);
    free(b->msgs);
    free(b->calls);
}

/* conv messages -> chat messages: TEXT blocks make the role's message, TOOL_USE blocks the
 * assistant's tool calls, TOOL_RESULT blocks one tool message each. */
static int build_msgs(const conv_request *r, msg_build *b) {
    int cap = 1, ncalls = 0;
    for (int i = 0; i < r->n_messages; i++) {
        cap += 1 + r->messages[i].n_blocks;
        for (int k = 0; k < r->messages[i].n_blocks; k++)
            ncalls += r->messages[i].blocks[k].kind == CONV_TOOL_USE;
    }
    if (cap > LOCAL_MAX_MSGS || ncalls > LOCAL_MAX_CALLS)
        return sh_error_set(SH_EINVAL, "too many messages or tool calls");
    b->msgs = calloc((size_t)cap, sizeof *b->msgs);
    b->calls = calloc((size_t)(ncalls ? ncalls : 1), sizeof *b->calls);
    b->owned = calloc((size_t)cap, sizeof *b->owned);
    if (!b->msgs || !b->calls || !b->owned) return sh_error_set(SH_ENOMEM, "out of memory");
    if (r->system && *r->system) b->msgs[b->n++] = (chat_msg){.role = CHAT_SYSTEM, .content = r->system};
    for (int i = 0; i < r->n_messages; i++) {
        const conv_message *m = &r->messages[i];
        for (int k = 0; k < m->n_blocks; k++) {
            const conv_block *bl = &m->blocks[k];
            if (bl->kind == CONV_TOOL_RESULT)
                b->msgs[b->n++] = (chat_msg){.role = CHAT_TOOL,
                                             .content = bl->text ? bl->text : "",
                                             .tool_call_id = bl->id,
                                             .name = bl->name};
        }
        int has_text = 0, first_call = b->n_calls;
        for (int k = 0; k < m->n_blocks; k++) {
            const conv_block *bl = &m->blocks[k];
            has_text |= bl->kind == CONV_TEXT;
            if (bl->kind == CONV_TOOL_USE)
                b->calls[b->n_calls++] = (chat_tool_call){bl->id, bl->name, bl->input_json};
        }
        if (!has_text && b->n_calls == first_call) continue;
        chat_role role = m->role == CONV_ASSISTANT ? CHAT_ASSISTANT
                         : m->role == CONV_SYSTEM  ? CHAT_SYSTEM
                                                   : CHAT_USER;
        char *text = join_text(m);
        if (!text) return sh_error_set(SH_ENOMEM, "out of memory");
        b->owned[b->n_owned++] = text;
        b->msgs[b->n++] = (chat_msg){.role = role,
                                     .content = text,
                                     .tool_calls = b->n_calls > first_call ? &b->calls[first_call] : NULL,
                                     .n_tool_calls = b->n_calls - first_call};
    }
    return SH_OK;
}

static int tokenize(const tok *t, const char *text, size_t len, int add_bos, int special,
                    int32_t **out, int32_t *n) {
    int64_t cap = (int64_t)len + 8, got = 0;
    *out = malloc(sizeof(int32_t) * (size_t)cap);
    if (!*out) return sh_error_set(SH_ENOMEM, "out of memory");
    int st = tok_encode(t, text, len, add_bos, special, *out, cap, &got);
    if (st) return st;
    if (got > INT32_MAX) return sh_error_set(SH_ERANGE, "prompt too long");
    *n = (int32_t)got;
    return SH_OK;
}

static int render_chat(const local_model *lm, const conv_request *r, local_req *lr,
                       char **text, size_t *len) {
    msg_build b = {0};
    chat_tool *tools = NULL;
    int st = build_msgs(r, &b);
    int n_tools = r->tool_choice == CONV_TOOLS_NONE ? 0 : r->n_tools;
    if (!st && n_tools > 0) {
        tools = calloc((size_t)n_tools, sizeof *tools);
        if (!tools) st = sh_error_set(SH_ENOMEM, "out of memory");
        for (int i = 0; !st && i < n_tools; i++)
            tools[i] = (chat_tool){r->tools[i].name, r->tools[i].description, r->tools[i].schema_json};
    }
    if (!st && b.n == 0) st = sh_error_set(SH_EINVAL, "the request has no message content");
    chat_opts co = {.tools = tools, .n_tools = n_tools, .add_generation_prompt = 1};
    if (!st) st = chat_render(&lm->tmpl, b.msgs, b.n, &co, text, len);
    lr->tools = !st && n_tools > 0;
    free(tools);
    build_free(&b);
    return st;
}

/* A forced tool call is written into the start of the reply, where the model continues it. */
static int force_tools(const local_model *lm, const conv_request *r, local_req *lr, char **text,
                       size_t *len) {
    if (!lr->tools || lm->tmpl.kind != CHAT_CHATML) return SH_OK;
    char buf[512];
    if (r->tool_choice == CONV_TOOLS_NAMED)
        snprintf(buf, sizeof buf, "<tool_call>\n{\"name\": \"%s\", \"arguments\": ",
                 r->tool_choice_name ? r->tool_choice_name : "");
    else if (r->tool_choice == CONV_TOOLS_ANY)
        snprintf(buf, sizeof buf, "<tool_call>\n{\"name\": \"");
    else
        return SH_OK;
    size_t bl = strlen(buf);
    char *t = realloc(*text, *len + bl + 1);
    if (!t) return sh_error_set(SH_ENOMEM, "out of memory");
    memcpy(t + *len, buf, bl + 1);
    *text = t;
    *len += bl;
    lr->forced_prefix = strdup(buf);
    return lr->forced_prefix ? SH_OK : sh_error_set(SH_ENOMEM, "out of memory");
}

static int prompt_tokens(const local_model *lm, const conv_request *r, local_req *lr) {
    int st = SH_OK;
    if (r->api == CONV_API_COMPLETION) {
        const char *p = r->prompt ? r->prompt : "";
        if (!r->suffix) return tokenize(lm->t, p, strlen(p), tok_add_bos(lm->t), 0, &lr->tokens, &lr->p.n_prompt);
        if (lm->fim_prefix < 0 || lm->fim_suffix < 0 || lm->fim_middle < 0)
            return sh_error_set(SH_EINVAL, "this model has no fill-in-the-middle tokens: 'suffix' is not supported");
        int32_t *a = NULL, *b = NULL, na = 0, nb = 0;
        st = tokenize(lm->t, p, strlen(p), 0, 0, &a, &na);
        if (!st) st = tokenize(lm->t, r->suffix, strlen(r->suffix), 0, 0, &b, &nb);
        if (!st) {
            lr->tokens = malloc(sizeof(int32_t) * (size_t)(na + nb + 4));
            if (!lr->tokens) st = sh_error_set(SH_ENOMEM, "out of memory");
        }
        if (!st) {
            int32_t n = 0;
            if (tok_add_bos(lm->t) && tok_bos(lm->t) >= 0) lr->tokens[n++] = tok_bos(lm->t);
            lr->tokens[n++] = lm->fim_prefix;
            memcpy(lr->tokens + n, a, sizeof(int32_t) * (size_t)na);
            n += na;
            lr->tokens[n++] = lm->fim_suffix;
            memcpy(lr->tokens + n, b, sizeof(int32_t) * (size_t)nb);
            n += nb;
            lr->tokens[n++] = lm->fim_middle;
            lr->p.n_prompt = n;
        }
        free(a);
        free(b);
        return st;
    }
    char *text = NULL;
    size_t len = 0;
    st = render_chat(lm, r, lr, &text, &len);
    if (!st) st = force_tools(lm, r, lr, &text, &len);
    if (!st) {
        /* templates that write the BOS text themselves (Llama 3) must not get a second one */
        char bos[64] = "";
        int64_t nb = tok_bos(lm->t) >= 0 ? tok_piece(lm->t, tok_bos(lm->t), 1, bos, sizeof bos - 1) : 0;
        int has_bos = nb > 0 && nb < (int64_t)sizeof bos && len >= (size_t)nb && !memcmp(text, bos, (size_t)nb);
        st = tokenize(lm->t, text, len, tok_add_bos(lm->t) && !has_bos, 1, &lr->tokens, &lr->p.n_prompt);
    }
    free(text);
    return st;
}

int local_prepare(const local_model *lm, const conv_request *r, local_req *lr) {
    memset(lr, 0, sizeof *lr);
    int st = prompt_tokens(lm, r, lr);
    if (st) return st;
    lr->p.prompt = lr->tokens;
    smp_params *sp = &lr->p.sampling;
    smp_params_default(sp);
    if (!isnan(r->temperature)) sp->temperature = (float)r->temperature;
    if (!isnan(r->top_p)) sp->top_p = (float)r->top_p;
    if (!isnan(r->min_p)) sp->min_p = (float)r->min_p;
    if (r->top_k >= 0) sp->top_k = (int32_t)r->top_k;
    if (!isnan(r->presence_penalty)) sp->presence_penalty = (float)r->presence_penalty;
    if (!isnan(r->frequency_penalty)) sp->frequency_penalty = (float)r->frequency_penalty;
    if (!isnan(r->repeat_penalty)) sp->repeat_penalty = (float)r->repeat_penalty;
    if (r->seed >= 0) {
        sp->seed = (uint64_t)r->seed;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        sp->seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)lr;
    }
    lr->p.max_tokens = r->max_tokens;
    if (r->n_stop > SMP_STOP_MAX)
        return sh_error_set(SH_EINVAL, "at most %d stop sequences are supported", SMP_STOP_MAX);
    for (int i = 0; i < r->n_stop; i++) {
        size_t l = strlen(r->stop[i]);
        if (l == 0 || l >= SMP_STOP_LEN_MAX)
            return sh_error_set(SH_EINVAL, "stop sequences must be 1..%d bytes", SMP_STOP_LEN_MAX - 1);
        lr->stops[i] = r->stop[i];
    }
    lr->p.stop = lr->stops;
    lr->p.n_stop = r->n_stop;
    lr->p.tools_template = lr->tools ? &lm->tmpl : NULL;
    lr->p.forced_prefix = lr->forced_prefix;
    lr->p.json_mode = r->json_mode;
    return SH_OK;
}

int local_count_tokens(const local_model *lm, const conv_request *r, int64_t *n) {
    local_req lr;
    memset(&lr, 0, sizeof lr);
    int st = prompt_tokens(lm, r, &lr);
    if (!st) *n = lr.p.n_prompt;
    local_req_free(&lr);
    return st;
}
