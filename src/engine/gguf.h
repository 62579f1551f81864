/* gguf.h - GGUF v2/v3 reader (over mmap) and writer.
 *
 * The reader maps the whole file read-only and validates every count, length and offset
 * against the file size before it is used; after gguf_open() succeeds, every pointer the API
 * hands out lies inside the mapping. Strings in the file are not NUL-terminated: they are
 * returned as (pointer, length) pairs, borrowed from the mapping. */
#ifndef SH_GGUF_H
#define SH_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* ---- value types (numbering from the GGUF spec) ---- */
typedef enum {
    GGUF_T_UINT8 = 0,
    GGUF_T_INT8 = 1,
    GGUF_T_UINT16 = 2,
    GGUF_T_INT16 = 3,
    GGUF_T_UINT32 = 4,
    GGUF_T_INT32 = 5,
    GGUF_T_FLOAT32 = 6,
    GGUF_T_BOOL = 7,
    GGUF_T_STRING = 8,
    GGUF_T_ARRAY = 9,
    GGUF_T_UINT64 = 10,
    GGUF_T_INT64 = 11,
    GGUF_T_FLOAT64 = 12,
    GGUF_T_COUNT_
} gguf_vtype;

typedef struct {
    const char *ptr; /* borrowed, not NUL-terminated */
    uint64_t len;
} gguf_str;

#define GGUF_MAX_DIMS 4

typedef struct {
    gguf_str name;
    uint32_t type;              /* ggml type id (see quant.h) */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the innermost (contiguous) dimension; unused = 1 */
    uint64_t offset;            /* relative to the data section */
    const void *data;           /* borrowed, inside the mapping */
    uint64_t nbytes;
} gguf_tensor;

typedef struct gguf gguf;

/* ---- reading ---- */
/* Map and validate a file. On error returns SH_E* with a one-line detail naming the problem
 * (sh_error_last()). Caller closes with gguf_close(). A tensor type this engine cannot
 * compute with (quant.h) is an error: the file could not be used anyway. */
int gguf_open(gguf **out, const char *path);
void gguf_close(gguf *g);
uint32_t gguf_version(const gguf *g);
uint64_t gguf_file_size(const gguf *g);
uint64_t gguf_alignment(const gguf *g);

/* ---- metadata ---- */
int64_t gguf_n_kv(const gguf *g);
int64_t gguf_find_key(const gguf *g, const char *key); /* index, or -1 */
gguf_str gguf_kv_key(const gguf *g, int64_t i);
gguf_vtype gguf_kv_type(const gguf *g, int64_t i);
/* For arrays: element type and count (0 for non-arrays). */
gguf_vtype gguf_arr_type(const gguf *g, int64_t i);
uint64_t gguf_arr_n(const gguf *g, int64_t i);
/* Pointer to the packed elements of a numeric array (borrowed; little-endian, may be
 * unaligned: read with memcpy). NULL for string arrays. */
const void *gguf_arr_data(const gguf *g, int64_t i);
/* j-th string of a string array (borrowed). */
gguf_str gguf_arr_str(const gguf *g, int64_t i, uint64_t j);

/* Typed getters by key. Return SH_OK, SH_ENOTFOUND when the key is absent, SH_EFORMAT when
 * the value has an incompatible type. Integer getters accept any integer type (and bool) whose
 * value fits; float getters accept f32/f64. */
int gguf_get_u32(const gguf *g, const char *key, uint32_t *out);
int gguf_get_i64(const gguf *g, const char *key, int64_t *out);
int gguf_get_f32(const gguf *g, const char *key, float *out);
int gguf_get_bool(const gguf *g, const char *key, int *out);
int gguf_get_str(const gguf *g, const char *key, gguf_str *out);
/* Copies a string value into buf (NUL-terminated, truncated to cap-1). */
int gguf_get_cstr(const gguf *g, const char *key, char *buf, size_t cap);
int gguf_str_eq(gguf_str s, const char *c);

/* ---- tensors ---- */
int64_t gguf_n_tensors(const gguf *g);
const gguf_tensor *gguf_tensor_at(const gguf *g, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name); /* NULL if absent */

/* ---- writing ---- */
/* Builds a GGUF v3 file in memory-light fashion: metadata and tensor infos are collected,
 * tensor data is borrowed until gguf_writer_write() (caller keeps it alive). */
typedef struct gguf_writer gguf_writer;
int gguf_writer_new(gguf_writer **out);
void gguf_writer_free(gguf_writer *w);
int gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_w_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_w_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_w_f32(gguf_writer *w, const char *key, float v);
int gguf_w_bool(gguf_writer *w, const char *key, int v);
int gguf_w_str(gguf_writer *w, const char *key, const char *v);
int gguf_w_strn(gguf_writer *w, const char *key, const char *v, uint64_t len);
/* Array of n elements of numeric type t, copied. */
int gguf_w_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data, uint64_t n);
/* Array of n strings (lens may be NULL for NUL-terminated), copied. */
int gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                   const uint64_t *lens, uint64_t n);
/* Copy key i of an open file (any type, arrays included) into the writer. */
int gguf_w_copy_kv(gguf_writer *w, const gguf *g, int64_t i);
/* Tensor: ne as in gguf_tensor (n_dims used), data borrowed, nbytes must match the type. */
int gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                  const int64_t *ne, const void *data, uint64_t nbytes);
/* Write to path (via a temporary file and rename). */
int gguf_writer_write(gguf_writer *w, const char *path);

#endif
