/* test_server.c — `nuri serve` driven over real sockets.
 *
 * Starts the server ($NURI_BIN) on a free loopback port with the shared tiny
 * model and checks, with a small HTTP/1.0 client written here (it only
 * writes a fixed request and reads the reply until the server closes):
 *   - replies against libnuri run in this process (greedy text, tokens,
 *     template rendering), OpenAI's reply and chunk formats, usage counts;
 *   - every bad input gets its 4xx with a JSON error, and the server keeps
 *     serving; the API key; 404/405/413;
 *   - continuous batching: 8 concurrent streams on 4 slots give exactly the
 *     text each request gives alone; slots really share batches, and a new
 *     prompt is evaluated while other slots keep generating;
 *   - a client that disconnects frees its slot at once; 200 concurrent
 *     connections are answered 200 or 503 (queue full), never dropped;
 *   - the official `openai` npm client (tests/server/openai.test.mjs);
 *   - SIGTERM/SIGINT end running streams and exit 0 (ASan checks leaks).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chat/template.h"
#include "nuri.h"
#include "support/test.h"

static const char *bin;
static char model_path[4096], gemma_template[4096];
static const char *api_key = "test-key-123";
static nuri_model *model; /* the same model, in this process, as the reference */

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- The server process ---------------------------------------------------- */

typedef struct {
    pid_t pid;
    int port;
    char log[4096];
} server_proc;

/* Starts `nuri serve -m MODEL --port 0 ARGS...` and waits for its
 * "listening on" line (stderr goes to a file, read for the port). */
