/*
 * outband.c - out-band notifications from pimap-gateway (see outband.h).
 *
 * Objects:
 *   outband        the UDP sockets (one per address family, made when first
 *                  needed), the webhook trust anchors, the sequence counter,
 *                  per-device rate-limit records and webhook POSTs in flight
 *   ob_device      (user, device): key, when it was last notified, the event
 *                  waiting for the rate limit, and a copy of the preferences
 *                  that event is to be sent with
 *   webhook        one HTTPS POST: stream (TCP -> TLS), response reader
 *
 * A notification is a hint: nothing is queued for long, nothing is
 * retried. The events themselves wait in the gateway's session and reach
 * the device when it connects.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "clock.h"
#include "http_wire.h"
#include "log.h"
#include "outband.h"
#include "stream.h"
#include "tlsio.h"
#include "url.h"

/* The device key is kept among the device's preferences under a name no
 * client can set or read (XGETPIMAPPREF lists only PIMAP_* names). */
#define KEY_PREF_NAME "x-pimap-outband-key"
#define WEBHOOK_MAX_RESPONSE 65536

struct ob_device {
	struct ob_device *next;
	struct outband *ob;
	char *user;
	char *device;
	uint8_t key[OUTBAND_KEY_LEN];
	bool have_key;
	double last_sent;        /* monotonic; 0 = never */
	ev_timer later;          /* fires when the rate limit allows the pending event */
	bool pending;
	enum outband_event pending_ev;
	char *pending_mailbox;
	char *channel, *format, *address; /* preferences of the pending event */
};

struct webhook {
	struct webhook *next;
	struct outband *ob;
	struct stream *st;
	struct http_reader *rd;
	char host[256];
	char what[700];  /* for the log: "user#Pdevice -> host" */
	struct buf request;
	bool sent;
};

struct outband {
	struct ev_loop *loop;
	const struct gateway_config *cfg;
	struct gw_state *db;
	struct tls_creds *creds;
	int udp4, udp6;
	uint64_t last_seq;
	struct ob_device *devices;
	unsigned ndevices;
	struct webhook *webhooks;
	unsigned nwebhooks;
};

/* Microseconds of the wall clock: the EXTENDED sequence numbers. */
static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void outband_account(const char *user, const char *device, char *out, size_t outlen)
{
	const char *at = strrchr(user, '@');
	size_t local = at ? (size_t)(at - user) : strlen(user);
	snprintf(out, outlen, "%.*s#P%s%s", (int)local, user, device, at ? at : "");
}

/* ---- devices and keys ------------------------------------------------------ */

static void device_clear_pending(struct ob_device *d)
{
	d->pending = false;
	free(d->pending_mailbox);
	free(d->channel);
	free(d->format);
	free(d->address);
	d->pending_mailbox = d->channel = d->format = d->address = NULL;
}

static void device_free(struct ob_device *d)
{
	ev_timer_stop(d->ob->loop, &d->later);
	device_clear_pending(d);
	gnutls_memset(d->key, 0, sizeof(d->key));
	free(d->user);
	free(d->device);
	free(d);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents);

static struct ob_device *device_get(struct outband *ob, const char *user, const char *device)
{
	struct ob_device **pp = &ob->devices;
	for (struct ob_device *d = ob->devices; d; pp = &d->next, d = d->next) {
		if (strcmp(d->user, user) == 0 && strcmp(d->device, device) == 0) {
			*pp = d->next; /* most recently used first */
			d->next = ob->devices;
			ob->devices = d;
			return d;
		}
	}
	if (ob->ndevices >= OUTBAND_MAX_DEVICES) {
		/* Forget the least recently used record: at worst that device gets its next wake-up early. */
		struct ob_device **last = &ob->devices;
		while ((*last)->next)
			last = &(*last)->next;
		device_free(*last);
		*last = NULL;
		ob->ndevices--;
	}
	struct ob_device *d = xcalloc(1, sizeof(*d));
	d->ob = ob;
	d->user = xstrdup(user);
	d->device = xstrdup(device);
	ev_init(&d->later, on_later);
	d->later.data = d;
	d->next = ob->devices;
	ob->devices = d;
	ob->ndevices++;
	return d;
}

