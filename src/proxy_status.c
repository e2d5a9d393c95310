/*
 * proxy_status_socket.c - pimap-proxy's sections of the status report and the
 * --status command (see proxy_status.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "buf.h"
#include "daemon.h"
#include "imap_write.h" /* proxy_session.h uses its limits */
#include "log.h"
#include "proxy.h"
#include "proxy_link.h"
#include "proxy_session.h"
#include "proxy_smtp.h"
#include "proxy_status.h"
#include "sasl.h"
#include "status_socket.h"

/* What the sections read, besides the server. */
struct proxy_status_ctx {
	struct proxy_server *srv;
	ev_tstamp            started;
	bool                 stdio_mode;
};

/* A name as the report shows it: one line, printable. */
static void put_clean(struct buf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		buf_append(out, c < 0x20 || c == 0x7f ? "?" : (const char *)&s[i], 1);
	}
}

static void put_list(struct buf *out, char **addrs, const char *kind, bool *first)
{
	for (size_t i = 0; addrs && addrs[i]; i++) {
		if (strcmp(addrs[i], "none") == 0)
			continue;
		buf_printf(out, "%s%s (%s)", *first ? "" : ", ", addrs[i], kind);
		*first = false;
	}
}

static void section_daemon(void *data, struct buf *out)
{
	struct proxy_status_ctx *ctx = data;
	const struct proxy_server *srv = ctx->srv;
	const struct proxy_config *cfg = srv->cfg;
	char up[32];
	bool first = true;

	status_duration(ev_now(srv->loop) - ctx->started, up, sizeof(up));
	buf_printf(out, "pimap-proxy: %s, pid %ld, up %s\n", PACKAGE_VERSION, (long)getpid(), up);
	buf_printf(out, "mode: %s, upstream %s", srv->gateway ? "gateway" : "compatibility", cfg->upstream_url);
	if (*cfg->upstream_http_proxy)
		buf_printf(out, ", through %s", cfg->upstream_http_proxy);
	if (srv->gateway)
		buf_printf(out, ", device %s", srv->device_id ? srv->device_id : "?");
	buf_append_str(out, "\n");
	buf_append_str(out, "listen: ");
	if (ctx->stdio_mode) {
		buf_append_str(out, "stdio");
	} else {
		put_list(out, cfg->listen_imap, "imap", &first);
		put_list(out, cfg->listen_imaps, "imaps", &first);
		if (first)
			buf_append_str(out, "none");
	}
	buf_append_str(out, "\n");
	buf_printf(out, "clients: %u connected, at most %lld%s\n", srv->nsessions, cfg->max_clients,
	           srv->draining ? ", draining" : "");
}

/* The login name of a session, or NULL before a successful login. */
static const char *session_user(const struct session *s, struct link_report *lr)
{
	if (s->link) {
		link_report(s, lr);
		return s->authenticated || lr->up ? lr->user : NULL;
	}
	return s->authenticated && s->login_user[0] ? s->login_user : NULL;
}

static void session_line(const struct session *s, struct buf *out)
{
	struct link_report lr;
	const char *user = session_user(s, &lr);
	char d[32];

	buf_append_str(out, "connection ");
	put_clean(out, s->prefix, strlen(s->prefix));
	buf_append_str(out, ": ");
	if (user)
		put_clean(out, user, strlen(user));
	else
		buf_append_str(out, s->authenticated ? "logged in" : "not logged in");
	if (s->link) {
		if (lr.mailbox) {
			buf_append_str(out, ", ");
			put_clean(out, lr.mailbox, strlen(lr.mailbox));
		}
		if (lr.idle)
			buf_append_str(out, ", in IDLE");
		if (lr.up) {
			status_duration(lr.up_for, d, sizeof(d));
			buf_printf(out, ", link up for %s", d);
		} else {
			buf_printf(out, ", link %s", lr.state);
			if (lr.attempts)
				buf_printf(out, " (attempt %u)", lr.attempts);
		}
	} else {
		bool ready = s->up_state == UP_READY;
		buf_printf(out, ", upstream %s", ready ? "connected" : "connecting");
		if (ready && s->upstream)
			buf_printf(out, " (%s%s)", stream_is_tls(s->upstream) ? "TLS" : "no TLS",
			           stream_is_compressed(s->upstream) ? ", compressed" : "");
	}
	if (s->client_tls)
		buf_append_str(out, ", client TLS");
	buf_append_str(out, "\n");
}

