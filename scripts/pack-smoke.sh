#!/usr/bin/env bash
# Pack the package as npm would publish it, install the tarball into an empty project with no
# network (npm --offline), and run a smoke program in CommonJS, ESM and TypeScript (tsc --noEmit, strict,
# the repository's typescript): a Listener echoes through the loop and a SocketAlarm proves the
# shipped prebuilt addon loaded. The consuming install must run neither tsc nor a compiler.
# The runtime dependencies (node-gyp-build, and node-addon-api for from-source builds) are
# bundled in the tarball, so the install needs nothing from the registry or its cache.
# The last line is "pack-smoke: PASS" or "pack-smoke: FAIL: <why>"; the exit status matches.
#   DANGA_PREBUILD_REUSE=1  reuse a fresh build/Release addon as the prebuild (faster; the
#                           spec sets it), instead of compiling it again with prebuildify.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/danga-pack-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
  echo "pack-smoke: FAIL: $*"
  exit 1
}

# 1. Pack from a copy: prebuildify rebuilds build/, which must not disturb the checkout.
src="$work/src"
mkdir -p "$src"
(cd "$repo" && tar cf - --exclude=./node_modules --exclude=./.git --exclude=./build \
  --exclude=./dist --exclude=./prebuilds --exclude=./.ci-results --exclude=./coverage .) |
  (cd "$src" && tar xf -) || fail "could not copy the repository"
ln -s "$repo/node_modules" "$src/node_modules"
if [ "${DANGA_PREBUILD_REUSE:-}" = 1 ] && [ -f "$repo/build/Release/danga_socket.node" ]; then
  mkdir -p "$src/build/Release"
  cp "$repo/build/Release/danga_socket.node" "$src/build/Release/"
fi
(cd "$src" && npm pack --silent --pack-destination "$work" >"$work/pack.log" 2>&1) ||
  { tail -20 "$work/pack.log"; fail "npm pack failed"; }
tarball=$(ls "$work"/danga-socket-*.tgz 2>/dev/null | head -1)
[ -n "$tarball" ] || fail "npm pack made no tarball"

# 2. What the tarball carries.
tar tzf "$tarball" >"$work/contents" || fail "unreadable tarball"
for f in package/dist/lib/index.js package/dist/lib/index.d.ts package/docs/api.md \
  package/LICENSE package/README.md package/CHANGELOG.md package/binding.gyp \
  package/src/addon.cc package/src/build-addon.js package/bin/echo-server; do
  grep -qx "$f" "$work/contents" || fail "tarball lacks $f"
done
grep -q '^package/prebuilds/linux-x64/.*\.node$' "$work/contents" || fail "tarball lacks the prebuilt addon"
grep -q '^package/node_modules/node-gyp-build/package.json$' "$work/contents" ||
  fail "tarball lacks the bundled node-gyp-build"
if grep -q -e '^package/spec/' -e '^package/build/' "$work/contents" ||
  grep '^package/node_modules/' "$work/contents" |
  grep -qv -e '^package/node_modules/node-gyp-build/' -e '^package/node_modules/node-addon-api/'; then
  fail "tarball carries spec/, build/ or unbundled node_modules/"
fi
tar xzf "$tarball" -C "$work" package/package.json || fail "no package.json in the tarball"
node -e '
  const p = require(process.argv[1]);
  const deps = Object.keys(p.dependencies || {});
  if (deps.includes("node-gyp")) throw new Error("node-gyp is a runtime dependency");
  if (!deps.includes("node-gyp-build")) throw new Error("node-gyp-build is not a dependency");
  if (!p.repository) throw new Error("no repository field");
' "$work/package/package.json" || fail "package.json of the tarball"

# 3. Install into an empty project, offline: anything not in npm's cache fails (ENOTCACHED).
app="$work/app"
mkdir -p "$app"
echo '{ "name": "pack-smoke-app", "version": "1.0.0", "private": true }' >"$app/package.json"
(cd "$app" && npm install --offline --no-audit --no-fund "$tarball" >"$work/install.log" 2>&1) || { tail -20 "$work/install.log"; fail "offline install failed"; }
pkg="$app/node_modules/danga-socket"
[ -d "$pkg/build" ] && fail "the install compiled the addon (build/ exists) instead of using the prebuild"
[ -d "$app/node_modules/typescript" ] && fail "the install pulled in typescript"
[ -d "$app/node_modules/node-gyp" ] && fail "the install pulled in node-gyp"

