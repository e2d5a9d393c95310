/*
 * daemon_cli.h - the command-line and lifecycle plumbing both daemons share.
 *
 * Each daemon's main() keeps its own options (listeners, upstream or store)
 * and its own server object; everything else behaves the same in
 * pimap-proxy and pimap-gateway and lives here:
 *
 *   - the common options (--config, --check-config, --dump-config, --set,
 *     -f/--foreground, --pid-file, --log-file, --syslog, -v/--verbose,
 *     --trace, --version), handled by daemon_cli_option();
 *   - flags become KEY=VALUE overrides, kept so that every reload re-applies
 *     them over the file (flags always win);
 *   - a configuration is built whole (defaults, then the file, then the
 *     overrides) into a fresh struct, so a bad file never half-replaces a
 *     running configuration;
 *   - log.level/log.trace applied to log.c, the libev signal watchers, and
 *     detaching with a PID file.
 */
#ifndef PIMAP_DAEMON_CLI_H
#define PIMAP_DAEMON_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "cfg.h"
#include "log.h"

/* Exit status for any configuration or command-line error. */
#define DAEMON_EXIT_CONFIG 2

/* getopt_long values of the common options; a daemon numbers its own from DAEMON_OPT_OWN. */
enum daemon_opt {
	DAEMON_OPT_CONFIG = 0x1000,
	DAEMON_OPT_CHECK,
	DAEMON_OPT_DUMP,
	DAEMON_OPT_SET,
	DAEMON_OPT_PID_FILE,
	DAEMON_OPT_LOG_FILE,
	DAEMON_OPT_TRACE,
	DAEMON_OPT_VERSION,
	DAEMON_OPT_SYSLOG,
	DAEMON_OPT_OWN = 0x1100,
};

/* Short options of the common set, for getopt_long's optstring. */
#define DAEMON_CLI_SHORTOPTS "fv"

/* The common entries of a struct option array (no trailing comma, no terminator). */
#define DAEMON_CLI_LONGOPTS                                                   \
	{"config", required_argument, NULL, DAEMON_OPT_CONFIG},               \
	{"check-config", no_argument, NULL, DAEMON_OPT_CHECK},                \
	{"dump-config", no_argument, NULL, DAEMON_OPT_DUMP},                  \
	{"set", required_argument, NULL, DAEMON_OPT_SET},                     \
	{"foreground", no_argument, NULL, 'f'},                               \
	{"pid-file", required_argument, NULL, DAEMON_OPT_PID_FILE},           \
	{"log-file", required_argument, NULL, DAEMON_OPT_LOG_FILE},           \
	{"verbose", no_argument, NULL, 'v'},                                  \
	{"trace", no_argument, NULL, DAEMON_OPT_TRACE},                       \
	{"version", no_argument, NULL, DAEMON_OPT_VERSION},                   \
	{"syslog", no_argument, NULL, DAEMON_OPT_SYSLOG}

/* A flag turned into "key=value", re-applied after every reload. */
struct daemon_override {
	char *key;
	char *value;
	bool  list;  /* from daemon_cli_add_to_list: later values of the flag are appended */
};

struct daemon_cli {
	const char             *prog;         /* "pimap-proxy": prefix of messages, --version */
	const struct cfg_key   *table;        /* the daemon's key table, borrowed */
	size_t                  config_size;  /* sizeof the daemon's config struct */
	const char             *default_file; /* read when no --config is given, if it exists */
	const char             *config_file;  /* --config FILE (borrowed from argv), or NULL */
	bool                    check_only;   /* --check-config */
	bool                    dump_config;  /* --dump-config */
	bool                    foreground;   /* -f, --foreground */
	struct daemon_override *overrides;    /* in command-line order; malloc'd */
	size_t                  noverrides;
};

void daemon_cli_init(struct daemon_cli *cli, const char *prog, const struct cfg_key *table,
                     size_t config_size, const char *default_file);
void daemon_cli_free(struct daemon_cli *cli);

/* Record a flag as key=value (copied). Overrides apply in command-line order, after the file. */
void daemon_cli_set(struct daemon_cli *cli, const char *key, const char *value);

/*
 * A repeatable flag for a list key (--listen A --listen B): the values
 * accumulate into one override "A,B" that replaces the file's list. A
 * --set of the same key is a separate override and is not appended to.
 */
void daemon_cli_add_to_list(struct daemon_cli *cli, const char *key, const char *value);

/* Returned by daemon_cli_option() besides an exit status (>= 0). */
#define DAEMON_CLI_CONTINUE (-1) /* option taken: go on parsing */
#define DAEMON_CLI_NOT_MINE (-2) /* not a common option: the daemon handles it */

/*
 * Handle one getopt_long() result. --version prints and returns 0, a --set
 * without '=' prints the problem and returns DAEMON_EXIT_CONFIG; the caller
 * exits with a status >= 0.
 */
int daemon_cli_option(struct daemon_cli *cli, int opt, const char *arg);

/*
 * Build a complete configuration: the table's defaults, the config file
 * (--config, or the default file when it is readable), then the overrides.
 * Returns a new struct of config_size bytes, or NULL after reporting
 * "file:line:column: message" (to the log when to_log, else to stderr).
 */
void *daemon_cli_load_config(const struct daemon_cli *cli, bool to_log);
void daemon_cli_free_config(const struct daemon_cli *cli, void *config);

/* Where log lines go: the log.* keys both daemons share. */
struct daemon_log_target {
	const char *file;      /* log.file: "" = stderr */
	bool        syslog;    /* log.syslog */
	int         facility;  /* log.syslog_facility (enum log_facility_value) */
	const char *socket;    /* log.syslog_socket */
};

/*
 * Open the log target (at start and on SIGHUP): syslog when t->syslog,
 * else t->file or stderr. Returns 0, or -1 with the reason in err
 * (log.file and log.syslog together, a file that cannot be opened, a bad
 * socket path); the previous target then stays.
 */
int daemon_open_log(const char *prog, const struct daemon_log_target *t, char *err, size_t errlen);

/*
 * Apply log.level (an enum log_level_value index) and log.trace. The level
 * is first capped at ceiling (LOG_LEVEL_DEBUG: no cap); a trace is written
 * at debug level, so asking for one always implies debug.
 */
void daemon_apply_logging(int level_value, bool trace, enum log_level ceiling);

/*
 * Detach unless foreground (warning first when the logs would go to
 * /dev/null), then write pid_file unless it is "". Returns 0, or -1 after
 * logging the problem.
 */
int daemon_cli_start(struct ev_loop *loop, bool foreground, const char *log_file,
                     const char *pid_file);

/*
 * SIGTERM and SIGINT (drain), SIGHUP (reload), SIGUSR1 (dump), as libev
 * watchers: the callbacks run from the loop, never in signal context. Fill
 * the callbacks and data, then start.
 */
struct daemon_signals {
	ev_signal term, intr, hup, usr1;
	void    (*on_term)(void *data); /* also SIGINT; "signal N: draining" is logged first */
	void    (*on_hup)(void *data);
	void    (*on_usr1)(void *data);
	void     *data;
};

void daemon_signals_start(struct daemon_signals *s, struct ev_loop *loop);
void daemon_signals_stop(struct daemon_signals *s, struct ev_loop *loop);
/* Number of watchers daemon_signals_start() adds (for ev_unref in --stdio mode). */
#define DAEMON_SIGNAL_WATCHERS 4

#endif
