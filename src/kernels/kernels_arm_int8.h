/* kernels_arm_int8.h — the integer-format kernels of the aarch64 levels
 * for the formats with blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL
 * rows against Q8_0/Q8_1 activations), written once and compiled by each
 * level's file with that level's -march.
 *
 * Only kernels_neon.c, kernels_dotprod.c and kernels_i8mm.c include this,
 * after defining
 *
 *   static inline int32x4_t dot32(int32x4_t acc, int8x16_t wl, int8x16_t wh,
 *                                 int8x16_t xl, int8x16_t xh, int small);
 *
 * which adds the 32 products w[i]*x[i] of one block (lo: elements 0-15, hi:
 * 16-31) to the lanes of acc, split among the lanes however the level
 * likes: only the sum of the four lanes is used. `small` (a constant) says
 * every |w| <= 31, which lets plain NEON keep partial sums in 16 bits.
 * The file then gets a gemm and a vec_dot for each of the six formats and
 * fill_int8(), which puts them in a table.
 *
 * Arm's integer dot products (SMULL, SDOT, SMMLA) take signed bytes on both
 * sides, so every weight level goes in as a signed byte as it is (Q4_0 q-8,
 * Q5_0 q-16, Q8_0 w, IQ4_NL its table value; Q4_1 q and Q5_1 q, which fit)
 * and every block's integer sum is exact for any int8 activation, -128
 * included; no sign tricks as on x86.
 *
 * The float part repeats the reference's operations in its order (see
 * quant/quant.c): p = (float)isum * (dw*dx) [+ m*s], sum = sum + p, block
 * after block, each vector lane one (row, token) pair. Every result is
 * therefore the scalar reference's float bit for bit, whatever the path,
 * tile or split. That needs the compiler not to fuse those multiplies and
 * adds, nor the reference's: the Makefile passes -ffp-contract=off (GCC's
 * default with -std=c11 anyway; clang would fuse).
 *
 * Gemm paths: up to four tokens (generation) unpack each block of 4 rows
 * into registers and use it at once; more tokens unpack a panel of 4 rows
 * x CHUNK_BLOCKS blocks once and run every token over it, 4 at a time
 * (kernels_i8mm.c has its own panels for SMMLA). */
#ifndef NURI_KERNELS_ARM_INT8_H
#define NURI_KERNELS_ARM_INT8_H

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "kernels/kernels_impl.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- Formats and small helpers ---------------------------------------------- */

enum { FMT_Q4_0, FMT_Q4_1, FMT_Q5_0, FMT_Q5_1, FMT_Q8_0, FMT_IQ4_NL };

static inline int min_int(int a, int b) { return a < b ? a : b; }

ALWAYS_INLINE size_t fmt_bytes(const int fmt) {
    switch (fmt) {
    case FMT_Q4_0: return sizeof(nuri_block_q4_0);
    case FMT_Q4_1: return sizeof(nuri_block_q4_1);
    case FMT_Q5_0: return sizeof(nuri_block_q5_0);
    case FMT_Q5_1: return sizeof(nuri_block_q5_1);
    case FMT_IQ4_NL: return sizeof(nuri_block_iq4_nl);
    default: return sizeof(nuri_block_q8_0);
    }
}

/* Whether every weight level is within +-31 (see dot32). */
ALWAYS_INLINE int fmt_small(const int fmt) { return fmt != FMT_Q8_0 && fmt != FMT_IQ4_NL; }

/* Q4_1 and Q5_1 carry a minimum and take Q8_1 activations. */
ALWAYS_INLINE int fmt_with_min(const int fmt) { return fmt == FMT_Q4_1 || fmt == FMT_Q5_1; }
ALWAYS_INLINE size_t act_bytes(const int with_min) {
    return with_min ? sizeof(nuri_block_q8_1) : sizeof(nuri_block_q8_0);
}
ALWAYS_INLINE size_t act_qs(const int with_min) { return with_min ? 4 : 2; }

