/* kernels_arm_k.h — the K-quant kernels of the aarch64 levels (Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K and IQ4_XS rows against Q8_K activations), written once
 * and compiled by kernels_neon.c and kernels_dotprod.c with their -march
 * (the i8mm level keeps the dot-product ones).
 *
 * The including file first defines
 *
 *   static inline int32x4_t dot16(int8x16_t w, int8x16_t x);
 *
 * whose four lanes add up to the 16 products w[i]*x[i] (|w| <= 127, any x),
 * and includes kernels_arm_int8.h (for ALWAYS_INLINE and min_int).
 *
 * Every format is first unpacked, one super-block of one row at a time,
 * into the same shape: its 256 levels as signed bytes in element order
 * (offsets and tables applied: Q3_K q-4, Q6_K q-32, IQ4_XS the table
 * value), one integer scale and one integer minimum per group of 16 (a
 * scale of a sub-block of 32 serves both its groups), and the half scales
 * as floats. Then, per token, the exact integer sums
 *   isum = sum_g scale_g * (sum of the 16 products of group g)
 *   msum = sum_g min_g * bsums_g                 (formats with a minimum)
 * which equal the reference's (the same integers, added in another order
 * without overflow), and the reference's float steps in its order:
 *   t = (float)isum * (d * dy) [- (float)msum * (dmin * dy)], sum = sum + t,
 * super-block after super-block, so every result equals quant/quant_k.c's
 * bit for bit. The unpacked super-block is reused by every token of a
 * gemm call. */
#ifndef NURI_KERNELS_ARM_K_H
#define NURI_KERNELS_ARM_K_H

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "kernels/kernels_impl.h"

enum { KF_Q2_K, KF_Q3_K, KF_Q4_K, KF_Q5_K, KF_Q6_K, KF_IQ4_XS };

ALWAYS_INLINE size_t kf_bytes(const int kf) {
    switch (kf) {
    case KF_Q2_K: return sizeof(nuri_block_q2_k);
    case KF_Q3_K: return sizeof(nuri_block_q3_k);
    case KF_Q4_K: return sizeof(nuri_block_q4_k);
    case KF_Q5_K: return sizeof(nuri_block_q5_k);
    case KF_Q6_K: return sizeof(nuri_block_q6_k);
    default: return sizeof(nuri_block_iq4_xs);
    }
}

ALWAYS_INLINE int kf_with_min(const int kf) { return kf == KF_Q2_K || kf == KF_Q4_K || kf == KF_Q5_K; }

/* One super-block of one row, unpacked (see the top of the file). */
typedef struct {
    int8_t q[NURI_QK_K];
    int16_t sc[16], m[16];
    float d, dmin;
} ksuper;

/* Byte offsets in the Q8_K block: d (float), the 256 levels, 16 bsums. */
#define Q8K_QS 4
#define Q8K_BSUMS 260

ALWAYS_INLINE uint8x16_t shr_var(uint8x16_t v, int n) { return vshlq_u8(v, vdupq_n_s8((int8_t)-n)); }

ALWAYS_INLINE void store_levels(int8_t *dst, uint8x16_t v, int offset) {
    vst1q_s8(dst, vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8((int8_t)offset)));
}

/* Scales of a sub-block of 32 for both its groups of 16. */
static inline void set_pair(int16_t *a, int sb, int value) { a[2 * sb] = a[2 * sb + 1] = (int16_t)value; }

/* ---- Unpacking, one format each (layouts as stated in quant/quant_k.c) ---------------- */

/* Q2_K: element 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]; group g
 * has scale scales[g] & 15 and minimum scales[g] >> 4. */
