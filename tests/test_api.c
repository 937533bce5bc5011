/* test_api.c — the public API's contracts that the other tests do not
 * reach: streaming detokenization never splits a UTF-8 character, the KV
 * cache can be truncated and reused, defaults, argument checks, and llama2.c
 * checkpoints that are truncated or lie in their header. */
#include <stdlib.h>
#include <string.h>

#include "nuri.h"
#include "support/test.h"

static nuri_model *load(const char *rel, const char *tok_rel) {
    char path[4096], tok[4096];
    snprintf(path, sizeof path, "%s", test_shared_path(rel));
    if (tok_rel) snprintf(tok, sizeof tok, "%s", test_shared_path(tok_rel));
    nuri_model_params mp = {tok_rel ? tok : NULL};
    nuri_model *m = NULL;
    nuri_error err;
    CHECK(nuri_model_load(path, &mp, &m, &err) == NURI_OK, "load %s: %s", rel, m ? "" : err.message);
    return m;
}

/* True when s[0..n) is complete, valid UTF-8. */
static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        i += len;
    }
    return true;
}

static void check_streaming_detokenizer(nuri_model *m) {
    /* tok512 has no Hangul or emoji pieces: they become byte tokens, one
     * byte each, so every character arrives in 3-4 pieces. */
    const char *text = "Hi 안녕하세요, 세계 😀 and é.";
    nuri_token *toks;
    size_t n;
    nuri_error err;
    CHECK(nuri_tokenize(m, text, strlen(text), 0, &toks, &n, &err) == NURI_OK, "tokenize");
    nuri_detokenizer st = {{0}, 0};
    char all[1024] = {0};
    size_t total = 0;
    int held_back = 0;
    for (size_t i = 0; i < n; i++) {
        char chunk[256];
        size_t got = nuri_detokenize_push(m, &st, toks[i], chunk, sizeof chunk);
        CHECK(valid_utf8((unsigned char *)chunk, got), "chunk %zu is not whole UTF-8", i);
        held_back += st.n_pending > 0;
        memcpy(all + total, chunk, got);
        total += got;
    }
    total += nuri_detokenize_flush(&st, all + total, sizeof all - total);
    CHECK(held_back > 0, "some bytes were held back");
    /* SentencePiece adds a leading space (the dummy prefix). */
    CHECK(total == strlen(text) + 1 && all[0] == ' ' && memcmp(all + 1, text, strlen(text)) == 0,
          "streamed text: '%.*s'", (int)total, all);
    nuri_free(toks);

    /* An invalid sequence is passed through once it cannot become valid. */
    nuri_detokenizer st2 = {{0}, 0};
    char out[64];
    nuri_token lead = 3 + 0xE3, ascii = 3 + 'a'; /* <0xE3>, <0x61> byte tokens */
    CHECK(nuri_detokenize_push(m, &st2, lead, out, sizeof out) == 0, "a lead byte is held");
    size_t got = nuri_detokenize_push(m, &st2, ascii, out, sizeof out);
    CHECK(got == 2 && (unsigned char)out[0] == 0xE3 && out[1] == 'a', "broken sequence passed through (%zu)", got);
}

static void check_kv_reuse(nuri_model *m) {
    nuri_context *ctx;
    nuri_error err;
    CHECK(nuri_context_create(m, NULL, &ctx, &err) == NURI_OK, "context");
    CHECK(nuri_context_n_ctx(ctx) == 128, "default n_ctx = model's 128, got %d", nuri_context_n_ctx(ctx));
    nuri_token a[] = {1, 429, 491, 433, 295}, b[] = {300, 301, 302};
    int nv = nuri_model_n_vocab(m);
    CHECK(nuri_eval(ctx, a, NULL, 5, false, &err) == NURI_OK, "eval a");
    CHECK(nuri_eval(ctx, b, NULL, 3, false, &err) == NURI_OK, "eval b");
    float *first = malloc(sizeof(float) * (size_t)nv);
    memcpy(first, nuri_logits(ctx), sizeof(float) * (size_t)nv);
    /* Forget b, evaluate something else, then b again: same logits. */
    nuri_context_truncate(ctx, 5);
    CHECK(nuri_context_n_past(ctx) == 5, "truncate to 5");
    nuri_token other[] = {400, 401};
    CHECK(nuri_eval(ctx, other, NULL, 2, false, &err) == NURI_OK, "eval other");
    nuri_context_truncate(ctx, 5);
    int32_t pos[] = {5, 6, 7};
    CHECK(nuri_eval(ctx, b, pos, 3, false, &err) == NURI_OK, "eval b again with explicit positions");
    CHECK(memcmp(first, nuri_logits(ctx), sizeof(float) * (size_t)nv) == 0, "same logits after reuse");
    nuri_context_truncate(ctx, 1000);
    CHECK(nuri_context_n_past(ctx) == 8, "truncate never grows");
    free(first);
    nuri_context_free(ctx);
}

