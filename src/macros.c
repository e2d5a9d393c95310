/*
 * macros.c - command macros: loading, client choice, expansion, claims
 * (see macros.h; docs/pimap-macros.5 is the user's description).
 *
 * A macro file is small and read once (and again on SIGHUP), so the loader
 * uses libyaml's document API like cfg.c: every error points at the node
 * that caused it. Commands are checked with the real IMAP parser
 * (imap_parse.c in COMMANDS mode behind a dummy tag), so a macro can never
 * hold text the proxy itself would not parse the same way.
 *
 * Placeholders ("{mailbox}") are not IMAP; before parsing, each one is
 * replaced by a sentinel atom (PH_PREFIX followed by its capture index) that
 * the parser keeps as one atom, and a file is refused if it spells the
 * sentinel prefix itself. A trigger keeps a deep copy of its parsed argument
 * tree; a send command keeps its text cut into segments so that expansion
 * is concatenation.
 *
 * Equality of two commands ("normalised") depends on where an argument
 * stands, because IMAP mixes case-insensitive keywords with case-sensitive
 * strings: see enum role.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "buf.h"
#include "cfg.h"
#include "imap_write.h"
#include "macros.h"

/* Longest client, macro or placeholder name. */
#define MACRO_MAX_NAME 64
/* Distinct placeholders in one trigger. */
#define MACRO_MAX_CAPTURES 16
/* Longest ID field name (RFC 2971: 30 octets) and value glob (1024 octets). */
#define MACRO_MAX_ID_FIELD 30
#define MACRO_MAX_ID_VALUE 1024
/* At most this much of a bad value is quoted back in an error message. */
#define MACRO_ECHO_MAX 48

/*
 * A placeholder becomes this atom plus its capture index while a command is
 * parsed. A file that contains the prefix anywhere is refused, so a sentinel
 * in a parsed template is always a placeholder.
 */
#define PH_PREFIX "PIMAP-MACRO-PLACEHOLDER-"
#define PH_PREFIX_LEN (sizeof(PH_PREFIX) - 1)

/* One piece of a send command: text as written, or a capture to substitute. */
struct send_seg {
	size_t off, len; /* text: bytes [off, off+len) of the template */
	int    cap;      /* -1 for text, else the trigger capture index */
};

struct send_cmd {
	char            *text;  /* as written in the file, placeholders included */
	struct send_seg *segs;
	size_t           nsegs;
};

struct macro {
	char            *name;
	struct imap_arg *pattern;                       /* trigger arguments, deep copy */
	size_t           npattern;
	char            *cap_names[MACRO_MAX_CAPTURES]; /* placeholder names by capture index */
	size_t           ncaps;
	struct send_cmd *send;
	size_t           nsend;
};

struct macro_client {
	char         *name;
	char         *file;        /* the file it came from, for duplicate messages */
	int           line, column; /* of its name */
	char        **id_field;    /* RFC 2971 field names */
	char        **id_glob;     /* fnmatch patterns for their values */
	size_t        nid;
	char        **listen;      /* listener addresses as configured, or "stdio" */
	size_t        nlisten;
	struct macro *macros;
	size_t        nmacros;
	char         *new_mail;    /* new_mail.fetch: items new mail is pushed with, NULL if not given */
};

struct macro_set {
	struct macro_client **clients; /* in load order */
	size_t                nclients;
};

/* ---- small helpers -------------------------------------------------------- */

static void set_msg(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_msg(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!buf || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static char upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (upper(a[i]) != upper(b[i]))
			return false;
	return true;
}

/* Case-insensitive: does the atom equal one of the NULL-terminated words? */
static bool atom_in(const struct imap_arg *a, const char *const *words)
{
	for (; *words; words++)
		if (imap_arg_is_atom(a, *words))
			return true;
	return false;
}

/*
 * At most MACRO_ECHO_MAX bytes of s for a one-line message: control and
 * 8-bit bytes become '?', a cut is marked "...". buf holds MACRO_ECHO_MAX + 4.
 */
#define ECHO_SIZE (MACRO_ECHO_MAX + 4)
static const char *echo(char buf[ECHO_SIZE], const char *s, size_t len)
{
	size_t n = len < MACRO_ECHO_MAX ? len : MACRO_ECHO_MAX;

	for (size_t i = 0; i < n; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) ? '?' : s[i];
	if (n < len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MACRO_MAX_NAME)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* ---- IMAP text ------------------------------------------------------------ */

/*
 * Parse text (one command without tag and CRLF) behind a dummy tag. Returns
 * the parser holding the message in *msg (caller frees it), or NULL with a
 * static reason in *why.
 */
static struct imap_parser *parse_command(const char *text, size_t len, const struct imap_msg **msg,
                                         const char **why)
{
	struct imap_parser *p;
	struct buf line;
	enum imap_parse_result r;
	size_t used = 0;

	if (memchr(text, '\r', len) || memchr(text, '\n', len) || memchr(text, '\0', len)) {
		*why = "a command is one line (no CR, LF or NUL)";
		return NULL;
	}
	p = imap_parser_new(IMAP_PARSE_COMMANDS, NULL);
	if (!p) {
		*why = "out of memory";
		return NULL;
	}
	buf_init(&line, 0);
	buf_append(&line, "x ", 2);
	buf_append(&line, text, len);
	buf_append(&line, "\r\n", 2);
	r = imap_parser_feed(p, buf_head(&line), buf_len(&line), &used);
	if (r == IMAP_PARSE_DONE && used == buf_len(&line)) {
		buf_free(&line);
		*msg = imap_parser_msg(p);
		return p;
	}
	if (r == IMAP_PARSE_NEED_MORE)
		*why = "incomplete command (literals are not allowed)";
	else if (r == IMAP_PARSE_ERROR)
		*why = imap_parser_error(p);
	else
		*why = "more than one command";
	buf_free(&line);
	imap_parser_free(p);
	return NULL;
}

static bool has_literal(const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].type == IMAP_ARG_LITERAL)
			return true;
		if (a[i].type == IMAP_ARG_LIST && has_literal(a[i].list, a[i].list_count))
			return true;
	}
	return false;
}

/* Deep copy of an argument tree; strings NUL-terminated. Free with args_free. */
static struct imap_arg *args_dup(const struct imap_arg *src, size_t n)
{
	struct imap_arg *dst;

	if (n == 0)
		return NULL;
	dst = xcalloc(n, sizeof(*dst));
	for (size_t i = 0; i < n; i++) {
		dst[i] = src[i];
		if (src[i].type == IMAP_ARG_LIST) {
			dst[i].str = NULL;
			dst[i].len = 0;
			dst[i].list = args_dup(src[i].list, src[i].list_count);
		} else {
			char *s = xmalloc(src[i].len + 1);

			memcpy(s, src[i].str, src[i].len);
			s[src[i].len] = '\0';
			dst[i].str = s;
			dst[i].list = NULL;
			dst[i].list_count = 0;
		}
	}
	return dst;
}

static void args_free(struct imap_arg *a, size_t n)
{
	if (!a)
		return;
	for (size_t i = 0; i < n; i++) {
		if (a[i].type == IMAP_ARG_LIST)
			args_free((struct imap_arg *)(uintptr_t)a[i].list, a[i].list_count);
		else
			free((char *)(uintptr_t)a[i].str);
	}
	free(a);
}

/* Capture index of a sentinel atom in a parsed template, or -1. */
static int capture_index(const struct imap_arg *a)
{
	uint32_t idx;

	if (a->type != IMAP_ARG_ATOM || a->len <= PH_PREFIX_LEN || strncmp(a->str, PH_PREFIX, PH_PREFIX_LEN) != 0)
		return -1;
	if (!imap_parse_u32(a->str + PH_PREFIX_LEN, a->len - PH_PREFIX_LEN, &idx) || idx >= MACRO_MAX_CAPTURES)
		return -1;
	return (int)idx;
}

/* Index of the command name: 1 after "UID", else 0. */
static size_t name_index(const struct imap_arg *args, size_t nargs)
{
	return nargs >= 2 && imap_arg_is_atom(&args[0], "UID") ? 1 : 0;
}

/* ---- sequence sets ----------------------------------------------------------- */

