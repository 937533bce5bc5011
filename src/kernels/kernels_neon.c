/* kernels_neon.c — the aarch64 baseline level: Advanced SIMD (NEON), which
 * every Armv8-A core has, compiled without extra -march flags.
 *
 * Besides the integer formats' gemm and vec_dot (kernels_arm_int8.h for
 * blocks of 32, kernels_arm_k.h for the K-quants and IQ4_XS, with the
 * products below made of widening multiplies), this file holds what the
 * higher Arm levels keep using: the float formats (F32, F16, BF16) and the
 * activation quantizers (Q8_0, Q8_1, Q8_K).
 *
 * Only dispatch.c calls in here, after the hwcaps showed Advanced SIMD. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>

/* The 32 products of a block: SMULL into 16-bit lanes, then pairwise into
 * the 32-bit lanes (SADALP). With |w| <= 31 four products fit in 16 bits
 * (31 * 128 * 4 < 32768), so they are summed there first; Q8_0 weights
 * (up to 128 * 128 per product) are widened after every multiply. */
static inline __attribute__((always_inline)) int32x4_t dot32(int32x4_t acc, int8x16_t wl,
                                                             int8x16_t wh, int8x16_t xl,
                                                             int8x16_t xh, const int small) {
    if (small) {
        int16x8_t p = vmull_s8(vget_low_s8(wl), vget_low_s8(xl));
        p = vmlal_high_s8(p, wl, xl);
        p = vmlal_s8(p, vget_low_s8(wh), vget_low_s8(xh));
        p = vmlal_high_s8(p, wh, xh);
        return vpadalq_s16(acc, p);
    }
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(wl), vget_low_s8(xl)));
    acc = vpadalq_s16(acc, vmull_high_s8(wl, xl));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(wh), vget_low_s8(xh)));
    return vpadalq_s16(acc, vmull_high_s8(wh, xh));
}

#include "kernels/kernels_arm_int8.h"

/* The 16 products of a group: SMULL and SMLAL put two products in each
 * 16-bit lane, which fits for |w| <= 127 (2 * 127 * 128 < 32768), then
 * pairs of lanes are added into 32 bits. */
ALWAYS_INLINE int32x4_t dot16(int8x16_t w, int8x16_t x) {
    return vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x));
}

#include "kernels/kernels_arm_k.h"

/* ---- Float formats ---------------------------------------------------------------
 *
 * Each (row, token) pair keeps 16 partial sums in four vectors, lane i of
 * vector v summing the products of columns 16k + 4v + i with fused
 * multiply-adds; the vectors are then added in a fixed tree. A last partial
 * group of columns goes through zero-padded copies. Every tile shape does
 * exactly this per pair, so a result depends only on its row and token:
 * gemm equals vec_dot bit for bit and splits change nothing. The reference
 * sums in double, so results agree with it within float rounding. */

enum { FLOAT_F32, FLOAT_F16, FLOAT_BF16 };

ALWAYS_INLINE float32x4_t load_f32x4(const uint8_t *p) { return vreinterpretq_f32_u8(vld1q_u8(p)); }

/* 16 weights from column k of a row, as floats. */
ALWAYS_INLINE void load_weights16(const uint8_t *row, int64_t k, const int kind, float32x4_t w[4]) {
    if (kind == FLOAT_F32) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) w[i] = load_f32x4(row + 4 * k + 16 * i);
        return;
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        const uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8(row + 2 * k + 16 * i));
        if (kind == FLOAT_F16) {
            w[2 * i] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h)));
            w[2 * i + 1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(h));
        } else {
            w[2 * i] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
            w[2 * i + 1] = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
        }
    }
}

/* Columns k.. n-1 (fewer than 16) of a row as floats, zero-padded to 16. */
static void tail_weights(const uint8_t *row, int64_t k, int64_t n, int kind, float out[16]) {
    memset(out, 0, 16 * sizeof(float));
    for (int64_t i = k; i < n; i++) {
        if (kind == FLOAT_F32) out[i - k] = nuri_load_f32(row + 4 * i);
        else if (kind == FLOAT_F16) out[i - k] = nuri_fp16_to_fp32(nuri_load_u16(row + 2 * i));
        else out[i - k] = nuri_bf16_to_fp32(nuri_load_u16(row + 2 * i));
    }
}

