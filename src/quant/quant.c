/* quant.c — the scalar reference for every tensor element type nuri computes
 * with: conversion to and from float and the dot product against the type's
 * activation format.
 *
 * These functions define the numbers. Dequantization and quantization follow
 * the published GGUF reference formulas operation for operation, so a row
 * dequantized here equals llama.cpp's bit for bit and a row quantized here
 * equals the bytes its reference quantizer writes. Faster (SIMD, GPU)
 * kernels are tested against this file, so it favours plain code over speed.
 *
 * Blocks are copied in and out with memcpy: rows come from memory-mapped
 * files and may sit at any address. */
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/util.h"

/* ---- Float-to-integer steps of the reference quantizers ----------------
 *
 * The reference quantizers convert with a plain C cast, which is undefined
 * for NaN and out-of-range values. These helpers give the same result for
 * every value a finite input row produces, and a defined one otherwise. */

/* v truncated toward zero and clamped to [0, hi]; NaN gives 0. Equals the
 * reference's MIN(hi, (int8_t)v) for the v >= 0 it produces from finite
 * rows. */
static int trunc_clamp(float v, int hi) {
    if (!(v >= 0.0f)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* roundf(v) (halves away from zero) clamped to [-127, 127]; NaN gives 0. */
static int8_t round_clamp_i8(float v) {
    float r = roundf(v);
    if (isnan(r)) return 0;
    if (r > 127.0f) return 127;
    if (r < -127.0f) return -127;
    return (int8_t)r;
}

/* The signed element of largest magnitude (the first one on ties), which
 * the symmetric 4- and 5-bit formats map to their most negative level. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static float absmax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
    return amax;
}

static void min_max(const float *x, int n, float *min_out, float *max_out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

static inline float half(uint16_t h) { return nuri_fp16_to_fp32(h); }

/* ---- F32, F16, BF16 ----------------------------------------------------- */

static void f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_from_float(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n; i++) dst[i] = nuri_fp16_to_fp32(nuri_load_u16(in + 2 * i));
}

static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = nuri_fp32_to_fp16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n; i++) dst[i] = nuri_bf16_to_fp32(nuri_load_u16(in + 2 * i));
}

static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = nuri_fp32_to_bf16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

/* The float dot products keep activations in float and sum in double: they
 * are the accuracy reference, and their rows are short enough that the cost
 * does not matter. */
static void vec_dot_f32(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)nuri_load_f32(xb + 4 * i) * (double)nuri_load_f32(yb + 4 * i);
    *result = (float)sum;
}

static void vec_dot_f16(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)nuri_fp16_to_fp32(nuri_load_u16(xb + 2 * i)) *
               (double)nuri_load_f32(yb + 4 * i);
    *result = (float)sum;
}

static void vec_dot_bf16(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)nuri_bf16_to_fp32(nuri_load_u16(xb + 2 * i)) *
               (double)nuri_load_f32(yb + 4 * i);
    *result = (float)sum;
}

/* ---- Q4_0 --------------------------------------------------------------- */

