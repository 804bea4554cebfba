'use strict';
// The submit filter's start-up (dist/hot/filter.cjs, what plugins/*.sh runs with node): it compiles the bundled
// filter (filter-main.cjs) with V8's code cache made at build time (scripts/filter-code-cache.cjs), so a job does
// not parse and compile the filter again; measured in bench/filter.ts. Portable where V8 start-up snapshots are
// not: one cache per V8 version; a missing or rejected cache (another Node) only means a normal compile.
// The cache sits beside the bundle, written only at build time: whoever can write it can replace the bundle too.
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const MAIN = join(__dirname, 'filter-main.cjs');
const cachePath = () => join(__dirname, `filter-main.v8-${process.versions.v8}-${process.arch}.cache`);

/** Compile the bundle, with the cache when it is there. */
function compile(useCache) {
  // the bundle starts with a #! line, not valid inside the module wrapper: keep the offsets, drop the line
  const src = readFileSync(MAIN, 'utf8').replace(/^#!.*/, '');
  let cachedData;
  if (useCache) {
    try { cachedData = readFileSync(cachePath()); } catch { /* no cache for this V8: compile normally */ }
  }
  const script = new vm.Script(Module.wrap(src), {
    filename: MAIN, cachedData,
    // the bundle's lazy `import()` of node builtins goes through the main loader (Node ≥ 20.18; older: the
    // default, which refuses such an import — none runs on the filter's path)
    ...(vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER ? { importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER } : {}),
  });
  return script;
}

/** Run the bundle as a CommonJS module. */
function load() {
  const script = compile(true);
  const mod = new Module(MAIN, module);
  mod.filename = MAIN;
  mod.paths = Module._nodeModulePaths(__dirname);
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(MAIN), mod, MAIN, __dirname);
}

module.exports = { compile, cachePath };
if (require.main === module) load();
