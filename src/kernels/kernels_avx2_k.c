/* kernels_avx2_k.c — AVX2 kernels for the K-quants (Q2_K ... Q6_K against
 * Q8_K), IQ4_XS (against Q8_K) and IQ4_NL (against Q8_0), and the Q8_K
 * activation quantizer: the design of kernels_avx512_k.c with 8 lanes.
 *
 * 8 weight rows are packed per super-block so that 32-bit lane r holds four
 * consecutive weights of row r; an activation dword broadcast to all lanes
 * multiplies them with vpmaddubsw (unsigned x signed bytes into saturating
 * 16-bit pair sums), and vpmaddwd by ones widens to 32 bits. Saturation is
 * avoided by construction: the K-quant levels are unsigned and small (a
 * pair sum is at most 2 * 63 * 128 = 16128 for Q6_K), and 16-bit sums are
 * widened before they could pass 32767. The IQ4 levels are signed
 * (|level| <= 127): they go in as |level| against the activation with the
 * level's sign (vpsignb), which needs activations != -128 (no quantizer
 * writes -128; every other path is exact for any int8 value).
 *
 * Per group: S = sum(u * y), isum += S * scale; the group-sum terms (the
 * minimums, the level offsets of Q3_K and Q6_K) come from the activation
 * block's bsums with vpmaddwd on word pairs. The integers equal the
 * reference's (for Q8_K rows whose bsums are their group sums, as every
 * quantizer writes) and the float part repeats its operations in its
 * order, so every result equals the scalar reference bit for bit.
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

/* Byte k (0..3) of each dword, zero-extended. */
ALWAYS_INLINE __m256i dword_byte(__m256i v, int k) {
    return _mm256_and_si256(_mm256_srli_epi32(v, 8 * k), _mm256_set1_epi32(0xFF));
}

/* Two int32 vectors of small values as word pairs: a in the low, b in the
 * high half of each dword (the layout vpmaddwd multiplies). */
ALWAYS_INLINE __m256i word_pair(__m256i a, __m256i b) {
    return _mm256_blend_epi16(a, _mm256_slli_epi32(b, 16), 0xAA);
}

/* a | (b & c), bitwise. */
ALWAYS_INLINE __m256i or_and(__m256i a, __m256i b, __m256i c) { return _mm256_or_si256(a, _mm256_and_si256(b, c)); }

/* v shifted left by n (right for negative n) within 16-bit lanes. */
ALWAYS_INLINE __m256i shift16(__m256i v, int n) {
    if (n > 0) return _mm256_slli_epi16(v, n);
    if (n < 0) return _mm256_srli_epi16(v, -n);
    return v;
}

/* ---- Packed super-blocks ------------------------------------------------------
 *
 * As in kernels_avx512_k.c: w[8c + j] holds elements 32c + 4j .. +3 of
 * each lane's row; the IQ4 formats keep |level| in w and the signed level
 * in s (for its sign). */

enum { K_Q2, K_Q3, K_Q4, K_Q5, K_Q6, K_IQ4XS };

typedef struct {
    __m256i w[64];
    __m256i s[64]; /* IQ4_XS only */
    __m256i sc[16];
    __m256i pairs[8];
    __m256 d, dmin;
} ksb8;

ALWAYS_INLINE int k_groups(int kind) { return kind == K_Q4 || kind == K_Q5 || kind == K_IQ4XS ? 8 : 16; }
ALWAYS_INLINE int k_has_min(int kind) { return kind == K_Q2 || kind == K_Q4 || kind == K_Q5; }
/* log2 of the level offset of Q3_K and Q6_K (IQ4 levels are used signed). */
ALWAYS_INLINE int k_offset_shift(int kind) { return kind == K_Q3 ? 2 : kind == K_Q6 ? 5 : 0; }
/* Dwords whose 16-bit pair sums may be added before widening: a pair sum
 * is at most 2 * 128 * (largest level), and the sum must stay <= 32767. */
