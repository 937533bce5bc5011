/* test_gguf.c — the GGUF reader, the writer and `nuri info`.
 *
 * Real files from ../shared are spot-checked against values read with an
 * independent parser; the writer is checked by round trips (every value
 * type, nested and string arrays, several tensor types, a copy of a real
 * model); the reader's validation by malformed files this test builds byte
 * by byte — every prefix of a valid file, random corruption, and one file
 * per rule. A representative subset also goes through the `nuri info`
 * executable ($NURI_BIN), which must exit 1 with exactly one stderr line. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "support/test.h"

static const uint64_t HUGE_COUNT = (uint64_t)1 << 62;

/* ---- Byte builder -------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void b_u8(bytes *b, uint8_t v) { b_put(b, &v, 1); }
static void b_u32(bytes *b, uint32_t v) { b_put(b, &v, 4); }
static void b_u64(bytes *b, uint64_t v) { b_put(b, &v, 8); }
static void b_str(bytes *b, const char *s) {
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}
static void b_zeros(bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) b_u8(b, 0);
}
static void b_pad(bytes *b, size_t align) {
    while (b->n % align) b_u8(b, 0);
}
static void b_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b_put(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_kv_u32(bytes *b, const char *key, uint32_t v) {
    b_str(b, key);
    b_u32(b, GGUF_TYPE_UINT32);
    b_u32(b, v);
}
static void b_kv_str(bytes *b, const char *key, const char *v) {
    b_str(b, key);
    b_u32(b, GGUF_TYPE_STRING);
    b_str(b, v);
}
static void b_tensor(bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                     uint32_t type, uint64_t offset) {
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, offset);
}
static void b_free(bytes *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static bool write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = n == 0 || fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* A file of one tensor (no metadata), its data zero-filled: data_bytes
 * after the 32-byte-aligned start of the data section. */
static void tensor_file(bytes *b, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                        uint64_t offset, size_t data_bytes) {
    b_header(b, 3, 1, 0);
    b_tensor(b, "t", n_dims, ne, type, offset);
    b_pad(b, 32);
    b_zeros(b, data_bytes);
}

/* ---- Running `nuri info` -------------------------------------------------- */

static const char *nuri_bin(void) {
    const char *bin = getenv("NURI_BIN");
    return bin && access(bin, X_OK) == 0 ? bin : NULL;
}

typedef struct {
    int status; /* exit status, or -1 if it did not exit normally */
    char *out, *err;
    size_t out_len, err_len;
} run_result;

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

/* Runs NURI_BIN with args (NULL-terminated, after "nuri"), capturing its
 * output in files. */
static run_result run_nuri(const char *const *args) {
    run_result r = {-1, NULL, NULL, 0, 0};
    /* The arguments may live in test_tmp_path's buffer, which the calls
     * below overwrite. */
    char *copies[15] = {NULL};
    for (size_t i = 0; i < 14 && args[i]; i++) copies[i] = strdup(args[i]);
    char out_path[4096], err_path[4096];
    snprintf(out_path, sizeof out_path, "%s", test_tmp_path("info.out"));
    snprintf(err_path, sizeof err_path, "%s", test_tmp_path("info.err"));
    const char *argv[16] = {nuri_bin()};
    size_t n = 1;
    while (copies[n - 1] && n < 15) {
        argv[n] = copies[n - 1];
        n++;
    }
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int ws;
    if (pid > 0 && waitpid(pid, &ws, 0) == pid && WIFEXITED(ws)) r.status = WEXITSTATUS(ws);
    r.out = test_read_file(out_path, &r.out_len);
    r.err = test_read_file(err_path, &r.err_len);
    for (size_t i = 0; i < 15; i++) free(copies[i]);
    return r;
}

static size_t count_char(const char *s, size_t n, char c) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == c;
    return k;
}

/* `nuri info path` must fail: exit 1, nothing on stdout, exactly one line
 * on stderr that starts with "nuri: " and names the file. */
static void check_info_fails(const char *label, const char *file) {
    if (!nuri_bin()) return;
    char path[4096];
    snprintf(path, sizeof path, "%s", file);
    const char *args[] = {"info", path, NULL};
    run_result r = run_nuri(args);
    CHECK(r.status == 1, "%s: nuri info exited with %d, want 1", label, r.status);
    CHECK(r.err && r.err_len > 0 && count_char(r.err, r.err_len, '\n') == 1 &&
              r.err[r.err_len - 1] == '\n',
          "%s: nuri info stderr is not exactly one line: '%s'", label, r.err ? r.err : "");
    CHECK(r.err && strncmp(r.err, "nuri: ", 6) == 0 && strstr(r.err, path),
          "%s: nuri info error does not name the file: '%s'", label, r.err ? r.err : "");
    CHECK(r.out && r.out_len == 0, "%s: nuri info printed to stdout on failure", label);
    run_free(&r);
}

/* ---- Malformed files ------------------------------------------------------ */

static int n_malformed;

/* Writes b to a file and checks that gguf_open rejects it with a one-line
 * message containing want (and, when run_cli, that `nuri info` does too). */
static void expect_fail(const char *label, const bytes *b, const char *want, bool run_cli) {
    const char *path = test_tmp_path("malformed.gguf");
    if (!write_file(path, b->p, b->n)) {
        CHECK(0, "%s: cannot write %s", label, path);
        return;
    }
    n_malformed++;
    gguf_file *f = (gguf_file *)(uintptr_t)1;
    nuri_error err;
    memset(&err, 0, sizeof err);
    nuri_status st = gguf_open(path, &f, &err);
    CHECK(st != NURI_OK && f == NULL, "%s: gguf_open accepted the file", label);
    if (st == NURI_OK) {
        gguf_close(f);
        return;
    }
    CHECK(err.status == st, "%s: err.status %d != returned %d", label, err.status, st);
    CHECK(strncmp(err.message, "gguf: ", 6) == 0 && !strchr(err.message, '\n'),
          "%s: message is not one 'gguf: ' line: '%s'", label, err.message);
    CHECK(strstr(err.message, want) != NULL, "%s: message '%s' does not contain '%s'", label,
          err.message, want);
    if (run_cli) check_info_fails(label, path);
}

static void expect_ok(const char *label, const bytes *b) {
    const char *path = test_tmp_path("wellformed.gguf");
    CHECK(write_file(path, b->p, b->n), "%s: cannot write", label);
    gguf_file *f = NULL;
    nuri_error err = {0};
    nuri_status st = gguf_open(path, &f, &err);
    CHECK(st == NURI_OK && f, "%s: gguf_open failed: %s", label, err.message);
    gguf_close(f);
}

static void test_malformed_header(void) {
    bytes b = {0};
    expect_fail("empty file", &b, "empty", true);

    b_put(&b, "GGU", 3);
    expect_fail("3-byte file", &b, "too short", false);
    b_free(&b);

    b_header(&b, 3, 0, 0);
    memcpy(b.p, "GGML", 4);
    expect_fail("bad magic", &b, "not a GGUF file", true);
    b_free(&b);

    b_header(&b, 1, 0, 0);
    expect_fail("version 1", &b, "version 1 is not supported", true);
    b_free(&b);
    b_header(&b, 4, 0, 0);
    expect_fail("version 4", &b, "unsupported GGUF version 4", false);
    b_free(&b);
    b_header(&b, 0, 0, 0);
    expect_fail("version 0", &b, "unsupported GGUF version 0", false);
    b_free(&b);
    b_header(&b, 0x03000000u, 0, 0);
    expect_fail("big-endian", &b, "big-endian", false);
    b_free(&b);

    /* Version 2 has the same layout and is accepted. */
    b_header(&b, 2, 0, 1);
    b_kv_u32(&b, "a", 1);
    expect_ok("version 2", &b);
    b_free(&b);

    b_header(&b, 3, 0, HUGE_COUNT);
    b_kv_u32(&b, "a", 1);
    expect_fail("2^62 keys", &b, "metadata keys, more than the file", true);
    b_free(&b);
    b_header(&b, 3, 0, UINT64_MAX);
    expect_fail("2^64-1 keys", &b, "metadata keys", false);
    b_free(&b);
    b_header(&b, 3, HUGE_COUNT, 0);
    b_zeros(&b, 64);
    expect_fail("2^62 tensors", &b, "tensors, more than", true);
    b_free(&b);
    b_header(&b, 3, 0, 1);
    b_u64(&b, 5);
    b_put(&b, "ab\0\0\0\0", 6);
    expect_fail("truncated key", &b, "truncated file while reading key #0 ('ab\\x00", false);
    b_free(&b);
}

