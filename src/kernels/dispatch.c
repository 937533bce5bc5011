/* dispatch.c — which kernels run: the CPU's features (cpuid, and xgetbv for
 * whether the OS saves the wide registers, on x86-64; the hwcaps the Linux
 * kernel reports, on aarch64), the NURI_ISA override, and one table per
 * level composed from the level files, built once. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "kernels/kernels_impl.h"

/* Every level has its name on every architecture (NURI_ISA_COUNT has none). */
const char *nuri_isa_name(nuri_isa isa) {
    switch (isa) {
    case NURI_ISA_SCALAR: return "scalar";
    case NURI_ISA_AVX2: return "avx2";
    case NURI_ISA_AVX512: return "avx512";
    case NURI_ISA_NEON: return "neon";
    case NURI_ISA_DOTPROD: return "dotprod";
    case NURI_ISA_I8MM: return "i8mm";
    default: return "unknown";
    }
}

/* ---- CPU features ------------------------------------------------------------ */

#if defined(__x86_64__)
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static nuri_isa detect_x86(void) {
    unsigned eax, ebx, ecx, edx;
    if (__get_cpuid_max(0, NULL) < 7) return NURI_ISA_SCALAR;
    __cpuid(1, eax, ebx, ecx, edx);
    const bool osxsave = ecx & (1u << 27), avx = ecx & (1u << 28);
    const bool fma = ecx & (1u << 12), f16c = ecx & (1u << 29);
    if (!osxsave || !avx) return NURI_ISA_SCALAR;
    const uint64_t xcr0 = read_xcr0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6;    /* SSE and AVX state */
    const bool zmm_state = (xcr0 & 0xE6) == 0xE6;  /* plus opmask, ZMM0-15 high, ZMM16-31 */
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const bool avx2 = ebx & (1u << 5);
    const bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
    const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
    const bool avx512vnni = ecx & (1u << 11);
    if (!ymm_state || !avx2 || !fma || !f16c) return NURI_ISA_SCALAR;
    if (zmm_state && avx512f && avx512dq && avx512bw && avx512vl && avx512vnni)
        return NURI_ISA_AVX512;
    return NURI_ISA_AVX2;
}
#endif

#if defined(__aarch64__)
/* Linux's hwcap bits (asm/hwcap.h; the same on Android), spelled out for C
 * libraries whose headers predate them. */
#define ARM_HWCAP_ASIMD (1ul << 1)
#define ARM_HWCAP_ASIMDDP (1ul << 20)
#define ARM_HWCAP2_I8MM (1ul << 13)
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif

/* The kernel, not the CPU ID registers, says what user space may use (it
 * hides features it does not support). Cores with i8mm all have dotprod,
 * but both are checked because the i8mm file uses both. Without hwcaps
 * (not Linux) only the Advanced SIMD every Armv8-A core has is assumed. */
static nuri_isa detect_arm(void) {
#if defined(__linux__)
    const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
    if (!(hwcap & ARM_HWCAP_ASIMD)) return NURI_ISA_SCALAR;
    if (!(hwcap & ARM_HWCAP_ASIMDDP)) return NURI_ISA_NEON;
    if (!(hwcap2 & ARM_HWCAP2_I8MM)) return NURI_ISA_DOTPROD;
    return NURI_ISA_I8MM;
#else
    return NURI_ISA_NEON;
#endif
}
#endif

/* ---- The level in use ---------------------------------------------------------- */

nuri_isa nuri_isa_resolve(nuri_isa cpu_best, const char *request, char *warning,
                          size_t warning_size) {
    if (warning_size) warning[0] = '\0';
    if (!request || !request[0]) return cpu_best;
    const char *best_name = nuri_isa_name(cpu_best);
    char known[64] = "";
    for (int isa = 0; isa < NURI_ISA_COUNT; isa++) {
        const char *name = nuri_isa_name((nuri_isa)isa);
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", isa ? ", " : "", name);
        if (strcasecmp(request, name) != 0) continue;
        if (isa <= (int)cpu_best) return (nuri_isa)isa;
        snprintf(warning, warning_size, "NURI_ISA=%s: this CPU supports at most %s; using %s",
                 request, best_name, best_name);
        return cpu_best;
    }
    snprintf(warning, warning_size, "NURI_ISA=%.40s is not one of %s; using %s", request, known,
             best_name);
    return cpu_best;
}

