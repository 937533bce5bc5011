/* http.c — the HTTP side of `nuri serve`, on libmicrohttpd.
 *
 * MHD runs one thread per connection, so a handler may block while its
 * request waits for the engine (non-streaming replies) and a streaming
 * reply's reader may block until the next piece of text arrives. Both wake
 * up at least every 100 ms to check whether the client is still there.
 *
 * This file owns the daemon's lifetime, collects request bodies (with the
 * size limit), routes paths to handlers, checks the API key, and provides
 * the JSON reply helpers every handler uses. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "server/server_impl.h"

/* How long shutdown waits for running requests to deliver their last bytes. */
#define SHUTDOWN_DRAIN_MS 5000

/* ---- Replies ------------------------------------------------------------------ */

static const char *error_type(unsigned status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 413: return "invalid_request_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static void log_request(const srv_request *req, unsigned status, const char *note) {
    if (!req->srv->cfg.log_requests) return;
    fprintf(stderr, "nuri serve: %s %s %u %.3fs%s%s\n", req->method, req->path, status,
            nuri_time_sec() - req->t_start, note ? " " : "", note ? note : "");
}

/* Queues a reply whose body is a malloc'ed string (taken over). */
static srv_result reply_text(const srv_request *req, unsigned status, char *text, size_t len,
                             const char *content_type, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    srv_result ret = MHD_queue_response(req->conn, status, r);
    MHD_destroy_response(r);
    log_request(req, status, NULL);
    return ret;
}

srv_result srv_reply_json(const srv_request *req, unsigned status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":500}}";
        text = strdup(oom);
        status = 500;
        if (!text) return MHD_NO;
    }
    return reply_text(req, status, text, strlen(text), "application/json", NULL);
}

json_t *srv_error_json(unsigned status, const char *param, const char *message) {
    return json_pack("{s:{s:s, s:s, s:s?, s:i}}", "error", "message", message, "type",
                     error_type(status), "param", param, "code", (int)status);
}

static json_t *error_jsonv(unsigned status, const char *param, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n;
    char *clean = srv_utf8_clean(msg, strlen(msg), &n);
    json_t *j = srv_error_json(status, param, clean ? clean : "error");
    free(clean);
    return j;
}

srv_result srv_reply_error(const srv_request *req, unsigned status, const char *param,
                           const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    json_t *j = error_jsonv(status, param, fmt, ap);
    va_end(ap);
    return srv_reply_json(req, status, j);
}

/* Like srv_reply_error, with an Allow header (405). */
static srv_result reply_405(const srv_request *req, const char *allow) {
    json_t *j = srv_error_json(405, NULL, "method not allowed for this path");
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return MHD_NO;
    return reply_text(req, 405, text, strlen(text), "application/json", allow);
}

