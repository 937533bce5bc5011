/* test_quant.c — the tensor element types (src/quant) and the half-float
 * conversions they build on (src/core/util.c).
 *
 * Every expectation here comes from somewhere other than the code under
 * test: the block layouts are decoded by hand-written bit arithmetic, the
 * dot products are compared with a double-precision sum of dequantized
 * values, and the quantized model files in ../shared (written and decoded by
 * llama.cpp) pin both directions of the conversion bit for bit. */
#include <float.h>
#include <math.h>
#include <stdint.h>
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

/* Uniform in [lo, hi). */
static float rng_range(float lo, float hi) {
    double u = (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

static float rng_gauss(void) {
    double u1 = ((double)(rng_next() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* The value of an IEEE half, written out from the definition (independent of
 * nuri_fp16_to_fp32). */
static double half_value(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    double v;
    if (exp == 0)
        v = ldexp((double)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexp((double)(1024 + mant), exp - 25);
    return sign ? -v : v;
}

static const uint32_t quant_types[] = {
    NURI_TYPE_F32,  NURI_TYPE_F16,  NURI_TYPE_BF16, NURI_TYPE_Q4_0, NURI_TYPE_Q4_1,
    NURI_TYPE_Q5_0, NURI_TYPE_Q5_1, NURI_TYPE_Q8_0, NURI_TYPE_Q8_1,
};
#define N_QUANT_TYPES (sizeof quant_types / sizeof quant_types[0])

/* ---- Traits table ------------------------------------------------------- */

static void test_traits(void) {
    /* Block and byte sizes from the GGUF specification. */
    static const struct {
        uint32_t id;
        const char *name;
        int64_t block;
        size_t bytes;
        bool computes; /* has to_float, from_float and (except Q8_1, Q8_K) vec_dot */
    } expected[] = {
        {0, "F32", 1, 4, true},         {1, "F16", 1, 2, true},
        {2, "Q4_0", 32, 18, true},      {3, "Q4_1", 32, 20, true},
        {6, "Q5_0", 32, 22, true},      {7, "Q5_1", 32, 24, true},
        {8, "Q8_0", 32, 34, true},      {9, "Q8_1", 32, 36, true},
        {10, "Q2_K", 256, 84, true},   {11, "Q3_K", 256, 110, true},
        {12, "Q4_K", 256, 144, true},  {13, "Q5_K", 256, 176, true},
        {14, "Q6_K", 256, 210, true},  {15, "Q8_K", 256, 292, true},
        {16, "IQ2_XXS", 256, 66, false}, {17, "IQ2_XS", 256, 74, false},
        {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
        {20, "IQ4_NL", 32, 18, true},  {21, "IQ3_S", 256, 110, false},
        {22, "IQ2_S", 256, 82, false},  {23, "IQ4_XS", 256, 136, true},
        {24, "I8", 1, 1, false},        {25, "I16", 1, 2, false},
        {26, "I32", 1, 4, false},       {27, "I64", 1, 8, false},
        {28, "F64", 1, 8, false},       {29, "IQ1_M", 256, 56, false},
        {30, "BF16", 1, 2, true},       {34, "TQ1_0", 256, 54, false},
        {35, "TQ2_0", 256, 66, false},  {39, "MXFP4", 32, 17, false},
    };
    bool known[NURI_TYPE_COUNT] = {false};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const nuri_type_traits *t = nuri_type_get(expected[i].id);
        known[expected[i].id] = true;
        CHECK(t != NULL, "type %u should be known", expected[i].id);
        if (!t) continue;
        CHECK(strcmp(t->name, expected[i].name) == 0, "type %u is %s, want %s", expected[i].id,
              t->name, expected[i].name);
        CHECK(strcmp(nuri_type_name(expected[i].id), expected[i].name) == 0, "name of %u",
              expected[i].id);
        CHECK(t->block_size == expected[i].block && t->type_size == expected[i].bytes,
              "%s: block %lld bytes %zu, want %lld %zu", t->name, (long long)t->block_size,
              t->type_size, (long long)expected[i].block, expected[i].bytes);
        bool has_dot = expected[i].computes && expected[i].id != NURI_TYPE_Q8_1 &&
                       expected[i].id != NURI_TYPE_Q8_K;
        CHECK((t->to_float != NULL) == expected[i].computes &&
                  (t->from_float != NULL) == expected[i].computes &&
                  (t->vec_dot != NULL) == has_dot,
              "%s: wrong set of functions", t->name);
    }
    for (uint32_t id = 0; id < NURI_TYPE_COUNT; id++) {
        if (known[id]) continue;
        CHECK(nuri_type_get(id) == NULL, "retired id %u should be unknown", id);
        CHECK(strcmp(nuri_type_name(id), "unknown") == 0, "name of retired id %u", id);
    }
    CHECK(nuri_type_get(NURI_TYPE_COUNT) == NULL && nuri_type_get(1000) == NULL &&
              nuri_type_get(UINT32_MAX) == NULL,
          "ids past the table are unknown");
    CHECK(strcmp(nuri_type_name(UINT32_MAX), "unknown") == 0, "name of a huge id");

    /* Activation types the dot products take. */
    CHECK(nuri_type_get(NURI_TYPE_F32)->vec_dot_type == NURI_TYPE_F32, "F32 dot type");
    CHECK(nuri_type_get(NURI_TYPE_F16)->vec_dot_type == NURI_TYPE_F32, "F16 dot type");
    CHECK(nuri_type_get(NURI_TYPE_BF16)->vec_dot_type == NURI_TYPE_F32, "BF16 dot type");
    CHECK(nuri_type_get(NURI_TYPE_Q4_0)->vec_dot_type == NURI_TYPE_Q8_0, "Q4_0 dot type");
    CHECK(nuri_type_get(NURI_TYPE_Q5_0)->vec_dot_type == NURI_TYPE_Q8_0, "Q5_0 dot type");
    CHECK(nuri_type_get(NURI_TYPE_Q8_0)->vec_dot_type == NURI_TYPE_Q8_0, "Q8_0 dot type");
    CHECK(nuri_type_get(NURI_TYPE_Q4_1)->vec_dot_type == NURI_TYPE_Q8_1, "Q4_1 dot type");
    CHECK(nuri_type_get(NURI_TYPE_Q5_1)->vec_dot_type == NURI_TYPE_Q8_1, "Q5_1 dot type");

    /* Row sizes. */
    CHECK(nuri_row_size(NURI_TYPE_F32, 7) == 28, "F32 row of 7");
    CHECK(nuri_row_size(NURI_TYPE_BF16, 3) == 6, "BF16 row of 3");
    CHECK(nuri_row_size(NURI_TYPE_Q4_0, 64) == 36, "Q4_0 row of 64");
    CHECK(nuri_row_size(NURI_TYPE_Q8_1, 96) == 108, "Q8_1 row of 96");
    CHECK(nuri_row_size(NURI_TYPE_Q6_K, 512) == 420, "Q6_K row of 512");
    CHECK(nuri_row_size(NURI_TYPE_Q4_0, 0) == 0, "empty row");
    CHECK(nuri_row_size(NURI_TYPE_Q4_0, 33) == 0, "Q4_0 row of 33 is not whole blocks");
    CHECK(nuri_row_size(NURI_TYPE_Q4_K, 32) == 0, "Q4_K row of 32 is not whole blocks");
    CHECK(nuri_row_size(NURI_TYPE_Q4_0, -32) == 0, "negative length");
    CHECK(nuri_row_size(4, 32) == 0 && nuri_row_size(NURI_TYPE_COUNT, 32) == 0,
          "unknown types have no row size");
    CHECK(nuri_row_size(NURI_TYPE_F32, INT64_MAX) == 0, "F32 byte count overflows");
    CHECK(nuri_row_size(27, INT64_MAX) == 0 && nuri_row_size(28, INT64_MAX / 2) == 0,
          "I64/F64 byte counts overflow");
    CHECK(nuri_row_size(NURI_TYPE_Q4_0, (INT64_MAX / 32) * 32) == (size_t)(INT64_MAX / 32) * 18,
          "a huge row that still fits");

    /* The row helpers leave memory alone for types they cannot convert. */
    float f[256] = {0};
    uint8_t bytes[300];
    memset(bytes, 0xAB, sizeof bytes);
    nuri_quantize_row(16 /* IQ2_XXS */, f, bytes, 256);
    nuri_quantize_row(4, f, bytes, 256);
    bool untouched = true;
    for (size_t i = 0; i < sizeof bytes; i++) untouched &= bytes[i] == 0xAB;
    CHECK(untouched, "quantizing to a type without a converter writes nothing");
}

/* ---- Half-precision conversions (util.c) -------------------------------- */

static void test_fp16(void) {
    int bad_value = 0, bad_round_trip = 0, bad_nan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nuri_fp16_to_fp32((uint16_t)h);
        double want = half_value((uint16_t)h);
        if (isnan(want)) {
            uint16_t back = nuri_fp32_to_fp16(f);
            if (!isnan(f) || (back & 0x7C00) != 0x7C00 || (back & 0x3FF) == 0 ||
                (back & 0x8000) != (h & 0x8000))
                bad_nan++;
            continue;
        }
        if ((double)f != want || !!signbit(f) != !!(h & 0x8000)) bad_value++;
        if (nuri_fp32_to_fp16(f) != h) bad_round_trip++;
    }
    CHECK(bad_value == 0, "fp16->fp32: %d halves decode to the wrong value", bad_value);
    CHECK(bad_round_trip == 0, "fp16->fp32->fp16: %d halves change", bad_round_trip);
    CHECK(bad_nan == 0, "%d NaN halves do not stay NaN", bad_nan);

    /* Round to nearest, ties to even: the exact midpoint between two
     * neighbouring halves (representable in float) goes to the even one, and
     * one float step either side goes to the nearer one. Covers subnormals
     * and the normal range, both signs. */
    int bad_tie = 0, bad_near = 0;
    for (uint32_t h = 0; h < 0x7BFF; h++) {
        for (int sign = 0; sign < 2; sign++) {
            uint16_t lo = (uint16_t)(h | (sign ? 0x8000 : 0));
            uint16_t hi = (uint16_t)(lo + 1);
            double mid = (half_value(lo) + half_value(hi)) / 2;
            float midf = (float)mid;
            if ((double)midf != mid) {
                bad_tie++;
                continue;
            }
            uint16_t even = (lo & 1) ? hi : lo;
            if (nuri_fp32_to_fp16(midf) != even) bad_tie++;
            float toward_lo = nextafterf(midf, 0.0f);
            float toward_hi = nextafterf(midf, sign ? -1e9f : 1e9f);
            if (nuri_fp32_to_fp16(toward_lo) != lo || nuri_fp32_to_fp16(toward_hi) != hi)
                bad_near++;
        }
    }
    CHECK(bad_tie == 0, "%d midpoints are not rounded to even", bad_tie);
    CHECK(bad_near == 0, "%d near-midpoints are not rounded to the nearer half", bad_near);

    /* Below the smallest subnormal, 2^-24. */
    CHECK(nuri_fp32_to_fp16(ldexpf(1.0f, -24)) == 0x0001, "smallest subnormal");
    CHECK(nuri_fp32_to_fp16(ldexpf(1.0f, -25)) == 0x0000, "half the smallest subnormal ties to 0");
    CHECK(nuri_fp32_to_fp16(nextafterf(ldexpf(1.0f, -25), 1.0f)) == 0x0001,
          "just over half the smallest subnormal");
    CHECK(nuri_fp32_to_fp16(-ldexpf(1.0f, -26)) == 0x8000, "tiny negative becomes -0");
    CHECK(nuri_fp32_to_fp16(ldexpf(1.0f, -140)) == 0x0000, "float subnormal becomes 0");
    CHECK(nuri_fp32_to_fp16(ldexpf(3.0f, -25)) == 0x0002, "1.5 subnormal steps ties to even 2");
    CHECK(nuri_fp32_to_fp16(ldexpf(1023.5f, -24)) == 0x0400,
          "largest subnormal plus half a step rounds up to the smallest normal");
    /* Overflow. */
    CHECK(nuri_fp32_to_fp16(65504.0f) == 0x7BFF, "largest half");
    CHECK(nuri_fp32_to_fp16(nextafterf(65520.0f, 0.0f)) == 0x7BFF, "just under 65520");
    CHECK(nuri_fp32_to_fp16(65520.0f) == 0x7C00, "65520 ties to even: infinity");
    CHECK(nuri_fp32_to_fp16(1e10f) == 0x7C00 && nuri_fp32_to_fp16(-1e10f) == 0xFC00,
          "large values overflow to infinity");
    CHECK(nuri_fp32_to_fp16(FLT_MAX) == 0x7C00, "FLT_MAX overflows");
    CHECK(nuri_fp32_to_fp16(INFINITY) == 0x7C00 && nuri_fp32_to_fp16(-INFINITY) == 0xFC00,
          "infinities");
    uint16_t nan_half = nuri_fp32_to_fp16(NAN);
    CHECK((nan_half & 0x7C00) == 0x7C00 && (nan_half & 0x3FF) != 0, "NaN stays NaN");
    /* A float NaN whose payload lives only in the low bits must not become inf. */
    uint16_t low_nan = nuri_fp32_to_fp16(bits_float(0x7F800001u));
    CHECK((low_nan & 0x3FF) != 0, "low-payload NaN becomes 0x%04x, not NaN", low_nan);
}

static void test_bf16(void) {
    int bad_round_trip = 0, bad_value = 0, bad_nan = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nuri_bf16_to_fp32((uint16_t)h);
        if (float_bits(f) != h << 16) bad_value++;
        if ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) {
            uint16_t back = nuri_fp32_to_bf16(f);
            if ((back & 0x7F80) != 0x7F80 || (back & 0x7F) == 0 || (back & 0x8000) != (h & 0x8000))
                bad_nan++;
        } else if (nuri_fp32_to_bf16(f) != h) {
            bad_round_trip++;
        }
    }
    CHECK(bad_value == 0, "bf16->fp32: %d values wrong", bad_value);
    CHECK(bad_round_trip == 0, "bf16->fp32->bf16: %d values change", bad_round_trip);
    CHECK(bad_nan == 0, "%d NaN bf16 values do not stay NaN", bad_nan);

    CHECK(nuri_fp32_to_bf16(bits_float(0x3F808000u)) == 0x3F80, "tie rounds down to even");
    CHECK(nuri_fp32_to_bf16(bits_float(0x3F818000u)) == 0x3F82, "tie rounds up to even");
    CHECK(nuri_fp32_to_bf16(bits_float(0x3F808001u)) == 0x3F81, "above the tie rounds up");
    CHECK(nuri_fp32_to_bf16(bits_float(0x3F807FFFu)) == 0x3F80, "below the tie rounds down");
    CHECK(nuri_fp32_to_bf16(bits_float(0xBF818000u)) == 0xBF82, "negative tie");
    CHECK(nuri_fp32_to_bf16(bits_float(0x00018000u)) == 0x0002, "subnormal tie");
    CHECK(nuri_fp32_to_bf16(bits_float(0x7F7F8000u)) == 0x7F80, "overflow to infinity");
    CHECK(nuri_fp32_to_bf16(FLT_MAX) == 0x7F80, "FLT_MAX rounds to infinity");
    CHECK(nuri_fp32_to_bf16(bits_float(0x7F7F7FFFu)) == 0x7F7F, "largest bf16 stays finite");
    uint16_t nan_bf = nuri_fp32_to_bf16(bits_float(0x7F800001u));
    CHECK((nan_bf & 0x7F80) == 0x7F80 && (nan_bf & 0x7F) != 0, "low-payload NaN stays NaN");
}

/* ---- Hand-built blocks --------------------------------------------------
 *
 * Each block is assembled byte by byte from chosen levels, following the
 * layout as the specification states it, and the expected floats are the
 * specification's formula. A few literal bytes pin the layout independently
 * of the test's own packing. */

/* Packs 32 4-bit levels: element j < 16 in the low nibble of byte j, element
 * 16 + j in its high nibble. */
static void spec_pack_nibbles(const int *q, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
}

/* Bit 4 of element j goes to bit j of a little-endian 32-bit word. */
static void spec_pack_high_bits(const int *q, uint8_t *qh) {
    memset(qh, 0, 4);
    for (int j = 0; j < 32; j++)
        if (q[j] & 16) qh[j / 8] |= (uint8_t)(1u << (j % 8));
}

static int count_mismatches(const float *got, const float *want, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (float_bits(got[i]) != float_bits(want[i])) bad++;
    return bad;
}

static void test_hand_built_blocks(void) {
    float got[64], want[64];
    int q[64];
    rng_seed(11);

    /* Q4_0, two blocks: d = 0.5 and d = -3.0. */
    {
        uint8_t row[36];
        const uint16_t d_bits[2] = {0x3800, 0xC200};
        const float d_val[2] = {0.5f, -3.0f};
        for (int b = 0; b < 2; b++) {
            for (int j = 0; j < 32; j++) q[b * 32 + j] = (int)(rng_next() % 16);
            put_u16(row + b * 18, d_bits[b]);
            spec_pack_nibbles(q + b * 32, row + b * 18 + 2);
            for (int j = 0; j < 32; j++) want[b * 32 + j] = (float)(q[b * 32 + j] - 8) * d_val[b];
        }
        nuri_dequantize_row(NURI_TYPE_Q4_0, row, got, 64);
        CHECK(count_mismatches(got, want, 64) == 0, "Q4_0 hand-built block");
        /* Literal: qs[0] = 0x1F gives element 0 level 15, element 16 level 1. */
        uint8_t lit[18] = {0x00, 0x3C, 0x1F};
        nuri_dequantize_row(NURI_TYPE_Q4_0, lit, got, 32);
        CHECK(got[0] == 7.0f && got[16] == -7.0f && got[1] == -8.0f && got[31] == -8.0f,
              "Q4_0 literal block: %g %g %g %g", got[0], got[16], got[1], got[31]);
    }
    /* Q4_1: d = 0.25, m = -1.5. */
    {
        uint8_t row[40];
        for (int b = 0; b < 2; b++) {
            for (int j = 0; j < 32; j++) q[b * 32 + j] = (int)(rng_next() % 16);
            put_u16(row + b * 20, 0x3400);
            put_u16(row + b * 20 + 2, b ? 0x3E00 : 0xBE00);
            spec_pack_nibbles(q + b * 32, row + b * 20 + 4);
            for (int j = 0; j < 32; j++)
                want[b * 32 + j] = (float)q[b * 32 + j] * 0.25f + (b ? 1.5f : -1.5f);
        }
        nuri_dequantize_row(NURI_TYPE_Q4_1, row, got, 64);
        CHECK(count_mismatches(got, want, 64) == 0, "Q4_1 hand-built block");
        uint8_t lit[20] = {0x00, 0x3C, 0x00, 0xC0, 0xF3};
        nuri_dequantize_row(NURI_TYPE_Q4_1, lit, got, 32);
        CHECK(got[0] == 1.0f && got[16] == 13.0f && got[1] == -2.0f,
              "Q4_1 literal block: %g %g %g", got[0], got[16], got[1]);
    }
    /* Q5_0: d = 0.125 and d = 2.0. */
    {
        uint8_t row[44];
        const uint16_t d_bits[2] = {0x3000, 0x4000};
        const float d_val[2] = {0.125f, 2.0f};
        for (int b = 0; b < 2; b++) {
            for (int j = 0; j < 32; j++) q[b * 32 + j] = (int)(rng_next() % 32);
            put_u16(row + b * 22, d_bits[b]);
            spec_pack_high_bits(q + b * 32, row + b * 22 + 2);
            spec_pack_nibbles(q + b * 32, row + b * 22 + 6);
            for (int j = 0; j < 32; j++) want[b * 32 + j] = (float)(q[b * 32 + j] - 16) * d_val[b];
        }
        nuri_dequantize_row(NURI_TYPE_Q5_0, row, got, 64);
        CHECK(count_mismatches(got, want, 64) == 0, "Q5_0 hand-built block");
        /* qh = 0x80000001: bit 4 set for elements 0 and 31 only. */
        uint8_t lit[22] = {0x00, 0x34, 0x01, 0x00, 0x00, 0x80};
        for (int j = 0; j < 16; j++) lit[6 + j] = 0x0F;
        nuri_dequantize_row(NURI_TYPE_Q5_0, lit, got, 32);
        CHECK(got[0] == 3.75f && got[1] == -0.25f && got[16] == -4.0f && got[31] == 0.0f,
              "Q5_0 literal block: %g %g %g %g", got[0], got[1], got[16], got[31]);
    }
    /* Q5_1: d = 1.0, m = 0.5 and d = 0.0078125, m = -100. */
    {
        uint8_t row[48];
        const uint16_t d_bits[2] = {0x3C00, 0x2000}, m_bits[2] = {0x3800, 0xD640};
        const float d_val[2] = {1.0f, 0.0078125f}, m_val[2] = {0.5f, -100.0f};
        for (int b = 0; b < 2; b++) {
            for (int j = 0; j < 32; j++) q[b * 32 + j] = (int)(rng_next() % 32);
            put_u16(row + b * 24, d_bits[b]);
            put_u16(row + b * 24 + 2, m_bits[b]);
            spec_pack_high_bits(q + b * 32, row + b * 24 + 4);
            spec_pack_nibbles(q + b * 32, row + b * 24 + 8);
            for (int j = 0; j < 32; j++)
                want[b * 32 + j] = (float)q[b * 32 + j] * d_val[b] + m_val[b];
        }
        nuri_dequantize_row(NURI_TYPE_Q5_1, row, got, 64);
        CHECK(count_mismatches(got, want, 64) == 0, "Q5_1 hand-built block");
        uint8_t lit[24] = {0x00, 0x3C, 0x00, 0x38, 0x01, 0x00, 0x00, 0x80};
        for (int j = 0; j < 16; j++) lit[8 + j] = 0x0F;
        nuri_dequantize_row(NURI_TYPE_Q5_1, lit, got, 32);
        CHECK(got[0] == 31.5f && got[1] == 15.5f && got[16] == 0.5f && got[31] == 16.5f,
              "Q5_1 literal block: %g %g %g %g", got[0], got[1], got[16], got[31]);
    }
    /* Q8_0 and Q8_1 (whose s field plays no part in dequantization). */
    {
        uint8_t row0[68], row1[72];
        for (int b = 0; b < 2; b++) {
            put_u16(row0 + b * 34, b ? 0xB800 : 0x4000);
            put_u16(row1 + b * 36, b ? 0xB800 : 0x4000);
            put_u16(row1 + b * 36 + 2, 0x7C00);
            for (int j = 0; j < 32; j++) {
                int v = (int)(rng_next() % 256) - 128;
                row0[b * 34 + 2 + j] = (uint8_t)v;
                row1[b * 36 + 4 + j] = (uint8_t)v;
                want[b * 32 + j] = (float)v * (b ? -0.5f : 2.0f);
            }
        }
        nuri_dequantize_row(NURI_TYPE_Q8_0, row0, got, 64);
        CHECK(count_mismatches(got, want, 64) == 0, "Q8_0 hand-built block");
        nuri_dequantize_row(NURI_TYPE_Q8_1, row1, got, 64);
        CHECK(count_mismatches(got, want, 64) == 0, "Q8_1 hand-built block");
        uint8_t lit[34] = {0x00, 0x40, 0x80, 0x7F, 0xFF};
        nuri_dequantize_row(NURI_TYPE_Q8_0, lit, got, 32);
        CHECK(got[0] == -256.0f && got[1] == 254.0f && got[2] == -2.0f && got[3] == 0.0f,
              "Q8_0 literal block: %g %g %g", got[0], got[1], got[2]);
    }
    /* F16, BF16, F32. */
    {
        const uint8_t f16[] = {0x00, 0x3C, 0x01, 0x00, 0x00, 0x7C, 0x00, 0xC1, 0xFF, 0x7B};
        nuri_dequantize_row(NURI_TYPE_F16, f16, got, 5);
        CHECK(got[0] == 1.0f && got[1] == ldexpf(1.0f, -24) && isinf(got[2]) && got[2] > 0 &&
                  got[3] == -2.5f && got[4] == 65504.0f,
              "F16 literal values");
        const uint8_t bf16[] = {0x80, 0x3F, 0x49, 0x40, 0x80, 0xFF, 0x01, 0x00};
        nuri_dequantize_row(NURI_TYPE_BF16, bf16, got, 4);
        CHECK(got[0] == 1.0f && got[1] == 3.140625f && isinf(got[2]) && got[2] < 0 &&
                  float_bits(got[3]) == 0x00010000u,
              "BF16 literal values");
        const uint8_t f32[] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC1};
        nuri_dequantize_row(NURI_TYPE_F32, f32, got, 2);
        CHECK(got[0] == 1.0f && got[1] == -10.0f, "F32 literal values");
    }
}

/* ---- Quantization error ------------------------------------------------- */

enum { DIST_UNIFORM, DIST_GAUSS, DIST_POSITIVE, DIST_ZERO, DIST_SPIKE, DIST_CONSTANT,
       DIST_TINY, DIST_COUNT };

/* Fills a 32-element block with one of the distributions above. */
static void fill_block(float *x, int dist) {
    for (int j = 0; j < 32; j++) {
        switch (dist) {
        case DIST_UNIFORM: x[j] = rng_range(-1.0f, 1.0f); break;
        case DIST_GAUSS: x[j] = 3.0f * rng_gauss(); break;
        case DIST_POSITIVE: x[j] = rng_range(0.5f, 2.0f); break;
        case DIST_ZERO: x[j] = 0.0f; break;
        case DIST_SPIKE: x[j] = rng_range(-0.01f, 0.01f); break;
        case DIST_CONSTANT: x[j] = -0.3f; break;
        default: x[j] = rng_range(-1e-3f, 1e-3f); break;
        }
    }
    if (dist == DIST_SPIKE) x[rng_next() % 32] = (rng_next() & 1) ? 1000.0f : -1000.0f;
}

/* The largest error the format allows for element j of block x. The step is
 * the grid spacing; the scale is stored as a half (relative error 2^-11, or
 * absolute 2^-25 once it is subnormal), so a level L away from the base
 * moves by up to L times that more. The
 * symmetric 4/5-bit formats give their extra negative level to the side of
 * the largest magnitude, so an element of the opposite sign near that
 * magnitude is clamped one level short. */
static double allowed_error(uint32_t type, const float *x, int j) {
    float amax = 0.0f, smax = 0.0f, min = x[0], max = x[0];
    for (int i = 0; i < 32; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            smax = x[i];
        }
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
    }
    const double half_rel = ldexp(1.0, -11);
    double step, levels, extra = 1e-6 * amax;
    switch (type) {
    case NURI_TYPE_Q4_0:
    case NURI_TYPE_Q5_0:
        levels = type == NURI_TYPE_Q4_0 ? 8 : 16;
        step = amax / levels;
        if (x[j] * smax < 0 && fabsf(x[j]) > (levels - 0.5) * step) extra += 0.5 * step;
        break;
    case NURI_TYPE_Q4_1:
    case NURI_TYPE_Q5_1:
        levels = type == NURI_TYPE_Q4_1 ? 15 : 31;
        step = ((double)max - min) / levels;
        extra += fabs(min) * half_rel + ldexp(1.0, -25); /* the min is a half too */
        break;
    default: /* Q8_0, Q8_1 */
        levels = 127;
        step = amax / levels;
        break;
    }
    return step * (0.5 + levels * half_rel) + levels * ldexp(1.0, -25) + extra + 1e-30;
}

/* The level stored for element j of a block, decoded from the layout as the
 * specification states it. */
static int spec_level(uint32_t type, const uint8_t *blk, int j) {
    const int qs_at = type == NURI_TYPE_Q4_0 ? 2 : type == NURI_TYPE_Q4_1 ? 4
                    : type == NURI_TYPE_Q5_0 ? 6 : 8;
    switch (type) {
    case NURI_TYPE_Q8_0: return (int8_t)blk[2 + j];
    case NURI_TYPE_Q8_1: return (int8_t)blk[4 + j];
    default: {
        int level = j < 16 ? blk[qs_at + j] & 15 : blk[qs_at + j - 16] >> 4;
        if (type == NURI_TYPE_Q5_0 || type == NURI_TYPE_Q5_1) {
            const uint8_t *qh = blk + (type == NURI_TYPE_Q5_0 ? 2 : 4);
            level |= ((qh[j / 8] >> (j % 8)) & 1) << 4;
        }
        return level;
    }
    }
}

/* The reference quantizers put the block's extremes on the outermost
 * levels: the signed largest magnitude on level 0 (Q4_0, Q5_0) or +-127
 * (Q8_0, Q8_1); the min on 0 and the max on the top level (Q4_1, Q5_1). */
static void check_extreme_levels(uint32_t type, const float *x, const uint8_t *row, int n_blocks) {
    const nuri_type_traits *tr = nuri_type_get(type);
    int bad = 0;
    for (int b = 0; b < n_blocks; b++) {
        const float *xb = x + 32 * b;
        const uint8_t *blk = row + tr->type_size * b;
        int arg_amax = 0, arg_min = 0, arg_max = 0;
        for (int j = 1; j < 32; j++) {
            if (fabsf(xb[j]) > fabsf(xb[arg_amax])) arg_amax = j;
            if (xb[j] < xb[arg_min]) arg_min = j;
            if (xb[j] > xb[arg_max]) arg_max = j;
        }
        if (xb[arg_min] == xb[arg_max]) continue; /* constant: no scale */
        switch (type) {
        case NURI_TYPE_Q4_0:
        case NURI_TYPE_Q5_0: bad += spec_level(type, blk, arg_amax) != 0; break;
        case NURI_TYPE_Q8_0:
        case NURI_TYPE_Q8_1: bad += abs(spec_level(type, blk, arg_amax)) != 127; break;
        default:
            bad += spec_level(type, blk, arg_min) != 0;
            bad += spec_level(type, blk, arg_max) != (type == NURI_TYPE_Q4_1 ? 15 : 31);
        }
    }
    CHECK(bad == 0, "%s: %d block extremes are not on the outermost levels", tr->name, bad);
}

static void test_quantize_error(void) {
    enum { N = 32 * DIST_COUNT * 3 };
    float x[N], y[N];
    uint8_t q[N * 4];
    rng_seed(2024);
    for (int i = 0; i < N / 32; i++) fill_block(x + 32 * i, i % DIST_COUNT);
    /* A block whose largest magnitude is negative and one with a positive
     * extreme on each side, so both clamp directions are exercised. */
    x[5] = -1.0f;
    x[7 * 32 + 3] = 1.0f;
    x[7 * 32 + 9] = -1.0f;

    for (size_t t = 0; t < N_QUANT_TYPES; t++) {
        uint32_t type = quant_types[t];
        const nuri_type_traits *tr = nuri_type_get(type);
        memset(q, 0, sizeof q);
        nuri_quantize_row(type, x, q, N);
        nuri_dequantize_row(type, q, y, N);
        int bad = 0, first = -1, zero_bad = 0;
        for (int i = 0; i < N; i++) {
            double err = fabs((double)x[i] - (double)y[i]), bound;
            if (type == NURI_TYPE_F32)
                bound = 0;
            else if (type == NURI_TYPE_F16)
                bound = fabs(x[i]) * ldexp(1.0, -11) + ldexp(1.0, -25);
            else if (type == NURI_TYPE_BF16)
                bound = fabs(x[i]) * ldexp(1.0, -8) + 1e-38;
            else
                bound = allowed_error(type, x + (i / 32) * 32, i % 32);
            if (!(err <= bound)) {
                if (first < 0) first = i;
                bad++;
            }
            if ((i / 32) % DIST_COUNT == DIST_ZERO && y[i] != 0.0f) zero_bad++;
        }
        CHECK(bad == 0, "%s: %d elements exceed the error bound (first %d: %g -> %g)", tr->name,
              bad, first, first >= 0 ? x[first] : 0.0, first >= 0 ? y[first] : 0.0);
        CHECK(zero_bad == 0, "%s: all-zero blocks must come back as zeros", tr->name);
        if (tr->block_size == 32) check_extreme_levels(type, x, q, N / 32);
    }

    /* Q8_1's s is d * sum(q), rounded to half. */
    nuri_block_q8_1 blocks[N / 32];
    nuri_quantize_row(NURI_TYPE_Q8_1, x, blocks, N);
    int bad_s = 0;
    for (int b = 0; b < N / 32; b++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += blocks[b].qs[j];
        double want = (double)sum * half_value(blocks[b].d);
        double got = half_value(blocks[b].s);
        /* d itself was rounded to half: relatively, or absolutely once subnormal. */
        double tol = fabs(want) * ldexp(1.0, -10) + abs(sum) * ldexp(1.0, -25) + ldexp(1.0, -24);
        if (fabs(got - want) > tol) bad_s++;
    }
    CHECK(bad_s == 0, "Q8_1: %d blocks have s != d * sum(q)", bad_s);

    /* Non-finite input must not crash or trip the sanitizers, and leaves the
     * finite block between the poisoned ones exactly as it is on its own. */
    float odd[96], alone[32];
    for (int i = 0; i < 96; i++) odd[i] = rng_range(-1.0f, 1.0f);
    odd[3] = NAN;
    odd[10] = INFINITY;
    odd[70] = -INFINITY;
    odd[71] = NAN;
    for (size_t t = 0; t < N_QUANT_TYPES; t++) {
        nuri_quantize_row(quant_types[t], odd, q, 96);
        nuri_dequantize_row(quant_types[t], q, y, 96);
        nuri_quantize_row(quant_types[t], odd + 32, q, 32);
        nuri_dequantize_row(quant_types[t], q, alone, 32);
        CHECK(count_mismatches(y + 32, alone, 32) == 0,
              "%s: a finite block changes next to non-finite ones", nuri_type_name(quant_types[t]));
    }
}

/* ---- Dot products ------------------------------------------------------- */

static void test_vec_dot(void) {
    static const int64_t sizes[] = {1, 7, 31, 32, 64, 96, 32 * 7, 32 * 33, 4096 + 32, 256 * 3};
    enum { MAXN = 4096 + 32 };
    float *x = malloc(MAXN * sizeof *x), *y = malloc(MAXN * sizeof *y);
    float *xd = malloc(MAXN * sizeof *xd), *yd = malloc(MAXN * sizeof *yd);
    /* One spare byte in front, so rows can also be read from odd addresses. */
    uint8_t *xq = malloc(MAXN * 4 + 1), *yq = malloc(MAXN * 4 + 1);
    if (!x || !y || !xd || !yd || !xq || !yq) {
        CHECK(false, "out of memory");
        goto done;
    }
    rng_seed(7);
    for (size_t t = 0; t < N_QUANT_TYPES; t++) {
        const nuri_type_traits *tx = nuri_type_get(quant_types[t]);
        if (!tx->vec_dot) continue;
        const nuri_type_traits *ty = nuri_type_get(tx->vec_dot_type);
        int tested = 0;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const int64_t n = sizes[s];
            if (n % tx->block_size != 0 || n % ty->block_size != 0) continue;
            for (int64_t i = 0; i < n; i++) {
                x[i] = rng_gauss() + (i % 64 < 32 ? 0.5f : 0.0f);
                y[i] = 2.0f * rng_gauss();
            }
            for (int odd = 0; odd < 2; odd++) {
                uint8_t *xrow = xq + odd, *yrow = yq + odd;
                nuri_quantize_row(quant_types[t], x, xrow, n);
                nuri_quantize_row(tx->vec_dot_type, y, yrow, n);
                nuri_dequantize_row(quant_types[t], xrow, xd, n);
                nuri_dequantize_row(tx->vec_dot_type, yrow, yd, n);

                double ref = 0, mag = 0, min_term = 0;
                for (int64_t i = 0; i < n; i++) {
                    ref += (double)xd[i] * yd[i];
                    mag += fabs((double)xd[i] * yd[i]);
                }
                double tol;
                if (tx->block_size == 1) {
                    tol = fabs(ref) * ldexp(1.0, -23) + mag * 1e-12;
                } else {
                    const int64_t nb = n / tx->block_size;
                    tol = (double)(nb + 4) * ldexp(1.0, -24) * mag;
                    if (tx->vec_dot_type == NURI_TYPE_Q8_1) {
                        /* The min term uses s = half(d * sum q), not the
                         * dequantized activations' sum. */
                        for (int64_t b = 0; b < nb; b++) {
                            double m = half_value(get_u16(xrow + b * tx->type_size + 2));
                            double block_mag = 0;
                            for (int j = 0; j < 32; j++) block_mag += fabs(yd[b * 32 + j]);
                            min_term += fabs(m) * block_mag;
                        }
                        tol += min_term * ldexp(1.0, -9);
                    }
                }
                float got = -12345.0f;
                tx->vec_dot(n, &got, xrow, yrow);
                CHECK(fabs((double)got - ref) <= tol,
                      "%s vec_dot n=%lld%s: %.9g, want %.9g (tol %.3g)", tx->name, (long long)n,
                      odd ? " (odd address)" : "", got, ref, tol);
                tested++;
            }
        }
        CHECK(tested >= 8, "%s: only %d sizes tested", tx->name, tested);
    }
done:
    free(x);
    free(y);
    free(xd);
    free(yd);
    free(xq);
    free(yq);
}

