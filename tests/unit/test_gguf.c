/* test_gguf.c - GGUF writer/reader round trips and hostile files.
 *
 * Hostile files are either a valid file from the writer with bytes changed or cut off, or a
 * file assembled byte by byte (bb_*) so that one field at a time can be made wrong. Every
 * failure must come back as the right SH_E* with a one-line message naming the problem; none
 * may crash or read outside the mapping (run under `make asan` to check the latter). */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/quant.h"

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Whole file into a malloc'd buffer (caller frees). */
static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* Opening must fail with `code` and a one-line message containing `sub`. */
static void expect_fail_at(const char *path, int code, const char *sub, const char *file, int line) {
    gguf *g = (gguf *)1;
    sh_error_clear();
    int st = gguf_open(&g, path);
    const char *msg = sh_error_last();
    if (st != code || !strstr(msg, sub) || strchr(msg, '\n') || g != NULL) {
        gguf_close(st == SH_OK ? g : NULL);
        fail_msg("%s:%d: gguf_open = %d (%s), want %d with \"%s\"", file, line, st, msg, code, sub);
    }
}
#define expect_fail(path, code, sub) expect_fail_at(path, code, sub, __FILE__, __LINE__)

/* ---- byte builder for hand-made files ---- */

typedef struct {
    uint8_t b[1 << 16];
    size_t n;
} bb;

static void bb_raw(bb *x, const void *p, size_t n) {
    assert_true(x->n + n <= sizeof x->b);
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void bb_u8(bb *x, uint8_t v) { bb_raw(x, &v, 1); }
static void bb_u32(bb *x, uint32_t v) { bb_raw(x, &v, 4); }
static void bb_u64(bb *x, uint64_t v) { bb_raw(x, &v, 8); }
static void bb_str(bb *x, const char *s) {
    bb_u64(x, strlen(s));
    bb_raw(x, s, strlen(s));
}
static void bb_pad(bb *x, size_t align) {
    while (x->n % align) bb_u8(x, 0);
}
static void bb_header(bb *x, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    x->n = 0;
    bb_raw(x, "GGUF", 4);
    bb_u32(x, version);
    bb_u64(x, n_tensors);
    bb_u64(x, n_kv);
}
static void bb_key(bb *x, const char *key, uint32_t type) {
    bb_str(x, key);
    bb_u32(x, type);
}
static void bb_tinfo(bb *x, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset) {
    bb_str(x, name);
    bb_u32(x, n_dims);
    for (uint32_t d = 0; d < n_dims && d < 5; d++) bb_u64(x, ne[d]); /* ne holds at most 5 */
    bb_u32(x, type);
    bb_u64(x, offset);
}
static void bb_save(const bb *x, const char *name) {
    write_bytes(tpath(name), x->b, x->n);
}

/* A file with one tensor: given info, 32-byte aligned data section of data_bytes zeros. */
static const char *one_tensor_file(uint32_t n_dims, const uint64_t *ne, uint32_t type,
                                   uint64_t offset, size_t data_bytes) {
    static bb x;
    bb_header(&x, 3, 1, 1);
    bb_key(&x, "general.architecture", GGUF_T_STRING);
    bb_str(&x, "llama");
    bb_tinfo(&x, "w", n_dims, ne, type, offset);
    bb_pad(&x, 32);
    for (size_t i = 0; i < data_bytes; i++) bb_u8(&x, 0);
    bb_save(&x, "one.gguf");
    return tpath("one.gguf");
}

/* ---- setup ---- */

static int setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sh_test_gguf.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- a small valid file from the writer ---- */

static float f32_data[3 * 5];
static uint16_t f16_data[8 * 2];
static uint8_t q8_data[34 * 3];
static uint8_t q4k_data[144 * 2];
static uint16_t bf16_data[2 * 3 * 4];
static float f32_4d[2 * 3 * 1 * 2];

static void fill_tensor_data(void) {
    for (int i = 0; i < 15; i++) f32_data[i] = (float)i * 0.5f - 3;
    for (int i = 0; i < 16; i++) f16_data[i] = qt_f32_to_f16((float)i / 7);
    float row[256];
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 32; i++) row[i] = sinf((float)(i + r * 32));
        assert_int_equal(qt_quantize_row(QT_Q8_0, row, q8_data + r * 34, 32), SH_OK);
    }
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 256; i++) row[i] = cosf((float)(i * 3 + r));
        assert_int_equal(qt_quantize_row(QT_Q4_K, row, q4k_data + r * 144, 256), SH_OK);
    }
    for (int i = 0; i < 24; i++) bf16_data[i] = qt_f32_to_bf16((float)i - 11.5f);
    for (int i = 0; i < 12; i++) f32_4d[i] = (float)(i * i);
}

typedef struct {
    const char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    const void *data;
    uint64_t nbytes;
} tspec;

static const tspec *tensor_specs(int *n) {
    static tspec s[6];
    fill_tensor_data();
    s[0] = (tspec){"a.f32", QT_F32, 2, {3, 5, 1, 1}, f32_data, sizeof f32_data};
    s[1] = (tspec){"b.f16", QT_F16, 1, {16, 1, 1, 1}, f16_data, sizeof f16_data};
    s[2] = (tspec){"c.q8_0", QT_Q8_0, 2, {32, 3, 1, 1}, q8_data, sizeof q8_data};
    s[3] = (tspec){"d.q4_k", QT_Q4_K, 2, {256, 2, 1, 1}, q4k_data, sizeof q4k_data};
    s[4] = (tspec){"e.bf16", QT_BF16, 3, {2, 3, 4, 1}, bf16_data, sizeof bf16_data};
    s[5] = (tspec){"f.4d", QT_F32, 4, {2, 3, 1, 2}, f32_4d, sizeof f32_4d};
    *n = 6;
    return s;
}

