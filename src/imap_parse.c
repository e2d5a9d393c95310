/*
 * imap_parse.c - incremental IMAP message parser (commands and responses).
 *
 * Every byte of a line goes through a small state machine: a phase for the
 * shape of the line (tag, status word, tokens, free text) and, while in the
 * token phase, a lexer state. So an error is reported at the byte that causes
 * it, before that byte is consumed, and a message split at any point parses
 * exactly like the same message fed at once. Literal payloads bypass the
 * state machine and are copied in bulk, so a 10 MB APPEND costs one memcpy
 * per feed, never a rescan.
 *
 * The bytes of the message go into one growing buffer (raw). Tokens are
 * recorded as offsets into it, because a realloc may move it. The argument
 * tree and its NUL-terminated strings are built once, when the message is
 * complete: nothing handed to the caller can be moved by a later append.
 *
 * max_line_length counts the line bytes of the whole message, all its lines
 * together (CRLFs and literal payloads excluded): a command split into many
 * short lines by "{0}" literals is bounded like one long line. Memory per
 * parser is then raw (line bytes plus literal payloads, each at most
 * max_literal_size), one token record per argument (<= max_args), and at
 * DONE a copy of every string (so a message costs about twice its size while
 * the caller looks at it). Buffers over KEEP_BUFFER_MAX are freed on reset.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

#define IMAP_PARSER_MAGIC 0x494d5050u /* "IMPP" */

/*
 * Buffers larger than this are freed on reset instead of being kept for the
 * next message: a proxy holds thousands of connections, and one 10 MB APPEND
 * must not pin 10 MB for the rest of the session.
 */
#define KEEP_BUFFER_MAX (64u * 1024)

/* First allocation for raw; most commands fit. */
#define RAW_INITIAL 256u

/*
 * Literal sizes above this are refused whatever max_literal_size says, so
 * that offset arithmetic on raw (offset + size + CRLF) cannot overflow.
 */
#define LITERAL_HARD_MAX ((uint64_t)(SIZE_MAX / 4))

/* Shape of the current line. */
enum phase {
	PH_START,        /* no byte of this message seen yet */
	PH_CMD_TAG,      /* COMMANDS: inside the tag */
	PH_RESP_FIRST,   /* RESPONSES: first byte decides "*", "+" or a tag */
	PH_RESP_STAR,    /* RESPONSES: "*" seen, SP must follow */
	PH_RESP_PLUS,    /* RESPONSES: "+" seen */
	PH_RESP_TAG,     /* RESPONSES: inside a tag */
	PH_RESP_STATUS,  /* RESPONSES: the word after a tag, must be OK/NO/BAD */
	PH_ARGS,         /* tokens; lex says where inside a token we are */
	PH_TEXT,         /* free text to the end of the line (status, "+", raw line) */
	PH_SKIP,         /* imap_parser_skip_line(): discarding the rest of the line */
	PH_DONE,         /* message complete, msg valid until reset */
	PH_ERROR,        /* error set; only reset or skip_line leave this */
};

/* Position inside the token phase. */
enum lex {
	LX_START,          /* before a token: SP, ")", CRLF or a token may follow */
	LX_AFTER,          /* right after a token: SP, "(", ")" or CRLF must follow */
	LX_ATOM,           /* inside an atom */
	LX_TILDE,          /* "~" at token start: "{" next makes it a literal8 */
	LX_SECTION,        /* inside "[...]" of an atom: SP and parens belong to it */
	LX_SECTION_QUOTED, /* quoted string inside a section (a "]" there is text) */
	LX_SECTION_ESC,    /* backslash inside a section's quoted string */
	LX_QUOTED,         /* inside "..." */
	LX_QUOTED_ESC,     /* backslash inside "..." */
	LX_LIT_SIZE,       /* after "{": digits */
	LX_LIT_PLUS,       /* after "{n+": "}" must follow */
	LX_LIT_EOL,        /* after "}": CRLF must follow */
	LX_LIT_DATA,       /* literal payload, lit_left bytes to go */
};

/*
 * How the line read so far ends, as far as a literal header is concerned:
 * tracked over every line byte (never literal payload) so that a line ending
 * in "{n}" or "{n+}" where no literal may start can be refused, and so that
 * skip_line() knows whether the peer sends literal bytes after the line.
 */
enum tail {
	TAIL_NONE,    /* not inside "{digits[+]}" */
	TAIL_BRACE,   /* "{" */
	TAIL_DIGITS,  /* "{" digits */
	TAIL_PLUS,    /* "{" digits "+" */
	TAIL_SYNC,    /* "{n}" just ended */
	TAIL_NONSYNC, /* "{n+}" just ended */
};

/* What one byte did. */
enum step {
	S_MORE,  /* byte accepted, message continues */
	S_DONE,  /* byte accepted and it was the message's final LF */
	S_ERR,   /* byte refused; error is set */
};

/* One argument, recorded while lexing; turned into struct imap_arg at DONE. */
struct tok {
	size_t                 off;    /* ATOM: first byte; QUOTED: first byte after '"'; LITERAL: first payload byte */
	size_t                 len;    /* bytes in raw (QUOTED: still escaped) */
	size_t                 nchild; /* LIST: direct children */
	enum imap_arg_type     type;
	enum imap_literal_kind kind;   /* LITERAL only */
};

/* Build-time cursor into one list's block of children. */
struct build_frame {
	struct imap_arg *next; /* next slot to fill */
	size_t           left; /* slots still to fill in this block */
};

struct imap_parser {
	uint32_t              magic;        /* IMAP_PARSER_MAGIC */
	enum imap_parser_mode mode;
	struct imap_limits    lim;          /* copied from imap_parser_new() */

	enum phase            phase;
	enum lex              lex;          /* PH_ARGS only */
	bool                  want_raw;     /* expect_raw_line(): next message is RAW_LINE */
	bool                  cr_pending;   /* last line byte was CR; only LF may follow */
	size_t                line_len;     /* message's line bytes so far, CRLFs and literal payloads excluded */

	uint8_t              *raw;          /* the message as received */
	size_t                raw_len;
	size_t                raw_cap;

