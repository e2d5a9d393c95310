/*
 * imap_parse.h - incremental IMAP message parser (commands and responses).
 *
 * A pure function over byte buffers: no sockets, no libev, no logging.
 * The caller feeds whatever bytes it has; the parser consumes up to the end
 * of one complete message (a line plus any literals it announces, through the
 * final CRLF) and reports DONE, or consumes everything and reports NEED_MORE.
 * Feeding a message one byte at a time or all at once gives the same result.
 *
 * Ownership: the parser owns every pointer it hands out (struct imap_msg and
 * the argument tree). They stay valid until imap_parser_reset() or the next
 * imap_parser_feed() call, whichever comes first.
 */
#ifndef PIMAP_IMAP_PARSE_H
#define PIMAP_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults for struct imap_limits; the daemons take theirs from config. */
#define IMAP_DEFAULT_MAX_LINE_LENGTH  (64u * 1024)        /* one line, literals excluded */
#define IMAP_DEFAULT_MAX_LITERAL_SIZE (64u * 1024 * 1024) /* one literal */
#define IMAP_DEFAULT_MAX_LIST_DEPTH   32u                 /* nesting of ( ) */
#define IMAP_DEFAULT_MAX_ARGS         100000u             /* tokens in one message */

struct imap_limits {
	size_t   max_line_length;  /* bytes of one line excluding CRLF and literal data */
	size_t   max_literal_size; /* bytes announced by one {n} / {n+} / ~{n} */
	unsigned max_list_depth;   /* deepest parenthesised list accepted */
	unsigned max_args;         /* total tokens (atoms, strings, lists) in one message */
	size_t   max_message_size; /* raw bytes of one message, literals included; 0 = unlimited
	                              ("message too large", checked at each literal header) */
};

enum imap_parser_mode {
	IMAP_PARSE_COMMANDS,  /* client -> server: "tag SP command ..." */
	IMAP_PARSE_RESPONSES, /* server -> client: "* ...", "tag OK ...", "+ ..." */
};

enum imap_parse_result {
	IMAP_PARSE_DONE,      /* one message complete; *consumed says how far */
	IMAP_PARSE_NEED_MORE, /* all input consumed, message incomplete */
	IMAP_PARSE_ERROR,     /* see imap_parser_error(); parser must be reset */
};

enum imap_arg_type {
	IMAP_ARG_ATOM,    /* includes NIL, numbers, flags, sequence sets, BODY[...] */
	IMAP_ARG_QUOTED,  /* "..." with escapes removed */
	IMAP_ARG_LITERAL, /* {n}, {n+} or ~{n} followed by n bytes */
	IMAP_ARG_LIST,    /* ( ... ) */
};

enum imap_literal_kind {
	IMAP_LITERAL_SYNC,    /* {n}: sender waits for "+" */
	IMAP_LITERAL_NONSYNC, /* {n+}: LITERAL+ / LITERAL- */
	IMAP_LITERAL_BINARY,  /* ~{n}: literal8 (RFC 3516), may contain NUL */
};

struct imap_arg {
	enum imap_arg_type     type;
	const char            *str;        /* ATOM/QUOTED/LITERAL: data, NUL-terminated (literal8 may hold NULs) */
	size_t                 len;        /* ATOM/QUOTED/LITERAL: bytes in str */
	enum imap_literal_kind lit_kind;   /* LITERAL only */
	const struct imap_arg *list;       /* LIST: children */
	size_t                 list_count; /* LIST: number of children */
};

enum imap_msg_kind {
	IMAP_MSG_COMMAND,      /* COMMANDS mode: tag + args (args[0] is the command name) */
	IMAP_MSG_TAGGED,       /* RESPONSES: "tag OK|NO|BAD [code] text" */
	IMAP_MSG_UNTAGGED,     /* RESPONSES: "* ..." (status or data) */
	IMAP_MSG_CONTINUATION, /* RESPONSES: "+ text" (text may be empty) */
	IMAP_MSG_RAW_LINE,     /* after imap_parser_expect_raw_line(): one line verbatim */
};

enum imap_status {
	IMAP_STATUS_NONE,     /* not a status response */
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_BYE,
	IMAP_STATUS_PREAUTH,
};

struct imap_msg {
	enum imap_msg_kind     kind;
	const char            *tag;       /* COMMAND/TAGGED: tag, NUL-terminated; else NULL */
	const struct imap_arg *args;      /* COMMAND: tokens after the tag; UNTAGGED data: tokens after "*" */
	size_t                 nargs;     /* 0 for status responses, continuations and raw lines */
	enum imap_status       status;    /* TAGGED, and UNTAGGED OK/NO/BAD/BYE/PREAUTH */
	const char            *code;      /* status: text inside [ ] without brackets, NUL-terminated; NULL if none */
	size_t                 code_len;
	const char            *text;      /* status resp-text, continuation text, raw line; NUL-terminated, no CRLF */
	size_t                 text_len;
	const uint8_t         *raw;       /* the whole message exactly as received, CRLF and literals included */
	size_t                 raw_len;
};

