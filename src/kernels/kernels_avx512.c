/* kernels_avx512.c — the kernels for CPUs with AVX-512 F/BW/VL/DQ and VNNI.
 *
 * Integer formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against Q8_0/Q8_1
 * activations). Weights are "packed" 16 rows at a time: for each block,
 * eight 512-bit vectors whose 32-bit lane r holds four consecutive weights
 * of row r as bytes. One activation dword broadcast to all lanes then feeds
 * one vpdpbusd per vector, so a block of 16 rows x 1 token costs 8
 * instructions and each int32 lane ends up holding one row's exact block
 * sum: no horizontal reductions.
 *
 * vpdpbusd multiplies unsigned by signed bytes, so one operand must be
 * unsigned; the difference is subtracted up front, exactly:
 *   - many tokens (prompt batches): weights signed (Q4_0 q-8, Q5_0 q-16,
 *     Q8_0 w), activations shifted to unsigned (x+128, an xor), minus
 *     128*sum(w), which the packed panel stores and every token reuses;
 *   - few tokens (generation): weights as unsigned levels (Q4_0 q, Q5_0 q,
 *     Q8_0 w+128) against the signed activations, minus offset*sum(x),
 *     computed once per call;
 *   - Q4_1, Q5_1: their levels are unsigned already; no correction.
 * Every path is exact for any int8 value.
 *
 * The float part then repeats the reference's operations in its order:
 * p = (float)isum * (dw*dx) [+ m*s], sum = sum + p, block after block. Each
 * lane is one (row, token) pair, so every result equals the scalar reference
 * bit for bit, whatever the path, the tile or how rows are split.
 *
 * Float formats (F32, F16, BF16 against F32): register tiles of rows x tokens
 * over the rows as stored, 16 lanes each, summed in a fixed order.
 *
 * Only dispatch.c calls in here, after checking the CPU. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "kernels/kernels_impl.h"

#include "kernels/kernels_avx512_common.h"

/* ---- Packed rows -------------------------------------------------------------
 *
 * One block (32 columns) of 16 rows, lane r for row r. Dword j of a lane
 * holds the row's elements 4j..4j+3, the order of the activation block's
 * bytes. Packers always read 16 rows; fewer rows (the matrix's last ones,
 * or the last blocks of a vec_dot) are first copied into a zeroed block of
 * 16, whose extra lanes compute harmless values that are never stored. */

typedef struct {
    __m512i w[8]; /* weights as bytes: signed, or unsigned levels for Q4_1/Q5_1 */
    __m512i corr; /* -128 * sum of the block's weights (signed formats) */
    __m512 d;     /* weight scale */
    __m512 m;     /* weight minimum (Q4_1, Q5_1) */
} rows16;

/* A packer reads one block of 16 rows (block r at p + r*stride). */
typedef void (*pack_fn)(const uint8_t *p, size_t stride, rows16 *out);

ALWAYS_INLINE void set_corr(rows16 *o) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) s = _mm512_dpbusd_epi32(s, ones, o->w[j]);
    o->corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, 7));
}

/* The 32 levels of a 4-bit block (qs at p + r*stride) minus `offset`. */
ALWAYS_INLINE void unpack_nibbles(const uint8_t *qs, size_t stride, int offset, __m512i w[8]) {
    __m512i q[4];
    load_16x4(qs, stride, q);
    const __m512i mask = _mm512_set1_epi8(0x0F), off = _mm512_set1_epi8((char)offset);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        w[j] = _mm512_and_si512(q[j], mask);
        w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(q[j], 4), mask);
        if (offset) {
            w[j] = _mm512_sub_epi8(w[j], off);
            w[j + 4] = _mm512_sub_epi8(w[j + 4], off);
        }
    }
}

/* Adds 16 to the bytes whose fifth bit is set in qh (lane-wise; bit e of
 * qh belongs to element e, and dword j holds elements 4j..4j+3). */
ALWAYS_INLINE void add_fifth_bits(__m512i w[8], __m512i qh) {
    const __m512i sixteen = _mm512_set1_epi8(16);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        /* In each 128-bit lane, dword L takes byte 4L + j/2 of qh into all
         * its four bytes; byte k of the dword then tests bit 4*(j%2) + k. */
        const __m512i idx = _mm512_add_epi8(
            _mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0x00000000),
            _mm512_set1_epi8((char)(j / 2)));
        const __m512i bits = _mm512_set1_epi32(j % 2 ? (int)0x80402010u : 0x08040201);
        const __mmask64 set = _mm512_test_epi8_mask(_mm512_shuffle_epi8(qh, idx), bits);
        w[j] = _mm512_mask_add_epi8(w[j], set, w[j], sixteen);
    }
}

ALWAYS_INLINE void pack_q4_0(const uint8_t *p, size_t stride, rows16 *o) {
    unpack_nibbles(p + 2, stride, 8, o->w);
    o->d = halves_lo(gather_dwords(p, stride));
    set_corr(o);
}

ALWAYS_INLINE void pack_q4_1(const uint8_t *p, size_t stride, rows16 *o) {
    unpack_nibbles(p + 4, stride, 0, o->w);
    const __m512i dm = gather_dwords(p, stride);
    o->d = halves_lo(dm);
    o->m = halves_hi(dm);
}