static void quantize_q4_0(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NURI_QK4_0; b++) {
        const float *x = src + b * NURI_QK4_0;
        /* The largest-magnitude element lands exactly on level 0, so the
         * unpaired 16th level goes to its side of zero. */
        const float d = signed_absmax(x, NURI_QK4_0) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        nuri_block_q4_0 blk;
        blk.d = nuri_fp32_to_fp16(d);
        for (int j = 0; j < NURI_QK4_0 / 2; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[j + NURI_QK4_0 / 2] * id;
            const int q0 = trunc_clamp(x0 + 8.5f, 15);
            const int q1 = trunc_clamp(x1 + 8.5f, 15);
            blk.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

static void dequantize_q4_0(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / NURI_QK4_0; b++) {
        nuri_block_q4_0 blk;
        memcpy(&blk, in + b * sizeof blk, sizeof blk);
        const float d = half(blk.d);
        float *y = dst + b * NURI_QK4_0;
        for (int j = 0; j < NURI_QK4_0 / 2; j++) {
            y[j] = (float)((blk.qs[j] & 0x0F) - 8) * d;
            y[j + NURI_QK4_0 / 2] = (float)((blk.qs[j] >> 4) - 8) * d;
        }
    }
}

static void vec_dot_q4_0_q8_0(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / NURI_QK4_0; b++) {
        nuri_block_q4_0 bx;
        nuri_block_q8_0 by;
        memcpy(&bx, xb + b * sizeof bx, sizeof bx);
        memcpy(&by, yb + b * sizeof by, sizeof by);
        int sumi = 0;
        for (int j = 0; j < NURI_QK4_0 / 2; j++) {
            sumi += ((bx.qs[j] & 0x0F) - 8) * by.qs[j];
            sumi += ((bx.qs[j] >> 4) - 8) * by.qs[j + NURI_QK4_0 / 2];
        }
        sum += (float)sumi * (half(bx.d) * half(by.d));
    }
    *result = sum;
}

/* ---- Q4_1 --------------------------------------------------------------- */

static void quantize_q4_1(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NURI_QK4_1; b++) {
        const float *x = src + b * NURI_QK4_1;
        float min, max;
        min_max(x, NURI_QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        nuri_block_q4_1 blk;
        blk.d = nuri_fp32_to_fp16(d);
        blk.m = nuri_fp32_to_fp16(min);
        for (int j = 0; j < NURI_QK4_1 / 2; j++) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[j + NURI_QK4_1 / 2] - min) * id;
            const int q0 = trunc_clamp(x0 + 0.5f, 15);
            const int q1 = trunc_clamp(x1 + 0.5f, 15);
            blk.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

/* q * d + m. The product of a 5-bit level and a half is exact in float, so
 * the result is the same whether or not a compiler fuses it into an FMA. */
static inline float scale_add(int q, float d, float m) { return (float)q * d + m; }

static void dequantize_q4_1(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / NURI_QK4_1; b++) {
        nuri_block_q4_1 blk;
        memcpy(&blk, in + b * sizeof blk, sizeof blk);
        const float d = half(blk.d);
        const float m = half(blk.m);
        float *y = dst + b * NURI_QK4_1;
        for (int j = 0; j < NURI_QK4_1 / 2; j++) {
            y[j] = scale_add(blk.qs[j] & 0x0F, d, m);
            y[j + NURI_QK4_1 / 2] = scale_add(blk.qs[j] >> 4, d, m);
        }
    }
}

static void vec_dot_q4_1_q8_1(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / NURI_QK4_1; b++) {
        nuri_block_q4_1 bx;
        nuri_block_q8_1 by;
        memcpy(&bx, xb + b * sizeof bx, sizeof bx);
        memcpy(&by, yb + b * sizeof by, sizeof by);
        int sumi = 0;
        for (int j = 0; j < NURI_QK4_1 / 2; j++) {
            sumi += (bx.qs[j] & 0x0F) * by.qs[j];
            sumi += (bx.qs[j] >> 4) * by.qs[j + NURI_QK4_1 / 2];
        }
        /* sum_j (q_j*dx + m)(p_j*dy) = dx*dy*sumi + m * (dy * sum_j p_j). */
        sum += (float)sumi * (half(bx.d) * half(by.d)) + half(bx.m) * half(by.s);
    }
    *result = sum;
}

/* ---- Q5_0 --------------------------------------------------------------- */

/* Packs 32 five-bit levels: low nibbles into qs as Q4_0 does, bit 4 of
 * element j into bit j of the little-endian qh. */
static void pack_5bit(const int q[32], uint8_t qs[16], uint8_t qh[4]) {
    uint32_t high = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        high |= (uint32_t)((q[j] >> 4) & 1) << j;
        high |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(high >> (8 * k));
}