static const uint8_t arr_u8[] = {0, 1, 255};
static const int8_t arr_i8[] = {-128, 0, 127};
static const uint16_t arr_u16[] = {0, 65535, 7};
static const int16_t arr_i16[] = {-32768, 32767, -1};
static const uint32_t arr_u32[] = {0, 4000000000u, 42};
static const int32_t arr_i32[] = {INT32_MIN, INT32_MAX, -5};
static const float arr_f32[] = {1.5f, -0.0f, 3.25e-7f};
static const uint8_t arr_bool[] = {1, 0, 1};
static const uint64_t arr_u64[] = {UINT64_MAX, 0, 1ull << 40};
static const int64_t arr_i64[] = {INT64_MIN, INT64_MAX, -2};
static const double arr_f64[] = {3.141592653589793, -1e300, 5e-324};

typedef struct {
    const char *key;
    gguf_vtype t;
    const void *data;
    size_t esize;
} arr_spec;

static const arr_spec arrays[] = {
    {"arr.u8", GGUF_T_UINT8, arr_u8, 1},    {"arr.i8", GGUF_T_INT8, arr_i8, 1},
    {"arr.u16", GGUF_T_UINT16, arr_u16, 2}, {"arr.i16", GGUF_T_INT16, arr_i16, 2},
    {"arr.u32", GGUF_T_UINT32, arr_u32, 4}, {"arr.i32", GGUF_T_INT32, arr_i32, 4},
    {"arr.f32", GGUF_T_FLOAT32, arr_f32, 4}, {"arr.bool", GGUF_T_BOOL, arr_bool, 1},
    {"arr.u64", GGUF_T_UINT64, arr_u64, 8}, {"arr.i64", GGUF_T_INT64, arr_i64, 8},
    {"arr.f64", GGUF_T_FLOAT64, arr_f64, 8},
};
#define N_ARRAYS (sizeof arrays / sizeof arrays[0])

static const char *const strs[] = {"", "hello", "with\0nul", "\xe4\xb8\xad\xe6\x96\x87"};
static const uint64_t str_lens[] = {0, 5, 8, 6};

/* Writes the reference file; with_tensors = 0 leaves the tensors out. */
static void write_small(const char *path, int with_tensors) {
    gguf_writer *w;
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    assert_int_equal(gguf_w_str(w, "general.architecture", "llama"), SH_OK);
    assert_int_equal(gguf_w_u32(w, "k.u32", 4000000000u), SH_OK);
    assert_int_equal(gguf_w_i32(w, "k.i32", -123456), SH_OK);
    assert_int_equal(gguf_w_u64(w, "k.u64", UINT64_MAX), SH_OK);
    assert_int_equal(gguf_w_f32(w, "k.f32", 0.125f), SH_OK);
    assert_int_equal(gguf_w_bool(w, "k.true", 7), SH_OK);
    assert_int_equal(gguf_w_bool(w, "k.false", 0), SH_OK);
    assert_int_equal(gguf_w_str(w, "k.empty", ""), SH_OK);
    assert_int_equal(gguf_w_strn(w, "k.strn", "a\0b", 3), SH_OK);
    for (size_t i = 0; i < N_ARRAYS; i++)
        assert_int_equal(gguf_w_arr(w, arrays[i].key, arrays[i].t, arrays[i].data, 3), SH_OK);
    assert_int_equal(gguf_w_arr(w, "arr.empty", GGUF_T_INT32, arr_i32, 0), SH_OK);
    assert_int_equal(gguf_w_arr_str(w, "arr.str", strs, str_lens, 4), SH_OK);
    const char *const plain[] = {"x", "yy"};
    assert_int_equal(gguf_w_arr_str(w, "arr.str_nul", plain, NULL, 2), SH_OK);
    assert_int_equal(gguf_w_arr_str(w, "arr.str_empty", plain, NULL, 0), SH_OK);
    if (with_tensors) {
        int n;
        const tspec *s = tensor_specs(&n);
        for (int i = 0; i < n; i++)
            assert_int_equal(gguf_w_tensor(w, s[i].name, s[i].type, s[i].n_dims, s[i].ne,
                                           s[i].data, s[i].nbytes),
                             SH_OK);
    }
    assert_int_equal(gguf_writer_write(w, path), SH_OK);
    gguf_writer_free(w);
}

/* ---- round trip ---- */

