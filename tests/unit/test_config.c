/* test_config.c - config.toml parsing and mapping, and SHAMMAH_HOME paths.
 *
 * Nothing here touches the real home: the group setup points SHAMMAH_HOME (and HOME, for the
 * fallback test) at a fresh mkdtemp directory, removed at teardown. */
#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "base/paths.h"
#include "base/status.h"

static char tmp_root[1024]; /* short enough that derived paths fit PATH_MAX */

static int parse(sh_config *c, const char *text) {
    return config_parse(c, text, strlen(text), "config.toml");
}

/* The config left after a failure must be the defaults, owning nothing. */
static void assert_defaults(const sh_config *c) {
    assert_string_equal(c->server.bind, "127.0.0.1:11434");
    assert_string_equal(c->server.bind_host, "127.0.0.1");
    assert_int_equal(c->server.bind_port, 11434);
    assert_int_equal(c->server.max_sessions, 100);
    assert_int_equal(c->server.session_idle_minutes, 60);
    assert_int_equal(c->server.max_body_bytes, 4 << 20);
    assert_int_equal(c->server.n_api_keys, 0);
    assert_string_equal(c->server.api_keys_file, "");
    assert_int_equal(c->server.n_cors_origins, 0);
    assert_int_equal(c->server.max_messages, 10000);
    assert_true(c->backend.enabled);
    assert_string_equal(c->backend.model, "");
    assert_int_equal(c->backend.threads, 0);
    assert_int_equal(c->backend.ctx, 32768);
    assert_string_equal(c->backend.kv_type, "f16");
    assert_int_equal(c->backend.parallel, 4);
    assert_int_equal(c->backend.prefix_cache_slots, 8);
    assert_true(c->client.use_daemon);
    assert_string_equal(c->client.daemon_address, "");
    assert_true(c->client.auto_spawn);
    assert_int_equal(c->client.timeout_seconds, 120);
    assert_int_equal(c->n_teachers, 0);
    assert_false(c->training.enabled);
    assert_true(c->training.distill);
    assert_int_equal(c->training.lora_rank, 16);
    assert_true(fabs(c->training.learning_rate - 1e-3) < 1e-12);
    assert_true(c->training.alpha == 32 && c->training.epochs == 4 && c->training.max_seq_len == 512);
    assert_string_equal(c->training.targets, "attn_q,attn_k,attn_v,attn_output");
    assert_int_equal(c->training.interval_minutes, 5);
    assert_int_equal(c->training.batch_size, 4);
    assert_int_equal(c->training.min_examples, 10);
    assert_int_equal(c->n_warnings, 0);
    assert_null(c->owned_);
}

static void test_defaults(void **st) {
    (void)st;
    sh_config c;
    config_defaults(&c);
    assert_defaults(&c);
    assert_string_equal(config_daemon_address(&c), "127.0.0.1:11434");
    config_free(&c);
    assert_defaults(&c);
    config_free(NULL);

    /* empty and comment-only files are the defaults too */
    assert_int_equal(parse(&c, ""), SH_OK);
    assert_defaults(&c);
    assert_int_equal(parse(&c, "# nothing\n\n   \t\n# more\r\n"), SH_OK);
    assert_defaults(&c);
    config_free(&c);
}

static const char full_file[] = "# shammah configuration\n"
                                "[server]\n"
                                "bind = \"0.0.0.0:8080\"   # all interfaces\n"
                                "max_sessions = 250\n"
                                "session_idle_minutes = 15\n"
                                "max_body_bytes = 8_388_608\n"
                                "api_keys = [\"k1\", 'k2']\n"
                                "\n"
                                "[backend]\n"
                                "enabled = false\n"
                                "model = '/models/qwen2.5-0.5b-q8_0.gguf'\n"
                                "threads = 6\n"
                                "ctx = 8192\n"
                                "kv_type = \"f32\"\n"
                                "parallel = 2\n"
                                "prefix_cache_slots = 16\n"
                                "\n"
                                "[client]\n"
                                "use_daemon = false\n"
                                "daemon_address = \"[::1]:9000\"\n"
                                "auto_spawn = false\n"
                                "timeout_seconds = 30\n"
                                "\n"
                                "[[teachers]]\n"
                                "name = \"claude\"\n"
                                "provider = \"anthropic\"\n"
                                "base_url = \"https://api.anthropic.com\"\n"
                                "api_key = \"sk-ant-xyz\"\n"
                                "api_key_env = \"ANTHROPIC_API_KEY\"\n"
                                "model = \"claude-sonnet-4\"\n"
                                "timeout_seconds = 90\n"
                                "max_retries = 5\n"
                                "\n"
                                "[training]\n"
                                "enabled = true\n"
                                "distill = false\n"
                                "lora_rank = 16\n"
                                "alpha = 8\n"
                                "targets = \"attn_q,ffn_down\"\n"
                                "dropout = 0.1\n"
                                "learning_rate = 2.5e-5\n"
                                "epochs = 7\n"
                                "batch_size = 8\n"
                                "max_seq_len = 256\n"
                                "batch_threshold = 100\n"
                                "interval_minutes = 30\n";

