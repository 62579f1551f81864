/* gguf.c - GGUF v2/v3 reader over mmap, and writer.
 *
 * The reader parses the header once at open into small tables (keys, array descriptors,
 * tensor infos) whose pointers all point into the mapping; every length is checked against
 * the bytes left before it is trusted, so a hostile file can make us fail but never read
 * outside the mapping. */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "engine/quant.h"

#define GGUF_DEFAULT_ALIGNMENT 32
/* Limits that no real model comes near; they bound allocations driven by file contents. */
#define GGUF_MAX_KV 65536
#define GGUF_MAX_TENSORS 1000000
#define GGUF_MAX_KEY_LEN 65535

typedef struct {
    gguf_str key;
    gguf_vtype type;
    union {
        uint64_t u;
        int64_t i;
        double f;
        gguf_str s;
    } v;
    gguf_vtype arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data; /* numeric arrays: packed elements */
    gguf_str *arr_strs;      /* string arrays: owned table of borrowed strings */
} gguf_kv;

struct gguf {
    uint8_t *map;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t data_offset;
};

/* ---- bounded cursor ---- */

typedef struct {
    const uint8_t *p;
    uint64_t left;
    const char *what; /* what is being parsed, for error messages */
} cursor;

static int need(cursor *c, uint64_t n) {
    if (n > c->left)
        return sh_error_set(SH_EFORMAT, "file truncated while reading %s (needs %" PRIu64
                            " bytes, %" PRIu64 " left)", c->what, n, c->left);
    return SH_OK;
}

static int rd(cursor *c, void *dst, uint64_t n) {
    int st = need(c, n);
    if (st) return st;
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    return SH_OK;
}

static int rd_u32(cursor *c, uint32_t *v) {
    return rd(c, v, 4);
}

static int rd_u64(cursor *c, uint64_t *v) {
    return rd(c, v, 8);
}

static int rd_str(cursor *c, gguf_str *s) {
    uint64_t n;
    int st = rd_u64(c, &n);
    if (st) return st;
    if ((st = need(c, n))) return st;
    s->ptr = (const char *)c->p;
    s->len = n;
    c->p += n;
    c->left -= n;
    return SH_OK;
}

static const uint8_t vtype_size[GGUF_T_COUNT_] = {
    [GGUF_T_UINT8] = 1,  [GGUF_T_INT8] = 1,    [GGUF_T_UINT16] = 2, [GGUF_T_INT16] = 2,
    [GGUF_T_UINT32] = 4, [GGUF_T_INT32] = 4,   [GGUF_T_FLOAT32] = 4, [GGUF_T_BOOL] = 1,
    [GGUF_T_UINT64] = 8, [GGUF_T_INT64] = 8,   [GGUF_T_FLOAT64] = 8,
};

static int read_scalar(cursor *c, gguf_kv *kv) {
    uint8_t b[8] = {0};
    int st = rd(c, b, vtype_size[kv->type]);
    if (st) return st;
    switch (kv->type) {
    case GGUF_T_UINT8: kv->v.u = b[0]; break;
    case GGUF_T_BOOL: kv->v.u = b[0] != 0; break;
    case GGUF_T_INT8: kv->v.i = (int8_t)b[0]; break;
    case GGUF_T_UINT16: { uint16_t x; memcpy(&x, b, 2); kv->v.u = x; } break;
    case GGUF_T_INT16: { int16_t x; memcpy(&x, b, 2); kv->v.i = x; } break;
    case GGUF_T_UINT32: { uint32_t x; memcpy(&x, b, 4); kv->v.u = x; } break;
    case GGUF_T_INT32: { int32_t x; memcpy(&x, b, 4); kv->v.i = x; } break;
    case GGUF_T_FLOAT32: { float x; memcpy(&x, b, 4); kv->v.f = x; } break;
    case GGUF_T_UINT64: memcpy(&kv->v.u, b, 8); break;
    case GGUF_T_INT64: memcpy(&kv->v.i, b, 8); break;
    case GGUF_T_FLOAT64: memcpy(&kv->v.f, b, 8); break;
    default: return sh_error_set(SH_EFORMAT, "bad scalar type %d", (int)kv->type);
    }
    return SH_OK;
}

static int is_signed_int(gguf_vtype t) {
    return t == GGUF_T_INT8 || t == GGUF_T_INT16 || t == GGUF_T_INT32 || t == GGUF_T_INT64;
}

