/*
 * smtp_client.c - one SMTP submission transaction (see smtp_client.h).
 *
 * A small state machine driven by the server's replies. In the
 * transaction, replies are matched to commands by position (RFC 2920):
 * reply 0 answers MAIL, 1..n the RCPTs, n+1 DATA. With PIPELINING all of
 * them go out in one write; without it, one at a time, stopping at the
 * first refusal.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "log.h"
#include "msg_header.h"
#include "sasl.h"
#include "smtp_client.h"
#include "smtp_reply.h"
#include "stream.h"
#include "url.h"

/* QUIT after the outcome is known: how long we wait to flush it before closing. */
#define SMTP_CLIENT_QUIT_GRACE 5.0

enum smc_state {
	SMC_CONNECTING,  /* TCP connect, then implicit TLS if smtps:// */
	SMC_GREETING,    /* waiting for 220 */
	SMC_EHLO,        /* EHLO sent */
	SMC_STARTTLS,    /* STARTTLS sent, waiting for 220 */
	SMC_TLS,         /* STARTTLS handshake */
	SMC_AUTH,        /* AUTH PLAIN sent, or the last step of AUTH LOGIN: waiting for 235 */
	SMC_LOGIN_USER,  /* AUTH LOGIN sent: waiting for 334 to send the user name */
	SMC_LOGIN_PASS,  /* user name sent: waiting for 334 to send the password */
	SMC_TRANSACTION, /* MAIL, RCPT..., DATA sent (all, or the first ones) */
	SMC_DATA_END,    /* message and final dot written: waiting for the outcome */
	SMC_DONE,        /* outcome reported; QUIT and close */
};

struct smtp_client {
	struct ev_loop           *loop;
	const struct smtp_target *target;
	struct stream            *stream;
	struct smtp_reply_parser *parser;
	enum smc_state            state;
	char                      prefix[160];

	char       *user, *password, *from;
	char      **rcpts;
	size_t      nrcpts;
	struct buf  data;          /* DATA content, dot-stuffed, with the final ".\r\n" */
	size_t      msg_size;      /* for SIZE= */
	bool        eightbit;

	bool        tls;           /* TLS is on (implicit or after STARTTLS) */
	bool        pipelining;
	bool        ext_8bitmime;
	bool        auth_plain, auth_login;
	uint64_t    size_max;      /* SIZE the server announced; 0 = none */

	size_t      sent;          /* transaction commands written: MAIL=1, each RCPT, DATA */
	size_t      answered;      /* transaction replies read */
	bool        have_fail;
	struct smtp_outcome first_fail;
	bool        dot_written;

	smtp_before_dot_cb before_dot;
	smtp_send_cb done;
	void       *ctx;
	bool        reported;
	ev_idle     start_fail;    /* reports a failure found before any I/O, from the loop */
	char        start_why[600];
};

static void sc_trace(struct smtp_client *c, const char *dir, const char *line, size_t len)
{
	if (!log_trace_enabled())
		return;
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	log_msg(LOG_LEVEL_DEBUG, c->prefix, "%s %.*s", dir, (int)(len > 300 ? 300 : len), line);
}

static void client_free(void *arg)
{
	struct smtp_client *c = arg;
	secret_free(&c->password);
	free(c->user);
	free(c->from);
	for (size_t i = 0; i < c->nrcpts; i++)
		free(c->rcpts[i]);
	free(c->rcpts);
	buf_free(&c->data);
	smtp_reply_parser_free(c->parser);
	free(c);
}

static void close_stream(struct smtp_client *c, bool quit)
{
	if (!c->stream)
		return;
	if (quit) {
		static const char q[] = "QUIT\r\n";
		sc_trace(c, "S>", q, sizeof(q) - 1);
		stream_write(c->stream, q, sizeof(q) - 1);
		stream_set_deadline(c->stream, SMTP_CLIENT_QUIT_GRACE);
		stream_close_after_flush(c->stream);
	} else {
		stream_close(c->stream);
	}
	c->stream = NULL;
}