ALWAYS_INLINE void unpack_q2_k(const uint8_t *p, ksuper *o) {
    const uint8_t *qs = p + offsetof(nuri_block_q2_k, qs);
    const uint8x16_t three = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t a = vld1q_u8(qs + 32 * h), b = vld1q_u8(qs + 32 * h + 16);
        for (int k = 0; k < 4; k++) {
            store_levels(o->q + 128 * h + 32 * k, vandq_u8(shr_var(a, 2 * k), three), 0);
            store_levels(o->q + 128 * h + 32 * k + 16, vandq_u8(shr_var(b, 2 * k), three), 0);
        }
    }
    const uint8x16_t s = vld1q_u8(p + offsetof(nuri_block_q2_k, scales));
    const uint8x16_t sc = vandq_u8(s, vdupq_n_u8(15)), m = vshrq_n_u8(s, 4);
    vst1q_s16(o->sc, vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(sc))));
    vst1q_s16(o->sc + 8, vreinterpretq_s16_u16(vmovl_high_u8(sc)));
    vst1q_s16(o->m, vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m))));
    vst1q_s16(o->m + 8, vreinterpretq_s16_u16(vmovl_high_u8(m)));
    o->d = nuri_fp16_to_fp32(nuri_load_u16(p + offsetof(nuri_block_q2_k, d)));
    o->dmin = nuri_fp16_to_fp32(nuri_load_u16(p + offsetof(nuri_block_q2_k, dmin)));
}

/* Q3_K: the low two bits as Q2_K, the third bit 4h + k of hmask[l], level
 * minus 4. Scale k (stored + 32): low four bits in the low (k < 8) or high
 * nibble of scales[k % 8], top two bits at 2*(k/4) of scales[8 + k % 4]. */
ALWAYS_INLINE void unpack_q3_k(const uint8_t *p, ksuper *o) {
    const uint8_t *qs = p + offsetof(nuri_block_q3_k, qs), *hm = p + offsetof(nuri_block_q3_k, hmask);
    const uint8x16_t three = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const uint8x16_t ha = vld1q_u8(hm), hb = vld1q_u8(hm + 16);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t a = vld1q_u8(qs + 32 * h), b = vld1q_u8(qs + 32 * h + 16);
        for (int k = 0; k < 4; k++) {
            const uint8x16_t la = vandq_u8(shr_var(a, 2 * k), three), lb = vandq_u8(shr_var(b, 2 * k), three);
            const uint8x16_t xa = vshlq_n_u8(vandq_u8(shr_var(ha, 4 * h + k), one), 2);
            const uint8x16_t xb = vshlq_n_u8(vandq_u8(shr_var(hb, 4 * h + k), one), 2);
            store_levels(o->q + 128 * h + 32 * k, vorrq_u8(la, xa), 4);
            store_levels(o->q + 128 * h + 32 * k + 16, vorrq_u8(lb, xb), 4);
        }
    }
    const uint8_t *s = p + offsetof(nuri_block_q3_k, scales);
    for (int k = 0; k < 16; k++) {
        const int low = k < 8 ? s[k] & 0x0F : s[k - 8] >> 4;
        const int high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
        o->sc[k] = (int16_t)((low | (high << 4)) - 32);
        o->m[k] = 0;
    }
    o->d = nuri_fp16_to_fp32(nuri_load_u16(p + offsetof(nuri_block_q3_k, d)));
    o->dmin = 0.0f;
}

/* Q4_K and Q5_K: eight 6-bit scales and minimums in 12 bytes (j < 4: low
 * six bits of bytes j and j+4; j >= 4: nibbles of byte j+4 and the top two
 * bits of bytes j-4 and j). */