ALWAYS_INLINE int k_widen_every(int kind) {
    switch (kind) {
    case K_Q2: return 8;  /* 768 per pair */
    case K_Q3: return 8;  /* 1792 */
    case K_Q4: return 8;  /* 3840 */
    case K_Q5: return 4;  /* 7936 */
    case K_Q6: return 2;  /* 16128 */
    default: return 1;    /* 32512 */
    }
}

ALWAYS_INLINE size_t k_block(int kind) {
    switch (kind) {
    case K_Q2: return sizeof(nuri_block_q2_k);
    case K_Q3: return sizeof(nuri_block_q3_k);
    case K_Q4: return sizeof(nuri_block_q4_k);
    case K_Q5: return sizeof(nuri_block_q5_k);
    case K_Q6: return sizeof(nuri_block_q6_k);
    default: return sizeof(nuri_block_iq4_xs);
    }
}

ALWAYS_INLINE void pack_k4_common(const uint8_t *p, size_t st, size_t qs_off, ksb8 *o) {
    __m256i h[4];
    load_8x4(p, st, h); /* d|dmin, scale bytes 0-3, 4-7, 8-11 */
    o->d = halves_lo(h[0]);
    o->dmin = halves_hi(h[0]);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m6 = _mm256_set1_epi8(0x3F), m30 = _mm256_set1_epi8(0x30);
    const __m256i sc_a = _mm256_and_si256(h[1], m6), m_a = _mm256_and_si256(h[2], m6);
    const __m256i sc_b = or_and(_mm256_and_si256(h[3], m4), _mm256_srli_epi32(h[1], 2), m30);
    const __m256i m_b = or_and(_mm256_and_si256(_mm256_srli_epi32(h[3], 4), m4), _mm256_srli_epi32(h[2], 2), m30);
    __m256i mins[8];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        o->sc[j] = dword_byte(sc_a, j);
        o->sc[j + 4] = dword_byte(sc_b, j);
        mins[j] = dword_byte(m_a, j);
        mins[j + 4] = dword_byte(m_b, j);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) o->pairs[k] = word_pair(mins[2 * k], mins[2 * k + 1]);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i a[8];
        load_8x8(p + qs_off + 32 * k, st, a);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            o->w[16 * k + j] = _mm256_and_si256(a[j], m4);
            o->w[16 * k + 8 + j] = _mm256_and_si256(_mm256_srli_epi16(a[j], 4), m4);
        }
    }
}

ALWAYS_INLINE void pack_q4_k(const uint8_t *p, size_t st, ksb8 *o) { pack_k4_common(p, st, 16, o); }

ALWAYS_INLINE void pack_q5_k(const uint8_t *p, size_t st, ksb8 *o) {
    pack_k4_common(p, st, 48, o);
    __m256i qh[8];
    load_8x8(p + 16, st, qh);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) o->w[8 * c + j] = or_and(o->w[8 * c + j], shift16(qh[j], 4 - c), bit4);
}

ALWAYS_INLINE void pack_q6_k(const uint8_t *p, size_t st, ksb8 *o) {
    __m256i s[4];
    load_8x4(p + 192, st, s);
    o->d = halves_hi(load_dwords(p + 206, st));
    o->dmin = _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) o->sc[g] = _mm256_srai_epi32(_mm256_slli_epi32(s[g / 4], 24 - 8 * (g % 4)), 24);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) o->pairs[k] = word_pair(o->sc[2 * k], o->sc[2 * k + 1]);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i qa[8], qb[8], qh[8];
        load_8x8(p + 64 * h, st, qa);
        load_8x8(p + 64 * h + 32, st, qb);
        load_8x8(p + 128 + 32 * h, st, qh);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i lo[4] = {_mm256_and_si256(qa[j], m4), _mm256_and_si256(qb[j], m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qa[j], 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qb[j], 4), m4)};
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) o->w[8 * (4 * h + k) + j] = or_and(lo[k], shift16(qh[j], 4 - 2 * k), m30);
        }
    }
}