struct key_lookup {
	uint8_t *key;
	bool found;
};

static void key_pref_cb(const char *name, const char *value, void *ctx)
{
	struct key_lookup *kl = ctx;
	if (strcmp(name, KEY_PREF_NAME) != 0)
		return;
	gnutls_datum_t src = {(unsigned char *)(uintptr_t)value, (unsigned)strlen(value)};
	gnutls_datum_t raw = {NULL, 0};
	if (gnutls_base64_decode2(&src, &raw) == 0 && raw.size == OUTBAND_KEY_LEN) {
		memcpy(kl->key, raw.data, OUTBAND_KEY_LEN);
		kl->found = true;
	}
	if (raw.data) {
		gnutls_memset(raw.data, 0, raw.size);
		gnutls_free(raw.data);
	}
}

/* The device's key: from memory, from the database, or new (create). False if none and !create. */
static bool device_key(struct ob_device *d, bool create)
{
	if (d->have_key)
		return true;
	struct key_lookup kl = {d->key, false};
	gw_state_prefs_load(d->ob->db, d->user, d->device, key_pref_cb, &kl);
	if (kl.found) {
		d->have_key = true;
		return true;
	}
	if (!create)
		return false;
	gnutls_rnd(GNUTLS_RND_KEY, d->key, OUTBAND_KEY_LEN);
	gnutls_datum_t src = {d->key, OUTBAND_KEY_LEN};
	gnutls_datum_t b64 = {NULL, 0};
	if (gnutls_base64_encode2(&src, &b64) < 0)
		return false;
	char *text = xmalloc(b64.size + 1);
	memcpy(text, b64.data, b64.size);
	text[b64.size] = '\0';
	int rc = gw_state_pref_save(d->ob->db, d->user, d->device, KEY_PREF_NAME, text);
	gnutls_memset(text, 0, b64.size);
	gnutls_memset(b64.data, 0, b64.size);
	gnutls_free(b64.data);
	free(text);
	if (rc < 0)
		return false;
	d->have_key = true;
	return true;
}

void outband_provision(struct outband *ob, const char *user, const char *device, struct buf *out)
{
	struct ob_device *d = device_get(ob, user, device);
	if (!device_key(d, true)) {
		log_warn("cannot make an out-band key for %s#P%s", user, device);
		return;
	}
	gnutls_datum_t src = {d->key, OUTBAND_KEY_LEN};
	gnutls_datum_t b64 = {NULL, 0};
	if (gnutls_base64_encode2(&src, &b64) < 0)
		return;
	buf_append_str(out, "* XPROVISION PIMAP_ENC_KEY (");
	buf_append(out, b64.data, b64.size);
	buf_append_str(out, ")\r\n* XPROVISION PIMAP_ENC_CIPHER (AES-256-GCM)\r\n");
	gnutls_memset(b64.data, 0, b64.size);
	gnutls_free(b64.data);
}

/* ---- payloads ------------------------------------------------------------- */

/* Strictly growing: microseconds of the wall clock, or one more than the last. */
static uint64_t next_seq(struct outband *ob)
{
	uint64_t now = wall_us();
	ob->last_seq = now > ob->last_seq ? now : ob->last_seq + 1;
	return ob->last_seq;
}

