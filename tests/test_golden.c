/* test_golden.c — the real tiny models against outputs recorded from
 * llama.cpp (cross-checked with llama2.c's run.c): greedy ids and logits,
 * for both the llama2.c checkpoints and their GGUF conversions. Also:
 * batched prefill equals token-by-token evaluation, thread counts agree, and
 * a full context is reported without corrupting anything. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nuri.h"
#include "support/test.h"

static double rel_l2(const float *got, const double *want, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static nuri_model *load(const char *rel_model, bool llama2c) {
    char path[4096], tok[4096];
    const char *p = test_shared_path(rel_model);
    if (!p) return NULL;
    snprintf(path, sizeof path, "%s", p);
    snprintf(tok, sizeof tok, "%s", test_shared_path("models/tok512.bin"));
    nuri_model_params mp = {llama2c ? tok : NULL};
    nuri_model *m = NULL;
    nuri_error err;
    nuri_status st = nuri_model_load(path, &mp, &m, &err);
    CHECK(st == NURI_OK, "loading %s: %s", rel_model, st ? err.message : "");
    return m;
}

/* Greedy generation from each golden prompt, comparing ids and logits. */
/* strict: every logits vector within tolerance and every id equal.
 * Otherwise (quantized models): at least half of the vectors within
 * tolerance, all of them within 1.0, and at least 2/3 of the cases with all
 * ids equal. Engines that sum in different orders differ by ~1e-7 before
 * activations are rounded to 8 bits; now and then a value sits on a rounding
 * boundary (x.4999 vs x.5000) and takes the other level, and this
 * random-weight model amplifies that one flip to 1e-2 .. 1 in the logits.
 * llama.cpp itself shows the same: the commit that recorded these goldens,
 * rebuilt on our CI's CPU kind, differs from them by 7e-3 (Q8_0 case 1) up
 * to 1.3 (Q4_0 case 4) while matching F32, Q5_0 and Q5_1 exactly. Until each
 * flip, nuri agrees with it to ~1e-7. A broken kernel fails every case. */
static void check_golden_kv(const char *rel_model, bool llama2c, const char *rel_golden, int n_threads,
                            double tolerance, bool strict, nuri_kv_type kv_type) {
    nuri_model *m = load(rel_model, llama2c);
    if (!m) return;
    size_t len;
    char *text = test_read_file(test_shared_path(rel_golden), &len);
    CHECK(text != NULL, "reading %s", rel_golden);
    json_error_t jerr;
    json_t *root = text ? json_loads(text, 0, &jerr) : NULL;
    free(text);
    CHECK(root != NULL, "parsing %s", rel_golden);
    json_t *cases = json_object_get(root, "cases");
    int n_vocab = nuri_model_n_vocab(m);
    CHECK(n_vocab == 512, "%s: n_vocab %d", rel_model, n_vocab);
    size_t ci;
    json_t *c;
    double worst = 0;
    int n_cases = 0, n_vectors = 0, n_close = 0, n_cases_equal = 0;
    json_array_foreach(cases, ci, c) {
        json_t *jp = json_object_get(c, "prompt_ids"), *jg = json_object_get(c, "generated_ids");
        json_t *jl = json_object_get(c, "logits");
        size_t n_prompt = json_array_size(jp), n_gen = json_array_size(jg);
        nuri_token *prompt = calloc(n_prompt, sizeof *prompt);
        for (size_t i = 0; i < n_prompt; i++) prompt[i] = (nuri_token)json_integer_value(json_array_get(jp, i));

        nuri_context_params cp = nuri_context_default_params();
        cp.n_threads = n_threads;
        cp.kv_type = kv_type;
        nuri_context *ctx = NULL;
        nuri_error err;
        CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "context: %s", err.message);
        nuri_sampler *greedy = nuri_sampler_create(NULL);
        bool ok = ctx && nuri_eval(ctx, prompt, NULL, n_prompt, false, &err) == NURI_OK;
        CHECK(ok, "%s case %zu: eval prompt failed", rel_model, ci);
        int mismatches = 0;
        for (size_t k = 0; ok && k < n_gen; k++) {
            const float *logits = nuri_logits(ctx);
            if (k < json_array_size(jl)) {
                json_t *row = json_array_get(jl, k);
                double *want = calloc((size_t)n_vocab, sizeof *want);
                for (int i = 0; i < n_vocab; i++) want[i] = json_real_value(json_array_get(row, (size_t)i));
                double e = rel_l2(logits, want, n_vocab);
                if (e > worst) worst = e;
                n_vectors++;
                n_close += e <= tolerance;
                if (strict)
                    CHECK(e <= tolerance, "%s case %zu step %zu: logits rel. L2 error %.3g > %.1g", rel_model,
                          ci, k, e, tolerance);
                free(want);
            }
            nuri_token want_id = (nuri_token)json_integer_value(json_array_get(jg, k));
            nuri_token got = nuri_sampler_sample(greedy, logits, n_vocab);
            if (got != want_id) {
                mismatches++;
                if (strict)
                    CHECK(got == want_id, "%s case %zu step %zu: greedy id %d, golden %d", rel_model, ci, k,
                          got, want_id);
                break; /* later steps diverge anyway */
            }
            ok = nuri_eval(ctx, &got, NULL, 1, false, &err) == NURI_OK;
            CHECK(ok, "eval: %s", ok ? "" : err.message);
        }
        n_cases_equal += !mismatches;
        n_cases++;
        nuri_sampler_free(greedy);
        nuri_context_free(ctx);
        free(prompt);
    }
    CHECK(n_cases >= 5, "%s: only %d cases", rel_golden, n_cases);
    CHECK(2 * n_close >= n_vectors, "%s: only %d of %d logits vectors within %.1g", rel_model, n_close,
          n_vectors, tolerance);
    CHECK(worst <= 1.0, "%s: logits rel. L2 error %.3g", rel_model, worst);
    CHECK(3 * n_cases_equal >= 2 * n_cases, "%s: greedy ids equal in only %d of %d cases", rel_model,
          n_cases_equal, n_cases);
    printf("%s (%s, %s KV, %d threads): %d cases, %d/%d with equal ids, %d/%d logits vectors within %.0e, "
           "worst rel. L2 error %.2e\n", rel_model, llama2c ? "llama2.c" : "gguf",
           kv_type == NURI_KV_F16 ? "F16" : "F32", n_threads, n_cases,
           n_cases_equal, n_cases, n_close, n_vectors, tolerance, worst);
    json_decref(root);
    nuri_model_free(m);
}