static void test_malformed_metadata(void) {
    bytes b = {0};

    /* The brief's example: a truncated value names the key. */
    b_header(&b, 3, 0, 2);
    b_kv_u32(&b, "x.first", 7);
    b_kv_str(&b, "general.name", "abc");
    b.n -= 2;
    expect_fail("truncated string value", &b,
                "truncated file while reading key #1 ('general.name')", true);
    b_free(&b);

    b_header(&b, 3, 0, 1);
    b_u64(&b, HUGE_COUNT);
    b_put(&b, "abcdefgh", 8);
    expect_fail("2^62-byte key", &b, "the name of key #0 is 4611686018427387904 bytes", false);
    b_free(&b);

    b_header(&b, 3, 0, 1);
    b_u64(&b, 70000);
    for (int i = 0; i < 70000; i++) b_u8(&b, 'k');
    b_u32(&b, GGUF_TYPE_UINT8);
    b_u8(&b, 1);
    expect_fail("70000-byte key", &b, "the limit is 65536", false);
    b_free(&b);

    b_header(&b, 3, 0, 1);
    b_kv_u32(&b, "", 1);
    expect_fail("empty key", &b, "key #0 has an empty name", false);
    b_free(&b);

    b_header(&b, 3, 0, 1);
    b_str(&b, "bad.type");
    b_u32(&b, 13);
    b_u32(&b, 0);
    b_u32(&b, 0);
    expect_fail("value type 13", &b, "key #0 ('bad.type') has unknown value type 13", true);
    b_free(&b);
    b_header(&b, 3, 0, 1);
    b_str(&b, "bad.type");
    b_u32(&b, UINT32_MAX);
    b_u64(&b, 0);
    expect_fail("value type 2^32-1", &b, "unknown value type 4294967295", false);
    b_free(&b);

    b_header(&b, 3, 0, 1);
    b_str(&b, "s");
    b_u32(&b, GGUF_TYPE_STRING);
    b_u64(&b, HUGE_COUNT);
    b_zeros(&b, 16);
    expect_fail("2^62-byte string", &b, "the string value of key #0 ('s')", true);
    b_free(&b);
    b_header(&b, 3, 0, 1);
    b_str(&b, "s");
    b_u32(&b, GGUF_TYPE_STRING);
    b_u64(&b, 1000);
    b_zeros(&b, 16);
    expect_fail("string past the end", &b, "truncated file while reading key #0 ('s')", false);
    b_free(&b);

    /* Huge array counts, for each kind of element. */
    static const uint32_t elem_types[] = {GGUF_TYPE_UINT32, GGUF_TYPE_STRING, GGUF_TYPE_ARRAY,
                                          GGUF_TYPE_UINT8, GGUF_TYPE_FLOAT64};
    for (size_t i = 0; i < sizeof elem_types / sizeof elem_types[0]; i++) {
        b_header(&b, 3, 0, 1);
        b_str(&b, "arr");
        b_u32(&b, GGUF_TYPE_ARRAY);
        b_u32(&b, elem_types[i]);
        b_u64(&b, HUGE_COUNT);
        b_zeros(&b, 64);
        char label[64];
        snprintf(label, sizeof label, "2^62 elements of type %u", elem_types[i]);
        expect_fail(label, &b, "array of 4611686018427387904", i == 0);
        b_free(&b);
    }
    /* 2^61 eight-byte elements: the byte count itself overflows. */
    b_header(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, GGUF_TYPE_UINT64);
    b_u64(&b, (uint64_t)1 << 61);
    b_zeros(&b, 64);
    expect_fail("2^61 uint64 elements", &b, "does not fit in the file", false);
    b_free(&b);
    /* A string array whose strings run past the end. */
    b_header(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, GGUF_TYPE_STRING);
    b_u64(&b, 2);
    b_str(&b, "one");
    b_u64(&b, 5);
    b_put(&b, "tw", 2);
    expect_fail("string element past the end", &b, "truncated file while reading key #0 ('arr')",
                false);
    b_free(&b);

    b_header(&b, 3, 0, 1);
    b_str(&b, "arr");
    b_u32(&b, GGUF_TYPE_ARRAY);
    b_u32(&b, 13);
    b_u64(&b, 0);
    expect_fail("array element type 13", &b, "unknown element type 13", false);
    b_free(&b);

    /* Nesting: 8 levels are allowed, 9 are not. */
    for (int levels = 8; levels <= 9; levels++) {
        b_header(&b, 3, 0, 1);
        b_str(&b, "deep");
        b_u32(&b, GGUF_TYPE_ARRAY);
        for (int l = 1; l < levels; l++) {
            b_u32(&b, GGUF_TYPE_ARRAY);
            b_u64(&b, 1);
        }
        b_u32(&b, GGUF_TYPE_UINT32);
        b_u64(&b, 1);
        b_u32(&b, 42);
        if (levels == 8) {
            const char *path = test_tmp_path("deep8.gguf");
            CHECK(write_file(path, b.p, b.n), "cannot write");
            gguf_file *f = NULL;
            nuri_error err = {0};
            CHECK(gguf_open(path, &f, &err) == NURI_OK, "8 nested levels rejected: %s",
                  err.message);
            const gguf_value *v = gguf_get(f, "deep");
            int depth = 0;
            while (v && v->type == GGUF_TYPE_ARRAY && v->v.arr.elem_type == GGUF_TYPE_ARRAY &&
                   v->v.arr.n == 1) {
                v = &v->v.arr.items[0];
                depth++;
            }
            CHECK(depth == 7 && v && v->v.arr.elem_type == GGUF_TYPE_UINT32 &&
                      v->v.arr.n == 1 && gguf_arr_int(v, 0) == 42,
                  "8 nested levels read wrongly (depth %d)", depth);
            gguf_close(f);
        } else {
            expect_fail("9 nested levels", &b, "nested more than 8 levels", true);
        }
        b_free(&b);
    }

    b_header(&b, 3, 0, 3);
    b_kv_u32(&b, "a.b", 1);
    b_kv_u32(&b, "c", 2);
    b_kv_str(&b, "a.b", "again");
    expect_fail("duplicate key", &b, "duplicate key 'a.b'", true);
    b_free(&b);

    /* general.alignment: a uint32 power of two. */
    static const uint32_t bad_alignments[] = {0, 3, 24, 0x80000001u};
    for (size_t i = 0; i < sizeof bad_alignments / sizeof bad_alignments[0]; i++) {
        b_header(&b, 3, 0, 1);
        b_kv_u32(&b, "general.alignment", bad_alignments[i]);
        expect_fail("bad alignment", &b, "not a power of two", i == 0);
        b_free(&b);
    }
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, GGUF_TYPE_UINT64);
    b_u64(&b, 32);
    expect_fail("uint64 alignment", &b, "has type uint64, expected uint32", false);
    b_free(&b);
    b_header(&b, 3, 0, 1);
    b_kv_str(&b, "general.alignment", "32");
    expect_fail("string alignment", &b, "has type string, expected uint32", false);
    b_free(&b);
}

