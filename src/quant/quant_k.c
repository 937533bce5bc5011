/* quant_k.c — the scalar reference for the K-quants (Q2_K ... Q6_K, with
 * Q8_K activations) and the non-linear 4-bit types IQ4_NL and IQ4_XS.
 *
 * Dequantization follows the published GGUF layouts operation for
 * operation, so it equals llama.cpp's bit for bit. Every product it forms
 * is exact in float (a half times integers of at most 13 bits), so the
 * result does not depend on evaluation order or FMA contraction.
 *
 * The dot products define the numbers the SIMD kernels must reproduce: per
 * super-block an exact integer sum, then a fixed sequence of float
 * operations, super-block after super-block.
 *
 * The quantizers are our own search (llama.cpp's bytes are not a target,
 * only its error): per sub-block a least-squares fit over a sweep of
 * candidate scales, then the sub-block scales rounded to the super-block's
 * integer grid, then alternating refinement of the super-block scales, the
 * integer sub-block scales and the levels, keeping the best state. Every
 * step minimises the plain squared error of the dequantized weights.
 *
 * Rows come from memory-mapped files at any address: blocks are copied in
 * and out with memcpy. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/util.h"
#include "quant/quant.h"

const int8_t NURI_IQ4_VALUES[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

static inline float half(uint16_t h) { return nuri_fp16_to_fp32(h); }

/* The value a float has after a round trip through a half. */
static inline float to_half_value(float f) { return half(nuri_fp32_to_fp16(f)); }

/* v rounded to the nearest integer (ties to even) and clamped to [lo, hi];
 * NaN counts as 0. Defined for every float. */
static int round_even_clamp(float v, int lo, int hi) {
    if (isnan(v)) v = 0.0f;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)lrintf(v);
}

/* The quantizers' rounding: to nearest (ties up), clamped to [lo, hi], NaN
 * to lo. Cheaper than lrintf (a library call) in the searches' inner
 * loops; the offset keeps the truncated value non-negative. */
static inline int round_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)(v - (float)lo + 0.5f) + lo;
}

/* ---- Scale packings ---------------------------------------------------------
 *
 * Q4_K and Q5_K keep eight 6-bit scales and eight 6-bit minimums in 12
 * bytes: for j < 4, bytes j and j+4 hold scale j and minimum j in their low
 * six bits; scales and minimums 4..7 keep their low four bits in the
 * nibbles of bytes 8..11 and their top two bits in the top bits of bytes
 * 0..3 (scales) and 4..7 (minimums). */

static void unpack_scales_k4(const uint8_t s[12], int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void pack_scales_k4(const int sc[8], const int m[8], uint8_t s[12]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

/* Q3_K keeps sixteen 6-bit scales (stored as scale + 32) in 12 bytes:
 * scale k's low four bits in the low (k < 8) or high (k >= 8) nibble of
 * byte k % 8, its top two bits in bits 2*(k/4) of byte 8 + k % 4. */
static int unpack_scale_q3_k(const uint8_t s[12], int k) {
    const int low = k < 8 ? s[k] & 0x0F : s[k - 8] >> 4;
    const int high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return (low | (high << 4)) - 32;
}

static void pack_scales_q3_k(const int sc[16], uint8_t s[12]) {
    memset(s, 0, 12);
    for (int k = 0; k < 16; k++) {
        const int u = sc[k] + 32;
        if (k < 8) s[k] |= (uint8_t)(u & 0x0F);
        else s[k - 8] |= (uint8_t)((u & 0x0F) << 4);
        s[8 + k % 4] |= (uint8_t)((u >> 4) << (2 * (k / 4)));
    }
}

/* IQ4_XS: sub-block ib's six-bit scale (stored as scale + 32). */
static int unpack_scale_iq4_xs(const nuri_block_iq4_xs *b, int ib) {
    const int low = (b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
    const int high = (b->scales_h >> (2 * ib)) & 3;
    return (low | (high << 4)) - 32;
}

/* ---- Level positions ------------------------------------------------------------
 *
 * Each function returns the levels of one super-block in element order, so
 * dequantization, dot products and quantizers share one statement of each
 * layout. */

/* Q2_K: element 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]. */
static void q2_k_levels(const nuri_block_q2_k *b, int q[NURI_QK_K]) {
    for (int e = 0; e < NURI_QK_K; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        q[e] = (b->qs[32 * h + l] >> (2 * k)) & 3;
    }
}

/* Q3_K: element 128h + 32k + l: low bits as Q2_K, third bit is bit 4h + k
 * of hmask[l]; the level is that 3-bit number minus 4. */
static void q3_k_levels(const nuri_block_q3_k *b, int q[NURI_QK_K]) {
    for (int e = 0; e < NURI_QK_K; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const int low = (b->qs[32 * h + l] >> (2 * k)) & 3;
        const int high = (b->hmask[l] >> (4 * h + k)) & 1;
        q[e] = (low | (high << 2)) - 4;
    }
}

/* Q4_K: element 64c + l (l < 32) is the low nibble of qs[32c + l], element
 * 64c + 32 + l its high nibble. */
static int q4_k_level(const uint8_t *qs, int e) {
    const int c = e / 64, l = e % 32;
    return (e % 64) < 32 ? qs[32 * c + l] & 0x0F : qs[32 * c + l] >> 4;
}

/* Q5_K: the Q4_K nibble plus 16 times bit (e / 32) of qh[e % 32]. */
static void q5_k_levels(const nuri_block_q5_k *b, int q[NURI_QK_K]) {
    for (int e = 0; e < NURI_QK_K; e++)
        q[e] = q4_k_level(b->qs, e) | (((b->qh[e % 32] >> (e / 32)) & 1) << 4);
}

/* Q6_K: element 128h + 32k + l: four low bits from ql[64h + 32(k%2) + l]
 * (low nibble for k < 2, high for k >= 2), two high bits 2k..2k+1 of
 * qh[32h + l]; the level is that 6-bit number minus 32. */
static void q6_k_levels(const nuri_block_q6_k *b, int q[NURI_QK_K]) {
    for (int e = 0; e < NURI_QK_K; e++) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t lo_byte = b->ql[64 * h + 32 * (k % 2) + l];
        const int low = k < 2 ? lo_byte & 0x0F : lo_byte >> 4;
        const int high = (b->qh[32 * h + l] >> (2 * k)) & 3;
        q[e] = (low | (high << 4)) - 32;
    }
}

/* IQ4_NL and IQ4_XS: in each run of 32, element j < 16 is the low nibble of
 * qs[j], element 16 + j the high one; the value is NURI_IQ4_VALUES[index]. */
static int iq4_index(const uint8_t *qs32, int j) {
    return j < 16 ? qs32[j] & 0x0F : qs32[j - 16] >> 4;
}

/* ---- Dequantization -------------------------------------------------------- */

void nuri_dequantize_q2_k(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q2_k b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        int q[NURI_QK_K];
        q2_k_levels(&b, q);
        const float d = half(b.d), dmin = half(b.dmin);
        float *y = dst + i * NURI_QK_K;
        for (int e = 0; e < NURI_QK_K; e++) {
            const int s = b.scales[e / 16];
            const float dl = d * (float)(s & 0x0F), ml = dmin * (float)(s >> 4);
            y[e] = dl * (float)q[e] - ml;
        }
    }
}

void nuri_dequantize_q3_k(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q3_k b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        int q[NURI_QK_K];
        q3_k_levels(&b, q);
        const float d = half(b.d);
        float *y = dst + i * NURI_QK_K;
        for (int e = 0; e < NURI_QK_K; e++) {
            const float dl = d * (float)unpack_scale_q3_k(b.scales, e / 16);
            y[e] = dl * (float)q[e];
        }
    }
}