static void check_metadata(const gguf *g) {
    uint32_t u32;
    int64_t i64;
    float f;
    int b;
    gguf_str s;
    char buf[8];

    assert_int_equal(gguf_n_kv(g), 9 + N_ARRAYS + 4);
    assert_int_equal(gguf_get_cstr(g, "general.architecture", buf, sizeof buf), SH_OK);
    assert_string_equal(buf, "llama");
    assert_int_equal(gguf_get_cstr(g, "general.architecture", buf, 3), SH_OK);
    assert_string_equal(buf, "ll"); /* truncated to cap - 1 */
    assert_int_equal(gguf_get_u32(g, "k.u32", &u32), SH_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "k.u32")), GGUF_T_UINT32);
    assert_int_equal(gguf_get_i64(g, "k.i32", &i64), SH_OK);
    assert_int_equal(i64, -123456);
    assert_int_equal(gguf_get_u32(g, "k.i32", &u32), SH_EFORMAT); /* negative */
    assert_int_equal(gguf_get_i64(g, "k.u64", &i64), SH_EFORMAT); /* > INT64_MAX */
    assert_non_null(strstr(sh_error_last(), "k.u64"));
    assert_int_equal(gguf_get_f32(g, "k.f32", &f), SH_OK);
    assert_true(f == 0.125f);
    assert_int_equal(gguf_get_f32(g, "k.u32", &f), SH_EFORMAT);
    assert_int_equal(gguf_get_bool(g, "k.true", &b), SH_OK);
    assert_int_equal(b, 1);
    assert_int_equal(gguf_get_bool(g, "k.false", &b), SH_OK);
    assert_int_equal(b, 0);
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "k.true")), GGUF_T_BOOL);
    assert_int_equal(gguf_get_str(g, "k.empty", &s), SH_OK);
    assert_int_equal(s.len, 0);
    assert_int_equal(gguf_get_str(g, "k.strn", &s), SH_OK);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "a\0b", 3);
    assert_int_equal(gguf_get_str(g, "k.u32", &s), SH_EFORMAT);
    assert_int_equal(gguf_get_str(g, "no.such.key", &s), SH_ENOTFOUND);
    assert_non_null(strstr(sh_error_last(), "no.such.key"));
    assert_int_equal(gguf_get_u32(g, "arr.u32", &u32), SH_EFORMAT); /* an array is no scalar */
    assert_int_equal(gguf_find_key(g, "no.such.key"), -1);

    for (size_t i = 0; i < N_ARRAYS; i++) {
        int64_t k = gguf_find_key(g, arrays[i].key);
        assert_true(k >= 0);
        assert_int_equal(gguf_kv_type(g, k), GGUF_T_ARRAY);
        assert_int_equal(gguf_arr_type(g, k), arrays[i].t);
        assert_int_equal(gguf_arr_n(g, k), 3);
        assert_non_null(gguf_arr_data(g, k));
        assert_memory_equal(gguf_arr_data(g, k), arrays[i].data, 3 * arrays[i].esize);
    }
    int64_t k = gguf_find_key(g, "arr.empty");
    assert_int_equal(gguf_arr_type(g, k), GGUF_T_INT32);
    assert_int_equal(gguf_arr_n(g, k), 0);
    k = gguf_find_key(g, "arr.str");
    assert_int_equal(gguf_arr_type(g, k), GGUF_T_STRING);
    assert_int_equal(gguf_arr_n(g, k), 4);
    assert_null(gguf_arr_data(g, k));
    for (int j = 0; j < 4; j++) {
        gguf_str e = gguf_arr_str(g, k, (uint64_t)j);
        assert_int_equal(e.len, str_lens[j]);
        assert_memory_equal(e.ptr, strs[j], str_lens[j]);
    }
    assert_int_equal(gguf_arr_str(g, k, 4).len, 0); /* past the end: empty, no crash */
    k = gguf_find_key(g, "arr.str_nul");
    assert_true(gguf_str_eq(gguf_arr_str(g, k, 1), "yy"));
    k = gguf_find_key(g, "arr.str_empty");
    assert_int_equal(gguf_arr_n(g, k), 0);
    assert_int_equal(gguf_arr_n(g, gguf_find_key(g, "k.u32")), 0); /* scalars have no count */
}

static void test_roundtrip(void **state) {
    const char *path = tpath("small.gguf");
    write_small(path, 1);
    gguf *g;
    assert_int_equal(gguf_open(&g, path), SH_OK);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), 32);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(gguf_file_size(g), (uint64_t)sb.st_size);
    check_metadata(g);

    int n;
    const tspec *s = tensor_specs(&n);
    assert_int_equal(gguf_n_tensors(g), n);
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        assert_non_null(t);
        assert_ptr_equal(gguf_find_tensor(g, s[i].name), t);
        assert_true(gguf_str_eq(t->name, s[i].name));
        assert_int_equal(t->type, s[i].type);
        assert_int_equal(t->n_dims, s[i].n_dims);
        for (int d = 0; d < 4; d++) assert_int_equal(t->ne[d], s[i].ne[d]);
        assert_int_equal(t->nbytes, s[i].nbytes);
        assert_int_equal(t->offset % 32, 0);
        /* the mapping is page aligned, so data alignment shows in the pointer itself */
        assert_int_equal((uintptr_t)t->data % 32, 0);
        assert_memory_equal(t->data, s[i].data, s[i].nbytes);
    }
    assert_null(gguf_tensor_at(g, -1));
    assert_null(gguf_tensor_at(g, n));
    assert_null(gguf_find_tensor(g, "nope"));
    gguf_close(g);

    /* the writer replaces files atomically and leaves no temporary behind */
    write_small(path, 0);
    assert_int_equal(gguf_open(&g, path), SH_OK);
    assert_int_equal(gguf_n_tensors(g), 0);
    check_metadata(g);
    gguf_close(g);
}

/* A file with one key of every type, assembled by hand in the writer's exact layout: copying
 * every key with gguf_w_copy_kv() must reproduce it byte for byte. */
static void build_every_type(bb *x) {
    bb_header(x, 3, 0, 13 + 2);
    bb_key(x, "s.u8", GGUF_T_UINT8); bb_u8(x, 200);
    bb_key(x, "s.i8", GGUF_T_INT8); bb_u8(x, 0x80);
    bb_key(x, "s.u16", GGUF_T_UINT16); bb_raw(x, &arr_u16[1], 2);
    bb_key(x, "s.i16", GGUF_T_INT16); bb_raw(x, &arr_i16[0], 2);
    bb_key(x, "s.u32", GGUF_T_UINT32); bb_u32(x, 0xdeadbeef);
    bb_key(x, "s.i32", GGUF_T_INT32); bb_raw(x, &arr_i32[0], 4);
    bb_key(x, "s.f32", GGUF_T_FLOAT32); bb_raw(x, &arr_f32[2], 4);
    bb_key(x, "s.bool", GGUF_T_BOOL); bb_u8(x, 1);
    bb_key(x, "s.str", GGUF_T_STRING); bb_str(x, "value");
    bb_key(x, "s.u64", GGUF_T_UINT64); bb_u64(x, UINT64_MAX - 1);
    bb_key(x, "s.i64", GGUF_T_INT64); bb_raw(x, &arr_i64[0], 8);
    bb_key(x, "s.f64", GGUF_T_FLOAT64); bb_raw(x, &arr_f64[0], 8);
    bb_key(x, "a.f64", GGUF_T_ARRAY); bb_u32(x, GGUF_T_FLOAT64); bb_u64(x, 3);
    bb_raw(x, arr_f64, sizeof arr_f64);
    bb_key(x, "a.str", GGUF_T_ARRAY); bb_u32(x, GGUF_T_STRING); bb_u64(x, 2);
    bb_str(x, "one"); bb_str(x, "");
    bb_key(x, "a.i16", GGUF_T_ARRAY); bb_u32(x, GGUF_T_INT16); bb_u64(x, 3);
    bb_raw(x, arr_i16, sizeof arr_i16);
    bb_pad(x, 32);
}

