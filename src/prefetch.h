/*
 * prefetch.h - one command sent ahead of the client per a macro, and what
 * came back for it.
 *
 * pimap-proxy sends a macro's commands upstream together with the trigger
 * (macros.c decides what and when). The gateway's untagged responses to
 * such a command are captured here, with the tagged status; when the client
 * then sends a command the prefetch can answer (macro_claim), the reply is
 * built from the capture: every response for an identical command, or the
 * FETCH responses for the numbers a narrower FETCH asked for. Pure: bytes
 * in, bytes out.
 */
#ifndef PIMAP_PREFETCH_H
#define PIMAP_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "imap_parse.h"
#include "macros.h"

/* Bytes of responses one prefetch may hold; beyond it the capture is dropped
 * and the client's own command goes upstream (a macro is a guess, not a
 * licence to buffer a whole mailbox). */
#define PREFETCH_MAX_BYTES (16u * 1024 * 1024)

struct prefetch;

struct prefetch *prefetch_new(const char *text);
void prefetch_free(struct prefetch *pf);
const char *prefetch_text(const struct prefetch *pf);

/* One untagged response to the prefetched command. Returns false (and
 * drops the capture) past PREFETCH_MAX_BYTES. */
bool prefetch_capture(struct prefetch *pf, const struct imap_msg *m);
/* Its tagged reply arrived. */
void prefetch_finish(struct prefetch *pf, const struct imap_msg *tagged);
bool prefetch_finished(const struct prefetch *pf);
/* Finished with OK and the capture intact. */
bool prefetch_usable(const struct prefetch *pf);
size_t prefetch_bytes(const struct prefetch *pf);
/* The message number of the last FETCH response captured (0: none): a
 * prefetch's own responses come in ascending order, anything at or below
 * it is somebody else's news. */
uint32_t prefetch_last_seq(const struct prefetch *pf);

/*
 * The reply to a client command that claimed this prefetch (cl from
 * macro_claim on prefetch_text()): the captured responses it asked for and
 * "tag <status>" (the prefetch's own tagged text), appended to out.
 * seq_count is the number of messages the client knows (for "*" in a
 * sequence set). Returns false, out untouched, when the capture cannot
 * answer exactly (not usable, or a FETCH claim asks for numbers the
 * prefetch did not cover).
 */
bool prefetch_reply(const struct prefetch *pf, const struct macro_claim *cl, const char *tag, uint32_t seq_count,
                    struct buf *out);

#endif
