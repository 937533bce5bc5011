/* test_quantize.c — `nuri quantize`: every target type from the mini F32
 * model (../shared/golden/quant): the output loads, metadata is kept (only
 * general.file_type changes; the writer may add general.alignment and
 * general.quantization_version), every tensor has the documented type (the
 * _M mixes exactly as llama.cpp's own mini-Q4_K_M / mini-Q5_K_M files),
 * dequantized weights stay within each format's error bound and no worse
 * than llama.cpp's quantization of the same weights, the legacy types are
 * byte-identical to llama.cpp's, row-length fallbacks (aidreams260K's rows
 * of 64 and 172), thread-count independence, quantized input, and the
 * refusals: overwriting the input (same path or hard link), bad types,
 * bad input — each exit 1 with one line, leaving no output file behind. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "gguf/gguf.h"
#include "nuri.h"
#include "quant/quant.h"
#include "support/test.h"

static const char *bin;
static char mini_f32[4096], aidreams[4096];

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Runs `nuri quantize ARGS...` (NULL-terminated, at most 8); returns the
 * exit status and the captured stderr (malloc'ed) in *err. */
static int quantize(char **err, const char *a0, const char *a1, const char *a2, const char *a3,
                    const char *a4, const char *a5) {
    const char *argv[10] = {bin, "quantize", a0, a1, a2, a3, a4, a5, NULL, NULL};
    char *out = NULL;
    int rc = test_run(argv, NULL, 0, &out, err);
    free(out);
    return rc;
}

/* ---- GGUF comparisons ---------------------------------------------------- */

static bool values_equal(const gguf_value *a, const gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_TYPE_STRING:
        return a->v.str.len == b->v.str.len && !memcmp(a->v.str.data, b->v.str.data, a->v.str.len);
    case GGUF_TYPE_ARRAY: {
        if (a->v.arr.elem_type != b->v.arr.elem_type || a->v.arr.n != b->v.arr.n) return false;
        gguf_type et = a->v.arr.elem_type;
        for (uint64_t i = 0; i < a->v.arr.n; i++) {
            if (et == GGUF_TYPE_STRING) {
                gguf_str x = a->v.arr.strs[i], y = b->v.arr.strs[i];
                if (x.len != y.len || memcmp(x.data, y.data, x.len)) return false;
            } else if (et == GGUF_TYPE_ARRAY) {
                if (!values_equal(&a->v.arr.items[i], &b->v.arr.items[i])) return false;
            }
        }
        if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY)
            return !memcmp(a->v.arr.raw, b->v.arr.raw, a->v.arr.n * gguf_scalar_size(et));
        return true;
    }
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64: return a->v.f64 == b->v.f64;
    default: return a->v.u64 == b->v.u64;
    }
}

static bool key_is(gguf_str key, const char *s) { return gguf_str_eq(key, s); }

/* Every key of in is in out with the same value, except general.file_type;
 * out adds nothing but general.file_type, general.alignment and
 * general.quantization_version. */
static void check_metadata(const gguf_file *in, const gguf_file *out, uint32_t want_ftype,
                           const char *what) {
    int missing = 0, changed = 0, extra = 0;
    for (uint64_t i = 0; i < gguf_n_kv(in); i++) {
        const gguf_kv *kv = gguf_kv_at(in, i);
        if (key_is(kv->key, "general.file_type")) continue;
        bool found = false;
        for (uint64_t j = 0; j < gguf_n_kv(out) && !found; j++) {
            const gguf_kv *o = gguf_kv_at(out, j);
            if (o->key.len == kv->key.len && !memcmp(o->key.data, kv->key.data, kv->key.len)) {
                found = true;
                changed += !values_equal(&kv->value, &o->value);
            }
        }
        missing += !found;
    }
    for (uint64_t j = 0; j < gguf_n_kv(out); j++) {
        const gguf_kv *o = gguf_kv_at(out, j);
        bool in_input = false;
        for (uint64_t i = 0; i < gguf_n_kv(in) && !in_input; i++) {
            const gguf_kv *kv = gguf_kv_at(in, i);
            in_input = o->key.len == kv->key.len && !memcmp(o->key.data, kv->key.data, kv->key.len);
        }
        if (!in_input && !key_is(o->key, "general.file_type") && !key_is(o->key, "general.alignment") &&
            !key_is(o->key, "general.quantization_version"))
            extra++;
    }
    CHECK(missing == 0 && changed == 0 && extra == 0,
          "%s: metadata kept (%d keys missing, %d changed, %d added)", what, missing, changed, extra);
    uint32_t ftype = UINT32_MAX;
    nuri_error err;
    CHECK(gguf_get_u32(out, "general.file_type", true, &ftype, &err) == NURI_OK && ftype == want_ftype,
          "%s: general.file_type %u, want %u", what, ftype, want_ftype);
}