void nuri_dequantize_q4_k(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q4_k b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        const float d = half(b.d), dmin = half(b.dmin);
        float *y = dst + i * NURI_QK_K;
        for (int e = 0; e < NURI_QK_K; e++) {
            int sc, m;
            unpack_scales_k4(b.scales, e / 32, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            y[e] = dl * (float)q4_k_level(b.qs, e) - ml;
        }
    }
}

void nuri_dequantize_q5_k(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q5_k b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        int q[NURI_QK_K];
        q5_k_levels(&b, q);
        const float d = half(b.d), dmin = half(b.dmin);
        float *y = dst + i * NURI_QK_K;
        for (int e = 0; e < NURI_QK_K; e++) {
            int sc, m;
            unpack_scales_k4(b.scales, e / 32, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            y[e] = dl * (float)q[e] - ml;
        }
    }
}

void nuri_dequantize_q6_k(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q6_k b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        int q[NURI_QK_K];
        q6_k_levels(&b, q);
        const float d = half(b.d);
        float *y = dst + i * NURI_QK_K;
        for (int e = 0; e < NURI_QK_K; e++) y[e] = d * (float)b.scales[e / 16] * (float)q[e];
    }
}

void nuri_dequantize_q8_k(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q8_k b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        float *y = dst + i * NURI_QK_K;
        for (int e = 0; e < NURI_QK_K; e++) y[e] = b.d * (float)b.qs[e];
    }
}

void nuri_dequantize_iq4_nl(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_IQ4_NL; i++) {
        nuri_block_iq4_nl b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        const float d = half(b.d);
        float *y = dst + i * NURI_QK_IQ4_NL;
        for (int j = 0; j < NURI_QK_IQ4_NL; j++) y[j] = d * (float)NURI_IQ4_VALUES[iq4_index(b.qs, j)];
    }
}

void nuri_dequantize_iq4_xs(const void *src, float *dst, int64_t n) {
    const uint8_t *in = src;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_iq4_xs b;
        memcpy(&b, in + i * sizeof b, sizeof b);
        const float d = half(b.d);
        float *y = dst + i * NURI_QK_K;
        for (int ib = 0; ib < NURI_QK_K / 32; ib++) {
            const float dl = d * (float)unpack_scale_iq4_xs(&b, ib);
            for (int j = 0; j < 32; j++)
                y[32 * ib + j] = dl * (float)NURI_IQ4_VALUES[iq4_index(b.qs + 16 * ib, j)];
        }
    }
}

/* ---- Q8_K: the activation quantizer -------------------------------------------
 *
 * The element of largest magnitude becomes level -127 exactly (scale
 * -127/max), the others round to nearest, ties to even; d is the reciprocal
 * of that scale, as llama.cpp computes it, so nuri's activations equal its
 * activations for the same floats. An all-zero block has d = 0. */