static void check_golden(const char *rel_model, bool llama2c, const char *rel_golden, int n_threads,
                         double tolerance, bool strict) {
    check_golden_kv(rel_model, llama2c, rel_golden, n_threads, tolerance, strict, NURI_KV_F32);
}

/* Logits of a prompt evaluated as one batch, in chunks of 7, and token by
 * token (separate calls) agree. */
static double max_row_error(const float *got, const float *want, int n) {
    double w[512];
    for (int j = 0; j < n; j++) w[j] = want[j];
    return rel_l2(got, w, n);
}

static void check_batch_equivalence(void) {
    nuri_model *m = load("models/stories260K.gguf", false);
    if (!m) return;
    enum { N = 40 };
    nuri_token prompt[N];
    for (int i = 0; i < N; i++) prompt[i] = (nuri_token)(i == 0 ? 1 : 260 + (i * 37) % 250);
    int n_vocab = nuri_model_n_vocab(m);
    float *ref = malloc(sizeof(float) * N * (size_t)n_vocab);
    nuri_error err;
    nuri_context *ctx;
    nuri_context_params cp = nuri_context_default_params();
    CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "context");
    CHECK(nuri_eval(ctx, prompt, NULL, N, true, &err) == NURI_OK, "eval one batch");
    for (int i = 0; i < N; i++)
        memcpy(ref + (size_t)i * n_vocab, nuri_logits_ith(ctx, (size_t)i), sizeof(float) * (size_t)n_vocab);
    CHECK(nuri_logits(ctx) == nuri_logits_ith(ctx, N - 1), "nuri_logits is the last row");
    CHECK(nuri_logits_ith(ctx, N) == NULL, "row past the batch");
    nuri_context_free(ctx);

    cp.n_batch = 7;
    CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "context");
    CHECK(nuri_eval(ctx, prompt, NULL, N, true, &err) == NURI_OK, "eval in chunks");
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double e = max_row_error(nuri_logits_ith(ctx, (size_t)i), ref + (size_t)i * n_vocab, n_vocab);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "chunks of 7: logits differ from one batch by %.3g", worst);
    nuri_context_free(ctx);

    cp.n_batch = 0;
    CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "context");
    worst = 0;
    for (int i = 0; i < N; i++) {
        CHECK(nuri_eval(ctx, prompt + i, NULL, 1, false, &err) == NURI_OK, "eval one token");
        double e = max_row_error(nuri_logits(ctx), ref + (size_t)i * n_vocab, n_vocab);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "token by token: logits differ from one batch by %.3g", worst);
    nuri_context_free(ctx);
    free(ref);
    nuri_model_free(m);
}

