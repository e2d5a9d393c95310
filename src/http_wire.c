/*
 * http_wire.c - HTTP/1.1 framing for the HTTPS binding (see http_wire.h).
 *
 * Why http-parser and not our own: chunked framing, header folding,
 * Content-Length/Transfer-Encoding conflicts and request smuggling are
 * where hand-written HTTP parsers go wrong; Node's parser has been fuzzed
 * for a decade and Debian ships it. This file only adds our limits, keeps
 * the headers we read, and turns its callbacks into a feed/event API like
 * imap_parse.c's.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <zlib.h>

#include "http_wire.h"

/* A header name longer than this is none we read: it is counted, not kept. */
#define HTTP_MAX_FIELD_NAME 32

enum kept_header {
	KEEP_NONE,
	KEEP_CONTENT_TYPE,
	KEEP_COOKIE,
	KEEP_SET_COOKIE,
	KEEP_ACCEPT_ENCODING,
	KEEP_CONTENT_ENCODING,
	KEEP_EXPECT,
	KEEP_INCOMPLETE,
};

struct http_reader {
	http_parser parser;
	http_parser_settings settings;
	struct http_limits limits;
	uint64_t max_body;       /* for the current message */
	struct http_head head;
	struct buf *body;        /* borrowed during a feed */
	uint64_t body_bytes;
	size_t head_fed;         /* bytes fed while the head was incomplete */
	unsigned nheaders;
	char field[HTTP_MAX_FIELD_NAME + 1];
	size_t field_len;
	bool field_long;
	bool in_value;
	enum kept_header keep;
	bool keep_started;       /* the kept slot already has a value from an earlier header (Cookie) */
	bool started;            /* first byte of a message seen */
	bool head_done;          /* HEAD reported */
	bool head_pending;       /* headers complete, HEAD not yet returned */
	bool done;               /* message complete, waiting for http_reader_next */
	char expect[32];         /* the Expect header */
	char incomplete[8];      /* X-PIMAP-Incomplete (the binding's own) */
	bool dead;
	const char *error;
	unsigned error_status;
};

static struct http_reader *reader_of(http_parser *p)
{
	return p->data;
}

static int fail(struct http_reader *r, unsigned status, const char *why)
{
	if (!r->error) {
		r->error = why;
		r->error_status = status;
	}
	return -1;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
	struct http_reader *r = reader_of(p);
	size_t have = strlen(r->head.reason);
	for (size_t i = 0; i < len && have < HTTP_MAX_REASON; i++)
		r->head.reason[have++] = ((unsigned char)at[i] < 0x20 || at[i] == 0x7f) ? '?' : at[i];
	r->head.reason[have] = '\0';
	return 0;
}

static char *kept_slot(struct http_reader *r, size_t *cap)
{
	*cap = HTTP_MAX_KEPT_VALUE;
	switch (r->keep) {
	case KEEP_CONTENT_TYPE:
		return r->head.content_type;
	case KEEP_COOKIE:
		return r->head.cookie;
	case KEEP_SET_COOKIE:
		return r->head.set_cookie;
	case KEEP_ACCEPT_ENCODING:
		return r->head.accept_encoding;
	case KEEP_CONTENT_ENCODING:
		return r->head.content_encoding;
	case KEEP_EXPECT:
		*cap = sizeof(r->expect) - 1;
		return r->expect;
	case KEEP_INCOMPLETE:
		*cap = sizeof(r->incomplete) - 1;
		return r->incomplete;
	case KEEP_NONE:
		break;
	}
	return NULL;
}

static void append_kept(struct http_reader *r, const char *at, size_t len)
{
	size_t cap;
	char *slot = kept_slot(r, &cap);
	if (!slot)
		return;
	size_t have = strlen(slot);
	if (have + len > cap)
		len = cap - have; /* cut: an oversized Cookie simply names no session */
	memcpy(slot + have, at, len);
	slot[have + len] = '\0';
}

static int on_message_begin(http_parser *p)
{
	struct http_reader *r = reader_of(p);
	r->started = true;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_reader *r = reader_of(p);
	size_t have = strlen(r->head.target);
	if (have + len > HTTP_MAX_TARGET)
		return fail(r, 414, "request target too long");
	memcpy(r->head.target + have, at, len);
	r->head.target[have + len] = '\0';
	return 0;
}

