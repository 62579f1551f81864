/* config.c - a strict TOML-subset parser and its mapping onto sh_config.
 *
 * The parser streams: each table header and each key/value is handed to the mapper as soon as it
 * is read, so no document tree is built. TOML's "define once" rules are enforced with a bounded
 * set of every table and key path seen; a path is its parts joined by \x1f, with an element of an
 * array of tables written as an extra \x1e<index> part (control characters cannot occur in keys,
 * so these markers are unambiguous). Values and paths live in a scratch string list freed after
 * parsing; only what the mapper keeps is copied into the config. */
#include "base/config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"

/* ---- owned strings ---- */

struct sh_config_str {
    struct sh_config_str *next;
    char s[];
};

/* Copies s[0..n) with a terminator into a new node of *head. NULL when out of memory. */
static char *str_new(struct sh_config_str **head, const char *s, size_t n) {
    if (n > CONFIG_MAX_FILE * 4u) return NULL; /* nothing legitimate is that long */
    struct sh_config_str *node = malloc(sizeof *node + n + 1);
    if (!node) return NULL;
    if (n) memcpy(node->s, s, n);
    node->s[n] = 0;
    node->next = *head;
    *head = node;
    return node->s;
}

static void str_free_all(struct sh_config_str **head) {
    struct sh_config_str *n = *head;
    while (n) {
        struct sh_config_str *next = n->next;
        free(n);
        n = next;
    }
    *head = NULL;
}

/* ---- defaults ---- */

static const char *const kv_choices[] = {"f16", "f32", NULL};
static const char *const provider_choices[] = {"anthropic", "openai", NULL};

static void teacher_defaults(sh_config_teacher *t) {
    t->name = "";
    t->provider = "";
    t->base_url = "";
    t->api_key = "";
    t->api_key_env = "";
    t->model = "";
    t->timeout_seconds = 60;
    t->max_retries = 2;
    t->line = 0;
}

void config_defaults(sh_config *c) {
    memset(c, 0, sizeof *c);
    c->server.bind = "127.0.0.1:11434";
    c->server.bind_host = "127.0.0.1";
    c->server.bind_port = 11434;
    c->server.max_sessions = 100;
    c->server.session_idle_minutes = 60;
    c->server.max_body_bytes = 4 << 20;
    c->server.api_keys_file = "";
    c->server.max_messages = 10000;
    c->backend.enabled = true;
    c->backend.model = "";
    c->backend.threads = 0;
    c->backend.ctx = 32768;
    c->backend.kv_type = kv_choices[0];
    c->backend.parallel = 4;
    c->backend.prefix_cache_slots = 8;
    c->backend.max_loaded_models = 2;
    c->backend.keep_alive = 300;
    c->client.use_daemon = true;
    c->client.daemon_address = "";
    c->client.auto_spawn = true;
    c->client.timeout_seconds = 120;
    c->training.enabled = false;
    c->training.distill = true;
    c->training.lora_rank = 16;
    c->training.alpha = 32;
    c->training.targets = "attn_q,attn_k,attn_v,attn_output";
    c->training.dropout = 0;
    c->training.learning_rate = 1e-3;
    c->training.epochs = 4;
    c->training.batch_size = 4;
    c->training.max_seq_len = 512;
    c->training.interval_minutes = 5;
    c->training.min_examples = 10;
}

void config_free(sh_config *c) {
    if (!c) return;
    str_free_all(&c->owned_);
    config_defaults(c);
}

/* ---- warnings ---- */

static int add_warning_v(sh_config *c, const char *fmt, va_list ap) {
    if (c->n_warnings >= CONFIG_MAX_WARNINGS) {
        c->n_warnings_dropped++;
        return SH_OK;
    }
    char buf[512];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
    const char *w = str_new(&c->owned_, buf, (size_t)n);
    if (!w) return sh_error_set(SH_ENOMEM, "config: out of memory");
    c->warnings[c->n_warnings++] = w;
    return SH_OK;
}

__attribute__((format(printf, 2, 3))) static int add_warning(sh_config *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = add_warning_v(c, fmt, ap);
    va_end(ap);
    return rc;
}

int config_warning_count(const sh_config *c) {
    return c ? c->n_warnings : 0;
}

const char *config_warning(const sh_config *c, int i) {
    if (!c || i < 0 || i >= c->n_warnings) return NULL;
    return c->warnings[i];
}

const char *config_daemon_address(const sh_config *c) {
    return c->client.daemon_address[0] ? c->client.daemon_address : c->server.bind;
}

/* ---- addresses ---- */

int config_split_address(const char *addr, char *host_out, size_t host_cap, int *port) {
    if (!addr) return sh_error_set(SH_EINVAL, "address is NULL");
    const char *h, *colon;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return sh_error_set(SH_EFORMAT, "'%s' is not [HOST]:PORT", addr);
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon) return sh_error_set(SH_EFORMAT, "'%s' is not HOST:PORT", addr);
        h = addr;
        hl = (size_t)(colon - addr);
        if (memchr(h, ':', hl))
            return sh_error_set(SH_EFORMAT, "'%s': write an IPv6 host as [ADDR]:PORT", addr);
    }
    if (hl == 0) return sh_error_set(SH_EFORMAT, "'%s' has an empty host", addr);
    for (size_t i = 0; i < hl; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch <= ' ' || ch == 0x7f || ch == '/' || ch == '[' || ch == ']')
            return sh_error_set(SH_EFORMAT, "'%s' has an invalid host", addr);
    }
    const char *ps = colon + 1;
    size_t pl = strlen(ps);
    if (pl == 0) return sh_error_set(SH_EFORMAT, "'%s' has no port", addr);
    long v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (ps[i] < '0' || ps[i] > '9')
            return sh_error_set(SH_EFORMAT, "'%s': the port must be a number", addr);
        if (v <= 65535) v = v * 10 + (ps[i] - '0');
    }
    if (v < 1 || v > 65535) return sh_error_set(SH_ERANGE, "'%s': the port must be 1..65535", addr);
    if (host_out) {
        if (hl >= host_cap) return sh_error_set(SH_ERANGE, "'%s': host too long", addr);
        memcpy(host_out, h, hl);
        host_out[hl] = 0;
    }
    if (port) *port = (int)v;
    return SH_OK;
}

/* ---- parser state ---- */

enum { V_NONE, V_STR, V_INT, V_FLOAT, V_BOOL, V_ARRAY };

typedef struct {
    int type;
    const char *s; /* V_STR: scratch-owned, no NUL inside */
    size_t slen;
    int64_t i;
    double f;
    bool b;
} tscalar;