ALWAYS_INLINE void pack_q3_k(const uint8_t *p, size_t st, ksb8 *o) {
    __m256i t[4];
    load_8x4(p + 94, st, t); /* bytes 94..109: scales at 96..107, d at 108 */
    o->d = halves_hi(t[3]);
    o->dmin = _mm256_setzero_ps();
    const __m256i a = _mm256_or_si256(_mm256_srli_epi32(t[0], 16), _mm256_slli_epi32(t[1], 16));
    const __m256i b = _mm256_or_si256(_mm256_srli_epi32(t[1], 16), _mm256_slli_epi32(t[2], 16));
    const __m256i c = _mm256_or_si256(_mm256_srli_epi32(t[2], 16), _mm256_slli_epi32(t[3], 16));
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i v[4] = {or_and(_mm256_and_si256(a, m4), _mm256_slli_epi32(c, 4), m30),
                          or_and(_mm256_and_si256(b, m4), _mm256_slli_epi32(c, 2), m30),
                          or_and(_mm256_and_si256(_mm256_srli_epi32(a, 4), m4), c, m30),
                          or_and(_mm256_and_si256(_mm256_srli_epi32(b, 4), m4), _mm256_srli_epi32(c, 2), m30)};
    const __m256i bias = _mm256_set1_epi32(32);
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) o->sc[g] = _mm256_sub_epi32(dword_byte(v[g / 4], g % 4), bias);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) o->pairs[k] = word_pair(o->sc[2 * k], o->sc[2 * k + 1]);
    __m256i hm[8];
    load_8x8(p, st, hm);
    const __m256i m3 = _mm256_set1_epi8(0x03), bit2 = _mm256_set1_epi8(0x04);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i qs[8];
        load_8x8(p + 32 + 32 * h, st, qs);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const int run = 4 * h + k;
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                o->w[8 * run + j] = or_and(_mm256_and_si256(_mm256_srli_epi16(qs[j], 2 * k), m3),
                                           shift16(hm[j], 2 - run), bit2);
        }
    }
}

ALWAYS_INLINE void pack_q2_k(const uint8_t *p, size_t st, ksb8 *o) {
    __m256i s[4];
    load_8x4(p, st, s);
    const __m256i dd = load_dwords(p + 80, st);
    o->d = halves_lo(dd);
    o->dmin = halves_hi(dd);
    const __m256i m4 = _mm256_set1_epi32(0x0F);
    __m256i mins[16];
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        o->sc[g] = _mm256_and_si256(_mm256_srli_epi32(s[g / 4], 8 * (g % 4)), m4);
        mins[g] = _mm256_and_si256(_mm256_srli_epi32(s[g / 4], 8 * (g % 4) + 4), m4);
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) o->pairs[k] = word_pair(mins[2 * k], mins[2 * k + 1]);
    const __m256i m3 = _mm256_set1_epi8(0x03);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i qs[8];
        load_8x8(p + 16 + 32 * h, st, qs);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                o->w[8 * (4 * h + k) + j] = _mm256_and_si256(_mm256_srli_epi16(qs[j], 2 * k), m3);
    }
}

/* The IQ4 levels as signed bytes, for vpshufb. */
ALWAYS_INLINE __m256i iq4_table(void) {
    return _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
}

ALWAYS_INLINE void pack_iq4_xs(const uint8_t *p, size_t st, ksb8 *o) {
    const __m256i h0 = load_dwords(p, st), h1 = load_dwords(p + 4, st);
    o->d = halves_lo(h0);
    o->dmin = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi32(0x0F), m3 = _mm256_set1_epi32(3), bias = _mm256_set1_epi32(32);
#pragma GCC unroll 8
    for (int ib = 0; ib < 8; ib++) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi32(h1, 4 * ib), m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi32(h0, 16 + 2 * ib), m3);
        o->sc[ib] = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), bias);
    }
    const __m256i table = iq4_table(), n4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) {
        __m256i q[4];
        load_8x4(p + 8 + 16 * c, st, q);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            o->s[8 * c + j] = _mm256_shuffle_epi8(table, _mm256_and_si256(q[j], n4));
            o->s[8 * c + 4 + j] = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q[j], 4), n4));
            o->w[8 * c + j] = _mm256_abs_epi8(o->s[8 * c + j]);
            o->w[8 * c + 4 + j] = _mm256_abs_epi8(o->s[8 * c + 4 + j]);
        }
    }
}

