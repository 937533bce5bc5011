/* cmd_bench.c — `nuri bench`: measures prompt processing (pp) and
 * generation (tg) speed the way llama.cpp's llama-bench does, so the two
 * engines' figures can be compared on the same file.
 *
 * Method (per test, after one untimed warm-up):
 *   ppP  the KV cache is emptied, then P tokens (BOS, then random ids from a
 *        fixed seed) are evaluated as one nuri_eval call; t/s = P / time.
 *   tgN  the KV cache is emptied, then N single-token nuri_eval calls run
 *        (BOS first, then random ids; nothing is sampled), timed from the
 *        start of the first to the end of the last; t/s = N / time.
 * Each test repeats REPS times and reports the mean and sample standard
 * deviation of the per-repetition t/s. The warm-ups are a full ppP and a
 * one-token generation step, as in llama-bench. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/threadpool.h"
#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static const char *bench_usage =
    "usage: nuri bench -m MODEL [options]\n"
    "\n"
    "Measures prompt processing (ppP: one batch of P tokens from an empty cache)\n"
    "and generation (tgN: N single-token steps from an empty cache) and prints a\n"
    "markdown table of t/s, mean ± standard deviation over the repetitions.\n"
    "\n"
    "  -m, --model FILE        GGUF model or llama2.c checkpoint\n"
    "      --tokenizer FILE    llama2.c tokenizer.bin (default: beside the model)\n"
    "  -p, --n-prompt P        prompt tokens (default 512; 0 skips the test)\n"
    "  -n, --n-gen N           generated tokens (default 128; 0 skips the test)\n"
    "  -t, --threads N         threads (default: physical cores)\n"
    "  -r, --repetitions R     repetitions of each test (default 5)\n"
    "  -b, --batch-size B      the context's batch size (default 512)\n"
    "      --kv-type f16|f32   KV cache element type (default f16, as llama-bench)\n"
    "      --json              print a JSON array of results instead of the table\n"
    "  -h, --help              this help\n";

/* ---- What the table says about the model ------------------------------- */

#define NAME_COLUMN_WIDTH 30

typedef struct {
    char name[NAME_COLUMN_WIDTH + 1]; /* printable ASCII, no '|' */
    json_t *json_name;                /* the full name as a JSON string */
    uint64_t size_bytes, n_params;    /* of the weights; n_params 0 when unknown */
    /* Bytes a generation step reads: all weights, less the embedding table
     * when a separate output matrix exists (then only one row of it is read). */
    uint64_t bytes_per_token;
    char type[16];
} model_info;

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Copies a name from a file into the table's column: non-ASCII, control
 * characters and '|' (which would break the table) become '?'. */
static void table_name(char *dst, const char *src, size_t len) {
    size_t n = len < NAME_COLUMN_WIDTH ? len : NAME_COLUMN_WIDTH;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c >= 0x20 && c < 0x7f && c != '|' ? (char)c : '?';
    }
    dst[n] = '\0';
}

/* Fills info from the file's GGUF header (name, weight bytes, parameter
 * count, file type), falling back to the file name and size for files that
 * are not GGUF (llama2.c checkpoints). */
