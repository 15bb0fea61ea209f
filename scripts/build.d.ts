// Types of scripts/build.js (plain JavaScript: the `farol` bin runs it before anything is compiled).

/** The checkout. */
export const ROOT: string;
/** The build's inputs besides scripts/build.js, relative to `root`, sorted (what the fingerprint hashes). */
export function buildInputs(root?: string): string[];
/** A hash of every input of the build under `root` (default: the checkout). */
export function sourceFingerprint(root?: string): string;
/** Compiles `root` into `root/dist` (tsc, assets, fingerprint last). Throws when tsc fails. */
export function build(root?: string, fingerprint?: string): void;
/** Whether `root/dist` is a complete build of exactly the current sources. */
export function isCurrent(root?: string): boolean;
/** Builds `root/dist` unless it was built from exactly the current sources; returns whether it built. */
export function ensureBuilt(root?: string): boolean;