json_t *srv_parse_body(const srv_request *req, srv_result *ret) {
    json_error_t jerr;
    json_t *j = json_loadb(req->body ? req->body : "", req->body_len, JSON_ALLOW_NUL, &jerr);
    if (!j) {
        *ret = srv_reply_error(req, 400, NULL, "the request body is not valid JSON: %s (line %d, column %d)",
                               jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *ret = srv_reply_error(req, 400, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- Small helpers ------------------------------------------------------------- */

bool srv_client_gone(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        /* Readable: either the next pipelined request or end of file. */
        char c;
        ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return false;
}

void srv_new_id(nuri_server *srv, const char *prefix, char *out, size_t cap) {
    unsigned char r[12];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        /* No entropy yet (early boot): unique is enough for an id. */
        unsigned long n = atomic_fetch_add(&srv->next_id, 1);
        uint64_t t = (uint64_t)srv->started;
        memcpy(r, &n, sizeof r < sizeof n ? sizeof r : sizeof n);
        memcpy(r + 4, &t, 8);
    }
    size_t k = (size_t)snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof r && k + 2 < cap; i++, k += 2) snprintf(out + k, cap - k, "%02x", r[i]);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

char *srv_utf8_clean(const char *text, size_t len, size_t *out_len) {
    /* Worst case: every byte becomes the 3-byte replacement character. */
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t v = utf8_valid_len(s + i, len - i);
        if (v) {
            memcpy(out + k, s + i, v);
            k += v;
            i += v;
        } else {
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    out[k] = 0;
    *out_len = k;
    return out;
}

/* ---- Routing -------------------------------------------------------------------- */

typedef struct {
    const char *path, *method;
    bool open; /* answered without the API key */
    srv_result (*handle)(const srv_request *req);
} route;

static const route routes[] = {
    {"/health", "GET", true, srv_handle_health},
    {"/v1/health", "GET", true, srv_handle_health},
    {"/slots", "GET", false, srv_handle_slots},
    {"/v1/models", "GET", false, srv_handle_models},
    {"/models", "GET", false, srv_handle_models},
    {"/v1/completions", "POST", false, srv_handle_completions},
    {"/completions", "POST", false, srv_handle_completions},
    {"/v1/chat/completions", "POST", false, srv_handle_chat_completions},
    {"/chat/completions", "POST", false, srv_handle_chat_completions},
    {"/tokenize", "POST", false, srv_handle_tokenize},
    {"/detokenize", "POST", false, srv_handle_detokenize},
    {"/apply-template", "POST", false, srv_handle_apply_template},
};

/* Compares the Authorization header with "Bearer KEY" in time that does not
 * depend on where they differ. */
static bool authorized(const nuri_server *srv, struct MHD_Connection *conn) {
    if (!srv->api_key) return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h), m = strlen(srv->api_key);
    unsigned diff = n != m;
    for (size_t i = 0; i < m; i++) diff |= (unsigned char)srv->api_key[i] ^ (unsigned char)(i < n ? h[i] : 0);
    return diff == 0;
}

static srv_result dispatch(const srv_request *req) {
    nuri_server *srv = req->srv;
    const route *match = NULL;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(routes[i].path, req->path)) continue;
        if (!strcmp(routes[i].method, req->method)) match = &routes[i];
        else snprintf(allow, sizeof allow, "%s", routes[i].method);
    }
    if (!match) {
        if (allow[0]) return reply_405(req, allow);
        return srv_reply_error(req, 404, NULL, "no such endpoint: %s %s", req->method, req->path);
    }
    if (!match->open && !authorized(srv, req->conn))
        return srv_reply_error(req, 401, NULL, "invalid or missing API key (send 'Authorization: Bearer KEY')");
    if (atomic_load(&srv->stopping)) return srv_reply_error(req, 503, NULL, "the server is shutting down");
    return match->handle(req);
}

/* ---- libmicrohttpd callbacks ---------------------------------------------------- */

/* Per-request state: the body as it arrives. */
typedef struct {
    char *body;
    size_t len, cap;
    bool too_large, replied;
    double t_start;
} conn_state;

static srv_result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_size, void **con_cls) {
    nuri_server *srv = cls;
    conn_state *st = *con_cls;
    srv_request req = {srv, conn, method, url, NULL, 0, 0};
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        st->t_start = nuri_time_sec();
        *con_cls = st;
        atomic_fetch_add(&srv->in_flight, 1);
        /* A declared length over the limit is refused before the body is
         * read (clients that sent "Expect: 100-continue" never send it). */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->cfg.max_body) {
            st->replied = true;
            req.t_start = st->t_start;
            return srv_reply_error(&req, 413, NULL, "the request body is larger than the limit of %zu bytes",
                                   srv->cfg.max_body);
        }
        return MHD_YES;
    }
    req.t_start = st->t_start;
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (st->replied || st->too_large) return MHD_YES;
        if (n > srv->cfg.max_body - st->len) {
            /* Keep reading (and dropping) the rest so the client sees the 413. */
            st->too_large = true;
            free(st->body);
            st->body = NULL;
            st->len = st->cap = 0;
            return MHD_YES;
        }
        if (st->len + n + 1 > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + n + 1) cap *= 2;
            char *nb = realloc(st->body, cap);
            if (!nb) return MHD_NO;
            st->body = nb;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        st->body[st->len] = 0;
        return MHD_YES;
    }
    if (st->replied) return MHD_YES;
    st->replied = true;
    if (st->too_large)
        return srv_reply_error(&req, 413, NULL, "the request body is larger than the limit of %zu bytes",
                               srv->cfg.max_body);
    req.body = st->body;
    req.body_len = st->len;
    return dispatch(&req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    nuri_server *srv = cls;
    conn_state *st = *con_cls;
    if (st) {
        free(st->body);
        free(st);
        *con_cls = NULL;
        atomic_fetch_sub(&srv->in_flight, 1);
    }
}

static void on_log(void *cls, const char *fmt, va_list ap) {
    nuri_server *srv = cls;
    if (!srv->cfg.log_requests) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    fprintf(stderr, "nuri serve: http: %s\n", line);
}

/* ---- The server ------------------------------------------------------------------ */

nuri_server_config nuri_server_default_config(void) {
    nuri_server_config c;
    memset(&c, 0, sizeof c);
    c.host = "127.0.0.1";
    c.port = 8080;
    c.n_slots = 4;
    c.n_batch = 512;
    c.queue_max = 64;
    c.kv_type = NURI_KV_F32;
    c.max_body = 8u << 20;
    c.timeout_s = 600;
    c.max_connections = 512;
    c.sampling = nuri_sampler_default_params();
    c.sampling.temperature = 0.8f;
    c.seed = -1;
    return c;
}

