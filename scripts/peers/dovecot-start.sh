#!/usr/bin/env bash
# Starts a private, throw-away Dovecot 2.3 (Debian's dovecot-imapd/-submissiond/-lmtpd) on 127.0.0.1 for the
# tests: IMAP (+STARTTLS), IMAPS, submission (relaying to an SMTP port, no auth) and LMTP (to make mail arrive).
# Users: passwd-file with plain passwords (PLAIN/LOGIN) and an oauth2 passdb (XOAUTH2, optionally OAUTHBEARER)
# that checks every token over HTTP at the identity server (test/peers/identity-server.ts).
# usage: dovecot-start.sh WORKDIR      (stop with dovecot-stop.sh WORKDIR; pid in WORKDIR/run/master.pid)
# env:   IMAP_PORT=14143 IMAPS_PORT=14993 SUBMISSION_PORT=14587 LMTP_PORT=14024
#        RELAY_HOST=127.0.0.1 RELAY_PORT=14026     SMTP server that submission relays to (no auth, no TLS)
#        IDP_URL=http://127.0.0.1:14080             identity server that validates tokens
#        OAUTH2_MODE=tokeninfo|introspect           tokeninfo: GET IDP/userinfo?access_token=, 4xx = invalid;
#                                                   introspect: RFC 7662 POST IDP/introspect, {"active":false} = invalid
#        OAUTH2_AUDIENCE=https://outlook.office.com tokeninfo: the token's aud must be this (a Microsoft Graph
#                                                   token is refused); introspect: its scope must hold every
#                                                   word of OAUTH2_SCOPES instead. Empty: no such check
#        OAUTH2_SCOPES=IMAP.AccessAsUser.All
#        OAUTH_MECHS="xoauth2"                      Microsoft 365 advertises only XOAUTH2 (imapflow prefers
#                                                   OAUTHBEARER whenever offered: add it only to test that)
#        USERS="alice@example.test:secret bob@example.test:secret"   (no spaces in passwords)
#        SSL_CERT=FILE SSL_KEY=FILE                 reuse a certificate (default: a self-signed one in WORKDIR)
#        AUTH_FAILURE_DELAY=0 (Dovecot's default is 2 s)   AUTH_PENALTY=no   AUTH_DEBUG=no
#        FOREGROUND=1                               exec `dovecot -F` (for a supervisor; no readiness wait)
set -euo pipefail
W=$(mkdir -p "${1:?usage: dovecot-start.sh WORKDIR}" && cd "$1" && pwd)
IMAP_PORT=${IMAP_PORT:-14143} IMAPS_PORT=${IMAPS_PORT:-14993}
SUBMISSION_PORT=${SUBMISSION_PORT:-14587} LMTP_PORT=${LMTP_PORT:-14024}
RELAY_HOST=${RELAY_HOST:-127.0.0.1} RELAY_PORT=${RELAY_PORT:-14026}
IDP_URL=${IDP_URL:-http://127.0.0.1:14080} IDP_URL=${IDP_URL%/}
OAUTH2_MODE=${OAUTH2_MODE:-tokeninfo} OAUTH_MECHS=${OAUTH_MECHS:-xoauth2}
OAUTH2_AUDIENCE=${OAUTH2_AUDIENCE-https://outlook.office.com} OAUTH2_SCOPES=${OAUTH2_SCOPES:-IMAP.AccessAsUser.All}
AUTH_DEBUG=${AUTH_DEBUG:-no} AUTH_FAILURE_DELAY=${AUTH_FAILURE_DELAY:-0} AUTH_PENALTY=${AUTH_PENALTY:-no}
USERS=${USERS:-alice@example.test:secret bob@example.test:secret}

command -v dovecot >/dev/null || {
  echo "Dovecot is not installed: run scripts/install-test-deps.sh (apt-get install -y dovecot-imapd dovecot-submissiond dovecot-lmtpd)" >&2
  exit 1
}
case $OAUTH2_MODE in tokeninfo | introspect) ;; *) echo "OAUTH2_MODE must be tokeninfo or introspect" >&2; exit 1 ;; esac

mkdir -p "$W/run" "$W/state" "$W/mail"
# Root: the master runs as root, login processes as Debian's dovenull, auth/internal ones as dovecot, mail as
# nobody - so every directory above WORKDIR must be traversable by nobody (mktemp -d makes 0700 dirs: chmod
# 755 them), or LMTP and IMAP fail with "Permission denied". Non-root: everything runs as the calling user.
chmod 755 "$W" "$W/run"
if [ "$(id -u)" = 0 ]; then
  INTERNAL=dovecot IGROUP=dovecot LOGIN=dovenull MUID=nobody MGID=nogroup
  chown nobody:nogroup "$W/mail"
else
  INTERNAL=$(id -un) IGROUP=$(id -gn) LOGIN=$(id -un) MUID=$(id -u) MGID=$(id -g)
fi

if [ -n "${SSL_CERT:-}" ] && [ -n "${SSL_KEY:-}" ]; then
  CERT=$SSL_CERT KEY=$SSL_KEY
