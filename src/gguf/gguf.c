/* gguf.c — the GGUF reader.
 *
 * gguf_open maps the file read-only and walks it once, validating as it
 * goes: every count is checked against the bytes that remain before
 * anything is allocated for it, every length and size is computed with
 * overflow-checked arithmetic, and tensor data must be aligned, inside the
 * file and non-overlapping. Strings and scalar arrays stay in the mapping;
 * only the tables (keys, tensors, string and nested-array element lists) are
 * allocated. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "quant/quant.h"

/* Smallest possible encodings, used to bound counts by the bytes left:
 * a key-value pair is a key length (8), a non-empty key (1), a value type
 * (4) and a value of at least one byte; a tensor info is a name length (8),
 * a non-empty name (1), n_dims (4), at least one dimension (8), a type (4)
 * and an offset (8). */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_INFO_BYTES 33u
#define MIN_STRING_BYTES 8u       /* an empty string: just its length */
#define MIN_ARRAY_BYTES 12u       /* an empty array: element type + count */
#define HEADER_BYTES 24u          /* magic, version, n_tensors, n_kv */

struct gguf_file {
    const uint8_t *map;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    gguf_kv *kvs;
    const gguf_kv **kvs_by_key; /* sorted by key, for lookups */
    uint64_t n_tensors;
    gguf_tensor *tensors;
    const gguf_tensor **tensors_by_name; /* sorted by name, for lookups */
};

/* ---- Names and strings -------------------------------------------------- */

static const uint8_t scalar_size[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = 1,  [GGUF_TYPE_INT8] = 1,    [GGUF_TYPE_UINT16] = 2,
    [GGUF_TYPE_INT16] = 2,  [GGUF_TYPE_UINT32] = 4,  [GGUF_TYPE_INT32] = 4,
    [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,   [GGUF_TYPE_UINT64] = 8,
    [GGUF_TYPE_INT64] = 8,  [GGUF_TYPE_FLOAT64] = 8,
};

static bool is_scalar_type(uint32_t t) {
    return t < GGUF_TYPE_COUNT && t != GGUF_TYPE_STRING && t != GGUF_TYPE_ARRAY;
}

size_t gguf_scalar_size(uint32_t t) { return is_scalar_type(t) ? scalar_size[t] : 0; }

static bool is_integer_type(uint32_t t) {
    return is_scalar_type(t) && t != GGUF_TYPE_FLOAT32 && t != GGUF_TYPE_FLOAT64 &&
           t != GGUF_TYPE_BOOL;
}

const char *gguf_type_name(gguf_type t) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "uint8", "int8",  "uint16", "int16", "uint32", "int32",  "float32",
        "bool",  "string", "array", "uint64", "int64", "float64",
    };
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

/* The name of a GGUF tensor type id, including the ids nuri cannot load,
 * so that "unsupported type 16 (IQ2_XXS)" tells the user what the file is. */
