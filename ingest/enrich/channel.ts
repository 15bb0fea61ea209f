import type { Channel } from '../../schemas/enriched-event.ts';

/*
 * Acquisition channel and source: GA4's default channel grouping
 * (https://support.google.com/analytics/answer/9756891), rule for rule and in its order, with
 * Farol's additions marked where they sit:
 *  - "AI Assistants" for chatbot referrers, between Organic Video and Organic Search;
 *  - webmail referrers (mail.google.com, Outlook …) count as Email, not Referral;
 *  - click ids stand in for the ad platform's auto-tagging: gclid/gbraid/wbraid/msclkid → Paid
 *    Search, dclid → Display (Campaign Manager/DV360), ttclid/twclid/li_fat_id/rdt_cid/epik → Paid
 *    Social; fbclid only names Facebook as the source (Facebook adds it to organic links too).
 * GA4 derives source/medium from the referrer when the URL is not tagged (medium "organic" for
 * search engines, else "referral"); the same is done here. GA4 matches sources against its own
 * lists of ~800 sites; this table holds the ones that matter and names them like Plausible does.
 */

export type SourceCategory = 'search' | 'social' | 'video' | 'shopping' | 'email' | 'ai';

/** A known traffic source: its display name and GA4 source category. */
export interface KnownSource {
  name: string;
  category: SourceCategory;
}

/** What the channel step needs from the page URL and the referrer. */
export interface ChannelInput {
  /** Referrer hostname (www. may be present); '' when there is none. */
  referrerHost: string;
  /** The referrer is the page's own site: internal navigation, counted as Direct. */
  sameSite: boolean;
  utmSource: string;
  utmMedium: string;
  utmCampaign: string;
  /** Names of the ad click ids present in the page URL. */
  clickIds: readonly string[];
}

export interface ChannelResult {
  channel: Channel;
  /** A friendly name ('Google', 'Facebook'), else utm_source as given, else the referrer domain. */
  source: string;
}

type HostEntry = [host: string, name: string, category: SourceCategory, subdomains?: 'sub'];