# 4. The smoke program, three ways.
cat >"$app/smoke.cjs" <<'EOF'
const net = require('node:net');
const { DangaSocket, Listener, SocketAlarm } = require('danga-socket');
class Echo extends DangaSocket {
  constructor(s) { super(s); this.watchRead(true); }
  eventRead() { const b = this.read(65536); if (b === null) this.close('eof'); else if (b.length) this.write(b); }
  eventErr() { this.close('err'); }
  eventHup() { this.close('hup'); }
}
(async () => {
  const l = await Listener.listen({ port: 0 }, (s) => new Echo(s));
  const c = net.connect(l.address().port, '127.0.0.1');
  let got = '';
  c.on('data', (d) => (got += d));
  c.write('ping');
  // SocketAlarm needs the addon: DS_ERR_NATIVE_UNAVAILABLE here means the prebuild did not load.
  await new Promise((r) => c.once('connect', r));
  new SocketAlarm({ socket: c }).cancel();
  DangaSocket.SetLoopTimeout(20);
  const deadline = Date.now() + 5000;
  DangaSocket.SetPostLoopCallback(() => got !== 'ping' && Date.now() < deadline);
  await DangaSocket.EventLoop();
  c.destroy();
  DangaSocket.Reset();
  if (got !== 'ping') throw new Error(`echo: got ${JSON.stringify(got)}`);
  console.log('cjs ok');
})().catch((e) => { console.error(e); process.exit(1); });
EOF
cat >"$app/smoke.mjs" <<'EOF'
import * as net from 'node:net';
import { DangaSocket, Listener, SocketAlarm } from 'danga-socket';
class Echo extends DangaSocket {
  constructor(s) { super(s); this.watchRead(true); }
  eventRead() { const b = this.read(65536); if (b === null) this.close('eof'); else if (b.length) this.write(b); }
  eventErr() { this.close('err'); }
  eventHup() { this.close('hup'); }
}
const l = await Listener.listen({ port: 0 }, (s) => new Echo(s));
const c = net.connect(l.address().port, '127.0.0.1');
let got = '';
c.on('data', (d) => (got += d));
c.write('ping');
await new Promise((r) => c.once('connect', r));
new SocketAlarm({ socket: c }).cancel();
DangaSocket.SetLoopTimeout(20);
const deadline = Date.now() + 5000;
DangaSocket.SetPostLoopCallback(() => got !== 'ping' && Date.now() < deadline);
await DangaSocket.EventLoop();
c.destroy();
DangaSocket.Reset();
if (got !== 'ping') throw new Error(`echo: got ${JSON.stringify(got)}`);
console.log('esm ok');
EOF
cat >"$app/smoke.ts" <<'EOF'
import * as net from 'node:net';
import { DangaSocket, Listener, connect, type ListenOptions } from 'danga-socket';
class Echo extends DangaSocket {
  constructor(s: net.Socket) {
    super(s);
    this.watchRead(true);
  }
  override eventRead(): void {
    const b = this.read(65536);
    if (b === null) this.close('eof');
    else if (b.length > 0) this.write(b);
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
}
const opts: ListenOptions = { port: 0 };
export async function main(): Promise<void> {
  const l = await Listener.listen(opts, (s) => new Echo(s));
  const c: net.Socket = await connect({ peer: l });
  c.end('ping');
}
EOF
cat >"$app/tsconfig.json" <<EOF
{
  "compilerOptions": {
    "strict": true,
    "exactOptionalPropertyTypes": true,
    "noImplicitOverride": true,
    "module": "node16",
    "moduleResolution": "node16",
    "target": "ES2022",
    "lib": ["ES2022"],
    "types": ["node"],
    "typeRoots": ["$repo/node_modules/@types"],
    "skipLibCheck": true,
    "noEmit": true
  },
  "files": ["smoke.ts"]
}
EOF
(cd "$app" && timeout 60 node smoke.cjs) || fail "CommonJS smoke program"
(cd "$app" && timeout 60 node smoke.mjs) || fail "ESM smoke program"
(cd "$app" && timeout 120 node "$repo/node_modules/typescript/bin/tsc" -p tsconfig.json) ||
  fail "TypeScript smoke program (tsc --noEmit, strict)"
echo "pack-smoke: PASS"