static void test_full_file(void **st) {
    (void)st;
    sh_config c;
    int rc = parse(&c, full_file);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_string_equal(c.server.bind, "0.0.0.0:8080");
    assert_string_equal(c.server.bind_host, "0.0.0.0");
    assert_int_equal(c.server.bind_port, 8080);
    assert_int_equal(c.server.max_sessions, 250);
    assert_int_equal(c.server.session_idle_minutes, 15);
    assert_int_equal(c.server.max_body_bytes, 8388608);
    assert_int_equal(c.server.n_api_keys, 2);
    assert_string_equal(c.server.api_keys[0], "k1");
    assert_string_equal(c.server.api_keys[1], "k2");
    assert_false(c.backend.enabled);
    assert_string_equal(c.backend.model, "/models/qwen2.5-0.5b-q8_0.gguf");
    assert_int_equal(c.backend.threads, 6);
    assert_int_equal(c.backend.ctx, 8192);
    assert_string_equal(c.backend.kv_type, "f32");
    assert_int_equal(c.backend.parallel, 2);
    assert_int_equal(c.backend.prefix_cache_slots, 16);
    assert_false(c.client.use_daemon);
    assert_string_equal(c.client.daemon_address, "[::1]:9000");
    assert_string_equal(config_daemon_address(&c), "[::1]:9000");
    assert_false(c.client.auto_spawn);
    assert_int_equal(c.client.timeout_seconds, 30);
    assert_int_equal(c.n_teachers, 1);
    const sh_config_teacher *t = &c.teachers[0];
    assert_string_equal(t->name, "claude");
    assert_string_equal(t->provider, "anthropic");
    assert_string_equal(t->base_url, "https://api.anthropic.com");
    assert_string_equal(t->api_key, "sk-ant-xyz");
    assert_string_equal(t->api_key_env, "ANTHROPIC_API_KEY");
    assert_string_equal(t->model, "claude-sonnet-4");
    assert_int_equal(t->timeout_seconds, 90);
    assert_int_equal(t->max_retries, 5);
    assert_int_equal(t->line, 24);
    assert_true(c.training.enabled);
    assert_false(c.training.distill);
    assert_int_equal(c.training.lora_rank, 16);
    assert_true(fabs(c.training.learning_rate - 2.5e-5) < 1e-15);
    assert_true(c.training.alpha == 8 && c.training.epochs == 7 && c.training.max_seq_len == 256);
    assert_true(fabs(c.training.dropout - 0.1) < 1e-12);
    assert_string_equal(c.training.targets, "attn_q,ffn_down");
    assert_int_equal(c.training.interval_minutes, 30);
    assert_int_equal(c.training.batch_size, 8);
    assert_int_equal(c.training.min_examples, 100);
    assert_int_equal(config_warning_count(&c), 0);
    config_free(&c);
    assert_defaults(&c);
}

static void test_syntax_variants(void **st) {
    (void)st;
    sh_config c;
    /* dotted keys at the top level, quoted keys, blanks around dots, CRLF, BOM, numbers */
    const char *text = "\xef\xbb\xbfserver.max_sessions = +7\r\n"
                       "server.max_body_bytes = 1_0_2_4\r\n"
                       "training . learning_rate = 1\r\n"
                       "[\"backend\"]\r\n"
                       "'threads' = 0x10\r\n"
                       "ctx = 0o100\r\n"
                       "parallel = 0b11\r\n"
                       "[ client ]\n"
                       "\"timeout_seconds\"=1_000 # no spaces needed\n";
    int rc = parse(&c, text);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_int_equal(c.server.max_sessions, 7);
    assert_true(c.training.learning_rate == 1.0);
    assert_int_equal(c.backend.threads, 16);
    assert_int_equal(c.backend.ctx, 64);
    assert_int_equal(c.backend.parallel, 3);
    assert_int_equal(c.client.timeout_seconds, 1000);
    assert_int_equal(c.server.max_body_bytes, 1024);
    config_free(&c);

    /* unknown keys still get full value parsing: floats, bools, empty arrays, extremes */
    text = "[x]\n"
           "a = 3.14\nb = -1e3\nc = 6.02E+23\nd = inf\ne = -inf\nf = nan\ng = 1_000.000_1\n"
           "h = true\ni = []\nj = -9223372036854775808\nk = 9223372036854775807\n"
           "l = 0\nm = -0\nn = 0.0\no = 1e06\n";
    rc = parse(&c, text);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_int_equal(config_warning_count(&c), 1);
    config_free(&c);

    /* valid define-once cases: a parent header after its child, sub-tables per array element,
     * dotted keys extending a dotted table, the same key in different tables */
    text = "[x.y]\n[x]\nz = 1\n"
           "[[a]]\n[a.b]\nk = 1\n[[a]]\n[a.b]\nk = 2\n"
           "[q]\nr.s = 1\nr.t = 2\n"
           "[server]\nmax_sessions = 1\n[backend]\nparallel = 1\n";
    rc = parse(&c, text);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_int_equal(c.server.max_sessions, 1);
    config_free(&c);
}

static void test_escapes_unicode(void **st) {
    (void)st;
    sh_config c;
    const char *text = "[backend]\n"
                       "model = \"a\\\"b\\\\c\\nd\\te\\u00e9\\U0001F600\\b\\f\\r|\"\n"
                       "[[teachers]]\n"
                       "provider = 'openai'\n"
                       "model = 'C:\\path\\no\\escapes \"here\"'\n"
                       "name = \"caf\xc3\xa9 \\u4e2d\"\n";
    int rc = parse(&c, text);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_string_equal(c.backend.model, "a\"b\\c\nd\te\xc3\xa9\xf0\x9f\x98\x80\b\f\r|");
    assert_string_equal(c.teachers[0].model, "C:\\path\\no\\escapes \"here\"");
    assert_string_equal(c.teachers[0].name, "caf\xc3\xa9 \xe4\xb8\xad");
    config_free(&c);
}

static void test_multiline_arrays(void **st) {
    (void)st;
    sh_config c;
    const char *text = "[server]\n"
                       "api_keys = [\n"
                       "  \"alpha\",   # first\n"
                       "\n"
                       "  'beta' ,\n"
                       "  # a comment line\n"
                       "  \"gamma\",\n"
                       "]\n"
                       "max_sessions = 3\n"
                       "[unknown]\n"
                       "ints = [ 1, 2,\n 3 ]\n"
                       "empty = [\n]\n";
    int rc = parse(&c, text);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_int_equal(c.server.n_api_keys, 3);
    assert_string_equal(c.server.api_keys[0], "alpha");
    assert_string_equal(c.server.api_keys[1], "beta");
    assert_string_equal(c.server.api_keys[2], "gamma");
    assert_int_equal(c.server.max_sessions, 3);
    assert_int_equal(config_warning_count(&c), 1);
    assert_string_equal(config_warning(&c, 0), "config.toml:10: unknown table [unknown]");
    config_free(&c);

    assert_int_equal(parse(&c, "[server]\napi_keys = []\n"), SH_OK);
    assert_int_equal(c.server.n_api_keys, 0);
    config_free(&c);
}

