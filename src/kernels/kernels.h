/* kernels.h — the compute kernels the forward pass calls, chosen once at
 * run time for the CPU it runs on.
 *
 * The scalar reference in quant/quant.c defines every result; each ISA file
 * (kernels_avx2.c, kernels_avx512.c, later Arm) implements the same
 * functions faster and is tested against the reference on random data. Only
 * the ISA files are compiled with ISA flags, and they are only called after
 * cpu_features says the CPU has them, so one binary runs on any x86-64. */
#ifndef NURI_KERNELS_H
#define NURI_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* Instruction-set levels, in increasing order on each architecture. */
typedef enum {
    NURI_ISA_SCALAR = 0,
    NURI_ISA_AVX2,   /* AVX2 + FMA + F16C */
    NURI_ISA_AVX512, /* AVX-512 F/BW/VL + VNNI */
    NURI_ISA_COUNT
} nuri_isa;

const char *nuri_isa_name(nuri_isa isa);

/* The best level this CPU (and OS: xgetbv) supports. */
nuri_isa nuri_cpu_best_isa(void);

/* Products of a block of weight rows with a block of activation rows:
 * y[t * y_stride + r] = dot(row r of w, row t of x) for r < n_rows, t < n_tok.
 * w rows are of the weight type, x rows of its vec_dot_type; both hold
 * n_cols elements. Kernels reuse each loaded weight block across tokens. */
typedef void (*nuri_gemm_fn)(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,
                             const void *x, size_t x_row_bytes, int n_tok, float *y,
                             size_t y_stride);

typedef struct {
    nuri_vec_dot_fn vec_dot;       /* one row by one activation row */
    nuri_gemm_fn gemm;             /* rows x tokens */
    nuri_from_float_fn quantize;   /* float activations to vec_dot_type (NULL for F32) */
} nuri_kernel;

/* The kernels for weight type `type` at the selected level; NULL when the
 * type has no compute support. */
const nuri_kernel *nuri_kernels_for(uint32_t type);

/* The level in use: the best the CPU has, unless NURI_ISA (scalar, avx2,
 * avx512) in the environment asks for a lower one. Decided once. */
nuri_isa nuri_kernels_isa(void);

/* The kernels of a specific level (for tests and benchmarks); NULL if this
 * build or CPU lacks it or the type has no kernels there. */
const nuri_kernel *nuri_kernels_at(nuri_isa isa, uint32_t type);

#endif