/* The inverse of pack_5bit: the 32 levels in 0..31. */
static void unpack_5bit(const uint8_t qs[16], const uint8_t qh[4], int q[32]) {
    const uint32_t high = nuri_load_u32(qh);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0x0F) | (int)(((high >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((high >> (j + 16)) & 1) << 4);
    }
}

static void quantize_q5_0(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NURI_QK5_0; b++) {
        const float *x = src + b * NURI_QK5_0;
        const float d = signed_absmax(x, NURI_QK5_0) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[NURI_QK5_0];
        for (int j = 0; j < NURI_QK5_0; j++) {
            const float xs = x[j] * id;
            q[j] = trunc_clamp(xs + 16.5f, 31);
        }
        nuri_block_q5_0 blk;
        blk.d = nuri_fp32_to_fp16(d);
        pack_5bit(q, blk.qs, blk.qh);
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

static void dequantize_q5_0(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / NURI_QK5_0; b++) {
        nuri_block_q5_0 blk;
        memcpy(&blk, in + b * sizeof blk, sizeof blk);
        int q[NURI_QK5_0];
        unpack_5bit(blk.qs, blk.qh, q);
        const float d = half(blk.d);
        float *y = dst + b * NURI_QK5_0;
        for (int j = 0; j < NURI_QK5_0; j++) y[j] = (float)(q[j] - 16) * d;
    }
}

static void vec_dot_q5_0_q8_0(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / NURI_QK5_0; b++) {
        nuri_block_q5_0 bx;
        nuri_block_q8_0 by;
        memcpy(&bx, xb + b * sizeof bx, sizeof bx);
        memcpy(&by, yb + b * sizeof by, sizeof by);
        int q[NURI_QK5_0];
        unpack_5bit(bx.qs, bx.qh, q);
        int sumi = 0;
        for (int j = 0; j < NURI_QK5_0; j++) sumi += (q[j] - 16) * by.qs[j];
        sum += (float)sumi * (half(bx.d) * half(by.d));
    }
    *result = sum;
}

/* ---- Q5_1 --------------------------------------------------------------- */

static void quantize_q5_1(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NURI_QK5_1; b++) {
        const float *x = src + b * NURI_QK5_1;
        float min, max;
        min_max(x, NURI_QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[NURI_QK5_1];
        for (int j = 0; j < NURI_QK5_1; j++) {
            const float xs = (x[j] - min) * id;
            q[j] = trunc_clamp(xs + 0.5f, 31);
        }
        nuri_block_q5_1 blk;
        blk.d = nuri_fp32_to_fp16(d);
        blk.m = nuri_fp32_to_fp16(min);
        pack_5bit(q, blk.qs, blk.qh);
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

static void dequantize_q5_1(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / NURI_QK5_1; b++) {
        nuri_block_q5_1 blk;
        memcpy(&blk, in + b * sizeof blk, sizeof blk);
        int q[NURI_QK5_1];
        unpack_5bit(blk.qs, blk.qh, q);
        const float d = half(blk.d);
        const float m = half(blk.m);
        float *y = dst + b * NURI_QK5_1;
        for (int j = 0; j < NURI_QK5_1; j++) y[j] = scale_add(q[j], d, m);
    }
}

static void vec_dot_q5_1_q8_1(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / NURI_QK5_1; b++) {
        nuri_block_q5_1 bx;
        nuri_block_q8_1 by;
        memcpy(&bx, xb + b * sizeof bx, sizeof bx);
        memcpy(&by, yb + b * sizeof by, sizeof by);
        int q[NURI_QK5_1];
        unpack_5bit(bx.qs, bx.qh, q);
        int sumi = 0;
        for (int j = 0; j < NURI_QK5_1; j++) sumi += q[j] * by.qs[j];
        sum += (float)sumi * (half(bx.d) * half(by.d)) + half(bx.m) * half(by.s);
    }
    *result = sum;
}