static const char *tensor_type_name(uint32_t type) {
    if (nuri_type_get(type)) return nuri_type_name(type);
    static const char *const ggml_names[] = {
        [4] = "Q4_2 (removed)", [5] = "Q4_3 (removed)", [16] = "IQ2_XXS",
        [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [21] = "IQ3_S",
        [22] = "IQ2_S", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64",
        [28] = "F64", [29] = "IQ1_M", [31] = "Q4_0_4_4 (removed)",
        [32] = "Q4_0_4_8 (removed)", [33] = "Q4_0_8_8 (removed)", [34] = "TQ1_0",
        [35] = "TQ2_0", [39] = "MXFP4",
    };
    if (type < sizeof ggml_names / sizeof ggml_names[0] && ggml_names[type])
        return ggml_names[type];
    return "unknown";
}

bool gguf_str_eq(gguf_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && (n == 0 || memcmp(s.data, cstr, n) == 0);
}

/* Orders strings bytewise, shorter first on a common prefix. */
static int str_cmp(const char *a, uint64_t alen, const char *b, uint64_t blen) {
    uint64_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* Writes a printable, quoted-safe rendering of s (at most 48 input bytes)
 * into buf, for error messages: they must stay on one line whatever bytes a
 * hostile file puts in its names. */
static const char *printable(gguf_str s, char *buf, size_t cap) {
    size_t o = 0;
    uint64_t shown = s.len < 48 ? s.len : 48;
    for (uint64_t i = 0; i < shown && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (shown < s.len && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}

/* ---- Tensor sizes ------------------------------------------------------- */

bool gguf_tensor_nbytes(uint32_t type, uint32_t n_dims, const int64_t *ne, uint64_t *out) {
    const nuri_type_traits *tr = nuri_type_get(type);
    if (!tr || tr->block_size <= 0 || n_dims < 1 || n_dims > GGUF_MAX_DIMS) return false;
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || !nuri_mul_u64(elements, (uint64_t)ne[d], &elements)) return false;
    }
    if (elements > (uint64_t)INT64_MAX) return false;
    if (ne[0] % tr->block_size != 0) return false;
    uint64_t bytes;
    if (!nuri_mul_u64((uint64_t)(ne[0] / tr->block_size), tr->type_size, &bytes)) return false;
    for (uint32_t d = 1; d < n_dims; d++) {
        if (!nuri_mul_u64(bytes, (uint64_t)ne[d], &bytes)) return false;
    }
    if (bytes > SIZE_MAX) return false;
    *out = bytes;
    return true;
}

/* ---- The bounded reader -------------------------------------------------- */

typedef struct {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    nuri_error *err;
    char where[192]; /* what is being read, e.g. "key #3 ('general.name')" */
} reader;

static uint64_t remaining(const reader *r) { return r->size - r->pos; }

static nuri_status truncated(reader *r) {
    return nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: truncated file while reading %s",
                     r->where);
}

static nuri_status out_of_memory(reader *r) {
    return nuri_fail(r->err, NURI_ERR_NOMEM, "gguf: out of memory while reading %s", r->where);
}

static nuri_status read_bytes(reader *r, uint64_t n, const uint8_t **out) {
    if (remaining(r) < n) return truncated(r);
    *out = r->base + r->pos;
    r->pos += n;
    return NURI_OK;
}

static nuri_status read_u32(reader *r, uint32_t *out) {
    const uint8_t *p = NULL;
    nuri_status st = read_bytes(r, 4, &p);
    if (st == NURI_OK) *out = nuri_load_u32(p);
    return st;
}

static nuri_status read_u64(reader *r, uint64_t *out) {
    const uint8_t *p = NULL;
    nuri_status st = read_bytes(r, 8, &p);
    if (st == NURI_OK) *out = nuri_load_u64(p);
    return st;
}

/* Reads a length-prefixed string of at most max_len bytes; what names it in
 * messages ("key", "string value", ...). */
static nuri_status read_str(reader *r, uint64_t max_len, const char *what, gguf_str *out) {
    uint64_t len = 0;
    nuri_status st = read_u64(r, &len);
    if (st != NURI_OK) return st;
    if (len > max_len)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: %s of %s is %" PRIu64 " bytes long (the limit is %" PRIu64 ")",
                         what, r->where, len, max_len);
    const uint8_t *p = NULL;
    st = read_bytes(r, len, &p);
    if (st != NURI_OK) return st;
    out->data = (const char *)p;
    out->len = len;
    return NURI_OK;
}

/* ---- Metadata values ---------------------------------------------------- */

/* Frees what parse_value allocated for v (element tables, recursively);
 * the bytes themselves belong to the mapping. Safe on zeroed values. */
static void free_value(gguf_value *v) {
    if (v->type != GGUF_TYPE_ARRAY) return;
    if (v->v.arr.items) {
        for (uint64_t i = 0; i < v->v.arr.n; i++) free_value(&v->v.arr.items[i]);
    }
    free(v->v.arr.strs);
    free(v->v.arr.items);
    v->v.arr.strs = NULL;
    v->v.arr.items = NULL;
}

static nuri_status parse_value(reader *r, uint32_t type, unsigned depth, gguf_value *out);

/* Reads an array body (element type, count, elements). depth is the
 * nesting level of this array: 1 for an array that is a key's value. */
