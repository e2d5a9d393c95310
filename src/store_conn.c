/*
 * store_conn.c - the gateway's IMAP client connection to the store
 * (see store_conn.h).
 *
 * Setup is a small state machine driven by the store's responses; after
 * LOGIN the connection is a plain command pipe with its own tags. The
 * password lives only as long as the LOGIN command needs it.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_write.h"
#include "log.h"
#include "store_conn.h"
#include "stream.h"
#include "url.h"

enum setup_state {
	SC_CONNECTING,
	SC_GREETING,
	SC_CAPABILITY,
	SC_STARTTLS,
	SC_TLS_HANDSHAKE,
	SC_LOGIN,
	SC_POST_LOGIN, /* CAPABILITY / COMPRESS / ENABLE after LOGIN */
	SC_READY,
	SC_DEAD,
};

struct pending_cmd {
	char tag[16];
	store_done_cb done;
	void *ctx;
};

struct store_conn {
	struct ev_loop *loop;
	const struct store_target *target;
	struct stream *stream;
	struct imap_parser *parser;
	enum setup_state state;
	char prefix[128];
	char *user;
	char *password;
	char *caps;
	unsigned long next_tag;
	char tag_buf[16];
	struct pending_cmd *cmds;
	size_t ncmds, cmds_cap;
	const struct store_conn_ops *ops;
	void *ctx;
	bool in_callback;
	bool closing;
	bool bye_expected;  /* LOGOUT sent: the BYE is an answer, not a failure */
};

static void sc_fail(struct store_conn *sc, enum store_login_result result, const char *why);
static void process_input(struct store_conn *sc);

static void sc_log(const struct store_conn *sc, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void sc_log(const struct store_conn *sc, enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, sc->prefix, fmt, ap);
	va_end(ap);
}

static void wipe_password(struct store_conn *sc)
{
	if (sc->password) {
		volatile char *p = sc->password;
		while (*p)
			*p++ = '\0';
		free(sc->password);
		sc->password = NULL;
	}
}

static void set_caps_from_args(struct store_conn *sc, const struct imap_arg *args, size_t n)
{
	struct buf b;
	buf_init(&b, 0);
	for (size_t i = 0; i < n; i++) {
		if (args[i].type != IMAP_ARG_ATOM)
			continue;
		if (buf_len(&b))
			buf_append(&b, " ", 1);
		buf_append(&b, args[i].str, args[i].len);
	}
	buf_append(&b, "", 1);
	free(sc->caps);
	sc->caps = xstrdup((const char *)buf_head(&b));
	buf_free(&b);
}

/* "[CAPABILITY a b c]" in a status response's code. */
static bool caps_from_code(struct store_conn *sc, const struct imap_msg *m)
{
	if (!m->code || m->code_len < 11 || strncasecmp(m->code, "CAPABILITY ", 11) != 0)
		return false;
	free(sc->caps);
	sc->caps = xstrdup(m->code + 11);
	return true;
}

bool store_conn_has_cap(const struct store_conn *sc, const char *cap)
{
	if (!sc->caps)
		return false;
	size_t n = strlen(cap);
	const char *p = sc->caps;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && strncasecmp(p, cap, n) == 0)
			return true;
		p = e;
	}
	return false;
}

/* RFC 7888: LITERAL- takes non-synchronising literals up to this size. */
#define LITERAL_MINUS_MAX 4096

/* May a non-synchronising literal of len bytes go to this store? */
static bool takes_nonsync(const struct store_conn *sc, size_t len)
{
	return store_conn_has_cap(sc, "LITERAL+") || (store_conn_has_cap(sc, "LITERAL-") && len <= LITERAL_MINUS_MAX);
}

bool store_conn_takes_literals(const struct store_conn *sc, const struct imap_arg *args, size_t nargs)
{
	for (size_t i = 0; i < nargs; i++) {
		if (args[i].type == IMAP_ARG_LIST && !store_conn_takes_literals(sc, args[i].list, args[i].list_count))
			return false;
		if (args[i].type == IMAP_ARG_LITERAL && !takes_nonsync(sc, args[i].len))
			return false;
	}
	return true;
}

