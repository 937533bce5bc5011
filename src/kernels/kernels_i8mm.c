/* kernels_i8mm.c — the aarch64 level with the int8 matrix multiply
 * (FEAT_I8MM: SMMLA, Armv8.6 and optional from Armv8.2), compiled with
 * -march=armv8.2-a+dotprod+i8mm.
 *
 * SMMLA multiplies a 2x8 matrix of signed bytes by the transpose of another
 * and adds the 2x2 result to four 32-bit lanes. With two weight rows in the
 * first operand and two tokens in the second, one instruction does 32 byte
 * products for four (row, token) pairs, twice the work of an SDOT; a block
 * of 32 columns takes four, one per group of eight columns. So prompt
 * batches (two tokens or more) run here in tiles of 8 rows x 4 tokens;
 * a single token (generation) would waste half of every SMMLA and keeps the
 * dot-product path (kernels_arm_int8.h with SDOT, as kernels_dotprod.c).
 *
 * Weights are unpacked into panels in SMMLA operand order (per row pair and
 * block: four vectors, row 0's eight bytes then row 1's) once per chunk of
 * blocks; the activations of a token pair are interleaved the same way as
 * they are read. The float part is the reference's, lane by lane (see
 * kernels_arm_int8.h), so results equal the scalar reference bit for bit.
 *
 * Only dispatch.c calls in here, after the hwcaps showed asimddp and i8mm. */
#if defined(__aarch64__)

#include <arm_neon.h>

static inline __attribute__((always_inline)) int32x4_t dot32(int32x4_t acc, int8x16_t wl,
                                                             int8x16_t wh, int8x16_t xl,
                                                             int8x16_t xh, const int small) {
    (void)small;
    return vdotq_s32(vdotq_s32(acc, wl, xl), wh, xh);
}

#include "kernels/kernels_arm_int8.h"

/* ---- Operands in SMMLA order ----------------------------------------------------- */

/* Lanes of an SMMLA result and of these scale vectors: (row 0, token 0),
 * (row 0, token 1), (row 1, token 0), (row 1, token 1). */
typedef struct {
    int8x16_t w[4];   /* group g: row 0's elements 8g..8g+7, then row 1's */
    float32x4_t d, m; /* d0 d0 d1 d1, m0 m0 m1 m1 */
} pair_block;

ALWAYS_INLINE int8x16_t zip_lo64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
ALWAYS_INLINE int8x16_t zip_hi64(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

/* Two blocks of 32 bytes (a, b; lo = elements 0-15, hi = 16-31) as the
 * four 2x8 operands of one block. */
ALWAYS_INLINE void interleave(int8x16_t al, int8x16_t ah, int8x16_t bl, int8x16_t bh, int8x16_t out[4]) {
    out[0] = zip_lo64(al, bl);
    out[1] = zip_hi64(al, bl);
    out[2] = zip_lo64(ah, bh);
    out[3] = zip_hi64(ah, bh);
}

ALWAYS_INLINE void unpack_pair(const uint8_t *b0, const uint8_t *b1, const int fmt, pair_block *o) {
    int8x16_t l0, h0, l1, h1;
    unpack_block(b0, fmt, &l0, &h0, 0);
    unpack_block(b1, fmt, &l1, &h1, 0);
    interleave(l0, h0, l1, h1, o->w);
    o->d = halves4(b0, b0, b1, b1);
    o->m = fmt_with_min(fmt) ? halves4(b0 + 2, b0 + 2, b1 + 2, b1 + 2) : vdupq_n_f32(0.0f);
}

/* Activation blocks of tokens a and b, interleaved, with their scales in
 * the lane order above. */
ALWAYS_INLINE void act_pair(const uint8_t *xa, const uint8_t *xb, const int with_min, int8x16_t x[4],
                            float32x4_t *dx, float32x4_t *sx) {
    const size_t qs = act_qs(with_min);
    interleave(vreinterpretq_s8_u8(vld1q_u8(xa + qs)), vreinterpretq_s8_u8(vld1q_u8(xa + qs + 16)),
               vreinterpretq_s8_u8(vld1q_u8(xb + qs)), vreinterpretq_s8_u8(vld1q_u8(xb + qs + 16)), x);
    *dx = halves4(xa, xb, xa, xb);
    *sx = with_min ? halves4(xa + 2, xb + 2, xa + 2, xb + 2) : vdupq_n_f32(0.0f);
}

/* The 2x2 tile at y (rows r.., tokens t.. of a tile with `rows` rows and
 * `toks` tokens), lanes outside it 0 / not written. */
ALWAYS_INLINE float32x4_t load_pair_tile(const float *y, size_t y_stride, int r, int t, int rows, int toks) {
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int lane = 0; lane < 4; lane++) {
        const int rr = r + (lane >> 1), tt = t + (lane & 1);
        if (rr < rows && tt < toks) v[lane] = y[(size_t)tt * y_stride + rr];
    }
    return vld1q_f32(v);
}

