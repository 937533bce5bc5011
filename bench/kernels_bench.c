/* kernels_bench.c — single-thread speed of the compute kernels.
 *
 *   kernels_bench [--type T] [--isa L] [--rows R] [--cols C] [--tok N]
 *                 [--seconds S] [--vec-dot] [--cached] [--call-rows R2] [--call-tok N2]
 *
 * For each type and level (all by default) it times gemm over R x C weight
 * rows and N activation rows and prints weight GB/s (bytes of the weight
 * matrix read per second) and GOP/s (2*R*C*N per second). With N = 1 the
 * weights cycle through copies totalling >= 256 MiB, so they come from
 * memory as in generation; with more tokens one matrix is reused, as in
 * prompt processing. Activation quantization is timed separately (it runs
 * once per token, not per row). --vec-dot times one vec_dot call per row
 * instead of gemm (N must be 1); --cached reuses one matrix for N = 1 too
 * (the kernel's speed without memory stalls). --call-rows/--call-tok split
 * the product into gemm calls of at most R2 rows x N2 tokens, as a caller
 * that tiles it would. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

static uint64_t rng = 0x1234567;

static float rnd(void) {
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    return (float)((double)(rng >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static const nuri_type all_types[] = {NURI_TYPE_Q4_0, NURI_TYPE_Q8_0, NURI_TYPE_Q4_1,
                                      NURI_TYPE_Q5_0, NURI_TYPE_Q5_1, NURI_TYPE_F16,
                                      NURI_TYPE_BF16, NURI_TYPE_F32,  NURI_TYPE_Q2_K,
                                      NURI_TYPE_Q3_K, NURI_TYPE_Q4_K, NURI_TYPE_Q5_K,
                                      NURI_TYPE_Q6_K, NURI_TYPE_IQ4_NL, NURI_TYPE_IQ4_XS};

static int parse_type(const char *s) {
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++)
        if (strcasecmp(s, nuri_type_name(all_types[i])) == 0) return (int)all_types[i];
    return -1;
}

static int parse_isa(const char *s) {
    for (int i = 0; i < NURI_ISA_COUNT; i++)
        if (strcasecmp(s, nuri_isa_name((nuri_isa)i)) == 0) return i;
    return -1;
}

typedef struct {
    int rows, cols, tok;
    double seconds;
    bool vec_dot;
    bool cached; /* reuse one matrix even for one token */
    int call_rows, call_tok; /* split gemm into calls of this many rows and tokens (0: one call) */
} config;

static void run_once(const nuri_kernel *k, const config *cfg, const uint8_t *wm, size_t w_row,
                     const uint8_t *xq, size_t x_row, float *y) {
    if (cfg->vec_dot) {
        for (int r = 0; r < cfg->rows; r++) k->vec_dot(cfg->cols, &y[r], wm + (size_t)r * w_row, xq);
    } else {
        const int cr = cfg->call_rows ? cfg->call_rows : cfg->rows;
        const int ct = cfg->call_tok ? cfg->call_tok : cfg->tok;
        for (int r0 = 0; r0 < cfg->rows; r0 += cr)
            for (int t0 = 0; t0 < cfg->tok; t0 += ct)
                k->gemm(cfg->cols, wm + (size_t)r0 * w_row, w_row,
                        cfg->rows - r0 < cr ? cfg->rows - r0 : cr, xq + (size_t)t0 * x_row, x_row,
                        cfg->tok - t0 < ct ? cfg->tok - t0 : ct, y + (size_t)t0 * cfg->rows + r0,
                        (size_t)cfg->rows);
    }
}

