/*
 * proxy.c - the transparent IMAP relay (see proxy.h).
 *
 * Connection lifecycle of one session:
 *   accept -> (client TLS handshake if implicit) and, in parallel, upstream
 *   connect -> upstream TLS (implicit) or greeting + STARTTLS -> CAPABILITY
 *   -> greet the client -> relay. At the client's successful LOGIN or
 *   AUTHENTICATE the proxy turns on COMPRESS=DEFLATE upstream when offered,
 *   holding the client's next commands until that exchange is over.
 *
 * Both directions are parsed into whole IMAP messages (imap_parse.c) so
 * that limits apply, traces can hide secrets, capability lists can be
 * rewritten, and the commands the proxy owns on the client leg (STARTTLS,
 * COMPRESS) are recognised. Everything else is forwarded byte for byte.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "buf.h"
#include "caps.h"
#include "daemon.h"
#include "imap_parse.h"
#include "imap_write.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "http_link.h"
#include "proxy_filter.h"
#include "proxy_link.h"
#include "status_cache.h"
#include "proxy_status.h"
#include "proxy_session.h"
#include "proxy_smtp.h"
#include "proxy_view.h"
#include "stream.h"
#include "tlsio.h"
#include "url.h"


/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

void slog(const struct session *s, enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, s->prefix, fmt, ap);
	va_end(ap);
}

static void process_upstream_input(struct session *s);

static bool is_internal_tag(const char *tag)
{
	return tag && strncmp(tag, INTERNAL_TAG_PREFIX, strlen(INTERNAL_TAG_PREFIX)) == 0;
}

/* Send one of our own lines to the client (traced). */
void client_say(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	memcpy(line + n, "\r\n", 3);
	n += 2;
	log_trace_imap(s->prefix, TRACE_CLIENT_OUT, (const uint8_t *)line, (size_t)n, false);
	stream_write(s->client, line, (size_t)n);
}

static void upstream_send_internal(struct session *s, enum internal_cmd cmd, const char *command)
{
	char line[256];
	snprintf(s->internal_tag, sizeof(s->internal_tag), INTERNAL_TAG_PREFIX "%u", ++s->internal_seq);
	int n = snprintf(line, sizeof(line), "%s %s\r\n", s->internal_tag, command);
	s->internal = cmd;
	log_trace_imap(s->prefix, TRACE_UPSTREAM_OUT, (const uint8_t *)line, (size_t)n, false);
	stream_write(s->upstream, line, (size_t)n);
	stream_flush(s->upstream);
}

static void set_upstream_caps(struct session *s, const char *caps, size_t len)
{
	free(s->upstream_caps);
	s->upstream_caps = xmalloc(len + 1);
	memcpy(s->upstream_caps, caps, len);
	s->upstream_caps[len] = '\0';
}

static bool upstream_has(const struct session *s, const char *cap)
{
	return s->upstream_caps && caps_contains(s->upstream_caps, strlen(s->upstream_caps), cap);
}

/* The capability list the client sees, for the current client-leg state. */
/* May this client log in on its current leg (listen.plaintext_login)? */
static bool login_allowed(const struct session *s)
{
	switch (s->srv->cfg->plaintext_login) {
	case PLAINTEXT_LOGIN_ALWAYS:
		return true;
	case PLAINTEXT_LOGIN_NEVER:
		return s->client_tls;
	default:
		return s->client_tls || s->client_loopback;
	}
}

void client_caps(const struct session *s, struct buf *out)
{
	struct caps_client_leg leg = {.tls = s->client_tls, .authenticated = s->authenticated, .gateway = s->link != NULL,
	                              .login_disabled = !s->authenticated && !login_allowed(s)};
	const char *up = s->upstream_caps ? s->upstream_caps : "IMAP4rev1";
	caps_for_client(up, strlen(up), &leg, out);
}

/* If code is "CAPABILITY ..." return the list after the word, else NULL. */
static const char *code_capability(const struct imap_msg *m, size_t *len)
{
	if (!m->code || m->code_len < 10 || strncasecmp(m->code, "CAPABILITY", 10) != 0)
		return NULL;
	if (m->code_len > 10 && m->code[10] != ' ')
		return NULL;
	const char *p = m->code + 10;
	size_t n = m->code_len - 10;
	while (n && *p == ' ') {
		p++;
		n--;
	}
	*len = n;
	return p;
}

/* Join the atoms args[from..] of an untagged CAPABILITY response. */
static void join_args(const struct imap_msg *m, size_t from, struct buf *out)
{
	for (size_t i = from; i < m->nargs; i++) {
		if (i > from)
			buf_append(out, " ", 1);
		buf_append(out, m->args[i].str, m->args[i].len);
	}
}

void activity_arm(struct session *s)
{
	const struct proxy_config *cfg = s->srv->cfg;
	double t = s->authenticated ? cfg->idle_timeout : cfg->preauth_timeout;
	ev_timer_stop(s->srv->loop, &s->activity);
	ev_timer_set(&s->activity, t, 0.);
	ev_timer_start(s->srv->loop, &s->activity);
}

/* ------------------------------------------------------------------------ */
/* session lifecycle                                                         */

static void session_destroy(void *arg)
{
	struct session *s = arg;
	imap_parser_free(s->cparser);
	imap_parser_free(s->uparser);
	buf_free(&s->lit_cmd);
	for (size_t i = 0; i < s->ninflight; i++)
		free(s->inflight[i].tag);
	free(s->inflight);
	free(s->upstream_caps);
	link_free(s->link);
	pview_free(s->pview);
	s->magic = 0;
	free(s);
}

/*
 * Nothing the client waits for is in flight, so a BYE loses nothing. A client
 * in IDLE waits for nothing but pushes: RFC 3501 lets a server end it with BYE.
 */
static bool session_quiescent(const struct session *s)
{
	if (s->link)
		return link_quiescent(s);
	if (s->pview && !pview_quiescent(s))
		return false;
	if (s->block == BLOCK_IDLE)
		return s->ninflight <= 1;
	return s->ninflight == 0 && s->block == BLOCK_NONE;
}

/*
 * In stdio mode the loop ends by itself once the client stream has flushed
 * its last reply and closed (main.c does not count the signal watchers), so
 * only a drain breaks it here.
 */
static void server_maybe_finish_drain(struct proxy_server *srv)
{
	if (srv->draining && srv->nsessions == 0) {
		ev_timer_stop(srv->loop, &srv->drain_timer);
		ev_break(srv->loop, EVBREAK_ALL);
	}
}

/*
 * The single teardown path. Safe from inside any callback of the session's
 * streams: streams and the session itself are freed from the loop later.
 * Output already queued to the client is still delivered.
 */
void session_close(struct session *s, const char *why)
{
	if (s->closing)
		return;
	s->closing = true;
	struct proxy_server *srv = s->srv;

	uint64_t cin = 0, cout = 0, uin = 0, uout = 0;
	if (s->client)
		stream_wire_counts(s->client, &cin, &cout);
	if (s->upstream)
		stream_wire_counts(s->upstream, &uin, &uout);
	slog(s, LOG_LEVEL_INFO, "closed (%s): client in=%llu out=%llu, upstream in=%llu out=%llu%s", why,
	     (unsigned long long)cin, (unsigned long long)cout, (unsigned long long)uin,
	     (unsigned long long)uout, s->upstream && stream_is_compressed(s->upstream) ? " compressed" : "");

	ev_timer_stop(srv->loop, &s->activity);
	smtp_service_login_result(srv->smtp, s, false);
	if (s->link)
		link_session_closing(s);
	else if (s->upstream)
		stream_close(s->upstream);
	if (s->client) {
		stream_set_deadline(s->client, 5.0); /* bounded: a client that stops reading */
		stream_close_after_flush(s->client);
	}
	s->upstream = s->client = NULL;

	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	loop_defer_free(session_destroy, s);
	server_maybe_finish_drain(srv);
}

