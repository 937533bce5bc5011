/* test_bench.c — the benchmarking tools: `nuri mkmodel` (random-weight GGUF
 * files with a real vocabulary: metadata, shapes, types, weight statistics,
 * rope scaling factors, determinism, loading and generating with nuri) and
 * `nuri bench` (table rows, JSON, option errors). Only the 2-layer `tiny`
 * shapes, with the 512-token vocabulary of aidreams260K, to stay fast. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "gguf/gguf.h"
#include "nuri.h"
#include "quant/quant.h"
#include "support/test.h"

static const char *bin;
static char vocab_path[4096];

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int run(const char *const *argv, char **out, char **err) {
    return test_run(argv, NULL, 0, out, err);
}

/* Runs `nuri mkmodel` into tmp file `name` (path copied to path_out). */
static bool mkmodel(const char *name, const char *shape, const char *type, const char *seed,
                    const char *threads, char *path_out, size_t cap) {
    snprintf(path_out, cap, "%s", test_tmp_path(name));
    const char *argv[] = {bin, "mkmodel", "--shape", shape, "--type", type, "-o", path_out,
                          "--vocab", vocab_path, "--seed", seed, "-t", threads, NULL};
    char *out, *err;
    int rc = run(argv, &out, &err);
    CHECK(rc == 0, "mkmodel %s %s exit %d: %s", shape, type, rc, err);
    CHECK(strstr(err, "mkmodel: wrote") != NULL, "mkmodel reports the file: %s", err);
    free(out);
    free(err);
    return rc == 0;
}

/* ---- Metadata and tensors ------------------------------------------------ */

static uint32_t get_u32(const gguf_file *f, const char *key) {
    uint32_t v = UINT32_MAX;
    nuri_error err;
    if (gguf_get_u32(f, key, true, &v, &err) != NURI_OK) return UINT32_MAX;
    return v;
}

static float get_f32(const gguf_file *f, const char *key) {
    float v = NAN;
    nuri_error err;
    gguf_get_f32(f, key, true, &v, &err);
    return v;
}

static bool str_is(const gguf_file *f, const char *key, const char *want) {
    gguf_str s = {0};
    nuri_error err;
    return gguf_get_str(f, key, true, &s, &err) == NURI_OK && gguf_str_eq(s, want);
}

static bool values_equal(const gguf_value *a, const gguf_value *b) {
    if (a->type != b->type) return false;
    if (a->type == GGUF_TYPE_STRING)
        return a->v.str.len == b->v.str.len && !memcmp(a->v.str.data, b->v.str.data, a->v.str.len);
    if (a->type != GGUF_TYPE_ARRAY) return a->v.u64 == b->v.u64;
    if (a->v.arr.elem_type != b->v.arr.elem_type || a->v.arr.n != b->v.arr.n) return false;
    gguf_type et = a->v.arr.elem_type;
    if (et == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < a->v.arr.n; i++) {
            gguf_str x = a->v.arr.strs[i], y = b->v.arr.strs[i];
            if (x.len != y.len || memcmp(x.data, y.data, x.len)) return false;
        }
        return true;
    }
    size_t es = gguf_scalar_size(et);
    return es && !memcmp(a->v.arr.raw, b->v.arr.raw, es * a->v.arr.n);
}

/* Every tokenizer.* key of the vocabulary file, with the same value. */
static void check_vocab_copied(const gguf_file *f, const char *what) {
    gguf_file *vf = NULL;
    nuri_error err;
    CHECK(gguf_open(vocab_path, &vf, &err) == NURI_OK, "open vocab: %s", err.message);
    if (!vf) return;
    int n_keys = 0;
    for (uint64_t i = 0; i < gguf_n_kv(vf); i++) {
        const gguf_kv *kv = gguf_kv_at(vf, i);
        if (kv->key.len < 10 || memcmp(kv->key.data, "tokenizer.", 10)) continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.data);
        const gguf_value *v = gguf_get(f, key);
        CHECK(v && values_equal(v, &kv->value), "%s: %s copied from the vocabulary", what, key);
        n_keys++;
    }
    CHECK(n_keys >= 5, "the vocabulary has tokenizer keys (%d)", n_keys);
    gguf_close(vf);
}

