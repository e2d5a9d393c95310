/*
 * pimap_cmd.c - the P-IMAP grammar of the gateway as pure functions (see
 * pimap_cmd.h): the "user#P<device>@domain" login name, the six
 * preferences of XSETPIMAPPREF / XGETPIMAPPREF(S) with their canonical
 * stored form, the FETCH items a NEW_FORMAT push asks the store for, and the
 * XPROVISION listing.
 *
 * Every value a client sets is validated and re-serialised here, so what the
 * state database stores, what XGETPIMAPPREFS echoes and what is sent to the
 * store are always text this module produced. No I/O, no logging.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pimap_cmd.h"

/* Client text quoted back in an error message is cut to this many bytes:
 * the message ends up in a tagged NO line, which must stay short. */
#define PIMAP_ERR_ECHO_MAX 64

/* Line-length limit for re-parsing a stored NEW_FORMAT value: the value plus
 * the "t X " prefix and the CRLF. */
#define PIMAP_STORED_LINE_MAX (PIMAP_MAX_PREF_VALUE + 16)

static const char *const pref_names[PIMAP_PREF_COUNT] = {
	[PIMAP_PREF_OUTBAND_ADDRESS] = "PIMAP_OUTBAND_ADDRESS",
	[PIMAP_PREF_OUTBAND_CHANNEL] = "PIMAP_OUTBAND_CHANNEL",
	[PIMAP_PREF_OUTBAND_FORMAT] = "PIMAP_OUTBAND_FORMAT",
	[PIMAP_PREF_INBAND_NEW_FORMAT] = "PIMAP_INBAND_NEW_FORMAT",
	[PIMAP_PREF_INBAND_PUSH] = "PIMAP_INBAND_PUSH",
	[PIMAP_PREF_EVENT_FILTER] = "PIMAP_EVENT_FILTER",
	[PIMAP_PREF_FOLDER_STATUS] = "PIMAP_FOLDER_STATUS",
};

static const char *const pref_defaults[PIMAP_PREF_COUNT] = {
	[PIMAP_PREF_OUTBAND_ADDRESS] = "",
	[PIMAP_PREF_OUTBAND_CHANNEL] = "NONE",
	[PIMAP_PREF_OUTBAND_FORMAT] = "EMN",
	[PIMAP_PREF_INBAND_NEW_FORMAT] = "NONE",
	[PIMAP_PREF_INBAND_PUSH] = "OFF",
	[PIMAP_PREF_EVENT_FILTER] = "ALL",
	[PIMAP_PREF_FOLDER_STATUS] = "OFF",
};

/* The -12 prose spells the NEW_FORMAT preference with a hyphen. */
#define PIMAP_NEW_FORMAT_ALIAS "PIMAP_IN-BAND_NEW_FORMAT"

/* What outband.c can deliver; the configuration may offer fewer (struct
 * pimap_pref_policy): a client must never be told it can pick a channel
 * nobody serves. WEBHOOK (an HTTPS POST) is ours, not
 * the draft's: SMS and WAP gateways are gone, push services took their place. */
const char *const pimap_outband_channels[] = {"UDP", "WEBHOOK", "NONE", NULL};

/* Every channel the draft names (-07..-12), offered or not: a client asking
 * for one of these hears "not offered" rather than "unknown". */
static const char *const draft_channels[] = {"SMS", "GSMSMS", "WAP_PUSH", "WAPWDP", "MMS", "UDP", "SIP", "NONE",
                                             NULL};

static const char *const format_values[] = {"EMN", "EXTENDED", NULL};
static const char *const push_values[] = {"ON", "OFF", NULL};
static const char *const filter_values[] = {"ALL", "NEW", "NONE", NULL};

/* The preferences whose value is one word from a fixed list. */
static const char *const *const pref_keywords[PIMAP_PREF_COUNT] = {
	[PIMAP_PREF_OUTBAND_FORMAT] = format_values,
	[PIMAP_PREF_INBAND_PUSH] = push_values,
	[PIMAP_PREF_EVENT_FILTER] = filter_values,
	[PIMAP_PREF_FOLDER_STATUS] = push_values,
};

/* RFC 3501 fetch macros and what they stand for (UID excluded: the push
 * puts it first itself). */
static const struct {
	const char *name;
	const char *items;
} fetch_macros[] = {
	{"ALL", "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE"},
	{"FAST", "FLAGS INTERNALDATE RFC822.SIZE"},
	{"FULL", "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY"},
};

/* Fetch attributes without a section that NEW_FORMAT accepts. RFC822 and
 * RFC822.TEXT are left out: fetching them sets \Seen. */
static const char *const plain_fetch_atts[] = {
	"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.HEADER", NULL,
};

/* ---- small helpers -------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Client text made safe to quote in an error (which goes back to the client
 * in a status line): non-printable bytes become "?", long text is cut with
 * "...". dst must hold PIMAP_ERR_ECHO_MAX + 4 bytes.
 */