#define MAX_FROWS 4
#define MAX_FTOK 2

/* y[t * y_stride + r] for a tile of ROWS rows and TOK tokens (ROWS * TOK <= 4). */
ALWAYS_INLINE void float_tile(int64_t n, const uint8_t *w, size_t w_row_bytes, const uint8_t *x,
                              size_t x_row_bytes, float *y, size_t y_stride, const int kind,
                              const int ROWS, const int TOK) {
    float32x4_t acc[MAX_FROWS][MAX_FTOK][4];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 2
        for (int t = 0; t < TOK; t++)
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) acc[r][t][i] = vdupq_n_f32(0.0f);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        float32x4_t xv[MAX_FTOK][4];
#pragma GCC unroll 2
        for (int t = 0; t < TOK; t++)
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) xv[t][i] = load_f32x4(x + (size_t)t * x_row_bytes + 4 * k + 16 * i);
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; r++) {
            float32x4_t wv[4];
            load_weights16(w + (size_t)r * w_row_bytes, k, kind, wv);
#pragma GCC unroll 2
            for (int t = 0; t < TOK; t++)
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) acc[r][t][i] = vfmaq_f32(acc[r][t][i], wv[i], xv[t][i]);
        }
    }
    if (k < n) {
        float xt[MAX_FTOK][16], wt[16];
        for (int t = 0; t < TOK; t++) tail_weights(x + (size_t)t * x_row_bytes, k, n, FLOAT_F32, xt[t]);
        for (int r = 0; r < ROWS; r++) {
            tail_weights(w + (size_t)r * w_row_bytes, k, n, kind, wt);
            for (int t = 0; t < TOK; t++)
                for (int i = 0; i < 4; i++)
                    acc[r][t][i] = vfmaq_f32(acc[r][t][i], vld1q_f32(wt + 4 * i), vld1q_f32(xt[t] + 4 * i));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 2
        for (int t = 0; t < TOK; t++)
            y[(size_t)t * y_stride + r] = vaddvq_f32(
                vaddq_f32(vaddq_f32(acc[r][t][0], acc[r][t][1]), vaddq_f32(acc[r][t][2], acc[r][t][3])));
}

typedef void (*float_tile_fn)(int64_t n, const uint8_t *w, size_t w_row_bytes, const uint8_t *x,
                              size_t x_row_bytes, float *y, size_t y_stride);

#define FTILE_FN(KIND, R, T)                                                                     \
    static void ftile_##KIND##_##R##_##T(int64_t n, const uint8_t *w, size_t w_row_bytes,        \
                                         const uint8_t *x, size_t x_row_bytes, float *y,         \
                                         size_t y_stride) {                                      \
        float_tile(n, w, w_row_bytes, x, x_row_bytes, y, y_stride, KIND, R, T);                  \
    }
/* One token: up to 4 rows share its activations; more tokens: 2 x 2. */
#define FTILE_KIND(KIND)                                                                         \
    FTILE_FN(KIND, 1, 1) FTILE_FN(KIND, 2, 1) FTILE_FN(KIND, 3, 1) FTILE_FN(KIND, 4, 1)          \
    FTILE_FN(KIND, 1, 2) FTILE_FN(KIND, 2, 2)
FTILE_KIND(FLOAT_F32)
FTILE_KIND(FLOAT_F16)
FTILE_KIND(FLOAT_BF16)