/* Mean and standard deviation of a tensor's dequantized values. */
static void tensor_stats(const gguf_tensor *t, double *mean, double *sd) {
    int64_t n_cols = t->ne[0], n_rows = t->ne[1];
    float *row = malloc((size_t)n_cols * sizeof *row);
    double s = 0, s2 = 0;
    size_t row_bytes = nuri_row_size(t->type, n_cols);
    for (int64_t r = 0; row && r < n_rows; r++) {
        nuri_dequantize_row(t->type, (const char *)t->data + (size_t)r * row_bytes, row, n_cols);
        for (int64_t c = 0; c < n_cols; c++) {
            s += row[c];
            s2 += (double)row[c] * row[c];
        }
    }
    free(row);
    double n = (double)n_cols * (double)n_rows;
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
}

static void check_tensor(const gguf_file *f, const char *name, uint32_t type, int64_t ne0,
                         int64_t ne1, const char *what) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    CHECK(t != NULL, "%s: tensor %s present", what, name);
    if (!t) return;
    CHECK(t->type == type, "%s: %s has type %s, want %s", what, name, nuri_type_name(t->type),
          nuri_type_name(type));
    CHECK(t->ne[0] == ne0 && t->ne[1] == ne1 && t->n_dims == (ne1 == 1 ? 1u : 2u),
          "%s: %s shape [%lld, %lld] (%u dims), want [%lld, %lld]", what, name, (long long)t->ne[0],
          (long long)t->ne[1], t->n_dims, (long long)ne0, (long long)ne1);
    if (strstr(name, "norm")) {
        bool ones = true;
        for (int64_t i = 0; i < t->ne[0]; i++)
            ones &= nuri_load_f32((const char *)t->data + 4 * i) == 1.0f;
        CHECK(ones, "%s: norm %s is all 1", what, name);
    }
}

/* Checks a `tiny`-family file: metadata, every tensor's type and shape,
 * norms of 1, weights of deviation 0.02. */
static void check_tiny_file(const char *path, const char *type_name, uint32_t type,
                            uint32_t ftype, bool llama3) {
    gguf_file *f = NULL;
    nuri_error err;
    CHECK(gguf_open(path, &f, &err) == NURI_OK, "%s opens: %s", type_name, err.message);
    if (!f) return;
    const int64_t n_embd = 256, n_ff = 768, kv_dim = 128, n_vocab = 512;
    CHECK(str_is(f, "general.architecture", "llama"), "%s: architecture llama", type_name);
    CHECK(str_is(f, "general.name", llama3 ? "tiny-llama3 (random)" : "tiny (random)"),
          "%s: general.name", type_name);
    CHECK(get_u32(f, "general.file_type") == ftype, "%s: file_type %u, want %u", type_name,
          get_u32(f, "general.file_type"), ftype);
    CHECK(get_u32(f, "llama.embedding_length") == n_embd, "%s: embedding_length", type_name);
    CHECK(get_u32(f, "llama.block_count") == 2, "%s: block_count", type_name);
    CHECK(get_u32(f, "llama.feed_forward_length") == n_ff, "%s: feed_forward_length", type_name);
    CHECK(get_u32(f, "llama.attention.head_count") == 4, "%s: head_count", type_name);
    CHECK(get_u32(f, "llama.attention.head_count_kv") == 2, "%s: head_count_kv", type_name);
    CHECK(get_u32(f, "llama.rope.dimension_count") == 64, "%s: rope.dimension_count", type_name);
    CHECK(get_u32(f, "llama.vocab_size") == n_vocab, "%s: vocab_size %u", type_name,
          get_u32(f, "llama.vocab_size"));
    CHECK(get_u32(f, "llama.context_length") == (llama3 ? 131072u : 2048u), "%s: context_length",
          type_name);
    CHECK(get_f32(f, "llama.rope.freq_base") == (llama3 ? 500000.0f : 10000.0f), "%s: freq_base",
          type_name);
    CHECK(fabsf(get_f32(f, "llama.attention.layer_norm_rms_epsilon") - 1e-5f) < 1e-9f,
          "%s: rms epsilon", type_name);
    check_vocab_copied(f, type_name);

    /* token_embd, 9 per layer, output_norm, and output or rope_freqs */
    CHECK(gguf_n_tensors(f) == 21, "%s: %llu tensors", type_name,
          (unsigned long long)gguf_n_tensors(f));
    check_tensor(f, "token_embd.weight", type, n_embd, n_vocab, type_name);
    check_tensor(f, "output_norm.weight", NURI_TYPE_F32, n_embd, 1, type_name);
    if (llama3) {
        CHECK(gguf_find_tensor(f, "output.weight") == NULL, "%s: tied embeddings", type_name);
        check_tensor(f, "rope_freqs.weight", NURI_TYPE_F32, 32, 1, type_name);
    } else {
        check_tensor(f, "output.weight", type, n_embd, n_vocab, type_name);
        CHECK(gguf_find_tensor(f, "rope_freqs.weight") == NULL, "%s: no rope_freqs", type_name);
    }
    char name[64];
    for (int l = 0; l < 2; l++) {
#define T(suffix, ty, a, b) \
    (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), check_tensor(f, name, ty, a, b, type_name))
        T("attn_norm.weight", NURI_TYPE_F32, n_embd, 1);
        T("attn_q.weight", type, n_embd, n_embd);
        T("attn_k.weight", type, n_embd, kv_dim);
        T("attn_v.weight", type, n_embd, kv_dim);
        T("attn_output.weight", type, n_embd, n_embd);
        T("ffn_norm.weight", NURI_TYPE_F32, n_embd, 1);
        T("ffn_gate.weight", type, n_embd, n_ff);
        T("ffn_up.weight", type, n_embd, n_ff);
        T("ffn_down.weight", type, n_ff, n_embd);
#undef T
    }
    const gguf_tensor *t = gguf_find_tensor(f, "blk.1.ffn_up.weight");
    if (t) {
        double mean, sd;
        tensor_stats(t, &mean, &sd);
        /* 196608 samples: the mean's error is ~5e-5; quantization moves
         * the deviation by well under 5 %. */
        CHECK(fabs(mean) < 3e-4 && fabs(sd - 0.02) < 0.001, "%s: weights mean %g sd %g (want 0, 0.02)",
              type_name, mean, sd);
    }
    gguf_close(f);
}