ALWAYS_INLINE void pack_k(const int kind, const uint8_t *p, size_t st, ksb8 *o) {
    switch (kind) {
    case K_Q2: pack_q2_k(p, st, o); break;
    case K_Q3: pack_q3_k(p, st, o); break;
    case K_Q4: pack_q4_k(p, st, o); break;
    case K_Q5: pack_q5_k(p, st, o); break;
    case K_Q6: pack_q6_k(p, st, o); break;
    default: pack_iq4_xs(p, st, o); break;
    }
}

/* Packs 8 rows (fewer at the end of the matrix via a zeroed copy). */
ALWAYS_INLINE void pack_k_rows(const int kind, const uint8_t *p, size_t stride, int n, ksb8 *o) {
    if (n >= 8) {
        pack_k(kind, p, stride, o);
        return;
    }
    const size_t bytes = k_block(kind);
    uint8_t tmp[8 * sizeof(nuri_block_q6_k)];
    memset(tmp, 0, sizeof tmp);
    for (int r = 0; r < n; r++) memcpy(tmp + (size_t)r * bytes, p + (size_t)r * stride, bytes);
    pack_k(kind, tmp, bytes, o);
}

/* ---- Products of one packed super-block with TOK activation blocks -------------- */

#define MAX_TOK 4
#define Q8K_QS 4
#define Q8K_BSUMS 260

/* The activation block's group-sum pairs (see kernels_avx512_k.c). */
ALWAYS_INLINE __m256i act_pair(const uint8_t *yb, int k, const int groups) {
    if (groups == 16) return _mm256_set1_epi32((int)nuri_load_u32(yb + Q8K_BSUMS + 4 * k));
    alignas(16) int32_t sums[4];
    _mm_store_si128((__m128i *)(void *)sums, _mm_hadd_epi16(load128(yb + Q8K_BSUMS), load128(yb + Q8K_BSUMS + 16)));
    return _mm256_set1_epi32(sums[k]);
}

/* 16-bit pair sums of one dword position j against the broadcast activation dword. */
ALWAYS_INLINE __m256i pair_sums(const int kind, const ksb8 *o, int j, __m256i y) {
    if (kind == K_IQ4XS) return _mm256_maddubs_epi16(o->w[j], _mm256_sign_epi8(y, o->s[j]));
    return _mm256_maddubs_epi16(o->w[j], y);
}

ALWAYS_INLINE void k_dot(const int kind, const ksb8 *o, const uint8_t *const yb[MAX_TOK], const int TOK,
                         __m256 acc[MAX_TOK]) {
    const int groups = k_groups(kind), per = 64 / groups, every = k_widen_every(kind);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256i isum[MAX_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int g = 0; g < groups; g++) {
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) {
            __m256i s = _mm256_setzero_si256(), part = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int j = 0; j < per; j++) {
                const int dw = g * per + j;
                const __m256i p = pair_sums(kind, o, dw, _mm256_set1_epi32((int)nuri_load_u32(yb[t] + Q8K_QS + 4 * dw)));
                part = j % every == 0 ? p : _mm256_add_epi16(part, p);
                if (j % every == every - 1 || j == per - 1) s = _mm256_add_epi32(s, _mm256_madd_epi16(part, ones16));
            }
            isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(s, o->sc[g]));
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) {
        const __m256 dy = _mm256_set1_ps(nuri_load_f32(yb[t]));
        __m256 p;
        if (kind == K_IQ4XS) {
            p = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(o->d, dy));
        } else {
            __m256i bsum = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int k = 0; k < groups / 2; k++)
                bsum = _mm256_add_epi32(bsum, _mm256_madd_epi16(o->pairs[k], act_pair(yb[t], k, groups)));
            if (k_has_min(kind)) {
                p = _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(o->d, dy)),
                                  _mm256_mul_ps(_mm256_cvtepi32_ps(bsum), _mm256_mul_ps(o->dmin, dy)));
            } else {
                const __m256i exact = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(bsum, k_offset_shift(kind)));
                p = _mm256_mul_ps(_mm256_cvtepi32_ps(exact), _mm256_mul_ps(o->d, dy));
            }
        }
        acc[t] = _mm256_add_ps(acc[t], p);
    }
}

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

