/* kernels_avx512_k.c — AVX-512/VNNI kernels for the K-quants (Q2_K ... Q6_K
 * against Q8_K activations), IQ4_XS (against Q8_K) and IQ4_NL (against
 * Q8_0), and the Q8_K activation quantizer.
 *
 * The design of kernels_avx512.c, for super-blocks: 16 weight rows are
 * "packed" per super-block so that 32-bit lane r of a vector holds four
 * consecutive weights of row r as unsigned bytes; one activation dword
 * broadcast to all lanes then feeds one vpdpbusd per vector, and every lane
 * ends up with one row's exact integer sums, with no horizontal reductions.
 *
 * Per group of 16 (or 32) weights: S = sum(u * y) by vpdpbusd from zero,
 * then isum += S * scale (vpmulld, the scale per lane). Levels are unsigned
 * (u); the formats whose values are u - offset (Q3_K: 4, Q6_K: 32, IQ4_XS:
 * the table + 128 looked up with vpshufb) subtract offset * sum(scale_g *
 * bsum_g), and the formats with a minimum compute msum = sum(m_g * bsum_g),
 * both from the activation block's group sums with vpdpwssd on word pairs.
 * The integers equal the scalar reference's exactly (for Q8_K rows whose
 * bsums are their group sums, as every quantizer writes), and the float
 * part repeats its operations in its order, so every result equals the
 * reference bit for bit, whatever the path or the split.
 *
 * Generation (up to 4 tokens) packs each super-block into a buffer that
 * stays in L1 and uses it at once, prefetching the next rows (Q4_K, Q5_K and
 * Q6_K with one token skip the packing: see k_one_token); prompt batches
 * pack a few super-blocks once and run tiles of 4 tokens over them.
 *
 * Only dispatch.c calls in here, after checking the CPU. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "kernels/kernels_impl.h"

#include "kernels/kernels_avx512_common.h"

/* Byte k (0..3) of each dword, zero-extended. */
ALWAYS_INLINE __m512i dword_byte(__m512i v, int k) {
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * k), _mm512_set1_epi32(0xFF));
}

/* Two int32 vectors of small values as word pairs: a in the low, b in the
 * high half of each dword (the layout vpdpwssd multiplies). */
ALWAYS_INLINE __m512i word_pair(__m512i a, __m512i b) {
    return _mm512_mask_blend_epi16(0xAAAAAAAAu, a, _mm512_slli_epi32(b, 16));
}

/* a | (b & c), bitwise. */
ALWAYS_INLINE __m512i or_and(__m512i a, __m512i b, __m512i c) { return _mm512_ternarylogic_epi32(a, b, c, 0xF8); }

/* v shifted left by n (right for negative n) within 16-bit lanes. */
ALWAYS_INLINE __m512i shift16(__m512i v, int n) {
    if (n > 0) return _mm512_slli_epi16(v, (unsigned)n);
    if (n < 0) return _mm512_srli_epi16(v, (unsigned)-n);
    return v;
}

/* ---- Packed super-blocks ------------------------------------------------------
 *
 * One super-block (256 columns) of 16 rows. w[8c + j] holds elements
 * 32c + 4j .. 32c + 4j + 3 (the order of the activations' bytes) as
 * unsigned levels. Group g (16 weights, or 32 for the formats with eight
 * sub-blocks) has the integer scale sc[g]; pairs[k] holds the word pair of
 * the coefficients that multiply the activation group sums of groups 2k and
 * 2k+1 (the minimums, or the scales for the formats with an offset). */

enum { K_Q2, K_Q3, K_Q4, K_Q5, K_Q6, K_IQ4XS };

typedef struct {
    __m512i w[64];
    __m512i sc[16];
    __m512i pairs[8];
    __m512 d, dmin;
} ksb;

ALWAYS_INLINE int k_groups(int kind) { return kind == K_Q4 || kind == K_Q5 || kind == K_IQ4XS ? 8 : 16; }
ALWAYS_INLINE int k_has_min(int kind) { return kind == K_Q2 || kind == K_Q4 || kind == K_Q5; }
/* log2 of the level offset of the symmetric formats. */
ALWAYS_INLINE int k_offset_shift(int kind) { return kind == K_Q3 ? 2 : kind == K_Q6 ? 5 : kind == K_IQ4XS ? 7 : 0; }

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

/* Q4_K and Q5_K: scales and minimums from the 12 packed bytes, and the
 * nibbles of the 128 qs bytes at qs_off. */
ALWAYS_INLINE void pack_k4_common(const uint8_t *p, size_t st, size_t qs_off, ksb *o) {
    __m512i h[4];
    load_16x4(p, st, h); /* d|dmin, scale bytes 0-3, 4-7, 8-11 */
    o->d = halves_lo(h[0]);
    o->dmin = halves_hi(h[0]);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi8(0x3F), m30 = _mm512_set1_epi8(0x30);
    /* Bytes: scales 0-3, minimums 0-3, then 4-7 from the low/high nibbles
     * of bytes 8-11 and the top two bits of bytes 0-3 / 4-7. */
    const __m512i sc_a = _mm512_and_si512(h[1], m6), m_a = _mm512_and_si512(h[2], m6);
    const __m512i sc_b = or_and(_mm512_and_si512(h[3], m4), _mm512_srli_epi32(h[1], 2), m30);
    const __m512i m_b = or_and(_mm512_and_si512(_mm512_srli_epi32(h[3], 4), m4), _mm512_srli_epi32(h[2], 2), m30);
    __m512i mins[8];
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
        __m512i a[8];
        load_16x8(p + qs_off + 32 * k, st, a);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            o->w[16 * k + j] = _mm512_and_si512(a[j], m4);
            o->w[16 * k + 8 + j] = _mm512_and_si512(_mm512_srli_epi16(a[j], 4), m4);
        }
    }
}

ALWAYS_INLINE void pack_q4_k(const uint8_t *p, size_t st, ksb *o) { pack_k4_common(p, st, 16, o); }

ALWAYS_INLINE void pack_q5_k(const uint8_t *p, size_t st, ksb *o) {
    pack_k4_common(p, st, 48, o);
    __m512i qh[8];
    load_16x8(p + 16, st, qh);
    const __m512i bit4 = _mm512_set1_epi8(0x10);
    /* Element 32c + l takes bit c of qh[l] as its bit 4. */
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) o->w[8 * c + j] = or_and(o->w[8 * c + j], shift16(qh[j], 4 - c), bit4);
}