/* Report once; then QUIT (when the connection is in a state to take it) and free. */
static void finish(struct smtp_client *c, enum smtp_send_status status, const struct smtp_outcome *reply,
                   const char *why, bool quit)
{
	if (c->reported)
		return;
	c->reported = true;
	c->state = SMC_DONE;
	close_stream(c, quit);
	ev_idle_stop(c->loop, &c->start_fail);
	struct smtp_send_result r;
	memset(&r, 0, sizeof(r));
	r.status = status;
	if (reply)
		r.reply = *reply;
	snprintf(r.why, sizeof(r.why), "%s", why ? why : "");
	if (status == SMTP_SEND_OK)
		log_msg(LOG_LEVEL_INFO, c->prefix, "submission server accepted the message: %d %s %s", r.reply.code,
		        r.reply.enhanced, r.reply.text);
	else if (status == SMTP_SEND_REJECTED)
		log_msg(LOG_LEVEL_INFO, c->prefix, "submission server refused the message: %d %s %s", r.reply.code,
		        r.reply.enhanced, r.reply.text);
	else
		log_msg(LOG_LEVEL_WARN, c->prefix, "sending failed%s: %s",
		        status == SMTP_SEND_UNKNOWN ? " after the message went out" : "", r.why);
	if (c->done)
		c->done(c, &r, c->ctx);
	loop_defer_free(client_free, c);
}

static void fail(struct smtp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct smtp_client *c, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	finish(c, c->dot_written ? SMTP_SEND_UNKNOWN : SMTP_SEND_FAILED, NULL, why, false);
}

static void send_line(struct smtp_client *c, const char *text, bool secret)
{
	if (secret)
		sc_trace(c, "S>", "AUTH <secret>", 13);
	else
		sc_trace(c, "S>", text, strlen(text));
	stream_write_str(c->stream, text);
}

static void reply_outcome(const struct smtp_reply *r, struct smtp_outcome *o)
{
	/* Multi-line text: the lines joined with "; " (a tagged IMAP result is one line). */
	struct buf t;
	buf_init(&t, 0);
	const char *s = (const char *)buf_head(&r->text);
	for (size_t i = 0; i < buf_len(&r->text); i++) {
		if (s[i] == '\n')
			buf_append_str(&t, "; ");
		else
			buf_append(&t, &s[i], 1);
	}
	smtp_outcome_set(o, r->code, buf_len(&t) ? (const char *)buf_head(&t) : "", buf_len(&t));
	buf_free(&t);
}

static const char *server_name(const struct smtp_client *c)
{
	return c->target->server_name && *c->target->server_name ? c->target->server_name : c->target->host;
}

static void send_ehlo(struct smtp_client *c)
{
	char line[300];
	snprintf(line, sizeof(line), "EHLO %s\r\n",
	         c->target->helo_name && *c->target->helo_name ? c->target->helo_name : "localhost");
	send_line(c, line, false);
	stream_flush(c->stream);
	c->state = SMC_EHLO;
}

static void send_transaction_command(struct smtp_client *c, size_t idx)
{
	struct buf b;
	buf_init(&b, 0);
	if (idx == 0) {
		buf_printf(&b, "MAIL FROM:<%s>", c->from);
		if (c->size_max) /* SIZE= only where the server announced SIZE (RFC 1870) */
			buf_printf(&b, " SIZE=%zu", c->msg_size);
		if (c->eightbit && c->ext_8bitmime)
			buf_append_str(&b, " BODY=8BITMIME");
	} else if (idx <= c->nrcpts) {
		buf_printf(&b, "RCPT TO:<%s>", c->rcpts[idx - 1]);
	} else {
		buf_append_str(&b, "DATA");
	}
	buf_append_str(&b, "\r\n");
	buf_append(&b, "", 1);
	send_line(c, (const char *)buf_head(&b), false);
	buf_free(&b);
	c->sent++;
}

static void start_transaction(struct smtp_client *c)
{
	if (c->size_max && c->size_max != (uint64_t)-1 && c->msg_size > c->size_max) {
		struct smtp_outcome o;
		char text[160];
		snprintf(text, sizeof(text), "5.3.4 Message of %zu bytes exceeds the server's limit of %llu",
		         c->msg_size, (unsigned long long)c->size_max);
		smtp_outcome_set(&o, 552, text, strlen(text));
		finish(c, SMTP_SEND_REJECTED, &o, NULL, true);
		return;
	}
	c->state = SMC_TRANSACTION;
	size_t total = c->nrcpts + 2;
	if (c->pipelining) {
		for (size_t i = 0; i < total; i++)
			send_transaction_command(c, i);
	} else {
		send_transaction_command(c, 0);
	}
	stream_flush(c->stream);
}