static void test_every_scalar_type(void **state) {
    static bb x;
    build_every_type(&x);
    bb_save(&x, "types.gguf");
    gguf *g;
    int64_t v;
    float f;
    int b;
    assert_int_equal(gguf_open(&g, tpath("types.gguf")), SH_OK);
    assert_int_equal(gguf_n_kv(g), 15);
    static const struct {
        const char *key;
        gguf_vtype t;
        int64_t want;
    } ints[] = {{"s.u8", GGUF_T_UINT8, 200},         {"s.i8", GGUF_T_INT8, -128},
                {"s.u16", GGUF_T_UINT16, 65535},     {"s.i16", GGUF_T_INT16, -32768},
                {"s.u32", GGUF_T_UINT32, 0xdeadbeef}, {"s.i32", GGUF_T_INT32, INT32_MIN},
                {"s.bool", GGUF_T_BOOL, 1},          {"s.i64", GGUF_T_INT64, INT64_MIN}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        assert_int_equal(gguf_kv_type(g, gguf_find_key(g, ints[i].key)), ints[i].t);
        assert_int_equal(gguf_get_i64(g, ints[i].key, &v), SH_OK);
        assert_true(v == ints[i].want);
    }
    uint32_t u;
    assert_int_equal(gguf_get_u32(g, "s.i8", &u), SH_EFORMAT);
    assert_int_equal(gguf_get_u32(g, "s.u64", &u), SH_EFORMAT);
    assert_int_equal(gguf_get_i64(g, "s.u64", &v), SH_EFORMAT);
    assert_int_equal(gguf_get_f32(g, "s.f64", &f), SH_OK);
    assert_true(f == (float)arr_f64[0]);
    assert_int_equal(gguf_get_f32(g, "s.f32", &f), SH_OK);
    assert_true(f == arr_f32[2]);
    assert_int_equal(gguf_get_i64(g, "s.f32", &v), SH_EFORMAT);
    assert_int_equal(gguf_get_bool(g, "s.bool", &b), SH_OK);
    assert_int_equal(b, 1);
    assert_int_equal(gguf_get_bool(g, "s.str", &b), SH_EFORMAT);
    assert_int_equal(gguf_arr_type(g, gguf_find_key(g, "a.f64")), GGUF_T_FLOAT64);
    assert_memory_equal(gguf_arr_data(g, gguf_find_key(g, "a.f64")), arr_f64, sizeof arr_f64);

    /* copy every key: the result must be the same bytes */
    gguf_writer *w;
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    for (int64_t i = 0; i < gguf_n_kv(g); i++) assert_int_equal(gguf_w_copy_kv(w, g, i), SH_OK);
    assert_int_equal(gguf_writer_write(w, tpath("copy.gguf")), SH_OK);
    gguf_writer_free(w);
    gguf_close(g);
    size_t n;
    uint8_t *copy = slurp(tpath("copy.gguf"), &n);
    assert_int_equal(n, x.n);
    assert_memory_equal(copy, x.b, n);
    free(copy);
}

/* Copying the writer's own file key by key, tensors re-added: identical bytes. */
static void test_copy_kv_full(void **state) {
    const char *a = tpath("a.gguf"), *b = tpath("b.gguf");
    write_small(a, 1);
    gguf *g;
    gguf_writer *w;
    assert_int_equal(gguf_open(&g, a), SH_OK);
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    for (int64_t i = 0; i < gguf_n_kv(g); i++) assert_int_equal(gguf_w_copy_kv(w, g, i), SH_OK);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        char name[300];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        assert_int_equal(gguf_w_tensor(w, name, t->type, t->n_dims, t->ne, t->data, t->nbytes),
                         SH_OK);
    }
    assert_int_equal(gguf_writer_write(w, b), SH_OK);
    gguf_writer_free(w);
    gguf_close(g);
    size_t na, nb;
    uint8_t *da = slurp(a, &na), *db = slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    free(da);
    free(db);
}

static void test_writer_rejects(void **state) {
    gguf_writer *w;
    float d[32] = {0};
    int64_t ne[4] = {32, 1, 1, 1};
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    assert_int_equal(gguf_w_tensor(w, "t", QT_F32, 0, ne, d, 128), SH_EINVAL);
    assert_int_equal(gguf_w_tensor(w, "t", QT_F32, 5, ne, d, 128), SH_EINVAL);
    assert_int_equal(gguf_w_tensor(w, "t", 11 /* Q3_K */, 1, ne, d, 20), SH_EINVAL);
    assert_int_equal(gguf_w_tensor(w, "t", QT_F32, 1, ne, d, 64), SH_EINVAL); /* wrong size */
    assert_non_null(strstr(sh_error_last(), "expected"));
    ne[0] = 33;
    assert_int_not_equal(gguf_w_tensor(w, "t", QT_Q8_0, 1, ne, d, 34), SH_OK); /* not a block */
    assert_int_equal(gguf_w_arr(w, "a", GGUF_T_STRING, d, 1), SH_EINVAL);
    assert_int_equal(gguf_w_arr(w, "a", GGUF_T_ARRAY, d, 1), SH_EINVAL);
    gguf_writer_free(w);
    gguf_writer_free(NULL);
    gguf_close(NULL);
}

