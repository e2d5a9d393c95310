/*
 * http_link.c - pimap-proxy's HTTPS binding client (see http_link.h).
 *
 * Objects:
 *   http_client   settings fixed at start (URL, trust, mode), the device key
 *                 learnt from XPROVISION, the UDP wake-up socket and the
 *                 highest sequence number accepted on it, and the hlinks
 *   hlink         one proxy link: the socketpair end toward proxy_link.c
 *                 ("inner"), the HTTPS connection of the request under way
 *                 ("net", NULL between in-response requests), the response
 *                 reader; in in-response mode also a parser over the link's
 *                 commands (batches, IDLE), one over the gateway's replies
 *                 (our own commands' replies are taken out), and the local
 *                 IDLE state
 *
 * In-response mode keeps no connection while nothing is asked: a request
 * goes out when the link sends a command, when a wake-up says the gateway
 * holds events, or when the poll interval passes while the link idles.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "clock.h"
#include "http_link.h"
#include "http_tunnel.h"
#include "http_wire.h"
#include "imap_parse.h"
#include "listener.h"
#include "log.h"
#include "outband_msg.h"
#include "stream.h"

#define OUR_TAG_PREFIX "pimapwake" /* tags of the module's own commands: their replies are not the link's */
#define WAKE_MAX_PER_EVENT 64      /* datagrams read per readiness event */

struct hlink;

struct http_client {
	struct ev_loop *loop;
	const struct proxy_config *cfg;
	char host[256];
	char port[8];
	char path[256];
	char *server_name;
	struct tls_creds *creds;
	char *device_id;
	bool in_response;
	struct http_proxy proxy;       /* upstream.http_proxy: CONNECT through it */
	bool via_proxy;
	/* wake-ups */
	int udp;                       /* -1: none */
	ev_io udp_watcher;
	char wake_address[80];         /* what the gateway is told: "ip:port" */
	uint8_t key[OUTBAND_KEY_LEN];
	bool have_key;
	uint64_t last_seq;
	struct hlink *links;
	unsigned long next_id;
};

enum local_idle {
	LI_NONE,
	LI_PLUS_PENDING, /* the link asked for IDLE while replies were outstanding */
	LI_IDLE,         /* "+" given: the link waits for events */
	LI_DONE_PENDING, /* DONE came while a poll was out: OK after its events */
};

struct hlink {
	struct hlink *next;
	struct http_client *hc;
	char prefix[160];
	struct stream *inner;
	bool closing;
	bool plain;                    /* a plain session (the SMTP listener's XDELIVER), not user#P */
	bool heard;                    /* the link got bytes of the gateway's */
	bool logging_out;              /* in-response, plain: the link let go; our LOGOUT ends the session */
	/* the HTTPS request under way */
	struct stream *net;
	struct http_tunnel *tunnel;    /* CONNECT to the web proxy not answered yet */
	bool net_ready;
	bool req_open;
	bool keep_alive;
	struct http_reader *rd;
	struct http_zdec *zdec;
	bool head_seen;
	struct buf raw_body;           /* response body as it came (coded) */
	struct buf body;               /* decoded */
	/* persistent */
	bool stream_started;
	/* in-response */
	struct imap_parser *cmdp;
	struct imap_parser *respp;
	struct buf batch;
	long outstanding;              /* commands sent whose tagged reply has not come */
	bool want_poll;
	bool setup_sent;
	bool want_setup_after;         /* a login went into the batch: the setup follows the login batch */
	unsigned our_seq;
	char cookie[HTTP_MAX_KEPT_VALUE + 1];
	enum local_idle idle;
	char idle_tag[72];
	ev_timer poll;
};

static void hl_close(struct hlink *l, const char *why);
static void hl_start_request(struct hlink *l);
static void hl_read_inner(struct hlink *l);

/* ------------------------------------------------------------------------ */
/* to the link                                                               */

static void to_link(struct hlink *l, const void *data, size_t len)
{
	if (l->inner && len) {
		l->heard = true;
		stream_write(l->inner, data, len);
		stream_flush(l->inner);
	}
}

static void to_link_str(struct hlink *l, const char *s)
{
	to_link(l, s, strlen(s));
}

