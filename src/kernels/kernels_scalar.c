/* kernels_scalar.c — the portable level: every kernel built from the scalar
 * reference in quant/quant.c, so it runs on any CPU and defines the results
 * the faster levels are tested against. */
#include "core/util.h"
#include "kernels/kernels_impl.h"

/* y[t][r] = vec_dot(row r, activation row t), one reference call each. */
static void gemm_reference(nuri_vec_dot_fn dot, int64_t n_cols, const void *w, size_t w_row_bytes,
                           int n_rows, const void *x, size_t x_row_bytes, int n_tok, float *y,
                           size_t y_stride) {
    for (int t = 0; t < n_tok; t++) {
        const void *xt = (const char *)x + (size_t)t * x_row_bytes;
        for (int r = 0; r < n_rows; r++)
            dot(n_cols, y + (size_t)t * y_stride + r, (const char *)w + (size_t)r * w_row_bytes, xt);
    }
}

/* The gemm signature carries no type, so each type gets a wrapper. Every
 * type whose traits have a vec_dot must be listed here. */
#define SCALAR_GEMM(NAME, TYPE)                                                                 \
    static void gemm_##NAME(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows,      \
                            const void *x, size_t x_row_bytes, int n_tok, float *y,             \
                            size_t y_stride) {                                                  \
        gemm_reference(nuri_type_get(TYPE)->vec_dot, n_cols, w, w_row_bytes, n_rows, x,         \
                       x_row_bytes, n_tok, y, y_stride);                                        \
    }

SCALAR_GEMM(f32, NURI_TYPE_F32)
SCALAR_GEMM(f16, NURI_TYPE_F16)
SCALAR_GEMM(bf16, NURI_TYPE_BF16)
SCALAR_GEMM(q4_0, NURI_TYPE_Q4_0)
SCALAR_GEMM(q4_1, NURI_TYPE_Q4_1)
SCALAR_GEMM(q5_0, NURI_TYPE_Q5_0)
SCALAR_GEMM(q5_1, NURI_TYPE_Q5_1)
SCALAR_GEMM(q8_0, NURI_TYPE_Q8_0)
SCALAR_GEMM(q2_k, NURI_TYPE_Q2_K)
SCALAR_GEMM(q3_k, NURI_TYPE_Q3_K)
SCALAR_GEMM(q4_k, NURI_TYPE_Q4_K)
SCALAR_GEMM(q5_k, NURI_TYPE_Q5_K)
SCALAR_GEMM(q6_k, NURI_TYPE_Q6_K)
SCALAR_GEMM(iq4_nl, NURI_TYPE_IQ4_NL)
SCALAR_GEMM(iq4_xs, NURI_TYPE_IQ4_XS)

static const struct {
    nuri_type type;
    nuri_gemm_fn gemm;
} scalar_gemms[] = {
    {NURI_TYPE_F32, gemm_f32},   {NURI_TYPE_F16, gemm_f16},   {NURI_TYPE_BF16, gemm_bf16},
    {NURI_TYPE_Q4_0, gemm_q4_0}, {NURI_TYPE_Q4_1, gemm_q4_1}, {NURI_TYPE_Q5_0, gemm_q5_0},
    {NURI_TYPE_Q5_1, gemm_q5_1}, {NURI_TYPE_Q8_0, gemm_q8_0},
    {NURI_TYPE_Q2_K, gemm_q2_k}, {NURI_TYPE_Q3_K, gemm_q3_k}, {NURI_TYPE_Q4_K, gemm_q4_k},
    {NURI_TYPE_Q5_K, gemm_q5_k}, {NURI_TYPE_Q6_K, gemm_q6_k}, {NURI_TYPE_IQ4_NL, gemm_iq4_nl},
    {NURI_TYPE_IQ4_XS, gemm_iq4_xs},
};

void nuri_kernels_fill_scalar(nuri_kernel table[NURI_TYPE_COUNT]) {
    for (size_t i = 0; i < sizeof scalar_gemms / sizeof scalar_gemms[0]; i++) {
        const nuri_type type = scalar_gemms[i].type;
        const nuri_type_traits *traits = nuri_type_get(type);
        const nuri_type_traits *act = nuri_type_get(traits->vec_dot_type);
        table[type].vec_dot = traits->vec_dot;
        table[type].gemm = scalar_gemms[i].gemm;
        /* Float activations are used as they are. */
        table[type].quantize = traits->vec_dot_type == NURI_TYPE_F32 ? NULL : act->from_float;
    }
}
