/* server_impl.h — what the server's files share: the server struct, the
 * request a handler sees, reply helpers (http.c) and the endpoint handlers
 * (endpoints.c, completions.c). */
#ifndef NURI_SERVER_IMPL_H
#define NURI_SERVER_IMPL_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <time.h>

#include "server/engine.h"
#include "server/server.h"

struct nuri_server {
    nuri_server_config cfg; /* strings below are copies owned by the server */
    char *model_name, *bos_text, *eos_text, *api_key, *host;
    srv_engine *engine;
    struct MHD_Daemon *daemon;
    int port;
    atomic_bool stopping;
    atomic_int in_flight; /* requests between their headers and their completion */
    time_t started;
    atomic_ulong next_id;
};

/* One HTTP request with its whole body, as a handler sees it. */
typedef struct {
    nuri_server *srv;
    struct MHD_Connection *conn;
    const char *method, *path;
    const char *body;
    size_t body_len;
    double t_start;
} srv_request;

typedef enum MHD_Result srv_result;

/* ---- Replies (http.c) ------------------------------------------------------- */

/* Sends a JSON reply (takes the reference to body). */
srv_result srv_reply_json(const srv_request *req, unsigned status, json_t *body);

/* Sends {"error": {"message", "type", "param", "code"}} with status; type
 * follows the status (invalid_request_error, authentication_error, ...);
 * param names the offending field or is NULL. */
srv_result srv_reply_error(const srv_request *req, unsigned status, const char *param,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The error object itself (for streams). */
json_t *srv_error_json(unsigned status, const char *param, const char *message);

/* Parses the body as a JSON object; on failure replies 400 and returns NULL
 * with *ret set. */
json_t *srv_parse_body(const srv_request *req, srv_result *ret);

/* True when the client has closed its end of the connection (a client that
 * only half-closes counts as gone too). */
bool srv_client_gone(struct MHD_Connection *conn);

/* A fresh id, "PREFIX" followed by 24 hexadecimal digits. */
void srv_new_id(nuri_server *srv, const char *prefix, char *out, size_t cap);

/* Replaces bytes that are not valid UTF-8 with U+FFFD, so jansson accepts
 * the text. Returns a malloc'ed string (NULL when out of memory). */
char *srv_utf8_clean(const char *text, size_t len, size_t *out_len);

/* ---- Handlers (endpoints.c, completions.c) ---------------------------------- */

srv_result srv_handle_health(const srv_request *req);
srv_result srv_handle_slots(const srv_request *req);
srv_result srv_handle_models(const srv_request *req);
srv_result srv_handle_tokenize(const srv_request *req);
srv_result srv_handle_detokenize(const srv_request *req);
srv_result srv_handle_apply_template(const srv_request *req);
srv_result srv_handle_completions(const srv_request *req);
srv_result srv_handle_chat_completions(const srv_request *req);

/* Validates a chat request's "messages" and renders them with the chat
 * template (generation prompt added). On failure replies 400 (or 500) and
 * returns false with *ret set. *text is malloc'ed. */
bool srv_render_chat(const srv_request *req, json_t *body, char **text, size_t *len, srv_result *ret);

#endif