static void check_arguments(nuri_model *m) {
    nuri_error err;
    nuri_model *none = (nuri_model *)1;
    CHECK(nuri_model_load(NULL, NULL, &none, &err) == NURI_ERR_INVALID_ARG, "NULL path");
    CHECK(nuri_model_load("/nonexistent", NULL, &none, &err) == NURI_ERR_IO && none == NULL,
          "missing file: %s", err.message);
    nuri_context_params p = nuri_context_default_params();
    p.n_ctx = -1;
    nuri_context *ctx = (nuri_context *)1;
    CHECK(nuri_context_create(m, &p, &ctx, &err) == NURI_ERR_INVALID_ARG, "negative n_ctx");
    p.n_ctx = 1 << 30;
    CHECK(nuri_context_create(m, &p, &ctx, &err) != NURI_OK, "absurd n_ctx refused: %s", err.message);
    CHECK(nuri_context_create(m, NULL, &ctx, &err) == NURI_OK, "context");
    CHECK(nuri_eval(ctx, NULL, NULL, 0, false, &err) == NURI_ERR_INVALID_ARG, "empty batch");
    CHECK(nuri_logits(ctx) == NULL, "no logits before eval");
    nuri_context_free(ctx);
    nuri_token *t;
    size_t n;
    CHECK(nuri_tokenize(m, NULL, 3, 0, &t, &n, &err) == NURI_ERR_INVALID_ARG, "NULL text");
    CHECK(nuri_tokenize(m, "", 0, NURI_TOKENIZE_ADD_BOS, &t, &n, &err) == NURI_OK && n == 1 && t[0] == 1,
          "empty text gives BOS");
    nuri_free(t);
    char buf[8];
    CHECK(nuri_token_to_piece(m, -1, false, buf, sizeof buf) == 0, "negative token");
    CHECK(nuri_token_to_piece(m, 1 << 20, false, buf, sizeof buf) == 0, "token past the vocabulary");
    CHECK(nuri_token_bos(m) == 1 && nuri_token_eos(m) == 2, "bos/eos");
    CHECK(nuri_token_is_eog(m, 2) && !nuri_token_is_eog(m, 300), "eog");
    CHECK(strstr(nuri_model_desc(m), "4 layers") != NULL, "desc: %s", nuri_model_desc(m));
    CHECK(strcmp(nuri_status_string(NURI_ERR_FORMAT), "malformed input") == 0, "status string");
    nuri_model_free(NULL);
    nuri_context_free(NULL);
    nuri_sampler_free(NULL);
}

/* llama2.c checkpoints carry no checksums: a truncated file or a header
 * with absurd sizes must be refused before anything reads past the end. */
