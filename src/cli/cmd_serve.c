/* cmd_serve.c — `nuri serve`: the OpenAI-compatible HTTP server. Parses the
 * options, loads the model and its chat template, starts the server
 * (src/server/) and waits for SIGINT or SIGTERM to shut it down. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/template.h"
#include "cli/cli.h"
#include "server/server.h"

static const char *serve_usage =
    "usage: nuri serve -m MODEL [options]\n"
    "\n"
    "Serves the model over HTTP with OpenAI's API: POST /v1/chat/completions,\n"
    "POST /v1/completions (streaming or not), GET /v1/models, GET /health,\n"
    "POST /tokenize, /detokenize and /apply-template (see docs/server.md).\n"
    "Requests run in parallel slots whose next tokens are evaluated as one\n"
    "batch. SIGINT or SIGTERM stops the server.\n"
    "\n"
    "  -m, --model FILE          GGUF model or llama2.c checkpoint\n"
    "      --tokenizer FILE      llama2.c tokenizer.bin (default: beside the model)\n"
    "      --host ADDR           address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
    "      --port N              port (default 8080; 0: any free port, printed at start)\n"
    "  -np, --parallel N         slots: requests generated at the same time (default 4)\n"
    "  -c, --ctx-size N          context length of EACH slot, prompt and reply together\n"
    "                            (default: min(model's, 4096)); memory grows with N x slots\n"
    "  -b, --batch-size N        batch entries per step (default 512)\n"
    "  -t, --threads N           threads (default: physical cores)\n"
    "      --kv-type f32|f16     KV cache element type (default f32)\n"
    "      --queue N             requests that may wait for a slot; more get 503 (default 64)\n"
    "      --api-key KEY         require 'Authorization: Bearer KEY' (GET /health stays open)\n"
    "      --chat-template NAME  built-in chat format: llama2, llama3, chatml, mistral, gemma,\n"
    "                            phi3 (default: the model's template)\n"
    "      --chat-template-file FILE  a Jinja chat template file\n"
    "      --alias NAME          model name in replies (default: the file's name)\n"
    "      --max-body-size N     largest request body in bytes (default 8388608)\n"
    "      --timeout S           close connections idle for S seconds (default 600)\n"
    "      --temp T, --top-k K, --top-p P, --min-p P\n"
    "                            sampling defaults for requests that leave them out\n"
    "                            (default 0.8, 40, 0.95, 0.05)\n"
    "  -v, --verbose             log every request on stderr\n"
    "  -h, --help                this help\n";

static char *read_file_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 14, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = cap < (1u << 26) ? realloc(buf, cap *= 2) : NULL;
            if (!nb) free(buf);
            buf = nb;
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static bool is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && !memcmp(magic, "GGUF", 4);
}

/* A token's text with special tokens rendered (malloc'ed; NULL for -1). */
static char *token_text(const nuri_model *m, nuri_token t) {
    if (t < 0) return NULL;
    size_t n = nuri_token_to_piece(m, t, true, NULL, 0);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    nuri_token_to_piece(m, t, true, s, n);
    s[n] = 0;
    return s;
}

