/*
 * proxy_smtp.c - pimap-proxy's SMTP submission listener (see proxy_smtp.h).
 *
 * Connection lifecycle: accept -> (implicit TLS handshake) -> 220 ->
 * commands through smtp_server.c; its actions go out here: STARTTLS to the
 * stream (which drops any input pipelined behind it), AUTH and DELIVER to
 * proxy_send.c, whose answers come back to the state machine. Input is
 * not read while an action is out, so pipelined commands wait their turn.
 * A connection that goes away in DATA, or before its message was
 * answered, sends nothing: only a complete message is ever handed on.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "imap_parse.h"
#include "listener.h"
#include "log.h"
#include "proxy_send.h"
#include "proxy_smtp.h"
#include "sasl.h"
#include "smtp_server.h"
#include "stream.h"

struct smtp_conn {
	struct smtp_conn    *next;
	struct smtp_service *svc;
	struct stream       *stream;
	struct smtp_server  *srv;
	char                 prefix[96];
	bool                 tls_pending;  /* STARTTLS or implicit TLS handshake under way */
	bool                 greeted;      /* 220 sent (after the handshake on the TLS port) */
	bool                 closing;
	ev_timer             activity;
	struct sender_op    *op;           /* AUTH or message in flight */
	char                *user;         /* authenticated as (sender_session_end at close) */
};

/* Compatibility mode: an IMAP login relayed and not answered yet (see smtp_service_login_command). */
struct pending_login {
	struct pending_login *next;
	const void           *key;
	char                 *user;
	char                 *password;
};

struct smtp_service {
	struct ev_loop            *loop;
	const struct proxy_config *cfg;
	struct sender             *sender;
	struct tls_creds          *local_creds;
	struct tls_creds          *upstream_creds;
	struct tls_creds          *submission_creds;
	struct listener          **listeners;
	size_t                     nlisteners;
	struct smtp_conn          *conns;
	unsigned                   nconns;
	struct pending_login      *logins;
	unsigned long              next_id;
	bool                       draining;
	bool                       stdio;
	char                       hostname[256];
	char                       imap_server_name[256];
	struct store_target        imap;
	struct smtp_target         submission;
};

static void conn_close(struct smtp_conn *c, const char *why);
static void process_input(struct smtp_conn *c);
static void login_free(struct pending_login *p);

static void clog_(const struct smtp_conn *c, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void clog_(const struct smtp_conn *c, enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, c->prefix, fmt, ap);
	va_end(ap);
}

/* Write what the state machine said (traced without secrets: AUTH lines never appear in replies). */
static void write_output(struct smtp_conn *c)
{
	struct buf *out = smtp_server_output(c->srv);
	if (!buf_len(out) || !c->stream || c->closing) {
		buf_clear(out);
		return;
	}
	if (log_trace_enabled()) {
		const char *p = (const char *)buf_head(out);
		size_t n = buf_len(out);
		while (n) {
			const char *nl = memchr(p, '\n', n);
			size_t l = nl ? (size_t)(nl - p) + 1 : n;
			log_msg(LOG_LEVEL_DEBUG, c->prefix, "C< %.*s", (int)(l >= 2 ? l - 2 : l), p);
			p += l;
			n -= l;
		}
	}
	stream_write(c->stream, buf_head(out), buf_len(out));
	stream_flush(c->stream);
	buf_clear(out);
}

static void activity_arm(struct smtp_conn *c)
{
	const struct proxy_config *cfg = c->svc->cfg;
	ev_timer_stop(c->svc->loop, &c->activity);
	/* Before AUTH the time a stranger may hold the connection is the preauth limit. */
	ev_timer_set(&c->activity, c->user ? SMTP_COMMAND_TIMEOUT : cfg->preauth_timeout, 0.);
	ev_timer_start(c->svc->loop, &c->activity);
}

static void on_activity(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtp_conn *c = w->data;
	(void)loop;
	(void)revents;
	if (c->op) { /* waiting for the server's answer is not the client's silence */
		activity_arm(c);
		return;
	}
	smtp_server_shutdown(c->srv, "Timeout; closing");
	write_output(c);
	conn_close(c, "timeout");
}