struct imap_parser;

/* Create a parser; limits are copied. Returns NULL only on allocation failure. */
struct imap_parser *imap_parser_new(enum imap_parser_mode mode, const struct imap_limits *limits);
void imap_parser_free(struct imap_parser *parser);

/*
 * Consume bytes from data[0..len). Sets *consumed to the bytes used (on DONE,
 * the bytes up to and including the message's final CRLF; the caller keeps
 * the rest for the next message). After DONE, read the message with
 * imap_parser_msg() and call imap_parser_reset() before feeding again.
 * After ERROR, *consumed says how far the parser got; call
 * imap_parser_reset() (or imap_parser_skip_line()) before feeding again.
 */
enum imap_parse_result imap_parser_feed(struct imap_parser *parser, const uint8_t *data,
                                        size_t len, size_t *consumed);

/* The message after DONE, or NULL. */
const struct imap_msg *imap_parser_msg(const struct imap_parser *parser);

/* Forget the current message and get ready for the next one. */
void imap_parser_reset(struct imap_parser *parser);

/*
 * Make the next message a single raw line (IMAP_MSG_RAW_LINE): used after IDLE
 * ("DONE") and during AUTHENTICATE (base64 responses, "*" to cancel).
 * The line-length limit still applies. Applies to one message only.
 */
void imap_parser_expect_raw_line(struct imap_parser *parser);

/* Withdraw an imap_parser_expect_raw_line() that no line has used yet. */
void imap_parser_cancel_raw_line(struct imap_parser *parser);

/* Replace the limits (copied); applies from the next byte. Used between messages,
 * e.g. to lift the tighter pre-login limits after a successful login. */
void imap_parser_set_limits(struct imap_parser *parser, const struct imap_limits *limits);

/* After ERROR: a static string saying why ("line too long", "literal too large", ...). */
const char *imap_parser_error(const struct imap_parser *parser);

/*
 * After ERROR: true if the error was found before the end of the current line
 * and no literal data is pending, so that discarding input up to the next LF
 * resynchronises the stream (a syntax error). False for errors that leave the
 * stream position unknowable (a literal larger than the limit whose bytes the
 * peer may send anyway): the caller should close the connection.
 */
bool imap_parser_error_recoverable(const struct imap_parser *parser);

/*
 * After a recoverable ERROR: switch to discarding input through the next LF.
 * Feed then returns NEED_MORE until the LF, and DONE with a RAW_LINE message
 * (text is empty) once it has been skipped; the caller resets as usual.
 * If the discarded line ends in a literal header whose payload the peer sends
 * without waiting for "+" ("{n+}" from a client; any literal from a server,
 * except in status or continuation text), that payload and the rest of its
 * line are discarded too, so literal bytes are never parsed as messages; a
 * payload over max_literal_size makes feed return a fatal ERROR instead.
 */
void imap_parser_skip_line(struct imap_parser *parser);

/*
 * The tag of the message being parsed, once it has been read (also after an
 * ERROR later in the line), so a server can answer "tag BAD ..."; NULL if the
 * tag is not complete or the mode has no tags.
 */
const char *imap_parser_tag(const struct imap_parser *parser);

/*
 * True right after the parser consumed a synchronising literal header
 * "{n}\r\n" (n >= 0) and no literal data yet: a server must now send "+ ...".
 */
bool imap_parser_wants_continuation(const struct imap_parser *parser);

/* Helpers for callers. */
bool imap_arg_is_atom(const struct imap_arg *arg, const char *word); /* case-insensitive */
bool imap_arg_is_string(const struct imap_arg *arg);                 /* ATOM, QUOTED or LITERAL */
const char *imap_status_name(enum imap_status status);

/* A decimal number of an atom (no sign, no leading "+"; overflow refused). */
bool imap_parse_u64(const char *s, size_t len, uint64_t *out);
bool imap_parse_u32(const char *s, size_t len, uint32_t *out);
/* "* n WORD" untagged data (EXISTS, EXPUNGE, RECENT, FETCH): n, if the word matches. */
bool imap_untagged_num(const struct imap_msg *m, const char *word, uint32_t *n);
/* A status response code "NAME value" ([UIDVALIDITY 123]): the value, if the name matches. */
bool imap_code_value(const struct imap_msg *m, const char *name, const char **val, size_t *vlen);

#endif