/* The local IDLE's answers, once no reply of an earlier command can come after them. */
static void idle_progress(struct hlink *l)
{
	if (l->outstanding > 0 || l->req_open)
		return;
	if (l->idle == LI_PLUS_PENDING) {
		to_link_str(l, "+ idling\r\n");
		l->idle = LI_IDLE;
		/* Wake-ups may be lost (UDP) or not configured: ask now and then all the same. */
		ev_timer_set(&l->poll, l->hc->cfg->upstream_poll_interval, 0);
		ev_timer_start(l->hc->loop, &l->poll);
	} else if (l->idle == LI_DONE_PENDING) {
		char line[128];
		snprintf(line, sizeof(line), "%s OK IDLE completed\r\n", l->idle_tag);
		to_link_str(l, line);
		l->idle = LI_NONE;
		ev_timer_stop(l->hc->loop, &l->poll);
	}
}

/* ------------------------------------------------------------------------ */
/* the HTTPS request                                                         */

static void write_request(struct hlink *l)
{
	struct http_client *hc = l->hc;
	bool v6 = strchr(hc->host, ':') != NULL;
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b,
	           "POST %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: pimap-proxy/" PACKAGE_VERSION "\r\n"
	           "Content-Type: application/vnd.pimap\r\nAccept-Encoding: gzip, deflate\r\nCache-Control: no-cache\r\n",
	           hc->path, v6 ? "[" : "", hc->host, v6 ? "]" : "", hc->port);
	if (!hc->in_response) {
		buf_append_str(&b, "Transfer-Encoding: chunked\r\n\r\n");
		stream_write(l->net, buf_head(&b), buf_len(&b));
		stream_flush(l->net);
		buf_free(&b);
		l->stream_started = true;
		l->req_open = true;
		hl_read_inner(l); /* what the link wrote meanwhile */
		return;
	}
	if (l->cookie[0])
		buf_printf(&b, "Cookie: %s\r\n", l->cookie);
	buf_printf(&b, "Content-Length: %zu\r\n\r\n", buf_len(&l->batch));
	buf_append(&b, buf_head(&l->batch), buf_len(&l->batch));
	log_trace_imap(l->prefix, TRACE_UPSTREAM_OUT, buf_head(&l->batch), buf_len(&l->batch), false);
	buf_clear(&l->batch);
	if (l->logging_out)
		stream_set_deadline(l->net, hc->cfg->upstream_connect_timeout); /* nobody waits for it: bounded */
	l->want_poll = false;
	l->req_open = true;
	l->head_seen = false;
	buf_clear(&l->raw_body);
	buf_clear(&l->body);
	http_zdec_free(l->zdec);
	l->zdec = NULL;
	stream_write(l->net, buf_head(&b), buf_len(&b));
	stream_flush(l->net);
	buf_free(&b);
}

static void net_close(struct hlink *l)
{
	if (l->net) {
		stream_close(l->net);
		l->net = NULL;
	}
	l->net_ready = false;
	http_tunnel_free(l->tunnel);
	l->tunnel = NULL;
	http_reader_free(l->rd);
	l->rd = NULL;
}

/* A response's head: anything but 200 ends the link (401: the session is gone; log in again). */
static bool check_head(struct hlink *l)
{
	const struct http_head *h = http_reader_head(l->rd);
	if (h->status == 100)
		return true; /* interim */
	l->head_seen = true;
	l->keep_alive = h->keep_alive;
	if (h->status != 200) {
		char why[160];
		snprintf(why, sizeof(why), "the gateway answered HTTP %u%s", h->status,
		         h->status == 401 ? " (session gone: logging in again)" : "");
		hl_close(l, why);
		return false;
	}
	int coding = http_coding_parse(h->content_encoding);
	if (coding < 0) {
		hl_close(l, "the gateway used an unknown Content-Encoding");
		return false;
	}
	l->zdec = http_zdec_new((enum http_coding)coding);
	if (h->set_cookie[0]) {
		const char *semi = strchr(h->set_cookie, ';');
		size_t n = semi ? (size_t)(semi - h->set_cookie) : strlen(h->set_cookie);
		snprintf(l->cookie, sizeof(l->cookie), "%.*s", (int)n, h->set_cookie);
	}
	return true;
}

/* Decode body bytes read so far into l->body; false after closing the link. */
static bool decode_body(struct hlink *l)
{
	if (!buf_len(&l->raw_body))
		return true;
	int rc = 0;
	if (l->zdec)
		rc = http_zdec_write(l->zdec, buf_head(&l->raw_body), buf_len(&l->raw_body), &l->body,
		                     HTTP_LINK_MAX_RESPONSE);
	else
		buf_append(&l->body, buf_head(&l->raw_body), buf_len(&l->raw_body));
	buf_clear(&l->raw_body);
	if (rc < 0 || buf_len(&l->body) > HTTP_LINK_MAX_RESPONSE) {
		hl_close(l, "undecodable or oversized response body");
		return false;
	}
	return true;
}

