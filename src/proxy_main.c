/*
 * proxy_main.c - pimap-proxy: command line, configuration, signals, loop.
 *
 * Start-up order (fixed): parse flags -> load config file -> apply flags ->
 * validate -> open log -> bind listeners and load TLS -> detach -> PID file
 * -> loop -> orderly free. Flags always win over the file, also on reload.
 * What pimap-gateway does the same way lives in daemon_cli.c.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "cfg.h"
#include "daemon.h"
#include "daemon_cli.h"
#include "log.h"
#include "proxy.h"
#include "proxy_filter.h"
#include "proxy_link.h"
#include "proxy_config.h"
#include "proxy_status.h"
#include "tlsio.h"

#define DEFAULT_CONFIG_FILE SYSCONFDIR "/pimap-proxy.yaml"

struct app {
	struct ev_loop        *loop;
	struct daemon_cli     *cli;
	bool                   stdio_mode; /* --stdio or --smtp-stdio */
	bool                   smtp_stdio; /* --smtp-stdio */
	struct proxy_config   *cfg;
	struct proxy_server   *srv;
	struct daemon_signals  signals;
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: pimap-proxy [options]\n"
	        "IMAP proxy for stock mail clients: listens on loopback and speaks P-IMAP to a\n"
	        "pimap-gateway (one compressed, resumable link), or relays to a plain IMAP server\n"
	        "(compatibility mode) with compression and TLS upstream.\n"
	        "\n"
	        "  --listen ADDR             plain IMAP + STARTTLS listener (repeatable; default 127.0.0.1:1143)\n"
	        "  --listen-tls ADDR|none    implicit-TLS listener (repeatable; default 127.0.0.1:1993)\n"
	        "  --upstream URL            pimaps://gateway[:2993], pimap://gateway[:2143] (STARTTLS),\n"
	        "                            imaps://host[:993] or imap://host[:143] (STARTTLS)\n"
	        "  --device-id NAME          this device's name at the gateway (default: generated once)\n"
	        "  --no-macros               do not prefetch per macros (pimap-macros(5))\n"
	        "  --filters FILE            views and push rules from FILE (pimap-filters(5))\n"
	        "  --ca-file FILE            trust anchors for the upstream certificate (default: system store)\n"
	        "  --allow-plaintext-upstream  allow imap:// without STARTTLS (credentials in clear!)\n"
	        "  --cert FILE --key FILE    certificate for the local TLS listeners (default: generated)\n"
	        "  --state-dir DIR           where the generated certificate lives\n"
	        "  --stdio                   serve one client on stdin/stdout (mutt's $tunnel)\n"
	        "  --smtp-listen ADDR|none   SMTP submission listener with STARTTLS (repeatable; default 127.0.0.1:1587)\n"
	        "  --smtp-listen-tls ADDR|none  SMTP submission over TLS (repeatable; default 127.0.0.1:1465)\n"
	        "  --smtp-stdio              serve one SMTP client on stdin/stdout (e.g. swaks --pipe)\n"
	        "  --submission URL          compatibility mode: smtp://host[:587] or smtps://host[:465] to send through\n"
	        "  --status                  show the running proxy's accounts, links and last error\n"
	        "  --config FILE             configuration file (default %s if present)\n"
	        "  --check-config            validate configuration and flags, then exit\n"
	        "  --dump-config             print the effective configuration, then exit\n"
	        "  --set KEY=VALUE           set any configuration key (see pimap-proxy(8))\n"
	        "  --foreground, -f          do not detach\n"
	        "  --pid-file FILE           write the process id here\n"
	        "  --log-file FILE           log here instead of stderr\n"
	        "  --syslog                  log to the syslog daemon instead of stderr\n"
	        "  -v, --verbose             debug logging\n"
	        "  --trace                   protocol trace (passwords and message bodies elided)\n"
	        "  --version                 print the version\n"
	        "  --help                    this text\n",
	        DEFAULT_CONFIG_FILE);
}

enum {
	OPT_LISTEN = DAEMON_OPT_OWN, OPT_LISTEN_TLS, OPT_UPSTREAM, OPT_CA_FILE, OPT_ALLOW_PLAIN,
	OPT_CERT, OPT_KEY, OPT_STATE_DIR, OPT_STDIO, OPT_DEVICE_ID, OPT_NO_MACROS, OPT_FILTERS, OPT_HELP,
	OPT_SMTP_LISTEN, OPT_SMTP_LISTEN_TLS, OPT_SMTP_STDIO, OPT_SUBMISSION, OPT_STATUS,
};

