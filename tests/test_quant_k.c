/* test_quant_k.c — the K-quants (Q2_K ... Q6_K, Q8_K) and IQ4_NL / IQ4_XS
 * (src/quant/quant_k.c).
 *
 * The expectations come from outside the code under test: random blocks are
 * decoded by a second, independent reading of the published layouts
 * (written here from the format descriptions, bit by bit); llama.cpp's
 * dequantization of its own files (../shared/golden/quant) pins the
 * layouts and the float arithmetic bit for bit; dot products are compared
 * with double-precision sums of dequantized values; and the quantizers'
 * error is compared with llama.cpp's quantization of the same tensor. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "gguf/gguf.h"
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
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * rng_unit()));
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The value of an IEEE half, from the definition. */
static double half_value(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    double v = exp == 0 ? ldexp((double)mant, -24) : ldexp((double)(1024 + mant), exp - 25);
    return sign ? -v : v;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* A random finite half of moderate size (exponent 2^-14 .. 2^1), either sign. */
static uint16_t random_half(void) {
    uint16_t h = (uint16_t)(((1 + rng_next() % 16) << 10) | (rng_next() & 0x3FF));
    return (uint16_t)(h | ((rng_next() & 1) << 15));
}

/* Bit b (0 = least significant) of a byte array read as one long
 * little-endian number. */
static int bit_at(const uint8_t *p, int b) { return (p[b / 8] >> (b % 8)) & 1; }

static const int8_t iq4_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

typedef struct {
    const char *name;
    uint32_t type;
    size_t block_bytes;
    int block_elems;
} kformat;

static const kformat kformats[] = {
    {"Q2_K", NURI_TYPE_Q2_K, 84, 256},    {"Q3_K", NURI_TYPE_Q3_K, 110, 256},
    {"Q4_K", NURI_TYPE_Q4_K, 144, 256},   {"Q5_K", NURI_TYPE_Q5_K, 176, 256},
    {"Q6_K", NURI_TYPE_Q6_K, 210, 256},   {"IQ4_NL", NURI_TYPE_IQ4_NL, 18, 32},
    {"IQ4_XS", NURI_TYPE_IQ4_XS, 136, 256},
};
#define N_KFORMATS (sizeof kformats / sizeof kformats[0])

/* ---- The layouts, read a second way ----------------------------------------
 *
 * Each decoder takes a block's bytes (offsets from the format description)
 * and returns element e's value in double precision. Products of a half
 * and small integers are exact in float, so these doubles equal the
 * reference's floats exactly. */

/* scaled - min for the formats with a minimum: both terms are exact in
 * float, and the one float subtraction rounds the difference. */
static double affine_value(double scaled, double min) { return (double)((float)scaled - (float)min); }

static double spec_q2_k(const uint8_t *b, int e) {
    const uint8_t *scales = b, *qs = b + 16;
    const double d = half_value(le16(b + 80)), dmin = half_value(le16(b + 82));
    /* 128 elements per half; within it four 32-element runs take bit pairs
     * 0-1, 2-3, 4-5, 6-7 of the same 32 bytes. */
    const int half_i = e / 128, run = (e % 128) / 32, l = e % 32;
    const int q = (qs[32 * half_i + l] >> (2 * run)) & 3;
    const int s = scales[e / 16];
    return affine_value(d * (s & 15) * q, dmin * (s >> 4));
}

/* 6-bit Q3_K scale k: low 4 bits in nibble (k / 8) of byte k % 8, high 2
 * bits at bit position 2*(k/4) of byte 8 + k % 4. */
static int spec_q3_scale(const uint8_t *sc, int k) {
    int low = (sc[k % 8] >> (4 * (k / 8))) & 15;
    int high = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (low | (high << 4)) - 32;
}

static double spec_q3_k(const uint8_t *b, int e) {
    const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    const double d = half_value(le16(b + 108));
    const int half_i = e / 128, run = (e % 128) / 32, l = e % 32;
    const int low = (qs[32 * half_i + l] >> (2 * run)) & 3;
    /* hmask: 32 bytes, element-in-run l picks the byte, the run (0..7
     * across both halves) picks the bit. */
    const int high = bit_at(hmask + l, 4 * half_i + run);
    return d * spec_q3_scale(sc, e / 16) * ((low + 4 * high) - 4);
}

/* Q4_K/Q5_K 6-bit scale and minimum of sub-block j from 12 bytes. */
static void spec_k4_scale(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] % 64;
        *m = s[4 + j] % 64;
    } else {
        *sc = (s[8 + j - 4] % 16) + 16 * (s[j - 4] / 64);
        *m = (s[8 + j - 4] / 16) + 16 * (s[j] / 64);
    }
}