void nuri_quantize_q8_k(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float *x = src + i * NURI_QK_K;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < NURI_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        nuri_block_q8_k b;
        memset(&b, 0, sizeof b);
        if (amax != 0.0f) {
            const float iscale = -127.0f / max;
            for (int j = 0; j < NURI_QK_K; j++) b.qs[j] = (int8_t)round_even_clamp(iscale * x[j], -127, 127);
            for (int g = 0; g < NURI_QK_K / 16; g++) {
                int sum = 0;
                for (int j = 0; j < 16; j++) sum += b.qs[16 * g + j];
                b.bsums[g] = (int16_t)sum;
            }
            b.d = 1.0f / iscale;
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

/* ---- Dot products against Q8_K (Q8_0 for IQ4_NL) ------------------------------
 *
 * Per super-block: the integer sums exactly (they fit in 32 bits for any
 * int8 activations), then p = (float)isum * (d * dy) [- (float)msum *
 * (dmin * dy)], sum += p. */

static float k_term(int isum, float d, float dy) { return (float)isum * (d * dy); }

void nuri_vec_dot_q2_k_q8_k(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q2_k bx;
        nuri_block_q8_k by;
        memcpy(&bx, xb + i * sizeof bx, sizeof bx);
        memcpy(&by, yb + i * sizeof by, sizeof by);
        int q[NURI_QK_K];
        q2_k_levels(&bx, q);
        int isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += q[16 * g + j] * by.qs[16 * g + j];
            isum += (bx.scales[g] & 0x0F) * s;
            msum += (bx.scales[g] >> 4) * by.bsums[g];
        }
        sum += k_term(isum, half(bx.d), by.d) - k_term(msum, half(bx.dmin), by.d);
    }
    *result = sum;
}

void nuri_vec_dot_q3_k_q8_k(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q3_k bx;
        nuri_block_q8_k by;
        memcpy(&bx, xb + i * sizeof bx, sizeof bx);
        memcpy(&by, yb + i * sizeof by, sizeof by);
        int q[NURI_QK_K];
        q3_k_levels(&bx, q);
        int isum = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += q[16 * g + j] * by.qs[16 * g + j];
            isum += unpack_scale_q3_k(bx.scales, g) * s;
        }
        sum += k_term(isum, half(bx.d), by.d);
    }
    *result = sum;
}

/* One Q4_K or Q5_K super-block (levels q, 6-bit scales and minimums)
 * against one Q8_K block. */
static float k4_block_dot(const int q[NURI_QK_K], const uint8_t scales[12], uint16_t d, uint16_t dmin,
                          const nuri_block_q8_k *by) {
    int isum = 0, msum = 0;
    for (int sb = 0; sb < 8; sb++) {
        int sc, m, s = 0;
        unpack_scales_k4(scales, sb, &sc, &m);
        for (int j = 0; j < 32; j++) s += q[32 * sb + j] * by->qs[32 * sb + j];
        isum += sc * s;
        msum += m * (by->bsums[2 * sb] + by->bsums[2 * sb + 1]);
    }
    return k_term(isum, half(d), by->d) - k_term(msum, half(dmin), by->d);
}

void nuri_vec_dot_q4_k_q8_k(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q4_k bx;
        nuri_block_q8_k by;
        memcpy(&bx, xb + i * sizeof bx, sizeof bx);
        memcpy(&by, yb + i * sizeof by, sizeof by);
        int q[NURI_QK_K];
        for (int e = 0; e < NURI_QK_K; e++) q[e] = q4_k_level(bx.qs, e);
        sum += k4_block_dot(q, bx.scales, bx.d, bx.dmin, &by);
    }
    *result = sum;
}

void nuri_vec_dot_q5_k_q8_k(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q5_k bx;
        nuri_block_q8_k by;
        memcpy(&bx, xb + i * sizeof bx, sizeof bx);
        memcpy(&by, yb + i * sizeof by, sizeof by);
        int q[NURI_QK_K];
        q5_k_levels(&bx, q);
        sum += k4_block_dot(q, bx.scales, bx.d, bx.dmin, &by);
    }
    *result = sum;
}

void nuri_vec_dot_q6_k_q8_k(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_q6_k bx;
        nuri_block_q8_k by;
        memcpy(&bx, xb + i * sizeof bx, sizeof bx);
        memcpy(&by, yb + i * sizeof by, sizeof by);
        int q[NURI_QK_K];
        q6_k_levels(&bx, q);
        int isum = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += q[16 * g + j] * by.qs[16 * g + j];
            isum += bx.scales[g] * s;
        }
        sum += k_term(isum, half(bx.d), by.d);
    }
    *result = sum;
}

void nuri_vec_dot_iq4_xs_q8_k(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        nuri_block_iq4_xs bx;
        nuri_block_q8_k by;
        memcpy(&bx, xb + i * sizeof bx, sizeof bx);
        memcpy(&by, yb + i * sizeof by, sizeof by);
        int isum = 0;
        for (int ib = 0; ib < 8; ib++) {
            int s = 0;
            for (int j = 0; j < 32; j++)
                s += NURI_IQ4_VALUES[iq4_index(bx.qs + 16 * ib, j)] * by.qs[32 * ib + j];
            isum += unpack_scale_iq4_xs(&bx, ib) * s;
        }
        sum += k_term(isum, half(bx.d), by.d);
    }
    *result = sum;
}