const char *store_conn_caps(const struct store_conn *sc)
{
	return sc->caps ? sc->caps : "";
}

const char *store_conn_next_tag(struct store_conn *sc)
{
	snprintf(sc->tag_buf, sizeof(sc->tag_buf), "G%lu", sc->next_tag + 1);
	return sc->tag_buf;
}

const char *store_conn_send(struct store_conn *sc, const void *text, size_t len, bool secret, store_done_cb done,
                            void *cmd_ctx)
{
	if (sc->closing || !sc->stream)
		return "G0"; /* a dead connection: nothing is sent and nothing will answer */
	if (sc->ncmds == sc->cmds_cap) {
		sc->cmds_cap = sc->cmds_cap ? 2 * sc->cmds_cap : 8;
		sc->cmds = xrealloc(sc->cmds, sc->cmds_cap * sizeof(*sc->cmds));
	}
	struct pending_cmd *c = &sc->cmds[sc->ncmds++];
	sc->next_tag++;
	snprintf(c->tag, sizeof(c->tag), "G%lu", sc->next_tag);
	c->done = done;
	c->ctx = cmd_ctx;
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, c->tag);
	buf_append(&line, " ", 1);
	buf_append(&line, text, len);
	/* LOGIN's password is elided by the tracer itself; secret elides everything. */
	log_trace_imap(sc->prefix, TRACE_UPSTREAM_OUT, buf_head(&line), buf_len(&line), secret);
	stream_write(sc->stream, buf_head(&line), buf_len(&line));
	stream_flush(sc->stream);
	buf_free(&line);
	return c->tag;
}

const char *store_conn_sendf(struct store_conn *sc, store_done_cb done, void *cmd_ctx, const char *fmt, ...)
{
	struct buf b;
	buf_init(&b, 0);
	va_list ap;
	va_start(ap, fmt);
	char small[512];
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(small)) {
		char *big = xmalloc((size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		buf_append(&b, big, (size_t)n);
		free(big);
	} else if (n > 0) {
		buf_append(&b, small, (size_t)n);
	}
	buf_append(&b, "\r\n", 2);
	const char *tag = store_conn_send(sc, buf_head(&b), buf_len(&b), false, done, cmd_ctx);
	buf_free(&b);
	return tag;
}

void store_conn_expect_bye(struct store_conn *sc)
{
	sc->bye_expected = true;
}

void store_conn_send_raw(struct store_conn *sc, const void *data, size_t len)
{
	if (sc->closing || !sc->stream)
		return;
	log_trace_imap(sc->prefix, TRACE_UPSTREAM_OUT, data, len, false);
	stream_write(sc->stream, data, len);
	stream_flush(sc->stream);
}

void store_conn_orphan_commands(struct store_conn *sc)
{
	for (size_t i = 0; i < sc->ncmds; i++)
		sc->cmds[i].done = NULL;
}

unsigned store_conn_in_flight(const struct store_conn *sc)
{
	return (unsigned)sc->ncmds;
}

bool store_conn_output_full(const struct store_conn *sc)
{
	return sc->stream && stream_output_full(sc->stream);
}

void store_conn_pause_reading(struct store_conn *sc, bool pause)
{
	if (sc->stream)
		stream_pause_reading(sc->stream, pause);
}

void store_conn_set_owner(struct store_conn *sc, const struct store_conn_ops *ops, void *ctx)
{
	sc->ops = ops;
	sc->ctx = ctx;
}

void store_conn_set_prefix(struct store_conn *sc, const char *log_prefix)
{
	snprintf(sc->prefix, sizeof(sc->prefix), "%s", log_prefix);
}

static void sc_destroy(void *arg)
{
	struct store_conn *sc = arg;
	wipe_password(sc);
	free(sc->user);
	free(sc->caps);
	free(sc->cmds);
	imap_parser_free(sc->parser);
	free(sc);
}

void store_conn_close(struct store_conn *sc)
{
	if (sc->closing)
		return;
	sc->closing = true;
	sc->state = SC_DEAD;
	if (sc->stream)
		stream_close(sc->stream);
	sc->stream = NULL;
	loop_defer_free(sc_destroy, sc);
}

/* Fail during setup (login_done) or after it (closed); then close. */
static void sc_fail(struct store_conn *sc, enum store_login_result result, const char *why)
{
	if (sc->closing)
		return;
	bool was_ready = sc->state == SC_READY;
	const struct store_conn_ops *ops = sc->ops;
	void *ctx = sc->ctx;
	/* Commands in flight never complete: the owner cleans up what it had in
	 * flight in one place, its closed/login_done callback. Calling each
	 * command back first would let one callback free what the next needs. */
	sc->ncmds = 0;
	store_conn_close(sc);
	if (was_ready) {
		if (ops && ops->closed)
			ops->closed(sc, why, ctx);
	} else if (ops && ops->login_done) {
		ops->login_done(sc, result, why, ctx);
	}
}

/* ------------------------------------------------------------------------ */
/* setup                                                                     */

static void send_setup(struct store_conn *sc, const char *cmd)
{
	store_conn_sendf(sc, NULL, NULL, "%s", cmd);
}

static void send_login(struct store_conn *sc)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "LOGIN ");
	imap_write_astring(&b, sc->user, strlen(sc->user));
	buf_append(&b, " ", 1);
	imap_write_astring(&b, sc->password, strlen(sc->password));
	buf_append(&b, "\r\n", 2);
	sc->state = SC_LOGIN;
	/* The trace of a LOGIN is redacted by log_trace_imap itself. */
	store_conn_send(sc, buf_head(&b), buf_len(&b), false, NULL, NULL);
	volatile uint8_t *p = (volatile uint8_t *)b.data;
	for (size_t i = 0; i < b.cap; i++)
		p[i] = 0;
	buf_free(&b);
	wipe_password(sc);
}

