/*
 * macros.h - command macros: what a known client sends next, prefetched.
 *
 * The proxy sits between a stock mail client and a remote server on a slow
 * link. A macro names a client, a trigger command pattern and the read-only
 * commands that client is known to send right after it. On the trigger the
 * proxy sends the trigger plus the macro's commands upstream in one batch,
 * then answers the client's matching follow-up commands from the captured
 * responses (docs/pimap-macros.5 describes the file format for users).
 *
 * This module is pure: it loads and validates macro files (YAML through
 * libyaml; errors are "file:line:column: message" exactly like
 * cfg_format_error), picks the client, expands a trigger into command texts
 * and decides whether a prefetched command can answer a client's command.
 * It never touches a socket, and it never lets anything with a side effect
 * be prefetched: every command is checked when the file is loaded and again
 * after placeholders are substituted.
 */
#ifndef PIMAP_MACROS_H
#define PIMAP_MACROS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap_parse.h"
#include "uidset.h"

/* Commands one macro may prefetch: a batch that large is already a guess. */
#define MACRO_MAX_SEND 16
/* Macros in one file: shipped files have a handful; more is a generated mistake. */
#define MACRO_MAX_PER_FILE 64
/* A macro file bigger than this is a wrong path (a mailbox, a log), not macros. */
#define MACRO_MAX_FILE_SIZE (1024 * 1024)
/* Longest trigger or command text in a file, before substitution. */
#define MACRO_MAX_COMMAND 4096
/* RFC 2971 allows at most 30 ID field/value pairs. */
#define MACRO_MAX_ID_FIELDS 30
/* Listener addresses one client entry may name. */
#define MACRO_MAX_LISTEN 32
/*
 * Members of an explicit (star-free) sequence set that macro_claim()
 * materialises; a larger set (a hostile "1:4000000000") is not claimed and
 * the client's command simply goes upstream.
 */
#define MACRO_MAX_CLAIM_SET 1000000u

struct macro_set;      /* every client and macro loaded from a directory */
struct macro_client;   /* one client entry */

/*
 * Load every *.yaml file in dir (sorted by name with strcmp; other files,
 * dot files and non-regular files ignored). A missing or unreadable dir is an
 * error naming it; an empty dir is an empty set. The same client name in two
 * files is an error. Returns NULL with "file:line:column: message" (or
 * "file: message" without a position) in err.
 */
struct macro_set *macro_set_load_dir(const char *dir, char *err, size_t errlen);
/* One document from memory; name is used as the file name in errors (for tests and the loader). */
struct macro_set *macro_set_load_string(const char *name, const char *yaml, size_t len, char *err,
                                        size_t errlen);
void macro_set_free(struct macro_set *set);
size_t macro_set_count(const struct macro_set *set);   /* macros in all files */
size_t macro_set_client_count(const struct macro_set *set);

/*
 * Which client is this? id_kv: NULL or a NULL-terminated array of
 * alternating field/value strings from the client's ID command (NIL values
 * skipped by the caller); listener: the listener's configured address or
 * "stdio" (NULL: none). A client matches by ID when every field of its id:
 * mapping is present (field names case-insensitive) and its value matches
 * the glob (fnmatch, case-insensitive). ID match wins over listener match;
 * among equals the first loaded client wins. NULL if none.
 */
const struct macro_client *macro_client_find(const struct macro_set *set, const char *const *id_kv,
                                             const char *listener);
const char *macro_client_name(const struct macro_client *c);
/*
 * The fetch items new mail should be pushed with (PIMAP_INBAND_NEW_FORMAT):
 * the file's new_mail.fetch if given, else the items (a parenthesised list,
 * or one item, as written) of the first FETCH or UID FETCH the client's
 * macros prefetch. NULL if none.
 */
const char *macro_client_fetch_items(const struct macro_client *c);