typedef struct {
    int type;       /* a scalar type or V_ARRAY */
    tscalar v;      /* scalar */
    int elem, n;    /* V_ARRAY: element type (V_NONE when empty), count */
    tscalar *items; /* V_ARRAY: the parser's item buffer, valid until the next value */
} tvalue;

/* What a path in the defined set is. */
enum { D_VALUE, D_TABLE, D_IMPLICIT, D_DOTTED, D_AOT };

typedef struct {
    const char *path;
    int kind;
    int count; /* D_AOT: elements so far */
} tdef;

/* Known tables. */
enum { T_ROOT, T_SERVER, T_BACKEND, T_CLIENT, T_TEACHERS, T_TRAINING, T_UNKNOWN };

/* Room for a table path (from one line) plus a key path (from another), with markers. */
#define PATHBUF (2 * CONFIG_MAX_LINE + 64 * CONFIG_MAX_DEPTH)

typedef struct {
    const char *s, *end;
    int line;
    const char *name;
    sh_config *c;
    struct sh_config_str *scratch;
    tdef *defs;
    int n_defs;
    tscalar *items;
    char *tmp;  /* CONFIG_MAX_LINE + 1: decoded strings, float digits */
    char *pbuf; /* PATHBUF */
    locale_t cloc;
    /* current table */
    const char *tpath; /* internal path, "" at the root */
    int t_kind;
    int t_teacher;
} parser;

__attribute__((format(printf, 4, 5))) static int perr_at(parser *p, int line, int status,
                                                         const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sh_error_set(status, "%s:%d: %s", p->name, line, msg);
}

#define perr(p, st, ...) perr_at((p), (p)->line, (st), __VA_ARGS__)

__attribute__((format(printf, 3, 4))) static int pwarn(parser *p, int line, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return add_warning(p->c, "%s:%d: %s", p->name, line, msg);
}

static int nomem(void) {
    return sh_error_set(SH_ENOMEM, "config: out of memory");
}

/* segs joined with '.' into buf for messages (truncated if needed). */
static const char *disp(char *buf, size_t cap, const char *const *segs, int n) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len + 1 < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s", i ? "." : "", segs[i]);
        if (w < 0) break;
        len += (size_t)w;
    }
    if (len >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
    return buf;
}

/* ---- prescan: size, encoding, line lengths ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static int prescan(parser *p) {
    const unsigned char *s = (const unsigned char *)p->s, *end = (const unsigned char *)p->end;
    const unsigned char *line_start = s;
    int line = 1;
    while (s < end) {
        if (*s == '\n' || *s == '\r') {
            if (*s == '\r' && (s + 1 >= end || s[1] != '\n'))
                return perr_at(p, line, SH_EFORMAT, "carriage return without line feed");
            if ((size_t)(s - line_start) > CONFIG_MAX_LINE)
                return perr_at(p, line, SH_ERANGE, "line longer than %d bytes", CONFIG_MAX_LINE);
            s += *s == '\r' ? 2 : 1;
            line_start = s;
            line++;
            continue;
        }
        if (*s == 0) return perr_at(p, line, SH_EFORMAT, "NUL byte in file");
        size_t l = utf8_len(s, (size_t)(end - s));
        if (!l) return perr_at(p, line, SH_EFORMAT, "invalid UTF-8");
        s += l;
    }
    if ((size_t)(s - line_start) > CONFIG_MAX_LINE)
        return perr_at(p, line, SH_ERANGE, "line longer than %d bytes", CONFIG_MAX_LINE);
    return SH_OK;
}

/* ---- lexing helpers ---- */

static int peek(const parser *p) {
    return p->s < p->end ? (unsigned char)*p->s : -1;
}

static void skip_ws(parser *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t')) p->s++;
}

/* prescan() guarantees a '\r' is followed by '\n'. */
static bool at_eol(const parser *p) {
    return p->s >= p->end || *p->s == '\n' || *p->s == '\r';
}

static void eat_eol(parser *p) {
    if (p->s < p->end && *p->s == '\r') p->s++;
    if (p->s < p->end && *p->s == '\n') {
        p->s++;
        p->line++;
    }
}