/* Times one (type, level) and prints a table row. */
static void bench_one(nuri_type type, nuri_isa isa, const config *cfg) {
    const nuri_kernel *k = nuri_kernels_at(isa, type);
    if (!k) return;
    const nuri_type_traits *tt = nuri_type_get(type);
    const size_t w_row = nuri_row_size(type, cfg->cols);
    const size_t matrix = w_row * (size_t)cfg->rows;
    const size_t copies = cfg->tok == 1 && !cfg->cached ? (size_t)(256u << 20) / matrix + 1 : 1;
    uint8_t *w = malloc(matrix * copies);
    float *xf = malloc((size_t)cfg->tok * cfg->cols * sizeof(float));
    const size_t x_row = k->quantize ? nuri_row_size(tt->vec_dot_type, cfg->cols)
                                     : (size_t)cfg->cols * sizeof(float);
    uint8_t *xq = malloc(x_row * (size_t)cfg->tok);
    float *y = malloc((size_t)cfg->tok * cfg->rows * sizeof(float));
    float *row_f = malloc((size_t)cfg->cols * sizeof(float));
    if (!w || !xf || !xq || !y || !row_f) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int r = 0; r < cfg->rows; r++) {
        for (int c = 0; c < cfg->cols; c++) row_f[c] = rnd() * 0.05f;
        tt->from_float(row_f, w + (size_t)r * w_row, cfg->cols);
    }
    for (size_t c = 1; c < copies; c++) memcpy(w + c * matrix, w, matrix);
    for (size_t i = 0; i < (size_t)cfg->tok * cfg->cols; i++) xf[i] = rnd();

    /* Activation conversion. */
    double q_rate = 0.0;
    if (k->quantize) {
        int reps = 0;
        double t0 = nuri_time_sec(), t1;
        do {
            for (int t = 0; t < cfg->tok; t++)
                k->quantize(xf + (size_t)t * cfg->cols, xq + (size_t)t * x_row, cfg->cols);
            reps++;
            t1 = nuri_time_sec();
        } while (t1 - t0 < 0.05);
        q_rate = (double)reps * cfg->tok * cfg->cols / (t1 - t0) * 1e-9;
    } else {
        memcpy(xq, xf, x_row * (size_t)cfg->tok);
    }

    /* Warm up once over every copy, then time calls and keep the fastest
     * (other processes on the machine only ever slow a call down). With
     * copies, every call reads a matrix that left the caches long ago. */
    size_t copy = 0;
    double best = 1e30;
    for (size_t c = 0; c < copies; c++) run_once(k, cfg, w + c * matrix, w_row, xq, x_row, y);
    const double start = nuri_time_sec();
    double now = start;
    do {
        const double t0 = nuri_time_sec();
        run_once(k, cfg, w + copy * matrix, w_row, xq, x_row, y);
        now = nuri_time_sec();
        if (now - t0 < best) best = now - t0;
        copy = (copy + 1) % copies;
    } while (now - start < cfg->seconds);
    const double sec = best;
    printf("| %-5s | %-6s | %5d x %5d | %4d | %8.2f | %8.1f | %9.3f | %s\n", tt->name, nuri_isa_name(isa),
           cfg->rows, cfg->cols, cfg->tok, (double)matrix / sec * 1e-9,
           2.0 * cfg->rows * cfg->cols * cfg->tok / sec * 1e-9, sec * 1e3,
           k->quantize ? "" : "-");
    if (k->quantize) printf("|       |        | quantize %s: %.2f Gfloat/s\n",
                            nuri_type_name(tt->vec_dot_type), q_rate);
    fflush(stdout);
    free(w);
    free(xf);
    free(xq);
    free(y);
    free(row_f);
}

int main(int argc, char **argv) {
    config cfg = {2048, 2048, 1, 0.5, false, false, 0, 0};
    int only_type = -1, only_isa = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--vec-dot") == 0 || strcmp(a, "--cached") == 0) {
            if (a[2] == 'v') cfg.vec_dot = true;
            else cfg.cached = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "usage: %s [--type T] [--isa L] [--rows R] [--cols C] [--tok N] "
                            "[--seconds S] [--vec-dot] [--cached] [--call-rows R2] [--call-tok N2]\n", argv[0]);
            return 2;
        }
        i++;
        if (strcmp(a, "--type") == 0) only_type = parse_type(v);
        else if (strcmp(a, "--isa") == 0) only_isa = parse_isa(v);
        else if (strcmp(a, "--rows") == 0) cfg.rows = atoi(v);
        else if (strcmp(a, "--cols") == 0) cfg.cols = atoi(v);
        else if (strcmp(a, "--tok") == 0) cfg.tok = atoi(v);
        else if (strcmp(a, "--seconds") == 0) cfg.seconds = atof(v);
        else if (strcmp(a, "--call-rows") == 0) cfg.call_rows = atoi(v);
        else if (strcmp(a, "--call-tok") == 0) cfg.call_tok = atoi(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (cfg.rows < 1 || cfg.cols < 32 || cfg.cols % 32 || cfg.tok < 1 || (cfg.vec_dot && cfg.tok != 1)) {
        fprintf(stderr, "need rows >= 1, cols a multiple of 32, tok >= 1 (1 with --vec-dot)\n");
        return 2;
    }
    printf("cpu best level: %s\n", nuri_isa_name(nuri_cpu_best_isa()));
    printf("| type  | level  | rows x cols   | tok  | GB/s     | GOP/s    | ms/call   |\n");
    printf("|-------|--------|---------------|------|----------|----------|-----------|\n");
    for (size_t ti = 0; ti < sizeof all_types / sizeof all_types[0]; ti++) {
        if (only_type >= 0 && (int)all_types[ti] != only_type) continue;
        for (int isa = NURI_ISA_COUNT - 1; isa >= 0; isa--) {
            if (only_isa >= 0 && isa != only_isa) continue;
            if (isa > (int)nuri_cpu_best_isa()) continue;
            bench_one(all_types[ti], (nuri_isa)isa, &cfg);
        }
    }
    return 0;
}
