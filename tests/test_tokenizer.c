/* test_tokenizer.c — the tokenizers against independent references.
 *
 *  - ../shared/vocab/ggml-vocab-NAME.gguf.inp/.out: Hugging Face tokenizers' ids for 46
 *    texts per vocabulary (SentencePiece and byte-level BPE of several
 *    pre-tokenizer families), tokenized without BOS and with special-token
 *    strings treated as text;
 *  - ../shared/golden/tokenizer-llama{2,3}.jsonl: ids, ids with BOS and the
 *    decoded text, with special-token strings parsed;
 *  - llama2.c's tok512.bin, checked against the same vocabulary in GGUF;
 *  - small hand-made vocabularies whose expected output follows directly
 *    from the algorithm's definition (score order, rank order, ties);
 *  - malformed tokenizer.bin and hostile GGUF metadata, which must fail
 *    with a message naming the problem;
 *  - round trips of random text and random bytes through every vocabulary. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "gguf/gguf.h"
#include "support/test.h"
#include "tokenizer/tokenizer.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* ---- Helpers ---- */

static nuri_vocab *load_gguf_vocab_path(const char *path, nuri_error *err, nuri_status *status) {
    gguf_file *f = NULL;
    nuri_vocab *v = NULL;
    nuri_status st = gguf_open(path, &f, err);
    if (st == NURI_OK) {
        st = nuri_vocab_from_gguf(f, &v, err);
        gguf_close(f);
    }
    if (status) *status = st;
    return st == NURI_OK ? v : NULL;
}

/* Loads ../shared/vocab/<name>; NULL (after a SKIP line) without shared/. */
static nuri_vocab *load_shared_vocab(const char *rel) {
    const char *path = test_shared_path(rel);
    if (!path) return NULL;
    nuri_error err = {0};
    nuri_status st;
    nuri_vocab *v = load_gguf_vocab_path(path, &err, &st);
    CHECK(v != NULL, "loading %s: %s", rel, err.message);
    return v;
}

static nuri_token *tokenize(const nuri_vocab *v, const char *text, size_t len, bool bos,
                            bool special, size_t *n) {
    nuri_token *ids = NULL;
    nuri_error err = {0};
    *n = 0;
    nuri_status st = nuri_vocab_tokenize(v, text, len, bos, special, &ids, n, &err);
    CHECK(st == NURI_OK, "tokenize failed: %s", err.message);
    return st == NURI_OK ? ids : NULL;
}

/* Concatenated pieces (malloc'ed, NUL-terminated, *len without the NUL). */
static char *detokenize(const nuri_vocab *v, const nuri_token *ids, size_t n, bool render_special,
                        size_t *len) {
    size_t cap = 64, used = 0;
    char *out = malloc(cap);
    for (size_t i = 0; out && i < n; i++) {
        size_t need = nuri_vocab_token_to_piece(v, ids[i], render_special, NULL, 0);
        while (used + need + 1 > cap) {
            cap *= 2;
            char *bigger = realloc(out, cap);
            if (!bigger) {
                free(out);
                return NULL;
            }
            out = bigger;
        }
        size_t got = nuri_vocab_token_to_piece(v, ids[i], render_special, out + used, cap - used);
        CHECK(got == need, "token %d: piece length %zu then %zu", ids[i], need, got);
        used += got;
    }
    if (out) out[used] = 0;
    *len = used;
    return out;
}

static void format_ids(char *buf, size_t cap, const nuri_token *ids, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && used + 16 < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? " " : "", ids[i]);
    if (used + 16 >= cap) snprintf(buf + used, cap - used, " ...");
}

static bool ids_equal(const nuri_token *a, size_t na, const nuri_token *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* Checks tokenize(text) == want, reporting the case and both lists. */
static void check_ids(const char *what, size_t index, const char *text, size_t text_len,
                      const nuri_token *got, size_t n_got, const nuri_token *want, size_t n_want) {
    char g[2048], w[2048];
    bool ok = ids_equal(got, n_got, want, n_want);
    if (!ok) {
        format_ids(g, sizeof g, got, n_got);
        format_ids(w, sizeof w, want, n_want);
    }
    CHECK(ok, "%s case %zu \"%.*s\":\n    want %s\n    got  %s", what, index,
          (int)(text_len > 200 ? 200 : text_len), text, ok ? "" : w, ok ? "" : g);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* ---- ../shared/vocab/<name>.inp / .out ---- */

static const char *const separator = "\n__ggml_vocab_test__\n";

static void test_vocab_cases(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/%s", name);
    nuri_vocab *v = load_shared_vocab(rel);
    if (!v) return;
    snprintf(rel, sizeof rel, "vocab/%s.inp", name);
    const char *p = test_shared_path(rel);
    size_t inp_len = 0, out_len = 0;
    char *inp = p ? test_read_file(p, &inp_len) : NULL;
    snprintf(rel, sizeof rel, "vocab/%s.out", name);
    p = test_shared_path(rel);
    char *outs = p ? test_read_file(p, &out_len) : NULL;
    CHECK(inp && outs, "%s: cannot read .inp/.out", name);
    if (!inp || !outs) goto done;

    size_t n_cases = 0;
    char *text = inp, *line = outs;
    for (;;) {
        char *sep = strstr(text, separator);
        if (!sep) break;
        char *eol = strchr(line, '\n');
        CHECK(eol != NULL, "%s: .out has fewer lines than .inp has cases", name);
        if (!eol) break;
        *eol = 0;
        nuri_token want[4096];
        size_t n_want = 0;
        for (char *q = line, *end; n_want < 4096; q = end) {
            long id = strtol(q, &end, 10);
            if (end == q) break;
            want[n_want++] = (nuri_token)id;
        }
        size_t len = (size_t)(sep - text), n_got;
        nuri_token *got = tokenize(v, text, len, false, false, &n_got);
        check_ids(name, n_cases, text, len, got, n_got, want, n_want);

        /* What came in must come back out (SentencePiece adds one space). */
        size_t dlen;
        char *back = detokenize(v, got, n_got, false, &dlen);
        bool spm = strcmp(nuri_vocab_model_name(v), "llama") == 0;
        const char *cmp = back;
        if (spm && len > 0 && dlen > 0 && back[0] == ' ') cmp++, dlen--;
        CHECK(back && dlen == len && memcmp(cmp, text, len) == 0,
              "%s case %zu: detokenized \"%s\" differs from the text", name, n_cases,
              back ? back : "(null)");
        free(back);
        free(got);
        n_cases++;
        text = sep + strlen(separator);
        line = eol + 1;
    }
    CHECK(n_cases >= 40, "%s: only %zu cases read", name, n_cases);
    CHECK(*line == 0, "%s: .out has more lines than .inp has cases", name);
done:
    free(inp);
    free(outs);
    nuri_vocab_free(v);
}

/* ---- ../shared/golden/tokenizer-*.jsonl ---- */

/* Hugging Face's decode() with clean_up_tokenization_spaces, which the
 * Llama 3 goldens were recorded with: it drops the space before some
 * punctuation and contractions. Applied in place. */
static void hf_cleanup(char *s) {
    static const char *const from[] = {" .",   " ?",  " !",  " ,",   " ' ",
                                       " n't", " 'm", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof from[0]; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]);
        char *w = s;
        for (const char *q = s; *q;) {
            if (strncmp(q, from[r], fl) == 0) {
                memcpy(w, to[r], tl);
                w += tl;
                q += fl;
            } else {
                *w++ = *q++;
            }
        }
        *w = 0;
    }
}