#define ECHO_BUF_SIZE (PIMAP_ERR_ECHO_MAX + 4)
static const char *echo_text(char dst[ECHO_BUF_SIZE], const char *s, size_t len)
{
	size_t n = len < PIMAP_ERR_ECHO_MAX ? len : PIMAP_ERR_ECHO_MAX;

	for (size_t i = 0; i < n; i++)
		dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (len > n)
		memcpy(&dst[n], "...", 4);
	else
		dst[n] = '\0';
	return dst;
}

static char ascii_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* s[0..len) equals word, ignoring ASCII case (embedded NULs never match). */
static bool word_eq(const char *s, size_t len, const char *word)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (word[i] == '\0' || ascii_upper(s[i]) != ascii_upper(word[i]))
			return false;
	return word[i] == '\0';
}

/* Index of s in a NULL-terminated word list, case-insensitively, or -1. */
static int word_index(const char *s, size_t len, const char *const *words)
{
	for (int i = 0; words[i]; i++)
		if (word_eq(s, len, words[i]))
			return i;
	return -1;
}

static void append_upper(struct buf *out, const char *s, size_t len)
{
	uint8_t *p = buf_reserve(out, len);

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)ascii_upper(s[i]);
	buf_commit(out, len);
}

static char *xmemdup(const char *s, size_t len)
{
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* ---- login name ----------------------------------------------------------- */

static bool is_device_id_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '_' || c == '-';
}

int pimap_login_parse(const char *name, size_t len, struct pimap_login *out, char *err, size_t errlen)
{
	size_t at, sep, dev_len;
	bool have_sep = false;

	out->store_user = NULL;
	out->device_id = NULL;
	if (len == 0) {
		set_err(err, errlen, "empty login name");
		return -1;
	}
	if (len > PIMAP_MAX_USER_NAME) {
		set_err(err, errlen, "login name longer than %d bytes", PIMAP_MAX_USER_NAME);
		return -1;
	}
	if (memchr(name, '\0', len)) {
		set_err(err, errlen, "NUL byte in login name");
		return -1;
	}

	/* the domain follows the last "@" (a domain has none) */
	at = len;
	for (size_t i = len; i > 0; i--) {
		if (name[i - 1] == '@') {
			at = i - 1;
			break;
		}
	}
	if (at + 1 == len) {
		set_err(err, errlen, "empty domain in login name");
		return -1;
	}
	/* the last "#P" of the local part: a user name may itself contain "#P" */
	sep = 0;
	for (size_t i = at; i >= 2; i--) {
		if (name[i - 2] == '#' && name[i - 1] == 'P') {
			sep = i - 2;
			have_sep = true;
			break;
		}
	}

	if (!have_sep) {
		if (at == 0) {
			set_err(err, errlen, "empty user name");
			return -1;
		}
		out->store_user = xmemdup(name, len);
		return 0;
	}

	if (sep == 0) {
		set_err(err, errlen, "empty user name");
		return -1;
	}
	dev_len = at - (sep + 2);
	if (dev_len == 0) {
		set_err(err, errlen, "empty device id after \"#P\"");
		return -1;
	}
	if (dev_len > PIMAP_MAX_DEVICE_ID) {
		set_err(err, errlen, "device id longer than %d bytes", PIMAP_MAX_DEVICE_ID);
		return -1;
	}
	for (size_t i = sep + 2; i < at; i++) {
		if (!is_device_id_char(name[i])) {
			set_err(err, errlen, "invalid character in device id (allowed: A-Z a-z 0-9 . _ -)");
			return -1;
		}
	}

	out->store_user = xmalloc(sep + (len - at) + 1);
	memcpy(out->store_user, name, sep);
	memcpy(out->store_user + sep, name + at, len - at);
	out->store_user[sep + (len - at)] = '\0';
	out->device_id = xmemdup(name + sep + 2, dev_len);
	return 0;
}

void pimap_login_free(struct pimap_login *login)
{
	free(login->store_user);
	free(login->device_id);
	login->store_user = NULL;
	login->device_id = NULL;
}

/* ---- preference table ----------------------------------------------------- */

void pimap_prefs_init(struct pimap_prefs *prefs)
{
	for (int i = 0; i < PIMAP_PREF_COUNT; i++)
		prefs->value[i] = xstrdup(pref_defaults[i]);
}

void pimap_prefs_free(struct pimap_prefs *prefs)
{
	for (int i = 0; i < PIMAP_PREF_COUNT; i++) {
		free(prefs->value[i]);
		prefs->value[i] = NULL;
	}
}

/* dst must be initialised (pimap_prefs_init or an earlier copy); its old values are freed. */
void pimap_prefs_copy(struct pimap_prefs *dst, const struct pimap_prefs *src)
{
	if (dst == src)
		return;
	for (int i = 0; i < PIMAP_PREF_COUNT; i++) {
		char *v = xstrdup(src->value[i]);
		free(dst->value[i]);
		dst->value[i] = v;
	}
}

const char *pimap_pref_name(enum pimap_pref_id id)
{
	if ((int)id < 0 || id >= PIMAP_PREF_COUNT)
		return NULL;
	return pref_names[id];
}

