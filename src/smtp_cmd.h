/*
 * smtp_cmd.h - the server side of SMTP as pure functions: an incremental
 * reader of what a client sends (command lines, then DATA with its dot
 * unstuffing and end), and the parser of one command line.
 *
 * The reader is pure: bytes in, one event out, the same events for any
 * split of the input (testable byte by byte and fuzzable). It never keeps
 * more than one command line or one message (bounded by max_message;
 * beyond it the data is counted and dropped, and the message reported too
 * big at its end). CRLF is the only line end: a bare LF ends a command line
 * with an error, and a bare CR or LF inside DATA ends the session (the
 * SMTP smuggling class of attacks depends on servers that accept them).
 */
#ifndef PIMAP_SMTP_CMD_H
#define PIMAP_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* RFC 5321 4.5.3.1.4 allows 512 octets per command line; extension
 * parameters (SIZE=, AUTH=) and AUTH's base64 need more: 2048, as Postfix. */
#define SMTP_MAX_COMMAND_LINE 2048

enum smtp_in_event {
	SMTP_IN_NEED_MORE,     /* all input consumed, nothing complete */
	SMTP_IN_LINE,          /* a command line: smtp_in_line() (without CRLF) */
	SMTP_IN_LINE_TOO_LONG, /* a line over the limit was dropped through its end */
	SMTP_IN_BARE_LF,       /* a command line ended with LF alone (dropped) */
	SMTP_IN_DATA_END,      /* the message is complete: smtp_in_data(), smtp_in_data_too_big() */
	SMTP_IN_DATA_BARE_LF,  /* a bare CR or LF in DATA: the message is refused, the session must end */
};

struct smtp_in;

/* max_message: bytes of one message kept (after dot unstuffing); more is counted and dropped. */
struct smtp_in *smtp_in_new(size_t max_message);
void smtp_in_free(struct smtp_in *in);

/*
 * Consume bytes up to one event (*consumed says how far). After LINE read
 * the line before feeding again. After DATA_BARE_LF the reader accepts no
 * more input. Command mode is the default; smtp_in_begin_data() switches
 * to DATA until its end.
 */
enum smtp_in_event smtp_in_feed(struct smtp_in *in, const uint8_t *data, size_t len, size_t *consumed);
const char *smtp_in_line(const struct smtp_in *in, size_t *len);
void smtp_in_begin_data(struct smtp_in *in);
/* The message after DATA_END: CRLF lines, dots unstuffed, without the final ".". The caller may take
 * its bytes (buf_* on it); it is cleared at the next smtp_in_begin_data. */
struct buf *smtp_in_data(struct smtp_in *in);
bool smtp_in_data_too_big(const struct smtp_in *in);
/* Bytes of the message as sent, kept or not (for logs and the 552 text). */
uint64_t smtp_in_data_size(const struct smtp_in *in);

/* ---- command lines -------------------------------------------------------- */

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_DATA,
	SMTP_VERB_RSET, SMTP_VERB_NOOP, SMTP_VERB_QUIT, SMTP_VERB_VRFY, SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS, SMTP_VERB_AUTH,
	SMTP_VERB_NOT_IMPLEMENTED, /* known but not offered: BDAT, EXPN, ETRN, TURN, ... */
};

/* One parsed command line. Strings point into the caller's line copy (smtp_command_parse writes into it). */
struct smtp_command {
	enum smtp_verb verb;
	const char    *arg;        /* the rest after the verb and one SP ("" if none) */
	/* MAIL and RCPT */
	const char    *path;       /* the address inside <>, "" for <> */
	const char    *params;     /* ESMTP parameters after the path ("" if none) */
};

enum smtp_parse_status {
	SMTP_PARSE_OK,
	SMTP_PARSE_SYNTAX,        /* MAIL/RCPT without FROM:/TO: or without <...> */
	SMTP_PARSE_BAD_ADDRESS,   /* the path is not local@domain (or <> where allowed) */
};

/*
 * Parse one command line in place (line is modified: NULs end the parts).
 * The verb is case-insensitive. "MAIL FROM:<a@b> SIZE=10" and, as most
 * servers accept, "MAIL FROM: <a@b>". Source routes "<@x,@y:a@b>" are
 * dropped. An empty path "<>" is valid for MAIL only.
 */
enum smtp_parse_status smtp_command_parse(char *line, struct smtp_command *cmd);

/*
 * The next "KEY=VALUE" (or "KEY") of an ESMTP parameter list: *pos walks
 * the string. False at the end. key/value are copied (key upper-cased).
 */
bool smtp_param_next(const char *params, size_t *pos, char *key, size_t keylen, char *value, size_t valuelen);

#endif
