import type { Principal, Site } from './model.ts';

/**
 * The control plane's read side: what the API checks on every request and what the collector
 * accepts and stamps. {@link ControlPlane} (control-plane.ts) implements it over the store; the
 * API and the collector depend on this, never on the control-plane tables.
 */
export interface ControlReader {
  /** The member behind a token, or null when unknown or revoked. */
  authenticate(token: string): Promise<Principal | null>;
  /** The member behind a browser session's cookie secret, or null when unknown, signed out or expired. */
  authenticateSession(secret: string): Promise<Principal | null>;
  /** A site by domain, whatever its account (callers must check scope), or null. */
  site(domain: string): Promise<Site | null>;
  /** Configured goal names of a site (undefined: none configured, every custom event is a goal). */
  goals(domain: string): Promise<readonly string[] | undefined>;
  /** Every live site with the epoch of its registration: the domains the collector accepts. */
  registeredSites(): Promise<SiteRegistration[]>;
}

/** A registered site: its domain and the epoch of its registration (`created_at` in ms), stamped on its events. */
export interface SiteRegistration {
  readonly domain: string;
  readonly epoch: number;
}