ALWAYS_INLINE void unpack_scales_k4(const uint8_t *s, ksuper *o) {
    for (int j = 0; j < 8; j++) {
        int sc, m;
        if (j < 4) {
            sc = s[j] & 63;
            m = s[j + 4] & 63;
        } else {
            sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
        set_pair(o->sc, j, sc);
        set_pair(o->m, j, m);
    }
}

/* Q4_K: element 64c + l (l < 32) is the low nibble of qs[32c + l], element
 * 64c + 32 + l its high nibble. Q5_K adds 16 times bit e/32 of qh[e % 32]. */
ALWAYS_INLINE void unpack_q45_k(const uint8_t *p, ksuper *o, const int five) {
    const uint8_t *qs = p + (five ? offsetof(nuri_block_q5_k, qs) : offsetof(nuri_block_q4_k, qs));
    const uint8x16_t mask = vdupq_n_u8(0x0F), one = vdupq_n_u8(1);
    uint8x16_t ha = vdupq_n_u8(0), hb = vdupq_n_u8(0);
    if (five) {
        ha = vld1q_u8(p + offsetof(nuri_block_q5_k, qh));
        hb = vld1q_u8(p + offsetof(nuri_block_q5_k, qh) + 16);
    }
    for (int c = 0; c < 4; c++) {
        const uint8x16_t a = vld1q_u8(qs + 32 * c), b = vld1q_u8(qs + 32 * c + 16);
        uint8x16_t v[4] = {vandq_u8(a, mask), vandq_u8(b, mask), vshrq_n_u8(a, 4), vshrq_n_u8(b, 4)};
        if (five) {
            v[0] = vorrq_u8(v[0], vshlq_n_u8(vandq_u8(shr_var(ha, 2 * c), one), 4));
            v[1] = vorrq_u8(v[1], vshlq_n_u8(vandq_u8(shr_var(hb, 2 * c), one), 4));
            v[2] = vorrq_u8(v[2], vshlq_n_u8(vandq_u8(shr_var(ha, 2 * c + 1), one), 4));
            v[3] = vorrq_u8(v[3], vshlq_n_u8(vandq_u8(shr_var(hb, 2 * c + 1), one), 4));
        }
        for (int i = 0; i < 4; i++) store_levels(o->q + 64 * c + 16 * i, v[i], 0);
    }
    /* d, dmin and the scales sit at the same offsets in both formats. */
    unpack_scales_k4(p + offsetof(nuri_block_q4_k, scales), o);
    o->d = nuri_fp16_to_fp32(nuri_load_u16(p + offsetof(nuri_block_q4_k, d)));
    o->dmin = nuri_fp16_to_fp32(nuri_load_u16(p + offsetof(nuri_block_q4_k, dmin)));
}

/* Q6_K: element 128h + 32k + l: four low bits from ql[64h + 32(k%2) + l]
 * (low nibble for k < 2), two high bits 2k..2k+1 of qh[32h + l]; level
 * minus 32; group g's scale is the signed byte scales[g]. */
ALWAYS_INLINE void unpack_q6_k(const uint8_t *p, ksuper *o) {
    const uint8_t *ql = p + offsetof(nuri_block_q6_k, ql), *qh = p + offsetof(nuri_block_q6_k, qh);
    const uint8x16_t mask = vdupq_n_u8(0x0F), three = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++) {
        for (int half = 0; half < 2; half++) {
            const uint8x16_t hi = vld1q_u8(qh + 32 * h + 16 * half);
            for (int k = 0; k < 4; k++) {
                const uint8x16_t lo_bytes = vld1q_u8(ql + 64 * h + 32 * (k % 2) + 16 * half);
                const uint8x16_t low = k < 2 ? vandq_u8(lo_bytes, mask) : vshrq_n_u8(lo_bytes, 4);
                const uint8x16_t high = vshlq_n_u8(vandq_u8(shr_var(hi, 2 * k), three), 4);
                store_levels(o->q + 128 * h + 32 * k + 16 * half, vorrq_u8(low, high), 32);
            }
        }
    }
    const int8x16_t s = vld1q_s8((const int8_t *)(p + offsetof(nuri_block_q6_k, scales)));
    vst1q_s16(o->sc, vmovl_s8(vget_low_s8(s)));
    vst1q_s16(o->sc + 8, vmovl_high_s8(s));
    memset(o->m, 0, sizeof o->m);
    o->d = nuri_fp16_to_fp32(nuri_load_u16(p + offsetof(nuri_block_q6_k, d)));
    o->dmin = 0.0f;
}

