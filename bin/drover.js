#!/usr/bin/env node
// The drover CLI. Commands live in dist/src/commands/<topic>/<verb>.js (build first: npm run build).
import { execute } from '@oclif/core';

await execute({ dir: import.meta.url });