static double spec_q4_k(const uint8_t *b, int e) {
    const double d = half_value(le16(b)), dmin = half_value(le16(b + 2));
    const uint8_t *qs = b + 16;
    int sc, m;
    spec_k4_scale(b + 4, e / 32, &sc, &m);
    /* 64 elements per 32 bytes: the first 32 in the low nibbles. */
    const uint8_t byte = qs[32 * (e / 64) + e % 32];
    const int q = (e / 32) % 2 == 0 ? byte % 16 : byte / 16;
    return affine_value(d * sc * q, dmin * m);
}

static double spec_q5_k(const uint8_t *b, int e) {
    const double d = half_value(le16(b)), dmin = half_value(le16(b + 2));
    const uint8_t *qh = b + 16, *qs = b + 48;
    int sc, m;
    spec_k4_scale(b + 4, e / 32, &sc, &m);
    const uint8_t byte = qs[32 * (e / 64) + e % 32];
    const int q = ((e / 32) % 2 == 0 ? byte % 16 : byte / 16) + 16 * bit_at(qh + e % 32, e / 32);
    return affine_value(d * sc * q, dmin * m);
}

static double spec_q6_k(const uint8_t *b, int e) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    const double d = half_value(le16(b + 208));
    /* Per 128 elements: 64 bytes of ql, 32 of qh. Runs 0 and 1 use the low
     * nibbles of ql bytes 0-31 and 32-63, runs 2 and 3 their high nibbles;
     * run r takes bits 2r, 2r+1 of qh. */
    const int half_i = e / 128, run = (e % 128) / 32, l = e % 32;
    const uint8_t lb = ql[64 * half_i + 32 * (run % 2) + l];
    const int low = run < 2 ? lb & 15 : lb >> 4;
    const int high = (qh[32 * half_i + l] >> (2 * run)) & 3;
    return d * scales[e / 16] * ((low | (high << 4)) - 32);
}

static double spec_iq4_nl(const uint8_t *b, int e) {
    const uint8_t byte = b[2 + e % 16];
    return half_value(le16(b)) * iq4_table[e < 16 ? byte & 15 : byte >> 4];
}

static double spec_iq4_xs(const uint8_t *b, int e) {
    const double d = half_value(le16(b));
    const int ib = e / 32, j = e % 32;
    const int low = (b[4 + ib / 2] >> (4 * (ib % 2))) & 15;
    const int high = (le16(b + 2) >> (2 * ib)) & 3;
    const uint8_t byte = b[8 + 16 * ib + j % 16];
    return d * ((low | (high << 4)) - 32) * iq4_table[j < 16 ? byte & 15 : byte >> 4];
}

typedef double (*spec_fn)(const uint8_t *block, int e);
static const spec_fn spec_decoders[N_KFORMATS] = {spec_q2_k,  spec_q3_k,   spec_q4_k,  spec_q5_k,
                                                  spec_q6_k,  spec_iq4_nl, spec_iq4_xs};

/* Offsets of each format's half-float fields (to make them finite). */
static void set_halves(uint32_t type, uint8_t *b) {
    uint16_t h[2] = {random_half(), random_half()};
    switch (type) {
    case NURI_TYPE_Q2_K: memcpy(b + 80, h, 4); break;
    case NURI_TYPE_Q3_K: memcpy(b + 108, h, 2); break;
    case NURI_TYPE_Q4_K:
    case NURI_TYPE_Q5_K: memcpy(b, h, 4); break;
    case NURI_TYPE_Q6_K: memcpy(b + 208, h, 2); break;
    default: memcpy(b, h, 2); break;
    }
}

/* ---- Traits -------------------------------------------------------------------- */