/* Relative RMS difference between two float arrays: sqrt(sum (a-b)^2 / sum a^2). */
static double rel_rms(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)a[i] * a[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* The whole tensor as floats (malloc'ed). */
static float *tensor_floats(const gguf_tensor *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
    float *v = malloc(n * sizeof *v);
    if (!v) return NULL;
    uint64_t rows = n / (uint64_t)t->ne[0];
    size_t row_bytes = nuri_row_size(t->type, t->ne[0]);
    for (uint64_t r = 0; r < rows; r++)
        nuri_dequantize_row(t->type, (const char *)t->data + r * row_bytes, v + r * (uint64_t)t->ne[0],
                            t->ne[0]);
    return v;
}

static uint64_t tensor_elems(const gguf_tensor *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
    return n;
}

/* Relative RMS error a type should reach on weights like the mini model's
 * (normal, no outliers): a little above the worst tensor nuri's quantizers
 * give there (F16 2.1e-4, BF16 1.7e-3, Q8_0 0.0054, Q6_K 0.017, Q5_0 0.043,
 * Q4_0 0.086, Q4_K 0.070, IQ4_XS 0.074, Q3_K 0.144, Q2_K 0.264). */
static double error_bound(uint32_t type) {
    switch (type) {
    case NURI_TYPE_F32: return 0.0;
    case NURI_TYPE_F16: return 3e-4;
    case NURI_TYPE_BF16: return 2.5e-3;
    case NURI_TYPE_Q8_0: return 0.006;
    case NURI_TYPE_Q6_K: return 0.02;
    case NURI_TYPE_Q5_0: case NURI_TYPE_Q5_1: case NURI_TYPE_Q5_K: return 0.048;
    case NURI_TYPE_Q4_0: case NURI_TYPE_Q4_1: return 0.095;
    case NURI_TYPE_Q4_K: case NURI_TYPE_IQ4_NL: case NURI_TYPE_IQ4_XS: return 0.082;
    case NURI_TYPE_Q3_K: return 0.16;
    case NURI_TYPE_Q2_K: return 0.29;
    default: return 0.0;
    }
}

/* ---- Every type from the mini model ---------------------------------------- */

typedef struct {
    const char *name;
    nuri_type base;
    uint32_t ftype;
    const char *golden_mix; /* llama.cpp's file for the same mix, or NULL */
    const char *golden_pure; /* llama.cpp's pure file of the base type, or NULL */
} target_case;

static const target_case cases[] = {
    {"F32", NURI_TYPE_F32, 0, NULL, NULL},
    {"F16", NURI_TYPE_F16, 1, NULL, NULL},
    {"BF16", NURI_TYPE_BF16, 32, NULL, NULL},
    {"Q8_0", NURI_TYPE_Q8_0, 7, NULL, "mini-Q8_0-pure.gguf"},
    {"Q4_0", NURI_TYPE_Q4_0, 2, NULL, "mini-Q4_0-pure.gguf"},
    {"Q4_1", NURI_TYPE_Q4_1, 3, NULL, "mini-Q4_1-pure.gguf"},
    {"Q5_0", NURI_TYPE_Q5_0, 8, NULL, "mini-Q5_0-pure.gguf"},
    {"Q5_1", NURI_TYPE_Q5_1, 9, NULL, "mini-Q5_1-pure.gguf"},
    {"Q2_K", NURI_TYPE_Q2_K, 10, NULL, "mini-Q2_K-pure.gguf"},
    {"Q3_K", NURI_TYPE_Q3_K, 11, NULL, "mini-Q3_K_S-pure.gguf"},
    {"Q4_K", NURI_TYPE_Q4_K, 14, NULL, "mini-Q4_K_S-pure.gguf"},
    {"Q5_K", NURI_TYPE_Q5_K, 16, NULL, "mini-Q5_K_S-pure.gguf"},
    {"Q6_K", NURI_TYPE_Q6_K, 18, NULL, "mini-Q6_K-pure.gguf"},
    {"IQ4_NL", NURI_TYPE_IQ4_NL, 25, NULL, "mini-IQ4_NL-pure.gguf"},
    {"IQ4_XS", NURI_TYPE_IQ4_XS, 30, NULL, "mini-IQ4_XS-pure.gguf"},
    {"Q4_K_M", NURI_TYPE_Q4_K, 15, "mini-Q4_K_M.gguf", NULL},
    {"Q5_K_M", NURI_TYPE_Q5_K, 17, "mini-Q5_K_M.gguf", NULL},
};

/* The type the documented rules give a mini-model tensor for a non-mix target. */
static uint32_t expected_plain_type(const target_case *c, const gguf_tensor *src) {
    if (src->n_dims < 2) return src->type;
    bool quantized = nuri_type_get(c->base)->block_size > 1;
    if (quantized && gguf_str_eq(src->name, "output.weight") && c->base != NURI_TYPE_Q8_0)
        return NURI_TYPE_Q6_K;
    return c->base;
}

/* Every type the output uses has a vec_dot (so nuri can run the model). */
static bool all_types_runnable(const gguf_file *f) {
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const nuri_type_traits *tr = nuri_type_get(gguf_tensor_at(f, i)->type);
        if (!tr || !tr->vec_dot) return false;
    }
    return true;
}

static void check_target(const target_case *c, const gguf_file *in) {
    /* Each type the rules may pick must have a quantizer in this build
     * (output.weight takes Q6_K for every block type but Q8_0). */
    bool block_type = nuri_type_get(c->base)->block_size > 1;
    bool needs_q6k = block_type && c->base != NURI_TYPE_Q8_0;
    if (!nuri_type_get(c->base)->from_float ||
        (needs_q6k && !nuri_type_get(NURI_TYPE_Q6_K)->from_float)) {
        fprintf(stderr, "SKIP: %s: this build has no quantizer for %s%s\n", c->name,
                nuri_type_name(c->base), needs_q6k ? " or Q6_K" : "");
        return;
    }
    char out_path[4096];
    snprintf(out_path, sizeof out_path, "%s", test_tmp_path(c->name));
    strcat(out_path, ".gguf");
    char *err = NULL;
    int rc = quantize(&err, "-t", "2", mini_f32, out_path, c->name, NULL);
    CHECK(rc == 0, "quantize %s: exit %d: %s", c->name, rc, err);
    CHECK(strstr(err, "quantize: wrote") != NULL, "quantize %s reports the file: %s", c->name, err);
    free(err);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    CHECK(!file_exists(tmp), "%s: no temporary file left", c->name);
    if (rc != 0) return;

    gguf_file *out = NULL;
    nuri_error e;
    CHECK(gguf_open(out_path, &out, &e) == NURI_OK, "%s: output opens: %s", c->name, e.message);
    if (!out) return;
    check_metadata(in, out, c->ftype, c->name);

    gguf_file *mix = NULL, *pure = NULL;
    char rel[256];
    if (c->golden_mix) {
        snprintf(rel, sizeof rel, "golden/quant/%s", c->golden_mix);
        gguf_open(test_shared_path(rel), &mix, &e);
        CHECK(mix != NULL, "%s: golden %s opens", c->name, c->golden_mix);
    }
    if (c->golden_pure) {
        snprintf(rel, sizeof rel, "golden/quant/%s", c->golden_pure);
        gguf_open(test_shared_path(rel), &pure, &e);
        CHECK(pure != NULL, "%s: golden %s opens", c->name, c->golden_pure);
    }

    CHECK(gguf_n_tensors(out) == gguf_n_tensors(in), "%s: %llu tensors", c->name,
          (unsigned long long)gguf_n_tensors(out));
    int wrong_type = 0, wrong_shape = 0, over_bound = 0, worse_than_llama = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(in) && i < gguf_n_tensors(out); i++) {
        const gguf_tensor *s = gguf_tensor_at(in, i), *t = gguf_tensor_at(out, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)s->name.len, s->name.data);
        if (t->name.len != s->name.len || memcmp(t->name.data, s->name.data, s->name.len) ||
            t->n_dims != s->n_dims || memcmp(t->ne, s->ne, sizeof t->ne)) {
            wrong_shape++;
            continue;
        }
        uint32_t want = expected_plain_type(c, s);
        if (mix) {
            const gguf_tensor *g = gguf_find_tensor(mix, name);
            want = g ? g->type : UINT32_MAX;
        }
        if (t->type != want) {
            wrong_type++;
            fprintf(stderr, "  %s %s: type %s, want %s\n", c->name, name, nuri_type_name(t->type),
                    nuri_type_name(want));
            continue;
        }
        float *a = tensor_floats(s), *b = tensor_floats(t);
        if (!a || !b) {
            free(a);
            free(b);
            continue;
        }
        uint64_t n = tensor_elems(s);
        double e_ours = rel_rms(a, b, n);
        if (e_ours > error_bound(t->type)) {
            over_bound++;
            fprintf(stderr, "  %s %s (%s): relative RMS error %.5f > %.5f\n", c->name, name,
                    nuri_type_name(t->type), e_ours, error_bound(t->type));
        }
        /* llama.cpp's pure file quantized the same weights to the same type. */
        const gguf_tensor *g = pure ? gguf_find_tensor(pure, name) : NULL;
        if (g && g->type == t->type) {
            float *r = tensor_floats(g);
            double e_ref = r ? rel_rms(a, r, n) : 0;
            if (r && e_ours > e_ref * 1.001 + 1e-7) {
                worse_than_llama++;
                fprintf(stderr, "  %s %s: error %.6f, llama.cpp's %.6f\n", c->name, name, e_ours, e_ref);
            }
            free(r);
        }
        free(a);
        free(b);
    }
    CHECK(wrong_shape == 0, "%s: %d tensors with a different name or shape", c->name, wrong_shape);
    CHECK(wrong_type == 0, "%s: %d tensors with an unexpected type", c->name, wrong_type);
    CHECK(over_bound == 0, "%s: %d tensors over their error bound", c->name, over_bound);
    CHECK(worse_than_llama == 0, "%s: %d tensors with more error than llama.cpp's quantization",
          c->name, worse_than_llama);

    if (all_types_runnable(out)) {
        nuri_model *m = NULL;
        CHECK(nuri_model_load(out_path, NULL, &m, &e) == NURI_OK, "%s: model loads: %s", c->name,
              e.message);
        if (m) {
            nuri_context *ctx = NULL;
            nuri_token toks[4] = {1, 100, 200, 300};
            CHECK(nuri_context_create(m, NULL, &ctx, &e) == NURI_OK &&
                      nuri_eval(ctx, toks, NULL, 4, false, &e) == NURI_OK &&
                      isfinite(nuri_logits(ctx)[0]),
                  "%s: model evaluates: %s", c->name, e.message);
            nuri_context_free(ctx);
            nuri_model_free(m);
        }
    } else {
        fprintf(stderr, "SKIP: %s: loading skipped, nuri cannot compute with every type yet\n",
                c->name);
    }
    gguf_close(mix);
    gguf_close(pure);
    gguf_close(out);
    unlink(out_path);
}