static void test_malformed_tensors(void) {
    bytes b = {0};
    const uint64_t ne8[] = {8};

    tensor_file(&b, 1, ne8, NURI_TYPE_F32, 0, 32);
    expect_ok("one F32 tensor", &b);
    b_free(&b);
    tensor_file(&b, 1, ne8, NURI_TYPE_F32, 0, 31);
    expect_fail("data one byte short", &b, "data [64, 96) lies outside the file (size 95)", true);
    b_free(&b);
    tensor_file(&b, 1, ne8, NURI_TYPE_F32, 64, 32);
    expect_fail("offset past the end", &b, "lies outside the file", false);
    b_free(&b);
    tensor_file(&b, 1, ne8, NURI_TYPE_F32, UINT64_MAX - 31, 32);
    expect_fail("offset overflows", &b, "lies outside the file", false);
    b_free(&b);
    tensor_file(&b, 1, ne8, NURI_TYPE_F32, 4, 64);
    expect_fail("misaligned offset", &b, "offset 4 is not a multiple of the alignment 32", true);
    b_free(&b);

    const uint64_t ne5[] = {1, 1, 1, 1, 1};
    tensor_file(&b, 0, ne5, NURI_TYPE_F32, 0, 32);
    expect_fail("n_dims 0", &b, "tensor 't' has 0 dimensions", true);
    b_free(&b);
    tensor_file(&b, 5, ne5, NURI_TYPE_F32, 0, 32);
    expect_fail("n_dims 5", &b, "tensor 't' has 5 dimensions", false);
    b_free(&b);

    const uint64_t ne_big[] = {(uint64_t)1 << 63};
    tensor_file(&b, 1, ne_big, NURI_TYPE_F32, 0, 32);
    expect_fail("dimension 2^63", &b, "dimension 0 is too large", false);
    b_free(&b);
    const uint64_t ne_prod[] = {(uint64_t)1 << 32, (uint64_t)1 << 32};
    tensor_file(&b, 2, ne_prod, NURI_TYPE_F32, 0, 32);
    expect_fail("element count overflows", &b, "is too large", true);
    b_free(&b);
    const uint64_t ne_prod4[] = {1024, 1024, 1024, (uint64_t)1 << 34};
    tensor_file(&b, 4, ne_prod4, NURI_TYPE_F32, 0, 32);
    expect_fail("element count 2^64 in 4 dims", &b, "is too large", false);
    b_free(&b);
    /* 2^63 + 2^32 Q4_0 elements: the byte count (about 2^62.2) fits in
     * 64 bits, the element count does not fit in int64. */
    const uint64_t ne_elements[] = {(uint64_t)1 << 32, ((uint64_t)1 << 31) + 1};
    tensor_file(&b, 2, ne_elements, NURI_TYPE_Q4_0, 0, 32);
    expect_fail("element count over INT64_MAX", &b, "is too large", false);
    b_free(&b);
    const uint64_t ne_bytes[] = {(uint64_t)1 << 62};
    tensor_file(&b, 1, ne_bytes, NURI_TYPE_F32, 0, 32);
    expect_fail("byte size overflows", &b, "is too large", false);
    b_free(&b);
    const uint64_t ne_large[] = {(uint64_t)1 << 40};
    tensor_file(&b, 1, ne_large, NURI_TYPE_F32, 0, 32);
    expect_fail("4 TiB tensor", &b, "lies outside the file", false);
    b_free(&b);

    const uint64_t ne33[] = {33, 2};
    tensor_file(&b, 2, ne33, NURI_TYPE_Q8_0, 0, 128);
    expect_fail("Q8_0 with 33 columns", &b, "33 columns, not a multiple of the block size 32",
                true);
    b_free(&b);
    const uint64_t ne32[] = {32, 2};
    tensor_file(&b, 2, ne32, NURI_TYPE_Q8_0, 0, 68);
    expect_ok("Q8_0 with 32 columns", &b);
    b_free(&b);

    tensor_file(&b, 1, ne8, 1000, 0, 32);
    expect_fail("type 1000", &b, "tensor 't' has unsupported type 1000 (unknown)", true);
    b_free(&b);
    tensor_file(&b, 1, ne8, UINT32_MAX, 0, 32);
    expect_fail("type 2^32-1", &b, "unsupported type 4294967295", false);
    b_free(&b);
    if (!nuri_type_get(16)) { /* IQ2_XXS, unless nuri has learned it */
        tensor_file(&b, 1, ne8, 16, 0, 32);
        expect_fail("type IQ2_XXS", &b, "unsupported type 16 (IQ2_XXS)", false);
        b_free(&b);
    }

    /* Two tensors: overlapping, adjacent, duplicate names. */
    struct {
        const char *label;
        uint64_t off_a, off_b;
        const char *name_b;
        const char *want; /* NULL: valid */
    } pairs[] = {
        {"same offset", 0, 0, "b", "tensors 'a' and 'b' overlap"},
        {"partial overlap", 32, 0, "b", "tensors 'b' and 'a' overlap"},
        {"adjacent", 0, 64, "b", NULL},
        {"reversed adjacent", 64, 0, "b", NULL},
        {"duplicate names", 0, 64, "a", "duplicate tensor name 'a'"},
    };
    const uint64_t ne16[] = {16}; /* 64 bytes of F32 */
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        b_header(&b, 3, 2, 0);
        b_tensor(&b, "a", 1, ne16, NURI_TYPE_F32, pairs[i].off_a);
        b_tensor(&b, pairs[i].name_b, 1, ne16, NURI_TYPE_F32, pairs[i].off_b);
        b_pad(&b, 32);
        b_zeros(&b, 128);
        if (pairs[i].want) expect_fail(pairs[i].label, &b, pairs[i].want, i == 0);
        else expect_ok(pairs[i].label, &b);
        b_free(&b);
    }

    /* An alignment of 64 makes offset 32 misaligned. */
    b_header(&b, 3, 1, 1);
    b_kv_u32(&b, "general.alignment", 64);
    b_tensor(&b, "t", 1, ne8, NURI_TYPE_F32, 32);
    b_pad(&b, 64);
    b_zeros(&b, 128);
    expect_fail("offset 32 with alignment 64", &b, "not a multiple of the alignment 64", false);
    b_free(&b);

    b_header(&b, 3, 1, 0);
    b_tensor(&b, "", 1, ne8, NURI_TYPE_F32, 0);
    b_pad(&b, 32);
    b_zeros(&b, 32);
    expect_fail("empty tensor name", &b, "tensor #0 has an empty name", false);
    b_free(&b);

    /* Tensor count fits the header check but not what is left after the
     * metadata. */
    b_header(&b, 3, 2, 1);
    b_kv_str(&b, "pad", "0123456789012345678901234567890123456789012345678901234567890123456789");
    expect_fail("tensor count vs remaining", &b, "tensors, more than the rest of the file", false);
    b_free(&b);
}

/* ---- Writer round trip ----------------------------------------------------- */

static const uint8_t elem_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static bool gstr_eq(gguf_str a, gguf_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, (size_t)a.len) == 0);
}

/* Deep equality of two values; floats compare bit for bit. */
static bool value_eq(const gguf_value *a, const gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_BOOL: return a->v.u64 == b->v.u64;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64: return a->v.i64 == b->v.i64;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64: return memcmp(&a->v.f64, &b->v.f64, sizeof(double)) == 0;
    case GGUF_TYPE_STRING: return gstr_eq(a->v.str, b->v.str);
    case GGUF_TYPE_ARRAY: {
        gguf_type et = a->v.arr.elem_type;
        uint64_t n = a->v.arr.n;
        if (et != b->v.arr.elem_type || n != b->v.arr.n) return false;
        if (n == 0) return true;
        if (et == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < n; i++)
                if (!gstr_eq(a->v.arr.strs[i], b->v.arr.strs[i])) return false;
            return true;
        }
        if (et == GGUF_TYPE_ARRAY) {
            for (uint64_t i = 0; i < n; i++)
                if (!value_eq(&a->v.arr.items[i], &b->v.arr.items[i])) return false;
            return true;
        }
        return memcmp(a->v.arr.raw, b->v.arr.raw, (size_t)(n * elem_size[et])) == 0;
    }
    default: return false;
    }
}

static gguf_value scalar_u(gguf_type t, uint64_t v) {
    gguf_value x = {.type = t, .v.u64 = v};
    return x;
}
static gguf_value scalar_i(gguf_type t, int64_t v) {
    gguf_value x = {.type = t, .v.i64 = v};
    return x;
}
static gguf_value scalar_f(gguf_type t, double v) {
    gguf_value x = {.type = t, .v.f64 = v};
    return x;
}
static gguf_value array_raw(gguf_type et, const void *raw, uint64_t n) {
    gguf_value x = {.type = GGUF_TYPE_ARRAY};
    x.v.arr.elem_type = et;
    x.v.arr.raw = raw;
    x.v.arr.n = n;
    return x;
}
static gguf_value array_strs(gguf_str *strs, uint64_t n) {
    gguf_value x = {.type = GGUF_TYPE_ARRAY};
    x.v.arr.elem_type = GGUF_TYPE_STRING;
    x.v.arr.strs = strs;
    x.v.arr.n = n;
    return x;
}
static gguf_value array_items(gguf_value *items, uint64_t n) {
    gguf_value x = {.type = GGUF_TYPE_ARRAY};
    x.v.arr.elem_type = GGUF_TYPE_ARRAY;
    x.v.arr.items = items;
    x.v.arr.n = n;
    return x;
}

typedef struct {
    const char *key;
    gguf_value value;
} expected_kv;