static nuri_status parse_array(reader *r, unsigned depth, gguf_value *out) {
    out->type = GGUF_TYPE_ARRAY;
    if (depth > GGUF_MAX_ARRAY_DEPTH)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: %s has arrays nested more than %d levels deep", r->where,
                         GGUF_MAX_ARRAY_DEPTH);
    uint32_t elem_type = 0;
    uint64_t n = 0;
    nuri_status st = read_u32(r, &elem_type);
    if (st == NURI_OK) st = read_u64(r, &n);
    if (st != NURI_OK) return st;
    if (elem_type >= GGUF_TYPE_COUNT)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: %s has an array of unknown element type %" PRIu32, r->where,
                         elem_type);
    out->v.arr.elem_type = (gguf_type)elem_type;

    /* Every element takes at least min_bytes, so a count larger than the
     * bytes left allow is rejected before anything is allocated for it. */
    uint64_t min_bytes = elem_type == GGUF_TYPE_STRING  ? MIN_STRING_BYTES
                         : elem_type == GGUF_TYPE_ARRAY ? MIN_ARRAY_BYTES
                                                        : scalar_size[elem_type];
    uint64_t need;
    if (!nuri_mul_u64(n, min_bytes, &need) || need > remaining(r))
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: %s: array of %" PRIu64 " %s elements does not fit in the file",
                         r->where, n, gguf_type_name((gguf_type)elem_type));

    if (is_scalar_type(elem_type)) {
        const uint8_t *p = NULL;
        st = read_bytes(r, need, &p);
        if (st != NURI_OK) return st;
        out->v.arr.raw = p;
        out->v.arr.n = n;
        return NURI_OK;
    }
    if (n == 0) return NURI_OK;
    if (elem_type == GGUF_TYPE_STRING) {
        gguf_str *strs = nuri_calloc_array((size_t)n, sizeof *strs);
        if (!strs) return out_of_memory(r);
        out->v.arr.strs = strs;
        out->v.arr.n = n;
        for (uint64_t i = 0; i < n; i++) {
            st = read_str(r, GGUF_MAX_STRING_LEN, "a string element", &strs[i]);
            if (st != NURI_OK) return st;
        }
        return NURI_OK;
    }
    gguf_value *items = nuri_calloc_array((size_t)n, sizeof *items);
    if (!items) return out_of_memory(r);
    out->v.arr.items = items;
    out->v.arr.n = n;
    for (uint64_t i = 0; i < n; i++) {
        st = parse_array(r, depth + 1, &items[i]);
        if (st != NURI_OK) return st;
    }
    return NURI_OK;
}

/* Reads one value of a known-valid type. depth: nesting of the enclosing
 * array (0 for a key's value). */
static nuri_status parse_value(reader *r, uint32_t type, unsigned depth, gguf_value *out) {
    out->type = (gguf_type)type;
    if (type == GGUF_TYPE_STRING)
        return read_str(r, GGUF_MAX_STRING_LEN, "the string value", &out->v.str);
    if (type == GGUF_TYPE_ARRAY) return parse_array(r, depth + 1, out);

    const uint8_t *p = NULL;
    nuri_status st = read_bytes(r, scalar_size[type], &p);
    if (st != NURI_OK) return st;
    switch ((gguf_type)type) {
    case GGUF_TYPE_UINT8: out->v.u64 = p[0]; break;
    case GGUF_TYPE_INT8: out->v.i64 = (int8_t)p[0]; break;
    case GGUF_TYPE_UINT16: out->v.u64 = nuri_load_u16(p); break;
    case GGUF_TYPE_INT16: out->v.i64 = (int16_t)nuri_load_u16(p); break;
    case GGUF_TYPE_UINT32: out->v.u64 = nuri_load_u32(p); break;
    case GGUF_TYPE_INT32: out->v.i64 = (int32_t)nuri_load_u32(p); break;
    case GGUF_TYPE_FLOAT32: out->v.f64 = nuri_load_f32(p); break;
    case GGUF_TYPE_BOOL: out->v.u64 = p[0] != 0; break;
    case GGUF_TYPE_UINT64: out->v.u64 = nuri_load_u64(p); break;
    case GGUF_TYPE_INT64: memcpy(&out->v.i64, p, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(&out->v.f64, p, 8); break;
    default: break; /* STRING and ARRAY handled above */
    }
    return NURI_OK;
}

/* ---- Sorting and lookup ------------------------------------------------- */

static int kv_ptr_cmp(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    return str_cmp(x->key.data, x->key.len, y->key.data, y->key.len);
}

static int tensor_name_cmp(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return str_cmp(x->name.data, x->name.len, y->name.data, y->name.len);
}

static int tensor_offset_cmp(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x > y) - (x < y); /* file order, so messages do not depend on qsort */
}