static void start_auth(struct smtp_client *c)
{
	if (!c->user) {
		start_transaction(c);
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	if (c->auth_plain) {
		buf_append_str(&b, "AUTH PLAIN ");
		sasl_plain_encode(c->user, strlen(c->user), c->password, strlen(c->password), &b);
		buf_append_str(&b, "\r\n");
		buf_append(&b, "", 1);
		send_line(c, (const char *)buf_head(&b), true);
		secret_free(&c->password);
		c->state = SMC_AUTH;
	} else if (c->auth_login) {
		send_line(c, "AUTH LOGIN\r\n", false);
		c->state = SMC_LOGIN_USER;
	} else {
		buf_free(&b);
		fail(c, "the submission server offers neither AUTH PLAIN nor AUTH LOGIN%s",
		     c->tls ? "" : " (before TLS)");
		return;
	}
	gnutls_memset(b.data, 0, b.cap);
	buf_free(&b);
	stream_flush(c->stream);
}

static void ehlo_done(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code / 100 != 2) {
		struct smtp_outcome o;
		reply_outcome(r, &o);
		fail(c, "EHLO refused: %d %s", o.code, o.text);
		return;
	}
	const char *params;
	size_t plen;
	if (!c->tls && !c->target->implicit_tls && smtp_reply_ehlo_has(r, "STARTTLS", NULL, NULL)) {
		send_line(c, "STARTTLS\r\n", false);
		stream_flush(c->stream);
		c->state = SMC_STARTTLS;
		return;
	}
	if (!c->tls && !c->target->allow_plaintext) {
		fail(c, "the submission server offers no STARTTLS; refusing to send credentials in plaintext");
		return;
	}
	c->pipelining = smtp_reply_ehlo_has(r, "PIPELINING", NULL, NULL);
	c->ext_8bitmime = smtp_reply_ehlo_has(r, "8BITMIME", NULL, NULL);
	c->size_max = 0;
	if (smtp_reply_ehlo_has(r, "SIZE", &params, &plen)) {
		uint64_t v = 0;
		bool num = plen > 0 && plen < 20;
		for (size_t i = 0; num && i < plen; i++) {
			if (params[i] < '0' || params[i] > '9')
				num = false;
			else
				v = v * 10 + (uint64_t)(params[i] - '0');
		}
		/* SIZE without a number (or 0): the server takes SIZE= but sets no limit. */
		c->size_max = num && v ? v : (uint64_t)-1;
	}
	c->auth_plain = c->auth_login = false;
	if (smtp_reply_ehlo_has(r, "AUTH", &params, &plen)) {
		char mechs[512];
		snprintf(mechs, sizeof(mechs), " %.*s ", (int)(plen < 500 ? plen : 500), params);
		for (char *p = mechs; *p; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 32);
		c->auth_plain = strstr(mechs, " PLAIN ") != NULL;
		c->auth_login = strstr(mechs, " LOGIN ") != NULL;
	}
	start_auth(c);
}

static void send_b64_line(struct smtp_client *c, const char *s)
{
	struct buf b;
	buf_init(&b, 0);
	sasl_base64_encode(s, strlen(s), &b);
	buf_append_str(&b, "\r\n");
	sc_trace(c, "S>", "<secret>", 8);
	stream_write(c->stream, buf_head(&b), buf_len(&b));
	stream_flush(c->stream);
	gnutls_memset(b.data, 0, b.cap);
	buf_free(&b);
}

