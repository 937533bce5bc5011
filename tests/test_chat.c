/* test_chat.c — conversations: chat_session (KV-cache reuse across turns,
 * context limits, the end-of-turn text) and `nuri chat` as a user drives it
 * (piped input, /clear, /exit, EOF, errors; with tmux when it is installed:
 * line editing, history and Ctrl-C on a real terminal). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat/chat_session.h"
#include "chat/template.h"
#include "support/test.h"

static const char *bin;
static char model_path[4096], mini_path[4096];

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int count_substr(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* ---- chat_session directly ------------------------------------------------------ */

typedef struct {
    nuri_model *model;
    nuri_context *ctx;
    nuri_chat_template *tpl;
    nuri_chat_session *s;
} fixture;

/* A greedy session on the shared model with a built-in format (or a custom
 * template source), n_ctx positions. */
static bool fixture_open(fixture *f, const char *builtin, const char *custom, int32_t n_ctx,
                         int32_t n_predict, bool ignore_eog) {
    memset(f, 0, sizeof *f);
    nuri_error err;
    if (nuri_model_load(model_path, NULL, &f->model, &err) != NURI_OK) {
        CHECK(false, "load %s: %s", model_path, err.message);
        return false;
    }
    nuri_context_params cp = nuri_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = 1;
    nuri_status st = nuri_context_create(f->model, &cp, &f->ctx, &err);
    if (st == NURI_OK)
        st = custom ? nuri_chat_template_parse(custom, strlen(custom), &f->tpl, &err)
                    : nuri_chat_template_builtin(builtin, &f->tpl, &err);
    if (st == NURI_OK) {
        nuri_chat_session_params p = {
            .model = f->model,
            .ctx = f->ctx,
            .tpl = f->tpl,
            .bos_token = "<s>",
            .eos_token = "</s>",
            .sampling = nuri_sampler_default_params(), /* greedy */
            .n_predict = n_predict,
            .ignore_eog = ignore_eog,
        };
        st = nuri_chat_session_create(&p, &f->s, &err);
    }
    CHECK(st == NURI_OK, "session setup: %s", err.message);
    return st == NURI_OK;
}

static void fixture_close(fixture *f) {
    nuri_chat_session_free(f->s);
    nuri_chat_template_free(f->tpl);
    nuri_context_free(f->ctx);
    nuri_model_free(f->model);
}

/* Runs one turn (user message, prepare, generate to the end); returns the
 * reply (malloc'ed) or NULL, and how it ended. */
static char *turn(nuri_chat_session *s, const char *message, nuri_chat_end *end_out,
                  nuri_status *prepare_status) {
    nuri_error err;
    if (message) nuri_chat_session_add_message(s, "user", message, strlen(message), &err);
    nuri_status st = nuri_chat_session_prepare(s, &err);
    if (prepare_status) *prepare_status = st;
    if (st != NURI_OK) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *reply = malloc(cap);
    nuri_chat_end end = NURI_CHAT_GENERATING;
    const char *text;
    size_t n;
    int guard = 0;
    while (end == NURI_CHAT_GENERATING && guard++ < 10000) {
        if (nuri_chat_session_step(s, &text, &n, &end, &err) != NURI_OK) break;
        if (len + n < cap) {
            memcpy(reply + len, text, n);
            len += n;
        }
    }
    if (nuri_chat_session_end_reply(s, &text, &n, &err) == NURI_OK && len + n < cap) {
        memcpy(reply + len, text, n);
        len += n;
    }
    reply[len] = '\0';
    if (end_out) *end_out = end;
    return reply;
}

