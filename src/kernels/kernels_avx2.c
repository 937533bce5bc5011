/* kernels_avx2.c — the kernels for CPUs with AVX2, FMA and F16C (and no
 * AVX-512): the designs of kernels_avx512.c with 8 lanes.
 *
 * Integer formats: 8 weight rows are packed per block so that 32-bit lane r
 * holds four consecutive weights of row r; one activation dword broadcast
 * to all lanes multiplies them with vpmaddubsw (unsigned x signed bytes into
 * saturating 16-bit pair sums), and vpmaddwd by ones widens to 32 bits.
 * Saturation is avoided by construction:
 *   - DOT_SHIFTED, many tokens of Q4_0 and Q5_0 (signed levels, |w| <= 16):
 *     activations shifted to unsigned (x+128), the excess 128*sum(w), which
 *     the panel stores, subtracted up front; a pair sum is at most
 *     2*255*16 = 8160.
 *   - DOT_UNSIGNED, Q4_1 and Q5_1, and few tokens of Q4_0 and Q5_0 (levels
 *     0..31 as the unsigned operand against the signed activations, minus
 *     offset*sum(x) computed once per call): a pair sum is at most
 *     2*31*128 = 7936.
 *   - DOT_SIGNED8, Q8_0: |w| against x with w's sign (vpsignb); 2*128*127
 *     fits. This needs x != -128, which no quantizer writes (they clamp to
 *     +-127); the other kinds are exact for every int8 value.
 * 16-bit sums are widened every 8 dwords (every 4 for 5-bit levels, every
 * one for Q8_0), before they could pass 32767. The float part repeats the
 * reference's operations in its order, so every result equals the scalar
 * reference bit for bit.
 *
 * Float formats: register tiles of rows x tokens over the rows as stored, 8
 * lanes each, summed in a fixed order.
 *
 * Only dispatch.c calls in here, after checking the CPU. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "kernels/kernels_impl.h"

#include "kernels/kernels_avx2_common.h"

/* ---- Packed rows -------------------------------------------------------------
 *
 * One block (32 columns) of 8 rows, lane r for row r; dword j of a lane
 * holds the row's elements 4j..4j+3. Packers always read 8 rows; fewer rows
 * are first copied into a zeroed block of 8. */

typedef struct {
    __m256i w[8]; /* weights as bytes: signed, |w| for Q8_0, unsigned levels for Q4_1/Q5_1 */
    __m256i s[8]; /* Q8_0: the weights themselves (for their signs) */
    __m256i corr; /* -128 * sum of the block's weights (Q4_0, Q5_0) */
    __m256 d;     /* weight scale */
    __m256 m;     /* weight minimum (Q4_1, Q5_1) */
} rows8;

/* How the integer dot of a format is formed (see the file comment). */
enum { DOT_SHIFTED, DOT_UNSIGNED, DOT_SIGNED8 };

typedef void (*pack_fn)(const uint8_t *p, size_t stride, rows8 *out);

ALWAYS_INLINE void set_corr(rows8 *o) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, o->w[j]), ones16));
    o->corr = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(s, 7));
}

ALWAYS_INLINE void unpack_nibbles(const uint8_t *qs, size_t stride, int offset, __m256i w[8]) {
    __m256i q[4];
    load_8x4(qs, stride, q);
    const __m256i mask = _mm256_set1_epi8(0x0F), off = _mm256_set1_epi8((char)offset);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        w[j] = _mm256_and_si256(q[j], mask);
        w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(q[j], 4), mask);
        if (offset) {
            w[j] = _mm256_sub_epi8(w[j], off);
            w[j + 4] = _mm256_sub_epi8(w[j + 4], off);
        }
    }
}

/* Adds 16 to the bytes whose fifth bit is set in qh (lane-wise; bit e of
 * qh belongs to element e, and dword j holds elements 4j..4j+3). */