static bool is_ctrl(unsigned char c) {
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int skip_comment(parser *p) {
    if (peek(p) != '#') return SH_OK;
    for (p->s++; !at_eol(p); p->s++)
        if (is_ctrl((unsigned char)*p->s))
            return perr(p, SH_EFORMAT, "control character in comment");
    return SH_OK;
}

static int end_of_line(parser *p, const char *after) {
    skip_ws(p);
    int rc = skip_comment(p);
    if (rc) return rc;
    if (!at_eol(p)) return perr(p, SH_EFORMAT, "expected end of line after %s", after);
    eat_eol(p);
    return SH_OK;
}

/* Whitespace, line ends and comments, as allowed inside arrays. */
static int skip_ws_nl(parser *p) {
    for (;;) {
        skip_ws(p);
        int rc = skip_comment(p);
        if (rc) return rc;
        if (p->s >= p->end || !at_eol(p)) return SH_OK;
        eat_eol(p);
    }
}

static bool is_bare(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t utf8_put(char *o, uint32_t cp) {
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

/* ---- strings ---- */

static int save(parser *p, const char *s, size_t n, const char **out, size_t *len) {
    const char *r = str_new(&p->scratch, s, n);
    if (!r) return nomem();
    *out = r;
    *len = n;
    return SH_OK;
}

/* "..." at p->s. The decoded text is never longer than the line it comes from, so p->tmp
 * (CONFIG_MAX_LINE + 1 bytes) always holds it. */
static int parse_basic(parser *p, const char **out, size_t *len) {
    if (p->end - p->s >= 3 && memcmp(p->s, "\"\"\"", 3) == 0)
        return perr(p, SH_EFORMAT, "multi-line strings are not supported");
    p->s++;
    size_t n = 0;
    for (;;) {
        if (at_eol(p)) return perr(p, SH_EFORMAT, "unterminated string");
        unsigned char c = (unsigned char)*p->s++;
        if (c == '"') break;
        if (c != '\\') {
            if (is_ctrl(c)) return perr(p, SH_EFORMAT, "control character in string");
            p->tmp[n++] = (char)c;
            continue;
        }
        if (at_eol(p)) return perr(p, SH_EFORMAT, "unterminated string");
        int e = (unsigned char)*p->s++;
        switch (e) {
        case 'b':
            p->tmp[n++] = '\b';
            break;
        case 't':
            p->tmp[n++] = '\t';
            break;
        case 'n':
            p->tmp[n++] = '\n';
            break;
        case 'f':
            p->tmp[n++] = '\f';
            break;
        case 'r':
            p->tmp[n++] = '\r';
            break;
        case '"':
            p->tmp[n++] = '"';
            break;
        case '\\':
            p->tmp[n++] = '\\';
            break;
        case 'u':
        case 'U': {
            int digits = e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int i = 0; i < digits; i++) {
                int h = p->s < p->end ? hexval((unsigned char)*p->s) : -1;
                if (h < 0) return perr(p, SH_EFORMAT, "\\%c needs %d hex digits", e, digits);
                cp = (cp << 4) | (uint32_t)h;
                p->s++;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return perr(p, SH_EFORMAT, "\\%c%0*X is not a unicode scalar value", e, digits,
                            (unsigned)cp);
            if (cp == 0) return perr(p, SH_EFORMAT, "NUL character in string");
            n += utf8_put(p->tmp + n, cp);
            break;
        }
        default:
            if (e > ' ' && e < 0x7f) return perr(p, SH_EFORMAT, "invalid escape '\\%c'", e);
            return perr(p, SH_EFORMAT, "invalid escape");
        }
    }
    return save(p, p->tmp, n, out, len);
}

/* '...' at p->s: no escapes. */
static int parse_literal(parser *p, const char **out, size_t *len) {
    if (p->end - p->s >= 3 && memcmp(p->s, "'''", 3) == 0)
        return perr(p, SH_EFORMAT, "multi-line strings are not supported");
    const char *start = ++p->s;
    for (;;) {
        if (at_eol(p)) return perr(p, SH_EFORMAT, "unterminated string");
        unsigned char c = (unsigned char)*p->s;
        if (c == '\'') break;
        if (is_ctrl(c)) return perr(p, SH_EFORMAT, "control character in string");
        p->s++;
    }
    size_t n = (size_t)(p->s - start);
    p->s++;
    return save(p, start, n, out, len);
}

/* ---- keys ---- */

/* A dotted key; leading and trailing blanks are skipped. segs are scratch-owned. */
static int parse_key(parser *p, const char **segs, int *n_out) {
    int n = 0;
    for (;;) {
        skip_ws(p);
        if (n == CONFIG_MAX_DEPTH)
            return perr(p, SH_ERANGE, "key has more than %d parts", CONFIG_MAX_DEPTH);
        const char *seg;
        size_t len;
        int rc, c = peek(p);
        if (c == '"') {
            rc = parse_basic(p, &seg, &len);
        } else if (c == '\'') {
            rc = parse_literal(p, &seg, &len);
        } else if (is_bare(c)) {
            const char *start = p->s;
            while (p->s < p->end && is_bare((unsigned char)*p->s)) p->s++;
            rc = save(p, start, (size_t)(p->s - start), &seg, &len);
        } else {
            return perr(p, SH_EFORMAT, "expected a key");
        }
        if (rc) return rc;
        /* the path markers are control characters, so keys may not hold any */
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)seg[i] < 0x20 || seg[i] == 0x7f)
                return perr(p, SH_EFORMAT, "control character in key");
        segs[n++] = seg;
        skip_ws(p);
        if (peek(p) != '.') break;
        p->s++;
    }
    *n_out = n;
    return SH_OK;
}

/* ---- numbers ---- */

static bool is_digit_base(int c, int base) {
    if (base == 16) return hexval(c) >= 0;
    return c >= '0' && c < '0' + base;
}

/* Digits of base with single underscores between digits, from s[*i]. Returns the number of
 * characters read (0 when none), -1 on a misplaced underscore. */
static int scan_digits(const char *s, size_t n, size_t *i, int base) {
    size_t start = *i;
    while (*i < n) {
        int c = (unsigned char)s[*i];
        if (c == '_') {
            if (*i == start || !is_digit_base((unsigned char)s[*i - 1], base) || *i + 1 >= n ||
                !is_digit_base((unsigned char)s[*i + 1], base))
                return -1;
        } else if (!is_digit_base(c, base)) {
            break;
        }
        (*i)++;
    }
    return (int)(*i - start);
}

/* Accumulates the digits of s[0..n) (underscores skipped) into *out, failing above limit. */
static bool accumulate(const char *s, size_t n, int base, uint64_t limit, uint64_t *out) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') continue;
        uint64_t d = (uint64_t)hexval((unsigned char)s[i]);
        if (v > (limit - d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + d;
    }
    *out = v;
    return true;
}

static int parse_number(parser *p, const char *t, size_t n, tscalar *v) {
    bool neg = t[0] == '-', sign = t[0] == '-' || t[0] == '+';
    const char *u = t + sign;
    size_t m = n - sign;
    int shown = n > 40 ? 40 : (int)n;

    if (m == 3 && (memcmp(u, "inf", 3) == 0 || memcmp(u, "nan", 3) == 0)) {
        v->type = V_FLOAT;
        v->f = u[0] == 'i' ? (neg ? -INFINITY : INFINITY) : NAN;
        return SH_OK;
    }
    if (m >= 2 && u[0] == '0' && (u[1] == 'x' || u[1] == 'o' || u[1] == 'b')) {
        if (sign) return perr(p, SH_EFORMAT, "a sign is not allowed on '%.*s'", shown, t);
        int base = u[1] == 'x' ? 16 : u[1] == 'o' ? 8 : 2;
        size_t i = 2;
        int k = scan_digits(u, m, &i, base);
        if (k <= 0 || i != m) return perr(p, SH_EFORMAT, "invalid number '%.*s'", shown, t);
        uint64_t x;
        if (!accumulate(u + 2, m - 2, base, INT64_MAX, &x))
            return perr(p, SH_ERANGE, "integer '%.*s' out of range", shown, t);
        v->type = V_INT;
        v->i = (int64_t)x;
        return SH_OK;
    }
    for (size_t i = 0; i < m; i++)
        if (u[i] == ':' || (u[i] == '-' && i > 0 && u[i - 1] != 'e' && u[i - 1] != 'E'))
            return perr(p, SH_EFORMAT, "dates and times are not supported");

    size_t i = 0;
    int k = scan_digits(u, m, &i, 10);
    if (k <= 0) return perr(p, SH_EFORMAT, "invalid value '%.*s'", shown, t);
    if (u[0] == '0' && i > 1)
        return perr(p, SH_EFORMAT, "leading zeros are not allowed in '%.*s'", shown, t);
    size_t int_end = i;
    bool is_float = false;
    if (i < m && u[i] == '.') {
        i++;
        is_float = true;
        if (scan_digits(u, m, &i, 10) <= 0)
            return perr(p, SH_EFORMAT, "invalid number '%.*s'", shown, t);
    }
    if (i < m && (u[i] == 'e' || u[i] == 'E')) {
        i++;
        is_float = true;
        if (i < m && (u[i] == '+' || u[i] == '-')) i++;
        if (scan_digits(u, m, &i, 10) <= 0)
            return perr(p, SH_EFORMAT, "invalid number '%.*s'", shown, t);
    }
    if (i != m) return perr(p, SH_EFORMAT, "invalid value '%.*s'", shown, t);

    if (!is_float) {
        uint64_t x;
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        if (!accumulate(u, int_end, 10, limit, &x))
            return perr(p, SH_ERANGE, "integer '%.*s' out of range", shown, t);
        v->type = V_INT;
        v->i = neg ? (int64_t)(0 - x) : (int64_t)x;
        return SH_OK;
    }
    /* strtod follows the process locale; the config must read the same everywhere */
    if (!p->cloc) {
        p->cloc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (!p->cloc) return nomem();
    }
    size_t o = 0;
    for (size_t j = 0; j < n; j++)
        if (t[j] != '_') p->tmp[o++] = t[j];
    p->tmp[o] = 0;
    errno = 0;
    char *endp;
    double f = strtod_l(p->tmp, &endp, p->cloc);
    if (errno == ERANGE && isinf(f))
        return perr(p, SH_ERANGE, "float '%.*s' out of range", shown, t);
    v->type = V_FLOAT;
    v->f = f;
    return SH_OK;
}

/* ---- values ---- */

static bool is_delim(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ']' || c == '#';
}

static int parse_scalar(parser *p, tscalar *v) {
    memset(v, 0, sizeof *v);
    int c = peek(p);
    if (c == '"' || c == '\'') {
        v->type = V_STR;
        return c == '"' ? parse_basic(p, &v->s, &v->slen) : parse_literal(p, &v->s, &v->slen);
    }
    if (c == '{') return perr(p, SH_EFORMAT, "inline tables are not supported");
    if (c == '[') return perr(p, SH_EFORMAT, "nested arrays are not supported");
    const char *t = p->s;
    while (p->s < p->end && !is_delim((unsigned char)*p->s)) p->s++;
    size_t n = (size_t)(p->s - t);
    if (n == 0) return perr(p, SH_EFORMAT, "expected a value");
    if ((n == 4 && memcmp(t, "true", 4) == 0) || (n == 5 && memcmp(t, "false", 5) == 0)) {
        v->type = V_BOOL;
        v->b = n == 4;
        return SH_OK;
    }
    int c0 = (unsigned char)t[0];
    if (!((c0 >= '0' && c0 <= '9') || c0 == '+' || c0 == '-' || c0 == 'i' || c0 == 'n'))
        return perr(p, SH_EFORMAT, "invalid value '%.*s' (strings need quotes)",
                    n > 40 ? 40 : (int)n, t);
    return parse_number(p, t, n, v);
}

static int parse_value(parser *p, tvalue *v) {
    memset(v, 0, sizeof *v);
    if (peek(p) != '[') {
        int rc = parse_scalar(p, &v->v);
        v->type = v->v.type;
        return rc;
    }
    int start_line = p->line;
    p->s++;
    v->type = V_ARRAY;
    v->elem = V_NONE;
    v->items = p->items;
    for (;;) {
        int rc = skip_ws_nl(p);
        if (rc) return rc;
        if (p->s >= p->end) return perr_at(p, start_line, SH_EFORMAT, "unterminated array");
        if (peek(p) == ']') break;
        if (v->n == CONFIG_MAX_ARRAY)
            return perr(p, SH_ERANGE, "array longer than %d elements", CONFIG_MAX_ARRAY);
        tscalar it;
        rc = parse_scalar(p, &it);
        if (rc) return rc;
        if (v->elem != V_NONE && it.type != v->elem)
            return perr(p, SH_EFORMAT, "array elements must all have the same type");
        v->elem = it.type;
        v->items[v->n++] = it;
        rc = skip_ws_nl(p);
        if (rc) return rc;
        if (p->s >= p->end) return perr_at(p, start_line, SH_EFORMAT, "unterminated array");
        if (peek(p) == ',') {
            p->s++;
            continue;
        }
        if (peek(p) == ']') break;
        return perr(p, SH_EFORMAT, "expected ',' or ']' in array");
    }
    p->s++;
    return SH_OK;
}

/* ---- the defined set ---- */

static tdef *def_find(parser *p, const char *path) {
    for (int i = 0; i < p->n_defs; i++)
        if (strcmp(p->defs[i].path, path) == 0) return &p->defs[i];
    return NULL;
}

static int def_add(parser *p, const char *path, size_t len, int kind, tdef **out) {
    if (p->n_defs == CONFIG_MAX_KEYS)
        return perr(p, SH_ERANGE, "more than %d keys and tables", CONFIG_MAX_KEYS);
    tdef *d = &p->defs[p->n_defs];
    size_t dummy;
    int rc = save(p, path, len, &d->path, &dummy);
    if (rc) return rc;
    d->kind = kind;
    d->count = 0;
    p->n_defs++;
    if (out) *out = d;
    return SH_OK;
}

static int path_push(parser *p, size_t *len, const char *seg) {
    size_t sl = strlen(seg), need = *len + (*len ? 1 : 0) + sl;
    if (need >= PATHBUF) return perr(p, SH_ERANGE, "name too long");
    if (*len) p->pbuf[(*len)++] = '\x1f';
    memcpy(p->pbuf + *len, seg, sl);
    *len += sl;
    p->pbuf[*len] = 0;
    return SH_OK;
}

static int path_push_index(parser *p, size_t *len, int index) {
    char m[16];
    snprintf(m, sizeof m, "\x1e%d", index);
    return path_push(p, len, m);
}

/* Records header [segs] or [[segs]] and makes it the current table path. */
static int define_table(parser *p, const char **segs, int n, bool aot) {
    char d[256];
    size_t len = 0;
    p->pbuf[0] = 0;
    for (int i = 0; i < n; i++) {
        int rc = path_push(p, &len, segs[i]);
        if (rc) return rc;
        tdef *t = def_find(p, p->pbuf);
        bool last = i == n - 1;
        if (t && t->kind == D_VALUE)
            return perr(p, SH_EFORMAT, "'%s' is already a value, not a table",
                        disp(d, sizeof d, segs, i + 1));
        if (!last) {
            if (!t) {
                rc = def_add(p, p->pbuf, len, D_IMPLICIT, NULL);
            } else if (t->kind == D_DOTTED) {
                return perr(p, SH_EFORMAT, "table [%s] was already defined by dotted keys",
                            disp(d, sizeof d, segs, i + 1));
            } else if (t->kind == D_AOT) {
                rc = path_push_index(p, &len, t->count - 1);
            }
        } else if (!aot) {
            if (!t)
                rc = def_add(p, p->pbuf, len, D_TABLE, NULL);
            else if (t->kind == D_IMPLICIT)
                t->kind = D_TABLE;
            else if (t->kind == D_AOT)
                return perr(p, SH_EFORMAT, "[%s] is an array of tables: write [[%s]]",
                            disp(d, sizeof d, segs, n), d);
            else if (t->kind == D_DOTTED)
                return perr(p, SH_EFORMAT, "table [%s] was already defined by dotted keys",
                            disp(d, sizeof d, segs, n));
            else
                return perr(p, SH_EFORMAT, "table [%s] defined twice", disp(d, sizeof d, segs, n));
        } else {
            if (!t)
                rc = def_add(p, p->pbuf, len, D_AOT, &t);
            else if (t->kind != D_AOT)
                return perr(p, SH_EFORMAT, "[%s] is already a table, not an array of tables",
                            disp(d, sizeof d, segs, n));
            if (rc == SH_OK) rc = path_push_index(p, &len, t->count++);
        }
        if (rc) return rc;
    }
    size_t dummy;
    return save(p, p->pbuf, len, &p->tpath, &dummy);
}

/* Records key segs under the current table; dotted parts become tables of their own. */
static int define_key(parser *p, const char **segs, int n) {
    char d[256];
    size_t len = strlen(p->tpath);
    memcpy(p->pbuf, p->tpath, len + 1);
    for (int i = 0; i < n; i++) {
        int rc = path_push(p, &len, segs[i]);
        if (rc) return rc;
        tdef *t = def_find(p, p->pbuf);
        if (i == n - 1) {
            if (t && t->kind == D_VALUE)
                return perr(p, SH_EFORMAT, "duplicate key '%s'", disp(d, sizeof d, segs, n));
            if (t)
                return perr(p, SH_EFORMAT, "'%s' is already a table", disp(d, sizeof d, segs, n));
            rc = def_add(p, p->pbuf, len, D_VALUE, NULL);
        } else if (!t) {
            rc = def_add(p, p->pbuf, len, D_DOTTED, NULL);
        } else if (t->kind == D_VALUE) {
            return perr(p, SH_EFORMAT, "'%s' is already a value, not a table",
                        disp(d, sizeof d, segs, i + 1));
        } else if (t->kind != D_DOTTED) {
            return perr(p, SH_EFORMAT, "'%s' is a table defined elsewhere",
                        disp(d, sizeof d, segs, i + 1));
        }
        if (rc) return rc;
    }
    return SH_OK;
}

/* ---- mapping onto sh_config ---- */

enum { F_BOOL, F_INT, F_I64, F_FLOAT, F_STR, F_BIND, F_ADDR, F_ENUM, F_KEYS, F_ORIGINS };

typedef struct {
    const char *key;
    int kind;
    size_t off; /* in sh_config, or in sh_config_teacher for [[teachers]] */
    int64_t min, max;
    const char *const *choices;
} fspec;

#define CO(m) offsetof(sh_config, m)
#define TO(m) offsetof(sh_config_teacher, m)

static const fspec server_spec[] = {
    {"bind", F_BIND, CO(server.bind), 0, 0, NULL},
    {"max_sessions", F_INT, CO(server.max_sessions), 1, 1000000, NULL},
    {"session_idle_minutes", F_INT, CO(server.session_idle_minutes), 1, 525600, NULL},
    {"max_body_bytes", F_I64, CO(server.max_body_bytes), 1024, 1 << 30, NULL},
    {"api_keys", F_KEYS, CO(server.api_keys), 0, 0, NULL},
    {"api_keys_file", F_STR, CO(server.api_keys_file), 0, 0, NULL},
    {"cors_origins", F_ORIGINS, CO(server.cors_origins), 0, 0, NULL},
    {"max_messages", F_INT, CO(server.max_messages), 1, 1000000, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};
static const fspec backend_spec[] = {
    {"enabled", F_BOOL, CO(backend.enabled), 0, 0, NULL},
    {"model", F_STR, CO(backend.model), 0, 0, NULL},
    {"threads", F_INT, CO(backend.threads), 0, 1024, NULL},
    {"ctx", F_INT, CO(backend.ctx), 16, 16777216, NULL},
    {"kv_type", F_ENUM, CO(backend.kv_type), 0, 0, kv_choices},
    {"parallel", F_INT, CO(backend.parallel), 1, 256, NULL},
    {"prefix_cache_slots", F_INT, CO(backend.prefix_cache_slots), 1, 1024, NULL},
    {"max_loaded_models", F_INT, CO(backend.max_loaded_models), 1, 16, NULL},
    {"keep_alive", F_I64, CO(backend.keep_alive), -1, 1LL << 31, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};
static const fspec client_spec[] = {
    {"use_daemon", F_BOOL, CO(client.use_daemon), 0, 0, NULL},
    {"daemon_address", F_ADDR, CO(client.daemon_address), 0, 0, NULL},
    {"auto_spawn", F_BOOL, CO(client.auto_spawn), 0, 0, NULL},
    {"timeout_seconds", F_INT, CO(client.timeout_seconds), 1, 86400, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};
static const fspec teacher_spec[] = {
    {"name", F_STR, TO(name), 0, 0, NULL},
    {"provider", F_ENUM, TO(provider), 0, 0, provider_choices},
    {"base_url", F_STR, TO(base_url), 0, 0, NULL},
    {"api_key", F_STR, TO(api_key), 0, 0, NULL},
    {"api_key_env", F_STR, TO(api_key_env), 0, 0, NULL},
    {"model", F_STR, TO(model), 0, 0, NULL},
    {"timeout_seconds", F_INT, TO(timeout_seconds), 1, 3600, NULL},
    {"max_retries", F_INT, TO(max_retries), 0, 10, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};
static const fspec training_spec[] = {
    {"enabled", F_BOOL, CO(training.enabled), 0, 0, NULL},
    {"distill", F_BOOL, CO(training.distill), 0, 0, NULL},
    {"rank", F_INT, CO(training.lora_rank), 1, 1024, NULL},
    {"lora_rank", F_INT, CO(training.lora_rank), 1, 1024, NULL},
    {"alpha", F_FLOAT, CO(training.alpha), 0, 1e6, NULL},
    {"targets", F_STR, CO(training.targets), 0, 0, NULL},
    {"dropout", F_FLOAT, CO(training.dropout), -1, 1, NULL}, /* the daemon clamps to [0, 0.95] */
    {"learning_rate", F_FLOAT, CO(training.learning_rate), 0, 1, NULL},
    {"epochs", F_INT, CO(training.epochs), 1, 1000, NULL},
    {"batch_size", F_INT, CO(training.batch_size), 1, 4096, NULL},
    {"max_seq_len", F_INT, CO(training.max_seq_len), 16, 65536, NULL},
    {"min_examples", F_INT, CO(training.min_examples), 1, 1000000, NULL},
    {"batch_threshold", F_INT, CO(training.min_examples), 1, 1000000, NULL},
    {"interval_minutes", F_INT, CO(training.interval_minutes), 1, 10080, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const struct {
    const char *name, *shown;
    const fspec *spec;
} tables[] = {
    [T_SERVER] = {"server", "[server]", server_spec},
    [T_BACKEND] = {"backend", "[backend]", backend_spec},
    [T_CLIENT] = {"client", "[client]", client_spec},
    [T_TEACHERS] = {"teachers", "[[teachers]]", teacher_spec},
    [T_TRAINING] = {"training", "[training]", training_spec},
};

static int table_id(const char *name) {
    for (int t = T_SERVER; t < T_UNKNOWN; t++)
        if (strcmp(tables[t].name, name) == 0) return t;
    return T_UNKNOWN;
}

static const char *type_word(int kind) {
    switch (kind) {
    case F_BOOL:
        return "a boolean";
    case F_INT:
    case F_I64:
        return "an integer";
    case F_FLOAT:
        return "a number";
    case F_KEYS:
    case F_ORIGINS:
        return "an array of strings";
    default:
        return "a string";
    }
}

/* What a browser sends as Origin: scheme "://" host [":" port], nothing after; or "*". The
 * daemon compares origins as strings, so anything else could never match and is a typo. */
static bool origin_valid(const char *s, size_t n) {
    if (n == 1 && s[0] == '*') return true;
    size_t i = 0;
    if (n == 0 || !((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z')) return false;
    while (i < n && ((s[i] && strchr("+-.", s[i])) || (s[i] >= '0' && s[i] <= '9') ||
                     ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z')))
        i++;
    if (n - i < 4 || memcmp(s + i, "://", 3) != 0) return false;
    for (i += 3; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch >= 0x7f || strchr("/?#@\\\"", ch)) return false;
    }
    return true;
}

static int keep(parser *p, const tscalar *v, const char **out) {
    const char *s = str_new(&p->c->owned_, v->s, v->slen);
    if (!s) return nomem();
    *out = s;
    return SH_OK;
}

static int assign(parser *p, int t, const char **ksegs, int nk, const tvalue *v, int line) {
    char d[256];
    const char *shown = tables[t].shown;
    if (nk != 1)
        return pwarn(p, line, "unknown key '%s' in %s", disp(d, sizeof d, ksegs, nk), shown);
    const fspec *f = tables[t].spec;
    while (f->key && strcmp(f->key, ksegs[0]) != 0) f++;
    if (!f->key) return pwarn(p, line, "unknown key '%s' in %s", ksegs[0], shown);

    char *base = t == T_TEACHERS ? (char *)&p->c->teachers[p->t_teacher] : (char *)p->c;
    void *field = base + f->off;
    bool ok;
    switch (f->kind) {
    case F_BOOL:
        ok = v->type == V_BOOL;
        break;
    case F_INT:
    case F_I64:
        ok = v->type == V_INT;
        break;
    case F_FLOAT:
        ok = v->type == V_FLOAT || v->type == V_INT;
        break;
    case F_KEYS:
    case F_ORIGINS:
        ok = v->type == V_ARRAY && (v->elem == V_STR || v->elem == V_NONE);
        break;
    default:
        ok = v->type == V_STR;
        break;
    }
    if (!ok)
        return perr_at(p, line, SH_EFORMAT, "%s %s must be %s", shown, f->key, type_word(f->kind));

    const tscalar *s = &v->v;
    switch (f->kind) {
    case F_BOOL:
        *(bool *)field = s->b;
        return SH_OK;
    case F_INT:
    case F_I64:
        if (s->i < f->min || s->i > f->max)
            return perr_at(p, line, SH_ERANGE, "%s %s must be %lld..%lld (got %lld)", shown, f->key,
                           (long long)f->min, (long long)f->max, (long long)s->i);
        if (f->kind == F_INT)
            *(int *)field = (int)s->i;
        else
            *(int64_t *)field = s->i;
        return SH_OK;
    case F_FLOAT: {
        double x = s->type == V_INT ? (double)s->i : s->f;
        if (!(x > (double)f->min && x <= (double)f->max))
            return perr_at(p, line, SH_ERANGE, "%s %s must be > %lld and <= %lld (got %g)", shown,
                           f->key, (long long)f->min, (long long)f->max, x);
        *(double *)field = x;
        return SH_OK;
    }
    case F_STR:
        return keep(p, s, (const char **)field);
    case F_ENUM:
        for (int i = 0; f->choices[i]; i++)
            if (strcmp(f->choices[i], s->s) == 0) {
                *(const char **)field = f->choices[i];
                return SH_OK;
            }
        return perr_at(p, line, SH_EFORMAT, "%s %s must be \"%s\" or \"%s\"", shown, f->key,
                       f->choices[0], f->choices[1]);
    case F_BIND:
    case F_ADDR: {
        char host[256];
        int port = 0;
        if (f->kind == F_ADDR && s->slen == 0) return keep(p, s, (const char **)field);
        int rc = config_split_address(s->s, host, sizeof host, &port);
        if (rc) return perr_at(p, line, rc, "%s %s: %s", shown, f->key, sh_error_last());
        rc = keep(p, s, (const char **)field);
        if (rc || f->kind == F_ADDR) return rc;
        const char *h = str_new(&p->c->owned_, host, strlen(host));
        if (!h) return nomem();
        p->c->server.bind_host = h;
        p->c->server.bind_port = port;
        return SH_OK;
    }
    case F_KEYS: {
        if (v->n > CONFIG_MAX_API_KEYS)
            return perr_at(p, line, SH_ERANGE, "%s %s holds more than %d keys", shown, f->key,
                           CONFIG_MAX_API_KEYS);
        for (int i = 0; i < v->n; i++) {
            if (v->items[i].slen == 0)
                return perr_at(p, line, SH_EFORMAT, "%s %s entries must not be empty", shown,
                               f->key);
            int rc = keep(p, &v->items[i], &p->c->server.api_keys[i]);
            if (rc) return rc;
        }
        p->c->server.n_api_keys = v->n;
        return SH_OK;
    }
    case F_ORIGINS: {
        if (v->n > CONFIG_MAX_CORS_ORIGINS)
            return perr_at(p, line, SH_ERANGE, "%s %s holds more than %d origins", shown, f->key,
                           CONFIG_MAX_CORS_ORIGINS);
        for (int i = 0; i < v->n; i++) {
            if (!origin_valid(v->items[i].s, v->items[i].slen))
                return perr_at(p, line, SH_EFORMAT,
                               "%s %s: \"%.200s\" is not \"*\" or an origin "
                               "\"scheme://host[:port]\" (no path, no trailing /)",
                               shown, f->key, v->items[i].s);
            int rc = keep(p, &v->items[i], &p->c->server.cors_origins[i]);
            if (rc) return rc;
        }
        p->c->server.n_cors_origins = v->n;
        return SH_OK;
    }
    }
    return SH_OK;
}

static int enter_table(parser *p, const char **segs, int n, bool aot, int line) {
    char d[256];
    int t = table_id(segs[0]);
    p->t_teacher = -1;
    p->t_kind = T_UNKNOWN;
    if (n == 1 && t == T_TEACHERS) {
        if (!aot) return perr(p, SH_EFORMAT, "teachers is an array of tables: write [[teachers]]");
        if (p->c->n_teachers == CONFIG_MAX_TEACHERS)
            return perr(p, SH_ERANGE, "more than %d [[teachers]]", CONFIG_MAX_TEACHERS);
        sh_config_teacher *th = &p->c->teachers[p->c->n_teachers];
        teacher_defaults(th);
        th->line = line;
        p->t_teacher = p->c->n_teachers++;
        p->t_kind = T_TEACHERS;
        return SH_OK;
    }
    if (n == 1 && t != T_UNKNOWN) {
        if (aot) return perr(p, SH_EFORMAT, "%s is a table: write [%s]", segs[0], segs[0]);
        p->t_kind = t;
        return SH_OK;
    }
    return pwarn(p, line, aot ? "unknown table [[%s]]" : "unknown table [%s]",
                 disp(d, sizeof d, segs, n));
}

static int map_keyval(parser *p, const char **ksegs, int nk, const tvalue *v, int line) {
    char d[256];
    if (p->t_kind == T_UNKNOWN) return SH_OK; /* the whole table was warned about */
    if (p->t_kind != T_ROOT) return assign(p, p->t_kind, ksegs, nk, v, line);
    int t = table_id(ksegs[0]);
    if (t == T_UNKNOWN)
        return pwarn(p, line, "unknown key '%s' at top level", disp(d, sizeof d, ksegs, nk));
    if (t == T_TEACHERS)
        return perr_at(p, line, SH_EFORMAT, "teachers is an array of tables: write [[teachers]]");
    if (nk == 1)
        return perr_at(p, line, SH_EFORMAT, "%s must be a table: write [%s]", ksegs[0], ksegs[0]);
    return assign(p, t, ksegs + 1, nk - 1, v, line);
}

static int parse_header(parser *p) {
    int line = p->line;
    const char *segs[CONFIG_MAX_DEPTH];
    int n;
    bool aot = false;
    p->s++;
    if (peek(p) == '[') {
        aot = true;
        p->s++;
    }
    int rc = parse_key(p, segs, &n);
    if (rc) return rc;
    if (peek(p) != ']') return perr(p, SH_EFORMAT, "expected ']' after table name");
    p->s++;
    if (aot) {
        if (peek(p) != ']') return perr(p, SH_EFORMAT, "expected ']]' after table name");
        p->s++;
    }
    rc = define_table(p, segs, n, aot);
    if (rc) return rc;
    rc = enter_table(p, segs, n, aot, line);
    if (rc) return rc;
    return end_of_line(p, "table header");
}

static int parse_keyval(parser *p) {
    int line = p->line;
    const char *segs[CONFIG_MAX_DEPTH];
    int n;
    int rc = parse_key(p, segs, &n);
    if (rc) return rc;
    if (peek(p) != '=') return perr(p, SH_EFORMAT, "expected '=' after key");
    p->s++;
    rc = define_key(p, segs, n);
    if (rc) return rc;
    skip_ws(p);
    if (at_eol(p) || peek(p) == '#') return perr(p, SH_EFORMAT, "expected a value after '='");
    tvalue v;
    rc = parse_value(p, &v);
    if (rc) return rc;
    rc = end_of_line(p, "value");
    if (rc) return rc;
    return map_keyval(p, segs, n, &v, line);
}

static int parse_doc(parser *p) {
    while (p->s < p->end) {
        skip_ws(p);
        int rc = SH_OK;
        if (at_eol(p)) {
            eat_eol(p);
        } else if (peek(p) == '#') {
            rc = skip_comment(p);
            eat_eol(p);
        } else if (peek(p) == '[') {
            rc = parse_header(p);
        } else {
            rc = parse_keyval(p);
        }
        if (rc) return rc;
    }
    return SH_OK;
}

/* Checks that need the whole file: required teacher keys and unique names. */
static int finish(parser *p) {
    sh_config *c = p->c;
    for (int i = 0; i < c->n_teachers; i++) {
        sh_config_teacher *t = &c->teachers[i];
        if (!t->provider[0])
            return perr_at(p, t->line, SH_EFORMAT,
                           "[[teachers]] needs a provider (\"anthropic\" or \"openai\")");
        if (!t->model[0]) return perr_at(p, t->line, SH_EFORMAT, "[[teachers]] needs a model");
        if (!t->name[0]) t->name = t->model;
        for (int j = 0; j < i; j++)
            if (strcmp(c->teachers[j].name, t->name) == 0)
                return perr_at(p, t->line, SH_EFORMAT,
                               "duplicate teacher name '%s' (give each [[teachers]] a name)",
                               t->name);
    }
    return SH_OK;
}

int config_parse(sh_config *c, const char *text, size_t len, const char *name_for_errors) {
    if (!c) return sh_error_set(SH_EINVAL, "config_parse: NULL config");
    config_defaults(c);
    const char *name = name_for_errors ? name_for_errors : "config";
    if (!text && len) return sh_error_set(SH_EINVAL, "config_parse: NULL text");
    if (len > CONFIG_MAX_FILE)
        return sh_error_set(SH_ERANGE, "%s: larger than %d bytes", name, CONFIG_MAX_FILE);

    parser p = {0};
    p.s = text ? text : "";
    p.end = p.s + len;
    p.line = 1;
    p.name = name;
    p.c = c;
    p.tpath = "";
    p.t_kind = T_ROOT;
    p.t_teacher = -1;
    int rc = SH_OK;
    p.defs = malloc(sizeof *p.defs * CONFIG_MAX_KEYS);
    p.items = malloc(sizeof *p.items * CONFIG_MAX_ARRAY);
    p.tmp = malloc(CONFIG_MAX_LINE + 1);
    p.pbuf = malloc(PATHBUF);
    if (!p.defs || !p.items || !p.tmp || !p.pbuf) {
        rc = nomem();
        goto out;
    }
    /* editors on some systems start UTF-8 files with a byte order mark */
    if (len >= 3 && memcmp(p.s, "\xef\xbb\xbf", 3) == 0) p.s += 3;
    rc = prescan(&p);
    if (rc) goto out;
    rc = parse_doc(&p);
    if (rc) goto out;
    rc = finish(&p);
out:
    str_free_all(&p.scratch);
    free(p.defs);
    free(p.items);
    free(p.tmp);
    free(p.pbuf);
    if (p.cloc) freelocale(p.cloc);
    if (rc) config_free(c);
    return rc;
}

static bool holds_secrets(const sh_config *c) {
    if (c->server.n_api_keys > 0) return true;
    for (int i = 0; i < c->n_teachers; i++)
        if (c->teachers[i].api_key[0]) return true;
    return false;
}

/* Reads the whole regular file open on fd (st is its fstat) into *out (caller frees; a NUL
 * follows the *n bytes). Messages are prefixed with path. */
static int read_all(int fd, const struct stat *st, const char *path, char **out, size_t *n_out) {
    *out = NULL;
    if (!S_ISREG(st->st_mode)) return sh_error_set(SH_EIO, "%s: not a regular file", path);
    if (st->st_size > CONFIG_MAX_FILE)
        return sh_error_set(SH_ERANGE, "%s: larger than %d bytes", path, CONFIG_MAX_FILE);
    size_t cap = (size_t)st->st_size + 1, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) return nomem();
    /* read one byte more than expected to notice a file growing under us */
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return sh_error_set(SH_EIO, "%s: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (n == cap) {
        free(buf);
        return sh_error_set(SH_EIO, "%s: changed while being read", path);
    }
    buf[n] = 0;
    *out = buf;
    *n_out = n;
    return SH_OK;
}

/* Adds the keys of [server] api_keys_file to c's api_keys (rules in config.h). A relative
 * file name is taken from config_path's directory. Key text never appears in a message. */
static int load_keys_file(sh_config *c, const char *config_path) {
    const char *name = c->server.api_keys_file;
    const char *slash = strrchr(config_path, '/');
    char path[4096];
    int len = name[0] == '/' || !slash
                  ? snprintf(path, sizeof path, "%s", name)
                  : snprintf(path, sizeof path, "%.*s/%s", (int)(slash - config_path), config_path, name);
    if (len < 0 || (size_t)len >= sizeof path)
        return sh_error_set(SH_ERANGE, "%s: [server] api_keys_file: path too long", config_path);
    char *buf = NULL;
    size_t n = 0;
    int rc = SH_OK, added = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sh_error_set(SH_EIO, "[server] api_keys_file %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = sh_error_set(SH_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    /* as ssh does for private keys: a secret others can read (or replace) is refused */
    if (S_ISREG(st.st_mode) && (st.st_mode & 007)) {
        rc = sh_error_set(SH_EINVAL, "%s: permissions %04o are too open: other users can read the "
                                     "API keys (chmod 600 %s)", path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if ((rc = read_all(fd, &st, path, &buf, &n))) goto out;
    int line = 0;
    for (char *p = buf, *end = buf + n; p < end && !rc; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end, *next = nl ? nl + 1 : end;
        if (e - p > CONFIG_MAX_LINE) {
            rc = sh_error_set(SH_ERANGE, "%s:%d: line longer than %d bytes", path, line + 1, CONFIG_MAX_LINE);
            break;
        }
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
        if (p == e || *p == '#') {
            p = next;
            continue;
        }
        for (const char *q = p; q < e && !rc; q++)
            if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
                rc = sh_error_set(SH_EFORMAT, "%s:%d: a key must be printable ASCII without spaces",
                                  path, line + 1);
        if (!rc && c->server.n_api_keys >= CONFIG_MAX_API_KEYS)
            rc = sh_error_set(SH_ERANGE, "%s:%d: more than %d API keys in [server] api_keys and "
                                         "api_keys_file together", path, line + 1, CONFIG_MAX_API_KEYS);
        if (!rc) {
            const char *k = str_new(&c->owned_, p, (size_t)(e - p));
            if (!k) rc = nomem();
            else c->server.api_keys[c->server.n_api_keys++] = k, added++;
        }
        p = next;
    }
    if (!rc && added == 0)
        rc = sh_error_set(SH_EFORMAT, "%s: holds no API key ([server] api_keys_file)", path);
    if (!rc && (st.st_mode & 070))
        rc = add_warning(c, "%s: API keys readable by the group (chmod 600 %s)", path, path);
out:
    if (buf) explicit_bzero(buf, n);
    free(buf);
    close(fd);
    return rc;
}

int config_load(sh_config *c, const char *path) {
    if (!c || !path) return sh_error_set(SH_EINVAL, "config_load: NULL argument");
    config_defaults(c);
    char *buf = NULL;
    size_t n = 0;
    int rc = SH_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return SH_OK;
        return sh_error_set(SH_EIO, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = sh_error_set(SH_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((rc = read_all(fd, &st, path, &buf, &n))) goto out;
    rc = config_parse(c, buf, n, path);
    if (rc == SH_OK && (st.st_mode & 044) && holds_secrets(c))
        rc = add_warning(c, "%s: holds API keys but is readable by others (chmod 600 %s)", path,
                         path);
    if (rc == SH_OK && c->server.api_keys_file[0]) rc = load_keys_file(c, path);
    if (rc) config_free(c);
out:
    if (buf) explicit_bzero(buf, n);
    free(buf);
    close(fd);
    return rc;
}
