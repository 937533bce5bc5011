/* test_model.c — the model loader and forward pass on variants of the
 * shared tiny models that the test writes itself with the GGUF writer:
 *  - the same model in F16 / BF16 must compute what an F32 model
 *    holding the same rounded weights computes (the typed matmul paths);
 *  - RoPE options: a rope_freqs tensor of 2s equals linear scaling by 2, and
 *    Llama 3 scaling from metadata equals the rope_freqs tensor HF's formula
 *    gives;
 *  - a Qwen2 file (NeoX RoPE, q/k/v biases) built from a Llama model by
 *    permuting q/k rows computes the same logits;
 *  - broken metadata or tensors give a clear error naming the problem. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "nuri.h"
#include "quant/quant.h"
#include "support/test.h"

/* ---- Writing variants of a model ------------------------------------------- */

typedef struct variant variant;
struct variant {
    const char *skip_key, *skip_tensor;
    bool (*skip_tensor_if)(const char *name);
    uint32_t weight_type;     /* matrices converted to this type; F32 keeps them */
    bool round_trip;          /* write F32 holding weights rounded through weight_type */
    const char *rename_arch;  /* write the file under this architecture name */
    void (*edit)(gguf_writer *w, const gguf_file *src, void *arg);
    void *arg;
};

static void *keep[256];
static int n_keep;

static void *kept(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (n_keep < 256) keep[n_keep++] = p;
    return p;
}

static void free_kept(void) {
    while (n_keep) free(keep[--n_keep]);
}

static float *tensor_floats(const gguf_tensor *t) {
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    float *out = kept(sizeof(float) * (size_t)n);
    nuri_dequantize_row(t->type, t->data, out, n);
    return out;
}

/* Writes src (a path under shared/) with the changes v asks for; returns
 * the new file's path (static buffer). */
static const char *write_variant(const char *src_rel, const char *name, const variant *v) {
    static char path[4096];
    gguf_file *src;
    nuri_error err;
    if (gguf_open(test_shared_path(src_rel), &src, &err) != NURI_OK) {
        CHECK(0, "open %s: %s", src_rel, err.message);
        return NULL;
    }
    gguf_writer *w = gguf_writer_create();
    for (uint64_t i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.data);
        if (v->skip_key && !strcmp(key, v->skip_key)) continue;
        if (v->rename_arch && !strncmp(key, "llama.", 6)) {
            char renamed[300];
            snprintf(renamed, sizeof renamed, "%s.%s", v->rename_arch, key + 6);
            gguf_writer_set_value(w, renamed, &kv->value);
            continue;
        }
        gguf_writer_set_value(w, key, &kv->value);
    }
    if (v->rename_arch) gguf_writer_set_str(w, "general.architecture", v->rename_arch);
    for (uint64_t i = 0; i < gguf_n_tensors(src); i++) {
        const gguf_tensor *t = gguf_tensor_at(src, i);
        char tname[256];
        snprintf(tname, sizeof tname, "%.*s", (int)t->name.len, t->name.data);
        if (v->skip_tensor && !strcmp(tname, v->skip_tensor)) continue;
        if (v->skip_tensor_if && v->skip_tensor_if(tname)) continue;
        const void *data = t->data;
        uint32_t type = t->type;
        if (t->n_dims == 2 && v->weight_type != NURI_TYPE_F32) {
            int64_t n = t->ne[0] * t->ne[1];
            float *f = tensor_floats(t);
            void *q = kept(nuri_row_size(v->weight_type, t->ne[0]) * (size_t)t->ne[1]);
            nuri_quantize_row(v->weight_type, f, q, n);
            if (v->round_trip) {
                nuri_dequantize_row(v->weight_type, q, f, n);
                data = f;
                type = NURI_TYPE_F32;
            } else {
                data = q;
                type = v->weight_type;
            }
        }
        CHECK(gguf_writer_add_tensor(w, tname, type, t->n_dims, t->ne, data) == NURI_OK, "add %s", tname);
    }
    if (v->edit) v->edit(w, src, v->arg);
    snprintf(path, sizeof path, "%s", test_tmp_path(name));
    CHECK(gguf_writer_write(w, path, &err) == NURI_OK, "write %s: %s", name, err.message);
    gguf_writer_free(w);
    gguf_close(src);
    free_kept();
    return path;
}