const gguf_value *gguf_get(const gguf_file *f, const char *key) {
    if (!f || !key) return NULL;
    size_t klen = strlen(key);
    uint64_t lo = 0, hi = f->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_kv *kv = f->kvs_by_key[mid];
        int c = str_cmp(kv->key.data, kv->key.len, key, klen);
        if (c == 0) return &kv->value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t nlen = strlen(name);
    uint64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = f->tensors_by_name[mid];
        int c = str_cmp(t->name.data, t->name.len, name, nlen);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- Header, metadata and tensor table ---------------------------------- */

static nuri_status parse_header(reader *r, gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv) {
    snprintf(r->where, sizeof r->where, "the header");
    if (r->size < 4)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: file is too short (%" PRIu64 " bytes) to be a GGUF file", r->size);
    if (memcmp(r->base, "GGUF", 4) != 0) {
        char shown[40];
        gguf_str magic = {(const char *)r->base, 4};
        return nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: not a GGUF file (magic '%s')",
                         printable(magic, shown, sizeof shown));
    }
    r->pos = 4;
    nuri_status st = read_u32(r, &f->version);
    if (st != NURI_OK) return st;
    if (f->version == 1)
        return nuri_fail(r->err, NURI_ERR_UNSUPPORTED,
                         "gguf: GGUF version 1 is not supported (re-convert the model with a "
                         "current tool)");
    if (f->version == 0x02000000u || f->version == 0x03000000u)
        return nuri_fail(r->err, NURI_ERR_UNSUPPORTED,
                         "gguf: big-endian GGUF files are not supported");
    if (f->version != 2 && f->version != 3)
        return nuri_fail(r->err, NURI_ERR_UNSUPPORTED,
                         "gguf: unsupported GGUF version %" PRIu32 " (nuri reads versions 2 and 3)",
                         f->version);
    st = read_u64(r, n_tensors);
    if (st == NURI_OK) st = read_u64(r, n_kv);
    if (st != NURI_OK) return st;
    if (*n_kv > remaining(r) / MIN_KV_BYTES)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: header claims %" PRIu64
                         " metadata keys, more than the file (%" PRIu64 " bytes) can hold",
                         *n_kv, r->size);
    if (*n_tensors > remaining(r) / MIN_TENSOR_INFO_BYTES)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: header claims %" PRIu64
                         " tensors, more than the file (%" PRIu64 " bytes) can hold",
                         *n_tensors, r->size);
    return NURI_OK;
}

static nuri_status parse_metadata(reader *r, gguf_file *f, uint64_t n_kv) {
    if (n_kv == 0) return NURI_OK;
    f->kvs = nuri_calloc_array((size_t)n_kv, sizeof *f->kvs);
    if (!f->kvs) return out_of_memory(r);
    f->n_kv = n_kv;
    char shown[200];
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        snprintf(r->where, sizeof r->where, "key #%" PRIu64, i);
        nuri_status st = read_str(r, GGUF_MAX_KEY_LEN, "the name", &kv->key);
        if (st != NURI_OK) return st;
        if (kv->key.len == 0)
            return nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: key #%" PRIu64 " has an empty name",
                             i);
        snprintf(r->where, sizeof r->where, "key #%" PRIu64 " ('%s')", i,
                 printable(kv->key, shown, sizeof shown));
        uint32_t type = 0;
        st = read_u32(r, &type);
        if (st != NURI_OK) return st;
        if (type >= GGUF_TYPE_COUNT)
            return nuri_fail(r->err, NURI_ERR_FORMAT,
                             "gguf: %s has unknown value type %" PRIu32, r->where, type);
        st = parse_value(r, type, 0, &kv->value);
        if (st != NURI_OK) return st;
    }

    f->kvs_by_key = nuri_malloc_array((size_t)n_kv, sizeof *f->kvs_by_key);
    if (!f->kvs_by_key) return out_of_memory(r);
    for (uint64_t i = 0; i < n_kv; i++) f->kvs_by_key[i] = &f->kvs[i];
    if (n_kv > 1) qsort(f->kvs_by_key, (size_t)n_kv, sizeof *f->kvs_by_key, kv_ptr_cmp);
    for (uint64_t i = 1; i < n_kv; i++) {
        if (kv_ptr_cmp(&f->kvs_by_key[i - 1], &f->kvs_by_key[i]) == 0)
            return nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: duplicate key '%s'",
                             printable(f->kvs_by_key[i]->key, shown, sizeof shown));
    }
    return NURI_OK;
}

