/* server.h — `nuri serve`: an OpenAI-compatible HTTP server over one model.
 *
 *     nuri_server *srv;
 *     nuri_server_config cfg = nuri_server_default_config();
 *     cfg.model = model; cfg.chat_template = tpl; ...
 *     if (nuri_server_start(&cfg, &srv, &err) == NURI_OK) {
 *         ... wait for SIGINT/SIGTERM ...
 *         nuri_server_stop(srv);   // stop accepting, end running requests
 *         nuri_server_free(srv);
 *     }
 *
 * HTTP is libmicrohttpd (one thread per connection), JSON is jansson; the
 * generation engine (engine.h) batches every active request into one
 * forward pass per step. docs/server.md describes the endpoints. */
#ifndef NURI_SERVER_H
#define NURI_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/template.h"
#include "nuri.h"

typedef struct nuri_server nuri_server;

typedef struct {
    const nuri_model *model;                 /* not owned; must outlive the server */
    const nuri_chat_template *chat_template; /* not owned; NULL: chat endpoints answer 500 */
    const char *bos_text, *eos_text;         /* the model's BOS/EOS texts for templates; NULL: "" */
    const char *model_name;                  /* the "model" field of replies */

    const char *host; /* address to bind: "127.0.0.1" (default), "::1", "0.0.0.0", ... */
    int port;         /* 0: any free port (see nuri_server_port) */
    const char *api_key; /* NULL: no authentication */

    int32_t n_slots;   /* parallel sequences (default 4) */
    int32_t n_ctx;     /* KV positions per slot; 0: min(model's context, 4096) */
    int32_t n_batch;   /* batch entries per step (default 512) */
    int32_t n_threads; /* 0: physical cores */
    int32_t queue_max; /* requests that may wait for a slot before 503 (default 64) */
    nuri_kv_type kv_type;
    size_t max_body;           /* request bodies above this get 413 (default 8 MiB) */
    unsigned timeout_s;        /* idle connections are closed after this (default 600) */
    unsigned max_connections;  /* connections beyond this are refused (default 512) */
    nuri_sampler_params sampling; /* defaults for fields a request leaves out (but the seed) */
    int64_t seed;              /* seed of requests that give none; -1 (default): a random one each */
    bool log_requests;         /* one line per request on stderr */
} nuri_server_config;

/* Defaults as documented above; sampling: temperature 0.8, top-k 40,
 * top-p 0.95, min-p 0.05 (llama.cpp's server defaults). */
nuri_server_config nuri_server_default_config(void);

/* Creates the engine and starts listening. Fails with a one-line message
 * (address in use, bad host, out of memory, ...). */
nuri_status nuri_server_start(const nuri_server_config *cfg, nuri_server **out, nuri_error *err);

/* The port actually bound. */
int nuri_server_port(const nuri_server *srv);

/* KV positions per slot (the -c actually used). */
int32_t nuri_server_n_ctx(const nuri_server *srv);

/* Stops accepting connections, ends queued and running requests (503, or
 * an error event on streams), and waits for every connection to close.
 * Idempotent. */
void nuri_server_stop(nuri_server *srv);

/* Stops if needed and frees the server. */
void nuri_server_free(nuri_server *srv);

#endif
