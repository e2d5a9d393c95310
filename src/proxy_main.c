/*
 * proxy_main.c - pimap-proxy: command line, configuration, signals, loop.
 *
 * Start-up order (fixed): parse flags -> load config file -> apply flags ->
 * validate -> open log -> bind listeners and load TLS -> detach -> PID file
 * -> loop -> orderly free. Flags always win over the file, also on reload.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "buf.h"
#include "cfg.h"
#include "daemon.h"
#include "log.h"
#include "proxy.h"
#include "proxy_config.h"
#include "tlsio.h"

#define DEFAULT_CONFIG_FILE SYSCONFDIR "/pimap-proxy.yaml"
#define EXIT_CONFIG 2

/* A flag turned into "key=value", kept to re-apply after every reload. */
struct override {
	char *key;
	char *value;
};

struct options {
	const char      *config_file;   /* NULL: the default file if it exists */
	bool             check_only;
	bool             dump_config;
	bool             foreground;
	bool             stdio_mode;
	struct override *overrides;
	size_t           noverrides;
	struct buf       listen_imap;   /* --listen values joined by commas */
	struct buf       listen_imaps;  /* --listen-tls values */
};

struct app {
	struct ev_loop      *loop;
	struct options      *opts;
	struct proxy_config *cfg;
	struct proxy_server *srv;
	ev_signal            sigterm, sigint, sighup, sigusr1;
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: pimap-proxy [options]\n"
	        "IMAP proxy for stock mail clients: listens on loopback, relays to an IMAP server\n"
	        "(compatibility mode) with compression and TLS upstream.\n"
	        "\n"
	        "  --listen ADDR             plain IMAP + STARTTLS listener (repeatable; default 127.0.0.1:1143)\n"
	        "  --listen-tls ADDR|none    implicit-TLS listener (repeatable; default 127.0.0.1:1993)\n"
	        "  --upstream URL            imaps://host[:port] or imap://host[:port] (STARTTLS)\n"
	        "  --ca-file FILE            trust anchors for the upstream certificate (default: system store)\n"
	        "  --allow-plaintext-upstream  allow imap:// without STARTTLS (credentials in clear!)\n"
	        "  --cert FILE --key FILE    certificate for the local TLS listeners (default: generated)\n"
	        "  --state-dir DIR           where the generated certificate lives\n"
	        "  --stdio                   serve one client on stdin/stdout (mutt's $tunnel)\n"
	        "  --config FILE             configuration file (default %s if present)\n"
	        "  --check-config            validate configuration and flags, then exit\n"
	        "  --dump-config             print the effective configuration, then exit\n"
	        "  --set KEY=VALUE           set any configuration key (see pimap-proxy(8))\n"
	        "  --foreground, -f          do not detach\n"
	        "  --pid-file FILE           write the process id here\n"
	        "  --log-file FILE           log here instead of stderr\n"
	        "  -v, --verbose             debug logging\n"
	        "  --trace                   protocol trace (passwords and message bodies elided)\n"
	        "  --version                 print the version\n"
	        "  --help                    this text\n",
	        DEFAULT_CONFIG_FILE);
}

static void add_override(struct options *o, const char *key, const char *value)
{
	o->overrides = xrealloc(o->overrides, (o->noverrides + 1) * sizeof(*o->overrides));
	o->overrides[o->noverrides].key = xstrdup(key);
	o->overrides[o->noverrides].value = xstrdup(value);
	o->noverrides++;
}

static void join_value(struct buf *b, const char *value)
{
	if (buf_len(b))
		buf_append(b, ",", 1);
	buf_append_str(b, value);
}

enum {
	OPT_LISTEN = 256, OPT_LISTEN_TLS, OPT_UPSTREAM, OPT_CA_FILE, OPT_ALLOW_PLAIN, OPT_CERT, OPT_KEY,
	OPT_STATE_DIR, OPT_STDIO, OPT_CONFIG, OPT_CHECK, OPT_DUMP, OPT_SET, OPT_PID_FILE, OPT_LOG_FILE,
	OPT_TRACE, OPT_VERSION, OPT_HELP,
};

