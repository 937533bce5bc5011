/* kernels_dotprod.c — the aarch64 level with the Armv8.2 dot-product
 * instructions (FEAT_DotProd: SDOT/UDOT), compiled with
 * -march=armv8.2-a+dotprod.
 *
 * Only the integer formats' gemm and vec_dot change (kernels_arm_int8.h,
 * kernels_arm_k.h): one SDOT multiplies 16 byte pairs and adds them four
 * at a time into the 32-bit lanes, so a block of 32 takes two. Float
 * formats and the activation quantizers stay NEON's.
 *
 * Only dispatch.c calls in here, after the hwcaps showed asimddp. */
#if defined(__aarch64__)

#include <arm_neon.h>

static inline __attribute__((always_inline)) int32x4_t dot32(int32x4_t acc, int8x16_t wl,
                                                             int8x16_t wh, int8x16_t xl,
                                                             int8x16_t xh, const int small) {
    (void)small;
    return vdotq_s32(vdotq_s32(acc, wl, xl), wh, xh);
}

#include "kernels/kernels_arm_int8.h"

ALWAYS_INLINE int32x4_t dot16(int8x16_t w, int8x16_t x) { return vdotq_s32(vdupq_n_s32(0), w, x); }

#include "kernels/kernels_arm_k.h"

void nuri_kernels_fill_dotprod(nuri_kernel table[NURI_TYPE_COUNT]) {
    fill_int8(table);
    fill_k(table);
}

#else
typedef int nuri_kernels_dotprod_not_built; /* keeps the translation unit non-empty */
#endif