ALWAYS_INLINE void store_pair_tile(float *y, size_t y_stride, int r, int t, int rows, int toks, float32x4_t a) {
    float v[4];
    vst1q_f32(v, a);
    for (int lane = 0; lane < 4; lane++) {
        const int rr = r + (lane >> 1), tt = t + (lane & 1);
        if (rr < rows && tt < toks) y[(size_t)tt * y_stride + rr] = v[lane];
    }
}

/* ---- Gemm, two tokens or more ------------------------------------------------------
 *
 * Panels of MM_ROW_PAIRS row pairs x MM_CHUNK blocks (12 KiB); tiles of
 * all the panel's row pairs x TP token pairs. Rows past the matrix's last
 * row, and tokens past the last token, repeat the last one (computed and
 * dropped). Chunks continue each (row, token) sum from y, in block order. */

#define MM_ROW_PAIRS 4
#define MM_CHUNK 32

ALWAYS_INLINE void mm_tile(const pair_block *pk, int nblk, const uint8_t *const xt[4], float *y,
                           size_t y_stride, int rows, int toks, int first, const int fmt, const int TP) {
    const int with_min = fmt_with_min(fmt);
    const size_t x_block = act_bytes(with_min);
    float32x4_t acc[MM_ROW_PAIRS][2];
#pragma GCC unroll 4
    for (int rp = 0; rp < MM_ROW_PAIRS; rp++)
#pragma GCC unroll 2
        for (int tp = 0; tp < TP; tp++)
            acc[rp][tp] = first ? vdupq_n_f32(0.0f) : load_pair_tile(y, y_stride, 2 * rp, 2 * tp, rows, toks);
    for (int b = 0; b < nblk; b++) {
        int8x16_t xv[2][4];
        float32x4_t dx[2], sx[2];
#pragma GCC unroll 2
        for (int tp = 0; tp < TP; tp++)
            act_pair(xt[2 * tp] + (size_t)b * x_block, xt[2 * tp + 1] + (size_t)b * x_block, with_min,
                     xv[tp], &dx[tp], &sx[tp]);
#pragma GCC unroll 4
        for (int rp = 0; rp < MM_ROW_PAIRS; rp++) {
            const pair_block *pb = &pk[(size_t)b * MM_ROW_PAIRS + (size_t)rp];
#pragma GCC unroll 2
            for (int tp = 0; tp < TP; tp++) {
                int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), pb->w[0], xv[tp][0]);
                s = vmmlaq_s32(s, pb->w[1], xv[tp][1]);
                s = vmmlaq_s32(s, pb->w[2], xv[tp][2]);
                s = vmmlaq_s32(s, pb->w[3], xv[tp][3]);
                acc[rp][tp] = vaddq_f32(acc[rp][tp], block_term(s, pb->d, pb->m, dx[tp], sx[tp], with_min));
            }
        }
    }
#pragma GCC unroll 4
    for (int rp = 0; rp < MM_ROW_PAIRS; rp++)
#pragma GCC unroll 2
        for (int tp = 0; tp < TP; tp++) store_pair_tile(y, y_stride, 2 * rp, 2 * tp, rows, toks, acc[rp][tp]);
}

