/* cmd_mkmodel.c — `nuri mkmodel`: writes a GGUF file with random weights in
 * the shape of a real model and a real vocabulary, so that benchmarks need
 * no download.
 *
 * Weights are normal with standard deviation 0.02, norms are 1. Every row
 * draws from its own generator, seeded from (seed, tensor name, row), so the
 * bytes depend only on the seed and the arguments, never on the thread
 * count or the order in which tensors are made.
 *
 * Memory: the GGUF writer keeps a pointer to each tensor's data until the
 * file is written, so every converted tensor stays in memory until then:
 * about the file's size (1.1B parameters: 0.6 GiB in Q4_0, 2.1 GiB in F16,
 * 4.1 GiB in F32). Rows are generated and converted one at a time, so no
 * float copy of a whole quantized tensor is ever held. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static const char *mkmodel_usage =
    "usage: nuri mkmodel --shape SHAPE --type TYPE -o FILE [options]\n"
    "\n"
    "Writes a llama GGUF file with random weights (normal, std 0.02; norms 1)\n"
    "and the vocabulary (every tokenizer.* key) of a vocabulary GGUF. Every\n"
    "matrix, token_embd and output included, has TYPE; norms stay F32.\n"
    "\n"
    "  --shape SHAPE      tinyllama-1.1b, llama-3.2-1b, or for tests tiny (2\n"
    "                     layers, n_embd 256) and tiny-llama3 (the same with\n"
    "                     llama-3.2-1b's tied embeddings and rope scaling)\n"
    "  --type TYPE        F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,\n"
    "                     Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL or IQ4_XS\n"
    "  -o, --output FILE  the GGUF file to write\n"
    "  --vocab FILE       GGUF to take the vocabulary from (default: the shape's,\n"
    "                     under ../shared/vocab; the vocabulary size follows it)\n"
    "  --seed S           random seed (default 1)\n"
    "  -t, --threads N    threads generating weights (default: online CPUs)\n"
    "  -h, --help         this help\n";

/* ---- Shapes and types ---------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t n_embd, n_layer, n_head, n_head_kv, n_ff;
    uint32_t n_ctx;
    float rope_base, rms_eps;
    bool tied_embeddings;
    bool llama3_rope; /* write a rope_freqs tensor (Llama 3.1/3.2 scaling) */
    const char *default_vocab;
} model_shape;

static const model_shape shapes[] = {
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 2048, 10000.0f, 1e-5f, false, false,
     "../shared/vocab/ggml-vocab-llama-spm.gguf"},
    {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 131072, 500000.0f, 1e-5f, true, true,
     "../shared/vocab/ggml-vocab-llama3.gguf"},
    {"tiny", 256, 2, 4, 2, 768, 2048, 10000.0f, 1e-5f, false, false,
     "../shared/vocab/ggml-vocab-llama-spm.gguf"},
    /* tiny with llama-3.2-1b's particulars (tied embeddings, rope scaling). */
    {"tiny-llama3", 256, 2, 4, 2, 768, 131072, 500000.0f, 1e-5f, true, true,
     "../shared/vocab/ggml-vocab-llama3.gguf"},
};

/* Llama 3.2's rope scaling parameters (from its config.json). */
#define LLAMA3_ROPE_FACTOR 32.0
#define LLAMA3_ROPE_LOW_FREQ_FACTOR 1.0
#define LLAMA3_ROPE_HIGH_FREQ_FACTOR 4.0
#define LLAMA3_ROPE_ORIGINAL_CONTEXT 8192.0

/* llama.cpp's general.file_type numbers ("mostly TYPE") for files whose
 * matrices all have one type. */
static const struct {
    nuri_type type;
    uint32_t ftype;
    const char *ftype_name;
} file_types[] = {
    {NURI_TYPE_F32, 0, "F32"},       {NURI_TYPE_F16, 1, "F16"},
    {NURI_TYPE_Q4_0, 2, "Q4_0"},     {NURI_TYPE_Q4_1, 3, "Q4_1"},
    {NURI_TYPE_Q8_0, 7, "Q8_0"},     {NURI_TYPE_Q5_0, 8, "Q5_0"},
    {NURI_TYPE_Q5_1, 9, "Q5_1"},     {NURI_TYPE_Q2_K, 10, "Q2_K"},
    {NURI_TYPE_Q3_K, 11, "Q3_K_S"},  {NURI_TYPE_Q4_K, 14, "Q4_K_S"},
    {NURI_TYPE_Q5_K, 16, "Q5_K_S"},  {NURI_TYPE_Q6_K, 18, "Q6_K"},
    {NURI_TYPE_IQ4_NL, 25, "IQ4_NL"}, {NURI_TYPE_IQ4_XS, 30, "IQ4_XS"},
    {NURI_TYPE_BF16, 32, "BF16"},
};