/* The payload in the device's format; -1 if EXTENDED cannot be sealed (no key yet). */
static int make_payload(struct ob_device *d, const char *format, enum outband_event ev, const char *mailbox,
                        struct buf *out)
{
	char account[OUTBAND_MAX_ACCOUNT + 1];
	outband_account(d->user, d->device, account, sizeof(account));
	if (strcasecmp(format, "EXTENDED") == 0) {
		if (!device_key(d, false)) {
			log_warn("out-band EXTENDED for %s: the device has no key yet (XPROVISION gives it one)", account);
			return -1;
		}
		uint8_t salt[OUTBAND_SALT_LEN];
		gnutls_rnd(GNUTLS_RND_NONCE, salt, sizeof(salt));
		if (mailbox && (strlen(mailbox) > OUTBAND_MAX_MAILBOX))
			mailbox = NULL;
		return outband_extended_encode(d->key, next_seq(d->ob), salt, account, ev, mailbox, out);
	}
	outband_emn_format(account, time(NULL), out);
	return 0;
}

/* ---- UDP ------------------------------------------------------------------ */

static int udp_socket(struct outband *ob, int family)
{
	int *slot = family == AF_INET6 ? &ob->udp6 : &ob->udp4;
	if (*slot >= 0)
		return *slot;
	int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		log_warn("out-band UDP socket: %s", strerror(errno));
	*slot = fd;
	return fd;
}

static void send_udp(struct ob_device *d, const char *address, const struct buf *payload)
{
	char host[256], port[16], err[128];
	if (listen_addr_parse(address, host, sizeof(host), port, sizeof(port), err, sizeof(err)) < 0 ||
	    strcmp(port, "0") == 0) {
		log_warn("out-band UDP for %s#P%s: PIMAP_OUTBAND_ADDRESS \"%s\" is not IP:port", d->user, d->device,
		         address);
		return;
	}
	/* Numeric only: a name lookup would block the event loop for every wake-up. */
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
		log_warn("out-band UDP for %s#P%s: \"%s\" is not a numeric address", d->user, d->device, address);
		return;
	}
	int fd = udp_socket(d->ob, res->ai_family);
	if (fd >= 0 && sendto(fd, buf_head(payload), buf_len(payload), MSG_NOSIGNAL, res->ai_addr, res->ai_addrlen) < 0)
		log_warn("out-band UDP to %s: %s", address, strerror(errno));
	else if (fd >= 0)
		log_debug("out-band UDP notification to %s (%zu bytes) for %s#P%s", address, buf_len(payload), d->user,
		          d->device);
	freeaddrinfo(res);
}

/* ---- webhooks -------------------------------------------------------------- */

static void webhook_unlink(struct webhook *w)
{
	struct outband *ob = w->ob;
	for (struct webhook **pp = &ob->webhooks; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			ob->nwebhooks--;
			break;
		}
	}
	if (w->st) {
		stream_close(w->st);
		w->st = NULL;
	}
}

static void webhook_release(void *arg)
{
	struct webhook *w = arg;
	http_reader_free(w->rd);
	buf_free(&w->request);
	free(w);
}

/* Done, either way: unlinked at once, memory released from the loop (we may be in its callback). */
static void webhook_finish(struct webhook *w, bool ok, const char *why)
{
	if (ok)
		log_info("out-band webhook %s: %s", w->what, why);
	else
		log_warn("out-band webhook %s failed: %s", w->what, why);
	webhook_unlink(w);
	loop_defer_free(webhook_release, w);
}

static void webhook_read(struct webhook *w)
{
	struct buf *in = stream_input(w->st);
	size_t used;
	enum http_read_result r;
	do {
		r = http_reader_feed(w->rd, buf_head(in), buf_len(in), &used, NULL);
		buf_consume(in, used);
	} while (r == HTTP_READ_HEAD);
	if (r == HTTP_READ_ERROR) {
		webhook_finish(w, false, http_reader_error(w->rd));
		return;
	}
	const struct http_head *h = http_reader_head(w->rd);
	if (r == HTTP_READ_DONE) {
		char why[64];
		snprintf(why, sizeof(why), "HTTP %u", h->status);
		webhook_finish(w, h->status >= 200 && h->status < 300, why);
	}
}