/* As the other formats against Q8_0: (float)isum * (dx * dy) per block. */
void nuri_vec_dot_iq4_nl_q8_0(int64_t n, float *result, const void *x, const void *y) {
    const uint8_t *xb = x, *yb = y;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NURI_QK_IQ4_NL; i++) {
        nuri_block_iq4_nl bx;
        nuri_block_q8_0 by;
        memcpy(&bx, xb + i * sizeof bx, sizeof bx);
        memcpy(&by, yb + i * sizeof by, sizeof by);
        int isum = 0;
        for (int j = 0; j < NURI_QK_IQ4_NL; j++) isum += NURI_IQ4_VALUES[iq4_index(bx.qs, j)] * by.qs[j];
        sum += (float)isum * (half(bx.d) * half(by.d));
    }
    *result = sum;
}

/* ---- Quantizers: the search ------------------------------------------------------
 *
 * Levels are indices into a sorted set of integer values: 0..nmax for the
 * formats with a minimum, -4..3 (Q3_K), -32..31 (Q6_K) or the IQ4 table for
 * the symmetric ones. Errors are plain sums of squares. */

typedef struct {
    const int8_t *table; /* the values, increasing; NULL: the integers lo..lo+count-1 */
    const float *mids;   /* with a table: the count-1 midpoints between neighbours */
    int lo, count;
} level_set;

static inline __attribute__((always_inline)) float level_value(const level_set *ls, int index) {
    return ls->table ? (float)ls->table[index] : (float)(ls->lo + index);
}

/* The index of the level nearest to v (v in level units; the lower one on
 * a tie). Tables have 16 levels. */
static inline __attribute__((always_inline)) int nearest_level(const level_set *ls, float v) {
    if (!ls->table) return round_clamp(v, ls->lo, ls->lo + ls->count - 1) - ls->lo;
    /* Sixteen levels: a branch-free binary search over the midpoints. */
    int index = 0;
    index += (v > ls->mids[index + 7]) ? 8 : 0;
    index += (v > ls->mids[index + 3]) ? 4 : 0;
    index += (v > ls->mids[index + 1]) ? 2 : 0;
    index += (v > ls->mids[index]) ? 1 : 0;
    return index;
}

/* Sub-blocks hold at most 32 levels. */
static void copy_levels(uint8_t *dst, const uint8_t *src, int n) {
    for (int i = 0; i < n && i < 32; i++) dst[i] = src[i];
}

/* The search's effort (measured on a real-shaped tensor: more steps or
 * rounds change its error by less than 0.1%). SWEEP_STEPS: candidate level
 * steps on each side of the min/max fit, a 1/SWEEP_STEPS of a level apart.
 * REFINE_ROUNDS: rounds of super-block refinement. */
#define SWEEP_STEPS 5
#define REFINE_ROUNDS 2

/* ---- Formats with a minimum: x ~ s * q - m, s >= 0, m >= 0 --------------------- */

/* The least-squares (s, m) for given levels q in 0..: minimises
 * sum (s*q - m - x)^2 with m >= 0 (the formats store the minimum's
 * magnitude) and s >= 0. Returns the error. */
static inline __attribute__((always_inline)) float solve_affine(const float *x, const uint8_t *q, int n, float *s_out, float *m_out) {
    double sq = 0, sqq = 0, sx = 0, sqx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        sq += q[i];
        sqq += (double)q[i] * q[i];
        sx += x[i];
        sqx += (double)q[i] * x[i];
        sxx += (double)x[i] * x[i];
    }
    const double det = n * sqq - sq * sq;
    double s = 0, off = 0; /* x ~ s*q + off, off = -m */
    if (det > 0) {
        s = (n * sqx - sq * sx) / det;
        off = (sqq * sx - sq * sqx) / det;
    }
    if (det <= 0 || off > 0 || s < 0) {
        /* Constrained: off = 0 (or no spread in q at all). */
        off = 0;
        s = sqq > 0 ? sqx / sqq : 0;
        if (s < 0) {
            s = 0;
            off = sx / n < 0 ? sx / n : 0;
        }
    }
    *s_out = (float)s;
    *m_out = (float)-off;
    /* sum (s*q + off - x)^2, expanded. */
    const double err = sxx + s * s * sqq + n * off * off - 2 * s * sqx - 2 * off * sx + 2 * s * off * sq;
    return err > 0 ? (float)err : 0.0f;
}

/* Fits one sub-block: levels 0..nmax into q, scale and minimum out. Sweeps
 * the level step over the range [min(x, 0), max(x)], solving each candidate
 * exactly, then re-rounds with the best fit until it stops improving. */
static inline __attribute__((always_inline)) void fit_affine(const float *x, int n, int nmax, uint8_t *q, float *s_out, float *m_out) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int i = 0; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (lo > 0) lo = 0;
    if (!(hi > lo) || !isfinite(hi - lo)) {
        for (int i = 0; i < n; i++) q[i] = 0;
        *s_out = 0;
        *m_out = isfinite(lo) ? -lo : 0;
        return;
    }
    uint8_t trial[32];
    float best = FLT_MAX;
    for (int step = -SWEEP_STEPS; step <= SWEEP_STEPS; step++) {
        const float iscale = ((float)nmax + (1.0f / SWEEP_STEPS) * (float)step) / (hi - lo);
        if (!(iscale > 0)) continue;
        for (int i = 0; i < n; i++) trial[i] = (uint8_t)round_clamp((x[i] - lo) * iscale, 0, nmax);
        float s, m;
        const float err = solve_affine(x, trial, n, &s, &m);
        if (err < best) {
            best = err;
            *s_out = s;
            *m_out = m;
            copy_levels(q, trial, n);
        }
    }
    for (int iter = 0; iter < 4 && *s_out > 0; iter++) {
        for (int i = 0; i < n; i++) trial[i] = (uint8_t)round_clamp((x[i] + *m_out) / *s_out, 0, nmax);
        float s, m;
        const float err = solve_affine(x, trial, n, &s, &m);
        if (!(err < best)) break;
        best = err;
        *s_out = s;
        *m_out = m;
        copy_levels(q, trial, n);
    }
}

