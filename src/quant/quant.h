/* quant.h — tensor element types: the block layouts GGUF files use, their
 * scalar reference conversions and dot products.
 *
 * Numbering follows GGUF (ggml_type), so a type read from a file indexes
 * this table directly. A "row" is a run of n elements, n a multiple of the
 * type's block size. */
#ifndef NURI_QUANT_H
#define NURI_QUANT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    NURI_TYPE_F32 = 0,
    NURI_TYPE_F16 = 1,
    NURI_TYPE_Q4_0 = 2,
    NURI_TYPE_Q4_1 = 3,
    NURI_TYPE_Q5_0 = 6,
    NURI_TYPE_Q5_1 = 7,
    NURI_TYPE_Q8_0 = 8,
    NURI_TYPE_Q8_1 = 9,
    NURI_TYPE_Q2_K = 10,
    NURI_TYPE_Q3_K = 11,
    NURI_TYPE_Q4_K = 12,
    NURI_TYPE_Q5_K = 13,
    NURI_TYPE_Q6_K = 14,
    NURI_TYPE_Q8_K = 15,
    NURI_TYPE_IQ4_NL = 20,
    NURI_TYPE_IQ4_XS = 23,
    NURI_TYPE_BF16 = 30,
    NURI_TYPE_COUNT = 40, /* size of the traits table; larger ids are unknown */
} nuri_type;

/* Converts n elements of a row to float. */
typedef void (*nuri_to_float_fn)(const void *src, float *dst, int64_t n);
/* Quantizes n floats into a row (the scalar reference quantizer). */
typedef void (*nuri_from_float_fn)(const float *src, void *dst, int64_t n);
/* Dot product of n elements: x is a row of this type, y a row of the type's
 * vec_dot_type (activations are converted to it first). */
typedef void (*nuri_vec_dot_fn)(int64_t n, float *result, const void *x, const void *y);

typedef struct {
    const char *name;         /* "Q4_0"; NULL for ids that are not a type */
    int64_t block_size;       /* elements per block */
    size_t type_size;         /* bytes per block */
    nuri_type vec_dot_type;   /* activation type for vec_dot */
    nuri_to_float_fn to_float;
    nuri_from_float_fn from_float;
    nuri_vec_dot_fn vec_dot;  /* NULL: nuri cannot compute with this type yet */
} nuri_type_traits;

/* Traits of a type id, or NULL if the id is not one nuri knows. */
const nuri_type_traits *nuri_type_get(uint32_t type);

/* The name of a type id ("Q4_0"), or "unknown" for an unknown id. */
const char *nuri_type_name(uint32_t type);

/* Bytes taken by a row of n elements; 0 if n is not a multiple of the block
 * size or the type is unknown. */
size_t nuri_row_size(uint32_t type, int64_t n);

/* ---- Block layouts ------------------------------------------------------
 *
 * The byte layouts GGUF files store (all little-endian, no padding). Scales
 * are IEEE half floats kept as their bit patterns. Rows read from a file may
 * sit at any address, so code that walks rows copies a block out (memcpy)
 * rather than dereferencing a pointer to one.
 *
 * The conversion and dot functions in the traits take n a multiple of the
 * block size (of both operands for vec_dot); a partial tail block is
 * ignored. */

#define NURI_QK4_0 32
#define NURI_QK4_1 32
#define NURI_QK5_0 32
#define NURI_QK5_1 32
#define NURI_QK8_0 32
#define NURI_QK8_1 32
#define NURI_QK_K 256

/* 32 weights: x = (q - 8) * d; element j < 16 in the low nibble of qs[j],
 * element j >= 16 in the high nibble of qs[j - 16]. */
typedef struct {
    uint16_t d;
    uint8_t qs[NURI_QK4_0 / 2];
} nuri_block_q4_0;
_Static_assert(sizeof(nuri_block_q4_0) == 18, "Q4_0 block must be 18 bytes");