/* One seq-number: nz-number or "*" (star set, *v = 0). Advances *pos. */
static bool seq_number(const char *s, size_t len, size_t *pos, uint32_t *v, bool *star)
{
	size_t i = *pos;
	uint64_t n = 0;

	if (i < len && s[i] == '*') {
		*star = true;
		*v = 0;
		*pos = i + 1;
		return true;
	}
	if (i >= len || s[i] < '1' || s[i] > '9')
		return false;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		n = n * 10 + (uint64_t)(s[i] - '0');
		if (n > UINT32_MAX)
			return false;
		i++;
	}
	*star = false;
	*v = (uint32_t)n;
	*pos = i;
	return true;
}

struct seqset {
	struct uidset set;      /* explicit members */
	bool          star;     /* one range involves "*" */
	uint32_t      star_from; /* its other end, 0 for "*" alone */
};

/*
 * Parse an IMAP sequence-set. With out == NULL only the syntax is checked.
 * Otherwise explicit members go into out->set (at most MACRO_MAX_CLAIM_SET)
 * and the one range involving "*" into star/star_from; a second star range
 * that differs from the first is refused (never claimed).
 */
static bool parse_seqset(const char *s, size_t len, struct seqset *out)
{
	struct buf plain;
	size_t pos = 0;
	uint64_t members = 0;
	bool ok = false, first = true;

	buf_init(&plain, 0);
	if (len == 0)
		goto done;
	for (;;) {
		uint32_t a, b;
		bool sa, sb;
		size_t start = pos;

		if (!seq_number(s, len, &pos, &a, &sa))
			goto done;
		b = a;
		sb = sa;
		if (pos < len && s[pos] == ':') {
			pos++;
			if (!seq_number(s, len, &pos, &b, &sb))
				goto done;
		}
		if (pos < len && s[pos] != ',')
			goto done;
		if (out && (sa || sb)) {
			uint32_t from = sa && sb ? 0 : (sa ? b : a); /* "*:*" is "*" */

			if (out->star && out->star_from != from)
				goto done; /* two different star ranges: too clever to claim */
			out->star = true;
			out->star_from = from;
		} else if (out) {
			uint32_t lo = a < b ? a : b, hi = a < b ? b : a;

			members += (uint64_t)(hi - lo) + 1;
			if (members > MACRO_MAX_CLAIM_SET)
				goto done;
			if (!first)
				buf_append(&plain, ",", 1);
			buf_append(&plain, s + start, pos - start);
			first = false;
		}
		if (pos == len)
			break;
		pos++; /* ',' */
	}
	ok = true;
	/* uidset_parse sorts and merges ranges in one pass: no quadratic inserts. */
	if (out && buf_len(&plain) &&
	    uidset_parse(&out->set, (const char *)buf_head(&plain), buf_len(&plain), NULL, 0) < 0)
		ok = false;
done:
	buf_free(&plain);
	return ok;
}

/* ---- read-only commands -------------------------------------------------------- */

static const char *const fetch_plain_items[] = {
	"FLAGS", "UID", "INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.HEADER",
	"RFC822.SIZE", "MODSEQ", NULL,
};
/* RFC 3501 fetch macros: read-only, but only valid alone (not in a list). */
static const char *const fetch_macro_items[] = {"ALL", "FAST", "FULL", NULL};

/* "[...]" then optionally "<n.m>": the rest of a sectioned fetch item from s[0] == '['. */
static bool section_ok(const char *s, size_t len, bool partial_allowed)
{
	size_t i = 1, depth = 1;
	bool quoted = false;

	for (; i < len && depth; i++) {
		if (quoted) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				quoted = false;
		} else if (s[i] == '"') {
			quoted = true;
		} else if (s[i] == '[') {
			depth++;
		} else if (s[i] == ']') {
			depth--;
		}
	}
	if (depth)
		return false;
	if (i == len)
		return true;
	if (!partial_allowed || s[i] != '<')
		return false;
	/* "<" number "." nz-number ">" */
	i++;
	if (i >= len || s[i] < '0' || s[i] > '9')
		return false;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i >= len || s[i] != '.')
		return false;
	i++;
	if (i >= len || s[i] < '1' || s[i] > '9')
		return false;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	return i + 1 == len && s[i] == '>';
}

/* NULL if the fetch item never sets \Seen, else why (in buf). */
static const char *check_fetch_item(const struct imap_arg *it, bool templ, bool alone, char *buf, size_t len)
{
	char e[ECHO_SIZE];
	const char *bracket;
	size_t nlen;

	if (it->type != IMAP_ARG_ATOM) {
		set_msg(buf, len, "FETCH items are atoms, not %s", it->type == IMAP_ARG_LIST ? "lists" : "strings");
		return buf;
	}
	if (templ && capture_index(it) >= 0) {
		set_msg(buf, len, "a placeholder cannot stand for a FETCH item");
		return buf;
	}
	bracket = memchr(it->str, '[', it->len);
	nlen = bracket ? (size_t)(bracket - it->str) : it->len;
	if (!bracket) {
		if (atom_in(it, fetch_plain_items) || (alone && atom_in(it, fetch_macro_items)))
			return NULL;
		if (imap_arg_is_atom(it, "RFC822"))
			set_msg(buf, len, "FETCH item RFC822 sets \\Seen (use BODY.PEEK[])");
		else if (imap_arg_is_atom(it, "RFC822.TEXT"))
			set_msg(buf, len, "FETCH item RFC822.TEXT sets \\Seen (use BODY.PEEK[TEXT])");
		else
			set_msg(buf, len, "unknown or unsupported FETCH item %s", echo(e, it->str, it->len));
		return buf;
	}
	if (ieq(it->str, nlen, "BODY", 4) || ieq(it->str, nlen, "BINARY", 6)) {
		set_msg(buf, len, "FETCH item %s sets \\Seen (use %.*s.PEEK[...])", echo(e, it->str, it->len),
		        (int)nlen, it->str);
		return buf;
	}
	if (ieq(it->str, nlen, "BODY.PEEK", 9) || ieq(it->str, nlen, "BINARY.PEEK", 11) ||
	    ieq(it->str, nlen, "BINARY.SIZE", 11)) {
		if (section_ok(bracket, it->len - nlen, !ieq(it->str, nlen, "BINARY.SIZE", 11)))
			return NULL;
		set_msg(buf, len, "bad section in FETCH item %s", echo(e, it->str, it->len));
		return buf;
	}
	set_msg(buf, len, "unknown or unsupported FETCH item %s", echo(e, it->str, it->len));
	return buf;
}

/* FETCH arguments after the name: set, items, optional (modifiers). */
static const char *check_fetch(const struct imap_arg *a, size_t n, bool uid, bool templ, char *buf, size_t len)
{
	const char *why;

	if (n < 2 || n > 3) {
		set_msg(buf, len, "FETCH takes a sequence set, items and optional modifiers");
		return buf;
	}
	if (a[0].type != IMAP_ARG_ATOM ||
	    !((templ && capture_index(&a[0]) >= 0) || parse_seqset(a[0].str, a[0].len, NULL))) {
		set_msg(buf, len, "FETCH needs a sequence set first");
		return buf;
	}
	if (a[1].type == IMAP_ARG_LIST) {
		if (a[1].list_count == 0) {
			set_msg(buf, len, "empty FETCH item list");
			return buf;
		}
		for (size_t i = 0; i < a[1].list_count; i++)
			if ((why = check_fetch_item(&a[1].list[i], templ, false, buf, len)) != NULL)
				return why;
	} else if ((why = check_fetch_item(&a[1], templ, true, buf, len)) != NULL) {
		return why;
	}
	if (n == 3) {
		const struct imap_arg *m = &a[2];

		if (m->type != IMAP_ARG_LIST) {
			set_msg(buf, len, "FETCH modifiers are a parenthesised list");
			return buf;
		}
		for (size_t i = 0; i < m->list_count; i++) {
			const struct imap_arg *x = &m->list[i];
			uint64_t v;

			if (imap_arg_is_atom(x, "CHANGEDSINCE") && i + 1 < m->list_count &&
			    m->list[i + 1].type == IMAP_ARG_ATOM &&
			    imap_parse_u64(m->list[i + 1].str, m->list[i + 1].len, &v)) {
				i++;
			} else if (!(uid && imap_arg_is_atom(x, "VANISHED"))) {
				set_msg(buf, len, "unsupported FETCH modifier");
				return buf;
			}
		}
	}
	return NULL;
}

