/* kernels_avx512_common.h — the small load and convert helpers that
 * kernels_avx512.c and kernels_avx512_k.c share. Include only from files
 * compiled with the AVX512 flags. */
#ifndef NURI_KERNELS_AVX512_COMMON_H
#define NURI_KERNELS_AVX512_COMMON_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static inline int min_int(int a, int b) { return a < b ? a : b; }

/* Four 16-byte rows as the 128-bit lanes of one vector. */
ALWAYS_INLINE __m512i join4(const uint8_t *a, const uint8_t *b, const uint8_t *c, const uint8_t *d) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)a));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)b), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)c), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)d), 3);
}

/* Reads 16 bytes at p + r*stride for the 16 rows r and transposes them:
 * lane r of out[j] is the j-th dword of row r. */
ALWAYS_INLINE void load_16x4(const uint8_t *p, size_t stride, __m512i out[4]) {
#define ROW(i) (p + (size_t)(i) * stride)
    const __m512i a = join4(ROW(0), ROW(4), ROW(8), ROW(12));
    const __m512i b = join4(ROW(1), ROW(5), ROW(9), ROW(13));
    const __m512i c = join4(ROW(2), ROW(6), ROW(10), ROW(14));
    const __m512i d = join4(ROW(3), ROW(7), ROW(11), ROW(15));
#undef ROW
    const __m512i ab_lo = _mm512_unpacklo_epi32(a, b), ab_hi = _mm512_unpackhi_epi32(a, b);
    const __m512i cd_lo = _mm512_unpacklo_epi32(c, d), cd_hi = _mm512_unpackhi_epi32(c, d);
    out[0] = _mm512_unpacklo_epi64(ab_lo, cd_lo);
    out[1] = _mm512_unpackhi_epi64(ab_lo, cd_lo);
    out[2] = _mm512_unpacklo_epi64(ab_hi, cd_hi);
    out[3] = _mm512_unpackhi_epi64(ab_hi, cd_hi);
}

/* 32 bytes of each row: out[0..7]. */
ALWAYS_INLINE void load_16x8(const uint8_t *p, size_t stride, __m512i out[8]) {
    load_16x4(p, stride, out);
    load_16x4(p + 16, stride, out + 4);
}

/* The dword at p + r*stride in lane r, for the 16 rows r. Built from
 * element inserts: vpgatherdd is slower than these on the CPUs we measured
 * (AMD Zen 5: a Q4_0 row block packed 24 % faster). */
ALWAYS_INLINE __m512i gather_dwords(const uint8_t *p, size_t stride) {
#define D(r) ((int)nuri_load_u32(p + (size_t)(r) * stride))
    const __m128i a = _mm_set_epi32(D(3), D(2), D(1), D(0)), b = _mm_set_epi32(D(7), D(6), D(5), D(4));
    const __m128i c = _mm_set_epi32(D(11), D(10), D(9), D(8)), d = _mm_set_epi32(D(15), D(14), D(13), D(12));
#undef D
    const __m256i ab = _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
    const __m256i cd = _mm256_inserti128_si256(_mm256_castsi128_si256(c), d, 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(ab), cd, 1);
}

/* Prefetches the line at p of weights a kernel streams: non-temporal when
 * they are read once (it keeps the caches for what is reused and measured
 * 2-4 % faster generation on AMD Zen 5), into every level when the caller
 * passes over them again. */
ALWAYS_INLINE void prefetch_stream(const uint8_t *p, const int read_again) {
    if (read_again) _mm_prefetch((const char *)p, _MM_HINT_T0);
    else _mm_prefetch((const char *)p, _MM_HINT_NTA);
}

/* Lane-wise half floats: the low or the high 16 bits of each dword. */
ALWAYS_INLINE __m512 halves_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
ALWAYS_INLINE __m512 halves_hi(__m512i v) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

#endif /* NURI_KERNELS_AVX512_COMMON_H */