/* ---- llama.cpp's files ---------------------------------------------------
 *
 * mini-TYPE-pure.gguf was written by llama.cpp's quantizer from
 * mini-F32.gguf, and *.blk0.ffn_down.f32 is llama.cpp's dequantization of one
 * tensor. Dequantizing must reproduce those floats bit for bit, and
 * quantizing the F32 tensor must reproduce the file's bytes. */

#define GOLDEN_TENSOR "blk.0.ffn_down.weight"
#define GOLDEN_ROWS 256
#define GOLDEN_COLS 768

/* Opens a golden model and finds the tensor; NULL (after a failed CHECK)
 * when anything is off. */
static const gguf_tensor *open_golden_tensor(const char *name, uint32_t type, gguf_file **file) {
    const char *path = test_shared_path(name);
    *file = NULL;
    if (!path) return NULL;
    nuri_error err = {0};
    if (gguf_open(path, file, &err) != NURI_OK) {
        CHECK(false, "%s: %s", name, err.message);
        return NULL;
    }
    const gguf_tensor *t = gguf_find_tensor(*file, GOLDEN_TENSOR);
    CHECK(t != NULL, "%s: no tensor %s", name, GOLDEN_TENSOR);
    if (!t) return NULL;
    bool shape_ok = t->type == type && t->ne[0] == GOLDEN_COLS && t->ne[1] == GOLDEN_ROWS &&
                    t->nbytes == nuri_row_size(type, GOLDEN_COLS) * GOLDEN_ROWS;
    CHECK(shape_ok, "%s: %s has type %u, shape %lld x %lld, %llu bytes", name, GOLDEN_TENSOR,
          t->type, (long long)t->ne[0], (long long)t->ne[1], (unsigned long long)t->nbytes);
    return shape_ok ? t : NULL;
}