static void test_teachers(void **st) {
    (void)st;
    sh_config c;
    const char *text = "[[teachers]]\n"
                       "provider = \"anthropic\"\n"
                       "model = \"claude-a\"\n"
                       "\n"
                       "[[teachers]]\n"
                       "name = \"backup\"\n"
                       "provider = \"openai\"\n"
                       "model = \"gpt-x\"\n"
                       "api_key_env = \"OPENAI_API_KEY\"\n"
                       "max_retries = 0\n"
                       "[teachers.extra]\n"
                       "z = 1\n"
                       "[[teachers]]\n"
                       "provider = \"anthropic\"\n"
                       "model = \"claude-b\"\n"
                       "timeout_seconds = 5\n";
    int rc = parse(&c, text);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_int_equal(c.n_teachers, 3);
    assert_string_equal(c.teachers[0].name, "claude-a"); /* defaults to the model */
    assert_string_equal(c.teachers[0].provider, "anthropic");
    assert_string_equal(c.teachers[0].base_url, "");
    assert_int_equal(c.teachers[0].timeout_seconds, 60);
    assert_int_equal(c.teachers[0].max_retries, 2);
    assert_int_equal(c.teachers[0].line, 1);
    assert_string_equal(c.teachers[1].name, "backup");
    assert_string_equal(c.teachers[1].provider, "openai");
    assert_string_equal(c.teachers[1].api_key_env, "OPENAI_API_KEY");
    assert_int_equal(c.teachers[1].max_retries, 0);
    assert_int_equal(c.teachers[1].line, 5);
    assert_string_equal(c.teachers[2].model, "claude-b");
    assert_int_equal(c.teachers[2].timeout_seconds, 5);
    assert_int_equal(c.teachers[2].line, 13);
    assert_int_equal(config_warning_count(&c), 1);
    assert_string_equal(config_warning(&c, 0), "config.toml:11: unknown table [teachers.extra]");
    config_free(&c);

    /* the 17th entry is refused */
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i <= CONFIG_MAX_TEACHERS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n,
                              "[[teachers]]\nprovider = \"openai\"\nmodel = \"m%d\"\n", i);
    assert_int_equal(parse(&c, buf), SH_ERANGE);
    assert_string_equal(sh_error_last(), "config.toml:49: more than 16 [[teachers]]");
    assert_defaults(&c);
    /* exactly 16 is fine */
    char *last = strstr(buf, "[[teachers]]\nprovider = \"openai\"\nmodel = \"m16\"");
    assert_non_null(last);
    *last = 0;
    assert_int_equal(parse(&c, buf), SH_OK);
    assert_int_equal(c.n_teachers, 16);
    assert_string_equal(c.teachers[15].name, "m15");
    config_free(&c);
}

static void test_warnings(void **st) {
    (void)st;
    sh_config c;
    const char *text = "# top\n"
                       "foo = 1\n"
                       "[server]\n"
                       "bind = \"0.0.0.0:8080\"\n"
                       "bogus = true\n"
                       "tls.cert = \"x\"\n"
                       "[extra]\n"
                       "a = 1\n"
                       "[server.sub]\n"
                       "b = 2\n"
                       "[[plugins]]\n"
                       "c = 3\n"
                       "[[plugins]]\n";
    int rc = parse(&c, text);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_string_equal(c.server.bind, "0.0.0.0:8080");
    static const char *const want[] = {
        "config.toml:2: unknown key 'foo' at top level",
        "config.toml:5: unknown key 'bogus' in [server]",
        "config.toml:6: unknown key 'tls.cert' in [server]",
        "config.toml:7: unknown table [extra]",
        "config.toml:9: unknown table [server.sub]",
        "config.toml:11: unknown table [[plugins]]",
        "config.toml:13: unknown table [[plugins]]",
    };
    int nw = (int)(sizeof want / sizeof want[0]);
    assert_int_equal(config_warning_count(&c), nw);
    for (int i = 0; i < nw; i++) assert_string_equal(config_warning(&c, i), want[i]);
    assert_null(config_warning(&c, nw));
    assert_null(config_warning(&c, -1));
    assert_int_equal(c.n_warnings_dropped, 0);
    config_free(&c);

    /* the list is bounded; the rest are counted */
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < 40; i++) n += (size_t)snprintf(buf + n, sizeof buf - n, "k%d = %d\n", i, i);
    assert_int_equal(parse(&c, buf), SH_OK);
    assert_int_equal(config_warning_count(&c), CONFIG_MAX_WARNINGS);
    assert_int_equal(c.n_warnings_dropped, 40 - CONFIG_MAX_WARNINGS);
    assert_string_equal(config_warning(&c, 31), "config.toml:32: unknown key 'k31' at top level");
    config_free(&c);
}

typedef struct {
    const char *text;
    int status;
    const char *msg;
} err_case;