ALWAYS_INLINE void pack_q5_0(const uint8_t *p, size_t stride, rows16 *o) {
    unpack_nibbles(p + 6, stride, 16, o->w);
    add_fifth_bits(o->w, gather_dwords(p + 2, stride));
    o->d = halves_lo(gather_dwords(p, stride));
    set_corr(o);
}

ALWAYS_INLINE void pack_q5_1(const uint8_t *p, size_t stride, rows16 *o) {
    unpack_nibbles(p + 8, stride, 0, o->w);
    add_fifth_bits(o->w, gather_dwords(p + 4, stride));
    const __m512i dm = gather_dwords(p, stride);
    o->d = halves_lo(dm);
    o->m = halves_hi(dm);
}

ALWAYS_INLINE void pack_q8_0(const uint8_t *p, size_t stride, rows16 *o) {
    load_16x4(p + 2, stride, o->w);
    load_16x4(p + 18, stride, o->w + 4);
    o->d = halves_lo(gather_dwords(p, stride));
    set_corr(o);
}

/* Packs n < 16 blocks (block r at p + r*stride, `bytes` long) via a zeroed
 * copy. */
ALWAYS_INLINE void pack_partial(pack_fn pack, const uint8_t *p, size_t stride, int n, size_t bytes,
                                rows16 *o) {
    uint8_t tmp[16 * 36];
    memset(tmp, 0, sizeof tmp);
    for (int r = 0; r < n; r++) memcpy(tmp + (size_t)r * bytes, p + (size_t)r * stride, bytes);
    pack(tmp, bytes, o);
}

/* ---- Integer products of one packed block ----------------------------------------
 *
 * Activations are Q8_0 rows, or Q8_1 for the formats with a minimum
 * ("with_min"). Signed weights take the activations shifted to unsigned
 * (xor 0x80) and start from the stored correction; unsigned levels take
 * them as they are. */

ALWAYS_INLINE size_t act_block(int with_min) { return with_min ? sizeof(nuri_block_q8_1) : sizeof(nuri_block_q8_0); }
ALWAYS_INLINE size_t act_qs(int with_min) { return with_min ? 4 : 2; }

/* The activation dword j of a block, broadcast (and shifted if signed). */
ALWAYS_INLINE __m512i act_dword(const uint8_t *xb, int j, const int with_min) {
    const __m512i v = _mm512_set1_epi32((int)nuri_load_u32(xb + act_qs(with_min) + 4 * j));
    return with_min ? v : _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
}

ALWAYS_INLINE __m512i dot_step(__m512i acc, __m512i w, __m512i x, const int with_min) {
    return with_min ? _mm512_dpbusd_epi32(acc, w, x) : _mm512_dpbusd_epi32(acc, x, w);
}

/* The activation block's scale (and d*sum for Q8_1) in every lane. */
ALWAYS_INLINE void act_scales(const uint8_t *xb, const int with_min, __m512 *dx, __m512 *sx) {
    if (with_min) {
        const __m512 ds = _mm512_cvtph_ps(_mm256_set1_epi32((int)nuri_load_u32(xb)));
        *dx = _mm512_permute_ps(ds, 0x00);
        *sx = _mm512_permute_ps(ds, 0x55);
    } else {
        *dx = _mm512_cvtph_ps(_mm256_set1_epi16((short)nuri_load_u16(xb)));
        *sx = _mm512_setzero_ps();
    }
}

/* The reference's per-block term: (float)isum * (dw*dx) [+ m*s]. */
ALWAYS_INLINE __m512 block_term(__m512i isum, const rows16 *o, __m512 dx, __m512 sx, const int with_min) {
    __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(o->d, dx));
    if (with_min) p = _mm512_add_ps(p, _mm512_mul_ps(o->m, sx));
    return p;
}

/* ---- Integer gemm, many tokens ------------------------------------------------------
 *
 * Rows go in panels of 32 (two packed vectors). Per chunk of blocks the
 * panel is packed once into a buffer and every token runs over it, in tiles
 * of up to 4 tokens x 2 vectors. On the first chunk the sums start from 0,
 * later chunks continue from y, so each (row, token) sum runs over the
 * blocks in order. */

#define MAX_TOK 4
#define CHUNK_BLOCKS 16
#define PANEL_VECS 2

typedef struct {
    rows16 v[PANEL_VECS];
} panel_block;

