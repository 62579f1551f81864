/* chat.c - chat template families rendered in C, and the streaming tool-call parser. */
#include "engine/chat.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

/* ---- bounded growing output ---- */

typedef struct {
    char *p;
    size_t n, cap;
    int err; /* sticky: once set, further writes are ignored */
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->err) return;
    if (n > (size_t)CHAT_RENDER_MAX - b->n) {
        b->err = sh_error_set(SH_EFULL, "chat: prompt longer than %d bytes", CHAT_RENDER_MAX);
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        if (cap > (size_t)CHAT_RENDER_MAX + 1) cap = (size_t)CHAT_RENDER_MAX + 1;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->err = SH_ENOMEM;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* ---- JSON as Python's json.dumps(ensure_ascii=False) writes it ---- */

static void py_string(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc) continue;
        sb_put(b, s + run, i - run);
        sb_puts(b, esc);
        run = i + 1;
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

/* Python's float repr: the shortest digits that read back to the same double, positional
 * for exponents -4..15 (always with a ".0" or fraction), else d.ddde+XX. */
static void py_real(sbuf *b, double v) {
    if (isnan(v)) {
        sb_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        sb_puts(b, v < 0 ? "-Infinity" : "Infinity");
        return;
    }
    char e[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char out[64];
    int o = 0;
    if (neg) out[o++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp10 - 1; i++) out[o++] = '0';
            for (int i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - (size_t)o, "e%+03d", exp10);
    }
    sb_puts(b, out);
}

static void py_newline(sbuf *b, int indent, int level) {
    sb_put(b, "\n", 1);
    for (int i = 0; i < indent * level; i++) sb_put(b, " ", 1);
}

/* indent < 0: one line with ", " and ": "; else json.dumps(indent=N) with "," and ": ". */
static void py_dump(sbuf *b, const json_t *v, int indent, int level) {
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (json_object_size(v) == 0) {
            sb_puts(b, "{}");
            return;
        }
        sb_put(b, "{", 1);
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach((json_t *)v, k, x) {
            if (!first) sb_puts(b, indent < 0 ? ", " : ",");
            first = 0;
            if (indent >= 0) py_newline(b, indent, level + 1);
            py_string(b, k, strlen(k));
            sb_puts(b, ": ");
            py_dump(b, x, indent, level + 1);
        }
        if (indent >= 0) py_newline(b, indent, level);
        sb_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        if (json_array_size(v) == 0) {
            sb_puts(b, "[]");
            return;
        }
        sb_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_puts(b, indent < 0 ? ", " : ",");
            if (indent >= 0) py_newline(b, indent, level + 1);
            py_dump(b, json_array_get(v, i), indent, level + 1);
        }
        if (indent >= 0) py_newline(b, indent, level);
        sb_put(b, "]", 1);
        break;
    }
    case JSON_STRING:
        py_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sb_puts(b, num);
        break;
    case JSON_REAL:
        py_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        sb_puts(b, "true");
        break;
    case JSON_FALSE:
        sb_puts(b, "false");
        break;
    case JSON_NULL:
        sb_puts(b, "null");
        break;
    }
}

/* tojson of tool-call arguments given as JSON text: the parsed value when it parses (what the
 * template sees once a server has decoded the OpenAI string), the quoted string otherwise. */
static void py_args(sbuf *b, const char *args) {
    if (!args) {
        sb_puts(b, "{}");
        return;
    }
    json_t *v = json_loads(args, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v)
        py_dump(b, v, -1, 0);
    else
        py_string(b, args, strlen(args));
    json_decref(v);
}