/* 32 weights: x = q * d + m, nibbles as in Q4_0. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qs[NURI_QK4_1 / 2];
} nuri_block_q4_1;
_Static_assert(sizeof(nuri_block_q4_1) == 20, "Q4_1 block must be 20 bytes");

/* 32 weights: x = (q - 16) * d; the low 4 bits of q as in Q4_0, bit 4 of
 * element j in bit j of qh read as a little-endian uint32. */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[NURI_QK5_0 / 2];
} nuri_block_q5_0;
_Static_assert(sizeof(nuri_block_q5_0) == 22, "Q5_0 block must be 22 bytes");

/* 32 weights: x = q * d + m, bits as in Q5_0. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[NURI_QK5_1 / 2];
} nuri_block_q5_1;
_Static_assert(sizeof(nuri_block_q5_1) == 24, "Q5_1 block must be 24 bytes");

/* 32 weights: x = q * d. */
typedef struct {
    uint16_t d;
    int8_t qs[NURI_QK8_0];
} nuri_block_q8_0;
_Static_assert(sizeof(nuri_block_q8_0) == 34, "Q8_0 block must be 34 bytes");

/* 32 weights: x = q * d; s = d * sum(q) (as half), which lets a dot product
 * with a Q4_1/Q5_1 row add the min term without summing the activations. */
typedef struct {
    uint16_t d;
    uint16_t s;
    int8_t qs[NURI_QK8_1];
} nuri_block_q8_1;
_Static_assert(sizeof(nuri_block_q8_1) == 36, "Q8_1 block must be 36 bytes");

/* ---- K-quants and IQ4 ----------------------------------------------------
 *
 * Super-blocks of NURI_QK_K = 256 weights split into sub-blocks (16 of 16
 * weights, or 8 of 32) whose own scales (and minimums) are small integers
 * times the super-block's half-float d (and dmin). The bit positions, which
 * the formats interleave for SIMD unpacking, are spelled out in quant_k.c.
 * The activation type for their dot products is Q8_K. */

/* x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4), q two bits,
 * s = element / 16. */