/* SEARCH arguments after the name: [RETURN (options)] keys. */
static const char *check_search(const struct imap_arg *a, size_t n, char *buf, size_t len)
{
	static const char *const plain_opts[] = {"MIN", "MAX", "ALL", "COUNT", NULL};
	char e[ECHO_SIZE];
	size_t i = 0;

	if (n >= 1 && imap_arg_is_atom(&a[0], "RETURN")) {
		if (n < 2 || a[1].type != IMAP_ARG_LIST) {
			set_msg(buf, len, "SEARCH RETURN needs a list of options");
			return buf;
		}
		for (size_t j = 0; j < a[1].list_count; j++) {
			const struct imap_arg *o = &a[1].list[j];

			if (atom_in(o, plain_opts))
				continue;
			if (imap_arg_is_atom(o, "PARTIAL") && j + 1 < a[1].list_count &&
			    a[1].list[j + 1].type == IMAP_ARG_ATOM) {
				j++;
				continue;
			}
			/* SAVE replaces the session's saved result ($); UPDATE and
			 * CONTEXT start server-side notifications. */
			set_msg(buf, len, "SEARCH RETURN option %s is not read-only or not supported",
			        o->type == IMAP_ARG_LIST ? "(...)" : echo(e, o->str, o->len));
			return buf;
		}
		i = 2;
	}
	if (i >= n) {
		set_msg(buf, len, "SEARCH needs search keys");
		return buf;
	}
	return NULL;
}

#define READ_ONLY_LIST "FETCH, SEARCH, STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT, GETQUOTA, MYRIGHTS, GETMETADATA"

/*
 * NULL if the command (args[0] is the name) may be prefetched, else why not
 * (in buf). templ: a parsed macro template, where sentinel atoms stand for
 * placeholders (accepted as a sequence set or a string, never as a FETCH item).
 */
static const char *read_only_problem(const struct imap_arg *args, size_t nargs, bool templ, char *buf, size_t len)
{
	char e[ECHO_SIZE];
	size_t b, n;
	const struct imap_arg *name, *a;

	if (nargs == 0 || args[0].type != IMAP_ARG_ATOM) {
		set_msg(buf, len, "missing command name");
		return buf;
	}
	if (has_literal(args, nargs)) {
		set_msg(buf, len, "literals are not allowed");
		return buf;
	}
	b = name_index(args, nargs);
	name = &args[b];
	a = args + b + 1;
	n = nargs - b - 1;
	if (name->type != IMAP_ARG_ATOM || (templ && capture_index(name) >= 0)) {
		set_msg(buf, len, "missing command name");
		return buf;
	}
	if (b == 1) {
		if (imap_arg_is_atom(name, "FETCH"))
			return check_fetch(a, n, true, templ, buf, len);
		if (imap_arg_is_atom(name, "SEARCH"))
			return check_search(a, n, buf, len);
		set_msg(buf, len, "UID %s is not read-only (allowed: UID FETCH, UID SEARCH)", echo(e, name->str, name->len));
		return buf;
	}
	if (imap_arg_is_atom(name, "UID")) {
		set_msg(buf, len, "UID needs a command after it");
		return buf;
	}
	if (imap_arg_is_atom(name, "FETCH"))
		return check_fetch(a, n, false, templ, buf, len);
	if (imap_arg_is_atom(name, "SEARCH"))
		return check_search(a, n, buf, len);
	if (imap_arg_is_atom(name, "STATUS")) {
		if (n != 2 || a[0].type == IMAP_ARG_LIST || a[1].type != IMAP_ARG_LIST) {
			set_msg(buf, len, "STATUS takes a mailbox and a list of items");
			return buf;
		}
		return NULL;
	}
	if (imap_arg_is_atom(name, "LIST") || imap_arg_is_atom(name, "GETMETADATA")) {
		if (n < 2) {
			set_msg(buf, len, "%s needs at least two arguments", imap_arg_is_atom(name, "LIST") ? "LIST" : "GETMETADATA");
			return buf;
		}
		return NULL;
	}
	if (imap_arg_is_atom(name, "LSUB")) {
		if (n != 2) {
			set_msg(buf, len, "LSUB takes a reference and a pattern");
			return buf;
		}
		return NULL;
	}
	if (imap_arg_is_atom(name, "NAMESPACE")) {
		if (n != 0) {
			set_msg(buf, len, "NAMESPACE takes no arguments");
			return buf;
		}
		return NULL;
	}
	if (imap_arg_is_atom(name, "GETQUOTAROOT") || imap_arg_is_atom(name, "GETQUOTA") ||
	    imap_arg_is_atom(name, "MYRIGHTS")) {
		if (n != 1 || a[0].type == IMAP_ARG_LIST) {
			set_msg(buf, len, "%s takes one argument", echo(e, name->str, name->len));
			return buf;
		}
		return NULL;
	}
	set_msg(buf, len, "%s is not read-only (allowed: " READ_ONLY_LIST ")", echo(e, name->str, name->len));
	return buf;
}

bool macro_command_is_read_only(const struct imap_msg *cmd)
{
	char why[256];

	if (!cmd || cmd->kind != IMAP_MSG_COMMAND)
		return false;
	return read_only_problem(cmd->args, cmd->nargs, false, why, sizeof(why)) == NULL;
}

/* ---- normalised comparison ------------------------------------------------------ */

/*
 * How an argument compares, by where it stands in its command:
 *   KEYWORD     atoms case-insensitive (command names, flags, search keys,
 *               sequence sets, status items); quoted strings byte for byte;
 *               an atom never equals a string;
 *   STRING      astring: atom, quoted or literal alike, byte for byte
 *               (a LIST reference, an annotation entry, a quota root);
 *   MAILBOX     like STRING, but "INBOX" in any case is INBOX (RFC 3501);
 *   FETCH_ITEMS the item list of FETCH: "X" is "(X)" (not for ALL/FAST/FULL);
 *   FETCH_ITEM  one item: case-insensitive outside [ ], exact inside, since
 *               the server echoes the section text back.
 */
enum role { ROLE_KEYWORD, ROLE_STRING, ROLE_MAILBOX, ROLE_FETCH_ITEMS, ROLE_FETCH_ITEM };

/* Role of top-level argument i of a command (args[0] is the name). */
static enum role arg_role(const struct imap_arg *args, size_t nargs, size_t i)
{
	static const char *const mailbox_first[] = {
		"SELECT", "EXAMINE", "STATUS", "GETQUOTAROOT", "MYRIGHTS", "CREATE", "DELETE",
		"SUBSCRIBE", "UNSUBSCRIBE", "GETACL", "LISTRIGHTS", "SETACL", "DELETEACL", "APPEND", NULL,
	};
	size_t b = name_index(args, nargs), rel, opt;
	const struct imap_arg *name = &args[b];

	if (i <= b)
		return ROLE_KEYWORD;
	rel = i - b;
	if (imap_arg_is_atom(name, "FETCH"))
		return rel == 2 ? ROLE_FETCH_ITEMS : ROLE_KEYWORD;
	if (b == 1)
		return ROLE_KEYWORD; /* UID SEARCH, UID STORE, ... */
	if (atom_in(name, mailbox_first)) {
		if (rel == 1)
			return ROLE_MAILBOX;
		if (rel == 2 && (imap_arg_is_atom(name, "SETACL") || imap_arg_is_atom(name, "DELETEACL") ||
		                 imap_arg_is_atom(name, "LISTRIGHTS")))
			return ROLE_STRING; /* identifier */
		return ROLE_KEYWORD;
	}
	if (imap_arg_is_atom(name, "RENAME"))
		return rel <= 2 ? ROLE_MAILBOX : ROLE_KEYWORD;
	if (imap_arg_is_atom(name, "COPY") || imap_arg_is_atom(name, "MOVE"))
		return rel == 2 ? ROLE_MAILBOX : ROLE_KEYWORD;
	if (imap_arg_is_atom(name, "LIST") || imap_arg_is_atom(name, "LSUB")) {
		/* LIST [(selection options)] reference pattern(s) [RETURN (...)] */
		opt = imap_arg_is_atom(name, "LIST") && nargs > b + 1 && args[b + 1].type == IMAP_ARG_LIST ? 1 : 0;
		if (rel == 1 + opt)
			return ROLE_STRING;
		if (rel == 2 + opt)
			return ROLE_MAILBOX;
		return ROLE_KEYWORD;
	}
	if (imap_arg_is_atom(name, "GETQUOTA"))
		return rel == 1 ? ROLE_STRING : ROLE_KEYWORD;
	if (imap_arg_is_atom(name, "GETMETADATA")) {
		/* GETMETADATA [(options)] mailbox entry | (entries) */
		opt = nargs > b + 1 && args[b + 1].type == IMAP_ARG_LIST ? 1 : 0;
		if (rel == 1 + opt)
			return ROLE_MAILBOX;
		return rel > 1 + opt ? ROLE_STRING : ROLE_KEYWORD;
	}
	return ROLE_KEYWORD;
}