static void test_traits(void) {
    for (size_t k = 0; k < N_KFORMATS; k++) {
        const nuri_type_traits *t = nuri_type_get(kformats[k].type);
        CHECK(t && strcmp(t->name, kformats[k].name) == 0, "%s: name", kformats[k].name);
        if (!t) continue;
        CHECK(t->type_size == kformats[k].block_bytes && t->block_size == kformats[k].block_elems,
              "%s: block %lld x %zu bytes", t->name, (long long)t->block_size, t->type_size);
        CHECK(t->to_float && t->from_float && t->vec_dot, "%s: missing functions", t->name);
        const uint32_t act = kformats[k].type == NURI_TYPE_IQ4_NL ? NURI_TYPE_Q8_0 : NURI_TYPE_Q8_K;
        CHECK(t->vec_dot_type == act, "%s: activation type %u", t->name, t->vec_dot_type);
    }
    const nuri_type_traits *q8k = nuri_type_get(NURI_TYPE_Q8_K);
    CHECK(q8k && q8k->type_size == 292 && q8k->block_size == 256 && q8k->to_float &&
              q8k->from_float && q8k->vec_dot == NULL,
          "Q8_K: activations only");
    CHECK(nuri_row_size(NURI_TYPE_Q4_K, 4096) == 16 * 144, "Q4_K row size");
    CHECK(nuri_row_size(NURI_TYPE_IQ4_NL, 96) == 3 * 18, "IQ4_NL row size");
    CHECK(nuri_row_size(NURI_TYPE_IQ4_XS, 128) == 0, "IQ4_XS half block");
}

/* ---- Dequantization of random blocks against the second reading -------------- */

static void test_random_blocks(void) {
    rng_seed(42);
    enum { BLOCKS = 3 };
    for (size_t k = 0; k < N_KFORMATS; k++) {
        const kformat *f = &kformats[k];
        const int n = f->block_elems * BLOCKS;
        uint8_t *row = malloc(f->block_bytes * BLOCKS + 1);
        float *got = malloc((size_t)n * sizeof(float));
        if (!row || !got) {
            CHECK(false, "out of memory");
            free(row);
            free(got);
            return;
        }
        int bad = 0;
        for (int trial = 0; trial < 40; trial++) {
            /* Rows at an odd address. */
            uint8_t *r = row + 1;
            for (size_t i = 0; i < f->block_bytes * BLOCKS; i++) r[i] = (uint8_t)rng_next();
            for (int b = 0; b < BLOCKS; b++) set_halves(f->type, r + (size_t)b * f->block_bytes);
            nuri_dequantize_row(f->type, r, got, n);
            for (int e = 0; e < n; e++) {
                const double want = spec_decoders[k](r + (size_t)(e / f->block_elems) * f->block_bytes,
                                                     e % f->block_elems);
                if ((double)got[e] != want || (float)want != got[e]) {
                    if (bad++ == 0)
                        fprintf(stderr, "  %s trial %d element %d: %.9g, layout says %.9g\n", f->name,
                                trial, e, got[e], want);
                }
            }
        }
        CHECK(bad == 0, "%s: %d random-block values differ from the layout", f->name, bad);
        free(row);
        free(got);
    }
    /* A literal Q4_K block: d = 1, dmin = 0.5; sub-block 0 scale 3 min 2,
     * sub-block 5 scale 33 (low 4 bits 1 in byte 9, high bits 2 in byte 1's
     * top bits), min 0; qs[0] = 0xA7 (element 0 level 7, element 32 level 10),
     * qs[32] = 0x05 (element 64 level 5), qs[75] = 0x30 (element 160+11=171, level 3). */
    uint8_t q4k[144] = {0};
    q4k[0] = 0x00, q4k[1] = 0x3C, q4k[2] = 0x00, q4k[3] = 0x38;
    q4k[4] = 3, q4k[8] = 2;
    q4k[5] = 0x80; /* scale 5's top bits = 2 */
    q4k[4 + 9] = 0x01;
    q4k[16 + 0] = 0xA7;
    q4k[16 + 32] = 0x05;
    q4k[16 + 64 + 11] = 0x30;
    float v[256];
    nuri_dequantize_row(NURI_TYPE_Q4_K, q4k, v, 256);
    CHECK(v[0] == 3.0f * 7 - 1.0f && v[1] == -1.0f && v[171] == 33.0f * 3 && v[160] == 0.0f,
          "Q4_K literal block: %g %g %g %g", v[0], v[1], v[171], v[160]);
    /* A literal Q6_K block: d = 0.5, scale 0 = -2, ql[0] = 0x21, qh[0] = 0x0E:
     * element 0 = 1 | (2 << 4) = 33 -> 1; element 32 (run 1) low nibble of
     * ql[32] (0) | (3 << 4) = 48 -> 16 with scale 2 (-3); element 64 (run 2)
     * high nibble of ql[0] (2) | 0 -> -30 with scale 4 (7). */
    uint8_t q6k[210] = {0};
    q6k[0] = 0x21, q6k[128] = 0x0E;
    q6k[192] = (uint8_t)-2, q6k[192 + 2] = (uint8_t)-3, q6k[192 + 4] = 7;
    q6k[208] = 0x00, q6k[209] = 0x38;
    nuri_dequantize_row(NURI_TYPE_Q6_K, q6k, v, 256);
    CHECK(v[0] == -1.0f && v[32] == -24.0f && v[64] == -105.0f,
          "Q6_K literal block: %g %g %g", v[0], v[32], v[64]);
}