/* ---- Running them ----------------------------------------------------------- */

/* Logits of every position of a fixed prompt (malloc'ed, n x n_vocab), or
 * NULL when the model does not load (err filled). */
static float *prompt_logits(const char *path, int *n_vocab, nuri_error *err) {
    static const nuri_token prompt[] = {1, 429, 491, 433, 295, 429, 444, 445, 265, 262, 263, 342, 430,
                                        303, 279, 430, 375, 312, 281, 268};
    enum { N = sizeof prompt / sizeof prompt[0] };
    nuri_model *m;
    if (nuri_model_load(path, NULL, &m, err) != NURI_OK) return NULL;
    nuri_context *ctx;
    float *out = NULL;
    if (nuri_context_create(m, NULL, &ctx, err) == NURI_OK) {
        *n_vocab = nuri_model_n_vocab(m);
        if (nuri_eval(ctx, prompt, NULL, N, true, err) == NURI_OK) {
            out = malloc(sizeof(float) * N * (size_t)*n_vocab);
            for (int i = 0; i < N; i++)
                memcpy(out + (size_t)i * *n_vocab, nuri_logits_ith(ctx, (size_t)i),
                       sizeof(float) * (size_t)*n_vocab);
        }
        nuri_context_free(ctx);
    }
    nuri_model_free(m);
    return out;
}

enum { PROMPT_LEN = 20 };

static double max_rel_diff(const float *a, const float *b, int n_vocab) {
    double worst = 0;
    for (int t = 0; t < PROMPT_LEN; t++) {
        double num = 0, den = 0;
        for (int i = 0; i < n_vocab; i++) {
            double d = (double)a[(size_t)t * n_vocab + i] - b[(size_t)t * n_vocab + i];
            num += d * d;
            den += (double)b[(size_t)t * n_vocab + i] * b[(size_t)t * n_vocab + i];
        }
        double e = sqrt(num / (den > 0 ? den : 1));
        if (e > worst) worst = e;
    }
    return worst;
}

/* The worst relative L2 difference between two files' logits over the
 * prompt, or -1 when either fails to run. */
static double logits_difference(const char *what, const char *path_a, const char *path_b) {
    char a_copy[4096];
    snprintf(a_copy, sizeof a_copy, "%s", path_a);
    nuri_error err;
    int nv_a = 0, nv_b = 0;
    double e = -1;
    float *a = prompt_logits(a_copy, &nv_a, &err);
    CHECK(a != NULL, "%s: first model: %s", what, a ? "" : err.message);
    float *b = prompt_logits(path_b, &nv_b, &err);
    CHECK(b != NULL, "%s: second model: %s", what, b ? "" : err.message);
    if (a && b && nv_a == nv_b) {
        e = max_rel_diff(a, b, nv_a);
        printf("%s: worst rel. L2 difference %.2e\n", what, e);
    }
    free(a);
    free(b);
    return e;
}

static void check_same_logits(const char *what, const char *path_a, const char *path_b, double tol) {
    double e = logits_difference(what, path_a, path_b);
    CHECK(e >= 0 && e <= tol, "%s: logits differ by %.3g (rel. L2), tolerance %.1g", what, e, tol);
}

static void check_weight_types(void) {
    struct {
        uint32_t type;
        double tol;
    } types[] = {{NURI_TYPE_F16, 1e-5}, {NURI_TYPE_BF16, 1e-5}};
    /* (Q8_0 and the 4/5-bit types are checked against llama.cpp's goldens
     * in test_golden; stories260K's 172-wide rows do not fit their blocks.) */
    for (int i = 0; i < 2; i++) {
        char name[64], ref[4096];
        variant rt = {.weight_type = types[i].type, .round_trip = true};
        snprintf(name, sizeof name, "rounded-%s.gguf", nuri_type_name(types[i].type));
        snprintf(ref, sizeof ref, "%s", write_variant("models/stories260K.gguf", name, &rt));
        variant typed = {.weight_type = types[i].type};
        snprintf(name, sizeof name, "typed-%s.gguf", nuri_type_name(types[i].type));
        const char *path = write_variant("models/stories260K.gguf", name, &typed);
        snprintf(name, sizeof name, "%s weights vs. F32 holding the same values", nuri_type_name(types[i].type));
        check_same_logits(name, ref, path, types[i].tol);
    }
}