static nuri_status parse_alignment(reader *r, gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_value *v = gguf_get(f, "general.alignment");
    if (!v) return NURI_OK;
    if (v->type != GGUF_TYPE_UINT32)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: key 'general.alignment' has type %s, expected uint32",
                         gguf_type_name(v->type));
    if (v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)) != 0)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: general.alignment is %" PRIu64 ", not a power of two", v->v.u64);
    f->alignment = v->v.u64;
    return NURI_OK;
}

/* Reads one tensor info and checks its shape and type; data placement is
 * checked once the data section's start is known. */
static nuri_status parse_tensor_info(reader *r, uint64_t index, gguf_tensor *t) {
    char shown[200];
    snprintf(r->where, sizeof r->where, "tensor #%" PRIu64, index);
    nuri_status st = read_str(r, GGUF_MAX_KEY_LEN, "the name", &t->name);
    if (st != NURI_OK) return st;
    if (t->name.len == 0)
        return nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: tensor #%" PRIu64 " has an empty name",
                         index);
    const char *name = printable(t->name, shown, sizeof shown);
    snprintf(r->where, sizeof r->where, "tensor #%" PRIu64 " ('%s')", index, name);

    st = read_u32(r, &t->n_dims);
    if (st != NURI_OK) return st;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: tensor '%s' has %" PRIu32 " dimensions (1 to %d are allowed)",
                         name, t->n_dims, GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne = 0;
        st = read_u64(r, &ne);
        if (st != NURI_OK) return st;
        if (ne > (uint64_t)INT64_MAX)
            return nuri_fail(r->err, NURI_ERR_FORMAT,
                             "gguf: tensor '%s' dimension %" PRIu32 " is too large (%" PRIu64 ")",
                             name, d, ne);
        t->ne[d] = (int64_t)ne;
    }
    st = read_u32(r, &t->type);
    if (st == NURI_OK) st = read_u64(r, &t->offset);
    if (st != NURI_OK) return st;

    const nuri_type_traits *tr = nuri_type_get(t->type);
    if (!tr)
        return nuri_fail(r->err, NURI_ERR_UNSUPPORTED,
                         "gguf: tensor '%s' has unsupported type %" PRIu32 " (%s)", name, t->type,
                         tensor_type_name(t->type));
    if (tr->block_size > 0 && t->ne[0] % tr->block_size != 0)
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: tensor '%s' (%s) has %" PRId64
                         " columns, not a multiple of the block size %" PRId64,
                         name, tr->name, t->ne[0], tr->block_size);
    if (!gguf_tensor_nbytes(t->type, t->n_dims, t->ne, &t->nbytes))
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: tensor '%s' shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                         "] is too large",
                         name, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
    return NURI_OK;
}

/* Checks that each tensor's data is aligned, inside the file and disjoint
 * from every other tensor's, and points t->data at it. */