/* The OpenAI tool object; parameters JSON parsed. Caller decrefs. */
static int tool_json(const chat_tool *t, json_t **out) {
    *out = NULL;
    json_t *fn = json_object(), *obj = json_object();
    int rc = SH_ENOMEM;
    if (!fn || !obj) goto out;
    if (json_object_set_new(obj, "type", json_string("function")) ||
        json_object_set_new(fn, "name", json_string(t->name ? t->name : "")))
        goto out;
    if (t->description && json_object_set_new(fn, "description", json_string(t->description)))
        goto out;
    if (t->parameters) {
        json_error_t err;
        json_t *params = json_loads(t->parameters, JSON_DECODE_ANY, &err);
        if (!params) {
            rc = sh_error_set(SH_EINVAL, "tool %s: parameters: %s", t->name ? t->name : "?",
                              err.text);
            goto out;
        }
        if (json_object_set_new(fn, "parameters", params)) goto out;
    }
    if (json_object_set(obj, "function", fn)) goto out;
    *out = obj;
    obj = NULL;
    rc = SH_OK;
out:
    json_decref(fn);
    json_decref(obj);
    return rc;
}

/* ---- template recognition ---- */

/* A literal "<|im_start|>system\n...<|im_end|>" inside a template string literal is the
 * default system prompt; one followed by an expression (quote, +, braces) is not. */
static void find_default_system(chat_template *t, const char *j) {
    static const char open[] = "<|im_start|>system";
    for (const char *p = strstr(j, open); p; p = strstr(p + 1, open)) {
        const char *q = p + sizeof open - 1;
        if (q[0] == '\\' && q[1] == 'n')
            q += 2;
        else if (q[0] == '\n')
            q += 1;
        else
            continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q) continue;
        size_t n = 0;
        int ok = 1;
        for (const char *c = q; c < end && ok; c++) {
            if (strchr("'\"+{}", *c))
                ok = 0;
            else if (n + 1 >= CHAT_SYSTEM_MAX)
                ok = 0;
            else if (c[0] == '\\' && c[1] == 'n') {
                t->default_system[n++] = '\n';
                c++;
            } else if (*c == '\\')
                ok = 0;
            else
                t->default_system[n++] = *c;
        }
        t->default_system[ok ? n : 0] = 0;
        if (ok) return;
    }
}

void chat_template_detect(chat_template *t, const char *j) {
    memset(t, 0, sizeof *t);
    t->kind = CHAT_CHATML;
    if (!j) return;
    if (strstr(j, "<|start_header_id|>")) {
        t->kind = CHAT_LLAMA3;
        t->flags |= CHAT_F_KNOWN;
        if (strstr(j, "Cutting Knowledge Date")) t->flags |= CHAT_F_LLAMA31;
        return;
    }
    if (strstr(j, "<|im_start|>")) {
        t->flags |= CHAT_F_KNOWN;
        if (strstr(j, "reasoning_content")) t->flags |= CHAT_F_THINK;
        if (strstr(j, "enable_thinking")) t->flags |= CHAT_F_ENABLE_THINK;
        if (strstr(j, "arguments is string")) t->flags |= CHAT_F_ARGS_RAW;
        find_default_system(t, j);
    }
}

const char *chat_kind_name(chat_kind k) {
    return k == CHAT_LLAMA3 ? "llama3" : "chatml";
}

/* ---- string slices (the Qwen3 think handling works on parts of the content) ---- */

typedef struct {
    const char *p;
    size_t n;
} slice;

static slice sl(const char *s) {
    slice r = {s ? s : "", s ? strlen(s) : 0};
    return r;
}

static slice lstrip_nl(slice s) {
    while (s.n && s.p[0] == '\n') s.p++, s.n--;
    return s;
}

static slice rstrip_nl(slice s) {
    while (s.n && s.p[s.n - 1] == '\n') s.n--;
    return s;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Jinja's trim (Python's str.strip() on ASCII whitespace). */
static slice trim(slice s) {
    while (s.n && is_space(s.p[0])) s.p++, s.n--;
    while (s.n && is_space(s.p[s.n - 1])) s.n--;
    return s;
}