int pimap_pref_lookup(const char *name, size_t len)
{
	for (int i = 0; i < PIMAP_PREF_COUNT; i++)
		if (word_eq(name, len, pref_names[i]))
			return i;
	if (word_eq(name, len, PIMAP_NEW_FORMAT_ALIAS))
		return PIMAP_PREF_INBAND_NEW_FORMAT;
	return -1;
}

/* ---- fetch attributes (PIMAP_INBAND_NEW_FORMAT) --------------------------- */

/*
 * A byte of a header field name inside HEADER.FIELDS (...): RFC 5322 ftext
 * (printable ASCII but ":") without the bytes that are IMAP syntax around
 * it (parentheses, quotes, brackets, list wildcards, literal braces), so the
 * canonical form can always write names as bare atoms.
 */
static bool is_header_name_char(char c)
{
	return c > 0x20 && c < 0x7f && !strchr(":()\"\\[]{%*", c);
}

/* Read a uint32 at s[*i] (1-10 digits). nonzero: refuse 0 and a leading zero. */
static bool read_u32(const char *s, size_t len, size_t *i, bool nonzero, uint32_t *out)
{
	uint64_t v = 0;
	size_t start = *i;

	if (start >= len || !is_digit(s[start]))
		return false;
	if (nonzero && s[start] == '0')
		return false;
	while (*i < len && is_digit(s[*i])) {
		v = v * 10 + (uint64_t)(s[*i] - '0');
		if (v > UINT32_MAX)
			return false;
		(*i)++;
	}
	*out = (uint32_t)v;
	return true;
}

/* s[*i..] starts with keyword kw (any case) followed by SP or "]". */
static bool match_section_word(const char *s, size_t len, size_t *i, const char *kw)
{
	size_t n = strlen(kw);

	if (len - *i <= n || !word_eq(s + *i, n, kw) || (s[*i + n] != ' ' && s[*i + n] != ']'))
		return false;
	*i += n;
	return true;
}

/* " (NAME NAME ...)" after HEADER.FIELDS[.NOT]; names may be quoted. */
static bool canon_header_list(const char *s, size_t len, size_t *i, struct buf *out)
{
	size_t p = *i;

	if (p + 1 >= len || s[p] != ' ' || s[p + 1] != '(')
		return false;
	buf_append_str(out, " (");
	p += 2;
	for (bool first = true;; first = false) {
		bool quoted = p < len && s[p] == '"';
		size_t start;

		if (!first)
			buf_append_str(out, " ");
		if (quoted)
			p++;
		start = p;
		while (p < len && is_header_name_char(s[p]))
			p++;
		if (p == start)
			return false;
		append_upper(out, s + start, p - start);
		if (quoted) {
			if (p >= len || s[p] != '"')
				return false;
			p++;
		}
		if (p < len && s[p] == ')')
			break;
		if (p >= len || s[p] != ' ')
			return false;
		p++;
	}
	buf_append_str(out, ")");
	*i = p + 1;
	return true;
}

/*
 * RFC 3501 section (or RFC 3516 section-binary when binary) starting just
 * after "[" at s[*i]; leaves *i after the closing "]". Appends the canonical
 * text including both brackets.
 */
static bool canon_section(const char *s, size_t len, size_t *i, bool binary, struct buf *out)
{
	size_t p = *i;
	bool part = false;

	buf_append_str(out, "[");
	/* section-part = nz-number *("." nz-number) */
	while (p < len && is_digit(s[p])) {
		uint32_t n;
		if (!read_u32(s, len, &p, true, &n))
			return false;
		buf_printf(out, "%s%u", part ? "." : "", (unsigned)n);
		part = true;
		if (p + 1 < len && s[p] == '.' && is_digit(s[p + 1]))
			p++;
		else
			break;
	}
	if (!binary && p < len && s[p] != ']') {
		/* section-text after a part needs its ".", section-msgtext alone does not */
		if (part) {
			if (s[p] != '.')
				return false;
			p++;
			buf_append_str(out, ".");
		}
		if (match_section_word(s, len, &p, "HEADER.FIELDS.NOT")) {
			buf_append_str(out, "HEADER.FIELDS.NOT");
			if (!canon_header_list(s, len, &p, out))
				return false;
		} else if (match_section_word(s, len, &p, "HEADER.FIELDS")) {
			buf_append_str(out, "HEADER.FIELDS");
			if (!canon_header_list(s, len, &p, out))
				return false;
		} else if (match_section_word(s, len, &p, "HEADER")) {
			buf_append_str(out, "HEADER");
		} else if (match_section_word(s, len, &p, "TEXT")) {
			buf_append_str(out, "TEXT");
		} else if (part && match_section_word(s, len, &p, "MIME")) {
			buf_append_str(out, "MIME");
		} else {
			return false;
		}
	}
	if (p >= len || s[p] != ']')
		return false;
	buf_append_str(out, "]");
	*i = p + 1;
	return true;
}