/* Four half floats (the 16 bits at each pointer) as floats, exactly. */
ALWAYS_INLINE float32x4_t halves4(const uint8_t *a, const uint8_t *b, const uint8_t *c,
                                  const uint8_t *d) {
    uint16x4_t h = vdup_n_u16(nuri_load_u16(a));
    h = vset_lane_u16(nuri_load_u16(b), h, 1);
    h = vset_lane_u16(nuri_load_u16(c), h, 2);
    h = vset_lane_u16(nuri_load_u16(d), h, 3);
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

/* The activation block's scale d (and s = d*sum for Q8_1) in every lane. */
ALWAYS_INLINE void act_scales(const uint8_t *xb, const int with_min, float32x4_t *dx,
                              float32x4_t *sx) {
    const float32x4_t ds = vcvt_f32_f16(vreinterpret_f16_u32(vdup_n_u32(nuri_load_u32(xb))));
    *dx = vdupq_laneq_f32(ds, 0);
    *sx = with_min ? vdupq_laneq_f32(ds, 1) : vdupq_n_f32(0.0f);
}

/* The reference's per-block term: (float)isum * (dw*dx) [+ m*s]. */
ALWAYS_INLINE float32x4_t block_term(int32x4_t isum, float32x4_t dw, float32x4_t mw,
                                     float32x4_t dx, float32x4_t sx, const int with_min) {
    float32x4_t p = vmulq_f32(vcvtq_f32_s32(isum), vmulq_f32(dw, dx));
    if (with_min) p = vaddq_f32(p, vmulq_f32(mw, sx));
    return p;
}

/* ---- Unpacking ---------------------------------------------------------------- */

/* The offset Q4_0 and Q5_0 subtract from their stored levels. */
ALWAYS_INLINE int fmt_offset(const int fmt) { return fmt == FMT_Q4_0 ? 8 : fmt == FMT_Q5_0 ? 16 : 0; }

/* The 32 weights of the block at p as signed bytes: lo holds elements
 * 0-15, hi 16-31, the order of the activation block's bytes. raw: the
 * levels as stored, without subtracting fmt_offset (the caller corrects
 * the block sums instead). */
ALWAYS_INLINE void unpack_block(const uint8_t *p, const int fmt, int8x16_t *lo, int8x16_t *hi,
                                const int raw) {
    if (fmt == FMT_Q8_0) {
        *lo = vreinterpretq_s8_u8(vld1q_u8(p + 2));
        *hi = vreinterpretq_s8_u8(vld1q_u8(p + 18));
        return;
    }
    const size_t qs_at = fmt == FMT_Q4_0 || fmt == FMT_IQ4_NL ? 2 : fmt == FMT_Q4_1 ? 4 : fmt == FMT_Q5_0 ? 6 : 8;
    const uint8x16_t qs = vld1q_u8(p + qs_at);
    uint8x16_t l = vandq_u8(qs, vdupq_n_u8(0x0F)), h = vshrq_n_u8(qs, 4);
    if (fmt == FMT_IQ4_NL) {
        const int8x16_t values = vld1q_s8(NURI_IQ4_VALUES);
        *lo = vqtbl1q_s8(values, l);
        *hi = vqtbl1q_s8(values, h);
        return;
    }
    if (fmt == FMT_Q5_0 || fmt == FMT_Q5_1) {
        /* Bit e of the little-endian qh is bit 4 of element e: spread qh's
         * bytes over the lanes (byte e/8 into lane e) and test bit e%8. */
        static const uint8_t spread_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
        static const uint8_t spread_hi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
        static const uint8_t bit_of[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t qh =
            vreinterpretq_u8_u32(vdupq_n_u32(nuri_load_u32(p + (fmt == FMT_Q5_0 ? 2 : 4))));
        const uint8x16_t bits = vld1q_u8(bit_of), sixteen = vdupq_n_u8(16);
        l = vorrq_u8(l, vandq_u8(vtstq_u8(vqtbl1q_u8(qh, vld1q_u8(spread_lo)), bits), sixteen));
        h = vorrq_u8(h, vandq_u8(vtstq_u8(vqtbl1q_u8(qh, vld1q_u8(spread_hi)), bits), sixteen));
    }
    int8x16_t sl = vreinterpretq_s8_u8(l), sh = vreinterpretq_s8_u8(h);
    if (fmt_offset(fmt) && !raw) {
        const int8x16_t offset = vdupq_n_s8((int8_t)fmt_offset(fmt));
        sl = vsubq_s8(sl, offset);
        sh = vsubq_s8(sh, offset);
    }
    *lo = sl;
    *hi = sh;
}

/* One block of four rows (or four blocks of one row): lane i of d and m is
 * the scale and minimum of w[i]. */
typedef struct {
    int8x16_t w[4][2];
    float32x4_t d, m;
} rows4;

ALWAYS_INLINE void unpack_rows4(const uint8_t *const blk[4], const int fmt, const int raw, rows4 *o) {
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) unpack_block(blk[i], fmt, &o->w[i][0], &o->w[i][1], raw);
    o->d = halves4(blk[0], blk[1], blk[2], blk[3]);
    o->m = fmt_with_min(fmt) ? halves4(blk[0] + 2, blk[1] + 2, blk[2] + 2, blk[3] + 2)
                             : vdupq_n_f32(0.0f);
}

/* The exact block sums of the four w[i] against one activation block x. */
ALWAYS_INLINE int32x4_t rows4_isum(const rows4 *o, int8x16_t xl, int8x16_t xh, const int fmt) {
    const int small = fmt_small(fmt);
    int32x4_t s[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) s[i] = dot32(vdupq_n_s32(0), o->w[i][0], o->w[i][1], xl, xh, small);
    return vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
}

/* acc (4 rows, one token) plus one block's terms against activation block xb. */
ALWAYS_INLINE float32x4_t rows4_step(const rows4 *o, const uint8_t *xb, float32x4_t acc,
                                     const int fmt) {
    const int with_min = fmt_with_min(fmt);
    const int8x16_t xl = vreinterpretq_s8_u8(vld1q_u8(xb + act_qs(with_min)));
    const int8x16_t xh = vreinterpretq_s8_u8(vld1q_u8(xb + act_qs(with_min) + 16));
    float32x4_t dx, sx;
    act_scales(xb, with_min, &dx, &sx);
    return vaddq_f32(acc, block_term(rows4_isum(o, xl, xh, fmt), o->d, o->m, dx, sx, with_min));
}

/* y[0..rows) from the first lanes of v, and back. */
ALWAYS_INLINE void store_rows(float *y, int rows, float32x4_t v) {
    if (rows == 4) {
        vst1q_f32(y, v);
    } else {
        float t[4];
        vst1q_f32(t, v);
        memcpy(y, t, (size_t)rows * sizeof(float));
    }
}

ALWAYS_INLINE float32x4_t load_rows(const float *y, int rows) {
    if (rows == 4) return vld1q_f32(y);
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(t, y, (size_t)rows * sizeof(float));
    return vld1q_f32(t);
}

/* The block pointers of rows r0.. r0+3 at block b; rows past the last one
 * repeat it (their results are computed and dropped), so nothing outside
 * the matrix is read. */
ALWAYS_INLINE void row_blocks(const uint8_t *w, size_t w_row_bytes, int r0, int rows, int64_t b,
                              size_t w_block, const uint8_t *blk[4]) {
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        blk[i] = w + (size_t)(r0 + min_int(i, rows - 1)) * w_row_bytes + (size_t)b * w_block;
}

/* ---- Gemm, few tokens ------------------------------------------------------------
 *
 * Generation reads every weight once: each block of four rows is unpacked
 * in registers and used at once by the (up to four) tokens. What depends
 * on the activations only is prepared once per call for FEW_CHUNK blocks
 * at a time: each block's scales as floats and, for Q4_0 and Q5_0, whose
 * weights then go in as stored (no offset subtracted per row),
 * -offset * sum(x), added to the exact block sums instead. Chunks continue
 * each (row, token) sum from y, in block order. */

#define FEW_TOK 4
#define FEW_CHUNK 256

typedef struct {
    float dx, sx;  /* the block's d and s (Q8_1) */
    int32_t corr;  /* -fmt_offset * sum of its 32 levels */
} act_info;

static void few_act_info(const uint8_t *x, int nblk, size_t x_block, int with_min, int offset,
                         act_info *out) {
    for (int b = 0; b < nblk; b++) {
        const uint8_t *xb = x + (size_t)b * x_block;
        out[b].dx = nuri_fp16_to_fp32(nuri_load_u16(xb));
        out[b].sx = with_min ? nuri_fp16_to_fp32(nuri_load_u16(xb + 2)) : 0.0f;
        out[b].corr = 0;
        if (offset) {
            const int8x16_t lo = vreinterpretq_s8_u8(vld1q_u8(xb + act_qs(with_min)));
            const int8x16_t hi = vreinterpretq_s8_u8(vld1q_u8(xb + act_qs(with_min) + 16));
            out[b].corr = -offset * ((int32_t)vaddlvq_s8(lo) + (int32_t)vaddlvq_s8(hi));
        }
    }
}

ALWAYS_INLINE void int8_gemm_few(const int fmt, int64_t nb, const uint8_t *w, size_t w_row_bytes,
                                 int n_rows, const uint8_t *x, size_t x_row_bytes, const int TOK,
                                 float *y, size_t y_stride) {
    const int with_min = fmt_with_min(fmt), offset = fmt_offset(fmt);
    const size_t w_block = fmt_bytes(fmt), x_block = act_bytes(with_min), qs = act_qs(with_min);
    act_info info[FEW_TOK][FEW_CHUNK];
    for (int64_t kc = 0; kc < nb; kc += FEW_CHUNK) {
        const int nblk = (int)(nb - kc < FEW_CHUNK ? nb - kc : FEW_CHUNK);
        const uint8_t *xk = x + (size_t)kc * x_block;
        for (int t = 0; t < TOK; t++)
            few_act_info(xk + (size_t)t * x_row_bytes, nblk, x_block, with_min, offset, info[t]);
        for (int r0 = 0; r0 < n_rows; r0 += 4) {
            const int rows = min_int(4, n_rows - r0);
            float32x4_t acc[FEW_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++)
                acc[t] = kc == 0 ? vdupq_n_f32(0.0f) : load_rows(y + (size_t)t * y_stride + r0, rows);
            for (int b = 0; b < nblk; b++) {
                const uint8_t *blk[4];
                row_blocks(w, w_row_bytes, r0, rows, kc + b, w_block, blk);
                rows4 o;
                unpack_rows4(blk, fmt, 1, &o);
#pragma GCC unroll 4
                for (int t = 0; t < TOK; t++) {
                    const uint8_t *xb = xk + (size_t)t * x_row_bytes + (size_t)b * x_block;
                    const act_info *ai = &info[t][b];
                    int32x4_t isum = rows4_isum(&o, vreinterpretq_s8_u8(vld1q_u8(xb + qs)),
                                                vreinterpretq_s8_u8(vld1q_u8(xb + qs + 16)), fmt);
                    if (offset) isum = vaddq_s32(isum, vld1q_dup_s32(&ai->corr));
                    acc[t] = vaddq_f32(acc[t], block_term(isum, o.d, o.m, vld1q_dup_f32(&ai->dx),
                                                          vld1q_dup_f32(&ai->sx), with_min));
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) store_rows(y + (size_t)t * y_stride + r0, rows, acc[t]);
        }
    }
}

/* ---- Gemm, many tokens -------------------------------------------------------------
 *
 * Per chunk of CHUNK_BLOCKS blocks, four rows are unpacked once into a
 * panel (10 KiB) and every token of the group runs over it, four at a
 * time. The first chunk starts the sums from 0, later ones continue from
 * y, so each (row, token) sum still runs over the blocks in order. Tokens
 * go in groups of TOKEN_GROUP, the outermost loop, so a group's
 * activations stay in L2 while every panel passes over them. */

#define CHUNK_BLOCKS 64
#define TOKEN_GROUP 256

ALWAYS_INLINE void int8_panel_tile(const rows4 *pk, int nblk, const uint8_t *x, size_t x_row_bytes,
                                   float *y, size_t y_stride, int rows, int first, const int fmt,
                                   const int TOK) {
    const size_t x_block = act_bytes(fmt_with_min(fmt));
    float32x4_t acc[FEW_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++)
        acc[t] = first ? vdupq_n_f32(0.0f) : load_rows(y + (size_t)t * y_stride, rows);
    for (int b = 0; b < nblk; b++) {
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++)
            acc[t] = rows4_step(&pk[b], x + (size_t)t * x_row_bytes + (size_t)b * x_block, acc[t], fmt);
    }
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) store_rows(y + (size_t)t * y_stride, rows, acc[t]);
}