/* The XPROVISION key line: "* XPROVISION PIMAP_ENC_KEY (<base64>)". */
static void take_key(struct hlink *l, const struct imap_msg *m)
{
	struct http_client *hc = l->hc;
	if (m->nargs < 3 || !imap_arg_is_atom(&m->args[1], "PIMAP_ENC_KEY") || m->args[2].type != IMAP_ARG_LIST ||
	    m->args[2].list_count != 1)
		return;
	const struct imap_arg *k = &m->args[2].list[0];
	gnutls_datum_t src = {(unsigned char *)(uintptr_t)k->str, (unsigned)k->len};
	gnutls_datum_t raw = {NULL, 0};
	if (gnutls_base64_decode2(&src, &raw) == 0 && raw.size == OUTBAND_KEY_LEN) {
		if (!hc->have_key || memcmp(hc->key, raw.data, OUTBAND_KEY_LEN) != 0)
			log_msg(LOG_LEVEL_INFO, l->prefix, "got the device's out-band key (XPROVISION)");
		memcpy(hc->key, raw.data, OUTBAND_KEY_LEN);
		hc->have_key = true;
	}
	if (raw.data) {
		gnutls_memset(raw.data, 0, raw.size);
		gnutls_free(raw.data);
	}
}

/* In-response: a whole response body. Our commands' replies and XPROVISION are taken out. */
static void inresp_deliver(struct hlink *l)
{
	long tagged = 0;
	struct buf out;
	buf_init(&out, 0);
	size_t off = 0;
	while (off < buf_len(&l->body)) {
		size_t used = 0;
		enum imap_parse_result r =
			imap_parser_feed(l->respp, buf_head(&l->body) + off, buf_len(&l->body) - off, &used);
		if (r == IMAP_PARSE_NEED_MORE) {
			/* A message cut at the end of a body (X-PIMAP-Incomplete): the parser keeps its part. */
			off += used;
			break;
		}
		if (r == IMAP_PARSE_ERROR) {
			buf_free(&out);
			hl_close(l, "unparsable response from the gateway");
			return;
		}
		const struct imap_msg *m = imap_parser_msg(l->respp);
		bool ours = m->kind == IMAP_MSG_TAGGED && strncmp(m->tag, OUR_TAG_PREFIX, strlen(OUR_TAG_PREFIX)) == 0;
		bool provision = m->kind == IMAP_MSG_UNTAGGED && m->nargs >= 1 && imap_arg_is_atom(&m->args[0], "XPROVISION");
		if (m->kind == IMAP_MSG_TAGGED && l->outstanding > 0)
			l->outstanding--;
		tagged += m->kind == IMAP_MSG_TAGGED;
		if (provision)
			take_key(l, m);
		else if (ours && m->status != IMAP_STATUS_OK)
			log_msg(LOG_LEVEL_WARN, l->prefix, "out-band setup refused: %.*s", (int)m->text_len, m->text);
		else if (!ours)
			buf_append(&out, m->raw, m->raw_len);
		off += used;
		imap_parser_reset(l->respp);
	}
	buf_clear(&l->body);
	if (l->outstanding > 0 && tagged == 0 && !http_reader_head(l->rd)->pimap_incomplete) {
		/* The gateway answers a request only once every command it holds is answered (or
		 * says X-PIMAP-Incomplete): our count is wrong. Polling on would spin. */
		log_msg(LOG_LEVEL_WARN, l->prefix, "%ld replies expected but the gateway has none pending", l->outstanding);
		l->outstanding = 0;
	}
	log_trace_imap(l->prefix, TRACE_UPSTREAM_IN, buf_head(&out), buf_len(&out), false);
	to_link(l, buf_head(&out), buf_len(&out));
	buf_free(&out);
}

static void response_done(struct hlink *l)
{
	if (!l->hc->in_response) {
		hl_close(l, "the gateway ended the persistent response");
		return;
	}
	l->req_open = false;
	inresp_deliver(l);
	if (l->closing)
		return;
	if (l->logging_out && l->outstanding <= 0 && !buf_len(&l->batch)) {
		hl_close(l, "logged out");
		return;
	}
	http_reader_next(l->rd);
	if (!l->keep_alive)
		net_close(l);
	idle_progress(l);
	if (buf_len(&l->batch) || l->want_poll || l->outstanding > 0)
		hl_start_request(l); /* more to send, or replies still to come */
	else
		net_close(l);        /* nothing asked: no connection while idle */
}