static int is_unsigned_int(gguf_vtype t) {
    return t == GGUF_T_UINT8 || t == GGUF_T_UINT16 || t == GGUF_T_UINT32 ||
           t == GGUF_T_UINT64 || t == GGUF_T_BOOL;
}

/* Keys and tensor names are quoted in one-line error messages: control bytes would break
 * the line (or drive a terminal), and no real file has them. */
static int has_ctrl(gguf_str s) {
    for (uint64_t i = 0; i < s.len; i++)
        if ((uint8_t)s.ptr[i] < 0x20 || (uint8_t)s.ptr[i] == 0x7f) return 1;
    return 0;
}

static int read_kv(cursor *c, gguf_kv *kv) {
    uint32_t t;
    int st;
    c->what = "metadata key";
    if ((st = rd_str(c, &kv->key))) return st;
    if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN)
        return sh_error_set(SH_EFORMAT, "metadata key of invalid length %" PRIu64, kv->key.len);
    if (has_ctrl(kv->key))
        return sh_error_set(SH_EFORMAT, "metadata key contains control characters");
    c->what = "metadata value";
    if ((st = rd_u32(c, &t))) return st;
    if (t >= GGUF_T_COUNT_)
        return sh_error_set(SH_EFORMAT, "metadata '%.*s' has unknown value type %u",
                            (int)kv->key.len, kv->key.ptr, t);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_T_STRING) return rd_str(c, &kv->v.s);
    if (t != GGUF_T_ARRAY) return read_scalar(c, kv);

    uint32_t at;
    uint64_t n;
    if ((st = rd_u32(c, &at)) || (st = rd_u64(c, &n))) return st;
    if (at >= GGUF_T_COUNT_ || at == GGUF_T_ARRAY)
        return sh_error_set(SH_EFORMAT, "metadata array '%.*s' has unsupported element type %u",
                            (int)kv->key.len, kv->key.ptr, at);
    kv->arr_type = (gguf_vtype)at;
    kv->arr_n = n;
    if (at == GGUF_T_STRING) {
        /* each string takes at least its 8-byte length: bounds n before allocating */
        if (n > c->left / 8)
            return sh_error_set(SH_EFORMAT, "metadata array '%.*s' claims %" PRIu64
                                " strings, more than the file holds", (int)kv->key.len,
                                kv->key.ptr, n);
        kv->arr_strs = malloc((n ? n : 1) * sizeof *kv->arr_strs);
        if (!kv->arr_strs) return sh_error_set(SH_ENOMEM, "out of memory reading metadata");
        for (uint64_t j = 0; j < n; j++)
            if ((st = rd_str(c, &kv->arr_strs[j]))) return st;
        return SH_OK;
    }
    uint64_t es = vtype_size[at];
    if (n > c->left / es)
        return sh_error_set(SH_EFORMAT, "metadata array '%.*s' claims %" PRIu64
                            " elements, more than the file holds", (int)kv->key.len, kv->key.ptr, n);
    kv->arr_data = c->p;
    c->p += n * es;
    c->left -= n * es;
    return SH_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    const gguf_str *x = *(const gguf_str *const *)a, *y = *(const gguf_str *const *)b;
    int c = memcmp(x->ptr, y->ptr, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Finds a name that occurs twice among n names found `stride` bytes apart from `first`.
 * Sorting keeps this O(n log n): checking pairs would let a few-MB file of 100k tensors
 * stall gguf_open for tens of seconds. *dup is NULL when all names are distinct. */
static int find_dup(const gguf_str *first, size_t stride, uint64_t n, const gguf_str **dup) {
    *dup = NULL;
    if (n < 2) return SH_OK;
    const gguf_str **v = malloc(n * sizeof *v);
    if (!v) return sh_error_set(SH_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) v[i] = (const gguf_str *)((const char *)first + i * stride);
    qsort(v, n, sizeof *v, cmp_str_ptr);
    for (uint64_t i = 1; i < n && !*dup; i++)
        if (!cmp_str_ptr(&v[i - 1], &v[i])) *dup = v[i];
    free(v);
    return SH_OK;
}

static int read_tensor_info(cursor *c, gguf_tensor *t) {
    int st;
    c->what = "tensor info";
    if ((st = rd_str(c, &t->name))) return st;
    if (t->name.len == 0 || t->name.len > 256)
        return sh_error_set(SH_EFORMAT, "tensor name of invalid length %" PRIu64, t->name.len);
    if (has_ctrl(t->name)) return sh_error_set(SH_EFORMAT, "tensor name contains control characters");
    if ((st = rd_u32(c, &t->n_dims))) return st;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return sh_error_set(SH_EFORMAT, "tensor '%.*s' has %u dimensions (1..4 allowed)",
                            (int)t->name.len, t->name.ptr, t->n_dims);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if ((st = rd_u64(c, &ne))) return st;
        if (ne > (uint64_t)INT64_MAX / 2)
            return sh_error_set(SH_EFORMAT, "tensor '%.*s' has dimension %u = %" PRIu64,
                                (int)t->name.len, t->name.ptr, d, ne);
        t->ne[d] = (int64_t)ne;
    }
    if ((st = rd_u32(c, &t->type)) || (st = rd_u64(c, &t->offset))) return st;
    return SH_OK;
}