static size_t json_ids(json_t *arr, nuri_token *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(arr) && n < cap; i++)
        out[n++] = (nuri_token)json_integer_value(json_array_get(arr, i));
    return n;
}

static void test_golden(const char *jsonl, const char *vocab_name, bool spm) {
    nuri_vocab *v = load_shared_vocab(vocab_name);
    const char *p = test_shared_path(jsonl);
    if (!v || !p) {
        nuri_vocab_free(v);
        return;
    }
    size_t len;
    char *data = test_read_file(p, &len);
    CHECK(data != NULL, "cannot read %s", p);
    size_t index = 0;
    for (char *line = data; data && *line; index++) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        json_error_t jerr;
        json_t *obj = json_loads(line, 0, &jerr);
        CHECK(obj != NULL, "%s line %zu: %s", jsonl, index + 1, jerr.text);
        bool complete = obj && json_is_string(json_object_get(obj, "text")) &&
                        json_is_string(json_object_get(obj, "decoded"));
        CHECK(!obj || complete, "%s line %zu: no text or decoded", jsonl, index + 1);
        if (complete) {
            const char *text = json_string_value(json_object_get(obj, "text"));
            size_t text_len = json_string_length(json_object_get(obj, "text"));
            const char *decoded = json_string_value(json_object_get(obj, "decoded"));
            const char *id = json_string_value(json_object_get(obj, "id"));
            static nuri_token want[8192], want_bos[8192];
            size_t n_want = json_ids(json_object_get(obj, "ids"), want, 8192);
            size_t n_want_bos = json_ids(json_object_get(obj, "ids_with_bos"), want_bos, 8192);
            char what[128];
            snprintf(what, sizeof what, "%s %s", jsonl, id ? id : "?");

            size_t n_got;
            nuri_token *got = tokenize(v, text, text_len, false, true, &n_got);
            check_ids(what, index, text, text_len, got, n_got, want, n_want);
            nuri_token *got_bos = tokenize(v, text, text_len, true, true, &n_got);
            check_ids(what, index, text, text_len, got_bos, n_got, want_bos, n_want_bos);
            free(got_bos);
            free(got);

            /* Decode the reference ids, rendering special tokens. */
            size_t dlen;
            char *back = detokenize(v, want, n_want, true, &dlen);
            if (back) {
                char *cmp = back;
                if (spm && cmp[0] == ' ')
                    cmp++; /* the dummy prefix */
                else if (!spm) {
                    CHECK(strcmp(cmp, text) == 0, "%s: detokenized \"%s\" != text", what, cmp);
                    hf_cleanup(cmp);
                }
                CHECK(strcmp(cmp, decoded) == 0, "%s: detokenized \"%s\", want \"%s\"", what, cmp,
                      decoded);
            }
            free(back);
        }
        json_decref(obj);
        if (!eol) break;
        line = eol + 1;
    }
    CHECK(index >= 40, "%s: only %zu cases", jsonl, index);
    free(data);
    nuri_vocab_free(v);
}

