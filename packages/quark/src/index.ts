// Programmatic API of the quark CLI package (used by tests and benchmarks).
export * from './sandbox.js';
export * from './logs.js';
export { checkHost, formatReport, guestCheck } from './commands/check.js';
export type { CheckReport, GuestCheck } from './commands/check.js';
export { run } from './commands/run.js';
export type { RunArgs } from './commands/run.js';