static const err_case err_cases[] = {
    /* syntax */
    {"[server]\nmax_sessions 5\n", SH_EFORMAT, "config.toml:2: expected '=' after key"},
    {"\n= 1\n", SH_EFORMAT, "config.toml:2: expected a key"},
    {"a = \n", SH_EFORMAT, "config.toml:1: expected a value after '='"},
    {"a = # c\n", SH_EFORMAT, "config.toml:1: expected a value after '='"},
    {"a = \"abc\nb = 1\n", SH_EFORMAT, "config.toml:1: unterminated string"},
    {"a = 'abc\n", SH_EFORMAT, "config.toml:1: unterminated string"},
    {"a = 1 2\n", SH_EFORMAT, "config.toml:1: expected end of line after value"},
    {"[server] x\n", SH_EFORMAT, "config.toml:1: expected end of line after table header"},
    {"\n\n[server\n", SH_EFORMAT, "config.toml:3: expected ']' after table name"},
    {"[[server]\n", SH_EFORMAT, "config.toml:1: expected ']]' after table name"},
    {"[]\n", SH_EFORMAT, "config.toml:1: expected a key"},
    {"a = tru\n", SH_EFORMAT, "config.toml:1: invalid value 'tru' (strings need quotes)"},
    {"a = {x = 1}\n", SH_EFORMAT, "config.toml:1: inline tables are not supported"},
    {"a = [[1]]\n", SH_EFORMAT, "config.toml:1: nested arrays are not supported"},
    {"a = \"\"\"x\"\"\"\n", SH_EFORMAT, "config.toml:1: multi-line strings are not supported"},
    {"a = '''x'''\n", SH_EFORMAT, "config.toml:1: multi-line strings are not supported"},
    {"a = 1979-05-27\n", SH_EFORMAT, "config.toml:1: dates and times are not supported"},
    {"a = 07:32:00\n", SH_EFORMAT, "config.toml:1: dates and times are not supported"},
    {"a = [1, \"x\"]\n", SH_EFORMAT, "config.toml:1: array elements must all have the same type"},
    {"a = [1 2]\n", SH_EFORMAT, "config.toml:1: expected ',' or ']' in array"},
    {"a = [,]\n", SH_EFORMAT, "config.toml:1: expected a value"},
    {"x = 1\na = [1,\n2\n", SH_EFORMAT, "config.toml:2: unterminated array"},
    {"a = 0123\n", SH_EFORMAT, "config.toml:1: leading zeros are not allowed in '0123'"},
    {"a = 1__0\n", SH_EFORMAT, "config.toml:1: invalid value '1__0'"},
    {"a = 1_\n", SH_EFORMAT, "config.toml:1: invalid value '1_'"},
    {"a = 1.\n", SH_EFORMAT, "config.toml:1: invalid number '1.'"},
    {"a = 1e\n", SH_EFORMAT, "config.toml:1: invalid number '1e'"},
    {"a = .5\n", SH_EFORMAT, "config.toml:1: invalid value '.5' (strings need quotes)"},
    {"a = -0x10\n", SH_EFORMAT, "config.toml:1: a sign is not allowed on '-0x10'"},
    {"a = 0xZZ\n", SH_EFORMAT, "config.toml:1: invalid number '0xZZ'"},
    {"a = 9223372036854775808\n", SH_ERANGE,
     "config.toml:1: integer '9223372036854775808' out of range"},
    {"a = 0x8000000000000000\n", SH_ERANGE,
     "config.toml:1: integer '0x8000000000000000' out of range"},
    {"a = 1e400\n", SH_ERANGE, "config.toml:1: float '1e400' out of range"},
    {"a = \"\\q\"\n", SH_EFORMAT, "config.toml:1: invalid escape '\\q'"},
    {"a = \"\\u12\"\n", SH_EFORMAT, "config.toml:1: \\u needs 4 hex digits"},
    {"a = \"\\uD800\"\n", SH_EFORMAT, "config.toml:1: \\uD800 is not a unicode scalar value"},
    {"a = \"\\U00110000\"\n", SH_EFORMAT,
     "config.toml:1: \\U00110000 is not a unicode scalar value"},
    {"a = \"x\\u0000\"\n", SH_EFORMAT, "config.toml:1: NUL character in string"},
    {"a = \"x\x01\"\n", SH_EFORMAT, "config.toml:1: control character in string"},
    {"\"a\\u0001\" = 1\n", SH_EFORMAT, "config.toml:1: control character in key"},
    {"a = 1\n# bad \x7f comment\n", SH_EFORMAT, "config.toml:2: control character in comment"},
    {"a = 1\nb = \"\xff\"\n", SH_EFORMAT, "config.toml:2: invalid UTF-8"},
    {"a = \"\xed\xa0\x80\"\n", SH_EFORMAT, "config.toml:1: invalid UTF-8"}, /* surrogate */
    {"a = \"\xc0\xaf\"\n", SH_EFORMAT, "config.toml:1: invalid UTF-8"},     /* overlong */
    {"a = 1\rb = 2\n", SH_EFORMAT, "config.toml:1: carriage return without line feed"},
    {"a.b.c.d.e.f.g.h.i = 1\n", SH_ERANGE, "config.toml:1: key has more than 8 parts"},
    /* define-once rules */
    {"[server]\nmax_sessions = 1\nmax_sessions = 2\n", SH_EFORMAT,
     "config.toml:3: duplicate key 'max_sessions'"},
    {"[server]\n[backend]\n[server]\n", SH_EFORMAT, "config.toml:3: table [server] defined twice"},
    {"[a]\nb = 1\n[a.b]\n", SH_EFORMAT, "config.toml:3: 'a.b' is already a value, not a table"},
    {"a = 1\na.b = 2\n", SH_EFORMAT, "config.toml:2: 'a' is already a value, not a table"},
    {"a.b = 1\n[a]\n", SH_EFORMAT, "config.toml:2: table [a] was already defined by dotted keys"},
    {"[a.b]\n[a]\nb.c = 1\n", SH_EFORMAT, "config.toml:3: 'b' is a table defined elsewhere"},
    {"[a]\nb.c = 1\n[a.b.d]\n", SH_EFORMAT,
     "config.toml:3: table [a.b] was already defined by dotted keys"},
    {"a.b = 1\na.b.c = 2\n", SH_EFORMAT, "config.toml:2: 'a.b' is already a value, not a table"},
    {"a.b = 1\na = 2\n", SH_EFORMAT, "config.toml:2: 'a' is already a table"},
    {"[[a]]\n[a]\n", SH_EFORMAT, "config.toml:2: [a] is an array of tables: write [[a]]"},
    {"[a]\n[[a]]\n", SH_EFORMAT, "config.toml:2: [a] is already a table, not an array of tables"},
    /* mapping: table kinds */
    {"[[server]]\n", SH_EFORMAT, "config.toml:1: server is a table: write [server]"},
    {"[teachers]\n", SH_EFORMAT,
     "config.toml:1: teachers is an array of tables: write [[teachers]]"},
    {"teachers.name = \"x\"\n", SH_EFORMAT,
     "config.toml:1: teachers is an array of tables: write [[teachers]]"},
    {"server = 1\n", SH_EFORMAT, "config.toml:1: server must be a table: write [server]"},
    /* mapping: types */
    {"\n\n[server]\nmax_sessions = \"x\"\n", SH_EFORMAT,
     "config.toml:4: [server] max_sessions must be an integer"},
    {"[server]\nbind = 8080\n", SH_EFORMAT, "config.toml:2: [server] bind must be a string"},
    {"[server]\napi_keys = \"k\"\n", SH_EFORMAT,
     "config.toml:2: [server] api_keys must be an array of strings"},
    {"[server]\napi_keys = [1, 2]\n", SH_EFORMAT,
     "config.toml:2: [server] api_keys must be an array of strings"},
    {"[server]\napi_keys = [\n\"a\",\n\"\"\n]\n", SH_EFORMAT,
     "config.toml:2: [server] api_keys entries must not be empty"},
    {"[backend]\nenabled = 1\n", SH_EFORMAT, "config.toml:2: [backend] enabled must be a boolean"},
    {"[backend]\nctx = 1.5\n", SH_EFORMAT, "config.toml:2: [backend] ctx must be an integer"},
    {"[training]\nlearning_rate = \"0.1\"\n", SH_EFORMAT,
     "config.toml:2: [training] learning_rate must be a number"},
    {"[[teachers]]\nmodel = true\n", SH_EFORMAT,
     "config.toml:2: [[teachers]] model must be a string"},
    /* mapping: values and ranges */
    {"[server]\nbind = \"127.0.0.1:70000\"\n", SH_ERANGE,
     "config.toml:2: [server] bind: '127.0.0.1:70000': the port must be 1..65535"},
    {"[server]\nbind = \"127.0.0.1:0\"\n", SH_ERANGE,
     "config.toml:2: [server] bind: '127.0.0.1:0': the port must be 1..65535"},
    {"[server]\nbind = \"localhost\"\n", SH_EFORMAT,
     "config.toml:2: [server] bind: 'localhost' is not HOST:PORT"},
    {"[server]\nbind = \":80\"\n", SH_EFORMAT,
     "config.toml:2: [server] bind: ':80' has an empty host"},
    {"[server]\nbind = \"h:8x\"\n", SH_EFORMAT,
     "config.toml:2: [server] bind: 'h:8x': the port must be a number"},
    {"[server]\nbind = \"::1:80\"\n", SH_EFORMAT,
     "config.toml:2: [server] bind: '::1:80': write an IPv6 host as [ADDR]:PORT"},
    {"[client]\ndaemon_address = \"x\"\n", SH_EFORMAT,
     "config.toml:2: [client] daemon_address: 'x' is not HOST:PORT"},
    {"[server]\nmax_sessions = 0\n", SH_ERANGE,
     "config.toml:2: [server] max_sessions must be 1..1000000 (got 0)"},
    {"[server]\nmax_body_bytes = -1\n", SH_ERANGE,
     "config.toml:2: [server] max_body_bytes must be 1024..1073741824 (got -1)"},
    {"[backend]\nthreads = -1\n", SH_ERANGE,
     "config.toml:2: [backend] threads must be 0..1024 (got -1)"},
    {"[backend]\nparallel = 0\n", SH_ERANGE,
     "config.toml:2: [backend] parallel must be 1..256 (got 0)"},
    {"[backend]\nkv_type = \"q8_0\"\n", SH_EFORMAT,
     "config.toml:2: [backend] kv_type must be \"f16\" or \"f32\""},
    {"[training]\nlearning_rate = 0.0\n", SH_ERANGE,
     "config.toml:2: [training] learning_rate must be > 0 and <= 1 (got 0)"},
    {"[training]\nlearning_rate = nan\n", SH_ERANGE,
     "config.toml:2: [training] learning_rate must be > 0 and <= 1 (got nan)"},
    {"[[teachers]]\nprovider = \"google\"\n", SH_EFORMAT,
     "config.toml:2: [[teachers]] provider must be \"anthropic\" or \"openai\""},
    {"[[teachers]]\nmax_retries = 11\n", SH_ERANGE,
     "config.toml:2: [[teachers]] max_retries must be 0..10 (got 11)"},
    {"a = 1\n[[teachers]]\nmodel = \"m\"\n", SH_EFORMAT,
     "config.toml:2: [[teachers]] needs a provider (\"anthropic\" or \"openai\")"},
    {"[[teachers]]\nprovider = \"openai\"\n", SH_EFORMAT,
     "config.toml:1: [[teachers]] needs a model"},
    {"[[teachers]]\nprovider = \"openai\"\nmodel = \"m\"\n[[teachers]]\nprovider = \"anthropic\"\n"
     "model = \"m\"\n",
     SH_EFORMAT, "config.toml:4: duplicate teacher name 'm' (give each [[teachers]] a name)"},
};