/* ---- Byte equality with llama.cpp's quantizer ------------------------------ */

static void check_bytes_equal(const char *type, const char *golden) {
    char out_path[4096], rel[256];
    snprintf(out_path, sizeof out_path, "%s", test_tmp_path("pure.gguf"));
    char *err = NULL;
    int rc = quantize(&err, "--pure", mini_f32, out_path, type, NULL, NULL);
    CHECK(rc == 0, "quantize --pure %s: exit %d: %s", type, rc, err);
    free(err);
    snprintf(rel, sizeof rel, "golden/quant/%s", golden);
    gguf_file *a = NULL, *b = NULL;
    nuri_error e;
    gguf_open(out_path, &a, &e);
    gguf_open(test_shared_path(rel), &b, &e);
    CHECK(a && b, "%s: both files open", type);
    if (a && b) {
        int differ = 0, compared = 0;
        for (uint64_t i = 0; i < gguf_n_tensors(b); i++) {
            const gguf_tensor *g = gguf_tensor_at(b, i);
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)g->name.len, g->name.data);
            const gguf_tensor *t = gguf_find_tensor(a, name);
            compared++;
            if (!t || t->type != g->type || t->nbytes != g->nbytes || memcmp(t->data, g->data, g->nbytes)) {
                differ++;
                fprintf(stderr, "  --pure %s: %s differs from llama.cpp's\n", type, name);
            }
        }
        CHECK(compared == 21 && differ == 0, "--pure %s: %d of %d tensors differ from %s", type,
              differ, compared, golden);
    }
    gguf_close(a);
    gguf_close(b);
    unlink(out_path);
}

