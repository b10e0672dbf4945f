#!/usr/bin/env bash
# Opens an nxt report in headless Chromium and checks that the headline table and every inline
# <svg> plot were laid out with a non-empty box and that the page logged nothing to the console
# (the report has no scripts, so any console message is an error); saves a screenshot.
#
#   crates/nxt-report/tests/browser_check.sh REPORT.html [SCREENSHOT.png] [HEIGHT]
#
# The report itself has no JavaScript: the check runs on a copy with a small measuring script
# appended, whose result Chromium's --dump-dom prints. Needs `chromium` (Debian:
# apt-get install -y chromium). Exit status: 0 all plots rendered, 1 a check failed, 2 usage
# or missing browser.
set -euo pipefail

report=${1:?usage: browser_check.sh REPORT.html [SCREENSHOT.png] [HEIGHT]}
shot=${2:-}
height=${3:-2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [[ -z "$browser" ]]; then
    echo "browser_check: no chromium on PATH (apt-get install -y chromium)" >&2
    exit 2
fi
[[ -f "$report" ]] || { echo "browser_check: $report: no such file" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-background-networking
       --disable-component-update --disable-sync --no-first-run --hide-scrollbars
       --user-data-dir="$work/profile")

# The measuring copy: the report plus a script that records every SVG's laid-out box.
probe="$work/probe.html"
sed 's#</body>#<script>\
(function () {\
  var out = [];\
  document.querySelectorAll("svg").forEach(function (s, i) {\
    var r = s.getBoundingClientRect();\
    var t = s.querySelectorAll("text").length, shapes = s.querySelectorAll("rect,line,polyline,path,circle").length;\
    out.push("svg " + i + " " + Math.round(r.width) + "x" + Math.round(r.height) + " texts=" + t + " shapes=" + shapes);\
  });\
  var h = document.querySelector("\#headline table"), hb = h ? h.getBoundingClientRect() : null;\
  var head = h ? "HEADLINE " + Math.round(hb.width) + "x" + Math.round(hb.height) + " rows=" + h.rows.length : "HEADLINE none";\
  var p = document.createElement("pre"); p.id = "nxt-browser-check";\
  p.textContent = head + "\\nSVGS " + out.length + "\\n" + out.join("\\n") + "\\nEND";\
  document.body.appendChild(p);\
})();\
</script></body>#' "$report" > "$probe"

"$browser" "${flags[@]}" --enable-logging=stderr --v=0 --window-size=1280,1000 \
    --virtual-time-budget=5000 --dump-dom "file://$probe" > "$work/dom.html" 2> "$work/stderr.log" || true

result=$(sed -n '/<pre id="nxt-browser-check">/,/END/p' "$work/dom.html" | sed 's/<[^>]*>//g')
if [[ -z "$result" ]]; then
    echo "browser_check: the measuring script did not run; chromium stderr:" >&2
    tail -20 "$work/stderr.log" >&2
    exit 1
fi
echo "$result"
expected=$(grep -o '<svg' "$report" | wc -l)
got=$(echo "$result" | sed -n 's/^SVGS \([0-9]*\)$/\1/p')
status=0
if ! echo "$result" | grep -qE '^HEADLINE [1-9][0-9]*x[1-9][0-9]* rows=([3-9]|[1-9][0-9]+)$'; then
    echo "browser_check: FAIL: the headline table is missing, empty or has no metric rows" >&2
    status=1
fi
if [[ "$got" != "$expected" ]]; then
    echo "browser_check: FAIL: the file has $expected <svg> elements, the browser laid out $got" >&2
    status=1
fi
if echo "$result" | grep -E '^svg [0-9]+ (0x|[0-9]+x0 )|texts=0|shapes=0' >&2; then
    echo "browser_check: FAIL: the plots above have an empty box, no text or no shapes" >&2
    status=1
fi
if grep -E 'CONSOLE|Uncaught|SyntaxError' "$work/stderr.log" >&2; then
    echo "browser_check: FAIL: console errors (above)" >&2
    status=1
fi

if [[ -n "$shot" ]]; then
    # The screenshot is of the report itself, not of the measuring copy.
    "$browser" "${flags[@]}" --window-size=1280,"$height" --screenshot="$shot" "file://$(realpath "$report")" \
        > /dev/null 2> "$work/shot.log" || true
    if [[ -s "$shot" ]]; then
        echo "screenshot: $shot"
    else
        echo "browser_check: FAIL: no screenshot written" >&2
        tail -5 "$work/shot.log" >&2
        status=1
    fi
fi
[[ $status == 0 ]] && echo "browser_check: OK: the headline table and $got plots rendered with non-empty boxes, no console errors"
exit $status
