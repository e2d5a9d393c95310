/*
 * xfilter.h - XFILTER: view and notification filters (docs/PROTOCOL.md
 * section 10), parsed and validated.
 *
 * The -01 per-folder form of the draft:
 *
 *     XFILTER <mailbox|ALL> <V|N|B> <GET | NONE | ALL | criteria>
 *
 * where criteria are RFC 3501 search keys on immutable message properties
 * (FROM TO CC BCC SUBJECT HEADER BODY TEXT LARGER SMALLER SINCE BEFORE ON
 * SENTSINCE SENTBEFORE SENTON, combined with NOT, OR and parentheses) plus
 * DAYSBEFORETODAY n (the messages that arrived in the last n days; 0 is
 * today's mail). A key on something that changes (flags, keywords, MODSEQ)
 * is refused: a message's place in a view must never change behind the
 * client's back. DAYSBEFORETODAY is the one key whose result moves with the
 * date; it may therefore only be used positively (never under an odd number
 * of NOTs), so that messages only ever leave a view as they age, never
 * enter it in the middle.
 *
 * The module keeps criteria as canonical text (keys upper case, strings
 * quoted or as a LITERAL+ literal, dates as d-Mon-yyyy): that text is what
 * the gateway stores and what XFILTER GET answers. Before a criteria text is
 * sent to a store, xfilter_resolve() turns each DAYSBEFORETODAY n into
 * SINCE <today - n>.
 *
 * It also owns the table of RFC 3501 search keys and their arguments, which
 * the view engine (fview.c) uses to find the sequence sets in a client's
 * SEARCH.
 *
 * Pure: no I/O, no logging. "today" is a day number (days since 1970-01-01
 * of the local calendar date) that the caller computes (xfilter_today()).
 */
#ifndef PIMAP_XFILTER_H
#define PIMAP_XFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "imap_parse.h"

/* The canonical text of one filter: a VIP list of a few hundred addresses fits. */
#define XFILTER_MAX_TEXT 16384
/* Search keys in one filter (each FROM, NOT, OR, ... counts). */
#define XFILTER_MAX_KEYS 1024
/* Nesting of NOT, OR and parentheses. */
#define XFILTER_MAX_DEPTH 64
/* DAYSBEFORETODAY n: up to a century. */
#define XFILTER_MAX_DAYS 36500

/* The whole-filter values besides criteria. */
#define XFILTER_ALL  "ALL"   /* every message: no filter (the default view) */
#define XFILTER_NONE "NONE"  /* no message */

enum xfilter_which {
	XFILTER_VIEW = 1,   /* V */
	XFILTER_NOTIFY = 2, /* N */
	XFILTER_BOTH = 3,   /* B */
};

enum xfilter_result {
	XFILTER_OK = 0,
	XFILTER_BAD = -1,     /* syntax: the answer is BAD */
	XFILTER_REFUSED = -2, /* valid IMAP but not allowed in a filter (a mutable key): NO */
};

struct xfilter_cmd {
	char    *mailbox;   /* NULL: ALL (every folder); INBOX spelt "INBOX" */
	unsigned which;     /* XFILTER_VIEW and/or XFILTER_NOTIFY */
	bool     get;       /* GET: report, change nothing */
	char    *value;     /* SET: "ALL", "NONE" or canonical criteria (malloc'd) */
};

/*
 * Parse the arguments after the command name (args[0] is the mailbox).
 * Returns XFILTER_OK, or BAD/REFUSED with a message for the client in err.
 */
enum xfilter_result xfilter_parse_command(const struct imap_arg *args, size_t nargs, struct xfilter_cmd *out,
                                          char *err, size_t errlen);
void xfilter_cmd_free(struct xfilter_cmd *c);

/*
 * Validate criteria given as parsed search keys and append their canonical
 * text to out. A lone ALL or NONE is the whole-filter value of that name.
 */
enum xfilter_result xfilter_canonical(const struct imap_arg *keys, size_t nkeys, struct buf *out, char *err,
                                      size_t errlen);

/* Validate criteria given as text (search keys as a client would write them) and append the canonical text. */
enum xfilter_result xfilter_canonical_text(const char *text, struct buf *out, char *err, size_t errlen);

/* Validate a stored canonical text ("ALL", "NONE" or criteria). */
enum xfilter_result xfilter_check_text(const char *text, char *err, size_t errlen);

/* The value as XFILTER GET shows it (literals in the response form "{n}"). */
void xfilter_response_text(const char *canonical, struct buf *out);

/* True for the values that need no filtering (ALL) and that hide everything (NONE). */
bool xfilter_is_all(const char *value);
bool xfilter_is_none(const char *value);
/* The criteria use DAYSBEFORETODAY (the view changes with the date). */
bool xfilter_uses_days(const char *canonical);
/* The criteria hold a non-ASCII string: searches need CHARSET UTF-8. */
bool xfilter_needs_utf8(const char *canonical);