static void check_bad_llama2c(void) {
    size_t len;
    char *orig = test_read_file(test_shared_path("models/aidreams260K.bin"), &len);
    CHECK(orig != NULL, "read aidreams260K.bin");
    if (!orig) return;
    char tok[4096];
    snprintf(tok, sizeof tok, "%s", test_shared_path("models/tok512.bin"));
    nuri_model_params mp = {tok};
    const char *path = test_tmp_path("bad.bin");
    struct {
        const char *what;
        size_t cut;          /* bytes kept (0: all) */
        int field, value;    /* header field to overwrite (-1: none) */
    } cases[] = {
        {"empty", 1, -1, 0}, {"header only", 28, -1, 0}, {"mid embedding", 1000, -1, 0},
        {"mid layers", len / 2, -1, 0}, {"one float short", len - 4, -1, 0},
        {"zero dim", 0, 0, 0}, {"negative layers", 0, 2, -3}, {"huge dim", 0, 0, 1 << 30},
        {"huge vocab", 0, 5, 1 << 30}, {"huge seq_len", 0, 6, 1 << 30}, {"heads not dividing", 0, 3, 3},
        {"kv heads above heads", 0, 4, 8}, {"vocab differs from tokenizer", 0, 5, 500},
        {"huge hidden", 0, 1, 0x7fffffff},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *data = malloc(len);
        memcpy(data, orig, len);
        if (cases[i].field >= 0) memcpy(data + 4 * cases[i].field, &cases[i].value, 4);
        size_t keep = cases[i].cut ? cases[i].cut : len;
        FILE *f = fopen(path, "wb");
        fwrite(data, 1, keep, f);
        fclose(f);
        free(data);
        nuri_model *m = NULL;
        nuri_error err = {0};
        nuri_status st = nuri_model_load(path, &mp, &m, &err);
        CHECK(st != NURI_OK && m == NULL && err.message[0], "%s: must fail (status %d)", cases[i].what, st);
        CHECK(strchr(err.message, '\n') == NULL, "%s: one-line message", cases[i].what);
        nuri_model_free(m);
    }
    free(orig);
}

/* The negative-vocabulary flag: the classifier is stored after the other
 * weights instead of being shared with the embedding. Writing the embedding
 * again as the classifier must give the same logits. */
static void check_unshared_classifier(void) {
    size_t len;
    char *orig = test_read_file(test_shared_path("models/stories260K.bin"), &len);
    if (!orig) return;
    int32_t h[7];
    memcpy(h, orig, sizeof h);
    size_t embd_bytes = (size_t)h[0] * (size_t)h[5] * 4;
    char *data = malloc(len + embd_bytes);
    memcpy(data, orig, len);
    memcpy(data + len, orig + 28, embd_bytes); /* the embedding follows the header */
    int32_t neg = -h[5];
    memcpy(data + 20, &neg, 4);
    const char *path = test_tmp_path("unshared.bin");
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len + embd_bytes, f);
    fclose(f);
    char tok[4096], shared_path[4096];
    snprintf(tok, sizeof tok, "%s", test_shared_path("models/tok512.bin"));
    snprintf(shared_path, sizeof shared_path, "%s", test_shared_path("models/stories260K.bin"));
    nuri_model_params mp = {tok};
    nuri_model *a = NULL, *b = NULL;
    nuri_error err;
    CHECK(nuri_model_load(shared_path, &mp, &a, &err) == NURI_OK, "shared classifier");
    CHECK(nuri_model_load(path, &mp, &b, &err) == NURI_OK, "unshared classifier: %s", b ? "" : err.message);
    /* The same file cut before its classifier must be refused. (A new path:
     * rewriting a file that a loaded model maps would change its weights.) */
    path = test_tmp_path("unshared-cut.bin");
    f = fopen(path, "wb");
    fwrite(data, 1, len + embd_bytes - 4, f);
    fclose(f);
    nuri_model *c = NULL;
    CHECK(nuri_model_load(path, &mp, &c, &err) != NURI_OK && !c, "truncated classifier refused");
    if (a && b) {
        nuri_context *ca, *cb;
        nuri_token toks[] = {1, 303, 279, 430};
        nuri_context_create(a, NULL, &ca, &err);
        nuri_context_create(b, NULL, &cb, &err);
        nuri_eval(ca, toks, NULL, 4, false, &err);
        nuri_eval(cb, toks, NULL, 4, false, &err);
        CHECK(memcmp(nuri_logits(ca), nuri_logits(cb), sizeof(float) * 512) == 0, "same logits");
        nuri_context_free(ca);
        nuri_context_free(cb);
    }
    nuri_model_free(a);
    nuri_model_free(b);
    free(data);
    free(orig);
}

int main(void) {
    if (!test_shared_path("models")) return test_finish();
    nuri_model *m = load("models/aidreams260K.gguf", NULL);
    if (m) {
        check_streaming_detokenizer(m);
        check_kv_reuse(m);
        check_arguments(m);
        nuri_model_free(m);
    }
    check_bad_llama2c();
    check_unshared_classifier();
    return test_finish();
}