/* ---- RoPE options ------------------------------------------------------------ */

static void add_rope_freqs(gguf_writer *w, const gguf_file *src, void *arg) {
    const float *factors = arg;
    int64_t ne[1] = {4}; /* stories260K: head_dim 8 -> 4 frequency pairs */
    gguf_writer_add_tensor(w, "rope_freqs.weight", NURI_TYPE_F32, 1, ne, factors);
}

static void set_linear_scaling(gguf_writer *w, const gguf_file *src, void *arg) {
    gguf_writer_set_str(w, "llama.rope.scaling.type", "linear");
    gguf_writer_set_f32(w, "llama.rope.scaling.factor", 2.0f);
}

static void set_llama3_scaling(gguf_writer *w, const gguf_file *src, void *arg) {
    gguf_writer_set_str(w, "llama.rope.scaling.type", "llama3");
    gguf_writer_set_f32(w, "llama.rope.scaling.factor", 8.0f);
    gguf_writer_set_f32(w, "llama.rope.scaling.low_freq_factor", 1.0f);
    gguf_writer_set_f32(w, "llama.rope.scaling.high_freq_factor", 4.0f);
    gguf_writer_set_u32(w, "llama.rope.scaling.original_context_length", 64);
}

static void check_rope_options(void) {
    char twos_path[4096], linear_path[4096];
    static float twos[4] = {2, 2, 2, 2};
    variant v_twos = {.weight_type = NURI_TYPE_F32, .edit = add_rope_freqs, .arg = twos};
    snprintf(twos_path, sizeof twos_path, "%s", write_variant("models/stories260K.gguf", "twos.gguf", &v_twos));
    variant v_linear = {.weight_type = NURI_TYPE_F32, .edit = set_linear_scaling};
    snprintf(linear_path, sizeof linear_path, "%s",
             write_variant("models/stories260K.gguf", "linear.gguf", &v_linear));
    check_same_logits("rope_freqs of 2 vs. linear scaling 2", twos_path, linear_path, 1e-6);
    double e = logits_difference("rope scaling changes the output", twos_path,
                                 test_shared_path("models/stories260K.gguf"));
    CHECK(e > 1e-2, "rope_freqs must change the logits (difference %.3g)", e);

    /* Hugging Face's Llama 3 formula, written out here independently, with
     * original context 64 so that a head size of 8 (wavelengths 2*pi*10000^(i/4))
     * has frequencies in all three bands. */
    static float hf[4];
    for (int i = 0; i < 4; i++) {
        double freq = pow(10000.0, -2.0 * i / 8), wavelen = 2 * M_PI / freq, scaled;
        double low_wl = 64 / 1.0, high_wl = 64 / 4.0;
        if (wavelen < high_wl) scaled = freq;
        else if (wavelen > low_wl) scaled = freq / 8;
        else {
            double smooth = (64 / wavelen - 1.0) / (4.0 - 1.0);
            scaled = (1 - smooth) * freq / 8 + smooth * freq;
        }
        hf[i] = (float)(freq / scaled);
    }
    CHECK(hf[0] == 1.0f && hf[3] > 7.99f && hf[1] > 1.0f && hf[1] < 8.0f, "the formula covers all bands: %g %g %g %g",
          hf[0], hf[1], hf[2], hf[3]);
    char tensor_path[4096];
    variant v_tensor = {.weight_type = NURI_TYPE_F32, .edit = add_rope_freqs, .arg = hf};
    snprintf(tensor_path, sizeof tensor_path, "%s",
             write_variant("models/stories260K.gguf", "llama3-tensor.gguf", &v_tensor));
    variant v_keys = {.weight_type = NURI_TYPE_F32, .edit = set_llama3_scaling};
    check_same_logits("llama3 scaling from keys vs. rope_freqs", tensor_path,
                      write_variant("models/stories260K.gguf", "llama3-keys.gguf", &v_keys), 1e-6);
}