/* ---- Fallbacks, threads, quantized input -------------------------------------- */

static uint32_t type_of(const gguf_file *f, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    return t ? t->type : UINT32_MAX;
}

/* aidreams260K: rows of 64 (no K type fits) and 172 (nothing but F16 fits). */
static void check_fallbacks(void) {
    char out_path[4096];
    snprintf(out_path, sizeof out_path, "%s", test_tmp_path("aidreams-q4km.gguf"));
    char *err = NULL;
    int rc = quantize(&err, aidreams, out_path, "Q4_K_M", NULL, NULL, NULL);
    CHECK(rc == 0, "aidreams Q4_K_M: exit %d: %s", rc, err);
    CHECK(strstr(err, "blk.0.ffn_down.weight: rows of 172") && strstr(err, "using F16"),
          "the fallback is reported: %s", err);
    free(err);
    gguf_file *f = NULL;
    nuri_error e;
    gguf_open(out_path, &f, &e);
    CHECK(f != NULL, "aidreams Q4_K_M opens: %s", e.message);
    if (f) {
        /* Q4_K (256) -> Q5_0 for rows of 64; Q6_K -> Q8_0; 172 -> F16;
         * output.weight: rows not a multiple of 256 -> Q8_0. */
        CHECK(type_of(f, "blk.1.attn_q.weight") == NURI_TYPE_Q5_0, "attn_q falls back to Q5_0");
        CHECK(type_of(f, "blk.1.ffn_up.weight") == NURI_TYPE_Q5_0, "ffn_up falls back to Q5_0");
        CHECK(type_of(f, "token_embd.weight") == NURI_TYPE_Q5_0, "token_embd falls back to Q5_0");
        /* 4 layers: 2 and 3 get more bits ((2 - 4/8) % 3 == 2; 3 >= 7*4/8). */
        CHECK(type_of(f, "blk.2.attn_v.weight") == NURI_TYPE_Q8_0, "layer 2 attn_v: Q6_K -> Q8_0");
        CHECK(type_of(f, "blk.3.attn_v.weight") == NURI_TYPE_Q8_0, "layer 3 attn_v: Q6_K -> Q8_0");
        CHECK(type_of(f, "blk.0.attn_v.weight") == NURI_TYPE_Q5_0, "layer 0 attn_v: Q4_K -> Q5_0");
        CHECK(type_of(f, "blk.1.attn_v.weight") == NURI_TYPE_Q5_0, "layer 1 attn_v: Q4_K -> Q5_0");
        CHECK(type_of(f, "blk.0.ffn_down.weight") == NURI_TYPE_F16, "ffn_down (172) falls back to F16");
        CHECK(type_of(f, "output.weight") == NURI_TYPE_Q8_0, "output.weight gets Q8_0");
        CHECK(type_of(f, "blk.0.attn_norm.weight") == NURI_TYPE_F32, "norms stay F32");
        gguf_close(f);
        nuri_model *m = NULL;
        CHECK(nuri_model_load(out_path, NULL, &m, &e) == NURI_OK, "aidreams Q4_K_M loads: %s", e.message);
        nuri_model_free(m);
    }
    unlink(out_path);
}