/* Checks a tensor's type and shape and computes its size; overflow-safe. */
static int size_tensor(gguf_tensor *t) {
    if (!qt_supported(t->type))
        return sh_error_set(SH_EUNSUPPORTED, "tensor '%.*s' has unsupported type %s (id %u)",
                            (int)t->name.len, t->name.ptr, qt_name(t->type), t->type);
    int64_t be = qt_block_elems(t->type);
    if (t->ne[0] % be != 0)
        return sh_error_set(SH_EFORMAT, "tensor '%.*s': row of %" PRId64
                            " elements is not a multiple of the %s block (%" PRId64 ")",
                            (int)t->name.len, t->name.ptr, t->ne[0], qt_name(t->type), be);
    uint64_t bytes = qt_row_bytes(t->type, t->ne[0]);
    if (t->ne[0] == 0) bytes = 0;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = (uint64_t)t->ne[d];
        if (ne != 0 && bytes > UINT64_MAX / ne)
            return sh_error_set(SH_EFORMAT, "tensor '%.*s' size overflows", (int)t->name.len,
                                t->name.ptr);
        bytes *= ne;
    }
    t->nbytes = bytes;
    return SH_OK;
}

/* ---- open / close ---- */

static void free_tables(gguf *g) {
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].arr_strs);
    free(g->kv);
    free(g->tensors);
}