	char                 *tag;          /* NUL-terminated copy of the tag once complete */
	size_t                tag_cap;
	size_t                tag_len;      /* tag bytes seen (raw[0..tag_len)) */
	bool                  tag_done;     /* tag's SP consumed: imap_parser_tag() answers */

	char                  word[4];      /* tagged status word so far, lower case */
	size_t                word_len;

	enum imap_msg_kind    kind;
	enum imap_status      status;
	size_t                rest_off;     /* PH_TEXT: offset where the free text may start */
	bool                  untagged_first; /* "* " seen, first token not finished yet */

	struct tok           *toks;         /* arguments in pre-order */
	size_t                ntoks;
	size_t                toks_cap;
	size_t                ntop;         /* top-level arguments */
	size_t                cur_tok;      /* token being lexed */
	size_t               *open;         /* indexes of the open lists, innermost last */
	size_t                depth;        /* open lists */
	size_t                open_cap;
	size_t                max_depth;    /* deepest nesting in this message */
	size_t                section_depth; /* nested "[" inside the current atom */

	uint64_t              lit_size;     /* announced size, saturating */
	bool                  lit_digits;   /* at least one digit seen */
	bool                  lit_nonsync;  /* "+" seen: the peer will not wait for "+" */
	bool                  lit_binary;   /* "~{": literal8, NUL allowed */
	size_t                lit_left;     /* payload bytes still to come */
	size_t                zero_sync_end;/* raw_len right after a sync "{0}\r\n"; 0 if none */

	enum tail             tail;         /* literal-header shape at the end of the line so far */
	uint64_t              tail_num;     /* the n of that header, saturating */

	const char           *error;        /* static string after ERROR */
	bool                  recoverable;  /* skipping to the next LF resynchronises */
	bool                  error_in_text; /* error in free text: a "{n}" there is no literal */
	bool                  skip_plain;   /* PH_SKIP: ignore literal headers (free text) */
	uint64_t              skip_left;    /* PH_SKIP: literal payload bytes still to discard */

	size_t                eol_off;      /* end of the last line's text (before CR/LF) */
	struct imap_msg       msg;          /* valid in PH_DONE */
	struct imap_arg      *args;         /* storage for msg.args and all lists */
	char                 *strings;      /* storage for every string in msg */
};

#define CHECK_PARSER(p) assert((p) != NULL && (p)->magic == IMAP_PARSER_MAGIC)

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
}

/* RFC 3501 atom, loosened the way real peers need: 8-bit bytes (UTF-8
 * mailbox names) and "{", "%", "*", "]", "\" are ordinary atom bytes. */
static bool is_atom_char(uint8_t c)
{
	return c > 0x20 && c != 0x7f && c != '(' && c != ')' && c != '"';
}

/* A tag is an atom without "+", so that "+ ..." is never mistaken for one. */
static bool is_tag_char(uint8_t c)
{
	return is_atom_char(c) && c != '+';
}

static bool is_ctl(uint8_t c)
{
	return c < 0x20 || c == 0x7f;
}

/* Case-insensitive comparison of raw bytes with a lower-case ASCII word. */
static bool word_eq(const uint8_t *s, size_t len, const char *word)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (word[i] == '\0' || lower(s[i]) != (uint8_t)word[i])
			return false;
	return word[i] == '\0';
}

static enum imap_status status_of_word(const uint8_t *s, size_t len, bool tagged)
{
	if (word_eq(s, len, "ok"))
		return IMAP_STATUS_OK;
	if (word_eq(s, len, "no"))
		return IMAP_STATUS_NO;
	if (word_eq(s, len, "bad"))
		return IMAP_STATUS_BAD;
	/* BYE and PREAUTH exist only untagged (RFC 3501 7.1.4, 7.1.5). */
	if (tagged)
		return IMAP_STATUS_NONE;
	if (word_eq(s, len, "bye"))
		return IMAP_STATUS_BYE;
	if (word_eq(s, len, "preauth"))
		return IMAP_STATUS_PREAUTH;
	return IMAP_STATUS_NONE;
}

/* True if word (lower case, len bytes) plus c still starts "ok", "no" or "bad". */
static bool tagged_status_prefix(const char *word, size_t len, uint8_t c)
{
	static const char *const words[] = {"ok", "no", "bad"};
	size_t i;

	c = lower(c);
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i]) > len && memcmp(words[i], word, len) == 0 &&
		    (uint8_t)words[i][len] == c)
			return true;
	return false;
}

static enum step fail(struct imap_parser *p, const char *why, bool recoverable)
{
	p->error = why;
	p->recoverable = recoverable;
	p->error_in_text = p->phase == PH_TEXT || p->phase == PH_RESP_PLUS;
	p->phase = PH_ERROR;
	return S_ERR;
}

/* Advance the literal-header tracker over one accepted line byte. */
static void tail_update(struct imap_parser *p, uint8_t c)
{
	switch (c) {
	case '{':
		p->tail = TAIL_BRACE;
		p->tail_num = 0;
		return;
	case '+':
		p->tail = p->tail == TAIL_DIGITS ? TAIL_PLUS : TAIL_NONE;
		return;
	case '}':
		p->tail = p->tail == TAIL_DIGITS ? TAIL_SYNC : p->tail == TAIL_PLUS ? TAIL_NONSYNC : TAIL_NONE;
		return;
	case '\r':
		return; /* the LF that must follow decides */
	default:
		if (c >= '0' && c <= '9' && (p->tail == TAIL_BRACE || p->tail == TAIL_DIGITS)) {
			p->tail = TAIL_DIGITS;
			if (p->tail_num > (UINT64_MAX - 9) / 10)
				p->tail_num = UINT64_MAX;
			else
				p->tail_num = p->tail_num * 10 + (uint64_t)(c - '0');
			return;
		}
		p->tail = TAIL_NONE;
	}
}

/*
 * True if the peer sends tail_num literal bytes after this line without
 * waiting for "+": a client's "{n+}", and any literal from a server.
 */