/* "<" number "." nz-number ">" at s[*i]; the caller has seen the "<". */
static bool canon_partial(const char *s, size_t len, size_t *i, struct buf *out)
{
	size_t p = *i + 1;
	uint32_t offset, count;

	if (!read_u32(s, len, &p, false, &offset))
		return false;
	if (p >= len || s[p] != '.')
		return false;
	p++;
	if (!read_u32(s, len, &p, true, &count))
		return false;
	if (p >= len || s[p] != '>')
		return false;
	buf_printf(out, "<%u.%u>", (unsigned)offset, (unsigned)count);
	*i = p + 1;
	return true;
}

/*
 * One fetch attribute as the imap parser hands it over: a single atom, also
 * for "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]<0.100>" (the parser keeps a
 * bracketed section, spaces and parentheses included, inside the atom).
 * Appends the canonical upper-case form, or fails with err.
 */
static int canon_fetch_att(const struct imap_arg *arg, bool allow_macro, struct buf *out, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		bool binary;  /* section-binary: only a part number */
		bool partial; /* <offset.count> allowed */
	} sectioned[] = {
		{"BODY", false, true},
		{"BODY.PEEK", false, true},
		{"BINARY.PEEK", true, true},
		{"BINARY.SIZE", true, false},
	};
	char echo[ECHO_BUF_SIZE];
	const char *s = arg->str;
	size_t len, p, name_len;
	const char *bracket;

	if (arg->type != IMAP_ARG_ATOM) {
		set_err(err, errlen, "fetch attributes are atoms, not %s",
		        arg->type == IMAP_ARG_LIST ? "nested lists" : "strings");
		return -1;
	}
	len = arg->len;
	bracket = memchr(s, '[', len);
	if (bracket == NULL) {
		if (word_index(s, len, plain_fetch_atts) >= 0) {
			append_upper(out, s, len);
			return 0;
		}
		for (size_t m = 0; allow_macro && m < sizeof(fetch_macros) / sizeof(fetch_macros[0]); m++) {
			if (word_eq(s, len, fetch_macros[m].name)) {
				buf_append_str(out, fetch_macros[m].name);
				return 0;
			}
		}
		set_err(err, errlen, "unknown fetch attribute %s", echo_text(echo, s, len));
		return -1;
	}

	name_len = (size_t)(bracket - s);
	for (size_t k = 0; k < sizeof(sectioned) / sizeof(sectioned[0]); k++) {
		if (!word_eq(s, name_len, sectioned[k].name))
			continue;
		buf_append_str(out, sectioned[k].name);
		p = name_len + 1;
		if (!canon_section(s, len, &p, sectioned[k].binary, out)) {
			set_err(err, errlen, "invalid section in fetch attribute %s", echo_text(echo, s, len));
			return -1;
		}
		if (p < len && s[p] == '<' && sectioned[k].partial && !canon_partial(s, len, &p, out)) {
			set_err(err, errlen, "invalid <offset.count> in fetch attribute %s", echo_text(echo, s, len));
			return -1;
		}
		if (p != len) {
			set_err(err, errlen, "unexpected text after the section in fetch attribute %s",
			        echo_text(echo, s, len));
			return -1;
		}
		return 0;
	}
	set_err(err, errlen, "unknown fetch attribute %s", echo_text(echo, s, len));
	return -1;
}

/* NONE, a macro, one attribute, or a list of attributes (macros allowed in
 * a list, for the -01 example "(ALL BODY[])"). */
static int canon_new_format(const struct imap_arg *val, struct buf *out, char *err, size_t errlen)
{
	if (val->type == IMAP_ARG_ATOM) {
		if (word_eq(val->str, val->len, "NONE")) {
			buf_append_str(out, "NONE");
			return 0;
		}
		for (size_t m = 0; m < sizeof(fetch_macros) / sizeof(fetch_macros[0]); m++) {
			if (word_eq(val->str, val->len, fetch_macros[m].name)) {
				buf_append_str(out, fetch_macros[m].name);
				return 0;
			}
		}
		buf_append_str(out, "(");
		if (canon_fetch_att(val, false, out, err, errlen) < 0)
			return -1;
		buf_append_str(out, ")");
		return 0;
	}
	if (val->type != IMAP_ARG_LIST) {
		set_err(err, errlen, "%s takes NONE, ALL, FAST, FULL or fetch attributes, not a string",
		        pref_names[PIMAP_PREF_INBAND_NEW_FORMAT]);
		return -1;
	}
	if (val->list_count == 0) {
		set_err(err, errlen, "empty fetch attribute list");
		return -1;
	}
	buf_append_str(out, "(");
	for (size_t i = 0; i < val->list_count; i++) {
		if (i)
			buf_append_str(out, " ");
		if (canon_fetch_att(&val->list[i], true, out, err, errlen) < 0)
			return -1;
	}
	buf_append_str(out, ")");
	return 0;
}

/* ---- preference values ---------------------------------------------------- */

/* One of words (any case), stored upper case. */
static int canon_keyword(enum pimap_pref_id id, const struct imap_arg *val, const char *const *words,
                         struct buf *out, char *err, size_t errlen)
{
	char echo[ECHO_BUF_SIZE];
	int k = word_index(val->str, val->len, words);

