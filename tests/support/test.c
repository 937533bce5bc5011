#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int test_passed, test_failed;

int test_finish(void) {
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

const char *test_shared_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("NURI_SHARED");
    if (!root) root = "../shared";
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "SKIP: shared folder %s not found (set NURI_SHARED)\n", root);
        return NULL;
    }
    snprintf(buf, sizeof buf, "%s/%s", root, rel);
    return buf;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

const char *test_tmp_path(const char *name) {
    static char dir[256];
    static char buf[4096];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/nuri-test-%d", (int)getpid());
        mkdir(dir, 0700);
    }
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}
