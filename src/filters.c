/*
 * filters.c - the user's filter file (see filters.h).
 *
 * The file:
 *
 *   events: all | new | none          # optional: which changes are pushed
 *   groups:                           # optional: named lists, for YAML anchors
 *     vip: &vip [boss@example.com, family@example.org]
 *   exclude: [Junk, Trash]            # optional: folders shown empty
 *   folders:                          # optional: folder name or glob -> rules
 *     INBOX:
 *       view: {days: 14}
 *       notify: {from: *vip}
 *     "*":
 *       view: {max_size: 1M}
 *
 * A view or notify rule is "all", "none", or a mapping of conditions that
 * must all hold: days, since, before, max_size, min_size, from, to, cc,
 * subject, body, text (a string or a list: any of them), header (a
 * mapping of field names to a string or a list), search (RFC 3501 search
 * keys, for what the rest cannot say). Each becomes XFILTER criteria;
 * xfilter.c validates the result, so "search: SEEN" is refused with its
 * reason just like a client's XFILTER.
 */
#include "config.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "cfg.h"
#include "filters.h"
#include "imap_parse.h"
#include "imap_write.h"

struct filter_rule {
	char *folder;      /* name or glob */
	bool glob;
	bool exclude;
	char *view;        /* canonical value */
	char *notify;
};

struct filter_set {
	struct filter_rule *rules;
	size_t n;
	char *events;      /* "ALL"/"NEW"/"NONE" or NULL */
	const char **names; /* the non-glob folders, for filter_set_names */
	size_t nnames;
};

/* Keys that sound like conditions but name something that changes. */
static const char *const mutable_keys[] = {"unread", "read", "seen", "unseen", "flagged", "starred", "answered",
                                           "replied", "deleted", "draft", "keyword", "keywords", "new", "recent",
                                           "tag", "tags", "label", "labels", NULL};

static const char *const condition_keys[] = {"days", "since", "before", "max_size", "min_size", "from", "to", "cc",
                                             "subject", "body", "text", "header", "search", NULL};

/* ------------------------------------------------------------------------ */
/* conditions -> criteria                                                    */

static bool is_glob(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A list of strings (or one string) for key; the values go to out[]. Returns the count or -1. */
static int strings_of(struct cfg_yaml *y, yaml_node_t *v, const char *what, const char **out, size_t max)
{
	if (v->type == YAML_SCALAR_NODE) {
		const char *s = cfg_yaml_string(y, v, what, false);
		if (!s)
			return -1;
		out[0] = s;
		return 1;
	}
	if (v->type != YAML_SEQUENCE_NODE) {
		cfg_yaml_node_error(y, v, "%s: expected a string or a list of strings, got %s", what, cfg_yaml_node_kind(v));
		return -1;
	}
	size_t n = 0;
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *item = cfg_yaml_node(y, *it);
		if (n == max) {
			cfg_yaml_node_error(y, item, "%s: more than %zu values", what, max);
			return -1;
		}
		if (item->type != YAML_SCALAR_NODE) {
			cfg_yaml_node_error(y, item, "%s: expected a string, got %s", what, cfg_yaml_node_kind(item));
			return -1;
		}
		if (!(out[n] = cfg_yaml_string(y, item, what, false)))
			return -1;
		n++;
	}
	if (n == 0) {
		cfg_yaml_node_error(y, v, "%s: the list is empty", what);
		return -1;
	}
	return (int)n;
}

/* "OR (a) (b)" trees of depth log2(n): KEY "value" for each value (field for HEADER). */
static void or_tree(struct buf *out, const char *key, const char *field, const char **vals, size_t n)
{
	if (n == 1) {
		buf_append_str(out, key);
		buf_append(out, " ", 1);
		if (field) {
			imap_write_astring(out, field, strlen(field));
			buf_append(out, " ", 1);
		}
		imap_write_astring(out, vals[0], strlen(vals[0]));
		return;
	}
	size_t half = n / 2;
	buf_append_str(out, "OR (");
	or_tree(out, key, field, vals, half);
	buf_append_str(out, ") (");
	or_tree(out, key, field, vals + half, n - half);
	buf_append_str(out, ")");
}