static nuri_status place_tensors(reader *r, gguf_file *f, uint64_t data_offset) {
    char shown[200], shown2[200];
    uint64_t n = f->n_tensors;
    for (uint64_t i = 0; i < n; i++) {
        gguf_tensor *t = &f->tensors[i];
        const char *name = printable(t->name, shown, sizeof shown);
        if (t->offset % f->alignment != 0)
            return nuri_fail(r->err, NURI_ERR_FORMAT,
                             "gguf: tensor '%s' offset %" PRIu64
                             " is not a multiple of the alignment %" PRIu64,
                             name, t->offset, f->alignment);
        uint64_t start, end;
        if (!nuri_add_u64(data_offset, t->offset, &start) ||
            !nuri_add_u64(start, t->nbytes, &end))
            return nuri_fail(r->err, NURI_ERR_FORMAT,
                             "gguf: tensor '%s' data (%" PRIu64 " bytes at data offset %" PRIu64
                             ") lies outside the file (size %" PRIu64 ")",
                             name, t->nbytes, t->offset, r->size);
        if (end > r->size)
            return nuri_fail(r->err, NURI_ERR_FORMAT,
                             "gguf: tensor '%s' data [%" PRIu64 ", %" PRIu64
                             ") lies outside the file (size %" PRIu64 ")",
                             name, start, end, r->size);
        t->data = r->base + start;
    }

    const gguf_tensor **by_offset = nuri_malloc_array((size_t)n, sizeof *by_offset);
    if (!by_offset) return out_of_memory(r);
    for (uint64_t i = 0; i < n; i++) by_offset[i] = &f->tensors[i];
    if (n > 1) qsort(by_offset, (size_t)n, sizeof *by_offset, tensor_offset_cmp);
    /* Sorted by start, two non-empty tensors overlap exactly when one starts
     * before the furthest end seen so far. Empty tensors occupy nothing. */
    const gguf_tensor *furthest = NULL;
    uint64_t furthest_end = 0;
    nuri_status st = NURI_OK;
    for (uint64_t i = 0; i < n && st == NURI_OK; i++) {
        const gguf_tensor *t = by_offset[i];
        if (t->nbytes == 0) continue;
        if (furthest && t->offset < furthest_end) {
            st = nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: tensors '%s' and '%s' overlap",
                           printable(furthest->name, shown, sizeof shown),
                           printable(t->name, shown2, sizeof shown2));
        } else if (!furthest || t->offset + t->nbytes > furthest_end) {
            furthest = t;
            furthest_end = t->offset + t->nbytes; /* cannot overflow: checked above */
        }
    }
    free(by_offset);
    return st;
}

static nuri_status parse_tensors(reader *r, gguf_file *f, uint64_t n_tensors) {
    if (n_tensors > remaining(r) / MIN_TENSOR_INFO_BYTES) {
        snprintf(r->where, sizeof r->where, "the tensor table");
        return nuri_fail(r->err, NURI_ERR_FORMAT,
                         "gguf: header claims %" PRIu64
                         " tensors, more than the rest of the file (%" PRIu64 " bytes) can hold",
                         n_tensors, remaining(r));
    }
    if (n_tensors > 0) {
        f->tensors = nuri_calloc_array((size_t)n_tensors, sizeof *f->tensors);
        if (!f->tensors) return out_of_memory(r);
        f->n_tensors = n_tensors;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        nuri_status st = parse_tensor_info(r, i, &f->tensors[i]);
        if (st != NURI_OK) return st;
    }

    uint64_t data_offset;
    uint64_t mask = f->alignment - 1;
    if (!nuri_add_u64(r->pos, mask, &data_offset))
        return nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: data section offset overflows");
    data_offset &= ~mask;
    if (n_tensors > 0) {
        nuri_status st = place_tensors(r, f, data_offset);
        if (st != NURI_OK) return st;
        char shown[200];
        f->tensors_by_name = nuri_malloc_array((size_t)n_tensors, sizeof *f->tensors_by_name);
        if (!f->tensors_by_name) return out_of_memory(r);
        for (uint64_t i = 0; i < n_tensors; i++) f->tensors_by_name[i] = &f->tensors[i];
        if (n_tensors > 1)
            qsort(f->tensors_by_name, (size_t)n_tensors, sizeof *f->tensors_by_name,
                  tensor_name_cmp);
        for (uint64_t i = 1; i < n_tensors; i++) {
            if (tensor_name_cmp(&f->tensors_by_name[i - 1], &f->tensors_by_name[i]) == 0)
                return nuri_fail(r->err, NURI_ERR_FORMAT, "gguf: duplicate tensor name '%s'",
                                 printable(f->tensors_by_name[i]->name, shown, sizeof shown));
        }
    }
    /* A file without tensors may end before the padding that would start
     * its (empty) data section. */
    f->data_offset = data_offset < r->size ? data_offset : r->size;
    return NURI_OK;
}

/* ---- Opening and closing ------------------------------------------------ */