static void test_session_reuse(void) {
    fixture f;
    if (!fixture_open(&f, "mistral", NULL, 0, 12, false)) {
        fixture_close(&f);
        return;
    }
    nuri_chat_end end;
    char *r1 = turn(f.s, "Hello there", &end, NULL);
    nuri_chat_stats st1 = nuri_chat_session_stats(f.s);
    CHECK(r1 && strlen(r1) > 0, "first reply is not empty");
    CHECK(end == NURI_CHAT_LENGTH && st1.reply_tokens == 12, "12 tokens then LENGTH (end %d, %zu tokens)",
          (int)end, st1.reply_tokens);
    CHECK(st1.reused_tokens == 0 && st1.evaluated_tokens == st1.prompt_tokens && st1.prompt_tokens > 5,
          "first prompt evaluated whole: %zu of %zu", st1.evaluated_tokens, st1.prompt_tokens);
    CHECK(nuri_chat_session_n_messages(f.s) == 2, "user + assistant messages: %zu",
          nuri_chat_session_n_messages(f.s));
    /* 11 of the 12 generated tokens were evaluated (the last one waits). */
    CHECK(st1.cached_tokens == st1.prompt_tokens + 11, "cache holds prompt + 11: %zu", st1.cached_tokens);

    char *r2 = turn(f.s, "Tell me more", &end, NULL);
    nuri_chat_stats st2 = nuri_chat_session_stats(f.s);
    CHECK(st2.reused_tokens == st1.cached_tokens,
          "second turn reuses the whole cache: %zu of %zu", st2.reused_tokens, st1.cached_tokens);
    CHECK(st2.evaluated_tokens == st2.prompt_tokens - st2.reused_tokens &&
              st2.evaluated_tokens < st2.prompt_tokens / 2,
          "second turn evaluates only the new tokens: %zu of %zu", st2.evaluated_tokens, st2.prompt_tokens);
    CHECK(st2.total_evaluated == st1.total_evaluated + (st2.cached_tokens - st2.reused_tokens),
          "every token is evaluated once: %llu total, %llu before, %zu cached, %zu reused",
          (unsigned long long)st2.total_evaluated, (unsigned long long)st1.total_evaluated,
          st2.cached_tokens, st2.reused_tokens);

    /* The same conversation from scratch gives the same greedy reply. */
    fixture g;
    if (fixture_open(&g, "mistral", NULL, 0, 12, false)) {
        nuri_error err;
        nuri_chat_session_add_message(g.s, "user", "Hello there", 11, &err);
        nuri_chat_session_add_message(g.s, "assistant", r1, strlen(r1), &err);
        char *fresh = turn(g.s, "Tell me more", NULL, NULL);
        nuri_chat_stats sg = nuri_chat_session_stats(g.s);
        CHECK(sg.reused_tokens == 0 && sg.prompt_tokens == st2.prompt_tokens,
              "fresh session evaluates all %zu tokens (%zu)", st2.prompt_tokens, sg.evaluated_tokens);
        CHECK(fresh && r2 && strcmp(fresh, r2) == 0, "cached and fresh replies agree:\n'%s'\n'%s'",
              r2 ? r2 : "", fresh ? fresh : "");
        free(fresh);
    }
    fixture_close(&g);

    /* /clear: the conversation and the cache are gone. */
    nuri_chat_session_clear(f.s);
    CHECK(nuri_chat_session_n_messages(f.s) == 0 && nuri_chat_session_stats(f.s).cached_tokens == 0,
          "clear forgets everything");
    char *r3 = turn(f.s, "Hello there", NULL, NULL);
    nuri_chat_stats st3 = nuri_chat_session_stats(f.s);
    CHECK(st3.reused_tokens == 0 && r3 && r1 && strcmp(r3, r1) == 0,
          "after clear the first turn repeats exactly: '%s' vs '%s'", r3 ? r3 : "", r1 ? r1 : "");
    free(r1);
    free(r2);
    free(r3);

    /* Stepping with no reply in progress is an error, not a crash. */
    const char *text;
    size_t n;
    nuri_error err;
    nuri_chat_session_clear(f.s);
    CHECK(nuri_chat_session_step(f.s, &text, &n, &end, &err) == NURI_ERR_INVALID_ARG,
          "step before prepare fails cleanly");
    fixture_close(&f);
}

/* Two conversations on two sequences of one context, stepped in turns,
 * give the replies each gives alone. */
