/* cmd_perplexity.c — `nuri perplexity`: how well a model predicts a text,
 * by llama.cpp's standard method, and how far a quantized model's
 * predictions drift from its base model's (KL divergence).
 *
 * The method: tokenize the whole text with BOS, cut it into chunks of n_ctx
 * tokens, put BOS in place of the first token of each chunk, evaluate each
 * chunk from an empty cache, and score only the second half of each chunk —
 * positions n_ctx/2 .. n_ctx-2 predicting the token after them — so every
 * scored token has at least n_ctx/2 tokens of context. Perplexity is
 * exp(mean negative log-likelihood); its error is the standard error of the
 * mean NLL carried through exp. These are the numbers llama.cpp prints for
 * the same text, context and cache type.
 *
 * KL divergence: `--kl-divergence-base FILE` (without --kl-divergence)
 * saves, for every scored position, the base model's log-probabilities of
 * the whole vocabulary, quantized to 16 bits on a per-row linear scale,
 * together with the evaluated tokens. `--kl-divergence` then evaluates the
 * same tokens with another model (usually a quantization of the base) and
 * compares its distributions with the saved ones. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/util.h"

static const char *perplexity_usage =
    "usage: nuri perplexity -m MODEL -f TEXT [options]\n"
    "       nuri perplexity -m BASE -f TEXT --kl-divergence-base FILE [options]\n"
    "       nuri perplexity -m QUANTIZED --kl-divergence-base FILE --kl-divergence [options]\n"
    "\n"
    "Perplexity as llama.cpp computes it: the text is tokenized with BOS and cut\n"
    "into chunks of CTX tokens; each chunk starts with BOS, is evaluated from an\n"
    "empty cache, and only its second half is scored. Prints the running value\n"
    "after each chunk ([1]12.3456,[2]...) and `Final estimate: PPL = X +/- Y`.\n"
    "The text must hold at least 2 x CTX tokens.\n"
    "\n"
    "  -m, --model FILE        GGUF model or llama2.c checkpoint\n"
    "      --tokenizer FILE    llama2.c tokenizer.bin (default: beside the model)\n"
    "  -f, --file FILE         the text\n"
    "  -c, --ctx-size N        tokens per chunk (default: min(512, model's context))\n"
    "  -b, --batch-size N      tokens evaluated at once (default: CTX)\n"
    "      --chunks N          score at most N chunks (default: all)\n"
    "  -t, --threads N         threads (default: physical cores)\n"
    "      --kv-type f16|f32   KV cache element type (default f16, as llama.cpp)\n"
    "      --kl-divergence-base FILE\n"
    "                          without --kl-divergence: also save this model's\n"
    "                          log-probabilities at every scored position to FILE\n"
    "                          (2 bytes per vocabulary entry and position)\n"
    "      --kl-divergence     compare this model with the saved base: the tokens\n"
    "                          and CTX come from FILE (-f is not needed); prints\n"
    "                          PPL of both, mean KL divergence(base || model) and\n"
    "                          how often both pick the same most likely token\n"
    "  -h, --help              this help\n";

/* ---- Log-softmax --------------------------------------------------------- */

/* Everything the statistics need from one row of logits: log(sum exp(l -
 * max)) in double, the maximum and the index of the first maximum. */
typedef struct {
    double log_sum; /* log sum_i exp(logits[i] - max) */
    float max;
    int32_t argmax;
} row_norm;

static row_norm normalize_row(const float *logits, int32_t n_vocab) {
    row_norm r = {0.0, logits[0], 0};
    for (int32_t i = 1; i < n_vocab; i++)
        if (logits[i] > r.max) {
            r.max = logits[i];
            r.argmax = i;
        }
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - (double)r.max);
    r.log_sum = log(sum);
    return r;
}

/* log p(token) under the row's softmax. */
static double row_log_prob(const float *logits, const row_norm *r, int32_t token) {
    return (double)logits[token] - (double)r->max - r->log_sum;
}

/* A running mean of samples with the standard error of that mean. */
typedef struct {
    double sum, sum2;
    size_t n;
} mean_acc;