static bool tail_sends_literal(const struct imap_parser *p)
{
	return p->tail == TAIL_NONSYNC || (p->tail == TAIL_SYNC && p->mode == IMAP_PARSE_RESPONSES);
}

/*
 * Make room for at least need bytes in raw. hint, if not 0, is where the
 * message is known to go (the end of a literal plus a little): growth stops
 * there instead of doubling past it, so a 64 MB literal allocates 64 MB, not
 * 128. Returns false if memory is short.
 */
static bool raw_reserve(struct imap_parser *p, size_t need, size_t hint)
{
	size_t cap = p->raw_cap ? p->raw_cap : RAW_INITIAL;
	uint8_t *n;

	if (need <= p->raw_cap)
		return true;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (hint >= need && cap > hint)
		cap = hint;
	n = realloc(p->raw, cap);
	if (!n)
		return false;
	p->raw = n;
	p->raw_cap = cap;
	return true;
}

static bool raw_append(struct imap_parser *p, const uint8_t *data, size_t len, size_t hint)
{
	if (len > SIZE_MAX - p->raw_len || !raw_reserve(p, p->raw_len + len, hint))
		return false;
	memcpy(p->raw + p->raw_len, data, len);
	p->raw_len += len;
	return true;
}

/* The tag's SP has arrived: copy the tag out so it survives later errors. */
static bool tag_finish(struct imap_parser *p)
{
	if (p->tag_len + 1 > p->tag_cap) {
		char *n = realloc(p->tag, p->tag_len + 1);
		if (!n)
			return false;
		p->tag = n;
		p->tag_cap = p->tag_len + 1;
	}
	memcpy(p->tag, p->raw, p->tag_len);
	p->tag[p->tag_len] = '\0';
	p->tag_done = true;
	return true;
}

/*
 * Record a new argument starting at raw offset off and count it in its
 * parent. The max_args check can be deferred for the first word of an
 * untagged response, which is not an argument if it turns out to be a status
 * word (see atom_end()).
 */
static enum step tok_new(struct imap_parser *p, enum imap_arg_type type, size_t off, bool defer_limit)
{
	struct tok *t;

	if (!defer_limit && p->ntoks >= p->lim.max_args)
		return fail(p, "too many arguments", true);
	if (p->ntoks == p->toks_cap) {
		size_t cap = p->toks_cap ? p->toks_cap * 2 : 16;
		struct tok *n = realloc(p->toks, cap * sizeof(*n));
		if (!n)
			return fail(p, "out of memory", false);
		p->toks = n;
		p->toks_cap = cap;
	}
	t = &p->toks[p->ntoks];
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->off = off;
	if (p->depth)
		p->toks[p->open[p->depth - 1]].nchild++;
	else
		p->ntop++;
	p->cur_tok = p->ntoks++;
	return S_MORE;
}

static void lit_begin(struct imap_parser *p, bool binary)
{
	p->lit_size = 0;
	p->lit_digits = false;
	p->lit_nonsync = false;
	p->lit_binary = binary;
	p->toks[p->cur_tok].type = IMAP_ARG_LITERAL;
	p->toks[p->cur_tok].kind = binary ? IMAP_LITERAL_BINARY : IMAP_LITERAL_SYNC;
	p->lex = LX_LIT_SIZE;
}

/*
 * The "}" of a literal header. The size is checked here, before the CRLF:
 * for a synchronising literal the peer waits for "+" and sends nothing more,
 * so refusing now and skipping to the LF leaves the stream in step. A
 * non-synchronising one is followed by its payload whatever we say, and so
 * is every literal a server sends (servers never wait for "+"): then the
 * position of the next message is unknowable and the error is fatal.
 */
static enum step lit_header_end(struct imap_parser *p)
{
	if (p->lit_size > p->lim.max_literal_size || p->lit_size > LITERAL_HARD_MAX)
		return fail(p, "literal too large", p->mode == IMAP_PARSE_COMMANDS && !p->lit_nonsync);
	/* Many literals, each under the limit, must not add up without bound. */
	if (p->lim.max_message_size && p->raw_len + p->lit_size > p->lim.max_message_size)
		return fail(p, "message too large", p->mode == IMAP_PARSE_COMMANDS && !p->lit_nonsync);
	if (!p->lit_binary)
		p->toks[p->cur_tok].kind = p->lit_nonsync ? IMAP_LITERAL_NONSYNC : IMAP_LITERAL_SYNC;
	p->lex = LX_LIT_EOL;
	return S_MORE;
}

/* The LF after a literal header: the payload starts after it. */
static enum step lit_start(struct imap_parser *p)
{
	struct tok *t = &p->toks[p->cur_tok];

	t->off = p->raw_len + 1; /* raw_len is where this LF goes */
	t->len = (size_t)p->lit_size;
	p->lit_left = t->len;
	p->lex = t->len ? LX_LIT_DATA : LX_AFTER;
	/* An empty synchronising literal still waits for "+" (RFC 3501 7.5). */
	p->zero_sync_end = !t->len && !p->lit_nonsync ? p->raw_len + 1 : 0;
	return S_MORE;
}

/*
 * An atom ended at raw offset off, terminated by byte term ('\n' for the end
 * of the line). For the first word of an untagged response this is where
 * "* OK ..." is told from "* 3 EXISTS": a status word followed by SP or the
 * line end makes the rest of the line free text (never tokenised, so quotes,
 * brackets or a trailing "{5}" there mean nothing).
 */
static enum step atom_end(struct imap_parser *p, size_t off, uint8_t term)
{
	struct tok *t = &p->toks[p->cur_tok];

	t->len = off - t->off;
	p->lex = LX_AFTER;
	if (p->untagged_first) {
		p->untagged_first = false;
		if (term == ' ' || term == '\n') {
			enum imap_status st = status_of_word(p->raw + t->off, t->len, false);
			if (st != IMAP_STATUS_NONE) {
				p->ntoks = 0;
				p->ntop = 0;
				p->status = st;
				p->rest_off = off;
				p->phase = PH_TEXT;
				return S_MORE;
			}
		}
		if (p->ntoks > p->lim.max_args)
			return fail(p, "too many arguments", true);
	}
	return S_MORE;
}

