#!/usr/bin/env bash
# A WebSocket client in plain bash: the RFC 6455 opening handshake, a few frames
# decoded byte by byte, and a clean close. A teaching aid: it shows on the terminal
# every byte that makes a WebSocket, with nothing but bash and coreutils.
#
#   bash scripts/handshake.sh ws://HOST[:PORT][/PATH] [FRAMES]
#   bash scripts/handshake.sh [HOST] [PORT] [FRAMES]
#
#   ws://…  a WebSocket URL, as wscat and websocat take it: ws://127.0.0.1:40132/echo,
#           ws://localhost:40132/, ws://[::1]:40132/echo. Without a port it means
#           port 80, as every ws:// URL does (tickcast's own default, 40132, must be
#           written out); without a path it means /. The request asks for the URL's
#           path (and ?query), and its Host header is host[:port] as the URL wrote
#           it. wss:// is refused: this script speaks no TLS.
#   HOST    where tickcast listens for WebSockets   (default 127.0.0.1)
#   PORT    its WebSocket port (--ws-addr)          (default 40132); the path is /echo
#   FRAMES  how many frames to read before closing  (default 3)
#
# What it does, in the order the steps appear below:
#   1. connects with bash's /dev/tcp (no WebSocket library, no curl, no python);
#   2. sends the opening handshake, an HTTP/1.1 GET with a random Sec-WebSocket-Key,
#      and prints it;
#   3. reads and prints the answer, which must be `101 Switching Protocols`;
#   4. checks Sec-WebSocket-Accept against the hash it computes itself;
#   5. reads FRAMES frames, decoding each header bit by bit, and prints them;
#   6. sends a masked close frame (code 1000), reads up to the server's close reply,
#      and sees the server hang up.
#
# Exit status: 0 when all of that worked; 1 when the server cannot be reached, the
# answer is not 101 (a wrong path gets 404), the accept hash is wrong, the server
# breaks the protocol or stays silent; 2 for bad arguments: a bad PORT or FRAMES, a
# wss:// URL, or a URL with no host, a bad port or a fragment. Every read from the
# server gives up after HANDSHAKE_TIMEOUT seconds (default 5), so the script never
# hangs.
#
# It needs bash 4+, and from coreutils: cat, head, od, base64, sha1sum, timeout.
# It starts no process that outlives it: each `timeout head` ends with its read.
set -euo pipefail

TIMEOUT="${HANDSHAKE_TIMEOUT:-5}"

# The fixed GUID from RFC 6455 section 1.3. Only a server that knows WebSocket
# knows it, which is the point of the accept hash (step 4).
GUID="258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# The longest payload this script will read. tickcast's frames are a few dozen
# bytes; this only stops a wrong length from making us read forever.
MAX_PAYLOAD=$((1 << 20))

USAGE='usage: bash scripts/handshake.sh ws://HOST[:PORT][/PATH] [FRAMES]   (port 80 if none, as in any ws:// URL)
       bash scripts/handshake.sh [HOST] [PORT] [FRAMES]           (defaults: 127.0.0.1 40132 3, path /echo)'

die() {
    printf 'handshake.sh: %s\n' "$*" >&2
    exit 1
}

usage() {
    printf 'handshake.sh: %s\n%s\n' "$1" "$USAGE" >&2
    exit 2
}

# bad_url MESSAGE: a URL this script cannot use. The message says why and what to
# write instead, on one line; exit status 2, as for any bad argument.
bad_url() {
    printf 'handshake.sh: %s\n' "$*" >&2
    exit 2
}

step() { printf '\n== %s\n' "$*"; }

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    cat <<EOT
$USAGE