static void acc_add(mean_acc *a, double v) {
    a->sum += v;
    a->sum2 += v * v;
    a->n++;
}

static double acc_mean(const mean_acc *a) { return a->n ? a->sum / (double)a->n : 0.0; }

/* Standard error of the mean: sqrt(var / (n - 1)), var the population
 * variance; 0 with fewer than two samples or a negative rounding residue. */
static double acc_stderr(const mean_acc *a) {
    if (a->n < 2) return 0.0;
    double m = acc_mean(a), var = a->sum2 / (double)a->n - m * m;
    return var > 0 ? sqrt(var / (double)(a->n - 1)) : 0.0;
}

/* ---- The KL base file -----------------------------------------------------
 *
 * Little-endian throughout:
 *   header (32 bytes): magic "nuriKLD1", then u32 version (1), n_vocab,
 *     n_ctx, n_chunk, n_scored (= n_ctx - 1 - n_ctx/2), checksum (FNV-1a
 *     over the header's previous 28 bytes and the tokens);
 *   tokens: n_chunk x n_ctx int32, the evaluated text (the first of each
 *     chunk as in the text; BOS is put in its place when evaluating);
 *   rows: n_chunk x n_scored rows, in order, each
 *     f32 scale, f32 floor, i32 top token, f32 log p(actual next token),
 *     then n_vocab u16 q: log p(i) = floor + scale * q[i]; q = 0 stands for
 *     "at most floor" and counts as probability 0.
 * floor is the row's smallest log-probability, but no lower than the
 * largest minus KLD_RANGE: tokens below that carry less than e^-20 of the
 * probability and do not change a KL divergence visibly. The quantization
 * step is then at most 20 / 65535 nats. */

#define KLD_MAGIC "nuriKLD1"
#define KLD_VERSION 1u
#define KLD_HEADER_BYTES 32
#define KLD_ROW_HEADER_BYTES 16
#define KLD_RANGE 20.0
#define KLD_LEVELS 65535.0

typedef struct {
    uint32_t n_vocab, n_ctx, n_chunk, n_scored;
} kld_header;