ALWAYS_INLINE void int8_gemm_panels(const int fmt, int64_t nb, const uint8_t *w, size_t w_row_bytes,
                                    int n_rows, const uint8_t *x, size_t x_row_bytes, int n_tok,
                                    float *y, size_t y_stride) {
    const size_t w_block = fmt_bytes(fmt), x_block = act_bytes(fmt_with_min(fmt));
    rows4 pk[CHUNK_BLOCKS];
    for (int g0 = 0; g0 < n_tok; g0 += TOKEN_GROUP) {
        const int g1 = min_int(n_tok, g0 + TOKEN_GROUP);
        for (int r0 = 0; r0 < n_rows; r0 += 4) {
            const int rows = min_int(4, n_rows - r0);
            for (int64_t kc = 0; kc < nb; kc += CHUNK_BLOCKS) {
                const int nblk = (int)(nb - kc < CHUNK_BLOCKS ? nb - kc : CHUNK_BLOCKS);
                for (int b = 0; b < nblk; b++) {
                    const uint8_t *blk[4];
                    row_blocks(w, w_row_bytes, r0, rows, kc + b, w_block, blk);
                    unpack_rows4(blk, fmt, 0, &pk[b]);
                }
                const uint8_t *xk = x + (size_t)kc * x_block;
                for (int t0 = g0; t0 < g1; t0 += FEW_TOK) {
                    const uint8_t *xt = xk + (size_t)t0 * x_row_bytes;
                    float *yt = y + (size_t)t0 * y_stride + r0;
                    switch (min_int(FEW_TOK, g1 - t0)) {
                    case 1: int8_panel_tile(pk, nblk, xt, x_row_bytes, yt, y_stride, rows, kc == 0, fmt, 1); break;
                    case 2: int8_panel_tile(pk, nblk, xt, x_row_bytes, yt, y_stride, rows, kc == 0, fmt, 2); break;
                    case 3: int8_panel_tile(pk, nblk, xt, x_row_bytes, yt, y_stride, rows, kc == 0, fmt, 3); break;
                    default: int8_panel_tile(pk, nblk, xt, x_row_bytes, yt, y_stride, rows, kc == 0, fmt, 4); break;
                    }
                }
            }
        }
    }
}