static void after_caps(struct store_conn *sc)
{
	if (!stream_is_tls(sc->stream) && !sc->target->open) {
		if (store_conn_has_cap(sc, "STARTTLS")) {
			sc->state = SC_STARTTLS;
			send_setup(sc, "STARTTLS");
			return;
		}
		if (!sc->target->allow_plaintext) {
			sc_fail(sc, STORE_LOGIN_FAILED,
			        "store does not offer STARTTLS; refusing to send credentials in plaintext");
			return;
		}
	}
	if (store_conn_has_cap(sc, "LOGINDISABLED")) {
		sc_fail(sc, STORE_LOGIN_FAILED, "store has LOGINDISABLED");
		return;
	}
	/* A name or password with 8-bit or CR/LF bytes goes as a LITERAL+
	 * literal: a store without LITERAL+ would refuse the LOGIN line and run
	 * the password as a command (and echo it in its BAD). */
	if ((imap_astring_needs_literal(sc->user, strlen(sc->user)) && !takes_nonsync(sc, strlen(sc->user))) ||
	    (imap_astring_needs_literal(sc->password, strlen(sc->password)) && !takes_nonsync(sc, strlen(sc->password)))) {
		sc_fail(sc, STORE_LOGIN_FAILED,
		        "store has no LITERAL+ for a user name or password with 8-bit or line-break characters");
		return;
	}
	send_login(sc);
}

/* Steps after LOGIN: capabilities, then COMPRESS, then ENABLE CONDSTORE. */
enum post_step { POST_CAPS = 1, POST_COMPRESS, POST_ENABLE, POST_DONE };

static void post_login_next(struct store_conn *sc, int from);

static void become_ready(struct store_conn *sc)
{
	sc->state = SC_READY;
	stream_set_deadline(sc->stream, 0);
	imap_parser_set_limits(sc->parser, &sc->target->limits);
	sc_log(sc, LOG_LEVEL_DEBUG, "store session ready (%s%s)", stream_is_tls(sc->stream) ? "TLS" : "plaintext",
	       stream_is_compressed(sc->stream) ? ", COMPRESS" : "");
	if (sc->ops && sc->ops->login_done)
		sc->ops->login_done(sc, STORE_LOGIN_OK, "", sc->ctx);
}