/* "YYYY-MM-DD" (a YAML date) or "1-Feb-2024" as an IMAP date; false if it is no date. */
static bool date_of(const char *s, char *out, size_t outlen)
{
	int y, m, d;
	char tail;
	long day;
	if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3 && strlen(s) == 10 && xfilter_civil_day(y, m, d, &day)) {
		xfilter_format_date(day, out, outlen);
		return true;
	}
	if (xfilter_parse_date(s, strlen(s), &day)) {
		xfilter_format_date(day, out, outlen);
		return true;
	}
	return false;
}

static void sep(struct buf *b)
{
	if (buf_len(b))
		buf_append(b, " ", 1);
}

/* A rule's conditions as criteria text (AND of all). Returns 0 or -1. */
static int rule_criteria(struct cfg_yaml *y, yaml_node_t *map, const char *what, struct buf *out)
{
	yaml_node_t *k[13], *v[13];
	const char *vals[FILTERS_MAX_VALUES];
	char ctx[128];
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = cfg_yaml_node(y, pair->key);
		if (key->type != YAML_SCALAR_NODE)
			continue; /* cfg_yaml_map_slots says so */
		for (const char *const *mk = mutable_keys; *mk; mk++) {
			if (strcasecmp(scalar(key), *mk) == 0) {
				cfg_yaml_node_error(y, key, "%s: '%s' depends on flags, which change: a filter may only use "
				                    "what never changes about a message (days, since, before, max_size, "
				                    "min_size, from, to, cc, subject, body, text, header, search)", what, *mk);
				return -1;
			}
		}
	}
	if (cfg_yaml_map_slots(y, map, condition_keys, k, v, what) < 0)
		return -1;
	for (size_t i = 0; condition_keys[i]; i++) {
		if (!v[i])
			continue;
		const char *key = condition_keys[i];
		snprintf(ctx, sizeof(ctx), "%s.%s", what, key);
		if (strcmp(key, "days") == 0) {
			uint32_t n;
			const char *s = v[i]->type == YAML_SCALAR_NODE ? scalar(v[i]) : NULL;
			if (!s || !imap_parse_u32(s, strlen(s), &n) || n > XFILTER_MAX_DAYS) {
				cfg_yaml_node_error(y, v[i], "%s: expected a number of days (0 to %d), got %s", ctx, XFILTER_MAX_DAYS,
				                    s ? s : cfg_yaml_node_kind(v[i]));
				return -1;
			}
			sep(out);
			buf_printf(out, "DAYSBEFORETODAY %u", n);
		} else if (strcmp(key, "since") == 0 || strcmp(key, "before") == 0) {
			const char *s = cfg_yaml_string(y, v[i], ctx, false);
			char date[16];
			if (!s)
				return -1;
			if (!date_of(s, date, sizeof(date))) {
				char e[64];
				cfg_yaml_node_error(y, v[i], "%s: '%s' is not a date (write 2024-03-01)", ctx, cfg_echo(e, s, strlen(s)));
				return -1;
			}
			sep(out);
			buf_printf(out, "%s %s", strcmp(key, "since") == 0 ? "SINCE" : "BEFORE", date);
		} else if (strcmp(key, "max_size") == 0 || strcmp(key, "min_size") == 0) {
			const char *s = v[i]->type == YAML_SCALAR_NODE ? scalar(v[i]) : NULL;
			size_t n;
			if (!s || cfg_parse_size(s, &n) != 0 || n > UINT32_MAX) {
				cfg_yaml_node_error(y, v[i], "%s: expected a size such as 500K or 1M, got %s", ctx,
				                    s ? s : cfg_yaml_node_kind(v[i]));
				return -1;
			}
			sep(out);
			/* max_size: at most n bytes; min_size: at least n bytes */
			buf_printf(out, "NOT %s %zu", strcmp(key, "max_size") == 0 ? "LARGER" : "SMALLER", n);
		} else if (strcmp(key, "header") == 0) {
			if (v[i]->type != YAML_MAPPING_NODE) {
				cfg_yaml_node_error(y, v[i], "%s: expected a mapping of header fields to values, got %s", ctx,
				                    cfg_yaml_node_kind(v[i]));
				return -1;
			}
			for (yaml_node_pair_t *pair = v[i]->data.mapping.pairs.start; pair < v[i]->data.mapping.pairs.top;
			     pair++) {
				yaml_node_t *hk = cfg_yaml_node(y, pair->key), *hv = cfg_yaml_node(y, pair->value);
				const char *field = cfg_yaml_string(y, hk, ctx, false);
				if (!field)
					return -1;
				int n = strings_of(y, hv, ctx, vals, FILTERS_MAX_VALUES);
				if (n < 0)
					return -1;
				sep(out);
				buf_append_str(out, "(");
				or_tree(out, "HEADER", field, vals, (size_t)n);
				buf_append_str(out, ")");
			}
		} else if (strcmp(key, "search") == 0) {
			const char *s = cfg_yaml_string(y, v[i], ctx, false);
			if (!s)
				return -1;
			/* checked with the rest below; parenthesised so that it is one key */
			sep(out);
			buf_printf(out, "(%s)", s);
		} else {
			int n = strings_of(y, v[i], ctx, vals, FILTERS_MAX_VALUES);
			if (n < 0)
				return -1;
			char word[16];
			snprintf(word, sizeof(word), "%s", key);
			for (char *p = word; *p; p++)
				*p = (char)(*p - 32 * (*p >= 'a' && *p <= 'z'));
			sep(out);
			buf_append_str(out, "(");
			or_tree(out, word, NULL, vals, (size_t)n);
			buf_append_str(out, ")");
		}
	}
	return 0;
}