/* One fetch item: case-insensitive outside brackets, exact inside. */
static bool fetch_item_eq(const struct imap_arg *a, const struct imap_arg *b)
{
	size_t depth = 0;

	if (a->type != IMAP_ARG_ATOM || b->type != IMAP_ARG_ATOM || a->len != b->len)
		return false;
	for (size_t i = 0; i < a->len; i++) {
		char x = a->str[i], y = b->str[i];

		if (depth ? x != y : upper(x) != upper(y))
			return false;
		if (x == '[')
			depth++;
		else if (x == ']' && depth)
			depth--;
	}
	return true;
}

static bool scalar_eq(const struct imap_arg *a, const struct imap_arg *b, enum role role)
{
	switch (role) {
	case ROLE_KEYWORD:
		if ((a->type == IMAP_ARG_ATOM) != (b->type == IMAP_ARG_ATOM))
			return false;
		if (a->type == IMAP_ARG_ATOM)
			return ieq(a->str, a->len, b->str, b->len);
		return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
	case ROLE_MAILBOX:
		if (ieq(a->str, a->len, "INBOX", 5) && ieq(b->str, b->len, "INBOX", 5))
			return true;
		/* fall through */
	case ROLE_STRING:
		return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
	case ROLE_FETCH_ITEMS:
	case ROLE_FETCH_ITEM:
		return fetch_item_eq(a, b);
	}
	return false;
}

/*
 * Does pattern argument p match client argument c in this role? With caps,
 * sentinel atoms in p capture one non-list argument of c into caps[index];
 * without, this is plain normalised equality.
 */
static bool match_arg(const struct imap_arg *p, const struct imap_arg *c, enum role role,
                      const struct imap_arg **caps)
{
	int idx = caps ? capture_index(p) : -1;

	if (idx >= 0) {
		if (c->type == IMAP_ARG_LIST || (c->type == IMAP_ARG_LITERAL && c->lit_kind == IMAP_LITERAL_BINARY))
			return false;
		caps[idx] = c;
		return true;
	}
	if (role == ROLE_FETCH_ITEMS) {
		/* "FLAGS" asks for what "(FLAGS)" asks for; ALL/FAST/FULL are never in a list */
		if (p->type == IMAP_ARG_LIST && p->list_count == 1 && c->type == IMAP_ARG_ATOM &&
		    !atom_in(c, fetch_macro_items))
			p = &p->list[0];
		else if (c->type == IMAP_ARG_LIST && c->list_count == 1 && p->type == IMAP_ARG_ATOM &&
		         !atom_in(p, fetch_macro_items))
			c = &c->list[0];
		role = ROLE_FETCH_ITEM;
	}
	if (p->type == IMAP_ARG_LIST || c->type == IMAP_ARG_LIST) {
		if (p->type != c->type || p->list_count != c->list_count)
			return false;
		for (size_t i = 0; i < p->list_count; i++)
			if (!match_arg(&p->list[i], &c->list[i], role, caps))
				return false;
		return true;
	}
	return scalar_eq(p, c, role);
}

/* Whole commands: same number of arguments, each matching in its role (roles from c). */
static bool match_command(const struct imap_arg *p, size_t np, const struct imap_arg *c, size_t nc,
                          const struct imap_arg **caps)
{
	if (np != nc || nc == 0)
		return false;
	for (size_t i = 0; i < nc; i++)
		if (!match_arg(&p[i], &c[i], arg_role(c, nc, i), caps))
			return false;
	return true;
}

/* ---- placeholders ------------------------------------------------------------------- */

struct placeholder {
	size_t off, len;   /* "{name}" in the text, braces included */
	char   name[MACRO_MAX_NAME + 1];
};

static bool name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c)
{
	return name_start(c) || (c >= '0' && c <= '9') || c == '-';
}

/*
 * Find the {name} placeholders of a command text: outside quoted strings and
 * [sections], each a whole argument. Returns the count (up to max), or -1
 * with why set.
 */
static int find_placeholders(const char *s, size_t len, struct placeholder *ph, size_t max, char *why, size_t whylen)
{
	size_t i = 0, n = 0, depth = 0;
	bool quoted = false;

	for (; i < len; i++) {
		char c = s[i];

		if (quoted) {
			if (c == '\\')
				i++;
			else if (c == '"')
				quoted = false;
			continue;
		}
		if (c == '"') {
			quoted = true;
		} else if (c == '[') {
			depth++;
		} else if (c == ']' && depth) {
			depth--;
		} else if (c == '{' && !depth && i + 1 < len && name_start(s[i + 1])) {
			size_t j = i + 1, nlen;

			while (j < len && name_char(s[j]))
				j++;
			nlen = j - i - 1;
			if (j >= len || s[j] != '}' || nlen > MACRO_MAX_NAME) {
				set_msg(why, whylen, "bad placeholder at offset %zu: {name} with letters, digits, '_' and '-'", i);
				return -1;
			}
			if ((i > 0 && s[i - 1] != ' ' && s[i - 1] != '(') ||
			    (j + 1 < len && s[j + 1] != ' ' && s[j + 1] != ')')) {
				set_msg(why, whylen, "placeholder {%.*s} must be a whole argument", (int)nlen, s + i + 1);
				return -1;
			}
			if (n == max) {
				set_msg(why, whylen, "more than %zu placeholders", max);
				return -1;
			}
			ph[n].off = i;
			ph[n].len = nlen + 2;
			memcpy(ph[n].name, s + i + 1, nlen);
			ph[n].name[nlen] = '\0';
			n++;
			i = j;
		}
	}
	return (int)n;
}

/* text with each placeholder k replaced by the sentinel of capture idx[k], into out. */
static void with_sentinels(const char *s, size_t len, const struct placeholder *ph, const int *idx, size_t n,
                           struct buf *out)
{
	size_t from = 0;

	for (size_t k = 0; k < n; k++) {
		buf_append(out, s + from, ph[k].off - from);
		buf_printf(out, PH_PREFIX "%d", idx[k]);
		from = ph[k].off + ph[k].len;
	}
	buf_append(out, s + from, len - from);
}

/* ---- freeing ------------------------------------------------------------------------ */

static void macro_free_one(struct macro *m)
{
	free(m->name);
	args_free(m->pattern, m->npattern);
	for (size_t i = 0; i < m->ncaps; i++)
		free(m->cap_names[i]);
	for (size_t i = 0; i < m->nsend; i++) {
		free(m->send[i].text);
		free(m->send[i].segs);
	}
	free(m->send);
}

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void client_free(struct macro_client *c)
{
	if (!c)
		return;
	free(c->new_mail);
	free(c->name);
	free(c->file);
	free_strings(c->id_field, c->nid);
	free_strings(c->id_glob, c->nid);
	free_strings(c->listen, c->nlisten);
	for (size_t i = 0; i < c->nmacros; i++)
		macro_free_one(&c->macros[i]);
	free(c->macros);
	free(c);
}

void macro_set_free(struct macro_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->nclients; i++)
		client_free(set->clients[i]);
	free(set->clients);
	free(set);
}

size_t macro_set_count(const struct macro_set *set)
{
	size_t n = 0;

	for (size_t i = 0; set && i < set->nclients; i++)
		n += set->clients[i]->nmacros;
	return n;
}

size_t macro_set_client_count(const struct macro_set *set)
{
	return set ? set->nclients : 0;
}

/* ---- YAML loading -------------------------------------------------------------------- */

static bool is_null(const yaml_node_t *node)
{
	return node->type == YAML_SCALAR_NODE && cfg_yaml_scalar_is_null(node);
}