static void test_session_two_sequences(void) {
    fixture alone;
    char *want[2] = {NULL, NULL};
    const char *msgs[2] = {"Hello there", "Tell me about machines"};
    if (fixture_open(&alone, "mistral", NULL, 0, 10, false)) {
        for (int i = 0; i < 2; i++) {
            nuri_chat_session_clear(alone.s);
            want[i] = turn(alone.s, msgs[i], NULL, NULL);
        }
    }
    fixture_close(&alone);

    nuri_model *model = NULL;
    nuri_context *ctx = NULL;
    nuri_chat_template *tpl = NULL;
    nuri_chat_session *s[2] = {NULL, NULL};
    nuri_error err;
    nuri_context_params cp = nuri_context_default_params();
    cp.n_seq = 2;
    cp.n_threads = 1;
    bool ok = nuri_model_load(model_path, NULL, &model, &err) == NURI_OK &&
              nuri_context_create(model, &cp, &ctx, &err) == NURI_OK &&
              nuri_chat_template_builtin("mistral", &tpl, &err) == NURI_OK;
    for (int i = 0; ok && i < 2; i++) {
        nuri_chat_session_params p = {.model = model, .ctx = ctx, .seq = i, .tpl = tpl,
                                      .bos_token = "<s>", .eos_token = "</s>",
                                      .sampling = nuri_sampler_default_params(), .n_predict = 10};
        ok = nuri_chat_session_create(&p, &s[i], &err) == NURI_OK &&
             nuri_chat_session_add_message(s[i], "user", msgs[i], strlen(msgs[i]), &err) == NURI_OK &&
             nuri_chat_session_prepare(s[i], &err) == NURI_OK;
    }
    CHECK(ok, "two sessions on one context: %s", err.message);
    char got[2][4096] = {"", ""};
    size_t len[2] = {0, 0};
    nuri_chat_end end[2] = {NURI_CHAT_GENERATING, NURI_CHAT_GENERATING};
    for (int steps = 0; ok && steps < 100 && (end[0] == NURI_CHAT_GENERATING || end[1] == NURI_CHAT_GENERATING); steps++) {
        for (int i = 0; i < 2; i++) {
            const char *text;
            size_t n;
            if (end[i] != NURI_CHAT_GENERATING) continue;
            if (nuri_chat_session_step(s[i], &text, &n, &end[i], &err) != NURI_OK) ok = false;
            else if (len[i] + n < sizeof got[i]) {
                memcpy(got[i] + len[i], text, n);
                len[i] += n;
            }
        }
    }
    for (int i = 0; ok && i < 2; i++) {
        const char *text;
        size_t n;
        if (nuri_chat_session_end_reply(s[i], &text, &n, &err) == NURI_OK && len[i] + n < sizeof got[i]) {
            memcpy(got[i] + len[i], text, n);
            len[i] += n;
        }
        got[i][len[i]] = '\0';
        CHECK(want[i] && strcmp(got[i], want[i]) == 0, "sequence %d, interleaved: '%s', alone: '%s'", i,
              got[i], want[i] ? want[i] : "");
    }
    nuri_chat_session_params bad = {.model = model, .ctx = ctx, .seq = 2, .tpl = tpl};
    nuri_chat_session *none = NULL;
    CHECK(!ok || (nuri_chat_session_create(&bad, &none, &err) == NURI_ERR_INVALID_ARG && none == NULL),
          "a sequence outside the context is refused");
    for (int i = 0; i < 2; i++) {
        nuri_chat_session_free(s[i]);
        free(want[i]);
    }
    nuri_chat_template_free(tpl);
    nuri_context_free(ctx);
    nuri_model_free(model);
}

static void test_session_context_full(void) {
    fixture f;
    if (fixture_open(&f, "mistral", NULL, 40, 0, true)) {
        nuri_status st;
        nuri_error err;
        char *r = turn(f.s, "Hello there, how are you doing today? Tell me a long story about machines.",
                       NULL, &st);
        CHECK(st == NURI_ERR_CONTEXT_FULL && r == NULL, "a prompt longer than the context fails (%d)", (int)st);
        CHECK(nuri_chat_session_stats(f.s).cached_tokens == 0, "nothing was evaluated");
        nuri_chat_session_pop_message(f.s);
        nuri_chat_session_add_message(f.s, "user", "x", 1, &err);
        st = nuri_chat_session_prepare(f.s, &err);
        CHECK(st == NURI_OK, "a short prompt fits: %s", err.message);
        /* Filling the context with generation ends the reply, nothing is dropped. */
        nuri_chat_end end = NURI_CHAT_GENERATING;
        const char *text;
        size_t n;
        int steps = 0;
        while (end == NURI_CHAT_GENERATING && steps++ < 1000) nuri_chat_session_step(f.s, &text, &n, &end, &err);
        CHECK(end == NURI_CHAT_CONTEXT_FULL && nuri_chat_session_stats(f.s).cached_tokens == 40,
              "generation stops when the context is full (end %d, %zu cached)", (int)end,
              nuri_chat_session_stats(f.s).cached_tokens);
        nuri_chat_session_end_reply(f.s, &text, &n, &err);
        nuri_chat_session_add_message(f.s, "user", "more", 4, &err);
        st = nuri_chat_session_prepare(f.s, &err);
        CHECK(st == NURI_ERR_CONTEXT_FULL && strstr(err.message, "context holds 40"),
              "the next turn says the context is full: %s", err.message);
    }
    fixture_close(&f);
}