/* ---- llama.cpp's files --------------------------------------------------------- */

#define GOLDEN_TENSOR "blk.0.ffn_down.weight"
#define GOLDEN_ROWS 256
#define GOLDEN_COLS 768
#define GOLDEN_N ((size_t)GOLDEN_ROWS * GOLDEN_COLS)

/* The golden tensor of a file (any type), NULL after a failed CHECK. */
static const gguf_tensor *golden_tensor(const char *rel, gguf_file **file) {
    *file = NULL;
    const char *path = test_shared_path(rel);
    if (!path) return NULL;
    nuri_error err = {0};
    if (gguf_open(path, file, &err) != NURI_OK) {
        CHECK(false, "%s: %s", rel, err.message);
        return NULL;
    }
    const gguf_tensor *t = gguf_find_tensor(*file, GOLDEN_TENSOR);
    CHECK(t && t->ne[0] == GOLDEN_COLS && t->ne[1] == GOLDEN_ROWS &&
              t->nbytes == nuri_row_size(t->type, GOLDEN_COLS) * GOLDEN_ROWS,
          "%s: %s missing or misshapen", rel, GOLDEN_TENSOR);
    return t && t->nbytes == nuri_row_size(t->type, GOLDEN_COLS) * GOLDEN_ROWS ? t : NULL;
}