static void read_model_info(const char *path, model_info *info) {
    memset(info, 0, sizeof *info);
    const char *file = base_name(path);
    gguf_file *f = NULL;
    nuri_error err;
    if (gguf_open(path, &f, &err) != NURI_OK) {
        table_name(info->name, file, strlen(file));
        info->json_name = json_string(file);
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size > 0) info->size_bytes = (uint64_t)st.st_size;
        info->bytes_per_token = info->size_bytes;
        snprintf(info->type, sizeof info->type, "F32");
        return;
    }
    gguf_str name = {0};
    if (gguf_get_str(f, "general.name", false, &name, &err) == NURI_OK && name.data &&
        name.len > 0) {
        table_name(info->name, name.data, (size_t)name.len);
        info->json_name = json_stringn(name.data, (size_t)name.len); /* NULL if not UTF-8 */
    } else {
        table_name(info->name, file, strlen(file));
    }
    if (!info->json_name) info->json_name = json_string(info->name);

    /* The type most of the weight bytes have, unless the file names its mix. */
    uint64_t bytes_by_type[NURI_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
        info->n_params += n;
        info->size_bytes += t->nbytes;
        if (t->type < NURI_TYPE_COUNT) bytes_by_type[t->type] += t->nbytes;
    }
    const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    info->bytes_per_token = info->size_bytes;
    if (embd && gguf_find_tensor(f, "output.weight")) info->bytes_per_token -= embd->nbytes;
    uint32_t dominant = 0;
    for (uint32_t t = 1; t < NURI_TYPE_COUNT; t++)
        if (bytes_by_type[t] > bytes_by_type[dominant]) dominant = t;
    uint32_t ftype = UINT32_MAX;
    const char *ftype_name = NULL;
    if (gguf_get_u32(f, "general.file_type", false, &ftype, &err) == NURI_OK && ftype != UINT32_MAX)
        ftype_name = cli_ftype_name(ftype);
    snprintf(info->type, sizeof info->type, "%s", ftype_name ? ftype_name : nuri_type_name(dominant));
    gguf_close(f);
}

/* ---- Measuring --------------------------------------------------------- */

typedef struct {
    char name[32]; /* "pp512" */
    int n_prompt, n_gen;
    double *seconds; /* per repetition */
    double *tokens_per_sec;
    double mean, stddev;
} bench_test;

/* A fixed-seed stream of token ids (xorshift64*), so every run and every
 * engine build sees the same tokens. */
static nuri_token random_token(uint64_t *state, int32_t n_vocab) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (nuri_token)((x * 0x2545f4914f6cdd1dull >> 33) % (uint64_t)n_vocab);
}

/* One prompt-processing run: n tokens from an empty cache in one call. */
static bool run_prompt(nuri_context *ctx, const nuri_token *tokens, int n, double *seconds) {
    nuri_error err;
    nuri_context_truncate(ctx, 0);
    double t0 = cli_now();
    if (nuri_eval(ctx, tokens, NULL, (size_t)n, false, &err) != NURI_OK) {
        cli_error("bench: %s", err.message);
        return false;
    }
    *seconds = cli_now() - t0;
    return true;
}

/* One generation run: n single-token steps from an empty cache. */
static bool run_gen(nuri_context *ctx, const nuri_token *tokens, int n, double *seconds) {
    nuri_error err;
    nuri_context_truncate(ctx, 0);
    double t0 = cli_now();
    for (int i = 0; i < n; i++) {
        if (nuri_eval(ctx, &tokens[i], NULL, 1, false, &err) != NURI_OK) {
            cli_error("bench: %s", err.message);
            return false;
        }
    }
    *seconds = cli_now() - t0;
    return true;
}

static void summarize(bench_test *t, int reps) {
    double sum = 0.0;
    for (int r = 0; r < reps; r++) {
        int n = t->n_prompt + t->n_gen;
        t->tokens_per_sec[r] = t->seconds[r] > 0.0 ? n / t->seconds[r] : 0.0;
        sum += t->tokens_per_sec[r];
    }
    t->mean = sum / reps;
    double sq = 0.0;
    for (int r = 0; r < reps; r++) sq += (t->tokens_per_sec[r] - t->mean) * (t->tokens_per_sec[r] - t->mean);
    t->stddev = reps > 1 ? sqrt(sq / (reps - 1)) : 0.0;
}

/* ---- Output ------------------------------------------------------------ */

static void format_params(uint64_t n, char *buf, size_t cap) {
    if (n == 0) snprintf(buf, cap, "-");
    else if (n >= 1000000000ull) snprintf(buf, cap, "%.2f B", (double)n * 1e-9);
    else if (n >= 1000000ull) snprintf(buf, cap, "%.2f M", (double)n * 1e-6);
    else snprintf(buf, cap, "%.2f K", (double)n * 1e-3);
}

static void print_table_header(void) {
    printf("| %-*s | %10s | %10s | %-6s | %7s | %8s | %20s |\n", NAME_COLUMN_WIDTH, "model", "size",
           "params", "type", "threads", "test", "t/s");
    printf("| %.*s | ---------: | ---------: | ------ | ------: | -------: | -------------------: |\n",
           NAME_COLUMN_WIDTH, "------------------------------------------------------------");
}

