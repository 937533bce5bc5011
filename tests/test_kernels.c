/* test_kernels.c — the compute kernels (src/kernels) against the scalar
 * reference in src/quant, at every instruction-set level this CPU has.
 *
 * The reference (nuri_type_get(type)->vec_dot / from_float) is the
 * independent truth here: the kernels under test never call it at the SIMD
 * levels. Integer formats must match it bit for bit (the kernels promise
 * to repeat its float operations in its order); float formats within float
 * rounding of its double-precision sums. Activation quantizers must write
 * the reference's bytes. Rows, activations and outputs sit at odd addresses
 * and strides, and every size is chosen to leave tails in each tiling. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "quant/quant.h"
#include "support/test.h"

/* ---- Helpers ------------------------------------------------------------ */

static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed; }

/* splitmix64: a fixed, well-mixed sequence for a given seed. */
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static double rng_unit(void) { return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0); }

static float rng_gauss(void) {
    double u1 = ((double)(rng_next() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = rng_unit();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

enum { DIST_GAUSS, DIST_UNIFORM, DIST_OUTLIERS, DIST_SPARSE, DIST_POSITIVE, DIST_COUNT };
static const char *const dist_names[DIST_COUNT] = {"gauss", "uniform", "outliers", "sparse",
                                                   "positive"};

/* n floats of a distribution: Gaussian; uniform in [-1, 1); Gaussian with
 * rare values 100x larger; mostly zero (whole zero blocks happen); all
 * positive with an offset (exercises the min of Q4_1/Q5_1). */
static void fill(float *v, size_t n, int dist, float scale) {
    for (size_t i = 0; i < n; i++) {
        float x;
        switch (dist) {
        case DIST_GAUSS: x = rng_gauss(); break;
        case DIST_UNIFORM: x = (float)(2.0 * rng_unit() - 1.0); break;
        case DIST_OUTLIERS: x = rng_gauss() * (rng_unit() < 0.01 ? 100.0f : 1.0f); break;
        case DIST_SPARSE: x = rng_unit() < 0.1 ? rng_gauss() : 0.0f; break;
        default: x = 3.0f + (float)rng_unit(); break;
        }
        v[i] = x * scale;
    }
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static const nuri_type compute_types[] = {NURI_TYPE_F32,  NURI_TYPE_F16,  NURI_TYPE_BF16,
                                          NURI_TYPE_Q4_0, NURI_TYPE_Q4_1, NURI_TYPE_Q5_0,
                                          NURI_TYPE_Q5_1, NURI_TYPE_Q8_0};
#define N_TYPES (sizeof compute_types / sizeof compute_types[0])

/* The K-quants and IQ4 (blocks of 256, IQ4_NL 32), with their own sizes. */
static const nuri_type k_types[] = {NURI_TYPE_Q2_K, NURI_TYPE_Q3_K,   NURI_TYPE_Q4_K,  NURI_TYPE_Q5_K,
                                    NURI_TYPE_Q6_K, NURI_TYPE_IQ4_NL, NURI_TYPE_IQ4_XS};
#define N_K_TYPES (sizeof k_types / sizeof k_types[0])

static bool is_float_type(nuri_type t) {
    return t == NURI_TYPE_F32 || t == NURI_TYPE_F16 || t == NURI_TYPE_BF16;
}

/* ---- One problem: a weight matrix and activations of a size ---------------- */

typedef struct {
    nuri_type type, act_type;
    int64_t n_cols;
    int n_rows, n_tok;
    size_t w_row_bytes, x_row_bytes, y_stride;
    uint8_t *w_buf, *w;       /* w = w_buf + 1: rows at odd addresses */
    float *xf;                /* float activations, n_tok x n_cols */
    uint8_t *xq_buf, *xq;     /* reference activation rows (odd addresses) */
    uint8_t *xl_buf, *xl;     /* the level's quantized activation rows */
    double *ref;              /* reference dot products [t][r] */
    double *mag;              /* sum of |w_i x_i| per [t][r] (for float tolerance) */
} problem;

static void problem_free(problem *p) {
    free(p->w_buf);
    free(p->xf);
    free(p->xq_buf);
    free(p->xl_buf);
    free(p->ref);
    free(p->mag);
}

/* Builds the matrix (quantized by the reference), the activations and the
 * reference results. */
static bool problem_make(problem *p, nuri_type type, int64_t n_cols, int n_rows, int n_tok,
                         int w_dist, int x_dist) {
    memset(p, 0, sizeof *p);
    const nuri_type_traits *tt = nuri_type_get(type);
    p->type = type;
    p->act_type = tt->vec_dot_type;
    p->n_cols = n_cols;
    p->n_rows = n_rows;
    p->n_tok = n_tok;
    p->w_row_bytes = nuri_row_size(type, n_cols) + 5;
    p->x_row_bytes = nuri_row_size(p->act_type, n_cols) + 3;
    p->y_stride = (size_t)n_rows + 3;
    float *wf = malloc((size_t)n_cols * sizeof(float));
    p->w_buf = calloc((size_t)n_rows * p->w_row_bytes + 1, 1);
    p->xf = malloc((size_t)n_tok * n_cols * sizeof(float));
    p->xq_buf = calloc((size_t)n_tok * p->x_row_bytes + 1, 1);
    p->xl_buf = calloc((size_t)n_tok * p->x_row_bytes + 1, 1);
    p->ref = malloc((size_t)n_rows * n_tok * sizeof(double));
    p->mag = malloc((size_t)n_rows * n_tok * sizeof(double));
    if (!wf || !p->w_buf || !p->xf || !p->xq_buf || !p->xl_buf || !p->ref || !p->mag) {
        free(wf);
        problem_free(p);
        return false;
    }
    p->w = p->w_buf + 1;
    p->xq = p->xq_buf + 1;
    p->xl = p->xl_buf + 1;
    /* Rows differ in scale so per-row scales matter. */
    for (int r = 0; r < n_rows; r++) {
        fill(wf, (size_t)n_cols, w_dist, 0.02f * (float)(1 + r % 7));
        tt->from_float(wf, p->w + (size_t)r * p->w_row_bytes, n_cols);
    }
    free(wf);
    fill(p->xf, (size_t)n_tok * n_cols, x_dist, 1.0f);
    const nuri_type_traits *at = nuri_type_get(p->act_type);
    for (int t = 0; t < n_tok; t++)
        at->from_float(p->xf + (size_t)t * n_cols, p->xq + (size_t)t * p->x_row_bytes, n_cols);

    /* Reference results, and the magnitudes of the terms from the
     * dequantized operands. */
    float *wd = malloc((size_t)n_cols * sizeof(float)), *xd = malloc((size_t)n_cols * sizeof(float));
    if (!wd || !xd) {
        free(wd);
        free(xd);
        problem_free(p);
        return false;
    }
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *row = p->w + (size_t)r * p->w_row_bytes;
        tt->to_float(row, wd, n_cols);
        for (int t = 0; t < n_tok; t++) {
            const uint8_t *xr = p->xq + (size_t)t * p->x_row_bytes;
            at->to_float(xr, xd, n_cols);
            float s;
            tt->vec_dot(n_cols, &s, row, xr);
            double m = 0.0;
            for (int64_t i = 0; i < n_cols; i++) m += fabs((double)wd[i] * xd[i]);
            p->ref[(size_t)t * n_rows + r] = s;
            p->mag[(size_t)t * n_rows + r] = m;
        }
    }
    free(wd);
    free(xd);
    return true;
}

/* ---- Checks of one level on one problem ----------------------------------------- */

static int failures_reported;

#define REPORT_LIMIT 20

/* A result agrees with the reference: bit for bit for integer formats;
 * within 1e-5 of the sum of |terms| (float rounding of a float sum against
 * a double one) for float formats. */
static bool agrees(const problem *p, float got, int r, int t) {
    const size_t i = (size_t)t * p->n_rows + r;
    if (!is_float_type(p->type)) return bits_of(got) == bits_of((float)p->ref[i]);
    return fabs((double)got - p->ref[i]) <= 1e-5 * p->mag[i] + 1e-30;
}

static void check_level(const problem *p, nuri_isa isa, const char *what) {
    const nuri_kernel *k = nuri_kernels_at(isa, p->type);
    CHECK(k != NULL, "%s %s: no kernels", nuri_isa_name(isa), nuri_type_name(p->type));
    if (!k) return;
    char label[160];
    snprintf(label, sizeof label, "%s %s %s cols=%lld rows=%d tok=%d", nuri_isa_name(isa),
             nuri_type_name(p->type), what, (long long)p->n_cols, p->n_rows, p->n_tok);

    /* The level's activation rows: the reference's bytes, or the floats. */
    const uint8_t *x = p->xq;
    if (k->quantize) {
        const size_t row = nuri_row_size(p->act_type, p->n_cols);
        bool same = true;
        for (int t = 0; t < p->n_tok; t++) {
            uint8_t *dst = p->xl + (size_t)t * p->x_row_bytes;
            k->quantize(p->xf + (size_t)t * p->n_cols, dst, p->n_cols);
            same = same && memcmp(dst, p->xq + (size_t)t * p->x_row_bytes, row) == 0;
        }
        CHECK(same, "%s: quantized activations differ from the reference", label);
        x = p->xl;
    } else {
        CHECK(is_float_type(p->type), "%s: quantize missing", label);
    }

    /* gemm into a strided output whose gaps must stay untouched. */
    const size_t y_len = (size_t)p->n_tok * p->y_stride;
    float *y = malloc(y_len * sizeof(float));
    if (!y) {
        CHECK(false, "out of memory");
        return;
    }
    for (size_t i = 0; i < y_len; i++) y[i] = -12345.0f;
    k->gemm(p->n_cols, p->w, p->w_row_bytes, p->n_rows, x, p->x_row_bytes, p->n_tok, y,
            p->y_stride);
    int bad_gemm = 0, bad_dot = 0, bad_same = 0, bad_gap = 0;
    for (int t = 0; t < p->n_tok; t++) {
        for (int r = 0; r < p->n_rows; r++) {
            const float g = y[(size_t)t * p->y_stride + r];
            float d;
            k->vec_dot(p->n_cols, &d, p->w + (size_t)r * p->w_row_bytes,
                       x + (size_t)t * p->x_row_bytes);
            if (!agrees(p, g, r, t)) {
                if (bad_gemm++ == 0 && failures_reported++ < REPORT_LIMIT)
                    fprintf(stderr, "  %s: gemm[t=%d][r=%d] = %.9g, reference %.9g\n", label, t, r,
                            g, p->ref[(size_t)t * p->n_rows + r]);
            }
            if (!agrees(p, d, r, t)) {
                if (bad_dot++ == 0 && failures_reported++ < REPORT_LIMIT)
                    fprintf(stderr, "  %s: vec_dot[t=%d][r=%d] = %.9g, reference %.9g\n", label, t,
                            r, d, p->ref[(size_t)t * p->n_rows + r]);
            }
            if (bits_of(g) != bits_of(d)) bad_same++;
        }
        for (size_t r = (size_t)p->n_rows; r < p->y_stride; r++)
            if (y[(size_t)t * p->y_stride + r] != -12345.0f) bad_gap++;
    }
    CHECK(bad_gemm == 0, "%s: %d gemm results off the reference", label, bad_gemm);
    CHECK(bad_dot == 0, "%s: %d vec_dot results off the reference", label, bad_dot);
    CHECK(bad_same == 0, "%s: %d gemm results differ from vec_dot", label, bad_same);
    CHECK(bad_gap == 0, "%s: gemm wrote %d floats outside its rows", label, bad_gap);

    /* The one-token kernel, where a level has one, gives gemm's bits. */
    if (k->gemm_one_token) {
        float *one = malloc((size_t)p->n_rows * sizeof(float));
        if (one) {
            k->gemm_one_token(p->n_cols, p->w, p->w_row_bytes, p->n_rows, x, p->x_row_bytes, 1, one,
                              (size_t)p->n_rows);
            CHECK(memcmp(one, y, (size_t)p->n_rows * sizeof(float)) == 0,
                  "%s: gemm_one_token differs from gemm", label);
            free(one);
        }
    }

    /* Splitting rows (as threads do) and tokens (as batches do) changes no bit. */
    if (p->n_rows > 1 || p->n_tok > 1) {
        float *z = malloc(y_len * sizeof(float));
        if (!z) {
            CHECK(false, "out of memory");
            free(y);
            return;
        }
        memcpy(z, y, y_len * sizeof(float));
        const int r_cut = p->n_rows / 2 + (p->n_rows > 2), t_cut = (p->n_tok + 1) / 2;
        const int row_parts[3] = {0, r_cut, p->n_rows}, tok_parts[3] = {0, t_cut, p->n_tok};
        for (int a = 0; a < 2; a++) {
            for (int b = 0; b < 2; b++) {
                const int r0 = row_parts[a], nr = row_parts[a + 1] - r0;
                const int t0 = tok_parts[b], nt = tok_parts[b + 1] - t0;
                if (nr <= 0 || nt <= 0) continue;
                k->gemm(p->n_cols, p->w + (size_t)r0 * p->w_row_bytes, p->w_row_bytes, nr,
                        x + (size_t)t0 * p->x_row_bytes, p->x_row_bytes, nt,
                        z + (size_t)t0 * p->y_stride + r0, p->y_stride);
            }
        }
        CHECK(memcmp(y, z, y_len * sizeof(float)) == 0,
              "%s: results change when rows and tokens are split", label);
        free(z);
    }
    free(y);
}

/* ---- Sweeps ---------------------------------------------------------------------- */

static bool level_available(nuri_isa isa) { return isa <= nuri_cpu_best_isa(); }

static void run_problem(nuri_type type, int64_t n_cols, int n_rows, int n_tok, int w_dist,
                        int x_dist, uint64_t seed) {
    rng_seed(seed);
    problem p;
    if (!problem_make(&p, type, n_cols, n_rows, n_tok, w_dist, x_dist)) {
        CHECK(false, "out of memory building a problem");
        return;
    }
    char what[64];
    snprintf(what, sizeof what, "w~%s x~%s seed=%llu", dist_names[w_dist], dist_names[x_dist],
             (unsigned long long)seed);
    for (int isa = 0; isa < NURI_ISA_COUNT; isa++)
        if (level_available((nuri_isa)isa)) check_level(&p, (nuri_isa)isa, what);
    problem_free(&p);
}

static void test_sizes(void) {
    static const int64_t cols[] = {32, 64, 96, 224, 2048 + 32, 4096};
    static const int rows_small[] = {1, 3, 4, 5, 17, 31, 32, 33, 50};
    static const int toks_small[] = {1, 2, 3, 4, 5, 8, 13};
    static const int rows_large[] = {1, 5, 17, 33};
    static const int toks_large[] = {1, 4, 13};
    uint64_t seed = 1;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            const bool large = cols[ci] > 256;
            const int *rows = large ? rows_large : rows_small;
            const int *toks = large ? toks_large : toks_small;
            const size_t n_rows = large ? 4 : sizeof rows_small / sizeof rows_small[0];
            const size_t n_toks = large ? 3 : sizeof toks_small / sizeof toks_small[0];
            for (size_t ri = 0; ri < n_rows; ri++) {
                for (size_t ki = 0; ki < n_toks; ki++) {
                    seed++;
                    run_problem(compute_types[ti], cols[ci], rows[ri], toks[ki],
                                (int)(seed % DIST_COUNT), (int)((seed / DIST_COUNT) % DIST_COUNT),
                                seed * 7919);
                }
            }
        }
    }
}

/* Shapes past the kernels' internal chunking: rows longer than 16384
 * columns (the few-token path keeps activation sums for 512 blocks at a
 * time) and more than 256 tokens (the many-token path's token groups). */
static void test_chunking(void) {
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        run_problem(compute_types[ti], 16384 + 64, 3, 2, DIST_GAUSS, DIST_OUTLIERS, 500 + ti);
        run_problem(compute_types[ti], 64, 37, 261, DIST_UNIFORM, DIST_GAUSS, 600 + ti);
    }
}