static void on_webhook_event(struct stream *st, enum stream_event ev, const char *reason, void *ctx)
{
	struct webhook *w = ctx;
	char err[256];
	(void)st;
	switch (ev) {
	case STREAM_EV_CONNECTED:
		if (stream_start_tls_client(w->st, w->ob->creds, w->host, err, sizeof(err)) < 0)
			webhook_finish(w, false, err);
		return;
	case STREAM_EV_TLS_READY:
		stream_write(w->st, buf_head(&w->request), buf_len(&w->request));
		stream_flush(w->st);
		w->sent = true;
		return;
	case STREAM_EV_DATA:
		webhook_read(w);
		return;
	case STREAM_EV_EOF:
		if (http_reader_eof(w->rd, NULL) == HTTP_READ_DONE) {
			const struct http_head *h = http_reader_head(w->rd);
			char why[64];
			snprintf(why, sizeof(why), "HTTP %u", h->status);
			webhook_finish(w, h->status >= 200 && h->status < 300, why);
		} else {
			webhook_finish(w, false, "connection closed before an answer");
		}
		return;
	case STREAM_EV_ERROR:
		webhook_finish(w, false, reason ? reason : "connection error");
		return;
	case STREAM_EV_DRAINED:
		return;
	}
}

static void send_webhook(struct ob_device *d, const char *address, const char *format, const struct buf *payload)
{
	struct outband *ob = d->ob;
	struct upstream_url url;
	char err[256];
	if (url_parse(address, &url, err, sizeof(err)) < 0 || url.scheme != URL_HTTPS) {
		log_warn("out-band webhook for %s#P%s: PIMAP_OUTBAND_ADDRESS is not an https:// URL", d->user, d->device);
		return;
	}
	if (ob->nwebhooks >= OUTBAND_MAX_WEBHOOKS) {
		log_warn("out-band webhook for %s#P%s dropped: %d POSTs already under way", d->user, d->device,
		         OUTBAND_MAX_WEBHOOKS);
		return;
	}
	struct webhook *w = xcalloc(1, sizeof(*w));
	w->ob = ob;
	snprintf(w->host, sizeof(w->host), "%s", url.host);
	snprintf(w->what, sizeof(w->what), "%.256s#P%.64s -> %.255s", d->user, d->device, url.host);
	struct http_limits lim = {.max_header_bytes = 16384, .max_headers = 100, .max_body = WEBHOOK_MAX_RESPONSE};
	w->rd = http_reader_new(HTTP_READER_RESPONSE, &lim);
	buf_init(&w->request, 0);
	bool v6 = strchr(url.host, ':') != NULL;
	buf_printf(&w->request,
	           "POST %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: pimap-gateway/" PACKAGE_VERSION "\r\n"
	           "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	           url.path, v6 ? "[" : "", url.host, v6 ? "]" : "", url.port,
	           strcasecmp(format, "EXTENDED") == 0 ? "text/plain; charset=us-ascii" : "application/vnd.oma.emn+xml",
	           buf_len(payload));
	buf_append(&w->request, buf_head(payload), buf_len(payload));
	w->next = ob->webhooks;
	ob->webhooks = w;
	ob->nwebhooks++;
	w->st = stream_connect(ob->loop, url.host, url.port, ob->cfg->outband_webhook_timeout, "webhook", 65536,
	                       on_webhook_event, w, err, sizeof(err));
	if (!w->st) {
		webhook_finish(w, false, err);
		return;
	}
}

/* ---- sending and the rate limit -------------------------------------------- */

static void send_now(struct ob_device *d, const char *channel, const char *format, const char *address,
                     enum outband_event ev, const char *mailbox)
{
	struct buf payload;
	buf_init(&payload, 0);
	if (make_payload(d, format, ev, mailbox, &payload) == 0) {
		d->last_sent = clock_mono();
		if (strcasecmp(channel, "UDP") == 0)
			send_udp(d, address, &payload);
		else if (strcasecmp(channel, "WEBHOOK") == 0)
			send_webhook(d, address, format, &payload);
	}
	buf_free(&payload);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ob_device *d = w->data;
	(void)loop;
	(void)revents;
	if (!d->pending)
		return;
	send_now(d, d->channel, d->format, d->address, d->pending_ev, d->pending_mailbox);
	device_clear_pending(d);
}