ALWAYS_INLINE void pack_q6_k(const uint8_t *p, size_t st, ksb *o) {
    __m512i s[4];
    load_16x4(p + 192, st, s); /* signed scales, groups 4k..4k+3 in dword k */
    o->d = halves_hi(gather_dwords(p + 206, st));
    o->dmin = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) o->sc[g] = _mm512_srai_epi32(_mm512_slli_epi32(s[g / 4], 24 - 8 * (g % 4)), 24);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) o->pairs[k] = word_pair(o->sc[2 * k], o->sc[2 * k + 1]);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i qa[8], qb[8], qh[8];
        load_16x8(p + 64 * h, st, qa);
        load_16x8(p + 64 * h + 32, st, qb);
        load_16x8(p + 128 + 32 * h, st, qh);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            /* Runs 0 and 1: low nibbles of the two 32-byte halves of ql;
             * runs 2 and 3: their high nibbles; run k's top bits are bits
             * 2k, 2k+1 of qh. */
            const __m512i lo[4] = {_mm512_and_si512(qa[j], m4), _mm512_and_si512(qb[j], m4),
                                   _mm512_and_si512(_mm512_srli_epi16(qa[j], 4), m4),
                                   _mm512_and_si512(_mm512_srli_epi16(qb[j], 4), m4)};
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) o->w[8 * (4 * h + k) + j] = or_and(lo[k], shift16(qh[j], 4 - 2 * k), m30);
        }
    }
}

ALWAYS_INLINE void pack_q3_k(const uint8_t *p, size_t st, ksb *o) {
    __m512i t[4];
    load_16x4(p + 94, st, t); /* bytes 94..109: scales at 96..107, d at 108 */
    o->d = halves_hi(t[3]);
    o->dmin = _mm512_setzero_ps();
    const __m512i a = _mm512_or_si512(_mm512_srli_epi32(t[0], 16), _mm512_slli_epi32(t[1], 16));
    const __m512i b = _mm512_or_si512(_mm512_srli_epi32(t[1], 16), _mm512_slli_epi32(t[2], 16));
    const __m512i c = _mm512_or_si512(_mm512_srli_epi32(t[2], 16), _mm512_slli_epi32(t[3], 16));
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* Six-bit scales of groups 4k..4k+3 as bytes: low nibbles from bytes
     * 0-7, top bits from bytes 8-11 (bits 2*(g/4)). */
    const __m512i v[4] = {or_and(_mm512_and_si512(a, m4), _mm512_slli_epi32(c, 4), m30),
                          or_and(_mm512_and_si512(b, m4), _mm512_slli_epi32(c, 2), m30),
                          or_and(_mm512_and_si512(_mm512_srli_epi32(a, 4), m4), c, m30),
                          or_and(_mm512_and_si512(_mm512_srli_epi32(b, 4), m4), _mm512_srli_epi32(c, 2), m30)};
    const __m512i bias = _mm512_set1_epi32(32);
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) o->sc[g] = _mm512_sub_epi32(dword_byte(v[g / 4], g % 4), bias);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) o->pairs[k] = word_pair(o->sc[2 * k], o->sc[2 * k + 1]);
    __m512i hm[8];
    load_16x8(p, st, hm);
    const __m512i m3 = _mm512_set1_epi8(0x03), bit2 = _mm512_set1_epi8(0x04);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i qs[8];
        load_16x8(p + 32 + 32 * h, st, qs);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const int run = 4 * h + k; /* the hmask bit of this run */
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                o->w[8 * run + j] = or_and(_mm512_and_si512(_mm512_srli_epi16(qs[j], 2 * k), m3),
                                           shift16(hm[j], 2 - run), bit2);
        }
    }
}

ALWAYS_INLINE void pack_q2_k(const uint8_t *p, size_t st, ksb *o) {
    __m512i s[4];
    load_16x4(p, st, s); /* scale bytes, groups 4k..4k+3 in dword k */
    const __m512i dd = gather_dwords(p + 80, st);
    o->d = halves_lo(dd);
    o->dmin = halves_hi(dd);
    const __m512i m4 = _mm512_set1_epi32(0x0F);
    __m512i mins[16];
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        o->sc[g] = _mm512_and_si512(_mm512_srli_epi32(s[g / 4], 8 * (g % 4)), m4);
        mins[g] = _mm512_and_si512(_mm512_srli_epi32(s[g / 4], 8 * (g % 4) + 4), m4);
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) o->pairs[k] = word_pair(mins[2 * k], mins[2 * k + 1]);
    const __m512i m3 = _mm512_set1_epi8(0x03);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i qs[8];
        load_16x8(p + 16 + 32 * h, st, qs);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                o->w[8 * (4 * h + k) + j] = _mm512_and_si512(_mm512_srli_epi16(qs[j], 2 * k), m3);
    }
}

/* The IQ4 levels plus 128 (so that they are unsigned), for vpshufb. */
ALWAYS_INLINE __m512i iq4_table(void) {
    return _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141,
                                                (char)153, (char)166, (char)181, (char)197, (char)217,
                                                (char)241));
}

ALWAYS_INLINE void pack_iq4_xs(const uint8_t *p, size_t st, ksb *o) {
    const __m512i h0 = gather_dwords(p, st), h1 = gather_dwords(p + 4, st);
    o->d = halves_lo(h0);
    o->dmin = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi32(0x0F), m3 = _mm512_set1_epi32(3), bias = _mm512_set1_epi32(32);
    /* Sub-block ib: low four bits at bit 4*ib of scales_l, top two at bit
     * 2*ib of scales_h (the high half of h0). */
#pragma GCC unroll 8
    for (int ib = 0; ib < 8; ib++) {
        const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(h1, 4 * ib), m4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(h0, 16 + 2 * ib), m3);
        o->sc[ib] = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), bias);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) o->pairs[k] = word_pair(o->sc[2 * k], o->sc[2 * k + 1]);
    const __m512i table = iq4_table(), n4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) {
        __m512i q[4];
        load_16x4(p + 8 + 16 * c, st, q);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            o->w[8 * c + j] = _mm512_shuffle_epi8(table, _mm512_and_si512(q[j], n4));
            o->w[8 * c + 4 + j] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q[j], 4), n4));
        }
    }
}