	if (k < 0) {
		struct buf allowed;
		buf_init(&allowed, 0);
		for (int i = 0; words[i]; i++)
			buf_printf(&allowed, "%s%s", i ? " " : "", words[i]);
		buf_append(&allowed, "", 1);
		set_err(err, errlen, "%s must be one of (%s), not %s", pref_names[id], (const char *)buf_head(&allowed),
		        echo_text(echo, val->str, val->len));
		buf_free(&allowed);
		return -1;
	}
	buf_append_str(out, words[k]);
	return 0;
}

static int canon_channel(const struct imap_arg *val, const char *const *offered, struct buf *out, char *err,
                         size_t errlen)
{
	char echo[ECHO_BUF_SIZE];
	int k = word_index(val->str, val->len, offered);

	if (k >= 0) {
		buf_append_str(out, offered[k]);
		return 0;
	}
	if (word_index(val->str, val->len, draft_channels) >= 0 ||
	    word_index(val->str, val->len, pimap_outband_channels) >= 0)
		set_err(err, errlen, "channel %s is not offered by this server (see XPROVISION)",
		        echo_text(echo, val->str, val->len));
	else
		set_err(err, errlen, "unknown channel %s (see XPROVISION)", echo_text(echo, val->str, val->len));
	return -1;
}

/* Free text, but it must be printable ASCII so it can always be echoed as a
 * quoted string (no CR/LF, no NUL, no 8-bit). */
static int canon_address(const struct imap_arg *val, const struct pimap_pref_policy *policy, struct buf *out,
                         char *err, size_t errlen)
{
	if (val->len > PIMAP_MAX_PREF_VALUE) {
		set_err(err, errlen, "%s is longer than %d bytes", pref_names[PIMAP_PREF_OUTBAND_ADDRESS],
		        PIMAP_MAX_PREF_VALUE);
		return -1;
	}
	for (size_t i = 0; i < val->len; i++) {
		unsigned char c = (unsigned char)val->str[i];
		if (c < 0x20 || c > 0x7e) {
			set_err(err, errlen, "%s must be printable ASCII", pref_names[PIMAP_PREF_OUTBAND_ADDRESS]);
			return -1;
		}
	}
	if (policy && policy->check_address) {
		char *text = xmemdup(val->str, val->len); /* NUL-terminated copy */
		int rc = policy->check_address(text, policy->ctx, policy->peer, err, errlen);
		free(text);
		if (rc < 0)
			return -1;
	}
	buf_append(out, val->str, val->len);
	return 0;
}

/* Validate val for preference id (a valid id) and append its canonical text to out. */
static int canon_value(enum pimap_pref_id id, const struct imap_arg *val, const struct pimap_pref_policy *policy,
                       struct buf *out, char *err, size_t errlen)
{
	if (id == PIMAP_PREF_INBAND_NEW_FORMAT)
		return canon_new_format(val, out, err, errlen);
	if (val->type == IMAP_ARG_LIST) {
		set_err(err, errlen, "%s takes a single value, not a list", pref_names[id]);
		return -1;
	}
	if (id == PIMAP_PREF_OUTBAND_ADDRESS)
		return canon_address(val, policy, out, err, errlen);
	if (id == PIMAP_PREF_OUTBAND_CHANNEL)
		return canon_channel(val, policy && policy->channels ? policy->channels : pimap_outband_channels, out,
		                     err, errlen);
	return canon_keyword(id, val, pref_keywords[id], out, err, errlen);
}

/* Validate, canonicalise and store; prefs is untouched on error. */
static int store_value(struct pimap_prefs *prefs, enum pimap_pref_id id, const struct imap_arg *val,
                       const struct pimap_pref_policy *policy, char *err, size_t errlen)
{
	struct buf canon;
	int rc = -1;

	buf_init(&canon, 0);
	if (canon_value(id, val, policy, &canon, err, errlen) < 0)
		goto out;
	if (buf_len(&canon) > PIMAP_MAX_PREF_VALUE) {
		set_err(err, errlen, "value of %s is longer than %d bytes", pref_names[id], PIMAP_MAX_PREF_VALUE);
		goto out;
	}
	free(prefs->value[id]);
	/* an empty buf has no storage: buf_head() would be NULL + 0 */
	prefs->value[id] = buf_len(&canon) ? xmemdup((const char *)buf_head(&canon), buf_len(&canon)) : xstrdup("");
	rc = 0;
out:
	buf_free(&canon);
	return rc;
}

/*
 * A stored NEW_FORMAT value is IMAP syntax ("(UID BODY.PEEK[...])"), so it is
 * read back with the real parser, as the body of a made-up command, and then
 * validated exactly like a client's XSETPIMAPPREF.
 */
