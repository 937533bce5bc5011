/* gguf_write.c — the GGUF writer.
 *
 * Metadata is deep-copied into the writer as it is set; tensors are kept
 * by reference. gguf_writer_write lays the file out (version 3, tensor data
 * aligned to general.alignment), writes it to PATH.tmp and renames it over
 * PATH, so readers never see a half-written file. */
#include "gguf/gguf.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "quant/quant.h"

typedef struct {
    char *key;
    gguf_value value; /* owns every byte it points to */
} writer_kv;

typedef struct {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data; /* the caller's */
} writer_tensor;

struct gguf_writer {
    writer_kv *kvs;
    size_t n_kv, cap_kv;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
};

static bool is_scalar_type(uint32_t t) { return gguf_scalar_size(t) != 0; }

/* ---- Owned values -------------------------------------------------------- */

/* Frees everything an owned value (made by copy_value) points to. Safe on
 * zeroed and partially built values. */
static void free_owned(gguf_value *v) {
    if (v->type == GGUF_TYPE_STRING) {
        free((void *)v->v.str.data);
    } else if (v->type == GGUF_TYPE_ARRAY) {
        free((void *)v->v.arr.raw);
        if (v->v.arr.strs) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) free((void *)v->v.arr.strs[i].data);
        }
        if (v->v.arr.items) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) free_owned(&v->v.arr.items[i]);
        }
        free(v->v.arr.strs);
        free(v->v.arr.items);
    }
    memset(v, 0, sizeof *v);
}

static nuri_status copy_str(gguf_str src, gguf_str *dst) {
    if (src.len > GGUF_MAX_STRING_LEN || (src.len > 0 && !src.data)) return NURI_ERR_INVALID_ARG;
    char *p = malloc(src.len ? (size_t)src.len : 1);
    if (!p) return NURI_ERR_NOMEM;
    if (src.len) memcpy(p, src.data, (size_t)src.len);
    dst->data = p;
    dst->len = src.len;
    return NURI_OK;
}

/* Checks that a scalar value is in range for its type, so that what is
 * written is exactly what was set. */
static bool scalar_in_range(const gguf_value *v) {
    switch (v->type) {
    case GGUF_TYPE_UINT8: return v->v.u64 <= UINT8_MAX;
    case GGUF_TYPE_INT8: return v->v.i64 >= INT8_MIN && v->v.i64 <= INT8_MAX;
    case GGUF_TYPE_UINT16: return v->v.u64 <= UINT16_MAX;
    case GGUF_TYPE_INT16: return v->v.i64 >= INT16_MIN && v->v.i64 <= INT16_MAX;
    case GGUF_TYPE_UINT32: return v->v.u64 <= UINT32_MAX;
    case GGUF_TYPE_INT32: return v->v.i64 >= INT32_MIN && v->v.i64 <= INT32_MAX;
    case GGUF_TYPE_BOOL: return v->v.u64 <= 1;
    /* Converting a finite double beyond float's range is undefined. */
    case GGUF_TYPE_FLOAT32: return !isfinite(v->v.f64) || fabs(v->v.f64) <= FLT_MAX;
    default: return true;
    }
}

/* Deep-copies src into dst (zeroed by the caller). depth: the nesting level
 * src would have in a file (0 for a key's value). On failure dst holds a
 * partial copy that free_owned releases. */
