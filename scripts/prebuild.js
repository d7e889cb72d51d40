'use strict';
// `prepack`: build the addon once as a Node-API binary into prebuilds/<platform>-<arch>/
// (prebuildify --napi --strip), so the packed tarball installs without a compiler. Built with
// this machine's Node headers (no download), for the running Node's version; a Node-API build
// loads on every supported Node. `postpack` removes prebuilds/ again, so a checkout keeps
// loading (and rebuilding) build/Release.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { localNodeDir } = require('../src/build-addon.js');

const root = path.join(__dirname, '..');

if (process.argv.includes('--clean')) {
  fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
  process.exit(0);
}

const outDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const local = path.join(root, 'build', 'Release', 'danga_socket.node');
if (process.env.DANGA_PREBUILD_REUSE === '1' && fs.existsSync(local)) {
  // The same node-gyp build of the same binding.gyp (NAPI_VERSION fixed): copy and strip it
  // instead of compiling again (the pack-smoke spec's shortcut).
  fs.mkdirSync(outDir, { recursive: true });
  const dest = path.join(outDir, 'danga-socket.node');
  fs.copyFileSync(local, dest);
  spawnSync('strip', ['--strip-unneeded', dest], { stdio: 'inherit' });
  console.log(`prebuild: ${path.relative(root, dest)} (from build/Release)`);
  process.exit(0);
}

const env = { ...process.env };
const nodedir = localNodeDir();
if (nodedir) env.npm_config_nodedir = nodedir;
const bin = require.resolve('prebuildify/bin.js', { paths: [root] });
const result = spawnSync(
  process.execPath,
  [bin, '--napi', '--strip', `--target=${process.versions.node}`],
  { cwd: root, env, stdio: 'inherit' },
);
if (result.status !== 0) {
  console.error('prebuild: prebuildify failed; the package would ship without its addon');
  process.exit(1);
}
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const files = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
console.log(
  `prebuild: ${files.map((f) => path.join('prebuilds', path.basename(dir), f)).join(', ')}`,
);