nuri_status gguf_open(const char *path, gguf_file **out, nuri_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return nuri_fail(err, NURI_ERR_INVALID_ARG, "gguf: no path given");

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nuri_fail(err, NURI_ERR_IO, "gguf: cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return nuri_fail(err, NURI_ERR_IO, "gguf: cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return nuri_fail(err, NURI_ERR_IO, "gguf: not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return nuri_fail(err, NURI_ERR_FORMAT, "gguf: file is empty");
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return nuri_fail(err, NURI_ERR_UNSUPPORTED, "gguf: file too large to map");
    }
    uint64_t size = (uint64_t)st.st_size;
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED)
        return nuri_fail(err, NURI_ERR_IO, "gguf: cannot map: %s", strerror(map_errno));

    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        munmap(map, (size_t)size);
        return nuri_fail(err, NURI_ERR_NOMEM, "gguf: out of memory");
    }
    f->map = map;
    f->size = size;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;

    reader r = {.base = map, .size = size, .pos = 0, .err = err};
    uint64_t n_tensors = 0, n_kv = 0;
    nuri_status s = parse_header(&r, f, &n_tensors, &n_kv);
    if (s == NURI_OK) s = parse_metadata(&r, f, n_kv);
    if (s == NURI_OK) s = parse_alignment(&r, f);
    if (s == NURI_OK) s = parse_tensors(&r, f, n_tensors);
    if (s != NURI_OK) {
        gguf_close(f);
        return s;
    }
    *out = f;
    return NURI_OK;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (uint64_t i = 0; i < f->n_kv; i++) free_value(&f->kvs[i].value);
    free(f->kvs);
    free(f->kvs_by_key);
    free(f->tensors);
    free(f->tensors_by_name);
    if (f->map) munmap((void *)f->map, (size_t)f->size);
    free(f);
}

/* ---- Accessors ---------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f ? f->version : 0; }
uint64_t gguf_alignment(const gguf_file *f) { return f ? f->alignment : 0; }
uint64_t gguf_file_size(const gguf_file *f) { return f ? f->size : 0; }
uint64_t gguf_data_offset(const gguf_file *f) { return f ? f->data_offset : 0; }
uint64_t gguf_n_kv(const gguf_file *f) { return f ? f->n_kv : 0; }
uint64_t gguf_n_tensors(const gguf_file *f) { return f ? f->n_tensors : 0; }

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i) {
    return f && i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i) {
    return f && i < f->n_tensors ? &f->tensors[i] : NULL;
}

/* ---- Typed getters ------------------------------------------------------ */

/* Looks key up for a getter: NULL with NURI_OK in *st when it is absent and
 * optional, NULL with a failure when it is absent and required. */
static const gguf_value *lookup(const gguf_file *f, const char *key, bool required,
                                nuri_status *st, nuri_error *err) {
    *st = NURI_OK;
    const gguf_value *v = gguf_get(f, key);
    if (!v && required)
        *st = nuri_fail(err, NURI_ERR_FORMAT, "gguf: required key '%s' is missing",
                        key ? key : "(null)");
    return v;
}

static nuri_status wrong_type(const char *key, const gguf_value *v, const char *expected,
                              nuri_error *err) {
    return nuri_fail(err, NURI_ERR_FORMAT, "gguf: key '%s' has type %s, expected %s", key,
                     gguf_type_name(v->type), expected);
}

nuri_status gguf_get_u32(const gguf_file *f, const char *key, bool required, uint32_t *out,
                         nuri_error *err) {
    nuri_status st;
    const gguf_value *v = lookup(f, key, required, &st, err);
    if (!v) return st;
    if (!is_integer_type(v->type)) return wrong_type(key, v, "an integer", err);
    bool is_signed = v->type == GGUF_TYPE_INT8 || v->type == GGUF_TYPE_INT16 ||
                     v->type == GGUF_TYPE_INT32 || v->type == GGUF_TYPE_INT64;
    if (is_signed) {
        if (v->v.i64 < 0 || v->v.i64 > (int64_t)UINT32_MAX)
            return nuri_fail(err, NURI_ERR_FORMAT,
                             "gguf: key '%s' value %" PRId64 " does not fit in uint32", key,
                             v->v.i64);
        *out = (uint32_t)v->v.i64;
    } else {
        if (v->v.u64 > UINT32_MAX)
            return nuri_fail(err, NURI_ERR_FORMAT,
                             "gguf: key '%s' value %" PRIu64 " does not fit in uint32", key,
                             v->v.u64);
        *out = (uint32_t)v->v.u64;
    }
    return NURI_OK;
}

