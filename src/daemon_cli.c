/*
 * daemon_cli.c - command line, configuration loading, logging set-up,
 * signals and detaching, shared by both daemons (see daemon_cli.h).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "buf.h"
#include "daemon.h"
#include "daemon_cli.h"
#include "proxy_config.h" /* enum log_level_value, shared by both tables */

void daemon_cli_init(struct daemon_cli *cli, const char *prog, const struct cfg_key *table,
                     size_t config_size, const char *default_file)
{
	memset(cli, 0, sizeof(*cli));
	cli->prog = prog;
	cli->table = table;
	cli->config_size = config_size;
	cli->default_file = default_file;
}

void daemon_cli_free(struct daemon_cli *cli)
{
	for (size_t i = 0; i < cli->noverrides; i++) {
		free(cli->overrides[i].key);
		free(cli->overrides[i].value);
	}
	free(cli->overrides);
	cli->overrides = NULL;
	cli->noverrides = 0;
}

static struct daemon_override *add_override(struct daemon_cli *cli, const char *key,
                                            const char *value)
{
	struct daemon_override *o;

	cli->overrides = xrealloc(cli->overrides, (cli->noverrides + 1) * sizeof(*cli->overrides));
	o = &cli->overrides[cli->noverrides++];
	o->key = xstrdup(key);
	o->value = xstrdup(value);
	o->list = false;
	return o;
}

void daemon_cli_set(struct daemon_cli *cli, const char *key, const char *value)
{
	add_override(cli, key, value);
}

void daemon_cli_add_to_list(struct daemon_cli *cli, const char *key, const char *value)
{
	for (size_t i = 0; i < cli->noverrides; i++) {
		struct daemon_override *o = &cli->overrides[i];

		if (o->list && strcmp(o->key, key) == 0) {
			size_t n = strlen(o->value), m = strlen(value);

			o->value = xrealloc(o->value, n + 1 + m + 1);
			o->value[n] = ',';
			memcpy(o->value + n + 1, value, m + 1);
			return;
		}
	}
	add_override(cli, key, value)->list = true;
}

int daemon_cli_option(struct daemon_cli *cli, int opt, const char *arg)
{
	const char *eq;
	char *key;

	switch (opt) {
	case DAEMON_OPT_CONFIG:
		cli->config_file = arg;
		break;
	case DAEMON_OPT_CHECK:
		cli->check_only = true;
		break;
	case DAEMON_OPT_DUMP:
		cli->dump_config = true;
		break;
	case DAEMON_OPT_SET:
		eq = strchr(arg, '=');
		if (!eq || eq == arg) {
			fprintf(stderr, "%s: --set needs KEY=VALUE, got '%s'\n", cli->prog, arg);
			return DAEMON_EXIT_CONFIG;
		}
		key = xmalloc((size_t)(eq - arg) + 1);
		memcpy(key, arg, (size_t)(eq - arg));
		key[eq - arg] = '\0';
		add_override(cli, key, eq + 1);
		free(key);
		break;
	case 'f':
		cli->foreground = true;
		break;
	case DAEMON_OPT_PID_FILE:
		add_override(cli, "pid_file", arg);
		break;
	case DAEMON_OPT_LOG_FILE:
		add_override(cli, "log.file", arg);
		break;
	case 'v':
		add_override(cli, "log.level", "debug");
		break;
	case DAEMON_OPT_TRACE:
		add_override(cli, "log.trace", "true");
		break;
	case DAEMON_OPT_SYSLOG:
		add_override(cli, "log.syslog", "true");
		break;
	case DAEMON_OPT_VERSION:
		printf("%s %s\n", cli->prog, PACKAGE_VERSION);
		return 0;
	default:
		return DAEMON_CLI_NOT_MINE;
	}
	return DAEMON_CLI_CONTINUE;
}

void *daemon_cli_load_config(const struct daemon_cli *cli, bool to_log)
{
	void *cfg = xcalloc(1, cli->config_size);
	const char *file = cli->config_file;
	struct cfg_error err;
	char msg[600];

	memset(&err, 0, sizeof(err));
	if (cfg_init_defaults(cli->table, cfg, &err) < 0)
		goto fail;
	/* The default file is optional (flags alone are a complete setup); --config is not. */
	if (!file && cli->default_file && access(cli->default_file, R_OK) == 0)
		file = cli->default_file;
	if (file && cfg_load_file(cli->table, cfg, file, &err) < 0)
		goto fail;
	for (size_t i = 0; i < cli->noverrides; i++)
		if (cfg_set(cli->table, cfg, cli->overrides[i].key, cli->overrides[i].value, &err) < 0)
			goto fail;
	return cfg;
fail:
	cfg_format_error(&err, msg, sizeof(msg));
	if (to_log)
		log_err("%s", msg);
	else
		fprintf(stderr, "%s: %s\n", cli->prog, msg);
	daemon_cli_free_config(cli, cfg);
	return NULL;
}

