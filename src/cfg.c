/*
 * cfg.c - table-driven configuration loader (YAML through libyaml).
 *
 * The loader knows nothing about any particular daemon: it walks the YAML
 * tree, flattens nested mappings into dotted names, looks each name up in the
 * caller's struct cfg_key table and stores the parsed value at
 * config + offset. Values from the file, from the command line (cfg_set) and
 * the table's own defaults all go through parse_scalar(), so there is one
 * syntax and one set of bounds everywhere.
 *
 * libyaml's document API is used rather than the event API because every
 * error must point at the offending node and nodes keep their start mark;
 * config files are small, so holding the whole tree costs nothing.
 *
 * Number parsing and formatting use strtod/printf, which follow LC_NUMERIC:
 * the daemons never call setlocale(), so the decimal point is always '.'.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "buf.h"
#include "cfg.h"

/*
 * A config file bigger than this is a wrong path (a log, a mailbox), not a
 * config: refuse it instead of feeding megabytes to the YAML parser.
 */
#define CFG_MAX_FILE_SIZE (1024 * 1024)

/*
 * Aliases can make a YAML graph arbitrarily deep (or cyclic); real configs
 * nest two or three levels. Beyond this the walk stops with an error.
 */
#define CFG_MAX_DEPTH 16

/* Longest dotted key name the loader will build while walking the tree. */
#define CFG_MAX_KEY 256

/* At most this much of a bad value is quoted back in an error message. */
#define CFG_ECHO_MAX 48

#define KIB ((unsigned long long)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* A parsed value, held apart from the config so a bad value never clobbers a good one. */
struct value {
	union {
		char      *s;    /* CFG_STRING: malloc'd */
		char     **list; /* CFG_STRLIST: malloc'd, NULL-terminated, items malloc'd */
		bool       b;    /* CFG_BOOL */
		long long  i;    /* CFG_INT */
		size_t     size; /* CFG_SIZE */
		double     d;    /* CFG_DURATION, seconds */
		int        e;    /* CFG_ENUM, index into enum_values */
	} u;
};

/* ---- errors ------------------------------------------------------------- */

