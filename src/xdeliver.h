/*
 * xdeliver.h - the XDELIVER command of P-IMAP (draft -07 form) and its
 * tagged result, as pure functions: parsing the command the gateway
 * receives, writing the command pimap-proxy sends, writing the result the
 * gateway answers, and reading that result back into an SMTP reply.
 * docs/PROTOCOL.md section 6 describes the same profile in prose.
 *
 *   XDELIVER ( N / (R / F) SP folder SP uidvalidity SP uid SP (Y / N) )
 *            [SP SAVETO=<atom> / SP SAVETO SP astring]
 *            SP ENVELOPE SP ( "(" 1*address ")" )
 *            SP literal
 *
 * address is an RFC 3501 ENVELOPE address (name adl mailbox host). The
 * two-word SAVETO form is pimap's: the IMAP tokenizer cannot read a quoted
 * string glued to "SAVETO=".
 */
#ifndef PIMAP_XDELIVER_H
#define PIMAP_XDELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "imap_parse.h"

/* Recipients of one XDELIVER. Past it: BAD. */
#define XDELIVER_MAX_RECIPIENTS 1000
/* Longest SMTP text carried in a tagged result (longer text is cut). */
#define XDELIVER_MAX_TEXT 512

enum xdeliver_kind {
	XDELIVER_NEW,     /* N: a new message */
	XDELIVER_REPLY,   /* R: a reply to folder/uid */
	XDELIVER_FORWARD, /* F: a forward of folder/uid */
};

struct xdeliver_cmd {
	enum xdeliver_kind kind;
	char          *folder;      /* R/F: the original's mailbox (malloc'd), else NULL */
	uint32_t       uidvalidity; /* R/F */
	uint32_t       uid;         /* R/F */
	bool           reattach;    /* R/F with Y: add the original's attachments */
	char          *saveto;      /* SAVETO folder (malloc'd) or NULL */
	char         **rcpts;       /* envelope recipients "local@domain" (malloc'd), SMTP path syntax */
	size_t         nrcpts;
	const uint8_t *msg;         /* the message literal (borrowed from the parsed command) */
	size_t         msg_len;
};

/*
 * Parse an XDELIVER command (m->args[0] is the command name). On success
 * returns 0 and fills out (free with xdeliver_cmd_free; out->msg points into
 * m). Returns -1 with a reason in err for a syntax error (the caller answers
 * BAD).
 */
int xdeliver_parse(const struct imap_msg *m, struct xdeliver_cmd *out, char *err, size_t errlen);
void xdeliver_cmd_free(struct xdeliver_cmd *cmd);

/*
 * The command text after the tag: "XDELIVER N [SAVETO ...] ENVELOPE (...)
 * {n+}\r\n<msg>\r\n". Recipients are "local@domain" SMTP paths (a quoted
 * local part is unquoted for the ENVELOPE). Returns 0, or -1 if a recipient
 * is not local@domain (out unchanged).
 */
int xdeliver_format(struct buf *out, const struct xdeliver_cmd *cmd);

/* ---- results ------------------------------------------------------------- */

/* One SMTP reply: code, enhanced status code (may be ""), text (lines joined with "; "). */
struct smtp_outcome {
	int  code;
	char enhanced[16];
	char text[XDELIVER_MAX_TEXT + 1];
};

/*
 * Build the outcome from a code and text; the enhanced code is taken from
 * the start of the text when it is there (and matches the code's class).
 * Control characters in text are replaced, and long text is cut.
 */
void smtp_outcome_set(struct smtp_outcome *o, int code, const char *text, size_t len);

/* The gateway's tagged result for an SMTP reply: "OK [SMTP 250 2.0.0] text"
 * (2xx) or "NO [SMTP 550 5.1.1] text". With appenduid (non-NULL, "v u") a
 * success is "OK [APPENDUID v u] 250 2.0.0 text". prefix (may be NULL) goes
 * before the server's text. */
void xdeliver_result_format(struct buf *out, const struct smtp_outcome *o, const char *appenduid,
                            const char *prefix);

/* How the proxy classifies a tagged XDELIVER result. */
enum xdeliver_status {
	XDELIVER_SENT,        /* accepted by the submission server */
	XDELIVER_REJECTED,    /* the submission server's 4xx/5xx: outcome.code says which */
	XDELIVER_UNAVAILABLE, /* nothing sent: the gateway could not complete the relay now; retry */
	XDELIVER_UNKNOWN,     /* the relay broke after the message went out: not retried */
	XDELIVER_REFUSED,     /* the gateway refused the command itself (BAD, NO without SMTP code) */
};

/*
 * Read a tagged XDELIVER result. The SMTP reply the proxy gives its client
 * is in out: the server's own for SENT and REJECTED, a fitting one for the
 * others (see docs/PROTOCOL.md).
 */
enum xdeliver_status xdeliver_result_parse(const struct imap_msg *m, struct smtp_outcome *out);

#endif