static int load_id(struct cfg_yaml *ld, struct macro_client *c, yaml_node_t *map)
{
	char e[ECHO_SIZE];

	if (is_null(map))
		return 0;
	if (map->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(ld, map, "client.id: expected a mapping of ID fields to patterns, got %s", cfg_yaml_node_kind(map));
		return -1;
	}
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = cfg_yaml_node(ld, pair->key), *v = cfg_yaml_node(ld, pair->value);
		const char *field, *glob;

		if (!(field = cfg_yaml_string(ld, k, "client.id", false)))
			return -1;
		if (strlen(field) > MACRO_MAX_ID_FIELD) {
			cfg_yaml_node_error(ld, k, "client.id: field name '%s' is longer than %d bytes (RFC 2971)",
			           echo(e, field, strlen(field)), MACRO_MAX_ID_FIELD);
			return -1;
		}
		for (size_t i = 0; i < c->nid; i++) {
			if (strcasecmp(c->id_field[i], field) == 0) {
				cfg_yaml_node_error(ld, k, "client.id: duplicate field '%s'", echo(e, field, strlen(field)));
				return -1;
			}
		}
		if (c->nid == MACRO_MAX_ID_FIELDS) {
			cfg_yaml_node_error(ld, k, "client.id: more than %d fields", MACRO_MAX_ID_FIELDS);
			return -1;
		}
		if (!(glob = cfg_yaml_string(ld, v, "client.id", true)))
			return -1;
		if (strlen(glob) > MACRO_MAX_ID_VALUE) {
			cfg_yaml_node_error(ld, v, "client.id: pattern longer than %d bytes", MACRO_MAX_ID_VALUE);
			return -1;
		}
		c->id_field = xrealloc(c->id_field, (c->nid + 1) * sizeof(*c->id_field));
		c->id_glob = xrealloc(c->id_glob, (c->nid + 1) * sizeof(*c->id_glob));
		c->id_field[c->nid] = xstrdup(field);
		c->id_glob[c->nid] = xstrdup(glob);
		c->nid++;
	}
	return 0;
}

static int add_listen(struct cfg_yaml *ld, struct macro_client *c, yaml_node_t *v)
{
	const char *s = cfg_yaml_string(ld, v, "client.listen", false);

	if (!s)
		return -1;
	if (c->nlisten == MACRO_MAX_LISTEN) {
		cfg_yaml_node_error(ld, v, "client.listen: more than %d listeners", MACRO_MAX_LISTEN);
		return -1;
	}
	c->listen = xrealloc(c->listen, (c->nlisten + 1) * sizeof(*c->listen));
	c->listen[c->nlisten++] = xstrdup(s);
	return 0;
}

static int load_listen(struct cfg_yaml *ld, struct macro_client *c, yaml_node_t *v)
{
	if (is_null(v))
		return 0;
	if (v->type == YAML_SCALAR_NODE)
		return add_listen(ld, c, v);
	if (v->type != YAML_SEQUENCE_NODE) {
		cfg_yaml_node_error(ld, v, "client.listen: expected a list of listener addresses, got %s", cfg_yaml_node_kind(v));
		return -1;
	}
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++)
		if (add_listen(ld, c, cfg_yaml_node(ld, *it)) < 0)
			return -1;
	return 0;
}

static int load_client(struct cfg_yaml *ld, struct macro_client *c, yaml_node_t *map)
{
	static const char *const keys[] = {"name", "id", "listen", NULL};
	yaml_node_t *k[3], *v[3];
	const char *name;
	char e[ECHO_SIZE];

	if (map->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(ld, map, "client: expected a mapping (name, id, listen), got %s", cfg_yaml_node_kind(map));
		return -1;
	}
	if (cfg_yaml_map_slots(ld, map, keys, k, v, "client") < 0)
		return -1;
	if (!v[0]) {
		cfg_yaml_node_error(ld, map, "client: missing required key 'name'");
		return -1;
	}
	if (!(name = cfg_yaml_string(ld, v[0], "client.name", false)))
		return -1;
	if (!valid_name(name)) {
		cfg_yaml_node_error(ld, v[0], "client.name: '%s' is not a valid name (up to %d letters, digits, '.', '_', '-')",
		           echo(e, name, strlen(name)), MACRO_MAX_NAME);
		return -1;
	}
	c->name = xstrdup(name);
	c->line = (int)v[0]->start_mark.line + 1;
	c->column = (int)v[0]->start_mark.column + 1;
	if (v[1] && load_id(ld, c, v[1]) < 0)
		return -1;
	if (v[2] && load_listen(ld, c, v[2]) < 0)
		return -1;
	if (c->nid == 0 && c->nlisten == 0) {
		cfg_yaml_node_error(ld, map, "client: give 'id' or 'listen' (or both), or the client never matches");
		return -1;
	}
	return 0;
}

/* A trigger or send command text: one line of bounded length. Returns the text or NULL. */
static const char *command_text(struct cfg_yaml *ld, yaml_node_t *v, const char *ctx, const char *what)
{
	const char *s = cfg_yaml_string(ld, v, what, false);
	char e[ECHO_SIZE];

	if (!s) {
		/* get_string named only the key; say which macro */
		char msg[sizeof(ld->err->message)];

		snprintf(msg, sizeof(msg), "%s", ld->err->message);
		set_msg(ld->err->message, sizeof(ld->err->message), "%s: %s", ctx, msg);
		return NULL;
	}
	if (strlen(s) > MACRO_MAX_COMMAND) {
		cfg_yaml_node_error(ld, v, "%s: %s: longer than %d bytes", ctx, what, MACRO_MAX_COMMAND);
		return NULL;
	}
	if (strcasestr(s, PH_PREFIX)) {
		cfg_yaml_node_error(ld, v, "%s: %s: '%s' is reserved", ctx, what, PH_PREFIX);
		return NULL;
	}
	if (strpbrk(s, "\r\n")) {
		cfg_yaml_node_error(ld, v, "%s: %s: '%s' is not one line", ctx, what, echo(e, s, strlen(s)));
		return NULL;
	}
	return s;
}

static int load_trigger(struct cfg_yaml *ld, struct macro *m, yaml_node_t *v, const char *ctx)
{
	/* The session machinery owns these: a batch after them would be wrong or unsafe
	 * (credentials captured, commands injected before TLS or compression starts). */
	static const char *const forbidden[] = {
		"LOGIN", "AUTHENTICATE", "STARTTLS", "COMPRESS", "IDLE", "LOGOUT", "APPEND", NULL,
	};
	struct placeholder ph[MACRO_MAX_CAPTURES];
	int idx[MACRO_MAX_CAPTURES];
	const char *text = command_text(ld, v, ctx, "trigger"), *why;
	const struct imap_msg *msg;
	struct imap_parser *p;
	char msgbuf[200], e[ECHO_SIZE];
	struct buf sent;
	int n;
	size_t b;

	if (!text)
		return -1;
	n = find_placeholders(text, strlen(text), ph, MACRO_MAX_CAPTURES, msgbuf, sizeof(msgbuf));
	if (n < 0) {
		cfg_yaml_node_error(ld, v, "%s: trigger: %s", ctx, msgbuf);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < i; j++) {
			if (strcmp(ph[i].name, ph[j].name) == 0) {
				cfg_yaml_node_error(ld, v, "%s: trigger: placeholder {%s} appears twice", ctx, ph[i].name);
				return -1;
			}
		}
		idx[i] = i;
		m->cap_names[i] = xstrdup(ph[i].name);
		m->ncaps++;
	}
	buf_init(&sent, 0);
	with_sentinels(text, strlen(text), ph, idx, (size_t)n, &sent);
	p = parse_command((const char *)buf_head(&sent), buf_len(&sent), &msg, &why);
	buf_free(&sent);
	if (!p) {
		cfg_yaml_node_error(ld, v, "%s: trigger: bad IMAP syntax: %s", ctx, why);
		return -1;
	}
	if (has_literal(msg->args, msg->nargs)) {
		cfg_yaml_node_error(ld, v, "%s: trigger: literals are not allowed", ctx);
		goto fail;
	}
	b = name_index(msg->args, msg->nargs);
	if (msg->args[0].type != IMAP_ARG_ATOM || msg->args[b].type != IMAP_ARG_ATOM ||
	    capture_index(&msg->args[0]) >= 0 || capture_index(&msg->args[b]) >= 0) {
		cfg_yaml_node_error(ld, v, "%s: trigger: must start with a command name, not a placeholder", ctx);
		goto fail;
	}
	if (b == 0 && imap_arg_is_atom(&msg->args[0], "UID")) {
		cfg_yaml_node_error(ld, v, "%s: trigger: UID needs a command after it", ctx);
		goto fail;
	}
	if (atom_in(&msg->args[b], forbidden)) {
		cfg_yaml_node_error(ld, v, "%s: trigger: %s cannot be a trigger", ctx,
		           echo(e, msg->args[b].str, msg->args[b].len));
		goto fail;
	}
	m->pattern = args_dup(msg->args, msg->nargs);
	m->npattern = msg->nargs;
	imap_parser_free(p);
	return 0;