/* The template's end-of-turn text ends a reply when the model writes it. To
 * make the model write it, take a word from a greedy reply and build a
 * template whose assistant turns end with that word: the first turn's prompt
 * is the same, so the reply must stop right before the word. */
static void test_session_end_of_turn(void) {
    const struct {
        const char *name, *want;
    } known[] = {{"chatml", "<|im_end|>"}, {"llama3", "<|eot_id|>"}, {"mistral", "</s>"}, {"gemma", "<end_of_turn>"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        fixture f;
        if (fixture_open(&f, known[i].name, NULL, 0, 4, false))
            CHECK(!strcmp(nuri_chat_session_end_of_turn(f.s), known[i].want), "%s end of turn '%s'",
                  known[i].name, nuri_chat_session_end_of_turn(f.s));
        fixture_close(&f);
    }

    /* (Jinja's "{%" rules out printf formats: the word goes between two halves.) */
    const char *head = "{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]"
                       "{% else %}{{ m.content }}";
    const char *tail = "\n{% endif %}{% endfor %}";
    char source[512];
    snprintf(source, sizeof source, "%s%s%s", head, "@@never@@", tail);
    fixture f;
    char *reply = NULL;
    if (fixture_open(&f, NULL, source, 0, 48, false)) reply = turn(f.s, "Hello there", NULL, NULL);
    fixture_close(&f);
    if (!reply) return;
    /* A word (no spaces) of 4+ bytes that starts after the reply's first few bytes. */
    char word[32] = "";
    for (const char *p = reply + 3; *p && !word[0]; p++) {
        size_t n = strcspn(p, " \n\t,.");
        if (n >= 4 && n < sizeof word && p[-1] == ' ') {
            memcpy(word, p, n);
            word[n] = '\0';
        }
    }
    CHECK(word[0] != 0, "found a word in the reply '%s'", reply);
    if (word[0]) {
        snprintf(source, sizeof source, "%s%s%s", head, word, tail);
        char *stopped = NULL;
        nuri_chat_end end = NURI_CHAT_GENERATING;
        if (fixture_open(&f, NULL, source, 0, 48, false)) {
            CHECK(!strcmp(nuri_chat_session_end_of_turn(f.s), word), "end of turn is '%s'", word);
            stopped = turn(f.s, "Hello there", &end, NULL);
        }
        fixture_close(&f);
        size_t want = (size_t)(strstr(reply, word) - reply);
        CHECK(stopped && strlen(stopped) == want && !strncmp(stopped, reply, want) &&
                  end == NURI_CHAT_END_OF_TURN,
              "the reply stops before '%s': '%s' (full: '%s')", word, stopped ? stopped : "", reply);
        free(stopped);
    }
    free(reply);
}

/* ---- `nuri chat` with piped input ------------------------------------------------------- */

/* Finds "[prompt: P tokens, R reused from the cache, E evaluated" number n (0-based). */
static bool prompt_stats(const char *err, int n, long *p, long *r, long *e) {
    const char *at = err;
    for (int i = 0; i <= n; i++) {
        at = strstr(at, "[prompt: ");
        if (!at) return false;
        if (i < n) at++;
    }
    return sscanf(at, "[prompt: %ld tokens, %ld reused from the cache, %ld evaluated", p, r, e) == 3;
}

static bool reply_context(const char *err, int n, long *cached) {
    const char *at = err;
    for (int i = 0; i <= n; i++) {
        at = strstr(at, "[reply: ");
        if (!at) return false;
        if (i < n) at++;
    }
    const char *c = strstr(at, "context: ");
    return c && sscanf(c, "context: %ld", cached) == 1;
}

static void test_cli_turns(void) {
    const char *argv[] = {bin, "chat", "-m", model_path, "--temp", "0", "-n", "12", "--chat-template",
                          "mistral", "-v", "-t", "1", NULL};
    const char *input = "Hello there\nTell me more\n";
    char *out, *err;
    int rc = test_run(argv, input, strlen(input), &out, &err);
    CHECK(rc == 0, "two turns then EOF: exit %d (%s)", rc, err);
    CHECK(count_lines(out) == 2, "two replies, one line each: '%s'", out);
    char *nl = strchr(out, '\n');
    CHECK(nl && nl != out && nl[1] != '\n' && nl[1] != 0, "both replies have text: '%s'", out);
    long p1, r1, e1, p2, r2, e2, cached1;
    bool got = prompt_stats(err, 0, &p1, &r1, &e1) && prompt_stats(err, 1, &p2, &r2, &e2) &&
               reply_context(err, 0, &cached1);
    CHECK(got, "verbose stats on stderr: %s", err);
    if (got) {
        CHECK(r1 == 0 && e1 == p1, "turn 1 evaluates its %ld tokens", p1);
        CHECK(r2 == cached1 && e2 == p2 - r2 && e2 < p2 / 2,
              "turn 2 reuses the %ld cached tokens and evaluates only %ld new of %ld", cached1, e2, p2);
    }
    CHECK(strstr(err, "warning") == NULL, "no warning with an explicit template: %s", err);
    free(out);
    free(err);

    /* /clear forgets the conversation: the same message gets the same reply,
     * evaluated from scratch. /exit ends the session before later lines. */
    const char *input2 = "Hello there\n/clear\nHello there\n/exit\nNever sent\n";
    rc = test_run(argv, input2, strlen(input2), &out, &err);
    CHECK(rc == 0, "/clear, /exit: exit %d", rc);
    CHECK(strstr(err, "(conversation cleared)") != NULL, "clear is acknowledged: %s", err);
    CHECK(count_lines(out) == 2, "two replies, none after /exit: '%s'", out);
    nl = strchr(out, '\n');
    CHECK(nl && strncmp(out, nl + 1, (size_t)(nl - out) + 1) == 0, "same reply after /clear: '%s'", out);
    got = prompt_stats(err, 1, &p2, &r2, &e2);
    CHECK(got && r2 == 0 && e2 == p2, "after /clear nothing is reused: %s", err);
    free(out);
    free(err);

    /* A model without a chat template falls back to a built-in, with a warning. */
    const char *argv_fallback[] = {bin, "chat", "-m", model_path, "--temp", "0", "-n", "4", NULL};
    const char *input3 = "Hi\n/frob\n";
    rc = test_run(argv_fallback, input3, strlen(input3), &out, &err);
    CHECK(rc == 0, "fallback template: exit %d", rc);
    CHECK(strstr(err, "warning") && strstr(err, "chatml"), "fallback warning: %s", err);
    CHECK(strstr(err, "unknown command /frob"), "unknown slash command is reported: %s", err);
    free(out);
    free(err);

    /* Empty input: EOF at once, exit 0, nothing printed on stdout. */
    rc = test_run(argv, "\n  \n", 4, &out, &err);
    CHECK(rc == 0 && out[0] == 0, "blank lines then EOF: exit %d, out '%s'", rc, out);
    free(out);
    free(err);
}

static void test_cli_context_full(void) {
    /* The prompt does not fit: say so, offer /clear, keep running. */
    const char *argv[] = {bin, "chat", "-m", model_path, "--temp", "0", "-n", "8", "--chat-template",
                          "mistral", "-c", "40", NULL};
    const char *input = "Hello there, how are you doing today? Tell me a long story about machines.\nHi\n";
    char *out, *err;
    int rc = test_run(argv, input, strlen(input), &out, &err);
    CHECK(rc == 0, "overflowing prompt: exit %d", rc);
    CHECK(strstr(err, "context is full") && strstr(err, "/clear") && strstr(err, "holds 40"),
          "context-full message offers /clear: %s", err);
    CHECK(count_lines(out) == 1, "the short message still gets a reply: '%s'", out);
    free(out);
    free(err);

    /* The reply fills the context: it is cut with a message. */
    const char *argv2[] = {bin, "chat", "-m", model_path, "--temp", "0", "--ignore-eos", "--chat-template",
                           "mistral", "-c", "48", NULL};
    rc = test_run(argv2, "Hi\nAgain\n", 9, &out, &err);
    CHECK(rc == 0, "reply fills the context: exit %d", rc);
    CHECK(strstr(err, "reply was cut") && strstr(err, "/clear"), "cut reply message: %s", err);
    CHECK(count_substr(err, "context is full") == 2, "the next turn is refused too: %s", err);
    free(out);
    free(err);
}

static void test_cli_errors(void) {
    struct {
        const char *what;
        const char *argv[12];
    } cases[] = {
        {"no model", {bin, "chat", NULL}},
        {"missing model file", {bin, "chat", "-m", "/nonexistent/model.gguf", NULL}},
        {"unknown option", {bin, "chat", "-m", model_path, "--frobnicate", NULL}},
        {"bad number", {bin, "chat", "-m", model_path, "--temp", "hot", NULL}},
        {"missing value", {bin, "chat", "-m", model_path, "--system", NULL}},
        {"unknown template", {bin, "chat", "-m", model_path, "--chat-template", "nosuch", NULL}},
        {"zero tokens per reply", {bin, "chat", "-m", model_path, "-n", "0", NULL}},
        {"bad kv type", {bin, "chat", "-m", model_path, "--kv-type", "q4", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = test_run(cases[i].argv, "Hi\n", 3, &out, &err);
        CHECK(rc == 1, "%s: exit %d (want 1)", cases[i].what, rc);
        CHECK(count_lines(err) == 1 && strncmp(err, "nuri: ", 6) == 0, "%s: one error line, got '%s'",
              cases[i].what, err);
        CHECK(out[0] == 0, "%s: nothing on stdout: '%s'", cases[i].what, out);
        free(out);
        free(err);
    }
    char *out, *err;
    const char *help[] = {bin, "chat", "--help", NULL};
    CHECK(test_run(help, NULL, 0, &out, &err) == 0 && strstr(out, "usage: nuri chat"), "chat --help");
    free(out);
    free(err);
}

/* ---- A real terminal, through tmux --------------------------------------------------------- */

static char tmux_socket[4096]; /* in the test's temporary folder, removed at the end */
static const char *tmux_target = "chat"; /* the session the screen is read from */

static int tmux(const char *fmt, const char *arg) {
    char cmd[16384], args[8000];
    snprintf(args, sizeof args, fmt, arg);
    snprintf(cmd, sizeof cmd, "tmux -S '%s' -f /dev/null %s >/dev/null 2>&1", tmux_socket, args);
    return system(cmd);
}

/* The whole scrollback of the pane (malloc'ed). */
static char *tmux_screen(void) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "tmux -S '%s' capture-pane -p -J -S -2000 -t %s 2>/dev/null", tmux_socket,
             tmux_target);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 20, len = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + len, 1, cap - len, p)) > 0) len += got;
    pclose(p);
    if (buf) buf[len] = '\0';
    return buf;
}