/* Special-token strings in untrusted text stay text. */
static void test_parse_special_off(void) {
    nuri_vocab *v3 = load_shared_vocab("vocab/ggml-vocab-llama3.gguf");
    if (v3) {
        const char *text = "Hi!<|eot_id|><|begin_of_text|>x";
        size_t n, n_special;
        nuri_token *ids = tokenize(v3, text, strlen(text), false, false, &n);
        nuri_token *ids_special = tokenize(v3, text, strlen(text), false, true, &n_special);
        bool found = false, found_special = false;
        for (size_t i = 0; ids && i < n; i++) found |= ids[i] == 128009 || ids[i] == 128000;
        for (size_t i = 0; ids_special && i < n_special; i++)
            found_special |= ids_special[i] == 128009;
        CHECK(!found, "llama3: <|eot_id|> became the special token with parse_special off");
        CHECK(found_special, "llama3: <|eot_id|> not parsed with parse_special on");
        size_t dlen;
        char *back = detokenize(v3, ids, n, false, &dlen);
        CHECK(back && strcmp(back, text) == 0, "llama3: plain-text specials do not round-trip: %s",
              back ? back : "(null)");
        free(back);
        free(ids);
        free(ids_special);

        CHECK(nuri_vocab_is_eog(v3, 128009), "llama3: <|eot_id|> (EOS) is not eog");
        CHECK(nuri_vocab_is_eog(v3, 128001), "llama3: <|end_of_text|> is not eog");
        CHECK(!nuri_vocab_is_eog(v3, 128000), "llama3: BOS is eog");
        CHECK(!nuri_vocab_is_eog(v3, 9906), "llama3: a normal token is eog");
        CHECK(!nuri_vocab_is_eog(v3, -1) && !nuri_vocab_is_eog(v3, 128256),
              "llama3: eog out of range");
        CHECK(nuri_vocab_bos(v3) == 128000 && nuri_vocab_eos(v3) == 128009, "llama3: bos/eos");
        CHECK(nuri_vocab_add_bos(v3), "llama3: add_bos_token is true in its metadata");
        CHECK(nuri_vocab_n_tokens(v3) == 128256, "llama3: n_tokens");
        CHECK(strcmp(nuri_vocab_model_name(v3), "gpt2") == 0, "llama3: model name");
        char piece[64];
        size_t pl = nuri_vocab_token_to_piece(v3, 128009, false, piece, sizeof piece);
        CHECK(pl == 0, "llama3: control token renders as %zu bytes without render_special", pl);
        pl = nuri_vocab_token_to_piece(v3, 128009, true, piece, sizeof piece);
        CHECK(pl == 10 && memcmp(piece, "<|eot_id|>", 10) == 0, "llama3: <|eot_id|> renders wrong");
        /* A short buffer gets a prefix, the return value the full length. */
        memset(piece, 'x', sizeof piece);
        pl = nuri_vocab_token_to_piece(v3, 128009, true, piece, 3);
        CHECK(pl == 10 && memcmp(piece, "<|ex", 4) == 0, "llama3: truncated piece wrong");
        CHECK(nuri_vocab_token_to_piece(v3, 128256, true, piece, sizeof piece) == 0,
              "llama3: out-of-range token renders");
        nuri_vocab_free(v3);
    }
    nuri_vocab *v2 = load_shared_vocab("vocab/ggml-vocab-llama-spm.gguf");
    if (v2) {
        const char *text = "<s>Hello</s>";
        size_t n;
        nuri_token *ids = tokenize(v2, text, strlen(text), false, false, &n);
        bool found = false;
        for (size_t i = 0; ids && i < n; i++) found |= ids[i] == 1 || ids[i] == 2;
        CHECK(!found && n > 3, "llama2: <s> became the special token with parse_special off");
        free(ids);
        CHECK(nuri_vocab_is_eog(v2, 2) && !nuri_vocab_is_eog(v2, 1), "llama2: eog");
        CHECK(nuri_vocab_add_bos(v2), "llama2: add_bos");
        CHECK(strcmp(nuri_vocab_model_name(v2), "llama") == 0, "llama2: model name");
        nuri_vocab_free(v2);
    }
    nuri_vocab *g2 = load_shared_vocab("vocab/ggml-vocab-gpt-2.gguf");
    if (g2) {
        CHECK(!nuri_vocab_add_bos(g2), "gpt-2: add_bos defaults to false for gpt2 vocabularies");
        size_t n;
        nuri_token *ids = tokenize(g2, "hi", 2, true, false, &n);
        CHECK(ids && n == 1 && ids[0] != 50256, "gpt-2: BOS added although add_bos is false");
        free(ids);
        nuri_vocab_free(g2);
    }
}

/* ---- Load time ---- */

static void test_load_time(void) {
    const char *path = test_shared_path("vocab/ggml-vocab-llama3.gguf");
    if (!path) return;
    double t0 = nuri_time_sec();
    nuri_error err = {0};
    nuri_vocab *v = load_gguf_vocab_path(path, &err, NULL);
    double dt = nuri_time_sec() - t0;
    CHECK(v != NULL, "llama3: %s", err.message);
    double limit = SANITIZED ? 10.0 : 1.0;
    CHECK(dt < limit, "llama3 vocabulary took %.3f s to load (limit %.1f s)", dt, limit);
    printf("llama3 vocabulary (128256 tokens, 280147 merges) loaded in %.3f s\n", dt);

    /* Tokenizing a long text stays fast (no quadratic merging). */
    size_t big = 200000;
    char *text = malloc(big);
    for (size_t i = 0; text && i < big; i++) text[i] = "ab cd\n"[rng() % 6];
    if (v && text) {
        t0 = nuri_time_sec();
        size_t n;
        nuri_token *ids = tokenize(v, text, big, false, false, &n);
        dt = nuri_time_sec() - t0;
        CHECK(dt < limit * 2, "llama3: 200 kB took %.3f s to tokenize", dt);
        free(ids);
        /* One long word: a single symbol list of 200k bytes. */
        memset(text, 'a', big);
        t0 = nuri_time_sec();
        ids = tokenize(v, text, big, false, false, &n);
        dt = nuri_time_sec() - t0;
        CHECK(dt < limit * 2, "llama3: a 200 kB word took %.3f s to tokenize", dt);
        size_t dlen;
        char *back = detokenize(v, ids, n, false, &dlen);
        CHECK(back && dlen == big && memcmp(back, text, big) == 0, "llama3: long word round trip");
        free(back);
        free(ids);
    }
    free(text);
    nuri_vocab_free(v);
}

/* ---- llama2.c tokenizer.bin ---- */