/* Tell the client why, then close. */
void session_bye(struct session *s, const char *code, const char *why)
{
	if (s->closing)
		return;
	if (s->client && !s->bye_sent) {
		if (code)
			client_say(s, "* BYE [%s] %s", code, why);
		else
			client_say(s, "* BYE %s", why);
		stream_flush(s->client);
	}
	session_close(s, why);
}

/*
 * The upstream connection failed before or while being set up. A logged-in
 * client of a gateway keeps its session: the link reconnects. Anyone else
 * is told why and disconnected.
 */
static void upstream_failed(struct session *s, const char *why)
{
	if (s->link && s->authenticated) {
		link_upstream_lost(s, why);
		return;
	}
	session_bye(s, "UNAVAILABLE", why);
}

static void on_activity_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;
	if (s->authenticated)
		session_bye(s, NULL, "Autologout; idle for too long");
	else
		session_bye(s, NULL, "Autologout; login timeout");
}

/* ------------------------------------------------------------------------ */
/* greeting the client once both legs are ready                              */

static void maybe_greet_client(struct session *s)
{
	if (s->greeted || !s->client_ready || s->up_state != UP_READY)
		return;
	struct buf caps;
	buf_init(&caps, 0);
	client_caps(s, &caps);
	buf_append(&caps, "", 1);
	client_say(s, "* OK [CAPABILITY %s] pimap-proxy ready.", (const char *)buf_head(&caps));
	buf_free(&caps);
	stream_flush(s->client);
	s->greeted = true;
	slog(s, LOG_LEVEL_DEBUG, "greeted client");
	/* The client may have spoken before the greeting; handle it now. */
	process_client_input(s);
}

static void upstream_ready(struct session *s)
{
	s->up_state = UP_READY;
	stream_set_deadline(s->upstream, 0);
	slog(s, LOG_LEVEL_DEBUG, "upstream ready (%s)", stream_is_tls(s->upstream) ? "TLS" : "plaintext");
	if (s->link && s->greeted) {
		link_upstream_ready(s); /* a reconnect: log in again and resume */
		return;
	}
	maybe_greet_client(s);
}

/* ------------------------------------------------------------------------ */
/* upstream setup                                                            */

static void upstream_start_tls(struct session *s)
{
	char err[256];
	const char *name = s->srv->upstream_name;
	if (stream_start_tls_client(s->upstream, s->srv->upstream_creds, name, err, sizeof(err)) < 0)
		upstream_failed(s, err);
}

/* After TLS (or a plaintext greeting that is allowed) decide the next step. */
static void upstream_after_greeting_caps(struct session *s)
{
	const struct proxy_server *srv = s->srv;
	/* Over the HTTPS binding the upstream stream is a socketpair to http_link.c, which does the TLS. */
	if (!stream_is_tls(s->upstream) && !srv->https) {
		if (upstream_has(s, "STARTTLS")) {
			s->up_state = UP_STARTTLS;
			upstream_send_internal(s, INT_NONE, "STARTTLS");
			return;
		}
		if (!srv->allow_plaintext) {
			upstream_failed(s, "Upstream does not offer STARTTLS; refusing to send credentials in plaintext");
			return;
		}
		slog(s, LOG_LEVEL_WARN, "upstream without TLS (upstream.allow_plaintext is set)");
	}
	upstream_ready(s);
}

/* A message from the upstream before the relay starts. */
static void upstream_setup_message(struct session *s, const struct imap_msg *m)
{
	char why[512];
	switch (s->up_state) {
	case UP_GREETING:
		if (m->kind != IMAP_MSG_UNTAGGED ||
		    (m->status != IMAP_STATUS_OK && m->status != IMAP_STATUS_PREAUTH && m->status != IMAP_STATUS_BYE)) {
			upstream_failed(s, "Upstream sent no IMAP greeting");
			return;
		}
		if (m->status == IMAP_STATUS_BYE) {
			snprintf(why, sizeof(why), "Upstream refused the connection: %.*s", (int)m->text_len, m->text);
			upstream_failed(s, why);
			return;
		}
		if (m->status == IMAP_STATUS_PREAUTH) {
			/* A preauthenticated upstream would log every client in as one user. */
			upstream_failed(s, "Upstream greeted with PREAUTH; refusing to relay");
			return;
		}
		{
			size_t len;
			const char *caps = code_capability(m, &len);
			if (caps) {
				set_upstream_caps(s, caps, len);
				upstream_after_greeting_caps(s);
			} else {
				s->up_state = UP_CAPABILITY;
				upstream_send_internal(s, INT_CAPABILITY, "CAPABILITY");
			}
		}
		return;
	case UP_CAPABILITY:
		if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "CAPABILITY")) {
			struct buf caps;
			buf_init(&caps, 0);
			join_args(m, 1, &caps);
			set_upstream_caps(s, (const char *)buf_head(&caps), buf_len(&caps));
			buf_free(&caps);
			return;
		}
		if (m->kind == IMAP_MSG_TAGGED && m->tag && strcmp(m->tag, s->internal_tag) == 0) {
			s->internal = INT_NONE;
			if (m->status != IMAP_STATUS_OK) {
				upstream_failed(s, "Upstream refused CAPABILITY");
				return;
			}
			upstream_after_greeting_caps(s);
		}
		return; /* other untagged chatter before login is not the client's business */
	case UP_STARTTLS:
		if (m->kind == IMAP_MSG_TAGGED && m->tag && strcmp(m->tag, s->internal_tag) == 0) {
			if (m->status != IMAP_STATUS_OK) {
				snprintf(why, sizeof(why), "Upstream STARTTLS failed: %.*s", (int)m->text_len, m->text);
				upstream_failed(s, why);
				return;
			}
			s->up_state = UP_STARTTLS_HS;
			/* Anything the server sent after its OK is discarded by the TLS switch. */
			imap_parser_reset(s->uparser);
			upstream_start_tls(s);
		}
		return;
	default:
		return;
	}
}

/* ------------------------------------------------------------------------ */
/* client -> upstream                                                        */

void forward_to_upstream(struct session *s, const uint8_t *data, size_t len, bool secret)
{
	log_trace_imap(s->prefix, TRACE_UPSTREAM_OUT, data, len, secret);
	stream_write(s->upstream, data, len);
}

static struct inflight *inflight_push(struct session *s, const char *tag)
{
	if (s->ninflight == s->inflight_cap) {
		s->inflight_cap = s->inflight_cap ? 2 * s->inflight_cap : 8;
		s->inflight = xrealloc(s->inflight, s->inflight_cap * sizeof(*s->inflight));
	}
	struct inflight *e = &s->inflight[s->ninflight++];
	memset(e, 0, sizeof(*e));
	e->tag = xstrdup(tag);
	return e;
}