ALWAYS_INLINE void pack_k(const int kind, const uint8_t *p, size_t st, ksb *o) {
    switch (kind) {
    case K_Q2: pack_q2_k(p, st, o); break;
    case K_Q3: pack_q3_k(p, st, o); break;
    case K_Q4: pack_q4_k(p, st, o); break;
    case K_Q5: pack_q5_k(p, st, o); break;
    case K_Q6: pack_q6_k(p, st, o); break;
    default: pack_iq4_xs(p, st, o); break;
    }
}

/* Packs 16 rows (fewer at the end of the matrix: copied into a zeroed
 * block of 16 first, whose extra lanes compute values never stored). */
ALWAYS_INLINE void pack_k_rows(const int kind, const uint8_t *p, size_t stride, int n, ksb *o) {
    if (n >= 16) {
        pack_k(kind, p, stride, o);
        return;
    }
    const size_t bytes = k_block(kind);
    uint8_t tmp[16 * sizeof(nuri_block_q6_k)];
    memset(tmp, 0, sizeof tmp);
    for (int r = 0; r < n; r++) memcpy(tmp + (size_t)r * bytes, p + (size_t)r * stride, bytes);
    pack_k(kind, tmp, bytes, o);
}

/* ---- Products of one packed super-block with TOK activation blocks -------------- */

#define MAX_TOK 4
#define Q8K_QS 4
#define Q8K_BSUMS 260

/* The activation block's group-sum pairs for vpdpwssd: dword k holds the
 * sums of groups 2k and 2k+1 (16-weight groups as stored; 32-weight groups
 * as the sums of neighbouring stored pairs). */
ALWAYS_INLINE __m512i act_pair(const uint8_t *yb, int k, const int groups) {
    if (groups == 16) return _mm512_set1_epi32((int)nuri_load_u32(yb + Q8K_BSUMS + 4 * k));
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(yb + Q8K_BSUMS));
    const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(yb + Q8K_BSUMS + 16));
    alignas(16) int32_t sums[4]; /* words: the sums of the eight groups of 32 */
    _mm_store_si128((__m128i *)(void *)sums, _mm_hadd_epi16(lo, hi));
    return _mm512_set1_epi32(sums[k]);
}

ALWAYS_INLINE void k_dot(const int kind, const ksb *o, const uint8_t *const yb[MAX_TOK], const int TOK,
                         __m512 acc[MAX_TOK]) {
    const int groups = k_groups(kind), per = 64 / groups; /* dwords per group */
    __m512i isum[MAX_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int g = 0; g < groups; g++) {
        __m512i s[MAX_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) s[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int j = 0; j < per; j++) {
            const __m512i w = o->w[g * per + j];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++)
                s[t] = _mm512_dpbusd_epi32(s[t], w,
                                           _mm512_set1_epi32((int)nuri_load_u32(yb[t] + Q8K_QS + 4 * (g * per + j))));
        }
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s[t], o->sc[g]));
    }
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) {
        __m512i bsum = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < groups / 2; k++) bsum = _mm512_dpwssd_epi32(bsum, o->pairs[k], act_pair(yb[t], k, groups));
        const __m512 dy = _mm512_set1_ps(nuri_load_f32(yb[t]));
        __m512 p;
        if (k_has_min(kind)) {
            p = _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(o->d, dy)),
                              _mm512_mul_ps(_mm512_cvtepi32_ps(bsum), _mm512_mul_ps(o->dmin, dy)));
        } else {
            const __m512i exact = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(bsum, (unsigned)k_offset_shift(kind)));
            p = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(o->d, dy));
        }
        acc[t] = _mm512_add_ps(acc[t], p);
    }
}


/* ---- Q4_K, Q5_K, Q6_K and IQ4_XS, one token: rows unpacked in place ------------
 *
 * A generation step reads each weight once, and packing 16 rows (a
 * transposition) costs about as much as their arithmetic, so here each
 * row's super-block is unpacked where it lies, 64 levels per vector
 * against the activation bytes of the same columns (vpmaddubsw, then
 * vpdpwssd with each group's scale; IQ4_XS vpdpbusd, then vpmulld). The
 * partial sums of 16 rows are then added into one vector (lane r: row r)
 * and finished as k_dot finishes, so the integers and every float
 * operation are those of the packed path. */

/* The 256-bit halves of a vector of words: lo in the low, hi in the high. */
ALWAYS_INLINE __m512i words_by_half(short lo, short hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16(lo), _mm256_set1_epi16(hi), 1);
}

/* A row's 16 partial sums folded to 4 (their total is what counts). */
ALWAYS_INLINE __m128i fold_to_4(__m512i v) {
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Q6_K: one row's integer sum over one super-block, folded to 4 dwords:
 * sum(scale_g * (levels . activations)_g) - 32 * sum(scale_g * bsum_g).
 * neg_bsums: the activation block's 16 group sums negated (act_sums). */
ALWAYS_INLINE __m128i q6_k_row_sum(const uint8_t *blk, const uint8_t *yb, __m256i neg_bsums) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* The top bits of run k (0..3) of a half are bits 2k, 2k+1 of its 32
     * qh bytes; runs 0, 1 fill the low-nibble vector, 2, 3 the high one. */
    const __m512i mask_lo = _mm512_inserti64x4(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C), 1);
    const __m512i mask_hi = _mm512_inserti64x4(_mm512_set1_epi8(0x30), _mm256_set1_epi8((char)0xC0), 1);
    const __m512i shl_lo = words_by_half(4, 2), shr_hi = words_by_half(0, 2);
    const __m512i lane_of_word = _mm512_set_epi64(0x0003000300030003, 0x0003000300030003, 0x0002000200020002,
                                                  0x0002000200020002, 0x0001000100010001, 0x0001000100010001, 0, 0);
    const __m512i scales = _mm512_zextsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(blk + 192))));
    __m512i sum = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_slli_epi16(scales, 5),
                                      _mm512_zextsi256_si512(neg_bsums));
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i ql = _mm512_loadu_si512((const void *)(blk + 64 * h));
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 128 + 32 * h)));
        const __m512i lv[2] = {
            or_and(_mm512_sllv_epi16(_mm512_and_si512(qh, mask_lo), shl_lo), ql, m4),
            or_and(_mm512_srlv_epi16(_mm512_and_si512(qh, mask_hi), shr_hi), _mm512_srli_epi16(ql, 4), m4)};
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            const int k = 2 * h + j; /* levels 64k .. 64k+63: groups 4k .. 4k+3, 8 words each */
            const __m512i group_of_word = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * k)), lane_of_word);
            const __m512i act = _mm512_loadu_si512((const void *)(yb + Q8K_QS + 64 * k));
            sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(lv[j], act),
                                      _mm512_permutexvar_epi16(group_of_word, scales));
        }
    }
    return fold_to_4(sum);
}