int gguf_open(gguf **out, const char *path) {
    int st = SH_OK, fd = -1;
    gguf *g = calloc(1, sizeof *g);
    *out = NULL;
    if (!g) return sh_error_set(SH_ENOMEM, "out of memory");

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = sh_error_set(errno == ENOENT ? SH_ENOTFOUND : SH_EIO, "cannot open: %s",
                          strerror(errno));
        goto out;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = sh_error_set(SH_EIO, "not a regular file");
        goto out;
    }
    g->size = (uint64_t)sb.st_size;
    if (g->size < 24) {
        st = sh_error_set(SH_EFORMAT, "file too small to be GGUF (%" PRIu64 " bytes)", g->size);
        goto out;
    }
    g->map = mmap(NULL, g->size, PROT_READ, MAP_SHARED, fd, 0);
    if (g->map == MAP_FAILED) {
        g->map = NULL;
        st = sh_error_set(SH_EIO, "mmap failed: %s", strerror(errno));
        goto out;
    }

    cursor c = {g->map, g->size, "header"};
    if (memcmp(c.p, "GGUF", 4) != 0) {
        st = sh_error_set(SH_EFORMAT, "not a GGUF file (bad magic %02x %02x %02x %02x)",
                          c.p[0], c.p[1], c.p[2], c.p[3]);
        goto out;
    }
    c.p += 4;
    c.left -= 4;
    uint64_t n_tensors, n_kv;
    if ((st = rd_u32(&c, &g->version))) goto out;
    if (g->version != 2 && g->version != 3) {
        st = sh_error_set(SH_EUNSUPPORTED, "unsupported GGUF version %u (2 and 3 are)",
                          g->version);
        goto out;
    }
    if ((st = rd_u64(&c, &n_tensors)) || (st = rd_u64(&c, &n_kv))) goto out;
    /* every kv needs >= 12 bytes and every tensor info >= 24: cheap bounds before allocating */
    if (n_kv > GGUF_MAX_KV || n_kv > c.left / 12) {
        st = sh_error_set(SH_EFORMAT, "header claims %" PRIu64 " metadata entries", n_kv);
        goto out;
    }
    if (n_tensors > GGUF_MAX_TENSORS || n_tensors > c.left / 24) {
        st = sh_error_set(SH_EFORMAT, "header claims %" PRIu64 " tensors", n_tensors);
        goto out;
    }
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1;
        if ((st = read_kv(&c, &g->kv[i]))) goto out;
    }
    const gguf_str *dup;
    if ((st = find_dup(&g->kv[0].key, sizeof *g->kv, n_kv, &dup))) goto out;
    if (dup) {
        st = sh_error_set(SH_EFORMAT, "duplicate metadata key '%.*s'", (int)dup->len, dup->ptr);
        goto out;
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        gguf_kv *kv = &g->kv[ai];
        if (kv->type != GGUF_T_UINT32 || kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) != 0 ||
            kv->v.u > 65536) {
            st = sh_error_set(SH_EFORMAT, "general.alignment must be a power of two u32");
            goto out;
        }
        g->alignment = kv->v.u;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        if ((st = read_tensor_info(&c, &g->tensors[i]))) goto out;
    }
    uint64_t header_end = g->size - c.left;
    g->data_offset = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    if (n_tensors > 0 && g->data_offset > g->size) {
        st = sh_error_set(SH_EFORMAT, "file truncated before the tensor data");
        goto out;
    }
    uint64_t data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if ((st = size_tensor(t))) goto out;
        if (t->offset % g->alignment != 0) {
            st = sh_error_set(SH_EFORMAT, "tensor '%.*s' offset %" PRIu64 " is not aligned",
                              (int)t->name.len, t->name.ptr, t->offset);
            goto out;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            st = sh_error_set(SH_EFORMAT, "tensor '%.*s' (%" PRIu64 " bytes at offset %" PRIu64
                              ") lies outside the file (data section %" PRIu64 " bytes)",
                              (int)t->name.len, t->name.ptr, t->nbytes, t->offset, data_size);
            goto out;
        }
        t->data = g->map + g->data_offset + t->offset;
    }
    if ((st = find_dup(&g->tensors[0].name, sizeof *g->tensors, n_tensors, &dup))) goto out;
    if (dup) {
        st = sh_error_set(SH_EFORMAT, "duplicate tensor '%.*s'", (int)dup->len, dup->ptr);
        goto out;
    }
out:
    if (fd >= 0) close(fd);
    if (st) {
        gguf_close(g);
        return st;
    }
    *out = g;
    return SH_OK;
}

void gguf_close(gguf *g) {
    if (!g) return;
    free_tables(g);
    if (g->map) munmap(g->map, g->size);
    free(g);
}

uint32_t gguf_version(const gguf *g) {
    return g->version;
}

uint64_t gguf_file_size(const gguf *g) {
    return g->size;
}

uint64_t gguf_alignment(const gguf *g) {
    return g->alignment;
}

/* ---- metadata ---- */

int64_t gguf_n_kv(const gguf *g) {
    return g->n_kv;
}

int gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

int64_t gguf_find_key(const gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (gguf_str_eq(g->kv[i].key, key)) return i;
    return -1;
}

gguf_str gguf_kv_key(const gguf *g, int64_t i) {
    return g->kv[i].key;
}

gguf_vtype gguf_kv_type(const gguf *g, int64_t i) {
    return g->kv[i].type;
}

gguf_vtype gguf_arr_type(const gguf *g, int64_t i) {
    return g->kv[i].arr_type;
}

uint64_t gguf_arr_n(const gguf *g, int64_t i) {
    return g->kv[i].type == GGUF_T_ARRAY ? g->kv[i].arr_n : 0;
}

const void *gguf_arr_data(const gguf *g, int64_t i) {
    return g->kv[i].arr_data;
}

gguf_str gguf_arr_str(const gguf *g, int64_t i, uint64_t j) {
    gguf_str none = {"", 0};
    const gguf_kv *kv = &g->kv[i];
    if (kv->type != GGUF_T_ARRAY || !kv->arr_strs || j >= kv->arr_n) return none;
    return kv->arr_strs[j];
}