/* Float formats take any column count, not only multiples of 32. */
static void test_float_odd_columns(void) {
    static const int64_t cols[] = {1, 7, 15, 17, 33, 100};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++)
            run_problem(compute_types[ti], cols[ci], 6, 5, DIST_GAUSS, DIST_UNIFORM, 100 + ci);
}

/* K-quants and IQ4: every size a multiple of 256 (and of 32 for IQ4_NL),
 * row and token counts around the 16-row packing, the 4-token tiles and
 * the super-block chunks of the many-token path. */
static void test_k_sizes(void) {
    static const int64_t cols[] = {256, 768, 2304};
    static const int rows[] = {1, 5, 16, 17, 33};
    static const int toks[] = {1, 2, 3, 4, 5, 9};
    uint64_t seed = 7000;
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
                for (size_t ki = 0; ki < sizeof toks / sizeof toks[0]; ki++) {
                    /* The largest rows only with a few shapes (the
                     * reference quantizers are slow). */
                    if (cols[ci] > 768 && (ri + ki) % 3 != 0) continue;
                    seed++;
                    run_problem(k_types[ti], cols[ci], rows[ri], toks[ki], (int)(seed % DIST_COUNT),
                                (int)((seed / DIST_COUNT) % DIST_COUNT), seed * 7919);
                }
            }
        }
        /* Past the many-token path's chunks of super-blocks (and IQ4_NL's
         * 32-block chunks) with a token count that leaves a partial tile,
         * and odd block counts for IQ4_NL. */
        run_problem(k_types[ti], 256 * 9, 19, 7, DIST_GAUSS, DIST_OUTLIERS, 8000 + ti);
        run_problem(k_types[ti], 4096 + 256, 3, 2, DIST_UNIFORM, DIST_GAUSS, 8100 + ti);
        /* Past the one-token path's passes of 128 super-blocks (Q4_K, Q6_K). */
        run_problem(k_types[ti], 256 * 130, 17, 1, DIST_GAUSS, DIST_GAUSS, 8300 + ti);
        if (k_types[ti] == NURI_TYPE_IQ4_NL) {
            run_problem(k_types[ti], 32, 3, 1, DIST_GAUSS, DIST_GAUSS, 8200);
            run_problem(k_types[ti], 96, 18, 6, DIST_SPARSE, DIST_GAUSS, 8201);
            run_problem(k_types[ti], 224, 7, 3, DIST_OUTLIERS, DIST_UNIFORM, 8202);
        }
    }
}