static void test_llama2c(void) {
    const char *p = test_shared_path("models/tok512.bin");
    if (!p) return;
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    nuri_error err = {0};
    nuri_vocab *v = NULL;
    nuri_status st = nuri_vocab_from_llama2c(path, 512, &v, &err);
    CHECK(st == NURI_OK && v, "tok512.bin: %s", err.message);
    if (!v) return;
    CHECK(nuri_vocab_n_tokens(v) == 512, "tok512: n_tokens");
    CHECK(nuri_vocab_bos(v) == 1 && nuri_vocab_eos(v) == 2, "tok512: bos/eos");
    CHECK(nuri_vocab_add_bos(v), "tok512: add_bos");
    CHECK(nuri_vocab_is_eog(v, 2) && !nuri_vocab_is_eog(v, 1), "tok512: eog");
    CHECK(strcmp(nuri_vocab_model_name(v), "llama") == 0, "tok512: model name");

    const char *texts[] = {"Hello world", "The machine learns.", "  spaces  twice ", "a",
                           "Once upon a time, there was a little girl named Lily."};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t n, dlen;
        nuri_token *ids = tokenize(v, texts[i], strlen(texts[i]), false, false, &n);
        char *back = detokenize(v, ids, n, false, &dlen);
        CHECK(back && back[0] == ' ' && strcmp(back + 1, texts[i]) == 0,
              "tok512: \"%s\" came back as \"%s\"", texts[i], back ? back : "(null)");
        free(back);
        bool merged = false;
        for (size_t k = 0; ids && k < n; k++) merged |= ids[k] >= 259;
        CHECK(merged, "tok512: \"%s\" used no merged tokens", texts[i]);
        nuri_token *with_bos = tokenize(v, texts[i], strlen(texts[i]), true, false, &n);
        CHECK(with_bos && n > 0 && with_bos[0] == 1, "tok512: no BOS");
        free(with_bos);
        free(ids);
    }
    /* Hangul is not in this vocabulary: every byte falls back to <0xXX>,
     * which in llama2.c's layout is token byte + 3. */
    const char *korean = "안녕하세요";
    size_t n, dlen;
    nuri_token *ids = tokenize(v, korean, strlen(korean), false, false, &n);
    CHECK(ids && n == 1 + strlen(korean), "tok512: Korean gave %zu tokens", n);
    for (size_t k = 1; ids && k < n; k++)
        CHECK(ids[k] == (unsigned char)korean[k - 1] + 3, "tok512: Korean byte %zu is token %d",
              k - 1, ids[k]);
    char *back = detokenize(v, ids, n, false, &dlen);
    CHECK(back && strcmp(back, " 안녕하세요") == 0, "tok512: Korean round trip");
    free(back);
    free(ids);
    /* BOS renders only on request, with llama2.c's own text. */
    char piece[32];
    CHECK(nuri_vocab_token_to_piece(v, 1, false, piece, sizeof piece) == 0, "tok512: BOS rendered");
    size_t pl = nuri_vocab_token_to_piece(v, 1, true, piece, sizeof piece);
    CHECK(pl == 5 && memcmp(piece, "\n<s>\n", 5) == 0, "tok512: BOS text");

    /* The same vocabulary converted to GGUF tokenizes identically, and the
     * golden prompts (llama.cpp's ids for real text) re-tokenize to
     * themselves. */
    nuri_vocab *g = load_shared_vocab("models/aidreams260K.gguf");
    const char *pp = test_shared_path("golden/prompts.txt");
    char *prompts = pp ? test_read_file(pp, NULL) : NULL;
    if (g && prompts) {
        size_t line_no = 0;
        for (char *line = strtok(prompts, "\n"); line; line = strtok(NULL, "\n"), line_no++) {
            nuri_token want[512];
            size_t n_want = 0;
            for (char *q = line, *end; n_want < 512; q = end + (*end == ',')) {
                long id = strtol(q, &end, 10);
                if (end == q) break;
                want[n_want++] = (nuri_token)id;
            }
            /* Only prompts that are tokenizer output: BOS then text. */
            if (n_want < 2 || want[0] != 1) continue;
            size_t tlen;
            char *text = detokenize(v, want + 1, n_want - 1, false, &tlen);
            const char *body = text && text[0] == ' ' ? text + 1 : text;
            size_t n1, n2;
            nuri_token *a = tokenize(v, body, strlen(body), true, false, &n1);
            nuri_token *b = tokenize(g, body, strlen(body), true, false, &n2);
            check_ids("tok512 prompt", line_no, body, strlen(body), a, n1, want, n_want);
            check_ids("aidreams260K.gguf prompt", line_no, body, strlen(body), b, n2, want, n_want);
            free(a);
            free(b);
            free(text);
        }
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            size_t n1, n2;
            nuri_token *a = tokenize(v, texts[i], strlen(texts[i]), true, true, &n1);
            nuri_token *b = tokenize(g, texts[i], strlen(texts[i]), true, true, &n2);
            check_ids("tok512 vs gguf", i, texts[i], strlen(texts[i]), a, n1, b, n2);
            free(a);
            free(b);
        }
    }
    free(prompts);
    nuri_vocab_free(g);
    nuri_vocab_free(v);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* A tokenizer.bin builder: appends (score, len, bytes). */
static size_t put_token(unsigned char *buf, size_t at, float score, int32_t len, const char *s) {
    memcpy(buf + at, &score, 4);
    memcpy(buf + at + 4, &len, 4);
    if (len > 0) memcpy(buf + at + 8, s, (size_t)len);
    return at + 8 + (len > 0 ? (size_t)len : 0);
}