/* Which post-login command is in flight is kept in the command's ctx as an int. */
static void post_login_done(struct store_conn *sc, const struct imap_msg *m, void *cmd_ctx)
{
	int step = (int)(intptr_t)cmd_ctx;
	if (!m)
		return;
	if (step == POST_COMPRESS && m->status == IMAP_STATUS_OK) {
		/* The gateway sends the store only commands: a lean compressor saves ~250 KiB per connection. */
		if (stream_enable_compress_lean(sc->stream, -1) < 0) {
			sc_fail(sc, STORE_LOGIN_FAILED, "cannot start COMPRESS");
			return;
		}
	}
	post_login_next(sc, step + 1);
}

static void post_login_next(struct store_conn *sc, int from)
{
	for (int step = from; step < POST_DONE; step++) {
		switch (step) {
		case POST_CAPS:
			if (!sc->caps || !store_conn_has_cap(sc, "IMAP4rev1")) {
				store_conn_sendf(sc, post_login_done, (void *)(intptr_t)step, "CAPABILITY");
				return;
			}
			break;
		case POST_COMPRESS:
			if (sc->target->compress && store_conn_has_cap(sc, "COMPRESS=DEFLATE")) {
				store_conn_sendf(sc, post_login_done, (void *)(intptr_t)step, "COMPRESS DEFLATE");
				return;
			}
			break;
		case POST_ENABLE:
			if (sc->target->enable_condstore && store_conn_has_cap(sc, "CONDSTORE") &&
			    store_conn_has_cap(sc, "ENABLE")) {
				store_conn_sendf(sc, post_login_done, (void *)(intptr_t)step, "ENABLE CONDSTORE");
				return;
			}
			break;
		}
	}
	become_ready(sc);
}

/* The tagged reply to the setup command in flight (always the oldest): take it off the list. */
static bool take_setup_reply(struct store_conn *sc, const struct imap_msg *m)
{
	if (m->kind != IMAP_MSG_TAGGED || !sc->ncmds || strcmp(m->tag, sc->cmds[0].tag) != 0)
		return false;
	sc->ncmds--;
	memmove(sc->cmds, sc->cmds + 1, sc->ncmds * sizeof(*sc->cmds));
	return true;
}

static void setup_message(struct store_conn *sc, const struct imap_msg *m)
{
	char why[512];
	if (m->kind == IMAP_MSG_UNTAGGED && m->status == IMAP_STATUS_BYE && sc->state != SC_GREETING) {
		snprintf(why, sizeof(why), "store said BYE: %.*s", (int)m->text_len, m->text);
		sc_fail(sc, STORE_LOGIN_FAILED, why);
		return;
	}
	switch (sc->state) {
	case SC_GREETING:
		/* OK, PREAUTH or BYE (RFC 3501 7.1): "* NO" or "* BAD" is no greeting,
		 * whatever capabilities it lists. */
		if (m->kind != IMAP_MSG_UNTAGGED ||
		    (m->status != IMAP_STATUS_OK && m->status != IMAP_STATUS_PREAUTH && m->status != IMAP_STATUS_BYE)) {
			sc_fail(sc, STORE_LOGIN_FAILED, "store sent no IMAP greeting");
			return;
		}
		if (m->status == IMAP_STATUS_BYE) {
			snprintf(why, sizeof(why), "store refused the connection: %.*s", (int)m->text_len, m->text);
			sc_fail(sc, STORE_LOGIN_FAILED, why);
			return;
		}
		if (m->status == IMAP_STATUS_PREAUTH) {
			/* Preauthenticated as whom? Never relay a user over someone else's session. */
			sc_fail(sc, STORE_LOGIN_FAILED, "store greeted with PREAUTH; refusing");
			return;
		}
		if (caps_from_code(sc, m)) {
			after_caps(sc);
		} else {
			sc->state = SC_CAPABILITY;
			send_setup(sc, "CAPABILITY");
		}
		return;
	case SC_CAPABILITY:
		if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "CAPABILITY")) {
			set_caps_from_args(sc, m->args + 1, m->nargs - 1);
			return;
		}
		if (take_setup_reply(sc, m)) {
			if (m->status != IMAP_STATUS_OK) {
				sc_fail(sc, STORE_LOGIN_FAILED, "store refused CAPABILITY");
				return;
			}
			after_caps(sc);
		}
		return;
	case SC_STARTTLS:
		if (take_setup_reply(sc, m)) {
			if (m->status != IMAP_STATUS_OK) {
				snprintf(why, sizeof(why), "store STARTTLS failed: %.*s", (int)m->text_len, m->text);
				sc_fail(sc, STORE_LOGIN_FAILED, why);
				return;
			}
			sc->state = SC_TLS_HANDSHAKE;
			imap_parser_reset(sc->parser);
			free(sc->caps);
			sc->caps = NULL; /* pre-TLS capabilities are not to be trusted */
			const char *name = sc->target->server_name && *sc->target->server_name ? sc->target->server_name
			                                                                       : sc->target->host;
			if (stream_start_tls_client(sc->stream, sc->target->creds, name, why, sizeof(why)) < 0)
				sc_fail(sc, STORE_LOGIN_FAILED, why);
		}
		return;
	case SC_LOGIN:
		if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "CAPABILITY")) {
			set_caps_from_args(sc, m->args + 1, m->nargs - 1);
			return;
		}
		if (take_setup_reply(sc, m)) {
			if (m->status != IMAP_STATUS_OK) {
				snprintf(why, sizeof(why), "%.*s", (int)m->text_len, m->text);
				sc_fail(sc, m->status == IMAP_STATUS_NO ? STORE_LOGIN_REFUSED : STORE_LOGIN_FAILED, why);
				return;
			}
			free(sc->caps);
			sc->caps = NULL;
			caps_from_code(sc, m);
			sc->state = SC_POST_LOGIN;
			post_login_next(sc, POST_CAPS);
		}
		return;
	default:
		return;
	}
}