fail:
	imap_parser_free(p);
	return -1;
}

static int load_send_one(struct cfg_yaml *ld, struct macro *m, yaml_node_t *v, const char *ctx)
{
	struct placeholder ph[MACRO_MAX_CAPTURES];
	int idx[MACRO_MAX_CAPTURES];
	const char *text = command_text(ld, v, ctx, "send"), *why;
	const struct imap_msg *msg;
	struct imap_parser *p;
	char msgbuf[256];
	struct send_cmd *sc;
	struct buf sent;
	size_t from = 0, len;
	int n;

	if (!text)
		return -1;
	len = strlen(text);
	n = find_placeholders(text, len, ph, MACRO_MAX_CAPTURES, msgbuf, sizeof(msgbuf));
	if (n < 0) {
		cfg_yaml_node_error(ld, v, "%s: send: %s", ctx, msgbuf);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		idx[i] = -1;
		for (size_t j = 0; j < m->ncaps; j++)
			if (strcmp(ph[i].name, m->cap_names[j]) == 0)
				idx[i] = (int)j;
		if (idx[i] < 0) {
			cfg_yaml_node_error(ld, v, "%s: send: placeholder {%s} is not captured by the trigger", ctx, ph[i].name);
			return -1;
		}
	}
	buf_init(&sent, 0);
	with_sentinels(text, len, ph, idx, (size_t)n, &sent);
	p = parse_command((const char *)buf_head(&sent), buf_len(&sent), &msg, &why);
	buf_free(&sent);
	if (!p) {
		cfg_yaml_node_error(ld, v, "%s: send: bad IMAP syntax: %s", ctx, why);
		return -1;
	}
	why = read_only_problem(msg->args, msg->nargs, true, msgbuf, sizeof(msgbuf));
	imap_parser_free(p);
	if (why) {
		cfg_yaml_node_error(ld, v, "%s: send: %s", ctx, why);
		return -1;
	}

	m->send = xrealloc(m->send, (m->nsend + 1) * sizeof(*m->send));
	sc = &m->send[m->nsend++];
	sc->text = xstrdup(text);
	sc->segs = xcalloc(2 * (size_t)n + 1, sizeof(*sc->segs));
	sc->nsegs = 0;
	for (int i = 0; i < n; i++) {
		if (ph[i].off > from)
			sc->segs[sc->nsegs++] = (struct send_seg){from, ph[i].off - from, -1};
		sc->segs[sc->nsegs++] = (struct send_seg){0, 0, idx[i]};
		from = ph[i].off + ph[i].len;
	}
	if (len > from)
		sc->segs[sc->nsegs++] = (struct send_seg){from, len - from, -1};
	return 0;
}

static int load_macro(struct cfg_yaml *ld, struct macro_client *c, yaml_node_t *map, size_t index)
{
	static const char *const keys[] = {"name", "trigger", "send", NULL};
	yaml_node_t *k[3], *v[3];
	struct macro *m;
	const char *name;
	char ctx[MACRO_MAX_NAME + 16], e[ECHO_SIZE];

	if (map->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(ld, map, "macros: expected a mapping (name, trigger, send), got %s", cfg_yaml_node_kind(map));
		return -1;
	}
	if (cfg_yaml_map_slots(ld, map, keys, k, v, "macro") < 0)
		return -1;
	if (!v[0]) {
		cfg_yaml_node_error(ld, map, "macros: item %zu: missing required key 'name'", index + 1);
		return -1;
	}
	if (!(name = cfg_yaml_string(ld, v[0], "macro name", false)))
		return -1;
	if (!valid_name(name)) {
		cfg_yaml_node_error(ld, v[0], "macro name '%s' is not valid (up to %d letters, digits, '.', '_', '-')",
		           echo(e, name, strlen(name)), MACRO_MAX_NAME);
		return -1;
	}
	for (size_t i = 0; i < c->nmacros; i++) {
		if (strcmp(c->macros[i].name, name) == 0) {
			cfg_yaml_node_error(ld, v[0], "duplicate macro name '%s'", name);
			return -1;
		}
	}
	snprintf(ctx, sizeof(ctx), "macro '%s'", name);
	if (!v[1] || !v[2]) {
		cfg_yaml_node_error(ld, map, "%s: missing required key '%s'", ctx, !v[1] ? "trigger" : "send");
		return -1;
	}

	c->macros = xrealloc(c->macros, (c->nmacros + 1) * sizeof(*c->macros));
	m = &c->macros[c->nmacros++];
	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	if (load_trigger(ld, m, v[1], ctx) < 0)
		return -1;
	if (v[2]->type != YAML_SEQUENCE_NODE) {
		cfg_yaml_node_error(ld, v[2], "%s: send: expected a list of commands, got %s", ctx, cfg_yaml_node_kind(v[2]));
		return -1;
	}
	if (v[2]->data.sequence.items.top == v[2]->data.sequence.items.start) {
		cfg_yaml_node_error(ld, v[2], "%s: send: the list is empty", ctx);
		return -1;
	}
	for (yaml_node_item_t *it = v[2]->data.sequence.items.start; it < v[2]->data.sequence.items.top; it++) {
		yaml_node_t *item = cfg_yaml_node(ld, *it);

		if (m->nsend == MACRO_MAX_SEND) {
			cfg_yaml_node_error(ld, item, "%s: send: more than %d commands", ctx, MACRO_MAX_SEND);
			return -1;
		}
		if (load_send_one(ld, m, item, ctx) < 0)
			return -1;
	}
	return 0;
}

/*
 * new_mail: {fetch: "(items)"}: the items new mail is pushed with
 * (PIMAP_INBAND_NEW_FORMAT), so that what the client fetches next about a
 * new message needs no round trip. Checked like a prefetched FETCH: nothing
 * that sets \Seen.
 */
static int load_new_mail(struct cfg_yaml *ld, struct macro_client *c, yaml_node_t *map)
{
	static const char *const keys[] = {"fetch", NULL};
	yaml_node_t *k[1], *v[1];
	const char *items, *why;
	const struct imap_msg *msg;
	char msgbuf[256];

	if (map->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(ld, map, "new_mail: expected a mapping (fetch), got %s", cfg_yaml_node_kind(map));
		return -1;
	}
	if (cfg_yaml_map_slots(ld, map, keys, k, v, "new_mail") < 0)
		return -1;
	if (!v[0]) {
		cfg_yaml_node_error(ld, map, "new_mail: missing required key 'fetch'");
		return -1;
	}
	if (!(items = command_text(ld, v[0], "new_mail", "fetch")))
		return -1;
	struct buf cmd;
	buf_init(&cmd, 0);
	buf_printf(&cmd, "FETCH 1 %s", items);
	struct imap_parser *p = parse_command((const char *)buf_head(&cmd), buf_len(&cmd), &msg, &why);
	buf_free(&cmd);
	if (!p) {
		cfg_yaml_node_error(ld, v[0], "new_mail: fetch: bad IMAP syntax: %s", why);
		return -1;
	}
	const char *problem = msg->nargs == 3 ? read_only_problem(msg->args, msg->nargs, false, msgbuf, sizeof(msgbuf))
	                                      : "give one parenthesised list of FETCH items";
	imap_parser_free(p);
	if (problem) {
		cfg_yaml_node_error(ld, v[0], "new_mail: fetch: %s", problem);
		return -1;
	}
	c->new_mail = xstrdup(items);
	return 0;
}

/* The root mapping: client and macros. Returns the client or NULL (error set). */
static struct macro_client *load_root(struct cfg_yaml *ld, yaml_node_t *root)
{
	static const char *const keys[] = {"client", "macros", "new_mail", NULL};
	yaml_node_t *k[3], *v[3];
	struct macro_client *c;
	size_t i = 0;