/* Nothing at all, and empty arrays given without data (NULL): valid files. */
static void test_writer_empty(void **state) {
    gguf_writer *w;
    gguf *g;
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    assert_int_equal(gguf_writer_write(w, tpath("nothing.gguf")), SH_OK);
    gguf_writer_free(w);
    assert_int_equal(gguf_open(&g, tpath("nothing.gguf")), SH_OK);
    assert_int_equal(gguf_n_kv(g), 0);
    assert_int_equal(gguf_n_tensors(g), 0);
    gguf_close(g);

    assert_int_equal(gguf_writer_new(&w), SH_OK);
    assert_int_equal(gguf_w_arr(w, "a.none", GGUF_T_FLOAT32, NULL, 0), SH_OK);
    assert_int_equal(gguf_w_arr_str(w, "a.nostr", NULL, NULL, 0), SH_OK);
    assert_int_equal(gguf_writer_write(w, tpath("nothing.gguf")), SH_OK);
    gguf_writer_free(w);
    assert_int_equal(gguf_open(&g, tpath("nothing.gguf")), SH_OK);
    assert_int_equal(gguf_arr_n(g, gguf_find_key(g, "a.none")), 0);
    assert_int_equal(gguf_arr_type(g, gguf_find_key(g, "a.nostr")), GGUF_T_STRING);
    gguf_close(g);
}

/* A written general.alignment governs the layout, so the file reads back. */
static void test_writer_alignment(void **state) {
    static const uint32_t aligns[] = {1, 8, 64, 4096};
    float d[5] = {1, 2, 3, 4, 5};
    int64_t ne[1] = {5};
    for (size_t i = 0; i < 4; i++) {
        gguf_writer *w;
        gguf *g;
        assert_int_equal(gguf_writer_new(&w), SH_OK);
        assert_int_equal(gguf_w_u32(w, "general.alignment", aligns[i]), SH_OK);
        assert_int_equal(gguf_w_tensor(w, "a", QT_F32, 1, ne, d, 20), SH_OK);
        assert_int_equal(gguf_w_tensor(w, "b", QT_F32, 1, ne, d, 20), SH_OK);
        assert_int_equal(gguf_writer_write(w, tpath("wal.gguf")), SH_OK);
        gguf_writer_free(w);
        assert_int_equal(gguf_open(&g, tpath("wal.gguf")), SH_OK);
        assert_int_equal(gguf_alignment(g), aligns[i]);
        const gguf_tensor *b = gguf_find_tensor(g, "b");
        assert_int_equal(b->offset % aligns[i], 0);
        assert_int_equal((uintptr_t)b->data % aligns[i], 0);
        assert_memory_equal(b->data, d, 20);
        gguf_close(g);
    }
    gguf_writer *w;
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    assert_int_equal(gguf_w_u32(w, "general.alignment", 48), SH_EINVAL);
    assert_int_equal(gguf_w_u32(w, "general.alignment", 0), SH_EINVAL);
    assert_int_equal(gguf_w_u64(w, "general.alignment", 32), SH_EINVAL);
    assert_int_equal(gguf_w_str(w, "general.alignment", "32"), SH_EINVAL);
    gguf_writer_free(w);
}

/* ---- hostile files ---- */

static void test_not_files(void **state) {
    expect_fail(tpath("missing.gguf"), SH_ENOTFOUND, "cannot open");
    expect_fail(tmpdir, SH_EIO, "not a regular file");
    write_bytes(tpath("empty.gguf"), "", 0);
    expect_fail(tpath("empty.gguf"), SH_EFORMAT, "too small");
    const char text[] = "this is a text file, long enough to hold a GGUF header\n";
    write_bytes(tpath("text.gguf"), text, sizeof text - 1);
    expect_fail(tpath("text.gguf"), SH_EFORMAT, "not a GGUF file");
}

/* Every prefix of a valid file: fails cleanly until the last tensor's bytes are all there. */
static void test_every_prefix(void **state) {
    const char *full = tpath("prefix_src.gguf"), *cut = tpath("prefix.gguf");
    write_small(full, 1);
    size_t n;
    uint8_t *b = slurp(full, &n);
    gguf *g;
    assert_int_equal(gguf_open(&g, full), SH_OK);
    /* the writer ends the file with the padded data of the last tensor */
    const gguf_tensor *last = gguf_tensor_at(g, gguf_n_tensors(g) - 1);
    uint64_t data_start = n - (last->offset + (last->nbytes + 31) / 32 * 32);
    uint64_t need = data_start + last->offset + last->nbytes;
    assert_true((const uint8_t *)last->data - last->offset ==
                (const uint8_t *)gguf_tensor_at(g, 0)->data);
    gguf_close(g);
    assert_true(need <= n);
    for (size_t len = 0; len < n; len++) {
        write_bytes(cut, b, len);
        sh_error_clear();
        int st = gguf_open(&g, cut);
        if (len < need) {
            if (st != SH_EFORMAT || strchr(sh_error_last(), '\n'))
                fail_msg("prefix %zu of %zu: status %d (%s)", len, n, st, sh_error_last());
            assert_null(g);
        } else {
            assert_int_equal(st, SH_OK); /* only trailing padding is missing */
            gguf_close(g);
        }
    }
    free(b);
}