/* A byte where a token may start (LX_START), or "(" / ")" after a token. */
static enum step token_start(struct imap_parser *p, uint8_t c, size_t off)
{
	/* The command name must be an atom: "tag (x)" or "tag {5}" is garbage,
	 * and refusing it here keeps a literal from being framed for it. */
	bool first_cmd = p->mode == IMAP_PARSE_COMMANDS && p->ntoks == 0;
	enum step r;

	switch (c) {
	case ' ':
		return S_MORE; /* lenient: repeated spaces */
	case '(':
		if (first_cmd)
			return fail(p, "invalid command name", true);
		if (p->depth >= p->lim.max_list_depth)
			return fail(p, "list nesting too deep", true);
		p->untagged_first = false;
		if ((r = tok_new(p, IMAP_ARG_LIST, off, false)) != S_MORE)
			return r;
		if (p->depth == p->open_cap) {
			size_t cap = p->open_cap ? p->open_cap * 2 : 8;
			size_t *n = realloc(p->open, cap * sizeof(*n));
			if (!n)
				return fail(p, "out of memory", false);
			p->open = n;
			p->open_cap = cap;
		}
		p->open[p->depth++] = p->cur_tok;
		if (p->depth > p->max_depth)
			p->max_depth = p->depth;
		p->lex = LX_START;
		return S_MORE;
	case ')':
		if (!p->depth)
			return fail(p, "unexpected ')'", true);
		p->depth--;
		p->lex = LX_AFTER;
		return S_MORE;
	case '"':
		if (first_cmd)
			return fail(p, "invalid command name", true);
		p->untagged_first = false;
		if ((r = tok_new(p, IMAP_ARG_QUOTED, off + 1, false)) != S_MORE)
			return r;
		p->lex = LX_QUOTED;
		return S_MORE;
	case '{':
		if (first_cmd)
			return fail(p, "invalid command name", true);
		p->untagged_first = false;
		if ((r = tok_new(p, IMAP_ARG_LITERAL, off, false)) != S_MORE)
			return r;
		lit_begin(p, false);
		return S_MORE;
	default:
		if (!is_atom_char(c))
			return fail(p, "invalid character", true);
		if ((r = tok_new(p, IMAP_ARG_ATOM, off, p->untagged_first)) != S_MORE)
			return r;
		if (c == '~') {
			p->lex = LX_TILDE;
		} else if (c == '[') {
			p->section_depth = 1;
			p->lex = LX_SECTION;
		} else {
			p->lex = LX_ATOM;
		}
		return S_MORE;
	}
}

/* One line byte in PH_ARGS (never CR, LF or NUL: step() handles those). */
static enum step lex_byte(struct imap_parser *p, uint8_t c, size_t off)
{
	enum step r;

	switch (p->lex) {
	case LX_START:
		return token_start(p, c, off);
	case LX_AFTER:
		if (c == ' ') {
			p->lex = LX_START;
			return S_MORE;
		}
		/* "(" without SP: BODYSTRUCTURE writes multipart parts as ")(" */
		if (c == '(' || c == ')')
			return token_start(p, c, off);
		return fail(p, is_ctl(c) ? "invalid character" : "missing space between arguments", true);
	case LX_TILDE:
		if (c == '{') {
			if (p->mode == IMAP_PARSE_COMMANDS && p->ntoks == 1)
				return fail(p, "invalid command name", true);
			if (p->untagged_first) {
				/* the deferred count: a literal is never a status word */
				p->untagged_first = false;
				if (p->ntoks > p->lim.max_args)
					return fail(p, "too many arguments", true);
			}
			lit_begin(p, true);
			return S_MORE;
		}
		/* the "~" was just the first byte of an atom */
		p->lex = LX_ATOM;
		return lex_byte(p, c, off);
	case LX_ATOM:
		if (c == '[') {
			p->section_depth = 1;
			p->lex = LX_SECTION;
			return S_MORE;
		}
		if (is_atom_char(c))
			return S_MORE;
		if ((r = atom_end(p, off, c)) != S_MORE || p->phase != PH_ARGS)
			return r;
		return lex_byte(p, c, off); /* LX_AFTER judges the terminator */
	case LX_SECTION:
		/* BODY[HEADER.FIELDS (A B)]<0.10> is one atom: inside the brackets
		 * SP and parentheses are section syntax, not list structure. */
		if (c == ']') {
			if (--p->section_depth == 0)
				p->lex = LX_ATOM;
		} else if (c == '[') {
			p->section_depth++;
		} else if (c == '"') {
			p->lex = LX_SECTION_QUOTED;
		}
		return S_MORE;
	case LX_SECTION_QUOTED:
		if (c == '"')
			p->lex = LX_SECTION;
		else if (c == '\\')
			p->lex = LX_SECTION_ESC;
		return S_MORE;
	case LX_SECTION_ESC:
		p->lex = LX_SECTION_QUOTED;
		return S_MORE;
	case LX_QUOTED:
		if (c == '"') {
			p->toks[p->cur_tok].len = off - p->toks[p->cur_tok].off;
			p->lex = LX_AFTER;
		} else if (c == '\\') {
			p->lex = LX_QUOTED_ESC;
		}
		return S_MORE;
	case LX_QUOTED_ESC:
		p->lex = LX_QUOTED;
		return S_MORE;
	case LX_LIT_SIZE:
		if (c >= '0' && c <= '9') {
			/* saturate: the limit check at "}" refuses it anyway */
			if (p->lit_size > (UINT64_MAX - 9) / 10)
				p->lit_size = UINT64_MAX;
			else
				p->lit_size = p->lit_size * 10 + (uint64_t)(c - '0');
			p->lit_digits = true;
			return S_MORE;
		}
		if (p->lit_digits && c == '+') {
			p->lit_nonsync = true;
			p->lex = LX_LIT_PLUS;
			return S_MORE;
		}
		if (p->lit_digits && c == '}')
			return lit_header_end(p);
		return fail(p, "invalid literal header", true);
	case LX_LIT_PLUS:
		if (c == '}')
			return lit_header_end(p);
		return fail(p, "invalid literal header", true);
	case LX_LIT_EOL:
		return fail(p, "missing CRLF after literal header", true);
	case LX_LIT_DATA:
		break;
	}
	assert(!"literal data reached the lexer");
	return fail(p, "internal error", false);
}