ALWAYS_INLINE void add_fifth_bits(__m256i w[8], __m256i qh) {
    const __m256i sixteen = _mm256_set1_epi8(16);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const __m256i idx = _mm256_add_epi8(
            _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404, 0x08080808, 0x0C0C0C0C),
            _mm256_set1_epi8((char)(j / 2)));
        const __m256i bits = _mm256_set1_epi32(j % 2 ? (int)0x80402010u : 0x08040201);
        const __m256i picked = _mm256_and_si256(_mm256_shuffle_epi8(qh, idx), bits);
        const __m256i set = _mm256_cmpeq_epi8(picked, bits);
        w[j] = _mm256_add_epi8(w[j], _mm256_and_si256(set, sixteen));
    }
}

ALWAYS_INLINE void pack_q4_0(const uint8_t *p, size_t stride, rows8 *o) {
    unpack_nibbles(p + 2, stride, 8, o->w);
    o->d = halves_lo(load_dwords(p, stride));
    set_corr(o);
}

ALWAYS_INLINE void pack_q4_1(const uint8_t *p, size_t stride, rows8 *o) {
    unpack_nibbles(p + 4, stride, 0, o->w);
    const __m256i dm = load_dwords(p, stride);
    o->d = halves_lo(dm);
    o->m = halves_hi(dm);
}

ALWAYS_INLINE void pack_q5_0(const uint8_t *p, size_t stride, rows8 *o) {
    unpack_nibbles(p + 6, stride, 16, o->w);
    add_fifth_bits(o->w, load_dwords(p + 2, stride));
    o->d = halves_lo(load_dwords(p, stride));
    set_corr(o);
}

ALWAYS_INLINE void pack_q5_1(const uint8_t *p, size_t stride, rows8 *o) {
    unpack_nibbles(p + 8, stride, 0, o->w);
    add_fifth_bits(o->w, load_dwords(p + 4, stride));
    const __m256i dm = load_dwords(p, stride);
    o->d = halves_lo(dm);
    o->m = halves_hi(dm);
}

ALWAYS_INLINE void pack_q8_0(const uint8_t *p, size_t stride, rows8 *o) {
    load_8x4(p + 2, stride, o->s);
    load_8x4(p + 18, stride, o->s + 4);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) o->w[j] = _mm256_abs_epi8(o->s[j]);
    o->d = halves_lo(load_dwords(p, stride));
}

ALWAYS_INLINE void pack_rows(pack_fn pack, const uint8_t *p, size_t stride, int n, size_t bytes,
                             rows8 *o) {
    if (n >= 8) {
        pack(p, stride, o);
        return;
    }
    uint8_t tmp[8 * 36];
    memset(tmp, 0, sizeof tmp);
    for (int r = 0; r < n; r++) memcpy(tmp + (size_t)r * bytes, p + (size_t)r * stride, bytes);
    pack(tmp, bytes, o);
}

/* ---- Integer products of one packed block ----------------------------------------
 *
 * "kind" says how bytes meet (see the file comment); with_min marks the
 * formats with a minimum, whose activations are Q8_1 rather than Q8_0. */

ALWAYS_INLINE size_t act_block(int with_min) { return with_min ? sizeof(nuri_block_q8_1) : sizeof(nuri_block_q8_0); }
ALWAYS_INLINE size_t act_qs(int with_min) { return with_min ? 4 : 2; }

/* Dwords summed in 16 bits before widening (see the file comment). */
ALWAYS_INLINE int widen_every(int kind, int big_levels) {
    if (kind == DOT_SIGNED8) return 1;
    return big_levels ? 4 : 8;
}

/* 16-bit pair sums of one dword position; x is the broadcast activation
 * dword as stored (shifted here for DOT_SHIFTED). */
ALWAYS_INLINE __m256i pair_sums(const rows8 *o, int j, __m256i x, const int kind) {
    if (kind == DOT_SHIFTED)
        return _mm256_maddubs_epi16(_mm256_xor_si256(x, _mm256_set1_epi8((char)0x80)), o->w[j]);
    if (kind == DOT_UNSIGNED) return _mm256_maddubs_epi16(o->w[j], x);
    return _mm256_maddubs_epi16(o->w[j], _mm256_sign_epi8(x, o->s[j]));
}