static void transaction_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	size_t idx = c->answered++;
	size_t data_idx = c->nrcpts + 1;
	if (idx < data_idx) {
		if (r->code / 100 != 2 && !c->have_fail) {
			c->have_fail = true;
			reply_outcome(r, &c->first_fail);
		}
		if (!c->pipelining) {
			if (c->have_fail) {
				finish(c, SMTP_SEND_REJECTED, &c->first_fail, NULL, true);
				return;
			}
			send_transaction_command(c, idx + 1);
			stream_flush(c->stream);
		}
		return;
	}
	/* The reply to DATA. */
	if (r->code == 354 && c->have_fail) {
		/* A recipient was refused but the server is ready for data: leave before the
		 * final dot, so that nothing reaches the recipients it did accept. */
		finish(c, SMTP_SEND_REJECTED, &c->first_fail, NULL, false);
		return;
	}
	if (r->code != 354) {
		struct smtp_outcome o;
		reply_outcome(r, &o);
		finish(c, SMTP_SEND_REJECTED, c->have_fail ? &c->first_fail : &o, NULL, true);
		return;
	}
	if (c->before_dot)
		c->before_dot(c->ctx);
	char note[64];
	int n = snprintf(note, sizeof(note), "<%zu bytes of message>", buf_len(&c->data));
	sc_trace(c, "S>", note, (size_t)n);
	stream_write(c->stream, buf_head(&c->data), buf_len(&c->data));
	stream_flush(c->stream);
	c->dot_written = true;
	c->state = SMC_DATA_END;
	stream_set_deadline(c->stream, c->target->reply_timeout * SMTP_CLIENT_DATA_END_FACTOR);
}

static void on_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	struct smtp_outcome o;
	char why[300];
	switch (c->state) {
	case SMC_GREETING:
		if (r->code != 220) {
			reply_outcome(r, &o);
			fail(c, "the submission server refused the connection: %d %s", o.code, o.text);
			return;
		}
		stream_set_deadline(c->stream, c->target->reply_timeout);
		send_ehlo(c);
		return;
	case SMC_EHLO:
		ehlo_done(c, r);
		return;
	case SMC_STARTTLS:
		if (r->code != 220) {
			reply_outcome(r, &o);
			fail(c, "STARTTLS refused: %d %s", o.code, o.text);
			return;
		}
		c->state = SMC_TLS;
		if (stream_start_tls_client(c->stream, c->target->creds, server_name(c), why, sizeof(why)) < 0)
			fail(c, "%s", why);
		return;
	case SMC_LOGIN_USER:
	case SMC_LOGIN_PASS:
		if (r->code != 334) {
			reply_outcome(r, &o);
			finish(c, SMTP_SEND_REJECTED, &o, NULL, true);
			return;
		}
		if (c->state == SMC_LOGIN_USER) {
			send_b64_line(c, c->user);
			c->state = SMC_LOGIN_PASS;
		} else {
			send_b64_line(c, c->password);
			secret_free(&c->password);
			c->state = SMC_AUTH;
		}
		return;
	case SMC_AUTH:
		if (r->code != 235) {
			reply_outcome(r, &o);
			finish(c, SMTP_SEND_REJECTED, &o, NULL, true);
			return;
		}
		start_transaction(c);
		return;
	case SMC_TRANSACTION:
		transaction_reply(c, r);
		return;
	case SMC_DATA_END:
		reply_outcome(r, &o);
		finish(c, r->code / 100 == 2 ? SMTP_SEND_OK : SMTP_SEND_REJECTED, &o, NULL, true);
		return;
	default:
		reply_outcome(r, &o);
		fail(c, "unexpected reply from the submission server: %d %s", o.code, o.text);
		return;
	}
}

static void process_input(struct smtp_client *c)
{
	while (c->stream && !c->reported) {
		struct buf *in = stream_input(c->stream);
		if (!buf_len(in))
			return;
		size_t used = 0;
		enum smtp_reply_result res = smtp_reply_feed(c->parser, buf_head(in), buf_len(in), &used);
		buf_consume(in, used);
		if (res == SMTP_REPLY_ERROR) {
			fail(c, "bad reply from the submission server: %s", smtp_reply_error(c->parser));
			return;
		}
		if (res == SMTP_REPLY_NEED_MORE)
			return;
		const struct smtp_reply *r = smtp_reply_get(c->parser);
		if (log_trace_enabled()) {
			char line[64];
			int n = snprintf(line, sizeof(line), "%d ", r->code);
			size_t tl = buf_len(&r->text);
			const char *t = (const char *)buf_head(&r->text);
			const char *nl = tl ? memchr(t, '\n', tl) : NULL;
			log_msg(LOG_LEVEL_DEBUG, c->prefix, "S< %.*s%.*s%s", n, line, (int)(nl ? (size_t)(nl - t) : tl),
			        tl ? t : "", nl ? " ..." : "");
		}
		on_reply(c, r);
		if (c->reported || !c->stream)
			return;
		smtp_reply_reset(c->parser);
		if (c->state == SMC_TLS)
			return; /* the stream discarded what followed STARTTLS's reply */
		stream_set_deadline(c->stream, c->state == SMC_DATA_END
		                                     ? c->target->reply_timeout * SMTP_CLIENT_DATA_END_FACTOR
		                                     : c->target->reply_timeout);
	}
}