/* Several sequences in one context, evaluated together (as a server's slots
 * are): prompts of different lengths in one interleaved batch, split into
 * small chunks, then one token per sequence per step. Each must follow its
 * own golden greedy continuation exactly. */
static void check_multi_sequence(void) {
    nuri_model *m = load("models/aidreams260K.gguf", false);
    if (!m) return;
    size_t len;
    char *text = test_read_file(test_shared_path("golden/aidreams260K.golden.json"), &len);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    free(text);
    json_t *cases = json_object_get(root, "cases");
    enum { S = 4 };
    size_t pick[S] = {1, 2, 4, 5};
    nuri_context_params cp = nuri_context_default_params();
    cp.n_seq = S;
    cp.n_batch = 5;
    nuri_context *ctx;
    nuri_error err;
    CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "context");
    CHECK(nuri_context_n_seq(ctx) == S, "n_seq");
    /* Interleave the prompts token by token: seq 0 tok 0, seq 1 tok 0, ... */
    nuri_token toks[512];
    int32_t seqs[512];
    bool want[512];
    int last_entry[S] = {0};
    size_t n = 0;
    for (size_t k = 0; k < 64; k++) {
        for (int s = 0; s < S; s++) {
            json_t *p = json_object_get(json_array_get(cases, pick[s]), "prompt_ids");
            if (k >= json_array_size(p)) continue;
            toks[n] = (nuri_token)json_integer_value(json_array_get(p, k));
            seqs[n] = s;
            want[n] = false;
            last_entry[s] = (int)n++;
        }
    }
    for (int s = 0; s < S; s++) want[last_entry[s]] = true;
    nuri_batch b = {n, toks, seqs, NULL, want};
    CHECK(nuri_decode(ctx, &b, &err) == NURI_OK, "decode prompts: %s", err.message);
    nuri_sampler *greedy = nuri_sampler_create(NULL);
    int n_vocab = nuri_model_n_vocab(m);
    int wrong = 0;
    for (int step = 0; step < 32; step++) {
        nuri_token next[S];
        int32_t seq_ids[S] = {0, 1, 2, 3};
        for (int s = 0; s < S; s++) {
            const float *lg = nuri_logits_ith(ctx, step == 0 ? (size_t)last_entry[s] : (size_t)s);
            next[s] = lg ? nuri_sampler_sample(greedy, lg, n_vocab) : -1;
            json_t *g = json_object_get(json_array_get(cases, pick[s]), "generated_ids");
            wrong += next[s] != (nuri_token)json_integer_value(json_array_get(g, (size_t)step));
        }
        nuri_batch step_batch = {S, next, seq_ids, NULL, (const bool[S]){true, true, true, true}};
        if (nuri_decode(ctx, &step_batch, &err) != NURI_OK) {
            CHECK(0, "decode step %d: %s", step, err.message);
            break;
        }
    }
    CHECK(wrong == 0, "%d of %d tokens differ from the goldens when sequences share batches", wrong, 32 * S);
    for (int s = 0; s < S; s++) {
        size_t plen = json_array_size(json_object_get(json_array_get(cases, pick[s]), "prompt_ids"));
        CHECK(nuri_context_seq_n_past(ctx, s) == (int32_t)plen + 32, "seq %d length", s);
    }
    /* Bad sequence ids and positions are refused without changing anything. */
    int32_t bad_seq = S, bad_pos = 3;
    nuri_token t = 5;
    nuri_batch bad1 = {1, &t, &bad_seq, NULL, NULL}, bad2 = {1, &t, NULL, &bad_pos, NULL};
    CHECK(nuri_decode(ctx, &bad1, &err) == NURI_ERR_INVALID_ARG, "sequence out of range");
    CHECK(nuri_decode(ctx, &bad2, &err) == NURI_ERR_INVALID_ARG, "position not continuing");
    nuri_context_seq_truncate(ctx, 2, 0);
    CHECK(nuri_context_seq_n_past(ctx, 2) == 0 && nuri_context_seq_n_past(ctx, 1) > 0, "truncate one sequence");
    nuri_sampler_free(greedy);
    nuri_context_free(ctx);
    json_decref(root);
    nuri_model_free(m);
}