ALWAYS_INLINE void mm_gemm_panels(const int fmt, int64_t nb, const uint8_t *w, size_t w_row_bytes,
                                  int n_rows, const uint8_t *x, size_t x_row_bytes, int n_tok, float *y,
                                  size_t y_stride) {
    const size_t w_block = fmt_bytes(fmt), x_block = act_bytes(fmt_with_min(fmt));
    pair_block pk[MM_CHUNK * MM_ROW_PAIRS];
    for (int g0 = 0; g0 < n_tok; g0 += TOKEN_GROUP) {
        const int g1 = min_int(n_tok, g0 + TOKEN_GROUP);
        for (int r0 = 0; r0 < n_rows; r0 += 2 * MM_ROW_PAIRS) {
            const int rows = min_int(2 * MM_ROW_PAIRS, n_rows - r0);
            const uint8_t *row[2 * MM_ROW_PAIRS];
            for (int i = 0; i < 2 * MM_ROW_PAIRS; i++) row[i] = w + (size_t)(r0 + min_int(i, rows - 1)) * w_row_bytes;
            for (int64_t kc = 0; kc < nb; kc += MM_CHUNK) {
                const int nblk = (int)(nb - kc < MM_CHUNK ? nb - kc : MM_CHUNK);
                for (int b = 0; b < nblk; b++) {
                    const size_t at = (size_t)(kc + b) * w_block;
                    for (int rp = 0; rp < MM_ROW_PAIRS; rp++)
                        unpack_pair(row[2 * rp] + at, row[2 * rp + 1] + at, fmt, &pk[(size_t)b * MM_ROW_PAIRS + (size_t)rp]);
                }
                const uint8_t *xk = x + (size_t)kc * x_block;
                for (int t0 = g0; t0 < g1; t0 += 4) {
                    const int toks = min_int(4, g1 - t0);
                    const uint8_t *xt[4];
                    for (int j = 0; j < 4; j++) xt[j] = xk + (size_t)(t0 + min_int(j, toks - 1)) * x_row_bytes;
                    float *yt = y + (size_t)t0 * y_stride + r0;
                    if (toks > 2) mm_tile(pk, nblk, xt, yt, y_stride, rows, toks, kc == 0, fmt, 2);
                    else mm_tile(pk, nblk, xt, yt, y_stride, rows, toks, kc == 0, fmt, 1);
                }
            }
        }
    }
}

#define MM_FORMAT(NAME, FMT)                                                                     \
    static void mm_gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,    \
                               const void *x, size_t x_row_bytes, int n_tok, float *y,           \
                               size_t y_stride) {                                                \
        if (n_tok == 1 || n_cols < 32)                                                           \
            int8_gemm_##NAME(n_cols, w, w_row_bytes, n_rows, x, x_row_bytes, n_tok, y, y_stride); \
        else                                                                                     \
            mm_gemm_panels(FMT, n_cols / 32, w, w_row_bytes, n_rows, x, x_row_bytes, n_tok, y,   \
                           y_stride);                                                            \
    }

MM_FORMAT(q4_0, FMT_Q4_0)
MM_FORMAT(q4_1, FMT_Q4_1)
MM_FORMAT(q5_0, FMT_Q5_0)
MM_FORMAT(q5_1, FMT_Q5_1)
MM_FORMAT(q8_0, FMT_Q8_0)
MM_FORMAT(iq4_nl, FMT_IQ4_NL)

void nuri_kernels_fill_i8mm(nuri_kernel table[NURI_TYPE_COUNT]) {
    fill_int8(table);
    table[NURI_TYPE_Q4_0].gemm = mm_gemm_q4_0;
    table[NURI_TYPE_Q4_1].gemm = mm_gemm_q4_1;
    table[NURI_TYPE_Q5_0].gemm = mm_gemm_q5_0;
    table[NURI_TYPE_Q5_1].gemm = mm_gemm_q5_1;
    table[NURI_TYPE_Q8_0].gemm = mm_gemm_q8_0;
    table[NURI_TYPE_IQ4_NL].gemm = mm_gemm_iq4_nl;
}

#else
typedef int nuri_kernels_i8mm_not_built; /* keeps the translation unit non-empty */
#endif
