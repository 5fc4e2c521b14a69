#!/bin/sh
# tests/test_api_doc.sh -- run every example in docs/api.md, as written,
# against a fresh spiked, so the reference cannot drift from the server.
#
# The doc's convention, stated at its top: each ```sh block makes exactly
# one request with curl; the blocks run in order in one shell where SPIKE
# (the server's base URL) and ADMIN (its admin token) are set; the ```http
# block after each shows the answer: the status line, an empty line, the
# body. This starts $SPIKED on a free loopback port with a fresh data
# directory and an admin token of its own, runs the blocks with sh under
# `set -u` (each curl bounded by --max-time, all of them by RUN_MAX_S), and
# checks for each block: its one request went to $SPIKE, the status line,
# the body, and that the block exited 0. Bodies are compared with all
# whitespace removed and with ids and unix-ms times (10 or more digits) and
# traceIds free to differ; "..." in a shown body stands for any text.
# Last, spiked must drain and exit 0 on SIGTERM. The server is stopped and
# the temporary directory removed on every exit path.
#
#   SPIKED=build/asan/spiked tests/test_api_doc.sh [docs/api.md]
set -u
case ${1:-} in
"") DOC=docs/api.md ;;
/*) DOC=$1 ;;
*) DOC=$PWD/$1 ;;
esac
cd "$(dirname "$0")/.." || exit 1
SPIKED=${SPIKED:-build/rel/spiked}
CURL_MAX_S=${CURL_MAX_S:-10}  # one request
RUN_MAX_S=${RUN_MAX_S:-120}   # every block together
START_MAX_S=15                # spiked listening
STOP_MAX_S=15                 # spiked drained after SIGTERM
TMPDIR=${TMPDIR:-/tmp}
case $TMPDIR in /*) ;; *) TMPDIR=$PWD/$TMPDIR ;; esac

for tool in curl timeout; do
  command -v $tool >/dev/null || { echo "FAIL 0 $tool missing: run make deps"; exit 1; }
done
[ -x "$SPIKED" ] || { echo "FAIL 0 $SPIKED missing: make $SPIKED"; exit 1; }
[ -r "$DOC" ] || { echo "FAIL 0 $DOC unreadable"; exit 1; }

work=$(mktemp -d "$TMPDIR/spike-apidoc.XXXXXX") || exit 1
mkdir "$work/backups" || exit 1
. tests/lib.sh
rpid="" # the blocks' runner while it runs

cleanup() {
  [ -n "$rpid" ] && kill -TERM "$rpid" 2>/dev/null # timeout passes it on to the blocks
  spiked_down 5
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- spiked on a free port -----------------------------------------------

token="doc-test-$$"
if ! spiked_up --data "$work/data" --admin-token "$token" --backup-dir "$work/backups"; then
  fail "0 start $SPIKED"
  sed 's/^/      /' "$work/spiked.log" | tail -n 20
  finish
fi
SPIKE="http://127.0.0.1:$port"

# ---- the blocks: req.N (an sh block), ans.N (the http block after it),
# info.N (the line where the sh block starts, and its "METHOD /path" for
# the report); orphans lists answers with no request.

awk -v dir="$work" '
  # "POST /api/v1/events/$EVENT/orders" for the text of a block.
  function summary(text, m, u) {
    m = "GET"
    if (match(text, /-X [A-Z]+/)) m = substr(text, RSTART + 3, RLENGTH - 3)
    else if (text ~ / (-d|--data[-a-z]*) /) m = "POST"
    u = "(no URL)"
    if (match(text, /(\$SPIKE|localhost:[0-9]+|127\.0\.0\.1:[0-9]+)\/[-A-Za-z0-9_\/$?=&.{}]*/)) {
      u = substr(text, RSTART, RLENGTH)
      sub(/^[^\/]*/, "", u)
    }
    return m " " u
  }
  /^```/ {
    if (!fence) {
      fence = 1
      lang = substr($0, 4)
      sub(/[ \t].*$/, "", lang)
      kind = ""
      if (lang == "sh") {
        kind = "req"; n++; pending = n; file = dir "/req." n; start = NR; text = ""
        printf "" > file
      } else if (lang == "http" && pending) {
        kind = "ans"; file = dir "/ans." pending; pending = 0
        printf "" > file
      } else if (lang == "http") {
        print NR >> (dir "/orphans")
      }
      next
    }
    fence = 0
    if (kind != "") close(file)
    if (kind == "req") {
      print start, summary(text) > (dir "/info." n)
      close(dir "/info." n)
    }
    next
  }
  fence && kind != "" { print > file }
  fence && kind == "req" { text = text " " $0 }
  END { print n + 0 > (dir "/count") }
' "$DOC"
count=$(cat "$work/count")
if [ "$count" -eq 0 ]; then
  fail "0 no \`\`\`sh examples in $DOC"
fi
if [ -e "$work/orphans" ]; then
  while read -r line; do
    fail "- $DOC:$line: an \`\`\`http answer with no \`\`\`sh request before it"
  done <"$work/orphans"
fi

# ---- one shell runs them all, in order, with curl wrapped to record each
# request's block, headers and body, and to refuse any other address.

{
  echo 'set -u'
  printf "SPIKE='%s'\nADMIN='%s'\n__doc_w='%s'\n" "$SPIKE" "$token" "$work"
  cat <<EOF
curl() {
  __doc_to=0
  __doc_bad=
  for __doc_a in "\$@"; do
    case \$__doc_a in
    "\$SPIKE"/*) __doc_to=\$((__doc_to + 1)) ;;
    *://* | localhost[:/]* | 127.0.0.1[:/]*) __doc_bad=\$__doc_a ;;
    esac
  done
  if [ "\$__doc_to" -ne 1 ] || [ -n "\$__doc_bad" ]; then
    echo "\$__doc_n refused \${__doc_bad:-no URL under \\\$SPIKE}" >>"\$__doc_w/calls"
    return 7
  fi
  command curl --max-time $CURL_MAX_S -D "\$__doc_w/head.\$__doc_n" \\
    -o "\$__doc_w/body.\$__doc_n" "\$@"
  __doc_rc=\$?
  echo "\$__doc_n sent \$__doc_rc" >>"\$__doc_w/calls"
  cat "\$__doc_w/body.\$__doc_n" 2>/dev/null
  return \$__doc_rc
}
EOF
  i=1
  while [ "$i" -le "$count" ]; do
    printf '__doc_n=%d; . "$__doc_w/req.%d" 2>>"$__doc_w/err.%d"; echo "%d $?" >>"$__doc_w/ran"\n' \
      "$i" "$i" "$i" "$i"
    i=$((i + 1))
  done
} >"$work/run.sh"
: >"$work/calls"
: >"$work/ran"
# In the background, so that a signal to this script is acted on at once.
timeout "$RUN_MAX_S" sh "$work/run.sh" </dev/null >"$work/run.out" 2>"$work/run.err" &
rpid=$!
wait "$rpid"
run_rc=$?
rpid=""

# ---- the checks, one line per block ----------------------------------------

# Whitespace out, traceIds and numbers of 10 or more digits (ids, ms times) masked.
norm() {
  tr -d ' \t\r\n' | sed -e 's/"traceId":"[^"]*"/"traceId":"T"/g' -e 's/[0-9]\{10,\}/N/g'
}

# Does the normalised body in file $2 match the shown one in $1, where
# "..." stands for any text?
matches() {
  awk -v shown="$1" -v got="$2" 'BEGIN {
    getline p <shown
    getline s <got
    n = split(p, seg, /\.\.\./)
    if (n == 1) exit !(p == s)
    if (substr(s, 1, length(seg[1])) != seg[1]) exit 1
    pos = length(seg[1]) + 1
    for (i = 2; i < n; i++) {
      j = index(substr(s, pos), seg[i])
      if (j == 0) exit 1
      pos += j - 1 + length(seg[i])
    }
    t = length(s) - length(seg[n]) + 1
    exit !(t >= pos && substr(s, t) == seg[n])
  }'
}

cr=$(printf '\r')
i=1
while [ "$i" -le "$count" ]; do
  read -r line what <"$work/info.$i"
  what="$i $what"
  where="$DOC:$line"
  ans="$work/ans.$i"
  want=""
  [ -e "$ans" ] && read -r want <"$ans"
  want=${want%"$cr"}
  ran=$(sed -n "s/^$i //p" "$work/ran")
  calls=$(grep -c "^$i " "$work/calls")
  refused=$(sed -n "s/^$i refused //p" "$work/calls")
  curl_rc=$(sed -n "s/^$i sent //p" "$work/calls")
  got=$(grep '^HTTP/' "$work/head.$i" 2>/dev/null | tail -n 1 | tr -d '\r')
  [ -e "$work/body.$i" ] || : >"$work/body.$i"
  why=""
  if [ ! -e "$ans" ]; then
    why="no \`\`\`http answer follows the request"
  elif ! printf '%s\n' "$want" | grep -q '^HTTP/1\.1 [1-5][0-9][0-9] '; then
    why="the answer does not start with a status line (HTTP/1.1 200 OK)"
  elif [ -n "$(sed -n '2{s/[[:space:]]//g;p;}' "$ans")" ]; then
    why="the answer's status line must be followed by an empty line, then the body"
  elif [ -z "$ran" ] && [ "$calls" -eq 0 ] && [ -s "$work/err.$i" ]; then
    why="the shell stopped in this block, before its request"
  elif [ -z "$ran" ] && [ "$calls" -eq 0 ]; then
    why="did not run: the shell stopped before it"
  elif [ -n "$refused" ]; then
    why="not sent: curl must go to \$SPIKE only, not $refused"
  elif [ "$calls" -ne 1 ]; then
    why="$calls requests: each \`\`\`sh block makes exactly one"
  elif [ "$curl_rc" != 0 ]; then
    why="curl exited $curl_rc (28: no answer in ${CURL_MAX_S} s)"
  elif [ "$got" != "$want" ]; then
    why="expected \"$want\", got \"$got\""
  else
    sed '1,/^[[:space:]]*$/d' "$ans" | norm >"$work/shown"
    norm <"$work/body.$i" >"$work/got"
    if [ -s "$work/shown" ] && ! matches "$work/shown" "$work/got"; then
      why="the body differs from the one shown"
    elif [ -n "$ran" ] && [ "$ran" != 0 ]; then
      why="the block exited $ran"
    elif [ -z "$ran" ]; then
      why="the shell stopped in this block"
    fi
  fi
  if [ -z "$why" ]; then
    ok "$what -> ${got#HTTP/1.1 }"
  else
    fail "$what ($where): $why"
    [ -s "$work/body.$i" ] && head -n 3 "$work/body.$i" | cut -c 1-400 | sed 's/^/      got:   /'
    [ -s "$work/err.$i" ] && sed 's/^/      err:   /' "$work/err.$i" | tail -n 5
  fi
  i=$((i + 1))
done
[ "$run_rc" -eq 124 ] && echo "      (the blocks ran past ${RUN_MAX_S} s)"
[ -s "$work/run.err" ] && sed 's/^/      sh:    /' "$work/run.err" | tail -n 5

# ---- spiked drains and exits 0 ---------------------------------------------

n=$((count + 1))
kill -TERM "$spid" 2>/dev/null
if ! wait_file "$STOP_MAX_S" "$work/spiked.rc"; then
  fail "$n spiked did not exit within ${STOP_MAX_S} s of SIGTERM"
elif [ "$(cat "$work/spiked.rc")" != 0 ]; then
  fail "$n spiked exited $(cat "$work/spiked.rc") on SIGTERM"
  grep -v '"level":"info"' "$work/spiked.log" | sed 's/^/      /' | tail -n 20
else
  ok "$n spiked drains and exits 0 on SIGTERM"
fi
finish