/* Llama 3 rope scaling (factor 32, low 1, high 4, original context 8192)
 * at base 500000 and 64 rotary dimensions: the divisors computed from
 * Hugging Face's definition, independently of nuri. */
static void check_rope_freqs(const char *path) {
    static const float expected_15_to_17[3] = {1.65132928f, 3.29226208f, 9.66672897f};
    gguf_file *f = NULL;
    nuri_error err;
    if (gguf_open(path, &f, &err) != NURI_OK) return;
    const gguf_tensor *t = gguf_find_tensor(f, "rope_freqs.weight");
    if (t && t->ne[0] == 32) {
        for (int i = 0; i < 32; i++) {
            float v = nuri_load_f32((const char *)t->data + 4 * i);
            float want = i < 15 ? 1.0f : i < 18 ? expected_15_to_17[i - 15] : 32.0f;
            CHECK(fabsf(v - want) <= 1e-6f * want, "rope_freqs[%d] = %.9g, want %.9g", i, v, want);
        }
    }
    gguf_close(f);
}

/* Loads a file with the API, evaluates a prompt and generates greedily. */
static void check_generates(const char *path, const char *what) {
    nuri_model *m = NULL;
    nuri_context *ctx = NULL;
    nuri_error err;
    CHECK(nuri_model_load(path, NULL, &m, &err) == NURI_OK, "%s loads: %s", what, err.message);
    if (!m) return;
    CHECK(nuri_model_n_vocab(m) == 512, "%s: n_vocab %d", what, nuri_model_n_vocab(m));
    nuri_context_params cp = nuri_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "%s: context: %s", what, err.message);
    if (ctx) {
        nuri_token prompt[4] = {1, 100, 200, 300};
        CHECK(nuri_eval(ctx, prompt, NULL, 4, false, &err) == NURI_OK, "%s: eval: %s", what, err.message);
        nuri_sampler *s = nuri_sampler_create(NULL);
        int n_ok = 0;
        for (int i = 0; i < 8 && s; i++) {
            const float *logits = nuri_logits(ctx);
            bool finite = logits != NULL;
            for (int v = 0; finite && v < 512; v++) finite = isfinite(logits[v]);
            nuri_token next = nuri_sampler_sample(s, logits, 512);
            if (finite && next >= 0 && next < 512 &&
                nuri_eval(ctx, &next, NULL, 1, false, &err) == NURI_OK)
                n_ok++;
        }
        CHECK(n_ok == 8, "%s: 8 greedy steps with finite logits (%d)", what, n_ok);
        CHECK(nuri_context_n_past(ctx) == 12, "%s: n_past %d", what, nuri_context_n_past(ctx));
        nuri_sampler_free(s);
    }
    nuri_context_free(ctx);
    nuri_model_free(m);
}