/* A view or notify value: "all", "none", or conditions. *out: canonical (malloc'd). */
static int rule_value(struct cfg_yaml *y, yaml_node_t *v, const char *what, char **out)
{
	char err[300];
	if (v->type == YAML_SCALAR_NODE) {
		const char *s = scalar(v);
		if (strcasecmp(s, "all") == 0 || strcasecmp(s, "none") == 0) {
			*out = xstrdup(strcasecmp(s, "all") == 0 ? XFILTER_ALL : XFILTER_NONE);
			return 0;
		}
		cfg_yaml_node_error(y, v, "%s: expected all, none or a mapping of conditions, got '%s'", what, s);
		return -1;
	}
	if (v->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(y, v, "%s: expected all, none or a mapping of conditions, got %s", what,
		                    cfg_yaml_node_kind(v));
		return -1;
	}
	struct buf text;
	buf_init(&text, 0);
	if (rule_criteria(y, v, what, &text) < 0) {
		buf_free(&text);
		return -1;
	}
	if (!buf_len(&text)) {
		*out = xstrdup(XFILTER_ALL); /* no condition: everything */
		buf_free(&text);
		return 0;
	}
	/* The same check (and canonical form) as a client's XFILTER. */
	struct buf canon;
	buf_init(&canon, 0);
	buf_append(&text, "", 1);
	enum xfilter_result r = xfilter_canonical_text((const char *)buf_head(&text), &canon, err, sizeof(err));
	buf_free(&text);
	if (r != XFILTER_OK) {
		buf_free(&canon);
		cfg_yaml_node_error(y, v, "%s: %s", what, err);
		return -1;
	}
	buf_append(&canon, "", 1);
	*out = xstrdup((const char *)buf_head(&canon));
	buf_free(&canon);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* the file                                                                  */

static struct filter_rule *rule_add(struct filter_set *set)
{
	set->rules = xrealloc(set->rules, (set->n + 1) * sizeof(*set->rules));
	struct filter_rule *r = &set->rules[set->n++];
	memset(r, 0, sizeof(*r));
	return r;
}

static bool folder_ok(struct cfg_yaml *y, yaml_node_t *node, const char *s, const char *what)
{
	if (strlen(s) > FILTERS_MAX_FOLDER || strpbrk(s, "\r\n")) {
		cfg_yaml_node_error(y, node, "%s: not a folder name", what);
		return false;
	}
	return true;
}

static int load_exclude(struct cfg_yaml *y, struct filter_set *set, yaml_node_t *v)
{
	const char *names[FILTERS_MAX_RULES];
	int n = strings_of(y, v, "exclude", names, FILTERS_MAX_RULES);
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (!folder_ok(y, v, names[i], "exclude"))
			return -1;
		struct filter_rule *r = rule_add(set);
		r->glob = is_glob(names[i]);
		r->folder = xstrdup(!r->glob && strcasecmp(names[i], "INBOX") == 0 ? "INBOX" : names[i]);
		r->exclude = true;
		r->view = xstrdup(XFILTER_NONE);
		r->notify = xstrdup(XFILTER_NONE);
	}
	return 0;
}