ALWAYS_INLINE void int8_tile(const panel_block *pk, int nblk, const uint8_t *x, size_t x_row_bytes,
                             float *y, size_t y_stride, __mmask16 live0, __mmask16 live1,
                             int first, const int with_min, const int VECS, const int TOK) {
    const __mmask16 live[2] = {live0, live1};
    __m512 acc[MAX_TOK][PANEL_VECS];
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++)
#pragma GCC unroll 2
        for (int v = 0; v < VECS; v++)
            acc[t][v] = first ? _mm512_setzero_ps()
                              : _mm512_maskz_loadu_ps(live[v], y + (size_t)t * y_stride + 16 * v);
    for (int b = 0; b < nblk; b++) {
        const panel_block *pb = pk + b;
        const uint8_t *xb[MAX_TOK];
        __m512i isum[MAX_TOK][PANEL_VECS];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) {
            xb[t] = x + (size_t)t * x_row_bytes + (size_t)b * act_block(with_min);
#pragma GCC unroll 2
            for (int v = 0; v < VECS; v++)
                isum[t][v] = with_min ? _mm512_setzero_si512() : pb->v[v].corr;
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m512i wv[PANEL_VECS];
#pragma GCC unroll 2
            for (int v = 0; v < VECS; v++) wv[v] = pb->v[v].w[j];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) {
                const __m512i xv = act_dword(xb[t], j, with_min);
#pragma GCC unroll 2
                for (int v = 0; v < VECS; v++) isum[t][v] = dot_step(isum[t][v], wv[v], xv, with_min);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) {
            __m512 dx, sx;
            act_scales(xb[t], with_min, &dx, &sx);
#pragma GCC unroll 2
            for (int v = 0; v < VECS; v++)
                acc[t][v] = _mm512_add_ps(acc[t][v], block_term(isum[t][v], &pb->v[v], dx, sx, with_min));
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++)
#pragma GCC unroll 2
        for (int v = 0; v < VECS; v++)
            _mm512_mask_storeu_ps(y + (size_t)t * y_stride + 16 * v, live[v], acc[t][v]);
}

typedef void (*int8_tile_fn)(const panel_block *pk, int nblk, const uint8_t *x, size_t x_row_bytes,
                             float *y, size_t y_stride, __mmask16 live0, __mmask16 live1,
                             int first);

#define TILE_FN(MIN, VECS, TOK)                                                                  \
    static void tile_m##MIN##_v##VECS##_t##TOK(const panel_block *pk, int nblk, const uint8_t *x, \
                                               size_t x_row_bytes, float *y, size_t y_stride,    \
                                               __mmask16 live0, __mmask16 live1, int first) {    \
        int8_tile(pk, nblk, x, x_row_bytes, y, y_stride, live0, live1, first, MIN, VECS, TOK);   \
    }
#define TILE_FNS(MIN, VECS) \
    TILE_FN(MIN, VECS, 1) TILE_FN(MIN, VECS, 2) TILE_FN(MIN, VECS, 3) TILE_FN(MIN, VECS, 4)
TILE_FNS(0, 1)
TILE_FNS(0, 2)
TILE_FNS(1, 1)
TILE_FNS(1, 2)

/* [with_min][vecs - 1][tokens - 1] */
static const int8_tile_fn int8_tiles[2][PANEL_VECS][MAX_TOK] = {
    {{tile_m0_v1_t1, tile_m0_v1_t2, tile_m0_v1_t3, tile_m0_v1_t4},
     {tile_m0_v2_t1, tile_m0_v2_t2, tile_m0_v2_t3, tile_m0_v2_t4}},
    {{tile_m1_v1_t1, tile_m1_v1_t2, tile_m1_v1_t3, tile_m1_v1_t4},
     {tile_m1_v2_t1, tile_m1_v2_t2, tile_m1_v2_t3, tile_m1_v2_t4}},
};