static bool same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *da = test_read_file(a, &na), *db = test_read_file(b, &nb);
    bool same = da && db && na == nb && !memcmp(da, db, na);
    free(da);
    free(db);
    return same;
}

static void check_mkmodel(char *q4_path, size_t cap) {
    char f32[4096], q8[4096], q4_again[4096], q4_one_thread[4096], q4_seed2[4096], l3[4096];
    if (!mkmodel("tiny-F32.gguf", "tiny", "F32", "7", "2", f32, sizeof f32) ||
        !mkmodel("tiny-Q8_0.gguf", "tiny", "Q8_0", "7", "2", q8, sizeof q8) ||
        !mkmodel("tiny-Q4_0.gguf", "tiny", "q4_0", "7", "2", q4_path, cap) ||
        !mkmodel("tiny-Q4_0-again.gguf", "tiny", "Q4_0", "7", "2", q4_again, sizeof q4_again) ||
        !mkmodel("tiny-Q4_0-t1.gguf", "tiny", "Q4_0", "7", "1", q4_one_thread, sizeof q4_one_thread) ||
        !mkmodel("tiny-Q4_0-seed2.gguf", "tiny", "Q4_0", "8", "2", q4_seed2, sizeof q4_seed2) ||
        !mkmodel("tiny-llama3-Q8_0.gguf", "tiny-llama3", "Q8_0", "7", "2", l3, sizeof l3))
        return;
    check_tiny_file(f32, "F32", NURI_TYPE_F32, 0, false);
    check_tiny_file(q8, "Q8_0", NURI_TYPE_Q8_0, 7, false);
    check_tiny_file(q4_path, "Q4_0", NURI_TYPE_Q4_0, 2, false);
    check_tiny_file(l3, "tiny-llama3 Q8_0", NURI_TYPE_Q8_0, 7, true);
    check_rope_freqs(l3);

    CHECK(same_bytes(q4_path, q4_again), "the same seed gives the same bytes");
    CHECK(same_bytes(q4_path, q4_one_thread), "the bytes do not depend on the thread count");
    CHECK(!same_bytes(q4_path, q4_seed2), "another seed gives other bytes");

    check_generates(f32, "F32");
    check_generates(q8, "Q8_0");
    check_generates(q4_path, "Q4_0");
    check_generates(l3, "tiny-llama3 Q8_0");
}

/* ---- nuri bench ----------------------------------------------------------- */

/* Checks one table row: model, type, threads and test columns, and a
 * positive "mean ± sd". */
static void check_row(const char *line, const char *test) {
    char cells[8][64];
    int n = 0;
    const char *p = line;
    if (*p == '|') p++;
    while (*p && *p != '\n' && n < 8) {
        const char *end = strchr(p, '|');
        if (!end) break;
        const char *a = p, *b = end;
        while (a < b && *a == ' ') a++;
        while (b > a && b[-1] == ' ') b--;
        snprintf(cells[n++], sizeof cells[0], "%.*s", (int)(b - a), a);
        p = end + 1;
    }
    CHECK(n == 7, "row for %s has 7 cells (%d): %s", test, n, line);
    if (n != 7) return;
    CHECK(!strcmp(cells[0], "tiny (random)"), "model cell '%s'", cells[0]);
    CHECK(strstr(cells[1], "GiB") != NULL, "size cell '%s'", cells[1]);
    CHECK(!strcmp(cells[2], "1.84 M"), "params cell '%s'", cells[2]);
    CHECK(!strcmp(cells[3], "Q4_0"), "type cell '%s'", cells[3]);
    CHECK(!strcmp(cells[4], "1"), "threads cell '%s'", cells[4]);
    CHECK(!strcmp(cells[5], test), "test cell '%s', want %s", cells[5], test);
    double mean = 0, sd = -1;
    CHECK(sscanf(cells[6], "%lf ± %lf", &mean, &sd) == 2 && mean > 0 && sd >= 0, "t/s cell '%s'",
          cells[6]);
}