/* Q4_K and Q5_K: one row's sums over one super-block, folded to 4 dwords
 * each: *isum = sum(scale_g * (levels . activations)_g), *msum =
 * sum(min_g * bsum_g); bsum32: the activation block's 8 sums of 32
 * (act_sums). */
ALWAYS_INLINE void k4_row_sums(const int kind, const uint8_t *blk, const uint8_t *yb, __m128i bsum32,
                               __m128i *isum, __m128i *msum) {
    /* Scales 0-3 and minimums 0-3 are the low six bits of bytes 0-3 and
     * 4-7; 4-7 take their low four bits from the nibbles of bytes 8-11
     * and their top two from the top bits of bytes 0-3 / 4-7. */
    const __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(blk + 4));
    const __m128i first = _mm_and_si128(q, _mm_set1_epi8(0x3F));
    const __m128i nibbles = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(q, 0xAA), _mm_setr_epi32(0, 4, 0, 0)),
                                          _mm_set1_epi8(0x0F));
    const __m128i second = _mm_ternarylogic_epi32(nibbles, _mm_srli_epi32(q, 2), _mm_set1_epi8(0x30), 0xF8);
    /* Words: scales 0-7, then minimums 0-7. */
    const __m256i words = _mm256_cvtepu8_epi16(_mm_unpacklo_epi32(first, second));
    *msum = _mm_madd_epi16(_mm256_extracti128_si256(words, 1), bsum32);
    const __m512i scales = _mm512_zextsi256_si512(words);
    const __m512i m4 = _mm512_set1_epi8(0x0F), nibble_shift = words_by_half(0, 4);
    const size_t qs = kind == K_Q5 ? 48 : 16;
    /* Q5_K: level 32g + l takes bit g of qh[l] (the 32 bytes at 16) as its
     * bit 4. */
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 16)));
    __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        /* 32 bytes: low nibbles are levels 64c.., high ones 64c+32.. */
        const __m512i qv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + qs + 32 * c)));
        __m512i lv = _mm512_and_si512(_mm512_srlv_epi16(qv, nibble_shift), m4);
        if (kind == K_Q5) {
            /* Bit k of a byte rotated left by 4 - k (mod 32) within its
             * dword lands on bit 4 of the same byte. */
            const __m512i turn = _mm512_inserti64x4(_mm512_set1_epi32((4 - 2 * c) & 31), _mm256_set1_epi32((3 - 2 * c) & 31), 1);
            lv = or_and(lv, _mm512_rolv_epi32(qh, turn), _mm512_set1_epi8(0x10));
        }
        const __m512i act = _mm512_loadu_si512((const void *)(yb + Q8K_QS + 64 * c));
        sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(lv, act),
                                  _mm512_permutexvar_epi16(words_by_half((short)(2 * c), (short)(2 * c + 1)), scales));
    }
    *isum = fold_to_4(sum);
}

/* IQ4_XS: one row's integer sum over one super-block, folded to 4 dwords:
 * sum(scale_g * (levels . activations)_g) - 128 * sum(scale_g * bsum_g),
 * the levels being the table's values + 128 (vpshufb); neg_bsum32: the
 * activation block's 8 sums of 32 negated (act_sums). The products go
 * through vpdpbusd (levels up to 241: pairs would overflow vpmaddubsw). */
ALWAYS_INLINE __m128i iq4_xs_row_sum(const uint8_t *blk, const uint8_t *yb, __m128i neg_bsum32) {
    /* ls_g: low four bits from nibble g of scales_l (bytes 4-7), top two
     * from bits 2g, 2g+1 of scales_h (bytes 2-3); the scale is ls - 32. */
    const __m128i head = _mm_loadl_epi64((const __m128i *)(const void *)blk);
    const __m128i low_bytes = _mm_shuffle_epi8(head, _mm_setr_epi8(4, 4, 5, 5, 6, 6, 7, 7, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m128i low = _mm_and_si128(_mm_mask_blend_epi8(0xAAAA, low_bytes, _mm_srli_epi16(low_bytes, 4)),
                                      _mm_set1_epi8(0x0F));
    const __m128i high_word = _mm_shuffle_epi8(head, _mm_setr_epi8(2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
    const __m128i high = _mm_and_si128(_mm_srlv_epi16(high_word, _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14)),
                                       _mm_set1_epi16(3));
    const __m128i scales = _mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(low), _mm_slli_epi16(high, 4)), _mm_set1_epi16(32));
    const __m512i scale_of_dword = _mm512_zextsi256_si512(_mm256_cvtepi16_epi32(scales));
    const __m512i lane_of_dword = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512i sum = _mm512_zextsi128_si512(_mm_madd_epi16(_mm_slli_epi16(scales, 7), neg_bsum32));
    const __m512i table = iq4_table(), m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 2
    for (int c = 0; c < 2; c++) {
        /* 64 bytes, groups 4c..4c+3 (one per 128-bit lane): low nibbles are
         * levels 32g..32g+15, high ones 32g+16..32g+31. */
        const __m512i q = _mm512_loadu_si512((const void *)(blk + 8 + 64 * c));
        const __m512i a0 = _mm512_loadu_si512((const void *)(yb + Q8K_QS + 128 * c));
        const __m512i a1 = _mm512_loadu_si512((const void *)(yb + Q8K_QS + 128 * c + 64));
        __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4)),
                                          _mm512_shuffle_i64x2(a0, a1, 0x88));
        dot = _mm512_dpbusd_epi32(dot, _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4)),
                                  _mm512_shuffle_i64x2(a0, a1, 0xDD));
        const __m512i group = _mm512_add_epi32(lane_of_dword, _mm512_set1_epi32(4 * c));
        sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(dot, _mm512_permutexvar_epi32(group, scale_of_dword)));
    }
    return fold_to_4(sum);
}