static __mmask16 live_lanes(int n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* Packs 16 rows (fewer at the end of the matrix) of one block. */
ALWAYS_INLINE void pack_rows(pack_fn pack, const uint8_t *p, size_t w_row_bytes, int n,
                             size_t w_block, rows16 *o) {
    if (n >= 16) pack(p, w_row_bytes, o);
    else pack_partial(pack, p, w_row_bytes, n, w_block, o);
}

/* Tokens go in groups of TOKEN_GROUP, the outermost loop: a group's
 * activations stay in L2 while every panel passes over them, and its
 * outputs (one page per token for wide matrices) stay in the TLB. Each
 * group packs the weights again, a few percent of the work. */
#define TOKEN_GROUP 256

ALWAYS_INLINE void int8_gemm_panels(pack_fn pack, size_t w_block, int with_min, int64_t nb,
                                    const uint8_t *w, size_t w_row_bytes, int n_rows,
                                    const uint8_t *x, size_t x_row_bytes, int n_tok, float *y,
                                    size_t y_stride) {
    alignas(64) panel_block pk[CHUNK_BLOCKS];
    for (int g0 = 0; g0 < n_tok; g0 += TOKEN_GROUP) {
        const int g1 = min_int(n_tok, g0 + TOKEN_GROUP);
        for (int r0 = 0; r0 < n_rows; r0 += 16 * PANEL_VECS) {
            const int rows = min_int(16 * PANEL_VECS, n_rows - r0);
            const int vecs = rows > 16 ? 2 : 1;
            const __mmask16 live0 = live_lanes(rows), live1 = live_lanes(rows - 16);
            const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
            const int8_tile_fn *tiles = int8_tiles[with_min][vecs - 1];
            for (int64_t kc = 0; kc < nb; kc += CHUNK_BLOCKS) {
                const int nblk = (int)(nb - kc < CHUNK_BLOCKS ? nb - kc : CHUNK_BLOCKS);
                for (int b = 0; b < nblk; b++) {
                    const uint8_t *p = wp + (size_t)(kc + b) * w_block;
                    pack_rows(pack, p, w_row_bytes, rows, w_block, &pk[b].v[0]);
                    if (vecs == 2)
                        pack_rows(pack, p + 16 * w_row_bytes, w_row_bytes, rows - 16, w_block, &pk[b].v[1]);
                }
                const uint8_t *xk = x + (size_t)kc * act_block(with_min);
                int t0 = g0;
                for (; t0 + MAX_TOK <= g1; t0 += MAX_TOK)
                    tiles[MAX_TOK - 1](pk, nblk, xk + (size_t)t0 * x_row_bytes, x_row_bytes,
                                       y + (size_t)t0 * y_stride + r0, y_stride, live0, live1, kc == 0);
                if (t0 < g1)
                    tiles[g1 - t0 - 1](pk, nblk, xk + (size_t)t0 * x_row_bytes, x_row_bytes,
                                       y + (size_t)t0 * y_stride + r0, y_stride, live0, live1, kc == 0);
            }
        }
    }
}

/* ---- Integer gemm, few tokens ----------------------------------------------------------
 *
 * Generation reads every weight once, so nothing is worth keeping: each
 * block of 16 rows is packed in registers and used at once. Here the
 * weights go in as unsigned levels (Q4_0 q, Q5_0 q, Q8_0 w+128) against
 * the signed activations, and the offset times the activation block's sum
 * is subtracted up front; those sums depend on the activations only, so
 * they are computed once per call. The next rows are prefetched as one
 * straight run while these are computed (16 short row streams defeat the
 * hardware prefetchers). */

#define FEW_TOK 4
#define FEW_CHUNK 512 /* blocks whose activation sums are kept at a time */
#define FEW_GROUPS_MAX 16 /* below this many tokens, groups of FEW_TOK beat packed panels */

ALWAYS_INLINE void upack_q4_0(const uint8_t *p, size_t stride, rows16 *o) {
    unpack_nibbles(p + 2, stride, 0, o->w);
    o->d = halves_lo(gather_dwords(p, stride));
}

ALWAYS_INLINE void upack_q5_0(const uint8_t *p, size_t stride, rows16 *o) {
    unpack_nibbles(p + 6, stride, 0, o->w);
    add_fifth_bits(o->w, gather_dwords(p + 2, stride));
    o->d = halves_lo(gather_dwords(p, stride));
}

ALWAYS_INLINE void upack_q8_0(const uint8_t *p, size_t stride, rows16 *o) {
    load_16x4(p + 2, stride, o->w);
    load_16x4(p + 18, stride, o->w + 4);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) o->w[j] = _mm512_xor_si512(o->w[j], flip);
    o->d = halves_lo(gather_dwords(p, stride));
}

/* out[b] = -offset * (sum of the 32 levels of activation block b). */
static void act_offsets(const uint8_t *x, int n, size_t x_block, size_t x_qs, int offset, int32_t *out) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int b = 0; b < n; b++) {
        /* sum(x) = sum(x + 128) - 32*128, the former by sums of absolute
         * differences against zero. */
        const __m256i q = _mm256_xor_si256(
            _mm256_loadu_si256((const __m256i *)(const void *)(x + (size_t)b * x_block + x_qs)), flip);
        const __m256i s4 = _mm256_sad_epu8(q, _mm256_setzero_si256());
        const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
        const int sum = (int)_mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))) - 32 * 128;
        out[b] = -offset * sum;
    }
}