static void test_round_trip(void) {
    /* Scalars of every type. */
    static const char nul_bytes[] = {'a', 0, 'b'};
    static const char terminal_mess[] = "hello\nworld \x1b[31m \xe2\x80\xae";
    static const uint8_t a_u8[] = {0, 1, 255};
    static const int8_t a_i8[] = {-128, 0, 127};
    static const uint16_t a_u16[] = {0, 65535, 1234};
    static const int16_t a_i16[] = {-32768, 32767, -1};
    static const uint32_t a_u32[] = {0, 4000000000u, 7};
    static const int32_t a_i32[] = {INT32_MIN, INT32_MAX, -5, 6};
    static const float a_f32[] = {0.5f, -1e-30f, 3.14159274f};
    static const bool a_bool[] = {true, false, true};
    static const uint64_t a_u64[] = {UINT64_MAX, 0};
    static const int64_t a_i64[] = {INT64_MIN, INT64_MAX};
    static const double a_f64[] = {1e300, -0.0, 2.5};
    gguf_str strs[] = {{"a", 1}, {"", 0}, {"\xc3\xbcnicode", 8}, {"tab\tand\nnewline", 15}};
    gguf_str inner_strs[] = {{"x", 1}, {"yz", 2}};
    static const bool inner_bool[] = {true};
    gguf_value deepest[] = {array_raw(GGUF_TYPE_BOOL, inner_bool, 1)};
    gguf_value nested_items[] = {
        array_raw(GGUF_TYPE_UINT32, a_u32, 3),
        array_strs(inner_strs, 2),
        array_raw(GGUF_TYPE_FLOAT32, NULL, 0),
        array_items(deepest, 1),
    };
    /* An 8-level chain, the deepest nesting the format allows. */
    static const uint32_t forty_two = 42;
    gguf_value chain[8];
    for (int i = 0; i < 7; i++) chain[i] = array_items(&chain[i + 1], 1);
    chain[7] = array_raw(GGUF_TYPE_UINT32, &forty_two, 1);

    expected_kv kvs[] = {
        {"t.u8", scalar_u(GGUF_TYPE_UINT8, 200)},
        {"t.i8", scalar_i(GGUF_TYPE_INT8, -100)},
        {"t.u16", scalar_u(GGUF_TYPE_UINT16, 60000)},
        {"t.i16", scalar_i(GGUF_TYPE_INT16, -30000)},
        {"t.u32", scalar_u(GGUF_TYPE_UINT32, 4000000000u)},
        {"t.i32", scalar_i(GGUF_TYPE_INT32, -2000000000)},
        {"t.f32", scalar_f(GGUF_TYPE_FLOAT32, 3.25)},
        {"t.bool", scalar_u(GGUF_TYPE_BOOL, 1)},
        {"t.bool_false", scalar_u(GGUF_TYPE_BOOL, 0)},
        {"t.str", {.type = GGUF_TYPE_STRING, .v.str = {terminal_mess, sizeof terminal_mess - 1}}},
        {"t.str_nul", {.type = GGUF_TYPE_STRING, .v.str = {nul_bytes, 3}}},
        {"t.str_empty", {.type = GGUF_TYPE_STRING, .v.str = {"", 0}}},
        {"t.u64", scalar_u(GGUF_TYPE_UINT64, ((uint64_t)1 << 63) + 5)},
        {"t.i64", scalar_i(GGUF_TYPE_INT64, -((int64_t)1 << 62))},
        {"t.f64", scalar_f(GGUF_TYPE_FLOAT64, 1e300)},
        {"a.u8", array_raw(GGUF_TYPE_UINT8, a_u8, 3)},
        {"a.i8", array_raw(GGUF_TYPE_INT8, a_i8, 3)},
        {"a.u16", array_raw(GGUF_TYPE_UINT16, a_u16, 3)},
        {"a.i16", array_raw(GGUF_TYPE_INT16, a_i16, 3)},
        {"a.u32", array_raw(GGUF_TYPE_UINT32, a_u32, 3)},
        {"a.i32", array_raw(GGUF_TYPE_INT32, a_i32, 4)},
        {"a.f32", array_raw(GGUF_TYPE_FLOAT32, a_f32, 3)},
        {"a.bool", array_raw(GGUF_TYPE_BOOL, a_bool, 3)},
        {"a.u64", array_raw(GGUF_TYPE_UINT64, a_u64, 2)},
        {"a.i64", array_raw(GGUF_TYPE_INT64, a_i64, 2)},
        {"a.f64", array_raw(GGUF_TYPE_FLOAT64, a_f64, 3)},
        {"a.empty", array_raw(GGUF_TYPE_INT32, NULL, 0)},
        {"a.str", array_strs(strs, 4)},
        {"a.nested", array_items(nested_items, 4)},
        {"a.deep8", chain[0]},
        {"replaced", {.type = GGUF_TYPE_STRING, .v.str = {"second", 6}}},
    };
    size_t n_kvs = sizeof kvs / sizeof kvs[0];

    gguf_writer *w = gguf_writer_create();
    CHECK(w != NULL, "gguf_writer_create failed");
    if (!w) return;
    /* Setter coverage: the typed setters where they exist, set_value else. */
    CHECK(gguf_writer_set_u32(w, "replaced", 1) == NURI_OK, "set_u32 failed");
    for (size_t i = 0; i < n_kvs; i++) {
        const expected_kv *e = &kvs[i];
        const gguf_value *v = &e->value;
        nuri_status st;
        if (!strcmp(e->key, "t.u32")) st = gguf_writer_set_u32(w, e->key, (uint32_t)v->v.u64);
        else if (!strcmp(e->key, "t.i32")) st = gguf_writer_set_i32(w, e->key, (int32_t)v->v.i64);
        else if (!strcmp(e->key, "t.f32")) st = gguf_writer_set_f32(w, e->key, (float)v->v.f64);
        else if (!strcmp(e->key, "t.bool")) st = gguf_writer_set_bool(w, e->key, true);
        else if (!strcmp(e->key, "t.bool_false")) st = gguf_writer_set_bool(w, e->key, false);
        else if (!strcmp(e->key, "replaced")) st = gguf_writer_set_str(w, e->key, "second");
        else if (!strcmp(e->key, "a.str")) {
            const char *const cs[] = {"a", "", "\xc3\xbcnicode", "tab\tand\nnewline"};
            st = gguf_writer_set_str_arr(w, e->key, cs, 4);
        } else if (v->type == GGUF_TYPE_ARRAY && v->v.arr.elem_type != GGUF_TYPE_STRING &&
                   v->v.arr.elem_type != GGUF_TYPE_ARRAY)
            st = gguf_writer_set_arr(w, e->key, v->v.arr.elem_type, v->v.arr.raw, v->v.arr.n);
        else st = gguf_writer_set_value(w, e->key, v);
        CHECK(st == NURI_OK, "setting %s failed: %d", e->key, st);
    }

    /* Writer-side validation. */
    gguf_value too_big = scalar_u(GGUF_TYPE_UINT8, 300);
    CHECK(gguf_writer_set_value(w, "bad", &too_big) == NURI_ERR_INVALID_ARG,
          "uint8 value 300 accepted");
    gguf_value chain9[9];
    for (int i = 0; i < 8; i++) chain9[i] = array_items(&chain9[i + 1], 1);
    chain9[8] = array_raw(GGUF_TYPE_UINT32, &forty_two, 1);
    CHECK(gguf_writer_set_value(w, "bad", &chain9[0]) == NURI_ERR_INVALID_ARG,
          "9 nested levels accepted by the writer");
    CHECK(gguf_writer_set_u32(w, "", 1) == NURI_ERR_INVALID_ARG, "empty key accepted");
    gguf_value bad_type = {.type = (gguf_type)13};
    CHECK(gguf_writer_set_value(w, "bad", &bad_type) == NURI_ERR_INVALID_ARG,
          "value type 13 accepted");
    CHECK(gguf_writer_set_arr(w, "bad", GGUF_TYPE_STRING, a_u8, 1) == NURI_ERR_INVALID_ARG,
          "set_arr of strings accepted");

    /* Tensors: F32, F16, Q8_0 (made-up bytes), a 4-d one and an empty one. */
    float f32_data[12];
    for (int i = 0; i < 12; i++) f32_data[i] = (float)i * 0.25f - 1.0f;
    uint16_t f16_data[8];
    for (int i = 0; i < 8; i++) f16_data[i] = nuri_fp32_to_fp16((float)i - 3.5f);
    uint8_t q8_data[2 * 2 * 34];
    for (size_t i = 0; i < sizeof q8_data; i++) q8_data[i] = (uint8_t)(i * 37 + 11);
    float f32_4d[2 * 1 * 3 * 2];
    for (int i = 0; i < 12; i++) f32_4d[i] = (float)(100 + i);
    const int64_t ne_f32[] = {4, 3}, ne_f16[] = {8}, ne_q8[] = {64, 2}, ne_4d[] = {2, 1, 3, 2},
                  ne_empty[] = {0};
    struct {
        const char *name;
        uint32_t type, n_dims;
        const int64_t *ne;
        const void *data;
        uint64_t nbytes;
    } tensors[] = {
        {"f32.weight", NURI_TYPE_F32, 2, ne_f32, f32_data, sizeof f32_data},
        {"f16.weight", NURI_TYPE_F16, 1, ne_f16, f16_data, sizeof f16_data},
        {"q8_0.weight", NURI_TYPE_Q8_0, 2, ne_q8, q8_data, sizeof q8_data},
        {"four.d", NURI_TYPE_F32, 4, ne_4d, f32_4d, sizeof f32_4d},
        {"empty", NURI_TYPE_F32, 1, ne_empty, NULL, 0},
    };
    size_t n_tensors = sizeof tensors / sizeof tensors[0];
    for (size_t i = 0; i < n_tensors; i++)
        CHECK(gguf_writer_add_tensor(w, tensors[i].name, tensors[i].type, tensors[i].n_dims,
                                     tensors[i].ne, tensors[i].data) == NURI_OK,
              "add_tensor %s failed", tensors[i].name);
    const int64_t ne33[] = {33};
    CHECK(gguf_writer_add_tensor(w, "bad", NURI_TYPE_Q8_0, 1, ne33, q8_data) ==
              NURI_ERR_INVALID_ARG,
          "Q8_0 row of 33 accepted");
    CHECK(gguf_writer_add_tensor(w, "bad", 1000, 1, ne_f16, q8_data) == NURI_ERR_INVALID_ARG,
          "type 1000 accepted");
    CHECK(gguf_writer_add_tensor(w, "bad", NURI_TYPE_F32, 0, ne_f16, q8_data) ==
              NURI_ERR_INVALID_ARG,
          "0 dimensions accepted");
    CHECK(gguf_writer_add_tensor(w, "bad", NURI_TYPE_F32, 5, ne_4d, q8_data) ==
              NURI_ERR_INVALID_ARG,
          "5 dimensions accepted");
    CHECK(gguf_writer_add_tensor(w, "f16.weight", NURI_TYPE_F16, 1, ne_f16, f16_data) ==
              NURI_ERR_INVALID_ARG,
          "duplicate tensor name accepted");

    char path[4096];
    snprintf(path, sizeof path, "%s", test_tmp_path("roundtrip.gguf"));
    nuri_error err = {0};
    CHECK(gguf_writer_write(w, path, &err) == NURI_OK, "write failed: %s", err.message);
    char tmp_path[4200];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    CHECK(access(tmp_path, F_OK) != 0, "%s left behind", tmp_path);
    CHECK(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err) == NURI_ERR_IO &&
              strstr(err.message, "/nonexistent-dir/x.gguf.tmp"),
          "writing into a missing folder: %s", err.message);

    gguf_file *f = NULL;
    CHECK(gguf_open(path, &f, &err) == NURI_OK, "reading back failed: %s", err.message);
    if (!f) {
        gguf_writer_free(w);
        return;
    }
    CHECK(gguf_version(f) == 3, "version %u", gguf_version(f));
    CHECK(gguf_alignment(f) == 32, "alignment %" PRIu64, gguf_alignment(f));
    CHECK(gguf_n_kv(f) == n_kvs + 1, "n_kv %" PRIu64 ", want %zu", gguf_n_kv(f), n_kvs + 1);
    for (size_t i = 0; i < n_kvs; i++) {
        const gguf_value *v = gguf_get(f, kvs[i].key);
        CHECK(v && value_eq(v, &kvs[i].value), "key %s differs after the round trip",
              kvs[i].key);
        /* Keys come back in the order they were first set. */
        const gguf_kv *kv = gguf_kv_at(f, i);
        const char *want_key = i == 0 ? "replaced" : kvs[i - 1].key;
        CHECK(kv && gguf_str_eq(kv->key, want_key), "key #%zu is not %s", i, want_key);
    }
    const gguf_value *al = gguf_get(f, "general.alignment");
    CHECK(al && al->type == GGUF_TYPE_UINT32 && al->v.u64 == 32, "general.alignment not written");
    CHECK(gguf_get(f, "bad") == NULL && gguf_get(f, "t.u") == NULL && gguf_get(f, "") == NULL,
          "lookup of absent keys");

    CHECK(gguf_n_tensors(f) == n_tensors, "n_tensors %" PRIu64, gguf_n_tensors(f));
    uint64_t data_offset = gguf_data_offset(f);
    CHECK(data_offset % 32 == 0, "data offset %" PRIu64 " not aligned", data_offset);
    CHECK(gguf_file_size(f) % 32 == 0, "file size %" PRIu64 " not padded", gguf_file_size(f));
    for (size_t i = 0; i < n_tensors && i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_str_eq(t->name, tensors[i].name), "tensor #%zu name", i);
        CHECK(gguf_find_tensor(f, tensors[i].name) == t, "find_tensor %s", tensors[i].name);
        CHECK(t->type == tensors[i].type && t->n_dims == tensors[i].n_dims, "%s type/dims",
              tensors[i].name);
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            int64_t want = d < tensors[i].n_dims ? tensors[i].ne[d] : 1;
            CHECK(t->ne[d] == want, "%s ne[%u] = %" PRId64 ", want %" PRId64, tensors[i].name, d,
                  t->ne[d], want);
        }
        CHECK(t->nbytes == tensors[i].nbytes, "%s nbytes %" PRIu64 ", want %" PRIu64,
              tensors[i].name, t->nbytes, tensors[i].nbytes);
        CHECK(t->offset % 32 == 0, "%s offset %" PRIu64 " not aligned", tensors[i].name,
              t->offset);
        CHECK(tensors[i].nbytes == 0 ||
                  memcmp(t->data, tensors[i].data, (size_t)tensors[i].nbytes) == 0,
              "%s data differs", tensors[i].name);
    }
    CHECK(gguf_find_tensor(f, "missing") == NULL && gguf_find_tensor(f, "f32") == NULL,
          "find_tensor of absent names");

    /* Typed getters. */
    uint32_t u32 = 777;
    float f32 = 0;
    bool bl = false;
    gguf_str s = {0};
    const gguf_value *arr = NULL;
    CHECK(gguf_get_u32(f, "t.u8", true, &u32, &err) == NURI_OK && u32 == 200, "get_u32 of uint8");
    CHECK(gguf_get_u32(f, "t.u32", true, &u32, &err) == NURI_OK && u32 == 4000000000u,
          "get_u32 of uint32");
    CHECK(gguf_get_u32(f, "t.i32", true, &u32, &err) != NURI_OK && strstr(err.message, "t.i32"),
          "get_u32 of a negative int32: %s", err.message);
    CHECK(gguf_get_u32(f, "t.u64", true, &u32, &err) != NURI_OK, "get_u32 of 2^63+5");
    CHECK(gguf_get_u32(f, "t.str", true, &u32, &err) != NURI_OK &&
              strstr(err.message, "has type string"),
          "get_u32 of a string: %s", err.message);
    u32 = 777;
    CHECK(gguf_get_u32(f, "absent", false, &u32, &err) == NURI_OK && u32 == 777,
          "optional absent key changed the output");
    CHECK(gguf_get_u32(f, "absent.key", true, &u32, &err) != NURI_OK &&
              strstr(err.message, "'absent.key' is missing"),
          "required absent key: %s", err.message);
    CHECK(gguf_get_f32(f, "t.f32", true, &f32, &err) == NURI_OK && f32 == 3.25f, "get_f32");
    CHECK(gguf_get_f32(f, "t.f64", true, &f32, &err) != NURI_OK, "get_f32 of 1e300");
    CHECK(gguf_get_f32(f, "t.u32", true, &f32, &err) != NURI_OK, "get_f32 of an integer");
    CHECK(gguf_get_bool(f, "t.bool", true, &bl, &err) == NURI_OK && bl, "get_bool true");
    CHECK(gguf_get_bool(f, "t.bool_false", true, &bl, &err) == NURI_OK && !bl, "get_bool false");
    CHECK(gguf_get_bool(f, "t.u8", true, &bl, &err) != NURI_OK, "get_bool of uint8");
    CHECK(gguf_get_str(f, "t.str_nul", true, &s, &err) == NURI_OK && s.len == 3 &&
              memcmp(s.data, nul_bytes, 3) == 0,
          "get_str with a NUL inside");
    CHECK(gguf_get_str(f, "t.u8", true, &s, &err) != NURI_OK, "get_str of uint8");
    CHECK(gguf_get_arr(f, "a.u32", GGUF_TYPE_INT32, true, &arr, &err) == NURI_OK && arr &&
              arr->v.arr.n == 3 && gguf_arr_int(arr, 1) == 4000000000LL,
          "get_arr INT32 of a uint32 array");
    CHECK(gguf_get_arr(f, "a.i32", GGUF_TYPE_INT32, true, &arr, &err) == NURI_OK &&
              gguf_arr_int(arr, 0) == INT32_MIN && gguf_arr_int(arr, 2) == -5,
          "get_arr INT32");
    CHECK(gguf_get_arr(f, "a.f64", GGUF_TYPE_FLOAT32, true, &arr, &err) == NURI_OK &&
              gguf_arr_float(arr, 0) == 1e300 && gguf_arr_float(arr, 2) == 2.5,
          "get_arr FLOAT32 of a float64 array");
    CHECK(gguf_get_arr(f, "a.f32", GGUF_TYPE_FLOAT32, true, &arr, &err) == NURI_OK &&
              gguf_arr_float(arr, 2) == (double)3.14159274f,
          "gguf_arr_float of float32");
    CHECK(gguf_get_arr(f, "a.i8", GGUF_TYPE_INT8, true, &arr, &err) == NURI_OK &&
              gguf_arr_int(arr, 0) == -128 && gguf_arr_int(arr, 2) == 127,
          "gguf_arr_int of int8");
    CHECK(gguf_get_arr(f, "a.i16", GGUF_TYPE_INT16, true, &arr, &err) == NURI_OK &&
              gguf_arr_int(arr, 0) == -32768 && gguf_arr_int(arr, 2) == -1,
          "gguf_arr_int of int16");
    CHECK(gguf_get_arr(f, "a.u16", GGUF_TYPE_UINT16, true, &arr, &err) == NURI_OK &&
              gguf_arr_int(arr, 1) == 65535,
          "gguf_arr_int of uint16");
    CHECK(gguf_get_arr(f, "a.i64", GGUF_TYPE_INT64, true, &arr, &err) == NURI_OK &&
              gguf_arr_int(arr, 0) == INT64_MIN && gguf_arr_int(arr, 1) == INT64_MAX,
          "gguf_arr_int of int64");
    CHECK(gguf_get_arr(f, "a.bool", GGUF_TYPE_BOOL, true, &arr, &err) == NURI_OK &&
              gguf_arr_int(arr, 0) == 1 && gguf_arr_int(arr, 1) == 0,
          "gguf_arr_int of bool");
    CHECK(gguf_arr_int(arr, 3) == 0, "gguf_arr_int past the end is 0");
    CHECK(gguf_get_arr(f, "a.u8", GGUF_TYPE_INT32, true, &arr, &err) != NURI_OK &&
              strstr(err.message, "array of uint8"),
          "get_arr INT32 of uint8: %s", err.message);
    CHECK(gguf_get_arr(f, "t.u8", GGUF_TYPE_UINT8, true, &arr, &err) != NURI_OK && arr == NULL,
          "get_arr of a scalar");
    arr = (const gguf_value *)&err;
    CHECK(gguf_get_arr(f, "absent", GGUF_TYPE_INT32, false, &arr, &err) == NURI_OK && !arr,
          "get_arr of an optional absent key");
    gguf_close(f);

    if (nuri_bin()) {
        /* nuri info escapes what could disturb a terminal. */
        const char *args[] = {"info", path, NULL};
        run_result r = run_nuri(args);
        CHECK(r.status == 0 && r.err_len == 0, "nuri info on the round-trip file: exit %d, %s",
              r.status, r.err ? r.err : "");
        CHECK(r.out && strstr(r.out, "t.str = \"hello\\nworld \\x1b[31m \\u202e\"\n"),
              "nuri info did not escape t.str:\n%s", r.out ? r.out : "");
        CHECK(r.out && !memchr(r.out, 0x1b, r.out_len) && !strstr(r.out, "\xe2\x80\xae"),
              "raw terminal controls in nuri info output");
        CHECK(r.out && strstr(r.out, "t.str_nul = \"a\\x00b\"\n") &&
                  strstr(r.out, "t.i64 = -4611686018427387904\n") &&
                  strstr(r.out, "t.f32 = 3.25\n") && strstr(r.out, "t.bool = true\n") &&
                  strstr(r.out, "a.nested = [[0, 4000000000, 7], [\"x\", \"yz\"], [], [[true]]]\n"),
              "nuri info values:\n%s", r.out ? r.out : "");
        CHECK(r.out && strstr(r.out, "q8_0.weight") && strstr(r.out, "Q8_0") &&
                  strstr(r.out, "[64, 2]") && strstr(r.out, "total: 5 tensors"),
              "nuri info tensor table:\n%s", r.out ? r.out : "");
        run_free(&r);
    }

    /* A custom alignment is honoured and not duplicated. */
    CHECK(gguf_writer_set_u32(w, "general.alignment", 64) == NURI_OK, "set alignment");
    CHECK(gguf_writer_write(w, path, &err) == NURI_OK, "write with alignment 64: %s",
          err.message);
    f = NULL;
    CHECK(gguf_open(path, &f, &err) == NURI_OK, "read alignment 64: %s", err.message);
    if (f) {
        CHECK(gguf_alignment(f) == 64 && gguf_n_kv(f) == n_kvs + 1, "alignment 64 file");
        CHECK(gguf_data_offset(f) % 64 == 0, "data offset not 64-aligned");
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            CHECK(t->offset % 64 == 0, "offset %" PRIu64 " not 64-aligned", t->offset);
            CHECK(t->nbytes == 0 || memcmp(t->data, tensors[i].data, (size_t)t->nbytes) == 0,
                  "tensor data differs with alignment 64");
        }
        gguf_close(f);
    }
    CHECK(gguf_writer_set_u32(w, "general.alignment", 24) == NURI_OK, "set alignment 24");
    const char *bad_path = test_tmp_path("badalign.gguf");
    CHECK(gguf_writer_write(w, bad_path, &err) == NURI_ERR_INVALID_ARG &&
              access(bad_path, F_OK) != 0,
          "alignment 24 written");
    gguf_writer_free(w);

    /* A writer with nothing in it still makes a valid file. */
    w = gguf_writer_create();
    CHECK(w && gguf_writer_write(w, path, &err) == NURI_OK, "empty write: %s", err.message);
    gguf_writer_free(w);
    f = NULL;
    CHECK(gguf_open(path, &f, &err) == NURI_OK && gguf_n_kv(f) == 1 && gguf_n_tensors(f) == 0,
          "empty file read back: %s", err.message);
    gguf_close(f);
}