/* Returns -1 to continue, or an exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, OPT_LISTEN},
		{"listen-tls", required_argument, NULL, OPT_LISTEN_TLS},
		{"upstream", required_argument, NULL, OPT_UPSTREAM},
		{"ca-file", required_argument, NULL, OPT_CA_FILE},
		{"allow-plaintext-upstream", no_argument, NULL, OPT_ALLOW_PLAIN},
		{"cert", required_argument, NULL, OPT_CERT},
		{"key", required_argument, NULL, OPT_KEY},
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},
		{"stdio", no_argument, NULL, OPT_STDIO},
		{"config", required_argument, NULL, OPT_CONFIG},
		{"check-config", no_argument, NULL, OPT_CHECK},
		{"dump-config", no_argument, NULL, OPT_DUMP},
		{"set", required_argument, NULL, OPT_SET},
		{"foreground", no_argument, NULL, 'f'},
		{"pid-file", required_argument, NULL, OPT_PID_FILE},
		{"log-file", required_argument, NULL, OPT_LOG_FILE},
		{"verbose", no_argument, NULL, 'v'},
		{"trace", no_argument, NULL, OPT_TRACE},
		{"version", no_argument, NULL, OPT_VERSION},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "fv", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN: join_value(&o->listen_imap, optarg); break;
		case OPT_LISTEN_TLS: join_value(&o->listen_imaps, optarg); break;
		case OPT_UPSTREAM: add_override(o, "upstream.url", optarg); break;
		case OPT_CA_FILE: add_override(o, "upstream.ca_file", optarg); break;
		case OPT_ALLOW_PLAIN: add_override(o, "upstream.allow_plaintext", "true"); break;
		case OPT_CERT: add_override(o, "tls.cert", optarg); break;
		case OPT_KEY: add_override(o, "tls.key", optarg); break;
		case OPT_STATE_DIR: add_override(o, "state_dir", optarg); break;
		case OPT_STDIO: o->stdio_mode = true; break;
		case OPT_CONFIG: o->config_file = optarg; break;
		case OPT_CHECK: o->check_only = true; break;
		case OPT_DUMP: o->dump_config = true; break;
		case OPT_SET: {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				fprintf(stderr, "pimap-proxy: --set needs KEY=VALUE, got '%s'\n", optarg);
				return EXIT_CONFIG;
			}
			*eq = '\0';
			add_override(o, optarg, eq + 1);
			*eq = '=';
			break;
		}
		case 'f': o->foreground = true; break;
		case OPT_PID_FILE: add_override(o, "pid_file", optarg); break;
		case OPT_LOG_FILE: add_override(o, "log.file", optarg); break;
		case 'v': add_override(o, "log.level", "debug"); break;
		case OPT_TRACE: add_override(o, "log.trace", "true"); break;
		case OPT_VERSION: printf("pimap-proxy %s\n", PACKAGE_VERSION); return 0;
		case OPT_HELP: usage(stdout); return 0;
		default: usage(stderr); return EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pimap-proxy: unexpected argument '%s'\n", argv[optind]);
		return EXIT_CONFIG;
	}
	if (buf_len(&o->listen_imap)) {
		buf_append(&o->listen_imap, "", 1);
		add_override(o, "listen.imap", (const char *)buf_head(&o->listen_imap));
	}
	if (buf_len(&o->listen_imaps)) {
		buf_append(&o->listen_imaps, "", 1);
		add_override(o, "listen.imaps", (const char *)buf_head(&o->listen_imaps));
	}
	return -1;
}

/*
 * Build a complete configuration: defaults, the file, then the flags.
 * Returns a new config, or NULL after printing/logging "file:line:col: message".
 */
static struct proxy_config *load_config(const struct options *o, bool to_log)
{
	struct proxy_config *cfg = xcalloc(1, sizeof(*cfg));
	struct cfg_error err;
	char msg[600];
	memset(&err, 0, sizeof(err));

	if (cfg_init_defaults(proxy_config_keys, cfg, &err) < 0)
		goto fail;
	const char *file = o->config_file;
	if (!file && access(DEFAULT_CONFIG_FILE, R_OK) == 0)
		file = DEFAULT_CONFIG_FILE;
	if (file && cfg_load_file(proxy_config_keys, cfg, file, &err) < 0)
		goto fail;
	for (size_t i = 0; i < o->noverrides; i++)
		if (cfg_set(proxy_config_keys, cfg, o->overrides[i].key, o->overrides[i].value, &err) < 0)
			goto fail;
	return cfg;
fail:
	cfg_format_error(&err, msg, sizeof(msg));
	if (to_log)
		log_err("%s", msg);
	else
		fprintf(stderr, "pimap-proxy: %s\n", msg);
	cfg_free(proxy_config_keys, cfg);
	free(cfg);
	return NULL;
}

/*
 * The key table validated every value (URLs and addresses included). A
 * missing upstream is only a warning here, so the shipped example file
 * (which names no server) validates; starting without one is an error.
 */
static void warn_incomplete(const struct proxy_config *cfg)
{
	if (!*cfg->upstream_url)
		fprintf(stderr, "pimap-proxy: warning: upstream.url is not set; give --upstream to start\n");
}

static void apply_logging(const struct proxy_config *cfg, bool stdio_mode)
{
	static const enum log_level levels[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG};
	enum log_level lvl = levels[cfg->log_level];
	/* In --stdio mode stderr is the client's terminal: only problems go there. */
	if (stdio_mode && !*cfg->log_file && lvl > LOG_LEVEL_WARN)
		lvl = LOG_LEVEL_WARN;
	/* Traces are written at DEBUG level: asking for them implies it. */
	if (cfg->log_trace)
		lvl = LOG_LEVEL_DEBUG;
	log_set_level(lvl);
	log_set_trace(cfg->log_trace);
}

static void free_config(struct proxy_config *cfg)
{
	if (!cfg)
		return;
	cfg_free(proxy_config_keys, cfg);
	free(cfg);
}

