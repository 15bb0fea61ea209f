import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { ApiError } from '../schemas/errors.ts';
import { isLoopbackHost } from '../schemas/config.ts';

/**
 * Sign-in with OpenID Connect through `openid-client`: authorization code with PKCE (S256),
 * `state` and `nonce` checked, the ID token verified against the issuer's keys (signature,
 * issuer, audience, expiry, nonce) by the library. The provider's metadata is discovered on
 * first use and kept; a failed discovery is retried on the next sign-in.
 *
 * A sign-in in progress (its state, nonce and PKCE verifier) lives in this process's memory for
 * ten minutes under a random flow id, which the browser holds in a short-lived HttpOnly cookie:
 * the callback is accepted only from the browser that started it, once. Several API processes
 * behind one load balancer therefore need sticky sessions for the few seconds of a sign-in.
 */

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** FAROL_PUBLIC_URL + /api/v1/auth/oidc/callback. */
  redirectUri: string;
}

/** What a verified sign-in tells about the person. */
export interface OidcIdentity {
  issuer: string;
  subject: string;
  /** Lower-case; undefined when the provider sent none. */
  email?: string;
  /** Only `email_verified: true` counts. */
  emailVerified: boolean;
  name?: string;
}

interface Flow {
  state: string;
  nonce: string;
  verifier: string;
  expires: number;
}

export const FLOW_COOKIE = 'farol_oidc';
export const FLOW_TTL_MS = 10 * 60_000;
const MAX_FLOWS = 10_000;

export interface OidcClient {
  /** Starts a sign-in: the provider URL to redirect to and the flow id for the cookie. */
  start(): Promise<{ url: string; flow: string }>;
  /** Finishes one: the callback URL as received and the flow cookie. Throws API_OIDC_FAILED on any failed check. */
  finish(callbackUrl: URL, flow: string | undefined): Promise<OidcIdentity>;
  /**
   * Where to send the browser to sign out at the provider too (RP-initiated logout), coming back
   * to `postLogout`; undefined when the provider advertises no `end_session_endpoint` or cannot
   * be reached.
   */
  endSessionUrl(postLogout: string): Promise<string | undefined>;
}

export function oidcClient(settings: OidcSettings, now: () => number = Date.now): OidcClient {
  let discovered: Promise<client.Configuration> | undefined;
  const flows = new Map<string, Flow>();
  const configuration = async (): Promise<client.Configuration> => {
    // Plain http only for a provider on this machine (a test's, a development one).
    const insecure = new URL(settings.issuer).protocol === 'http:' && isLoopbackHost(new URL(settings.issuer).hostname);
    discovered ??= client.discovery(new URL(settings.issuer), settings.clientId, settings.clientSecret, undefined, insecure ? { execute: [client.allowInsecureRequests] } : {});
    try {
      return await discovered;
    } catch (err) {
      discovered = undefined;
      throw new ApiError('API_UNAVAILABLE', 'The identity provider could not be reached', undefined, err);
    }
  };
  const sweep = (t: number): void => {
    for (const [id, f] of flows) if (f.expires <= t) flows.delete(id);
    // Bounded: a flood of started sign-ins forgets the oldest.
    while (flows.size >= MAX_FLOWS) flows.delete(flows.keys().next().value as string);
  };
  return {
    async endSessionUrl(postLogout) {
      const config = await configuration().catch(() => undefined);
      if (config?.serverMetadata().end_session_endpoint === undefined) return undefined;
      return client.buildEndSessionUrl(config, { client_id: settings.clientId, post_logout_redirect_uri: postLogout }).href;
    },
    async start() {
      const config = await configuration();
      const t = now();
      sweep(t);
      const f: Flow = { state: client.randomState(), nonce: client.randomNonce(), verifier: client.randomPKCECodeVerifier(), expires: t + FLOW_TTL_MS };
      const id = randomBytes(32).toString('base64url');
      flows.set(id, f);
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: settings.redirectUri,
        scope: 'openid email profile',
        response_type: 'code',
        state: f.state,
        nonce: f.nonce,
        code_challenge: await client.calculatePKCECodeChallenge(f.verifier),
        code_challenge_method: 'S256',
      });
      return { url: url.href, flow: id };
    },
    async finish(callbackUrl, flowId) {
      const f = flowId === undefined ? undefined : flows.get(flowId);
      if (flowId !== undefined) flows.delete(flowId);
      if (f === undefined || f.expires <= now()) throw new ApiError('API_OIDC_FAILED', 'This sign-in was not started in this browser, or took too long; start again');
      const config = await configuration();
      let claims: client.IDToken | undefined;
      let profile: Record<string, unknown> = {};
      try {
        const tokens = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: f.verifier, expectedState: f.state, expectedNonce: f.nonce, idTokenExpected: true });
        claims = tokens.claims();
        // A provider that keeps the email out of the ID token (oidc-provider's default; some
        // Entra set-ups) answers it at the userinfo endpoint, checked to be the same subject.
        if (claims !== undefined && claims.email === undefined) profile = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
      } catch (err) {
        // The library's message names the failed check (state, nonce, signature…), never a token.
        throw new ApiError('API_OIDC_FAILED', undefined, undefined, err);
      }
      if (claims === undefined) throw new ApiError('API_OIDC_FAILED');
      const from = claims.email === undefined ? profile : claims;
      const email = typeof from.email === 'string' ? from.email.trim().toLowerCase() : undefined;
      const rawName = claims.name ?? profile.name;
      const name = typeof rawName === 'string' ? rawName.trim().slice(0, 100) : undefined;
      return {
        issuer: claims.iss,
        subject: claims.sub,
        ...(email !== undefined && email !== '' && email.length <= 254 ? { email } : {}),
        emailVerified: from.email_verified === true,
        ...(name !== undefined && name !== '' ? { name } : {}),
      };
    },
  };
}
