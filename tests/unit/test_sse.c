/* test_sse.c - the incremental SSE reader (line ends, comments, multi-line data, bounds, any
 * byte split) and the writer helpers. */
#include "testutil.h"

#include "base/status.h"
#include "proto/sse.h"

/* Renders each event as "[name]data|" */
static int collect(void *user, const char *event, const char *data, size_t len) {
    conv_buf *b = user;
    conv_buf_printf(b, "[%s]", event);
    conv_buf_append(b, data, len);
    conv_buf_puts(b, "|");
    assert_int_equal(data[len], 0);
    return 0;
}

static void read_all(const char *s, size_t n, size_t split, conv_buf *out) {
    sse_reader r;
    sse_reader_init(&r, 0, 0, collect, out);
    assert_int_equal(sse_reader_feed(&r, s, split), 0);
    assert_int_equal(sse_reader_feed(&r, s + split, n - split), 0);
    assert_int_equal(sse_reader_finish(&r), 0);
    sse_reader_free(&r);
}

static void test_reader_every_split(void **state) {
    (void)state;
    const char *s = ": keep-alive\r\n"
                    "event: message_start\r\n"
                    "data: {\"a\":1}\r\n\r\n"
                    "data:no-space\n"
                    "data:  two spaces\n\n"
                    "event: x\n"
                    "id: 7\n"
                    "retry: 100\n"
                    "data\n\n"     /* a field without a colon: empty data */
                    "event: empty\n\n" /* no data: not dispatched */
                    "data: cr only\r\r"
                    "data: [DONE]\n\n";
    const char *want = "[message_start]{\"a\":1}|[]no-space\n two spaces|[x]|[]cr only|[][DONE]|";
    size_t n = strlen(s);
    for (size_t k = 0; k <= n; k++) {
        conv_buf out;
        conv_buf_init(&out, 4096);
        read_all(s, n, k, &out);
        assert_string_equal(out.p, want);
        conv_buf_free(&out);
    }
    /* byte by byte */
    conv_buf out;
    conv_buf_init(&out, 4096);
    sse_reader r;
    sse_reader_init(&r, 0, 0, collect, &out);
    for (size_t i = 0; i < n; i++) assert_int_equal(sse_reader_feed(&r, s + i, 1), 0);
    assert_int_equal(sse_reader_finish(&r), 0);
    assert_string_equal(out.p, want);
    sse_reader_free(&r);
    conv_buf_free(&out);
}

static void test_reader_eof_without_blank_line(void **state) {
    (void)state;
    conv_buf out;
    conv_buf_init(&out, 4096);
    read_all("data: last", 10, 4, &out);
    assert_string_equal(out.p, "[]last|");
    conv_buf_free(&out);
}

static int stop_cb(void *user, const char *event, const char *data, size_t len) {
    (void)event, (void)data, (void)len;
    ++*(int *)user;
    return 42;
}

static void test_reader_bounds_and_stop(void **state) {
    (void)state;
    sse_reader r;
    int calls = 0;
    sse_reader_init(&r, 16, 32, stop_cb, &calls);
    assert_int_equal(sse_reader_feed(&r, "data: 0123456789abcdef", 22), SH_EFULL); /* line > 16, unterminated */
    sse_reader_free(&r);

    sse_reader_init(&r, 16, 32, stop_cb, &calls);
    assert_int_equal(sse_reader_feed(&r, "data: 0123456789abcdefghij\n", 27), SH_EFULL); /* whole line > 16 */
    sse_reader_free(&r);

    sse_reader_init(&r, 64, 16, stop_cb, &calls);
    assert_int_equal(sse_reader_feed(&r, "data: 0123456789\ndata: 0123456789\n", 34), SH_EFULL); /* event > 16 */
    assert_non_null(strstr(sh_error_last(), "event data"));
    sse_reader_free(&r);

    /* the callback's non-zero value stops the reader */
    sse_reader_init(&r, 0, 0, stop_cb, &calls);
    assert_int_equal(sse_reader_feed(&r, "data: a\n\ndata: b\n\n", 18), 42);
    assert_int_equal(calls, 1);
    sse_reader_free(&r);
}

static void test_writer(void **state) {
    (void)state;
    conv_buf b;
    conv_buf_init(&b, 4096);
    assert_int_equal(sse_write(&b, "ping", "{\"type\":\"ping\"}", 15), 0);
    assert_int_equal(sse_write(&b, NULL, "two\nlines", 9), 0);
    assert_int_equal(sse_write(&b, NULL, "", 0), 0);
    assert_int_equal(sse_write(&b, NULL, "end\n", 4), 0);
    assert_int_equal(sse_write_comment(&b, "hi"), 0);
    assert_string_equal(b.p, "event: ping\ndata: {\"type\":\"ping\"}\n\n"
                             "data: two\ndata: lines\n\n"
                             "data: \n\n"
                             "data: end\ndata: \n\n"
                             ": hi\n\n");
    /* and the reader gets the payloads back */
    conv_buf out;
    conv_buf_init(&out, 4096);
    read_all(b.p, b.len, 7, &out);
    assert_string_equal(out.p, "[ping]{\"type\":\"ping\"}|[]two\nlines|[]|[]end\n|");
    conv_buf_free(&out);
    conv_buf_free(&b);
}

/* The JSON string writer: escapes, and invalid UTF-8 becomes U+FFFD; split characters held back. */
static void test_json_str_and_utf8(void **state) {
    (void)state;
    conv_buf b;
    conv_buf_init(&b, 4096);
    const char s[] = "a\"\\\n\t\x01 \xc3\xa9 \xff \xe2\x82\xac \xed\xa0\x80";
    assert_int_equal(conv_buf_json_str(&b, s, sizeof s - 1), 0);
    assert_string_equal(b.p, "\"a\\\"\\\\\\n\\t\\u0001 \xc3\xa9 \xef\xbf\xbd \xe2\x82\xac \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    b.len = 0;
    assert_int_equal(conv_buf_json_double(&b, 0.1), 0);
    assert_string_equal(b.p, "0.1");
    assert_int_equal(conv_utf8_whole("ab\xe2\x82", 4), 2);
    assert_int_equal(conv_utf8_whole("ab\xe2\x82\xac", 5), 5);
    assert_int_equal(conv_utf8_whole("\xf0\x9f\x98", 3), 0);
    assert_int_equal(conv_utf8_whole("abc", 3), 3);
    conv_buf_free(&b);
    /* bounded */
    conv_buf_init(&b, 8);
    assert_int_equal(conv_buf_puts(&b, "12345678"), 0);
    assert_int_equal(conv_buf_puts(&b, "9"), SH_EFULL);
    conv_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_every_split), cmocka_unit_test(test_reader_eof_without_blank_line),
        cmocka_unit_test(test_reader_bounds_and_stop), cmocka_unit_test(test_writer),
        cmocka_unit_test(test_json_str_and_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