static void check_bench(const char *model) {
    char *out, *err;
    const char *argv[] = {bin, "bench", "-m", model, "-p", "8", "-n", "4", "-r", "2", "-t", "1", NULL};
    int rc = run(argv, &out, &err);
    CHECK(rc == 0, "bench exit %d: %s", rc, err);
    CHECK(count_lines(out) == 4, "bench prints header, rule and 2 rows:\n%s", out);
    const char *header = out, *rule = strchr(header, '\n');
    const char *row1 = rule ? strchr(rule + 1, '\n') : NULL;
    const char *row2 = row1 ? strchr(row1 + 1, '\n') : NULL;
    CHECK(strncmp(header, "| model", 7) == 0 && strstr(header, "t/s"), "header: %s", header);
    CHECK(rule && strncmp(rule + 1, "| ---", 5) == 0, "rule line");
    if (row1 && row2) {
        check_row(row1 + 1, "pp8");
        check_row(row2 + 1, "tg4");
    }
    free(out);
    free(err);

    const char *argv_json[] = {bin, "bench", "-m", model, "-p", "8", "-n", "4", "-r", "2", "-t", "1",
                               "--kv-type", "f32", "--json", NULL};
    rc = run(argv_json, &out, &err);
    CHECK(rc == 0, "bench --json exit %d: %s", rc, err);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    CHECK(root && json_is_array(root) && json_array_size(root) == 2, "bench --json: an array of 2: %s",
          root ? out : jerr.text);
    const char *tests[2] = {"pp8", "tg4"};
    int n_prompt[2] = {8, 0}, n_gen[2] = {0, 4};
    for (size_t i = 0; root && i < json_array_size(root) && i < 2; i++) {
        json_t *o = json_array_get(root, i), *samples = json_object_get(o, "samples_ts");
        CHECK(!strcmp(json_string_value(json_object_get(o, "test")) ? json_string_value(json_object_get(o, "test")) : "",
                      tests[i]), "json[%zu].test", i);
        CHECK(json_integer_value(json_object_get(o, "n_prompt")) == n_prompt[i], "json[%zu].n_prompt", i);
        CHECK(json_integer_value(json_object_get(o, "n_gen")) == n_gen[i], "json[%zu].n_gen", i);
        CHECK(json_integer_value(json_object_get(o, "n_threads")) == 1, "json[%zu].n_threads", i);
        CHECK(json_integer_value(json_object_get(o, "reps")) == 2, "json[%zu].reps", i);
        const char *type_k = json_string_value(json_object_get(o, "type_k"));
        CHECK(type_k && !strcmp(type_k, "f32"), "json[%zu].type_k follows --kv-type", i);
        CHECK(json_is_array(samples) && json_array_size(samples) == 2, "json[%zu].samples_ts has 2", i);
        double avg = json_number_value(json_object_get(o, "avg_ts"));
        double s0 = json_number_value(json_array_get(samples, 0)), s1 = json_number_value(json_array_get(samples, 1));
        CHECK(avg > 0 && fabs(avg - (s0 + s1) / 2) <= 1e-6 * avg, "json[%zu].avg_ts %g is the mean of %g, %g",
              i, avg, s0, s1);
        CHECK(json_number_value(json_object_get(o, "stddev_ts")) >= 0, "json[%zu].stddev_ts", i);
        const char *mname = json_string_value(json_object_get(o, "model"));
        CHECK(mname && !strcmp(mname, "tiny (random)"), "json[%zu].model", i);
        const char *type = json_string_value(json_object_get(o, "type"));
        CHECK(type && !strcmp(type, "Q4_0"), "json[%zu].type", i);
        /* 18 matrices, token_embd and output in Q4_0 (18 bytes per 32
         * weights) plus 5 norms of 256 floats. */
        json_int_t q4_weights = 2 * (256 * 256 * 2 + 256 * 128 * 2 + 256 * 768 * 3) + 2 * 256 * 512;
        json_int_t want_size = q4_weights / 32 * 18 + 5 * 256 * 4;
        CHECK(json_integer_value(json_object_get(o, "model_size")) == want_size, "json[%zu].model_size %lld, want %lld",
              i, (long long)json_integer_value(json_object_get(o, "model_size")), (long long)want_size);
        CHECK(json_integer_value(json_object_get(o, "model_n_params")) == q4_weights + 5 * 256,
              "json[%zu].model_n_params", i);
        /* A generation step reads one row of token_embd, not the table. */
        json_int_t embd_bytes = 256 * 512 / 32 * 18;
        CHECK(json_integer_value(json_object_get(o, "weight_bytes_per_token")) == want_size - embd_bytes,
              "json[%zu].weight_bytes_per_token", i);
    }
    json_decref(root);
    free(out);
    free(err);
}