/* Q8_K activations on awkward values: block 0 Gaussian with a largest
 * element whose negative twin comes later (the first one sets the sign);
 * block 1 all zero; block 2 a NaN and exact ties after scaling; block 3
 * an infinity; block 4 tiny values; block 5 huge ones. Every level must
 * write the reference's bytes. */
static void test_quantize_edges_q8_k(void) {
    enum { BLOCKS = 6, N = 256 * BLOCKS };
    static float v[N];
    rng_seed(99);
    fill(v, 256, DIST_GAUSS, 1.0f);
    v[40] = 9.0f, v[41] = -9.0f;
    for (int i = 0; i < 256; i++) v[512 + i] = (float)(i % 64) - 31.5f; /* -31.5 .. 31.5 */
    v[512 + 7] = NAN;
    v[512 + 200] = 127.0f; /* iscale = -1: the halves of the ramp are exact ties */
    for (int i = 0; i < 256; i++) v[768 + i] = (float)i * 0.5f - 60.0f;
    v[768 + 3] = -INFINITY;
    for (int i = 0; i < 256; i++) v[1024 + i] = ((float)i - 128.0f) * 1e-30f;
    for (int i = 0; i < 256; i++) v[1280 + i] = ((float)i - 128.0f) * 1e36f;
    const nuri_type_traits *at = nuri_type_get(NURI_TYPE_Q8_K);
    static uint8_t ref[BLOCKS * 292], got[BLOCKS * 292 + 2];
    at->from_float(v, ref, N);
    for (int isa = 0; isa < NURI_ISA_COUNT; isa++) {
        if (!level_available((nuri_isa)isa)) continue;
        for (size_t ti = 0; ti < N_K_TYPES; ti++) {
            if (nuri_type_get(k_types[ti])->vec_dot_type != NURI_TYPE_Q8_K) continue;
            const nuri_kernel *k = nuri_kernels_at((nuri_isa)isa, k_types[ti]);
            if (!k || !k->quantize) continue;
            memset(got, 0xAB, sizeof got);
            k->quantize(v, got + 1, N);
            CHECK(memcmp(got + 1, ref, sizeof ref) == 0, "%s %s: edge-case Q8_K quantization differs",
                  nuri_isa_name((nuri_isa)isa), nuri_type_name(k_types[ti]));
            CHECK(got[0] == 0xAB && got[1 + sizeof ref] == 0xAB, "%s: Q8_K quantizer wrote outside its row",
                  nuri_isa_name((nuri_isa)isa));
        }
    }
    nuri_block_q8_k b0;
    memcpy(&b0, ref, sizeof b0);
    CHECK(b0.qs[40] == -127 && b0.qs[41] == 127, "the first largest element sets the sign");
}