/* ---- gemm, few tokens: pack and use each super-block of 8 rows at once ------------ */

ALWAYS_INLINE void k_gemm_few(const int kind, int64_t nb, const uint8_t *w, size_t w_row_bytes, int n_rows,
                              const uint8_t *x, size_t x_row_bytes, const int TOK, float *y, size_t y_stride) {
    const size_t bs = k_block(kind);
    for (int r0 = 0; r0 < n_rows; r0 += 8) {
        const int rows = min_int(8, n_rows - r0);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        const int next_rows = min_int(8, n_rows - r0 - rows);
        const size_t next_bytes = next_rows ? (size_t)(next_rows - 1) * w_row_bytes + (size_t)nb * bs : 0;
        const uint8_t *next = next_bytes ? wp + (size_t)rows * w_row_bytes : wp;
        const size_t step = ((next_bytes / (size_t)nb) & ~(size_t)63) + 64;
        size_t ahead = 0;
        __m256 acc[MAX_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) acc[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            /* In two halves around the packing, as kernels_avx512_k.c does. */
            for (const size_t end = ahead + step / 2; ahead < end && ahead < next_bytes; ahead += 64)
                _mm_prefetch((const char *)(next + ahead), _MM_HINT_T0);
            ksb8 o;
            pack_k_rows(kind, wp + (size_t)b * bs, w_row_bytes, rows, &o);
            for (const size_t end = ahead + (step - step / 2); ahead < end && ahead < next_bytes; ahead += 64)
                _mm_prefetch((const char *)(next + ahead), _MM_HINT_T0);
            const uint8_t *yb[MAX_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) yb[t] = x + (size_t)t * x_row_bytes + (size_t)b * sizeof(nuri_block_q8_k);
            k_dot(kind, &o, yb, TOK, acc);
        }
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) store_rows(y + (size_t)t * y_stride + r0, rows, acc[t]);
    }
}

/* ---- gemm, many tokens: chunks of packed super-blocks, tiles of 4 tokens ---------- */

#define K_CHUNK 4

ALWAYS_INLINE void k_tile(const int kind, const ksb8 *pk, int nsb, const uint8_t *x, size_t x_row_bytes,
                          float *y, size_t y_stride, int rows, int first, const int TOK) {
    __m256 acc[MAX_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) acc[t] = first ? _mm256_setzero_ps() : load_rows(y + (size_t)t * y_stride, rows);
    for (int s = 0; s < nsb; s++) {
        const uint8_t *yb[MAX_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) yb[t] = x + (size_t)t * x_row_bytes + (size_t)s * sizeof(nuri_block_q8_k);
        k_dot(kind, pk + s, yb, TOK, acc);
    }
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) store_rows(y + (size_t)t * y_stride, rows, acc[t]);
}

typedef void (*k_tile_fn)(const ksb8 *pk, int nsb, const uint8_t *x, size_t x_row_bytes, float *y,
                          size_t y_stride, int rows, int first);

ALWAYS_INLINE void k_gemm_many(const int kind, const k_tile_fn tiles[MAX_TOK], int64_t nb, const uint8_t *w,
                               size_t w_row_bytes, int n_rows, const uint8_t *x, size_t x_row_bytes, int n_tok,
                               float *y, size_t y_stride) {
    const size_t bs = k_block(kind);
    alignas(32) ksb8 pk[K_CHUNK];
    for (int r0 = 0; r0 < n_rows; r0 += 8) {
        const int rows = min_int(8, n_rows - r0);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        for (int64_t kc = 0; kc < nb; kc += K_CHUNK) {
            const int nsb = (int)(nb - kc < K_CHUNK ? nb - kc : K_CHUNK);
            for (int s = 0; s < nsb; s++) pack_k_rows(kind, wp + (size_t)(kc + s) * bs, w_row_bytes, rows, &pk[s]);
            const uint8_t *xk = x + (size_t)kc * sizeof(nuri_block_q8_k);
            int t0 = 0;
            for (; t0 + MAX_TOK <= n_tok; t0 += MAX_TOK)
                tiles[MAX_TOK - 1](pk, nsb, xk + (size_t)t0 * x_row_bytes, x_row_bytes, y + (size_t)t0 * y_stride + r0,
                                   y_stride, rows, kc == 0);
            if (t0 < n_tok)
                tiles[n_tok - t0 - 1](pk, nsb, xk + (size_t)t0 * x_row_bytes, x_row_bytes,
                                      y + (size_t)t0 * y_stride + r0, y_stride, rows, kc == 0);
        }
    }
}


