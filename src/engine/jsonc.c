/* jsonc.c - byte-at-a-time JSON state machine and its token-level wrappers. */
#include "engine/jsonc.h"

#include <string.h>

#include "base/status.h"

enum {
    JS_VALUE,  /* a value must come (top level start, after ':' or after ',' in an array) */
    JS_ARR0,   /* after '[': a value or ']' */
    JS_OBJ0,   /* after '{': a key or '}' */
    JS_KEY,    /* after ',' in an object: a key */
    JS_COLON,  /* after a key */
    JS_AFTER,  /* after a value inside a container: ',' or the closing bracket */
    JS_DONE,   /* top-level value closed: whitespace only */
    JS_STR,    /* inside a string */
    JS_ESC,    /* after '\' */
    JS_HEX,    /* inside \uXXXX */
    JS_LOWBS,  /* after a high surrogate escape: '\' of the low one */
    JS_LOWU,   /* its 'u' */
    JS_UTF8,   /* continuation bytes of a multi-byte character */
    JS_LIT,    /* inside true / false / null */
    JS_NMINUS, /* "-" */
    JS_NZERO,  /* "0" or "-0" (complete) */
    JS_NINT,   /* integer digits (complete) */
    JS_NDOT,   /* "1." */
    JS_NFRAC,  /* fraction digits (complete) */
    JS_NE,     /* "1e" */
    JS_NESIGN, /* "1e+" */
    JS_NEXP    /* exponent digits (complete) */
};

enum { F_KEY = 1, F_LOW = 2, F_OBJECT = 4 };

static const char *const lits[3] = {"true", "false", "null"};
static const uint8_t lit_len[3] = {4, 5, 4};

void jsonc_init(jsonc *j, int require_object) {
    memset(j, 0, sizeof *j);
    j->state = JS_VALUE;
    if (require_object) j->flags = F_OBJECT;
}

void jsonc_set_ws_max(jsonc *j, int n) {
    j->ws_max = (uint16_t)(n < 0 ? 0 : n > 65535 ? 65535 : n);
}

static int is_ws(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int top_is_object(const jsonc *j) {
    return (j->stack >> (j->depth - 1)) & 1;
}

static int push(jsonc *j, int object) {
    if (j->depth >= JSONC_DEPTH_MAX) return -1;
    uint64_t bit = (uint64_t)1 << j->depth;
    j->stack = object ? j->stack | bit : j->stack & ~bit;
    j->depth++;
    j->state = object ? JS_OBJ0 : JS_ARR0;
    return 0;
}

static void value_done(jsonc *j) {
    j->state = j->depth == 0 ? JS_DONE : JS_AFTER;
}

static int pop(jsonc *j) {
    j->depth--;
    value_done(j);
    return 0;
}

/* First byte of a value. */
static int value_start(jsonc *j, int c) {
    if (j->depth == 0 && (j->flags & F_OBJECT)) return c == '{' ? push(j, 1) : -1;
    switch (c) {
    case '{':
        return push(j, 1);
    case '[':
        return push(j, 0);
    case '"':
        j->flags &= (uint8_t) ~(F_KEY | F_LOW);
        j->state = JS_STR;
        return 0;
    case '-':
        j->state = JS_NMINUS;
        return 0;
    case '0':
        j->state = JS_NZERO;
        return 0;
    case 't':
    case 'f':
    case 'n':
        j->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
        j->sub = 1;
        j->state = JS_LIT;
        return 0;
    default:
        if (c >= '1' && c <= '9') {
            j->state = JS_NINT;
            return 0;
        }
        return -1;
    }
}

/* A byte inside a string, after the opening quote. */
static int string_byte(jsonc *j, int c) {
    if (c == '"') {
        if (j->flags & F_KEY)
            j->state = JS_COLON;
        else
            value_done(j);
        return 0;
    }
    if (c == '\\') {
        j->state = JS_ESC;
        return 0;
    }
    if (c < 0x20) return -1;
    if (c < 0x80) return 0;
    /* lead byte: how many continuation bytes, and the range of the first one, which is where
     * overlongs, surrogates and code points above U+10FFFF are ruled out */
    j->lo = 0x80;
    j->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        j->sub = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        j->sub = 2;
        if (c == 0xE0) j->lo = 0xA0;
        if (c == 0xED) j->hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        j->sub = 3;
        if (c == 0xF0) j->lo = 0x90;
        if (c == 0xF4) j->hi = 0x8F;
    } else
        return -1;
    j->state = JS_UTF8;
    return 0;
}

static int hex_digit(jsonc *j, int c) {
    int d = hexval(c);
    if (d < 0) return -1;
    int n = ++j->sub;
    j->hex = (uint16_t)(j->hex * 16 + d);
    if (j->flags & F_LOW) {
        /* only DC00..DFFF completes the pair */
        if ((n == 1 && d != 0xD) || (n == 2 && d < 0xC)) return -1;
    } else if (n == 2 && j->hex >= 0xDC && j->hex <= 0xDF) {
        return -1; /* a low surrogate with no high one before it */
    }
    if (n < 4) return 0;
    if (j->flags & F_LOW) {
        j->flags &= (uint8_t)~F_LOW;
        j->state = JS_STR;
    } else if (j->hex >= 0xD800 && j->hex <= 0xDBFF) {
        j->flags |= F_LOW;
        j->state = JS_LOWBS;
    } else {
        j->state = JS_STR;
    }
    return 0;
}

