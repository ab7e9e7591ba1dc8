#!/usr/bin/env bash
# Capture the handshakes of real clients installed on this machine (Chromium over TCP and QUIC,
# curl, dig, ssh, optionally Firefox) into crates/vigil/tests/fixtures/clients/*.pcap, one file
# per scenario, for crates/vigil/tests/real_clients.rs.
#
# Run as root. Everything happens between two network namespaces this script creates (names end
# in the script's PID) joined by a veth pair: client 10.99.N.1 / fd00:99::1, server 10.99.N.2 /
# fd00:99::2. The client namespace has no default route, so no packet can leave it for anything
# but the server namespace. tcpdump runs in the server namespace. Everything it started and made
# is removed on exit (trap). Re-running overwrites the captures.
#
# Usage: sudo bash scripts/capture_clients.sh [SCENARIO...]    (default: all)
# VIGIL_CAPTURE_OUT=DIR writes the captures elsewhere; VIGIL_CAPTURE_KEEP=1 keeps the servers'
# and clients' logs (the temp dir) for debugging.
# Scenarios: chromium_tls chromium_quic curl_tls13 curl_tls13_ipv6 curl_tls12 curl_http
#            dig_udp dig_tcp dig_dot dig_doh ssh firefox_tls firefox_quic firefox_quic_gso wget_tls
#            gnutls_cli python_urllib ssh_ipv6 ssh_port2222 curl_h2c dig_https dig_tcp_aaaa
# A scenario whose client cannot be installed is skipped with a message.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${VIGIL_CAPTURE_OUT:-$ROOT/crates/vigil/tests/fixtures/clients}"
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, tcpdump)" >&2; exit 1; }

N=$(( $$ % 200 + 20 ))
NS_S="vgcap-s-$$"
NS_C="vgcap-c-$$"
VS="vgs$$"
VC="vgc$$"
C4="10.99.$N.1"
S4="10.99.$N.2"
C6="fd00:99::1"
S6="fd00:99::2"
TMP="$(mktemp -d /tmp/vigil-capture.XXXXXX)"
PIDS=()

CLEANED=
cleanup() {
    [ -n "$CLEANED" ] && return
    CLEANED=1
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    # Anything still running inside our namespaces (chromium helpers, sshd children...).
    for ns in "$NS_C" "$NS_S"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        sleep 0.2
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    ip link del "$VS" 2>/dev/null
    rm -rf "/etc/netns/$NS_C"
    rmdir /etc/netns 2>/dev/null # only if this script's was the last one
    if [ -n "${VIGIL_CAPTURE_KEEP:-}" ]; then echo "kept logs in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

log() { echo "== $*" >&2; }
in_s() { ip netns exec "$NS_S" "$@"; }
in_c() { ip netns exec "$NS_C" "$@"; }

# need CMD PACKAGE: true when CMD exists, installing PACKAGE with apt-get if needed.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 for $1"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; } ||
        true
    command -v "$1" >/dev/null 2>&1
}

need tcpdump tcpdump || { echo "tcpdump is required" >&2; exit 1; }
need openssl openssl || { echo "openssl is required" >&2; exit 1; }
need ip iproute2 || { echo "ip is required" >&2; exit 1; }
need ss iproute2 || true

# ---------------------------------------------------------------------------------------------
# the lab

ip netns add "$NS_S"
ip netns add "$NS_C"
ip link add "$VS" type veth peer name "$VC"
ip link set "$VS" netns "$NS_S"
ip link set "$VC" netns "$NS_C"
in_s ip link set lo up
in_c ip link set lo up
in_s ip addr add "$S4/24" dev "$VS"
in_c ip addr add "$C4/24" dev "$VC"
in_s ip -6 addr add "$S6/64" dev "$VS" nodad
in_c ip -6 addr add "$C6/64" dev "$VC" nodad
# No IPv6 router solicitations / MLD chatter in the captures.
for ns in "$NS_S" "$NS_C"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 || true
done
in_s ip link set "$VS" up
in_c ip link set "$VC" up
# Segments as a real wire carries them: without this, the veth passes a 2 KB ClientHello as one
# GSO super-packet and tcpdump records a single packet larger than the MTU.
if need ethtool ethtool; then
    in_s ethtool -K "$VS" tso off gso off gro off >/dev/null 2>&1 || true
    in_c ethtool -K "$VC" tso off gso off gro off >/dev/null 2>&1 || true
    # Likewise UDP GSO (Firefox's QUIC stack sends several datagrams per send call): without this
    # tcpdump records one IP packet holding two QUIC datagrams back to back.
    in_s ethtool -K "$VS" tx-udp-segmentation off >/dev/null 2>&1 || true
    in_c ethtool -K "$VC" tx-udp-segmentation off >/dev/null 2>&1 || true
