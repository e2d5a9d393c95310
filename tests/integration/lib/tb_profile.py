"""tb_profile.py - a fresh Thunderbird profile for the tests, no prompt needed.

    python3 tb_profile.py DIR --imap-port P --smtp-port S --user U --password PW
                          [--host 127.0.0.1] [--nss-dir /usr/lib/thunderbird]

writes DIR/user.js (one IMAP account on HOST:P with normal-password login,
one SMTP server on HOST:S, an identity, Local Folders; first-run pages,
update checks, telemetry, safe browsing, connectivity probes, DoH, remote
settings and autoconfig lookups off) and stores the password the way
Thunderbird itself does: a key4.db with an empty primary password and a
logins.json entry per server whose user name and password are encrypted
with that key (PK11SDR_Encrypt). The encryption uses Thunderbird's own
bundled NSS (libnss3.so in its install directory), so the database is one
its NSS version reads. Run it with LD_LIBRARY_PATH set to that directory
(the bundled libnss3 needs the bundled libnssutil3), which tb_profile()
in thunderbird.sh does.

Nothing here talks to the network; the test runs Thunderbird in a network
namespace with loopback only besides.
"""

import argparse
import base64
import ctypes
import json
import os
import sys
import time
import uuid


class SECItem(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_ubyte)),
                ("len", ctypes.c_uint)]


class NSS:
    """The few NSS calls needed to make key4.db and encrypt with its key."""

    def __init__(self, nss_dir, profile):
        self.lib = ctypes.CDLL(os.path.join(nss_dir, "libnss3.so"))
        lib = self.lib
        lib.NSS_InitReadWrite.argtypes = [ctypes.c_char_p]
        lib.PK11_GetInternalKeySlot.restype = ctypes.c_void_p
        lib.PK11_NeedUserInit.argtypes = [ctypes.c_void_p]
        lib.PK11_InitPin.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.PK11_Authenticate.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.PK11_FreeSlot.argtypes = [ctypes.c_void_p]
        lib.PK11SDR_Encrypt.argtypes = [ctypes.POINTER(SECItem), ctypes.POINTER(SECItem),
                                        ctypes.POINTER(SECItem), ctypes.c_void_p]
        lib.SECITEM_ZfreeItem.argtypes = [ctypes.POINTER(SECItem), ctypes.c_int]
        if lib.NSS_InitReadWrite(("sql:" + profile).encode()) != 0:
            raise RuntimeError("NSS_InitReadWrite(%s) failed" % profile)
        slot = lib.PK11_GetInternalKeySlot()
        if not slot:
            raise RuntimeError("no internal key slot")
        # A new database has no primary password yet: set an empty one,
        # which is what Thunderbird does for a fresh profile.
        if lib.PK11_NeedUserInit(slot):
            if lib.PK11_InitPin(slot, None, b"") != 0:
                raise RuntimeError("PK11_InitPin failed")
        if lib.PK11_Authenticate(slot, 1, None) != 0:
            raise RuntimeError("PK11_Authenticate with the empty password failed")
        lib.PK11_FreeSlot(slot)

    def encrypt(self, text):
        data = text.encode()
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        keyid = SECItem(0, None, 0)  # the default SDR key (created on first use)
        item = SECItem(0, ctypes.cast(buf, ctypes.POINTER(ctypes.c_ubyte)), len(data))
        out = SECItem(0, None, 0)
        if self.lib.PK11SDR_Encrypt(ctypes.byref(keyid), ctypes.byref(item), ctypes.byref(out), None) != 0:
            raise RuntimeError("PK11SDR_Encrypt failed")
        blob = ctypes.string_at(out.data, out.len)
        self.lib.SECITEM_ZfreeItem(ctypes.byref(out), 0)
        return base64.b64encode(blob).decode()

    def close(self):
        self.lib.NSS_Shutdown()


def login_entry(nss, n, origin, user, password, now_ms):
    return {
        "id": n,
        "hostname": origin,
        "httpRealm": origin,
        "formSubmitURL": None,
        "usernameField": "",
        "passwordField": "",
        "encryptedUsername": nss.encrypt(user),
        "encryptedPassword": nss.encrypt(password),
        "guid": "{%s}" % uuid.uuid4(),
        "encType": 1,
        "timeCreated": now_ms,
        "timeLastUsed": now_ms,
        "timePasswordChanged": now_ms,
        "timesUsed": 1,
    }