static void net_read(struct hlink *l)
{
	struct buf *in = stream_input(l->net);
	for (;;) {
		size_t used = 0;
		enum http_read_result r = http_reader_feed(l->rd, buf_head(in), buf_len(in), &used, &l->raw_body);
		buf_consume(in, used);
		if (r == HTTP_READ_ERROR) {
			char why[200];
			snprintf(why, sizeof(why), "bad HTTP from the gateway: %s", http_reader_error(l->rd));
			hl_close(l, why);
			return;
		}
		if (r == HTTP_READ_HEAD) {
			if (!check_head(l))
				return;
			continue;
		}
		if (!decode_body(l))
			return;
		if (!l->hc->in_response && buf_len(&l->body)) {
			/* persistent: the gateway's bytes go to the link as they come */
			to_link(l, buf_head(&l->body), buf_len(&l->body));
			buf_clear(&l->body);
			if (l->inner && stream_output_full(l->inner))
				stream_pause_reading(l->net, true);
		}
		if (r == HTTP_READ_DONE) {
			if (http_reader_head(l->rd)->status == 100) {
				http_reader_next(l->rd);
				continue;
			}
			response_done(l);
			return;
		}
		if (r == HTTP_READ_NEED_MORE)
			return;
	}
}

static void start_tls(struct hlink *l)
{
	char err[256];
	if (stream_start_tls_client(l->net, l->hc->creds, l->hc->server_name, err, sizeof(err)) < 0)
		hl_close(l, err);
}

/* A CONNECT that did not open: the configuration or the network is at fault, so it is a warning. */
static void tunnel_failed(struct hlink *l, const char *why)
{
	log_msg(LOG_LEVEL_WARN, l->prefix, "%s", why);
	hl_close(l, why);
}

/* Connected to the web proxy: ask it for a tunnel to the gateway. */
static void tunnel_start(struct hlink *l)
{
	struct buf b;
	buf_init(&b, 0);
	http_tunnel_request(l->tunnel, &b);
	stream_write(l->net, buf_head(&b), buf_len(&b));
	stream_flush(l->net);
	buf_free_secret(&b); /* Proxy-Authorization */
}

/* The web proxy's answer; once it is 2xx the TLS to the gateway starts inside the tunnel. */
static void tunnel_read(struct hlink *l)
{
	struct buf *in = stream_input(l->net);
	size_t used = 0;
	char why[400];
	switch (http_tunnel_feed(l->tunnel, buf_head(in), buf_len(in), &used, why, sizeof(why))) {
	case HTTP_TUNNEL_NEED_MORE:
		buf_consume(in, used);
		return;
	case HTTP_TUNNEL_REFUSED:
		tunnel_failed(l, why);
		return;
	case HTTP_TUNNEL_OPEN:
		/* The gateway's TLS speaks after our ClientHello: anything else buffered now is dropped
		 * by stream_start_tls_client, as at STARTTLS. */
		buf_consume(in, used);
		http_tunnel_free(l->tunnel);
		l->tunnel = NULL;
		log_msg(LOG_LEVEL_DEBUG, l->prefix, "tunnel through HTTP proxy %s:%s open", l->hc->proxy.host,
		        l->hc->proxy.port);
		start_tls(l);
		return;
	}
}

static void on_net(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct hlink *l = ctx;
	(void)st;
	switch (ev) {
	case STREAM_EV_CONNECTED:
		if (l->tunnel) {
			tunnel_start(l);
			return;
		}
		start_tls(l);
		return;
	case STREAM_EV_TLS_READY:
		stream_set_deadline(l->net, 0);
		l->net_ready = true;
		write_request(l);
		return;
	case STREAM_EV_DATA:
		if (l->tunnel)
			tunnel_read(l);
		else
			net_read(l);
		return;
	case STREAM_EV_DRAINED:
		if (l->inner)
			stream_pause_reading(l->inner, false);
		return;
	case STREAM_EV_EOF:
		if (l->tunnel) {
			char why[400];
			snprintf(why, sizeof(why), "HTTP proxy %s:%s closed the connection before answering CONNECT",
			         l->hc->proxy.host, l->hc->proxy.port);
			tunnel_failed(l, why);
			return;
		}
		if (l->req_open && l->rd && http_reader_eof(l->rd, &l->raw_body) == HTTP_READ_DONE && decode_body(l)) {
			l->keep_alive = false;
			response_done(l);
			return;
		}
		if (!l->req_open && l->hc->in_response) {
			net_close(l); /* the server closed an idle keep-alive connection */
			return;
		}
		hl_close(l, "the gateway closed the HTTPS connection");
		return;
	case STREAM_EV_ERROR: {
		char why[700];
		if (l->tunnel)
			snprintf(why, sizeof(why), "HTTP proxy %s:%s: %s", l->hc->proxy.host, l->hc->proxy.port,
			         reason ? reason : "error");
		else
			snprintf(why, sizeof(why), "HTTPS to %s:%s%s%s%s%s%s: %s", l->hc->host, l->hc->port,
			         l->hc->via_proxy ? " (through HTTP proxy " : "", l->hc->via_proxy ? l->hc->proxy.host : "",
			         l->hc->via_proxy ? ":" : "", l->hc->via_proxy ? l->hc->proxy.port : "",
			         l->hc->via_proxy ? ")" : "", reason ? reason : "error");
		if (l->tunnel)
			tunnel_failed(l, why);
		else
			hl_close(l, why);
		return;
	}
	}
}

