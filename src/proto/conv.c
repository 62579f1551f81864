/* conv.c - the conversation type's arena, errors, bounded buffers and event accumulation. */
#include "proto/conv.h"

#include "base/status.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    max_align_t data[];
} arena_chunk;

struct conv_arena {
    arena_chunk *head;
    size_t total, limit; /* bytes handed out (with padding) and their bound */
};

#define ARENA_CHUNK (64u * 1024u)
#define ARENA_ALIGN (sizeof(max_align_t))

void *conv_alloc(conv_arena *a, size_t n) {
    if (!a) return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (need < n || need > a->limit - a->total) return NULL;
    arena_chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += need;
    a->total += need;
    return p;
}

char *conv_strndup(conv_arena *a, const char *s, size_t n) {
    char *p = conv_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *conv_strdup(conv_arena *a, const char *s) { return conv_strndup(a, s, strlen(s)); }

/* ---- request ---- */

void conv_request_zero(conv_request *r) {
    memset(r, 0, sizeof *r);
    r->temperature = r->top_p = r->min_p = NAN;
    r->presence_penalty = r->frequency_penalty = r->repeat_penalty = NAN;
    r->top_k = -1;
    r->seed = -1;
    r->max_tokens = -1;
}

int conv_request_init(conv_request *r, size_t limit_bytes) {
    conv_request_zero(r);
    conv_arena *a = calloc(1, sizeof *a);
    if (!a) return sh_error_set(SH_ENOMEM, "conv: arena");
    a->limit = limit_bytes;
    r->arena = a;
    return SH_OK;
}

void conv_request_free(conv_request *r) {
    if (!r) return;
    if (r->arena) {
        arena_chunk *c = r->arena->head;
        while (c) {
            arena_chunk *n = c->next;
            free(c);
            c = n;
        }
        free(r->arena);
    }
    conv_request_zero(r);
}

void conv_request_link_tool_results(conv_request *r) {
    for (int i = 0; i < r->n_messages; i++) {
        conv_message *m = &r->messages[i];
        for (int j = 0; j < m->n_blocks; j++) {
            conv_block *b = &m->blocks[j];
            if (b->kind != CONV_TOOL_RESULT || b->name || !b->id) continue;
            /* the call is in an earlier message; the latest one with that id wins */
            for (int k = i - 1; k >= 0 && !b->name; k--)
                for (int l = 0; l < r->messages[k].n_blocks; l++) {
                    const conv_block *u = &r->messages[k].blocks[l];
                    if (u->kind == CONV_TOOL_USE && u->id && strcmp(u->id, b->id) == 0) b->name = u->name;
                }
        }
    }
}

static json_t *opt_str(const char *s) { return s ? json_string(s) : json_null(); }
static json_t *opt_real(double v) { return isnan(v) ? json_null() : json_real(v); }

char *conv_request_debug_json(const conv_request *r) {
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    static const char *const kinds[] = {"text", "tool_use", "tool_result"};
    static const char *const choices[] = {"auto", "none", "any", "named"};
    json_t *o = json_object(), *msgs = json_array(), *tools = json_array(), *stop = json_array();
    char *out = NULL;
    if (!o || !msgs || !tools || !stop) goto out;
    for (int i = 0; i < r->n_messages; i++) {
        const conv_message *m = &r->messages[i];
        json_t *bl = json_array();
        for (int j = 0; j < m->n_blocks; j++) {
            const conv_block *b = &m->blocks[j];
            json_array_append_new(bl, json_pack("{s:s,s:o,s:o,s:o,s:o,s:b}", "kind", kinds[b->kind], "text",
                                                opt_str(b->text), "id", opt_str(b->id), "name", opt_str(b->name),
                                                "input", opt_str(b->input_json), "is_error", b->is_error));
        }
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", roles[m->role], "blocks", bl));
    }
    for (int i = 0; i < r->n_tools; i++)
        json_array_append_new(tools, json_pack("{s:o,s:o,s:o}", "name", opt_str(r->tools[i].name), "description",
                                               opt_str(r->tools[i].description), "schema",
                                               opt_str(r->tools[i].schema_json)));
    for (int i = 0; i < r->n_stop; i++) json_array_append_new(stop, json_string(r->stop[i]));
    json_object_set_new(o, "api", json_string(r->api == CONV_API_CHAT ? "chat" : "completion"));
    json_object_set_new(o, "model", opt_str(r->model));
    json_object_set_new(o, "system", opt_str(r->system));
    json_object_set(o, "messages", msgs);
    json_object_set_new(o, "prompt", opt_str(r->prompt));
    json_object_set_new(o, "suffix", opt_str(r->suffix));
    json_object_set(o, "tools", tools);
    json_object_set_new(o, "tool_choice", json_string(choices[r->tool_choice]));
    json_object_set_new(o, "tool_choice_name", opt_str(r->tool_choice_name));
    json_object_set_new(o, "temperature", opt_real(r->temperature));
    json_object_set_new(o, "top_p", opt_real(r->top_p));
    json_object_set_new(o, "min_p", opt_real(r->min_p));
    json_object_set_new(o, "presence_penalty", opt_real(r->presence_penalty));
    json_object_set_new(o, "frequency_penalty", opt_real(r->frequency_penalty));
    json_object_set_new(o, "repeat_penalty", opt_real(r->repeat_penalty));
    json_object_set_new(o, "top_k", json_integer(r->top_k));
    json_object_set_new(o, "seed", json_integer(r->seed));
    json_object_set_new(o, "max_tokens", json_integer(r->max_tokens));
    json_object_set(o, "stop", stop);
    json_object_set_new(o, "stream", json_boolean(r->stream));
    json_object_set_new(o, "include_usage", json_boolean(r->include_usage));
    json_object_set_new(o, "json_mode", json_boolean(r->json_mode));
    json_object_set_new(o, "local_only", json_boolean(r->local_only));
    json_object_set_new(o, "session_id", opt_str(r->session_id));
    json_object_set_new(o, "user", opt_str(r->user));
    out = json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
out:
    json_decref(o);
    json_decref(msgs);
    json_decref(tools);
    json_decref(stop);
    return out;
}

/* ---- errors ---- */

int conv_error_status(conv_error_kind k) {
    switch (k) {
    case CONV_ERR_INVALID: return 400;
    case CONV_ERR_AUTH: return 401;
    case CONV_ERR_NOT_FOUND: return 404;
    case CONV_ERR_TOO_LARGE: return 413;
    case CONV_ERR_RATE: return 429;
    case CONV_ERR_INTERNAL: return 500;
    case CONV_ERR_UNAVAILABLE: return 503;
    case CONV_ERR_OVERLOADED: return 529;
    case CONV_ERR_UPSTREAM: return 502;
    }
    return 500;
}

conv_error_kind conv_error_kind_from_status(int status) {
    switch (status) {
    case 400: case 422: return CONV_ERR_INVALID;
    case 401: case 403: return CONV_ERR_AUTH;
    case 404: return CONV_ERR_NOT_FOUND;
    case 413: return CONV_ERR_TOO_LARGE;
    case 429: return CONV_ERR_RATE;
    case 500: return CONV_ERR_INTERNAL;
    case 503: return CONV_ERR_UNAVAILABLE;
    case 529: return CONV_ERR_OVERLOADED;
    default: return status >= 400 && status < 500 ? CONV_ERR_INVALID : CONV_ERR_UPSTREAM;
    }
}

int proto_error_set(proto_error *e, conv_error_kind kind, const char *param, const char *fmt, ...) {
    if (e) {
        e->kind = kind;
        e->status = conv_error_status(kind);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
        snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    }
    return kind == CONV_ERR_TOO_LARGE ? SH_ERANGE : SH_EINVAL;
}

/* ---- bounded buffer ---- */

void conv_buf_init(conv_buf *b, size_t max) {
    b->p = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void conv_buf_free(conv_buf *b) {
    free(b->p);
    conv_buf_init(b, b->max);
}

static int buf_reserve(conv_buf *b, size_t extra) {
    if (extra > b->max || b->len > b->max - extra) return sh_error_set(SH_EFULL, "conv: buffer over %zu bytes", b->max);
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return SH_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return sh_error_set(SH_ENOMEM, "conv: buffer");
    b->p = p;
    b->cap = cap;
    return SH_OK;
}

int conv_buf_append(conv_buf *b, const char *s, size_t n) {
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return SH_OK;
}

int conv_buf_puts(conv_buf *b, const char *s) { return conv_buf_append(b, s, strlen(s)); }

int conv_buf_printf(conv_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return sh_error_set(SH_EINVAL, "conv: format");
    if ((size_t)n < sizeof tmp) return conv_buf_append(b, tmp, (size_t)n);
    int rc = buf_reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SH_OK;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid or truncated. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0xFFu >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

size_t conv_utf8_whole(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    /* look back at most 3 bytes for a lead byte whose sequence runs past the end */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = u[n - back];
        if ((c & 0xC0) == 0x80) continue;
        size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return want > back ? n - back : n;
    }
    return n;
}

int conv_buf_json_str(conv_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    int rc = buf_reserve(b, n + 2);
    if (rc) return rc;
    b->p[b->len++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t run = i; /* copy plain runs in one go */
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\') run++;
        if (run > i) {
            if ((rc = conv_buf_append(b, s + i, run - i))) return rc;
            i = run;
            continue;
        }
        unsigned c = u[i];
        char esc[8];
        size_t el = 2;
        esc[0] = '\\';
        if (c == '"' || c == '\\') esc[1] = (char)c;
        else if (c == '\n') esc[1] = 'n';
        else if (c == '\r') esc[1] = 'r';
        else if (c == '\t') esc[1] = 't';
        else if (c == '\b') esc[1] = 'b';
        else if (c == '\f') esc[1] = 'f';
        else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        } else {
            size_t l = utf8_seq(u + i, n - i);
            if (l) {
                if ((rc = conv_buf_append(b, s + i, l))) return rc;
            } else if ((rc = conv_buf_append(b, "\xEF\xBF\xBD", 3))) {
                return rc;
            }
            i += l ? l : 1;
            continue;
        }
        if ((rc = conv_buf_append(b, esc, el))) return rc;
        i++;
    }
    return conv_buf_append(b, "\"", 1);
}

int conv_buf_json_double(conv_buf *b, double v) {
    if (!isfinite(v)) return conv_buf_puts(b, "null");
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    return conv_buf_puts(b, tmp);
}

/* ---- accumulation ---- */

void conv_accum_init(conv_accum *a) {
    memset(a, 0, sizeof *a);
    conv_buf_init(&a->error_text, 4096);
}

void conv_accum_free(conv_accum *a) {
    for (int i = 0; i < a->n_blocks; i++) {
        conv_buf_free(&a->blocks[i].text);
        free(a->blocks[i].id);
        free(a->blocks[i].name);
    }
    free(a->blocks);
    free(a->stop_sequence);
    conv_buf_free(&a->error_text);
    conv_accum_init(a);
}

static conv_accum_block *accum_push(conv_accum *a, conv_block_kind kind) {
    if (a->n_blocks == a->cap_blocks) {
        int cap = a->cap_blocks ? a->cap_blocks * 2 : 8;
        if (cap > 2 * CONV_MAX_TOOL_CALLS + 2) cap = 2 * CONV_MAX_TOOL_CALLS + 2;
        if (a->n_blocks >= cap) return NULL;
        conv_accum_block *nb = realloc(a->blocks, (size_t)cap * sizeof *nb);
        if (!nb) return NULL;
        a->blocks = nb;
        a->cap_blocks = cap;
    }
    conv_accum_block *b = &a->blocks[a->n_blocks++];
    memset(b, 0, sizeof *b);
    b->kind = kind;
    conv_buf_init(&b->text, CONV_MAX_OUTPUT);
    return b;
}

static conv_accum_block *accum_tool(conv_accum *a, int index) {
    for (int i = a->n_blocks - 1; i >= 0; i--)
        if (a->blocks[i].kind == CONV_TOOL_USE && a->blocks[i].tool_index == index) return &a->blocks[i];
    return NULL;
}

int conv_accum_event(void *user, const conv_event *ev) {
    conv_accum *a = user;
    conv_accum_block *b;
    switch (ev->kind) {
    case CONV_EV_START:
        a->started = 1;
        a->usage.prompt_tokens = ev->usage.prompt_tokens;
        a->usage.cached_tokens = ev->usage.cached_tokens;
        return SH_OK;
    case CONV_EV_TEXT:
        if (a->total + ev->len > CONV_MAX_OUTPUT) return sh_error_set(SH_EFULL, "conv: answer too long");
        b = a->n_blocks ? &a->blocks[a->n_blocks - 1] : NULL;
        if (!b || b->kind != CONV_TEXT) b = accum_push(a, CONV_TEXT);
        if (!b) return sh_error_set(SH_EFULL, "conv: too many blocks");
        a->total += ev->len;
        return conv_buf_append(&b->text, ev->text, ev->len);
    case CONV_EV_TOOL_START:
        if (ev->index < 0 || ev->index >= CONV_MAX_TOOL_CALLS || accum_tool(a, ev->index))
            return sh_error_set(SH_EINVAL, "conv: bad tool call index %d", ev->index);
        if (!(b = accum_push(a, CONV_TOOL_USE))) return sh_error_set(SH_EFULL, "conv: too many blocks");
        b->tool_index = ev->index;
        b->id = strdup(ev->id ? ev->id : "");
        b->name = strdup(ev->name ? ev->name : "");
        if (!b->id || !b->name) return sh_error_set(SH_ENOMEM, "conv: accum");
        return SH_OK;
    case CONV_EV_TOOL_DELTA:
        if (!(b = accum_tool(a, ev->index))) return sh_error_set(SH_EINVAL, "conv: delta of unknown tool call");
        if (a->total + ev->len > CONV_MAX_OUTPUT) return sh_error_set(SH_EFULL, "conv: answer too long");
        a->total += ev->len;
        return conv_buf_append(&b->text, ev->text, ev->len);
    case CONV_EV_TOOL_END:
        return SH_OK;
    case CONV_EV_STOP:
        a->stopped = 1;
        a->reason = ev->reason;
        free(a->stop_sequence);
        a->stop_sequence = ev->stop_sequence ? strdup(ev->stop_sequence) : NULL;
        a->usage = ev->usage;
        return SH_OK;
    case CONV_EV_ERROR:
        a->failed = 1;
        a->error_kind = ev->error_kind;
        a->error_text.len = 0;
        return conv_buf_append(&a->error_text, ev->text ? ev->text : "",
                               ev->text ? (ev->len < 4000 ? ev->len : 4000) : 0);
    }
    return SH_OK;
}

/* ---- decoder helpers ---- */

_Static_assert(CONV_JSON_FLAGS == (JSON_COMPACT | JSON_REAL_PRECISION(15)), "CONV_JSON_FLAGS");

int conv_json_load(const char *body, size_t len, json_t **out, proto_error *err) {
    *out = NULL;
    if (len > CONV_MAX_BODY)
        return proto_error_set(err, CONV_ERR_TOO_LARGE, NULL, "request body is %zu bytes; the limit is %u bytes", len,
                               CONV_MAX_BODY);
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", len, JSON_DECODE_ANY, &je);
    if (!j)
        return proto_error_set(err, CONV_ERR_INVALID, NULL, "invalid JSON body: %s (line %d, column %d)", je.text,
                               je.line, je.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return proto_error_set(err, CONV_ERR_INVALID, NULL, "the request body must be a JSON object");
    }
    *out = j;
    return SH_OK;
}

static const char *arena_full(conv_dec *d) {
    proto_error_set(d->err, CONV_ERR_TOO_LARGE, NULL, "request too large to decode");
    return NULL;
}

const char *conv_dec_str(conv_dec *d, json_t *s) {
    const char *p = conv_strndup(d->r->arena, json_string_value(s), json_string_length(s));
    return p ? p : arena_full(d);
}

const char *conv_dec_compact(conv_dec *d, json_t *v) {
    char *t = json_dumps(v, CONV_JSON_FLAGS | JSON_ENCODE_ANY);
    if (!t) return arena_full(d);
    const char *p = conv_strdup(d->r->arena, t);
    free(t);
    return p ? p : arena_full(d);
}

static int type_error(conv_dec *d, const char *key, const char *what) {
    return proto_error_set(d->err, CONV_ERR_INVALID, key, "'%s' must be %s", key, what);
}

int conv_dec_get_str(conv_dec *d, json_t *obj, const char *key, const char **out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SH_OK;
    if (!json_is_string(v)) return type_error(d, key, "a string");
    const char *s = conv_dec_str(d, v);
    if (!s) return SH_ERANGE;
    *out = s;
    return SH_OK;
}

int conv_dec_get_bool(conv_dec *d, json_t *obj, const char *key, int *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SH_OK;
    if (!json_is_boolean(v)) return type_error(d, key, "a boolean");
    *out = json_is_true(v);
    return SH_OK;
}

int conv_dec_get_num(conv_dec *d, json_t *obj, const char *key, double lo, double hi, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SH_OK;
    if (!json_is_number(v)) return type_error(d, key, "a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return proto_error_set(d->err, CONV_ERR_INVALID, key, "'%s' must be between %g and %g, got %g", key, lo, hi, x);
    *out = x;
    return SH_OK;
}

int conv_dec_get_int(conv_dec *d, json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SH_OK;
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15) {
        x = (int64_t)json_real_value(v); /* 100.0 from loosely typed clients */
    } else {
        return type_error(d, key, "an integer");
    }
    if (x < lo || x > hi)
        return proto_error_set(d->err, CONV_ERR_INVALID, key, "'%s' must be between %lld and %lld, got %lld", key,
                               (long long)lo, (long long)hi, (long long)x);
    *out = x;
    return SH_OK;
}

int conv_dec_get_stop(conv_dec *d, json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return SH_OK;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_array(v) && !json_is_string(v)) return type_error(d, key, "a string or an array of strings");
    if (n > CONV_MAX_STOP)
        return proto_error_set(d->err, CONV_ERR_INVALID, key, "'%s' may have at most %d entries, got %zu", key,
                               CONV_MAX_STOP, n);
    const char **stop = conv_alloc(d->r->arena, (n ? n : 1) * sizeof *stop);
    if (!stop) return arena_full(d), SH_ERANGE;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s)) return type_error(d, key, "a string or an array of strings");
        if (json_string_length(s) == 0) continue;
        if (!(stop[k++] = conv_dec_str(d, s))) return SH_ERANGE;
    }
    d->r->stop = stop;
    d->r->n_stop = k;
    return SH_OK;
}

int conv_dec_add_system(conv_dec *d, const char *text, size_t len) {
    conv_request *r = d->r;
    size_t old = r->system ? strlen(r->system) : 0;
    size_t sep = r->system ? 2 : 0;
    char *s = conv_alloc(r->arena, old + sep + len + 1);
    if (!s) return arena_full(d), SH_ERANGE;
    if (old) memcpy(s, r->system, old);
    if (sep) memcpy(s + old, "\n\n", 2);
    memcpy(s + old + sep, text, len);
    s[old + sep + len] = 0;
    r->system = s;
    return SH_OK;
}