# Everything Thunderbird would otherwise fetch, ask or show on a first start.
QUIET_PREFS = {
    # first-run and start pages, default-client and account wizards
    "mail.provider.enabled": False,
    "mail.shell.checkDefaultClient": False,
    "mailnews.start_page.enabled": False,
    "mailnews.start_page.url": "about:blank",
    "mail.rights.version": 1,
    "mail.startup.enabledMailCheckOnce": True,
    "mail.accounthub.thundermail.enabled": False,
    "mail.accounthub.addressbook.enabled": False,
    "mail.spotlight.firstRunDone": True,
    "mail.winsearch.firstRunDone": True,
    "mail.inappnotifications.enabled": False,
    "mail.inappnotifications.url": "",
    "mail.cloud_files.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "browser.tabs.remote.autostart": False,
    # updates, add-ons, telemetry, crash reports
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.disabledForTesting": True,
    "app.update.checkInstallTime": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.firstRunURL": "",
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.newProfilePing.enabled": False,
    "toolkit.telemetry.shutdownPingSender.enabled": False,
    "toolkit.telemetry.updatePing.enabled": False,
    "toolkit.telemetry.bhrPing.enabled": False,
    "toolkit.telemetry.firstShutdownPing.enabled": False,
    "breakpad.reportURL": "",
    "browser.crashReports.unsubmittedCheck.enabled": False,
    # network probes, DoH, prefetching, safe browsing, remote settings
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.trr.mode": 5,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "services.settings.server": "http://127.0.0.1:9/",  # needs MOZ_REMOTE_SETTINGS_DEVTOOLS=1
    "geo.enabled": False,
    "security.OCSP.enabled": 0,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "mailnews.auto_config.fetchFromISP.enabled": False,
    "mailnews.auto_config.guess.enabled": False,
    "mailnews.auto_config.fetchFromExchange.enabled": False,
    "mailnews.auto_config_url": "",
    "mailnews.mx_service_url": "",
    "calendar.timezone.useSystemTimezone": True,
    "messenger.startup.action": 0,
    # the only network the test has is loopback: never decide to go offline
    "offline.autoDetect": False,
    "network.manage-offline-status": False,
    "offline.startup_state": 2,
    # no primary password prompt for the stored logins
    "security.prompt_for_master_password_on_startup": False,
    "signon.rememberSignons": True,
    # sending: no "are you sure" after Ctrl+Return, no spell check dialog
    "mail.warn_on_send_accel_key": False,
    "mail.SpellCheckBeforeSend": False,
    "mailnews.sendInBackground": False,
    # no notification pop-ups that need a desktop
    "mail.biff.show_alert": False,
    "mail.biff.use_system_alert": False,
    "mail.biff.play_sound": False,
}


def account_prefs(a):
    """The account, identity and servers. a: the parsed arguments."""
    host = a.host
    return {
        "mail.accountmanager.accounts": "account1,account2",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.accountmanager.localfoldersserver": "server2",
        "mail.account.account1.identities": "id1",
        "mail.account.account1.server": "server1",
        "mail.account.account2.server": "server2",
        "mail.account.lastKey": 2,
        "mail.server.server1.type": "imap",
        "mail.server.server1.hostname": host,
        "mail.server.server1.realhostname": host,
        "mail.server.server1.port": a.imap_port,
        "mail.server.server1.userName": a.user,
        "mail.server.server1.realuserName": a.user,
        "mail.server.server1.name": a.account_name,
        "mail.server.server1.socketType": 0,       # plain: the proxy is on loopback
        "mail.server.server1.authMethod": 3,       # normal password
        "mail.server.server1.login_at_startup": True,
        "mail.server.server1.check_new_mail": True,
        "mail.server.server1.check_time": 1,
        "mail.server.server1.use_idle": True,
        "mail.server.server1.offline_download": True,
        "mail.server.server1.directory-rel": "[ProfD]ImapMail/" + host,
        "mail.server.server1.storeContractID": "@mozilla.org/msgstore/berkeleystore;1",
        "mail.server.server2.type": "none",
        "mail.server.server2.hostname": "Local Folders",
        "mail.server.server2.userName": "nobody",
        "mail.server.server2.name": "Local Folders",
        "mail.server.server2.directory-rel": "[ProfD]Mail/Local Folders",
        "mail.identity.id1.fullName": a.user.capitalize(),
        "mail.identity.id1.useremail": a.email,
        "mail.identity.id1.smtpServer": "smtp1",
        "mail.identity.id1.valid": True,
        "mail.identity.id1.fcc_folder": "imap://%s@%s/Sent" % (a.user, host),
        "mail.identity.id1.draft_folder": "imap://%s@%s/Drafts" % (a.user, host),
        "mail.identity.id1.compose_html": False,
        "mail.smtpservers": "smtp1",
        "mail.smtp.defaultserver": "smtp1",
        "mail.smtpserver.smtp1.type": "smtp",
        "mail.smtpserver.smtp1.hostname": host,
        "mail.smtpserver.smtp1.port": a.smtp_port,
        "mail.smtpserver.smtp1.username": a.user,
        "mail.smtpserver.smtp1.authMethod": 3,
        "mail.smtpserver.smtp1.try_ssl": 0,
        "mail.smtpserver.smtp1.description": "pimap-proxy",
    }


def js_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--imap-port", type=int, required=True)
    ap.add_argument("--smtp-port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--email")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--account-name", default="pimap test")
    ap.add_argument("--nss-dir", default="/usr/lib/thunderbird")
    a = ap.parse_args()
    a.email = a.email or "%s@example.org" % a.user
    os.makedirs(a.dir, exist_ok=True)

    prefs = dict(QUIET_PREFS)
    prefs.update(account_prefs(a))
    with open(os.path.join(a.dir, "user.js"), "w") as f:
        f.write("// written by tests/integration/lib/tb_profile.py\n")
        for k in sorted(prefs):
            f.write('user_pref("%s", %s);\n' % (k, js_value(prefs[k])))

    nss = NSS(a.nss_dir, a.dir)
    now_ms = int(time.time() * 1000)
    logins = [login_entry(nss, 1, "imap://" + a.host, a.user, a.password, now_ms),
              login_entry(nss, 2, "smtp://" + a.host, a.user, a.password, now_ms)]
    nss.close()
    with open(os.path.join(a.dir, "logins.json"), "w") as f:
        json.dump({"nextId": len(logins) + 1, "logins": logins,
                   "potentiallyVulnerablePasswords": [],
                   "dismissedBreachAlertsByLoginGUID": {}, "version": 3}, f)
    for name in ("key4.db", "logins.json", "user.js"):
        if not os.path.exists(os.path.join(a.dir, name)):
            sys.exit("tb_profile: %s was not written" % name)


if __name__ == "__main__":
    main()