/* The previous header's value is complete: decide what the next one keeps. */
static void field_start(struct http_reader *r)
{
	r->field_len = 0;
	r->field_long = false;
	r->in_value = false;
	r->keep = KEEP_NONE;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_reader *r = reader_of(p);
	if (r->in_value || r->nheaders == 0) {
		field_start(r);
		if (++r->nheaders > r->limits.max_headers)
			return fail(r, 431, "too many header fields");
	}
	if (r->field_len + len > HTTP_MAX_FIELD_NAME) {
		r->field_long = true;
	} else {
		memcpy(r->field + r->field_len, at, len);
		r->field_len += len;
		r->field[r->field_len] = '\0';
	}
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_reader *r = reader_of(p);
	/* RFC 9110 5.5: no control characters but HTAB in a field value (http-parser lets NUL through). */
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)at[i] < 0x20 && at[i] != '\t') || at[i] == 0x7f)
			return fail(r, 400, "control character in a header value");
	if (!r->in_value) {
		r->in_value = true;
		r->keep = KEEP_NONE;
		r->keep_started = false;
		if (!r->field_long) {
			static const struct {
				const char *name;
				enum kept_header keep;
			} kept[] = {
				{"content-type", KEEP_CONTENT_TYPE},
				{"cookie", KEEP_COOKIE},
				{"set-cookie", KEEP_SET_COOKIE},
				{"accept-encoding", KEEP_ACCEPT_ENCODING},
				{"content-encoding", KEEP_CONTENT_ENCODING},
				{"expect", KEEP_EXPECT},
				{"x-pimap-incomplete", KEEP_INCOMPLETE},
			};
			for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
				if (strcasecmp(r->field, kept[i].name) == 0)
					r->keep = kept[i].keep;
		}
		size_t cap;
		char *slot = kept_slot(r, &cap);
		if (slot && *slot) {
			if (r->keep == KEEP_COOKIE) {
				append_kept(r, "; ", 2); /* several Cookie lines are one list (RFC 6265 5.4) */
			} else if (r->keep == KEEP_SET_COOKIE) {
				r->keep = KEEP_NONE;  /* the first Set-Cookie is ours; the rest are ignored */
			} else if (r->keep == KEEP_CONTENT_TYPE) {
				return fail(r, 400, "more than one Content-Type");
			} else {
				append_kept(r, ", ", 2); /* list-valued headers fold with commas (RFC 9110 5.3) */
			}
		}
	}
	append_kept(r, at, len);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_reader *r = reader_of(p);
	struct http_head *h = &r->head;
	h->http_minor = p->http_minor;
	if (p->type == HTTP_REQUEST)
		h->method = http_method_str((enum http_method)p->method);
	else
		h->status = p->status_code;
	h->chunked = (p->flags & F_CHUNKED) != 0;
	h->has_length = (p->flags & F_CONTENTLENGTH) != 0;
	h->content_length = h->has_length ? p->content_length : 0;
	h->keep_alive = http_should_keep_alive(p) != 0;
	h->expect_continue = strcasecmp(r->expect, "100-continue") == 0;
	h->pimap_incomplete = r->incomplete[0] != '\0';
	if (p->http_major != 1)
		return fail(r, 505, "only HTTP/1.x is spoken here");
	if (h->chunked && r->limits.chunked_unlimited)
		r->max_body = 0; /* a persistent stream: bounded by time and the session, not by size */
	if (r->max_body && h->has_length && h->content_length > r->max_body)
		return fail(r, 413, "request body too large");
	r->head_done = true;
	r->head_pending = true;
	return p->type == HTTP_RESPONSE && r->limits.head_only ? 1 : 0; /* 1: no body (http-parser's F_SKIPBODY) */
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_reader *r = reader_of(p);
	/* What fits under the limit is delivered first, so the body is the same however the input was split. */
	size_t fits = len;
	if (r->max_body && r->body_bytes + len > r->max_body)
		fits = (size_t)(r->max_body - r->body_bytes);
	if (r->body && fits)
		buf_append(r->body, at, fits);
	r->body_bytes += len;
	if (fits < len)
		return fail(r, 413, "request body too large");
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_reader *r = reader_of(p);
	r->done = true;
	http_parser_pause(p, 1);
	return 0;
}