// Hosts are matched after dropping "www."; 'sub' entries also cover every subdomain
// (m.facebook.com, out.reddit.com). Exact entries come first so gemini.google.com is not Google.
const HOSTS: readonly HostEntry[] = [
  // search
  ['google.com', 'Google', 'search'],
  ['bing.com', 'Bing', 'search', 'sub'],
  ['duckduckgo.com', 'DuckDuckGo', 'search', 'sub'],
  ['yahoo.com', 'Yahoo!', 'search'],
  ['search.yahoo.com', 'Yahoo!', 'search', 'sub'],
  ['search.yahoo.co.jp', 'Yahoo!', 'search', 'sub'],
  ['ya.ru', 'Yandex', 'search'],
  ['baidu.com', 'Baidu', 'search', 'sub'],
  ['ecosia.org', 'Ecosia', 'search', 'sub'],
  ['qwant.com', 'Qwant', 'search', 'sub'],
  ['startpage.com', 'Startpage', 'search', 'sub'],
  ['search.brave.com', 'Brave Search', 'search'],
  ['kagi.com', 'Kagi', 'search'],
  ['naver.com', 'Naver', 'search', 'sub'],
  ['seznam.cz', 'Seznam', 'search', 'sub'],
  ['so.com', '360 Search', 'search', 'sub'],
  ['sogou.com', 'Sogou', 'search', 'sub'],
  ['ask.com', 'Ask', 'search', 'sub'],
  ['search.aol.com', 'AOL', 'search'],
  ['daum.net', 'Daum', 'search', 'sub'],
  ['mojeek.com', 'Mojeek', 'search'],
  ['com.google.android.googlequicksearchbox', 'Google', 'search'],
  // social
  ['facebook.com', 'Facebook', 'social', 'sub'],
  ['fb.com', 'Facebook', 'social', 'sub'],
  ['fb.me', 'Facebook', 'social'],
  ['messenger.com', 'Messenger', 'social', 'sub'],
  ['instagram.com', 'Instagram', 'social', 'sub'],
  ['t.co', 'Twitter', 'social'],
  ['twitter.com', 'Twitter', 'social', 'sub'],
  ['x.com', 'Twitter', 'social', 'sub'],
  ['linkedin.com', 'LinkedIn', 'social', 'sub'],
  ['lnkd.in', 'LinkedIn', 'social'],
  ['reddit.com', 'Reddit', 'social', 'sub'],
  ['redd.it', 'Reddit', 'social'],
  ['pinterest.com', 'Pinterest', 'social', 'sub'],
  ['pin.it', 'Pinterest', 'social'],
  ['tiktok.com', 'TikTok', 'social', 'sub'],
  ['snapchat.com', 'Snapchat', 'social', 'sub'],
  ['threads.net', 'Threads', 'social', 'sub'],
  ['threads.com', 'Threads', 'social', 'sub'],
  ['bsky.app', 'Bluesky', 'social'],
  ['mastodon.social', 'Mastodon', 'social'],
  ['news.ycombinator.com', 'Hacker News', 'social'],
  ['quora.com', 'Quora', 'social', 'sub'],
  ['tumblr.com', 'Tumblr', 'social', 'sub'],
  ['vk.com', 'VK', 'social', 'sub'],
  ['weibo.com', 'Weibo', 'social', 'sub'],
  ['discord.com', 'Discord', 'social', 'sub'],
  ['discordapp.com', 'Discord', 'social', 'sub'],
  ['slack.com', 'Slack', 'social', 'sub'],
  ['t.me', 'Telegram', 'social'],
  ['web.telegram.org', 'Telegram', 'social'],
  ['wa.me', 'WhatsApp', 'social'],
  ['whatsapp.com', 'WhatsApp', 'social', 'sub'],
  ['medium.com', 'Medium', 'social', 'sub'],
  // video
  ['youtube.com', 'YouTube', 'video', 'sub'],
  ['youtu.be', 'YouTube', 'video'],
  ['vimeo.com', 'Vimeo', 'video', 'sub'],
  ['twitch.tv', 'Twitch', 'video', 'sub'],
  ['dailymotion.com', 'Dailymotion', 'video', 'sub'],
  // shopping
  ['etsy.com', 'Etsy', 'shopping', 'sub'],
  ['walmart.com', 'Walmart', 'shopping', 'sub'],
  ['aliexpress.com', 'AliExpress', 'shopping', 'sub'],
  ['shopify.com', 'Shopify', 'shopping', 'sub'],
  ['shopping.google.com', 'Google Shopping', 'shopping'],
  // email (webmail)
  ['mail.google.com', 'Gmail', 'email'],
  ['com.google.android.gm', 'Gmail', 'email'],
  ['outlook.live.com', 'Outlook', 'email'],
  ['outlook.office.com', 'Outlook', 'email'],
  ['outlook.office365.com', 'Outlook', 'email'],
  ['mail.yahoo.com', 'Yahoo! Mail', 'email', 'sub'],
  ['mail.proton.me', 'Proton Mail', 'email'],
  // AI assistants
  ['chatgpt.com', 'ChatGPT', 'ai', 'sub'],
  ['chat.openai.com', 'ChatGPT', 'ai'],
  ['perplexity.ai', 'Perplexity', 'ai', 'sub'],
  ['claude.ai', 'Claude', 'ai'],
  ['gemini.google.com', 'Gemini', 'ai'],
  ['bard.google.com', 'Gemini', 'ai'],
  ['copilot.microsoft.com', 'Copilot', 'ai'],
  ['copilot.cloud.microsoft', 'Copilot', 'ai'],
  ['chat.deepseek.com', 'DeepSeek', 'ai'],
  ['chat.mistral.ai', 'Mistral', 'ai'],
  ['meta.ai', 'Meta AI', 'ai'],
  ['grok.com', 'Grok', 'ai'],
  ['you.com', 'You.com', 'ai'],
  ['phind.com', 'Phind', 'ai'],
  ['poe.com', 'Poe', 'ai'],
];

