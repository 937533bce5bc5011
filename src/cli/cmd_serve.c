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
    "      --queue N             requests that may wait for a slot; more get 503 (default 64)\n"
    "      --api-key KEY         require 'Authorization: Bearer KEY' (GET /health stays open)\n"
    "      --chat-template NAME  built-in chat format: llama2, llama3, chatml, mistral, gemma,\n"
    "                            phi3 (default: the model's template)\n"
    "      --chat-template-file FILE  a Jinja chat template file\n"
    "      --alias NAME          model name in replies (default: the file's name)\n"
    "      --max-body-size N     largest request body in bytes (default 8388608)\n"
    "      --timeout S           close connections idle for S seconds (default 600)\n"
    "  -v, --verbose             log every request on stderr\n"
    "  -h, --help                this help\n"
    "\n"
    "The context, batch and threads, and the sampling defaults for requests that\n"
    "leave them out (-c is the context of EACH slot, prompt and reply together;\n"
    "the cache's memory grows with it times the slots; without --seed every\n"
    "request that gives no seed gets a random one):\n"
    "%s";

int cmd_serve(int argc, char **argv) {
    nuri_server_config cfg = nuri_server_default_config();
    const char *model_path = NULL, *tokenizer_path = NULL, *template_name = NULL, *template_file = NULL;
    const char *alias = NULL;
    long port = cfg.port, n_slots = cfg.n_slots;
    long queue = cfg.queue_max, max_body = (long)cfg.max_body, timeout = cfg.timeout_s;
    cli_gen_options gen;
    cli_gen_defaults(&gen);
    gen.n_batch = cfg.n_batch;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        int gen_rc = cli_gen_option(argc, argv, &i, &gen);
        if (gen_rc < 0) return 1;
        if (gen_rc > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(serve_usage, cli_gen_usage);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "--host")) ok = cli_take_str(argc, argv, &i, &cfg.host);
        else if (!strcmp(a, "--port")) ok = cli_take_int(argc, argv, &i, 0, 65535, &port);
        else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) ok = cli_take_int(argc, argv, &i, 1, 256, &n_slots);
        else if (!strcmp(a, "--queue")) ok = cli_take_int(argc, argv, &i, 0, 1 << 20, &queue);
        else if (!strcmp(a, "--api-key")) ok = cli_take_str(argc, argv, &i, &cfg.api_key);
        else if (!strcmp(a, "--chat-template")) ok = cli_take_str(argc, argv, &i, &template_name);
        else if (!strcmp(a, "--chat-template-file")) ok = cli_take_str(argc, argv, &i, &template_file);
        else if (!strcmp(a, "--alias")) ok = cli_take_str(argc, argv, &i, &alias);
        else if (!strcmp(a, "--max-body-size")) ok = cli_take_int(argc, argv, &i, 1024, 1L << 30, &max_body);
        else if (!strcmp(a, "--timeout")) ok = cli_take_int(argc, argv, &i, 0, 1L << 20, &timeout);
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) cfg.log_requests = true;
        else return cli_error("serve: unknown option '%s' (see nuri serve --help)", a);
        if (!ok) return 1;
    }
    if (!model_path) return cli_error("serve: no model given (-m FILE); see nuri serve --help");
    if (!cli_gen_validate(&gen, "serve")) return 1;
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
    if (cli_is_gguf(model_path)) {
        if (nuri_chat_gguf_info(model_path, template_file || template_name ? NULL : &source, &source_len, &bos,
                                &eos, &err) != NURI_OK) {
            cli_error("serve: %s: %s", model_path, err.message);
            goto done;
        }
    } else {
        bos = cli_token_text(model, nuri_token_bos(model));
        eos = cli_token_text(model, nuri_token_eos(model));
    }
    if (template_file) {
        free(source);
        if (!(source = cli_read_file(template_file, &source_len))) {
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
    nuri_context_params cp = cli_gen_context_params(&gen);
    cfg.n_ctx = cp.n_ctx;
    cfg.n_batch = cp.n_batch;
    cfg.n_threads = cp.n_threads;
    cfg.kv_type = cp.kv_type;
    cfg.queue_max = (int32_t)queue;
    cfg.max_body = (size_t)max_body;
    cfg.timeout_s = (unsigned)timeout;
    cfg.sampling = cli_gen_sampler_params(&gen);
    cfg.seed = gen.seed;

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
