/* kernels_impl.h — what the files of src/kernels share and nothing else
 * includes (tests excepted): each level's table filler and the pure rule
 * that turns the CPU's best level and NURI_ISA into the level in use. */
#ifndef NURI_KERNELS_IMPL_H
#define NURI_KERNELS_IMPL_H

#include <stddef.h>
#include <string.h>

#include "kernels/kernels.h"

/* Each level's file sets the fields it implements for the types it knows,
 * leaving the rest as they are, so dispatch.c composes a level's table by
 * filling scalar first and each higher level over it. */
void nuri_kernels_fill_scalar(nuri_kernel table[NURI_TYPE_COUNT]);
#if defined(__x86_64__)
/* Only called when the CPU and OS support the level (these files are
 * compiled with its instruction set). */
void nuri_kernels_fill_avx2(nuri_kernel table[NURI_TYPE_COUNT]);
void nuri_kernels_fill_avx512(nuri_kernel table[NURI_TYPE_COUNT]);
/* The K-quant and IQ4 kernels of each level (kernels_avx2_k.c,
 * kernels_avx512_k.c), filled after the level's main file. */
void nuri_kernels_fill_avx2_k(nuri_kernel table[NURI_TYPE_COUNT]);
void nuri_kernels_fill_avx512_k(nuri_kernel table[NURI_TYPE_COUNT]);
#endif
#if defined(__aarch64__)
/* The same for aarch64: kernels_neon.c (baseline Armv8-A, also the
 * activation quantizers and float formats of the levels above),
 * kernels_dotprod.c (+dotprod), kernels_i8mm.c (+dotprod+i8mm). */
void nuri_kernels_fill_neon(nuri_kernel table[NURI_TYPE_COUNT]);
void nuri_kernels_fill_dotprod(nuri_kernel table[NURI_TYPE_COUNT]);
void nuri_kernels_fill_i8mm(nuri_kernel table[NURI_TYPE_COUNT]);
#endif

/* Sets y to zero for n_rows x n_tok (a product over no columns). */
static inline void zero_output(int n_rows, int n_tok, float *y, size_t y_stride) {
    for (int t = 0; t < n_tok; t++) memset(y + (size_t)t * y_stride, 0, (size_t)n_rows * sizeof(float));
}

/* The level to use, given the best the CPU supports and the value of
 * NURI_ISA (NULL or empty: the best). An unknown name or a level above the
 * CPU's gives the best one and writes a one-line explanation (no newline)
 * into warning; otherwise warning is set to "". */
nuri_isa nuri_isa_resolve(nuri_isa cpu_best, const char *request, char *warning,
                          size_t warning_size);

#endif