struct http_reader *http_reader_new(enum http_reader_kind kind, const struct http_limits *limits)
{
	struct http_reader *r = xcalloc(1, sizeof(*r));
	r->limits = *limits;
	http_parser_settings_init(&r->settings);
	r->settings.on_message_begin = on_message_begin;
	r->settings.on_url = on_url;
	r->settings.on_status = on_status;
	r->settings.on_header_field = on_header_field;
	r->settings.on_header_value = on_header_value;
	r->settings.on_headers_complete = on_headers_complete;
	r->settings.on_body = on_body;
	r->settings.on_message_complete = on_message_complete;
	http_parser_init(&r->parser, kind == HTTP_READER_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
	r->parser.data = r;
	http_reader_next(r);
	return r;
}

void http_reader_free(struct http_reader *r)
{
	free(r);
}

void http_reader_next(struct http_reader *r)
{
	memset(&r->head, 0, sizeof(r->head));
	r->expect[0] = '\0';
	r->incomplete[0] = '\0';
	r->max_body = r->limits.max_body;
	r->body_bytes = 0;
	r->head_fed = 0;
	r->nheaders = 0;
	field_start(r);
	r->started = false;
	r->head_done = false;
	r->head_pending = false;
	if (r->done) {
		r->done = false;
		http_parser_pause(&r->parser, 0);
	}
}

bool http_reader_in_message(const struct http_reader *r)
{
	return r->started && !r->done;
}

const struct http_head *http_reader_head(const struct http_reader *r)
{
	return &r->head;
}

void http_reader_set_max_body(struct http_reader *r, uint64_t max_body)
{
	r->max_body = max_body;
}

const char *http_reader_error(const struct http_reader *r)
{
	return r->error ? r->error : "malformed HTTP";
}

unsigned http_reader_error_status(const struct http_reader *r)
{
	return r->error_status ? r->error_status : 400;
}

static enum http_read_result parser_failed(struct http_reader *r)
{
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	r->dead = true;
	if (!r->error) {
		r->error_status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
		r->error = http_errno_description(e);
	}
	return HTTP_READ_ERROR;
}

enum http_read_result http_reader_feed(struct http_reader *r, const uint8_t *data, size_t len, size_t *used,
                                       struct buf *body)
{
	*used = 0;
	if (r->dead)
		return HTTP_READ_ERROR;
	if (r->head_pending) {
		/* The head and more were parsed by the last call: HEAD was the first event, this is the next. */
		r->head_pending = false;
		if (r->done)
			return HTTP_READ_DONE;
	}
	if (r->done)
		return HTTP_READ_DONE;
	if (len == 0)
		return HTTP_READ_NEED_MORE;
	size_t give = len;
	if (!r->head_done && give > r->limits.max_header_bytes + 1 - r->head_fed)
		give = r->limits.max_header_bytes + 1 - r->head_fed; /* never past the head limit, whatever the bytes */
	r->body = body;
	size_t n = http_parser_execute(&r->parser, &r->settings, (const char *)data, give);
	r->body = NULL;
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->error) {
		r->dead = true;
		return HTTP_READ_ERROR;
	}
	if (e != HPE_OK && e != HPE_PAUSED)
		return parser_failed(r);
	*used = n;
	if (!r->head_done) {
		r->head_fed += n;
		if (r->head_fed > r->limits.max_header_bytes) {
			r->dead = true;
			r->error = "request header fields too large";
			r->error_status = 431;
			return HTTP_READ_ERROR;
		}
	}
	if (r->head_pending)
		return HTTP_READ_HEAD; /* head_pending stays set: the next call reports what followed */
	if (r->done)
		return HTTP_READ_DONE;
	return HTTP_READ_NEED_MORE;
}