#define K_FEW(NAME, KIND, T)                                                                                 \
    static void few_##NAME##_##T(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr, \
                                 float *y, size_t ys) {                                                      \
        k_gemm_few(KIND, nb, w, wr, n, x, xr, T, y, ys);                                                     \
    }                                                                                                        \
    static void tile_##NAME##_##T(const ksb8 *pk, int nsb, const uint8_t *x, size_t xr, float *y, size_t ys, \
                                  int rows, int first) {                                                     \
        k_tile(KIND, pk, nsb, x, xr, y, ys, rows, first, T);                                                 \
    }

#define K_TYPE(NAME, KIND)                                                                                   \
    K_FEW(NAME, KIND, 1) K_FEW(NAME, KIND, 2) K_FEW(NAME, KIND, 3) K_FEW(NAME, KIND, 4)                      \
    static const k_tile_fn tiles_##NAME[MAX_TOK] = {tile_##NAME##_1, tile_##NAME##_2, tile_##NAME##_3,       \
                                                    tile_##NAME##_4};                                        \
    static void many_##NAME(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr,     \
                            int n_tok, float *y, size_t ys) {                                                \
        k_gemm_many(KIND, tiles_##NAME, nb, w, wr, n, x, xr, n_tok, y, ys);                                  \
    }                                                                                                        \
    static void gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows, const void *x,    \
                            size_t x_row_bytes, int n_tok, float *y, size_t y_stride) {                      \
        const int64_t nb = n_cols / NURI_QK_K;                                                               \
        if (nb == 0) {                                                                                       \
            zero_output(n_rows, n_tok, y, y_stride);                                                         \
            return;                                                                                          \
        }                                                                                                    \
        switch (n_tok) {                                                                                     \
        case 1: few_##NAME##_1(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); break;              \
        case 2: few_##NAME##_2(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); break;              \
        case 3: few_##NAME##_3(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); break;              \
        case 4: few_##NAME##_4(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); break;              \
        default: many_##NAME(nb, w, w_row_bytes, n_rows, x, x_row_bytes, n_tok, y, y_stride); break;         \
        }                                                                                                    \
    }                                                                                                        \
    static void vec_dot_##NAME(int64_t n, float *result, const void *w, const void *x) {                     \
        gemm_##NAME(n, w, 0, 1, x, 0, 1, result, 1);                                                         \
    }

K_TYPE(q2_k, K_Q2)
K_TYPE(q3_k, K_Q3)
K_TYPE(q4_k, K_Q4)
K_TYPE(q5_k, K_Q5)
K_TYPE(q6_k, K_Q6)
K_TYPE(iq4_xs, K_IQ4XS)

/* ---- IQ4_NL against Q8_0 ----------------------------------------------------------
 *
 * Blocks of 32, 8 rows packed at a time: |level| against the activation
 * with the level's sign, each dword widened at once (a pair sum can reach
 * 32512). */

typedef struct {
    __m256i w[8], s[8];
    __m256 d;
} nlb8;

ALWAYS_INLINE void pack_iq4_nl(const uint8_t *p, size_t st, nlb8 *o) {
    __m256i q[4];
    load_8x4(p + 2, st, q);
    const __m256i table = iq4_table(), n4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        o->s[j] = _mm256_shuffle_epi8(table, _mm256_and_si256(q[j], n4));
        o->s[4 + j] = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q[j], 4), n4));
        o->w[j] = _mm256_abs_epi8(o->s[j]);
        o->w[4 + j] = _mm256_abs_epi8(o->s[4 + j]);
    }
    o->d = halves_lo(load_dwords(p, st));
}