static const char *find_in(slice s, const char *needle, int last) {
    size_t k = strlen(needle);
    const char *found = NULL;
    for (const char *p = s.p; p + k <= s.p + s.n; p++)
        if (memcmp(p, needle, k) == 0) {
            found = p;
            if (!last) break;
        }
    return found;
}

static void sb_slice(sbuf *b, slice s) {
    sb_put(b, s.p, s.n);
}

/* ---- ChatML (Qwen) ---- */

static const char HERMES_HEAD[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
static const char HERMES_TAIL[] =
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";

static const char *role_name(chat_role r) {
    switch (r) {
    case CHAT_SYSTEM:
        return "system";
    case CHAT_USER:
        return "user";
    case CHAT_ASSISTANT:
        return "assistant";
    case CHAT_TOOL:
        return "tool";
    }
    return "user";
}

static int tools_block(sbuf *b, const chat_tool *tools, int n, int indent, const char *sep) {
    for (int i = 0; i < n; i++) {
        json_t *tj;
        int rc = tool_json(&tools[i], &tj);
        if (rc) return rc;
        if (indent < 0) sb_puts(b, sep);
        py_dump(b, tj, indent, 0);
        if (indent >= 0) sb_puts(b, sep);
        json_decref(tj);
    }
    return SH_OK;
}

/* Qwen3: the last user query that is not a wrapped tool response; assistant turns after it
 * keep their reasoning. */
static int last_query_index(const chat_msg *m, int n) {
    for (int i = n - 1; i >= 0; i--) {
        if (m[i].role != CHAT_USER) continue;
        slice c = sl(m[i].content);
        int wrapped = c.n >= 15 + 16 && memcmp(c.p, "<tool_response>", 15) == 0 &&
                      memcmp(c.p + c.n - 16, "</tool_response>", 16) == 0;
        if (!wrapped) return i;
    }
    return n - 1;
}

static void chatml_assistant(sbuf *b, const chat_template *t, const chat_msg *m, int i, int n,
                             int lqi) {
    slice content = sl(m->content);
    if (!(t->flags & CHAT_F_THINK)) {
        sb_puts(b, "<|im_start|>assistant");
        if (m->n_tool_calls == 0 || content.n) sb_put(b, "\n", 1);
        sb_slice(b, content);
    } else {
        slice reasoning = {"", 0};
        if (m->reasoning_content) {
            reasoning = sl(m->reasoning_content);
        } else if (find_in(content, "</think>", 0)) {
            const char *first = find_in(content, "</think>", 0);
            const char *last = find_in(content, "</think>", 1);
            slice before = {content.p, (size_t)(first - content.p)};
            before = rstrip_nl(before);
            const char *th = find_in(before, "<think>", 1);
            if (th) before = (slice){th + 7, (size_t)(before.p + before.n - (th + 7))};
            reasoning = lstrip_nl(before);
            content = lstrip_nl((slice){last + 8, (size_t)(content.p + content.n - (last + 8))});
        }
        sb_puts(b, "<|im_start|>assistant\n");
        if (i > lqi && (i == n - 1 || reasoning.n)) {
            sb_puts(b, "<think>\n");
            sb_slice(b, rstrip_nl(lstrip_nl(reasoning)));
            sb_puts(b, "\n</think>\n\n");
            sb_slice(b, lstrip_nl(content));
        } else {
            sb_slice(b, content);
        }
    }
    for (int k = 0; k < m->n_tool_calls; k++) {
        const chat_tool_call *tc = &m->tool_calls[k];
        /* Qwen2.5 puts a newline before every call; Qwen3 not before a first call that has
         * no text ahead of it */
        if (!(t->flags & CHAT_F_THINK) || k > 0 || content.n) sb_put(b, "\n", 1);
        sb_puts(b, "<tool_call>\n{\"name\": \"");
        sb_puts(b, tc->name ? tc->name : "");
        sb_puts(b, "\", \"arguments\": ");
        if ((t->flags & CHAT_F_ARGS_RAW) && tc->arguments)
            sb_puts(b, tc->arguments);
        else
            py_args(b, tc->arguments);
        sb_puts(b, "}\n</tool_call>");
    }
    sb_puts(b, "<|im_end|>\n");
}

static int render_chatml(sbuf *b, const chat_template *t, const chat_msg *m, int n,
                         const chat_opts *o) {
    const char *sys = n > 0 && m[0].role == CHAT_SYSTEM ? (m[0].content ? m[0].content : "") : NULL;
    const char *dflt = t->default_system[0] ? t->default_system : NULL;
    if (o->n_tools > 0) {
        sb_puts(b, "<|im_start|>system\n");
        const char *s = sys ? sys : dflt;
        if (s) {
            sb_puts(b, s);
            sb_puts(b, "\n\n");
        }
        sb_puts(b, HERMES_HEAD);
        int rc = tools_block(b, o->tools, o->n_tools, -1, "\n");
        if (rc) return rc;
        sb_puts(b, HERMES_TAIL);
    } else if (sys || dflt) {
        sb_puts(b, "<|im_start|>system\n");
        sb_puts(b, sys ? sys : dflt);
        sb_puts(b, "<|im_end|>\n");
    }
    int lqi = last_query_index(m, n);
    for (int i = 0; i < n; i++) {
        switch (m[i].role) {
        case CHAT_SYSTEM:
            if (i == 0) break;
            __attribute__((fallthrough)); /* a later system message is an ordinary turn */
        case CHAT_USER:
            sb_puts(b, "<|im_start|>");
            sb_puts(b, role_name(m[i].role));
            sb_put(b, "\n", 1);
            sb_puts(b, m[i].content ? m[i].content : "");
            sb_puts(b, "<|im_end|>\n");
            break;
        case CHAT_ASSISTANT:
            chatml_assistant(b, t, &m[i], i, n, lqi);
            break;
        case CHAT_TOOL:
            if (i == 0 || m[i - 1].role != CHAT_TOOL) sb_puts(b, "<|im_start|>user");
            sb_puts(b, "\n<tool_response>\n");
            sb_puts(b, m[i].content ? m[i].content : "");
            sb_puts(b, "\n</tool_response>");
            if (i == n - 1 || m[i + 1].role != CHAT_TOOL) sb_puts(b, "<|im_end|>\n");
            break;
        }
    }
    if (o->add_generation_prompt) {
        sb_puts(b, "<|im_start|>assistant\n");
        if ((t->flags & CHAT_F_ENABLE_THINK) && o->disable_thinking)
            sb_puts(b, "<think>\n\n</think>\n\n");
    }
    return SH_OK;
}

/* ---- Llama 3 ---- */

static void llama_turn(sbuf *b, const char *role, slice content) {
    sb_puts(b, "<|start_header_id|>");
    sb_puts(b, role);
    sb_puts(b, "<|end_header_id|>\n\n");
    sb_slice(b, content);
    sb_puts(b, "<|eot_id|>");
}

static int render_llama3(sbuf *b, const chat_template *t, const chat_msg *m, int n,
                         const chat_opts *o) {
    int l31 = (t->flags & CHAT_F_LLAMA31) != 0;
    int start = n > 0 && m[0].role == CHAT_SYSTEM;
    if (l31 || n > 0) sb_puts(b, "<|begin_of_text|>");
    if (l31) {
        sb_puts(b, "<|start_header_id|>system<|end_header_id|>\n\n");
        if (o->n_tools > 0) sb_puts(b, "Environment: ipython\n");
        sb_puts(b, "Cutting Knowledge Date: December 2023\nToday Date: ");
        sb_puts(b, o->date_string ? o->date_string : "26 Jul 2024");
        sb_puts(b, "\n\n");
        if (start) sb_slice(b, trim(sl(m[0].content)));
        sb_puts(b, "<|eot_id|>");
    } else if (start) {
        llama_turn(b, "system", trim(sl(m[0].content)));
    }
    if (o->n_tools > 0) {
        /* 3.1 puts the tools into the first turn after the system prompt; 3.0 has no tool
         * support of its own and gets the same convention */
        if (start >= n)
            return sh_error_set(SH_EINVAL, "chat: tools need a user message to go with them");
        sb_puts(b, "<|start_header_id|>user<|end_header_id|>\n\n");
        sb_puts(b, "Given the following functions, please respond with a JSON for a function "
                   "call with its proper arguments that best answers the given prompt.\n\n");
        sb_puts(b, "Respond in the format {\"name\": function name, \"parameters\": dictionary "
                   "of argument name and its value}.Do not use variables.\n\n");
        int rc = tools_block(b, o->tools, o->n_tools, 4, "\n\n");
        if (rc) return rc;
        sb_slice(b, trim(sl(m[start].content)));
        sb_puts(b, "<|eot_id|>");
        start++;
    }
    for (int i = start; i < n; i++) {
        if (m[i].n_tool_calls > 0) {
            if (m[i].n_tool_calls != 1)
                return sh_error_set(SH_EINVAL, "chat: Llama 3 takes one tool call per message");
            sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"");
            sb_puts(b, m[i].tool_calls[0].name ? m[i].tool_calls[0].name : "");
            sb_puts(b, "\", \"parameters\": ");
            py_args(b, m[i].tool_calls[0].arguments);
            sb_puts(b, "}<|eot_id|>");
        } else if (m[i].role == CHAT_TOOL) {
            /* the template applies tojson to the string content, so it arrives quoted */
            sb_puts(b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            slice c = sl(m[i].content);
            py_string(b, c.p, c.n);
            sb_puts(b, "<|eot_id|>");
        } else {
            llama_turn(b, role_name(m[i].role), trim(sl(m[i].content)));
        }
    }
    if (o->add_generation_prompt) sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return SH_OK;
}

int chat_render(const chat_template *t, const chat_msg *msgs, int n_msgs, const chat_opts *opts,
                char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    static const chat_opts none = {0};
    const chat_opts *o = opts ? opts : &none;
    if (n_msgs < 0 || (n_msgs > 0 && !msgs) || o->n_tools < 0 || (o->n_tools > 0 && !o->tools))
        return sh_error_set(SH_EINVAL, "chat: bad message or tool list");
    sbuf b = {0};
    sb_put(&b, "", 0);
    int rc = t->kind == CHAT_LLAMA3 ? render_llama3(&b, t, msgs, n_msgs, o)
                                    : render_chatml(&b, t, msgs, n_msgs, o);
    if (!rc) rc = b.err;
    if (rc) {
        free(b.p);
        return rc;
    }
    if (!b.p) { /* nothing was written at all: still hand back an empty string */
        b.p = calloc(1, 1);
        if (!b.p) return SH_ENOMEM;
    }
    *out = b.p;
    *out_len = b.n;
    return SH_OK;
}

/* ---- streaming tool-call parser ---- */

static const char TAG_OPEN[] = "<tool_call>";
static const char TAG_CLOSE[] = "</tool_call>";
enum { OPEN_LEN = sizeof TAG_OPEN - 1, CLOSE_LEN = sizeof TAG_CLOSE - 1 };

enum {
    ST_TEXT,  /* plain text, watching for <tool_call> (Hermes) */
    ST_CALL,  /* inside <tool_call>, collecting until </tool_call> */
    ST_START, /* Llama 3: only blanks so far, a bare JSON call may follow */
    ST_JSON,  /* Llama 3: reply started with '{', collecting it all */
    ST_PLAIN  /* Llama 3: ordinary reply, nothing to watch for */
};

struct chat_tcp {
    int llama;
    int state;
    int m;      /* bytes of TAG_OPEN matched (always the tag's own first bytes) */
    char u8[4]; /* incomplete UTF-8 character held from the previous delta */
    int n_u8;
    char *buf; /* call text */
    size_t n, cap;
};

int chat_tcp_new(chat_tcp **out, const chat_template *t) {
    *out = NULL;
    chat_tcp *p = calloc(1, sizeof *p);
    if (!p) return SH_ENOMEM;
    p->llama = t && t->kind == CHAT_LLAMA3;
    chat_tcp_reset(p);
    *out = p;
    return SH_OK;
}

void chat_tcp_free(chat_tcp *p) {
    if (!p) return;
    free(p->buf);
    free(p);
}

void chat_tcp_reset(chat_tcp *p) {
    p->state = p->llama ? ST_START : ST_TEXT;
    p->m = 0;
    p->n_u8 = 0;
    p->n = 0;
}

static int emit_text(chat_event_fn fn, void *user, const char *s, size_t n) {
    if (n == 0) return 0;
    chat_event ev = {CHAT_EV_TEXT, s, n, NULL, NULL};
    return fn(user, &ev);
}

static size_t utf8_need(unsigned char c) {
    return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

/* bytes of an unfinished UTF-8 character at the end of s[0..n) */
static size_t utf8_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue;
        return utf8_need(c) > k ? k : 0;
    }
    return 0;
}

