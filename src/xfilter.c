/*
 * xfilter.c - XFILTER commands, filter criteria and a device's filters
 * (see xfilter.h).
 *
 * Criteria are walked key by key with one recursive function that can
 * validate, write the canonical text, write the text for a store (with
 * DAYSBEFORETODAY resolved to a date) and note what the criteria use; the
 * same walk therefore decides what is allowed and what is written.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_write.h"
#include "xfilter.h"

/* ------------------------------------------------------------------------ */
/* the search keys of RFC 3501 (and the extensions a store commonly offers)  */

static const struct xfilter_key search_keys[] = {
	{"ALL", 0, {0, 0}, XFK_IMMUTABLE},
	{"BCC", 1, {XFA_STRING, 0}, XFK_IMMUTABLE},
	{"BEFORE", 1, {XFA_DATE, 0}, XFK_IMMUTABLE},
	{"BODY", 1, {XFA_STRING, 0}, XFK_IMMUTABLE},
	{"CC", 1, {XFA_STRING, 0}, XFK_IMMUTABLE},
	{"FROM", 1, {XFA_STRING, 0}, XFK_IMMUTABLE},
	{"HEADER", 2, {XFA_STRING, XFA_STRING}, XFK_IMMUTABLE},
	{"LARGER", 1, {XFA_NUMBER, 0}, XFK_IMMUTABLE},
	{"ON", 1, {XFA_DATE, 0}, XFK_IMMUTABLE},
	{"SENTBEFORE", 1, {XFA_DATE, 0}, XFK_IMMUTABLE},
	{"SENTON", 1, {XFA_DATE, 0}, XFK_IMMUTABLE},
	{"SENTSINCE", 1, {XFA_DATE, 0}, XFK_IMMUTABLE},
	{"SINCE", 1, {XFA_DATE, 0}, XFK_IMMUTABLE},
	{"SMALLER", 1, {XFA_NUMBER, 0}, XFK_IMMUTABLE},
	{"SUBJECT", 1, {XFA_STRING, 0}, XFK_IMMUTABLE},
	{"TEXT", 1, {XFA_STRING, 0}, XFK_IMMUTABLE},
	{"TO", 1, {XFA_STRING, 0}, XFK_IMMUTABLE},
	{"NOT", 0, {0, 0}, XFK_LOGIC},
	{"OR", 0, {0, 0}, XFK_LOGIC},
	{"ANSWERED", 0, {0, 0}, XFK_MUTABLE},
	{"DELETED", 0, {0, 0}, XFK_MUTABLE},
	{"DRAFT", 0, {0, 0}, XFK_MUTABLE},
	{"FLAGGED", 0, {0, 0}, XFK_MUTABLE},
	{"KEYWORD", 1, {XFA_ATOM, 0}, XFK_MUTABLE},
	{"NEW", 0, {0, 0}, XFK_MUTABLE},
	{"OLD", 0, {0, 0}, XFK_MUTABLE},
	{"RECENT", 0, {0, 0}, XFK_MUTABLE},
	{"SEEN", 0, {0, 0}, XFK_MUTABLE},
	{"UNANSWERED", 0, {0, 0}, XFK_MUTABLE},
	{"UNDELETED", 0, {0, 0}, XFK_MUTABLE},
	{"UNDRAFT", 0, {0, 0}, XFK_MUTABLE},
	{"UNFLAGGED", 0, {0, 0}, XFK_MUTABLE},
	{"UNKEYWORD", 1, {XFA_ATOM, 0}, XFK_MUTABLE},
	{"UNSEEN", 0, {0, 0}, XFK_MUTABLE},
	{"MODSEQ", 1, {XFA_NUMBER, 0}, XFK_MUTABLE},
	{"UID", 1, {XFA_SET, 0}, XFK_MESSAGES},
	{"YOUNGER", 1, {XFA_NUMBER, 0}, XFK_RELATIVE},
	{"OLDER", 1, {XFA_NUMBER, 0}, XFK_RELATIVE},
	{"SAVEDBEFORE", 1, {XFA_DATE, 0}, XFK_RELATIVE},
	{"SAVEDON", 1, {XFA_DATE, 0}, XFK_RELATIVE},
	{"SAVEDSINCE", 1, {XFA_DATE, 0}, XFK_RELATIVE},
	{"SAVEDATESUPPORTED", 0, {0, 0}, XFK_RELATIVE},
};

