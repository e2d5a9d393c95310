/*
 * smtp_reply.h - incremental parser for SMTP server replies (RFC 5321 4.2),
 * the client side of SMTP (smtp_client.c).
 *
 * Pure: bytes in, DONE / NEED_MORE / ERROR out, the same result for any
 * split of the input. A reply is one or more lines "ddd-text" ending with
 * "ddd text" (or a bare "ddd"); every line must carry the same code.
 */
#ifndef PIMAP_SMTP_REPLY_H
#define PIMAP_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers send longer EHLO lines. */
#define SMTP_REPLY_MAX_LINE 4096
/* Lines of one reply (an EHLO reply lists one extension per line). */
#define SMTP_REPLY_MAX_LINES 256

struct smtp_reply {
	int        code;   /* 200..599 */
	struct buf text;   /* the lines' text after "ddd-" / "ddd ", joined with '\n', NUL-terminated */
	size_t     nlines;
};

enum smtp_reply_result {
	SMTP_REPLY_DONE,      /* a whole reply; *consumed says how far */
	SMTP_REPLY_NEED_MORE, /* all input consumed */
	SMTP_REPLY_ERROR,     /* malformed or over a limit: smtp_reply_error(); the connection is unusable */
};

struct smtp_reply_parser;

struct smtp_reply_parser *smtp_reply_parser_new(void);
void smtp_reply_parser_free(struct smtp_reply_parser *p);

/* Consume bytes up to the end of one reply. After DONE read smtp_reply_get(), then reset. */
enum smtp_reply_result smtp_reply_feed(struct smtp_reply_parser *p, const uint8_t *data, size_t len,
                                       size_t *consumed);
const struct smtp_reply *smtp_reply_get(const struct smtp_reply_parser *p);
void smtp_reply_reset(struct smtp_reply_parser *p);
const char *smtp_reply_error(const struct smtp_reply_parser *p);

/*
 * In an EHLO reply: whether the extension keyword is offered (lines after
 * the first, case-insensitive); *params (may be NULL) gets what follows the
 * keyword, "" if nothing.
 */
bool smtp_reply_ehlo_has(const struct smtp_reply *r, const char *keyword, const char **params, size_t *params_len);

#endif
