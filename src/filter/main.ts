#!/usr/bin/env node
// Entry point of the submit filter's bundle (dist/hot/filter-main.cjs, which dist/hot/filter.cjs runs): cli.ts.
import { main } from './cli.js';

void main(process.argv.slice(2));
