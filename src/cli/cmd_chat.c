/* cmd_chat.c — `nuri chat`: an interactive conversation with a model.
 *
 * The conversation and its KV-cache reuse live in src/chat/chat_session.c;
 * this file is the terminal side: reading lines (with libedit's line
 * editing and history when standard input is a terminal), the slash
 * commands, Ctrl-C, and streaming the replies. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "chat/chat_session.h"
#include "chat/template.h"
#include "cli/cli.h"

static const char *chat_usage =
    "usage: nuri chat -m MODEL [options]\n"
    "\n"
    "Talks with a model in its chat format. Type a message and press Enter; the\n"
    "reply streams as it is generated. Commands: /clear forgets the conversation,\n"
    "/exit (or Ctrl-D) quits. Ctrl-C stops a reply; at the prompt it clears the\n"
    "line, and a second Ctrl-C quits. Earlier turns stay in the KV cache, so each\n"
    "turn evaluates only its new tokens. Standard input may also be a pipe (one\n"
    "message per line; replies go to stdout).\n"
    "\n"
    "  -m, --model FILE        GGUF model or llama2.c checkpoint\n"
    "      --tokenizer FILE    llama2.c tokenizer.bin (default: beside the model)\n"
    "      --system TEXT       a system message that starts the conversation\n"
    "      --chat-template NAME  a built-in format instead of the model's template:\n"
    "                          llama2, llama3, chatml, mistral, gemma, phi3\n"
    "  -n, --n-predict N       most tokens per reply (default -1: until the model ends\n"
    "                          its turn or the context is full)\n"
    "%s"
    "      --ignore-eos        never end a reply with an end-of-generation token\n"
    "  -v, --verbose           after each turn, print token counts to stderr\n"
    "  -h, --help              this help\n";

/* ---- Ctrl-C ----------------------------------------------------------------- */

/* Set by SIGINT; the reply loop checks it after every token, the prompt
 * after every read. The handler is installed without SA_RESTART so that a
 * blocked read returns and the prompt can react at once. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void install_sigint(struct sigaction *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old);
}

/* ---- Reading a line ------------------------------------------------------------ */

typedef enum { READ_LINE, READ_EOF, READ_INTERRUPTED } read_result;

/* Reads one line into *line (malloc'ed, without its newline). On a terminal
 * libedit gives line editing and history; otherwise lines come from stdin
 * as they are. */
static read_result read_line(bool terminal, char **line) {
    *line = NULL;
    interrupted = 0;
    if (terminal) {
        char *got = readline("> ");
        if (interrupted) {
            free(got);
            return READ_INTERRUPTED;
        }
        if (!got) return READ_EOF;
        *line = got;
        return READ_LINE;
    }
    size_t cap = 0;
    ssize_t n = getline(line, &cap, stdin);
    if (n < 0) {
        free(*line);
        *line = NULL;
        if (interrupted) {
            clearerr(stdin);
            return READ_INTERRUPTED;
        }
        return READ_EOF;
    }
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = '\0';
    return READ_LINE;
}

/* ---- Setup helpers ------------------------------------------------------------- */



static bool is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

/* --verbose lines (tests read them: keep the wording). */
static void print_prompt_stats(const nuri_chat_session *s, double seconds) {
    nuri_chat_stats st = nuri_chat_session_stats(s);
    fprintf(stderr, "[prompt: %zu tokens, %zu reused from the cache, %zu evaluated, %.2f s]\n",
            st.prompt_tokens, st.reused_tokens, st.evaluated_tokens, seconds);
}

static void print_reply_stats(const nuri_chat_session *s, double seconds) {
    nuri_chat_stats st = nuri_chat_session_stats(s);
    fprintf(stderr, "[reply: %zu tokens, %.2f t/s | context: %zu of %d]\n", st.reply_tokens,
            seconds > 0 ? (double)st.reply_tokens / seconds : 0.0, st.cached_tokens, st.n_ctx);
}

/* ---- One turn ------------------------------------------------------------------ */

/* Sends the user's message and streams the reply. Returns false on an error
 * that ends the program (after printing it). */