static void expect_llama2c_error(const char *what, const unsigned char *data, size_t n,
                                 int32_t n_vocab, const char *needle) {
    const char *path = test_tmp_path("bad-tokenizer.bin");
    write_bytes(path, data, n);
    nuri_error err = {0};
    nuri_vocab *v = NULL;
    nuri_status st = nuri_vocab_from_llama2c(path, n_vocab, &v, &err);
    CHECK(st != NURI_OK && v == NULL, "%s: accepted", what);
    CHECK(st == NURI_OK || strstr(err.message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"",
          what, err.message, needle);
    nuri_vocab_free(v);
}

static void test_llama2c_malformed(void) {
    unsigned char buf[256];
    int32_t max_len = 8;
    memcpy(buf, &max_len, 4);
    size_t n = 4;
    n = put_token(buf, n, 0, 5, "<unk>");
    n = put_token(buf, n, 0, 3, "<s>");
    n = put_token(buf, n, 0, 4, "</s>");
    n = put_token(buf, n, -1, 2, " a");
    size_t good = n;

    const char *path = test_tmp_path("good-tokenizer.bin");
    write_bytes(path, buf, good);
    nuri_error err = {0};
    nuri_vocab *v = NULL;
    CHECK(nuri_vocab_from_llama2c(path, 4, &v, &err) == NURI_OK, "small tokenizer.bin: %s",
          err.message);
    if (v) {
        size_t cnt;
        nuri_token *ids = tokenize(v, "a", 1, false, false, &cnt);
        CHECK(ids && cnt == 1 && ids[0] == 3, "small tokenizer.bin: \"a\" is not \" a\"");
        free(ids);
        /* Characters with neither a token nor byte tokens become <unk>,
         * one per character. */
        ids = tokenize(v, "b\xff", 2, false, false, &cnt);
        CHECK(ids && cnt == 3 && ids[0] == 0 && ids[1] == 0 && ids[2] == 0,
              "small tokenizer.bin: unknown characters (▁, b, \\xff) gave %zu tokens", cnt);
        free(ids);
    }
    nuri_vocab_free(v);

    for (size_t cut = 0; cut < good; cut += 3)
        expect_llama2c_error("truncated tokenizer.bin", buf, cut, 4, cut < 4 ? "header" : "");
    expect_llama2c_error("tokenizer.bin for more tokens than it holds", buf, good, 5, "");
    expect_llama2c_error("tokenizer.bin with trailing tokens", buf, good, 3, "left after");

    unsigned char bad[256];
    memcpy(bad, buf, good);
    size_t at = 4 + 8 + 5 + 8 + 3; /* token 2's length */
    int32_t neg = -5;
    memcpy(bad + at + 4, &neg, 4);
    expect_llama2c_error("negative token length", bad, good, 4, "negative");
    int32_t huge = 0x7fffff00;
    memcpy(bad + at + 4, &huge, 4);
    expect_llama2c_error("huge token length", bad, good, 4, "token 2");
    int32_t eight = 8; /* within max_token_length but past the end */
    memcpy(bad, buf, good);
    memcpy(bad + 4 + 8 + 5 + 8 + 3 + 8 + 4 + 4, &eight, 4);
    expect_llama2c_error("token running past the end", bad, good, 4, "past the end");
    int32_t neg_max = -1;
    memcpy(bad, buf, good);
    memcpy(bad, &neg_max, 4);
    expect_llama2c_error("negative max_token_length", bad, good, 4, "max_token_length");
    memcpy(bad, buf, good);
    int32_t small_max = 2;
    memcpy(bad, &small_max, 4);
    expect_llama2c_error("token above max_token_length", bad, good, 4, "max_token_length");

    v = NULL;
    CHECK(nuri_vocab_from_llama2c(test_tmp_path("does-not-exist.bin"), 4, &v, &err) == NURI_ERR_IO,
          "missing tokenizer.bin is not an I/O error");
    CHECK(nuri_vocab_from_llama2c(path, 0, &v, &err) == NURI_ERR_INVALID_ARG, "n_vocab 0 accepted");
    CHECK(nuri_vocab_from_llama2c(path, -7, &v, &err) == NURI_ERR_INVALID_ARG,
          "n_vocab -7 accepted");
}

/* ---- Hand-made GGUF vocabularies ---- */

typedef struct {
    const char *model, *pre;
    const char *const *tokens;
    size_t n_tokens;
    const float *scores;
    size_t n_scores;
    const int32_t *types;
    size_t n_types;
    const char *const *merges;
    size_t n_merges;
    int64_t bos; /* -2: leave out */
    bool set_add_bos, add_bos;
} mini_vocab;

static nuri_vocab *build_vocab(const mini_vocab *m, nuri_status *status, nuri_error *err) {
    gguf_writer *w = gguf_writer_create();
    CHECK(w != NULL, "gguf_writer_create");
    if (!w) return NULL;
    bool ok = gguf_writer_set_str(w, "general.architecture", "llama") == NURI_OK;
    if (m->model) ok &= gguf_writer_set_str(w, "tokenizer.ggml.model", m->model) == NURI_OK;
    if (m->pre) ok &= gguf_writer_set_str(w, "tokenizer.ggml.pre", m->pre) == NURI_OK;
    if (m->tokens)
        ok &=
            gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", m->tokens, m->n_tokens) == NURI_OK;
    if (m->scores)
        ok &= gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, m->scores,
                                  m->n_scores) == NURI_OK;
    if (m->types)
        ok &= gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, m->types,
                                  m->n_types) == NURI_OK;
    if (m->merges)
        ok &=
            gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", m->merges, m->n_merges) == NURI_OK;
    if (m->bos != -2)
        ok &= gguf_writer_set_i32(w, "tokenizer.ggml.bos_token_id", (int32_t)m->bos) == NURI_OK;
    if (m->set_add_bos)
        ok &= gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", m->add_bos) == NURI_OK;
    CHECK(ok, "gguf writer setters failed");
    const char *path = test_tmp_path("mini-vocab.gguf");
    nuri_error werr = {0};
    nuri_status st = gguf_writer_write(w, path, &werr);
    gguf_writer_free(w);
    CHECK(st == NURI_OK, "writing %s: %s", path, werr.message);
    if (st) return NULL;
    return load_gguf_vocab_path(path, err, status);
}

