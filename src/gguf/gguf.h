/* gguf.h — reading and writing GGUF files (versions 2 and 3).
 *
 * The reader maps the file and validates everything before anything uses
 * it: every count, length, offset, type, dimension and byte size is checked
 * against the file size with overflow-checked arithmetic; tensor data must
 * be aligned, inside the file and non-overlapping. After gguf_open succeeds,
 * every accessor below is safe on any input.
 *
 * Strings point into the mapping: they are NOT NUL-terminated. */
#ifndef NURI_GGUF_H
#define NURI_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nuri.h"

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* Limits the reader enforces (and the writer respects), so that hostile
 * files cannot make it allocate or recurse without bound. */
#define GGUF_MAX_KEY_LEN (64u * 1024)            /* metadata keys and tensor names */
#define GGUF_MAX_STRING_LEN (256u * 1024 * 1024) /* string values */
#define GGUF_MAX_ARRAY_DEPTH 8                   /* an array of arrays has depth 2 */

typedef struct {
    const char *data; /* not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_value gguf_value;
struct gguf_value {
    gguf_type type;
    union {
        uint64_t u64; /* every unsigned integer type and bool (0/1) */
        int64_t i64;  /* every signed integer type */
        double f64;   /* FLOAT32 and FLOAT64 */
        gguf_str str;
        struct {
            gguf_type elem_type;
            uint64_t n;
            /* Scalar elements: raw little-endian, unaligned, inside the
             * mapping; read them with gguf_arr_* below. */
            const void *raw;
            /* STRING elements: n strings. ARRAY elements: n values. */
            gguf_str *strs;
            gguf_value *items;
        } arr;
    } v;
};

typedef struct {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct {
    gguf_str name;
    uint32_t type;            /* a nuri_type (see quant.h) */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* element counts, ne[0] innermost; unused dims are 1 */
    uint64_t offset;          /* relative to the start of the data section */
    uint64_t nbytes;
    const void *data;         /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens, maps and validates a GGUF file. On failure, err names the problem
 * (and the key or tensor involved) and *out is NULL. */
nuri_status gguf_open(const char *path, gguf_file **out, nuri_error *err);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_alignment(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);
/* Start of the tensor data section (at most the file size: a file without
 * tensors may end before the padding that would precede it). */
uint64_t gguf_data_offset(const gguf_file *f);

uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);
/* The value of key, or NULL when absent. */
const gguf_value *gguf_get(const gguf_file *f, const char *key);

uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
/* The tensor called name, or NULL when absent. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

bool gguf_str_eq(gguf_str s, const char *cstr);
/* Bytes of one value of a scalar type; 0 for STRING, ARRAY and unknown ids. */
size_t gguf_scalar_size(uint32_t t);
const char *gguf_type_name(gguf_type t);

/* Bytes taken by a tensor of element type `type` and shape ne[0..n_dims):
 * nuri_row_size(type, ne[0]) * ne[1] * ... . Returns false, leaving *out
 * untouched, when the type is unknown to nuri_type_get, n_dims is not
 * 1..GGUF_MAX_DIMS, a dimension is negative, ne[0] is not a multiple of the
 * block size, or the element count or byte size overflows. */
bool gguf_tensor_nbytes(uint32_t type, uint32_t n_dims, const int64_t *ne, uint64_t *out);

/* Typed getters for metadata. Each returns NURI_OK and sets *out when the key
 * holds a value convertible to the requested type without loss (any integer
 * type in range for the integer getters; FLOAT32/FLOAT64 for floats), leaves
 * *out untouched and returns NURI_OK when the key is absent and required is
 * false, and fails with a message naming the key otherwise. */
nuri_status gguf_get_u32(const gguf_file *f, const char *key, bool required, uint32_t *out,
                         nuri_error *err);
nuri_status gguf_get_f32(const gguf_file *f, const char *key, bool required, float *out,
                         nuri_error *err);
nuri_status gguf_get_bool(const gguf_file *f, const char *key, bool required, bool *out,
                          nuri_error *err);
nuri_status gguf_get_str(const gguf_file *f, const char *key, bool required, gguf_str *out,
                         nuri_error *err);
/* An array whose elements have type elem_type (any of INT32/UINT32 accepted
 * when elem_type is INT32, FLOAT32/FLOAT64 when FLOAT32). *out is NULL when
 * the key is absent and not required. */
nuri_status gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type,
                         bool required, const gguf_value **out, nuri_error *err);

/* Element i of a scalar array (the caller checks i < n and the type). */
int64_t gguf_arr_int(const gguf_value *arr, uint64_t i);
double gguf_arr_float(const gguf_value *arr, uint64_t i);

/* ---- Writer ------------------------------------------------------------ */

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_create(void); /* NULL when out of memory */
void gguf_writer_free(gguf_writer *w);

/* Setters copy their arguments. Setting a key twice replaces its value.
 * They return NURI_ERR_NOMEM or NURI_ERR_INVALID_ARG on failure. */
nuri_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
nuri_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
nuri_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
nuri_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
nuri_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* A copy of any value read by gguf_open (including nested arrays). */
nuri_status gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v);
/* Scalar array of elem_type with n elements taken from data (native layout). */
nuri_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type,
                                const void *data, uint64_t n);
nuri_status gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs,
                                    uint64_t n);

/* Adds a tensor; data (nuri_row_size(type, ne[0]) * ne[1] * ... bytes) is
 * referenced, not copied, and must stay valid until gguf_writer_write. */
nuri_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const int64_t *ne, const void *data);

/* Writes a version-3 file with general.alignment (default 32). */
nuri_status gguf_writer_write(gguf_writer *w, const char *path, nuri_error *err);

#endif