/* Accounts: the sessions grouped by login name, first-seen order. */
static void section_accounts(void *data, struct buf *out)
{
	struct proxy_status_ctx *ctx = data;
	const struct proxy_server *srv = ctx->srv;
	size_t n = srv->nsessions, k = 0;
	const struct session **all = xcalloc(n ? n : 1, sizeof(*all));
	bool *done = xcalloc(n ? n : 1, sizeof(*done));

	/* The list holds the newest first; the report shows the oldest first. */
	for (const struct session *s = srv->sessions; s && k < n; s = s->next)
		all[k++] = s;
	for (size_t i = 0; i < k / 2; i++) {
		const struct session *t = all[i];
		all[i] = all[k - 1 - i];
		all[k - 1 - i] = t;
	}
	for (size_t i = 0; i < k; i++) {
		if (done[i])
			continue;
		struct link_report lr;
		const char *user = session_user(all[i], &lr);
		unsigned conns = 0, links = 0, links_up = 0;
		for (size_t j = i; j < k; j++) {
			struct link_report lj;
			const char *uj = session_user(all[j], &lj);
			if ((user == NULL) != (uj == NULL) || (user && strcmp(user, uj) != 0))
				continue;
			conns++;
			if (all[j]->link) {
				links++;
				links_up += lj.up;
			}
		}
		buf_append_str(out, "account ");
		if (user)
			put_clean(out, user, strlen(user));
		else
			buf_append_str(out, "(not logged in)");
		buf_printf(out, ": %u connection%s", conns, conns == 1 ? "" : "s");
		if (links)
			buf_printf(out, ", link up on %u of %u", links_up, links);
		buf_append_str(out, "\n");
		for (size_t j = i; j < k; j++) {
			struct link_report lj;
			const char *uj = session_user(all[j], &lj);
			if ((user == NULL) != (uj == NULL) || (user && strcmp(user, uj) != 0))
				continue;
			done[j] = true;
			session_line(all[j], out);
		}
	}
	free(all);
	free(done);
}

static void section_last_error(void *data, struct buf *out)
{
	char msg[LOG_PROBLEM_MAX];
	time_t when;
	struct tm tm;

	if (!log_last_problem(msg, sizeof(msg), &when)) {
		buf_append_str(out, "last error: none\n");
		return;
	}
	gmtime_r(&when, &tm);
	buf_printf(out, "last error: %04d-%02d-%02dT%02d:%02d:%02dZ %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
	           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msg);
}

char *proxy_status_path(const struct proxy_config *cfg, bool stdio_mode)
{
	if (strcmp(cfg->status_socket, "none") == 0)
		return NULL;
	if (*cfg->status_socket)
		return xstrdup(cfg->status_socket);
	if (stdio_mode)
		return NULL;
	char *dir = proxy_state_dir(cfg);
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "%s/status.sock", dir);
	buf_append(&b, "", 1);
	free(dir);
	char *path = xstrdup((const char *)buf_head(&b));
	buf_free(&b);
	return path;
}

static struct proxy_status_ctx *the_ctx; /* one proxy server per process */