/* Copies a real file through the writer and checks the copy is identical in
 * metadata and tensor bytes. */
static void test_copy_real_file(const char *src) {
    gguf_file *in = NULL;
    nuri_error err = {0};
    if (gguf_open(src, &in, &err) != NURI_OK) {
        CHECK(0, "open %s: %s", src, err.message);
        return;
    }
    gguf_writer *w = gguf_writer_create();
    char name[1024];
    for (uint64_t i = 0; i < gguf_n_kv(in); i++) {
        const gguf_kv *kv = gguf_kv_at(in, i);
        snprintf(name, sizeof name, "%.*s", (int)kv->key.len, kv->key.data);
        if (!strcmp(name, "general.alignment")) continue;
        CHECK(gguf_writer_set_value(w, name, &kv->value) == NURI_OK, "copy key %s", name);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(in); i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.data);
        CHECK(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == NURI_OK,
              "copy tensor %s", name);
    }
    const char *path = test_tmp_path("copy.gguf");
    CHECK(gguf_writer_write(w, path, &err) == NURI_OK, "write copy: %s", err.message);
    gguf_writer_free(w);
    gguf_file *out = NULL;
    CHECK(gguf_open(path, &out, &err) == NURI_OK, "read copy: %s", err.message);
    if (out) {
        bool has_alignment = gguf_get(in, "general.alignment") != NULL;
        CHECK(gguf_n_kv(out) == gguf_n_kv(in) + (has_alignment ? 0 : 1), "copy n_kv");
        for (uint64_t i = 0; i < gguf_n_kv(in); i++) {
            const gguf_kv *kv = gguf_kv_at(in, i);
            snprintf(name, sizeof name, "%.*s", (int)kv->key.len, kv->key.data);
            const gguf_value *v = gguf_get(out, name);
            CHECK(v && value_eq(v, &kv->value), "copy of %s: key %s differs", src, name);
        }
        CHECK(gguf_n_tensors(out) == gguf_n_tensors(in), "copy n_tensors");
        for (uint64_t i = 0; i < gguf_n_tensors(in) && i < gguf_n_tensors(out); i++) {
            const gguf_tensor *a = gguf_tensor_at(in, i), *b = gguf_tensor_at(out, i);
            CHECK(gstr_eq(a->name, b->name) && a->type == b->type && a->nbytes == b->nbytes &&
                      memcmp(a->ne, b->ne, sizeof a->ne) == 0 &&
                      memcmp(a->data, b->data, (size_t)a->nbytes) == 0,
                  "copy of %s: tensor #%" PRIu64 " differs", src, i);
        }
        gguf_close(out);
    }
    gguf_close(in);
}

