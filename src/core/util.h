/* util.h — small helpers every module shares: error reporting, overflow-
 * checked size arithmetic, half-precision conversion, unaligned loads. */
#ifndef NURI_UTIL_H
#define NURI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nuri.h"

#if defined(__GNUC__)
#define NURI_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define NURI_PRINTF(fmt, args)
#endif

/* Fills err (which may be NULL) and returns status, so callers can write
 * `return nuri_fail(err, NURI_ERR_FORMAT, "bad %s", what);`. */
nuri_status nuri_fail(nuri_error *err, nuri_status status, const char *fmt, ...) NURI_PRINTF(3, 4);

/* Overflow-checked arithmetic on sizes: return false on overflow. */
static inline bool nuri_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool nuri_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* Little-endian unaligned loads (the file formats are little-endian, and
 * nuri only builds for little-endian targets). */
static inline uint16_t nuri_load_u16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t nuri_load_u32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t nuri_load_u64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline float nuri_load_f32(const void *p) { float v; memcpy(&v, p, 4); return v; }

/* IEEE half and bfloat16 <-> float. Exact in the to-float direction;
 * round-to-nearest-even in the from-float direction. */
float nuri_fp16_to_fp32(uint16_t h);
uint16_t nuri_fp32_to_fp16(float f);
static inline float nuri_bf16_to_fp32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t nuri_fp32_to_bf16(float f);

/* Allocation that fails cleanly (NULL) on a zero-check or overflow of n*size. */
void *nuri_calloc_array(size_t n, size_t size);
void *nuri_malloc_array(size_t n, size_t size);

/* Monotonic clock in seconds. */
double nuri_time_sec(void);

#endif