ALWAYS_INLINE void int8_gemm_few(pack_fn upack, int offset, size_t w_block, int with_min, int64_t nb,
                                 const uint8_t *w, size_t w_row_bytes, int n_rows,
                                 const uint8_t *x, size_t x_row_bytes, const int TOK, float *y,
                                 size_t y_stride, const int read_again) {
    int32_t corr[FEW_TOK][FEW_CHUNK];
    /* The activation blocks' scales (and Q8_1 sums) as floats, converted
     * once per call rather than once per 16 rows. */
    float act_d[FEW_TOK][FEW_CHUNK], act_s[FEW_TOK][FEW_CHUNK];
    for (int64_t kc = 0; kc < nb; kc += FEW_CHUNK) {
        const int nblk = (int)(nb - kc < FEW_CHUNK ? nb - kc : FEW_CHUNK);
        const uint8_t *xk = x + (size_t)kc * act_block(with_min);
        if (offset)
            for (int t = 0; t < TOK; t++)
                act_offsets(xk + (size_t)t * x_row_bytes, nblk, act_block(with_min), act_qs(with_min),
                            offset, corr[t]);
        for (int t = 0; t < TOK; t++)
            for (int b = 0; b < nblk; b++) {
                const uint8_t *xb = xk + (size_t)t * x_row_bytes + (size_t)b * act_block(with_min);
                act_d[t][b] = nuri_fp16_to_fp32(nuri_load_u16(xb));
                act_s[t][b] = with_min ? nuri_fp16_to_fp32(nuri_load_u16(xb + 2)) : 0.0f;
            }
        {
            /* Nothing brought in the first rows: ask for all their bytes of
             * this chunk at once, which at least overlaps the misses. */
            const int first_rows = min_int(16, n_rows);
            const uint8_t *first = w + (size_t)kc * w_block;
            const size_t first_bytes = (size_t)(first_rows - 1) * w_row_bytes + (size_t)nblk * w_block;
            for (size_t o = 0; o < first_bytes; o += 64) _mm_prefetch((const char *)(first + o), _MM_HINT_T0);
        }
        for (int r0 = 0; r0 < n_rows; r0 += 16) {
            const int rows = min_int(16, n_rows - r0);
            const __mmask16 live = live_lanes(rows);
            const uint8_t *wp = w + (size_t)r0 * w_row_bytes + (size_t)kc * w_block;
            /* The next rows' bytes of this chunk, prefetched evenly over its
             * blocks (no pointer past them is formed). */
            const int next_rows = min_int(16, n_rows - r0 - rows);
            const size_t next_bytes =
                next_rows ? (size_t)(next_rows - 1) * w_row_bytes + (size_t)nblk * w_block : 0;
            const uint8_t *next = next_bytes ? wp + (size_t)rows * w_row_bytes : wp;
            const size_t step = ((next_bytes / (size_t)nblk) & ~(size_t)63) + 64;
            size_t ahead = 0;
            __m512 acc[FEW_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++)
                acc[t] = kc == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live, y + (size_t)t * y_stride + r0);
            for (int b = 0; b < nblk; b++) {
                for (const size_t end = ahead + step; ahead < end && ahead < next_bytes; ahead += 64)
                    prefetch_stream(next + ahead, read_again);
                rows16 o;
                pack_rows(upack, wp + (size_t)b * w_block, w_row_bytes, rows, w_block, &o);
#pragma GCC unroll 4
                for (int t = 0; t < TOK; t++) {
                    const uint8_t *xb = xk + (size_t)t * x_row_bytes + (size_t)b * act_block(with_min);
                    __m512i isum = offset ? _mm512_set1_epi32(corr[t][b]) : _mm512_setzero_si512();
#pragma GCC unroll 8
                    for (int j = 0; j < 8; j++)
                        isum = _mm512_dpbusd_epi32(isum, o.w[j],
                                                   _mm512_set1_epi32((int)nuri_load_u32(xb + act_qs(with_min) + 4 * j)));
                    acc[t] = _mm512_add_ps(acc[t], block_term(isum, &o, _mm512_set1_ps(act_d[t][b]),
                                                              _mm512_set1_ps(act_s[t][b]), with_min));
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) _mm512_mask_storeu_ps(y + (size_t)t * y_stride + r0, live, acc[t]);
        }
    }
}


/* Both paths do the same arithmetic per (row, token), so which one runs
 * changes no result. */
ALWAYS_INLINE void int8_gemm(pack_fn pack, pack_fn upack, int offset, size_t w_block, int with_min,
                             int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,
                             const void *x, size_t x_row_bytes, int n_tok, float *y, size_t y_stride) {
    const int64_t nb = n_cols / 32;
    if (nb == 0) {
        zero_output(n_rows, n_tok, y, y_stride);
        return;
    }
    if (n_tok == 1)
        int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, x, x_row_bytes, 1, y, y_stride, 0);
    else if (n_tok == 2)
        int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, x, x_row_bytes, 2, y, y_stride, 0);
    else if (n_tok == 3)
        int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, x, x_row_bytes, 3, y, y_stride, 0);
    else if (n_tok == 4)
        int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, x, x_row_bytes, 4, y, y_stride, 0);
    else if (n_tok < FEW_GROUPS_MAX) {
        /* Small batches (a server's slots): packing panels costs more than
         * it saves; stream the rows once per 4 tokens instead (the second
         * pass finds them in the last-level cache). */
        for (int t0 = 0; t0 < n_tok; t0 += 4) {
            const uint8_t *xt = (const uint8_t *)x + (size_t)t0 * x_row_bytes;
            float *yt = y + (size_t)t0 * y_stride;
            switch (min_int(4, n_tok - t0)) {
            case 1: int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, xt, x_row_bytes, 1, yt, y_stride, 1); break;
            case 2: int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, xt, x_row_bytes, 2, yt, y_stride, 1); break;
            case 3: int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, xt, x_row_bytes, 3, yt, y_stride, 1); break;
            default: int8_gemm_few(upack, offset, w_block, with_min, nb, w, w_row_bytes, n_rows, xt, x_row_bytes, 4, yt, y_stride, 1); break;
            }
        }
    } else
        int8_gemm_panels(pack, w_block, with_min, nb, w, w_row_bytes, n_rows, x, x_row_bytes,
                         n_tok, y, y_stride);
}

/* ---- Integer vec_dot -------------------------------------------------------
 *
 * One row against one activation row: the same packers, with 16 consecutive
 * blocks of the row in the lanes instead of 16 rows, and the activation
 * blocks transposed the same way. The per-block terms are then summed in
 * block order, as the reference does. */