static void on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct app *app = w->data;
	log_info("signal %d: draining", w->signum);
	proxy_server_drain(app->srv);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct app *app = w->data;
	struct proxy_config *cfg = load_config(app->opts, true);
	if (!cfg) {
		log_err("configuration not reloaded; keeping the running one");
		return;
	}
	if (log_open(cfg->log_file) < 0)
		log_err("reopening log %s failed; keeping stderr", cfg->log_file);
	apply_logging(cfg, app->opts->stdio_mode);
	proxy_server_reconfigure(app->srv, cfg);
	free_config(app->cfg);
	app->cfg = cfg;
	log_info("configuration reloaded");
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct app *app = w->data;
	proxy_server_dump(app->srv);
}

static void free_options(struct options *o)
{
	for (size_t i = 0; i < o->noverrides; i++) {
		free(o->overrides[i].key);
		free(o->overrides[i].value);
	}
	free(o->overrides);
	buf_free(&o->listen_imap);
	buf_free(&o->listen_imaps);
}

int main(int argc, char **argv)
{
	struct options opts;
	struct app app;
	char err[600];
	int status = 0;

	memset(&opts, 0, sizeof(opts));
	memset(&app, 0, sizeof(app));
	buf_init(&opts.listen_imap, 0);
	buf_init(&opts.listen_imaps, 0);
	app.opts = &opts;

	int rc = parse_args(argc, argv, &opts);
	if (rc >= 0) {
		free_options(&opts);
		return rc;
	}
	app.cfg = load_config(&opts, false);
	if (!app.cfg) {
		free_options(&opts);
		return EXIT_CONFIG;
	}
	if (opts.dump_config) {
		cfg_dump(proxy_config_keys, app.cfg, stdout);
		goto out;
	}
	if (opts.check_only) {
		warn_incomplete(app.cfg);
		printf("configuration OK\n");
		goto out;
	}

	signal(SIGPIPE, SIG_IGN);
	if (log_open(app.cfg->log_file) < 0) {
		fprintf(stderr, "pimap-proxy: cannot open log file %s\n", app.cfg->log_file);
		status = EXIT_CONFIG;
		goto out;
	}
	apply_logging(app.cfg, opts.stdio_mode);
	if (tlsio_global_init() < 0) {
		fprintf(stderr, "pimap-proxy: GnuTLS initialisation failed\n");
		status = 1;
		goto out;
	}
	app.loop = ev_default_loop(EVFLAG_AUTO);
	app.srv = proxy_server_new(app.loop, app.cfg, opts.stdio_mode, err, sizeof(err));
	if (!app.srv) {
		log_err("%s", err);
		if (*app.cfg->log_file)
			fprintf(stderr, "pimap-proxy: %s\n", err);
		status = 1;
		goto out_tls;
	}
	if (!opts.foreground && !opts.stdio_mode) {
		if (!*app.cfg->log_file)
			log_warn("detaching with no log.file: logs are discarded");
		if (daemon_detach(err, sizeof(err)) < 0) {
			log_err("%s", err);
			status = 1;
			goto out_srv;
		}
		ev_loop_fork(app.loop);
	}
	if (*app.cfg->pid_file && daemon_write_pidfile(app.cfg->pid_file, err, sizeof(err)) < 0) {
		log_err("%s", err);
		status = 1;
		goto out_srv;
	}

	ev_signal_init(&app.sigterm, on_term, SIGTERM);
	ev_signal_init(&app.sigint, on_term, SIGINT);
	ev_signal_init(&app.sighup, on_hup, SIGHUP);
	ev_signal_init(&app.sigusr1, on_usr1, SIGUSR1);
	app.sigterm.data = app.sigint.data = app.sighup.data = app.sigusr1.data = &app;
	ev_signal_start(app.loop, &app.sigterm);
	ev_signal_start(app.loop, &app.sigint);
	ev_signal_start(app.loop, &app.sighup);
	ev_signal_start(app.loop, &app.sigusr1);
	/* With --stdio the loop must end when the one client is gone (after its
	 * last reply is flushed): signal watchers alone do not keep it alive. */
	if (opts.stdio_mode)
		for (int i = 0; i < 4; i++)
			ev_unref(app.loop);

	if (opts.stdio_mode && proxy_server_start_stdio(app.srv, err, sizeof(err)) < 0) {
		log_err("%s", err);
		status = 1;
	} else {
		log_info("pimap-proxy %s started (pid %ld)", PACKAGE_VERSION, (long)getpid());
		ev_run(app.loop, 0);
		log_info("pimap-proxy stopped");
	}

	if (opts.stdio_mode)
		for (int i = 0; i < 4; i++)
			ev_ref(app.loop);
	ev_signal_stop(app.loop, &app.sigterm);
	ev_signal_stop(app.loop, &app.sigint);
	ev_signal_stop(app.loop, &app.sighup);
	ev_signal_stop(app.loop, &app.sigusr1);
	if (*app.cfg->pid_file)
		daemon_remove_pidfile(app.cfg->pid_file);
out_srv:
	proxy_server_free(app.srv);
out_tls:
	tlsio_global_deinit();
out:
	free_config(app.cfg);
	free_options(&opts);
	log_close();
	return status;
}