static void test_bad_header(void **state) {
    const char *p = tpath("h.gguf");
    write_small(p, 1);
    size_t n;
    uint8_t *b = slurp(p, &n);
    uint8_t *m = malloc(n);
    assert_non_null(m);

    memcpy(m, b, n);
    m[3] = 'X';
    write_bytes(p, m, n);
    expect_fail(p, SH_EFORMAT, "not a GGUF file");

    static const uint32_t versions[] = {0, 1, 4, 0xffffffffu};
    for (size_t i = 0; i < 4; i++) {
        memcpy(m, b, n);
        memcpy(m + 4, &versions[i], 4);
        write_bytes(p, m, n);
        expect_fail(p, SH_EUNSUPPORTED, "version");
    }
    static const uint64_t counts[] = {UINT64_MAX, 1ull << 62, 65537, 65536, 100000};
    for (size_t i = 0; i < 5; i++) {
        memcpy(m, b, n);
        memcpy(m + 16, &counts[i], 8); /* n_kv */
        write_bytes(p, m, n);
        expect_fail(p, SH_EFORMAT, "metadata entries");
        memcpy(m, b, n);
        memcpy(m + 8, &counts[i], 8); /* n_tensors */
        write_bytes(p, m, n);
        expect_fail(p, SH_EFORMAT, "tensors");
    }
    /* counts that pass the cheap bound but still run past the end */
    uint64_t more = 40;
    memcpy(m, b, n);
    memcpy(m + 16, &more, 8);
    write_bytes(p, m, n);
    expect_fail(p, SH_EFORMAT, "");
    free(m);
    free(b);

    /* version 2 reads like version 3 */
    static bb x;
    bb_header(&x, 2, 0, 1);
    bb_key(&x, "general.architecture", GGUF_T_STRING);
    bb_str(&x, "llama");
    bb_save(&x, "v2.gguf");
    gguf *g;
    assert_int_equal(gguf_open(&g, tpath("v2.gguf")), SH_OK);
    assert_int_equal(gguf_version(g), 2);
    gguf_close(g);
}

static void test_bad_metadata(void **state) {
    static bb x;
    const char *p = tpath("m.gguf");

    /* key length past the end of the file */
    bb_header(&x, 3, 0, 1);
    bb_u64(&x, 1ull << 40);
    bb_raw(&x, "general.architecture", 20);
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "truncated");
    /* key of length 0 */
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "", GGUF_T_UINT32);
    bb_u32(&x, 1);
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "key of invalid length");
    /* string value past the end */
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "general.name", GGUF_T_STRING);
    bb_u64(&x, 100);
    bb_raw(&x, "short", 5);
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "truncated");
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "general.name", GGUF_T_STRING);
    bb_u64(&x, UINT64_MAX);
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "truncated");
    /* scalar cut short */
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "k", GGUF_T_FLOAT64);
    bb_u32(&x, 0);
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "truncated");
    /* numeric array count past the end, including counts whose byte size overflows */
    static const uint64_t counts[] = {4, 1000, 1ull << 61, UINT64_MAX};
    for (size_t i = 0; i < 4; i++) {
        bb_header(&x, 3, 0, 1);
        bb_key(&x, "arr", GGUF_T_ARRAY);
        bb_u32(&x, GGUF_T_UINT64);
        bb_u64(&x, counts[i]);
        bb_u64(&x, 1);
        bb_u64(&x, 2);
        bb_save(&x, "m.gguf");
        expect_fail(p, SH_EFORMAT, "more than the file holds");
    }
    /* string array count past the end */
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "tokenizer.ggml.tokens", GGUF_T_ARRAY);
    bb_u32(&x, GGUF_T_STRING);
    bb_u64(&x, UINT64_MAX / 2);
    bb_str(&x, "a");
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "more than the file holds");
    /* ... and a count that passes the bound, with a string running off the end */
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "tokenizer.ggml.tokens", GGUF_T_ARRAY);
    bb_u32(&x, GGUF_T_STRING);
    bb_u64(&x, 3);
    bb_str(&x, "a");
    bb_u64(&x, 1000);
    bb_raw(&x, "bcdefghijklmnop", 15);
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "truncated");
    /* unknown value types */
    static const uint32_t types[] = {GGUF_T_COUNT_, 99, 0xffffffffu};
    for (size_t i = 0; i < 3; i++) {
        bb_header(&x, 3, 0, 1);
        bb_key(&x, "weird", types[i]);
        bb_u64(&x, 0);
        bb_save(&x, "m.gguf");
        expect_fail(p, SH_EFORMAT, "unknown value type");
        bb_header(&x, 3, 0, 1);
        bb_key(&x, "weird", GGUF_T_ARRAY);
        bb_u32(&x, types[i]);
        bb_u64(&x, 0);
        bb_save(&x, "m.gguf");
        expect_fail(p, SH_EFORMAT, "element type");
    }
    /* arrays of arrays */
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "nested", GGUF_T_ARRAY);
    bb_u32(&x, GGUF_T_ARRAY);
    bb_u64(&x, 0);
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "element type");
    /* duplicate key */
    bb_header(&x, 3, 0, 3);
    bb_key(&x, "a", GGUF_T_UINT32);
    bb_u32(&x, 1);
    bb_key(&x, "b", GGUF_T_UINT32);
    bb_u32(&x, 2);
    bb_key(&x, "a", GGUF_T_STRING);
    bb_str(&x, "again");
    bb_save(&x, "m.gguf");
    expect_fail(p, SH_EFORMAT, "duplicate metadata key 'a'");
}