const char *cli_ftype_name(uint32_t ftype) {
    for (size_t i = 0; i < sizeof file_types / sizeof file_types[0]; i++)
        if (file_types[i].ftype == ftype) return file_types[i].ftype_name;
    /* The mixes llama.cpp's quantizer makes. */
    switch (ftype) {
    case 12: return "Q3_K_M";
    case 13: return "Q3_K_L";
    case 15: return "Q4_K_M";
    case 17: return "Q5_K_M";
    default: return NULL;
    }
}

/* ---- Random numbers -------------------------------------------------------
 *
 * splitmix64 turns seeds into well-mixed states; xoshiro256** generates the
 * stream; Box-Muller turns pairs of uniforms into normals. */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t s[4];
} rng;

static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in (0, 1]: never 0, so its logarithm is finite. */
static double rng_uniform_open0(rng *r) { return ((rng_next(r) >> 11) + 1) * 0x1.0p-53; }

/* Fills out[0..n) with normal numbers of mean 0 and deviation std. */
static void fill_normal(rng *r, float *out, int64_t n, double std) {
    const double two_pi = 6.283185307179586476925;
    for (int64_t i = 0; i < n; i += 2) {
        double radius = std * sqrt(-2.0 * log(rng_uniform_open0(r)));
        double angle = two_pi * rng_uniform_open0(r);
        out[i] = (float)(radius * cos(angle));
        if (i + 1 < n) out[i + 1] = (float)(radius * sin(angle));
    }
}