nuri_status gguf_get_f32(const gguf_file *f, const char *key, bool required, float *out,
                         nuri_error *err) {
    nuri_status st;
    const gguf_value *v = lookup(f, key, required, &st, err);
    if (!v) return st;
    if (v->type != GGUF_TYPE_FLOAT32 && v->type != GGUF_TYPE_FLOAT64)
        return wrong_type(key, v, "a float", err);
    double d = v->v.f64;
    /* Converting a finite double beyond float's range is undefined. */
    if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX))
        return nuri_fail(err, NURI_ERR_FORMAT, "gguf: key '%s' value %g does not fit in float32",
                         key, d);
    *out = (float)d;
    return NURI_OK;
}

nuri_status gguf_get_bool(const gguf_file *f, const char *key, bool required, bool *out,
                          nuri_error *err) {
    nuri_status st;
    const gguf_value *v = lookup(f, key, required, &st, err);
    if (!v) return st;
    if (v->type != GGUF_TYPE_BOOL) return wrong_type(key, v, "bool", err);
    *out = v->v.u64 != 0;
    return NURI_OK;
}

nuri_status gguf_get_str(const gguf_file *f, const char *key, bool required, gguf_str *out,
                         nuri_error *err) {
    nuri_status st;
    const gguf_value *v = lookup(f, key, required, &st, err);
    if (!v) return st;
    if (v->type != GGUF_TYPE_STRING) return wrong_type(key, v, "string", err);
    *out = v->v.str;
    return NURI_OK;
}

nuri_status gguf_get_arr(const gguf_file *f, const char *key, gguf_type elem_type,
                         bool required, const gguf_value **out, nuri_error *err) {
    *out = NULL;
    nuri_status st;
    const gguf_value *v = lookup(f, key, required, &st, err);
    if (!v) return st;
    if (v->type != GGUF_TYPE_ARRAY) return wrong_type(key, v, "array", err);
    gguf_type have = v->v.arr.elem_type;
    bool ok = have == elem_type;
    if (elem_type == GGUF_TYPE_INT32) ok = have == GGUF_TYPE_INT32 || have == GGUF_TYPE_UINT32;
    if (elem_type == GGUF_TYPE_FLOAT32)
        ok = have == GGUF_TYPE_FLOAT32 || have == GGUF_TYPE_FLOAT64;
    if (!ok)
        return nuri_fail(err, NURI_ERR_FORMAT,
                         "gguf: key '%s' is an array of %s, expected an array of %s", key,
                         gguf_type_name(have), gguf_type_name(elem_type));
    *out = v;
    return NURI_OK;
}

int64_t gguf_arr_int(const gguf_value *arr, uint64_t i) {
    if (!arr || arr->type != GGUF_TYPE_ARRAY || i >= arr->v.arr.n ||
        !is_scalar_type(arr->v.arr.elem_type) || !arr->v.arr.raw)
        return 0;
    gguf_type t = arr->v.arr.elem_type;
    const uint8_t *p = (const uint8_t *)arr->v.arr.raw + i * scalar_size[t];
    switch (t) {
    case GGUF_TYPE_UINT8: return p[0];
    case GGUF_TYPE_INT8: return (int8_t)p[0];
    case GGUF_TYPE_UINT16: return nuri_load_u16(p);
    case GGUF_TYPE_INT16: return (int16_t)nuri_load_u16(p);
    case GGUF_TYPE_UINT32: return nuri_load_u32(p);
    case GGUF_TYPE_INT32: return (int32_t)nuri_load_u32(p);
    case GGUF_TYPE_BOOL: return p[0] != 0;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    default: return 0; /* floats: not integers */
    }
}

double gguf_arr_float(const gguf_value *arr, uint64_t i) {
    if (!arr || arr->type != GGUF_TYPE_ARRAY || i >= arr->v.arr.n ||
        !is_scalar_type(arr->v.arr.elem_type) || !arr->v.arr.raw)
        return 0;
    gguf_type t = arr->v.arr.elem_type;
    const uint8_t *p = (const uint8_t *)arr->v.arr.raw + i * scalar_size[t];
    if (t == GGUF_TYPE_FLOAT32) return nuri_load_f32(p);
    if (t == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, p, 8);
        return d;
    }
    if (t == GGUF_TYPE_UINT64) return (double)nuri_load_u64(p);
    return (double)gguf_arr_int(arr, i);
}