static bool server_start(server_proc *s, const char *name, const char *const *args) {
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s", test_tmp_path(name));
    const char *argv[40] = {bin, "serve", "-m", model_path, "--port", "0", "-t", "1"};
    int n = 8;
    for (int i = 0; args[i] && n < 38; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null_fd = open("/dev/null", O_RDWR);
        if (fd < 0 || null_fd < 0) _exit(127);
        dup2(null_fd, 0);
        dup2(null_fd, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (double t0 = now_sec(); now_sec() - t0 < 30;) {
        char *text = test_read_file(s->log, NULL);
        const char *at = text ? strstr(text, "listening on http://127.0.0.1:") : NULL;
        if (at) s->port = atoi(at + strlen("listening on http://127.0.0.1:"));
        free(text);
        if (s->port > 0) return true;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            return false;
        }
        sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    s->pid = 0;
    return false;
}

/* Sends sig and waits (up to 30 s) for the exit; returns the exit status,
 * 128+signal when killed, -1 when it had to be killed. */
static int server_stop(server_proc *s, int sig, double *seconds) {
    if (!s->pid) return -1;
    double t0 = now_sec();
    kill(s->pid, sig);
    int status = 0;
    while (waitpid(s->pid, &status, WNOHANG) == 0) {
        if (now_sec() - t0 > 30) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    if (seconds) *seconds = now_sec() - t0;
    s->pid = 0;
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* ---- A tiny HTTP/1.0 client --------------------------------------------------- */

static int http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* Writes one request. auth: add the API key header. */
static bool http_send(int fd, const char *method, const char *path, const char *body, size_t body_len,
                      bool auth, const char *extra_headers) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s%s%s%s\r\n",
                     method, path, body ? body_len : 0, auth ? "Authorization: Bearer " : "",
                     auth ? api_key : "", auth ? "\r\n" : "", extra_headers ? extra_headers : "");
    return send_all(fd, head, (size_t)n) && (!body || send_all(fd, body, body_len));
}

typedef struct {
    int status; /* 0 when no reply came */
    char *raw;  /* head + body, NUL-terminated */
    const char *body;
    json_t *json; /* the body parsed, when it is JSON */
} http_reply;

/* Reads until the server closes the connection. */
static http_reply http_read(int fd) {
    http_reply r = {0};
    size_t cap = 4096, len = 0;
    r.raw = malloc(cap);
    for (;;) {
        if (len + 4096 + 1 > cap) r.raw = realloc(r.raw, cap *= 2);
        ssize_t n = recv(fd, r.raw + len, 4096, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    r.raw[len] = 0;
    if (len > 12 && !strncmp(r.raw, "HTTP/1.", 7)) r.status = atoi(r.raw + 9);
    char *sep = strstr(r.raw, "\r\n\r\n");
    r.body = sep ? sep + 4 : "";
    r.json = json_loads(r.body, 0, NULL);
    return r;
}

static void reply_free(http_reply *r) {
    free(r->raw);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static http_reply http_ex(int port, const char *method, const char *path, const char *body, bool auth,
                          const char *extra_headers) {
    http_reply r = {0};
    int fd = http_connect(port);
    if (fd < 0) {
        r.raw = calloc(1, 1);
        r.body = r.raw;
        return r;
    }
    http_send(fd, method, path, body, body ? strlen(body) : 0, auth, extra_headers);
    r = http_read(fd);
    close(fd);
    return r;
}

static http_reply http(int port, const char *method, const char *path, const char *body) {
    return http_ex(port, method, path, body, true, NULL);
}

/* The reply is an OpenAI error object with this status. */
static bool is_error(const http_reply *r, int status) {
    json_t *e = json_object_get(r->json, "error");
    return r->status == status && json_is_string(json_object_get(e, "message")) &&
           json_is_string(json_object_get(e, "type")) &&
           json_integer_value(json_object_get(e, "code")) == status;
}

/* A JSON string's value, or "" for anything else. */
static const char *jstr(json_t *j) { return json_is_string(j) ? json_string_value(j) : ""; }

static const char *error_message(const http_reply *r) {
    const char *m = json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    return m ? m : "";
}

/* What a stream of server-sent events held. */
typedef struct {
    char *text;
    const char *finish; /* static copy of the last finish_reason */
    bool done, error, role, bad_event;
    int events;
    char id[64];
} sse_result;

static sse_result parse_sse(const char *body, bool chat) {
    sse_result s = {0};
    size_t cap = 256, len = 0;
    s.text = calloc(cap, 1);
    for (const char *p = body; (p = strstr(p, "data: ")) != NULL;) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        if (!end) {
            s.bad_event = true;
            break;
        }
        if (!strncmp(p, "[DONE]", 6)) {
            s.done = true;
            p = end;
            continue;
        }
        s.events++;
        json_t *j = json_loadb(p, (size_t)(end - p), 0, NULL);
        p = end;
        if (!j) {
            s.bad_event = true;
            continue;
        }
        if (json_object_get(j, "error")) s.error = true;
        const char *id = json_string_value(json_object_get(j, "id"));
        if (id && !s.id[0]) snprintf(s.id, sizeof s.id, "%s", id);
        json_t *c = json_array_get(json_object_get(j, "choices"), 0);
        json_t *piece = chat ? json_object_get(json_object_get(c, "delta"), "content") : json_object_get(c, "text");
        if (chat && json_object_get(json_object_get(c, "delta"), "role")) s.role = true;
        if (json_is_string(piece)) {
            size_t n = json_string_length(piece);
            if (len + n + 1 > cap) s.text = realloc(s.text, cap = 2 * (len + n + 1));
            memcpy(s.text + len, json_string_value(piece), n);
            s.text[len += n] = 0;
        }
        const char *f = json_string_value(json_object_get(c, "finish_reason"));
        if (f) s.finish = !strcmp(f, "stop") ? "stop" : !strcmp(f, "length") ? "length" : "other";
        json_decref(j);
    }
    return s;
}

/* ---- References computed in this process --------------------------------------- */

/* Greedy continuation of prompt (tokenized with BOS and special tokens),
 * up to n tokens or an end-of-generation token. */
static char *reference_greedy(const char *prompt, int n) {
    nuri_error err;
    nuri_context *ctx = NULL;
    nuri_token *toks = NULL;
    size_t n_toks = 0;
    char *out = calloc(1, 8192);
    size_t len = 0;
    if (nuri_context_create(model, NULL, &ctx, &err) != NURI_OK ||
        nuri_tokenize(model, prompt, strlen(prompt), NURI_TOKENIZE_ADD_BOS | NURI_TOKENIZE_PARSE_SPECIAL, &toks,
                      &n_toks, &err) != NURI_OK ||
        nuri_eval(ctx, toks, NULL, n_toks, false, &err) != NURI_OK) {
        nuri_free(toks);
        nuri_context_free(ctx);
        return out;
    }
    nuri_sampler *greedy = nuri_sampler_create(NULL);
    nuri_detokenizer detok = {{0}, 0};
    for (int i = 0; i < n; i++) {
        nuri_token t = nuri_sampler_sample(greedy, nuri_logits(ctx), nuri_model_n_vocab(model));
        if (nuri_token_is_eog(model, t)) break;
        len += nuri_detokenize_push(model, &detok, t, out + len, 8192 - len - 1);
        if (i + 1 < n && nuri_eval(ctx, &t, NULL, 1, false, &err) != NURI_OK) break;
    }
    len += nuri_detokenize_flush(&detok, out + len, 8192 - len - 1);
    out[len] = 0;
    nuri_sampler_free(greedy);
    nuri_free(toks);
    nuri_context_free(ctx);
    return out;
}

/* A completion request body (greedy). */
static char *completion_body(const char *prompt, int max_tokens, bool stream, const char *extra) {
    json_t *j = json_pack("{s:s, s:i, s:i, s:b}", "prompt", prompt, "max_tokens", max_tokens, "temperature", 0,
                          "stream", stream);
    if (extra) {
        json_t *e = json_loads(extra, 0, NULL);
        json_object_update(j, e);
        json_decref(e);
    }
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static const char *completion_text(const http_reply *r) {
    const char *t = json_string_value(json_object_get(json_array_get(json_object_get(r->json, "choices"), 0), "text"));
    return t ? t : "";
}

/* ---- Basic endpoints and formats ------------------------------------------------- */

static void check_basics(int port) {
    http_reply r = http_ex(port, "GET", "/health", NULL, false, NULL);
    CHECK(r.status == 200 && !strcmp(jstr(json_object_get(r.json, "status")), "ok"),
          "/health without a key: %d %s", r.status, r.body);
    reply_free(&r);

    r = http_ex(port, "GET", "/v1/models", NULL, false, NULL);
    CHECK(is_error(&r, 401), "no key: 401, got %d %s", r.status, r.body);
    reply_free(&r);
    r = http_ex(port, "GET", "/v1/models", NULL, false, "Authorization: Bearer wrong\r\n");
    CHECK(is_error(&r, 401), "wrong key: 401, got %d", r.status);
    reply_free(&r);
    r = http_ex(port, "POST", "/v1/completions", "{\"prompt\":\"x\"}", false, "Authorization: Bearer test-key-12\r\n");
    CHECK(is_error(&r, 401), "key prefix: 401, got %d", r.status);
    reply_free(&r);
    r = http(port, "GET", "/v1/models", NULL);
    json_t *m = json_array_get(json_object_get(r.json, "data"), 0);
    CHECK(r.status == 200 && !strcmp(jstr(json_object_get(r.json, "object")), "list") &&
              !strcmp(jstr(json_object_get(m, "id")), "aidreams260K.gguf") &&
              !strcmp(jstr(json_object_get(m, "object")), "model"),
          "/v1/models: %d %s", r.status, r.body);
    reply_free(&r);

    /* Greedy completion: the text libnuri generates in this process. */
    char *ref = reference_greedy("The machine", 24);
    char *body = completion_body("The machine", 24, false, NULL);
    r = http(port, "POST", "/v1/completions", body);
    free(body);
    json_t *usage = json_object_get(r.json, "usage");
    json_t *c0 = json_array_get(json_object_get(r.json, "choices"), 0);
    CHECK(r.status == 200, "completion status %d %s", r.status, r.body);
    CHECK(strlen(ref) > 10 && !strcmp(completion_text(&r), ref), "completion text:\n'%s'\nexpected\n'%s'",
          completion_text(&r), ref);
    CHECK(!strncmp(jstr(json_object_get(r.json, "id")), "cmpl-", 5) &&
              !strcmp(jstr(json_object_get(r.json, "object")), "text_completion") &&
              json_is_integer(json_object_get(r.json, "created")) &&
              json_is_string(json_object_get(r.json, "model")),
          "completion fields: %s", r.body);
    CHECK(!strcmp(jstr(json_object_get(c0, "finish_reason")), "length"), "finish_reason length");
    nuri_token *toks;
    size_t n_toks;
    nuri_error err;
    nuri_tokenize(model, "The machine", 11, NURI_TOKENIZE_ADD_BOS | NURI_TOKENIZE_PARSE_SPECIAL, &toks, &n_toks, &err);
    CHECK(json_integer_value(json_object_get(usage, "prompt_tokens")) == (json_int_t)n_toks &&
              json_integer_value(json_object_get(usage, "completion_tokens")) == 24 &&
              json_integer_value(json_object_get(usage, "total_tokens")) == (json_int_t)n_toks + 24,
          "usage: %s", r.body);
    reply_free(&r);

    /* The same request streamed: same text, chunks in OpenAI's format. */
    body = completion_body("The machine", 24, true, NULL);
    r = http(port, "POST", "/v1/completions", body);
    free(body);
    sse_result s = parse_sse(r.body, false);
    CHECK(r.status == 200 && strstr(r.raw, "Content-Type: text/event-stream"), "stream headers: %.200s", r.raw);
    CHECK(!strcmp(s.text, ref), "streamed text '%s'", s.text);
    CHECK(s.done && !s.bad_event && !s.error && s.events >= 2 && s.finish && !strcmp(s.finish, "length") &&
              !strncmp(s.id, "cmpl-", 5),
          "stream events: done %d bad %d events %d finish %s", s.done, s.bad_event, s.events, s.finish);
    size_t body_len = strlen(r.body);
    CHECK(body_len >= 14 && !strcmp(r.body + body_len - 14, "data: [DONE]\n\n"), "stream ends with [DONE]");
    free(s.text);
    reply_free(&r);

    /* Stop strings, also one cut across tokens: the text ends before it. */
    size_t half = strlen(ref) / 2;
    char stop[8];
    snprintf(stop, sizeof stop, "%.6s", ref + half);
    char extra[128];
    snprintf(extra, sizeof extra, "{\"stop\": [\"zzzz\", \"%s\"]}", stop);
    size_t keep = (size_t)(strstr(ref, stop) - ref);
    for (int streamed = 0; streamed < 2; streamed++) {
        body = completion_body("The machine", 24, streamed, extra);
        r = http(port, "POST", "/v1/completions", body);
        free(body);
        const char *text = completion_text(&r), *finish = NULL;
        s = parse_sse(r.body, false);
        if (streamed) text = s.text, finish = s.finish;
        else finish = json_string_value(json_object_get(json_array_get(json_object_get(r.json, "choices"), 0), "finish_reason"));
        CHECK(strlen(text) == keep && !strncmp(text, ref, keep) && finish && !strcmp(finish, "stop"),
              "stop '%s' (stream %d): '%s' finish %s", stop, streamed, text, finish ? finish : "-");
        free(s.text);
        reply_free(&r);
    }
    free(ref);

    /* Chat: the rendered conversation run as a completion gives the same
     * text (the built-in chatml template emits no BOS, so one is added). */
    const char *chat = "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":"
                       "\"The machine\"}],\"max_tokens\":16,\"temperature\":0}";
    r = http(port, "POST", "/apply-template", chat);
    const char *prompt = json_string_value(json_object_get(r.json, "prompt"));
    nuri_chat_template *tpl;
    char warning[256];
    nuri_chat_template_select(NULL, 0, "chatml", &tpl, warning, sizeof warning, &err);
    json_t *chat_json = json_loads(chat, 0, NULL);
    json_t *msgs = json_object_get(chat_json, "messages");
    nuri_chat_params cp = {.messages = msgs, .add_generation_prompt = true, .bos_token = "<s>", .eos_token = "</s>"};
    char *rendered = NULL;
    size_t rendered_len;
    nuri_chat_template_render(tpl, &cp, &rendered, &rendered_len, &err);
    CHECK(r.status == 200 && prompt && rendered && !strcmp(prompt, rendered), "/apply-template: %s", r.body);
    char *chat_ref = reference_greedy(prompt ? prompt : "", 16);
    reply_free(&r);
    r = http(port, "POST", "/v1/chat/completions", chat);
    json_t *msg = json_object_get(json_array_get(json_object_get(r.json, "choices"), 0), "message");
    CHECK(r.status == 200 && !strcmp(jstr(json_object_get(msg, "role")), "assistant") &&
              !strcmp(jstr(json_object_get(msg, "content")), chat_ref) &&
              !strcmp(json_string_value(json_object_get(r.json, "object")), "chat.completion") &&
              !strncmp(jstr(json_object_get(r.json, "id")), "chatcmpl-", 9),
          "chat reply %s, expected content '%s'", r.body, chat_ref);
    reply_free(&r);
    char *stream_chat = strdup(chat);
    stream_chat[strlen(stream_chat) - 1] = 0;
    char stream_body[512];
    snprintf(stream_body, sizeof stream_body, "%s,\"stream\":true,\"stream_options\":{\"include_usage\":true}}", stream_chat);
    r = http(port, "POST", "/v1/chat/completions", stream_body);
    s = parse_sse(r.body, true);
    CHECK(!strcmp(s.text, chat_ref) && s.role && s.done && !s.bad_event && !strncmp(s.id, "chatcmpl-", 9) &&
              strstr(r.body, "\"chat.completion.chunk\"") && strstr(r.body, "\"usage\":{\"prompt_tokens\""),
          "streamed chat: '%s' role %d done %d", s.text, s.role, s.done);
    free(s.text);
    reply_free(&r);
    free(stream_chat);
    free(chat_ref);
    free(rendered);
    json_decref(chat_json);
    nuri_chat_template_free(tpl);

    /* Same seed, same text; /tokenize and /detokenize agree with libnuri. */
    const char *seeded = "{\"prompt\":\"Once\",\"max_tokens\":20,\"temperature\":1.0,\"seed\":77,\"ignore_eos\":true}";
    http_reply a = http(port, "POST", "/v1/completions", seeded), b = http(port, "POST", "/v1/completions", seeded);
    CHECK(a.status == 200 && strlen(completion_text(&a)) > 0 && !strcmp(completion_text(&a), completion_text(&b)),
          "seeded sampling repeats: '%s' vs '%s'", completion_text(&a), completion_text(&b));
    /* Penalties reach the sampler: greedy text changes with them. */
    char *plain = reference_greedy("The machine", 40);
    const char *pens[] = {"{\"frequency_penalty\": 2}", "{\"presence_penalty\": 2}", "{\"frequency_penalty\": -2}"};
    for (int i = 0; i < 3; i++) {
        char *pb = completion_body("The machine", 40, false, pens[i]);
        http_reply pr = http(port, "POST", "/v1/completions", pb);
        free(pb);
        CHECK(pr.status == 200 && strlen(completion_text(&pr)) > 0 && strcmp(completion_text(&pr), plain) != 0,
              "%s changes the greedy text: '%s'", pens[i], completion_text(&pr));
        reply_free(&pr);
    }
    free(plain);
    /* The repeated prompt is found in a slot's cache: all but its last token
     * (whose logits are needed again) are reused. */
    json_t *ub = json_object_get(b.json, "usage");
    CHECK(json_integer_value(json_object_get(json_object_get(ub, "prompt_tokens_details"), "cached_tokens")) ==
              json_integer_value(json_object_get(ub, "prompt_tokens")) - 1,
          "prefix reuse: %s", b.body);
    reply_free(&a);
    reply_free(&b);
    r = http(port, "POST", "/tokenize", "{\"content\":\"The machine\",\"add_special\":true}");
    json_t *arr = json_object_get(r.json, "tokens");
    bool same = json_array_size(arr) == n_toks;
    for (size_t i = 0; same && i < n_toks; i++) same = json_integer_value(json_array_get(arr, i)) == toks[i];
    CHECK(r.status == 200 && same, "/tokenize: %s", r.body);
    reply_free(&r);
    char detok[256] = "{\"tokens\":[";
    for (size_t i = 0; i < n_toks; i++)
        snprintf(detok + strlen(detok), sizeof detok - strlen(detok), "%s%d", i ? "," : "", (int)toks[i]);
    strcat(detok, "]}");
    r = http(port, "POST", "/detokenize", detok);
    CHECK(r.status == 200 && !strcmp(jstr(json_object_get(r.json, "content")), " The machine") ,
          "/detokenize: %s", r.body);
    reply_free(&r);
    nuri_free(toks);
}

/* ---- Bad input ----------------------------------------------------------------- */

static void check_bad_input(int port) {
    static const struct {
        const char *path, *body, *expect; /* expect: a word the message must hold */
    } cases[] = {
        {"/v1/chat/completions", "{\"messages\": [", "JSON"},
        {"/v1/chat/completions", "", "JSON"},
        {"/v1/chat/completions", "[1, 2]", "object"},
        {"/v1/chat/completions", "{}", "messages"},
        {"/v1/chat/completions", "{\"messages\": \"hi\"}", "array"},
        {"/v1/chat/completions", "{\"messages\": []}", "empty"},
        {"/v1/chat/completions", "{\"messages\": [5]}", "object"},
        {"/v1/chat/completions", "{\"messages\": [{\"content\": \"hi\"}]}", "role"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"\"}]}", "empty"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\"}]}", "missing"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 42}]}", "string"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", "wizard"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "text"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 0}", "max_tokens"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": -3}", "max_tokens"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 1000000000000}", "max_tokens"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": \"10\"}", "integer"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 1.5}", "integer"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": \"warm\"}", "temperature"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": 7}", "temperature"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_p\": 2}", "top_p"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"seed\": \"x\"}", "seed"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": 3}", "stop"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": [\"a\", 1]}", "stop"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": \"yes\"}", "stream"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"presence_penalty\": 9}", "presence_penalty"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"frequency_penalty\": []}", "frequency_penalty"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 3}", "n"},
        {"/v1/completions", "{}", "prompt"},
        {"/v1/completions", "{\"prompt\": 12}", "prompt"},
        {"/v1/completions", "{\"prompt\": [1, 2, 99999]}", "token"},
        {"/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", "one prompt"},
        {"/v1/completions", "{\"prompt\": \"hi\", \"max_tokens\": 0}", "max_tokens"},
        {"/tokenize", "{\"content\": 5}", "content"},
        {"/detokenize", "{\"tokens\": [1, -1]}", "tokens"},
        {"/detokenize", "{\"tokens\": \"1 2\"}", "tokens"},
        {"/apply-template", "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", "robot"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_reply r = http(port, "POST", cases[i].path, cases[i].body);
        CHECK(is_error(&r, 400) && strstr(error_message(&r), cases[i].expect),
              "%s %s: expected 400 mentioning '%s', got %d %s", cases[i].path, cases[i].body, cases[i].expect,
              r.status, r.body);
        reply_free(&r);
    }

    /* A prompt longer than a slot's context (256 tokens here): 400, never
     * silently truncated; max_tokens beyond what the prompt leaves: 400. */
    char *long_prompt = malloc(20000);
    strcpy(long_prompt, "{\"prompt\": \"");
    for (int i = 0; i < 400; i++) strcat(long_prompt, "the machine ");
    strcat(long_prompt, "\"}");
    http_reply r = http(port, "POST", "/v1/completions", long_prompt);
    CHECK(is_error(&r, 400) && strstr(error_message(&r), "context"), "long prompt: %d %s", r.status, r.body);
    reply_free(&r);
    free(long_prompt);
    r = http(port, "POST", "/v1/completions", "{\"prompt\": \"The machine\", \"max_tokens\": 250}");
    CHECK(is_error(&r, 400) && strstr(error_message(&r), "max_tokens"), "max_tokens over the context: %d %s",
          r.status, r.body);
    reply_free(&r);
    r = http(port, "POST", "/v1/completions", "{\"prompt\": \"The machine\", \"max_tokens\": 248, \"temperature\": 0}");
    CHECK(r.status == 200, "max_tokens that just fits: %d %s", r.status, r.body);
    reply_free(&r);

    /* Paths, methods, body size. */
    r = http(port, "GET", "/v2/nothing", NULL);
    CHECK(is_error(&r, 404), "unknown path: %d %s", r.status, r.body);
    reply_free(&r);
    r = http(port, "GET", "/v1/chat/completions", NULL);
    CHECK(is_error(&r, 405) && strstr(r.raw, "Allow: POST"), "wrong method: %d %s", r.status, r.raw);
    reply_free(&r);
    r = http(port, "DELETE", "/health", NULL);
    CHECK(is_error(&r, 405), "DELETE /health: %d", r.status);
    reply_free(&r);
    /* A chunked body (no length declared) that outgrows the limit: read
     * and dropped, then 413. */
    int cfd = http_connect(port);
    const char *chunked = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n";
    send_all(cfd, chunked, strlen(chunked));
    char chunk[8192 + 16];
    memset(chunk, 'a', sizeof chunk);
    memcpy(chunk, "2000\r\n", 6);
    memcpy(chunk + 6 + 8192, "\r\n", 2);
    for (int i = 0; i < 10; i++) send_all(cfd, chunk, 6 + 8192 + 2);
    send_all(cfd, "0\r\n\r\n", 5);
    r = http_read(cfd);
    close(cfd);
    CHECK(is_error(&r, 413), "chunked body over --max-body-size: %d %s", r.status, r.body);
    reply_free(&r);
    /* Declared too large, body never sent: refused from the headers alone. */
    int fd = http_connect(port);
    const char *head = "POST /v1/completions HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n";
    send_all(fd, head, strlen(head));
    r = http_read(fd);
    close(fd);
    CHECK(is_error(&r, 413), "declared length over the limit: %d %s", r.status, r.body);
    reply_free(&r);

    r = http(port, "GET", "/health", NULL);
    CHECK(r.status == 200, "still serving after bad input: %d", r.status);
    reply_free(&r);
}