const struct xfilter_key *xfilter_key_lookup(const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_ATOM)
		return NULL;
	for (size_t i = 0; i < sizeof(search_keys) / sizeof(search_keys[0]); i++)
		if (imap_arg_is_atom(a, search_keys[i].name))
			return &search_keys[i];
	return NULL;
}

bool xfilter_is_sequence_set(const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_ATOM || a->len == 0)
		return false;
	if (a->len == 1 && a->str[0] == '$')
		return true;
	for (size_t i = 0; i < a->len; i++)
		if (!isdigit((unsigned char)a->str[i]) && !strchr(":,*", a->str[i]))
			return false;
	return true;
}

/* ------------------------------------------------------------------------ */
/* dates                                                                     */

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian calendar. */
static long days_from_civil(long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long)doe - 719468;
}

static void civil_from_days(long z, long *y, unsigned *m, unsigned *d)
{
	z += 719468;
	long era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long yy = (long)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp + (mp < 10 ? 3 : -9);
	*y = yy + (*m <= 2);
}

bool xfilter_civil_day(int year, int month, int mday, long *day)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (year < 1 || year > 9999 || month < 1 || month > 12 || mday < 1 || mday > mdays[month - 1])
		return false;
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (month == 2 && mday == 29 && !leap)
		return false;
	*day = days_from_civil(year, (unsigned)month, (unsigned)mday);
	return true;
}

long xfilter_today(time_t t)
{
	struct tm tm;
	localtime_r(&t, &tm);
	long day = 0;
	xfilter_civil_day(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, &day);
	return day;
}

void xfilter_format_date(long day, char *out, size_t outlen)
{
	long y;
	unsigned m, d;
	civil_from_days(day, &y, &m, &d);
	/* Four digits: a date-year is 4DIGIT (RFC 3501), and xfilter_parse_date
	 * reads no other; "1-Jan-985" from 1-Jan-0985 was stored, then refused
	 * when loaded and sent to the store as a bad date (found by fuzz_xfilter). */
	snprintf(out, outlen, "%u-%s-%04ld", d, month_names[m - 1], y);
}

bool xfilter_parse_date(const char *s, size_t len, long *day)
{
	size_t i = 0;
	int d = 0, y = 0, nd = 0;
	while (i < len && isdigit((unsigned char)s[i]) && nd < 2) {
		d = d * 10 + (s[i++] - '0');
		nd++;
	}
	if (nd == 0 || i >= len || s[i] != '-' || i + 5 > len)
		return false;
	i++;
	int month = 0;
	for (int k = 0; k < 12; k++)
		if (strncasecmp(s + i, month_names[k], 3) == 0)
			month = k + 1;
	if (!month || s[i + 3] != '-')
		return false;
	i += 4;
	if (len - i != 4)
		return false;
	for (; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		y = y * 10 + (s[i] - '0');
	}
	return xfilter_civil_day(y, month, d, day);
}

/* ------------------------------------------------------------------------ */
/* the walk over criteria                                                    */

enum walk_mode {
	WALK_CANONICAL, /* validate a client's keys, write the canonical text */
	WALK_RESPONSE,  /* canonical text in the response form (literals "{n}") */
	WALK_RESOLVE,   /* the keys for a store: DAYSBEFORETODAY -> SINCE */
	WALK_SCAN,      /* validate only, noting what is used */
};

struct walk {
	enum walk_mode mode;
	struct buf *out;
	long today;
	unsigned nkeys;
	bool days;       /* DAYSBEFORETODAY seen */
	long min_days, max_days;
	bool utf8;       /* a non-ASCII string */
	char *err;
	size_t errlen;
	enum xfilter_result fail;
};

static void walk_fail(struct walk *w, enum xfilter_result r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void walk_fail(struct walk *w, enum xfilter_result r, const char *fmt, ...)
{
	if (w->fail != XFILTER_OK)
		return;
	w->fail = r;
	if (w->err && w->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->err, w->errlen, fmt, ap);
		va_end(ap);
	}
}

static void put(struct walk *w, const char *s)
{
	if (w->out)
		buf_append_str(w->out, s);
}