static uint32_t fnv1a(uint32_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_f32(unsigned char *p, float v) { memcpy(p, &v, 4); }

static size_t kld_row_bytes(uint32_t n_vocab) {
    return KLD_ROW_HEADER_BYTES + 2 * (size_t)n_vocab;
}

/* Encodes one row of logits (n_vocab) whose scored next token is `next`. */
static void kld_encode_row(const float *logits, int32_t n_vocab, int32_t next, unsigned char *out) {
    row_norm r = normalize_row(logits, n_vocab);
    double top_lp = -r.log_sum, low_lp = top_lp;
    for (int32_t i = 0; i < n_vocab; i++) {
        double lp = row_log_prob(logits, &r, i);
        if (lp < low_lp) low_lp = lp;
    }
    double floor_lp = low_lp > top_lp - KLD_RANGE ? low_lp : top_lp - KLD_RANGE;
    double scale = (top_lp - floor_lp) / KLD_LEVELS;
    put_f32(out, (float)scale);
    put_f32(out + 4, (float)floor_lp);
    put_u32(out + 8, (uint32_t)r.argmax);
    put_f32(out + 12, (float)row_log_prob(logits, &r, next));
    unsigned char *q = out + KLD_ROW_HEADER_BYTES;
    for (int32_t i = 0; i < n_vocab; i++) {
        double lp = row_log_prob(logits, &r, i);
        long level = 0;
        if (scale > 0 && lp > floor_lp) {
            level = lround((lp - floor_lp) / scale);
            if (level > (long)KLD_LEVELS) level = (long)KLD_LEVELS;
        }
        uint16_t v = (uint16_t)level;
        memcpy(q + 2 * (size_t)i, &v, 2);
    }
}

/* Validates the header of a base file of file_size bytes and returns its
 * fields; prints one error line naming the problem otherwise. */
static bool kld_parse_header(const unsigned char *h, uint64_t file_size, const char *path,
                             kld_header *out) {
    if (memcmp(h, KLD_MAGIC, 8) != 0)
        return !cli_error("perplexity: %s is not a nuri KL-divergence base file (bad magic)", path);
    uint32_t version = nuri_load_u32(h + 8);
    if (version != KLD_VERSION)
        return !cli_error("perplexity: %s has KL base format version %u; this nuri reads version %u",
                          path, version, KLD_VERSION);
    kld_header k = {nuri_load_u32(h + 12), nuri_load_u32(h + 16), nuri_load_u32(h + 20),
                    nuri_load_u32(h + 24)};
    if (k.n_vocab == 0 || k.n_vocab > (1u << 24) || k.n_ctx < 4 || k.n_ctx > (1u << 24) ||
        k.n_chunk == 0 || k.n_scored != k.n_ctx - 1 - k.n_ctx / 2)
        return !cli_error("perplexity: %s has an invalid header (vocabulary %u, context %u, %u chunks, "
                          "%u scored per chunk)", path, k.n_vocab, k.n_ctx, k.n_chunk, k.n_scored);
    uint64_t n_tokens, token_bytes, n_rows, row_bytes, total;
    if (!nuri_mul_u64(k.n_chunk, k.n_ctx, &n_tokens) || !nuri_mul_u64(n_tokens, 4, &token_bytes) ||
        !nuri_mul_u64(k.n_chunk, k.n_scored, &n_rows) ||
        !nuri_mul_u64(n_rows, kld_row_bytes(k.n_vocab), &row_bytes) ||
        !nuri_add_u64(KLD_HEADER_BYTES, token_bytes, &total) || !nuri_add_u64(total, row_bytes, &total) ||
        total != file_size)
        return !cli_error("perplexity: %s is %llu bytes, but its header describes a different size "
                          "(truncated or corrupted)", path, (unsigned long long)file_size);
    *out = k;
    return true;
}

/* ---- Evaluation ------------------------------------------------------------ */

typedef struct {
    mean_acc nll;       /* -log p(next token), this model */
    mean_acc nll_base;  /* the same under the base model (KL mode) */
    double sum_nll_nll_base;
    mean_acc kld;       /* KL(base || model) per position */
    mean_acc p_diff2;   /* (p - p_base)^2 of the actual next token */
    size_t n_same_top;
} ppl_stats;

typedef struct {
    nuri_model *model;
    nuri_context *ctx;
    int32_t n_vocab, n_ctx, n_batch;
    nuri_token bos; /* -1: chunks keep their first token */
    FILE *base_out; /* saving a base file */
    FILE *base_in;  /* comparing with one */
    const char *base_path;
    unsigned char *row_buf; /* one encoded row */
} ppl_run;

/* Compares one row of logits with the next encoded base row (read from
 * base_in); false after printing an error when the row is unreadable or
 * invalid. */
static bool kld_compare_row(ppl_run *r, const float *logits, int32_t next, ppl_stats *st) {
    size_t row_bytes = kld_row_bytes((uint32_t)r->n_vocab);
    if (fread(r->row_buf, 1, row_bytes, r->base_in) != row_bytes)
        return !cli_error("perplexity: cannot read %s: %s", r->base_path,
                          ferror(r->base_in) ? strerror(errno) : "unexpected end of file");
    float scale = nuri_load_f32(r->row_buf), floor_lp = nuri_load_f32(r->row_buf + 4);
    uint32_t top_base = nuri_load_u32(r->row_buf + 8);
    float next_lp_base = nuri_load_f32(r->row_buf + 12);
    /* A valid row spans at most KLD_RANGE nats from a log-probability <= 0. */
    if (!isfinite(scale) || scale < 0 || !isfinite(floor_lp) || floor_lp > 0 ||
        (double)scale * KLD_LEVELS > KLD_RANGE * 1.001 || top_base >= (uint32_t)r->n_vocab ||
        !isfinite(next_lp_base) || next_lp_base > 1e-3f)
        return !cli_error("perplexity: %s holds an invalid row of log-probabilities (corrupted file)",
                          r->base_path);

    row_norm norm = normalize_row(logits, r->n_vocab);
    const unsigned char *q = r->row_buf + KLD_ROW_HEADER_BYTES;
    double kld = 0.0;
    for (int32_t i = 0; i < r->n_vocab; i++) {
        uint16_t level = nuri_load_u16(q + 2 * (size_t)i);
        if (level == 0) continue;
        double lp_base = (double)floor_lp + (double)scale * level;
        kld += exp(lp_base) * (lp_base - row_log_prob(logits, &norm, i));
    }
    double nll = -row_log_prob(logits, &norm, next), nll_base = -(double)next_lp_base;
    acc_add(&st->nll, nll);
    acc_add(&st->nll_base, nll_base);
    st->sum_nll_nll_base += nll * nll_base;
    acc_add(&st->kld, kld);
    double p_diff = exp(-nll) - exp(-nll_base);
    acc_add(&st->p_diff2, p_diff * p_diff);
    st->n_same_top += (uint32_t)norm.argmax == top_base;
    return true;
}

/* Evaluates one chunk (n_ctx tokens; the first replaced by BOS) from an empty
 * cache and scores positions n_ctx/2 .. n_ctx-2. */
static bool eval_chunk(ppl_run *r, const nuri_token *chunk, nuri_token *scratch, bool *want,
                       ppl_stats *st) {
    int32_t n_ctx = r->n_ctx, first = n_ctx / 2;
    memcpy(scratch, chunk, (size_t)n_ctx * sizeof *scratch);
    if (r->bos >= 0) scratch[0] = r->bos;
    nuri_context_truncate(r->ctx, 0);
    size_t row_bytes = kld_row_bytes((uint32_t)r->n_vocab);
    for (int32_t start = 0; start < n_ctx; start += r->n_batch) {
        int32_t n = n_ctx - start < r->n_batch ? n_ctx - start : r->n_batch;
        for (int32_t k = 0; k < n; k++) want[k] = start + k >= first && start + k < n_ctx - 1;
        nuri_batch batch = {(size_t)n, scratch + start, NULL, NULL, want};
        nuri_error err;
        if (nuri_decode(r->ctx, &batch, &err) != NURI_OK)
            return !cli_error("perplexity: %s", err.message);
        for (int32_t k = 0; k < n; k++) {
            if (!want[k]) continue;
            int32_t pos = start + k;
            const float *logits = nuri_logits_ith(r->ctx, (size_t)k);
            if (!logits) return !cli_error("perplexity: no logits for position %d", pos);
            nuri_token next = chunk[pos + 1];
            if (r->base_in) {
                if (!kld_compare_row(r, logits, next, st)) return false;
            } else {
                row_norm norm = normalize_row(logits, r->n_vocab);
                acc_add(&st->nll, -row_log_prob(logits, &norm, next));
                if (r->base_out) {
                    kld_encode_row(logits, r->n_vocab, next, r->row_buf);
                    if (fwrite(r->row_buf, 1, row_bytes, r->base_out) != row_bytes)
                        return !cli_error("perplexity: cannot write %s: %s", r->base_path,
                                          strerror(errno));
                }
            }
        }
    }
    return true;
}

/* ---- Input --------------------------------------------------------------- */

/* True when the model's tokenizer puts BOS in front of a text (the method
 * then starts every chunk with BOS). */
static bool model_adds_bos(const nuri_model *model) {
    nuri_token *toks = NULL;
    size_t n = 0;
    nuri_error err;
    bool adds = nuri_tokenize(model, "", 0, NURI_TOKENIZE_ADD_BOS, &toks, &n, &err) == NURI_OK &&
                n == 1 && toks[0] == nuri_token_bos(model) && toks[0] >= 0;
    nuri_free(toks);
    return adds;
}

/* Opens a base file for reading and checks it against the model; fills the
 * header and the tokens (malloc'ed). */
static FILE *open_base(const char *path, int32_t n_vocab, kld_header *hdr, nuri_token **tokens) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("perplexity: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    unsigned char h[KLD_HEADER_BYTES];
    if (fstat(fileno(f), &sb) != 0 || fread(h, 1, sizeof h, f) != sizeof h) {
        cli_error("perplexity: %s is too short to be a KL-divergence base file", path);
        fclose(f);
        return NULL;
    }
    if (!kld_parse_header(h, (uint64_t)sb.st_size, path, hdr)) {
        fclose(f);
        return NULL;
    }
    if (hdr->n_vocab != (uint32_t)n_vocab) {
        cli_error("perplexity: %s was made with a vocabulary of %u tokens, this model has %d",
                  path, hdr->n_vocab, n_vocab);
        fclose(f);
        return NULL;
    }
    size_t n_tokens = (size_t)hdr->n_chunk * hdr->n_ctx;
    *tokens = nuri_malloc_array(n_tokens, sizeof **tokens);
    if (!*tokens || fread(*tokens, sizeof **tokens, n_tokens, f) != n_tokens) {
        cli_error("perplexity: cannot read the tokens of %s", path);
        free(*tokens);
        *tokens = NULL;
        fclose(f);
        return NULL;
    }
    uint32_t sum = fnv1a(2166136261u, h, 28);
    sum = fnv1a(sum, *tokens, n_tokens * sizeof **tokens);
    bool ids_ok = true;
    for (size_t i = 0; i < n_tokens; i++) ids_ok &= (*tokens)[i] >= 0 && (*tokens)[i] < n_vocab;
    if (sum != nuri_load_u32(h + 28) || !ids_ok) {
        cli_error("perplexity: %s is corrupted (%s)", path,
                  ids_ok ? "checksum mismatch" : "a token id is out of range");
        free(*tokens);
        *tokens = NULL;
        fclose(f);
        return NULL;
    }
    return f;
}

/* Writes the header and tokens of a base file. */
static bool write_base_header(FILE *f, const char *path, const kld_header *k,
                              const nuri_token *tokens) {
    unsigned char h[KLD_HEADER_BYTES];
    memcpy(h, KLD_MAGIC, 8);
    put_u32(h + 8, KLD_VERSION);
    put_u32(h + 12, k->n_vocab);
    put_u32(h + 16, k->n_ctx);
    put_u32(h + 20, k->n_chunk);
    put_u32(h + 24, k->n_scored);
    size_t n_tokens = (size_t)k->n_chunk * k->n_ctx;
    uint32_t sum = fnv1a(2166136261u, h, 28);
    put_u32(h + 28, fnv1a(sum, tokens, n_tokens * sizeof *tokens));
    if (fwrite(h, 1, sizeof h, f) != sizeof h ||
        fwrite(tokens, sizeof *tokens, n_tokens, f) != n_tokens)
        return !cli_error("perplexity: cannot write %s: %s", path, strerror(errno));
    return true;
}

/* ---- Report ---------------------------------------------------------------- */

static void print_kld_summary(const ppl_stats *st, const char *base_path) {
    size_t n = st->nll.n;
    double lp = acc_mean(&st->nll), lp_err = acc_stderr(&st->nll);
    double lb = acc_mean(&st->nll_base), lb_err = acc_stderr(&st->nll_base);
    /* The two NLL means are correlated (same tokens); the ratio's error
     * subtracts their covariance. */
    double cov = n >= 2 ? (st->sum_nll_nll_base / (double)n - lp * lb) / (double)(n - 1) : 0.0;
    double ratio_var = lp_err * lp_err + lb_err * lb_err - 2.0 * cov;
    double p_top = n ? (double)st->n_same_top / (double)n : 0.0;
    double p_top_err = n >= 2 ? sqrt(p_top * (1.0 - p_top) / (double)(n - 1)) : 0.0;
    double rms = sqrt(acc_mean(&st->p_diff2));
    printf("\nKL divergence against %s (%zu positions):\n", base_path, n);
    printf("PPL(Q)               = %.4f +/- %.5f\n", exp(lp), exp(lp) * lp_err);
    printf("PPL(base)            = %.4f +/- %.5f\n", exp(lb), exp(lb) * lb_err);
    printf("ln(PPL(Q)/PPL(base)) = %.6f +/- %.6f\n", lp - lb, ratio_var > 0 ? sqrt(ratio_var) : 0.0);
    printf("Mean KLD             = %.6f +/- %.6f\n", acc_mean(&st->kld), acc_stderr(&st->kld));
    printf("RMS delta p          = %.3f %%\n", 100.0 * rms);
    printf("Same top token       = %.3f +/- %.3f %%\n", 100.0 * p_top, 100.0 * p_top_err);
}

/* ---- Command --------------------------------------------------------------- */

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *text_path = NULL, *base_path = NULL;
    const char *kv_type = "f16";
    long n_ctx_opt = 0, n_batch_opt = 0, n_threads = 0, max_chunks = 0;
    bool kl_mode = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(perplexity_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) ok = cli_take_str(argc, argv, &i, &text_path);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) ok = cli_take_int(argc, argv, &i, 4, 1 << 20, &n_ctx_opt);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) ok = cli_take_int(argc, argv, &i, 1, 1 << 20, &n_batch_opt);
        else if (!strcmp(a, "--chunks")) ok = cli_take_int(argc, argv, &i, 1, 1L << 30, &max_chunks);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_take_int(argc, argv, &i, 1, 512, &n_threads);
        else if (!strcmp(a, "--kv-type")) ok = cli_take_str(argc, argv, &i, &kv_type);
        else if (!strcmp(a, "--kl-divergence-base")) ok = cli_take_str(argc, argv, &i, &base_path);
        else if (!strcmp(a, "--kl-divergence")) kl_mode = true;
        else return cli_error("perplexity: unknown option '%s' (see nuri perplexity --help)", a);
        if (!ok) return 1;
    }
    if (!model_path) return cli_error("perplexity: no model given (-m FILE); see nuri perplexity --help");
    if (strcmp(kv_type, "f32") && strcmp(kv_type, "f16"))
        return cli_error("perplexity: --kv-type must be f32 or f16, got '%s'", kv_type);
    if (kl_mode && !base_path)
        return cli_error("perplexity: --kl-divergence needs --kl-divergence-base FILE (made by a run "
                         "of the base model)");
    if (!kl_mode && !text_path) return cli_error("perplexity: no text given (-f FILE)");

    int status = 1;
    nuri_model *model = NULL;
    nuri_context *ctx = NULL;
    nuri_token *tokens = NULL, *scratch = NULL;
    bool *want = NULL;
    char *text = NULL, *tmp_path = NULL;
    ppl_run run = {0};
    ppl_stats st = {0};
    size_t n_tokens = 0;
    kld_header hdr = {0};
    nuri_error err;

    model = cli_load_model(model_path, tokenizer_path);
    if (!model) goto done;
    int32_t n_vocab = nuri_model_n_vocab(model);

    if (kl_mode) {
        run.base_in = open_base(base_path, n_vocab, &hdr, &tokens);
        if (!run.base_in) goto done;
        if (n_ctx_opt && (uint32_t)n_ctx_opt != hdr.n_ctx) {
            cli_error("perplexity: %s was made with -c %u; give the same (or no) -c", base_path,
                      hdr.n_ctx);
            goto done;
        }
        n_ctx_opt = hdr.n_ctx;
        n_tokens = (size_t)hdr.n_chunk * hdr.n_ctx;
    } else {
        size_t text_len = 0;
        errno = 0;
        text = cli_read_file(text_path, &text_len);
        if (!text) {
            cli_error("perplexity: cannot open or read %s: %s", text_path,
                      errno ? strerror(errno) : "too large");
            goto done;
        }
        if (nuri_tokenize(model, text, text_len, NURI_TOKENIZE_ADD_BOS, &tokens, &n_tokens, &err) !=
            NURI_OK) {
            cli_error("perplexity: %s", err.message);
            goto done;
        }
        if (!n_ctx_opt) {
            int32_t train = nuri_model_n_ctx_train(model);
            n_ctx_opt = train < 512 ? train : 512;
            if (n_ctx_opt < 4) n_ctx_opt = 4;
        }
    }
    int32_t n_ctx = (int32_t)n_ctx_opt;
    if (n_tokens < 2 * (size_t)n_ctx) {
        cli_error("perplexity: the text has %zu tokens; a context of %d needs at least %d "
                  "(a longer text or a smaller -c)", n_tokens, n_ctx, 2 * n_ctx);
        goto done;
    }
    size_t n_chunk = kl_mode ? hdr.n_chunk : n_tokens / (size_t)n_ctx;
    if (max_chunks && (size_t)max_chunks < n_chunk) n_chunk = (size_t)max_chunks;
    int32_t n_batch = n_batch_opt && n_batch_opt < n_ctx ? (int32_t)n_batch_opt : n_ctx;

    nuri_context_params cp = nuri_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = (int32_t)n_threads;
    cp.kv_type = strcmp(kv_type, "f16") ? NURI_KV_F32 : NURI_KV_F16;
    if (nuri_context_create(model, &cp, &ctx, &err) != NURI_OK) {
        cli_error("perplexity: %s", err.message);
        goto done;
    }
    run = (ppl_run){model, ctx, n_vocab, n_ctx, n_batch,
                    model_adds_bos(model) ? nuri_token_bos(model) : -1,
                    NULL, run.base_in, base_path, NULL};
    scratch = nuri_malloc_array((size_t)n_ctx, sizeof *scratch);
    want = nuri_malloc_array((size_t)n_batch, sizeof *want);
    if (base_path) run.row_buf = malloc(kld_row_bytes((uint32_t)n_vocab));
    if (!scratch || !want || (base_path && !run.row_buf)) {
        cli_error("perplexity: out of memory");
        goto done;
    }

    if (base_path && !kl_mode) {
        /* Written beside the target and renamed at the end, so an
         * interrupted run never leaves a truncated base file. */
        size_t len = strlen(base_path);
        tmp_path = malloc(len + 5);
        if (!tmp_path) {
            cli_error("perplexity: out of memory");
            goto done;
        }
        memcpy(tmp_path, base_path, len);
        memcpy(tmp_path + len, ".tmp", 5);
        run.base_out = fopen(tmp_path, "wb");
        if (!run.base_out) {
            cli_error("perplexity: cannot create %s: %s", tmp_path, strerror(errno));
            goto done;
        }
        hdr = (kld_header){(uint32_t)n_vocab, (uint32_t)n_ctx, (uint32_t)n_chunk,
                           (uint32_t)(n_ctx - 1 - n_ctx / 2)};
        if (!write_base_header(run.base_out, tmp_path, &hdr, tokens)) goto done;
    }

    fprintf(stderr, "perplexity: %zu tokens, %zu chunks of %d, batch %d, %s KV cache\n", n_tokens,
            n_chunk, n_ctx, n_batch, kv_type);
    double t0 = cli_now();
    for (size_t c = 0; c < n_chunk; c++) {
        if (!eval_chunk(&run, tokens + c * (size_t)n_ctx, scratch, want, &st)) goto done;
        if (c == 0)
            fprintf(stderr, "perplexity: %.2f seconds per chunk\n", cli_now() - t0);
        printf("[%zu]%.4f,", c + 1, exp(acc_mean(&st.nll)));
        fflush(stdout);
    }
    printf("\n");
    double nll = acc_mean(&st.nll), ppl = exp(nll);
    printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, ppl * acc_stderr(&st.nll));
    if (kl_mode) print_kld_summary(&st, base_path);
    fprintf(stderr, "perplexity: %zu scored tokens in %.2f s\n", st.nll.n, cli_now() - t0);

    if (run.base_out) {
        bool failed = fflush(run.base_out) != 0 || fsync(fileno(run.base_out)) != 0;
        failed |= fclose(run.base_out) != 0;
        run.base_out = NULL;
        if (failed || rename(tmp_path, base_path) != 0) {
            cli_error("perplexity: cannot write %s: %s", base_path, strerror(errno));
            goto done;
        }
        fprintf(stderr, "perplexity: saved the log-probabilities to %s\n", base_path);
    }
    status = 0;
done:
    if (run.base_out) {
        fclose(run.base_out);
        unlink(tmp_path);
    }
    if (run.base_in) fclose(run.base_in);
    free(run.row_buf);
    free(tmp_path);
    free(want);
    free(scratch);
    free(text);
    if (kl_mode) free(tokens);
    else nuri_free(tokens);
    nuri_context_free(ctx);
    nuri_model_free(model);
    return status;
}