static int load_folders(struct cfg_yaml *y, struct filter_set *set, yaml_node_t *v)
{
	static const char *const keys[] = {"view", "notify", NULL};
	if (v->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(y, v, "folders: expected a mapping of folder names (or globs) to rules, got %s",
		                    cfg_yaml_node_kind(v));
		return -1;
	}
	for (yaml_node_pair_t *pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top; pair++) {
		yaml_node_t *fk = cfg_yaml_node(y, pair->key), *fv = cfg_yaml_node(y, pair->value);
		const char *folder = cfg_yaml_string(y, fk, "folders", false);
		if (!folder || !folder_ok(y, fk, folder, "folders"))
			return -1;
		for (size_t i = 0; i < set->n; i++) {
			if (!set->rules[i].exclude && (strcmp(set->rules[i].folder, folder) == 0 ||
			                               (strcasecmp(folder, "INBOX") == 0 && strcmp(set->rules[i].folder, "INBOX") == 0))) {
				cfg_yaml_node_error(y, fk, "folders: '%s' is given twice", folder);
				return -1;
			}
		}
		if (set->n >= FILTERS_MAX_RULES) {
			cfg_yaml_node_error(y, fk, "folders: more than %d rules", FILTERS_MAX_RULES);
			return -1;
		}
		char what[FILTERS_MAX_FOLDER + 32];
		snprintf(what, sizeof(what), "folders.%s", folder);
		if (fv->type != YAML_MAPPING_NODE) {
			cfg_yaml_node_error(y, fv, "%s: expected a mapping with view and/or notify, got %s", what,
			                    cfg_yaml_node_kind(fv));
			return -1;
		}
		yaml_node_t *k[2], *vv[2];
		if (cfg_yaml_map_slots(y, fv, keys, k, vv, what) < 0)
			return -1;
		struct filter_rule *r = rule_add(set);
		r->glob = is_glob(folder);
		r->folder = xstrdup(!r->glob && strcasecmp(folder, "INBOX") == 0 ? "INBOX" : folder);
		char sub[FILTERS_MAX_FOLDER + 40];
		snprintf(sub, sizeof(sub), "%s.view", what);
		if (vv[0] && rule_value(y, vv[0], sub, &r->view) < 0)
			return -1;
		snprintf(sub, sizeof(sub), "%s.notify", what);
		if (vv[1] && rule_value(y, vv[1], sub, &r->notify) < 0)
			return -1;
		if (!r->view)
			r->view = xstrdup(XFILTER_ALL);
		if (!r->notify)
			r->notify = xstrdup(XFILTER_ALL);
	}
	return 0;
}

static int load_root(struct cfg_yaml *y, yaml_node_t *root, void *ctx)
{
	static const char *const keys[] = {"events", "groups", "exclude", "folders", NULL};
	struct filter_set *set = ctx;
	if (!root || (root->type == YAML_SCALAR_NODE && cfg_yaml_scalar_is_null(root)))
		return 0; /* an empty file: no filters */
	if (root->type != YAML_MAPPING_NODE) {
		cfg_yaml_node_error(y, root, "the top level must be a mapping (events, groups, exclude, folders), got %s",
		                    cfg_yaml_node_kind(root));
		return -1;
	}
	yaml_node_t *k[4], *v[4];
	if (cfg_yaml_map_slots(y, root, keys, k, v, "the filter file") < 0)
		return -1;
	if (v[0]) {
		const char *e = cfg_yaml_string(y, v[0], "events", false);
		if (!e)
			return -1;
		if (strcasecmp(e, "all") && strcasecmp(e, "new") && strcasecmp(e, "none")) {
			cfg_yaml_node_error(y, v[0], "events: expected all, new or none, got '%s'", e);
			return -1;
		}
		set->events = xstrdup(strcasecmp(e, "all") == 0 ? "ALL" : strcasecmp(e, "new") == 0 ? "NEW" : "NONE");
	}
	if (v[1]) {
		/* named lists for anchors: each must at least be a list of strings */
		if (v[1]->type != YAML_MAPPING_NODE) {
			cfg_yaml_node_error(y, v[1], "groups: expected a mapping of names to lists, got %s",
			                    cfg_yaml_node_kind(v[1]));
			return -1;
		}
		const char *vals[FILTERS_MAX_VALUES];
		for (yaml_node_pair_t *pair = v[1]->data.mapping.pairs.start; pair < v[1]->data.mapping.pairs.top; pair++)
			if (strings_of(y, cfg_yaml_node(y, pair->value), "groups", vals, FILTERS_MAX_VALUES) < 0)
				return -1;
	}
	if (v[2] && load_exclude(y, set, v[2]) < 0)
		return -1;
	if (v[3] && load_folders(y, set, v[3]) < 0)
		return -1;
	return 0;
}

