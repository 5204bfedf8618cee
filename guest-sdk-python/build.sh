#!/usr/bin/env bash
# Tests the Python SDK and the Python policies with pytest, then builds the
# policies the host's tests load:
#
#   guest-sdk-python/build.sh OUTDIR
#
# writes OUTDIR/default-python.wasm, allow-list-python.wasm and
# test-hostile-python.wasm. The toolchain is the venv `cargo xtask setup`
# makes (target/toolchains/python: componentize-py and pytest, pinned by
# policies/toolchains/requirements.txt), or the one PIZZJA_PYTHON_TOOLCHAIN
# names. A component newer than all its sources is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:?usage: build.sh OUTDIR}" && cd "$1" && pwd)
venv=${PIZZJA_PYTHON_TOOLCHAIN:-$root/target/toolchains/python}
want=$(sed -n 's/^componentize-py==//p' "$root/policies/toolchains/requirements.txt")
have=$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}') || true
if [ "$have" != "$want" ]; then
  echo "build.sh: componentize-py $want is not installed in $venv: run \`cargo xtask setup\`" >&2
  exit 1
fi
cd "$root"
(cd guest-sdk-python && "$venv/bin/pytest" -q -p no:cacheprovider)
(cd policies/examples/allow-list-python && "$venv/bin/pytest" -q -p no:cacheprovider)

# build DIR MODULE NAME: OUT/NAME.wasm from module MODULE in DIR, unless
# newer than every source.
build() {
  local dir=$1 module=$2 name=$3 target="$out/$3.wasm"
  if [ -f "$target" ] && [ -z "$(find wit guest-sdk-python/pizzja_sdk "$dir" -newer "$target" -type f -name '*.py' -o -newer "$target" -type f -name '*.wit' | head -1)" ]; then
    echo "build.sh: $name.wasm is up to date" >&2
    return
  fi
  "$venv/bin/componentize-py" -d wit -w policy componentize -p "$dir" -p guest-sdk-python \
    "$module" -o "$target.tmp" >/dev/null
  mv "$target.tmp" "$target"
  echo "build.sh: built $target" >&2
}
build guest-sdk-python default_app default-python
build policies/examples/allow-list-python app allow-list-python
build policies/test-hostile-python app test-hostile-python