static void on_stream(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct smtp_client *c = ctx;
	char why[300];
	(void)st;
	switch (ev) {
	case STREAM_EV_CONNECTED:
		if (c->target->implicit_tls) {
			if (stream_start_tls_client(c->stream, c->target->creds, server_name(c), why, sizeof(why)) < 0)
				fail(c, "%s", why);
		} else {
			c->state = SMC_GREETING;
		}
		return;
	case STREAM_EV_TLS_READY:
		c->tls = true;
		if (c->state == SMC_TLS) {
			smtp_reply_reset(c->parser);
			send_ehlo(c); /* RFC 3207: forget what was said before TLS */
		} else {
			c->state = SMC_GREETING;
		}
		process_input(c);
		return;
	case STREAM_EV_DATA:
		process_input(c);
		return;
	case STREAM_EV_DRAINED:
		return;
	case STREAM_EV_EOF:
		fail(c, "the submission server closed the connection");
		return;
	case STREAM_EV_ERROR:
		fail(c, "submission server %s:%s: %s", c->target->host, c->target->port, reason ? reason : "error");
		return;
	}
}

static void on_start_fail(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct smtp_client *c = w->data;
	(void)loop;
	(void)revents;
	ev_idle_stop(c->loop, w);
	fail(c, "%s", c->start_why);
}

struct smtp_client *smtp_client_send(struct ev_loop *loop, const struct smtp_target *target,
                                     const struct smtp_send_req *req, const char *log_prefix,
                                     smtp_before_dot_cb before_dot, smtp_send_cb done, void *ctx)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->target = target;
	c->before_dot = before_dot;
	c->done = done;
	c->ctx = ctx;
	snprintf(c->prefix, sizeof(c->prefix), "%s", log_prefix ? log_prefix : "smtp");
	c->parser = smtp_reply_parser_new();
	if (req->user) {
		c->user = xstrdup(req->user);
		c->password = xstrdup(req->password ? req->password : "");
	}
	c->from = xstrdup(req->mail_from ? req->mail_from : "");
	c->rcpts = xcalloc(req->nrcpts ? req->nrcpts : 1, sizeof(*c->rcpts));
	for (size_t i = 0; i < req->nrcpts; i++)
		c->rcpts[c->nrcpts++] = xstrdup(req->rcpts[i]);
	buf_init(&c->data, 0);
	msg_to_smtp_data(req->msg, req->msg_len, &c->data);
	c->msg_size = buf_len(&c->data);
	buf_append_str(&c->data, ".\r\n");
	c->eightbit = msg_has_8bit(req->msg, req->msg_len);
	ev_idle_init(&c->start_fail, on_start_fail);
	c->start_fail.data = c;
	char err[256];
	if (c->nrcpts == 0) {
		snprintf(c->start_why, sizeof(c->start_why), "no recipients");
		ev_idle_start(loop, &c->start_fail);
		return c;
	}
	c->state = SMC_CONNECTING;
	c->stream = stream_connect(loop, target->host, target->port, target->connect_timeout, c->prefix, 0,
	                           on_stream, c, err, sizeof(err));
	if (!c->stream) {
		snprintf(c->start_why, sizeof(c->start_why), "submission server %s:%s: %s", target->host, target->port,
		         err);
		ev_idle_start(loop, &c->start_fail);
	}
	return c;
}

void smtp_client_cancel(struct smtp_client *c)
{
	if (!c || c->reported)
		return;
	c->done = NULL;
	c->before_dot = NULL;
	/* Before the final dot, closing abandons the transaction; after it nothing can be taken back. */
	finish(c, SMTP_SEND_FAILED, NULL, "cancelled", false);
}

int smtp_target_from_url(const char *url, struct smtp_target *target, char *err, size_t errlen)
{
	return url_parse_submission(url, target->host, sizeof(target->host), target->port, sizeof(target->port),
	                            &target->implicit_tls, err, errlen);
}