/* What the rows' sums take from an activation block's group sums: Q4_K
 * and Q5_K the 8 sums of 32 levels (words 0-7), IQ4_XS the same negated,
 * Q6_K the 16 sums of 16 negated. */
ALWAYS_INLINE __m256i act_sums(const int kind, const uint8_t *yb) {
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)(const void *)(yb + Q8K_BSUMS));
    if (kind == K_Q6) return _mm256_sub_epi16(_mm256_setzero_si256(), bsums);
    const __m128i sums32 = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
    if (kind == K_IQ4XS) return _mm256_castsi128_si256(_mm_sub_epi16(_mm_setzero_si128(), sums32));
    return _mm256_castsi128_si256(sums32);
}

/* The totals of 16 rows' four partial sums, lane r: row r. quads[j] holds
 * rows j, 4+j, 8+j, 12+j in its four 128-bit lanes. */
ALWAYS_INLINE __m512i sum_rows_16(const __m512i quads[4]) {
    const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(quads[0], quads[1]), _mm512_unpackhi_epi32(quads[0], quads[1]));
    const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(quads[2], quads[3]), _mm512_unpackhi_epi32(quads[2], quads[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
}

/* The dword at p + r*st for the first n (up to 16) rows r, lane r. */
ALWAYS_INLINE __m512i row_dwords(const uint8_t *p, size_t st, int n) {
    if (n == 16) return gather_dwords(p, st);
    alignas(64) uint32_t v[16] = {0};
    for (int r = 0; r < n; r++) v[r] = nuri_load_u32(p + (size_t)r * st);
    return _mm512_load_si512((const void *)v);
}

/* Rows are read in memory order, 16 at a time: each row's super-blocks
 * (up to ROW_CHUNK of them per pass: rows of up to 32768 columns in one,
 * their partial sums up to 64 KiB), then the 16 rows' sums of each
 * super-block added and finished in order. One straight stream, each
 * super-block's lines prefetched ROW_PREFETCH bytes ahead, draws more from
 * memory than 16 interleaved row streams (AMD Zen 5, 2 threads, TinyLlama
 * generation at the lower bandwidth level: Q6_K 47 -> 55 t/s, Q4_K 65 ->
 * 79 t/s; 8-32 KiB ahead all within a few %). */
#define ROW_CHUNK 128
#define ROW_PREFETCH 16384

static __mmask16 live_lanes(int n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

ALWAYS_INLINE void k_one_token(const int kind, int64_t nb, const uint8_t *w, size_t w_row_bytes, int n_rows,
                               const uint8_t *x, float *y) {
    const size_t bs = k_block(kind), xs = sizeof(nuri_block_q8_k);
    /* isum[s][j] and msum[s][j] (64 bytes each): the folded sums of rows
     * j, 4+j, 8+j, 12+j. */
    alignas(64) __m128i isum[ROW_CHUNK][4][4], msum[k_has_min(kind) ? ROW_CHUNK : 1][4][4];
    __m256i sums[ROW_CHUNK];
    /* Addresses as integers: the prefetches stop at the end of these rows,
     * and a pointer may not point past them. */
    const uintptr_t end = (uintptr_t)(w + (size_t)(n_rows - 1) * w_row_bytes + (size_t)nb * bs);
    for (int r0 = 0; r0 < n_rows; r0 += 16) {
        const int rows = min_int(16, n_rows - r0);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += ROW_CHUNK) {
            const int nsb = (int)(nb - b0 < ROW_CHUNK ? nb - b0 : ROW_CHUNK);
            for (int s = 0; s < nsb; s++) sums[s] = act_sums(kind, x + (size_t)(b0 + s) * xs);
            for (int r = 0; r < 16; r++) {
                const int j = r % 4, l = r / 4;
                if (r >= rows) {
                    for (int s = 0; s < nsb; s++) {
                        isum[s][j][l] = _mm_setzero_si128();
                        if (k_has_min(kind)) msum[s][j][l] = _mm_setzero_si128();
                    }
                    continue;
                }
                const uint8_t *row = wp + (size_t)r * w_row_bytes + (size_t)b0 * bs;
                for (int s = 0; s < nsb; s++) {
                    const uintptr_t ahead = (uintptr_t)(row + (size_t)s * bs) + ROW_PREFETCH;
                    if (ahead + bs <= end)
                        for (size_t o = 0; o < bs + 63; o += 64) prefetch_stream((const uint8_t *)(ahead + o), 0);
                    const uint8_t *yb = x + (size_t)(b0 + s) * xs;
                    if (k_has_min(kind))
                        k4_row_sums(kind, row + (size_t)s * bs, yb, _mm256_castsi256_si128(sums[s]), &isum[s][j][l],
                                    &msum[s][j][l]);
                    else if (kind == K_Q6) isum[s][j][l] = q6_k_row_sum(row + (size_t)s * bs, yb, sums[s]);
                    else isum[s][j][l] = iq4_xs_row_sum(row + (size_t)s * bs, yb, _mm256_castsi256_si128(sums[s]));
                }
            }
            for (int s = 0; s < nsb; s++) {
                const uint8_t *blk = wp + (size_t)(b0 + s) * bs;
                __m512i quads[4];
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) quads[j] = _mm512_load_si512((const void *)isum[s][j]);
                const __m512 is = _mm512_cvtepi32_ps(sum_rows_16(quads));
                const __m512 dy = _mm512_set1_ps(nuri_load_f32(x + (size_t)(b0 + s) * xs));
                if (k_has_min(kind)) {
                    const __m512i dd = row_dwords(blk, w_row_bytes, rows); /* d | dmin */
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++) quads[j] = _mm512_load_si512((const void *)msum[s][j]);
                    const __m512 ms = _mm512_cvtepi32_ps(sum_rows_16(quads));
                    acc = _mm512_add_ps(acc, _mm512_sub_ps(_mm512_mul_ps(is, _mm512_mul_ps(halves_lo(dd), dy)),
                                                           _mm512_mul_ps(ms, _mm512_mul_ps(halves_hi(dd), dy))));
                } else {
                    const __m512 d = kind == K_Q6 ? halves_hi(row_dwords(blk + 206, w_row_bytes, rows))
                                                  : halves_lo(row_dwords(blk, w_row_bytes, rows));
                    acc = _mm512_add_ps(acc, _mm512_mul_ps(is, _mm512_mul_ps(d, dy)));
                }
            }
        }
        _mm512_mask_storeu_ps(y + r0, live_lanes(rows), acc);
    }
}

