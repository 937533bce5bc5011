/* qemu-insn-count.c — a QEMU TCG plugin that counts the guest instructions
 * a program executes, in total and inside given address ranges; used for
 * the per-token instruction counts of the Arm estimate in
 * docs/benchmarks.md ("Arm").
 *
 *   gcc -shared -fPIC -O2 -o /tmp/libinsncount.so toolchain/qemu-insn-count.c
 *   qemu-aarch64 -cpu cortex-a76 \
 *       -plugin /tmp/libinsncount.so,arg=range=gemm:5500053230:5500055400 \
 *       build-arm/nuri run -m MODEL -p Hi -n 3 -t 1 --temp 0
 *
 * prints "insns total N" and "insns NAME N" per range=NAME:LO:HI (hex guest
 * addresses; qemu-aarch64 loads a position-independent executable at
 * 0x5500000000, so LO = that + the symbol's address from `nm`) on stderr at
 * exit. Counting is per translated block, inline (no callback per
 * instruction), so the program runs at nearly its usual emulated speed.
 *
 * QEMU's plugin header is not packaged by Debian, so the few declarations
 * used are written out here from the documented plugin API; they match the
 * API version 1 of QEMU 7.2 (Debian 12's qemu-user). Newer QEMUs may refuse
 * the version number; build against their qemu-plugin.h there. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_RANGES 32

/* The counters are bumped by inline code from every vCPU thread without
 * atomics: exact for single-threaded runs (-t 1), which is how they are
 * used. */
static uint64_t total;
static struct {
    uint64_t lo, hi, count;
    char name[64];
} ranges[MAX_RANGES];
static int n_ranges;

/* A block is attributed to a range by its first address (kernels are whole
 * functions, so their blocks never straddle a range's ends). */
static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    const uint64_t n = qemu_plugin_tb_n_insns(tb), pc = qemu_plugin_tb_vaddr(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
    for (int i = 0; i < n_ranges; i++)
        if (pc >= ranges[i].lo && pc < ranges[i].hi)
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &ranges[i].count, n);
}

static void on_exit_report(qemu_plugin_id_t id, void *userdata) {
    (void)id;
    (void)userdata;
    fprintf(stderr, "insns total %" PRIu64 "\n", total);
    for (int i = 0; i < n_ranges; i++) fprintf(stderr, "insns %s %" PRIu64 "\n", ranges[i].name, ranges[i].count);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *colon;
        if (strncmp(arg, "range=", 6) != 0 || !(colon = strchr(arg + 6, ':')) || n_ranges == MAX_RANGES) {
            fprintf(stderr, "qemu-insn-count: unknown or extra argument '%s' (want range=NAME:LO:HI)\n", arg);
            return -1;
        }
        char *end;
        snprintf(ranges[n_ranges].name, sizeof ranges[n_ranges].name, "%.*s", (int)(colon - arg - 6), arg + 6);
        ranges[n_ranges].lo = strtoull(colon + 1, &end, 16);
        if (*end != ':') {
            fprintf(stderr, "qemu-insn-count: bad range '%s'\n", arg);
            return -1;
        }
        ranges[n_ranges].hi = strtoull(end + 1, NULL, 16);
        n_ranges++;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_report, NULL);
    return 0;
}