ALWAYS_INLINE void pack_nl_rows(const uint8_t *p, size_t stride, int n, nlb8 *o) {
    if (n >= 8) {
        pack_iq4_nl(p, stride, o);
        return;
    }
    uint8_t tmp[8 * sizeof(nuri_block_iq4_nl)];
    memset(tmp, 0, sizeof tmp);
    for (int r = 0; r < n; r++)
        memcpy(tmp + (size_t)r * sizeof(nuri_block_iq4_nl), p + (size_t)r * stride, sizeof(nuri_block_iq4_nl));
    pack_iq4_nl(tmp, sizeof(nuri_block_iq4_nl), o);
}

ALWAYS_INLINE void nl_dot(const nlb8 *o, const uint8_t *const xb[MAX_TOK], const int TOK, __m256 acc[MAX_TOK]) {
    const __m256i ones16 = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) {
        __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i y = _mm256_set1_epi32((int)nuri_load_u32(xb[t] + 2 + 4 * j));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(o->w[j], _mm256_sign_epi8(y, o->s[j])), ones16));
        }
        const __m256 dx = _mm256_set1_ps(_cvtsh_ss(nuri_load_u16(xb[t])));
        acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(o->d, dx)));
    }
}

#define NL_CHUNK 32

ALWAYS_INLINE void nl_gemm(int64_t nb, const uint8_t *w, size_t w_row_bytes, int n_rows, const uint8_t *x,
                           size_t x_row_bytes, int n_tok, float *y, size_t y_stride, const int TOK) {
    const size_t bs = sizeof(nuri_block_iq4_nl), xs = sizeof(nuri_block_q8_0);
    alignas(32) nlb8 pk[NL_CHUNK];
    for (int r0 = 0; r0 < n_rows; r0 += 8) {
        const int rows = min_int(8, n_rows - r0);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        for (int64_t kc = 0; kc < nb; kc += NL_CHUNK) {
            const int nblk = (int)(nb - kc < NL_CHUNK ? nb - kc : NL_CHUNK);
            for (int b = 0; b < nblk; b++) pack_nl_rows(wp + (size_t)(kc + b) * bs, w_row_bytes, rows, &pk[b]);
            for (int t0 = 0; t0 < n_tok; t0 += TOK) {
                __m256 acc[MAX_TOK];
#pragma GCC unroll 4
                for (int t = 0; t < TOK; t++)
                    acc[t] = kc == 0 ? _mm256_setzero_ps() : load_rows(y + (size_t)(t0 + t) * y_stride + r0, rows);
                for (int b = 0; b < nblk; b++) {
                    const uint8_t *xb[MAX_TOK];
#pragma GCC unroll 4
                    for (int t = 0; t < TOK; t++) xb[t] = x + (size_t)(t0 + t) * x_row_bytes + (size_t)(kc + b) * xs;
                    nl_dot(&pk[b], xb, TOK, acc);
                }
#pragma GCC unroll 4
                for (int t = 0; t < TOK; t++) store_rows(y + (size_t)(t0 + t) * y_stride + r0, rows, acc[t]);
            }
        }
    }
}

/* Generation: each block of 8 rows packed and used at once, the next
 * rows prefetched as one run spread over these rows' blocks. */