static void put_sep(struct walk *w, bool *first)
{
	if (!*first)
		put(w, " ");
	*first = false;
}

static void put_string(struct walk *w, const struct imap_arg *a)
{
	for (size_t i = 0; i < a->len; i++)
		if ((unsigned char)a->str[i] >= 0x80)
			w->utf8 = true;
	if (!w->out)
		return;
	if (w->mode == WALK_RESPONSE) {
		/* imap_write_mailbox's response form: quoted, or a "{n}" literal */
		bool quotable = true;
		for (size_t i = 0; i < a->len && quotable; i++) {
			unsigned char c = (unsigned char)a->str[i];
			quotable = c != '\r' && c != '\n' && c != '\0' && c < 0x80;
		}
		if (!quotable) {
			buf_printf(w->out, "{%zu}\r\n", a->len);
			buf_append(w->out, a->str, a->len);
			return;
		}
	}
	imap_write_astring(w->out, a->str, a->len);
}

static const char *valid_keys_text(void)
{
	return "FROM TO CC BCC SUBJECT HEADER BODY TEXT LARGER SMALLER SINCE BEFORE ON SENTSINCE SENTBEFORE "
	       "SENTON DAYSBEFORETODAY, with NOT, OR and ( )";
}

/* DAYSBEFORETODAY n, or the -01 spelling DAYSBEFORETODAYn: n, or -1 if a is not that key. */
static long days_key(const struct imap_arg *a, const struct imap_arg *next, bool *two_tokens)
{
	static const char word[] = "DAYSBEFORETODAY";
	size_t wl = sizeof(word) - 1;
	*two_tokens = false;
	if (a->type != IMAP_ARG_ATOM || a->len < wl || strncasecmp(a->str, word, wl) != 0)
		return -1;
	const char *num = a->str + wl;
	size_t nlen = a->len - wl;
	if (nlen == 0) {
		if (!next || next->type != IMAP_ARG_ATOM)
			return -2;
		num = next->str;
		nlen = next->len;
		*two_tokens = true;
	}
	uint32_t n;
	if (!imap_parse_u32(num, nlen, &n))
		return -2;
	return n > XFILTER_MAX_DAYS ? -3 : (long)n;
}

static void walk_key(struct walk *w, const struct imap_arg *args, size_t n, size_t *i, unsigned depth, bool negated);

/* A parenthesised group or the top level: keys separated by spaces (AND). */
static void walk_list(struct walk *w, const struct imap_arg *args, size_t n, unsigned depth, bool negated)
{
	size_t i = 0;
	bool first = true;
	if (n == 0)
		walk_fail(w, XFILTER_BAD, "empty criteria");
	while (i < n && w->fail == XFILTER_OK) {
		put_sep(w, &first);
		walk_key(w, args, n, &i, depth, negated);
	}
}