/* A super-block of a format with a minimum: the values x = d*sc[j]*q - dmin*m[j]. */
typedef struct {
    float d, dmin;              /* half-float values */
    int sc[16], m[16];          /* integer sub-block scales and minimums */
    uint8_t q[NURI_QK_K];       /* levels */
    float err;
} affine_state;

/* Re-rounds the levels for the state's scales and recomputes its error. */
static inline __attribute__((always_inline)) void affine_requantize(const float *x, int n_sub, int sub_len, int nmax, affine_state *st) {
    st->err = 0;
    for (int j = 0; j < n_sub; j++) {
        const float s = st->d * (float)st->sc[j], m = st->dmin * (float)st->m[j];
        const float inv = s > 0 ? 1.0f / s : 0.0f;
        for (int i = j * sub_len; i < (j + 1) * sub_len; i++) {
            st->q[i] = (uint8_t)round_clamp((x[i] + m) * inv, 0, nmax);
            const float e = s * (float)st->q[i] - m - x[i];
            st->err += e * e;
        }
    }
}

/* Rounds a non-negative real to the integer grid [0, hi] of step unit. */
static int grid(float v, float unit, int hi) { return unit > 0 ? round_clamp(v / unit, 0, hi) : 0; }

/* Quantizes one super-block of a format with a minimum (levels 0..nmax,
 * n_sub sub-blocks, integer scales and minimums in 0..smax). */
static inline __attribute__((always_inline)) void quantize_affine_superblock(const float *x, int n_sub, int nmax, int smax, affine_state *best) {
    const int sub_len = NURI_QK_K / n_sub;
    float s[16], m[16], max_s = 0, max_m = 0;
    affine_state st;
    for (int j = 0; j < n_sub; j++) {
        fit_affine(x + j * sub_len, sub_len, nmax, st.q + j * sub_len, &s[j], &m[j]);
        if (s[j] > max_s) max_s = s[j];
        if (m[j] > max_m) max_m = m[j];
    }
    st.d = to_half_value(max_s / (float)smax);
    st.dmin = to_half_value(max_m / (float)smax);
    if (!isfinite(st.d)) st.d = 0;
    if (!isfinite(st.dmin)) st.dmin = 0;
    for (int j = 0; j < n_sub; j++) {
        st.sc[j] = grid(s[j], st.d, smax);
        st.m[j] = grid(m[j], st.dmin, smax);
    }
    affine_requantize(x, n_sub, sub_len, nmax, &st);
    *best = st;

    for (int iter = 0; iter < REFINE_ROUNDS; iter++) {
        /* The super-block scales by least squares over all 256 weights:
         * x ~ d * (sc*q) - dmin * m. */
        double aa = 0, ab = 0, bb = 0, ax = 0, bx = 0;
        for (int i = 0; i < NURI_QK_K; i++) {
            const double a = (double)st.sc[i / sub_len] * st.q[i], b = -(double)st.m[i / sub_len];
            aa += a * a, ab += a * b, bb += b * b, ax += a * x[i], bx += b * x[i];
        }
        const double det = aa * bb - ab * ab;
        if (det > 0) {
            st.d = to_half_value((float)((ax * bb - bx * ab) / det));
            st.dmin = to_half_value((float)((aa * bx - ab * ax) / det));
        } else if (aa > 0) {
            st.d = to_half_value((float)(ax / aa));
        }
        if (!isfinite(st.d) || st.d < 0) st.d = best->d;
        if (!isfinite(st.dmin) || st.dmin < 0) st.dmin = best->dmin;
        affine_requantize(x, n_sub, sub_len, nmax, &st);
        if (st.err < best->err) *best = st;

        /* Each sub-block's integer scale and minimum for these d, dmin and
         * levels: the real least-squares pair, then the best of its four
         * integer neighbours. */
        for (int j = 0; j < n_sub; j++) {
            const float *xs = x + j * sub_len;
            const uint8_t *qs = st.q + j * sub_len;
            float sr, mr;
            solve_affine(xs, qs, sub_len, &sr, &mr);
            float best_e = FLT_MAX;
            const int s0 = grid(sr, st.d, smax), m0 = grid(mr, st.dmin, smax);
            for (int ds = -1; ds <= 1; ds++) {
                for (int dm = -1; dm <= 1; dm++) {
                    const int sc = s0 + ds, mm = m0 + dm;
                    if (sc < 0 || sc > smax || mm < 0 || mm > smax) continue;
                    const float fs = st.d * (float)sc, fm = st.dmin * (float)mm;
                    const float inv = fs > 0 ? 1.0f / fs : 0.0f;
                    float e = 0;
                    for (int i = 0; i < sub_len; i++) {
                        const int qi = round_clamp((xs[i] + fm) * inv, 0, nmax);
                        const float r = fs * (float)qi - fm - xs[i];
                        e += r * r;
                    }
                    if (e < best_e) {
                        best_e = e;
                        st.sc[j] = sc;
                        st.m[j] = mm;
                    }
                }
            }
        }
        affine_requantize(x, n_sub, sub_len, nmax, &st);
        if (st.err < best->err) *best = st;
    }
}