/* Extreme weight bytes (all bits set or clear, alternating) with half
 * scales of 1 against activations at +-127 and -128 (with consistent group
 * sums): every level equals the reference exactly. */
static void test_extreme_levels_k(void) {
    static const uint8_t pattern[] = {0xFF, 0x00, 0x80, 0x7F, 0x0F, 0xF0, 0x81, 0xAA, 0x55};
    enum { ROWS = 5, TOKS = 6 };
    for (size_t ti = 0; ti < N_K_TYPES; ti++) {
        const nuri_type type = k_types[ti];
        const nuri_type_traits *tt = nuri_type_get(type);
        const int64_t n = 512;
        const size_t wb = nuri_row_size(type, n), xb = nuri_row_size(tt->vec_dot_type, n);
        uint8_t *w = calloc(ROWS, wb), *x = calloc(TOKS, xb);
        if (!w || !x) {
            CHECK(false, "out of memory");
            free(w);
            free(x);
            return;
        }
        for (size_t i = 0; i < wb * ROWS; i++) w[i] = pattern[(i * 5 + i / 7) % sizeof pattern];
        /* Half scales: the d (and dmin) fields set to 1.0 and 0.5. */
        const size_t bs = tt->type_size;
        for (int r = 0; r < ROWS; r++) {
            for (int64_t b = 0; b < n / tt->block_size; b++) {
                uint8_t *blk = w + (size_t)r * wb + (size_t)b * bs;
                size_t d_at = 0;
                switch (type) {
                case NURI_TYPE_Q2_K: d_at = 80; break;
                case NURI_TYPE_Q3_K: d_at = 108; break;
                case NURI_TYPE_Q6_K: d_at = 208; break;
                default: d_at = 0; break;
                }
                blk[d_at] = 0x00, blk[d_at + 1] = (uint8_t)(0x3C - r);
                if (type == NURI_TYPE_Q2_K || type == NURI_TYPE_Q4_K || type == NURI_TYPE_Q5_K)
                    blk[d_at + 2] = 0x00, blk[d_at + 3] = 0x38;
            }
        }
        /* Odd tokens hold -128s, which no quantizer writes. */
        static const int8_t levels[] = {127, -127, 0, 1, -1, 127, -127, 64, -128};
        for (int t = 0; t < TOKS; t++) {
            uint8_t *row = x + (size_t)t * xb;
            const int n_levels = t % 2 == 1 ? 9 : 8;
            if (tt->vec_dot_type == NURI_TYPE_Q8_K) {
                for (int64_t b = 0; b < n / 256; b++) {
                    nuri_block_q8_k blk;
                    blk.d = 0.25f * (float)(t + 1);
                    for (int i = 0; i < 256; i++) blk.qs[i] = levels[(i + b + t) % n_levels];
                    for (int g = 0; g < 16; g++) {
                        int sum = 0;
                        for (int i = 0; i < 16; i++) sum += blk.qs[16 * g + i];
                        blk.bsums[g] = (int16_t)sum;
                    }
                    memcpy(row + b * sizeof blk, &blk, sizeof blk);
                }
            } else {
                for (int64_t b = 0; b < n / 32; b++) {
                    uint8_t *blk = row + b * 34;
                    blk[0] = 0x00, blk[1] = 0x38;
                    for (int i = 0; i < 32; i++) blk[2 + i] = (uint8_t)levels[(i + b + t) % n_levels];
                }
            }
        }
        float ref[TOKS][ROWS], got[TOKS][ROWS];
        for (int t = 0; t < TOKS; t++)
            for (int r = 0; r < ROWS; r++) tt->vec_dot(n, &ref[t][r], w + (size_t)r * wb, x + (size_t)t * xb);
        for (int isa = 0; isa < NURI_ISA_COUNT; isa++) {
            if (!level_available((nuri_isa)isa)) continue;
            const nuri_kernel *k = nuri_kernels_at((nuri_isa)isa, type);
            if (!k) continue;
            /* AVX2 feeds the signed IQ4 levels through vpsignb, which
             * cannot negate -128 (see kernels_avx2_k.c); only tokens
             * without -128 are checked there. */
            const bool no_m128 = isa == NURI_ISA_AVX2 && (type == NURI_TYPE_IQ4_NL || type == NURI_TYPE_IQ4_XS);
            for (int n_tok = 2; n_tok <= TOKS; n_tok += TOKS - 2) {
                memset(got, 0, sizeof got);
                k->gemm(n, w, wb, ROWS, x, xb, n_tok, &got[0][0], ROWS);
                for (int t = 0; t < n_tok; t++) {
                    if (no_m128 && t % 2 == 1) continue;
                    CHECK(memcmp(got[t], ref[t], sizeof got[t]) == 0, "%s %s: extreme levels differ (token %d of %d)",
                          nuri_isa_name((nuri_isa)isa), tt->name, t, n_tok);
                    float d;
                    k->vec_dot(n, &d, w + (size_t)4 * wb, x + (size_t)t * xb);
                    CHECK(bits_of(d) == bits_of(ref[t][4]), "%s %s: extreme levels (vec_dot)",
                          nuri_isa_name((nuri_isa)isa), tt->name);
                }
            }
        }
        free(w);
        free(x);
    }
}