/* ---- Q8_0 --------------------------------------------------------------- */

static void quantize_q8_0(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NURI_QK8_0; b++) {
        const float *x = src + b * NURI_QK8_0;
        const float d = absmax(x, NURI_QK8_0) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        nuri_block_q8_0 blk;
        blk.d = nuri_fp32_to_fp16(d);
        for (int j = 0; j < NURI_QK8_0; j++) blk.qs[j] = round_clamp_i8(x[j] * id);
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

static void dequantize_q8_0(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / NURI_QK8_0; b++) {
        nuri_block_q8_0 blk;
        memcpy(&blk, in + b * sizeof blk, sizeof blk);
        const float d = half(blk.d);
        float *y = dst + b * NURI_QK8_0;
        for (int j = 0; j < NURI_QK8_0; j++) y[j] = (float)blk.qs[j] * d;
    }
}

static void vec_dot_q8_0_q8_0(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / NURI_QK8_0; b++) {
        nuri_block_q8_0 bx, by;
        memcpy(&bx, xb + b * sizeof bx, sizeof bx);
        memcpy(&by, yb + b * sizeof by, sizeof by);
        int sumi = 0;
        for (int j = 0; j < NURI_QK8_0; j++) sumi += bx.qs[j] * by.qs[j];
        sum += (float)sumi * (half(bx.d) * half(by.d));
    }
    *result = sum;
}

/* ---- Q8_1 --------------------------------------------------------------- */

static void quantize_q8_1(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NURI_QK8_1; b++) {
        const float *x = src + b * NURI_QK8_1;
        const float d = absmax(x, NURI_QK8_1) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        nuri_block_q8_1 blk;
        int sum = 0;
        for (int j = 0; j < NURI_QK8_1; j++) {
            blk.qs[j] = round_clamp_i8(x[j] * id);
            sum += blk.qs[j];
        }
        /* s uses the unrounded d, as the reference does. */
        blk.d = nuri_fp32_to_fp16(d);
        blk.s = nuri_fp32_to_fp16((float)sum * d);
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

static void dequantize_q8_1(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / NURI_QK8_1; b++) {
        nuri_block_q8_1 blk;
        memcpy(&blk, in + b * sizeof blk, sizeof blk);
        const float d = half(blk.d);
        float *y = dst + b * NURI_QK8_1;
        for (int j = 0; j < NURI_QK8_1; j++) y[j] = (float)blk.qs[j] * d;
    }
}

/* ---- The traits table ---------------------------------------------------- */

/* GGUF ids nuri only names (no arithmetic), so files using them can be
 * validated and reported by name. */
enum {
    TYPE_IQ2_XXS = 16,
    TYPE_IQ2_XS = 17,
    TYPE_IQ3_XXS = 18,
    TYPE_IQ1_S = 19,
    TYPE_IQ3_S = 21,
    TYPE_IQ2_S = 22,
    TYPE_I8 = 24,
    TYPE_I16 = 25,
    TYPE_I32 = 26,
    TYPE_I64 = 27,
    TYPE_F64 = 28,
    TYPE_IQ1_M = 29,
    TYPE_TQ1_0 = 34,
    TYPE_TQ2_0 = 35,
    TYPE_MXFP4 = 39,
};

_Static_assert((int)NURI_TYPE_COUNT > (int)TYPE_MXFP4, "traits table too small for the named ids");

/* A type nuri can only size: the vec_dot_type is the one its future kernels
 * will take activations in. Ids 4, 5, 31-33 and 36-38 were retired from
 * GGUF and stay unnamed. */
#define SIZE_ONLY(NAME, BLOCK, BYTES, DOT_TYPE) \
    { .name = NAME, .block_size = BLOCK, .type_size = BYTES, .vec_dot_type = DOT_TYPE }