/* The exact integer dot of the block for 8 rows, from `start` (the
 * correction); xv(j) gives activation dword j in every lane. */
#define BLOCK_ISUM(out, o, start, xv, kind, big)                                               \
    do {                                                                                        \
        const __m256i ones16_ = _mm256_set1_epi16(1);                                           \
        const int every_ = widen_every(kind, big);                                              \
        __m256i isum_ = (start), part_ = _mm256_setzero_si256();                                \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {                                   \
            const __m256i p_ = pair_sums(o, j, xv(j), kind);                                    \
            part_ = j % every_ == 0 ? p_ : _mm256_add_epi16(part_, p_);                         \
            if (j % every_ == every_ - 1)                                                       \
                isum_ = _mm256_add_epi32(isum_, _mm256_madd_epi16(part_, ones16_));             \
        }                                                                                       \
        (out) = isum_;                                                                          \
    } while (0)

/* The activation block's scale, and for Q8_1 its d*sum, in every lane. */
ALWAYS_INLINE void act_scales(const uint8_t *xb, const int with_min, __m256 *dx, __m256 *sx) {
    if (with_min) {
        const __m128 ds = _mm_cvtph_ps(_mm_cvtsi32_si128((int)nuri_load_u32(xb)));
        *dx = _mm256_set1_ps(_mm_cvtss_f32(ds));
        *sx = _mm256_set1_ps(_mm_cvtss_f32(_mm_movehdup_ps(ds)));
    } else {
        *dx = _mm256_set1_ps(_cvtsh_ss(nuri_load_u16(xb)));
        *sx = _mm256_setzero_ps();
    }
}

/* The reference's per-block term: (float)isum * (dw*dx) [+ m*s]. */
ALWAYS_INLINE __m256 block_term(__m256i isum, const rows8 *o, __m256 dx, __m256 sx, const int with_min) {
    __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(o->d, dx));
    if (with_min) p = _mm256_add_ps(p, _mm256_mul_ps(o->m, sx));
    return p;
}

/* ---- Integer gemm, many tokens --------------------------------------------------------
 *
 * Rows go in panels of 16 (two packed vectors). Per chunk of blocks the
 * panel is packed once and every token runs over it, two at a time; each
 * (row, token) sum runs over the blocks in order, continuing from y after
 * the first chunk. */

#define CHUNK_BLOCKS 16
#define PANEL_VECS 2
#define MAX_TOK 2

typedef struct {
    rows8 v[PANEL_VECS];
} panel_block;

ALWAYS_INLINE void store_rows(float *y, int n, __m256 v) {
    if (n >= 8) {
        _mm256_storeu_ps(y, v);
        return;
    }
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, v);
    if (n > 0) memcpy(y, tmp, (size_t)n * sizeof(float));
}

ALWAYS_INLINE __m256 load_rows(const float *y, int n) {
    if (n >= 8) return _mm256_loadu_ps(y);
    alignas(32) float tmp[8] = {0};
    if (n > 0) memcpy(tmp, y, (size_t)n * sizeof(float));
    return _mm256_load_ps(tmp);
}

ALWAYS_INLINE void int8_tile(const panel_block *pk, int nblk, const uint8_t *x, size_t x_row_bytes,
                             float *y, size_t y_stride, int rows, int first, const int kind,
                             const int with_min, const int big, const int VECS, const int TOK) {
    __m256 acc[MAX_TOK][PANEL_VECS];
#pragma GCC unroll 2
    for (int t = 0; t < TOK; t++)
#pragma GCC unroll 2
        for (int v = 0; v < VECS; v++)
            acc[t][v] = first ? _mm256_setzero_ps()
                              : load_rows(y + (size_t)t * y_stride + 8 * v, rows - 8 * v);
    for (int b = 0; b < nblk; b++) {
#pragma GCC unroll 2
        for (int t = 0; t < TOK; t++) {
            const uint8_t *xb = x + (size_t)t * x_row_bytes + (size_t)b * act_block(with_min);
            __m256 dx, sx;
            act_scales(xb, with_min, &dx, &sx);
#define XV(j) _mm256_set1_epi32((int)nuri_load_u32(xb + act_qs(with_min) + 4 * (j)))
#pragma GCC unroll 2
            for (int v = 0; v < VECS; v++) {
                const rows8 *o = &pk[b].v[v];
                __m256i isum;
                BLOCK_ISUM(isum, o, kind == DOT_SHIFTED ? o->corr : _mm256_setzero_si256(), XV, kind, big);
                acc[t][v] = _mm256_add_ps(acc[t][v], block_term(isum, o, dx, sx, with_min));
            }
#undef XV
        }
    }
#pragma GCC unroll 2
    for (int t = 0; t < TOK; t++)
#pragma GCC unroll 2
        for (int v = 0; v < VECS; v++) store_rows(y + (size_t)t * y_stride + 8 * v, rows - 8 * v, acc[t][v]);
}

