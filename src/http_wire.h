/*
 * http_wire.h - HTTP/1.1 framing for the HTTPS binding, as pure functions.
 *
 * http_reader wraps Node's http-parser (libhttp-parser 2.9) with the limits
 * the binding needs: it reads one request (or response) at a time from any
 * split of the input, keeps the few headers the binding looks at, appends
 * the de-chunked body to a caller's buffer, and stops after each complete
 * message so that pipelined requests are answered one by one. Everything a
 * peer can get wrong ends in HTTP_READ_ERROR with the status to answer
 * (400, 413, 431) and a static reason. No sockets, no libev, no logging.
 *
 * The rest are writers: chunked encoding, the response head, and
 * Content-Encoding (deflate or gzip) in both directions on top of zlib.
 */
#ifndef PIMAP_HTTP_WIRE_H
#define PIMAP_HTTP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Longest value kept of a header the binding reads (Cookie, Content-Type, ...). */
#define HTTP_MAX_KEPT_VALUE 1024
/* Longest reason phrase kept (responses; for messages). */
#define HTTP_MAX_REASON 80
/* Longest request target kept. */
#define HTTP_MAX_TARGET 1024

struct http_limits {
	size_t max_header_bytes;  /* request line + all header lines (slowloris / header flood) */
	unsigned max_headers;     /* header lines */
	uint64_t max_body;        /* body bytes of one message; 0 = unlimited */
	bool chunked_unlimited;   /* a chunked body is a persistent stream: no max_body */
	bool head_only;           /* responses to CONNECT: the message ends with its head (RFC 9110 9.3.6);
	                           * what follows is the tunnel's, or an error page nobody reads */
};

enum http_reader_kind { HTTP_READER_REQUEST, HTTP_READER_RESPONSE };

enum http_read_result {
	HTTP_READ_NEED_MORE, /* all input consumed; no message boundary reached */
	HTTP_READ_HEAD,      /* the head is complete: http_reader_head() is valid; call feed again for the body */
	HTTP_READ_DONE,      /* the message is complete; http_reader_next() before the next one */
	HTTP_READ_ERROR,     /* http_reader_error() / http_reader_error_status() */
};

enum http_coding { HTTP_CODING_IDENTITY, HTTP_CODING_DEFLATE, HTTP_CODING_GZIP };

/* What the binding needs of a message head. Strings are NUL-terminated and
 * cut at HTTP_MAX_KEPT_VALUE (a longer Cookie than that is no session of ours). */
struct http_head {
	const char *method;        /* requests: "POST", "GET", ... */
	char target[HTTP_MAX_TARGET + 1]; /* requests: the path as sent */
	unsigned status;           /* responses */
	char reason[HTTP_MAX_REASON + 1]; /* responses: the reason phrase, cut, control characters as '?' */
	unsigned http_minor;       /* 1.x */
	char content_type[HTTP_MAX_KEPT_VALUE + 1];
	char cookie[HTTP_MAX_KEPT_VALUE + 1];      /* all Cookie headers joined with "; " */
	char set_cookie[HTTP_MAX_KEPT_VALUE + 1];  /* responses: the first Set-Cookie */
	char accept_encoding[HTTP_MAX_KEPT_VALUE + 1];
	char content_encoding[HTTP_MAX_KEPT_VALUE + 1];
	bool chunked;              /* Transfer-Encoding: chunked */
	bool has_length;           /* Content-Length given */
	uint64_t content_length;
	bool keep_alive;           /* the connection may carry another message */
	bool expect_continue;      /* Expect: 100-continue */
	bool pimap_incomplete;     /* responses: X-PIMAP-Incomplete (replies still to come) */
};

struct http_reader;

struct http_reader *http_reader_new(enum http_reader_kind kind, const struct http_limits *limits);
void http_reader_free(struct http_reader *r);

/*
 * Parse up to len bytes; *used says how many were taken (the rest belong to
 * a later call). Body bytes are appended to body (may be NULL to drop them).
 * Returns at each event: HEAD once per message, then DONE; NEED_MORE when
 * the input ran out first. After DONE, nothing more is read until
 * http_reader_next(). After ERROR the reader is dead.
 */
enum http_read_result http_reader_feed(struct http_reader *r, const uint8_t *data, size_t len, size_t *used,
                                       struct buf *body);
/*
 * The peer closed: a response without a length ends here (DONE); anything
 * else cut short is an ERROR. NEED_MORE if no message had started.
 */
enum http_read_result http_reader_eof(struct http_reader *r, struct buf *body);
/* Ready for the next message on the same connection. */
void http_reader_next(struct http_reader *r);
/* True between the first byte of a message and its end (a timeout then is a slow peer, not an idle one). */
bool http_reader_in_message(const struct http_reader *r);

const struct http_head *http_reader_head(const struct http_reader *r);
/* Lower the body limit for the current message (a mode decided from the head). */
void http_reader_set_max_body(struct http_reader *r, uint64_t max_body);
const char *http_reader_error(const struct http_reader *r);
unsigned http_reader_error_status(const struct http_reader *r); /* 400, 413 or 431 */

/* ---- header values --------------------------------------------------------- */

/* Media type of a Content-Type value, case-insensitive, parameters ignored. */
bool http_media_type_is(const char *content_type, const char *type);
/*
 * The value of cookie `name` in a Cookie header ("a=1; b=2"). Copies it to
 * out (NUL-terminated) and returns true if present and it fits.
 */
bool http_cookie_get(const char *cookie_header, const char *name, char *out, size_t outlen);
/* Preferred response coding from Accept-Encoding: gzip, then deflate, else identity (q=0 honoured). */
enum http_coding http_accept_choose(const char *accept_encoding);
/* Content-Encoding value -> coding; -1 for anything else (more than one coding included). */
int http_coding_parse(const char *content_encoding);
const char *http_coding_name(enum http_coding coding);

/* ---- writers --------------------------------------------------------------- */

/* "<hex>\r\n<data>\r\n"; len 0 writes nothing (the last chunk is http_chunk_last). */
void http_chunk_append(struct buf *out, const void *data, size_t len);
void http_chunk_last(struct buf *out);
/* Reason phrase for the status codes the binding uses ("Unknown" otherwise). */
const char *http_reason(unsigned status);

/*
 * Content-Encoding: a compressor that flushes (Z_SYNC_FLUSH) whenever asked,
 * so a persistent response can be decoded up to the last event sent, and a
 * decompressor for the proxy that takes deflate (zlib) or gzip in any split.
 */
struct http_zenc;
struct http_zenc *http_zenc_new(enum http_coding coding); /* NULL for identity or on failure */
int http_zenc_write(struct http_zenc *z, const void *data, size_t len, bool flush, struct buf *out);
int http_zenc_finish(struct http_zenc *z, struct buf *out); /* end of the body */
void http_zenc_free(struct http_zenc *z);

struct http_zdec;
struct http_zdec *http_zdec_new(enum http_coding coding);
/* Returns 0, or -1 on corrupt input; limit bounds the output of one call (0 = none), -1 past it. */
int http_zdec_write(struct http_zdec *z, const void *data, size_t len, struct buf *out, size_t limit);
void http_zdec_free(struct http_zdec *z);

#endif