/* The LF ending a line in PH_ARGS: the message ends unless a literal follows. */
static enum step lex_eol(struct imap_parser *p, size_t eol)
{
	enum step r;

	switch (p->lex) {
	case LX_TILDE:
	case LX_ATOM:
	case LX_SECTION:
	case LX_SECTION_QUOTED:
	case LX_SECTION_ESC:
		/* "foo{5}" or "BODY[HEADER.FIELDS ({5}": we would not frame a
		 * literal there, but a server or client might. Refuse rather than
		 * disagree about where the next message starts; skip_line() then
		 * discards the payload if the peer sends it anyway. */
		if (p->tail == TAIL_SYNC || p->tail == TAIL_NONSYNC)
			return fail(p, "literal header inside an atom", true);
		/* An unclosed "[" ends with the line: servers send mailbox names
		 * such as foo[bar as atoms, and that must not break the session. */
		if ((r = atom_end(p, eol, '\n')) != S_MORE)
			return r;
		if (p->phase == PH_TEXT)
			return S_DONE; /* "* OK" with no text */
		break;
	case LX_START:
	case LX_AFTER:
		break;
	case LX_QUOTED:
	case LX_QUOTED_ESC:
		return fail(p, "unterminated quoted string", true);
	case LX_LIT_SIZE:
	case LX_LIT_PLUS:
		return fail(p, "invalid literal header", true);
	case LX_LIT_EOL:
		return lit_start(p);
	case LX_LIT_DATA:
		assert(!"literal data reached the lexer");
		return fail(p, "internal error", false);
	}
	if (p->depth)
		return fail(p, "missing ')'", true);
	if (p->ntoks == 0)
		return fail(p, p->mode == IMAP_PARSE_COMMANDS ? "missing command" : "empty untagged response", true);
	return S_DONE;
}

/* An LF outside literal data. raw_len is the LF's offset. */
static enum step line_end(struct imap_parser *p)
{
	size_t eol = p->raw_len - (p->cr_pending ? 1 : 0);
	enum imap_status st;
	enum step r;

	p->cr_pending = false;
	switch (p->phase) {
	case PH_CMD_TAG:
		return fail(p, p->tag_len ? "missing command" : "empty line", true);
	case PH_RESP_FIRST:
		return fail(p, "empty line", true);
	case PH_RESP_STAR:
		return fail(p, "empty untagged response", true);
	case PH_RESP_TAG:
		return fail(p, "missing status", true);
	case PH_RESP_STATUS:
		if (p->word_len == 0)
			return fail(p, "missing status", true);
		st = status_of_word((const uint8_t *)p->word, p->word_len, true);
		if (st == IMAP_STATUS_NONE)
			return fail(p, "invalid status", true);
		p->status = st;
		p->rest_off = eol;
		p->phase = PH_TEXT;
		break;
	case PH_RESP_PLUS:
		p->rest_off = eol;
		p->phase = PH_TEXT;
		break;
	case PH_TEXT:
		break;
	case PH_ARGS:
		if ((r = lex_eol(p, eol)) != S_DONE)
			return r;
		break;
	case PH_START:
	case PH_SKIP:
	case PH_DONE:
	case PH_ERROR:
		assert(!"line_end in a phase without a line");
		return fail(p, "internal error", false);
	}
	p->eol_off = eol;
	return S_DONE;
}

/*
 * One byte outside literal data. raw_len is the offset this byte will have;
 * the caller appends it unless S_ERR comes back (a refused byte is never
 * consumed, so the caller's next feed, or skip_line, starts at it).
 */
static enum step step(struct imap_parser *p, uint8_t c)
{
	size_t off = p->raw_len;

	if (p->cr_pending) {
		if (c != '\n')
			return fail(p, "CR without LF", true);
	} else if (c == '\r') {
		p->cr_pending = true;
		return S_MORE;
	}
	if (c == '\n')
		return line_end(p);
	if (c == '\0')
		return fail(p, "NUL byte", true);
	/* Refuse the first byte over the limit, not the CRLF: a peer streaming
	 * an endless line must not make us buffer it. */
	if (p->line_len >= p->lim.max_line_length)
		return fail(p, "line too long", false);
	p->line_len++;

	switch (p->phase) {
	case PH_CMD_TAG:
	case PH_RESP_TAG:
		if (c == ' ') {
			if (p->tag_len == 0)
				return fail(p, "missing tag", true);
			if (!tag_finish(p))
				return fail(p, "out of memory", false);
			if (p->phase == PH_CMD_TAG) {
				p->phase = PH_ARGS;
				p->lex = LX_START;
			} else {
				p->phase = PH_RESP_STATUS;
			}
			return S_MORE;
		}
		if (!is_tag_char(c))
			return fail(p, "invalid character in tag", true);
		p->tag_len++;
		return S_MORE;
	case PH_RESP_FIRST:
		if (c == '*') {
			p->kind = IMAP_MSG_UNTAGGED;
			p->phase = PH_RESP_STAR;
		} else if (c == '+') {
			p->kind = IMAP_MSG_CONTINUATION;
			p->phase = PH_RESP_PLUS;
		} else if (c == ' ') {
			return fail(p, "missing tag", true);
		} else if (!is_tag_char(c)) {
			return fail(p, "invalid character in tag", true);
		} else {
			p->kind = IMAP_MSG_TAGGED;
			p->tag_len = 1;
			p->phase = PH_RESP_TAG;
		}
		return S_MORE;
	case PH_RESP_STAR:
		if (c != ' ')
			return fail(p, "missing space after '*'", true);
		p->untagged_first = true;
		p->phase = PH_ARGS;
		p->lex = LX_START;
		return S_MORE;
	case PH_RESP_PLUS:
		/* "+ text"; "+text" is wrong but harmless, keep the byte as text */
		p->rest_off = c == ' ' ? off + 1 : off;
		p->phase = PH_TEXT;
		return S_MORE;
	case PH_RESP_STATUS:
		if (c == ' ') {
			enum imap_status st;
			if (p->word_len == 0)
				return S_MORE; /* lenient: repeated spaces after the tag */
			st = status_of_word((const uint8_t *)p->word, p->word_len, true);
			if (st == IMAP_STATUS_NONE)
				return fail(p, "invalid status", true);
			p->status = st;
			p->rest_off = off;
			p->phase = PH_TEXT;
			return S_MORE;
		}
		/* refuse at the first byte that cannot spell OK, NO or BAD */
		if (!tagged_status_prefix(p->word, p->word_len, c))
			return fail(p, "invalid status", true);
		p->word[p->word_len++] = (char)lower(c);
		return S_MORE;
	case PH_TEXT:
		return S_MORE;
	case PH_ARGS:
		return lex_byte(p, c, off);
	case PH_START:
	case PH_SKIP:
	case PH_DONE:
	case PH_ERROR:
		break;
	}
	assert(!"step in a phase without a line");
	return fail(p, "internal error", false);
}