typedef void (*int8_tile_fn)(const panel_block *pk, int nblk, const uint8_t *x, size_t x_row_bytes,
                             float *y, size_t y_stride, int rows, int first);

#define TILE_FN(NAME, KIND, MIN, BIG, VECS, TOK)                                                  \
    static void tile_##NAME##_v##VECS##_t##TOK(const panel_block *pk, int nblk, const uint8_t *x, \
                                               size_t x_row_bytes, float *y, size_t y_stride,    \
                                               int rows, int first) {                            \
        int8_tile(pk, nblk, x, x_row_bytes, y, y_stride, rows, first, KIND, MIN, BIG, VECS, TOK); \
    }
#define TILE_FNS(NAME, KIND, MIN, BIG)                                                 \
    TILE_FN(NAME, KIND, MIN, BIG, 1, 1) TILE_FN(NAME, KIND, MIN, BIG, 1, 2)            \
    TILE_FN(NAME, KIND, MIN, BIG, 2, 1) TILE_FN(NAME, KIND, MIN, BIG, 2, 2)            \
    static const int8_tile_fn tiles_##NAME[PANEL_VECS][MAX_TOK] = {                     \
        {tile_##NAME##_v1_t1, tile_##NAME##_v1_t2}, {tile_##NAME##_v2_t1, tile_##NAME##_v2_t2}};

ALWAYS_INLINE void int8_gemm_panels(pack_fn pack, size_t w_block, const int8_tile_fn tiles[PANEL_VECS][MAX_TOK],
                                    int with_min, int64_t nb, const uint8_t *w, size_t w_row_bytes,
                                    int n_rows, const uint8_t *x, size_t x_row_bytes, int n_tok,
                                    float *y, size_t y_stride) {
    alignas(32) panel_block pk[CHUNK_BLOCKS];
    for (int r0 = 0; r0 < n_rows; r0 += 8 * PANEL_VECS) {
        const int rows = min_int(8 * PANEL_VECS, n_rows - r0);
        const int vecs = rows > 8 ? 2 : 1;
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        for (int64_t kc = 0; kc < nb; kc += CHUNK_BLOCKS) {
            const int nblk = (int)(nb - kc < CHUNK_BLOCKS ? nb - kc : CHUNK_BLOCKS);
            for (int b = 0; b < nblk; b++) {
                const uint8_t *p = wp + (size_t)(kc + b) * w_block;
                pack_rows(pack, p, w_row_bytes, rows, w_block, &pk[b].v[0]);
                if (vecs == 2) pack_rows(pack, p + 8 * w_row_bytes, w_row_bytes, rows - 8, w_block, &pk[b].v[1]);
            }
            const uint8_t *xk = x + (size_t)kc * act_block(with_min);
            int t0 = 0;
            for (; t0 + MAX_TOK <= n_tok; t0 += MAX_TOK)
                tiles[vecs - 1][MAX_TOK - 1](pk, nblk, xk + (size_t)t0 * x_row_bytes, x_row_bytes,
                                             y + (size_t)t0 * y_stride + r0, y_stride, rows, kc == 0);
            if (t0 < n_tok)
                tiles[vecs - 1][n_tok - t0 - 1](pk, nblk, xk + (size_t)t0 * x_row_bytes, x_row_bytes,
                                                y + (size_t)t0 * y_stride + r0, y_stride, rows, kc == 0);
        }
    }
}

/* ---- Integer gemm, few tokens ------------------------------------------------------------
 *
 * As in kernels_avx512.c: each block of 8 rows is packed in registers and
 * used at once, Q4_0/Q5_0 as unsigned levels against the signed activations
 * with offset*sum(x) subtracted up front (sums computed once per call), and
 * the next rows are prefetched as one straight run. */

#define FEW_TOK 4
#define FEW_CHUNK 512

ALWAYS_INLINE void upack_q4_0(const uint8_t *p, size_t stride, rows8 *o) {
    unpack_nibbles(p + 2, stride, 0, o->w);
    o->d = halves_lo(load_dwords(p, stride));
}

ALWAYS_INLINE void upack_q5_0(const uint8_t *p, size_t stride, rows8 *o) {
    unpack_nibbles(p + 6, stride, 0, o->w);
    add_fifth_bits(o->w, load_dwords(p + 2, stride));
    o->d = halves_lo(load_dwords(p, stride));
}

/* out[b] = -offset * (sum of the 32 levels of activation block b). */
static void act_offsets(const uint8_t *x, int n, size_t x_block, size_t x_qs, int offset, int32_t *out) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int b = 0; b < n; b++) {
        const __m256i q = _mm256_xor_si256(
            _mm256_loadu_si256((const __m256i *)(const void *)(x + (size_t)b * x_block + x_qs)), flip);
        const __m256i s4 = _mm256_sad_epu8(q, _mm256_setzero_si256());
        const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
        const int sum = (int)_mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))) - 32 * 128;
        out[b] = -offset * sum;
    }
}