static void test_alignment(void **state) {
    static bb x;
    const char *p = tpath("al.gguf");
    uint64_t ne[1] = {8};
    static const uint32_t bad[] = {0, 3, 48, 100, 1u << 31};
    for (size_t i = 0; i < 5; i++) {
        bb_header(&x, 3, 1, 1);
        bb_key(&x, "general.alignment", GGUF_T_UINT32);
        bb_u32(&x, bad[i]);
        bb_tinfo(&x, "w", 1, ne, QT_F32, 0);
        bb_pad(&x, 64);
        for (int j = 0; j < 64; j++) bb_u8(&x, 0);
        bb_save(&x, "al.gguf");
        expect_fail(p, SH_EFORMAT, "power of two");
    }
    /* the wrong type */
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "general.alignment", GGUF_T_UINT64);
    bb_u64(&x, 32);
    bb_save(&x, "al.gguf");
    expect_fail(p, SH_EFORMAT, "alignment");

    /* a valid alignment of 64, second tensor at offset 64 */
    bb_header(&x, 3, 2, 1);
    bb_key(&x, "general.alignment", GGUF_T_UINT32);
    bb_u32(&x, 64);
    bb_tinfo(&x, "a", 1, ne, QT_F32, 0);
    bb_tinfo(&x, "b", 1, ne, QT_F32, 64);
    bb_pad(&x, 64);
    size_t data = x.n;
    for (int j = 0; j < 96; j++) bb_u8(&x, (uint8_t)j);
    bb_save(&x, "al.gguf");
    gguf *g;
    assert_int_equal(gguf_open(&g, p), SH_OK);
    assert_int_equal(gguf_alignment(g), 64);
    assert_int_equal((uintptr_t)gguf_find_tensor(g, "b")->data % 64, 0);
    assert_memory_equal(gguf_find_tensor(g, "b")->data, x.b + data + 64, 32);
    gguf_close(g);
    /* offset 32 is aligned to the default but not to 64 */
    bb_header(&x, 3, 1, 1);
    bb_key(&x, "general.alignment", GGUF_T_UINT32);
    bb_u32(&x, 64);
    bb_tinfo(&x, "a", 1, ne, QT_F32, 32);
    bb_pad(&x, 64);
    for (int j = 0; j < 128; j++) bb_u8(&x, 0);
    bb_save(&x, "al.gguf");
    expect_fail(p, SH_EFORMAT, "not aligned");
}

static void test_bad_tensors(void **state) {
    static bb x;
    const char *p;
    uint64_t ne4[5] = {4, 1, 1, 1, 1};

    /* a valid one first, so the builder is known good */
    gguf *g;
    assert_int_equal(gguf_open(&g, one_tensor_file(1, ne4, QT_F32, 0, 16)), SH_OK);
    assert_int_equal(gguf_n_tensors(g), 1);
    gguf_close(g);

    p = one_tensor_file(0, ne4, QT_F32, 0, 16);
    expect_fail(p, SH_EFORMAT, "dimensions");
    p = one_tensor_file(5, ne4, QT_F32, 0, 16);
    expect_fail(p, SH_EFORMAT, "dimensions");
    p = one_tensor_file(0xffffffffu, ne4, QT_F32, 0, 16);
    expect_fail(p, SH_EFORMAT, "dimensions");
    /* unknown and unsupported type ids */
    p = one_tensor_file(1, ne4, 99, 0, 16);
    expect_fail(p, SH_EUNSUPPORTED, "unsupported type");
    p = one_tensor_file(1, ne4, 0xffffffffu, 0, 16);
    expect_fail(p, SH_EUNSUPPORTED, "unsupported type");
    p = one_tensor_file(1, ne4, 11 /* Q3_K */, 0, 16);
    expect_fail(p, SH_EUNSUPPORTED, "unsupported type");
    /* offsets and sizes outside the file */
    p = one_tensor_file(1, ne4, QT_F32, 32, 16);
    expect_fail(p, SH_EFORMAT, "outside the file");
    p = one_tensor_file(1, ne4, QT_F32, 1ull << 62, 16);
    expect_fail(p, SH_EFORMAT, "outside the file");
    p = one_tensor_file(1, ne4, QT_F32, UINT64_MAX - 31, 16);
    expect_fail(p, SH_EFORMAT, "outside the file");
    p = one_tensor_file(1, ne4, QT_F32, 0, 15);
    expect_fail(p, SH_EFORMAT, "outside the file");
    uint64_t big[2] = {4, 1ull << 40};
    p = one_tensor_file(2, big, QT_F32, 0, 64);
    expect_fail(p, SH_EFORMAT, "outside the file");
    /* misaligned offsets */
    p = one_tensor_file(1, ne4, QT_F32, 4, 64);
    expect_fail(p, SH_EFORMAT, "not aligned");
    p = one_tensor_file(1, ne4, QT_F32, 31, 64);
    expect_fail(p, SH_EFORMAT, "not aligned");
    /* sizes whose byte count overflows 64 bits */
    uint64_t ovf[3] = {1ull << 31, 1ull << 31, 1ull << 31};
    p = one_tensor_file(3, ovf, QT_F32, 0, 64);
    expect_fail(p, SH_EFORMAT, "overflows");
    uint64_t wide[1] = {1ull << 61}; /* one row of 2^63 bytes */
    p = one_tensor_file(1, wide, QT_F32, 0, 64);
    expect_fail(p, SH_EFORMAT, "");
    uint64_t wider[1] = {1ull << 62}; /* one row of 2^64 bytes: wraps to 0 if unchecked */
    p = one_tensor_file(1, wider, QT_F32, 0, 64);
    expect_fail(p, SH_EFORMAT, "");
    uint64_t neg[1] = {UINT64_MAX};
    p = one_tensor_file(1, neg, QT_F32, 0, 64);
    expect_fail(p, SH_EFORMAT, "dimension");
    /* rows that are not whole blocks */
    uint64_t q[2] = {100, 2};
    p = one_tensor_file(2, q, QT_Q4_K, 0, 1024);
    expect_fail(p, SH_EFORMAT, "not a multiple");

    /* tensor names */
    bb_header(&x, 3, 1, 0);
    bb_tinfo(&x, "", 1, ne4, QT_F32, 0);
    bb_pad(&x, 32);
    for (int j = 0; j < 16; j++) bb_u8(&x, 0);
    bb_save(&x, "t.gguf");
    expect_fail(tpath("t.gguf"), SH_EFORMAT, "tensor name");
    char longname[300];
    memset(longname, 'n', 299);
    longname[299] = 0;
    bb_header(&x, 3, 1, 0);
    bb_tinfo(&x, longname, 1, ne4, QT_F32, 0);
    bb_pad(&x, 32);
    for (int j = 0; j < 16; j++) bb_u8(&x, 0);
    bb_save(&x, "t.gguf");
    expect_fail(tpath("t.gguf"), SH_EFORMAT, "tensor name");
    bb_header(&x, 3, 1, 0);
    bb_u64(&x, 1ull << 50);
    for (int j = 0; j < 40; j++) bb_u8(&x, 'w');
    bb_save(&x, "t.gguf");
    expect_fail(tpath("t.gguf"), SH_EFORMAT, "truncated");

    /* duplicate tensor name */
    bb_header(&x, 3, 3, 0);
    bb_tinfo(&x, "w", 1, ne4, QT_F32, 0);
    bb_tinfo(&x, "v", 1, ne4, QT_F32, 32);
    bb_tinfo(&x, "w", 1, ne4, QT_F32, 64);
    bb_pad(&x, 32);
    for (int j = 0; j < 96; j++) bb_u8(&x, 0);
    bb_save(&x, "t.gguf");
    expect_fail(tpath("t.gguf"), SH_EFORMAT, "duplicate tensor 'w'");

    /* names and keys are quoted in messages: no control bytes allowed */
    bb_header(&x, 3, 1, 0);
    bb_tinfo(&x, "a\nb", 1, ne4, QT_F32, 0);
    bb_pad(&x, 32);
    for (int j = 0; j < 16; j++) bb_u8(&x, 0);
    bb_save(&x, "t.gguf");
    expect_fail(tpath("t.gguf"), SH_EFORMAT, "control characters");
    bb_header(&x, 3, 0, 1);
    bb_key(&x, "k\x1b[2J", GGUF_T_UINT32);
    bb_u32(&x, 1);
    bb_save(&x, "t.gguf");
    expect_fail(tpath("t.gguf"), SH_EFORMAT, "control characters");

    /* tensor infos present but the file stops before the data section */
    bb_header(&x, 3, 1, 0);
    bb_tinfo(&x, "w", 1, ne4, QT_F32, 0);
    bb_save(&x, "t.gguf");
    expect_fail(tpath("t.gguf"), SH_EFORMAT, "");
}