/* ------------------------------------------------------------------------ */
/* input                                                                     */

static void ready_message(struct store_conn *sc, const struct imap_msg *m)
{
	switch (m->kind) {
	case IMAP_MSG_TAGGED:
		for (size_t i = 0; i < sc->ncmds; i++) {
			if (strcmp(sc->cmds[i].tag, m->tag) != 0)
				continue;
			struct pending_cmd c = sc->cmds[i];
			memmove(&sc->cmds[i], &sc->cmds[i + 1], (sc->ncmds - i - 1) * sizeof(*sc->cmds));
			sc->ncmds--;
			if (c.done)
				c.done(sc, m, c.ctx);
			return;
		}
		sc_log(sc, LOG_LEVEL_WARN, "store answered a tag that is not in flight: %s", m->tag);
		return;
	case IMAP_MSG_UNTAGGED:
		if (m->status == IMAP_STATUS_BYE && !sc->bye_expected) {
			char why[512];
			snprintf(why, sizeof(why), "store said BYE: %.*s", (int)m->text_len, m->text);
			sc_fail(sc, STORE_LOGIN_FAILED, why);
			return;
		}
		if (m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "CAPABILITY"))
			set_caps_from_args(sc, m->args + 1, m->nargs - 1);
		if (sc->state != SC_READY)
			return; /* "* ENABLED" and the like during setup */
		if (sc->ops && sc->ops->untagged)
			sc->ops->untagged(sc, m, sc->ctx);
		return;
	case IMAP_MSG_CONTINUATION:
		if (sc->ops && sc->ops->continuation)
			sc->ops->continuation(sc, m, sc->ctx);
		return;
	default:
		return;
	}
}