static void test_llama_cpp_golden(void) {
    static const struct {
        const char *name;
        uint32_t type;
    } formats[] = {
        {"Q4_0", NURI_TYPE_Q4_0}, {"Q4_1", NURI_TYPE_Q4_1}, {"Q5_0", NURI_TYPE_Q5_0},
        {"Q5_1", NURI_TYPE_Q5_1}, {"Q8_0", NURI_TYPE_Q8_0},
    };
    if (!test_shared_path("golden/quant")) return;

    gguf_file *f32_file;
    const gguf_tensor *f32_tensor = open_golden_tensor("golden/quant/mini-F32.gguf", NURI_TYPE_F32,
                                                       &f32_file);
    const size_t n = (size_t)GOLDEN_ROWS * GOLDEN_COLS;
    float *source = malloc(n * sizeof *source), *got = malloc(n * sizeof *got);
    uint8_t *requant = malloc(n * sizeof(float));
    if (!source || !got || !requant) {
        CHECK(false, "out of memory");
        goto done;
    }
    if (f32_tensor) nuri_dequantize_row(NURI_TYPE_F32, f32_tensor->data, source, (int64_t)n);

    for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "golden/quant/mini-%s-pure.gguf", formats[k].name);
        gguf_file *file;
        const gguf_tensor *t = open_golden_tensor(rel, formats[k].type, &file);
        snprintf(rel, sizeof rel, "golden/quant/mini-%s-pure.blk0.ffn_down.f32", formats[k].name);
        size_t want_len = 0;
        char *want = test_read_file(test_shared_path(rel), &want_len);
        CHECK(want && want_len == n * sizeof(float), "%s: cannot read %s", formats[k].name, rel);
        if (t && want && want_len == n * sizeof(float)) {
            const size_t row_bytes = nuri_row_size(formats[k].type, GOLDEN_COLS);
            const uint8_t *data = t->data;
            for (size_t r = 0; r < GOLDEN_ROWS; r++)
                nuri_dequantize_row(formats[k].type, data + r * row_bytes, got + r * GOLDEN_COLS,
                                    GOLDEN_COLS);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++)
                if (memcmp(got + i, want + i * sizeof(float), sizeof(float)) != 0) bad++;
            CHECK(bad == 0, "%s: %zu of %zu dequantized values differ from llama.cpp's",
                  formats[k].name, bad, n);

            if (f32_tensor) {
                for (size_t r = 0; r < GOLDEN_ROWS; r++)
                    nuri_quantize_row(formats[k].type, source + r * GOLDEN_COLS,
                                      requant + r * row_bytes, GOLDEN_COLS);
                size_t bad_bytes = 0;
                for (size_t i = 0; i < row_bytes * GOLDEN_ROWS; i++)
                    if (requant[i] != data[i]) bad_bytes++;
                CHECK(bad_bytes == 0, "%s: %zu bytes differ from llama.cpp's quantization",
                      formats[k].name, bad_bytes);
            }
        }
        free(want);
        gguf_close(file);
    }

    /* The F32 reference file holds the very same floats. */
    {
        size_t len = 0;
        char *want = test_read_file(test_shared_path("golden/quant/mini-F32.blk0.ffn_down.f32"),
                                    &len);
        CHECK(f32_tensor && want && len == n * sizeof(float) &&
                  memcmp(want, source, len) == 0,
              "F32: the tensor differs from mini-F32.blk0.ffn_down.f32");
        free(want);
    }
done:
    free(source);
    free(got);
    free(requant);
    gguf_close(f32_file);
}

int main(void) {
    test_traits();
    test_fp16();
    test_bf16();
    test_hand_built_blocks();
    test_quantize_error();
    test_vec_dot();
    test_llama_cpp_golden();
    return test_finish();
}
