#!/bin/bash
# t_install.sh - `make install` for a real install (issue 8), into a
# DESTDIR under $T:
#  - pimap-proxy in bindir and pimap-gateway in sbindir; both answer
#    --version and --help (exit 0, on stdout);
#  - the manual pages pimap-proxy(8), pimap-gateway(8), pimap-macros(5)
#    (and any other dist_man_MANS), each rendered by groff without a
#    warning;
#  - the example configurations in pkgdatadir/examples and as the
#    configuration files in sysconfdir, which the installed daemons accept
#    (--check-config); the shipped macros and filters;
#  - a user unit for the proxy and a system unit for the gateway naming the
#    installed programs and files; where systemd-analyze is there, both
#    pass `verify` with no message, and the gateway's sandbox rates at
#    most 1.5 in `security` (0 = locked down, 10 = wide open);
#  - installing again keeps a configuration file someone edited;
#    uninstalling removes every file except that edited one.

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib/harness.sh"

require make groff
require_proxy
require_gateway
[ -f "$top_builddir/Makefile" ] || hard_error "no Makefile in $top_builddir"

DEST=$T/dest
# make in the build tree, without what the make running this test passes
# down (TESTS=..., jobserver, "Entering directory" lines).
tmake() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -s -C "$top_builddir" "$@"; }
# The installation directories as configure set them.
read -r BINDIR SBINDIR SYSCONFDIR MANDIR PKGDATADIR SYSUNITDIR USERUNITDIR < <(
	printf 'print-dirs:\n\t@echo $(bindir) $(sbindir) $(sysconfdir) $(mandir) $(pkgdatadir) $(systemdsystemunitdir) $(systemduserunitdir)\n' |
		tmake -f Makefile -f - print-dirs)
[ -n "$USERUNITDIR" ] || hard_error "cannot read the installation directories from $top_builddir/Makefile"
tmake install DESTDIR="$DEST" >"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; fail "make install failed"; }
log "installed into $DEST (prefix paths: $BINDIR, $SBINDIR, $SYSCONFDIR)"

expect_file() { [ -f "$DEST$1" ] || fail "not installed: $1"; }

# --- programs ------------------------------------------------------------------
expect_file "$BINDIR/pimap-proxy"
expect_file "$SBINDIR/pimap-gateway"
for prog in "$BINDIR/pimap-proxy" "$SBINDIR/pimap-gateway"; do
	name=$(basename "$prog")
	[ -x "$DEST$prog" ] || fail "$prog is not executable"
	out=$("$DEST$prog" --version) || fail "$name --version failed"
	[[ $out =~ ^$name\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "$name --version printed '$out'"
	"$DEST$prog" --help >"$T/help.out" || fail "$name --help failed"
	grep -q "^Usage: $name " "$T/help.out" || fail "$name --help has no usage line"
	for opt in --config --check-config --foreground --log-file --syslog --version --help; do
		grep -q -- "$opt" "$T/help.out" || fail "$name --help does not mention $opt"
	done
	log "ok: $name: --version ($out) and --help"
done
grep -q -- "--status" <("$DEST$BINDIR/pimap-proxy" --help) || fail "pimap-proxy --help does not mention --status"

# --- manual pages ----------------------------------------------------------------
man_pages=$(printf 'print-mans:\n\t@echo $(dist_man_MANS)\n' | tmake -f Makefile -f - print-mans)
for want in docs/pimap-proxy.8 docs/pimap-gateway.8 docs/pimap-macros.5; do
	case " $man_pages " in *" $want "*) ;; *) fail "$want is not in dist_man_MANS" ;; esac