/* ---- Activation quantizers on awkward values ---------------------------------------- */

static void test_quantize_edges(void) {
    /* Block 0: exact halves at scale 1 (amax 127); block 1: all zero;
     * block 2: a NaN; block 3: an infinity; block 4: tiny values whose
     * scale is a subnormal half; block 5: huge values (scale overflows to
     * inf in half); block 6: halves just below .5 after scaling. */
    enum { BLOCKS = 7, N = 32 * BLOCKS };
    float v[N];
    memset(v, 0, sizeof v);
    const float halves[] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, -1.5f, 126.5f, -126.5f,
                            3.5f, 0.49999997f, -0.49999997f, 64.5f, -0.0f};
    for (size_t i = 0; i < sizeof halves / sizeof halves[0]; i++) v[i] = halves[i];
    for (int i = 0; i < 32; i++) v[64 + i] = (float)i - 10.0f;
    v[64 + 5] = NAN;
    for (int i = 0; i < 32; i++) v[96 + i] = (float)i * 0.25f - 3.0f;
    v[96 + 9] = INFINITY;
    for (int i = 0; i < 32; i++) v[128 + i] = ((float)i - 16.0f) * 1e-9f;
    for (int i = 0; i < 32; i++) v[160 + i] = ((float)i - 16.0f) * 1e7f;
    for (int i = 0; i < 32; i++) v[192 + i] = (i % 2 ? 1.0f : -1.0f) * (127.0f - (float)i * 0.999f);
    static const nuri_type acts[] = {NURI_TYPE_Q8_0, NURI_TYPE_Q8_1};
    static const nuri_type weights_for[] = {NURI_TYPE_Q8_0, NURI_TYPE_Q4_1};
    for (int a = 0; a < 2; a++) {
        const nuri_type_traits *at = nuri_type_get(acts[a]);
        const size_t bytes = nuri_row_size(acts[a], N);
        uint8_t ref[BLOCKS * 36], got[BLOCKS * 36 + 1];
        at->from_float(v, ref, N);
        for (int isa = 0; isa < NURI_ISA_COUNT; isa++) {
            if (!level_available((nuri_isa)isa)) continue;
            const nuri_kernel *k = nuri_kernels_at((nuri_isa)isa, weights_for[a]);
            CHECK(k && k->quantize, "%s: no quantizer", nuri_isa_name((nuri_isa)isa));
            if (!k || !k->quantize) continue;
            memset(got, 0xAB, sizeof got);
            k->quantize(v, got + 1, N);
            CHECK(memcmp(got + 1, ref, bytes) == 0, "%s %s: edge-case quantization differs",
                  nuri_isa_name((nuri_isa)isa), at->name);
            CHECK(got[0] == 0xAB && (bytes >= sizeof got - 1 || got[1 + bytes] == 0xAB),
                  "%s %s: quantizer wrote outside its row", nuri_isa_name((nuri_isa)isa), at->name);
        }
    }
    /* Sanity of the reference itself on the exact halves (scale 1). */
    nuri_block_q8_0 b0;
    nuri_quantize_row(NURI_TYPE_Q8_0, v, &b0, 32);
    CHECK(b0.qs[1] == 3 && b0.qs[2] == -3 && b0.qs[3] == 1 && b0.qs[4] == -1 && b0.qs[7] == 127 &&
              b0.qs[10] == 0,
          "reference rounding is not half away from zero");
}