static void auth_done(enum smtp_auth_result r, void *ctx)
{
	struct smtp_conn *c = ctx;
	c->op = NULL;
	smtp_server_auth_done(c->srv, r);
	const char *user = smtp_server_user(c->srv);
	if (r == SMTP_AUTH_OK && user) {
		free(c->user);
		c->user = xstrdup(user);
		clog_(c, LOG_LEVEL_INFO, "authenticated as %s", user);
	} else {
		clog_(c, LOG_LEVEL_INFO, "authentication %s", r == SMTP_AUTH_TEMPFAIL ? "could not be checked" : "failed");
	}
	write_output(c);
	activity_arm(c);
	process_input(c);
}

static void deliver_done(int code, const char *enhanced, const char *text, void *ctx)
{
	struct smtp_conn *c = ctx;
	c->op = NULL;
	clog_(c, LOG_LEVEL_INFO, "message answered %d %s %s", code, enhanced, text);
	smtp_server_deliver_done(c->srv, code, enhanced, text);
	write_output(c);
	activity_arm(c);
	process_input(c);
}

static void process_input(struct smtp_conn *c)
{
	while (c->stream && !c->closing && !c->op && !c->tls_pending) {
		struct buf *in = stream_input(c->stream);
		size_t used = 0;
		enum smtp_action act = smtp_server_input(c->srv, buf_head(in), buf_len(in), &used);
		buf_consume(in, used);
		write_output(c);
		switch (act) {
		case SMTP_ACTION_NONE:
			return;
		case SMTP_ACTION_STARTTLS: {
			char err[256];
			c->tls_pending = true;
			/* Anything the client pipelined behind STARTTLS is dropped by the stream. */
			if (stream_start_tls_server(c->stream, c->svc->local_creds, err, sizeof(err)) < 0)
				conn_close(c, err);
			return;
		}
		case SMTP_ACTION_AUTH:
			c->op = sender_auth(c->svc->sender, smtp_server_auth_user(c->srv), smtp_server_auth_password(c->srv),
			                    auth_done, c);
			break;
		case SMTP_ACTION_DELIVER: {
			size_t n;
			char *const *rcpts = smtp_server_rcpts(c->srv, &n);
			c->op = sender_submit(c->svc->sender, c->user, smtp_server_mail_from(c->srv), rcpts, n,
			                      smtp_server_message(c->srv), deliver_done, c);
			break;
		}
		case SMTP_ACTION_CLOSE:
			conn_close(c, "closed by the session");
			return;
		}
	}
}

static void on_stream(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct smtp_conn *c = ctx;
	(void)st;
	switch (ev) {
	case STREAM_EV_TLS_READY:
		if (c->tls_pending && !c->closing) {
			c->tls_pending = false;
			if (c->greeted) {
				smtp_server_tls_started(c->srv);
			} else {
				c->greeted = true; /* implicit TLS: the greeting comes after the handshake */
				smtp_server_greet(c->srv);
			}
			write_output(c);
		}
		process_input(c);
		return;
	case STREAM_EV_DATA:
		activity_arm(c);
		process_input(c);
		return;
	case STREAM_EV_DRAINED:
		process_input(c);
		return;
	case STREAM_EV_EOF:
		conn_close(c, smtp_server_busy(c->srv) ? "client left in the middle of a transaction; nothing sent"
		                                        : "client closed the connection");
		return;
	case STREAM_EV_ERROR:
		conn_close(c, reason ? reason : "connection error");
		return;
	case STREAM_EV_CONNECTED:
		return;
	}
}

static void conn_destroy(void *arg)
{
	struct smtp_conn *c = arg;
	smtp_server_free(c->srv);
	free(c);
}