/* ---- gemm, few tokens -------------------------------------------------------------
 *
 * Each super-block of 16 rows is packed and used at once; the next rows
 * are prefetched as one straight run spread over this run's super-blocks
 * (16 short row streams defeat the hardware prefetchers). */

ALWAYS_INLINE void k_gemm_few(const int kind, int64_t nb, const uint8_t *w, size_t w_row_bytes, int n_rows,
                              const uint8_t *x, size_t x_row_bytes, const int TOK, float *y, size_t y_stride) {
    const size_t bs = k_block(kind);
    if (kind != K_Q2 && kind != K_Q3 && TOK == 1) {
        k_one_token(kind, nb, w, w_row_bytes, n_rows, x, y);
        return;
    }
    {
        const int first_rows = min_int(16, n_rows);
        const size_t first_bytes = (size_t)(first_rows - 1) * w_row_bytes + (size_t)nb * bs;
        for (size_t o = 0; o < first_bytes && o < (64u << 10); o += 64) _mm_prefetch((const char *)(w + o), _MM_HINT_T0);
    }
    for (int r0 = 0; r0 < n_rows; r0 += 16) {
        const int rows = min_int(16, n_rows - r0);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        const int next_rows = min_int(16, n_rows - r0 - rows);
        const size_t next_bytes = next_rows ? (size_t)(next_rows - 1) * w_row_bytes + (size_t)nb * bs : 0;
        const uint8_t *next = next_bytes ? wp + (size_t)rows * w_row_bytes : wp;
        const size_t step = ((next_bytes / (size_t)nb) & ~(size_t)63) + 64;
        size_t ahead = 0;
        __m512 acc[MAX_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) acc[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            /* Half of this super-block's share before packing, half after:
             * a super-block's share is dozens of lines, more than the
             * core keeps in flight at once. */
            for (const size_t end = ahead + step / 2; ahead < end && ahead < next_bytes; ahead += 64)
                prefetch_stream(next + ahead, 0);
            ksb o;
            pack_k_rows(kind, wp + (size_t)b * bs, w_row_bytes, rows, &o);
            for (const size_t end = ahead + (step - step / 2); ahead < end && ahead < next_bytes; ahead += 64)
                prefetch_stream(next + ahead, 0);
            const uint8_t *yb[MAX_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) yb[t] = x + (size_t)t * x_row_bytes + (size_t)b * sizeof(nuri_block_q8_k);
            k_dot(kind, &o, yb, TOK, acc);
        }
        const __mmask16 live = live_lanes(rows);
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) _mm512_mask_storeu_ps(y + (size_t)t * y_stride + r0, live, acc[t]);
    }
}

/* ---- gemm, many tokens ------------------------------------------------------------
 *
 * A chunk of super-blocks of 16 rows is packed once (about 6 KiB each, the
 * chunk within L1) and every tile of up to 4 tokens runs over it; sums
 * continue from y after the first chunk, so each (row, token) sum runs
 * over the super-blocks in order. */

#define K_CHUNK 4

ALWAYS_INLINE void k_tile(const int kind, const ksb *pk, int nsb, const uint8_t *x, size_t x_row_bytes,
                          float *y, size_t y_stride, __mmask16 live, int first, const int TOK) {
    __m512 acc[MAX_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++)
        acc[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live, y + (size_t)t * y_stride);
    for (int s = 0; s < nsb; s++) {
        const uint8_t *yb[MAX_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) yb[t] = x + (size_t)t * x_row_bytes + (size_t)s * sizeof(nuri_block_q8_k);
        k_dot(kind, pk + s, yb, TOK, acc);
    }
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) _mm512_mask_storeu_ps(y + (size_t)t * y_stride, live, acc[t]);
}

typedef void (*k_tile_fn)(const ksb *pk, int nsb, const uint8_t *x, size_t x_row_bytes, float *y,
                          size_t y_stride, __mmask16 live, int first);

ALWAYS_INLINE void k_gemm_many(const int kind, const k_tile_fn tiles[MAX_TOK], int64_t nb, const uint8_t *w,
                               size_t w_row_bytes, int n_rows, const uint8_t *x, size_t x_row_bytes, int n_tok,
                               float *y, size_t y_stride) {
    const size_t bs = k_block(kind);
    alignas(64) ksb pk[K_CHUNK];
    for (int r0 = 0; r0 < n_rows; r0 += 16) {
        const int rows = min_int(16, n_rows - r0);
        const __mmask16 live = live_lanes(rows);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        for (int64_t kc = 0; kc < nb; kc += K_CHUNK) {
            const int nsb = (int)(nb - kc < K_CHUNK ? nb - kc : K_CHUNK);
            for (int s = 0; s < nsb; s++) pack_k_rows(kind, wp + (size_t)(kc + s) * bs, w_row_bytes, rows, &pk[s]);
            const uint8_t *xk = x + (size_t)kc * sizeof(nuri_block_q8_k);
            int t0 = 0;
            for (; t0 + MAX_TOK <= n_tok; t0 += MAX_TOK)
                tiles[MAX_TOK - 1](pk, nsb, xk + (size_t)t0 * x_row_bytes, x_row_bytes, y + (size_t)t0 * y_stride + r0,
                                   y_stride, live, kc == 0);
            if (t0 < n_tok)
                tiles[n_tok - t0 - 1](pk, nsb, xk + (size_t)t0 * x_row_bytes, x_row_bytes,
                                      y + (size_t)t0 * y_stride + r0, y_stride, live, kc == 0);
        }
    }
}


