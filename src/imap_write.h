/*
 * imap_write.h - producing IMAP text that a server will parse exactly as
 * meant: astrings that survive any byte, and client commands re-tagged for
 * relaying with their literals made non-synchronising.
 * Pure functions over byte buffers.
 */
#ifndef PIMAP_IMAP_WRITE_H
#define PIMAP_IMAP_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Literal segments one relayed command may contain. */
#define IMAP_MAX_LITERAL_SEGMENTS 256

/*
 * Find the synchronising literal headers ("{n}" or "~{n}" ending a line) in a
 * complete raw command: ends[i] is the offset just after header i's LF,
 * sizes[i] its n. Non-synchronising literals are skipped over. Returns the
 * count, or -1 if there are more than max.
 */
int imap_find_sync_literals(const uint8_t *raw, size_t len, size_t *ends, size_t *sizes, size_t max);

/* The same for every literal header, synchronising or not (nonsync[i] says which). */
int imap_find_literals(const uint8_t *raw, size_t len, size_t *ends, size_t *sizes, bool *nonsync, size_t max);

/*
 * Append raw (a complete command as received) to out with every
 * non-synchronising literal header ("{n+}", "~{n+}") written synchronising
 * ("{n}"): for a server without LITERAL+, where a client's own LITERAL+
 * literal would be refused with its bytes read as commands. Returns the
 * number of literals (all kinds), or -1 (out unchanged) if there are more
 * than IMAP_MAX_LITERAL_SEGMENTS.
 */
int imap_write_literals_sync(struct buf *out, const uint8_t *raw, size_t len);

/*
 * Append raw (a complete command as received, starting with its tag of
 * tag_len bytes) to out with the tag replaced by new_tag and every
 * synchronising literal header rewritten as LITERAL+ ("{n+}"): the relay has
 * already answered the client's "+", the store must not wait for another.
 * Returns 0, or -1 if the command has more than IMAP_MAX_LITERAL_SEGMENTS
 * literals (out unchanged).
 */
int imap_write_retagged(struct buf *out, const char *new_tag, const uint8_t *raw, size_t len, size_t tag_len);

/*
 * Append s as an IMAP astring argument: a quoted string when every byte
 * allows it (no CR, LF, NUL, 8-bit), else a LITERAL+ "{n+}\r\n" + bytes.
 */
void imap_write_astring(struct buf *out, const char *s, size_t len);
/* True if imap_write_astring writes s as a literal (a CR, LF, NUL or 8-bit byte). */
bool imap_astring_needs_literal(const char *s, size_t len);

/*
 * A mailbox name: an atom when it is one (INBOX), else as an astring. In a
 * server response (in_response) a literal takes the synchronising form
 * "{n}": LITERAL+ is a client's form only.
 */
void imap_write_mailbox(struct buf *out, const char *name, bool in_response);

/* Whether imap_write_mailbox writes name as a bare atom. */
bool imap_mailbox_is_atom(const char *name);

#endif
