/* sse.c - incremental Server-Sent Events reader and writer helpers. */
#include "proto/sse.h"

#include "base/status.h"

#include <string.h>

void sse_reader_init(sse_reader *r, size_t max_line, size_t max_event, sse_event_fn fn, void *user) {
    memset(r, 0, sizeof *r);
    conv_buf_init(&r->line, max_line ? max_line : SSE_MAX_LINE);
    conv_buf_init(&r->data, max_event ? max_event : SSE_MAX_EVENT);
    r->fn = fn;
    r->user = user;
}

void sse_reader_free(sse_reader *r) {
    conv_buf_free(&r->line);
    conv_buf_free(&r->data);
}

static int dispatch(sse_reader *r) {
    int rc = 0;
    if (r->has_data) rc = r->fn(r->user, r->event, r->data.p ? r->data.p : "", r->data.len);
    r->data.len = 0;
    if (r->data.p) r->data.p[0] = 0;
    r->has_data = 0;
    r->event[0] = 0;
    return rc;
}

static int process_line(sse_reader *r, const char *s, size_t n) {
    if (n == 0) return dispatch(r);
    if (s[0] == ':') return 0;
    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen && *v == ' ') v++, vlen--;
    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        int rc;
        if (r->has_data && (rc = conv_buf_append(&r->data, "\n", 1))) goto full;
        if ((rc = conv_buf_append(&r->data, v, vlen))) goto full;
        r->has_data = 1;
        return 0;
    full:
        return sh_error_set(SH_EFULL, "sse: event data over %zu bytes", r->data.max);
    }
    if (flen == 5 && memcmp(s, "event", 5) == 0) {
        size_t l = vlen < sizeof r->event - 1 ? vlen : sizeof r->event - 1;
        memcpy(r->event, v, l);
        r->event[l] = 0;
    }
    return 0;
}

int sse_reader_feed(sse_reader *r, const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (r->after_cr) {
            r->after_cr = 0;
            if (p[i] == '\n') {
                i++;
                continue;
            }
        }
        /* find the end of this line within the chunk */
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r') j++;
        int rc;
        if (j == n) { /* incomplete: keep it */
            if (conv_buf_append(&r->line, p + i, n - i))
                return sh_error_set(SH_EFULL, "sse: line over %zu bytes", r->line.max);
            return 0;
        }
        if (r->line.len) {
            if (conv_buf_append(&r->line, p + i, j - i))
                return sh_error_set(SH_EFULL, "sse: line over %zu bytes", r->line.max);
            rc = process_line(r, r->line.p, r->line.len);
            r->line.len = 0;
        } else {
            if (j - i > r->line.max) return sh_error_set(SH_EFULL, "sse: line over %zu bytes", r->line.max);
            rc = process_line(r, p + i, j - i);
        }
        if (p[j] == '\r') r->after_cr = 1;
        i = j + 1;
        if (rc) return rc;
    }
    return 0;
}

int sse_reader_finish(sse_reader *r) {
    int rc = 0;
    if (r->line.len) {
        rc = process_line(r, r->line.p, r->line.len);
        r->line.len = 0;
    }
    if (!rc) rc = dispatch(r);
    return rc;
}

int sse_write(conv_buf *b, const char *event, const char *data, size_t len) {
    int rc = 0;
    if (event && ((rc = conv_buf_puts(b, "event: ")) || (rc = conv_buf_puts(b, event)) ||
                  (rc = conv_buf_append(b, "\n", 1))))
        return rc;
    size_t i = 0;
    for (;;) { /* one data line per line of data, so a payload with newlines survives */
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r') j++;
        if ((rc = conv_buf_append(b, "data: ", 6)) || (rc = conv_buf_append(b, data + i, j - i)) ||
            (rc = conv_buf_append(b, "\n", 1)))
            return rc;
        if (j >= len) break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n') j++;
        i = j + 1;
    }
    return conv_buf_append(b, "\n", 1);
}

int sse_write_comment(conv_buf *b, const char *text) {
    int rc;
    if ((rc = conv_buf_append(b, ": ", 2)) || (rc = conv_buf_puts(b, text))) return rc;
    return conv_buf_append(b, "\n\n", 2);
}