static void walk_key(struct walk *w, const struct imap_arg *args, size_t n, size_t *i, unsigned depth, bool negated)
{
	const struct imap_arg *a = &args[*i];
	if (depth > XFILTER_MAX_DEPTH) {
		walk_fail(w, XFILTER_BAD, "criteria nested deeper than %d", XFILTER_MAX_DEPTH);
		return;
	}
	if (++w->nkeys > XFILTER_MAX_KEYS) {
		walk_fail(w, XFILTER_BAD, "more than %d search keys", XFILTER_MAX_KEYS);
		return;
	}
	if (a->type == IMAP_ARG_LIST) {
		put(w, "(");
		walk_list(w, a->list, a->list_count, depth + 1, negated);
		put(w, ")");
		(*i)++;
		return;
	}
	if (a->type != IMAP_ARG_ATOM) {
		walk_fail(w, XFILTER_BAD, "expected a search key, got a string");
		return;
	}
	bool two = false;
	long days = days_key(a, *i + 1 < n ? &args[*i + 1] : NULL, &two);
	if (days == -2 || days == -3) {
		walk_fail(w, XFILTER_BAD, days == -2 ? "DAYSBEFORETODAY needs a number of days"
		                                     : "DAYSBEFORETODAY: at most %d days", XFILTER_MAX_DAYS);
		return;
	}
	if (days >= 0) {
		if (negated) {
			walk_fail(w, XFILTER_REFUSED, "DAYSBEFORETODAY cannot be negated: messages would enter the view as "
			                              "they age");
			return;
		}
		if (!w->days || days < w->min_days)
			w->min_days = days;
		if (!w->days || days > w->max_days)
			w->max_days = days;
		w->days = true;
		char text[64];
		if (w->mode == WALK_RESOLVE) {
			char date[16];
			xfilter_format_date(w->today - days, date, sizeof(date));
			snprintf(text, sizeof(text), "SINCE %s", date);
		} else {
			snprintf(text, sizeof(text), "DAYSBEFORETODAY %ld", days);
		}
		put(w, text);
		*i += two ? 2 : 1;
		return;
	}
	const struct xfilter_key *k = xfilter_key_lookup(a);
	if (!k) {
		if (xfilter_is_sequence_set(a))
			walk_fail(w, XFILTER_REFUSED, "a filter cannot name messages by number (%.*s)", (int)a->len, a->str);
		else
			walk_fail(w, XFILTER_BAD, "unknown search key %.*s (a filter may use %s)", (int)a->len, a->str,
			          valid_keys_text());
		return;
	}
	switch (k->cls) {
	case XFK_MUTABLE:
		walk_fail(w, XFILTER_REFUSED, "%s depends on flags, which change: a filter may only use what never "
		                              "changes (%s)", k->name, valid_keys_text());
		return;
	case XFK_MESSAGES:
		walk_fail(w, XFILTER_REFUSED, "a filter cannot name messages by UID");
		return;
	case XFK_RELATIVE:
		walk_fail(w, XFILTER_REFUSED, "%s is not allowed in a filter (for the last n days use DAYSBEFORETODAY n)",
		          k->name);
		return;
	case XFK_LOGIC: {
		bool is_not = strcmp(k->name, "NOT") == 0;
		unsigned operands = is_not ? 1 : 2;
		put(w, k->name);
		(*i)++;
		for (unsigned o = 0; o < operands && w->fail == XFILTER_OK; o++) {
			if (*i >= n) {
				walk_fail(w, XFILTER_BAD, "%s needs %s", k->name, is_not ? "a search key" : "two search keys");
				return;
			}
			put(w, " ");
			walk_key(w, args, n, i, depth + 1, is_not ? !negated : negated);
		}
		return;
	}
	case XFK_IMMUTABLE:
		break;
	}
	put(w, k->name);
	(*i)++;
	for (unsigned j = 0; j < k->nargs; j++) {
		if (*i >= n) {
			walk_fail(w, XFILTER_BAD, "%s needs %u argument%s", k->name, k->nargs, k->nargs > 1 ? "s" : "");
			return;
		}
		const struct imap_arg *v = &args[*i];
		put(w, " ");
		switch (k->arg[j]) {
		case XFA_STRING:
			if (!imap_arg_is_string(v)) {
				walk_fail(w, XFILTER_BAD, "%s needs a string", k->name);
				return;
			}
			if (v->len > XFILTER_MAX_TEXT) {
				walk_fail(w, XFILTER_BAD, "%s: string too long", k->name);
				return;
			}
			put_string(w, v);
			break;
		case XFA_NUMBER: {
			uint32_t num;
			if (v->type != IMAP_ARG_ATOM || !imap_parse_u32(v->str, v->len, &num)) {
				walk_fail(w, XFILTER_BAD, "%s needs a number", k->name);
				return;
			}
			char text[16];
			snprintf(text, sizeof(text), "%u", num);
			put(w, text);
			break;
		}
		case XFA_DATE: {
			long day;
			if (!imap_arg_is_string(v) || !xfilter_parse_date(v->str, v->len, &day)) {
				walk_fail(w, XFILTER_BAD, "%s needs a date like 1-Feb-2024, got %.*s", k->name,
				          (int)(v->len > 40 ? 40 : v->len), v->str);
				return;
			}
			char date[16];
			xfilter_format_date(day, date, sizeof(date));
			put(w, date);
			break;
		}
		case XFA_SET:
		case XFA_ATOM:
			/* not reached: those keys are refused above */
			break;
		}
		(*i)++;
	}
}

