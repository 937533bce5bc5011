/* test.h — the tiny harness every test binary uses.
 *
 * CHECK(cond, fmt, ...) records one assertion; test_finish() prints
 * "N passed, N failed" and returns the exit status. test_shared_path()
 * locates ../shared (or $NURI_SHARED) relative to the repository root. */
#ifndef NURI_TEST_H
#define NURI_TEST_H

#include <stdbool.h>
#include <stdio.h>

extern int test_passed, test_failed;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            test_passed++;                                                 \
        } else {                                                           \
            test_failed++;                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

int test_finish(void);

/* Path of a file under the shared folder, in a static buffer (overwritten by
 * the next call). Returns NULL, after printing a loud SKIP line, when the
 * shared folder is absent. */
const char *test_shared_path(const char *rel);

/* Reads a whole file (malloc'ed, NUL-terminated; *len without the NUL). */
char *test_read_file(const char *path, size_t *len);

/* A fresh path in a per-process temporary directory (static buffer). */
const char *test_tmp_path(const char *name);

/* Runs argv (argv[0] a path) with stdin_data on its standard input and
 * collects stdout and stderr (malloc'ed, NUL-terminated; either out pointer
 * may be NULL). Returns the exit status, 128+signal if killed, -1 if it could
 * not be started. A 60 s alarm kills a hung child. Started with test_execv. */
int test_run(const char *const *argv, const char *stdin_data, size_t stdin_len, char **out,
             char **err);

/* execv(argv[0], argv), except that with NURI_TEST_WRAPPER set (an emulator
 * command line such as "qemu-aarch64 -cpu cortex-a53", split at spaces) an
 * executable built for this test's own machine runs through it; scripts and
 * host programs run directly. Returns only if the exec failed. */
void test_execv(const char *const *argv);

/* The nuri executable under test ($NURI_BIN), or NULL after a SKIP line. */
const char *test_nuri_bin(void);

#endif