ALWAYS_INLINE void int8_vec_dot(pack_fn pack, size_t w_block, int with_min, int64_t n,
                                float *result, const void *w, const void *x) {
    const int64_t nb = n / 32;
    const size_t x_block = act_block(with_min), x_qs = act_qs(with_min);
    alignas(64) float terms[16];
    float sum = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
        const int cnt = (int)(nb - b0 < 16 ? nb - b0 : 16);
        const uint8_t *wp = (const uint8_t *)w + (size_t)b0 * w_block;
        const uint8_t *xp = (const uint8_t *)x + (size_t)b0 * x_block;
        uint8_t xtmp[16 * 36];
        if (cnt < 16) {
            memset(xtmp, 0, sizeof xtmp);
            memcpy(xtmp, xp, (size_t)cnt * x_block);
            xp = xtmp;
        }
        rows16 o;
        pack_rows(pack, wp, w_block, cnt, w_block, &o);
        __m512i xq[8];
        load_16x4(xp + x_qs, x_block, xq);
        load_16x4(xp + x_qs + 16, x_block, xq + 4);
        __m512i isum = with_min ? _mm512_setzero_si512() : o.corr;
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            isum = dot_step(isum, o.w[j],
                            with_min ? xq[j] : _mm512_xor_si512(xq[j], _mm512_set1_epi8((char)0x80)),
                            with_min);
        const __m512i xd = gather_dwords(xp, x_block);
        __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(o.d, halves_lo(xd)));
        if (with_min) p = _mm512_add_ps(p, _mm512_mul_ps(o.m, halves_hi(xd)));
        _mm512_store_ps(terms, p);
        for (int i = 0; i < cnt; i++) sum += terms[i];
    }
    *result = sum;
}

#define INT8_TYPE(NAME, PACK, UPACK, OFFSET, BLOCK, MIN)                                         \
    static void gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,       \
                            const void *x, size_t x_row_bytes, int n_tok, float *y,              \
                            size_t y_stride) {                                                   \
        int8_gemm(PACK, UPACK, OFFSET, BLOCK, MIN, n_cols, w, w_row_bytes, n_rows, x,            \
                  x_row_bytes, n_tok, y, y_stride);                                              \
    }                                                                                            \
    static void vec_dot_##NAME(int64_t n, float *result, const void *w, const void *x) {         \
        int8_vec_dot(PACK, BLOCK, MIN, n, result, w, x);                                         \
    }

/* The unsigned packers of the few-token path and their level offsets. */
INT8_TYPE(q4_0, pack_q4_0, upack_q4_0, 8, sizeof(nuri_block_q4_0), 0)
INT8_TYPE(q4_1, pack_q4_1, pack_q4_1, 0, sizeof(nuri_block_q4_1), 1)
INT8_TYPE(q5_0, pack_q5_0, upack_q5_0, 16, sizeof(nuri_block_q5_0), 0)
INT8_TYPE(q5_1, pack_q5_1, pack_q5_1, 0, sizeof(nuri_block_q5_1), 1)
INT8_TYPE(q8_0, pack_q8_0, upack_q8_0, 128, sizeof(nuri_block_q8_0), 0)

/* ---- Float formats -----------------------------------------------------------
 *
 * Each (row, token) pair keeps 16 partial sums, lane i summing the products
 * of columns i, i+16, ... with fused multiply-adds; the lanes are then added
 * in a fixed tree. The reference sums in double, so results agree within
 * float rounding rather than bit for bit. */

enum { FLOAT_F32, FLOAT_F16, FLOAT_BF16 };