void daemon_cli_free_config(const struct daemon_cli *cli, void *config)
{
	if (!config)
		return;
	cfg_free(cli->table, config);
	free(config);
}

int daemon_open_log(const char *prog, const struct daemon_log_target *t, char *err, size_t errlen)
{
	static const int facilities[] = {
		[LOGF_MAIL] = LOG_MAIL, [LOGF_DAEMON] = LOG_DAEMON, [LOGF_USER] = LOG_USER,
		[LOGF_LOCAL0] = LOG_LOCAL0, [LOGF_LOCAL1] = LOG_LOCAL1, [LOGF_LOCAL2] = LOG_LOCAL2,
		[LOGF_LOCAL3] = LOG_LOCAL3, [LOGF_LOCAL4] = LOG_LOCAL4, [LOGF_LOCAL5] = LOG_LOCAL5,
		[LOGF_LOCAL6] = LOG_LOCAL6, [LOGF_LOCAL7] = LOG_LOCAL7,
	};

	if (t->syslog && *t->file) {
		snprintf(err, errlen, "log.file and log.syslog exclude each other (log.file is %s)", t->file);
		return -1;
	}
	if (t->syslog) {
		int f = t->facility >= 0 && (size_t)t->facility < sizeof(facilities) / sizeof(facilities[0])
		        ? facilities[t->facility] : LOG_MAIL;
		if (log_open_syslog(prog, f, t->socket) < 0) {
			snprintf(err, errlen, "log.syslog_socket %s: %s", t->socket, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (log_open(t->file) < 0) {
		snprintf(err, errlen, "cannot open log file %s: %s", t->file, strerror(errno));
		return -1;
	}
	return 0;
}

void daemon_apply_logging(int level_value, bool trace, enum log_level ceiling)
{
	static const enum log_level levels[] = {
		[LOGV_ERROR] = LOG_LEVEL_ERROR,
		[LOGV_WARN] = LOG_LEVEL_WARN,
		[LOGV_INFO] = LOG_LEVEL_INFO,
		[LOGV_DEBUG] = LOG_LEVEL_DEBUG,
	};
	enum log_level lvl = LOG_LEVEL_INFO;

	if (level_value >= 0 && (size_t)level_value < sizeof(levels) / sizeof(levels[0]))
		lvl = levels[level_value];
	if (lvl > ceiling)
		lvl = ceiling;
	if (trace)
		lvl = LOG_LEVEL_DEBUG;
	log_set_level(lvl);
	log_set_trace(trace);
}

int daemon_cli_start(struct ev_loop *loop, bool foreground, const char *log_file,
                     const char *pid_file)
{
	char err[600];

	if (!foreground) {
		if (!*log_file && !log_to_syslog())
			log_warn("detaching with no log.file or log.syslog: logs are discarded");
		if (daemon_detach(err, sizeof(err)) < 0) {
			log_err("%s", err);
			return -1;
		}
		/* libev's signal pipe and backend fd must be re-created in the child. */
		ev_loop_fork(loop);
	}
	if (*pid_file && daemon_write_pidfile(pid_file, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return -1;
	}
	return 0;
}

static void on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon_signals *s = w->data;

	log_info("signal %d: draining", w->signum);
	s->on_term(s->data);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon_signals *s = w->data;

	s->on_hup(s->data);
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon_signals *s = w->data;

	s->on_usr1(s->data);
}

void daemon_signals_start(struct daemon_signals *s, struct ev_loop *loop)
{
	ev_signal_init(&s->term, on_term, SIGTERM);
	ev_signal_init(&s->intr, on_term, SIGINT);
	ev_signal_init(&s->hup, on_hup, SIGHUP);
	ev_signal_init(&s->usr1, on_usr1, SIGUSR1);
	s->term.data = s->intr.data = s->hup.data = s->usr1.data = s;
	ev_signal_start(loop, &s->term);
	ev_signal_start(loop, &s->intr);
	ev_signal_start(loop, &s->hup);
	ev_signal_start(loop, &s->usr1);
}

void daemon_signals_stop(struct daemon_signals *s, struct ev_loop *loop)
{
	ev_signal_stop(loop, &s->term);
	ev_signal_stop(loop, &s->intr);
	ev_signal_stop(loop, &s->hup);
	ev_signal_stop(loop, &s->usr1);
}