static int buf_add(chat_tcp *p, char c) {
    if (p->n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 1024;
        if (cap > (size_t)CHAT_TCP_CALL_MAX + 1) cap = (size_t)CHAT_TCP_CALL_MAX + 1;
        char *q = realloc(p->buf, cap);
        if (!q) return SH_ENOMEM;
        p->buf = q;
        p->cap = cap;
    }
    p->buf[p->n++] = c;
    return SH_OK;
}

/* Parse body as a call; on success emit it and return 1 through *done. */
static int try_call(const char *body, size_t len, chat_event_fn fn, void *user, int *done) {
    *done = 0;
    int rc = SH_OK;
    char *args = NULL;
    json_t *args_parsed = NULL;
    json_t *v = json_loadb(body, len, 0, NULL);
    if (!json_is_object(v)) goto out;
    json_t *name = json_object_get(v, "name");
    json_t *a = json_object_get(v, "arguments");
    if (!a) a = json_object_get(v, "parameters");
    if (!json_is_string(name) || json_string_length(name) == 0) goto out;
    if (json_is_string(a)) {
        args_parsed = json_loads(json_string_value(a), 0, NULL);
        a = args_parsed;
        if (!json_is_object(a)) goto out;
    } else if (a && !json_is_object(a)) {
        goto out;
    }
    args = a ? json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER) : strdup("{}");
    if (!args) {
        rc = SH_ENOMEM;
        goto out;
    }
    chat_event ev = {CHAT_EV_TOOL_CALL, NULL, 0, json_string_value(name), args};
    *done = 1;
    rc = fn(user, &ev);