static const nuri_type_traits type_traits[NURI_TYPE_COUNT] = {
    [NURI_TYPE_F32] = {"F32", 1, 4, NURI_TYPE_F32, f32_to_float, f32_from_float, vec_dot_f32},
    [NURI_TYPE_F16] = {"F16", 1, 2, NURI_TYPE_F32, f16_to_float, f16_from_float, vec_dot_f16},
    [NURI_TYPE_BF16] = {"BF16", 1, 2, NURI_TYPE_F32, bf16_to_float, bf16_from_float,
                        vec_dot_bf16},
    [NURI_TYPE_Q4_0] = {"Q4_0", NURI_QK4_0, sizeof(nuri_block_q4_0), NURI_TYPE_Q8_0,
                        dequantize_q4_0, quantize_q4_0, vec_dot_q4_0_q8_0},
    [NURI_TYPE_Q4_1] = {"Q4_1", NURI_QK4_1, sizeof(nuri_block_q4_1), NURI_TYPE_Q8_1,
                        dequantize_q4_1, quantize_q4_1, vec_dot_q4_1_q8_1},
    [NURI_TYPE_Q5_0] = {"Q5_0", NURI_QK5_0, sizeof(nuri_block_q5_0), NURI_TYPE_Q8_0,
                        dequantize_q5_0, quantize_q5_0, vec_dot_q5_0_q8_0},
    [NURI_TYPE_Q5_1] = {"Q5_1", NURI_QK5_1, sizeof(nuri_block_q5_1), NURI_TYPE_Q8_1,
                        dequantize_q5_1, quantize_q5_1, vec_dot_q5_1_q8_1},
    [NURI_TYPE_Q8_0] = {"Q8_0", NURI_QK8_0, sizeof(nuri_block_q8_0), NURI_TYPE_Q8_0,
                        dequantize_q8_0, quantize_q8_0, vec_dot_q8_0_q8_0},
    /* Q8_1 only ever holds activations for Q4_1/Q5_1 rows: no dot of its own. */
    [NURI_TYPE_Q8_1] = {"Q8_1", NURI_QK8_1, sizeof(nuri_block_q8_1), NURI_TYPE_Q8_1,
                        dequantize_q8_1, quantize_q8_1, NULL},

    /* K-quants and IQ4 (quant_k.c). */
    [NURI_TYPE_Q2_K] = {"Q2_K", NURI_QK_K, sizeof(nuri_block_q2_k), NURI_TYPE_Q8_K,
                        nuri_dequantize_q2_k, nuri_quantize_q2_k, nuri_vec_dot_q2_k_q8_k},
    [NURI_TYPE_Q3_K] = {"Q3_K", NURI_QK_K, sizeof(nuri_block_q3_k), NURI_TYPE_Q8_K,
                        nuri_dequantize_q3_k, nuri_quantize_q3_k, nuri_vec_dot_q3_k_q8_k},
    [NURI_TYPE_Q4_K] = {"Q4_K", NURI_QK_K, sizeof(nuri_block_q4_k), NURI_TYPE_Q8_K,
                        nuri_dequantize_q4_k, nuri_quantize_q4_k, nuri_vec_dot_q4_k_q8_k},
    [NURI_TYPE_Q5_K] = {"Q5_K", NURI_QK_K, sizeof(nuri_block_q5_k), NURI_TYPE_Q8_K,
                        nuri_dequantize_q5_k, nuri_quantize_q5_k, nuri_vec_dot_q5_k_q8_k},
    [NURI_TYPE_Q6_K] = {"Q6_K", NURI_QK_K, sizeof(nuri_block_q6_k), NURI_TYPE_Q8_K,
                        nuri_dequantize_q6_k, nuri_quantize_q6_k, nuri_vec_dot_q6_k_q8_k},
    /* Q8_K only ever holds activations: no dot of its own. */
    [NURI_TYPE_Q8_K] = {"Q8_K", NURI_QK_K, sizeof(nuri_block_q8_k), NURI_TYPE_Q8_K,
                        nuri_dequantize_q8_k, nuri_quantize_q8_k, NULL},
    [NURI_TYPE_IQ4_NL] = {"IQ4_NL", NURI_QK_IQ4_NL, sizeof(nuri_block_iq4_nl), NURI_TYPE_Q8_0,
                          nuri_dequantize_iq4_nl, nuri_quantize_iq4_nl, nuri_vec_dot_iq4_nl_q8_0},
    [NURI_TYPE_IQ4_XS] = {"IQ4_XS", NURI_QK_K, sizeof(nuri_block_iq4_xs), NURI_TYPE_Q8_K,
                          nuri_dequantize_iq4_xs, nuri_quantize_iq4_xs, nuri_vec_dot_iq4_xs_q8_k},

    [TYPE_IQ2_XXS] = SIZE_ONLY("IQ2_XXS", NURI_QK_K, 66, NURI_TYPE_Q8_K),
    [TYPE_IQ2_XS] = SIZE_ONLY("IQ2_XS", NURI_QK_K, 74, NURI_TYPE_Q8_K),
    [TYPE_IQ3_XXS] = SIZE_ONLY("IQ3_XXS", NURI_QK_K, 98, NURI_TYPE_Q8_K),
    [TYPE_IQ1_S] = SIZE_ONLY("IQ1_S", NURI_QK_K, 50, NURI_TYPE_Q8_K),
    [TYPE_IQ3_S] = SIZE_ONLY("IQ3_S", NURI_QK_K, 110, NURI_TYPE_Q8_K),
    [TYPE_IQ2_S] = SIZE_ONLY("IQ2_S", NURI_QK_K, 82, NURI_TYPE_Q8_K),
    [TYPE_IQ1_M] = SIZE_ONLY("IQ1_M", NURI_QK_K, 56, NURI_TYPE_Q8_K),
    [TYPE_TQ1_0] = SIZE_ONLY("TQ1_0", NURI_QK_K, 54, NURI_TYPE_Q8_K),
    [TYPE_TQ2_0] = SIZE_ONLY("TQ2_0", NURI_QK_K, 66, NURI_TYPE_Q8_K),
    [TYPE_MXFP4] = SIZE_ONLY("MXFP4", 32, 17, NURI_TYPE_Q8_0),
    [TYPE_I8] = SIZE_ONLY("I8", 1, 1, NURI_TYPE_F32),
    [TYPE_I16] = SIZE_ONLY("I16", 1, 2, NURI_TYPE_F32),
    [TYPE_I32] = SIZE_ONLY("I32", 1, 4, NURI_TYPE_F32),
    [TYPE_I64] = SIZE_ONLY("I64", 1, 8, NURI_TYPE_F32),
    [TYPE_F64] = SIZE_ONLY("F64", 1, 8, NURI_TYPE_F32),
};

const nuri_type_traits *nuri_type_get(uint32_t type) {
    if (type >= NURI_TYPE_COUNT || type_traits[type].name == NULL) return NULL;
    return &type_traits[type];
}

const char *nuri_type_name(uint32_t type) {
    const nuri_type_traits *traits = nuri_type_get(type);
    return traits ? traits->name : "unknown";
}

size_t nuri_row_size(uint32_t type, int64_t n) {
    const nuri_type_traits *traits = nuri_type_get(type);
    if (!traits || n < 0 || n % traits->block_size != 0) return 0;
    uint64_t bytes;
    if (!nuri_mul_u64((uint64_t)(n / traits->block_size), traits->type_size, &bytes)) return 0;
    if ((uint64_t)(size_t)bytes != bytes) return 0;
    return (size_t)bytes;
}

void nuri_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    const nuri_type_traits *traits = nuri_type_get(type);
    if (traits && traits->from_float && n > 0) traits->from_float(src, dst, n);
}

void nuri_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const nuri_type_traits *traits = nuri_type_get(type);
    if (traits && traits->to_float && n > 0) traits->to_float(src, dst, n);
}