/* IQ4_XS: sub-block ib's nibbles at qs[16ib..], as IQ4_NL's; its scale is
 * (low four bits from scales_l[ib/2], top two from scales_h) - 32. */
ALWAYS_INLINE void unpack_iq4_xs(const uint8_t *p, ksuper *o) {
    const uint8_t *qs = p + offsetof(nuri_block_iq4_xs, qs);
    const int8x16_t values = vld1q_s8(NURI_IQ4_VALUES);
    const uint8x16_t mask = vdupq_n_u8(0x0F);
    for (int ib = 0; ib < 8; ib++) {
        const uint8x16_t b = vld1q_u8(qs + 16 * ib);
        vst1q_s8(o->q + 32 * ib, vqtbl1q_s8(values, vandq_u8(b, mask)));
        vst1q_s8(o->q + 32 * ib + 16, vqtbl1q_s8(values, vshrq_n_u8(b, 4)));
    }
    const unsigned scales_h = nuri_load_u16(p + offsetof(nuri_block_iq4_xs, scales_h));
    const uint8_t *scales_l = p + offsetof(nuri_block_iq4_xs, scales_l);
    for (int ib = 0; ib < 8; ib++) {
        const int low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        const int high = (int)(scales_h >> (2 * ib)) & 3;
        set_pair(o->sc, ib, (low | (high << 4)) - 32);
    }
    memset(o->m, 0, sizeof o->m);
    o->d = nuri_fp16_to_fp32(nuri_load_u16(p + offsetof(nuri_block_iq4_xs, d)));
    o->dmin = 0.0f;
}

ALWAYS_INLINE void unpack_k(const uint8_t *p, const int kf, ksuper *o) {
    switch (kf) {
    case KF_Q2_K: unpack_q2_k(p, o); break;
    case KF_Q3_K: unpack_q3_k(p, o); break;
    case KF_Q4_K: unpack_q45_k(p, o, 0); break;
    case KF_Q5_K: unpack_q45_k(p, o, 1); break;
    case KF_Q6_K: unpack_q6_k(p, o); break;
    default: unpack_iq4_xs(p, o); break;
    }
}

/* ---- One super-block against one activation block ----------------------------------- */

/* The reference's term for the unpacked super-block o and the Q8_K block xb. */
ALWAYS_INLINE float k_term(const ksuper *o, const uint8_t *xb, const int with_min) {
    const uint8_t *xq = xb + Q8K_QS;
    int32x4_t acc = vdupq_n_s32(0);
#pragma GCC unroll 4
    for (int g4 = 0; g4 < 4; g4++) {
        int32x4_t p[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            p[i] = dot16(vld1q_s8(o->q + 64 * g4 + 16 * i), vreinterpretq_s8_u8(vld1q_u8(xq + 64 * g4 + 16 * i)));
        const int32x4_t s = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
        acc = vmlaq_s32(acc, s, vmovl_s16(vld1_s16(o->sc + 4 * g4)));
    }
    const int32_t isum = vaddvq_s32(acc);
    const float dy = nuri_load_f32(xb);
    float t = (float)isum * (o->d * dy);
    if (with_min) {
        const int16x8_t m0 = vld1q_s16(o->m), m1 = vld1q_s16(o->m + 8);
        const int16x8_t b0 = vreinterpretq_s16_u8(vld1q_u8(xb + Q8K_BSUMS));
        const int16x8_t b1 = vreinterpretq_s16_u8(vld1q_u8(xb + Q8K_BSUMS + 16));
        int32x4_t ms = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
        ms = vmlal_high_s16(ms, m0, b0);
        ms = vmlal_s16(ms, vget_low_s16(m1), vget_low_s16(b1));
        ms = vmlal_high_s16(ms, m1, b1);
        t = t - (float)vaddvq_s32(ms) * (o->dmin * dy);
    }
    return t;
}

/* ---- gemm and vec_dot ------------------------------------------------------------------- */

/* Rows outermost: each super-block of a row is unpacked once and used by
 * every token; y holds each (row, token) sum between super-blocks (a float
 * stored and reloaded unchanged), starting from 0 as the reference does. */
ALWAYS_INLINE void k_gemm(const int kf, int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,
                          const void *x, size_t x_row_bytes, int n_tok, float *y, size_t y_stride) {
    const int64_t nb = n_cols / NURI_QK_K;
    const size_t w_block = kf_bytes(kf), x_block = sizeof(nuri_block_q8_k);
    const int with_min = kf_with_min(kf);
    for (int t = 0; t < n_tok; t++) memset(y + (size_t)t * y_stride, 0, (size_t)n_rows * sizeof(float));
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * w_row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            ksuper o;
            unpack_k(row + (size_t)b * w_block, kf, &o);
            const uint8_t *xb = (const uint8_t *)x + (size_t)b * x_block;
            for (int t = 0; t < n_tok; t++) {
                float *out = y + (size_t)t * y_stride + r;
                *out = *out + k_term(&o, xb + (size_t)t * x_row_bytes, with_min);
            }
        }
    }
}