/* Complete the oldest command with this tag: copies it to *out and returns true. */
static bool inflight_complete(struct session *s, const char *tag, struct inflight *out)
{
	for (size_t i = 0; i < s->ninflight; i++) {
		if (strcmp(s->inflight[i].tag, tag) != 0)
			continue;
		*out = s->inflight[i];
		free(out->tag);
		out->tag = NULL;
		memmove(&s->inflight[i], &s->inflight[i + 1], (s->ninflight - i - 1) * sizeof(*s->inflight));
		s->ninflight--;
		return true;
	}
	return false;
}

/* The newest command in flight (the one just forwarded). */
static struct inflight *inflight_last(struct session *s)
{
	return s->ninflight ? &s->inflight[s->ninflight - 1] : NULL;
}

void literals_to_nonsync(const struct imap_msg *m, struct buf *out)
{
	size_t ends[MAX_LITERAL_SEGMENTS], sizes[MAX_LITERAL_SEGMENTS];
	int n = imap_find_sync_literals(m->raw, m->raw_len, ends, sizes, MAX_LITERAL_SEGMENTS);
	size_t from = 0;
	/* Rewrite "{n}\r\n" as "{n+}\r\n" at each header. */
	for (int i = 0; i < n; i++) {
		size_t brace = ends[i] - 1;                   /* LF */
		if (brace > 0 && m->raw[brace - 1] == '\r')
			brace--;
		brace--;                                      /* '}' */
		buf_append(out, m->raw + from, brace - from);
		buf_append(out, "+", 1);
		from = brace;
	}
	buf_append(out, m->raw + from, m->raw_len - from);
}

/*
 * Forward a client command. Synchronising literals were already answered
 * with "+" by the proxy; upstream they become LITERAL+ when the server
 * allows it (no round trip), otherwise they are sent one segment per
 * upstream "+" (BLOCK_LITERALS).
 */
static void forward_command(struct session *s, const struct imap_msg *m)
{
	size_t ends[MAX_LITERAL_SEGMENTS], sizes[MAX_LITERAL_SEGMENTS];
	int n = imap_find_literals(m->raw, m->raw_len, ends, sizes, NULL, MAX_LITERAL_SEGMENTS);
	if (n < 0) {
		client_say(s, "%s BAD Too many literals in one command", m->tag);
		return;
	}
	inflight_push(s, m->tag);
	if (n == 0) {
		forward_to_upstream(s, m->raw, m->raw_len, false);
		return;
	}
	bool plus = upstream_has(s, "LITERAL+");
	bool minus = upstream_has(s, "LITERAL-");
	bool all_small = true;
	for (int i = 0; i < n; i++)
		if (sizes[i] > LITERAL_MINUS_MAX)
			all_small = false;
	if (plus || (minus && all_small)) {
		struct buf out;
		buf_init(&out, 0);
		literals_to_nonsync(m, &out);
		forward_to_upstream(s, buf_head(&out), buf_len(&out), false);
		buf_free(&out);
		return;
	}
	/* Step by step: first segment now, each next one on the upstream's "+".
	 * A client's own LITERAL+ literals too: the upstream would refuse them
	 * and read their bytes as commands. */
	buf_clear(&s->lit_cmd);
	imap_write_literals_sync(&s->lit_cmd, m->raw, m->raw_len);
	n = imap_find_sync_literals(buf_head(&s->lit_cmd), buf_len(&s->lit_cmd), ends, NULL, MAX_LITERAL_SEGMENTS);
	for (int i = 0; i < n; i++)
		s->lit_ends[i] = ends[i];
	s->lit_nsegs = (size_t)n;
	s->lit_next = 0;
	s->block = BLOCK_LITERALS;
	inflight_last(s)->stepping = true;
	forward_to_upstream(s, buf_head(&s->lit_cmd), s->lit_ends[0], false);
}

/* Send the next literal segment after an upstream "+". */
static void literal_continue(struct session *s)
{
	size_t from = s->lit_ends[s->lit_next];
	s->lit_next++;
	size_t to = s->lit_next < s->lit_nsegs ? s->lit_ends[s->lit_next] : buf_len(&s->lit_cmd);
	/* A LOGIN's later segments begin with the password: the tracer cannot
	 * tell, since it sees them without the "tag LOGIN user" before. */
	struct inflight *cmd = inflight_last(s);
	forward_to_upstream(s, buf_head(&s->lit_cmd) + from, to - from, cmd && cmd->login);
	if (s->lit_next >= s->lit_nsegs) {
		/* Whole command sent. A LOGIN keeps holding the client until its
		 * outcome is known; anything else is an ordinary command in flight. */
		struct inflight *e = inflight_last(s);
		e->stepping = false;
		s->block = e->login ? BLOCK_LOGIN : BLOCK_NONE;
		buf_clear(&s->lit_cmd);
	}
}

/* STARTTLS on the client leg: ours to answer. */
static void client_starttls(struct session *s, const struct imap_msg *m)
{
	char err[256];
	if (s->client_tls || s->authenticated || !s->srv->local_creds) {
		client_say(s, "%s BAD STARTTLS not available now", m->tag);
		return;
	}
	/* Replies still to come would cross the switch: plaintext into the
	 * handshake, or injected into the TLS session afterwards. */
	if (s->ninflight > 0) {
		client_say(s, "%s BAD STARTTLS with commands in progress", m->tag);
		return;
	}
	client_say(s, "%s OK Begin TLS negotiation now", m->tag);
	/* The stream writes the OK, discards anything the client pipelined behind
	 * STARTTLS, then starts the handshake. */
	imap_parser_reset(s->cparser);
	s->client_ready = false;
	if (stream_start_tls_server(s->client, s->srv->local_creds, err, sizeof(err)) < 0)
		session_close(s, err);
}

/* COMPRESS on the client leg: ours to answer (RFC 4978). */
static void client_compress(struct session *s, const struct imap_msg *m)
{
	if (m->nargs != 2) {
		client_say(s, "%s BAD COMPRESS needs one argument", m->tag);
		return;
	}
	if (!imap_arg_is_atom(&m->args[1], "DEFLATE")) {
		client_say(s, "%s NO Unknown compression mechanism", m->tag);
		return;
	}
	if (!s->authenticated) {
		client_say(s, "%s BAD COMPRESS is allowed only after login", m->tag);
		return;
	}
	if (stream_is_compressed(s->client)) {
		client_say(s, "%s NO [COMPRESSIONACTIVE] DEFLATE already active", m->tag);
		return;
	}
	client_say(s, "%s OK DEFLATE active", m->tag);
	if (stream_enable_compress(s->client, -1) < 0)
		session_close(s, "client compression failed");
}

static bool command_is(const struct imap_msg *m, const char *name)
{
	return m->nargs >= 1 && imap_arg_is_atom(&m->args[0], name);
}