ALWAYS_INLINE void int8_gemm_few(pack_fn upack, int offset, const int kind, const int with_min,
                                 const int big, size_t w_block, int64_t nb, const uint8_t *w,
                                 size_t w_row_bytes, int n_rows, const uint8_t *x, size_t x_row_bytes,
                                 const int TOK, float *y, size_t y_stride) {
    int32_t corr[FEW_TOK][FEW_CHUNK];
    for (int64_t kc = 0; kc < nb; kc += FEW_CHUNK) {
        const int nblk = (int)(nb - kc < FEW_CHUNK ? nb - kc : FEW_CHUNK);
        const uint8_t *xk = x + (size_t)kc * act_block(with_min);
        if (offset)
            for (int t = 0; t < TOK; t++)
                act_offsets(xk + (size_t)t * x_row_bytes, nblk, act_block(with_min), act_qs(with_min),
                            offset, corr[t]);
        {
            /* Nothing brought in the first rows: ask for all their bytes of
             * this chunk at once, which at least overlaps the misses. */
            const int first_rows = min_int(8, n_rows);
            const uint8_t *first = w + (size_t)kc * w_block;
            const size_t first_bytes = (size_t)(first_rows - 1) * w_row_bytes + (size_t)nblk * w_block;
            for (size_t o = 0; o < first_bytes; o += 64) _mm_prefetch((const char *)(first + o), _MM_HINT_T0);
        }
        for (int r0 = 0; r0 < n_rows; r0 += 8) {
            const int rows = min_int(8, n_rows - r0);
            const uint8_t *wp = w + (size_t)r0 * w_row_bytes + (size_t)kc * w_block;
            /* The next rows' bytes of this chunk, prefetched evenly over its
             * blocks (no pointer past them is formed). */
            const int next_rows = min_int(8, n_rows - r0 - rows);
            const size_t next_bytes =
                next_rows ? (size_t)(next_rows - 1) * w_row_bytes + (size_t)nblk * w_block : 0;
            const uint8_t *next = next_bytes ? wp + (size_t)rows * w_row_bytes : wp;
            const size_t step = ((next_bytes / (size_t)nblk) & ~(size_t)63) + 64;
            size_t ahead = 0;
            __m256 acc[FEW_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++)
                acc[t] = kc == 0 ? _mm256_setzero_ps() : load_rows(y + (size_t)t * y_stride + r0, rows);
            for (int b = 0; b < nblk; b++) {
                for (const size_t end = ahead + step; ahead < end && ahead < next_bytes; ahead += 64)
                    _mm_prefetch((const char *)(next + ahead), _MM_HINT_T0);
                rows8 o;
                pack_rows(upack, wp + (size_t)b * w_block, w_row_bytes, rows, w_block, &o);
#pragma GCC unroll 4
                for (int t = 0; t < TOK; t++) {
                    const uint8_t *xb = xk + (size_t)t * x_row_bytes + (size_t)b * act_block(with_min);
                    __m256 dx, sx;
                    act_scales(xb, with_min, &dx, &sx);
#define XV(j) _mm256_set1_epi32((int)nuri_load_u32(xb + act_qs(with_min) + 4 * (j)))
                    __m256i isum;
                    BLOCK_ISUM(isum, &o, offset ? _mm256_set1_epi32(corr[t][b]) : _mm256_setzero_si256(),
                               XV, kind, big);
#undef XV
                    acc[t] = _mm256_add_ps(acc[t], block_term(isum, &o, dx, sx, with_min));
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) store_rows(y + (size_t)t * y_stride + r0, rows, acc[t]);
        }
    }
}


/* ---- Integer vec_dot -------------------------------------------------------
 *
 * One row against one activation row: 8 consecutive blocks of the row take
 * the lanes (packed as if they were rows), the activation blocks are
 * transposed to match, and the per-block terms are summed in block order. */

ALWAYS_INLINE void int8_vec_dot(pack_fn pack, size_t w_block, const int kind, const int with_min,
                                const int big, int64_t n, float *result, const void *w, const void *x) {
    const int64_t nb = n / 32;
    const size_t x_block = act_block(with_min), x_qs = act_qs(with_min);
    alignas(32) float terms[8];
    float sum = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += 8) {
        const int cnt = (int)(nb - b0 < 8 ? nb - b0 : 8);
        const uint8_t *xp = (const uint8_t *)x + (size_t)b0 * x_block;
        uint8_t xtmp[8 * 36];
        if (cnt < 8) {
            memset(xtmp, 0, sizeof xtmp);
            memcpy(xtmp, xp, (size_t)cnt * x_block);
            xp = xtmp;
        }
        rows8 o;
        pack_rows(pack, (const uint8_t *)w + (size_t)b0 * w_block, w_block, cnt, w_block, &o);
        __m256i xq[8];
        load_8x4(xp + x_qs, x_block, xq);
        load_8x4(xp + x_qs + 16, x_block, xq + 4);
        __m256i isum;
#define XV(j) xq[j]
        BLOCK_ISUM(isum, &o, kind == DOT_SHIFTED ? o.corr : _mm256_setzero_si256(), XV, kind, big);
#undef XV
        const __m256i xd = load_dwords(xp, x_block);
        __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(o.d, halves_lo(xd)));
        if (with_min) p = _mm256_add_ps(p, _mm256_mul_ps(o.m, halves_hi(xd)));
        _mm256_store_ps(terms, p);
        for (int i = 0; i < cnt; i++) sum += terms[i];
    }
    *result = sum;
}