/* Extreme weight levels (all-zero and all-one nibbles, -128 and 127 in
 * Q8_0) against extreme activation levels (+-127, and -128, which no
 * quantizer writes but a hand-made row may hold) stay exact. The AVX2
 * Q8_0 kernel's sign trick cannot represent -x for x = -128, so that one
 * row is only checked where the level promises it (see kernels_avx2.c). */
static void test_extreme_levels(void) {
    const int64_t n = 256;
    static const uint8_t pattern[] = {0xFF, 0x00, 0x80, 0x7F, 0x0F, 0xF0, 0x81};
    for (size_t ti = 3; ti < N_TYPES; ti++) {
        const nuri_type type = compute_types[ti];
        const nuri_type_traits *tt = nuri_type_get(type);
        const bool with_min = type == NURI_TYPE_Q4_1 || type == NURI_TYPE_Q5_1;
        const size_t wb = nuri_row_size(type, n), xb = nuri_row_size(tt->vec_dot_type, n);
        const size_t x_qs = with_min ? 4 : 2, x_block = with_min ? 36 : 34;
        enum { ROWS = 4, TOKS = 6 };
        uint8_t w[ROWS * 34 * 8], x[TOKS * 36 * 8];
        for (size_t i = 0; i < wb * ROWS; i++) w[i] = pattern[(i * 5 + i / 7) % sizeof pattern];
        for (int r = 0; r < ROWS; r++) {
            for (int64_t b = 0; b < n / 32; b++) {
                uint8_t *blk = w + (size_t)r * wb + (size_t)b * tt->type_size;
                blk[0] = 0x00, blk[1] = (uint8_t)(0x3C - r); /* d = 1.0, 0.5, ... */
                if (with_min) blk[2] = 0x00, blk[3] = 0xB8;   /* m = -0.5 */
            }
        }
        /* Odd tokens hold -128s. */
        for (int t = 0; t < TOKS; t++) {
            for (int64_t b = 0; b < n / 32; b++) {
                uint8_t *blk = x + (size_t)t * xb + (size_t)b * x_block;
                blk[0] = 0x00, blk[1] = 0x38; /* d = 0.5 */
                if (with_min) blk[2] = 0x00, blk[3] = 0x40; /* s = 2 */
                for (int i = 0; i < 32; i++) {
                    static const int8_t levels[] = {127, -127, 0, 1, -1, 127, -127, 64};
                    int8_t q = levels[(i + b + t) % 8];
                    if (t % 2 == 1 && (i + b) % 3 == 0) q = -128;
                    blk[x_qs + (size_t)i] = (uint8_t)q;
                }
            }
        }
        float ref[TOKS][ROWS], got[TOKS][ROWS];
        for (int t = 0; t < TOKS; t++)
            for (int r = 0; r < ROWS; r++)
                tt->vec_dot(n, &ref[t][r], w + (size_t)r * wb, x + (size_t)t * xb);
        for (int isa = 0; isa < NURI_ISA_COUNT; isa++) {
            if (!level_available((nuri_isa)isa)) continue;
            const nuri_kernel *k = nuri_kernels_at((nuri_isa)isa, type);
            const bool no_m128 = isa == NURI_ISA_AVX2 && type == NURI_TYPE_Q8_0;
            /* 2 tokens (the few-token path) and all 6 (the panel path). */
            for (int n_tok = 2; n_tok <= TOKS; n_tok += TOKS - 2) {
                memset(got, 0, sizeof got);
                k->gemm(n, w, wb, ROWS, x, xb, n_tok, &got[0][0], ROWS);
                for (int t = 0; t < n_tok; t++) {
                    if (no_m128 && t % 2 == 1) continue;
                    CHECK(memcmp(got[t], ref[t], sizeof got[t]) == 0,
                          "%s %s: extreme levels differ (token %d of %d)",
                          nuri_isa_name((nuri_isa)isa), tt->name, t, n_tok);
                    float d;
                    k->vec_dot(n, &d, w + (size_t)3 * wb, x + (size_t)t * xb);
                    CHECK(bits_of(d) == bits_of(ref[t][3]), "%s %s: extreme levels (vec_dot)",
                          nuri_isa_name((nuri_isa)isa), tt->name);
                }
            }
        }
    }
}