static bool chat_turn(nuri_chat_session *s, const char *message, bool verbose, bool terminal,
                      char *last_warning, size_t warning_cap) {
    nuri_error err;
    if (nuri_chat_session_add_message(s, "user", message, strlen(message), &err) != NURI_OK) {
        cli_error("%s", err.message);
        return false;
    }
    double t0 = cli_now();
    nuri_status st = nuri_chat_session_prepare(s, &err);
    if (st != NURI_OK) {
        nuri_chat_session_pop_message(s);
        if (st == NURI_ERR_CONTEXT_FULL) {
            fprintf(stderr, "nuri: the context is full: %s. Type /clear to start a new conversation "
                            "(this message was not sent).\n", err.message);
            return true;
        }
        if (st == NURI_ERR_INVALID_ARG) { /* the template rejected the conversation */
            fprintf(stderr, "nuri: %s (this message was not sent)\n", err.message);
            return true;
        }
        cli_error("%s", err.message);
        return false;
    }
    const char *warning = nuri_chat_session_warning(s);
    if (warning[0] && strcmp(warning, last_warning) != 0) { /* once, not every turn */
        fprintf(stderr, "nuri: warning: %s\n", warning);
        snprintf(last_warning, warning_cap, "%s", warning);
    }
    double t1 = cli_now();
    if (verbose) print_prompt_stats(s, t1 - t0);

    /* A Ctrl-C while the prompt was evaluated counts too: no reply then. */
    nuri_chat_end end = NURI_CHAT_GENERATING;
    const char *text;
    size_t len;
    while (end == NURI_CHAT_GENERATING && !interrupted) {
        if (nuri_chat_session_step(s, &text, &len, &end, &err) != NURI_OK) {
            cli_error("%s", err.message);
            return false;
        }
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    bool stopped = interrupted && end == NURI_CHAT_GENERATING;
    interrupted = 0;
    if (nuri_chat_session_end_reply(s, &text, &len, &err) != NURI_OK) {
        cli_error("%s", err.message);
        return false;
    }
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    double t2 = cli_now();
    if (stopped) fprintf(stderr, terminal ? "[stopped]\n" : "nuri: reply stopped (interrupted)\n");
    if (end == NURI_CHAT_CONTEXT_FULL)
        fprintf(stderr, "nuri: the context is full (%d tokens), so the reply was cut. Type /clear "
                        "to start a new conversation.\n", nuri_chat_session_stats(s).n_ctx);
    if (verbose) print_reply_stats(s, t2 - t1);
    return true;
}

/* ---- The command ------------------------------------------------------------------ */

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *system = NULL, *format = NULL;
    long n_predict = -1;
    cli_gen_options gen;
    cli_gen_defaults(&gen);
    bool verbose = false, ignore_eos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        int gen_opt = cli_gen_option(argc, argv, &i, &gen);
        if (gen_opt < 0) return 1;
        if (gen_opt > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(chat_usage, cli_gen_usage);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "--system")) ok = cli_take_str(argc, argv, &i, &system);
        else if (!strcmp(a, "--chat-template")) ok = cli_take_str(argc, argv, &i, &format);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = cli_take_int(argc, argv, &i, -1, 1L << 30, &n_predict);
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = true;
        else return cli_error("chat: unknown option '%s' (see nuri chat --help)", a);
        if (!ok) return 1;
    }
    if (!model_path) return cli_error("chat: no model given (-m FILE); see nuri chat --help");
    if (!cli_gen_validate(&gen, "chat")) return 1;
    if (n_predict == 0) return cli_error("chat: -n must be positive, or -1 for no limit");

    int status = 1;
    nuri_model *model = NULL;
    nuri_context *ctx = NULL;
    nuri_chat_template *tpl = NULL;
    nuri_chat_session *session = NULL;
    char *source = NULL, *bos = NULL, *eos = NULL;
    size_t source_len = 0;
    nuri_error err;
    char warning[768] = "";
    struct sigaction old_sigint;
    bool sigint_installed = false;

    /* The template first: a bad --chat-template name should not wait for the model. */
    if (cli_is_gguf(model_path) &&
        nuri_chat_gguf_info(model_path, &source, &source_len, NULL, NULL, &err) != NURI_OK) {
        cli_error("chat: %s: %s", model_path, err.message);
        goto done;
    }
    if (nuri_chat_template_select(source, source_len, format, &tpl, warning, sizeof warning, &err) != NURI_OK) {
        cli_error("chat: %s", err.message);
        goto done;
    }
    if (!(model = cli_load_model(model_path, tokenizer_path))) goto done;
    if (warning[0]) fprintf(stderr, "nuri: warning: %s\n", warning);

    nuri_context_params cp = cli_gen_context_params(&gen);
    if (nuri_context_create(model, &cp, &ctx, &err) != NURI_OK) {
        cli_error("%s", err.message);
        goto done;
    }

    bos = cli_token_text(model, nuri_token_bos(model));
    eos = cli_token_text(model, nuri_token_eos(model));
    nuri_chat_session_params sp = {
        .model = model,
        .ctx = ctx,
        .tpl = tpl,
        .bos_token = bos,
        .eos_token = eos,
        .system = system,
        .sampling = cli_gen_sampler_params(&gen),
        .n_predict = (int32_t)n_predict,
        .ignore_eog = ignore_eos,
    };
    if (nuri_chat_session_create(&sp, &session, &err) != NURI_OK) {
        cli_error("%s", err.message);
        goto done;
    }

    bool terminal = isatty(STDIN_FILENO);
    if (terminal) {
        using_history();
        fprintf(stderr, "nuri chat: %s, context %d tokens, template %s.\n"
                        "Type a message; /clear starts over, /exit or Ctrl-D quits, Ctrl-C stops a reply.\n",
                nuri_model_desc(model), nuri_context_n_ctx(ctx), nuri_chat_template_name(tpl));
    }
    install_sigint(&old_sigint);
    sigint_installed = true;

    bool interrupt_pending = false; /* the last prompt ended with Ctrl-C */
    for (;;) {
        char *line;
        read_result r = read_line(terminal, &line);
        if (r == READ_EOF) {
            if (terminal) fputc('\n', stderr);
            break;
        }
        if (r == READ_INTERRUPTED) {
            if (interrupt_pending) {
                fputc('\n', stderr);
                break;
            }
            interrupt_pending = true;
            fprintf(stderr, "\n(Ctrl-C again, Ctrl-D or /exit quits)\n");
            continue;
        }
        interrupt_pending = false;
        if (is_blank(line)) {
            free(line);
            continue;
        }
        if (terminal) add_history(line);
        if (line[0] == '/') {
            char *cmd = line;
            size_t n = strlen(cmd);
            while (n > 0 && (cmd[n - 1] == ' ' || cmd[n - 1] == '\t')) cmd[--n] = '\0';
            if (!strcmp(cmd, "/exit") || !strcmp(cmd, "/quit") || !strcmp(cmd, "/bye")) {
                free(line);
                break;
            }
            if (!strcmp(cmd, "/clear")) {
                nuri_chat_session_clear(session);
                fprintf(stderr, "(conversation cleared)\n");
            } else if (!strcmp(cmd, "/help") || !strcmp(cmd, "/?")) {
                fprintf(stderr, "/clear  forget the conversation\n/exit   quit (also Ctrl-D)\n");
            } else {
                fprintf(stderr, "nuri: unknown command %s (commands: /clear, /exit, /help)\n", cmd);
            }
            free(line);
            continue;
        }
        bool ok = chat_turn(session, line, verbose, terminal, warning, sizeof warning);
        free(line);
        if (!ok) goto done;
    }
    status = 0;
done:
    if (sigint_installed) sigaction(SIGINT, &old_sigint, NULL);
    nuri_chat_session_free(session);
    nuri_context_free(ctx);
    nuri_model_free(model);
    nuri_chat_template_free(tpl);
    free(source);
    free(bos);
    free(eos);
    return status;
}
