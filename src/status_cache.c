/*
 * status_cache.c - folder STATUS kept fresh by the gateway's pushes (see
 * status_cache.h).
 *
 * A plain array of folders (a user has tens to hundreds), searched
 * linearly; each folder knows which of its items are known and which links
 * cover it.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_write.h"
#include "status_cache.h"

enum st_item { ST_MESSAGES, ST_RECENT, ST_UIDNEXT, ST_UIDVALIDITY, ST_UNSEEN, ST_HIGHESTMODSEQ, ST_COUNT };

/* The server's order of STATUS items. */
static const char *const item_names[ST_COUNT] = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN",
                                                 "HIGHESTMODSEQ"};

struct st_folder {
	char    *user;
	char    *mailbox;
	uint64_t value[ST_COUNT];
	bool     known[ST_COUNT];
	/* RECENT 0 was seen at this UIDNEXT (0: never) */
	uint64_t recent0_uidnext;
	uint64_t sources[STATUS_CACHE_MAX_SOURCES];
	size_t   nsources;
	uint64_t touched;
};

struct status_cache {
	struct st_folder *f;
	size_t            n, cap;
	uint64_t          clock;
};

struct status_cache *status_cache_new(void)
{
	return xcalloc(1, sizeof(struct status_cache));
}

static void folder_free(struct st_folder *f)
{
	free(f->user);
	free(f->mailbox);
}

void status_cache_free(struct status_cache *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; i < sc->n; i++)
		folder_free(&sc->f[i]);
	free(sc->f);
	free(sc);
}

size_t status_cache_count(const struct status_cache *sc)
{
	return sc->n;
}

/* INBOX in any case is INBOX (RFC 3501); other names are exact. */
static bool same_mailbox(const char *a, const char *b)
{
	if (strcasecmp(a, "INBOX") == 0 && strcasecmp(b, "INBOX") == 0)
		return true;
	return strcmp(a, b) == 0;
}

static struct st_folder *find(const struct status_cache *sc, const char *user, const char *mailbox)
{
	for (size_t i = 0; i < sc->n; i++)
		if (strcmp(sc->f[i].user, user) == 0 && same_mailbox(sc->f[i].mailbox, mailbox))
			return &sc->f[i];
	return NULL;
}

static struct st_folder *find_or_add(struct status_cache *sc, const char *user, const char *mailbox)
{
	struct st_folder *f = find(sc, user, mailbox);
	if (f)
		return f;
	if (sc->n == STATUS_CACHE_MAX_FOLDERS) {
		size_t old = 0;
		for (size_t i = 1; i < sc->n; i++)
			if (sc->f[i].touched < sc->f[old].touched)
				old = i;
		folder_free(&sc->f[old]);
		sc->f[old] = sc->f[--sc->n];
	}
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? sc->cap * 2 : 16;
		sc->f = xrealloc(sc->f, sc->cap * sizeof(sc->f[0]));
	}
	f = &sc->f[sc->n++];
	memset(f, 0, sizeof(*f));
	f->user = xstrdup(user);
	f->mailbox = xstrdup(mailbox);
	return f;
}

static void remove_source(struct st_folder *f, uint64_t source)
{
	for (size_t i = 0; i < f->nsources; i++)
		if (f->sources[i] == source) {
			f->sources[i] = f->sources[--f->nsources];
			return;
		}
}

static void add_source(struct st_folder *f, uint64_t source)
{
	for (size_t i = 0; i < f->nsources; i++)
		if (f->sources[i] == source)
			return;
	if (f->nsources < STATUS_CACHE_MAX_SOURCES)
		f->sources[f->nsources++] = source;
}

static int item_index(const struct imap_arg *a)
{
	for (int i = 0; i < ST_COUNT; i++)
		if (imap_arg_is_atom(a, item_names[i]))
			return i;
	return -1;
}

/* A mailbox argument as a C string (NULL if it holds a NUL or is not a string). */
static char *mailbox_arg(const struct imap_arg *a)
{
	if (!imap_arg_is_string(a) || memchr(a->str, '\0', a->len))
		return NULL;
	char *s = xmalloc(a->len + 1);
	memcpy(s, a->str, a->len);
	s[a->len] = '\0';
	return s;
}