static int set_stored_new_format(struct pimap_prefs *prefs, const char *value)
{
	static const struct imap_limits limits = {
		.max_line_length = PIMAP_STORED_LINE_MAX,
		.max_literal_size = 0,
		.max_list_depth = 2,
		.max_args = PIMAP_MAX_PREF_VALUE,
		.max_message_size = PIMAP_STORED_LINE_MAX,
	};
	struct imap_parser *parser;
	const struct imap_msg *msg;
	struct buf line;
	size_t consumed = 0;
	int rc = -1;

	if (strlen(value) > PIMAP_MAX_PREF_VALUE)
		return -1;
	parser = imap_parser_new(IMAP_PARSE_COMMANDS, &limits);
	if (parser == NULL)
		return -1;
	buf_init(&line, 0);
	buf_printf(&line, "t X %s\r\n", value);
	if (imap_parser_feed(parser, buf_head(&line), buf_len(&line), &consumed) == IMAP_PARSE_DONE &&
	    consumed == buf_len(&line) && (msg = imap_parser_msg(parser)) != NULL && msg->nargs == 2)
		rc = store_value(prefs, PIMAP_PREF_INBAND_NEW_FORMAT, &msg->args[1], NULL, NULL, 0);
	buf_free(&line);
	imap_parser_free(parser);
	return rc;
}

int pimap_pref_set_value(struct pimap_prefs *prefs, enum pimap_pref_id id, const char *value)
{
	struct imap_arg arg = {.type = IMAP_ARG_QUOTED};

	if ((int)id < 0 || id >= PIMAP_PREF_COUNT || value == NULL)
		return -1;
	if (id == PIMAP_PREF_INBAND_NEW_FORMAT)
		return set_stored_new_format(prefs, value);
	arg.str = value;
	arg.len = strlen(value);
	return store_value(prefs, id, &arg, NULL, NULL, 0);
}

int pimap_pref_set_args(struct pimap_prefs *prefs, const struct imap_arg *args, size_t nargs,
                        const struct pimap_pref_policy *policy, enum pimap_pref_id *id_out, char *err,
                        size_t errlen)
{
	char echo[ECHO_BUF_SIZE];
	int id;

	if (nargs == 0) {
		set_err(err, errlen, "missing preference name");
		return -1;
	}
	if (args[0].type == IMAP_ARG_LIST) {
		set_err(err, errlen, "preference name expected, not a list");
		return -1;
	}
	id = pimap_pref_lookup(args[0].str, args[0].len);
	/* -01 wrote "PIMAP_INBAND_NEW_FORMAT_(ALL BODY[])": the parser splits
	 * that into the atom "PIMAP_INBAND_NEW_FORMAT_" and a list. */
	if (id < 0 && args[0].len > 1 && args[0].str[args[0].len - 1] == '_' && nargs >= 2 &&
	    args[1].type == IMAP_ARG_LIST &&
	    pimap_pref_lookup(args[0].str, args[0].len - 1) == PIMAP_PREF_INBAND_NEW_FORMAT)
		id = PIMAP_PREF_INBAND_NEW_FORMAT;
	if (id < 0) {
		set_err(err, errlen, "unknown preference %s", echo_text(echo, args[0].str, args[0].len));
		return -1;
	}
	if (nargs < 2) {
		set_err(err, errlen, "missing value for %s", pref_names[id]);
		return -1;
	}
	if (nargs > 2) {
		set_err(err, errlen, "%s takes one value (use a parenthesised list for several)", pref_names[id]);
		return -1;
	}
	if (store_value(prefs, (enum pimap_pref_id)id, &args[1], policy, err, errlen) < 0)
		return -1;
	if (id_out)
		*id_out = (enum pimap_pref_id)id;
	return 0;
}

/* ---- XGETPIMAPPREFS ------------------------------------------------------- */

/*
 * What we write without quotes: RFC 3501 ATOM-CHAR minus "[". "[" is an
 * ATOM-CHAR, but parsers (ours, and clients') read "x[" as the start of a
 * BODY[...] section that runs to its "]": an address "a[b" written bare
 * swallowed the rest of the XGETPIMAPPREF list (found by fuzz_pimap_cmd).
 */
static bool is_atom_char(char c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\[]", c);
}

/* A value as an atom when it is one (and is not NIL, which means something
 * else), otherwise as a quoted string. */
static void append_astring(struct buf *out, const char *v)
{
	size_t len = strlen(v);
	bool atom = len > 0 && !word_eq(v, len, "NIL");

	for (size_t i = 0; atom && i < len; i++)
		atom = is_atom_char(v[i]);
	if (atom) {
		buf_append(out, v, len);
		return;
	}
	buf_append_str(out, "\"");
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '"' || v[i] == '\\')
			buf_append_str(out, "\\");
		buf_append(out, &v[i], 1);
	}
	buf_append_str(out, "\"");
}

static void append_pref(const struct pimap_prefs *prefs, enum pimap_pref_id id, bool first, struct buf *out)
{
	const char *v = prefs->value[id];

	buf_printf(out, "%s%s ", first ? "" : " ", pref_names[id]);
	/* a NEW_FORMAT list is already IMAP syntax */
	if (id == PIMAP_PREF_INBAND_NEW_FORMAT && v[0] == '(')
		buf_append_str(out, v);
	else
		append_astring(out, v);
}