static nuri_status copy_value(const gguf_value *src, unsigned depth, gguf_value *dst) {
    if ((unsigned)src->type >= GGUF_TYPE_COUNT) return NURI_ERR_INVALID_ARG;
    dst->type = src->type;
    if (src->type == GGUF_TYPE_STRING) return copy_str(src->v.str, &dst->v.str);
    if (src->type != GGUF_TYPE_ARRAY) {
        if (!scalar_in_range(src)) return NURI_ERR_INVALID_ARG;
        dst->v = src->v;
        return NURI_OK;
    }

    if (depth + 1 > GGUF_MAX_ARRAY_DEPTH) return NURI_ERR_INVALID_ARG;
    gguf_type et = src->v.arr.elem_type;
    uint64_t n = src->v.arr.n;
    if ((unsigned)et >= GGUF_TYPE_COUNT || n > SIZE_MAX) return NURI_ERR_INVALID_ARG;
    dst->v.arr.elem_type = et;
    if (n == 0) return NURI_OK;

    if (is_scalar_type(et)) {
        uint64_t bytes;
        if (!nuri_mul_u64(n, gguf_scalar_size(et), &bytes) || bytes > SIZE_MAX || !src->v.arr.raw)
            return NURI_ERR_INVALID_ARG;
        uint8_t *raw = malloc((size_t)bytes);
        if (!raw) return NURI_ERR_NOMEM;
        memcpy(raw, src->v.arr.raw, (size_t)bytes);
        if (et == GGUF_TYPE_BOOL) {
            for (uint64_t i = 0; i < n; i++) raw[i] = raw[i] != 0;
        }
        dst->v.arr.raw = raw;
        dst->v.arr.n = n;
        return NURI_OK;
    }
    if (et == GGUF_TYPE_STRING) {
        if (!src->v.arr.strs) return NURI_ERR_INVALID_ARG;
        gguf_str *strs = nuri_calloc_array((size_t)n, sizeof *strs);
        if (!strs) return NURI_ERR_NOMEM;
        dst->v.arr.strs = strs;
        dst->v.arr.n = n;
        for (uint64_t i = 0; i < n; i++) {
            nuri_status st = copy_str(src->v.arr.strs[i], &strs[i]);
            if (st != NURI_OK) return st;
        }
        return NURI_OK;
    }
    if (!src->v.arr.items) return NURI_ERR_INVALID_ARG;
    gguf_value *items = nuri_calloc_array((size_t)n, sizeof *items);
    if (!items) return NURI_ERR_NOMEM;
    dst->v.arr.items = items;
    dst->v.arr.n = n;
    for (uint64_t i = 0; i < n; i++) {
        if (src->v.arr.items[i].type != GGUF_TYPE_ARRAY) return NURI_ERR_INVALID_ARG;
        nuri_status st = copy_value(&src->v.arr.items[i], depth + 1, &items[i]);
        if (st != NURI_OK) return st;
    }
    return NURI_OK;
}

/* ---- Building ------------------------------------------------------------ */

gguf_writer *gguf_writer_create(void) { return calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free_owned(&w->kvs[i].value);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* Grows an array of elem_size-byte elements so that one more fits. */
static bool reserve_one(void **items, size_t *cap, size_t n, size_t elem_size) {
    if (n < *cap) return true;
    size_t new_cap = *cap ? *cap * 2 : 16;
    if (new_cap < *cap || new_cap > SIZE_MAX / elem_size) return false;
    void *p = realloc(*items, new_cap * elem_size);
    if (!p) return false;
    *items = p;
    *cap = new_cap;
    return true;
}

static bool valid_name(const char *s) {
    return s && s[0] && strlen(s) <= GGUF_MAX_KEY_LEN;
}

nuri_status gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v) {
    if (!w || !valid_name(key) || !v) return NURI_ERR_INVALID_ARG;
    gguf_value copy;
    memset(&copy, 0, sizeof copy);
    nuri_status st = copy_value(v, 0, &copy);
    if (st != NURI_OK) {
        free_owned(&copy);
        return st;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free_owned(&w->kvs[i].value);
            w->kvs[i].value = copy;
            return NURI_OK;
        }
    }
    char *key_copy = strdup(key);
    if (!key_copy || !reserve_one((void **)&w->kvs, &w->cap_kv, w->n_kv, sizeof *w->kvs)) {
        free(key_copy);
        free_owned(&copy);
        return NURI_ERR_NOMEM;
    }
    w->kvs[w->n_kv].key = key_copy;
    w->kvs[w->n_kv].value = copy;
    w->n_kv++;
    return NURI_OK;
}

nuri_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    gguf_value val = {.type = GGUF_TYPE_UINT32, .v.u64 = v};
    return gguf_writer_set_value(w, key, &val);
}

nuri_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    gguf_value val = {.type = GGUF_TYPE_INT32, .v.i64 = v};
    return gguf_writer_set_value(w, key, &val);
}

nuri_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    gguf_value val = {.type = GGUF_TYPE_FLOAT32, .v.f64 = v};
    return gguf_writer_set_value(w, key, &val);
}

nuri_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) {
    gguf_value val = {.type = GGUF_TYPE_BOOL, .v.u64 = v ? 1 : 0};
    return gguf_writer_set_value(w, key, &val);
}

nuri_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    if (!v) return NURI_ERR_INVALID_ARG;
    gguf_value val = {.type = GGUF_TYPE_STRING, .v.str = {v, strlen(v)}};
    return gguf_writer_set_value(w, key, &val);
}

nuri_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type,
                                const void *data, uint64_t n) {
    if (!is_scalar_type(elem_type) || (n > 0 && !data)) return NURI_ERR_INVALID_ARG;
    gguf_value val = {.type = GGUF_TYPE_ARRAY};
    val.v.arr.elem_type = elem_type;
    val.v.arr.n = n;
    val.v.arr.raw = data;
    return gguf_writer_set_value(w, key, &val);
}