static void handle_client_message(struct session *s, const struct imap_msg *m)
{
	if (m->kind == IMAP_MSG_RAW_LINE) {
		/* DONE after IDLE, or an AUTHENTICATE response line. */
		log_trace_imap(s->prefix, TRACE_CLIENT_IN, m->raw, m->raw_len, s->raw_secret);
		if (s->link) {
			link_client_raw_line(s, m);
			return;
		}
		if (s->raw_secret) {
			smtp_service_login_line(s->srv->smtp, s, m->text, m->text_len);
			proxy_status_note_sasl_line(s, m);
			pview_login_line(s, m);
		}
		if (s->pview && pview_client_raw(s, m))
			return;
		forward_to_upstream(s, m->raw, m->raw_len, s->raw_secret);
		s->raw_line_ok = false;
		return;
	}
	log_trace_imap(s->prefix, TRACE_CLIENT_IN, m->raw, m->raw_len, false);
	if (strlen(m->tag) > MAX_CLIENT_TAG) {
		client_say(s, "* BAD Tag too long (limit %d bytes)", MAX_CLIENT_TAG);
		return;
	}
	if (command_is(m, "STARTTLS")) {
		client_starttls(s, m);
		return;
	}
	if (command_is(m, "COMPRESS")) {
		client_compress(s, m);
		return;
	}
	if (s->srv->draining && !s->authenticated) {
		client_say(s, "%s NO [UNAVAILABLE] Server shutting down", m->tag);
		return;
	}
	if ((command_is(m, "LOGIN") || command_is(m, "AUTHENTICATE")) && !s->authenticated && !login_allowed(s)) {
		client_say(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS before logging in", m->tag);
		return;
	}
	if (s->link) {
		link_client_command(s, m);
		return;
	}
	if (s->authenticated && s->srv->filters && pview_client_command(s, m))
		return;
	if (command_is(m, "LOGIN") || command_is(m, "AUTHENTICATE")) {
		if (s->authenticated) {
			client_say(s, "%s BAD Already authenticated", m->tag);
			return;
		}
		if (!login_allowed(s)) {
			client_say(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS before logging in", m->tag);
			return;
		}
		size_t before = s->ninflight;
		smtp_service_login_command(s->srv->smtp, s, m); /* the SMTP outbox may need the password */
		proxy_status_note_login(s, m);
		if (s->srv->filters)
			pview_login_command(s, m); /* counting filtered folders may need them */
		s->block = BLOCK_LOGIN;
		s->authenticate = command_is(m, "AUTHENTICATE");
		forward_command(s, m);
		if (s->ninflight > before)
			inflight_last(s)->login = true;
		else
			s->block = BLOCK_NONE; /* refused by the proxy itself */
		return;
	}
	if (command_is(m, "IDLE")) {
		size_t before = s->ninflight;
		forward_command(s, m);
		if (s->ninflight > before) {
			s->block = BLOCK_IDLE;
			inflight_last(s)->idle = true;
		}
		return;
	}
	forward_command(s, m);
}

static void client_parse_error(struct session *s)
{
	const char *why = imap_parser_error(s->cparser);
	const char *tag = imap_parser_tag(s->cparser);
	bool recoverable = imap_parser_error_recoverable(s->cparser);
	bool toobig = strstr(why, "too large") || strstr(why, "too long");
	char text[300];

	if (!recoverable) {
		if (strstr(why, "line too long"))
			snprintf(text, sizeof(text), "Line too long (limit %zu bytes)", s->active_limits.max_line_length);
		else if (strstr(why, "literal too large"))
			snprintf(text, sizeof(text), "Literal too large (limit %zu bytes)", s->active_limits.max_literal_size);
		else if (strstr(why, "message too large"))
			snprintf(text, sizeof(text), "Command too large (limit %zu bytes)", s->active_limits.max_message_size);
		else
			snprintf(text, sizeof(text), "Protocol error: %s", why);
		slog(s, LOG_LEVEL_INFO, "client error: %s", why);
		session_bye(s, toobig ? "TOOBIG" : NULL, text);
		return;
	}
	if (strstr(why, "literal too large"))
		snprintf(text, sizeof(text), "[TOOBIG] Literal too large (limit %zu bytes)", s->active_limits.max_literal_size);
	else if (strstr(why, "message too large"))
		snprintf(text, sizeof(text), "[TOOBIG] Command too large (limit %zu bytes)", s->active_limits.max_message_size);
	else
		snprintf(text, sizeof(text), "Syntax error: %s", why);
	client_say(s, "%s BAD %s", tag ? tag : "*", text);
	slog(s, LOG_LEVEL_DEBUG, "client syntax error: %s", why);
	imap_parser_skip_line(s->cparser);
	s->skipping = true;
}

/*
 * End of a batch: send what both legs have queued. A flush can fail and close
 * the session (a peer that reset), so this returns false when it is closing.
 */
static bool flush_both(struct session *s)
{
	if (s->closing)
		return false;
	stream_flush(s->client);
	if (s->closing)
		return false;
	if (s->upstream)
		stream_flush(s->upstream);
	return !s->closing;
}

/* May the proxy parse the next client message now? */
static bool client_may_proceed(const struct session *s)
{
	if (s->closing || !s->greeted || !s->client_ready || s->upstream_bye)
		return false;
	/* Our own replies (BAD, "+ OK") go to the client: bounded like relayed data. */
	if (stream_output_full(s->client))
		return false;
	if (s->link)
		return link_client_may_proceed(s);
	if (s->block == BLOCK_NONE)
		return !stream_output_full(s->upstream);
	return s->raw_line_ok;
}

void process_client_input(struct session *s)
{
	while (client_may_proceed(s)) {
		struct buf *in = stream_input(s->client);
		if (buf_len(in) == 0)
			break;
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(s->cparser, buf_head(in), buf_len(in), &used);
		buf_consume(in, used);
		if (r == IMAP_PARSE_NEED_MORE) {
			if (imap_parser_wants_continuation(s->cparser)) {
				client_say(s, "+ OK");
				stream_flush(s->client);
			}
			break;
		}
		if (r == IMAP_PARSE_ERROR) {
			client_parse_error(s);
			continue;
		}
		const struct imap_msg *m = imap_parser_msg(s->cparser);
		if (s->skipping) {
			/* The end of a line skipped after a syntax error. */
			s->skipping = false;
			imap_parser_reset(s->cparser);
			continue;
		}
		handle_client_message(s, m);
		imap_parser_reset(s->cparser);
	}
	if (!flush_both(s))
		return;
	/* Backpressure: stop reading the client while either queue toward a peer
	 * is full (the proxy's own replies count too). */
	stream_pause_reading(s->client, (s->upstream && stream_output_full(s->upstream)) || stream_output_full(s->client));
}

/* ------------------------------------------------------------------------ */
/* upstream -> client                                                        */

void forward_to_client(struct session *s, const uint8_t *data, size_t len)
{
	log_trace_imap(s->prefix, TRACE_CLIENT_OUT, data, len, false);
	stream_write(s->client, data, len);
}

/* Relay a capability-bearing response with the list rewritten for the client. */
static void forward_with_caps(struct session *s, const struct imap_msg *m, const char *caps, size_t caps_len,
                              bool untagged_data)
{
	set_upstream_caps(s, caps, caps_len);
	struct buf line, list;
	buf_init(&line, 0);
	buf_init(&list, 0);
	client_caps(s, &list);
	if (untagged_data) {
		buf_append_str(&line, "* CAPABILITY ");
		buf_append(&line, buf_head(&list), buf_len(&list));
	} else {
		buf_append_str(&line, m->kind == IMAP_MSG_TAGGED ? m->tag : "*");
		buf_printf(&line, " %s [CAPABILITY ", imap_status_name(m->status));
		buf_append(&line, buf_head(&list), buf_len(&list));
		buf_append_str(&line, "]");
		if (m->text_len) {
			buf_append(&line, " ", 1);
			buf_append(&line, m->text, m->text_len);
		}
	}
	buf_append_str(&line, "\r\n");
	forward_to_client(s, buf_head(&line), buf_len(&line));
	buf_free(&line);
	buf_free(&list);
}

/* The client's LOGIN/AUTHENTICATE succeeded upstream (its OK is already queued). */
void session_logged_in(struct session *s)
{
	activity_arm(s);
	/* Client input is held while the login was in flight, so the parser is
	 * between messages: the configured limits apply from the next command. */
	s->active_limits = s->climits;
	imap_parser_set_limits(s->cparser, &s->active_limits);
	slog(s, LOG_LEVEL_INFO, "logged in");
}

static void login_succeeded(struct session *s)
{
	session_logged_in(s);
	smtp_service_login_result(s->srv->smtp, s, true);
	if (!s->srv->compress_upstream || stream_is_compressed(s->upstream))
		return;
	if (!upstream_has(s, "COMPRESS=DEFLATE"))
		return;
	/* Hold the client's next commands until the upstream switch is done. */
	s->block = BLOCK_INTERNAL;
	upstream_send_internal(s, INT_COMPRESS, "COMPRESS DEFLATE");
}

static void handle_internal_response(struct session *s, const struct imap_msg *m)
{
	enum internal_cmd cmd = s->internal;
	s->internal = INT_NONE;
	if (cmd == INT_COMPRESS) {
		if (m->status == IMAP_STATUS_OK) {
			imap_parser_reset(s->uparser);
			if (stream_enable_compress(s->upstream, -1) < 0) {
				session_bye(s, "UNAVAILABLE", "Upstream compression failed");
				return;
			}
			slog(s, LOG_LEVEL_INFO, "upstream COMPRESS=DEFLATE active");
		} else {
			slog(s, LOG_LEVEL_INFO, "upstream refused COMPRESS: %.*s", (int)m->text_len, m->text);
		}
		s->block = BLOCK_NONE;
	}
}

void relay_response(struct session *s, const struct imap_msg *m)
{
	size_t caps_len;
	const char *caps = code_capability(m, &caps_len);
	if (m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "CAPABILITY")) {
		struct buf list;
		buf_init(&list, 0);
		join_args(m, 1, &list);
		forward_with_caps(s, m, (const char *)buf_head(&list), buf_len(&list), true);
		buf_free(&list);
	} else if (caps && m->status != IMAP_STATUS_NONE) {
		forward_with_caps(s, m, caps, caps_len, false);
	} else {
		forward_to_client(s, m->raw, m->raw_len);
	}
}

/* The tagged reply of a relayed client command (compatibility relay). */
void relay_tagged_reply(struct session *s, const struct imap_msg *m)
{
	size_t caps_len;
	const char *caps;
	struct inflight done;
	if (inflight_complete(s, m->tag, &done) && (done.login || done.idle || done.stepping)) {
		/* The blocking command is over (also when a server refuses
		 * before taking every literal): release the client. */
		s->block = BLOCK_NONE;
		s->raw_line_ok = false;
		s->raw_secret = false;
		imap_parser_cancel_raw_line(s->cparser);
		buf_clear(&s->lit_cmd);
		if (done.login && m->status == IMAP_STATUS_OK)
			s->authenticated = true; /* before rewriting caps: COMPRESS is offered now */
	}
	caps = code_capability(m, &caps_len);
	if (caps)
		forward_with_caps(s, m, caps, caps_len, false);
	else
		forward_to_client(s, m->raw, m->raw_len);
	if (s->authenticated && !s->login_done) {
		s->login_done = true;
		login_succeeded(s);
	}
}

void relay_command_text(struct session *s, const char *tag, const uint8_t *text, size_t len)
{
	inflight_push(s, tag);
	forward_to_upstream(s, text, len, false);
}

static void handle_upstream_message(struct session *s, const struct imap_msg *m)
{
	size_t caps_len;
	const char *caps;

	log_trace_imap(s->prefix, TRACE_UPSTREAM_IN, m->raw, m->raw_len, false);
	if (s->up_state != UP_READY) {
		upstream_setup_message(s, m);
		return;
	}
	if (s->link) {
		link_upstream_message(s, m);
		return;
	}
	if (s->pview && pview_upstream(s, m))
		return;
	switch (m->kind) {
	case IMAP_MSG_CONTINUATION:
		if (s->block == BLOCK_LITERALS) {
			literal_continue(s);
			return;
		}
		if (s->internal != INT_NONE)
			return; /* not expected for our commands; never the client's */
		if (s->block == BLOCK_IDLE || (s->block == BLOCK_LOGIN && s->authenticate)) {
			/* The client's next line is "DONE" or a SASL response, not a command. */
			imap_parser_expect_raw_line(s->cparser);
			s->raw_line_ok = true;
			s->raw_secret = s->block == BLOCK_LOGIN;
		}
		forward_to_client(s, m->raw, m->raw_len);
		return;
	case IMAP_MSG_TAGGED:
		if (is_internal_tag(m->tag) && s->internal != INT_NONE && strcmp(m->tag, s->internal_tag) == 0) {
			handle_internal_response(s, m);
			return;
		}
		relay_tagged_reply(s, m);
		return;
	case IMAP_MSG_UNTAGGED:
		if (m->status == IMAP_STATUS_BYE)
			s->upstream_bye = true;
		if (m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "CAPABILITY")) {
			struct buf list;
			buf_init(&list, 0);
			join_args(m, 1, &list);
			if (s->internal == INT_CAPABILITY)
				set_upstream_caps(s, (const char *)buf_head(&list), buf_len(&list));
			else
				forward_with_caps(s, m, (const char *)buf_head(&list), buf_len(&list), true);
			buf_free(&list);
			return;
		}
		caps = code_capability(m, &caps_len);
		if (caps && m->status != IMAP_STATUS_NONE) {
			forward_with_caps(s, m, caps, caps_len, false);
			return;
		}
		forward_to_client(s, m->raw, m->raw_len);
		return;
	default:
		forward_to_client(s, m->raw, m->raw_len);
		return;
	}
}