else
    log "no ethtool: TCP segments may be recorded larger than the MTU"
fi
# ip netns exec bind-mounts /etc/netns/NS/* over /etc: the client resolves the test names to the
# server from its own hosts file (Firefox has no resolver override flag).
mkdir -p "/etc/netns/$NS_C"
cat >"/etc/netns/$NS_C/hosts" <<EOF
127.0.0.1 localhost
$S4 www.example-shop.test video.example-stream.test api.example-shop.test legacy.example-shop.test
$S4 plain.example-shop.test shop.example-ff.test quic.example-ff.test dl.example-shop.test
$S4 gnutls.example-shop.test py.example-shop.test
EOF
echo "nameserver $S4" >"/etc/netns/$NS_C/resolv.conf"
for _ in $(seq 50); do
    in_c ip -o link show dev "$VC" | grep -q "state UP" && in_s ip -o link show dev "$VS" | grep -q "state UP" && break
    sleep 0.1
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=www.example-shop.test" -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1
mkdir -p "$OUT"

# bg LOGNAME CMD...: start CMD in the background, remembered for cleanup; sets BG_PID.
bg() {
    local name="$1"
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

stop() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

wait_listen() { # PROTO(t|u) PORT
    for _ in $(seq 100); do
        in_s ss -Hln"$1" "sport = :$2" | grep -q . && return 0
        sleep 0.1
    done
    echo "server on $1/$2 did not start" >&2
    return 1
}

# s_server PORT ALPN...: an openssl TLS server (-www answers HTTP/1 GETs with a status page).
# S_CERT=NAME uses $TMP/NAME.pem and $TMP/NAME.key instead of the shared self-signed certificate.
s_server() {
    local port="$1"
    shift
    local alpn=()
    [ $# -gt 0 ] && alpn=(-alpn "$1")
    local cert="$TMP/cert.pem" key="$TMP/key.pem"
    [ -n "${S_CERT:-}" ] && cert="$TMP/$S_CERT.pem" key="$TMP/$S_CERT.key"
    bg "s_server_$port" ip netns exec "$NS_S" openssl s_server -accept "$port" -cert "$cert" \
        -key "$key" -www "${alpn[@]}"
    SERVER_PID=$BG_PID
    wait_listen t "$port"
}

# capture NAME FILTER MAXPACKETS SECONDS CMD...: tcpdump on the server side while CMD runs in the
# client namespace; stops after MAXPACKETS packets or SECONDS after CMD ended, whichever first.
capture() {
    local name="$1" filter="$2" max="$3" linger="$4"
    shift 4
    # Written in the temp dir, moved into place once complete: an interrupted run leaves the
    # previous capture as it was.
    local file="$TMP/$name.pcap"
    bg "tcpdump_$name" ip netns exec "$NS_S" tcpdump -Z root -i "$VS" -s 0 -U -n -c "$max" -w "$file" "$filter"
    local tpid=$BG_PID
    for _ in $(seq 100); do grep -q "listening on" "$TMP/tcpdump_$name.log" 2>/dev/null && break; sleep 0.1; done
    log "$name: $*"
    in_c "$@" >"$TMP/client_$name.log" 2>&1 || true
    for _ in $(seq $((linger * 10))); do kill -0 "$tpid" 2>/dev/null || break; sleep 0.1; done
    stop "$tpid"
    local count
    count=$(tcpdump -r "$file" -n 2>/dev/null | wc -l)
    echo "$name.pcap: $count packets, $(stat -c %s "$file") bytes" >&2
    if [ "$count" -lt 2 ]; then
        echo "   $name: too few packets, not kept; the client said:" >&2
        tail -n 15 "$TMP/client_$name.log" | sed 's/^/   | /' >&2
        return 0
    fi
    mv -f "$file" "$OUT/$name.pcap"
}

# Sets CHROME: the headless Chromium command line (a fresh profile each time).
chromium_cmd() {
    local ud
    ud="$(mktemp -d "$TMP/chrome.XXXXXX")"
    CHROME=(chromium --headless --no-sandbox --disable-gpu --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --disable-default-apps --disable-extensions --user-data-dir="$ud"
        "--host-resolver-rules=MAP * $S4")
}

# ---------------------------------------------------------------------------------------------
# scenarios

sc_chromium_tls() {
    need chromium chromium || { log "skip chromium_tls: chromium not installable"; return; }
    s_server 443 h2,http/1.1
    chromium_cmd
    capture chromium_tls "tcp port 443" 60 2 timeout 20 "${CHROME[@]}" --dump-dom https://www.example-shop.test/
    stop "$SERVER_PID"
}

sc_chromium_quic() {
    need chromium chromium || { log "skip chromium_quic: chromium not installable"; return; }
    need socat socat || { log "skip chromium_quic: no socat for the UDP sink"; return; }
    bg quic_sink ip netns exec "$NS_S" socat -u UDP-RECV:443 /dev/null
    local sink=$BG_PID
    wait_listen u 443
    # No QUIC server: Chrome's Initial datagrams (and their retransmissions) are what matter.
    chromium_cmd
    capture chromium_quic "udp port 443" 12 1 timeout 6 "${CHROME[@]}" --enable-quic \
        --origin-to-force-quic-on=video.example-stream.test:443 --dump-dom https://video.example-stream.test/
    stop "$sink"
}

sc_curl_tls13() {
    need curl curl || { log "skip curl_tls13: no curl"; return; }
    s_server 443 http/1.1
    capture curl_tls13 "tcp port 443" 40 2 curl -sk -m 5 -o /dev/null \
        --resolve "api.example-shop.test:443:$S4" https://api.example-shop.test/v1/items
    stop "$SERVER_PID"
}

sc_curl_tls13_ipv6() {
    need curl curl || { log "skip curl_tls13_ipv6: no curl"; return; }
    s_server 443 http/1.1
    capture curl_tls13_ipv6 "tcp port 443" 40 2 curl -sk -6 -m 5 -o /dev/null \
        --resolve "api.example-shop.test:443:[$S6]" https://api.example-shop.test/v6
    stop "$SERVER_PID"
}

sc_curl_tls12() {
    need curl curl || { log "skip curl_tls12: no curl"; return; }
    s_server 443 http/1.1
    capture curl_tls12 "tcp port 443" 40 2 curl -sk -m 5 -o /dev/null --tlsv1.2 --tls-max 1.2 \
        --resolve "legacy.example-shop.test:443:$S4" https://legacy.example-shop.test/
    stop "$SERVER_PID"
}

sc_curl_http() {
    need curl curl || { log "skip curl_http: no curl"; return; }
    need python3 python3 || { log "skip curl_http: no python3 for the server"; return; }
    mkdir -p "$TMP/www" && echo hello >"$TMP/www/index.html"
    bg http_server ip netns exec "$NS_S" python3 -m http.server 80 --bind "$S4" --directory "$TMP/www"
    local srv=$BG_PID
    wait_listen t 80
    capture curl_http "tcp port 80" 40 2 curl -s -m 5 -o /dev/null --http1.1 \
        --resolve "plain.example-shop.test:80:$S4" http://plain.example-shop.test/index.html
    stop "$srv"
}

# dns_server [DNSMASQ-OPTION...]: dnsmasq answering *.example.test with the server's address,
# plus whatever records the options add.
dns_server() {
    need dnsmasq dnsmasq || return 1
    bg dnsmasq ip netns exec "$NS_S" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
        --user=root --pid-file="$TMP/dnsmasq.pid" --listen-address="$S4" --bind-interfaces \
        --address=/example.test/"$S4" "$@"
    DNS_PID=$BG_PID
    wait_listen u 53
}

sc_dig_udp() {
    need dig dnsutils || { log "skip dig_udp: no dig"; return; }
    dns_server || { log "skip dig_udp: no dnsmasq"; return; }
    capture dig_udp "port 53" 2 2 dig +tries=1 +timeout=2 @"$S4" www.example.test A
    stop "$DNS_PID"
}

sc_dig_tcp() {
    need dig dnsutils || { log "skip dig_tcp: no dig"; return; }
    dns_server || { log "skip dig_tcp: no dnsmasq"; return; }
    capture dig_tcp "port 53" 20 2 dig +tcp +tries=1 +timeout=2 @"$S4" mail.example.test A
    stop "$DNS_PID"
}

sc_dig_dot() {
    need dig dnsutils || { log "skip dig_dot: no dig"; return; }
    s_server 853 dot
    # The openssl server does not answer DNS: the handshake and the query's TLS records are what matter.
    capture dig_dot "tcp port 853" 30 1 dig +tls +tries=1 +timeout=2 @"$S4" dot.example.test A
    stop "$SERVER_PID"
}

sc_dig_doh() {
    need dig dnsutils || { log "skip dig_doh: no dig"; return; }
    dig -h 2>&1 | grep -q '+\[no\]https' || { log "skip dig_doh: this dig has no +https"; return; }
    s_server 443 h2
    capture dig_doh "tcp port 443" 30 1 dig +https +tries=1 +timeout=2 @"$S4" doh.example.test A
    stop "$SERVER_PID"
}

# ssh_scenario NAME PORT LISTEN-ADDRESS SSH-ARG...: sshd on LISTEN-ADDRESS:PORT (same build as
# the client, throwaway ed25519 host key) and one ssh login attempt, which fails (BatchMode, no key
# accepted): banners and KEXINIT are what matter.
ssh_scenario() {
    local name="$1" port="$2" listen="$3"
    shift 3
    need ssh openssh-client || { log "skip $name: no ssh client"; return; }
    need /usr/sbin/sshd openssh-server || { log "skip $name: no sshd"; return; }
    [ -f "$TMP/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$TMP/ssh_host_ed25519_key"
    cat >"$TMP/sshd_config" <<EOF
Port $port
ListenAddress $listen
HostKey $TMP/ssh_host_ed25519_key
PidFile $TMP/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
EOF
    mkdir -p /run/sshd
    bg "sshd_$name" ip netns exec "$NS_S" /usr/sbin/sshd -D -e -f "$TMP/sshd_config"
    local srv=$BG_PID
    wait_listen t "$port"
    capture "$name" "tcp port $port" 30 1 timeout 10 ssh -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -F /dev/null "$@"
    stop "$srv"
}

sc_ssh() { ssh_scenario ssh 22 "$S4" nobody@"$S4" true; }

# The same over IPv6, and on a port that is not SSH's: vigil should name SSH from the banner.
sc_ssh_ipv6() { ssh_scenario ssh_ipv6 22 "$S6" -6 nobody@"$S6" true; }

sc_ssh_port2222() { ssh_scenario ssh_port2222 2222 "$S4" -p 2222 nobody@"$S4" true; }

# ff_profile: a fresh quiet Firefox profile in FF_PROF (no telemetry, captive-portal, update or
# DoH traffic; there is nowhere for it to go anyway: the client namespace only reaches the server).
# Extra user.js lines come on stdin.
ff_profile() {
    FF_PROF="$(mktemp -d "$TMP/ff.XXXXXX")"
    {
        cat <<'EOF'
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.trr.mode", 5);
user_pref("app.update.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.startup.homepage", "about:blank");
user_pref("network.dns.disablePrefetch", true);
user_pref("network.prefetch-next", false);
EOF
        cat
    } >"$FF_PROF/user.js"
}

have_firefox() {
    command -v firefox-esr >/dev/null 2>&1 || need firefox-esr firefox-esr
}

sc_firefox_tls() {
    have_firefox || { log "skip firefox_tls: firefox-esr not installable"; return; }
    s_server 443 h2,http/1.1
    ff_profile <<<'user_pref("network.http.http3.enable", false);'
    capture firefox_tls "tcp port 443 and host $S4" 30 2 env HOME="$FF_PROF" MOZ_HEADLESS=1 \
        timeout 25 firefox-esr --headless --no-remote --profile "$FF_PROF" \
        --screenshot "$FF_PROF/shot.png" https://shop.example-ff.test/
    stop "$SERVER_PID"
}

# firefox_quic_capture NAME MAXPACKETS: Firefox's first HTTP/3 attempt to quic.example-ff.test.
firefox_quic_capture() {
    local name="$1" max="$2"
    have_firefox || { log "skip $name: firefox-esr not installable"; return; }
    need socat socat || { log "skip $name: no socat for the UDP sink"; return; }
    # As for chromium_quic, no QUIC server: Firefox's (neqo's) Initial datagrams are what matter.
    # The testing Alt-Svc mapping makes Firefox go to h3 at once, without a first TCP answer.
    bg quic_sink ip netns exec "$NS_S" socat -u UDP-RECV:443 /dev/null
    local sink=$BG_PID
    wait_listen u 443
    ff_profile <<'EOF'
user_pref("network.http.http3.enable", true);
user_pref("network.http.http3.alt-svc-mapping-for-testing", "quic.example-ff.test;h3=:443");
user_pref("network.http.http3.force-use-alt-svc-mapping-for-testing", true);
user_pref("network.http.http3.disable_when_third_party_roots_found", false);
EOF
    capture "$name" "udp port 443 and host $S4" "$max" 1 env HOME="$FF_PROF" MOZ_HEADLESS=1 \
        timeout 8 firefox-esr --headless --no-remote --profile "$FF_PROF" \
        --screenshot "$FF_PROF/shot.png" https://quic.example-ff.test/
    stop "$sink"
}

# Its ClientHello spans two Initial datagrams, sent together; the capture keeps the first send and
# two retransmissions (at 0.3 s and 0.9 s; at 4.7 s Firefox opens a second connection).
sc_firefox_quic() { firefox_quic_capture firefox_quic 6; }

# The same with UDP segmentation offload left on, as tcpdump on the client's own host records
# it: Firefox hands the kernel its two Initial datagrams in one send (UDP GSO), the capture holds
# one 2.5 KB IP packet whose UDP payload is both datagrams back to back (which reads as two
# coalesced Initial packets).
sc_firefox_quic_gso() {
    in_s ethtool -K "$VS" tx-udp-segmentation on >/dev/null 2>&1 || true
    in_c ethtool -K "$VC" tx-udp-segmentation on >/dev/null 2>&1 || true
    firefox_quic_capture firefox_quic_gso 3
    in_s ethtool -K "$VS" tx-udp-segmentation off >/dev/null 2>&1 || true
    in_c ethtool -K "$VC" tx-udp-segmentation off >/dev/null 2>&1 || true
}

# wget (GnuTLS): the handshake and the status page of openssl s_server.
sc_wget_tls() {
    need wget wget || { log "skip wget_tls: no wget"; return; }
    s_server 443 http/1.1
    capture wget_tls "tcp port 443" 40 2 wget -q -O /dev/null --tries=1 --timeout=5 \
        --no-check-certificate https://dl.example-shop.test/files/a.txt
    stop "$SERVER_PID"
}

# gnutls-cli with its default priorities (no ALPN unless asked), sending one HTTP/1.0 request.
sc_gnutls_cli() {
    need gnutls-cli gnutls-bin || { log "skip gnutls_cli: gnutls-cli not installable"; return; }
    s_server 443 http/1.1
    capture gnutls_cli "tcp port 443" 40 2 sh -c 'printf "GET / HTTP/1.0\r\nHost: gnutls.example-shop.test\r\n\r\n" |
        timeout 5 gnutls-cli --insecure --port 443 gnutls.example-shop.test'
    stop "$SERVER_PID"
}

# Debian's Python with its OpenSSL 3 (urllib's default context, so ALPN http/1.1 and certificate
# checks against the test CA: a certificate for the name, trusted through SSL_CERT_FILE).
sc_python_urllib() {
    local py=/usr/bin/python3
    [ -x "$py" ] || need python3 python3 || { log "skip python_urllib: no Debian python3"; return; }
    [ -x "$py" ] || py=python3
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=py.example-shop.test" -addext "subjectAltName=DNS:py.example-shop.test" \
        -keyout "$TMP/py.key" -out "$TMP/py.pem" >/dev/null 2>&1
    S_CERT=py s_server 443 http/1.1
    capture python_urllib "tcp port 443" 40 2 env SSL_CERT_FILE="$TMP/py.pem" "$py" -c '
import urllib.request
print(urllib.request.urlopen("https://py.example-shop.test/status", timeout=5).read(40))'
    stop "$SERVER_PID"
}

# HTTP/2 over cleartext with prior knowledge: the connection starts with the h2 preface.
sc_curl_h2c() {
    need curl curl || { log "skip curl_h2c: no curl"; return; }
    need nghttpd nghttp2-server || { log "skip curl_h2c: no nghttpd for the server"; return; }
    mkdir -p "$TMP/www" && echo hello >"$TMP/www/index.html"
    bg nghttpd ip netns exec "$NS_S" nghttpd --no-tls -a "$S4" -d "$TMP/www" 80
    local srv=$BG_PID
    wait_listen t 80
    capture curl_h2c "tcp port 80" 40 2 curl -s -m 5 -o /dev/null --http2-prior-knowledge \
        --resolve "h2c.example-shop.test:80:$S4" http://h2c.example-shop.test/index.html
    stop "$srv"
}

# hex4 A.B.C.D: the address as hex (for a dnsmasq --dns-rr record).
hex4() { local IFS=.; printf '%02x' $1; }

# dig asks for an HTTPS record (RFC 9460: alpn h3,h2, ipv4hint, ipv6hint), then curl connects
# to the hinted address without a name (no SNI for an address): vigil can only name that flow
# from the DNS answer.
sc_dig_https() {
    need dig dnsutils || { log "skip dig_https: no dig"; return; }
    need curl curl || { log "skip dig_https: no curl"; return; }
    # priority 1, target ".", alpn=h3,h2, ipv4hint=S4, ipv6hint=S6 (fd00:99::2)
    local rr="0001 00 0001 0006 026833 026832 0004 0004 $(hex4 "$S4") 0006 0010 fd000099000000000000000000000002"
    dns_server "--dns-rr=svc.example-svcb.test,65,$rr" || { log "skip dig_https: no dnsmasq"; return; }
    s_server 443 http/1.1
    capture dig_https "udp port 53 or tcp port 443" 40 2 sh -c "
        dig +tries=1 +timeout=2 @$S4 svc.example-svcb.test HTTPS
        curl -sk -m 5 -o /dev/null https://$S4/"
    stop "$SERVER_PID"
    stop "$DNS_PID"
}

# dig over TCP asks for an AAAA and gets a CNAME chain (www -> edge), then curl connects to the
# IPv6 address without a name.
sc_dig_tcp_aaaa() {
    need dig dnsutils || { log "skip dig_tcp_aaaa: no dig"; return; }
    need curl curl || { log "skip dig_tcp_aaaa: no curl"; return; }
    dns_server "--host-record=edge.example-cdn.test,$S4,$S6" \
        "--cname=www.example-cdn.test,edge.example-cdn.test" || { log "skip dig_tcp_aaaa: no dnsmasq"; return; }
    s_server 443 http/1.1
    capture dig_tcp_aaaa "tcp port 53 or tcp port 443" 40 2 sh -c "
        dig +tcp +tries=1 +timeout=2 @$S4 www.example-cdn.test AAAA
        curl -sk -6 -m 5 -o /dev/null https://[$S6]/"
    stop "$SERVER_PID"
    stop "$DNS_PID"
}

ALL=(chromium_tls chromium_quic curl_tls13 curl_tls13_ipv6 curl_tls12 curl_http dig_udp dig_tcp
    dig_dot dig_doh ssh firefox_tls firefox_quic firefox_quic_gso wget_tls gnutls_cli python_urllib
    ssh_ipv6 ssh_port2222 curl_h2c dig_https dig_tcp_aaaa)
[ $# -gt 0 ] && ALL=("$@")
for s in "${ALL[@]}"; do
    "sc_$s"
done

# Versions, for the fixtures' README.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    command -v chromium >/dev/null && chromium --version 2>/dev/null | tail -1
    command -v firefox-esr >/dev/null && firefox-esr --version 2>/dev/null | tail -1
    command -v curl >/dev/null && curl --version | head -1
    command -v wget >/dev/null && wget --version | head -1
    command -v gnutls-cli >/dev/null && gnutls-cli --version | head -1
    [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ssl, sys; print("Python", sys.version.split()[0], ssl.OPENSSL_VERSION)'
    command -v nghttpd >/dev/null && nghttpd --version
    command -v dig >/dev/null && dig -v 2>&1
    command -v ssh >/dev/null && ssh -V 2>&1
    command -v /usr/sbin/sshd >/dev/null && { /usr/sbin/sshd -V 2>&1 | head -1 || true; }
    openssl version
    command -v dnsmasq >/dev/null && dnsmasq --version | head -1
    tcpdump --version 2>&1 | head -1
} >"$OUT/VERSIONS.txt" 2>/dev/null || true
log "done: $(ls "$OUT"/*.pcap | wc -l) captures in $OUT"
