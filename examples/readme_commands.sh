#!/usr/bin/env bash
# Runs the README's command blocks exactly as written: every ```bash block that follows the
# line "<!-- run by examples/readme_commands.sh -->" in README.md, in order, in a scratch
# folder (so a clone is left untouched), with `set -euo pipefail`.
#
#   examples/readme_commands.sh            # from anywhere; needs gnnbackdoor and curl on PATH
#   PORT=8731 examples/readme_commands.sh  # the serve example on another port than 8000
#
# The scratch folder gets a copy of examples/ and experiments/ (the README names files there)
# and a `.venv/bin/activate` that puts the `gnnbackdoor` found on PATH first, so
# `source .venv/bin/activate` works as written. tests/test_readme_commands.py runs this script.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -x "$repo/.venv/bin/gnnbackdoor" ]; then
    bin="$repo/.venv/bin"
else
    bin=$(dirname "$(command -v gnnbackdoor)")
fi
cp -r "$repo/examples" "$repo/experiments" "$work/"
mkdir -p "$work/.venv/bin"
printf 'export PATH="%s:$PATH"\n' "$bin" > "$work/.venv/bin/activate"

python3 - "$repo/README.md" "${PORT:-}" > "$work/commands.sh" <<'PY'
import re
import sys

readme, port = open(sys.argv[1]).read(), sys.argv[2]
marker = "<!-- run by examples/readme_commands.sh -->"
blocks = re.findall(re.escape(marker) + r"\s*```bash\n(.*?)```", readme, flags=re.S)
if not blocks:
    sys.exit("README.md has no block marked " + marker)
text = "\n".join(blocks)
if port:
    text = text.replace("8000", port)
# a block that fails after starting the server in the background must not leave it running
print("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + text)
PY

cd "$work"
echo "running the README's commands in $work" >&2
timeout "${README_TIMEOUT:-600}" bash "$work/commands.sh"
echo "the README's commands ran as written" >&2