/* ---- Continuous batching ------------------------------------------------------------ */

enum { N_PAR = 8 };
static const char *par_prompts[N_PAR] = {"The machine", "Once upon a time", "A dance of",   "Features emerge",
                                         "In the night", "Probability",      "The edges of", "Light"};

typedef struct {
    int port, index;
    char *text;
    bool done;
} par_arg;

static void *par_stream(void *p) {
    par_arg *a = p;
    char *body = completion_body(par_prompts[a->index], 20 + 6 * a->index, true, "{\"ignore_eos\": true}");
    http_reply r = http(a->port, "POST", "/v1/completions", body);
    free(body);
    sse_result s = parse_sse(r.body, false);
    a->text = s.text;
    a->done = s.done && !s.error;
    reply_free(&r);
    return NULL;
}

static json_t *last_slots;

/* A field of GET /slots (top level or under "counters"). */
static json_t *slots_counter(int port, const char *key) {
    json_t *last = last_slots;
    json_decref(last);
    http_reply r = http(port, "GET", "/slots", NULL);
    last = last_slots = json_incref(r.json);
    reply_free(&r);
    json_t *c = json_object_get(json_object_get(last, "counters"), key);
    return c ? c : json_object_get(last, key);
}

static json_int_t slots_int(int port, const char *key) { return json_integer_value(slots_counter(port, key)); }