/*
 * If a macro of client c triggers on the client command cmd (a parsed
 * IMAP_MSG_COMMAND; args[0] is the command name), return the number of
 * commands to prefetch and set *out to a malloc'd array of malloc'd command
 * texts (no tag, no CRLF, literals never produced: if a substituted value
 * cannot be an atom or quoted string, that macro does not fire; a trigger of
 * just "ID" fires on every ID command). 0 and
 * *out=NULL if none fires. The first macro (file order) that matches and
 * can fire wins. A captured atom is substituted as written; a captured
 * quoted string or literal is written as a quoted string. Every expanded
 * command is parsed and checked with macro_command_is_read_only() before
 * it is returned. Free with macro_free_commands.
 */
size_t macro_expand(const struct macro_client *c, const struct imap_msg *cmd, char ***out);
void macro_free_commands(char **cmds, size_t n);

/*
 * The loader's rule, for the proxy: FETCH / UID FETCH whose items never set
 * \Seen (BODY.PEEK[..], BINARY.PEEK[..], BINARY.SIZE[..], RFC822.HEADER,
 * RFC822.SIZE, FLAGS, UID, INTERNALDATE, ENVELOPE, BODYSTRUCTURE, BODY,
 * MODSEQ, ALL, FAST, FULL; modifiers CHANGEDSINCE, VANISHED), SEARCH / UID
 * SEARCH (RETURN options MIN MAX ALL COUNT PARTIAL only: SAVE and UPDATE
 * change session state), STATUS, LIST, LSUB, NAMESPACE, GETQUOTAROOT,
 * GETQUOTA, MYRIGHTS, GETMETADATA. Literals are refused. cmd must be an
 * IMAP_MSG_COMMAND.
 */
bool macro_command_is_read_only(const struct imap_msg *cmd);

/* Can a prefetched command answer the client's command? */
enum macro_claim_kind {
	MACRO_CLAIM_NONE,   /* no */
	MACRO_CLAIM_EXACT,  /* the same command (normalised: case-insensitive command names/atoms/fetch items, same strings, INBOX case-insensitive): replay all its responses */
	MACRO_CLAIM_FETCH,  /* both are FETCH (or both UID FETCH) with the same item list (normalised, order-sensitive) and the client's set may be a subset: the caller filters */
};
struct macro_claim {
	enum macro_claim_kind kind;
	bool   uid;            /* FETCH kind: UID FETCH (numbers are UIDs) or FETCH (sequence numbers) */
	struct uidset want;    /* FETCH kind: the client's set with "*" resolved by the caller later; see star */
	bool   want_star;      /* the client's set contains "*" (as n:* or *) : star_from holds the lower bound of that range */
	uint32_t star_from;    /* 0 when the "*" stands alone (the range is just the largest number) */
	struct uidset have;    /* FETCH kind: the prefetch's set, same convention */
	bool   have_star;
	uint32_t have_star_from;
};
/*
 * prefetch: a command text as produced by macro_expand. Fills *out (caller
 * calls macro_claim_free, whatever the result). EXACT is checked first, so
 * an identical FETCH is EXACT. FETCH is returned only when the client's set
 * can be a subset of the prefetch's for some value of "*": when neither set
 * has "*" and the client's is not a subset, the answer is NONE. Sets with
 * more than one "*" range, or more than MACRO_MAX_CLAIM_SET explicit
 * members, are not claimed. Modifiers (CHANGEDSINCE ...) must be identical.
 */
enum macro_claim_kind macro_claim(const char *prefetch, const struct imap_msg *client_cmd,
                                  struct macro_claim *out);
void macro_claim_free(struct macro_claim *c);

/*
 * For a FETCH claim: with "*" standing for want_max in the client's set and
 * for have_max in the prefetch's set (the largest sequence number or UID
 * when each command ran), is every number the client asked for in the
 * prefetch's set? A range "n:*" is n..max, or max..n when n > max (RFC 9051).
 */
bool macro_claim_covers(const struct macro_claim *c, uint32_t want_max, uint32_t have_max);

#endif