ALWAYS_INLINE void nl_gemm_few(int64_t nb, const uint8_t *w, size_t w_row_bytes, int n_rows, const uint8_t *x,
                               size_t x_row_bytes, float *y, size_t y_stride, const int TOK) {
    const size_t bs = sizeof(nuri_block_iq4_nl), xs = sizeof(nuri_block_q8_0);
    for (int r0 = 0; r0 < n_rows; r0 += 8) {
        const int rows = min_int(8, n_rows - r0);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        const int next_rows = min_int(8, n_rows - r0 - rows);
        const size_t next_bytes = next_rows ? (size_t)(next_rows - 1) * w_row_bytes + (size_t)nb * bs : 0;
        const uint8_t *next = next_bytes ? wp + (size_t)rows * w_row_bytes : wp;
        const size_t step = ((next_bytes / (size_t)nb) & ~(size_t)63) + 64;
        size_t ahead = 0;
        __m256 acc[MAX_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) acc[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            for (const size_t end = ahead + step; ahead < end && ahead < next_bytes; ahead += 64)
                _mm_prefetch((const char *)(next + ahead), _MM_HINT_T0);
            nlb8 o;
            pack_nl_rows(wp + (size_t)b * bs, w_row_bytes, rows, &o);
            const uint8_t *xb[MAX_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) xb[t] = x + (size_t)t * x_row_bytes + (size_t)b * xs;
            nl_dot(&o, xb, TOK, acc);
        }
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) store_rows(y + (size_t)t * y_stride + r0, rows, acc[t]);
    }
}

#include "kernels/kernels_x86_iq4_nl.h"

/* ---- Q8_K activations (the reference's steps; see kernels_avx512_k.c) ---------- */

ALWAYS_INLINE __m256 abs_ps(__m256 v) {
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7FFFFFFF)));
}

static void quantize_q8_k(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float *x = src + i * NURI_QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int g = 0; g < 32; g++) m = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 8 * g)), m); /* NaN keeps m */
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        nuri_block_q8_k b;
        memset(&b, 0, sizeof b);
        if (amax != 0.0f) {
            float max = 0.0f;
            const __m256 am = _mm256_set1_ps(amax);
            for (int g = 0; g < 32; g++) {
                const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * g)), am, _CMP_EQ_OQ));
                if (hit) {
                    max = x[8 * g + __builtin_ctz((unsigned)hit)];
                    break;
                }
            }
            const float iscale = -127.0f / max;
            const __m256 is = _mm256_set1_ps(iscale), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
            const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            for (int g = 0; g < 8; g++) {
                __m256i q[4];
                for (int k = 0; k < 4; k++) {
                    const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * k), is);
                    const __m256 ordered = _mm256_cmp_ps(s, s, _CMP_ORD_Q);
                    const __m256 c = _mm256_min_ps(_mm256_max_ps(s, lo), hi);
                    q[k] = _mm256_and_si256(_mm256_cvtps_epi32(c), _mm256_castps_si256(ordered));
                }
                /* Group sums of 16: two vectors each. */
                for (int k = 0; k < 2; k++) {
                    __m256i s = _mm256_add_epi32(q[2 * k], q[2 * k + 1]);
                    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                    s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
                    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 1));
                    b.bsums[2 * g + k] = (int16_t)_mm_cvtsi128_si32(s4);
                }
                const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
                const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order);
                _mm256_storeu_si256((__m256i *)(void *)(b.qs + 32 * g), bytes);
            }
            b.d = 1.0f / iscale;
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

/* ---- Table ------------------------------------------------------------------- */

void nuri_kernels_fill_avx2_k(nuri_kernel table[NURI_TYPE_COUNT]) {
    table[NURI_TYPE_Q2_K] = (nuri_kernel){vec_dot_q2_k, gemm_q2_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q3_K] = (nuri_kernel){vec_dot_q3_k, gemm_q3_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q4_K] = (nuri_kernel){vec_dot_q4_k, gemm_q4_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q5_K] = (nuri_kernel){vec_dot_q5_k, gemm_q5_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q6_K] = (nuri_kernel){vec_dot_q6_k, gemm_q6_k, quantize_q8_k, NULL};
    table[NURI_TYPE_IQ4_XS] = (nuri_kernel){vec_dot_iq4_xs, gemm_iq4_xs, quantize_q8_k, NULL};
    /* IQ4_NL keeps the Q8_0 activation quantizer already in the table. */
    table[NURI_TYPE_IQ4_NL] = (nuri_kernel){vec_dot_iq4_nl, gemm_iq4_nl, NULL, NULL};
}

#else
typedef int nuri_kernels_avx2_k_not_built; /* keeps the translation unit non-empty */
#endif