static void test_errors(void **st) {
    (void)st;
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        const err_case *e = &err_cases[i];
        sh_config c;
        sh_error_clear();
        int rc = parse(&c, e->text);
        if (rc != e->status || strcmp(sh_error_last(), e->msg) != 0)
            print_message("case %zu: got %d \"%s\"\n  want %d \"%s\"\n", i, rc, sh_error_last(),
                          e->status, e->msg);
        assert_int_equal(rc, e->status);
        assert_string_equal(sh_error_last(), e->msg);
        assert_defaults(&c); /* a failed parse leaves the defaults and owns nothing */
        config_free(&c);
    }
}

static void test_limits(void **st) {
    (void)st;
    sh_config c;
    /* file size: checked before anything else */
    size_t big = CONFIG_MAX_FILE + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, '\n', big);
    assert_int_equal(config_parse(&c, text, big, "config.toml"), SH_ERANGE);
    assert_string_equal(sh_error_last(), "config.toml: larger than 1048576 bytes");
    assert_defaults(&c);
    /* exactly the maximum is fine */
    assert_int_equal(config_parse(&c, text, CONFIG_MAX_FILE, "config.toml"), SH_OK);
    config_free(&c);

    /* line length: a comment line of CONFIG_MAX_LINE + 1 bytes on line 3 */
    size_t n = 0;
    n += (size_t)sprintf(text + n, "a = 1\n\n#");
    memset(text + n, 'x', CONFIG_MAX_LINE);
    n += CONFIG_MAX_LINE;
    text[n++] = '\n';
    assert_int_equal(config_parse(&c, text, n, "config.toml"), SH_ERANGE);
    assert_string_equal(sh_error_last(), "config.toml:3: line longer than 4096 bytes");
    /* ... also without a final newline, and CONFIG_MAX_LINE itself is fine */
    assert_int_equal(config_parse(&c, text, n - 1, "config.toml"), SH_ERANGE);
    assert_int_equal(config_parse(&c, text, n - 2, "config.toml"), SH_OK);
    config_free(&c);

    /* a string as long as a line allows */
    n = (size_t)sprintf(text, "[backend]\nmodel = \"");
    size_t slen = CONFIG_MAX_LINE - 10;
    memset(text + n, 'm', slen);
    n += slen;
    n += (size_t)sprintf(text + n, "\"\n");
    assert_int_equal(config_parse(&c, text, n, "config.toml"), SH_OK);
    assert_int_equal(strlen(c.backend.model), slen);
    config_free(&c);

    /* array length: CONFIG_MAX_ARRAY is fine, one more is not (reported on its line) */
    for (int extra = 0; extra <= 1; extra++) {
        n = (size_t)sprintf(text, "x = [\n");
        for (int i = 0; i < CONFIG_MAX_ARRAY + extra; i++)
            n += (size_t)sprintf(text + n, "%d,\n", i);
        n += (size_t)sprintf(text + n, "]\n");
        int rc = config_parse(&c, text, n, "config.toml");
        if (!extra) {
            assert_int_equal(rc, SH_OK);
        } else {
            assert_int_equal(rc, SH_ERANGE);
            assert_string_equal(sh_error_last(), "config.toml:258: array longer than 256 elements");
        }
        config_free(&c);
    }

    /* api_keys: bounded below the array limit */
    n = (size_t)sprintf(text, "[server]\napi_keys = [");
    for (int i = 0; i <= CONFIG_MAX_API_KEYS; i++) n += (size_t)sprintf(text + n, "\"k%d\",", i);
    n += (size_t)sprintf(text + n, "]\n");
    assert_int_equal(config_parse(&c, text, n, "config.toml"), SH_ERANGE);
    assert_string_equal(sh_error_last(),
                        "config.toml:2: [server] api_keys holds more than 64 keys");

    /* the number of distinct keys */
    n = 0;
    for (int i = 0; i <= CONFIG_MAX_KEYS; i++) n += (size_t)sprintf(text + n, "k%d = 1\n", i);
    assert_int_equal(config_parse(&c, text, n, "config.toml"), SH_ERANGE);
    assert_string_equal(sh_error_last(), "config.toml:4097: more than 4096 keys and tables");
    assert_defaults(&c);

    /* NUL bytes are refused (the text need not be a C string) */
    assert_int_equal(config_parse(&c, "a = 1\0", 6, "config.toml"), SH_EFORMAT);
    assert_string_equal(sh_error_last(), "config.toml:1: NUL byte in file");
    /* the length is honoured: what follows it is not read */
    assert_int_equal(config_parse(&c, "a = 1garbage", 5, "config.toml"), SH_OK);
    config_free(&c);
    assert_int_equal(config_parse(&c, NULL, 0, "config.toml"), SH_OK);
    assert_int_equal(config_parse(&c, NULL, 3, "config.toml"), SH_EINVAL);
    free(text);
}