/* ---- Dispatch -------------------------------------------------------------------- */

static void test_resolve(void) {
    char warn[200];
    for (int best = 0; best < NURI_ISA_COUNT; best++) {
        CHECK(nuri_isa_resolve((nuri_isa)best, NULL, warn, sizeof warn) == (nuri_isa)best && !warn[0],
              "unset NURI_ISA must give the best level");
        CHECK(nuri_isa_resolve((nuri_isa)best, "", warn, sizeof warn) == (nuri_isa)best && !warn[0],
              "empty NURI_ISA must give the best level");
        for (int req = 0; req < NURI_ISA_COUNT; req++) {
            nuri_isa got = nuri_isa_resolve((nuri_isa)best, nuri_isa_name((nuri_isa)req), warn,
                                            sizeof warn);
            if (req <= best) {
                CHECK(got == (nuri_isa)req && !warn[0], "NURI_ISA=%s on a %s CPU gave %s",
                      nuri_isa_name((nuri_isa)req), nuri_isa_name((nuri_isa)best),
                      nuri_isa_name(got));
            } else {
                CHECK(got == (nuri_isa)best && strstr(warn, "at most") != NULL,
                      "NURI_ISA=%s on a %s CPU must clamp with a warning (got %s, '%s')",
                      nuri_isa_name((nuri_isa)req), nuri_isa_name((nuri_isa)best),
                      nuri_isa_name(got), warn);
            }
        }
        CHECK(nuri_isa_resolve((nuri_isa)best, "AVX2", warn, sizeof warn) ==
                  (best >= NURI_ISA_AVX2 ? NURI_ISA_AVX2 : (nuri_isa)best),
              "NURI_ISA is case-insensitive");
        CHECK(nuri_isa_resolve((nuri_isa)best, "sse9", warn, sizeof warn) == (nuri_isa)best &&
                  strstr(warn, "not one of") != NULL,
              "an unknown NURI_ISA must give the best level with a warning");
    }
}