static enum xfilter_result walk_run(struct walk *w, const struct imap_arg *args, size_t n)
{
	w->fail = XFILTER_OK;
	walk_list(w, args, n, 0, false);
	return w->fail;
}

/* ------------------------------------------------------------------------ */
/* canonical text, stored text                                               */

static bool lone_atom(const struct imap_arg *keys, size_t n, const char *word)
{
	return n == 1 && imap_arg_is_atom(&keys[0], word);
}

enum xfilter_result xfilter_canonical(const struct imap_arg *args, size_t nargs, struct buf *out, char *err,
                                      size_t errlen)
{
	if (lone_atom(args, nargs, XFILTER_ALL) || lone_atom(args, nargs, XFILTER_NONE)) {
		buf_append_str(out, imap_arg_is_atom(&args[0], XFILTER_ALL) ? XFILTER_ALL : XFILTER_NONE);
		return XFILTER_OK;
	}
	struct buf text;
	buf_init(&text, 0);
	struct walk w = {.mode = WALK_CANONICAL, .out = &text, .err = err, .errlen = errlen};
	enum xfilter_result r = walk_run(&w, args, nargs);
	if (r == XFILTER_OK && buf_len(&text) > XFILTER_MAX_TEXT) {
		snprintf(err, errlen, "criteria longer than %d bytes", XFILTER_MAX_TEXT);
		r = XFILTER_BAD;
	}
	if (r == XFILTER_OK)
		buf_append(out, buf_head(&text), buf_len(&text));
	buf_free(&text);
	return r;
}

/* Parse stored criteria text into search keys; the parser owns them (free with imap_parser_free). */
static struct imap_parser *parse_text(const char *text, const struct imap_msg **msg)
{
	struct imap_limits lim = {
		.max_line_length = XFILTER_MAX_TEXT + 64,
		.max_literal_size = XFILTER_MAX_TEXT,
		.max_list_depth = XFILTER_MAX_DEPTH + 2,
		.max_args = 4 * XFILTER_MAX_KEYS,
		.max_message_size = 4 * XFILTER_MAX_TEXT,
	};
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, &lim);
	struct buf line;
	buf_init(&line, 0);
	buf_append_str(&line, "x SEARCH ");
	buf_append_str(&line, text);
	buf_append_str(&line, "\r\n");
	size_t used = 0, len = buf_len(&line);
	enum imap_parse_result r = imap_parser_feed(p, buf_head(&line), len, &used);
	buf_free(&line);
	*msg = r == IMAP_PARSE_DONE && used == len ? imap_parser_msg(p) : NULL;
	if (*msg && (*msg)->nargs < 2)
		*msg = NULL;
	return p;
}

/* Walk stored text in a mode; the whole-filter values are handled by the caller. */
static enum xfilter_result walk_text(struct walk *w, const char *text)
{
	const struct imap_msg *m;
	struct imap_parser *p = parse_text(text, &m);
	enum xfilter_result r;
	if (!m) {
		if (w->err && w->errlen)
			snprintf(w->err, w->errlen, "criteria are not valid IMAP");
		r = XFILTER_BAD;
	} else {
		r = walk_run(w, m->args + 1, m->nargs - 1);
	}
	imap_parser_free(p);
	return r;
}

enum xfilter_result xfilter_canonical_text(const char *text, struct buf *out, char *err, size_t errlen)
{
	const struct imap_msg *m;
	struct imap_parser *p = parse_text(text, &m);
	enum xfilter_result r;
	if (!m) {
		snprintf(err, errlen, "criteria are not valid IMAP search keys");
		r = XFILTER_BAD;
	} else {
		r = xfilter_canonical(m->args + 1, m->nargs - 1, out, err, errlen);
	}
	imap_parser_free(p);
	return r;
}

bool xfilter_is_all(const char *value)
{
	return !value || strcmp(value, XFILTER_ALL) == 0;
}

bool xfilter_is_none(const char *value)
{
	return value && strcmp(value, XFILTER_NONE) == 0;
}

enum xfilter_result xfilter_check_text(const char *text, char *err, size_t errlen)
{
	if (xfilter_is_all(text) || xfilter_is_none(text))
		return XFILTER_OK;
	if (strlen(text) > XFILTER_MAX_TEXT) {
		snprintf(err, errlen, "criteria longer than %d bytes", XFILTER_MAX_TEXT);
		return XFILTER_BAD;
	}
	struct walk w = {.mode = WALK_SCAN, .err = err, .errlen = errlen};
	return walk_text(&w, text);
}

