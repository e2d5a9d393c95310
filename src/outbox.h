/*
 * outbox.h - pimap-proxy's durable outbox: messages accepted over SMTP
 * while they could not be sent, kept on disk until they are.
 *
 * One file per message in state_dir/outbox/, named so that the names sort
 * in the order the messages were accepted. A file is written whole in
 * outbox/tmp/, fsynced, renamed into place and the directory fsynced
 * before outbox_add() returns: only then may the SMTP client be told 250.
 * A crash before the rename leaves a file in tmp/ that was never
 * acknowledged; outbox_open() removes those. Replacing an entry (a message
 * that failed becomes the report that goes to INBOX) is one rename over
 * the old file, so an entry is always either the one or the other.
 *
 * Only one process works on an outbox at a time: outbox_open() takes an
 * exclusive lock (flock on outbox/lock, released when the process ends,
 * even by SIGKILL); a second process gets NULL with "busy" and leaves the
 * sending to the first. Synchronous file I/O; entries are small and rare.
 */
#ifndef PIMAP_OUTBOX_H
#define PIMAP_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define OUTBOX_DIR "outbox"
/* An entry's name: 16 hex digits of microseconds, '-', 8 of pid, '-', 8 random. */
#define OUTBOX_NAME_MAX 40
/* Recipients of one entry (the SMTP listener allows fewer). */
#define OUTBOX_MAX_RCPTS 1000

enum outbox_kind {
	OUTBOX_SEND, /* a message to send */
	OUTBOX_DSN,  /* a report (RFC 3464) to append to the user's INBOX */
};

struct outbox_entry {
	char             name[OUTBOX_NAME_MAX + 1]; /* set by outbox_add / outbox_load */
	enum outbox_kind kind;
	char            *user;       /* the account it belongs to */
	char            *from;       /* MAIL FROM ("" = null sender) */
	char           **rcpts;
	size_t           nrcpts;
	char            *message_id; /* the message's Message-ID (every queued message has one) */
	char            *saveto;     /* a folder for the sent copy, or NULL */
	double           created;    /* when the message was accepted (unix time) */
	struct buf       msg;        /* the message (or the report) */
};

struct outbox;

/*
 * Open (creating) state_dir/outbox. max_bytes bounds the total size of
 * its files (outbox_add refuses beyond). NULL with err; *busy is set when
 * another process holds the outbox.
 */
struct outbox *outbox_open(const char *state_dir, size_t max_bytes, bool *busy, char *err, size_t errlen);
void outbox_close(struct outbox *ob);
void outbox_set_max(struct outbox *ob, size_t max_bytes);

void outbox_entry_init(struct outbox_entry *e);
void outbox_entry_free(struct outbox_entry *e);

/* Write e durably (see above) and set e->name. 0, or -1 with err (full: *full set). */
int outbox_add(struct outbox *ob, struct outbox_entry *e, bool *full, char *err, size_t errlen);
/* Replace entry e->name by e (same name), durably. 0 or -1 with err. */
int outbox_replace(struct outbox *ob, const struct outbox_entry *e, char *err, size_t errlen);
/* Remove entry name, durably. 0 or -1 with err. */
int outbox_remove(struct outbox *ob, const char *name, char *err, size_t errlen);

/* The size of all entries in bytes (what smtp.outbox_max_size bounds). */
size_t outbox_bytes(struct outbox *ob);
/* The entries' names in order, as a malloc'd array of malloc'd strings; *n set. Free with outbox_names_free. */
char **outbox_list(struct outbox *ob, size_t *n);
void outbox_names_free(char **names, size_t n);
/* Read one entry (e is initialised here). 0; 1 if it is gone; -1 with err if it cannot be read. */
int outbox_load(struct outbox *ob, const char *name, struct outbox_entry *e, char *err, size_t errlen);

/* Serialise / parse an entry (the file format, exposed for tests). Parse: 0 or -1 with err. */
void outbox_format(const struct outbox_entry *e, struct buf *out);
int outbox_parse(const uint8_t *data, size_t len, struct outbox_entry *e, char *err, size_t errlen);

#endif
