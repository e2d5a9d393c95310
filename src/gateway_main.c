/*
 * gateway_main.c - pimap-gateway: command line, configuration, signals, loop.
 *
 * Start-up order (fixed), as in pimap-proxy: parse flags -> load config file
 * -> apply flags -> validate -> open log -> open the state database, load TLS
 * and bind listeners (gateway_server_new) -> detach -> PID file -> loop ->
 * orderly free. Flags always win over the file, also on reload. The plumbing
 * both daemons share is in daemon_cli.c; the server itself is gateway.c.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ev.h>

#include "cfg.h"
#include "daemon.h"
#include "daemon_cli.h"
#include "gateway.h"
#include "gateway_config.h"
#include "log.h"
#include "tlsio.h"

#define DEFAULT_CONFIG_FILE SYSCONFDIR "/pimap-gateway.yaml"

struct app {
	struct ev_loop         *loop;
	struct daemon_cli      *cli;
	struct gateway_config  *cfg;
	struct gateway_server  *srv;
	struct daemon_signals   signals;
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: pimap-gateway --store URL [options]\n"
	        "P-IMAP server in front of an IMAP store: device sessions that outlive connections,\n"
	        "event queues, RESYNC, filters and preferences (see pimap-gateway(8)).\n"
	        "\n"
	        "  --listen ADDR|none        implicit-TLS P-IMAP listener (repeatable; default 127.0.0.1:2993)\n"
	        "  --listen-starttls ADDR|none  P-IMAP listener with STARTTLS (repeatable; default 127.0.0.1:2143)\n"
	        "  --listen-https ADDR|none  P-IMAP over HTTPS, at http.path (repeatable; default none)\n"
	        "  --cert FILE --key FILE    certificate and key for the listeners (default: generated)\n"
	        "  --store URL               the IMAP store: imaps://host[:port] or imap://host[:port] (STARTTLS)\n"
	        "  --ca-file FILE            trust anchors for the store's certificate (default: system store)\n"
	        "  --allow-plaintext-store   allow imap:// without STARTTLS (credentials in clear!)\n"
	        "  --state-dir DIR           sessions database and generated certificate\n"
	        "                            (default /var/lib/pimap-gateway)\n"
	        "  --config FILE             configuration file (default %s if present)\n"
	        "  --check-config            validate configuration and flags, then exit\n"
	        "  --dump-config             print the effective configuration, then exit\n"
	        "  --set KEY=VALUE           set any configuration key (see pimap-gateway(8))\n"
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
	OPT_LISTEN = DAEMON_OPT_OWN, OPT_LISTEN_STARTTLS, OPT_LISTEN_HTTPS, OPT_CERT, OPT_KEY, OPT_STORE, OPT_CA_FILE,
	OPT_ALLOW_PLAIN, OPT_STATE_DIR, OPT_HELP,
};

/* Returns -1 to continue, or an exit status. */
static int parse_args(int argc, char **argv, struct daemon_cli *cli)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, OPT_LISTEN},
		{"listen-starttls", required_argument, NULL, OPT_LISTEN_STARTTLS},
		{"listen-https", required_argument, NULL, OPT_LISTEN_HTTPS},
		{"cert", required_argument, NULL, OPT_CERT},
		{"key", required_argument, NULL, OPT_KEY},
		{"store", required_argument, NULL, OPT_STORE},
		{"ca-file", required_argument, NULL, OPT_CA_FILE},
		{"allow-plaintext-store", no_argument, NULL, OPT_ALLOW_PLAIN},
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},
		{"help", no_argument, NULL, OPT_HELP},
		DAEMON_CLI_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	int c, rc;

	while ((c = getopt_long(argc, argv, DAEMON_CLI_SHORTOPTS, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN: daemon_cli_add_to_list(cli, "listen.pimaps", optarg); break;
		case OPT_LISTEN_STARTTLS: daemon_cli_add_to_list(cli, "listen.pimap", optarg); break;
		case OPT_LISTEN_HTTPS: daemon_cli_add_to_list(cli, "listen.https", optarg); break;
		case OPT_CERT: daemon_cli_set(cli, "tls.cert", optarg); break;
		case OPT_KEY: daemon_cli_set(cli, "tls.key", optarg); break;
		case OPT_STORE: daemon_cli_set(cli, "store.url", optarg); break;
		case OPT_CA_FILE: daemon_cli_set(cli, "store.ca_file", optarg); break;
		case OPT_ALLOW_PLAIN: daemon_cli_set(cli, "store.allow_plaintext", "true"); break;
		case OPT_STATE_DIR: daemon_cli_set(cli, "state_dir", optarg); break;
		case OPT_HELP: usage(stdout); return 0;
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
		fprintf(stderr, "pimap-gateway: unexpected argument '%s'\n", argv[optind]);
		return DAEMON_EXIT_CONFIG;
	}
	return -1;
}

/* True if the list names at least one address ("none" and "" name none). */
static bool has_listener(char **addrs)
{
	for (char **a = addrs; a && *a; a++)
		if (**a && strcasecmp(*a, "none") != 0)
			return true;
	return false;
}

/*
 * What the key table cannot check, because it spans keys. Returns 0, or -1
 * with the problem in msg. A missing store is an error only when starting:
 * the shipped example names no store and must still pass --check-config
 * (with a warning, as pimap-proxy treats a missing upstream).
 */
static int check_config(const struct gateway_config *cfg, bool starting, char *msg, size_t len)
{
	if (starting && !*cfg->store_url) {
		snprintf(msg, len, "store.url is required: give --store imaps://host[:port]");
		return -1;
	}
	if (!*cfg->tls_cert_file != !*cfg->tls_key_file) {
		snprintf(msg, len, "tls.cert and tls.key go together: set both, or neither for a generated certificate");
		return -1;
	}
	if (!has_listener(cfg->listen_pimaps) && !has_listener(cfg->listen_pimap) && !has_listener(cfg->listen_https)) {
		snprintf(msg, len, "no listener: listen.pimaps, listen.pimap and listen.https are all empty");
		return -1;
	}
	return 0;
}

static void apply_logging(const struct gateway_config *cfg)
{
	daemon_apply_logging(cfg->log_level, cfg->log_trace, LOG_LEVEL_DEBUG);
}

static int open_log(const struct gateway_config *cfg, char *err, size_t errlen)
{
	struct daemon_log_target t = {
		.file = cfg->log_file, .syslog = cfg->log_syslog,
		.facility = cfg->log_syslog_facility, .socket = cfg->log_syslog_socket,
	};
	return daemon_open_log("pimap-gateway", &t, err, errlen);
}

static void on_term(void *data)
{
	struct app *app = data;

	gateway_server_drain(app->srv);
}

/* SIGHUP: the file again, the flags over it; on any error the running configuration stays. */
static void on_hup(void *data)
{
	struct app *app = data;
	struct gateway_config *cfg = daemon_cli_load_config(app->cli, true);
	char msg[300];

	if (!cfg) {
		log_err("configuration not reloaded; keeping the running one");
		return;
	}
	if (check_config(cfg, true, msg, sizeof(msg)) < 0) {
		log_err("%s", msg);
		log_err("configuration not reloaded; keeping the running one");
		daemon_cli_free_config(app->cli, cfg);
		return;
	}
	char lerr[600];
	if (open_log(cfg, lerr, sizeof(lerr)) < 0)
		log_err("log not reopened: %s; keeping the previous target", lerr);
	apply_logging(cfg);
	gateway_server_reconfigure(app->srv, cfg);
	daemon_cli_free_config(app->cli, app->cfg);
	app->cfg = cfg;
	log_info("configuration reloaded");
}

static void on_usr1(void *data)
{
	struct app *app = data;

	gateway_server_dump(app->srv);
}

int main(int argc, char **argv)
{
	struct daemon_cli cli;
	struct app app;
	char err[600];
	int status = 0;

	memset(&app, 0, sizeof(app));
	daemon_cli_init(&cli, "pimap-gateway", gateway_config_keys, sizeof(struct gateway_config),
	                DEFAULT_CONFIG_FILE);
	app.cli = &cli;

	int rc = parse_args(argc, argv, &cli);
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
		cfg_dump(gateway_config_keys, app.cfg, stdout);
		goto out;
	}
	if (check_config(app.cfg, !cli.check_only, err, sizeof(err)) < 0) {
		fprintf(stderr, "pimap-gateway: %s\n", err);
		status = DAEMON_EXIT_CONFIG;
		goto out;
	}
	if (cli.check_only) {
		if (!*app.cfg->store_url)
			fprintf(stderr, "pimap-gateway: warning: store.url is not set; give --store to start\n");
		printf("configuration OK\n");
		goto out;
	}

	signal(SIGPIPE, SIG_IGN);
	if (open_log(app.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "pimap-gateway: %s\n", err);
		status = DAEMON_EXIT_CONFIG;
		goto out;
	}
	apply_logging(app.cfg);
	if (tlsio_global_init() < 0) {
		fprintf(stderr, "pimap-gateway: GnuTLS initialisation failed\n");
		status = 1;
		goto out;
	}
	app.loop = ev_default_loop(EVFLAG_AUTO);
	app.srv = gateway_server_new(app.loop, app.cfg, err, sizeof(err));
	if (!app.srv) {
		log_err("%s", err);
		if (*app.cfg->log_file)
			fprintf(stderr, "pimap-gateway: %s\n", err);
		status = 1;
		goto out_tls;
	}
	if (daemon_cli_start(app.loop, cli.foreground, app.cfg->log_file, app.cfg->pid_file) < 0) {
		status = 1;
		goto out_srv;
	}

	app.signals.on_term = on_term;
	app.signals.on_hup = on_hup;
	app.signals.on_usr1 = on_usr1;
	app.signals.data = &app;
	daemon_signals_start(&app.signals, app.loop);

	log_info("pimap-gateway %s started (pid %ld)", PACKAGE_VERSION, (long)getpid());
	ev_run(app.loop, 0);
	log_info("pimap-gateway stopped");

	daemon_signals_stop(&app.signals, app.loop);
	if (*app.cfg->pid_file)
		daemon_remove_pidfile(app.cfg->pid_file);
out_srv:
	gateway_server_free(app.srv);
out_tls:
	tlsio_global_deinit();
out:
	daemon_cli_free_config(&cli, app.cfg);
	daemon_cli_free(&cli);
	log_close();
	return status;
}