/* First byte of a message: pick the phase from the mode and expect_raw_line(). */
static void begin_message(struct imap_parser *p)
{
	if (p->want_raw) {
		p->want_raw = false;
		p->kind = IMAP_MSG_RAW_LINE;
		p->rest_off = 0;
		p->phase = PH_TEXT;
	} else if (p->mode == IMAP_PARSE_COMMANDS) {
		p->kind = IMAP_MSG_COMMAND;
		p->phase = PH_CMD_TAG;
	} else {
		p->phase = PH_RESP_FIRST;
	}
}

/*
 * Turn the recorded tokens into the caller's tree: every list's children sit
 * in one contiguous block of p->args, handed out by a bump pointer in
 * pre-order, and every string is copied NUL-terminated into p->strings.
 * Returns false if memory is short.
 */
static bool build_msg(struct imap_parser *p)
{
	struct imap_msg *m = &p->msg;
	size_t need = 2, code_s = 0, code_e = 0, text_s = 0, text_e = 0, i;
	bool has_text = p->phase == PH_TEXT, has_code = false;
	struct build_frame *stack = NULL, cur;
	size_t sp = 0, next;
	char *s;

	memset(m, 0, sizeof(*m));
	m->kind = p->kind;
	m->status = p->status;
	m->raw = p->raw;
	m->raw_len = p->raw_len;
	if (p->kind == IMAP_MSG_COMMAND || p->kind == IMAP_MSG_TAGGED)
		m->tag = p->tag;

	if (has_text) {
		text_s = p->rest_off < p->eol_off ? p->rest_off : p->eol_off;
		text_e = p->eol_off;
		if (p->status != IMAP_STATUS_NONE) {
			/* resp-text = ["[" resp-text-code "]" SP] text */
			while (text_s < text_e && p->raw[text_s] == ' ')
				text_s++;
			if (text_s < text_e && p->raw[text_s] == '[') {
				const uint8_t *q = memchr(p->raw + text_s + 1, ']', text_e - text_s - 1);
				if (q) {
					has_code = true;
					code_s = text_s + 1;
					code_e = (size_t)(q - p->raw);
					text_s = code_e + 1;
					if (text_s < text_e && p->raw[text_s] == ' ')
						text_s++;
				}
			}
		}
		need += (code_e - code_s) + (text_e - text_s);
	}
	for (i = 0; i < p->ntoks; i++)
		if (p->toks[i].type != IMAP_ARG_LIST)
			need += p->toks[i].len + 1;

	p->strings = malloc(need);
	if (!p->strings)
		return false;
	s = p->strings;

	if (has_text) {
		if (has_code) {
			memcpy(s, p->raw + code_s, code_e - code_s);
			m->code = s;
			m->code_len = code_e - code_s;
			s += m->code_len;
			*s++ = '\0';
		}
		memcpy(s, p->raw + text_s, text_e - text_s);
		m->text = s;
		m->text_len = text_e - text_s;
		s += m->text_len;
		*s++ = '\0';
	}
	if (p->ntoks == 0)
		return true;

	p->args = calloc(p->ntoks, sizeof(*p->args));
	stack = malloc((p->max_depth + 1) * sizeof(*stack));
	if (!p->args || !stack) {
		free(stack);
		return false;
	}
	cur.next = p->args;
	cur.left = p->ntop;
	next = p->ntop;
	for (i = 0; i < p->ntoks; i++) {
		const struct tok *t = &p->toks[i];
		struct imap_arg *a;

		while (cur.left == 0) {
			assert(sp > 0);
			cur = stack[--sp];
		}
		a = cur.next++;
		cur.left--;
		a->type = t->type;
		if (t->type == IMAP_ARG_LIST) {
			a->list_count = t->nchild;
			if (t->nchild) {
				a->list = p->args + next;
				next += t->nchild;
				assert(sp <= p->max_depth);
				stack[sp++] = cur;
				cur.next = (struct imap_arg *)a->list;
				cur.left = t->nchild;
			}
			continue;
		}
		a->str = s;
		a->lit_kind = t->kind;
		if (t->type == IMAP_ARG_QUOTED) {
			/* \" and \\ are escapes; any other backslash is kept as sent */
			const uint8_t *q = p->raw + t->off, *end = q + t->len;
			char *d = s;
			while (q < end) {
				if (*q == '\\' && q + 1 < end && (q[1] == '"' || q[1] == '\\'))
					q++;
				*d++ = (char)*q++;
			}
			a->len = (size_t)(d - s);
		} else {
			memcpy(s, p->raw + t->off, t->len);
			a->len = t->len;
		}
		s[a->len] = '\0';
		s += a->len + 1;
	}
	assert(next == p->ntoks);
	free(stack);
	m->args = p->args;
	m->nargs = p->ntop;
	return true;
}