else
  CERT=$W/cert.pem KEY=$W/key.pem
  # An EC key: made in milliseconds, where RSA-2048 takes up to a quarter of a second.
  [ -f "$CERT" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$KEY" -out "$CERT" 2>/dev/null
fi

: >"$W/users"
for u in $USERS; do echo "${u%%:*}:{PLAIN}${u#*:}" >>"$W/users"; done

# Exchange Online takes only tokens issued to it. Dovecot 2.3 has one attribute check (active_attribute/
# active_value: a present attribute must equal the value; an absent one passes) and a scope check (`scope`:
# the answer's `scope`, or `aud` when it has none, must hold every word: 2.3.19 refuses a token with only
# some of them, "Token is not valid for scope").
if [ "$OAUTH2_MODE" = introspect ]; then
  # In this mode Dovecot ignores the HTTP status: an invalid token must be answered 200 {"active":false}
  # (the identity server does), anything else ends as an internal "No username returned" failure. So the
  # attribute check stays on `active`, and the audience is checked through the permission: a Graph token
  # carries Mail.Send etc., never Exchange's IMAP.AccessAsUser.All (so here submission needs it too).
  OAUTH2_CONF="introspection_url = $IDP_URL/introspect
introspection_mode = post
active_attribute = active
active_value = true"
  [ -z "$OAUTH2_AUDIENCE" ] || OAUTH2_CONF="$OAUTH2_CONF
scope = $OAUTH2_SCOPES"
else
  # GET URL+token (plus a Bearer header); a 4xx answer is a clean NO [AUTHENTICATIONFAILED].
  OAUTH2_CONF="tokeninfo_url = $IDP_URL/userinfo?access_token=
introspection_mode = auth"
  [ -z "$OAUTH2_AUDIENCE" ] || OAUTH2_CONF="$OAUTH2_CONF
active_attribute = aud
active_value = $OAUTH2_AUDIENCE"
fi
# username_attribute: the token's email must equal the SASL user. Dovecot never checks expiry itself (it only
# reads expires_in) and caches nothing: every login costs one HTTP call, and the identity server checks exp.
cat >"$W/dovecot-oauth2.conf.ext" <<CONF
$OAUTH2_CONF
username_attribute = email
timeout_msecs = 5000
debug = $AUTH_DEBUG
CONF

# Anvil's per-IP penalty delays each failed login by 2, 4, 8, 15 s (and in 2.3.19 login_trusted_networks does
# not exempt from it), which would make every test of a refused token slow. Off unless AUTH_PENALTY=yes.
PENALTY_CONF=""
[ "$AUTH_PENALTY" = yes ] || PENALTY_CONF="service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}"

cat >"$W/dovecot.conf" <<CONF
# Written by scripts/peers/dovecot-start.sh; standalone (ignores /etc/dovecot).
instance_name = juniper-test-$IMAP_PORT
base_dir = $W/run
state_dir = $W/state
log_path = $W/dovecot.log
protocols = imap submission lmtp
listen = 127.0.0.1
hostname = localhost
default_internal_user = $INTERNAL
default_internal_group = $IGROUP
default_login_user = $LOGIN
ssl = yes
ssl_cert = <$CERT
ssl_key = <$KEY
disable_plaintext_auth = no
auth_mechanisms = plain login $OAUTH_MECHS
auth_verbose = yes
auth_debug = $AUTH_DEBUG
auth_failure_delay = $AUTH_FAILURE_DELAY
mail_max_userip_connections = 200
# No stats process: login processes otherwise wait 5 s for its handshake at shutdown, so a stop took 5 s.
stats_writer_socket_path =
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  mailbox Sent {
    special_use = \\Sent
    auto = create
  }
}
passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN $W/users
}
passdb {
  driver = oauth2
  mechanisms = $OAUTH_MECHS
  args = $W/dovecot-oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=$MUID gid=$MGID home=$W/mail/%d/%n allow_all_users=yes
}
$PENALTY_CONF
service imap-login {
  chroot =
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = $IMAPS_PORT
    ssl = yes
  }
}
service submission-login {
  chroot =
  inet_listener submission {
    port = $SUBMISSION_PORT
  }
}
service lmtp {
  inet_listener lmtp {
    port = $LMTP_PORT
  }
}
submission_relay_host = $RELAY_HOST
submission_relay_port = $RELAY_PORT
submission_relay_ssl = no
CONF

[ "${FOREGROUND:-0}" = 1 ] && exec dovecot -F -c "$W/dovecot.conf"
# Daemonizes (the master's pid goes to $W/run/master.pid). Its stdio must not stay on ours: a caller that
# waits for our output to end (Node's execFile) would otherwise wait for Dovecot's exit.
dovecot -c "$W/dovecot.conf" </dev/null >"$W/dovecot.out" 2>&1 || { cat "$W/dovecot.out" >&2; exit 1; }
# Ready = the IMAP greeting, not just an accepted connection: imap-login greets once its auth handshake is
# done, so a login can follow at once. (A bare connect-and-close probe also left an imap-login process
# that delayed a following stop by ~5 s.)
i=0
until (exec 3<>"/dev/tcp/127.0.0.1/$IMAP_PORT" && read -r -t 2 greeting <&3 && [[ $greeting == "* OK"* ]]) 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 100 ] || { echo "Dovecot did not start within 10 s, see $W/dovecot.log:" >&2; tail -20 "$W/dovecot.log" >&2; exit 1; }
  sleep 0.1
done
echo "dovecot pid $(cat "$W/run/master.pid"): imap 127.0.0.1:$IMAP_PORT imaps :$IMAPS_PORT submission :$SUBMISSION_PORT lmtp :$LMTP_PORT (oauth2 $OAUTH2_MODE at $IDP_URL, mechanisms: plain login $OAUTH_MECHS)"