typedef struct {
    uint8_t scales[NURI_QK_K / 16];
    uint8_t qs[NURI_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} nuri_block_q2_k;
_Static_assert(sizeof(nuri_block_q2_k) == 84, "Q2_K block must be 84 bytes");

/* x = d * (s - 32) * (q - 4): q = two low bits from qs plus a third bit
 * from hmask, s six bits packed into 12 bytes. */
typedef struct {
    uint8_t hmask[NURI_QK_K / 8];
    uint8_t qs[NURI_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} nuri_block_q3_k;
_Static_assert(sizeof(nuri_block_q3_k) == 110, "Q3_K block must be 110 bytes");

/* x = d * sc * q - dmin * m per sub-block of 32: sc and m six bits each,
 * packed into 12 bytes; q four bits. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[NURI_QK_K / 2];
} nuri_block_q4_k;
_Static_assert(sizeof(nuri_block_q4_k) == 144, "Q4_K block must be 144 bytes");

/* As Q4_K with a fifth bit per weight in qh. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[NURI_QK_K / 8];
    uint8_t qs[NURI_QK_K / 2];
} nuri_block_q5_k;
_Static_assert(sizeof(nuri_block_q5_k) == 176, "Q5_K block must be 176 bytes");

/* x = d * scales[element / 16] * (q - 32): four low bits in ql, two high
 * bits in qh. */
typedef struct {
    uint8_t ql[NURI_QK_K / 2];
    uint8_t qh[NURI_QK_K / 4];
    int8_t scales[NURI_QK_K / 16];
    uint16_t d;
} nuri_block_q6_k;
_Static_assert(sizeof(nuri_block_q6_k) == 210, "Q6_K block must be 210 bytes");

/* Activations: x = d * q (d a full float); bsums[g] = the sum of the 16
 * levels of group g, which the formats with a minimum or an offset use. */
typedef struct {
    float d;
    int8_t qs[NURI_QK_K];
    int16_t bsums[NURI_QK_K / 16];
} nuri_block_q8_k;
_Static_assert(sizeof(nuri_block_q8_k) == 292, "Q8_K block must be 292 bytes");

/* 32 weights: x = d * NURI_IQ4_VALUES[q], nibbles as in Q4_0. */
#define NURI_QK_IQ4_NL 32
typedef struct {
    uint16_t d;
    uint8_t qs[NURI_QK_IQ4_NL / 2];
} nuri_block_iq4_nl;
_Static_assert(sizeof(nuri_block_iq4_nl) == 18, "IQ4_NL block must be 18 bytes");

/* 256 weights: x = d * (ls - 32) * NURI_IQ4_VALUES[q] per sub-block of 32,
 * ls six bits (low four in scales_l, high two in scales_h); each sub-block's
 * nibbles as in IQ4_NL. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[NURI_QK_K / 64];
    uint8_t qs[NURI_QK_K / 2];
} nuri_block_iq4_xs;
_Static_assert(sizeof(nuri_block_iq4_xs) == 136, "IQ4_XS block must be 136 bytes");

/* The 16 levels of IQ4_NL and IQ4_XS, in increasing order. */
extern const int8_t NURI_IQ4_VALUES[16];

/* The reference conversions and dot products of these types (quant_k.c);
 * the traits table points at them. Same contracts as the traits' fields. */
void nuri_dequantize_q2_k(const void *src, float *dst, int64_t n);
void nuri_dequantize_q3_k(const void *src, float *dst, int64_t n);
void nuri_dequantize_q4_k(const void *src, float *dst, int64_t n);
void nuri_dequantize_q5_k(const void *src, float *dst, int64_t n);
void nuri_dequantize_q6_k(const void *src, float *dst, int64_t n);
void nuri_dequantize_q8_k(const void *src, float *dst, int64_t n);
void nuri_dequantize_iq4_nl(const void *src, float *dst, int64_t n);
void nuri_dequantize_iq4_xs(const void *src, float *dst, int64_t n);
void nuri_quantize_q2_k(const float *src, void *dst, int64_t n);
void nuri_quantize_q3_k(const float *src, void *dst, int64_t n);
void nuri_quantize_q4_k(const float *src, void *dst, int64_t n);
void nuri_quantize_q5_k(const float *src, void *dst, int64_t n);
void nuri_quantize_q6_k(const float *src, void *dst, int64_t n);
void nuri_quantize_q8_k(const float *src, void *dst, int64_t n);
void nuri_quantize_iq4_nl(const float *src, void *dst, int64_t n);
void nuri_quantize_iq4_xs(const float *src, void *dst, int64_t n);
void nuri_vec_dot_q2_k_q8_k(int64_t n, float *result, const void *x, const void *y);
void nuri_vec_dot_q3_k_q8_k(int64_t n, float *result, const void *x, const void *y);
void nuri_vec_dot_q4_k_q8_k(int64_t n, float *result, const void *x, const void *y);
void nuri_vec_dot_q5_k_q8_k(int64_t n, float *result, const void *x, const void *y);
void nuri_vec_dot_q6_k_q8_k(int64_t n, float *result, const void *x, const void *y);
void nuri_vec_dot_iq4_nl_q8_0(int64_t n, float *result, const void *x, const void *y);
void nuri_vec_dot_iq4_xs_q8_k(int64_t n, float *result, const void *x, const void *y);

/* ---- Row conversions ---------------------------------------------------- */

/* Quantizes n floats into a row of type (its from_float). Does nothing when
 * the type has no converter; the caller checks nuri_type_get(type)->from_float
 * first. n must be a multiple of the block size (a partial tail block is not
 * written). */
void nuri_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* Converts a row of n elements of type to floats (its to_float). Does nothing
 * when the type has no converter; n as for nuri_quantize_row. */
void nuri_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

#endif