void xfilter_response_text(const char *canonical, struct buf *out)
{
	if (xfilter_is_all(canonical) || xfilter_is_none(canonical)) {
		buf_append_str(out, canonical ? canonical : XFILTER_ALL);
		return;
	}
	struct walk w = {.mode = WALK_RESPONSE, .out = out};
	walk_text(&w, canonical);
}

bool xfilter_uses_days(const char *canonical)
{
	if (xfilter_is_all(canonical) || xfilter_is_none(canonical))
		return false;
	struct walk w = {.mode = WALK_SCAN};
	return walk_text(&w, canonical) == XFILTER_OK && w.days;
}

bool xfilter_needs_utf8(const char *canonical)
{
	if (xfilter_is_all(canonical) || xfilter_is_none(canonical))
		return false;
	for (const unsigned char *p = (const unsigned char *)canonical; *p; p++)
		if (*p >= 0x80)
			return true;
	return false;
}

int xfilter_resolve(const char *canonical, long today, struct buf *out)
{
	if (xfilter_is_all(canonical)) {
		buf_append_str(out, "ALL");
		return 0;
	}
	if (xfilter_is_none(canonical)) {
		buf_append_str(out, "NOT ALL");
		return 0;
	}
	struct walk w = {.mode = WALK_RESOLVE, .out = out, .today = today};
	return walk_text(&w, canonical) == XFILTER_OK ? 0 : -1;
}

int xfilter_aging_keys(const char *canonical, long old_day, long new_day, struct buf *out)
{
	if (xfilter_is_all(canonical) || xfilter_is_none(canonical) || new_day <= old_day)
		return 0;
	struct walk scan = {.mode = WALK_SCAN};
	if (walk_text(&scan, canonical) != XFILTER_OK)
		return -1;
	if (!scan.days)
		return 0;
	/* A DAYSBEFORETODAY n turned false for arrival days in [old - n, new - n):
	 * the band from the oldest such start to the newest such end. */
	char since[16], before[16];
	xfilter_format_date(old_day - scan.max_days, since, sizeof(since));
	xfilter_format_date(new_day - scan.min_days, before, sizeof(before));
	buf_printf(out, "SINCE %s BEFORE %s NOT (", since, before);
	if (xfilter_resolve(canonical, new_day, out) < 0)
		return -1;
	buf_append_str(out, ")");
	return 0;
}

/* ------------------------------------------------------------------------ */
/* the command                                                               */

enum xfilter_result xfilter_parse_command(const struct imap_arg *args, size_t nargs, struct xfilter_cmd *out,
                                          char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (nargs < 3 || !imap_arg_is_string(&args[0]) || args[1].type != IMAP_ARG_ATOM) {
		snprintf(err, errlen, "XFILTER needs a mailbox (or ALL), V, N or B, and GET, NONE, ALL or criteria");
		return XFILTER_BAD;
	}
	if (imap_arg_is_atom(&args[1], "V"))
		out->which = XFILTER_VIEW;
	else if (imap_arg_is_atom(&args[1], "N"))
		out->which = XFILTER_NOTIFY;
	else if (imap_arg_is_atom(&args[1], "B"))
		out->which = XFILTER_BOTH;
	else {
		snprintf(err, errlen, "XFILTER: the second argument is V (view), N (notification) or B (both), not %.*s",
		         (int)(args[1].len > 20 ? 20 : args[1].len), args[1].str);
		return XFILTER_BAD;
	}
	if (memchr(args[0].str, '\0', args[0].len) || args[0].len == 0) {
		snprintf(err, errlen, "XFILTER: bad mailbox name");
		return XFILTER_BAD;
	}
	/* The atom ALL is every folder; a quoted "ALL" is a mailbox of that name. */
	if (!(args[0].type == IMAP_ARG_ATOM && imap_arg_is_atom(&args[0], "ALL"))) {
		out->mailbox = xmalloc(args[0].len + 1);
		memcpy(out->mailbox, args[0].str, args[0].len);
		out->mailbox[args[0].len] = '\0';
		if (strcasecmp(out->mailbox, "INBOX") == 0)
			strcpy(out->mailbox, "INBOX");
	}
	if (nargs == 3 && imap_arg_is_atom(&args[2], "GET")) {
		out->get = true;
		return XFILTER_OK;
	}
	struct buf v;
	buf_init(&v, 0);
	enum xfilter_result r = xfilter_canonical(args + 2, nargs - 2, &v, err, errlen);
	if (r != XFILTER_OK) {
		buf_free(&v);
		xfilter_cmd_free(out);
		return r;
	}
	buf_append(&v, "", 1);
	out->value = xstrdup((const char *)buf_head(&v));
	buf_free(&v);
	return XFILTER_OK;
}

