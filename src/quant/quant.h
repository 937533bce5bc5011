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

#endif