nuri_status gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs,
                                    uint64_t n) {
    if (n > 0 && !strs) return NURI_ERR_INVALID_ARG;
    if (n > SIZE_MAX) return NURI_ERR_NOMEM;
    gguf_str *views = nuri_malloc_array((size_t)n, sizeof *views);
    if (!views) return NURI_ERR_NOMEM;
    nuri_status st = NURI_OK;
    for (uint64_t i = 0; i < n && st == NURI_OK; i++) {
        if (!strs[i]) st = NURI_ERR_INVALID_ARG;
        else views[i] = (gguf_str){strs[i], strlen(strs[i])};
    }
    if (st == NURI_OK) {
        gguf_value val = {.type = GGUF_TYPE_ARRAY};
        val.v.arr.elem_type = GGUF_TYPE_STRING;
        val.v.arr.n = n;
        val.v.arr.strs = views;
        st = gguf_writer_set_value(w, key, &val);
    }
    free(views);
    return st;
}

nuri_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const int64_t *ne, const void *data) {
    if (!w || !valid_name(name) || !ne || n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return NURI_ERR_INVALID_ARG;
    uint64_t nbytes;
    if (!gguf_tensor_nbytes(type, n_dims, ne, &nbytes) || (nbytes > 0 && !data))
        return NURI_ERR_INVALID_ARG;
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (strcmp(w->tensors[i].name, name) == 0) return NURI_ERR_INVALID_ARG;
    }
    char *name_copy = strdup(name);
    if (!name_copy ||
        !reserve_one((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors)) {
        free(name_copy);
        return NURI_ERR_NOMEM;
    }
    writer_tensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = name_copy;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    t->data = data;
    return NURI_OK;
}

/* ---- Output ------------------------------------------------------------- */

typedef struct {
    FILE *file;
    uint64_t pos;
    bool failed;
    int error; /* errno of the first failure */
} sink;

static void put(sink *s, const void *p, uint64_t n) {
    if (s->failed || n == 0) return;
    if (fwrite(p, 1, (size_t)n, s->file) != n) {
        s->failed = true;
        s->error = errno;
    }
    s->pos += n;
}

static void put_u32(sink *s, uint32_t v) { put(s, &v, 4); }
static void put_u64(sink *s, uint64_t v) { put(s, &v, 8); }

static void put_str(sink *s, const char *p, uint64_t len) {
    put_u64(s, len);
    put(s, p, len);
}

static void pad_to(sink *s, uint64_t target) {
    static const uint8_t zeros[256];
    while (!s->failed && s->pos < target) {
        uint64_t n = target - s->pos;
        put(s, zeros, n < sizeof zeros ? n : sizeof zeros);
    }
}

/* Writes an array's element type, count and elements. */
static void put_array_body(sink *s, const gguf_value *v) {
    gguf_type et = v->v.arr.elem_type;
    put_u32(s, (uint32_t)et);
    put_u64(s, v->v.arr.n);
    if (v->v.arr.n == 0) return;
    if (is_scalar_type(et)) {
        put(s, v->v.arr.raw, v->v.arr.n * gguf_scalar_size(et)); /* checked when copied */
    } else if (et == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < v->v.arr.n; i++)
            put_str(s, v->v.arr.strs[i].data, v->v.arr.strs[i].len);
    } else {
        for (uint64_t i = 0; i < v->v.arr.n; i++) put_array_body(s, &v->v.arr.items[i]);
    }
}

static void put_value(sink *s, const gguf_value *v) {
    switch (v->type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_BOOL: {
        uint8_t b = (uint8_t)v->v.u64;
        put(s, &b, 1);
        break;
    }
    case GGUF_TYPE_INT8: {
        int8_t b = (int8_t)v->v.i64;
        put(s, &b, 1);
        break;
    }
    case GGUF_TYPE_UINT16: {
        uint16_t x = (uint16_t)v->v.u64;
        put(s, &x, 2);
        break;
    }
    case GGUF_TYPE_INT16: {
        int16_t x = (int16_t)v->v.i64;
        put(s, &x, 2);
        break;
    }
    case GGUF_TYPE_UINT32: put_u32(s, (uint32_t)v->v.u64); break;
    case GGUF_TYPE_INT32: {
        int32_t x = (int32_t)v->v.i64;
        put(s, &x, 4);
        break;
    }
    case GGUF_TYPE_FLOAT32: {
        float x = (float)v->v.f64;
        put(s, &x, 4);
        break;
    }
    case GGUF_TYPE_UINT64: put_u64(s, v->v.u64); break;
    case GGUF_TYPE_INT64: put(s, &v->v.i64, 8); break;
    case GGUF_TYPE_FLOAT64: put(s, &v->v.f64, 8); break;
    case GGUF_TYPE_STRING: put_str(s, v->v.str.data, v->v.str.len); break;
    case GGUF_TYPE_ARRAY: put_array_body(s, v); break;
    default: break;
    }
}