done
for page in $man_pages; do
	base=$(basename "$page")
	section=${base##*.}
	expect_file "$MANDIR/man$section/$base"
	groff -man -ww -z "$DEST$MANDIR/man$section/$base" 2>"$T/groff.out" || true
	[ ! -s "$T/groff.out" ] || { cat "$T/groff.out" >&2; fail "groff warns about $base"; }
done
log "ok: manual pages installed and clean: $(echo $man_pages | tr ' ' '\n' | xargs -n1 basename | tr '\n' ' ')"

# --- configuration, macros, filters -----------------------------------------------------
for f in pimap-proxy.yaml pimap-gateway.yaml; do
	expect_file "$PKGDATADIR/examples/$f"
	expect_file "$SYSCONFDIR/$f"
	cmp -s "$top_srcdir/etc/$f" "$DEST$SYSCONFDIR/$f" || fail "$SYSCONFDIR/$f is not the example"
done
"$DEST$BINDIR/pimap-proxy" --check-config --config "$DEST$SYSCONFDIR/pimap-proxy.yaml" >"$T/check.out" 2>&1 ||
	{ cat "$T/check.out" >&2; fail "the installed pimap-proxy refuses the installed configuration"; }
"$DEST$SBINDIR/pimap-gateway" --check-config --config "$DEST$SYSCONFDIR/pimap-gateway.yaml" >"$T/check.out" 2>&1 ||
	{ cat "$T/check.out" >&2; fail "the installed pimap-gateway refuses the installed configuration"; }
for f in "$top_srcdir"/macros/*.yaml "$top_srcdir"/filters/*.yaml; do
	[ -e "$f" ] || continue
	kind=$(basename "$(dirname "$f")")
	expect_file "$PKGDATADIR/$kind/$(basename "$f")"
done
"$DEST$BINDIR/pimap-proxy" --check-config --set "macros.dir=$DEST$PKGDATADIR/macros" >"$T/check.out" 2>&1 ||
	{ cat "$T/check.out" >&2; fail "the installed macros do not load"; }
log "ok: configuration files, examples, macros and filters installed; the daemons accept them"

# --- systemd units ------------------------------------------------------------------
USER_UNIT=$USERUNITDIR/pimap-proxy.service
SYSTEM_UNIT=$SYSUNITDIR/pimap-gateway.service
expect_file "$USER_UNIT"
expect_file "$SYSTEM_UNIT"
grep -q "^ExecStart=$BINDIR/pimap-proxy --foreground " "$DEST$USER_UNIT" || fail "the user unit does not start $BINDIR/pimap-proxy"
grep -q "^ExecStart=$SBINDIR/pimap-gateway --foreground --config $SYSCONFDIR/pimap-gateway.yaml " "$DEST$SYSTEM_UNIT" ||
	fail "the system unit does not start $SBINDIR/pimap-gateway with $SYSCONFDIR/pimap-gateway.yaml"
for key in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
	PrivateDevices=yes CapabilityBoundingSet= RestrictAddressFamilies= SystemCallFilter=@system-service \
	MemoryDenyWriteExecute=yes StateDirectory=pimap-gateway; do
	grep -q "^$key" "$DEST$SYSTEM_UNIT" || fail "the gateway's unit lacks $key"
done
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify checks that the programs exist: point the copies under $T at
	# the DESTDIR tree (the paths are the only change), and man at its pages.
	mkdir -p "$T/units" "$T/xdg-runtime"
	chmod 0700 "$T/xdg-runtime"
	for u in "$USER_UNIT" "$SYSTEM_UNIT"; do
		sed -e "s|$BINDIR/|$DEST$BINDIR/|g" -e "s|$SBINDIR/|$DEST$SBINDIR/|g" "$DEST$u" >"$T/units/$(basename "$u")"
	done
	MANPATH=$DEST$MANDIR systemd-analyze verify "$T/units/pimap-gateway.service" >"$T/verify.out" 2>&1 ||
		{ cat "$T/verify.out" >&2; fail "systemd-analyze verify refuses the gateway's unit"; }
	[ ! -s "$T/verify.out" ] || { cat "$T/verify.out" >&2; fail "systemd-analyze verify has remarks on the gateway's unit"; }
	XDG_RUNTIME_DIR=$T/xdg-runtime MANPATH=$DEST$MANDIR systemd-analyze --user verify "$T/units/pimap-proxy.service" >"$T/verify.out" 2>&1 ||
		{ cat "$T/verify.out" >&2; fail "systemd-analyze verify refuses the proxy's user unit"; }
	[ ! -s "$T/verify.out" ] || { cat "$T/verify.out" >&2; fail "systemd-analyze verify has remarks on the proxy's user unit"; }
	systemd-analyze security --offline=true --threshold=15 "$T/units/pimap-gateway.service" >"$T/security.out" 2>&1 ||
		{ tail -n 30 "$T/security.out" >&2; fail "the gateway's sandbox rates over 1.5"; }
	log "ok: systemd-analyze verify passes both units; the gateway's sandbox: $(grep -o 'Overall exposure level.*' "$T/security.out")"
else
	log "systemd-analyze is not installed: units checked by content only"
fi

# --- reinstall and uninstall ----------------------------------------------------------
echo "# edited by the administrator" >>"$DEST$SYSCONFDIR/pimap-proxy.yaml"
tmake install DESTDIR="$DEST" >"$T/install2.log" 2>&1 || { cat "$T/install2.log" >&2; fail "installing again failed"; }
grep -q "edited by the administrator" "$DEST$SYSCONFDIR/pimap-proxy.yaml" || fail "installing again overwrote an edited configuration file"
log "ok: installing again keeps an edited configuration file"
tmake uninstall DESTDIR="$DEST" >"$T/uninstall.log" 2>&1 || { cat "$T/uninstall.log" >&2; fail "make uninstall failed"; }
left=$(find "$DEST" -type f | sed "s|^$DEST||")
[ "$left" = "$SYSCONFDIR/pimap-proxy.yaml" ] || fail "after uninstall these files are left: $left"
log "ok: uninstall removes everything but the edited configuration file"
pass