/*
 * The search keys to send to a store for `today`: DAYSBEFORETODAY n becomes
 * SINCE <today - n>; NONE becomes "NOT ALL"; otherwise the text is kept.
 * Returns 0, or -1 if the text is not valid criteria.
 */
int xfilter_resolve(const char *canonical, long today, struct buf *out);

/*
 * Search keys selecting the messages that match the criteria on day
 * old_day but no longer on new_day (> old_day): the band of arrival dates
 * in which a DAYSBEFORETODAY turned false, minus what still matches.
 * Empty (nothing written, returns 0) when the criteria have no
 * DAYSBEFORETODAY. -1 if the text is not valid criteria.
 */
int xfilter_aging_keys(const char *canonical, long old_day, long new_day, struct buf *out);

/* The local calendar date of t as days since 1970-01-01. */
long xfilter_today(time_t t);
/* "d-Mon-yyyy" for a day number (out: at least 12 bytes). */
void xfilter_format_date(long day, char *out, size_t outlen);
/* Parse "d-Mon-yyyy" (RFC 3501 date; day 1 or 2 digits): day number, or false. */
bool xfilter_parse_date(const char *s, size_t len, long *day);
/* Days since 1970-01-01 of a Gregorian date (month 1..12); false if no such date. */
bool xfilter_civil_day(int year, int month, int mday, long *day);

/* ---- RFC 3501 search keys (for the view engine) ---------------------- */

enum xfilter_arg {
	XFA_STRING,   /* astring */
	XFA_NUMBER,   /* number */
	XFA_DATE,     /* date */
	XFA_SET,      /* a UID set (UID) */
	XFA_ATOM,     /* a flag keyword */
};

enum xfilter_key_class {
	XFK_IMMUTABLE,  /* allowed in a filter */
	XFK_MUTABLE,    /* flags, keywords, MODSEQ: refused in a filter */
	XFK_MESSAGES,   /* names messages (UID): refused in a filter */
	XFK_RELATIVE,   /* YOUNGER/OLDER, save dates: refused in a filter */
	XFK_LOGIC,      /* NOT, OR */
};

struct xfilter_key {
	const char            *name;
	unsigned               nargs;      /* MODSEQ: 1, or 3 when the next argument is a string */
	enum xfilter_arg       arg[2];
	enum xfilter_key_class cls;
};

/* The search key named by atom a, or NULL (a sequence set, a list, an unknown key). */
const struct xfilter_key *xfilter_key_lookup(const struct imap_arg *a);
/* An atom that is a sequence set ("1:5,7,*") or "$" (a saved search result). */
bool xfilter_is_sequence_set(const struct imap_arg *a);

/* ---- a device's filters ------------------------------------------------ */

/*
 * The filters of one device: per mailbox (or ALL) a view and a notification
 * value. Lookup: the mailbox's own value, else the ALL value, else the
 * default (ALL for both: everything is shown and pushed).
 */
struct xfilter_entry {
	char *mailbox;  /* "" for ALL */
	char *view;     /* NULL: not set here */
	char *notify;
};

struct xfilter_set {
	struct xfilter_entry *e;
	size_t n;
};

void xfilter_set_init(struct xfilter_set *s);
void xfilter_set_free(struct xfilter_set *s);
/* Set (value) or clear (NULL) one value; mailbox "" is ALL. Setting ALL's
 * value also clears that kind of value of every mailbox (the draft: a new
 * filter for all folders replaces their own). */
void xfilter_set_put(struct xfilter_set *s, const char *mailbox, enum xfilter_which kind, const char *value);
/* The effective value for mailbox (never NULL). */
const char *xfilter_set_get(const struct xfilter_set *s, const char *mailbox, enum xfilter_which kind);
/* True when some mailbox has a view other than ALL (or ALL has one). */
bool xfilter_set_has_views(const struct xfilter_set *s);

/*
 * For out-band notification (and anything else that must decide whether new
 * mail in a folder is pushed): the search keys a new message must match to
 * be pushed, its view and notification filters together, for `today`.
 * Returns false when nothing of the folder is ever pushed (a view or a
 * notification filter NONE); else true with the keys in out ("ALL" when
 * everything passes). Run "UID SEARCH RETURN (ALL) [CHARSET UTF-8] UID
 * <new UIDs> <keys>" on a connection where the folder is selected (CHARSET
 * when xfilter_needs_utf8 says so of either value).
 */
bool xfilter_push_keys(const struct xfilter_set *s, const char *mailbox, long today, struct buf *out);

#endif