/* A full context is refused with NURI_ERR_CONTEXT_FULL and changes nothing. */
static void check_context_full(void) {
    nuri_model *m = load("models/aidreams260K.gguf", false);
    if (!m) return;
    nuri_context_params cp = nuri_context_default_params();
    cp.n_ctx = 8;
    nuri_context *ctx;
    nuri_error err;
    CHECK(nuri_context_create(m, &cp, &ctx, &err) == NURI_OK, "context");
    CHECK(nuri_context_n_ctx(ctx) == 8, "n_ctx %d", nuri_context_n_ctx(ctx));
    nuri_token toks[9] = {1, 300, 301, 302, 303, 304, 305, 306, 307};
    CHECK(nuri_eval(ctx, toks, NULL, 6, false, &err) == NURI_OK, "eval 6");
    CHECK(nuri_eval(ctx, toks, NULL, 3, false, &err) == NURI_ERR_CONTEXT_FULL, "eval past the end must fail");
    CHECK(strstr(err.message, "context") != NULL, "message: %s", err.message);
    CHECK(nuri_context_n_past(ctx) == 6, "n_past unchanged: %d", nuri_context_n_past(ctx));
    CHECK(nuri_eval(ctx, toks, NULL, 2, false, &err) == NURI_OK, "eval to the end");
    nuri_token bad = 512;
    nuri_context_truncate(ctx, 0);
    CHECK(nuri_eval(ctx, &bad, NULL, 1, false, &err) == NURI_ERR_INVALID_ARG, "out-of-range token");
    int32_t pos = 5;
    CHECK(nuri_eval(ctx, toks, &pos, 1, false, &err) == NURI_ERR_INVALID_ARG, "non-contiguous position");
    nuri_context_free(ctx);
    nuri_model_free(m);
}

int main(void) {
    if (!test_shared_path("models")) return test_finish();
    check_golden("models/aidreams260K.gguf", false, "golden/aidreams260K.golden.json", 1, 1e-4, true);
    check_golden("models/aidreams260K.bin", true, "golden/aidreams260K.golden.json", 2, 1e-4, true);
    check_golden("models/stories260K.gguf", false, "golden/stories260K.golden.json", 2, 1e-4, true);
    check_golden("models/stories260K.bin", true, "golden/stories260K.golden.json", 1, 1e-4, true);
    /* F16 KV cache against llama.cpp's default (F16) cache. llama.cpp also
     * rounds queries and attention weights to F16 where nuri keeps F32, so
     * the two F16 runs agree to a few 1e-3, about as closely as each agrees
     * with F32; greedy ids must still be equal. */
    check_golden_kv("models/aidreams260K.gguf", false, "golden/aidreams260K.golden-kvf16.json", 2, 1e-2, true,
                    NURI_KV_F16);
    check_golden_kv("models/stories260K.gguf", false, "golden/stories260K.golden-kvf16.json", 2, 1e-2, true,
                    NURI_KV_F16);
    /* Quantized weights, activations quantized to 8-bit blocks as llama.cpp does. */
    const char *quant_types[] = {"F32",         "Q8_0-pure",   "Q4_0-pure",   "Q4_1-pure",   "Q5_0-pure",
                                 "Q5_1-pure",   "Q2_K-pure",   "Q3_K_S-pure", "Q4_K_S-pure", "Q5_K_S-pure",
                                 "Q6_K-pure",   "IQ4_NL-pure", "IQ4_XS-pure", "Q4_K_M",      "Q5_K_M"};
    for (int i = 0; i < (int)(sizeof quant_types / sizeof quant_types[0]); i++) {
        char model[128], golden[128];
        snprintf(model, sizeof model, "golden/quant/mini-%s.gguf", quant_types[i]);
        snprintf(golden, sizeof golden, "golden/quant/mini-%s.golden.json", quant_types[i]);
        check_golden(model, false, golden, 2, 1e-4, i == 0);
    }
    check_batch_equivalence();
    check_multi_sequence();
    check_context_full();
    return test_finish();
}
