#!/usr/bin/env bash
# Tests the JavaScript SDK and the JavaScript policies with node's own test
# runner, then builds the policies the host's tests load:
#
#   guest-sdk-js/build.sh OUTDIR
#
# writes OUTDIR/default-js.wasm, allow-list-js.wasm and test-hostile-js.wasm.
# The toolchain is policies/toolchains' `npm ci` (cargo xtask setup), or
# the directory PIZZJA_JS_TOOLCHAIN names. A component newer than all its
# sources is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:?usage: build.sh OUTDIR}" && cd "$1" && pwd)
toolchain=${PIZZJA_JS_TOOLCHAIN:-$root/policies/toolchains}
if [ ! -d "$toolchain/node_modules/@bytecodealliance/componentize-js" ]; then
  echo "build.sh: componentize-js is not installed in $toolchain: run \`cargo xtask setup\`" >&2
  exit 1
fi
# build.mjs imports componentize-js from beside itself.
ln -sfn "$toolchain/node_modules" "$root/guest-sdk-js/node_modules"
cd "$root"
(cd guest-sdk-js && npm test --silent)
(cd policies/examples/allow-list-js && npm test --silent)

# build SOURCE NAME DIR...: OUT/NAME.wasm from SOURCE, unless newer than
# every file in the DIRs.
build() {
  local source=$1 name=$2 target="$out/$2.wasm"
  shift 2
  if [ -f "$target" ] && [ -z "$(find wit "$@" -newer "$target" -type f -not -path '*/node_modules/*' -print -quit)" ]; then
    echo "build.sh: $name.wasm is up to date" >&2
    return
  fi
  node guest-sdk-js/build.mjs "$source" "$target.tmp" --wit wit
  mv "$target.tmp" "$target"
}
build guest-sdk-js/default-policy.js default-js guest-sdk-js
build policies/examples/allow-list-js/policy.js allow-list-js guest-sdk-js policies/examples/allow-list-js
build policies/test-hostile-js/policy.js test-hostile-js guest-sdk-js policies/test-hostile-js