/* ---- Qwen2 -------------------------------------------------------------------- */

/* Rewrites q and k so that NeoX RoPE (pairs i, i + d/2) on the new rows does
 * what Llama's RoPE (pairs 2i, 2i + 1) did on the old ones, and adds zero
 * biases. Attention scores are unchanged by permuting q and k alike. */
static void to_qwen2(gguf_writer *w, const gguf_file *src, void *arg) {
    const int head_dim = 8, n_embd = 64;
    for (int l = 0; l < 5; l++) {
        const char *which[2] = {"q", "k"};
        for (int j = 0; j < 2; j++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.attn_%s.weight", l, which[j]);
            const gguf_tensor *t = gguf_find_tensor(src, name);
            float *in = tensor_floats(t), *out = kept(sizeof(float) * (size_t)(t->ne[0] * t->ne[1]));
            for (int64_t r = 0; r < t->ne[1]; r++) {
                int64_t head = r / head_dim, i = r % head_dim;
                int64_t to = head * head_dim + (i % 2 == 0 ? i / 2 : head_dim / 2 + i / 2);
                memcpy(out + to * n_embd, in + r * n_embd, sizeof(float) * n_embd);
            }
            gguf_writer_add_tensor(w, name, NURI_TYPE_F32, 2, t->ne, out);
            snprintf(name, sizeof name, "blk.%d.attn_%s.bias", l, which[j]);
            int64_t ne[1] = {t->ne[1]};
            gguf_writer_add_tensor(w, name, NURI_TYPE_F32, 1, ne, kept(sizeof(float) * (size_t)t->ne[1]));
        }
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_v.bias", l);
        int64_t ne[1] = {32};
        gguf_writer_add_tensor(w, name, NURI_TYPE_F32, 1, ne, kept(sizeof(float) * 32));
    }
}

static bool is_q_or_k(const char *name) {
    size_t n = strlen(name);
    return n > 13 && (!strcmp(name + n - 13, "attn_q.weight") || !strcmp(name + n - 13, "attn_k.weight"));
}

static void check_qwen2(void) {
    variant v = {.weight_type = NURI_TYPE_F32, .rename_arch = "qwen2", .skip_tensor_if = is_q_or_k,
                 .edit = to_qwen2};
    check_same_logits("qwen2 (NeoX RoPE, biases) vs. the llama original",
                      write_variant("models/stories260K.gguf", "qwen2.gguf", &v),
                      test_shared_path("models/stories260K.gguf"), 1e-5);
}

/* ---- Broken models -------------------------------------------------------------- */