static void finish(struct filter_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		if (set->rules[i].glob)
			continue;
		set->names = xrealloc(set->names, (set->nnames + 1) * sizeof(*set->names));
		set->names[set->nnames++] = set->rules[i].folder;
	}
}

struct filter_set *filter_set_load_string(const char *name, const char *yaml, size_t len, char *err, size_t errlen)
{
	struct cfg_error e;
	memset(&e, 0, sizeof(e));
	name = name ? name : "<string>";
	if (len > FILTERS_MAX_FILE_SIZE) {
		cfg_set_error(&e, name, 0, 0, "file is larger than %d bytes; not a filter file?", FILTERS_MAX_FILE_SIZE);
		cfg_format_error(&e, err, errlen);
		return NULL;
	}
	struct filter_set *set = xcalloc(1, sizeof(*set));
	if (cfg_yaml_load(name, yaml ? yaml : "", yaml ? len : 0, load_root, set, &e) < 0) {
		cfg_format_error(&e, err, errlen);
		filter_set_free(set);
		return NULL;
	}
	finish(set);
	return set;
}

struct filter_set *filter_set_load_file(const char *path, char *err, size_t errlen)
{
	struct cfg_error e;
	char *data;
	size_t len;
	memset(&e, 0, sizeof(e));
	if (cfg_read_file(path, FILTERS_MAX_FILE_SIZE, "a filter file", &data, &len, &e) < 0) {
		cfg_format_error(&e, err, errlen);
		return NULL;
	}
	struct filter_set *set = filter_set_load_string(path, data, len, err, errlen);
	free(data);
	return set;
}

void filter_set_free(struct filter_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++) {
		free(set->rules[i].folder);
		free(set->rules[i].view);
		free(set->rules[i].notify);
	}
	free(set->rules);
	free(set->names);
	free(set->events);
	free(set);
}

/* ------------------------------------------------------------------------ */
/* lookups                                                                   */

static bool name_is(const char *rule, const char *mailbox)
{
	if (strcasecmp(rule, "INBOX") == 0 && strcasecmp(mailbox, "INBOX") == 0)
		return true;
	return strcmp(rule, mailbox) == 0;
}

static bool glob_matches(const char *glob, const char *mailbox)
{
	return fnmatch(glob, mailbox, 0) == 0;
}

static const struct filter_rule *rule_for(const struct filter_set *set, const char *mailbox)
{
	if (!set)
		return NULL;
	if (strcasecmp(mailbox, "INBOX") == 0)
		mailbox = "INBOX"; /* one spelling for globs */
	for (size_t i = 0; i < set->n; i++) /* excluded first, names or globs */
		if (set->rules[i].exclude &&
		    (set->rules[i].glob ? glob_matches(set->rules[i].folder, mailbox) : name_is(set->rules[i].folder, mailbox)))
			return &set->rules[i];
	for (size_t i = 0; i < set->n; i++)
		if (!set->rules[i].exclude && !set->rules[i].glob && name_is(set->rules[i].folder, mailbox))
			return &set->rules[i];
	for (size_t i = 0; i < set->n; i++)
		if (!set->rules[i].exclude && set->rules[i].glob && glob_matches(set->rules[i].folder, mailbox))
			return &set->rules[i];
	return NULL;
}

const char *filter_set_value(const struct filter_set *set, const char *mailbox, enum xfilter_which kind)
{
	const struct filter_rule *r = rule_for(set, mailbox);
	if (!r)
		return XFILTER_ALL;
	return kind == XFILTER_VIEW ? r->view : r->notify;
}

const char *filter_set_events(const struct filter_set *set)
{
	return set ? set->events : NULL;
}

size_t filter_set_names(const struct filter_set *set, const char ***names)
{
	*names = set ? set->names : NULL;
	return set ? set->nnames : 0;
}