/* FNV-1a: mixes a tensor's name into its seed. */
static uint64_t hash_name(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* ---- Tensor generation --------------------------------------------------- */

typedef struct {
    uint32_t type;
    int64_t n_cols, n_rows;
    size_t row_bytes;
    uint64_t tensor_seed;
    uint8_t *dst;
    int n_threads; /* the row stride: thread ith makes rows ith, ith + n_threads, ... */
} fill_job;

typedef struct {
    const fill_job *job;
    int ith;
    bool failed; /* its row buffer could not be allocated */
} fill_thread_arg;

/* Generates and converts rows ith, ith + nth, ... of the job's tensor. */
static void *fill_rows(void *p) {
    fill_thread_arg *a = p;
    const fill_job *job = a->job;
    float *row = nuri_malloc_array((size_t)job->n_cols, sizeof *row);
    if (!row) {
        a->failed = true;
        return NULL;
    }
    for (int64_t r = a->ith; r < job->n_rows; r += job->n_threads) {
        uint64_t seed = job->tensor_seed ^ ((uint64_t)r * 0xd1b54a32d192ed03ull);
        rng g;
        rng_seed(&g, seed);
        fill_normal(&g, row, job->n_cols, 0.02);
        nuri_quantize_row(job->type, row, job->dst + (size_t)r * job->row_bytes, job->n_cols);
    }
    free(row);
    return NULL;
}

#define MAX_FILL_THREADS 64

/* Returns a malloc'ed n_rows x n_cols tensor of random weights in type, or
 * NULL when out of memory. The bytes do not depend on n_threads. */
static uint8_t *random_tensor(uint32_t type, int64_t n_cols, int64_t n_rows, uint64_t seed,
                              const char *name, int n_threads) {
    fill_job job = {.type = type, .n_cols = n_cols, .n_rows = n_rows,
                    .row_bytes = nuri_row_size(type, n_cols)};
    uint64_t mix = seed ^ hash_name(name);
    job.tensor_seed = splitmix64(&mix);
    job.dst = nuri_malloc_array((size_t)n_rows, job.row_bytes);
    if (!job.dst) return NULL;
    if (n_threads > n_rows) n_threads = (int)n_rows;
    if (n_threads > MAX_FILL_THREADS) n_threads = MAX_FILL_THREADS;
    if (n_threads < 1) n_threads = 1;
    job.n_threads = n_threads;

    pthread_t threads[MAX_FILL_THREADS];
    fill_thread_arg args[MAX_FILL_THREADS];
    bool started[MAX_FILL_THREADS] = {false};
    for (int i = 0; i < n_threads; i++) args[i] = (fill_thread_arg){&job, i, false};
    for (int i = 1; i < n_threads; i++)
        started[i] = pthread_create(&threads[i], NULL, fill_rows, &args[i]) == 0;
    fill_rows(&args[0]);
    bool failed = args[0].failed;
    for (int i = 1; i < n_threads; i++) {
        if (started[i]) pthread_join(threads[i], NULL);
        else fill_rows(&args[i]); /* a thread that did not start: its rows are done here */
        failed |= args[i].failed;
    }
    if (failed) {
        free(job.dst);
        return NULL;
    }
    return job.dst;
}

/* A vector of n floats all equal to value (F32), or NULL. */
static float *constant_vector(int64_t n, float value) {
    float *v = nuri_malloc_array((size_t)n, sizeof *v);
    if (v)
        for (int64_t i = 0; i < n; i++) v[i] = value;
    return v;
}

/* Llama 3 rope scaling as a rope_freqs tensor: for each of the n_rot / 2
 * rotary frequencies, the factor it is divided by. Wavelengths shorter than
 * original_context / high_freq_factor keep their frequency (factor 1),
 * longer than original_context / low_freq_factor are slowed by `factor`,
 * and those in between blend the two linearly in original_context /
 * wavelength — Hugging Face's "llama3" rope_type. */
static float *llama3_rope_freqs(int64_t n_rot, double base) {
    int64_t half = n_rot / 2;
    float *out = nuri_malloc_array((size_t)half, sizeof *out);
    if (!out) return NULL;
    const double pi = 3.14159265358979323846;
    const double factor = LLAMA3_ROPE_FACTOR, low = LLAMA3_ROPE_LOW_FREQ_FACTOR,
                 high = LLAMA3_ROPE_HIGH_FREQ_FACTOR, original = LLAMA3_ROPE_ORIGINAL_CONTEXT;
    for (int64_t i = 0; i < half; i++) {
        double freq = pow(base, -2.0 * (double)i / (double)n_rot);
        double wavelen = 2.0 * pi / freq, divisor;
        if (wavelen < original / high) {
            divisor = 1.0;
        } else if (wavelen > original / low) {
            divisor = factor;
        } else {
            double smooth = (original / wavelen - low) / (high - low);
            divisor = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[i] = (float)divisor;
    }
    return out;
}

/* ---- The file -------------------------------------------------------------- */

typedef struct {
    gguf_writer *w;
    void **buffers; /* tensor data, freed after the write */
    size_t n_buffers;
    uint64_t n_params, n_bytes;
} model_builder;

static bool keep_buffer(model_builder *b, void *p) {
    void **nb = realloc(b->buffers, (b->n_buffers + 1) * sizeof *nb);
    if (!nb) return false;
    b->buffers = nb;
    b->buffers[b->n_buffers++] = p;
    return true;
}

/* Adds a tensor whose data (malloc'ed, owned by the builder from now on,
 * even on failure) has n_dims dimensions ne. */
static bool add_tensor(model_builder *b, const char *name, uint32_t type, uint32_t n_dims,
                       const int64_t *ne, void *data) {
    if (!data || !keep_buffer(b, data)) {
        free(data);
        cli_error("mkmodel: out of memory making tensor '%s'", name);
        return false;
    }
    nuri_status st = gguf_writer_add_tensor(b->w, name, type, n_dims, ne, data);
    if (st != NURI_OK) {
        cli_error("mkmodel: cannot add tensor '%s': %s", name, nuri_status_string(st));
        return false;
    }
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) n *= (uint64_t)ne[d];
    b->n_params += n;
    b->n_bytes += nuri_row_size(type, ne[0]) * (n / (uint64_t)ne[0]);
    return true;
}

static bool add_matrix(model_builder *b, const char *name, uint32_t type, int64_t n_cols,
                       int64_t n_rows, uint64_t seed, int n_threads) {
    int64_t ne[2] = {n_cols, n_rows};
    return add_tensor(b, name, type, 2, ne, random_tensor(type, n_cols, n_rows, seed, name, n_threads));
}

static bool add_norm(model_builder *b, const char *name, int64_t n) {
    return add_tensor(b, name, NURI_TYPE_F32, 1, &n, constant_vector(n, 1.0f));
}

/* Copies every tokenizer.* key of the vocabulary file; sets *n_vocab to its
 * token count. Prints one error line and returns false on failure. */
static bool copy_vocab(gguf_writer *w, const char *vocab_path, int64_t *n_vocab) {
    gguf_file *vf = NULL;
    nuri_error err;
    if (gguf_open(vocab_path, &vf, &err) != NURI_OK) {
        cli_error("mkmodel: vocabulary %s: %s", vocab_path, err.message);
        return false;
    }
    const gguf_value *tokens = gguf_get(vf, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->v.arr.elem_type != GGUF_TYPE_STRING ||
        tokens->v.arr.n == 0 || tokens->v.arr.n > INT32_MAX) {
        cli_error("mkmodel: vocabulary %s has no tokenizer.ggml.tokens string array", vocab_path);
        gguf_close(vf);
        return false;
    }
    *n_vocab = (int64_t)tokens->v.arr.n;
    static const char prefix[] = "tokenizer.";
    bool ok = true;
    for (uint64_t i = 0; i < gguf_n_kv(vf) && ok; i++) {
        const gguf_kv *kv = gguf_kv_at(vf, i);
        if (kv->key.len <= sizeof prefix - 1 || memcmp(kv->key.data, prefix, sizeof prefix - 1))
            continue;
        char *key = strndup(kv->key.data, (size_t)kv->key.len);
        nuri_status st = key ? gguf_writer_set_value(w, key, &kv->value) : NURI_ERR_NOMEM;
        if (st != NURI_OK) {
            cli_error("mkmodel: cannot copy %s from %s: %s", key ? key : "a tokenizer key",
                      vocab_path, nuri_status_string(st));
            ok = false;
        }
        free(key);
    }
    gguf_close(vf);
    return ok;
}

static bool set_metadata(gguf_writer *w, const model_shape *s, uint32_t ftype, bool quantized,
                         int64_t n_vocab) {
    char name[96];
    snprintf(name, sizeof name, "%s (random)", s->name);
    uint32_t n_rot = (uint32_t)(s->n_embd / s->n_head);
    nuri_status st = NURI_OK;
#define SET(call) \
    if (st == NURI_OK) st = (call)
    SET(gguf_writer_set_str(w, "general.architecture", "llama"));
    SET(gguf_writer_set_str(w, "general.name", name));
    SET(gguf_writer_set_u32(w, "general.file_type", ftype));
    if (quantized) SET(gguf_writer_set_u32(w, "general.quantization_version", 2));
    SET(gguf_writer_set_u32(w, "llama.context_length", s->n_ctx));
    SET(gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->n_embd));
    SET(gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layer));
    SET(gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff));
    SET(gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_head));
    SET(gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_head_kv));
    SET(gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", s->rms_eps));
    SET(gguf_writer_set_f32(w, "llama.rope.freq_base", s->rope_base));
    SET(gguf_writer_set_u32(w, "llama.rope.dimension_count", n_rot));
    SET(gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab));