/* Send what is waiting: on the open connection, or on a new one. */
static void hl_start_request(struct hlink *l)
{
	struct http_client *hc = l->hc;
	if (l->closing || l->req_open)
		return;
	if (hc->in_response && !buf_len(&l->batch) && !l->want_poll && l->outstanding <= 0)
		return;
	if (l->net && l->net_ready) {
		write_request(l);
		return;
	}
	if (l->net)
		return; /* connecting: the request goes out at TLS_READY */
	char err[256];
	struct http_limits lim = {.max_header_bytes = 65536, .max_headers = 256, .max_body = HTTP_LINK_MAX_RESPONSE,
	                          .chunked_unlimited = !hc->in_response};
	l->rd = http_reader_new(HTTP_READER_RESPONSE, &lim);
	/* Through a web proxy: the TCP connection goes to it, and the deadline covers CONNECT too.
	 * The tunnel exists before the connection can report CONNECTED. */
	if (hc->via_proxy)
		l->tunnel = http_tunnel_new(&hc->proxy, hc->host, hc->port);
	l->net = stream_connect(hc->loop, hc->via_proxy ? hc->proxy.host : hc->host,
	                        hc->via_proxy ? hc->proxy.port : hc->port, hc->cfg->upstream_connect_timeout, l->prefix,
	                        hc->cfg->max_output_queue, on_net, l, err, sizeof(err));
	if (!l->net)
		hl_close(l, err); /* frees the tunnel (net_close) */
}

/* ------------------------------------------------------------------------ */
/* from the link                                                             */

/* Ask for wake-ups: the key, then where and how (after the link's login, in the same batch). */
static void add_setup(struct hlink *l)
{
	struct http_client *hc = l->hc;
	if (l->setup_sent || hc->udp < 0 || l->plain)
		return;
	l->setup_sent = true;
	buf_printf(&l->batch, OUR_TAG_PREFIX "%u XPROVISION\r\n", ++l->our_seq);
	buf_printf(&l->batch, OUR_TAG_PREFIX "%u XSETPIMAPPREF PIMAP_OUTBAND_ADDRESS \"%s\"\r\n", ++l->our_seq,
	           hc->wake_address);
	buf_printf(&l->batch, OUR_TAG_PREFIX "%u XSETPIMAPPREF PIMAP_OUTBAND_FORMAT EXTENDED\r\n", ++l->our_seq);
	buf_printf(&l->batch, OUR_TAG_PREFIX "%u XSETPIMAPPREF PIMAP_OUTBAND_CHANNEL UDP\r\n", ++l->our_seq);
	l->outstanding += 4;
}

/* In-response: the link's commands become the next batch; its IDLE is ours to answer. */
static void inresp_read_inner(struct hlink *l)
{
	struct buf *in = stream_input(l->inner);
	bool more = false;
	while (buf_len(in) && !l->closing) {
		size_t used = 0;
		enum imap_parse_result r = imap_parser_feed(l->cmdp, buf_head(in), buf_len(in), &used);
		if (r == IMAP_PARSE_NEED_MORE) {
			break; /* the stream keeps the partial command */
		}
		if (r == IMAP_PARSE_ERROR) {
			hl_close(l, "unparsable command from the link");
			return;
		}
		const struct imap_msg *m = imap_parser_msg(l->cmdp);
		if (m->kind == IMAP_MSG_RAW_LINE) {
			/* DONE ends the local IDLE */
			if (l->idle == LI_IDLE || l->idle == LI_PLUS_PENDING)
				l->idle = LI_DONE_PENDING;
			buf_consume(in, used);
			imap_parser_reset(l->cmdp);
			idle_progress(l);
			continue;
		}
		if (m->kind == IMAP_MSG_COMMAND && imap_arg_is_atom(&m->args[0], "IDLE")) {
			snprintf(l->idle_tag, sizeof(l->idle_tag), "%s", m->tag);
			l->idle = LI_PLUS_PENDING;
			buf_consume(in, used);
			imap_parser_reset(l->cmdp);
			imap_parser_expect_raw_line(l->cmdp);
			idle_progress(l);
			continue;
		}
		bool login = m->kind == IMAP_MSG_COMMAND &&
		             (imap_arg_is_atom(&m->args[0], "AUTHENTICATE") || imap_arg_is_atom(&m->args[0], "LOGIN"));
		buf_append(&l->batch, m->raw, m->raw_len);
		l->outstanding++;
		buf_consume(in, used);
		imap_parser_reset(l->cmdp);
		more = true;
		if (login)
			l->want_setup_after = true;
	}
	if (l->want_setup_after && !buf_len(in)) {
		/* After the whole login batch (ID, AUTHENTICATE, COMPRESS), not inside it. */
		l->want_setup_after = false;
		add_setup(l);
	}
	if (more)
		hl_start_request(l);
}