size_t filter_set_count(const struct filter_set *set)
{
	return set ? set->n : 0;
}

bool filter_set_has_views(const struct filter_set *set)
{
	for (size_t i = 0; set && i < set->n; i++)
		if (!xfilter_is_all(set->rules[i].view))
			return true;
	return false;
}

bool filter_set_has_notify(const struct filter_set *set)
{
	for (size_t i = 0; set && i < set->n; i++)
		if (!xfilter_is_all(set->rules[i].notify))
			return true;
	return false;
}

/* ------------------------------------------------------------------------ */
/* keeping a gateway's table in step                                         */

/* The value the gateway's ALL entry should hold: the rule for "*" (a glob matching any name), else ALL. */
static const char *default_value(const struct filter_set *set, enum xfilter_which kind)
{
	for (size_t i = 0; set && i < set->n; i++)
		if (!set->rules[i].exclude && strcmp(set->rules[i].folder, "*") == 0)
			return kind == XFILTER_VIEW ? set->rules[i].view : set->rules[i].notify;
	return XFILTER_ALL;
}

static void add_cmd(char ***cmds, size_t *n, const char *mailbox, enum xfilter_which kind, const char *value)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "XFILTER ");
	if (!mailbox)
		buf_append_str(&b, "ALL");
	else if (strcasecmp(mailbox, "ALL") == 0)
		buf_append_str(&b, "\"ALL\""); /* the folder, not every folder */
	else
		imap_write_mailbox(&b, mailbox, false);
	buf_printf(&b, " %c %s", kind == XFILTER_VIEW ? 'V' : 'N', value);
	buf_append(&b, "", 1);
	*cmds = xrealloc(*cmds, (*n + 1) * sizeof(**cmds));
	(*cmds)[(*n)++] = xstrdup((const char *)buf_head(&b));
	buf_free(&b);
}

static const enum xfilter_which kinds[] = {XFILTER_VIEW, XFILTER_NOTIFY};

static void sync_one(const struct filter_set *set, struct xfilter_set *table, const char *mailbox, char ***cmds,
                     size_t *n)
{
	if (strcasecmp(mailbox, "INBOX") == 0)
		mailbox = "INBOX"; /* the gateway's spelling */
	for (size_t k = 0; k < 2; k++) {
		const char *want = filter_set_value(set, mailbox, kinds[k]);
		if (strcmp(xfilter_set_get(table, mailbox, kinds[k]), want) == 0)
			continue;
		add_cmd(cmds, n, mailbox, kinds[k], want);
		xfilter_set_put(table, mailbox, kinds[k], want);
	}
}

size_t filter_sync_login(const struct filter_set *set, struct xfilter_set *table, char ***cmds)
{
	size_t n = 0;
	*cmds = NULL;
	for (size_t k = 0; k < 2; k++) {
		const char *want = default_value(set, kinds[k]);
		if (strcmp(xfilter_set_get(table, "", kinds[k]), want) == 0)
			continue;
		/* XFILTER ALL replaces every folder's own value of that kind */
		add_cmd(cmds, &n, NULL, kinds[k], want);
		xfilter_set_put(table, "", kinds[k], xfilter_is_all(want) ? NULL : want);
	}
	/* folders the gateway has a value for: right by the file? (a copy: sync_one changes the table) */
	size_t have = table->n;
	char **held = xcalloc(have + 1, sizeof(*held));
	for (size_t i = 0; i < have; i++)
		held[i] = xstrdup(table->e[i].mailbox);
	for (size_t i = 0; i < have; i++)
		if (*held[i])
			sync_one(set, table, held[i], cmds, &n);
	for (size_t i = 0; i < have; i++)
		free(held[i]);
	free(held);
	const char **names;
	size_t nn = filter_set_names(set, &names);
	for (size_t i = 0; i < nn; i++)
		sync_one(set, table, names[i], cmds, &n);
	return n;
}

size_t filter_sync_mailbox(const struct filter_set *set, struct xfilter_set *table, const char *mailbox,
                           char ***cmds)
{
	size_t n = 0;
	*cmds = NULL;
	sync_one(set, table, mailbox, cmds, &n);
	return n;
}

void filter_free_commands(char **cmds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(cmds[i]);
	free(cmds);
}