#undef SET
    if (st != NURI_OK) cli_error("mkmodel: cannot set metadata: %s", nuri_status_string(st));
    return st == NURI_OK;
}

static bool add_tensors(model_builder *b, const model_shape *s, uint32_t type, int64_t n_vocab,
                        uint64_t seed, int n_threads) {
    int64_t head_dim = s->n_embd / s->n_head, kv_dim = head_dim * s->n_head_kv;
    if (!add_matrix(b, "token_embd.weight", type, s->n_embd, n_vocab, seed, n_threads))
        return false;
    char name[64];
    for (int64_t l = 0; l < s->n_layer; l++) {
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%" PRId64 ".%s", l, suffix), name)
        if (!add_norm(b, NAME("attn_norm.weight"), s->n_embd) ||
            !add_matrix(b, NAME("attn_q.weight"), type, s->n_embd, s->n_embd, seed, n_threads) ||
            !add_matrix(b, NAME("attn_k.weight"), type, s->n_embd, kv_dim, seed, n_threads) ||
            !add_matrix(b, NAME("attn_v.weight"), type, s->n_embd, kv_dim, seed, n_threads) ||
            !add_matrix(b, NAME("attn_output.weight"), type, s->n_embd, s->n_embd, seed, n_threads) ||
            !add_norm(b, NAME("ffn_norm.weight"), s->n_embd) ||
            !add_matrix(b, NAME("ffn_gate.weight"), type, s->n_embd, s->n_ff, seed, n_threads) ||
            !add_matrix(b, NAME("ffn_up.weight"), type, s->n_embd, s->n_ff, seed, n_threads) ||
            !add_matrix(b, NAME("ffn_down.weight"), type, s->n_ff, s->n_embd, seed, n_threads))
            return false;
#undef NAME
    }
    if (!add_norm(b, "output_norm.weight", s->n_embd)) return false;
    if (!s->tied_embeddings &&
        !add_matrix(b, "output.weight", type, s->n_embd, n_vocab, seed, n_threads))
        return false;
    if (s->llama3_rope) {
        int64_t half = head_dim / 2;
        if (!add_tensor(b, "rope_freqs.weight", NURI_TYPE_F32, 1, &half,
                        llama3_rope_freqs(head_dim, s->rope_base)))
            return false;
    }
    return true;
}