static const gguf_kv *lookup(const gguf *g, const char *key) {
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

static int wrong_type(const char *key, const char *want) {
    return sh_error_set(SH_EFORMAT, "metadata '%s' is not %s", key, want);
}

int gguf_get_i64(const gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = lookup(g, key);
    if (!kv) return sh_error_set(SH_ENOTFOUND, "missing metadata '%s'", key);
    if (is_signed_int(kv->type)) {
        *out = kv->v.i;
    } else if (is_unsigned_int(kv->type)) {
        if (kv->v.u > (uint64_t)INT64_MAX) return wrong_type(key, "an integer in range");
        *out = (int64_t)kv->v.u;
    } else {
        return wrong_type(key, "an integer");
    }
    return SH_OK;
}

int gguf_get_u32(const gguf *g, const char *key, uint32_t *out) {
    int64_t v;
    int st = gguf_get_i64(g, key, &v);
    if (st) return st;
    if (v < 0 || v > UINT32_MAX) return wrong_type(key, "a 32-bit unsigned integer");
    *out = (uint32_t)v;
    return SH_OK;
}

int gguf_get_f32(const gguf *g, const char *key, float *out) {
    const gguf_kv *kv = lookup(g, key);
    if (!kv) return sh_error_set(SH_ENOTFOUND, "missing metadata '%s'", key);
    if (kv->type != GGUF_T_FLOAT32 && kv->type != GGUF_T_FLOAT64) return wrong_type(key, "a float");
    *out = (float)kv->v.f;
    return SH_OK;
}

int gguf_get_bool(const gguf *g, const char *key, int *out) {
    const gguf_kv *kv = lookup(g, key);
    if (!kv) return sh_error_set(SH_ENOTFOUND, "missing metadata '%s'", key);
    if (!is_unsigned_int(kv->type) && !is_signed_int(kv->type)) return wrong_type(key, "a bool");
    *out = kv->v.u != 0;
    return SH_OK;
}

int gguf_get_str(const gguf *g, const char *key, gguf_str *out) {
    const gguf_kv *kv = lookup(g, key);
    if (!kv) return sh_error_set(SH_ENOTFOUND, "missing metadata '%s'", key);
    if (kv->type != GGUF_T_STRING) return wrong_type(key, "a string");
    *out = kv->v.s;
    return SH_OK;
}

int gguf_get_cstr(const gguf *g, const char *key, char *buf, size_t cap) {
    gguf_str s;
    int st = gguf_get_str(g, key, &s);
    if (st) return st;
    if (cap == 0) return SH_EINVAL;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return SH_OK;
}

/* ---- tensors ---- */

int64_t gguf_n_tensors(const gguf *g) {
    return g->n_tensors;
}

const gguf_tensor *gguf_tensor_at(const gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* ---- writer ---- */

#define GGUF_W_MAX_META (1ull << 31) /* the metadata section of one file */

typedef struct {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} w_tensor;

struct gguf_writer {
    uint8_t *meta; /* serialized key/values */
    uint64_t meta_len, meta_cap;
    uint64_t n_kv;
    w_tensor *tensors;
    uint64_t n_tensors, tensors_cap;
    uint64_t align; /* general.alignment if one was written, else 0 (the default) */
};

int gguf_writer_new(gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? SH_OK : sh_error_set(SH_ENOMEM, "out of memory");
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->meta);
    free(w);
}

static int put(gguf_writer *w, const void *p, uint64_t n) {
    if (n == 0) return SH_OK; /* p may be NULL then (empty arrays); memcpy must not see it */
    if (n > GGUF_W_MAX_META - w->meta_len)
        return sh_error_set(SH_EFULL, "GGUF metadata larger than %llu bytes", GGUF_W_MAX_META);
    if (w->meta_len + n > w->meta_cap) {
        uint64_t cap = w->meta_cap ? w->meta_cap : 4096;
        while (cap < w->meta_len + n) cap *= 2;
        uint8_t *m = realloc(w->meta, cap);
        if (!m) return sh_error_set(SH_ENOMEM, "out of memory");
        w->meta = m;
        w->meta_cap = cap;
    }
    memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
    return SH_OK;
}

static int put_str(gguf_writer *w, const char *s, uint64_t n) {
    int st = put(w, &n, 8);
    return st ? st : put(w, s, n);
}

static int put_key(gguf_writer *w, const char *key, uint32_t type) {
    if (type != GGUF_T_UINT32 && !strcmp(key, "general.alignment"))
        return sh_error_set(SH_EINVAL, "general.alignment must be a power of two u32");
    int st = put_str(w, key, strlen(key));
    if (!st) st = put(w, &type, 4);
    if (!st) w->n_kv++;
    return st;
}

static int put_scalar(gguf_writer *w, const char *key, gguf_vtype t, const void *v) {
    /* readers place tensor data by this key: the layout must follow it or be rejected */
    if (!strcmp(key, "general.alignment")) {
        uint32_t a = 0;
        if (t == GGUF_T_UINT32) memcpy(&a, v, 4);
        if (a == 0 || (a & (a - 1)) != 0 || a > 65536)
            return sh_error_set(SH_EINVAL, "general.alignment must be a power of two u32");
        w->align = a;
    }
    int st = put_key(w, key, t);
    return st ? st : put(w, v, vtype_size[t]);
}

int gguf_w_u32(gguf_writer *w, const char *key, uint32_t v) {
    return put_scalar(w, key, GGUF_T_UINT32, &v);
}

int gguf_w_i32(gguf_writer *w, const char *key, int32_t v) {
    return put_scalar(w, key, GGUF_T_INT32, &v);
}

int gguf_w_u64(gguf_writer *w, const char *key, uint64_t v) {
    return put_scalar(w, key, GGUF_T_UINT64, &v);
}

int gguf_w_f32(gguf_writer *w, const char *key, float v) {
    return put_scalar(w, key, GGUF_T_FLOAT32, &v);
}

int gguf_w_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return put_scalar(w, key, GGUF_T_BOOL, &b);
}

