/*
 * http_binding.c - pimap-gateway's HTTPS binding (see http_binding.h).
 *
 * Objects:
 *   http_binding   listeners, TLS credentials, the lists below
 *   hconn          one HTTPS connection: TLS stream, request reader, the
 *                  state of the request it is serving; in persistent mode
 *                  also the socketpair end of its gateway connection
 *   hsess          one in-response session (cookie): the socketpair end of
 *                  its gateway connection, a command parser that mirrors the
 *                  gateway's (to know which tagged replies a batch waits
 *                  for), a response parser over what the gateway says, and
 *                  the replies and events gathered for the next response
 *
 * Lifecycle of an in-response request: head (cookie -> session, limits) ->
 * body (bounded, whole) -> the batch is written to the gateway connection
 * and its tags noted -> replies and events gather in hsess.out -> when every
 * tag is answered (or the last command waits for a continuation, or
 * http.response_timeout passes) the response goes out and the session is
 * quiet again: events gather for the next request and the gateway may wake
 * the device out-band.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "clock.h"
#include "gateway.h"
#include "http_binding.h"
#include "http_wire.h"
#include "imap_parse.h"
#include "listener.h"
#include "log.h"
#include "stream.h"

#define SESSION_ID_BYTES 16        /* 128 random bits, as hex */
#define MAX_TAG 64                 /* the gateway answers longer tags untagged (gateway.c MAX_CLIENT_TAG) */
#define RATE_WINDOW 60.0           /* http.max_requests_per_minute counts over this */
#define ERROR_BODY_MAX 512

struct hsess;

enum hconn_state {
	HC_HANDSHAKE, /* TLS handshake (http.header_timeout) */
	HC_HEAD,      /* waiting for a request head (keep-alive, then http.header_timeout once it starts) */
	HC_BODY,      /* in-response: reading the body (http.body_timeout) */
	HC_WAIT,      /* in-response: the batch is with the gateway (http.response_timeout) */
	HC_PERSIST,   /* persistent: both bodies are streams; timeouts are the gateway connection's */
	HC_CLOSING,   /* last response queued; closing after it is written */
};

struct hconn {
	struct hconn *next;
	struct http_binding *hb;
	struct stream *st;
	struct http_reader *rd;
	char peer[128];
	char prefix[160];
	bool loopback;
	enum hconn_state state;
	ev_timer timer;
	bool head_timer;             /* http.header_timeout armed for a request that has begun */
	struct buf body;             /* de-chunked request body not yet used */
	enum http_coding coding;     /* of the response */
	struct http_zenc *zenc;      /* persistent response encoder */
	char media[40];              /* the media type the client used, echoed in the response */
	bool keep_alive;
	bool request_done;           /* the reader reported DONE for the current request */
	/* persistent mode */
	struct stream *inner;
	/* in-response mode */
	struct hsess *sess;
	bool set_cookie;
};

enum cont_kind {
	CONT_NONE,
	CONT_LITERAL, /* the batch ended on a synchronising literal header */
	CONT_RAW,     /* the batch ended on AUTHENTICATE without an initial response */
};

struct hsess {
	struct hsess *next;
	struct http_binding *hb;
	char id[2 * SESSION_ID_BYTES + 1];
	char peer[128];
	struct stream *inner;
	unsigned long gw_id;
	struct imap_parser *cmdp;
	struct imap_parser *respp;
	struct buf out;              /* replies and events for the next response */
	struct buf plus;             /* the continuation request that ends a response */
	char **tags;                 /* tags still unanswered, oldest first */
	size_t ntags, tags_cap;
	enum cont_kind cont;
	struct hconn *req;           /* the request being served, or NULL */
	ev_timer expiry;             /* http.session_timeout */
	double window_start;
	long long window_requests;
	bool dead;                   /* the gateway connection is gone */
	bool greeted;                /* the gateway's greeting is in: a new session's first answer waits for it */
};

struct http_binding {
	struct ev_loop *loop;
	struct gateway_server *gw;
	const struct gateway_config *cfg;
	struct tls_creds *creds;
	struct listener **listeners;
	size_t nlisteners;
	struct hconn *conns;
	unsigned nconns;
	struct hsess *sessions;
	unsigned nsessions;
	unsigned long next_id;
	char *path;                  /* http.path (fixed at startup) */
	bool draining;
	struct imap_limits limits;   /* the mirror parsers' */
};

static void hc_close(struct hconn *c, const char *why);
static void hc_finish(struct hconn *c, const char *why);
static void hc_process(struct hconn *c);
static void sess_destroy(struct hsess *s, const char *why);
static void sess_maybe_respond(struct hsess *s);

/* ------------------------------------------------------------------------ */
/* responses                                                                 */

