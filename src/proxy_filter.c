/*
 * proxy_filter.c - pimap-proxy and the user's filter file (see
 * proxy_filter.h): loading, and keeping a gateway's filters in step.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters.h"
#include "imap_write.h"
#include "log.h"
#include "proxy_filter.h"
#include "proxy_link.h"
#include "proxy_session.h"
#include "xfilter.h"

int proxy_filters_load(const struct proxy_config *cfg, struct filter_set **set, char *err, size_t errlen)
{
	*set = NULL;
	if (!cfg->filters_file || !*cfg->filters_file)
		return 0;
	*set = filter_set_load_file(cfg->filters_file, err, errlen);
	if (!*set)
		return -1;
	log_info("loaded %zu filter rule(s) from %s", filter_set_count(*set), cfg->filters_file);
	return 0;
}

void proxy_filters_free(struct filter_set *set)
{
	filter_set_free(set);
}

/* ------------------------------------------------------------------------ */
/* gateway mode                                                              */

/* What this link knows of the gateway's table, and what it is waiting for. */
struct pfilter_link {
	struct xfilter_set table;
	bool known;            /* both GETs answered since the last login */
	unsigned gets;         /* GETs in flight */
};

static struct pfilter_link *state(struct session *s)
{
	struct pfilter_link **slot = link_pfilter(s);
	if (!*slot) {
		*slot = xcalloc(1, sizeof(**slot));
		xfilter_set_init(&(*slot)->table);
	}
	return *slot;
}

void pfilter_link_free(struct pfilter_link *pf)
{
	if (!pf)
		return;
	xfilter_set_free(&pf->table);
	free(pf);
}

static void send_all(struct session *s, char **cmds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		slog(s, LOG_LEVEL_DEBUG, "filters: %s", cmds[i]);
		link_send_filter(s, cmds[i]);
	}
	filter_free_commands(cmds, n);
}

void pfilter_after_login(struct session *s)
{
	const struct filter_set *set = s->srv->filters;
	if (!set)
		return;
	struct pfilter_link *pf = state(s);
	xfilter_set_free(&pf->table);
	xfilter_set_init(&pf->table);
	pf->known = false;
	pf->gets = 2;
	link_send_filter(s, "XFILTER ALL V GET");
	link_send_filter(s, "XFILTER ALL N GET");
	if (filter_set_events(set)) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "XSETPIMAPPREF PIMAP_EVENT_FILTER %s", filter_set_events(set));
		link_send_filter(s, cmd);
	}
}

void pfilter_before_select(struct session *s, const char *mailbox)
{
	const struct filter_set *set = s->srv->filters;
	if (!set || !mailbox)
		return;
	struct pfilter_link *pf = state(s);
	char **cmds = NULL;
	size_t n = 0;
	if (pf->known) {
		n = filter_sync_mailbox(set, &pf->table, mailbox, &cmds);
	} else {
		/* The table is not in yet (a SELECT right after login): say the folder's
		 * values outright; a gateway keeps a saved view when nothing changes. */
		struct xfilter_set empty;
		xfilter_set_init(&empty);
		xfilter_set_put(&empty, mailbox, XFILTER_BOTH, "\001"); /* differs from anything */
		n = filter_sync_mailbox(set, &empty, mailbox, &cmds);
		xfilter_set_free(&empty);
	}
	send_all(s, cmds, n);
}

/* "* XFILTER <mailbox|ALL> <V|N> <value>": the gateway's table. */
void pfilter_untagged(struct session *s, const struct imap_msg *m)
{
	struct pfilter_link *pf = state(s);
	if (m->kind != IMAP_MSG_UNTAGGED || m->nargs < 4 || !imap_arg_is_atom(&m->args[0], "XFILTER") ||
	    !imap_arg_is_string(&m->args[1]))
		return;
	enum xfilter_which kind;
	if (imap_arg_is_atom(&m->args[2], "V"))
		kind = XFILTER_VIEW;
	else if (imap_arg_is_atom(&m->args[2], "N"))
		kind = XFILTER_NOTIFY;
	else
		return;
	struct buf value;
	buf_init(&value, 0);
	char err[256];
	if (xfilter_canonical(m->args + 3, m->nargs - 3, &value, err, sizeof(err)) != XFILTER_OK) {
		slog(s, LOG_LEVEL_WARN, "the gateway reports a filter the proxy cannot read (%s); ignored", err);
		buf_free(&value);
		return;
	}
	buf_append(&value, "", 1);
	char mailbox[1024];
	bool all = m->args[1].type == IMAP_ARG_ATOM && imap_arg_is_atom(&m->args[1], "ALL");
	snprintf(mailbox, sizeof(mailbox), "%.*s", (int)m->args[1].len, m->args[1].str);
	const char *v = (const char *)buf_head(&value);
	xfilter_set_put(&pf->table, all ? "" : mailbox, kind, all && xfilter_is_all(v) ? NULL : v);
	buf_free(&value);
}

void pfilter_done(struct session *s, const struct imap_msg *m)
{
	struct pfilter_link *pf = state(s);
	if (m->status != IMAP_STATUS_OK)
		slog(s, LOG_LEVEL_WARN, "the gateway refused a filter command: %.*s", (int)m->text_len, m->text);
	if (pf->gets == 0)
		return;
	if (--pf->gets)
		return;
	pf->known = true;
	const struct filter_set *set = s->srv->filters;
	if (!set)
		return;
	char **cmds;
	size_t n = filter_sync_login(set, &pf->table, &cmds);
	if (n)
		slog(s, LOG_LEVEL_INFO, "filters: the gateway holds other rules than %s: %zu XFILTER command(s)",
		     s->srv->cfg->filters_file, n);
	send_all(s, cmds, n);
}