/* Both paths do the same arithmetic per (row, token), so which one runs
 * changes no result. */
ALWAYS_INLINE void int8_gemm(const int fmt, int64_t n_cols, const void *w, size_t w_row_bytes,
                             int n_rows, const void *x, size_t x_row_bytes, int n_tok, float *y,
                             size_t y_stride) {
    const int64_t nb = n_cols / 32;
    if (nb == 0) {
        zero_output(n_rows, n_tok, y, y_stride);
        return;
    }
    const uint8_t *wb = w, *xb = x;
    switch (n_tok) {
    case 1: int8_gemm_few(fmt, nb, wb, w_row_bytes, n_rows, xb, x_row_bytes, 1, y, y_stride); break;
    case 2: int8_gemm_few(fmt, nb, wb, w_row_bytes, n_rows, xb, x_row_bytes, 2, y, y_stride); break;
    case 3: int8_gemm_few(fmt, nb, wb, w_row_bytes, n_rows, xb, x_row_bytes, 3, y, y_stride); break;
    case 4: int8_gemm_few(fmt, nb, wb, w_row_bytes, n_rows, xb, x_row_bytes, 4, y, y_stride); break;
    default: int8_gemm_panels(fmt, nb, wb, w_row_bytes, n_rows, xb, x_row_bytes, n_tok, y, y_stride);
    }
}