#define K_TYPE(NAME, KIND)                                                                                   \
    static void few_##NAME##_1(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr, \
                               float *y, size_t ys) {                                                        \
        k_gemm_few(KIND, nb, w, wr, n, x, xr, 1, y, ys);                                                     \
    }                                                                                                        \
    static void few_##NAME##_2(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr, \
                               float *y, size_t ys) {                                                        \
        k_gemm_few(KIND, nb, w, wr, n, x, xr, 2, y, ys);                                                     \
    }                                                                                                        \
    static void few_##NAME##_3(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr, \
                               float *y, size_t ys) {                                                        \
        k_gemm_few(KIND, nb, w, wr, n, x, xr, 3, y, ys);                                                     \
    }                                                                                                        \
    static void few_##NAME##_4(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr, \
                               float *y, size_t ys) {                                                        \
        k_gemm_few(KIND, nb, w, wr, n, x, xr, 4, y, ys);                                                     \
    }                                                                                                        \
    static void tile_##NAME##_1(const ksb *pk, int nsb, const uint8_t *x, size_t xr, float *y, size_t ys,   \
                                __mmask16 live, int first) {                                                 \
        k_tile(KIND, pk, nsb, x, xr, y, ys, live, first, 1);                                                 \
    }                                                                                                        \
    static void tile_##NAME##_2(const ksb *pk, int nsb, const uint8_t *x, size_t xr, float *y, size_t ys,   \
                                __mmask16 live, int first) {                                                 \
        k_tile(KIND, pk, nsb, x, xr, y, ys, live, first, 2);                                                 \
    }                                                                                                        \
    static void tile_##NAME##_3(const ksb *pk, int nsb, const uint8_t *x, size_t xr, float *y, size_t ys,   \
                                __mmask16 live, int first) {                                                 \
        k_tile(KIND, pk, nsb, x, xr, y, ys, live, first, 3);                                                 \
    }                                                                                                        \
    static void tile_##NAME##_4(const ksb *pk, int nsb, const uint8_t *x, size_t xr, float *y, size_t ys,   \
                                __mmask16 live, int first) {                                                 \
        k_tile(KIND, pk, nsb, x, xr, y, ys, live, first, 4);                                                 \
    }                                                                                                        \
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
 * Blocks of 32 with one half-float scale, packed 16 rows at a time: the
 * table levels + 128 as unsigned bytes, minus 128 * sum(x) per activation
 * block (by sums of absolute differences, once per block and token). */

typedef struct {
    __m512i w[8];
    __m512 d;
} nlb;

ALWAYS_INLINE void pack_iq4_nl(const uint8_t *p, size_t st, nlb *o) {
    __m512i q[4];
    load_16x4(p + 2, st, q);
    const __m512i table = iq4_table(), n4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        o->w[j] = _mm512_shuffle_epi8(table, _mm512_and_si512(q[j], n4));
        o->w[4 + j] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q[j], 4), n4));
    }
    o->d = halves_lo(gather_dwords(p, st));
}

ALWAYS_INLINE void pack_nl_rows(const uint8_t *p, size_t stride, int n, nlb *o) {
    if (n >= 16) {
        pack_iq4_nl(p, stride, o);
        return;
    }
    uint8_t tmp[16 * sizeof(nuri_block_iq4_nl)];
    memset(tmp, 0, sizeof tmp);
    for (int r = 0; r < n; r++) memcpy(tmp + (size_t)r * sizeof(nuri_block_iq4_nl), p + (size_t)r * stride, sizeof(nuri_block_iq4_nl));
    pack_iq4_nl(tmp, sizeof(nuri_block_iq4_nl), o);
}

/* -128 * (sum of the 32 levels of a Q8_0 block). */
ALWAYS_INLINE int32_t q8_0_offset(const uint8_t *xb) {
    const __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(xb + 2)),
                                       _mm256_set1_epi8((char)0x80));
    const __m256i s4 = _mm256_sad_epu8(q, _mm256_setzero_si256());
    const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
    const int sum = (int)_mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))) - 32 * 128;
    return -128 * sum;
}

ALWAYS_INLINE void nl_dot(const nlb *o, const uint8_t *const xb[MAX_TOK], const int TOK, __m512 acc[MAX_TOK]) {
#pragma GCC unroll 4
    for (int t = 0; t < TOK; t++) {
        __m512i isum = _mm512_set1_epi32(q8_0_offset(xb[t]));
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            isum = _mm512_dpbusd_epi32(isum, o->w[j], _mm512_set1_epi32((int)nuri_load_u32(xb[t] + 2 + 4 * j)));
        const __m512 dx = _mm512_cvtph_ps(_mm256_set1_epi16((short)nuri_load_u16(xb[t])));
        acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(o->d, dx)));
    }
}

#define NL_CHUNK 32

ALWAYS_INLINE void nl_gemm(int64_t nb, const uint8_t *w, size_t w_row_bytes, int n_rows, const uint8_t *x,
                           size_t x_row_bytes, int n_tok, float *y, size_t y_stride, const int TOK) {
    const size_t bs = sizeof(nuri_block_iq4_nl), xs = sizeof(nuri_block_q8_0);
    alignas(64) nlb pk[NL_CHUNK];
    for (int r0 = 0; r0 < n_rows; r0 += 16) {
        const int rows = min_int(16, n_rows - r0);
        const __mmask16 live = live_lanes(rows);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        if (r0 + 16 < n_rows) {
            /* The next rows, as one run, while these are computed. */
            const uint8_t *next = wp + 16 * w_row_bytes;
            const size_t bytes = (size_t)(min_int(16, n_rows - r0 - 16) - 1) * w_row_bytes + (size_t)nb * bs;
            for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)(next + o), _MM_HINT_T1);
        }
        for (int64_t kc = 0; kc < nb; kc += NL_CHUNK) {
            const int nblk = (int)(nb - kc < NL_CHUNK ? nb - kc : NL_CHUNK);
            for (int b = 0; b < nblk; b++) pack_nl_rows(wp + (size_t)(kc + b) * bs, w_row_bytes, rows, &pk[b]);
            for (int t0 = 0; t0 < n_tok; t0 += TOK) {
                /* Whole tiles of TOK only (the caller picks TOK dividing the
                 * token count, or 1). */
                __m512 acc[MAX_TOK];
#pragma GCC unroll 4
                for (int t = 0; t < TOK; t++)
                    acc[t] = kc == 0 ? _mm512_setzero_ps()
                                     : _mm512_maskz_loadu_ps(live, y + (size_t)(t0 + t) * y_stride + r0);
                for (int b = 0; b < nblk; b++) {
                    const uint8_t *xb[MAX_TOK];
#pragma GCC unroll 4
                    for (int t = 0; t < TOK; t++) xb[t] = x + (size_t)(t0 + t) * x_row_bytes + (size_t)(kc + b) * xs;
                    nl_dot(&pk[b], xb, TOK, acc);
                }
#pragma GCC unroll 4
                for (int t = 0; t < TOK; t++) _mm512_mask_storeu_ps(y + (size_t)(t0 + t) * y_stride + r0, live, acc[t]);
            }
        }
    }
}