static void set_key_u32(gguf_writer *w, const gguf_file *src, void *arg) {
    const char *spec = arg; /* "key=value" */
    char key[128];
    const char *eq = strchr(spec, '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - spec), spec);
    gguf_writer_set_u32(w, key, (uint32_t)strtoul(eq + 1, NULL, 10));
}

static void set_key_f32(gguf_writer *w, const gguf_file *src, void *arg) {
    const char *spec = arg;
    char key[128];
    const char *eq = strchr(spec, '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - spec), spec);
    gguf_writer_set_f32(w, key, strtof(eq + 1, NULL));
}

static void set_key_str(gguf_writer *w, const gguf_file *src, void *arg) {
    const char *spec = arg;
    char key[128];
    const char *eq = strchr(spec, '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - spec), spec);
    gguf_writer_set_str(w, key, eq + 1);
}

static void short_q_tensor(gguf_writer *w, const gguf_file *src, void *arg) {
    const gguf_tensor *t = gguf_find_tensor(src, "blk.0.attn_q.weight");
    int64_t ne[2] = {64, 32};
    gguf_writer_add_tensor(w, "blk.0.attn_q.weight", t->type, 2, ne, t->data);
}

/* blk.0.ffn_down of the mini model (768 x 256) as IQ2_XXS, with zero bytes. */
static void iq2_tensor(gguf_writer *w, const gguf_file *src, void *arg) {
    int64_t ne[2] = {768, 256};
    size_t bytes = nuri_row_size(16, 768) * 256;
    CHECK(bytes > 0, "IQ2_XXS row size");
    gguf_writer_add_tensor(w, "blk.0.ffn_down.weight", 16, 2, ne, kept(bytes));
}

static void check_broken(void) {
    struct {
        const char *what;
        variant v;
        const char *want; /* in the message */
    } cases[] = {
        {"missing tensor", {.skip_tensor = "blk.1.ffn_up.weight"}, "blk.1.ffn_up.weight"},
        {"missing norm", {.skip_tensor = "output_norm.weight"}, "output_norm.weight"},
        {"wrong shape", {.skip_tensor = "blk.0.attn_q.weight", .edit = short_q_tensor}, "blk.0.attn_q.weight"},
        {"missing key", {.skip_key = "llama.embedding_length"}, "llama.embedding_length"},
        {"key of the wrong type", {.edit = set_key_str, .arg = "llama.block_count=five"}, "llama.block_count"},
        {"head count not dividing", {.edit = set_key_u32, .arg = "llama.attention.head_count=3"}, "head"},
        {"kv heads not dividing", {.edit = set_key_u32, .arg = "llama.attention.head_count_kv=3"}, "KV head"},
        {"zero heads", {.edit = set_key_u32, .arg = "llama.attention.head_count=0"}, "head_count"},
        {"absurd block count", {.edit = set_key_u32, .arg = "llama.block_count=4000000000"}, "block count"},
        {"more blocks than tensors", {.edit = set_key_u32, .arg = "llama.block_count=6"}, "blk.5"},
        {"zero context", {.edit = set_key_u32, .arg = "llama.context_length=0"}, "context length"},
        {"bad epsilon", {.edit = set_key_f32, .arg = "llama.attention.layer_norm_rms_epsilon=-1"}, "epsilon"},
        {"bad rope base", {.edit = set_key_f32, .arg = "llama.rope.freq_base=0"}, "rope"},
        {"unknown architecture", {.edit = set_key_str, .arg = "general.architecture=gpt-neox"}, "gpt-neox"},
        {"unknown rope scaling", {.edit = set_key_str, .arg = "llama.rope.scaling.type=yarn"}, "yarn"},
        {"no vocabulary", {.skip_key = "tokenizer.ggml.tokens"}, "tokenizer.ggml.tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        variant v = cases[i].v;
        v.weight_type = NURI_TYPE_F32;
        char name[64];
        snprintf(name, sizeof name, "broken-%zu.gguf", i);
        const char *path = write_variant("models/stories260K.gguf", name, &v);
        if (!path) continue;
        nuri_model *m = NULL;
        nuri_error err = {0};
        nuri_status st = nuri_model_load(path, NULL, &m, &err);
        CHECK(st != NURI_OK && m == NULL, "%s: loads but should not", cases[i].what);
        CHECK(st == NURI_OK || strstr(err.message, cases[i].want) != NULL, "%s: message '%s' lacks '%s'",
              cases[i].what, err.message, cases[i].want);
        nuri_model_free(m);
    }
    /* A type GGUF has and nuri names, but cannot compute with (IQ2_XXS). */
    variant v = {.weight_type = NURI_TYPE_F32, .skip_tensor = "blk.0.ffn_down.weight", .edit = iq2_tensor};
    const char *path = write_variant("golden/quant/mini-F32.gguf", "iq2.gguf", &v);
    nuri_model *m = NULL;
    nuri_error err = {0};
    nuri_status st = path ? nuri_model_load(path, NULL, &m, &err) : NURI_ERR_IO;
    CHECK(st == NURI_ERR_UNSUPPORTED && strstr(err.message, "IQ2_XXS") && strstr(err.message, "blk.0.ffn_down"),
          "IQ2_XXS tensor: %d '%s'", st, err.message);
    nuri_model_free(m);
}

/* Random byte corruption in the metadata and tensor-info part of a real
 * file: loading must fail cleanly or give a model that works (tokenize and
 * evaluate a few tokens) — never crash; ASan watches. */
static void check_fuzzed_metadata(void) {
    size_t len;
    char *orig = test_read_file(test_shared_path("models/aidreams260K.gguf"), &len);
    if (!orig) return;
    gguf_file *f;
    nuri_error err;
    if (gguf_open(test_shared_path("models/aidreams260K.gguf"), &f, &err) != NURI_OK) return;
    size_t header_end = (size_t)gguf_data_offset(f);
    gguf_close(f);
    const char *path = test_tmp_path("fuzzed.gguf");
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int loaded = 0, refused = 0;
    char *data = malloc(len);
    for (int iter = 0; iter < 400; iter++) {
        memcpy(data, orig, len);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % header_end;
            data[at] = (char)(rng >> 20);
        }
        FILE *out = fopen(path, "wb");
        fwrite(data, 1, len, out);
        fclose(out);
        nuri_model *m = NULL;
        if (nuri_model_load(path, NULL, &m, &err) != NURI_OK) {
            refused++;
            CHECK(m == NULL && err.message[0] && !strchr(err.message, '\n'), "iteration %d: error message", iter);
            continue;
        }
        loaded++;
        nuri_token *toks;
        size_t n;
        if (nuri_tokenize(m, "Hello world", 11, NURI_TOKENIZE_ADD_BOS | NURI_TOKENIZE_PARSE_SPECIAL, &toks, &n,
                          &err) == NURI_OK) {
            nuri_context *ctx;
            if (n > 0 && nuri_context_create(m, NULL, &ctx, &err) == NURI_OK) {
                nuri_status st = nuri_eval(ctx, toks, NULL, n, false, &err);
                if (st == NURI_OK) CHECK(nuri_logits(ctx) != NULL, "iteration %d: logits", iter);
                nuri_context_free(ctx);
            }
            char piece[64];
            for (size_t i = 0; i < n; i++) nuri_token_to_piece(m, toks[i], true, piece, sizeof piece);
            nuri_free(toks);
        }
        nuri_model_free(m);
    }
    printf("fuzzed metadata: %d refused, %d still loadable\n", refused, loaded);
    CHECK(refused > 50, "most corruptions are caught (%d of 400)", refused);
    free(data);
    free(orig);
}

/* The same logits, bit for bit, whatever the thread count: threads split
 * weight rows at fixed boundaries and the kernels give each output element
 * the same bits however the rows are split. */
static void check_thread_invariance(void) {
    const char *models[] = {"golden/quant/mini-Q4_0-pure.gguf", "golden/quant/mini-Q5_1-pure.gguf",
                            "models/stories260K.gguf"};
    static const nuri_token prompt[] = {1, 429, 491, 433, 295, 429, 444, 445, 265, 262, 263, 342, 430};
    for (int mi = 0; mi < 3; mi++) {
        nuri_model *m;
        nuri_error err;
        if (nuri_model_load(test_shared_path(models[mi]), NULL, &m, &err) != NURI_OK) {
            CHECK(0, "load %s: %s", models[mi], err.message);
            continue;
        }
        int nv = nuri_model_n_vocab(m);
        float *ref = malloc(sizeof(float) * 13 * (size_t)nv);
        for (int threads = 1; threads <= 4; threads++) {
            nuri_context_params cp = nuri_context_default_params();
            cp.n_threads = threads;
            nuri_context *ctx;
            CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "context");
            CHECK(nuri_eval(ctx, prompt, NULL, 13, true, &err) == NURI_OK, "eval");
            bool same = true;
            for (int t = 0; t < 13; t++) {
                const float *lg = nuri_logits_ith(ctx, (size_t)t);
                if (threads == 1) memcpy(ref + (size_t)t * nv, lg, sizeof(float) * (size_t)nv);
                else same &= memcmp(ref + (size_t)t * nv, lg, sizeof(float) * (size_t)nv) == 0;
            }
            CHECK(same, "%s: logits with %d threads differ from 1 thread", models[mi], threads);
            nuri_context_free(ctx);
        }
        free(ref);
        nuri_model_free(m);
    }
}

int main(void) {
    if (!test_shared_path("models")) return test_finish();
    check_weight_types();
    check_rope_options();
    check_qwen2();
    check_broken();
    check_fuzzed_metadata();
    check_thread_invariance();
    return test_finish();
}
