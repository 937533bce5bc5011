#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <elf.h>
#include <limits.h>

int test_passed, test_failed;
static char tmp_dir[256];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

int test_finish(void) {
    if (tmp_dir[0]) nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
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
    static char buf[4096];
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/nuri-test-%d", (int)getpid());
        mkdir(tmp_dir, 0700);
    }
    snprintf(buf, sizeof buf, "%s/%s", tmp_dir, name);
    return buf;
}

typedef struct {
    char *buf;
    size_t len, cap;
} grow_buf;

static void grow_append(grow_buf *b, const char *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) return;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    b->buf[b->len] = 0;
}

/* Whether path is an ELF executable for the machine this test was built
 * for (the one an emulator in NURI_TEST_WRAPPER runs). */
static int is_own_machine_elf(const char *path) {
#if defined(__aarch64__)
    const unsigned own = EM_AARCH64;
#elif defined(__x86_64__)
    const unsigned own = EM_X86_64;
#else
    const unsigned own = 0;
#endif
    unsigned char head[20];
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    const ssize_t got = read(fd, head, sizeof head);
    close(fd);
    return got == (ssize_t)sizeof head && memcmp(head, ELFMAG, SELFMAG) == 0 &&
           (unsigned)(head[18] | head[19] << 8) == own;
}

void test_execv(const char *const *argv) {
    const char *wrapper = getenv("NURI_TEST_WRAPPER");
    if (!wrapper || !wrapper[0] || !is_own_machine_elf(argv[0])) {
        execv(argv[0], (char *const *)argv);
        return;
    }
    /* No allocation here or above: this runs in a child forked from a
     * process that may have threads. */
    char words[1024], target[PATH_MAX];
    snprintf(words, sizeof words, "%s", wrapper);
    const char *args[64];
    size_t n = 0;
    char *save = NULL;
    for (char *w = strtok_r(words, " \t", &save); w && n < 16; w = strtok_r(NULL, " \t", &save))
        args[n++] = w;
    /* In the emulator's process /proc/self/exe would be the emulator. */
    args[n++] = realpath(argv[0], target) ? target : argv[0];
    for (size_t i = 1; argv[i] && n < 63; i++) args[n++] = argv[i];
    args[n] = NULL;
    execvp(args[0], (char *const *)args);
}

int test_run(const char *const *argv, const char *stdin_data, size_t stdin_len, char **out,
             char **err) {
    int in_p[2], out_p[2], err_p[2];
    if (pipe(in_p) || pipe(out_p) || pipe(err_p)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(in_p[0], 0);
        dup2(out_p[1], 1);
        dup2(err_p[1], 2);
        close(in_p[0]); close(in_p[1]); close(out_p[0]); close(out_p[1]);
        close(err_p[0]); close(err_p[1]);
        alarm(60);
        test_execv(argv);
        _exit(127);
    }
    close(in_p[0]);
    close(out_p[1]);
    close(err_p[1]);
    signal(SIGPIPE, SIG_IGN);
    fcntl(in_p[1], F_SETFL, O_NONBLOCK);
    grow_buf ob = {0}, eb = {0};
    grow_append(&ob, "", 0);
    grow_append(&eb, "", 0);
    size_t sent = 0;
    int in_fd = in_p[1];
    if (!stdin_data || stdin_len == 0) { close(in_fd); in_fd = -1; }
    int open_fds = 2;
    while (open_fds > 0 || in_fd >= 0) {
        struct pollfd pf[3] = {{out_p[0], POLLIN, 0}, {err_p[0], POLLIN, 0}, {in_fd, POLLOUT, 0}};
        if (poll(pf, 3, 70000) <= 0) break;
        char tmp[65536];
        for (int k = 0; k < 2; k++) {
            if (pf[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(pf[k].fd, tmp, sizeof tmp);
            if (n > 0) grow_append(k == 0 ? &ob : &eb, tmp, (size_t)n);
            else { close(pf[k].fd); if (k == 0) out_p[0] = -1; else err_p[0] = -1; open_fds--; }
        }
        if (in_fd >= 0 && (pf[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(in_fd, stdin_data + sent, stdin_len - sent);
            if (n > 0) sent += (size_t)n;
            if (n < 0 && errno != EAGAIN) sent = stdin_len;
            if (sent >= stdin_len) { close(in_fd); in_fd = -1; }
        }
    }
    if (in_fd >= 0) close(in_fd);
    if (out_p[0] >= 0) close(out_p[0]);
    if (err_p[0] >= 0) close(err_p[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    if (out) *out = ob.buf; else free(ob.buf);
    if (err) *err = eb.buf; else free(eb.buf);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

const char *test_nuri_bin(void) {
    const char *bin = getenv("NURI_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "SKIP: NURI_BIN is not set to an executable nuri; command-line checks skipped\n");
        return NULL;
    }
    return bin;
}
