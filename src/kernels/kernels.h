/* kernels.h — the compute kernels the forward pass calls, chosen once at
 * run time for the CPU it runs on.
 *
 * The scalar reference in quant/quant.c defines every result; each ISA file
 * (kernels_avx2.c, kernels_avx512.c on x86-64; kernels_neon.c,
 * kernels_dotprod.c, kernels_i8mm.c on aarch64) implements the same
 * functions faster and is tested against the reference on random data. Only
 * the ISA files are compiled with ISA flags, and they are only called after
 * dispatch.c has seen the CPU has them (cpuid/xgetbv on x86-64, the kernel's
 * hwcaps on aarch64), so one binary runs on any x86-64 or any Armv8-A. */
#ifndef NURI_KERNELS_H
#define NURI_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* Instruction-set levels, in increasing order on each architecture: the
 * levels of the architecture being compiled for come first (below
 * NURI_ISA_COUNT); the other architecture's levels follow it, named so that
 * portable code may mention them, but never available. */
typedef enum {
    NURI_ISA_SCALAR = 0,
#if defined(__aarch64__)
    NURI_ISA_NEON,    /* Advanced SIMD, which every Armv8-A core has */
    NURI_ISA_DOTPROD, /* + SDOT/UDOT (FEAT_DotProd, Armv8.2 and later) */
    NURI_ISA_I8MM,    /* + SMMLA (FEAT_I8MM, Armv8.6 and later) */
    NURI_ISA_COUNT,
    NURI_ISA_AVX2,
    NURI_ISA_AVX512,
#else
    NURI_ISA_AVX2,   /* AVX2 + FMA + F16C */
    NURI_ISA_AVX512, /* AVX-512 F/BW/VL + VNNI */
    NURI_ISA_COUNT,
    NURI_ISA_NEON,
    NURI_ISA_DOTPROD,
    NURI_ISA_I8MM,
#endif
} nuri_isa;

const char *nuri_isa_name(nuri_isa isa);

/* The best level this CPU (and OS: xgetbv on x86-64) supports. */
nuri_isa nuri_cpu_best_isa(void);

/* Products of a block of weight rows with a block of activation rows:
 * y[t * y_stride + r] = dot(row r of w, row t of x) for r < n_rows, t < n_tok.
 * w rows are of the weight type, x rows of its vec_dot_type; both hold
 * n_cols elements. Kernels reuse each loaded weight block across tokens.
 *
 * n_cols is a multiple of the type's block size (any count for F32, F16,
 * BF16); n_rows, n_tok >= 1; rows, strides and y may have any alignment;
 * only y[t * y_stride + r] for r < n_rows is written. Single-threaded: split
 * the rows among threads (whole multiples of 32 rows waste nothing).
 * Pass all the rows and tokens a thread has in one call: a call packs the
 * weights it reads once for all its tokens (n_tok <= 4 takes a streaming
 * path made for generation). Uses up to about 32 KiB of stack.
 *
 * Results. Integer formats (Q4_0 ... Q8_0): every level returns exactly the
 * scalar reference's float (same exact integer block sums, same float
 * operations in the same order), so results never depend on the level, the
 * path, the tiling or how rows and tokens are split. Float formats: the
 * reference sums in double, the SIMD levels in float lanes added in a fixed
 * order; per level the result of a (row, token) pair depends only on the
 * two rows, not on the split, and gemm equals vec_dot bit for bit. The AVX2
 * Q8_0 kernels need activation levels in [-127, 127] (what every quantizer
 * writes); everything else is exact for any int8 level. */
typedef void (*nuri_gemm_fn)(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,
                             const void *x, size_t x_row_bytes, int n_tok, float *y,
                             size_t y_stride);

typedef struct {
    nuri_vec_dot_fn vec_dot;       /* one row by one activation row (use gemm for many rows) */
    nuri_gemm_fn gemm;             /* rows x tokens */
    nuri_from_float_fn quantize;   /* float activations to vec_dot_type, the reference's
                                      bytes exactly (NULL: F32 activations used as they are) */
    nuri_gemm_fn gemm_one_token;   /* rows x one token, where another level's kernel streams
                                      faster than gemm (NULL: use gemm); same results */
} nuri_kernel;

/* The kernels for weight type `type` at the selected level; NULL when the
 * type has no compute support. */
const nuri_kernel *nuri_kernels_for(uint32_t type);

/* The level in use: the best the CPU has, unless NURI_ISA (scalar, avx2,
 * avx512 on x86-64; scalar, neon, dotprod, i8mm on aarch64) in the
 * environment asks for a lower one. Decided once, thread-safely; a level
 * above the CPU's or an unknown name gives the best one with a one-line
 * warning on stderr. */
nuri_isa nuri_kernels_isa(void);

/* The kernels of a specific level (for tests and benchmarks); NULL if this
 * build or CPU lacks it or the type has no kernels there. */
const nuri_kernel *nuri_kernels_at(nuri_isa isa, uint32_t type);

#endif
