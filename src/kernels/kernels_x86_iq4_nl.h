/* kernels_x86_iq4_nl.h — the IQ4_NL entry points of an x86 level:
 * gemm_iq4_nl and vec_dot_iq4_nl over the level's own nl_gemm (prompt
 * tiles) and nl_gemm_few (up to 4 tokens), both taking the tile width as
 * their last argument. kernels_avx2_k.c and kernels_avx512_k.c include it
 * after defining those two, so the dispatch on the token count is written
 * once. */
#ifndef NURI_KERNELS_X86_IQ4_NL_H
#define NURI_KERNELS_X86_IQ4_NL_H

/* nl_gemm and nl_gemm_few with the tile width fixed, one function each. */
#define NL_WIDTH(T)                                                                                        \
    static void nl_gemm_##T(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr, \
                            int n_tok, float *y, size_t ys) {                                            \
        nl_gemm(nb, w, wr, n, x, xr, n_tok, y, ys, T);                                                   \
    }                                                                                                    \
    static void nl_few_##T(int64_t nb, const uint8_t *w, size_t wr, int n, const uint8_t *x, size_t xr,  \
                           float *y, size_t ys) {                                                        \
        nl_gemm_few(nb, w, wr, n, x, xr, y, ys, T);                                                      \
    }
NL_WIDTH(1)
NL_WIDTH(2)
NL_WIDTH(3)
NL_WIDTH(4)

static void gemm_iq4_nl(int64_t n_cols, const void *w, size_t w_row_bytes, int n_rows, const void *x,
                        size_t x_row_bytes, int n_tok, float *y, size_t y_stride) {
    const int64_t nb = n_cols / NURI_QK_IQ4_NL;
    if (nb == 0) {
        zero_output(n_rows, n_tok, y, y_stride);
        return;
    }
    switch (n_tok) {
    case 1: nl_few_1(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); return;
    case 2: nl_few_2(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); return;
    case 3: nl_few_3(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); return;
    case 4: nl_few_4(nb, w, w_row_bytes, n_rows, x, x_row_bytes, y, y_stride); return;
    default: break;
    }
    /* Prompt batches: tiles of 4 tokens, then the remainder as one tile. */
    const int whole = n_tok / 4 * 4;
    if (whole) nl_gemm_4(nb, w, w_row_bytes, n_rows, x, x_row_bytes, whole, y, y_stride);
    const int rest = n_tok - whole;
    const uint8_t *xr = (const uint8_t *)x + (size_t)whole * x_row_bytes;
    float *yr = y + (size_t)whole * y_stride;
    if (rest == 1) nl_gemm_1(nb, w, w_row_bytes, n_rows, xr, x_row_bytes, 1, yr, y_stride);
    if (rest == 2) nl_gemm_2(nb, w, w_row_bytes, n_rows, xr, x_row_bytes, 2, yr, y_stride);
    if (rest == 3) nl_gemm_3(nb, w, w_row_bytes, n_rows, xr, x_row_bytes, 3, yr, y_stride);
}

static void vec_dot_iq4_nl(int64_t n, float *result, const void *w, const void *x) {
    gemm_iq4_nl(n, w, 0, 1, x, 0, 1, result, 1);
}

#endif /* NURI_KERNELS_X86_IQ4_NL_H */
