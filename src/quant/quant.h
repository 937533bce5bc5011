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
