/*
 * gw_state.h - the gateway's durable state in SQLite (state_dir/gateway.db).
 *
 * What must survive a gateway restart: each device's profile (preferences
 * and XFILTER filters), its session record (id, whether a connection was attached,
 * the folder it had selected, when it detached) and, per folder the device
 * has left, the view the client last saw (UIDVALIDITY, HIGHESTMODSEQ,
 * UIDNEXT, the UID list, and the flags when the store has no CONDSTORE).
 * Never a password, never message content.
 *
 * Why SQLite: atomic multi-row updates and crash safety (WAL) for free; a
 * hand-written file format would have to reinvent both. Calls are
 * synchronous; they happen at login, folder switch and detach, not per
 * message, and WAL with synchronous=NORMAL keeps each under a millisecond.
 */
#ifndef PIMAP_GW_STATE_H
#define PIMAP_GW_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uidset.h"

struct gw_state;

#define GW_STATE_FILE "gateway.db"
#define GW_STATE_SCHEMA_VERSION 3

/* Open (creating the file and schema if needed) state_dir/gateway.db. NULL with err. */
struct gw_state *gw_state_open(const char *state_dir, char *err, size_t errlen);
void gw_state_close(struct gw_state *st);

/* All functions return 0 on success, 1 for "not found" where noted, -1 on a
 * database error (logged by the module with the SQLite message). */

/* ---- devices and preferences ---------------------------------------------- */

/* Create the device row if absent; *created tells whether it was new. */
int gw_state_device_touch(struct gw_state *st, const char *user, const char *device, bool *created);
/* A login of the device succeeded at `when` (creates the row if missing). */
int gw_state_device_used(struct gw_state *st, const char *user, const char *device, double when);
/*
 * Forget the user's least recently used device that was last used before
 * unused_before and has no session to resume (none, expired, or detached
 * before unused_before), skipping any for which skip(device, ctx) says it
 * is in use: its row, preferences and views go. Its name goes to evicted.
 * 0 if one was forgotten, 1 if none qualifies.
 */
typedef bool (*gw_device_skip_cb)(const char *device, void *ctx);
int gw_state_device_evict(struct gw_state *st, const char *user, double unused_before, gw_device_skip_cb skip,
                          void *ctx, char *evicted, size_t evicted_len);
/* Whether the device has a row (without creating one). */
int gw_state_device_known(struct gw_state *st, const char *user, const char *device, bool *known);
/* Number of devices known for user. */
int gw_state_device_count(struct gw_state *st, const char *user, unsigned *count);

typedef void (*gw_pref_cb)(const char *name, const char *value, void *ctx);
/* Call cb for each stored preference of the device. */
int gw_state_prefs_load(struct gw_state *st, const char *user, const char *device, gw_pref_cb cb, void *ctx);
int gw_state_pref_save(struct gw_state *st, const char *user, const char *device, const char *name,
                       const char *value);

/* ---- sessions ------------------------------------------------------------- */

enum gw_session_state {
	GW_SESSION_DETACHED = 0, /* no connection; the views below are exact */
	GW_SESSION_ATTACHED = 1, /* connections were live: saved views may be stale */
	GW_SESSION_EXPIRED = 2,  /* expired; kept only so the device's next login gets RESYNC */
};

struct gw_session_rec {
	char    session_id[33];     /* hex, NUL-terminated */
	int     state;              /* enum gw_session_state */
	char   *selected;           /* mailbox selected at detach, or NULL (AUTHENTICATED) */
	bool    selected_readonly;  /* EXAMINE rather than SELECT */
	double  detached_at;        /* wall clock (seconds since the epoch) */
};

/* 1 if none. rec->selected is malloc'd; free with gw_session_rec_free. */
int gw_state_session_load(struct gw_state *st, const char *user, const char *device, struct gw_session_rec *rec);
int gw_state_session_save(struct gw_state *st, const char *user, const char *device,
                          const struct gw_session_rec *rec);
/* Delete the session and all its folder views (LOGOUT, expiry, RESYNC). */
int gw_state_session_delete(struct gw_state *st, const char *user, const char *device);
void gw_session_rec_free(struct gw_session_rec *rec);

/* Sessions whose detached_at + lifetime < now: call cb(user, device) for each (then delete them). */
typedef void (*gw_session_cb)(const char *user, const char *device, void *ctx);
int gw_state_session_expire(struct gw_state *st, double now, double lifetime, gw_session_cb cb, void *ctx);

/* ---- folder views --------------------------------------------------------- */

struct gw_folder_rec {
	uint32_t      uidvalidity;
	uint32_t      uidnext;
	uint64_t      highestmodseq;   /* 0: the store has no CONDSTORE */
	struct uidset uids;            /* the client's view: sequence n = n-th UID */
	char         *flags;           /* NULL with CONDSTORE; else "uid (flags)\n" per message */
};

void gw_folder_rec_init(struct gw_folder_rec *rec);
void gw_folder_rec_free(struct gw_folder_rec *rec);
/* 1 if none. */
int gw_state_folder_load(struct gw_state *st, const char *user, const char *device, const char *mailbox,
                         struct gw_folder_rec *rec);
int gw_state_folder_save(struct gw_state *st, const char *user, const char *device, const char *mailbox,
                         const struct gw_folder_rec *rec);
int gw_state_folder_delete(struct gw_state *st, const char *user, const char *device, const char *mailbox);
/* Every saved folder view of the device (a view filter for ALL folders changed). */
int gw_state_folders_delete(struct gw_state *st, const char *user, const char *device);

/* ---- filters (XFILTER) ------------------------------------------------------ */

/* mailbox "" is ALL; kind 'V' (view) or 'N' (notification); criteria is xfilter.c's canonical value. */
typedef void (*gw_filter_cb)(const char *mailbox, char kind, const char *criteria, void *ctx);
int gw_state_filters_load(struct gw_state *st, const char *user, const char *device, gw_filter_cb cb, void *ctx);
/* Store (criteria) or delete (NULL) one filter. For mailbox "" (ALL) every
 * mailbox's filter of that kind is deleted first, in the same transaction. */
int gw_state_filter_save(struct gw_state *st, const char *user, const char *device, const char *mailbox, char kind,
                         const char *criteria);

#endif