/* ---- files and paths (under tmp_root only) ---- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int group_setup(void **st) {
    (void)st;
    snprintf(tmp_root, sizeof tmp_root, "%s/shammah-test-config-XXXXXX",
             getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root)) return -1;
    char home[PATH_MAX];
    snprintf(home, sizeof home, "%s/home", tmp_root);
    setenv("SHAMMAH_HOME", home, 1);
    setenv("HOME", tmp_root, 1); /* nothing may reach the real home, even by fallback */
    return 0;
}

static int group_teardown(void **st) {
    (void)st;
    if (tmp_root[0]) nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void write_file(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_load(void **st) {
    (void)st;
    sh_config c;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/missing.toml", tmp_root);
    assert_int_equal(config_load(&c, path), SH_OK);
    assert_defaults(&c);

    snprintf(path, sizeof path, "%s/ok.toml", tmp_root);
    write_file(path, full_file, 0600);
    assert_int_equal(config_load(&c, path), SH_OK);
    assert_int_equal(c.server.max_sessions, 250);
    assert_int_equal(config_warning_count(&c), 0);
    config_free(&c);

    /* API keys in a world-readable file: loaded, with a warning */
    chmod(path, 0644);
    assert_int_equal(config_load(&c, path), SH_OK);
    assert_int_equal(config_warning_count(&c), 1);
    assert_non_null(strstr(config_warning(&c, 0), "readable by others"));
    config_free(&c);

    /* errors carry the path */
    snprintf(path, sizeof path, "%s/bad.toml", tmp_root);
    write_file(path, "[server]\nmax_sessions = \"x\"\n", 0600);
    assert_int_equal(config_load(&c, path), SH_EFORMAT);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:2: [server] max_sessions must be an integer", path);
    assert_string_equal(sh_error_last(), want);
    assert_defaults(&c);

    /* a directory is not a config file */
    assert_int_equal(config_load(&c, tmp_root), SH_EIO);
    assert_defaults(&c);
}

static void test_cors_and_limits(void **st) {
    (void)st;
    sh_config c;
    int rc = parse(&c, "[server]\ncors_origins = [\"https://app.example.com\", \"http://10.0.0.2:8080\", "
                       "\"*\", \"vscode-webview://abc\"]\nmax_messages = 50\n");
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_int_equal(c.server.n_cors_origins, 4);
    assert_string_equal(c.server.cors_origins[0], "https://app.example.com");
    assert_string_equal(c.server.cors_origins[2], "*");
    assert_int_equal(c.server.max_messages, 50);
    config_free(&c);
    assert_int_equal(parse(&c, "[server]\ncors_origins = []\n"), SH_OK);
    assert_int_equal(c.server.n_cors_origins, 0);
    config_free(&c);
    /* what a browser never sends as Origin could never match: a typo, refused */
    static const char *const bad[] = {"https://app.example.com/", "https://a.example/path", "app.example.com",
                                      "", "https://", "http://a b", "https://u@host", "1http://x", "**"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[256];
        snprintf(text, sizeof text, "[server]\ncors_origins = [\"%s\"]\n", bad[i]);
        assert_int_equal(parse(&c, text), SH_EFORMAT);
        assert_non_null(strstr(sh_error_last(), "config.toml:2: [server] cors_origins:"));
        assert_defaults(&c);
    }
    assert_int_equal(parse(&c, "[server]\ncors_origins = [1]\n"), SH_EFORMAT);
    assert_int_equal(parse(&c, "[server]\ncors_origins = \"*\"\n"), SH_EFORMAT);
    /* bounded */
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "[server]\ncors_origins = [");
    for (int i = 0; i <= CONFIG_MAX_CORS_ORIGINS; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "\"http://h%d\",", i);
    snprintf(text + n, sizeof text - n, "]\n");
    assert_int_equal(parse(&c, text), SH_ERANGE);
    assert_int_equal(parse(&c, "[server]\nmax_messages = 0\n"), SH_ERANGE);
    assert_int_equal(parse(&c, "[server]\nmax_messages = 1000001\n"), SH_ERANGE);
    assert_int_equal(parse(&c, "[server]\nmax_messages = 1000000\n"), SH_OK);
    config_free(&c);
}

static void test_keys_file(void **st) {
    (void)st;
    sh_config c;
    char cfg[PATH_MAX], keys[PATH_MAX], text[PATH_MAX + 64];
    snprintf(cfg, sizeof cfg, "%s/keyed.toml", tmp_root);
    snprintf(keys, sizeof keys, "%s/keys.txt", tmp_root);
    /* relative to config.toml's directory; comments, blank lines, spaces and CRLF skipped */
    write_file(cfg, "[server]\napi_keys = [\"inline\"]\napi_keys_file = \"keys.txt\"\n", 0600);
    write_file(keys, "# the team's keys\n\n  key-one  \r\nkey-two\t\n   # indented comment\nkey-three", 0600);
    int rc = config_load(&c, cfg);
    if (rc) print_message("%s\n", sh_error_last());
    assert_int_equal(rc, SH_OK);
    assert_int_equal(c.server.n_api_keys, 4);
    assert_string_equal(c.server.api_keys[0], "inline");
    assert_string_equal(c.server.api_keys[1], "key-one");
    assert_string_equal(c.server.api_keys[2], "key-two");
    assert_string_equal(c.server.api_keys[3], "key-three");
    assert_string_equal(c.server.api_keys_file, "keys.txt");
    assert_int_equal(config_warning_count(&c), 0);
    config_free(&c);

    /* an absolute path; group access is a warning */
    snprintf(text, sizeof text, "[server]\napi_keys_file = \"%s\"\n", keys);
    write_file(cfg, text, 0600);
    chmod(keys, 0640);
    assert_int_equal(config_load(&c, cfg), SH_OK);
    assert_int_equal(c.server.n_api_keys, 3);
    assert_int_equal(config_warning_count(&c), 1);
    assert_non_null(strstr(config_warning(&c, 0), "readable by the group"));
    config_free(&c);

    /* others may read (or write, or run) it: refused, as ssh refuses such a private key */
    static const mode_t open_modes[] = {0604, 0602, 0601, 0644, 0666};
    for (size_t i = 0; i < sizeof open_modes / sizeof *open_modes; i++) {
        chmod(keys, open_modes[i]);
        assert_int_equal(config_load(&c, cfg), SH_EINVAL);
        assert_non_null(strstr(sh_error_last(), "are too open"));
        assert_non_null(strstr(sh_error_last(), "chmod 600"));
        assert_null(strstr(sh_error_last(), "key-one")); /* never the keys themselves */
        assert_defaults(&c);
    }
    chmod(keys, 0600);

    /* missing; a directory; no key at all */
    write_file(cfg, "[server]\napi_keys_file = \"nope.txt\"\n", 0600);
    assert_int_equal(config_load(&c, cfg), SH_EIO);
    assert_non_null(strstr(sh_error_last(), "nope.txt"));
    assert_defaults(&c);
    snprintf(text, sizeof text, "[server]\napi_keys_file = \"%s\"\n", tmp_root);
    write_file(cfg, text, 0600);
    chmod(tmp_root, 0700);
    assert_int_equal(config_load(&c, cfg), SH_EIO);
    assert_non_null(strstr(sh_error_last(), "not a regular file"));
    write_file(cfg, "[server]\napi_keys_file = \"keys.txt\"\n", 0600);
    write_file(keys, "# nothing yet\n\n   \n", 0600);
    assert_int_equal(config_load(&c, cfg), SH_EFORMAT);
    assert_non_null(strstr(sh_error_last(), "holds no API key"));
    assert_defaults(&c);

    /* a key with a space or a control character inside; a line too long */
    write_file(keys, "good\nbad key\n", 0600);
    assert_int_equal(config_load(&c, cfg), SH_EFORMAT);
    assert_non_null(strstr(sh_error_last(), "keys.txt:2: a key must be printable ASCII"));
    write_file(keys, "bad\x01key\n", 0600);
    assert_int_equal(config_load(&c, cfg), SH_EFORMAT);
    static char big[CONFIG_MAX_LINE + 16];
    memset(big, 'k', CONFIG_MAX_LINE + 1);
    big[CONFIG_MAX_LINE + 1] = '\n';
    write_file(keys, big, 0600);
    assert_int_equal(config_load(&c, cfg), SH_ERANGE);
    assert_non_null(strstr(sh_error_last(), "keys.txt:1: line longer than"));
    big[CONFIG_MAX_LINE] = '\n'; /* exactly the limit: accepted */
    big[CONFIG_MAX_LINE + 1] = 0;
    write_file(keys, big, 0600);
    assert_int_equal(config_load(&c, cfg), SH_OK);
    assert_int_equal(strlen(c.server.api_keys[0]), CONFIG_MAX_LINE);
    config_free(&c);

    /* CONFIG_MAX_API_KEYS in all, the config's and the file's together */
    static char many[CONFIG_MAX_API_KEYS * 16];
    size_t n = 0;
    for (int i = 0; i < CONFIG_MAX_API_KEYS - 1; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "k%d\n", i);
    write_file(keys, many, 0600);
    write_file(cfg, "[server]\napi_keys = [\"a\"]\napi_keys_file = \"keys.txt\"\n", 0600);
    assert_int_equal(config_load(&c, cfg), SH_OK);
    assert_int_equal(c.server.n_api_keys, CONFIG_MAX_API_KEYS);
    config_free(&c);
    write_file(cfg, "[server]\napi_keys = [\"a\", \"b\"]\napi_keys_file = \"keys.txt\"\n", 0600);
    assert_int_equal(config_load(&c, cfg), SH_ERANGE);
    assert_non_null(strstr(sh_error_last(), "more than 64 API keys"));
    assert_defaults(&c);

    /* config_parse alone never reads the file (the fuzzer and tests parse text only) */
    assert_int_equal(parse(&c, "[server]\napi_keys_file = \"/nonexistent\"\n"), SH_OK);
    assert_int_equal(c.server.n_api_keys, 0);
    config_free(&c);
}

static void test_paths(void **st) {
    (void)st;
    char home[PATHS_MAX], p[PATHS_MAX], want[PATHS_MAX];
    struct stat sb;
    snprintf(want, sizeof want, "%s/home", tmp_root);

    assert_int_equal(paths_home(home, sizeof home), SH_OK);
    assert_string_equal(home, want);
    assert_int_equal(stat(home, &sb), -1); /* resolving creates nothing */

    assert_int_equal(paths_ensure_home(home, sizeof home), SH_OK);
    assert_int_equal(stat(home, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(paths_ensure_home(home, sizeof home), SH_OK); /* idempotent */

    assert_int_equal(paths_file(p, sizeof p, PATHS_CONFIG), SH_OK);
    snprintf(want, sizeof want, "%s/home/config.toml", tmp_root);
    assert_string_equal(p, want);
    assert_int_equal(stat(p, &sb), -1);

    assert_int_equal(paths_dir(p, sizeof p, PATHS_MODELS), SH_OK);
    snprintf(want, sizeof want, "%s/home/models", tmp_root);
    assert_string_equal(p, want);
    assert_int_equal(stat(p, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(paths_dir(p, sizeof p, "adapters/lora1"), SH_OK); /* parents too */
    assert_int_equal(stat(p, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));

    /* nested missing parents for the home itself, trailing slashes dropped */
    char nested[PATHS_MAX];
    snprintf(nested, sizeof nested, "%s/a/b/c//", tmp_root);
    setenv("SHAMMAH_HOME", nested, 1);
    assert_int_equal(paths_ensure_home(home, sizeof home), SH_OK);
    snprintf(want, sizeof want, "%s/a/b/c", tmp_root);
    assert_string_equal(home, want);
    assert_int_equal(stat(home, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    /* a file in the way */
    snprintf(nested, sizeof nested, "%s/a/file", tmp_root);
    write_file(nested, "x", 0600);
    setenv("SHAMMAH_HOME", nested, 1);
    assert_int_equal(paths_ensure_home(home, sizeof home), SH_EIO);

    /* relative SHAMMAH_HOME becomes absolute */
    char cwd[PATHS_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmp_root), 0);
    setenv("SHAMMAH_HOME", "rel/home", 1);
    assert_int_equal(paths_home(home, sizeof home), SH_OK);
    assert_int_equal(chdir(cwd), 0);
    snprintf(want, sizeof want, "%s/rel/home", tmp_root);
    char real_want[PATHS_MAX + 16], real_root[PATHS_MAX];
    assert_non_null(realpath(tmp_root, real_root)); /* getcwd resolves symlinks in TMPDIR */
    snprintf(real_want, sizeof real_want, "%s/rel/home", real_root);
    assert_true(strcmp(home, want) == 0 || strcmp(home, real_want) == 0);

    /* fallback to $HOME/.shammah (HOME is the temp dir), then neither */
    unsetenv("SHAMMAH_HOME");
    assert_int_equal(paths_home(home, sizeof home), SH_OK);
    snprintf(want, sizeof want, "%s/.shammah", tmp_root);
    assert_string_equal(home, want);
    setenv("SHAMMAH_HOME", "", 1);
    assert_int_equal(paths_home(home, sizeof home), SH_OK);
    assert_string_equal(home, want);
    char saved_home[PATHS_MAX];
    snprintf(saved_home, sizeof saved_home, "%s", getenv("HOME"));
    unsetenv("HOME");
    unsetenv("SHAMMAH_HOME");
    assert_int_equal(paths_home(home, sizeof home), SH_ENOTFOUND);
    assert_int_equal(paths_file(p, sizeof p, PATHS_LOG), SH_ENOTFOUND);
    setenv("HOME", saved_home, 1);
    snprintf(want, sizeof want, "%s/home", tmp_root);
    setenv("SHAMMAH_HOME", want, 1);

    /* an over-long SHAMMAH_HOME */
    char *huge = malloc(PATHS_MAX + 16);
    assert_non_null(huge);
    memset(huge, 'h', PATHS_MAX + 15);
    huge[0] = '/';
    huge[PATHS_MAX + 15] = 0;
    setenv("SHAMMAH_HOME", huge, 1);
    assert_int_equal(paths_home(home, sizeof home), SH_ERANGE);
    setenv("SHAMMAH_HOME", want, 1);

    /* joining */
    assert_int_equal(paths_join(p, sizeof p, "/a/b", "c"), SH_OK);
    assert_string_equal(p, "/a/b/c");
    assert_int_equal(paths_join(p, sizeof p, "/a/b/", "c.txt"), SH_OK);
    assert_string_equal(p, "/a/b/c.txt");
    assert_int_equal(paths_join(p, sizeof p, "/", "x"), SH_OK);
    assert_string_equal(p, "/x");
    assert_int_equal(paths_join(p, sizeof p, "", "x"), SH_OK);
    assert_string_equal(p, "x");
    assert_int_equal(paths_join(p, sizeof p, "/a", "/etc/passwd"), SH_EINVAL);
    assert_int_equal(paths_join(p, sizeof p, "/a", ""), SH_EINVAL);
    assert_int_equal(paths_join(p, sizeof p, NULL, "x"), SH_EINVAL);

    /* overflow: against cap (exactly fitting is fine) and against PATHS_MAX */
    char small[8];
    assert_int_equal(paths_join(small, sizeof small, "/abc", "de"), SH_OK); /* 7 + NUL */
    assert_string_equal(small, "/abc/de");
    memcpy(small, "unused!", 8);
    assert_int_equal(paths_join(small, sizeof small, "/abc", "def"), SH_ERANGE);
    assert_string_equal(small, "unused!"); /* untouched on failure */
    memset(huge, 'd', PATHS_MAX - 3);
    huge[0] = '/';
    huge[PATHS_MAX - 3] = 0; /* PATHS_MAX - 3 chars + "/x" = PATHS_MAX - 1: fits */
    char *out = malloc(PATHS_MAX * 2);
    assert_non_null(out);
    assert_int_equal(paths_join(out, PATHS_MAX * 2, huge, "x"), SH_OK);
    assert_int_equal(strlen(out), PATHS_MAX - 1);
    assert_int_equal(paths_join(out, PATHS_MAX * 2, huge, "xy"), SH_ERANGE);
    free(out);
    free(huge);
}

static void test_split_address(void **st) {
    (void)st;
    char host[64];
    int port = 0;
    assert_int_equal(config_split_address("example.com:443", host, sizeof host, &port), SH_OK);
    assert_string_equal(host, "example.com");
    assert_int_equal(port, 443);
    assert_int_equal(config_split_address("[::1]:65535", host, sizeof host, &port), SH_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    assert_int_equal(config_split_address("[::1]80", host, sizeof host, &port), SH_EFORMAT);
    assert_int_equal(config_split_address("h:", host, sizeof host, &port), SH_EFORMAT);
    assert_int_equal(config_split_address("h:99999999999999999999", host, sizeof host, &port),
                     SH_ERANGE);
    assert_int_equal(config_split_address("a b:80", host, sizeof host, &port), SH_EFORMAT);
    assert_int_equal(config_split_address("verylonghostname:80", host, 8, &port), SH_ERANGE);
    assert_int_equal(config_split_address("h:1", NULL, 0, NULL), SH_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_syntax_variants),
        cmocka_unit_test(test_escapes_unicode),
        cmocka_unit_test(test_multiline_arrays),
        cmocka_unit_test(test_teachers),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_cors_and_limits),
        cmocka_unit_test(test_keys_file),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_split_address),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