enum http_read_result http_reader_eof(struct http_reader *r, struct buf *body)
{
	if (r->dead)
		return HTTP_READ_ERROR;
	if (r->done)
		return HTTP_READ_DONE;
	if (!r->started)
		return HTTP_READ_NEED_MORE;
	r->head_pending = false;
	r->body = body;
	http_parser_execute(&r->parser, &r->settings, NULL, 0);
	r->body = NULL;
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if ((e != HPE_OK && e != HPE_PAUSED) || !r->done) {
		if (e == HPE_OK || e == HPE_PAUSED) {
			r->dead = true;
			r->error = "connection closed in the middle of a message";
			r->error_status = 400;
			return HTTP_READ_ERROR;
		}
		return parser_failed(r);
	}
	return HTTP_READ_DONE;
}

/* ---- header values --------------------------------------------------------- */

bool http_media_type_is(const char *content_type, const char *type)
{
	while (*content_type == ' ' || *content_type == '\t')
		content_type++;
	size_t n = strlen(type);
	if (strncasecmp(content_type, type, n) != 0)
		return false;
	const char *rest = content_type + n;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	return *rest == '\0' || *rest == ';';
}

bool http_cookie_get(const char *cookie_header, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = cookie_header;
	while (*p) {
		while (*p == ' ' || *p == ';' || *p == '\t')
			p++;
		const char *end = strchr(p, ';');
		if (!end)
			end = p + strlen(p);
		if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			const char *v = p + nlen + 1;
			size_t vlen = (size_t)(end - v);
			while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
				vlen--;
			if (vlen >= outlen)
				return false;
			memcpy(out, v, vlen);
			out[vlen] = '\0';
			return true;
		}
		p = end;
	}
	return false;
}

/* q value of one Accept-Encoding element ("gzip;q=0.5"): 1000 = 1.0. */
static int element_q(const char *params, const char *end)
{
	const char *q = params;
	while (q < end) {
		while (q < end && (*q == ';' || *q == ' '))
			q++;
		if (end - q >= 2 && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
			double v = strtod(q + 2, NULL);
			if (v <= 0)
				return 0;
			return v >= 1 ? 1000 : (int)(v * 1000);
		}
		while (q < end && *q != ';')
			q++;
	}
	return 1000;
}

enum http_coding http_accept_choose(const char *accept_encoding)
{
	int q_gzip = -1, q_deflate = -1, q_star = -1;
	const char *p = accept_encoding;
	while (*p) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		const char *tok_end = p;
		while (tok_end < end && *tok_end != ';' && *tok_end != ' ')
			tok_end++;
		size_t tl = (size_t)(tok_end - p);
		int q = element_q(tok_end, end);
		if ((tl == 4 && strncasecmp(p, "gzip", 4) == 0) || (tl == 6 && strncasecmp(p, "x-gzip", 6) == 0))
			q_gzip = q;
		else if (tl == 7 && strncasecmp(p, "deflate", 7) == 0)
			q_deflate = q;
		else if (tl == 1 && *p == '*')
			q_star = q;
		p = end;
	}
	if (q_gzip < 0)
		q_gzip = q_star > 0 ? q_star : 0;
	if (q_deflate < 0)
		q_deflate = q_star > 0 ? q_star : 0;
	if (q_gzip > 0 && q_gzip >= q_deflate)
		return HTTP_CODING_GZIP;
	if (q_deflate > 0)
		return HTTP_CODING_DEFLATE;
	return HTTP_CODING_IDENTITY;
}

int http_coding_parse(const char *content_encoding)
{
	const char *p = content_encoding;
	while (*p == ' ')
		p++;
	size_t n = strlen(p);
	while (n && p[n - 1] == ' ')
		n--;
	if (n == 0 || (n == 8 && strncasecmp(p, "identity", 8) == 0))
		return HTTP_CODING_IDENTITY;
	if ((n == 4 && strncasecmp(p, "gzip", 4) == 0) || (n == 6 && strncasecmp(p, "x-gzip", 6) == 0))
		return HTTP_CODING_GZIP;
	if (n == 7 && strncasecmp(p, "deflate", 7) == 0)
		return HTTP_CODING_DEFLATE;
	return -1;
}

const char *http_coding_name(enum http_coding coding)
{
	switch (coding) {
	case HTTP_CODING_GZIP:
		return "gzip";
	case HTTP_CODING_DEFLATE:
		return "deflate";
	case HTTP_CODING_IDENTITY:
		break;
	}
	return "identity";
}