// Brands with a site per country: google.de, google.co.uk, amazon.com.br, pinterest.fr …
const COUNTRY_SITES: readonly [RegExp, KnownSource][] = [
  [/^google\.(?:com?\.)?[a-z]{2,3}$/, { name: 'Google', category: 'search' }],
  [/^yandex\.(?:com?\.)?[a-z]{2,3}$/, { name: 'Yandex', category: 'search' }],
  [/^pinterest\.(?:com?\.)?[a-z]{2,3}$/, { name: 'Pinterest', category: 'social' }],
  [/^(?:smile\.)?amazon\.(?:com?\.)?[a-z]{2,3}$/, { name: 'Amazon', category: 'shopping' }],
  [/^ebay\.(?:com?\.)?[a-z]{2,3}$/, { name: 'eBay', category: 'shopping' }],
];

// utm_source spellings seen in the wild → the same names as the host table.
const UTM_ALIASES: Readonly<Record<string, string>> = {
  google: 'google.com',
  adwords: 'google.com',
  bing: 'bing.com',
  duckduckgo: 'duckduckgo.com',
  ddg: 'duckduckgo.com',
  yahoo: 'yahoo.com',
  yandex: 'ya.ru',
  baidu: 'baidu.com',
  ecosia: 'ecosia.org',
  facebook: 'facebook.com',
  fb: 'facebook.com',
  meta: 'facebook.com',
  instagram: 'instagram.com',
  ig: 'instagram.com',
  twitter: 'twitter.com',
  tw: 'twitter.com',
  x: 'x.com',
  linkedin: 'linkedin.com',
  li: 'linkedin.com',
  reddit: 'reddit.com',
  pinterest: 'pinterest.com',
  tiktok: 'tiktok.com',
  snapchat: 'snapchat.com',
  threads: 'threads.net',
  bluesky: 'bsky.app',
  bsky: 'bsky.app',
  mastodon: 'mastodon.social',
  hn: 'news.ycombinator.com',
  hackernews: 'news.ycombinator.com',
  'hacker news': 'news.ycombinator.com',
  ycombinator: 'news.ycombinator.com',
  quora: 'quora.com',
  discord: 'discord.com',
  slack: 'slack.com',
  telegram: 't.me',
  whatsapp: 'wa.me',
  youtube: 'youtube.com',
  yt: 'youtube.com',
  vimeo: 'vimeo.com',
  twitch: 'twitch.tv',
  amazon: 'amazon.com',
  ebay: 'ebay.com',
  etsy: 'etsy.com',
  gmail: 'mail.google.com',
  outlook: 'outlook.live.com',
  chatgpt: 'chatgpt.com',
  openai: 'chatgpt.com',
  perplexity: 'perplexity.ai',
  claude: 'claude.ai',
  anthropic: 'claude.ai',
  gemini: 'gemini.google.com',
  bard: 'gemini.google.com',
  copilot: 'copilot.microsoft.com',
  deepseek: 'chat.deepseek.com',
};

interface ClickIdHint {
  source: KnownSource;
  /** Which paid rule the id's presence satisfies, if any. */
  paid: 'search' | 'display' | 'social' | null;
}

// In priority order: the first id present names the source.
const CLICK_ID_HINTS: readonly [string, ClickIdHint][] = [
  ['gclid', { source: { name: 'Google', category: 'search' }, paid: 'search' }],
  ['gbraid', { source: { name: 'Google', category: 'search' }, paid: 'search' }],
  ['wbraid', { source: { name: 'Google', category: 'search' }, paid: 'search' }],
  ['msclkid', { source: { name: 'Bing', category: 'search' }, paid: 'search' }],
  ['dclid', { source: { name: 'Google', category: 'search' }, paid: 'display' }],
  ['ttclid', { source: { name: 'TikTok', category: 'social' }, paid: 'social' }],
  ['twclid', { source: { name: 'Twitter', category: 'social' }, paid: 'social' }],
  ['li_fat_id', { source: { name: 'LinkedIn', category: 'social' }, paid: 'social' }],
  ['rdt_cid', { source: { name: 'Reddit', category: 'social' }, paid: 'social' }],
  ['epik', { source: { name: 'Pinterest', category: 'social' }, paid: 'social' }],
  ['fbclid', { source: { name: 'Facebook', category: 'social' }, paid: null }],
];