static void conn_close(struct smtp_conn *c, const char *why)
{
	struct smtp_service *svc = c->svc;
	if (c->closing)
		return;
	c->closing = true;
	clog_(c, LOG_LEVEL_INFO, "closing: %s", why);
	ev_timer_stop(svc->loop, &c->activity);
	if (c->op) {
		sender_cancel(c->op); /* a message being sent goes on; its answer has no one to go to */
		c->op = NULL;
	}
	if (c->user) {
		sender_session_end(svc->sender, c->user);
		free(c->user);
		c->user = NULL;
	}
	if (c->stream) {
		stream_set_deadline(c->stream, 5.0);
		stream_close_after_flush(c->stream);
		c->stream = NULL;
	}
	for (struct smtp_conn **pp = &svc->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	svc->nconns--;
	loop_defer_free(conn_destroy, c);
	if (svc->stdio)
		sender_wind_down(svc->sender); /* the one client is gone: end once in-flight work is done */
}

static struct smtp_conn *conn_new(struct smtp_service *svc, const char *peer, bool tls_active, bool tls_offered,
                                  bool loopback)
{
	const struct proxy_config *cfg = svc->cfg;
	struct smtp_conn *c = xcalloc(1, sizeof(*c));
	c->svc = svc;
	snprintf(c->prefix, sizeof(c->prefix), "s%lu %s", ++svc->next_id, peer);
	bool in_clear = cfg->plaintext_login == PLAINTEXT_LOGIN_ALWAYS ||
	                (cfg->plaintext_login == PLAINTEXT_LOGIN_LOOPBACK && loopback);
	struct smtp_server_config sc = {
		.hostname = svc->hostname,
		.max_message = cfg->smtp_max_message_size,
		.max_recipients = (size_t)cfg->smtp_max_recipients,
		.tls_offered = tls_offered,
		.tls_active = tls_active,
		.auth_in_clear = in_clear,
	};
	c->srv = smtp_server_new(&sc);
	ev_init(&c->activity, on_activity);
	c->activity.data = c;
	c->next = svc->conns;
	svc->conns = c;
	svc->nconns++;
	return c;
}

static void on_accept(struct listener *l, int fd, const char *peer, void *ctx)
{
	struct smtp_service *svc = ctx;
	if (svc->draining) {
		close(fd);
		return;
	}
	if ((long long)svc->nconns >= svc->cfg->max_clients) {
		static const char busy[] = "421 4.3.2 Too many connections; try again later\r\n";
		if (!listener_implicit_tls(l) && send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("refusing %s: %s", peer, strerror(errno));
		log_warn("smtp: refusing %s: limits.max_clients (%lld) reached", peer, svc->cfg->max_clients);
		close(fd);
		return;
	}
	bool implicit = listener_implicit_tls(l);
	struct smtp_conn *c = conn_new(svc, peer, implicit, !implicit, listener_peer_is_loopback(fd));
	c->stream = stream_new_fd(svc->loop, fd, c->prefix, svc->cfg->max_output_queue, on_stream, c);
	clog_(c, LOG_LEVEL_INFO, "SMTP connection to %s", listener_address(l));
	activity_arm(c);
	if (implicit) {
		char err[256];
		c->tls_pending = true;
		if (stream_start_tls_server(c->stream, svc->local_creds, err, sizeof(err)) < 0)
			conn_close(c, err);
		return;
	}
	c->greeted = true;
	smtp_server_greet(c->srv);
	write_output(c);
}

int smtp_service_start_stdio(struct smtp_service *svc, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	svc->stdio = true;
	/* The pipe is as private as the process: protected, no STARTTLS, AUTH allowed. */
	struct smtp_conn *c = conn_new(svc, "stdio", true, false, true);
	c->stream = stream_new_fds(svc->loop, 0, 1, "stdio", svc->cfg->max_output_queue, on_stream, c);
	activity_arm(c);
	c->greeted = true;
	smtp_server_greet(c->srv);
	write_output(c);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* the service                                                               */

static int add_listeners(struct smtp_service *svc, char **addrs, bool implicit_tls, char *err, size_t errlen)
{
	for (char **a = addrs; a && *a; a++) {
		if (strcasecmp(*a, "none") == 0 || **a == '\0')
			continue;
		struct listener *l = listener_new(svc->loop, *a, implicit_tls, on_accept, svc, err, errlen);
		if (!l)
			return -1;
		svc->listeners = xrealloc(svc->listeners, (svc->nlisteners + 1) * sizeof(*svc->listeners));
		svc->listeners[svc->nlisteners++] = l;
		log_info("listening on %s (%s)", *a, implicit_tls ? "SMTP submission over TLS" : "SMTP submission, STARTTLS");
	}
	return 0;
}

/* store_target.open over the HTTPS binding. */
static int open_https(void *https, const char *prefix, char *err, size_t errlen)
{
	return http_client_open_plain(https, prefix, err, errlen);
}

struct smtp_service *smtp_service_new(const struct smtp_service_setup *setup, const struct proxy_config *cfg,
                                      char *err, size_t errlen)
{
	*err = '\0';
	const struct upstream_url *up = setup->upstream;
	bool gateway = up->is_gateway;
	if (!gateway && !*cfg->smtp_submission_url) {
		log_info("smtp: no SMTP listener: compatibility mode needs smtp.submission_url to send mail");
		return NULL;
	}
	struct smtp_service *svc = xcalloc(1, sizeof(*svc));
	svc->loop = setup->loop;
	svc->cfg = cfg;
	if (gethostname(svc->hostname, sizeof(svc->hostname) - 1) < 0 || !*svc->hostname)
		snprintf(svc->hostname, sizeof(svc->hostname), "localhost");
	svc->local_creds = setup->local_creds ? tlsio_creds_ref(setup->local_creds) : NULL;
	svc->upstream_creds = tlsio_creds_ref(setup->upstream_creds);

	/* The account's IMAP connection: a plain session at the gateway (never the device's
	 * P-IMAP session), or the IMAP server itself in compatibility mode. */
	snprintf(svc->imap.host, sizeof(svc->imap.host), "%s", up->host);
	snprintf(svc->imap.port, sizeof(svc->imap.port), "%s", up->port);
	svc->imap.implicit_tls = up->implicit_tls;
	svc->imap.allow_plaintext = setup->allow_plaintext;
	snprintf(svc->imap_server_name, sizeof(svc->imap_server_name), "%s", setup->upstream_name);
	svc->imap.server_name = svc->imap_server_name;
	svc->imap.creds = svc->upstream_creds;
	svc->imap.compress = gateway;
	svc->imap.enable_condstore = false;
	svc->imap.connect_timeout = setup->connect_timeout;
	svc->imap.out_limit = cfg->max_output_queue;
	if (setup->https) {
		/* Over the HTTPS binding: plain sessions through http_link.c (its TLS, its web proxy). */
		svc->imap.open = open_https;
		svc->imap.open_arg = setup->https;
	}
	svc->imap.limits = (struct imap_limits){
		.max_line_length = IMAP_DEFAULT_MAX_LINE_LENGTH,
		.max_literal_size = IMAP_DEFAULT_MAX_LITERAL_SIZE,
		.max_list_depth = IMAP_DEFAULT_MAX_LIST_DEPTH,
		.max_args = IMAP_DEFAULT_MAX_ARGS,
	};
	if (!gateway) {
		if (smtp_target_from_url(cfg->smtp_submission_url, &svc->submission, err, errlen) < 0)
			goto fail;
		svc->submission_creds = tlsio_client_creds_new(cfg->smtp_submission_ca_file, err, errlen);
		if (!svc->submission_creds)
			goto fail;
		svc->submission.creds = svc->submission_creds;
		svc->submission.allow_plaintext = cfg->smtp_submission_allow_plaintext;
		svc->submission.server_name = xstrdup(cfg->smtp_submission_server_name);
		svc->submission.helo_name = svc->hostname;
		svc->submission.connect_timeout = setup->connect_timeout;
		svc->submission.reply_timeout = cfg->smtp_submission_timeout;
	}
	struct sender_setup ss = {
		.loop = setup->loop,
		.gateway = gateway,
		.imap = svc->imap,
		.submission = svc->submission,
		.state_dir = setup->state_dir,
		.hostname = svc->hostname,
	};
	svc->sender = sender_new(&ss, cfg, err, errlen);
	if (!svc->sender)
		goto fail;
	*err = '\0';
	if (setup->listen) {
		if (add_listeners(svc, cfg->smtp_listen, false, err, errlen) < 0 ||
		    add_listeners(svc, cfg->smtp_listen_tls, true, err, errlen) < 0)
			goto fail;
	}
	if (gateway)
		log_info("smtp: messages go to the gateway as XDELIVER%s", setup->https ? " (over the HTTPS binding)" : "");
	else
		log_info("smtp: messages go to %s", cfg->smtp_submission_url);
	return svc;
fail:
	smtp_service_free(svc);
	return NULL;
}

void smtp_service_free(struct smtp_service *svc)
{
	if (!svc)
		return;
	while (svc->conns) {
		struct smtp_conn *c = svc->conns;
		conn_close(c, "shutdown");
	}
	for (size_t i = 0; i < svc->nlisteners; i++)
		listener_free(svc->listeners[i]);
	free(svc->listeners);
	while (svc->logins) {
		struct pending_login *p = svc->logins;
		svc->logins = p->next;
		login_free(p);
	}
	sender_free(svc->sender);
	free((char *)svc->submission.server_name);
	tlsio_creds_unref(svc->submission_creds);
	tlsio_creds_unref(svc->upstream_creds);
	tlsio_creds_unref(svc->local_creds);
	free(svc);
}

void smtp_service_reconfigure(struct smtp_service *svc, const struct proxy_config *cfg)
{
	svc->cfg = cfg;
	svc->submission.reply_timeout = cfg->smtp_submission_timeout;
	sender_reconfigure(svc->sender, cfg);
}

void smtp_service_drain(struct smtp_service *svc)
{
	svc->draining = true;
	for (size_t i = 0; i < svc->nlisteners; i++)
		listener_pause(svc->listeners[i], true);
	/* A client without its 250 has handed nothing over: it sends again later. */
	while (svc->conns) {
		struct smtp_conn *c = svc->conns;
		smtp_server_shutdown(c->srv, "pimap-proxy shutting down");
		write_output(c);
		conn_close(c, "shutting down");
	}
}

void smtp_service_status(void *data, struct buf *out)
{
	struct smtp_service *svc = data;

	sender_status(svc->sender, out);
}

unsigned smtp_service_connection_count(const struct smtp_service *svc)
{
	return svc ? svc->nconns : 0;
}

void smtp_service_login_seen(struct smtp_service *svc, const char *user, const char *password)
{
	if (svc)
		sender_login_seen(svc->sender, user, password);
}

/* Take the entry for key off the list (NULL if none). */
static struct pending_login *login_take(struct smtp_service *svc, const void *key)
{
	for (struct pending_login **pp = &svc->logins; *pp; pp = &(*pp)->next)
		if ((*pp)->key == key) {
			struct pending_login *p = *pp;
			*pp = p->next;
			return p;
		}
	return NULL;
}

static void login_free(struct pending_login *p)
{
	if (!p)
		return;
	secret_free(&p->user);
	secret_free(&p->password);
	free(p);
}

static void login_note(struct smtp_service *svc, const void *key, const char *user, size_t ul, const char *pw,
                       size_t pl)
{
	login_free(login_take(svc, key));
	if (!ul || memchr(user, '\0', ul) || memchr(pw, '\0', pl))
		return;
	struct pending_login *p = xcalloc(1, sizeof(*p));
	p->key = key;
	p->user = xstrndup(user, ul);
	p->password = xstrndup(pw, pl);
	p->next = svc->logins;
	svc->logins = p;
}

struct login_of {
	struct smtp_service *svc;
	const void *key;
};

static void login_note_plain(void *ctx, const struct sasl_plain *plain)
{
	struct login_of *l = ctx;
	login_note(l->svc, l->key, plain->user, plain->user_len, plain->password, plain->password_len);
}

void smtp_service_login_line(struct smtp_service *svc, const void *key, const char *b64, size_t len)
{
	if (!svc)
		return;
	struct login_of l = {svc, key};
	sasl_plain_peek(b64, len, login_note_plain, &l);
}

void smtp_service_login_command(struct smtp_service *svc, const void *key, const struct imap_msg *m)
{
	if (!svc || m->nargs < 2)
		return;
	if (imap_arg_is_atom(&m->args[0], "LOGIN") && m->nargs == 3 && imap_arg_is_string(&m->args[1]) &&
	    imap_arg_is_string(&m->args[2]))
		login_note(svc, key, m->args[1].str, m->args[1].len, m->args[2].str, m->args[2].len);
	else if (imap_arg_is_atom(&m->args[0], "AUTHENTICATE") && imap_arg_is_atom(&m->args[1], "PLAIN") &&
	         m->nargs == 3 && imap_arg_is_string(&m->args[2]))
		smtp_service_login_line(svc, key, m->args[2].str, m->args[2].len);
}

void smtp_service_login_result(struct smtp_service *svc, const void *key, bool ok)
{
	if (!svc)
		return;
	struct pending_login *p = login_take(svc, key);
	if (p && ok)
		sender_login_seen(svc->sender, p->user, p->password);
	login_free(p);
}