static void check_parallel_equals_alone(int port) {
    char *alone[N_PAR];
    for (int i = 0; i < N_PAR; i++) {
        char *body = completion_body(par_prompts[i], 20 + 6 * i, false, "{\"ignore_eos\": true}");
        http_reply r = http(port, "POST", "/v1/completions", body);
        free(body);
        alone[i] = strdup(completion_text(&r));
        reply_free(&r);
        char *ref = reference_greedy(par_prompts[i], 20 + 6 * i);
        /* The reference stops at end-of-generation tokens; the server was
         * told to ignore them, so compare the common part. */
        CHECK(!strncmp(alone[i], ref, strlen(ref)) && strlen(alone[i]) > 0, "alone %d: '%s' vs libnuri '%s'", i,
              alone[i], ref);
        free(ref);
    }
    pthread_t th[N_PAR];
    par_arg args[N_PAR];
    for (int i = 0; i < N_PAR; i++) {
        args[i] = (par_arg){port, i, NULL, false};
        pthread_create(&th[i], NULL, par_stream, &args[i]);
    }
    int same = 0;
    for (int i = 0; i < N_PAR; i++) {
        pthread_join(th[i], NULL);
        bool eq = args[i].done && args[i].text && !strcmp(args[i].text, alone[i]);
        same += eq;
        CHECK(eq, "request %d streamed with 7 others differs from alone:\n'%s'\n'%s'", i,
              args[i].text ? args[i].text : "(none)", alone[i]);
        free(args[i].text);
        free(alone[i]);
    }
    CHECK(same == N_PAR, "%d of %d concurrent streams equal their lone runs", same, N_PAR);
}