/* ---- Symmetric formats: x ~ s * value(q) ------------------------------------------ */

/* The least-squares scale for given levels; returns the error. */
static inline __attribute__((always_inline)) float solve_scale(const float *x, const uint8_t *q, int n, const level_set *ls, float *s_out) {
    double vv = 0, vx = 0, xx = 0;
    for (int i = 0; i < n; i++) {
        const double v = level_value(ls, q[i]);
        vv += v * v;
        vx += v * x[i];
        xx += (double)x[i] * x[i];
    }
    *s_out = vv > 0 ? (float)(vx / vv) : 0.0f;
    const double err = vv > 0 ? xx - vx * vx / vv : xx;
    return err > 0 ? (float)err : 0.0f;
}

/* Rounds x * iscale to levels (into q) and returns the error of the
 * least-squares scale for them (into *s_out); xx is sum(x^2). The sweeps'
 * inner loop, in one pass. */
static inline __attribute__((always_inline)) float try_scale(const float *x, int n, const level_set *ls,
                                                             float iscale, double xx, uint8_t *q, float *s_out) {
    float vv = 0; /* sums of squared integers: exact */
    double vx = 0;
    for (int i = 0; i < n; i++) {
        const int k = nearest_level(ls, x[i] * iscale);
        const float v = level_value(ls, k);
        q[i] = (uint8_t)k;
        vv += v * v;
        vx += (double)v * x[i];
    }
    *s_out = vv > 0 ? (float)(vx / vv) : 0.0f;
    const double err = vv > 0 ? xx - vx * vx / vv : xx;
    return err > 0 ? (float)err : 0.0f;
}

/* Fits one sub-block: sweeps scales that put the largest-magnitude element
 * near the lowest level (the larger side of an asymmetric set) and near the
 * highest, solving each candidate exactly, then re-rounds with the best. */
static inline __attribute__((always_inline)) float fit_symmetric(const float *x, int n, const level_set *ls, uint8_t *q, float *s_out) {
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            vmax = x[i];
        }
    }
    const uint8_t zero = (uint8_t)nearest_level(ls, 0.0f);
    if (!(amax > 0) || !isfinite(amax)) {
        for (int i = 0; i < n; i++) q[i] = zero;
        *s_out = 0;
        float err = 0;
        for (int i = 0; i < n; i++) err += isfinite(x[i]) ? x[i] * x[i] : 0;
        return err;
    }
    const float lowest = level_value(ls, 0), highest = level_value(ls, ls->count - 1);
    /* Candidate targets for vmax, in level units: around the lowest level
     * and around the highest, in steps of a tenth of the level spacing
     * near the ends of the set. */
    const float spacing_lo = level_value(ls, 1) - lowest;
    const float spacing_hi = highest - level_value(ls, ls->count - 2);
    double xx = 0;
    for (int i = 0; i < n; i++) xx += (double)x[i] * x[i];
    uint8_t trial[32];
    float best = FLT_MAX;
    *s_out = 0;
    for (int i = 0; i < n; i++) q[i] = zero;
    for (int side = 0; side < 2; side++) {
        const float target = side == 0 ? lowest : highest;
        const float spacing = side == 0 ? spacing_lo : spacing_hi;
        for (int step = -6; step <= 10; step++) {
            /* Toward the inside of the range for positive steps. */
            const float t = target + (side == 0 ? 1.0f : -1.0f) * 0.1f * (float)step * spacing;
            float s;
            const float err = try_scale(x, n, ls, t / vmax, xx, trial, &s);
            if (err < best) {
                best = err;
                *s_out = s;
                copy_levels(q, trial, n);
            }
        }
    }
    for (int iter = 0; iter < 4 && *s_out != 0; iter++) {
        float s;
        const float err = try_scale(x, n, ls, 1.0f / *s_out, xx, trial, &s);
        if (!(err < best)) break;
        best = err;
        *s_out = s;
        copy_levels(q, trial, n);
    }
    return best;
}

/* A super-block of a symmetric format: x = d * sc[j] * value(q). */
typedef struct {
    float d;
    int sc[16];
    uint8_t q[NURI_QK_K];
    float err;
} sym_state;

static inline __attribute__((always_inline)) void sym_requantize(const float *x, int n_sub, const level_set *ls, sym_state *st) {
    const int sub_len = NURI_QK_K / n_sub;
    const uint8_t zero = (uint8_t)nearest_level(ls, 0.0f);
    st->err = 0;
    for (int j = 0; j < n_sub; j++) {
        const float s = st->d * (float)st->sc[j];
        const float inv = s != 0 ? 1.0f / s : 0.0f;
        for (int i = j * sub_len; i < (j + 1) * sub_len; i++) {
            st->q[i] = s != 0 ? (uint8_t)nearest_level(ls, x[i] * inv) : zero;
            const float e = s * level_value(ls, st->q[i]) - x[i];
            st->err += e * e;
        }
    }
}