/* The alignment the file will use: general.alignment when set (it must be
 * a uint32 power of two), else the default. */
static nuri_status writer_alignment(const gguf_writer *w, uint64_t *alignment, bool *present,
                                    nuri_error *err) {
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    *present = false;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        const gguf_value *v = &w->kvs[i].value;
        if (v->type != GGUF_TYPE_UINT32 || v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)) != 0)
            return nuri_fail(err, NURI_ERR_INVALID_ARG,
                             "gguf: general.alignment must be a uint32 power of two");
        *alignment = v->v.u64;
        *present = true;
    }
    return NURI_OK;
}

static bool align_up(uint64_t x, uint64_t alignment, uint64_t *out) {
    if (!nuri_add_u64(x, alignment - 1, out)) return false;
    *out &= ~(alignment - 1);
    return true;
}

nuri_status gguf_writer_write(gguf_writer *w, const char *path, nuri_error *err) {
    if (!w || !path || !path[0])
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "gguf: no writer or path given");
    uint64_t alignment;
    bool alignment_set;
    nuri_status st = writer_alignment(w, &alignment, &alignment_set, err);
    if (st != NURI_OK) return st;

    /* Tensor offsets within the data section, each aligned. */
    uint64_t *offsets = nuri_malloc_array(w->n_tensors, sizeof *offsets);
    if (!offsets) return nuri_fail(err, NURI_ERR_NOMEM, "gguf: out of memory");
    uint64_t data_size = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (!align_up(data_size, alignment, &offsets[i]) ||
            !nuri_add_u64(offsets[i], w->tensors[i].nbytes, &data_size)) {
            free(offsets);
            return nuri_fail(err, NURI_ERR_INVALID_ARG, "gguf: tensor data too large");
        }
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(offsets);
        return nuri_fail(err, NURI_ERR_NOMEM, "gguf: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *file = fopen(tmp, "wb");
    if (!file) {
        st = nuri_fail(err, NURI_ERR_IO, "gguf: cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        free(offsets);
        return st;
    }

    sink s = {.file = file};
    put(&s, "GGUF", 4);
    put_u32(&s, 3);
    put_u64(&s, w->n_tensors);
    put_u64(&s, w->n_kv + (alignment_set ? 0 : 1));
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&s, w->kvs[i].key, strlen(w->kvs[i].key));
        put_u32(&s, (uint32_t)w->kvs[i].value.type);
        put_value(&s, &w->kvs[i].value);
    }
    if (!alignment_set) {
        static const char key[] = "general.alignment";
        put_str(&s, key, sizeof key - 1);
        put_u32(&s, GGUF_TYPE_UINT32);
        put_u32(&s, (uint32_t)alignment);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_str(&s, t->name, strlen(t->name));
        put_u32(&s, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&s, (uint64_t)t->ne[d]);
        put_u32(&s, t->type);
        put_u64(&s, offsets[i]);
    }
    uint64_t data_start = 0, end = 0;
    if (!align_up(s.pos, alignment, &data_start) || !nuri_add_u64(data_start, data_size, &end) ||
        !align_up(end, alignment, &end)) {
        s.failed = true;
        s.error = EFBIG;
    }
    pad_to(&s, data_start);
    for (size_t i = 0; i < w->n_tensors; i++) {
        pad_to(&s, data_start + offsets[i]);
        put(&s, w->tensors[i].data, w->tensors[i].nbytes);
    }
    pad_to(&s, end);
    free(offsets);

    int write_errno = s.error;
    bool ok = !s.failed;
    if (ok && (fflush(file) != 0 || fsync(fileno(file)) != 0)) {
        ok = false;
        write_errno = errno;
    }
    if (fclose(file) != 0 && ok) {
        ok = false;
        write_errno = errno;
    }
    if (!ok) {
        unlink(tmp);
        st = nuri_fail(err, NURI_ERR_IO, "gguf: cannot write %s: %s", tmp, strerror(write_errno));
        free(tmp);
        return st;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        st = nuri_fail(err, NURI_ERR_IO, "gguf: cannot rename %s to %s: %s", tmp, path,
                       strerror(e));
        free(tmp);
        return st;
    }
    free(tmp);
    return NURI_OK;
}