/* Opens a long greedy stream and reads until its first text chunk: from then
 * on its slot is generating. Returns the socket. */
static int open_long_stream(int port, const char *prompt) {
    int fd = http_connect(port);
    char *body = completion_body(prompt, 4000, true, "{\"ignore_eos\": true}");
    http_send(fd, "POST", "/v1/completions", body, strlen(body), true, NULL);
    free(body);
    char buf[4096];
    size_t len = 0;
    while (len + 1 < sizeof buf) {
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, "\"text\":")) break;
    }
    return fd;
}

/* Four long streams fill the slots; 200 more connections are answered 503
 * beyond the queue; closing a stream frees its slot at once, and the queued
 * requests then run while the other streams keep generating. */
static void check_slots_queue_disconnect(int port) {
    json_int_t cancelled0 = slots_int(port, "requests_cancelled");
    int streams[4];
    for (int i = 0; i < 4; i++) streams[i] = open_long_stream(port, par_prompts[i]);
    json_int_t busy = slots_int(port, "slots_processing");
    CHECK(busy == 4, "4 long streams occupy the 4 slots (%lld)", (long long)busy);
    double t0 = now_sec();
    while (slots_int(port, "max_batch_sequences") < 4 && now_sec() - t0 < 10) sleep_ms(5);
    CHECK(slots_int(port, "max_batch_sequences") == 4, "the 4 slots' tokens share one batch");

    enum { N_CONN = 200 };
    int fds[N_CONN], status[N_CONN];
    char *replies[N_CONN];
    size_t lens[N_CONN];
    const char *req = "{\"prompt\": \"Once upon\", \"max_tokens\": 6, \"temperature\": 0}";
    int opened = 0;
    for (int i = 0; i < N_CONN; i++) {
        fds[i] = http_connect(port);
        status[i] = 0;
        replies[i] = calloc(1, 4096);
        lens[i] = 0;
        if (fds[i] >= 0 && http_send(fds[i], "POST", "/v1/completions", req, strlen(req), true, NULL)) opened++;
    }
    CHECK(opened == N_CONN, "%d of %d connections opened", opened, N_CONN);
    /* Reads whatever replies are complete (the server closes after each). */
    int answered = 0;
#define POLL_REPLIES(limit_s, until)                                                         \
    for (double ts = now_sec(); !(until) && now_sec() - ts < (limit_s);) {                   \
        struct pollfd pf[N_CONN];                                                            \
        for (int i = 0; i < N_CONN; i++) pf[i] = (struct pollfd){status[i] ? -1 : fds[i], POLLIN, 0}; \
        if (poll(pf, N_CONN, 50) <= 0) continue;                                             \
        for (int i = 0; i < N_CONN; i++) {                                                   \
            if (pf[i].fd < 0 || !pf[i].revents) continue;                                    \
            ssize_t n = recv(fds[i], replies[i] + lens[i], 4095 - lens[i], 0);               \
            if (n > 0 && lens[i] + (size_t)n < 4095) {                                       \
                lens[i] += (size_t)n;                                                        \
                continue;                                                                    \
            }                                                                                \
            status[i] = lens[i] > 12 ? atoi(replies[i] + 9) : -1;                            \
            answered++;                                                                      \
        }                                                                                    \
    }
    POLL_REPLIES(30, answered >= N_CONN - 8);
    int n503 = 0, n200 = 0, other = 0;
    for (int i = 0; i < N_CONN; i++) {
        n503 += status[i] == 503;
        other += status[i] != 503 && status[i] != 0;
    }
    CHECK(n503 == N_CONN - 8 && other == 0, "with all slots busy and a queue of 8: %d answered 503, %d other",
          n503, other);
    CHECK(slots_int(port, "queued") == 8, "8 requests wait in the queue (%lld)", (long long)slots_int(port, "queued"));
    bool retry_after = false;
    for (int i = 0; i < N_CONN; i++)
        if (status[i] == 503) retry_after |= strstr(replies[i], "Retry-After:") != NULL && strstr(replies[i], "\"error\"");
    CHECK(retry_after, "503 replies carry Retry-After and a JSON error");

    /* Client disconnect: the slot frees at once and a queued request runs
     * next to the three streams still generating. */
    json_int_t mixed0 = slots_int(port, "mixed_steps");
    double t_close = now_sec();
    close(streams[0]);
    int answered_before = answered;
    POLL_REPLIES(20, answered > answered_before);
    double waited = now_sec() - t_close;
    CHECK(answered > answered_before && waited < 5, "a queued request is served %.3f s after a stream closed", waited);
    CHECK(slots_int(port, "mixed_steps") > mixed0, "a new prompt was evaluated in the same batch as running streams");
    CHECK(slots_int(port, "requests_cancelled") >= cancelled0 + 1, "the closed stream was cancelled");
    for (int i = 1; i < 4; i++) close(streams[i]);
    POLL_REPLIES(30, answered >= N_CONN);
    for (int i = 0; i < N_CONN; i++) {
        n200 += status[i] == 200;
        if (fds[i] >= 0) close(fds[i]);
        free(replies[i]);
    }
    CHECK(n200 == 8, "the 8 queued requests were answered 200 (%d)", n200);
    t0 = now_sec();
    while (slots_int(port, "slots_idle") != 4 && now_sec() - t0 < 5) sleep_ms(10);
    CHECK(slots_int(port, "slots_idle") == 4, "every slot is idle again");
    CHECK(slots_int(port, "requests_cancelled") == cancelled0 + 4, "4 cancelled streams (%lld)",
          (long long)(slots_int(port, "requests_cancelled") - cancelled0));
    http_reply r = http(port, "GET", "/health", NULL);
    CHECK(r.status == 200, "alive after 200 connections");
    reply_free(&r);
#undef POLL_REPLIES
}