/* ---- Real files ---------------------------------------------------------- */

static void test_aidreams(const char *path) {
    gguf_file *f = NULL;
    nuri_error err = {0};
    CHECK(gguf_open(path, &f, &err) == NURI_OK, "open %s: %s", path, err.message);
    if (!f) return;
    /* Expected values were read with an independent parser. */
    CHECK(gguf_version(f) == 3 && gguf_n_kv(f) == 19 && gguf_n_tensors(f) == 39,
          "aidreams header: v%u, %" PRIu64 " keys, %" PRIu64 " tensors", gguf_version(f),
          gguf_n_kv(f), gguf_n_tensors(f));
    CHECK(gguf_file_size(f) == 1068640 && gguf_data_offset(f) == 13664 &&
              gguf_alignment(f) == 32,
          "aidreams layout: size %" PRIu64 ", data at %" PRIu64, gguf_file_size(f),
          gguf_data_offset(f));
    gguf_str s = {0};
    CHECK(gguf_get_str(f, "general.architecture", true, &s, &err) == NURI_OK &&
              gguf_str_eq(s, "llama"),
          "general.architecture");
    CHECK(gguf_get_str(f, "tokenizer.ggml.model", true, &s, &err) == NURI_OK &&
              gguf_str_eq(s, "llama"),
          "tokenizer.ggml.model");
    const gguf_value *tokens = NULL;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, true, &tokens, &err) ==
                  NURI_OK &&
              tokens->v.arr.n == 512,
          "tokenizer.ggml.tokens");
    if (tokens && tokens->v.arr.n == 512) {
        CHECK(gguf_str_eq(tokens->v.arr.strs[0], "<unk>") &&
                  gguf_str_eq(tokens->v.arr.strs[1], "<s>") &&
                  gguf_str_eq(tokens->v.arr.strs[2], "</s>") &&
                  gguf_str_eq(tokens->v.arr.strs[3], "<0x00>") &&
                  gguf_str_eq(tokens->v.arr.strs[511], "\xce\xbc"),
              "aidreams token pieces");
    }
    const gguf_value *arr = NULL;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, true, &arr, &err) ==
                  NURI_OK &&
              arr->v.arr.n == 512 && gguf_arr_float(arr, 511) == -252.0 &&
              gguf_arr_float(arr, 510) == -251.0,
          "tokenizer.ggml.scores");
    CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, true, &arr, &err) ==
                  NURI_OK &&
              arr->v.arr.n == 512 && gguf_arr_int(arr, 0) == 2 && gguf_arr_int(arr, 1) == 3 &&
              gguf_arr_int(arr, 3) == 6 && gguf_arr_int(arr, 511) == 1,
          "tokenizer.ggml.token_type");
    uint32_t u = 0;
    CHECK(gguf_get_u32(f, "llama.context_length", true, &u, &err) == NURI_OK && u == 128,
          "llama.context_length");
    CHECK(gguf_get_u32(f, "llama.embedding_length", true, &u, &err) == NURI_OK && u == 64,
          "llama.embedding_length");
    CHECK(gguf_get_u32(f, "llama.feed_forward_length", true, &u, &err) == NURI_OK && u == 172,
          "llama.feed_forward_length");
    CHECK(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", true, &u, &err) == NURI_OK && u == 1,
          "bos");
    CHECK(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", true, &u, &err) == NURI_OK && u == 2,
          "eos");
    CHECK(gguf_get_u32(f, "tokenizer.ggml.seperator_token_id", true, &u, &err) == NURI_OK &&
              u == UINT32_MAX,
          "seperator_token_id");
    float eps = 0;
    CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", true, &eps, &err) ==
                  NURI_OK &&
              eps == 1e-5f,
          "rms epsilon %g", eps);

    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    CHECK(t && t->type == NURI_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 512 &&
              t->ne[2] == 1 && t->nbytes == 131072 && t->offset == 0,
          "token_embd.weight");
    t = gguf_find_tensor(f, "output.weight");
    CHECK(t && t->offset == 131328 && t->nbytes == 131072, "output.weight");
    t = gguf_find_tensor(f, "blk.3.ffn_norm.weight");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 64 && t->offset == 1054720 &&
              gguf_data_offset(f) + t->offset + t->nbytes == gguf_file_size(f),
          "blk.3.ffn_norm.weight ends the file");
    t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64, "blk.0.ffn_down.weight shape");

    /* Every tensor's data pointer is where the file says. */
    size_t len = 0;
    char *raw = test_read_file(path, &len);
    CHECK(raw && len == gguf_file_size(f), "read %s", path);
    for (uint64_t i = 0; raw && i < gguf_n_tensors(f); i++) {
        t = gguf_tensor_at(f, i);
        uint64_t at = gguf_data_offset(f) + t->offset;
        CHECK(at + t->nbytes <= len && memcmp(raw + at, t->data, (size_t)t->nbytes) == 0,
              "tensor #%" PRIu64 " data", i);
    }
    free(raw);
    gguf_close(f);

    if (nuri_bin()) {
        const char *args[] = {"info", path, NULL};
        run_result r = run_nuri(args);
        CHECK(r.status == 0 && r.err_len == 0, "nuri info aidreams: exit %d, %s", r.status,
              r.err ? r.err : "");
        CHECK(r.out && strstr(r.out, "GGUF version 3") &&
                  strstr(r.out, "\ngeneral.architecture = \"llama\"\n") &&
                  strstr(r.out, "\ntokenizer.ggml.tokens = [512 strings: \"<unk>\", \"<s>\", "
                                "\"</s>\", \"<0x00>\", ... ]\n") &&
                  strstr(r.out, "\nllama.attention.layer_norm_rms_epsilon = 1e-05\n") &&
                  strstr(r.out, "\nllama.context_length = 128\n"),
              "nuri info aidreams metadata:\n%s", r.out ? r.out : "");
        CHECK(r.out && strstr(r.out, "token_embd.weight") && strstr(r.out, "[64, 512]") &&
                  strstr(r.out, "131072") && strstr(r.out, "total: 39 tensors"),
              "nuri info aidreams tensors");
        CHECK(r.out && count_char(r.out, r.out_len, '\n') == 1 + 1 + 1 + 19 + 1 + 1 + 1 + 39 + 1,
              "nuri info aidreams: one line per key and tensor");
        run_free(&r);
    }
}