/* Which of two waiting events is told: new mail is what a user waits for. */
static int event_rank(enum outband_event ev)
{
	return ev == OB_NEW_MESSAGE ? 3 : ev == OB_DELETED_MESSAGE ? 2 : 1;
}

void outband_device_event(struct outband *ob, const char *user, const char *device,
                          const struct pimap_prefs *prefs, enum outband_event ev, const char *mailbox)
{
	const char *channel = prefs->value[PIMAP_PREF_OUTBAND_CHANNEL];
	const char *filter = prefs->value[PIMAP_PREF_EVENT_FILTER];
	if (strcasecmp(channel, "NONE") == 0 || strcasecmp(filter, "NONE") == 0)
		return;
	if (strcasecmp(filter, "NEW") == 0 && ev != OB_NEW_MESSAGE)
		return;
	struct ob_device *d = device_get(ob, user, device);
	double now = clock_mono();
	double wait = d->last_sent ? d->last_sent + ob->cfg->outband_min_interval - now : 0;
	if (wait <= 0 && !d->pending) {
		send_now(d, channel, prefs->value[PIMAP_PREF_OUTBAND_FORMAT], prefs->value[PIMAP_PREF_OUTBAND_ADDRESS], ev,
		         mailbox);
		return;
	}
	/* Within the rate limit: one notification at the end of the interval tells of all of them. */
	if (!d->pending || event_rank(ev) > event_rank(d->pending_ev)) {
		device_clear_pending(d);
		d->pending = true;
		d->pending_ev = ev;
		d->pending_mailbox = mailbox ? xstrdup(mailbox) : NULL;
		d->channel = xstrdup(channel);
		d->format = xstrdup(prefs->value[PIMAP_PREF_OUTBAND_FORMAT]);
		d->address = xstrdup(prefs->value[PIMAP_PREF_OUTBAND_ADDRESS]);
	}
	if (!ev_is_active(&d->later)) {
		ev_timer_set(&d->later, wait > 0 ? wait : 0, 0);
		ev_timer_start(ob->loop, &d->later);
	}
}

/* ---- lifetime --------------------------------------------------------------- */

struct outband *outband_new(struct ev_loop *loop, const struct gateway_config *cfg, struct gw_state *db,
                            char *err, size_t errlen)
{
	struct outband *ob = xcalloc(1, sizeof(*ob));
	ob->loop = loop;
	ob->cfg = cfg;
	ob->db = db;
	ob->udp4 = ob->udp6 = -1;
	ob->creds = tlsio_client_creds_new(cfg->outband_webhook_ca_file, err, errlen);
	if (!ob->creds) {
		free(ob);
		return NULL;
	}
	return ob;
}

void outband_reconfigure(struct outband *ob, const struct gateway_config *cfg)
{
	if (!ob)
		return;
	if (strcmp(ob->cfg->outband_webhook_ca_file, cfg->outband_webhook_ca_file) != 0)
		log_warn("outband.webhook_ca_file changed: takes effect after a restart");
	ob->cfg = cfg;
}

void outband_free(struct outband *ob)
{
	if (!ob)
		return;
	while (ob->webhooks) {
		struct webhook *w = ob->webhooks;
		webhook_unlink(w);
		webhook_release(w);
	}
	while (ob->devices) {
		struct ob_device *d = ob->devices;
		ob->devices = d->next;
		device_free(d);
	}
	if (ob->udp4 >= 0)
		close(ob->udp4);
	if (ob->udp6 >= 0)
		close(ob->udp6);
	tlsio_creds_unref(ob->creds);
	free(ob);
}
