/* sse.h - Server-Sent Events: an incremental, bounded reader and small writer helpers.
 *
 * The reader follows the WHATWG event-stream rules: lines end in "\n", "\r\n" or "\r" (also when
 * the two bytes of "\r\n" arrive in different feeds); lines starting with ':' are comments;
 * "field: value" drops one space after the colon; several data lines join with "\n"; a blank line
 * dispatches the event (none if it had no data line). Unknown fields ("id", "retry", ...) are
 * ignored. */
#ifndef SH_SSE_H
#define SH_SSE_H

#include "proto/conv.h"

#include <stddef.h>

#define SSE_MAX_LINE (4u << 20)  /* default bound of one line */
#define SSE_MAX_EVENT (8u << 20) /* default bound of one event's data */

/* One event. event is the "event:" name or "" ("message" by default in browsers); data is
 * NUL-terminated, len excludes the NUL. All borrowed for the call. Non-zero stops the reader
 * (sse_reader_feed returns that value). */
typedef int (*sse_event_fn)(void *user, const char *event, const char *data, size_t len);

typedef struct {
    conv_buf line;  /* the current, incomplete line */
    conv_buf data;  /* data of the event being read */
    char event[64]; /* its name (longer names are truncated) */
    int has_data;
    int after_cr;   /* the last byte was '\r': a following '\n' is part of that line end */
    sse_event_fn fn;
    void *user;
} sse_reader;

/* max_line / max_event: 0 for the defaults above. */
void sse_reader_init(sse_reader *r, size_t max_line, size_t max_event, sse_event_fn fn, void *user);
void sse_reader_free(sse_reader *r);
/* Feeds bytes in any split. Returns 0, the callback's non-zero value, or SH_EFULL (with an
 * sh_error detail) when a line or event exceeds its bound. */
int sse_reader_feed(sse_reader *r, const char *p, size_t n);
/* End of stream: a last event with data but no blank line is still dispatched (servers that
 * close without the final blank line are common). */
int sse_reader_finish(sse_reader *r);

/* ---- writer: append one frame to b ---- */
/* "event: NAME\n" (if name is non-NULL) then one "data: " line per line of data, then "\n". */
int sse_write(conv_buf *b, const char *event, const char *data, size_t len);
/* ": text\n\n" - a comment, e.g. a keep-alive. */
int sse_write_comment(conv_buf *b, const char *text);

#endif