/* A client that leaves while waiting for a non-streaming reply frees its
 * slot too (the connection is watched while the reply is generated). */
static void check_disconnect_whole(int port) {
    json_int_t cancelled0 = slots_int(port, "requests_cancelled");
    int fd = http_connect(port);
    char *body = completion_body("The machine", 3000, false, "{\"ignore_eos\": true}");
    http_send(fd, "POST", "/v1/completions", body, strlen(body), true, NULL);
    free(body);
    double t0 = now_sec();
    while (slots_int(port, "slots_processing") < 1 && now_sec() - t0 < 10) sleep_ms(2);
    close(fd);
    double t_close = now_sec();
    while ((slots_int(port, "slots_idle") != 4 || slots_int(port, "requests_cancelled") != cancelled0 + 1) &&
           now_sec() - t_close < 10)
        sleep_ms(5);
    double waited = now_sec() - t_close;
    CHECK(slots_int(port, "requests_cancelled") == cancelled0 + 1 && slots_int(port, "slots_idle") == 4,
          "non-streaming request cancelled when its client left");
    CHECK(waited < 2, "its slot was freed %.3f s after the client left", waited);
}

/* ---- The openai npm client ----------------------------------------------------------- */

static void check_node_client(int port) {
    static char node[4096];
    const char *path = getenv("PATH");
    node[0] = 0;
    for (const char *p = path ? path : ""; *p && !node[0];) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(node, sizeof node, "%.*s/node", (int)n, p);
        if (access(node, X_OK) != 0) node[0] = 0;
        p += n + (end != NULL);
    }
    struct stat st;
    if (!node[0] || stat("tests/server/node_modules/openai/package.json", &st) != 0) {
        fprintf(stderr, "SKIP: the openai npm client tests need node and `npm ci` in tests/server "
                        "(.ci/run installs both)\n");
        return;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);
    const char *argv[] = {node, "tests/server/openai.test.mjs", url, api_key, NULL};
    char *out = NULL, *err = NULL;
    int rc = test_run(argv, NULL, 0, &out, &err);
    CHECK(rc == 0 && strstr(out, "node: 10 passed, 0 failed"), "openai npm client: exit %d\n%s%s", rc, out, err);
    free(out);
    free(err);
}