static void process_input(struct store_conn *sc)
{
	while (!sc->closing && sc->stream) {
		struct buf *in = stream_input(sc->stream);
		if (!buf_len(in))
			return;
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(sc->parser, buf_head(in), buf_len(in), &used);
		if (r == IMAP_PARSE_ERROR) {
			char why[256];
			snprintf(why, sizeof(why), "bad response from store: %s", imap_parser_error(sc->parser));
			sc_fail(sc, STORE_LOGIN_FAILED, why);
			return;
		}
		if (r == IMAP_PARSE_NEED_MORE) {
			buf_consume(in, used);
			return;
		}
		const struct imap_msg *m = imap_parser_msg(sc->parser);
		log_trace_imap(sc->prefix, TRACE_UPSTREAM_IN, m->raw, m->raw_len, false);
		/* Consume before handling (m lives in the parser, not in the buffer):
		 * COMPRESS and STARTTLS change how the bytes after this message are read. */
		buf_consume(in, used);
		if (sc->state == SC_READY || sc->state == SC_POST_LOGIN)
			ready_message(sc, m);
		else
			setup_message(sc, m);
		if (sc->closing || !sc->stream)
			return;
		imap_parser_reset(sc->parser);
		if (sc->state == SC_TLS_HANDSHAKE)
			return; /* stream_start_tls_client discarded buffered plaintext itself */
	}
}

static void on_stream_event(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct store_conn *sc = ctx;
	(void)st;
	char why[512];
	switch (ev) {
	case STREAM_EV_CONNECTED:
		if (sc->target->implicit_tls) {
			const char *name = sc->target->server_name && *sc->target->server_name ? sc->target->server_name
			                                                                       : sc->target->host;
			sc->state = SC_TLS_HANDSHAKE;
			if (stream_start_tls_client(sc->stream, sc->target->creds, name, why, sizeof(why)) < 0)
				sc_fail(sc, STORE_LOGIN_FAILED, why);
		} else {
			sc->state = SC_GREETING;
		}
		return;
	case STREAM_EV_TLS_READY:
		if (sc->caps == NULL && sc->state == SC_TLS_HANDSHAKE && sc->target->implicit_tls) {
			sc->state = SC_GREETING;
		} else {
			/* After STARTTLS: ask again, the earlier list was sent in the clear. */
			sc->state = SC_CAPABILITY;
			send_setup(sc, "CAPABILITY");
		}
		process_input(sc);
		return;
	case STREAM_EV_DATA:
		process_input(sc);
		return;
	case STREAM_EV_DRAINED:
		if (sc->state == SC_READY && sc->ops && sc->ops->drained)
			sc->ops->drained(sc, sc->ctx);
		return;
	case STREAM_EV_EOF:
		sc_fail(sc, STORE_LOGIN_FAILED, "store closed the connection");
		return;
	case STREAM_EV_ERROR:
		snprintf(why, sizeof(why), "store connection failed: %s", reason ? reason : "error");
		sc_fail(sc, STORE_LOGIN_FAILED, why);
		return;
	}
}

struct store_conn *store_conn_open(struct ev_loop *loop, const struct store_target *target, const char *user,
                                   const char *password, const char *log_prefix,
                                   const struct store_conn_ops *ops, void *ctx)
{
	struct store_conn *sc = xcalloc(1, sizeof(*sc));
	sc->loop = loop;
	sc->target = target;
	sc->user = xstrdup(user);
	sc->password = xstrdup(password);
	sc->ops = ops;
	sc->ctx = ctx;
	sc->state = SC_CONNECTING;
	store_conn_set_prefix(sc, log_prefix);
	/* Before login the store has no reason to send big responses. */
	struct imap_limits pre = target->limits;
	sc->parser = imap_parser_new(IMAP_PARSE_RESPONSES, &pre);
	char err[256];
	if (target->open) {
		int fd = target->open(target->open_arg, sc->prefix, err, sizeof(err));
		if (fd >= 0) {
			sc->stream = stream_new_fd(loop, fd, sc->prefix, target->out_limit, on_stream_event, sc);
			stream_set_deadline(sc->stream, target->connect_timeout);
			sc->state = SC_GREETING;
		}
	} else {
		sc->stream = stream_connect(loop, target->host, target->port, target->connect_timeout, sc->prefix,
		                            target->out_limit, on_stream_event, sc, err, sizeof(err));
	}
	if (!sc->stream) {
		/* The caller learns of this failure from the NULL, not from a callback. */
		log_msg(LOG_LEVEL_WARN, sc->prefix, "cannot connect to the store: %s", err);
		sc->ops = NULL;
		sc_fail(sc, STORE_LOGIN_FAILED, err);
		return NULL;
	}
	return sc;
}