int gguf_w_strn(gguf_writer *w, const char *key, const char *v, uint64_t len) {
    int st = put_key(w, key, GGUF_T_STRING);
    return st ? st : put_str(w, v, len);
}

int gguf_w_str(gguf_writer *w, const char *key, const char *v) {
    return gguf_w_strn(w, key, v, strlen(v));
}

int gguf_w_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data, uint64_t n) {
    if (t >= GGUF_T_COUNT_ || t == GGUF_T_STRING || t == GGUF_T_ARRAY) return SH_EINVAL;
    uint32_t t32 = t;
    int st = put_key(w, key, GGUF_T_ARRAY);
    if (!st) st = put(w, &t32, 4);
    if (!st) st = put(w, &n, 8);
    if (!st) st = put(w, data, n * vtype_size[t]);
    return st;
}

int gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                   const uint64_t *lens, uint64_t n) {
    uint32_t t32 = GGUF_T_STRING;
    int st = put_key(w, key, GGUF_T_ARRAY);
    if (!st) st = put(w, &t32, 4);
    if (!st) st = put(w, &n, 8);
    for (uint64_t i = 0; !st && i < n; i++)
        st = put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
    return st;
}

int gguf_w_copy_kv(gguf_writer *w, const gguf *g, int64_t i) {
    const gguf_kv *kv = &g->kv[i];
    char key[GGUF_MAX_KEY_LEN + 1];
    memcpy(key, kv->key.ptr, kv->key.len);
    key[kv->key.len] = 0;
    if (kv->type == GGUF_T_STRING) return gguf_w_strn(w, key, kv->v.s.ptr, kv->v.s.len);
    if (kv->type == GGUF_T_ARRAY) {
        if (kv->arr_type != GGUF_T_STRING)
            return gguf_w_arr(w, key, kv->arr_type, kv->arr_data, kv->arr_n);
        uint32_t t32 = GGUF_T_STRING;
        int st = put_key(w, key, GGUF_T_ARRAY);
        if (!st) st = put(w, &t32, 4);
        if (!st) st = put(w, &kv->arr_n, 8);
        for (uint64_t j = 0; !st && j < kv->arr_n; j++)
            st = put_str(w, kv->arr_strs[j].ptr, kv->arr_strs[j].len);
        return st;
    }
    /* scalars: re-encode from the parsed value at the original width */
    uint8_t b[8];
    switch (kv->type) {
    case GGUF_T_FLOAT32: { float f = (float)kv->v.f; memcpy(b, &f, 4); } break;
    case GGUF_T_FLOAT64: memcpy(b, &kv->v.f, 8); break;
    default:
        if (is_signed_int(kv->type)) memcpy(b, &kv->v.i, 8); /* little-endian: low bytes first */
        else memcpy(b, &kv->v.u, 8);
    }
    return put_scalar(w, key, kv->type, b);
}

int gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                  const int64_t *ne, const void *data, uint64_t nbytes) {
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS || !qt_supported(type))
        return sh_error_set(SH_EINVAL, "tensor '%s': bad dims or type", name);
    gguf_tensor probe = {.name = {name, strlen(name)}, .type = type, .n_dims = n_dims};
    for (int d = 0; d < GGUF_MAX_DIMS; d++) probe.ne[d] = d < (int)n_dims ? ne[d] : 1;
    int st = size_tensor(&probe);
    if (st) return st;
    if (probe.nbytes != nbytes)
        return sh_error_set(SH_EINVAL, "tensor '%s': %" PRIu64 " bytes given, %" PRIu64
                            " expected", name, nbytes, probe.nbytes);
    if (w->n_tensors == w->tensors_cap) {
        uint64_t cap = w->tensors_cap ? w->tensors_cap * 2 : 64;
        w_tensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return sh_error_set(SH_ENOMEM, "out of memory");
        w->tensors = t;
        w->tensors_cap = cap;
    }
    w_tensor *t = &w->tensors[w->n_tensors];
    t->name = strdup(name);
    if (!t->name) return sh_error_set(SH_ENOMEM, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    memcpy(t->ne, probe.ne, sizeof t->ne);
    t->data = data;
    t->nbytes = nbytes;
    w->n_tensors++;
    return SH_OK;
}

static int fwrite_all(FILE *f, const void *p, uint64_t n) {
    if (n == 0) return SH_OK; /* p may be NULL (no metadata) */
    return fwrite(p, 1, n, f) == n ? SH_OK : sh_error_set(SH_EIO, "write failed: %s",
                                                          strerror(errno));
}

static int fpad(FILE *f, uint64_t *pos, uint64_t align) {
    static const uint8_t zeros[64];
    uint64_t pad = (align - *pos % align) % align;
    *pos += pad;
    for (uint64_t n; pad > 0; pad -= n) {
        n = pad < sizeof zeros ? pad : sizeof zeros;
        int st = fwrite_all(f, zeros, n);
        if (st) return st;
    }
    return SH_OK;
}

int gguf_writer_write(gguf_writer *w, const char *path) {
    int st = SH_OK;
    char tmp[4096];
    FILE *f = NULL;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return sh_error_set(SH_EINVAL, "path too long");
    f = fopen(tmp, "wb");
    if (!f) return sh_error_set(SH_EIO, "cannot create %s: %s", tmp, strerror(errno));

    uint32_t version = 3;
    uint64_t pos = 0, align = w->align ? w->align : GGUF_DEFAULT_ALIGNMENT;
    if ((st = fwrite_all(f, "GGUF", 4)) || (st = fwrite_all(f, &version, 4)) ||
        (st = fwrite_all(f, &w->n_tensors, 8)) || (st = fwrite_all(f, &w->n_kv, 8)) ||
        (st = fwrite_all(f, w->meta, w->meta_len)))
        goto out;
    pos = 24 + w->meta_len;
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        w_tensor *t = &w->tensors[i];
        uint64_t n = strlen(t->name);
        if ((st = fwrite_all(f, &n, 8)) || (st = fwrite_all(f, t->name, n)) ||
            (st = fwrite_all(f, &t->n_dims, 4)))
            goto out;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((st = fwrite_all(f, &t->ne[d], 8))) goto out;
        if ((st = fwrite_all(f, &t->type, 4)) || (st = fwrite_all(f, &off, 8))) goto out;
        pos += 8 + n + 4 + 8ull * t->n_dims + 4 + 8;
        off += (t->nbytes + align - 1) / align * align;
    }
    if ((st = fpad(f, &pos, align))) goto out;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        if ((st = fwrite_all(f, w->tensors[i].data, w->tensors[i].nbytes))) goto out;
        pos += w->tensors[i].nbytes;
        if ((st = fpad(f, &pos, align))) goto out;
    }
    if (fflush(f) != 0) st = sh_error_set(SH_EIO, "write failed: %s", strerror(errno));
out:
    if (fclose(f) != 0 && !st) st = sh_error_set(SH_EIO, "write failed: %s", strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = sh_error_set(SH_EIO, "cannot rename to %s: %s", path, strerror(errno));
    if (st) unlink(tmp);
    return st;
}