static void print_table_row(const model_info *info, int n_threads, const bench_test *t) {
    char size[32], params[32], ts[48];
    snprintf(size, sizeof size, "%.2f GiB", (double)info->size_bytes / (1024.0 * 1024.0 * 1024.0));
    format_params(info->n_params, params, sizeof params);
    snprintf(ts, sizeof ts, "%.2f ± %.2f", t->mean, t->stddev);
    /* "±" is two bytes but one column: pad by one more. */
    printf("| %-*s | %10s | %10s | %-6s | %7d | %8s | %21s |\n", NAME_COLUMN_WIDTH, info->name, size,
           params, info->type, n_threads, t->name, ts);
    fflush(stdout);
}

static json_t *test_json(const model_info *info, const char *path, int n_threads, int n_batch,
                         const char *kv_type, int reps, const bench_test *t) {
    json_t *o = json_object(), *ns = json_array(), *tps = json_array();
    if (!o || !ns || !tps) {
        json_decref(o);
        json_decref(ns);
        json_decref(tps);
        return NULL;
    }
    for (int r = 0; r < reps; r++) {
        json_array_append_new(ns, json_integer((json_int_t)llround(t->seconds[r] * 1e9)));
        json_array_append_new(tps, json_real(t->tokens_per_sec[r]));
    }
    json_t *file = json_string(path); /* NULL for a path that is not UTF-8 */
    json_object_set(o, "model", info->json_name);
    json_object_set_new(o, "model_file", file ? file : json_string(info->name));
    json_object_set_new(o, "model_size", json_integer((json_int_t)info->size_bytes));
    json_object_set_new(o, "model_n_params", json_integer((json_int_t)info->n_params));
    json_object_set_new(o, "weight_bytes_per_token", json_integer((json_int_t)info->bytes_per_token));
    json_object_set_new(o, "type", json_string(info->type));
    json_object_set_new(o, "n_threads", json_integer(n_threads));
    json_object_set_new(o, "n_batch", json_integer(n_batch));
    json_object_set_new(o, "type_k", json_string(kv_type));
    json_object_set_new(o, "type_v", json_string(kv_type));
    json_object_set_new(o, "test", json_string(t->name));
    json_object_set_new(o, "n_prompt", json_integer(t->n_prompt));
    json_object_set_new(o, "n_gen", json_integer(t->n_gen));
    json_object_set_new(o, "reps", json_integer(reps));
    json_object_set_new(o, "avg_ts", json_real(t->mean));
    json_object_set_new(o, "stddev_ts", json_real(t->stddev));
    json_object_set_new(o, "samples_ns", ns);
    json_object_set_new(o, "samples_ts", tps);
    return o;
}