/* Each bad invocation exits 1 with exactly one line on stderr, nothing on stdout. */
static void check_errors(const char *model) {
    const char *cases[][12] = {
        {"bench", NULL},
        {"bench", "-m", model, "-p", "x", NULL},
        {"bench", "-m", model, "-p", "0", "-n", "0", NULL},
        {"bench", "-m", model, "-r", "0", NULL},
        {"bench", "-m", model, "-t", NULL},
        {"bench", "-m", model, "--frobnicate", NULL},
        {"bench", "-m", model, "--kv-type", "q8", NULL},
        {"bench", "-m", "/nonexistent/model.gguf", "-p", "1", "-n", "1", NULL},
        {"mkmodel", "--type", "Q4_0", "-o", "/tmp/x.gguf", NULL},
        {"mkmodel", "--shape", "huge", "--type", "Q4_0", "-o", "/tmp/x.gguf", NULL},
        {"mkmodel", "--shape", "tiny", "--type", "Q9_9", "-o", "/tmp/x.gguf", NULL},
        {"mkmodel", "--shape", "tiny", "--type", "Q4_0", NULL},
        {"mkmodel", "--shape", "tiny", "--type", "Q4_0", "-o", "/nonexistent/dir/x.gguf", "--vocab",
         vocab_path, NULL},
        {"mkmodel", "--shape", "tiny", "--type", "Q4_0", "-o", "/tmp/x.gguf", "--vocab",
         "/nonexistent/vocab.gguf", NULL},
        {"mkmodel", "--shape", "tiny", "--type", "Q4_0", "-o", "/tmp/x.gguf", "--seed", "-5", NULL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *argv[16] = {bin};
        int n = 1;
        for (int k = 0; cases[c][k]; k++) argv[n++] = cases[c][k];
        argv[n] = NULL;
        char *out, *err;
        int rc = run(argv, &out, &err);
        CHECK(rc == 1, "case %zu (%s %s): exit %d, want 1", c, argv[1], argv[2] ? argv[2] : "", rc);
        CHECK(count_lines(err) == 1 && strncmp(err, "nuri: ", 6) == 0,
              "case %zu (%s %s): one error line, got: %s", c, argv[1], argv[2] ? argv[2] : "", err);
        CHECK(out[0] == '\0', "case %zu: nothing on stdout: %s", c, out);
        free(out);
        free(err);
    }
    const char *cmds[] = {"bench", "mkmodel"};
    for (int i = 0; i < 2; i++) {
        char *out, *err;
        const char *argv[] = {bin, cmds[i], "--help", NULL};
        CHECK(run(argv, &out, &err) == 0, "%s --help exits 0", cmds[i]);
        CHECK(strstr(out, "usage: nuri") != NULL, "%s --help prints usage", cmds[i]);
        free(out);
        free(err);
    }
}

int main(void) {
    bin = test_nuri_bin();
    const char *v = test_shared_path("models/aidreams260K.gguf");
    if (!bin || !v) return test_finish();
    snprintf(vocab_path, sizeof vocab_path, "%s", v);
    char q4[4096] = "";
    check_mkmodel(q4, sizeof q4);
    if (q4[0]) {
        check_bench(q4);
        check_errors(q4);
    }
    return test_finish();
}