static void test_tables(void) {
    const nuri_isa best = nuri_cpu_best_isa();
    const nuri_isa used = nuri_kernels_isa();
    CHECK(used <= best, "level in use above the CPU's");
    for (int isa = 0; isa < NURI_ISA_COUNT; isa++) {
        if (isa > (int)best) {
            printf("SKIP %s kernels: this CPU (or OS) lacks them\n", nuri_isa_name((nuri_isa)isa));
            CHECK(nuri_kernels_at((nuri_isa)isa, NURI_TYPE_Q4_0) == NULL,
                  "%s kernels offered on a CPU without them", nuri_isa_name((nuri_isa)isa));
            continue;
        }
        for (size_t ti = 0; ti < N_TYPES; ti++) {
            const nuri_kernel *k = nuri_kernels_at((nuri_isa)isa, compute_types[ti]);
            CHECK(k && k->vec_dot && k->gemm, "%s %s: incomplete kernels",
                  nuri_isa_name((nuri_isa)isa), nuri_type_name(compute_types[ti]));
            const nuri_kernel *s = nuri_kernels_at(NURI_ISA_SCALAR, compute_types[ti]);
            CHECK(isa == NURI_ISA_SCALAR || (k && s && k->gemm != s->gemm && k->vec_dot != s->vec_dot),
                  "%s %s: level falls back to scalar", nuri_isa_name((nuri_isa)isa),
                  nuri_type_name(compute_types[ti]));
            CHECK(k && (k->quantize == NULL) == is_float_type(compute_types[ti]),
                  "%s %s: quantize present exactly for integer formats",
                  nuri_isa_name((nuri_isa)isa), nuri_type_name(compute_types[ti]));
        }
        CHECK(nuri_kernels_at((nuri_isa)isa, NURI_TYPE_Q8_1) == NULL,
              "Q8_1 holds activations only");
        for (size_t ti = 0; ti < N_K_TYPES; ti++) {
            const nuri_kernel *k = nuri_kernels_at((nuri_isa)isa, k_types[ti]);
            const nuri_kernel *s = nuri_kernels_at(NURI_ISA_SCALAR, k_types[ti]);
            CHECK(k && k->vec_dot && k->gemm && k->quantize, "%s %s: incomplete kernels",
                  nuri_isa_name((nuri_isa)isa), nuri_type_name(k_types[ti]));
            /* The x86 levels have their own K kernels (other architectures
             * may use the scalar ones). */
            const bool own = isa == NURI_ISA_AVX2 || isa == NURI_ISA_AVX512;
            CHECK(!own || (k && s && k->gemm != s->gemm && k->vec_dot != s->vec_dot),
                  "%s %s: level falls back to scalar", nuri_isa_name((nuri_isa)isa),
                  nuri_type_name(k_types[ti]));
        }
        CHECK(nuri_kernels_at((nuri_isa)isa, NURI_TYPE_Q8_K) == NULL, "Q8_K holds activations only");
        CHECK(nuri_kernels_at((nuri_isa)isa, 4) == NULL, "retired type id 4");
        CHECK(nuri_kernels_at((nuri_isa)isa, 1000) == NULL, "unknown type id");
    }
    /* Every type the reference can compute with has kernels at every level. */
    for (uint32_t type = 0; type < NURI_TYPE_COUNT; type++) {
        const nuri_type_traits *traits = nuri_type_get(type);
        if (!traits || !traits->vec_dot) continue;
        for (int isa = 0; isa <= (int)best; isa++)
            CHECK(nuri_kernels_at((nuri_isa)isa, type) != NULL, "%s %s: no kernels",
                  nuri_isa_name((nuri_isa)isa), traits->name);
    }
    CHECK(nuri_kernels_at((nuri_isa)-1, NURI_TYPE_F32) == NULL, "bad level");
    CHECK(nuri_kernels_at(NURI_ISA_COUNT, NURI_TYPE_F32) == NULL, "bad level");
    CHECK(nuri_kernels_for(NURI_TYPE_Q8_0) == nuri_kernels_at(used, NURI_TYPE_Q8_0),
          "nuri_kernels_for must give the level in use");
    /* The scalar table is the reference itself. */
    const nuri_kernel *s = nuri_kernels_at(NURI_ISA_SCALAR, NURI_TYPE_Q4_0);
    CHECK(s && s->vec_dot == nuri_type_get(NURI_TYPE_Q4_0)->vec_dot &&
              s->quantize == nuri_type_get(NURI_TYPE_Q8_0)->from_float,
          "scalar level must use the reference functions");
    CHECK(strcmp(nuri_isa_name(NURI_ISA_AVX512), "avx512") == 0 &&
              strcmp(nuri_isa_name(NURI_ISA_COUNT), "unknown") == 0,
          "level names");
    printf("levels: cpu best %s, in use %s\n", nuri_isa_name(best), nuri_isa_name(used));
}

/* Runs this binary again with NURI_ISA set; the child prints the level
 * it selected (see main). */
static void test_env_override(const char *self) {
    const nuri_isa best = nuri_cpu_best_isa();
    for (int req = 0; req < NURI_ISA_COUNT + 1; req++) {
        const char *value = req < NURI_ISA_COUNT ? nuri_isa_name((nuri_isa)req) : "bogus";
        setenv("NURI_ISA", value, 1);
        const char *argv[] = {self, "--print-isa", NULL};
        char *out = NULL, *err = NULL;
        int rc = test_run(argv, NULL, 0, &out, &err);
        unsetenv("NURI_ISA");
        const nuri_isa want = req <= (int)best ? (nuri_isa)req : best;
        char expect[64];
        snprintf(expect, sizeof expect, "isa=%s same=1\n", nuri_isa_name(want));
        CHECK(rc == 0 && out && strcmp(out, expect) == 0,
              "NURI_ISA=%s: child printed '%s' (rc %d), expected '%s'", value, out ? out : "",
              rc, expect);
        const bool warned = err && strstr(err, "NURI_ISA") != NULL;
        const bool should_warn = req > (int)best;
        CHECK(warned == should_warn, "NURI_ISA=%s: warning %s expected (stderr '%s')", value,
              should_warn ? "" : "not", err ? err : "");
        free(out);
        free(err);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--print-isa") == 0) {
        const nuri_isa isa = nuri_kernels_isa();
        printf("isa=%s same=%d\n", nuri_isa_name(isa),
               nuri_kernels_for(NURI_TYPE_Q4_0) == nuri_kernels_at(isa, NURI_TYPE_Q4_0));
        return 0;
    }
    test_resolve();
    test_tables();
    test_env_override("/proc/self/exe");
    test_quantize_edges();
    test_extreme_levels();
    test_float_odd_columns();
    test_chunking();
    test_sizes();
    test_quantize_edges_q8_k();
    test_extreme_levels_k();
    test_k_sizes();
    return test_finish();
}
