#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm run build`, which `npm ci` and `npm pack` run
// through the prepare script). Only the command asked for is loaded.
const { main } = await import('../dist/pipeline/cli.js');
process.exitCode = await main(process.argv.slice(2));