static void arm(struct hconn *c, double seconds)
{
	ev_timer_stop(c->hb->loop, &c->timer);
	if (seconds > 0) {
		ev_timer_set(&c->timer, seconds, 0);
		ev_timer_start(c->hb->loop, &c->timer);
	}
}

/*
 * An error response with a short text body, then close: after an error the
 * rest of what the client sent (a body, pipelined requests) is not read.
 */
static void hc_fail(struct hconn *c, unsigned status, const char *extra_headers, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void hc_fail(struct hconn *c, unsigned status, const char *extra_headers, const char *fmt, ...)
{
	char text[ERROR_BODY_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_msg(status >= 500 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, c->prefix, "HTTP %u: %s", status, text);
	if (c->state == HC_PERSIST || c->state == HC_CLOSING || !c->st) {
		/* The response head is already out: all that is left is to stop. */
		hc_close(c, text);
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b,
	           "HTTP/1.1 %u %s\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Length: %zu\r\n"
	           "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n%s\n",
	           status, http_reason(status), strlen(text) + 1, extra_headers ? extra_headers : "", text);
	stream_write(c->st, buf_head(&b), buf_len(&b));
	buf_free(&b);
	hc_finish(c, text);
}

/* Status line and the headers every P-IMAP response has. */
static void response_head(struct hconn *c, struct buf *b, unsigned status)
{
	buf_printf(b, "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n", status,
	           http_reason(status), c->media);
	if (c->coding != HTTP_CODING_IDENTITY)
		buf_printf(b, "Content-Encoding: %s\r\nVary: Accept-Encoding\r\n", http_coding_name(c->coding));
	if (!c->keep_alive)
		buf_append_str(b, "Connection: close\r\n");
}

/* ------------------------------------------------------------------------ */
/* persistent mode                                                           */

static void persist_end(struct hconn *c, const char *why)
{
	if (c->inner) {
		/* Like a TCP client going away: the gateway parks the session. */
		stream_close_after_flush(c->inner);
		c->inner = NULL;
	}
	if (c->st && c->state == HC_PERSIST) {
		struct buf b;
		buf_init(&b, 0);
		if (c->zenc) {
			struct buf z;
			buf_init(&z, 0);
			http_zenc_finish(c->zenc, &z);
			http_chunk_append(&b, buf_head(&z), buf_len(&z));
			buf_free(&z);
		}
		http_chunk_last(&b);
		stream_write(c->st, buf_head(&b), buf_len(&b));
		buf_free(&b);
	}
	hc_finish(c, why);
}

/* The gateway spoke: pass it on as one chunk (compressed and flushed, so the client can read it now). */
static void persist_relay_out(struct hconn *c)
{
	struct buf *in = stream_input(c->inner);
	if (!buf_len(in) || !c->st)
		return;
	struct buf b;
	buf_init(&b, 0);
	if (c->zenc) {
		struct buf z;
		buf_init(&z, 0);
		if (http_zenc_write(c->zenc, buf_head(in), buf_len(in), true, &z) < 0) {
			buf_free(&z);
			buf_free(&b);
			persist_end(c, "compression failed");
			return;
		}
		http_chunk_append(&b, buf_head(&z), buf_len(&z));
		buf_free(&z);
	} else {
		http_chunk_append(&b, buf_head(in), buf_len(in));
	}
	buf_consume(in, buf_len(in));
	stream_write(c->st, buf_head(&b), buf_len(&b));
	stream_flush(c->st);
	buf_free(&b);
	if (c->request_done)
		arm(c, c->hb->cfg->http_keepalive_timeout);
	/* Backpressure: a client that reads slowly makes the gateway wait. */
	if (stream_output_full(c->st))
		stream_pause_reading(c->inner, true);
}

static void on_persist_inner(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct hconn *c = ctx;
	(void)st;
	switch (ev) {
	case STREAM_EV_DATA:
		persist_relay_out(c);
		return;
	case STREAM_EV_DRAINED:
		hc_process(c); /* the gateway took what we had: read the client again */
		return;
	case STREAM_EV_EOF:
	case STREAM_EV_ERROR:
		persist_relay_out(c);
		if (c->inner) {
			stream_close(c->inner);
			c->inner = NULL;
		}
		persist_end(c, reason ? reason : "the gateway connection ended");
		return;
	case STREAM_EV_CONNECTED:
	case STREAM_EV_TLS_READY:
		return;
	}
}

/* Hand the request body to the gateway connection as it comes. */
static void persist_forward(struct hconn *c)
{
	if (!c->inner || !buf_len(&c->body))
		return;
	stream_write(c->inner, buf_head(&c->body), buf_len(&c->body));
	stream_flush(c->inner);
	buf_clear(&c->body);
}

static int attach(struct hconn *c, bool in_response, struct stream **inner, unsigned long *id, stream_cb cb,
                  void *ctx)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		log_msg(LOG_LEVEL_WARN, c->prefix, "socketpair: %s", strerror(errno));
		return -1;
	}
	*id = gateway_attach_secured(c->hb->gw, sv[1], c->peer, c->loopback, in_response);
	if (*id == 0) {
		close(sv[0]);
		return -1;
	}
	*inner = stream_new_fd(c->hb->loop, sv[0], c->prefix, c->hb->cfg->max_output_queue, cb, ctx);
	return 0;
}