/* ---- Command ------------------------------------------------------------- */

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *kv_type = "f16";
    long n_prompt = 512, n_gen = 128, n_threads = 0, reps = 5, n_batch = 512;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(bench_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) ok = cli_take_int(argc, argv, &i, 0, 1 << 20, &n_prompt);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) ok = cli_take_int(argc, argv, &i, 0, 1 << 20, &n_gen);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_take_int(argc, argv, &i, 1, 512, &n_threads);
        else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) ok = cli_take_int(argc, argv, &i, 1, 1000, &reps);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) ok = cli_take_int(argc, argv, &i, 1, 1 << 16, &n_batch);
        else if (!strcmp(a, "--kv-type")) ok = cli_take_str(argc, argv, &i, &kv_type);
        else if (!strcmp(a, "--json")) as_json = true;
        else return cli_error("bench: unknown option '%s' (see nuri bench --help)", a);
        if (!ok) return 1;
    }
    if (!model_path) return cli_error("bench: no model given (-m FILE); see nuri bench --help");
    if (n_prompt == 0 && n_gen == 0) return cli_error("bench: -p and -n are both 0: nothing to measure");
    if (strcmp(kv_type, "f16") && strcmp(kv_type, "f32"))
        return cli_error("bench: --kv-type must be f16 or f32, got '%s'", kv_type);

    int status = 1;
    model_info info;
    memset(&info, 0, sizeof info);
    nuri_model *model = NULL;
    nuri_context *ctx = NULL;
    nuri_token *tokens = NULL;
    bench_test tests[2];
    int n_tests = 0;
    memset(tests, 0, sizeof tests);
    json_t *results = NULL;

    model = cli_load_model(model_path, tokenizer_path);
    if (!model) goto done;
    read_model_info(model_path, &info);

    /* Room for P + N positions, as llama-bench sizes its context. */
    nuri_context_params cp = nuri_context_default_params();
    cp.n_ctx = (int32_t)(n_prompt + n_gen);
    cp.n_batch = (int32_t)n_batch;
    cp.n_threads = (int32_t)n_threads;
    cp.kv_type = strcmp(kv_type, "f16") ? NURI_KV_F32 : NURI_KV_F16;
    nuri_error err;
    if (nuri_context_create(model, &cp, &ctx, &err) != NURI_OK) {
        cli_error("bench: %s", err.message);
        goto done;
    }
    int threads_used = n_threads > 0 ? (int)n_threads : nuri_physical_cores();

    long n_tokens = n_prompt > n_gen ? n_prompt : n_gen;
    tokens = nuri_malloc_array((size_t)n_tokens, sizeof *tokens);
    if (!tokens) {
        cli_error("bench: out of memory");
        goto done;
    }
    int32_t n_vocab = nuri_model_n_vocab(model);
    uint64_t rng_state = 0x6e757269626e6368ull;
    nuri_token bos = nuri_token_bos(model);
    for (long i = 0; i < n_tokens; i++)
        tokens[i] = i == 0 && bos >= 0 && bos < n_vocab ? bos : random_token(&rng_state, n_vocab);

    if (n_prompt > 0) {
        snprintf(tests[n_tests].name, sizeof tests[0].name, "pp%ld", n_prompt);
        tests[n_tests++].n_prompt = (int)n_prompt;
    }
    if (n_gen > 0) {
        snprintf(tests[n_tests].name, sizeof tests[0].name, "tg%ld", n_gen);
        tests[n_tests++].n_gen = (int)n_gen;
    }
    if (as_json) {
        results = json_array();
        if (!results) {
            cli_error("bench: out of memory");
            goto done;
        }
    } else {
        print_table_header();
    }
    for (int k = 0; k < n_tests; k++) {
        bench_test *t = &tests[k];
        t->seconds = calloc((size_t)reps, sizeof *t->seconds);
        t->tokens_per_sec = calloc((size_t)reps, sizeof *t->tokens_per_sec);
        if (!t->seconds || !t->tokens_per_sec) {
            cli_error("bench: out of memory");
            goto done;
        }
        bool is_prompt = t->n_prompt > 0;
        double warmup;
        if (is_prompt ? !run_prompt(ctx, tokens, t->n_prompt, &warmup) : !run_gen(ctx, tokens, 1, &warmup))
            goto done;
        for (long r = 0; r < reps; r++) {
            bool ok = is_prompt ? run_prompt(ctx, tokens, t->n_prompt, &t->seconds[r])
                                : run_gen(ctx, tokens, t->n_gen, &t->seconds[r]);
            if (!ok) goto done;
        }
        summarize(t, (int)reps);
        if (as_json) {
            json_t *o = test_json(&info, model_path, threads_used, (int)n_batch, kv_type, (int)reps, t);
            if (!o || json_array_append_new(results, o) != 0) {
                cli_error("bench: out of memory");
                goto done;
            }
        } else {
            print_table_row(&info, threads_used, t);
        }
    }
    if (as_json) {
        char *text = json_dumps(results, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (!text) {
            cli_error("bench: out of memory");
            goto done;
        }
        puts(text);
        free(text);
    }
    status = 0;
done:
    json_decref(results);
    for (int k = 0; k < 2; k++) {
        free(tests[k].seconds);
        free(tests[k].tokens_per_sec);
    }
    json_decref(info.json_name);
    free(tokens);
    nuri_context_free(ctx);
    nuri_model_free(model);
    return status;
}