ALWAYS_INLINE void k_vec_dot(const int kf, int64_t n, float *result, const void *w, const void *x) {
    const int64_t nb = n / NURI_QK_K;
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        ksuper o;
        unpack_k((const uint8_t *)w + (size_t)b * kf_bytes(kf), kf, &o);
        sum = sum + k_term(&o, (const uint8_t *)x + (size_t)b * sizeof(nuri_block_q8_k), kf_with_min(kf));
    }
    *result = sum;
}

#define K_FORMAT(NAME, KF)                                                                        \
    static void k_gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,      \
                              const void *x, size_t x_row_bytes, int n_tok, float *y,             \
                              size_t y_stride) {                                                  \
        k_gemm(KF, n_cols, w, w_row_bytes, n_rows, x, x_row_bytes, n_tok, y, y_stride);           \
    }                                                                                             \
    static void k_vec_dot_##NAME(int64_t n, float *result, const void *w, const void *x) {        \
        k_vec_dot(KF, n, result, w, x);                                                           \
    }

K_FORMAT(q2_k, KF_Q2_K)
K_FORMAT(q3_k, KF_Q3_K)
K_FORMAT(q4_k, KF_Q4_K)
K_FORMAT(q5_k, KF_Q5_K)
K_FORMAT(q6_k, KF_Q6_K)
K_FORMAT(iq4_xs, KF_IQ4_XS)

/* Sets vec_dot and gemm of the six formats (quantize stays as it is). */
static void fill_k(nuri_kernel table[NURI_TYPE_COUNT]) {
    table[NURI_TYPE_Q2_K].vec_dot = k_vec_dot_q2_k;
    table[NURI_TYPE_Q2_K].gemm = k_gemm_q2_k;
    table[NURI_TYPE_Q3_K].vec_dot = k_vec_dot_q3_k;
    table[NURI_TYPE_Q3_K].gemm = k_gemm_q3_k;
    table[NURI_TYPE_Q4_K].vec_dot = k_vec_dot_q4_k;
    table[NURI_TYPE_Q4_K].gemm = k_gemm_q4_k;
    table[NURI_TYPE_Q5_K].vec_dot = k_vec_dot_q5_k;
    table[NURI_TYPE_Q5_K].gemm = k_gemm_q5_k;
    table[NURI_TYPE_Q6_K].vec_dot = k_vec_dot_q6_k;
    table[NURI_TYPE_Q6_K].gemm = k_gemm_q6_k;
    table[NURI_TYPE_IQ4_XS].vec_dot = k_vec_dot_iq4_xs;
    table[NURI_TYPE_IQ4_XS].gemm = k_gemm_iq4_xs;
}

#endif