static void persist_start(struct hconn *c)
{
	unsigned long id;
	if (attach(c, false, &c->inner, &id, on_persist_inner, c) < 0) {
		hc_fail(c, 503, "Retry-After: 5\r\n", "the gateway accepts no more connections");
		return;
	}
	c->zenc = http_zenc_new(c->coding);
	if (!c->zenc)
		c->coding = HTTP_CODING_IDENTITY;
	c->keep_alive = false; /* the stream is the whole life of this connection */
	struct buf b;
	buf_init(&b, 0);
	response_head(c, &b, 200);
	buf_append_str(&b, "Transfer-Encoding: chunked\r\n\r\n");
	stream_write(c->st, buf_head(&b), buf_len(&b));
	stream_flush(c->st);
	buf_free(&b);
	c->state = HC_PERSIST;
	arm(c, 0);
	log_msg(LOG_LEVEL_INFO, c->prefix, "persistent session started");
}

/* ------------------------------------------------------------------------ */
/* in-response sessions                                                      */

static void sess_tag_push(struct hsess *s, const char *tag)
{
	if (s->ntags == s->tags_cap) {
		s->tags_cap = s->tags_cap ? 2 * s->tags_cap : 8;
		s->tags = xrealloc(s->tags, s->tags_cap * sizeof(*s->tags));
	}
	s->tags[s->ntags++] = xstrdup(tag);
}

/* A tagged reply: the oldest command with that tag is answered. */
static void sess_tag_answered(struct hsess *s, const char *tag)
{
	for (size_t i = 0; i < s->ntags; i++) {
		if (strcmp(s->tags[i], tag) == 0) {
			free(s->tags[i]);
			memmove(s->tags + i, s->tags + i + 1, (s->ntags - i - 1) * sizeof(*s->tags));
			s->ntags--;
			return;
		}
	}
}

static void on_sess_expiry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hsess *s = w->data;
	(void)loop;
	(void)revents;
	if (!s->req)
		sess_destroy(s, "http.session_timeout: no request");
}

/* What the gateway said: replies count against the batch, "+" is kept aside, the rest is for the client. */
static void sess_read_inner(struct hsess *s)
{
	struct buf *in = stream_input(s->inner);
	while (buf_len(in)) {
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(s->respp, buf_head(in), buf_len(in), &used);
		if (r == IMAP_PARSE_NEED_MORE) {
			/* Partial messages stay in the stream's buffer (bounded by the parser's limits). */
			break;
		}
		if (r == IMAP_PARSE_ERROR) {
			/* The gateway's own output does not parse: nothing here can be trusted any more. */
			buf_consume(in, used);
			sess_destroy(s, "unparsable output from the gateway connection");
			return;
		}
		const struct imap_msg *m = imap_parser_msg(s->respp);
		s->greeted = true;
		if (m->kind == IMAP_MSG_CONTINUATION) {
			/* A literal the batch already carries needs no "+": only the last one is the client's. */
			buf_clear(&s->plus);
			buf_append(&s->plus, m->raw, m->raw_len);
		} else {
			if (m->kind == IMAP_MSG_TAGGED)
				sess_tag_answered(s, m->tag);
			buf_append(&s->out, m->raw, m->raw_len);
		}
		buf_consume(in, used);
		imap_parser_reset(s->respp);
	}
	/* Events between requests wait here; past the output limit the gateway is made to wait too. */
	stream_pause_reading(s->inner, !s->req && buf_len(&s->out) > s->hb->cfg->max_output_queue);
	sess_maybe_respond(s);
}

static void on_sess_inner(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct hsess *s = ctx;
	(void)st;
	switch (ev) {
	case STREAM_EV_DATA:
		sess_read_inner(s);
		return;
	case STREAM_EV_EOF:
	case STREAM_EV_ERROR:
		sess_read_inner(s);
		if (s->inner) {
			stream_close(s->inner);
			s->inner = NULL;
		}
		s->dead = true;
		if (s->req) {
			sess_maybe_respond(s); /* the client gets the BYE or whatever came */
			return;
		}
		sess_destroy(s, reason ? reason : "the gateway connection ended");
		return;
	case STREAM_EV_DRAINED:
		if (s->req)
			hc_process(s->req);
		return;
	case STREAM_EV_CONNECTED:
	case STREAM_EV_TLS_READY:
		return;
	}
}