Opens a WebSocket to tickcast with bash's /dev/tcp and shows every byte of it: the
handshake, the accept hash checked by hand, FRAMES frames decoded, a clean close.

  ws://HOST[:PORT][/PATH]  the server as a URL, as wscat and websocat take it, e.g.
                           ws://127.0.0.1:40132/echo or ws://[::1]:40132/. PORT is
                           80 when the URL has none, as the URL standard says for
                           ws:// (tickcast listens on 40132 unless told otherwise,
                           so write it); PATH is / when it has none (tickcast
                           answers on /echo and /). wss:// is refused: no TLS here.
  HOST                     the server's host or address     (default 127.0.0.1)
  PORT                     its WebSocket port, --ws-addr    (default 40132)
                           (HOST PORT always ask for the path /echo)
  FRAMES                   frames to read before closing    (default 3)
  HANDSHAKE_TIMEOUT        environment: seconds each read may wait (default 5)

Exit status: 0 all went well; 1 no connection, no 101, or a protocol error;
2 bad arguments (including wss:// and malformed URLs).
EOT
    exit 0
fi

# ---------------------------------------------------------------------------
# Arguments: where to connect (HOST, PORT), and what to ask for there (TARGET, the
# path in the request line, and HOST_HEADER).
#
# A ws:// URL splits as RFC 6455 section 3 says: ws://HOST[:PORT][/PATH][?QUERY].
# HOST and PORT say where to connect; PATH and QUERY together are the request
# target of the GET. An IPv6 address is written in brackets, ws://[::1]:40132/, so
# that its colons are not read as the port's; /dev/tcp wants it without them.
# ---------------------------------------------------------------------------

# parse_url URL: sets HOST, PORT, TARGET and HOST_HEADER from a ws:// URL, or exits
# with status 2 and one line saying what is wrong with it.
parse_url() {
    local url=$1 shown rest authority port=""
    shown="${url//[[:cntrl:]]/?}" # the URL for messages: keep them on one line
    case "${url%%:*}" in
    [Ww][Ss]) ;; # a scheme is case-insensitive: WS:// is ws://
    [Ww][Ss][Ss])
        bad_url "'$shown': wss:// is WebSocket over TLS, which this script does not speak (bash's /dev/tcp is plain TCP); use a plain ws:// URL to tickcast itself, e.g. ws://127.0.0.1:40132/echo, the address the nginx proxy (scripts/nginx/tickcast.conf) forwards wss:// to"
        ;;
    *) bad_url "'$shown' is not a ws:// URL: write ws://HOST[:PORT][/PATH], e.g. ws://127.0.0.1:40132/echo" ;;
    esac
    rest="${url#*:}"
    [[ "$rest" == //* ]] ||
        bad_url "'$shown' is not a ws:// URL: write ws://HOST[:PORT][/PATH], e.g. ws://127.0.0.1:40132/echo"
    rest="${rest#//}"

    # The authority, [user@]host[:port], ends at the first /, ? or #.
    authority="${rest%%[/?#]*}"
    TARGET="${rest:${#authority}}"
    [[ "$TARGET" != *'#'* ]] ||
        bad_url "'$shown': a #fragment means nothing in a WebSocket URL (RFC 6455 section 3); leave it out"
    [[ ! "$TARGET" =~ [[:space:][:cntrl:]] ]] ||
        bad_url "'$shown': the path has a space or control character, which cannot go in a request line; write it %-encoded (a space is %20)"
    case "$TARGET" in
    "") TARGET=/ ;;            # ws://host:port means the path /
    '?'*) TARGET="/$TARGET" ;; # and ws://host:port?x the path / with the query x
    esac
    [[ "$authority" != *@* ]] ||
        bad_url "'$shown': user:password@ in the URL is not supported; this script sends no credentials"

    if [[ "$authority" =~ ^\[([0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)\](:(.*))?$ ]]; then
        HOST="${BASH_REMATCH[1]}" # an IPv6 address, without its brackets
        port="${BASH_REMATCH[3]}"
    elif [[ "$authority" == \[* ]]; then
        bad_url "'$shown': '$authority' is not an IPv6 address in brackets, such as [::1]:40132"
    else
        HOST="${authority%%:*}"
        [[ "$authority" != *:* ]] || port="${authority#*:}"
        [[ "$port" != *:* ]] ||
            bad_url "'$shown': an IPv6 address goes in brackets, as in ws://[::1]:40132/echo"
    fi
    [[ -n "$HOST" ]] ||
        bad_url "'$shown' has no host: write ws://HOST[:PORT][/PATH], e.g. ws://127.0.0.1:40132/echo"
    [[ "$HOST" == *:* || "$HOST" =~ ^[A-Za-z0-9._-]+$ ]] ||
        bad_url "'$shown': '$HOST' is not a host name or an IP address"

    # 10#: a leading zero must not make bash read "08" as octal.
    if [[ -z "$port" ]]; then
        PORT=80 # no port (or an empty one, ws://host:/) means 80, the ws:// default
        HOST_HEADER="${authority%:}"
        PORT_NOTE=" (the URL names no port, so 80, the ws:// default; tickcast's is 40132: ws://$HOST_HEADER:40132$TARGET)"
    elif [[ "$port" =~ ^[0-9]{1,5}$ ]] && ((10#$port >= 1 && 10#$port <= 65535)); then
        PORT=$((10#$port))
        HOST_HEADER="$authority" # host[:port] exactly as the URL wrote them
    else
        bad_url "'$shown': the port must be a number from 1 to 65535, not '$port'"
    fi
}

# PORT_NOTE: added to a failed connect's message when the port was not written.
PORT_NOTE=""
if [[ "${1:-}" == *://* || "${1:-}" =~ ^[Ww][Ss][Ss]?: ]]; then
    parse_url "$1"
    (($# <= 2)) || usage "too many arguments: after a URL comes only FRAMES"
    FRAMES="${2:-3}"
    URL="ws://$HOST_HEADER$TARGET"
else
    (($# <= 3)) || usage "too many arguments: HOST, PORT and FRAMES at most"
    HOST="${1:-127.0.0.1}"
    PORT="${2:-40132}"
    FRAMES="${3:-3}"
    if [[ ! "$PORT" =~ ^[0-9]{1,5}$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
        usage "PORT must be a number from 1 to 65535, not '$PORT'"
    fi
    PORT=$((10#$PORT))
    TARGET=/echo
    HOST_HEADER="$HOST:$PORT"
    if [[ "$HOST" == *:* ]]; then
        HOST_HEADER="[$HOST]:$PORT" # an IPv6 address needs brackets
    fi
    URL="ws://$HOST_HEADER$TARGET"
fi
if [[ ! "$FRAMES" =~ ^[0-9]{1,6}$ ]]; then
    usage "FRAMES must be a number (0 or more), not '$FRAMES'"
fi
if [[ ! "$TIMEOUT" =~ ^[0-9]{1,4}$ ]] || ((10#$TIMEOUT == 0)); then
    usage "HANDSHAKE_TIMEOUT must be a whole number of seconds (1 or more), not '$TIMEOUT'"
fi
FRAMES=$((10#$FRAMES)) TIMEOUT=$((10#$TIMEOUT))

# HOST:PORT for messages, with an IPv6 address in brackets.
ADDR="$HOST:$PORT"
if [[ "$HOST" == *:* ]]; then
    ADDR="[$HOST]:$PORT"
fi

printf 'tickcast handshake: %s, reading %s frame(s), %s s timeout per read\n' \
    "$URL" "$FRAMES" "$TIMEOUT"
printf 'connecting to host %s, port %s; request target %s; Host: %s\n' \
    "$HOST" "$PORT" "$TARGET" "$HOST_HEADER"

# ---------------------------------------------------------------------------
# Reading and writing bytes
#
# A bash variable cannot hold a NUL byte, and WebSocket frames are binary (a
# length of 0, a close code of 1000 = 0x03 0xE8...). So raw bytes never go into a
# variable: `head -c N` takes exactly N bytes off the socket and `od` turns them
# into numbers, which bash handles fine. Writing goes the other way: numbers become
# `\xNN` escapes, and printf's %b turns those into raw bytes on the socket.
# ---------------------------------------------------------------------------

# read_bytes N: reads exactly N bytes from the server (file descriptor 3) into the
# array BYTES, as numbers 0-255. Fails with a message if they do not all arrive
# within TIMEOUT seconds, or the server closes the connection first.
read_bytes() {
    local want=$1 text
    BYTES=()
    ((want > 0)) || return 0
    # head -c N never reads past byte N (it asks the kernel for at most what is
    # still missing), so the next frame stays in the socket for the next call.
    if ! text=$(timeout "$TIMEOUT" head -c "$want" <&3 | od -An -v -tu1); then
        die "no data from the server within ${TIMEOUT} s (wanted $want more byte(s))"
    fi
    read -r -d '' -a BYTES <<<"$text" || true # -d '': read every line, not just one
    ((${#BYTES[@]} == want)) ||
        die "the server closed the connection after ${#BYTES[@]} of $want byte(s)"
}

# read_bytes_from_urandom N: N random bytes into BYTES, as numbers 0-255.
read_bytes_from_urandom() {
    local text
    text=$(head -c "$1" /dev/urandom | od -An -v -tu1)
    read -r -d '' -a BYTES <<<"$text" || true
}

# send_bytes B...: writes the given bytes (numbers 0-255) to the server.
send_bytes() {
    local escapes
    printf -v escapes '\\x%02x' "$@" # 136 128 → '\x88\x80'
    printf '%b' "$escapes" >&3
}

# hex B...: the bytes as hex pairs, for showing raw bytes on the terminal.
hex() {
    if (($# == 0)); then
        printf '(empty)'
        return
    fi
    local pairs
    printf -v pairs '%02x ' "$@"
    printf '%s' "${pairs% }"
}

# text B...: prints the bytes as they are (for a text payload, that is its UTF-8).
text() {
    (($# > 0)) || return 0
    local escapes
    printf -v escapes '\\x%02x' "$@"
    printf '%b' "$escapes"
}

# ---------------------------------------------------------------------------
# 1. Connect
#
# bash opens a TCP connection when a redirection names /dev/tcp/HOST/PORT (bash
# does this itself; there is no such file). `exec 3<>` keeps it open as file
# descriptor 3 for reading and writing, for the rest of the script.
#
# bash's connect has no timeout of its own: a host that drops packets would keep
# it waiting for minutes. So we first try once in a child bash under `timeout`,
# which also gives us the system's reason (e.g. "Connection refused") for the
# error message, and only then connect for real. tickcast just sees one extra
# connection come and go without a word.
# ---------------------------------------------------------------------------
step "1. Connect"
# shellcheck disable=SC2016 # $1 and $2 are the child bash's arguments, not ours
if ! reason=$(timeout "$TIMEOUT" bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$HOST" "$PORT" 2>&1); then
    reason="${reason%%$'\n'*}" # bash's first complaint, e.g. "probe: connect: Connection refused"
    reason="${reason##*: }"     # → "Connection refused" (or "Name or service not known")
    die "cannot connect to $ADDR (${reason:-no answer within ${TIMEOUT} s}): is tickcast running?$PORT_NOTE"
fi
{ exec 3<>"/dev/tcp/$HOST/$PORT"; } 2>/dev/null ||
    die "cannot connect to $ADDR: is tickcast running?$PORT_NOTE"
printf 'connected to %s (file descriptor 3)\n' "$ADDR"

# ---------------------------------------------------------------------------
# 2. Send the opening handshake
#
# A WebSocket starts as an ordinary HTTP/1.1 GET asking to switch protocols.
# Sec-WebSocket-Key is 16 random bytes in base64: a nonce, not a secret. It lets
# us check (step 4) that the answer was written by a WebSocket server for this very
# request, not replayed by a cache or made up by a plain HTTP server.
# ---------------------------------------------------------------------------
step "2. Send the opening handshake"
KEY=$(head -c 16 /dev/urandom | base64)
printf 'key: 16 random bytes from /dev/urandom, in base64: %s\n' "$KEY"

# The request target is the URL's path (and query); Host names the server as the
# URL did, so that one address can serve several sites.
request=(
    "GET $TARGET HTTP/1.1"
    "Host: $HOST_HEADER"
    "Upgrade: websocket"
    "Connection: Upgrade"
    "Sec-WebSocket-Key: $KEY"
    "Sec-WebSocket-Version: 13"
    "" # an empty line ends the request head
)
for line in "${request[@]}"; do
    printf '> %s\n' "$line"
done
# HTTP ends each line with CR LF.
printf '%s\r\n' "${request[@]}" >&3

# ---------------------------------------------------------------------------
# 3. Read the response head
#
# Until the empty line, the answer is text, so `read` may take it line by line.
# On a socket, bash's read takes one byte at a time and stops right after the
# newline: the first frame, which may already be waiting behind the head, stays
# in the socket for step 5.
# ---------------------------------------------------------------------------
step "3. Read the response"
status_line=""
accept=""
content_length=0
for ((lines = 0; ; lines++)); do
    ((lines < 100)) || die "the response head goes on for more than 100 lines"
    if ! IFS= read -r -t "$TIMEOUT" -u 3 line; then
        ((lines > 0)) || die "no answer from $ADDR within ${TIMEOUT} s (is it tickcast's WebSocket port?)"
        die "the response head ended early (timeout or closed connection)"
    fi
    line="${line%$'\r'}"
    printf '< %s\n' "$line"
    [[ -n "$line" ]] || break
    if ((lines == 0)); then
        status_line="$line"
        continue
    fi
    name="${line%%:*}"
    value="${line#*:}"
    value="${value# }"
    case "${name,,}" in # header names are case-insensitive
    sec-websocket-accept) accept="$value" ;;
    content-length) if [[ "$value" =~ ^[0-9]+$ ]]; then content_length=$((10#$value)); fi ;;
    esac
done

if [[ ! "$status_line" =~ ^HTTP/1\.1\ 101\  ]]; then
    # A refusal has a one-line body that says why: show it, and repeat it in the
    # error (a wrong path gets "404 Not Found" and the paths that would work).
    why=""
    if ((content_length > 0 && content_length <= 4096)); then
        read_bytes "$content_length"
        why=$(text "${BYTES[@]}")
        printf '< %s\n' "$why"
        why="${why%%$'\n'*}"
    fi
    die "expected 'HTTP/1.1 101 Switching Protocols', got '$status_line'${why:+: $why}"
fi
printf '101 Switching Protocols: from the next byte on, we both speak WebSocket frames\n'

# ---------------------------------------------------------------------------
# 4. Check Sec-WebSocket-Accept
#
# The server must answer base64(SHA-1(key + GUID)). sha1sum prints the 20-byte
# digest as 40 hex digits, but base64 must encode the 20 raw bytes, so each hex
# pair goes back to a byte (as a \xNN escape that printf %b turns into the byte).
# ---------------------------------------------------------------------------
step "4. Check Sec-WebSocket-Accept"
sha1_hex=$(printf '%s%s' "$KEY" "$GUID" | sha1sum)
sha1_hex="${sha1_hex%% *}" # sha1sum prints "<hex>  -"
sha1_escapes=""
for ((i = 0; i < ${#sha1_hex}; i += 2)); do
    sha1_escapes+="\\x${sha1_hex:i:2}"
done
expected=$(printf '%b' "$sha1_escapes" | base64)
printf 'SHA-1(key + "%s") = %s\n' "$GUID" "$sha1_hex"
printf 'expected Sec-WebSocket-Accept: %s\n' "$expected"
printf 'received Sec-WebSocket-Accept: %s\n' "${accept:-(missing)}"
if [[ "$accept" != "$expected" ]]; then
    die "Sec-WebSocket-Accept does not match: this server did not answer our key"
fi
printf 'Sec-WebSocket-Accept matches: the server read our key and knows RFC 6455\n'

# ---------------------------------------------------------------------------
# 5. Read frames
#
# Every WebSocket message travels in frames. A frame header is 2 to 14 bytes:
#
#   byte 0   F R R R O O O O   F: FIN, 1 on the last frame of a message
#                              R: three reserved bits, 0 without extensions
#                              O: opcode: 0 continuation, 1 text, 2 binary,
#                                 8 close, 9 ping, 10 pong
#   byte 1   M L L L L L L L   M: MASK, 1 on frames from client to server only
#                              L: payload length 0-125; or 126: the length is in
#                                 the next 2 bytes; or 127: in the next 8 bytes
#                                 (big-endian, most significant byte first)
#   then     the extended length (0, 2 or 8 bytes), the masking key (4 bytes, only
#            if M), then the payload.
#
# Frames from the server are never masked (RFC 6455 section 5.1), so a payload
# arrives exactly as it was sent: a text frame's payload is the JSON message.
# ---------------------------------------------------------------------------

# The fields of the frame read_frame read last.
FIN=0 OPCODE=0 LENGTH=0 HEADER=() PAYLOAD=()

opcode_name() {
    case "$1" in
    0) echo continuation ;; 1) echo text ;; 2) echo binary ;;
    8) echo close ;; 9) echo ping ;; 10) echo pong ;;
    *) echo "reserved($1)" ;;
    esac
}

# read_frame: reads one whole frame into FIN, OPCODE, LENGTH, HEADER and PAYLOAD.
read_frame() {
    local b0 b1 mask len7 i
    read_bytes 2
    HEADER=("${BYTES[@]}")
    b0=${BYTES[0]} b1=${BYTES[1]}
    FIN=$(((b0 >> 7) & 1))
    OPCODE=$((b0 & 0x0f))
    mask=$(((b1 >> 7) & 1))
    len7=$((b1 & 0x7f))
    if (((b0 >> 4) & 7)); then
        die "frame header $(hex "$b0" "$b1"): reserved bits set, but no extension was agreed"
    fi
    if ((mask == 1)); then
        die "frame header $(hex "$b0" "$b1"): the server masked its frame, which RFC 6455 forbids"
    fi

    if ((len7 == 126)); then # 16-bit length follows
        read_bytes 2
        HEADER+=("${BYTES[@]}")
        LENGTH=$((BYTES[0] << 8 | BYTES[1]))
    elif ((len7 == 127)); then # 64-bit length follows
        read_bytes 8
        HEADER+=("${BYTES[@]}")
        LENGTH=0
        for ((i = 0; i < 8; i++)); do
            LENGTH=$((LENGTH << 8 | BYTES[i]))
        done
    else
        LENGTH=$len7
    fi
    ((LENGTH >= 0 && LENGTH <= MAX_PAYLOAD)) ||
        die "frame header $(hex "${HEADER[@]}"): a payload of $LENGTH bytes is more than this script reads"

    read_bytes "$LENGTH"
    PAYLOAD=("${BYTES[@]}")
}

# show_frame LABEL: prints the frame read last: a summary line with the payload,
# then the header bytes and what each field says.
show_frame() {
    local label=$1 name fin_word len_note
    name=$(opcode_name "$OPCODE")
    fin_word=$([[ $FIN == 1 ]] && echo FIN || echo "not FIN")
    printf '%s: %s %s %d bytes: ' "$label" "$fin_word" "$name" "$LENGTH"
    case "$OPCODE" in
    1) text "${PAYLOAD[@]}" ;;
    8) show_close_payload ;;
    *) # binary, ping, pong: show the first bytes in hex
        hex "${PAYLOAD[@]:0:32}"
        ((LENGTH <= 32)) || printf ' ...'
        ;;
    esac
    printf '\n'
    case ${#HEADER[@]} in
    2) len_note="length $LENGTH in the 7 bits of byte 1" ;;
    4) len_note="length 126 = 16-bit length in bytes 2-3: $LENGTH" ;;
    *) len_note="length 127 = 64-bit length in bytes 2-9: $LENGTH" ;;
    esac
    printf '    header %s: FIN=%d RSV=0 opcode=%d (%s) MASK=0, %s\n' \
        "$(hex "${HEADER[@]}")" "$FIN" "$OPCODE" "$name" "$len_note"
}

# A close payload is a 2-byte status code, then an optional UTF-8 reason.
show_close_payload() {
    if ((LENGTH == 0)); then
        printf '(no status code)'
        return
    fi
    local code=$((PAYLOAD[0] << 8 | PAYLOAD[1]))
    printf 'code %d' "$code"
    case $code in
    1000) printf ' (normal closure)' ;; 1001) printf ' (going away)' ;;
    1002) printf ' (protocol error)' ;; 1007) printf ' (invalid UTF-8)' ;;
    1009) printf ' (message too big)' ;;
    esac
    ((LENGTH > 2)) && printf ', reason "%s"' "$(text "${PAYLOAD[@]:2}")"
    return 0
}

# send_frame OPCODE B...: sends one whole (FIN) frame with the given payload bytes,
# masked as every client frame must be (a server closes the connection on an
# unmasked one): 4 random bytes, the masking key, are XORed in turn into the
# payload. In a browser this means the bytes on the wire are never bytes that a
# page's script chose, so a script cannot forge, say, an HTTP request that fools
# a proxy on the way. Here it is simply the rule.
send_frame() {
    local opcode=$1 i
    shift
    local payload=("$@")
    ((${#payload[@]} <= 125)) || die "send_frame only sends short control frames"
    read_bytes_from_urandom 4
    local key=("${BYTES[@]}")
    local frame=($((0x80 | opcode)) $((0x80 | ${#payload[@]})) "${key[@]}")
    for ((i = 0; i < ${#payload[@]}; i++)); do
        frame+=($((payload[i] ^ key[i % 4])))
    done
    send_bytes "${frame[@]}"
    printf '> sent %s frame: %s\n' "$(opcode_name "$opcode")" "$(hex "${frame[@]}")"
    printf '    header %s: FIN=1 opcode=%d MASK=1 length=%d; masking key %s; payload %s masked to %s\n' \
        "$(hex "${frame[@]:0:2}")" "$opcode" "${#payload[@]}" "$(hex "${key[@]}")" \
        "$(hex "${payload[@]}")" "$(hex "${frame[@]:6}")"
}

# A ping must be answered with a pong carrying the same payload. tickcast pings
# every 30 s by default, so one may come along while we read.
answer_ping() {
    if ((OPCODE == 9)); then
        send_frame 10 "${PAYLOAD[@]}"
    fi
    return 0
}

step "5. Read $FRAMES frame(s)"
for ((n = 1; n <= FRAMES; n++)); do
    read_frame
    show_frame "frame $n"
    answer_ping
    if ((OPCODE == 8)); then
        die "the server closed the connection before we read $FRAMES frame(s)"
    fi
done

# ---------------------------------------------------------------------------
# 6. Close
#
# A WebSocket ends with a close handshake: one side sends a close frame (opcode 8,
# payload = 2-byte status code, 1000 = normal closure, 0x03 0xE8), the other
# answers with a close frame of its own, then the server ends the TCP connection.
# Frames the server sent before it read our close may still arrive first.
# ---------------------------------------------------------------------------
step "6. Close"
send_frame 8 $((1000 >> 8)) $((1000 & 0xff))
for ((m = 1; ; m++)); do
    ((m <= 100)) || die "no close reply after 100 more frames"
    read_frame
    if ((OPCODE == 8)); then
        show_frame "close reply"
        break
    fi
    show_frame "frame $((FRAMES + m)) (sent before the server read our close)"
done

# After its close reply the server hangs up: reading now finds the end of the stream.
if text=$(timeout "$TIMEOUT" head -c 1 <&3 | od -An -tu1) && [[ -z "$text" ]]; then
    printf 'the server closed the TCP connection: done\n'
else
    printf 'note: the server did not close the TCP connection within %s s\n' "$TIMEOUT"
fi
exec 3<&-