/* Drop the message being parsed; keep allocations that are small enough. */
static void clear_message(struct imap_parser *p, bool keep_tag)
{
	free(p->args);
	p->args = NULL;
	free(p->strings);
	p->strings = NULL;
	if (p->raw_cap > KEEP_BUFFER_MAX) {
		free(p->raw);
		p->raw = NULL;
		p->raw_cap = 0;
	}
	if (p->toks_cap * sizeof(*p->toks) > KEEP_BUFFER_MAX) {
		free(p->toks);
		p->toks = NULL;
		p->toks_cap = 0;
	}
	if (p->open_cap * sizeof(*p->open) > KEEP_BUFFER_MAX) {
		free(p->open);
		p->open = NULL;
		p->open_cap = 0;
	}
	if (!keep_tag) {
		if (p->tag_cap > KEEP_BUFFER_MAX) {
			free(p->tag);
			p->tag = NULL;
			p->tag_cap = 0;
		}
		p->tag_done = false;
	}
	p->raw_len = 0;
	p->phase = PH_START;
	p->lex = LX_START;
	p->cr_pending = false;
	p->line_len = 0;
	p->tag_len = 0;
	p->word_len = 0;
	p->kind = IMAP_MSG_COMMAND;
	p->status = IMAP_STATUS_NONE;
	p->rest_off = 0;
	p->untagged_first = false;
	p->ntoks = 0;
	p->ntop = 0;
	p->cur_tok = 0;
	p->depth = 0;
	p->max_depth = 0;
	p->section_depth = 0;
	p->lit_size = 0;
	p->lit_digits = false;
	p->lit_nonsync = false;
	p->lit_binary = false;
	p->lit_left = 0;
	p->zero_sync_end = 0;
	p->tail = TAIL_NONE;
	p->tail_num = 0;
	p->error = NULL;
	p->recoverable = false;
	p->error_in_text = false;
	p->skip_plain = false;
	p->skip_left = 0;
	p->eol_off = 0;
	memset(&p->msg, 0, sizeof(p->msg));
}

/*
 * Create a parser. limits are copied; NULL means the IMAP_DEFAULT_* values.
 * Returns NULL only if memory is short; free with imap_parser_free().
 */
struct imap_parser *imap_parser_new(enum imap_parser_mode mode, const struct imap_limits *limits)
{
	static const struct imap_limits defaults = {
		.max_line_length = IMAP_DEFAULT_MAX_LINE_LENGTH,
		.max_literal_size = IMAP_DEFAULT_MAX_LITERAL_SIZE,
		.max_list_depth = IMAP_DEFAULT_MAX_LIST_DEPTH,
		.max_args = IMAP_DEFAULT_MAX_ARGS,
	};
	struct imap_parser *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->magic = IMAP_PARSER_MAGIC;
	p->mode = mode;
	p->lim = limits ? *limits : defaults;
	clear_message(p, false);
	return p;
}

void imap_parser_free(struct imap_parser *p)
{
	if (!p)
		return;
	CHECK_PARSER(p);
	free(p->args);
	free(p->strings);
	free(p->raw);
	free(p->toks);
	free(p->open);
	free(p->tag);
	p->magic = 0;
	free(p);
}

/*
 * Discarding after skip_line(): nothing is kept, so memory cannot grow. A
 * discarded line ending in a literal header the peer does not wait on is
 * followed by the payload, which is discarded too, and then by the rest of
 * the line: a LITERAL+ client (RFC 7888) has sent the payload before it
 * could see our BAD. Otherwise that payload would be parsed as commands.
 */
static enum imap_parse_result skip_feed(struct imap_parser *p, const uint8_t *data, size_t len,
                                        size_t *consumed)
{
	static const char empty[] = "";
	size_t i = 0;

	while (i < len) {
		uint8_t c;

		if (p->skip_left) {
			size_t n = (uint64_t)(len - i) < p->skip_left ? len - i : (size_t)p->skip_left;
			i += n;
			p->skip_left -= n;
			continue;
		}
		c = data[i];
		if (c != '\n') {
			if (!p->skip_plain)
				tail_update(p, c);
			i++;
			continue;
		}
		if (!p->skip_plain && tail_sends_literal(p)) {
			/* same policy as lit_header_end(): too big to wait out */
			if (p->tail_num > p->lim.max_literal_size || p->tail_num > LITERAL_HARD_MAX) {
				*consumed = i;
				fail(p, "literal too large", false);
				return IMAP_PARSE_ERROR;
			}
			p->skip_left = p->tail_num;
			p->tail = TAIL_NONE;
			i++;
			continue;
		}
		*consumed = i + 1;
		memset(&p->msg, 0, sizeof(p->msg));
		p->msg.kind = IMAP_MSG_RAW_LINE;
		p->msg.text = empty;
		p->msg.raw = (const uint8_t *)empty;
		p->phase = PH_DONE;
		return IMAP_PARSE_DONE;
	}
	*consumed = len;
	return IMAP_PARSE_NEED_MORE;
}

/*
 * Consume bytes up to the end of one message (see imap_parse.h for the
 * contract). Works through the input byte by byte except for literal
 * payloads, which are appended in one piece per feed.
 */