static void hl_read_inner(struct hlink *l)
{
	if (!l->inner)
		return;
	if (l->hc->in_response) {
		inresp_read_inner(l);
		return;
	}
	/* persistent: chunks as they come, once the request head is out */
	struct buf *in = stream_input(l->inner);
	if (!l->stream_started || !l->net || !buf_len(in))
		return;
	struct buf b;
	buf_init(&b, 0);
	http_chunk_append(&b, buf_head(in), buf_len(in));
	buf_consume(in, buf_len(in));
	stream_write(l->net, buf_head(&b), buf_len(&b));
	stream_flush(l->net);
	buf_free(&b);
	if (stream_output_full(l->net))
		stream_pause_reading(l->inner, true);
}

static void on_inner(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct hlink *l = ctx;
	(void)st;
	switch (ev) {
	case STREAM_EV_DATA:
		hl_read_inner(l);
		return;
	case STREAM_EV_DRAINED:
		if (l->net)
			stream_pause_reading(l->net, false);
		return;
	case STREAM_EV_EOF:
	case STREAM_EV_ERROR:
		if (l->inner) {
			stream_close(l->inner);
			l->inner = NULL;
		}
		if (l->hc->in_response && l->plain && l->cookie[0] && !l->logging_out) {
			/* The gateway would keep this session, and its store connection, for
			 * http.session_timeout: nothing resumes a plain session, so end it now. */
			l->logging_out = true;
			buf_printf(&l->batch, OUR_TAG_PREFIX "%u LOGOUT\r\n", ++l->our_seq);
			l->outstanding++;
			hl_start_request(l);
			return;
		}
		if (!l->hc->in_response && l->net && l->stream_started) {
			/* The end of the request body: the gateway parks the session. */
			struct buf b;
			buf_init(&b, 0);
			http_chunk_last(&b);
			stream_write(l->net, buf_head(&b), buf_len(&b));
			buf_free(&b);
			stream_set_deadline(l->net, 5);
			stream_close_after_flush(l->net);
			l->net = NULL;
		}
		hl_close(l, reason ? reason : "the link let go");
		return;
	case STREAM_EV_CONNECTED:
	case STREAM_EV_TLS_READY:
		return;
	}
}

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hlink *l = w->data;
	(void)loop;
	(void)revents;
	if (l->idle != LI_IDLE)
		return;
	l->want_poll = true;
	hl_start_request(l);
	ev_timer_set(&l->poll, l->hc->cfg->upstream_poll_interval, 0);
	ev_timer_start(l->hc->loop, &l->poll);
}

/* ------------------------------------------------------------------------ */
/* links                                                                     */

static void hl_free(void *arg)
{
	struct hlink *l = arg;
	imap_parser_free(l->cmdp);
	imap_parser_free(l->respp);
	http_reader_free(l->rd);
	http_zdec_free(l->zdec);
	buf_free(&l->batch);
	buf_free(&l->raw_body);
	buf_free(&l->body);
	free(l);
}