/* Opens, binds and listens on host:port; returns the socket or -1. */
static int open_listener(const char *host, int port, int backlog, bool *ipv6, nuri_error *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    int rc = getaddrinfo(host, port_text, &hints, &res);
    if (rc != 0) {
        nuri_fail(err, NURI_ERR_INVALID_ARG, "cannot resolve host '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
            saved = errno;
            close(fd);
            fd = -1;
            continue;
        }
        *ipv6 = a->ai_family == AF_INET6;
    }
    freeaddrinfo(res);
    if (fd < 0) nuri_fail(err, NURI_ERR_IO, "cannot listen on %s port %d: %s", host, port, strerror(saved));
    return fd;
}

nuri_status nuri_server_start(const nuri_server_config *cfg, nuri_server **out, nuri_error *err) {
    *out = NULL;
    if (!cfg->model) return nuri_fail(err, NURI_ERR_INVALID_ARG, "the server needs a model");
    nuri_server *srv = calloc(1, sizeof *srv);
    if (!srv) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    srv->cfg = *cfg;
    srv->model_name = strdup(cfg->model_name ? cfg->model_name : "model");
    srv->bos_text = strdup(cfg->bos_text ? cfg->bos_text : "");
    srv->eos_text = strdup(cfg->eos_text ? cfg->eos_text : "");
    srv->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    srv->api_key = cfg->api_key && cfg->api_key[0] ? strdup(cfg->api_key) : NULL;
    srv->started = time(NULL);
    atomic_init(&srv->stopping, false);
    atomic_init(&srv->in_flight, 0);
    atomic_init(&srv->next_id, 1);
    if (!srv->model_name || !srv->bos_text || !srv->eos_text || !srv->host ||
        (cfg->api_key && cfg->api_key[0] && !srv->api_key)) {
        nuri_server_free(srv);
        return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    }
    srv->cfg.model_name = srv->model_name;
    srv->cfg.bos_text = srv->bos_text;
    srv->cfg.eos_text = srv->eos_text;
    srv->cfg.host = srv->host;
    srv->cfg.api_key = srv->api_key;
    if (srv->cfg.max_body == 0) srv->cfg.max_body = 8u << 20;

    srv_engine_params ep = {cfg->n_slots, cfg->n_ctx, cfg->n_batch, cfg->n_threads, cfg->queue_max,
                            cfg->kv_type};
    nuri_status st = srv_engine_create(cfg->model, &ep, &srv->engine, err);
    if (st != NURI_OK) {
        nuri_server_free(srv);
        return st;
    }

    bool ipv6 = false;
    int fd = open_listener(srv->host, cfg->port, 512, &ipv6, err);
    if (fd < 0) {
        nuri_server_free(srv);
        return err->status;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) == 0)
        srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                      : ((struct sockaddr_in *)&bound)->sin_port);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_log, srv,
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections ? cfg->max_connections : 512),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        close(fd);
        nuri_server_free(srv);
        return nuri_fail(err, NURI_ERR_IO, "cannot start the HTTP server (libmicrohttpd) on %s port %d",
                         cfg->host, cfg->port);
    }
    *out = srv;
    return NURI_OK;
}

int nuri_server_port(const nuri_server *srv) { return srv->port; }

int32_t nuri_server_n_ctx(const nuri_server *srv) { return srv_engine_n_ctx(srv->engine); }

void nuri_server_stop(nuri_server *srv) {
    if (!srv || atomic_exchange(&srv->stopping, true)) return;
    /* Stop accepting, end every job (waking the connections that wait on
     * them), then let MHD close the connections and join their threads. */
    if (srv->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    srv_engine_stop(srv->engine);
    /* Let the replies and error events those jobs produced reach their
     * clients (MHD_stop_daemon cuts connections mid-write), but do not wait
     * more than a few seconds for a client that does not read. */
    struct timespec tick = {0, 10 * 1000000L};
    for (int i = 0; i < SHUTDOWN_DRAIN_MS / 10 && atomic_load(&srv->in_flight) > 0; i++) nanosleep(&tick, NULL);
    if (srv->daemon) {
        MHD_stop_daemon(srv->daemon);
        srv->daemon = NULL;
    }
}

void nuri_server_free(nuri_server *srv) {
    if (!srv) return;
    nuri_server_stop(srv);
    srv_engine_free(srv->engine);
    free(srv->model_name);
    free(srv->bos_text);
    free(srv->eos_text);
    free(srv->host);
    free(srv->api_key);
    free(srv);
}