int pimap_prefs_format_get(const struct pimap_prefs *prefs, const char *verb, const struct imap_arg *args,
                           size_t nargs, struct buf *out, char *err, size_t errlen)
{
	char echo[ECHO_BUF_SIZE];
	const struct imap_arg *names = args;
	size_t n = nargs;

	/* "XGETPIMAPPREFS (A B)" and "XGETPIMAPPREF A B" name the same things */
	if (nargs == 1 && args[0].type == IMAP_ARG_LIST) {
		names = args[0].list;
		n = args[0].list_count;
	}
	/* validate everything first: on error nothing is appended */
	for (size_t i = 0; i < n; i++) {
		if (names[i].type == IMAP_ARG_LIST) {
			set_err(err, errlen, "preference names must be atoms, not lists");
			return -1;
		}
		if (pimap_pref_lookup(names[i].str, names[i].len) < 0) {
			set_err(err, errlen, "unknown preference %s", echo_text(echo, names[i].str, names[i].len));
			return -1;
		}
	}

	buf_append_str(out, "* ");
	append_upper(out, verb, strlen(verb));
	buf_append_str(out, " (");
	if (n == 0) {
		for (int id = 0; id < PIMAP_PREF_COUNT; id++)
			append_pref(prefs, (enum pimap_pref_id)id, id == 0, out);
	} else {
		for (size_t i = 0; i < n; i++)
			append_pref(prefs, (enum pimap_pref_id)pimap_pref_lookup(names[i].str, names[i].len), i == 0,
			            out);
	}
	buf_append_str(out, ")\r\n");
	return 0;
}

/* ---- FETCH items for a NEW_FORMAT push ------------------------------------ */

struct item_list {
	struct buf text; /* "(UID a b c" being built */
	size_t    *off;  /* start of each item in text */
	size_t    *len;
	size_t     count;
	size_t     cap;
};

/* Append one item unless an identical one is already there. */
static void item_add(struct item_list *items, const char *s, size_t len)
{
	for (size_t i = 0; i < items->count; i++)
		if (items->len[i] == len && memcmp(buf_head(&items->text) + items->off[i], s, len) == 0)
			return;
	if (items->count == items->cap) {
		items->cap = items->cap ? items->cap * 2 : 16;
		items->off = xrealloc(items->off, items->cap * sizeof(items->off[0]));
		items->len = xrealloc(items->len, items->cap * sizeof(items->len[0]));
	}
	if (items->count)
		buf_append_str(&items->text, " ");
	items->off[items->count] = buf_len(&items->text);
	items->len[items->count] = len;
	items->count++;
	buf_append(&items->text, s, len);
}

/* Expand a macro (ALL FAST FULL) into items; false if s is not one. */
static bool item_add_macro(struct item_list *items, const char *s, size_t len)
{
	for (size_t m = 0; m < sizeof(fetch_macros) / sizeof(fetch_macros[0]); m++) {
		const char *p;
		if (!word_eq(s, len, fetch_macros[m].name))
			continue;
		p = fetch_macros[m].items;
		while (*p) {
			size_t n = strcspn(p, " ");
			item_add(items, p, n);
			p += n;
			if (*p == ' ')
				p++;
		}
		return true;
	}
	return false;
}

/* One canonical attribute, rewritten so that fetching it cannot set \Seen. */
static void item_add_peek(struct item_list *items, const char *s, size_t len)
{
	static const char body[] = "BODY[";
	static const char peek[] = "BODY.PEEK[";
	struct buf tmp;

	/* (UID needs no case: it is the first item, and item_add drops repeats) */
	if (item_add_macro(items, s, len))
		return;
	if (word_eq(s, len, "RFC822.HEADER")) {
		item_add(items, "BODY.PEEK[HEADER]", strlen("BODY.PEEK[HEADER]"));
		return;
	}
	if (len >= sizeof(body) - 1 && memcmp(s, body, sizeof(body) - 1) == 0) {
		buf_init(&tmp, 0);
		buf_append(&tmp, peek, sizeof(peek) - 1);
		buf_append(&tmp, s + sizeof(body) - 1, len - (sizeof(body) - 1));
		item_add(items, (const char *)buf_head(&tmp), buf_len(&tmp));
		buf_free(&tmp);
		return;
	}
	item_add(items, s, len);
}

bool pimap_new_format_fetch_items(const struct pimap_prefs *prefs, struct buf *out)
{
	const char *v = prefs->value[PIMAP_PREF_INBAND_NEW_FORMAT];
	struct item_list items = {.count = 0};
	size_t len = strlen(v);

	if (len == 0 || word_eq(v, len, "NONE"))
		return false;
	buf_init(&items.text, 0);
	item_add(&items, "UID", 3);
	if (v[0] == '(' && len >= 2 && v[len - 1] == ')') {
		/* split the canonical list at spaces outside a section's brackets
		 * (a section may hold "HEADER.FIELDS (A B)") */
		size_t start = 1, depth = 0;
		for (size_t i = 1; i < len; i++) {
			if (v[i] == '[') {
				depth++;
			} else if (v[i] == ']' && depth) {
				depth--;
			} else if ((v[i] == ' ' && depth == 0) || i == len - 1) {
				if (i > start)
					item_add_peek(&items, v + start, i - start);
				start = i + 1;
			}
		}
	} else {
		item_add_peek(&items, v, len); /* a macro */
	}
	buf_append_str(out, "(");
	buf_append(out, buf_head(&items.text), buf_len(&items.text));
	buf_append_str(out, ")");
	buf_free(&items.text);
	free(items.off);
	free(items.len);
	return true;
}