	if (!root || is_null(root)) {
		cfg_set_error(ld->err, ld->name, 0, 0, "no client: a macro file has 'client' and 'macros'");
		return NULL;
	}
	if (root->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(ld, root, "the top level must be a mapping with 'client' and 'macros', got %s",
		           cfg_yaml_node_kind(root));
		return NULL;
	}
	if (cfg_yaml_map_slots(ld, root, keys, k, v, "") < 0)
		return NULL;
	if (!v[0] || !v[1]) {
		cfg_yaml_node_error(ld, root, "missing required key '%s'", !v[0] ? "client" : "macros");
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->file = xstrdup(ld->name);
	if (load_client(ld, c, v[0]) < 0)
		goto fail;
	if (v[1]->type != YAML_SEQUENCE_NODE) {
		cfg_yaml_node_error(ld, v[1], "macros: expected a list of macros, got %s", cfg_yaml_node_kind(v[1]));
		goto fail;
	}
	if (v[1]->data.sequence.items.top == v[1]->data.sequence.items.start) {
		cfg_yaml_node_error(ld, v[1], "macros: the list is empty");
		goto fail;
	}
	for (yaml_node_item_t *it = v[1]->data.sequence.items.start; it < v[1]->data.sequence.items.top; it++, i++) {
		yaml_node_t *item = cfg_yaml_node(ld, *it);

		if (i == MACRO_MAX_PER_FILE) {
			cfg_yaml_node_error(ld, item, "macros: more than %d macros in one file", MACRO_MAX_PER_FILE);
			goto fail;
		}
		if (load_macro(ld, c, item, i) < 0)
			goto fail;
	}
	if (v[2] && load_new_mail(ld, c, v[2]) < 0)
		goto fail;
	return c;
fail:
	client_free(c);
	return NULL;
}

/* One file's text into a client. Returns NULL with err set. */
/* The root of a macro file: its client, or an error. */
static int load_root_cb(struct cfg_yaml *ld, yaml_node_t *root, void *ctx)
{
	struct macro_client **out = ctx;

	*out = load_root(ld, root);
	return *out ? 0 : -1;
}

/* One file's text into a client. Returns NULL with err set. */
static struct macro_client *load_document(const char *name, const char *yaml, size_t len, struct cfg_error *err)
{
	struct macro_client *c = NULL;

	memset(err, 0, sizeof(*err));
	if (len > MACRO_MAX_FILE_SIZE) {
		cfg_set_error(err, name, 0, 0, "file is larger than %d bytes; not a macro file?", MACRO_MAX_FILE_SIZE);
		return NULL;
	}
	if (cfg_yaml_load(name, yaml, len, load_root_cb, &c, err) < 0) {
		client_free(c);
		return NULL;
	}
	return c;
}

static void report(const struct cfg_error *e, char *err, size_t errlen)
{
	if (err && errlen)
		cfg_format_error(e, err, errlen);
}

/* Add c to set unless its name is taken. Returns 0, or -1 with e set (c freed). */
static int set_add(struct macro_set *set, struct macro_client *c, struct cfg_error *e)
{
	for (size_t i = 0; i < set->nclients; i++) {
		if (strcmp(set->clients[i]->name, c->name) == 0) {
			cfg_set_error(e, c->file, c->line, c->column, "client '%s' is already defined in %s", c->name,
			        set->clients[i]->file);
			client_free(c);
			return -1;
		}
	}
	set->clients = xrealloc(set->clients, (set->nclients + 1) * sizeof(*set->clients));
	set->clients[set->nclients++] = c;
	return 0;
}

struct macro_set *macro_set_load_string(const char *name, const char *yaml, size_t len, char *err, size_t errlen)
{
	struct cfg_error e;
	struct macro_client *c;
	struct macro_set *set;