static void hl_close(struct hlink *l, const char *why)
{
	if (l->closing)
		return;
	l->closing = true;
	log_msg(LOG_LEVEL_INFO, l->prefix, "HTTPS link closed: %s", why);
	struct http_client *hc = l->hc;
	for (struct hlink **pp = &hc->links; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	ev_timer_stop(hc->loop, &l->poll);
	net_close(l);
	if (l->inner) {
		if (!l->heard) {
			/* Nothing of the gateway's reached the link: say why in place of its greeting
			 * (the proxy and the SMTP listener log it, and a client that is not logged in
			 * gets it in its BYE). */
			char bye[600];
			int n = snprintf(bye, sizeof(bye), "* BYE [UNAVAILABLE] %s", why);
			if (n < 0 || (size_t)n >= sizeof(bye) - 2)
				n = (int)sizeof(bye) - 3;
			for (int i = 0; i < n; i++)
				if ((unsigned char)bye[i] < 0x20)
					bye[i] = ' ';
			memcpy(bye + n, "\r\n", 2);
			stream_write(l->inner, bye, (size_t)n + 2);
		}
		/* The link sees the connection lost and reconnects as over TCP. */
		stream_close_after_flush(l->inner);
		l->inner = NULL;
	}
	loop_defer_free(hl_free, l);
}

static int hl_open(struct http_client *hc, const char *prefix, bool plain, char *err, size_t errlen)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -1;
	}
	struct hlink *l = xcalloc(1, sizeof(*l));
	l->hc = hc;
	l->plain = plain;
	snprintf(l->prefix, sizeof(l->prefix), "%s https%lu", prefix, ++hc->next_id);
	buf_init(&l->batch, 0);
	buf_init(&l->raw_body, 0);
	buf_init(&l->body, 0);
	ev_init(&l->poll, on_poll);
	l->poll.data = l;
	struct imap_limits lim = {
		.max_line_length = hc->cfg->max_line_length,
		.max_literal_size = hc->cfg->max_command_size,
		.max_list_depth = (unsigned)hc->cfg->max_list_depth,
		.max_args = IMAP_DEFAULT_MAX_ARGS,
	};
	if (hc->in_response) {
		l->cmdp = imap_parser_new(IMAP_PARSE_COMMANDS, &lim);
		lim.max_line_length = 1u << 20;
		lim.max_literal_size = 1u << 30;
		l->respp = imap_parser_new(IMAP_PARSE_RESPONSES, &lim);
	}
	l->inner = stream_new_fd(hc->loop, sv[0], l->prefix, hc->cfg->max_output_queue, on_inner, l);
	l->next = hc->links;
	hc->links = l;
	/* The first request brings the greeting: an empty poll (in-response) or the stream's start. */
	l->want_poll = true;
	hl_start_request(l);
	return sv[1];
}

int http_client_open(struct http_client *hc, const char *prefix, char *err, size_t errlen)
{
	return hl_open(hc, prefix, false, err, errlen);
}