static bool files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
    bool eq = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return eq;
}

static void check_threads_and_input_types(void) {
    char p1[4096], p2[4096], p3[4096];
    snprintf(p1, sizeof p1, "%s", test_tmp_path("t1.gguf"));
    snprintf(p2, sizeof p2, "%s", test_tmp_path("t3.gguf"));
    snprintf(p3, sizeof p3, "%s", test_tmp_path("from-q8.gguf"));
    char *err = NULL;
    int rc1 = quantize(&err, "-t", "1", mini_f32, p1, "Q5_1", NULL);
    free(err);
    int rc2 = quantize(&err, "--threads", "3", mini_f32, p2, "Q5_1", NULL);
    free(err);
    CHECK(rc1 == 0 && rc2 == 0 && files_equal(p1, p2), "1 and 3 threads write identical files");

    /* Quantized input: Q8_0 -> F32 gives exactly the dequantized Q8_0 values. */
    const char *q8 = test_shared_path("golden/quant/mini-Q8_0-pure.gguf");
    char q8_path[4096];
    snprintf(q8_path, sizeof q8_path, "%s", q8);
    rc1 = quantize(&err, q8_path, p3, "F32", NULL, NULL, NULL);
    CHECK(rc1 == 0, "Q8_0 -> F32: exit %d: %s", rc1, err);
    free(err);
    gguf_file *a = NULL, *b = NULL;
    nuri_error e;
    gguf_open(q8_path, &a, &e);
    gguf_open(p3, &b, &e);
    if (a && b) {
        const gguf_tensor *s = gguf_find_tensor(a, "blk.0.ffn_down.weight"),
                          *t = gguf_find_tensor(b, "blk.0.ffn_down.weight");
        CHECK(s && t && t->type == NURI_TYPE_F32, "Q8_0 -> F32 tensor type");
        if (s && t && t->type == NURI_TYPE_F32) {
            float *x = tensor_floats(s);
            CHECK(x && !memcmp(x, t->data, t->nbytes), "F32 output equals the dequantized Q8_0");
            free(x);
        }
        /* Q8_0 -> Q8_0 copies every tensor unchanged. */
        gguf_close(b);
        b = NULL;
        rc1 = quantize(&err, "--pure", q8_path, p3, "Q8_0", NULL, NULL);
        free(err);
        gguf_open(p3, &b, &e);
        int differ = 0;
        for (uint64_t i = 0; b && i < gguf_n_tensors(a); i++) {
            const gguf_tensor *x = gguf_tensor_at(a, i), *y = gguf_tensor_at(b, i);
            differ += x->nbytes != y->nbytes || memcmp(x->data, y->data, x->nbytes);
        }
        CHECK(rc1 == 0 && b && differ == 0, "Q8_0 -> Q8_0 keeps every tensor's bytes (%d differ)", differ);
    } else {
        CHECK(false, "Q8_0 -> F32 files open");
    }
    gguf_close(a);
    gguf_close(b);
    unlink(p1);
    unlink(p2);
    unlink(p3);
}