/* ---- writers --------------------------------------------------------------- */

void http_chunk_append(struct buf *out, const void *data, size_t len)
{
	if (len == 0)
		return;
	buf_printf(out, "%zx\r\n", len);
	buf_append(out, data, len);
	buf_append(out, "\r\n", 2);
}

void http_chunk_last(struct buf *out)
{
	buf_append_str(out, "0\r\n\r\n");
}

const char *http_reason(unsigned status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- Content-Encoding ------------------------------------------------------ */

/* zlib's windowBits: 15 = zlib wrapper (HTTP's "deflate", RFC 9110 8.4.1.2), +16 = gzip. */
static int window_bits(enum http_coding coding)
{
	return coding == HTTP_CODING_GZIP ? 15 + 16 : 15;
}

struct http_zenc {
	z_stream zs;
};

struct http_zenc *http_zenc_new(enum http_coding coding)
{
	if (coding == HTTP_CODING_IDENTITY)
		return NULL;
	struct http_zenc *z = xcalloc(1, sizeof(*z));
	/* memLevel 8, the default window: events are small and repetitive, the
	 * dictionary across them is what saves bytes. */
	if (deflateInit2(&z->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits(coding), 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK) {
		free(z);
		return NULL;
	}
	return z;
}

static int zenc_run(struct http_zenc *z, const void *data, size_t len, int flush, struct buf *out)
{
	z->zs.next_in = (Bytef *)(uintptr_t)data;
	z->zs.avail_in = (uInt)len;
	for (;;) {
		uint8_t *dst = buf_reserve(out, 4096);
		z->zs.next_out = dst;
		z->zs.avail_out = 4096;
		int rc = deflate(&z->zs, flush);
		buf_commit(out, 4096 - z->zs.avail_out);
		if (rc == Z_STREAM_END)
			return 0;
		/* Z_BUF_ERROR only means "no progress possible": all input taken and flushed. */
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
		if (z->zs.avail_in == 0 && z->zs.avail_out != 0)
			return 0;
	}
}

int http_zenc_write(struct http_zenc *z, const void *data, size_t len, bool flush, struct buf *out)
{
	return zenc_run(z, data, len, flush ? Z_SYNC_FLUSH : Z_NO_FLUSH, out);
}

int http_zenc_finish(struct http_zenc *z, struct buf *out)
{
	return zenc_run(z, NULL, 0, Z_FINISH, out);
}

void http_zenc_free(struct http_zenc *z)
{
	if (!z)
		return;
	deflateEnd(&z->zs);
	free(z);
}

struct http_zdec {
	z_stream zs;
	bool ended;
};

struct http_zdec *http_zdec_new(enum http_coding coding)
{
	if (coding == HTTP_CODING_IDENTITY)
		return NULL;
	struct http_zdec *z = xcalloc(1, sizeof(*z));
	/* Some servers send raw DEFLATE for "deflate": +32 accepts zlib and gzip
	 * headers alike, and the zlib wrapper is what RFC 9110 names. */
	if (inflateInit2(&z->zs, 15 + 32) != Z_OK) {
		free(z);
		return NULL;
	}
	return z;
}

int http_zdec_write(struct http_zdec *z, const void *data, size_t len, struct buf *out, size_t limit)
{
	size_t produced = 0;
	z->zs.next_in = (Bytef *)(uintptr_t)data;
	z->zs.avail_in = (uInt)len;
	while (z->zs.avail_in > 0) {
		if (z->ended)
			return -1; /* bytes after the end of the compressed body */
		uint8_t *dst = buf_reserve(out, 4096);
		z->zs.next_out = dst;
		z->zs.avail_out = 4096;
		int rc = inflate(&z->zs, Z_NO_FLUSH);
		size_t got = 4096 - z->zs.avail_out;
		buf_commit(out, got);
		produced += got;
		if (limit && produced > limit)
			return -1;
		if (rc == Z_STREAM_END) {
			z->ended = true;
			continue;
		}
		if (rc != Z_OK && !(rc == Z_BUF_ERROR && got))
			return -1;
	}
	return 0;
}

void http_zdec_free(struct http_zdec *z)
{
	if (!z)
		return;
	inflateEnd(&z->zs);
	free(z);
}