out:
    free(args);
    json_decref(args_parsed);
    json_decref(v);
    return rc;
}

/* </tool_call> seen: buf holds the body and the closing tag. */
static int close_call(chat_tcp *p, chat_event_fn fn, void *user) {
    int done;
    int rc = try_call(p->buf, p->n - CLOSE_LEN, fn, user, &done);
    if (!rc && !done) {
        rc = emit_text(fn, user, TAG_OPEN, OPEN_LEN);
        if (!rc) rc = emit_text(fn, user, p->buf, p->n);
    }
    p->n = 0;
    p->state = ST_TEXT;
    return rc;
}

int chat_tcp_feed(chat_tcp *p, const char *text, size_t len, chat_event_fn fn, void *user) {
    size_t i = 0;
    int rc;
    if (p->n_u8) { /* finish the character split by the previous delta first */
        size_t need = utf8_need((unsigned char)p->u8[0]);
        while (i < len && (size_t)p->n_u8 < need && ((unsigned char)text[i] & 0xC0) == 0x80)
            p->u8[p->n_u8++] = text[i++];
        if ((size_t)p->n_u8 < need && i == len) return SH_OK;
        rc = emit_text(fn, user, p->u8, (size_t)p->n_u8);
        p->n_u8 = 0;
        if (rc) return rc;
    }
    size_t run = i; /* start of the text not yet emitted */
    for (; i < len; i++) {
        char c = text[i];
        switch (p->state) {
        case ST_TEXT:
            if (p->m == 0 && c != '<') break;
            if (c == TAG_OPEN[p->m]) {
                if (p->m == 0 && (rc = emit_text(fn, user, text + run, i - run))) return rc;
                run = i + 1;
                if (++p->m == OPEN_LEN) {
                    p->state = ST_CALL;
                    p->m = 0;
                    p->n = 0;
                }
                break;
            }
            /* not the tag after all: what was held is text; c may start a new attempt */
            if ((rc = emit_text(fn, user, TAG_OPEN, (size_t)p->m))) return rc;
            p->m = 0;
            run = i;
            if (c == '<') {
                p->m = 1;
                run = i + 1;
            }
            break;
        case ST_CALL:
            if ((rc = buf_add(p, c))) return rc;
            if (c == '>' && p->n >= CLOSE_LEN &&
                memcmp(p->buf + p->n - CLOSE_LEN, TAG_CLOSE, CLOSE_LEN) == 0) {
                if ((rc = close_call(p, fn, user))) return rc;
                run = i + 1;
            } else if (p->n >= CHAT_TCP_CALL_MAX) {
                /* too long to be a call we would accept: give it back as text */
                if ((rc = emit_text(fn, user, TAG_OPEN, OPEN_LEN))) return rc;
                if ((rc = emit_text(fn, user, p->buf, p->n))) return rc;
                p->n = 0;
                p->state = ST_TEXT;
                run = i + 1;
            }
            break;
        case ST_START:
            if ((rc = buf_add(p, c))) return rc;
            if (c == '{') {
                p->state = ST_JSON;
            } else if (!is_space(c)) {
                /* an ordinary reply: release it all from here on */
                if ((rc = emit_text(fn, user, p->buf, p->n - 1))) return rc;
                p->n = 0;
                p->state = ST_PLAIN;
                run = i;
            }
            break;
        case ST_JSON:
            if ((rc = buf_add(p, c))) return rc;
            if (p->n >= CHAT_TCP_CALL_MAX) {
                if ((rc = emit_text(fn, user, p->buf, p->n))) return rc;
                p->n = 0;
                p->state = ST_PLAIN;
                run = i + 1;
            }
            break;
        case ST_PLAIN:
            break;
        }
    }
    if ((p->state == ST_TEXT && p->m == 0) || p->state == ST_PLAIN) {
        size_t tail = run < len ? utf8_tail(text + run, len - run) : 0;
        if ((rc = emit_text(fn, user, text + run, len - run - tail))) return rc;
        memcpy(p->u8, text + len - tail, tail);
        p->n_u8 = (int)tail;
    }
    return SH_OK;
}

int chat_tcp_finish(chat_tcp *p, chat_event_fn fn, void *user) {
    int rc = SH_OK, done = 0;
    switch (p->state) {
    case ST_TEXT:
    case ST_PLAIN:
        rc = emit_text(fn, user, TAG_OPEN, (size_t)p->m);
        if (!rc) rc = emit_text(fn, user, p->u8, (size_t)p->n_u8);
        break;
    case ST_CALL: /* never closed */
        rc = emit_text(fn, user, TAG_OPEN, OPEN_LEN);
        if (!rc) rc = emit_text(fn, user, p->buf, p->n);
        break;
    case ST_JSON:
        rc = try_call(p->buf, p->n, fn, user, &done);
        if (!rc && !done) rc = emit_text(fn, user, p->buf, p->n);
        break;
    case ST_START:
        rc = emit_text(fn, user, p->buf, p->n);
        break;
    }
    chat_tcp_reset(p);
    return rc;
}