/* Per format: the panel packer and its dot kind, the few-token packer with
 * its kind and offset, Q8_1 activations (MIN), levels that need widening
 * every 4 dwords (BIG). */
#define INT8_TYPE(NAME, PACK, KIND, UPACK, UKIND, OFFSET, BLOCK, MIN, BIG)                         \
    TILE_FNS(NAME, KIND, MIN, BIG)                                                                 \
    static void gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,         \
                            const void *x, size_t x_row_bytes, int n_tok, float *y,                \
                            size_t y_stride) {                                                     \
        const int64_t nb = n_cols / 32;                                                            \
        if (nb == 0) {                                                                             \
            zero_output(n_rows, n_tok, y, y_stride);                                               \
            return;                                                                                \
        }                                                                                          \
        switch (n_tok) {                                                                           \
        case 1: int8_gemm_few(UPACK, OFFSET, UKIND, MIN, BIG, BLOCK, nb, w, w_row_bytes, n_rows,   \
                              x, x_row_bytes, 1, y, y_stride); break;                              \
        case 2: int8_gemm_few(UPACK, OFFSET, UKIND, MIN, BIG, BLOCK, nb, w, w_row_bytes, n_rows,   \
                              x, x_row_bytes, 2, y, y_stride); break;                              \
        case 3: int8_gemm_few(UPACK, OFFSET, UKIND, MIN, BIG, BLOCK, nb, w, w_row_bytes, n_rows,   \
                              x, x_row_bytes, 3, y, y_stride); break;                              \
        case 4: int8_gemm_few(UPACK, OFFSET, UKIND, MIN, BIG, BLOCK, nb, w, w_row_bytes, n_rows,   \
                              x, x_row_bytes, 4, y, y_stride); break;                              \
        default: int8_gemm_panels(PACK, BLOCK, tiles_##NAME, MIN, nb, w, w_row_bytes, n_rows, x,   \
                                  x_row_bytes, n_tok, y, y_stride);                                \
        }                                                                                          \
    }                                                                                              \
    static void vec_dot_##NAME(int64_t n, float *result, const void *w, const void *x) {           \
        int8_vec_dot(PACK, BLOCK, KIND, MIN, BIG, n, result, w, x);                                \
    }