/* The error of one sub-block at integer scale sc (levels re-rounded). */
static inline __attribute__((always_inline)) float sym_sub_error(const float *xs, int sub_len, const level_set *ls, float d, int sc) {
    const float s = d * (float)sc;
    const float inv = s != 0 ? 1.0f / s : 0.0f;
    float e = 0;
    for (int i = 0; i < sub_len; i++) {
        const float v = s != 0 ? s * level_value(ls, nearest_level(ls, xs[i] * inv)) : 0.0f;
        e += (v - xs[i]) * (v - xs[i]);
    }
    return e;
}

/* Quantizes one super-block of a symmetric format: n_sub sub-blocks,
 * integer scales in [sc_lo, sc_hi] (sc_lo < 0 < sc_hi, |sc_lo| >= sc_hi). */
static inline __attribute__((always_inline)) void quantize_sym_superblock(const float *x, int n_sub, const level_set *ls, int sc_lo, int sc_hi,
                                    sym_state *best) {
    const int sub_len = NURI_QK_K / n_sub;
    float s[16], amax = 0, vmax = 0;
    sym_state st;
    for (int j = 0; j < n_sub; j++) {
        fit_symmetric(x + j * sub_len, sub_len, ls, st.q + j * sub_len, &s[j]);
        if (fabsf(s[j]) > amax) {
            amax = fabsf(s[j]);
            vmax = s[j];
        }
    }
    /* The largest scale lands on the longer (negative) end of the grid. */
    st.d = to_half_value(vmax / (float)sc_lo);
    if (!isfinite(st.d)) st.d = 0;
    for (int j = 0; j < n_sub; j++) st.sc[j] = st.d != 0 ? round_clamp(s[j] / st.d, sc_lo, sc_hi) : 0;
    sym_requantize(x, n_sub, ls, &st);
    *best = st;

    for (int iter = 0; iter < REFINE_ROUNDS; iter++) {
        /* d by least squares over the super-block: x ~ d * (sc * value(q)). */
        double aa = 0, ax = 0;
        for (int i = 0; i < NURI_QK_K; i++) {
            const double a = (double)st.sc[i / sub_len] * level_value(ls, st.q[i]);
            aa += a * a;
            ax += a * x[i];
        }
        if (aa > 0) st.d = to_half_value((float)(ax / aa));
        if (!isfinite(st.d)) st.d = best->d;
        sym_requantize(x, n_sub, ls, &st);
        if (st.err < best->err) *best = st;

        /* Each sub-block's integer scale: its least-squares value for the
         * current levels, then the best of the neighbouring integers. */
        for (int j = 0; j < n_sub && st.d != 0; j++) {
            float sr;
            solve_scale(x + j * sub_len, st.q + j * sub_len, sub_len, ls, &sr);
            const int c = round_clamp(sr / st.d, sc_lo, sc_hi);
            float best_e = FLT_MAX;
            for (int k = c - 1; k <= c + 1; k++) {
                if (k < sc_lo || k > sc_hi) continue;
                const float e = sym_sub_error(x + j * sub_len, sub_len, ls, st.d, k);
                if (e < best_e) {
                    best_e = e;
                    st.sc[j] = k;
                }
            }
        }
        sym_requantize(x, n_sub, ls, &st);
        if (st.err < best->err) *best = st;
    }
}

/* A super-block's floats with non-finite values replaced by 0, so that the
 * search stays finite (the result for such rows is only defined, not
 * meaningful). */
static const float *finite_copy(const float *x, float *tmp) {
    bool finite = true;
    for (int i = 0; i < NURI_QK_K; i++) finite &= isfinite(x[i]) != 0;
    if (finite) return x;
    for (int i = 0; i < NURI_QK_K; i++) tmp[i] = isfinite(x[i]) ? x[i] : 0.0f;
    return tmp;
}

/* ---- Quantizers: the formats ----------------------------------------------------- */