/* ---- Refusals ---------------------------------------------------------------- */

static void check_refusals(void) {
    char in_copy[4096], link_path[4096], out_path[4096];
    snprintf(in_copy, sizeof in_copy, "%s", test_tmp_path("input.gguf"));
    snprintf(link_path, sizeof link_path, "%s", test_tmp_path("input-link.gguf"));
    snprintf(out_path, sizeof out_path, "%s", test_tmp_path("never.gguf"));
    size_t n = 0;
    char *data = test_read_file(mini_f32, &n);
    FILE *f = fopen(in_copy, "wb");
    CHECK(data && f && fwrite(data, 1, n, f) == n, "copy of the input written");
    if (f) fclose(f);
    CHECK(link(in_copy, link_path) == 0, "hard link made");

    char *err = NULL;
    int rc = quantize(&err, in_copy, in_copy, "Q8_0", NULL, NULL, NULL);
    CHECK(rc == 1 && strstr(err, "refusing to overwrite") && count_lines(err) == 1,
          "same path: exit %d, one line: %s", rc, err);
    free(err);
    rc = quantize(&err, in_copy, link_path, "Q8_0", NULL, NULL, NULL);
    CHECK(rc == 1 && strstr(err, "refusing to overwrite") && count_lines(err) == 1,
          "hard link to the input: exit %d: %s", rc, err);
    free(err);
    char dotted[4200];
    snprintf(dotted, sizeof dotted, "%s", in_copy);
    char *slash = strrchr(dotted, '/');
    if (slash) {
        memmove(slash + 2, slash, strlen(slash) + 1);
        slash[0] = '/';
        slash[1] = '.';
    }
    rc = quantize(&err, in_copy, dotted, "Q4_0", NULL, NULL, NULL);
    CHECK(rc == 1 && strstr(err, "refusing to overwrite"), "same file by another spelling: exit %d: %s",
          rc, err);
    free(err);
    size_t n2 = 0;
    char *after = test_read_file(in_copy, &n2);
    CHECK(after && n2 == n && !memcmp(after, data, n), "the input is unchanged");
    free(after);

    rc = quantize(&err, in_copy, out_path, "Q7_X", NULL, NULL, NULL);
    CHECK(rc == 1 && strstr(err, "unknown type 'Q7_X'") && count_lines(err) == 1,
          "bad type: exit %d: %s", rc, err);
    free(err);
    CHECK(!file_exists(out_path), "no output after a bad type");

    rc = quantize(&err, in_copy, out_path, NULL, NULL, NULL, NULL);
    CHECK(rc == 1 && count_lines(err) == 1, "missing TYPE: exit %d: %s", rc, err);
    free(err);

    rc = quantize(&err, test_tmp_path("does-not-exist.gguf"), out_path, "Q8_0", NULL, NULL, NULL);
    CHECK(rc == 1 && count_lines(err) == 1, "missing input: exit %d: %s", rc, err);
    free(err);

    /* A truncated GGUF: the reader's error, one line, and no output. */
    f = fopen(in_copy, "wb");
    if (f) {
        fwrite(data, 1, n / 2, f);
        fclose(f);
    }
    rc = quantize(&err, in_copy, out_path, "Q8_0", NULL, NULL, NULL);
    CHECK(rc == 1 && count_lines(err) == 1, "truncated input: exit %d: %s", rc, err);
    free(err);
    CHECK(!file_exists(out_path), "no output after bad input");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    CHECK(!file_exists(tmp), "no temporary file after bad input");

    rc = quantize(&err, in_copy, out_path, "Q8_0", "--frobnicate", NULL, NULL);
    CHECK(rc == 1 && strstr(err, "unknown option") && count_lines(err) == 1, "unknown option: %s", err);
    free(err);

    const char *help[] = {bin, "quantize", "--help", NULL};
    char *out = NULL;
    rc = test_run(help, NULL, 0, &out, NULL);
    CHECK(rc == 0 && strstr(out, "Q4_K_M") && strstr(out, "ffn_down") && strstr(out, "Q6_K"),
          "--help documents the mix rules");
    free(out);
    free(data);
    unlink(in_copy);
    unlink(link_path);
}

int main(void) {
    bin = test_nuri_bin();
    const char *p = test_shared_path("golden/quant/mini-F32.gguf");
    if (!bin || !p) return test_finish();
    snprintf(mini_f32, sizeof mini_f32, "%s", p);
    snprintf(aidreams, sizeof aidreams, "%s", test_shared_path("models/aidreams260K.gguf"));

    gguf_file *in = NULL;
    nuri_error e;
    CHECK(gguf_open(mini_f32, &in, &e) == NURI_OK, "mini-F32 opens: %s", e.message);
    if (in) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_target(&cases[i], in);
        gguf_close(in);
    }
    const char *exact[][2] = {{"Q8_0", "mini-Q8_0-pure.gguf"}, {"Q4_0", "mini-Q4_0-pure.gguf"},
                              {"Q4_1", "mini-Q4_1-pure.gguf"}, {"Q5_0", "mini-Q5_0-pure.gguf"},
                              {"Q5_1", "mini-Q5_1-pure.gguf"}};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) check_bytes_equal(exact[i][0], exact[i][1]);
    check_fallbacks();
    check_threads_and_input_types();
    check_refusals();
    return test_finish();
}