int proxy_status_start(struct proxy_server *srv, struct ev_loop *loop, const struct proxy_config *cfg,
                       bool stdio_mode, char *err, size_t errlen)
{
	char *path = proxy_status_path(cfg, stdio_mode);

	if (!path)
		return 0;
	/* The state directory holds the socket: make it (0700) if needed. */
	char *slash = strrchr(path, '/');
	if (slash && slash != path) {
		*slash = '\0';
		int rc = daemon_make_dirs(path, err, errlen);
		*slash = '/';
		if (rc < 0) {
			free(path);
			return -1;
		}
	}
	srv->status_report = status_server_new(loop, path, err, errlen);
	free(path);
	if (!srv->status_report)
		return -1;
	if (stdio_mode)
		status_server_weak(srv->status_report); /* the one client leaving ends the proxy */
	the_ctx = xcalloc(1, sizeof(*the_ctx));
	the_ctx->srv = srv;
	the_ctx->started = ev_now(loop);
	the_ctx->stdio_mode = stdio_mode;
	status_add(srv->status_report, STATUS_RANK_DAEMON, section_daemon, the_ctx);
	status_add(srv->status_report, STATUS_RANK_ACCOUNTS, section_accounts, the_ctx);
	if (srv->smtp)
		status_add(srv->status_report, STATUS_RANK_OUTBOX, smtp_service_status, srv->smtp);
	status_add(srv->status_report, STATUS_RANK_LAST_ERROR, section_last_error, the_ctx);
	return 0;
}

void proxy_status_stop(struct proxy_server *srv)
{
	if (!srv)
		return;
	status_server_free(srv->status_report);
	srv->status_report = NULL;
	free(the_ctx);
	the_ctx = NULL;
}

int proxy_status_command(const struct proxy_config *cfg, FILE *out)
{
	char *path = proxy_status_path(cfg, false);
	char err[600];
	struct buf report;
	int rc;

	if (!path) {
		fprintf(stderr, "pimap-proxy: status.socket is \"none\": no status to ask for\n");
		return 1;
	}
	buf_init(&report, 0);
	rc = status_fetch(path, PROXY_STATUS_FETCH_TIMEOUT, &report, err, sizeof(err));
	free(path);
	if (rc < 0) {
		fprintf(stderr, "pimap-proxy: %s (is pimap-proxy running with this configuration?)\n", err);
		buf_free(&report);
		return 1;
	}
	if (buf_len(&report) == 0) {
		/* The proxy closes at once on a reader that is neither its user nor root. */
		fprintf(stderr, "pimap-proxy: the proxy sent no report (only its own user and root may read it)\n");
		buf_free(&report);
		return 1;
	}
	fwrite(buf_head(&report), 1, buf_len(&report), out);
	buf_free(&report);
	return 0;
}

/* --- who logs in (compatibility mode) ------------------------------------------- */

static void note_user(struct session *s, const char *user, size_t len)
{
	if (len >= sizeof(s->login_user))
		len = sizeof(s->login_user) - 1;
	memcpy(s->login_user, user, len);
	s->login_user[len] = '\0';
}

static void note_plain_user(void *ctx, const struct sasl_plain *plain)
{
	note_user(ctx, plain->user, plain->user_len);
}

static void note_sasl(struct session *s, const char *b64, size_t len)
{
	sasl_plain_peek(b64, len, note_plain_user, s);
}

void proxy_status_note_login(struct session *s, const struct imap_msg *m)
{
	s->login_user[0] = '\0';
	s->login_sasl_pending = false;
	if (imap_arg_is_atom(&m->args[0], "LOGIN")) {
		if (m->nargs >= 2 && imap_arg_is_string(&m->args[1]))
			note_user(s, m->args[1].str, m->args[1].len);
	} else if (m->nargs >= 2 && imap_arg_is_atom(&m->args[1], "PLAIN")) {
		if (m->nargs >= 3 && imap_arg_is_string(&m->args[2]))
			note_sasl(s, m->args[2].str, m->args[2].len);
		else
			s->login_sasl_pending = true;
	}
}

void proxy_status_note_sasl_line(struct session *s, const struct imap_msg *m)
{
	size_t len = m->raw_len;

	if (!s->login_sasl_pending)
		return;
	s->login_sasl_pending = false;
	while (len > 0 && (m->raw[len - 1] == '\n' || m->raw[len - 1] == '\r'))
		len--;
	note_sasl(s, (const char *)m->raw, len);
}