bool status_cache_learn(struct status_cache *sc, const char *user, uint64_t source, const char *selected,
                        bool pushed, const struct imap_msg *m)
{
	if (m->kind != IMAP_MSG_UNTAGGED || m->status != IMAP_STATUS_NONE || m->nargs != 3 ||
	    !imap_arg_is_atom(&m->args[0], "STATUS") || m->args[2].type != IMAP_ARG_LIST || m->args[2].list_count % 2)
		return false;
	char *mailbox = mailbox_arg(&m->args[1]);
	if (!mailbox)
		return false;
	uint64_t v[ST_COUNT];
	bool have[ST_COUNT] = {false};
	const struct imap_arg *it = m->args[2].list;
	for (size_t k = 0; k < m->args[2].list_count; k += 2) {
		int i = item_index(&it[k]);
		if (i >= 0 && it[k + 1].type == IMAP_ARG_ATOM && imap_parse_u64(it[k + 1].str, it[k + 1].len, &v[i]))
			have[i] = true;
	}
	struct st_folder *f = find_or_add(sc, user, mailbox);
	f->touched = ++sc->clock;
	/* A new UIDVALIDITY is a new folder: nothing known about the old one holds. */
	if (have[ST_UIDVALIDITY] && f->known[ST_UIDVALIDITY] && f->value[ST_UIDVALIDITY] != v[ST_UIDVALIDITY]) {
		memset(f->known, 0, sizeof(f->known));
		f->recent0_uidnext = 0;
		f->nsources = 0;
	}
	/* An older report (another link's, late) never overwrites a newer one. */
	bool stale = have[ST_HIGHESTMODSEQ] && f->known[ST_HIGHESTMODSEQ] && v[ST_HIGHESTMODSEQ] < f->value[ST_HIGHESTMODSEQ];
	if (!stale) {
		for (int i = 0; i < ST_COUNT; i++)
			if (have[i]) {
				f->value[i] = v[i];
				f->known[i] = i != ST_RECENT; /* RECENT is never current (see the header) */
			}
		if (have[ST_RECENT] && have[ST_UIDNEXT])
			f->recent0_uidnext = v[ST_RECENT] == 0 ? v[ST_UIDNEXT] : 0;
		else if (have[ST_UIDNEXT] && f->recent0_uidnext != v[ST_UIDNEXT])
			f->recent0_uidnext = 0; /* new mail since RECENT 0 was seen */
	}
	bool complete = have[ST_MESSAGES] && have[ST_UIDNEXT] && have[ST_UIDVALIDITY];
	if (pushed && complete && !(selected && same_mailbox(selected, mailbox)))
		add_source(f, source);
	free(mailbox);
	return true;
}

void status_cache_selected(struct status_cache *sc, const char *user, uint64_t source, const char *mailbox)
{
	struct st_folder *f = mailbox ? find(sc, user, mailbox) : NULL;
	if (f)
		remove_source(f, source);
}

void status_cache_source_gone(struct status_cache *sc, uint64_t source)
{
	for (size_t i = 0; i < sc->n; i++)
		remove_source(&sc->f[i], source);
}

bool status_cache_answer(const struct status_cache *sc, const char *user, const struct imap_msg *cmd,
                         const char *tag, struct buf *out)
{
	if (cmd->nargs != 3 || !imap_arg_is_atom(&cmd->args[0], "STATUS") || cmd->args[2].type != IMAP_ARG_LIST ||
	    cmd->args[2].list_count == 0)
		return false;
	char *mailbox = mailbox_arg(&cmd->args[1]);
	if (!mailbox)
		return false;
	const struct st_folder *f = find(sc, user, mailbox);
	bool want[ST_COUNT] = {false};
	bool ok = f && f->nsources > 0;
	for (size_t k = 0; ok && k < cmd->args[2].list_count; k++) {
		int i = item_index(&cmd->args[2].list[k]);
		if (i < 0)
			ok = false; /* SIZE, APPENDLIMIT, ...: upstream */
		else if (i == ST_RECENT)
			ok = (f->known[ST_MESSAGES] && f->value[ST_MESSAGES] == 0) ||
			     (f->known[ST_UIDNEXT] && f->recent0_uidnext && f->recent0_uidnext == f->value[ST_UIDNEXT]);
		else
			ok = f->known[i];
		if (ok)
			want[i] = true;
	}
	if (ok) {
		buf_append_str(out, "* STATUS ");
		imap_write_mailbox(out, mailbox, true);
		buf_append_str(out, " (");
		bool first = true;
		for (int i = 0; i < ST_COUNT; i++) {
			if (!want[i])
				continue;
			buf_printf(out, "%s%s %llu", first ? "" : " ", item_names[i],
			           i == ST_RECENT ? 0ULL : (unsigned long long)f->value[i]);
			first = false;
		}
		buf_printf(out, ")\r\n%s OK Status completed.\r\n", tag);
	}
	free(mailbox);
	return ok;
}