static void process_upstream_input(struct session *s)
{
again:
	while (!s->closing && s->upstream && !stream_output_full(s->client)) {
		struct buf *in = stream_input(s->upstream);
		if (buf_len(in) == 0)
			break;
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(s->uparser, buf_head(in), buf_len(in), &used);
		buf_consume(in, used);
		if (r == IMAP_PARSE_NEED_MORE)
			break;
		if (r == IMAP_PARSE_ERROR) {
			char why[300];
			snprintf(why, sizeof(why), "Upstream protocol error: %s", imap_parser_error(s->uparser));
			upstream_failed(s, why);
			return;
		}
		handle_upstream_message(s, imap_parser_msg(s->uparser));
		if (s->closing)
			return;
		imap_parser_reset(s->uparser);
		if (s->up_state == UP_STARTTLS_HS)
			return;
	}
	if (!flush_both(s))
		return;
	if (!s->upstream) {
		/* The gateway link went down while reading: the client goes on. */
		process_client_input(s);
		return;
	}
	/* The flush may have emptied the client queue at once: go on with what
	 * the upstream already sent rather than wait for a socket event that
	 * will not come (the upstream may have sent everything). */
	if (buf_len(stream_input(s->upstream)) > 0 && !stream_output_full(s->client))
		goto again;
	stream_pause_reading(s->upstream, stream_output_full(s->client));
	if (s->upstream_bye) {
		/* Relay the rest (LOGOUT's tagged OK) until the server closes; bounded. */
		stream_set_deadline(s->upstream, 5.0);
		return;
	}
	/* A finished block may release held client commands. */
	process_client_input(s);
	if (s->srv->draining && session_quiescent(s) && !s->closing)
		session_bye(s, NULL, "pimap-proxy shutting down");
}