/* ---- Template errors, shutdown ---------------------------------------------------------- */

static void check_template_errors(void) {
    server_proc s;
    const char *args[] = {"--chat-template-file", gemma_template, "--parallel", "1", "-c", "256", NULL};
    if (!server_start(&s, "gemma.log", args)) {
        CHECK(0, "server with a template file did not start");
        return;
    }
    const char *sys = "{\"messages\":[{\"role\":\"system\",\"content\":\"x\"},{\"role\":\"user\",\"content\":\"hi\"}]}";
    http_reply r = http_ex(s.port, "POST", "/apply-template", sys, false, NULL);
    CHECK(is_error(&r, 400) && !strcmp(error_message(&r), "System role not supported"),
          "raise_exception gives 400 with the template's message: %d %s", r.status, r.body);
    reply_free(&r);
    r = http_ex(s.port, "POST", "/v1/chat/completions", sys, false, NULL);
    CHECK(is_error(&r, 400) && !strcmp(error_message(&r), "System role not supported"), "chat: %d %s", r.status, r.body);
    reply_free(&r);
    r = http_ex(s.port, "POST", "/apply-template", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", false, NULL);
    const char *p = json_string_value(json_object_get(r.json, "prompt"));
    CHECK(r.status == 200 && p && !strcmp(p, "<s><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"),
          "gemma rendering: %s", r.body);
    reply_free(&r);
    r = http_ex(s.port, "POST", "/v1/chat/completions",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}", false, NULL);
    CHECK(r.status == 200, "no --api-key: no key needed (%d)", r.status);
    reply_free(&r);
    CHECK(server_stop(&s, SIGINT, NULL) == 0, "SIGINT: exit 0");
}

/* SIGTERM while a stream runs: the stream ends with an error event, the
 * server exits 0 (and, under ASan, without leaks). */
static void check_shutdown(server_proc *s) {
    int fd = open_long_stream(s->port, "The machine");
    double seconds = 0;
    int rc = server_stop(s, SIGTERM, &seconds);
    http_reply rest = http_read(fd);
    close(fd);
    CHECK(rc == 0, "SIGTERM: exit status %d", rc);
    CHECK(seconds < 10, "shutdown took %.2f s", seconds);
    CHECK(strstr(rest.raw, "shutting down") != NULL, "the running stream was told: ...%s",
          rest.raw + (strlen(rest.raw) > 300 ? strlen(rest.raw) - 300 : 0));
    reply_free(&rest);
    int probe = http_connect(s->port);
    CHECK(probe < 0, "nothing listens after shutdown");
    if (probe >= 0) close(probe);
}

/* The command line's sampling options are the defaults of requests that
 * leave them out; --seed makes unseeded requests repeatable. */
static void check_command_line_defaults(void) {
    server_proc s;
    const char *args[] = {"--seed", "5", "--temp", "1.5", "--top-k", "0", "--min-p", "0", NULL};
    if (!server_start(&s, "server-defaults.log", args)) {
        CHECK(0, "nuri serve --seed 5 --temp 1.5 did not start");
        return;
    }
    const char *unseeded = "{\"prompt\":\"Once\",\"max_tokens\":24,\"ignore_eos\":true}";
    const char *seeded = "{\"prompt\":\"Once\",\"max_tokens\":24,\"ignore_eos\":true,\"seed\":5}";
    const char *greedy = "{\"prompt\":\"Once\",\"max_tokens\":24,\"ignore_eos\":true,\"temperature\":0}";
    http_reply a = http(s.port, "POST", "/v1/completions", unseeded);
    http_reply b = http(s.port, "POST", "/v1/completions", unseeded);
    http_reply c = http(s.port, "POST", "/v1/completions", seeded);
    http_reply g = http(s.port, "POST", "/v1/completions", greedy);
    CHECK(a.status == 200 && b.status == 200 && c.status == 200 && g.status == 200, "statuses %d %d %d %d",
          a.status, b.status, c.status, g.status);
    CHECK(!strcmp(completion_text(&a), completion_text(&b)), "--seed: unseeded requests repeat: '%s' vs '%s'",
          completion_text(&a), completion_text(&b));
    CHECK(!strcmp(completion_text(&a), completion_text(&c)), "--seed 5 equals \"seed\": 5: '%s' vs '%s'",
          completion_text(&a), completion_text(&c));
    /* Temperature 1.5 without top-k or min-p over 24 tokens leaves greedy text. */
    CHECK(strcmp(completion_text(&a), completion_text(&g)) != 0, "--temp 1.5 applies: '%s' equals greedy",
          completion_text(&a));
    reply_free(&a);
    reply_free(&b);
    reply_free(&c);
    reply_free(&g);
    int rc = server_stop(&s, SIGTERM, NULL);
    CHECK(rc == 0, "defaults server: SIGTERM exit status %d", rc);

    const char *bad_kv[] = {"--kv-type", "q8", NULL};
    CHECK(!server_start(&s, "server-bad-kv.log", bad_kv), "serve --kv-type q8 is refused");
    char *log = test_read_file(s.log, NULL);
    CHECK(log && strstr(log, "--kv-type must be f32 or f16"), "--kv-type q8 error: %s", log ? log : "(none)");
    free(log);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    bin = test_nuri_bin();
    const char *p = test_shared_path("models/aidreams260K.gguf");
    if (!bin || !p) return test_finish();
    snprintf(model_path, sizeof model_path, "%s", p);
    snprintf(gemma_template, sizeof gemma_template, "%s", test_shared_path("templates/google-gemma-2-2b-it.jinja"));
    nuri_error err;
    if (nuri_model_load(model_path, NULL, &model, &err) != NURI_OK) {
        CHECK(0, "load %s: %s", model_path, err.message);
        return test_finish();
    }

    server_proc s;
    const char *args[] = {"--parallel", "4", "-c", "256",        "--queue",    "8",      "--api-key",
                          api_key,      "--chat-template", "chatml", "--max-body-size", "65536", NULL};
    if (!server_start(&s, "server.log", args)) {
        CHECK(0, "nuri serve did not start");
        nuri_model_free(model);
        return test_finish();
    }
    check_basics(s.port);
    check_bad_input(s.port);
    check_parallel_equals_alone(s.port);
    check_node_client(s.port);
    int rc = server_stop(&s, SIGTERM, NULL);
    CHECK(rc == 0, "idle server: SIGTERM exit status %d", rc);

    /* Long streams need longer slots. */
    const char *long_args[] = {"--parallel", "4", "-c", "4096", "--queue", "8", "--api-key", api_key, NULL};
    if (server_start(&s, "server-long.log", long_args)) {
        check_slots_queue_disconnect(s.port);
        check_disconnect_whole(s.port);
        check_shutdown(&s);
    } else {
        CHECK(0, "nuri serve -c 4096 did not start");
    }
    check_template_errors();
    check_command_line_defaults();
    json_decref(last_slots);
    nuri_model_free(model);
    return test_finish();
}