/* [kind][rows - 1][tokens - 1]; NULL where no tile has that shape. */
#define FTILE_TABLE(KIND)                                                                        \
    {{ftile_##KIND##_1_1, ftile_##KIND##_1_2}, {ftile_##KIND##_2_1, ftile_##KIND##_2_2},          \
     {ftile_##KIND##_3_1, NULL}, {ftile_##KIND##_4_1, NULL}}
static const float_tile_fn float_tiles[3][MAX_FROWS][MAX_FTOK] = {
    FTILE_TABLE(FLOAT_F32), FTILE_TABLE(FLOAT_F16), FTILE_TABLE(FLOAT_BF16)};

/* Tokens go in groups whose activations (at most about 256 KiB) stay in L2
 * while every row passes over them; the weights are read once per group. */
#define FLOAT_TOKEN_GROUP 64

static void float_gemm(int kind, int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,
                       const void *x, size_t x_row_bytes, int n_tok, float *y, size_t y_stride) {
    const int row_step = n_tok == 1 ? 4 : 2, tok_step = n_tok == 1 ? 1 : 2;
    int group = FLOAT_TOKEN_GROUP;
    while (group > 2 && (size_t)group * x_row_bytes > (256u << 10)) group /= 2;
    for (int g0 = 0; g0 < n_tok; g0 += group) {
        const int g1 = min_int(n_tok, g0 + group);
        for (int r0 = 0; r0 < n_rows; r0 += row_step) {
            const int rows = min_int(row_step, n_rows - r0);
            const uint8_t *wr = (const uint8_t *)w + (size_t)r0 * w_row_bytes;
            for (int t0 = g0; t0 < g1; t0 += tok_step) {
                const int tok = min_int(tok_step, g1 - t0);
                float_tiles[kind][rows - 1][tok - 1](n_cols, wr, w_row_bytes,
                                                     (const uint8_t *)x + (size_t)t0 * x_row_bytes,
                                                     x_row_bytes, y + (size_t)t0 * y_stride + r0, y_stride);
            }
        }
    }
}

#define FLOAT_TYPE(NAME, KIND)                                                                   \
    static void gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,       \
                            const void *x, size_t x_row_bytes, int n_tok, float *y,              \
                            size_t y_stride) {                                                   \
        float_gemm(KIND, n_cols, w, w_row_bytes, n_rows, x, x_row_bytes, n_tok, y, y_stride);    \
    }                                                                                            \
    static void vec_dot_##NAME(int64_t n, float *result, const void *w, const void *x) {         \
        ftile_##KIND##_1_1(n, w, 0, x, 0, result, 0);                                            \
    }

FLOAT_TYPE(f32, FLOAT_F32)
FLOAT_TYPE(f16, FLOAT_F16)
FLOAT_TYPE(bf16, FLOAT_BF16)

/* ---- Activation quantizers ---------------------------------------------------------
 *
 * The reference's steps in vector form: d = amax/127 (NaNs skipped: FMAXNM
 * returns the number when one operand is NaN, and the 0 it starts from
 * stays when all are NaN), id = 1/d (0 for an all-zero block), q = the
 * product x*id rounded half away from zero (FCVTAS, which also gives 0 for
 * NaN and saturates infinities), clamped to +-127. The half conversions
 * are IEEE round-to-nearest-even (FPCR's default mode), as
 * nuri_fp32_to_fp16 is. */

ALWAYS_INLINE uint16_t to_half(float f) {
    return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0);
}

/* Quantizes one block of 32 floats: the levels into qs, their sum into
 * *sum; returns d. */
ALWAYS_INLINE float quantize_block(const float *src, int8_t *qs, int *sum) {
    float32x4_t v[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) v[i] = load_f32x4((const uint8_t *)(src + 4 * i));
    float32x4_t m = vdupq_n_f32(0.0f);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) m = vmaxnmq_f32(vabsq_f32(v[i]), m);
    const float d = vmaxnmvq_f32(m) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float32x4_t idv = vdupq_n_f32(id);
    const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
    int32x4_t q[8], total = vdupq_n_s32(0);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        q[i] = vminq_s32(vmaxq_s32(vcvtaq_s32_f32(vmulq_f32(v[i], idv)), lo), hi);
        total = vaddq_s32(total, q[i]);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const int16x8_t a = vcombine_s16(vmovn_s32(q[4 * h]), vmovn_s32(q[4 * h + 1]));
        const int16x8_t b = vcombine_s16(vmovn_s32(q[4 * h + 2]), vmovn_s32(q[4 * h + 3]));
        vst1q_s8(qs + 16 * h, vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
    }
    *sum = vaddvq_s32(total);
    return d;
}