/* ---- vec_dot -------------------------------------------------------------------------
 *
 * One row against one activation row: four consecutive blocks in the lanes
 * instead of four rows, their terms then added to the sum in block order
 * as the reference does. */

ALWAYS_INLINE void int8_vec_dot(const int fmt, int64_t n, float *result, const void *w,
                                const void *x) {
    const int with_min = fmt_with_min(fmt);
    const size_t w_block = fmt_bytes(fmt), x_block = act_bytes(with_min), qs = act_qs(with_min);
    const int64_t nb = n / 32;
    float sum = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += 4) {
        const int cnt = (int)(nb - b0 < 4 ? nb - b0 : 4);
        const uint8_t *wblk[4], *xblk[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            wblk[i] = (const uint8_t *)w + (size_t)(b0 + min_int(i, cnt - 1)) * w_block;
            xblk[i] = (const uint8_t *)x + (size_t)(b0 + min_int(i, cnt - 1)) * x_block;
        }
        rows4 o;
        unpack_rows4(wblk, fmt, 0, &o);
        int32x4_t s[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            s[i] = dot32(vdupq_n_s32(0), o.w[i][0], o.w[i][1], vreinterpretq_s8_u8(vld1q_u8(xblk[i] + qs)),
                         vreinterpretq_s8_u8(vld1q_u8(xblk[i] + qs + 16)), fmt_small(fmt));
        const int32x4_t isum = vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
        const float32x4_t dx = halves4(xblk[0], xblk[1], xblk[2], xblk[3]);
        const float32x4_t sx = with_min ? halves4(xblk[0] + 2, xblk[1] + 2, xblk[2] + 2, xblk[3] + 2)
                                        : vdupq_n_f32(0.0f);
        float terms[4];
        vst1q_f32(terms, block_term(isum, o.d, o.m, dx, sx, with_min));
        for (int i = 0; i < cnt; i++) sum += terms[i];
    }
    *result = sum;
}