static double rms_diff(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

/* Every type's tensor in every K/IQ4 file dequantizes to llama.cpp's floats
 * bit for bit. For the pure files, quantizing the F32 tensor with nuri's
 * quantizer must not be less accurate than llama.cpp's quantizer was. */
static void test_llama_cpp_files(void) {
    static const struct {
        const char *file;
        uint32_t pure_type; /* 0 for the mixes */
    } files[] = {
        {"Q2_K-pure", NURI_TYPE_Q2_K},     {"Q3_K_S-pure", NURI_TYPE_Q3_K},
        {"Q4_K_S-pure", NURI_TYPE_Q4_K},   {"Q5_K_S-pure", NURI_TYPE_Q5_K},
        {"Q6_K-pure", NURI_TYPE_Q6_K},     {"IQ4_NL-pure", NURI_TYPE_IQ4_NL},
        {"IQ4_XS-pure", NURI_TYPE_IQ4_XS}, {"Q4_K_M", 0},
        {"Q5_K_M", 0},
    };
    if (!test_shared_path("golden/quant")) return;
    gguf_file *f32_file;
    const gguf_tensor *f32 = golden_tensor("golden/quant/mini-F32.gguf", &f32_file);
    float *source = malloc(GOLDEN_N * sizeof(float)), *got = malloc(GOLDEN_N * sizeof(float));
    uint8_t *requant = malloc(GOLDEN_N * sizeof(float));
    if (!source || !got || !requant || !f32 || f32->type != NURI_TYPE_F32) {
        CHECK(false, "F32 source tensor unavailable");
        goto done;
    }
    nuri_dequantize_row(NURI_TYPE_F32, f32->data, source, (int64_t)GOLDEN_N);
    double src_rms = rms_diff(source, got, 0);
    {
        double s = 0;
        for (size_t i = 0; i < GOLDEN_N; i++) s += (double)source[i] * source[i];
        src_rms = sqrt(s / (double)GOLDEN_N);
    }
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "golden/quant/mini-%s.gguf", files[k].file);
        gguf_file *file;
        const gguf_tensor *t = golden_tensor(rel, &file);
        snprintf(rel, sizeof rel, "golden/quant/mini-%s.blk0.ffn_down.f32", files[k].file);
        size_t len = 0;
        char *want = test_read_file(test_shared_path(rel), &len);
        CHECK(want && len == GOLDEN_N * sizeof(float), "cannot read %s", rel);
        if (t && want && len == GOLDEN_N * sizeof(float)) {
            CHECK(files[k].pure_type == 0 || t->type == files[k].pure_type, "%s: tensor type %s",
                  files[k].file, nuri_type_name(t->type));
            const size_t row_bytes = nuri_row_size(t->type, GOLDEN_COLS);
            for (size_t r = 0; r < GOLDEN_ROWS; r++)
                nuri_dequantize_row(t->type, (const uint8_t *)t->data + r * row_bytes,
                                    got + r * GOLDEN_COLS, GOLDEN_COLS);
            size_t bad = 0;
            for (size_t i = 0; i < GOLDEN_N; i++)
                if (memcmp(got + i, want + i * sizeof(float), sizeof(float)) != 0) bad++;
            CHECK(bad == 0, "%s (%s): %zu of %zu dequantized values differ from llama.cpp's",
                  files[k].file, nuri_type_name(t->type), bad, GOLDEN_N);

            if (files[k].pure_type) {
                const double theirs = rms_diff((const float *)(const void *)want, source, GOLDEN_N);
                for (size_t r = 0; r < GOLDEN_ROWS; r++)
                    nuri_quantize_row(t->type, source + r * GOLDEN_COLS, requant + r * row_bytes,
                                      GOLDEN_COLS);
                for (size_t r = 0; r < GOLDEN_ROWS; r++)
                    nuri_dequantize_row(t->type, requant + r * row_bytes, got + r * GOLDEN_COLS,
                                        GOLDEN_COLS);
                const double ours = rms_diff(got, source, GOLDEN_N);
                printf("%-7s RMS error of quantize->dequantize on %s: nuri %.4e, llama.cpp %.4e "
                       "(%.2f%%; tensor RMS %.4e)\n",
                       nuri_type_name(t->type), GOLDEN_TENSOR, ours, theirs,
                       100.0 * (ours / theirs - 1.0), src_rms);
                CHECK(ours <= theirs, "%s: nuri's quantization error %.4e exceeds llama.cpp's %.4e",
                      files[k].file, ours, theirs);
            }
        }
        free(want);
        gguf_close(file);
    }
done:
    free(source);
    free(got);
    free(requant);
    gguf_close(f32_file);
}

/* ---- Quantizers on random data ----------------------------------------------- */

enum { DIST_GAUSS, DIST_UNIFORM, DIST_OUTLIERS, DIST_POSITIVE, DIST_SPARSE, DIST_COUNT };
static const char *const dist_names[DIST_COUNT] = {"gauss", "uniform", "outliers", "positive", "sparse"};

static void fill(float *v, int n, int dist) {
    for (int i = 0; i < n; i++) {
        switch (dist) {
        case DIST_GAUSS: v[i] = rng_gauss(); break;
        case DIST_UNIFORM: v[i] = (float)(2 * rng_unit() - 1); break;
        case DIST_OUTLIERS: v[i] = rng_gauss() * (rng_unit() < 0.01 ? 20.0f : 1.0f); break;
        case DIST_POSITIVE: v[i] = 2.0f + (float)rng_unit(); break;
        default: v[i] = rng_unit() < 0.2 ? rng_gauss() : 0.0f; break;
        }
    }
}

/* Relative RMS error (error RMS / data RMS) each format must stay under on
 * Gaussian data: about 1.2x what a good search reaches (measured: Q2_K 0.29,
 * Q3_K 0.16, Q4_K 0.075, Q5_K 0.037, Q6_K 0.018, IQ4_NL 0.070, IQ4_XS 0.072).
 * A broken layout or search lands far above. */
static double error_bound(uint32_t type) {
    switch (type) {
    case NURI_TYPE_Q2_K: return 0.36;
    case NURI_TYPE_Q3_K: return 0.20;
    case NURI_TYPE_Q4_K: return 0.09;
    case NURI_TYPE_Q5_K: return 0.045;
    case NURI_TYPE_Q6_K: return 0.022;
    default: return 0.085;
    }
}