INT8_TYPE(q4_0, pack_q4_0, DOT_SHIFTED, upack_q4_0, DOT_UNSIGNED, 8, sizeof(nuri_block_q4_0), 0, 0)
INT8_TYPE(q5_0, pack_q5_0, DOT_SHIFTED, upack_q5_0, DOT_UNSIGNED, 16, sizeof(nuri_block_q5_0), 0, 1)
INT8_TYPE(q4_1, pack_q4_1, DOT_UNSIGNED, pack_q4_1, DOT_UNSIGNED, 0, sizeof(nuri_block_q4_1), 1, 0)
INT8_TYPE(q5_1, pack_q5_1, DOT_UNSIGNED, pack_q5_1, DOT_UNSIGNED, 0, sizeof(nuri_block_q5_1), 1, 1)
INT8_TYPE(q8_0, pack_q8_0, DOT_SIGNED8, pack_q8_0, DOT_SIGNED8, 0, sizeof(nuri_block_q8_0), 0, 0)

/* ---- Float formats -----------------------------------------------------------
 *
 * Each (row, token) pair keeps 8 partial sums, lane i summing the products
 * of columns i, i+8, ... with fused multiply-adds; the lanes are then added
 * in a fixed tree. A last partial group of columns is copied into a zeroed
 * group first. */

enum { FLOAT_F32, FLOAT_F16, FLOAT_BF16 };