static void expect_vocab_error(const char *what, const mini_vocab *m, nuri_status want,
                               const char *needle) {
    nuri_status st = NURI_OK;
    nuri_error err = {0};
    nuri_vocab *v = build_vocab(m, &st, &err);
    CHECK(v == NULL && st == want, "%s: status %d, want %d (%s)", what, (int)st, (int)want,
          err.message);
    CHECK(v != NULL || strstr(err.message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
          err.message, needle);
    nuri_vocab_free(v);
}

/* Token ids as a compact list for expectations. */
static void expect_tokens(const char *what, const nuri_vocab *v, const char *text, bool special,
                          const nuri_token *want, size_t n_want) {
    size_t n;
    nuri_token *got = tokenize(v, text, strlen(text), false, special, &n);
    check_ids(what, 0, text, strlen(text), got, n, want, n_want);
    free(got);
}

#define U2581 "\xe2\x96\x81"

static void test_mini_spm(void) {
    /* 0 <unk>, 1 <s>, 2 </s>, 3 <0x61>, 4 <0x62> ... */
    const char *tokens[] = {"<unk>",  "<s>",    "</s>",    "<0x61>", "<0x62>", "<0xE2>",
                            "<0x96>", "<0x81>", "a",       "b",      U2581,    "ab",
                            "ba",     "aa",     U2581 "a", "<sep>",  "<tool>", "<tool_x>"};
    const float scores[] = {0, 0, 0, 0, 0, 0, 0, 0, -5, -5, -5, -2, -1, -3, -4, 0, 0, 0};
    const int32_t types[] = {2, 3, 3, 6, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 3, 4, 4};
    mini_vocab m = {.model = "llama",
                    .tokens = tokens,
                    .n_tokens = 18,
                    .scores = scores,
                    .n_scores = 18,
                    .types = types,
                    .n_types = 18,
                    .bos = 1};
    nuri_error err = {0};
    nuri_status st;
    nuri_vocab *v = build_vocab(&m, &st, &err);
    CHECK(v != NULL, "mini spm: %s", err.message);
    if (!v) return;
    /* "▁aba": ▁a(-4) ab(-2) ba(-1) -> ba first, then ▁a: [▁a, ba]. */
    expect_tokens("mini spm score order", v, "aba", false, (nuri_token[]){14, 12}, 2);
    /* "▁aaa": pairs ▁a(-4), aa(-3), aa(-3): the leftmost aa first (a tie),
     * then nothing joins ▁ with aa: [▁, aa, a]. */
    expect_tokens("mini spm leftmost tie", v, "aaa", false, (nuri_token[]){10, 13, 8}, 3);
    /* Characters without a token fall back to their bytes' <0xXX> tokens;
     * the truncated "\xe2\x96" is two invalid characters of one byte each. */
    expect_tokens("mini spm byte fallback", v, "b\xe2\x96", false, (nuri_token[]){10, 9, 5, 6}, 4);
    /* Control tokens only with parse_special; user-defined always, longest
     * first; the dummy prefix returns after each special token. */
    expect_tokens("mini spm special on", v, "a<sep>b", true, (nuri_token[]){14, 15, 10, 9}, 4);
    expect_tokens("mini spm user-defined", v, "<tool_x>a<tool>", false, (nuri_token[]){17, 14, 16},
                  3);
    size_t n;
    nuri_token *ids = tokenize(v, "a<sep>", 6, false, false, &n);
    bool has_sep = false;
    for (size_t i = 0; ids && i < n; i++) has_sep |= ids[i] == 15;
    CHECK(!has_sep, "mini spm: <sep> parsed with parse_special off");
    free(ids);
    ids = tokenize(v, "", 0, true, false, &n);
    CHECK(ids && n == 1 && ids[0] == 1, "mini spm: empty text with BOS");
    free(ids);
    ids = tokenize(v, NULL, 0, false, false, &n);
    CHECK(ids && n == 0, "mini spm: NULL empty text");
    free(ids);
    nuri_token *out = NULL;
    CHECK(nuri_vocab_tokenize(v, NULL, 3, false, false, &out, &n, &err) == NURI_ERR_INVALID_ARG,
          "NULL text with a length accepted");
    char piece[16];
    CHECK(nuri_vocab_token_to_piece(v, 14, false, piece, sizeof piece) == 2 &&
              memcmp(piece, " a", 2) == 0,
          "mini spm: ▁a renders wrong");
    CHECK(nuri_vocab_token_to_piece(v, 5, false, piece, sizeof piece) == 1 && piece[0] == '\xe2',
          "mini spm: byte token renders wrong");
    CHECK(nuri_vocab_token_to_piece(v, 16, false, piece, sizeof piece) == 6,
          "mini spm: user-defined");
    CHECK(nuri_vocab_token_to_piece(v, 0, false, piece, sizeof piece) == 0,
          "mini spm: <unk> rendered");
    nuri_vocab_free(v);
}

static void test_mini_bpe(void) {
    /* Byte-level: the GPT-2 characters for 'a','b','c',' ' (Ġ = U+0120). */
    const char *tokens[] = {"a",
                            "b",
                            "c",
                            "\xc4\xa0",
                            "ab",
                            "bc",
                            "abc",
                            "\xc4\xa0"
                            "a",
                            "<|end|>",
                            "ca",
                            "<|eom_id|>",
                            "<|im_end|>",
                            "<|eot_id|>"};
    const int32_t types[] = {1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 3, 3, 4};
    /* "b c" (rank 0) before "a b" (rank 1); "ab c" gives abc; "x y" names
     * strings the vocabulary lacks; "c a" joins to ca. */
    const char *merges[] = {"b c", "a b", "ab c", "\xc4\xa0 a", "x y", "c a", "xy zz"};
    mini_vocab m = {.model = "gpt2",
                    .pre = "gpt2",
                    .tokens = tokens,
                    .n_tokens = 13,
                    .types = types,
                    .n_types = 13,
                    .merges = merges,
                    .n_merges = 7,
                    .bos = -2};
    nuri_error err = {0};
    nuri_status st;
    nuri_vocab *v = build_vocab(&m, &st, &err);
    CHECK(v != NULL, "mini bpe: %s", err.message);
    if (!v) return;
    CHECK(!nuri_vocab_add_bos(v) && nuri_vocab_bos(v) == -1, "mini bpe: no BOS");
    /* No EOS/EOT in the metadata: end-of-turn control tokens are found by
     * their text; a user-defined one is not trusted to end generation. */
    CHECK(nuri_vocab_eos(v) == -1, "mini bpe: EOS");
    CHECK(nuri_vocab_is_eog(v, 8) && nuri_vocab_is_eog(v, 10) && nuri_vocab_is_eog(v, 11),
          "mini bpe: <|end|>, <|eom_id|>, <|im_end|> are not eog");
    CHECK(!nuri_vocab_is_eog(v, 12) && !nuri_vocab_is_eog(v, 0), "mini bpe: wrong eog");
    /* "abc": b c (rank 0) first -> a bc; no "a bc" merge: [a, bc]. */
    expect_tokens("mini bpe rank order", v, "abc", false, (nuri_token[]){0, 5}, 2);
    /* "cac": c a (rank 5) at 0 and a c? none; -> ca c. */
    expect_tokens("mini bpe ties", v, "caca", false, (nuri_token[]){9, 9}, 2);
    /* " ab": the GPT-2 word is " ab" -> Ġa b (rank 3 vs a b rank 1: ab
     * first) -> Ġ ab. */
    expect_tokens("mini bpe space", v, " ab", false, (nuri_token[]){3, 4}, 2);
    expect_tokens("mini bpe special", v, "a<|end|>", true, (nuri_token[]){0, 8}, 2);
    char piece[8];
    CHECK(nuri_vocab_token_to_piece(v, 7, false, piece, sizeof piece) == 2 &&
              memcmp(piece, " a", 2) == 0,
          "mini bpe: Ġa renders wrong");
    /* Bytes with no token in this vocabulary vanish rather than crash. */
    size_t n;
    nuri_token *ids = tokenize(v, "a\x01z\xff", 4, false, false, &n);
    CHECK(ids && n == 1 && ids[0] == 0, "mini bpe: unknown bytes");
    free(ids);
    nuri_vocab_free(v);

    /* No tokenizer.ggml.pre: GPT-2's pre-tokenizer. */
    m.pre = NULL;
    v = build_vocab(&m, &st, &err);
    CHECK(v != NULL, "mini bpe without pre: %s", err.message);
    if (v) expect_tokens("mini bpe default pre", v, "abc", false, (nuri_token[]){0, 5}, 2);
    nuri_vocab_free(v);

    /* Llama 3's rule: a word that is a token is taken whole. */
    m.pre = "llama-bpe";
    const char *merges3[] = {"b c", "a b"};
    m.merges = merges3;
    m.n_merges = 2;
    v = build_vocab(&m, &st, &err);
    CHECK(v != NULL, "mini bpe llama-bpe: %s", err.message);
    if (v) {
        expect_tokens("mini bpe ignore_merges", v, "abc", false, (nuri_token[]){6}, 1);
        nuri_vocab_free(v);
    }
}

static void test_hostile_metadata(void) {
    const char *tokens[] = {"<unk>", "<s>", "a", "b"};
    const float scores[] = {0, 0, -1, -2};
    const int32_t types[] = {2, 3, 1, 1};
    mini_vocab base = {.model = "llama",
                       .tokens = tokens,
                       .n_tokens = 4,
                       .scores = scores,
                       .n_scores = 4,
                       .types = types,
                       .n_types = 4,
                       .bos = 1};
    mini_vocab m;

    m = base;
    m.n_scores = 3;
    expect_vocab_error("scores shorter than tokens", &m, NURI_ERR_FORMAT, "tokenizer.ggml.scores");
    m = base;
    m.n_types = 2;
    expect_vocab_error("token_type shorter than tokens", &m, NURI_ERR_FORMAT,
                       "tokenizer.ggml.token_type");
    m = base;
    m.bos = 4;
    expect_vocab_error("bos out of range", &m, NURI_ERR_FORMAT, "tokenizer.ggml.bos_token_id");
    m = base;
    m.tokens = NULL;
    expect_vocab_error("no tokens", &m, NURI_ERR_FORMAT, "tokenizer.ggml.tokens");
    m = base;
    m.model = NULL;
    expect_vocab_error("no model", &m, NURI_ERR_FORMAT, "tokenizer.ggml.model");
    m = base;
    m.model = "wordpiece";
    expect_vocab_error("unknown model", &m, NURI_ERR_UNSUPPORTED, "wordpiece");
    const int32_t bad_types[] = {2, 3, 9, 1};
    m = base;
    m.types = bad_types;
    expect_vocab_error("token type 9", &m, NURI_ERR_FORMAT, "tokenizer.ggml.token_type[2]");
    const int32_t byte_types[] = {2, 3, 6, 1};
    m = base;
    m.types = byte_types;
    expect_vocab_error("BYTE token that is not <0xXX>", &m, NURI_ERR_FORMAT, "token 2");
    float nan_scores[] = {0, 0, 0, 0};
    uint32_t nan_bits = 0x7fc00000u;
    memcpy(&nan_scores[3], &nan_bits, 4);
    m = base;
    m.scores = nan_scores;
    expect_vocab_error("NaN score", &m, NURI_ERR_FORMAT, "tokenizer.ggml.scores[3]");

    const char *merges[] = {"a b", "ab"};
    mini_vocab g = {.model = "gpt2",
                    .tokens = tokens,
                    .n_tokens = 4,
                    .types = types,
                    .n_types = 4,
                    .merges = merges,
                    .n_merges = 2,
                    .bos = -2};
    expect_vocab_error("merge without a space", &g, NURI_ERR_FORMAT, "tokenizer.ggml.merges[1]");
    const char *merges_trailing[] = {"a "};
    g.merges = merges_trailing;
    g.n_merges = 1;
    expect_vocab_error("merge with an empty right side", &g, NURI_ERR_FORMAT,
                       "tokenizer.ggml.merges[0]");
    g.merges = NULL;
    expect_vocab_error("gpt2 without merges", &g, NURI_ERR_FORMAT, "tokenizer.ggml.merges");
    g.merges = merges;
    g.n_merges = 1;
    g.pre = "no-such-pretokenizer";
    expect_vocab_error("unknown pre-tokenizer", &g, NURI_ERR_UNSUPPORTED, "no-such-pretokenizer");

    /* -1 as "none" is fine. */
    m = base;
    m.bos = -1;
    nuri_error err = {0};
    nuri_status st;
    nuri_vocab *v = build_vocab(&m, &st, &err);
    CHECK(v != NULL && nuri_vocab_bos(v) == -1 && !nuri_vocab_add_bos(v), "bos -1: %s",
          err.message);
    nuri_vocab_free(v);
}

/* ---- Round trips and robustness on every vocabulary ---- */

static size_t random_utf8(char *out, size_t max_chars) {
    size_t n = 0, chars = rng() % max_chars;
    for (size_t i = 0; i < chars; i++) {
        uint32_t cp;
        switch (rng() % 6) {
        case 0: cp = 0x20 + rng() % 0x5f; break;     /* ASCII */
        case 1: cp = 0xa0 + rng() % 0x560; break;    /* Latin, Greek, Cyrillic */
        case 2: cp = 0xac00 + rng() % 11172; break;  /* Hangul */
        case 3: cp = 0x4e00 + rng() % 0x5000; break; /* CJK */
        case 4: cp = 0x1f300 + rng() % 0x300; break; /* emoji */
        default: cp = "  \n\t"[rng() % 4]; break;
        }
        if (cp == 0x2581) cp = 'x'; /* SentencePiece's space mark renders as a space */
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else if (cp < 0x800) {
            out[n++] = (char)(0xc0 | cp >> 6);
            out[n++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out[n++] = (char)(0xe0 | cp >> 12);
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[n++] = (char)(0x80 | (cp & 0x3f));
        } else {
            out[n++] = (char)(0xf0 | cp >> 18);
            out[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            out[n++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    return n;
}

/* Tokenizes text and checks the ids are in range and, when must_match,
 * that detokenizing gives the text back. */
static void round_trip(const char *name, const nuri_vocab *v, const char *text, size_t len,
                       bool must_match) {
    size_t n, dlen;
    nuri_token *ids = tokenize(v, text, len, false, false, &n);
    if (!ids) return;
    bool in_range = true;
    for (size_t i = 0; i < n; i++) in_range &= ids[i] >= 0 && ids[i] < nuri_vocab_n_tokens(v);
    CHECK(in_range, "%s: token out of range", name);
    char *back = detokenize(v, ids, n, false, &dlen);
    const char *cmp = back;
    if (back && strcmp(nuri_vocab_model_name(v), "llama") == 0 && len > 0 && dlen > 0 &&
        back[0] == ' ')
        cmp++, dlen--;
    CHECK(!must_match || (back && dlen == len && memcmp(cmp, text, len) == 0),
          "%s: round trip of %zu bytes failed (got %zu bytes)", name, len, dlen);
    free(back);
    free(ids);
}

static void test_round_trips(void) {
    const char *names[] = {"ggml-vocab-llama-spm.gguf",    "ggml-vocab-phi-3.gguf",
                           "ggml-vocab-llama3.gguf",       "ggml-vocab-gpt-2.gguf",
                           "ggml-vocab-deepseek-llm.gguf", "ggml-vocab-starcoder.gguf",
                           "ggml-vocab-falcon.gguf",       "../models/aidreams260K.gguf"};
    /* DeepSeek's, StarCoder's and Falcon's vocabularies lack tokens for
     * some bytes (C0, C1, F5-FF, which never occur in UTF-8; Falcon also a
     * few ASCII controls; DeepSeek turned their characters into
     * user-defined tokens), so arbitrary bytes cannot survive them; valid
     * UTF-8 text does. */
    const bool all_bytes[] = {true, true, true, true, false, false, false, true};
    char text[1024];
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "vocab/%s", names[k]);
        nuri_vocab *v = load_shared_vocab(rel);
        if (!v) continue;
        for (int i = 0; i < 60; i++) {
            size_t n = rng() % 80;
            for (size_t j = 0; j < n; j++) text[j] = (char)(0x20 + rng() % 0x5f);
            round_trip(names[k], v, text, n, true);
            n = random_utf8(text, 60);
            round_trip(names[k], v, text, n, true);
            /* Any bytes at all, NULs and invalid UTF-8 included. */
            n = rng() % 120;
            for (size_t j = 0; j < n; j++) text[j] = (char)(rng() & 0xff);
            round_trip(names[k], v, text, n, all_bytes[k]);
            size_t cnt;
            nuri_token *ids = tokenize(v, text, n, true, true, &cnt);
            free(ids);
        }
        nuri_vocab_free(v);
    }
}

int main(void) {
    static const char *const cases[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf",
                                        "ggml-vocab-gpt-2.gguf",     "ggml-vocab-deepseek-llm.gguf",
                                        "ggml-vocab-starcoder.gguf", "ggml-vocab-falcon.gguf"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_vocab_cases(cases[i]);
    test_golden("golden/tokenizer-llama2.jsonl", "vocab/ggml-vocab-llama-spm.gguf", true);
    test_golden("golden/tokenizer-llama3.jsonl", "vocab/ggml-vocab-llama3.gguf", false);
    test_parse_special_off();
    test_load_time();
    test_llama2c();
    test_llama2c_malformed();
    test_mini_spm();
    test_mini_bpe();
    test_hostile_metadata();
    test_round_trips();
    return test_finish();
}