enum imap_parse_result imap_parser_feed(struct imap_parser *p, const uint8_t *data, size_t len,
                                        size_t *consumed)
{
	size_t i = 0;

	CHECK_PARSER(p);
	*consumed = 0;
	switch (p->phase) {
	case PH_DONE:
		return IMAP_PARSE_DONE;
	case PH_ERROR:
		return IMAP_PARSE_ERROR;
	case PH_SKIP:
		return skip_feed(p, data, len, consumed);
	default:
		break;
	}

	while (i < len) {
		enum step r;

		if (p->phase == PH_START)
			begin_message(p);

		if (p->phase == PH_ARGS && p->lex == LX_LIT_DATA) {
			size_t n = len - i < p->lit_left ? len - i : p->lit_left;
			size_t hint = p->raw_len + p->lit_left + RAW_INITIAL;
			const uint8_t *nul = p->lit_binary ? NULL : memchr(data + i, '\0', n);
			size_t take = nul ? (size_t)(nul - (data + i)) : n;

			if (!raw_append(p, data + i, take, hint)) {
				fail(p, "out of memory", false);
				*consumed = i;
				return IMAP_PARSE_ERROR;
			}
			i += take;
			p->lit_left -= take;
			if (nul) {
				/* the peer is mid-literal: no line boundary to resync at */
				fail(p, "NUL byte", false);
				*consumed = i;
				return IMAP_PARSE_ERROR;
			}
			if (p->lit_left == 0)
				p->lex = LX_AFTER;
			continue;
		}

		r = step(p, data[i]);
		if (r == S_ERR) {
			*consumed = i;
			return IMAP_PARSE_ERROR;
		}
		tail_update(p, data[i]);
		if (p->raw_len == p->raw_cap && !raw_reserve(p, p->raw_len + 1, 0)) {
			fail(p, "out of memory", false);
			*consumed = i;
			return IMAP_PARSE_ERROR;
		}
		p->raw[p->raw_len++] = data[i++];
		if (r == S_DONE) {
			*consumed = i;
			if (!build_msg(p)) {
				fail(p, "out of memory", false);
				return IMAP_PARSE_ERROR;
			}
			p->phase = PH_DONE;
			return IMAP_PARSE_DONE;
		}
	}
	*consumed = len;
	return IMAP_PARSE_NEED_MORE;
}

const struct imap_msg *imap_parser_msg(const struct imap_parser *p)
{
	CHECK_PARSER(p);
	return p->phase == PH_DONE ? &p->msg : NULL;
}

void imap_parser_reset(struct imap_parser *p)
{
	CHECK_PARSER(p);
	clear_message(p, false);
}

/* Takes effect at the first byte of the next message, so calling it before or
 * after imap_parser_reset() is the same. */
void imap_parser_expect_raw_line(struct imap_parser *p)
{
	CHECK_PARSER(p);
	p->want_raw = true;
}

const char *imap_parser_error(const struct imap_parser *p)
{
	CHECK_PARSER(p);
	return p->phase == PH_ERROR ? p->error : NULL;
}

bool imap_parser_error_recoverable(const struct imap_parser *p)
{
	CHECK_PARSER(p);
	return p->phase == PH_ERROR && p->recoverable;
}

/*
 * The refused byte was not consumed, so the LF to skip through is at or after
 * the caller's next byte, even when the LF itself was the refused byte. The
 * tag stays readable for the caller's "tag BAD". See skip_feed() for literals
 * announced at the end of the discarded line.
 */
void imap_parser_skip_line(struct imap_parser *p)
{
	enum tail tail;
	uint64_t tail_num;
	bool plain;

	CHECK_PARSER(p);
	/* The line's start is gone, but how it ended so far is kept: after
	 * "tag X foo{5+}" the error comes at the LF, and the payload follows. */
	tail = p->tail;
	tail_num = p->tail_num;
	plain = p->phase == PH_ERROR ? p->error_in_text : p->phase == PH_TEXT;
	clear_message(p, true);
	p->tail = tail;
	p->tail_num = tail_num;
	p->skip_plain = plain;
	p->phase = PH_SKIP;
}

const char *imap_parser_tag(const struct imap_parser *p)
{
	CHECK_PARSER(p);
	return p->tag_done ? p->tag : NULL;
}

/* Only servers answer "+" to a literal, so only COMMANDS mode asks for one. */
bool imap_parser_wants_continuation(const struct imap_parser *p)
{
	CHECK_PARSER(p);
	if (p->mode != IMAP_PARSE_COMMANDS || p->phase != PH_ARGS)
		return false;
	if (p->zero_sync_end && p->raw_len == p->zero_sync_end)
		return true;
	return p->lex == LX_LIT_DATA && !p->lit_nonsync && p->lit_left == p->toks[p->cur_tok].len;
}

void imap_parser_set_limits(struct imap_parser *p, const struct imap_limits *limits)
{
	CHECK_PARSER(p);
	p->lim = *limits;
}

void imap_parser_cancel_raw_line(struct imap_parser *p)
{
	CHECK_PARSER(p);
	p->want_raw = false;
}

bool imap_arg_is_atom(const struct imap_arg *arg, const char *word)
{
	size_t i;

	if (!arg || arg->type != IMAP_ARG_ATOM)
		return false;
	for (i = 0; i < arg->len; i++)
		if (word[i] == '\0' || lower((uint8_t)arg->str[i]) != lower((uint8_t)word[i]))
			return false;
	return word[i] == '\0';
}

bool imap_arg_is_string(const struct imap_arg *arg)
{
	return arg && (arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_QUOTED ||
	               arg->type == IMAP_ARG_LITERAL);
}

const char *imap_status_name(enum imap_status status)
{
	switch (status) {
	case IMAP_STATUS_OK:
		return "OK";
	case IMAP_STATUS_NO:
		return "NO";
	case IMAP_STATUS_BAD:
		return "BAD";
	case IMAP_STATUS_BYE:
		return "BYE";
	case IMAP_STATUS_PREAUTH:
		return "PREAUTH";
	case IMAP_STATUS_NONE:
		break;
	}
	return "NONE";
}

/* ---- helpers for callers: numbers and response shapes ---- */

bool imap_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

bool imap_parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v;
	if (!imap_parse_u64(s, len, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* "* n WORD" untagged data: the number and whether the word matches. */
bool imap_untagged_num(const struct imap_msg *m, const char *word, uint32_t *n)
{
	return m->kind == IMAP_MSG_UNTAGGED && m->status == IMAP_STATUS_NONE && m->nargs >= 2 &&
	       m->args[0].type == IMAP_ARG_ATOM && imap_arg_is_atom(&m->args[1], word) &&
	       imap_parse_u32(m->args[0].str, m->args[0].len, n);
}

/* A response code "NAME value" (e.g. UIDVALIDITY 123). */
bool imap_code_value(const struct imap_msg *m, const char *name, const char **val, size_t *vlen)
{
	size_t n = strlen(name);
	if (!m->code || m->code_len <= n + 1 || strncasecmp(m->code, name, n) != 0 || m->code[n] != ' ')
		return false;
	*val = m->code + n + 1;
	*vlen = m->code_len - n - 1;
	return true;
}
