/* kernels_avx2_common.h — the small load and convert helpers that
 * kernels_avx2.c and kernels_avx2_k.c share. Include only from files
 * compiled with the AVX2 flags. */
#ifndef NURI_KERNELS_AVX2_COMMON_H
#define NURI_KERNELS_AVX2_COMMON_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static inline int min_int(int a, int b) { return a < b ? a : b; }

ALWAYS_INLINE __m128i load128(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)(const void *)p); }

ALWAYS_INLINE __m256i join2(const uint8_t *lo, const uint8_t *hi) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(load128(lo)), load128(hi), 1);
}

/* Reads 16 bytes at p + r*stride for the 8 rows r and transposes them:
 * lane r of out[j] is the j-th dword of row r. */
ALWAYS_INLINE void load_8x4(const uint8_t *p, size_t stride, __m256i out[4]) {
#define ROW(i) (p + (size_t)(i) * stride)
    const __m256i a = join2(ROW(0), ROW(4)), b = join2(ROW(1), ROW(5));
    const __m256i c = join2(ROW(2), ROW(6)), d = join2(ROW(3), ROW(7));
#undef ROW
    const __m256i ab_lo = _mm256_unpacklo_epi32(a, b), ab_hi = _mm256_unpackhi_epi32(a, b);
    const __m256i cd_lo = _mm256_unpacklo_epi32(c, d), cd_hi = _mm256_unpackhi_epi32(c, d);
    out[0] = _mm256_unpacklo_epi64(ab_lo, cd_lo);
    out[1] = _mm256_unpackhi_epi64(ab_lo, cd_lo);
    out[2] = _mm256_unpacklo_epi64(ab_hi, cd_hi);
    out[3] = _mm256_unpackhi_epi64(ab_hi, cd_hi);
}

/* 32 bytes of each row: out[0..7]. */
ALWAYS_INLINE void load_8x8(const uint8_t *p, size_t stride, __m256i out[8]) {
    load_8x4(p, stride, out);
    load_8x4(p + 16, stride, out + 4);
}

/* The dword at p + r*stride in lane r, for the 8 rows r. */
ALWAYS_INLINE __m256i load_dwords(const uint8_t *p, size_t stride) {
    return _mm256_setr_epi32((int)nuri_load_u32(p), (int)nuri_load_u32(p + stride),
                             (int)nuri_load_u32(p + 2 * stride), (int)nuri_load_u32(p + 3 * stride),
                             (int)nuri_load_u32(p + 4 * stride), (int)nuri_load_u32(p + 5 * stride),
                             (int)nuri_load_u32(p + 6 * stride), (int)nuri_load_u32(p + 7 * stride));
}

/* Lane-wise half floats: the low or the high 16 bits of each dword. */
ALWAYS_INLINE __m256 halves_lo(__m256i v) {
    const __m256i lo = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                                               0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i packed = _mm256_permute4x64_epi64(lo, 0x08); /* qwords 0 and 2 */
    return _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
}
ALWAYS_INLINE __m256 halves_hi(__m256i v) { return halves_lo(_mm256_srli_epi32(v, 16)); }

#endif /* NURI_KERNELS_AVX2_COMMON_H */