static void quantize_q8_0(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / 32; b++) {
        nuri_block_q8_0 blk;
        int sum;
        blk.d = to_half(quantize_block(src + 32 * b, blk.qs, &sum));
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

static void quantize_q8_1(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / 32; b++) {
        nuri_block_q8_1 blk;
        int sum;
        const float d = quantize_block(src + 32 * b, blk.qs, &sum);
        blk.d = to_half(d);
        blk.s = to_half((float)sum * d);
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

/* Q8_K, as the reference: the first element of largest magnitude, max,
 * sets iscale = -127/max (so it becomes -127 exactly); the levels are
 * iscale*x rounded to nearest, ties to even (FCVTNS; NaN gives 0),
 * clamped to +-127; bsums are the 16 group sums; d = 1/iscale. An all-zero
 * (or all-NaN) block is all zero. */
static void quantize_q8_k(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NURI_QK_K; b++) {
        const float *x = src + b * NURI_QK_K;
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int i = 0; i < NURI_QK_K; i += 4) m = vmaxnmq_f32(vabsq_f32(load_f32x4((const uint8_t *)(x + i))), m);
        const float amax = vmaxnmvq_f32(m);
        nuri_block_q8_k blk;
        memset(&blk, 0, sizeof blk);
        if (amax != 0.0f) {
            int first = 0;
            while (!(fabsf(x[first]) == amax)) first++;
            const float iscale = -127.0f / x[first];
            const float32x4_t iv = vdupq_n_f32(iscale);
            const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
            for (int g = 0; g < NURI_QK_K / 16; g++) {
                int32x4_t q[4];
                for (int i = 0; i < 4; i++) {
                    const float32x4_t v = vmulq_f32(iv, load_f32x4((const uint8_t *)(x + 16 * g + 4 * i)));
                    q[i] = vminq_s32(vmaxq_s32(vcvtnq_s32_f32(v), lo), hi);
                }
                const int16x8_t a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
                const int16x8_t c = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
                const int8x16_t levels = vcombine_s8(vmovn_s16(a), vmovn_s16(c));
                vst1q_s8(blk.qs + 16 * g, levels);
                blk.bsums[g] = vaddlvq_s8(levels);
            }
            blk.d = 1.0f / iscale;
        }
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

/* ---- Table -------------------------------------------------------------------------- */

void nuri_kernels_fill_neon(nuri_kernel table[NURI_TYPE_COUNT]) {
    fill_int8(table);
    fill_k(table);
    table[NURI_TYPE_Q4_0].quantize = quantize_q8_0;
    table[NURI_TYPE_Q4_1].quantize = quantize_q8_1;
    table[NURI_TYPE_Q5_0].quantize = quantize_q8_0;
    table[NURI_TYPE_Q5_1].quantize = quantize_q8_1;
    table[NURI_TYPE_Q8_0].quantize = quantize_q8_0;
    table[NURI_TYPE_IQ4_NL].quantize = quantize_q8_0;
    static const nuri_type q8_k_users[] = {NURI_TYPE_Q2_K, NURI_TYPE_Q3_K, NURI_TYPE_Q4_K,
                                           NURI_TYPE_Q5_K, NURI_TYPE_Q6_K, NURI_TYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof q8_k_users / sizeof q8_k_users[0]; i++)
        table[q8_k_users[i]].quantize = quantize_q8_k;
    table[NURI_TYPE_F32] = (nuri_kernel){vec_dot_f32, gemm_f32, NULL, NULL};
    table[NURI_TYPE_F16] = (nuri_kernel){vec_dot_f16, gemm_f16, NULL, NULL};
    table[NURI_TYPE_BF16] = (nuri_kernel){vec_dot_bf16, gemm_bf16, NULL, NULL};
}

#else
typedef int nuri_kernels_neon_not_built; /* keeps the translation unit non-empty */
#endif