static struct hsess *sess_find(struct http_binding *hb, const char *id)
{
	for (struct hsess *s = hb->sessions; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static struct hsess *sess_new(struct hconn *c)
{
	struct http_binding *hb = c->hb;
	struct hsess *s = xcalloc(1, sizeof(*s));
	s->hb = hb;
	uint8_t raw[SESSION_ID_BYTES];
	gnutls_rnd(GNUTLS_RND_KEY, raw, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		sprintf(s->id + 2 * i, "%02x", raw[i]);
	snprintf(s->peer, sizeof(s->peer), "%s", c->peer);
	buf_init(&s->out, 0);
	buf_init(&s->plus, 0);
	s->cmdp = imap_parser_new(IMAP_PARSE_COMMANDS, &hb->limits);
	struct imap_limits rl = hb->limits;
	rl.max_literal_size = (size_t)1 << 30; /* FETCH literals are the store's to size */
	rl.max_message_size = 0;
	s->respp = imap_parser_new(IMAP_PARSE_RESPONSES, &rl);
	ev_init(&s->expiry, on_sess_expiry);
	s->expiry.data = s;
	if (attach(c, true, &s->inner, &s->gw_id, on_sess_inner, s) < 0) {
		imap_parser_free(s->cmdp);
		imap_parser_free(s->respp);
		buf_free(&s->out);
		buf_free(&s->plus);
		free(s);
		return NULL;
	}
	s->next = hb->sessions;
	hb->sessions = s;
	hb->nsessions++;
	log_msg(LOG_LEVEL_INFO, c->prefix, "in-response session %.8s... started", s->id);
	return s;
}

static void sess_destroy(struct hsess *s, const char *why)
{
	struct http_binding *hb = s->hb;
	log_msg(LOG_LEVEL_INFO, s->peer, "in-response session %.8s... ended: %s", s->id, why);
	for (struct hsess **pp = &hb->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			hb->nsessions--;
			break;
		}
	}
	if (s->req) {
		struct hconn *c = s->req;
		s->req = NULL;
		c->sess = NULL;
		hc_fail(c, 502, NULL, "the session ended: %s", why);
	}
	ev_timer_stop(hb->loop, &s->expiry);
	if (s->inner)
		stream_close_after_flush(s->inner); /* the gateway parks the store connection */
	imap_parser_free(s->cmdp);
	imap_parser_free(s->respp);
	for (size_t i = 0; i < s->ntags; i++)
		free(s->tags[i]);
	free(s->tags);
	buf_free(&s->out);
	buf_free(&s->plus);
	free(s);
}

/*
 * The batch, as the gateway will read it: note each command's tag (the
 * gateway answers every tagged command, BAD included, with its tag), and
 * give IDLE its DONE at once (IDLE cannot wait in this mode: it polls).
 * Writes the batch to the gateway connection.
 */
static void sess_send_batch(struct hsess *s, const uint8_t *data, size_t len)
{
	size_t off = 0;
	buf_clear(&s->plus);
	s->cont = CONT_NONE;
	while (off < len) {
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(s->cmdp, data + off, len - off, &used);
		if (r == IMAP_PARSE_NEED_MORE) {
			stream_write(s->inner, data + off, used);
			off += used;
			if (imap_parser_wants_continuation(s->cmdp))
				s->cont = CONT_LITERAL;
			break;
		}
		if (r == IMAP_PARSE_ERROR) {
			const char *tag = imap_parser_tag(s->cmdp);
			if (tag && strlen(tag) <= MAX_TAG)
				sess_tag_push(s, tag); /* "tag BAD ..." */
			if (!imap_parser_error_recoverable(s->cmdp)) {
				/* The gateway says BYE and closes; so does the session after this response. */
				stream_write(s->inner, data + off, len - off);
				off = len;
				break;
			}
			stream_write(s->inner, data + off, used);
			off += used;
			imap_parser_skip_line(s->cmdp);
			continue;
		}
		const struct imap_msg *m = imap_parser_msg(s->cmdp);
		stream_write(s->inner, data + off, used);
		off += used;
		bool auth_no_ir = false;
		if (m->kind == IMAP_MSG_COMMAND && strlen(m->tag) <= MAX_TAG) {
			sess_tag_push(s, m->tag);
			if (imap_arg_is_atom(&m->args[0], "IDLE"))
				stream_write(s->inner, "DONE\r\n", 6);
			auth_no_ir = imap_arg_is_atom(&m->args[0], "AUTHENTICATE") && m->nargs == 2;
		}
		imap_parser_reset(s->cmdp);
		if (auth_no_ir) {
			imap_parser_expect_raw_line(s->cmdp);
			if (off == len)
				s->cont = CONT_RAW;
		}
	}
	stream_flush(s->inner);
}

static void sess_respond(struct hsess *s, bool incomplete)
{
	struct hconn *c = s->req;
	s->req = NULL;
	c->sess = NULL;
	bool cont = !incomplete && s->cont != CONT_NONE && buf_len(&s->plus);
	if (cont)
		buf_append(&s->out, buf_head(&s->plus), buf_len(&s->plus));
	buf_clear(&s->plus);
	struct buf body;
	buf_init(&body, 0);
	struct http_zenc *z = http_zenc_new(c->coding);
	if (z && (http_zenc_write(z, buf_head(&s->out), buf_len(&s->out), false, &body) < 0 ||
	          http_zenc_finish(z, &body) < 0)) {
		buf_clear(&body);
		http_zenc_free(z);
		z = NULL;
	}
	if (!z) {
		c->coding = HTTP_CODING_IDENTITY;
		buf_append(&body, buf_head(&s->out), buf_len(&s->out));
	}
	http_zenc_free(z);
	buf_clear(&s->out);
	if (s->dead)
		c->keep_alive = false;
	struct buf b;
	buf_init(&b, 0);
	response_head(c, &b, 200);
	if (c->set_cookie)
		buf_printf(&b, "Set-Cookie: %s=%s; Path=%s; Secure; HttpOnly; SameSite=Strict\r\n", HTTP_SESSION_COOKIE,
		           s->id, s->hb->path);
	if (cont)
		buf_append_str(&b, "X-PIMAP-Continuation: 1\r\n");
	if (incomplete)
		buf_append_str(&b, "X-PIMAP-Incomplete: 1\r\n");
	buf_printf(&b, "Content-Length: %zu\r\n\r\n", buf_len(&body));
	buf_append(&b, buf_head(&body), buf_len(&body));
	stream_write(c->st, buf_head(&b), buf_len(&b));
	stream_flush(c->st);
	buf_free(&b);
	buf_free(&body);
	c->set_cookie = false;
	if (!s->dead) {
		gateway_conn_set_quiet(s->hb->gw, s->gw_id, true);
		ev_timer_set(&s->expiry, s->hb->cfg->http_session_timeout, 0);
		ev_timer_start(s->hb->loop, &s->expiry);
		stream_pause_reading(s->inner, buf_len(&s->out) > s->hb->cfg->max_output_queue);
	}
	/* The connection is free for the next request. */
	if (!c->keep_alive) {
		hc_finish(c, "response sent (Connection: close)");
	} else {
		c->state = HC_HEAD;
		c->head_timer = false;
		c->request_done = false;
		http_reader_next(c->rd);
		arm(c, c->hb->cfg->http_keepalive_timeout);
		hc_process(c);
	}
	if (s->dead)
		sess_destroy(s, "the gateway connection ended");
}

static void sess_maybe_respond(struct hsess *s)
{
	if (!s->req || s->req->state != HC_WAIT || (!s->greeted && !s->dead))
		return;
	bool done;
	switch (s->cont) {
	case CONT_LITERAL:
		done = s->ntags == 0 && buf_len(&s->plus);
		break;
	case CONT_RAW:
		done = s->ntags == 1 && buf_len(&s->plus);
		break;
	default:
		done = s->ntags == 0;
		break;
	}
	if (done || s->dead)
		sess_respond(s, false);
}

/* The whole body is here: the batch goes to the gateway. */
static void inresp_body_done(struct hconn *c)
{
	struct hsess *s = c->sess;
	c->state = HC_WAIT;
	arm(c, c->hb->cfg->http_response_timeout);
	sess_send_batch(s, buf_head(&c->body), buf_len(&c->body));
	buf_clear(&c->body);
	sess_read_inner(s); /* replies may already be there; also decides at once for an empty poll */
}

/* ------------------------------------------------------------------------ */
/* requests                                                                  */

/* A request head is complete: route it. Returns false if the connection was failed. */
static bool hc_head(struct hconn *c)
{
	struct http_binding *hb = c->hb;
	const struct gateway_config *cfg = hb->cfg;
	const struct http_head *h = http_reader_head(c->rd);
	c->keep_alive = h->keep_alive;
	if (hb->draining) {
		hc_fail(c, 503, NULL, "the gateway is shutting down");
		return false;
	}
	if (strcmp(h->target, hb->path) != 0) {
		hc_fail(c, 404, NULL, "P-IMAP is served at %s", hb->path);
		return false;
	}
	if (strcmp(h->method, "POST") != 0) {
		hc_fail(c, 405, "Allow: POST\r\n", "only POST carries P-IMAP (draft Appendix A)");
		return false;
	}
	const char *types[] = {"application/vnd.pimap", "application/vnd.lemonade"};
	const char *type = NULL;
	for (size_t i = 0; i < 2; i++)
		if (http_media_type_is(h->content_type, types[i]))
			type = types[i];
	if (!type) {
		hc_fail(c, 415, NULL, "Content-Type must be application/vnd.pimap or application/vnd.lemonade");
		return false;
	}
	snprintf(c->media, sizeof(c->media), "%s", type);
	if (http_coding_parse(h->content_encoding) != HTTP_CODING_IDENTITY) {
		hc_fail(c, 415, "Accept-Encoding: identity\r\n", "request bodies are not to be compressed");
		return false;
	}
	c->coding = http_accept_choose(h->accept_encoding);
	if (h->chunked) {
		if (h->expect_continue)
			stream_write_str(c->st, "HTTP/1.1 100 Continue\r\n\r\n");
		persist_start(c);
		return c->state == HC_PERSIST;
	}
	if (!h->has_length) {
		hc_fail(c, 411, NULL, "an in-response request needs Content-Length (or chunked for persistent mode)");
		return false;
	}
	/* In-response: the session named by the cookie, or a new one. */
	char id[2 * SESSION_ID_BYTES + 2];
	struct hsess *s = NULL;
	if (http_cookie_get(h->cookie, HTTP_SESSION_COOKIE, id, sizeof(id))) {
		s = sess_find(hb, id);
		if (!s) {
			/* -12: 401 = the session is no longer authenticated: log in again. */
			hc_fail(c, 401, NULL, "unknown or expired session; start a new one (no cookie) and log in");
			return false;
		}
		if (s->req) {
			hc_fail(c, 409, NULL, "this session already has a request in progress");
			return false;
		}
	} else {
		if ((long long)hb->nsessions >= cfg->http_max_sessions) {
			hc_fail(c, 503, "Retry-After: 30\r\n", "http.max_sessions (%lld) reached", cfg->http_max_sessions);
			return false;
		}
		s = sess_new(c);
		if (!s) {
			hc_fail(c, 503, "Retry-After: 5\r\n", "the gateway accepts no more connections");
			return false;
		}
		c->set_cookie = true;
	}
	double now = clock_mono();
	if (now - s->window_start >= RATE_WINDOW) {
		s->window_start = now;
		s->window_requests = 0;
	}
	if (++s->window_requests > cfg->http_max_requests_per_minute) {
		hc_fail(c, 429, "Retry-After: 60\r\n", "http.max_requests_per_minute (%lld) reached for this session",
		        cfg->http_max_requests_per_minute);
		return false;
	}
	ev_timer_stop(hb->loop, &s->expiry);
	s->req = c;
	c->sess = s;
	log_msg(LOG_LEVEL_DEBUG, c->prefix, "in-response request %lld of the minute for session %.8s...",
	        s->window_requests, s->id);
	gateway_conn_set_quiet(hb->gw, s->gw_id, false);
	gateway_conn_set_peer(hb->gw, s->gw_id, c->peer); /* a device may move between requests */
	if (h->expect_continue)
		stream_write_str(c->st, "HTTP/1.1 100 Continue\r\n\r\n");
	c->state = HC_BODY;
	arm(c, cfg->http_body_timeout);
	return true;
}

/* Read what the client sent, as far as the state allows. */
static void hc_process(struct hconn *c)
{
	while (c->st && (c->state == HC_HEAD || c->state == HC_BODY || c->state == HC_PERSIST)) {
		if (c->state == HC_PERSIST && c->inner && stream_output_full(c->inner))
			break; /* backpressure: the gateway reads slowly */
		if (c->state == HC_BODY && c->sess && c->sess->inner && stream_output_full(c->sess->inner))
			break;
		struct buf *in = stream_input(c->st);
		size_t used = 0;
		enum http_read_result r = c->request_done ? HTTP_READ_NEED_MORE
		                                          : http_reader_feed(c->rd, buf_head(in), buf_len(in), &used,
		                                                             &c->body);
		buf_consume(in, used);
		if (c->state == HC_HEAD && !c->head_timer && http_reader_in_message(c->rd)) {
			/* A request has begun: it has http.header_timeout to finish its head (slowloris). */
			c->head_timer = true;
			arm(c, c->hb->cfg->http_header_timeout);
		}
		if (r == HTTP_READ_ERROR) {
			hc_fail(c, http_reader_error_status(c->rd), NULL, "%s", http_reader_error(c->rd));
			return;
		}
		if (r == HTTP_READ_HEAD) {
			if (c->state != HC_HEAD) {
				hc_fail(c, 400, NULL, "unexpected request head");
				return;
			}
			if (!hc_head(c))
				return;
			continue;
		}
		if (c->state == HC_PERSIST)
			persist_forward(c);
		if (r == HTTP_READ_DONE) {
			c->request_done = true;
			if (c->state == HC_PERSIST) {
				/* The client stopped sending, which is not the end of what the gateway
				 * owes it (LOGOUT's reply): the response goes on until the gateway
				 * closes, or says nothing for http.keepalive_timeout. */
				arm(c, c->hb->cfg->http_keepalive_timeout);
				break;
			}
			if (c->state == HC_BODY) {
				inresp_body_done(c);
				return;
			}
		}
		if (r == HTTP_READ_NEED_MORE)
			break;
	}
	/* Read only while a request can use it: not while a response is being made. */
	if (c->st)
		stream_pause_reading(c->st, c->state == HC_WAIT || c->state == HC_CLOSING ||
		                                (c->state == HC_PERSIST && c->request_done));
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hconn *c = w->data;
	(void)loop;
	(void)revents;
	switch (c->state) {
	case HC_HANDSHAKE:
		hc_close(c, "TLS handshake timed out (http.header_timeout)");
		return;
	case HC_HEAD:
		if (http_reader_in_message(c->rd))
			hc_fail(c, 408, NULL, "request head not complete within http.header_timeout");
		else
			hc_close(c, "idle (http.keepalive_timeout)");
		return;
	case HC_BODY:
		hc_fail(c, 408, NULL, "request body not complete within http.body_timeout");
		return;
	case HC_WAIT:
		if (c->sess) {
			log_msg(LOG_LEVEL_INFO, c->prefix, "http.response_timeout: answering with what is there");
			sess_respond(c->sess, true);
		}
		return;
	case HC_CLOSING:
		hc_close(c, "closing");
		return;
	case HC_PERSIST:
		if (c->request_done)
			persist_end(c, "the request had ended and the gateway said nothing more");
		return;
	}
}

/* ------------------------------------------------------------------------ */
/* connections                                                               */

static void hc_destroy(void *arg)
{
	struct hconn *c = arg;
	http_reader_free(c->rd);
	http_zenc_free(c->zenc);
	buf_free(&c->body);
	free(c);
}

static void hc_close(struct hconn *c, const char *why)
{
	struct http_binding *hb = c->hb;
	bool linked = false;
	for (struct hconn **pp = &hb->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			linked = true;
			break;
		}
	}
	if (!linked)
		return; /* already closing */
	hb->nconns--;
	log_msg(LOG_LEVEL_DEBUG, c->prefix, "HTTPS connection closed: %s", why ? why : "");
	ev_timer_stop(hb->loop, &c->timer);
	if (c->sess) {
		/* The request goes away; the session stays for the next one. */
		struct hsess *s = c->sess;
		c->sess = NULL;
		s->req = NULL;
		if (!s->dead) {
			gateway_conn_set_quiet(hb->gw, s->gw_id, true);
			ev_timer_set(&s->expiry, hb->cfg->http_session_timeout, 0);
			ev_timer_start(hb->loop, &s->expiry);
		}
	}
	if (c->inner) {
		stream_close_after_flush(c->inner);
		c->inner = NULL;
	}
	if (c->st) {
		stream_close(c->st);
		c->st = NULL;
	}
	loop_defer_free(hc_destroy, c);
}

/* Write what is queued (within http.keepalive_timeout), then close. */
static void hc_finish(struct hconn *c, const char *why)
{
	if (c->st) {
		stream_set_deadline(c->st, c->hb->cfg->http_keepalive_timeout);
		stream_close_after_flush(c->st);
		c->st = NULL;
	}
	hc_close(c, why);
}

static void on_client(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct hconn *c = ctx;
	(void)st;
	switch (ev) {
	case STREAM_EV_TLS_READY:
		c->state = HC_HEAD;
		arm(c, c->hb->cfg->http_header_timeout);
		c->head_timer = true;
		hc_process(c);
		return;
	case STREAM_EV_DATA:
		hc_process(c);
		return;
	case STREAM_EV_DRAINED:
		if (c->inner)
			stream_pause_reading(c->inner, false);
		return;
	case STREAM_EV_EOF:
		if (c->state == HC_PERSIST) {
			persist_end(c, "the client closed the connection");
			return;
		}
		hc_close(c, "the client closed the connection");
		return;
	case STREAM_EV_ERROR:
		if (c->state == HC_PERSIST && c->inner) {
			stream_close_after_flush(c->inner);
			c->inner = NULL;
		}
		hc_close(c, reason ? reason : "connection error");
		return;
	case STREAM_EV_CONNECTED:
		return;
	}
}

static void on_accept(struct listener *l, int fd, const char *peer, void *ctx)
{
	struct http_binding *hb = ctx;
	char err[256];
	(void)l;
	if (hb->draining || (long long)hb->nconns >= hb->cfg->http_max_connections) {
		log_warn("refusing HTTPS %s: %s", peer, hb->draining ? "draining" : "http.max_connections reached");
		close(fd);
		return;
	}
	struct hconn *c = xcalloc(1, sizeof(*c));
	c->hb = hb;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	snprintf(c->prefix, sizeof(c->prefix), "h%lu %s", ++hb->next_id, peer);
	c->loopback = listener_peer_is_loopback(fd);
	struct http_limits lim = {
		.max_header_bytes = hb->cfg->http_max_header_size,
		.max_headers = (unsigned)hb->cfg->http_max_headers,
		.max_body = hb->cfg->http_max_body_size,
		.chunked_unlimited = true,
	};
	c->rd = http_reader_new(HTTP_READER_REQUEST, &lim);
	buf_init(&c->body, 0);
	ev_init(&c->timer, on_timer);
	c->timer.data = c;
	c->state = HC_HANDSHAKE;
	c->next = hb->conns;
	hb->conns = c;
	hb->nconns++;
	c->st = stream_new_fd(hb->loop, fd, c->prefix, hb->cfg->max_output_queue, on_client, c);
	arm(c, hb->cfg->http_header_timeout);
	if (stream_start_tls_server(c->st, hb->creds, err, sizeof(err)) < 0)
		hc_close(c, err);
}

/* ------------------------------------------------------------------------ */
/* the binding                                                               */

static void apply_limits(struct http_binding *hb)
{
	const struct gateway_config *cfg = hb->cfg;
	hb->limits.max_line_length = cfg->max_line_length;
	hb->limits.max_literal_size = cfg->max_literal_size;
	hb->limits.max_list_depth = (unsigned)cfg->max_list_depth;
	hb->limits.max_args = IMAP_DEFAULT_MAX_ARGS;
	hb->limits.max_message_size = cfg->max_command_size;
}

int http_binding_new(struct ev_loop *loop, struct gateway_server *gw, const struct gateway_config *cfg,
                     struct tls_creds *creds, struct http_binding **out, char *err, size_t errlen)
{
	*out = NULL;
	bool any = false;
	for (char **a = cfg->listen_https; a && *a; a++)
		any = any || (strcasecmp(*a, "none") != 0 && **a);
	if (!any)
		return 0;
	struct http_binding *hb = xcalloc(1, sizeof(*hb));
	hb->loop = loop;
	hb->gw = gw;
	hb->cfg = cfg;
	hb->creds = tlsio_creds_ref(creds);
	hb->path = xstrdup(cfg->http_path);
	apply_limits(hb);
	for (char **a = cfg->listen_https; a && *a; a++) {
		if (strcasecmp(*a, "none") == 0 || **a == '\0')
			continue;
		struct listener *l = listener_new(loop, *a, true, on_accept, hb, err, errlen);
		if (!l) {
			http_binding_free(hb);
			return -1;
		}
		hb->listeners = xrealloc(hb->listeners, (hb->nlisteners + 1) * sizeof(*hb->listeners));
		hb->listeners[hb->nlisteners++] = l;
		log_info("listening on %s (P-IMAP over HTTPS, path %s)", *a, cfg->http_path);
	}
	*out = hb;
	return 0;
}

void http_binding_reconfigure(struct http_binding *hb, const struct gateway_config *cfg)
{
	if (!hb)
		return;
	if (strcmp(hb->path, cfg->http_path) != 0)
		log_warn("http.path changed: takes effect after a restart");
	hb->cfg = cfg;
	apply_limits(hb);
}

void http_binding_drain(struct http_binding *hb)
{
	if (!hb)
		return;
	hb->draining = true;
	for (size_t i = 0; i < hb->nlisteners; i++)
		listener_pause(hb->listeners[i], true);
}

void http_binding_free(struct http_binding *hb)
{
	if (!hb)
		return;
	while (hb->sessions)
		sess_destroy(hb->sessions, "shutdown");
	while (hb->conns)
		hc_close(hb->conns, "shutdown");
	for (size_t i = 0; i < hb->nlisteners; i++)
		listener_free(hb->listeners[i]);
	free(hb->listeners);
	tlsio_creds_unref(hb->creds);
	free(hb->path);
	free(hb);
}