static void test_llama3_vocab(const char *path) {
    gguf_file *f = NULL;
    nuri_error err = {0};
    CHECK(gguf_open(path, &f, &err) == NURI_OK, "open %s: %s", path, err.message);
    if (!f) return;
    CHECK(gguf_n_kv(f) == 23 && gguf_n_tensors(f) == 0, "llama3 vocab header");
    CHECK(gguf_data_offset(f) == 7818624 && gguf_file_size(f) == 7818624, "llama3 layout");
    gguf_str s = {0};
    CHECK(gguf_get_str(f, "general.architecture", true, &s, &err) == NURI_OK &&
              gguf_str_eq(s, "llama"),
          "general.architecture");
    CHECK(gguf_get_str(f, "tokenizer.ggml.model", true, &s, &err) == NURI_OK &&
              gguf_str_eq(s, "gpt2"),
          "tokenizer.ggml.model");
    CHECK(gguf_get_str(f, "tokenizer.ggml.pre", true, &s, &err) == NURI_OK &&
              gguf_str_eq(s, "llama-bpe"),
          "tokenizer.ggml.pre");
    CHECK(gguf_get_str(f, "tokenizer.chat_template", true, &s, &err) == NURI_OK &&
              s.len == 348 && memcmp(s.data, "{% set loop_messages = messages %}", 34) == 0,
          "chat template");
    const gguf_value *arr = NULL;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, true, &arr, &err) ==
                  NURI_OK &&
              arr->v.arr.n == 128256 && gguf_str_eq(arr->v.arr.strs[0], "!") &&
              gguf_str_eq(arr->v.arr.strs[128255], "<|reserved_special_token_250|>"),
          "llama3 tokens");
    CHECK(gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, true, &arr, &err) ==
                  NURI_OK &&
              arr->v.arr.n == 280147 && gguf_str_eq(arr->v.arr.strs[0], "\xc4\xa0 \xc4\xa0"),
          "llama3 merges");
    CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, true, &arr, &err) ==
                  NURI_OK &&
              arr->v.arr.n == 128256 && gguf_arr_int(arr, 0) == 1 &&
              gguf_arr_int(arr, 128255) == 3,
          "llama3 token types");
    uint32_t u = 0;
    CHECK(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", true, &u, &err) == NURI_OK &&
              u == 128000,
          "llama3 bos");
    CHECK(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", true, &u, &err) == NURI_OK &&
              u == 128009,
          "llama3 eos");
    bool b = false;
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", true, &b, &err) == NURI_OK && b,
          "add_bos_token");
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_eos_token", true, &b, &err) == NURI_OK && !b,
          "add_eos_token");
    float base = 0;
    CHECK(gguf_get_f32(f, "llama.rope.freq_base", true, &base, &err) == NURI_OK &&
              base == 500000.0f,
          "rope.freq_base");
    gguf_close(f);

    if (nuri_bin()) {
        const char *args[] = {"info", path, NULL};
        run_result r = run_nuri(args);
        CHECK(r.status == 0 && r.out &&
                  strstr(r.out, "\ntokenizer.ggml.tokens = [128256 strings: \"!\", \"\\\"\", "
                                "\"#\", \"$\", ... ]\n") &&
                  strstr(r.out, "\ntokenizer.chat_template = \"{% set loop_messages") &&
                  strstr(r.out, "\"... (348 bytes)\n") && strstr(r.out, "total: 0 tensors"),
              "nuri info llama3 vocab:\n%.2000s", r.out ? r.out : "");
        run_free(&r);
    }
}