/* ---- XPROVISION ----------------------------------------------------------- */

static void provision_words(struct buf *out, enum pimap_pref_id id, const char *const *words)
{
	buf_printf(out, "* XPROVISION XPIMAPPREF %s (", pref_names[id]);
	for (int i = 0; words[i]; i++)
		buf_printf(out, "%s%s", i ? " " : "", words[i]);
	buf_append_str(out, ")\r\n");
}

void pimap_provision_format(const struct pimap_provision_limit *limits, size_t nlimits,
                            const char *const *channels, struct buf *out)
{
	buf_printf(out, "* XPROVISION XPIMAPPREF %s (astring)\r\n", pref_names[PIMAP_PREF_OUTBAND_ADDRESS]);
	provision_words(out, PIMAP_PREF_OUTBAND_CHANNEL, channels ? channels : pimap_outband_channels);
	provision_words(out, PIMAP_PREF_OUTBAND_FORMAT, pref_keywords[PIMAP_PREF_OUTBAND_FORMAT]);
	buf_printf(out, "* XPROVISION XPIMAPPREF %s (NONE ALL FAST FULL fetch-att-list)\r\n",
	           pref_names[PIMAP_PREF_INBAND_NEW_FORMAT]);
	provision_words(out, PIMAP_PREF_INBAND_PUSH, pref_keywords[PIMAP_PREF_INBAND_PUSH]);
	provision_words(out, PIMAP_PREF_EVENT_FILTER, pref_keywords[PIMAP_PREF_EVENT_FILTER]);
	provision_words(out, PIMAP_PREF_FOLDER_STATUS, pref_keywords[PIMAP_PREF_FOLDER_STATUS]);
	for (size_t i = 0; i < nlimits; i++)
		buf_printf(out, "* XPROVISION LIMIT %s %llu\r\n", limits[i].name, limits[i].value);
}

/* ---- XZIP ----------------------------------------------------------------- */

/* Commands XZIP does not wrap: they change the connection, not a reply. */
static const char *const xzip_refused[] = {"IDLE", "STARTTLS", "COMPRESS", "AUTHENTICATE", "LOGOUT", "XZIP",
                                           "LOGIN", NULL};

struct imap_parser *pimap_xzip_parse_inner(const struct imap_msg *m, const struct imap_limits *limits, char *err,
                                           size_t errlen)
{
	if (m->kind != IMAP_MSG_COMMAND || m->nargs < 3 || m->args[1].type != IMAP_ARG_ATOM) {
		set_err(err, errlen, "XZIP needs an inner tag and command");
		return NULL;
	}
	/* The parser takes exactly one SP between tag, command name and the
	 * first argument, and the name is an atom written as it was parsed. */
	size_t skip = strlen(m->tag) + 1 + m->args[0].len + 1;
	if (skip >= m->raw_len) {
		set_err(err, errlen, "XZIP needs an inner command");
		return NULL;
	}
	struct imap_parser *p = imap_parser_new(IMAP_PARSE_COMMANDS, limits);
	size_t used = 0;
	enum imap_parse_result r = imap_parser_feed(p, m->raw + skip, m->raw_len - skip, &used);
	if (r != IMAP_PARSE_DONE || used != m->raw_len - skip) {
		set_err(err, errlen, "XZIP inner command: %s", r == IMAP_PARSE_ERROR ? imap_parser_error(p) : "incomplete");
		imap_parser_free(p);
		return NULL;
	}
	const struct imap_msg *inner = imap_parser_msg(p);
	/*
	 * The checks apply to what will run: the inner parse, not the outer
	 * arguments. They can differ: "z[ IDLE ]" is one atom to the outer
	 * parser (a BODY[...]-style section) but the tag "z[" and the command
	 * IDLE to the inner one, which slipped IDLE, LOGOUT or a nested XZIP
	 * past a check of the outer arguments (found by fuzz_pimap_cmd). An
	 * inner tag other than the outer argument is refused outright.
	 */
	if (strlen(inner->tag) != m->args[1].len || memcmp(inner->tag, m->args[1].str, m->args[1].len) != 0) {
		set_err(err, errlen, "XZIP inner tag is not a plain tag");
		imap_parser_free(p);
		return NULL;
	}
	for (const char *const *refused = xzip_refused; *refused; refused++) {
		if (imap_arg_is_atom(&inner->args[0], *refused)) {
			set_err(err, errlen, "XZIP cannot wrap %s", *refused);
			imap_parser_free(p);
			return NULL;
		}
	}
	if (strcmp(inner->tag, m->tag) == 0) {
		set_err(err, errlen, "XZIP inner tag must differ from the outer tag");
		imap_parser_free(p);
		return NULL;
	}
	return p;
}