/* Many entries, a duplicate last: found, and fast (pairwise checks took 26 s on 100k). */
static void write_many(const char *path, int tensors, uint32_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint32_t v3 = 3, one = 1, zero32 = 0;
    uint64_t nt = tensors ? n : 0, nk = tensors ? 0 : n, zero = 0, len = 8, ne = 0;
    fwrite("GGUF", 1, 4, f);
    fwrite(&v3, 4, 1, f);
    fwrite(&nt, 8, 1, f);
    fwrite(&nk, 8, 1, f);
    for (uint32_t i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%07u", i + 1 == n ? 0u : i % 10000000u); /* last = first */
        fwrite(&len, 8, 1, f);
        fwrite(name, 1, 8, f);
        if (tensors) { /* 1-D, zero elements, F32, offset 0 */
            fwrite(&one, 4, 1, f);
            fwrite(&ne, 8, 1, f);
            fwrite(&zero32, 4, 1, f);
            fwrite(&zero, 8, 1, f);
        } else {
            fwrite(&zero32, 4, 1, f); /* u8 */
            fwrite(&zero32, 1, 1, f);
        }
    }
    for (int i = 0; i < 32; i++) fputc(0, f);
    assert_int_equal(fclose(f), 0);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_many_entries(void **state) {
    double t0 = now_s();
    write_many(tpath("many.gguf"), 1, 100000);
    expect_fail(tpath("many.gguf"), SH_EFORMAT, "duplicate tensor 'n0000000'");
    write_many(tpath("many.gguf"), 0, 60000);
    expect_fail(tpath("many.gguf"), SH_EFORMAT, "duplicate metadata key 'n0000000'");
    double dt = now_s() - t0;
    if (dt > 10) fail_msg("100k tensors + 60k keys took %.1f s", dt);
}

/* Flipping single bytes all over a valid file: must open or fail cleanly, never crash. */
static void test_byte_flips(void **state) {
    const char *src = tpath("flip_src.gguf"), *p = tpath("flip.gguf");
    write_small(src, 1);
    size_t n;
    uint8_t *b = slurp(src, &n);
    uint8_t *m = malloc(n);
    assert_non_null(m);
    static const uint8_t vals[] = {0x00, 0xff, 0x7f, 0x80, 0x01};
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof vals; k++) {
            if (b[i] == vals[k]) continue;
            memcpy(m, b, n);
            m[i] = vals[k];
            write_bytes(p, m, n);
            gguf *g = NULL;
            sh_error_clear();
            int st = gguf_open(&g, p);
            if (st == SH_OK) {
                /* whatever was accepted must be readable without going out of bounds */
                for (int64_t t = 0; t < gguf_n_tensors(g); t++) {
                    const gguf_tensor *tt = gguf_tensor_at(g, t);
                    volatile uint8_t sum = 0;
                    for (uint64_t j = 0; j < tt->nbytes; j++) sum ^= ((const uint8_t *)tt->data)[j];
                    (void)sum;
                }
                gguf_close(g);
            } else {
                if (strchr(sh_error_last(), '\n') || !*sh_error_last())
                    fail_msg("byte %zu = %02x: bad message '%s'", i, vals[k], sh_error_last());
            }
        }
    }
    free(m);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_every_scalar_type),
        cmocka_unit_test(test_copy_kv_full),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_writer_alignment),
        cmocka_unit_test(test_writer_empty),
        cmocka_unit_test(test_not_files),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_byte_flips),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
