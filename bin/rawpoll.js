#!/usr/bin/env node
// Thin launcher: the CLI lives in src/cli (compiled to dist/); `npm run build` must have run.
import('../dist/src/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`rawpoll: cannot start (${err && err.message ? err.message : err}); run "npm run build" first\n`);
  process.exit(1);
});