ALWAYS_INLINE __m256 load_weights8(const uint8_t *p, const int kind) {
    if (kind == FLOAT_F32) return _mm256_loadu_ps((const float *)(const void *)p);
    const __m128i h = load128(p);
    if (kind == FLOAT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE float sum_lanes(__m256 v) {
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

#define MAX_FROWS 4
#define MAX_FTOK 2

/* pf, pf_len: bytes to prefetch while this tile runs (the next rows; 0 for
 * none), spread evenly over its steps. */
ALWAYS_INLINE void float_tile(int64_t n, const uint8_t *w, size_t w_row_bytes, const uint8_t *x,
                              size_t x_row_bytes, float *y, size_t y_stride, const uint8_t *pf,
                              size_t pf_len, const int kind, const int ROWS, const int TOK) {
    const size_t wsize = kind == FLOAT_F32 ? 4 : 2;
    const size_t pf_step = ((pf_len / (size_t)((n + 7) / 8)) & ~(size_t)63) + 64;
    size_t ahead = 0;
    __m256 acc[MAX_FROWS][MAX_FTOK];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 2
        for (int t = 0; t < TOK; t++) acc[r][t] = _mm256_setzero_ps();
    const int64_t full = n & ~(int64_t)7;
    for (int64_t k = 0; k <= full; k += 8) {
        const int live = k < full ? 8 : (int)(n - full);
        if (live == 0) break;
        for (const size_t end = ahead + pf_step; ahead < end && ahead < pf_len; ahead += 64)
            _mm_prefetch((const char *)(pf + ahead), _MM_HINT_T0);
        /* Activations first, then one weight vector at a time: few live
         * registers, so no accumulator spills. */
        alignas(32) uint8_t tmp[32];
        __m256 xv[MAX_FTOK];
#pragma GCC unroll 2
        for (int t = 0; t < TOK; t++) {
            const uint8_t *src = x + (size_t)t * x_row_bytes + (size_t)k * 4;
            if (live < 8) {
                memset(tmp, 0, sizeof tmp);
                memcpy(tmp, src, (size_t)live * 4);
                src = tmp;
            }
            xv[t] = _mm256_loadu_ps((const float *)(const void *)src);
        }
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; r++) {
            const uint8_t *src = w + (size_t)r * w_row_bytes + (size_t)k * wsize;
            if (live < 8) {
                memset(tmp, 0, sizeof tmp);
                memcpy(tmp, src, (size_t)live * wsize);
                src = tmp;
            }
            const __m256 wv = load_weights8(src, kind);
#pragma GCC unroll 2
            for (int t = 0; t < TOK; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 2
        for (int t = 0; t < TOK; t++) y[(size_t)t * y_stride + r] = sum_lanes(acc[r][t]);
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
#define FTILE_ROW(KIND, R) FTILE_FN(KIND, R, 1) FTILE_FN(KIND, R, 2)
#define FTILE_ALL(KIND) FTILE_ROW(KIND, 1) FTILE_ROW(KIND, 2) FTILE_ROW(KIND, 3) FTILE_ROW(KIND, 4)
FTILE_ALL(FLOAT_F32)
FTILE_ALL(FLOAT_F16)
FTILE_ALL(FLOAT_BF16)

#define FTILE_TABLE_ROW(KIND, R) {ftile_##KIND##_##R##_1, ftile_##KIND##_##R##_2}
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
 * As in kernels_avx512.c: the reference's steps, roundf as trunc plus a
 * step away from zero when the exact remainder is at least 0.5, NaN to 0. */

ALWAYS_INLINE __m256 abs_ps(__m256 v) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
}

ALWAYS_INLINE __m256i round_clamp(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
    __m256 r = _mm256_add_ps(t, _mm256_and_ps(up, step));
    r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    const __m256 ordered = _mm256_cmp_ps(v, v, _CMP_ORD_Q);
    return _mm256_and_si256(_mm256_cvtps_epi32(r), _mm256_castps_si256(ordered));
}

ALWAYS_INLINE uint16_t to_half(float f) {
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
}

/* Quantizes one block of 32 floats: the 32 levels into qs, returns d and
 * the sum of the levels. */
ALWAYS_INLINE float quantize_block(const float *src, int8_t *qs, int *sum_out) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(src + 8 * i);
        m = _mm256_max_ps(abs_ps(v[i]), m); /* a NaN lane keeps m (the second operand) */
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float d = _mm_cvtss_f32(h) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; i++) q[i] = round_clamp(_mm256_mul_ps(v[i], idv));
    /* packs interleave 128-bit lanes; the permute restores element order. */
    const __m256i q16a = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
    const __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b),
                                                   _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)qs, q8);
    if (sum_out) {
        const __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
        *sum_out = _mm_cvtsi128_si32(t);
    }
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
        int sum;
        const float d = quantize_block(src + 32 * b, blk.qs, &sum);
        blk.d = to_half(d);
        blk.s = to_half((float)sum * d);
        memcpy(out + b * sizeof blk, &blk, sizeof blk);
    }
}

/* ---- Table ------------------------------------------------------------------- */

void nuri_kernels_fill_avx2(nuri_kernel table[NURI_TYPE_COUNT]) {
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
typedef int nuri_kernels_avx2_not_built; /* keeps the translation unit non-empty */
#endif