/* Generation: each block of 16 rows packed and used at once, the next
 * rows prefetched as one run spread over these rows' blocks. */
ALWAYS_INLINE void nl_gemm_few(int64_t nb, const uint8_t *w, size_t w_row_bytes, int n_rows, const uint8_t *x,
                               size_t x_row_bytes, float *y, size_t y_stride, const int TOK) {
    const size_t bs = sizeof(nuri_block_iq4_nl), xs = sizeof(nuri_block_q8_0);
    for (int r0 = 0; r0 < n_rows; r0 += 16) {
        const int rows = min_int(16, n_rows - r0);
        const uint8_t *wp = w + (size_t)r0 * w_row_bytes;
        const int next_rows = min_int(16, n_rows - r0 - rows);
        const size_t next_bytes = next_rows ? (size_t)(next_rows - 1) * w_row_bytes + (size_t)nb * bs : 0;
        const uint8_t *next = next_bytes ? wp + (size_t)rows * w_row_bytes : wp;
        const size_t step = ((next_bytes / (size_t)nb) & ~(size_t)63) + 64;
        size_t ahead = 0;
        __m512 acc[MAX_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) acc[t] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            for (const size_t end = ahead + step; ahead < end && ahead < next_bytes; ahead += 64)
                prefetch_stream(next + ahead, 0);
            nlb o;
            pack_nl_rows(wp + (size_t)b * bs, w_row_bytes, rows, &o);
            const uint8_t *xb[MAX_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < TOK; t++) xb[t] = x + (size_t)t * x_row_bytes + (size_t)b * xs;
            nl_dot(&o, xb, TOK, acc);
        }
#pragma GCC unroll 4
        for (int t = 0; t < TOK; t++) _mm512_mask_storeu_ps(y + (size_t)t * y_stride + r0, live_lanes(rows), acc[t]);
    }
}

#include "kernels/kernels_x86_iq4_nl.h"

/* ---- Activation quantizers ---------------------------------------------------
 *
 * Q8_K as the reference: the first element of largest magnitude (NaNs
 * skipped) sets iscale = -127/max; levels are iscale*x rounded to nearest,
 * ties to even (the default rounding of vcvtps2dq), clamped to +-127, NaN
 * to 0; d = 1/iscale; bsums the sums of 16 levels. */

ALWAYS_INLINE __m512 abs_ps(__m512 v) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)));
}

static void quantize_q8_k(const float *src, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t i = 0; i < n / NURI_QK_K; i++) {
        const float *x = src + i * NURI_QK_K;
        __m512 v[16];
        __m512 m = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            v[g] = _mm512_loadu_ps(x + 16 * g);
            m = _mm512_max_ps(abs_ps(v[g]), m); /* a NaN lane keeps m */
        }
        const float amax = _mm512_reduce_max_ps(m);
        nuri_block_q8_k b;
        memset(&b, 0, sizeof b);
        if (amax != 0.0f) {
            float max = 0.0f;
            const __m512 am = _mm512_set1_ps(amax);
            for (int g = 0; g < 16; g++) {
                const __mmask16 hit = _mm512_cmp_ps_mask(abs_ps(v[g]), am, _CMP_EQ_OQ);
                if (hit) {
                    max = x[16 * g + __builtin_ctz(hit)];
                    break;
                }
            }
            const float iscale = -127.0f / max;
            const __m512 is = _mm512_set1_ps(iscale);
            const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
            for (int g = 0; g < 16; g++) {
                const __m512 s = _mm512_mul_ps(v[g], is);
                const __mmask16 ordered = _mm512_cmp_ps_mask(s, s, _CMP_ORD_Q);
                const __m512 c = _mm512_min_ps(_mm512_max_ps(s, lo), hi);
                const __m512i q = _mm512_maskz_cvtps_epi32(ordered, c);
                _mm_storeu_si128((__m128i *)(void *)(b.qs + 16 * g), _mm512_cvtepi32_epi8(q));
                b.bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
            }
            b.d = 1.0f / iscale;
        }
        memcpy(out + i * sizeof b, &b, sizeof b);
    }
}

/* ---- Table ------------------------------------------------------------------- */

void nuri_kernels_fill_avx512_k(nuri_kernel table[NURI_TYPE_COUNT]) {
    table[NURI_TYPE_Q2_K] = (nuri_kernel){vec_dot_q2_k, gemm_q2_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q3_K] = (nuri_kernel){vec_dot_q3_k, gemm_q3_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q4_K] = (nuri_kernel){vec_dot_q4_k, gemm_q4_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q5_K] = (nuri_kernel){vec_dot_q5_k, gemm_q5_k, quantize_q8_k, NULL};
    table[NURI_TYPE_Q6_K] = (nuri_kernel){vec_dot_q6_k, gemm_q6_k, quantize_q8_k, NULL};
    table[NURI_TYPE_IQ4_XS] = (nuri_kernel){vec_dot_iq4_xs, gemm_iq4_xs, quantize_q8_k, NULL};
    /* IQ4_NL keeps the Q8_0 activation quantizer of the level below (a
     * small part of the work). */
    table[NURI_TYPE_IQ4_NL] = (nuri_kernel){vec_dot_iq4_nl, gemm_iq4_nl, NULL, NULL};
}

#else
typedef int nuri_kernels_avx512_k_not_built; /* keeps the translation unit non-empty */
#endif