/* ---- The functions and their table ------------------------------------------------------ */

#define INT8_FORMAT(NAME, FMT)                                                                   \
    static void int8_gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,  \
                                 const void *x, size_t x_row_bytes, int n_tok, float *y,         \
                                 size_t y_stride) {                                              \
        int8_gemm(FMT, n_cols, w, w_row_bytes, n_rows, x, x_row_bytes, n_tok, y, y_stride);      \
    }                                                                                            \
    static void int8_vec_dot_##NAME(int64_t n, float *result, const void *w, const void *x) {    \
        int8_vec_dot(FMT, n, result, w, x);                                                      \
    }

INT8_FORMAT(q4_0, FMT_Q4_0)
INT8_FORMAT(q4_1, FMT_Q4_1)
INT8_FORMAT(q5_0, FMT_Q5_0)
INT8_FORMAT(q5_1, FMT_Q5_1)
INT8_FORMAT(q8_0, FMT_Q8_0)
INT8_FORMAT(iq4_nl, FMT_IQ4_NL)

/* Sets vec_dot and gemm of the six formats (quantize stays as it is). */
static void fill_int8(nuri_kernel table[NURI_TYPE_COUNT]) {
    table[NURI_TYPE_Q4_0].vec_dot = int8_vec_dot_q4_0;
    table[NURI_TYPE_Q4_0].gemm = int8_gemm_q4_0;
    table[NURI_TYPE_Q4_1].vec_dot = int8_vec_dot_q4_1;
    table[NURI_TYPE_Q4_1].gemm = int8_gemm_q4_1;
    table[NURI_TYPE_Q5_0].vec_dot = int8_vec_dot_q5_0;
    table[NURI_TYPE_Q5_0].gemm = int8_gemm_q5_0;
    table[NURI_TYPE_Q5_1].vec_dot = int8_vec_dot_q5_1;
    table[NURI_TYPE_Q5_1].gemm = int8_gemm_q5_1;
    table[NURI_TYPE_Q8_0].vec_dot = int8_vec_dot_q8_0;
    table[NURI_TYPE_Q8_0].gemm = int8_gemm_q8_0;
    table[NURI_TYPE_IQ4_NL].vec_dot = int8_vec_dot_iq4_nl;
    table[NURI_TYPE_IQ4_NL].gemm = int8_gemm_iq4_nl;
}

#endif