/* ---- Tables ---------------------------------------------------------------------- */

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static nuri_isa cpu_best;
static nuri_isa selected;
static nuri_kernel tables[NURI_ISA_COUNT][NURI_TYPE_COUNT];

/* Copies the fields a level sets over the table below it. */
static void overlay(nuri_kernel *table, void (*fill)(nuri_kernel *)) {
    nuri_kernel level[NURI_TYPE_COUNT];
    memset(level, 0, sizeof level);
    fill(level);
    for (int t = 0; t < NURI_TYPE_COUNT; t++) {
        if (level[t].vec_dot) table[t].vec_dot = level[t].vec_dot;
        if (level[t].gemm) table[t].gemm = level[t].gemm;
        if (level[t].quantize) table[t].quantize = level[t].quantize;
    }
}

static void build_tables(void) {
#if defined(__x86_64__)
    cpu_best = detect_x86();
#elif defined(__aarch64__)
    cpu_best = detect_arm();
#else
    cpu_best = NURI_ISA_SCALAR;
#endif
    for (int isa = 0; isa <= (int)cpu_best; isa++) {
        nuri_kernel *table = tables[isa];
        overlay(table, nuri_kernels_fill_scalar);
#if defined(__x86_64__)
        if (isa >= NURI_ISA_AVX2) {
            overlay(table, nuri_kernels_fill_avx2);
            overlay(table, nuri_kernels_fill_avx2_k);
        }
        if (isa >= NURI_ISA_AVX512) {
            overlay(table, nuri_kernels_fill_avx512);
            overlay(table, nuri_kernels_fill_avx512_k);
        }
#endif
#if defined(__aarch64__)
        if (isa >= NURI_ISA_NEON) overlay(table, nuri_kernels_fill_neon);
        if (isa >= NURI_ISA_DOTPROD) overlay(table, nuri_kernels_fill_dotprod);
        if (isa >= NURI_ISA_I8MM) overlay(table, nuri_kernels_fill_i8mm);
#endif
#if defined(__x86_64__)
        /* Generation (one token) of Q8_0 streams 15 % faster with the AVX2
         * kernel's 8-row groups than with AVX-512's 16 rows (AMD Zen 5, 2
         * threads: 57 vs 49 t/s on TinyLlama Q8_0, 97 % of the memory
         * bandwidth); both equal the reference bit for bit. (Q4_K, Q5_K and
         * Q6_K have a row-wise one-token path of their own in
         * kernels_avx512_k.c.) */
        if (isa == NURI_ISA_AVX512)
            table[NURI_TYPE_Q8_0].gemm_one_token = tables[NURI_ISA_AVX2][NURI_TYPE_Q8_0].gemm;
#endif
        /* IQ4_NL takes Q8_0 activations: the level's Q8_0 quantizer. */
        table[NURI_TYPE_IQ4_NL].quantize = table[NURI_TYPE_Q8_0].quantize;
    }
    char warning[160];
    selected = nuri_isa_resolve(cpu_best, getenv("NURI_ISA"), warning, sizeof warning);
    if (warning[0]) fprintf(stderr, "nuri: %s\n", warning);
}

static void init(void) { pthread_once(&tables_once, build_tables); }

nuri_isa nuri_cpu_best_isa(void) {
    init();
    return cpu_best;
}

nuri_isa nuri_kernels_isa(void) {
    init();
    return selected;
}

const nuri_kernel *nuri_kernels_at(nuri_isa isa, uint32_t type) {
    init();
    if ((unsigned)isa > (unsigned)cpu_best || type >= NURI_TYPE_COUNT) return NULL;
    const nuri_kernel *k = &tables[isa][type];
    return k->vec_dot && k->gemm ? k : NULL;
}

const nuri_kernel *nuri_kernels_for(uint32_t type) { return nuri_kernels_at(nuri_kernels_isa(), type); }