int cmd_serve(int argc, char **argv) {
    nuri_server_config cfg = nuri_server_default_config();
    const char *model_path = NULL, *tokenizer_path = NULL, *template_name = NULL, *template_file = NULL;
    const char *kv_type = "f32", *alias = NULL;
    long port = cfg.port, n_slots = cfg.n_slots, n_ctx = 0, n_batch = cfg.n_batch, n_threads = 0;
    long queue = cfg.queue_max, max_body = (long)cfg.max_body, timeout = cfg.timeout_s;
    long top_k = cfg.sampling.top_k;
    double temp = cfg.sampling.temperature, top_p = cfg.sampling.top_p, min_p = cfg.sampling.min_p;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(serve_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "--host")) ok = cli_take_str(argc, argv, &i, &cfg.host);
        else if (!strcmp(a, "--port")) ok = cli_take_int(argc, argv, &i, 0, 65535, &port);
        else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) ok = cli_take_int(argc, argv, &i, 1, 256, &n_slots);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) ok = cli_take_int(argc, argv, &i, 0, 1 << 24, &n_ctx);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) ok = cli_take_int(argc, argv, &i, 1, 1 << 16, &n_batch);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_take_int(argc, argv, &i, 1, 512, &n_threads);
        else if (!strcmp(a, "--kv-type")) ok = cli_take_str(argc, argv, &i, &kv_type);
        else if (!strcmp(a, "--queue")) ok = cli_take_int(argc, argv, &i, 0, 1 << 20, &queue);
        else if (!strcmp(a, "--api-key")) ok = cli_take_str(argc, argv, &i, &cfg.api_key);
        else if (!strcmp(a, "--chat-template")) ok = cli_take_str(argc, argv, &i, &template_name);
        else if (!strcmp(a, "--chat-template-file")) ok = cli_take_str(argc, argv, &i, &template_file);
        else if (!strcmp(a, "--alias")) ok = cli_take_str(argc, argv, &i, &alias);
        else if (!strcmp(a, "--max-body-size")) ok = cli_take_int(argc, argv, &i, 1024, 1L << 30, &max_body);
        else if (!strcmp(a, "--timeout")) ok = cli_take_int(argc, argv, &i, 0, 1L << 20, &timeout);
        else if (!strcmp(a, "--temp")) ok = cli_take_float(argc, argv, &i, 0, 2, &temp);
        else if (!strcmp(a, "--top-k")) ok = cli_take_int(argc, argv, &i, 0, 1000000, &top_k);
        else if (!strcmp(a, "--top-p")) ok = cli_take_float(argc, argv, &i, 0, 1, &top_p);
        else if (!strcmp(a, "--min-p")) ok = cli_take_float(argc, argv, &i, 0, 1, &min_p);
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) cfg.log_requests = true;
        else return cli_error("serve: unknown option '%s' (see nuri serve --help)", a);
        if (!ok) return 1;
    }
    if (!model_path) return cli_error("serve: no model given (-m FILE); see nuri serve --help");
    if (strcmp(kv_type, "f32") && strcmp(kv_type, "f16"))
        return cli_error("serve: --kv-type must be f32 or f16, got '%s'", kv_type);
    if (template_name && template_file)
        return cli_error("serve: give either --chat-template or --chat-template-file, not both");
    if (cfg.api_key && !cfg.api_key[0]) return cli_error("serve: --api-key must not be empty");

    int status = 1;
    nuri_model *model = cli_load_model(model_path, tokenizer_path);
    nuri_chat_template *tpl = NULL;
    nuri_server *srv = NULL;
    char *source = NULL, *bos = NULL, *eos = NULL;
    size_t source_len = 0;
    nuri_error err;
    if (!model) goto done;

    /* The chat template and the BOS/EOS texts templates write. */
    if (is_gguf(model_path)) {
        if (nuri_chat_gguf_info(model_path, template_file || template_name ? NULL : &source, &source_len, &bos,
                                &eos, &err) != NURI_OK) {
            cli_error("serve: %s: %s", model_path, err.message);
            goto done;
        }
    } else {
        bos = token_text(model, nuri_token_bos(model));
        eos = token_text(model, nuri_token_eos(model));
    }
    if (template_file) {
        free(source);
        if (!(source = read_file_text(template_file, &source_len))) {
            cli_error("serve: cannot read %s", template_file);
            goto done;
        }
        if (nuri_chat_template_parse(source, source_len, &tpl, &err) != NURI_OK) {
            cli_error("serve: %s: %s", template_file, err.message);
            goto done;
        }
    } else {
        char warning[512] = "";
        if (nuri_chat_template_select(source, source_len, template_name, &tpl, warning, sizeof warning, &err) !=
            NURI_OK) {
            cli_error("serve: %s", err.message);
            goto done;
        }
        if (warning[0]) fprintf(stderr, "nuri serve: warning: %s\n", warning);
    }

    const char *base = strrchr(model_path, '/');
    cfg.model = model;
    cfg.chat_template = tpl;
    cfg.bos_text = bos;
    cfg.eos_text = eos;
    cfg.model_name = alias ? alias : base ? base + 1 : model_path;
    cfg.port = (int)port;
    cfg.n_slots = (int32_t)n_slots;
    cfg.n_ctx = (int32_t)n_ctx;
    cfg.n_batch = (int32_t)n_batch;
    cfg.n_threads = (int32_t)n_threads;
    cfg.queue_max = (int32_t)queue;
    cfg.kv_type = strcmp(kv_type, "f16") ? NURI_KV_F32 : NURI_KV_F16;
    cfg.max_body = (size_t)max_body;
    cfg.timeout_s = (unsigned)timeout;
    cfg.sampling.temperature = (float)temp;
    cfg.sampling.top_k = (int32_t)top_k;
    cfg.sampling.top_p = (float)top_p;
    cfg.sampling.min_p = (float)min_p;

    /* Every thread the server starts inherits this mask, so the signals
     * reach only the sigwait below. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (nuri_server_start(&cfg, &srv, &err) != NURI_OK) {
        cli_error("serve: %s", err.message);
        goto done;
    }
    bool v6 = strchr(cfg.host, ':') != NULL;
    fprintf(stderr, "nuri serve: %s, chat template %s\n", nuri_model_desc(model), nuri_chat_template_name(tpl));
    fprintf(stderr, "nuri serve: listening on http://%s%s%s:%d (%d slots of %d tokens)\n", v6 ? "[" : "",
            cfg.host, v6 ? "]" : "", nuri_server_port(srv), (int)cfg.n_slots,
            (int)nuri_server_n_ctx(srv));
    fflush(stderr);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "nuri serve: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    nuri_server_stop(srv);
    status = 0;
done:
    nuri_server_free(srv);
    nuri_chat_template_free(tpl);
    nuri_model_free(model);
    free(source);
    free(bos);
    free(eos);
    return status;
}