/* 16 weights from column k of a row (only the `live` ones read). */
ALWAYS_INLINE __m512 load_weights(const uint8_t *row, int64_t k, __mmask16 live, const int kind) {
    if (kind == FLOAT_F32) return _mm512_maskz_loadu_ps(live, row + 4 * k);
    const __m256i h = _mm256_maskz_loadu_epi16(live, row + 2 * k);
    if (kind == FLOAT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE float sum_lanes(__m512 v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

#define MAX_FROWS 4
#define MAX_FTOK 4

/* pf, pf_len: bytes to prefetch while this tile runs (the next rows; 0 for
 * none), spread evenly over its steps. */
ALWAYS_INLINE void float_tile(int64_t n, const uint8_t *w, size_t w_row_bytes, const uint8_t *x,
                              size_t x_row_bytes, float *y, size_t y_stride, const uint8_t *pf,
                              size_t pf_len, const int kind, const int ROWS, const int TOK) {
    const size_t pf_step = ((pf_len / (size_t)((n + 15) / 16)) & ~(size_t)63) + 64;
    size_t ahead = 0;
    __m512 acc[MAX_FROWS][MAX_FTOK];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 live = n - k >= 16 ? 0xFFFF : (__mmask16)((1u << (n - k)) - 1);
        for (const size_t end = ahead + pf_step; ahead < end && ahead < pf_len; ahead += 64)
            _mm_prefetch((const char *)(pf + ahead), _MM_HINT_T0);
        /* Activations first, then one weight vector at a time. */
        __m512 xv[MAX_FTOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++)
            xv[t] = _mm512_maskz_loadu_ps(live, (const float *)(const void *)(x + (size_t)t * x_row_bytes) + k);
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; r++) {
            const __m512 wv = load_weights(w + (size_t)r * w_row_bytes, k, live, kind);
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (ROWS * TOK == 1) {
        y[0] = sum_lanes(acc[0][0]);
        return;
    }
    /* All sums at once: the tree of sum_lanes for every accumulator, with
     * two accumulators' halves added per instruction, so every result has
     * sum_lanes' bits. v[4r + t] ends as lane 4t + r of the last vector. */
    __m512 v[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        v[i] = i / 4 < ROWS && i % 4 < TOK ? acc[i / 4][i % 4] : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* lanes i + (i+8): 256-bit halves */
        v[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* lanes i + (i+4): 128-bit quarters */
        v[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* lanes i + (i+2) within quarters */
        v[i] = _mm512_add_ps(_mm512_shuffle_ps(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* lanes i + (i+1) */
    const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __mmask16 row_lanes = (__mmask16)((1u << ROWS) - 1);
    const __m512i quarter0 = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * y_stride, row_lanes,
                              _mm512_permutexvar_ps(_mm512_add_epi32(quarter0, _mm512_set1_epi32(4 * t)), sums));
}

typedef void (*float_tile_fn)(int64_t n, const uint8_t *w, size_t w_row_bytes, const uint8_t *x,
                              size_t x_row_bytes, float *y, size_t y_stride, const uint8_t *pf,
                              size_t pf_len);

#define FTILE_FN(KIND, R, T)                                                                     \
    static void ftile_##KIND##_##R##_##T(int64_t n, const uint8_t *w, size_t w_row_bytes,        \
                                         const uint8_t *x, size_t x_row_bytes, float *y,         \
                                         size_t y_stride, const uint8_t *pf, size_t pf_len) {    \
        float_tile(n, w, w_row_bytes, x, x_row_bytes, y, y_stride, pf, pf_len, KIND, R, T);      \
    }
#define FTILE_ROW(KIND, R) FTILE_FN(KIND, R, 1) FTILE_FN(KIND, R, 2) FTILE_FN(KIND, R, 3) FTILE_FN(KIND, R, 4)
#define FTILE_ALL(KIND) FTILE_ROW(KIND, 1) FTILE_ROW(KIND, 2) FTILE_ROW(KIND, 3) FTILE_ROW(KIND, 4)
FTILE_ALL(FLOAT_F32)
FTILE_ALL(FLOAT_F16)
FTILE_ALL(FLOAT_BF16)

#define FTILE_TABLE_ROW(KIND, R) \
    {ftile_##KIND##_##R##_1, ftile_##KIND##_##R##_2, ftile_##KIND##_##R##_3, ftile_##KIND##_##R##_4}
#define FTILE_TABLE(KIND) \
    {FTILE_TABLE_ROW(KIND, 1), FTILE_TABLE_ROW(KIND, 2), FTILE_TABLE_ROW(KIND, 3), FTILE_TABLE_ROW(KIND, 4)}

/* [kind][rows - 1][tokens - 1] */
static const float_tile_fn float_tiles[3][MAX_FROWS][MAX_FTOK] = {
    FTILE_TABLE(FLOAT_F32), FTILE_TABLE(FLOAT_F16), FTILE_TABLE(FLOAT_BF16)};

static void float_gemm_group(int kind, int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,
                             const void *x, size_t x_row_bytes, int n_tok, float *y, size_t y_stride) {
    for (int r0 = 0; r0 < n_rows; r0 += MAX_FROWS) {
        const int rows = min_int(MAX_FROWS, n_rows - r0);
        const uint8_t *wr = (const uint8_t *)w + (size_t)r0 * w_row_bytes;
        /* The first token tile brings in the next rows. */
        const int next_rows = min_int(MAX_FROWS, n_rows - r0 - rows);
        const size_t next_len =
            next_rows ? (size_t)(next_rows - 1) * w_row_bytes + (size_t)n_cols * (kind == FLOAT_F32 ? 4 : 2) : 0;
        const uint8_t *next = next_len ? wr + (size_t)rows * w_row_bytes : wr;
        for (int t0 = 0; t0 < n_tok; t0 += MAX_FTOK) {
            const int tok = min_int(MAX_FTOK, n_tok - t0);
            float_tiles[kind][rows - 1][tok - 1](n_cols, wr, w_row_bytes,
                                                 (const uint8_t *)x + (size_t)t0 * x_row_bytes,
                                                 x_row_bytes, y + (size_t)t0 * y_stride + r0, y_stride,
                                                 next, t0 == 0 ? next_len : 0);
        }
    }
}

/* Tokens go in groups whose activations (32 KiB of floats or fewer per
 * row, so at most about 256 KiB) stay in L2 while every row passes over
 * them; the weights are read once per group. */
#define FLOAT_TOKEN_GROUP 64

static void float_gemm(int kind, int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,
                       const void *x, size_t x_row_bytes, int n_tok, float *y, size_t y_stride) {
    int group = FLOAT_TOKEN_GROUP;
    while (group > MAX_FTOK && (size_t)group * x_row_bytes > (256u << 10)) group /= 2;
    for (int g0 = 0; g0 < n_tok; g0 += group)
        float_gemm_group(kind, n_cols, w, w_row_bytes, n_rows, (const uint8_t *)x + (size_t)g0 * x_row_bytes,
                         x_row_bytes, min_int(group, n_tok - g0), y + (size_t)g0 * y_stride, y_stride);
}

#define FLOAT_TYPE(NAME, KIND)                                                                   \
    static void gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,       \
                            const void *x, size_t x_row_bytes, int n_tok, float *y,              \
                            size_t y_stride) {                                                   \
        float_gemm(KIND, n_cols, w, w_row_bytes, n_rows, x, x_row_bytes, n_tok, y, y_stride);    \
    }                                                                                            \
    static void vec_dot_##NAME(int64_t n, float *result, const void *w, const void *x) {         \
        ftile_##KIND##_1_1(n, w, 0, x, 0, result, 0, w, 0);                                            \
    }

FLOAT_TYPE(f32, FLOAT_F32)
FLOAT_TYPE(f16, FLOAT_F16)
FLOAT_TYPE(bf16, FLOAT_BF16)

/* ---- Activation quantizers ---------------------------------------------------
 *
 * The reference's steps in vector form: d = amax/127, id = 1/d (0 for an
 * all-zero block), q = roundf(x*id) clamped to +-127, NaN to 0. roundf
 * (halves away from zero) is trunc(v) plus one step away from zero when the
 * exact remainder v - trunc(v) is at least 0.5. The half conversions are
 * IEEE round-to-nearest-even, as nuri_fp32_to_fp16 is, and d is never NaN. */

ALWAYS_INLINE __m512 abs_ps(__m512 v) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)));
}

/* The largest |x| of 32 floats, NaNs skipped (max_ps returns its second
 * operand when either is NaN, and the running maximum is never NaN). */
ALWAYS_INLINE float block_absmax(__m512 a, __m512 b) {
    __m512 m = _mm512_max_ps(abs_ps(a), _mm512_setzero_ps());
    m = _mm512_max_ps(abs_ps(b), m);
    return _mm512_reduce_max_ps(m);
}

ALWAYS_INLINE __m512i round_clamp(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)),
        _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    __m512 r = _mm512_mask_add_ps(t, up, t, step);
    r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    const __mmask16 ordered = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
    return _mm512_maskz_cvtps_epi32(ordered, r);
}