/* Fill err (never NULL here) with a position and a formatted message. */
static void verr(struct cfg_error *err, const char *file, int line, int column,
                 const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void verr(struct cfg_error *err, const char *file, int line, int column,
                 const char *fmt, va_list ap)
{
	snprintf(err->file, sizeof(err->file), "%s", file);
	err->line = line;
	err->column = column;
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

static void set_err(struct cfg_error *err, const char *file, int line, int column,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void set_err(struct cfg_error *err, const char *file, int line, int column,
                    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(err, file, line, column, fmt, ap);
	va_end(ap);
}

/*
 * snprintf into a message buffer where truncation is intended: messages are
 * capped by struct cfg_error, and going through va_list keeps gcc's
 * -Wformat-truncation (at -O2) from flagging every long "%s".
 */
static void msgf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msgf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/*
 * Copy at most CFG_ECHO_MAX bytes of a user value into buf for an error
 * message, replacing control characters so a multi-line scalar cannot break
 * the one-line log format.
 */
static void echo_value(const char *s, char *buf, size_t len)
{
	size_t i, n = 0;

	for (i = 0; s[i] && n + 4 < len && i < CFG_ECHO_MAX; i++)
		buf[n++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	if (s[i] && n + 4 < len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
}

/* ---- formatting shared by error messages and cfg_dump ------------------- */

/* Shortest exact spelling of a size: "64K", "1M", "2G", or plain bytes. */
static void fmt_size(unsigned long long v, char *buf, size_t len)
{
	if (v && v % GIB == 0)
		snprintf(buf, len, "%lluG", v / GIB);
	else if (v && v % MIB == 0)
		snprintf(buf, len, "%lluM", v / MIB);
	else if (v && v % KIB == 0)
		snprintf(buf, len, "%lluK", v / KIB);
	else
		snprintf(buf, len, "%llu", v);
}

/*
 * Spelling of a duration that parse_duration() reads back to the same double:
 * whole hours/minutes/seconds get a unit, fractions get the shortest decimal
 * that round-trips ("0.25s"). No exponent: the parser does not accept one.
 */
static void fmt_duration(double d, char *buf, size_t len)
{
	size_t n;
	int prec;

	if (d >= 0 && d < 1e15 && d == (double)(long long)d) {
		long long s = (long long)d;

		if (s && s % 3600 == 0)
			snprintf(buf, len, "%lldh", s / 3600);
		else if (s && s % 60 == 0)
			snprintf(buf, len, "%lldm", s / 60);
		else
			snprintf(buf, len, "%llds", s);
		return;
	}
	for (prec = 1; prec < 17; prec++) {
		snprintf(buf, len, "%.*f", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (prec == 17)
		snprintf(buf, len, "%.*f", prec, d);
	n = strlen(buf);
	if (n + 1 < len) {
		buf[n] = 's';
		buf[n + 1] = '\0';
	}
}

/* What a key expects, for "expected X, got Y" messages. */
static void expected_desc(const struct cfg_key *k, char *buf, size_t len)
{
	size_t n;

	switch (k->type) {
	case CFG_STRING:
		snprintf(buf, len, "a string");
		return;
	case CFG_STRLIST:
		snprintf(buf, len, "a list of strings");
		return;
	case CFG_BOOL:
		snprintf(buf, len, "a boolean (true/false)");
		return;
	case CFG_INT:
		snprintf(buf, len, "an integer");
		return;
	case CFG_SIZE:
		snprintf(buf, len, "a size (bytes, or a number with a K, M or G suffix)");
		return;
	case CFG_DURATION:
		snprintf(buf, len, "a duration (seconds, or a number with a ms, s, m or h suffix)");
		return;
	case CFG_ENUM:
		snprintf(buf, len, "one of:");
		for (const char *const *v = k->enum_values; v && *v; v++) {
			n = strlen(buf);
			snprintf(buf + n, len - n, "%s %s", v == k->enum_values ? "" : ",", *v);
		}
		return;
	}
	snprintf(buf, len, "a value");
}

/* "must be between MIN and MAX" in the key's own units. */
static void bounds_message(const struct cfg_key *k, char *msg, size_t msglen)
{
	char lo[64], hi[64];

	if (k->type == CFG_DURATION) {
		fmt_duration(k->min, lo, sizeof(lo));
		fmt_duration(k->max, hi, sizeof(hi));
		msgf(msg, msglen, "must be between %s and %s", lo, hi);
	} else {
		msgf(msg, msglen, "must be between %.0f and %.0f", k->min, k->max);
	}
}

/* ---- scalar parsers ------------------------------------------------------- */

static void free_list(char **list)
{
	if (!list)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

/* Append a copy of s (n bytes) to a NULL-terminated list of *count items. */
static void list_push(char ***list, size_t *count, const char *s, size_t n)
{
	char *item = xmalloc(n + 1);

	memcpy(item, s, n);
	item[n] = '\0';
	*list = xrealloc(*list, (*count + 2) * sizeof(**list));
	(*list)[(*count)++] = item;
	(*list)[*count] = NULL;
}

/*
 * Split a command-line / default list "a, b,c" into a new list (caller frees
 * with free_list). Blank input is the empty list. Returns 0, or -1 with msg
 * set for an empty item ("a,,b"), which is always a typo.
 */
static int split_list(const char *s, char ***out, char *msg, size_t msglen)
{
	char **list = xcalloc(1, sizeof(*list));
	size_t count = 0;
	const char *p = s + strspn(s, " \t");

	if (*p) {
		for (;;) {
			size_t n = strcspn(p, ",");
			const char *next = p + n;

			while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
				n--;
			if (!n) {
				free_list(list);
				msgf(msg, msglen, "empty item in list");
				return -1;
			}
			list_push(&list, &count, p, n);
			if (!*next)
				break;
			p = next + 1;
			p += strspn(p, " \t");
		}
	}
	*out = list;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const struct {
		const char *word;
		bool        value;
	} words[] = {
		{"true", true}, {"yes", true}, {"on", true},
		{"false", false}, {"no", false}, {"off", false},
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcasecmp(s, words[i].word) == 0) {
			*out = words[i].value;
			return 0;
		}
	}
	return -1;
}

/* Returns 0, -1 (not an integer) or 1 (does not fit a long long: out of any bounds). */
static int parse_int(const char *s, long long *out)
{
	const char *p = s;
	char *end;

	if (*p == '-' || *p == '+')
		p++;
	/* strtoll would skip leading blanks and accept "" as 0; insist on a digit. */
	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	*out = strtoll(s, &end, 10);
	if (*end)
		return -1;
	return errno == ERANGE ? 1 : 0;
}

/* Returns 0, -1 (bad syntax) or 1 (does not fit a size_t). */
static int parse_size(const char *s, size_t *out)
{
	static const struct {
		const char        *suffix;
		unsigned long long mult;
	} units[] = {
		{"", 1},
		{"k", KIB}, {"kib", KIB},
		{"m", MIB}, {"mib", MIB},
		{"g", GIB}, {"gib", GIB},
	};
	unsigned long long v = 0;
	bool overflow = false;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (ULLONG_MAX - 9) / 10)
			overflow = true;
		else
			v = v * 10 + (unsigned long long)(*p - '0');
	}
	p += strspn(p, " ");
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		if (overflow || v > SIZE_MAX / units[i].mult)
			return 1;
		*out = (size_t)(v * units[i].mult);
		return 0;
	}
	return -1;
}

/* Seconds from "30", "1.5", "250ms", "30s", "5m", "1h". Returns 0 or -1. */
static int parse_duration(const char *s, double *out)
{
	const char *p = s;
	char *end;
	double d;

	/* Digits, then optionally '.' and digits: no sign, exponent, hex, inf or nan. */
	if (*p < '0' || *p > '9')
		return -1;
	p += strspn(p, "0123456789");
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		p += strspn(p, "0123456789");
	}
	d = strtod(s, &end);
	if (end != p)
		return -1;
	p += strspn(p, " ");
	if (!*p || strcmp(p, "s") == 0)
		*out = d;
	else if (strcmp(p, "ms") == 0)
		*out = d / 1000; /* divide: d * 0.001 is inexact for "250ms" */
	else if (strcmp(p, "m") == 0)
		*out = d * 60;
	else if (strcmp(p, "h") == 0)
		*out = d * 3600;
	else
		return -1;
	return 0;
}

/*
 * Parse s as a value for k into *v (strings and lists newly allocated; the
 * caller stores them with store() or frees them). A STRLIST is split on
 * commas: this is the command-line and default syntax. Returns 0, or -1 with
 * the problem (without the key name) in msg.
 */
static int parse_scalar(const struct cfg_key *k, const char *s, struct value *v,
                        char *msg, size_t msglen)
{
	char desc[256], shown[CFG_ECHO_MAX + 8];
	int rc = -1;

	switch (k->type) {
	case CFG_STRING:
		if (k->validate && k->validate(s, msg, msglen) < 0)
			return -1;
		v->u.s = xstrdup(s);
		return 0;
	case CFG_STRLIST:
		if (split_list(s, &v->u.list, msg, msglen) < 0)
			return -1;
		for (char **item = v->u.list; k->validate && item && *item; item++) {
			if (k->validate(*item, msg, msglen) < 0) {
				free_list(v->u.list);
				v->u.list = NULL;
				return -1;
			}
		}
		return 0;
	case CFG_BOOL:
		rc = parse_bool(s, &v->u.b);
		break;
	case CFG_INT:
		rc = parse_int(s, &v->u.i);
		if (rc == 0 && ((double)v->u.i < k->min || (double)v->u.i > k->max))
			rc = 1;
		break;
	case CFG_SIZE:
		rc = parse_size(s, &v->u.size);
		if (rc == 0 && ((double)v->u.size < k->min || (double)v->u.size > k->max))
			rc = 1;
		break;
	case CFG_DURATION:
		rc = parse_duration(s, &v->u.d);
		if (rc == 0 && (v->u.d < k->min || v->u.d > k->max))
			rc = 1;
		break;
	case CFG_ENUM:
		for (int i = 0; k->enum_values && k->enum_values[i]; i++) {
			if (strcasecmp(s, k->enum_values[i]) == 0) {
				v->u.e = i;
				rc = 0;
				break;
			}
		}
		break;
	}
	if (rc == 0)
		return 0;
	if (rc == 1) {
		bounds_message(k, msg, msglen);
		return -1;
	}
	expected_desc(k, desc, sizeof(desc));
	echo_value(s, shown, sizeof(shown));
	msgf(msg, msglen, "expected %s, got '%s'", desc, shown);
	return -1;
}

/* Move v into the config field for k, freeing the string or list it replaces. */
static void store(const struct cfg_key *k, void *config, struct value *v)
{
	void *field = (char *)config + k->offset;

	switch (k->type) {
	case CFG_STRING:
		free(*(char **)field);
		*(char **)field = v->u.s;
		break;
	case CFG_STRLIST:
		free_list(*(char ***)field);
		*(char ***)field = v->u.list;
		break;
	case CFG_BOOL:
		*(bool *)field = v->u.b;
		break;
	case CFG_INT:
		*(long long *)field = v->u.i;
		break;
	case CFG_SIZE:
		*(size_t *)field = v->u.size;
		break;
	case CFG_DURATION:
		*(double *)field = v->u.d;
		break;
	case CFG_ENUM:
		*(int *)field = v->u.e;
		break;
	}
}

/* ---- table helpers ---------------------------------------------------------- */

const struct cfg_key *cfg_find(const struct cfg_key *table, const char *key)
{
	for (const struct cfg_key *k = table; k->name; k++)
		if (strcmp(k->name, key) == 0)
			return k;
	return NULL;
}

/* True if some key lives under "prefix." (prefix names a section, e.g. "limits"). */
static bool is_section(const struct cfg_key *table, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const struct cfg_key *k = table; k->name; k++)
		if (strncmp(k->name, prefix, n) == 0 && k->name[n] == '.')
			return true;
	return false;
}

int cfg_init_defaults(const struct cfg_key *table, void *config, struct cfg_error *err)
{
	struct cfg_error dummy;
	char msg[sizeof(err->message)];
	struct value v;

	if (!err)
		err = &dummy;
	memset(err, 0, sizeof(*err));
	for (const struct cfg_key *k = table; k->name; k++) {
		/* A NULL default is "" so string fields are never NULL after init. */
		if (parse_scalar(k, k->default_value ? k->default_value : "", &v, msg, sizeof(msg)) < 0) {
			set_err(err, "defaults", 0, 0, "%s: bad default: %s", k->name, msg);
			return -1;
		}
		store(k, config, &v);
	}
	return 0;
}

int cfg_set(const struct cfg_key *table, void *config, const char *key, const char *value,
            struct cfg_error *err)
{
	struct cfg_error dummy;
	char msg[sizeof(err->message)];
	const struct cfg_key *k;
	struct value v;

	if (!err)
		err = &dummy;
	memset(err, 0, sizeof(*err));
	k = cfg_find(table, key);
	if (!k) {
		set_err(err, "command line", 0, 0, "unknown key '%s'", key);
		return -1;
	}
	if (!value) {
		set_err(err, "command line", 0, 0, "%s: missing value", key);
		return -1;
	}
	if (parse_scalar(k, value, &v, msg, sizeof(msg)) < 0) {
		set_err(err, "command line", 0, 0, "%s: %s", key, msg);
		return -1;
	}
	store(k, config, &v);
	return 0;
}

void cfg_free(const struct cfg_key *table, void *config)
{
	for (const struct cfg_key *k = table; k->name; k++) {
		void *field = (char *)config + k->offset;

		if (k->type == CFG_STRING) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (k->type == CFG_STRLIST) {
			free_list(*(char ***)field);
			*(char ***)field = NULL;
		}
	}
}

void cfg_format_error(const struct cfg_error *err, char *buf, size_t len)
{
	if (!len)
		return;
	if (err->line > 0 && err->column > 0)
		snprintf(buf, len, "%s:%d:%d: %s", err->file, err->line, err->column, err->message);
	else if (err->line > 0)
		snprintf(buf, len, "%s:%d: %s", err->file, err->line, err->message);
	else
		snprintf(buf, len, "%s: %s", err->file, err->message);
}

/* ---- YAML loading ----------------------------------------------------------- */

/* Where this load first set a table entry, to report duplicates. */
struct seen {
	int line; /* 1-based line of the key; 0 = not set by this load */
};

/* State of one cfg_load_string() call. */
struct loader {
	const struct cfg_key *table;
	void                 *config;
	yaml_document_t      *doc;
	const char           *name; /* file name for errors, borrowed */
	struct cfg_error     *err;
	struct seen          *seen; /* one per table entry, malloc'd */
};

static void node_error(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void node_error(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(ld->err, ld->name, (int)node->start_mark.line + 1, (int)node->start_mark.column + 1,
	     fmt, ap);
	va_end(ap);
}

static const char *scalar_text(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

/* "\0" escapes survive into libyaml scalars; C strings cannot carry them. */
static bool scalar_has_nul(const yaml_node_t *node)
{
	return strlen(scalar_text(node)) != node->data.scalar.length;
}

bool cfg_yaml_scalar_is_null(const yaml_node_t *node)
{
	const char *s = scalar_text(node);

	if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	       strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

const char *cfg_yaml_node_kind(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a sequence";
	default:
		return "a scalar";
	}
}

/* A STRLIST from a YAML sequence of scalars. Returns 0 or -1 (error set). */
static int list_from_sequence(struct loader *ld, const struct cfg_key *k, yaml_node_t *seq,
                              char ***out)
{
	char **list = xcalloc(1, sizeof(*list));
	size_t count = 0;

	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     it < seq->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(ld->doc, *it);

		if (item->type != YAML_SCALAR_NODE) {
			node_error(ld, item, "%s: expected a string list item, got %s", k->name,
			           cfg_yaml_node_kind(item));
			goto fail;
		}
		if (scalar_has_nul(item)) {
			node_error(ld, item, "%s: NUL bytes are not allowed", k->name);
			goto fail;
		}
		/* An empty listener or name is always a mistake, never a wish. */
		if (item->data.scalar.length == 0 || cfg_yaml_scalar_is_null(item)) {
			node_error(ld, item, "%s: empty item in list", k->name);
			goto fail;
		}
		if (k->validate) {
			char msg[sizeof(ld->err->message)];
			if (k->validate(scalar_text(item), msg, sizeof(msg)) < 0) {
				node_error(ld, item, "%s: %s", k->name, msg);
				goto fail;
			}
		}
		list_push(&list, &count, scalar_text(item), item->data.scalar.length);
	}
	*out = list;
	return 0;
fail:
	free_list(list);
	return -1;
}

/* Store the YAML value node for table key k. key is the key node (for duplicates). */
static int set_from_node(struct loader *ld, const struct cfg_key *k, yaml_node_t *key,
                         yaml_node_t *value)
{
	struct seen *seen = &ld->seen[k - ld->table];
	char msg[sizeof(ld->err->message)], desc[256];
	struct value v;

	/* Same key through two spellings: "limits: {x: 1}" and "limits.x: 2". */
	if (seen->line) {
		node_error(ld, key, "duplicate key '%s' (first set at line %d)", k->name, seen->line);
		return -1;
	}
	seen->line = (int)key->start_mark.line + 1;

	if (value->type == YAML_SEQUENCE_NODE && k->type == CFG_STRLIST) {
		if (list_from_sequence(ld, k, value, &v.u.list) < 0)
			return -1;
		store(k, ld->config, &v);
		return 0;
	}
	if (value->type != YAML_SCALAR_NODE) {
		expected_desc(k, desc, sizeof(desc));
		node_error(ld, value, "%s: expected %s, got %s", k->name, desc, cfg_yaml_node_kind(value));
		return -1;
	}
	if (scalar_has_nul(value)) {
		node_error(ld, value, "%s: NUL bytes are not allowed", k->name);
		return -1;
	}
	if (k->type == CFG_STRLIST) {
		/* A single scalar is a one-item list, taken whole (no comma split); empty is none. */
		if (value->data.scalar.length && !cfg_yaml_scalar_is_null(value) && k->validate &&
		    k->validate(scalar_text(value), msg, sizeof(msg)) < 0) {
			node_error(ld, value, "%s: %s", k->name, msg);
			return -1;
		}
		v.u.list = xcalloc(1, sizeof(*v.u.list));
		if (value->data.scalar.length && !cfg_yaml_scalar_is_null(value)) {
			size_t count = 0;

			list_push(&v.u.list, &count, scalar_text(value), value->data.scalar.length);
		}
		store(k, ld->config, &v);
		return 0;
	}
	if (k->type == CFG_STRING && cfg_yaml_scalar_is_null(value)) {
		/* A null is "", checked as "" is: unchecked, "outband.listen:" loaded,
		 * and --dump-config's 'listen: ""' then did not (found by fuzz_cfg). */
		if (k->validate && k->validate("", msg, sizeof(msg)) < 0) {
			node_error(ld, value, "%s: %s", k->name, msg);
			return -1;
		}
		store(k, ld->config, &(struct value){.u.s = xstrdup("")});
		return 0;
	}
	if (parse_scalar(k, scalar_text(value), &v, msg, sizeof(msg)) < 0) {
		node_error(ld, value, "%s: %s", k->name, msg);
		return -1;
	}
	store(k, ld->config, &v);
	return 0;
}

/* Apply a mapping whose keys are relative to prefix ("" or "limits."). Returns 0 or -1. */
static int walk_mapping(struct loader *ld, yaml_node_t *map, const char *prefix, int depth)
{
	yaml_node_pair_t *first = map->data.mapping.pairs.start;

	if (depth > CFG_MAX_DEPTH) {
		node_error(ld, map, "mappings nested too deeply");
		return -1;
	}
	for (yaml_node_pair_t *pair = first; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = yaml_document_get_node(ld->doc, pair->key);
		yaml_node_t *value = yaml_document_get_node(ld->doc, pair->value);
		char path[CFG_MAX_KEY];
		const struct cfg_key *k;

		if (key->type != YAML_SCALAR_NODE) {
			node_error(ld, key, "keys must be plain names, got %s", cfg_yaml_node_kind(key));
			return -1;
		}
		if (scalar_has_nul(key)) {
			node_error(ld, key, "NUL bytes are not allowed in keys");
			return -1;
		}
		if ((size_t)snprintf(path, sizeof(path), "%s%s", prefix, scalar_text(key)) >= sizeof(path)) {
			node_error(ld, key, "key name too long");
			return -1;
		}
		/* libyaml accepts duplicate keys in one mapping; YAML says they are an error. */
		for (yaml_node_pair_t *prev = first; prev < pair; prev++) {
			yaml_node_t *pk = yaml_document_get_node(ld->doc, prev->key);

			if (pk->type == YAML_SCALAR_NODE && strcmp(scalar_text(pk), scalar_text(key)) == 0) {
				node_error(ld, key, "duplicate key '%s' (first set at line %d)", path,
				           (int)pk->start_mark.line + 1);
				return -1;
			}
		}
		k = cfg_find(ld->table, path);
		if (k) {
			if (set_from_node(ld, k, key, value) < 0)
				return -1;
		} else if (is_section(ld->table, path)) {
			if (value->type == YAML_MAPPING_NODE) {
				size_t n = strlen(path);

				if (n + 1 >= sizeof(path)) {
					node_error(ld, key, "key name too long");
					return -1;
				}
				path[n] = '.';
				path[n + 1] = '\0';
				if (walk_mapping(ld, value, path, depth + 1) < 0)
					return -1;
			} else if (!(value->type == YAML_SCALAR_NODE && cfg_yaml_scalar_is_null(value))) {
				/* A bare "limits:" (everything below commented out) is fine. */
				node_error(ld, value, "%s: expected a mapping of settings, got %s", path,
				           cfg_yaml_node_kind(value));
				return -1;
			}
		} else {
			node_error(ld, key, "unknown key '%s'", path);
			return -1;
		}
	}
	return 0;
}

/* Line and column (1-based, in bytes) of a byte offset, for libyaml reader errors. */
static void offset_position(const char *buf, size_t len, size_t offset, int *line, int *column)
{
	*line = 1;
	*column = 1;
	for (size_t i = 0; i < offset && i < len; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*column = 1;
		} else {
			(*column)++;
		}
	}
}

void cfg_yaml_error(const yaml_parser_t *p, const char *name, const char *buf, size_t len, struct cfg_error *err)
{
	const char *problem = p->problem ? p->problem : "unknown error";
	int line, column;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		set_err(err, name, 0, 0, "out of memory while parsing YAML");
		return;
	case YAML_READER_ERROR:
		/* Reader errors (bad encoding) carry a byte offset, not a mark. */
		offset_position(buf, len, p->problem_offset, &line, &column);
		if (p->problem_value != -1)
			set_err(err, name, line, column, "YAML syntax error: %s (byte 0x%02X)", problem,
			        (unsigned)p->problem_value & 0xff);
		else
			set_err(err, name, line, column, "YAML syntax error: %s", problem);
		return;
	default:
		line = (int)p->problem_mark.line + 1;
		column = (int)p->problem_mark.column + 1;
		if (p->context)
			set_err(err, name, line, column, "YAML syntax error: %s (%s at line %d, column %d)",
			        problem, p->context, (int)p->context_mark.line + 1,
			        (int)p->context_mark.column + 1);
		else
			set_err(err, name, line, column, "YAML syntax error: %s", problem);
		return;
	}
}

/* Apply one document's root node. Returns 0 or -1. */
static int apply_root(struct loader *ld, yaml_node_t *root)
{
	if (root->type == YAML_MAPPING_NODE)
		return walk_mapping(ld, root, "", 0);
	/* "---" alone, or "~": an empty document. */
	if (root->type == YAML_SCALAR_NODE && cfg_yaml_scalar_is_null(root))
		return 0;
	node_error(ld, root, "the top level must be a mapping of settings, got %s", cfg_yaml_node_kind(root));
	return -1;
}

/* cfg_yaml_load's callback for cfg_load_string: the document's settings. */
static int load_settings(struct cfg_yaml *y, yaml_node_t *root, void *ctx)
{
	struct loader *ld = ctx;

	ld->doc = y->doc;
	return root ? apply_root(ld, root) : 0; /* no root: empty or comments only */
}

int cfg_load_string(const struct cfg_key *table, void *config, const char *yaml, size_t len,
                    const char *name, struct cfg_error *err)
{
	struct cfg_error dummy;
	size_t nkeys = 0;
	int rc;

	if (!err)
		err = &dummy;
	memset(err, 0, sizeof(*err));
	if (!name)
		name = "<string>";
	while (table[nkeys].name)
		nkeys++;
	struct loader ld = {
		.table = table,
		.config = config,
		.name = name,
		.err = err,
		.seen = xcalloc(nkeys + 1, sizeof(*ld.seen)),
	};
	rc = cfg_yaml_load(name, yaml, len, load_settings, &ld, err);
	free(ld.seen);
	return rc;
}

int cfg_load_file(const struct cfg_key *table, void *config, const char *path, struct cfg_error *err)
{
	struct cfg_error dummy;
	char *data = NULL;
	size_t len = 0;
	int rc;

	if (!err)
		err = &dummy;
	memset(err, 0, sizeof(*err));
	if (cfg_read_file(path, CFG_MAX_FILE_SIZE, "a config file", &data, &len, err) < 0)
		return -1;
	rc = cfg_load_string(table, config, data, len, path, err);
	free(data);
	return rc;
}

/* ---- helpers for the other YAML loaders ---------------------------------------- */

void cfg_set_error(struct cfg_error *err, const char *file, int line, int column, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(err, file, line, column, fmt, ap);
	va_end(ap);
}

int cfg_parse_size(const char *s, size_t *out)
{
	return parse_size(s, out);
}

int cfg_read_file(const char *path, size_t max, const char *what, char **data, size_t *len, struct cfg_error *err)
{
	size_t cap = 0;
	FILE *f = fopen(path, "rb");

	*data = NULL;
	*len = 0;
	if (!f) {
		set_err(err, path, 0, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	for (;;) {
		size_t n;

		if (*len == cap) {
			cap = cap ? cap * 2 : 4096;
			*data = xrealloc(*data, cap);
		}
		n = fread(*data + *len, 1, cap - *len, f);
		*len += n;
		if (*len > max) {
			set_err(err, path, 0, 0, "file is larger than %zu bytes; not %s?", max, what);
			break;
		}
		if (n == 0) {
			if (ferror(f)) {
				set_err(err, path, 0, 0, "cannot read: %s", strerror(errno));
				break;
			}
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	free(*data);
	*data = NULL;
	*len = 0;
	return -1;
}

int cfg_yaml_load(const char *name, const char *text, size_t len, cfg_yaml_root_fn fn, void *ctx,
                  struct cfg_error *err)
{
	struct cfg_yaml y = {.name = name, .err = err};
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	int rc = -1;

	if (!yaml_parser_initialize(&parser)) {
		set_err(err, name, 0, 0, "out of memory while parsing YAML");
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	/* On failure yaml_parser_load() has already freed the document. */
	if (!yaml_parser_load(&parser, &doc)) {
		cfg_yaml_error(&parser, name, text, len, err);
		goto out;
	}
	y.doc = &doc;
	rc = fn(&y, yaml_document_get_root_node(&doc), ctx);
	yaml_document_delete(&doc);
	if (rc < 0)
		goto out;
	/* A second document would be silently ignored otherwise. */
	if (!yaml_parser_load(&parser, &doc)) {
		cfg_yaml_error(&parser, name, text, len, err);
		rc = -1;
		goto out;
	}
	root = yaml_document_get_root_node(&doc);
	if (root) {
		set_err(err, name, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1,
		        "only one YAML document is allowed");
		rc = -1;
	}
	yaml_document_delete(&doc);
out:
	yaml_parser_delete(&parser);
	return rc;
}

yaml_node_t *cfg_yaml_node(struct cfg_yaml *y, int id)
{
	return yaml_document_get_node(y->doc, id);
}

void cfg_yaml_node_error(struct cfg_yaml *y, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(y->err, y->name, (int)node->start_mark.line + 1, (int)node->start_mark.column + 1, fmt, ap);
	va_end(ap);
}

const char *cfg_echo(char out[64], const char *s, size_t len)
{
	size_t n = len < 60 ? len : 60;

	for (size_t i = 0; i < n; i++)
		out[i] = ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) ? '?' : s[i];
	if (n < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
	return out;
}

const char *cfg_yaml_string(struct cfg_yaml *y, yaml_node_t *val, const char *what, bool allow_empty)
{
	if (val->type != YAML_SCALAR_NODE) {
		cfg_yaml_node_error(y, val, "%s: expected a string, got %s", what, cfg_yaml_node_kind(val));
		return NULL;
	}
	if (scalar_has_nul(val)) {
		cfg_yaml_node_error(y, val, "%s: NUL bytes are not allowed", what);
		return NULL;
	}
	if (cfg_yaml_scalar_is_null(val) || val->data.scalar.length == 0) {
		if (allow_empty)
			return "";
		cfg_yaml_node_error(y, val, "%s: must not be empty", what);
		return NULL;
	}
	return scalar_text(val);
}

int cfg_yaml_map_slots(struct cfg_yaml *y, yaml_node_t *map, const char *const *keys, yaml_node_t **knodes,
                       yaml_node_t **vals, const char *where)
{
	char e[64];
	size_t nkeys = 0;

	while (keys[nkeys])
		nkeys++;
	for (size_t i = 0; i < nkeys; i++)
		knodes[i] = vals[i] = NULL;
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = cfg_yaml_node(y, pair->key), *v = cfg_yaml_node(y, pair->value);
		size_t i;

		if (k->type != YAML_SCALAR_NODE) {
			cfg_yaml_node_error(y, k, "keys must be plain names, got %s", cfg_yaml_node_kind(k));
			return -1;
		}
		for (i = 0; i < nkeys; i++)
			if (strcmp(scalar_text(k), keys[i]) == 0 && strlen(keys[i]) == k->data.scalar.length)
				break;
		if (i == nkeys) {
			cfg_yaml_node_error(y, k, "unknown key '%s'%s%s", cfg_echo(e, scalar_text(k), k->data.scalar.length),
			                    *where ? " in " : "", where);
			return -1;
		}
		if (vals[i]) {
			cfg_yaml_node_error(y, k, "duplicate key '%s' (first set at line %d)", keys[i],
			                    (int)knodes[i]->start_mark.line + 1);
			return -1;
		}
		knodes[i] = k;
		vals[i] = v;
	}
	return 0;
}

/* ---- dumping ------------------------------------------------------------------ */

/* s as a YAML double-quoted scalar that libyaml reads back byte for byte. */
static void put_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(out, "\\x%02X", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

/* One key: help comment, then "name: value" at the given indentation. */
static void dump_leaf(const struct cfg_key *k, const void *config, FILE *out, const char *leaf,
                      int depth)
{
	const void *field = (const char *)config + k->offset;
	int indent = depth * 2;
	char buf[64];

	if (k->help)
		fprintf(out, "%*s# %s\n", indent, "", k->help);
	fprintf(out, "%*s%s:", indent, "", leaf);
	switch (k->type) {
	case CFG_STRING: {
		const char *s = *(char *const *)field;

		fputc(' ', out);
		put_quoted(out, s ? s : "");
		break;
	}
	case CFG_STRLIST: {
		char *const *list = *(char **const *)field;

		if (!list || !*list) {
			fputs(" []", out);
			break;
		}
		for (; *list; list++) {
			fprintf(out, "\n%*s- ", indent + 2, "");
			put_quoted(out, *list);
		}
		break;
	}
	case CFG_BOOL:
		fprintf(out, " %s", *(const bool *)field ? "true" : "false");
		break;
	case CFG_INT:
		fprintf(out, " %lld", *(const long long *)field);
		break;
	case CFG_SIZE:
		fmt_size(*(const size_t *)field, buf, sizeof(buf));
		fprintf(out, " %s", buf);
		break;
	case CFG_DURATION:
		fmt_duration(*(const double *)field, buf, sizeof(buf));
		fprintf(out, " %s", buf);
		break;
	case CFG_ENUM: {
		int e = *(const int *)field, n = 0;

		while (k->enum_values && k->enum_values[n])
			n++;
		/* An out-of-range index is a bug elsewhere; make the dump fail to load. */
		if (e >= 0 && e < n)
			fprintf(out, " %s", k->enum_values[e]);
		else
			fprintf(out, " ~ # invalid value %d", e);
		break;
	}
	}
	fputc('\n', out);
}

/*
 * Dump every key under prefix (plen bytes, "" or "limits.") at this depth.
 * A section is written once, where its first key appears in the table, with
 * all its keys, so a table that interleaves sections still dumps (and reloads)
 * without duplicate keys.
 */
static void dump_level(const struct cfg_key *table, const void *config, FILE *out,
                       const char *prefix, size_t plen, int depth)
{
	bool any = false;

	for (const struct cfg_key *k = table; k->name; k++) {
		const char *rest = k->name + plen;
		const char *dot;
		size_t clen;
		bool done = false;

		if (strncmp(k->name, prefix, plen) != 0)
			continue;
		dot = strchr(rest, '.');
		clen = dot ? (size_t)(dot - rest) : 0;
		for (const struct cfg_key *j = table; dot && j < k; j++) {
			if (strncmp(j->name, prefix, plen) == 0 &&
			    strncmp(j->name + plen, rest, clen) == 0 && j->name[plen + clen] == '.') {
				done = true;
				break;
			}
		}
		if (done)
			continue;
		/* Blank line between top-level groups, for the reader. */
		if (depth == 0 && any)
			fputc('\n', out);
		any = true;
		if (!dot) {
			dump_leaf(k, config, out, rest, depth);
			continue;
		}
		fprintf(out, "%*s%.*s:\n", depth * 2, "", (int)clen, rest);
		dump_level(table, config, out, k->name, plen + clen + 1, depth + 1);
	}
}

void cfg_dump(const struct cfg_key *table, const void *config, FILE *out)
{
	dump_level(table, config, out, "", 0, 0);
}