/* ---- Every prefix, random corruption -------------------------------------- */

/* A small valid file using most features: its bytes in *b. */
static void small_valid_file(bytes *b) {
    gguf_writer *w = gguf_writer_create();
    const char *const pieces[] = {"<unk>", "hello", ""};
    static const float scores[] = {0.f, -1.f, -2.f};
    static const uint32_t ids[] = {1, 2};
    gguf_str strs[] = {{"a", 1}};
    gguf_value items[2];
    items[0] = array_raw(GGUF_TYPE_UINT32, ids, 2);
    items[1] = array_strs(strs, 1);
    gguf_value nested = array_items(items, 2);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.context_length", 128);
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", pieces, 3);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, 3);
    gguf_writer_set_value(w, "x.nested", &nested);
    static float t1[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static uint8_t t2[2 * 34];
    const int64_t ne1[] = {8}, ne2[] = {32, 2};
    gguf_writer_add_tensor(w, "a.weight", NURI_TYPE_F32, 1, ne1, t1);
    gguf_writer_add_tensor(w, "b.weight", NURI_TYPE_Q8_0, 2, ne2, t2);
    const char *path = test_tmp_path("small.gguf");
    nuri_error err = {0};
    CHECK(gguf_writer_write(w, path, &err) == NURI_OK, "small file: %s", err.message);
    gguf_writer_free(w);
    size_t len = 0;
    char *raw = test_read_file(path, &len);
    b_put(b, raw, raw ? len : 0);
    free(raw);
}

static uint64_t fuzz_checksum; /* keeps the data walk below from being optimised away */

static void test_prefixes_and_corruption(void) {
    bytes full = {0};
    small_valid_file(&full);
    const char *path = test_tmp_path("prefix.gguf");
    gguf_file *f = NULL;
    nuri_error err = {0};
    CHECK(write_file(path, full.p, full.n) && gguf_open(path, &f, &err) == NURI_OK,
          "small file does not open: %s", err.message);
    if (!f) {
        b_free(&full);
        return;
    }
    /* Bytes after the end of the last tensor's data are padding. */
    uint64_t needed = 0, tables_end = gguf_data_offset(f);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t end = gguf_data_offset(f) + t->offset + t->nbytes;
        if (end > needed) needed = end;
    }
    gguf_close(f);
    CHECK(needed > 200 && needed <= full.n, "small file layout (%" PRIu64 " bytes)", needed);

    int wrong = 0;
    for (size_t len = 0; len < full.n; len++) {
        if (!write_file(path, full.p, len)) {
            wrong++;
            continue;
        }
        f = NULL;
        memset(&err, 0, sizeof err);
        nuri_status st = gguf_open(path, &f, &err);
        bool want_ok = len >= needed;
        bool good = want_ok ? st == NURI_OK
                            : st != NURI_OK && !f && strncmp(err.message, "gguf: ", 6) == 0 &&
                                  !strchr(err.message, '\n');
        if (!good) {
            wrong++;
            fprintf(stderr, "prefix of %zu bytes: status %d, '%s'\n", len, st, err.message);
        }
        gguf_close(f);
    }
    CHECK(wrong == 0, "%d of %zu prefixes handled wrongly", wrong, full.n);
    n_malformed += (int)needed;

    /* Random corruption: 1 to 4 random bytes overwritten. Either outcome is
     * fine; crashes, leaks and multi-line messages are not. */
    uint64_t rng = 0x9e3779b97f4a7c15u;
    bytes mutated = {0};
    int bad_messages = 0, rejected = 0;
    const int rounds = 3000;
    for (int round = 0; round < rounds; round++) {
        mutated.n = 0;
        b_put(&mutated, full.p, full.n);
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int changes = 1 + (int)(rng % 4);
        for (int c = 0; c < changes; c++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            /* Mostly in the header and tables, where the structure is. */
            size_t limit = (rng >> 60) < 12 ? (size_t)tables_end : full.n;
            mutated.p[(rng >> 8) % limit] = (uint8_t)(rng >> 32);
        }
        if (!write_file(path, mutated.p, mutated.n)) continue;
        f = NULL;
        memset(&err, 0, sizeof err);
        if (gguf_open(path, &f, &err) == NURI_OK) {
            /* Whatever was accepted must be safe to walk. */
            for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
                const gguf_tensor *t = gguf_tensor_at(f, i);
                for (uint64_t k = 0; k < t->nbytes; k++)
                    fuzz_checksum += ((const uint8_t *)t->data)[k];
            }
            gguf_close(f);
        } else {
            rejected++;
            if (!err.message[0] || strchr(err.message, '\n')) bad_messages++;
        }
    }
    CHECK(bad_messages == 0, "%d corrupted files gave a bad message", bad_messages);
    CHECK(rejected > rounds / 4, "only %d of %d corrupted files rejected", rejected, rounds);
    b_free(&mutated);

    /* A truncated file through nuri info, too. */
    bytes cut = {0};
    b_put(&cut, full.p, (size_t)needed - 1);
    expect_fail("truncated by one byte", &cut, "lies outside the file", true);
    b_free(&cut);
    b_free(&full);
}

/* ---- Files that are not there or not files -------------------------------- */

static void test_bad_paths(void) {
    gguf_file *f = (gguf_file *)(uintptr_t)1;
    nuri_error err = {0};
    CHECK(gguf_open("/nonexistent/model.gguf", &f, &err) == NURI_ERR_IO && f == NULL &&
              strstr(err.message, "cannot open"),
          "missing file: %s", err.message);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_tmp_path("a-directory"));
    mkdir(dir, 0700);
    CHECK(gguf_open(dir, &f, &err) != NURI_OK && f == NULL && err.message[0],
          "directory accepted");
    gguf_close(NULL);
    CHECK(gguf_n_kv(NULL) == 0 && gguf_get(NULL, "x") == NULL && gguf_kv_at(NULL, 0) == NULL,
          "accessors on NULL");
    check_info_fails("missing file", "/nonexistent/model.gguf");
    check_info_fails("directory", dir);

    if (nuri_bin()) {
        const char *help[] = {"info", "--help", NULL};
        run_result r = run_nuri(help);
        CHECK(r.status == 0 && r.out && strstr(r.out, "usage: nuri info"), "nuri info --help");
        run_free(&r);
        const char *none[] = {"info", NULL};
        r = run_nuri(none);
        CHECK(r.status == 1 && r.err && count_char(r.err, r.err_len, '\n') == 1,
              "nuri info without a file");
        run_free(&r);
        const char *bad_opt[] = {"info", "--frobnicate", "x.gguf", NULL};
        r = run_nuri(bad_opt);
        CHECK(r.status == 1 && r.err && count_char(r.err, r.err_len, '\n') == 1 &&
                  strstr(r.err, "--frobnicate"),
              "nuri info with an unknown option");
        run_free(&r);
    }
}

/* Removes what this test wrote (the copy of the llama3 vocabulary alone is
 * 8 MB). */
static void remove_temp_files(void) {
    static const char *const names[] = {"malformed.gguf", "wellformed.gguf", "deep8.gguf",
                                        "roundtrip.gguf", "copy.gguf",       "small.gguf",
                                        "prefix.gguf",    "info.out",        "info.err"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(test_tmp_path(names[i]));
    rmdir(test_tmp_path("a-directory"));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_tmp_path(""));
    rmdir(dir); /* only if nothing else is left in it */
}

int main(void) {
    if (!nuri_bin())
        printf("SKIP: NURI_BIN unset or not executable; the `nuri info` checks do not run\n");
    const char *aidreams = test_shared_path("models/aidreams260K.gguf");
    if (aidreams) {
        char path[4096];
        snprintf(path, sizeof path, "%s", aidreams);
        test_aidreams(path);
        test_copy_real_file(path);
    }
    const char *llama3 = test_shared_path("vocab/ggml-vocab-llama3.gguf");
    if (llama3) {
        char path[4096];
        snprintf(path, sizeof path, "%s", llama3);
        test_llama3_vocab(path);
        test_copy_real_file(path);
    }
    test_round_trip();
    test_malformed_header();
    test_malformed_metadata();
    test_malformed_tensors();
    test_prefixes_and_corruption();
    test_bad_paths();
    printf("%d malformed files rejected\n", n_malformed);
    remove_temp_files();
    return test_finish();
}