void nuri_quantize_q2_k(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float tmp[NURI_QK_K];
        const float *x = finite_copy(src + i * NURI_QK_K, tmp);
        affine_state st;
        quantize_affine_superblock(x, 16, 3, 15, &st);
        nuri_block_q2_k b;
        memset(&b, 0, sizeof b);
        b.d = nuri_fp32_to_fp16(st.d);
        b.dmin = nuri_fp32_to_fp16(st.dmin);
        for (int g = 0; g < 16; g++) b.scales[g] = (uint8_t)(st.sc[g] | (st.m[g] << 4));
        for (int e = 0; e < NURI_QK_K; e++) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            b.qs[32 * h + l] |= (uint8_t)(st.q[e] << (2 * k));
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

void nuri_quantize_q3_k(const float *src, void *dst, int64_t n) {
    static const level_set levels = {NULL, NULL, -4, 8};
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float tmp[NURI_QK_K];
        const float *x = finite_copy(src + i * NURI_QK_K, tmp);
        sym_state st;
        quantize_sym_superblock(x, 16, &levels, -32, 31, &st);
        nuri_block_q3_k b;
        memset(&b, 0, sizeof b);
        b.d = nuri_fp32_to_fp16(st.d);
        pack_scales_q3_k(st.sc, b.scales);
        for (int e = 0; e < NURI_QK_K; e++) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            b.qs[32 * h + l] |= (uint8_t)((st.q[e] & 3) << (2 * k));
            b.hmask[l] |= (uint8_t)((st.q[e] >> 2) << (4 * h + k));
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

void nuri_quantize_q4_k(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float tmp[NURI_QK_K];
        const float *x = finite_copy(src + i * NURI_QK_K, tmp);
        affine_state st;
        quantize_affine_superblock(x, 8, 15, 63, &st);
        nuri_block_q4_k b;
        memset(&b, 0, sizeof b);
        b.d = nuri_fp32_to_fp16(st.d);
        b.dmin = nuri_fp32_to_fp16(st.dmin);
        pack_scales_k4(st.sc, st.m, b.scales);
        for (int e = 0; e < NURI_QK_K; e++)
            b.qs[32 * (e / 64) + e % 32] |= (uint8_t)(st.q[e] << ((e % 64) < 32 ? 0 : 4));
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

void nuri_quantize_q5_k(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float tmp[NURI_QK_K];
        const float *x = finite_copy(src + i * NURI_QK_K, tmp);
        affine_state st;
        quantize_affine_superblock(x, 8, 31, 63, &st);
        nuri_block_q5_k b;
        memset(&b, 0, sizeof b);
        b.d = nuri_fp32_to_fp16(st.d);
        b.dmin = nuri_fp32_to_fp16(st.dmin);
        pack_scales_k4(st.sc, st.m, b.scales);
        for (int e = 0; e < NURI_QK_K; e++) {
            b.qs[32 * (e / 64) + e % 32] |= (uint8_t)((st.q[e] & 15) << ((e % 64) < 32 ? 0 : 4));
            b.qh[e % 32] |= (uint8_t)((st.q[e] >> 4) << (e / 32));
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

void nuri_quantize_q6_k(const float *src, void *dst, int64_t n) {
    static const level_set levels = {NULL, NULL, -32, 64};
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float tmp[NURI_QK_K];
        const float *x = finite_copy(src + i * NURI_QK_K, tmp);
        sym_state st;
        quantize_sym_superblock(x, 16, &levels, -128, 127, &st);
        nuri_block_q6_k b;
        memset(&b, 0, sizeof b);
        b.d = nuri_fp32_to_fp16(st.d);
        for (int g = 0; g < 16; g++) b.scales[g] = (int8_t)st.sc[g];
        for (int e = 0; e < NURI_QK_K; e++) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            b.ql[64 * h + 32 * (k % 2) + l] |= (uint8_t)((st.q[e] & 15) << (k < 2 ? 0 : 4));
            b.qh[32 * h + l] |= (uint8_t)((st.q[e] >> 4) << (2 * k));
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

static const float iq4_midpoints[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                        7.0f,     19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f};
static const level_set iq4_levels = {NURI_IQ4_VALUES, iq4_midpoints, 0, 16};

void nuri_quantize_iq4_xs(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        float tmp[NURI_QK_K];
        const float *x = finite_copy(src + i * NURI_QK_K, tmp);
        sym_state st;
        quantize_sym_superblock(x, 8, &iq4_levels, -32, 31, &st);
        nuri_block_iq4_xs b;
        memset(&b, 0, sizeof b);
        b.d = nuri_fp32_to_fp16(st.d);
        for (int ib = 0; ib < 8; ib++) {
            const int u = st.sc[ib] + 32;
            b.scales_l[ib / 2] |= (uint8_t)((u & 15) << (4 * (ib % 2)));
            b.scales_h |= (uint16_t)((u >> 4) << (2 * ib));
            for (int j = 0; j < 16; j++)
                b.qs[16 * ib + j] = (uint8_t)(st.q[32 * ib + j] | (st.q[32 * ib + 16 + j] << 4));
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

void nuri_quantize_iq4_nl(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_IQ4_NL; i++) {
        float x[NURI_QK_IQ4_NL];
        for (int j = 0; j < NURI_QK_IQ4_NL; j++) {
            const float v = src[i * NURI_QK_IQ4_NL + j];
            x[j] = isfinite(v) ? v : 0.0f;
        }
        uint8_t q[NURI_QK_IQ4_NL], q2[NURI_QK_IQ4_NL];
        float s;
        fit_symmetric(x, NURI_QK_IQ4_NL, &iq4_levels, q, &s);
        /* The scale is stored as a half: re-round the levels for the stored
         * value, refit once, and keep whichever is better. */
        float d = to_half_value(s);
        if (!isfinite(d)) d = 0;
        float best = FLT_MAX;
        float best_d = d;
        for (int iter = 0; iter < 2; iter++) {
            float err = 0;
            for (int j = 0; j < NURI_QK_IQ4_NL; j++) {
                q2[j] = d != 0 ? (uint8_t)nearest_level(&iq4_levels, x[j] / d) : 8;
                const float e = d * (float)NURI_IQ4_VALUES[q2[j]] - x[j];
                err += e * e;
            }
            if (err < best) {
                best = err;
                best_d = d;
                memcpy(q, q2, sizeof q);
            }
            float refit;
            solve_scale(x, q2, NURI_QK_IQ4_NL, &iq4_levels, &refit);
            d = to_half_value(refit);
            if (!isfinite(d)) break;
        }
        nuri_block_iq4_nl b;
        b.d = nuri_fp32_to_fp16(best_d);
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}