/* Whitespace outside strings, where the grammar allows it. */
static int whitespace(jsonc *j) {
    if (j->ws_max && ++j->ws_run > j->ws_max) return -1;
    return 0;
}

static int feed_byte(jsonc *j, int c) {
    for (;;) {
        switch (j->state) {
        case JS_VALUE:
        case JS_ARR0:
        case JS_OBJ0:
        case JS_KEY:
        case JS_COLON:
        case JS_AFTER:
        case JS_DONE:
            if (is_ws(c)) return whitespace(j);
            j->ws_run = 0;
            break;
        default:
            break;
        }
        switch (j->state) {
        case JS_VALUE:
            return value_start(j, c);
        case JS_ARR0:
            return c == ']' ? pop(j) : value_start(j, c);
        case JS_OBJ0:
            if (c == '}') return pop(j);
            /* fall through */
        case JS_KEY:
            if (c != '"') return -1;
            j->flags = (uint8_t)((j->flags & ~F_LOW) | F_KEY);
            j->state = JS_STR;
            return 0;
        case JS_COLON:
            if (c != ':') return -1;
            j->state = JS_VALUE;
            return 0;
        case JS_AFTER:
            if (c == ',') {
                j->state = top_is_object(j) ? JS_KEY : JS_VALUE;
                return 0;
            }
            if (c == (top_is_object(j) ? '}' : ']')) return pop(j);
            return -1;
        case JS_DONE:
            return -1;
        case JS_STR:
            return string_byte(j, c);
        case JS_ESC:
            if (c == 'u') {
                j->state = JS_HEX;
                j->sub = 0;
                j->hex = 0;
                return 0;
            }
            if (!strchr("\"\\/bfnrt", c) || c == 0) return -1;
            j->state = JS_STR;
            return 0;
        case JS_HEX:
            return hex_digit(j, c);
        case JS_LOWBS:
            if (c != '\\') return -1;
            j->state = JS_LOWU;
            return 0;
        case JS_LOWU:
            if (c != 'u') return -1;
            j->state = JS_HEX;
            j->sub = 0;
            j->hex = 0;
            return 0;
        case JS_UTF8:
            if (c < j->lo || c > j->hi) return -1;
            j->lo = 0x80;
            j->hi = 0xBF;
            if (--j->sub == 0) j->state = JS_STR;
            return 0;
        case JS_LIT:
            if (c != lits[j->lit][j->sub]) return -1;
            if (++j->sub == lit_len[j->lit]) value_done(j);
            return 0;
        case JS_NMINUS:
            if (c == '0')
                j->state = JS_NZERO;
            else if (c >= '1' && c <= '9')
                j->state = JS_NINT;
            else
                return -1;
            return 0;
        case JS_NINT:
            if (c >= '0' && c <= '9') return 0;
            /* fall through */
        case JS_NZERO:
            if (c == '.') {
                j->state = JS_NDOT;
                return 0;
            }
            /* fall through */
        case JS_NFRAC:
            if (j->state == JS_NFRAC && c >= '0' && c <= '9') return 0;
            if (c == 'e' || c == 'E') {
                j->state = JS_NE;
                return 0;
            }
            value_done(j); /* the number ended before this byte: look at it again */
            continue;
        case JS_NDOT:
            if (c < '0' || c > '9') return -1;
            j->state = JS_NFRAC;
            return 0;
        case JS_NE:
            if (c == '+' || c == '-') {
                j->state = JS_NESIGN;
                return 0;
            }
            /* fall through */
        case JS_NESIGN:
            if (c < '0' || c > '9') return -1;
            j->state = JS_NEXP;
            return 0;
        case JS_NEXP:
            if (c >= '0' && c <= '9') return 0;
            value_done(j);
            continue;
        default:
            return -1;
        }
    }
}

int jsonc_feed(jsonc *j, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (feed_byte(j, (uint8_t)p[i])) return -1;
    return 0;
}

int jsonc_done(const jsonc *j) {
    return j->state == JS_DONE;
}

int jsonc_complete(const jsonc *j) {
    if (j->state == JS_DONE) return 1;
    if (j->depth != 0) return 0;
    return j->state == JS_NZERO || j->state == JS_NINT || j->state == JS_NFRAC ||
           j->state == JS_NEXP;
}

/* ---- tokens ---- */

/* The state after token id, in *next; 0 if the token may come, -1 if not. */
static int token_step(const jsonc *j, const tok *t, int32_t id, jsonc *next) {
    *next = *j;
    if (tok_is_eog(t, id)) return jsonc_complete(j) ? 0 : -1;
    if (jsonc_done(j)) return -1;
    char buf[JSONC_PIECE_MAX];
    int64_t n = tok_piece(t, id, 0, buf, sizeof buf);
    if (n <= 0 || n > (int64_t)sizeof buf) return -1;
    return jsonc_feed(next, buf, (size_t)n);
}

int jsonc_accept_token(const jsonc *j, const tok *t, int32_t id) {
    jsonc next;
    return token_step(j, t, id, &next) == 0;
}

int jsonc_advance(jsonc *j, const tok *t, int32_t id) {
    jsonc next;
    if (token_step(j, t, id, &next))
        return sh_error_set(SH_EINVAL, "json constraint: token %d not allowed here", (int)id);
    *j = next;
    return SH_OK;
}

int jsonc_accept_cb(void *user, int32_t id) {
    const jsonc_acceptor *a = user;
    return jsonc_accept_token(a->j, a->t, id);
}