static void test_quantize_error(void) {
    enum { N = 256 * 32 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * sizeof(float) + 1);
    if (!x || !y || !q) {
        CHECK(false, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < N_KFORMATS; k++) {
        const uint32_t type = kformats[k].type;
        for (int dist = 0; dist < DIST_COUNT; dist++) {
            rng_seed(1000 + 10 * k + (uint64_t)dist);
            fill(x, N, dist);
            /* Rows of different scales, into an odd address. */
            for (int i = 0; i < N; i++) x[i] *= 0.01f * (float)(1 + (i / 256) % 5);
            nuri_quantize_row(type, x, q + 1, N);
            nuri_dequantize_row(type, q + 1, y, N);
            double se = 0, ss = 0;
            for (int i = 0; i < N; i++) {
                se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                ss += (double)x[i] * x[i];
            }
            const double rel = sqrt(se / ss);
            double bound = error_bound(type);
            /* Sparse blocks are mostly exact zeros, which every format
             * represents; the others are no harder than Gaussian data,
             * except outliers for the formats with one scale per 32. */
            if (dist == DIST_OUTLIERS) bound *= 2.5;
            /* A narrow range above an offset: easy with a minimum, not
             * without one. */
            const bool with_min = type == NURI_TYPE_Q2_K || type == NURI_TYPE_Q4_K || type == NURI_TYPE_Q5_K;
            if (dist == DIST_POSITIVE) bound *= with_min ? 0.5 : 0.75;
            CHECK(rel <= bound, "%s on %s data: relative RMS error %.4f > %.4f", kformats[k].name,
                  dist_names[dist], rel, bound);
            if (dist == DIST_GAUSS)
                printf("%-7s relative RMS error on Gaussian data: %.4f\n", kformats[k].name, rel);
        }
        /* All zeros stay exactly zero; non-finite inputs give finite output. */
        memset(x, 0, N * sizeof(float));
        nuri_quantize_row(type, x, q, 1024);
        nuri_dequantize_row(type, q, y, 1024);
        bool zeros = true;
        for (int i = 0; i < 1024; i++) zeros &= y[i] == 0.0f;
        CHECK(zeros, "%s: zeros do not round-trip", kformats[k].name);
        rng_seed(7);
        fill(x, 1024, DIST_GAUSS);
        x[3] = NAN, x[300] = INFINITY, x[700] = -INFINITY;
        nuri_quantize_row(type, x, q, 1024);
        nuri_dequantize_row(type, q, y, 1024);
        bool finite = true;
        for (int i = 0; i < 1024; i++) finite &= isfinite(y[i]) != 0;
        CHECK(finite, "%s: non-finite inputs give non-finite weights", kformats[k].name);
        /* Huge and tiny scales stay finite. */
        for (int i = 0; i < 1024; i++) x[i] = (i % 2 ? 6e4f : -3e4f) * (float)(i % 7) / 7.0f;
        nuri_quantize_row(type, x, q, 1024);
        nuri_dequantize_row(type, q, y, 1024);
        finite = true;
        for (int i = 0; i < 1024; i++) finite &= isfinite(y[i]) != 0;
        CHECK(finite, "%s: large inputs give non-finite weights", kformats[k].name);
        for (int i = 0; i < 1024; i++) x[i] = 1e-9f * (float)((i * 37) % 11 - 5);
        nuri_quantize_row(type, x, q, 1024);
        nuri_dequantize_row(type, q, y, 1024);
        double se = 0, ss = 0;
        for (int i = 0; i < 1024; i++) {
            se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            ss += (double)x[i] * x[i];
        }
        CHECK(sqrt(se / ss) <= 1.0, "%s: tiny inputs error %.3g", kformats[k].name, sqrt(se / ss));
    }
done:
    free(x);
    free(y);
    free(q);
}

/* ---- Q8_K ------------------------------------------------------------------------ */

static void test_q8_k(void) {
    float x[512];
    rng_seed(5);
    for (int i = 0; i < 256; i++) x[i] = rng_gauss();
    x[17] = 4.0f; /* the largest magnitude: level -127, d = -4/127 */
    /* Exact halves after scaling by -127/4: x = -k*2/127*... chosen so that
     * x * iscale is exactly 2.5 and -3.5 (ties go to even: 2, -4). */
    x[20] = -2.5f * 4.0f / 127.0f;
    x[21] = 3.5f * 4.0f / 127.0f;
    for (int i = 256; i < 512; i++) x[i] = 0.0f;
    uint8_t raw[2 * 292];
    nuri_quantize_row(NURI_TYPE_Q8_K, x, raw, 512);
    nuri_block_q8_k b[2];
    memcpy(b, raw, sizeof b);
    const float iscale = -127.0f / 4.0f;
    CHECK(b[0].qs[17] == -127, "largest element level %d", b[0].qs[17]);
    CHECK(float_bits(b[0].d) == float_bits(1.0f / iscale), "d = %.9g", b[0].d);
    const float v20 = x[20] * iscale, v21 = x[21] * iscale;
    if (v20 == 2.5f && v21 == -3.5f)
        CHECK(b[0].qs[20] == 2 && b[0].qs[21] == -4, "ties must go to even: %d %d", b[0].qs[20],
              b[0].qs[21]);
    int bad = 0;
    for (int i = 0; i < 256; i++) {
        const double want = nearbyint((double)(x[i] * iscale));
        if (b[0].qs[i] != (int)want) bad++;
    }
    CHECK(bad == 0, "%d Q8_K levels are not the nearest", bad);
    bool sums = true;
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += b[0].qs[16 * g + j];
        sums &= b[0].bsums[g] == s;
    }
    CHECK(sums, "Q8_K group sums");
    bool zero = b[1].d == 0.0f;
    for (int i = 0; i < 256; i++) zero &= b[1].qs[i] == 0;
    for (int g = 0; g < 16; g++) zero &= b[1].bsums[g] == 0;
    CHECK(zero, "an all-zero Q8_K block");
    float y[256];
    nuri_dequantize_row(NURI_TYPE_Q8_K, raw, y, 256);
    CHECK(y[17] == b[0].d * -127.0f, "Q8_K dequantization");
    /* NaNs are skipped in the maximum and become level 0. */
    x[0] = NAN;
    nuri_quantize_row(NURI_TYPE_Q8_K, x, raw, 256);
    memcpy(b, raw, sizeof b[0]);
    CHECK(b[0].qs[0] == 0 && b[0].qs[17] == -127, "NaN in a Q8_K block");
}