const PAID_MEDIUM = /^(?:.*cp.*|ppc|retargeting|paid.*)$/;
const SHOPPING_CAMPAIGN = /^(?:.*(?:(?:[^a-df-z]|^)shop|shopping).*)$/;
const DISPLAY_MEDIUMS = new Set(['display', 'banner', 'expandable', 'interstitial', 'cpm']);
const SOCIAL_MEDIUMS = new Set(['social', 'social-network', 'social-media', 'sm', 'social network', 'social media']);
const REFERRAL_MEDIUMS = new Set(['referral', 'app', 'link']);
const EMAIL_TERMS = new Set(['email', 'e-mail', 'e_mail', 'e mail']);
const NONE_MEDIUMS = new Set(['', '(none)', '(not set)']);

const MAX_SOURCE = 500;

/** Classifies a visit into a GA4 default channel and names its source. */
export function classifyChannel(input: ChannelInput): ChannelResult {
  const referrerHost = input.sameSite ? '' : stripWww(input.referrerHost.trim().toLowerCase());
  const utmSource = input.utmSource.trim();
  const sourceKey = utmSource.toLowerCase();
  const hint = clickIdHint(input.clickIds);

  let known: KnownSource | null;
  let source: string;
  if (utmSource !== '') {
    known = lookupUtmSource(sourceKey);
    source = known?.name ?? utmSource;
  } else if (referrerHost !== '') {
    // An ad click through an unknown site (a search partner, a display placement) is the ad
    // platform's traffic, as GA4's auto-tagging would report it.
    known = lookupHost(referrerHost) ?? (hint?.paid ? hint.source : null);
    source = known?.name ?? referrerHost;
  } else {
    known = hint?.source ?? null;
    source = known?.name ?? '';
  }
  const medium = input.utmMedium.trim().toLowerCase() || derivedMedium(referrerHost, known);
  const channel = channelOf({
    sourceKey,
    category: known?.category ?? null,
    medium,
    campaign: input.utmCampaign.trim().toLowerCase(),
    paidHint: hint?.paid ?? null,
  });
  // '(direct)' is GA4's placeholder, not a source to report.
  if (channel === 'Direct') return { channel, source: '' };
  return { channel, source: source.length > MAX_SOURCE ? source.slice(0, MAX_SOURCE) : source };
}

// GA4's medium for an untagged visit: "organic" from a search engine, else "referral".
function derivedMedium(referrerHost: string, known: KnownSource | null): string {
  if (referrerHost === '') return '';
  if (known?.category === 'search') return 'organic';
  return known?.category === 'email' ? 'email' : 'referral';
}

interface Signals {
  /** utm_source, lowercase ('' when untagged). */
  sourceKey: string;
  category: SourceCategory | null;
  medium: string;
  campaign: string;
  paidHint: ClickIdHint['paid'];
}