/* ---- Command ------------------------------------------------------------- */

int cmd_mkmodel(int argc, char **argv) {
    const char *shape_name = NULL, *type_name = NULL, *out_path = NULL, *vocab_path = NULL;
    long seed = 1, n_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(mkmodel_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--shape")) ok = cli_take_str(argc, argv, &i, &shape_name);
        else if (!strcmp(a, "--type")) ok = cli_take_str(argc, argv, &i, &type_name);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) ok = cli_take_str(argc, argv, &i, &out_path);
        else if (!strcmp(a, "--vocab")) ok = cli_take_str(argc, argv, &i, &vocab_path);
        else if (!strcmp(a, "--seed")) ok = cli_take_int(argc, argv, &i, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_take_int(argc, argv, &i, 1, 64, &n_threads);
        else return cli_error("mkmodel: unknown option '%s' (see nuri mkmodel --help)", a);
        if (!ok) return 1;
    }
    if (!shape_name) return cli_error("mkmodel: no shape given (--shape tinyllama-1.1b|llama-3.2-1b|tiny|tiny-llama3)");
    if (!type_name) return cli_error("mkmodel: no type given (--type F16|Q8_0|Q4_0|...)");
    if (!out_path) return cli_error("mkmodel: no output file given (-o FILE)");

    const model_shape *shape = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, shape_name)) shape = &shapes[i];
    if (!shape)
        return cli_error("mkmodel: unknown shape '%s' (tinyllama-1.1b, llama-3.2-1b, tiny or tiny-llama3)",
                         shape_name);
    int type_index = -1;
    for (size_t i = 0; i < sizeof file_types / sizeof file_types[0]; i++)
        if (!strcasecmp(nuri_type_name(file_types[i].type), type_name)) type_index = (int)i;
    if (type_index < 0)
        return cli_error("mkmodel: unknown type '%s' (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, "
                         "Q5_1, Q2_K..Q6_K, IQ4_NL, IQ4_XS)", type_name);
    uint32_t type = file_types[type_index].type;
    const nuri_type_traits *traits = nuri_type_get(type);
    if (!traits || !traits->from_float)
        return cli_error("mkmodel: nuri has no quantizer for type %s yet", nuri_type_name(type));
    int64_t block = traits->block_size;
    if (shape->n_embd % block || shape->n_ff % block)
        return cli_error("mkmodel: shape %s has rows that are not a multiple of %s's %" PRId64
                         "-element blocks", shape->name, nuri_type_name(type), block);
    if (!vocab_path) vocab_path = shape->default_vocab;
    if (n_threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = online < 1 ? 1 : online > 64 ? 64 : online;
    }

    double t0 = cli_now();
    model_builder b = {.w = gguf_writer_create()};
    if (!b.w) return cli_error("mkmodel: out of memory");
    int status = 1;
    int64_t n_vocab = 0;
    bool quantized = traits->block_size > 1;
    if (copy_vocab(b.w, vocab_path, &n_vocab) &&
        set_metadata(b.w, shape, file_types[type_index].ftype, quantized, n_vocab) &&
        add_tensors(&b, shape, type, n_vocab, (uint64_t)seed, (int)n_threads)) {
        nuri_error err;
        if (gguf_writer_write(b.w, out_path, &err) != NURI_OK) {
            cli_error("mkmodel: %s", err.message);
        } else {
            fprintf(stderr,
                    "mkmodel: wrote %s: %s %s, %.3f B parameters, %.3f GiB of weights, vocab %" PRId64
                    " from %s, seed %ld, %.1f s\n",
                    out_path, shape->name, nuri_type_name(type), (double)b.n_params * 1e-9,
                    (double)b.n_bytes / (1024.0 * 1024.0 * 1024.0), n_vocab, vocab_path, seed,
                    cli_now() - t0);
            status = 0;
        }
    }
    gguf_writer_free(b.w);
    for (size_t i = 0; i < b.n_buffers; i++) free(b.buffers[i]);
    free(b.buffers);
    return status;
}