/* Returns -1 to continue, or an exit status. */
static int parse_args(int argc, char **argv, struct daemon_cli *cli, bool *stdio_mode, bool *smtp_stdio,
                      bool *status_cmd)
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
		{"device-id", required_argument, NULL, OPT_DEVICE_ID},
		{"no-macros", no_argument, NULL, OPT_NO_MACROS},
		{"smtp-listen", required_argument, NULL, OPT_SMTP_LISTEN},
		{"smtp-listen-tls", required_argument, NULL, OPT_SMTP_LISTEN_TLS},
		{"smtp-stdio", no_argument, NULL, OPT_SMTP_STDIO},
		{"submission", required_argument, NULL, OPT_SUBMISSION},
		{"filters", required_argument, NULL, OPT_FILTERS},
		{"help", no_argument, NULL, OPT_HELP},
		{"status", no_argument, NULL, OPT_STATUS},
		DAEMON_CLI_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	int c, rc;

	while ((c = getopt_long(argc, argv, DAEMON_CLI_SHORTOPTS, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN: daemon_cli_add_to_list(cli, "listen.imap", optarg); break;
		case OPT_LISTEN_TLS: daemon_cli_add_to_list(cli, "listen.imaps", optarg); break;
		case OPT_UPSTREAM: daemon_cli_set(cli, "upstream.url", optarg); break;
		case OPT_CA_FILE: daemon_cli_set(cli, "upstream.ca_file", optarg); break;
		case OPT_ALLOW_PLAIN: daemon_cli_set(cli, "upstream.allow_plaintext", "true"); break;
		case OPT_CERT: daemon_cli_set(cli, "tls.cert", optarg); break;
		case OPT_KEY: daemon_cli_set(cli, "tls.key", optarg); break;
		case OPT_STATE_DIR: daemon_cli_set(cli, "state_dir", optarg); break;
		case OPT_STDIO: *stdio_mode = true; break;
		case OPT_DEVICE_ID: daemon_cli_set(cli, "device_id", optarg); break;
		case OPT_NO_MACROS: daemon_cli_set(cli, "macros.enabled", "false"); break;
		case OPT_SMTP_LISTEN: daemon_cli_add_to_list(cli, "smtp.listen", optarg); break;
		case OPT_SMTP_LISTEN_TLS: daemon_cli_add_to_list(cli, "smtp.listen_tls", optarg); break;
		case OPT_SMTP_STDIO: *stdio_mode = *smtp_stdio = true; break;
		case OPT_SUBMISSION: daemon_cli_set(cli, "smtp.submission_url", optarg); break;
		case OPT_FILTERS: daemon_cli_set(cli, "filters.file", optarg); break;
		case OPT_HELP: usage(stdout); return 0;
		case OPT_STATUS: *status_cmd = true; break;
		default:
			rc = daemon_cli_option(cli, c, optarg);
			if (rc == DAEMON_CLI_NOT_MINE) {
				usage(stderr);
				return DAEMON_EXIT_CONFIG;
			}
			if (rc != DAEMON_CLI_CONTINUE)
				return rc;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pimap-proxy: unexpected argument '%s'\n", argv[optind]);
		return DAEMON_EXIT_CONFIG;
	}
	return -1;
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
	/* In --stdio mode stderr is the client's terminal: only problems go there. */
	bool quiet = stdio_mode && !*cfg->log_file && !cfg->log_syslog;

	daemon_apply_logging(cfg->log_level, cfg->log_trace, quiet ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG);
}

static int open_log(const struct proxy_config *cfg, char *err, size_t errlen)
{
	struct daemon_log_target t = {
		.file = cfg->log_file, .syslog = cfg->log_syslog,
		.facility = cfg->log_syslog_facility, .socket = cfg->log_syslog_socket,
	};
	return daemon_open_log("pimap-proxy", &t, err, errlen);
}

static void on_term(void *data)
{
	struct app *app = data;

	proxy_server_drain(app->srv);
}

static void on_hup(void *data)
{
	struct app *app = data;
	struct proxy_config *cfg = daemon_cli_load_config(app->cli, true);

	if (!cfg) {
		log_err("configuration not reloaded; keeping the running one");
		return;
	}
	char lerr[600];
	if (open_log(cfg, lerr, sizeof(lerr)) < 0)
		log_err("log not reopened: %s; keeping the previous target", lerr);
	apply_logging(cfg, app->stdio_mode);
	proxy_server_reconfigure(app->srv, cfg);
	daemon_cli_free_config(app->cli, app->cfg);
	app->cfg = cfg;
	log_info("configuration reloaded");
}

static void on_usr1(void *data)
{
	struct app *app = data;

	proxy_server_dump(app->srv);
}

int main(int argc, char **argv)
{
	struct daemon_cli cli;
	struct app app;
	char err[600];
	int status = 0;

	memset(&app, 0, sizeof(app));
	daemon_cli_init(&cli, "pimap-proxy", proxy_config_keys, sizeof(struct proxy_config),
	                DEFAULT_CONFIG_FILE);
	app.cli = &cli;

	bool status_cmd = false;
	int rc = parse_args(argc, argv, &cli, &app.stdio_mode, &app.smtp_stdio, &status_cmd);
	if (rc >= 0) {
		daemon_cli_free(&cli);
		return rc;
	}
	app.cfg = daemon_cli_load_config(&cli, false);
	if (!app.cfg) {
		daemon_cli_free(&cli);
		return DAEMON_EXIT_CONFIG;
	}
	if (cli.dump_config) {
		cfg_dump(proxy_config_keys, app.cfg, stdout);
		goto out;
	}
	if (status_cmd) {
		status = proxy_status_command(app.cfg, stdout);
		goto out;
	}
	if (cli.check_only) {
		struct macro_set *macros;
		if (link_load_macros(app.cfg, &macros, err, sizeof(err)) < 0) {
			fprintf(stderr, "pimap-proxy: macros: %s\n", err);
			status = DAEMON_EXIT_CONFIG;
			goto out;
		}
		link_free_macros(macros);
		struct filter_set *filters;
		if (proxy_filters_load(app.cfg, &filters, err, sizeof(err)) < 0) {
			fprintf(stderr, "pimap-proxy: filters: %s\n", err);
			status = DAEMON_EXIT_CONFIG;
			goto out;
		}
		proxy_filters_free(filters);
		warn_incomplete(app.cfg);
		printf("configuration OK\n");
		goto out;
	}

	signal(SIGPIPE, SIG_IGN);
	if (open_log(app.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "pimap-proxy: %s\n", err);
		status = DAEMON_EXIT_CONFIG;
		goto out;
	}
	apply_logging(app.cfg, app.stdio_mode);
	if (tlsio_global_init() < 0) {
		fprintf(stderr, "pimap-proxy: GnuTLS initialisation failed\n");
		status = 1;
		goto out;
	}
	app.loop = ev_default_loop(EVFLAG_AUTO);
	app.srv = proxy_server_new(app.loop, app.cfg, app.stdio_mode, err, sizeof(err));
	if (!app.srv) {
		log_err("%s", err);
		if (*app.cfg->log_file)
			fprintf(stderr, "pimap-proxy: %s\n", err);
		status = 1;
		goto out_tls;
	}
	if (daemon_cli_start(app.loop, cli.foreground || app.stdio_mode, app.cfg->log_file,
	                     app.cfg->pid_file) < 0) {
		status = 1;
		goto out_srv;
	}
	/* After detaching: the socket belongs to the process that serves it. A
	 * status socket that cannot be opened is reported, not fatal. */
	if (proxy_status_start(app.srv, app.loop, app.cfg, app.stdio_mode, err, sizeof(err)) < 0)
		log_warn("no status report: %s", err);

	app.signals.on_term = on_term;
	app.signals.on_hup = on_hup;
	app.signals.on_usr1 = on_usr1;
	app.signals.data = &app;
	daemon_signals_start(&app.signals, app.loop);
	/* With --stdio the loop must end when the one client is gone (after its
	 * last reply is flushed): signal watchers alone do not keep it alive. */
	if (app.stdio_mode)
		for (int i = 0; i < DAEMON_SIGNAL_WATCHERS; i++)
			ev_unref(app.loop);

	if (app.smtp_stdio ? proxy_server_start_smtp_stdio(app.srv, err, sizeof(err)) < 0
	                   : app.stdio_mode && proxy_server_start_stdio(app.srv, err, sizeof(err)) < 0) {
		log_err("%s", err);
		status = 1;
	} else {
		log_info("pimap-proxy %s started (pid %ld)", PACKAGE_VERSION, (long)getpid());
		ev_run(app.loop, 0);
		log_info("pimap-proxy stopped");
	}

	if (app.stdio_mode)
		for (int i = 0; i < DAEMON_SIGNAL_WATCHERS; i++)
			ev_ref(app.loop);
	daemon_signals_stop(&app.signals, app.loop);
	if (*app.cfg->pid_file)
		daemon_remove_pidfile(app.cfg->pid_file);
out_srv:
	proxy_status_stop(app.srv);
	proxy_server_free(app.srv);
out_tls:
	tlsio_global_deinit();
out:
	daemon_cli_free_config(&cli, app.cfg);
	daemon_cli_free(&cli);
	log_close();
	return status;
}