void xfilter_cmd_free(struct xfilter_cmd *c)
{
	free(c->mailbox);
	free(c->value);
	memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------------------ */
/* a device's filters                                                        */

void xfilter_set_init(struct xfilter_set *s)
{
	s->e = NULL;
	s->n = 0;
}

void xfilter_set_free(struct xfilter_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->e[i].mailbox);
		free(s->e[i].view);
		free(s->e[i].notify);
	}
	free(s->e);
	xfilter_set_init(s);
}

static struct xfilter_entry *entry_find(const struct xfilter_set *s, const char *mailbox)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->e[i].mailbox, mailbox) == 0)
			return &s->e[i];
	return NULL;
}

static char **slot(struct xfilter_entry *e, enum xfilter_which kind)
{
	return kind == XFILTER_VIEW ? &e->view : &e->notify;
}

/* Drop entries with nothing set. */
static void set_compact(struct xfilter_set *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (!s->e[i].view && !s->e[i].notify) {
			free(s->e[i].mailbox);
			continue;
		}
		s->e[k++] = s->e[i];
	}
	s->n = k;
}

void xfilter_set_put(struct xfilter_set *s, const char *mailbox, enum xfilter_which kind, const char *value)
{
	if (kind == XFILTER_BOTH) {
		xfilter_set_put(s, mailbox, XFILTER_VIEW, value);
		xfilter_set_put(s, mailbox, XFILTER_NOTIFY, value);
		return;
	}
	if (!*mailbox) {
		for (size_t i = 0; i < s->n; i++) {
			char **v = slot(&s->e[i], kind);
			free(*v);
			*v = NULL;
		}
	}
	struct xfilter_entry *e = entry_find(s, mailbox);
	if (!e && value) {
		s->e = xrealloc(s->e, (s->n + 1) * sizeof(*s->e));
		e = &s->e[s->n++];
		memset(e, 0, sizeof(*e));
		e->mailbox = xstrdup(mailbox);
	}
	if (e) {
		char **v = slot(e, kind);
		free(*v);
		*v = value ? xstrdup(value) : NULL;
	}
	set_compact(s);
}

const char *xfilter_set_get(const struct xfilter_set *s, const char *mailbox, enum xfilter_which kind)
{
	const struct xfilter_entry *e = mailbox ? entry_find(s, mailbox) : NULL;
	if (e && *slot((struct xfilter_entry *)e, kind))
		return *slot((struct xfilter_entry *)e, kind);
	e = entry_find(s, "");
	if (e && *slot((struct xfilter_entry *)e, kind))
		return *slot((struct xfilter_entry *)e, kind);
	return XFILTER_ALL;
}

bool xfilter_set_has_views(const struct xfilter_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->e[i].view && !xfilter_is_all(s->e[i].view))
			return true;
	return false;
}

bool xfilter_push_keys(const struct xfilter_set *s, const char *mailbox, long today, struct buf *out)
{
	const char *v = xfilter_set_get(s, mailbox, XFILTER_VIEW);
	const char *n = xfilter_set_get(s, mailbox, XFILTER_NOTIFY);
	if (xfilter_is_none(v) || xfilter_is_none(n))
		return false;
	if (xfilter_is_all(v) && xfilter_is_all(n)) {
		buf_append_str(out, "ALL");
		return true;
	}
	buf_append_str(out, "(");
	xfilter_resolve(v, today, out);
	buf_append_str(out, ") (");
	xfilter_resolve(n, today, out);
	buf_append_str(out, ")");
	return true;
}
