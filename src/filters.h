/*
 * filters.h - the user's filter file (filters/NAME.yaml, pimap-filters(5)).
 *
 * A person writes, per folder or glob of folders, what the device should
 * see (a view: the last n days, a size limit, senders, subjects, header
 * rules, or nothing at all for excluded folders), which new mail should be
 * pushed (a notification rule), and which kinds of change are pushed at
 * all (the device's event filter). This module loads and checks such a
 * file (libyaml; errors are "file:line:column: message" like the config's)
 * and turns it into XFILTER values (xfilter.c's canonical criteria):
 *
 *   - pimap-proxy in gateway mode makes the gateway hold them
 *     (filter_sync_*: the XFILTER commands that bring the gateway's table,
 *     as XFILTER ... GET reported it, to what the file says);
 *   - in compatibility mode the proxy applies them itself
 *     (filter_set_value for the folder being selected, filter_set_events
 *     when the client waits in IDLE).
 *
 * Which rule applies to a folder: an excluded folder shows nothing; else
 * the rule whose folder is the name itself; else the first glob rule (file
 * order) that matches; else no filter. INBOX matches case-insensitively.
 *
 * Pure: no sockets, no logging (the caller reads the file or passes text).
 */
#ifndef PIMAP_FILTERS_H
#define PIMAP_FILTERS_H

#include <stdbool.h>
#include <stddef.h>

#include "xfilter.h"

/* A filter file larger than this is a wrong path, not filters. */
#define FILTERS_MAX_FILE_SIZE (1024 * 1024)
/* Folder rules (and excluded folders) in one file. */
#define FILTERS_MAX_RULES 256
/* Values in one list (from: [...]): a VIP list of a few hundred. */
#define FILTERS_MAX_VALUES 512
/* Longest folder name or glob. */
#define FILTERS_MAX_FOLDER 1024

struct filter_set;

/* Load a file; NULL with "file:line:column: message" in err. */
struct filter_set *filter_set_load_file(const char *path, char *err, size_t errlen);
/* The same from text; name is the file name for messages. */
struct filter_set *filter_set_load_string(const char *name, const char *yaml, size_t len, char *err, size_t errlen);
void filter_set_free(struct filter_set *set);

/* The folder's view (XFILTER_VIEW) or notification value: canonical criteria, "ALL" or "NONE". */
const char *filter_set_value(const struct filter_set *set, const char *mailbox, enum xfilter_which kind);
/* PIMAP_EVENT_FILTER the file asks for ("ALL", "NEW", "NONE"), or NULL if it says nothing. */
const char *filter_set_events(const struct filter_set *set);
/* Folders with a rule of their own (not a glob), and excluded ones: for the gateway's table. */
size_t filter_set_names(const struct filter_set *set, const char ***names);
/* Rules in the file (excluded folders included). */
size_t filter_set_count(const struct filter_set *set);
/* Some folder has a view other than ALL. */
bool filter_set_has_views(const struct filter_set *set);
/* Some folder has a notification rule other than ALL. */
bool filter_set_has_notify(const struct filter_set *set);

/*
 * What the gateway holds for this device (from "* XFILTER <mailbox> <V|N>
 * <value>" lines): an xfilter_set. The sync functions return XFILTER
 * command texts (no tag, no CRLF; malloc'd, free with filter_free_commands)
 * and update table as if the gateway had carried them out.
 *
 * filter_sync_login: the value for ALL (the file's "*" rule, or ALL), every
 * named folder, and every folder the gateway has a value for that the file
 * resolves differently. filter_sync_mailbox: the one folder about to be
 * selected, if the gateway would apply something else to it (a glob rule
 * can only be resolved once a name is known).
 */
size_t filter_sync_login(const struct filter_set *set, struct xfilter_set *table, char ***cmds);
size_t filter_sync_mailbox(const struct filter_set *set, struct xfilter_set *table, const char *mailbox,
                           char ***cmds);
void filter_free_commands(char **cmds, size_t n);

#endif