/* ------------------------------------------------------------------------ */
/* stream callbacks                                                          */

static struct session *session_of(void *ctx)
{
	struct session *s = ctx;
	if (!s || s->magic != SESSION_MAGIC)
		abort(); /* a callback for freed memory is a bug, not a peer problem */
	return s;
}

static void on_client_event(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct session *s = session_of(ctx);
	if (s->closing)
		return;
	switch (ev) {
	case STREAM_EV_TLS_READY: {
		bool after_starttls = s->greeted; /* the greeting is not repeated */
		s->client_tls = true;
		s->client_ready = true;
		slog(s, LOG_LEVEL_DEBUG, "client TLS established");
		if (after_starttls)
			process_client_input(s);
		else
			maybe_greet_client(s);
		break;
	}
	case STREAM_EV_DATA:
		activity_arm(s);
		process_client_input(s);
		break;
	case STREAM_EV_DRAINED:
		/* Room toward the client again: relay what the upstream sent, and
		 * resume parsing the client (our own replies were held too). */
		if (s->upstream) /* NULL while a gateway link is down */
			stream_pause_reading(s->upstream, false);
		if (s->upstream)
			process_upstream_input(s);
		if (!s->closing)
			process_client_input(s);
		break;
	case STREAM_EV_EOF:
		session_close(s, "client closed the connection");
		break;
	case STREAM_EV_ERROR:
		session_close(s, reason ? reason : "client error");
		break;
	case STREAM_EV_CONNECTED:
		break;
	}
}

static void on_upstream_event(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct session *s = session_of(ctx);
	char why[600];
	if (s->closing)
		return;
	switch (ev) {
	case STREAM_EV_CONNECTED:
		slog(s, LOG_LEVEL_DEBUG, "upstream connected");
		if (s->srv->upstream.implicit_tls) {
			s->up_state = UP_TLS;
			upstream_start_tls(s);
		} else {
			s->up_state = UP_GREETING;
		}
		break;
	case STREAM_EV_TLS_READY:
		if (s->up_state == UP_TLS) {
			s->up_state = UP_GREETING;
		} else if (s->up_state == UP_STARTTLS_HS) {
			/* Capabilities may change once TLS is on (RFC 3501 6.2.1). */
			free(s->upstream_caps);
			s->upstream_caps = NULL;
			s->up_state = UP_CAPABILITY;
			upstream_send_internal(s, INT_CAPABILITY, "CAPABILITY");
		}
		process_upstream_input(s);
		break;
	case STREAM_EV_DATA:
		if (s->link)
			link_upstream_heard(s);
		process_upstream_input(s);
		break;
	case STREAM_EV_DRAINED:
		process_client_input(s);
		break;
	case STREAM_EV_EOF:
		if (s->upstream_bye) {
			session_close(s, "upstream said BYE");
			break;
		}
		upstream_failed(s, "Upstream closed the connection");
		break;
	case STREAM_EV_ERROR:
		if (s->upstream_bye) {
			session_close(s, "upstream said BYE");
			break;
		}
		snprintf(why, sizeof(why), "Upstream %s:%s: %s", s->srv->upstream.host, s->srv->upstream.port,
		         reason ? reason : "error");
		slog(s, LOG_LEVEL_WARN, "%s", why);
		upstream_failed(s, why);
		break;
	}
}

/* ------------------------------------------------------------------------ */
/* accepting                                                                 */

static struct session *session_new(struct proxy_server *srv, const char *peer)
{
	const struct proxy_config *cfg = srv->cfg;
	struct session *s = xcalloc(1, sizeof(*s));
	s->magic = SESSION_MAGIC;
	s->srv = srv;
	snprintf(s->prefix, sizeof(s->prefix), "c%llu %s", (unsigned long long)++srv->next_id, peer);
	s->climits.max_line_length = cfg->max_line_length;
	s->climits.max_literal_size = cfg->max_literal_size;
	s->climits.max_list_depth = (unsigned)cfg->max_list_depth;
	s->climits.max_args = IMAP_DEFAULT_MAX_ARGS;
	s->climits.max_message_size = cfg->max_command_size;
	s->out_limit = cfg->max_output_queue;
	struct imap_limits ulimits = {
		.max_line_length = UPSTREAM_MAX_LINE_LENGTH,
		.max_literal_size = UPSTREAM_MAX_LITERAL_SIZE,
		.max_list_depth = UPSTREAM_MAX_LIST_DEPTH,
		.max_args = UPSTREAM_MAX_ARGS,
	};
	/* Tighter until login: see PRELOGIN_MAX_*. */
	s->active_limits = s->climits;
	if (s->active_limits.max_literal_size > PRELOGIN_MAX_LITERAL)
		s->active_limits.max_literal_size = PRELOGIN_MAX_LITERAL;
	if (s->active_limits.max_message_size > PRELOGIN_MAX_COMMAND)
		s->active_limits.max_message_size = PRELOGIN_MAX_COMMAND;
	s->cparser = imap_parser_new(IMAP_PARSE_COMMANDS, &s->active_limits);
	s->uparser = imap_parser_new(IMAP_PARSE_RESPONSES, &ulimits);
	if (!s->cparser || !s->uparser) {
		fputs("pimap-proxy: out of memory\n", stderr);
		abort();
	}
	buf_init(&s->lit_cmd, 0);
	ev_init(&s->activity, on_activity_timeout);
	s->activity.data = s;
	if (srv->gateway)
		s->link = link_new(s);

	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	return s;
}

/* Open the upstream leg of a new session. Returns 0 or -1 (session closed). */
int session_connect_upstream(struct session *s)
{
	struct proxy_server *srv = s->srv;
	char err[300], name[300];
	snprintf(name, sizeof(name), "%s:%s", srv->upstream.host, srv->upstream.port);
	if (srv->https) {
		int fd = http_client_open(srv->https, s->prefix, err, sizeof(err));
		if (fd < 0) {
			upstream_failed(s, err);
			return -1;
		}
		s->upstream = stream_new_fd(srv->loop, fd, name, s->out_limit, on_upstream_event, s);
		s->up_state = UP_GREETING;
		return 0;
	}
	s->up_state = UP_CONNECTING;
	s->upstream = stream_connect(srv->loop, srv->upstream.host, srv->upstream.port,
	                             srv->connect_timeout, name, s->out_limit,
	                             on_upstream_event, s, err, sizeof(err));
	if (!s->upstream) {
		char why[sizeof(err) + 300];
		snprintf(why, sizeof(why), "Upstream %s:%s: %s", srv->upstream.host, srv->upstream.port, err);
		slog(s, LOG_LEVEL_WARN, "%s", why);
		upstream_failed(s, why);
		return -1;
	}
	return 0;
}