ALWAYS_INLINE uint16_t to_half(float f) {
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
}

/* Quantizes one block of 32 floats: the 32 levels into qs, returns d. */
ALWAYS_INLINE float quantize_block(const float *src, int8_t *qs, __m512i *sum_out) {
    const __m512 a = _mm512_loadu_ps(src), b = _mm512_loadu_ps(src + 16);
    const float d = block_absmax(a, b) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m512 idv = _mm512_set1_ps(id);
    const __m512i qa = round_clamp(_mm512_mul_ps(a, idv)), qb = round_clamp(_mm512_mul_ps(b, idv));
    _mm_storeu_si128((__m128i *)(void *)qs, _mm512_cvtepi32_epi8(qa));
    _mm_storeu_si128((__m128i *)(void *)(qs + 16), _mm512_cvtepi32_epi8(qb));
    if (sum_out) *sum_out = _mm512_add_epi32(qa, qb);
    return d;
}

static void quantize_q8_0(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / 32; b++) {
        nuri_block_q8_0 blk;
        blk.d = to_half(quantize_block(src + 32 * b, blk.qs, NULL));
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

static void quantize_q8_1(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / 32; b++) {
        nuri_block_q8_1 blk;
        __m512i sum;
        const float d = quantize_block(src + 32 * b, blk.qs, &sum);
        blk.d = to_half(d);
        blk.s = to_half((float)_mm512_reduce_add_epi32(sum) * d);
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

/* ---- Table ------------------------------------------------------------------- */

void nuri_kernels_fill_avx512(nuri_kernel table[NURI_TYPE_COUNT]) {
    table[NURI_TYPE_F32] = (nuri_kernel){vec_dot_f32, gemm_f32, NULL, NULL};
    table[NURI_TYPE_F16] = (nuri_kernel){vec_dot_f16, gemm_f16, NULL, NULL};
    table[NURI_TYPE_BF16] = (nuri_kernel){vec_dot_bf16, gemm_bf16, NULL, NULL};
    table[NURI_TYPE_Q4_0] = (nuri_kernel){vec_dot_q4_0, gemm_q4_0, quantize_q8_0, NULL};
    table[NURI_TYPE_Q4_1] = (nuri_kernel){vec_dot_q4_1, gemm_q4_1, quantize_q8_1, NULL};
    table[NURI_TYPE_Q5_0] = (nuri_kernel){vec_dot_q5_0, gemm_q5_0, quantize_q8_0, NULL};
    table[NURI_TYPE_Q5_1] = (nuri_kernel){vec_dot_q5_1, gemm_q5_1, quantize_q8_1, NULL};
    table[NURI_TYPE_Q8_0] = (nuri_kernel){vec_dot_q8_0, gemm_q8_0, quantize_q8_0, NULL};
}

#else
typedef int nuri_kernels_avx512_not_built; /* keeps the translation unit non-empty */
#endif