/* ---- Dot products --------------------------------------------------------------- */

static void test_vec_dot(void) {
    enum { N = 256 * 6 };
    float *w = malloc(N * sizeof(float)), *a = malloc(N * sizeof(float));
    float *wd = malloc(N * sizeof(float)), *ad = malloc(N * sizeof(float));
    uint8_t *wq = malloc(N * 2 + 1), *aq = malloc(N * 2 + 1);
    if (!w || !a || !wd || !ad || !wq || !aq) {
        CHECK(false, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < N_KFORMATS; k++) {
        const nuri_type_traits *t = nuri_type_get(kformats[k].type);
        const nuri_type_traits *at = nuri_type_get(t->vec_dot_type);
        int bad = 0;
        for (int trial = 0; trial < 20; trial++) {
            rng_seed(300 + 31 * k + (uint64_t)trial);
            fill(w, N, trial % DIST_COUNT);
            fill(a, N, (trial / 2) % DIST_COUNT);
            const int n = trial % 3 == 0 ? 256 : N;
            t->from_float(w, wq + 1, n);
            at->from_float(a, aq + 1, n);
            t->to_float(wq + 1, wd, n);
            at->to_float(aq + 1, ad, n);
            double want = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                want += (double)wd[i] * ad[i];
                mag += fabs((double)wd[i] * ad[i]);
            }
            float got;
            t->vec_dot(n, &got, wq + 1, aq + 1);
            if (fabs((double)got - want) > 1e-5 * mag + 1e-30) {
                if (bad++ == 0)
                    fprintf(stderr, "  %s trial %d: vec_dot %.9g, dequantized sum %.9g\n",
                            kformats[k].name, trial, got, want);
            }
        }
        CHECK(bad == 0, "%s: %d dot products off the dequantized sum", kformats[k].name, bad);
    }
done:
    free(w);
    free(a);
    free(wd);
    free(ad);
    free(wq);
    free(aq);
}

int main(void) {
    test_traits();
    test_random_blocks();
    test_q8_k();
    test_vec_dot();
    test_quantize_error();
    test_llama_cpp_files();
    return test_finish();
}