static void on_accept(struct listener *l, int fd, const char *peer, void *ctx)
{
	struct proxy_server *srv = ctx;
	char err[256];

	if (srv->draining) {
		close(fd);
		return;
	}
	if ((long long)srv->nsessions >= srv->cfg->max_clients) {
		/* Say why when we can do so in plaintext; a TLS client just sees the close. */
		static const char bye[] = "* BYE [UNAVAILABLE] Too many connections\r\n";
		if (!listener_implicit_tls(l) && send(fd, bye, sizeof(bye) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("refusing %s: %s", peer, strerror(errno));
		log_warn("refusing %s: limits.max_clients (%lld) reached", peer, srv->cfg->max_clients);
		close(fd);
		return;
	}
	struct session *s = session_new(srv, peer);
	snprintf(s->listener, sizeof(s->listener), "%s", listener_address(l));
	s->client_loopback = listener_peer_is_loopback(fd);
	slog(s, LOG_LEVEL_INFO, "connected to %s", listener_address(l));
	s->client = stream_new_fd(srv->loop, fd, peer, s->out_limit, on_client_event, s);
	activity_arm(s);
	if (listener_implicit_tls(l)) {
		if (stream_start_tls_server(s->client, srv->local_creds, err, sizeof(err)) < 0) {
			session_close(s, err);
			return;
		}
	} else {
		s->client_ready = true;
	}
	if (!s->closing)
		session_connect_upstream(s);
}

int proxy_server_start_stdio(struct proxy_server *srv, char *err, size_t errlen)
{
	struct session *s = session_new(srv, "stdio");
	snprintf(s->listener, sizeof(s->listener), "stdio");
	s->client = stream_new_fds(srv->loop, 0, 1, "stdio", s->out_limit, on_client_event, s);
	/* The pipe is as private as the process: it counts as a protected leg,
	 * so no STARTTLS is offered; it is still never PREAUTH without credentials. */
	s->client_tls = true;
	s->client_ready = true;
	activity_arm(s);
	session_connect_upstream(s);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* server                                                                    */

static char *default_state_dir(void)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	char path[4096];
	if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/pimap", xdg);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.local/state/pimap", home);
	else
		snprintf(path, sizeof(path), "/var/lib/pimap");
	return xstrdup(path);
}

char *proxy_state_dir(const struct proxy_config *cfg)
{
	return *cfg->state_dir ? xstrdup(cfg->state_dir) : default_state_dir();
}


static int load_local_creds(struct proxy_server *srv, char *err, size_t errlen)
{
	const struct proxy_config *cfg = srv->cfg;
	char cert[4096], key[4096];
	if (*cfg->tls_cert_file || *cfg->tls_key_file) {
		if (!*cfg->tls_cert_file || !*cfg->tls_key_file) {
			snprintf(err, errlen, "tls.cert and tls.key must be set together");
			return -1;
		}
		snprintf(cert, sizeof(cert), "%s", cfg->tls_cert_file);
		snprintf(key, sizeof(key), "%s", cfg->tls_key_file);
	} else {
		char *dir = *cfg->state_dir ? xstrdup(cfg->state_dir) : default_state_dir();
		int rc = daemon_make_dirs(dir, err, errlen);
		snprintf(cert, sizeof(cert), "%s/proxy-cert.pem", dir);
		snprintf(key, sizeof(key), "%s/proxy-key.pem", dir);
		free(dir);
		if (rc < 0)
			return -1;
		if (tlsio_ensure_self_signed(cert, key, err, errlen) < 0)
			return -1;
	}
	srv->local_creds = tlsio_server_creds_new(cert, key, err, errlen);
	return srv->local_creds ? 0 : -1;
}

static int add_listeners(struct proxy_server *srv, char **addrs, bool implicit_tls, char *err, size_t errlen)
{
	for (char **a = addrs; a && *a; a++) {
		if (strcasecmp(*a, "none") == 0 || **a == '\0')
			continue;
		struct listener *l = listener_new(srv->loop, *a, implicit_tls, on_accept, srv, err, errlen);
		if (!l)
			return -1;
		srv->listeners = xrealloc(srv->listeners, (srv->nlisteners + 1) * sizeof(*srv->listeners));
		srv->listeners[srv->nlisteners++] = l;
		log_info("listening on %s (%s)", *a, implicit_tls ? "IMAP over TLS" : "IMAP, STARTTLS");
	}
	return 0;
}

/* The SMTP listener (proxy_smtp.c) next to the IMAP ones; none when sending is not configured. */
static int start_smtp(struct proxy_server *srv, bool listen, char *err, size_t errlen)
{
	char *dir = *srv->cfg->state_dir ? xstrdup(srv->cfg->state_dir) : default_state_dir();
	struct smtp_service_setup ss = {
		.loop = srv->loop, .upstream = &srv->upstream, .upstream_name = srv->upstream_name,
		.upstream_creds = srv->upstream_creds, .allow_plaintext = srv->allow_plaintext,
		.connect_timeout = srv->connect_timeout, .local_creds = srv->local_creds, .state_dir = dir,
		.listen = listen, .https = srv->https,
	};
	int rc = daemon_make_dirs(dir, err, errlen);
	if (rc == 0) {
		srv->smtp = smtp_service_new(&ss, srv->cfg, err, errlen);
		rc = !srv->smtp && *err ? -1 : 0;
	}
	free(dir);
	return rc;
}

int proxy_server_start_smtp_stdio(struct proxy_server *srv, char *err, size_t errlen)
{
	if (start_smtp(srv, false, err, errlen) < 0)
		return -1;
	if (!srv->smtp) {
		snprintf(err, errlen, "sending is not configured (compatibility mode needs smtp.submission_url)");
		return -1;
	}
	return smtp_service_start_stdio(srv->smtp, err, errlen);
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proxy_server *srv = w->data;
	log_warn("drain timeout: closing %u remaining session(s)", srv->nsessions);
	while (srv->sessions)
		session_bye(srv->sessions, NULL, "pimap-proxy shutting down");
	ev_break(loop, EVBREAK_ALL);
}

struct proxy_server *proxy_server_new(struct ev_loop *loop, const struct proxy_config *cfg,
                                      bool stdio_mode, char *err, size_t errlen)
{
	char uerr[256];
	if (!*cfg->upstream_url) {
		snprintf(err, errlen, "no upstream: set upstream.url or --upstream");
		return NULL;
	}
	struct proxy_server *srv = xcalloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->stdio_mode = stdio_mode;
	ev_init(&srv->drain_timer, on_drain_timeout);
	srv->drain_timer.data = srv;

	if (url_parse(cfg->upstream_url, &srv->upstream, uerr, sizeof(uerr)) < 0) {
		snprintf(err, errlen, "upstream.url: %s", uerr);
		goto fail;
	}
	switch (srv->upstream.scheme) {
	case URL_IMAPS:
	case URL_IMAP:
		break;
	case URL_PIMAPS:
	case URL_PIMAP:
	case URL_HTTPS:
		srv->gateway = true;
		break;
	}
	bool use_https = srv->upstream.scheme == URL_HTTPS || cfg->upstream_binding == BINDING_HTTPS;
	if (use_https && !srv->gateway) {
		snprintf(err, errlen, "upstream.binding https needs a gateway URL (https://, pimaps:// or pimap://)");
		goto fail;
	}
	if (srv->upstream.scheme == URL_HTTPS && cfg->upstream_binding == BINDING_TCP) {
		snprintf(err, errlen, "upstream.binding tcp contradicts the https:// URL");
		goto fail;
	}
	if (*cfg->upstream_http_proxy && !use_https) {
		snprintf(err, errlen,
		         "upstream.http_proxy is for the HTTPS binding (an https:// upstream, or upstream.binding https)");
		goto fail;
	}
	if (srv->gateway) {
		char *dir = *cfg->state_dir ? xstrdup(cfg->state_dir) : default_state_dir();
		srv->device_id = link_device_id(cfg->device_id, dir, err, errlen);
		free(dir);
		if (!srv->device_id)
			goto fail;
		log_info("upstream is a pimap-gateway; device id %s", srv->device_id);
	}
	if (link_load_macros(cfg, &srv->macros, err, errlen) < 0)
		goto fail;
	if (proxy_filters_load(cfg, &srv->filters, err, errlen) < 0)
		goto fail;
	srv->upstream_name = xstrdup(*cfg->upstream_server_name ? cfg->upstream_server_name : srv->upstream.host);
	srv->allow_plaintext = cfg->upstream_allow_plaintext;
	srv->compress_upstream = cfg->upstream_compress || srv->gateway;
	srv->connect_timeout = cfg->upstream_connect_timeout;
	srv->upstream_creds = tlsio_client_creds_new(cfg->upstream_ca_file, err, errlen);
	if (!srv->upstream_creds)
		goto fail;
	if (use_https) {
		srv->https = http_client_new(loop, cfg, &srv->upstream, srv->upstream_name, srv->upstream_creds,
		                             srv->device_id, err, errlen);
		if (!srv->https)
			goto fail;
	}
	stream_lib_init(loop);
	if (!stdio_mode) {
		if (load_local_creds(srv, err, errlen) < 0)
			goto fail;
		if (add_listeners(srv, cfg->listen_imap, false, err, errlen) < 0 ||
		    add_listeners(srv, cfg->listen_imaps, true, err, errlen) < 0)
			goto fail;
		if (srv->nlisteners == 0) {
			snprintf(err, errlen, "no listeners configured (listen.imap / listen.imaps)");
			goto fail;
		}
		if (start_smtp(srv, true, err, errlen) < 0)
			goto fail;
	}
	return srv;
fail:
	proxy_server_free(srv);
	return NULL;
}

static bool str_differs(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

static bool list_differs(char **a, char **b)
{
	for (; a && *a && b && *b; a++, b++)
		if (strcmp(*a, *b) != 0)
			return true;
	return (a && *a) || (b && *b);
}

void proxy_server_reconfigure(struct proxy_server *srv, const struct proxy_config *cfg)
{
	const struct proxy_config *old = srv->cfg;
	if (list_differs(old->listen_imap, cfg->listen_imap) || list_differs(old->listen_imaps, cfg->listen_imaps))
		log_warn("reload: listen.* changed; restart pimap-proxy to apply");
	if (str_differs(old->upstream_url, cfg->upstream_url) || str_differs(old->upstream_ca_file, cfg->upstream_ca_file) ||
	    str_differs(old->upstream_server_name, cfg->upstream_server_name) ||
	    old->upstream_allow_plaintext != cfg->upstream_allow_plaintext ||
	    old->upstream_compress != cfg->upstream_compress ||
	    old->upstream_connect_timeout != cfg->upstream_connect_timeout)
		log_warn("reload: upstream.* changed; restart pimap-proxy to apply");
	if (str_differs(old->tls_cert_file, cfg->tls_cert_file) || str_differs(old->tls_key_file, cfg->tls_key_file) ||
	    str_differs(old->state_dir, cfg->state_dir))
		log_warn("reload: tls.* or state_dir changed; restart pimap-proxy to apply");
	if (str_differs(old->device_id, cfg->device_id))
		log_warn("reload: device_id changed; restart pimap-proxy to apply");
	if (list_differs(old->smtp_listen, cfg->smtp_listen) || list_differs(old->smtp_listen_tls, cfg->smtp_listen_tls) ||
	    str_differs(old->smtp_submission_url, cfg->smtp_submission_url) ||
	    str_differs(old->smtp_submission_ca_file, cfg->smtp_submission_ca_file) ||
	    str_differs(old->smtp_submission_server_name, cfg->smtp_submission_server_name) ||
	    old->smtp_submission_allow_plaintext != cfg->smtp_submission_allow_plaintext)
		log_warn("reload: smtp.listen* or smtp.submission_* changed; restart pimap-proxy to apply");
	if (srv->smtp)
		smtp_service_reconfigure(srv->smtp, cfg);
	struct macro_set *macros;
	char merr[600];
	if (link_load_macros(cfg, &macros, merr, sizeof(merr)) < 0) {
		log_err("reload: macros not loaded: %s; keeping the previous macros", merr);
	} else {
		link_free_macros(srv->macros);
		srv->macros = macros;
	}
	struct filter_set *filters;
	if (proxy_filters_load(cfg, &filters, merr, sizeof(merr)) < 0) {
		log_err("reload: filters not loaded: %s; keeping the previous filters", merr);
	} else {
		proxy_filters_free(srv->filters);
		srv->filters = filters;
	}
	/* Restart-only settings were copied into srv at start (listeners,
	 * credentials, upstream_*); from the new config the server reads only
	 * reloadable keys (limits, logging). */
	srv->cfg = cfg;
	http_client_reconfigure(srv->https, cfg);
}

void proxy_server_drain(struct proxy_server *srv)
{
	if (srv->draining)
		return;
	srv->draining = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		listener_pause(srv->listeners[i], true);
	if (srv->smtp)
		smtp_service_drain(srv->smtp);
	log_info("draining %u session(s), at most %.1f s", srv->nsessions, srv->cfg->drain_timeout);
	struct session *s = srv->sessions, *next;
	for (; s; s = next) {
		next = s->next;
		if (session_quiescent(s))
			session_bye(s, NULL, "pimap-proxy shutting down");
	}
	if (srv->nsessions == 0) {
		ev_break(srv->loop, EVBREAK_ALL);
		return;
	}
	ev_timer_set(&srv->drain_timer, srv->cfg->drain_timeout, 0.);
	ev_timer_start(srv->loop, &srv->drain_timer);
}

unsigned proxy_server_session_count(const struct proxy_server *srv)
{
	return srv->nsessions;
}

void proxy_server_dump(const struct proxy_server *srv)
{
	log_info("%u session(s), %u SMTP connection(s)%s", srv->nsessions, smtp_service_connection_count(srv->smtp),
	         srv->draining ? ", draining" : "");
	for (const struct session *s = srv->sessions; s; s = s->next)
		log_msg(LOG_LEVEL_INFO, s->prefix, "up_state=%d greeted=%d auth=%d block=%d inflight=%zu tls=%d",
		        (int)s->up_state, s->greeted, s->authenticated, (int)s->block, s->ninflight, s->client_tls);
}

void proxy_server_free(struct proxy_server *srv)
{
	if (!srv)
		return;
	while (srv->sessions)
		session_close(srv->sessions, "shutdown");
	http_client_free(srv->https);
	smtp_service_free(srv->smtp);
	for (size_t i = 0; i < srv->nlisteners; i++)
		listener_free(srv->listeners[i]);
	free(srv->listeners);
	ev_timer_stop(srv->loop, &srv->drain_timer);
	tlsio_creds_unref(srv->upstream_creds);
	tlsio_creds_unref(srv->local_creds);
	free(srv->upstream_name);
	free(srv->device_id);
	link_free_macros(srv->macros);
	proxy_filters_free(srv->filters);
	stream_lib_shutdown(srv->loop); /* reaps the last sessions, whose links use the status cache */
	status_cache_free(srv->status);
	free(srv);
}