	c = load_document(name ? name : "<string>", yaml ? yaml : "", yaml ? len : 0, &e);
	if (!c) {
		report(&e, err, errlen);
		return NULL;
	}
	set = xcalloc(1, sizeof(*set));
	set_add(set, c, &e);
	return set;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct macro_set *macro_set_load_dir(const char *dir, char *err, size_t errlen)
{
	struct macro_set *set = NULL;
	struct cfg_error e;
	char **names = NULL;
	size_t nnames = 0;
	struct dirent *de;
	DIR *d;

	memset(&e, 0, sizeof(e));
	if (!dir || !*dir) {
		cfg_set_error(&e, "macros", 0, 0, "no macro directory given");
		report(&e, err, errlen);
		return NULL;
	}
	d = opendir(dir);
	if (!d) {
		cfg_set_error(&e, dir, 0, 0, "cannot open macro directory: %s", strerror(errno));
		report(&e, err, errlen);
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);

		if (de->d_name[0] == '.' || n <= 5 || strcmp(de->d_name + n - 5, ".yaml") != 0)
			continue;
		names = xrealloc(names, (nnames + 1) * sizeof(*names));
		names[nnames++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (nnames)
		qsort(names, nnames, sizeof(*names), cmp_names);

	set = xcalloc(1, sizeof(*set));
	for (size_t i = 0; i < nnames; i++) {
		struct buf path;
		struct stat st;
		struct macro_client *c;
		char *data;
		size_t len;
		int rc;

		buf_init(&path, 0);
		buf_printf(&path, "%s/%s", dir, names[i]);
		buf_append(&path, "", 1);
		rc = stat((const char *)buf_head(&path), &st);
		if (rc == 0 && !S_ISREG(st.st_mode)) {
			buf_free(&path);
			continue; /* a directory called x.yaml is not a macro file */
		}
		if (rc < 0 || cfg_read_file((const char *)buf_head(&path), MACRO_MAX_FILE_SIZE, "a macro file", &data, &len, &e) < 0) {
			if (rc < 0)
				cfg_set_error(&e, (const char *)buf_head(&path), 0, 0, "cannot open: %s", strerror(errno));
			buf_free(&path);
			goto fail;
		}
		c = load_document((const char *)buf_head(&path), data, len, &e);
		free(data);
		buf_free(&path);
		if (!c || set_add(set, c, &e) < 0)
			goto fail;
	}
	free_strings(names, nnames);
	return set;
fail:
	report(&e, err, errlen);
	free_strings(names, nnames);
	macro_set_free(set);
	return NULL;
}

/* ---- which client -------------------------------------------------------------------- */

static bool id_matches(const struct macro_client *c, const char *const *id_kv)
{
	for (size_t i = 0; i < c->nid; i++) {
		bool found = false;

		for (const char *const *kv = id_kv; kv[0] && kv[1] && !found; kv += 2)
			found = strcasecmp(kv[0], c->id_field[i]) == 0 && fnmatch(c->id_glob[i], kv[1], FNM_CASEFOLD) == 0;
		if (!found)
			return false;
	}
	return true;
}

const struct macro_client *macro_client_find(const struct macro_set *set, const char *const *id_kv,
                                             const char *listener)
{
	if (!set)
		return NULL;
	if (id_kv) {
		for (size_t i = 0; i < set->nclients; i++)
			if (set->clients[i]->nid && id_matches(set->clients[i], id_kv))
				return set->clients[i];
	}
	if (listener) {
		for (size_t i = 0; i < set->nclients; i++)
			for (size_t j = 0; j < set->clients[i]->nlisten; j++)
				if (strcmp(set->clients[i]->listen[j], listener) == 0)
					return set->clients[i];
	}
	return NULL;
}

const char *macro_client_name(const struct macro_client *c)
{
	return c ? c->name : NULL;
}

const char *macro_client_fetch_items(const struct macro_client *c)
{
	if (c && c->new_mail)
		return c->new_mail;
	for (size_t i = 0; c && i < c->nmacros; i++)
		for (size_t j = 0; j < c->macros[i].nsend; j++) {
			const struct send_cmd *sc = &c->macros[i].send[j];
			bool fixed = true;
			for (size_t k = 0; k < sc->nsegs; k++)
				fixed = fixed && sc->segs[k].cap == -1;
			if (!fixed)
				continue; /* placeholders: not a fixed item list */
			const char *t = sc->text;
			if (strncasecmp(t, "UID ", 4) == 0)
				t += 4;
			if (strncasecmp(t, "FETCH ", 6) != 0)
				continue;
			/* After the sequence set, which the loader's parser lets be
			 * followed by more spaces or directly by "(": "FETCH  1:*(FLAGS)"
			 * once gave "1:*(FLAGS)" as the items (fuzz_macros). */
			t += 6;
			while (*t == ' ')
				t++;
			while (*t && *t != ' ' && *t != '(')
				t++;
			while (*t == ' ')
				t++;
			if (*t)
				return t;
		}
	return NULL;
}

/* ---- expansion -------------------------------------------------------------------------- */

void macro_free_commands(char **cmds, size_t n)
{
	if (!cmds)
		return;
	for (size_t i = 0; i < n; i++)
		free(cmds[i]);
	free(cmds);
}

/*
 * A captured argument as command text: an atom as the client wrote it, a
 * string quoted. False if it would need a literal (CR, LF, NUL, 8-bit).
 */
static bool append_value(struct buf *out, const struct imap_arg *v)
{
	if (v->type == IMAP_ARG_ATOM) {
		buf_append(out, v->str, v->len);
		return true;
	}
	for (size_t i = 0; i < v->len; i++) {
		unsigned char c = (unsigned char)v->str[i];

		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80)
			return false;
	}
	imap_write_astring(out, v->str, v->len); /* quoted: every byte allows it */
	return true;
}

/* Expand macro m with captures; false if a value cannot be written or the result is not read-only. */
static bool expand_one(const struct macro *m, const struct imap_arg **caps, char **cmds)
{
	for (size_t i = 0; i < m->nsend; i++) {
		const struct send_cmd *sc = &m->send[i];
		const struct imap_msg *msg;
		struct imap_parser *p;
		const char *why;
		char whybuf[256];
		struct buf out;
		bool ok = true;

		buf_init(&out, 0);
		for (size_t k = 0; k < sc->nsegs && ok; k++) {
			if (sc->segs[k].cap < 0)
				buf_append(&out, sc->text + sc->segs[k].off, sc->segs[k].len);
			else
				ok = caps[sc->segs[k].cap] && append_value(&out, caps[sc->segs[k].cap]);
		}
		/* Never trust a substitution: the result must still be one read-only command. */
		if (ok) {
			p = parse_command((const char *)buf_head(&out), buf_len(&out), &msg, &why);
			ok = p && read_only_problem(msg->args, msg->nargs, false, whybuf, sizeof(whybuf)) == NULL;
			imap_parser_free(p);
		}
		if (!ok) {
			buf_free(&out);
			return false;
		}
		buf_append(&out, "", 1);
		cmds[i] = xstrdup((const char *)buf_head(&out));
		buf_free(&out);
	}
	return true;
}

size_t macro_expand(const struct macro_client *c, const struct imap_msg *cmd, char ***out)
{
	*out = NULL;
	if (!c || !cmd || cmd->kind != IMAP_MSG_COMMAND || cmd->nargs == 0)
		return 0;
	for (size_t i = 0; i < c->nmacros; i++) {
		const struct macro *m = &c->macros[i];
		const struct imap_arg *caps[MACRO_MAX_CAPTURES] = {NULL};
		char **cmds;

		/* A bare "ID" trigger fires on any ID command: its fields only say
		 * which client this is, and that was decided already. */
		bool any_id = m->npattern == 1 && imap_arg_is_atom(&m->pattern[0], "ID") &&
		              imap_arg_is_atom(&cmd->args[0], "ID");
		if (!any_id && !match_command(m->pattern, m->npattern, cmd->args, cmd->nargs, caps))
			continue;
		cmds = xcalloc(m->nsend, sizeof(*cmds));
		if (expand_one(m, caps, cmds)) {
			*out = cmds;
			return m->nsend;
		}
		macro_free_commands(cmds, m->nsend);
	}
	return 0;
}

/* ---- claims --------------------------------------------------------------------------------- */

void macro_claim_free(struct macro_claim *c)
{
	if (!c)
		return;
	uidset_free(&c->want);
	uidset_free(&c->have);
}

/* Every member of a in b? */
static bool subset(const struct uidset *a, const struct uidset *b)
{
	for (size_t i = 0; i < a->count; i++)
		if (!uidset_contains(b, a->uids[i]))
			return false;
	return true;
}

/* Fill the sets of a FETCH claim; false if the commands cannot be compared that way. */
static bool fetch_claim(const struct imap_arg *p, size_t np, const struct imap_arg *c, size_t nc, struct macro_claim *out)
{
	size_t pb = name_index(p, np), cb = name_index(c, nc);
	struct seqset want = {.star = false}, have = {.star = false};
	bool ok = false;

	if (pb != cb || np != nc || !imap_arg_is_atom(&p[pb], "FETCH") || !imap_arg_is_atom(&c[cb], "FETCH"))
		return false;
	if (nc != cb + 3 && nc != cb + 4)
		return false;
	if (!match_arg(&p[pb + 2], &c[cb + 2], ROLE_FETCH_ITEMS, NULL))
		return false;
	if (nc == cb + 4 && !match_arg(&p[pb + 3], &c[cb + 3], ROLE_KEYWORD, NULL))
		return false;
	if (p[pb + 1].type != IMAP_ARG_ATOM || c[cb + 1].type != IMAP_ARG_ATOM)
		return false;
	uidset_init(&want.set);
	uidset_init(&have.set);
	if (!parse_seqset(c[cb + 1].str, c[cb + 1].len, &want) || !parse_seqset(p[pb + 1].str, p[pb + 1].len, &have))
		goto done;
	/* Without "*" on either side the answer is known now. */
	if (!want.star && !have.star && !subset(&want.set, &have.set))
		goto done;
	out->uid = pb == 1;
	uidset_copy(&out->want, &want.set);
	out->want_star = want.star;
	out->star_from = want.star_from;
	uidset_copy(&out->have, &have.set);
	out->have_star = have.star;
	out->have_star_from = have.star_from;
	ok = true;
done:
	uidset_free(&want.set);
	uidset_free(&have.set);
	return ok;
}

enum macro_claim_kind macro_claim(const char *prefetch, const struct imap_msg *client_cmd, struct macro_claim *out)
{
	const struct imap_msg *pm;
	struct imap_parser *p;
	const char *why;

	memset(out, 0, sizeof(*out));
	uidset_init(&out->want);
	uidset_init(&out->have);
	out->kind = MACRO_CLAIM_NONE;
	if (!prefetch || !client_cmd || client_cmd->kind != IMAP_MSG_COMMAND || client_cmd->nargs == 0)
		return MACRO_CLAIM_NONE;
	p = parse_command(prefetch, strlen(prefetch), &pm, &why);
	if (!p)
		return MACRO_CLAIM_NONE;
	if (match_command(pm->args, pm->nargs, client_cmd->args, client_cmd->nargs, NULL))
		out->kind = MACRO_CLAIM_EXACT;
	else if (fetch_claim(pm->args, pm->nargs, client_cmd->args, client_cmd->nargs, out))
		out->kind = MACRO_CLAIM_FETCH;
	imap_parser_free(p);
	return out->kind;
}

/* The numbers "n:*" (from = n) or "*" (from = 0) stand for when "*" is max; false if none. */
static bool star_range(uint32_t from, uint32_t max, uint32_t *lo, uint32_t *hi)
{
	if (max == 0)
		return false; /* an empty mailbox: "*" names nothing */
	if (from == 0)
		from = max;
	*lo = from < max ? from : max;
	*hi = from < max ? max : from;
	return true;
}

/* Members of s in [lo, hi]. */
static size_t count_in(const struct uidset *s, uint32_t lo, uint32_t hi)
{
	size_t a = 0, b = s->count, first, last;

	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (s->uids[mid] < lo)
			a = mid + 1;
		else
			b = mid;
	}
	first = a;
	b = s->count;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (s->uids[mid] <= hi)
			a = mid + 1;
		else
			b = mid;
	}
	last = a;
	return last - first;
}

/* Every number of [lo, hi] in the explicit set s? */
static bool range_in(const struct uidset *s, uint32_t lo, uint32_t hi)
{
	return count_in(s, lo, hi) == (size_t)(hi - lo) + 1;
}

bool macro_claim_covers(const struct macro_claim *c, uint32_t want_max, uint32_t have_max)
{
	uint32_t wlo, whi, hlo = 0, hhi = 0;
	bool hrange;

	if (!c || c->kind != MACRO_CLAIM_FETCH)
		return false;
	hrange = c->have_star && star_range(c->have_star_from, have_max, &hlo, &hhi);
	for (size_t i = 0; i < c->want.count; i++) {
		uint32_t u = c->want.uids[i];

		if (!(hrange && u >= hlo && u <= hhi) && !uidset_contains(&c->have, u))
			return false;
	}
	if (!c->want_star || !star_range(c->star_from, want_max, &wlo, &whi))
		return true;
	if (!hrange)
		return range_in(&c->have, wlo, whi);
	/* The parts of [wlo, whi] outside [hlo, hhi] must be explicit members. */
	if (wlo < hlo && !range_in(&c->have, wlo, whi < hlo - 1 ? whi : hlo - 1))
		return false;
	if (whi > hhi && !range_in(&c->have, wlo > hhi + 1 ? wlo : hhi + 1, whi))
		return false;
	return true;
}