// GA4's rules, first match wins.
function channelOf(s: Signals): Channel {
  const { category, medium, campaign, sourceKey } = s;
  const paid = PAID_MEDIUM.test(medium);
  // A click id only vouches for paid traffic when nothing says the visit came from elsewhere.
  const hintApplies = category === null || category === s.paidHint;
  if (category === null && (sourceKey === '' || sourceKey === '(direct)') && NONE_MEDIUMS.has(medium) && s.paidHint === null) {
    return 'Direct';
  }
  if (campaign.includes('cross-network')) return 'Cross-network';
  const shoppingCampaign = SHOPPING_CAMPAIGN.test(campaign);
  if ((category === 'shopping' || shoppingCampaign) && paid) return 'Paid Shopping';
  if ((category === 'search' && paid) || (s.paidHint === 'search' && hintApplies)) return 'Paid Search';
  if ((category === 'social' && paid) || (s.paidHint === 'social' && hintApplies)) return 'Paid Social';
  if (category === 'video' && paid) return 'Paid Video';
  if (DISPLAY_MEDIUMS.has(medium) || s.paidHint === 'display') return 'Display';
  if (paid) return 'Paid Other';
  if (category === 'shopping' || shoppingCampaign) return 'Organic Shopping';
  if (category === 'social' || SOCIAL_MEDIUMS.has(medium)) return 'Organic Social';
  if (category === 'video' || medium.includes('video')) return 'Organic Video';
  if (category === 'ai') return 'AI Assistants';
  if (category === 'search' || medium === 'organic') return 'Organic Search';
  if (REFERRAL_MEDIUMS.has(medium)) return 'Referral';
  if (category === 'email' || EMAIL_TERMS.has(sourceKey) || EMAIL_TERMS.has(medium)) return 'Email';
  if (medium === 'affiliate') return 'Affiliates';
  if (medium === 'audio') return 'Audio';
  if (sourceKey === 'sms' || medium === 'sms') return 'SMS';
  if (medium.endsWith('push') || medium.includes('mobile') || medium.includes('notification') || sourceKey === 'firebase') {
    return 'Mobile Push Notifications';
  }
  return 'Unassigned';
}

function clickIdHint(clickIds: readonly string[]): ClickIdHint | null {
  if (clickIds.length === 0) return null;
  for (const [name, hint] of CLICK_ID_HINTS) if (clickIds.includes(name)) return hint;
  return null;
}

// utm_source → known source: an alias ('fb', 'ig'), or a hostname written as the source.
function lookupUtmSource(key: string): KnownSource | null {
  // Own keys only: `__proto__` or `constructor` as a utm_source must not find Object.prototype's.
  const alias = Object.hasOwn(UTM_ALIASES, key) ? UTM_ALIASES[key] : undefined;
  if (alias !== undefined) return lookupHost(alias);
  if (!key.includes('.')) return null;
  // 'chatgpt.com', 'https://www.perplexity.ai/': reduce to a hostname.
  const afterScheme = key.includes('://') ? key.slice(key.indexOf('://') + 3) : key;
  const slash = afterScheme.indexOf('/');
  return lookupHost(stripWww(slash === -1 ? afterScheme : afterScheme.slice(0, slash)));
}

const BY_HOST = new Map<string, { known: KnownSource; subdomains: boolean }>(
  HOSTS.map(([host, name, category, sub]) => [host, { known: { name, category }, subdomains: sub === 'sub' }]),
);

// Referrer hosts repeat on almost every event; the suffix walk and regexes run once per host.
const hostCache = new Map<string, KnownSource | null>();
const HOST_CACHE_MAX = 10_000;

/** Known source for a hostname (www. already stripped), or null. */
export function lookupHost(host: string): KnownSource | null {
  const cached = hostCache.get(host);
  if (cached !== undefined) return cached;
  const found = lookupHostUncached(host);
  if (hostCache.size >= HOST_CACHE_MAX) hostCache.clear();
  hostCache.set(host, found);
  return found;
}

function lookupHostUncached(host: string): KnownSource | null {
  const exact = BY_HOST.get(host);
  if (exact !== undefined) return exact.known;
  for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
    const entry = BY_HOST.get(host.slice(dot + 1));
    if (entry?.subdomains === true) return entry.known;
  }
  for (const [pattern, known] of COUNTRY_SITES) if (pattern.test(host)) return known;
  return null;
}

function stripWww(host: string): string {
  return host.startsWith('www.') ? host.slice(4) : host;
}