int http_client_open_plain(struct http_client *hc, const char *prefix, char *err, size_t errlen)
{
	return hl_open(hc, prefix, true, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* wake-ups                                                                  */

/* The device id in "user#Pdevice[@domain]". */
static bool account_is_ours(const struct http_client *hc, const char *account)
{
	const char *p = NULL;
	for (const char *q = strstr(account, "#P"); q; q = strstr(q + 1, "#P"))
		p = q + 2;
	if (!p)
		return false;
	size_t n = strcspn(p, "@");
	return n == strlen(hc->device_id) && strncmp(p, hc->device_id, n) == 0;
}

static void wake_links(struct http_client *hc)
{
	for (struct hlink *l = hc->links; l; l = l->next) {
		if (l->idle == LI_IDLE || l->idle == LI_PLUS_PENDING) {
			l->want_poll = true;
			hl_start_request(l);
		}
	}
}

static void on_udp(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_client *hc = w->data;
	(void)loop;
	(void)revents;
	for (int i = 0; i < WAKE_MAX_PER_EVENT; i++) {
		uint8_t dgram[OUTBAND_MAX_DATAGRAM + 1];
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(hc->udp, dgram, sizeof(dgram), 0, (struct sockaddr *)&from, &fromlen);
		if (n < 0)
			return; /* EAGAIN: all read */
		char peer[128];
		sockaddr_format((struct sockaddr *)&from, fromlen, peer, sizeof(peer));
		struct outband_notice note;
		const char *why = NULL;
		if (!hc->have_key) {
			log_info("wake-up from %s ignored: no device key yet (XPROVISION)", peer);
			continue;
		}
		if (outband_extended_decode(hc->key, dgram, (size_t)n, &note, &why) < 0) {
			log_info("wake-up from %s ignored: %s", peer, why);
			continue;
		}
		if (!account_is_ours(hc, note.account)) {
			log_info("wake-up from %s ignored: for another device (%s)", peer, note.account);
			continue;
		}
		uint64_t max_age = (uint64_t)(hc->cfg->outband_max_age * 1e6);
		if (!outband_seq_acceptable(hc->last_seq, note.seq, (uint64_t)(clock_wall() * 1e6), max_age, &why)) {
			log_info("wake-up from %s ignored: %s", peer, why);
			continue;
		}
		hc->last_seq = note.seq;
		log_info("wake-up from %s: %s%s%s", peer, outband_event_name(note.event), note.mailbox[0] ? " in " : "",
		         note.mailbox);
		wake_links(hc);
	}
}

static int bind_wakeups(struct http_client *hc, char *err, size_t errlen)
{
	const struct proxy_config *cfg = hc->cfg;
	hc->udp = -1;
	if (!hc->in_response || strcmp(cfg->outband_listen, "none") == 0 || !*cfg->outband_listen)
		return 0;
	char host[256], port[16];
	if (listen_addr_parse(cfg->outband_listen, host, sizeof(host), port, sizeof(port), err, errlen) < 0)
		return -1;
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
		snprintf(err, errlen, "outband.listen: %s is not a numeric address", cfg->outband_listen);
		return -1;
	}
	hc->udp = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (hc->udp < 0 || bind(hc->udp, res->ai_addr, res->ai_addrlen) < 0) {
		snprintf(err, errlen, "outband.listen %s: %s", cfg->outband_listen, strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	if (*cfg->outband_address) {
		snprintf(hc->wake_address, sizeof(hc->wake_address), "%s", cfg->outband_address);
	} else {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		getsockname(hc->udp, (struct sockaddr *)&ss, &sl);
		sockaddr_format((struct sockaddr *)&ss, sl, hc->wake_address, sizeof(hc->wake_address));
	}
	ev_io_init(&hc->udp_watcher, on_udp, hc->udp, EV_READ);
	hc->udp_watcher.data = hc;
	ev_io_start(hc->loop, &hc->udp_watcher);
	log_info("listening for wake-ups on %s (UDP); the gateway sends them to %s", cfg->outband_listen,
	         hc->wake_address);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* the client                                                                */

struct http_client *http_client_new(struct ev_loop *loop, const struct proxy_config *cfg,
                                    const struct upstream_url *url, const char *server_name,
                                    struct tls_creds *creds, const char *device_id, char *err, size_t errlen)
{
	struct http_client *hc = xcalloc(1, sizeof(*hc));
	hc->loop = loop;
	hc->cfg = cfg;
	snprintf(hc->host, sizeof(hc->host), "%s", url->host);
	snprintf(hc->port, sizeof(hc->port), "%s", url->port);
	snprintf(hc->path, sizeof(hc->path), "%s", url->scheme == URL_HTTPS ? url->path : "/pimap");
	hc->server_name = xstrdup(server_name);
	hc->creds = tlsio_creds_ref(creds);
	hc->device_id = xstrdup(device_id ? device_id : "");
	hc->in_response = cfg->upstream_mode == MODE_IN_RESPONSE;
	hc->udp = -1;
	if (*cfg->upstream_http_proxy) {
		if (http_proxy_init(&hc->proxy, cfg->upstream_http_proxy, cfg->upstream_http_proxy_user,
		                    cfg->upstream_http_proxy_password_file, err, errlen) < 0) {
			http_client_free(hc);
			return NULL;
		}
		hc->via_proxy = true;
	} else if (*cfg->upstream_http_proxy_user || *cfg->upstream_http_proxy_password_file) {
		snprintf(err, errlen, "upstream.http_proxy_user and _password_file need upstream.http_proxy");
		http_client_free(hc);
		return NULL;
	}
	if (bind_wakeups(hc, err, errlen) < 0) {
		http_client_free(hc);
		return NULL;
	}
	char via[400] = "";
	if (hc->via_proxy)
		snprintf(via, sizeof(via), ", through HTTP proxy %s:%s%s", hc->proxy.host, hc->proxy.port,
		         hc->proxy.authorization ? " (with Proxy-Authorization)" : "");
	log_info("gateway over HTTPS: https://%s:%s%s, %s mode%s", hc->host, hc->port, hc->path,
	         hc->in_response ? "in-response" : "persistent", via);
	return hc;
}

void http_client_reconfigure(struct http_client *hc, const struct proxy_config *cfg)
{
	if (hc)
		hc->cfg = cfg;
}

void http_client_free(struct http_client *hc)
{
	if (!hc)
		return;
	while (hc->links)
		hl_close(hc->links, "shutdown");
	if (hc->udp >= 0) {
		ev_io_stop(hc->loop, &hc->udp_watcher);
		close(hc->udp);
	}
	gnutls_memset(hc->key, 0, sizeof(hc->key));
	http_proxy_clear(&hc->proxy);
	tlsio_creds_unref(hc->creds);
	free(hc->server_name);
	free(hc->device_id);
	free(hc);
}