/* Waits up to timeout_s for text to appear on the screen `times` times. */
static bool tmux_wait_for(const char *text, int times, double timeout_s) {
    for (double waited = 0; waited < timeout_s; waited += 0.05) {
        char *screen = tmux_screen();
        bool found = screen && count_substr(screen, text) >= times;
        free(screen);
        if (found) return true;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    return false;
}

/* Waits until the last non-blank line of the screen is the bare prompt, so
 * the program is reading a line (libedit draws the prompt when it starts). */
static bool tmux_wait_prompt(double timeout_s) {
    for (double waited = 0; waited < timeout_s; waited += 0.05) {
        char *screen = tmux_screen();
        bool found = false;
        if (screen) {
            size_t n = strlen(screen);
            while (n > 0 && (screen[n - 1] == '\n' || screen[n - 1] == ' ')) n--;
            size_t start = n;
            while (start > 0 && screen[start - 1] != '\n') start--;
            found = n - start == 1 && screen[start] == '>';
        }
        free(screen);
        if (found) return true;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    return false;
}

static void test_terminal(void) {
    if (system("command -v tmux >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: tmux is not installed; the terminal checks did not run\n");
        return;
    }
    snprintf(tmux_socket, sizeof tmux_socket, "%s", test_tmp_path("tmux.sock"));
    char cwd[2048], cmd[8192];
    if (!getcwd(cwd, sizeof cwd)) return;
    /* A larger model and a long context so that a reply lasts long enough to interrupt. */
    snprintf(cmd, sizeof cmd,
             "new-session -d -s chat -x 200 -y 50 -c '%s' \"'%s' chat -m '%s' --temp 0 --ignore-eos -c 4096 -t 1 -v;"
             " echo EXIT=\\$?; sleep 60\"",
             cwd, bin, mini_path);
    if (tmux("%s", cmd) != 0) {
        fprintf(stderr, "SKIP: tmux could not start a session\n");
        return;
    }
    CHECK(tmux_wait_prompt(30), "the prompt appears");

    /* Line editing: "/clxar", two steps left, delete the x, type e: "/clear". */
    tmux("send-keys -t chat /clxar Left Left BSpace e Enter", NULL);
    CHECK(tmux_wait_for("(conversation cleared)", 1, 10), "an edited line is read as edited");
    /* History: Up brings "/clear" back. */
    tmux("send-keys -t chat Up Enter", NULL);
    CHECK(tmux_wait_for("(conversation cleared)", 2, 10), "Up recalls the last line");

    /* Ctrl-C stops a reply as soon as it streams, and the program goes on. */
    tmux("send-keys -t chat Hello Enter", NULL);
    bool streaming = tmux_wait_for("evaluated", 1, 30);
    CHECK(streaming, "the reply starts");
    tmux("send-keys -t chat C-c", NULL);
    CHECK(tmux_wait_for("[stopped]", 1, 30), "Ctrl-C stops the reply");
    char *screen = tmux_screen();
    CHECK(screen && !strstr(screen, "context is full"), "the reply was stopped before the context filled");
    long tokens = -1;
    const char *at = screen ? strstr(screen, "[reply: ") : NULL;
    if (at) sscanf(at, "[reply: %ld", &tokens);
    CHECK(tokens > 0 && tokens < 4000, "stopped after %ld tokens", tokens);
    free(screen);

    /* Still running: a Ctrl-C at the prompt prints a hint, a second one quits with status 0. */
    CHECK(tmux_wait_prompt(10), "a new prompt after the stopped reply");
    tmux("send-keys -t chat C-c", NULL);
    CHECK(tmux_wait_for("Ctrl-C again", 1, 10), "Ctrl-C at the prompt explains how to quit");
    CHECK(tmux_wait_prompt(10), "and shows the prompt again");
    tmux("send-keys -t chat C-c", NULL);
    CHECK(tmux_wait_for("EXIT=0", 1, 10), "a second Ctrl-C quits with status 0");

    /* Ctrl-D at the prompt quits with status 0. */
    snprintf(cmd, sizeof cmd,
             "new-session -d -s chat2 -x 200 -y 50 -c '%s' \"'%s' chat -m '%s' --temp 0 -n 8;"
             " echo EXIT=\\$?; sleep 60\"",
             cwd, bin, model_path);
    tmux_target = "chat2";
    CHECK(tmux("%s", cmd) == 0, "tmux starts a second session");
    CHECK(tmux_wait_prompt(30), "the prompt appears");
    tmux("send-keys -t chat2 C-d", NULL);
    CHECK(tmux_wait_for("EXIT=0", 1, 10), "Ctrl-D quits with status 0");
    tmux("kill-server", NULL);
}

int main(void) {
    bin = test_nuri_bin();
    if (!test_shared_path("models")) return test_finish();
    snprintf(model_path, sizeof model_path, "%s", test_shared_path("models/aidreams260K.gguf"));
    snprintf(mini_path, sizeof mini_path, "%s", test_shared_path("golden/quant/mini-F32.gguf"));
    test_session_reuse();
    test_session_two_sequences();
    test_session_context_full();
    test_session_end_of_turn();
    if (bin) {
        test_cli_turns();
        test_cli_context_full();
        test_cli_errors();
        test_terminal();
    }
    return test_finish();
}
